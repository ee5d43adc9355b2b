"""The stress package: the many-connections load generator, the memory
experiment (spec, limits, rows, figures, CLI) and a short soak per native stack
(notebooks/06_memory.ipynb runs in tests/notebooks/).

Results and figures go to temporary directories, never into data/.
"""
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from kourier_lab.bench.experiment import SpecError
from kourier_lab.server.process import ServerProcess
from kourier_lab.stress.connections import (ConnectionLoad, percentiles_from_buckets,
                                            raised_limits, server_capacity, source_address,
                                            tree_fds)
from kourier_lab.stress.memory import load_memory_spec, parse_memory_spec, run_memory
from kourier_lab.stress.soak import flat, native_stacks, run_soak

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(300)
needs_wrk = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")


# --- pieces ----------------------------------------------------------------------------

def test_source_addresses_spread_over_127_8():
    assert source_address(0, 1000) == "127.0.0.2"
    assert source_address(999, 1000) == "127.0.0.2"
    assert source_address(1000, 1000) == "127.0.0.3"
    # 500 k connections need 500 addresses, all inside 127.0.0.0/8
    assert source_address(499_999, 1000) == "127.0.1.245"
    with pytest.raises(ValueError):
        source_address(1 << 40, 1000)


def test_latency_percentiles_from_merged_buckets():
    # 1..100 ms once each, in buckets 1 µs wide ending at each value
    buckets = {(ms * 1_000_000 - 1000, ms * 1_000_000): 1 for ms in range(1, 101)}
    p = percentiles_from_buckets(buckets)
    for pct, want in ((50, 50), (90, 90), (99, 99)):
        assert p[pct] == pytest.approx(want), (pct, p[pct])
    assert all(math.isnan(v) for v in percentiles_from_buckets({}).values())


def test_client_processes_are_the_load_generator_holding():
    """Each client process is native/loadgen.c --hold with its share and its
    first source address block; the Python load generator is gone."""
    load = ConnectionLoad(8080, 2500, rate=1000, duration=2, per_process=1000)
    assert load.shares == [834, 833, 833]
    cmd = load.command(834, 1000, binary="loadgen")
    assert cmd[:3] == ["loadgen", "http://127.0.0.1:8080/hello", "--hold"]
    for flag, value in (("-c", "834"), ("--first-index", "1000"), ("--per-address", "1000"),
                        ("--rate", "333.333"), ("-d", "2")):
        assert cmd[cmd.index(flag) + 1] == value
    assert not (ROOT / "kourier_lab" / "stress" / "loadgen.py").exists()


def test_flat_detects_climbing():
    assert flat([100] * 30, 0.1, 0)[0]
    assert flat([100 + (i % 3) for i in range(30)], 0.0, 4)[0]
    assert not flat([100 + 10 * i for i in range(30)], 0.1, 8)[0]      # a leak
    assert not flat([1, 2], 0.1, 0)[0]                                 # too few samples


def test_raised_limits_are_recorded():
    r = raised_limits()
    assert r["nofile_soft"] == r["nofile_hard"] or "RLIMIT_NOFILE" in r["raised"]
    assert "ip_local_port_range" in r["raised"]


# --- the load against a real server ----------------------------------------------------

def test_connection_load_holds_connections_over_several_processes():
    n = 300
    with ServerProcess("--max-connections", "1000", loop="c", parser="c", buffer="c") as srv:
        idle = sum(tree_fds(srv.pid).values())
        cap, why = server_capacity(srv.pid)
        assert 0 < cap and ("RLIMIT_NOFILE" in why or "unlimited" in why)
        with ConnectionLoad(srv.port, n, rate=600, duration=1.5, per_process=120) as load:
            connected = load.connect()
            assert connected["client_processes"] == 3
            assert connected["held"] == n and not connected["errors"]
            held_server = sum(tree_fds(srv.pid).values()) - idle
            assert held_server == n
            load.go()
            result = load.finish()
        assert result["held"] == n
        assert result["responses"] > 300 and result["statuses"] == {"200": result["responses"]}
        assert not result["errors"]
        assert 0 < result["latency_p50_ms"] <= result["latency_p99_ms"]
        # every client connection closed again: the server is back to its idle count
        import time
        deadline = time.monotonic() + 5
        while sum(tree_fds(srv.pid).values()) > idle and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sum(tree_fds(srv.pid).values()) <= idle


def test_connection_load_counts_a_server_at_its_limit():
    """Past --max-connections our server answers 503 and closes: the clients
    see those as rejected, and hold only what the server accepted."""
    with ServerProcess("--max-connections", "50", loop="python", parser="python",
                       buffer="python") as srv:
        with ConnectionLoad(srv.port, 120, rate=100, duration=0.5) as load:
            connected = load.connect()
            load.go()
            result = load.finish()
        assert connected["held"] <= 50
        assert connected["errors"].get("rejected_503", 0) + \
            connected["errors"].get("closed_by_server", 0) >= 70
        assert result["held"] <= 50


