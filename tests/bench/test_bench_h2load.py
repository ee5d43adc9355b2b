"""h2load: its report (outputs captured from real runs, tests/fixtures/h2load/), per-request
latency from its log (closed loop, and the open-loop schedule that undoes coordinated
omission), a real run against our server, and the latency figures."""
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kourier_lab.bench.load.h2load import (H2loadError, H2loadLoad, browser_headers,
                                           latency_from_log, parse_h2load_output, rate_sweep,
                                           shell_line)
from kourier_lab.bench.run.measure import run_h2load

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "h2load"
needs_h2load = pytest.mark.skipif(shutil.which("h2load") is None,
                                  reason="h2load is not installed (Debian: nghttp2-client)")


def load(name):
    return parse_h2load_output((FIXTURES / name).read_text())


# ---------------------------------------------------------------------------
# The report


def test_closed_loop_report_every_figure():
    r = load("closed_ceiling_pipelined.txt")
    assert r["requests"] == 330048 and r["requests_succeeded"] == 330048
    assert r["req_per_s"] == pytest.approx(165024.0)
    assert r["h2load_duration_s"] == pytest.approx(3.0)        # warm-up 1 s + 2 s measured
    assert r["bytes_read"] == 44556480
    assert r["non_2xx_3xx"] == 0 and r["errors_socket"] == 0 and r["errors_timeout"] == 0
    assert r["status_2xx"] == 330048
    assert r["h2load_request_min_ms"] == pytest.approx(0.309)
    assert r["h2load_request_max_ms"] == pytest.approx(13.09)
    assert r["h2load_request_mean_ms"] == pytest.approx(1.55)
    assert r["h2load_client_req_per_s_mean"] == pytest.approx(10311.82)
    assert r["connections_reported"] == 16


def test_rate_report():
    r = load("rate_ceiling_32k.txt")
    assert r["requests"] == 63728 and r["requests_started"] == 64032
    assert r["req_per_s"] == pytest.approx(31864.0)
    assert r["h2load_connect_max_ms"] == pytest.approx(0.195)


def test_browser_report_against_our_server():
    r = load("closed_ccc_browser.txt")
    assert r["requests"] == r["status_2xx"] == 119968
    assert r["bytes_read"] == 16195680 and r["req_per_s"] == pytest.approx(119968.0)


def test_refused_connection_is_a_report_with_nothing_measured():
    r = load("connect_refused.txt")
    assert r["requests"] == 0 and r["requests_started"] == 0
    assert math.isnan(r["h2load_request_mean_ms"])


def test_not_a_report():
    with pytest.raises(H2loadError, match="printed nothing"):
        parse_h2load_output("")
    with pytest.raises(H2loadError, match="not a complete h2load report"):
        parse_h2load_output("h2load: unrecognized option '--bogus'\n")


# ---------------------------------------------------------------------------
# The command


def test_command_closed_and_open_loop():
    closed = H2loadLoad("http://127.0.0.1:8080/hello", 1, 64, 5, pipeline=256, warmup_s=1)
    cmd = closed.command("h2load", Path("/x/run.log"))
    assert cmd[:2] == ["h2load", "--h1"]
    assert cmd[cmd.index("-m") + 1] == "256" and cmd[cmd.index("-c") + 1] == "64"
    assert "-D" in cmd and cmd[cmd.index("-D") + 1] == "5s"
    assert "--warm-up-time=1s" in cmd and "--log-file=/x/run.log" in cmd
    assert not any(c.startswith("--rps") for c in cmd)
    assert "--log-file=h2load.log" in shell_line(cmd)

    rate = H2loadLoad("http://127.0.0.1:8080/hello", 2, 64, 1.5, rate=128000)
    cmd = rate.command()
    assert "--rps=2000" in cmd and cmd[cmd.index("-D") + 1] == "1500ms"
    with pytest.raises(ValueError, match="warm-up"):
        H2loadLoad("http://127.0.0.1:8080/", 1, 4, 1, rate=100, warmup_s=1).command()
    with pytest.raises(ValueError, match="127.0.0.1"):
        H2loadLoad("http://example.com/", 1, 4, 1).command()


def test_browser_headers_are_pipeline_luas():
    cmd = H2loadLoad("http://127.0.0.1:8080/", 1, 4, 1, browser=True).command()
    headers = [cmd[i + 1] for i, c in enumerate(cmd) if c == "-H"]
    assert len(headers) == len(browser_headers()) >= 10
    assert any(h.startswith("Cookie: session=") for h in headers)


def test_rate_sweep_geometric_up_to_and_past_saturation():
    rates = rate_sweep(1.5 * 200000, 6)
    assert len(rates) == 6 and rates == sorted(rates)
    assert rates[0] == pytest.approx(20000) and rates[-1] == pytest.approx(300000)
    ratios = np.diff(np.log(rates))
    assert np.allclose(ratios, ratios[0], rtol=0.02)
    assert rate_sweep(1000, 1) == [1000.0]
    with pytest.raises(ValueError):
        rate_sweep(0, 3)


