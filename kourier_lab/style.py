"""One plot style for every figure of the package (bench/plots, stress, compliance,
the lab panel, the notebooks), with kourier.mplstyle beside it.

A server keeps one colour and one marker in every figure, so a reader who
learnt that c/c/c is the dark blue circle finds it again in the next plot:

    from kourier_lab import style
    fig, axes = style.figure(1, 2)                 # Agg canvas, kourier.mplstyle applied
    ax.plot(x, y, label=name, **style.line_style(name))
    style.reference_line(ax, ceiling_req_s, "ceiling")
    style.log_axis(ax, "y")                        # log with enough labelled ticks
    style.legend_outside(fig)                      # one legend, right of the data
    fig.suptitle(style.title_from_rows("Requests per second", df))

Groups: the ceiling (always the same grey, drawn as a dashed reference line,
never as a competitor's bar), our stacks (blues and greens), our stacks with the
head memo on (the stack's colour, hatched or hollow), our stacks with run
folding on ("+fold", also with the memo: "+memo+fold"; the stack's colour,
dotted), and peers (warm colours).
`order_servers` puts them in that order.

Names the table below does not know (a new variant, a user's parser) get a
colour of their group picked by a stable hash of the name, and `assign_styles`
moves a clash within one figure to the next free colour, so no figure repeats a
colour.
"""
from __future__ import annotations

import math
import zlib
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

from matplotlib import style as _mpl_style
from matplotlib import ticker as _ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

STYLE = Path(__file__).with_name("kourier.mplstyle")

MEMO_SUFFIX = "+memo"
FOLD_SUFFIX = "+fold"
CEILING = "ceiling"
CEILING_COLOR = "#555555"
PUBLISHED_COLOR = "#b5473a"      # the Kourier posts' figures, wherever they are drawn
MEASURED_COLOR = "#3b6ea8"
# drawn at a figure whose run the load tool, not the server, limited (a bar, a
# ratio, a point of a latency curve)
TOOL_BOUND_MARK = dict(marker="v", markersize=7, color="#c0392b", linestyle="None", zorder=5)

# (colour, marker) of every server the experiments name.  Stacks are cool
# colours and filled-shape markers, peers warm colours and other shapes.
STACKS: Dict[str, tuple] = {
    "c/c/c": ("#1f4e8c", "o"),
    "numba/numba/numba": ("#2a9d8f", "s"),
    "python/c/c": ("#5b8fd4", "^"),
    "c/python/c": ("#6a4c93", "D"),
    "python/python/python": ("#3d7a3d", "v"),
    "asyncio/python/python": ("#8fb339", "P"),
    "c/numba/c": ("#0e7c9b", "h"),
    "numba/c/numba": ("#4a6fa5", "p"),
}
PEERS: Dict[str, tuple] = {
    "hyper": ("#d9822b", "X"),
    "go": ("#c0392b", "*"),
    "nginx": ("#8c564b", "<"),
    "asyncio-httptools": ("#e6a817", ">"),
    "uvicorn": ("#d35f8d", "d"),
    "granian": ("#a0522d", "H"),
}
# colours for names not in the tables, per group (none is used above)
_SPARE = {
    "stack": ("#17becf", "#4c72b0", "#55a868", "#64b5cd", "#8172b2", "#2ca02c", "#1a9988",
              "#7a9cc6", "#9467bd", "#385e0f"),
    "peer": ("#ff7f0e", "#e377c2", "#bcbd22", "#f28e2b", "#d62728", "#b07aa1", "#9c755f",
             "#ff9da7"),
}
_SPARE_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "p", "*", "d", "H")

GROUP_LABELS = {"ceiling": "ceiling (same response bytes, no parser)", "stack": "our stacks",
                "memo": "our stacks, head memo ON (parser skipped; hatched/hollow)",
                "fold": "our stacks, run folding ON (equal requests answered once; dotted)",
                "peer": "peers"}
GROUP_ORDER = {"ceiling": 0, "stack": 1, "memo": 2, "fold": 3, "peer": 4}

SIMD_ORDER = ("scalar", "sse42", "avx2")
SIMD_LABELS = {"scalar": "scalar", "sse42": "SSE4.2", "avx2": "AVX2"}


def base_name(name: str) -> str:
    """The server without its "+memo" / "+fold" / "+memo+fold" suffix."""
    for suffix in (FOLD_SUFFIX, MEMO_SUFFIX):
        if name.endswith(suffix):
            name = name[:-len(suffix)]
    return name


