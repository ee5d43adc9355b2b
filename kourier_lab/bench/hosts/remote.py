"""Experiments across machines: the server on one host, the load tools on others, over SSH.

    df = run_experiment("experiments/ryzen_two_boxes.toml")   # an experiment with [hosts]

This module drives the hosts (HostSession, open_pair, merging the clients'
figures); pair.py runs the matrix on a pair with it, sweep.py (run_on_hosts)
is where run_experiment hands such an experiment.

asyncssh carries every command; each host runs `python -m
kourier_lab.bench.hosts.agent` (bench/hosts/agent.py) from the same commit as
this checkout.  For one host pair:

1. Connect to every host, read its metadata (`agent info`) and check it is at
   this checkout's commit (prepare = "check"), or ship the commit there
   (prepare = "ship": `git archive` over SFTP, then the README's `make setup`).
2. Split CPUs by the profile on each host: the server takes the profile's
   server CPUs of the server host, each client the profile's client CPUs of its
   own host (so `ryzen-5-1600` on two 12-thread boxes is 6 server CPUs + 6 wrk
   CPUs per client, exactly the split it uses on one box).
3. Start the server pinned on the server host, bound to `address` (`agent
   serve`; it stops the server's whole tree when the SSH channel closes), then
   verify it and measure its bytes from the first client host.
4. Each counted run starts wrk on every client host at one instant T: the
   harness measures each host's clock offset against its own (a few round
   trips over one SSH channel, keeping the fastest: offset = remote time -
   midpoint, uncertain by half that round trip), starts every agent, waits
   until each says it is ready (so no Python start-up counts), then sends each
   T in its own clock and each sleeps until then.  The server host samples the
   server tree (CPU, RSS) and its CPUs for the run's duration from T.  The row
   records how far the real starts and ends were apart
   (window_start_spread_ms, window_end_spread_ms, in the harness's clock, each
   uncertain by clock_uncertainty_ms) and clients_on_time (every agent was
   asleep before T came).
5. Every raw output (wrk's report and its latency distribution) is fetched
   over SFTP into the batch folder, and the clients' figures are merged:
   requests and requests/s summed, latency percentiles from the merged
   distributions (exact per-microsecond counts, the ones wrk prints its own
   percentiles from, never an average of percentiles).  The merged
   distribution is also kept as an HdrHistogram (latency_hdr, base64), so rows
   of different runs can be merged again later.

An experiment's connections are the total over its clients (split evenly), so
512 connections mean 512 whatever the number of client hosts.
"""
from __future__ import annotations

import asyncio
import json
import math
import os
import shlex
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .hosts_table import Host, HostPair, HostsSpec
from ..experiment.split import Split, cpu_list, plan_split

CONNECT_TIMEOUT_S = 20.0
CLOCK_ROUNDS = 8
LATENCY_DUMP_LUA = Path(__file__).parents[1] / "load" / "lua" / "latency_dump.lua"
PERCENTILES = (50, 75, 90, 99)


class RemoteError(RuntimeError):
    """A host could not be used, or a remote command failed (one line)."""


# ---------------------------------------------------------------------------
# One host: asyncssh, or this machine through the same agent commands


