"""One connection's HTTP/1.1 logic, without I/O (shared by the Python and asyncio loops).

`Session.process()` takes the bytes in the read buffer, answers every complete
request in order into the write buffer (pipelining: any number per read), and
says what the loop must do next.  Parsers are stateless, so a request that
has not fully arrived is parsed again when more bytes come -- but only when
the parser's answer can have changed: scan_head (an incomplete head) and
scan_chunked (a chunked body) follow the bytes from where they stopped, so a
request costs O(its bytes) however it is split.

The heads come in batches (the parser's parse_heads, parsers/__init__.py):
every head is parsed and validated, and every request is answered on its
own -- its own route look-up (one dict look-up for a GET: App.get_table),
its own answer -- the small static answers of a batch gathered and written
with one append.  With fold_runs on (`serve --fold-runs on`, an explicit
knob, off by default) consecutive requests with equal info form a run,
resolved once and answered with one append of the response repeated: the
technique that makes a benchmark of identical requests cheap, measured as
its own labelled variant.
"""
import sys
from itertools import groupby
from operator import itemgetter

from ..http.limits import DEFAULT_LIMITS
from ..parsers import BODY_CHUNKED, BODY_NONE, parse_heads_by_head
from ..parsers.scan import scan_chunked, scan_head
from .app import Request, StaticRoute

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

# process() results
OPEN = 0          # keep reading
CLOSE = 1         # flush the write buffer, then close
_WAIT = 2         # (internal) a body has not fully arrived

# Heads per parse_heads call (the benchmark's whole 256-deep pipeline in one).
BATCH = 256
# A run of static answers up to this size is appended at once, past the write
# limit if need be; a larger one answer by answer, checking the limit before
# each, as every other answer is.
RUN_BYTES = 65536

_N, _INFO = itemgetter(0), itemgetter(1)


