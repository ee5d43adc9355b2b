"""native/loadgen.c (`kourier-lab load`): against the ceiling every response is
checked and none is an error; against scripted bad servers every bad response is
counted by its kind and nothing hangs; the open loop keeps its schedule against
a server that delays every answer by a known time.  No assertion on speed."""
import json
import socket
import subprocess
import threading
import time

import pytest

from kourier_lab.bench.experiment.ceiling import ceiling_command
from kourier_lab.bench.experiment.corpora import ensure
from kourier_lab.bench.load.kourier import (KourierLoad, build_loadgen, load_for_command_line,
                                            parse_loadgen_output)
from kourier_lab.bench.run.verify import free_port
from kourier_lab.server.process import wait_ready

HOST = "127.0.0.1"
OK = (b"HTTP/1.1 200 OK\r\nServer: scripted\r\nContent-Type: text/plain\r\n"
      b"Content-Length: 12\r\n\r\nHello World!")


def run_load(port, *args, timeout=20, io="epoll"):
    cmd = [str(build_loadgen()), f"http://{HOST}:{port}/hello", "--json", "--io", io,
           *map(str, args)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["io"] == io
    return d, r.stdout


def uring_refusal():
    """The load generator's one line on why --io uring cannot run here, or None."""
    from kourier_lab.bench.load.kourier import uring_unavailable
    return uring_unavailable()


@pytest.fixture(params=["epoll", "uring"])
def io(request):
    """Both clients: every test that takes `io` runs on epoll and on io_uring."""
    if request.param == "uring":
        why = uring_refusal()
        if why:
            pytest.skip(why)
    return request.param


@pytest.fixture(scope="module")
def ceiling():
    port = free_port()
    proc = subprocess.Popen(ceiling_command(port, None, "default"))
    try:
        wait_ready(HOST, port, proc)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class ScriptedServer:
    """A server whose answer to each request (a count of CRLFCRLF) is `answer(n)`:
    bytes to send, or None to send nothing; `delay_s` holds every answer back
    that long after its request arrived (answers stay in order)."""

    def __init__(self, answer, delay_s=0.0, chunk=None, close_after=None):
        self.answer, self.delay_s, self.chunk, self.close_after = answer, delay_s, chunk, close_after
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self):
        self.sock.settimeout(0.1)
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self.threads.append(t)

    def _send(self, conn, data):
        if self.chunk:            # short writes: a few bytes at a time
            for i in range(0, len(data), self.chunk):
                conn.sendall(data[i:i + self.chunk])
                time.sleep(0.0002)
        else:
            conn.sendall(data)

    def _serve(self, conn):
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.settimeout(0.05)
        pending, count, tail = [], 0, b""
        try:
            while not self.stopping:
                try:
                    data = conn.recv(65536)
                    if not data:
                        return
                except socket.timeout:
                    data = b""
                now = time.monotonic()
                buf = tail + data
                n = buf.count(b"\r\n\r\n")
                tail = buf[buf.rfind(b"\r\n\r\n") + 4:] if n else buf
                for _ in range(n):
                    count += 1
                    pending.append((now + self.delay_s, self.answer(count)))
                now = time.monotonic()
                while pending and pending[0][0] <= now:
                    _, out = pending.pop(0)
                    if out is not None:
                        self._send(conn, out)
                if self.close_after and count >= self.close_after:
                    return
                if pending:
                    time.sleep(max(0.0, min(0.01, pending[0][0] - time.monotonic())))
        except OSError:
            return
        finally:
            conn.close()

    def stop(self):
        self.stopping = True
        self.sock.close()
        for t in self.threads:
            t.join(timeout=2)


@pytest.fixture
def scripted():
    servers = []

    def start(*args, **kw):
        s = ScriptedServer(*args, **kw)
        servers.append(s)
        return s
    yield start
    for s in servers:
        s.stop()


def no_errors(d):
    return {k: v for k, v in d["errors_by_kind"].items() if v} == {}


# ---------------------------------------------------------------------------
# Against the ceiling


