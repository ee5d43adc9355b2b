"""What the shared server suite does not cover for the C loop (native/loop.c).

The shared suite (test_server.py) already runs every C loop combination; here:
deep pipelines, static and Python answers interleaved in one batch, a client
that does not read (bounded queue, then everything delivered in order), the
Date patched in C, the timer wheel's lazy re-filing, many idle connections,
absolute-form routing under both parsers, a body that grows the ring,
graceful stop while a reader is stalled, and the fold_runs knob (off by
default; on or off, byte-identical answers).
"""
import contextlib
import email.utils
import os
import re
import signal
import socket
import time

import pytest

from kourier_lab import loops
from kourier_lab.server.process import ServerProcess, connect, read_responses, read_until_close

if "c" not in loops.names():
    pytest.skip(f"the C loop is not available: {loops.unavailable().get('c')}", allow_module_level=True)

PARSERS = [p for lo, p, b in loops.combinations() if lo == "c"]
# the uring loop is the C loop on io_uring (same process(), another driver):
# its own rows for the parsers that cross into Python and those that do not
URING_OK, URING_WHY = loops.available("uring")
LOOPS = ["c", pytest.param("uring", marks=pytest.mark.skipif(not URING_OK, reason=f"uring: {URING_WHY}"))]
STACKS = [("c", p) for p in PARSERS] + [
    pytest.param(("uring", p), marks=pytest.mark.skipif(not URING_OK, reason=f"uring: {URING_WHY}"),
                 id=f"uring-{p}") for p in ("c", "python")]
REQ = b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n"
ARGS = ["--app", "kourier_lab.server.demo:app", "--request-timeout", "1", "--idle-timeout", "2",
        "--max-body", "262144", "--graceful-timeout", "3"]


@pytest.fixture(scope="module", params=STACKS)
def server(request):
    loop, parser = request.param
    srv = ServerProcess(*ARGS, loop=loop, parser=parser, buffer="c").start()
    yield srv
    assert srv.stop() == 0


def _worker_pid(srv):
    with open(f"/proc/{srv.proc.pid}/task/{srv.proc.pid}/children") as f:
        return int(f.read().split()[0])


def test_10k_pipelined_static_in_one_write(server):
    s = connect(server.port)
    s.sendall(REQ * 10000)
    rs = read_responses(s, 10000, timeout=30)
    assert len(rs) == 10000 and all(r[0] == 200 and r[2] == b"Hello World!" for r in rs)
    s.close()


