"""The Numba loop in-process: static routes are answered by the native path
(no promotion), anything else is promoted to the Python session once and
answered exactly as the Python loop does.  The full server suite
(tests/server/test_server.py) runs it as a separate process too."""
import contextlib
import socket
import threading

import pytest

pytest.importorskip("numba")
pytest.importorskip("cffi")

from kourier_lab import loops  # noqa: E402
from kourier_lab.server.config import ServerConfig  # noqa: E402
from kourier_lab.server.demo import app  # noqa: E402
from kourier_lab.server.process import read_responses, read_until_close  # noqa: E402

from tests.server.test_head_memo import DATE  # noqa: E402
from tests.threaded_loop import serving  # noqa: E402

REQ = b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n"


@pytest.fixture(scope="module")
def served():
    if "numba" not in loops.names():
        pytest.skip(f"numba loop unavailable: {loops.unavailable().get('numba')}")
    from kourier_lab.loops import numba as nloop
    cfg = ServerConfig(loop="numba", parser="numba", buffer="numba", request_timeout=1.0,
                       idle_timeout=3.0, graceful_timeout=3.0, head_memo=True)
    loop = loops.create("numba", cfg, app)
    lsock = socket.create_server(("127.0.0.1", 0))
    thread = threading.Thread(target=loop.run, args=(lsock,), daemon=True)
    thread.start()
    yield loop, lsock.getsockname()[1], nloop
    loop.request_stop()
    thread.join(10)
    assert not thread.is_alive()
    lsock.close()


def _connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def test_only_numba_parser_and_buffers():
    if "numba" not in loops.names():
        pytest.skip("numba loop unavailable")
    assert loops.supports("numba", "numba", "numba")[0]
    assert not loops.supports("numba", "python", "numba")[0]
    assert not loops.supports("numba", "numba", "python")[0]


