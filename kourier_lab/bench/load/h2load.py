"""h2load as the second load tool: latency one sample per request, and an open-loop rate sweep.

wrk stays the throughput tool, but its latency is not a latency under
pipelining (one sample per pipelined batch, and a percentile scan that prints
0 after its coordinated-omission correction).  h2load (Debian: nghttp2-client)
speaks HTTP/1.1 with ``--h1``, pipelines with ``-m N`` and writes one line per
request with ``--log-file``:  start (µs since the epoch, system clock), status
(-1 for a failed stream), and µs from that start to the end of the response
(steady clock).  Only requests that end in the main phase are logged.

Closed loop (rate None).  Latency of a request = its logged duration: from the
moment h2load wrote it to the end of its response, one sample per request even
with 256 in flight per connection.  A closed loop sends the next request when
one finishes, so this is the response time at the throughput it reached, not
what a client arriving at its own pace would see.

Open loop (rate = total offered requests/s).  h2load's ``--rps r`` (per client,
r = rate / connections) paces, it does not time: read from nghttp2 1.52's
h2load.cc (rps_cb, Client::connection_made, Client::on_stream_close):

* a client sends its first request when its connection is made (time T_c);
* a timer ticks every P = max(10 ms, 1/r); at a tick at t the number of
  requests due so far becomes round((t - T_c) * r) + 1 (the fraction is
  carried, so nothing is lost or gained);
* at most ``-m`` requests are in flight; due requests beyond that wait in a
  counter and go out, in order, as responses free slots;
* the log's start time is when the request was really written.

So a request held back because the server was slow is logged from its late
send: the wait is hidden (coordinated omission), and requests still unsent at
the end are not logged at all.  latency_from_log() rebuilds the schedule:

1. T_c are the ``connections`` earliest starts (each client's first request
   goes out on connect, before its first tick), so the log must cover the run
   from its first request: no in-run warm-up for a rate run (warm the server
   with a separate closed-loop run first; H2loadLoad.command refuses both).
2. Client c's k-th request is due at T_c + q_k, where q_0 = 0 and q_k is the
   first tick j*P with j*P*r >= k - 1/2 (h2load's rounding).  The union over
   clients, up to the end of the run (the first T_c + duration), sorted, is the
   intended schedule.
3. The log's rows sorted by start are matched to it rank for rank: each client
   sends in schedule order and never early, and the log has no client column,
   so the k-th send of the run takes the k-th due time of the run.  That is
   exact per client and, across clients, only swaps due times among sends close
   in time (a client a whole tick behind the others is the limit).
4. latency = end - min(start, due + slack), slack = one tick P by default:
   h2load's timer fires up to a few ms late and releases a tick's requests as a
   burst, which is the tool's pacing, not the server; a request sent within a
   tick of its due time is measured from its real send, any later one from
   due + slack, so every millisecond of waiting beyond the tool's granularity
   is charged.  latency_send_lag_* say how late sends were.
5. Due requests not logged by the end (never sent, or in flight when h2load
   stopped) are the latest due ones.  Those due within the last slack are
   left out (in flight at the end, as any request may be); each earlier one
   counts as a sample of at least end - (due + slack): a lower bound
   (latency_unfinished, and latency_lower_bound = True when there were any).

Limits: arrivals are bursts (each client releases r*P requests per 10 ms tick,
all clients nearly in phase), a harsher arrival process than Poisson at the
same rate, and the slack hides up to one tick of a real backlog; h2load itself
costs far more CPU per request than wrk (check client_cpu_util: a saturated
client makes the server look slow).
"""
from __future__ import annotations

import math
import os
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from .wrk import browser_headers

DEBIAN_PACKAGE = "nghttp2-client"
# h2load's rps timer never ticks faster than this (Client::connection_made).
RPS_TICK_S = 0.01
PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9))


class H2loadError(RuntimeError):
    """h2load is missing, failed, or printed something that is not its report."""