def test_static_and_python_answers_keep_their_order(server):
    """One batch mixing C-answered (static, catch-all, errors) and Python-answered
    requests (handler, 404/405): the answers come back in request order."""
    s = connect(server.port)
    reqs, expected = [], []
    for i in range(3000):
        k = i % 5
        if k == 0:
            reqs.append(b"GET /path?i=%d HTTP/1.1\r\nHost: a\r\n\r\n" % i)
            expected.append((200, b"/path?i=%d" % i))
        elif k == 1:
            reqs.append(b"GET /static HTTP/1.1\r\nHost: a\r\n\r\n")
            expected.append((200, b"static bytes"))
        elif k == 2:
            reqs.append(b"DELETE /static HTTP/1.1\r\nHost: a\r\n\r\n")
            expected.append((405, b"Method Not Allowed"))
        elif k == 3:
            reqs.append(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%d" % (len(b"%d" % i), i))
            expected.append((200, b"%d" % i))
        else:
            reqs.append(b"GET /x%d HTTP/1.1\r\nHost: a\r\n\r\n" % i)
            expected.append((200, b"Hello World!"))
    s.sendall(b"".join(reqs))
    rs = read_responses(s, len(reqs), timeout=30)
    assert [(r[0], r[2]) for r in rs] == expected
    s.close()


def _send_until_stalled(sock, stream, quiet_s=0.25):
    """Send until the server stops taking bytes for quiet_s; how much went."""
    sent, stalled_since = 0, None
    while sent < len(stream):
        try:
            sent += sock.send(stream[sent:sent + 65536])
            stalled_since = None
        except BlockingIOError:
            stalled_since = stalled_since or time.monotonic()
            if time.monotonic() - stalled_since > quiet_s:
                break
            time.sleep(0.005)
    return sent


def _read_sending_the_rest(sock, stream, sent, timeout=120.0):
    """What the server sends (each recv of a non-blocking socket), while the rest
    of stream goes out as the server takes it; ends at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sent < len(stream):
            try:
                sent += sock.send(stream[sent:sent + 65536])
            except BlockingIOError:
                pass
        try:
            yield sock.recv(1 << 20)
        except BlockingIOError:
            time.sleep(0.001)


def test_a_client_that_does_not_read_gets_everything_once_it_reads(server):
    """Backpressure: while the client does not read, the server stops reading
    (the client's sends stall); once it reads, every answer arrives, in order."""
    hog = connect(server.port)
    hog.setblocking(False)
    # more than every socket buffer on the way can hold: 600 000 requests (23 MB), 84 MB of answers
    groups = 60000
    stream = b"".join(b"GET /path?i=%d HTTP/1.1\r\nHost: a\r\n\r\n" % i + REQ * 9 for i in range(groups))
    # the server's idle timeout (2 s) runs from the moment it stopped reading: read well before
    sent = _send_until_stalled(hog, stream)
    assert sent < len(stream)            # the server stopped reading: its queue is bounded
    # now read everything, sending the rest as the server takes it
    buf = bytearray()
    pos = 0
    paths, statics = [], 0
    for chunk in _read_sending_the_rest(hog, stream, sent):
        assert chunk, "the server closed the connection"
        buf += chunk
        while True:
            e = buf.find(b"\r\n\r\n", pos)
            if e < 0:
                break
            cl = buf.find(b"Content-Length: ", pos, e) + 16
            n = int(buf[cl:buf.find(b"\r\n", cl)])
            if len(buf) < e + 4 + n:
                break
            body = bytes(buf[e + 4:e + 4 + n])
            if body == b"Hello World!":
                statics += 1
            else:
                paths.append(body)
            pos = e + 4 + n
        if pos > 1 << 20:
            del buf[:pos]
            pos = 0
        if len(paths) + statics >= groups * 10:
            break
    hog.close()
    assert statics == groups * 9
    assert paths == [b"/path?i=%d" % i for i in range(groups)]


@pytest.mark.parametrize("loop", LOOPS)
def test_a_request_cut_by_backpressure_is_not_timed_out_while_the_server_does_not_read(loop):
    """The server stops reading a client that does not read its answers; the
    request it holds half of cannot be finished meanwhile, so its request timeout
    (0.3 s here) waits while reading is stopped: a client that reads after 1.5 s
    gets every answer (the idle timeout, 20 s, is what limits a client that never reads)."""
    srv = ServerProcess("--app", "kourier_lab.server.demo:app", "--request-timeout", "0.3",
                        "--idle-timeout", "20", loop=loop, parser="c", buffer="c").start()
    try:
        hog = connect(srv.port)
        hog.setblocking(False)
        # 41-byte requests in 64 KiB writes: the server's reads end inside a request
        req = b"GET /hello?x=1 HTTP/1.1\r\nHost: abc\r\n\r\n"
        count = 600000
        stream = req * count
        sent = _send_until_stalled(hog, stream)
        assert sent < len(stream)            # the server stopped reading
        time.sleep(1.5)                      # the subject: 5x the request timeout, stalled
        got, buf = 0, bytearray()
        for chunk in _read_sending_the_rest(hog, stream, sent):
            assert chunk, f"the server closed the connection after {got} answers"
            assert b" 408 " not in chunk, "a 408 while the server itself was not reading"
            buf += chunk
            got += buf.count(b"HTTP/1.1 200 ")
            del buf[:max(0, buf.rfind(b"HTTP/1.1 200 ") + 1)]
            if got >= count:
                break
        hog.close()
        assert got == count
    finally:
        assert srv.stop() == 0


def test_date_is_patched_in_c_once_a_second(server):
    """Single answers and runs of identical answers both carry the current Date."""
    _check_dates(server.port)


def test_date_is_patched_in_folded_runs():
    """Folding: a run of identical answers is copied from a pre-replicated
    block; every copy in it carries the current Date too."""
    with _in_process("c", fold_runs=True) as (loop, port):
        _check_dates(port)
    assert loop.stats["answers_folded"] > 0


def _check_dates(port):
    s = connect(port)
    dates = []
    for _ in range(2):
        s.sendall(REQ)
        dates.append(read_responses(s, 1)[0][1]["date"])
        s.sendall(REQ * 200)
        batch = {r[1]["date"] for r in read_responses(s, 200)}
        # not older than the single answer just before it (a stale block would be)
        when = email.utils.parsedate_to_datetime
        assert all(when(d) >= when(dates[-1]) for d in batch)
        dates.extend(sorted(batch - {dates[-1]}))
        time.sleep(1.1)
    s.close()
    assert len(set(dates)) >= 2
    for d in dates:
        assert email.utils.format_datetime(email.utils.parsedate_to_datetime(d), usegmt=True) == d
        assert abs(email.utils.parsedate_to_datetime(d).timestamp() - time.time()) < 5


def test_resetting_the_idle_timer_keeps_a_busy_connection(server):
    """Every request pushes the idle deadline (lazy re-filing on the wheel): a
    connection active every 0.5 s outlives several idle timeouts (2 s)."""
    s = connect(server.port)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 5:
        s.sendall(REQ)
        assert read_responses(s, 1)[0][0] == 200
        time.sleep(0.5)
    data, closed = read_until_close(s, timeout=10)
    assert closed and data == b""


def test_a_steady_pipeline_of_split_requests_is_not_timed_out(server):
    """Every write completes one request and starts the next: each request is
    short, so the request timeout (1 s) must not fire over 2.5 s of them."""
    s = connect(server.port)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    half = len(REQ) // 2
    s.sendall(REQ[:half])
    sent = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < 2.5:
        s.sendall(REQ[half:] + REQ[:half])
        sent += 1
        time.sleep(0.1)
    s.sendall(REQ[half:])
    rs = read_responses(s, sent + 1)
    assert [r[0] for r in rs] == [200] * (sent + 1)
    s.close()


def test_many_idle_connections_are_closed_and_the_server_still_serves(server):
    socks = [connect(server.port) for _ in range(300)]
    for s in socks[:150]:
        s.sendall(REQ)
    for s in socks[:150]:
        assert read_responses(s, 1)[0][0] == 200
    for s in socks:
        data, closed = read_until_close(s, timeout=10)
        assert closed and data == b""
        s.close()
    s = connect(server.port)
    s.sendall(REQ)
    assert read_responses(s, 1)[0][0] == 200
    s.close()


@pytest.mark.parametrize("target,body", [
    (b"http://example.com/static", b"static bytes"),
    (b"http://example.com/path?q=1", b"/path?q=1"),
    (b"http://example.com", b"Hello World!"),
    (b"/static?x=y", b"static bytes"),
])
def test_routing_by_path_in_every_target_form(server, target, body):
    s = connect(server.port)
    s.sendall(b"GET %s HTTP/1.1\r\nHost: example.com\r\n\r\n" % target)
    r = read_responses(s, 1)[0]
    assert (r[0], r[2]) == (200, body)
    s.close()


def test_head_and_http10_variants_of_a_static_route(server):
    s = connect(server.port)
    s.sendall(b"HEAD /static HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
              b"GET /static HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    s.settimeout(5)
    data = b""
    while data.count(b"HTTP/1.1 200") < 2 or not data.endswith(b"static bytes"):
        chunk = s.recv(65536)
        assert chunk
        data += chunk
    first, second = data.split(b"HTTP/1.1 200 OK")[1:]
    assert b"Connection: keep-alive" in first and first.endswith(b"Content-Length: 12\r\nConnection: keep-alive\r\n\r\n")
    assert second.endswith(b"\r\n\r\nstatic bytes")
    s.sendall(b"GET /static HTTP/1.0\r\n\r\n")
    data, closed = read_until_close(s)
    assert closed and b"Connection: close" in data and data.endswith(b"static bytes")


def test_a_large_body_grows_the_ring(server):
    body = bytes(range(256)) * 1000          # 256 000 bytes, read buffer starts at 16 KiB
    s = connect(server.port)
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body))
    for i in range(0, len(body), 7000):
        s.sendall(body[i:i + 7000])
    r = read_responses(s, 1, timeout=20)[0]
    assert r[0] == 200 and r[2] == body
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 5000]), body[i:i + 5000]) for i in range(0, len(body), 5000))
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked + b"0\r\n\r\n" + REQ)
    rs = read_responses(s, 2, timeout=20)
    assert rs[0][2] == body and rs[1][2] == b"Hello World!"
    s.close()


