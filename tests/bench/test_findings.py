"""Sentences computed from rows (bench/results/findings.py): each states the relation
the figures show, with its conditions, and changes when the figures change."""
import math

import pandas as pd
import pytest

from kourier_lab.bench.results import findings
from kourier_lab.bench.results.bottleneck import classify_row
from kourier_lab.bench.results import summarize, to_frame


def _rows(server, kind, rps, cpu_us, srv, wrk, shape="pipelined", memo=False, resp=135,
          quick=False, runs=3):
    out = []
    for run in range(1, runs + 1):
        f = dict(server_cpu_util=srv, wrk_cpu_util=wrk, server_cpus_busy=srv,
                 client_cpus_busy=wrk, server_cpus_softirq=0.0, client_cpus_softirq=0.0)
        out.append(dict(batch_id="b1", experiment="e", shape=shape, server=server,
                        server_kind=kind, run=run, status="ok", req_per_s=rps * (1 + 0.01 * run),
                        cpu_us_per_req=cpu_us, latency_p50_ms=1.0, latency_p99_ms=1.0,
                        latency_overflow=False, errors_socket=0, non_2xx_3xx=0,
                        client_saturated=wrk >= 0.9, server_vmhwm_kb=1024, head_memo=memo,
                        response_bytes=resp, request_bytes=40, quick=quick, duration_s=1 if quick
                        else 3, repetitions=runs, workers=1, wrk_threads=1, server_cpus="0",
                        client_cpus="1", connections=64, pipeline=256,
                        bottleneck=classify_row(f), **f))
    return out


def _frame(quick=False):
    rows = (_rows("ceiling", "ceiling", 2.3e6, 0.074, 0.17, 0.99, quick=quick)
            + _rows("c/c/c", "stack", 2.29e6, 0.141, 0.30, 0.93, quick=quick)
            + _rows("python/c/c", "stack", 2.10e6, 0.384, 0.80, 0.97, quick=quick)
            + _rows("python/python/python", "stack", 1.04e6, 0.956, 0.94, 0.60, quick=quick)
            + _rows("c/c/c+memo", "stack", 2.40e6, 0.070, 0.17, 0.99, memo=True, quick=quick)
            + _rows("hyper", "peer", 0.884e6, 1.14, 0.98, 0.50, resp=129, quick=quick)
            + _rows("go", "peer", 41e3, 24.3, 0.96, 0.37, resp=126, quick=quick))
    return to_frame(rows)


def test_compare_states_cpu_ratio_and_conditions():
    s = summarize(_frame())
    text = findings.compare(s, "python/c/c", "python/python/python", quick=False)
    assert "2.5x less server CPU per request" in text          # 0.956 / 0.384
    assert "memo off" in text and "only when both are server-bound" in text  # python/c/c: wrk
    assert "python/c/c load-tool-bound" in text and "python/python/python server-bound" in text
    back = findings.compare(s, "python/python/python", "python/c/c", quick=True)
    assert "more server CPU per request" in back and "quick mode" in back
    assert "not measured" in findings.compare(s, "c/numba/c", "c/c/c")


def test_bottleneck_counts():
    text = findings.bottleneck_counts(summarize(_frame()))
    assert text.startswith("Of 7 measured rows")
    assert "wrk alone was the limit in 4" in text and "the server alone in 3" in text


def test_ceiling_check_flags_rows_beyond_it_with_the_reason():
    check = findings.ceiling_check(summarize(_frame())).set_index("server")
    memo = check.loc["c/c/c+memo"]
    assert memo["over_ceiling_req_per_s"] and memo["under_ceiling_cpu_per_req"]
    assert "head memo on" in memo["reason"] and "ceiling was load-tool-bound, so its req/s is not a bound" in memo["reason"]
    assert not check.loc["hyper", "over_ceiling_req_per_s"] and check.loc["hyper", "reason"] == ""
    lines = findings.ceiling_sentences(summarize(_frame()))
    assert "not a bound" in lines[0] and "c/c/c+memo" in lines[0]


