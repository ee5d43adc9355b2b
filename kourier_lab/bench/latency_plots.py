"""Latency figures from h2load rows (kourier_lab.bench.h2load), in plots.py's style.

    fig = plot_latency_vs_load(df)     # the hockey stick: p50/p99 against offered req/s
    fig = plot_request_latency(df)     # closed-loop per-request percentiles per server

Only rows whose latency is one sample per request are drawn.  A wrk row under
pipelining timed batches, not requests (latency_per_batch, or load_tool wrk
with pipeline > 1): it is left out, whatever its latency columns hold.
"""
from __future__ import annotations

import pandas as pd
from matplotlib import rc_params_from_file
from matplotlib import ticker as _ticker
from matplotlib.figure import Figure

from .plots import STYLE, _batch_title, _figure, _plain_log_axis

# The style's colour cycle, so a server keeps one colour across its two lines.
COLORS = rc_params_from_file(str(STYLE), use_default_template=False)[
    "axes.prop_cycle"].by_key()["color"]

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")
PERCENTILE_COLUMNS = (("p50", "latency_p50_ms"), ("p90", "latency_p90_ms"),
                      ("p99", "latency_p99_ms"), ("p99.9", "latency_p999_ms"))


def _col(df: pd.DataFrame, name: str, default=pd.NA) -> pd.Series:
    return df[name] if name in df.columns else pd.Series(default, index=df.index)


def per_request_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Measured rows whose latency is per request (never wrk's per-batch figure)."""
    if df.empty:
        return df
    ok = df[(_col(df, "status") == "ok") & _col(df, "latency_p50_ms").notna()]
    tool = _col(ok, "load_tool", "wrk").fillna("wrk")
    per_batch = _col(ok, "latency_per_batch", False).fillna(False).astype(bool)
    wrk_pipelined = (tool == "wrk") & (_col(ok, "pipeline", 1).fillna(1).astype(int) > 1)
    return ok[~per_batch & ~wrk_pipelined]


def _server_order(rows: pd.DataFrame) -> list:
    kind = {"ceiling": 0, "stack": 1, "peer": 2}
    first = rows.drop_duplicates("server")
    first = first.assign(_k=_col(first, "server_kind", "stack").map(kind).fillna(3))
    return list(first.sort_values("_k", kind="stable")["server"])


def _empty(ax, text="no per-request latency rows"):
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)


def _saturation(closed: pd.DataFrame, rate_rows: pd.DataFrame):
    """The server's closed-loop throughput in the rate rows' own load shape (same
    connections and in-flight depth; the runner's "rate-probe" row when there is
    one), or None: a pipelined closed loop is no saturation point for them."""
    if closed.empty:
        return None
    c = closed[closed["server"] == rate_rows["server"].iloc[0]]
    probe = c[c["shape"] == "rate-probe"]
    if len(probe):
        c = probe
    else:
        for col in ("pipeline", "connections"):
            if col in c.columns and col in rate_rows.columns:
                c = c[c[col].isin(rate_rows[col].dropna().unique())]
    sat = c["req_per_s"].median() if len(c) else None
    return sat if sat is not None and pd.notna(sat) else None


