"""The harness: start each server on its CPUs (servers.py), verify it, warm it
up, load it with the lab's load generator (native/loadgen.c, the default), wrk
or h2load a counted number of times while sampling its
process tree (measure.py), keep every run as a row (rows.py's columns plus the
run's figures), stop it, and move on.

    df = run_experiment("experiments/quick.toml", quick=False)

Rows are written after every server (so an interrupted batch keeps what it
measured) by results/store.py's write_rows to <results>/<batch_id>/rows.parquet,
the load tools' raw outputs next to them in <results>/<batch_id>/loadgen/, wrk/
and h2load/, server logs in <results>/<batch_id>/logs/.  An experiment with [hosts]
goes to hosts/sweep.py's run_on_hosts instead.
"""
from __future__ import annotations


import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Union

from ..experiment import ceiling as _ceiling
from .machine import git_commit
from ..experiment.files import Experiment, Shape, load_experiment
from ..experiment.split import cpu_list, plan_split
from ..experiment.targets import Target, expand_targets
from .verify import VerifyError, verify_server
from ..load.wrk import WrkError, ensure_wrk
from .servers import HOST, ServerStartError, log_tail, raise_fd_limit, start_server, stop_server
from .measure import CLIENT_SATURATION, resolve_load, run_h2load, run_kourier, run_wrk, server_util
from .rows import base_row, corpus_info, one_line, runs_of, slug, tqdm_class, utcnow

def run_experiment(spec: Union[str, Path, Experiment], quick: bool = False,
                   out: Union[str, Path, None] = None, progress: bool = True,
                   echo: Optional[Callable[[str], None]] = None,
                   figures: Union[bool, str, Path] = False, summary: bool = True,
                   cpus: Optional[Sequence[int]] = None):
    """Run an experiment; returns its rows as a DataFrame (attrs: batch_id, batch_dir).

    quick     shrink durations and repetitions (spec.quickened()) for tests/notebooks
    out       results directory (default data/results or $KOURIER_LAB_RESULTS)
    figures   False, True (data/figures) or a directory: write the plots there
    summary   print the summary table at the end
    cpus      restrict the CPUs split between server and wrk (default: all usable)
    """
    # progress: True/False, or a tqdm-like class (the lab panel's live progress)
    tqdm = progress if isinstance(progress, type) else tqdm_class()

    from ..results import new_batch_dir, summary_text, write_rows

    exp = spec if isinstance(spec, Experiment) else load_experiment(spec)
    if quick and not exp.quick:
        exp = exp.quickened()
    if exp.hosts is not None:              # server and load tools on other hosts, over SSH
        from ..hosts.remote import RemoteError
        from ..hosts.sweep import run_on_hosts
        if cpus is not None:
            raise RemoteError("--cpus splits this machine's CPUs; with [hosts] the profile "
                              "splits each host's own (remove --cpus or the [hosts] table)")
        return run_on_hosts(exp, out=out, progress=progress, echo=echo, figures=figures,
                            summary=summary)
    wrk = ensure_wrk(echo=echo or print)
    split = plan_split(exp.profile, cpus)
    _ceiling.build_ceiling()
    raise_fd_limit()
    batch_id, batch_dir = new_batch_dir(exp.name, out)
    commit = git_commit()
    targets = expand_targets(exp.stacks, exp.peers, exp.head_memo, exp.fold_runs, exp.uring_features)
    rows: List[Dict[str, object]] = []

    bar = tqdm(total=len(targets) * sum(runs_of(s, exp) for s in exp.shapes), disable=not progress,
               unit="run", desc=exp.name, dynamic_ncols=True)
    say = echo or (lambda s: tqdm.write(s) if progress else print(s))
    if split.note:
        say(f"note: {split.note}")
    say(f"{exp.name}: {len(targets)} servers x {len(exp.shapes)} shapes x {exp.repetitions} runs; "
        f"server CPUs {cpu_list(split.server_cpus)}, "
        f"{'/'.join(sorted({sh.load_tool for sh in exp.shapes}))} CPUs {cpu_list(split.client_cpus)}"
        f"{' (quick)' if exp.quick else ''}")

    # Keep the harness itself off the server's CPUs while it samples.
    own_affinity = os.sched_getaffinity(0)
    interrupted = None
    try:
        if not split.shared:
            os.sched_setaffinity(0, set(split.client_cpus))
        for target in targets:
            rows.extend(_run_target(target, exp, split, batch_id, batch_dir, commit, wrk, bar,
                                    say))
            write_rows(rows, batch_dir)
    except KeyboardInterrupt as e:
        # SIGINT/SIGTERM (procs.interruptible) or a notebook's interrupt: the
        # servers are already stopped by the finally blocks on the way here;
        # keep every finished run, say what ran, then let the caller exit
        interrupted = e
        rows.extend(interrupted_rows(e))
    finally:
        os.sched_setaffinity(0, own_affinity)
        bar.close()
    write_rows(rows, batch_dir)
    from ..results import load_batch
    df = load_batch(batch_dir) if rows else pd_empty()
    df.attrs["batch_id"] = batch_id
    df.attrs["batch_dir"] = str(batch_dir)
    if interrupted is not None:
        done = sum(1 for r in rows if r.get("status") == "ok")
        (echo or print)(f"{exp.name}: interrupted ({getattr(interrupted, 'name', 'SIGINT')}) after "
                        f"{done} finished runs of {bar.total}; every server and load process it "
                        "started is stopped; rows so far are kept")
        if summary and rows:
            (echo or print)(summary_text(df))
        (echo or print)(f"rows: {batch_dir / 'rows.parquet'}" if rows else "rows: none finished")
        raise interrupted
    if summary:
        (echo or print)(summary_text(df))
        (echo or print)(f"rows: {batch_dir / 'rows.parquet'}")
    if figures:
        from ..plots.throughput import write_figures
        fig_dir = None if figures is True else Path(figures)
        paths = write_figures(df, fig_dir)
        (echo or print)(f"figures: {', '.join(str(p) for p in paths)}")
    return df


