"""The `connections` load: N open keep-alive connections from many client
processes (the lab's load generator, native/loadgen.c, in its --hold mode),
and what limits how many there can be.

    with ConnectionLoad(port, connections=10000, rate=5000, duration=10,
                        cpus=[1]) as load:
        connected = load.connect()          # every process has connected
        load.go()                           # requests flow for `duration` s
        result = load.finish()              # counts merged, connections still open
        ... sample the server here ...
    # leaving the block closes every connection and reaps the processes

Each client process holds its share of the connections, each bound to a
source address in 127.0.0.0/8 (PER_ADDRESS per address, so ports are never
the limit), and is driven by lines on stdin: it connects and reports, sends
keep-alive requests at its share of the rate on "go" (at most one in flight
per connection, every response checked, latency per request) and reports,
then holds every connection open until "close".

Limits (`server_capacity`, `system_capacity`): on a machine without
CAP_SYS_RESOURCE the open-files hard limit (RLIMIT_NOFILE) caps both sides:
every server connection is one descriptor of an accepting process, every
client connection one descriptor of a client process.  The client side
scales by starting more processes; the server side cannot, so the server's
accepting processes' limit decides the largest step, and the row says so.
"""
from __future__ import annotations

import json
import math
import os
import re
import resource
import selectors
import subprocess
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from .. import procs as _procs
from ..bench.load.kourier import build_loadgen
from ..bench.run.servers import raise_fd_limit
from ..sampler import descendants

PER_ADDRESS = 1000           # connections per source address: few, so the kernel finds a free port at once
CLIENT_FD_RESERVE = 64       # descriptors a client process keeps for itself
SERVER_FD_RESERVE = 32       # ... and a server process beyond its idle count (log files, accept slack)


def source_address(index: int, per_address: int, first_host: int = 2) -> str:
    """The source address of connection `index` (as loadgen --hold binds it):
    127.0.0.<first_host> for the first `per_address` connections, then the next
    address, across 127.0.0.0/8."""
    n = first_host + index // per_address
    if n >= 1 << 24:
        raise ValueError("more connections than 127.0.0.0/8 has addresses x ports")
    return f"127.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


def percentiles_from_buckets(buckets: Dict[Tuple[int, int], int],
                             pcts=(50, 75, 90, 99)) -> Dict[int, float]:
    """Percentiles in ms of merged latency buckets ({(lowest ns, highest ns): count},
    HdrHistogram's layout as the load generator reports them): the highest value
    of the bucket holding the rank, as the load generator's own summary; NaN when
    empty."""
    total = sum(buckets.values())
    out = {p: math.nan for p in pcts}
    if not total:
        return out
    keys = sorted(buckets)
    for p in pcts:
        rank = min(total, max(1, math.ceil(total * p / 100.0)))
        seen = 0
        for k in keys:
            seen += buckets[k]
            if seen >= rank:
                out[p] = k[1] / 1e6
                break
    return out


def raise_nofile() -> Dict[str, int]:
    """RLIMIT_NOFILE soft -> hard (bench/run/servers.raise_fd_limit), with the values."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    soft = raise_fd_limit()
    return {"soft_before": before, "soft": soft,
            "hard": resource.getrlimit(resource.RLIMIT_NOFILE)[1]}


# ---------------------------------------------------------------------------
# Descriptors and limits


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def tree_fds(root: int) -> Dict[int, int]:
    """{pid: open descriptors} for root and every process below it."""
    return {pid: fd_count(pid) for pid in descendants(root)}


def nofile_of(pid: int) -> Optional[int]:
    """The soft open-files limit of a running process (from /proc/<pid>/limits)."""
    try:
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                value = line.split()[3]
                return None if value == "unlimited" else int(value)
    except (OSError, IndexError, ValueError):
        pass
    return None


def accepting_processes(root: int) -> List[int]:
    """The processes that hold the server's connections: the root's children
    when it has any (a supervisor and its workers, nginx's master and
    workers), else the root itself (one process with threads: Go, hyper)."""
    tree = descendants(root)
    children = [p for p in tree if p != root and _ppid(p) == root]
    return children or [root]


def _ppid(pid: int) -> int:
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
        return int(data[data.rfind(b")") + 2:].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def ephemeral_ports() -> Tuple[int, int]:
    try:
        lo, hi = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def system_capacity() -> Tuple[int, str]:
    """How many connections the kernel's file table leaves room for (each one
    is two descriptors here: the client's and the server's)."""
    try:
        allocated, _, maximum = map(int, Path("/proc/sys/fs/file-nr").read_text().split())
    except (OSError, ValueError):
        return 1 << 62, ""
    room = (maximum - allocated) // 2
    return room, f"system file table (fs.file-max {maximum}, {allocated} in use: room for {room} pairs)"


def peer_connection_cap(name: str) -> Tuple[Optional[int], str]:
    """A connection cap written into a peer's own configuration (per worker), if any."""
    if name == "nginx":
        template = Path(__file__).resolve().parents[1] / "peers" / "nginx" / "nginx.conf.template"
        try:
            m = re.search(r"worker_connections\s+(\d+)", template.read_text())
        except OSError:
            m = None
        if m:
            return int(m.group(1)), (f"nginx worker_connections {m.group(1)} per worker "
                                     "(kourier_lab/peers/nginx/nginx.conf.template)")
    return None, ""


