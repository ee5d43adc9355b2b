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
