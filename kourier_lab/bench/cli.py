"""`kourier-lab bench | profile | micro | report | corpora | load`: the bench rooms' commands.

    kourier-lab bench experiments/quick.toml [--quick] [--out data/results] [--figures DIR]
    kourier-lab micro parsers|buffers|timers [--quick] [--repeat N] [--out DIR]
    kourier-lab profile STACK [--shape pipelined] [--out data/figures] [--quick] [--only cpu,stages,...]
    kourier-lab report [--results data/results] [--experiment NAME] [--all] [--figures DIR]
    kourier-lab corpora [distinct real api] [--out data/corpora] [--seed N]
    kourier-lab load URL [-c N] [-t N] [-d S] [--pipeline N] [--rate R] [--shape S] [--io I] [--json]
"""
from __future__ import annotations

from pathlib import Path

from ..cpus import cpus_option


def _usage(msg: str):
    from ..errors import UsageError
    return UsageError(msg)


def register(sub) -> None:
    b = sub.add_parser("bench", help="run an experiment: a load tool against each server on a core split",
                       description="Run an experiment file: the ceiling, our stacks and the peers "
                                   "under the load tool (kourier-lab by default), rows to data/results/, "
                                   "summary table, figures.")
    b.add_argument("experiment", help="experiment file, e.g. experiments/quick.toml")
    b.add_argument("--quick", action="store_true",
                   help="1 s runs, 2 repetitions: for tests and notebooks (figures are indicative)")
    b.add_argument("--out", default=None, help="results directory (default data/results)")
    b.add_argument("--figures", default=None, help="figures directory (default data/figures)")
    b.add_argument("--no-figures", action="store_true", help="do not write figures")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.add_argument("--head-memo", choices=("off", "on", "both"), default=None,
                   help="override the experiment's head_memo: off (every request parsed), on, "
                        "or both (each stack twice; memo-on rows are named <stack>+memo)")
    b.add_argument("--fold-runs", choices=("off", "on", "both"), default=None,
                   help="override the experiment's fold_runs: off (every request answered on "
                        "its own), on, or both (fold-on rows are named <stack>+fold)")
    b.add_argument("--cpus", default=None,
                   help="CPUs to split between server and wrk, e.g. 0-3 (default: all usable)")
    b.set_defaults(func=run_bench)

    pr = sub.add_parser("profile", help="where a request's time goes in one stack: stages, syscalls, "
                                         "flame graph, instructions",
                        description="Per-stage server CPU per request (stage counters on, their "
                                    "overhead measured), syscalls per request (strace -c), a flame graph "
                                    "(py-spy or perf) and exact instructions per request of the parser "
                                    "(callgrind), under a bench shape's wrk load.")
    pr.add_argument("stack", help="loop/parser/buffer (e.g. c/c/c) or python | asyncio | c | numba | uring")
    pr.add_argument("--shape", default="pipelined",
                    help="pipelined | distinct | real | keepalive | browser (default pipelined)")
    pr.add_argument("--out", default=None, help="figures directory (default data/figures)")
    pr.add_argument("--results", default=None, help="results directory (default data/results)")
    pr.add_argument("--duration", type=int, default=None, help="seconds per load run (default 5; 1 quick)")
    pr.add_argument("--only", default=None,
                    help="comma-separated measures: cpu,stages,syscalls,flame,instructions (default all)")
    pr.add_argument("--quick", action="store_true", help="1 s runs, fewer connections and rounds")
    pr.set_defaults(func=run_profile)

    m = sub.add_parser("micro", help="in-process microbenchmarks of parsers, buffers or timers",
                       description="Microbenchmarks on fixed corpora, every registered variant, "
                                   "median and spread of repeated rounds.")
    m.add_argument("component", choices=["parsers", "buffers", "timers"])
    m.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    m.add_argument("--repeat", type=int, default=None, help="rounds per measurement (default 7)")
    m.add_argument("--variants", default=None, help="comma-separated variants (default: all)")
    m.add_argument("--out", default=None, help="results directory (default data/results)")
    m.add_argument("--no-save", action="store_true", help="print only, write no rows")
    m.set_defaults(func=run_micro)

    r = sub.add_parser("report", help="summary table and figures of recorded runs",
                       description="Print the summary of recorded batches and write their figures.")
    r.add_argument("--results", default=None, help="results directory (default data/results)")
    r.add_argument("--experiment", default=None, help="only this experiment's batches")
    r.add_argument("--batch", default=None, help="one batch id (default: the latest)")
    r.add_argument("--all", action="store_true", help="every batch, not only the latest")
    r.add_argument("--figures", default=None, help="figures directory (default data/figures)")
    r.add_argument("--no-figures", action="store_true", help="do not write figures")
    r.set_defaults(func=run_report)

    lo = sub.add_parser("load", help="the lab's load generator against a local URL "
                                     "(native/loadgen.c: closed or open loop, every response checked)",
                        description="Load a server on 127.0.0.0/8 for a bounded time with the "
                                    "lab's load generator and print its summary: responses, "
                                    "errors by kind, requests/s, client CPU, per-request latency "
                                    "percentiles.")
    lo.add_argument("url", help="http://127.0.0.1:PORT/path (localhost or 127.0.0.0/8 only)")
    lo.add_argument("-c", "--connections", type=int, default=64, help="connections (default 64)")
    lo.add_argument("-t", "--threads", type=int, default=1, help="threads (default 1)")
    lo.add_argument("-d", "--duration", type=float, default=5.0, help="seconds measured (default 5)")
    lo.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up first (default 1)")
    lo.add_argument("--pipeline", type=int, default=None,
                    help="requests per write, closed loop (default 1, or the shape's)")
    lo.add_argument("--rate", type=float, default=None,
                    help="open loop: requests/s offered over all connections, latency from "
                         "each request's intended send time")
    lo.add_argument("--shape", default=None,
                    help="a bench shape's requests: keepalive | pipelined | browser | distinct | "
                         "real | api")
    lo.add_argument("--corpus", default=None, help="a corpus file's requests (kourier-lab corpora)")
    lo.add_argument("--timeout", type=float, default=2.0,
                    help="seconds without an answer before a connection is closed (default 2)")
    lo.add_argument("--sources", type=int, default=None,
                    help="spread source addresses over this many of 127.0.0.0/8")
    lo.add_argument("--cpus", default=None, help="pin thread i to the i-th of these CPUs, e.g. 1")
    lo.add_argument("--io", default=None, choices=("epoll", "uring"),
                    help="the client's kernel interface (default: uring where it can run, "
                         "the cheaper here, else epoll; epoll with --rate)")
    lo.add_argument("--json", action="store_true", help="print the JSON summary")
    lo.set_defaults(func=run_load)

    from .experiment.corpora import register as register_corpora
    register_corpora(sub)