@pytest.mark.parametrize("loop", LOOPS)
def test_graceful_stop_with_a_stalled_reader_and_idle_connections(loop):
    """SIGTERM: idle connections are closed at once, an in-flight request is
    finished, a client that never reads its answers is cut at the graceful
    deadline, and the worker exits 0."""
    srv = ServerProcess(*ARGS, loop=loop, parser="c", buffer="c").start()
    idle = [connect(srv.port) for _ in range(20)]
    for s in idle:
        s.sendall(REQ)
        assert read_responses(s, 1)[0][0] == 200
    hog = connect(srv.port)
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    hog.setblocking(False)
    for _ in range(200):
        try:
            hog.send(REQ * 2000)
        except BlockingIOError:
            break
    busy = connect(srv.port)
    busy.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab")
    time.sleep(0.2)
    srv.proc.send_signal(signal.SIGTERM)
    for s in idle:
        data, closed = read_until_close(s, timeout=5)
        assert closed and data == b""
    busy.sendall(b"cd")
    rs = read_responses(busy, 1)
    assert rs and rs[0][2] == b"abcd"
    assert srv.proc.wait(15) == 0
    hog.close()
    busy.close()


@pytest.mark.parametrize("loop", LOOPS)
def test_connection_limit_answers_503_and_recovers(loop):
    with ServerProcess(*ARGS, "--max-connections", "3", loop=loop, parser="c", buffer="c") as srv:
        held = [connect(srv.port) for _ in range(3)]
        for s in held:
            s.sendall(REQ)
            assert read_responses(s, 1)[0][0] == 200
        for _ in range(3):
            extra = connect(srv.port)
            data, closed = read_until_close(extra, timeout=5)
            assert closed and data.startswith(b"HTTP/1.1 503 ") and b"Connection: close" in data
        held.pop().close()
        time.sleep(0.2)
        again = connect(srv.port)
        again.sendall(REQ)
        assert read_responses(again, 1)[0][0] == 200
        for s in held + [again]:
            s.close()


