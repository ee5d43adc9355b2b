"""data/published/*.csv hold the posts' figures; they agree with the post's wrk
outputs (tests/fixtures/wrk/post_2025_*.txt) read by our own parser."""
import math
from pathlib import Path

import pytest

from kourier_lab.published_figures import (beside_published, load_published,
                                         memory_beside_published, published_ratios)
from kourier_lab.bench.results import to_frame
from kourier_lab.bench.load.wrk import parse_wrk_output

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "wrk"
POST = {"kourier": "post_2025_kourier_overflow.txt", "hyper": "post_2025_hyper.txt",
        "go": "post_2025_go.txt"}


@pytest.mark.parametrize("server", sorted(POST))
def test_performance_csv_matches_the_posts_wrk_output(server):
    perf = load_published("performance")
    row = perf[(perf["machine"] == "AMD Ryzen 5 1600") & (perf["server"] == server)].iloc[0]
    wrk = parse_wrk_output((FIXTURES / POST[server]).read_text())
    for col in ("req_per_s", "latency_avg_ms", "latency_stdev_ms", "latency_max_ms",
                "latency_p50_ms", "latency_p75_ms", "latency_p90_ms",
                "thread_req_per_s_avg", "thread_req_per_s_stdev", "thread_req_per_s_max"):
        assert row[col] == pytest.approx(wrk[col]), col
    assert row["requests"] == wrk["requests"] and row["errors_timeout"] == wrk["errors_timeout"]
    assert row["measured_duration_s"] == pytest.approx(wrk["wrk_duration_s"])
    if server == "kourier":      # printed as 0.00us: unknown, kept empty
        assert math.isnan(row["latency_p99_ms"]) and row["latency_p99_reported"] == "0.00us"
        assert math.isnan(wrk["latency_p99_ms"])
    else:
        assert row["latency_p99_ms"] == pytest.approx(wrk["latency_p99_ms"])
    assert (row["server_threads"], row["wrk_threads"], row["connections"], row["pipeline"],
            row["duration_s"]) == (6, 6, 512, 256, 15)


def test_issue_figures():
    perf = load_published("performance").set_index(["machine", "server"])
    assert perf.loc[("AWS m7a.4xlarge", "kourier"), "req_per_s"] == 33.0e6
    assert perf.loc[("AWS m7a.4xlarge", "lithium"), "req_per_s"] == 32.5e6
    mem = load_published("memory").set_index("server")
    assert list(mem.loc[["kourier", "hyper", "go"], "vmpeak_kb"]) == [1261344, 5974808, 9801832]
    assert list(mem.loc[["kourier", "hyper", "go"], "req_per_s"]) == [229600.45, 209752.03,
                                                                      141699.75]
    assert (mem["connections"] == 500000).all()
    comp = load_published("compliance").set_index("server")["compliance_pct"]
    assert comp.to_dict() == {"kourier": 100.0, "hyper": 89.7, "go": 63.1,
                              "qhttpserver": 1.2, "lithium": 0.0}
    r = published_ratios().set_index("pair")["ratio"]
    assert r["kourier/hyper"] == pytest.approx(2.77, abs=0.005)
    assert r["kourier/go"] == pytest.approx(52.5, abs=0.05)
    assert r["hyper/kourier"] == pytest.approx(4.7, abs=0.05)     # "4.7x less memory"
    assert r["go/kourier"] == pytest.approx(7.7, abs=0.1)         # "7.7x less memory"
    with pytest.raises(ValueError, match="unknown published table"):
        load_published("latency")


def test_measured_rows_beside_published():
    rows = [dict(batch_id="b", experiment="e", shape="pipelined", server="hyper",
                 server_kind="peer", status="ok", run=i, req_per_s=v, latency_p50_ms=1.0,
                 latency_p90_ms=2.0, latency_p99_ms=math.nan, errors_timeout=0,
                 cpu_us_per_req=0.5, machine_cpu_model="cpu", workers=1, wrk_threads=1)
            for i, v in enumerate((1.0e6, 3.0e6, 2.0e6), 1)]
    table = beside_published(to_frame(rows))
    measured = table[table["source"] == "measured"].iloc[0]
    assert measured["req_per_s"] == 2.0e6 and measured["split"] == "1 + 1"
    assert list(table[table["source"] == "published"]["split"]) == ["6 + 6"] * 3
    assert len(memory_beside_published(to_frame(rows))) == 3     # no connections rows measured


def test_memory_beside_published_takes_every_figure_from_one_step():
    """The defect this guards against: the first step's connection count shown
    beside the largest step's memory."""
    def step(n, vmpeak, vmhwm, rate, run=1, status="ok"):
        return dict(batch_id="b", experiment="memory", shape="connections", server="c/c/c",
                    server_kind="stack", status=status, run=run, step=str(n), connections=n,
                    connections_held=n, req_per_s=rate, server_vmpeak_kb=vmpeak,
                    server_vmhwm_kb=vmhwm, server_vmrss_kb=vmhwm, rss_per_conn_bytes=vmhwm / n,
                    workers=1)
    rows = [step(200, 70_000, 50_000, 900.0), step(1000, 90_000, 60_000, 1000.0),
            step(5000, 10 ** 9, 10 ** 9, 5.0, status="failed")]
    table = memory_beside_published(to_frame(rows))
    m = table[table["source"] == "measured"]
    assert len(m) == 1
    r = m.iloc[0]
    assert (r["step"], r["connections"], r["vmpeak_kb"], r["vmhwm_kb"], r["req_per_s"]) == \
        ("1000", 1000, 90_000, 60_000, 1000.0)
    assert r["rss_per_conn_bytes"] == 60.0
