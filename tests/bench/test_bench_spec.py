"""Experiment specs (bad ones give one clear error), core split, summary arithmetic."""
import math
import subprocess
import sys
from pathlib import Path

import pytest

from kourier_lab.bench.results import format_summary, summarize, to_frame
from kourier_lab.bench.experiment import SpecError, load_experiment, parse_experiment
from kourier_lab.bench.experiment.split import plan_split

ROOT = Path(__file__).resolve().parents[2]


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
    from kourier_lab.bench.run.measure import server_util as _server_util

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
    from kourier_lab.bench.experiment import parse_experiment
    from kourier_lab.bench.experiment.targets import Target, with_head_memo
    base = {"stacks": ["c/c/c"], "shapes": ["pipelined"]}
    exp = parse_experiment(base)
    assert exp.head_memo == (False,) and exp.response == "default"      # honest by default
    assert exp.shapes[0].load_tool == "kourier-lab"        # the lab's own load generator
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


# ---------------------------------------------------------------------------
# Every request its own: fold_runs, the corpus shapes, what identical requests save


def test_fold_runs_key_is_an_axis_like_head_memo():
    from kourier_lab.bench.experiment.targets import Target, with_head_memo
    base = {"stacks": ["c/c/c"], "shapes": ["pipelined"]}
    assert parse_experiment(base).fold_runs == (False,)              # honest by default
    assert parse_experiment(dict(base, fold_runs=True)).fold_runs == (True,)
    exp = parse_experiment(dict(base, head_memo=[False, True], fold_runs=[False, True, True]))
    assert exp.fold_runs == (False, True)
    stack = Target("stack", "c/c/c", "c", "c", "c")
    got = [(t.name, t.head_memo, t.fold_runs)
           for t in with_head_memo([stack, Target("peer", "go")], exp.head_memo, exp.fold_runs)]
    assert got == [("c/c/c", False, False), ("c/c/c+fold", False, True),
                   ("c/c/c+memo", True, False), ("c/c/c+memo+fold", True, True),
                   ("go", False, False)]


@pytest.mark.parametrize("value", ["on", 1, [], [True, "no"], {"a": 1}])
def test_bad_fold_runs_is_one_clear_line(value):
    with pytest.raises(SpecError) as e:
        parse_experiment({"stacks": ["c/c/c"], "fold_runs": value}, "x.toml")
    text = str(e.value)
    assert text.startswith("x.toml: fold_runs must be true, false or a list of them")
    assert "\n" not in text


def test_stack_command_says_fold_runs_and_app():
    from kourier_lab.bench.run.servers import stack_command
    from kourier_lab.bench.experiment.targets import Target
    exp = parse_experiment({"stacks": ["c/c/c"]})
    split = plan_split("auto", [0, 1])
    plain = stack_command(Target("stack", "c/c/c", "c", "c", "c"), split, exp, "127.0.0.1", 1)
    assert plain[plain.index("--fold-runs") + 1] == "off" and "--app" not in plain
    folded = stack_command(Target("stack", "c/c/c+fold", "c", "c", "c", fold_runs=True), split,
                           exp, "127.0.0.1", 1, app="demo")
    assert folded[folded.index("--fold-runs") + 1] == "on"
    assert folded[folded.index("--app") + 1] == "demo"


def test_corpus_shapes_defaults():
    exp = parse_experiment({"stacks": ["c/c/c"], "shapes": ["distinct", "real", "api", "pipelined"]})
    d, r, a, p = exp.shapes
    assert (d.corpus, d.app, d.connections, d.pipeline) == ("distinct", "default", 64, 256)
    assert (r.corpus, r.app, r.pipeline) == ("real", "default", 16)
    assert (a.corpus, a.app, a.pipeline) == ("api", "demo", 16)
    assert (p.corpus, p.app) == (None, "default")
    assert all(s.load_tool == "kourier-lab" for s in exp.shapes)
    ryzen = parse_experiment({"profile": "ryzen-5-1600", "shapes": ["distinct"]})
    assert (ryzen.shapes[0].connections, ryzen.shapes[0].pipeline) == (512, 256)


CORPUS_BAD = [
    ({"shapes": ["distinct"], "shape": {"distinct": {"load_tool": "h2load"}}},
     "the distinct shape sends a request corpus, which only wrk and kourier-lab do here"),
    ({"shapes": ["real"], "shape": {"real": {"pipeline": 2000}}},
     "shape.real.pipeline 2000 is deeper than the real corpus (1024 requests)"),
    ({"shapes": ["distinct"], "shape": {"distinct": {"path": "/x"}}},
     "the distinct shape's requests bring their own paths"),
    ({"shapes": ["api"], "hosts": {"server": "ssh://a", "clients": ["ssh://b"]}},
     "the api shape runs on this machine only"),
]


