"""The experiment matrix on one host pair: run_pair, every target's shapes and
runs, with the hosts driven through bench/hosts/remote.py.

run_experiment() hands an experiment with [hosts] to run_on_hosts()
(bench/hosts/sweep.py), which calls run_pair for one pair, or once per Dask
task for several, and writes the same batch folder, Parquet rows and summary
as a local batch.  The rows are built as run/batch.py builds them (run/rows.py
base_row, run/measure.py's server figures).
"""
from __future__ import annotations

import asyncio
import math
import shlex
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Dict, List, Optional, Sequence

from .remote import (PairRun, RemoteError, close_pair, merge_wrk_clients, open_pair,
                     pair_columns, read_distribution)
from .hosts_table import HostPair, HostsSpec
from ..experiment.files import Experiment, Shape
from ..experiment.split import cpu_list
from ..experiment.targets import Target
from ..run.measure import CLIENT_SATURATION, server_figures, server_util
from ..run.rows import base_row, runs_of, slug, utcnow
from ..run.servers import stack_command

RUN_SLACK_S = 30.0      # past duration + timeout, a load is killed
# T is this far after every agent said ready (one SSH round trip to send it, with room)
START_MARGIN_S = 0.25


def client_loads(shape: Shape, run: PairRun, port: int) -> List[Dict[str, object]]:
    """Each client's share of the shape's connections, its threads and its wrk command."""
    if shape.connections == "max":
        raise RemoteError("connections = \"max\" runs on this machine only")
    total = int(shape.connections)
    n = len(run.clients)
    loads = []
    for i, (session, cpus) in enumerate(zip(run.clients, run.client_cpus)):
        conns = total // n + (1 if i < total % n else 0)
        if conns < 1:
            raise RemoteError(f"{total} connections cannot be split over {n} client hosts")
        threads = max(1, min(len(cpus), conns))
        script = f"{session.workdir.rstrip('/')}/kourier_lab/bench/load/lua/latency_dump.lua"
        url = f"http://{_url_host(run.pair.address)}:{port}{shape.path}"
        cmd = ["wrk", "--latency", "-t", str(threads), "-c", str(conns),
               "-d", f"{int(shape.duration_s)}s", "--timeout", f"{int(shape.timeout_s)}s",
               "-s", script, url, "--", str(shape.pipeline)]
        if shape.corpus:
            # the client's checkout holds the same commit's data/corpora/ (the row
            # records the sha256 of this machine's file)
            cmd += ["corpus", f"{session.workdir.rstrip('/')}/data/corpora/{shape.corpus}.corpus"]
        elif shape.browser:
            cmd.append("browser")
        loads.append({"session": session, "cpus": cpus, "connections": conns,
                      "threads": threads, "command": cmd})
    return loads


def _url_host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


async def _run_loads(run: PairRun, loads, remote_dir: str, tag: str, duration_s: float,
                     timeout_s: float, server_pid: Optional[int], sample: bool):
    """Start every client's load at one instant (and the server sampler); their JSON.

    Every agent is started first and says when it is ready; only then is T
    chosen (now + START_MARGIN_S + twice the worst clock uncertainty) and sent
    to each in its own clock, so no agent's start-up delays its window."""
    import time
    deadline = duration_s + timeout_s + RUN_SLACK_S
    outs = [f"{remote_dir}/{ld['session'].host.label.replace(':', '_')}-{i}-{tag}.txt"
            for i, ld in enumerate(loads)]
    procs = []
    sampler = None
    usage = None
    try:
        if sample and server_pid:
            sampler = await run.server.start(
                "sample", "--pid", str(server_pid), "--cpus", cpu_list(run.split.server_cpus),
                "--start-at", "stdin", "--max-s", f"{duration_s:g}")
        for ld, out in zip(loads, outs):
            procs.append(await ld["session"].start(
                "load", "--start-at", "stdin", "--cpus", cpu_list(ld["cpus"]), "--out", out,
                "--deadline-s", f"{deadline:.0f}", "--", *ld["command"]))
        everyone = ([sampler] if sampler else []) + procs
        for p in everyone:
            if not (await p.read_json(60.0)).get("ready"):
                raise RemoteError(f"{p.session.host.label}: the agent did not say ready")
        t_start = time.time() + START_MARGIN_S + 2 * max(s.clock_uncertainty_s
                                                         for s in run.sessions)
        for p in everyone:
            await p.send_line(f"{t_start + p.session.clock_offset_s:.6f}")
        results = [await p.read_json(deadline + 60) for p in procs]
        if sampler is not None:               # it ends by itself after the duration
            usage = await sampler.read_json(duration_s + 30.0)
    finally:
        for p in ([sampler] if sampler else []) + procs:
            await p.close()
    return results, outs, usage