def test_static_pipelined_requests_stay_native(served):
    loop, port, nloop = served
    ctl = loop._L.ctl
    served_before, promoted_before = int(ctl[nloop.C_SERVED]), int(ctl[nloop.C_PROMOTED])
    s = _connect(port)
    s.sendall(REQ * 300)
    rs = read_responses(s, 300)
    assert len(rs) == 300 and all(r[0] == 200 and r[2] == b"Hello World!" for r in rs)
    s.sendall(b"HEAD /static HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += s.recv(4096)
    assert head.startswith(b"HTTP/1.1 200 OK") and b"Content-Length: 12" in head
    assert b"Connection: keep-alive" in head
    s.close()
    assert int(ctl[nloop.C_SERVED]) - served_before == 301
    assert int(ctl[nloop.C_PROMOTED]) == promoted_before


def test_a_python_handler_promotes_the_connection_once(served):
    loop, port, nloop = served
    ctl = loop._L.ctl
    promoted_before = int(ctl[nloop.C_PROMOTED])
    s = _connect(port)
    s.sendall(REQ + b"GET /path?x=1 HTTP/1.1\r\nHost: a\r\n\r\n" + REQ
              + b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
    rs = read_responses(s, 4)
    assert [(r[0], r[2]) for r in rs] == [(200, b"Hello World!"), (200, b"/path?x=1"),
                                          (200, b"Hello World!"), (200, b"abc")]
    s.close()
    assert int(ctl[nloop.C_PROMOTED]) == promoted_before + 1


def test_errors_are_answered_by_python_then_closed(served):
    _loop, port, _ = served
    s = _connect(port)
    s.sendall(REQ + b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    assert data.startswith(b"HTTP/1.1 200 OK") and b"HTTP/1.1 400 " in data
    s.close()


def test_jit_time_is_recorded(served):
    loop, _port, _ = served
    assert loop.jit_seconds > 0


def test_head_memo_is_exact(served):
    """The memo answers byte-identical heads only: a head that shares the
    remembered one's first bytes but not all of them is parsed (here: 400)."""
    loop, port, nloop = served
    s = _connect(port)
    s.sendall(REQ * 3)
    assert [r[0] for r in read_responses(s, 3)] == [200, 200, 200]
    assert loop._L.ctl[nloop.C_MEMO_LEN] == len(REQ)
    s.sendall(REQ[:-2] + b"X: \x01\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    assert data.startswith(b"HTTP/1.1 400 ")
    s.close()


def test_slab_growth_keeps_pending_bytes(served):
    """The slabs grow (doubling) as connections arrive, copying only the rows
    that hold bytes: a partial request buffered before the growth is answered
    complete after it."""
    loop, port, nloop = served
    before = loop._L.slots.shape[0]
    socks = [_connect(port) for _ in range(before + 8)]
    try:
        half = len(REQ) // 2
        for s in socks:
            s.sendall(REQ[:half])           # each connection: half a request buffered natively
        for s in socks:                     # the last ones arrived after (and forced) the growth
            s.sendall(REQ[half:] + REQ)
        for s in socks:
            rs = read_responses(s, 2)
            assert [r[0] for r in rs] == [200, 200] and rs[0][2] == b"Hello World!"
        assert loop._L.slots.shape[0] > before
    finally:
        for s in socks:
            s.close()


def test_native_head_scan_decides_as_the_python_one():
    """The Numba loop's _scan_head is parsers/scan.py scan_head in nopython code:
    on random heads fed in random growing pieces (random limits, a start past 0,
    the state chained from piece to piece) both give the same decision and state,
    and the state survives packing into the slot's one int64."""
    import random

    import numpy as np

    from kourier_lab.loops.numba import HS_BITS, HS_MASK, _head_state, _scan_head
    from kourier_lab.parsers.scan import scan_head
    rng = random.Random(1)
    alphabet = [b"\r", b"\n", b"a", b" ", b"\r\n", b"\r\n\r\n", b"GET / HTTP/1.1", b"\n\n"]
    for _ in range(3000):
        pre = b"x" * rng.randint(0, 3)
        buf = pre + b"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40)))
        row = np.frombuffer(buf + b"\0" * 8, np.uint8).copy()
        mrl, mhb = rng.randint(1, 30), rng.randint(1, 60)
        start = end = len(pre)
        state = (0, 0, 0)
        while end < len(buf):
            end = min(len(buf), end + rng.randint(1, 5))
            want = scan_head(buf, start, end, state, mrl, mhb)
            decide, *got = _scan_head(row, start, end, *state, mrl, mhb)
            assert (bool(decide), tuple(got)) == want, (buf, start, end, state, mrl, mhb)
            packed = _head_state(*got)
            assert (packed & HS_MASK, (packed >> HS_BITS) & HS_MASK, packed >> 2 * HS_BITS) == tuple(got)
            state = want[1]


# runs of identical heads, heads that differ in the query or the path, HEAD,
# HTTP/1.0 with keep-alive, then Connection: close: every one a static route
# or the catch-all, so the whole stream is answered natively
FOLD_STREAM = (REQ * 50
               + b"".join(b"GET /hello?x=%d HTTP/1.1\r\nHost: localhost\r\n\r\n" % i for i in range(5))
               + b"GET /a HTTP/1.1\r\nHost: localhost\r\n\r\n"
               + b"GET /static HTTP/1.1\r\nHost: localhost\r\n\r\n" * 3
               + b"GET /b/c?q=1 HTTP/1.1\r\nHost: localhost\r\n\r\n"
               + b"HEAD /hello HTTP/1.1\r\nHost: localhost\r\n\r\n" * 2
               + b"HEAD /static HTTP/1.1\r\nHost: localhost\r\n\r\n"
               + b"GET /static HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" * 2
               + REQ * 10
               + b"GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
FOLD_REQUESTS = 50 + 5 + 1 + 3 + 1 + 2 + 1 + 2 + 10 + 1


@contextlib.contextmanager
def _numba_server(**options):
    cfg = ServerConfig(loop="numba", parser="numba", buffer="numba", request_timeout=2.0,
                       idle_timeout=5.0, graceful_timeout=3.0, **options)
    with serving(cfg, app) as served:
        yield served


@pytest.mark.parametrize("head_memo", [False, True], ids=["memo-off", "memo-on"])
def test_fold_runs_off_and_on_send_the_same_bytes(head_memo):
    """fold_runs is a knob of cost, not of answers: off (the default) and on,
    the same pipelined stream gets byte-identical responses (Date masked).
    Off, every request natively served had its own answer copy (and, without
    the memo, its own route look-up); on, the runs were folded."""
    if "numba" not in loops.names():
        pytest.skip(f"numba loop unavailable: {loops.unavailable().get('numba')}")
    from kourier_lab.loops import numba as nloop
    streams = {}
    counts = {}
    for fold in (False, True):
        with _numba_server(head_memo=head_memo, fold_runs=fold) as (loop, port):
            ctl = loop._L.ctl
            assert ctl[nloop.C_FOLD] == (1 if fold else 0)
            s = _connect(port)
            s.sendall(FOLD_STREAM)
            got, closed = read_until_close(s, timeout=20)
            s.close()
            assert closed
            streams[fold] = DATE.sub(b"\r\nDate: -\r\n", got)
            counts[fold] = {name: int(ctl[getattr(nloop, name)])
                            for name in ("C_SERVED", "C_PROMOTED", "C_ROUTED", "C_COPIED")}
    assert streams[False].count(b"HTTP/1.1 200 OK\r\n") == FOLD_REQUESTS
    assert streams[False] == streams[True]
    for fold in (False, True):
        assert counts[fold]["C_SERVED"] == FOLD_REQUESTS and counts[fold]["C_PROMOTED"] == 0
    off, on = counts[False], counts[True]
    assert off["C_COPIED"] == FOLD_REQUESTS               # one memcpy per answer
    if not head_memo:
        assert off["C_ROUTED"] == FOLD_REQUESTS           # one route look-up per request
        assert on["C_ROUTED"] < FOLD_REQUESTS             # the runs reused their route
    assert on["C_COPIED"] < FOLD_REQUESTS                 # runs: log2(count) copies
