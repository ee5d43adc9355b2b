"""The parser contract beyond single requests, over every registered parser variant:
pipelined streams at random splits, the batch protocol, the head memo, the
Python parser's two paths.  Single requests are the spec corpus (tests/spec,
tests/server/test_spec.py)."""
import random

import pytest

from kourier_lab import parsers, spec
from kourier_lab.http.limits import DEFAULT_LIMITS, Limits
from kourier_lab.parsers import BODY_LENGTH, BODY_NONE

H = b"Host: example.com\r\n"


# The request cases themselves (valid, invalid, limits, chunked bodies) are the
# spec corpus in tests/spec/requests, run over every parser by tests/server/test_spec.py;
# the tests here feed its requests in other ways (pipelined streams, batches).
CORPUS = [c for c in spec.load_request_cases() if c.limits == DEFAULT_LIMITS]


def _head_answer(raw):
    p = parsers.create("python")
    n = p.parse_head(raw)
    return n, (p.info if n > 0 else None)


# whole heads without a body that keep the connection open, and heads that end it
KEEP_HEADS = [c.request for c in CORPUS if c.expect == "ok" and _head_answer(c.request)[0] == len(c.request)
              and _head_answer(c.request)[1][4]]
END_HEADS = [c.request for c in CORPUS if _head_answer(c.request)[0] < 0]
SMALL_LIMITS = Limits(max_request_line=64, max_header_bytes=256, max_headers=4, max_body=1000)

# Views of the corpus in the shapes other test files (C batch, Numba, sanitizer
# seeds) take: (name, bytes, expected) tuples.  Not copies: edit tests/spec.
H = b"Host: example.com\r\n"
SMALL = SMALL_LIMITS
VALID = [(c.name, c.request, ("ok", c.fields)) for c in CORPUS
         if c.expect == "ok" and _head_answer(c.request)[0] == len(c.request)]
INVALID = [(c.name, c.request, c.expect) for c in CORPUS if _head_answer(c.request)[0] < 0]
LIMITED = [(c.name, c.request, c.expect) for c in spec.load_request_cases() if c.limits == SMALL_LIMITS]
_CHUNKED = [(c.name, c.request[_head_answer(c.request)[0]:], c) for c in spec.load_request_cases()
            if c.source.startswith("chunked.txt") and _head_answer(c.request)[0] > 0]
CHUNKED_OK = [(name, body, c.fields.get("body")) for name, body, c in _CHUNKED if c.expect == "ok"]
CHUNKED_BAD = [(name, body, c.expect) for name, body, c in _CHUNKED if c.expect != "ok"]


@pytest.fixture(params=parsers.names())
def parser_name(request):
    return request.param


def test_random_splits_pipelined(parser_name):
    """A pipelined stream parsed as it arrives in random pieces gives every head."""
    rnd = random.Random(7)
    reqs = KEEP_HEADS
    stream = b"".join(rnd.choice(reqs) for _ in range(200))
    p = parsers.create(parser_name)
    buf = bytearray()
    pos, got, fed = 0, 0, 0
    while fed < len(stream) or pos < len(buf):
        step = rnd.randint(1, 97)
        buf += stream[fed:fed + step]
        fed += step
        while True:
            n = p.parse_head(buf, pos, len(buf))
            assert n >= 0
            if n == 0:
                break
            pos += n
            got += 1
        if fed >= len(stream):
            break
    assert got == 200 and pos == len(stream)


@pytest.mark.parametrize("head_memo", [False, True], ids=["memo-off", "memo-on"])
def test_memo_does_not_leak_between_different_heads(parser_name, head_memo):
    p = parsers.create(parser_name, head_memo=head_memo)
    a = b"GET /a HTTP/1.1\r\n" + H + b"\r\n"
    b = b"GET /a HTTP/1.1\r\n" + H + b"X: \x01\r\n\r\n"
    assert p.parse_head(a) == len(a)
    assert p.parse_head(b) == -400
    assert p.parse_head(a + a, len(a)) == len(a)
    assert p.info[1] == b"/a"
    ref = parsers.create(parser_name)
    assert ref.parse_head(a) == len(a)
    assert p.head() == ref.head()         # a memo hit gives the same table


def test_unknown_parser_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown parser 'nope'"):
        parsers.create("nope")


