"""`kourier-lab memory | soak | hostile`.

    kourier-lab memory experiments/memory.toml [--quick] [--out DIR] [--figures DIR]
    kourier-lab soak [--duration 120] [--stacks c/c/c,...] [--quick] [--out DIR]
    kourier-lab hostile [--stacks c/c/c,...] [--inputs head_trickle,...] [--repetitions 3] [--quick]
"""
from __future__ import annotations

import contextlib
from pathlib import Path


def _usage(msg: str):
    from ..errors import UsageError
    return UsageError(msg)


def register(sub) -> None:
    m = sub.add_parser("memory", help="RSS and VmPeak with many open connections (1 k .. 500 k)",
                       description="Run a memory experiment file: for each server and step, a "
                                   "fresh server, N keep-alive connections from 127.0.0.0/8, "
                                   "RSS/VmHWM/VmPeak and RSS per connection; rows to "
                                   "data/results/, figures to data/figures/.")
    m.add_argument("experiment", help="experiment file, e.g. experiments/memory.toml")
    m.add_argument("--quick", action="store_true", help="the file's [quick] settings (tests, notebooks)")
    m.add_argument("--out", default=None, help="results directory (default data/results)")
    m.add_argument("--figures", default=None, help="figures directory (default data/figures)")
    m.add_argument("--no-figures", action="store_true", help="do not write figures")
    m.add_argument("--cpus", default=None, help="CPUs to split between server and clients, e.g. 0-3")
    m.set_defaults(func=run_memory_cmd)

    s = sub.add_parser("soak", help="native stacks under mixed load; RSS and descriptors must stay flat",
                       description="Each stack (default: every native stack) under pipelined, "
                                   "keep-alive, new-connection and malformed load for a bounded "
                                   "time, RSS and open descriptors sampled every second.")
    s.add_argument("--duration", type=int, default=120, help="seconds per stack (default 120)")
    s.add_argument("--stacks", default=None,
                   help="comma-separated loop/parser/buffer stacks (default: every native stack)")
    s.add_argument("--quick", action="store_true", help="10 s per stack")
    s.add_argument("--out", default=None, help="results directory (default data/results)")
    s.add_argument("--figures", default=None, help="figures directory (default data/figures)")
    s.add_argument("--no-figures", action="store_true", help="do not write figures")
    s.add_argument("--cpus", default=None, help="CPUs to split between server and clients, e.g. 0-3")
    s.set_defaults(func=run_soak_cmd)

    from .hostile import INPUTS
    h = sub.add_parser("hostile", help="server CPU spent on hostile input (floods, trickles, tiny chunks)",
                       description="Each input, paced as a slow client sends it, against each stack "
                                   "(default: each loop's own stack); the answer and the server's CPU "
                                   "seconds per input, median of the runs; rows to data/results/. "
                                   "Inputs: " + "; ".join(f"{i.name}: {i.description}" for i in INPUTS))
    h.add_argument("--stacks", default=None, help="comma-separated loop/parser/buffer stacks")
    h.add_argument("--inputs", default=None,
                   help="comma-separated inputs (default: all of " + ", ".join(i.name for i in INPUTS) + ")")
    h.add_argument("--repetitions", type=int, default=3, help="runs per stack and input (default 3)")
    h.add_argument("--max-header-bytes", type=int, default=16384,
                   help="the servers' head limit (default 16384; head_trickle_60k needs 65536)")
    h.add_argument("--quick", action="store_true", help="smaller inputs, one run")
    h.add_argument("--out", default=None, help="results directory (default data/results)")
    h.add_argument("--cpus", default=None, help="CPUs to split between server and client, e.g. 0-1")
    h.set_defaults(func=run_hostile_cmd)


def _cpus(text):
    if not text:
        return None
    from ..cpus import cpus_option
    return cpus_option(text)


@contextlib.contextmanager
def _summary_on_interrupt(out, suffix: str, show):
    """SIGINT/SIGTERM (kourier_lab.cli turns both into procs.Interrupted) unwind
    through the runs' own finally blocks, which stop their servers and clients;
    here the rows written so far (every finished step) are read back and
    summarised before the command exits 130/143."""
    from ..paths import results_dir
    root = Path(out) if out else results_dir()
    before = set(root.glob(f"*-{suffix}")) if root.is_dir() else set()
    try:
        yield
    except KeyboardInterrupt:
        new = sorted(set(root.glob(f"*-{suffix}")) - before) if root.is_dir() else []
        rows = new[-1] / "rows.parquet" if new else None
        if rows is not None and rows.exists():
            import pandas as pd
            df = pd.read_parquet(rows)
            print(f"interrupted: {len(df)} rows finished before the signal are kept")
            show(df)
            print(f"rows: {new[-1]}")
        else:
            print("interrupted before any row was finished")
        raise