def server_capacity(root: int, per_worker_cap: Optional[int] = None,
                    cap_reason: str = "") -> Tuple[int, str]:
    """(connections the server can hold, why) from its accepting processes'
    open-files limits and idle descriptor counts, and a configured cap."""
    procs = accepting_processes(root)
    total, limits, by_cap = 0, [], False
    for pid in procs:
        limit = nofile_of(pid)
        if limit is None:
            return 1 << 62, "server open files unlimited"
        room = max(0, limit - fd_count(pid) - SERVER_FD_RESERVE)
        if per_worker_cap is not None and per_worker_cap < room:
            room, by_cap = per_worker_cap, True
        total += room
        limits.append(limit)
    if by_cap:
        return total, f"{cap_reason} x {len(procs)}"
    return total, (f"server RLIMIT_NOFILE {limits[0]} per accepting process x {len(procs)} "
                   f"(hard limit {_hard_nofile()}; raising it needs CAP_SYS_RESOURCE)")


def _hard_nofile() -> int:
    import resource
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def raised_limits() -> Dict[str, object]:
    """Raise what an unprivileged process may raise here and record it:
    RLIMIT_NOFILE soft -> hard (inherited by the servers and clients we start).
    The ephemeral port range is not widened: connections are spread over
    source addresses in 127.0.0.0/8, PER_ADDRESS each, so one range suffices."""
    nofile = raise_nofile()
    lo, hi = ephemeral_ports()
    ports = hi - lo + 1
    note = (f"RLIMIT_NOFILE soft {nofile['soft_before']} -> {nofile['soft']} (hard {nofile['hard']}); "
            f"ip_local_port_range {lo}-{hi} ({ports} ports per source address, "
            f"{PER_ADDRESS} used per address: not raised, not needed)")
    if ports < PER_ADDRESS + 1000:
        note += "; WARNING: the port range is smaller than the connections per source address"
    return {"nofile_soft": nofile["soft"], "nofile_hard": nofile["hard"],
            "port_range": f"{lo}-{hi}", "raised": note}


# ---------------------------------------------------------------------------
# The load


class LoadError(RuntimeError):
    pass


