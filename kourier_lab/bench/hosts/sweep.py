"""Sweeps over many host pairs, dispatched by Dask distributed.

    [hosts]
    pairs = [{server = "ssh://root@a", clients = ["ssh://root@b"]},
             {server = "ssh://root@c", clients = ["ssh://root@d"]}]

One Dask task per (server under test, host pair): it opens the pair, runs that
server's shapes and repetitions (pair.run_pair) and returns the rows.
A host is never loaded by two tasks at once: before it starts, a task takes a
cluster-wide `distributed.Lock` named after every host of its pair (in sorted
order, so two tasks never wait on each other), and holds them to the end.
Pairs on disjoint hosts run side by side.  The rows of every task land in the
one batch folder, in the same Parquet layout as a local batch; the progress
bar advances by a task's runs as each task ends.

Without a scheduler address a `LocalCluster` of threads (one per pair) runs in
this process: the tasks only drive SSH sessions, the load runs on the hosts.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Union

from .hosts_table import HostPair, HostsSpec
from ..experiment.files import Experiment
from ..experiment.targets import Target, expand_targets
from ..run.rows import runs_of, tqdm_class
from .pair import run_pair

LOCK_PREFIX = "kourier-lab-host-"


def host_locks(pair: HostPair) -> List[str]:
    """The lock names a task on this pair holds: one per host, sorted."""
    return sorted({LOCK_PREFIX + h.url for h in pair.hosts})


def pair_task(exp: Experiment, pair_index: int, spec: HostsSpec, target: Target, batch_id: str,
              batch_dir: str, commit: str, task_key: str) -> Dict[str, object]:
    """One Dask task: lock the pair's hosts, run one server on it, return its rows."""
    from distributed import Lock
    pair = spec.pairs[pair_index]
    locks = [Lock(name) for name in host_locks(pair)]
    messages: List[str] = []
    for lock in locks:
        lock.acquire()
    try:
        start = time.time()
        rows = run_pair(exp, pair, spec, [target], batch_id, Path(batch_dir), commit,
                        say=messages.append)
        end = time.time()
    finally:
        for lock in reversed(locks):
            lock.release()
    for row in rows:
        row.update(dask_task=task_key, task_start=start, task_end=end)
    return {"rows": rows, "messages": messages}


def run_sweep(exp: Experiment, spec: HostsSpec, targets: Sequence[Target], batch_id: str,
              batch_dir: Path, commit: str, bar, say, scheduler: Optional[str] = None
              ) -> List[Dict[str, object]]:
    """Every (target, pair) as a Dask task; the rows of all of them (one batch)."""
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        from .remote import RemoteError
        raise RemoteError("a sweep over several host pairs needs Dask distributed: "
                          "pip install 'kourier-lab[hosts]' (or `make setup`)") from None
    from ..results import write_rows
    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(n_workers=len(spec.pairs), threads_per_worker=1, processes=False,
                               dashboard_address=None)
        client = Client(cluster)
    rows: List[Dict[str, object]] = []
    try:
        futures = {}
        for t_index, target in enumerate(targets):
            for p_index, pair in enumerate(spec.pairs):
                key = f"{batch_id}-{t_index}-{p_index}"
                fut = client.submit(pair_task, exp, p_index, spec, target, batch_id,
                                    str(batch_dir), commit, key, key=key, pure=False)
                futures[fut] = sum(runs_of(s, exp) for s in exp.shapes)
        for fut in as_completed(list(futures)):
            result = fut.result()
            for m in result["messages"]:
                say(m)
            rows.extend(result["rows"])
            write_rows(rows, batch_dir)     # an interrupted sweep keeps what it measured
            bar.update(futures[fut])
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    order = {t.name: i for i, t in enumerate(targets)}
    pairs = {p.label: i for i, p in enumerate(spec.pairs)}
    rows.sort(key=lambda r: (pairs.get(r.get("host_pair"), 0), order.get(r.get("server"), 0),
                             r.get("shape") or "", r.get("run") or 0))
    return rows


def run_on_hosts(exp: Experiment, out: Union[str, Path, None] = None, progress: bool = True,
                 echo: Optional[Callable[[str], None]] = None,
                 figures: Union[bool, str, Path] = False, summary: bool = True,
                 scheduler: Optional[str] = None):
    """run_experiment for an experiment with [hosts]; the same DataFrame and batch layout."""
    import os
    from ..run.machine import git_commit
    scheduler = scheduler or os.environ.get("KOURIER_LAB_DASK_SCHEDULER") or None
    from ..results import load_batch, new_batch_dir, summary_text, write_rows
    tqdm = tqdm_class()
    spec = exp.hosts
    batch_id, batch_dir = new_batch_dir(exp.name, out)
    commit = git_commit()
    targets = expand_targets(exp.stacks, exp.peers, exp.head_memo, exp.fold_runs, exp.uring_features)
    per_pair = len(targets) * sum(runs_of(s, exp) for s in exp.shapes)
    bar = tqdm(total=per_pair * len(spec.pairs), disable=not progress, unit="run",
               desc=exp.name, dynamic_ncols=True)
    say = echo or (lambda s: tqdm.write(s) if progress else print(s))
    say(f"{exp.name}: {len(targets)} servers x {len(exp.shapes)} shapes x {exp.repetitions} runs "
        f"on {len(spec.pairs)} host pair(s){' (quick)' if exp.quick else ''}")
    rows: List[Dict[str, object]] = []
    try:
        if spec.sweep or scheduler:
            rows = run_sweep(exp, spec, targets, batch_id, batch_dir, commit, bar, say,
                             scheduler=scheduler)
        else:
            rows = run_pair(exp, spec.pairs[0], spec, targets, batch_id, batch_dir, commit,
                            progress=bar.update, say=say)
    finally:
        if rows:
            write_rows(rows, batch_dir)
        bar.close()
    df = load_batch(batch_dir)
    df.attrs["batch_id"] = batch_id
    df.attrs["batch_dir"] = str(batch_dir)
    if summary:
        (echo or print)(summary_text(df))
        (echo or print)(f"rows: {batch_dir / 'rows.parquet'}")
    if figures:
        from ..plots.throughput import write_figures
        paths = write_figures(df, None if figures is True else Path(figures))
        (echo or print)(f"figures: {', '.join(str(p) for p in paths)}")
    return df
