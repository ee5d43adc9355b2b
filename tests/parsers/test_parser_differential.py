"""Differential tests: every registered parser gives exactly the reference
(pure-Python) parser's answer — the fields of the request table or the status —
on random and mutated requests, fed whole and split at random points.

The C parser is run under every SIMD path this CPU supports (scalar, SSE4.2,
AVX2) on the same inputs.  The corpus below is also what the sanitizer build
(tests/native/test_native_sanitizers.py) replays.
"""
import dataclasses
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kourier_lab import parsers
from kourier_lab.http.limits import DEFAULT_LIMITS, Limits

REFERENCE = "python"
OTHERS = [n for n in parsers.names() if n != REFERENCE]

pytestmark = pytest.mark.skipif(
    REFERENCE not in parsers.names() or not OTHERS,
    reason=f"needs the reference parser and another one; unavailable: {parsers.unavailable()}")

try:
    from kourier_lab.parsers import c as c_parser
    SIMD_PATHS = c_parser.simd_supported()
except ImportError:  # pragma: no cover - C parser not built
    c_parser = None
    SIMD_PATHS = []

BROWSER = (b"GET /static/js/app.min.js?v=3.14.1&lang=en-US HTTP/1.1\r\n"
           b"Host: www.example.com\r\n"
           b"Connection: keep-alive\r\n"
           b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
           b"Chrome/124.0.0.0 Safari/537.36\r\n"
           b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n"
           b"Accept-Encoding: gzip, deflate, br, zstd\r\n"
           b"Accept-Language: en-US,en;q=0.9,fr;q=0.8\r\n"
           b"Cache-Control: max-age=0\r\n"
           b"Referer: https://www.example.com/index.html\r\n"
           b"Cookie: session=8f2a9c1e7b3d4f60a1b2c3d4e5f60718; theme=dark; _ga=GA1.2.123456789.987654321\r\n"
           b"Upgrade-Insecure-Requests: 1\r\n"
           b"\r\n")
PLAINTEXT = b"GET /hello HTTP/1.1\r\nHost: localhost:3275\r\n\r\n"

CORPUS = [
    PLAINTEXT,
    BROWSER,
    b"GET / HTTP/1.0\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: a\r\n\r\n",
    b"GET /a/b%20c/d?x=1&y=%2F&z=/?q HTTP/1.1\r\nHost: example.com:8080\r\n\r\n",
    b"GET /a? HTTP/1.1\r\nHost: h\r\nX-Empty:\r\nX-Ws: \t a b \t\r\n\r\n",
    b"POST /submit HTTP/1.1\r\nHost: example.com\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\n",
    b"POST /upload HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
    b"PUT /x HTTP/1.1\r\nHost: [::1]:8080\r\nContent-Length: 007, 7\r\nConnection: close, upgrade\r\n\r\n",
    b"GET http://example.com:80/x/y?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n",
    b"GET https://[2001:db8::1]/ HTTP/1.1\r\nHost: x\r\n\r\n",
    b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: example.com\r\n\r\n",
    b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"DELETE /items/42 HTTP/1.1\r\nHost: api.example.com\r\nX-Obs: caf\xc3\xa9 \x80\xff\r\n"
    b"Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abc\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\n" + b"".join(b"X-H%d: value-%d\r\n" % (i, i) for i in range(30)) + b"\r\n",
    b"GET /" + b"p" * 70 + b"?" + b"q" * 70 + b" HTTP/1.1\r\nHost: h\r\nX-Long: " + b"v" * 100 + b"\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    b"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\nHost: x\r\n\r\n",
]

# header lines that exercise the framing rules when spliced into a request
TRICKY_LINES = [
    b"Host: other\r\n", b"host: [::1]\r\n", b"Host: a b\r\n", b"Host: a:b\r\n", b"Host:\r\n",
    b"Content-Length: 5\r\n", b"Content-Length: 05\r\n", b"content-length: 6\r\n", b"Content-Length: 5, 5\r\n",
    b"Content-Length: +5\r\n", b"Content-Length: \r\n", b"Content-Length: 99999999999999999999\r\n",
    b"Content-Length: 1000001\r\n", b"Transfer-Encoding: chunked\r\n", b"transfer-encoding: CHUNKED\r\n",
    b"Transfer-Encoding: gzip\r\n", b"Transfer-Encoding: gzip, chunked\r\n", b"Transfer-Encoding: ,\r\n",
    b"Transfer-Encoding: chunked;x=1\r\n", b"Connection: close\r\n", b"Connection: keep-alive\r\n",
    b"connection: Keep-Alive, Close\r\n", b"Expect: 100-continue\r\n", b"Expect: nope\r\n",
    b" folded\r\n", b"\tfolded\r\n", b"X-A : b\r\n", b": novalue\r\n", b"X-Ctl: a\x01b\r\n",
    b"X-Nul: \x00\r\n", b"X-Del: \x7f\r\n", b"Bad\x80Name: v\r\n", b"X: \r\r\n", b"X: a\rb\r\n",
]
INTERESTING = b"\r\n \t:%?/#\x00\x01\x0b\x7f\x80\xff,;\"=[]@*\\-._~!$&'()+01aAfFgGzZH"

