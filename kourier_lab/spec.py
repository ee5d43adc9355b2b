"""The spec corpus: language-neutral HTTP/1.1 cases every parser and every loop must pass.

The cases live as readable text files (llhttp-style) in a `spec` folder; by
default the one shipped with the tests (``tests/spec/`` of the checkout), or
the folder named by ``KOURIER_LAB_SPEC``.  Three kinds:

* ``requests/*.txt``: a request in escaped bytes and what a strict parser
  must answer: the request table (and the decoded body), or a status.
* ``connections/*.txt``: a connection script of writes, pauses and
  half-closes, and the responses, closes and timeouts a server must give.
* ``strict/*.txt``: the strict compliance suite's raw requests
  (kourier_lab/compliance/strict.py sends them to any HOST:PORT), one file
  per group, each case with the kind of answer a server must give.

File format (all kinds).  ``#`` lines outside a case are comments; each case
starts with ``## <name>`` and is a list of ``key: value`` lines; every case
has a ``clause:`` line naming the RFC 9112 / 9110 clause it checks.  Byte
values are written with Python bytes escapes (``\\r\\n``, ``\\x00``, ``\\t``,
``\\\\``); one value may span several ``request:`` / ``send:`` lines, which are
concatenated, and ``repeat: N <escaped>`` appends N copies.

Request cases::

    ## ows trimmed
    clause: RFC 9112 5.1 (OWS around field values)
    limits: max_headers=4            (optional; kourier_lab.http.limits.Limits fields)
    request: GET / HTTP/1.1\\r\\nHost:\\t example.com \\t\\r\\n\\r\\n
    expect: ok                       (or a status: 400, 413, 414, 431, 501, 505, 417)
    host: example.com                (optional fields of the table, when ok)
    header: Host: example.com        (repeatable: the whole field list, in order)

The request bytes are one whole message (head and body) for an ``ok`` case:
the head must be all of it for a body-less request, and a chunked body must
end exactly at the end (``body:`` is the decoded data).  Table fields:
method, target, path, query (``(none)`` for no '?'), version_minor,
target_form (origin / absolute / authority / asterisk), host (``(none)``),
keep_alive / expect_continue (yes / no), body_kind (none / length /
chunked), content_length, head_len, header, body.

Connection scripts (against a server started with ``CONNECTION_SERVER_ARGS``
and the demo app, ``kourier_lab.server.demo:app``)::

    ## the request timer is not restarted by a trickle
    clause: RFC 9112 9.5 (a server may close an incomplete request)
    send: GET / HTTP/1.1\\r\\n
    pause: 0.3                       (seconds)
    trickle: 1 GET / HTTP/1.1\\r\\n   (the bytes in 1-byte writes, TRICKLE_GAP apart,
                                      so the server reads them in many pieces)
    half-close                       (shutdown(SHUT_WR): the client sends no more)
    expect: 200 200                  (the next responses' status codes, in order)
    expect-body: Hello World!        (the last response's body, escaped)
    expect-close                     (the server closes; nothing more arrives)
    expect-open                      (nothing arrives and the connection stays open
                                      for 0.2 s)
    within: 3                        (the expectations after it must be met within
                                      3 s of the script's start; default 10)

Strict cases (the group is the file's stem; names are unique over the folder,
since ``kourier-lab compliance --case NAME`` selects by them)::

    ## te-and-cl
    clause: RFC 9112 6.1: MAY reject CL+TE or process by TE alone; MUST close after responding
    expect: one-then-close           (accept, accept+close, process, reject, reject+close,
                                      one-then-close, either, keepalive-1.0: see
                                      compliance/strict.py for what each one passes)
    requests: 1                      (optional: requests in it an accepting server answers)
    request: POST /hello HTTP/1.1\\r\\nHost: {H}\\r\\n   ({H}: the server's host:port, put in
                                      by compliance.strict.cases at run time)
    followup: GET /again HTTP/1.0\\r\\n\\r\\n   (keepalive-1.0 only, and required there: the
                                      second request on a kept-alive connection)

Python API (what ``kourier-lab check`` and the tests use)::

    load_request_cases(folder=None) -> [RequestCase]
    load_connection_scripts(folder=None) -> [ConnectionScript]
    load_strict_cases(folder=None) -> [StrictCase]
    check_parser(make_parser, splits=("whole", "bytewise", "random"), seed=0,
                 cases=None) -> [CaseResult]
    run_connection_script(host, port, script) -> ScriptResult

``make_parser(limits)`` returns a parser of the contract in
kourier_lab/parsers/__init__.py.  Splits: "whole" feeds the request at once
(and again with a pipelined request after it, which must not change the
answer); "bytewise" feeds every prefix, each of which must answer "need
more" or the whole input's error; "random" feeds it as a socket would, in
random pieces, parsing again on the longer span after each piece.
"""
import codecs
import os
import random
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

