"""A strict RFC 9112 / RFC 9110 suite: named raw requests and what a server must do.

The cases live in the spec corpus, tests/spec/strict/*.txt (one file per group:
smuggling, fields, host, request-line, limits, valid; the format is in
kourier_lab/spec.py), each with its RFC clause and one of the kinds below;
this module sends them to any HOST:PORT and judges the answers.

Expectations follow the RFCs' words:

* MUST and SHOULD are what a strictly compliant server does, so they are
  expected (a SHOULD-violation is reported as a failure, with the clause);
* where the RFC offers a choice (MAY recognise a bare LF, MUST reject *or*
  replace an obs-fold, MAY reject a duplicate identical Content-Length, ...)
  every allowed outcome passes (`EITHER`), and such a case can still fail by
  hanging or by answering more requests than were sent.

Kinds of expectation (judged from the responses read and whether the server
closed the connection):

* ACCEPT        every request answered 2xx, in order;
* ACCEPT_CLOSE  as ACCEPT, then the server closes (HTTP/1.0, Connection: close);
* PROCESS       the message was parsed: the first answer is not a syntax
                rejection (400 411 413 414 431 501 505) and the requests after it
                are answered 2xx - used for POST/OPTIONS, whose status is the
                application's business;
* REJECT        no 2xx at all; a status >= 400, or a close without an answer;
* REJECT_CLOSE  REJECT and the connection closed (framing errors: RFC 9112 6.3
                "MUST respond with 400 and then close");
* ONE_THEN_CLOSE at most one answer (a rejection, or the request processed by
                Transfer-Encoding alone) and then a close - CL+TE and TE in
                HTTP/1.0 (RFC 9112 6.1);
* EITHER        REJECT or ACCEPT/PROCESS, both allowed;
* KEEPALIVE_10  HTTP/1.0 with "Connection: keep-alive": answered 2xx; if the
                answer keeps the connection alive a second request on it is
                answered 2xx, otherwise the server closes.
"""
import asyncio
import socket
import struct
from dataclasses import dataclass
from typing import List, Optional, Tuple

from .. import spec
from ..http import responses as resp_mod

ACCEPT, ACCEPT_CLOSE, PROCESS = "accept", "accept+close", "process"
REJECT, REJECT_CLOSE, ONE_THEN_CLOSE = "reject", "reject+close", "one-then-close"
EITHER, KEEPALIVE_10 = "either", "keepalive-1.0"
# (spec.STRICT_EXPECTS names the same kinds, for the fixtures' expect: lines)
KINDS = (ACCEPT, ACCEPT_CLOSE, PROCESS, REJECT, REJECT_CLOSE, ONE_THEN_CLOSE, EITHER, KEEPALIVE_10)
SYNTAX_REJECTIONS = frozenset({400, 411, 413, 414, 431, 501, 505})
HUGE = 4 << 20       # 4 MiB, the size of the limits cases: beyond any bound a server should buffer


@dataclass
class Case:
    name: str
    group: str
    expect: str
    data: bytes
    why: str                    # the RFC clause
    requests: int = 1           # requests in `data` a server accepting it must answer
    followup: Optional[bytes] = None   # KEEPALIVE_10: the second request


@dataclass
class Outcome:
    statuses: List[int]
    closed: bool                # the server closed (or reset) the connection
    partial: bool               # bytes of an unfinished response remained
    error: str = ""

    def describe(self) -> str:
        if self.statuses:
            s = ", ".join(str(x) if x else "non-HTTP bytes" for x in self.statuses)
        else:
            s = "no answer"
        if self.partial:
            s += " + incomplete response"
        return s + (", then closed" if self.closed else ", connection left open")


# The groups in the order the report shows them (a group file not named here
# comes after these, in file order).
GROUPS = ("smuggling", "fields", "host", "request-line", "limits", "valid")


def cases(host: bytes) -> List[Case]:
    """Every strict case (tests/spec/strict/*.txt, spec.load_strict_cases) for a
    server whose Host value is `host` (b'IP:PORT'), group by group in GROUPS order."""
    loaded = spec.load_strict_cases()
    order = {g: i for i, g in enumerate(GROUPS)}
    loaded.sort(key=lambda c: order.get(c.group, len(GROUPS)))     # stable: file order within
    return [Case(c.name, c.group, c.expect, c.data.replace(b"{H}", host), c.clause, c.requests,
                 c.followup.replace(b"{H}", host) if c.followup is not None else None)
            for c in loaded]


def liveness_case(host: bytes) -> Case:
    """The probe run after every other case, on its own (not a fixture: it is no
    case of the corpus but the suite's last step - never concurrent with the
    others, never selected by name - and it must stay the plainest valid GET)."""
    return Case("liveness-after-all", "liveness", ACCEPT,
                b"GET /hello HTTP/1.1\r\nHost: " + host + b"\r\n\r\n",
                "the server still serves after every case above")


# --- running ---------------------------------------------------------------------------------

async def _read_until(loop, sock, buf: bytearray, deadline: float, want: int, grace: float,
                      wait_close: bool) -> bool:
    """Read into buf until the server closes (-> True), or `want` responses are in
    and then `grace` seconds pass quietly (or, with wait_close, the deadline passes)."""
    while True:
        rs, partial = resp_mod.split(bytes(buf), closed=False)
        now = loop.time()
        if now >= deadline:
            return False
        have_all = len(rs) >= want and not partial
        limit = deadline if (wait_close or not have_all) else min(deadline, now + grace)
        try:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), max(0.0, limit - now))
        except asyncio.TimeoutError:
            if have_all and not wait_close:
                return False
            continue
        except OSError:          # reset: whatever was queued before it has been read
            return True
        if not chunk:
            return True
        buf += chunk


