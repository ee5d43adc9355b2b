"""In-process microbenchmarks: parsers, buffers and timers, no sockets.

Each registered variant runs the same fixed corpora:
    short         a short plaintext GET (the post's request: wrk's default)
    browser       a browser GET with ~10 headers
    pipelined256  256 short GETs back to back (one wrk write in the post)
Timing is timeit-style: a round runs the operation enough times to last
~0.2 s (0.05 s quick); several rounds give the median and the spread
(min–max).  Figures: MB/s and requests/s (parsers, buffers) or operations/s
(timers).

Every parser is timed twice: as the server runs it by default (every head
parsed), and as "<name>+head-memo", behind the head memo (parsers/memo.py:
a byte-identical repeat of the last head is recognised with one startswith,
so the repeated corpora measure the memo, not the parser).

Outside anchors, so the numbers mean something beyond ourselves:
    httptools            llhttp through httptools, on_message_complete only
                         (the cheapest way to use it: closest to our offset tables)
    httptools+callbacks  the same, also collecting URL and header bytes in
                         Python callbacks (what a Python server built on it pays)
    heapq (timers)       a binary heap with lazy cancellation, the way asyncio
                         keeps its TimerHandles
"""
from __future__ import annotations

import datetime as _dt
import gc
import heapq
import importlib
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

SHORT = b"GET /hello HTTP/1.1\r\nHost: localhost:3275\r\n\r\n"
BROWSER = (
    b"GET /hello?lang=en&page=2 HTTP/1.1\r\n"
    b"Host: localhost:3275\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n"
    b"Accept-Language: en-US,en;q=0.5\r\n"
    b"Accept-Encoding: gzip, deflate, br\r\n"
    b"Referer: http://localhost:3275/index.html\r\n"
    b"Connection: keep-alive\r\n"
    b"Cookie: session=8f2b6c1e9d0a4f7b; theme=dark; consent=1\r\n"
    b"Upgrade-Insecure-Requests: 1\r\n"
    b"Sec-Fetch-Dest: document\r\n"
    b"Sec-Fetch-Mode: navigate\r\n"
    b"Cache-Control: max-age=0\r\n"
    b"\r\n"
)
CORPORA: Dict[str, Tuple[bytes, int]] = {
    "short": (SHORT, 1),
    "browser": (BROWSER, 1),
    "pipelined256": (SHORT * 256, 256),
}
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\n"
            b"Hello World!")
TIMER_CONNECTIONS = 10000


def _time_op(op: Callable[[], object], repeat: int, round_s: float) -> List[float]:
    """Seconds per call of op, one figure per round (timeit's method)."""
    op()                                   # warm: caches, lazy imports, JIT
    n = 1
    while True:                            # calibrate calls per round
        t0 = time.perf_counter()
        for _ in range(n):
            op()
        dt = time.perf_counter() - t0
        if dt >= round_s / 5 or n >= 1 << 24:
            break
        n *= 2 if dt <= 0 else max(2, min(10, int(round_s / 5 / dt) + 1))
    n = max(1, int(n * round_s / max(dt, 1e-9)))
    out = []
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            t0 = time.perf_counter()
            for _ in range(n):
                op()
            out.append((time.perf_counter() - t0) / n)
    finally:
        if gc_was:
            gc.enable()
    return out


def _row(component, variant, case, per_call, nbytes, nreq, nops, note="") -> Dict[str, object]:
    med = statistics.median(per_call)
    return {
        "component": component, "variant": variant, "case": case,
        "bytes_per_call": nbytes, "requests_per_call": nreq, "ops_per_call": nops,
        "rounds": len(per_call),
        "ns_per_call_median": med * 1e9, "ns_per_call_min": min(per_call) * 1e9,
        "ns_per_call_max": max(per_call) * 1e9,
        "spread_pct": (max(per_call) - min(per_call)) / med * 100 if med else float("nan"),
        "mb_per_s": nbytes / med / 1e6 if nbytes else float("nan"),
        "mb_per_s_min": nbytes / max(per_call) / 1e6 if nbytes else float("nan"),
        "mb_per_s_max": nbytes / min(per_call) / 1e6 if nbytes else float("nan"),
        "req_per_s": nreq / med if nreq else float("nan"),
        "ops_per_s": nops / med if nops else float("nan"),
        "status": "ok", "note": note,
    }


def _skip(component, variant, case, why, status="skipped") -> Dict[str, object]:
    return {"component": component, "variant": variant, "case": case, "status": status,
            "note": why}


# ---------------------------------------------------------------------------
# Parsers