SMALL = Limits(max_request_line=64, max_header_bytes=256, max_headers=4, max_body=1000)
FEW_FIELDS = Limits(max_headers=2)
LIMITS = [DEFAULT_LIMITS, SMALL, Limits(max_request_line=20, max_header_bytes=40, max_headers=1, max_body=10)]


# --- running every parser ----------------------------------------------------

def _variants():
    """(label, parser name, SIMD path or None) for every implementation to compare."""
    out = []
    for name in OTHERS:
        if name == "c" and SIMD_PATHS:
            out += [(f"c/{path}", name, path) for path in SIMD_PATHS]
        else:
            out.append((name, name, None))
    return out


VARIANTS = _variants()


class _Simd:
    """Switch the C parser's SIMD path for a block, restoring the previous one."""

    def __init__(self, path):
        self.path = path

    def __enter__(self):
        self.prev = c_parser.set_simd(self.path) if self.path else None

    def __exit__(self, *exc):
        if self.prev:
            c_parser.set_simd(self.prev)


def head_outcome(p, buf, start=0, end=None):
    n = p.parse_head(buf, start, end)
    if n > 0:
        return n, dataclasses.asdict(p.head()), tuple(p.info)
    return (n,)


def chunked_outcome(p, buf, start=0, end=None):
    n, body = p.parse_chunked(buf, start, end)
    return n, None if body is None else bytes(body)


def assert_heads_agree(data: bytes, limits: Limits, start_pad: bytes = b""):
    """Every implementation gives the reference's outcome, on bytes, bytearray
    and memoryview, and from an offset inside a bigger buffer."""
    ref = head_outcome(parsers.create(REFERENCE, limits), data)
    padded = bytearray(start_pad + data)
    for label, name, path in VARIANTS:
        with _Simd(path):
            p = parsers.create(name, limits)
            got = head_outcome(p, data)
            assert got == ref, (label, data, limits)
            assert head_outcome(p, padded, len(start_pad), len(padded)) == ref, (label, "offset", data)
            assert head_outcome(p, memoryview(data)) == ref, (label, "memoryview", data)
    return ref


def assert_splits_agree(data: bytes, limits: Limits, cuts):
    """Fed as it arrives (a growing bytearray cut at `cuts`): every prefix gives
    0 or the whole input's answer, and the same answer in every implementation."""
    whole = head_outcome(parsers.create(REFERENCE, limits), data)[0]
    impls = [("python", parsers.create(REFERENCE, limits), None)]
    impls += [(label, parsers.create(name, limits), path) for label, name, path in VARIANTS]
    results = {}
    for label, p, path in impls:
        with _Simd(path):
            buf = bytearray()
            got = []
            prev = 0
            for cut in list(cuts) + [len(data)]:
                buf += data[prev:cut]
                prev = cut
                r = p.parse_head(buf, 0, len(buf))
                got.append(r)
                # a prefix: 0, or the whole input's error, or the whole input's head
                # once it is all there
                assert r == 0 or r == whole, (label, len(buf), r, whole, data)
                assert r <= len(buf)
            assert got[-1] == whole, (label, data)
            results[label] = got
    first = results["python"]
    for label, got in results.items():
        assert got == first, (label, got, first, data)


# --- strategies ----------------------------------------------------------------

