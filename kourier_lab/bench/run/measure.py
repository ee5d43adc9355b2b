"""One measured load run: the load tool on its CPUs while the server's process tree is sampled, and the figures of the row."""
from __future__ import annotations


import dataclasses
import math
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

from ... import procs as _procs
from ..results.bottleneck import classify_row as classify_bottleneck
from ...sampler import TreeSampler, cpu_fractions, cpu_ticks
from ..experiment.files import MAX_CONNECTIONS_DEFAULT, Shape
from ..experiment.split import Split
from ..load import h2load as h2load_tool
from ..load.h2load import H2loadError, H2loadLoad, ensure_h2load, latency_from_log, parse_h2load_output
from ..load.wrk import WrkError, WrkLoad, parse_wrk_output, shell_line
from ..load import kourier as kourier_tool
from ..load.kourier import KourierLoad, LoadgenError, parse_loadgen_output
from ...server.process import pin_cpus
from .servers import HOST, connection_budget
from .rows import corpus_info

# wrk's own CPU use at or above this fraction of its CPUs means wrk, not the
# server, may have been the limit.
CLIENT_SATURATION = 0.90
SAMPLE_INTERVAL_S = 0.25




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
                                                stderr=subprocess.STDOUT, preexec_fn=pin_cpus(client_cpus),
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


def cpus_columns(r: SampledRun) -> Dict[str, float]:
    """How busy the server's and the client's CPUs were over the run (any process, softirq)."""
    return {"server_cpus_busy": r.server_cpus["busy"],
            "server_cpus_softirq": r.server_cpus["softirq"],
            "client_cpus_busy": r.client_cpus["busy"],
            "client_cpus_softirq": r.client_cpus["softirq"]}


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
        **cpus_columns(r),
    })
    figures["client_saturated"] = bool(figures["wrk_cpu_util"] >= CLIENT_SATURATION)
    figures.update(server_figures(r.usage, figures["requests"]))
    return figures


def server_util(figures: Dict[str, object], server_cpus: int) -> None:
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
        # What limited this run: one rule for both sides (bench/results/bottleneck.py).
        figures["bottleneck"] = classify_bottleneck(figures)