def _parse_all(p, buf, nreq: int, end: int):
    start = 0
    for _ in range(nreq):
        n = p.parse_head(buf, start, end)
        if n <= 0:
            raise ValueError(f"parse_head returned {n} at offset {start}")
        start += n
    return start


def _parser_cases(variants: Optional[Sequence[str]]):
    from ... import parsers
    names = parsers.names()
    missing = parsers.unavailable()
    cases: Dict[str, object] = {}
    for name in sorted(set(names) | set(missing)):
        if name in missing:
            cases[name] = f"unavailable: {missing[name]}"
            continue
        cases[name] = lambda name=name: parsers.create(name)
        cases[f"{name}+head-memo"] = lambda name=name: parsers.create(name, head_memo=True)
    for anchor in ("httptools", "httptools+callbacks"):
        cases[anchor] = _httptools_factory(anchor)
    from ...registry import is_user_spec, normalize
    for name in variants or list(cases):
        if name not in cases and is_user_spec(name):      # a user's parser by file or module
            spec = normalize(name)
            ok, why = parsers.available(spec)
            yield spec, (lambda spec=spec: parsers.create(spec)) if ok else why
            continue
        yield name, cases.get(name, f"no parser named {name!r} (measurable here: "
                                    f"{', '.join(cases)}; or a file.py:Class)")


def _source_columns(name: str) -> Dict[str, object]:
    """variant_source / variant_sha256 of a parser variant (registry.source)."""
    from ... import parsers
    base = None if name.startswith("httptools") else name.removesuffix("+head-memo")
    try:
        src = parsers.source(base) if base else {}
    except (ValueError, OSError):
        src = {}
    return {"variant_source": src.get("path") or None, "variant_sha256": src.get("sha256") or None}


def _httptools_factory(name):
    try:
        import httptools
    except ImportError as e:
        return f"httptools is not installed ({e})"
    if name not in ("httptools", "httptools+callbacks"):
        return f"no anchor named {name!r}"

    class Counting:
        def __init__(self):
            self.done = 0

        def on_message_complete(self):
            self.done += 1

    class Collecting(Counting):
        def __init__(self):
            super().__init__()
            self.url, self.headers = b"", []

        def on_url(self, url):
            self.url = url

        def on_header(self, name, value):
            self.headers.append((name, value))

        def on_headers_complete(self):
            self.headers = []

    proto_cls = Counting if name == "httptools" else Collecting

    def make():
        proto = proto_cls()
        return proto, httptools.HttpRequestParser(proto)
    return make


def bench_parsers(variants=None, repeat=7, round_s=0.2, echo=print) -> List[Dict[str, object]]:
    rows = []
    for name, factory in _parser_cases(variants):
        for case, (data, nreq) in CORPORA.items():
            if isinstance(factory, str):
                rows.append(_skip("parsers", name, case, factory))
                continue
            buf = bytearray(data)
            if name.startswith("httptools"):
                proto, hp = factory()

                def op(hp=hp, data=data):
                    hp.feed_data(data)
                before = proto.done
                op()
                if proto.done - before != nreq:
                    rows.append(_skip("parsers", name, case,
                                      f"parsed {proto.done - before} of {nreq} requests", "failed"))
                    continue
            else:
                p = factory()
                try:
                    consumed = _parse_all(p, buf, nreq, len(buf))
                except Exception as e:
                    rows.append(_skip("parsers", name, case, f"{type(e).__name__}: {e}", "failed"))
                    continue
                if consumed != len(buf):
                    rows.append(_skip("parsers", name, case,
                                      f"consumed {consumed} of {len(buf)} bytes", "failed"))
                    continue

                def op(p=p, buf=buf, nreq=nreq, end=len(buf)):
                    _parse_all(p, buf, nreq, end)
            rows.append({**_row("parsers", name, case, _time_op(op, repeat, round_s),
                                len(data), nreq, nreq), **_source_columns(name)})
            echo(_line(rows[-1]))
    return rows


# ---------------------------------------------------------------------------
# Buffers


def _request_lengths(data: bytes, nreq: int) -> List[int]:
    out, start = [], 0
    for _ in range(nreq):
        end = data.index(b"\r\n\r\n", start) + 4
        out.append(end - start)
        start = end
    return out


