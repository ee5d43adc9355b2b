"""Running wrk and reading everything it prints.

wrk's text output is the only interface it has, so the parser here is strict
about the lines every run prints (requests, duration, Requests/sec, the thread
stats) and reads the optional ones (latency distribution, socket errors,
non-2xx/3xx) when present.  One trap, visible in the Kourier post itself: when
wrk's latency histogram overflows (very deep pipelines), it prints a percentile
as ``0.00us``.  That is a missing value, not a zero latency, and is recorded as
NaN with ``latency_overflow`` set.
"""
from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

PIPELINE_LUA = Path(__file__).with_name("lua") / "pipeline.lua"


def browser_headers() -> List[tuple]:
    """The browser shape's headers, read from pipeline.lua (the script wrk runs),
    so every tool and the bytes measurement send the same request."""
    text = PIPELINE_LUA.read_text()
    start = text.index('if args[2] == "browser"')
    block = text[start:text.index("}", start)]
    headers = re.findall(r'\["([^"]+)"\]\s*=\s*"([^"]*)"', block)
    if not headers:
        raise WrkError(f"no browser headers found in {PIPELINE_LUA.name}")
    return headers

PERCENTILES = (50, 75, 90, 99)

_TIME_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_METRIC = {"": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}
_BINARY = {"B": 1.0, "KB": 1024.0, "MB": 1024.0 ** 2, "GB": 1024.0 ** 3,
           "TB": 1024.0 ** 4, "PB": 1024.0 ** 5}


class WrkError(RuntimeError):
    """wrk failed, or printed something that is not a wrk report."""


def parse_time_ms(text: str) -> float:
    """wrk's time format ('163.78us', '4.41ms', '1.15s', '1.00m') in milliseconds."""
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text)
    if not m:
        raise WrkError(f"not a wrk time value: {text!r}")
    return float(m.group(1)) * _TIME_MS[m.group(2)]


def parse_metric(text: str) -> float:
    """wrk's metric format ('2.04M', '104.69k', '159.84') as a number."""
    m = re.fullmatch(r"([0-9.]+)([kMGTP]?)", text)
    if not m:
        raise WrkError(f"not a wrk metric value: {text!r}")
    return float(m.group(1)) * _METRIC[m.group(2)]


def parse_bytes(text: str) -> float:
    """wrk's binary size format ('17.89GB', '430.53MB', '0.00B') in bytes."""
    m = re.fullmatch(r"([0-9.]+)([KMGTP]?B)", text)
    if not m:
        raise WrkError(f"not a wrk size value: {text!r}")
    return float(m.group(1)) * _BINARY[m.group(2)]


def _percent(text: str) -> float:
    m = re.fullmatch(r"(-?nan|[0-9.]+)%", text)
    if not m:
        raise WrkError(f"not a wrk percentage: {text!r}")
    return math.nan if "nan" in m.group(1) else float(m.group(1))


_RE_RUNNING = re.compile(r"^Running (\S+) test @ (\S+)")
_RE_THREADS = re.compile(r"^\s*(\d+) threads and (\d+) connections")
_RE_STAT = re.compile(r"^\s*(Latency|Req/Sec)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s*$")
_RE_PCT = re.compile(r"^\s*(\d+(?:\.\d+)?)%\s+(\S+)\s*$")
_RE_TOTAL = re.compile(r"^\s*(\d+) requests in (\S+), (\S+) read")
_RE_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_RE_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_RE_RPS = re.compile(r"^Requests/sec:\s+(\S+)")
_RE_TPS = re.compile(r"^Transfer/sec:\s+(\S+)")


