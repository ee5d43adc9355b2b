"""The summary table: one line per batch, shape and server, medians with their
spread, ratios to the ceiling of the same batch (of the same kernel API when the
batch has both the epoll and the io_uring ceiling: column `ceiling` names it),
and what limited the runs."""
from __future__ import annotations

import math

import pandas as pd

from ..experiment.targets import ceiling_api
from .bottleneck import classify_row as classify_bottleneck

def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """One line per batch, shape and server: median of the counted runs with
    min–max, the fraction of the ceiling's median (same batch and shape),
    CPU-µs per request, server CPU use, p99, errors, and why a server has no
    figures when it was skipped or failed."""
    if df.empty:
        return pd.DataFrame()
    out = []
    df = df.copy()
    for col in ("offered_rate", "head_memo", "fold_runs", "latency_per_batch", "response_bytes",
                "request_bytes", "load_tool", "latency_p999_ms", "latency_max_ms"):
        if col not in df.columns:
            df[col] = pd.NA
    # the rate sweep: one line per offered rate (-1: closed loop)
    df["_rate"] = df["offered_rate"].astype("float64").fillna(-1.0)
    # a shape run at several connection counts (connections = [64, 512, ...]): one line per count
    df["_conns"] = (pd.to_numeric(df["connections"], errors="coerce").fillna(-1).astype("int64")
                    if "connections" in df.columns else -1)
    keys = ["batch_id", "shape", "_conns", "server", "_rate"]
    ceilings, ceiling_bytes = {}, {}
    # one ceiling per kernel API (epoll; io_uring when the batch has `ceilings = [.., "uring"]`):
    # a row's ratio is to the ceiling of its own API, else to the epoll one
    df["_api"] = [ceiling_api(sv) for sv in df["server"]]
    ok = df[df["status"] == "ok"]
    ceiling_names = {}
    for (batch, shape, nconn, api), g in ok[ok["server_kind"] == "ceiling"].groupby(
            ["batch_id", "shape", "_conns", "_api"]):
        closed = g[g["_rate"] < 0]
        ceilings[(batch, shape, nconn, api)] = closed["req_per_s"].median() if len(closed) else math.nan
        ceiling_names[(batch, shape, nconn, api)] = g["server"].iloc[0]
        if g["response_bytes"].notna().any():
            ceiling_bytes[(batch, shape)] = int(g["response_bytes"].dropna().iloc[0])
    order = {"ceiling": 0, "stack": 1, "peer": 2}
    for (batch, shape, nconn, server, rate), g in df.groupby(keys, sort=False):
        good = g[g["status"] == "ok"]
        first = g.iloc[0]
        line = {
            "batch_id": batch, "shape": shape, "server": server,
            "connections": nconn if nconn >= 0 else pd.NA,
            "kind": first["server_kind"], "runs": len(good),
            "offered_rate": rate if rate >= 0 else math.nan,
            "head_memo": bool(first["head_memo"]) if not pd.isna(first["head_memo"]) else False,
            "fold_runs": bool(first["fold_runs"]) if not pd.isna(first["fold_runs"]) else False,
            "load_tool": first["load_tool"] if not pd.isna(first["load_tool"]) else "wrk",
        }
        if len(good):
            med = good["req_per_s"].median()
            api = g["_api"].iloc[0]
            if (batch, shape, nconn, api) not in ceilings:
                api = "epoll"
            ceiling = ceilings.get((batch, shape, nconn, api), math.nan) if rate < 0 else math.nan
            per_batch = bool(good["latency_per_batch"].fillna(False).any())
            rbytes = good["response_bytes"].dropna()
            qbytes = good["request_bytes"].dropna()
            cbytes = ceiling_bytes.get((batch, shape))
            line.update({
                "request_bytes": int(qbytes.iloc[0]) if len(qbytes) else pd.NA,
                "response_bytes": int(rbytes.iloc[0]) if len(rbytes) else pd.NA,
                # a peer (or anything) answering with other bytes than the ceiling
                "bytes_differ": bool(len(rbytes) and cbytes is not None
                                     and int(rbytes.iloc[0]) != cbytes),
                "latency_per_batch": per_batch,
                "latency_p999_ms": good["latency_p999_ms"].median(),
                "latency_max_ms": good["latency_max_ms"].median(),
                "req_per_s": med,
                "req_per_s_min": good["req_per_s"].min(),
                "req_per_s_max": good["req_per_s"].max(),
                "of_ceiling": med / ceiling if ceiling else math.nan,
                # the ceiling of_ceiling is to ("ceiling", or "ceiling-uring" for uring rows)
                "ceiling": ceiling_names.get((batch, shape, nconn, api), pd.NA),
                "cpu_us_per_req": good["cpu_us_per_req"].median(),
                "server_cpu_util": good["server_cpu_util"].median(),
                "wrk_cpu_util": good["wrk_cpu_util"].median(),
                # wrk under pipelining times batches, not requests: not a latency
                "latency_p50_ms": math.nan if per_batch else good["latency_p50_ms"].median(),
                "latency_p99_ms": math.nan if per_batch else good["latency_p99_ms"].median(),
                "p99_overflow": bool(good["latency_overflow"].fillna(False).any()),
                "errors": int(good["errors_socket"].fillna(0).sum()
                              + good["non_2xx_3xx"].fillna(0).sum()),
                "client_saturated": bool(good["client_saturated"].fillna(False).any()),
                "vmhwm_mb": good["server_vmhwm_kb"].max() / 1024,
                "server_cpus_busy": good["server_cpus_busy"].median(),
                "client_cpus_busy": _median(good, "client_cpus_busy"),
                "server_cpus_softirq": _median(good, "server_cpus_softirq"),
                "client_cpus_softirq": _median(good, "client_cpus_softirq"),
                # per-run labels, e.g. "server 2/3, both 1/3" (runs can straddle a threshold)
                "bottleneck_runs": _label_counts(good),
                "status": "ok" if len(good) == len(g) else f"{len(g) - len(good)} failed",
                "note": "",
            })
        else:
            line.update(status=first["status"], note=first["note"])
        if len(good):
            # the same rule as each run's label, applied to the medians
            line["bottleneck"] = classify_bottleneck(line)
        line["_order"] = order.get(first["server_kind"], 3)
        out.append(line)
    s = pd.DataFrame(out)
    # Shapes in the order the experiment ran them; ceiling, stacks, then peers.
    shape_rank = {v: i for i, v in enumerate(dict.fromkeys(df["shape"]))}
    s["_shape"] = s["shape"].map(shape_rank)
    s["_conns"] = pd.to_numeric(s["connections"], errors="coerce").fillna(-1)
    s = s.sort_values(["batch_id", "_shape", "_conns", "_order"], kind="stable").drop(
        columns=["_order", "_shape", "_conns"])
    for col in ("ceiling", "request_bytes", "response_bytes", "bytes_differ", "latency_per_batch",
                "latency_p999_ms", "latency_max_ms", "bottleneck", "bottleneck_runs",
                "client_cpus_busy", "cpu_us_per_req"):
        if col not in s.columns:
            s[col] = pd.NA
    s["identical_saves"] = identical_saves(s)
    return s.reset_index(drop=True)


