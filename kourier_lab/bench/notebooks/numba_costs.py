"""The measurements behind notebooks/02_numba_and_buffers.ipynb: what the
Numba kernels cost to compile and to load, the read-side buffer strategies,
where a Numba parse called from Python spends its time, the Numba loop's own
counters, and the Numba parser's throughput against llhttp and the Python
parser.  Measuring code only: the kernels live in parsers/, buffers/ and
loops/, their shared layout in numba_layout.py.
"""
import os
import time

import numba
import numpy as np

from ...numba_layout import ArrayBytes


def timed_compile(dispatcher, *args):
    """Call a @njit dispatcher once and return (seconds, result): on a fresh
    process this is the JIT time (or the on-disk cache load time with cache=True)."""
    t0 = time.perf_counter()
    result = dispatcher(*args)
    return time.perf_counter() - t0, result


_JIT_SCRIPT = r"""
import json, time
t0 = time.perf_counter()
from kourier_lab.parsers import numba as nparser
from kourier_lab.buffers import numba as nbuf
rows = [("parsers/numba.py", "import", time.perf_counter() - t0)]
for name, sec in nparser.jit_report().items():
    rows.append(("parsers/numba.py", name, sec))
t0 = time.perf_counter()
rb = nbuf.NumbaRingBuffer(64, 1024)
span = rb.free_span(); span[:5] = b"hello"; del span
rb.commit(5); rb.contiguous(); rb.spans(); len(rb); rb.consume(5)
wb = nbuf.NumbaWriteBuffer(100); wb.append(b"abc"); wb.view(); wb.consume(3)
rows.append(("buffers/numba.py", "every kernel once", time.perf_counter() - t0))
from kourier_lab import loops
from kourier_lab.server.config import ServerConfig
from kourier_lab.server.demo import app
if "numba" in loops.names():
    loop = loops.create("numba", ServerConfig(loop="numba", parser="numba", buffer="numba"), app)
    rows.append(("loops/numba.py", "run_native and helpers", loop.jit_seconds))
print(json.dumps(rows))
"""


def jit_costs(cold: bool = False, timeout: float = 600):
    """First-call seconds of every Numba kernel, measured in a fresh interpreter:
    cold=True points NUMBA_CACHE_DIR at an empty directory (everything
    compiles), cold=False uses the normal on-disk cache (what a second start
    pays).  Returns a DataFrame (component, function, seconds, cache)."""
    import json
    import subprocess
    import sys
    import tempfile

    import pandas as pd
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as tmp:
        if cold:
            env["NUMBA_CACHE_DIR"] = tmp
        out = subprocess.run([sys.executable, "-c", _JIT_SCRIPT], env=env, capture_output=True,
                             text=True, timeout=timeout, check=True).stdout
    rows = json.loads(out.strip().splitlines()[-1])
    df = pd.DataFrame(rows, columns=["component", "function", "seconds"])
    df["cache"] = "cold (compile)" if cold else "warm (load)"
    return df


_START_SCRIPT = r"""
import json, time
t0 = time.perf_counter()
from kourier_lab import loops, spec
from kourier_lab.server.config import ServerConfig
from kourier_lab.server.demo import app
from kourier_lab.server.warm_up import CompileCounter, drive_sessions, warm_up
t1 = time.perf_counter()
cfg = ServerConfig(loop="numba", parser="numba", buffer="numba")
loop, warm = warm_up(cfg, app, lambda: loops.create("numba", cfg, app))
t2 = time.perf_counter()
# after "ready": the spec corpus, whole and in 7-byte reads, through the
# sessions a worker runs; every compilation here is one a request waited for
with CompileCounter() as late:
    drive_sessions(cfg, app, inputs=[(c.request, piece) for c in spec.load_request_cases() for piece in (0, 7)])
print(json.dumps({"import_s": t1 - t0, "create_s": t2 - t1, "jit_s": loop.jit_seconds,
                  "compiled": warm.compiled, "loaded": warm.loaded, "compiles_after_ready": late.count,
                  "corpus_s": time.perf_counter() - t2}))
"""


