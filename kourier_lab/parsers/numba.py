"""The Numba parser: byte-level state machines compiled by Numba in nopython mode.

Same contract and the same verdicts as the pure-Python reference
(parsers/python.py; the rules and their order are in parsers/__init__.py), but
written the way the C parser is: one pass over the request line, one scan for
the end of the head, one pass over the field lines, then the framing fields.
Every byte is classified through one 256-entry table of class bits built from
http/chars.py, the same sets the Python parser compiles into its regexes.

The result is the request table of native/kourier_lab.h (``kl_request``),
mirrored by ``numba_layout.REQUEST_DTYPE``; the kernels write it through a flat
uint32 view of the same memory (see numba_layout for why).

Entry points
------------
* ``parse_head_kernel(buf, start, end, limits, table_words)`` -> n (the
  contract's return value); limits is numba_layout.limits_array(), table_words
  the flat uint32 view of one kl_request.
* ``parse_chunked_kernel(buf, start, end, limits, out, out_off)`` -> (n,
  body_len); the decoded data goes to out[out_off:]; passing the input array
  itself with out_off=start compacts in place (the writes never overtake the
  reads), which is what the C ``kl_parse_chunked`` does.
* ``parse_heads_kernel(buf, start, end, limits, table_words, heads, max_heads, fold)``
  parses every head of a read for the native loops, one row per head; with
  fold (``serve --fold-runs on``; off by default) one row per run of equal
  consecutive heads (see its docstring).
* ``parse_batch_kernel(...)`` parses pipelined heads back to back in one call
  (no bodies), for the native loops and for measuring the parser without the
  Python-call overhead (a Numba call from Python costs about as much as
  parsing a small request: notebook 02's crossing costs).
* ``c_entry_points()``: @cfunc objects with the C signatures of kourier_lab.h;
  ``.address`` is a function pointer the C loop can call natively.  Built on
  first use and cached on disk like the kernels (the server builds them before
  its workers fork: server/warm_up.py).

Every @njit function uses cache=True: the first call on a machine compiles
(``jit_report()`` gives the figures), later processes load machine code from
__pycache__.  They also use _nrt=False: the kernels allocate nothing, and
without Numba's reference-counting runtime an array passed to a helper costs
no atomic incref/decref (Numba does not inline across @njit functions, so
those calls are many; the README's "How it is built" has what the runtime
cost).

NumbaParser is the Python-level class of the contract (see as_array() for how
it views the caller's buffer).  From Python, each call pays interpreter and
dispatch overhead, more than the parse itself (notebook 02 splits it up); the
batch kernel and the native loops are where the compiled code shows.
"""
import sys
import time

from ..numba_layout import (C_ALPHA, C_CONTENT, C_DIGIT, C_HEX, C_IPLIT, C_PATH, C_QDTEXT, C_QPAIR,
                             C_QUERY, C_REGNAME, C_SCHEME, C_TCHAR, CHAR_CLASS, LIMITS_DTYPE,
                             REQUEST_WORDS, SUMMARY_WORDS, W_CONTENT_LENGTH, W_FLAGS0, W_FLAGS1,
                             W_HEAD_LEN, W_HEADER_COUNT, W_HOST, W_METHOD, W_NAMES, W_PATH,
                             W_QUERY, W_STATUS, W_TARGET, W_VALUES, ArrayBytes, limits_array,
                             new_table)

import numpy as np  # noqa: E402  (numba_layout raises the clear ImportError first)
from llvmlite import ir
from numba import carray, cfunc, njit, types
from numba.core.extending import intrinsic

from ..http.limits import DEFAULT_LIMITS, Limits
from . import register
from .request_table import (BODY_CHUNKED, BODY_LENGTH, BODY_NONE, FORM_ABSOLUTE, FORM_ASTERISK, FORM_AUTHORITY,
                    FORM_ORIGIN, RequestHead)

if sys.byteorder != "little":  # pragma: no cover - the flag words below assume it
    raise ImportError("the numba parser packs the request table's byte fields little-endian")

CC = CHAR_CLASS
MAX_CHUNK_LINE = 4096
MAX_CHUNK_OVERHEAD = 102400   # python.py MAX_CHUNK_OVERHEAD

_LIT_CONNECT = np.frombuffer(b"CONNECT", np.uint8).copy()
_LIT_OPTIONS = np.frombuffer(b"OPTIONS", np.uint8).copy()
_LIT_HOST = np.frombuffer(b"host", np.uint8).copy()
_LIT_CL = np.frombuffer(b"content-length", np.uint8).copy()
_LIT_TE = np.frombuffer(b"transfer-encoding", np.uint8).copy()
_LIT_CONNECTION = np.frombuffer(b"connection", np.uint8).copy()
_LIT_EXPECT = np.frombuffer(b"expect", np.uint8).copy()
_LIT_CHUNKED = np.frombuffer(b"chunked", np.uint8).copy()
_LIT_CLOSE = np.frombuffer(b"close", np.uint8).copy()
_LIT_KEEP_ALIVE = np.frombuffer(b"keep-alive", np.uint8).copy()
_LIT_CONTINUE = np.frombuffer(b"100-continue", np.uint8).copy()

_FIELD_OTHER, _FIELD_HOST, _FIELD_CL, _FIELD_TE, _FIELD_CONNECTION, _FIELD_EXPECT = 0, 1, 2, 3, 4, 5


# -- small helpers (inlined by LLVM into the kernels) -------------------------
@intrinsic
def load_byte(typingctx, arr, idx):
    """arr[idx] for an index known to be in range: one load.  Indexing with a
    signed integer makes Numba add a negative-index fix (a compare and a
    conditional move) to every access: most of a byte loop's instructions."""
    sig = arr.dtype(arr, types.intp)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.load(builder.gep(ary.data, [args[1]]))
    return sig, codegen


@intrinsic
def _load_u64(typingctx, arr, idx):
    """8 bytes of a uint8 array at any offset, as one little-endian uint64 (an
    unaligned load: what C does with memcpy)."""
    sig = types.uint64(arr, types.intp)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = builder.gep(ary.data, [args[1]])
        return builder.load(builder.bitcast(ptr, ir.IntType(64).as_pointer()), align=1)
    return sig, codegen


