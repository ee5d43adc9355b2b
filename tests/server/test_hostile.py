"""Hostile and faulty clients against real servers (issue 7).

Every case ends with two checks: the server still answers a normal request,
and its workers hold no more file descriptors than before the case (counted in
/proc/<worker pid>/fd; workers are the supervisor's children).  The cheap cases
run on every runnable stack (one server per stack, shared by the cases); the
costlier ones (slow reader, SIGKILL under load) on the reference stacks.  Everything is bounded: short request
timeout, small connection limit, socket timeouts on every read.
"""
import os
import signal
import socket
import struct
import threading
import time

import pytest

from kourier_lab import loops
from kourier_lab.server.process import ServerProcess, connect, read_responses, read_until_close

REQ = b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"
REQUEST_TIMEOUT = 1.0
MAX_CONNECTIONS = 32
ARGS = ("--request-timeout", str(REQUEST_TIMEOUT), "--idle-timeout", "30",
        "--max-connections", str(MAX_CONNECTIONS), "--graceful-timeout", "2")
COMBOS = ["/".join(c) for c in loops.combinations()]
MAIN = [s for s in ("python/python/python", "asyncio/python/python", "c/c/c", "uring/c/c") if s in COMBOS]
RST = struct.pack("ii", 1, 0)        # SO_LINGER on, 0 s: close() sends a reset

pytestmark = pytest.mark.timeout(120)


# --- helpers -------------------------------------------------------------------------

def children(pid):
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    data = f.read()
            except OSError:
                continue
            if int(data[data.rfind(b")") + 2:].split()[1]) == pid:
                out.append(int(name))
    return sorted(out)


def worker_fds(srv):
    total = 0
    for pid in children(srv.pid):
        try:
            total += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            pass
    return total


def worker_rss_kb(srv):
    total = 0
    for pid in children(srv.pid):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def served(port):
    s = connect(port)
    try:
        s.sendall(REQ)
        rs = read_responses(s, 1, timeout=10)
        return bool(rs) and rs[0][0] == 200
    finally:
        s.close()


def settle_fds(srv, baseline, timeout=5.0):
    """The workers' descriptor count once it is back at (or under) baseline, or
    the last count seen after `timeout` (closing is asynchronous)."""
    deadline = time.monotonic() + timeout
    n = worker_fds(srv)
    while n > baseline and time.monotonic() < deadline:
        time.sleep(0.05)
        n = worker_fds(srv)
    return n


def start(stack, *extra, workers=1):
    loop, parser, buffer = stack.split("/")
    srv = ServerProcess(*ARGS, *extra, loop=loop, parser=parser, buffer=buffer,
                        workers=workers).start()
    assert served(srv.port)
    return srv


@pytest.fixture(scope="module", params=COMBOS)
def server(request):
    srv = start(request.param)
    srv.stack = request.param
    srv.baseline_fds = worker_fds(srv)
    yield srv
    srv.stop()


@pytest.fixture
def main_server(server):
    """The server fixture, for the costlier cases: the reference stacks only."""
    if server.stack not in MAIN:
        pytest.skip("costlier case: run on the reference stacks " + ", ".join(MAIN))
    return server


def assert_healthy(srv):
    assert srv.proc.poll() is None, "the supervisor exited"
    assert served(srv.port), "the server no longer answers"
    n = settle_fds(srv, srv.baseline_fds)
    assert n <= srv.baseline_fds, f"worker descriptors {srv.baseline_fds} -> {n}: leaked"


# --- the cases (each one a function, so the compact sequence reuses them) ----------------

def case_slowloris(srv):
    """Headers trickled a byte at a time: 408 after the request timeout, while
    other clients are served meanwhile."""
    s = connect(srv.port)
    got = {}

    def trickle():
        data = b""
        head = b"GET /hello HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 200
        t0 = time.monotonic()
        for byte in head:
            if time.monotonic() - t0 > REQUEST_TIMEOUT * 6:
                break
            try:
                s.send(bytes([byte]))
            except OSError:
                break
            try:
                s.settimeout(0.05)
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
                if b"\r\n\r\n" in data:
                    break
            except socket.timeout:
                pass
            except OSError:
                break
        got["data"] = data

    t = threading.Thread(target=trickle)
    t.start()
    others = [served(srv.port) for _ in range(5)]
    t.join(REQUEST_TIMEOUT * 10)
    assert not t.is_alive()
    s.close()
    assert all(others), "a slowloris client starved the others"
    assert got["data"].startswith(b"HTTP/1.1 408 "), got["data"][:80]