from .http.limits import DEFAULT_LIMITS, Limits
from .parsers.scan import scan_head
from .server.process import ResponseReader
from .parsers import (BODY_CHUNKED, BODY_LENGTH, BODY_NONE, FORM_ABSOLUTE, FORM_ASTERISK,
                      FORM_AUTHORITY, FORM_ORIGIN)

# The server configuration the connection scripts are written for.
CONNECTION_SERVER_ARGS = ("--app", "kourier_lab.server.demo:app", "--request-timeout", "1",
                          "--idle-timeout", "3", "--max-request-line", "1024",
                          "--max-header-bytes", "4096", "--max-body", "65536",
                          "--graceful-timeout", "3")

SPLITS = ("whole", "bytewise", "random")
# bytewise feeds every prefix up to this size, then about 64 more spread over
# the rest (the cost is quadratic in the request's size; the big hostile
# cases are many KiB)
BYTEWISE_FULL = 1024
# a script's writes go out in pieces of this size
SEND_PIECE = 65536
# seconds between the writes of a trickle: long enough for a server on this
# machine to read each piece on its own, most of the time
TRICKLE_GAP = 0.0003

_FORMS = {"origin": FORM_ORIGIN, "absolute": FORM_ABSOLUTE, "authority": FORM_AUTHORITY,
          "asterisk": FORM_ASTERISK}
_BODY_KINDS = {"none": BODY_NONE, "length": BODY_LENGTH, "chunked": BODY_CHUNKED}
_STATUSES = (400, 413, 414, 417, 431, 501, 505)
# the strict suite's kinds of expectation (compliance/strict.py ACCEPT ... KEEPALIVE_10)
STRICT_EXPECTS = ("accept", "accept+close", "process", "reject", "reject+close", "one-then-close",
                  "either", "keepalive-1.0")


class SpecError(ValueError):
    """A fixture file that does not follow the format (names the file and line)."""


@dataclass
class RequestCase:
    name: str
    clause: str
    request: bytes
    expect: object                  # "ok" or an int status
    fields: dict = field(default_factory=dict)   # expected table fields (and "body")
    limits: Limits = DEFAULT_LIMITS
    source: str = ""                # file:line


@dataclass
class ConnectionScript:
    name: str
    clause: str
    steps: List[Tuple[str, object]]
    source: str = ""

    @property
    def timed(self) -> bool:
        """It waits on the server's timers (a 408, or pauses adding up to 0.5 s or
        more) or trickles bytes: its answer depends on the loop (its timers, the
        loop's scan_head), not on the parser or buffer."""
        return (any(k == "expect" and 408 in v for k, v in self.steps)
                or any(k == "trickle" for k, _ in self.steps)
                or sum(v for k, v in self.steps if k == "pause") >= 0.5)


@dataclass
class StrictCase:
    name: str
    group: str                      # the file's stem
    expect: str                     # one of STRICT_EXPECTS
    data: bytes                     # the bytes to send, b"{H}" standing for the host:port
    clause: str
    requests: int = 1
    followup: Optional[bytes] = None    # keepalive-1.0: the second request ({H} too)
    source: str = ""                # file:line


@dataclass
class CaseResult:
    name: str
    clause: str
    split: str
    passed: bool
    expected: object
    actual: object
    source: str = ""


@dataclass
class ScriptResult:
    name: str
    clause: str
    passed: bool
    step: int                       # the failing step's index (-1 when passed)
    expected: object
    actual: object
    transcript: bytes = b""         # every byte the server sent
    source: str = ""


# --- loading ---------------------------------------------------------------------------