def test_ceiling_closed_loop_every_response_checked(ceiling, io):
    d, text = run_load(ceiling, "-c", 4, "-d", 0.5, "--pipeline", 8, io=io)
    assert no_errors(d), d["messages"]
    assert d["responses"] > 0 and d["non_2xx_3xx"] == 0
    assert d["fast_path"] > 0                      # equal responses compared, not parsed
    assert d["latency_samples"] == d["responses"]  # one latency per response, no warm-up
    assert 0 < d["latency_p50_us"] <= d["latency_p99_us"] <= d["latency_max_us"]
    figures = parse_loadgen_output(text)
    from hdrh.histogram import HdrHistogram
    hist = HdrHistogram.decode(figures["latency_hdr"])
    assert hist.get_total_count() == d["latency_samples"]
    assert figures["load_tool"] == "kourier-lab" and figures["latency_per_batch"] is False


def test_ceiling_corpus_and_browser_headers(ceiling, io):
    d, _ = run_load(ceiling, "-c", 4, "-d", 0.3, "--pipeline", 16,
                    "--corpus", ensure("distinct"), io=io)
    assert no_errors(d) and d["responses"] > 0 and d["corpus_requests"] == 4096
    load = load_for_command_line(f"http://{HOST}:{ceiling}/hello", connections=2,
                                 duration_s=0.3, warmup_s=0.1, shape="browser", io=io)
    assert load.pipeline == 16 and any(h.startswith("User-Agent: ") for h in load.headers)
    r = subprocess.run(load.command(), capture_output=True, text=True, timeout=20)
    figures = parse_loadgen_output(r.stdout)
    assert figures["errors_total"] == 0 and figures["requests"] > 0
    assert figures["load_io"] == io


def test_many_sources_and_processes(ceiling, io):
    d, _ = run_load(ceiling, "-c", 8, "-t", 2, "--processes", 2, "--sources", 4, "-d", 0.3, io=io)
    assert no_errors(d), d["messages"]
    assert d["processes"] == 2 and d["responses"] > 0


def test_warmup_is_left_out(ceiling):
    d, _ = run_load(ceiling, "-c", 2, "-d", 0.3, "--warmup", 0.3)
    assert d["responses_total"] > d["responses"] > 0


# ---------------------------------------------------------------------------
# Scripted servers: every bad response counted by kind, nothing hangs


def test_short_writes_are_fine(scripted, io):
    s = scripted(lambda n: OK, chunk=7)
    d, _ = run_load(s.port, "-c", 2, "-d", 0.5, "--pipeline", 2, io=io)
    assert no_errors(d), d["messages"]
    assert d["responses"] > 0


