"""The figures of notebooks 01, 02 and 05 that are not bench-row plots, drawn
here so the notebooks only call the package.

Conventions shared with bench/plots/throughput.py: Agg figures in the package style,
legends outside the axes (never over the data), one scale type per figure
(said in the axis label), head-memo rows hatched, SIMD paths in the order
scalar -> SSE4.2 -> AVX2, and a title that says what was measured and, where
it matters, that quick mode changed it.

    plot_parser_speed(speed)            01: MB/s per parser and corpus
    plot_simd_paths(simd)               01: C parser per SIMD path, batch vs per request
    plot_jit_costs(jit, quick)          02: first-call seconds, cold and warm
    plot_buffer_strategies(df)          02: MB/s per strategy, both scenarios
    plot_crossing_costs(df)             02: ns per short request, what each crossing costs
    plot_parser_throughput(tp)          02: MB/s per way of calling the parser
    plot_reproduction(table)            05: published and measured ratio, one pair per line
"""
from __future__ import annotations

from typing import Optional

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ... import style

# One colour per corpus / call / source, the same in every figure of this module
# (published and measured as everywhere in the package: style.py).
CASE_COLORS = {"short": "#3b6ea8", "browser": "#d9822b", "pipelined256": "#5a9e4b",
               "browser x16": "#b5473a", "browser x256": "#8c6bb1", "short x256": "#5a9e4b"}
CALL_COLORS = {"kl_parse_batch (1 call)": "#3b6ea8", "parse_head per request": "#d9822b"}
SOURCE_COLORS = {"published": style.PUBLISHED_COLOR, "measured": style.MEASURED_COLOR}
SIMD_ORDER = style.SIMD_ORDER
_FALLBACK = ("#3b6ea8", "#d9822b", "#5a9e4b", "#b5473a", "#8c6bb1", "#7f7f7f")


_figure = style.figure


def _color(mapping, key, i):
    return mapping.get(key, _FALLBACK[i % len(_FALLBACK)])


def _outside_legend(ax, title=None, handles=None, labels=None):
    style.legend_outside(ax, handles=handles, labels=labels, title=title)


def _plain_log_axis(axis) -> None:
    style.log_axis(axis.axes, "y" if axis is axis.axes.yaxis else "x")


def _grouped_barh(ax, table: pd.DataFrame, colors, log: bool, hatch_rows=()):
    """Rows of `table` as groups of horizontal bars, one bar per column."""
    n = max(len(table.columns), 1)
    h = 0.8 / n
    for j, col in enumerate(table.columns):
        ys = [i - 0.4 + h * (j + 0.5) for i in range(len(table))]
        bars = ax.barh(ys, table[col].fillna(0), height=h, color=_color(colors, col, j), label=col)
        for b, row in zip(bars, table.index):
            if row in hatch_rows:
                b.set_hatch("//")
    ax.set_yticks(range(len(table)))
    ax.set_yticklabels(table.index)
    ax.invert_yaxis()
    if log:
        ax.set_xscale("log")
        _plain_log_axis(ax.xaxis)
    ax.grid(axis="x")


def plot_parser_speed(speed: pd.DataFrame, title: str = "parse_head per request, from Python"
                      ) -> Figure:
    """bench_parsers rows: MB/s (median of rounds) per variant and corpus; head-memo
    rows hatched (on repeated corpora they measure one comparison, not a parser)."""
    ok = speed[speed["status"] == "ok"]
    table = ok.pivot(index="variant", columns="case", values="mb_per_s")
    order = [c for c in ("short", "browser", "pipelined256") if c in table.columns]
    table = table[order + [c for c in table.columns if c not in order]]
    fig, axes = _figure(1, 1, figsize=(9, 0.45 * len(table) + 1.6))
    ax = axes[0][0]
    memo = [v for v in table.index if "memo" in str(v)]
    _grouped_barh(ax, table, CASE_COLORS, log=True, hatch_rows=memo)
    ax.set_xlabel("MB/s (log scale, median of rounds; higher is better)")
    handles, labels = ax.get_legend_handles_labels()
    handles.append(Patch(facecolor="white", edgecolor="#333333", hatch="//"))
    labels.append("head memo ON (parser skipped)")
    _outside_legend(ax, title="corpus", handles=handles, labels=labels)
    ax.set_title(title)
    return fig


