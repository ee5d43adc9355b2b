"""One connection's HTTP/1.1 logic, without I/O (shared by the Python and asyncio loops).

`Session.process()` takes the bytes in the read buffer, answers every complete
request in order into the write buffer (pipelining: any number per read), and
says what the loop must do next.  Parsers are stateless, so a request whose
body has not fully arrived is simply parsed again when more bytes come.
"""
from ..parsers import BODY_CHUNKED, BODY_NONE
from .app import Request, StaticRoute

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

# process() results
OPEN = 0          # keep reading
CLOSE = 1         # flush the write buffer, then close


class Session:
    __slots__ = ("rbuf", "wbuf", "parser", "app", "in_request", "continue_sent", "closing",
                 "timer_deadline", "timer_slot", "conn", "requests")

    def __init__(self, rbuf, wbuf, parser, app):
        self.rbuf, self.wbuf, self.parser, self.app = rbuf, wbuf, parser, app
        self.in_request = False      # bytes of an unfinished request are buffered
        self.continue_sent = False
        self.closing = False
        self.timer_deadline = 0.0
        self.timer_slot = None
        self.conn = None             # the loop's own handle (socket / transport)
        self.requests = 0

    def process(self) -> int:
        """Answer every complete request buffered; OPEN or CLOSE."""
        data, start, end = self.rbuf.contiguous()
        pos = start
        parse = self.parser.parse_head
        wbuf = self.wbuf
        app = self.app
        append = wbuf.append
        result = OPEN
        last_route = None
        while pos < end:
            if wbuf.over_limit():
                break           # backpressure: the rest waits until output drains
            n = parse(data, pos, end)
            if n <= 0:
                if n < 0:
                    append(app.error(-n, 1, False))
                    result = CLOSE
                    pos = end
                break
            info = self.parser.info
            method, path, query, minor, keep_alive, body_kind, clen, expect = info
            body_end = pos + n
            body = b""
            if body_kind != BODY_NONE:
                if body_kind == BODY_CHUNKED:
                    m, body = self.parser.parse_chunked(data, body_end, end)
                    if m < 0:
                        append(app.error(-m, minor, False))
                        result = CLOSE
                        pos = end
                        break
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
                    break
            route = last_route if (last_route is not None and info is last_info) else app.resolve(method, path)
            if route.__class__ is StaticRoute:
                append(route.responses[(method == b"HEAD", minor, keep_alive)])
                last_route, last_info = route, info
            elif route.__class__ is int:
                append(app.error(route, minor, keep_alive, method == b"HEAD", path))
            else:
                head = self.parser.head()
                req = Request(method.decode("latin-1"), path.decode("latin-1"),
                              None if query is None else query.decode("latin-1"),
                              "HTTP/1.%d" % minor, head.headers, body, head.target)
                append(app.call(route, req, minor, keep_alive))
            self.requests += 1
            self.continue_sent = False
            pos = body_end
            if not keep_alive:
                result = CLOSE
                pos = end        # nothing after a closing request is read
                break
        self.rbuf.consume(pos - start)
        self.in_request = pos < end and result == OPEN
        if result == CLOSE:
            self.closing = True
        return result

    def timeout_response(self) -> bytes:
        """What to send when the request timeout fires (then close)."""
        return self.app.error(408, 1, False)
