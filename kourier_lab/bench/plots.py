"""Figures from result rows, in the package's style (kourier.mplstyle).

Figures are built as matplotlib Figure objects on the Agg canvas, without
pyplot, so they never depend on (or change) the caller's backend: a notebook
displays the saved PNGs, a headless `bench` run just writes them.

    paths = write_figures(df)          # data/figures/<experiment>_<figure>.png
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import pandas as pd
from matplotlib import style as _style
from matplotlib import ticker as _ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .paths import figures_dir
from .published import published_ratios

STYLE = Path(__file__).with_name("kourier.mplstyle")
KIND_COLORS = {"ceiling": "#7f7f7f", "stack": "#3b6ea8", "memo": "#a9c4e4", "peer": "#d9822b"}
KIND_LABELS = {"stack": "our stacks", "memo": "our stacks, head memo ON (parser skipped)",
               "peer": "peers"}


def _figure(nrows=1, ncols=1, **kw):
    with _style.context(str(STYLE)):
        fig = Figure(layout="constrained", **kw)
        FigureCanvasAgg(fig)
        axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _plain_log_axis(axis) -> None:
    """Log scale labelled 0.5, 2, 100 rather than 5x10^-1."""
    axis.set_major_formatter(_ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(_ticker.NullFormatter())


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    return df[(df["status"] == "ok") & df["req_per_s"].notna()]


def _closed_loop(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of closed-loop runs (not a point of an open-loop rate sweep)."""
    if "offered_rate" in df.columns:
        df = df[df["offered_rate"].isna()]
    return df[~df["shape"].isin(["rate", "rate-probe"])]


def _kinds(df: pd.DataFrame) -> pd.Series:
    """server_kind, with memo-on stacks as their own kind ("memo")."""
    memo = df["head_memo"].fillna(False).astype(bool) if "head_memo" in df.columns else False
    return df["server_kind"].where(~((df["server_kind"] == "stack") & memo), "memo")


def _per_server(df: pd.DataFrame, column: str) -> pd.DataFrame:
    """median/min/max of `column` per shape and server, ceiling first, then by median."""
    ok = _closed_loop(_ok(df)).copy()
    ok["server_kind"] = _kinds(ok)
    g = ok.groupby(["shape", "server", "server_kind"], sort=False)[column]
    s = g.agg(["median", "min", "max"]).reset_index()
    s["_k"] = s["server_kind"].map({"ceiling": 0, "stack": 1, "memo": 2, "peer": 3})
    s["_shape"] = s["shape"].map({v: i for i, v in enumerate(dict.fromkeys(df["shape"]))})
    return s.sort_values(["_shape", "_k", "median"], ascending=[True, True, False])


def _batch_title(df: pd.DataFrame) -> str:
    batches = df["batch_id"].dropna().unique()
    first = df.iloc[0] if len(df) else None
    where = ""
    if first is not None:
        where = (f" — {first['machine_cpu_model']}, server CPUs {first['server_cpus']}, "
                 f"wrk CPUs {first['client_cpus']}")
    return (batches[0] if len(batches) == 1 else f"{len(batches)} batches") + where


def _bars(ax, stats: pd.DataFrame, scale: float, unit: str, ceiling_line: bool):
    x = range(len(stats))
    med = stats["median"] / scale
    err_lo = (stats["median"] - stats["min"]) / scale
    err_hi = (stats["max"] - stats["median"]) / scale
    colors = [KIND_COLORS.get(k, "#999999") for k in stats["server_kind"]]
    bars = ax.bar(list(x), med, color=colors, yerr=[err_lo, err_hi], capsize=3,
                  error_kw={"elinewidth": 1, "ecolor": "#333333"})
    for b, k in zip(bars, stats["server_kind"]):
        if k == "memo":
            b.set_hatch("//")
    ax.set_xticks(list(x))
    ax.set_xticklabels(stats["server"], rotation=30, ha="right")
    ax.set_ylabel(unit)
    from matplotlib.patches import Patch
    kinds = list(dict.fromkeys(stats["server_kind"]))
    ax.legend(handles=[Patch(facecolor=KIND_COLORS.get(k, "#999999"), hatch="//" if k == "memo" else None,
                             label=KIND_LABELS.get(k, k))
                       for k in kinds], loc="upper right", fontsize=8)
    if ceiling_line:
        ceil = stats[stats["server_kind"] == "ceiling"]
        if len(ceil):
            y = ceil["median"].iloc[0] / scale
            ax.axhline(y, color=KIND_COLORS["ceiling"], linestyle="--", linewidth=1)
            ax.annotate("ceiling", (-0.4, y), ha="left", va="bottom", fontsize=8,
                        color="#555555")