def ensure_h2load() -> str:
    """Path of h2load, or H2loadError naming the package to install."""
    path = shutil.which("h2load")
    if path:
        return path
    raise H2loadError(f"h2load is not installed; install the distribution's package "
                      f"(Debian/Ubuntu: sudo apt-get install {DEBIAN_PACKAGE})")


def _duration_arg(seconds: float) -> str:
    """h2load's duration syntax: whole seconds, else milliseconds."""
    if seconds <= 0:
        raise ValueError("h2load durations must be positive")
    if float(seconds).is_integer():
        return f"{int(seconds)}s"
    ms = round(seconds * 1000)
    if ms < 1:
        raise ValueError("h2load durations have millisecond resolution")
    return f"{ms}ms"


@dataclass
class H2loadLoad:
    """One h2load invocation's load parameters.

    rate      None: closed loop (each connection keeps `pipeline` requests in
              flight); else the total offered requests/s, split evenly over
              the connections (h2load's --rps is per client).
    pipeline  requests in flight per connection (-m); in a rate run the most a
              connection may have outstanding before due requests queue.
    warmup_s  closed loop only (--warm-up-time): a rate run's latency needs the
              log from its first request (see the module docstring).
    """
    url: str
    threads: int
    connections: int
    duration_s: float
    pipeline: int = 1
    browser: bool = False
    rate: Optional[float] = None
    warmup_s: float = 0

    @property
    def per_client_rate(self) -> Optional[float]:
        """--rps as passed (6 significant digits): the schedule latency_from_log rebuilds."""
        return None if self.rate is None else float(f"{self.rate / self.connections:.6g}")

    def command(self, h2load: str = "h2load", log_path: Optional[Path] = None) -> List[str]:
        if self.connections < 1 or self.threads < 1 or self.pipeline < 1:
            raise ValueError("h2load needs at least one thread, connection and request in flight")
        if self.connections < self.threads:
            raise ValueError("h2load needs at least one connection per thread")
        if not self.url.startswith("http://127.0.0.1:"):
            raise ValueError(f"loads go to 127.0.0.1 only, not {self.url!r}")
        cmd = [h2load, "--h1", "-t", str(self.threads), "-c", str(self.connections),
               "-m", str(self.pipeline), "-D", _duration_arg(self.duration_s)]
        if self.rate is not None:
            if self.rate <= 0:
                raise ValueError("an offered rate must be positive")
            if self.warmup_s:
                raise ValueError("a rate run cannot have an in-run warm-up: its latency is "
                                 "rebuilt from the schedule, which starts at the first request; "
                                 "warm up with a separate closed-loop run")
            cmd.append(f"--rps={self.per_client_rate:g}")
        elif self.warmup_s:
            cmd.append(f"--warm-up-time={_duration_arg(self.warmup_s)}")
        if self.browser:
            for name, value in browser_headers():
                cmd += ["-H", f"{name}: {value}"]
        if log_path is not None:
            cmd.append(f"--log-file={log_path}")
        cmd.append(self.url)
        return cmd


def shell_line(cmd: Sequence[str]) -> str:
    """The command as one shell line, without this machine's paths."""
    parts = []
    for c in cmd:
        if c.startswith("--log-file="):
            c = "--log-file=h2load.log"
        elif os.path.isabs(c) and os.path.basename(c) == "h2load":
            c = "h2load"
        parts.append(shlex.quote(c))
    return " ".join(parts)


# ---------------------------------------------------------------------------
# h2load's report

