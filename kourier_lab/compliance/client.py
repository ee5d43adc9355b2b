"""Many one-request connections in flight, on one thread, with selectors.

Each payload goes on its own new connection; the reply is read until it has
`enough` bytes (15 = len("HTTP/1.1 200 OK"), as the published tool), the
server closes, the connection is reset, or `timeout` seconds pass.  Sockets we
close first are closed with an RST (SO_LINGER 0) so that ~124 k connections do
not leave the client's ephemeral ports in TIME_WAIT.
"""
import errno
import selectors
import socket
import struct
import time
from dataclasses import dataclass
from typing import Iterable, List, Optional, Tuple

from ..http.responses import parse_status_line

# Outcomes of one exchange.
RESPONSE = "response"      # some bytes came back
CLOSED = "closed"          # orderly close, nothing came back
RESET = "reset"            # connection reset, nothing came back
TIMEOUT = "timeout"        # neither answered nor closed in time
UNREACHABLE = "unreachable"  # connect failed (refused, no route, ...)

_LINGER_RST = struct.pack("ii", 1, 0)


@dataclass
class Reply:
    outcome: str
    head: bytes = b""          # the first bytes received (up to `enough`, maybe more)
    error: str = ""

    @property
    def status(self) -> Optional[int]:
        """Status code from a `HTTP/x.y NNN` start, else None."""
        h = self.head
        if len(h) < 12 or not h.startswith(b"HTTP/") or h[8:9] != b" " or not h[9:12].isdigit():
            return None
        return parse_status_line(h[:12])[0]      # the head may end inside the reason


class _Conn:
    __slots__ = ("idx", "sock", "data", "sent", "buf", "deadline", "connected")

    def __init__(self, idx, sock, data, deadline):
        self.idx = idx
        self.sock = sock
        self.data = data
        self.sent = 0
        self.buf = bytearray()
        self.deadline = deadline
        self.connected = False


def parse_address(text: str) -> Tuple[str, int]:
    """'HOST:PORT' -> (host, port); ValueError with a clear message otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def exchange_many(host: str, port: int, payloads: Iterable[bytes], concurrency: int = 64,
                  timeout: float = 10.0, enough: int = 15, progress=None) -> List[Reply]:
    """Send each payload on a new connection; return one Reply per payload, in order."""
    payloads = list(payloads)
    replies: List[Optional[Reply]] = [None] * len(payloads)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sel = selectors.DefaultSelector()
    live = {}
    next_idx = 0
    done = 0

    def finish(conn: _Conn, reply: Reply, rst: bool):
        nonlocal done
        try:
            sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        if rst:
            try:
                conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
            except OSError:
                pass
        conn.sock.close()
        del live[id(conn)]
        replies[conn.idx] = reply
        done += 1
        if progress is not None:
            progress(1)

    def open_one(idx: int):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Conn(idx, s, payloads[idx], time.monotonic() + timeout)
        live[id(conn)] = conn
        err = s.connect_ex((host, port))
        if err not in (0, errno.EINPROGRESS, errno.EAGAIN):
            finish(conn, Reply(UNREACHABLE, error=errno.errorcode.get(err, str(err))), rst=False)
            return
        sel.register(s, selectors.EVENT_WRITE, conn)

    try:
        while done < len(payloads):
            while next_idx < len(payloads) and len(live) < concurrency:
                open_one(next_idx)
                next_idx += 1
            for key, mask in sel.select(timeout=0.05):
                conn: _Conn = key.data
                s = conn.sock
                if mask & selectors.EVENT_WRITE:
                    if not conn.connected:
                        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        if err:
                            finish(conn, Reply(UNREACHABLE, error=errno.errorcode.get(err, str(err))), rst=False)
                            continue
                        conn.connected = True
                    try:
                        conn.sent += s.send(memoryview(conn.data)[conn.sent:])
                    except BlockingIOError:
                        continue
                    except OSError:
                        # The server closed before taking the whole request;
                        # whatever it answered is still readable.
                        conn.sent = len(conn.data)
                    if conn.sent >= len(conn.data):
                        sel.modify(s, selectors.EVENT_READ, conn)
                    continue
                try:
                    chunk = s.recv(65536)
                except BlockingIOError:
                    continue
                except OSError as e:
                    outcome = RESPONSE if conn.buf else RESET
                    finish(conn, Reply(outcome, bytes(conn.buf), error=str(e)), rst=False)
                    continue
                if not chunk:
                    outcome = RESPONSE if conn.buf else CLOSED
                    finish(conn, Reply(outcome, bytes(conn.buf)), rst=False)
                    continue
                conn.buf += chunk
                if len(conn.buf) >= enough:
                    finish(conn, Reply(RESPONSE, bytes(conn.buf)), rst=True)
            now = time.monotonic()
            for conn in [c for c in live.values() if c.deadline <= now]:
                outcome = RESPONSE if conn.buf else TIMEOUT
                finish(conn, Reply(outcome, bytes(conn.buf)), rst=True)
    finally:
        for conn in list(live.values()):
            conn.sock.close()
        sel.close()
    return replies  # type: ignore[return-value]


def probe(host: str, port: int, path: bytes = b"/hello", timeout: float = 5.0) -> Reply:
    """One valid GET on its own connection (Connection: close); the reply as read."""
    hostport = f"{host}:{port}".encode()
    req = b"GET " + path + b" HTTP/1.1\r\nHost: " + hostport + b"\r\nConnection: close\r\n\r\n"
    return exchange_many(host, port, [req], concurrency=1, timeout=timeout, enough=1 << 20)[0]
