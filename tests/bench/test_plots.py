"""Every package plot function drawn on a fixture frame: no crash, legends clear
of the data, one colour per server, no single-label log axes, readable spans."""
import os

import pandas as pd
import pytest

from kourier_lab.bench.plots import latency as latency_plots, throughput as plots
from kourier_lab import style
from kourier_lab.stress import stress_plots

SERVERS = [("ceiling", "ceiling", False), ("c/c/c", "stack", False), ("numba/numba/numba", "stack", False),
           ("python/python/python", "stack", False), ("c/c/c+memo", "stack", True),
           ("python/python/python+memo", "stack", True), ("hyper", "peer", False), ("go", "peer", False),
           ("nginx", "peer", False), ("uvicorn", "peer", False), ("asyncio-httptools", "peer", False),
           ("granian", "peer", False)]
BASE = dict(batch_id="20261201T000000Z-fixture", experiment="fixture", machine_cpu_model="Test CPU",
            server_cpus="0", client_cpus="1", status="ok", workers=1, run=1)


def bench_frame() -> pd.DataFrame:
    """wrk rows (pipelined: per-batch latency), h2load closed-loop rows and a rate sweep."""
    rows = []
    for i, (server, kind, memo) in enumerate(SERVERS):
        speed = 2.3e6 / (1 + i * 0.7)
        for run in (1, 2, 3):
            common = dict(BASE, server=server, server_kind=kind, head_memo=memo, run=run)
            rows.append(dict(common, shape="pipelined", load_tool="wrk", pipeline=256, connections=64,
                             offered_rate=None, req_per_s=speed * (1 + 0.02 * run),
                             cpu_us_per_req=0.07 * (1 + i) ** 2, latency_per_batch=True,
                             latency_p50_ms=0.0, latency_p99_ms=0.0))
            rows.append(dict(common, shape="keepalive", load_tool="h2load", pipeline=1, connections=64,
                             offered_rate=None, req_per_s=speed / 30, cpu_us_per_req=9 + i,
                             latency_per_batch=False, latency_p50_ms=0.7 + 0.1 * i,
                             latency_p75_ms=0.9 + 0.1 * i, latency_p90_ms=1.1 + 0.1 * i,
                             latency_p99_ms=1.5 + 0.3 * i, latency_p999_ms=3.0 + 0.5 * i))
            if server in ("ceiling", "c/c/c", "python/python/python", "hyper"):
                for rate in (10e3, 20e3, 40e3, 80e3):
                    rows.append(dict(common, shape="rate", load_tool="h2load", pipeline=1, connections=64,
                                     offered_rate=rate, req_per_s=min(rate, speed / 30),
                                     latency_per_batch=False, latency_p50_ms=0.5 + rate / 1e5,
                                     latency_p99_ms=1.0 + rate / 2e4, latency_lower_bound=rate > 60e3))
    return pd.DataFrame(rows)


def memory_frame() -> pd.DataFrame:
    rows = []
    for server, kind in (("c/c/c", "stack"), ("python/python/python", "stack"), ("nginx", "peer")):
        for n in (1000, 10000, 100000):
            rows.append(dict(BASE, server=server, server_kind=kind, shape="connections", connections=n,
                             connections_held=n, server_vmrss_kb=20000 + n * 0.5,
                             rss_per_conn_bytes=512 + 10 * len(server), server_vmpeak_kb=1e6 + n * 4,
                             limit=None))
    rows.append(dict(BASE, server="c/c/c", server_kind="stack", shape="connections", connections=500000,
                     connections_held=None, status="skipped", limit="20,000 open files per process"))
    return pd.DataFrame(rows)


def soak_samples() -> pd.DataFrame:
    rows = []
    for server in ("c/c/c", "numba/numba/numba"):
        for t in range(30):         # RSS within 0.18 MB: must not be drawn as a mountain range
            rows.append(dict(batch_id="20261201T000000Z-soak", server=server, t_s=float(t),
                             vmrss_kb=30000 + (t % 3) * 60, fds=12 + (t % 2), processes=2))
    return pd.DataFrame(rows)


BENCH = [plots.plot_throughput, plots.plot_cpu_per_request, plots.plot_latency, plots.plot_ratios,
         latency_plots.plot_latency_vs_load, latency_plots.plot_request_latency]
MEMORY = [stress_plots.plot_rss, stress_plots.plot_rss_per_connection, stress_plots.plot_vmpeak]
EVERY = [(f, bench_frame) for f in BENCH] + [(f, memory_frame) for f in MEMORY] + \
        [(stress_plots.plot_soak, soak_samples)]


@pytest.mark.parametrize("make,frame", EVERY, ids=lambda x: getattr(x, "__name__", "?"))
def test_every_plot_draws_with_legends_clear_of_the_data(make, frame):
    fig = make(frame())
    assert style.legend_overlaps(fig) == []            # draws the figure: it renders
    assert style.single_label_log_axes(fig) == []
    title = fig.get_suptitle()
    assert "batch 20261201T000000Z-" in title
    if make is not stress_plots.plot_soak:
        assert "server CPUs 0 | load CPUs 1" in title
    if make in BENCH:                  # memory and soak rows have no head memo axis
        assert "head memo" in title