def test_the_c_loop_refuses_a_python_buffer():
    from kourier_lab.server.config import ServerConfig
    from kourier_lab.server.app import benchmark_app
    ok, why = loops.supports("c", "c", "python")
    assert not ok and "buffers c only" in why
    with pytest.raises(ValueError):
        loops.create("c", ServerConfig(loop="c", parser="c", buffer="python"), benchmark_app())


def _cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize("loop", LOOPS)
def test_out_of_descriptors_neither_spins_nor_loses_connections(loop):
    """EMFILE: the level-triggered listener must not wake the loop in a busy
    circle (nor a re-armed accept); the connections left in the backlog are
    served once descriptors free up."""
    import resource
    with ServerProcess("--app", "kourier_lab.server.demo:app", "--idle-timeout", "30",
                       loop=loop, parser="c", buffer="c") as srv:
        worker = _worker_pid(srv)
        in_use = len(os.listdir(f"/proc/{worker}/fd"))
        soft, hard = resource.prlimit(worker, resource.RLIMIT_NOFILE)
        resource.prlimit(worker, resource.RLIMIT_NOFILE, (in_use + 3, hard))
        socks = [connect(srv.port) for _ in range(12)]
        for s in socks:
            s.sendall(REQ)
        served = [s for s in socks[:3]]
        for s in served:
            assert read_responses(s, 1)[0][0] == 200
        cpu0 = _cpu_seconds(worker)
        time.sleep(2)
        assert _cpu_seconds(worker) - cpu0 < 0.3      # not spinning on the listener
        resource.prlimit(worker, resource.RLIMIT_NOFILE, (soft, hard))
        for s in socks[3:]:
            assert read_responses(s, 1)[0][0] == 200
        for s in socks:
            s.close()


def test_native_head_scan_decides_as_the_python_one():
    """loop.c's scan_head (exported as kl_loop_scan_head) is parsers/scan.py
    scan_head in C: on random heads fed in random growing pieces (random limits,
    the state chained from piece to piece) both give the same decision and state."""
    import random

    from kourier_lab import _native_loop
    from kourier_lab.parsers.scan import scan_head
    ffi, lib = _native_loop.ffi, _native_loop.lib
    rng = random.Random(2)
    alphabet = [b"\r", b"\n", b"\r\n", b"a", b"GET / HTTP/1.1", b": ", b"\n\r\n", b"\r\n\r\n", b"x" * 7, b" "]
    lim = ffi.new("kl_limits *")
    state = ffi.new("size_t[3]")
    for _ in range(5000):
        data = b"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 20)))
        lim.max_request_line, lim.max_header_bytes = rng.choice([1, 2, 5, 16, 64]), rng.choice([2, 4, 10, 32, 128])
        want_state = (0, 0, 0)
        state[0] = state[1] = state[2] = 0
        end = 0
        while end < len(data):
            end = min(len(data), end + rng.randint(1, 5))
            buf = ffi.new("uint8_t[]", data[:end])      # exactly the bytes buffered so far
            got = lib.kl_loop_scan_head(buf, end, state, lim)
            want, want_state = scan_head(data, 0, end, want_state, lim.max_request_line, lim.max_header_bytes)
            assert (bool(got), tuple(state)) == (want, want_state), (data[:end], lim.max_request_line,
                                                                      lim.max_header_bytes)