def test_chunked_and_non_2xx(scripted, io):
    chunked = (b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\nHello\r\n7;x=1\r\n World!\r\n0\r\nTrailer: 1\r\n\r\n")
    s = scripted(lambda n: chunked if n % 2 else OK)
    d, _ = run_load(s.port, "-c", 2, "-d", 0.5, "--pipeline", 3, io=io)
    assert no_errors(d), d["messages"]
    assert 0 < d["non_2xx_3xx"] < d["responses"]


def write_corpus(path, requests):
    """A corpus file (bench/experiment/corpora.py's format) holding these requests."""
    with open(path, "wb") as f:
        f.write(b"kourier-corpus 1 test %d\n" % len(requests))
        for r in requests:
            f.write(b"%d\n" % len(r) + r)
    return path


def test_head_responses_have_no_body(scripted, io, tmp_path):
    """GET and HEAD alternate (one connection walks the corpus in order): the
    answer to a HEAD ends with its head although it says Content-Length: 12."""
    corpus = write_corpus(tmp_path / "head.corpus", [
        b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", b"HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n"])
    head_only = OK[:OK.index(b"\r\n\r\n") + 4]
    s = scripted(lambda n: OK if n % 2 else head_only)
    d, _ = run_load(s.port, "-c", 1, "-d", 0.5, "--pipeline", 2, "--corpus", corpus, io=io)
    assert no_errors(d), d["messages"]
    assert d["responses"] > 10
    # a body sent after a HEAD's answer is a stray byte, not the next response
    s2 = scripted(lambda n: OK)
    d, _ = run_load(s2.port, "-c", 1, "-d", 0.4, "--pipeline", 1, "--corpus", corpus,
                    "--timeout", 0.3, io=io)
    assert d["errors_by_kind"]["unexpected_bytes"] + d["errors_by_kind"]["status_line"] > 0


def test_interim_responses_are_skipped(scripted, io):
    interim = (b"HTTP/1.1 100 Continue\r\n\r\n"
               b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
    s = scripted(lambda n: interim + OK)
    d, text = run_load(s.port, "-c", 2, "-d", 0.5, "--pipeline", 3, io=io)
    assert no_errors(d), d["messages"]
    assert d["responses"] > 0 and d["non_2xx_3xx"] == 0
    assert d["interim_responses"] == 2 * d["responses_total"]
    assert parse_loadgen_output(text)["interim_responses"] == d["interim_responses"]
    s2 = scripted(lambda n: b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n")
    d, _ = run_load(s2.port, "-c", 1, "-d", 0.3, "--timeout", 0.2, io=io)
    assert d["errors_by_kind"]["status_line"] > 0 and "101" in d["messages"]["status_line"]


def test_chunked_bodies_larger_than_the_read_buffer(scripted, io):
    """A 1 MiB chunked body (64 KiB chunks and one of 300 KiB) streams through."""
    body = b"".join(b"%x\r\n" % n + b"a" * n + b"\r\n" for n in [65536] * 11 + [300000, 5])
    big = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body + b"0\r\nX-T: 1\r\n\r\n"
    s = scripted(lambda n: big)
    d, _ = run_load(s.port, "-c", 2, "-d", 0.5, "--pipeline", 2, "--timeout", 1, io=io)
    assert no_errors(d), d["messages"]
    assert d["responses"] > 0 and d["bytes_read"] >= d["responses"] * len(big)
    # a bad chunk after the first megabyte is still found
    s2 = scripted(lambda n: big[:-40] + b"zz\r\n")
    d, _ = run_load(s2.port, "-c", 1, "-d", 0.3, "--timeout", 0.2, io=io)
    assert d["errors_by_kind"]["chunked"] + d["errors_by_kind"]["timeout"] > 0


@pytest.mark.parametrize("answer, pipeline, kind", [
    # a Content-Length shorter than the body: pipelined, the rest reads as a
    # status line; one at a time, it comes with no request outstanding
    (lambda n: OK.replace(b"Content-Length: 12", b"Content-Length: 5"), 4, "status_line"),
    (lambda n: OK.replace(b"Content-Length: 12", b"Content-Length: 5"), 1, "unexpected_bytes"),
    # no framing at all
    (lambda n: OK.replace(b"Content-Length: 12\r\n", b""), 1, "framing"),
    # a stray byte after every response
    (lambda n: OK + b"X", 1, "unexpected_bytes"),
    # a bad chunk
    (lambda n: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 1, "chunked"),
    # not HTTP
    (lambda n: b"SSH-2.0-OpenSSH\r\n\r\n", 1, "status_line"),
])
def test_bad_responses_counted_by_kind(scripted, io, answer, pipeline, kind):
    s = scripted(answer)
    d, _ = run_load(s.port, "-c", 2, "-d", 0.4, "--timeout", 0.3, "--pipeline", pipeline, io=io)
    assert d["errors_by_kind"][kind] > 0, d
    assert "connection" in d["messages"][kind] and "(closed)" in d["messages"][kind]
    assert d["reconnects"] > 0


def test_missing_response_is_a_timeout(scripted, io):
    s = scripted(lambda n: None if n % 3 == 0 else OK)
    t0 = time.monotonic()
    d, _ = run_load(s.port, "-c", 2, "-d", 0.6, "--pipeline", 3, "--timeout", 0.2, io=io)
    assert time.monotonic() - t0 < 5
    assert d["errors_by_kind"]["timeout"] > 0 and "nothing received" in d["messages"]["timeout"]
    assert d["responses"] > 0


def test_stalled_server_does_not_hang(scripted, io):
    s = scripted(lambda n: None)
    t0 = time.monotonic()
    d, _ = run_load(s.port, "-c", 3, "-d", 0.5, "--timeout", 0.2, "--rate", 100, io=io)
    assert time.monotonic() - t0 < 5
    assert d["responses"] == 0 and d["errors_by_kind"]["timeout"] > 0
    assert d["latency_samples"] == 0 and d["latency_p50_us"] is None


def test_server_closing_midway(scripted, io):
    s = scripted(lambda n: OK, close_after=2)
    d, _ = run_load(s.port, "-c", 1, "-d", 0.4, "--pipeline", 4, io=io)
    assert d["errors_by_kind"]["closed"] > 0
    assert "closed the connection" in d["messages"]["closed"]


def test_nothing_listening(io):
    d, _ = run_load(free_port(), "-c", 2, "-d", 0.2, io=io)
    assert d["responses"] == 0 and d["errors_by_kind"]["connect"] > 0


# ---------------------------------------------------------------------------
# The open loop's schedule


def test_open_loop_latency_from_intended_time(scripted, io):
    delay = 0.02
    s = scripted(lambda n: OK, delay_s=delay)
    rate, duration = 400, 1.0
    d, _ = run_load(s.port, "-c", 4, "-d", duration, "--rate", rate, "--timeout", 1, io=io)
    assert no_errors(d), d["messages"]
    # every request of the window was sent, and answered (the drain waits for the last)
    assert d["requests"] == pytest.approx(rate * duration, rel=0.01)
    assert d["latency_samples"] == d["requests"]
    assert d["req_per_s"] == pytest.approx(rate, rel=0.05)
    # no answer can come sooner than the server's delay
    first_bucket_ns = d["latency_buckets_ns"][0][1]
    assert first_bucket_ns >= delay * 1e9 * 0.999
    assert d["latency_p50_us"] >= delay * 1e6


def test_open_loop_many_connections_keep_the_schedule(ceiling, io):
    """A thousand connections, each on its own timetable (the thread's heap): every
    intended request of the window is sent and answered, none twice, none dropped."""
    rate, duration = 20000, 1.0
    d, _ = run_load(ceiling, "-c", 1000, "-d", duration, "--rate", rate, "--timeout", 2,
                    "--warmup", 0.3, io=io)
    assert no_errors(d), d["messages"]
    assert d["requests"] == pytest.approx(rate * duration, rel=0.01)
    assert d["latency_samples"] == d["requests"]       # every one answered (the drain waits)


def test_open_loop_charges_a_stall_to_every_request_it_delayed(scripted, io):
    """A server that answers nothing for 200 ms then catches up: the requests
    intended during the stall queue on their connection (pipelined) and their
    latency counts from their intended times (no coordinated omission)."""
    t_start = []

    def answer(n):
        return OK

    stall = 0.2
    s = scripted(answer, delay_s=0.0)
    orig = s._serve

    def serve(conn):
        if not t_start:
            t_start.append(time.monotonic())
        time.sleep(stall)          # the first moments: nothing read, nothing answered
        orig(conn)
    s._serve = serve
    d, _ = run_load(s.port, "-c", 1, "-d", 0.6, "--rate", 200, "--timeout", 1, io=io)
    assert no_errors(d), d["messages"]
    assert d["latency_samples"] == d["requests"] == pytest.approx(120, abs=2)
    assert d["max_queue"] > 10                     # queued, not dropped
    # about a third of the requests were intended during the stall: p90 is short,
    # max is near the stall
    assert d["latency_max_us"] >= stall * 1e6 * 0.8
    assert d["latency_p50_us"] < stall * 1e6 / 2


# ---------------------------------------------------------------------------
# --hold: the memory steps' client


def test_hold_phases_on_stdin(ceiling):
    p = subprocess.Popen([str(build_loadgen()), f"http://{HOST}:{ceiling}/hello", "--hold",
                          "-c", "50", "--rate", "500", "-d", "0.4", "--per-address", "20"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        connected = json.loads(p.stdout.readline())
        assert connected["phase"] == "connected" and connected["held"] == 50
        assert connected["errors"] == {} and connected["stopped"] == ""
        p.stdin.write("go\n")
        p.stdin.flush()
        done = json.loads(p.stdout.readline())
        assert done["phase"] == "done" and done["held"] == 50 and done["errors"] == {}
        assert done["responses"] > 0 and done["statuses"] == {"200": done["responses"]}
        assert sum(n for _, _, n in done["latency_buckets_ns"]) == done["responses"]
        p.stdin.write("close\n")
        p.stdin.flush()
        assert p.wait(timeout=10) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_hold_ends_when_its_parent_goes(ceiling):
    """EOF on stdin before "go" (a parent that vanished): it closes and exits."""
    r = subprocess.run([str(build_loadgen()), f"http://{HOST}:{ceiling}/hello", "--hold",
                        "-c", "5", "-d", "1"], input="", capture_output=True, text=True,
                       timeout=20)
    assert r.returncode == 1 and json.loads(r.stdout)["phase"] == "connected"


# ---------------------------------------------------------------------------
# The command line


@pytest.mark.parametrize("url, kw, says", [
    ("http://10.1.2.3:80/", {}, "127.0.0.0/8"),
    ("https://127.0.0.1/", {}, "only http://"),
    ("http://127.0.0.1:8080/", {"connections": 0}, "-c and -t"),
    ("http://127.0.0.1:8080/", {"shape": "nope"}, "unknown shape"),
    ("http://127.0.0.1:8080/", {"shape": "distinct", "corpus": "x"}, "give one"),
    ("http://127.0.0.1:8080/", {"rate": -1}, "--rate"),
])
def test_bad_arguments_one_line(url, kw, says):
    with pytest.raises(ValueError, match=".*") as e:
        load_for_command_line(url, **kw)
    assert says in str(e.value) and "\n" not in str(e.value)


def test_uring_refused_in_one_line_without_liburing(tmp_path):
    """A build without liburing refuses --io uring with one line and exit 2."""
    from kourier_lab.bench.load import kourier
    from kourier_lab.bench.native_program import compile_native
    binary = compile_native("loadgen.c", "loadgen", kourier.CFLAGS, kourier.LIBS,
                            kourier.LoadgenError)
    r = subprocess.run([str(binary), "http://127.0.0.1:1/", "--io", "uring", "--json"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "no io_uring" in r.stderr
    r = subprocess.run([str(binary), "--io", "uring", "--probe-io"], capture_output=True,
                       text=True, timeout=20)
    assert r.returncode == 2 and "no io_uring" in r.stderr
    r = subprocess.run([str(binary), "http://127.0.0.1:1/", "--io", "kqueue"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 2 and "--io is epoll or uring" in r.stderr
    with pytest.raises(ValueError, match="--io"):
        load_for_command_line("http://127.0.0.1:8080/", io="kqueue")


def test_rows_record_the_client_io_and_old_files_read():
    import pandas as pd
    from kourier_lab.bench.load.kourier import default_io, uring_unavailable
    from kourier_lab.bench.results import store
    new = store.to_frame([{"load_tool": "kourier-lab", "load_io": "uring"},
                          {"load_tool": "wrk", "load_io": None}])
    assert list(new["load_io"].fillna("-")) == ["uring", "-"]
    old = pd.DataFrame({"load_tool": ["kourier-lab", "wrk", "h2load"]})   # before load_io
    old = store._older_files(old)
    assert list(old["load_io"].fillna("-")) == ["epoll", "-", "-"]
    assert default_io() == ("epoll" if uring_unavailable() else "uring")
    assert default_io(open_loop=True) == "epoll"
    open_loop = KourierLoad("http://127.0.0.1:1/x", 1, 1, 1, rate=100.0).command("loadgen")
    assert open_loop[open_loop.index("--io") + 1] == "epoll"
    load = KourierLoad("http://127.0.0.1:1/x", 1, 1, 1, io="uring")
    assert load.command("loadgen")[load.command("loadgen").index("--io") + 1] == "uring"


def test_cli_bad_argument_exit_2():
    from kourier_lab.cli import main
    assert main(["load", "http://192.168.0.1:80/", "-d", "1"]) == 2


def test_command_line_shape():
    load = KourierLoad("http://127.0.0.1:1/x", 2, 8, 3, pipeline=4, rate=1000.0, cpus=[1],
                       sources=16, timeout_s=1)
    cmd = load.command("loadgen")
    assert cmd[:2] == ["loadgen", "http://127.0.0.1:1/x"]
    for flag, value in (("-c", "8"), ("-t", "2"), ("-d", "3"), ("--rate", "1000"),
                        ("--cpus", "1"), ("--sources", "16"), ("--pipeline", "4")):
        assert cmd[cmd.index(flag) + 1] == value


# ---------------------------------------------------------------------------
# In experiments


def test_experiment_accepts_kourier_lab_for_every_shape():
    from kourier_lab.bench.experiment.files import parse_experiment
    exp = parse_experiment({"shapes": ["distinct", "rate", "browser"]})       # the default
    assert [s.load_tool for s in exp.shapes] == ["kourier-lab"] * 3
    wrk = parse_experiment({"load_tool": "wrk", "shapes": ["pipelined", "rate"]})
    assert [s.load_tool for s in wrk.shapes] == ["wrk", "h2load"]   # wrk's rate falls back
    from kourier_lab.bench.experiment import load_experiment
    from kourier_lab.paths import repo_root
    post = load_experiment(repo_root() / "experiments" / "kourier_blog_2025.toml")
    assert {s.load_tool for s in post.shapes} == {"wrk"}               # the post's tool
    latency = load_experiment(repo_root() / "experiments" / "latency.toml")
    assert {s.load_tool for s in latency.shapes} == {"kourier-lab"}


def test_experiment_rows_under_kourier_lab(tmp_path):
    from kourier_lab.bench.experiment.files import parse_experiment
    from kourier_lab.bench.run import batch
    exp = parse_experiment({"name": "test_loadgen", "repetitions": 1, "duration": 1, "warmup": 0,
                            "pause": 0, "stacks": [], "load_tool": "kourier-lab",
                            "shapes": ["pipelined", "rate"],
                            "shape": {"pipelined": {"connections": 8, "pipeline": 16},
                                      "rate": {"connections": 4, "rates": [2000]}}})
    df = batch.run_experiment(exp, out=tmp_path, progress=False, echo=lambda s: None)
    rows = df.set_index("shape")
    for shape in ("pipelined", "rate"):
        r = rows.loc[shape]
        assert r["status"] == "ok", r["note"]
        assert r["load_tool"] == "kourier-lab" and r["errors_total"] == 0
        assert r["requests"] > 0 and r["cpu_us_per_req"] > 0 and r["client_cpu_util"] > 0
        assert r["latency_p99_ms"] >= r["latency_p50_ms"] > 0 and isinstance(r["latency_hdr"], str)
        assert r["bottleneck"] in ("server", "client", "both", "contention", "neither")
        assert not r["latency_per_batch"]
        assert r["load_io"] in ("epoll", "uring")
    assert rows.loc["rate", "load_io"] == "epoll"                  # the open loop's default
    assert rows.loc["rate", "offered_rate"] == 2000
    assert rows.loc["rate", "achieved_of_offered"] == pytest.approx(1, rel=0.05)


def test_an_experiment_chooses_the_client_interface(tmp_path):
    from kourier_lab.bench.experiment.files import SpecError, parse_experiment
    from kourier_lab.bench.run import batch
    exp = parse_experiment({"name": "test_load_io", "repetitions": 1, "duration": 1, "warmup": 0,
                            "pause": 0, "stacks": [], "load_io": "epoll", "shapes": ["pipelined"],
                            "shape": {"pipelined": {"connections": 4, "pipeline": 16}}})
    assert exp.load_io == "epoll"
    df = batch.run_experiment(exp, out=tmp_path, progress=False, echo=lambda s: None)
    assert list(df["status"]) == ["ok"] and list(df["load_io"]) == ["epoll"]   # the closed loop too
    with pytest.raises(SpecError, match="load_io must be epoll or uring, not 'kqueue'"):
        parse_experiment({"name": "x", "load_io": "kqueue"})


def test_bars_mark_runs_the_load_tool_limited():
    import pandas as pd
    from kourier_lab.bench.plots import throughput
    rows = []
    for server, kind, bottleneck in (("ceiling", "ceiling", "client"), ("c/c/c", "stack", "client"),
                                     ("python/python/python", "stack", "server")):
        for run in (1, 2):
            rows.append(dict(status="ok", req_per_s=1e6, cpu_us_per_req=0.5, shape="pipelined",
                             server=server, server_kind=kind, head_memo=False, fold_runs=False,
                             offered_rate=None, bottleneck=bottleneck, experiment="t",
                             batch_id="b", load_tool="wrk"))
    df = pd.DataFrame(rows)
    stats = throughput._per_server(df, "req_per_s").set_index("server")
    assert stats.loc["c/c/c", "tool_bound"] and not stats.loc["python/python/python", "tool_bound"]
    labels = [h.get_label() for h in throughput.key_handles(stats.reset_index())]
    assert any(label.startswith("load tool was the limit") for label in labels)
    fig = throughput.plot_throughput(df)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("load-tool-bound" in t for t in texts)