@pytest.mark.parametrize("make,frame", EVERY, ids=lambda x: getattr(x, "__name__", "?"))
def test_every_plot_draws_without_rows(make, frame):
    make(frame().iloc[0:0]).savefig(os.devnull, format="png")


def test_one_scale_type_per_figure():
    for make in (plots.plot_throughput, plots.plot_cpu_per_request):
        fig = make(bench_frame())
        scales = {a.get_yscale() for a in fig.axes if a.has_data()}
        assert len(scales) == 1, (make.__name__, scales)


def test_latency_plot_never_repeats_a_colour():
    fig = plots.plot_latency(bench_frame())
    lines = [l for l in fig.axes[1].get_lines() if len(l.get_xdata()) > 2] if len(fig.axes) > 1 else \
        [l for l in fig.axes[0].get_lines() if len(l.get_xdata()) > 2]
    by_server = {}
    for line in lines:
        by_server.setdefault(style.base_name(line.get_label()), set()).add(line.get_color())
    colours = [c for cs in by_server.values() for c in cs]
    assert len(lines) >= 10 and len(colours) == len(set(colours))


def test_ceiling_is_a_reference_line_in_its_colour_not_a_bar():
    fig = plots.plot_throughput(bench_frame())
    ax = fig.axes[0]
    assert "ceiling" not in [t.get_text() for t in ax.get_xticklabels()]
    refs = [l for l in ax.get_lines() if l.get_color() == style.CEILING_COLOR]
    assert len(refs) == 1 and refs[0].get_linestyle() == "--"
    assert any(t.get_text().startswith("ceiling 2.") for t in ax.texts)


def test_soak_rss_is_not_magnified():
    fig = stress_plots.plot_soak(soak_samples())
    lo, hi = fig.axes[0].get_ylim()
    assert hi - lo >= stress_plots.SOAK_MIN_RSS_SPAN_MB


def test_colours_and_markers_are_fixed_per_server_and_grouped():
    assert style.server_color("c/c/c") == style.server_color("c/c/c+memo")
    assert style.line_style("c/c/c+memo")["markerfacecolor"] == "white"
    known = list(style.STACKS) + list(style.PEERS)
    assert len({style.server_color(n) for n in known}) == len(known)
    assert len({style.server_marker(n) for n in known}) == len(known)
    assert style.order_servers(["hyper", "c/c/c+memo", "c/c/c", "ceiling"]) == \
        ["ceiling", "c/c/c", "c/c/c+memo", "hyper"]
    # an unknown name gets the same colour every time, and never a clash within a figure
    names = [f"user{i}/c/c" for i in range(12)] + ["c/c/c"]
    styles = style.assign_styles(names)
    assert style.assign_styles(names) == styles
    assert len({s["color"] for s in styles.values()}) == len(names)
    assert style.simd_sorted(["avx2", "scalar", "sse42"]) == ["scalar", "sse42", "avx2"]


def test_figure_title_names_batch_split_and_memo():
    t = style.figure_title("Requests/s", batch="B1", split="server CPUs 0 | load CPUs 1", head_memo=[False, True])
    assert t.splitlines() == ["Requests/s", "batch B1 · server CPUs 0 | load CPUs 1 · head memo off and on "
                              "(+memo rows)"]


def test_fold_stacks_are_their_own_labelled_variant():
    assert style.base_name("c/c/c+memo+fold") == style.base_name("c/c/c+fold") == "c/c/c"
    assert style.server_group("c/c/c+fold") == style.server_group("c/c/c+memo+fold") == "fold"
    assert style.server_group("c/c/c+memo") == "memo"
    assert style.server_color("c/c/c+fold") == style.server_color("c/c/c")
    assert style.bar_style("c/c/c+fold")["hatch"] == ".." and style.bar_style("c/c/c+memo")["hatch"] == "//"
    assert style.line_style("c/c/c+fold")["linestyle"] == ":"
    assert style.order_servers(["hyper", "c/c/c+fold", "c/c/c+memo", "c/c/c", "ceiling"]) == \
        ["ceiling", "c/c/c", "c/c/c+memo", "c/c/c+fold", "hyper"]
    t = style.figure_title("x", head_memo=[False], fold_runs=[False, True])
    assert "run folding off and on (+fold rows)" in t
    # both shortcuts off: said once
    assert style.figure_title("x", head_memo=[False], fold_runs=[False]).splitlines()[1] == \
        "head memo and run folding off (every request parsed and answered on its own)"


