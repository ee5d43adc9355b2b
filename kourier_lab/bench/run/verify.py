"""Before measuring a server (up: server/process.py wait_ready): does it answer correctly?

A server that answers 404, the wrong body, or fewer responses than a pipelined
batch asked for would give wrk a fast but meaningless number, so every server
is checked first: one GET (status 200, body "Hello World!"), then a pipelined
batch in one write that must come back as exactly that many correct responses.
Responses are read strictly (server/process.py ResponseReader over http/responses.py).
"""
from __future__ import annotations

import socket
import time
from typing import List, Tuple

from ...server.process import BadResponse, ResponseReader

EXPECTED_BODY = b"Hello World!"


class VerifyError(RuntimeError):
    """The server did not answer as a plaintext benchmark server must."""


def request_bytes(host: str, port: int, path: str = "/hello") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()


def read_response(reader: ResponseReader, deadline: float) -> Tuple[int, List[Tuple[bytes, bytes]], bytes]:
    """(status, headers, body) of the next response (Content-Length or chunked), or VerifyError."""
    try:
        r = reader.next(deadline, strict=True)
    except BadResponse as e:
        raise VerifyError(str(e)) from None
    except OSError as e:
        raise VerifyError(f"connection error while reading: {e}") from None
    if r is None:
        raise VerifyError(reader.why)
    return r.status, r.headers, r.content


def _check(status: int, body: bytes, what: str) -> None:
    if status != 200:
        raise VerifyError(f"{what}: status {status}, expected 200")
    if body != EXPECTED_BODY:
        raise VerifyError(f"{what}: body {body[:40]!r}, expected {EXPECTED_BODY!r}")


def _connect(host: str, port: int, timeout: float) -> socket.socket:
    try:
        return socket.create_connection((host, port), timeout=timeout)
    except OSError as e:
        raise VerifyError(f"cannot connect to {host}:{port}: {e}") from None


def verify_server(host: str, port: int, path: str = "/hello", pipeline: int = 16,
                  timeout: float = 10.0) -> None:
    """Raise VerifyError unless one GET and a `pipeline`-deep batch answer correctly."""
    deadline = time.monotonic() + timeout
    sock = _connect(host, port, timeout)
    with sock:
        reader = ResponseReader(sock)
        req = request_bytes(host, port, path)
        try:
            sock.sendall(req)
        except OSError as e:
            raise VerifyError(f"GET {path}: send failed: {e}") from None
        status, _, body = read_response(reader, deadline)
        _check(status, body, f"GET {path}")
        depth = max(1, pipeline)
        try:
            sock.sendall(req * depth)
        except OSError as e:
            raise VerifyError(f"pipelined batch of {depth}: send failed: {e}") from None
        for i in range(depth):
            try:
                status, _, body = read_response(reader, deadline)
            except VerifyError as e:
                raise VerifyError(f"pipelined batch of {depth}: response {i + 1}: {e}") from None
            _check(status, body, f"pipelined batch of {depth}, response {i + 1}")
        # Nothing beyond the batch may arrive: extra bytes mean a miscounted batch.
        sock.settimeout(0.05)
        try:
            extra = bytes(reader.buf) or sock.recv(1)
        except (socket.timeout, BlockingIOError):
            extra = b""
        except OSError:
            extra = b""
        if extra:
            raise VerifyError(f"pipelined batch of {depth}: more bytes than {depth} responses")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------
# Bytes per request: what the load tool sends, what the server answers


def load_request(host: str, port: int, path: str = "/hello", browser: bool = False) -> bytes:
    """One request exactly as wrk sends it for http://host:port/path.

    wrk.format writes the request line, Host (from the URL, with its port),
    the script's headers, and a blank line; no Content-Length without a body.
    Lua's table order decides the header order under wrk, which changes no byte
    count; here Host comes first, then pipeline.lua's order.
    """
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}"]
    if browser:
        from ..load.wrk import browser_headers
        lines += [f"{name}: {value}" for name, value in browser_headers()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def measure_bytes(host: str, port: int, path: str = "/hello", browser: bool = False,
                  timeout: float = 10.0) -> Tuple[int, int]:
    """(request_bytes, response_bytes) for one request of the load's shape.

    request_bytes is the length of load_request(); response_bytes the length of
    the whole response read back off the socket (status line, headers and the
    body its Content-Length, or chunked framing, delimits).
    """
    req = load_request(host, port, path, browser)
    deadline = time.monotonic() + timeout
    sock = _connect(host, port, timeout)
    with sock:
        reader = ResponseReader(sock)
        try:
            sock.sendall(req)
        except OSError as e:
            raise VerifyError(f"GET {path}: send failed: {e}") from None
        status, _, body = read_response(reader, deadline)
        _check(status, body, f"GET {path}")
        return len(req), reader.consumed


def verify_requests(host: str, port: int, requests: List[bytes], any_body: bool = False,
                    timeout: float = 10.0) -> List[int]:
    """Send `requests` in one write (a corpus batch, as wrk sends it) and raise
    VerifyError unless exactly that many responses come back, each 200 (with the
    benchmark app's body unless any_body); returns each response's size in bytes."""
    deadline = time.monotonic() + timeout
    sock = _connect(host, port, timeout)
    depth = len(requests)
    sizes = []
    with sock:
        reader = ResponseReader(sock)
        try:
            sock.sendall(b"".join(requests))
        except OSError as e:
            raise VerifyError(f"batch of {depth} corpus requests: send failed: {e}") from None
        for i, req in enumerate(requests):
            first = req.split(b"\r\n", 1)[0].decode("latin-1")
            before = reader.consumed
            try:
                status, _, body = read_response(reader, deadline)
            except VerifyError as e:
                raise VerifyError(f"batch of {depth} corpus requests: response {i + 1} "
                                  f"({first}): {e}") from None
            if any_body:
                if status != 200:
                    raise VerifyError(f"batch of {depth} corpus requests: response {i + 1} "
                                      f"({first}): status {status}, expected 200")
            else:
                _check(status, body, f"batch of {depth} corpus requests, response {i + 1} "
                                     f"({first})")
            sizes.append(reader.consumed - before)
        sock.settimeout(0.05)
        try:
            extra = bytes(reader.buf) or sock.recv(1)
        except (socket.timeout, BlockingIOError, OSError):
            extra = b""
        if extra:
            raise VerifyError(f"batch of {depth} corpus requests: more bytes than {depth} "
                              f"responses")
    return sizes
