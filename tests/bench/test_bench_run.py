"""Real, short wrk runs on loopback: the ceiling, verification, sampling, rows on disk."""
import os
import shutil
import socket
import subprocess
import sys
import time

import pandas as pd
import pytest

from kourier_lab.bench.experiment import ceiling
from kourier_lab.bench.run import batch as runner, measure
from kourier_lab.bench.results import load_results
from kourier_lab.sampler import TreeSampler
from kourier_lab.bench.experiment.files import parse_experiment
from kourier_lab.bench.experiment.split import plan_split
from kourier_lab.bench.run.verify import VerifyError, free_port, verify_server
from kourier_lab.server.process import wait_ready
from kourier_lab.bench.load.wrk import WrkError, WrkLoad



@pytest.fixture(autouse=True)
def _wrk_installed():
    # make setup installs wrk (Makefile APT_PACKAGES): its absence is a failure, not a skip
    assert shutil.which("wrk"), "wrk is not installed: run `make setup`"


@pytest.fixture
def ceiling_server():
    port = free_port()
    cpus = sorted(os.sched_getaffinity(0))[:1]
    proc = subprocess.Popen(ceiling.ceiling_command(port, cpus), start_new_session=True)
    try:
        wait_ready("127.0.0.1", port, proc, timeout=15)
        yield port, proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


def test_ceiling_answers_every_terminator_even_split_byte_by_byte(ceiling_server):
    port, _ = ceiling_server
    verify_server("127.0.0.1", port, pipeline=256)
    req = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n" * 3
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for b in req:                      # terminators split across reads
            s.send(bytes([b]))
            time.sleep(0.0005)
        # read until the third body: a byte count can be reached before the last
        # answer arrives (the responses carry Server and Date too)
        got = b""
        while got.count(b"Hello World!") < 3:
            chunk = s.recv(65536)
            assert chunk
            got += chunk
        assert got.count(b"HTTP/1.1 200 OK\r\n") == 3


def test_short_wrk_run_against_the_ceiling_has_every_figure(ceiling_server, tmp_path):
    port, proc = ceiling_server
    cpus = sorted(os.sched_getaffinity(0))
    client = cpus[-1:]
    load = WrkLoad(f"http://127.0.0.1:{port}/hello", threads=1, connections=8, duration_s=1,
                   pipeline=16)
    raw = tmp_path / "wrk.txt"
    f = measure.run_wrk(load, client, proc.pid, raw)
    assert raw.read_text() == f["wrk_raw"] and "Requests/sec" in f["wrk_raw"]
    assert f["requests"] > 1000 and f["req_per_s"] > 0
    assert f["errors_socket"] == 0 and f["non_2xx_3xx"] == 0
    assert f["server_cpu_s"] > 0 and f["cpu_us_per_req"] > 0
    assert f["server_processes"] == 2            # the ceiling's parent + one worker
    assert f["server_vmhwm_kb"] > 0 and f["server_vmpeak_kb"] >= f["server_vmhwm_kb"]
    assert 0 < f["wrk_cpu_s"] and 0 < f["wrk_cpu_util"]
    assert "pipeline.lua" in f["wrk_command"] and f["wrk_command"].endswith("-- 16")


def test_wrk_failure_is_an_error(tmp_path):
    port = free_port()                            # nothing listens there
    load = WrkLoad(f"http://127.0.0.1:{port}/", threads=1, connections=1, duration_s=1)
    with pytest.raises(WrkError, match="unable to connect"):
        measure.run_wrk(load, sorted(os.sched_getaffinity(0)), None, None)


def test_verification_catches_wrong_answers(tmp_path):
    (tmp_path / "hello").write_text("Hello World!")   # 200 with the right body, over HTTP/1.0
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                             "127.0.0.1"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_ready("127.0.0.1", port, proc, timeout=15, path="/hello")
        with pytest.raises(VerifyError, match="status 404"):
            verify_server("127.0.0.1", port, path="/missing", pipeline=2)
        # http.server closes after one response: a pipelined batch cannot be answered.
        with pytest.raises(VerifyError, match="pipelined batch of 4"):
            verify_server("127.0.0.1", port, path="/hello", pipeline=4)
    finally:
        proc.terminate()
        proc.wait(10)