_TIME_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_RE_FINISHED = re.compile(r"^finished in (\S+), ([0-9.]+) req/s, (\S+)B/s")
_RE_REQUESTS = re.compile(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                          r"(\d+) failed, (\d+) errored, (\d+) timeout")
_RE_STATUS = re.compile(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
_RE_TRAFFIC = re.compile(r"^traffic: \S+ \((\d+)\) total, \S+ \((\d+)\) headers .*?, "
                         r"\S+ \((\d+)\) data")
_RE_STAT = re.compile(r"^(time for request|time for connect|time to 1st byte|req/s)\s*:"
                      r"\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)%")
_RE_SPAWN = re.compile(r"^spawning thread #\d+: (\d+) total client")
_STAT_KEYS = {"time for request": "request", "time for connect": "connect",
              "time to 1st byte": "ttfb", "req/s": "client_req_per_s"}


def parse_time_ms(text: str) -> float:
    """h2load's duration format ('309us', '13.09ms', '3.00s') in milliseconds."""
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text)
    if not m:
        raise H2loadError(f"not an h2load time value: {text!r}")
    return float(m.group(1)) * _TIME_MS[m.group(2)]


def parse_h2load_output(text: str) -> Dict[str, object]:
    """Every figure of one h2load report as a flat dict (times in ms, sizes in bytes).

    Keys shared with wrk.parse_wrk_output mean the same thing: requests
    (responses completed in the measured window), req_per_s (succeeded /
    measured duration, as h2load computes it), bytes_read, non_2xx_3xx
    (4xx + 5xx, what wrk counts), errors_timeout, errors_socket.  h2load's own
    request-time summary (from each request's real send, and sampled) is kept
    as h2load_request_*_ms; per-request percentiles come from the log
    (latency_from_log).  Raises H2loadError when the text is not a report.
    """
    if not text.strip():
        raise H2loadError("h2load printed nothing")
    out: Dict[str, object] = {}
    seen = set()
    for line in text.splitlines():
        if m := _RE_FINISHED.match(line):
            out["h2load_duration_s"] = parse_time_ms(m.group(1)) / 1e3
            out["req_per_s"] = float(m.group(2))
            seen.add("finished")
        elif m := _RE_REQUESTS.match(line):
            (total, started, done, ok, failed, errored, timeout) = map(int, m.groups())
            out.update(requests=done, requests_total=total, requests_started=started,
                       requests_succeeded=ok, requests_failed=failed,
                       errors_socket=errored, errors_timeout=timeout)
            seen.add("requests")
        elif m := _RE_STATUS.match(line):
            s2, s3, s4, s5 = map(int, m.groups())
            out.update(status_2xx=s2, status_3xx=s3, status_4xx=s4, status_5xx=s5,
                       non_2xx_3xx=s4 + s5)
            seen.add("status")
        elif m := _RE_TRAFFIC.match(line):
            out["bytes_read"], out["bytes_headers"], out["bytes_body"] = map(
                float, m.groups())
            seen.add("traffic")
        elif m := _RE_STAT.match(line):
            name = _STAT_KEYS[m.group(1)]
            lo, hi, mean, sd, within = m.groups()[1:]
            if name == "client_req_per_s":
                vals = [float(lo), float(hi), float(mean), float(sd)]
                keys = ["h2load_client_req_per_s_" + k for k in ("min", "max", "mean", "sd")]
            else:
                vals = [parse_time_ms(v) for v in (lo, hi, mean, sd)]
                keys = [f"h2load_{name}_{k}_ms" for k in ("min", "max", "mean", "sd")]
            out.update(zip(keys, vals))
            seen.add(name)
        elif m := _RE_SPAWN.match(line):
            out["connections_reported"] = out.get("connections_reported", 0) + int(m.group(1))
    missing = [what for what, key in (("'finished in'", "finished"), ("'requests:'", "requests"),
                                      ("'status codes:'", "status"), ("'traffic:'", "traffic"),
                                      ("'time for request:'", "request"))
               if key not in seen]
    if missing:
        lines = [ln for ln in text.strip().splitlines() if not ln.startswith("progress:")]
        first = (lines or ["(only progress lines)"])[-1][:200]
        raise H2loadError(f"not a complete h2load report (missing {', '.join(missing)}); "
                          f"h2load said: {first}")
    if out["requests"] == 0:
        for k in [k for k in out if k.startswith("h2load_request_")]:
            out[k] = math.nan
    return out


