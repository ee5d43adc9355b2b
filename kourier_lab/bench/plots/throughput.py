"""Figures from result rows, in the package's style (style.py, kourier.mplstyle).

Figures are built as matplotlib Figure objects on the Agg canvas, without
pyplot, so they never depend on (or change) the caller's backend: a notebook
displays the saved PNGs, a headless `bench` run just writes them.

    paths = write_figures(df)          # data/figures/<experiment>_<figure>.png
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ...paths import figures_dir
from ...published_figures import published_ratios

from ... import style
from ...style import STYLE, figure as _figure  # noqa: F401  (STYLE: kept for callers that load the style file)


def _plain_log_axis(axis) -> None:
    """Log scale labelled 0.5, 2, 100 rather than 5x10^-1, with enough labelled ticks."""
    style.log_axis(axis.axes, "y" if axis is axis.axes.yaxis else "x")


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    return df[(df["status"] == "ok") & df["req_per_s"].notna()]


def _closed_loop(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of closed-loop runs (not a point of an open-loop rate sweep)."""
    if "offered_rate" in df.columns:
        df = df[df["offered_rate"].isna()]
    return df[~df["shape"].isin(["rate", "rate-probe"])]


def _kinds(df: pd.DataFrame) -> pd.Series:
    """server_kind, with memo-on stacks as their own kind ("memo") and fold-on
    stacks as theirs ("fold", whatever the memo)."""
    memo = df["head_memo"].fillna(False).astype(bool) if "head_memo" in df.columns else False
    fold = df["fold_runs"].fillna(False).astype(bool) if "fold_runs" in df.columns else False
    stack = df["server_kind"] == "stack"
    return df["server_kind"].where(~(stack & memo), "memo").where(~(stack & fold), "fold")


def _panels(df: pd.DataFrame, counts: pd.Series) -> pd.DataFrame:
    """A shape run at several connection counts (`connections = [64, 512]`;
    `counts`: connection counts per shape) is one panel per count, named
    "<shape>, <n> connections": never one bar over them.  A copy."""
    df = df.copy()
    several = df["shape"].map(counts).fillna(1) > 1 if len(counts) else pd.Series(False, index=df.index)
    if several.any():
        df.loc[several, "shape"] = (df.loc[several, "shape"] + ", "
                                    + df.loc[several, "connections"].astype("Int64").astype(str)
                                    + " connections")
    return df


def _per_server(df: pd.DataFrame, column: str) -> pd.DataFrame:
    """median/min/max of `column` per shape and server, ceiling first, then by median."""
    counts = (df.groupby("shape")["connections"].nunique() if "connections" in df.columns
              else pd.Series(dtype=int))
    ok = _panels(_closed_loop(_ok(df)), counts)
    df = _panels(df, counts)
    ok["server_kind"] = _kinds(ok)
    g = ok.groupby(["shape", "server", "server_kind"], sort=False)[column]
    s = g.agg(["median", "min", "max"]).reset_index()
    # most of its runs limited by the load tool's CPU, not the server's: the
    # bar is a floor of what the server can do, and is marked so
    bound = (ok.get("bottleneck", pd.Series(pd.NA, index=ok.index)) == "client").fillna(False)
    share = bound.astype(float).groupby([ok["shape"], ok["server"]], sort=False).mean()
    s["tool_bound"] = [bool(share.get((sh, sv), 0.0) > 0.5) for sh, sv in zip(s["shape"], s["server"])]
    s["_k"] = s["server_kind"].map(style.GROUP_ORDER)
    s["_shape"] = s["shape"].map({v: i for i, v in enumerate(dict.fromkeys(df["shape"]))})
    return s.sort_values(["_shape", "_k", "median"], ascending=[True, True, False])


def _batch_title(df: pd.DataFrame) -> str:
    """The second line of every title: batch, core split, head memo, CPU model."""
    return style.title_from_rows("", df)


