"""The memory experiment: RSS, VmPeak and RSS per connection as the number of
open keep-alive connections grows, for our stacks and the peers.

    df = run_memory("experiments/memory.toml", quick=True)

For every server and every step (e.g. 1 k, 5 k, 10 k, max, 50 k, 100 k, 500 k):
a fresh server on the server CPUs (so VmHWM/VmPeak belong to that step), its
idle RSS and descriptors, then N connections from loadgen processes on the
client CPUs, requests at a modest total rate for `duration` seconds while the
whole process tree is sampled, and one row.  A step the machine cannot reach
(open-files limit, kernel file table, a peer's own connection cap) becomes a
"skipped" row whose `limit` says which limit stopped it, so the same file runs
unchanged up to 500 k on a machine that allows it.  "max" is the largest
count this machine's limits allow for that server (with one worker).

Worker processes: one process may hold at most RLIMIT_NOFILE descriptors
(20,000 here, a hard limit), so a step past that needs a server of several
processes sharing the port (SO_REUSEPORT).  With ``workers = "auto"`` each
step of a server that can run several processes (our stacks; the nginx,
uvicorn and asyncio+httptools peers) gets ``ceil(step x servers.WORKER_HEADROOM /
room per process)`` workers, at least the profile's; SO_REUSEPORT spreads
connections by a hash of the address pair, unevenly, hence the headroom.  A
one-process peer (Go, hyper, granian here) keeps one process and stops at the
cap, and its rows say so.  An integer ``workers`` fixes the count.

Rows use the bench results schema (`shape` = "connections") plus:
    connections_held        connections the server held (its descriptors at the
                            step minus its idle descriptors)
    connections_client      connections the clients still had open at the end
    idle_rss_kb, idle_vmpeak_kb   the tree before any connection
    rss_per_conn_bytes      (VmRSS at the step - idle VmRSS) / connections_held,
                            VmRSS summed over the server's processes; the idle
                            (step-0) RSS is the baseline, not a per-connection
                            cost (a Numba worker's ~430 MB of LLVM is baseline)
    hwm_per_conn_bytes      the same for VmHWM
    baseline_rss_per_worker_kb  idle VmRSS / worker processes
    kernel_slab_before_kb, kernel_slab_kb       /proc/meminfo Slab before the
                            connections and while they are held (machine-wide:
                            both ends of every socket, client and server)
    kernel_tcp_mem_before_kb, kernel_tcp_mem_kb /proc/net/sockstat TCP mem
                            (socket buffer pages, machine-wide), the same way
    slab_per_conn_bytes, tcp_mem_per_conn_bytes  their growth / connections_held
    vmpeak_per_conn_bytes   the same for VmPeak (virtual: the post's figure)
    limit                   what capped this server's steps, and at how many
    raised                  what this run raised (RLIMIT_NOFILE, port range)
    request_rate, client_processes, client_nofile, server_fds, server_nofile,
    connect_s, errors_json, workers (the server's processes for that step)
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

from ..bench.run.machine import git_commit, machine_info
from ..bench.results import new_batch_dir, to_frame, write_rows
from ..sampler import TreeSampler, descendants, pin_tree
from ..bench.experiment.files import SpecError, check_kind
from ..bench.experiment.split import cpu_list, plan_split, PROFILES
from ..bench.experiment.targets import Target, expand_peers, expand_stacks
from ..bench.run.servers import start_peer, stop_peer, workers_for
from ..bench.run.verify import VerifyError, free_port, verify_server
from ..server.process import ServerProcess
from .connections import (ConnectionLoad, nofile_of, peer_connection_cap, raised_limits,
                          server_capacity, system_capacity, tree_fds)

HOST = "127.0.0.1"
MAX_MARGIN = 50          # "max" stays this many connections under the computed capacity
# peers that run several processes on one port (the others are one process)
MULTI_PROCESS_PEERS = {"nginx", "uvicorn", "asyncio-httptools"}

_KEYS = {"name", "description", "profile", "steps", "duration", "rate", "request_timeout",
         "idle_timeout", "stacks", "peers", "path", "settle", "quick", "kind", "workers"}
_QUICK_KEYS = {"steps", "duration", "rate", "stacks", "peers", "settle", "workers"}


@dataclass(frozen=True)
class MemorySpec:
    name: str
    path: Optional[str]
    description: str
    profile: str
    steps: List[Union[int, str]]
    duration_s: float
    rate: float
    request_timeout_s: float
    idle_timeout_s: float
    stacks: List[str]
    peers: List[str]
    url_path: str
    settle_s: float
    workers: Union[int, str, None] = None     # None: the profile's; "auto": enough per step
    quick: bool = False
    quick_overrides: Optional[Dict[str, Any]] = None

    def quickened(self) -> "MemorySpec":
        q = dict(self.quick_overrides or {})
        return dataclasses.replace(
            self, steps=q.get("steps", [s for s in self.steps if s != "max" and s <= 1000] or [100]),
            duration_s=q.get("duration", min(self.duration_s, 2.0)),
            rate=q.get("rate", min(self.rate, 1000.0)), stacks=q.get("stacks", self.stacks),
            peers=q.get("peers", self.peers), settle_s=q.get("settle", min(self.settle_s, 0.2)),
            workers=q.get("workers", self.workers), quick=True)


def _steps(where: str, key: str, value) -> List[Union[int, str]]:
    if not isinstance(value, list) or not value:
        raise SpecError(f"{where}: {key} must be a non-empty list of connection counts or \"max\"")
    out = []
    for v in value:
        if v == "max" or (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
            out.append(v)
        else:
            raise SpecError(f"{where}: {key}: {v!r} is not a connection count >= 1 or \"max\"")
    return out


def _workers(where, key, value):
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    raise SpecError(f"{where}: {key} must be \"auto\" or a worker count >= 1, not {value!r}")


def _num(where, key, value, lo=0.0, integer=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            (integer and not isinstance(value, int)):
        raise SpecError(f"{where}: {key} must be a{'n integer' if integer else ' number'}, "
                        f"not {value!r}")
    if value <= lo:
        raise SpecError(f"{where}: {key} must be > {lo:g}, not {value}")
    return value


def _names(where, key, value) -> List[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SpecError(f"{where}: {key} must be a list of strings, not {value!r}")
    return list(dict.fromkeys(value))


def parse_memory_spec(data: Dict[str, Any], path: Optional[str] = None) -> MemorySpec:
    where = path or "memory experiment"
    check_kind(data, path, "memory", looks_other="shapes" in data and "steps" not in data)
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise SpecError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_KEYS))})")
    profile = data.get("profile", "auto")
    if profile not in PROFILES:
        raise SpecError(f"{where}: unknown profile {profile!r} (known: {', '.join(PROFILES)})")
    name = data.get("name", Path(path).stem if path else "memory")
    if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
        raise SpecError(f"{where}: name must be letters, digits, '_' or '-', not {name!r}")
    stacks = _names(where, "stacks", data.get("stacks", []))
    peers = _names(where, "peers", data.get("peers", []))
    if not stacks and not peers:
        raise SpecError(f"{where}: nothing to measure: give stacks and/or peers")
    url_path = data.get("path", "/hello")
    if not isinstance(url_path, str) or not url_path.startswith("/"):
        raise SpecError(f"{where}: path must start with '/', not {url_path!r}")
    quick = data.get("quick", {})
    if not isinstance(quick, dict):
        raise SpecError(f"{where}: [quick] must be a table")
    bad = sorted(set(quick) - _QUICK_KEYS)
    if bad:
        raise SpecError(f"{where}: unknown key quick.{bad[0]} (known: {', '.join(sorted(_QUICK_KEYS))})")
    q: Dict[str, Any] = {}
    if "steps" in quick:
        q["steps"] = _steps(where, "quick.steps", quick["steps"])
    for key in ("duration", "rate", "settle"):
        if key in quick:
            q[key] = float(_num(where, f"quick.{key}", quick[key]))
    for key in ("stacks", "peers"):
        if key in quick:
            q[key] = _names(where, f"quick.{key}", quick[key])
    if "workers" in quick:
        q["workers"] = _workers(where, "quick.workers", quick["workers"])
    desc = data.get("description", "")
    if not isinstance(desc, str):
        raise SpecError(f"{where}: description must be a string")
    return MemorySpec(
        name=name, path=path, description=desc, profile=profile,
        steps=_steps(where, "steps", data.get("steps", [1000, 5000, 10000, "max"])),
        duration_s=float(_num(where, "duration", data.get("duration", 10))),
        rate=float(_num(where, "rate", data.get("rate", 5000))),
        request_timeout_s=float(_num(where, "request_timeout", data.get("request_timeout", 20))),
        idle_timeout_s=float(_num(where, "idle_timeout", data.get("idle_timeout", 600))),
        stacks=stacks, peers=peers, url_path=url_path,
        settle_s=float(_num(where, "settle", data.get("settle", 1.0), lo=-1e-9)),
        workers=_workers(where, "workers", data["workers"]) if "workers" in data else None,
        quick_overrides=q)


def load_memory_spec(path: Union[str, Path]) -> MemorySpec:
    import tomllib
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise SpecError(f"{path}: no such experiment file") from None
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{path}: not valid TOML: {e}") from None
    return parse_memory_spec(data, str(path))


# ---------------------------------------------------------------------------
# Servers


class _Server:
    """One running server: our stack through ServerProcess, or a peer through
    the bench's start_peer (the lab's one way to start each)."""

    def __init__(self, target: Target, spec: MemorySpec, split, max_connections: int,
                 workers: int):
        self.target = target
        self.proc = None
        self.srv = None
        if target.kind == "stack":
            self.srv = ServerProcess(
                "--max-connections", str(max_connections),
                "--request-timeout", f"{spec.request_timeout_s:g}",
                "--idle-timeout", f"{spec.idle_timeout_s:g}",
                loop=target.loop, parser=target.parser, buffer=target.buffer,
                workers=workers, cpus=split.server_cpus)
            self.srv.start(timeout=120)
            self.pid, self.port = self.srv.pid, self.srv.port
        else:
            self.port = free_port(HOST)
            self.proc = start_peer(target.name, self.port, workers, split.server_cpus)
            self.pid = self.proc.pid
        pin_tree(descendants(self.pid), split.server_cpus)

    def stop(self) -> None:
        if self.srv is not None:
            try:
                self.srv.stop()
            except Exception:
                pass
        elif self.proc is not None:
            stop_peer(self.proc)


def _capacity(server: _Server) -> (int, str):
    cap, cap_why = (None, "")
    if server.target.kind == "peer":
        cap, cap_why = peer_connection_cap(server.target.name)
    n_server, why_server = server_capacity(server.pid, cap, cap_why)
    n_system, why_system = system_capacity()
    return (n_server, why_server) if n_server <= n_system else (n_system, why_system)


def step_workers(target: Target, step, spec: MemorySpec, split, nofile: int) -> int:
    """The server's processes for a step (see the module docstring)."""
    if spec.workers is None or (target.kind == "peer" and target.name not in MULTI_PROCESS_PEERS):
        return split.workers
    if spec.workers != "auto":
        return int(spec.workers)
    if step == "max":
        return split.workers         # "max": what the profile's workers can hold
    return workers_for(int(step), nofile, split.workers)


