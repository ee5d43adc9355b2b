"""The parser contract and registry.

A parser is a pure state machine in the h11 sense: bytes in, request table out,
never a socket.  It is stateless between calls (the same bytes give the same
answer whatever the split), so "resumable at any byte boundary" means: call it
again on the longer span when more bytes arrive.  Calling it after every read
would cost O(bytes x reads) for a slow client, so the loops keep the resume
state instead (parsers/scan.py: scan_head, scan_chunked) and call it again
only when its answer can change -- which the order of checks below defines.

    p = parsers.create("python", limits)      # or "path/to/file.py:MyParser",
                                              # "package.module:MyParser", "file.c:prefix"
    n = p.parse_head(buf, start, end)     # buf: bytes / bytearray / memoryview
      n > 0   the head is complete and valid; n is its length (blank line included)
              and p.head() gives the request table as a RequestHead
      n == 0  need more bytes (nothing wrong so far)
      n < 0   -status: 400, 413, 414, 431, 501 or 505; the connection must close
    p.info   after n > 0: the hot-path summary every loop uses, a tuple
             (method, path, query, version_minor, keep_alive, body_kind,
              content_length, expect_continue) with method/path/query as bytes
              (query None when there is no '?')
    p.head() after n > 0: the whole request table as a RequestHead (spans
             materialized as bytes; valid until the caller changes buf)
    out = p.parse_heads(buf, start, end, max_count)   # the batch protocol
      a list of (n, info) for consecutive heads from `start` on, each the next
      head after the previous one's n bytes; n and info exactly as
      parse_head(buf, pos, end) and p.info would give.  It stops after (and
      includes) the first entry with n <= 0 (info None), or with a body
      (info[5] != BODY_NONE: the caller must handle the body first), or with
      keep_alive False (info[4]); or when max_count entries are collected
      (None: no limit); or when the next head would start at `end` (an empty
      list: start == end).
      Only with p.fold_runs True (`serve --fold-runs on`; off by default) may
      consecutive entries share one info object when their values are equal
      (callers may use `is` as a fast equality test, never rely on it); off,
      every entry's info is built from its own head's bytes.
      After parse_heads, p.head() is NOT defined: a caller that needs the
      whole table for one of the heads calls parse_head(buf, pos, end) on it
      again first.  A parser without its own parse_heads gets it from
      parse_heads_by_head(p, buf, start, end, max_count) below.
    n, body = p.parse_chunked(buf, start, end)   # start = first byte after the head
      n > 0   the whole chunked body (trailers and final CRLF included) is n bytes;
              body is the decoded data (bytes)
      n == 0 / n < 0  as above

Semantics (every variant, checked by the spec corpus tests/spec/ through
kourier_lab/spec.py, and tests/parsers/test_parser_contract.py).  The order of the
checks is part of the contract, so that a prefix of the input never reports
a different error than the whole input:
  1. leading CRLF pairs are skipped (RFC 9112 2.2), but they count toward
     max_header_bytes: when they alone reach it -> 431 (so a flood of empty
     lines is answered, not "need more" forever; head_len includes them).
  2. the request line ends at the first LF.  Its length (without CR LF) >
     max_request_line -> 414 (reported as soon as it is certain, even before
     the LF arrives); an LF not preceded by CR -> 400; then its syntax:
     not exactly three SP-separated non-empty parts -> 400; method not a token
     -> 400; version not "HTTP/" DIGIT "." DIGIT -> 400; bad target -> 400;
     major version other than 1 -> 505; HTTP/1.2 .. HTTP/1.9 are processed
     as HTTP/1.1 (RFC 9110 2.5 SHOULD; version_minor 1).
  3. the head ends at the first empty line (LF followed by LF or CR LF).
     head length > max_header_bytes -> 431 (reported as soon as the bytes
     buffered reach max_header_bytes); more than max_headers field lines -> 431.
  4. each field line in order: CR LF ending, token name, ':' right after it,
     valid value -> else 400 (bare LF / bare CR / obs-fold / CTL all 400).
  5. Host (400), Transfer-Encoding with Content-Length (400), Content-Length
     syntax and repeats (400; repeats compared as digit strings without
     leading zeros), Transfer-Encoding (400 / 501), Content-Length above
     max_body (413), Expect (417).
  Nothing else is reported before the head is complete.

  * request line: method = token; one SP; request-target; one SP; HTTP-version; CRLF.
    targets: origin-form (absolute path + optional query), absolute-form
    (scheme "://" authority path-abempty [? query]), authority-form (CONNECT
    only), asterisk-form (OPTIONS only).  Every path/query byte is a RFC 3986
    pchar (query: also "/" and "?"); every '%' starts %HEXDIG HEXDIG.
    HTTP/1.1 and HTTP/1.0 are served, HTTP/1.2-1.9 as HTTP/1.1 (RFC 9110 2.5);
    another major version -> 505; anything else -> 400.
  * leading CRLFs before the request line are skipped (RFC 9112 2.2 SHOULD).
  * field lines: name = token, ':' right after it (whitespace before -> 400);
    value trimmed of SP/HTAB, bytes VCHAR / obs-text / SP / HTAB only (CTL, NUL
    -> 400); obs-fold -> 400.  Lines end with CRLF; a bare LF or bare CR is 400
    (the strict choice; we decided not to be lenient).
  * Host: exactly once in HTTP/1.1, at most once in HTTP/1.0, value a valid
    uri-host [":" port] -> else 400.
  * Content-Length: 1*DIGIT; repeated (or a list) only with one value; larger
    than max_body -> 413.  Transfer-Encoding with Content-Length -> 400; in
    HTTP/1.0 -> 400; chunked must be the final coding and appear once
    (case-insensitive) -> else 400; other codings before chunked -> 501.
  * limits: request line > max_request_line -> 414; head > max_header_bytes
    or more than max_headers fields -> 431; body > max_body -> 413.
  * keep_alive: HTTP/1.1 unless Connection has "close"; HTTP/1.0 only with
    "keep-alive".  expect_continue: Expect is "100-continue"; any other Expect
    value -> 417.
  * chunked bodies (RFC 9112 7.1): each chunk line ends at its LF and must
    be CR LF terminated and at most 4096 bytes long (else 400); chunk-size is
    1*HEXDIG, more than 15 significant hex digits -> 400 (overflow); chunk
    extensions *( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] )
    are accepted and ignored, anything else on the line -> 400; a running
    total above max_body -> 413 (reported as soon as the size line is read);
    framing overhead (the size lines with their CRLF, plus the CRLF after each
    chunk's data) above 100 KiB and above the data's total -> 413 (reported
    at the size line that passes both: tiny chunks cost per chunk, and such a
    body would not fit the read buffer either);
    the CR LF after each chunk's data is checked (400); trailer field lines
    are validated like header lines (400) and discarded; trailer section
    larger than max_header_bytes -> 431.
"""
from typing import Callable