@st.composite
def mutated_requests(draw):
    data = bytearray(draw(st.sampled_from(CORPUS)))
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["insert", "delete", "replace", "lf", "cr", "dup_line", "tricky",
                                     "truncate", "case", "version", "pad_value"]))
        pos = draw(st.integers(0, max(0, len(data))))
        any_byte = st.one_of(st.sampled_from(list(INTERESTING)), st.integers(0, 255))
        if kind == "insert":
            data[pos:pos] = bytes([draw(any_byte)])
        elif kind == "delete" and data:
            del data[pos:pos + draw(st.integers(1, 3))]
        elif kind == "replace" and pos < len(data):
            data[pos] = draw(any_byte)
        elif kind in ("lf", "cr"):
            # a CRLF becomes a bare LF or a bare CR
            crlfs = [i for i in range(len(data) - 1) if data[i:i + 2] == b"\r\n"]
            if crlfs:
                i = draw(st.sampled_from(crlfs))
                data[i:i + 2] = b"\n" if kind == "lf" else b"\r"
        elif kind in ("dup_line", "tricky"):
            starts = [i + 1 for i in range(len(data)) if data[i] == 10]
            if starts:
                i = draw(st.sampled_from(starts))
                if kind == "tricky":
                    line = draw(st.sampled_from(TRICKY_LINES))
                else:
                    j = data.find(b"\n", i)
                    line = bytes(data[i:j + 1]) if j >= 0 else b""
                data[i:i] = line
        elif kind == "truncate":
            del data[pos:]
        elif kind == "case":
            k = draw(st.integers(1, 12))
            data[pos:pos + k] = bytes(data[pos:pos + k]).swapcase()
        elif kind == "version":
            i = data.find(b"HTTP/1.")
            if i >= 0:
                data[i:i + 8] = draw(st.sampled_from([b"HTTP/1.0", b"HTTP/1.1", b"HTTP/2.0", b"HTTP/1.2",
                                                      b"HTTP/0.9", b"http/1.1", b"HTTP/11.", b"HTTP/1.x"]))
        elif kind == "pad_value":
            # long runs move the interesting bytes across 16/32-byte SIMD blocks
            i = data.find(b": ")
            if i >= 0:
                data[i + 2:i + 2] = draw(st.sampled_from([b"a", b" ", b"\t", b"%41", b"x" * 15, b"y" * 31,
                                                          b"z" * 33, b"\x80" * 17]))
    return bytes(data)


random_bytes = st.binary(min_size=0, max_size=120).map(lambda b: b"GET /" + b)

SETTINGS = settings(max_examples=400, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# --- head: whole input -----------------------------------------------------------

def test_corpus_agrees():
    seen = set()
    for data in CORPUS:
        for limits in LIMITS:
            seen.add(assert_heads_agree(data, limits, b"\r\nxx")[0])
    # the corpus really covers heads and errors
    assert any(n > 0 for n in seen) and {-400, -501, -505} <= seen


@SETTINGS
@given(mutated_requests(), st.sampled_from(LIMITS))
def test_mutated_requests_agree(data, limits):
    assert_heads_agree(data, limits, b"GET / HTTP/1.1\r\n")


@SETTINGS
@given(random_bytes, st.sampled_from(LIMITS))
def test_random_bytes_agree(data, limits):
    assert_heads_agree(data, limits)


# --- head: split at random points ------------------------------------------------

@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated_requests(), st.sampled_from(LIMITS), st.data())
def test_split_feeding_agrees(data, limits, draw):
    cuts = sorted(draw.draw(st.lists(st.integers(0, len(data)), max_size=8)))
    assert_splits_agree(data, limits, cuts)


@pytest.mark.parametrize("limits", LIMITS, ids=["default", "small", "tiny"])
def test_every_prefix_of_corpus_agrees(limits):
    for data in CORPUS:
        assert_splits_agree(data, limits, range(len(data)))


# --- framing rules: every pair of tricky field lines ------------------------------

@pytest.mark.parametrize("version", [b"HTTP/1.1", b"HTTP/1.0"])
def test_pairs_of_tricky_lines_agree(version):
    statuses = set()
    for a in TRICKY_LINES:
        for b in TRICKY_LINES:
            data = b"POST /x " + version + b"\r\nHost: h\r\n" + a + b + b"\r\n"
            statuses.add(assert_heads_agree(data, DEFAULT_LIMITS)[0])
            statuses.add(assert_heads_agree(data, FEW_FIELDS)[0])
    expected = {-400, -413, -417, -431} | ({-501} if version == b"HTTP/1.1" else set())
    assert expected <= statuses and any(n > 0 for n in statuses)


# --- SIMD block boundaries: a bad byte at every offset of long fields -------------

