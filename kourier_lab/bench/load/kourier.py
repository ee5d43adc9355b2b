"""The lab's own load generator, native/loadgen.c: building it, its command
line and its JSON summary; nothing is measured here (run/measure.py runs it).

It is built like the ceiling, on first use, once per source version
(bench/native_program.py).

It sends the same requests as wrk for every shape: the URL's GET with Host
(plus the browser shape's headers, read from pipeline.lua like wrk.py does) or
a corpus file (bench/experiment/corpora.py's format, the file pipeline.lua
reads).  Unlike wrk it checks every response (status line, framing, one per
request, in order), keeps per-request latency in HdrHistogram's bucket layout
(the summary's `latency_buckets_ns`, re-encoded here as the row's
`latency_hdr`, in µs like the hosts path's), and with a rate runs an open loop
whose latency counts from each request's intended send time.
"""
from __future__ import annotations

import functools
import json
import math
import os
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ...paths import repo_root
from ..native_program import compile_native

CFLAGS = ["-O2", "-Wall", "-pthread"]
LIBS = ["-lm"]
# the io_uring client (`--io uring`) is compiled in when liburing is there
URING_CFLAGS = ["-DKL_LOADGEN_URING"]
URING_LIBS = ["-luring"]
TOOL_NAME = "kourier-lab"           # the rows' load_tool
IO_CHOICES = ("epoll", "uring")
# the client's kernel interface when a run does not choose one (the rows'
# load_io): closed loop, io_uring, the cheaper per checked response against the
# same-bytes ceiling here (see the README), wherever it can run, else epoll;
# open loop (--rate), epoll: at 2 M requests/s offered on one core io_uring kept
# the rate but let requests queue longer (p50 2.1-2.9 ms vs 1.3-1.9 ms on 64
# connections, 150-235 ms vs 36-42 ms on 1024)
PREFERRED_IO = "uring"
OPEN_LOOP_IO = "epoll"
PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9), ("p9999", 99.99))


class LoadgenError(RuntimeError):
    """The load generator could not be built, refused its arguments, or printed no summary."""


_no_liburing: List[str] = []          # why the io_uring build failed, once per process


def build_loadgen(force: bool = False) -> Path:
    """Compile native/loadgen.c once per source version, with its io_uring client
    when liburing is installed (else without: `--io uring` then says so in one
    line); returns the binary's path."""
    if not _no_liburing:
        try:
            return compile_native("loadgen.c", "loadgen-uring", CFLAGS + URING_CFLAGS,
                                  LIBS + URING_LIBS, LoadgenError, force=force)
        except LoadgenError as e:
            _no_liburing.append(str(e))
    return compile_native("loadgen.c", "loadgen", CFLAGS, LIBS, LoadgenError, force=force)


@functools.lru_cache(maxsize=None)
def uring_unavailable() -> Optional[str]:
    """None when `--io uring` can run here, else the load generator's one line
    saying why not (no liburing at build time, the kernel, kernel.io_uring_disabled,
    seccomp)."""
    r = subprocess.run([str(build_loadgen()), "--io", "uring", "--probe-io"],
                       capture_output=True, text=True, timeout=30)
    if r.returncode == 0:
        return None
    return (r.stderr.strip().splitlines() or ["io_uring is unavailable"])[0].removeprefix("loadgen: ")


def default_io(open_loop: bool = False) -> str:
    """The kernel interface a run uses unless it names one: OPEN_LOOP_IO for an
    open loop, else PREFERRED_IO where it can run, else epoll."""
    io = OPEN_LOOP_IO if open_loop else PREFERRED_IO
    if io == "uring" and uring_unavailable():
        return "epoll"
    return io