def _bars(ax, stats: pd.DataFrame, scale: float, unit: str, fmt) -> None:
    """One bar per server (median, min-max whiskers) in its own colour, grouped
    (stacks, memo stacks, folding stacks, peers) with a gap between groups; the ceiling is not a
    bar but the dashed reference line every bar is read against."""
    ceil = stats[stats["server_kind"] == "ceiling"]
    bars = stats[stats["server_kind"] != "ceiling"]
    xs, x, prev = [], 0.0, None
    groups = {}
    for k in bars["server_kind"]:
        if prev is not None and k != prev:
            x += 0.6
        xs.append(x)
        groups.setdefault(k, []).append(x)
        prev, x = k, x + 1
    for xi, (_, r) in zip(xs, bars.iterrows()):
        ax.bar(xi, r["median"] / scale, **style.bar_style(r["server"], r["server_kind"]),
               yerr=[[(r["median"] - r["min"]) / scale], [(r["max"] - r["median"]) / scale]], capsize=3,
               error_kw={"elinewidth": 1, "ecolor": "#333333"})
        if r.get("tool_bound", False):
            ax.plot([xi], [r["max"] / scale], **TOOL_BOUND_MARK)
    ax.set_xticks(xs)
    ax.set_xticklabels(bars["server"], rotation=40, ha="right", fontsize=8)
    style.color_tick_labels(ax, list(bars["server"]), dict(zip(bars["server"], bars["server_kind"])))
    for k, at in groups.items():
        ax.annotate({"stack": "our stacks", "memo": "+memo", "fold": "+fold",
                     "peer": "peers"}.get(k, k),
                    ((min(at) + max(at)) / 2, 1.0), xycoords=("data", "axes fraction"),
                    xytext=(0, 2), textcoords="offset points", ha="center", va="bottom", fontsize=7,
                    color="#555555")
    ax.set_ylabel(unit)
    # one line per ceiling (the epoll one, and ceiling-uring when the batch has it);
    # the second drawn dotted so the two stay apart where they nearly meet
    for i, (_, c) in enumerate(ceil.iterrows()):
        y = c["median"] / scale
        bound = " (load-tool-bound)" if bool(c["tool_bound"]) else ""
        line = style.reference_line(ax, y, "_ceiling", text=f"{c['server']} {fmt(y)}{bound}")
        if i and line is not None:
            line.set_linestyle(":")
    if not xs:
        ax.set_xlim(-0.5, 0.5)


# drawn above a bar whose runs the load tool, not the server, limited
TOOL_BOUND_MARK = style.TOOL_BOUND_MARK


def key_handles(stats: pd.DataFrame) -> list:
    """The style's legend entries, and the load-tool-bound mark when a bar has it."""
    from matplotlib.lines import Line2D
    out = style.key_handles(stats["server_kind"])
    if "tool_bound" in stats.columns and stats["tool_bound"].any():
        out.append(Line2D([], [], label="load tool was the limit (a floor, not the server's figure)",
                          **TOOL_BOUND_MARK))
    return out


def _bar_figsize(stats: pd.DataFrame, shapes) -> tuple:
    """Wide enough for every bar's label: ~0.4 in per bar, plus the legend."""
    most = max([int((stats["shape"] == s).sum()) for s in shapes] + [4])
    return (max(7.0, len(shapes) * (1.2 + 0.42 * most) + 3.0), 5.0)