@njit(cache=True, _nrt=False)
def _find_lf(buf, pos, end):
    for i in range(pos, end):
        if load_byte(buf, i) == 10:
            return i
    return -1


@njit(cache=True, _nrt=False)
def _skip(buf, i, e, cls):
    while i < e and CC[load_byte(buf, i)] & cls:
        i += 1
    return i


@njit(cache=True, _nrt=False)
def _is_ows(c):
    return c == 32 or c == 9


@njit(cache=True, _nrt=False)
def _lower(c):
    if 65 <= c <= 90:
        return c + 32
    return c


@njit(cache=True, _nrt=False)
def _eq_exact(buf, i, e, lit):
    if e - i != len(lit):
        return False
    for k in range(len(lit)):
        if load_byte(buf, i + k) != lit[k]:
            return False
    return True


@njit(cache=True, _nrt=False)
def _eq_nocase(buf, i, e, lit):
    """buf[i:e].lower() == lit (lit is lower case)."""
    if e - i != len(lit):
        return False
    for k in range(len(lit)):
        if _lower(load_byte(buf, i + k)) != lit[k]:
            return False
    return True


@njit(cache=True, _nrt=False, inline="always")
def _same_bytes(buf, a, b, n):
    """buf[a:a + n] == buf[b:b + n]."""
    for k in range(n):
        if load_byte(buf, a + k) != load_byte(buf, b + k):
            return False
    return True


@njit(cache=True, _nrt=False, inline="always")
def _field_kind(buf, i, e):
    n = e - i
    if n == 4:
        if _eq_nocase(buf, i, e, _LIT_HOST):
            return _FIELD_HOST
    elif n == 14:
        if _eq_nocase(buf, i, e, _LIT_CL):
            return _FIELD_CL
    elif n == 17:
        if _eq_nocase(buf, i, e, _LIT_TE):
            return _FIELD_TE
    elif n == 10:
        if _eq_nocase(buf, i, e, _LIT_CONNECTION):
            return _FIELD_CONNECTION
    elif n == 6:
        if _eq_nocase(buf, i, e, _LIT_EXPECT):
            return _FIELD_EXPECT
    return _FIELD_OTHER


@njit(cache=True, _nrt=False, inline="always")
def _match_host(buf, i, e):
    """End of a uri-host at buf[i:] (IP-literal, or reg-name which may be empty),
    or -1.  A '[' can only start an IP-literal (reg-name excludes it)."""
    if i < e and load_byte(buf, i) == 91:          # '['
        j = _skip(buf, i + 1, e, C_IPLIT)
        if j == i + 1 or j >= e or load_byte(buf, j) != 93:
            return -1
        return j + 1
    return _skip(buf, i, e, C_REGNAME)


@njit(cache=True, _nrt=False, inline="always")
def _host_value_ok(buf, i, e):
    """Host field value: uri-host [ ":" *DIGIT ], the whole value."""
    h = _match_host(buf, i, e)
    if h < 0:
        return False
    if h < e and load_byte(buf, h) == 58:          # ':'
        h = _skip(buf, h + 1, e, C_DIGIT)
    return h == e


@njit(cache=True, _nrt=False)
def _put_span(t, w, off, ln):
    t[w] = off
    t[w + 1] = ln


# -- the request line ----------------------------------------------------------
@njit(cache=True, _nrt=False)
def _request_line(buf, s, le, start, t):
    """Validate buf[s:le] (CR LF excluded) and fill the request-line fields.
    Returns 0, or -400 / -505 (every syntax error wins over 505)."""
    sp1 = -1
    sp2 = -1
    for i in range(s, le):
        if load_byte(buf, i) == 32:
            if sp1 < 0:
                sp1 = i
            elif sp2 < 0:
                sp2 = i
            else:
                return -400
    if sp2 < 0 or sp1 == s or sp2 == sp1 + 1 or sp2 + 1 == le:
        return -400
    if _skip(buf, s, sp1, C_TCHAR) != sp1:
        return -400
    v = sp2 + 1
    if (le - v != 8 or load_byte(buf, v) != 72 or load_byte(buf, v + 1) != 84 or load_byte(buf, v + 2) != 84 or load_byte(buf, v + 3) != 80
            or load_byte(buf, v + 4) != 47 or not (CC[load_byte(buf, v + 5)] & C_DIGIT) or load_byte(buf, v + 6) != 46
            or not (CC[load_byte(buf, v + 7)] & C_DIGIT)):
        return -400
    major = load_byte(buf, v + 5) - 48
    minor = load_byte(buf, v + 7) - 48
    t0 = sp1 + 1
    t1 = sp2
    is_connect = _eq_exact(buf, s, sp1, _LIT_CONNECT)
    c0 = load_byte(buf, t0)
    has_q = 0
    if c0 == 47:                                    # '/': origin-form
        form = FORM_ORIGIN
        p0 = t0
        i = _skip(buf, t0, t1, C_PATH)
        p1 = i
        if i < t1 and load_byte(buf, i) == 63:                 # '?'
            has_q = 1
            q0 = i + 1
            i = _skip(buf, q0, t1, C_QUERY)
        else:
            q0 = i
        q1 = i
        if i != t1:
            return -400
    elif c0 == 42 and t1 - t0 == 1:                 # '*': asterisk-form
        if not _eq_exact(buf, s, sp1, _LIT_OPTIONS):
            return -400
        form = FORM_ASTERISK
        p0 = p1 = q0 = q1 = t0
    elif is_connect:                                # authority-form
        h = _match_host(buf, t0, t1)
        if h < 0 or h >= t1 or load_byte(buf, h) != 58:
            return -400
        if h + 1 == t1 or _skip(buf, h + 1, t1, C_DIGIT) != t1:
            return -400
        form = FORM_AUTHORITY
        p0 = p1 = q0 = q1 = t0
    else:                                           # absolute-form
        if not (CC[c0] & C_ALPHA):
            return -400
        i = _skip(buf, t0 + 1, t1, C_SCHEME)
        if i + 3 > t1 or load_byte(buf, i) != 58 or load_byte(buf, i + 1) != 47 or load_byte(buf, i + 2) != 47:
            return -400
        i = _match_host(buf, i + 3, t1)
        if i < 0:
            return -400
        if i < t1 and load_byte(buf, i) == 58:
            i = _skip(buf, i + 1, t1, C_DIGIT)
        p0 = i
        if i < t1 and load_byte(buf, i) == 47:
            i = _skip(buf, i + 1, t1, C_PATH)
        p1 = i
        if i < t1 and load_byte(buf, i) == 63:
            has_q = 1
            q0 = i + 1
            i = _skip(buf, q0, t1, C_QUERY)
        else:
            q0 = i
        q1 = i
        if i != t1:
            return -400
        form = FORM_ABSOLUTE
    if is_connect and form != FORM_AUTHORITY:
        return -400
    for i in range(t0, t1):                         # every '%' starts %HEXDIG HEXDIG
        if load_byte(buf, i) == 37:
            if i + 2 >= t1 or not (CC[load_byte(buf, i + 1)] & C_HEX) or not (CC[load_byte(buf, i + 2)] & C_HEX):
                return -400
    if major != 1:
        return -505
    if minor > 1:       # RFC 9110 2.5: HTTP/1.x, x > 1, is processed as HTTP/1.1
        minor = 1
    _put_span(t, W_METHOD, s - start, sp1 - s)
    _put_span(t, W_TARGET, t0 - start, t1 - t0)
    _put_span(t, W_PATH, p0 - start, p1 - p0)
    _put_span(t, W_QUERY, q0 - start, q1 - q0)
    t[W_FLAGS0] = minor | (form << 8)
    t[W_FLAGS1] = has_q << 8
    return 0