def spec_folder(folder=None) -> Path:
    """The corpus folder: `folder`, else $KOURIER_LAB_SPEC, else tests/spec of the checkout."""
    if folder is None:
        folder = os.environ.get("KOURIER_LAB_SPEC") or Path(__file__).resolve().parent.parent / "tests" / "spec"
    folder = Path(folder)
    if not folder.is_dir():
        raise SpecError(f"spec corpus folder {folder} not found: set KOURIER_LAB_SPEC to a checkout's tests/spec")
    return folder


def unescape(text: str, where: str = "") -> bytes:
    """Bytes from a fixture value written with Python bytes escapes."""
    try:
        return codecs.escape_decode(text.encode("latin-1"))[0]
    except (ValueError, UnicodeEncodeError) as e:
        raise SpecError(f"{where}: bad escaped bytes {text!r}: {e}") from None


def _cases_of(path: Path):
    """(name, [(key, value, lineno)], lineno) for each case of a fixture file."""
    cases, cur = [], None
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.rstrip("\n")
        if line.startswith("## "):
            cur = (line[3:].strip(), [], lineno)
            cases.append(cur)
            continue
        if not line.strip() or line.startswith("#"):
            continue
        if cur is None:
            raise SpecError(f"{path}:{lineno}: a line outside a case (cases start with '## name')")
        key, sep, value = line.partition(":")
        if not sep:
            key, value = line, ""
        # one space after the colon separates; the rest is the value (escapes keep spaces)
        cur[1].append((key.strip(), value[1:] if value.startswith(" ") else value, lineno))
    return cases


def _bytes_value(parts, key, value, where):
    if key == "repeat":
        count, _, text = value.partition(" ")
        if not count.isdigit():
            raise SpecError(f"{where}: repeat needs 'N <escaped bytes>'")
        parts.append(unescape(text, where) * int(count))
    else:
        parts.append(unescape(value, where))


def _limits(value, where):
    kw = {}
    for item in value.split():
        k, _, v = item.partition("=")
        if not v.isdigit():
            raise SpecError(f"{where}: limits take name=integer items, got {item!r}")
        kw[k] = int(v)
    try:
        return Limits(**kw)
    except (TypeError, ValueError) as e:
        raise SpecError(f"{where}: {e}") from None


def _field(key, value, where):
    if key in ("method", "target", "path", "body"):
        return unescape(value, where)
    if key in ("query", "host"):
        return None if value == "(none)" else unescape(value, where)
    if key in ("version_minor", "content_length", "head_len"):
        return int(value)
    if key in ("keep_alive", "expect_continue"):
        if value not in ("yes", "no"):
            raise SpecError(f"{where}: {key} is yes or no")
        return value == "yes"
    if key == "target_form":
        return _FORMS[value]
    if key == "body_kind":
        return _BODY_KINDS[value]
    raise SpecError(f"{where}: unknown key {key!r}")


def load_request_cases(folder=None) -> List[RequestCase]:
    """Every request case of the corpus, in file and case order."""
    out = []
    for path in sorted((spec_folder(folder) / "requests").glob("*.txt")):
        for name, lines, at in _cases_of(path):
            where = f"{path.name}:{at}"
            case = RequestCase(name=f"{path.stem}: {name}", clause="", request=b"", expect=None,
                               source=where)
            parts, headers = [], None
            for key, value, lineno in lines:
                w = f"{path.name}:{lineno}"
                if key == "clause":
                    case.clause = value
                elif key in ("request", "repeat"):
                    _bytes_value(parts, key, value, w)
                elif key == "limits":
                    case.limits = _limits(value, w)
                elif key == "expect":
                    if value == "ok":
                        case.expect = "ok"
                    elif value.isdigit() and int(value) in _STATUSES:
                        case.expect = int(value)
                    else:
                        raise SpecError(f"{w}: expect is ok or one of {_STATUSES}")
                elif key == "header":
                    k, sep, v = value.partition(":")
                    if not sep:
                        raise SpecError(f"{w}: header is 'Name: value'")
                    headers = headers or []
                    headers.append((unescape(k, w), unescape(v[1:] if v.startswith(" ") else v, w)))
                else:
                    case.fields[key] = _field(key, value, w)
            if headers is not None:
                case.fields["headers"] = headers
            case.request = b"".join(parts)
            if not case.clause or case.expect is None or not case.request:
                raise SpecError(f"{where}: case {name!r} needs clause:, request: and expect:")
            out.append(case)
    return out


