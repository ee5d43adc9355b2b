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

Variants: python (select.epoll, edge-triggered), asyncio (BufferedProtocol
on the stdlib loop or uvloop), numba, c.  A loop module registers a factory
with register(name, factory); factory(config, app) -> loop.
"""
from typing import Callable, Dict, List

_REGISTRY: Dict[str, Callable] = {}
_ERRORS: Dict[str, str] = {}


def register(name: str, factory: Callable) -> None:
    _REGISTRY[name] = factory


def _load_builtin():
    import importlib
    for mod in ("python", "asyncio", "c", "numba"):
        if mod in _REGISTRY or mod in _ERRORS:
            continue
        try:
            importlib.import_module(f"{__name__}.{mod}")
        except ImportError as e:  # pragma: no cover - depends on the machine
            _ERRORS[mod] = str(e)


def names() -> List[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def unavailable() -> Dict[str, str]:
    _load_builtin()
    return dict(_ERRORS)


def create(name: str, config, app):
    _load_builtin()
    try:
        factory = _REGISTRY[name]
    except KeyError:
        why = f" ({_ERRORS[name]})" if name in _ERRORS else ""
        raise ValueError(f"unknown loop {name!r}{why}; choose one of: {', '.join(names())}") from None
    return factory(config, app)