def _cannot_serve(target: Target, shape: Shape) -> str:
    """Why a target has no run in a shape ('' when it can run it)."""
    if shape.app == "default" or target.kind == "stack":
        return ""
    who = ("the ceiling only sends canned bytes" if target.kind == "ceiling" else
           "a peer serves only its own Hello World")
    return f"{shape.name} needs the {shape.app} app's Python handlers (--app {shape.app}); {who}"


def _skipped(rows, exp, split, batch_id, commit, target, shapes, bar, status, note):
    for shape in shapes:
        row = base_row(exp, split, batch_id, commit, target, shape)
        row.update(status=status, note=note)
        rows.append(row)
        bar.update(runs_of(shape, exp))


def _run_target(target, exp, split, batch_id, batch_dir, commit, wrk, bar, say):
    rows = []
    if target.skip_reason:
        say(f"skipped {target.kind} {target.name}: {target.skip_reason}")
        _skipped(rows, exp, split, batch_id, commit, target, exp.shapes, bar, "skipped",
                 target.skip_reason)
        return rows
    # one server per app the shapes need (the benchmark app, the demo app):
    # a row measures the app it names, never a router it did not need
    by_app: Dict[str, List[Shape]] = {}
    for shape in exp.shapes:
        why = _cannot_serve(target, shape)
        if why:
            _skipped(rows, exp, split, batch_id, commit, target, [shape], bar, "skipped", why)
        else:
            by_app.setdefault(shape.app, []).append(shape)
    for app, shapes in by_app.items():
        bar.set_postfix_str(f"{target.name}: starting")
        log_name = slug(target.name) + ("" if app == "default" else f"-{app}")
        log_path = batch_dir / "logs" / f"{log_name}.log"
        try:
            server = start_server(target, split, exp, log_path, app=app)
        except (ServerStartError, _ceiling.CeilingBuildError, OSError) as e:
            say(f"failed {target.kind} {target.name}: {one_line(e)}")
            _skipped(rows, exp, split, batch_id, commit, target, shapes, bar, "failed",
                     f"start: {one_line(e)}")
            continue
        try:
            for shape in shapes:
                rows.extend(_run_cell(server, target, shape, exp, split, batch_id, batch_dir,
                                      commit, wrk, bar, say))
        except KeyboardInterrupt as e:
            keep_rows(e, rows)
            raise
        finally:
            stop_server(server)
    return rows