def load_connection_scripts(folder=None) -> List[ConnectionScript]:
    """Every connection script of the corpus, in file and case order."""
    out = []
    for path in sorted((spec_folder(folder) / "connections").glob("*.txt")):
        for name, lines, at in _cases_of(path):
            script = ConnectionScript(name=f"{path.stem}: {name}", clause="", steps=[],
                                      source=f"{path.name}:{at}")
            pending = None          # consecutive send / repeat lines are one write
            for key, value, lineno in lines:
                w = f"{path.name}:{lineno}"
                if key in ("send", "repeat"):
                    if pending is None:
                        pending = []
                        script.steps.append(("send", pending))
                    _bytes_value(pending, key, value, w)
                    continue
                pending = None
                if key == "clause":
                    script.clause = value
                elif key == "trickle":
                    # N bytes per write; the bytes on this line and on the send /
                    # repeat lines right after it
                    piece, _, rest = value.partition(" ")
                    if not piece.isdigit() or int(piece) < 1:
                        raise SpecError(f"{w}: trickle needs 'N [escaped bytes]' (N bytes per write)")
                    pending = [unescape(rest, w)] if rest else []
                    script.steps.append(("trickle", (int(piece), pending)))
                    continue
                elif key in ("pause", "within"):
                    try:
                        script.steps.append((key, float(value)))
                    except ValueError:
                        raise SpecError(f"{w}: {key} takes seconds") from None
                elif key == "expect":
                    try:
                        script.steps.append(("expect", [int(s) for s in value.split()]))
                    except ValueError:
                        raise SpecError(f"{w}: expect takes status codes") from None
                elif key == "expect-body":
                    script.steps.append(("expect-body", unescape(value, w)))
                elif key in ("half-close", "expect-close", "expect-open"):
                    script.steps.append((key, None))
                else:
                    raise SpecError(f"{w}: unknown step {key!r}")
            script.steps = [(k, b"".join(v) if k == "send" else (v[0], b"".join(v[1])) if k == "trickle" else v)
                            for k, v in script.steps]
            if not script.clause or not script.steps:
                raise SpecError(f"{script.source}: script {name!r} needs clause: and steps")
            out.append(script)
    return out


def load_strict_cases(folder=None) -> List[StrictCase]:
    """Every strict compliance case of the corpus, in file and case order
    (``{H}`` left in the bytes: compliance.strict.cases puts the host in)."""
    out, seen = [], {}
    for path in sorted((spec_folder(folder) / "strict").glob("*.txt")):
        for name, lines, at in _cases_of(path):
            where = f"{path.name}:{at}"
            case = StrictCase(name=name, group=path.stem, expect="", data=b"", clause="", source=where)
            parts, follow = [], None
            for key, value, lineno in lines:
                w = f"{path.name}:{lineno}"
                if key == "clause":
                    case.clause = value
                elif key in ("request", "repeat"):
                    _bytes_value(parts, key, value, w)
                elif key == "followup":
                    follow = (follow or b"") + unescape(value, w)
                elif key == "expect":
                    if value not in STRICT_EXPECTS:
                        raise SpecError(f"{w}: expect is one of {', '.join(STRICT_EXPECTS)}")
                    case.expect = value
                elif key == "requests":
                    if not value.isdigit() or int(value) < 1:
                        raise SpecError(f"{w}: requests takes a positive integer")
                    case.requests = int(value)
                else:
                    raise SpecError(f"{w}: unknown key {key!r}")
            case.data, case.followup = b"".join(parts), follow
            if not case.clause or not case.expect or not case.data:
                raise SpecError(f"{where}: case {name!r} needs clause:, expect: and request:")
            if (case.expect == "keepalive-1.0") != (follow is not None):
                raise SpecError(f"{where}: case {name!r}: followup: goes with expect: keepalive-1.0, "
                                "and only with it")
            if name in seen:
                raise SpecError(f"{where}: case name {name!r} already used at {seen[name]}")
            seen[name] = where
            out.append(case)
    return out


# --- parsers ---------------------------------------------------------------------------

