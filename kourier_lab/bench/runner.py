"""The harness: start each server on its CPUs, verify it, warm it up, load it
with wrk a counted number of times while sampling its process tree, keep
every run as a row, stop it, and move on.

    df = run_experiment("experiments/quick.toml", quick=False)

Rows are written after every server (so an interrupted batch keeps what it
measured) to  <results>/<batch_id>/rows.parquet, wrk's raw outputs next to them
in <results>/<batch_id>/wrk/, server logs in <results>/<batch_id>/logs/.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import importlib
import math
import os
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

from .. import procs as _procs
from . import ceiling as _ceiling
from .bottleneck import classify_row as classify_bottleneck
from .machine import git_commit, machine_info
from .paths import repo_root
from .sampler import TreeSampler, cpu_fractions, cpu_ticks, pin_tree
from .spec import MAX_CONNECTIONS_DEFAULT, Experiment, Shape, load_experiment
from .split import Split, cpu_list, plan_split
from .targets import Target, expand_targets, peers_module
from .verify import VerifyError, free_port, verify_server, wait_ready
from .wrk import WrkError, WrkLoad, ensure_wrk, parse_wrk_output, shell_line

HOST = "127.0.0.1"
# wrk's own CPU use at or above this fraction of its CPUs means wrk, not the
# server, may have been the limit.
CLIENT_SATURATION = 0.90
SAMPLE_INTERVAL_S = 0.25
READY_TIMEOUT_S = 15.0
READY_TIMEOUT_JIT_S = 60.0     # Numba variants compile on first start


class ServerStartError(RuntimeError):
    pass


# ---------------------------------------------------------------------------
# Servers


@dataclasses.dataclass
class RunningServer:
    target: Target
    proc: subprocess.Popen
    port: int
    log_path: Path
    pids_seen: set = dataclasses.field(default_factory=set)


def _pin(cpus):
    cpus = set(cpus)
    return lambda: os.sched_setaffinity(0, cpus)


def _log_tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def _server_env() -> Dict[str, str]:
    env = dict(os.environ)
    root = str(repo_root())
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _most_connections(exp: Experiment) -> int:
    return max((connection_budget() if s.connections == "max" else int(s.connections))
               for s in exp.shapes)


def stack_command(target: Target, split: Split, exp: Experiment, host: str, port,
                  python: str = sys.executable, app: str = "default") -> List[str]:
    """`kourier-lab serve` for a stack target (bench/remote.py runs the same line remotely);
    app "demo" serves kourier_lab/server/demo.py (the api shape's handlers)."""
    return [python, "-m", "kourier_lab.cli", "serve", "-a", host, "-p", str(port),
            "--worker-count", str(split.workers), "--loop", target.loop,
            "--parser", target.parser, "--buffer", target.buffer,
            "--request-timeout", f"{exp.request_timeout_s:g}",
            "--idle-timeout", f"{exp.idle_timeout_s:g}",
            "--cpus", cpu_list(split.server_cpus),
            "--head-memo", "on" if target.head_memo else "off",
            "--fold-runs", "on" if target.fold_runs else "off",
            *(["--app", app] if app != "default" else []),
            "--response", exp.response,
            # room for the experiment's largest load on any one worker
            "--max-connections", str(max(10000, _most_connections(exp) + 100))]


def start_server(target: Target, split: Split, exp: Experiment, log_path: Path,
                 app: str = "default") -> RunningServer:
    port = free_port(HOST)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if target.kind == "ceiling":
        cmd = _ceiling.ceiling_command(port, split.server_cpus, response=exp.response)
    elif target.kind == "stack":
        cmd = stack_command(target, split, exp, HOST, port, app=app)
    else:
        cmd = None
    if cmd is not None:
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    preexec_fn=_pin(split.server_cpus), env=_server_env(),
                                    cwd=str(repo_root()))
        _procs.register(proc, target.name)
    else:
        mod, problem = peers_module()
        if mod is None:
            raise ServerStartError(problem)
        try:
            proc = mod.start(target.name, HOST, port, split.workers, list(split.server_cpus))
        except Exception as e:
            raise ServerStartError(f"peers.start({target.name!r}) failed: "
                                   f"{type(e).__name__}: {e}") from None
        _procs.register(proc, target.name)
        log_path.write_text(f"peer {target.name} started by kourier_lab.peers.start "
                            f"(its output is not captured here)\n")
    server = RunningServer(target, proc, port, log_path)
    jit = any("numba" in (v or "") for v in (target.loop, target.parser, target.buffer))
    try:
        wait_ready(HOST, port, proc, READY_TIMEOUT_JIT_S if jit else READY_TIMEOUT_S)
    except VerifyError as e:
        stop_server(server)
        tail = _log_tail(log_path)
        raise ServerStartError(f"{e}" + (f"; log: {tail}" if tail else "")) from None
    # Pin every process/thread of the tree to the server CPUs (peers start
    # their own processes; our workers already pin themselves one per CPU).
    from .sampler import descendants
    pids = descendants(proc.pid)
    server.pids_seen.update(pids)
    pin_tree(pids, split.server_cpus)
    return server