def test_reproduction_says_comparable_only_when_settings_allow():
    table = findings.reproduction(_frame())
    assert list(table["published_pair"]) == ["kourier/hyper"] * 2 + ["kourier/go"] * 2 + ["hyper/go"]
    hg = table.iloc[-1]
    assert hg["measured"] == pytest.approx(0.884e6 / 41e3, rel=0.02)
    assert hg["verdict"].startswith("comparable")             # both peers server-bound, full mode
    ceiling_hyper = table.iloc[0]
    assert "not comparable" in ceiling_hyper["verdict"] and "never parses" in ceiling_hyper["verdict"]
    assert "ceiling load-tool-bound" in ceiling_hyper["differs"]
    best = table.iloc[1]                                       # c/c/c, memo rows left out
    assert "c/c/c" in best["measured_pair"] and "+memo" not in best["measured_pair"]
    quick = findings.reproduction(_frame(quick=True))
    assert all("not comparable" in v and "quick" in v for v in quick["verdict"])
    lines = findings.reproduction_lines(table)
    assert "published 2.77x" in lines[0] and "measured" in lines[0]


def test_quick_mode_note():
    assert findings.quick_mode_note(False).startswith("Full mode")
    note = findings.quick_mode_note(None, rows=_frame(quick=True),
                                    changed=["fewer stacks"], not_comparable=["the ratios"])
    assert "load runs of 1 s, 3 counted runs" in note and "fewer stacks" in note
    assert "Not comparable" in note and "the ratios" in note


def test_micro_relations_and_simd_order():
    table = pd.DataFrame({"browser": [1817.0, 81.0, 921.0, 5000.0]},
                         index=["python+head-memo", "python", "httptools", "c"])
    assert "11x slower than httptools" in findings.micro_relation(table, "python", "httptools",
                                                                  "browser")
    assert findings.fastest(table, "browser").startswith("on browser the fastest is c")
    simd = pd.DataFrame([dict(simd=p, case="browser", call="batch", **{"MB/s": v})
                         for p, v in (("avx2", 1050.0), ("scalar", 1000.0), ("sse42", 1120.0))])
    (line,) = findings.simd_gains(simd)
    assert line.index("sse42") < line.index("avx2")
    assert "AVX2 is slower than SSE4.2" in line


def test_smt_note_reads_the_topology(tmp_path):
    for cpu, sib in ((0, "0,2"), (1, "1,3"), (2, "0,2"), (3, "1,3")):
        d = tmp_path / f"cpu{cpu}" / "topology"
        d.mkdir(parents=True)
        (d / "thread_siblings_list").write_text(sib + "\n")
    assert "CPU 0 and 2 are SMT siblings" in findings.smt_note([0, 1], [2, 3], root=str(tmp_path))
    assert findings.smt_note([0, 2], [1, 3], root=str(tmp_path)).startswith("here no server CPU")
    assert "unknown" in findings.smt_note([7], [1], root=str(tmp_path))


def test_contended_rows_are_flagged_for_rerunning():
    rows = [dict(r, server_cpus_busy=1.0, bottleneck="contention")
            for r in _rows("ceiling", "ceiling", 1e6, 0.08, 0.07, 0.4)
            + _rows("c/c/c", "stack", 1.1e6, 0.07, 0.08, 0.4)]
    s = summarize(to_frame(rows))
    assert set(s["bottleneck"]) == {"contention"}          # busy CPUs, ours used 7-8 % of them
    assert "re-run on a quiet machine" in findings.bottleneck_counts(s)
    (line,) = findings.ceiling_sentences(s)
    assert "held down by other processes" in line
    reason = findings.ceiling_check(s).iloc[0]["reason"]
    assert "ran contended" in reason and "not a bound" in reason


def _memory_rows():
    return pd.DataFrame([
        dict(server="c/c/c", status="ok", step=1000, workers=1, connections_held=1000,
             rss_per_conn_bytes=0.0, baseline_rss_per_worker_kb=10240),
        dict(server="c/c/c", status="ok", step=10000, workers=1, connections_held=10000,
             rss_per_conn_bytes=84.0, baseline_rss_per_worker_kb=10240),
        dict(server="numba/numba/numba", status="ok", step=1000, workers=1, connections_held=1000,
             rss_per_conn_bytes=4324.0, baseline_rss_per_worker_kb=240000),
        dict(server="numba/numba/numba", status="skipped", step=10000, workers=1, connections_held=None,
             rss_per_conn_bytes=None, baseline_rss_per_worker_kb=None),
    ])


