"""What notebook 11 (epoll against io_uring) runs, as package functions: the
experiments, the sweep over connection counts, the figure and the sentences
saying where the uring loop wins and where it loses.

The two loops share native/loop.c's per-connection logic (the uring loop is
the C loop with loop_uring.c as its driver), so a difference between c/c/c and
uring/c/c is the kernel interface's.  Each io_uring switch is its own row
(`uring_features`, rows named uring/c/c~<setting>)."""
from __future__ import annotations

from typing import List, Sequence

import pandas as pd

from ..experiment.files import Experiment, parse_experiment

STACKS = ["c/c/c", "uring/c/c"]
# the default switches, then one switch turned over at a time
URING_SETTINGS = ["default", "no-multishot", "no-multishot,no-buf-ring", "no-defer-taskrun", "fixed-files"]
QUICK_SETTINGS = ["default", "no-multishot"]
SHAPES = ["keepalive", "pipelined", "distinct"]
QUICK_SHAPES = ["keepalive", "pipelined"]
# 20,000 (keep-alive only): more server workers than CPUs, as one process's file cap
# needs (bench/run/servers.connection_workers), the load tool over several processes
CONNECTIONS = (64, 512, 4096, 20000)
MANY = 4096          # above this, keep-alive only (20,000 x 256 pipelined requests is not a load here)
QUICK_CONNECTIONS = (64,)


def uring_status() -> str:
    """One line: whether the uring loop runs here, and why not when it does not."""
    from ... import loops
    ok, why = loops.available("uring")
    return "the uring loop runs here" if ok else f"the uring loop does not run here: {why}"


def experiment(connections: int, quick: bool) -> Experiment:
    """Both loops (the uring one per setting) and both ceilings (epoll's and
    io_uring's: ceiling, ceiling-uring) at one connection count."""
    shapes = QUICK_SHAPES if quick else SHAPES
    if connections > MANY:
        shapes = ["keepalive"]
    pipelines = {"keepalive": 1, "pipelined": 256, "distinct": 256}
    return parse_experiment({
        "name": f"epoll_vs_uring_{connections}",
        "description": f"c/c/c vs uring/c/c per io_uring setting, and the ceiling, at {connections} connections",
        "stacks": STACKS,
        "ceilings": ["epoll", "uring"],
        "uring_features": QUICK_SETTINGS if quick else URING_SETTINGS,
        "shapes": shapes,
        "load_tool": "kourier-lab",     # wrk cannot open 20,000 connections in its one process
        "repetitions": 3,
        "duration": 3,
        "shape": {s: {"connections": connections, "pipeline": pipelines[s]} for s in shapes},
    })


def run_sweep(quick: bool, connections: Sequence[int] = ()) -> pd.DataFrame:
    """Every connection count's batch, summarized, with a `connections` column."""
    from ... import bench
    frames = []
    for n in connections or (QUICK_CONNECTIONS if quick else CONNECTIONS):
        rows = bench.run_experiment(experiment(n, quick), quick=quick, progress=False, summary=False)
        s = bench.summarize(rows)
        s["connections"] = n
        frames.append(s)
    return pd.concat(frames, ignore_index=True)


# the four servers the figure draws (the io_uring switches are rows of the table)
FOUR = ("ceiling", "ceiling-uring", "c/c/c", "uring/c/c")


def plot_cpu_per_request(summary: pd.DataFrame, servers: Sequence[str] = FOUR):
    """CPU-µs per request against connections, one panel per shape, one line per
    server: both ceilings and both loops by default (servers=None: every row)."""
    from ... import style
    shapes = list(dict.fromkeys(summary["shape"]))
    fig, axes = style.figure(1, len(shapes), figsize=(5 * len(shapes), 3.8))
    for ax, shape in zip(axes[0], shapes):
        part = summary[(summary["shape"] == shape) & summary["cpu_us_per_req"].notna()]
        if servers:
            part = part[part["server"].isin(servers)]
        for server, g in part.groupby("server", sort=False):
            g = g.sort_values("connections")
            ax.plot(g["connections"], g["cpu_us_per_req"], label=server,
                    **style.line_style(server, g["kind"].iloc[0]))
        ax.set_xscale("log")
        ax.set_xlabel("connections")
        ax.set_ylabel("server CPU-µs per request")
        ax.set_title(shape)
    axes[0][0].legend(fontsize=7)
    return fig


def wins_and_losses(summary: pd.DataFrame) -> List[str]:
    """One sentence per (shape, connections, uring setting): its CPU per request
    over c/c/c's, a win below 1 and a loss above; and the io_uring ceiling's
    over the epoll ceiling's (the two APIs' floors for the same bytes)."""
    out = []
    for (shape, n), g in summary.groupby(["shape", "connections"], sort=False):
        ceil = g[g["server"] == "ceiling"]["cpu_us_per_req"]
        ceil_u = g[g["server"] == "ceiling-uring"]
        if len(ceil_u) and len(ceil) and ceil.iloc[0] > 0:
            r = ceil_u.iloc[0]
            if r["cpu_us_per_req"] > 0:
                ratio = r["cpu_us_per_req"] / ceil.iloc[0]
                out.append(f"{shape}, {n} connections: the io_uring ceiling "
                           f"{'wins' if ratio < 1 else 'loses'}: {r['cpu_us_per_req']:.2f} CPU-µs per "
                           f"request, {ratio:.2f}x the epoll ceiling's {ceil.iloc[0]:.2f}")
            else:
                out.append(f"{shape}, {n} connections: ceiling-uring has no figure "
                           f"({r['status']}: {r['note']})")
        base = g[g["server"] == "c/c/c"]["cpu_us_per_req"]
        if base.empty or not base.iloc[0] > 0:
            continue
        for _, r in g[g["server"].str.startswith("uring/")].iterrows():
            if not r["cpu_us_per_req"] > 0:
                out.append(f"{shape}, {n} connections: {r['server']} has no figure ({r['status']}: {r['note']})")
                continue
            ratio = r["cpu_us_per_req"] / base.iloc[0]
            verdict = "wins" if ratio < 1 else "loses"
            out.append(f"{shape}, {n} connections: {r['server']} {verdict}: {r['cpu_us_per_req']:.2f} "
                       f"CPU-µs per request, {ratio:.2f}x c/c/c's {base.iloc[0]:.2f}")
    return out
