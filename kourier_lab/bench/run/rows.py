"""The columns every row shares: where, what and with which switches it was measured."""
from __future__ import annotations


import datetime as _dt
import importlib
import re
from typing import Dict

from .machine import machine_info
from ..experiment.files import Experiment, Shape
from ..experiment.split import Split, cpu_list
from ..experiment.targets import Target

def one_line(error) -> str:
    """An error message as one line (tools' multi-line output joined with ' | ')."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    return " | ".join(lines)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def utcnow() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def variant_sources(target: Target) -> Dict[str, object]:
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


def base_row(exp: Experiment, split: Split, batch_id: str, commit: str, target: Target,
              shape: Shape) -> Dict[str, object]:
    row = {
        "batch_id": batch_id,
        "timestamp": utcnow(),
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
        **variant_sources(target),
        # the head memo and run folding: stacks say what they ran with; the
        # ceiling never parses and the peers have neither that we could switch,
        # so both are recorded as off
        "head_memo": bool(target.head_memo),
        "fold_runs": bool(target.fold_runs),
        # the uring loop's io_uring switches on ("multishot+buf-ring+defer-taskrun"); None for
        # every other server
        "uring_features": target.uring_features or None,
        "response": exp.response,
        # the app answering: "default" (the benchmark app, or a peer's/the
        # ceiling's own fixed answer) or "demo" (Python handlers, api shape)
        "app": shape.app,
        "load_tool": shape.load_tool,
        # the lab's load generator's kernel interface (its run's figures say which
        # it used); None for wrk and h2load
        "load_io": ((exp.load_io or _default_io(shape.name == "rate"))
                    if shape.load_tool == "kourier-lab" else None),
        "workers": split.workers,
        "server_cpus": cpu_list(split.server_cpus),
        "client_cpus": cpu_list(split.client_cpus),
        "wrk_threads": split.wrk_threads,
        "shape": shape.name,
        "connections": shape.connections if shape.connections != "max" else None,
        "pipeline": shape.pipeline,
        "browser_headers": shape.browser,
        "path": shape.path if not shape.corpus else None,
        **corpus_columns(shape),
        "duration_s": shape.duration_s,
        "wrk_timeout_s": shape.timeout_s,
        "repetitions": exp.repetitions,
        "warmup_s": exp.warmup_s,
        "run": 0,
        "status": "ok",
        "note": "",
    }
    return row


def _default_io(open_loop: bool) -> str:
    from ..load.kourier import default_io
    return default_io(open_loop)


def corpus_info(name: str):
    """The corpus file a shape loads (regenerated from its seed when missing)."""
    from ..experiment.corpora import info
    return info(name)


def corpus_columns(shape: Shape) -> Dict[str, object]:
    """corpus / corpus_sha256 / corpus_requests / mean_request_bytes of a corpus
    shape (the file as loaded; mean_request_bytes of the others is filled in
    from the measured request)."""
    if not shape.corpus:
        return {"corpus": None, "corpus_sha256": None, "corpus_requests": None,
                "mean_request_bytes": None}
    c = corpus_info(shape.corpus)
    return {"corpus": c.name, "corpus_sha256": c.sha256, "corpus_requests": c.requests,
            "mean_request_bytes": c.mean_request_bytes}


def tqdm_class():
    # tqdm.auto wants ipywidgets inside Jupyter and warns without it; the
    # plain text bar works everywhere.
    try:
        import ipywidgets  # noqa: F401
        from tqdm.auto import tqdm
    except ImportError:
        from tqdm import tqdm
    return tqdm




def runs_of(shape: Shape, exp: Experiment) -> int:
    """Counted runs of one server in one shape (a rate sweep: one per offered rate)."""
    if shape.name == "rate":
        return exp.repetitions * (len(shape.rates) or shape.rate_steps)
    return exp.repetitions
