"""The Numba parser beyond the shared contract suite: the request table mirrors
the C header, the kernels agree with the Python reference on mutated input,
the batch kernel and the @cfunc entry points give the same tables."""
import ctypes
import random

import pytest

np = pytest.importorskip("numpy")
pytest.importorskip("numba")
cffi = pytest.importorskip("cffi")

from kourier_lab import numba_layout as ns  # noqa: E402
from kourier_lab.http.limits import Limits  # noqa: E402
from kourier_lab.parsers import BODY_LENGTH  # noqa: E402
from kourier_lab.parsers import numba as nparser  # noqa: E402
from kourier_lab.parsers.python import PythonParser  # noqa: E402

import tests.parsers.test_parser_contract as contract  # noqa: E402

SHORT = b"GET /hello HTTP/1.1\r\nHost: localhost:3275\r\n\r\n"


@pytest.fixture(scope="module")
def ffi():
    f = cffi.FFI()
    f.cdef(ns.header_cdef())
    return f


def test_request_dtype_mirrors_the_c_header(ffi):
    assert ffi.sizeof("kl_request") == ns.REQUEST_DTYPE.itemsize
    c_fields = [name for name, _ in ffi.typeof("kl_request").fields]
    assert c_fields == list(ns.REQUEST_DTYPE.names)
    for name in c_fields:
        assert ffi.offsetof("kl_request", name) == ns.REQUEST_DTYPE.fields[name][1], name
        assert ffi.sizeof(ffi.typeof("kl_request").fields[c_fields.index(name)][1].type) == \
            ns.REQUEST_DTYPE.fields[name][0].itemsize, name
    assert ffi.sizeof("kl_span") == ns.SPAN_DTYPE.itemsize
    for name in ("off", "len"):
        assert ffi.offsetof("kl_span", name) == ns.SPAN_DTYPE.fields[name][1]
    assert ffi.sizeof("kl_limits") == ns.LIMITS_DTYPE.itemsize
    for name, _ in ffi.typeof("kl_limits").fields:
        assert ffi.offsetof("kl_limits", name) == ns.LIMITS_DTYPE.fields[name][1], name
    assert dict(ffi.typeof("kl_request").fields)["names"].type.length == ns.KL_MAX_HEADERS