# The pair of shapes that differ only in whether the requests of a write are
# identical: the same minimal heads, 256 per write.
DISTINCT_SHAPE, IDENTICAL_SHAPE = "distinct", "pipelined"


def identical_saves(summary: pd.DataFrame) -> pd.Series:
    """Per summary line of the distinct shape: its server CPU-µs per request
    divided by the same server's on pipelined (identical requests), same batch;
    NaN elsewhere.  N means the server pays N times more when no two requests
    of a write are equal: what identical requests save it."""
    out = pd.Series(math.nan, index=summary.index, dtype="float64")
    if summary.empty or "cpu_us_per_req" not in summary.columns:
        return out
    closed = summary["offered_rate"].isna() if "offered_rate" in summary.columns else True
    cpu = pd.to_numeric(summary["cpu_us_per_req"], errors="coerce")
    same = summary[closed & (summary["shape"] == IDENTICAL_SHAPE) & (cpu > 0)]
    conns = (summary["connections"] if "connections" in summary.columns
             else pd.Series(pd.NA, index=summary.index)).astype("object").where(lambda x: x.notna(), None)
    identical = {(b, sv, n): c for b, sv, n, c in zip(same["batch_id"], same["server"],
                                                      conns[same.index], cpu[same.index])}
    for i in summary.index[closed & (summary["shape"] == DISTINCT_SHAPE) & (cpu > 0)]:
        base = identical.get((summary.at[i, "batch_id"], summary.at[i, "server"], conns[i]))
        if base:
            out[i] = cpu[i] / base
    return out


def _median(g: pd.DataFrame, col: str) -> float:
    return g[col].median() if col in g.columns else math.nan


def _label_counts(g: pd.DataFrame) -> str:
    if "bottleneck" not in g.columns or not g["bottleneck"].notna().any():
        return ""
    counts = g["bottleneck"].dropna().value_counts()
    return ", ".join(f"{label} {n}/{len(g)}" for label, n in counts.items())


