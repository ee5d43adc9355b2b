"""CParser.parse_heads (one C call: native/parser.c kl_parse_heads_cols with
folding off, kl_parse_heads_at with it on) against repeated parse_head on the
same bytes, over the contract's corpus.

parse_heads returns a list of (n, info); it must equal what parse_head and
.info give head after head and stop where the protocol says.  With fold_runs
off (the default) every entry has its own info tuple; with it on, consecutive
heads share one info tuple exactly when their info values are equal.  Every
test runs with the knob off and on.
"""
import random

import pytest

from kourier_lab import parsers
from kourier_lab.parsers import BODY_NONE
from kourier_lab.http.limits import Limits
from kourier_lab.parsers.c import COLS_CAPACITY, RUN_CAPACITY, TEXT_CAPACITY, ffi, lib
from test_parser_contract import H, INVALID, LIMITED, SMALL, VALID

NO_MAX = 1 << 40


def reference(p, buf, start, end, max_count=NO_MAX):
    """What parse_heads must return, from parse_head and .info."""
    out = []
    pos = start
    while pos < end and len(out) < max_count:
        n = p.parse_head(buf, pos, end)
        info = p.info if n > 0 else None
        out.append((n, info))
        if n <= 0 or info[5] != BODY_NONE or not info[4]:
            break
        pos += n
    return out


def check_sharing(out, fold):
    """Folding: consecutive entries share an info object exactly when their
    values are equal.  Not folding: no two entries share an info object or an
    (n, info) tuple."""
    if not fold:
        infos = [i for _, i in out if i is not None]
        assert len({id(i) for i in infos}) == len(infos)
        assert len({id(e) for e in out}) == len(out)
        return
    for (_, a), (_, b) in zip(out, out[1:]):
        if a is None or b is None:
            continue
        assert (a is b) == (a == b), (a, b)


def check(p, buf, start=0, end=None, max_count=NO_MAX):
    end = len(buf) if end is None else end
    got = p.parse_heads(buf, start, end, max_count)
    want = reference(parsers.create("c", p.limits), buf, start, end, max_count)
    assert got == want
    check_sharing(got, p.fold_runs)
    return got


GETS = [c[1] for c in VALID if c[2][1].get("body_kind", 0) == 0]
PLAIN = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
CLOSE = b"GET / HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n"
POST = b"POST /p HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\nhello"
CHUNKED = b"POST /p HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
HTTP10 = b"GET / HTTP/1.0\r\n\r\n"
HTTP10_KA = b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"


def mixed_stream(rnd, count):
    """Valid heads of every kind, with an occasional body, close, 1.0 or error."""
    pieces = GETS + [PLAIN] * 10 + [POST, CHUNKED, CLOSE, HTTP10, HTTP10_KA] + [c[1] for c in INVALID[:8]]
    return b"".join(rnd.choice(pieces) for _ in range(count))


def as_kind(data, kind, offset=0):
    """data in a bytes / bytearray / memoryview buffer, starting at `offset` (junk before)."""
    raw = b"\x00junk\xff"[:offset].ljust(offset, b"x") + data
    if kind == "bytes":
        return raw
    if kind == "bytearray":
        return bytearray(raw)
    return memoryview(bytearray(raw))


KINDS = ["bytes", "bytearray", "memoryview"]


@pytest.fixture(params=[False, True], ids=["fold-off", "fold-on"])
def p(request):
    return parsers.create("c", fold_runs=request.param)


def test_folding_is_off_by_default():
    assert parsers.create("c").fold_runs is False
    assert parsers.create("c", fold_runs=True).fold_runs is True


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("offset", [0, 5])
def test_pipelined_identical_heads(p, kind, offset):
    buf = as_kind(PLAIN * 300, kind, offset)
    out = check(p, buf, offset)
    assert len(out) == 300
    if p.fold_runs:
        assert all(e is out[0] for e in out)    # one (n, info) tuple for the whole run
    else:
        assert len({id(i) for _, i in out}) == len(out)     # every head its own info


