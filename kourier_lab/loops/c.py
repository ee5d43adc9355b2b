"""The C loop: native/loop.c (its epoll driver, loop_epoll.c: edge-triggered) through cffi.

`run()` hands the App's static responses to C — one bytes per (route,
head_only, version_minor, keep_alive), the catch-all, the paths that only
Python handlers serve, and the error responses — then blocks inside
kl_loop_run (cffi releases the GIL around it).  C patches the Date header of
those responses once a second; static routes are read, parsed, routed and
written without entering Python.

Python is entered through cffi `extern "Python+C"` callbacks:
  * kl_py_batch, once per batch of requests read together that a Python
    handler (or a 404/405) answers: it gets every such request's table and
    body, builds the answers exactly like server/session.py (App.resolve /
    App.call / App.error) and stores them with kl_batch_put; C writes them in
    order between the static answers of the same batch;
  * kl_py_parse_head / kl_py_parse_chunked, per request, when the parser is
    the Python one: the crossing (correct, slower; its cost is a result);
  * kl_py_signals, when a signal arrived: Python's handlers run there (the
    worker's SIGTERM handler calls request_stop(), which sets a flag and
    writes the loop's eventfd).  run() points signal.set_wakeup_fd at a pipe
    the C loop polls, so a signal is seen even while C is busy.

The head memo: a request whose head is byte-identical to the last head a
static route answered gets the same answer after one memcmp (parsers are
stateless, so this is exact).  It is off unless config.head_memo (`serve
--head-memo on`): off, the parser (or the Python parser's crossing) runs for
every request.  A request arriving in many reads is not re-parsed after each
one: loop.c's scan_head and scan_chunked (parsers/scan.py's scans, in C)
follow the new bytes and ask the parser, whichever it is, only when its
answer can have changed from "need more".

Folding (config.fold_runs, `serve --fold-runs on`; off by default): runs of
equal consecutive requests share work -- a request whose method and path
bytes equal the previous head's takes its route without a look-up, a run of
identical static answers is written as one copy from a block of pre-replicated
answers, and (with the memo on) a run of memo hits is answered together.  Off,
every request gets its own route look-up and its own answer written, so a
figure measures per-request work rather than how repetitive the client is.
The loop's stats (self.stats after run) count what folding skipped:
routes_reused and answers_folded, both 0 when it is off.

Parsers: "c" (kl_parse_head compiled into the same module: no crossing),
"python" (the callbacks above), "numba" (its @cfunc pointers, called from C
like kl_parse_head: see _entry_points).  A user's parser (a spec such as
path/to/file.py:Name, see registry.py) runs natively when it has C entry
points (`native_entry_points()` -> two addresses with the signatures of
kl_parse_head / kl_parse_chunked: a user's C file, parsers/user_c.py, or
Numba @cfuncs), else through the Python crossing like "python".
"""
import ctypes
import os
import signal
import sys
import time

from .. import parsers
from ..http.status import REASONS
from ..registry import is_user_spec
from ..server.app import Request, StaticRoute
from . import register, stages

try:
    from .._native_loop import ffi, lib
except ImportError as e:  # pragma: no cover - depends on the build
    raise ImportError(f"the C loop needs the compiled module kourier_lab._native_loop "
                      f"(build it: python native/build_loop.py, or pip install -e .): {e}") from None

_check_signals = ctypes.pythonapi.PyErr_CheckSignals
_check_signals.restype = ctypes.c_int
_check_signals.argtypes = []


def _entry_points(parser):
    """A callable returning (head address, chunked address) of C-callable functions
    with the signatures of kl_parse_head / kl_parse_chunked, or None.  Looked up
    as the parser's native_entry_points() method, else as its module's
    kl_parse_head_address() / kl_parse_chunked_address() (the Numba parser's
    @cfunc pointers)."""
    method = getattr(parser, "native_entry_points", None)
    if method is not None:
        return method
    import sys
    mod = sys.modules.get(type(parser).__module__)
    head = getattr(mod, "kl_parse_head_address", None)
    chunked = getattr(mod, "kl_parse_chunked_address", None)
    if head is None or chunked is None:
        return None
    return lambda: (head(), chunked())