# ---------------------------------------------------------------------------
# Latency from the log

EPOCH_US = 1_796_000_000_000_000


def write_log(path, rows):
    """rows: (start µs since the run's start, status, duration µs), any order."""
    with open(path, "w") as f:
        for start, status, dur in rows:
            f.write(f"{EPOCH_US + int(start)}\t{status}\t{int(dur)}\n")


def test_closed_loop_percentiles_one_sample_per_request(tmp_path):
    rows = [(i * 10, 200, d) for i, d in enumerate(range(1, 1001))]      # 1..1000 µs
    rows.append((20000, -1, 5))                                           # a failed stream
    write_log(tmp_path / "c.log", rows[::-1])
    r = latency_from_log(tmp_path / "c.log")
    assert r["latency_samples"] == 1000 and r["latency_errors"] == 1
    assert r["latency_p50_ms"] == pytest.approx(0.500)
    assert r["latency_p90_ms"] == pytest.approx(0.900)
    assert r["latency_p99_ms"] == pytest.approx(0.990)
    assert r["latency_p999_ms"] == pytest.approx(0.999)
    assert r["latency_max_ms"] == pytest.approx(1.000)
    assert r["latency_per_batch"] is False


def simulate(connect_us, rate_per_client, duration_us, service_us, stalls, slack_us):
    """One h2load client per connect time, -m 1, at 100 req/s each (one request per
    10 ms tick): the server answers service_us after a request arrives, or after
    the stall it arrives in ends (None: never).  Returns the log rows and, from
    each client's own schedule, every request's true latency (ms) from its intended
    time (never earlier than its send minus slack), and the due times left unfinished."""
    assert rate_per_client == 100
    rows, truth, unfinished = [], [], []
    for t_c in connect_us:
        free_at = t_c
        dues = [t_c + k * 10_000 for k in range(int(duration_us // 10_000) + 1)]
        for due in [d for d in dues if d < duration_us]:
            send = max(due, free_at)
            if send >= duration_us:
                unfinished.append(due)
                continue
            begin = send
            for lo, hi in stalls:
                if lo <= send < (hi if hi is not None else math.inf):
                    begin = hi if hi is not None else math.inf
            end = begin + service_us
            if end > duration_us:
                unfinished.append(due)
                free_at = math.inf
                continue
            rows.append((send, 200, end - send))
            truth.append((end - min(send, due + slack_us)) / 1e3)
            free_at = end
    return rows, np.array(truth), unfinished


def nearest_rank(values, pct):
    v = np.sort(values)
    return v[max(0, math.ceil(pct / 100 * v.size - 1e-9) - 1)]


def test_open_loop_latency_charges_the_stall_to_the_server(tmp_path):
    # 2 clients x 100 req/s, 1 s; the server stalls 200 ms from 300 ms; h2load
    # keeps its -m 1 slot waiting and then sends the backlog late.
    rows, truth, unfinished = simulate([0, 500], 100, 1_000_000, 1000,
                                       [(300_000, 500_000)], slack_us=10_000)
    assert not unfinished
    write_log(tmp_path / "o.log", rows)
    r = latency_from_log(tmp_path / "o.log", rate=200, connections=2, duration_s=1.0)
    assert r["latency_samples"] == len(truth) == 200
    assert r["latency_unfinished"] == 0 and r["latency_lower_bound"] is False
    assert r["latency_slack_ms"] == pytest.approx(10.0)
    for name, pct in (("p50", 50), ("p90", 90), ("p99", 99), ("p999", 99.9)):
        assert r[f"latency_{name}_ms"] == pytest.approx(nearest_rank(truth, pct), abs=0.6)
    assert r["latency_max_ms"] == pytest.approx(truth.max(), abs=0.6)
    # The logged durations alone (what h2load reports) hide the backlog: only
    # the two requests caught in the stall look slow.
    assert r["latency_uncorrected_p99_ms"] < 2.0
    assert r["latency_p90_ms"] > 50.0
    assert r["latency_send_lag_max_ms"] > 150.0


def test_open_loop_healthy_server_is_its_service_time(tmp_path):
    rows, truth, _ = simulate([0, 300, 700], 100, 1_000_000, 250, [], slack_us=10_000)
    write_log(tmp_path / "h.log", rows)
    r = latency_from_log(tmp_path / "h.log", rate=300, connections=3, duration_s=1.0)
    assert r["latency_p50_ms"] == pytest.approx(0.25) and r["latency_max_ms"] == pytest.approx(0.25)
    assert r["latency_send_lag_max_ms"] == pytest.approx(0.0, abs=0.001)
    assert r["latency_connect_spread_ms"] == pytest.approx(0.7)


def test_open_loop_requests_never_answered_count_as_lower_bounds(tmp_path):
    # the server stops answering at 900 ms: the rest of the schedule never shows
    # up in h2load's log, yet those requests were due
    rows, truth, unfinished = simulate([0, 500], 100, 1_000_000, 1000,
                                       [(900_000, None)], slack_us=10_000)
    write_log(tmp_path / "u.log", rows)
    r = latency_from_log(tmp_path / "u.log", rate=200, connections=2, duration_s=1.0)
    assert len(unfinished) == 20
    # the two due in the last tick (990, 990.5 ms) may just be in flight: left out
    waited = [d for d in unfinished if d + 10_000 < 1_000_000]
    assert r["latency_unfinished"] == len(waited) == 18
    assert r["latency_in_flight_at_end"] == 2
    assert r["latency_lower_bound"] is True
    assert r["latency_samples"] == 198
    bounds = [(1_000_000 - (d + 10_000)) / 1e3 for d in waited]
    assert r["latency_max_ms"] == pytest.approx(max(bounds), abs=0.6)
    assert r["latency_p90_ms"] == pytest.approx(nearest_rank(
        np.concatenate((truth, bounds)), 90), abs=0.6)


def test_not_a_log(tmp_path):
    (tmp_path / "bad.log").write_text("1796117146887199\t200\tabc\n")
    with pytest.raises(H2loadError, match="not an h2load log"):
        latency_from_log(tmp_path / "bad.log")
    (tmp_path / "empty.log").write_text("")
    assert latency_from_log(tmp_path / "empty.log")["latency_samples"] == 0


def test_open_loop_needs_every_first_request(tmp_path):
    write_log(tmp_path / "s.log", [(0, 200, 100)])
    with pytest.raises(H2loadError, match="schedule cannot be rebuilt"):
        latency_from_log(tmp_path / "s.log", rate=400, connections=4, duration_s=1)
    with pytest.raises(ValueError):
        latency_from_log(tmp_path / "s.log", rate=400)


# ---------------------------------------------------------------------------
# Real runs (1 s, loopback)


@pytest.fixture(scope="module")
def c_server():
    from kourier_lab.server.process import ServerProcess
    srv = ServerProcess(loop="c", parser="c", buffer="c").start()
    yield srv
    assert srv.stop() == 0


def _cpus():
    cpus = sorted(os.sched_getaffinity(0))
    return cpus[-1:]


@needs_h2load
def test_run_h2load_closed_loop_against_our_server(c_server, tmp_path):
    load = H2loadLoad(f"http://127.0.0.1:{c_server.port}/hello", 1, 4, 1, pipeline=8)
    raw = tmp_path / "h2load" / "c.txt"
    f = run_h2load(load, _cpus(), c_server.pid, raw, server_cpus=_cpus())
    assert f["load_tool"] == "h2load" and f["offered_rate"] is None
    assert f["requests"] > 0 and f["non_2xx_3xx"] == 0 and f["errors_socket"] == 0
    assert f["latency_samples"] == f["requests_succeeded"]        # one per request
    assert 0 < f["latency_p50_ms"] <= f["latency_p99_ms"] <= f["latency_max_ms"]
    assert f["server_cpu_s"] > 0 and f["cpu_us_per_req"] > 0
    assert f["client_cpu_s"] > 0 and 0 <= f["client_cpu_util"]
    assert raw.exists() and not raw.with_suffix(".log").exists()   # the log is not kept
    assert "finished in" in f["h2load_raw"] and "progress:" not in f["h2load_raw"]
    assert f["h2load_command"].startswith("h2load --h1")


@needs_h2load
def test_run_h2load_open_loop_against_our_server(c_server):
    load = H2loadLoad(f"http://127.0.0.1:{c_server.port}/hello", 1, 4, 1, rate=2000)
    f = run_h2load(load, _cpus(), c_server.pid, None)
    assert f["offered_rate"] == 2000 and f["latency_scheduled"] > 0
    assert 0.5 < f["achieved_of_offered"] < 1.5
    assert f["latency_samples"] >= f["requests_succeeded"]
    assert f["latency_p50_ms"] > 0


@pytest.fixture
def stalling_server():
    """A keep-alive HTTP/1.1 responder on loopback that answers at once, except
    that it holds every answer due between 400 and 700 ms after its first request
    until 700 ms (a 300 ms stall, like a GC pause)."""
    import asyncio
    import threading
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    ready = threading.Event()
    state = {}

    async def handle(reader, writer):
        loop = asyncio.get_running_loop()
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                now = loop.time()
                first = state.setdefault("first", now)
                if first + 0.4 <= now < first + 0.7:
                    await asyncio.sleep(first + 0.7 - now)
                writer.write(resp)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        state["port"] = server.sockets[0].getsockname()[1]
        state["stop"] = asyncio.Event()
        ready.set()
        async with server:
            await state["stop"].wait()

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    yield state["port"]
    loop.call_soon_threadsafe(state["stop"].set)
    thread.join(10)


@needs_h2load
def test_run_h2load_open_loop_sees_a_real_stall(stalling_server):
    """Real h2load against a server that stalls 300 ms: h2load's own timings show
    a few slow requests (the ones caught in the stall); rebuilt from the schedule,
    every request due during the stall waited for it."""
    load = H2loadLoad(f"http://127.0.0.1:{stalling_server}/", 1, 4, 1, rate=1000)
    f = run_h2load(load, _cpus(), None, None)
    assert f["latency_errors"] == 0 and f["latency_scheduled"] >= 900
    # ~30 % of the schedule was due in the stall, 2/3 of it waiting over 100 ms
    assert f["latency_p90_ms"] > 100.0
    assert f["latency_max_ms"] > 250.0
    # from the real sends: one stuck request per connection (-m 1), 4 of ~1000
    assert f["latency_uncorrected_p99_ms"] < 50.0
    assert f["latency_send_lag_max_ms"] > 250.0


@needs_h2load
def test_run_h2load_refused_is_an_error(tmp_path):
    from kourier_lab.bench.run.verify import free_port
    load = H2loadLoad(f"http://127.0.0.1:{free_port()}/hello", 1, 1, 1)
    with pytest.raises(H2loadError, match="sent no request"):
        run_h2load(load, _cpus(), None, tmp_path / "r.txt")


# ---------------------------------------------------------------------------
# Figures


def frame():
    rows = []
    for server, kind, sat in (("ceiling", "ceiling", 180000), ("c/c/c", "stack", 150000),
                              ("go", "peer", 60000)):
        base = dict(status="ok", server=server, server_kind=kind, shape="rate",
                    load_tool="h2load", pipeline=1, batch_id="b1", machine_cpu_model="cpu",
                    server_cpus="0", client_cpus="1", latency_per_batch=False)
        rows.append(dict(base, shape="keepalive", offered_rate=None, req_per_s=sat,
                         latency_p50_ms=0.3, latency_p90_ms=0.5, latency_p99_ms=1.0,
                         latency_p999_ms=2.0))
        for rate in (10000, 40000, 100000, 200000):
            over = rate > sat
            rows.append(dict(base, offered_rate=rate, req_per_s=min(rate, sat),
                             latency_p50_ms=300.0 if over else 0.2,
                             latency_p99_ms=900.0 if over else 1.5,
                             latency_lower_bound=over))
        # wrk's pipelined figure is per batch: it must never be drawn as latency
        rows.append(dict(base, shape="pipelined", load_tool="wrk", pipeline=256,
                         offered_rate=None, req_per_s=sat, latency_p50_ms=9999.0,
                         latency_p99_ms=9999.0, latency_per_batch=True))
    return pd.DataFrame(rows)


def test_latency_plots_draw_and_leave_out_per_batch_rows():
    from kourier_lab.bench.plots.latency import (per_request_rows, plot_latency_vs_load,
                                                 plot_request_latency)
    df = frame()
    kept = per_request_rows(df)
    assert not (kept["latency_p50_ms"] == 9999.0).any()
    # an older wrk row without the flag, pipelined: also left out
    legacy = df.drop(columns=["latency_per_batch", "load_tool"])
    assert not (per_request_rows(legacy)["latency_p50_ms"] == 9999.0).any()

    fig = plot_latency_vs_load(df)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and ax.get_xscale() == "log"
    lines = [l for l in ax.get_lines() if len(l.get_xdata()) == 4]
    assert len(lines) == 6                                   # p50 + p99 per server
    colors = {l.get_label().rsplit(" ", 1)[0]: l.get_color() for l in lines}
    assert len(set(colors.values())) == 3                     # one colour per server
    assert max(max(l.get_ydata()) for l in lines) < 9999.0
    fig.savefig(os.devnull, format="png")

    fig = plot_request_latency(df)
    ax = fig.axes[0]
    assert ax.get_title() == "keepalive" and len(fig.axes) == 1
    heights = [p.get_height() for p in ax.patches]
    assert len(heights) == 12 and max(heights) < 9999.0      # 3 servers x 4 percentiles
    fig.savefig(os.devnull, format="png")


def test_latency_plots_without_rows():
    from kourier_lab.bench.plots.latency import plot_latency_vs_load, plot_request_latency
    empty = frame().iloc[0:0]
    plot_latency_vs_load(empty).savefig(os.devnull, format="png")
    plot_request_latency(empty).savefig(os.devnull, format="png")