def _alignment(run: PairRun, loads, results) -> Dict[str, object]:
    """How far apart the clients' counted windows were, in the harness's clock."""
    starts = [r["start"] - ld["session"].clock_offset_s for ld, r in zip(loads, results)]
    ends = [r["end"] - ld["session"].clock_offset_s for ld, r in zip(loads, results)]
    return {"window_start_spread_ms": 1e3 * (max(starts) - min(starts)),
            "window_end_spread_ms": 1e3 * (max(ends) - min(ends)),
            "clients_on_time": all(bool(r.get("on_time")) for r in results),
            "_starts": starts, "_ends": ends}


async def _fetch_and_merge(run, loads, results, outs, batch_dir: Path, raw_rel: Path):
    from ..load.wrk import WrkError, parse_wrk_output
    clients, dists, raw_paths = [], [], []
    for i, (ld, res, out) in enumerate(zip(loads, results, outs)):
        s = ld["session"]
        local = batch_dir / raw_rel.parent / f"{raw_rel.stem}-{s.host.label.replace(':', '_')}" \
                                             f"-{i}.txt"
        if not await s.get(out, local):
            raise RemoteError(f"{s.host.label}: wrk's output {out} could not be fetched")
        lat_local = local.with_suffix(".latency")
        await s.get(str(Path(out).with_suffix(".latency")), lat_local)
        raw_paths.append(str(local.relative_to(batch_dir.parent)))
        text = local.read_text(errors="replace")
        if res.get("killed"):
            raise RemoteError(f"{s.host.label}: wrk did not finish in time and was killed")
        try:
            figures = parse_wrk_output(text)
        except WrkError as e:
            raise RemoteError(f"{s.host.label}: wrk exited with code {res.get('exit_code')}: "
                              f"{e}") from None
        wall = res["end"] - res["start"]
        figures.update(wrk_cpu_s=res["cpu_s"], wall_s=wall,
                       wrk_cpu_util=res["cpu_s"] / (wall * ld["threads"]) if wall > 0 else
                       math.nan, client_cpus_busy=res["busy"],
                       client_cpus_softirq=res["softirq"], wrk_exit_code=res["exit_code"])
        clients.append(figures)
        dists.append(read_distribution(lat_local))
    return clients, dists, raw_paths


def _server_usage(usage: Optional[Dict[str, object]]):
    if not usage:
        return None
    return SimpleNamespace(cpu_s=usage["cpu_user_s"] + usage["cpu_sys_s"],
                           cpu_user_s=usage["cpu_user_s"], cpu_sys_s=usage["cpu_sys_s"],
                           processes=usage["processes"], vmhwm_kb=usage["vmhwm_kb"],
                           vmpeak_kb=usage["vmpeak_kb"], vmrss_kb=usage["vmrss_kb"])


