"""What the Numba variants share, below all of them: the request table as a
numpy dtype, the limits as an array, the character-class lookup table, and
ArrayBytes (a bytearray carrying its numpy view).  The parser, the buffers and
the loop import this module; it imports none of them.  The measurements behind
notebook 02 live in bench/notebooks/numba_costs.py.

The request table is declared once, in native/kourier_lab.h (``kl_request``).
``REQUEST_DTYPE`` mirrors it field by field (same names, offsets and itemsize;
tests/parsers/test_numba_parser.py checks them against the header through cffi), so a
table filled by the Numba parser can be handed to C and back without a copy.

The kernels do not index the structured array by field name: a structured
dtype makes every call from Python go through Numba's slow argument typing
(the dispatcher has a C fast path for plain numeric arrays only; the README's
"How it is built" has the measured difference), so the kernels receive the
SAME memory viewed as a flat uint32 array and write at the word indices
below, derived from the dtype.

Importing this module raises ImportError when numba is missing, which the
registries record as "unavailable".
"""
import os
import weakref

try:
    import numba  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the machine
    raise ImportError(f"the numba variants need numba ({e})") from e
import numpy as np

from .http import chars
from .http.limits import MAX_HEADERS_CAP, Limits

KL_MAX_HEADERS = MAX_HEADERS_CAP

SPAN_DTYPE = np.dtype([("off", np.uint32), ("len", np.uint32)])

LIMITS_DTYPE = np.dtype([
    ("max_request_line", np.uint32),
    ("max_header_bytes", np.uint32),
    ("max_headers", np.uint32),
    ("_pad", np.uint32),
    ("max_body", np.int64),
])

# Explicit offsets, as in the C struct (natural alignment, no packing).
REQUEST_DTYPE = np.dtype({
    "names": ["status", "head_len", "method", "target", "path", "query", "host",
              "version_minor", "target_form", "keep_alive", "body_kind", "expect_continue",
              "has_query", "_pad", "content_length", "header_count", "_pad2", "names", "values"],
    "formats": [np.int32, np.uint32, SPAN_DTYPE, SPAN_DTYPE, SPAN_DTYPE, SPAN_DTYPE, SPAN_DTYPE,
                np.uint8, np.uint8, np.uint8, np.uint8, np.uint8, np.uint8, (np.uint8, (2,)),
                np.int64, np.uint32, np.uint32, (SPAN_DTYPE, (KL_MAX_HEADERS,)),
                (SPAN_DTYPE, (KL_MAX_HEADERS,))],
    "offsets": [0, 4, 8, 16, 24, 32, 40, 48, 49, 50, 51, 52, 53, 54, 56, 64, 68, 72,
                72 + 8 * KL_MAX_HEADERS],
    "itemsize": 72 + 16 * KL_MAX_HEADERS,
})


def _word(field, sub=0):
    off = REQUEST_DTYPE.fields[field][1] + sub
    assert off % 4 == 0
    return off // 4


# uint32 word indices into the flat view of one kl_request
W_STATUS = _word("status")
W_HEAD_LEN = _word("head_len")
W_METHOD = _word("method")          # off, then len at +1
W_TARGET = _word("target")
W_PATH = _word("path")
W_QUERY = _word("query")
W_HOST = _word("host")
W_FLAGS0 = _word("version_minor")   # bytes: version_minor, target_form, keep_alive, body_kind
W_FLAGS1 = _word("expect_continue")  # bytes: expect_continue, has_query, _pad[2]
W_CONTENT_LENGTH = _word("content_length")  # int64: low word, high word at +1
W_HEADER_COUNT = _word("header_count")
W_NAMES = _word("names")
W_VALUES = _word("values")
REQUEST_WORDS = REQUEST_DTYPE.itemsize // 4
# the words a Python caller reads back after a parse (everything but the field spans)
SUMMARY_WORDS = W_NAMES


def new_table(count: int = 1):
    """`count` zeroed request tables and their flat uint32 view (same memory)."""
    table = np.zeros(count, REQUEST_DTYPE)
    return table, table.view(np.uint32).reshape(count, REQUEST_WORDS)


def limits_array(limits: Limits):
    """The limits as an int64 array: max_request_line, max_header_bytes,
    max_headers, max_body (the order of kl_limits, without the padding)."""
    return np.array([limits.max_request_line, limits.max_header_bytes, limits.max_headers,
                     limits.max_body], dtype=np.int64)