@njit(cache=True, _nrt=False, inline="always")
def _fast_request_line(buf, s, end, start, t):
    """The common request line in one pass: token SP origin-form SP
    "HTTP/1.1" or "HTTP/1.0" CR LF, every byte checked on the way (pct-encoding
    included).  Returns the position of the LF with the request-line fields
    filled in, or -1 for anything else (the caller then takes the general path,
    which gives the exact verdict): this shape can only be valid, and for it the
    first LF is the one found here, since no byte before it can be an LF."""
    i = s
    while i < end and CC[load_byte(buf, i)] & C_TCHAR:
        i += 1
    sp1 = i
    if sp1 == s or i + 1 >= end or load_byte(buf, i) != 32 or load_byte(buf, i + 1) != 47:
        return -1
    if sp1 - s == 7 and _eq_exact(buf, s, sp1, _LIT_CONNECT):
        return -1
    t0 = i + 1
    i = t0
    q0 = -1
    while i < end:
        c = load_byte(buf, i)
        if c == 37:                                     # '%' HEXDIG HEXDIG
            if i + 2 >= end or not (CC[load_byte(buf, i + 1)] & C_HEX) or not (CC[load_byte(buf, i + 2)] & C_HEX):
                return -1
            i += 3
        elif c == 63 and q0 < 0:                        # the first '?' starts the query
            q0 = i + 1
            i += 1
        elif CC[c] & (C_QUERY if q0 >= 0 else C_PATH):
            i += 1
        else:
            break
    t1 = i
    v = i + 1
    if (v + 10 > end or load_byte(buf, i) != 32 or load_byte(buf, v) != 72 or load_byte(buf, v + 1) != 84 or load_byte(buf, v + 2) != 84
            or load_byte(buf, v + 3) != 80 or load_byte(buf, v + 4) != 47 or load_byte(buf, v + 5) != 49 or load_byte(buf, v + 6) != 46
            or (load_byte(buf, v + 7) != 49 and load_byte(buf, v + 7) != 48) or load_byte(buf, v + 8) != 13 or load_byte(buf, v + 9) != 10):
        return -1
    t[W_METHOD] = s - start
    t[W_METHOD + 1] = sp1 - s
    t[W_TARGET] = t0 - start
    t[W_TARGET + 1] = t1 - t0
    t[W_PATH] = t0 - start
    if q0 >= 0:
        t[W_PATH + 1] = q0 - 1 - t0
        t[W_QUERY] = q0 - start
        t[W_QUERY + 1] = t1 - q0
    else:
        t[W_PATH + 1] = t1 - t0
        t[W_QUERY] = t1 - start
        t[W_QUERY + 1] = 0
    t[W_FLAGS0] = (load_byte(buf, v + 7) - 48) | (FORM_ORIGIN << 8)
    t[W_FLAGS1] = (1 if q0 >= 0 else 0) << 8
    return v + 9


# -- the framing fields ----------------------------------------------------------
@njit(cache=True, _nrt=False)
def _content_length(buf, t, nfields, start, max_body):
    """Every Content-Length value (lists included) must be 1*DIGIT and name one
    number.  Returns the length, or -400 / -413."""
    d0 = -1      # the first value's digits, leading zeros stripped
    d1 = -1
    for k in range(nfields):
        if t[W_NAMES + 2 * k + 1] != 14:      # a cheap test first
            continue
        o = start + t[W_NAMES + 2 * k]
        if _field_kind(buf, o, o + 14) != _FIELD_CL:
            continue
        i = start + t[W_VALUES + 2 * k]
        e = i + t[W_VALUES + 2 * k + 1]
        while True:                                  # one list element per turn
            j = i
            while j < e and load_byte(buf, j) != 44:
                j += 1
            a = i
            b = j
            while a < b and _is_ows(load_byte(buf, a)):
                a += 1
            while b > a and _is_ows(load_byte(buf, b - 1)):
                b -= 1
            if a == b or _skip(buf, a, b, C_DIGIT) != b:
                return -400
            while a < b and load_byte(buf, a) == 48:
                a += 1
            if d0 < 0:
                d0 = a
                d1 = b
            else:
                if b - a != d1 - d0:
                    return -400
                for m in range(b - a):
                    if load_byte(buf, a + m) != load_byte(buf, d0 + m):
                        return -400
            if j >= e:
                break
            i = j + 1
    if d1 - d0 > 18:
        return -413
    value = 0
    for m in range(d0, d1):
        value = value * 10 + (load_byte(buf, m) - 48)
    if value > max_body:
        return -413
    return value