def bench_buffers(variants=None, repeat=7, round_s=0.2, echo=print) -> List[Dict[str, object]]:
    """read: copy a corpus into free_span(), commit, contiguous(), consume per request
    (what a loop does per recv).  write: append one response per request, view(),
    consume (what a loop does per send)."""
    from ... import buffers
    names = buffers.names()
    missing = buffers.unavailable()
    rows = []
    for name in variants or sorted(set(names) | set(missing)):
        for case, (data, nreq) in CORPORA.items():
            if name not in names:
                why = (f"unavailable: {missing[name]}" if name in missing else
                       f"no buffer named {name!r} (registered: {', '.join(names)})")
                rows.append(_skip("buffers", name, f"read:{case}", why))
                rows.append(_skip("buffers", name, f"write:{case}", why))
                continue
            lengths = _request_lengths(data, nreq)
            rb = buffers.create_read(name)
            wb = buffers.create_write(name)

            def read_op(rb=rb, data=data, lengths=lengths):
                span = rb.free_span()
                n = len(data)
                span[:n] = data
                rb.commit(n)
                rb.contiguous()
                for k in lengths:
                    rb.consume(k)

            def write_op(wb=wb, nreq=nreq):
                for _ in range(nreq):
                    wb.append(RESPONSE)
                wb.consume(len(wb.view()))

            for kind, op, nbytes in (("read", read_op, len(data)),
                                     ("write", write_op, len(RESPONSE) * nreq)):
                try:
                    op()
                    left = len(rb) if kind == "read" else len(wb)
                    if left:
                        raise ValueError(f"{left} bytes left after a full cycle")
                    rows.append(_row("buffers", name, f"{kind}:{case}",
                                     _time_op(op, repeat, round_s), nbytes, nreq, nreq))
                    echo(_line(rows[-1]))
                except Exception as e:
                    rows.append(_skip("buffers", name, f"{kind}:{case}",
                                      f"{type(e).__name__}: {e}", "failed"))
    return rows


# ---------------------------------------------------------------------------
# Timers


class _Conn:
    __slots__ = ("timer_deadline", "timer_slot", "heap_entry")

    def __init__(self):
        self.timer_deadline = 0.0
        self.timer_slot = None
        self.heap_entry = None


class HeapTimers:
    """The anchor: asyncio's way (a heap of deadlines, cancelled entries left in
    place and skipped when popped), behind the TimerWheel's interface."""

    def __init__(self, tick=0.05, slots=2048, now=0.0):
        self.heap = []
        self.seq = 0
        self.cancelled = 0

    def schedule(self, conn, deadline):
        self.seq += 1
        entry = [deadline, self.seq, conn]
        conn.heap_entry = entry
        heapq.heappush(self.heap, entry)

    def cancel(self, conn):
        if conn.heap_entry is not None:
            conn.heap_entry[2] = None
            conn.heap_entry = None
            self.cancelled += 1
            # asyncio's rule: rebuild once most entries are dead.
            if self.cancelled > 100 and self.cancelled * 2 > len(self.heap):
                self.heap = [e for e in self.heap if e[2] is not None]
                heapq.heapify(self.heap)
                self.cancelled = 0

    def reset(self, conn, deadline):
        self.cancel(conn)
        self.schedule(conn, deadline)

    def advance(self, now):
        out = []
        heap = self.heap
        while heap and heap[0][0] <= now:
            conn = heapq.heappop(heap)[2]
            if conn is None:
                self.cancelled -= 1
            else:
                conn.heap_entry = None
                out.append(conn)
        return out


def _timer_variants(variants):
    found: Dict[str, object] = {}
    try:
        mod = importlib.import_module("kourier_lab.loops.timer_wheel")
        found["wheel"] = mod.TimerWheel
    except (ImportError, AttributeError) as e:
        found["wheel"] = f"kourier_lab.loops.timer_wheel is not available ({e})"
    found["heapq"] = HeapTimers
    if variants:
        return {v: found.get(v, f"no timer variant {v!r} (known: {', '.join(found)})")
                for v in variants}
    return found