@dataclass
class KourierLoad:
    """One run's parameters (the C program's options, by the same names)."""
    url: str
    threads: int
    connections: int
    duration_s: float
    pipeline: int = 1
    rate: Optional[float] = None          # open loop: requests/s over all connections
    corpus: Optional[str] = None          # a corpus file: its requests, not the URL's
    headers: Sequence[str] = field(default_factory=tuple)   # "Name: value" lines
    warmup_s: float = 0.0
    timeout_s: float = 2.0
    cpus: Optional[Sequence[int]] = None  # pin thread i to cpus[i % len]
    sources: Optional[int] = None         # source addresses spread over 127.0.0.0/8
    processes: Optional[int] = None       # default: as many as the descriptor limit needs
    io: Optional[str] = None              # the client's kernel interface: epoll | uring
                                          # (None: default_io())

    @property
    def browser(self) -> bool:
        return bool(self.headers)

    def command(self, binary: Optional[str] = None) -> List[str]:
        if self.duration_s <= 0:
            raise ValueError("duration must be > 0 s")
        if self.connections < 1 or self.threads < 1 or self.pipeline < 1:
            raise ValueError("connections, threads and pipeline must be >= 1")
        if self.rate is not None and self.rate <= 0:
            raise ValueError("rate must be > 0 requests/s")
        io = self.io or default_io(open_loop=bool(self.rate))
        if io not in IO_CHOICES:
            raise ValueError(f"io must be one of {', '.join(IO_CHOICES)}, not {io!r}")
        cmd = [str(binary or build_loadgen()), self.url, "-c", str(self.connections),
               "-t", str(self.threads), "-d", f"{self.duration_s:g}",
               "--pipeline", str(self.pipeline), "--timeout", f"{self.timeout_s:g}",
               "--warmup", f"{self.warmup_s:g}", "--io", io, "--json"]
        if self.rate:
            cmd += ["--rate", f"{self.rate:g}"]
        if self.corpus:
            cmd += ["--corpus", str(self.corpus)]
        for h in self.headers:
            cmd += ["--header", h]
        if self.cpus:
            cmd += ["--cpus", ",".join(str(c) for c in self.cpus)]
        if self.sources and self.sources > 1:
            cmd += ["--sources", str(self.sources)]
        if self.processes:
            cmd += ["--processes", str(self.processes)]
        return cmd


def browser_header_lines() -> List[str]:
    """The browser shape's headers as "Name: value" lines (from pipeline.lua, as wrk sends them)."""
    from .wrk import browser_headers
    return [f"{name}: {value}" for name, value in browser_headers()]


def _ms(us) -> float:
    return math.nan if us is None else float(us) / 1e3