def test_flat_writes_land_in_the_named_fields():
    p = nparser.NumbaParser()
    raw = b"POST /a/b?q=1 HTTP/1.1\r\nHost: h:1\r\nContent-Length: 12\r\nX-Y:  v \r\n\r\n"
    buf = b"xx" + raw
    assert p.parse_head(buf, 2) == len(raw)
    rec = p.table[0]

    def span(field):
        return raw[rec[field]["off"]:rec[field]["off"] + rec[field]["len"]]
    assert rec["status"] == 0 and rec["head_len"] == len(raw)
    assert (span("method"), span("target"), span("path"), span("query"), span("host")) == \
        (b"POST", b"/a/b?q=1", b"/a/b", b"q=1", b"h:1")
    assert (rec["version_minor"], rec["target_form"], rec["keep_alive"], rec["body_kind"],
            rec["expect_continue"], rec["has_query"]) == (1, 0, 1, BODY_LENGTH, 0, 1)
    assert rec["content_length"] == 12 and rec["header_count"] == 3
    names = [raw[s["off"]:s["off"] + s["len"]] for s in rec["names"][:3]]
    values = [raw[s["off"]:s["off"] + s["len"]] for s in rec["values"][:3]]
    assert names == [b"Host", b"Content-Length", b"X-Y"] and values == [b"h:1", b"12", b"v"]
    assert p.parse_head(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n") > 0
    assert p.table[0]["content_length"] == -1 and p.table[0]["has_query"] == 0
    assert p.parse_head(b"GET / HTTP/2.0\r\n\r\n") == -505 and p.table[0]["status"] == 505


# -- differential: mutated inputs against the Python reference ------------------
_ALPHABET = b" \r\n\t:/?%#@[]*,;=\"\\0123456789aAfFgHTP.-\x00\x01\x7f\x80\xff"
_EXTRA_SEEDS = [
    b"GET / HTTP/1.0\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: x, close\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 007, 7\r\nContent-Length: 7\r\n\r\n",
    b"GET http://[::1]:80/a?b HTTP/1.1\r\nHost: [v1.x]\r\n\r\n",
    b"CONNECT [::1]:443 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nExpect: 100-CONTINUE\r\n\r\n",
]
_SEEDS = [c[1] for c in contract.VALID + contract.INVALID + contract.LIMITED] + _EXTRA_SEEDS
_LIMITS = [Limits(), contract.SMALL,
           Limits(max_request_line=20, max_header_bytes=60, max_headers=2, max_body=10)]


def _mutate(rnd, data):
    b = bytearray(data)
    for _ in range(rnd.randint(1, 4)):
        op = rnd.randint(0, 3)
        i = rnd.randint(0, len(b))
        if op == 0 and b:
            del b[min(i, len(b) - 1)]
        elif op == 1:
            b[i:i] = bytes([rnd.choice(_ALPHABET)])
        elif op == 2 and b:
            b[min(i, len(b) - 1)] = rnd.choice(_ALPHABET)
        else:
            src = rnd.choice(_SEEDS)
            j = rnd.randint(0, len(src))
            b[i:i] = src[j:j + rnd.randint(0, 24)]
    return bytes(b)


@pytest.mark.parametrize("seed", range(4))
def test_agrees_with_python_on_mutated_heads(seed):
    rnd = random.Random(seed)
    verdicts = set()
    for _ in range(1500):
        limits = rnd.choice(_LIMITS)
        data = _mutate(rnd, rnd.choice(_SEEDS))
        ref, got = PythonParser(limits), nparser.NumbaParser(limits)
        for end in (len(data), rnd.randint(0, len(data))):
            a, b = ref.parse_head(data, 0, end), got.parse_head(data, 0, end)
            assert a == b, (data[:end], a, b)
            verdicts.add(a if a <= 0 else "ok")
            if a > 0:
                assert got.info == ref.info, data[:end]
                assert got.head() == ref.head(), data[:end]
    # the mutations reach valid heads and every kind of verdict
    assert {"ok", 0, -400, -414, -431}.issubset(verdicts), verdicts


_CHUNK_SEEDS = [c[1] for c in contract.CHUNKED_OK + contract.CHUNKED_BAD] + [
    b"3;a=\"x\\\"y\" ; b = c\r\nabc\r\n0\r\nT: v\r\n\r\n", b"1\r\nx\r\n0\r\n\r\n"]


@pytest.mark.parametrize("seed", range(3))
def test_agrees_with_python_on_mutated_chunked_bodies(seed):
    rnd = random.Random(100 + seed)
    verdicts = set()
    for _ in range(1500):
        limits = rnd.choice([Limits(max_body=100000), Limits(max_body=8, max_header_bytes=40, max_request_line=40)])
        data = _mutate(rnd, rnd.choice(_CHUNK_SEEDS))
        ref, got = PythonParser(limits), nparser.NumbaParser(limits)
        start = rnd.randint(0, 2)
        buf = bytearray(b"ab"[:start] + data)
        for end in (len(buf), rnd.randint(start, len(buf))):
            a, b = ref.parse_chunked(buf, start, end), got.parse_chunked(buf, start, end)
            assert a == b, (bytes(buf[start:end]), a, b)
            verdicts.add(a[0] if a[0] <= 0 else "ok")
    assert {"ok", 0, -400}.issubset(verdicts), verdicts


def test_bytes_bytearray_memoryview_and_arraybytes_agree():
    raw = b"GET /x?y HTTP/1.1\r\nHost: a\r\nA: b\r\n\r\n"
    ab = ns.ArrayBytes(len(raw) + 3)
    memoryview(ab)[3:] = raw
    p = nparser.NumbaParser()
    results = []
    for buf, start in ((raw, 0), (bytearray(raw), 0), (memoryview(b"zz" + raw), 2), (ab, 3)):
        assert p.parse_head(buf, start) == len(raw)
        results.append((p.info, p.head()))
    assert all(r == results[0] for r in results)
    assert p.parse_head(b"") == 0 and p.parse_head(bytearray()) == 0
    with pytest.raises(ValueError):
        p.parse_head(raw, -1)


def test_arraybytes_is_a_bytearray_for_find_and_re():
    import re
    ab = ns.ArrayBytes(16)
    memoryview(ab)[:5] = b"hello"
    assert ab.find(b"llo") == 2 and re.compile(rb"h(el)").match(ab).group(1) == b"el"
    ab.array[0] = ord("j")        # one memory, two views
    assert ab[:5] == b"jello"


# -- the batch kernel -------------------------------------------------------------
def test_batch_matches_one_by_one():
    reqs = [c[1] for c in contract.VALID if c[2][1].get("body_kind", 0) == 0]
    rnd = random.Random(3)
    picked = [rnd.choice(reqs) for _ in range(300)]
    stream = b"".join(picked)
    p = nparser.NumbaParser()
    count, consumed, last, summaries, starts = p.parse_batch(stream, 0, len(stream), 512)
    assert (count, consumed, last) == (300, len(stream), 0)
    one = nparser.NumbaParser()
    pos = 0
    for k in range(count):
        n = one.parse_head(stream, pos)
        assert starts[k] == pos and summaries[k, ns.W_HEAD_LEN] == n
        assert (summaries[k] == one._t[:ns.SUMMARY_WORDS]).all()
        pos += n
    # it stops at an incomplete head, and at an invalid one with its status
    assert p.parse_batch(stream + SHORT[:10], 0, None, 512)[:3] == (300, len(stream), 0)
    assert p.parse_batch(SHORT * 3 + b"GET / HTTP/1.1\r\n\r\n" + SHORT)[:3] == (3, 3 * len(SHORT), -400)
    assert p.parse_batch(SHORT * 5, 0, None, 2)[:3] == (2, 2 * len(SHORT), 0)


# -- the @cfunc entry points ------------------------------------------------------------
def test_cfunc_parse_head_fills_the_same_table():
    entry = nparser.c_entry_points()["kl_parse_head"]
    addr = nparser.kl_parse_head_address()
    assert addr == entry.address and addr != 0
    fn = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
                          ctypes.c_void_p)(addr)
    limits = Limits(max_headers=10)
    lim = ns.limits_struct(limits)
    p = nparser.NumbaParser(limits)
    for raw in (SHORT, contract.VALID[1][1], b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", SHORT[:20],
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n"):
        arr = np.frombuffer(bytearray(raw), np.uint8)
        table, _ = ns.new_table(1)
        n = fn(arr.ctypes.data, len(raw), lim.ctypes.data, table.ctypes.data)
        assert n == p.parse_head(raw)
        assert table[0]["status"] == p.table[0]["status"]
        if n > 0:
            assert table.tobytes()[:ns.SUMMARY_WORDS * 4] == p.table.tobytes()[:ns.SUMMARY_WORDS * 4]


def test_cfunc_parse_chunked_compacts_in_place():
    fn = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
                          ctypes.POINTER(ctypes.c_int64))(nparser.kl_parse_chunked_address())
    lim = ns.limits_struct(Limits())
    raw = b"5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nT: 1\r\n\r\nNEXT"
    arr = np.frombuffer(bytearray(raw), np.uint8)
    body_len = ctypes.c_int64(-1)
    n = fn(arr.ctypes.data, len(raw), lim.ctypes.data, ctypes.byref(body_len))
    assert n == len(raw) - 4 and body_len.value == 11
    assert arr[:11].tobytes() == b"hello world"
    bad = np.frombuffer(bytearray(b"5\r\nhelloX\r\n0\r\n\r\n"), np.uint8)
    assert fn(bad.ctypes.data, len(bad), lim.ctypes.data, ctypes.byref(body_len)) == -400
    # "need more" leaves the bytes untouched: the caller parses them again later
    part = b"5\r\nhello\r\n6\r\n wor"
    arr = np.frombuffer(bytearray(part), np.uint8)
    assert fn(arr.ctypes.data, len(part), lim.ctypes.data, ctypes.byref(body_len)) == 0
    assert arr.tobytes() == part


