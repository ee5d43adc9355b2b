"""Core split: which CPUs the server gets, which wrk gets, and the profiles.

The post splits one machine in two: the server's six threads on one half of
the Ryzen 5 1600's twelve logical CPUs, wrk's six threads on the other half.
We do the same and pin both sides (the server with --cpus / sched_setaffinity,
wrk with sched_setaffinity), so neither steals the other's CPUs.  "First half"
means the lowest-numbered half of the CPUs this process may use.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    logical_cpus: Optional[int] = None     # None: whatever this machine has
    server_cpus: Optional[int] = None
    client_cpus: Optional[int] = None
    duration_s: int = 10
    # Shape defaults this profile fixes (the post's command line).
    shape_defaults: Optional[Dict[str, Dict[str, int]]] = None


PROFILES: Dict[str, Profile] = {
    "auto": Profile(
        "auto", "this machine's CPUs, halved: the first half for the server, the rest for wrk",
        duration_s=10),
    "ryzen-5-1600": Profile(
        "ryzen-5-1600",
        "the Kourier post's machine: 12 logical CPUs, 6 server + 6 wrk, "
        "wrk -t6 -c512 -d15 --latency -s pipeline.lua -- 256",
        logical_cpus=12, server_cpus=6, client_cpus=6, duration_s=15,
        shape_defaults={"pipelined": {"connections": 512, "pipeline": 256},
                        "distinct": {"connections": 512, "pipeline": 256}}),
}


@dataclass(frozen=True)
class Split:
    profile: str
    server_cpus: List[int]
    client_cpus: List[int]
    note: str            # empty when the profile ran as specified

    @property
    def workers(self) -> int:
        return len(self.server_cpus)

    @property
    def wrk_threads(self) -> int:
        return len(self.client_cpus)

    @property
    def shared(self) -> bool:
        return bool(set(self.server_cpus) & set(self.client_cpus))


def cpu_list(cpus: Sequence[int]) -> str:
    return ",".join(str(c) for c in cpus)


def available_cpus() -> List[int]:
    return sorted(os.sched_getaffinity(0))


def plan_split(profile: str = "auto", cpus: Optional[Sequence[int]] = None) -> Split:
    """The server/wrk CPU lists for a profile on this machine (or on `cpus`)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of: {', '.join(PROFILES)}")
    prof = PROFILES[profile]
    cpus = sorted(cpus) if cpus is not None else available_cpus()
    if not cpus:
        raise ValueError("no CPUs to split")
    n = len(cpus)
    if n == 1:
        return Split(profile, cpus, cpus,
                     f"one CPU available: server and wrk share CPU {cpus[0]}, "
                     "so every figure is a lower bound")
    if prof.logical_cpus is None:
        half = n // 2
        return Split(profile, cpus[:half], cpus[half:], "")
    want = prof.server_cpus + prof.client_cpus
    if n >= want:
        return Split(profile, cpus[:prof.server_cpus],
                     cpus[prof.server_cpus:want], "")
    # Scale down, keeping the profile's server:wrk proportion.
    server_n = max(1, min(n - 1, round(n * prof.server_cpus / want)))
    return Split(profile, cpus[:server_n], cpus[server_n:],
                 f"profile {profile} wants {prof.logical_cpus} logical CPUs "
                 f"({prof.server_cpus} server + {prof.client_cpus} wrk); this machine "
                 f"offers {n}: scaled down to {server_n} + {n - server_n}")
