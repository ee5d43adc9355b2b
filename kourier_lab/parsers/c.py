"""The C parser (native/parser.c) through cffi, out-of-line API mode.

Same contract and semantics as the reference parser (kourier_lab/parsers/python.py);
see kourier_lab/parsers/__init__.py.  The caller's bytes / bytearray / memoryview
is handed to C with `ffi.from_buffer` (no copy) and the request table is one
`kl_request` per parser object, read back through memoryviews over its memory
so head() costs list indexing, not cffi attribute lookups.  parse_heads
(folding off) has C write the batch as columns plus one text of the heads'
method / path / query, so its lists come from bytes.split, list slicing and
zip over memoryviews of the columns: no Python bytecode runs per head.

SIMD: the C side picks AVX2 / SSE4.2 / scalar at run time (KOURIER_LAB_SIMD
forces one); `simd()` says which is active and `set_simd(name)` switches.
"""
import os
import struct
import warnings
from itertools import repeat

from ..http.limits import DEFAULT_LIMITS, Limits
from . import register
from .request_table import RequestHead

try:
    from .._native_parser import ffi, lib
except ImportError as e:  # pragma: no cover - depends on the build
    raise ImportError("the C parser is not built: run `make build`") from e

SIMD_LEVELS = {"scalar": lib.KL_SIMD_SCALAR, "sse42": lib.KL_SIMD_SSE42, "avx2": lib.KL_SIMD_AVX2}

if lib.kl_parser_init() < 0:     # KOURIER_LAB_SIMD names no path this CPU can run
    warnings.warn(f"KOURIER_LAB_SIMD={os.environ.get('KOURIER_LAB_SIMD')!r} is not one of "
                  f"{', '.join(SIMD_LEVELS)} supported here; using "
                  f"{ffi.string(lib.kl_parser_simd_name(lib.kl_parser_simd())).decode()}", RuntimeWarning)


def simd() -> str:
    """The SIMD path in use ("scalar", "sse42" or "avx2")."""
    return ffi.string(lib.kl_parser_simd_name(lib.kl_parser_simd())).decode()


def simd_supported() -> list:
    return [name for name, level in SIMD_LEVELS.items() if lib.kl_parser_simd_supported(level)]


def set_simd(name: str) -> str:
    """Force a SIMD path for every C parser in this process; returns the previous one."""
    if name not in SIMD_LEVELS:
        raise ValueError(f"unknown SIMD path {name!r}; choose one of: {', '.join(SIMD_LEVELS)}")
    previous = simd()
    if lib.kl_parser_set_simd(SIMD_LEVELS[name]) < 0:
        raise ValueError(f"this CPU cannot run the {name} path (supported: {', '.join(simd_supported())})")
    return previous


def _limits_struct(limits: Limits):
    return ffi.new("kl_limits *", {
        "max_request_line": limits.max_request_line,
        "max_header_bytes": limits.max_header_bytes,
        "max_headers": limits.max_headers,
        "max_body": limits.max_body,
    })


_U32 = {name: ffi.offsetof("kl_request", name) // 4 for name in
        ("status", "head_len", "method", "target", "path", "query", "host", "header_count", "names",
         "values")}
_U8 = {name: ffi.offsetof("kl_request", name) for name in
       ("version_minor", "target_form", "keep_alive", "body_kind", "expect_continue", "has_query")}
_CL = ffi.offsetof("kl_request", "content_length") // 8
# the fixed part of kl_request in one unpack: status, head_len, five spans, six
# flags, padding, content_length, header_count (checked against cffi's offsets)
_FIXED = struct.Struct("<iI10I6B2xqI")
assert _FIXED.size == ffi.offsetof("kl_request", "header_count") + 4
assert ffi.offsetof("kl_request", "version_minor") == 48 and ffi.offsetof("kl_request", "content_length") == 56