def start_up(warm_runs: int = 3, first: bool = True, timeout: float = 900):
    """Seconds until a Numba loop is ready to serve, each in a fresh interpreter.
    first=True: one start with NUMBA_CACHE_DIR pointing at an empty directory
    (everything compiles: what the first start on a machine pays), then
    `warm_runs` starts on that cache.  first=False: the normal on-disk cache,
    primed by one unreported start (compiles only if the sources changed).
    Rows: phase, run, interpreter_s (process start to the first line of the
    script: Python itself), import_s (kourier_lab and its registries), create_s
    (the server's start-up warm-up, server/warm_up.py: imports numba, builds the
    loop and loads or compiles every function a worker can reach), jit_s (the
    part of create_s spent in the loop's first native call), compiled / loaded
    (functions compiled, and loaded from the cache), compiles_after_ready (the
    spec corpus served through the worker's sessions afterwards: 0 when the
    warm-up left nothing to compile), ready_s (process start to ready)."""
    import json
    import subprocess
    import sys
    import tempfile

    import pandas as pd
    from ..run.machine import git_commit, machine_info
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))

    def one():
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", _START_SCRIPT], env=env, capture_output=True,
                             text=True, timeout=timeout, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        ready = time.perf_counter() - t0 - r.pop("corpus_s")     # ready came before the corpus
        # the script's own figures end at print(); what is left of the wall time is
        # the interpreter's start (and its exit, a few ms)
        r["interpreter_s"] = max(0.0, ready - r["import_s"] - r["create_s"])
        r["ready_s"] = ready
        return r

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if first:
            env["NUMBA_CACHE_DIR"] = tmp
            rows.append({"phase": "first start (empty cache)", "run": 0, **one()})
        else:
            one()
        for k in range(warm_runs):
            rows.append({"phase": "warm start (cache loaded)", "run": k + 1, **one()})
    meta = {"git_commit": git_commit(), **machine_info()}
    df = pd.DataFrame([{**meta, "what": "numba loop start-up", **r} for r in rows])
    return df


def _pipelined_chunks(nreq: int, chunk: int):
    """A pipelined stream of short GETs cut into recv-sized chunks that split requests."""
    one = b"GET /hello HTTP/1.1\r\nHost: localhost:3275\r\n\r\n"
    stream = one * nreq
    return [stream[i:i + chunk] for i in range(0, len(stream), chunk)], len(stream)


def _drain(data, start, end):
    """Consume every complete request in data[start:end] (found by its blank line)."""
    pos = start
    n = 0
    find = data.find
    while True:
        stop = find(b"\r\n\r\n", pos, end)
        if stop < 0:
            return pos - start, n
        pos = stop + 4
        n += 1


def buffer_strategies(nreq: int = 20000, chunk: int = 4096, body: int = 1 << 20, repeat: int = 5):
    """The read side of a connection under four buffer strategies: bytes
    concatenation (recv() returns bytes, ``buf = buf + data``), a compacting
    bytearray (``+=`` then ``del buf[:n]``), and every registered ring buffer
    (recv_into the free span, contiguous(), consume()).  Two scenarios, the
    same chunks for every strategy:
      pipelined   nreq short GETs cut into ``chunk``-byte reads that split
                  requests; every complete request is consumed after each read
      large body  one ``body``-byte message (its length known, as with
                  Content-Length) arriving in ``chunk``-byte reads, consumed
                  when complete: concatenation copies everything received so
                  far on every read, the others append
    Returns a DataFrame: ns per request (pipelined) or per read (large body),
    median of ``repeat`` runs after one warm-up, and MB/s."""
    import statistics

    import pandas as pd

    from ... import buffers
    pipelined, pipelined_total = _pipelined_chunks(nreq, chunk)
    message = bytes(body)
    big = [message[i:i + chunk] for i in range(0, len(message), chunk)]

    def whole_body(data, start, end):
        return (end - start, 1) if end - start >= body else (0, 0)

    def concat(chunks, drain):
        buf = b""
        got = 0
        for c in chunks:
            buf = buf + c
            used, n = drain(buf, 0, len(buf))
            got += n
            buf = buf[used:]
        return got

    def compacting(chunks, drain):
        buf = bytearray()
        got = 0
        for c in chunks:
            buf += c
            used, n = drain(buf, 0, len(buf))
            got += n
            del buf[:used]
        return got

    def ring(name):
        def run(chunks, drain):
            rb = buffers.create_read(name, 16384, 4 << 20)
            got = 0
            for c in chunks:
                while c:                       # a recv_into may get less than was sent
                    span = rb.free_span()
                    k = min(len(span), len(c))
                    span[:k] = c[:k]
                    del span
                    rb.commit(k)
                    c = c[k:]
                data, start, end = rb.contiguous()
                used, n = drain(data, start, end)
                got += n
                rb.consume(used)
            return got
        return run

    cases = [("bytes concatenation", concat), ("compacting bytearray", compacting)]
    cases += [(f"ring: {name}", ring(name)) for name in buffers.names()]
    rows = []
    for scenario, chunks, drain, total, expect, unit in (
            ("pipelined", pipelined, _drain, pipelined_total, nreq, nreq),
            ("large body", big, whole_body, len(message), 1, len(big))):
        for label, fn in cases:
            fn(chunks, drain)                   # warm-up (and JIT for a fresh signature)
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                got = fn(chunks, drain)
                times.append(time.perf_counter() - t0)
            if got != expect:
                raise AssertionError(f"{label}, {scenario}: {got} of {expect} messages")
            med = statistics.median(times)
            rows.append({"scenario": scenario, "strategy": label, "ns_per_unit": med / unit * 1e9,
                         "unit": "request" if scenario == "pipelined" else "read",
                         "mb_per_s": total / med / 1e6,
                         "spread_pct": (max(times) - min(times)) / med * 100})
    return pd.DataFrame(rows)


