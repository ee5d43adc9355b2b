"""Sweeps over many host pairs, dispatched by Dask distributed.

    [hosts]
    pairs = [{server = "ssh://root@a", clients = ["ssh://root@b"]},
             {server = "ssh://root@c", clients = ["ssh://root@d"]}]

One Dask task per (server under test, host pair): it opens the pair, runs that
server's shapes and repetitions (remote_run.run_pair) and returns the rows.
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
from typing import Dict, List, Optional, Sequence

from .hosts import HostPair, HostsSpec
from .spec import Experiment
from .targets import Target

LOCK_PREFIX = "kourier-lab-host-"


def host_locks(pair: HostPair) -> List[str]:
    """The lock names a task on this pair holds: one per host, sorted."""
    return sorted({LOCK_PREFIX + h.url for h in pair.hosts})


def pair_task(exp: Experiment, pair_index: int, spec: HostsSpec, target: Target, batch_id: str,
              batch_dir: str, commit: str, task_key: str) -> Dict[str, object]:
    """One Dask task: lock the pair's hosts, run one server on it, return its rows."""
    from distributed import Lock
    from .remote_run import run_pair
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
    from .remote_run import _runner
    from .results import write_rows
    runs_of = _runner()._runs_of
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
