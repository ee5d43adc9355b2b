"""Worker processes sharing the port with SO_REUSEPORT, and their supervisor.

The supervisor binds the port first (so port 0 picks one free port for all
workers and the port stays reserved), forks `worker_count` workers that each
bind their own listening socket to it, restarts a worker that dies, and on
SIGTERM/SIGINT asks every worker to stop gracefully (stop accepting, finish in
flight work), killing stragglers after the graceful deadline.
"""
import os
import signal
import socket
import sys
import time
from typing import Callable, Dict, Optional

from .app import load_app
from .config import ServerConfig


def make_listener(host: str, port: int, backlog: int, listen: bool = True) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind((host, port))
    if listen:
        s.listen(backlog)
    return s


def run_worker(config: ServerConfig, index: int) -> int:
    """Body of one worker process: pin, listen, run the loop until stopped."""
    from .. import loops
    if config.cpus:
        try:
            os.sched_setaffinity(0, {config.cpus[index % len(config.cpus)]})
        except OSError as e:
            sys.stderr.write(f"kourier-lab: worker {index}: cannot pin to CPU: {e}\n")
    app = load_app(config.app, config.response)
    loop = loops.create(config.loop, config, app)
    signal.signal(signal.SIGTERM, lambda *_: loop.request_stop())
    signal.signal(signal.SIGINT, lambda *_: loop.request_stop())
    lsock = make_listener(config.host, config.port, config.backlog)
    loop.run(lsock)
    lsock.close()
    return 0


class Supervisor:
    def __init__(self, config: ServerConfig, on_ready: Optional[Callable[[int], None]] = None):
        self.config = config
        self.on_ready = on_ready
        self.children: Dict[int, int] = {}     # pid -> worker index
        self.stopping = False
        self.restarts = 0

    def _spawn(self, index: int) -> None:
        pid = os.fork()
        if pid == 0:   # child
            code = 1
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                code = run_worker(self.config, index)
            except BaseException:  # noqa: BLE001 - report, then die; the supervisor restarts us
                import traceback
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self.children[pid] = index

    def _stop(self, *_):
        if not self.stopping:
            self.stopping = True
            self._deadline = time.monotonic() + self.config.graceful_timeout + 2.0
            for pid in list(self.children):
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass

    def run(self) -> int:
        cfg = self.config
        # validate everything once in the supervisor so that errors are one line, not N crashes
        from .. import buffers, loops
        from .warm_up import warm_up, watch_compiles
        app = load_app(cfg.app, cfg.response)
        buffers.create_read(cfg.buffer)
        # every Numba function a worker can reach, compiled or loaded now: the
        # workers fork from here with the machine code, and never JIT on a request
        _loop, warmed = warm_up(cfg, app, lambda: loops.create(cfg.loop, cfg, app))
        if warmed is not None:
            sys.stderr.write(f"kourier-lab: {warmed.line()}\n")
            sys.stderr.flush()
            watch_compiles()
        reserve = make_listener(cfg.host, cfg.port, cfg.backlog, listen=False)
        cfg.port = reserve.getsockname()[1]
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        for i in range(cfg.worker_count):
            self._spawn(i)
        if self.on_ready:
            self.on_ready(cfg.port)
        recent = []
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                if self.stopping and time.monotonic() > self._deadline:
                    for p in list(self.children):
                        try:
                            os.kill(p, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                time.sleep(0.05)
                continue
            index = self.children.pop(pid)
            if not self.stopping:
                now = time.monotonic()
                recent = [t for t in recent if now - t < 10] + [now]
                if len(recent) > 5 * cfg.worker_count:
                    sys.stderr.write("kourier-lab: workers keep dying; giving up\n")
                    self._stop()
                    continue
                sys.stderr.write(f"kourier-lab: worker {index} (pid {pid}) died "
                                 f"({_describe(status)}); restarting\n")
                self.restarts += 1
                self._spawn(index)
        reserve.close()
        return 0


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"exit {os.WEXITSTATUS(status)}"
