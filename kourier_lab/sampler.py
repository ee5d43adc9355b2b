"""CPU and memory of a whole process tree, read from /proc while a load runs
(bench/run/measure.py, the host agent, the stress experiments); also how busy
a set of CPUs was (/proc/stat) and pinning a tree to CPUs.

A server here is a supervisor plus worker processes (or threads, for peers), so
its cost is the sum over every descendant of the process we started.  CPU is
utime+stime of each process (all its threads) between the start and the end of
the measured window; a process born during the window counts from zero, one
that dies during it keeps its last sampled value (its final slice is lost,
which is why we sample a few times a second).  Memory is VmHWM (peak RSS) and
VmPeak (peak virtual size) of each process, summed: the figure the Kourier
memory post quotes is VmPeak.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Set, Tuple

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _read_stat(pid: int) -> Optional[Tuple[int, int, int, int]]:
    """(ppid, utime, stime, starttime) in clock ticks, or None when gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    rest = data[data.rfind(b")") + 2:].split()
    return int(rest[1]), int(rest[11]), int(rest[12]), int(rest[19])


def _read_status_kb(pid: int) -> Dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith((b"VmHWM:", b"VmPeak:", b"VmRSS:")):
                    key, value = line.split(b":", 1)
                    out[key.decode()] = int(value.split()[0])
    except OSError:
        pass
    return out


def descendants(root: int) -> List[int]:
    """root and every process below it (one scan of /proc)."""
    children: Dict[int, List[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        st = _read_stat(int(name))
        if st is not None:
            children.setdefault(st[0], []).append(int(name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


@dataclass
class _Proc:
    base_utime: int            # at the start of the window (0 if born in it)
    base_stime: int
    utime: int
    stime: int
    starttime: int
    vmhwm_kb: int = 0
    vmpeak_kb: int = 0
    vmrss_kb: int = 0


@dataclass
class TreeUsage:
    cpu_user_s: float
    cpu_sys_s: float
    processes: int
    vmhwm_kb: int
    vmpeak_kb: int
    vmrss_kb: int

    @property
    def cpu_s(self) -> float:
        return self.cpu_user_s + self.cpu_sys_s


@dataclass
class TreeSampler:
    """sampler = TreeSampler(pid); sampler.start(); ... sampler.sample() ...; sampler.finish()"""
    root: int
    procs: Dict[int, _Proc] = field(default_factory=dict)
    started: bool = False

    def _scan(self, window_start: bool) -> None:
        for pid in descendants(self.root):
            st = _read_stat(pid)
            if st is None:
                continue
            _, ut, stt, starttime = st
            known = self.procs.get(pid)
            if known is None or known.starttime != starttime:   # new (or a reused pid)
                bu, bs = (ut, stt) if window_start else (0, 0)
                known = self.procs[pid] = _Proc(bu, bs, ut, stt, starttime)
            known.utime, known.stime = ut, stt
            mem = _read_status_kb(pid)
            known.vmhwm_kb = max(known.vmhwm_kb, mem.get("VmHWM", 0))
            known.vmpeak_kb = max(known.vmpeak_kb, mem.get("VmPeak", 0))
            known.vmrss_kb = mem.get("VmRSS", known.vmrss_kb)

    def start(self) -> None:
        self.procs.clear()
        self._scan(window_start=True)
        self.started = True

    def sample(self) -> None:
        if not self.started:
            raise RuntimeError("TreeSampler.sample() before start()")
        self._scan(window_start=False)

    def pids(self) -> Set[int]:
        return set(self.procs)

    def finish(self) -> TreeUsage:
        self.sample()
        user = sum(p.utime - p.base_utime for p in self.procs.values())
        sys_ = sum(p.stime - p.base_stime for p in self.procs.values())
        return TreeUsage(
            cpu_user_s=user / CLK_TCK, cpu_sys_s=sys_ / CLK_TCK, processes=len(self.procs),
            vmhwm_kb=sum(p.vmhwm_kb for p in self.procs.values()),
            vmpeak_kb=sum(p.vmpeak_kb for p in self.procs.values()),
            vmrss_kb=sum(p.vmrss_kb for p in self.procs.values()))


def pin_tree(pids: Iterable[int], cpus: Iterable[int]) -> int:
    """Restrict every thread of these processes to `cpus` unless it already is
    inside them (a worker pinned to one of the CPUs keeps its own pin).
    Returns how many threads were re-pinned."""
    allowed = set(cpus)
    changed = 0
    for pid in pids:
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        except OSError:
            continue
        for tid in tids:
            try:
                if not os.sched_getaffinity(tid) <= allowed:
                    os.sched_setaffinity(tid, allowed)
                    changed += 1
            except OSError:
                pass
    return changed


def cpu_ticks(cpus: Iterable[int]) -> Dict[str, int]:
    """Summed /proc/stat ticks of these CPUs: total, busy (not idle/iowait), softirq.

    Per-process CPU time misses work the kernel does in softirq context (much of
    loopback TCP) and says nothing about other processes on the same CPUs; the
    per-CPU counters show both."""
    want = {f"cpu{c}" for c in cpus}
    out = {"total": 0, "busy": 0, "softirq": 0}
    try:
        with open("/proc/stat") as f:
            for line in f:
                parts = line.split()
                if parts and parts[0] in want:
                    v = [int(x) for x in parts[1:9]]     # user..steal
                    total = sum(v)
                    out["total"] += total
                    out["busy"] += total - v[3] - v[4]   # minus idle, iowait
                    out["softirq"] += v[6]
    except OSError:
        pass
    return out


def cpu_fractions(before: Dict[str, int], after: Dict[str, int]) -> Dict[str, float]:
    total = after["total"] - before["total"]
    if total <= 0:
        return {"busy": float("nan"), "softirq": float("nan")}
    return {"busy": (after["busy"] - before["busy"]) / total,
            "softirq": (after["softirq"] - before["softirq"]) / total}
