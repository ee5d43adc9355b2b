"""The bottleneck classifier (bench/results/bottleneck.py): one rule, one threshold
for the server's and the load tool's CPUs, at run level and on the summary's
medians.  The figures below are rows of batches that were mislabelled by the
old rule (wrk tested first; the summary's mode of per-run labels)."""
import math

import pytest

from kourier_lab.bench.results.bottleneck import classify, classify_row
from kourier_lab.bench.results import summarize, to_frame


@pytest.mark.parametrize("figures, label", [
    # python/python/python, pipelined 64 x 16 (batch 20261201T110300Z-latency, run 2):
    # the server at 94 %, h2load at 91 %: both sides saturated (was "client")
    (dict(server_cpu_util=0.94, wrk_cpu_util=0.91, server_cpus_busy=0.94, client_cpus_busy=0.93,
          server_cpus_softirq=0.10, client_cpus_softirq=0.06), "both"),
    # c/c/c pipelined (batch 20261201T105010Z-quick): wrk at 92 %, server at 31 %
    (dict(server_cpu_util=0.31, wrk_cpu_util=0.92, server_cpus_busy=0.30, client_cpus_busy=0.93,
          server_cpus_softirq=0.03, client_cpus_softirq=0.06), "client"),
    # hyper pipelined (same batch): the server's CPU saturated, wrk at 49 %
    (dict(server_cpu_util=0.98, wrk_cpu_util=0.49, server_cpus_busy=0.98, client_cpus_busy=0.53,
          server_cpus_softirq=0.05, client_cpus_softirq=0.02), "server"),
    # go rate-probe: wrk's CPU busy 92 % but h2load used 52 % of it: others
    (dict(server_cpu_util=0.82, wrk_cpu_util=0.52, server_cpus_busy=0.85, client_cpus_busy=0.92,
          server_cpus_softirq=0.13, client_cpus_softirq=0.10), "contention"),
    # an open-loop rate step: paced, nothing saturated
    (dict(server_cpu_util=0.15, wrk_cpu_util=0.09, server_cpus_busy=0.16, client_cpus_busy=0.10,
          server_cpus_softirq=0.03, client_cpus_softirq=0.02), "neither"),
    # no per-CPU figures: the processes' own use stands in, same threshold on both sides
    (dict(server_cpu_util=0.93, wrk_cpu_util=0.2), "server"),
    (dict(server_cpu_util=0.2, client_cpu_util=0.95), "client"),
    (dict(server_cpu_util=0.95, wrk_cpu_util=0.95), "both"),
    (dict(server_cpu_util=0.89, wrk_cpu_util=0.89), "neither"),
])
def test_run_labels(figures, label):
    assert classify_row(figures) == label


def test_same_threshold_on_both_sides():
    for util in (0.5, 0.89, 0.9, 0.99):
        assert (classify(util, 0.1) == "server") == (classify(0.1, util) == "client")


def test_missing_figures_say_neither():
    assert classify(math.nan, None) == "neither"


def _run(server, run, util, busy, wrk=0.5, label=None):
    figures = dict(server_cpu_util=util, server_cpus_busy=busy, wrk_cpu_util=wrk,
                   client_cpus_busy=wrk + 0.02, server_cpus_softirq=0.05,
                   client_cpus_softirq=0.02)
    return dict(batch_id="b", experiment="e", shape="pipelined", server=server,
                server_kind="stack", run=run, status="ok", req_per_s=1000.0 * run,
                cpu_us_per_req=1.0, latency_p50_ms=1.0, latency_p99_ms=1.0,
                latency_overflow=False, errors_socket=0, non_2xx_3xx=0,
                client_saturated=wrk >= 0.9, server_vmhwm_kb=1024,
                bottleneck=label or classify_row(figures), **figures)


def test_summary_classifies_the_medians_not_the_mode_of_labels():
    # two quick-mode runs that straddle the threshold: per-run "neither" and
    # "server"; the old summary took the mode, a tie, resolved alphabetically
    # to "neither" while the median server CPU was 94 %
    rows = [_run("python/python/python", 1, 0.89, 0.89), _run("python/python/python", 2, 0.99, 0.99)]
    assert [r["bottleneck"] for r in rows] == ["neither", "server"]
    line = summarize(to_frame(rows)).iloc[0]
    assert line["server_cpu_util"] == pytest.approx(0.94)
    assert line["bottleneck"] == "server"
    assert line["bottleneck_runs"] == "neither 1/2, server 1/2" or \
        line["bottleneck_runs"] == "server 1/2, neither 1/2"
