"""Hostile input, measured: the CPU each stack spends on input built to cost it.

    df = run_hostile(["c/c/c"], repetitions=3)     # rows on disk, one per stack, input and run
    kourier-lab hostile [--stacks ...] [--inputs ...] [--repetitions 3] [--quick]

Each input goes to a server of the stack (one server per stack, a new
connection per input and run), from a client pinned away from the server's
CPUs, paced as a slow client would send it: in writes of `piece` bytes with
`gap_us` microseconds between them (a busy wait: sleep() cannot pace this
finely), so that the server reads it in many small pieces -- the case where a
parser asked again from the start after every read costs O(bytes x reads).
A row records the answer (its status, the time to it) and the server's CPU
seconds from the first byte to the answer (utime + stime of the server's
process tree from /proc, 10 ms ticks), with the server's idle CPU over the
same time (measured for a second per stack) as a separate column, so that
`cpu_ns_per_byte` is the cost the input added.  Speed goals are read from
these rows, never asserted by a test.
"""
from __future__ import annotations

import datetime as _dt
import os
import re
import select
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import pandas as pd

from ..bench.run.machine import git_commit, machine_info
from ..bench.results import new_batch_dir, to_frame, write_rows
from ..sampler import TreeSampler, descendants, pin_tree
from ..bench.experiment.split import cpu_list, plan_split

HOST = "127.0.0.1"
# the limits every stack runs with here: the defaults of kourier_lab.http.limits,
# max_header_bytes settable (a larger one shows what re-parsing a long head costs)
MAX_HEADER_BYTES = 16384
MAX_BODY = 1 << 20


def server_args(max_header_bytes: int = MAX_HEADER_BYTES) -> tuple:
    return ("--app", "kourier_lab.server.demo:app", "--request-timeout", "60", "--idle-timeout", "60",
            "--max-header-bytes", str(max_header_bytes), "--max-body", str(MAX_BODY))


@dataclass(frozen=True)
class HostileInput:
    name: str
    description: str
    data: Callable[[bool, int], bytes]     # (quick, max_header_bytes) -> the bytes
    piece: int                         # bytes per write
    gap_us: int                        # between writes
    expect: Tuple[int, ...]            # the statuses a strict server answers
    needs_header_bytes: int = 0        # the max_header_bytes it needs (a valid head)


def _valid_head(size: int) -> bytes:
    """A valid GET of `size` bytes: field lines of about equal length, under max_headers."""
    start = b"GET /hello HTTP/1.1\r\nHost: a\r\n"
    lines = 90
    room = size - len(start) - 2
    each = room // lines
    fields = [b"X-F%02d: " % i + b"v" * (each - 9) + b"\r\n" for i in range(lines)]
    # the last line takes what the equal shares leave over
    fields[-1] = fields[-1][:-2] + b"v" * (room - each * lines) + b"\r\n"
    return start + b"".join(fields) + b"\r\n"