# one kl_head_run (parser.h): n, count, method/path/query spans, content_length,
# version_minor, keep_alive, body_kind, expect_continue, has_query, same_info
_RUN = struct.Struct("<iI6Iq6B2x")
assert _RUN.size == ffi.sizeof("kl_head_run") and ffi.offsetof("kl_head_run", "content_length") == 32
RUN_CAPACITY = 64           # runs per crossing; a longer batch takes another call
# kl_head_cols (parser.h): column, C type, memoryview format ('?' reads the
# 0 / 1 flags as False / True)
_COLS = (("n", "int32_t", "i"), ("query_index", "int32_t", "i"), ("content_length", "int64_t", "q"),
         ("version_minor", "uint8_t", "B"), ("keep_alive", "uint8_t", "?"), ("body_kind", "uint8_t", "B"),
         ("expect_continue", "uint8_t", "?"))
_COLS_TEXT_LEN = ffi.offsetof("kl_head_cols", "text_len") // 8
_COLS_WITH_QUERY = ffi.offsetof("kl_head_cols", "with_query") // 8
assert ffi.sizeof("size_t") == 8 and ffi.offsetof("kl_head_cols", "with_query") % 8 == 0
COLS_CAPACITY = 256         # heads per crossing with folding off (Session's whole batch)
TEXT_CAPACITY = 32768       # bytes of method / path / query per crossing (at least)
NO_MAX = 1 << 62            # parse_heads' default max_count: no limit


