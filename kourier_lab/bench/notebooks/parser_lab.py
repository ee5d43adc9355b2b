"""What notebook 01 (the parser lab) measures, as package functions.

    verdicts()            every parser's answer on one corpus of valid and invalid requests
    header_table()        the request table of one parsed request, as name/value rows
    simd_paths()          the C parser under each SIMD path: one C call per batch
                          (kl_parse_batch) against parse_head per request from Python
    bytes_per_cycle()     the batch figures over the nominal clock

The notebook only calls these; the differential tests check the same
agreement on thousands of mutated requests.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable, Dict, List, Optional

import pandas as pd

from ..profile import micro

# One request per behaviour the contract names (accepted forms and each
# class of rejection), readable as a table row.
CORPUS: Dict[str, bytes] = {
    "plaintext": b"GET /hello HTTP/1.1\r\nHost: localhost:3275\r\n\r\n",
    "browser": micro.BROWSER,
    "query + pct": b"GET /a%20b?x=1&y=/?z HTTP/1.1\r\nHost: h\r\n\r\n",
    "absolute-form": b"GET http://example.com:80/x?q HTTP/1.1\r\nHost: example.com\r\n\r\n",
    "CONNECT": b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    "chunked": b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
    "HTTP/1.0 keep-alive": b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "incomplete": b"GET / HTTP/1.1\r\nHost: h\r\n",
    "bare LF": b"GET / HTTP/1.1\nHost: h\r\n\r\n",
    "NUL in value": b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n",
    "bad pct": b"GET /a%zz HTTP/1.1\r\nHost: h\r\n\r\n",
    "space before colon": b"GET / HTTP/1.1\r\nHost : h\r\n\r\n",
    "obs-fold": b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n",
    "no Host": b"GET / HTTP/1.1\r\n\r\n",
    "CL + TE": b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
    "TE gzip, chunked": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    "HTTP/2.0": b"GET / HTTP/2.0\r\nHost: h\r\n\r\n",
    "Expect other": b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nExpect: x\r\n\r\n",
    "line too long": b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: h\r\n\r\n",
}

SIMD_ORDER = ("scalar", "sse42", "avx2")      # narrowest to widest, the order plots use


def verdicts(corpus: Optional[Dict[str, bytes]] = None) -> pd.DataFrame:
    """One row per request: each parser's answer (head length with method and
    target, 0 = need more, -status) and whether all agree."""
    from ... import parsers
    rows = []
    names = parsers.names()
    for case, data in (corpus or CORPUS).items():
        row = {"case": case}
        for name in names:
            p = parsers.create(name)
            n = p.parse_head(data)
            row[name] = n if n <= 0 else f"{n} {p.info[0].decode()} {p.info[1].decode()[:20]}"
        row["agree"] = len({row[n] for n in names}) == 1
        rows.append(row)
    return pd.DataFrame(rows).set_index("case")


def header_table(data: bytes = micro.BROWSER, parser: Optional[str] = None) -> pd.DataFrame:
    """The header spans of one parsed request, decoded, as name/value rows."""
    from ... import parsers
    name = parser or ("c" if "c" in parsers.names() else "python")
    p = parsers.create(name)
    if p.parse_head(data) <= 0:
        raise ValueError("the request does not parse")
    head = p.head()
    return pd.DataFrame([(n.decode("latin-1"), v.decode("latin-1")) for n, v in head.headers],
                        columns=["name", "value"])


def _seconds_per_call(op: Callable[[], object], repeat: int, round_s: float) -> float:
    """Median process-CPU seconds per call over `repeat` rounds of ~round_s
    (process time, so another tenant's load on the CPU does not count)."""
    n = 1
    while True:
        t = time.process_time()
        for _ in range(n):
            op()
        dt = time.process_time() - t
        if dt > round_s / 4:
            break
        n *= 4
    n = max(1, int(n * round_s / dt))
    runs = []
    for _ in range(repeat):
        t = time.process_time()
        for _ in range(n):
            op()
        runs.append((time.process_time() - t) / n)
    return statistics.median(runs)


def simd_paths(repeat: int = 7, round_s: float = 0.2) -> Optional[pd.DataFrame]:
    """The C parser on 256 browser requests and 256 short ones under each SIMD
    path this CPU has, called two ways: kl_parse_batch (one C call for the
    whole buffer: the parser's own speed) and parse_head once per request
    from Python (each call pays the cffi crossing).  None when the C parser
    is not built.  Rows: simd, case, call, MB/s, ns/request; simd in
    SIMD_ORDER."""
    from ... import parsers
    if "c" not in parsers.names():
        return None
    from ..._native_parser import ffi, lib
    from ...parsers import c as cparser
    corpora = {"browser x256": micro.BROWSER * 256, "pipelined256": micro.SHORT * 256}
    rows = []
    before = cparser.simd()
    try:
        for path in [p for p in SIMD_ORDER if p in cparser.simd_supported()]:
            cparser.set_simd(path)
            for case, buf in corpora.items():
                p = parsers.create("c")
                consumed, last = ffi.new("size_t *"), ffi.new("int *")
                cbuf = ffi.from_buffer("uint8_t[]", buf)

                def batch(p=p, cbuf=cbuf, n=len(buf), consumed=consumed, last=last):
                    lib.kl_parse_batch(cbuf, n, p._lim, p._req, 1 << 30, consumed, last)

                def one_by_one(ph=p.parse_head, buf=buf, end=len(buf)):
                    pos = 0
                    while pos < end:
                        pos += ph(buf, pos, end)
                batch()
                if consumed[0] != len(buf) or last[0] != 0:
                    raise RuntimeError(f"kl_parse_batch stopped at {consumed[0]} of {len(buf)} "
                                       f"bytes ({path}, {case})")
                for how, op in (("kl_parse_batch (1 call)", batch),
                                ("parse_head per request", one_by_one)):
                    t = _seconds_per_call(op, repeat, round_s)
                    rows.append({"simd": path, "case": case, "call": how,
                                 "MB/s": len(buf) / t / 1e6, "ns/request": t / 256 * 1e9})
    finally:
        cparser.set_simd(before)
    out = pd.DataFrame(rows)
    out["simd"] = pd.Categorical(out["simd"], [p for p in SIMD_ORDER if p in set(out["simd"])],
                                 ordered=True)
    return out


def nominal_mhz() -> Optional[float]:
    """The highest 'cpu MHz' in /proc/cpuinfo (approximate: turbo, shared machine)."""
    try:
        with open("/proc/cpuinfo") as f:
            return max(float(line.split(":")[1]) for line in f if line.startswith("cpu MHz"))
    except (OSError, ValueError):
        return None


def bytes_per_cycle(simd: pd.DataFrame, mhz: Optional[float] = None) -> Optional[pd.DataFrame]:
    """The batch rows of simd_paths() as bytes parsed per nominal CPU cycle."""
    mhz = mhz or nominal_mhz()
    if simd is None or not mhz:
        return None
    b = simd[simd["call"].str.startswith("kl_parse_batch")].copy()
    b["bytes/cycle"] = b["MB/s"] / mhz
    return b.pivot_table(index="case", columns="simd", values="bytes/cycle", observed=True)
