"""The measuring side: experiments run under wrk or h2load on a core split, the
server's CPU and memory sampled, every run kept as a pandas row, summaries and plots.

    from kourier_lab import bench
    df = bench.run_experiment("experiments/quick.toml", quick=True)   # one batch
    all_runs = bench.load_results()                                    # every batch
    bench.summarize(all_runs)                                          # medians, min-max

Rooms (a batch goes through experiment, run, load, results and plots):

    experiment/  what to measure: experiment files (files.py), targets, the core
                 split, the ceiling (native/ceiling.c), request corpora
    run/         measuring it: the matrix (batch.py: run_experiment), starting
                 servers, one sampled wrk/h2load run (measure.py), row columns,
                 checks before measuring, machine facts
    load/        the load tools: wrk and h2load commands and output parsers
    hosts/       the same on other machines over SSH: [hosts] table, agent, one
                 host pair, sweeps over many pairs with Dask (run_on_hosts)
    results/     rows on disk (store.py), the summary table, the bottleneck
                 rule, findings, the printed report
    plots/       figures from rows: throughput, CPU per request, latency
    profile/     where a request's time goes (`kourier-lab profile`), flame
                 graphs, instruction counts, in-process microbenchmarks
    notebooks/   what notebooks 01-05 measure and draw, as package functions

Shared with the rest of the package, one level up: paths.py, sampler.py (the
process-tree sampler), style.py, published_figures.py (the posts' numbers).
"""
from ..paths import quick_from_env, results_dir, figures_dir, experiments_dir  # noqa: F401
from .experiment import PROFILES, Experiment, SpecError, load_experiment, plan_split  # noqa: F401
from .load import WrkError, parse_wrk_output  # noqa: F401


def run_experiment(*args, **kwargs):
    """See kourier_lab.bench.run.batch.run_experiment."""
    from .run import run_experiment as _run
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
