"""`kourier-lab peers list | build NAME | start NAME | stop NAME`."""
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("peers", help="build, start and stop the reference servers (Go, hyper, nginx, ...)",
                              description="Reference servers built from package registries; each answers "
                                          "any path with 200 'Hello World!'.")
    sub = p.add_subparsers(dest="peers_command", metavar="ACTION")
    sub.required = True
    ls = sub.add_parser("list", help="each peer, whether it can be built here, and why not")
    ls.set_defaults(func=_list)
    b = sub.add_parser("build", help="install what is missing (apt-get, pip) and build the peer")
    b.add_argument("name", metavar="NAME", help="a peer name or 'all'")
    b.add_argument("--no-install", action="store_true", help="only report what is missing")
    b.set_defaults(func=_build)
    s = sub.add_parser("start", help="start a peer in the background (stop it with 'peers stop')")
    s.add_argument("name", metavar="NAME")
    s.add_argument("-a", "--host", default="127.0.0.1")
    s.add_argument("-p", "--port", type=int, required=True)
    s.add_argument("-w", "--workers", type=int, default=1)
    s.add_argument("--cpus", default=None, help="pin to these CPUs, e.g. 0,1 or 0-2")
    s.set_defaults(func=_start)
    t = sub.add_parser("stop", help="stop a peer started by 'peers start'")
    t.add_argument("name", metavar="NAME")
    t.add_argument("-p", "--port", type=int, default=None, help="only the one on this port")
    t.set_defaults(func=_stop)


def _name(name):
    from ..errors import UsageError
    from . import names
    if name not in names():
        raise UsageError(f"unknown peer {name!r}; choose one of: {', '.join(names())}")
    return name


def parse_cpus(text: str):
    """'0,2-3' -> [0, 2, 3]; ValueError on anything else."""
    cpus = set()
    for part in text.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValueError(f"bad CPU list {text!r} (expected e.g. 0,1 or 0-3)")
        cpus.update(range(int(lo), int(hi) + 1) if sep else [int(lo)])
    return sorted(cpus)


def _list(args) -> int:
    from . import available, binary_path, names, requirements
    for n in names():
        ok, why = available(n)
        req = requirements(n)
        needs = " ".join([f"apt:{p}" for p in req.apt] + [f"pip:{p}" for p in req.pip])
        built = ""
        bp = binary_path(n)
        if bp is not None:
            built = " (built)" if bp.exists() else " (not built yet)"
        print(f"{n:<18} {'available' + built if ok else 'missing: ' + why}   [{needs}]")
    return 0


def _build(args) -> int:
    import time
    from . import PeerError, build, names
    todo = names() if args.name == "all" else [_name(args.name)]
    rc = 0
    for n in todo:
        t0 = time.perf_counter()
        try:
            out = build(n, install_missing=not args.no_install)
        except PeerError as e:
            sys.stderr.write(f"kourier-lab: {e}\n")
            rc = 1
            continue
        where = f" -> {out}" if out else ""
        print(f"{n}: ready in {time.perf_counter() - t0:.1f} s{where}")
    return rc


def _start(args) -> int:
    from ..errors import UsageError
    from . import PeerError, start
    name = _name(args.name)
    if args.workers < 1:
        raise UsageError("--workers must be >= 1")
    if not 0 < args.port < 65536:
        raise UsageError("--port must be 1..65535")
    cpus = None
    if args.cpus:
        try:
            cpus = parse_cpus(args.cpus)
        except ValueError as e:
            raise UsageError(str(e))
    try:
        proc = start(name, args.host, args.port, args.workers, cpus=cpus)
    except PeerError as e:
        sys.stderr.write(f"kourier-lab: {e}\n")
        return 1
    print(f"{name} answering on {args.host}:{args.port} (pid {proc.pid}, log {proc.log_path}); "
          f"stop with: kourier-lab peers stop {name} -p {args.port}")
    return 0


def _stop(args) -> int:
    from . import stop_recorded
    name = _name(args.name)
    stopped = stop_recorded(name, args.port)
    print(f"{name}: stopped {len(stopped)} process group(s)" + (f" {stopped}" if stopped else ""))
    return 0