def test_sampler_sums_the_whole_tree():
    # Two processes (parent + child) each burn 0.3 s of their own CPU time once
    # told to: a fixed amount of work, whatever else the machine is doing.
    code = ("import os, sys, time\n"
            "pid = os.fork()\n"
            "os.read(0, 1)\n"
            "while time.process_time() < 0.3: pass\n"
            "if pid: os.waitpid(pid, 0)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE)
    s = TreeSampler(proc.pid)
    deadline = time.monotonic() + 10
    while len(s.pids()) < 2 and time.monotonic() < deadline:    # both exist before we start
        s.start()
        time.sleep(0.05)
    proc.stdin.write(b"go")
    proc.stdin.close()
    while proc.poll() is None:
        s.sample()
        time.sleep(0.05)
    u = s.finish()
    assert u.processes == 2
    # Each burned >= 0.3 s inside the window; the child's last few ticks may
    # fall after our last sample of it (it exits before the parent).
    assert 0.45 <= u.cpu_s < 5
    assert u.vmhwm_kb > 0 and u.vmpeak_kb >= u.vmhwm_kb


def _tiny(stacks=(), peers=()):
    # wrk's rows (this file is about the wrk path; tests/bench/test_loadgen.py has the default tool's)
    return parse_experiment({"name": "test_tiny", "repetitions": 2, "duration": 1, "warmup": 0,
                             "load_tool": "wrk",
                             "pause": 0, "stacks": list(stacks), "peers": list(peers),
                             "shapes": ["pipelined"],
                             "shape": {"pipelined": {"connections": 8, "pipeline": 16}}})


def test_experiment_rows_on_disk(tmp_path):
    df = runner.run_experiment(_tiny(stacks=["nosuch/python/python"], peers=["nosuchpeer"]),
                               out=tmp_path, progress=False, echo=lambda s: None)
    ok = df[df["status"] == "ok"]
    assert list(ok["server"]) == ["ceiling", "ceiling"] and list(ok["run"]) == [1, 2]
    skipped = df[df["status"] == "skipped"].set_index("server")
    assert "no loop named 'nosuch'" in skipped.loc["nosuch/python/python", "note"]
    assert "nosuchpeer" in skipped.loc["nosuchpeer", "note"]
    row = ok.iloc[0]
    split = plan_split("auto")
    assert row["server_cpus"] == ",".join(map(str, split.server_cpus))
    assert row["workers"] == split.workers and row["connections"] == 8 and row["pipeline"] == 16
    for col in ("timestamp", "machine_cpu_model", "machine_kernel", "python_version",
                "git_commit", "experiment", "wrk_command", "raw_path"):
        assert isinstance(row[col], str) and row[col], col
    for col in ("req_per_s", "cpu_us_per_req", "server_cpu_util", "wrk_cpu_util",
                "server_vmhwm_kb", "server_vmpeak_kb", "latency_avg_ms"):
        assert row[col] > 0, col
    assert open(row["raw_path"]).read() == row["wrk_raw"]
    again = load_results(tmp_path)
    assert len(again) == len(df) and set(again["batch_id"]) == {df.attrs["batch_id"]}


def test_python_stack_runs_under_wrk(tmp_path):
    df = runner.run_experiment(_tiny(stacks=["python/python/python"]), out=tmp_path,
                               progress=False, echo=lambda s: None)
    stack = df[df["server"] == "python/python/python"]
    assert (stack["status"] == "ok").all(), stack["note"].tolist()
    assert (stack["req_per_s"] > 0).all() and (stack["cpu_us_per_req"] > 0).all()
    assert (stack["errors_socket"] == 0).all() and (stack["non_2xx_3xx"] == 0).all()


def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-c", "import sys; from kourier_lab.cli import main; "
                           "sys.exit(main())", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_bench_and_report_commands_leave_rows_and_figures(tmp_path):
    spec = tmp_path / "tiny.toml"
    spec.write_text('name = "cli_tiny"\nrepetitions = 1\nduration = 1\nwarmup = 0\n'
                    'load_tool = "wrk"\n'
                    'stacks = ["nosuch/python/python"]\nshapes = ["keepalive"]\n'
                    '[shape.keepalive]\nconnections = 4\n')
    out, figs = tmp_path / "results", tmp_path / "figures"
    r = _cli("bench", str(spec), "--quick", "--out", str(out), "--figures", str(figs),
             "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "shape=keepalive" in r.stdout and "ceiling" in r.stdout and "SKIPPED" in r.stdout
    assert len(list(out.glob("*/rows.parquet"))) == 1
    assert len(list(out.glob("*/wrk/ceiling-keepalive-run1.txt"))) == 1
    pngs = sorted(p.name for p in figs.glob("*.png"))
    assert pngs == ["cli_tiny_cpu_per_request.png", "cli_tiny_latency.png",
                    "cli_tiny_ratios.png", "cli_tiny_throughput.png"]
    r = _cli("report", "--results", str(out), "--no-figures")
    assert r.returncode == 0 and "ceiling" in r.stdout, r.stderr
    r = _cli("report", "--results", str(tmp_path / "empty"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no recorded runs" in r.stderr


# ---------------------------------------------------------------------------
# Corpus shapes: wrk's writes through pipeline.lua's corpus mode


def test_wrk_sends_a_corpus_batch_of_different_requests_per_write(tmp_path):
    """A one-connection wrk against a socket that records each write's requests:
    every write holds `depth` consecutive corpus requests, all different, and
    successive writes move on through the file."""
    import threading
    from kourier_lab.bench.experiment import corpora
    depth = 16
    _, reqs = corpora.decode(corpora.corpus_path("real").read_bytes())
    index = {r: i for i, r in enumerate(reqs)}
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nHello World!"
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    batches, sent = [], [0]

    def serve():
        # wrk first connects once to test the address (wrk.resolve), then opens
        # its connection: serve every connection, record the ones that send
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve_one, args=(conn,), daemon=True).start()

    def serve_one(conn):
        buf = b""
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buf += data
                heads = buf.split(b"\r\n\r\n")
                buf = heads.pop()
                done = [h + b"\r\n\r\n" for h in heads]
                if done:
                    batches.append(done)
                    try:
                        conn.sendall(answer * len(done))
                    except OSError:
                        return
                    sent[0] += len(done)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    load = WrkLoad(f"http://127.0.0.1:{port}/hello", threads=1, connections=1, duration_s=1,
                   pipeline=depth, corpus=str(corpora.corpus_path("real")))
    f = measure.run_wrk(load, sorted(os.sched_getaffinity(0)), None, None)
    listener.shutdown(socket.SHUT_RDWR)          # wakes the accept
    listener.close()
    t.join(5)
    assert f["errors_socket"] == 0 and f["non_2xx_3xx"] == 0
    assert "-- 16 corpus data/corpora/real.corpus" in f["wrk_command"]
    # one response counted per request, never one per write
    assert depth * 4 <= f["requests"] <= sent[0]
    assert f["bytes_read"] == pytest.approx(f["requests"] * len(answer), rel=0.02)
    reqs_seen = [r for b in batches for r in b]
    assert all(r in index for r in reqs_seen)
    writes = [reqs_seen[i:i + depth] for i in range(0, depth * 4, depth)]
    for w in writes:
        assert len(set(w)) == depth                                   # all different
        first = index[w[0]]
        assert [index[r] for r in w] == [(first + k) % len(reqs) for k in range(depth)]
    assert len({w[0] for w in writes}) == len(writes)                 # and the writes move on


def test_corpus_shapes_run_end_to_end(tmp_path):
    """distinct against the ceiling and the python stack, api against the python
    stack with the demo app (its ceiling row skipped, saying why): rows carry the
    corpus, its hash and the mean request size."""
    exp = parse_experiment({"name": "test_corpus", "repetitions": 1, "duration": 1, "warmup": 0,
                            "pause": 0, "stacks": ["python/python/python"], "fold_runs": True,
                            "shapes": ["distinct", "api"],
                            "shape": {"distinct": {"connections": 4, "pipeline": 64},
                                      "api": {"connections": 4, "pipeline": 16}}})
    df = runner.run_experiment(exp, out=tmp_path, progress=False, echo=lambda s: None)
    rows = df.set_index(["server", "shape"])
    for key in (("ceiling", "distinct"), ("python/python/python+fold", "distinct"),
                ("python/python/python+fold", "api")):
        r = rows.loc[key]
        assert r["status"] == "ok", (key, r["note"])
        assert r["requests"] > 0 and r["errors_socket"] == 0 and r["non_2xx_3xx"] == 0, key
        assert r["corpus"] == key[1] and len(r["corpus_sha256"]) == 64
        assert r["mean_request_bytes"] > 40 and pd.isna(r["request_bytes"])
    assert rows.loc[("python/python/python+fold", "api"), "app"] == "demo"
    assert bool(rows.loc[("python/python/python+fold", "api"), "fold_runs"])
    assert not bool(rows.loc[("ceiling", "distinct"), "fold_runs"])
    skipped = rows.loc[("ceiling", "api")]
    assert skipped["status"] == "skipped" and "--app demo" in skipped["note"]


def test_connections_past_one_process_file_cap_get_more_workers(tmp_path, monkeypatch):
    """A shape whose connections one process cannot hold (the file cap is made
    small here) runs on a server started with enough workers sharing the server
    CPUs; the other counts keep the split's one per CPU; rows say which."""
    from kourier_lab.bench.run import servers
    split = plan_split("auto")
    monkeypatch.setattr(servers, "raise_fd_limit", lambda: 500)
    many = 600
    assert servers.connection_workers(split, many) == servers.workers_for(many, 500, split.workers) > 1
    exp = parse_experiment({"name": "test_workers", "repetitions": 1, "duration": 1, "warmup": 0,
                            "pause": 0, "stacks": ["c/c/c"], "peers": [], "load_tool": "kourier-lab",
                            "shapes": ["keepalive"],
                            "shape": {"keepalive": {"connections": [8, many], "pipeline": 1}}})
    df = runner.run_experiment(exp, out=tmp_path, progress=False, echo=lambda s: None)
    assert (df["status"] == "ok").all(), df["note"].tolist()
    for server, rows in df.groupby("server"):
        by = rows.set_index("connections")
        assert by.loc[8, "workers"] == split.workers
        assert by.loc[many, "workers"] == servers.workers_for(many, 500, split.workers)
        # the processes sampled: as many more as the extra workers
        assert by.loc[many, "server_processes"] - by.loc[8, "server_processes"] == \
            by.loc[many, "workers"] - split.workers, server
    logs = {p.name for p in (tmp_path / df.attrs["batch_id"] / "logs").iterdir()}
    assert f"c_c_c-{servers.workers_for(many, 500, split.workers)}workers.log" in logs, logs