def kernel_memory() -> Dict[str, float]:
    """Machine-wide kernel memory that grows with sockets: Slab (/proc/meminfo)
    and the TCP socket buffers (/proc/net/sockstat 'mem', in pages), in KiB."""
    out = {"slab_kb": math.nan, "tcp_mem_kb": math.nan}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("Slab:"):
                out["slab_kb"] = float(line.split()[1])
                break
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
        page_kb = resource.getpagesize() / 1024
        for line in Path("/proc/net/sockstat").read_text().splitlines():
            if line.startswith("TCP:"):
                fields = line.split()[1:]
                values = dict(zip(fields[::2], fields[1::2]))
                out["tcp_mem_kb"] = float(values["mem"]) * page_kb
                break
    except (OSError, ValueError, KeyError):
        pass
    return out


def _kb(x) -> float:
    return float(x) if x is not None else math.nan


# ---------------------------------------------------------------------------
# The experiment


def run_memory(spec: Union[str, Path, MemorySpec], quick: bool = False,
               out: Union[str, Path, None] = None, figures: Union[bool, str, Path] = False,
               echo: Optional[Callable[[str], None]] = print,
               cpus: Optional[Sequence[int]] = None):
    """Run the memory experiment; returns its rows (attrs: batch_id, batch_dir, figures)."""
    spec = spec if isinstance(spec, MemorySpec) else load_memory_spec(spec)
    if quick and not spec.quick:
        spec = spec.quickened()
    say = echo or (lambda s: None)
    split = plan_split(spec.profile, cpus)
    raised = raised_limits()
    batch_id, batch_dir = new_batch_dir(spec.name, out)
    commit = git_commit()
    targets = expand_stacks(spec.stacks) if spec.stacks else []
    targets += expand_peers(spec.peers)
    rows: List[Dict[str, object]] = []
    nofile = int(raised["nofile_soft"])
    say(f"{spec.name}: {len(targets)} servers x steps {spec.steps}; server CPUs "
        f"{cpu_list(split.server_cpus)}, client CPUs {cpu_list(split.client_cpus)}"
        f"{' (quick)' if spec.quick else ''}; {raised['raised']}")

    def base(target: Target, step) -> Dict[str, object]:
        return {
            "batch_id": batch_id, "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(
                timespec="seconds"),
            "experiment": spec.name, "experiment_file": spec.path or "", "quick": spec.quick,
            "profile": split.profile, "profile_note": split.note, **machine_info(),
            "git_commit": commit, "server_kind": target.kind, "server": target.name,
            "loop": target.loop, "parser": target.parser, "buffer": target.buffer,
            "workers": step_workers(target, step, spec, split, nofile),
            "server_cpus": cpu_list(split.server_cpus),
            "client_cpus": cpu_list(split.client_cpus), "shape": "connections",
            "connections": step if step != "max" else None, "step": str(step), "pipeline": 1,
            "browser_headers": False, "path": spec.url_path, "duration_s": spec.duration_s,
            "repetitions": 1, "run": 1, "status": "ok", "note": "",
            "request_rate": spec.rate, "raised": raised["raised"],
            "client_nofile": raised["nofile_soft"],
        }

    for target in targets:
        if target.skip_reason:
            for step in spec.steps:
                rows.append({**base(target, step), "status": "skipped", "note": target.skip_reason})
            write_rows(rows, batch_dir)
            say(f"  {target.name}: skipped ({target.skip_reason})")
            continue
        # what a server of so many workers was found to hold: (capacity, limit)
        capacities: Dict[int, tuple] = {}
        for step in spec.steps:
            row = base(target, step)
            workers = int(row["workers"])
            capacity, limit = capacities.get(workers, (None, ""))
            if capacity is not None and step != "max" and step > capacity:
                one = (target.kind == "peer" and target.name not in MULTI_PROCESS_PEERS
                       and spec.workers == "auto")
                row.update(status="skipped", limit=limit, limit_hit=True,
                           note=f"{step} connections > {capacity} this machine allows: {limit}"
                                + ("; a one-process server: more workers would not help" if one else ""))
                rows.append(row)
                say(f"  {target.name} {step}: skipped ({limit})")
                continue
            try:
                row.update(_measure_step(target, step, spec, split, workers))
            except Exception as e:  # a failed step is a row, never the end of the batch
                row.update(status="failed", note=f"{type(e).__name__}: {e}"[:2000])
            if row.get("capacity") is not None:
                capacities[workers] = (int(row["capacity"]), str(row["limit"]))
            rows.append(row)
            write_rows(rows, batch_dir)
            if row["status"] == "ok":
                say(f"  {target.name} {step}: held {row['connections_held']} ({workers} worker"
                    f"{'s' if workers > 1 else ''}), {row['req_per_s']:.0f} req/s, p99 "
                    f"{row['latency_p99_ms']:.1f} ms, RSS {row['server_vmrss_kb'] / 1024:.1f} MB "
                    f"({row['rss_per_conn_bytes']:.0f} B/conn), VmPeak "
                    f"{row['server_vmpeak_kb'] / 1024:.0f} MB, kernel slab "
                    f"{row['slab_per_conn_bytes']:.0f} B/conn")
            else:
                say(f"  {target.name} {step}: {row['status']}: {row['note']}")
    write_rows(rows, batch_dir)
    df = to_frame(rows)
    df.attrs.update(batch_id=batch_id, batch_dir=str(batch_dir))
    if figures:
        from .stress_plots import write_memory_figures
        fig_dir = None if figures is True else Path(figures)
        df.attrs["figures"] = [str(p) for p in write_memory_figures(df, fig_dir)]
    return df


