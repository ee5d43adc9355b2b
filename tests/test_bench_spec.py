"""Experiment specs (bad ones give one clear error), core split, summary arithmetic."""
import math
import subprocess
import sys
from pathlib import Path

import pytest

from kourier_lab.bench.results import format_summary, summarize, to_frame
from kourier_lab.bench.spec import SpecError, load_experiment, parse_experiment
from kourier_lab.bench.split import plan_split

ROOT = Path(__file__).resolve().parents[1]


# The bench's experiments (experiments/ also holds other commands' files, e.g.
# memory.toml for `kourier-lab memory`).
BENCH_EXPERIMENTS = ["quick.toml", "kourier_blog_2025.toml", "server_matrix.toml",
                     "all_stacks.toml", "latency.toml"]


@pytest.mark.parametrize("name", BENCH_EXPERIMENTS)
def test_shipped_experiments_load(name):
    exp = load_experiment(ROOT / "experiments" / name)
    assert exp.shapes and exp.repetitions >= 1
    q = exp.quickened()
    assert q.quick and all(s.duration_s == 1 for s in q.shapes) and q.repetitions <= 2


def test_blog_experiment_is_the_posts_command_line():
    exp = load_experiment(ROOT / "experiments" / "kourier_blog_2025.toml")
    pipelined = next(s for s in exp.shapes if s.name == "pipelined")
    assert (pipelined.connections, pipelined.pipeline, pipelined.duration_s) == (512, 256, 15)
    assert exp.profile == "ryzen-5-1600"
    assert (exp.request_timeout_s, exp.idle_timeout_s) == (20, 60)


def test_defaults_and_overrides():
    exp = parse_experiment({"stacks": ["python/python/python", "all"], "peers": "hyper",
                            "shapes": ["pipelined", "keepalive"],
                            "shape": {"keepalive": {"connections": 8, "duration": 2}}})
    assert exp.repetitions == 3 and exp.stacks == ["python/python/python", "all"]
    assert exp.peers == ["hyper"]
    p, k = exp.shapes
    assert (p.connections, p.pipeline, p.browser) == (512, 256, False)
    assert (k.connections, k.pipeline, k.duration_s) == (8, 1, 2)


BAD = [
    ({"repetitons": 3}, "unknown key 'repetitons'"),
    ({"repetitions": 0}, "repetitions must be >= 1"),
    ({"repetitions": "3"}, "repetitions must be an integer"),
    ({"duration": 1.5}, "duration must be an integer"),
    ({"timeout": 0}, "timeout must be >= 1"),
    ({"profile": "ryzen"}, "unknown profile 'ryzen'"),
    ({"stacks": ["c/c"]}, "stack 'c/c' is not loop/parser/buffer"),
    ({"stacks": [1]}, "stacks must be a list of strings"),
    ({"peers": ["Hyper!"]}, "peer name 'Hyper!'"),
    ({"shapes": ["pipelined", "burst"]}, "unknown shape 'burst'"),
    ({"shapes": []}, "shapes is empty"),
    ({"shape": {"keepalive": {"connections": 4}}}, "[shape.keepalive] configures a shape"),
    ({"shape": {"pipelined": {"conections": 4}}}, "unknown key 'conections' in [shape.pipelined]"),
    ({"shape": {"pipelined": {"pipeline": 0}}}, "shape.pipelined.pipeline must be >= 1"),
    ({"shape": {"pipelined": {"path": "hello"}}}, "shape.pipelined.path must start with '/'"),
    ({"name": "a b"}, "name must be letters"),
]


@pytest.mark.parametrize("data,message", BAD, ids=[m for _, m in BAD])
def test_bad_spec_names_the_problem(data, message):
    with pytest.raises(SpecError) as e:
        parse_experiment(data, "x.toml")
    text = str(e.value)
    assert message in text and text.startswith("x.toml: ") and "\n" not in text