@njit(cache=True, _nrt=False)
def _transfer_encoding(buf, t, nfields, start):
    """The codings of every Transfer-Encoding field, as one list: chunked must
    be the last and appear once.  Returns 0 (chunked alone), -400 or -501."""
    count = 0
    chunked = 0
    last_chunked = False
    for k in range(nfields):
        if t[W_NAMES + 2 * k + 1] != 17:      # a cheap test first
            continue
        o = start + t[W_NAMES + 2 * k]
        if _field_kind(buf, o, o + 17) != _FIELD_TE:
            continue
        i = start + t[W_VALUES + 2 * k]
        e = i + t[W_VALUES + 2 * k + 1]
        while True:
            j = i
            while j < e and load_byte(buf, j) != 44:
                j += 1
            a = i
            b = j
            while a < b and _is_ows(load_byte(buf, a)):
                a += 1
            while b > a and _is_ows(load_byte(buf, b - 1)):
                b -= 1
            if a < b:
                if _skip(buf, a, b, C_TCHAR) != b:
                    return -400
                count += 1
                last_chunked = _eq_nocase(buf, a, b, _LIT_CHUNKED)
                if last_chunked:
                    chunked += 1
            if j >= e:
                break
            i = j + 1
    if count == 0 or not last_chunked or chunked != 1:
        return -400
    if count > 1:
        return -501
    return 0


@njit(cache=True, _nrt=False)
def _keep_alive(buf, t, nfields, start, minor):
    """HTTP/1.1 unless a Connection token is "close"; HTTP/1.0 only with
    "keep-alive" (and no "close")."""
    ka = minor == 1
    for k in range(nfields):
        if t[W_NAMES + 2 * k + 1] != 10:      # a cheap test first
            continue
        o = start + t[W_NAMES + 2 * k]
        if _field_kind(buf, o, o + 10) != _FIELD_CONNECTION:
            continue
        i = start + t[W_VALUES + 2 * k]
        e = i + t[W_VALUES + 2 * k + 1]
        while True:
            j = i
            while j < e and load_byte(buf, j) != 44:
                j += 1
            a = i
            b = j
            while a < b and _is_ows(load_byte(buf, a)):
                a += 1
            while b > a and _is_ows(load_byte(buf, b - 1)):
                b -= 1
            if _eq_nocase(buf, a, b, _LIT_CLOSE):
                return False
            if minor == 0 and _eq_nocase(buf, a, b, _LIT_KEEP_ALIVE):
                ka = True
            if j >= e:
                break
            i = j + 1
    return ka


# -- the head ------------------------------------------------------------------------
_ONES = np.uint64(0x0101010101010101)
_HIGH = np.uint64(0x8080808080808080)
_SP8 = np.uint64(0x2020202020202020)
_DEL8 = np.uint64(0x7F7F7F7F7F7F7F7F)


@njit(cache=True, _nrt=False)
def _skip_content(buf, i, e):
    """End of the field-content run at buf[i:e].  Eight bytes at a time while
    none is a CTL (below 0x20: CR, LF, HTAB, ...) or DEL; SP and obs-text pass;
    the byte loop settles the rest (HTAB included)."""
    while i + 8 <= e:
        x = _load_u64(buf, i)
        lt = (x - _SP8) & ~x & _HIGH             # some byte < 0x20
        y = x ^ _DEL8
        eq = (y - _ONES) & ~y & _HIGH            # some byte == 0x7F
        if (lt | eq) != 0:
            break
        i += 8
    return _skip(buf, i, e, C_CONTENT)


@njit(cache=True, _nrt=False, inline="always")
def _field_lines(buf, p, end, start, max_fields, t):
    """One pass over the field lines at buf[p:end] up to the empty line, storing
    each name and trimmed value span.  Returns (head_end, count, nhost, host
    index, bitmask of framing kinds), head_end = -1 when the lines are not all
    valid, the empty line is not there yet, or there are more than max_fields
    lines: the caller then decides between 0 / 431 / 400 in the contract's order.

    The hot loop of the parser, so written without calls (Numba does not inline
    across @njit functions): names byte by byte through the class table, values
    eight bytes at a time while no byte is a CTL or DEL."""
    k = 0
    nhost = 0
    host = -1
    kinds = 0
    while True:
        if p + 1 < end and load_byte(buf, p) == 13 and load_byte(buf, p + 1) == 10:
            return p + 2, k, nhost, host, kinds
        if k >= max_fields:
            return -1, k, nhost, host, kinds
        n0 = p
        while p < end and CC[load_byte(buf, p)] & C_TCHAR:
            p += 1
        if p == n0 or p >= end or load_byte(buf, p) != 58:
            return -1, k, nhost, host, kinds
        n1 = p
        p += 1
        while p < end and (load_byte(buf, p) == 32 or load_byte(buf, p) == 9):
            p += 1
        v0 = p
        while p + 8 <= end:
            x = _load_u64(buf, p)
            y = x ^ _DEL8
            if ((x - _SP8) & ~x & _HIGH) | ((y - _ONES) & ~y & _HIGH):
                break
            p += 8
        while p < end and CC[load_byte(buf, p)] & C_CONTENT:
            p += 1
        if p + 1 >= end or load_byte(buf, p) != 13 or load_byte(buf, p + 1) != 10:
            return -1, k, nhost, host, kinds
        v1 = p
        while v1 > v0 and (load_byte(buf, v1 - 1) == 32 or load_byte(buf, v1 - 1) == 9):
            v1 -= 1
        w = W_NAMES + 2 * k
        t[w] = n0 - start
        t[w + 1] = n1 - n0
        w = W_VALUES + 2 * k
        t[w] = v0 - start
        t[w + 1] = v1 - v0
        nl = n1 - n0
        if nl == 4 or nl == 14 or nl == 17 or nl == 10 or nl == 6:
            kind = _field_kind(buf, n0, n1)
            if kind == _FIELD_HOST:
                nhost += 1
                host = k
            kinds |= 1 << kind
        k += 1
        p += 2