async def _send(loop, sock, data: bytes) -> str:
    """Send everything; a server that stops reading (closes, resets) is no error here."""
    try:
        await loop.sock_sendall(sock, data)
        return ""
    except OSError as e:
        return f"send stopped: {e.__class__.__name__}"


async def run_case(case: Case, host: str, port: int, timeout: float = 5.0, grace: float = 0.3):
    """Send one case on a new connection; (Outcome, parsed responses).

    Raw non-blocking sockets rather than streams: when a server answers early
    (e.g. 414 after the first kilobytes of a 4 MiB line) and closes, our send
    fails, yet its answer is still in the receive queue and must be read; the
    sender runs beside the reader for that reason.
    """
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    buf = bytearray()
    closed = False
    sender = None
    try:
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (host, port)), timeout)
        except (OSError, asyncio.TimeoutError) as e:
            return Outcome([], False, False, error=f"connect failed: {e!r}"), []
        sender = asyncio.ensure_future(_send(loop, sock, case.data))
        deadline = loop.time() + timeout
        wait_close = case.expect in (REJECT_CLOSE, ONE_THEN_CLOSE, ACCEPT_CLOSE)
        want = 1 if case.expect in (REJECT, REJECT_CLOSE, ONE_THEN_CLOSE, KEEPALIVE_10) else case.requests
        closed = await _read_until(loop, sock, buf, deadline, want, grace, wait_close)
        if case.expect == KEEPALIVE_10 and not closed:
            rs, _ = resp_mod.split(bytes(buf), closed=False)
            if rs and b"keep-alive" in rs[0].connection_tokens():
                await _send(loop, sock, case.followup)
                closed = await _read_until(loop, sock, buf, loop.time() + timeout, 2, grace, False)
            elif rs:
                closed = await _read_until(loop, sock, buf, loop.time() + timeout, 99, grace, True)
        error = ""
        if sender.done():
            error = sender.result()
    finally:
        if sender is not None and not sender.done():
            sender.cancel()
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        sock.close()
    rs, partial = resp_mod.split(bytes(buf), closed=closed)
    return Outcome([r.status for r in rs], closed, partial, error), rs


def judge(case: Case, outcome: Outcome, rs) -> Tuple[bool, str]:
    """(passed, reason) for one case's outcome."""
    st = outcome.statuses
    ok2 = [200 <= s < 300 for s in st]

    def rejected() -> bool:
        if any(ok2):
            return False
        if st:
            return st[0] >= 400 or st[0] == 301
        return outcome.closed

    def accepted(n: int, process: bool) -> bool:
        if len(st) != n or outcome.partial:
            return False
        if not process:
            return all(ok2)
        # POST/OPTIONS: any application status but a syntax rejection; the
        # GET sent after them must be answered 2xx.
        parsed = all(s != 0 and s not in SYNTAX_REJECTIONS for s in st)
        return parsed and (n == 1 or ok2[-1])

    k = case.expect
    if k == ACCEPT:
        passed = accepted(case.requests, False)
    elif k == ACCEPT_CLOSE:
        passed = accepted(case.requests, False) and outcome.closed
    elif k == PROCESS:
        passed = accepted(case.requests, True)
    elif k == REJECT:
        passed = rejected()
    elif k == REJECT_CLOSE:
        passed = rejected() and outcome.closed
    elif k == ONE_THEN_CLOSE:
        passed = len(st) <= 1 and outcome.closed and not outcome.partial and (not st or st[0] != 0)
    elif k == EITHER:
        passed = rejected() or accepted(case.requests, True)
    elif k == KEEPALIVE_10:
        if not st or not ok2[0]:
            passed = False
        elif b"keep-alive" in rs[0].connection_tokens():
            passed = len(st) == 2 and ok2[1]
        else:
            passed = len(st) == 1 and outcome.closed
    else:  # pragma: no cover - a typo in a case table
        raise ValueError(f"unknown expectation {k!r}")
    return passed, outcome.describe() + (f" ({outcome.error})" if outcome.error else "")


async def run_all(host: str, port: int, concurrency: int = 8, timeout: float = 5.0,
                  selected: Optional[List[str]] = None):
    """Run every case (at most `concurrency` at a time), then the liveness probe.

    Returns a list of (case, passed, observed)."""
    hostport = f"{host}:{port}".encode()
    todo = cases(hostport)
    if selected:
        unknown = set(selected) - {c.name for c in todo}
        if unknown:
            raise ValueError(f"unknown strict case(s): {', '.join(sorted(unknown))}")
        todo = [c for c in todo if c.name in selected]
    sem = asyncio.Semaphore(concurrency)

    async def one(case):
        async with sem:
            outcome, rs = await run_case(case, host, port, timeout)
            passed, observed = judge(case, outcome, rs)
            return case, passed, observed

    results = list(await asyncio.gather(*(one(c) for c in todo)))
    live = liveness_case(hostport)
    outcome, rs = await run_case(live, host, port, timeout)
    results.append((live, *judge(live, outcome, rs)))
    return results