def _variant(head_only, minor, keep_alive):
    return int(bool(head_only)) * 4 + int(minor) * 2 + int(bool(keep_alive))


class CLoop:
    name = "c"
    supported_parsers = ("c", "python", "numba")
    user_parsers = True         # a user's parser: natively with C entry points, else the crossing
    supported_buffers = ("c",)

    def __init__(self, config, app):
        if config.buffer not in self.supported_buffers:
            raise ValueError(f"the c loop runs with buffers {', '.join(self.supported_buffers)} only, "
                             f"not {config.buffer!r}")
        self.config, self.app = config, app
        self.fold_runs = bool(config.fold_runs)
        self.parser = parsers.create(config.parser, config.limits, fold_runs=self.fold_runs)
        self._native_parser = None
        if config.parser == "python":
            self._kind = lib.KL_PARSER_PYTHON
        elif config.parser == "c":
            self._kind = lib.KL_PARSER_C
        elif _entry_points(self.parser) is not None:
            self._kind = lib.KL_PARSER_FNPTR
        elif is_user_spec(config.parser):
            self._kind = lib.KL_PARSER_PYTHON      # a user's Python parser: the crossing
        else:
            raise ValueError(f"the c loop cannot call parser {config.parser!r} natively (no C entry "
                             f"points); choose one of: {', '.join(self.supported_parsers)}")
        # the head memo (native/loop.c, parsers/memo.py): config.head_memo, off by default
        self.head_memo = bool(config.head_memo)
        self._handle = ffi.new_handle(self)
        self._loop = None
        self._stop_requested = False
        self._gen = -1
        self._data = b""
        self.stats = {}

    def request_stop(self):
        """Safe from a signal handler: a flag and an eventfd write in C."""
        self._stop_requested = True
        if self._loop is not None:
            lib.kl_loop_request_stop(self._loop)

    # -- setup ---------------------------------------------------------------
    def _config(self):
        cfg, lim = self.config, self.config.limits
        c = ffi.new("kl_loop_config *")
        c.request_timeout = cfg.request_timeout
        c.idle_timeout = cfg.idle_timeout
        c.graceful_timeout = cfg.graceful_timeout
        c.max_connections = cfg.max_connections
        c.read_buffer = max(cfg.read_buffer, 256)      # the ring needs room to start with
        c.read_buffer_limit = max(cfg.read_buffer_limit, c.read_buffer)
        c.write_buffer_limit = cfg.write_buffer_limit
        c.limits.max_request_line = lim.max_request_line
        c.limits.max_header_bytes = lim.max_header_bytes
        c.limits.max_headers = lim.max_headers
        c.limits.max_body = lim.max_body
        return c

    def _install(self, loop):
        app = self.app
        routes = []

        def add(route):
            i = len(routes)
            routes.append(route)
            for key, data in route.responses.items():
                if lib.kl_loop_set_response(loop, i, _variant(*key), data, len(data)):
                    raise MemoryError("kl_loop_set_response")
            return i

        for path, route in app.static.items():
            if lib.kl_loop_add_route(loop, path, len(path), add(route)):
                raise MemoryError("kl_loop_add_route")
        for path in app._paths:
            if path not in app.static:      # served by Python handlers only: no catch-all there
                if lib.kl_loop_add_route(loop, path, len(path), -1):
                    raise MemoryError("kl_loop_add_route")
        if app.catch_all is not None:
            lib.kl_loop_set_catch_all(loop, add(app.catch_all))
        for status in REASONS:
            if 400 <= status <= 599:
                data = app.error(status, 1, False)
                lib.kl_loop_set_error(loop, status, data, len(data))
        lib.kl_loop_set_head_memo(loop, self.head_memo)
        lib.kl_loop_set_fold_runs(loop, self.fold_runs)
        if self._kind == lib.KL_PARSER_FNPTR:
            # resolved here, in the worker: a Numba @cfunc compiles on first use
            head, chunked = _entry_points(self.parser)()
            self._native_parser = (ffi.cast("kl_head_fn", head), ffi.cast("kl_chunked_fn", chunked))
            rc = lib.kl_loop_set_parser(loop, self._kind, *self._native_parser)
        else:
            rc = lib.kl_loop_set_parser(loop, self._kind, ffi.NULL, ffi.NULL)
        if rc:
            raise ValueError("kl_loop_set_parser refused the parser")

    def _select_driver(self, loop):
        """epoll, loop.c's default (the uring loop chooses its own)."""

    # -- running -------------------------------------------------------------
    def run(self, lsock):
        loop = lib.kl_loop_new(self._config(), self._handle)
        if loop == ffi.NULL:
            raise MemoryError("kl_loop_new failed")
        rfd = wfd = -1
        old_wakeup = None
        counters = None
        try:
            self._install(loop)
            self._select_driver(loop)
            lsock.setblocking(False)
            rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                old_wakeup = signal.set_wakeup_fd(wfd, warn_on_full_buffer=False)
            except ValueError:          # not the main thread: signals are not ours to see
                os.close(rfd)
                os.close(wfd)
                rfd = wfd = -1
            self._loop = loop
            # stage counters (loops/stages.py): off unless KOURIER_LAB_STAGE_COUNTERS is set
            counters = stages.from_env()
            if counters is not None:
                lib.kl_loop_set_stage_counters(loop, 1)
            if self._stop_requested:
                lib.kl_loop_request_stop(loop)
            rc = lib.kl_loop_run(loop, lsock.fileno(), rfd)
            if rc < 0:
                raise OSError(-rc, f"kl_loop_run: {os.strerror(-rc)}")
        finally:
            if old_wakeup is not None:
                signal.set_wakeup_fd(old_wakeup)
            for fd in (rfd, wfd):
                if fd >= 0:
                    os.close(fd)
            st = ffi.new("kl_loop_stats *")
            lib.kl_loop_get_stats(loop, st)
            self.stats = {k: getattr(st, k) for k in dir(st)}
            if counters is not None:
                ns = ffi.new("uint64_t[]", lib.KL_STAGES)
                lib.kl_loop_get_stage_ns(loop, ns)
                counters.ns = dict(zip(stages.STAGES, list(ns)))
                counters.requests = st.requests_static + st.requests_python
                counters.dump(self.name)
            self._loop = None
            lib.kl_loop_free(loop)

    # -- callbacks -------------------------------------------------------------
    def _answer(self, q):
        """One request the batch hands to Python -> its response bytes (as session.py)."""
        app = self.app
        req = q.req
        head = ffi.buffer(q.base, req.head_len)[:]
        minor = req.version_minor
        keep_alive = bool(req.keep_alive)
        if self._kind == lib.KL_PARSER_PYTHON:
            # the table from the Python parser carries the routing fields only:
            # parse the head again for the rest (Python handlers only)
            p = self.parser
            if p.parse_head(head, 0, len(head)) <= 0:
                return app.error(400, 1, False)
            h = p.head()
            method, path, query, target, headers = h.method, h.path, h.query, h.target, h.headers
        else:
            m, pa, t = req.method, req.path, req.target
            method = head[m.off:m.off + m.len]
            path = head[pa.off:pa.off + pa.len]
            query = None
            if req.has_query:
                qs = req.query
                query = head[qs.off:qs.off + qs.len]
            target = head[t.off:t.off + t.len]
            headers = None
        head_only = method == b"HEAD"
        route = app.resolve(method, path)
        if route.__class__ is StaticRoute:
            return route.responses[(head_only, minor, keep_alive)]
        if route.__class__ is int:
            return app.error(route, minor, keep_alive, head_only, path)
        if headers is None:
            names, values = req.names, req.values
            headers = []
            for i in range(req.header_count):
                n, v = names[i], values[i]
                headers.append((head[n.off:n.off + n.len], head[v.off:v.off + v.len]))
        body = ffi.buffer(q.body, q.body_len)[:] if q.body_len else b""
        request = Request(method.decode("latin-1"), path.decode("latin-1"),
                          None if query is None else query.decode("latin-1"),
                          "HTTP/1.%d" % minor, headers, body, target)
        return app.call(route, request, minor, keep_alive)

    def _parse_head(self, gen, base, end, pos, req):
        if gen != self._gen:        # one copy of the readable bytes per processing round
            self._data = ffi.buffer(base, end)[:]
            self._gen = gen
        data = self._data
        p = self.parser
        n = p.parse_head(data, pos, end)
        if n <= 0:
            return n
        method, path, _query, minor, keep_alive, body_kind, clen, expect = p.info
        s = pos
        while data.startswith(b"\r\n", s):
            s += 2
        t = s + len(method) + 1
        if not path or data.startswith(path, t):
            path_off = t                    # origin-form (or no path at all)
        else:                               # absolute-form: the path follows the authority
            path_off = data.find(path, data.find(b"://", t, pos + n) + 3, pos + n)
        req.status = 0
        req.head_len = n
        req.method.off = s - pos
        req.method.len = len(method)
        req.path.off = path_off - pos
        req.path.len = len(path)
        req.version_minor = minor
        req.keep_alive = keep_alive
        req.body_kind = body_kind
        req.content_length = clen
        req.expect_continue = expect
        req.header_count = 0
        return n

    def _parse_chunked(self, base, end, pos, body_len):
        m, body = self.parser.parse_chunked(self._data, pos, end)
        if m > 0:
            ffi.memmove(base + pos, body, len(body))    # compacted in place, as kl_parse_chunked
            body_len[0] = len(body)
        return m