def _alive_same(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return False


def stop_server(server: RunningServer, grace: float = 10.0) -> None:
    """SIGTERM, wait for a graceful stop, then SIGKILL whatever of its tree is left."""
    from .sampler import descendants
    proc = server.proc
    if proc.poll() is None:
        server.pids_seen.update(descendants(proc.pid))
    if server.target.kind == "peer":
        mod, _ = peers_module()
        if mod is not None:
            try:
                mod.stop(proc)
            except Exception:
                pass
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    # Workers that outlived their supervisor: only processes we saw in its tree.
    for pid in server.pids_seen - {proc.pid}:
        if _alive_same(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    if server.target.kind != "peer":
        try:
            os.killpg(proc.pid, signal.SIGKILL)     # its own session: ours to clean
        except (ProcessLookupError, PermissionError):
            pass
    _procs.forget(proc)


# ---------------------------------------------------------------------------
# One wrk run


def raise_fd_limit() -> int:
    """Raise our soft open-files limit to the hard one (wrk and servers inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def connection_budget() -> int:
    """How many connections wrk can open to one local port: fds and ephemeral ports."""
    fds = raise_fd_limit() - 64
    try:
        lo, hi = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        ports = hi - lo + 1 - 1000
    except (OSError, ValueError):
        ports = 28000
    return max(1, min(fds, ports))


def resolve_load(shape: Shape, split: Split, port: int) -> Tuple[WrkLoad, str]:
    """The wrk load for a shape on this split, and a note when we had to adapt it."""
    notes = []
    conns = shape.connections
    if conns == "max":
        budget = connection_budget()
        conns = min(MAX_CONNECTIONS_DEFAULT, budget)
        notes.append(f"connections=max resolved to {conns} (fd/port budget {budget})")
    threads = split.wrk_threads
    if conns < threads:
        notes.append(f"{conns} connections < {threads} wrk threads: using {conns} threads")
        threads = conns
    url = f"http://{HOST}:{port}{shape.path}"
    corpus = str(corpus_info(shape.corpus).path) if shape.corpus else None
    return (WrkLoad(url, threads, conns, shape.duration_s, shape.pipeline, shape.browser,
                    shape.timeout_s, corpus), "; ".join(notes))


@dataclasses.dataclass
class SampledRun:
    """A load tool's run: the reaped process, its rusage, and what was sampled."""
    proc: subprocess.Popen
    rusage: object
    wall_s: float
    killed: bool
    server_cpus: Dict[str, float]      # cpu_fractions of the server's CPUs
    client_cpus: Dict[str, float]
    usage: object                      # TreeSampler.finish() of the server tree, or None


def run_sampled(cmd: Sequence[str], out_path: Path, client_cpus: Sequence[int],
                server_pid: Optional[int], server_cpus: Sequence[int],
                deadline_s: float) -> SampledRun:
    """Run a load tool (output to out_path) pinned to client_cpus until it exits
    or deadline_s passes (then kill it), sampling the server tree meanwhile."""
    with open(out_path, "wb") as out:
        # its own session: a Ctrl-C to the terminal's group reaches only us, and
        # we stop the tool (a wrk that got SIGINT would print a short run as done)
        proc = _procs.register(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                                stderr=subprocess.STDOUT, preexec_fn=_pin(client_cpus),
                                                start_new_session=True), os.path.basename(cmd[0]))
    sampler = TreeSampler(server_pid) if server_pid else None
    ticks0 = (cpu_ticks(server_cpus), cpu_ticks(client_cpus))
    t0 = time.monotonic()
    if sampler:
        sampler.start()
    killed = False
    try:
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - t0 > deadline_s:
                proc.kill()
                pid, status, ru = os.wait4(proc.pid, 0)
                killed = True
                break
            if sampler:
                sampler.sample()
            time.sleep(SAMPLE_INTERVAL_S)
    except BaseException:
        # Interrupted (a notebook's interrupt reaches only us): take the tool down too.
        if proc.returncode is None:
            try:
                proc.kill()
                os.wait4(proc.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            proc.returncode = -9
        _procs.forget(proc)
        raise
    _procs.forget(proc)
    wall = time.monotonic() - t0
    srv_frac = cpu_fractions(ticks0[0], cpu_ticks(server_cpus))
    cli_frac = cpu_fractions(ticks0[1], cpu_ticks(client_cpus))
    usage = sampler.finish() if sampler else None
    proc.returncode = os.waitstatus_to_exitcode(status)   # reaped by wait4 above
    return SampledRun(proc, ru, wall, killed, srv_frac, cli_frac, usage)


def server_figures(usage, requests) -> Dict[str, object]:
    """The sampled server tree's figures, CPU-µs per request among them ({} unsampled)."""
    if usage is None:
        return {}
    return {
        "server_cpu_s": usage.cpu_s,
        "server_cpu_user_s": usage.cpu_user_s,
        "server_cpu_sys_s": usage.cpu_sys_s,
        "server_processes": usage.processes,
        "server_vmhwm_kb": usage.vmhwm_kb,
        "server_vmpeak_kb": usage.vmpeak_kb,
        "server_vmrss_kb": usage.vmrss_kb,
        "cpu_us_per_req": usage.cpu_s * 1e6 / requests if requests else math.nan,
    }


def run_wrk(load: WrkLoad, client_cpus: Sequence[int], server_pid: Optional[int],
            raw_path: Optional[Path], wrk: str = "wrk",
            server_cpus: Sequence[int] = ()) -> Dict[str, object]:
    """Run wrk pinned to client_cpus while sampling the server tree; every figure.

    With server_cpus, also how busy those CPUs and the client's were in all
    (any process, and softirq): busy CPUs that our processes did not use mean
    kernel networking work or another tenant of a shared machine.

    Raises WrkError when wrk fails or prints no report.
    """
    cmd = load.command(wrk)
    deadline_s = load.duration_s + load.timeout_s + 30
    out_path = raw_path
    if out_path is None:
        import tempfile
        fd, name = tempfile.mkstemp(prefix="wrk-", suffix=".txt")
        os.close(fd)
        out_path = Path(name)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    r = run_sampled(cmd, out_path, client_cpus, server_pid, server_cpus, deadline_s)
    proc, ru, wall, killed = r.proc, r.rusage, r.wall_s, r.killed
    srv_frac, cli_frac = r.server_cpus, r.client_cpus
    text = out_path.read_text(errors="replace")
    if raw_path is None:
        out_path.unlink(missing_ok=True)
    if killed:
        raise WrkError(f"wrk did not finish within {deadline_s:g} s and was killed")
    try:
        figures = parse_wrk_output(text)
    except WrkError as e:
        raise WrkError(f"wrk exited with code {proc.returncode}: {e}") from None
    wrk_cpu = ru.ru_utime + ru.ru_stime
    figures.update({
        "wrk_exit_code": proc.returncode,
        "wrk_command": shell_line(cmd),
        "wrk_raw": text,
        "wall_s": wall,
        "wrk_cpu_s": wrk_cpu,
        "wrk_cpu_util": wrk_cpu / (wall * load.threads) if wall > 0 else math.nan,
        "server_cpus_busy": srv_frac["busy"],
        "server_cpus_softirq": srv_frac["softirq"],
        "client_cpus_busy": cli_frac["busy"],
        "client_cpus_softirq": cli_frac["softirq"],
    })
    figures["client_saturated"] = bool(figures["wrk_cpu_util"] >= CLIENT_SATURATION)
    figures.update(server_figures(r.usage, figures["requests"]))
    return figures


def _server_util(figures: Dict[str, object], server_cpus: int) -> None:
    if "server_cpu_s" in figures and figures.get("wall_s"):
        util = figures["server_cpu_s"] / (figures["wall_s"] * server_cpus)
        figures["server_cpu_util"] = util
        # CPU time on each side used neither by the server's processes (wrk on
        # the client side) nor by softirq (largely loopback TCP, ours): other
        # processes of a shared machine.
        figures["server_cpus_other"] = (figures.get("server_cpus_busy", math.nan) - util
                                        - figures.get("server_cpus_softirq", math.nan))
        figures["client_cpus_other"] = (figures.get("client_cpus_busy", math.nan)
                                        - figures["wrk_cpu_util"]
                                        - figures.get("client_cpus_softirq", math.nan))
        # What limited this run: one rule for both sides (bench/bottleneck.py).
        figures["bottleneck"] = classify_bottleneck(figures)


# ---------------------------------------------------------------------------
# The matrix


def _one_line(error) -> str:
    """An error message as one line (tools' multi-line output joined with ' | ')."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    return " | ".join(lines)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def _utcnow() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _variant_sources(target: Target) -> Dict[str, object]:
    """<component>_source / <component>_sha256: the file each of a stack's
    variants came from (a user's file, or the built-in module) and its hash,
    so that a row can be traced to the code that made it."""
    out: Dict[str, object] = {}
    for component, registry in (("loop", "loops"), ("parser", "parsers"), ("buffer", "buffers")):
        value = getattr(target, component)
        src = {}
        if target.kind == "stack" and value:
            try:
                src = importlib.import_module(f"kourier_lab.{registry}").source(value)
            except (ImportError, AttributeError, ValueError, OSError):
                src = {}
        out[f"{component}_source"] = src.get("path") or None
        out[f"{component}_sha256"] = src.get("sha256") or None
    return out


def _base_row(exp: Experiment, split: Split, batch_id: str, commit: str, target: Target,
              shape: Shape) -> Dict[str, object]:
    row = {
        "batch_id": batch_id,
        "timestamp": _utcnow(),
        "experiment": exp.name,
        "experiment_file": exp.path or "",
        "quick": exp.quick,
        "profile": split.profile,
        "profile_note": split.note,
        **machine_info(),
        "git_commit": commit,
        "server_kind": target.kind,
        "server": target.name,
        "loop": target.loop,
        "parser": target.parser,
        "buffer": target.buffer,
        **_variant_sources(target),
        # the head memo and run folding: stacks say what they ran with; the
        # ceiling never parses and the peers have neither that we could switch,
        # so both are recorded as off
        "head_memo": bool(target.head_memo),
        "fold_runs": bool(target.fold_runs),
        "response": exp.response,
        # the app answering: "default" (the benchmark app, or a peer's/the
        # ceiling's own fixed answer) or "demo" (Python handlers, api shape)
        "app": shape.app,
        "load_tool": shape.load_tool,
        "workers": split.workers,
        "server_cpus": cpu_list(split.server_cpus),
        "client_cpus": cpu_list(split.client_cpus),
        "wrk_threads": split.wrk_threads,
        "shape": shape.name,
        "connections": shape.connections if shape.connections != "max" else None,
        "pipeline": shape.pipeline,
        "browser_headers": shape.browser,
        "path": shape.path if not shape.corpus else None,
        **_corpus_columns(shape),
        "duration_s": shape.duration_s,
        "wrk_timeout_s": shape.timeout_s,
        "repetitions": exp.repetitions,
        "warmup_s": exp.warmup_s,
        "run": 0,
        "status": "ok",
        "note": "",
    }
    return row


def corpus_info(name: str):
    """The corpus file a shape loads (regenerated from its seed when missing)."""
    from .corpora import info
    return info(name)


def _corpus_columns(shape: Shape) -> Dict[str, object]:
    """corpus / corpus_sha256 / corpus_requests / mean_request_bytes of a corpus
    shape (the file as loaded; mean_request_bytes of the others is filled in
    from the measured request)."""
    if not shape.corpus:
        return {"corpus": None, "corpus_sha256": None, "corpus_requests": None,
                "mean_request_bytes": None}
    c = corpus_info(shape.corpus)
    return {"corpus": c.name, "corpus_sha256": c.sha256, "corpus_requests": c.requests,
            "mean_request_bytes": c.mean_request_bytes}


def _tqdm_class():
    # tqdm.auto wants ipywidgets inside Jupyter and warns without it; the
    # plain text bar works everywhere.
    try:
        import ipywidgets  # noqa: F401
        from tqdm.auto import tqdm
    except ImportError:
        from tqdm import tqdm
    return tqdm


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
    tqdm = progress if isinstance(progress, type) else _tqdm_class()

    from .results import new_batch_dir, summary_text, write_rows

    exp = spec if isinstance(spec, Experiment) else load_experiment(spec)
    if quick and not exp.quick:
        exp = exp.quickened()
    if exp.hosts is not None:              # server and load tools on other hosts, over SSH
        from .remote import RemoteError
        from .remote_run import run_on_hosts
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
    targets = expand_targets(exp.stacks, exp.peers, exp.head_memo, exp.fold_runs)
    rows: List[Dict[str, object]] = []

    bar = tqdm(total=len(targets) * sum(_runs_of(s, exp) for s in exp.shapes), disable=not progress,
               unit="run", desc=exp.name, dynamic_ncols=True)
    say = echo or (lambda s: tqdm.write(s) if progress else print(s))
    if split.note:
        say(f"note: {split.note}")
    say(f"{exp.name}: {len(targets)} servers x {len(exp.shapes)} shapes x {exp.repetitions} runs; "
        f"server CPUs {cpu_list(split.server_cpus)}, wrk CPUs {cpu_list(split.client_cpus)}"
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
    from .results import load_batch
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
        from .plots import write_figures
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
        row = _base_row(exp, split, batch_id, commit, target, shape)
        row.update(status=status, note=note)
        rows.append(row)
        bar.update(_runs_of(shape, exp))


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
        log_name = _slug(target.name) + ("" if app == "default" else f"-{app}")
        log_path = batch_dir / "logs" / f"{log_name}.log"
        try:
            server = start_server(target, split, exp, log_path, app=app)
        except (ServerStartError, _ceiling.CeilingBuildError, OSError) as e:
            say(f"failed {target.kind} {target.name}: {_one_line(e)}")
            _skipped(rows, exp, split, batch_id, commit, target, shapes, bar, "failed",
                     f"start: {_one_line(e)}")
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
    base = _base_row(exp, split, batch_id, commit, target, shape)
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
        say(f"failed {label}: verification: {_one_line(e)}")
        base.update(status="failed", note=f"verification: {_one_line(e)}")
        bar.update(_runs_of(shape, exp))
        return [base]
    if not shape.corpus:
        _measure_bytes(base, server.port, shape)
    base["latency_per_batch"] = shape.load_tool == "wrk" and shape.pipeline > 1
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
            say(f"failed {label}: warm-up: {_one_line(e)}")
            base.update(status="failed", note=f"warm-up: {_one_line(e)}")
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
        raw_rel = Path("wrk") / f"{_slug(target.name)}-{shape.name}-run{run}.txt"
        row = dict(base, run=run, timestamp=_utcnow(), raw_path=str(Path(batch_id) / raw_rel))
        if server.proc.poll() is not None:
            row.update(status="failed",
                       note=f"the server exited with code {server.proc.returncode}; log: "
                            f"{_log_tail(server.log_path)}")
        else:
            try:
                figures = run_wrk(load, split.client_cpus, server.proc.pid,
                                  batch_dir / raw_rel, wrk, split.server_cpus)
                _server_util(figures, split.workers)
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
                row.update(status="failed", note=f"wrk: {_one_line(e)}")
        if row["status"] != "ok":
            say(f"failed {label} run {run}: {row['note']}")
        rows.append(row)
        bar.update(1)
    return rows


# ---------------------------------------------------------------------------
# Bytes per request, and the h2load cells


def _runs_of(shape: Shape, exp: Experiment) -> int:
    """Counted runs of one server in one shape (a rate sweep: one per offered rate)."""
    if shape.name == "rate":
        return exp.repetitions * (len(shape.rates) or shape.rate_steps)
    return exp.repetitions


def _measure_bytes(base: Dict[str, object], port: int, shape: Shape) -> None:
    """request_bytes / response_bytes of this shape's request, read off the wire."""
    from . import verify
    measure = getattr(verify, "measure_bytes", None)
    if measure is None:
        return
    try:
        req, resp = measure(HOST, port, shape.path, browser=shape.browser)
    except (VerifyError, OSError) as e:
        base["note"] = f"bytes not measured: {_one_line(e)}"
        return
    # measure_bytes sends wrk's request; h2load's own headers differ, so its
    # request size is not claimed (the response is the same either way)
    sent = req if shape.load_tool == "wrk" else None
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
    from .h2load import run_h2load
    tag = f"-{int(rate)}rps" if rate else ""
    raw_rel = Path("h2load") / f"{_slug(target.name)}-{shape.name}{tag}-run{run}.txt"
    row = dict(base, run=run, timestamp=_utcnow(), raw_path=str(Path(batch_id) / raw_rel),
               offered_rate=rate)
    if server.proc.poll() is not None:
        row.update(status="failed", note=f"the server exited with code {server.proc.returncode}; "
                                         f"log: {_log_tail(server.log_path)}")
        return row
    try:
        figures = run_h2load(load, split.client_cpus, server.proc.pid, batch_dir / raw_rel,
                             server_cpus=split.server_cpus)
    except RuntimeError as e:          # h2load failed or printed no report
        row.update(status="failed", note=f"h2load: {_one_line(e)}")
        return row
    figures.setdefault("wrk_cpu_util", figures.get("client_cpu_util", math.nan))
    figures.setdefault("client_saturated", bool(figures["wrk_cpu_util"] >= CLIENT_SATURATION))
    _server_util(figures, split.workers)
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
    from . import h2load as h2
    label = f"{target.name} {shape.name}"
    if load_note:
        base["note"] = "; ".join(filter(None, [base.get("note"), load_note]))
    try:
        h2.ensure_h2load()
    except RuntimeError as e:
        base.update(status="failed", note=f"h2load: {_one_line(e)}")
        say(f"failed {label}: {base['note']}")
        bar.update(_runs_of(shape, exp))
        return [base]

    def h2load_load(rate, duration):
        return h2.H2loadLoad(url=load.url, threads=load.threads, connections=load.connections,
                             duration_s=duration, pipeline=shape.pipeline, browser=shape.browser,
                             rate=rate)

    if exp.warmup_s:
        bar.set_postfix_str(f"{label}: warm-up")
        try:
            h2.run_h2load(h2load_load(None, exp.warmup_s), split.client_cpus, None, None)
        except RuntimeError as e:
            base.update(status="failed", note=f"warm-up: {_one_line(e)}")
            say(f"failed {label}: {base['note']}")
            bar.update(_runs_of(shape, exp))
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
            bar.update(_runs_of(shape, exp))
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