def server_group(name: str, kind: Optional[str] = None) -> str:
    """"ceiling", "stack", "memo", "fold" or "peer" (from the row's server_kind when
    given); a stack with both switches on is drawn as "fold"."""
    if name == CEILING or kind == "ceiling":
        return "ceiling"
    if name.endswith(FOLD_SUFFIX) or kind == "fold":
        return "fold"
    if name.endswith(MEMO_SUFFIX) or kind == "memo":
        return "memo"
    if kind in ("stack", "peer"):
        return kind
    if base_name(name) in PEERS:
        return "peer"
    return "stack"


def _fixed(name: str, kind: Optional[str] = None) -> Optional[tuple]:
    base = base_name(name)
    if server_group(name, kind) == "ceiling":
        return CEILING_COLOR, "_"
    return STACKS.get(base) or PEERS.get(base)


def _spare(name: str, group: str, k: int = 0) -> tuple:
    colours = _SPARE["peer" if group == "peer" else "stack"]
    h = zlib.crc32(base_name(name).encode())
    return colours[(h + k) % len(colours)], _SPARE_MARKERS[(h + k) % len(_SPARE_MARKERS)]


def _fallbacks(name: str, group: str):
    """Colours to try when a name's own colour is taken in a figure: its group's
    spares from its hash on, then the other group's, then the fixed table's, then a
    generated hue wheel (so even a figure of 40 unknown variants repeats none)."""
    h = zlib.crc32(base_name(name).encode())
    own = _SPARE["peer" if group == "peer" else "stack"]
    other = _SPARE["stack" if group == "peer" else "peer"]
    pool = [own[(h + k) % len(own)] for k in range(len(own))] + list(other)
    pool += [c for c, _ in STACKS.values()] + [c for c, _ in PEERS.values()]
    import colorsys
    pool += ["#%02x%02x%02x" % tuple(int(255 * v) for v in colorsys.hsv_to_rgb(i / 37.0, 0.65, 0.7))
             for i in range(37)]
    for k, colour in enumerate(pool):
        yield colour, _SPARE_MARKERS[(h + k) % len(_SPARE_MARKERS)]


def server_color(name: str, kind: Optional[str] = None) -> str:
    """The server's colour in every figure (a memo stack shares its stack's colour)."""
    fixed = _fixed(name, kind)
    return (fixed or _spare(name, server_group(name, kind)))[0]


def server_marker(name: str, kind: Optional[str] = None) -> str:
    fixed = _fixed(name, kind)
    return (fixed or _spare(name, server_group(name, kind)))[1]


def assign_styles(names: Iterable[str], kinds: Optional[Dict[str, str]] = None) -> Dict[str, dict]:
    """{name: line_style(name)} for one figure, with no colour used by two
    different servers (a "+memo" or "+fold" stack shares its stack's colour on
    purpose, and is told apart by its hollow marker and dashed or dotted line)."""
    kinds = kinds or {}
    names = list(dict.fromkeys(names))
    owner: Dict[str, str] = {}          # colour -> base name using it
    for name in names:                  # known servers keep their fixed colour first
        if _fixed(name, kinds.get(name)):
            owner.setdefault(server_color(name, kinds.get(name)), base_name(name))
    taken: Dict[str, tuple] = {}        # base name -> (colour, marker) in this figure
    out: Dict[str, dict] = {}
    for name in names:
        kind = kinds.get(name)
        s = line_style(name, kind)
        base = base_name(name)
        if base in taken:
            colour, marker = taken[base]
        elif owner.get(s["color"], base) == base:
            colour, marker = s["color"], s["marker"]
        else:
            for colour, marker in _fallbacks(name, server_group(name, kind)):
                if colour not in owner:
                    break
        if s["marker"] != "None":
            s["marker"] = marker
        if s["markerfacecolor"] != "white":
            s["markerfacecolor"] = colour
        s["color"] = colour
        owner[colour] = base
        taken[base] = (colour, marker)
        out[name] = s
    return out