class HostSession:
    """Commands on one host: `run` (wait for it), `start` (a long-lived process), `get` (a file)."""

    def __init__(self, host: Host, spec: HostsSpec):
        self.host = host
        self.spec = spec
        self.conn = None
        self.sftp = None
        self.info: Dict[str, object] = {}
        self.clock_offset_s = 0.0          # this host's time.time() - ours
        self.clock_uncertainty_s = 0.0
        self.workdir = spec.workdir or str(_local_root())

    @property
    def python(self) -> str:
        p = self.spec.python
        return p if os.path.isabs(p) else f"{self.workdir.rstrip('/')}/{p}"

    async def connect(self) -> None:
        if self.host.local:
            return
        try:
            import asyncssh
        except ImportError:
            raise RemoteError("[hosts] needs asyncssh: pip install 'kourier-lab[hosts]' "
                              "(or `make setup`)") from None
        kwargs = {"port": self.host.port, "username": self.host.username,
                  "known_hosts": (os.path.expanduser(self.spec.known_hosts)
                                  if self.spec.known_hosts else None),
                  "connect_timeout": CONNECT_TIMEOUT_S}
        if self.spec.identity:
            kwargs["client_keys"] = [os.path.expanduser(self.spec.identity)]
        try:
            self.conn = await asyncssh.connect(self.host.hostname, **kwargs)
        except (OSError, asyncssh.Error, asyncio.TimeoutError) as e:
            raise RemoteError(f"ssh {self.host.url}: {type(e).__name__}: {e}") from None

    async def close(self) -> None:
        if self.sftp is not None:
            self.sftp.exit()
        if self.conn is not None:
            self.conn.close()
            await self.conn.wait_closed()

    def agent_line(self, *args: str) -> str:
        """The shell line that runs the agent from this host's checkout."""
        wd = shlex.quote(self.workdir)
        return (f"cd {wd} && PYTHONPATH={wd} exec {shlex.quote(self.python)} "
                f"-m kourier_lab.bench.hosts.agent {shlex.join(args)}")

    async def run(self, line: str, timeout: float = 120.0) -> Tuple[int, str, str]:
        if self.host.local:
            proc = await asyncio.create_subprocess_shell(
                line, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
            return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
        r = await asyncio.wait_for(self.conn.run(line, check=False), timeout)
        return (r.exit_status if r.exit_status is not None else -1, r.stdout or "",
                r.stderr or "")

    async def agent(self, *args: str, timeout: float = 120.0) -> Dict[str, object]:
        """Run one agent command and return its JSON (RemoteError on failure)."""
        code, out, err = await self.run(self.agent_line(*args), timeout)
        obj = _last_json(out)
        if obj is None or code != 0 and "error" not in obj:
            tail = (err.strip().splitlines() or out.strip().splitlines() or ["no output"])[-1]
            raise RemoteError(f"{self.host.label}: agent {args[0]} exited with {code}: {tail}")
        if "error" in obj:
            raise RemoteError(f"{self.host.label}: {args[0]}: {obj['error']}")
        return obj

    async def start(self, *args: str) -> "AgentProcess":
        line = self.agent_line(*args)
        if self.host.local:
            proc = await asyncio.create_subprocess_shell(
                line, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            return AgentProcess(self, proc, local=True)
        proc = await self.conn.create_process(line)
        return AgentProcess(self, proc, local=False)

    async def get(self, remote: str, local: Path) -> bool:
        """Copy a file from this host; False when it does not exist there."""
        local.parent.mkdir(parents=True, exist_ok=True)
        if self.host.local:
            try:
                if Path(remote).resolve() != local.resolve():
                    local.write_bytes(Path(remote).read_bytes())
                return True
            except OSError:
                return False
        import asyncssh
        if self.sftp is None:
            self.sftp = await self.conn.start_sftp_client()
        try:
            await self.sftp.get(remote, str(local))
            return True
        except (asyncssh.SFTPError, OSError):
            return False

    async def put(self, local: Path, remote: str) -> None:
        if self.host.local:
            Path(remote).write_bytes(local.read_bytes())
            return
        if self.sftp is None:
            self.sftp = await self.conn.start_sftp_client()
        await self.sftp.put(str(local), remote)

    async def measure_clock(self, rounds: int = CLOCK_ROUNDS) -> None:
        """This host's clock offset against ours, from the fastest of a few round trips."""
        if self.host.local:
            self.clock_offset_s, self.clock_uncertainty_s = 0.0, 0.0
            return
        proc = await self.start("clock")
        best = None
        try:
            for _ in range(rounds):
                t0 = time.time()
                await proc.send_line("t")
                line = await proc.read_line(10.0)
                t1 = time.time()
                if not line:
                    raise RemoteError(f"{self.host.label}: agent clock said nothing")
                sample = (t1 - t0, float(line) - (t0 + t1) / 2)
                if best is None or sample[0] < best[0]:
                    best = sample
        finally:
            await proc.close()
        self.clock_uncertainty_s, self.clock_offset_s = best[0] / 2, best[1]


class AgentProcess:
    """A running agent command: lines in, JSON lines out."""

    def __init__(self, session: HostSession, proc, local: bool):
        self.session, self.proc, self.local = session, proc, local

    async def send_line(self, text: str) -> None:
        self.proc.stdin.write((text + "\n").encode() if self.local else text + "\n")
        if self.local:
            await self.proc.stdin.drain()

    async def read_line(self, timeout: float) -> str:
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        return line.decode() if isinstance(line, bytes) else line

    async def read_json(self, timeout: float) -> Dict[str, object]:
        while True:
            line = await self.read_line(timeout)
            if not line:
                err = await self._stderr_tail()
                raise RemoteError(f"{self.session.host.label}: the agent ended without an "
                                  f"answer{': ' + err if err else ''}")
            obj = _last_json(line)
            if obj is not None:
                return obj

    async def _stderr_tail(self) -> str:
        try:
            data = await asyncio.wait_for(self.proc.stderr.read(), 2.0)
        except (asyncio.TimeoutError, Exception):
            return ""
        text = data.decode(errors="replace") if isinstance(data, bytes) else data
        return (text.strip().splitlines() or [""])[-1]

    async def close(self, timeout: float = 30.0) -> None:
        """Close its stdin (the agent's "stop") and wait for it to end."""
        try:
            if self.local:
                self.proc.stdin.close()
                await asyncio.wait_for(self.proc.wait(), timeout)
            else:
                self.proc.stdin.write_eof()
                await asyncio.wait_for(self.proc.wait_closed(), timeout)
        except (asyncio.TimeoutError, OSError, BrokenPipeError, ConnectionError):
            if self.local:
                self.proc.kill()
            else:
                self.proc.close()


def _last_json(text: str) -> Optional[Dict[str, object]]:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def _local_root() -> Path:
    from ...paths import repo_root
    return repo_root()


# ---------------------------------------------------------------------------
# Preparing hosts


async def prepare_host(session: HostSession, commit: str, echo=print) -> None:
    """Check the host is at `commit`; with prepare = "ship", put it there first."""
    try:
        session.info = await session.agent("info", timeout=60.0)
    except RemoteError as e:
        if session.spec.prepare != "ship":
            raise RemoteError(f"{e} (is the checkout at workdir = {session.workdir!r} and "
                              f"python = {session.spec.python!r} there? or set "
                              f"prepare = \"ship\")") from None
        session.info = {"git_commit": "none"}
    there = str(session.info.get("git_commit"))
    if there == commit:
        return
    if session.spec.prepare != "ship":
        raise RemoteError(f"{session.host.label} runs commit {there}, this checkout {commit}: "
                          f"check out {commit} in {session.workdir} there, or set "
                          f"prepare = \"ship\" in [hosts]")
    await ship_commit(session, commit, echo)
    session.info = await session.agent("info", timeout=60.0)
    if str(session.info.get("git_commit")) != commit:
        raise RemoteError(f"{session.host.label}: shipped {commit} but it reports "
                          f"{session.info.get('git_commit')}")


async def ship_commit(session: HostSession, commit: str, echo=print) -> None:
    """git archive of `commit` -> SFTP -> untar into workdir, then the spec's setup command."""
    if commit.endswith("+dirty") or commit == "unknown":
        raise RemoteError(f"cannot ship {commit!r}: commit your changes first (only a commit "
                          f"can be shipped exactly)")
    echo(f"{session.host.label}: shipping {commit[:12]} to {session.workdir}")
    with tempfile.TemporaryDirectory(prefix="kourier-ship-") as tmp:
        tar = Path(tmp) / f"kourier_lab-{commit[:12]}.tar"
        subprocess.run(["git", "-C", str(_local_root()), "archive", "--format=tar", "-o",
                        str(tar), commit], check=True, capture_output=True)
        wd = shlex.quote(session.workdir)
        # never unpack over someone's checkout: only into a new or a shipped directory
        code, _, _ = await session.run(f"test -e {wd}/.git")
        if code == 0:
            raise RemoteError(f"{session.host.label}: {session.workdir} is a git checkout at "
                              f"another commit; check out {commit} there, or ship into a new "
                              f"workdir")
        code, _, err = await session.run(f"mkdir -p {wd}")
        if code != 0:
            raise RemoteError(f"{session.host.label}: mkdir {session.workdir}: {err.strip()}")
        remote_tar = f"{session.workdir.rstrip('/')}/.kourier-ship.tar"
        await session.put(tar, remote_tar)
    code, out, err = await session.run(
        f"cd {wd} && tar -xf .kourier-ship.tar && rm -f .kourier-ship.tar && "
        f"echo {shlex.quote(commit)} > .kourier-commit && {session.spec.setup}", timeout=3600)
    if code != 0:
        tail = (err.strip().splitlines() or out.strip().splitlines() or ["no output"])[-1]
        raise RemoteError(f"{session.host.label}: set-up ({session.spec.setup}) failed: {tail}")


# ---------------------------------------------------------------------------
# Host metadata and the CPU plan


def host_columns(prefix: str, info: Dict[str, object], cpus: Sequence[int],
                 address: Optional[str] = None) -> Dict[str, object]:
    """The row's view of one host: CPU model, logical CPUs, SMT siblings of the CPUs
    used, governor(s), kernel, and the NIC (link speed) that carries the traffic."""
    per_cpu = info.get("cpus", {}) or {}
    siblings = []
    governors = set()
    for c in cpus:
        d = per_cpu.get(str(c), {})
        siblings.append(f"{c}:{cpu_list(d.get('siblings', [c]))}")
        governors.add(d.get("governor") or "unknown")
    nics = info.get("nics", []) or []
    carrying = [n for n in nics if n.get("holds_address")] or [
        n for n in nics if n.get("addresses") and n.get("operstate") == "up"]
    nic = ";".join(f"{n['name']} {n['speed_mbps']} Mb/s" if n.get("speed_mbps")
                   else f"{n['name']} (speed unknown)" for n in carrying)
    return {
        f"{prefix}_hostname": info.get("hostname"),
        f"{prefix}_cpu_model": info.get("cpu_model"),
        f"{prefix}_logical_cpus": info.get("logical_cpus"),
        f"{prefix}_kernel": info.get("kernel"),
        f"{prefix}_cpus": cpu_list(cpus),
        f"{prefix}_smt_siblings": " ".join(siblings),
        f"{prefix}_governor": ",".join(sorted(governors)),
        f"{prefix}_nic": nic,
    }


def _cores(info: Dict[str, object], cpus: Sequence[int]) -> Dict[str, List[int]]:
    out: Dict[str, List[int]] = {}
    for c in cpus:
        core = (info.get("cpus", {}) or {}).get(str(c), {}).get("core", f"?:{c}")
        out.setdefault(core, []).append(c)
    return out


def shared_cores_warning(server_info, server_cpus, clients) -> str:
    """'' unless a client runs on the server's machine on the same physical cores.

    Hosts are one machine when they run one kernel (same boot_id), like network
    namespaces or containers on one box."""
    notes = []
    srv_cores = _cores(server_info, server_cpus)
    for label, info, cpus in clients:
        if not info.get("boot_id") or info.get("boot_id") != server_info.get("boot_id"):
            continue
        same_cpus = sorted(set(cpus) & set(server_cpus))
        cli_cores = _cores(info, cpus)
        shared = sorted(set(srv_cores) & set(cli_cores))
        if same_cpus:
            notes.append(f"{label} shares logical CPU(s) {cpu_list(same_cpus)} with the server")
        elif shared:
            pairs = ", ".join(f"core {k}: server {cpu_list(srv_cores[k])} / client "
                              f"{cpu_list(cli_cores[k])}" for k in shared)
            notes.append(f"{label} shares physical cores with the server (SMT siblings: {pairs})")
    return "; ".join(notes)


def plan_hosts(profile: str, server_info, client_infos) -> Tuple[Split, List[List[int]], str]:
    """(server split, each client's CPUs, note): the profile's split on each host."""
    srv = plan_split(profile, server_info["usable_cpus"])
    clients = [plan_split(profile, info["usable_cpus"]).client_cpus for info in client_infos]
    note = srv.note
    return (Split(profile, srv.server_cpus, clients[0], note), clients, note)


# ---------------------------------------------------------------------------
# Merging the clients' figures


def read_distribution(path: Path) -> np.ndarray:
    """wrk's latency distribution as dumped by latency_dump.lua: rows of (µs, count)."""
    try:
        data = np.loadtxt(path, dtype=np.int64, ndmin=2)
    except (OSError, ValueError):
        return np.zeros((0, 2), dtype=np.int64)
    return data.reshape(-1, 2)


def merge_distributions(parts: Sequence[np.ndarray]) -> np.ndarray:
    """Sum several (µs, count) distributions into one, sorted by µs."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return np.zeros((0, 2), dtype=np.int64)
    both = np.concatenate(parts)
    values, inverse = np.unique(both[:, 0], return_inverse=True)
    counts = np.bincount(inverse, weights=both[:, 1]).astype(np.int64)
    return np.stack([values, counts], axis=1)


def distribution_figures(dist: np.ndarray) -> Dict[str, object]:
    """Percentiles (nearest rank), mean, stdev and max of a (µs, count) distribution, in ms."""
    out: Dict[str, object] = {f"latency_p{p}_ms": math.nan for p in PERCENTILES}
    out.update(latency_p999_ms=math.nan, latency_avg_ms=math.nan, latency_stdev_ms=math.nan,
               latency_max_ms=math.nan, latency_samples=0)
    if not len(dist):
        return out
    values = dist[:, 0].astype(np.float64)
    counts = dist[:, 1].astype(np.float64)
    total = counts.sum()
    cum = np.cumsum(counts)
    for p, key in [*((p, f"latency_p{p}_ms") for p in PERCENTILES), (99.9, "latency_p999_ms")]:
        rank = max(1.0, math.ceil(p / 100.0 * total))
        out[key] = float(values[np.searchsorted(cum, rank)]) / 1e3
    mean = float((values * counts).sum() / total)
    out.update(latency_avg_ms=mean / 1e3,
               latency_stdev_ms=math.sqrt(float((counts * (values - mean) ** 2).sum() / total))
               / 1e3,
               latency_max_ms=float(values[-1]) / 1e3, latency_samples=int(total))
    return out


def hdr_encoded(dist: np.ndarray) -> Optional[str]:
    """The distribution as an encoded HdrHistogram (µs, 3 significant digits), or None
    when the hdrhistogram package is missing."""
    try:
        from hdrh.histogram import HdrHistogram
    except ImportError:
        return None
    if not len(dist):
        return None
    hist = HdrHistogram(1, max(2, int(dist[-1, 0]) * 2), 3)
    for value, count in dist:
        hist.record_value(max(1, int(value)), int(count))
    enc = hist.encode()
    return enc.decode() if isinstance(enc, bytes) else enc


def merge_wrk_clients(clients: Sequence[Dict[str, object]], dists: Sequence[np.ndarray]
                      ) -> Dict[str, object]:
    """One row's figures from every client's parsed wrk report and distribution."""
    out: Dict[str, object] = {}
    for key in ("requests", "bytes_read", "req_per_s", "transfer_per_s_bytes", "errors_connect",
                "errors_read", "errors_write", "errors_timeout", "errors_socket", "non_2xx_3xx",
                "wrk_cpu_s"):
        out[key] = sum(c.get(key) or 0 for c in clients)
    out["wrk_duration_s"] = max(c.get("wrk_duration_s") or 0 for c in clients)
    out["latency_overflow"] = any(bool(c.get("latency_overflow")) for c in clients)
    merged = merge_distributions(dists)
    out.update(distribution_figures(merged))
    out["latency_hdr"] = hdr_encoded(merged)
    return out


# ---------------------------------------------------------------------------
# One host pair, the whole experiment


@dataclass
class PairRun:
    """Live state of one host pair while it runs."""
    pair: HostPair
    spec: HostsSpec
    server: HostSession = None
    clients: List[HostSession] = field(default_factory=list)
    split: Split = None
    client_cpus: List[List[int]] = field(default_factory=list)
    note: str = ""
    shared_warning: str = ""

    @property
    def sessions(self) -> List[HostSession]:
        return [self.server, *[c for c in self.clients if c is not self.server]]


async def open_pair(pair: HostPair, spec: HostsSpec, profile: str, commit: str,
                    echo=print) -> PairRun:
    run = PairRun(pair, spec)
    run.server = HostSession(pair.server, spec)
    by_host = {pair.server: run.server}
    for h in pair.clients:
        by_host.setdefault(h, HostSession(h, spec))
    run.clients = [by_host[h] for h in pair.clients]
    sessions = list(by_host.values())
    try:
        await asyncio.gather(*(s.connect() for s in sessions))
        # one host after the other: hosts sharing a filesystem see the first one's
        # shipped tree and need no second copy
        for s in sessions:
            await prepare_host(s, commit, echo)
        await asyncio.gather(*(s.measure_clock() for s in sessions))
    except BaseException:
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
        raise
    run.split, run.client_cpus, run.note = plan_hosts(
        profile, run.server.info, [c.info for c in run.clients])
    run.shared_warning = shared_cores_warning(
        run.server.info, run.split.server_cpus,
        [(c.host.label, c.info, cpus) for c, cpus in zip(run.clients, run.client_cpus)])
    return run


async def close_pair(run: PairRun) -> None:
    await asyncio.gather(*(s.close() for s in run.sessions if s is not None),
                         return_exceptions=True)


def pair_columns(run: PairRun) -> Dict[str, object]:
    """Every host's metadata for the rows of this pair."""
    cols = {"host_pair": run.pair.label, "server_host": run.pair.server.label,
            "server_address": run.pair.address,
            "client_hosts": ";".join(c.host.label for c in run.clients),
            "client_host_count": len(run.clients),
            "shared_cores_warning": run.shared_warning,
            "clock_uncertainty_ms": 1e3 * max(s.clock_uncertainty_s for s in run.sessions),
            "clock_offsets_ms": ";".join(f"{s.host.label}={1e3 * s.clock_offset_s:+.3f}"
                                         for s in run.sessions)}
    cols.update(host_columns("server_host", run.server.info, run.split.server_cpus,
                             run.pair.address))
    per_client = [host_columns("client_host", c.info, cpus)
                  for c, cpus in zip(run.clients, run.client_cpus)]
    for key in per_client[0]:
        cols[key] = ";".join(str(pc[key]) for pc in per_client)
    info = run.server.info
    # the machine_* columns describe where the server ran
    cols.update({"machine_cpu_model": info.get("cpu_model"),
                 "machine_logical_cpus": info.get("logical_cpus"),
                 "machine_usable_cpus": len(info.get("usable_cpus", [])),
                 "machine_kernel": info.get("kernel"),
                 "machine_hostname": info.get("hostname")})
    cols["hosts_json"] = json.dumps([
        {"role": role, "host": s.host.label, **{k: v for k, v in s.info.items() if k != "time"}}
        for role, s in [("server", run.server), *[("client", c) for c in run.clients]]])
    return cols