def run_bench(args) -> int:
    from .experiment.ceiling import CeilingBuildError
    from .run.batch import run_experiment
    from .experiment.files import SpecError, load_experiment
    from .load.wrk import WrkError
    try:
        exp = load_experiment(args.experiment)
    except SpecError as e:
        raise _usage(str(e)) from None
    switch = {"off": (False,), "on": (True,), "both": (False, True)}
    if args.head_memo:
        import dataclasses
        exp = dataclasses.replace(exp, head_memo=switch[args.head_memo])
    if args.fold_runs:
        import dataclasses
        exp = dataclasses.replace(exp, fold_runs=switch[args.fold_runs])
    cpus = cpus_option(args.cpus) if args.cpus else None
    figures = False if args.no_figures else (Path(args.figures) if args.figures else True)
    try:
        df = run_experiment(exp, quick=args.quick, out=args.out, progress=not args.no_progress,
                            figures=figures, cpus=cpus)
    except (WrkError, CeilingBuildError) as e:
        raise _usage(str(e)) from None
    except RuntimeError as e:
        from .hosts.remote import RemoteError     # a host of [hosts] that cannot be used
        if isinstance(e, RemoteError):
            raise _usage(str(e)) from None
        raise
    ok = (df["status"] == "ok").sum()
    return 0 if ok else 1


def run_load(args) -> int:
    import subprocess
    import sys
    from .load.kourier import LoadgenError, load_for_command_line
    try:
        load = load_for_command_line(
            args.url, args.connections, args.threads, args.duration, args.pipeline, args.rate,
            args.shape, args.corpus, args.warmup, args.timeout, args.sources,
            cpus_option(args.cpus) if args.cpus else None,
            **({"io": args.io} if args.io else {}))
        cmd = load.command()
    except (ValueError, LoadgenError) as e:
        raise _usage(str(e)) from None
    if not args.json:
        cmd.remove("--json")
    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True,
                       timeout=load.warmup_s + load.duration_s + load.timeout_s + 30)
    if r.returncode == 2:            # it refused an argument: its one line
        raise _usage(r.stderr.strip().splitlines()[0].removeprefix("loadgen: "))
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    return r.returncode


def run_micro(args) -> int:
    from .profile.micro import run_micro as _run
    if args.repeat is not None and args.repeat < 1:
        raise _usage("--repeat must be >= 1")
    variants = [v for v in args.variants.split(",") if v] if args.variants else None
    try:
        _run(args.component, quick=args.quick, repeat=args.repeat, variants=variants,
             out=None if args.no_save else (args.out or True))
    except ValueError as e:
        raise _usage(str(e)) from None
    return 0


def run_report(args) -> int:
    from .plots.throughput import write_figures
    from .results import load_results, summary_text
    root = Path(args.results) if args.results else None
    df = load_results(root, experiment=args.experiment)
    if df.empty:
        raise _usage(f"no recorded runs under {root or 'data/results'}"
                     + (f" for experiment {args.experiment!r}" if args.experiment else "")
                     + " (run `kourier-lab bench experiments/quick.toml` first)")
    if args.batch:
        if args.batch not in set(df["batch_id"]):
            raise _usage(f"no batch {args.batch!r}; recorded: "
                         f"{', '.join(sorted(df['batch_id'].unique())[-5:])}")
        df = df[df["batch_id"] == args.batch]
    elif not args.all:
        df = df[df["batch_id"] == df["batch_id"].max()]
    print(summary_text(df))
    if not args.no_figures:
        for batch, g in df.groupby("batch_id"):
            paths = write_figures(g, Path(args.figures) if args.figures else None)
            print(f"figures ({batch}): {', '.join(str(p) for p in paths)}")
    return 0


def run_profile(args) -> int:
    from .profile.stack import MEASURES, ProfileError, profile
    measures = tuple(m.strip() for m in args.only.split(",")) if args.only else MEASURES
    try:
        profile(args.stack, args.shape, out=args.out, results=args.results, quick=args.quick,
                duration=args.duration, measures=measures)
    except ProfileError as e:
        raise _usage(str(e))
    return 0