def plot_throughput(df: pd.DataFrame) -> Figure:
    """Requests/s per server (median, min–max whiskers), the ceiling as a line, per shape."""
    stats = _per_server(df, "req_per_s")
    shapes = list(dict.fromkeys(stats["shape"])) or ["(none)"]
    fig, axes = _figure(1, len(shapes), figsize=(max(6, 4.5 * len(shapes)), 4.6))
    for ax, shape in zip(axes[0], shapes):
        s = stats[stats["shape"] == shape]
        if s.empty:
            ax.text(0.5, 0.5, "no measured rows", ha="center", transform=ax.transAxes)
            continue
        scale, unit = (1e6, "M requests/s") if s["max"].max() >= 1e6 else (1e3, "k requests/s")
        _bars(ax, s, scale, unit, ceiling_line=True)
        ax.set_title(f"{shape}")
    fig.suptitle(f"Requests per second (median, min–max)\n{_batch_title(df)}", fontsize=10)
    return fig


def plot_cpu_per_request(df: pd.DataFrame) -> Figure:
    """Server CPU-µs per request (all server processes, user+system), per shape."""
    stats = _per_server(df[df["cpu_us_per_req"].notna()], "cpu_us_per_req")
    shapes = list(dict.fromkeys(stats["shape"])) or ["(none)"]
    fig, axes = _figure(1, len(shapes), figsize=(max(6, 4.5 * len(shapes)), 4.6))
    for ax, shape in zip(axes[0], shapes):
        s = stats[stats["shape"] == shape]
        if s.empty:
            ax.text(0.5, 0.5, "no measured rows", ha="center", transform=ax.transAxes)
            continue
        _bars(ax, s, 1.0, "server CPU-µs per request", ceiling_line=False)
        if s["max"].max() > 20 * s["min"].min() > 0:      # log only when it spans decades
            ax.set_yscale("log")
            _plain_log_axis(ax.yaxis)
        ax.set_title(shape)
    fig.suptitle(f"Server CPU per request (lower is better)\n{_batch_title(df)}", fontsize=10)
    return fig


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")


def plot_latency(df: pd.DataFrame) -> Figure:
    """Latency percentiles (median over runs) per server and closed-loop shape.

    wrk under pipelining records one sample per batch (and its percentiles
    overflow to 0.00us): those rows are not latency and are left out, with a
    note; per-request percentiles come from h2load rows (load_tool=h2load).
    An overflowed percentile is left out, not drawn as zero."""
    ok = _closed_loop(_ok(df))
    if "latency_per_batch" in ok.columns:
        batch_only = ok[ok["latency_per_batch"].fillna(False).astype(bool)]
        ok = ok[~ok["latency_per_batch"].fillna(False).astype(bool)]
    else:
        batch_only = ok.iloc[0:0]
    shapes = list(dict.fromkeys(ok["shape"])) or ["(none)"]
    fig, axes = _figure(1, len(shapes), figsize=(max(6, 4.5 * len(shapes)), 4.6))
    pcts = [(50, "latency_p50_ms"), (75, "latency_p75_ms"), (90, "latency_p90_ms"),
            (99, "latency_p99_ms"), (99.9, "latency_p999_ms")]
    pcts = [(p, c) for p, c in pcts if c in ok.columns]
    for ax, shape in zip(axes[0], shapes):
        g = ok[ok["shape"] == shape].groupby("server", sort=False)[[c for _, c in pcts]].median()
        g = g.dropna(axis=1, how="all")
        if g.empty:
            why = ("wrk's pipelined latency is per batch, not per request: run the shape with "
                   "load_tool = \"h2load\"" if len(batch_only) else "no measured rows")
            ax.text(0.5, 0.5, why, ha="center", transform=ax.transAxes, fontsize=8, wrap=True)
            continue
        xs = [i for i, (_, c) in enumerate(pcts) if c in g.columns]
        for i, (server, r) in enumerate(g.iterrows()):
            ax.plot(xs, r.values, marker=MARKERS[i % len(MARKERS)], label=server)
        ax.set_xticks(xs)
        ax.set_xticklabels([f"p{pcts[i][0]:g}" for i in xs])
        ax.set_yscale("log")
        _plain_log_axis(ax.yaxis)
        ax.set_ylabel("latency (ms)")
        ax.set_title(shape)
        ax.legend(fontsize=8)
    tools = ", ".join(sorted(set(ok["load_tool"].dropna()))) if "load_tool" in ok.columns else "wrk"
    fig.suptitle(f"Latency percentiles per request ({tools or 'none'}; wrk's per-batch pipelined "
                 f"figures left out)\n{_batch_title(df)}", fontsize=10)
    return fig