def limits_struct(limits: Limits):
    """The limits as one kl_limits record (for the @cfunc entry point)."""
    rec = np.zeros(1, LIMITS_DTYPE)
    rec["max_request_line"] = limits.max_request_line
    rec["max_header_bytes"] = limits.max_header_bytes
    rec["max_headers"] = limits.max_headers
    rec["max_body"] = limits.max_body
    return rec


# -- character classes: one uint16 of flag bits per byte value -----------------
C_TCHAR = 1 << 0
C_PATH = 1 << 1        # PATH_CHAR and '%'
C_QUERY = 1 << 2       # QUERY_CHAR and '%'
C_VCHAR = 1 << 3       # FIELD_VCHAR
C_CONTENT = 1 << 4     # FIELD_CONTENT (VCHAR, obs-text, SP, HTAB)
C_HEX = 1 << 5
C_REGNAME = 1 << 6     # REG_NAME and '%'
C_SCHEME = 1 << 7
C_IPLIT = 1 << 8       # inside [ ]: hex, ':', '.', 'v', and reg-name bytes
C_QDTEXT = 1 << 9      # quoted-string text in a chunk extension
C_QPAIR = 1 << 10      # the byte after a backslash in a quoted-string
C_DIGIT = 1 << 11
C_ALPHA = 1 << 12


def _char_table():
    # The same sets the Python parser compiles into its regular expressions.
    ip_literal = set(b"0123456789ABCDEFabcdef:.vV") | (set(chars.REG_NAME) - set(b"[]"))
    qdtext = set(b"\t ") | {0x21} | set(range(0x23, 0x5C)) | set(range(0x5D, 0x7F)) | set(range(0x80, 0x100))
    qpair = set(b"\t ") | set(range(0x21, 0x7F)) | set(range(0x80, 0x100))
    classes = [
        (C_TCHAR, chars.TCHAR), (C_PATH, chars.PATH_CHAR | {0x25}), (C_QUERY, chars.QUERY_CHAR | {0x25}),
        (C_VCHAR, chars.FIELD_VCHAR), (C_CONTENT, chars.FIELD_CONTENT), (C_HEX, chars.HEXDIG),
        (C_REGNAME, chars.REG_NAME | {0x25}), (C_SCHEME, chars.SCHEME_CHAR), (C_IPLIT, ip_literal),
        (C_QDTEXT, qdtext), (C_QPAIR, qpair), (C_DIGIT, chars.DIGIT), (C_ALPHA, chars.ALPHA),
    ]
    table = np.zeros(256, dtype=np.uint16)
    for bit, members in classes:
        for b in members:
            table[b] |= bit
    return table


CHAR_CLASS = _char_table()


class ArrayBytes(bytearray):
    """A bytearray that hands out a numpy uint8 view of its own memory as
    ``.array``.  The Numba buffers store their data in one, so the same bytes
    are a bytearray for the Python parser and `re` (find, slicing, the buffer
    protocol) and an array for the Numba kernels, with no per-call
    np.frombuffer as long as the owner keeps the array (the ring buffers do).

    The bytearray keeps only a *weak* reference to its view: the view refers
    back to the bytearray (it is an export of it), and numpy arrays do not take
    part in the cyclic garbage collector, so a strong reference both ways
    would never be freed (it leaked each connection's buffers).  While a view
    is alive the bytearray cannot be resized, which the ring buffers never do
    (they replace the array to grow)."""
    __slots__ = ("_view",)

    def __init__(self, size: int):
        super().__init__(size)
        self._view = None

    @property
    def array(self):
        ref = self._view
        arr = ref() if ref is not None else None
        if arr is None:
            arr = np.frombuffer(self, dtype=np.uint8)
            self._view = weakref.ref(arr)
        return arr


# -- the C header, for checking the mirror ------------------------------------
def header_path() -> str:
    """native/kourier_lab.h in a source checkout."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(root, "native", "kourier_lab.h")


def header_cdef(path: str = None) -> str:
    """The declarations between KL_CDEF_BEGIN and KL_CDEF_END, as cffi's cdef takes them."""
    import re
    with open(path or header_path()) as f:
        text = f.read()
    m = re.search(r"/\*\s*KL_CDEF_BEGIN\s*\*/(.*?)/\*\s*KL_CDEF_END\s*\*/", text, re.S)
    if not m:
        raise RuntimeError("no KL_CDEF_BEGIN/KL_CDEF_END block in the header")
    return re.sub(r"/\*.*?\*/", "", m.group(1), flags=re.S)
