"""The uring loop: the C loop (loops/c.py) with native/loop_uring.c's io_uring
driver in place of epoll.

Everything above the sockets is the C loop's: the same process() per
connection (framing, resume scans, head memo, folding, backpressure, errors),
the same parsers (C, Python through the crossing, Numba @cfuncs, a user's),
the same timer wheel, the same Python callbacks.  Only how bytes move and how
the loop waits differ: multishot accept, multishot recv into a ring of
provided buffers shared by the loop (read in place when the connection holds
no earlier bytes), one send per connection per turn, and one io_uring_enter
per turn that submits everything queued and waits for completions with the
timer wheel's next deadline as its timeout.

Each io_uring feature is a switch (config.uring_features, `serve
--uring-features`, server/config.py URING_FEATURES): multishot recv (else a
recv re-armed per completion), buf-ring (else a recv into the connection's own
read buffer, which an idle connection then keeps), defer-taskrun
(SINGLE_ISSUER + DEFER_TASKRUN: completions are run when the loop waits, not
on interrupts), fixed-files (sockets in the ring's registered file table).

Where io_uring cannot be used -- a build without liburing, sysctl
kernel.io_uring_disabled, a seccomp filter, an old kernel -- importing this
module raises ImportError with one line saying why, so the loop registry
reports it as unavailable with that reason and `serve --loop uring` refuses to
start with it.
"""
from ..server.config import URING_FEATURES
from . import register
from .c import CLoop, ffi, lib

_FLAGS = {"multishot": lib.KL_URING_MULTISHOT, "buf-ring": lib.KL_URING_BUF_RING,
          "defer-taskrun": lib.KL_URING_DEFER_TASKRUN, "fixed-files": lib.KL_URING_FIXED_FILES}
assert set(_FLAGS) == set(URING_FEATURES)


def unavailable_reason():
    """None when the io_uring driver can run here, else one line saying why not."""
    why = ffi.new("char[]", 512)
    if lib.kl_uring_probe(why, len(why)) == 0:
        return None
    return ffi.string(why).decode(errors="replace")


def feature_flags(features: str) -> int:
    """The canonical feature string (config.uring_features) -> KL_URING_* bits."""
    return sum(_FLAGS[f] for f in features.split("+") if f in _FLAGS)


_WHY = unavailable_reason()
if _WHY is not None:
    raise ImportError(_WHY)


class UringLoop(CLoop):
    name = "uring"

    def _select_driver(self, loop):
        rc = lib.kl_loop_set_driver(loop, lib.KL_DRIVER_URING, feature_flags(self.config.uring_features))
        if rc:
            raise OSError(-rc, "this build has no io_uring driver")


register("uring", UringLoop)