def keep_rows(exc: BaseException, rows: List[Dict[str, object]]) -> None:
    """Attach rows finished before an interrupt to the exception on its way out
    (each level adds its own; run_experiment writes them all)."""
    if not hasattr(exc, "kourier_rows"):
        exc.kourier_rows = []
    exc.kourier_rows[:0] = rows


def interrupted_rows(exc: BaseException) -> List[Dict[str, object]]:
    return list(getattr(exc, "kourier_rows", []))


def pd_empty():
    import pandas as pd
    return pd.DataFrame()


def _run_cell(server, target, shape, exp, split, batch_id, batch_dir, commit, wrk, bar, say):
    rows = []
    base = base_row(exp, split, batch_id, commit, target, shape)
    load, load_note = resolve_load(shape, split, server.port)
    base.update(connections=load.connections, wrk_threads=load.threads)
    label = f"{target.name} {shape.name}"
    bar.set_postfix_str(f"{label}: verify")
    try:
        if shape.corpus:
            _verify_corpus(base, server.port, shape)
        else:
            verify_server(HOST, server.port, shape.path, pipeline=min(shape.pipeline, 256))
    except VerifyError as e:
        say(f"failed {label}: verification: {one_line(e)}")
        base.update(status="failed", note=f"verification: {one_line(e)}")
        bar.update(runs_of(shape, exp))
        return [base]
    if not shape.corpus:
        _measure_bytes(base, server.port, shape)
    base["latency_per_batch"] = shape.load_tool == "wrk" and shape.pipeline > 1
    if shape.load_tool == "kourier-lab":
        try:
            return _run_kourier_cell(server, target, shape, exp, split, base, batch_id, batch_dir,
                                     load, load_note, bar, say, into=rows)
        except KeyboardInterrupt as e:
            keep_rows(e, rows)
            raise
    if shape.load_tool == "h2load":
        try:
            return _run_h2load_cell(server, target, shape, exp, split, base, batch_id, batch_dir,
                                    load, load_note, bar, say, into=rows)
        except KeyboardInterrupt as e:
            keep_rows(e, rows)
            raise
    if exp.warmup_s:
        bar.set_postfix_str(f"{label}: warm-up")
        warm = dataclasses.replace(load, duration_s=exp.warmup_s)
        try:
            run_wrk(warm, split.client_cpus, None, None, wrk)
        except WrkError as e:
            say(f"failed {label}: warm-up: {one_line(e)}")
            base.update(status="failed", note=f"warm-up: {one_line(e)}")
            bar.update(exp.repetitions)
            return [base]
    try:
        _wrk_runs(rows, server, target, shape, exp, split, base, batch_id, batch_dir, load,
                  load_note, wrk, bar, say, label)
    except KeyboardInterrupt as e:
        keep_rows(e, rows)
        raise
    return rows