def test_jit_report_times_every_kernel():
    report = nparser.jit_report()
    assert set(report) == {"parse_head_kernel", "parse_chunked_kernel", "parse_batch_kernel", "cfuncs"}
    assert all(v >= 0 for v in report.values())


def test_memo_hit_keeps_head_and_table_right():
    from kourier_lab import parsers
    raw = b"GET /m?q HTTP/1.1\r\nHost: a\r\nX: 1\r\n\r\n"
    p = parsers.create("numba", head_memo=True)
    ref = nparser.NumbaParser()
    assert p.parse_head(raw) == ref.parse_head(raw) == len(raw)
    expected = ref.head()
    assert p.parse_head(b"GET / HTTP/1.1\r\nX: \x01\r\n\r\n") == -400      # a failed parse in between
    buf = bytearray(b"zzz" + raw)
    assert p.parse_head(buf, 3) == len(raw)                                # a memo hit
    assert p.hits == 1 and p.info == ref.info and p.head() == expected
    assert p.table[0]["head_len"] == len(raw) and p.table[0]["target"]["off"] == 4
    assert p.parse_head(b"GET / HTTP/2.0\r\n\r\n") == -505 and p.table[0]["status"] == 505


def _kernel_rows(raw, fold, max_heads=1024):
    """parse_heads_kernel over raw with the given fold: the rows it filled."""
    buf = np.frombuffer(raw, np.uint8).copy()
    t = ns.new_table(1)[1][0]
    heads = np.zeros((1024, nparser.HEAD_FIELDS), np.int64)
    k = nparser.parse_heads_kernel(buf, 0, len(buf), ns.limits_array(Limits()), t, heads, max_heads, fold)
    return heads[:k].copy()