# --- the batch protocol: parse_heads -----------------------------------------
# heads without a body that keep the connection (from the corpus), with bodies added
BATCH_OK = KEEP_HEADS + [
    b"POST /p HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\nhello",
    b"POST /p HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"POST /p HTTP/1.1\r\n" + H + b"Content-Length: 0\r\n\r\n",
    b"GET /a HTTP/1.1\r\nX-Other: 1\r\n" + H + b"Connection: keep-alive\r\n\r\n",
]
BATCH_END = END_HEADS + [
    b"GET / HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
]


def _parse_heads(p):
    """The parser's own parse_heads, or the generic one over parse_head (numba)."""
    own = getattr(p, "parse_heads", None)
    return own or (lambda buf, start, end, max_count: parsers.parse_heads_by_head(p, buf, start, end, max_count))


def _heads_by_parse_head(p, buf, start, end, max_count):
    """The protocol spelled out with parse_head and info: what parse_heads must return."""
    out, pos = [], start
    while pos < end and len(out) < max_count:
        n = p.parse_head(buf, pos, end)
        out.append((n, p.info if n > 0 else None))
        if n <= 0 or out[-1][1][5] != BODY_NONE or not out[-1][1][4]:
            break
        pos += n
    return out


def _skip_body(p, buf, pos, end, info):
    """The position after the body of a head ending at pos, or None while incomplete."""
    if info[5] == BODY_LENGTH:
        return pos + info[6] if end - pos >= info[6] else None
    n, _ = p.parse_chunked(buf, pos, end)
    assert n >= 0
    return pos + n if n > 0 else None


@pytest.mark.parametrize("fold_runs", [False, True], ids=["fold-off", "fold-on"])
@pytest.mark.parametrize("head_memo", [False, True], ids=["memo-off", "memo-on"])
@pytest.mark.parametrize("seed", range(4))
def test_parse_heads_equals_parse_head(parser_name, head_memo, fold_runs, seed):
    """A stream of mixed requests (bodies, and maybe an error or a closing
    request at the end) arriving in random pieces: every parse_heads answer
    equals the heads given one by one by parse_head."""
    rnd = random.Random(seed)
    reqs = [rnd.choice(BATCH_OK) for _ in range(120)]
    if seed % 2:
        reqs.append(rnd.choice(BATCH_END))
    stream = b"".join(reqs)
    p = parsers.create(parser_name, head_memo=head_memo, fold_runs=fold_runs)
    parse_heads = _parse_heads(p)
    ref = parsers.create(parser_name)
    buf = bytearray()
    pos, fed, heads, finished = 0, 0, 0, False
    while not finished and fed < len(stream):
        step = rnd.randint(1, 400)
        buf += stream[fed:fed + step]
        fed += step
        while True:
            max_count = rnd.randint(1, 40)
            got = parse_heads(buf, pos, len(buf), max_count)
            want = _heads_by_parse_head(ref, buf, pos, len(buf), max_count)
            assert got == want, (pos, len(buf))
            if not got:
                assert pos == len(buf)
                break
            for n, info in got[:-1]:
                pos += n
            heads += len(got)
            n, info = got[-1]
            if n <= 0:
                heads -= 1
                finished = n < 0
                break
            if not info[4] and info[5] == BODY_NONE:
                finished = True
                break
            if info[5] == BODY_NONE:
                pos += n
                continue
            after = _skip_body(ref, buf, pos + n, len(buf), info)
            if after is None:       # the body is not all here: parse the head again later
                heads -= 1
                break
            pos = after
            if not info[4]:
                finished = True
                break
    assert finished or pos == len(stream)
    assert heads >= 120


def test_parse_heads_edges(parser_name):
    p = parsers.create(parser_name)
    parse_heads = _parse_heads(p)
    a = b"GET /a HTTP/1.1\r\n" + H + b"\r\n"
    assert parse_heads(a, 0, 0, 10) == []                  # start == end
    assert parse_heads(a * 3, len(a) * 3, len(a) * 3, 10) == []
    out = parse_heads(a * 3, 0, len(a) * 3, 2)               # max_count
    assert [n for n, _ in out] == [len(a)] * 2
    assert [n for n, _ in parse_heads(a * 3, 0, len(a) * 3, None)] == [len(a)] * 3   # no limit
    assert parse_heads(a * 3 + a[:5], 0, len(a) * 3 + 5, 10)[-1] == (0, None)   # need more
    out = parse_heads(a + b"GET / HTTP/1.1\r\n\r\n" + a, 0, 2 * len(a) + 18, 10)
    assert [n for n, _ in out] == [len(a), -400]               # an error ends the list
    # head() is defined again after parse_head on one of the heads
    assert p.parse_head(a * 3, len(a), len(a) * 3) == len(a)
    assert p.head().path == b"/a" and p.head().host == b"example.com"