@pytest.mark.parametrize("data,message", CORPUS_BAD, ids=[m[:40] for _, m in CORPUS_BAD])
def test_bad_corpus_shape_is_one_clear_line(data, message):
    with pytest.raises(SpecError) as e:
        parse_experiment(dict(data, stacks=["c/c/c"]), "x.toml")
    text = str(e.value)
    assert message in text and text.startswith("x.toml: ") and "\n" not in text


def test_quick_leads_with_distinct_memo_and_folding_off():
    exp = load_experiment(ROOT / "experiments" / "quick.toml")
    names = [s.name for s in exp.shapes]
    assert names[0] == "distinct" and "pipelined" in names
    assert exp.head_memo == (False,) and exp.fold_runs == (False,)
    d = next(s for s in exp.shapes if s.name == "distinct")
    p = next(s for s in exp.shapes if s.name == "pipelined")
    assert (d.connections, d.pipeline) == (p.connections, p.pipeline)   # only the requests differ
    for name in ("all_stacks.toml", "server_matrix.toml"):
        assert "distinct" in [s.name for s in load_experiment(ROOT / "experiments" / name).shapes]


def test_summary_says_what_identical_requests_save_each_server():
    rows = []
    for shape, cpu in (("distinct", {"ceiling": 0.1, "python/python/python": 6.7, "go": 20.0}),
                       ("pipelined", {"ceiling": 0.1, "python/python/python": 1.0, "go": 20.0})):
        for server, c in cpu.items():
            kind = {"ceiling": "ceiling", "go": "peer"}.get(server, "stack")
            rows += [_row(server, kind, 1000.0, i, shape=shape, fold_runs=False)
                     for i in (1, 2, 3)]
            for r in rows[-3:]:
                r["cpu_us_per_req"] = c
    rows.append(dict(batch_id="b1", experiment="e", shape="distinct", server="c/c/c",
                     server_kind="stack", run=0, status="skipped", note="loop 'c' unavailable"))
    s = summarize(to_frame(rows))
    saves = s.set_index(["shape", "server"])["identical_saves"]
    assert saves[("distinct", "python/python/python")] == pytest.approx(6.7)
    assert saves[("distinct", "go")] == pytest.approx(1.0)
    assert math.isnan(saves[("pipelined", "python/python/python")])
    text = format_summary(s)
    distinct, pipelined = text.split("shape=pipelined")
    assert "identical saves" in distinct and "identical saves" not in pipelined
    line = next(ln for ln in distinct.splitlines() if ln.startswith("python/python/python"))
    assert "x6.7" in line
    assert next(ln for ln in distinct.splitlines() if ln.startswith("go ")).count("x1.0") == 1
    assert "identical saves = CPU-us/req here / the same server's on pipelined" in distinct


def test_rows_older_than_fold_runs_read_as_false(tmp_path):
    from kourier_lab.bench.results import load_batch, load_results
    old = to_frame([_row("c/c/c", "stack", 10.0, 1)]).drop(columns=["fold_runs"])
    (tmp_path / "b0").mkdir()
    old.to_parquet(tmp_path / "b0" / "rows.parquet", index=False)
    new = to_frame([_row("c/c/c+fold", "stack", 20.0, 1, fold_runs=True)])
    (tmp_path / "b1").mkdir()
    new.to_parquet(tmp_path / "b1" / "rows.parquet", index=False)
    assert load_batch(tmp_path / "b0")["fold_runs"].tolist() == [False]
    both = load_results(tmp_path).set_index("server")["fold_runs"]
    assert both.to_dict() == {"c/c/c": False, "c/c/c+fold": True}
    s = summarize(load_results(tmp_path)).set_index("server")
    assert not s.loc["c/c/c", "fold_runs"] and s.loc["c/c/c+fold", "fold_runs"]
    assert "run folding ON" in format_summary(summarize(load_results(tmp_path)))


def test_fold_runs_override_on_the_command_line():
    from kourier_lab.cli import build_parser
    args = build_parser().parse_args(["bench", "experiments/quick.toml", "--fold-runs", "both"])
    assert args.fold_runs == "both"