@numba.njit(cache=True)
def _noop_parse_args(buf, start, end, lim, t):
    return 0


def crossing_costs(rounds: int = 200, number: int = 2000):
    """Where a Numba parse of one short request spends its time when called
    from Python: the kernel alone (inside a batch), one call of a no-op
    @njit with the same arguments (Numba's dispatch), np.frombuffer, the
    whole NumbaParser.parse_head (dispatch + building the info tuple; memo
    off), and a head-memo hit (no kernel call at all).
    Best of `rounds` timings of `number` calls each, in ns."""
    import timeit

    import pandas as pd

    from ...parsers import numba as nparser
    one = b"GET /hello HTTP/1.1\r\nHost: localhost:3275\r\n\r\n"
    buf = ArrayBytes(len(one) * 256)
    memoryview(buf)[:] = one * 256
    view = buf.array      # held, as a ring buffer holds its array: parse_head then skips np.frombuffer
    plain = bytearray(one)
    from ...parsers.memo import HeadMemo
    p = nparser.NumbaParser()
    memo = HeadMemo(nparser.NumbaParser())
    arr = np.frombuffer(plain, np.uint8)
    lim, t = p._lim, p._words

    def best(stmt, per=1):
        return min(timeit.repeat(stmt, number=number, repeat=rounds)) / number / per * 1e9

    p.parse_batch(buf, 0, len(buf), 256)
    _noop_parse_args(arr, 0, len(one), lim, t)
    rows = [
        ("kernel (batch of 256, per request)", best(lambda: p.parse_batch(buf, 0, len(buf), 256), 256)),
        ("Numba dispatch (no-op @njit, same arguments)", best(lambda: _noop_parse_args(arr, 0, 45, lim, t))),
        ("np.frombuffer(bytearray)", best(lambda: np.frombuffer(plain, np.uint8))),
        ("parse_head(bytearray) from Python", best(lambda: p.parse_head(plain, 0, len(one)))),
        ("parse_head(ArrayBytes) from Python", best(lambda: p.parse_head(buf, 0, len(one)))),
        ("parse_head(ArrayBytes), head memo hit", best(lambda: memo.parse_head(buf, 0, len(one)))),
    ]
    del view
    return pd.DataFrame(rows, columns=["what", "ns"])