@ffi.def_extern(error=-1)
def kl_py_batch(handle, batch):
    loop = ffi.from_handle(handle)
    loop.app.refresh(time.time())
    put = lib.kl_batch_put
    answer = loop._answer
    reqs = batch.reqs
    for i in range(batch.count):
        data = answer(reqs[i])
        put(batch, i, data, len(data))
    return 0


def _parser_failed(loop, e, base, pos, end):
    """A parser that raised (a user's variant): -500, so C answers 500 and closes
    that connection; one line on stderr names the exception and the input."""
    shown = ffi.buffer(base + pos, min(end - pos, 160))[:]
    sys.stderr.write(f"kourier-lab: 500 and close: {type(e).__name__}: {e} "
                     f"(parser {type(loop.parser).__name__}) on input {shown!r}"
                     f"{'...' if end - pos > 160 else ''}\n")
    return -500


@ffi.def_extern(error=-500)
def kl_py_parse_head(handle, gen, base, end, pos, req):
    loop = ffi.from_handle(handle)
    try:
        return loop._parse_head(gen, base, end, pos, req)
    except Exception as e:     # noqa: BLE001 - the server outlives a broken parser
        return _parser_failed(loop, e, base, pos, end)


@ffi.def_extern(error=-500)
def kl_py_parse_chunked(handle, base, end, pos, body_len):
    loop = ffi.from_handle(handle)
    try:
        return loop._parse_chunked(base, end, pos, body_len)
    except Exception as e:     # noqa: BLE001
        return _parser_failed(loop, e, base, pos, end)


@ffi.def_extern()
def kl_py_signals(handle):
    # run the pending Python signal handlers (the worker's SIGTERM -> request_stop);
    # an exception from a handler propagates here and cffi reports it
    _check_signals()


register("c", CLoop)
