"""native/ceiling.c, the reference responder: the server's exact bytes, every request answered
however its bytes are split, and verify.measure_bytes against it and against our server."""
import re
import socket
import subprocess
import time
from email.utils import parsedate_to_datetime

import pytest

from kourier_lab.bench.experiment.ceiling import build_ceiling, ceiling_command, uring_unavailable
from kourier_lab.bench.run.verify import free_port, load_request, measure_bytes, verify_server
from kourier_lab.server.app import benchmark_response, http_date
from kourier_lab.server.process import ServerProcess, wait_ready

HOST = "127.0.0.1"
PRESETS = ("default", "kourier")
DATE = re.compile(rb"\r\nDate: ([^\r]*)\r\n")


URING_WHY = uring_unavailable()
# the io_uring mode (ceiling --uring): the same bytes and scan over the other interface
MODES = [(p, False) for p in PRESETS] + [
    pytest.param(("default", True), id="default-uring",
                 marks=pytest.mark.skipif(URING_WHY is not None, reason=f"uring: {URING_WHY}"))]


@pytest.fixture(scope="module", params=MODES)
def ceiling(request):
    preset, uring = request.param
    port = free_port()
    proc = subprocess.Popen(ceiling_command(port, None, preset, uring=uring))
    try:
        wait_ready(HOST, port, proc)
        yield preset, port
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def connect(port):
    s = socket.create_connection((HOST, port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_exactly(s, n):
    data = bytearray()
    while len(data) < n:
        chunk = s.recv(min(1 << 20, n - len(data)))
        assert chunk, f"closed after {len(data)} of {n} bytes"
        data += chunk
    return bytes(data)


def assert_nothing_more(s):
    s.settimeout(0.1)
    try:
        extra = s.recv(1)
    except socket.timeout:
        extra = b""
    s.settimeout(10)
    assert extra == b"", "more bytes than the responses asked for"


def check_response(preset, raw, now=None):
    """raw is benchmark_response(preset) with a valid Date near now (when given)."""
    m = DATE.search(raw)
    assert m, raw
    date = m.group(1)
    assert raw == benchmark_response(preset, date=date)
    parsed = parsedate_to_datetime(date.decode())
    assert http_date(parsed.timestamp()) == date          # the server's exact format
    if now is not None:
        assert abs(parsed.timestamp() - now) <= 3


def check_responses(preset, data, count):
    size = len(benchmark_response(preset))
    assert len(data) == count * size
    for i in range(0, len(data), size):
        check_response(preset, data[i:i + size])


def test_response_is_the_servers_bytes_with_a_current_date(ceiling):
    preset, port = ceiling
    with connect(port) as s:
        for _ in range(3):
            s.sendall(load_request(HOST, port))
            raw = read_exactly(s, len(benchmark_response(preset)))
            check_response(preset, raw, now=time.time())
        assert_nothing_more(s)


def test_date_is_rewritten_each_second(ceiling):
    preset, port = ceiling
    size = len(benchmark_response(preset))
    with connect(port) as s:
        s.sendall(load_request(HOST, port))
        first = DATE.search(read_exactly(s, size)).group(1)
        time.sleep(1.1)
        s.sendall(load_request(HOST, port))
        second = DATE.search(read_exactly(s, size)).group(1)
    assert parsedate_to_datetime(second.decode()) > parsedate_to_datetime(first.decode())


def test_request_split_at_every_byte_is_answered_once(ceiling):
    preset, port = ceiling
    req = load_request(HOST, port)
    size = len(benchmark_response(preset))
    with connect(port) as s:
        for cut in range(1, len(req)):
            s.sendall(req[:cut])
            time.sleep(0.005)             # a separate read for each part
            s.sendall(req[cut:])
            check_response(preset, read_exactly(s, size))
        # one byte per write: every terminator byte in its own read
        for byte in req * 2:
            s.sendall(bytes([byte]))
            time.sleep(0.001)
        check_responses(preset, read_exactly(s, 2 * size), 2)
        assert_nothing_more(s)


def test_terminators_never_overlap():
    """"\\r\\n\\r\\n\\r\\n" is one terminator and a stray CRLF, as a byte-by-byte matcher
    counts it, also when the read boundary falls inside it."""
    port = free_port()
    proc = subprocess.Popen(ceiling_command(port))
    try:
        wait_ready(HOST, port, proc)
        size = len(benchmark_response())
        with connect(port) as s:
            s.sendall(b"GET / HTTP/1.1\r\n\r\n\r\n")
            check_responses("default", read_exactly(s, size), 1)
            assert_nothing_more(s)
            s.sendall(b"GET / HTTP/1.1\r\n\r\n")
            time.sleep(0.02)
            s.sendall(b"\r\n")
            time.sleep(0.02)
            s.sendall(b"GET / HTTP/1.1\r\n\r\n")
            check_responses("default", read_exactly(s, 2 * size), 2)
            assert_nothing_more(s)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_pipelined_batch_of_256_gets_256_responses(ceiling):
    preset, port = ceiling
    req = load_request(HOST, port)
    size = len(benchmark_response(preset))
    with connect(port) as s:
        for _ in range(4):
            s.sendall(req * 256)
            check_responses(preset, read_exactly(s, 256 * size), 256)
        assert_nothing_more(s)
    verify_server(HOST, port, pipeline=256)


def test_browser_requests_16_deep_are_answered(ceiling):
    preset, port = ceiling
    req = load_request(HOST, port, browser=True)
    assert 450 < len(req) < 700 and req.count(b"\r\n") == 14
    size = len(benchmark_response(preset))
    with connect(port) as s:
        for _ in range(8):
            s.sendall(req * 16)
            check_responses(preset, read_exactly(s, 16 * size), 16)
        # the same stream cut into writes that ignore request boundaries
        stream = req * 40
        for i in range(0, len(stream), 997):
            s.sendall(stream[i:i + 997])
            time.sleep(0.002)
        check_responses(preset, read_exactly(s, 40 * size), 40)
        assert_nothing_more(s)


def test_a_reader_slower_than_the_writer_gets_every_response_whole(ceiling):
    """More owed than the socket takes: short writes, EPOLLOUT, a cut response's remainder
    (kept whole across the once-a-second Date rewrite)."""
    preset, port = ceiling
    size = len(benchmark_response(preset))
    count = 20000
    with connect(port) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.sendall(load_request(HOST, port) * count)
        data = bytearray()
        deadline = time.monotonic() + 30
        while len(data) < count * size and time.monotonic() < deadline:
            data += s.recv(32768)
            time.sleep(0.004)
        check_responses(preset, bytes(data), count)
        assert_nothing_more(s)


def test_measure_bytes_on_the_ceiling(ceiling):
    preset, port = ceiling
    size = len(benchmark_response(preset))
    assert measure_bytes(HOST, port, "/hello") == (len(load_request(HOST, port, "/hello")), size)
    assert measure_bytes(HOST, port, "/hello", browser=True) == (
        len(load_request(HOST, port, "/hello", browser=True)), size)
    assert measure_bytes(HOST, port, "/")[0] == len(f"GET / HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n")


@pytest.mark.parametrize("preset", PRESETS)
def test_measure_bytes_on_our_server(preset):
    with ServerProcess("--response", preset, loop="c", parser="c", buffer="c") as srv:
        size = len(benchmark_response(preset))
        for browser in (False, True):
            req, resp = measure_bytes(HOST, srv.port, "/hello", browser=browser)
            assert req == len(load_request(HOST, srv.port, "/hello", browser=browser))
            assert resp == size


def test_template_without_date_is_sent_verbatim_and_bad_usage_exits_2():
    binary = str(build_ceiling())
    fixed = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nHello World!"
    port = free_port()
    proc = subprocess.Popen([binary, str(port), "--response", fixed.hex()])
    try:
        wait_ready(HOST, port, proc)
        with connect(port) as s:
            s.sendall(load_request(HOST, port) * 3)
            assert read_exactly(s, 3 * len(fixed)) == fixed * 3
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    for args in ([str(port)], [str(port), "--response", "abc"], [str(port), "--response", "zz"],
                 [str(port), "--response",
                  b"HTTP/1.1 200 OK\r\nDate: Tue\r\nContent-Length: 0\r\n\r\n".hex()]):
        r = subprocess.run([binary, *args], capture_output=True, timeout=10)
        assert r.returncode == 2 and r.stderr, args