@pytest.mark.parametrize("fold", [0, 1])
def test_c_writes_one_run_per_head_unless_folding(fold):
    """kl_parse_heads_at itself: fold 0 -> one run per head (count 1, same_info 0)."""
    a = b"GET /a HTTP/1.1\r\n" + H + b"\r\n"
    b = b"GET /a HTTP/1.1\r\n" + H + b"X: y\r\n\r\n"     # same summary, another n
    buf = a * 5 + b + a * 3
    runs = ffi.new("kl_head_run[]", 16)
    lim = ffi.new("kl_limits *", {"max_request_line": 8192, "max_header_bytes": 16384, "max_headers": 100,
                                  "max_body": 1 << 20})
    k = lib.kl_parse_heads_at(buf, len(buf), 0, len(buf), lim, runs, 16, 100, fold)
    got = [(runs[i].n, runs[i].count, runs[i].same_info) for i in range(k)]
    if fold:
        assert got == [(len(a), 5, 0), (len(b), 1, 1), (len(a), 3, 1)]
    else:
        assert got == [(len(a), 1, 0)] * 5 + [(len(b), 1, 0)] + [(len(a), 1, 0)] * 3


@pytest.mark.parametrize("kind", KINDS)
def test_every_valid_head_alone_and_in_a_stream(p, kind):
    for _, raw, _ in VALID:
        check(p, as_kind(raw, kind))
        check(p, as_kind(raw * 3, kind))
        check(p, as_kind(PLAIN + raw + PLAIN, kind))


@pytest.mark.parametrize("kind", KINDS)
def test_errors_end_the_batch(p, kind):
    for _, raw, status in INVALID:
        out = check(p, as_kind(PLAIN * 2 + raw + PLAIN, kind))
        assert out[-1] == (-status, None) and len(out) == 3


def test_limits(p):
    small = parsers.create("c", SMALL, fold_runs=p.fold_runs)
    for _, raw, status in LIMITED:
        out = check(small, PLAIN * 2 + raw + PLAIN)
        if status != "ok":
            assert out[-1] == (-status, None)


@pytest.mark.parametrize("tail", [POST, CHUNKED, CLOSE, HTTP10], ids=["length", "chunked", "close", "http/1.0"])
def test_stops_after_a_body_or_a_closing_head(p, tail):
    out = check(p, PLAIN * 4 + tail + PLAIN * 4)
    assert len(out) == 5
    n, info = out[-1]
    assert n > 0 and info is not out[0][1]


def test_http10_keep_alive_is_not_the_same_route_as_11(p):
    out = check(p, PLAIN + b"GET / HTTP/1.0\r\nHost: 127.0.0.1:8080\r\nConnection: keep-alive\r\n\r\n" + PLAIN)
    assert [e[1][3] for e in out] == [1, 0, 1]
    assert out[0][1] is not out[1][1] and out[1][1] is not out[2][1]


def test_sharing_compares_values_not_lengths(p):
    # same lengths, different bytes; same bytes spread differently over path and query
    heads = [b"GET /ab HTTP/1.1\r\n" + H + b"\r\n", b"GET /ac HTTP/1.1\r\n" + H + b"\r\n",
             b"GET /a?b HTTP/1.1\r\n" + H + b"\r\n", b"GET /a? HTTP/1.1\r\n" + H + b"\r\n",
             b"GET /a HTTP/1.1\r\n" + H + b"\r\n", b"PUT /a HTTP/1.1\r\n" + H + b"\r\n",
             b"GET /a HTTP/1.1\r\n" + H + b"X-Pad: 1\r\n\r\n", b"GET /a HTTP/1.1\r\n" + H + b"\r\n"]
    out = check(p, b"".join(heads))
    assert len(out) == len(heads)
    # the last three differ only in n (a header): folding, one info, three
    # entries, two (n, info) tuples; not folding, three of each
    assert out[4][1] is not out[5][1] and (out[6][1] is out[7][1]) == p.fold_runs
    assert out[6] is not out[7] and out[6][0] != out[7][0]


