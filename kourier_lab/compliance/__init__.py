"""HTTP syntax-compliance suites, runnable against any HOST:PORT.

    from kourier_lab import compliance
    result = compliance.run("127.0.0.1:8080", suite="published", quick=True)
    result.score          # percent of passed tests
    result.rows           # one dict per category / case, for the results table
    print(result.report())

* ``published`` (published_suite.py): the posts' test - invalid bytes in the path,
  query, field names and values, invalid pct-encodings - each request on its
  own connection; a test fails when the answer starts with ``HTTP/1.1 200 OK``.
  A server that neither answers nor closes within the timeout is counted apart
  (and not as passed: the published tool would wait forever on it).
* ``strict`` (strict.py): named cases with an RFC 9112/9110 expectation each:
  smuggling vectors, field syntax, Host rules, versions, request lines, limits,
  valid requests that must be accepted, pipelining, keep-alive, liveness.

Before running, both suites check that the server answers a valid
``GET /hello`` with 200: a server that rejects everything would otherwise
score 100 %.
"""
import asyncio
import concurrent.futures
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from . import client, published_suite, strict
from .client import parse_address

SUITES = ("published", "strict")

# Published HTTP compliance scores (% of passed tests) from the Kourier posts.
PUBLISHED_SCORES = {
    "Kourier": 100.0,
    "Rust hyper": 89.7,
    "Go net/http": 63.1,
    "QHttpServer": 1.2,
    "Lithium": 0.0,
}


class ServerNotServing(RuntimeError):
    """The target does not answer a valid GET with 200, so no score would mean anything."""


@dataclass
class SuiteResult:
    suite: str
    target: str
    quick: bool
    score: float
    passed: int
    total: int
    rows: List[Dict] = field(default_factory=list)       # per category / case
    failures: List[Dict] = field(default_factory=list)   # per failed request / case
    timed_out: int = 0
    unreachable: int = 0
    seconds: float = 0.0

    def report(self) -> str:
        if self.suite == "published":
            return _published_report(self)
        return _strict_report(self)

    def table(self):
        import pandas as pd
        return pd.DataFrame(self.rows)

    def summary_row(self, **labels) -> Dict:
        """One row for a cross-server table: labels (server, peer, ...) + the score."""
        return dict(labels, suite=self.suite, address=self.target, quick=self.quick,
                    score=self.score, passed=self.passed, total=self.total,
                    timed_out=self.timed_out, unreachable=self.unreachable,
                    seconds=round(self.seconds, 2))


def check_serving(host: str, port: int, timeout: float = 5.0) -> None:
    reply = client.probe(host, port, timeout=timeout)
    if reply.status != 200:
        seen = reply.head[:60] if reply.head else reply.outcome + (f" ({reply.error})" if reply.error else "")
        raise ServerNotServing(f"{host}:{port} does not answer 'GET /hello' with 200 (got {seen!r})")


def run_published(address: str, quick: bool = False, concurrency: int = 64, timeout: float = 10.0,
                  sample: int = published_suite.QUICK_SAMPLE, categories: Optional[List[str]] = None,
                  progress: Optional[Callable[[int], None]] = None) -> SuiteResult:
    host, port = parse_address(address)
    check_serving(host, port)
    hostport = f"{host}:{port}".encode()
    keys, its, payloads = [], [], []
    for key, item, data in published_suite.requests(hostport, quick, categories, sample):
        keys.append(key)
        its.append(item)
        payloads.append(data)
    t0 = time.perf_counter()
    replies = client.exchange_many(host, port, payloads, concurrency=concurrency, timeout=timeout,
                                   progress=progress)
    seconds = time.perf_counter() - t0
    counts = {c.key: dict(detected=0, undetected=0, timed_out=0, unreachable=0, requests=0)
              for c in published_suite.CATEGORIES}
    failures = []
    for key, item, reply in zip(keys, its, replies):
        c = counts[key]
        c["requests"] += 1
        if reply.outcome == client.TIMEOUT:
            c["timed_out"] += 1
        elif reply.outcome == client.UNREACHABLE:
            c["unreachable"] += 1
        elif reply.head.startswith(b"HTTP/1.1 200 OK"):
            c["undetected"] += 1
            failures.append(dict(category=key, item=published_suite.describe_item(item), answer="200 OK"))
        else:
            c["detected"] += 1
    rows = []
    for cat in published_suite.CATEGORIES:
        c = counts[cat.key]
        if categories is not None and cat.key not in categories:
            continue
        rows.append(dict(suite="published", address=address, category=cat.key, description=cat.description,
                         published_size=cat.size, quick=quick, **c,
                         score=round(100.0 * c["detected"] / c["requests"], 3) if c["requests"] else None))
    total = sum(r["requests"] for r in rows)
    passed = sum(r["detected"] for r in rows)
    result = SuiteResult("published", address, quick, 100.0 * passed / total if total else 0.0, passed, total,
                         rows, failures, timed_out=sum(r["timed_out"] for r in rows),
                         unreachable=sum(r["unreachable"] for r in rows), seconds=seconds)
    if result.unreachable:
        raise ServerNotServing(f"{address}: {result.unreachable} connections failed; the server went away "
                               "during the run, so the score would mean nothing")
    return result


