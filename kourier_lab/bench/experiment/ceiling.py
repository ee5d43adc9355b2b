"""Build native/ceiling.c, the reference responder, and give its command line
(run/servers.py starts it like any server).

The binary is built once per source version into the cache directory
(bench/native_program.py).  The response it sends is
not built in: ceiling_command renders it from the server's benchmark_response,
so both always send the same bytes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from ..native_program import compile_native

CFLAGS = ["-O2", "-Wall"]
# the io_uring mode (`ceiling --uring`): the same source with liburing
URING_CFLAGS = ["-DKL_CEILING_URING"]
URING_LIBS = ["-luring"]


class CeilingBuildError(RuntimeError):
    pass


def uring_unavailable() -> Optional[str]:
    """None when the io_uring ceiling can run here, else why not (the uring
    loop's own verdict: liburing at build time, the kernel, the sysctl, seccomp)."""
    from ... import loops
    ok, why = loops.available("uring")
    return None if ok else why


def build_ceiling(force: bool = False, uring: bool = False) -> Path:
    """Compile the ceiling once per source version (with uring: its io_uring
    mode compiled in, linked with liburing); returns the binary's path."""
    return compile_native("ceiling.c", "ceiling-uring" if uring else "ceiling",
                          CFLAGS + (URING_CFLAGS if uring else []), URING_LIBS if uring else [],
                          CeilingBuildError, force=force)


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