def _chunked(total: int, chunk: int) -> bytes:
    head = b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    line = b"%x\r\n" % chunk + b"c" * chunk + b"\r\n"
    return head + line * (total // chunk) + b"0\r\n\r\n"


INPUTS = (
    HostileInput("crlf_flood", "1 MiB of empty lines (CRLF) at once, in 64 KiB writes",
                 lambda q, m: b"\r\n" * ((64 if q else 1024) << 9), 65536, 0, (431,)),
    HostileInput("crlf_trickle", "empty lines in 2-byte writes, up to the head limit",
                 lambda q, m: b"\r\n" * (m // 2 + 16), 2, 40, (431,)),
    HostileInput("head_trickle_4k", "a valid 4,000-byte head (91 field lines) in 1-byte writes",
                 lambda q, m: _valid_head(4000), 1, 40, (200,), 4000),
    HostileInput("head_trickle_16k", "a valid 16,000-byte head (91 field lines) in 1-byte writes",
                 lambda q, m: _valid_head(16000), 1, 40, (200,), 16000),
    HostileInput("head_trickle_60k", "a valid 60,000-byte head (91 field lines) in 1-byte writes "
                 "(needs --max-header-bytes 65536)",
                 lambda q, m: _valid_head(60000), 1, 40, (200,), 60000),
    HostileInput("chunked_64_60k", "a valid 60 KiB chunked body in 64-byte chunks, one per write",
                 lambda q, m: _chunked(60 << 10, 64), 70, 20, (200,)),
    HostileInput("chunked_64_300k", "a valid 300 KiB chunked body in 64-byte chunks, one per write",
                 lambda q, m: _chunked(300 << 10, 64), 70, 20, (200,)),
    HostileInput("chunked_1", "300 KiB in 1-byte chunks (framing past its bound: 413), 4 KiB writes",
                 lambda q, m: _chunked((150 if q else 300) << 10, 1), 4096, 0, (413,)),
)
# quick mode: one of each kind, the smaller sizes
QUICK_INPUTS = ("crlf_flood", "head_trickle_4k", "chunked_64_60k", "chunked_1")
# (smaller, larger): the same input at two sizes; linear cost keeps CPU per byte equal
SIZE_PAIRS = (("head_trickle_4k", "head_trickle_16k"), ("head_trickle_16k", "head_trickle_60k"),
              ("chunked_64_60k", "chunked_64_300k"))
BY_NAME = {i.name: i for i in INPUTS}
_CONTENT_LENGTH = re.compile(rb"\r\n[Cc]ontent-[Ll]ength:[ \t]*([0-9]+)")


def _busy_wait(us: int) -> None:
    if us:
        end = time.perf_counter() + us * 1e-6
        while time.perf_counter() < end:
            pass


def _read_answer(sock: socket.socket, buf: bytes, deadline: float) -> Tuple[Optional[int], bytes]:
    """(status, bytes) of the first response (Content-Length framed), or (None, ...)
    when the server closed or the deadline passed without one."""
    while True:
        head_end = buf.find(b"\r\n\r\n")
        if head_end >= 0:
            m = _CONTENT_LENGTH.search(buf, 0, head_end + 2)
            length = int(m.group(1)) if m else 0
            if len(buf) >= head_end + 4 + length:
                try:
                    return int(buf[9:12]), buf
                except ValueError:
                    return None, buf
        left = deadline - time.monotonic()
        if left <= 0:
            return None, buf
        sock.settimeout(left)
        try:
            chunk = sock.recv(1 << 20)
        except (socket.timeout, ConnectionResetError):
            return None, buf
        if not chunk:
            return None, buf
        buf += chunk


def send_hostile(port: int, item: HostileInput, quick: bool, timeout: float = 60.0,
                 max_header_bytes: int = MAX_HEADER_BYTES) -> Dict:
    """Send one input on a new connection, paced; wait for the answer.  The
    sending stops as soon as an answer arrives (a server may answer 431 and
    close before the input ends)."""
    data = item.data(quick, max_header_bytes)
    sock = socket.create_connection((HOST, port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    writes = sent = 0
    got = b""
    t0 = time.monotonic()
    deadline = t0 + timeout
    try:
        view = memoryview(data)
        for off in range(0, len(data), item.piece):
            try:
                sock.sendall(view[off:off + item.piece])
            except (BrokenPipeError, ConnectionResetError):
                break
            writes += 1
            sent = min(len(data), off + item.piece)
            if select.select([sock], [], [], 0)[0]:
                break                   # the server answered (or closed) early
            _busy_wait(item.gap_us)
            if time.monotonic() > deadline:
                break
        status, got = _read_answer(sock, got, deadline)
    finally:
        sock.close()
    return {"input_bytes": len(data), "sent_bytes": sent, "writes": writes, "piece_bytes": item.piece,
            "gap_us": item.gap_us, "answer_status": status, "answer_s": time.monotonic() - t0}


def _idle_cpu_per_s(pid: int, seconds: float = 1.0) -> float:
    sampler = TreeSampler(pid)
    sampler.start()
    t0 = time.monotonic()
    time.sleep(seconds)
    return sampler.finish().cpu_s / (time.monotonic() - t0)


def run_hostile(stacks: Optional[Sequence[str]] = None, inputs: Optional[Sequence[str]] = None,
                repetitions: int = 3, quick: bool = False, out: Union[str, Path, None] = None,
                echo: Optional[Callable[[str], None]] = print,
                cpus: Optional[Sequence[int]] = None,
                max_header_bytes: int = MAX_HEADER_BYTES) -> pd.DataFrame:
    """Every input (default: all of INPUTS; QUICK_INPUTS when quick) against every stack (default: each
    loop's own stack); one row per stack, input and run, in
    <results>/<batch>-hostile/rows.parquet.  Returns the rows (attrs: batch_id,
    batch_dir)."""
    from .. import loops
    from ..server.process import ServerProcess
    say = echo or (lambda s: None)
    known = ["/".join(c) for c in loops.combinations()]
    if stacks is None:      # each loop with its own parser and buffer (asyncio: the Python ones)
        stacks = [f"{lo}/{lo}/{lo}" if f"{lo}/{lo}/{lo}" in known else f"{lo}/python/python"
                  for lo in loops.names()]
        stacks = [s for s in stacks if s in known]
    bad = [s for s in stacks if s not in known]
    if bad:
        raise ValueError(f"{bad[0]!r} is not a runnable stack here (runnable: {', '.join(known)})")
    items = [BY_NAME[n] for n in (inputs or (QUICK_INPUTS if quick else [i.name for i in INPUTS]))]
    if repetitions < 1:
        raise ValueError("repetitions must be >= 1")
    split = plan_split("auto", cpus)
    batch_id, batch_dir = new_batch_dir("hostile", out)
    commit, machine = git_commit(), machine_info()
    rows: List[Dict] = []
    own = os.sched_getaffinity(0)
    try:
        for stack in stacks:
            loop, parser, buffer = stack.split("/")
            say(f"hostile {stack}: starting the server ...")
            os.sched_setaffinity(0, own)        # the server inherits it, then takes its CPUs
            try:
                srv = ServerProcess(*server_args(max_header_bytes), loop=loop, parser=parser,
                                    buffer=buffer, cpus=split.server_cpus).start(timeout=1200)
            except (RuntimeError, OSError) as e:
                # one line (the server's last words), failed rows, and on to the next stack
                why = " ".join(str(e).strip().splitlines()[-1:]).strip()
                why = why.removeprefix("server did not start:").strip()[:300] or type(e).__name__
                say(f"hostile {stack}: the server did not start: {why}")
                for item in items:
                    rows.append({"batch_id": batch_id, "experiment": "hostile", "shape": item.name,
                                 "quick": quick, "run": 1, "repetitions": repetitions, **machine,
                                 "git_commit": commit, "server_kind": "stack", "server": stack,
                                 "loop": loop, "parser": parser, "buffer": buffer,
                                 "status": "failed", "note": f"start: {why}"})
                write_rows(rows, batch_dir)
                continue
            os.sched_setaffinity(0, set(split.client_cpus))     # the client, away from them
            try:
                pin_tree(descendants(srv.pid), split.server_cpus)
                idle = _idle_cpu_per_s(srv.pid)
                for item in items:
                    for run in range(1, repetitions + 1):
                        row = {"batch_id": batch_id, "experiment": "hostile", "shape": item.name,
                               "quick": quick, "run": run, "repetitions": repetitions,
                               "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                               **machine, "git_commit": commit, "server_kind": "stack", "server": stack,
                               "loop": loop, "parser": parser, "buffer": buffer, "workers": 1,
                               "server_cpus": cpu_list(split.server_cpus),
                               "client_cpus": cpu_list(split.client_cpus),
                               "input_description": item.description,
                               "expected_statuses": " ".join(map(str, item.expect)),
                               "max_header_bytes": max_header_bytes,
                               "server_idle_cpu_per_s": idle}
                        if item.needs_header_bytes > max_header_bytes:
                            row.update(status="skipped", note=f"needs --max-header-bytes >= "
                                                              f"{item.needs_header_bytes}")
                            rows.append(row)
                            continue
                        try:
                            sampler = TreeSampler(srv.pid)
                            sampler.start()
                            r = send_hostile(srv.port, item, quick, max_header_bytes=max_header_bytes)
                            cpu = sampler.finish().cpu_s
                            idle_s = idle * r["answer_s"]
                            net = max(0.0, cpu - idle_s)
                            row.update(r, server_cpu_s=cpu, server_cpu_idle_s=idle_s,
                                       cpu_ns_per_byte=net * 1e9 / max(1, r["sent_bytes"]),
                                       answered_as_expected=r["answer_status"] in item.expect,
                                       status="ok", note="" if r["answer_status"] in item.expect else
                                       f"answered {r['answer_status']}, expected {row['expected_statuses']}")
                        except OSError as e:
                            row.update(status="failed", note=f"{type(e).__name__}: {e}"[:500])
                        rows.append(row)
                        write_rows(rows, batch_dir)
                    done = [x for x in rows if x["server"] == stack and x["shape"] == item.name
                            and x["status"] == "ok"]
                    if done:
                        med = pd.Series([x["server_cpu_s"] for x in done]).median()
                        say(f"  {item.name:<13} {done[-1]['answer_status']} in "
                            f"{done[-1]['answer_s']:.2f} s, server CPU {med:.3f} s (median of {len(done)})")
            finally:
                srv.stop()
    finally:
        os.sched_setaffinity(0, own)
    df = to_frame(rows)
    df.attrs.update(batch_id=batch_id, batch_dir=str(batch_dir))
    return df


def summarize_hostile(df: pd.DataFrame) -> pd.DataFrame:
    """One row per stack and input: medians over the runs, the answers seen."""
    ok = df[df["status"] == "ok"]
    out = []
    for (server, shape), g in ok.groupby(["server", "shape"], sort=False):
        out.append({"server": server, "input": shape, "runs": len(g),
                    "answers": " ".join(sorted({str(int(s)) if not pd.isna(s) else "none"
                                                for s in g["answer_status"]})),
                    "as_expected": bool(g["answered_as_expected"].all()),
                    "sent_bytes": int(g["sent_bytes"].median()), "writes": int(g["writes"].median()),
                    "server_cpu_s": float(g["server_cpu_s"].median()),
                    "server_cpu_idle_s": float(g["server_cpu_idle_s"].median()),
                    "cpu_ns_per_byte": float(g["cpu_ns_per_byte"].median()),
                    "answer_s": float(g["answer_s"].median())})
    return pd.DataFrame(out)


def linearity(df: pd.DataFrame) -> pd.DataFrame:
    """Per stack and SIZE_PAIRS pair: CPU per byte of the larger input over the
    smaller's.  About 1 when the cost is linear in the bytes; a cost that grows
    with bytes x reads gives about the size ratio (4 for the 4k / 16k heads)."""
    s = summarize_hostile(df)
    out = []
    if s.empty:
        return pd.DataFrame(out)
    for small, large in SIZE_PAIRS:
        for server, g in s.groupby("server", sort=False):
            a, b = g[g["input"] == small], g[g["input"] == large]
            if len(a) and len(b) and a["cpu_ns_per_byte"].iloc[0] > 0:
                out.append({"server": server, "inputs": f"{small} -> {large}",
                            "size_ratio": b["sent_bytes"].iloc[0] / a["sent_bytes"].iloc[0],
                            "cpu_per_byte_ratio": b["cpu_ns_per_byte"].iloc[0] / a["cpu_ns_per_byte"].iloc[0]})
    return pd.DataFrame(out)


def format_hostile_table(df: pd.DataFrame) -> str:
    s = summarize_hostile(df)
    lines = [f"{'server':<24} {'input':<13} {'answer':>6} {'sent':>9} {'writes':>7} {'CPU s':>7} "
             f"{'idle s':>7} {'ns/byte':>8} {'answer s':>8}"]
    lines.append("-" * len(lines[0]))
    for _, r in s.iterrows():
        lines.append(f"{r['server']:<24} {r['input']:<13} {r['answers']:>6} {r['sent_bytes']:>9} "
                     f"{r['writes']:>7} {r['server_cpu_s']:>7.3f} {r['server_cpu_idle_s']:>7.3f} "
                     f"{r['cpu_ns_per_byte']:>8.1f} {r['answer_s']:>8.2f}"
                     + ("" if r["as_expected"] else "  (not the expected answer)"))
    failed = df[df["status"] != "ok"].drop_duplicates(["server", "shape", "status"])
    for _, r in failed.iterrows():
        lines.append(f"{r['server']:<24} {r['shape']:<13} {r['status']}: {r['note']}")
    lin = linearity(df)
    for _, r in lin.iterrows():
        lines.append(f"{r['server']:<24} {r['inputs']}: {r['size_ratio']:.1f}x the bytes, "
                     f"{r['cpu_per_byte_ratio']:.2f}x the CPU per byte (1 = linear)")
    if len(s):
        lines.append("CPU s: the server's utime + stime from the first byte to the answer (10 ms "
                     "ticks), median of the runs; ns/byte: less the idle CPU, per byte sent")
    return "\n".join(lines)