# ---------------------------------------------------------------------------
# Per-request latency from the log


def read_log(path: Path) -> np.ndarray:
    """The log as an (n, 3) int64 array: start µs (epoch), status, duration µs.
    (pandas' C reader: a 15 s pipelined run logs millions of lines.)"""
    import pandas as pd
    path = Path(path)
    if path.stat().st_size == 0:
        return np.empty((0, 3), dtype=np.int64)
    try:
        df = pd.read_csv(path, sep="\t", header=None, usecols=[0, 1, 2], dtype=np.int64,
                         engine="c")
    except (ValueError, pd.errors.ParserError) as e:
        raise H2loadError(f"{path.name}: not an h2load log ({e})") from None
    return df.to_numpy(dtype=np.int64)


def _due_offsets(r: float, horizon_s: float) -> np.ndarray:
    """q_k (s after a client's connection) of every request due before horizon_s,
    by h2load's schedule: the first on connect, the rest released on ticks of
    P = max(10 ms, 1/r) as round(elapsed * r) + 1 reaches them."""
    period = max(RPS_TICK_S, 1.0 / r)
    n = int(math.floor(horizon_s * r + 0.5)) + 2
    k = np.arange(1, n, dtype=np.float64)
    ticks = np.ceil((k - 0.5) / (r * period) - 1e-9)
    q = np.concatenate(([0.0], ticks * period))
    return q[q < horizon_s]


def nearest_rank(values: np.ndarray, percents: Sequence[float]) -> List[float]:
    """Nearest-rank percentiles: each one is a latency some request really had
    (the ceil(p/100 * n)-th smallest; the epsilon keeps 99.9 % of 1000 at 999)."""
    v = np.sort(np.asarray(values, dtype=np.float64))
    n = v.size
    return [float(v[min(n - 1, max(0, math.ceil(p / 100.0 * n - 1e-9) - 1))]) for p in percents]


def _percentiles(values_ms: np.ndarray, prefix: str = "latency") -> Dict[str, float]:
    out: Dict[str, float] = {}
    if values_ms.size == 0:
        for name, _ in PERCENTILES:
            out[f"{prefix}_{name}_ms"] = math.nan
        out[f"{prefix}_max_ms"] = math.nan
        return out
    qs = nearest_rank(values_ms, [p for _, p in PERCENTILES])
    for (name, _), v in zip(PERCENTILES, qs):
        out[f"{prefix}_{name}_ms"] = round(float(v), 3)     # µs resolution
    out[f"{prefix}_max_ms"] = round(float(values_ms.max()), 3)
    return out