def _measure_step(target: Target, step, spec: MemorySpec, split, workers: int) -> Dict[str, object]:
    want = step if step != "max" else None
    # Our stacks: the per-worker connection limit must not be the cap being measured.
    max_conn = max(10000, (want or 10 ** 7) * 2)
    server = _Server(target, spec, split, max_conn, workers)
    try:
        try:
            verify_server(HOST, server.port, spec.url_path, pipeline=4)
        except VerifyError as e:
            return {"status": "failed", "note": f"verification failed: {e}"}
        time.sleep(spec.settle_s)
        cap, limit = _capacity(server)
        out: Dict[str, object] = {"capacity": cap, "limit": limit}
        if want is None:
            want = max(1, cap - MAX_MARGIN)
            out["connections"] = want
        elif want > cap:
            out.update(status="skipped", connections_held=None, limit_hit=True,
                       note=f"{want} connections > {cap} this machine allows: {limit}")
            return out
        idle_fds = tree_fds(server.pid)
        kernel_before = kernel_memory()
        sampler = TreeSampler(server.pid)
        sampler.start()
        idle = sampler.finish()
        sampler = TreeSampler(server.pid)
        sampler.start()
        t0 = time.monotonic()
        with ConnectionLoad(server.port, want, rate=spec.rate, duration=spec.duration_s,
                            path=spec.url_path, cpus=split.client_cpus,
                            request_timeout=min(spec.request_timeout_s, 10.0)) as load:
            connected = load.connect()
            time.sleep(spec.settle_s)
            load.go()
            end = time.monotonic() + spec.duration_s
            while time.monotonic() < end:
                sampler.sample()
                time.sleep(0.5)
            result = load.finish()
            # every connection still open: the step's memory and descriptors
            fds = tree_fds(server.pid)
            server_nofile = _first_nofile(fds)
            usage = sampler.finish()
            kernel = kernel_memory()
        wall = time.monotonic() - t0
    finally:
        server.stop()
    held = max(0, sum(fds.values()) - sum(idle_fds.get(p, 0) for p in fds))
    errors = dict(result["errors"])          # cumulative: the connect phase's and the load's
    socket_errors = sum(errors.values()) - errors.get("non_2xx", 0)
    rss_delta_kb = usage.vmrss_kb - idle.vmrss_kb
    notes = []
    if connected["stopped"]:
        notes.append(f"clients stopped opening: {connected['stopped']}")
    if held < want:
        notes.append(f"server held {held} of {want}")
        if held < cap - MAX_MARGIN:
            # not the descriptors: the server's own cap (a peer's default setting)
            out["limit"] = (f"the server's own limit: it held {held} connections with room "
                            f"for {cap} descriptors")
    if result["behind"]:
        notes.append(f"{result['behind']} requests not sent (every connection busy)")
    out.update({
        "connections": want, "connections_held": held, "connections_client": result["held"],
        "requests": result["responses"], "req_per_s": result["req_per_s"],
        "wrk_duration_s": result["wall_s"], "wall_s": wall,
        "latency_p50_ms": result["latency_p50_ms"], "latency_p75_ms": result["latency_p75_ms"],
        "latency_p90_ms": result["latency_p90_ms"], "latency_p99_ms": result["latency_p99_ms"],
        "latency_overflow": False,
        "errors_connect": sum(v for k, v in connected["errors"].items()),
        "errors_timeout": errors.get("timeout", 0) + errors.get("connect_timeout", 0),
        "errors_read": errors.get("closed_by_server", 0) + errors.get("bad_response", 0),
        "errors_write": errors.get("send_failed", 0),
        "errors_socket": socket_errors, "non_2xx_3xx": errors.get("non_2xx", 0),
        "errors_json": json.dumps(errors, sort_keys=True),
        "server_cpu_s": usage.cpu_s, "server_cpu_user_s": usage.cpu_user_s,
        "server_cpu_sys_s": usage.cpu_sys_s, "server_processes": usage.processes,
        "server_vmhwm_kb": usage.vmhwm_kb, "server_vmpeak_kb": usage.vmpeak_kb,
        "server_vmrss_kb": usage.vmrss_kb, "idle_rss_kb": idle.vmrss_kb,
        "idle_vmpeak_kb": idle.vmpeak_kb,
        "rss_per_conn_bytes": rss_delta_kb * 1024 / held if held else math.nan,
        "hwm_per_conn_bytes": (usage.vmhwm_kb - idle.vmhwm_kb) * 1024 / held if held else math.nan,
        "baseline_rss_per_worker_kb": idle.vmrss_kb / max(1, workers),
        "kernel_slab_before_kb": kernel_before["slab_kb"], "kernel_slab_kb": kernel["slab_kb"],
        "kernel_tcp_mem_before_kb": kernel_before["tcp_mem_kb"],
        "kernel_tcp_mem_kb": kernel["tcp_mem_kb"],
        "slab_per_conn_bytes": (kernel["slab_kb"] - kernel_before["slab_kb"]) * 1024 / held
        if held else math.nan,
        "tcp_mem_per_conn_bytes": (kernel["tcp_mem_kb"] - kernel_before["tcp_mem_kb"]) * 1024 / held
        if held else math.nan,
        "vmpeak_per_conn_bytes": (usage.vmpeak_kb - idle.vmpeak_kb) * 1024 / held if held
        else math.nan,
        "cpu_us_per_req": usage.cpu_s * 1e6 / result["responses"] if result["responses"]
        else math.nan,
        "server_fds": sum(fds.values()),
        "server_nofile": server_nofile,
        "limit_hit": step == "max" or held < want,
        "client_processes": connected["client_processes"],
        "client_nofile": connected["client_nofile"], "connect_s": connected["connect_s"],
        "note": "; ".join(notes),
    })
    return out


