"""Session.process, the connection logic without I/O: answering heads in batches
(and, with fold_runs on, runs of equal requests) gives the same bytes as
answering them one at a time.

The reference is the same Session with batches of one head and every static
answer appended on its own (BATCH = 1, RUN_BYTES = 0), over parse_heads_by_head
(the protocol spelled out with parse_head).  Streams mix static and handler
routes, bodies (Content-Length, chunked, 100-continue), 404/405, and may end in
an error or a closing request; they arrive at random splits, under write limits
from none to tight (backpressure), with every parser, memo off and on, folding off and on.
"""
import random

import pytest

from kourier_lab import buffers, parsers
from kourier_lab.server import session
from kourier_lab.server.app import App, Response

H = b"Host: x\r\n"
KEEP = [
    b"GET /hello HTTP/1.1\r\n" + H + b"\r\n",
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",
    b"HEAD /hello HTTP/1.1\r\n" + H + b"\r\n",
    b"GET /big HTTP/1.1\r\n" + H + b"\r\n",
    b"GET /hello HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n",
    b"GET /users?q=1 HTTP/1.1\r\n" + H + b"User-Agent: t\r\n\r\n",
    b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\nhello",
    b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nExpect: 100-continue\r\n\r\nabc",
    b"POST /hello HTTP/1.1\r\n" + H + b"Content-Length: 0\r\n\r\n",
    b"DELETE /users HTTP/1.1\r\n" + H + b"\r\n",
    b"GET /a%20b HTTP/1.1\r\n" + H + b"Accept: */*\r\nConnection: keep-alive\r\n\r\n",
    b"\r\nGET /hello HTTP/1.1\r\n" + H + b"\r\n",
    b"GET /hello HTTP/1.1\r\nX-A: 1\r\n" + H + b"\r\n",
]
LAST = [
    b"GET /hello HTTP/1.0\r\n\r\n",
    b"GET /hello HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n",
    b"GET /bad%zz HTTP/1.1\r\n" + H + b"\r\n",
    b"GET / HTTP/1.1\r\n\r\n",
    b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
]


def _app():
    app = App()
    app.route_static("/hello", b"Hello World!")
    app.route_static("/big", b"b" * 70000)

    @app.get("/users")
    def users(req):
        return {"path": req.path, "query": req.query, "ua": req.header("User-Agent")}

    @app.post("/echo")
    def echo(req):
        return Response(req.body, content_type="application/octet-stream")

    app.route_catch_all(b"catch")
    app.refresh(1.7e9)
    app._date_second = 1 << 40      # the Date header stays put during the test
    return app


class _ByHead:
    """A parser without a parse_heads of its own (Session falls back to parse_heads_by_head)."""

    def __init__(self, parser):
        self.p = parser
        self.parse_head, self.head, self.parse_chunked = parser.parse_head, parser.head, parser.parse_chunked

    @property
    def info(self):
        return self.p.info


def _serve(parser, stream, splits, write_limit, fold_runs=False):
    """Feed the stream in pieces, drain the output after every process():
    (all bytes sent, requests answered, closing, in_request)."""
    s = session.Session(buffers.create_read("python", 256, 1 << 20),
                        buffers.create_write("python", write_limit), parser, _app(), fold_runs=fold_runs)
    out = bytearray()
    fed = 0
    for cut in splits + [len(stream)]:
        chunk, fed = stream[fed:cut], cut
        while chunk:
            span = s.rbuf.free_span()
            k = min(len(span), len(chunk))
            span[:k] = chunk[:k]
            s.rbuf.commit(k)
            chunk = chunk[k:]
        while True:
            r = s.process()
            sent = bytes(s.wbuf.view())
            s.wbuf.consume(len(sent))
            out += sent
            if r == session.CLOSE or not len(s.rbuf) or not sent:
                break
        if s.closing:
            break
    return bytes(out), s.requests, s.closing, s.in_request


@pytest.mark.parametrize("fold_runs", [False, True], ids=["fold-off", "fold-on"])
@pytest.mark.parametrize("head_memo", [False, True], ids=["memo-off", "memo-on"])
@pytest.mark.parametrize("parser_name", parsers.names())
def test_batches_and_runs_answer_as_one_at_a_time(parser_name, head_memo, fold_runs, monkeypatch):
    rnd = random.Random(parser_name + str(head_memo) + str(fold_runs))
    for _ in range(25):
        reqs = [rnd.choice(KEEP) for _ in range(rnd.randint(1, 400))]
        if rnd.random() < 0.5:
            reqs.append(rnd.choice(LAST))
        stream = b"".join(reqs)
        splits = sorted(rnd.sample(range(1, len(stream)), min(len(stream) - 1, rnd.randint(0, 30))))
        write_limit = rnd.choice([0, 100, 5000, 1 << 20])
        got = _serve(parsers.create(parser_name, head_memo=head_memo, fold_runs=fold_runs), stream, splits,
                     write_limit, fold_runs)
        with monkeypatch.context() as m:
            m.setattr(session, "BATCH", 1)
            m.setattr(session, "RUN_BYTES", 0)
            want = _serve(_ByHead(parsers.create(parser_name)), stream, splits, write_limit)
        assert got == want
        assert got[1] >= min(len(reqs), 1)


class _Counting:
    """A parser that counts the bytes it is handed: what re-parsing costs."""

    def __init__(self, parser):
        self.p, self.bytes_seen, self.limits = parser, 0, parser.limits
        self.head, self.parse_chunked = parser.head, parser.parse_chunked

    def parse_head(self, buf, start=0, end=None):
        end = len(buf) if end is None else end
        self.bytes_seen += end - start
        return self.p.parse_head(buf, start, end)

    @property
    def info(self):
        return self.p.info


@pytest.mark.parametrize("parser_name", parsers.names())
@pytest.mark.parametrize("head", [
    b"GET /hello HTTP/1.1\r\n" + H + b"".join(b"X-F%02d: %s\r\n" % (i, b"v" * 60) for i in range(60)) + b"\r\n",
    b"\r\n" * 1500 + b"GET /hello HTTP/1.1\r\n" + H + b"\r\n",
], ids=["many-fields", "empty-lines-first"])
def test_a_head_in_one_byte_reads_is_parsed_a_bounded_number_of_times(parser_name, head):
    """scan_head (parsers/scan.py) asks the parser only when its answer can
    change: at the request line's end and at the head's end, so a head read one
    byte at a time costs about two parses of it, not one per byte (which would
    hand the parser about len(head)**2 / 2 bytes)."""
    p = _Counting(parsers.create(parser_name))
    s = session.Session(buffers.create_read("python", 256, 1 << 20),
                        buffers.create_write("python", 1 << 20), p, _app())
    for i in range(len(head)):
        span = s.rbuf.free_span()
        span[0] = head[i]
        s.rbuf.commit(1)
        assert s.process() == session.OPEN
    assert s.requests == 1 and not s.in_request
    assert p.bytes_seen <= 3 * len(head), (p.bytes_seen, len(head))