def _answer(p, data, start, end):
    """What the parser gives for the message at data[start:end): ("need",), (status,)
    or ("ok", table fields, head length, body length)."""
    n = p.parse_head(data, start, end)
    if n == 0:
        return ("need",)
    if n < 0:
        return (-n,)
    head = p.head()
    got = {"method": head.method, "target": head.target, "path": head.path, "query": head.query,
           "version_minor": head.version_minor, "target_form": head.target_form,
           "host": head.host, "keep_alive": head.keep_alive, "body_kind": head.body_kind,
           "content_length": head.content_length, "expect_continue": head.expect_continue,
           "head_len": head.head_len, "headers": head.headers}
    info = p.info
    if info is None or tuple(info) != (head.method, head.path, head.query, head.version_minor,
                                       head.keep_alive, head.body_kind, head.content_length,
                                       head.expect_continue):
        return ("info differs from head()", info)
    body_len = 0
    if head.body_kind == BODY_CHUNKED:
        m, body = p.parse_chunked(data, start + n, end)
        if m == 0:
            return ("need",)
        if m < 0:
            return (-m,)
        got["body"] = bytes(body)
        body_len = m
    elif head.body_kind == BODY_LENGTH:
        if end - start - n < head.content_length:
            return ("need",)
        got["body"] = bytes(data[start + n:start + n + head.content_length])
        body_len = head.content_length
    return ("ok", got, n, body_len)


def _judge(case, ans):
    """(passed, expected, actual) for a complete answer."""
    if case.expect != "ok":
        return ans == (case.expect,), case.expect, ans[0] if len(ans) == 1 else ans
    if ans[0] != "ok":
        return False, "ok", ans[0]
    _, got, n, body_len = ans
    if n + body_len != len(case.request):
        return False, f"a message of {len(case.request)} bytes", f"head {n} + body {body_len} bytes"
    wrong = {k: got.get(k) for k, v in case.fields.items() if got.get(k) != v}
    if wrong:
        return False, {k: case.fields[k] for k in wrong}, wrong
    return True, "ok", "ok"