class CParser:
    name = "c"
    # parsers.create(..., fold_runs=True) sets it: parse_heads may then fold a
    # run of equal consecutive heads (one info tuple shared); off, every head
    # gets its own info from its own bytes
    fold_runs = False

    def __init__(self, limits: Limits = DEFAULT_LIMITS):
        self.limits = limits
        self._n = 0
        self._lim = _limits_struct(limits)
        self._req = ffi.new("kl_request *")
        raw = memoryview(ffi.buffer(self._req))
        self._u32 = raw.cast("I")
        self._u8 = raw
        self._i64 = raw.cast("q")
        self._body_len = ffi.new("int64_t *")
        self._scratch = ffi.new("uint8_t[]", 4096)
        self._buf = None
        self._start = 0
        self._info = None
        # parse_head is a closure over locals: the per-request crossing is the
        # cost that matters from Python, so no attribute lookups on the way
        lim, req, parse_at, from_buffer = self._lim, self._req, lib.kl_parse_head_at, ffi.from_buffer
        this = self

        def parse_head(buf, start=0, end=None):
            size = len(buf)
            if end is None:
                end = size
            try:
                if type(buf) is bytes:
                    n = parse_at(buf, size, start, end, lim, req)
                else:
                    n = parse_at(from_buffer(buf), size, start, end, lim, req)
            except OverflowError:
                n = -1
            if n == -1:
                raise ValueError(f"bad span [{start}, {end}) of a {size}-byte buffer")
            this._info = None
            if n > 0:
                this._buf = buf
                this._start = start
                this._n = n
            return n

        self.parse_head = parse_head

        runs = ffi.new("kl_head_run[]", RUN_CAPACITY)
        runs_mem = memoryview(ffi.buffer(runs))
        heads_at, unpack_run, run_size = lib.kl_parse_heads_at, _RUN.unpack_from, _RUN.size

        # folding off: C writes the batch as columns and the fields' bytes as
        # one SP-separated text, and every list is built by builtins (split,
        # list slicing, zip over memoryviews), so no bytecode runs per head
        col_arrays = {name: ffi.new(f"{ctype}[]", COLS_CAPACITY) for name, ctype, _ in _COLS}
        # the first head of a batch always fits (parser.h)
        text = ffi.new("uint8_t[]", max(TEXT_CAPACITY, limits.max_request_line + 8))
        cols = ffi.new("kl_head_cols *", dict(col_arrays, text=text, text_capacity=len(text)))
        self._cols = (cols, col_arrays, text)      # the arrays live as long as the parser
        c_n, c_qi, c_cl, c_minor, c_ka, c_bk, c_ec = [
            memoryview(ffi.buffer(col_arrays[name])).cast(fmt) for name, _, fmt in _COLS]
        heads_cols, text_bytes = lib.kl_parse_heads_cols, ffi.buffer(text)
        c_out = memoryview(ffi.buffer(cols)).cast("q")     # text_len, with_query without cffi getattr
        text_len, with_query_at = _COLS_TEXT_LEN, _COLS_WITH_QUERY

        def parse_heads_folded(buf, start, end, max_count):
            """parse_heads with fold_runs on: runs of heads with equal info."""
            size = len(buf)
            is_bytes = type(buf) is bytes
            src = buf if is_bytes else from_buffer(buf)
            out = []
            info = pair = None
            base = start
            while True:
                try:
                    k = heads_at(src, size, base, end, lim, runs, RUN_CAPACITY, max_count - len(out), 1)
                except OverflowError:
                    k = -1
                if k == -1:
                    raise ValueError(f"bad span [{base}, {end}) of a {size}-byte buffer")
                pos = base
                for i in range(k):
                    n, count, mo, ml, po, pl, qo, ql, cl, minor, ka, bk, ec, hq, same = \
                        unpack_run(runs_mem, i * run_size)
                    if n <= 0:
                        out.append((n, None))
                        return out
                    if not same:
                        mo += base
                        po += base
                        qo += base
                        if is_bytes:      # slices of bytes are bytes already
                            new = (buf[mo:mo + ml], buf[po:po + pl], buf[qo:qo + ql] if hq else None,
                                   minor, ka == 1, bk, cl, ec == 1)
                        else:
                            new = (bytes(buf[mo:mo + ml]), bytes(buf[po:po + pl]),
                                   bytes(buf[qo:qo + ql]) if hq else None, minor, ka == 1, bk, cl,
                                   ec == 1)
                        # a run cut by RUN_CAPACITY goes on in the next call: C cannot
                        # flag it there, so compare the values here
                        if i or new != info:
                            info = new
                            pair = None
                    if pair is None or pair[0] != n or pair[1] is not info:
                        pair = (n, info)
                    if count == 1:
                        out.append(pair)
                    else:
                        out += [pair] * count
                    pos += n * count
                if k == 0 or bk or not ka or len(out) >= max_count or pos >= end:
                    return out
                base = pos      # C ran out of room for runs: go on from the next head

        def parse_heads(buf, start=0, end=None, max_count=None):
            """Every complete head from `start` in one C call: a list of (n, info),
            each entry what parse_head(buf, pos, end) and .info give for the next
            head.  Stops after (and includes) an entry with n <= 0 (info None), a
            head with a body or one that ends the connection; after max_count
            entries; or when the next head would start at `end`.  Every head is
            parsed and validated by C.  With fold_runs off (the default) every
            entry has its own info tuple, built from its own head's bytes
            (kl_parse_heads_cols, read as columns); with it on, consecutive
            heads with equal info share one info tuple (and, with equal n, one
            (n, info) tuple), so `info is previous` means "same route"
            (kl_parse_heads_at, runs).  head() is undefined afterwards (call
            parse_head first)."""
            if end is None:
                end = len(buf)
            if max_count is None:
                max_count = NO_MAX
            this._info = None
            this._buf = None
            if this.fold_runs:
                return parse_heads_folded(buf, start, end, max_count)
            size = len(buf)
            src = buf if type(buf) is bytes else from_buffer(buf)
            out = None
            base = start
            while True:
                try:
                    k = heads_cols(src, size, base, end, lim, cols, COLS_CAPACITY,
                                   max_count - (len(out) if out else 0))
                except OverflowError:
                    k = -1
                if k == -1:
                    raise ValueError(f"bad span [{base}, {end}) of a {size}-byte buffer")
                if k == 0:
                    return out or []
                ns = c_n[:k].tolist()
                last = ns[-1]
                m = k if last > 0 else k - 1      # a last row with n <= 0 has no info
                if m:
                    # method, path, query of every head in order, and a last
                    # empty field after the final SP that stands for the absent
                    # queries (query_index -1)
                    fields = text_bytes[:c_out[text_len]].split(b" ")
                    fields[-1] = None
                    if m == 1:      # no pipelining (the usual case): indexing costs less than zip's set-up
                        info = (fields[0], fields[1], fields[c_qi[0]], c_minor[0], c_ka[0], c_bk[0], c_cl[0],
                                c_ec[0])
                        batch = [(ns[0], info)]
                    else:
                        with_query = c_out[with_query_at]
                        if with_query == m:
                            queries = fields[2::3]
                        elif with_query:
                            queries = map(fields.__getitem__, c_qi)
                        else:
                            queries = repeat(None)
                        # the m methods come first: zip stops there, so the whole
                        # columns are passed (slicing a memoryview costs more)
                        infos = list(zip(fields[0:-1:3], fields[1::3], queries, c_minor, c_ka, c_bk, c_cl, c_ec))
                        batch = list(zip(ns, infos))
                        info = infos[-1]
                    if m < k:
                        batch.append((last, None))
                else:
                    batch = [(last, None)]
                if out is None:
                    out = batch
                else:
                    out += batch
                if m < k or info[5] or not info[4] or len(out) >= max_count:
                    return out
                base += sum(ns)
                if base >= end:
                    return out
                # C ran out of rows or of text: go on from the next head

        self.parse_heads = parse_heads

    def _span(self, index):
        u = self._u32
        off = self._start + u[index]
        return bytes(self._buf[off:off + u[index + 1]])

    @property
    def info(self):
        """(method, path, query, version_minor, keep_alive, body_kind, content_length,
        expect_continue) of the last accepted head.

        Built lazily from the request table, anew for every parse."""
        info = self._info
        if info is None:
            buf, st = self._buf, self._start
            if buf is None:
                raise RuntimeError("no head parsed: call parse_head first")
            (_, _, mo, ml, _, _, po, pl, qo, ql, _, _, minor, _, ka, bk, ec, hq,
             cl, _) = _FIXED.unpack_from(self._u8)
            mo += st
            po += st
            qo += st
            if type(buf) is bytes:      # slices of bytes are bytes already
                info = (buf[mo:mo + ml], buf[po:po + pl], buf[qo:qo + ql] if hq else None, minor, ka == 1,
                        bk, cl, ec == 1)
            else:
                info = (bytes(buf[mo:mo + ml]), bytes(buf[po:po + pl]), bytes(buf[qo:qo + ql]) if hq else None,
                        minor, ka == 1, bk, cl, ec == 1)
            self._info = info
        return info

    def head(self) -> RequestHead:
        method, path, query, minor, keep_alive, body_kind, content_length, expect = self.info
        u, u8 = self._u32, self._u8
        n = u[_U32["header_count"]]
        names, values = _U32["names"], _U32["values"]
        headers = [(self._span(names + 2 * i), self._span(values + 2 * i)) for i in range(n)]
        host_off = u[_U32["host"]]
        return RequestHead(method=method, target=self._span(_U32["target"]), path=path, query=query,
                           version_minor=minor, target_form=u8[_U8["target_form"]], headers=headers,
                           host=self._span(_U32["host"]) if host_off else None,
                           keep_alive=keep_alive, body_kind=body_kind, content_length=content_length,
                           expect_continue=expect, head_len=u[_U32["head_len"]])

    @property
    def request(self):
        """The raw kl_request cdata of the last parse (for native loops and notebooks)."""
        return self._req

    # -- chunked body ----------------------------------------------------
    def parse_chunked(self, buf, start, end=None):
        """Decode into a scratch buffer owned by the parser: the caller's buffer is
        never written (kl_parse_chunked, which compacts in place, is for C loops)."""
        size = len(buf)
        if end is None:
            end = size
        if len(self._scratch) < end - start:
            self._scratch = ffi.new("uint8_t[]", max(end - start, 2 * len(self._scratch)))
        src = buf if type(buf) is bytes else ffi.from_buffer(buf)
        try:
            n = lib.kl_decode_chunked_at(src, size, start, end, self._lim, self._scratch, self._body_len)
        except OverflowError:
            n = -1
        if n == -1:
            raise ValueError(f"bad span [{start}, {end}) of a {size}-byte buffer")
        if n <= 0:
            return n, None
        return n, ffi.buffer(self._scratch, self._body_len[0])[:]


register("c", CParser)