async def _counted_run(run, target, shape, exp, base, batch_id, batch_dir, remote_dir, loads,
                       server, runno) -> Dict[str, object]:
    tag = f"{slug(target.name)}-{shape.name}-run{runno}"
    raw_rel = Path("wrk") / f"{tag}.txt"
    row = dict(base, run=runno, timestamp=utcnow())
    results, outs, usage = await _run_loads(run, loads, remote_dir, tag, shape.duration_s,
                                            shape.timeout_s, server["pid"], sample=True)
    clients, dists, raw_paths = await _fetch_and_merge(run, loads, results, outs, batch_dir,
                                                       raw_rel)
    align = _alignment(run, loads, results)
    merged = merge_wrk_clients(clients, dists)
    threads = sum(ld["threads"] for ld in loads)
    walls = [c["wall_s"] for c in clients]
    figures = dict(merged)
    figures.update({
        "raw_path": raw_paths[0], "raw_paths": ";".join(raw_paths),
        "wrk_command": " ;; ".join(shlex.join(ld["command"]) for ld in loads),
        "wrk_raw": "\n----\n".join(c.get("wrk_raw", "") or "" for c in clients) or None,
        "wrk_url": clients[0].get("wrk_url"),
        "wrk_threads_reported": sum(c.get("wrk_threads_reported") or 0 for c in clients),
        "connections_reported": sum(c.get("connections_reported") or 0 for c in clients),
        "wrk_exit_code": max(int(c.get("wrk_exit_code") or 0) for c in clients),
        "wrk_cpu_util": merged["wrk_cpu_s"] / sum(w * ld["threads"]
                                                  for w, ld in zip(walls, loads)),
        "client_cpus_busy": sum(c["client_cpus_busy"] for c in clients) / len(clients),
        "client_cpus_softirq": sum(c["client_cpus_softirq"] for c in clients) / len(clients),
        "client_requests": ";".join(str(c["requests"]) for c in clients),
        "client_req_per_s": ";".join(f"{c['req_per_s']:.1f}" for c in clients),
        "window_start_spread_ms": align["window_start_spread_ms"],
        "window_end_spread_ms": align["window_end_spread_ms"],
        "clients_on_time": align["clients_on_time"],
    })
    figures["client_saturated"] = bool(figures["wrk_cpu_util"] >= CLIENT_SATURATION)
    if usage:
        # the server was sampled from T until the last client ended
        figures["wall_s"] = usage["end"] - usage["start"]
        figures["server_cpus_busy"] = usage["busy"]
        figures["server_cpus_softirq"] = usage["softirq"]
        figures["server_sample_start_lag_ms"] = 1e3 * (
            usage["start"] - run.server.clock_offset_s - min(align["_starts"]))
    else:
        figures["wall_s"] = max(walls)
    figures.update(server_figures(_server_usage(usage), figures["requests"]))
    server_util(figures, run.split.workers)
    row.update(figures)
    row["wrk_threads"] = threads
    notes = [base["note"]] if base.get("note") else []
    if figures["errors_socket"] or figures["non_2xx_3xx"]:
        notes.append(f"{figures['errors_socket']} socket errors, "
                     f"{figures['non_2xx_3xx']} non-2xx/3xx")
    if not align["clients_on_time"]:
        notes.append("a client started after the agreed instant (see window_start_spread_ms)")
    if usage and not usage.get("server_alive"):
        row["status"] = "failed"
        notes.append("the server exited during the run")
    if figures["client_saturated"]:
        notes.append(f"wrk used {figures['wrk_cpu_util']:.0%} of its CPUs: the client may be "
                     f"the limit")
    row["note"] = "; ".join(notes)
    return row


