"""The whole native server -- loop.c with its epoll and io_uring drivers,
ringbuffer.c and parser.c, as the C loop links them -- under AddressSanitizer
+ UndefinedBehaviorSanitizer.

native/build_loop.py --sanitize writes an ASan + UBSan build of _native_loop
into a copy of the package; the server, hostile, spec and allocation-failure
suites and the short soak then run on the c/c/c stack from that copy, and
the connection scripts on c/python/c (one pytest subprocess), with libasan preloaded into the Python host (it is not
built with ASan) and leak detection off (CPython's own allocations are not
ours) and a 1 MB quarantine (the default 256 MB one grows the worker's RSS
through the soak, which checks that RSS stays flat).  Any sanitizer report is a failure, whatever the tests said.  The
parser-only fuzz pass is tests/native/test_native_sanitizers.py.
"""
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SUITES = ["tests/server/test_server.py", "tests/server/test_hostile.py", "tests/server/test_spec.py",
          "tests/native/test_alloc_failure.py", "tests/stress/test_stress.py"]
# the C loop with its own parser (connection scripts, server and hostile cases,
# soak) and with the Python parser (the crossing: loop.c calling back into Python
# per request, its connection scripts); a SIGKILL under load would leave a
# sanitizer log of the killed worker's own
# the uring loop (uring/c/c): the same suites over the io_uring driver
SELECT = ("(c/c/c or c-c-c or c/python/c or uring/c/c or uring-c-c) and not sigkill "
          "and not timed_connection_script[asyncio")


def _preload():
    """libasan first, then libstdc++ (without it, ASan cannot intercept the C++
    exceptions of extension modules such as matplotlib's: a CHECK failure)."""
    cc = os.environ.get("CC", "gcc")
    libs = []
    for name in ("libasan.so", "libstdc++.so"):
        out = subprocess.run([cc, f"-print-file-name={name}"], capture_output=True, text=True).stdout.strip()
        assert os.path.isabs(out) and os.path.exists(out), f"{cc} has no {name} (Debian: gcc, libasan8)"
        libs.append(os.path.realpath(out))
    return " ".join(libs)


@pytest.mark.timeout(900)
def test_native_server_under_asan_and_ubsan(tmp_path):
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "_native_loop*.so")
    shutil.copytree(os.path.join(ROOT, "kourier_lab"), tmp_path / "kourier_lab", ignore=ignore)
    shutil.copytree(os.path.join(ROOT, "tests"), tmp_path / "tests", ignore=ignore)
    build = subprocess.run([sys.executable, os.path.join(ROOT, "native", "build_loop.py"), "--sanitize",
                            str(tmp_path / "kourier_lab")], cwd=ROOT, capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    logs = tmp_path / "sanitizer"
    env = dict(os.environ, PYTHONPATH=str(tmp_path), LD_PRELOAD=_preload(),
               ASAN_OPTIONS=f"detect_leaks=0:quarantine_size_mb=1:log_path={logs}",
               UBSAN_OPTIONS=f"print_stacktrace=1:log_path={logs}")
    env.pop("KOURIER_LAB_SPEC", None)
    where = subprocess.run([sys.executable, "-c", "import kourier_lab._native_loop as m; print(m.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True)
    assert where.stdout.strip().startswith(str(tmp_path)), (where.stdout, where.stderr[-2000:])
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", SELECT,
                          *SUITES], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=840)
    reports = sorted(tmp_path.glob("sanitizer*"))
    assert not reports, "sanitizer reports:\n" + "\n".join(p.read_text()[:3000] for p in reports)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout.splitlines()[-1], run.stdout[-1000:]
