"""The full server over every registered loop x parser x buffer, with real sockets."""
import http.client
import os
import signal
import socket
import time

import pytest

from kourier_lab import loops, spec
from kourier_lab.server.process import ServerProcess, connect, read_responses, read_until_close

COMBOS = loops.combinations()
REQ = b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n"
ARGS = list(spec.CONNECTION_SERVER_ARGS)    # the demo app, 1 s request and 3 s idle timeouts, small limits


@pytest.fixture
def server(connection_server):
    """The stack's shared server (conftest.py): ARGS are the spec corpus's arguments."""
    return connection_server


def test_http_client_get(server):
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    c.request("GET", "/hello")
    r = c.getresponse()
    assert r.status == 200 and r.read() == b"Hello World!"
    assert r.getheader("Content-Type") == "text/plain" and r.getheader("Server") == "kourier-lab"
    assert r.getheader("Date").endswith("GMT")
    # keep-alive: more requests on the same connection
    for path in ("/a", "/static", "/path?x=1"):
        c.request("GET", path)
        r = c.getresponse()
        assert r.status == 200
        body = r.read()
    assert body == b"/path?x=1"
    c.request("GET", "/json", headers={"User-Agent": "t"})
    r = c.getresponse()
    assert r.getheader("Content-Type") == "application/json" and b'"user-agent": "t"' in r.read()
    c.close()


def test_head_404_405_500(server):
    s = connect(server.port)
    s.sendall(b"HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n"
              b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"
              b"GET /boom HTTP/1.1\r\nHost: a\r\n\r\n"
              b"GET /after HTTP/1.1\r\nHost: a\r\n\r\n")
    s.settimeout(5)
    data = b""
    while data.count(b"HTTP/1.1") < 4 or not data.endswith(b"Hello World!"):
        chunk = s.recv(65536)
        assert chunk
        data += chunk
    heads = data.split(b"HTTP/1.1 ")[1:]
    assert [h[:3] for h in heads] == [b"200", b"405", b"500", b"200"]
    assert b"Content-Length: 12\r\n\r\n" in heads[0] and not heads[0].endswith(b"Hello World!")  # HEAD: no body
    assert b"Allow: GET, HEAD" in heads[1]
    s.close()


def test_http10(server):
    s = connect(server.port)
    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    data, closed = read_until_close(s)
    assert closed and data.startswith(b"HTTP/1.1 200 OK") and b"Connection: close" in data
    s = connect(server.port)
    s.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" * 2)
    rs = read_responses(s, 2)
    assert [r[0] for r in rs] == [200, 200] and rs[0][1]["connection"] == "keep-alive"
    s.close()


def test_pipelining_1000_in_one_write(server):
    s = connect(server.port)
    reqs = b"".join(b"GET /path?i=%d HTTP/1.1\r\nHost: a\r\n\r\n" % i for i in range(1000))
    s.sendall(reqs)
    rs = read_responses(s, 1000)
    assert [r[2] for r in rs] == [b"/path?i=%d" % i for i in range(1000)]
    # the static fast path, 1000 identical requests
    s.sendall(REQ * 1000)
    rs = read_responses(s, 1000)
    assert len(rs) == 1000 and all(r[0] == 200 and r[2] == b"Hello World!" for r in rs)
    s.close()


def test_pipelined_split_at_every_byte(server):
    s = connect(server.port)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    data = REQ * 3
    for i in range(len(data)):
        s.sendall(data[i:i + 1])
        if i % 16 == 0:
            time.sleep(0.001)
    rs = read_responses(s, 3)
    assert [r[0] for r in rs] == [200, 200, 200]
    s.close()


def test_bodies(server):
    s = connect(server.port)
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
              b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"3;ext=1\r\nabc\r\n4\r\ndefg\r\n0\r\nX-Trailer: t\r\n\r\n"
              + REQ)
    rs = read_responses(s, 3)
    assert [(r[0], r[2]) for r in rs] == [(200, b"hello"), (200, b"abcdefg"), (200, b"Hello World!")]
    # a body arriving in pieces
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n01234")
    time.sleep(0.05)
    s.sendall(b"56789")
    assert read_responses(s, 1)[0][2] == b"0123456789"
    s.close()


def test_expect_100_continue(server):
    s = connect(server.port)
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
    r = read_responses(s, 1)
    assert r[0][0] == 100
    s.sendall(b"body")
    r = read_responses(s, 1)
    assert r[0][0] == 200 and r[0][2] == b"body"
    s.close()