def _wrk_runs(rows, server, target, shape, exp, split, base, batch_id, batch_dir, load, load_note,
              wrk, bar, say, label):
    for run in range(1, exp.repetitions + 1):
        if run > 1 and exp.pause_s:
            time.sleep(exp.pause_s)
        bar.set_postfix_str(f"{label}: run {run}/{exp.repetitions}")
        raw_rel = Path("wrk") / f"{slug(target.name)}-{shape.name}-run{run}.txt"
        row = dict(base, run=run, timestamp=utcnow(), raw_path=str(Path(batch_id) / raw_rel))
        if server.proc.poll() is not None:
            row.update(status="failed",
                       note=f"the server exited with code {server.proc.returncode}; log: "
                            f"{log_tail(server.log_path)}")
        else:
            try:
                figures = run_wrk(load, split.client_cpus, server.proc.pid,
                                  batch_dir / raw_rel, wrk, split.server_cpus)
                server_util(figures, split.workers)
                row.update(figures)
                notes = [load_note] if load_note else []
                if figures["errors_socket"] or figures["non_2xx_3xx"]:
                    notes.append(f"{figures['errors_socket']} socket errors, "
                                 f"{figures['non_2xx_3xx']} non-2xx/3xx")
                if figures["client_saturated"]:
                    notes.append(f"wrk used {figures['wrk_cpu_util']:.0%} of its CPUs: "
                                 "the client may be the limit")
                row["note"] = "; ".join(notes)
            except WrkError as e:
                row.update(status="failed", note=f"wrk: {one_line(e)}")
        if row["status"] != "ok":
            say(f"failed {label} run {run}: {row['note']}")
        rows.append(row)
        bar.update(1)
    return rows


def _measure_bytes(base: Dict[str, object], port: int, shape: Shape) -> None:
    """request_bytes / response_bytes of this shape's request, read off the wire."""
    from . import verify
    measure = getattr(verify, "measure_bytes", None)
    if measure is None:
        return
    try:
        req, resp = measure(HOST, port, shape.path, browser=shape.browser)
    except (VerifyError, OSError) as e:
        base["note"] = f"bytes not measured: {one_line(e)}"
        return
    # measure_bytes sends wrk's request (our load generator's too); h2load's own headers differ, so its
    # request size is not claimed (the response is the same either way)
    sent = req if shape.load_tool in ("wrk", "kourier-lab") else None
    base.update(request_bytes=sent, mean_request_bytes=sent, response_bytes=resp)


def _verify_corpus(base: Dict[str, object], port: int, shape: Shape) -> None:
    """A corpus shape's check: one write of the corpus's first `pipeline` requests
    (as wrk's first batch) must come back as exactly that many 200 responses
    (the benchmark app's body on the default app).  request_bytes is left empty
    (requests differ: mean_request_bytes says their size); response_bytes is
    the mean over that batch."""
    from .verify import verify_requests
    c = corpus_info(shape.corpus)
    depth = max(1, min(shape.pipeline, len(c.sample)))
    sizes = verify_requests(HOST, port, list(c.sample[:depth]),
                            any_body=shape.app != "default")
    base.update(request_bytes=None, response_bytes=round(sum(sizes) / len(sizes)))


def _h2load_row(server, target, shape, split, base, batch_id, batch_dir, load, run, rate):
    tag = f"-{int(rate)}rps" if rate else ""
    raw_rel = Path("h2load") / f"{slug(target.name)}-{shape.name}{tag}-run{run}.txt"
    row = dict(base, run=run, timestamp=utcnow(), raw_path=str(Path(batch_id) / raw_rel),
               offered_rate=rate)
    if server.proc.poll() is not None:
        row.update(status="failed", note=f"the server exited with code {server.proc.returncode}; "
                                         f"log: {log_tail(server.log_path)}")
        return row
    try:
        figures = run_h2load(load, split.client_cpus, server.proc.pid, batch_dir / raw_rel,
                             server_cpus=split.server_cpus)
    except RuntimeError as e:          # h2load failed or printed no report
        row.update(status="failed", note=f"h2load: {one_line(e)}")
        return row
    figures.setdefault("wrk_cpu_util", figures.get("client_cpu_util", math.nan))
    figures.setdefault("client_saturated", bool(figures["wrk_cpu_util"] >= CLIENT_SATURATION))
    server_util(figures, split.workers)
    row.update(figures)
    row["load_tool"] = "h2load"
    notes = [base["note"]] if base.get("note") else []
    if figures.get("errors_socket") or figures.get("non_2xx_3xx"):
        notes.append(f"{figures.get('errors_socket', 0)} errors, "
                     f"{figures.get('non_2xx_3xx', 0)} non-2xx/3xx")
    row["note"] = "; ".join(notes)
    return row