def plot_simd_paths(simd: pd.DataFrame) -> Figure:
    """simd_paths rows: one panel per corpus, SIMD paths left to right from
    narrowest to widest, a bar per way of calling; both panels on the same log
    scale (batch and per-request figures differ by up to 10x)."""
    cases = list(dict.fromkeys(simd["case"]))
    # each panel labels its own axis (a shared y would leave the right panel without tick labels)
    fig, axes = _figure(1, len(cases), figsize=(5 * len(cases) + 2, 4))
    paths = style.simd_sorted(dict.fromkeys(simd["simd"].astype(str)))
    calls = list(dict.fromkeys(simd["call"]))
    w = 0.8 / max(len(calls), 1)
    for ax, case in zip(axes[0], cases):
        d = simd[simd["case"] == case]
        for j, call in enumerate(calls):
            vals = [d[(d["simd"].astype(str) == p) & (d["call"] == call)]["MB/s"].median()
                    for p in paths]
            xs = [i - 0.4 + w * (j + 0.5) for i in range(len(paths))]
            bars = ax.bar(xs, vals, width=w, color=_color(CALL_COLORS, call, j), label=call)
            ax.bar_label(bars, labels=[f"{v:,.0f}" for v in vals], fontsize=7, padding=1)
        ax.set_xticks(range(len(paths)))
        ax.set_xticklabels([style.SIMD_LABELS.get(p, p) for p in paths])
        ax.set_yscale("log")
        _plain_log_axis(ax.yaxis)
        ax.set_title(case)
        ax.grid(axis="y")
        ax.set_ylabel("MB/s (log scale, process CPU time)")
    _outside_legend(axes[0][-1], title="call")
    fig.suptitle("The C parser's SIMD paths (scalar -> SSE4.2 -> AVX2)", fontsize=10)
    return fig


def plot_jit_costs(jit: pd.DataFrame, quick: bool = False) -> Figure:
    """jit_costs rows: seconds to the first result per kernel, cold (compiling)
    and warm (from the cache), log scale.  In quick mode the cold compile is
    skipped, and the title says so: the figure then shows loading, not
    compiling."""
    jit = jit.copy()
    jit["label"] = jit["component"] + ": " + jit["function"]
    table = jit.pivot_table(index="label", columns="cache", values="seconds", sort=False)
    table = table[sorted(table.columns, key=lambda c: not str(c).startswith("cold"))]
    fig, axes = _figure(1, 1, figsize=(9, 0.4 * len(table) + 1.8))
    ax = axes[0][0]
    _grouped_barh(ax, table, {"cold (compile)": "#b5473a", "warm (load)": "#3b6ea8"}, log=True)
    ax.set_xlabel("seconds to the first result (log scale)")
    _outside_legend(ax, title="cache")
    title = "Numba: compile once, then load from the cache"
    if not any(str(c).startswith("cold") for c in table.columns):
        title += ("\nwarm bars only: " + ("quick mode skipped the cold compile" if quick else
                                           "no cold compile measured") +
                  ", so this shows loading from the cache, not compiling")
    ax.set_title(title, fontsize=9)
    return fig


def plot_buffer_strategies(strategies: pd.DataFrame) -> Figure:
    """buffer_strategies rows: MB/s per strategy, one panel per scenario, both
    on a linear scale; the spread of the runs is printed beside each bar."""
    scenarios = list(dict.fromkeys(strategies["scenario"]))
    fig, axes = _figure(1, len(scenarios), figsize=(5.5 * len(scenarios), 3.6))
    for ax, scenario in zip(axes[0], scenarios):
        d = strategies[strategies["scenario"] == scenario]
        best = d["mb_per_s"].max()
        colors = ["#3b6ea8" if v == best else "#a9c4e4" for v in d["mb_per_s"]]
        bars = ax.barh(d["strategy"], d["mb_per_s"], color=colors)
        ax.bar_label(bars, labels=[f"{v:,.0f} (±{s / 2:.0f} %)" for v, s in
                                   zip(d["mb_per_s"], d["spread_pct"])], fontsize=7, padding=2)
        ax.invert_yaxis()
        ax.set_xlim(0, best * 1.45)
        ax.set_title(scenario)
        ax.set_xlabel("MB/s (linear; higher is better; dark: fastest)")
        ax.grid(axis="x")
    return fig