def plot_throughput(df: pd.DataFrame) -> Figure:
    """Requests/s per server (median, min–max whiskers), the ceiling as a line, per shape."""
    stats = _per_server(df, "req_per_s")
    shapes = list(dict.fromkeys(stats["shape"])) or ["(none)"]
    fig, axes = _figure(1, len(shapes), figsize=_bar_figsize(stats, shapes))
    big = len(stats) and stats["max"].max() >= 1e6
    scale, unit = (1e6, "M requests/s") if big else (1e3, "k requests/s")
    for ax, shape in zip(axes[0], shapes):
        s = stats[stats["shape"] == shape]
        if s.empty:
            ax.text(0.5, 0.5, "no measured rows", ha="center", transform=ax.transAxes)
            continue
        _bars(ax, s, scale, unit, lambda v: f"{v:.3g}{unit.split()[0]}")
        ax.set_title(f"{shape}", pad=12)
    style.legend_outside(fig, handles=key_handles(stats))
    fig.suptitle(style.title_from_rows("Requests per second (median, min–max)", df), fontsize=10)
    return fig


def plot_cpu_per_request(df: pd.DataFrame) -> Figure:
    """Server CPU-µs per request (all server processes, user+system), per shape.
    One scale type for the whole figure: log when any shape spans 20x or more."""
    stats = _per_server(df[df["cpu_us_per_req"].notna()], "cpu_us_per_req")
    shapes = list(dict.fromkeys(stats["shape"])) or ["(none)"]
    fig, axes = _figure(1, len(shapes), figsize=_bar_figsize(stats, shapes))
    pos = stats[stats["min"] > 0]
    log = bool(len(pos)) and pos["max"].max() > 20 * pos["min"].min()
    for ax, shape in zip(axes[0], shapes):
        s = stats[stats["shape"] == shape]
        if s.empty:
            ax.text(0.5, 0.5, "no measured rows", ha="center", transform=ax.transAxes)
            continue
        _bars(ax, s, 1.0, "server CPU-µs per request", lambda v: f"{v:.3g} µs")
        if log:
            style.log_axis(ax, "y")
        ax.set_title(shape, pad=12)
    style.legend_outside(fig, handles=key_handles(stats))
    fig.suptitle(style.title_from_rows("Server CPU per request (lower is better"
                                       + (", log scale)" if log else ")"), df), fontsize=10)
    return fig


def plot_latency(df: pd.DataFrame) -> Figure:
    """Latency percentiles (median over runs) per server and closed-loop shape.

    wrk under pipelining records one sample per batch (and its percentiles
    overflow to 0.00us): those rows are not latency and are left out, with a
    note; per-request percentiles come from h2load and kourier-lab rows.
    An overflowed percentile is left out, not drawn as zero."""
    ok = _closed_loop(_ok(df))
    if "latency_per_batch" in ok.columns:
        batch_only = ok[ok["latency_per_batch"].fillna(False).astype(bool)]
        ok = ok[~ok["latency_per_batch"].fillna(False).astype(bool)]
    else:
        batch_only = ok.iloc[0:0]
    shapes = list(dict.fromkeys(ok["shape"])) or ["(none)"]
    fig, axes = _figure(1, len(shapes), figsize=(max(7, 4.8 * len(shapes) + 2.5), 4.8))
    pcts = [(50, "latency_p50_ms"), (75, "latency_p75_ms"), (90, "latency_p90_ms"),
            (99, "latency_p99_ms"), (99.9, "latency_p999_ms")]
    pcts = [(p, c) for p, c in pcts if c in ok.columns]
    kinds = dict(zip(ok["server"], _kinds(ok))) if len(ok) else {}
    styles = style.assign_styles(style.order_servers(ok["server"], kinds), kinds)
    for ax, shape in zip(axes[0], shapes):
        g = ok[ok["shape"] == shape].groupby("server", sort=False)[[c for _, c in pcts]].median()
        g = g.dropna(axis=1, how="all")
        if g.empty:
            why = ("wrk's pipelined latency is per batch, not per request: run the shape with "
                   "load_tool = \"kourier-lab\" or \"h2load\"" if len(batch_only)
                   else "no measured rows")
            ax.text(0.5, 0.5, why, ha="center", transform=ax.transAxes, fontsize=8, wrap=True)
            continue
        xs = [i for i, (_, c) in enumerate(pcts) if c in g.columns]
        for server in style.order_servers(g.index, kinds):
            ax.plot(xs, g.loc[server].values, label=server, **styles[server])
        ax.set_xticks(xs)
        ax.set_xticklabels([f"p{pcts[i][0]:g}" for i in xs])
        style.log_axis(ax, "y")
        ax.set_ylabel("latency (ms, log)")
        ax.set_title(shape)
    style.legend_outside(fig)
    tools = ", ".join(sorted(set(ok["load_tool"].dropna()))) if "load_tool" in ok.columns else "wrk"
    fig.suptitle(style.title_from_rows(f"Latency percentiles per request ({tools or 'none'}; wrk's "
                                       "per-batch pipelined figures left out)", df), fontsize=10)
    return fig