RIVALS = ("hyper", "go")


def measured_ratios(df: pd.DataFrame, shape: str = "pipelined",
                    rivals=RIVALS) -> pd.DataFrame:
    """Median req/s of our best stack and of the ceiling over each measured rival
    of the post (hyper, Go): the measured counterparts of Kourier/hyper and
    Kourier/Go, plus hyper/Go, which the post's table also implies."""
    ok = _closed_loop(_ok(df[df["shape"] == shape]))
    if "head_memo" in ok.columns:          # the honest figure: every request parsed
        ok = ok[~ok["head_memo"].fillna(False).astype(bool)]
    med = ok.groupby(["server", "server_kind"])["req_per_s"].median().reset_index()
    peers = med[(med["server_kind"] == "peer") & med["server"].isin(list(rivals))]
    stacks = med[med["server_kind"] == "stack"]
    ceiling = med[med["server_kind"] == "ceiling"]
    rows = []
    numerators = []
    if len(stacks):
        best = stacks.loc[stacks["req_per_s"].idxmax()]
        numerators.append((f"best stack ({best['server']})", best["req_per_s"]))
    if len(ceiling):
        numerators.append(("ceiling", ceiling["req_per_s"].iloc[0]))
    for _, p in peers.iterrows():
        for label, value in numerators:
            rows.append({"pair": f"{label}/{p['server']}", "rival": p["server"],
                         "ratio": value / p["req_per_s"], "shape": shape})
    by_name = dict(zip(peers["server"], peers["req_per_s"]))
    if "hyper" in by_name and "go" in by_name:
        rows.append({"pair": "hyper/go", "rival": "go", "ratio": by_name["hyper"] / by_name["go"],
                     "shape": shape})
    return pd.DataFrame(rows, columns=["pair", "rival", "ratio", "shape"])


def plot_ratios(df: pd.DataFrame, shape: str = "pipelined") -> Figure:
    """Measured ratios beside the published ones (Kourier/hyper 2.77, Kourier/Go 52.5,
    hyper/Go 19.0)."""
    pub = published_ratios()
    pub = pub[(pub["figure"] == "req/s") & (pub["machine"] == "AMD Ryzen 5 1600")]
    meas = measured_ratios(df, shape)
    labels = [f"published {p}" for p in pub["pair"]] + [f"measured {p}" for p in meas["pair"]]
    values = list(pub["ratio"]) + list(meas["ratio"])
    colors = ["#b5473a"] * len(pub) + ["#3b6ea8"] * len(meas)
    fig, axes = _figure(1, 1, figsize=(8, 1.6 + 0.45 * max(len(labels), 2)))
    ax = axes[0][0]
    y = list(range(len(labels)))
    ax.barh(y, values, color=colors)
    ax.set_yticks(y)
    ax.set_yticklabels(labels)
    ax.invert_yaxis()
    ax.set_xscale("log")
    _plain_log_axis(ax.xaxis)
    ax.axvline(1.0, color="#333333", linewidth=0.8)
    ax.grid(axis="x")
    for yi, v in zip(y, values):
        ax.annotate(f"{v:.2f}x", (v, yi), xytext=(4, 0), textcoords="offset points",
                    va="center", fontsize=8)
    if meas.empty:
        ax.text(0.98, 0.02, "hyper and go were not measured in this batch", transform=ax.transAxes,
                ha="right", fontsize=8, color="#555555")
    ax.set_xlabel("ratio of requests/s (log scale)")
    fig.suptitle(f"Ratios, {shape}: published (Ryzen 5 1600) vs measured here\n"
                 f"{_batch_title(df)}", fontsize=10)
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
    # the h2load figures, when there are such rows
    tool = df["load_tool"] if "load_tool" in df.columns else pd.Series("wrk", index=df.index)
    if (tool == "h2load").any():
        from . import latency_plots
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
