"""The posts' syntax-compliance test, reproduced request for request.

Six categories, each request on its own connection, Host ``IP:PORT``; a test
fails only when the answer starts with ``HTTP/1.1 200 OK``.

How the byte sets come out of RFC 3986 / RFC 9110 (kourier_lab.http.chars):

* absolute path, ``GET /hello{b}``: every byte that cannot continue an
  absolute path.  Allowed are ``PATH_CHAR`` (pchar without pct-encoded, plus
  "/": 66 unreserved + 11 sub-delims + ":" "@" + "/" = 80) and "?", which
  starts a query and so makes a valid request.  "%" stays invalid because
  ``%`` followed by a space is no pct-encoded triplet.  256 - 81 = **175**.
* query, ``GET /hello?{b}``: ``QUERY_CHAR`` = pchar + "/" + "?" (81 bytes);
  "%" invalid as above.  256 - 81 = **175**.
* field name, ``{b}: value``: every non-``TCHAR`` byte (256 - 77 = 179) except
  ":".  The published tool lists ":" with the tchars, so ``:: value`` (an empty
  field name) is not one of its requests; the strict suite tests empty names.
  **178**.
* field value, ``name: {b}``: the bytes outside ``FIELD_CONTENT`` (VCHAR,
  obs-text, SP, HTAB: 224 bytes) other than CR and LF, which end the line and
  are line-ending questions (tested by the strict suite): the 29 C0 controls
  besides HTAB, LF and CR, and DEL.  256 - 224 - 2 = **30**.
* pct-encoding in the path ``GET /hello%{a}{c}`` and in the query
  ``GET /hello?%{a}{c}``: the published tool calls a byte a "hex digit" when it
  is alphanumeric (0-9, A-Z, a-z: 62 bytes) rather than HEXDIG, and sends
  every pair in which one of the two is not alphanumeric: a non-alphanumeric
  first byte with any second byte (194 x 256 = 49,664) plus an alphanumeric
  first byte with a non-alphanumeric second (62 x 194 = 12,028).
  **61,692** each.  Pairs such as ``%GZ`` (alphanumeric, not HEXDIG) are not
  in the published set; the strict suite sends them.
"""
import random
from dataclasses import dataclass
from typing import Iterator, List, Optional, Tuple

from ..http import chars

ALL_BYTES = frozenset(range(256))
# The published tool's notion of "hex digit" (see the module docstring).
ALNUM = chars.ALPHA | chars.DIGIT

INVALID_PATH_BYTES = sorted(ALL_BYTES - chars.PATH_CHAR - frozenset(b"?"))
INVALID_QUERY_BYTES = sorted(ALL_BYTES - chars.QUERY_CHAR)
INVALID_FIELD_NAME_BYTES = sorted(ALL_BYTES - chars.TCHAR - frozenset(b":"))
INVALID_FIELD_VALUE_BYTES = sorted(ALL_BYTES - chars.FIELD_CONTENT - frozenset(b"\r\n"))
NOT_ALNUM = sorted(ALL_BYTES - ALNUM)
INVALID_PCT_PAIRS: List[Tuple[int, int]] = (
    [(a, c) for a in NOT_ALNUM for c in range(256)]
    + [(a, c) for a in sorted(ALNUM) for c in NOT_ALNUM])


@dataclass(frozen=True)
class Category:
    key: str            # short column name
    description: str    # the published tool's wording
    size: int           # published request count


CATEGORIES = (
    Category("path", "requests with invalid URL absolute path", 175),
    Category("query", "requests with invalid URL query", 175),
    Category("field_name", "requests with invalid header name", 178),
    Category("field_value", "requests with invalid header value", 30),
    Category("pct_path", "requests with invalid pct-encoded hex digits in URL absolute path", 61692),
    Category("pct_query", "requests with invalid pct-encoded hex digits in URL query", 61692),
)
CATEGORY_BY_KEY = {c.key: c for c in CATEGORIES}
SAMPLED = ("pct_path", "pct_query")   # the categories --quick samples
QUICK_SAMPLE = 1000                   # requests kept per sampled category
QUICK_SEED = 9112


def request(key: str, item, host: bytes) -> bytes:
    """The bytes of one published request; `item` is a byte or a (byte, byte) pair."""
    tail = b" HTTP/1.1\r\nHost: " + host + b"\r\n"
    if key == "path":
        return b"GET /hello" + bytes([item]) + tail + b"\r\n"
    if key == "query":
        return b"GET /hello?" + bytes([item]) + tail + b"\r\n"
    if key == "field_name":
        return b"GET /hello" + tail + bytes([item]) + b": value\r\n\r\n"
    if key == "field_value":
        return b"GET /hello" + tail + b"name: " + bytes([item]) + b"\r\n\r\n"
    if key == "pct_path":
        return b"GET /hello%" + bytes(item) + tail + b"\r\n"
    if key == "pct_query":
        return b"GET /hello?%" + bytes(item) + tail + b"\r\n"
    raise ValueError(f"unknown category {key!r}")


def items(key: str, quick: bool = False, sample: int = QUICK_SAMPLE, seed: int = QUICK_SEED) -> list:
    """The varying part of each request of one category, in the published order.

    quick: the pct-encoding categories are reduced to a fixed random sample
    (same seed -> same requests), the four small ones stay whole.
    """
    full = {
        "path": INVALID_PATH_BYTES,
        "query": INVALID_QUERY_BYTES,
        "field_name": INVALID_FIELD_NAME_BYTES,
        "field_value": INVALID_FIELD_VALUE_BYTES,
        "pct_path": INVALID_PCT_PAIRS,
        "pct_query": INVALID_PCT_PAIRS,
    }[key]
    if quick and key in SAMPLED and sample < len(full):
        rng = random.Random(f"{seed}:{key}")
        picked = sorted(rng.sample(range(len(full)), sample))
        return [full[i] for i in picked]
    return list(full)


def requests(host: bytes, quick: bool = False, categories: Optional[List[str]] = None,
             sample: int = QUICK_SAMPLE) -> Iterator[Tuple[str, object, bytes]]:
    """(category key, item, request bytes) for the whole suite, category by category."""
    for cat in CATEGORIES:
        if categories is not None and cat.key not in categories:
            continue
        for it in items(cat.key, quick, sample):
            yield cat.key, it, request(cat.key, it, host)


def describe_item(item) -> str:
    """Printable form of a request's varying part: 0x00 or %0x25,0x41."""
    if isinstance(item, tuple):
        return "%" + ",".join(f"0x{b:02x}" for b in item)
    return f"0x{item:02x}"
