"""The Kourier posts' numbers (data/published/*.csv) as DataFrames.

    performance  2025-05-13, Ryzen 5 1600, wrk -t6 -c512 -d15 pipeline 256 (+ the
                 later m7a.4xlarge Kourier vs Lithium figures)
    memory       2025-05-10, 500 000 connections, VmPeak of each server
    compliance   2025-05-12 and later posts, HTTP syntax compliance in percent
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
