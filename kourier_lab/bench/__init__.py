"""The measuring side: wrk on a core split, server CPU and memory, experiments,
results as pandas rows, plots, in-process microbenchmarks.

    from kourier_lab import bench
    df = bench.run_experiment("experiments/quick.toml", quick=True)   # one batch
    all_runs = bench.load_results()                                    # every batch
    bench.summarize(all_runs)                                          # medians, min-max

Modules: wrk (runner + output parser, lua/pipeline.lua), split (core split and
profiles), sampler (process-tree CPU/memory), verify (checks before measuring),
ceiling (native/ceiling.c), spec (experiment files), targets (what is measured),
runner (the matrix), results (rows, summary), plots, published (the posts'
numbers), micro (in-process microbenchmarks); hosts, remote, remote_run, agent
(experiments with [hosts]: server and wrk on other machines over SSH), sweep (Dask).
"""
from ..paths import quick_from_env, results_dir, figures_dir, experiments_dir  # noqa: F401
from .experiment.files import Experiment, SpecError, load_experiment  # noqa: F401
from .experiment.split import PROFILES, plan_split  # noqa: F401
from .load.wrk import WrkError, parse_wrk_output  # noqa: F401


def run_experiment(*args, **kwargs):
    """See kourier_lab.bench.run.batch.run_experiment."""
    from .run.batch import run_experiment as _run
    return _run(*args, **kwargs)


def load_results(*args, **kwargs):
    """See kourier_lab.bench.results.store.load_results: every recorded run, one DataFrame."""
    from .results import load_results as _load
    return _load(*args, **kwargs)


def summarize(df):
    from .results import summarize as _summarize
    return _summarize(df)


def format_summary(summary):
    from .results import format_summary as _format
    return _format(summary)
