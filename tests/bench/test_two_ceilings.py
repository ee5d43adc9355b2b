"""A batch with both ceilings (`ceilings = ["epoll", "uring"]`): each row's
ratio is to the ceiling of its own kernel API, the summary names it, and the
ceiling check and its sentences handle both (bench/results/summary.py,
findings.py, experiment/targets.py and files.py)."""
import pytest

from kourier_lab.bench.experiment import targets
from kourier_lab.bench.experiment.files import SpecError, parse_experiment
from kourier_lab.bench.results import findings, summarize, to_frame

from test_findings import _rows  # noqa: E402  (tests/bench is on the path under pytest)


def _frame():
    return to_frame(_rows("ceiling", "ceiling", 2.0e6, 0.10, 0.5, 0.99)
                    + _rows("ceiling-uring", "ceiling", 2.2e6, 0.08, 0.5, 0.99)
                    + _rows("c/c/c", "stack", 1.8e6, 0.20, 0.6, 0.95)
                    + _rows("uring/c/c", "stack", 1.9e6, 0.16, 0.6, 0.95)
                    + _rows("uring/c/c~no-multishot", "stack", 1.1e6, 0.30, 0.9, 0.6))


def test_each_row_is_compared_to_the_ceiling_of_its_api():
    s = summarize(_frame()).set_index("server")
    assert s.loc["c/c/c", "ceiling"] == "ceiling"
    assert s.loc["uring/c/c", "ceiling"] == "ceiling-uring"
    assert s.loc["uring/c/c~no-multishot", "ceiling"] == "ceiling-uring"
    assert s.loc["c/c/c", "of_ceiling"] == pytest.approx(1.8 / 2.0, rel=0.02)
    assert s.loc["uring/c/c", "of_ceiling"] == pytest.approx(1.9 / 2.2, rel=0.02)


def test_a_batch_with_one_ceiling_compares_every_row_to_it():
    rows = [r for r in _frame().to_dict("records") if r["server"] != "ceiling-uring"]
    s = summarize(to_frame(rows)).set_index("server")
    assert s.loc["uring/c/c", "ceiling"] == "ceiling"
    assert s.loc["uring/c/c", "of_ceiling"] == pytest.approx(1.9 / 2.0, rel=0.02)


def test_ceiling_check_and_sentences_name_both_ceilings():
    s = summarize(_frame())
    check = findings.ceiling_check(s).set_index("server")
    assert check.loc["c/c/c", "ceiling"] == "ceiling"
    assert check.loc["uring/c/c", "ceiling"] == "ceiling-uring"
    assert check.loc["uring/c/c", "x_ceiling_cpu_per_req"] == pytest.approx(0.16 / 0.08)
    assert "ceiling-uring" not in check.index and "ceiling" not in check.index
    lines = findings.ceiling_sentences(s)
    assert len(lines) == 2 and any("ceiling-uring" in ln for ln in lines)


def test_experiment_ceilings_key_and_targets():
    base = {"stacks": ["c/c/c"], "shapes": ["keepalive"]}
    assert parse_experiment(dict(base)).ceilings == ("epoll",)
    assert parse_experiment(dict(base, ceilings=["uring"])).ceilings == ("epoll", "uring")
    with pytest.raises(SpecError, match="ceilings"):
        parse_experiment(dict(base, ceilings=["kqueue"]))
    names = [t.name for t in targets.expand_targets(["c/c/c"], [], ceilings=("epoll", "uring"))]
    assert names[:2] == ["ceiling", "ceiling-uring"]
    assert targets.ceiling_api("uring/c/c~fixed-files") == "uring"
    assert targets.ceiling_api("c/c/c") == "epoll" and targets.ceiling_api("hyper") == "epoll"


def test_uring_ceiling_is_skipped_with_the_reason_where_io_uring_cannot_run(monkeypatch):
    from kourier_lab.bench.experiment import ceiling
    monkeypatch.setattr(ceiling, "uring_unavailable", lambda: "io_uring is disabled (test)")
    t = targets.uring_ceiling()
    assert t.kind == "ceiling" and t.name == "ceiling-uring"
    assert "io_uring is disabled (test)" in t.skip_reason


def test_a_shape_at_several_connection_counts_gets_a_line_per_count():
    exp = parse_experiment({"stacks": ["c/c/c"], "shapes": ["keepalive", "pipelined"],
                            "shape": {"keepalive": {"connections": [64, 512]}}})
    assert [(s.name, s.connections) for s in exp.shapes] == [("keepalive", 64), ("keepalive", 512),
                                                             ("pipelined", 512)]
    assert [(s.name, s.connections) for s in exp.quickened().shapes] == [("keepalive", 64),
                                                                         ("pipelined", 512)]
    with pytest.raises(SpecError, match="connections"):
        parse_experiment({"stacks": ["c/c/c"], "shapes": ["keepalive"],
                          "shape": {"keepalive": {"connections": []}}})
    rows = []
    for n, scale in ((64, 1.0), (512, 2.0)):
        for r in _rows("ceiling", "ceiling", 2.0e6, 0.10 * scale, 0.5, 0.99) + \
                _rows("uring/c/c", "stack", 1.0e6, 0.16 * scale, 0.6, 0.95) + \
                _rows("ceiling-uring", "ceiling", 2.0e6, 0.08 * scale, 0.5, 0.99):
            r["connections"] = n
            rows.append(r)
    s = summarize(to_frame(rows))
    assert len(s) == 6 and sorted(set(s["connections"])) == [64, 512]
    u = s[s["server"] == "uring/c/c"].set_index("connections")
    assert u.loc[512, "cpu_us_per_req"] == pytest.approx(2 * u.loc[64, "cpu_us_per_req"])
    assert (u["ceiling"] == "ceiling-uring").all()
    check = findings.ceiling_check(s)
    assert len(check) == 2
    assert check["x_ceiling_cpu_per_req"].tolist() == pytest.approx([2.0, 2.0])