def bench_timers(variants=None, repeat=7, round_s=0.2, echo=print,
                 connections: int = TIMER_CONNECTIONS) -> List[Dict[str, object]]:
    """Per connection count N: schedule+cancel N timers; reset N timers (the hot
    path: one reset per request batch); schedule N then advance past them all
    (expiry).  Time is virtual: the benchmark passes `now` explicitly."""
    rows = []
    n = connections
    for name, cls in _timer_variants(variants).items():
        cases = ("schedule+cancel", "reset", "expire")
        if isinstance(cls, str):
            rows.extend(_skip("timers", name, f"{c}:{n}", cls) for c in cases)
            continue
        # One set of connection objects per case: a connection is filed in at
        # most one wheel at a time (the wheel owns its timer_slot).
        conns = [_Conn() for _ in range(n)]
        reset_conns = [_Conn() for _ in range(n)]
        expire_conns = [_Conn() for _ in range(n)]

        def sched_cancel(cls=cls, conns=conns):
            w = cls(tick=0.05, slots=2048, now=0.0)
            for c in conns:
                w.schedule(c, 60.0)
            for c in conns:
                w.cancel(c)

        reset_wheel = cls(tick=0.05, slots=2048, now=0.0)
        for c in reset_conns:
            reset_wheel.schedule(c, 60.0)
        clock = [0.0]

        def reset(w=reset_wheel, conns=reset_conns):
            # Deadlines move forward as a real loop's would; the wheel is
            # advanced every call, as a loop advances it every iteration.
            clock[0] += 0.001
            now = clock[0]
            for c in conns:
                w.reset(c, now + 20.0)
            w.advance(now)

        def expire(cls=cls, conns=expire_conns):
            w = cls(tick=0.05, slots=2048, now=0.0)
            step = 1.0 / len(conns)
            for i, c in enumerate(conns):
                w.schedule(c, 0.1 + i * step)
            fired = 0
            t = 0.0
            while t < 1.2:
                t += 0.05
                fired += len(list(w.advance(t)))
            if fired != len(conns):
                raise ValueError(f"{fired} of {len(conns)} timers fired")

        for case, op in (("schedule+cancel", sched_cancel), ("reset", reset), ("expire", expire)):
            try:
                rows.append(_row("timers", name, f"{case}:{n}", _time_op(op, repeat, round_s),
                                 0, 0, n))
                echo(_line(rows[-1]))
            except Exception as e:
                rows.append(_skip("timers", name, f"{case}:{n}", f"{type(e).__name__}: {e}",
                                  "failed"))
        for c in reset_conns:
            reset_wheel.cancel(c)
    return rows


# ---------------------------------------------------------------------------


def _line(r: Dict[str, object]) -> str:
    if r.get("status") != "ok":
        return f"{r['variant']:<22} {r['case']:<22} {r['status']}: {r['note']}"
    rate = (f"{r['mb_per_s']:>9.1f} MB/s {r['req_per_s']:>13,.0f} req/s"
            if r["bytes_per_call"] else f"{r['ops_per_s']:>13,.0f} ops/s")
    return (f"{r['variant']:<22} {r['case']:<22} {r['ns_per_call_median']:>12,.0f} ns/call "
            f"(±{r['spread_pct']:.0f}%)  {rate}")


BENCHES = {"parsers": bench_parsers, "buffers": bench_buffers, "timers": bench_timers}


def run_micro(component: str, quick: bool = False, repeat: Optional[int] = None,
              variants: Optional[Sequence[str]] = None, out: Union[bool, str, Path, None] = None,
              echo: Callable[[str], None] = print):
    """Run one component's microbenchmarks; returns a DataFrame (one row per variant x case).

    out: None/False writes nothing; True writes under data/results; a path writes there.
    """
    import pandas as pd

    from ..run.machine import git_commit, machine_info
    from ...paths import results_dir
    if component not in BENCHES:
        raise ValueError(f"unknown component {component!r}; choose one of: {', '.join(BENCHES)}")
    repeat = repeat or (3 if quick else 7)
    round_s = 0.05 if quick else 0.2
    echo(f"micro {component}: {repeat} rounds of ~{round_s:g} s each; median (±spread = "
         "(max-min)/median)")
    rows = BENCHES[component](variants=variants, repeat=repeat, round_s=round_s, echo=echo)
    stamp = _dt.datetime.now(_dt.timezone.utc)
    meta = {"timestamp": stamp.isoformat(timespec="seconds"), "quick": quick,
            "git_commit": git_commit(), **machine_info()}
    df = pd.DataFrame([{**meta, **r} for r in rows])
    for r in rows:
        if r.get("status") != "ok":
            echo(_line(r))
    if out:
        root = results_dir() if out is True else Path(out)
        d = root / f"{stamp.strftime('%Y%m%dT%H%M%SZ')}-micro-{component}"
        d.mkdir(parents=True, exist_ok=True)
        df.to_parquet(d / "micro.parquet", index=False)
        echo(f"rows: {d / 'micro.parquet'}")
    return df


def load_micro(results: Union[str, Path, None] = None):
    """Every recorded microbenchmark row as one DataFrame."""
    import pandas as pd

    from ...paths import results_dir
    root = Path(results) if results is not None else results_dir()
    frames = [pd.read_parquet(p) for p in sorted(root.glob("*/micro.parquet"))]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
