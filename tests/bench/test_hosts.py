"""[hosts] without a network: the table, the merge, the core warning, the Ryzen profile."""
import math

import numpy as np
import pytest

from kourier_lab.bench.experiment import split as split_mod
from kourier_lab.bench.hosts.hosts_table import parse_host
from kourier_lab.bench.hosts.remote import (distribution_figures, hdr_encoded, host_columns,
                                      merge_distributions, merge_wrk_clients,
                                      shared_cores_warning)
from kourier_lab.bench.experiment.files import SpecError, parse_experiment


def _exp(hosts, **extra):
    return parse_experiment({"stacks": ["c/c/c"], "hosts": hosts, **extra}, "x.toml")


def test_no_hosts_table_means_this_machine():
    assert parse_experiment({"stacks": ["c/c/c"]}, "x.toml").hosts is None


def test_hosts_table_parsed():
    exp = _exp({"server": "ssh://bench@10.0.0.1:2222", "clients": ["ssh://root@c1", "local"],
                "identity": "~/.ssh/lab", "known_hosts": "off"})
    (pair,) = exp.hosts.pairs
    assert pair.server.hostname == "10.0.0.1" and pair.server.port == 2222
    assert pair.server.username == "bench" and pair.address == "10.0.0.1"
    assert [c.label for c in pair.clients] == ["c1", "local"]
    assert exp.hosts.known_hosts is None and exp.hosts.prepare == "check"
    assert not exp.hosts.sweep
    two = _exp({"pairs": [{"server": "ssh://a", "clients": ["ssh://b"]},
                          {"server": "ssh://c", "clients": ["ssh://d"], "address": "192.0.2.7"}]})
    assert two.hosts.sweep and two.hosts.pairs[1].address == "192.0.2.7"


@pytest.mark.parametrize("hosts, message", [
    ({"server": "ssh://a"}, "needs both server"),
    ({"server": "http://a", "clients": ["ssh://b"]}, "is not ssh://user@host"),
    ({"server": "ssh://a:99999", "clients": ["ssh://b"]}, "bad port"),
    ({"server": "ssh://a", "clients": []}, "non-empty list"),
    ({"server": "ssh://a", "clients": ["ssh://b", "ssh://b"]}, "names one host twice"),
    ({"server": "ssh://a", "clients": ["ssh://b"], "prepare": "maybe"}, "prepare must be"),
    ({"server": "ssh://a", "clients": ["ssh://b"], "colour": 1}, "unknown key 'colour'"),
    ({"server": "ssh://a", "clients": ["ssh://b"], "pairs": []}, "either server/clients or"),
    ("ssh://a", "must be a table"),
])
def test_bad_hosts_tables_are_one_line(hosts, message):
    with pytest.raises(SpecError, match=message) as e:
        _exp(hosts)
    assert "\n" not in str(e.value) and str(e.value).startswith("x.toml: [hosts]")


def test_local_only_shapes_and_tools_refused_with_hosts():
    with pytest.raises(SpecError, match="rate and connections shapes run on this machine"):
        _exp({"server": "ssh://a", "clients": ["ssh://b"]}, shapes=["rate"])
    with pytest.raises(SpecError, match="with \\[hosts\\] the load tool is wrk"):
        _exp({"server": "ssh://a", "clients": ["ssh://b"]}, load_tool="h2load")


def test_parse_host_forms():
    assert parse_host("local").local
    h = parse_host("ssh://u%40x@[::1]:23")
    assert (h.hostname, h.port, h.username) == ("::1", 23, "u@x")


def test_merge_is_of_distributions_not_percentiles():
    # client A: 90 fast requests; client B: 10 slow ones.  The merged p50 is A's,
    # the merged p99 B's; an average of the two clients' p50s (1050 us) is neither.
    a = np.array([[100, 90]])
    b = np.array([[2000, 10]])
    merged = merge_distributions([a, b])
    assert merged.tolist() == [[100, 90], [2000, 10]]
    fig = distribution_figures(merged)
    assert fig["latency_p50_ms"] == 0.1 and fig["latency_p90_ms"] == 0.1
    assert fig["latency_p99_ms"] == 2.0 and fig["latency_max_ms"] == 2.0
    assert fig["latency_samples"] == 100 and fig["latency_p999_ms"] == 2.0
    assert fig["latency_avg_ms"] == pytest.approx((100 * 90 + 2000 * 10) / 100 / 1e3)
    # equal values from two clients add their counts
    assert merge_distributions([np.array([[5, 1], [7, 2]]), np.array([[7, 3]])]).tolist() == \
        [[5, 1], [7, 5]]
    assert math.isnan(distribution_figures(merge_distributions([]))["latency_p50_ms"])


def test_merged_histogram_round_trips_through_hdrhistogram():
    hdrh = pytest.importorskip("hdrh.histogram")
    dist = np.array([[100, 90], [2000, 10]])
    decoded = hdrh.HdrHistogram.decode(hdr_encoded(dist))
    assert decoded.get_total_count() == 100
    assert decoded.get_value_at_percentile(99) == pytest.approx(2000, rel=1e-3)


