"""Set-up checks for the whole suite.

Every built-in variant (parsers, buffers, loops: the Numba ones and the native
C build included) must import here: the suite parametrizes over the variants
that load, so a broken Numba install or a missing native build would otherwise
pass silently with those variants left out.  `make test` runs the README's
set-up first; on a machine where a variant cannot be had, set
KOURIER_LAB_ALLOW_MISSING_VARIANTS=1 to run the rest knowingly.
"""
import os

import pytest


def pytest_configure(config):
    if os.environ.get("KOURIER_LAB_ALLOW_MISSING_VARIANTS") == "1":
        return
    from kourier_lab import buffers, loops, parsers
    missing = []
    for kind, registry in (("parser", parsers), ("buffer", buffers), ("loop", loops)):
        builtins = registry._REGISTRY.builtins
        for name, why in registry.unavailable().items():
            if name in builtins:
                missing.append(f"{kind} {name!r}: {why}")
    if missing:
        pytest.exit("built-in variants do not import (run `make setup`, or set "
                    "KOURIER_LAB_ALLOW_MISSING_VARIANTS=1 to test without them):\n  "
                    + "\n  ".join(missing), returncode=4)


# Markers by where a test lives and what it starts, so a developer can run one kind:
#   pytest tests/parsers            one component
#   pytest -m "not notebook and not system and not sanitizer"   the fast inner loop
TESTS = os.path.dirname(os.path.abspath(__file__))
_BY_FOLDER = {"notebooks": "notebook", "system": "system"}


_STARTERS = {"ServerProcess", "start_server"}


def _starts_a_server(item) -> bool:
    """A server fixture, or a call (direct or through a helper of its module) that starts one."""
    names = set(getattr(item, "fixturenames", ()))
    if any("server" in n for n in names) or names & {"pair", "servers"}:
        return True
    func, module = getattr(item, "function", None), getattr(item, "module", None)
    if func is None or module is None:
        return False
    helpers = {n for n, f in vars(module).items()
               if callable(f) and hasattr(f, "__code__") and _STARTERS & set(f.__code__.co_names)}
    return bool((_STARTERS | helpers) & set(func.__code__.co_names))


# With workers (`make test` runs pytest-xdist, --dist loadgroup), the tests of one
# file stay on one worker, so a module's servers start once; the notebooks spread
# one per worker. Files that share one session-scoped server form one group.
_SHARED_GROUPS = {"test_server.py": "connection_server", "test_spec.py": "connection_server"}


def _group(rel):
    if rel[0] == "notebooks":
        return None
    return _SHARED_GROUPS.get(rel[-1], "/".join(rel))


@pytest.hookimpl(tryfirst=True)      # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    for item in items:
        rel = os.path.relpath(str(item.path), TESTS).split(os.sep)
        if rel[0] in _BY_FOLDER:
            item.add_marker(_BY_FOLDER[rel[0]])
        if "sanitiz" in rel[-1]:
            item.add_marker("sanitizer")
        if _starts_a_server(item):
            item.add_marker("server")
        group = _group(rel)
        if group and not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group(group))


def pytest_sessionstart(session):
    """Before workers start (xdist's controller only): build what several workers
    would otherwise build at once into the same cache (the ceiling, the Go and
    hyper peers) and fill the Numba cache, so workers load rather than compile."""
    config = session.config
    if hasattr(config, "workerinput") or not getattr(config.option, "numprocesses", None):
        return
    from kourier_lab import peers
    from kourier_lab.bench.experiment.ceiling import build_ceiling
    from kourier_lab.server.process import ServerProcess
    build_ceiling()
    for name in ("go", "hyper"):
        try:
            peers.build(name)
        except Exception:       # unavailable here: the tests that need it say so
            pass
    for loop, parser, buffer in (("numba", "numba", "numba"), ("c", "numba", "c")):
        ServerProcess(loop=loop, parser=parser, buffer=buffer).start(timeout=900).stop()
