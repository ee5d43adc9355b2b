"""`kourier-lab serve`: the full server (options mirror Kourier's benchmark server)."""
import sys

from ..http.limits import Limits
from .config import RESPONSE_PRESETS, URING_DEFAULT, parse_uring_features


def _cpu_list(text):
    import argparse
    from ..cpus import parse_cpu_list
    try:
        return parse_cpu_list(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _positive(kind):
    import argparse

    def conv(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if v <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
        return v
    return conv


def _port(text):
    import argparse
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0..65535: {text!r}")
    return v


def register(sub):
    p = sub.add_parser("serve", help="run the server", description=__doc__)
    p.add_argument("-a", "--address", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("-p", "--port", type=_port, default=3275, help="port (default 3275; 0 = any free port)")
    p.add_argument("--worker-count", type=_positive(int), default=1, help="worker processes (SO_REUSEPORT)")
    p.add_argument("--request-timeout", type=_positive(float), default=20.0,
                   help="seconds to receive a whole request before 408 (default 20)")
    p.add_argument("--idle-timeout", type=_positive(float), default=60.0,
                   help="seconds an idle keep-alive connection stays open (default 60)")
    p.add_argument("--loop", default="python",
                   help="event loop variant (python, asyncio, c, numba; or FILE.py:Class, module:Class)")
    p.add_argument("--parser", default="python",
                   help="parser variant (python, c, numba; or FILE.py:Class, module:Class, FILE.c:prefix)")
    p.add_argument("--buffer", default="python",
                   help="buffer variant (python, c, numba; or FILE.py:Name, module:Name)")
    p.add_argument("--cpus", type=_cpu_list, default=None, help="pin worker i to the i-th CPU of this list")
    p.add_argument("--app", default=None, help="module:object of a kourier_lab App, or 'demo' (kourier_lab/server/demo.py; "
                        "default: the benchmark app)")
    p.add_argument("--max-connections", type=_positive(int), default=10000, help="per worker (default 10000)")
    p.add_argument("--max-request-line", type=_positive(int), default=8192)
    p.add_argument("--max-header-bytes", type=_positive(int), default=16384)
    p.add_argument("--max-headers", type=_positive(int), default=100)
    p.add_argument("--max-body", type=_positive(int), default=1 << 20)
    p.add_argument("--graceful-timeout", type=_positive(float), default=10.0)
    p.add_argument("--uvloop", action="store_true", help="asyncio loop: run on uvloop")
    p.add_argument("--head-memo", choices=("on", "off"), default="off",
                   help="remember the last request head and answer a byte-identical one without "
                        "parsing it (default off: every request is parsed)")
    p.add_argument("--fold-runs", choices=("on", "off"), default="off",
                   help="fold a run of equal consecutive requests into one parse result, one route look-up "
                        "and one answer repeated (default off: every request is its own)")
    p.add_argument("--uring-features", default="default", metavar="LIST",
                   help="the uring loop's switches, comma-separated: multishot (one multishot recv per "
                        "connection), buf-ring (recv into a provided buffer ring, not a buffer per "
                        "connection), defer-taskrun (SINGLE_ISSUER + DEFER_TASKRUN), fixed-files "
                        "(registered sockets); no-NAME turns one off, none turns all off "
                        f"(default: {'+'.join(URING_DEFAULT)})")
    p.add_argument("--response", choices=RESPONSE_PRESETS, default="default",
                   help="the benchmark app's response: default (Server, Date, Content-Type, "
                        "Content-Length) or kourier (the posts' 105-byte response)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import UsageError
    from .. import buffers, loops, parsers
    from .config import ServerConfig
    from ..registry import is_user_spec, normalize
    from .workers import Supervisor
    # a file path means the same in every worker process (and whatever their cwd)
    args.loop, args.parser, args.buffer = (normalize(v) for v in (args.loop, args.parser, args.buffer))
    for kind, mod, name in (("loop", loops, args.loop), ("parser", parsers, args.parser),
                            ("buffer", buffers, args.buffer)):
        ok, why = mod.available(name)
        if not ok:
            if is_user_spec(name):
                raise UsageError(why)
            raise UsageError(f"{kind} {name!r} is not available: {why}; choose one of: {', '.join(mod.names())}")
    ok, why = loops.supports(args.loop, args.parser, args.buffer)
    if not ok:
        raise UsageError(why)
    try:
        limits = Limits(args.max_request_line, args.max_header_bytes, args.max_headers, args.max_body)
        cfg = ServerConfig(host=args.address, port=args.port, worker_count=args.worker_count,
                           request_timeout=args.request_timeout, idle_timeout=args.idle_timeout,
                           loop=args.loop, parser=args.parser, buffer=args.buffer, cpus=args.cpus,
                           app=args.app, limits=limits, max_connections=args.max_connections,
                           graceful_timeout=args.graceful_timeout, uvloop=args.uvloop,
                           head_memo=args.head_memo == "on",
                           fold_runs=args.fold_runs == "on", response=args.response,
                           uring_features=parse_uring_features(args.uring_features))
        from .app import load_app
        load_app(cfg.app, cfg.response)
    except ValueError as e:
        raise UsageError(str(e)) from None

    def ready(port):
        sys.stderr.write(f"kourier-lab: serving on http://{cfg.host}:{port} (loop={cfg.loop} "
                         f"parser={cfg.parser} buffer={cfg.buffer} head-memo={'on' if cfg.head_memo else 'off'} "
                         f"fold-runs={'on' if cfg.fold_runs else 'off'} response={cfg.response}"
                         f"{' uring-features=' + cfg.uring_features if cfg.loop == 'uring' else ''}, "
                         f"{cfg.worker_count} worker(s))\n")
        sys.stderr.flush()
    try:
        return Supervisor(cfg, on_ready=ready).run()
    except OSError as e:
        raise UsageError(f"cannot listen on {cfg.host}:{cfg.port}: {e.strerror or e}") from None