class Session:
    __slots__ = ("rbuf", "wbuf", "parser", "app", "in_request", "continue_sent", "closing",
                 "timer_deadline", "timer_slot", "conn", "requests", "_chunk_scan", "_head_scan", "_front",
                 "fold_runs")

    def __init__(self, rbuf, wbuf, parser, app, fold_runs=False):
        self.rbuf, self.wbuf, self.parser, self.app = rbuf, wbuf, parser, app
        self.fold_runs = fold_runs   # serve --fold-runs: off, every request is answered on its own
        self.in_request = False      # bytes of an unfinished request are buffered
        self.continue_sent = False
        self.closing = False
        self.timer_deadline = 0.0
        self.timer_slot = None
        self.conn = None             # the loop's own handle (socket / transport)
        self.requests = 0
        # (no per-connection bound method or closure for parse_heads: process()
        # looks it up on the shared parser; idle connections should cost little)
        self._front = 0
        self._chunk_scan = None      # scan_chunked's state for the chunked body at the buffer's front
        self._head_scan = None       # scan_head's state for an incomplete head at the buffer's front

    def process(self) -> int:
        """Answer every complete request buffered; OPEN or CLOSE.

        An exception from the parser or a handler (a user's variant, most
        likely) answers 500 and closes this connection only: the worker keeps
        serving, and one line on stderr names the exception and the input."""
        try:
            return self._process()
        except Exception as e:      # noqa: BLE001 - the server outlives a broken variant
            data, start, end = self.rbuf.contiguous()
            shown = bytes(data[start:min(end, start + 160)])
            sys.stderr.write(f"kourier-lab: 500 and close: {type(e).__name__}: {e} "
                             f"(parser {type(self.parser).__name__}) on input {shown!r}"
                             f"{'...' if end - start > 160 else ''}\n")
            self.wbuf.append(self.app.error(500, 1, False))
            self.rbuf.consume(end - start)
            self._chunk_scan = self._head_scan = None
            self.in_request = False
            self.closing = True
            return CLOSE

    def _process(self) -> int:
        data, start, end = self.rbuf.contiguous()
        wbuf = self.wbuf
        app = self.app
        scan = self._head_scan
        if scan is not None:
            # the head at the front was incomplete: is the parser's answer due?
            lim = getattr(self.parser, "limits", DEFAULT_LIMITS)
            decide, scan = scan_head(data, start, end, scan, lim.max_request_line, lim.max_header_bytes)
            if not decide:
                self._head_scan = scan
                if end - start >= self.rbuf.limit:      # it can never complete (as below)
                    wbuf.append(app.error(413, 1, False))
                    self.rbuf.consume(end - start)
                    self._head_scan = None
                    self.in_request = False
                    self.closing = True
                    return CLOSE
                return OPEN
        pos = start
        result = OPEN
        incomplete_at = -1           # where an incomplete head starts, when one ends the input
        self._front = start
        answer = self._answer_runs if self.fold_runs else self._answer_each
        while result == OPEN and pos < end and not wbuf.over_limit():
            parse_heads = getattr(self.parser, "parse_heads", None)
            if parse_heads is not None:
                batch = parse_heads(data, pos, end, BATCH)
            else:
                batch = parse_heads_by_head(self.parser, data, pos, end, BATCH)
            if not batch:
                break
            pos, result, incomplete_at = answer(batch, data, pos, end)
        if result == _WAIT:
            result = OPEN
            if pos == start and end - start >= self.rbuf.limit:
                # the unfinished request fills the read buffer: it can never
                # complete, so say so now (not 408 after a stall)
                wbuf.append(app.error(413, 1, False))
                result = CLOSE
                pos = end
        if pos != start:
            self._chunk_scan = None      # the request it followed is done (or not at the front)
        if result == OPEN and incomplete_at == pos:
            if pos != start or scan is None:    # a new incomplete head: scanned once from its start
                lim = getattr(self.parser, "limits", DEFAULT_LIMITS)
                scan = scan_head(data, pos, end, (0, 0, 0), lim.max_request_line, lim.max_header_bytes)[1]
            self._head_scan = scan
        else:
            self._head_scan = None
        self.rbuf.consume(pos - start)
        self.in_request = pos < end and result == OPEN
        if result == CLOSE:
            self.closing = True
        return result

    def _answer_each(self, batch, data, pos, end):
        """Answer a batch of heads, every request on its own: its own route
        look-up (one dict look-up for a GET), its own answer.  The small static
        answers of the batch are gathered and written with one append; anything
        else is answered by _answer_one, in order.  -> (pos, result,
        incomplete_at)."""
        app = self.app
        table = app._get_table or app.get_table()
        if table is not None:
            get_route, default = table[0].get, table[1]
        out = []
        gather = out.append
        k = 0
        result = OPEN
        incomplete_at = -1
        for n, info in batch:
            if info is None:            # the batch's last entry: an error, or need more
                if out:
                    self.wbuf.append(b"".join(out))
                    out = None
                    self.continue_sent = False
                pos, result, incomplete_at = self._end_of_batch(n, pos, end)
                break
            method, path, query, minor, keep_alive, body_kind, clen, expect = info
            if table is not None and method == b"GET" and body_kind == BODY_NONE:
                route = get_route(path, default)
                if route.__class__ is StaticRoute:
                    answers = route.get_answers
                    if answers is not None:
                        gather(answers[minor][keep_alive])
                        pos += n
                        k += 1
                        if not keep_alive:
                            result = CLOSE
                            pos = end        # nothing after a closing request is read
                            break
                        continue
            else:
                route = app.resolve(method, path)
            if out:                      # what is gathered goes first
                self.wbuf.append(b"".join(out))
                out.clear()
                self.continue_sent = False
            if self.wbuf.over_limit():
                result = _WAIT           # backpressure: the rest waits until output drains
                break
            pos, result = self._answer_one(data, pos, end, n, info, route)
            if result != OPEN:
                break
        if out:
            self.wbuf.append(b"".join(out))
            self.continue_sent = False
        self.requests += k
        return pos, result, incomplete_at

    def _answer_runs(self, batch, data, pos, end):
        """Answer a batch of heads with fold_runs on: consecutive requests with
        equal info (same method, path, version, keep-alive: one route, one
        answer) form a run (itertools.groupby; its == on tuples is quick when
        the parser hands out the same info object again), resolved once and,
        for a static route, answered with one append of the response
        repeated.  Handlers, error routes and bodies are answered one by one.
        -> (pos, result, incomplete_at)."""
        app = self.app
        wbuf = self.wbuf
        result = OPEN
        incomplete_at = -1
        for info, run in groupby(batch, _INFO):
            if wbuf.over_limit():
                result = _WAIT      # backpressure: the rest waits until output drains
                break
            if info is None:        # the batch's last entry: an error, or need more
                pos, result, incomplete_at = self._end_of_batch(batch[-1][0], pos, end)
                break
            method, path, query, minor, keep_alive, body_kind, clen, expect = info
            route = app.resolve(method, path)
            if route.__class__ is StaticRoute and body_kind == BODY_NONE:
                answer = route.responses[(method == b"HEAD", minor, keep_alive)]
                run = list(run)
                k = len(run)
                if len(answer) * k <= RUN_BYTES:
                    # k requests, one answer: append it k times at once
                    wbuf.append(answer * k)
                    pos += sum(map(_N, run))
                else:
                    k = 0
                    for n, _ in run:
                        if wbuf.over_limit():
                            result = _WAIT
                            break
                        wbuf.append(answer)
                        pos += n
                        k += 1
                self.requests += k
                self.continue_sent = False
                if not keep_alive:  # (a closing request is a run of its own)
                    result = CLOSE
                    pos = end        # nothing after a closing request is read
                if result != OPEN:
                    break
                continue
            for n, info in run:     # a handler, an error route, or a body: one by one
                if wbuf.over_limit():
                    result = _WAIT
                    break
                pos, result = self._answer_one(data, pos, end, n, info, route)
                if result != OPEN:
                    break
            if result != OPEN:
                break
        return pos, result, incomplete_at

    def _end_of_batch(self, n, pos, end):
        """A batch's last entry, (n, None): an error (n < 0) is answered and
        ends the connection; else the head at pos needs more bytes.
        -> (pos, result, incomplete_at)"""
        if n < 0:
            self.wbuf.append(self.app.error(-n, 1, False))
            return end, CLOSE, -1
        return pos, _WAIT, pos

    def _answer_one(self, data, pos, end, n, info, route):
        """Answer the request whose n-byte head is at pos: (next pos, OPEN);
        (pos, _WAIT) when its body has not fully arrived; (end, CLOSE) when
        the connection must close."""
        app = self.app
        append = self.wbuf.append
        method, path, query, minor, keep_alive, body_kind, clen, expect = info
        body_end = pos + n
        body = b""
        if body_kind != BODY_NONE:
            if body_kind == BODY_CHUNKED:
                state = self._chunk_scan if pos == self._front and self._chunk_scan else (0, 0, 0)
                lim = getattr(self.parser, "limits", DEFAULT_LIMITS)
                decide, state = scan_chunked(data, body_end, end, state, lim.max_body, lim.max_header_bytes)
                self._chunk_scan = state
                m, body = self.parser.parse_chunked(data, body_end, end) if decide else (0, None)
                if m < 0:
                    append(app.error(-m, minor, False))
                    return end, CLOSE
                body_end += m
            else:
                m = clen if end - body_end >= clen else 0
                if m:
                    body = bytes(data[body_end:body_end + m])
                    body_end += m
                elif clen == 0:
                    m = -1  # complete, empty
            if m == 0:
                if expect and not self.continue_sent:
                    append(CONTINUE)
                    self.continue_sent = True
                return pos, _WAIT
        if route.__class__ is StaticRoute:
            append(route.responses[(method == b"HEAD", minor, keep_alive)])
        elif route.__class__ is int:
            append(app.error(route, minor, keep_alive, method == b"HEAD", path))
        else:
            parser = self.parser
            parser.parse_head(data, pos, end)      # head() is defined after parse_head only
            head = parser.head()
            req = Request(method.decode("latin-1"), path.decode("latin-1"),
                          None if query is None else query.decode("latin-1"),
                          "HTTP/1.%d" % minor, head.headers, body, head.target)
            append(app.call(route, req, minor, keep_alive))
        self.requests += 1
        self.continue_sent = False
        if not keep_alive:
            return end, CLOSE        # nothing after a closing request is read
        return body_end, OPEN

    def timeout_response(self) -> bytes:
        """What to send when the request timeout fires (then close)."""
        return self.app.error(408, 1, False)