def hdr_from_buckets(buckets: Sequence[Sequence[int]]) -> Optional[str]:
    """The buckets ([lowest ns, highest ns, count]) as an encoded HdrHistogram in µs
    (3 significant digits, as the hosts path's latency_hdr), or None when the
    hdrhistogram package is missing or nothing was recorded.  Each bucket is
    recorded at its middle, rounded to whole µs (the encoding's unit)."""
    if not buckets:
        return None
    try:
        from hdrh.histogram import HdrHistogram
    except ImportError:
        return None
    top_us = max(2, int(buckets[-1][1] // 1000) * 2 + 2)
    hist = HdrHistogram(1, top_us, 3)
    for low, high, count in buckets:
        hist.record_value(max(1, int(round((low + high) / 2e3))), int(count))
    enc = hist.encode()
    return enc.decode() if isinstance(enc, bytes) else enc


def parse_loadgen_output(text: str, keep_buckets: bool = False) -> Dict[str, object]:
    """The row's figures from the summary line (times in ms, as wrk's rows).

    Raises LoadgenError when the text holds no summary (the tool's error line,
    when it printed one, is in the message)."""
    summary = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                summary = json.loads(line)
            except json.JSONDecodeError:
                continue
    if summary is None:
        said = next((ln for ln in text.strip().splitlines() if ln.strip()), "nothing")
        raise LoadgenError(f"no summary; the load generator said: {said[:200]}")
    errors = dict(summary["errors_by_kind"])
    out: Dict[str, object] = {
        "load_tool": TOOL_NAME,
        "load_io": summary.get("io", "epoll"),     # summaries before --io were epoll's
        "requests_sent": summary["requests"],
        "requests": summary["responses"],          # answered in the window, as wrk's "requests"
        "responses_total": summary["responses_total"],   # warm-up and drain included
        "req_per_s": summary["req_per_s"],
        "bytes_read": summary["bytes_read"],
        "non_2xx_3xx": summary["non_2xx_3xx"],
        "errors_total": summary["errors"],
        "errors_by_kind": json.dumps({k: v for k, v in errors.items() if v}, sort_keys=True),
        "error_messages": json.dumps(summary["messages"], sort_keys=True),
        "responses_missing": summary["missing"],
        "unanswered_at_end": summary["unanswered_at_end"],
        "reconnects": summary["reconnects"],
        "interim_responses": summary.get("interim_responses", 0),   # 1xx skipped
        "max_queue": summary["max_queue"],
        "fast_path_responses": summary["fast_path"],
        "offered_rate": summary["rate"],
        "loadgen_cpu_user_s": summary["client_cpu_user_s"],
        "loadgen_cpu_sys_s": summary["client_cpu_sys_s"],
        "loadgen_cpu_s": summary["client_cpu_s"],
        "loadgen_wall_s": summary["wall_s"],
        "processes": summary["processes"],
        "latency_samples": summary["latency_samples"],
        "latency_max_ms": _ms(summary["latency_max_us"]),
        "latency_avg_ms": _ms(summary["latency_avg_us"]),
        "latency_per_batch": False,      # every request's own latency
        "latency_overflow": False,
    }
    # wrk's socket-error columns, so summaries that read them see these too
    out["errors_connect"] = errors.get("connect", 0)
    out["errors_read"] = errors.get("read", 0) + errors.get("closed", 0)
    out["errors_write"] = errors.get("write", 0)
    out["errors_timeout"] = errors.get("timeout", 0)
    out["errors_socket"] = sum(int(out[k]) for k in ("errors_connect", "errors_read",
                                                       "errors_write", "errors_timeout"))
    out["errors_response"] = sum(v for k, v in errors.items()
                                 if k not in ("connect", "read", "closed", "write", "timeout"))
    for name, _ in PERCENTILES:
        out[f"latency_{name}_ms"] = _ms(summary[f"latency_{name}_us"])
    if summary["rate"]:
        out["achieved_of_offered"] = summary["req_per_s"] / summary["rate"]
    out["loadgen_cpu_ns_per_response"] = (summary["client_cpu_s"] * 1e9 / summary["responses_total"]
                                          if summary["responses_total"] else math.nan)
    out["latency_hdr"] = hdr_from_buckets(summary["latency_buckets_ns"])
    if keep_buckets:
        out["latency_buckets_ns"] = summary["latency_buckets_ns"]
    return out


def shell_line(cmd: Sequence[str]) -> str:
    """The command as one shell line: the cached binary named `loadgen`, a corpus
    file made relative to the checkout."""
    root = str(repo_root()) + os.sep
    parts = []
    for i, c in enumerate(cmd):
        if i == 0:
            c = "loadgen"
        elif c.startswith(root):
            c = c[len(root):]
        parts.append(shlex.quote(c))
    return " ".join(parts)


CLI_SHAPES = ("keepalive", "pipelined", "browser", "distinct", "real", "api")


def load_for_command_line(url: str, connections: int = 64, threads: int = 1,
                          duration_s: float = 5.0, pipeline: Optional[int] = None,
                          rate: Optional[float] = None, shape: Optional[str] = None,
                          corpus: Optional[str] = None, warmup_s: float = 1.0,
                          timeout_s: float = 2.0, sources: Optional[int] = None,
                          cpus: Optional[Sequence[int]] = None,
                          io: Optional[str] = None) -> KourierLoad:
    """`kourier-lab load`'s arguments as a KourierLoad.  A shape brings its bench
    defaults (pipeline depth, browser headers or corpus) unless the arguments
    say otherwise.  Raises ValueError with one line on a bad argument; load goes
    to 127.0.0.0/8 only (the lab's load never leaves the machine)."""
    import ipaddress
    from urllib.parse import urlsplit
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme != "http":
        raise ValueError(f"only http:// URLs, not {url!r}")
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"bad port in {url!r}") from None
    address = "127.0.0.1" if host == "localhost" else host
    try:
        loopback = ipaddress.IPv4Address(address) in ipaddress.IPv4Network("127.0.0.0/8")
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"the host must be localhost or an address in 127.0.0.0/8, not {host!r}")
    target = f"http://{host}{f':{port}' if port else ''}{parts.path or '/'}"
    if parts.query:
        target += f"?{parts.query}"
    if connections < 1 or threads < 1:
        raise ValueError("-c and -t must be >= 1")
    if duration_s <= 0 or duration_s > 3600:
        raise ValueError("-d must be > 0 and at most 3600 s")
    if rate is not None and rate <= 0:
        raise ValueError("--rate must be > 0 requests/s")
    if io is not None and io not in IO_CHOICES:
        raise ValueError(f"--io is {' or '.join(IO_CHOICES)}, not {io!r}")
    if io == "uring" and uring_unavailable():
        raise ValueError(f"--io uring: {uring_unavailable()}")
    if shape and corpus:
        raise ValueError("--shape and --corpus both choose the requests: give one")
    if shape and shape not in CLI_SHAPES:
        raise ValueError(f"unknown shape {shape!r} (known: {', '.join(CLI_SHAPES)})")
    headers: Sequence[str] = ()
    depth = pipeline
    if shape:
        from ..experiment.files import SHAPE_DEFAULTS
        d = SHAPE_DEFAULTS[shape]
        if depth is None and rate is None:
            depth = int(d["pipeline"])
        if d.get("corpus"):
            from ..experiment.corpora import ensure
            corpus = str(ensure(d["corpus"]))
        if d.get("browser"):
            headers = tuple(browser_header_lines())
    depth = depth or 1
    if depth < 1:
        raise ValueError("--pipeline must be >= 1")
    if corpus and not Path(corpus).is_file():
        raise ValueError(f"no corpus file {corpus}")
    return KourierLoad(url=target, threads=min(threads, connections), connections=connections,
                       duration_s=duration_s, pipeline=depth, rate=rate, corpus=corpus,
                       headers=headers, warmup_s=warmup_s, timeout_s=timeout_s, cpus=cpus,
                       sources=sources, io=io)