def run_h2load(load: H2loadLoad, client_cpus: Sequence[int], server_pid: Optional[int],
               raw_path: Optional[Path], server_cpus: Sequence[int] = (),
               h2load: Optional[str] = None, keep_log: bool = False) -> Dict[str, object]:
    """Run h2load pinned to client_cpus while sampling the server tree; every figure,
    the per-request latency from its log included (run_wrk's twin).

    The log goes beside raw_path (<raw>.log) and is deleted after it is read
    unless keep_log.  Raises H2loadError when h2load fails or prints no report.
    """
    h2load = h2load or ensure_h2load()
    import tempfile
    tmp_dir = None
    if raw_path is None:
        tmp_dir = Path(tempfile.mkdtemp(prefix="h2load-"))
        out_path = tmp_dir / "h2load.txt"
    else:
        out_path = Path(raw_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
    log_path = out_path.with_suffix(".log")
    log_path.unlink(missing_ok=True)             # h2load appends
    cmd = load.command(h2load, log_path)
    deadline_s = load.duration_s + load.warmup_s + 30
    try:
        r = run_sampled(cmd, out_path, client_cpus, server_pid, server_cpus, deadline_s)
        proc, ru, wall, killed = r.proc, r.rusage, r.wall_s, r.killed
        usage = r.usage
        text = out_path.read_text(errors="replace")
        if killed:
            raise H2loadError(f"h2load did not finish within {deadline_s:g} s and was killed")
        try:
            figures = parse_h2load_output(text)
        except H2loadError as e:
            raise H2loadError(f"h2load exited with code {proc.returncode}: {e}") from None
        if proc.returncode != 0:
            raise H2loadError(f"h2load exited with code {proc.returncode}")
        if not figures["requests_started"]:
            # h2load exits 0 when it cannot connect: nothing was measured
            raise H2loadError(f"h2load sent no request (could not connect to {load.url}?)")
        if figures["requests"]:
            sent_rate = None if load.rate is None else load.per_client_rate * load.connections
            figures.update(latency_from_log(log_path, sent_rate, load.connections,
                                            load.duration_s))
    finally:
        if not keep_log:
            log_path.unlink(missing_ok=True)
        if tmp_dir is not None:
            shutil.rmtree(tmp_dir, ignore_errors=True)
    client_cpu = ru.ru_utime + ru.ru_stime
    client_util = client_cpu / (wall * load.threads) if wall > 0 else math.nan
    figures.update({
        "load_tool": "h2load",
        "offered_rate": load.rate,
        "h2load_exit_code": proc.returncode,
        "h2load_command": h2load_tool.shell_line(cmd),
        "h2load_raw": "\n".join(ln for ln in text.splitlines()
                                if not ln.startswith("progress:")),
        "wall_s": wall,
        "client_cpu_s": client_cpu,
        "client_cpu_util": client_util,
        "client_saturated": bool(client_util >= CLIENT_SATURATION),
        **cpus_columns(r),
    })
    if load.rate:
        figures["achieved_of_offered"] = figures["req_per_s"] / load.rate
    figures.update(server_figures(usage, figures["requests"]))
    return figures


def run_kourier(load: KourierLoad, client_cpus: Sequence[int], server_pid: Optional[int],
                raw_path: Optional[Path], server_cpus: Sequence[int] = ()) -> Dict[str, object]:
    """Run the lab's load generator (native/loadgen.c) pinned to client_cpus while
    sampling the server tree; every figure (run_wrk's twin).

    The client's CPU is the generator's own (its rusage, every thread and
    process), so `client_cpu_util` is per thread like wrk_cpu_util, and it
    stands in for wrk_cpu_util in the bottleneck rule.  Raises LoadgenError
    when it fails or prints no summary.
    """
    cmd = load.command()
    deadline_s = load.warmup_s + load.duration_s + load.timeout_s + 30
    out_path = raw_path
    if out_path is None:
        import tempfile
        fd, name = tempfile.mkstemp(prefix="loadgen-", suffix=".txt")
        os.close(fd)
        out_path = Path(name)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    r = run_sampled(cmd, out_path, client_cpus, server_pid, server_cpus, deadline_s)
    text = out_path.read_text(errors="replace")
    if raw_path is None:
        out_path.unlink(missing_ok=True)
    if r.killed:
        raise LoadgenError(f"the load generator did not finish within {deadline_s:g} s "
                           "and was killed")
    try:
        figures = parse_loadgen_output(text)
    except LoadgenError as e:
        raise LoadgenError(f"the load generator exited with code {r.proc.returncode}: {e}") \
            from None
    if r.proc.returncode != 0:
        raise LoadgenError(f"the load generator exited with code {r.proc.returncode}")
    client_cpu = r.rusage.ru_utime + r.rusage.ru_stime
    # the whole run (warm-up included) against the whole wall time
    client_util = client_cpu / (r.wall_s * load.threads) if r.wall_s > 0 else math.nan
    figures.update({
        "loadgen_command": kourier_tool.shell_line(cmd),
        "loadgen_raw": "\n".join(ln for ln in text.splitlines() if not ln.startswith("{")),
        "loadgen_exit_code": r.proc.returncode,
        "wall_s": r.wall_s,
        "client_cpu_s": client_cpu,
        "client_cpu_util": client_util,
        "wrk_cpu_util": client_util,
        "client_saturated": bool(client_util >= CLIENT_SATURATION),
        **cpus_columns(r),
    })
    # the server's CPU was sampled over the whole run: per response of the whole run
    figures.update(server_figures(r.usage, figures["responses_total"]))
    return figures