RIVALS = ("hyper", "go")


def measured_ratios(df: pd.DataFrame, shape: str = "pipelined",
                    rivals=RIVALS) -> pd.DataFrame:
    """Median req/s of our best stack and of the ceiling over each measured rival
    of the post (hyper, Go): the measured counterparts of Kourier/hyper and
    Kourier/Go, plus hyper/Go, which the post's table also implies."""
    ok = _closed_loop(_ok(df[df["shape"] == shape]))
    for switch in ("head_memo", "fold_runs"):    # the honest figure: every request its own
        if switch in ok.columns:
            ok = ok[~ok[switch].fillna(False).astype(bool)]
    med = ok.groupby(["server", "server_kind"])["req_per_s"].median().reset_index()
    # a server whose runs the load tool limited (most of them): its figure is a floor
    bound = (ok.get("bottleneck", pd.Series(pd.NA, index=ok.index)) == "client").fillna(False)
    tool_bound = bound.astype(float).groupby(ok["server"]).mean().gt(0.5).to_dict()
    peers = med[(med["server_kind"] == "peer") & med["server"].isin(list(rivals))]
    stacks = med[med["server_kind"] == "stack"]
    ceiling = med[med["server_kind"] == "ceiling"]
    rows = []
    numerators = []
    if len(stacks):
        best = stacks.loc[stacks["req_per_s"].idxmax()]
        numerators.append((f"best stack ({best['server']})", best["req_per_s"], best["server"]))
    if len(ceiling):
        numerators.append(("ceiling", ceiling["req_per_s"].iloc[0], ceiling["server"].iloc[0]))

    def row(pair, rival, top, top_server, bottom_server, bottom):
        return {"pair": pair, "rival": rival, "ratio": top / bottom, "shape": shape,
                "numerator_tool_bound": bool(tool_bound.get(top_server, False)),
                "denominator_tool_bound": bool(tool_bound.get(bottom_server, False))}

    for _, p in peers.iterrows():
        for label, value, server in numerators:
            rows.append(row(f"{label}/{p['server']}", p["server"], value, server, p["server"],
                            p["req_per_s"]))
    by_name = dict(zip(peers["server"], peers["req_per_s"]))
    if "hyper" in by_name and "go" in by_name:
        rows.append(row("hyper/go", "go", by_name["hyper"], "hyper", "go", by_name["go"]))
    return pd.DataFrame(rows, columns=["pair", "rival", "ratio", "shape", "numerator_tool_bound",
                                       "denominator_tool_bound"])


