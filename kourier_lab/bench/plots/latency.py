"""Latency figures from per-request rows (h2load's log, kourier-lab's histogram), in the package
style; throughput.py's write_figures adds them when a batch has such rows.

    fig = plot_latency_vs_load(df)     # the hockey stick: p50/p99 against offered req/s
    fig = plot_request_latency(df)     # closed-loop per-request percentiles per server

Only rows whose latency is one sample per request are drawn.  A wrk row under
pipelining timed batches, not requests (latency_per_batch, or load_tool wrk
with pipeline > 1): it is left out, whatever its latency columns hold.
"""
from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from ... import style
from ...style import figure as _figure

# one sequential ramp for the percentiles (light p50 -> dark p99.9): they are
# grades of one quantity, not different servers, so they take no server colour
PERCENTILE_COLORS = ("#9ecae1", "#6baed6", "#3182bd", "#08519c")
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


def _kinds(rows: pd.DataFrame) -> dict:
    first = rows.drop_duplicates("server")
    return dict(zip(first["server"], _col(first, "server_kind", "stack")))


def _server_order(rows: pd.DataFrame) -> list:
    """Ceiling, our stacks, memo stacks, peers (style.order_servers)."""
    return style.order_servers(rows["server"], _kinds(rows))


def _empty(ax, text="no per-request latency rows"):
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)


def _saturation(closed: pd.DataFrame, rate_rows: pd.DataFrame):
    """The server's closed-loop throughput in the rate rows' own load shape (same
    connections and in-flight depth; run/batch.py's "rate-probe" row when there is
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
    order = _server_order(rows)
    styles = style.assign_styles(order, _kinds(rows))
    marked = False
    for server in order:
        s = rows[rows["server"] == server]
        agg = {"latency_p50_ms": "median", "latency_p99_ms": "median", "req_per_s": "median"}
        g = s.groupby("offered_rate").agg(agg).sort_index()
        bound = (s.assign(_b=_col(s, "latency_lower_bound", False).fillna(False).astype(bool))
                 .groupby("offered_rate")["_b"].any().reindex(g.index))
        color, marker = styles[server]["color"], styles[server]["marker"]
        if marker == "None":                  # the ceiling: a line style, here with points
            marker = "o"
        x = g.index.to_numpy(dtype=float)
        ax.plot(x, g["latency_p50_ms"], color=color, marker=marker, linestyle="-",
                label=f"{server} p50")
        ax.plot(x, g["latency_p99_ms"], color=color, marker=marker, linestyle="--",
                markerfacecolor="white", label=f"{server} p99")
        if bound.any():
            ax.scatter(x[bound.to_numpy()], g["latency_p99_ms"][bound], s=110,
                       facecolors="none", edgecolors=color, linewidths=1.2)
        # a rate at which the load tool, not the server, was the limit: its latency is the tool's
        tool = (s.assign(_t=_col(s, "bottleneck").isin(["client", "both"]))
                .groupby("offered_rate")["_t"].mean().reindex(g.index) > 0.5)
        if tool.any():
            ax.plot(x[tool.to_numpy()], g["latency_p99_ms"][tool], **style.TOOL_BOUND_MARK)
            marked = True
        sat = _saturation(closed, s)
        if sat is not None:
            style.reference_line(ax, sat, "_closed loop", axis="x", color=color,
                                 text=f"{server} closed loop")
    style.log_axis(ax, "x", si=True)
    style.log_axis(ax, "y")
    ax.set_xlabel("offered requests/s (open loop, log scale)")
    ax.set_ylabel("latency from intended send (ms, log)")
    ax.grid(axis="both")
    from matplotlib.lines import Line2D
    handles = [Line2D([], [], color=styles[sv]["color"], marker=styles[sv]["marker"] if
                      styles[sv]["marker"] != "None" else "o", label=sv) for sv in order]
    handles += [Line2D([], [], color="#333333", linestyle="-", label="p50"),
                Line2D([], [], color="#333333", linestyle="--", marker="o", markerfacecolor="white",
                       label="p99"),
                Line2D([], [], color="#333333", linestyle="--", linewidth=1.2,
                       label="closed-loop throughput")]
    if marked:
        handles.append(Line2D([], [], label="load tool was the limit at this rate",
                              **style.TOOL_BOUND_MARK))
    style.legend_outside(fig, handles=handles)
    fig.suptitle(style.title_from_rows("Latency against offered load (p50 solid, p99 dashed; ringed: "
                                       "lower bound, requests unfinished)", rows), fontsize=10)
    return fig


def plot_request_latency(df: pd.DataFrame) -> Figure:
    """Closed-loop per-request percentiles (p50, p90, p99, p99.9; median over runs)
    per server and shape, as grouped bars on a log scale."""
    rows = per_request_rows(df)
    rows = rows[_col(rows, "offered_rate").isna()] if len(rows) else rows
    shapes = list(dict.fromkeys(rows["shape"])) if len(rows) else ["(none)"]
    fig, axes = _figure(1, len(shapes), figsize=(max(6, 4.8 * len(shapes)), 4.8))
    marked = False
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
            ax.bar(xs, med[c], width=width, label=label,
                   color=PERCENTILE_COLORS[j % len(PERCENTILE_COLORS)])
        tool = (s.assign(_t=_col(s, "bottleneck").isin(["client", "both"]))
                .groupby("server")["_t"].mean().reindex(servers) > 0.5)
        for i, server in enumerate(servers):
            if tool[server]:
                ax.plot([i], [med.loc[server].max()], **style.TOOL_BOUND_MARK)
                marked = True
        ax.set_xticks(list(range(len(servers))))
        ax.set_xticklabels(servers, rotation=30, ha="right")
        for tick, server in zip(ax.get_xticklabels(), servers):   # the server's colour on its name
            tick.set_color(style.server_color(server, _kinds(s).get(server)))
        style.log_axis(ax, "y")
        ax.set_ylabel("latency per request (ms, log)")
        ax.set_title(shape)
    if marked:
        from matplotlib.lines import Line2D
        handles = {}
        for a in fig.axes:      # each percentile once, then the mark
            for h, label in zip(*a.get_legend_handles_labels()):
                handles.setdefault(label, h)
        handles = list(handles.values())
        handles.append(Line2D([], [], label="load tool was the limit", **style.TOOL_BOUND_MARK))
        style.legend_outside(fig, title="percentile", handles=handles)
    else:
        style.legend_outside(fig, title="percentile")
    tools = ", ".join(sorted(set(_col(rows, "load_tool", "wrk").dropna()))) if len(rows) else ""
    fig.suptitle(style.title_from_rows(f"Closed-loop latency per request ({tools or 'none'}; "
                                       "median over runs)", rows), fontsize=10)
    return fig


FIGURES = {
    "latency_vs_load": plot_latency_vs_load,
    "request_latency": plot_request_latency,
}