def line_style(name: str, kind: Optional[str] = None) -> dict:
    """Keyword arguments for ax.plot: colour, marker, line style (memo: hollow,
    dashed; fold: hollow, dotted)."""
    group = server_group(name, kind)
    colour, marker = server_color(name, kind), server_marker(name, kind)
    if group == "ceiling":
        return {"color": colour, "marker": "None", "linestyle": "--", "markerfacecolor": colour}
    return {"color": colour, "marker": marker,
            "linestyle": ":" if group == "fold" else "--" if group in ("memo", "peer") else "-",
            "markerfacecolor": "white" if group in ("memo", "fold") else colour}


def bar_style(name: str, kind: Optional[str] = None) -> dict:
    """Keyword arguments for one ax.bar patch: colour, and hatching for memo
    stacks ("//") and folding stacks ("..")."""
    group = server_group(name, kind)
    s = {"color": server_color(name, kind), "edgecolor": "white"}
    if group == "memo":
        s.update(hatch="//", alpha=0.55)
    elif group == "fold":
        s.update(hatch="..", alpha=0.55)
    return s


def order_servers(names: Iterable[str], kinds: Optional[Dict[str, str]] = None) -> List[str]:
    """Ceiling, then our stacks, then memo stacks, folding stacks, then peers;
    first-seen order within a group."""
    kinds = kinds or {}
    names = list(dict.fromkeys(names))
    return sorted(names, key=lambda n: GROUP_ORDER[server_group(n, kinds.get(n))])


def simd_sorted(paths: Iterable[str]) -> List[str]:
    """SIMD path names in the order scalar -> SSE4.2 -> AVX2 (others after, as given)."""
    paths = list(paths)
    return sorted(paths, key=lambda p: (SIMD_ORDER.index(p) if p in SIMD_ORDER else len(SIMD_ORDER)))


# ------------------------------------------------------------------ figures

def figure(nrows: int = 1, ncols: int = 1, **kw):
    """A Figure on the Agg canvas (no pyplot: never changes the caller's backend),
    constrained layout, the package style; returns (fig, 2-d array of axes)."""
    with _mpl_style.context(str(STYLE)):
        fig = Figure(layout="constrained", **kw)
        FigureCanvasAgg(fig)
        axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def reference_line(ax, value: float, label: str = CEILING, axis: str = "y",
                   color: str = CEILING_COLOR, text: Optional[str] = None):
    """A dashed line across the axes at `value` (axis "y": horizontal), labelled at its
    left end; also given `label` for a legend.  Used for the ceiling everywhere."""
    if value is None or not math.isfinite(float(value)):
        return None
    draw = ax.axhline if axis == "y" else ax.axvline
    line = draw(value, color=color, linestyle="--", linewidth=1.2, label=label, zorder=3)
    note = text if text is not None else label
    if note:
        if axis == "y":
            ax.annotate(note, (0.0, value), xycoords=("axes fraction", "data"), xytext=(3, 2),
                        textcoords="offset points", ha="left", va="bottom", fontsize=8, color=color)
        else:
            ax.annotate(note, (value, 1.0), xycoords=("data", "axes fraction"), xytext=(-2, -3),
                        textcoords="offset points", rotation=90, ha="right", va="top", fontsize=7,
                        color=color)
    return line


def legend_outside(target, handles=None, labels=None, title: Optional[str] = None, fontsize: int = 8,
                   where: str = "right"):
    """One legend outside the data: right of the axes (or below them, where="below").

    `target` is an Axes (its own entries) or a Figure (the entries of every axes,
    each label once).  With constrained layout the axes shrink to make room, so
    the legend box never covers data."""
    fig = target if isinstance(target, Figure) else target.figure
    axes = fig.axes if isinstance(target, Figure) else [target]
    if handles is None:
        handles, labels, seen = [], [], set()
        for a in axes:
            for h, l in zip(*a.get_legend_handles_labels()):
                if l and not l.startswith("_") and l not in seen:
                    seen.add(l)
                    handles.append(h)
                    labels.append(l)
    elif labels is None:
        labels = [h.get_label() for h in handles]
    if not handles:
        return None
    for a in axes:                         # an axes-level legend would sit on the data
        if a.get_legend() is not None:
            a.get_legend().remove()
    # centred, not "upper": an upper legend climbs into the suptitle's band
    loc = "outside right center" if where == "right" else "outside lower center"
    ncol = 1 if where == "right" else min(len(handles), 4)
    return fig.legend(handles, labels, loc=loc, fontsize=fontsize, title=title,
                      title_fontsize=fontsize, ncols=ncol)