def plot_latency_vs_load(df: pd.DataFrame) -> Figure:
    """p50 (solid) and p99 (dashed) latency, log scale, against offered requests/s,
    one colour and marker per server; each server's closed-loop throughput (its
    saturation) as a dotted vertical line of its colour when measured; a point
    whose percentile is only a lower bound (requests unfinished at the end) is
    drawn hollow."""
    rows = per_request_rows(df)
    rows = rows[_col(rows, "offered_rate").notna()] if len(rows) else rows
    fig, axes = _figure(1, 1, figsize=(9, 5.2))
    ax = axes[0][0]
    if rows.empty:
        _empty(ax, "no open-loop (rate) rows")
        return fig
    closed = per_request_rows(df)
    closed = closed[_col(closed, "offered_rate").isna()] if len(closed) else closed
    for i, server in enumerate(_server_order(rows)):
        s = rows[rows["server"] == server]
        agg = {"latency_p50_ms": "median", "latency_p99_ms": "median", "req_per_s": "median"}
        g = s.groupby("offered_rate").agg(agg).sort_index()
        bound = (s.assign(_b=_col(s, "latency_lower_bound", False).fillna(False).astype(bool))
                 .groupby("offered_rate")["_b"].any().reindex(g.index))
        color = COLORS[i % len(COLORS)]
        marker = MARKERS[i % len(MARKERS)]
        x = g.index.to_numpy(dtype=float)
        ax.plot(x, g["latency_p50_ms"], color=color, marker=marker, linestyle="-",
                label=f"{server} p50")
        ax.plot(x, g["latency_p99_ms"], color=color, marker=marker, linestyle="--",
                markerfacecolor="white", label=f"{server} p99")
        if bound.any():
            ax.scatter(x[bound.to_numpy()], g["latency_p99_ms"][bound], s=110,
                       facecolors="none", edgecolors=color, linewidths=1.2)
        sat = _saturation(closed, s)
        if sat is not None:
            ax.axvline(sat, color=color, linestyle=":", linewidth=1)
            ax.annotate(f"{server} closed loop", (sat, 1.0), xycoords=("data", "axes fraction"),
                        rotation=90, ha="right", va="top", fontsize=7, color=color)
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log_axis(ax.yaxis)
    ax.xaxis.set_major_formatter(_ticker.FuncFormatter(
        lambda v, _: f"{v / 1e6:g}M" if v >= 1e6 else f"{v / 1e3:g}k" if v >= 1e3 else f"{v:g}"))
    ax.set_xlabel("offered requests/s (open loop, log scale)")
    ax.set_ylabel("latency from intended send (ms, log)")
    ax.grid(axis="both")
    ax.legend(fontsize=8, ncol=2, loc="upper left")
    fig.suptitle("Latency against offered load (p50 solid, p99 dashed; ringed: lower bound, "
                 "requests unfinished)\n" + _batch_title(rows), fontsize=10)
    return fig


def plot_request_latency(df: pd.DataFrame) -> Figure:
    """Closed-loop per-request percentiles (p50, p90, p99, p99.9; median over runs)
    per server and shape, as grouped bars on a log scale."""
    rows = per_request_rows(df)
    rows = rows[_col(rows, "offered_rate").isna()] if len(rows) else rows
    shapes = list(dict.fromkeys(rows["shape"])) if len(rows) else ["(none)"]
    fig, axes = _figure(1, len(shapes), figsize=(max(6, 4.8 * len(shapes)), 4.8))
    for ax, shape in zip(axes[0], shapes):
        s = rows[rows["shape"] == shape] if len(rows) else rows
        if s.empty:
            _empty(ax)
            continue
        servers = _server_order(s)
        cols = [(label, c) for label, c in PERCENTILE_COLUMNS if c in s.columns]
        med = s.groupby("server")[[c for _, c in cols]].median().reindex(servers)
        width = 0.8 / len(cols)
        for j, (label, c) in enumerate(cols):
            xs = [i - 0.4 + width * (j + 0.5) for i in range(len(servers))]
            ax.bar(xs, med[c], width=width, label=label, color=COLORS[j % len(COLORS)])
        ax.set_xticks(list(range(len(servers))))
        ax.set_xticklabels(servers, rotation=30, ha="right")
        ax.set_yscale("log")
        _plain_log_axis(ax.yaxis)
        ax.set_ylabel("latency per request (ms, log)")
        ax.set_title(shape)
        ax.legend(fontsize=8)
    fig.suptitle("Closed-loop latency per request (h2load log; median over runs)\n"
                 + (_batch_title(rows) if len(rows) else ""), fontsize=10)
    return fig


FIGURES = {
    "latency_vs_load": plot_latency_vs_load,
    "request_latency": plot_request_latency,
}
