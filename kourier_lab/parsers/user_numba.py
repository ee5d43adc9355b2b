"""A user's Numba parser: kernels with the built-in Numba parser's signatures,
made a contract parser by kernel_parser().

    # my_kernels.py
    from numba import njit
    from kourier_lab.parsers.user_numba import W_HEAD_LEN, find_lf, kernel_parser, put_flags, ...

    @njit(cache=True)
    def head_kernel(buf, start, end, lim, t):
        ...                       # fill the flat request table t, return n / 0 / -status
    MyParser = kernel_parser(head_kernel)

    kourier-lab serve --parser my_kernels.py:MyParser --loop c --buffer c

The kernels' contract is parsers/numba.py's:

* head_kernel(buf, start, end, lim, t) -> n: buf a uint8 array, lim
  numba_layout.limits_array() (int64: max_request_line, max_header_bytes,
  max_headers, max_body), t the flat uint32 view of one kl_request (the word
  indices W_* below; spans are offsets from `start`).  Every field that
  parse_head reads back must be written: W_METHOD, W_TARGET, W_PATH, W_QUERY,
  W_HOST (put_span), the flag words (put_flags), W_CONTENT_LENGTH
  (put_content_length), W_HEAD_LEN, W_HEADER_COUNT with W_NAMES/W_VALUES.
* chunked_kernel(buf, start, end, lim, out, out_off) -> (n, body_len), the
  decoded data written to out[out_off:].  Optional: without one the built-in
  Numba decoder is used.

Under the Python loops the class calls the kernels like NumbaParser does;
under the C loop native_entry_points() compiles @cfunc wrappers around them
(with this parser's limits as constants), so the C loop calls the user's
machine code without entering Python.
"""
import numpy as np
from numba import carray, cfunc, njit

from ..numba_layout import (C_ALPHA, C_CONTENT, C_DIGIT, C_HEX, C_PATH, C_QUERY, C_TCHAR,  # noqa: F401
                            C_VCHAR, CHAR_CLASS, REQUEST_DTYPE, REQUEST_WORDS, W_CONTENT_LENGTH,
                            W_FLAGS0, W_FLAGS1, W_HEAD_LEN, W_HEADER_COUNT, W_HOST, W_METHOD,
                            W_NAMES, W_PATH, W_QUERY, W_STATUS, W_TARGET, W_VALUES, limits_array,
                            new_table)
from .request_table import (BODY_CHUNKED, BODY_LENGTH, BODY_NONE, FORM_ABSOLUTE, FORM_ASTERISK,  # noqa: F401
                    FORM_AUTHORITY, FORM_ORIGIN, parse_heads_by_head)
from .numba import (NumbaParser, _c_parse_chunked_sig, _c_parse_head_sig, _eq_exact,
                    _eq_nocase, _find_lf, _is_ows, _lower, _put_span, _skip,
                    kl_parse_chunked_address, parse_chunked_kernel)

# the built-in kernels' helpers, public (all @njit, callable from a user's kernels)
find_lf = _find_lf            # (buf, pos, end) -> index of the next LF or -1
skip = _skip                  # (buf, i, e, cls) -> first index in [i, e) whose byte is not in class cls
is_ows = _is_ows              # (c) -> SP or HTAB
lower = _lower                # (c) -> ASCII lower case
eq_exact = _eq_exact          # (buf, i, e, lit) -> buf[i:e] == lit (a uint8 array)
eq_nocase = _eq_nocase        # (buf, i, e, lit) -> buf[i:e].lower() == lit
put_span = _put_span          # (t, w, off, len) -> a span at word w of the table


@njit(cache=True, _nrt=False)
def put_flags(t, version_minor, target_form, keep_alive, body_kind, expect_continue, has_query):
    """The table's byte fields (kl_request's version_minor .. has_query)."""
    t[W_FLAGS0] = version_minor | (target_form << 8) | (keep_alive << 16) | (body_kind << 24)
    t[W_FLAGS1] = expect_continue | (has_query << 8)


@njit(cache=True, _nrt=False)
def put_content_length(t, n):
    """The int64 content_length (-1 when absent) as its two words."""
    t[W_CONTENT_LENGTH] = np.uint32(n & 0xFFFFFFFF)
    t[W_CONTENT_LENGTH + 1] = np.uint32((n >> 32) & 0xFFFFFFFF)


def kernel_parser(head_kernel, chunked_kernel=None, name="numba:user"):
    """A parser class (the contract of kourier_lab.parsers) over a user's kernels."""

    class KernelParser(NumbaParser):
        __doc__ = f"The parser contract over {getattr(head_kernel, '__name__', 'a kernel')}."

        _head_kernel = staticmethod(head_kernel)
        _chunked_kernel = staticmethod(chunked_kernel if chunked_kernel is not None else parse_chunked_kernel)

        def parse_heads(self, buf, start=0, end=None, max_count=None):
            return parse_heads_by_head(self, buf, start, len(buf) if end is None else end, max_count)

        def native_entry_points(self):
            """(head, chunked) addresses with kl_parse_head / kl_parse_chunked's
            signatures: @cfunc wrappers compiled here, this parser's limits
            frozen into them (the C loop passes the same config.limits)."""
            return _entry_points(head_kernel, chunked_kernel, self._lim)

    KernelParser.name = name
    KernelParser.__name__ = KernelParser.__qualname__ = f"KernelParser_{getattr(head_kernel, '__name__', 'user')}"
    return KernelParser


_CFUNCS = {}


def _entry_points(head_kernel, chunked_kernel, lim):
    key = (id(head_kernel), id(chunked_kernel), tuple(lim.tolist()))
    if key in _CFUNCS:
        return _CFUNCS[key][0]
    lim = lim.copy()              # a constant of the compiled wrappers

    def head(buf_ptr, length, limits_ptr, req_ptr):
        buf = carray(buf_ptr, (length,))
        t = carray(req_ptr, (REQUEST_WORDS,), np.uint32)
        n = head_kernel(buf, 0, np.int64(length), lim, t)
        t[W_STATUS] = 0 if n >= 0 else -n
        return n
    head_c = cfunc(_c_parse_head_sig, nopython=True)(head)
    keep = [head_c]
    if chunked_kernel is None:
        chunked_addr = kl_parse_chunked_address()
    else:
        def chunked(buf_ptr, length, limits_ptr, body_len_ptr):
            buf = carray(buf_ptr, (length,))
            out_len = carray(body_len_ptr, (1,))
            out = np.empty(length, np.uint8)      # the bytes stay as they were unless complete
            n, blen = chunked_kernel(buf, 0, np.int64(length), lim, out, 0)
            if n > 0:
                buf[:blen] = out[:blen]
            out_len[0] = blen
            return n
        chunked_c = cfunc(_c_parse_chunked_sig, nopython=True)(chunked)
        keep.append(chunked_c)
        chunked_addr = chunked_c.address
    _CFUNCS[key] = ((head_c.address, chunked_addr), keep)
    return _CFUNCS[key][0]


__all__ = ["kernel_parser", "put_flags", "put_content_length", "find_lf", "skip", "is_ows", "lower",
           "eq_exact", "eq_nocase", "put_span", "parse_chunked_kernel", "limits_array", "new_table",
           "REQUEST_DTYPE", "REQUEST_WORDS", "CHAR_CLASS"]