def test_run_sharing_goes_on_across_crossings(p):
    """More runs than one C call holds: the rest takes another call, the result is the same."""
    a = b"GET /a HTTP/1.1\r\n" + H + b"\r\n"
    a_padded = b"GET /a HTTP/1.1\r\n" + H + b"X: y\r\n\r\n"   # same info, another n
    b = b"GET /b HTTP/1.1\r\n" + H + b"\r\n"
    for extra in range(4):
        heads = [a, b] * (RUN_CAPACITY // 2) + [b] * extra + [a, a_padded, a] * 40
        out = check(p, b"".join(heads))
        assert len(out) == len(heads)
        tail = out[-120:]
        if p.fold_runs:
            assert all(e[1] is tail[0][1] for e in tail)
        else:
            assert len({id(e[1]) for e in tail}) == len(tail)


@pytest.mark.parametrize("max_count", [0, 1, 2, 3, 7, 64, 65, 200])
def test_max_count(p, max_count):
    a = b"GET /a HTTP/1.1\r\n" + H + b"\r\n"
    b = b"GET /b HTTP/1.1\r\n" + H + b"\r\n"
    out = check(p, (a * 3 + b) * 50, max_count=max_count)
    assert len(out) == min(max_count, 200)


def test_empty_span_and_bad_spans(p):
    assert p.parse_heads(PLAIN, len(PLAIN), len(PLAIN), 10) == []
    assert p.parse_heads(PLAIN * 2, len(PLAIN)) == [(len(PLAIN), p.parse_heads(PLAIN)[0][1])]
    for start, end in [(5, 4), (0, len(PLAIN) + 1), (-1, 3)]:
        with pytest.raises(ValueError):
            p.parse_heads(PLAIN, start, end, 10)


def test_head_needs_a_parse_head_after_parse_heads(p):
    assert p.parse_head(PLAIN, 0, len(PLAIN)) == len(PLAIN)
    p.parse_heads(PLAIN * 2)
    with pytest.raises(RuntimeError):
        p.head()
    assert p.parse_head(PLAIN, 0, len(PLAIN)) == len(PLAIN)
    assert p.head().host == b"127.0.0.1:8080"


@pytest.mark.parametrize("kind", KINDS)
def test_random_streams_and_incomplete_tails(p, kind):
    rnd = random.Random(11)
    for _ in range(30):
        stream = mixed_stream(rnd, rnd.randint(1, 40))
        offset = rnd.randint(0, 6)
        buf = as_kind(stream, kind, offset)
        for _ in range(8):      # every cut of the stream, from any head boundary on
            end = rnd.randint(offset, len(buf))
            out = check(p, buf, offset, end)
            pos = offset
            for n, _ in out[:-1]:
                pos += n
            if out:
                assert out[-1][0] <= 0 or out[-1][1][5] != BODY_NONE or not out[-1][1][4] or \
                    pos + out[-1][0] == end


def test_random_splits_as_a_loop_would_feed_them(p):
    """Bytes arriving in random pieces; each read consumes the batch up to its end
    (or its first incomplete head): every head is seen once, in order."""
    rnd = random.Random(5)
    heads = [rnd.choice(GETS + [PLAIN] * 5) for _ in range(300)]
    stream = b"".join(heads)
    buf = bytearray()
    pos = fed = 0
    seen = []
    while fed < len(stream):
        step = rnd.randint(1, 300)
        buf += stream[fed:fed + step]
        fed += step
        while pos < len(buf):
            out = check(p, buf, pos, len(buf), rnd.choice([1, 5, NO_MAX]))
            for n, info in out:
                if n <= 0:
                    assert n == 0
                    break
                seen.append(bytes(buf[pos:pos + n]))
                pos += n
            if out[-1][0] == 0:
                break
    assert seen == heads and pos == len(stream)


# -- the columnar path (folding off: kl_parse_heads_cols) ----------------------

def distinct(count, query=lambda i: b"?q=%x" % i):
    """count heads that differ in path and query (query(i) None: no '?')."""
    return [b"GET /p/%d%s HTTP/1.1\r\n" % (i, query(i) or b"") + H + b"\r\n" for i in range(count)]


@pytest.mark.parametrize("kind", KINDS)
def test_fields_are_bytes_and_flags_bools(p, kind):
    heads = distinct(5) + [HTTP10_KA, b"PUT /x? HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\n\r\n"]
    out = check(p, as_kind(b"".join(heads), kind, 3), 3)
    for n, info in out:
        assert all(type(f) is bytes for f in info[:2]) and (info[2] is None or type(info[2]) is bytes)
        assert type(info[4]) is bool and type(info[7]) is bool and type(info[3]) is int
    assert out[5][1][2] is None and out[5][1][3] == 0 and out[5][1][4] is True
    assert out[6][1][:3] == (b"PUT", b"/x", b"") and out[6][1][7] is True


@pytest.mark.parametrize("kind", KINDS)
def test_infos_do_not_change_with_the_buffer(kind):
    """The fields are copies: the caller may consume and refill its buffer."""
    p = parsers.create("c")
    raw = b"".join(distinct(20))
    buf = as_kind(raw, kind)
    out = p.parse_heads(buf)
    want = reference(parsers.create("c"), raw, 0, len(raw))
    if kind != "bytes":
        buf[:] = b"x" * len(buf)
    assert out == want


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("every", [1, 2, 3, 1000], ids=["none", "half", "third", "one"])
def test_heads_with_and_without_query(p, kind, every):
    """query None for a head without '?', b"" for a bare '?', whatever the mix
    (all, none or some heads of the batch with a query)."""
    heads = distinct(40, lambda i: None if i % every == 0 else (b"?" if i % 5 == 1 else b"?k=%d" % i))
    out = check(p, as_kind(b"".join(heads), kind))
    assert [i[2] is None for _, i in out] == [i % every == 0 for i in range(40)]
    if every == 1000:
        assert out[1][1][2] == b"" and out[2][1][2] == b"k=2"
    for head in heads:         # alone: the single-head path
        check(p, as_kind(head, kind))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("count", [COLS_CAPACITY - 1, COLS_CAPACITY, COLS_CAPACITY + 1, 3 * COLS_CAPACITY + 7])
def test_a_batch_past_the_column_capacity(p, kind, count):
    out = check(p, as_kind(b"".join(distinct(count)), kind, 2), 2)
    assert len(out) == count
    assert len({id(i) for _, i in out}) == count or p.fold_runs


@pytest.mark.parametrize("max_count", [COLS_CAPACITY - 1, COLS_CAPACITY, COLS_CAPACITY + 1, 600])
def test_max_count_across_calls(p, max_count):
    out = check(p, bytearray(b"".join(distinct(700))), max_count=max_count)
    assert len(out) == max_count


@pytest.mark.parametrize("kind", KINDS)
def test_a_batch_past_the_text_capacity(p, kind):
    """Long paths fill the text before the rows run out: the rest takes more calls."""
    heads = [b"GET /%s%d?%s HTTP/1.1\r\n" % (b"a" * 3000, i, b"q" * (i * 37 % 900)) + H + b"\r\n"
             for i in range(3 * TEXT_CAPACITY // 3000)]
    out = check(p, as_kind(b"".join(heads), kind))
    assert len(out) == len(heads)


@pytest.mark.parametrize("tail", [b"", PLAIN + b"GET / HT", PLAIN + b"GET / HTTP/1.1\r\n\x01\r\n\r\n"],
                         ids=["complete", "need-more", "error"])
def test_one_head_per_call(tail):
    """Request lines so long that each call has room for one head's fields
    (the single-head path), then what the stream ends with."""
    limits = Limits(max_request_line=60000, max_header_bytes=65536)
    p = parsers.create("c", limits)
    heads = [b"GET /%s?%d HTTP/1.1\r\n" % (bytes([97 + i]) * 50000, i) + H + b"\r\n" for i in range(4)]
    out = check(p, bytearray(b"".join(heads) + tail))
    assert [e[1][1][1] for e in out[:4]] == [97 + i for i in range(4)]
    if tail:
        assert len(out) == 6 and out[4][0] == len(PLAIN) and out[5][1] is None and out[5][0] in (0, -400)
    else:
        assert len(out) == 4


@pytest.mark.parametrize("kind", KINDS)
def test_the_stop_rules_in_a_distinct_stream(p, kind):
    """Distinct heads before and after an HTTP/1.0 head, a closing head, a body,
    an error and an incomplete head: the batch ends where the contract says."""
    before = b"".join(distinct(9))
    for stop, length, last in [(HTTP10, 10, (0, False)), (HTTP10_KA, 19, None), (CLOSE, 10, (1, False)),
                               (POST, 10, (1, True)), (b"GET /\x7f HTTP/1.1\r\n\r\n", 10, -400),
                               (b"GET /p HTTP/1.1\r\nHost", 10, 0)]:
        after = before if last != 0 else b""        # an incomplete head is the stream's end
        out = check(p, as_kind(before + stop + after, kind))
        assert len(out) == length
        if last is None:
            continue
        if isinstance(last, int):
            assert out[-1] == (last, None)
        else:
            assert (out[-1][1][3], out[-1][1][4]) == last or out[-1][1][5]


@pytest.mark.parametrize("kind", KINDS)
def test_an_error_right_after_one_head(p, kind):
    out = check(p, as_kind(PLAIN + b"GET / HTTP/2.0\r\n\r\n", kind))
    assert out[1] == (-505, None) and len(out) == 2
    out = check(p, as_kind(b"BAD\r\n\r\n" + PLAIN, kind))
    assert out == [(-400, None)]


def test_c_writes_columns_and_text():
    """kl_parse_heads_cols itself: rows, the fields' text, query_index, flags."""
    a = b"GET /a?x HTTP/1.1\r\n" + H + b"\r\n"
    b = b"HEAD /b HTTP/1.0\r\n\r\n"
    buf = b"zz" + a + b + a
    cap = 4
    arrays = {name: ffi.new(f"{ctype}[]", cap) for name, ctype in
              [("n", "int32_t"), ("query_index", "int32_t"), ("content_length", "int64_t"),
               ("version_minor", "uint8_t"), ("keep_alive", "uint8_t"), ("body_kind", "uint8_t"),
               ("expect_continue", "uint8_t")]}
    text = ffi.new("uint8_t[]", 64)
    cols = ffi.new("kl_head_cols *", dict(arrays, text=text, text_capacity=64))
    lim = ffi.new("kl_limits *", {"max_request_line": 8192, "max_header_bytes": 16384, "max_headers": 100,
                                  "max_body": 1 << 20})
    k = lib.kl_parse_heads_cols(buf, len(buf), 2, len(buf), lim, cols, cap, 100)
    assert k == 2       # HTTP/1.0 without keep-alive ends the batch
    assert ffi.buffer(text, cols.text_len)[:] == b"GET /a x HEAD /b  "
    assert cols.with_query == 1
    assert [arrays["n"][i] for i in range(k)] == [len(a), len(b)]
    assert [arrays["query_index"][i] for i in range(k)] == [2, -1]
    assert [arrays["version_minor"][i] for i in range(k)] == [1, 0]
    assert [arrays["keep_alive"][i] for i in range(k)] == [1, 0]
    # no room for the second head's fields: one row, the caller goes on from there
    cols.text_capacity = 10
    assert lib.kl_parse_heads_cols(buf, len(buf), 2, len(buf), lim, cols, cap, 100) == 1
    assert cols.text_len == 9
    assert lib.kl_parse_heads_cols(buf, len(buf), 2, len(buf), lim, cols, cap, 0) == 0
    assert lib.kl_parse_heads_cols(buf, len(buf), 2, len(buf) + 1, lim, cols, cap, 100) == -1
