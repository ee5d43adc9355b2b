"""`kourier-lab profile STACK --shape pipelined --out data/figures/`: where a
request's time goes inside one stack, under a bench shape's load (wrk).

One command, several short runs of the same server and load, each measuring
one thing (a tracer slows the server, so no two share a run):

  cpu          server CPU per request (utime+stime of the worker, /proc), the
               stage counters off: the reference figure
  stages       the same with the loop's stage counters on (loops/stages.py;
               KOURIER_LAB_STAGE_COUNTERS in the server's environment): us per
               request in read, parse, route, respond, write, timers, and
               "other" = the run's CPU per request minus the counted stages
               (epoll_wait, accept, dispatch, the interpreter's own work);
               the counters' own cost is this run's CPU per request minus the
               cpu run's, reported as a row (overhead_pct)
  syscalls     `strace -c -f` attached to the worker for one run: calls per
               request of each syscall (strace slows every call, not what is
               called: the counts are the server's, the CPU of that run is not)
  flame        py-spy (python and asyncio loops: Python frames, native ones
               with --native) writes an SVG itself; the C and Numba loops are
               sampled by `perf record -e cpu-clock -g` (software clock: this
               machine has no hardware counters), folded and drawn by
               bench/profile/flame.py
  instructions exact instructions per request of the stack's parser under
               callgrind (bench/profile/instructions.py)

Rows go to <results>/<stamp>-profile-<stack>/profile.parquet (one per
figure: measure, name, value, unit; stage_counters says whether the run had
them on), figures to --out: profile-<stack>-<shape>-stages.png and
flame-<stack>-<shape>.svg.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ...loops.stages import ENV as STAGES_ENV
from ...loops.stages import STAGES

SHORTHANDS = {"python": ("python", "python", "python"), "asyncio": ("asyncio", "python", "python"),
              "c": ("c", "c", "c"), "numba": ("numba", "numba", "numba"), "uring": ("uring", "c", "c")}
# loops whose stage counters exist (the others get every other measure); the
# uring loop's read stage stays 0: its reads are the kernel's, done before a completion arrives
STAGE_LOOPS = ("python", "asyncio", "numba", "c", "uring")
PY_SPY_LOOPS = ("python", "asyncio")
MEASURES = ("cpu", "stages", "syscalls", "flame", "instructions")


class ProfileError(RuntimeError):
    """A bad stack or shape, or a tool that is missing: one line saying what to do."""


def resolve_stack(name: str) -> Tuple[str, str, str]:
    """'c' -> (c, c, c); 'c/python/c' as given; checked against the registries."""
    from ... import loops
    parts = tuple(name.split("/")) if "/" in name else SHORTHANDS.get(name)
    if not parts or len(parts) != 3:
        raise ProfileError(f"unknown stack {name!r}: give loop/parser/buffer (e.g. c/c/c) or one of "
                           f"{', '.join(SHORTHANDS)}")
    ok, why = loops.supports(*parts)
    if not ok:
        raise ProfileError(f"stack {'/'.join(parts)} cannot run here: {why}")
    return parts


def _shape(name: str, quick: bool) -> Dict[str, object]:
    from ..experiment.files import SHAPE_DEFAULTS
    if name not in SHAPE_DEFAULTS or name in ("connections", "rate", "api"):
        raise ProfileError(f"unknown shape {name!r} for profile (choose distinct, real, pipelined, "
                           f"keepalive or browser; api needs the demo app, which profile does not serve)")
    d = dict(SHAPE_DEFAULTS[name])
    if quick:
        d["connections"] = min(int(d["connections"]), 32)
    return d


def _children(pid: int) -> List[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _threads(pid: int) -> List[int]:
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return [pid]


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Server:
    """One `kourier-lab serve` (one worker) pinned to a CPU; .worker is the
    worker's pid (the process every tool attaches to)."""

    def __init__(self, stack, cpu, stage_prefix=None, env=None):
        from ...server.process import ServerProcess
        self.stage_prefix = stage_prefix
        self.cpu = cpu
        self.env = dict(env or {})
        if stage_prefix:
            self.env[STAGES_ENV] = stage_prefix
        self.proc = ServerProcess(loop=stack[0], parser=stack[1], buffer=stack[2], workers=1,
                                  cpus=[cpu] if cpu is not None else None, env=self.env)

    def __enter__(self):
        self.proc.start(timeout=300)
        deadline = time.monotonic() + 10
        while not _children(self.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        kids = _children(self.proc.pid)
        if not kids:
            self.proc.stop()
            raise ProfileError("the server started no worker process")
        self.worker = kids[0]
        self.port = self.proc.port
        return self

    def __exit__(self, *exc):
        self.proc.stop()

    def stage_record(self) -> Optional[dict]:
        """What the worker's loop wrote at exit (after __exit__)."""
        if not self.stage_prefix:
            return None
        path = Path(f"{self.stage_prefix}.{self.worker}.json")
        if not path.is_file():
            return None
        return json.loads(path.read_text())


def _cpus() -> Tuple[Optional[int], Optional[int]]:
    """(server CPU, client CPU): two different ones when there are two."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2:
        return cpus[0], cpus[1]
    return None, None


def _wrk(port: int, shape: Dict[str, object], duration: int, client_cpu) -> Dict[str, object]:
    from ..load.wrk import WrkLoad, ensure_wrk, parse_wrk_output
    path = "/" if shape.get("browser") else "/hello"
    corpus = None
    if shape.get("corpus"):              # every request of a write different (bench/experiment/corpora.py)
        from ..experiment.corpora import ensure
        corpus = str(ensure(str(shape["corpus"])))
    load = WrkLoad(f"http://127.0.0.1:{port}{path}", 1, int(shape["connections"]), duration,
                   int(shape["pipeline"]), bool(shape["browser"]), corpus=corpus)
    cmd = load.command(ensure_wrk(install=False, echo=lambda *_: None))
    if client_cpu is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", str(client_cpu)] + cmd
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    return parse_wrk_output(r.stdout)


def _loaded(server: _Server, shape, duration, client_cpu) -> Tuple[float, int]:
    """(worker CPU seconds, requests) over one wrk run."""
    c0 = _cpu_seconds(server.worker)
    out = _wrk(server.port, shape, duration, client_cpu)
    return _cpu_seconds(server.worker) - c0, int(out["requests"])


# -- syscalls ------------------------------------------------------------------------
_STRACE_ROW = re.compile(r"^\s*([\d.]+)\s+([\d.]+)\s+(\d+)\s+(\d+)\s+(\d+)?\s*(\w+)\s*$")


def parse_strace_summary(text: str) -> Dict[str, int]:
    """{syscall: calls} from `strace -c`'s table."""
    calls = {}
    for line in text.splitlines():
        m = _STRACE_ROW.match(line)
        if m and m.group(6) != "total":
            calls[m.group(6)] = int(m.group(4))
    return calls


def _syscalls(server: _Server, shape, duration, client_cpu) -> Tuple[Dict[str, int], int]:
    if not shutil.which("strace"):
        raise ProfileError("strace is not installed: apt-get install strace (make setup does)")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "strace.txt"
        tracer = subprocess.Popen(["strace", "-c", "-f", "-o", str(out), "-p", str(server.worker)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)        # strace attaches asynchronously; nothing is counted before the load
        try:
            wrk = _wrk(server.port, shape, duration, client_cpu)
        finally:
            tracer.send_signal(2)
            tracer.wait(30)
        return parse_strace_summary(out.read_text()), int(wrk["requests"])


# -- flame graphs ------------------------------------------------------------------------
def _flame_py_spy(server: _Server, shape, duration, client_cpu, svg: Path, native: bool, title: str) -> str:
    from .flame import read_folded, render_svg
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise ProfileError("py-spy is not installed: pip install py-spy")
    # raw folded stacks, drawn by our renderer: py-spy's own SVG carries frame
    # names as sampled, and a --nonblocking sample can read a half-written name
    # (bytes XML forbids), which made the SVG unreadable
    folded_path = svg.with_suffix(".folded")
    cmd = [spy, "record", "-p", str(server.worker), "-d", str(duration + 1), "-r", "250",
           "-o", str(folded_path), "-f", "raw"]
    # --native (C frames of the extensions) pauses the process for each sample;
    # py-spy refuses it with --nonblocking, which quick mode uses
    cmd.append("--native" if native else "--nonblocking")
    rec = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.3)
    _wrk(server.port, shape, duration, client_cpu)
    _, err = rec.communicate(timeout=duration + 60)
    if rec.returncode != 0 or not folded_path.is_file():
        raise ProfileError(f"py-spy failed: {err.decode(errors='replace').strip()[-200:]}")
    folded = read_folded(folded_path.read_bytes().decode(errors="replace"))
    if not folded:
        raise ProfileError("py-spy recorded no samples")
    svg.write_text(render_svg(folded, title=title))
    return "py-spy" + (" --native" if native else "")


def _flame_perf(server: _Server, shape, duration, client_cpu, svg: Path, title: str) -> str:
    from .flame import fold_perf_script, render_svg
    if not shutil.which("perf"):
        raise ProfileError("perf is not installed: apt-get install linux-perf")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "perf.data"
        # system-wide on the server's CPU, the worker's samples kept when folding:
        # attaching to one pid (-p) records no cpu-clock samples on this VM
        cpu = ["-C", str(server.cpu)] if server.cpu is not None else []
        rec = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "4999", "-g", "-a", *cpu,
                                "-o", str(data), "--", "sleep", str(duration + 1)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.3)
        _wrk(server.port, shape, duration, client_cpu)
        tids = _threads(server.worker)         # perf script names samples by thread id
        _, err = rec.communicate(timeout=duration + 60)
        if rec.returncode != 0 or not data.is_file():
            raise ProfileError(f"perf record failed: {err.decode(errors='replace').strip()[-200:]}")
        script = subprocess.run(["perf", "script", "-i", str(data)], capture_output=True, text=True,
                                timeout=300)
    folded = fold_perf_script(script.stdout, pids=tids)
    if not folded:
        raise ProfileError("perf recorded no samples")
    svg.write_text(render_svg(folded, title=title))
    svg.with_suffix(".folded").write_text("".join(f"{k} {v}\n" for k, v in folded.items()))
    return "perf record -e cpu-clock -g"


