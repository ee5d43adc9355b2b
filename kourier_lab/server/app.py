"""The application side: routes, Request/Response, precomputed static responses.

Static routes are bytes computed once (and again once a second, for the Date
header); every loop -- Python, asyncio, Numba, C -- serves them without calling
Python code per request.  Python handlers receive a Request and return bytes,
str, dict (JSON) or a Response.
"""
import json
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Callable, Dict, List, Optional, Tuple

from ..http.status import REASONS, status_line

SERVER_NAME = b"kourier-lab"


def http_date(t: Optional[float] = None) -> bytes:
    return formatdate(t, usegmt=True).encode()


@dataclass
class Request:
    method: str
    path: str
    query: Optional[str]
    version: str
    headers: List[Tuple[bytes, bytes]]
    body: bytes = b""
    target: bytes = b""

    def header(self, name: str, default=None) -> Optional[str]:
        n = name.lower().encode()
        for k, v in self.headers:
            if k.lower() == n:
                return v.decode("latin-1")
        return default


@dataclass
class Response:
    body: bytes = b""
    status: int = 200
    content_type: str = "text/plain"
    headers: List[Tuple[str, str]] = field(default_factory=list)


def _encode(status: int, body: bytes, content_type: Optional[bytes], extra: bytes, date: bytes,
            connection: bytes, head_only: bool, server: bytes = SERVER_NAME) -> bytes:
    ctype = b"" if content_type is None else b"Content-Type: " + content_type + b"\r\n"
    return b"".join((status_line(status), b"Server: ", server, b"\r\nDate: ", date, b"\r\n",
                     ctype, b"Content-Length: %d\r\n" % len(body),
                     extra, connection, b"\r\n", b"" if head_only else body))


# connection header by (version_minor, keep_alive)
_CONNECTION = {(1, True): b"", (1, False): b"Connection: close\r\n",
               (0, True): b"Connection: keep-alive\r\n", (0, False): b"Connection: close\r\n"}


# a static answer up to this size is gathered with the others of its read and
# written once (get_answers below); a larger one is appended on its own, after
# a check of the write limit, as a handler's answer is
GATHER_MAX = 4096


class StaticRoute:
    """A fixed response; `responses[(head_only, minor, keep_alive)]` is ready to send.
    `get_answers[minor][keep_alive]` is the GET answer without building a key
    (None when the answer is larger than GATHER_MAX).
    content_type None: no Content-Type field (the posts' response)."""
    __slots__ = ("status", "body", "content_type", "extra", "server", "responses", "get_answers")

    def __init__(self, body: bytes, status: int = 200, content_type: Optional[bytes] = b"text/plain",
                 extra: bytes = b"", server: bytes = SERVER_NAME):
        self.status, self.body, self.content_type, self.extra = status, body, content_type, extra
        self.server = server
        self.responses = {}
        self.get_answers = None

    def render(self, date: bytes):
        r = self.responses = {(h, minor, ka): _encode(self.status, self.body, self.content_type, self.extra,
                                                      date, conn, h, self.server)
                              for h in (False, True) for (minor, ka), conn in _CONNECTION.items()}
        self.get_answers = (((r[False, 0, False], r[False, 0, True]), (r[False, 1, False], r[False, 1, True]))
                            if len(r[False, 1, True]) <= GATHER_MAX else None)