def parse_wrk_output(text: str) -> Dict[str, object]:
    """Every figure of one wrk report, as a flat dict (times in ms, sizes in bytes).

    Raises WrkError when the text is not a complete wrk report (for instance
    wrk's "unable to connect" message).
    """
    if not text.strip():
        raise WrkError("wrk printed nothing")
    out: Dict[str, object] = {
        "errors_connect": 0, "errors_read": 0, "errors_write": 0, "errors_timeout": 0,
        "non_2xx_3xx": 0, "latency_overflow": False,
    }
    seen = set()
    for line in text.splitlines():
        if m := _RE_RUNNING.match(line):
            out["wrk_url"] = m.group(2)
        elif m := _RE_THREADS.match(line):
            out["wrk_threads_reported"] = int(m.group(1))
            out["connections_reported"] = int(m.group(2))
        elif m := _RE_STAT.match(line):
            kind, avg, stdev, mx, pct = m.groups()
            if kind == "Latency":
                out["latency_avg_ms"] = parse_time_ms(avg)
                out["latency_stdev_ms"] = parse_time_ms(stdev)
                out["latency_max_ms"] = parse_time_ms(mx)
                out["latency_within_stdev_pct"] = _percent(pct)
            else:
                out["thread_req_per_s_avg"] = parse_metric(avg)
                out["thread_req_per_s_stdev"] = parse_metric(stdev)
                out["thread_req_per_s_max"] = parse_metric(mx)
                out["thread_req_per_s_within_stdev_pct"] = _percent(pct)
            seen.add(kind)
        elif m := _RE_PCT.match(line):
            pct = float(m.group(1))
            if pct.is_integer() and int(pct) in PERCENTILES:
                ms = parse_time_ms(m.group(2))
                key = f"latency_p{int(pct)}_ms"
                if ms == 0.0:      # histogram overflow: unknown, not zero
                    out[key] = math.nan
                    out["latency_overflow"] = True
                else:
                    out[key] = ms
                seen.add("distribution")
        elif m := _RE_TOTAL.match(line):
            out["requests"] = int(m.group(1))
            out["wrk_duration_s"] = parse_time_ms(m.group(2)) / 1e3
            out["bytes_read"] = parse_bytes(m.group(3))
            seen.add("total")
        elif m := _RE_SOCKET.search(line):
            (out["errors_connect"], out["errors_read"],
             out["errors_write"], out["errors_timeout"]) = map(int, m.groups())
        elif m := _RE_NON2XX.search(line):
            out["non_2xx_3xx"] = int(m.group(1))
        elif m := _RE_RPS.match(line):
            out["req_per_s"] = float(m.group(1))
            seen.add("rps")
        elif m := _RE_TPS.match(line):
            out["transfer_per_s_bytes"] = parse_bytes(m.group(1))
            seen.add("tps")
    missing = [name for name, key in (("'N requests in T, B read'", "total"),
                                      ("'Requests/sec:'", "rps"), ("'Transfer/sec:'", "tps"),
                                      ("the Latency thread stats", "Latency"))
               if key not in seen]
    if missing:
        first = text.strip().splitlines()[0][:200]
        raise WrkError(f"not a complete wrk report (missing {', '.join(missing)}); "
                       f"wrk said: {first}")
    for p in PERCENTILES:
        out.setdefault(f"latency_p{p}_ms", math.nan)
    if out["requests"] == 0:
        # No response completed: wrk prints zeros for every latency figure.
        for key in ("latency_avg_ms", "latency_stdev_ms", "latency_max_ms",
                    *(f"latency_p{p}_ms" for p in PERCENTILES)):
            out[key] = math.nan
        out["latency_overflow"] = False
    out["errors_socket"] = sum(int(out[k]) for k in ("errors_connect", "errors_read",
                                                       "errors_write", "errors_timeout"))
    return out


# ---------------------------------------------------------------------------
# Finding and running wrk


def ensure_wrk(install: bool = True, echo=print) -> str:
    """Path of wrk; installs Debian's package when missing and we may (root + apt)."""
    path = shutil.which("wrk")
    if path:
        return path
    apt = shutil.which("apt-get")
    if install and apt and os.geteuid() == 0:
        echo("wrk is missing: installing the distribution's package (apt-get install -y wrk)")
        r = subprocess.run([apt, "install", "-y", "wrk"], capture_output=True, text=True)
        path = shutil.which("wrk")
        if path:
            return path
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
        raise WrkError(f"wrk is missing and 'apt-get install -y wrk' failed: {tail[0]}")
    raise WrkError("wrk is not installed; install the distribution's package "
                   "(Debian/Ubuntu: sudo apt-get install wrk; Fedora: sudo dnf install wrk)")


@dataclass
class WrkLoad:
    """One wrk invocation's load parameters."""
    url: str
    threads: int
    connections: int
    duration_s: int
    pipeline: int = 1
    browser: bool = False
    timeout_s: int = 2
    corpus: Optional[str] = None        # a corpus file (bench/experiment/corpora.py): its requests, not the URL's

    def command(self, wrk: str = "wrk") -> List[str]:
        if self.duration_s < 1 or int(self.duration_s) != self.duration_s:
            raise ValueError("wrk takes whole seconds: duration must be an integer >= 1")
        if self.timeout_s < 1 or int(self.timeout_s) != self.timeout_s:
            raise ValueError("wrk takes whole seconds: timeout must be an integer >= 1")
        if self.connections < self.threads:
            raise ValueError("wrk needs at least one connection per thread")
        cmd = [wrk, "--latency", "-t", str(self.threads), "-c", str(self.connections),
               "-d", f"{int(self.duration_s)}s", "--timeout", f"{int(self.timeout_s)}s"]
        # The pipeline script is used whenever requests are not wrk's default
        # single GET, so one code path writes every shape's requests.
        if self.pipeline > 1 or self.browser or self.corpus:
            cmd += ["-s", str(PIPELINE_LUA), self.url, "--", str(self.pipeline)]
            if self.corpus:
                cmd += ["corpus", str(self.corpus)]
            elif self.browser:
                cmd.append("browser")
        else:
            cmd.append(self.url)
        return cmd


def shell_line(cmd: Sequence[str]) -> str:
    """The command as one shell line, with our Lua script's path shortened (and a
    corpus file's made relative to the checkout)."""
    import shlex
    from ...paths import repo_root
    root = str(repo_root()) + os.sep
    parts = []
    for c in cmd:
        if c == str(PIPELINE_LUA):
            c = "pipeline.lua"
        elif c.startswith(root) and c.endswith(".corpus"):
            c = c[len(root):]
        elif os.path.isabs(c) and os.path.basename(c) == "wrk":
            c = "wrk"
        parts.append(shlex.quote(c))
    return " ".join(parts)