@pytest.mark.parametrize("fold_runs", [False, True], ids=["fold-off", "fold-on"])
def test_folding_is_a_knob(parser_name, fold_runs):
    """Off (the default), every head of a run of identical heads gets its own
    info, built from its own bytes; on, the built-in parsers share one."""
    a = b"GET /a?x=1 HTTP/1.1\r\n" + H + b"\r\n"
    p = parsers.create(parser_name, fold_runs=fold_runs)
    own = getattr(p, "parse_heads", None)      # without one: the contract's head-by-head protocol
    out = _parse_heads(p)(a * 50, 0, len(a) * 50, None)
    assert [n for n, _ in out] == [len(a)] * 50
    assert len({info for _, info in out}) == 1          # equal values either way
    distinct = len({id(info) for _, info in out})
    if not fold_runs:
        assert distinct == 50
    elif own is not None and parser_name in ("python", "c"):
        assert distinct < 50


# --- the Python parser's two paths agree ---------------------------------------
COMMON_SHAPED = [c.request for c in CORPUS] + [
    b"CONNECT /x HTTP/1.1\r\n" + H + b"\r\n",
    b"GET /a%2 HTTP/1.1\r\n" + H + b"\r\n",
    b"GET /a?%41%4 HTTP/1.1\r\n" + H + b"\r\n",
    b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHOST: [::1]:80 \t\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + H + b"X: 1\r\nhost: y\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + H + b"Content-Length: 1\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + H + b"X-Connection: close\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + H + b"Connection: keep-alive\r\nConnection: close\r\n\r\n",
    b"GET / HTTP/1.0\r\n" + H + b"CONNECTION: Keep-Alive\r\n\r\n",
    b"GET / HTTP/1.0\r\n" + H + b"Connection: close, keep-alive\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + H + b"connection: CLOSE\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + H + b"Connection: Keep-Alive\r\nAccept: */*\r\n\r\n",
    b"GET / HTTP/1.0\r\n" + H + b"Accept: */*\r\nConnection: close\r\n\r\n",
    b"GET / HTTP/1.0\r\n" + H + b"Connection:keep-alive  \r\n\r\n",
    b"GET / HTTP/1.1\r\n" + H + b"Connection: upgrade\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + H + b"Connection: keep-alive\r\nX: 1\r\nConnection: keep-alive\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a%zz:80\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n",
    b"GET /%7e/a%2F?x=%41&y=%2 HTTP/1.1\r\n" + H + b"\r\n",
    b"GET /%7e/a%2F?x=%41&y=%20 HTTP/1.1\r\n" + H + b"\r\n",
    b"GET /a?b?c/d HTTP/1.1\r\n" + H + b"\r\n",
    b"GET / HTTP/1.1\r\n" + H + b"X: 1\r\nY: 2\r\nZ: 3\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + H + b"X: \x80\xff v\r\nContent-length: 0\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + H + b"Bad Name: 1\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + H + b"X:\x01\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + H + b"X: 1\n\r\n",
    (b"GET /app/7?id=42 HTTP/1.1\r\nHost: localhost:3275\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n"
     b"Accept: text/html,*/*;q=0.8\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, br\r\n"
     b"Cookie: " + b"k=v; " * 150 + b"z=1\r\nReferer: http://localhost/\r\nConnection: keep-alive\r\n\r\n"),
]


@pytest.mark.parametrize("limits", [None, SMALL_LIMITS, Limits(max_headers=1), Limits(max_headers=2)],
                         ids=["default", "small", "one-field", "two-fields"])
def test_python_common_head_path_agrees_with_exact_path(limits):
    """Whatever the common-head path answers, the exact path answers the same."""
    from kourier_lab.parsers.python import PythonParser
    p = PythonParser(limits) if limits else PythonParser()
    for raw in COMMON_SHAPED:
        for data in (raw, raw + raw):
            got = p.parse_head(data, 0, len(data))
            got_info = p.info if got > 0 else None
            want = p._parse(data, 0, len(data))
            assert got == want, raw
            if got > 0:
                assert got_info == p.info, raw
                batch = p.parse_heads(data, 0, len(data), 2)
                assert batch[0] == (got, got_info), raw
