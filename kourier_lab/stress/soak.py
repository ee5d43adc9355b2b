"""Soak: a server under mixed load for a bounded time, RSS and descriptors
sampled every second; they must stay flat, not climb.

    samples, summary = soak_stack("c/c/c", duration=60)
    df = run_soak(["c/c/c"], duration=120)          # rows + samples on disk, figure

The mixed load, all at once, all to 127.0.0.1, all stopping by themselves:
  * pipelined     wrk, 16 connections, 16 requests per write
  * keepalive     wrk, 32 connections, one request at a time
  * new conns     wrk with "Connection: close": a new connection per request
  * malformed     a Python thread sending bad requests (bad method, bad version,
                  header without colon, oversized header, bad chunk size, bare LF
                  headers, a NUL in the target) on fresh connections and reading
                  the answer (an error status, 4xx or 505, and a close expected)

Verdict per stack: the last third's maximum against the first third's
maximum, RSS within RSS_SLACK_KB (6 MB), descriptors
within `fd_slack` (the load itself keeps ~60 connections open and churns a
few more): `rss_flat` and `fds_flat` in the summary row.
"""
from __future__ import annotations

import datetime as _dt
import math
import os
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import pandas as pd

from .. import procs as _procs
from ..bench.run.machine import git_commit, machine_info
from ..paths import results_dir
from ..bench.results import new_batch_dir, to_frame, write_rows
from ..sampler import TreeSampler, descendants, pin_tree
from ..bench.experiment.split import cpu_list, plan_split
from ..bench.load.wrk import PIPELINE_LUA, WrkError, ensure_wrk, parse_wrk_output
from .connections import raised_limits, tree_fds

HOST = "127.0.0.1"
# Absolute, not relative: a large idle RSS (Numba's JIT: hundreds of MB) must not hide a leak.
RSS_TOLERANCE = 0.0
RSS_SLACK_KB = 6 * 1024
FD_SLACK = 24

MALFORMED = (
    b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(64)),   # a TLS hello
)


def native_stacks() -> List[str]:
    """Stacks whose loop, parser and buffer are all native (C or Numba)."""
    from .. import loops
    native = ("c", "numba")
    return [f"{lo}/{p}/{b}" for lo, p, b in loops.combinations()
            if lo in native and p in native and b in native]