def case_send_after_408(srv):
    s = connect(srv.port)
    s.sendall(b"GET /hello HTTP/1.1\r\nHost:")
    data, closed = read_until_close(s, timeout=REQUEST_TIMEOUT * 8)
    assert closed and data.startswith(b"HTTP/1.1 408 ")
    for _ in range(3):            # the server closed: these may fail, must not hurt it
        try:
            s.sendall(b" t\r\n\r\n" + REQ * 10)
        except OSError:
            break
        time.sleep(0.05)
    s.close()


def case_resets_mid_request(srv, n=30):
    for i in range(n):
        s = connect(srv.port)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RST)
        s.sendall((b"GET /hello HTTP/1.1\r\nHost: t\r\nX-Part: " + b"b" * i)
                  if i % 2 else b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nab")
        s.close()


def case_resets_mid_response(srv, n=10):
    """Many pipelined requests, a little of the answer read, then a reset: the
    server is writing when the reset arrives."""
    for _ in range(n):
        s = connect(srv.port)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RST)
        s.sendall(REQ * 2000)
        s.settimeout(5)
        try:
            s.recv(1000)
        except OSError:
            pass
        s.close()


def case_half_close(srv):
    """shutdown(SHUT_WR) after the requests: every response still arrives."""
    s = connect(srv.port)
    s.sendall(REQ * 3)
    s.shutdown(socket.SHUT_WR)
    rs = read_responses(s, 3, timeout=10)
    # a reset, not a FIN: whether the server closes a half-closed connection
    # by itself is test_half_closed_connections_closed_promptly's question
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RST)
    s.close()
    assert [r[0] for r in rs] == [200, 200, 200]


def case_flood(srv, n=MAX_CONNECTIONS * 3):
    """More connections than --max-connections: the extra ones get 503 and a
    close (or a refusal); the ones under the limit are served; afterwards all is
    as before."""
    socks = []
    for _ in range(n):
        try:
            socks.append(connect(srv.port, timeout=5))
        except OSError:
            pass                   # refused: fine
    time.sleep(0.3)
    rejected = held = 0
    for s in socks:
        s.settimeout(0.05)
        try:
            data = s.recv(4096)
            if not data or data.startswith(b"HTTP/1.1 503 "):
                rejected += 1
            else:
                raise AssertionError(f"unexpected unsolicited data: {data[:60]!r}")
        except socket.timeout:
            held += 1
        except ConnectionResetError:
            rejected += 1
    assert held <= MAX_CONNECTIONS
    assert rejected >= n - MAX_CONNECTIONS
    # the held ones are real connections: they are served
    for s in socks:
        s.settimeout(5)
    live = 0
    for s in socks[:5]:
        try:
            s.sendall(REQ)
            rs = read_responses(s, 1, timeout=5)
            live += bool(rs) and rs[0][0] == 200
        except OSError:
            pass
    assert live >= 1
    for s in socks:
        s.close()


# --- per-case tests --------------------------------------------

def test_slowloris_408_others_served(server):
    case_slowloris(server)
    assert_healthy(server)


def test_send_after_408(server):
    case_send_after_408(server)
    assert_healthy(server)


def test_resets_mid_request(server):
    case_resets_mid_request(server)
    assert_healthy(server)


def test_resets_mid_response(server):
    case_resets_mid_response(server)
    assert_healthy(server)


def test_half_closed_socket_still_answered(server):
    case_half_close(server)
    assert_healthy(server)


def test_flood_past_max_connections(server):
    case_flood(server)
    assert_healthy(server)


def test_slow_reader_memory_bounded(main_server):
    """Pipelining without ever reading: the server stops reading once its queued
    output passes its bound, so its RSS does not follow what the client sends;
    others are served meanwhile; closing the hog frees everything."""
    server = main_server
    before = worker_rss_kb(server)
    hog = connect(server.port)
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    hog.setblocking(False)
    batch = REQ * 1024
    sent = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < 2.0 and sent < 256 << 20:
        try:
            sent += hog.send(batch)
        except BlockingIOError:
            time.sleep(0.01)
        except OSError:
            break
    peak = worker_rss_kb(server)
    assert served(server.port)
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RST)
    hog.close()
    # ~150 bytes of response per 32-byte request: unbounded queuing of what was
    # sent would be (sent / 32 * 150) bytes; the bound keeps it to a few MB.
    assert peak - before < 48 * 1024, (f"worker RSS grew {(peak - before) / 1024:.0f} MB "
                                       f"for {sent / 1e6:.1f} MB of unread pipelined requests")
    assert_healthy(server)


