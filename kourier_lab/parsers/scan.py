"""When a stateless parser must be asked again: the loop's side of resuming.

Parsers keep nothing between calls (parsers/__init__.py), so a request that
arrives in many reads would be parsed from its start after every read: O(bytes
x reads), quadratic for a trickle.  These scans keep a few integers per
connection (picohttpparser's last_len idea, kept by the loop rather than the
parser), follow the new bytes only, and say when the parser's answer can have
changed; the parser is asked then, and its answer is the one given.  So a
request costs O(its bytes) however it is split, with any parser, including a
user's.  native/loop.c and loops/numba.py carry the same two scans in C and
Numba; tests/server/test_spec.py checks every parser against these (the parser
answers "need more" wherever a scan says it need not be asked).
"""
import re

from .python import MAX_CHUNK_LINE, MAX_CHUNK_OVERHEAD

_HEX_DIGITS = re.compile(rb"[0-9A-Fa-f]+")
_CRLF_RUN = re.compile(rb"(?:\r\n)*")


def scan_chunked(data, body, end, state, max_body, max_header_bytes):
    """Follow a chunked body's framing from where the last scan stopped, so a
    body arriving in many reads costs O(its bytes), not O(bytes x reads).

    state: (offset of the next chunk-size line from `body`, data bytes so
    far, framing bytes so far), (0, 0, 0) at first.  Returns (decide, state):
    decide is True when the parser must judge the body now -- it looks
    complete, or something is wrong or over a bound (the parser's answer is
    the one given: this scan only says when to ask) -- else False with the
    state to resume from."""
    off, total, overhead = state
    pos = body + off
    find = data.find
    while True:
        lf = find(b"\n", pos, min(end, pos + MAX_CHUNK_LINE + 1))
        if lf < 0:
            return end - pos > MAX_CHUNK_LINE, (pos - body, total, overhead)
        m = _HEX_DIGITS.match(data, pos, lf)
        if m is None or len(m.group().lstrip(b"0")) > 15:
            return True, state
        size = int(m.group(), 16)
        t, o = total + size, overhead + lf + 1 - pos + (2 if size else 0)
        if t > max_body or (o > MAX_CHUNK_OVERHEAD and o > t):
            return True, state
        if size == 0:       # the trailer section: up to its empty line
            if end - lf - 1 >= max_header_bytes or data[lf + 1:lf + 3] == b"\r\n" or \
                    find(b"\n\r\n", lf + 1, end) >= 0:
                return True, state
            return False, (pos - body, total, overhead)
        if end - lf - 1 < size + 2:
            return False, (pos - body, total, overhead)
        if data[lf + 1 + size:lf + 3 + size] != b"\r\n":
            return True, state
        pos, total, overhead = lf + 3 + size, t, o


def scan_head(data, start, end, state, max_request_line, max_header_bytes):
    """Follow an incomplete head from where the last scan stopped, so a head
    arriving in many reads costs O(its bytes), not O(bytes x reads), with any
    parser: the parser (stateless, parsers/__init__.py) is asked again only
    when its answer can change from "need more", which by the contract's order
    of checks is when the leading empty lines reach max_header_bytes (431),
    the request line passes max_request_line (414) or ends (its syntax is
    judged then), the head's empty line arrives, or the head reaches
    max_header_bytes (431).  picohttpparser's last_len, kept by the loop.

    state: (s, rl, scanned), offsets from `start`, (0, 0, 0) at first: the
    request line starts at s (after the leading CRLF pairs so far); rl is 0
    until the request line's LF has been seen, then the offset after it;
    scanned is how far the bytes have been searched.  Returns (decide, state):
    decide is True when the parser must be asked now; the state is the one
    to resume from when the parser (asked or not) answers "need more"."""
    s, rl, scanned = state
    if rl == 0:
        # the CRLF pairs before the request line, resumed where they stopped
        # (the parser bounds them at max_header_bytes + 1 bytes, so does this)
        s = _CRLF_RUN.match(data, start + s, min(end, start + max_header_bytes + 1)).end() - start
        if s >= max_header_bytes:
            return True, (s, 0, end - start)
        lf = data.find(b"\n", start + max(s, scanned), end)
        if lf < 0:
            k = end - start - s
            over = k - 1 > max_request_line or (k > max_request_line and data[end - 1] != 13)
            return over, (s, 0, end - start)
        # the request line is complete: the parser judges it now; when the
        # head goes on, the search for its end starts at this LF
        rl = lf + 1 - start
        return True, (s, rl, rl)
    # the empty line ends the head: LF CR LF, or LF LF (a bare LF, the
    # parser's 400); either may start up to 2 bytes before the new ones
    at = start + max(rl - 1, scanned - 2)
    done = data.find(b"\n\r\n", at, end) >= 0 or data.find(b"\n\n", at, end) >= 0
    return done or end - start >= max_header_bytes, (s, rl, end - start)