class App:
    """Routes by exact path.  `catch_all` answers GET/HEAD on every path (the
    benchmark app, like the posts' servers, so that compliance tests measure
    the parser and not the router)."""

    def __init__(self):
        self.static: Dict[bytes, StaticRoute] = {}
        self.handlers: Dict[Tuple[bytes, bytes], Callable] = {}
        self.catch_all: Optional[StaticRoute] = None
        self._paths: Dict[bytes, set] = {}
        self._get_table = None       # get_table()'s answer, made again after a route changes
        self._date_second = -1
        self.date = b""
        self.refresh(time.time())

    # -- building ----------------------------------------------------------
    def route_static(self, path: str, body, content_type: str = "text/plain", status: int = 200):
        self._get_table = None
        r = StaticRoute(_as_bytes(body), status, content_type.encode())
        r.render(self.date)
        self.static[path.encode()] = r
        self._paths.setdefault(path.encode(), set()).update((b"GET", b"HEAD"))
        return r

    def route_catch_all(self, body, content_type: Optional[str] = "text/plain",
                        server: bytes = SERVER_NAME):
        self._get_table = None
        self.catch_all = StaticRoute(_as_bytes(body), 200,
                                     None if content_type is None else content_type.encode(),
                                     server=server)
        self.catch_all.render(self.date)

    def route(self, method: str, path: str):
        def deco(fn):
            self._get_table = None
            m, p = method.upper().encode(), path.encode()
            self.handlers[(m, p)] = fn
            if m == b"GET":
                self.handlers[(b"HEAD", p)] = fn
            self._paths.setdefault(p, set()).update((m, b"HEAD") if m == b"GET" else (m,))
            return fn
        return deco

    def get(self, path: str):
        return self.route("GET", path)

    def post(self, path: str):
        return self.route("POST", path)

    # -- serving -------------------------------------------------------------
    def refresh(self, now: float) -> None:
        """Re-render static responses when the second changes (the Date header)."""
        sec = int(now)
        if sec == self._date_second:
            return
        self._date_second = sec
        self.date = http_date(sec)
        for r in self.static.values():
            r.render(self.date)
        if self.catch_all is not None:
            self.catch_all.render(self.date)
        self._errors = {}

    def resolve(self, method: bytes, path: bytes):
        """-> StaticRoute, a handler callable, or an int status (404/405)."""
        r = self.static.get(path)
        if r is not None and (method == b"GET" or method == b"HEAD"):
            return r
        h = self.handlers.get((method, path))
        if h is not None:
            return h
        if self.catch_all is not None and (method == b"GET" or method == b"HEAD") and path not in self._paths:
            return self.catch_all
        if path in self._paths or self.catch_all is not None:
            return 405
        return 404

    def get_table(self):
        """(table, default) such that resolve(b"GET", path) is
        table.get(path, default): one dict look-up for a GET, no key built.
        None when resolve is replaced on this object (stage counters time it)
        or overridden by a subclass: then resolve() is the one way."""
        if "resolve" in self.__dict__ or type(self).resolve is not App.resolve:
            return None
        t = self._get_table
        if t is None:
            table = {path: self.resolve(b"GET", path) for path in self._paths}
            t = self._get_table = (table, self.catch_all if self.catch_all is not None else 404)
        return t

    def allowed(self, path: bytes) -> bytes:
        methods = self._paths.get(path) or {b"GET", b"HEAD"}
        return b", ".join(sorted(methods))

    def error(self, status: int, minor: int, keep_alive: bool, head_only: bool = False,
              path: bytes = b"") -> bytes:
        extra = b"Allow: " + self.allowed(path) + b"\r\n" if status == 405 else b""
        body = REASONS.get(status, "Error").encode()
        return _encode(status, body, b"text/plain", extra, self.date, _CONNECTION[(minor, keep_alive)],
                       head_only)

    def call(self, handler, request: Request, minor: int, keep_alive: bool) -> bytes:
        """Run a Python handler; its exception is a 500 for this request only."""
        try:
            result = handler(request)
            status, ctype, extra = 200, b"text/plain", b""
            if isinstance(result, Response):
                status, ctype = result.status, result.content_type.encode()
                extra = b"".join(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in result.headers)
                body = _as_bytes(result.body)
            elif isinstance(result, (dict, list)):
                body, ctype = json.dumps(result).encode(), b"application/json"
            else:
                body = _as_bytes(result)
        except Exception:  # noqa: BLE001 - the handler's bug is the client's 500
            import traceback
            traceback.print_exc()
            return self.error(500, minor, keep_alive, request.method == "HEAD")
        return _encode(status, body, ctype, extra, self.date, _CONNECTION[(minor, keep_alive)],
                       request.method == "HEAD")


def _as_bytes(body) -> bytes:
    if isinstance(body, str):
        return body.encode()
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    raise TypeError(f"a handler must return bytes, str, dict or Response, not {type(body).__name__}")


# The benchmark app's response presets (`serve --response`); the ceiling sends
# the same bytes (bench/experiment/ceiling.py renders them from here).
#   default   Server, Date, Content-Type, Content-Length: 135 bytes
#   kourier   the posts' response: Server, Date, Content-Length, no Content-Type:
#             105 bytes (17.89 GB / 182,933,248 responses in the post's wrk run)
RESPONSE_PRESETS = {"default": dict(content_type="text/plain", server=SERVER_NAME),
                    "kourier": dict(content_type=None, server=b"Kourier")}


def benchmark_app(response: str = "default") -> App:
    """The posts' benchmark server: GET on any path -> 200 "Hello World!"."""
    try:
        preset = RESPONSE_PRESETS[response]
    except KeyError:
        raise ValueError(f"unknown response preset {response!r} "
                         f"(choose one of: {', '.join(RESPONSE_PRESETS)})") from None
    app = App()
    app.route_catch_all(b"Hello World!", **preset)
    return app


def benchmark_response(response: str = "default", date: Optional[bytes] = None) -> bytes:
    """The exact bytes the benchmark app answers a keep-alive HTTP/1.1 GET with."""
    app = benchmark_app(response)
    if date is not None:
        app.catch_all.render(date)
    return app.catch_all.responses[(False, 1, True)]


# names `--app` takes besides module:object
BUILTIN_APPS = {"demo": "kourier_lab.server.demo:app"}


def load_app(spec: Optional[str], response: str = "default") -> App:
    """`module:object` -> that App (or a zero-argument factory returning one);
    "demo" -> kourier_lab/server/demo.py's app (catch-all, /static, /path, /echo, /json);
    no spec: the benchmark app with the given response preset."""
    if not spec:
        return benchmark_app(response)
    import importlib
    spec = BUILTIN_APPS.get(spec, spec)
    mod_name, _, attr = spec.partition(":")
    if not attr:
        raise ValueError(f"--app must be module:object or one of {', '.join(BUILTIN_APPS)}, got {spec!r}")
    try:
        obj = getattr(importlib.import_module(mod_name), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot load --app {spec!r}: {e}") from None
    if callable(obj) and not isinstance(obj, App):
        obj = obj()
    if not isinstance(obj, App):
        raise ValueError(f"--app {spec!r} is not a kourier_lab App")
    return obj