def test_memory_sentences_take_each_figure_from_the_rows():
    lines = findings.memory_sentences(_memory_rows())
    assert lines[0].startswith("c/c/c: held 10,000 connections (1 worker); 84 B per connection")
    assert lines[1].startswith("numba/numba/numba: held 1,000 connections") and "4,324 B" in lines[1]
    # the spread is read at the most every server held (1,000), where c/c/c's growth was below a page:
    # a bound, so no ratio
    assert ("runs from no measurable growth (c/c/c: under 4 B) to 4,324 B (numba/numba/numba)."
            in lines[2]), lines[2]
    # the idle baselines from each server's first step (one worker)
    assert "from 10 MB (c/c/c) to 234 MB (numba/numba/numba)" in lines[-1]
    rows = _memory_rows()
    rows.loc[0, "rss_per_conn_bytes"] = 90.0
    spread = [line for line in findings.memory_sentences(rows) if "runs from" in line]
    assert spread == ["At about 1,000 connections (the most every server held), the cost per connection runs "
                      "from 90 B (c/c/c) to 4,324 B (numba/numba/numba): 48.0x."]
    assert findings.memory_sentences(rows.assign(status="failed")) == [
        "No memory step finished: there is nothing to read."]


def test_soak_sentences_say_flat_or_climbing():
    soaked = pd.DataFrame([dict(server="c/c/c", status="ok", rss_flat=True, fds_flat=True, duration_s=10,
                                requests=123456, rss_first_third_max_kb=10240, rss_last_third_max_kb=10300,
                                fds_first_third_max=60, fds_last_third_max=61, malformed_sent=50,
                                malformed_answered=50, server_alive=True),
                           dict(server="numba/numba/numba", status="ok", rss_flat=False, fds_flat=True,
                                duration_s=10, requests=1000, rss_first_third_max_kb=10240,
                                rss_last_third_max_kb=40000, fds_first_third_max=60, fds_last_third_max=60,
                                malformed_sent=5, malformed_answered=5, server_alive=True)])
    a, b = findings.soak_sentences(soaked)
    assert a.startswith("c/c/c: flat over 10 s and 123,456 requests") and "50/50" in a
    assert b.startswith("numba/numba/numba: CLIMBING")


def test_identical_gains_per_server_from_the_rows():
    rows = (_rows("ceiling", "ceiling", 2.3e6, 0.074, 0.17, 0.99, shape="distinct")
            + _rows("ceiling", "ceiling", 2.3e6, 0.074, 0.17, 0.99)
            + _rows("python/python/python", "stack", 150e3, 6.7, 0.97, 0.30, shape="distinct")
            + _rows("python/python/python", "stack", 1.04e6, 1.0, 0.94, 0.60)
            + _rows("c/c/c", "stack", 1.5e6, 0.30, 0.95, 0.70, shape="distinct")
            + _rows("c/c/c", "stack", 2.29e6, 0.141, 0.30, 0.93)
            + _rows("go", "peer", 41e3, 24.3, 0.96, 0.37, shape="distinct")
            + _rows("go", "peer", 41e3, 24.3, 0.96, 0.37)
            + _rows("hyper", "peer", 0.88e6, 1.14, 0.98, 0.50))          # pipelined only
    df = to_frame(rows)
    lines = findings.identical_gains(df)
    assert len(lines) == 4 and not any(ln.startswith("hyper") for ln in lines)
    py = next(ln for ln in lines if ln.startswith("python/python/python"))
    assert py.startswith("python/python/python gains 6.7x from identical requests")
    assert "6.7 µs server CPU per request on distinct, 1 µs on pipelined" in py
    assert "[memo off; server-bound]" in py
    c = next(ln for ln in lines if ln.startswith("c/c/c"))
    assert "gains 2.1x" in c and "server-bound on distinct, load-tool-bound on pipelined" in c
    assert next(ln for ln in lines if ln.startswith("go")).startswith(
        "go gains nothing measurable from identical requests")
    quick = findings.identical_gains(to_frame([dict(r, quick=True) for r in rows]))
    assert all("quick mode" in ln for ln in quick)
    # the summary works as well as the rows, and bench prints the sentences under its table
    assert findings.identical_gains(summarize(df), quick=False) == lines
    from kourier_lab.bench.results import summary_text
    text = summary_text(df)
    assert "identical saves" in text and text.rstrip().endswith(lines[-1])
    assert findings.identical_gains(to_frame(_rows("c/c/c", "stack", 1e6, 0.1, 0.9, 0.5))) == []
