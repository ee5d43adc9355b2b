"""The readable forms of the survey's results (compliance/survey.py) on fixture rows."""
import pandas as pd
import pytest

from kourier_lab.compliance import survey


def _cases():
    rows = []
    for t in ("stack a", "stack b", "peer go"):
        for case, group in (("te-cl", "smuggling"), ("bare-lf", "line ends"), ("ok-get", "valid")):
            rows.append(dict(kind="peer" if t.startswith("peer") else "stack", target=t, case=case,
                             group=group, passed=not (t == "peer go" and case != "ok-get")))
    return pd.DataFrame(rows)


def test_strict_matrix_drops_all_true_rows_and_columns():
    m = survey.strict_matrix(_cases())
    assert list(m.columns) == ["peer go"]                   # the stacks passed everything
    assert sorted(c for _, c in m.index) == ["bare-lf", "te-cl"]


def test_failures_by_case_and_target():
    by_case = survey.strict_failures_by_case(_cases())
    assert list(by_case["case"]) == ["bare-lf", "te-cl"] or list(by_case["case"]) == ["te-cl", "bare-lf"]
    assert set(by_case["failed_by"]) == {"peer go"} and set(by_case["targets"]) == {3}
    fails = [dict(target="peer go", case="te-cl"), dict(target="peer go", case="bare-lf"),
             dict(target="stack a", case="x")]
    by_target = survey.failures_by_target(fails)
    assert list(by_target["target"]) == ["peer go", "stack a"]
    assert by_target.loc[0, "failed"] == 2 and by_target.loc[0, "cases"] == "te-cl, bare-lf"


def test_full_suite_estimate_weights_categories_by_published_size():
    # 100 % on a whole category of 175, 50 % on a 1,000-request sample of 61,692
    cats = pd.DataFrame([
        dict(kind="peer", target="go", category="path", published_size=175, requests=175,
             detected=175),
        dict(kind="peer", target="go", category="pct_path", published_size=61692, requests=1000,
             detected=500)])
    (row,) = survey.full_suite_estimates(cats).to_dict("records")
    assert row["measured_score"] == pytest.approx(100 * 675 / 1175)        # sample-weighted: 57.4
    assert row["estimated_full_score"] == pytest.approx(100 * (175 + 0.5 * 61692) / 61867)  # 50.1
    assert row["standard_error"] == pytest.approx(100 * 61692 / 61867 * (0.25 / 1000) ** 0.5)
    assert row["sampled"] == "pct_path"


def test_estimates_beside_published_reads_a_sample_as_an_estimate():
    cats = pd.DataFrame([
        dict(kind="peer", target="peer go", category="path", published_size=175, requests=175,
             detected=175),
        dict(kind="peer", target="peer go", category="pct_path", published_size=61692,
             requests=1000, detected=630),
        dict(kind="stack", target="kourier_lab c/c/c", category="path", published_size=175,
             requests=175, detected=175)])
    (row,) = survey.estimates_beside_published(cats).to_dict("records")   # stacks: no published
    assert row["target"] == "peer go" and row["published"] == 63.1
    assert "not comparable" in row["reading"] and "agrees with" in row["reading"]
    whole = cats[cats["category"] == "path"]
    (row,) = survey.estimates_beside_published(whole).to_dict("records")
    assert row["reading"].startswith("whole suite run")


def test_score_plot_keeps_its_legend_off_the_bars():
    from kourier_lab import style
    scores = pd.DataFrame([dict(kind="peer", target="peer go", suite="published", score=59.2),
                           dict(kind="peer", target="peer go", suite="strict", score=82.7)])
    ax = survey.plot_scores(scores, title="t")
    assert style.legend_overlaps(ax.figure) == []
