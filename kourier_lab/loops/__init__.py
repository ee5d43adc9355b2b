"""The loop contract and registry.

A loop owns the sockets of one worker process:

    loop = loops.create(name, config, app)      # config: server.config.ServerConfig
    loop.run(listen_sock)                       # blocks until stopped
    loop.request_stop()                         # safe from a signal handler: stop
                                                # accepting, finish what is in flight,
                                                # close idle connections, return
                                                # (force-close after config.graceful_timeout)

Every loop: non-blocking sockets, TCP_NODELAY, accept in batches, all the
responses to one read written with one send, writes queued only while the
socket is not writable, reading paused while too much output is queued
(backpressure), request timeout (time to receive a whole request -> 408 and
close) and idle timeout (close an idle keep-alive connection) on a timer
wheel, connection limit (past it: 503 and close), graceful stop.

A loop class may restrict the combinations it runs with class attributes
`supported_parsers` / `supported_buffers` (tuples of names; absent = all):
a native loop works on its own native buffer, for example.  supports()
answers for the CLI and the test suites.

A loop that also takes a user's variants of a kind it restricts says so
with `user_parsers = True` / `user_buffers = True`.

Variants: python (select.epoll, edge-triggered), asyncio (BufferedProtocol
on the stdlib loop or uvloop), numba, c, uring (the C loop on io_uring, where
the kernel and the build allow it); or a user's loop by spec
(path/to/file.py:MyLoop, package.module:MyLoop; see registry.py).  A loop module registers a factory
with register(name, factory); factory(config, app) -> loop.
"""
from typing import Callable

from ..registry import Registry

INTERFACE = ("run", "request_stop")


def _adapt_user_loop(obj, spec):
    """A user's loop class (or factory(config, app) -> loop)."""
    from ..registry import VariantError, require_methods
    if not callable(obj):
        raise VariantError(f"loop {spec!r}: {type(obj).__name__} object is not a class or factory")
    if isinstance(obj, type):
        require_methods(obj, f"loop {spec!r}", INTERFACE, "loop")
    return obj


_REGISTRY = Registry("loop", __name__, ("python", "asyncio", "c", "uring", "numba"), adapt=_adapt_user_loop)
available, names, unavailable, source = (_REGISTRY.available, _REGISTRY.names, _REGISTRY.unavailable,
                                         _REGISTRY.source)


def register(name: str, factory: Callable) -> None:
    _REGISTRY.register(name, factory)


def create(name: str, config, app):
    return _REGISTRY.get(name)(config, app)


def supports(loop: str, parser: str, buffer: str):
    """(True, "") or (False, why) for a loop/parser/buffer combination."""
    ok, why = available(loop)
    if not ok:
        return False, why
    cls = _REGISTRY.get(loop)
    from ..registry import is_user_spec
    for kind, name in (("parsers", parser), ("buffers", buffer)):
        allowed = getattr(cls, "supported_" + kind, None)
        if allowed is None or name in allowed:
            continue
        # a user's variant: a loop that takes foreign ones of this kind says so
        # with user_<kind> = True (the C loop: any Python parser through the
        # crossing, any parser with C entry points natively)
        if is_user_spec(name) and getattr(cls, "user_" + kind, False):
            continue
        return False, f"the {loop} loop runs with {kind} {', '.join(allowed)} only, not {name!r}"
    return True, ""


def combinations():
    """Every runnable (loop, parser, buffer) on this machine."""
    from .. import buffers, parsers
    return [(lo, p, b) for lo in names() for p in parsers.names() for b in buffers.names()
            if supports(lo, p, b)[0]]