def loop_counters(requests: int = 2000, handler_requests: int = 3):
    """Run the Numba loop in this process (a thread), send `requests` pipelined
    static GETs and `handler_requests` requests to a Python handler on
    separate connections; returns what the native side counted: requests it
    served without the interpreter, connections it promoted to Python."""
    import socket
    import threading

    import pandas as pd

    from ... import loops
    from ...loops import numba as nloop
    from ...server.config import ServerConfig
    from ...server.demo import app
    from ...server.process import read_responses
    loop = loops.create("numba", ServerConfig(loop="numba", parser="numba", buffer="numba"), app)
    lsock = socket.create_server(("127.0.0.1", 0))
    thread = threading.Thread(target=loop.run, args=(lsock,), daemon=True)
    thread.start()
    port = lsock.getsockname()[1]
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n" * requests)
        assert len(read_responses(s, requests)) == requests
        s.close()
        for _ in range(handler_requests):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(b"GET /json HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert read_responses(s, 1)[0][0] == 200
            s.close()
        ctl = loop._L.ctl
        return pd.DataFrame([
            {"counter": "requests served natively", "value": int(ctl[nloop.C_SERVED])},
            {"counter": "connections promoted to Python", "value": int(ctl[nloop.C_PROMOTED])},
            {"counter": "loop JIT seconds (this process)", "value": round(loop.jit_seconds, 2)},
        ])
    finally:
        loop.request_stop()
        thread.join(15)
        lsock.close()


def parser_throughput(rounds: int = 200, budget_requests: int = 2000):
    """MB/s of the Numba parser against llhttp (httptools) and the Python
    parser on the browser-request corpus (one request, 16 and 256 pipelined)
    and 256 pipelined short GETs, all fully validating.  Numba rows: the batch
    kernel (one call per buffer), parse_head per request with the head memo
    off and on.  httptools rows: feed_data of the whole buffer counting
    on_message_complete, and with on_url/on_header callbacks.  Each figure is
    the best of `rounds` timings (the machine is shared: the best is the
    least disturbed).  Returns a DataFrame (corpus, parser, ns_per_request,
    mb_per_s)."""
    import pandas as pd

    from ... import parsers
    from ..profile.micro import BROWSER, SHORT
    from ...parsers.numba import NumbaParser
    try:
        import httptools
    except ImportError:  # pragma: no cover - httptools is a test dependency
        httptools = None

    def best(op, n):
        op()
        b = float("inf")
        for _ in range(rounds):
            t0 = time.perf_counter()
            for _ in range(n):
                op()
            b = min(b, (time.perf_counter() - t0) / n)
        return b

    def per_request(p, buf, nreq):
        def op():
            s = 0
            for _ in range(nreq):
                s += p.parse_head(buf, s, len(buf))
        return op

    rows = []
    for corpus, data, nreq in (("browser", BROWSER, 1), ("browser x16", BROWSER * 16, 16),
                               ("browser x256", BROWSER * 256, 256), ("short x256", SHORT * 256, 256)):
        buf = bytearray(data)
        batch = NumbaParser()
        if batch.parse_batch(buf, 0, len(buf), 256)[:2] != (nreq, len(buf)):
            raise AssertionError(f"{corpus}: the batch kernel did not parse every request")
        cases = [("numba: parse_batch (one call)", lambda: batch.parse_batch(buf, 0, len(buf), 256)),
                 ("numba: parse_head per request", per_request(NumbaParser(), buf, nreq)),
                 ("numba: parse_head per request, head memo on",
                  per_request(parsers.create("numba", head_memo=True), buf, nreq)),
                 ("python: parse_head per request", per_request(parsers.create("python"), buf, nreq)),
                 ("python: parse_head per request, head memo on",
                  per_request(parsers.create("python", head_memo=True), buf, nreq))]
        if httptools is not None:
            class Counting:
                def on_message_complete(self):
                    pass

            class Collecting(Counting):
                def on_url(self, url):
                    self.url = url

                def on_header(self, name, value):
                    pass
            hp, hp2 = httptools.HttpRequestParser(Counting()), httptools.HttpRequestParser(Collecting())
            cases += [("httptools (llhttp)", lambda hp=hp: hp.feed_data(data)),
                      ("httptools + Python callbacks", lambda hp2=hp2: hp2.feed_data(data))]
        n = max(1, budget_requests // nreq)
        for name, op in cases:
            dt = best(op, n)
            rows.append({"corpus": corpus, "parser": name, "ns_per_request": dt / nreq * 1e9,
                         "mb_per_s": len(data) / dt / 1e6})
    return pd.DataFrame(rows)