@njit(cache=True, _nrt=False)
def _head_verdict(buf, lf, start, end, max_header_bytes, max_headers):
    """The field lines did not parse in one pass: the contract's order decides.
    The head ends at the first LF followed by CR LF or by a bare LF; until then
    0 (or 431 once the buffered bytes reach the limit); then size (431), bare
    LF (400), field count (431); else some line is invalid (400)."""
    p = lf
    head_end = -1
    bare = False
    nfields = 0
    while p < end:
        if load_byte(buf, p) == 10:
            if p > lf:
                nfields += 1
            if p + 1 < end and load_byte(buf, p + 1) == 10:
                head_end = p + 2
                bare = True
                break
            if p + 2 < end and load_byte(buf, p + 1) == 13 and load_byte(buf, p + 2) == 10:
                head_end = p + 3
                break
        p += 1
    if head_end < 0:
        return -431 if end - start >= max_header_bytes else 0
    if head_end - start > max_header_bytes:
        return -431
    if bare:
        return -400
    if nfields > max_headers:
        return -431
    return -400


@njit(cache=True, _nrt=False)
def parse_head_kernel(buf, start, end, lim, t):
    """Parse the head at buf[start:end] into the flat request table `t`; `lim`
    is numba_layout.limits_array().  Returns n > 0 (head length), 0 (need
    more) or -status; t[W_STATUS] gets 0 or the status."""
    n = _parse_head(buf, start, end, lim[0], lim[1], lim[2], lim[3], t)
    t[W_STATUS] = 0 if n >= 0 else -n
    return n


@njit(cache=True, _nrt=False)
def _parse_head(buf, start, end, max_request_line, max_header_bytes, max_headers, max_body, t):
    # leading empty lines are skipped but count toward the head limit (RFC 9112 2.2)
    s = start
    lead_end = min(end, start + max_header_bytes + 1)
    while s + 1 < lead_end and load_byte(buf, s) == 13 and load_byte(buf, s + 1) == 10:
        s += 2
    if s - start >= max_header_bytes:
        return -431
    lf = _fast_request_line(buf, s, end, start, t)
    if lf >= 0:
        if lf - s - 1 > max_request_line:
            return -414
    else:
        lf = _find_lf(buf, s, end)
        if lf < 0:
            k = end - s
            if k - 1 > max_request_line or (k > max_request_line and load_byte(buf, end - 1) != 13):
                return -414
            return 0
        cr = 1 if lf > s and load_byte(buf, lf - 1) == 13 else 0
        if lf - s - cr > max_request_line:
            return -414
        if cr == 0:
            return -400
        r = _request_line(buf, s, lf - 1, start, t)
        if r < 0:
            return r
    minor = t[W_FLAGS0] & 0xFF
    head_end, k, nhost, host, kinds = _field_lines(buf, lf + 1, end, start, max_headers, t)
    if head_end < 0:
        return _head_verdict(buf, lf, start, end, max_header_bytes, max_headers)
    if head_end - start > max_header_bytes:
        return -431
    has_cl = (kinds >> _FIELD_CL) & 1
    has_te = (kinds >> _FIELD_TE) & 1
    has_conn = (kinds >> _FIELD_CONNECTION) & 1
    has_expect = (kinds >> _FIELD_EXPECT) & 1
    # framing, in the contract's order
    if nhost > 1 or (nhost == 0 and minor == 1):
        return -400
    if host >= 0:
        h0 = start + t[W_VALUES + 2 * host]
        if not _host_value_ok(buf, h0, h0 + t[W_VALUES + 2 * host + 1]):
            return -400
        _put_span(t, W_HOST, t[W_VALUES + 2 * host], t[W_VALUES + 2 * host + 1])
    else:
        _put_span(t, W_HOST, 0, 0)
    if has_te and has_cl:
        return -400
    body_kind = BODY_NONE
    content_length = -1
    if has_cl:
        content_length = _content_length(buf, t, k, start, max_body)
        if content_length < 0:
            return content_length
        body_kind = BODY_LENGTH
    if has_te:
        if minor == 0:
            return -400
        r = _transfer_encoding(buf, t, k, start)
        if r < 0:
            return r
        body_kind = BODY_CHUNKED
    keep_alive = minor == 1
    if has_conn:
        keep_alive = _keep_alive(buf, t, k, start, minor)
    expect = 0
    if has_expect:
        for j in range(k):
            if t[W_NAMES + 2 * j + 1] != 6:      # a cheap test first
                continue
            o = start + t[W_NAMES + 2 * j]
            if _field_kind(buf, o, o + 6) != _FIELD_EXPECT:
                continue
            v0 = start + t[W_VALUES + 2 * j]
            if not _eq_nocase(buf, v0, v0 + t[W_VALUES + 2 * j + 1], _LIT_CONTINUE):
                return -417
            if minor == 1:
                expect = 1
    t[W_HEAD_LEN] = head_end - start
    t[W_FLAGS0] = (t[W_FLAGS0] & 0xFFFF) | ((1 if keep_alive else 0) << 16) | (body_kind << 24)
    t[W_FLAGS1] = (t[W_FLAGS1] & 0xFF00) | expect
    t[W_CONTENT_LENGTH] = content_length & 0xFFFFFFFF
    t[W_CONTENT_LENGTH + 1] = (content_length >> 32) & 0xFFFFFFFF
    t[W_HEADER_COUNT] = k
    return head_end - start


# the same function, inlined where it is called: for the native loops, whose
# per-head call passed two array structs and six scalars through the stack
_parse_head_inline = njit(cache=True, _nrt=False, inline="always")(_parse_head.py_func)


@njit(cache=True, _nrt=False)
def parse_batch_kernel(buf, start, end, lim, t, summaries, starts, max_requests):
    """Parse pipelined heads back to back (bodies are not skipped: for GET-style
    batches).  Row k of `summaries` (uint32, SUMMARY_WORDS wide) gets the fixed
    part of request k's table (its spans are relative to starts[k]); `t` holds
    the whole table of the last one.  Stops at the first incomplete or invalid
    head or after max_requests.  Returns (count, consumed, last_status)."""
    pos = start
    count = 0
    last = 0
    max_request_line, max_header_bytes, max_headers, max_body = lim[0], lim[1], lim[2], lim[3]
    while count < max_requests:
        n = _parse_head_inline(buf, pos, end, max_request_line, max_header_bytes, max_headers, max_body, t)
        if n <= 0:
            last = n
            break
        t[W_STATUS] = 0
        for w in range(SUMMARY_WORDS):
            summaries[count, w] = t[w]
        starts[count] = pos - start
        pos += n
        count += 1
    return count, pos - start, last