@pytest.mark.parametrize("raw,status", [
    (b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX : y\r\n\r\n", 400),
    (b"GET / HTTP/1.1\nHost: a\n\n", 400),
    (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    (b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"b" * 5000, 431),
    (b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 70000\r\n\r\n", 413),
    (b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    (b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
], ids=["path", "space-colon", "bare-lf", "505", "414", "431", "413", "bad-chunk", "cl-te"])
def test_bad_requests_answered_then_closed(server, raw, status):
    s = connect(server.port)
    s.sendall(REQ + raw)
    data, closed = read_until_close(s)
    assert closed
    assert data.startswith(b"HTTP/1.1 200 OK")
    assert b"HTTP/1.1 %d " % status in data and b"Connection: close" in data
    assert data.count(b"HTTP/1.1 ") == 2
    # the server still serves
    s = connect(server.port)
    s.sendall(REQ)
    assert read_responses(s, 1)[0][0] == 200
    s.close()


def test_idle_timeout_closes(server):
    s = connect(server.port)
    s.sendall(REQ)
    assert read_responses(s, 1)[0][0] == 200
    t0 = time.monotonic()
    data, closed = read_until_close(s, timeout=10)
    assert closed and data == b"" and 2 < time.monotonic() - t0 < 8


def test_client_reset_mid_request(server):
    for _ in range(20):
        s = connect(server.port)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.sendall(b"GET / HTTP/1.1\r\nHo")
        s.close()        # RST
    s = connect(server.port)
    s.sendall(REQ)
    assert read_responses(s, 1)[0][0] == 200
    s.close()


# --- process-level behaviour (one stack is enough; the loops share it) -------

def _native_combo(loop):
    """The loop with its own kind of parser and buffer when registered, else the first runnable."""
    for lo, p, b in COMBOS:
        if lo == loop and p == b == (loop if loop in ("c", "numba") else "python"):
            return p, b
    return next((p, b) for lo, p, b in COMBOS if lo == loop)


@pytest.mark.parametrize("loop", loops.names())
def test_two_workers_both_serve_and_restart(loop):
    parser, buffer = _native_combo(loop)
    with ServerProcess(*ARGS, loop=loop, parser=parser, buffer=buffer, workers=2) as srv:
        pids = set()
        for _ in range(200):
            c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
            c.request("GET", "/pid")
            pids.add(int(c.getresponse().read()))
            c.close()
            if len(pids) == 2:
                break
        assert len(pids) == 2
        victim = pids.pop()
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 10
        seen = set()
        while time.monotonic() < deadline and len(seen - {victim}) < 2:
            # connections queued on the killed worker's own listener are reset
            # (SO_REUSEPORT gives each worker its own accept queue): retry those
            try:
                c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
                c.request("GET", "/pid")
                seen.add(int(c.getresponse().read()))
                c.close()
            except (OSError, http.client.HTTPException):
                time.sleep(0.05)
        assert len(seen - {victim}) == 2     # a new worker replaced the killed one
        assert any("restarting" in line for line in srv.stderr_lines)


@pytest.mark.parametrize("loop", loops.names())
def test_graceful_stop_finishes_in_flight(loop):
    parser, buffer = _native_combo(loop)
    srv = ServerProcess(*ARGS, loop=loop, parser=parser, buffer=buffer).start()
    s = connect(srv.port)
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab")
    time.sleep(0.2)
    srv.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    s.sendall(b"cd")
    rs = read_responses(s, 1)
    assert rs and rs[0][2] == b"abcd"
    assert srv.proc.wait(10) == 0
    with pytest.raises(OSError):
        connect(srv.port, timeout=1).sendall(REQ)
        raise OSError("still accepting") if False else ConnectionRefusedError()


def test_cli_errors_are_one_line(tmp_path):
    import subprocess
    import sys
    for args, needle in ((["--loop", "nope"], "unknown loop 'nope'"), (["-p", "99999"], "port must be"),
                         (["--request-timeout", "-1"], "must be > 0"), (["--cpus", "999"], "not available"),
                         (["--app", "nomodule:app"], "cannot load --app")):
        r = subprocess.run([sys.executable, "-m", "kourier_lab.cli", "serve", *args], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 2, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], (args, r.stderr)


def test_slow_reader_does_not_starve_others(server):
    """A client that pipelines a lot and never reads: backpressure holds its
    output, and other clients are still served."""
    hog = connect(server.port)
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    hog.setblocking(False)
    sent = 0
    batch = REQ * 512
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1.5:
        try:
            sent += hog.send(batch)
        except BlockingIOError:
            time.sleep(0.01)
        except OSError:
            break        # the request timeout closed the stalled client: also fine
    assert sent < 200 * 1024 * 1024     # the server stopped reading at some point
    other = connect(server.port)
    other.sendall(REQ)
    assert read_responses(other, 1)[0][0] == 200
    other.close()
    hog.close()


@pytest.mark.parametrize("loop", loops.names())
def test_connection_limit(loop):
    parser, buffer = _native_combo(loop)
    with ServerProcess(*ARGS, "--max-connections", "5", loop=loop, parser=parser, buffer=buffer) as srv:
        socks = [connect(srv.port) for _ in range(5)]
        for s in socks:
            s.sendall(REQ)
            assert read_responses(s, 1)[0][0] == 200
        extra = connect(srv.port)
        data, closed = read_until_close(extra, timeout=5)
        assert closed and data.startswith(b"HTTP/1.1 503 ")
        socks[0].close()
        time.sleep(0.2)
        again = connect(srv.port)
        again.sendall(REQ)
        assert read_responses(again, 1)[0][0] == 200
        for s in socks[1:] + [again]:
            s.close()
