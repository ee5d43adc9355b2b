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
from ..load.wrk import ensure_wrk
from .servers import (HOST, ServerStartError, connection_workers, log_tail, raise_fd_limit,
                      start_server, stop_server)
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
    targets = expand_targets(exp.stacks, exp.peers, exp.head_memo, exp.fold_runs, exp.uring_features,
                             getattr(exp, "ceilings", ("epoll",)))
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
    # a row measures the app it names, never a router it did not need; and per
    # worker count: a shape with more connections than one process's file cap
    # holds gets a server with more workers (sharing the server CPUs)
    by_app: Dict[tuple, List[Shape]] = {}
    for shape in exp.shapes:
        why = _cannot_serve(target, shape)
        if why:
            _skipped(rows, exp, split, batch_id, commit, target, [shape], bar, "skipped", why)
        else:
            workers = connection_workers(split, shape.connections)
            by_app.setdefault((shape.app, workers), []).append(shape)
    for (app, workers), shapes in by_app.items():
        bar.set_postfix_str(f"{target.name}: starting")
        log_name = (slug(target.name) + ("" if app == "default" else f"-{app}")
                    + ("" if workers == split.workers else f"-{workers}workers"))
        log_path = batch_dir / "logs" / f"{log_name}.log"
        try:
            server = start_server(target, split, exp, log_path, app=app, workers=workers)
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


@dataclasses.dataclass
class LoadTool:
    """One load tool as the batch drives it: its loads, its run function, how
    its row's notes read.  Every tool goes through the same cell (_run_cell):
    a warm-up, counted closed-loop runs and, for the tools with an open loop,
    the `rate` shape's sweep."""
    name: str                                   # the rows' load_tool
    raw_dir: str                                # its raw outputs' folder in the batch
    load: Callable[[Optional[float], float], object]    # (rate or None, seconds) -> its load
    run: Callable[..., Dict[str, object]]       # (load, client CPUs, server pid, raw path, server CPUs)
    notes: Callable[[Dict[str, object]], List[str]]     # what its figures say went wrong
    open_loop: bool = False


def _load_tool(shape: Shape, split, load, wrk, load_io: Optional[str] = None) -> LoadTool:
    """The shape's load tool (the rows' load_tool: kourier-lab, wrk or h2load)."""
    if shape.load_tool == "kourier-lab":
        from ..load.kourier import KourierLoad, browser_header_lines
        headers = tuple(browser_header_lines()) if shape.browser else ()

        def kourier_load(rate, duration):
            # pipeline 1 in the open loop: requests queue (pipelined) only when the server lags
            return KourierLoad(url=load.url, threads=load.threads, connections=load.connections,
                               duration_s=duration, pipeline=1 if rate else shape.pipeline,
                               rate=rate, corpus=load.corpus, headers=headers,
                               timeout_s=shape.timeout_s, cpus=list(split.client_cpus), io=load_io,
                               # thousands of connections: source addresses over 127/8, so the
                               # runs of one server never run out of ephemeral ports
                               sources=max(1, math.ceil(load.connections / 4096)))

        def kourier_notes(f):
            notes = []
            if f.get("errors_total") or f.get("non_2xx_3xx"):
                notes.append(f"{f.get('errors_total', 0)} errors {f.get('errors_by_kind')}, "
                             f"{f.get('non_2xx_3xx', 0)} non-2xx/3xx")
            if f["client_saturated"]:
                notes.append(f"the load generator used {f['client_cpu_util']:.0%} of its CPUs: "
                             "the client may be the limit")
            return notes

        return LoadTool("kourier-lab", "loadgen", kourier_load,
                        lambda ld, cc, pid, raw, sc: run_kourier(ld, cc, pid, raw, server_cpus=sc),
                        kourier_notes, open_loop=True)
    if shape.load_tool == "h2load":
        from ..load import h2load as h2

        def h2load_load(rate, duration):
            return h2.H2loadLoad(url=load.url, threads=load.threads, connections=load.connections,
                                 duration_s=duration, pipeline=shape.pipeline,
                                 browser=shape.browser, rate=rate)

        def h2load_run(ld, cc, pid, raw, sc):
            f = run_h2load(ld, cc, pid, raw, server_cpus=sc)
            f.setdefault("wrk_cpu_util", f.get("client_cpu_util", math.nan))
            f.setdefault("client_saturated", bool(f["wrk_cpu_util"] >= CLIENT_SATURATION))
            f["load_tool"] = "h2load"
            return f

        def h2load_notes(f):
            if f.get("errors_socket") or f.get("non_2xx_3xx"):
                return [f"{f.get('errors_socket', 0)} errors, {f.get('non_2xx_3xx', 0)} non-2xx/3xx"]
            return []

        return LoadTool("h2load", "h2load", h2load_load, h2load_run, h2load_notes, open_loop=True)

    def wrk_notes(f):
        notes = []
        if f["errors_socket"] or f["non_2xx_3xx"]:
            notes.append(f"{f['errors_socket']} socket errors, {f['non_2xx_3xx']} non-2xx/3xx")
        if f["client_saturated"]:
            notes.append(f"wrk used {f['wrk_cpu_util']:.0%} of its CPUs: the client may be the limit")
        return notes

    return LoadTool("wrk", "wrk", lambda rate, duration: dataclasses.replace(load, duration_s=duration),
                    lambda ld, cc, pid, raw, sc: run_wrk(ld, cc, pid, raw, wrk, sc), wrk_notes)