def test_bad_files(tmp_path):
    with pytest.raises(SpecError, match="no such experiment file"):
        load_experiment(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("stacks = [\"c/c/c\"\nshapes = 3\n")
    with pytest.raises(SpecError, match="broken.toml: not valid TOML"):
        load_experiment(broken)


def test_cli_bad_spec_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("repetitions = -1\n")
    # Through kourier_lab.cli.main, as the `kourier-lab` console script runs it.
    r = subprocess.run([sys.executable, "-c", "import sys; from kourier_lab.cli import main; "
                        "sys.exit(main())", "bench", str(bad)],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "repetitions must be >= 1" in lines[0], r.stderr


# ---------------------------------------------------------------------------


def test_auto_split_halves():
    s = plan_split("auto", [0, 1, 2, 3])
    assert (s.server_cpus, s.client_cpus, s.workers, s.wrk_threads, s.note) == (
        [0, 1], [2, 3], 2, 2, "")
    s = plan_split("auto", [0, 1, 2])
    assert (s.server_cpus, s.client_cpus) == ([0], [1, 2])


def test_ryzen_profile_exact_and_scaled():
    s = plan_split("ryzen-5-1600", list(range(16)))
    assert (s.server_cpus, s.client_cpus, s.note) == (list(range(6)), list(range(6, 12)), "")
    s = plan_split("ryzen-5-1600", [0, 1])
    assert (s.server_cpus, s.client_cpus) == ([0], [1])
    assert "wants 12 logical CPUs" in s.note and "scaled down to 1 + 1" in s.note
    s = plan_split("ryzen-5-1600", list(range(8)))
    assert (len(s.server_cpus), len(s.client_cpus)) == (4, 4) and "offers 8" in s.note


def test_single_cpu_shares_and_says_so():
    s = plan_split("auto", [3])
    assert s.server_cpus == s.client_cpus == [3] and s.shared and "share" in s.note


def test_unknown_profile():
    with pytest.raises(ValueError, match="unknown profile"):
        plan_split("m7a")


# ---------------------------------------------------------------------------


def _row(server, kind, rps, run, status="ok", shape="pipelined", **kw):
    return dict(batch_id="b1", experiment="e", shape=shape, server=server, server_kind=kind,
                run=run, status=status, req_per_s=rps, cpu_us_per_req=2.0,
                server_cpu_util=0.5, wrk_cpu_util=0.5, latency_p50_ms=1.0,
                latency_p99_ms=math.nan, latency_overflow=True, errors_socket=1,
                non_2xx_3xx=0, client_saturated=False, server_vmhwm_kb=2048, **kw)


def test_summary_medians_fraction_of_ceiling_and_skips():
    rows = [_row("ceiling", "ceiling", v, i) for i, v in enumerate((100.0, 300.0, 200.0), 1)]
    rows += [_row("python/python/python", "stack", v, i) for i, v in enumerate((50.0, 10.0, 30.0), 1)]
    rows.append(dict(batch_id="b1", experiment="e", shape="pipelined", server="c/c/c",
                     server_kind="stack", run=0, status="skipped", note="loop 'c' unavailable"))
    s = summarize(to_frame(rows)).set_index("server")
    assert s.loc["ceiling", "req_per_s"] == 200.0
    assert (s.loc["ceiling", "req_per_s_min"], s.loc["ceiling", "req_per_s_max"]) == (100.0, 300.0)
    assert s.loc["python/python/python", "of_ceiling"] == pytest.approx(30.0 / 200.0)
    assert s.loc["python/python/python", "errors"] == 3
    assert s.loc["c/c/c", "status"] == "skipped" and s.loc["c/c/c", "runs"] == 0
    text = format_summary(summarize(to_frame(rows)))
    assert "SKIPPED" in text and "loop 'c' unavailable" in text and "overflow" in text
    assert text.index("ceiling") < text.index("python/python/python")


def test_bottleneck_classification():
    from kourier_lab.bench.runner import _server_util

    def classify(server_cpu_s, wrk_util, srv_busy, cli_busy, softirq=0.0):
        f = {"server_cpu_s": server_cpu_s, "wall_s": 1.0, "wrk_cpu_util": wrk_util,
             "client_saturated": wrk_util >= 0.9, "server_cpus_busy": srv_busy,
             "client_cpus_busy": cli_busy, "server_cpus_softirq": softirq,
             "client_cpus_softirq": softirq}
        _server_util(f, server_cpus=1)
        return f["bottleneck"], round(f["server_cpus_other"], 2)

    assert classify(0.5, 0.95, 0.6, 1.0) == ("client", 0.1)
    assert classify(0.97, 0.5, 1.0, 0.55) == ("server", 0.03)
    assert classify(0.3, 0.4, 1.0, 0.5) == ("contention", 0.7)        # others on the server CPU
    assert classify(0.3, 0.4, 0.6, 0.5, softirq=0.25) == ("neither", 0.05)  # our softirq


def test_head_memo_response_and_load_tool_keys():
    from kourier_lab.bench.spec import parse_experiment
    from kourier_lab.bench.targets import Target, with_head_memo
    base = {"stacks": ["c/c/c"], "shapes": ["pipelined"]}
    exp = parse_experiment(base)
    assert exp.head_memo == (False,) and exp.response == "default"      # honest by default
    assert exp.shapes[0].load_tool == "wrk"
    exp = parse_experiment(dict(base, head_memo=[False, True], response="kourier",
                                load_tool="h2load", shapes=["pipelined", "rate"],
                                shape={"rate": {"rates": [1000, 2000]}}))
    assert exp.head_memo == (False, True) and exp.response == "kourier"
    assert [(s.name, s.load_tool) for s in exp.shapes] == [("pipelined", "h2load"), ("rate", "h2load")]
    assert exp.shapes[1].rates == (1000.0, 2000.0)
    stack = Target("stack", "c/c/c", "c", "c", "c")
    names = [(t.name, t.head_memo) for t in with_head_memo([stack, Target("peer", "go")], exp.head_memo)]
    assert names == [("c/c/c", False), ("c/c/c+memo", True), ("go", False)]
    for bad, word in ((dict(base, head_memo="yes"), "head_memo"),
                      (dict(base, response="tiny"), "response"),
                      (dict(base, load_tool="ab"), "load_tool"),
                      (dict(base, shapes=["rate"], shape={"rate": {"load_tool": "wrk"}}), "h2load"),
                      (dict(base, shape={"pipelined": {"rates": [1]}}), "rates"),
                      (dict(base, shapes=["rate"], shape={"rate": {"rates": [0]}}), "rates")):
        with pytest.raises(SpecError, match=word):
            parse_experiment(bad, "x.toml")