# the rows parse_heads_kernel fills (int64), one per head (with fold: one per
# run of heads that get the same answer): the contract's n (every head of the
# run has that length), the number of heads (1 without fold), then the first
# head's flag word (version_minor, target_form, keep_alive, body_kind bytes)
# and its method and path spans, relative to the head's first byte
H_LEN, H_COUNT, H_FLAGS0, H_METHOD, H_METHOD_LEN, H_PATH, H_PATH_LEN = range(7)
HEAD_FIELDS = 7


@njit(cache=True, _nrt=False)
def parse_heads_kernel(buf, start, end, lim, t, heads, max_heads, fold):
    """Every head of a read in one call, for the native loops (the parse is
    inlined here, and this kernel is cached on disk; the loops are compiled in
    every process).  Every head is parsed in full and gets its own row of
    `heads` (H_COUNT 1).  With `fold` true (the fold_runs knob, off by
    default: it exploits runs of equal requests) consecutive heads with the
    same length, flag word, method and path bytes (so the same route and the
    same answer) share one row (H_COUNT of them); rows follow each
    other from `start`.  Stops after a row whose n <= 0 (0: need more,
    -status: invalid), a head with a body (the bytes after it are not a head)
    or one that ends the connection, after max_heads heads or when `heads` is
    full.  `t` holds the last head's whole table.  Returns the number of rows."""
    max_request_line, max_header_bytes, max_headers, max_body = lim[0], lim[1], lim[2], lim[3]
    pos = start
    prev = start             # where the last row's first head starts
    k = 0
    count = 0
    while count < max_heads:
        n = _parse_head_inline(buf, pos, end, max_request_line, max_header_bytes, max_headers, max_body, t)
        count += 1
        if n <= 0:
            if k == heads.shape[0]:
                break        # no room: the caller parses it again on its next call
            heads[k, H_LEN] = n
            heads[k, H_COUNT] = 1
            k += 1
            break
        f0 = t[W_FLAGS0]
        mo, ml, po, pl = t[W_METHOD], t[W_METHOD + 1], t[W_PATH], t[W_PATH + 1]
        same = (fold != 0 and k > 0 and heads[k - 1, H_LEN] == n and heads[k - 1, H_FLAGS0] == f0
                and heads[k - 1, H_METHOD_LEN] == ml and heads[k - 1, H_PATH_LEN] == pl)
        same = (same and _same_bytes(buf, prev + heads[k - 1, H_METHOD], pos + mo, ml)
                and _same_bytes(buf, prev + heads[k - 1, H_PATH], pos + po, pl))
        if same:
            heads[k - 1, H_COUNT] += 1
        else:
            if k == heads.shape[0]:
                break
            heads[k, H_LEN] = n
            heads[k, H_COUNT] = 1
            heads[k, H_FLAGS0] = f0
            heads[k, H_METHOD] = mo
            heads[k, H_METHOD_LEN] = ml
            heads[k, H_PATH] = po
            heads[k, H_PATH_LEN] = pl
            prev = pos
            k += 1
        if (f0 >> 24) != BODY_NONE or not (f0 >> 16) & 0xFF:
            break
        pos += n
        if pos >= end:
            break
    return k


# -- chunked bodies ---------------------------------------------------------------------
@njit(cache=True, _nrt=False)
def _chunk_ext_ok(buf, i, e):
    """*( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] ), all of buf[i:e]."""
    while i < e:
        while i < e and _is_ows(load_byte(buf, i)):
            i += 1
        if i >= e or load_byte(buf, i) != 59:
            return False
        i += 1
        while i < e and _is_ows(load_byte(buf, i)):
            i += 1
        j = _skip(buf, i, e, C_TCHAR)
        if j == i:
            return False
        i = j
        k = i
        while k < e and _is_ows(load_byte(buf, k)):
            k += 1
        if k < e and load_byte(buf, k) == 61:                  # '=': a value must follow
            k += 1
            while k < e and _is_ows(load_byte(buf, k)):
                k += 1
            if k < e and load_byte(buf, k) == 34:              # quoted-string
                k += 1
                while True:
                    if k >= e:
                        return False
                    c = load_byte(buf, k)
                    if c == 34:
                        k += 1
                        break
                    if c == 92:
                        if k + 1 >= e or not (CC[load_byte(buf, k + 1)] & C_QPAIR):
                            return False
                        k += 2
                    elif CC[c] & C_QDTEXT:
                        k += 1
                    else:
                        return False
            else:
                j = _skip(buf, k, e, C_TCHAR)
                if j == k:
                    return False
                k = j
            i = k
    return True


@njit(cache=True, _nrt=False)
def parse_chunked_kernel(buf, start, end, lim, out, out_off):
    """Decode the chunked body at buf[start:end] into out[out_off:].  Returns
    (n, body_len): n > 0 the body's length on the wire, 0 need more, -status."""
    return _parse_chunked(buf, start, end, lim[1], lim[3], out, out_off, True)