@pytest.mark.parametrize("stack", MAIN)
def test_worker_sigkill_under_load(stack):
    """Two workers under load from four threads; one is SIGKILLed: the supervisor
    starts a new one, the other keeps serving, requests keep succeeding."""
    srv = start(stack, workers=2)
    try:
        workers = children(srv.pid)
        assert len(workers) == 2
        stop = threading.Event()
        log = []                         # (time, ok)

        def client():
            s = None
            while not stop.is_set():
                try:
                    if s is None:
                        s = connect(srv.port, timeout=3)
                    s.sendall(REQ)
                    rs = read_responses(s, 1, timeout=3)
                    ok = bool(rs) and rs[0][0] == 200
                    log.append((time.monotonic(), ok))
                    if not ok:
                        s.close()
                        s = None
                except OSError:
                    log.append((time.monotonic(), False))
                    if s is not None:
                        s.close()
                    s = None
                    time.sleep(0.01)
            if s is not None:
                s.close()

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.7)
        victim, survivor = workers
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            now = children(srv.pid)
            if len(now) == 2 and victim not in now:
                break
            time.sleep(0.05)
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join(10)
        replaced = children(srv.pid)
        assert victim not in replaced and len(replaced) == 2, "the killed worker was not replaced"
        assert survivor in replaced, "the surviving worker died too"
        after = [ok for t, ok in log if t > killed_at]
        assert sum(after) > 10, "requests stopped succeeding after the kill"
        assert after[-5:] == [True] * 5, "requests still failing after the restart"
        assert sum(1 for t, ok in log if t <= killed_at and ok) > 10
        assert served(srv.port)
    finally:
        srv.stop()


@pytest.mark.parametrize("stack", COMBOS)
def test_half_closed_connections_closed_promptly(stack):
    """Clients that half-close right after their request: answered, then closed
    by the server well before the idle timeout (30 s here), descriptors freed."""
    srv = start(stack)
    try:
        baseline = worker_fds(srv)
        socks = []
        for _ in range(20):
            s = connect(srv.port)
            s.sendall(REQ)
            s.shutdown(socket.SHUT_WR)
            socks.append(s)
        answered = lingering = 0
        time.sleep(2.0)                 # far more than answering and closing takes
        for s in socks:
            data, closed = read_until_close(s, timeout=0.05)
            answered += data.count(b"HTTP/1.1 200 ")
            lingering += not closed
        assert answered == 20
        assert lingering == 0, f"{lingering} of 20 half-closed connections still open after 2 s"
        assert settle_fds(srv, baseline) <= baseline
        for s in socks:
            s.close()
    finally:
        srv.stop()


DIAGONAL = [s for s in COMBOS if len(set(s.split("/"))) == 1 or s == "asyncio/python/python"]


@pytest.mark.parametrize("stack", DIAGONAL)
def test_bad_requests_do_not_grow_memory(stack):
    """Many connections that each send a malformed request (answered with an
    error, then closed): the worker's RSS stays where it was."""
    bad = (b"G(T / HTTP/1.1\r\nHost: t\r\n\r\n", b"GET / HTTP/9.9\r\nHost: t\r\n\r\n",
           b"GET / HTTP/1.1\r\nHost t\r\n\r\n", b"GET /\x00 HTTP/1.1\r\nHost: t\r\n\r\n")

    def send_bad(count):
        for i in range(count):
            s = connect(srv.port)
            s.sendall(bad[i % len(bad)])
            data, closed = read_until_close(s, timeout=5)
            s.close()
            assert closed and data[9:10] in (b"4", b"5"), data[:40]

    srv = start(stack)
    try:
        baseline = worker_fds(srv)
        send_bad(200)                      # first-time paths, allocator warm-up
        before = worker_rss_kb(srv)
        send_bad(600)
        time.sleep(0.3)
        grown = worker_rss_kb(srv) - before
        assert grown < 3 * 1024, f"worker RSS grew {grown} kB over 600 bad requests"
        assert settle_fds(srv, baseline) <= baseline
        assert served(srv.port)
    finally:
        srv.stop()