def _run_cell(server, target, shape, exp, split, batch_id, batch_dir, commit, wrk, bar, say):
    rows = []
    base = base_row(exp, split, batch_id, commit, target, shape)
    base["workers"] = server.workers
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
    if load_note:
        base["note"] = "; ".join(filter(None, [base.get("note"), load_note]))

    def failed(why):
        base.update(status="failed", note=why)
        say(f"failed {label}: {why}")
        bar.update(runs_of(shape, exp))
        return [base]

    if shape.load_tool == "h2load":
        from ..load.h2load import ensure_h2load
        try:
            ensure_h2load()
        except RuntimeError as e:
            return failed(f"h2load: {one_line(e)}")
    tool = _load_tool(shape, split, load, wrk, exp.load_io)
    if exp.warmup_s:
        bar.set_postfix_str(f"{label}: warm-up")
        try:
            tool.run(tool.load(None, exp.warmup_s), split.client_cpus, None, None, ())
        except RuntimeError as e:
            return failed(f"warm-up: {one_line(e)}")
    try:
        _tool_runs(rows, tool, server, target, shape, exp, split, base, batch_id, batch_dir, bar,
                   say, label)
    except KeyboardInterrupt as e:
        keep_rows(e, rows)
        raise
    return rows


def _tool_row(tool, server, target, shape, split, base, batch_id, batch_dir, run, rate):
    """One run of the tool: the row with its figures, or failed with the reason."""
    tag = f"-{int(rate)}rps" if rate else ""
    raw_rel = Path(tool.raw_dir) / f"{slug(target.name)}-{shape.name}{tag}-run{run}.txt"
    row = dict(base, run=run, timestamp=utcnow(), raw_path=str(Path(batch_id) / raw_rel),
               offered_rate=rate)
    if server.proc.poll() is not None:
        row.update(status="failed", note=f"the server exited with code {server.proc.returncode}; "
                                         f"log: {log_tail(server.log_path)}")
        return row
    try:
        figures = tool.run(tool.load(rate, shape.duration_s), split.client_cpus, server.proc.pid,
                           batch_dir / raw_rel, split.server_cpus)
    except RuntimeError as e:          # the tool failed or printed no report
        row.update(status="failed", note=f"{tool.name}: {one_line(e)}")
        return row
    server_util(figures, len(split.server_cpus))
    row.update(figures)
    row["note"] = "; ".join(([base["note"]] if base.get("note") else []) + tool.notes(figures))
    return row


def _tool_runs(rows, tool, server, target, shape, exp, split, base, batch_id, batch_dir, bar, say,
               label):
    """Closed-loop runs, or (the `rate` shape, a tool with an open loop) the rate
    sweep: a closed-loop probe first when no rates are given, then rates up to
    150 % of its throughput.  Rows go into the caller's list (kept on an interrupt)."""
    def one(run, rate, what):
        bar.set_postfix_str(f"{label}: {what}")
        row = _tool_row(tool, server, target, shape, split, base, batch_id, batch_dir, run, rate)
        if row["status"] != "ok":
            say(f"failed {label}{f' at {rate:,.0f} req/s' if rate else ''} run {run}: {row['note']}")
        rows.append(row)
        bar.update(1)

    if shape.name != "rate" or not tool.open_loop:
        for run in range(1, exp.repetitions + 1):
            if run > 1 and exp.pause_s:
                time.sleep(exp.pause_s)
            one(run, None, f"run {run}/{exp.repetitions}")
        return
    from ..load.h2load import rate_sweep
    rates = list(shape.rates)
    if not rates:
        bar.set_postfix_str(f"{label}: closed-loop probe")
        probe = _tool_row(tool, server, target, shape, split, base, batch_id, batch_dir, 0, None)
        probe["shape"] = "rate-probe"
        rows.append(probe)
        if probe["status"] != "ok" or not probe.get("req_per_s"):
            say(f"failed {label}: closed-loop probe: {probe['note']}")
            bar.update(runs_of(shape, exp))
            return
        rates = rate_sweep(1.5 * float(probe["req_per_s"]), shape.rate_steps)
    for rate in rates:
        for run in range(1, exp.repetitions + 1):
            if exp.pause_s:
                time.sleep(min(exp.pause_s, 0.5))
            one(run, float(rate), f"{rate:,.0f} req/s offered, run {run}")


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