@njit(cache=True, _nrt=False)
def _parse_chunked(buf, start, end, max_header_bytes, max_body, out, out_off, write):
    pos = start
    total = 0
    blen = 0
    overhead = 0
    while True:
        lf = _find_lf(buf, pos, end)
        if lf < 0:
            return (-400 if end - pos > MAX_CHUNK_LINE else 0), 0
        if lf - pos > MAX_CHUNK_LINE or lf == pos or load_byte(buf, lf - 1) != 13:
            return -400, 0
        le = lf - 1
        h = _skip(buf, pos, le, C_HEX)
        if h == pos:
            return -400, 0
        z = pos
        while z < h and load_byte(buf, z) == 48:
            z += 1
        if h - z > 15:
            return -400, 0
        if not _chunk_ext_ok(buf, h, le):
            return -400, 0
        size = 0
        for i in range(z, h):
            c = load_byte(buf, i)
            if c <= 57:
                d = c - 48
            elif c >= 97:
                d = c - 87
            else:
                d = c - 55
            size = size * 16 + d
        total += size
        if total > max_body:
            return -413, 0
        overhead += lf + 1 - pos + (2 if size else 0)
        if overhead > MAX_CHUNK_OVERHEAD and overhead > total:
            return -413, 0
        pos = lf + 1
        if size == 0:
            break
        if end - pos < size + 2:
            return 0, 0
        if load_byte(buf, pos + size) != 13 or load_byte(buf, pos + size + 1) != 10:
            return -400, 0
        if write:
            # forward copy: with out = buf and out_off = start the writes stay behind the reads
            for i in range(size):
                out[out_off + blen + i] = load_byte(buf, pos + i)
        blen += size
        pos += size + 2
    t_start = pos
    while True:                                         # trailer field lines, then CR LF
        lf = _find_lf(buf, pos, end)
        if lf < 0:
            if end - t_start >= max_header_bytes:
                return -431, 0
            return 0, 0
        if lf + 1 - t_start > max_header_bytes:
            return -431, 0
        if lf == pos or load_byte(buf, lf - 1) != 13:
            return -400, 0
        if lf == pos + 1:
            return lf + 1 - start, blen
        i = _skip(buf, pos, lf, C_TCHAR)
        if i == pos or load_byte(buf, i) != 58:
            return -400, 0
        if _skip(buf, i + 1, lf - 1, C_CONTENT) != lf - 1:
            return -400, 0
        pos = lf + 1


# -- the C entry points as @cfunc ------------------------------------------------------
_c_parse_head_sig = types.int32(types.CPointer(types.uint8), types.uintp, types.voidptr, types.voidptr)
_c_parse_chunked_sig = types.int64(types.CPointer(types.uint8), types.uintp, types.voidptr,
                                   types.CPointer(types.int64))
_LIMITS_WORDS = LIMITS_DTYPE.itemsize // 4


def _kl_parse_head(buf_ptr, length, limits_ptr, req_ptr):
    """int kl_parse_head(const uint8_t *buf, size_t len, const kl_limits *limits, kl_request *req)"""
    buf = carray(buf_ptr, (length,))
    lim = carray(limits_ptr, (_LIMITS_WORDS,), np.uint32)
    t = carray(req_ptr, (REQUEST_WORDS,), np.uint32)
    max_body = np.int64(lim[4]) | (np.int64(lim[5]) << 32)
    n = _parse_head(buf, 0, np.int64(length), np.int64(lim[0]), np.int64(lim[1]), np.int64(lim[2]),
                    max_body, t)
    t[W_STATUS] = 0 if n >= 0 else -n
    return n


def _kl_parse_chunked(buf_ptr, length, limits_ptr, body_len_ptr):
    """int64_t kl_parse_chunked(uint8_t *buf, size_t len, const kl_limits *limits, int64_t *body_len)
    (compacts the data in place at buf[0 .. *body_len))"""
    buf = carray(buf_ptr, (length,))
    lim = carray(limits_ptr, (_LIMITS_WORDS,), np.uint32)
    out_len = carray(body_len_ptr, (1,))
    max_body = np.int64(lim[4]) | (np.int64(lim[5]) << 32)
    # validate first, compact only a complete body: a call that answers "need
    # more" (or an error) must leave the caller's bytes as they were
    n, blen = _parse_chunked(buf, 0, np.int64(length), np.int64(lim[1]), max_body, buf, 0, False)
    if n > 0:
        n, blen = _parse_chunked(buf, 0, np.int64(length), np.int64(lim[1]), max_body, buf, 0, True)
    out_len[0] = blen
    return n


_CFUNCS = {}


def c_entry_points():
    """The @cfunc objects {"kl_parse_head": ..., "kl_parse_chunked": ...}, with the
    C signatures of kourier_lab.h; each one's ``.address`` is a function pointer a
    C loop can call natively.  Built on first use, not at import (a process
    that never runs the C loop never pays for them); cached on disk, so a later
    process loads them."""
    if not _CFUNCS:
        _CFUNCS["kl_parse_head"] = cfunc(_c_parse_head_sig, nopython=True, cache=True)(_kl_parse_head)
        _CFUNCS["kl_parse_chunked"] = cfunc(_c_parse_chunked_sig, nopython=True, cache=True)(_kl_parse_chunked)
    return dict(_CFUNCS)


def kl_parse_head_address() -> int:
    return c_entry_points()["kl_parse_head"].address


def kl_parse_chunked_address() -> int:
    return c_entry_points()["kl_parse_chunked"].address


# -- the Python-level parser ---------------------------------------------------------------
_EMPTY = np.zeros(0, np.uint8)
_FAILED = 2


def as_array(buf):
    """A uint8 numpy view of a bytes-like object, without copying.  A
    numba_layout.ArrayBytes (what the Numba buffers hand out) carries its
    view already; anything else is viewed with np.frombuffer for the duration
    of one call (holding an export of a bytearray would forbid resizing it)."""
    if type(buf) is ArrayBytes:
        return buf.array
    if len(buf) == 0:
        return _EMPTY
    return np.frombuffer(buf, dtype=np.uint8)


