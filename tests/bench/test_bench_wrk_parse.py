"""wrk output parsing, on outputs captured from real wrk runs (tests/fixtures/wrk/)."""
import math
from pathlib import Path

import pytest

from kourier_lab.bench.load.wrk import (WrkError, WrkLoad, parse_bytes, parse_metric, parse_time_ms,
                                   parse_wrk_output, shell_line)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "wrk"


def load(name):
    return parse_wrk_output((FIXTURES / name).read_text())


def test_units():
    assert parse_time_ms("163.78us") == pytest.approx(0.16378)
    assert parse_time_ms("4.41ms") == pytest.approx(4.41)
    assert parse_time_ms("1.15s") == pytest.approx(1150.0)
    assert parse_time_ms("1.00m") == pytest.approx(60000.0)
    assert parse_metric("2.04M") == pytest.approx(2.04e6)
    assert parse_metric("104.69k") == pytest.approx(104690)
    assert parse_metric("159.84") == pytest.approx(159.84)
    assert parse_bytes("17.89GB") == pytest.approx(17.89 * 1024 ** 3)
    assert parse_bytes("0.00B") == 0.0
    with pytest.raises(WrkError):
        parse_time_ms("4.41 ms")


def test_keepalive_run_every_figure():
    r = load("keepalive_ceiling.txt")
    assert r["requests"] == 434374
    assert r["wrk_duration_s"] == pytest.approx(2.10)
    assert r["req_per_s"] == pytest.approx(206807.04)
    assert r["transfer_per_s_bytes"] == pytest.approx(15.19 * 1024 ** 2)
    assert r["bytes_read"] == pytest.approx(31.90 * 1024 ** 2)
    assert r["latency_avg_ms"] == pytest.approx(0.06415)
    assert r["latency_stdev_ms"] == pytest.approx(0.20003)
    assert r["latency_max_ms"] == pytest.approx(6.26)
    assert r["latency_within_stdev_pct"] == pytest.approx(99.46)
    assert (r["latency_p50_ms"], r["latency_p75_ms"], r["latency_p90_ms"],
            r["latency_p99_ms"]) == pytest.approx((0.057, 0.066, 0.073, 0.103))
    assert r["thread_req_per_s_avg"] == pytest.approx(208140)
    assert r["thread_req_per_s_max"] == pytest.approx(214310)
    assert r["wrk_threads_reported"] == 1 and r["connections_reported"] == 16
    assert r["latency_overflow"] is False
    assert r["errors_socket"] == 0 and r["non_2xx_3xx"] == 0


def test_real_overflow_percentiles_are_missing_not_zero():
    # A 16-deep pipeline against the ceiling overflowed wrk's histogram here.
    r = load("pipelined_ceiling_overflow.txt")
    assert r["latency_overflow"] is True
    assert r["latency_p50_ms"] == pytest.approx(0.240)
    for p in (75, 90, 99):
        assert math.isnan(r[f"latency_p{p}_ms"])
    assert r["requests"] == 4361840
    assert r["req_per_s"] == pytest.approx(2075517.93)


def test_post_kourier_overflow_p99():
    r = load("post_2025_kourier_overflow.txt")
    assert r["req_per_s"] == pytest.approx(12138068.83)
    assert r["requests"] == 182933248
    assert r["wrk_duration_s"] == pytest.approx(15.07)
    assert r["latency_p90_ms"] == pytest.approx(9.57)
    assert math.isnan(r["latency_p99_ms"]) and r["latency_overflow"] is True
    assert r["thread_req_per_s_avg"] == pytest.approx(2.04e6)


def test_post_go_timeouts_and_seconds():
    r = load("post_2025_go.txt")
    assert r["errors_timeout"] == 722 and r["errors_socket"] == 722
    assert r["latency_p90_ms"] == pytest.approx(1150.0)
    assert r["latency_p99_ms"] == pytest.approx(1810.0)
    assert r["latency_max_ms"] == pytest.approx(2000.0)
    assert r["latency_overflow"] is False


def test_post_ratios_match_the_title():
    k = load("post_2025_kourier_overflow.txt")["req_per_s"]
    assert k / load("post_2025_hyper.txt")["req_per_s"] == pytest.approx(2.77, abs=0.005)
    assert k / load("post_2025_go.txt")["req_per_s"] == pytest.approx(52.5, abs=0.05)


def test_real_timeouts():
    r = load("timeouts_slow_server.txt")
    assert r["errors_timeout"] == 24
    assert (r["errors_connect"], r["errors_read"], r["errors_write"]) == (0, 0, 0)
    assert r["requests"] == 103


def test_real_read_errors_with_no_responses():
    r = load("read_errors_reset.txt")
    assert r["errors_read"] == 111839
    assert r["requests"] == 0 and r["req_per_s"] == 0.0
    # With no response at all wrk prints zeros: they mean "no data", so NaN.
    assert math.isnan(r["latency_avg_ms"]) and math.isnan(r["latency_p50_ms"])
    assert r["latency_overflow"] is False


def test_real_non_2xx():
    r = load("non2xx_404.txt")
    assert r["non_2xx_3xx"] == 2251 == r["requests"]
    assert r["errors_socket"] == 0


def test_connect_refused_is_an_error_naming_wrk_message():
    with pytest.raises(WrkError, match="unable to connect"):
        load("connect_refused.txt")


@pytest.mark.parametrize("text", ["", "   \n", "Running 1s test @ http://x/\n  1 threads and 1 connections\n"])
def test_incomplete_output_is_an_error(text):
    with pytest.raises(WrkError):
        parse_wrk_output(text)


def test_command_line_matches_the_post():
    load_ = WrkLoad("http://127.0.0.1:3275/hello", threads=6, connections=512, duration_s=15,
                    pipeline=256)
    assert shell_line(load_.command("wrk")) == (
        "wrk --latency -t 6 -c 512 -d 15s --timeout 2s -s pipeline.lua "
        "http://127.0.0.1:3275/hello -- 256")
    keep = WrkLoad("http://127.0.0.1:1/", threads=1, connections=4, duration_s=1,
                   timeout_s=5).command("wrk")
    assert "-s" not in keep and keep[-1] == "http://127.0.0.1:1/" and "5s" in keep
    browser = WrkLoad("http://127.0.0.1:1/", threads=1, connections=4, duration_s=1,
                      pipeline=16, browser=True).command("wrk")
    assert browser[-3:] == ["--", "16", "browser"]
    with pytest.raises(ValueError):      # wrk needs a connection per thread
        WrkLoad("http://x/", threads=4, connections=2, duration_s=1).command()
    with pytest.raises(ValueError):      # wrk only takes whole seconds
        WrkLoad("http://x/", threads=1, connections=2, duration_s=1, timeout_s=0.5).command()
