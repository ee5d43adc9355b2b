"""The Kourier posts' numbers (data/published/*.csv) as DataFrames.

    performance  2025-05-13, Ryzen 5 1600, wrk -t6 -c512 -d15 pipeline 256 (+ the
                 later m7a.4xlarge Kourier vs Lithium figures)
    memory       2025-05-10, 500 000 connections, VmPeak of each server
    compliance   2025-05-12 and later posts, HTTP syntax compliance in percent

Plots and findings put them beside measured rows (bench/plots/throughput.py,
bench/results/findings.py, stress/stress_plots.py, compliance/survey.py).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import pandas as pd

from .paths import published_dir

FILES = {
    "performance": "kourier_2025_performance.csv",
    "memory": "kourier_2025_memory.csv",
    "compliance": "kourier_2025_compliance.csv",
}


def load_published(kind: str = "performance", directory: Optional[Path] = None) -> pd.DataFrame:
    if kind not in FILES:
        raise ValueError(f"unknown published table {kind!r}; choose one of: {', '.join(FILES)}")
    return pd.read_csv((directory or published_dir()) / FILES[kind])


def published_ratios(directory: Optional[Path] = None) -> pd.DataFrame:
    """Kourier over each rival, as the posts' tables give them (req/s; memory: rival / Kourier)."""
    perf = load_published("performance", directory)
    ryzen = perf[perf["machine"] == "AMD Ryzen 5 1600"].set_index("server")["req_per_s"]
    m7a = perf[perf["machine"] == "AWS m7a.4xlarge"].set_index("server")["req_per_s"]
    mem = load_published("memory", directory).set_index("server")
    rows = []
    for rival in ("hyper", "go"):
        rows.append({"figure": "req/s", "pair": f"kourier/{rival}", "rival": rival,
                     "ratio": ryzen["kourier"] / ryzen[rival], "machine": "AMD Ryzen 5 1600",
                     "shape": "pipelined"})
    # Not in the post's text but implied by its table: the two rivals' own ratio,
    # which a machine without Kourier can still check.
    rows.append({"figure": "req/s", "pair": "hyper/go", "rival": "go",
                 "ratio": ryzen["hyper"] / ryzen["go"], "machine": "AMD Ryzen 5 1600",
                 "shape": "pipelined"})
    rows.append({"figure": "req/s", "pair": "kourier/lithium", "rival": "lithium",
                 "ratio": m7a["kourier"] / m7a["lithium"], "machine": "AWS m7a.4xlarge",
                 "shape": "pipelined"})
    for rival in ("hyper", "go"):
        rows.append({"figure": "VmPeak", "pair": f"{rival}/kourier", "rival": rival,
                     "ratio": mem.loc[rival, "vmpeak_kb"] / mem.loc["kourier", "vmpeak_kb"],
                     "machine": "AMD Ryzen 5 1600", "shape": "connections"})
    return pd.DataFrame(rows)


def beside_published(df: pd.DataFrame, shape: str = "pipelined") -> pd.DataFrame:
    """The post's table and this machine's medians for the same load, one row each.

    Measured rows: median over the counted runs of each server in `df` for
    `shape` (status ok), with the split they ran on; published rows: the
    2025-05-13 table (Ryzen 5 1600, 6 + 6).
    """
    cols = ["source", "server", "machine", "split", "req_per_s", "latency_p50_ms",
            "latency_p90_ms", "latency_p99_ms", "errors_timeout", "cpu_us_per_req"]
    pub = load_published("performance")
    pub = pub[pub["machine"] == "AMD Ryzen 5 1600"]
    rows = [{"source": "published", "server": r["server_label"], "machine": r["machine"],
             "split": f"{int(r['server_threads'])} + {int(r['wrk_threads'])}",
             "req_per_s": r["req_per_s"], "latency_p50_ms": r["latency_p50_ms"],
             "latency_p90_ms": r["latency_p90_ms"], "latency_p99_ms": r["latency_p99_ms"],
             "errors_timeout": r["errors_timeout"], "cpu_us_per_req": float("nan")}
            for _, r in pub.iterrows()]
    ok = df[(df["status"] == "ok") & (df["shape"] == shape)]
    for server, g in ok.groupby("server", sort=False):
        first = g.iloc[0]
        rows.append({"source": "measured", "server": server,
                     "machine": first["machine_cpu_model"],
                     "split": f"{first['workers']} + {first['wrk_threads']}",
                     "req_per_s": g["req_per_s"].median(),
                     "latency_p50_ms": g["latency_p50_ms"].median(),
                     "latency_p90_ms": g["latency_p90_ms"].median(),
                     "latency_p99_ms": g["latency_p99_ms"].median(),
                     "errors_timeout": g["errors_timeout"].astype("float64").median(),
                     "cpu_us_per_req": g["cpu_us_per_req"].median()})
    return pd.DataFrame(rows, columns=cols)


def memory_beside_published(df: pd.DataFrame, shape: str = "connections") -> pd.DataFrame:
    """The memory post's VmPeak beside this machine's, one row per server.

    A measured row is ONE step of the experiment -- the one that held the most
    connections -- and every figure in it comes from that step: connections
    held, req/s, VmPeak, VmHWM and VmRSS summed over the server's processes,
    RSS and kernel slab per connection.  (Taking the count of one step and the
    memory of another would put, say, 200 connections beside the memory of
    1,000.)  VmPeak is virtual address space, the post's figure; VmHWM / VmRSS
    are what the connections actually cost in memory."""
    cols = ["source", "server", "step", "connections", "workers", "req_per_s", "vmpeak_kb",
            "vmhwm_kb", "vmrss_kb", "rss_per_conn_bytes", "slab_per_conn_bytes"]
    nan = float("nan")
    pub = load_published("memory")
    rows = [{"source": "published", "server": r["server_label"], "step": str(r["connections"]),
             "connections": r["connections"], "workers": nan, "req_per_s": r["req_per_s"],
             "vmpeak_kb": r["vmpeak_kb"], "vmhwm_kb": nan, "vmrss_kb": nan,
             "rss_per_conn_bytes": nan, "slab_per_conn_bytes": nan} for _, r in pub.iterrows()]
    ok = df[(df["status"] == "ok") & (df["shape"] == shape)]
    held_col = "connections_held" if "connections_held" in ok.columns else "connections"

    def get(r, key):
        v = r.get(key, nan)
        return nan if v is None or pd.isna(v) else float(v)

    for server, g in ok.groupby("server", sort=False):
        held = pd.to_numeric(g[held_col], errors="coerce")
        if held.isna().all():
            continue
        r = g.loc[held.idxmax()]          # the step that held the most, and only that step
        rows.append({"source": "measured", "server": server, "step": str(r.get("step", "")),
                     "connections": int(held.max()), "workers": get(r, "workers"),
                     "req_per_s": get(r, "req_per_s"), "vmpeak_kb": get(r, "server_vmpeak_kb"),
                     "vmhwm_kb": get(r, "server_vmhwm_kb"), "vmrss_kb": get(r, "server_vmrss_kb"),
                     "rss_per_conn_bytes": get(r, "rss_per_conn_bytes"),
                     "slab_per_conn_bytes": get(r, "slab_per_conn_bytes")})
    return pd.DataFrame(rows, columns=cols)