class NumbaParser:
    """The contract's parser over the Numba kernels (see the module docstring)."""
    name = "numba"
    # parsers.create(fold_runs=True) sets it; nothing here folds (parse_heads
    # comes from parse_heads_by_head: every entry's info from its own head)
    fold_runs = False
    # the kernels parse_head / parse_chunked call; user_numba.kernel_parser() swaps in a user's
    _head_kernel = staticmethod(parse_head_kernel)
    _chunked_kernel = staticmethod(parse_chunked_kernel)

    def __init__(self, limits: Limits = DEFAULT_LIMITS):
        if not isinstance(limits, Limits):
            raise TypeError(f"limits must be a Limits, not {type(limits).__name__}")
        self.limits = limits
        # _FAILED when the last call failed (the table holds its status, not
        # the last accepted head's fields)
        self._stale = 0
        self._lim = limits_array(limits)
        self._table, words = new_table(1)
        self._words = words[0]              # the flat uint32 view of the table
        self._summary = self._words[:16]   # the words parse_head reads back
        self._scratch = np.empty(0, np.uint8)
        self._batch_rows = 0
        self.info = None
        self._buf = None
        self._start = 0

    def parse_head(self, buf, start=0, end=None):
        if end is None or end > len(buf):
            end = len(buf)
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        n = self._head_kernel(as_array(buf), start, end, self._lim, self._words)
        self._stale = 0 if n > 0 else _FAILED
        if n > 0:
            (_, _, mo, ml, _, _, po, pl, qo, ql, _, _, f0, f1, cl_lo, cl_hi) = self._summary.tolist()
            mo += start
            po += start
            body_kind = f0 >> 24
            if f1 & 0xFF00:
                qo += start
                query = bytes(buf[qo:qo + ql])
            else:
                query = None
            self.info = (bytes(buf[mo:mo + ml]), bytes(buf[po:po + pl]), query, f0 & 0xFF,
                         (f0 & 0xFF0000) != 0, body_kind,
                         cl_lo | (cl_hi << 32) if body_kind == BODY_LENGTH else -1, (f1 & 0xFF) != 0)
            self._buf = buf
            self._start = start
        return n

    @property
    def table(self):
        """The kl_request table (a 1-element REQUEST_DTYPE array) of the last
        parse_head: the accepted head's fields, or the failed one's status."""
        return self._table

    @property
    def _t(self):
        return self.table.view(np.uint32)

    def _refresh_table(self):
        if self._stale:
            # the table holds another head: parse this one again (same verdict)
            self._head_kernel(as_array(self._buf), self._start, len(self._buf), self._lim, self._words)
            self._stale = 0

    def head(self) -> RequestHead:
        """The request table of the last successful parse_head, as Python values."""
        if self.info is None:
            raise RuntimeError("head() before a successful parse_head()")
        self._refresh_table()
        method, path, query, minor, keep_alive, body_kind, content_length, expect = self.info
        w = self._words.tolist()
        buf, s = self._buf, self._start
        headers = []
        host = None
        for k in range(w[W_HEADER_COUNT]):
            no, nl = w[W_NAMES + 2 * k], w[W_NAMES + 2 * k + 1]
            vo, vl = w[W_VALUES + 2 * k], w[W_VALUES + 2 * k + 1]
            name = bytes(buf[s + no:s + no + nl])
            value = bytes(buf[s + vo:s + vo + vl])
            headers.append((name, value))
            if name.lower() == b"host":
                host = value
        to, tl = w[W_TARGET], w[W_TARGET + 1]
        return RequestHead(method=method, target=bytes(buf[s + to:s + to + tl]), path=path, query=query,
                           version_minor=minor, target_form=(w[W_FLAGS0] >> 8) & 0xFF,
                           headers=headers, host=host, keep_alive=keep_alive, body_kind=body_kind,
                           content_length=content_length, expect_continue=expect,
                           head_len=w[W_HEAD_LEN])

    def parse_chunked(self, buf, start, end=None):
        """(n, body): the caller's buffer is never written; the body is decoded
        into a scratch array and returned as bytes."""
        if end is None or end > len(buf):
            end = len(buf)
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        room = max(end - start, 0)
        if len(self._scratch) < room:
            self._scratch = np.empty(max(room, 2 * len(self._scratch)), np.uint8)
        n, blen = self._chunked_kernel(as_array(buf), start, end, self._lim, self._scratch, 0)
        if n > 0:
            return n, self._scratch[:blen].tobytes()
        return n, None

    def parse_batch(self, buf, start=0, end=None, max_requests=1024):
        """Parse up to max_requests pipelined heads in one call (see
        parse_batch_kernel).  Returns (count, consumed, last_status, summaries,
        starts); the two arrays are reused by the next call."""
        if end is None or end > len(buf):
            end = len(buf)
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        if self._batch_rows < max_requests:
            self._summaries = np.zeros((max_requests, SUMMARY_WORDS), np.uint32)
            self._starts = np.zeros(max_requests, np.int64)
            self._batch_rows = max_requests
        count, consumed, last = parse_batch_kernel(as_array(buf), start, end, self._lim, self._words,
                                                   self._summaries, self._starts, max_requests)
        if self.info is not None:
            self._stale = _FAILED     # the table holds the batch's last head, not info's
        return count, consumed, last, self._summaries, self._starts


def warm_up():
    """Call every kernel with each argument type it meets here: buffers that are
    read-only (bytes) and writable (bytearray, the buffers' arrays) are two
    Numba types, so both are compiled -- or loaded from the cache -- now."""
    lim = limits_array(DEFAULT_LIMITS)
    head = b"GET /a?b HTTP/1.1\r\nHost: x\r\n\r\n"
    chunked = b"5;e=1\r\nhello\r\n0\r\n\r\n"
    for kind in (bytes, bytearray):
        p = NumbaParser()
        raw = kind(head * 2)
        if p.parse_head(raw, 0) > 0:
            p.head()
        p.parse_chunked(kind(chunked), 0)
        p.parse_batch(raw, 0)
        t = new_table(1)[1][0]
        heads = np.zeros((4, HEAD_FIELDS), np.int64)
        parse_heads_kernel(as_array(raw), 0, len(raw), lim, t, heads, 4, 0)


def jit_report():
    """Seconds for the first call of each kernel in this process: the JIT
    compile time on a cold cache, the load time from the on-disk cache
    otherwise; the same for the @cfunc entry points."""
    t = new_table(1)[1][0]
    raw = np.frombuffer(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", np.uint8).copy()
    lim = limits_array(DEFAULT_LIMITS)
    report = {}
    t0 = time.perf_counter()
    parse_head_kernel(raw, 0, len(raw), lim, t)
    report["parse_head_kernel"] = time.perf_counter() - t0
    out = np.empty(64, np.uint8)
    body = np.frombuffer(b"5\r\nhello\r\n0\r\n\r\n", np.uint8).copy()
    t0 = time.perf_counter()
    parse_chunked_kernel(body, 0, len(body), lim, out, 0)
    report["parse_chunked_kernel"] = time.perf_counter() - t0
    summaries = np.zeros((4, SUMMARY_WORDS), np.uint32)
    starts = np.zeros(4, np.int64)
    t0 = time.perf_counter()
    parse_batch_kernel(raw, 0, len(raw), lim, t, summaries, starts, 4)
    report["parse_batch_kernel"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    c_entry_points()
    report["cfuncs"] = time.perf_counter() - t0
    return report


register("numba", NumbaParser)