def test_merge_sums_requests_and_rates():
    c1 = {"requests": 1000, "req_per_s": 500.0, "errors_socket": 1, "wrk_cpu_s": 0.5,
          "wrk_duration_s": 2.0}
    c2 = {"requests": 3000, "req_per_s": 1500.0, "errors_socket": 0, "wrk_cpu_s": 0.7,
          "wrk_duration_s": 2.01}
    m = merge_wrk_clients([c1, c2], [np.array([[10, 5]]), np.array([[30, 5]])])
    assert m["requests"] == 4000 and m["req_per_s"] == 2000.0 and m["errors_socket"] == 1
    assert m["wrk_cpu_s"] == pytest.approx(1.2) and m["wrk_duration_s"] == 2.01
    assert m["latency_p50_ms"] == 0.01 and m["latency_samples"] == 10


def _info(boot, siblings):
    """A host whose CPU i sits on physical core siblings[i]."""
    return {"boot_id": boot, "cpus": {str(c): {"core": f"0:{core}", "siblings": [c]}
                                      for c, core in enumerate(siblings)}}


def test_shared_core_warning():
    # a 12-thread box numbered like a Ryzen: CPU c and c+6 are one core's two threads
    ryzen = _info("box", [c % 6 for c in range(12)])
    warn = shared_cores_warning(ryzen, [0, 1, 2, 3, 4, 5], [("client", ryzen, [6, 7, 8, 9, 10, 11])])
    assert "shares physical cores" in warn and "core 0:0: server 0 / client 6" in warn
    # on separate machines nothing is shared, whatever the CPU numbers
    other = _info("other-box", [c % 6 for c in range(12)])
    assert shared_cores_warning(ryzen, [0, 1, 2], [("client", other, [0, 1, 2])]) == ""
    # same machine, separate cores: no warning; same logical CPU: said so
    flat = _info("box", list(range(4)))
    assert shared_cores_warning(flat, [0, 1], [("c", flat, [2, 3])]) == ""
    assert "shares logical CPU(s) 1" in shared_cores_warning(flat, [0, 1], [("c", flat, [1, 2])])


def test_host_columns_name_nic_and_siblings():
    info = {"hostname": "h", "cpu_model": "X", "logical_cpus": 4, "kernel": "6.1",
            "cpus": {"0": {"siblings": [0, 2], "governor": "performance"},
                     "1": {"siblings": [1, 3], "governor": "performance"}},
            "nics": [{"name": "eth1", "speed_mbps": 10000, "operstate": "up",
                      "addresses": ["192.0.2.5"], "holds_address": True},
                     {"name": "eth0", "speed_mbps": None, "operstate": "up",
                      "addresses": ["198.51.100.1"], "holds_address": False}]}
    cols = host_columns("server_host", info, [0, 1], "192.0.2.5")
    assert cols["server_host_smt_siblings"] == "0:0,2 1:1,3"
    assert cols["server_host_governor"] == "performance"
    assert cols["server_host_nic"] == "eth1 10000 Mb/s"


@pytest.mark.parametrize("logical, unscaled", [(12, True), (16, True), (8, False), (2, False)])
def test_ryzen_profile_unscaled_where_12_logical_cpus_exist(monkeypatch, logical, unscaled):
    monkeypatch.setattr(split_mod, "available_cpus", lambda: list(range(logical)))
    s = split_mod.plan_split("ryzen-5-1600")
    if unscaled:
        assert s.server_cpus == [0, 1, 2, 3, 4, 5] and s.client_cpus == [6, 7, 8, 9, 10, 11]
        assert s.note == "" and s.workers == 6 and s.wrk_threads == 6
    else:
        assert "scaled down" in s.note and len(s.server_cpus) + len(s.client_cpus) == logical
    exp = parse_experiment({"profile": "ryzen-5-1600", "stacks": ["c/c/c"]}, "r.toml")
    (shape,) = exp.shapes
    assert (shape.connections, shape.pipeline, shape.duration_s) == (512, 256, 15)


def test_local_hosts_run_through_the_same_path(tmp_path):
    """server = clients = "local": the [hosts] path on one machine (no SSH), one short run."""
    import sys
    from kourier_lab.paths import repo_root
    from kourier_lab.bench.run.batch import run_experiment
    exp = parse_experiment({
        "name": "hosts_local", "stacks": [], "shapes": ["keepalive"], "repetitions": 1,
        "duration": 1, "warmup": 0, "shape": {"keepalive": {"connections": 4}},
        "hosts": {"server": "local", "clients": ["local"], "workdir": str(repo_root()),
                  "python": sys.executable}}, "local.toml")
    df = run_experiment(exp, out=tmp_path, progress=False, summary=False, echo=lambda s: None)
    (row,) = df.to_dict("records")
    assert row["status"] == "ok", row["note"]
    assert row["server"] == "ceiling" and row["host_pair"] == "local<-local"
    assert row["wrk_url"].startswith("http://127.0.0.1:") and row["requests"] > 0
    assert row["latency_samples"] > 0 and row["server_cpu_s"] > 0
    assert row["server_cpus"] != row["client_cpus"]
    assert isinstance(row["shared_cores_warning"], str)


def test_cpus_option_refused_with_hosts(tmp_path):
    from kourier_lab.bench.hosts.remote import RemoteError
    from kourier_lab.bench.run.batch import run_experiment
    exp = _exp({"server": "local", "clients": ["local"]})
    with pytest.raises(RemoteError, match="--cpus splits this machine's CPUs"):
        run_experiment(exp, out=tmp_path, cpus=[0], progress=False)
