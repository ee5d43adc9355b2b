"""Rows on disk.

Each batch (one `bench` invocation) is a folder <results>/<batch_id>/ holding
rows.parquet (one row per counted run, plus one row per skipped or failed
server and shape), wrk/ (wrk's raw output of every run) and logs/.
`load_results()` reads every batch into one DataFrame.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, List, Optional, Union

import pandas as pd

from ...paths import results_dir

# Column -> pandas dtype.  Nullable types so skipped rows (no figures) and
# normal rows share one schema in Parquet.  The derived figures:
#   cpu_us_per_req      server CPU seconds (user+system, every process of its
#                       tree) x 1e6 / requests: the fair figure when wrk is the limit
#   server_cpu_util     server CPU seconds / (wall seconds x server CPUs)
#   wrk_cpu_util        wrk's CPU seconds (rusage) / (wall x wrk threads);
#                       client_saturated when >= 0.9
#   server_cpus_busy    share of the server CPUs' time not idle during the run,
#   client_cpus_busy    whoever used it (our processes, softirq, other tenants)
#   server_cpus_other   busy minus what the server (client: wrk) used and minus
#   client_cpus_other   softirq: other processes of a shared machine
#   bottleneck          server | client | both | contention | neither: one rule
#                       and one threshold for both sides (bench/results/bottleneck.py);
#                       the summary applies it to the medians
#   latency_overflow    wrk printed a percentile as 0.00us (histogram overflow):
#                       that percentile is NaN, not 0
#   non_2xx_3xx         wrk's "Non-2xx or 3xx responses" (it counts status >= 400)
#   head_memo,          the stacks' switches that flatter identical requests (off:
#   fold_runs           every request parsed and answered on its own); rows of
#                       files older than fold_runs read as False
#   corpus              the distinct/real/api shapes' request corpus (bench/experiment/corpora.py)
#   corpus_sha256       and the SHA-256 of the file loaded; mean_request_bytes is
#   mean_request_bytes  its mean request size (other shapes: request_bytes);
#                       response_bytes of a corpus shape is the mean over one
#                       verified batch
SCHEMA: Dict[str, str] = {
    "batch_id": "string", "timestamp": "string", "experiment": "string",
    "experiment_file": "string", "quick": "boolean", "profile": "string",
    "profile_note": "string",
    "machine_cpu_model": "string", "machine_logical_cpus": "Int64",
    "machine_usable_cpus": "Int64", "machine_kernel": "string", "machine_hostname": "string",
    "python_version": "string", "python_implementation": "string",
    "python_executable": "string", "git_commit": "string",
    "server_kind": "string", "server": "string", "loop": "string", "parser": "string",
    "buffer": "string",
    # where each variant's code came from (registry.source): a user's file or
    # the built-in module, and the file's SHA-256
    "loop_source": "string", "loop_sha256": "string", "parser_source": "string",
    "parser_sha256": "string", "buffer_source": "string", "buffer_sha256": "string",
    "head_memo": "boolean", "fold_runs": "boolean", "uring_features": "string", "app": "string",
    "response": "string", "load_tool": "string",
    "corpus": "string", "corpus_sha256": "string", "corpus_requests": "Int64",
    "mean_request_bytes": "float64",
    "request_bytes": "Int64", "response_bytes": "Int64", "offered_rate": "float64",
    "latency_per_batch": "boolean", "latency_p999_ms": "float64", "latency_samples": "Int64",
    # h2load's open-loop figures (bench/load/h2load.py): latency from the intended send time
    "latency_lower_bound": "boolean", "latency_unfinished": "Int64",
    "latency_in_flight_at_end": "Int64", "latency_uncorrected_p99_ms": "float64",
    "latency_send_lag_p99_ms": "float64", "client_cpu_util": "float64",
    "achieved_of_offered": "float64",
    "workers": "Int64", "server_cpus": "string", "client_cpus": "string",
    "wrk_threads": "Int64", "shape": "string", "connections": "Int64", "pipeline": "Int64",
    "browser_headers": "boolean", "path": "string", "duration_s": "Int64",
    "wrk_timeout_s": "float64", "repetitions": "Int64", "warmup_s": "Int64", "run": "Int64",
    "status": "string", "note": "string",
    # wrk's figures
    "requests": "Int64", "wrk_duration_s": "float64", "bytes_read": "float64",
    "req_per_s": "float64", "transfer_per_s_bytes": "float64",
    "latency_avg_ms": "float64", "latency_stdev_ms": "float64", "latency_max_ms": "float64",
    "latency_within_stdev_pct": "float64",
    "latency_p50_ms": "float64", "latency_p75_ms": "float64", "latency_p90_ms": "float64",
    "latency_p99_ms": "float64", "latency_overflow": "boolean",
    "thread_req_per_s_avg": "float64", "thread_req_per_s_stdev": "float64",
    "thread_req_per_s_max": "float64", "thread_req_per_s_within_stdev_pct": "float64",
    "errors_connect": "Int64", "errors_read": "Int64", "errors_write": "Int64",
    "errors_timeout": "Int64", "errors_socket": "Int64", "non_2xx_3xx": "Int64",
    "wrk_url": "string", "wrk_threads_reported": "Int64", "connections_reported": "Int64",
    "wrk_exit_code": "Int64", "wrk_command": "string", "wrk_raw": "string",
    "raw_path": "string",
    # sampling
    "wall_s": "float64", "wrk_cpu_s": "float64", "wrk_cpu_util": "float64",
    "client_saturated": "boolean", "server_cpu_s": "float64", "server_cpu_user_s": "float64",
    "server_cpu_sys_s": "float64", "server_processes": "Int64", "server_vmhwm_kb": "Int64",
    "server_vmpeak_kb": "Int64", "server_vmrss_kb": "Int64", "cpu_us_per_req": "float64",
    "server_cpu_util": "float64", "bottleneck": "string",
    "server_cpus_busy": "float64", "server_cpus_softirq": "float64",
    "client_cpus_busy": "float64", "client_cpus_softirq": "float64",
    "server_cpus_other": "float64", "client_cpus_other": "float64",
    # the lab's load generator (bench/load/kourier.py): every response checked,
    # latency per request (latency_hdr: HdrHistogram, µs, base64)
    "requests_sent": "Int64", "responses_total": "Int64", "errors_total": "Int64",
    "errors_response": "Int64", "errors_by_kind": "string", "error_messages": "string",
    "responses_missing": "Int64", "unanswered_at_end": "Int64", "reconnects": "Int64",
    "max_queue": "Int64", "fast_path_responses": "Int64", "latency_p9999_ms": "float64",
    "latency_hdr": "string", "client_cpu_s": "float64", "loadgen_cpu_user_s": "float64",
    "loadgen_cpu_sys_s": "float64", "loadgen_cpu_s": "float64",
    "loadgen_cpu_ns_per_response": "float64", "loadgen_command": "string",
    "loadgen_raw": "string", "loadgen_exit_code": "Int64",
    # the lab's load generator's kernel interface (epoll | uring); None for wrk
    # and h2load; kourier-lab rows of files older than the column read as epoll
    "load_io": "string",
    # 1xx interim responses the load generator skipped before final ones
    "interim_responses": "Int64",
}


def to_frame(rows: Iterable[Dict[str, object]]) -> pd.DataFrame:
    df = pd.DataFrame(list(rows))
    for col, dtype in SCHEMA.items():
        if col not in df.columns:
            df[col] = pd.Series([None] * len(df), dtype=dtype)
        else:
            s = df[col]
            if dtype == "float64":
                df[col] = pd.to_numeric(s, errors="coerce").astype("float64")
            elif dtype == "Int64":
                df[col] = pd.to_numeric(s, errors="coerce").round().astype("Int64")
            elif dtype == "boolean":
                df[col] = s.astype("boolean")
            else:
                df[col] = s.astype("string")
    ordered = [c for c in SCHEMA if c in df.columns]
    return df[ordered + [c for c in df.columns if c not in SCHEMA]]


def new_batch_dir(name: str, out: Union[str, Path, None] = None) -> tuple:
    """(batch_id, batch_dir) for a new batch named `name`: a UTC timestamp and the
    name, created under `out` or the results directory."""
    import datetime as _dt
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    batch_id = f"{stamp}-{name}"
    batch_dir = (Path(out) if out is not None else results_dir()) / batch_id
    batch_dir.mkdir(parents=True, exist_ok=True)
    return batch_id, batch_dir


def write_rows(rows: List[Dict[str, object]], batch_dir: Path) -> Path:
    batch_dir.mkdir(parents=True, exist_ok=True)
    path = batch_dir / "rows.parquet"
    tmp = batch_dir / "rows.parquet.tmp"
    to_frame(rows).to_parquet(tmp, index=False)
    tmp.replace(path)
    return path


def _resolve_raw(df: pd.DataFrame, root: Path) -> pd.DataFrame:
    if "raw_path" in df.columns:
        df["raw_path"] = df["raw_path"].map(
            lambda p: str(root / p) if isinstance(p, str) and p else p).astype("string")
    return df


def _older_files(df: pd.DataFrame) -> pd.DataFrame:
    """Rows written before a column existed: what they measured, said explicitly
    (no run folding existed before fold_runs: every stack answered each request;
    the lab's load generator ran on epoll before load_io)."""
    if "fold_runs" not in df.columns:
        df["fold_runs"] = pd.Series(False, index=df.index, dtype="boolean")
    else:
        df["fold_runs"] = df["fold_runs"].astype("boolean").fillna(False)
    if "load_io" not in df.columns:
        df["load_io"] = pd.Series(None, index=df.index, dtype="string")
    if "load_tool" in df.columns:
        # the load generator had only epoll before load_io was recorded
        older = df["load_io"].isna() & (df["load_tool"] == "kourier-lab").fillna(False)
        df["load_io"] = df["load_io"].astype("string").mask(older, "epoll")
    return df


def load_batch(batch_dir: Union[str, Path]) -> pd.DataFrame:
    batch_dir = Path(batch_dir)
    return _older_files(_resolve_raw(pd.read_parquet(batch_dir / "rows.parquet"),
                                     batch_dir.parent))


def load_results(results: Union[str, Path, None] = None, experiment: Optional[str] = None,
                 latest: bool = False) -> pd.DataFrame:
    """Every wrk run ever recorded under `results` (default data/results) as one DataFrame.

    experiment  only that experiment's batches
    latest      only the most recent batch (of that experiment, if given)
    raw_path is made absolute so wrk's output can be opened directly.
    """
    root = Path(results) if results is not None else results_dir()
    frames = []
    for path in sorted(root.glob("*/rows.parquet")):
        frames.append(_resolve_raw(pd.read_parquet(path), root))
    if not frames:
        return to_frame([])
    df = _older_files(pd.concat(frames, ignore_index=True))
    if experiment is not None:
        df = df[df["experiment"] == experiment]
    if latest and len(df):
        df = df[df["batch_id"] == df["batch_id"].max()]
    return df.reset_index(drop=True)