BAD_FOR = {
    "path": [b" ", b"\x00", b"\x7f", b"\x80", b"#", b"%", b"%4", b"\"", b"{", b"?"],
    "query": [b" ", b"\x00", b"\x80", b"#", b"%g", b"[", b"?", b"/"],
    "name": [b" ", b"\x00", b"(", b"\x80", b"@", b"\t", b"\x7f"],
    "value": [b"\x00", b"\x01", b"\x7f", b"\x80", b"\t", b"\r", b"\n", b"\x1f", b"\x20", b"\xff"],
}


def _embed(where: str, field: bytes) -> bytes:
    if where == "path":
        return b"GET /" + field + b" HTTP/1.1\r\nHost: h\r\n\r\n"
    if where == "query":
        return b"GET /p?" + field + b" HTTP/1.1\r\nHost: h\r\n\r\n"
    if where == "name":
        return b"GET / HTTP/1.1\r\nHost: h\r\nX" + field + b": v\r\n\r\n"
    return b"GET / HTTP/1.1\r\nHost: h\r\nX-V: " + field + b"\r\n\r\n"


@pytest.mark.parametrize("where", sorted(BAD_FOR))
def test_bad_byte_at_every_simd_offset(where):
    filler = {"path": b"a", "query": b"b", "name": b"n", "value": b"v"}[where]
    for length in (0, 1, 14, 15, 16, 17, 30, 31, 32, 33, 47, 48, 63, 64, 65, 70):
        for pos in range(length + 1):
            for bad in BAD_FOR[where]:
                field = filler * pos + bad + filler * (length - pos)
                data = _embed(where, field)
                assert_heads_agree(data, DEFAULT_LIMITS)
                # the same head cut right after the field: SIMD tails near the end
                cut = data.index(field) + len(field)
                assert_heads_agree(data[:cut + 1], DEFAULT_LIMITS)


# --- chunked bodies ----------------------------------------------------------------

CHUNKED = [
    b"5\r\nhello\r\n0\r\n\r\n",
    b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    b"A\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n",
    b"0005\r\nhello\r\n000\r\n\r\n",
    b"5;name=value;flag ; q=\"a \\\" b\"\r\nhello\r\n0;last\r\n\r\n",
    b"5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-B: \r\n\r\n",
    b"0\r\n\r\n",
    b"1F\r\n" + b"d" * 31 + b"\r\n0\r\n\r\n",
]


@st.composite
def mutated_chunked(draw):
    data = bytearray(draw(st.sampled_from(CHUNKED)))
    for _ in range(draw(st.integers(0, 3))):
        pos = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["insert", "delete", "replace", "truncate"]))
        b = draw(st.one_of(st.sampled_from(list(b"\r\n ;=\"\\\t0aFg-:x")), st.integers(0, 255)))
        if kind == "insert":
            data[pos:pos] = bytes([b])
        elif kind == "delete":
            del data[pos:pos + 1]
        elif kind == "replace" and pos < len(data):
            data[pos] = b
        elif kind == "truncate":
            del data[pos:]
    return bytes(data)


def assert_chunked_agree(data, limits):
    ref = chunked_outcome(parsers.create(REFERENCE, limits), bytearray(data))
    for label, name, path in VARIANTS:
        with _Simd(path):
            p = parsers.create(name, limits)
            buf = bytearray(b"HEAD" + data)
            assert chunked_outcome(p, buf, 4, len(buf)) == ref, (label, data)
            assert bytes(buf) == b"HEAD" + data, "the caller's buffer must stay untouched"
            assert chunked_outcome(p, data) == ref, (label, data)
    return ref


def test_chunked_corpus_agrees():
    for data in CHUNKED:
        for limits in LIMITS:
            assert_chunked_agree(data, limits)
            for k in range(len(data)):
                assert_chunked_agree(data[:k], limits)


@SETTINGS
@given(mutated_chunked(), st.sampled_from(LIMITS))
def test_mutated_chunked_agrees(data, limits):
    assert_chunked_agree(data, limits)


# --- C-only entry points ---------------------------------------------------------

needs_c = pytest.mark.skipif(c_parser is None, reason="the C parser is not built")


