"""Start a real server process and talk to it: the lab's one starter and one socket reader.

    with ServerProcess(loop="python", parser="python", buffer="python") as srv:
        s = connect(srv.port); s.sendall(b"GET / HTTP/1.1\\r\\nHost: a\\r\\n\\r\\n")
        [(status, headers, body)] = read_responses(s, 1)

Every server the lab starts (a stack's `kourier-lab serve`, the ceiling, in
the bench, stress, profile, compliance and tests) goes through `launch`: a
session of its own, registered with procs, so that `procs.stop` can end its
whole group and tree; `wait_ready` then waits until it answers a GET.  Peers
start themselves (kourier_lab/peers builds and pins them) and are stopped the
same way.  `ServerProcess` is `kourier-lab serve` on port 0: it reads the port
the server announces and keeps its stderr lines.

`ResponseReader` reads one socket and frames what arrives with
kourier_lab/http/responses.py; the callers keep their own deadlines and policy.
"""
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from .. import procs
from ..http.responses import CLOSE, Response, parse_head, parse_response

HOST = "127.0.0.1"
# the longest head a strict read waits for
MAX_HEAD = 65536


class NotReady(RuntimeError):
    """A started server exited, or did not answer a GET, before its deadline."""


class BadResponse(ValueError):
    """A strict read found bytes that are not a well-framed HTTP/1.x response."""


# --- reading responses -----------------------------------------------------------------

