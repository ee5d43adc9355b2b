"""The parser contract, over every registered parser variant.

Each case is raw bytes and what a strict RFC 9112 parser must give: the fields
of the request table, or the error status.  Every case is fed whole, byte by
byte (every prefix) and at random split points.
"""
import random

import pytest

from kourier_lab import parsers
from kourier_lab.http.limits import Limits
from kourier_lab.parsers import BODY_CHUNKED, BODY_LENGTH, BODY_NONE, FORM_ABSOLUTE, FORM_ASTERISK, \
    FORM_AUTHORITY, FORM_ORIGIN

H = b"Host: example.com\r\n"


def ok(**fields):
    return ("ok", fields)


# --- valid requests ---------------------------------------------------------
VALID = [
    ("plaintext", b"GET /hello HTTP/1.1\r\nHost: localhost:3275\r\n\r\n",
     ok(method=b"GET", path=b"/hello", query=None, version_minor=1, keep_alive=True, target_form=FORM_ORIGIN,
        host=b"localhost:3275", headers=[(b"Host", b"localhost:3275")], body_kind=BODY_NONE)),
    ("query", b"GET /a/b?x=1&y=/?z HTTP/1.1\r\n" + H + b"\r\n",
     ok(path=b"/a/b", query=b"x=1&y=/?z", target=b"/a/b?x=1&y=/?z")),
    ("empty query", b"GET /a? HTTP/1.1\r\n" + H + b"\r\n", ok(path=b"/a", query=b"")),
    ("every pchar", b"GET /azAZ09-._~!$&'()*+,;=:@%41%7e/x HTTP/1.1\r\n" + H + b"\r\n",
     ok(path=b"/azAZ09-._~!$&'()*+,;=:@%41%7e/x")),
    ("http/1.0 closes", b"GET / HTTP/1.0\r\n\r\n", ok(version_minor=0, keep_alive=False, host=None, headers=[])),
    ("http/1.0 keep-alive", b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", ok(keep_alive=True)),
    ("connection close", b"GET / HTTP/1.1\r\n" + H + b"Connection: foo, close\r\n\r\n", ok(keep_alive=False)),
    ("ows trimmed", b"GET / HTTP/1.1\r\nHost:\t example.com \t\r\nX-A:   a  b  \r\n\r\n",
     ok(headers=[(b"Host", b"example.com"), (b"X-A", b"a  b")], host=b"example.com")),
    ("empty value", b"GET / HTTP/1.1\r\n" + H + b"X-Empty:\r\n\r\n", ok(headers=[(b"Host", b"example.com"), (b"X-Empty", b"")])),
    ("obs-text value", b"GET / HTTP/1.1\r\n" + H + b"X-A: caf\xc3\xa9\x80\xff\r\n\r\n",
     ok(headers=[(b"Host", b"example.com"), (b"X-A", b"caf\xc3\xa9\x80\xff")])),
    ("leading crlf skipped", b"\r\n\r\nGET / HTTP/1.1\r\n" + H + b"\r\n", ok(method=b"GET", head_len=41)),
    ("content-length", b"POST /p HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\n",
     ok(body_kind=BODY_LENGTH, content_length=5, method=b"POST")),
    ("content-length repeated same", b"POST /p HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 005\r\n\r\n",
     ok(body_kind=BODY_LENGTH, content_length=5)),
    ("content-length list same", b"POST /p HTTP/1.1\r\n" + H + b"Content-Length: 5, 5\r\n\r\n", ok(content_length=5)),
    ("chunked", b"POST /p HTTP/1.1\r\n" + H + b"Transfer-Encoding: CHUNKED\r\n\r\n", ok(body_kind=BODY_CHUNKED)),
    ("chunked empty list elements", b"POST /p HTTP/1.1\r\n" + H + b"Transfer-Encoding: ,chunked, \r\n\r\n",
     ok(body_kind=BODY_CHUNKED)),
    ("expect", b"POST /p HTTP/1.1\r\n" + H + b"Content-Length: 1\r\nExpect: 100-Continue\r\n\r\n",
     ok(expect_continue=True)),
    ("expect ignored in 1.0", b"POST /p HTTP/1.0\r\nContent-Length: 1\r\nExpect: 100-continue\r\n\r\n",
     ok(expect_continue=False)),
    ("absolute-form", b"GET http://example.com:80/x/y?q HTTP/1.1\r\n" + H + b"\r\n",
     ok(target_form=FORM_ABSOLUTE, path=b"/x/y", query=b"q", target=b"http://example.com:80/x/y?q")),
    ("absolute-form no path", b"GET https://example.com HTTP/1.1\r\n" + H + b"\r\n",
     ok(target_form=FORM_ABSOLUTE, path=b"", query=None)),
    ("authority-form", b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
     ok(target_form=FORM_AUTHORITY, target=b"example.com:443", method=b"CONNECT")),
    ("asterisk-form", b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n", ok(target_form=FORM_ASTERISK, target=b"*")),
    ("http/1.2 as 1.1", b"GET / HTTP/1.2\r\n" + H + b"\r\n", ok(version_minor=1, keep_alive=True)),
    ("http/1.9 as 1.1", b"GET / HTTP/1.9\r\n" + H + b"\r\n", ok(version_minor=1)),
    ("custom method", b"PURGE-ALL /x HTTP/1.1\r\n" + H + b"\r\n", ok(method=b"PURGE-ALL")),
    ("empty host", b"GET / HTTP/1.1\r\nHost:\r\n\r\n", ok(host=b"")),
    ("ipv6 host", b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", ok(host=b"[::1]:8080")),
    ("many headers", b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-%d: %d\r\n" % (i, i) for i in range(50)) + b"\r\n",
     ok(method=b"GET")),
]

# --- invalid requests: (name, bytes, status) -------------------------------
INVALID = [
    ("bare LF request line", b"GET / HTTP/1.1\nHost: x\r\n\r\n", 400),
    ("bare LF everywhere", b"GET / HTTP/1.1\nHost: x\n\n", 400),
    ("bare LF header", b"GET / HTTP/1.1\r\nHost: x\nA: b\r\n\r\n", 400),
    ("bare LF end of head", b"GET / HTTP/1.1\r\nHost: x\n\n", 400),
    ("bare CR", b"GET / HTTP/1.1\r\nHost: x\rA: b\r\n\r\n", 400),
    ("two spaces", b"GET  / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("trailing space", b"GET / HTTP/1.1 \r\n" + H + b"\r\n", 400),
    ("tab separator", b"GET\t/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("no version", b"GET /\r\n" + H + b"\r\n", 400),
    ("lowercase version", b"GET / http/1.1\r\n" + H + b"\r\n", 400),
    ("version garbage", b"GET / HTTP/1.x\r\n" + H + b"\r\n", 400),
    ("version 2.0", b"GET / HTTP/2.0\r\n" + H + b"\r\n", 505),
    ("version 0.9", b"GET / HTTP/0.9\r\n" + H + b"\r\n", 505),
    ("version two digits", b"GET / HTTP/11.1\r\n" + H + b"\r\n", 400),
    ("method not token", b"GE(T / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("bad path byte", b"GET /a b HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("path quote", b'GET /a"b HTTP/1.1\r\n' + H + b"\r\n", 400),
    ("path fragment", b"GET /a#b HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("path NUL", b"GET /a\x00 HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("path DEL", b"GET /a\x7f HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("path obs-text", b"GET /a\x80 HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("query backslash", b"GET /a?b\\ HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("query bracket", b"GET /a?[ HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("bad pct", b"GET /a%zz HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("short pct", b"GET /a%4 HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("pct at end", b"GET /a% HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("bad pct query", b"GET /a?%g0 HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("relative target", b"GET a/b HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("asterisk not options", b"GET * HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("connect origin-form", b"CONNECT /x HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("authority not connect", b"GET example.com:80 HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("absolute userinfo", b"GET http://u@example.com/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("no host", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("two hosts", b"GET / HTTP/1.1\r\n" + H + H + b"\r\n", 400),
    ("two hosts 1.0", b"GET / HTTP/1.0\r\n" + H + H + b"\r\n", 400),
    ("bad host", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    ("bad host char", b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
    ("space before colon", b"GET / HTTP/1.1\r\n" + H + b"X-A : b\r\n\r\n", 400),
    ("tab before colon", b"GET / HTTP/1.1\r\n" + H + b"X-A\t: b\r\n\r\n", 400),
    ("empty name", b"GET / HTTP/1.1\r\n" + H + b": b\r\n\r\n", 400),
    ("no colon", b"GET / HTTP/1.1\r\n" + H + b"X-A b\r\n\r\n", 400),
    ("bad name byte", b"GET / HTTP/1.1\r\n" + H + b"X(A: b\r\n\r\n", 400),
    ("obs-fold", b"GET / HTTP/1.1\r\n" + H + b"X-A: b\r\n c\r\n\r\n", 400),
    ("leading whitespace first field", b"GET / HTTP/1.1\r\n " + H + b"\r\n", 400),
    ("NUL in value", b"GET / HTTP/1.1\r\n" + H + b"X-A: b\x00c\r\n\r\n", 400),
    ("CTL in value", b"GET / HTTP/1.1\r\n" + H + b"X-A: b\x01c\r\n\r\n", 400),
    ("DEL in value", b"GET / HTTP/1.1\r\n" + H + b"X-A: \x7f\r\n\r\n", 400),
    ("CL and TE", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    ("CL differing", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\n", 400),
    ("CL list differing", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3, 4\r\n\r\n", 400),
    ("CL signed", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +3\r\n\r\n", 400),
    ("CL negative", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -3\r\n\r\n", 400),
    ("CL hex", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 0x3\r\n\r\n", 400),
    ("CL inner space", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1 2\r\n\r\n", 400),
    ("CL empty", b"POST / HTTP/1.1\r\n" + H + b"Content-Length:\r\n\r\n", 400),
    ("CL too large", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 99999999999\r\n\r\n", 413),
    ("CL overflow", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 999999999999999999999999\r\n\r\n", 413),
    ("TE not final", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, gzip\r\n\r\n", 400),
    ("TE chunked twice", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, chunked\r\n\r\n", 400),
    ("TE unknown", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\n", 400),
    ("TE gzip chunked", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n", 501),
    ("TE obfuscated", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: xchunked\r\n\r\n", 400),
    ("TE with param", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked;a=b\r\n\r\n", 400),
    ("TE quoted", b'POST / HTTP/1.1\r\n' + H + b'Transfer-Encoding: "chunked"\r\n\r\n', 400),
    ("TE in 1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    ("TE empty", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding:\r\n\r\n", 400),
    ("expect other", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1\r\nExpect: 200-ok\r\n\r\n", 417),
    ("empty request line", b"\n\r\n", 400),
    ("only spaces", b"   \r\n\r\n", 400),
]

SMALL = Limits(max_request_line=64, max_header_bytes=256, max_headers=4, max_body=1000)
LIMITED = [
    ("request line too long", b"GET /" + b"a" * 100 + b" HTTP/1.1\r\n" + H + b"\r\n", 414),
    ("request line too long, garbage", b"\x00" * 100, 414),
    ("request line just fits", b"GET /" + b"a" * 50 + b" HTTP/1.1\r\n" + H + b"\r\n", "ok"),
    ("head too large", b"GET / HTTP/1.1\r\n" + H + b"X-A: " + b"a" * 300 + b"\r\n\r\n", 431),
    ("head too large, never ends", b"GET / HTTP/1.1\r\n" + H + b"X-A: " + b"a" * 300, 431),
    ("too many headers", b"GET / HTTP/1.1\r\n" + H + b"A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", 431),
    ("four headers fit", b"GET / HTTP/1.1\r\n" + H + b"A: 1\r\nB: 2\r\nC: 3\r\n\r\n", "ok"),
    ("body too large", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1001\r\n\r\n", 413),
    ("body fits", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1000\r\n\r\n", "ok"),
]


@pytest.fixture(params=parsers.names())
def parser_name(request):
    return request.param


def _check_prefixes(p, data, whole):
    """Every proper prefix gives 0 or the whole input's error."""
    for k in range(len(data)):
        r = p.parse_head(data, 0, k)
        assert r == 0 or (whole < 0 and r == whole), (k, r, whole, data[:k])


def _fields_match(p, n, raw, fields):
    head = p.head()
    assert head.head_len == n
    for k, v in fields.items():
        assert getattr(head, k) == v, (k, getattr(head, k), v)
    method, path, query, minor, keep_alive, body_kind, cl, expect = p.info
    assert (method, path, query, minor, keep_alive, body_kind, cl, expect) == (
        head.method, head.path, head.query, head.version_minor, head.keep_alive, head.body_kind,
        head.content_length, head.expect_continue)


@pytest.mark.parametrize("name,raw,expected", VALID, ids=[c[0] for c in VALID])
def test_valid(parser_name, name, raw, expected):
    p = parsers.create(parser_name)
    n = p.parse_head(raw)
    assert n == len(raw), (n, len(raw))
    _fields_match(p, n, raw, expected[1])
    # trailing bytes (a pipelined next request) do not change the answer
    buf = bytearray(b"xx" + raw + b"GET /next HTTP/1.1\r\n")
    assert p.parse_head(buf, 2, len(buf)) == n
    _fields_match(p, n, raw, expected[1])
    _check_prefixes(parsers.create(parser_name), raw, n)


@pytest.mark.parametrize("name,raw,status", INVALID, ids=[c[0] for c in INVALID])
def test_invalid(parser_name, name, raw, status):
    p = parsers.create(parser_name)
    assert p.parse_head(raw) == -status
    _check_prefixes(p, raw, -status)
    assert p.parse_head(bytearray(raw) + b"GET / HTTP/1.1\r\n" + H + b"\r\n") == -status


@pytest.mark.parametrize("name,raw,status", LIMITED, ids=[c[0] for c in LIMITED])
def test_limits(parser_name, name, raw, status):
    p = parsers.create(parser_name, SMALL)
    r = p.parse_head(raw)
    if status == "ok":
        assert r == len(raw)
    else:
        assert r == -status
    _check_prefixes(p, raw, r)


def test_random_splits_pipelined(parser_name):
    """A pipelined stream parsed as it arrives in random pieces gives every head."""
    rnd = random.Random(7)
    reqs = [c[1] for c in VALID if c[2][1].get("body_kind", 0) == 0]
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


# --- chunked bodies ---------------------------------------------------------
CHUNKED_OK = [
    ("simple", b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
    ("two chunks", b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world"),
    ("hex upper lower", b"A\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n", b"0123456789" * 2),
    ("leading zeros", b"0005\r\nhello\r\n000\r\n\r\n", b"hello"),
    ("extensions", b"5;name=value;flag ; q=\"a \\\" b\"\r\nhello\r\n0;last\r\n\r\n", b"hello"),
    ("trailers", b"5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-B: \r\n\r\n", b"hello"),
    ("empty", b"0\r\n\r\n", b""),
]
CHUNKED_BAD = [
    ("no crlf after data", b"5\r\nhelloX\r\n0\r\n\r\n", 400),
    ("short data", b"5\r\nhell\r\n0\r\n\r\n", 400),
    ("bare LF size line", b"5\nhello\r\n0\r\n\r\n", 400),
    ("not hex", b"g\r\nhello\r\n0\r\n\r\n", 400),
    ("empty size", b"\r\nhello\r\n0\r\n\r\n", 400),
    ("negative", b"-5\r\nhello\r\n0\r\n\r\n", 400),
    ("space in size", b"5 \r\nhello\r\n0\r\n\r\n", 400),
    ("overflow", b"10000000000000000\r\nhello\r\n0\r\n\r\n", 400),
    ("too large", b"FFFFFFFF\r\n", 413),
    ("bad extension", b"5;=x\r\nhello\r\n0\r\n\r\n", 400),
    ("bad trailer", b"5\r\nhello\r\n0\r\nX A: b\r\n\r\n", 400),
    ("trailer bare LF", b"5\r\nhello\r\n0\r\nX: b\n\r\n", 400),
    ("chunk line too long", b"5;" + b"a" * 5000 + b"\r\nhello\r\n0\r\n\r\n", 400),
]


@pytest.mark.parametrize("name,raw,body", CHUNKED_OK, ids=[c[0] for c in CHUNKED_OK])
def test_chunked_ok(parser_name, name, raw, body):
    p = parsers.create(parser_name)
    buf = bytearray(b"HEAD" + raw + b"NEXT")
    n, got = p.parse_chunked(buf, 4, len(buf))
    assert n == len(raw) and got == body
    for k in range(len(raw)):
        r, _ = p.parse_chunked(bytearray(raw[:k]), 0, k)
        assert r == 0, (k, r)


@pytest.mark.parametrize("name,raw,status", CHUNKED_BAD, ids=[c[0] for c in CHUNKED_BAD])
def test_chunked_bad(parser_name, name, raw, status):
    p = parsers.create(parser_name, Limits(max_body=100000))
    n, body = p.parse_chunked(bytearray(raw), 0, len(raw))
    assert n == -status and body is None
    for k in range(len(raw)):
        r, _ = p.parse_chunked(bytearray(raw[:k]), 0, k)
        assert r in (0, -status), (k, r)


def test_unknown_parser_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown parser 'nope'"):
        parsers.create("nope")


# --- the batch protocol: parse_heads -----------------------------------------
# VALID heads without a body (there their bodies are missing) that keep the connection
BATCH_OK = [c[1] for c in VALID if c[2][1].get("keep_alive", True)
            and b"Content-Length" not in c[1] and b"Transfer-Encoding" not in c[1]] + [
    b"POST /p HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\nhello",
    b"POST /p HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"POST /p HTTP/1.1\r\n" + H + b"Content-Length: 0\r\n\r\n",
    b"GET /a HTTP/1.1\r\nX-Other: 1\r\n" + H + b"Connection: keep-alive\r\n\r\n",
]
BATCH_END = [c[1] for c in INVALID] + [
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


@pytest.mark.parametrize("head_memo", [False, True], ids=["memo-off", "memo-on"])
@pytest.mark.parametrize("seed", range(4))
def test_parse_heads_equals_parse_head(parser_name, head_memo, seed):
    """A stream of mixed requests (bodies, and maybe an error or a closing
    request at the end) arriving in random pieces: every parse_heads answer
    equals the heads given one by one by parse_head."""
    rnd = random.Random(seed)
    reqs = [rnd.choice(BATCH_OK) for _ in range(120)]
    if seed % 2:
        reqs.append(rnd.choice(BATCH_END))
    stream = b"".join(reqs)
    p = parsers.create(parser_name, head_memo=head_memo)
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


# --- the Python parser's two paths agree ---------------------------------------
COMMON_SHAPED = [c[1] for c in VALID + INVALID] + [
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
]


@pytest.mark.parametrize("limits", [None, SMALL, Limits(max_headers=1), Limits(max_headers=2)],
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