def plot_crossing_costs(crossing: pd.DataFrame) -> Figure:
    """crossing_costs rows: ns per short request for each way into the kernel (log)."""
    fig, axes = _figure(1, 1, figsize=(8, 0.45 * len(crossing) + 1.4))
    ax = axes[0][0]
    colors = ["#a9c4e4" if "memo" in w else "#3b6ea8" for w in crossing["what"]]
    bars = ax.barh(crossing["what"], crossing["ns"], color=colors)
    for b, w in zip(bars, crossing["what"]):
        if "memo" in w:
            b.set_hatch("//")
    ax.bar_label(bars, labels=[f"{v:,.0f}" for v in crossing["ns"]], fontsize=7, padding=2)
    ax.invert_yaxis()
    ax.set_xscale("log")
    _plain_log_axis(ax.xaxis)
    ax.set_xlabel("ns per short request (log scale, best of the rounds; hatched: head memo)")
    ax.grid(axis="x")
    return fig


def plot_parser_throughput(tp: pd.DataFrame) -> Figure:
    """parser_throughput rows: MB/s per way of calling a parser, per corpus (log)."""
    wide = tp.pivot_table(index="parser", columns="corpus", values="mb_per_s", sort=False)
    fig, axes = _figure(1, 1, figsize=(10, 0.45 * len(wide) + 1.6))
    ax = axes[0][0]
    memo = [v for v in wide.index if "memo" in str(v)]
    _grouped_barh(ax, wide, CASE_COLORS, log=True, hatch_rows=memo)
    ax.set_xlabel("MB/s (log scale; higher is better; hatched: head memo on)")
    _outside_legend(ax, title="corpus")
    return fig


def plot_reproduction(table: pd.DataFrame, title: Optional[str] = None) -> Figure:
    """findings.reproduction rows: for each pair, the published ratio and the
    measured one on adjacent bars; a measured bar is hatched unless its verdict
    says comparable (log scale: the ratios span 1x to 60x)."""
    labels, values, colors, hatches = [], [], [], []
    for _, r in table.iterrows():
        labels.append(f"{r['published_pair']} (published)")
        values.append(r["published"])
        colors.append(SOURCE_COLORS["published"])
        hatches.append(None)
        labels.append(f"{r['measured_pair']} (measured)")
        values.append(r["measured"])
        colors.append(SOURCE_COLORS["measured"])
        hatches.append(None if str(r["verdict"]).startswith("comparable") else "//")
    fig, axes = _figure(1, 1, figsize=(9, 0.42 * len(labels) + 1.8))
    ax = axes[0][0]
    ys = []
    for i in range(len(labels)):        # a gap between pairs, none within one
        ys.append(i + (i // 2) * 0.6)
    bars = ax.barh(ys, [0 if pd.isna(v) else v for v in values], color=colors)
    for b, h in zip(bars, hatches):
        if h:
            b.set_hatch(h)
    ax.bar_label(bars, labels=["not measured" if pd.isna(v) else f"{v:.2f}x" for v in values],
                 fontsize=7, padding=2)
    ax.set_yticks(ys)
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    _plain_log_axis(ax.xaxis)
    ax.axvline(1.0, color="#333333", linewidth=0.8)
    ax.set_xlabel("ratio of requests/s (log scale)")
    _outside_legend(ax, handles=[Patch(facecolor=SOURCE_COLORS["published"]),
                                 Patch(facecolor=SOURCE_COLORS["measured"]),
                                 Patch(facecolor="white", edgecolor="#333333", hatch="//")],
                    labels=["published (Ryzen 5 1600, 6 + 6)", "measured here",
                            "verdict: not comparable"])
    ax.set_title(title or "Published and measured ratios, pair by pair")
    return fig


FIGURES = {
    "parser_speed": plot_parser_speed, "simd_paths": plot_simd_paths,
    "jit_costs": plot_jit_costs, "buffer_strategies": plot_buffer_strategies,
    "crossing_costs": plot_crossing_costs, "parser_throughput": plot_parser_throughput,
    "reproduction": plot_reproduction,
}