class ConnectionLoad:
    def __init__(self, port: int, connections: int, rate: float, duration: float,
                 host: str = "127.0.0.1", path: str = "/hello", cpus: Optional[Sequence[int]] = None,
                 per_process: Optional[int] = None, min_processes: int = 1,
                 concurrency: int = 256, connect_timeout: float = 300.0,
                 request_timeout: float = 10.0):
        if connections < 1:
            raise ValueError("connections must be >= 1")
        nofile = raise_nofile()
        self.per_process = per_process or max(1, nofile["soft"] - CLIENT_FD_RESERVE)
        n_proc = max(min_processes, math.ceil(connections / self.per_process))
        n_proc = min(n_proc, connections)
        base, extra = divmod(connections, n_proc)
        self.shares = [base + (1 if i < extra else 0) for i in range(n_proc)]
        self.cfg = dict(host=host, port=port, rate=rate / n_proc, duration=duration, path=path,
                        per_address=PER_ADDRESS, concurrency=max(1, concurrency // n_proc),
                        connect_timeout=connect_timeout, request_timeout=request_timeout)
        self.cpus = list(cpus) if cpus else None
        self.connections = connections
        self.procs: List[subprocess.Popen] = []
        self.connected: List[dict] = []
        self.client_nofile = nofile["soft"]

    # -- lifecycle ----------------------------------------------------------
    def command(self, share: int, first_index: int, binary: Optional[str] = None) -> List[str]:
        """One client process's command line (native/loadgen.c --hold)."""
        c = self.cfg
        return [str(binary or build_loadgen()), f"http://{c['host']}:{c['port']}{c['path']}",
                "--hold", "-c", str(share), "--rate", f"{max(c['rate'], 0.001):g}",
                "-d", f"{max(c['duration'], 0.01):g}", "--first-index", str(first_index),
                "--per-address", str(c["per_address"]), "--concurrency", str(c["concurrency"]),
                "--connect-timeout", f"{c['connect_timeout']:g}",
                "--timeout", f"{c['request_timeout']:g}"]

    def _spawn(self) -> None:
        first = 0
        binary = str(build_loadgen())
        cpus = set(self.cpus) if self.cpus else None
        for share in self.shares:
            cmd = self.command(share, first, binary)
            first += share
            # Each process starts at a fresh source address block.
            first = math.ceil(first / PER_ADDRESS) * PER_ADDRESS
            self.procs.append(_procs.register(subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True, bufsize=1,
                preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None), "loadgen"))

    def _collect(self, phase: str, timeout: float) -> List[dict]:
        sel = selectors.DefaultSelector()
        for i, p in enumerate(self.procs):
            sel.register(p.stdout, selectors.EVENT_READ, i)
        got: Dict[int, dict] = {}
        deadline = time.monotonic() + timeout
        try:
            while len(got) < len(self.procs):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LoadError(f"client processes did not report {phase!r} within {timeout:.0f} s")
                for key, _ in sel.select(left):
                    i = key.data
                    line = self.procs[i].stdout.readline()
                    if not line:
                        self.procs[i].wait(5)
                        err = self.procs[i].stderr.read()[-2000:]
                        raise LoadError(f"client process {i} exited before {phase!r}: {err.strip()}")
                    try:
                        msg = json.loads(line)
                    except json.JSONDecodeError:
                        raise LoadError(f"client process {i} said {line.strip()[:200]!r}") from None
                    if msg.get("phase") == phase:
                        got[i] = msg
                        sel.unregister(self.procs[i].stdout)
        finally:
            sel.close()
        return [got[i] for i in range(len(self.procs))]

    def _tell(self, word: str) -> None:
        for p in self.procs:
            try:
                p.stdin.write(word + "\n")
                p.stdin.flush()
            except (BrokenPipeError, OSError):
                pass

    def connect(self) -> dict:
        self._spawn()
        self.connected = self._collect("connected", self.cfg["connect_timeout"] + 60)
        errors: Dict[str, int] = {}
        for m in self.connected:
            for k, v in m["errors"].items():
                errors[k] = errors.get(k, 0) + v
        return {"held": sum(m["held"] for m in self.connected),
                "attempted": sum(m["attempted"] for m in self.connected),
                "connect_s": max(m["connect_s"] for m in self.connected),
                "errors": errors,
                "stopped": "; ".join(sorted({m["stopped"] for m in self.connected if m["stopped"]})),
                "client_processes": len(self.procs), "client_nofile": self.client_nofile}

    def go(self) -> None:
        self._tell("go")

    def finish(self) -> dict:
        done = self._collect("done", self.cfg["duration"] + self.cfg["request_timeout"] + 60)
        buckets: Dict[Tuple[int, int], int] = {}
        errors: Dict[str, int] = {}
        statuses: Dict[str, int] = {}
        for m in done:
            for low, high, n in m["latency_buckets_ns"]:
                buckets[(low, high)] = buckets.get((low, high), 0) + n
            for k, v in m["errors"].items():
                errors[k] = errors.get(k, 0) + v
            for k, v in m["statuses"].items():
                statuses[k] = statuses.get(k, 0) + v
        wall = max(m["wall_s"] for m in done)
        responses = sum(m["responses"] for m in done)
        pct = percentiles_from_buckets(buckets)
        return {"sent": sum(m["sent"] for m in done), "responses": responses,
                "req_per_s": responses / wall if wall > 0 else math.nan, "wall_s": wall,
                "held": sum(m["held"] for m in done), "behind": sum(m["behind"] for m in done),
                "in_flight": sum(m["in_flight"] for m in done), "errors": errors,
                "statuses": statuses, "latency_p50_ms": pct[50], "latency_p75_ms": pct[75],
                "latency_p90_ms": pct[90], "latency_p99_ms": pct[99]}

    def close(self) -> None:
        self._tell("close")
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
            for f in (p.stdin, p.stdout, p.stderr):
                try:
                    f.close()
                except OSError:
                    pass
            _procs.forget(p)
        self.procs = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            if p.poll() is None and exc[0] is not None:
                p.kill()
        self.close()


def pin_pids(pids: Iterable[int], cpus: Sequence[int]) -> None:
    from ..sampler import pin_tree
    pin_tree(pids, cpus)
