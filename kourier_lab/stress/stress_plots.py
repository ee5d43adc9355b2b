"""Figures of the memory experiment and the soak, in the package style (kourier_lab/style.py).

    write_memory_figures(df)   -> data/figures/<experiment>_rss.png, _rss_per_conn.png, _vmpeak.png
    write_soak_figures(samples) -> data/figures/soak_rss_fds.png
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import pandas as pd

from ..paths import figures_dir
from ..bench.plots import throughput as _bench_plots
from .. import style
from ..style import figure as _figure
from ..published_figures import load_published


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    return df[(df["status"] == "ok") & (df["shape"] == "connections")
              & df["connections_held"].notna()].copy()


def _title(what: str, df: pd.DataFrame) -> str:
    return style.title_from_rows(what, df)


def _series(ax, ok: pd.DataFrame, column: str, scale: float) -> None:
    """One line per server in its fixed colour and marker (kourier_lab.style)."""
    kinds = dict(zip(ok["server"], ok["server_kind"]))
    styles = style.assign_styles(style.order_servers(ok["server"], kinds), kinds)
    for server in style.order_servers(ok["server"], kinds):
        g = ok[ok["server"] == server].sort_values("connections_held")
        ax.plot(g["connections_held"].astype(float), g[column].astype(float) / scale,
                label=server, **styles[server])


def _limits_note(ax, df: pd.DataFrame) -> None:
    skipped = df[(df["status"] == "skipped") & df["limit"].notna()] if "limit" in df else df[:0]
    if len(skipped):
        limits = "; ".join(dict.fromkeys(str(x) for x in skipped["limit"]))
        ax.text(0.01, -0.22, f"larger steps not reachable here: {limits}", transform=ax.transAxes,
                fontsize=7, color="#555555", wrap=True, va="top")


def plot_rss(df: pd.DataFrame):
    """Resident memory of the whole server tree against connections held."""
    ok = _ok(df)
    fig, axes = _figure(1, 1, figsize=(8, 5))
    ax = axes[0][0]
    if ok.empty:
        ax.text(0.5, 0.5, "no measured rows", ha="center", transform=ax.transAxes)
        return fig
    _series(ax, ok, "server_vmrss_kb", 1024.0)
    style.log_axis(ax, "x", si=True)
    ax.set_xlabel("connections held by the server (log)")
    ax.set_ylabel("RSS of the server tree (MB)")
    style.min_span(ax, 8.0, floor=0.0)
    style.legend_outside(fig)
    _limits_note(ax, df)
    fig.suptitle(_title("Server RSS with many open connections", df), fontsize=10)
    return fig


def plot_rss_per_connection(df: pd.DataFrame):
    """(RSS at the step - idle RSS) / connections held."""
    ok = _ok(df)
    fig, axes = _figure(1, 1, figsize=(8, 5))
    ax = axes[0][0]
    if ok.empty:
        ax.text(0.5, 0.5, "no measured rows", ha="center", transform=ax.transAxes)
        return fig
    _series(ax, ok, "rss_per_conn_bytes", 1024.0)
    style.log_axis(ax, "x", si=True)
    ax.set_xlabel("connections held by the server (log)")
    ax.set_ylabel("RSS per connection (KiB, above idle)")
    ax.set_ylim(bottom=0)
    style.legend_outside(fig)
    _limits_note(ax, df)
    fig.suptitle(_title("Memory per connection", df), fontsize=10)
    return fig


def plot_vmpeak(df: pd.DataFrame):
    """VmPeak (virtual: the post's figure) against connections, with the
    memory post's published VmPeak at 500 k connections beside it."""
    ok = _ok(df)
    fig, axes = _figure(1, 1, figsize=(8, 5))
    ax = axes[0][0]
    if not ok.empty:
        _series(ax, ok, "server_vmpeak_kb", 1024.0 ** 2)
    pub = load_published("memory")
    for _, r in pub.iterrows():
        ax.plot([r["connections"]], [r["vmpeak_kb"] / 1024.0 ** 2], marker="*", markersize=12,
                linestyle="none", color=style.PUBLISHED_COLOR)
        ax.annotate(f"published {r['server_label']}", (r["connections"], r["vmpeak_kb"] / 1024 ** 2),
                    xytext=(-6, 0), textcoords="offset points", ha="right", va="center", fontsize=8,
                    color=style.PUBLISHED_COLOR)
    style.log_axis(ax, "x", si=True)
    style.log_axis(ax, "y")
    ax.set_xlabel("connections (log)")
    ax.set_ylabel("VmPeak of the server tree (GiB, virtual, log)")
    style.legend_outside(fig)
    _limits_note(ax, df)
    fig.suptitle(_title("VmPeak (virtual memory, the post's figure); stars: the post, Ryzen 5 1600, "
                        "500 k connections", df), fontsize=10)
    return fig


to_image = _bench_plots.to_image      # notebooks: a Figure as an IPython Image

MEMORY_FIGURES = {"rss": plot_rss, "rss_per_conn": plot_rss_per_connection, "vmpeak": plot_vmpeak}


def write_memory_figures(df: pd.DataFrame, out_dir: Optional[Path] = None) -> List[Path]:
    out_dir = Path(out_dir) if out_dir is not None else figures_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    names = df["experiment"].dropna().unique()
    prefix = names[0] if len(names) == 1 else "memory"
    paths = []
    for name, make in MEMORY_FIGURES.items():
        path = out_dir / f"{prefix}_{name}.png"
        make(df).savefig(path, bbox_inches="tight")
        paths.append(path)
    return paths


SOAK_MIN_RSS_SPAN_MB = 16.0
SOAK_MIN_FD_SPAN = 20.0


def plot_soak(samples: pd.DataFrame):
    """RSS and open descriptors of each stack's server tree, once a second."""
    fig, axes = _figure(2, 1, figsize=(8, 6.5))
    ax_rss, ax_fd = axes[0][0], axes[1][0]
    if samples.empty:
        ax_rss.text(0.5, 0.5, "no samples", ha="center", transform=ax_rss.transAxes)
        return fig
    servers = list(dict.fromkeys(samples["server"]))
    styles = style.assign_styles(servers)
    for server in servers:
        g = samples[samples["server"] == server]
        line = dict(styles[server], marker="None")       # one sample a second: a line, no dots
        ax_rss.plot(g["t_s"], g["vmrss_kb"] / 1024.0, label=server, **line)
        ax_fd.plot(g["t_s"], g["fds"], label=server, **line)
    ax_rss.set_ylabel("RSS (MB)")
    ax_fd.set_ylabel("open descriptors")
    ax_fd.set_xlabel("seconds of mixed load")
    # a steady RSS drifts by a fraction of a MB: show it on a span that says "flat"
    style.min_span(ax_rss, SOAK_MIN_RSS_SPAN_MB, floor=0.0)
    style.min_span(ax_fd, SOAK_MIN_FD_SPAN, floor=0.0)
    style.legend_outside(fig)
    fig.suptitle(style.title_from_rows("Soak: pipelined + keep-alive + new connections + malformed "
                                       "requests", samples), fontsize=10)
    return fig


def write_soak_figures(samples: pd.DataFrame, out_dir: Optional[Path] = None) -> List[Path]:
    out_dir = Path(out_dir) if out_dir is not None else figures_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "soak_rss_fds.png"
    plot_soak(samples).savefig(path, bbox_inches="tight")
    return [path]
