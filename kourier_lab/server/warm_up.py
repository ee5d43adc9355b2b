"""Compile before serving: no request ever waits for Numba's JIT.

Numba compiles a function the first time it is called with new argument
types, so a worker that meets a rare input (a flood of empty lines, a body in
1-byte chunks) on a cold cache would compile in the middle of serving, every
connection of that worker waiting.  `warm_up(config, loop)` runs in the
supervisor before the workers fork: it calls every Numba function a worker of
this configuration can reach with the argument types it will meet -- the
parser's and buffers' kernels through a Session fed a set of requests that
takes every branch that changes types (pipelined heads, bodies by length and
chunked, errors, a head that outgrows the buffer), the parser's C entry points
for the C loop, the Numba loop's native functions (NumbaLoop compiles them when
it is built) -- so each is compiled, or loaded from Numba's on-disk cache, once,
and the forked workers inherit the machine code.

`watch_compiles()` then reports any compilation that still happens on stderr,
one line naming the function: after the warm-up it means a path was missed
(tests/server/test_numba_warm_up.py serves the spec corpus and the hostile
inputs on an empty cache and requires none).
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Callable, List

from .. import buffers, parsers
from .session import CLOSE, Session


@dataclass
class WarmUp:
    """What the warm-up did: seconds, functions compiled, functions loaded
    from the cache, and where that cache is."""
    seconds: float = 0.0
    compiled: int = 0
    loaded: int = 0
    uncacheable: int = 0          # @cfunc wrappers of closures (a user's kernels)
    cache: str = ""

    def line(self) -> str:
        if not (self.compiled or self.loaded or self.uncacheable):
            return f"numba warm-up {self.seconds:.1f} s: every function already loaded in this process"
        where = f"from {self.cache}" if self.loaded else f"cache {self.cache}"
        text = (f"numba warm-up {self.seconds:.1f} s: {self.compiled} compiled, "
                f"{self.loaded} loaded ({where})")
        if self.uncacheable:
            text += (f"; {self.uncacheable} C entry point(s) of a user's parser compiled every "
                     f"start (closures over the user's kernels cannot be cached)")
        return text


def uses_numba() -> bool:
    """Whether anything in this process imported Numba (a Numba loop, parser or
    buffer, or a user's Numba parser): only then is there anything to warm."""
    return "numba" in sys.modules


def cache_location() -> str:
    from numba.core import config
    if config.CACHE_DIR:
        return f"NUMBA_CACHE_DIR={config.CACHE_DIR}"
    return "__pycache__ beside the sources"


# -- counting ------------------------------------------------------------------------------
def _functions():
    """Every Numba dispatcher and @cfunc reachable as a module attribute."""
    from numba.core.ccallback import CFunc
    from numba.core.dispatcher import Dispatcher
    seen = {}
    for mod in list(sys.modules.values()):
        if mod is None or getattr(mod, "__name__", "").startswith("numba"):
            continue
        for value in list(getattr(mod, "__dict__", {}).values()):
            if isinstance(value, (Dispatcher, CFunc)):
                seen[id(value)] = value
            elif isinstance(value, dict) and len(value) < 64:   # a module's table of @cfuncs
                for v in list(value.values()):
                    if isinstance(v, CFunc):
                        seen[id(v)] = v
    return list(seen.values())


def _cache_hits(functions) -> int:
    from numba.core.ccallback import CFunc
    total = 0
    for f in functions:
        if isinstance(f, CFunc):
            total += f.cache_hits
        else:
            total += sum(f.stats.cache_hits.values())
    return total


class CompileCounter:
    """The Numba compilations (not loads from the cache) while entered:
    `names` lists the compiled functions, `count` how many."""

    def __init__(self):
        from numba.core import event
        names = self.names = []

        class Listener(event.Listener):
            def on_start(self, ev):
                pass

            def on_end(self, ev):
                disp = (ev.data or {}).get("dispatcher")
                names.append(getattr(getattr(disp, "py_func", None), "__qualname__", repr(disp)))

        self._event = event
        self._listener = Listener()

    def __enter__(self):
        self._event.register("numba:compile", self._listener)
        return self

    def __exit__(self, *exc):
        self._event.unregister("numba:compile", self._listener)

    @property
    def count(self) -> int:
        return len(self.names)


# -- the inputs ----------------------------------------------------------------------------
_HOST = b"Host: warm\r\n"

# Each entry: the bytes of one connection, and the sizes they arrive in (0: whole).
# Together they take every branch that meets a new type or kernel: heads alone
# and pipelined, HEAD and HTTP/1.0, a body by Content-Length, a chunked body with
# extensions and trailers, 100-continue, a head split byte by byte, bad heads
# (400, 431, 413 via the read buffer's limit), a flood of empty lines.
_INPUTS = [
    (b"GET / HTTP/1.1\r\n" + _HOST + b"\r\n", 0),
    (b"GET /plaintext HTTP/1.1\r\n" + _HOST + b"\r\n" * 1 + (b"GET /plaintext HTTP/1.1\r\n" + _HOST + b"\r\n") * 20, 0),
    (b"HEAD / HTTP/1.0\r\n\r\nGET /?q=1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 0),
    (b"POST /echo HTTP/1.1\r\n" + _HOST + b"Content-Length: 5\r\n\r\nhello", 0),
    (b"POST /echo HTTP/1.1\r\n" + _HOST + b"Transfer-Encoding: chunked\r\n\r\n"
     b"5;ext=1\r\nhello\r\n3\r\nabc\r\n0\r\nTrailer: x\r\n\r\n", 0),
    (b"POST /echo HTTP/1.1\r\n" + _HOST + b"Transfer-Encoding: chunked\r\n\r\n"
     + b"1\r\nx\r\n" * 64 + b"0\r\n\r\n", 1),
    (b"PUT /echo HTTP/1.1\r\n" + _HOST + b"Expect: 100-continue\r\nContent-Length: 3\r\n\r\nabc", 7),
    (b"GET /split HTTP/1.1\r\n" + _HOST + b"Accept: */*\r\n\r\n", 1),
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 0),
    (b"GET /\x01 HTTP/1.1\r\n\r\n", 0),
    (b"BAD\r\n\r\n", 0),
    (b"GET / HTTP/1.1\r\n" + _HOST + b"X-Long: " + b"a" * 70000 + b"\r\n\r\n", 4096),
    (b"\r\n" * 40000, 8192),
    (b"POST / HTTP/1.1\r\n" + _HOST + b"Content-Length: 99999999999999999999\r\n\r\n", 0),
    (b"POST / HTTP/1.1\r\n" + _HOST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", 0),
]


def _feed(session: Session, data: bytes, piece: int) -> None:
    """Deliver `data` to the session as a loop would, `piece` bytes per read."""
    step = piece or len(data)
    pos = 0
    while pos < len(data):
        chunk = data[pos:pos + step]
        pos += len(chunk)
        while chunk:
            span = session.rbuf.free_span()
            k = min(len(span), len(chunk))
            if k == 0:
                return
            span[:k] = chunk[:k]
            del span
            session.rbuf.commit(k)
            chunk = chunk[k:]
            result = session.process()
            pending = session.wbuf.view()
            n = len(pending)
            del pending
            if n:
                session.wbuf.consume(n)
            if result == CLOSE:
                return


def drive_sessions(config, app, parser=None, inputs=None) -> None:
    """Serve `inputs` ([(bytes, piece size)], default the set above) through
    Sessions with this configuration's parser and buffers (what the Python and
    asyncio loops run, and the Numba loop for a connection it hands to Python),
    one connection each."""
    parser = parser if parser is not None else parsers.create(config.parser, config.limits,
                                                                fold_runs=config.fold_runs)
    for data, piece in (_INPUTS if inputs is None else inputs):
        session = Session(buffers.create_read(config.buffer, config.read_buffer, config.read_buffer_limit),
                          buffers.create_write(config.buffer, config.write_buffer_limit),
                          parser, app, fold_runs=config.fold_runs)
        _feed(session, data, piece)


def _native_entry_points(parser) -> int:
    """Compile the parser's C entry points (the C loop's function pointers) now;
    returns how many were compiled that cannot be cached (a user's closures)."""
    method = getattr(parser, "native_entry_points", None)
    if method is not None:
        method()
        # a user's Numba kernels get @cfunc wrappers that close over them (a C
        # file's entry points are compiled by cffi and cached by content)
        return 2 if type(parser).__module__ == "kourier_lab.parsers.user_numba" else 0
    mod = sys.modules.get(type(parser).__module__)
    head = getattr(mod, "kl_parse_head_address", None)
    if head is not None:
        head()
        getattr(mod, "kl_parse_chunked_address")()
    return 0


def _names_numba(config) -> bool:
    return "numba" in (config.loop, config.parser, config.buffer)


def warm_up(config, app, make_loop: Callable[[], object]):
    """Build the worker's loop with `make_loop()` and compile or load every
    Numba function a worker of `config` can reach (see the module docstring).
    Returns (loop, WarmUp), the WarmUp None when nothing here uses Numba.  The
    parser is created first, so a user's parser that imports Numba counts."""
    parser = parsers.create(config.parser, config.limits, fold_runs=config.fold_runs)
    if not (_names_numba(config) or uses_numba()):
        return make_loop(), None
    import numba  # noqa: F401  (the listener below needs it loaded)
    counter = CompileCounter()
    before = _cache_hits(_functions())
    t0 = time.perf_counter()
    uncacheable = 0
    with counter:
        loop = make_loop()         # a NumbaLoop compiles its native functions here
        drive_sessions(config, app, parser)
        if config.loop in ("c", "uring"):
            uncacheable = _native_entry_points(parser)
        # the Numba parser's kernels with both buffer types (read-only bytes, writable
        # arrays); the Numba buffers' kernels ran in the sessions above when configured
        numba_parser = sys.modules.get("kourier_lab.parsers.numba")
        if numba_parser is not None:
            numba_parser.warm_up()
    report = WarmUp(seconds=time.perf_counter() - t0, compiled=counter.count,
                    loaded=max(_cache_hits(_functions()) - before, 0), uncacheable=uncacheable,
                    cache=cache_location())
    return loop, report


def watch_compiles(echo=None) -> None:
    """From now on, write one line on stderr for every Numba compilation in
    this process (and its forked workers): after warm_up, each is a path the
    warm-up missed and a request that waited for the JIT."""
    if not uses_numba():
        return
    from numba.core import event
    write = echo or (lambda text: (sys.stderr.write(text + "\n"), sys.stderr.flush()))

    class ServingCompile(event.Listener):
        def on_start(self, ev):
            self.t0 = time.perf_counter()

        def on_end(self, ev):
            d = ev.data or {}
            disp = d.get("dispatcher")
            name = getattr(getattr(disp, "py_func", None), "__qualname__", repr(disp))
            args = ", ".join(str(a) for a in d.get("args", ()))
            write(f"kourier-lab: worker pid {os.getpid()}: Numba compiled {name}({args}) while serving "
                  f"({time.perf_counter() - getattr(self, 't0', time.perf_counter()):.2f} s): "
                  f"the start-up warm-up missed this path")

    event.register("numba:compile", ServingCompile())


def warm_everything(echo=print) -> List[WarmUp]:
    """Warm Numba's cache for every configuration that uses it (`make setup`,
    `kourier-lab warm`): the Numba stack, the C loop with the Numba parser, and
    the Python loop with the Numba parser over each buffer."""
    from .. import loops
    from .app import load_app
    from .config import ServerConfig
    reports = []
    stacks = [("numba", "numba", "numba"), ("c", "numba", "c"), ("python", "numba", "numba"),
              ("python", "numba", "python"), ("python", "numba", "c"), ("python", "python", "numba")]
    for loop_name, parser_name, buffer_name in stacks:
        if not loops.available(loop_name)[0]:
            continue
        cfg = ServerConfig(loop=loop_name, parser=parser_name, buffer=buffer_name)
        app = load_app(cfg.app, cfg.response)
        _loop, report = warm_up(cfg, app, lambda: loops.create(loop_name, cfg, app))
        if report is not None:
            echo(f"kourier-lab: {loop_name}/{parser_name}/{buffer_name}: {report.line()}")
            reports.append(report)
    return reports


if __name__ == "__main__":          # `make setup`: python -m kourier_lab.server.warm_up
    print(f"kourier-lab: warming Numba's cache ({cache_location()}); the first run on a machine "
          f"compiles for a few minutes, later ones load in seconds", flush=True)
    warm_everything(echo=lambda text: print(text, flush=True))