def key_handles(groups: Iterable[str], ceiling: bool = True) -> list:
    """Legend entries that explain the drawing rather than name servers (the x
    labels do that, in each server's colour): the ceiling line, memo hatching."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    groups = set(groups)
    out = []
    if ceiling:
        out.append(Line2D([], [], color=CEILING_COLOR, linestyle="--", label=GROUP_LABELS["ceiling"]))
    if "stack" in groups:
        out.append(Patch(facecolor="#1f4e8c", label="our stacks (cool colours)"))
    if "memo" in groups:
        out.append(Patch(facecolor="#1f4e8c", alpha=0.55, hatch="//", edgecolor="white",
                         label="head memo ON: parser skipped (hatched)"))
    if "fold" in groups:
        out.append(Patch(facecolor="#1f4e8c", alpha=0.55, hatch="..", edgecolor="white",
                         label="run folding ON: equal requests answered once (dotted)"))
    if "peer" in groups:
        out.append(Patch(facecolor="#d9822b", label="peers (warm colours)"))
    return out


def color_tick_labels(ax, names: Sequence[str], kinds: Optional[Dict[str, str]] = None,
                      which: str = "x") -> None:
    """Each tick label in its server's colour."""
    kinds = kinds or {}
    labels = ax.get_xticklabels() if which == "x" else ax.get_yticklabels()
    for tick, name in zip(labels, names):
        tick.set_color(server_color(name, kinds.get(name)))


def _fmt(v, _pos=None) -> str:
    if v >= 1e6:
        return f"{v / 1e6:g}M"
    if v >= 1e4:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


def log_axis(ax, which: str = "y", si: bool = False) -> None:
    """Log scale whose labels read 0.5, 2, 100 (or 20k, 1M with si=True), with
    enough labelled ticks: 1-2-5 steps over a few decades, every integer step
    within less than one decade, powers of ten over many.  Call after plotting."""
    axis = ax.yaxis if which == "y" else ax.xaxis
    (ax.set_yscale if which == "y" else ax.set_xscale)("log")
    lo, hi = (ax.dataLim.intervaly if which == "y" else ax.dataLim.intervalx)
    lo, hi = float(lo), float(hi)
    decades = math.log10(hi / lo) if lo > 0 and hi > lo and math.isfinite(hi / lo) else 1.0
    if decades < 1.0:
        subs = (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0)
    elif decades <= 3.5:
        subs = (1.0, 2.0, 5.0)
    else:
        subs = (1.0,)
    axis.set_major_locator(_ticker.LogLocator(base=10, subs=subs))
    axis.set_minor_locator(_ticker.LogLocator(base=10, subs=tuple(range(1, 10))))
    fmt = _fmt if si else (lambda v, _p=None: f"{v:g}")
    axis.set_major_formatter(_ticker.FuncFormatter(fmt))
    axis.set_minor_formatter(_ticker.NullFormatter())
    if lo > 0 and decades < 1.0:            # pad so at least two labelled ticks fall inside
        ax.margins(**{which: 0.08})


def min_span(ax, span: float, which: str = "y", floor: Optional[float] = None) -> None:
    """Widen a linear axis to at least `span` data units around its data, so that a
    flat series (RSS steady within 0.2 MB) is not magnified into a mountain range."""
    lo, hi = (ax.dataLim.intervaly if which == "y" else ax.dataLim.intervalx)
    lo, hi = float(lo), float(hi)
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi - lo >= span:
        return
    mid = (lo + hi) / 2
    a, b = mid - span / 2, mid + span / 2
    if floor is not None and a < floor:
        a, b = floor, floor + span
    (ax.set_ylim if which == "y" else ax.set_xlim)(a, b)


# ------------------------------------------------------------------ titles

def _join(values) -> str:
    values = [str(v) for v in dict.fromkeys(values) if v is not None and str(v) not in ("", "nan", "<NA>")]
    return values[0] if len(values) == 1 else (", ".join(values[:3]) + (" ..." if len(values) > 3 else ""))


