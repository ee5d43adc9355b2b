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


# the tests that run for minutes: notebooks that run every stack and peer, the ASan server,
# the Numba stacks started on an empty cache
_LONG_TESTS = ("compliance_notebook", "event_loops_notebook", "server_matrix_notebook",
               "reproduction_notebook", "under_asan",
                   "on_an_empty_cache")


def _priority(item) -> int:
    """Longest first, so that with workers no long test starts last."""
    rel = os.path.relpath(str(item.path), TESTS).split(os.sep)
    if any(name in item.name for name in _LONG_TESTS):
        return 0
    if rel[0] == "notebooks" or "sanitiz" in rel[-1]:
        return 1
    return 2 if rel[0] in ("server", "system", "compliance") else 3


def pytest_collection_modifyitems(config, items):
    items.sort(key=_priority)
    for item in items:
        rel = os.path.relpath(str(item.path), TESTS).split(os.sep)
        if rel[0] in _BY_FOLDER:
            item.add_marker(_BY_FOLDER[rel[0]])
        if "sanitiz" in rel[-1]:
            item.add_marker("sanitizer")
        if _starts_a_server(item):
            item.add_marker("server")


# With workers (`make test` runs pytest-xdist), a file's tests stay on one worker
# so a module's servers start once, test_server.py and test_spec.py share one
# worker (and their session-scoped servers), and the notebooks spread one per worker.
_SHARED_SCOPES = {"tests/server/test_server.py": "connection_server", "tests/server/test_spec.py": "connection_server"}


# files whose tests each run for minutes and share nothing: one worker per test
_ONE_PER_WORKER = {"tests/server/test_numba_warm_up.py"}


def _scope(nodeid: str) -> str:
    path = nodeid.split("::", 1)[0]
    if path.startswith("tests/notebooks/") or path in _ONE_PER_WORKER:
        return nodeid
    return _SHARED_SCOPES.get(path, path)


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling
    config.option.loadscopereorder = False      # scopes in collection order: longest first

    class ByFile(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            return _scope(nodeid)

    return ByFile(config, log)


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
        try:
            ServerProcess(loop=loop, parser=parser, buffer=buffer).start(timeout=900).stop()
        except Exception:       # a stack that cannot start here: its own tests say why
            pass