class _Malformed(threading.Thread):
    """Sends malformed requests on fresh connections until stopped."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.port = port
        self.stop_event = threading.Event()
        self.sent = 0
        self.answered = 0          # an error status, then the connection closed
        self.unexpected: Dict[str, int] = {}

    def run(self) -> None:
        i = 0
        while not self.stop_event.is_set():
            raw = MALFORMED[i % len(MALFORMED)]
            i += 1
            try:
                with socket.create_connection((HOST, self.port), timeout=5) as s:
                    try:
                        s.sendall(raw)
                    except OSError:
                        pass           # the server may answer and close before reading it all
                    self.sent += 1
                    data = b""
                    while True:
                        chunk = s.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                status = data[9:12].decode("latin-1", "replace")
                if status[:1] in ("4", "5"):
                    self.answered += 1
                else:
                    self.unexpected[status or "no answer"] = \
                        self.unexpected.get(status or "no answer", 0) + 1
            except ConnectionResetError:
                self.answered += 1       # closed after the error answer, before we read it all
            except OSError as e:
                self.unexpected[type(e).__name__] = self.unexpected.get(type(e).__name__, 0) + 1
            time.sleep(0.002)


def _wrk(wrk: str, port: int, duration: int, connections: int, pipeline: int,
         close: bool, cpus: Sequence[int]) -> subprocess.Popen:
    url = f"http://{HOST}:{port}/hello"
    cmd = [wrk, "--latency", "-t", "1", "-c", str(connections), "-d", f"{duration}s",
           "--timeout", "5s"]
    if close:
        cmd += ["-H", "Connection: close"]
    if pipeline > 1:
        cmd += ["-s", str(PIPELINE_LUA), url, "--", str(pipeline)]
    else:
        cmd.append(url)
    cpu_set = set(cpus)
    return _procs.register(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                            text=True, stdin=subprocess.DEVNULL,
                                            preexec_fn=lambda: os.sched_setaffinity(0, cpu_set)), "wrk")


def _third_max(values: List[float], which: int) -> float:
    n = len(values)
    if n < 3:
        return math.nan
    k = n // 3
    part = values[:k] if which == 0 else values[n - k:]
    return float(max(part))


def flat(values: List[float], tolerance: float, slack: float) -> Tuple[bool, float, float]:
    """(last third's max <= first third's max * (1 + tolerance) + slack, first, last)."""
    first, last = _third_max(values, 0), _third_max(values, 2)
    if math.isnan(first):
        return False, first, last
    return last <= first * (1 + tolerance) + slack, first, last


def soak_stack(stack: str, duration: int = 60, split=None, wrk: Optional[str] = None,
               server_args: Sequence[str] = (), interval: float = 1.0,
               say: Callable[[str], None] = lambda s: None) -> Tuple[List[Dict], Dict]:
    """One stack under mixed load; (samples, summary)."""
    from ..server.process import ServerProcess
    if duration < 3:
        raise ValueError("a soak needs at least 3 s (thirds are compared)")
    split = split or plan_split("auto")
    wrk = wrk or ensure_wrk(echo=say)
    loop, parser, buffer = stack.split("/")
    srv = ServerProcess(*server_args, loop=loop, parser=parser, buffer=buffer,
                        workers=split.workers, cpus=split.server_cpus)
    srv.start(timeout=120)
    samples: List[Dict] = []
    procs: List[subprocess.Popen] = []
    bad = _Malformed(srv.port)
    try:
        pin_tree(descendants(srv.pid), split.server_cpus)
        sampler = TreeSampler(srv.pid)
        sampler.start()
        procs = [_wrk(wrk, srv.port, duration, 16, 16, False, split.client_cpus),
                 _wrk(wrk, srv.port, duration, 32, 1, False, split.client_cpus),
                 _wrk(wrk, srv.port, duration, 4, 1, True, split.client_cpus)]
        bad.start()
        t0 = time.monotonic()
        next_t = t0
        while True:
            now = time.monotonic()
            if now - t0 >= duration:
                break
            if now >= next_t:
                sampler.sample()
                fds = tree_fds(srv.pid)
                rss = _tree_rss(srv.pid)
                samples.append({"t_s": round(now - t0, 3), "vmrss_kb": rss,
                                "fds": sum(fds.values()), "processes": len(fds)})
                next_t += interval
            time.sleep(max(0.0, min(next_t, t0 + duration) - time.monotonic()))
        bad.stop_event.set()
        outputs = []
        for p in procs:
            try:
                out, _ = p.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                out, _ = p.communicate()
            outputs.append(out)
        bad.join(10)
        usage = sampler.finish()
        alive = srv.proc.poll() is None
    finally:
        bad.stop_event.set()
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            _procs.forget(p)
        srv.stop()
    figures = {}
    for name, out in zip(("pipelined", "keepalive", "new_connections"), outputs):
        try:
            f = parse_wrk_output(out)
            figures[name] = f
        except WrkError as e:
            figures[name] = {"error": str(e)}
    rss_ok, rss_first, rss_last = flat([s["vmrss_kb"] for s in samples], RSS_TOLERANCE,
                                       RSS_SLACK_KB)
    fd_ok, fd_first, fd_last = flat([s["fds"] for s in samples], 0.0, FD_SLACK)
    summary = {
        "server": stack, "loop": loop, "parser": parser, "buffer": buffer,
        "duration_s": duration, "samples": len(samples), "server_alive": alive,
        "rss_first_third_max_kb": rss_first, "rss_last_third_max_kb": rss_last,
        "rss_flat": rss_ok, "fds_first_third_max": fd_first, "fds_last_third_max": fd_last,
        "fds_flat": fd_ok, "server_vmhwm_kb": usage.vmhwm_kb, "server_vmpeak_kb": usage.vmpeak_kb,
        "server_cpu_s": usage.cpu_s,
        "malformed_sent": bad.sent, "malformed_answered": bad.answered,
        "malformed_unexpected": ", ".join(f"{k}: {v}" for k, v in sorted(bad.unexpected.items())),
    }
    total = 0
    for name, f in figures.items():
        summary[f"{name}_req_per_s"] = f.get("req_per_s", math.nan)
        summary[f"{name}_errors"] = sum(int(f.get(k) or 0) for k in (
            "errors_connect", "errors_read", "errors_write", "errors_timeout", "non_2xx_3xx"))
        total += int(f.get("requests") or 0)
        if "error" in f:
            summary[f"{name}_problem"] = f["error"]
    summary["requests"] = total
    return samples, summary


def _tree_rss(root: int) -> int:
    total = 0
    for pid in descendants(root):
        try:
            with open(f"/proc/{pid}/status", "rb") as f:
                for line in f:
                    if line.startswith(b"VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


def run_soak(stacks: Optional[Sequence[str]] = None, duration: int = 120,
             out: Union[str, Path, None] = None, figures: Union[bool, str, Path] = False,
             echo: Optional[Callable[[str], None]] = print,
             cpus: Optional[Sequence[int]] = None) -> pd.DataFrame:
    """Soak each stack (default: every native stack); one row per stack in
    <results>/<batch>/rows.parquet, the per-second samples in samples.parquet.
    Returns the rows (attrs: batch_id, batch_dir, samples, figures)."""
    say = echo or (lambda s: None)
    stacks = list(stacks) if stacks else native_stacks()
    if not stacks:
        raise ValueError("no native stack is available on this machine to soak")
    split = plan_split("auto", cpus)
    raised = raised_limits()
    wrk = ensure_wrk(echo=say)
    batch_id, batch_dir = new_batch_dir("soak", out)
    commit = git_commit()
    rows, all_samples = [], []
    for stack in stacks:
        say(f"soak {stack}: {duration} s of mixed load ...")
        row = {"batch_id": batch_id, "experiment": "soak", "shape": "soak", "quick": False,
               "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
               **machine_info(), "git_commit": commit, "server_kind": "stack", "server": stack,
               "workers": split.workers, "server_cpus": cpu_list(split.server_cpus),
               "client_cpus": cpu_list(split.client_cpus), "raised": raised["raised"],
               "run": 1, "repetitions": 1}
        try:
            samples, summary = soak_stack(stack, duration, split, wrk, say=say)
            row.update(summary)
            verdict = "ok" if summary["rss_flat"] and summary["fds_flat"] and \
                summary["server_alive"] else "climbing"
            row["status"] = "ok"
            row["note"] = "" if verdict == "ok" else (
                f"RSS {summary['rss_first_third_max_kb']:.0f} -> "
                f"{summary['rss_last_third_max_kb']:.0f} kB, fds {summary['fds_first_third_max']:.0f}"
                f" -> {summary['fds_last_third_max']:.0f}, alive {summary['server_alive']}")
            row["req_per_s"] = math.nan     # a soak has no single req/s; the parts are columns
            for s in samples:
                all_samples.append({"batch_id": batch_id, "server": stack, **s})
            say(f"  RSS max first/last third {summary['rss_first_third_max_kb'] / 1024:.1f} / "
                f"{summary['rss_last_third_max_kb'] / 1024:.1f} MB, fds "
                f"{summary['fds_first_third_max']:.0f} / {summary['fds_last_third_max']:.0f}, "
                f"{summary['requests']} requests, malformed {summary['malformed_answered']}/"
                f"{summary['malformed_sent']} answered: {'flat' if verdict == 'ok' else verdict}")
        except Exception as e:
            row.update(status="failed", note=f"{type(e).__name__}: {e}"[:2000])
            say(f"  failed: {row['note']}")
        rows.append(row)
        write_rows(rows, batch_dir)
        pd.DataFrame(all_samples).to_parquet(batch_dir / "samples.parquet", index=False)
    df = to_frame(rows)
    samples_df = pd.DataFrame(all_samples)
    df.attrs.update(batch_id=batch_id, batch_dir=str(batch_dir))
    if figures and not samples_df.empty:
        from .stress_plots import write_soak_figures
        df.attrs["figures"] = [str(p) for p in write_soak_figures(
            samples_df, None if figures is True else Path(figures))]
    df.attrs["samples"] = samples_df
    return df


def load_soak_samples(results: Union[str, Path, None] = None) -> pd.DataFrame:
    """Every soak's per-second samples under `results` (default data/results)."""
    root = Path(results) if results is not None else results_dir()
    frames = [pd.read_parquet(p) for p in sorted(root.glob("*-soak/samples.parquet"))]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