def _run_h2load_cell(server, target, shape, exp, split, base, batch_id, batch_dir, load,
                     load_note, bar, say, into=None):
    """Closed-loop h2load runs (per-request latency), or the open-loop rate sweep."""
    from ..load import h2load as h2
    label = f"{target.name} {shape.name}"
    if load_note:
        base["note"] = "; ".join(filter(None, [base.get("note"), load_note]))
    try:
        h2.ensure_h2load()
    except RuntimeError as e:
        base.update(status="failed", note=f"h2load: {one_line(e)}")
        say(f"failed {label}: {base['note']}")
        bar.update(runs_of(shape, exp))
        return [base]

    def h2load_load(rate, duration):
        return h2.H2loadLoad(url=load.url, threads=load.threads, connections=load.connections,
                             duration_s=duration, pipeline=shape.pipeline, browser=shape.browser,
                             rate=rate)

    if exp.warmup_s:
        bar.set_postfix_str(f"{label}: warm-up")
        try:
            run_h2load(h2load_load(None, exp.warmup_s), split.client_cpus, None, None)
        except RuntimeError as e:
            base.update(status="failed", note=f"warm-up: {one_line(e)}")
            say(f"failed {label}: {base['note']}")
            bar.update(runs_of(shape, exp))
            return [base]
    rows = into if into is not None else []      # the caller's list: kept on an interrupt
    if shape.name != "rate":
        for run in range(1, exp.repetitions + 1):
            if run > 1 and exp.pause_s:
                time.sleep(exp.pause_s)
            bar.set_postfix_str(f"{label}: h2load run {run}/{exp.repetitions}")
            row = _h2load_row(server, target, shape, split, base, batch_id, batch_dir,
                              h2load_load(None, shape.duration_s), run, None)
            if row["status"] != "ok":
                say(f"failed {label} run {run}: {row['note']}")
            rows.append(row)
            bar.update(1)
        return rows
    rates = list(shape.rates)
    if not rates:
        # the closed-loop throughput first: the sweep goes up to 150 % of it
        bar.set_postfix_str(f"{label}: closed-loop probe")
        probe = _h2load_row(server, target, shape, split, base, batch_id, batch_dir,
                            h2load_load(None, shape.duration_s), 0, None)
        probe["shape"] = "rate-probe"
        rows.append(probe)
        if probe["status"] != "ok" or not probe.get("req_per_s"):
            say(f"failed {label}: closed-loop probe: {probe['note']}")
            bar.update(runs_of(shape, exp))
            return rows
        rates = h2.rate_sweep(1.5 * float(probe["req_per_s"]), shape.rate_steps)
    for rate in rates:
        for run in range(1, exp.repetitions + 1):
            if exp.pause_s:
                time.sleep(min(exp.pause_s, 0.5))
            bar.set_postfix_str(f"{label}: {rate:,.0f} req/s offered, run {run}")
            row = _h2load_row(server, target, shape, split, base, batch_id, batch_dir,
                              h2load_load(float(rate), shape.duration_s), run, float(rate))
            if row["status"] != "ok":
                say(f"failed {label} at {rate:,.0f} req/s run {run}: {row['note']}")
            rows.append(row)
            bar.update(1)
    return rows


def _kourier_row(server, target, shape, split, base, batch_id, batch_dir, load, run, rate):
    tag = f"-{int(rate)}rps" if rate else ""
    raw_rel = Path("loadgen") / f"{slug(target.name)}-{shape.name}{tag}-run{run}.txt"
    row = dict(base, run=run, timestamp=utcnow(), raw_path=str(Path(batch_id) / raw_rel),
               offered_rate=rate)
    if server.proc.poll() is not None:
        row.update(status="failed", note=f"the server exited with code {server.proc.returncode}; "
                                         f"log: {log_tail(server.log_path)}")
        return row
    try:
        figures = run_kourier(load, split.client_cpus, server.proc.pid, batch_dir / raw_rel,
                              server_cpus=split.server_cpus)
    except RuntimeError as e:          # it failed or printed no summary
        row.update(status="failed", note=f"loadgen: {one_line(e)}")
        return row
    server_util(figures, split.workers)
    row.update(figures)
    notes = [base["note"]] if base.get("note") else []
    if figures.get("errors_total") or figures.get("non_2xx_3xx"):
        notes.append(f"{figures.get('errors_total', 0)} errors {figures.get('errors_by_kind')}, "
                     f"{figures.get('non_2xx_3xx', 0)} non-2xx/3xx")
    if figures["client_saturated"]:
        notes.append(f"the load generator used {figures['client_cpu_util']:.0%} of its CPUs: "
                     "the client may be the limit")
    row["note"] = "; ".join(notes)
    return row