def _figures(args):
    return False if args.no_figures else (Path(args.figures) if args.figures else True)


def run_memory_cmd(args) -> int:
    from ..bench.experiment.files import SpecError
    from .memory import load_memory_spec, run_memory
    try:
        spec = load_memory_spec(args.experiment)
    except SpecError as e:
        raise _usage(str(e)) from None
    with _summary_on_interrupt(args.out, spec.name, lambda d: print(format_memory_table(d))):
        df = run_memory(spec, quick=args.quick, out=args.out, figures=_figures(args),
                        cpus=_cpus(args.cpus))
    print(format_memory_table(df))
    for p in df.attrs.get("figures", []):
        print(f"figure: {p}")
    print(f"rows: {df.attrs['batch_dir']}")
    return 0 if (df["status"] == "ok").any() else 1


def format_memory_table(df) -> str:
    import math
    lines = [f"{'server':<24} {'step':>7} {'held':>7} {'req/s':>8} {'p99 ms':>8} {'errors':>7} "
             f"{'RSS MB':>8} {'B/conn':>7} {'VmPeak MB':>10}  status; limit"]
    lines.append("-" * len(lines[0]))
    for _, r in df.iterrows():
        if r["status"] == "ok":
            p99 = r["latency_p99_ms"]
            lines.append(
                f"{r['server']:<24} {r['step']:>7} {int(r['connections_held']):>7} "
                f"{r['req_per_s']:>8.0f} {'-' if math.isnan(p99) else f'{p99:.2f}':>8} "
                f"{int(r['errors_socket'] or 0) + int(r['non_2xx_3xx'] or 0):>7} "
                f"{r['server_vmrss_kb'] / 1024:>8.1f} {r['rss_per_conn_bytes']:>7.0f} "
                f"{r['server_vmpeak_kb'] / 1024:>10.0f}  ok"
                + (f"; {r['note']}" if r["note"] else ""))
        else:
            lines.append(f"{r['server']:<24} {r['step']:>7} {'':>7} {'':>8} {'':>8} {'':>7} "
                         f"{'':>8} {'':>7} {'':>10}  {r['status']}: {str(r['note'])[:120]}")
    return "\n".join(lines)


def _print_soak_rows(df) -> None:
    for _, r in df.iterrows():
        print(f"{r['server']:<24} {r['status']:<8} {str(r.get('note') or '')[:120]}")


def run_soak_cmd(args) -> int:
    from .soak import run_soak
    if args.duration < 3:
        raise _usage("--duration must be >= 3 seconds (the first and last thirds are compared)")
    duration = 10 if args.quick else args.duration
    stacks = [s for s in args.stacks.split(",") if s] if args.stacks else None
    if stacks:
        from .. import loops
        known = {"/".join(c) for c in loops.combinations()}
        bad = [s for s in stacks if s not in known]
        if bad:
            raise _usage(f"--stacks: {bad[0]!r} is not a runnable stack here "
                         f"(runnable: {', '.join(sorted(known))})")
    try:
        with _summary_on_interrupt(args.out, "soak", _print_soak_rows):
            df = run_soak(stacks, duration=duration, out=args.out, figures=_figures(args),
                          cpus=_cpus(args.cpus))
    except ValueError as e:
        raise _usage(str(e)) from None
    for p in df.attrs.get("figures", []):
        print(f"figure: {p}")
    print(f"rows: {df.attrs['batch_dir']}")
    bad = df[(df["status"] != "ok") | (df["note"].fillna("") != "")]
    return 1 if len(bad) else 0


def run_hostile_cmd(args) -> int:
    from .hostile import BY_NAME, format_hostile_table, run_hostile
    stacks = [s for s in args.stacks.split(",") if s] if args.stacks else None
    inputs = [s for s in args.inputs.split(",") if s] if args.inputs else None
    for name in inputs or ():
        if name not in BY_NAME:
            raise _usage(f"--inputs: unknown input {name!r} (choose from {', '.join(BY_NAME)})")
    if args.repetitions < 1:
        raise _usage("--repetitions must be >= 1")
    if not 1024 <= args.max_header_bytes < 1 << 20:
        raise _usage("--max-header-bytes must be from 1024 to 1048575")
    try:
        with _summary_on_interrupt(args.out, "hostile", lambda d: print(format_hostile_table(d))):
            df = run_hostile(stacks, inputs, repetitions=1 if args.quick else args.repetitions,
                             quick=args.quick, out=args.out, cpus=_cpus(args.cpus),
                             max_header_bytes=args.max_header_bytes)
    except ValueError as e:
        raise _usage(str(e)) from None
    print(format_hostile_table(df))
    print(f"rows: {df.attrs['batch_dir']}")
    ran = df[df["status"] != "skipped"]
    return 0 if len(ran) and (ran["status"] == "ok").all() and ran["answered_as_expected"].fillna(False).all() else 1
