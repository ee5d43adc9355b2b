"""A many-connections load generator: one client process, epoll, non-blocking.

Why our own: Debian's wrk has no `-b` (bind to a source address range), so
one wrk process can open at most one ephemeral port range of connections to
one server address, and every wrk connection is also one of wrk's file
descriptors (at most RLIMIT_NOFILE per process).  This client binds each
connection to a source address in 127.0.0.0/8 before connecting (Linux
routes all of 127/8 to lo, so 127.0.0.1 still answers), so ports are never
the limit; the parent (`connections.ConnectionLoad`) starts as many of these
processes as the per-process open-files limit requires.

One process, three phases, driven by lines on stdin / JSON lines on stdout:

  1. connect   open `connections` sockets (bind() before connect(), at most
               `concurrency` connects in flight so the listen backlog does not
               overflow), then print {"phase": "connected", ...}
  2. "go"      send keep-alive GETs at `rate` requests/s in all, round robin
               over the idle connections (at most one request in flight per
               connection: the post's load had no pipelining either) for
               `duration` seconds; print {"phase": "done", ...} with counts,
               errors and a latency histogram, connections still open
  3. "close"   close everything and exit (the parent samples the server with
               every connection still open between 2 and 3)

Latency is measured from send() to the last byte of the response and kept as
a log-bucket histogram (2 % wide buckets), so the parent can merge processes
and read percentiles.

    python -m kourier_lab.stress.loadgen '<json config>'
"""
from __future__ import annotations

import errno
import json
import math
import os
import resource
import select
import socket
import sys
import time
from typing import Dict, List, Optional

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
HIST_BASE = 1.02            # latency histogram: bucket i holds [1.02^i, 1.02^(i+1)) µs
_LOG_BASE = math.log(HIST_BASE)


def raise_nofile() -> Dict[str, int]:
    """Soft RLIMIT_NOFILE -> hard (what an unprivileged process may do); both values."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    before = soft
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return {"soft_before": before, "soft": soft, "hard": hard}


def source_address(index: int, per_address: int, first_host: int = 2) -> str:
    """The source address of connection `index`: 127.0.0.<first_host> for the
    first `per_address` connections, then the next address, across 127.0.0.0/8."""
    n = first_host + index // per_address
    if n >= 1 << 24:
        raise ValueError("more connections than 127.0.0.0/8 has addresses x ports")
    return f"127.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


def percentiles_from_hist(hist: Dict[int, int], pcts=(50, 75, 90, 99)) -> Dict[int, float]:
    """Percentiles in ms of a merged histogram (bucket midpoints); NaN when empty."""
    total = sum(hist.values())
    out = {p: math.nan for p in pcts}
    if not total:
        return out
    keys = sorted(hist)
    for p in pcts:
        want = total * p / 100.0
        seen = 0
        for k in keys:
            seen += hist[k]
            if seen >= want:
                out[p] = HIST_BASE ** (k + 0.5) / 1000.0
                break
    return out


def _bucket(latency_s: float) -> int:
    us = max(latency_s * 1e6, 1.0)
    return int(math.log(us) / _LOG_BASE)


class _Conn:
    __slots__ = ("sock", "fd", "busy", "sent_at", "buf", "open")

    def __init__(self, sock):
        self.sock, self.fd = sock, sock.fileno()
        self.busy = False
        self.sent_at = 0.0
        self.buf = b""
        self.open = True


def _response_end(buf: bytes) -> int:
    """Length of the first complete response in buf, or 0; -1 when buf is not HTTP."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return 0 if len(buf) < 65536 else -1
    head = buf[:head_end].lower()
    i = head.find(b"\r\ncontent-length:")
    if i >= 0:
        j = head.find(b"\r\n", i + 2)
        try:
            n = int(head[i + 17:j if j >= 0 else len(head)].strip())
        except ValueError:
            return -1
        end = head_end + 4 + n
        return end if len(buf) >= end else 0
    if b"\r\ntransfer-encoding:" in head and b"chunked" in head:
        k = buf.find(b"\r\n0\r\n\r\n", head_end + 2)
        return k + 7 if k >= 0 else 0
    return head_end + 4          # no body (e.g. 204/304) -- our servers always send a length


