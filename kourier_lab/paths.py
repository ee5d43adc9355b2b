"""Where the repository, results and figures are.

Defaults are the repository's data/ folders (found from the package's location,
so a notebook running in notebooks/ writes to the same place as the CLI run from
the root); $KOURIER_LAB_RESULTS and $KOURIER_LAB_FIGURES override them (the test
suite uses that to keep its runs out of data/).
"""
from __future__ import annotations

import os
from pathlib import Path


def repo_root() -> Path:
    """The checkout the package runs from; for an installed (non-editable)
    package, which has no experiments/ or native/ beside it, the current directory."""
    here = Path(__file__).resolve().parents[1]
    if (here / "experiments").is_dir() or (here / "native").is_dir():
        return here
    return Path.cwd()


def data_dir() -> Path:
    return repo_root() / "data"


def results_dir() -> Path:
    env = os.environ.get("KOURIER_LAB_RESULTS")
    return Path(env) if env else data_dir() / "results"


def figures_dir() -> Path:
    env = os.environ.get("KOURIER_LAB_FIGURES")
    return Path(env) if env else data_dir() / "figures"


def published_dir() -> Path:
    return data_dir() / "published"


def experiments_dir() -> Path:
    return repo_root() / "experiments"


def quick_from_env() -> bool:
    """True when KOURIER_LAB_QUICK is set to something other than 0/empty (notebooks)."""
    return os.environ.get("KOURIER_LAB_QUICK", "") not in ("", "0", "false", "no")


def cache_dir() -> Path:
    """Where built native programs, peers and users' C parsers are kept, outside
    the repository: $KOURIER_LAB_CACHE, else $XDG_CACHE_HOME/kourier_lab, else
    ~/.cache/kourier_lab."""
    if os.environ.get("KOURIER_LAB_CACHE"):
        return Path(os.environ["KOURIER_LAB_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kourier_lab"
