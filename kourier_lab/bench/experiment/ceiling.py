"""Build native/ceiling.c, the reference responder, and give its command line
(run/servers.py starts it like any server).

The binary goes to a cache directory outside the repository
($KOURIER_LAB_CACHE, else $XDG_CACHE_HOME/kourier_lab, else ~/.cache/kourier_lab),
named after a hash of the source and the compiler command, so an edit to the
source rebuilds it and nothing stale is ever run.  The response it sends is
not built in: ceiling_command renders it from the server's benchmark_response,
so both always send the same bytes.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Optional, Sequence

from ...paths import repo_root

CFLAGS = ["-O2", "-Wall"]
# the io_uring mode (`ceiling --uring`): the same source with liburing
URING_CFLAGS = ["-DKL_CEILING_URING"]
URING_LIBS = ["-luring"]


class CeilingBuildError(RuntimeError):
    pass


def source_path() -> Path:
    return repo_root() / "native" / "ceiling.c"


def cache_dir() -> Path:
    if os.environ.get("KOURIER_LAB_CACHE"):
        return Path(os.environ["KOURIER_LAB_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kourier_lab"


def uring_unavailable() -> Optional[str]:
    """None when the io_uring ceiling can run here, else why not (the uring
    loop's own verdict: liburing at build time, the kernel, the sysctl, seccomp)."""
    from ... import loops
    ok, why = loops.available("uring")
    return None if ok else why


def build_ceiling(force: bool = False, uring: bool = False) -> Path:
    """Compile the ceiling once per source version (with uring: its io_uring
    mode compiled in, linked with liburing); returns the binary's path."""
    src = source_path()
    if not src.is_file():
        raise CeilingBuildError(f"{src} is missing (the ceiling needs the repository's native/)")
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        raise CeilingBuildError("no C compiler (cc/gcc/clang) to build native/ceiling.c; "
                                "install one (Debian: apt-get install gcc)")
    flags = CFLAGS + (URING_CFLAGS if uring else [])
    libs = URING_LIBS if uring else []
    digest = hashlib.sha256(src.read_bytes() + " ".join([cc, *flags, *libs]).encode()).hexdigest()[:16]
    out = cache_dir() / f"ceiling-{'uring-' if uring else ''}{digest}"
    if out.exists() and not force:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    r = subprocess.run([cc, *flags, "-o", str(tmp), str(src), *libs], capture_output=True, text=True)
    if r.returncode != 0:
        tmp.unlink(missing_ok=True)
        first = (r.stderr.strip().splitlines() or ["no output"])[0]
        raise CeilingBuildError(f"building native/ceiling.c failed: {first}")
    os.replace(tmp, out)      # atomic: concurrent builders never see half a binary
    return out


def ceiling_command(port: int, cpus: Optional[Sequence[int]] = None,
                    response: str = "default", address: Optional[str] = None, uring: bool = False) -> list:
    """The ceiling's command line: it answers with the benchmark app's exact
    response for the preset (`serve --response`), Date rewritten each second.
    It listens on 127.0.0.1 unless `address` (an IPv4 address) is given; with
    uring, over io_uring (see uring_unavailable) instead of epoll."""
    from ...server.app import benchmark_response
    cmd = [str(build_ceiling(uring=uring)), str(port)]
    if cpus:
        cmd.append(",".join(str(c) for c in cpus))
    cmd += ["--response", benchmark_response(response).hex()]
    if address:
        cmd += ["--address", address]
    if uring:
        cmd.append("--uring")
    return cmd