# -- the command -------------------------------------------------------------------------
def profile(stack_name: str, shape_name: str = "pipelined", out=None, results=None,
            quick: bool = False, duration: Optional[int] = None, measures=MEASURES, echo=print):
    """Run the measures (see the module docstring) on one stack; returns the
    DataFrame of rows (also written under `results`, figures under `out`)."""
    import pandas as pd

    from ..run.machine import git_commit, machine_info
    from ...paths import figures_dir, results_dir
    stack = resolve_stack(stack_name)
    label = "/".join(stack)
    slug = label.replace("/", "-")
    shape = _shape(shape_name, quick)
    duration = duration or (1 if quick else 5)
    bad = [m for m in measures if m not in MEASURES]
    if bad:
        raise ProfileError(f"unknown measure {bad[0]!r} (choose from {', '.join(MEASURES)})")
    out_dir = Path(out) if out else figures_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    server_cpu, client_cpu = _cpus()
    stamp = _dt.datetime.now(_dt.timezone.utc)
    batch = f"{stamp.strftime('%Y%m%dT%H%M%SZ')}-profile-{slug}"
    base = {"batch_id": batch, "timestamp": stamp.isoformat(timespec="seconds"), "quick": quick,
            "git_commit": git_commit(), **machine_info(), "stack": label, "loop": stack[0],
            "parser": stack[1], "buffer": stack[2], "shape": shape_name,
            "corpus": shape.get("corpus"),
            "connections": int(shape["connections"]), "pipeline": int(shape["pipeline"]),
            "duration_s": duration, "server_cpu": server_cpu, "client_cpu": client_cpu}
    rows: List[Dict[str, object]] = []

    def row(measure, name, value, unit, **kw):
        r = {**base, "measure": measure, "name": name, "value": float(value), "unit": unit,
             "stage_counters": False, "tool": "", "requests": None, "note": ""}
        r.update(kw)
        rows.append(r)
        return r

    cpu_off = None
    if "cpu" in measures or "stages" in measures:
        with _Server(stack, server_cpu) as srv:
            _loaded(srv, shape, 1, client_cpu)                   # warm-up (JIT, caches)
            sec, n = _loaded(srv, shape, duration, client_cpu)
        cpu_off = sec / max(n, 1) * 1e6
        row("cpu", "server CPU", cpu_off, "us/request", requests=n, tool="/proc/PID/stat")
        echo(f"{label} {shape_name}: {cpu_off:.2f} us server CPU per request ({n} requests)")
    if "stages" in measures and stack[0] in STAGE_LOOPS:
        with tempfile.TemporaryDirectory() as tmp:
            srv = _Server(stack, server_cpu, stage_prefix=str(Path(tmp) / "stages"))
            with srv:
                _loaded(srv, shape, 1, client_cpu)
                sec, n = _loaded(srv, shape, duration, client_cpu)
            rec = srv.stage_record()
        if rec is None:
            echo(f"{label}: the loop wrote no stage counters (does {stack[0]} have them?)")
        else:
            # the record covers the warm-up too: per request over everything it answered
            served = max(int(rec["requests"]), 1)
            cpu_on = sec / max(n, 1) * 1e6
            counted = 0.0
            for stage in STAGES:
                if stage in rec.get("uncounted", []):
                    continue
                us = rec["ns"].get(stage, 0) / served / 1e3
                counted += us
                row("stage", stage, us, "us/request", stage_counters=True, requests=served,
                    tool="loops/stages.py")
            row("stage", "other", max(cpu_on - counted, 0.0), "us/request", stage_counters=True,
                requests=served, note="server CPU per request of this run minus the counted stages")
            row("overhead", "stage counters", (cpu_on / cpu_off - 1) * 100 if cpu_off else float("nan"),
                "percent", stage_counters=True, requests=n,
                note=f"CPU per request with the counters on ({cpu_on:.2f} us) vs off ({cpu_off:.2f} us)")
            echo(f"{label}: stages " + ", ".join(f"{r['name']} {r['value']:.2f}" for r in rows
                                                if r["measure"] == "stage") + " us/request")
    if "syscalls" in measures:
        try:
            with _Server(stack, server_cpu) as srv:
                _loaded(srv, shape, 1, client_cpu)
                calls, n = _syscalls(srv, shape, min(duration, 2), client_cpu)
            for name, k in sorted(calls.items(), key=lambda kv: -kv[1]):
                row("syscall", name, k / max(n, 1), "calls/request", requests=n, tool="strace -c -f",
                    note="counted under strace (which slows each call, not what is called)")
            echo(f"{label}: syscalls per request " + ", ".join(
                f"{k} {v / max(n, 1):.3f}" for k, v in sorted(calls.items(), key=lambda kv: -kv[1])[:6]))
        except ProfileError as e:
            row("syscall", "skipped", float("nan"), "", note=str(e))
            echo(f"{label}: syscalls skipped: {e}")
    if "flame" in measures:
        svg = out_dir / f"flame-{slug}-{shape_name}.svg"
        try:
            env = {"NUMBA_ENABLE_PROFILING": "1"} if stack[0] == "numba" else {}
            with _Server(stack, server_cpu, env=env) as srv:
                _loaded(srv, shape, 1, client_cpu)
                if stack[0] in PY_SPY_LOOPS:
                    tool = _flame_py_spy(srv, shape, duration, client_cpu, svg, native=not quick,
                                         title=f"{label}, {shape_name}: py-spy samples")
                else:
                    tool = _flame_perf(srv, shape, duration, client_cpu, svg,
                                       title=f"{label}, {shape_name}: perf cpu-clock samples")
            row("flame", "svg", 1, "file", tool=tool, note=str(svg))
            echo(f"{label}: flame graph {svg}")
        except ProfileError as e:
            row("flame", "skipped", float("nan"), "", note=str(e))
            echo(f"{label}: flame graph skipped: {e}")
    if "instructions" in measures:
        from .instructions import count_parsers
        for r in count_parsers((stack[1],), rounds=50 if quick else 200, py_rounds=160 if quick else 800,
                               corpora=("short", "pipelined256") if quick else None, echo=echo):
            if r.get("status") != "ok":
                row("instructions", "skipped", float("nan"), "", note=r.get("note", ""))
                continue
            name = f"{r['corpus']}" + (f" {r['simd']}" if r["simd"] else "")
            row("instructions", name, r["instructions_per_request"], "instructions/request",
                tool="callgrind", note=r["method"])
            row("instructions", name, r["instructions_per_byte"], "instructions/byte",
                tool="callgrind", note=r["method"])
    df = pd.DataFrame(rows)
    rdir = (Path(results) if results else results_dir()) / batch
    rdir.mkdir(parents=True, exist_ok=True)
    df.to_parquet(rdir / "profile.parquet", index=False)
    echo(f"rows: {rdir / 'profile.parquet'}")
    if (df["measure"] == "stage").any():
        png = out_dir / f"profile-{slug}-{shape_name}-stages.png"
        stage_figure(df).savefig(png, dpi=120)
        echo(f"figure: {png}")
    return df