async def _run_target(run: PairRun, target: Target, exp: Experiment, batch_id: str,
                      batch_dir: Path, commit: str, progress: Callable[[int], None], say,
                      runs_of) -> List[Dict[str, object]]:
    rows: List[Dict[str, object]] = []
    cols = pair_columns(run)
    remote_dir = f"{run.server.workdir.rstrip('/')}/data/remote/{batch_id}"

    def base_for(shape):
        base = base_row(exp, run.split, batch_id, commit, target, shape)
        base.update(cols)
        base["client_cpus"] = ";".join(cpu_list(c) for c in run.client_cpus)
        base["profile_note"] = run.note
        base["latency_per_batch"] = shape.pipeline > 1
        return base

    if target.skip_reason or target.kind == "peer":
        reason = target.skip_reason or "peers run on this machine only (not on [hosts] yet)"
        for shape in exp.shapes:
            rows.append(dict(base_for(shape), status="skipped", note=reason))
            progress(runs_of(shape, exp))
        return rows
    log = f"{remote_dir}/logs/{slug(target.name)}.log"
    if target.kind == "ceiling":
        serve_args = ["--ceiling", exp.response]
    else:
        serve_args = ["--", *stack_command(target, run.split, exp, run.pair.address, "{port}",
                                             python=run.server.python)]
    jit = any("numba" in (v or "") for v in (target.loop, target.parser, target.buffer))
    proc = await run.server.start("serve", "--address", run.pair.address, "--cpus",
                                  cpu_list(run.split.server_cpus), "--log", log,
                                  "--ready-timeout", "60" if jit else "15", *serve_args)
    try:
        try:
            server = await proc.read_json(90.0)
            if "error" in server:
                raise RemoteError(f"{run.server.host.label}: {server['error']}")
        except (RemoteError, asyncio.TimeoutError) as e:
            say(f"failed {target.name} on {run.pair.label}: {e}")
            for shape in exp.shapes:
                rows.append(dict(base_for(shape), status="failed", note=f"start: {e}"))
                progress(runs_of(shape, exp))
            return rows
        pinned = sorted(server.get("affinity", [])) == sorted(run.split.server_cpus)
        for shape in exp.shapes:
            base = base_for(shape)
            base["server_pinned"] = pinned
            base["server_port"] = server["port"]
            try:
                loads = client_loads(shape, run, server["port"])
                base["connections"] = sum(ld["connections"] for ld in loads)
                base["wrk_threads"] = sum(ld["threads"] for ld in loads)
                first = run.clients[0]
                got = await first.agent("ready", run.pair.address, str(server["port"]),
                                        shape.path, "--pipeline", str(min(shape.pipeline, 256)),
                                        *(["--browser"] if shape.browser else []), timeout=60)
                if shape.corpus:
                    # the corpus's requests differ: mean_request_bytes (the base row's)
                    # says their size; the response is the benchmark app's either way
                    base.update(request_bytes=None, response_bytes=got["response_bytes"])
                else:
                    base.update(request_bytes=got["request_bytes"],
                                mean_request_bytes=got["request_bytes"],
                                response_bytes=got["response_bytes"])
                if exp.warmup_s:
                    warm = [dict(ld, command=[c if c != f"{int(shape.duration_s)}s"
                                              else f"{exp.warmup_s}s" for c in ld["command"]])
                            for ld in loads]
                    await _run_loads(run, warm, remote_dir, f"{slug(target.name)}-"
                                     f"{shape.name}-warmup", exp.warmup_s, shape.timeout_s,
                                     None, sample=False)
            except RemoteError as e:
                say(f"failed {target.name} {shape.name} on {run.pair.label}: {e}")
                rows.append(dict(base, status="failed", note=f"verification: {e}"))
                progress(runs_of(shape, exp))
                continue
            for runno in range(1, exp.repetitions + 1):
                if runno > 1 and exp.pause_s:
                    await asyncio.sleep(exp.pause_s)
                try:
                    row = await _counted_run(run, target, shape, exp, base, batch_id, batch_dir,
                                             remote_dir, loads, server, runno)
                except RemoteError as e:
                    row = dict(base, run=runno, status="failed", note=f"wrk: {e}")
                if row["status"] != "ok":
                    say(f"failed {target.name} {shape.name} run {runno} on {run.pair.label}: "
                        f"{row['note']}")
                rows.append(row)
                progress(1)
    finally:
        await proc.close(timeout=30.0)
    return rows


async def _run_pair_async(exp, pair, spec, targets, batch_id, batch_dir, commit, progress,
                          say, runs_of, lock=None):
    run = await open_pair(pair, spec, exp.profile, commit, echo=say)
    rows: List[Dict[str, object]] = []
    try:
        say(f"{pair.label}: server CPUs {cpu_list(run.split.server_cpus)} on "
            f"{pair.server.label}, wrk CPUs "
            f"{', '.join(cpu_list(c) for c in run.client_cpus)} on "
            f"{', '.join(c.host.label for c in run.clients)}"
            f"{'; ' + run.shared_warning if run.shared_warning else ''}")
        for target in targets:
            rows.extend(await _run_target(run, target, exp, batch_id, batch_dir, commit,
                                          progress, say, runs_of))
    finally:
        await asyncio.gather(*(s.run(f"rm -rf {shlex.quote(s.workdir.rstrip('/'))}/data/"
                                     f"remote/{shlex.quote(batch_id)}")
                               for s in run.sessions), return_exceptions=True)
        await close_pair(run)
    return rows


def run_pair(exp: Experiment, pair: HostPair, spec: HostsSpec, targets: Sequence[Target],
             batch_id: str, batch_dir: Path, commit: str,
             progress: Callable[[int], None] = lambda n: None,
             say: Callable[[str], None] = print) -> List[Dict[str, object]]:
    """Every target of the experiment on one host pair; its rows."""
    return asyncio.run(_run_pair_async(exp, pair, spec, list(targets), batch_id, batch_dir,
                                       commit, progress, say, runs_of))