def plot_ratios(df: pd.DataFrame, shape: str = "pipelined") -> Figure:
    """Measured ratios beside the published ones (Kourier/hyper 2.77, Kourier/Go 52.5,
    hyper/Go 19.0)."""
    pub = published_ratios()
    pub = pub[(pub["figure"] == "req/s") & (pub["machine"] == "AMD Ryzen 5 1600")]
    meas = measured_ratios(df, shape)
    labels = [f"published {p}" for p in pub["pair"]] + [f"measured {p}" for p in meas["pair"]]
    values = list(pub["ratio"]) + list(meas["ratio"])
    colors = [style.PUBLISHED_COLOR] * len(pub) + [style.MEASURED_COLOR] * len(meas)
    fig, axes = _figure(1, 1, figsize=(9.5, 1.6 + 0.45 * max(len(labels), 2)))
    ax = axes[0][0]
    y = list(range(len(labels)))
    ax.barh(y, values, color=colors)
    ax.set_yticks(y)
    ax.set_yticklabels(labels)
    ax.invert_yaxis()
    style.log_axis(ax, "x")
    ax.axvline(1.0, color="#333333", linewidth=0.8)
    ax.grid(axis="x")
    # a measured ratio whose numerator the load tool limited is a floor (>=), one
    # whose denominator it limited a ceiling (<=): marked, and said in the label
    bounds = [""] * len(pub) + [(">=" if top else "") + ("<=" if bottom else "")
                                for top, bottom in zip(meas["numerator_tool_bound"],
                                                       meas["denominator_tool_bound"])]
    for yi, v, b in zip(y, values, bounds):
        text = {"": f"{v:.2f}x", ">=": f">= {v:.2f}x (load tool limited the numerator)",
                "<=": f"<= {v:.2f}x (load tool limited the denominator)"}.get(
                    b, f"{v:.2f}x (load tool limited both: not a ratio of the servers)")
        ax.annotate(text, (v, yi), xytext=(4, 0), textcoords="offset points", va="center",
                    fontsize=8)
        if b:
            ax.plot([v], [yi], **{**TOOL_BOUND_MARK, "marker": "<" if b == "<=" else ">"})
    if meas.empty:
        ax.text(0.98, 0.02, "hyper and go were not measured in this batch", transform=ax.transAxes,
                ha="right", fontsize=8, color="#555555")
    ax.set_xlabel("ratio of requests/s (log scale)")
    handles = [Patch(color=style.PUBLISHED_COLOR, label="published (Ryzen 5 1600)"),
               Patch(color=style.MEASURED_COLOR, label="measured here")]
    if any(bounds):
        from matplotlib.lines import Line2D
        handles.append(Line2D([], [], label="a load-tool-bound server: the ratio is a bound",
                              **{**TOOL_BOUND_MARK, "marker": ">"}))
    style.legend_outside(fig, handles=handles)
    fig.suptitle(style.title_from_rows(f"Ratios, {shape}: published vs measured here", df), fontsize=10)
    return fig


FIGURES = {
    "throughput": plot_throughput,
    "cpu_per_request": plot_cpu_per_request,
    "latency": plot_latency,
    "ratios": plot_ratios,
}


def write_figures(df: pd.DataFrame, out_dir: Optional[Path] = None) -> List[Path]:
    """Write every figure of these rows as <out_dir>/<experiment>_<figure>.png."""
    out_dir = Path(out_dir) if out_dir is not None else figures_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    experiments = df["experiment"].dropna().unique()
    prefix = experiments[0] if len(experiments) == 1 else "results"
    paths = []
    figures = dict(FIGURES)
    # the per-request latency figures, when a tool that times each request ran
    tool = df["load_tool"] if "load_tool" in df.columns else pd.Series("wrk", index=df.index)
    if tool.isin(["h2load", "kourier-lab"]).any():
        from . import latency as latency_plots
        figures["request_latency"] = latency_plots.plot_request_latency
        if "offered_rate" in df.columns and df["offered_rate"].notna().any():
            figures["latency_vs_load"] = latency_plots.plot_latency_vs_load
    for name, make in figures.items():
        fig = make(df)
        path = out_dir / f"{prefix}_{name}.png"
        fig.savefig(path, bbox_inches="tight")
        paths.append(path)
    return paths


def to_image(fig: Figure):
    """The figure as an IPython Image (PNG), for notebooks: displays on any backend."""
    import io

    from IPython.display import Image
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return Image(data=buf.getvalue(), format="png")