# --- the memory experiment -------------------------------------------------------------

def test_memory_spec_errors_are_one_clear_line(tmp_path):
    good = {"steps": [100], "stacks": ["c/c/c"]}
    parse_memory_spec(good)
    for bad, needle in (({**good, "steps": []}, "steps"),
                        ({**good, "steps": [0]}, "connection count"),
                        ({**good, "steps": ["lots"]}, "connection count"),
                        ({**good, "rate": -1}, "rate"),
                        ({**good, "bogus": 1}, "unknown key 'bogus'"),
                        ({"steps": [10]}, "nothing to measure"),
                        ({**good, "quick": {"steps": [1], "x": 2}}, "quick.x"),
                        ({**good, "profile": "nope"}, "profile")):
        with pytest.raises(SpecError, match=needle):
            parse_memory_spec(bad, "m.toml")
    p = tmp_path / "broken.toml"
    p.write_text("steps = [1,\n")
    with pytest.raises(SpecError, match="not valid TOML"):
        load_memory_spec(p)


def test_experiment_files_say_what_they_are(capsys):
    """A memory file handed to `bench` (and a bench file to `memory`) gets one
    line naming the command that runs it, by its `kind` key or, without one,
    by its keys."""
    from kourier_lab.bench.experiment import load_experiment, parse_experiment
    from kourier_lab.cli import main
    memory_file = str(ROOT / "experiments" / "memory.toml")
    with pytest.raises(SpecError, match=r"this is a memory experiment: run `kourier-lab memory .*memory.toml`"):
        load_experiment(memory_file)
    with pytest.raises(SpecError, match="this is a memory experiment"):
        parse_experiment({"steps": [100], "stacks": ["c/c/c"]}, "m.toml")     # no kind key
    with pytest.raises(SpecError, match=r"this is a bench experiment: run `kourier-lab bench .*quick.toml`"):
        load_memory_spec(ROOT / "experiments" / "quick.toml")
    with pytest.raises(SpecError, match="this is a bench experiment"):
        parse_memory_spec({"kind": "bench", "steps": [100], "stacks": ["c/c/c"]}, "m.toml")
    with pytest.raises(SpecError, match="kind must be one of"):
        parse_memory_spec({"kind": "memroy", "steps": [100], "stacks": ["c/c/c"]}, "m.toml")
    capsys.readouterr()
    assert main(["bench", memory_file]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "run `kourier-lab memory" in err[0]


def test_shipped_memory_experiment_goes_to_500k():
    spec = load_memory_spec(ROOT / "experiments" / "memory.toml")
    assert 500_000 in spec.steps and "max" in spec.steps
    assert "diagonal" in spec.stacks or "c/c/c" in spec.stacks
    q = spec.quickened()
    assert q.quick and max(s for s in q.steps if s != "max") <= 1000


def test_memory_run_rows_limits_and_figures(tmp_path):
    """A real (tiny) run: a measured step, and a step far past this machine's
    limits recorded as skipped with the limit that stopped it."""
    spec = parse_memory_spec({"name": "memtest", "steps": [100, 10 ** 9], "duration": 1,
                              "rate": 200, "settle": 0.1, "stacks": ["c/c/c", "no/such/stack"]},
                             "memtest.toml")
    df = run_memory(spec, out=tmp_path / "results", figures=tmp_path / "figures", echo=None)
    ok = df[df["status"] == "ok"]
    assert list(ok["server"]) == ["c/c/c"]
    r = ok.iloc[0]
    assert r["connections_held"] == 100 and r["connections"] == 100
    assert r["requests"] > 50 and r["errors_socket"] == 0 and r["non_2xx_3xx"] == 0
    # (100 idle connections of the C stack may cost less than a page: RSS can stay put)
    assert r["server_vmrss_kb"] >= r["idle_rss_kb"] > 0
    assert r["server_vmpeak_kb"] >= r["server_vmrss_kb"]
    assert r["rss_per_conn_bytes"] >= 0
    assert "RLIMIT_NOFILE" in r["limit"] or "file table" in r["limit"]
    far = df[(df["server"] == "c/c/c") & (df["step"] == str(10 ** 9))].iloc[0]
    assert far["status"] == "skipped" and far["limit_hit"]
    assert far["limit"] and "allows" in far["note"]
    missing = df[df["server"] == "no/such/stack"]
    assert set(missing["status"]) == {"skipped"}
    # rows on disk through the bench writer, readable by load_results
    from kourier_lab.bench import load_results
    back = load_results(tmp_path / "results", experiment="memtest")
    assert len(back) == len(df) and "rss_per_conn_bytes" in back.columns
    assert sorted(p.name for p in (tmp_path / "figures").glob("*.png")) == [
        "memtest_rss.png", "memtest_rss_per_conn.png", "memtest_vmpeak.png"]


def test_workers_for_the_open_files_cap():
    from kourier_lab.stress.memory import workers_for
    assert workers_for(500_000, 20_000) >= 26          # the post's step, with headroom
    assert workers_for(1000, 20_000) == 1
    assert workers_for(1000, 20_000, least=2) == 2
    assert workers_for(19_000, 20_000) == 2            # one process would be at its cap


def test_memory_step_over_two_workers_records_kernel_bytes(tmp_path):
    """The bounded version of the 500 k run: a step held by two worker
    processes, with the kernel's share measured beside the server's."""
    spec = parse_memory_spec({"name": "memworkers", "steps": [1500], "duration": 1, "rate": 300,
                              "settle": 0.1, "workers": 2, "stacks": ["c/c/c"]}, "m.toml")
    df = run_memory(spec, out=tmp_path / "results", echo=None)
    r = df.iloc[0]
    assert r["status"] == "ok", r["note"]
    assert r["workers"] == 2 and r["server_processes"] >= 3      # the supervisor and 2 workers
    assert r["connections_held"] == 1500 and r["requests"] > 100
    assert r["errors_socket"] == 0 and r["non_2xx_3xx"] == 0
    assert r["latency_p99_ms"] > 0
    assert r["kernel_slab_kb"] > 0 and r["kernel_tcp_mem_before_kb"] >= 0
    assert math.isfinite(r["slab_per_conn_bytes"]) and math.isfinite(r["hwm_per_conn_bytes"])
    assert r["baseline_rss_per_worker_kb"] > 0


def test_per_connection_table_puts_user_and_kernel_bytes_beside_the_post():
    from kourier_lab.bench.results import to_frame
    from kourier_lab.stress.memory import per_connection_table
    rows = [dict(server="c/c/c", status="ok", step=str(n), workers=w, connections_held=n,
                 rss_per_conn_bytes=100.0, hwm_per_conn_bytes=110.0, slab_per_conn_bytes=9000.0,
                 tcp_mem_per_conn_bytes=0.0, baseline_rss_per_worker_kb=30_000.0,
                 server_vmrss_kb=30_000 * w, server_vmpeak_kb=100_000 * w)
            for n, w in ((500_000, 33), (1000, 1))]
    rows.append(dict(server="c/c/c", status="skipped", step="10"))
    t = per_connection_table(to_frame(rows))
    m = t[t["source"] == "measured"]
    assert list(m["connections_held"]) == [1000, 500_000]          # skipped steps left out
    assert m.iloc[1]["vmpeak_per_conn_bytes"] == 3_300_000 * 1024 / 500_000
    pub = t[t["source"] != "measured"]
    assert len(pub) >= 3 and (pub["connections_held"] == 500_000).all()
    assert (pub["vmpeak_per_conn_bytes"] > 1000).all()


def test_memory_cli(tmp_path, capsys):
    from kourier_lab.cli import main
    spec = tmp_path / "m.toml"
    spec.write_text('steps = [50]\nduration = 1\nrate = 100\nsettle = 0.1\n'
                    'stacks = ["python/python/python"]\n')
    rc = main(["memory", str(spec), "--out", str(tmp_path / "r"), "--no-figures"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "python/python/python" in out and "B/conn" in out
    assert main(["memory", str(tmp_path / "missing.toml")]) == 2
    assert main(["soak", "--stacks", "no/such/stack"]) == 2


# --- soak ------------------------------------------------------------------------------

@needs_wrk
@pytest.mark.parametrize("stack", native_stacks() or ["c/c/c"])
def test_short_soak_rss_and_fds_stay_flat(stack, tmp_path):
    df = run_soak([stack], duration=10, out=tmp_path, figures=tmp_path, echo=None)
    r = df.iloc[0]
    assert r["status"] == "ok", r["note"]
    assert r["server_alive"]
    assert r["samples"] >= 9
    assert r["requests"] > 1000
    assert r["malformed_answered"] > 0 and not r["malformed_unexpected"], r["malformed_unexpected"]
    assert r["rss_flat"], (r["rss_first_third_max_kb"], r["rss_last_third_max_kb"])
    assert r["fds_flat"], (r["fds_first_third_max"], r["fds_last_third_max"])
    samples = pd.read_parquet(next(tmp_path.glob("*-soak/samples.parquet")))
    assert len(samples) == r["samples"] and (samples["fds"] > 0).all()
    assert (tmp_path / "soak_rss_fds.png").exists()


def test_multi_process_peers_are_peer_names():
    """A misspelt name here silently made a peer one-process (asyncio_httptools
    for asyncio-httptools: it stopped at the open-files cap instead of getting workers)."""
    from kourier_lab import peers
    from kourier_lab.stress.memory import MULTI_PROCESS_PEERS
    assert MULTI_PROCESS_PEERS <= set(peers.names())
