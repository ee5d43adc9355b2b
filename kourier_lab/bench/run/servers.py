"""Start a stack, a peer or the ceiling on its CPUs as a process tree; stop it and every process it started.

Stacks and the ceiling differ only in their command: both go through the
server's one starter (server/process.py `launch`, `wait_ready`) and stop
through procs.stop; a peer starts itself (kourier_lab.peers) and is stopped
by its module first, then the same way.
"""
from __future__ import annotations

import dataclasses
import math
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

from ... import procs as _procs
from ..experiment import ceiling as _ceiling
from ...paths import repo_root
from ...sampler import descendants, pin_tree
from ...server.process import NotReady, launch, wait_ready
from ..experiment.files import Experiment
from ..experiment.split import Split, cpu_list
from ..experiment.targets import Target, peers_module
from .verify import free_port

HOST = "127.0.0.1"
READY_TIMEOUT_S = 15.0
READY_TIMEOUT_JIT_S = 60.0     # Numba variants compile on first start


class ServerStartError(RuntimeError):
    pass


@dataclasses.dataclass
class RunningServer:
    target: Target
    proc: subprocess.Popen
    port: int
    log_path: Path
    pids_seen: set = dataclasses.field(default_factory=set)
    workers: int = 1                  # its processes (more than its CPUs when the file cap needs them)


def log_tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def _server_env() -> Dict[str, str]:
    env = dict(os.environ)
    root = str(repo_root())
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _most_connections(exp: Experiment) -> int:
    return max((connection_budget() if s.connections == "max" else int(s.connections))
               for s in exp.shapes)


WORKER_HEADROOM = 1.3    # SO_REUSEPORT's hash spreads connections unevenly over workers
WORKER_FD_SLACK = 200    # descriptors a worker keeps beyond its connections


def workers_for(connections: int, nofile: int, least: int = 1) -> int:
    """Worker processes a server needs to hold `connections` when one process
    may open `nofile` descriptors (with WORKER_HEADROOM for the uneven
    SO_REUSEPORT spread); at least `least`."""
    room = max(1, nofile - WORKER_FD_SLACK)
    return max(least, math.ceil(connections * WORKER_HEADROOM / room))


def connection_workers(split: Split, connections) -> int:
    """The server processes a shape's connections need: the split's (one per
    server CPU), or more when one process's open-files cap cannot hold them."""
    if connections == "max" or not connections:
        return split.workers
    return workers_for(int(connections), raise_fd_limit(), split.workers)


def raise_fd_limit() -> int:
    """Raise our soft open-files limit to the hard one (wrk and servers inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def connection_budget() -> int:
    """How many connections wrk can open to one local port: fds and ephemeral ports."""
    fds = raise_fd_limit() - 64
    try:
        lo, hi = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        ports = hi - lo + 1 - 1000
    except (OSError, ValueError):
        ports = 28000
    return max(1, min(fds, ports))


def stack_command(target: Target, split: Split, exp: Experiment, host: str, port,
                  python: str = sys.executable, app: str = "default",
                  workers: Optional[int] = None) -> List[str]:
    """`kourier-lab serve` for a stack target (bench/hosts/remote.py runs the same line remotely);
    app "demo" serves kourier_lab/server/demo.py (the api shape's handlers)."""
    return [python, "-m", "kourier_lab.cli", "serve", "-a", host, "-p", str(port),
            "--worker-count", str(workers or split.workers), "--loop", target.loop,
            "--parser", target.parser, "--buffer", target.buffer,
            "--request-timeout", f"{exp.request_timeout_s:g}",
            "--idle-timeout", f"{exp.idle_timeout_s:g}",
            "--cpus", cpu_list(split.server_cpus),
            "--head-memo", "on" if target.head_memo else "off",
            "--fold-runs", "on" if target.fold_runs else "off",
            # the switches that are on, from none (the CLI's own list starts from its defaults)
            *(["--uring-features", "none," + target.uring_features.replace("+", ",")]
              if target.uring_features else []),
            *(["--app", app] if app != "default" else []),
            "--response", exp.response,
            # room for the experiment's largest load on any one worker
            "--max-connections", str(max(10000, _most_connections(exp) + 100))]


def start_server(target: Target, split: Split, exp: Experiment, log_path: Path,
                 app: str = "default", workers: Optional[int] = None) -> RunningServer:
    """Start a target on the split's server CPUs, one process per CPU, or
    `workers` processes sharing them round robin (connection_workers: when one
    process's file cap cannot hold the shape's connections)."""
    port = free_port(HOST)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    workers = workers or split.workers
    if target.kind == "ceiling":          # one ceiling process per CPU listed, a CPU listed again
        cpus = [split.server_cpus[i % len(split.server_cpus)] for i in range(workers)]
        cmd = _ceiling.ceiling_command(port, cpus, response=exp.response,
                                       uring=target.loop == "uring")
    elif target.kind == "stack":
        cmd = stack_command(target, split, exp, HOST, port, app=app, workers=workers)
    else:
        cmd = None
    if cmd is not None:
        proc = launch(cmd, target.name, log=log_path, cpus=split.server_cpus, env=_server_env(),
                      cwd=str(repo_root()))
    else:
        proc = start_peer(target.name, port, workers, split.server_cpus)
        log_path.write_text(f"peer {target.name} started by kourier_lab.peers.start "
                            f"(its output is not captured here)\n")
    server = RunningServer(target, proc, port, log_path, workers=workers)
    jit = any("numba" in (v or "") for v in (target.loop, target.parser, target.buffer))
    try:
        wait_ready(HOST, port, proc, READY_TIMEOUT_JIT_S if jit else READY_TIMEOUT_S)
    except NotReady as e:
        stop_server(server)
        tail = log_tail(log_path)
        raise ServerStartError(f"{e}" + (f"; log: {tail}" if tail else "")) from None
    # Pin every process/thread of the tree to the server CPUs (peers start
    # their own processes; our workers already pin themselves one per CPU).
    pids = descendants(proc.pid)
    server.pids_seen.update(pids)
    pin_tree(pids, split.server_cpus)
    return server


def start_peer(name: str, port: int, workers: int, cpus) -> subprocess.Popen:
    """A peer on HOST:port, started (and pinned, and waited for) by kourier_lab.peers."""
    mod, problem = peers_module()
    if mod is None:
        raise ServerStartError(problem)
    try:
        proc = mod.start(name, HOST, port, workers, list(cpus))
    except Exception as e:
        raise ServerStartError(f"peers.start({name!r}) failed: {type(e).__name__}: {e}") from None
    return _procs.register(proc, name)


def stop_peer(proc: subprocess.Popen, seen=(), grace: float = 10.0) -> None:
    """Its module stops the peer's group; then whatever of its tree is left."""
    seen = set(seen)
    if proc.poll() is None:
        seen.update(descendants(proc.pid))
    mod, _ = peers_module()
    if mod is not None:
        try:
            mod.stop(proc)
        except Exception:
            pass
    _procs.stop(proc, grace=grace, seen=seen, group=False)


def stop_server(server: RunningServer, grace: float = 10.0) -> None:
    """SIGTERM, wait for a graceful stop, then SIGKILL whatever of its tree is left."""
    if server.target.kind == "peer":
        stop_peer(server.proc, server.pids_seen, grace)
    else:
        _procs.stop(server.proc, grace=grace, seen=server.pids_seen)