def _check_whole(make, case):
    ans = _answer(make(case.limits), case.request, 0, len(case.request))
    passed, expected, actual = _judge(case, ans)
    if passed:
        # what follows (a pipelined request, an offset start) changes nothing
        buf = bytearray(b"xx" + case.request + b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
        again = _answer(make(case.limits), buf, 2, len(buf))
        if case.expect != "ok":
            if again != ans:
                return False, f"{ans} with bytes after it", again
        elif again[0] != "ok" or again[1] != ans[1] or again[2:] != ans[2:]:
            return False, f"{ans} with bytes after it", again
    return passed, expected, actual


def _check_bytewise(make, case):
    """Every prefix answers need more or the whole input's error; and wherever
    the loops' scan_head (parsers/scan.py) would not ask the parser, the
    parser's answer is indeed need more (so resuming never hides an answer)."""
    p = make(case.limits)
    whole = _answer(p, case.request, 0, len(case.request))
    data = case.request
    step = max(97, (len(data) - BYTEWISE_FULL) // 64)
    ks = list(range(min(len(data), BYTEWISE_FULL))) + list(range(BYTEWISE_FULL, len(data), step))
    lim = case.limits
    scan = (0, 0, 0)        # None once the head is decided
    for k in ks:
        ans = _answer(p, data, 0, k)
        if ans != ("need",) and not (len(whole) == 1 and ans == whole):
            return False, f"need more (or {whole[0]}) for every prefix", f"{ans[0]} at {k} bytes"
        if scan is not None:
            decide, scan_next = scan_head(data, 0, k, scan, lim.max_request_line, lim.max_header_bytes)
            n = p.parse_head(data, 0, k)
            if n == 0:
                scan = scan_next
            elif not decide:
                return False, "scan_head asks the parser whenever its answer changes", \
                    f"parse_head gave {n} at {k} bytes where scan_head said need more"
            else:
                scan = None
    return _judge(case, whole)


def _check_random(make, case, rnd):
    p = make(case.limits)
    data = case.request
    buf = bytearray()
    fed = 0
    ans = ("need",)
    while fed < len(data):
        # small pieces, but at most ~256 of them for a big request (each call
        # parses from the start: the cost is quadratic in the calls)
        step = max(rnd.choice((1, 2, 3, 7, 64, 500, 4096, 1 << 20)), len(data) >> 8)
        buf += data[fed:fed + step]
        fed += step
        ans = _answer(p, buf, 0, len(buf))
        if ans != ("need",):
            break
    if fed < len(data) and ans != ("need",) and case.expect == "ok":
        return False, "ok at the end", f"{ans[0]} after {fed} bytes"
    return _judge(case, ans)


def check_parser(make_parser: Callable[[Limits], object], splits: Sequence[str] = SPLITS,
                 seed: int = 0, cases: Optional[Sequence[RequestCase]] = None) -> List[CaseResult]:
    """Every request case (default: the whole corpus) under every split, through
    parsers made by make_parser(limits); one CaseResult per case and split.  A
    parser that raises fails that case (the exception is the actual value)."""
    for s in splits:
        if s not in SPLITS:
            raise ValueError(f"unknown split {s!r}: choose from {', '.join(SPLITS)}")
    if cases is None:
        cases = load_request_cases()
    rnd = random.Random(seed)
    out = []
    for case in cases:
        for split in splits:
            try:
                if split == "whole":
                    r = _check_whole(make_parser, case)
                elif split == "bytewise":
                    r = _check_bytewise(make_parser, case)
                else:
                    r = _check_random(make_parser, case, rnd)
            except Exception as e:      # a variant's crash is a failed case, not a crashed check
                r = (False, case.expect, f"{type(e).__name__}: {e}")
            out.append(CaseResult(case.name, case.clause, split, bool(r[0]), r[1], r[2], case.source))
    return out


# --- connections -----------------------------------------------------------------------

def run_connection_script(host: str, port: int, script: ConnectionScript,
                          connect_timeout: float = 5.0) -> ScriptResult:
    """Play one script against a server listening at host:port."""
    sock = socket.create_connection((host, port), timeout=connect_timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    reader = ResponseReader(sock)
    t0 = time.monotonic()
    deadline = t0 + 10.0
    last_body = None

    def result(i, passed, expected, actual):
        return ScriptResult(script.name, script.clause, passed, i, expected, actual,
                            bytes(reader.transcript), script.source)
    try:
        for i, (kind, arg) in enumerate(script.steps):
            if kind == "send":
                # in pieces, as a client would: once the server answers early
                # (413, 431) the rest is not sent, so its close cannot reset
                # the connection before the answer is read
                view = memoryview(arg)
                for off in range(0, len(arg), SEND_PIECE):
                    sock.settimeout(max(0.01, deadline - time.monotonic()))
                    try:
                        sock.sendall(view[off:off + SEND_PIECE])
                    except (BrokenPipeError, ConnectionResetError, socket.timeout):
                        break       # the server answered and closed, or stalled: later steps tell
                    if len(arg) > SEND_PIECE and reader.poll():
                        break
            elif kind == "trickle":
                piece, data = arg
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                seen = len(reader.transcript)
                try:
                    for off in range(0, len(data), piece):
                        sock.sendall(data[off:off + piece])
                        time.sleep(TRICKLE_GAP)
                        reader.poll()
                        if len(reader.transcript) > seen:
                            # an answer: when the server closes after it (414, 431,
                            # 400 ...), the rest is not sent, so that the close
                            # cannot reset the connection before the answer is read
                            seen = len(reader.transcript)
                            reader.fill(time.monotonic() + 0.05)
                            if reader.closed:
                                break
                except (BrokenPipeError, ConnectionResetError, socket.timeout):
                    pass            # the server answered and closed, or stalled: later steps tell
            elif kind == "pause":
                time.sleep(arg)
            elif kind == "within":
                deadline = t0 + arg
            elif kind == "half-close":
                sock.shutdown(socket.SHUT_WR)
            elif kind == "expect":
                got = []
                for want in arg:
                    r = reader.next(deadline)
                    if r is None:
                        got.append("closed" if reader.closed else "nothing in time")
                        return result(i, False, arg, got)
                    got.append(r.status or "garbled")
                    last_body = r.content if r.status else r.status_line
                if got != arg:
                    return result(i, False, arg, got)
            elif kind == "expect-body":
                if last_body != arg:
                    return result(i, False, arg, last_body)
            elif kind == "expect-close":
                while reader.fill(deadline):
                    pass
                if not reader.closed:
                    return result(i, False, "closed", "still open")
                if reader.buf:
                    return result(i, False, "closed", bytes(reader.buf[:200]))
            elif kind == "expect-open":
                reader.fill(min(deadline, time.monotonic() + 0.2))
                if reader.closed or reader.buf:
                    return result(i, False, "open and silent",
                                  "closed" if reader.closed else bytes(reader.buf[:200]))
        return result(-1, True, None, None)
    finally:
        sock.close()
