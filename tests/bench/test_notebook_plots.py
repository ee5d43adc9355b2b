"""Every figure function of bench/notebooks/notebook_figures.py renders on fixture rows,
with its legend outside the axes' data area."""
import pandas as pd
import pytest

from kourier_lab.bench.results import findings
from kourier_lab.bench.notebooks import notebook_figures as nbp
from kourier_lab import style


def _speed():
    rows = []
    for v, k in (("python", 1.0), ("python+head-memo", 4.0), ("c", 8.0), ("httptools", 6.0)):
        for case, base in (("short", 10.0), ("browser", 100.0), ("pipelined256", 30.0)):
            rows.append(dict(variant=v, case=case, mb_per_s=base * k, status="ok"))
    return pd.DataFrame(rows)


def _simd():
    return pd.DataFrame([dict(simd=p, case=c, call=call, **{"MB/s": v * m})
                         for p, m in (("avx2", 1.1), ("scalar", 1.0), ("sse42", 1.15))
                         for c in ("browser x256", "pipelined256")
                         for call, v in (("kl_parse_batch (1 call)", 1000.0),
                                         ("parse_head per request", 100.0))])


def _repro():
    return pd.DataFrame([dict(published_pair="kourier/hyper", published=2.77,
                              measured_pair="ceiling/hyper", measured=2.6, differs="x",
                              verdict="not comparable: y"),
                         dict(published_pair="hyper/go", published=18.97, measured_pair="hyper/go",
                              measured=float("nan"), differs="", verdict="not measured")])


CASES = {
    "parser_speed": lambda: nbp.plot_parser_speed(_speed()),
    "simd_paths": lambda: nbp.plot_simd_paths(_simd()),
    "jit_costs": lambda: nbp.plot_jit_costs(pd.DataFrame(
        [dict(component="parsers", function="parse", seconds=0.2, cache="warm (load)")]), quick=True),
    "buffer_strategies": lambda: nbp.plot_buffer_strategies(pd.DataFrame(
        [dict(scenario=s, strategy=k, mb_per_s=v, spread_pct=5.0)
         for s in ("pipelined", "large body") for k, v in (("concat", 100.0), ("ring", 80.0))])),
    "crossing_costs": lambda: nbp.plot_crossing_costs(pd.DataFrame(
        [dict(what="kernel", ns=50.0), dict(what="parse_head, head memo hit", ns=800.0)])),
    "parser_throughput": lambda: nbp.plot_parser_throughput(pd.DataFrame(
        [dict(parser=p, corpus=c, mb_per_s=v) for p, v in (("numba", 100.0), ("httptools", 300.0))
         for c in ("browser", "short x256")])),
    "reproduction": lambda: nbp.plot_reproduction(_repro()),
}


def _overlaps(fig):
    """(axes title, legend) pairs whose legend box lies over the axes' data area."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    bad = []
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is None:
            continue
        a, lg = ax.get_window_extent(renderer), legend.get_window_extent(renderer)
        if a.overlaps(lg):
            bad.append(ax.get_title())
    return bad


def test_every_figure_function_is_tested():
    assert set(CASES) == set(nbp.FIGURES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_figure_renders_with_legend_outside(name):
    fig = CASES[name]()
    assert fig.axes
    assert _overlaps(fig) == []
    assert style.legend_overlaps(fig) == []
    assert style.single_label_log_axes(fig) == []


def test_quick_jit_plot_says_warm_only():
    fig = CASES["jit_costs"]()
    assert "quick mode skipped the cold compile" in fig.axes[0].get_title()


def test_simd_paths_in_width_order():
    fig = CASES["simd_paths"]()
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["scalar", "SSE4.2", "AVX2"]
    assert {ax.get_yscale() for ax in fig.axes} == {"log"}


def test_buffer_and_jit_sentences():
    s = pd.DataFrame([dict(scenario="large body", strategy="compacting bytearray", mb_per_s=7000.0,
                           spread_pct=5.0),
                      dict(scenario="large body", strategy="bytes concatenation", mb_per_s=1000.0,
                           spread_pct=5.0)])
    (line,) = findings.buffer_strategy_sentences(s)
    assert "compacting bytearray is fastest" in line and "7.00x" in line and "larger than" in line
    jit = pd.DataFrame([dict(component="p", function="f", seconds=2.0, cache="cold (compile)"),
                        dict(component="p", function="f", seconds=0.1, cache="warm (load)")])
    assert "20.0x" in findings.jit_sentences(jit)[-1]
