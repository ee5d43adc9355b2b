"""The head memo and run folding are explicit knobs: off by default, and on or
off they give byte-identical response streams on every stack (they are exact,
not shortcuts that change an answer).  Every loop x parser x buffer, real
sockets: one server with both knobs off, one with the memo on, one with
folding on."""
import re
import socket
import time

import pytest

from kourier_lab import loops
from kourier_lab.server.process import ServerProcess, connect, read_until_close

COMBOS = loops.combinations()
ARGS = ["--app", "kourier_lab.server.demo:app", "--request-timeout", "2", "--idle-timeout", "5",
        "--graceful-timeout", "3"]
GET = b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n"
BROWSER = (b"GET /page?x=1 HTTP/1.1\r\nHost: localhost\r\nUser-Agent: test/1.0\r\n"
           b"Accept: text/html,application/xhtml+xml\r\nAccept-Language: en-US,en;q=0.5\r\n"
           b"Accept-Encoding: gzip, deflate\r\nCookie: a=b; c=d\r\n\r\n")
# one corpus: runs of identical heads (memo hits), heads that differ by one
# byte, handlers, bodies, HTTP/1.0, a bad head sharing the remembered one's
# prefix, and a final Connection: close
CORPUS = (GET * 40 + BROWSER * 8 + GET + b"HEAD /hello HTTP/1.1\r\nHost: localhost\r\n\r\n"
          + GET.replace(b"/hello", b"/hellp") + b"GET /path?q=2 HTTP/1.1\r\nHost: a\r\n\r\n" * 3
          + b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello" * 2
          + b"GET /static HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" * 2
          + b"GET /json HTTP/1.1\r\nHost: a\r\nUser-Agent: u\r\n\r\n"
          + GET * 20
          + b"GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
BAD_AFTER_HITS = GET * 5 + GET[:-2] + b"X: \x01\r\n\r\n"
DATE = re.compile(rb"\r\nDate: [^\r]*\r\n")


def _exchange(port, data, split=None, timeout=20.0):
    s = connect(port)
    if split:
        for i in range(0, len(data), split):
            s.sendall(data[i:i + split])
            time.sleep(0.001)
    else:
        s.sendall(data)
    got, closed = read_until_close(s, timeout=timeout)
    s.close()
    assert closed
    return DATE.sub(b"\r\nDate: -\r\n", got)


@pytest.fixture(scope="module", params=COMBOS, ids=["/".join(c) for c in COMBOS])
def pair(request):
    loop, parser, buffer = request.param
    off = ServerProcess(*ARGS, loop=loop, parser=parser, buffer=buffer).start()
    on = ServerProcess(*ARGS, "--head-memo", "on", loop=loop, parser=parser, buffer=buffer).start()
    fold = ServerProcess(*ARGS, "--fold-runs", "on", loop=loop, parser=parser, buffer=buffer).start()
    # a first pass compiles whatever a variant compiles on first use (Numba
    # kernels for bodies, say), so the compared passes time only serving
    for srv in (off, on, fold):
        _exchange(srv.port, CORPUS, timeout=120.0)
    yield off, on, fold
    assert off.stop() == 0 and on.stop() == 0 and fold.stop() == 0


def test_default_is_off_and_the_start_line_says_so(pair):
    off, on, fold = pair
    assert "head-memo=off" in "".join(off.stderr_lines) and "fold-runs=off" in "".join(off.stderr_lines)
    assert "head-memo=on" in "".join(on.stderr_lines)
    assert "fold-runs=on" in "".join(fold.stderr_lines)


def test_folding_on_and_off_answer_byte_identically(pair):
    off, _, fold = pair
    want = _exchange(off.port, CORPUS)
    assert _exchange(fold.port, CORPUS) == want
    assert _exchange(fold.port, CORPUS, split=97) == want
    # runs of identical requests long enough to be folded (and cut by reads)
    run = GET * 300 + BROWSER * 40 + b"GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    want = _exchange(off.port, run)
    assert want.count(b"HTTP/1.1 200 OK") == 341
    assert _exchange(fold.port, run) == want
    assert _exchange(fold.port, run, split=1000) == want


def test_memo_on_and_off_answer_byte_identically(pair):
    off, on, _ = pair
    want = _exchange(off.port, CORPUS)
    assert want.count(b"HTTP/1.1 200 OK") >= 70 and want.endswith(b"Hello World!")
    assert _exchange(on.port, CORPUS) == want
    # the same stream split across many reads
    assert _exchange(on.port, CORPUS, split=97) == _exchange(off.port, CORPUS, split=97) == want


def test_a_bad_head_after_memo_hits_is_parsed(pair):
    off, on, fold = pair
    want = _exchange(off.port, BAD_AFTER_HITS)
    assert want.count(b"HTTP/1.1 200 OK") == 5 and b"HTTP/1.1 400 " in want
    assert _exchange(on.port, BAD_AFTER_HITS) == want
    assert _exchange(fold.port, BAD_AFTER_HITS) == want
