"""Stage counters: where a loop spends its time, stage by stage.

Off by default.  Setting KOURIER_LAB_STAGE_COUNTERS=<prefix> in a server's
environment turns them on in every loop that process creates (a run-time
switch, read once when the loop is created; `kourier-lab profile` sets it and
records it in its rows).  When a loop's run() ends it writes
<prefix>.<pid>.json: nanoseconds per stage and how many requests the loop
answered.  Stages (the same names in every loop):

    read      recv / recv_into until the socket is drained
    parse     the parser (one parse_heads call per batch of heads)
    route     resolving method and path to a route
    respond   everything else between parse and write: building or copying
              the answers into the write buffer, the session's bookkeeping
    write     send
    timers    resetting connection deadlines, advancing the timer wheel

The Python loops time each stage with the thread's CPU clock
(CLOCK_THREAD_CPUTIME_ID: time the process was descheduled by the other tenants
of a shared machine is not counted), two clock reads per stage per read event
or batch.  The C and Numba loops (native/loop.c, loops/numba.py) use
CLOCK_MONOTONIC through the vDSO (the CPU clock is a system call there, dearer
than their stages): wall time.  The C loop parses head by head, so it times
parse and route on one head in 64 and scales the totals (timing every head cost
as much as the stages themselves); profile's overhead row says what is left.  What a run's server CPU
is beyond the counted stages (epoll_wait, accept, close, the event dispatch,
the interpreter's own work) is reported by `kourier-lab profile` as "other".
The counters cost time themselves: profile measures the CPU per request with
them off and on and reports the difference.
"""
import json
import os
import time

ENV = "KOURIER_LAB_STAGE_COUNTERS"
STAGES = ("read", "parse", "route", "respond", "write", "timers")

now_ns = time.thread_time_ns


class StageCounters:
    """ns per stage (a dict, one entry per STAGES name) for the Python loops."""
    __slots__ = ("ns", "prefix", "requests")

    def __init__(self, prefix: str):
        self.ns = dict.fromkeys(STAGES, 0)
        self.prefix = prefix
        self.requests = 0

    def add(self, stage: str, t0: int) -> int:
        """Add the time since t0 to `stage`; returns now (the next stage's t0)."""
        t = now_ns()
        self.ns[stage] += t - t0
        return t

    def process(self, session):
        """session.process(), timed: its time less what parse and route counted
        meanwhile goes to 'respond'; the requests it answered are counted."""
        ns = self.ns
        before = ns["parse"] + ns["route"]
        served = session.requests
        t0 = now_ns()
        r = session.process()
        ns["respond"] += now_ns() - t0 - (ns["parse"] + ns["route"] - before)
        self.requests += session.requests - served
        return r

    def dump(self, loop: str, extra=None) -> str:
        path = f"{self.prefix}.{os.getpid()}.json"
        record = {"loop": loop, "requests": int(self.requests),
                  "ns": {k: int(v) for k, v in self.ns.items()}}
        record.update(extra or {})
        with open(path, "w") as f:
            json.dump(record, f)
        return path


def from_env():
    """A StageCounters when the switch is on in this process, else None."""
    prefix = os.environ.get(ENV)
    return StageCounters(prefix) if prefix else None


def timed_parser(parser, counters):
    """The parser with its parse_heads timed as 'parse' (everything else is
    passed through unchanged)."""
    class Timed:
        def __getattr__(self, name):
            return getattr(parser, name)

    inner = getattr(parser, "parse_heads", None)
    t = Timed()
    if inner is not None:
        ns = counters.ns

        def parse_heads(buf, start, end, max_count):
            t0 = now_ns()
            r = inner(buf, start, end, max_count)
            ns["parse"] += now_ns() - t0
            return r
        t.parse_heads = parse_heads
    else:
        from ..parsers import parse_heads_by_head
        ns = counters.ns

        def parse_heads(buf, start, end, max_count):
            t0 = now_ns()
            r = parse_heads_by_head(parser, buf, start, end, max_count)
            ns["parse"] += now_ns() - t0
            return r
        t.parse_heads = parse_heads
    return t


def time_routes(app, counters):
    """Time app.resolve as 'route' (an attribute on this app object only)."""
    inner = app.resolve
    ns = counters.ns

    def resolve(method, path):
        t0 = now_ns()
        r = inner(method, path)
        ns["route"] += now_ns() - t0
        return r
    app.resolve = resolve
