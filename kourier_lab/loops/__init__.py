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

Variants: python (select.epoll, edge-triggered), asyncio (BufferedProtocol
on the stdlib loop or uvloop), numba, c.  A loop module registers a factory
with register(name, factory); factory(config, app) -> loop.
"""
from typing import Callable

from ..registry import Registry

_REGISTRY = Registry("loop", __name__, ("python", "asyncio", "c", "numba"))
available, names, unavailable = _REGISTRY.available, _REGISTRY.names, _REGISTRY.unavailable


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
    for kind, name in (("parsers", parser), ("buffers", buffer)):
        allowed = getattr(cls, "supported_" + kind, None)
        if allowed is not None and name not in allowed:
            return False, f"the {loop} loop runs with {kind} {', '.join(allowed)} only, not {name!r}"
    return True, ""


def combinations():
    """Every runnable (loop, parser, buffer) on this machine."""
    from .. import buffers, parsers
    return [(lo, p, b) for lo in names() for p in parsers.names() for b in buffers.names()
            if supports(lo, p, b)[0]]
