"""`kourier-lab compliance HOST:PORT --suite published|strict [--quick]`."""
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("compliance", help="run an HTTP syntax-compliance suite against HOST:PORT",
                              description="Run the published compliance test or the strict RFC 9112 suite "
                                          "against a server that answers GET /hello with 200.")
    p.add_argument("address", metavar="HOST:PORT")
    p.add_argument("--suite", choices=("published", "strict"), default="published")
    p.add_argument("--quick", action="store_true",
                   help="sample the two 61,692-request pct-encoding categories (published suite)")
    p.add_argument("--sample", type=int, default=None, help="requests kept per sampled category with --quick")
    p.add_argument("--concurrency", type=int, default=None, help="connections in flight")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds a server may neither answer nor close before the request counts as timed out")
    p.add_argument("--case", action="append", default=None, help="strict: run only this case (repeatable)")
    p.add_argument("--csv", default=None, help="write the rows to this CSV file")
    p.set_defaults(func=_main)


def _main(args) -> int:
    from ..errors import UsageError
    from . import ServerNotServing, run
    from .client import parse_address
    try:
        parse_address(args.address)
    except ValueError as e:
        raise UsageError(str(e))
    kw = {}
    if args.concurrency is not None:
        if args.concurrency < 1:
            raise UsageError("--concurrency must be >= 1")
        kw["concurrency"] = args.concurrency
    if args.timeout is not None:
        if args.timeout <= 0:
            raise UsageError("--timeout must be > 0")
        kw["timeout"] = args.timeout
    if args.suite == "published":
        if args.case:
            raise UsageError("--case applies to --suite strict")
        if args.sample is not None:
            if args.sample < 1:
                raise UsageError("--sample must be >= 1")
            kw["sample"] = args.sample
    else:
        if args.quick or args.sample is not None:
            raise UsageError("--quick/--sample apply to --suite published")
        if args.case:
            kw["cases"] = args.case
    try:
        result = run(args.address, suite=args.suite, quick=args.quick, **kw)
    except ServerNotServing as e:
        sys.stderr.write(f"kourier-lab: {e}\n")
        return 1
    except ValueError as e:
        raise UsageError(str(e))
    print(result.report())
    if args.csv:
        result.table().to_csv(args.csv, index=False)
    return 0 if result.score == 100.0 else 3