from ..http.limits import DEFAULT_LIMITS, Limits
from ..registry import Registry
from .request_table import (BODY_CHUNKED, BODY_LENGTH, BODY_NONE, FORM_ABSOLUTE, FORM_ASTERISK,  # noqa: F401
                    FORM_AUTHORITY, FORM_ORIGIN, NEED_MORE, RequestHead, parse_heads_by_head)

INTERFACE = ("parse_head", "head", "parse_chunked")     # + the info attribute after parse_head


def _adapt_user_parser(obj, spec):
    """A user's parser class (or factory) -> factory(limits) -> parser.

    The class is called with the Limits (or with nothing, when its __init__
    takes no argument); one instance is made here so that a missing method is
    reported now, by name, rather than in the middle of a request."""
    from ..registry import VariantError, require_methods
    if not callable(obj):
        raise VariantError(f"parser {spec!r}: {type(obj).__name__} object is not a class or factory")
    import inspect
    try:
        takes_limits = bool(inspect.signature(obj).parameters)
    except (TypeError, ValueError):
        takes_limits = True

    from ..registry import label
    name = label(spec)

    def factory(limits):
        p = obj(limits) if takes_limits else obj()
        if getattr(p, "name", None) is None:
            try:
                p.name = name       # what the head memo and the reports call it
            except AttributeError:
                pass
        return p
    try:
        sample = factory(DEFAULT_LIMITS)
    except Exception as e:
        raise VariantError(f"parser {spec!r}: creating it raised {type(e).__name__}: {e}") from None
    require_methods(sample, f"parser {spec!r}", INTERFACE, "parser")
    return factory


_REGISTRY = Registry("parser", __name__, ("python", "c", "numba"), adapt=_adapt_user_parser,
                     loaders={".c": "kourier_lab.parsers.user_c:load_c_parser"})
available, names, unavailable, source = (_REGISTRY.available, _REGISTRY.names, _REGISTRY.unavailable,
                                         _REGISTRY.source)


def register(name: str, factory: Callable[[Limits], object]) -> None:
    _REGISTRY.register(name, factory)


def create(name: str, limits: Limits = DEFAULT_LIMITS, head_memo: bool = False, fold_runs: bool = False):
    """A parser; with head_memo, wrapped in the head memo (parsers/memo.py).

    fold_runs (off by default) lets parse_heads fold a run of equal
    consecutive heads: one info tuple shared, fields not extracted again.
    Off, every head gets its own info, built from its own bytes."""
    p = _REGISTRY.get(name)(limits)
    if fold_runs:
        try:
            p.fold_runs = True
        except AttributeError:
            pass            # a user's parser without the attribute folds nothing
    if head_memo:
        from .memo import HeadMemo
        p = HeadMemo(p)
    return p