def _run_kourier_cell(server, target, shape, exp, split, base, batch_id, batch_dir, load,
                      load_note, bar, say, into=None):
    """The lab's load generator: closed-loop runs, or the open-loop rate sweep
    (h2load's cell, with every request's latency from its intended send time)."""
    from ..load import h2load as h2
    from ..load.kourier import KourierLoad, browser_header_lines
    label = f"{target.name} {shape.name}"
    if load_note:
        base["note"] = "; ".join(filter(None, [base.get("note"), load_note]))
    headers = tuple(browser_header_lines()) if shape.browser else ()

    def kourier_load(rate, duration):
        # pipeline 1 in the open loop: requests queue (pipelined) only when the server lags
        return KourierLoad(url=load.url, threads=load.threads, connections=load.connections,
                           duration_s=duration, pipeline=1 if rate else shape.pipeline,
                           rate=rate, corpus=load.corpus, headers=headers,
                           timeout_s=shape.timeout_s, cpus=list(split.client_cpus))

    if exp.warmup_s:
        bar.set_postfix_str(f"{label}: warm-up")
        try:
            run_kourier(kourier_load(None, exp.warmup_s), split.client_cpus, None, None)
        except RuntimeError as e:
            base.update(status="failed", note=f"warm-up: {one_line(e)}")
            say(f"failed {label}: {base['note']}")
            bar.update(runs_of(shape, exp))
            return [base]
    rows = into if into is not None else []      # the caller's list: kept on an interrupt
    if shape.name != "rate":
        for run in range(1, exp.repetitions + 1):
            if run > 1 and exp.pause_s:
                time.sleep(exp.pause_s)
            bar.set_postfix_str(f"{label}: run {run}/{exp.repetitions}")
            row = _kourier_row(server, target, shape, split, base, batch_id, batch_dir,
                               kourier_load(None, shape.duration_s), run, None)
            if row["status"] != "ok":
                say(f"failed {label} run {run}: {row['note']}")
            rows.append(row)
            bar.update(1)
        return rows
    rates = list(shape.rates)
    if not rates:
        bar.set_postfix_str(f"{label}: closed-loop probe")
        probe = _kourier_row(server, target, shape, split, base, batch_id, batch_dir,
                             kourier_load(None, shape.duration_s), 0, None)
        probe["shape"] = "rate-probe"
        rows.append(probe)
        if probe["status"] != "ok" or not probe.get("req_per_s"):
            say(f"failed {label}: closed-loop probe: {probe['note']}")
            bar.update(runs_of(shape, exp))
            return rows
        rates = h2.rate_sweep(1.5 * float(probe["req_per_s"]), shape.rate_steps)
    for rate in rates:
        for run in range(1, exp.repetitions + 1):
            if exp.pause_s:
                time.sleep(min(exp.pause_s, 0.5))
            bar.set_postfix_str(f"{label}: {rate:,.0f} req/s offered, run {run}")
            row = _kourier_row(server, target, shape, split, base, batch_id, batch_dir,
                               kourier_load(float(rate), shape.duration_s), run, float(rate))
            if row["status"] != "ok":
                say(f"failed {label} at {rate:,.0f} req/s run {run}: {row['note']}")
            rows.append(row)
            bar.update(1)
    return rows