@needs_c
@SETTINGS
@given(mutated_chunked(), st.sampled_from(LIMITS))
def test_c_in_place_chunked_matches_decoder(data, limits):
    """kl_parse_chunked (in place, for C loops) gives the decoder's answer, leaves
    the buffer untouched unless complete, and then holds the body at its start."""
    from kourier_lab._native_parser import ffi, lib
    p = parsers.create("c", limits)
    n, body = p.parse_chunked(data, 0)
    buf = bytearray(data)
    body_len = ffi.new("int64_t *")
    r = lib.kl_parse_chunked(ffi.from_buffer("uint8_t[]", buf), len(buf), p._lim, body_len)
    assert r == n
    if n > 0:
        assert bytes(buf[:body_len[0]]) == body
        assert bytes(buf[n:]) == data[n:]
    else:
        assert bytes(buf) == data


@needs_c
def test_c_batch_entry_point_parses_pipelined_heads():
    from kourier_lab._native_parser import ffi, lib
    rnd = random.Random(3)
    heads = [d for d in CORPUS if parsers.create(REFERENCE).parse_head(d) == len(d)]
    stream = b"".join(rnd.choice(heads) for _ in range(300))
    p = parsers.create("c")
    consumed, last = ffi.new("size_t *"), ffi.new("int *")
    for path in SIMD_PATHS:
        with _Simd(path):
            n = lib.kl_parse_batch(ffi.from_buffer("uint8_t[]", stream), len(stream), p._lim, p._req,
                                   10 ** 6, consumed, last)
            assert (n, consumed[0], last[0]) == (300, len(stream), 0)
            # stops at an incomplete tail, and at an error with its status
            n = lib.kl_parse_batch(ffi.from_buffer("uint8_t[]", stream + b"GET /"), len(stream) + 5,
                                   p._lim, p._req, 10 ** 6, consumed, last)
            assert (n, consumed[0], last[0]) == (300, len(stream), 0)
            bad = stream + b"GET /\x00 HTTP/1.1\r\n\r\n"
            n = lib.kl_parse_batch(ffi.from_buffer("uint8_t[]", bad), len(bad), p._lim, p._req,
                                   10 ** 6, consumed, last)
            assert (n, consumed[0], last[0]) == (300, len(stream), -400)


@needs_c
def test_c_simd_selection():
    assert "scalar" in SIMD_PATHS
    before = c_parser.simd()
    for path in SIMD_PATHS:
        with _Simd(path):
            assert c_parser.simd() == path
    assert c_parser.simd() == before
    with pytest.raises(ValueError, match="unknown SIMD path"):
        c_parser.set_simd("neon")


@needs_c
def test_c_rejects_spans_outside_the_buffer():
    p = parsers.create("c")
    for buf in (PLAINTEXT, bytearray(PLAINTEXT), memoryview(PLAINTEXT)):
        for start, end in ((5, 2), (0, len(PLAINTEXT) + 1), (-1, 3)):
            with pytest.raises(ValueError, match="bad span"):
                p.parse_head(buf, start, end)
            with pytest.raises(ValueError, match="bad span"):
                p.parse_chunked(buf, start, end)
        assert p.parse_head(buf, 0, len(PLAINTEXT)) == len(PLAINTEXT)


@needs_c
def test_c_simd_path_from_the_environment():
    """KOURIER_LAB_SIMD picks the path at first use; an unknown or unsupported
    name falls back to the best path this CPU has."""
    import os
    import subprocess
    import sys
    code = "from kourier_lab.parsers import c; print(c.simd())"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    best = "avx2" if "avx2" in SIMD_PATHS else "sse42" if "sse42" in SIMD_PATHS else "scalar"
    for want, expect in [(p, p) for p in SIMD_PATHS] + [("neon", best), ("", best)]:
        env = dict(os.environ, KOURIER_LAB_SIMD=want, PYTHONPATH=root)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=root)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == expect, (want, out.stdout)
        assert ("KOURIER_LAB_SIMD='neon'" in out.stderr) == (want == "neon"), out.stderr


@SETTINGS
@given(st.lists(st.sampled_from(CORPUS[:8]) | mutated_requests(), min_size=1, max_size=12))
def test_one_parser_object_over_a_stream_of_heads(heads):
    """One long-lived parser (memo on, as a loop keeps it) answers each head as a
    fresh parser does: nothing leaks from one head to the next."""
    for label, name, path in VARIANTS + [("python", REFERENCE, None)]:
        with _Simd(path):
            kept = parsers.create(name, head_memo=True)
            for data in heads:
                for buf in (data, bytearray(b"..." + data)):
                    start = 0 if buf is data else 3
                    assert head_outcome(kept, buf, start) == head_outcome(parsers.create(name), buf, start), \
                        (label, data)