# --- the fold_runs knob -------------------------------------------------------
DATE = re.compile(rb"\r\nDate: [^\r]*\r\n")     # masked as tests/server/test_head_memo.py does
# runs of identical requests, distinct ones (queries, paths, the catch-all, a
# Python handler), HEAD, HTTP/1.0 keep-alive, a body, and a final close
FOLD_STREAM = (REQ * 50
               + b"".join(b"GET /path?i=%d HTTP/1.1\r\nHost: a\r\n\r\n" % i for i in range(3))
               + b"GET /static HTTP/1.1\r\nHost: a\r\n\r\n" + b"GET /static?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"
               + b"GET /x1 HTTP/1.1\r\nHost: a\r\n\r\n" + b"GET /x2 HTTP/1.1\r\nHost: a\r\n\r\n"
               + b"GET /statics HTTP/1.1\r\nHost: a\r\n\r\n"
               + b"HEAD /hello HTTP/1.1\r\nHost: a\r\n\r\n" * 3 + b"HEAD /static HTTP/1.1\r\nHost: a\r\n\r\n"
               + b"GET /static HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" * 2
               + b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
               + b"DELETE /static HTTP/1.1\r\nHost: a\r\n\r\n"
               + REQ * 10
               + b"GET /hello HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
FOLD_REQUESTS = 50 + 3 + 2 + 2 + 1 + 3 + 1 + 2 + 1 + 1 + 10 + 1


@contextlib.contextmanager
def _in_process(parser, fold_runs, head_memo=False):
    """A C loop in a thread of this process (its stats are readable once it stopped)."""
    from kourier_lab.server.config import ServerConfig
    from kourier_lab.server.demo import app
    from tests.threaded_loop import serving
    cfg = ServerConfig(loop="c", parser=parser, buffer="c", request_timeout=2.0, idle_timeout=5.0,
                       graceful_timeout=3.0, fold_runs=fold_runs, head_memo=head_memo)
    with serving(cfg, app) as served:
        yield served


def _exchange(port, data):
    s = connect(port)
    s.sendall(data)
    got, closed = read_until_close(s, timeout=20)
    s.close()
    assert closed
    return DATE.sub(b"\r\nDate: -\r\n", got)


@pytest.mark.parametrize("head_memo", [False, True], ids=["memo-off", "memo-on"])
@pytest.mark.parametrize("parser", PARSERS)
def test_fold_runs_on_and_off_answer_byte_identically(parser, head_memo):
    """The same pipelined stream, folding off and on: the same bytes back
    (Date masked).  Off, nothing is folded (the loop's counters stay 0 and the
    parser gives every head its own info); on, runs are folded."""
    got, stats = {}, {}
    for fold in (False, True):
        with _in_process(parser, fold, head_memo) as (loop, port):
            assert loop.parser.fold_runs is fold
            got[fold] = _exchange(port, FOLD_STREAM)
        stats[fold] = loop.stats
    assert got[False].count(b"HTTP/1.1 ") == FOLD_REQUESTS
    assert got[False].count(b"HTTP/1.1 200 OK\r\n") == FOLD_REQUESTS - 1      # the DELETE: 405
    assert got[False].endswith(b"Hello World!")
    assert got[True] == got[False]
    assert stats[False]["routes_reused"] == 0 and stats[False]["answers_folded"] == 0
    assert stats[True]["answers_folded"] > 0
    if not head_memo:       # with the memo, the repeated heads skip the parser and the route
        assert stats[True]["routes_reused"] > 0
    for k in ("requests_static", "requests_python"):
        assert stats[True][k] == stats[False][k]


def test_fold_runs_is_off_by_default_and_reaches_the_parser():
    from kourier_lab.server.config import ServerConfig
    from kourier_lab.server.demo import app
    assert ServerConfig().fold_runs is False
    for fold in (False, True):
        loop = loops.create("c", ServerConfig(loop="c", parser="c", buffer="c", fold_runs=fold), app)
        assert loop.fold_runs is fold and loop.parser.fold_runs is fold
        # the C parser's batch: every head its own info unless folding
        out = loop.parser.parse_heads(REQ * 20)
        assert len(out) == 20
        assert (len({id(i) for _, i in out}) == len(out)) is not fold