def latency_from_log(path, rate: Optional[float] = None, connections: Optional[int] = None,
                     duration_s: Optional[float] = None,
                     slack_s: Optional[float] = None) -> Dict[str, object]:
    """Per-request latency percentiles (ms) from an h2load --log-file.

    rate None: closed loop, latency = each request's logged duration.
    rate (total offered req/s) with connections and duration_s: open loop,
    latency from each request's intended send time (see the module docstring
    for the schedule and its limits); slack_s defaults to one tick of h2load's
    pacing timer.

    Keys: latency_p50_ms, latency_p90_ms, latency_p99_ms, latency_p999_ms,
    latency_max_ms, latency_avg_ms, latency_samples, latency_errors (failed
    streams, not samples), and for a rate run also latency_unfinished,
    latency_lower_bound, latency_send_lag_p50_ms / _p99_ms / _max_ms (send
    minus due) and latency_uncorrected_p50_ms / _p99_ms (from the real send).
    """
    log = read_log(path)
    ok = log[:, 1] >= 0
    out: Dict[str, object] = {"latency_errors": int((~ok).sum()), "latency_per_batch": False}
    if rate is None:
        lat_ms = log[ok, 2] / 1e3
        out.update(_percentiles(lat_ms))
        out["latency_samples"] = int(lat_ms.size)
        out["latency_avg_ms"] = float(lat_ms.mean()) if lat_ms.size else math.nan
        return out

    if not connections or not duration_s:
        raise ValueError("an open-loop latency needs connections and duration_s")
    r = rate / connections
    period = max(RPS_TICK_S, 1.0 / r)
    slack = period if slack_s is None else slack_s
    if log.shape[0] < connections:
        raise H2loadError(f"the log has {log.shape[0]} requests, fewer than the {connections} "
                          f"connections' first requests: the schedule cannot be rebuilt")
    order = np.argsort(log[:, 0], kind="stable")
    log = log[order]
    ok = ok[order]
    # µs since the run's first request: integers, exact in float64
    start = (log[:, 0] - log[0, 0]).astype(np.float64)
    end = start + log[:, 2]
    conn_t = start[:connections]                   # each client's first request: its connect
    horizon = duration_s * 1e6                     # the run ends D after its start
    q = np.round(_due_offsets(r, duration_s) * 1e6)
    due = np.add.outer(conn_t, q).ravel()
    due = np.sort(due[due < horizon])
    n_log, n_due = start.size, due.size
    matched = min(n_log, n_due)
    # a send h2load made ahead of our schedule (its timer fired late and
    # released more): timed from the send
    due_of_log = np.concatenate((due[:matched], start[matched:]))
    slack_us = slack * 1e6
    lag = start - due_of_log
    lat = end - np.minimum(start, due_of_log + slack_us)
    lat_ms = lat[ok] / 1e3
    not_logged = due[matched:]
    # due within the last slack: in flight at the end as any request may be,
    # no evidence of a wait; left out.  Due earlier and never completed: a
    # sample of at least the time from due + slack to the end.
    unfinished_due = not_logged[not_logged + slack_us < horizon]
    bound_ms = (horizon - (unfinished_due + slack_us)) / 1e3
    samples = np.concatenate((lat_ms, bound_ms))
    out.update(_percentiles(samples))
    out.update({
        "latency_samples": int(samples.size),
        "latency_avg_ms": float(samples.mean()) if samples.size else math.nan,
        "latency_unfinished": int(unfinished_due.size),
        "latency_in_flight_at_end": int(not_logged.size - unfinished_due.size),
        "latency_lower_bound": bool(unfinished_due.size),
        "latency_scheduled": int(n_due),
        "latency_slack_ms": slack * 1e3,
        "latency_connect_spread_ms": float((conn_t[-1] - conn_t[0]) / 1e3),
    })
    lag_ms = lag / 1e3
    qs = nearest_rank(lag_ms, [50, 99]) if lag_ms.size else [math.nan] * 2
    out.update(latency_send_lag_p50_ms=float(qs[0]), latency_send_lag_p99_ms=float(qs[1]),
               latency_send_lag_max_ms=float(lag_ms.max()) if lag_ms.size else math.nan)
    raw = _percentiles(log[ok, 2] / 1e3, prefix="latency_uncorrected")
    out.update({k: raw[k] for k in ("latency_uncorrected_p50_ms", "latency_uncorrected_p99_ms")})
    return out


def rate_sweep(max_rate: float, steps: int, low_fraction: float = 0.1 / 1.5) -> List[float]:
    """Offered rates for a sweep, geometric from low_fraction * max_rate up to
    max_rate (pass 1.5x the closed-loop throughput: the default then starts at
    10 % of it and ends 50 % past it, so saturation is inside the sweep).
    Rates are rounded to 3 significant figures, increasing, no duplicates."""
    if max_rate <= 0 or steps < 1:
        raise ValueError("a sweep needs a positive max_rate and at least one step")
    if steps == 1:
        return [float(_round3(max_rate))]
    lo = max_rate * low_fraction
    rates = [_round3(v) for v in np.geomspace(lo, max_rate, steps)]
    return [float(v) for v in dict.fromkeys(rates)]


def _round3(v: float) -> float:
    if v <= 0:
        return v
    digits = 2 - int(math.floor(math.log10(v)))
    return round(v, digits)