def _first_nofile(fds: Dict[int, int]) -> Optional[int]:
    """The open-files limit of the process holding the most descriptors."""
    if not fds:
        return None
    return nofile_of(max(fds, key=fds.get))


def per_connection_table(df) -> "pd.DataFrame":
    """User-space and kernel bytes per connection, one row per server and
    measured step (ordered by connections held), beside the memory post's
    VmPeak per connection at 500 k (published VmPeak / 500,000: virtual memory,
    an upper bound on what those servers used, not their RSS)."""
    import pandas as pd
    from ..published_figures import load_published
    cols = ["server", "step", "workers", "connections_held", "rss_per_conn_bytes",
            "hwm_per_conn_bytes", "slab_per_conn_bytes", "tcp_mem_per_conn_bytes",
            "baseline_rss_per_worker_kb", "server_vmrss_kb", "server_vmpeak_kb"]
    ok = df[(df["status"] == "ok")] if "status" in df.columns else df
    ok = ok[[c for c in cols if c in ok.columns]].copy()
    ok.insert(0, "source", "measured")
    ok = ok.sort_values(["server", "connections_held"], kind="stable")
    pub = load_published("memory")
    published = pd.DataFrame({
        "source": "published (VmPeak)", "server": pub["server_label"],
        "step": pub["connections"].astype(str), "connections_held": pub["connections"],
        "vmpeak_per_conn_bytes": pub["vmpeak_kb"] * 1024 / pub["connections"],
        "server_vmpeak_kb": pub["vmpeak_kb"]})
    if "server_vmpeak_kb" in ok.columns and "connections_held" in ok.columns:
        ok["vmpeak_per_conn_bytes"] = ok["server_vmpeak_kb"].astype(float) * 1024 / \
            ok["connections_held"].astype(float)
    return pd.concat([ok, published], ignore_index=True)