class ResponseReader:
    """Responses off one socket: bytes kept between reads, every byte in `transcript`.

    `fill` reads once; it returns False at the deadline (`why` says so) or at
    the close (`closed`; a reset counts as a close: what came before it has been
    read).  `next` returns the next whole response, or None when none is whole
    by the deadline or the close."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = bytearray()
        self.transcript = bytearray()
        self.closed = False
        self.consumed = 0              # bytes of the responses `next` returned
        self.why = ""

    def fill(self, deadline: float) -> bool:
        if self.closed:
            self.why = "the server closed the connection"
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            self.why = "timed out waiting for the response"
            return False
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            self.why = "timed out waiting for the response"
            return False
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        if not chunk:
            self.closed = True
            self.why = "the server closed the connection"
            return False
        self.buf += chunk
        self.transcript += chunk
        return True

    def poll(self) -> bool:
        """Read what has arrived without waiting; True when anything has."""
        if self.closed:
            return True
        if select.select([self.sock], [], [], 0)[0]:
            self.fill(time.monotonic() + 0.5)
        return bool(self.buf) or self.closed

    def next(self, deadline: float, strict: bool = False) -> Optional[Response]:
        """The next whole response (taken off `buf`), or None (see `why`).
        strict: raise BadResponse for a response a benchmark client could not
        frame (garbled, a malformed head, no Content-Length nor chunked),
        as soon as its head shows it."""
        while True:
            r = parse_response(self.buf, 0, self.closed)
            if strict:
                head = r or parse_head(self.buf)
                if head is not None and (head.problem or head.framing == CLOSE):
                    raise BadResponse(head.problem or "response has neither Content-Length nor "
                                      "chunked encoding (a keep-alive benchmark needs one)")
                if head is None and len(self.buf) > MAX_HEAD:
                    raise BadResponse(f"response head longer than {MAX_HEAD // 1024} KiB")
            if r is not None:
                del self.buf[:r.size]
                self.consumed += r.size
                return r
            if not self.fill(deadline):
                if self.closed:
                    r = parse_response(self.buf, 0, True)
                    if r is not None and r.framing == CLOSE and not strict:
                        del self.buf[:r.size]
                        self.consumed += r.size
                        return r
                return None


def connect(port: int, timeout: float = 5.0, host: str = HOST) -> socket.socket:
    return socket.create_connection((host, port), timeout=timeout)


def read_responses(sock: socket.socket, count: int,
                   timeout: float = 10.0) -> List[Tuple[int, Dict[str, str], bytes]]:
    """Read `count` whole responses, 1xx included: [(status, {lower-case name: value}, body)].
    Fewer when the server closes first; socket.timeout when one takes longer
    than `timeout`."""
    reader = ResponseReader(sock)
    out = []
    while len(out) < count:
        r = reader.next(time.monotonic() + timeout)
        if r is None:
            if reader.closed:
                break
            raise socket.timeout("timed out")
        out.append((r.status, r.header_dict(), r.content))
    return out


def read_until_close(sock: socket.socket, timeout: float = 10.0) -> Tuple[bytes, bool]:
    """Every byte until the server closes: (data, True), or (data, False) when
    `timeout` passes without a byte."""
    reader = ResponseReader(sock)
    while reader.fill(time.monotonic() + timeout):
        pass
    return bytes(reader.buf), reader.closed


def wait_ready(host: str, port: int, proc: Optional[subprocess.Popen] = None, timeout: float = 15.0,
               path: str = "/hello") -> None:
    """Poll until the server answers a GET for `path` with a well-framed HTTP
    response (any status); NotReady after `timeout`, or at once when `proc`
    exits first."""
    deadline = time.monotonic() + timeout
    last = "no attempt"
    req = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise NotReady(f"the server exited with code {proc.returncode} before it was ready")
        try:
            with socket.create_connection((host, port), timeout=1.0) as sock:
                sock.sendall(req)
                reader = ResponseReader(sock)
                if reader.next(min(deadline, time.monotonic() + 2.0), strict=True) is not None:
                    return
                last = reader.why
        except (OSError, BadResponse) as e:
            last = str(e)
        time.sleep(0.1)
    raise NotReady(f"not ready after {timeout:g} s ({last})")


# --- starting servers ------------------------------------------------------------------

def pin_cpus(cpus: Iterable[int]):
    """A preexec_fn that pins the child (and what it starts) to `cpus`."""
    cpus = set(cpus)
    return lambda: os.sched_setaffinity(0, cpus)


def launch(cmd: Sequence[str], label: str, log=None, cpus: Optional[Iterable[int]] = None,
           env: Optional[Dict[str, str]] = None, cwd=None) -> subprocess.Popen:
    """Start `cmd` in a session of its own, registered with procs (stop it with
    procs.stop).  Its output goes to the file `log` (stdout and stderr), or,
    without one, stderr to a pipe (the caller reads it) and stdout nowhere.
    `cpus`: pin it (and so what it starts) before it runs."""
    if log is not None:
        with open(log, "wb") as out:
            proc = subprocess.Popen(list(cmd), stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    preexec_fn=pin_cpus(cpus) if cpus else None, env=env, cwd=cwd)
    else:
        proc = subprocess.Popen(list(cmd), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, start_new_session=True,
                                preexec_fn=pin_cpus(cpus) if cpus else None, env=env, cwd=cwd)
    return procs.register(proc, label)


class ServerProcess:
    """A `kourier-lab serve` child process on a free port (port 0), started and probed.
    `env`: variables added to the server's environment."""

    def __init__(self, *args, loop="python", parser="python", buffer="python", workers=1, cpus=None,
                 env=None):
        self.args = ["--loop", loop, "--parser", parser, "--buffer", buffer, "--worker-count", str(workers),
                     *args]
        if cpus:
            self.args += ["--cpus", ",".join(map(str, cpus))]
        self.env = dict(env or {})
        self.proc = None
        self.port = None
        self.stderr_lines: List[str] = []

    def start(self, timeout=60):
        cmd = [sys.executable, "-m", "kourier_lab.cli", "serve", "-a", HOST, "-p", "0", *self.args]
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.env)
        self.proc = launch(cmd, "/".join(self.args[1:6:2]), env=env)
        deadline = time.monotonic() + timeout
        lines = self.stderr_lines
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline().decode(errors="replace")
            if not line:
                break
            lines.append(line)
            m = re.search(r"serving on http://[^:]+:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                # keep draining stderr so the server never blocks on a full pipe
                threading.Thread(target=self._drain, daemon=True).start()
                try:
                    wait_ready(HOST, self.port, self.proc, max(0.0, deadline - time.monotonic()), path="/")
                except NotReady as e:
                    self.stop()          # never leave a server that did not answer behind
                    raise RuntimeError(f"server never answered: {e}") from None
                return self
        self.stop()
        raise RuntimeError("server did not start: " + "".join(lines))

    def _drain(self):
        for line in self.proc.stderr:
            self.stderr_lines.append(line.decode(errors="replace"))

    def stop(self, sig=signal.SIGTERM, timeout=20):
        """Its exit status; subprocess.TimeoutExpired when it had to be killed."""
        if self.proc is None:
            return None
        return procs.stop(self.proc, sig, grace=timeout, check=True)

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