class Client:
    def __init__(self, cfg: dict):
        self.host = cfg.get("host", "127.0.0.1")
        self.port = int(cfg["port"])
        self.n = int(cfg["connections"])
        self.first_index = int(cfg.get("first_index", 0))
        self.per_address = int(cfg.get("per_address", 20000))
        self.concurrency = int(cfg.get("concurrency", 256))
        self.connect_timeout = float(cfg.get("connect_timeout", 120.0))
        # A server that stops accepting (its own cap) leaves connects hanging
        # in the backlog or SYN retries: give up after this long without progress.
        self.connect_stall = float(cfg.get("connect_stall", 15.0))
        self.rate = float(cfg.get("rate", 1000.0))
        self.duration = float(cfg.get("duration", 10.0))
        self.request_timeout = float(cfg.get("request_timeout", 10.0))
        path = cfg.get("path", "/hello")
        self.request = (f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n\r\n").encode()
        self.conns: Dict[int, _Conn] = {}
        self.errors: Dict[str, int] = {}
        self.limits = raise_nofile()
        self.ep = select.epoll()

    def _err(self, kind: str, n: int = 1) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + n

    # -- phase 1 -------------------------------------------------------------
    def connect_all(self) -> dict:
        pending: Dict[int, socket.socket] = {}
        next_i = 0
        stop_opening = ""
        t0 = last_progress = time.monotonic()
        deadline = t0 + self.connect_timeout
        while (next_i < self.n and not stop_opening) or pending:
            now = time.monotonic()
            stalled = pending and now - last_progress > self.connect_stall
            if now > deadline or stalled:
                self._err("connect_timeout", len(pending))
                for s in pending.values():
                    self.ep.unregister(s.fileno())
                    s.close()
                pending.clear()
                if next_i < self.n or stalled:
                    stop_opening = stop_opening or (
                        f"no connection completed for {self.connect_stall:g} s" if stalled
                        else "connect phase deadline")
                break
            while next_i < self.n and len(pending) < self.concurrency and not stop_opening:
                try:
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                except OSError as e:
                    self._err(errno.errorcode.get(e.errno, str(e.errno)))
                    stop_opening = f"client socket(): {os.strerror(e.errno)}"
                    break
                s.setblocking(False)
                try:
                    s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                    s.bind((source_address(self.first_index + next_i, self.per_address), 0))
                    s.connect_ex((self.host, self.port))
                except OSError as e:
                    s.close()
                    self._err(errno.errorcode.get(e.errno, str(e.errno)))
                    stop_opening = f"client bind/connect: {os.strerror(e.errno)}"
                    break
                next_i += 1
                pending[s.fileno()] = s
                self.ep.register(s.fileno(), select.EPOLLOUT)
            for fd, ev in self.ep.poll(0.05):
                s = pending.pop(fd, None)
                if s is None:
                    continue
                last_progress = time.monotonic()
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    self.ep.unregister(fd)
                    s.close()
                    self._err(errno.errorcode.get(err, str(err)))
                    continue
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.ep.modify(fd, select.EPOLLIN | select.EPOLLRDHUP)
                self.conns[fd] = _Conn(s)
        # Servers at their connection limit accept and then answer 503/close:
        # give those a moment to show up before reporting what is held.
        self._drain_unsolicited(0.3)
        return {"phase": "connected", "attempted": next_i, "held": self._held(),
                "connect_s": time.monotonic() - t0, "errors": self.errors,
                "stopped": stop_opening, "nofile": self.limits}

    def _held(self) -> int:
        return sum(1 for c in self.conns.values() if c.open)

    def _close_conn(self, c: _Conn, kind: str) -> None:
        if c.open:
            c.open = False
            self._err(kind)
            try:
                self.ep.unregister(c.fd)
            except OSError:
                pass
            c.sock.close()

    def _drain_unsolicited(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            for fd, ev in self.ep.poll(left):
                c = self.conns.get(fd)
                if c is None or not c.open or c.busy:
                    continue
                try:
                    data = c.sock.recv(65536)
                except OSError:
                    data = b""
                self._close_conn(c, "rejected_503" if data.startswith(b"HTTP/1.1 503")
                                 else "closed_by_server")

    # -- phase 2 -------------------------------------------------------------
    def load(self) -> dict:
        hist: Dict[int, int] = {}
        statuses: Dict[str, int] = {}
        order: List[_Conn] = [c for c in self.conns.values() if c.open]
        cursor = 0
        sent = done = 0
        behind = 0                 # sends skipped because every connection was busy
        t0 = time.monotonic()
        end = t0 + self.duration
        request = self.request
        next_timeout_check = t0 + 0.25
        while True:
            now = time.monotonic()
            if now >= end:
                break
            due = int(self.rate * (now - t0)) - sent - behind
            tries = 0
            while due > 0 and order and tries < len(order):
                c = order[cursor]
                cursor = (cursor + 1) % len(order)
                tries += 1
                if c.busy or not c.open:
                    continue
                try:
                    c.sock.send(request)
                except OSError:
                    self._close_conn(c, "send_failed")
                    continue
                c.busy, c.sent_at = True, now
                sent += 1
                due -= 1
            if due > 0:
                behind += due
            for fd, ev in self.ep.poll(min(0.005, max(0.0, end - now))):
                c = self.conns.get(fd)
                if c is None or not c.open:
                    continue
                try:
                    data = c.sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    self._close_conn(c, "closed_by_server")
                    continue
                if not c.busy:
                    self._close_conn(c, "unsolicited_data")
                    continue
                c.buf += data
                n = _response_end(c.buf)
                if n < 0:
                    self._close_conn(c, "bad_response")
                    continue
                if n:
                    t = time.monotonic()
                    status = c.buf[9:12].decode("latin-1", "replace")
                    statuses[status] = statuses.get(status, 0) + 1
                    if not status.startswith("2"):
                        self._err("non_2xx")
                    b = _bucket(t - c.sent_at)
                    hist[b] = hist.get(b, 0) + 1
                    done += 1
                    c.busy, c.buf = False, c.buf[n:]
            # a request outstanding longer than request_timeout: count it once
            if self.request_timeout and now >= next_timeout_check:
                next_timeout_check = now + 0.25
                for c in order:
                    if c.open and c.busy and now - c.sent_at > self.request_timeout:
                        self._close_conn(c, "timeout")
        wall = time.monotonic() - t0
        in_flight = sum(1 for c in order if c.open and c.busy)
        return {"phase": "done", "sent": sent, "responses": done, "in_flight": in_flight,
                "behind": behind, "wall_s": wall, "held": self._held(),
                "errors": self.errors, "statuses": statuses,
                "hist": {str(k): v for k, v in hist.items()}}

    def close_all(self) -> None:
        for c in self.conns.values():
            if c.open:
                c.open = False
                c.sock.close()
        self.ep.close()


def _emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _wait_line(expect: str, timeout: float) -> Optional[str]:
    r, _, _ = select.select([sys.stdin], [], [], timeout)
    if not r:
        return None
    line = sys.stdin.readline().strip()
    return line if line == expect else None


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.stderr.write("usage: python -m kourier_lab.stress.loadgen '<json config>'\n")
        return 2
    cfg = json.loads(argv[0])
    client = Client(cfg)
    _emit(client.connect_all())
    # The parent says "go" once every client process is connected; a parent
    # that vanished (EOF) or never answers ends us: every load stops by itself.
    if _wait_line("go", float(cfg.get("go_timeout", 600.0))) is None:
        client.close_all()
        return 1
    _emit(client.load())
    _wait_line("close", float(cfg.get("close_timeout", 120.0)))
    client.close_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
