"""What limited a run: the server, the load tool, both, other tenants, or neither.

One rule for both sides, one threshold:

    a side is *saturated* when its CPUs were busy >= SATURATION (0.90) of the
    run's wall time: the server's CPUs (`server_cpus_busy`, from /proc/stat
    over the run) for the server, the load tool's CPUs (`client_cpus_busy`)
    for wrk or h2load.  Where the per-CPU figure is missing, the process's own
    CPU use stands in (`server_cpu_util`, `wrk_cpu_util`).

    of a side's busy time, the part neither its own process tree nor softirq
    (largely loopback TCP, ours) used is *others* (never below zero; the
    `server_cpus_other` / `client_cpus_other` columns): other processes of a
    shared machine.  A saturated side whose others use >= CONTENTION (0.20) of
    its CPUs is saturated by them, not by the run.

    bottleneck =  "both"        both sides saturated by their own work
                  "server"      only the server's CPUs
                  "client"      only the load tool's CPUs
                  "contention"  no side saturated by its own work, and others
                                used >= CONTENTION of either side's CPUs
                  "neither"     nothing saturated: the run was latency-bound
                                (or paced: the open-loop rate shape)

The summary (summary.py) applies the same rule to the median figures of a
server's runs rather than taking the commonest per-run label, so two runs
that straddle the threshold do not pick a label by a tie; run/measure.py
labels each run.
"""
from __future__ import annotations

import math
from typing import Mapping, Optional

SATURATION = 0.90
CONTENTION = 0.20
LABELS = ("server", "client", "both", "contention", "neither")


def _num(value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return math.nan
    return v


def _side(busy, own, softirq) -> tuple:
    """(saturated by its own work, others' share) for one side."""
    busy, own, softirq = _num(busy), _num(own), _num(softirq)
    if math.isnan(busy):
        busy = own
    if math.isnan(busy):
        return False, math.nan
    others = busy - (0.0 if math.isnan(own) else own) - (0.0 if math.isnan(softirq) else softirq)
    others = max(0.0, others)
    return busy >= SATURATION and others < CONTENTION, others


def classify(server_cpu_util=None, client_cpu_util=None, server_cpus_busy=None,
             client_cpus_busy=None, server_cpus_softirq=None, client_cpus_softirq=None) -> str:
    """The bottleneck label of one run (or of a server's medians); see the module."""
    srv_sat, srv_other = _side(server_cpus_busy, server_cpu_util, server_cpus_softirq)
    cli_sat, cli_other = _side(client_cpus_busy, client_cpu_util, client_cpus_softirq)
    if srv_sat and cli_sat:
        return "both"
    if srv_sat:
        return "server"
    if cli_sat:
        return "client"
    others = [v for v in (srv_other, cli_other) if not math.isnan(v)]
    if others and max(others) >= CONTENTION:
        return "contention"
    return "neither"


def classify_row(row: Mapping) -> str:
    """classify() on a mapping with the rows' column names (a run row, a summary
    line or run/measure.py's figures dict)."""
    get = row.get
    client = get("wrk_cpu_util")
    if client is None or (isinstance(client, float) and math.isnan(client)):
        client = get("client_cpu_util")
    return classify(get("server_cpu_util"), client, get("server_cpus_busy"),
                    get("client_cpus_busy"), get("server_cpus_softirq"),
                    get("client_cpus_softirq"))


def saturated_side(label: Optional[str]) -> str:
    """A short phrase for a label, for sentences: 'server-bound', 'wrk-bound', ..."""
    return {"server": "server-bound", "client": "load-tool-bound",
            "both": "server and load tool both saturated",
            "contention": "contended by other processes",
            "neither": "neither side saturated"}.get(str(label or ""), "bottleneck unknown")