def figure_title(what: str = "", batch=None, split: Optional[str] = None, head_memo=None,
                 machine: Optional[str] = None, fold_runs=None) -> str:
    """"<what>\\nbatch B · split S · head memo M[ · run folding F][ · machine]": every
    figure says which rows it shows, on which core split, and whether the parser ran
    on every request (folding is named only when some row had it on)."""
    parts = []
    if batch is not None:
        batches = [batch] if isinstance(batch, str) else list(dict.fromkeys(batch))
        parts.append(f"batch {batches[0]}" if len(batches) == 1 else f"{len(batches)} batches")
    if split:
        parts.append(split)
    folding = head_memo_label(fold_runs) if fold_runs is not None else "off"
    memo = head_memo_label(head_memo) if head_memo is not None else None
    if memo and memo.startswith("off (") and folding.startswith("off ("):
        # every row honest: say it once
        parts.append("head memo and run folding off (every request parsed and answered on its own)")
        folding = "off"
    elif memo:
        parts.append(f"head memo {memo}")
    if folding == "on":
        parts.append("run folding on")
    elif folding.startswith("off and on"):
        parts.append("run folding off and on (+fold rows)")
    if machine:
        parts.append(machine)
    line = " · ".join(parts)
    return f"{what}\n{line}" if what and line else (what or line)


def head_memo_label(values) -> str:
    """"off" (every request parsed), "on", or "off and on (+memo rows)"."""
    if isinstance(values, str):
        return values
    if isinstance(values, bool):
        return "on" if values else "off"
    seen = set()
    for v in values:
        try:
            seen.add(bool(v) if v is not None and v == v else False)
        except (TypeError, ValueError):
            seen.add(False)
    if seen == {True}:
        return "on"
    if seen == {True, False}:
        return "off and on (+memo rows)"
    return "off (every request parsed)"


def split_label(rows) -> Optional[str]:
    """"server CPUs 0 | load CPUs 1" from result rows (server_cpus, client_cpus)."""
    if rows is None or len(rows) == 0 or "server_cpus" not in getattr(rows, "columns", ()):
        return None
    server = _join(rows["server_cpus"].dropna())
    client = _join(rows["client_cpus"].dropna()) if "client_cpus" in rows.columns else ""
    if not server:
        return None
    return f"server CPUs {server} | load CPUs {client or '?'}"


def title_from_rows(what: str, rows) -> str:
    """figure_title() with batch, split, head memo and CPU model read off the rows."""
    if rows is None or len(rows) == 0:
        return figure_title(what)
    cols = rows.columns
    batch = list(rows["batch_id"].dropna().unique()) if "batch_id" in cols else None
    memo = rows["head_memo"].tolist() if "head_memo" in cols else None
    fold = rows["fold_runs"].tolist() if "fold_runs" in cols else None
    machine = _join(rows["machine_cpu_model"].dropna()) if "machine_cpu_model" in cols else None
    return figure_title(what, batch=batch or None, split=split_label(rows), head_memo=memo,
                        machine=machine or None, fold_runs=fold)


# ------------------------------------------------------------------ checks

def legend_overlaps(fig: Figure) -> List[str]:
    """Legends whose box covers an axes' data area (empty: every legend is clear).
    Draws the figure first so the layout is final; used by the tests."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = list(fig.legends) + [a.get_legend() for a in fig.axes if a.get_legend() is not None]
    bad = []
    for leg in legends:
        box = leg.get_window_extent(renderer)
        for a in fig.axes:
            if not a.get_visible() or not a.has_data():
                continue
            area = a.get_window_extent(renderer)
            w = min(box.x1, area.x1) - max(box.x0, area.x0)
            h = min(box.y1, area.y1) - max(box.y0, area.y0)
            if w > 1 and h > 1:
                bad.append(f"legend {[t.get_text() for t in leg.get_texts()][:3]} over axes "
                           f"{a.get_title()!r}")
    return bad


def single_label_log_axes(fig: Figure) -> List[str]:
    """Log axes with fewer than two labelled ticks in view (used by the tests;
    the figure must have been drawn, e.g. by legend_overlaps)."""
    if fig.stale:
        fig.canvas.draw()
    bad = []
    for a in fig.axes:
        for name, axis, lim in (("x", a.xaxis, a.get_xlim()), ("y", a.yaxis, a.get_ylim())):
            if axis.get_scale() != "log" or not a.has_data():
                continue
            lo, hi = sorted(lim)
            labels = [t for t, v in zip(axis.get_majorticklabels(), axis.get_majorticklocs())
                      if lo <= v <= hi and t.get_text()]
            if len(labels) < 2:
                bad.append(f"{a.get_title()!r} {name}: {[t.get_text() for t in labels]}")
    return bad
