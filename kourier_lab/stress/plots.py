"""Figures of the memory experiment and the soak, in the bench package's style.

    write_memory_figures(df)   -> data/figures/<experiment>_rss.png, _rss_per_conn.png, _vmpeak.png
    write_soak_figures(samples) -> data/figures/soak_rss_fds.png
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import pandas as pd

from ..bench.paths import figures_dir
from ..bench import plots as _bench_plots
from ..bench.plots import _figure, _plain_log_axis
from ..bench.published import load_published


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    return df[(df["status"] == "ok") & (df["shape"] == "connections")
              & df["connections_held"].notna()].copy()


def _title(df: pd.DataFrame) -> str:
    if df.empty:
        return ""
    first = df.iloc[0]
    return (f"{first['batch_id']} — {first['machine_cpu_model']}, server CPUs "
            f"{first['server_cpus']}, client CPUs {first['client_cpus']}")


def _series(ax, ok: pd.DataFrame, column: str, scale: float) -> None:
    for server, g in ok.groupby("server", sort=False):
        g = g.sort_values("connections_held")
        kind = g["server_kind"].iloc[0]
        ax.plot(g["connections_held"].astype(float), g[column].astype(float) / scale,
                marker="o" if kind == "stack" else "s",
                linestyle="-" if kind == "stack" else "--", label=server)


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
    ax.set_xscale("log")
    _plain_log_axis(ax.xaxis)
    ax.set_xlabel("connections held by the server")
    ax.set_ylabel("RSS of the server tree (MB)")
    ax.legend(fontsize=8)
    _limits_note(ax, df)
    fig.suptitle(f"Server RSS with many open connections\n{_title(df)}", fontsize=10)
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
    ax.set_xscale("log")
    _plain_log_axis(ax.xaxis)
    ax.set_xlabel("connections held by the server")
    ax.set_ylabel("RSS per connection (KiB, above idle)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    _limits_note(ax, df)
    fig.suptitle(f"Memory per connection\n{_title(df)}", fontsize=10)
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
                linestyle="none", color="#b5473a")
        ax.annotate(f"published {r['server_label']}", (r["connections"], r["vmpeak_kb"] / 1024 ** 2),
                    xytext=(-6, 0), textcoords="offset points", ha="right", va="center", fontsize=8,
                    color="#b5473a")
    ax.set_xscale("log")
    _plain_log_axis(ax.xaxis)
    ax.set_yscale("log")
    _plain_log_axis(ax.yaxis)
    ax.set_xlabel("connections")
    ax.set_ylabel("VmPeak of the server tree (GiB, virtual)")
    if not ok.empty:
        ax.legend(fontsize=8, loc="upper left")
    _limits_note(ax, df)
    fig.suptitle("VmPeak (virtual memory, the post's figure); stars: the post, Ryzen 5 1600, "
                 f"500 k connections\n{_title(df)}", fontsize=10)
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


def plot_soak(samples: pd.DataFrame):
    """RSS and open descriptors of each stack's server tree, once a second."""
    fig, axes = _figure(2, 1, figsize=(8, 6.5))
    ax_rss, ax_fd = axes[0][0], axes[1][0]
    if samples.empty:
        ax_rss.text(0.5, 0.5, "no samples", ha="center", transform=ax_rss.transAxes)
        return fig
    for server, g in samples.groupby("server", sort=False):
        ax_rss.plot(g["t_s"], g["vmrss_kb"] / 1024.0, label=server)
        ax_fd.plot(g["t_s"], g["fds"], label=server)
    ax_rss.set_ylabel("RSS (MB)")
    ax_fd.set_ylabel("open descriptors")
    ax_fd.set_xlabel("seconds of mixed load")
    ax_rss.legend(fontsize=8)
    first = samples.iloc[0]
    fig.suptitle(f"Soak: pipelined + keep-alive + new connections + malformed requests\n"
                 f"{first['batch_id']}", fontsize=10)
    return fig


def write_soak_figures(samples: pd.DataFrame, out_dir: Optional[Path] = None) -> List[Path]:
    out_dir = Path(out_dir) if out_dir is not None else figures_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "soak_rss_fds.png"
    plot_soak(samples).savefig(path, bbox_inches="tight")
    return [path]
