"""Start a real `kourier-lab serve` process (for notebooks, tests and benchmarks); raw-socket helpers.

    with ServerProcess(loop="python", parser="python", buffer="python") as srv:
        http.client.HTTPConnection("127.0.0.1", srv.port) ...
"""
import os
import re
import signal
import socket
import subprocess
import sys
import time

from .. import procs


class ServerProcess:
    """A `kourier-lab serve` child process on a free port (port 0), started and probed."""

    def __init__(self, *args, loop="python", parser="python", buffer="python", workers=1, cpus=None):
        self.args = ["--loop", loop, "--parser", parser, "--buffer", buffer, "--worker-count", str(workers),
                     *args]
        if cpus:
            self.args += ["--cpus", ",".join(map(str, cpus))]
        self.proc = None
        self.port = None

    def start(self, timeout=60):
        cmd = [sys.executable, "-m", "kourier_lab.cli", "serve", "-a", "127.0.0.1", "-p", "0", *self.args]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env,
                                     start_new_session=True)
        procs.register(self.proc, "/".join(self.args[1:6:2]))
        deadline = time.monotonic() + timeout
        lines = []
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline().decode(errors="replace")
            if not line:
                break
            lines.append(line)
            m = re.search(r"serving on http://[^:]+:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                try:
                    self._wait_ready(deadline)
                except RuntimeError:
                    self.stop()          # never leave a server that did not answer behind
                    raise
                # keep draining stderr so the server never blocks on a full pipe
                import threading
                self.stderr_lines = lines
                threading.Thread(target=self._drain, daemon=True).start()
                return self
        self.stop()
        raise RuntimeError("server did not start: " + "".join(lines))

    def _drain(self):
        for line in self.proc.stderr:
            self.stderr_lines.append(line.decode(errors="replace"))

    def _wait_ready(self, deadline):
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                    if s.recv(100).startswith(b"HTTP/1.1 200"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("server never answered")

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc is None or self.proc.poll() is not None:
            procs.forget(self.proc)
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise
        finally:
            procs.forget(self.proc)

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def connect(port, timeout=5.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return s


def read_responses(sock, count, timeout=10.0):
    """Read `count` complete responses (Content-Length framed); returns [(status, headers, body)]."""
    sock.settimeout(timeout)
    buf = b""
    out = []
    while len(out) < count:
        while True:
            e = buf.find(b"\r\n\r\n")
            if e < 0:
                break
            head = buf[:e].decode("latin-1").split("\r\n")
            status = int(head[0].split(" ")[1])
            headers = {}
            for line in head[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            if status == 100:
                out.append((100, headers, b""))
                buf = buf[e + 4:]
                if len(out) == count:
                    return out
                continue
            n = int(headers.get("content-length", "0"))
            if len(buf) < e + 4 + n:
                break
            out.append((status, headers, buf[e + 4:e + 4 + n]))
            buf = buf[e + 4 + n:]
            if len(out) == count:
                return out
        chunk = sock.recv(1 << 16)
        if not chunk:
            break
        buf += chunk
    return out


def read_until_close(sock, timeout=10.0):
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data, True
            data += chunk
    except socket.timeout:
        return data, False
    except ConnectionResetError:
        return data, True