def test_fold_rows_are_drawn_hatched_and_labelled_beside_the_stacks():
    rows = []
    for server, kind, memo, fold in (("ceiling", "ceiling", False, False), ("c/c/c", "stack", False, False),
                                     ("c/c/c+fold", "stack", False, True),
                                     ("c/c/c+memo+fold", "stack", True, True), ("go", "peer", False, False)):
        for shape, cost in (("distinct", 1.0), ("pipelined", 0.2)):
            rows.append(dict(BASE, server=server, server_kind=kind, head_memo=memo, fold_runs=fold,
                             shape=shape, load_tool="wrk", pipeline=256, connections=64,
                             offered_rate=None, req_per_s=1e6 / cost, cpu_us_per_req=cost,
                             latency_per_batch=True))
    df = pd.DataFrame(rows)
    for make in (plots.plot_throughput, plots.plot_cpu_per_request):
        fig = make(df)
        texts = [t.get_text() for ax in fig.axes for t in ax.texts]
        assert "+fold" in texts and "our stacks" in texts and "peers" in texts
        hatches = {p.get_hatch() for ax in fig.axes for p in ax.patches}
        assert ".." in hatches
        labels = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
        assert any("run folding ON" in x for x in labels)
        assert not style.legend_overlaps(fig)
    # the measured ratios leave folding (and memo) rows out: every request its own
    assert "c/c/c+fold" not in set(plots.measured_ratios(df, "pipelined")["pair"].str.cat())


def test_a_ratio_whose_server_the_load_tool_limited_is_marked_as_a_bound():
    rows = []
    for server, kind, speed, bound in (("ceiling", "ceiling", 5e6, "client"), ("c/c/c", "stack", 4e6, "client"),
                                       ("hyper", "peer", 1e6, "server"), ("go", "peer", 1e5, "server")):
        for run in (1, 2, 3):
            rows.append(dict(BASE, server=server, server_kind=kind, head_memo=False, fold_runs=False,
                             shape="pipelined", load_tool="kourier-lab", pipeline=256, connections=64,
                             offered_rate=None, req_per_s=speed, cpu_us_per_req=1e6 / speed, run=run,
                             bottleneck=bound))
    df = pd.DataFrame(rows)
    meas = plots.measured_ratios(df, "pipelined").set_index("pair")
    assert bool(meas.loc["best stack (c/c/c)/go", "numerator_tool_bound"])
    assert not bool(meas.loc["best stack (c/c/c)/go", "denominator_tool_bound"])
    assert not bool(meas.loc["hyper/go", "numerator_tool_bound"])
    fig = plots.plot_ratios(df)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert ">= 40.00x (load tool limited the numerator)" in texts
    assert "10.00x" in texts                                   # hyper/go: both server-bound
    labels = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert any("the ratio is a bound" in x for x in labels)
    assert not style.legend_overlaps(fig)


def test_latency_figures_mark_where_the_load_tool_was_the_limit():
    df = bench_frame()
    df["bottleneck"] = "server"
    tool_bound = (df["server"] == "ceiling") & ((df["offered_rate"] == 80e3) | (df["shape"] == "keepalive"))
    df.loc[tool_bound, "bottleneck"] = "client"
    for make, label in ((latency_plots.plot_latency_vs_load, "load tool was the limit at this rate"),
                        (latency_plots.plot_request_latency, "load tool was the limit")):
        fig = make(df)
        marks = [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_marker() == "v"
                 and ln.get_color() == style.TOOL_BOUND_MARK["color"]]
        assert len(marks) == 1 and len(marks[0].get_xdata()) == 1
        labels = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
        assert label in labels
        assert not style.legend_overlaps(fig)
        fig = make(df.assign(bottleneck="server"))        # nothing marked, nothing in the legend
        assert not any(ln.get_marker() == "v" and ln.get_color() == style.TOOL_BOUND_MARK["color"]
                       for ax in fig.axes for ln in ax.get_lines())


def test_two_ceilings_are_two_lines_and_connection_counts_are_panels():
    rows = []
    for server, kind in (("ceiling", "ceiling"), ("ceiling-uring", "ceiling"), ("c/c/c", "stack"),
                         ("uring/c/c", "stack")):
        for conns in (64, 512):
            for run in (1, 2):
                rows.append(dict(BASE, server=server, server_kind=kind, head_memo=False, fold_runs=False,
                                 shape="keepalive", load_tool="kourier-lab", pipeline=1, connections=conns,
                                 offered_rate=None, req_per_s=1e5 * (2 if kind == "ceiling" else 1) + conns,
                                 cpu_us_per_req=10.0, run=run, bottleneck="server"))
    df = pd.DataFrame(rows)
    fig = plots.plot_throughput(df)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["keepalive, 64 connections", "keepalive, 512 connections"]
    for ax in fig.axes[:2]:
        texts = [t.get_text() for t in ax.texts]
        assert any(t.startswith("ceiling ") for t in texts) and any(t.startswith("ceiling-uring ") for t in texts)
        assert len([b for b in ax.patches if b.get_height() > 0]) == 2      # c/c/c and uring/c/c bars