def load_profiles(results=None):
    """Every recorded profile row."""
    import pandas as pd

    from ...paths import results_dir
    root = Path(results) if results is not None else results_dir()
    frames = [pd.read_parquet(p) for p in sorted(root.glob("*/profile.parquet"))]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


STAGE_ORDER = STAGES + ("other",)


def stage_table(df):
    """stack x stage, us per request (the latest batch of each stack and shape)."""
    st = df[df["measure"] == "stage"]
    if st.empty:
        return st
    latest = st.groupby(["stack", "shape"])["batch_id"].transform("max")
    st = st[st["batch_id"] == latest]
    t = st.pivot_table(index=["stack", "shape"], columns="name", values="value", aggfunc="first")
    return t[[c for c in STAGE_ORDER if c in t.columns]]


def stage_figure(df):
    """A stacked bar per stack: server CPU per request by stage."""
    from ...style import figure
    t = stage_table(df)
    fig, axes = figure(figsize=(8, 1.2 + 0.6 * max(len(t), 1)))
    ax = axes[0][0]
    labels = [f"{s} ({sh})" for s, sh in t.index]
    left = [0.0] * len(t)
    colors = ["#3b6ea8", "#d9822b", "#8c6bb1", "#4daf4a", "#e41a1c", "#999933", "#bbbbbb"]
    for k, stage in enumerate(t.columns):
        vals = t[stage].fillna(0).tolist()
        ax.barh(labels, vals, left=left, label=stage, color=colors[k % len(colors)])
        left = [a + b for a, b in zip(left, vals)]
    ax.set_xlabel("us per request by stage, counters on (Python loops: thread CPU clock; C, Numba: "
                  "monotonic clock)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    ax.set_title("Where a request's time goes")
    return fig


# -- notebook 08: several stacks, and what the figures say ---------------------------
def anatomy(stacks=("python", "asyncio", "c", "numba"), shape: str = "pipelined", quick: bool = False,
            measures=MEASURES, out=None, results=None, echo=print):
    """profile() for each stack that can run here, one DataFrame; a stack that
    cannot run is one echoed line, not an error."""
    import pandas as pd
    frames = []
    for name in stacks:
        try:
            frames.append(profile(name, shape, out=out, results=results, quick=quick,
                                  measures=measures, echo=echo))
        except ProfileError as e:
            echo(f"{name}: skipped: {e}")
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def syscall_table(df):
    """stack x syscall, calls per request (the most frequent ones)."""
    sc = df[(df["measure"] == "syscall") & (df["unit"] == "calls/request")]
    if sc.empty:
        return sc
    t = sc.pivot_table(index="stack", columns="name", values="value", aggfunc="first").fillna(0)
    return t[t.max().sort_values(ascending=False).index[:8]]


def instruction_table(df):
    """corpus (SIMD path) x unit: instructions per request and per byte, by parser."""
    ins = df[df["measure"] == "instructions"]
    if ins.empty:
        return ins
    return ins.pivot_table(index=["parser", "name"], columns="unit", values="value", aggfunc="first")


def findings(df) -> List[str]:
    """Sentences computed from profile rows (nothing here is typed in)."""
    out: List[str] = []
    if df.empty:
        return ["no profile rows"]
    cpu = df[df["measure"] == "cpu"].groupby("stack")["value"].first()
    if len(cpu) >= 2:
        lo, hi = cpu.idxmin(), cpu.idxmax()
        out.append(f"Server CPU per request: {hi} spends {cpu[hi]:.2f} us, {lo} {cpu[lo]:.2f} us "
                   f"({cpu[hi] / cpu[lo]:.1f}x).")
    st = stage_table(df)
    for (stack, shape), r in st.iterrows():
        counted = r.drop(labels=["other"], errors="ignore").fillna(0)
        if counted.sum() <= 0:
            continue
        top = counted.idxmax()
        out.append(f"{stack} ({shape}): the largest counted stage is {top}, {r[top]:.3f} us of "
                   f"{counted.sum():.3f} us counted per request ({r[top] / counted.sum() * 100:.0f}%).")
    ov = df[df["measure"] == "overhead"].groupby("stack")["value"].first()
    for stack, v in ov.items():
        out.append(f"{stack}: with the stage counters on, CPU per request was {v:+.0f}% of the counters-off "
                   "run (their cost, plus this machine's noise).")
    sc = df[(df["measure"] == "syscall") & (df["unit"] == "calls/request")]
    for stack, g in sc.groupby("stack"):
        io = g[g["name"].str.match(r"^(recv|recvfrom|read|send|sendto|sendmsg|write|writev)$")]["value"].sum()
        if io > 0:
            out.append(f"{stack}: {io:.4f} read+write syscalls per request, i.e. one per {1 / io:.0f} "
                       "requests: a pipelined batch is read with one recv and answered with one send.")
    ins = df[(df["measure"] == "instructions") & (df["unit"] == "instructions/request")]
    for parser, g in ins.groupby("parser"):
        v = g.set_index("name")["value"]
        for corpus in ("short", "browser", "pipelined256"):
            if f"{corpus} scalar" in v and f"{corpus} avx2" in v:
                s, a = v[f"{corpus} scalar"], v[f"{corpus} avx2"]
                out.append(f"{parser} parser, {corpus}: AVX2 executes {a:.0f} instructions per request, "
                           f"scalar {s:.0f} ({(1 - a / s) * 100:.0f}% fewer).")
            elif corpus in v:
                out.append(f"{parser} parser, {corpus}: {v[corpus]:.0f} instructions per request.")
    return out
