"""Notebook 05's side-by-side of two load tools, on fixture rows: a server both
tools saturate is compared, one a tool could not saturate is called the tool's."""
import pandas as pd

from kourier_lab.bench.notebooks.load_tools import side_by_side, side_by_side_lines


def _rows():
    rows = []
    # (server, kind, wrk req/s, wrk limit, lab req/s, lab limit)
    for server, kind, w, wl, k, kl in (("ceiling", "ceiling", 2.0e6, "client", 9.0e6, "client"),
                                       ("c/c/c", "stack", 1.9e6, "client", 4.8e6, "server"),
                                       ("hyper", "peer", 6.0e5, "server", 6.2e5, "server"),
                                       ("go", "peer", 1.0e5, "server", 1.2e5, "server")):
        for run in (1, 2, 3):
            common = dict(shape="distinct", server=server, server_kind=kind, status="ok", run=run,
                          offered_rate=None, head_memo=False, fold_runs=False)
            rows.append(dict(common, load_tool="wrk", req_per_s=w, cpu_us_per_req=1e6 / w / 2,
                             bottleneck=wl, wrk_cpu_s=2.0, requests=w * 5))
            rows.append(dict(common, load_tool="kourier-lab", req_per_s=k, cpu_us_per_req=1e6 / k / 2,
                             bottleneck=kl, loadgen_cpu_s=1.0, responses_total=k * 5))
    # a memo row never enters the comparison
    rows.append(dict(rows[0], server="c/c/c+memo", head_memo=True, req_per_s=9e9))
    return pd.DataFrame(rows)


def test_each_server_gets_a_verdict_naming_who_was_the_limit():
    t = side_by_side(_rows()).set_index("server")
    assert "c/c/c+memo" not in t.index
    assert t.loc["hyper", "verdict"] == "both server-bound: agree (+3.3% under kourier-lab)"
    assert t.loc["go", "verdict"].startswith("both server-bound: differ (+20.0%")
    assert t.loc["c/c/c", "verdict"].startswith("wrk the limit: its requests/s is the tool's")
    assert t.loc["ceiling", "verdict"].startswith("wrk and kourier-lab the limit")
    assert round(t.loc["c/c/c", "req_per_s ratio"], 3) == round(4.8 / 1.9, 3)
    # client CPU per response from each tool's own figures
    assert round(t.loc["hyper", "client_ns_per_response wrk"]) == round(2.0e9 / (6.0e5 * 5))
    assert round(t.loc["hyper", "client_ns_per_response kourier-lab"]) == round(1.0e9 / (6.2e5 * 5))


def test_the_summary_line_counts_agreement_and_cost():
    (line,) = side_by_side_lines(side_by_side(_rows()))
    assert line.startswith("distinct: both tools left the server saturated for 2 of 4 servers (1 within 5%)")
    assert "c/c/c (wrk)" in line and "client CPU per response" in line


def test_one_tool_only_says_so():
    one = _rows()
    assert side_by_side_lines(side_by_side(one[one["load_tool"] == "wrk"])) == [
        "one load tool only: nothing to put side by side"]
