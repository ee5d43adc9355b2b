"""`kourier-lab serve | bench | micro | compliance | peers | report | soak | check`.

Each component contributes its own subcommands through a `cli.py` module with
`register(subparsers)`; this file only wires them together.
"""
import argparse
import contextlib
import importlib
import sys

from .errors import UsageError

_COMPONENT_CLIS = ("kourier_lab.server.cli", "kourier_lab.bench.cli",
                   "kourier_lab.compliance.cli", "kourier_lab.peers.cli", "kourier_lab.stress.cli",
                   "kourier_lab.grading")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one clear line, exit 2
        sys.stderr.write(f"kourier-lab: error: {message}\n")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="kourier-lab", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for mod in _COMPONENT_CLIS:
        importlib.import_module(mod).register(sub)
    return p


# Long commands that start servers, peers or load tools: SIGINT (Ctrl-C, to the
# whole process group) and SIGTERM stop them cleanly -- rows kept, summary
# printed, every process they started stopped, exit 130 / 143.  `serve` keeps
# its own handlers (its SIGTERM is the graceful stop).
_STOPPABLE = {"bench", "report", "micro", "memory", "soak", "hostile", "compliance", "peers", "profile"}


def main(argv=None) -> int:
    from . import procs
    args = build_parser().parse_args(argv)
    guard = procs.interruptible() if args.command in _STOPPABLE else contextlib.nullcontext()
    with guard:
        try:
            rc = args.func(args)
        except KeyboardInterrupt as e:        # procs.Interrupted, or a plain Ctrl-C
            left = procs.stop_all()
            name = e.name if isinstance(e, procs.Interrupted) else "SIGINT"
            sys.stderr.write(f"kourier-lab: {args.command} interrupted by {name}"
                             + (f"; stopped {len(left)} process(es) it had started: {', '.join(left)}"
                                if left else "; every process it started is stopped") + "\n")
            return procs.exit_status(e)
        except UsageError as e:
            sys.stderr.write(f"kourier-lab: error: {e}\n")
            return 2
        finally:
            if args.command in _STOPPABLE and args.command != "peers":
                procs.stop_all()              # nothing should be left; make sure
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