def _fmt(value, spec: str, missing: str = "-") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return missing
    return format(value, spec)


def format_summary(summary: pd.DataFrame) -> str:
    """The summary as a plain-text table (what `bench` prints at the end)."""
    if summary.empty:
        return "(no rows)"
    lines = []
    conns = (pd.to_numeric(summary["connections"], errors="coerce").fillna(-1)
             if "connections" in summary.columns else pd.Series(-1, index=summary.index))
    for (batch, shape, n), g in summary.groupby([summary["batch_id"], summary["shape"], conns], sort=False):
        tool = str(g["load_tool"].iloc[0]) if "load_tool" in g.columns else "wrk"
        lines.append(f"\n{batch}  shape={shape}" + (f"  connections={int(n)}" if n >= 0 else "")
                     + f"  load={tool}")
        # distinct rows: how much more each server pays than for identical requests
        saves = (g["identical_saves"] if "identical_saves" in g.columns
                 else pd.Series(math.nan, index=g.index))
        with_saves = bool(saves.notna().any())
        header = (f"{'server':<24} {'req/s (median)':>15} {'min-max':>23} {'of ceil':>8} "
                  f"{'CPU-us/req':>10} "
                  + (f"{'identical saves':>15} " if with_saves else "")
                  + f"{'srv CPU':>7} {'cli CPU':>7} {'CPUs busy':>9} "
                  f"{'p50 ms':>8} {'p99 ms':>8} {'resp B':>6} {'errors':>7}  limit; note")
        lines.append(header)
        lines.append("-" * len(header))
        for _, r in g.iterrows():
            name = str(r["server"])
            rate = r.get("offered_rate", math.nan)
            if not pd.isna(rate):
                name = f"{name} @{rate:,.0f}/s"
            if r.get("runs", 0) and not pd.isna(r.get("req_per_s", math.nan)):
                per_batch = bool(r.get("latency_per_batch")) if not pd.isna(
                    r.get("latency_per_batch")) else False
                p50 = "batch" if per_batch else _fmt(r["latency_p50_ms"], ".2f")
                p99 = "batch" if per_batch else _fmt(
                    r["latency_p99_ms"], ".2f", "overflow" if r["p99_overflow"] else "-")
                notes = [str(r.get("bottleneck") or "")]
                if r.get("head_memo"):
                    notes.append("head memo ON")
                if r.get("fold_runs"):
                    notes.append("run folding ON")
                if r.get("bytes_differ") is True:
                    notes.append("response size differs from the ceiling's")
                if r["client_saturated"] and r.get("bottleneck") not in ("client", "both"):
                    notes.append("wrk saturated in some runs")
                if "," in str(r.get("bottleneck_runs") or ""):
                    notes.append(f"runs: {r['bottleneck_runs']}")
                if r["status"] != "ok":
                    notes.append(r["status"])
                rb = r.get("response_bytes")
                lines.append(
                    f"{name:<24} {r['req_per_s']:>15,.0f} "
                    f"{_fmt(r['req_per_s_min'], ',.0f'):>11}-{_fmt(r['req_per_s_max'], ',.0f'):<11} "
                    f"{_fmt(r['of_ceiling'], '.1%'):>8} {_fmt(r['cpu_us_per_req'], '.2f'):>10} "
                    + (f"{_saves(saves[r.name]):>15} " if with_saves else "")
                    + f"{_fmt(r['server_cpu_util'], '.0%'):>7} {_fmt(r['wrk_cpu_util'], '.0%'):>7} "
                    f"{_fmt(r.get('server_cpus_busy'), '.0%'):>9} "
                    f"{p50:>8} {p99:>8} {_fmt(None if pd.isna(rb) else int(rb), 'd'):>6} "
                    f"{int(r['errors']):>7}  "
                    f"{'; '.join(n for n in notes if n)}")
            else:
                note = str(r.get("note", ""))
                if len(note) > 110:
                    note = note[:107] + "..."
                lines.append(f"{name:<24} {r['status'].upper():>15}  {note}")
        if with_saves:
            lines.append(f"identical saves = CPU-us/req here / the same server's on "
                         f"{IDENTICAL_SHAPE} (every request of a write identical), same batch; "
                         f"xN = identical requests cost it N times less")
    return "\n".join(lines).lstrip("\n")


def _saves(value) -> str:
    return "-" if value is None or pd.isna(value) else f"x{value:.1f}" if value < 9.95 \
        else f"x{value:.0f}"