def test_parse_heads_kernel_folds_runs_only_when_asked():
    """fold_runs off (0, the default): one row per head, each from its own
    bytes; on (1): a run of equal consecutive heads shares one row."""
    other = b"GET /hello?x=1 HTTP/1.1\r\nHost: localhost:3275\r\n\r\n"
    off = _kernel_rows(SHORT * 50, 0)
    assert len(off) == 50
    assert off[:, nparser.H_COUNT].tolist() == [1] * 50
    assert off[:, nparser.H_LEN].tolist() == [len(SHORT)] * 50
    # every row's spans are the head's own, the same as a parse of that head alone
    p = nparser.NumbaParser()
    assert p.parse_head(SHORT) == len(SHORT)
    method, path = off[0, nparser.H_METHOD], off[0, nparser.H_PATH]
    assert SHORT[method:method + off[0, nparser.H_METHOD_LEN]] == b"GET"
    assert SHORT[path:path + off[0, nparser.H_PATH_LEN]] == p.info[1]
    assert (off == off[0]).all()

    on = _kernel_rows(SHORT * 50, 1)
    assert len(on) == 1 and on[0, nparser.H_COUNT] == 50 and on[0, nparser.H_LEN] == len(SHORT)

    mixed = SHORT * 3 + other + SHORT * 2
    assert _kernel_rows(mixed, 0)[:, nparser.H_COUNT].tolist() == [1] * 6
    assert _kernel_rows(mixed, 1)[:, nparser.H_COUNT].tolist() == [3, 1, 2]
    # max_heads counts heads, folded or not
    assert _kernel_rows(SHORT * 50, 0, max_heads=7)[:, nparser.H_COUNT].tolist() == [1] * 7
    assert _kernel_rows(SHORT * 50, 1, max_heads=7)[:, nparser.H_COUNT].tolist() == [7]


def test_parse_heads_off_builds_each_info_on_its_own():
    """With fold_runs off (the default) the Numba parser's batch gives every
    entry its own info tuple, equal in value to a parse of that head alone."""
    from kourier_lab import parsers
    p = parsers.create("numba")
    assert p.fold_runs is False and nparser.NumbaParser.fold_runs is False
    assert parsers.create("numba", fold_runs=True).fold_runs is True
    raw = SHORT * 50
    parse_heads = getattr(p, "parse_heads", None)
    batch = (parse_heads(raw, 0, len(raw), None) if parse_heads is not None
             else parsers.parse_heads_by_head(p, raw, 0, len(raw), None))
    assert [n for n, _ in batch] == [len(SHORT)] * 50
    infos = [info for _, info in batch]
    assert len({id(info) for info in infos}) == 50
    q = nparser.NumbaParser()
    q.parse_head(SHORT)
    assert all(info == q.info for info in infos)