def run_strict(address: str, concurrency: int = 8, timeout: float = 5.0,
               cases: Optional[List[str]] = None) -> SuiteResult:
    host, port = parse_address(address)
    check_serving(host, port)
    t0 = time.perf_counter()
    results = _run_coroutine(lambda: strict.run_all(host, port, concurrency, timeout, cases))
    seconds = time.perf_counter() - t0
    rows, failures = [], []
    for case, passed, observed in results:
        row = dict(suite="strict", address=address, case=case.name, group=case.group, expect=case.expect,
                   passed=passed, observed=observed, why=case.why)
        rows.append(row)
        if not passed:
            failures.append(dict(row, request=case.data[:200]))
    passed_n = sum(r["passed"] for r in rows)
    return SuiteResult("strict", address, False, 100.0 * passed_n / len(rows), passed_n, len(rows), rows,
                       failures, seconds=seconds)


def _run_coroutine(make):
    """asyncio.run(make()), also from inside a running loop (Jupyter): then on a helper thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


def run(address: str, suite: str = "published", quick: bool = False, **kw) -> SuiteResult:
    """Run one suite against HOST:PORT (quick only affects the published suite)."""
    if suite == "published":
        return run_published(address, quick=quick, **kw)
    if suite == "strict":
        return run_strict(address, **kw)
    raise ValueError(f"unknown suite {suite!r}; choose one of: {', '.join(SUITES)}")


def _published_report(r: SuiteResult) -> str:
    lines = [f"HTTP compliance score (% of passed tests): {r.score:.1f}%"]
    for row in r.rows:
        lines.append(f"{row['detected']:>10} {row['description']} detected.")
        lines.append(f"{row['undetected']:>10} {row['description']} undetected.")
        if row["timed_out"]:
            lines.append(f"{row['timed_out']:>10} {row['description']} neither answered nor closed "
                         f"(timeout, counted as not passed).")
    if r.quick:
        lines.append(f"(quick: {published_suite.QUICK_SAMPLE} sampled requests per pct-encoding category "
                     f"instead of 61692; {r.total} requests in all)")
    lines.append(f"({r.total} requests in {r.seconds:.1f} s)")
    return "\n".join(lines)


def _strict_report(r: SuiteResult) -> str:
    lines = [f"HTTP strict compliance score (% of passed cases): {r.score:.1f}%  ({r.passed}/{r.total})"]
    groups: Dict[str, List[int]] = {}
    for row in r.rows:
        g = groups.setdefault(row["group"], [0, 0])
        g[0] += row["passed"]
        g[1] += 1
    for g, (p, t) in groups.items():
        lines.append(f"{p:>6}/{t:<4} {g}")
    for f in r.failures:
        lines.append(f"FAIL {f['case']}: expected {f['expect']}, got {f['observed']}")
        lines.append(f"     {f['why']}")
        lines.append(f"     request: {f['request'][:120]!r}")
    return "\n".join(lines)
