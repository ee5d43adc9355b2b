"""The pure-Python parser: the standard library only (`re` and bytes methods).

Every byte is validated, but the work is pushed into C-implemented primitives.
Two paths give the same answers (tests/parsers/test_parser_contract.py checks it):

  * the common-head path: ONE compiled regular expression (character classes
    generated from http/chars.py) matches a whole common head -- an
    origin-form request line of HTTP/1.0 or 1.1 with valid '%' escapes, a
    valid Host as the first field line, any number of other ordinary field
    lines, at most one plain Connection line, the empty line -- checking its
    structure and every byte's class, and hands out the values as its groups.
    Anything it does not match (unusual, invalid, incomplete, a field that
    changes framing, near a limit) goes to the exact path, which alone
    decides errors.
  * the exact path: `bytes.find` locates the head, one regular expression
    validates the request line, one more the whole field section, and
    lower-cased `find`s pick the fields that change framing.

Python-level code runs a fixed number of steps per request, not per byte.
`parse_heads` (the batch protocol in parsers/__init__.py) matches every head
already buffered in one call, each head its own match and its own info.  With
fold_runs on (an explicit knob, off by default) a head byte-identical to the
one before it is still matched whole, but shares the previous entry.

The parser keeps no memory between calls: every call validates every byte of
the head it is given.  Remembering the last head (a head memo) is a separate,
explicit knob of the server (kourier_lab/parsers/memo.py, `--head-memo`).
"""
import re
from itertools import islice

from ..http.chars import (FIELD_CONTENT, FIELD_VCHAR, HEXDIG, PATH_CHAR, QUERY_CHAR, REG_NAME,
                          SCHEME_CHAR, TCHAR, regex_class)
from ..http.limits import DEFAULT_LIMITS, Limits
from . import register
from .request_table import (BODY_CHUNKED, BODY_LENGTH, BODY_NONE, FORM_ABSOLUTE, FORM_ASTERISK, FORM_AUTHORITY,
                    FORM_ORIGIN, RequestHead)

_TOKEN = regex_class(TCHAR)
_PATHC = regex_class(PATH_CHAR, b"%")
_QUERYC = regex_class(QUERY_CHAR, b"%")
_VCHAR = regex_class(FIELD_VCHAR)
_CONTENT = regex_class(FIELD_CONTENT)
_HEX = regex_class(HEXDIG)
_REGC = regex_class(REG_NAME, b"%")

# The common case in one match: origin-form, HTTP/1.x, CRLF.
_FAST_LINE = re.compile(rb"(%s+) (/%s*)(?:\?(%s*))? HTTP/1\.([01])\r\n" % (_TOKEN, _PATHC, _QUERYC))
# One field line: name, ':', OWS, value (first and last byte visible), OWS, CRLF.
_FIELD = rb"%s+:[ \t]*(?:%s(?:%s*%s)?)?[ \t]*\r\n" % (_TOKEN, _VCHAR, _CONTENT, _VCHAR)
# validation only needs the byte classes: names are tokens, values any field-content
_FIELDS = re.compile(rb"(?:%s+:%s*\r\n)*\r\n" % (_TOKEN, _CONTENT))
_FIELD_LINE = re.compile(_FIELD)
_FIELD_SPLIT = re.compile(rb"(%s+):[ \t]*((?:%s(?:%s*%s)?)?)[ \t]*\r\n" % (_TOKEN, _VCHAR, _CONTENT, _VCHAR))
_BAD_PCT = re.compile(rb"%%(?!%s%s)" % (_HEX, _HEX))
_VERSION = re.compile(rb"HTTP/([0-9])\.([0-9])")
_TOKEN_RE = re.compile(rb"%s+" % _TOKEN)
_PATH_RE = re.compile(rb"%s*" % _PATHC)
_QUERY_RE = re.compile(rb"%s*" % _QUERYC)
_PORT = rb"[0-9]*"
_IP_LITERAL = rb"\[[0-9A-Fa-f:.vV" + re.escape(bytes(sorted(REG_NAME - set(b"[]")))) + rb"]+\]"
_HOST = rb"(?:%s|%s*)" % (_IP_LITERAL, _REGC)
_HOST_VALUE = re.compile(rb"%s(?::%s)?" % (_HOST, _PORT))
_AUTHORITY_FORM = re.compile(rb"%s:[0-9]+" % _HOST)
_ABSOLUTE_FORM = re.compile(rb"[A-Za-z]%s*://(%s(?::%s)?)((?:/%s*)?)(?:\?(%s*))?"
                            % (regex_class(SCHEME_CHAR), _HOST, _PORT, _PATHC, _QUERYC))
_CHUNK_EXT = re.compile(rb'(?:[ \t]*;[ \t]*%s+(?:[ \t]*=[ \t]*(?:%s+|"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"))?)*'
                        % (_TOKEN, _TOKEN))
# the few fields that change framing, found in one C-level scan of the lower-cased
# (already validated) field section; "\r\n" anchors each at a line start
_FRAMING = re.compile(rb"\r\n(?:host|content-length|transfer-encoding|connection|expect):")
_HEXRUN = re.compile(rb"%s+" % _HEX)
_LEADING_CRLF = re.compile(rb"(?:\r\n)*")

# -- the common-head path --------------------------------------------------------
# The heads browsers, curl and benchmark clients send, validated whole by ONE
# regular expression with the values as its groups: an origin-form request
# line of HTTP/1.0 or 1.1 (not CONNECT), every '%' followed by two hex digits;
# Host as the first field line, its value a valid host; any number of other
# field lines, none of them a field that changes framing, except at most one
# Connection line whose value is exactly "close" or "keep-alive"; the empty
# line.  Groups: (method, path, query or None, minor digit, Connection value
# or None).  Anything else (unusual, invalid, incomplete, near a limit) does
# not match and goes to the exact path, which alone decides errors.
_NOPCT_PATH = regex_class(PATH_CHAR)
_NOPCT_QUERY = regex_class(QUERY_CHAR)
_PCT = rb"%%%s%s" % (_HEX, _HEX)
# the field names the exact path must see (they change framing or need checks),
# tested only at a line whose first byte could start one of them
_FRAMING_NAME = rb"[HhCcTtEe](?i:ost|ontent-length|ransfer-encoding|xpect|onnection):"
_PLAIN_FIELD = rb"(?!%s)%s+:%s*\r\n" % (_FRAMING_NAME, _TOKEN, _CONTENT)
_COMMON = re.compile(
    rb"(?!CONNECT )(%s+) (/%s*(?:%s%s*)*)(?:\?(%s*(?:%s%s*)*))? HTTP/1\.([01])\r\n"
    % (_TOKEN, _NOPCT_PATH, _PCT, _NOPCT_PATH, _NOPCT_QUERY, _PCT, _NOPCT_QUERY)
    + rb"(?i:host):[ \t]*%s(?::%s)?[ \t]*\r\n" % (_HOST, _PORT)
    # the empty line right after Host (a literal tried first: the minimal head's
    # case), or the other field lines then the empty line
    + rb"(?:\r\n|(?:%s)*" % _PLAIN_FIELD
    + rb"(?:(?i:connection):[ \t]*((?i:close|keep-alive))[ \t]*\r\n(?:%s)*)?" % _PLAIN_FIELD
    + rb"\r\n)")
# what a common head's minor digit and Connection value give: the info tuple's
# last five fields (version_minor, keep_alive, body_kind, content_length, expect);
# _common_heads spells out the commonest, (1, True, BODY_NONE, -1, False)
assert BODY_NONE == 0
_TAILS = {}
for _minor in (b"0", b"1"):
    for _conn in (None, b"close", b"keep-alive"):
        _ka = (_minor == b"1" and _conn != b"close") or (_minor == b"0" and _conn == b"keep-alive")
        _TAILS[_minor, _conn] = (_minor[0] - 48, _ka, BODY_NONE, -1, False)
        if _conn is not None:       # the spellings clients send, so .lower() is rarely needed
            for _spelled in (_conn.title(), _conn.upper(), _conn.capitalize()):
                _TAILS[_minor, _spelled] = _TAILS[_minor, _conn]


MAX_CHUNK_LINE = 4096
# chunk framing bytes (size lines, the CRLF after each chunk's data) allowed
# beyond the data's own size: past both, 413 (a tiny-chunk body costs per chunk)
MAX_CHUNK_OVERHEAD = 102400


def _keep_alive(minor, connection_values):
    """keep_alive from the Connection field values: HTTP/1.1 unless "close",
    HTTP/1.0 only with "keep-alive"."""
    keep_alive = minor == 1
    for v in connection_values:
        toks = [t.strip(b" \t") for t in v.lower().split(b",")]
        if b"close" in toks:
            return False
        if minor == 0 and b"keep-alive" in toks:
            keep_alive = True
    return keep_alive


class PythonParser:
    name = "python"
    fold_runs = False       # parsers.create(..., fold_runs=True): equal heads share one entry

    def __init__(self, limits: Limits = DEFAULT_LIMITS):
        self.limits = limits
        self.info = None
        self._fields = None        # the exact path's table, for head()
        self._buf = self._start = None
        self._table_pending = 0    # > 0: head() must run the exact path over this many bytes
        self._common = _COMMON.match
        self._common_scanner = _COMMON.scanner
        # the common-head path takes heads up to this size: then neither the
        # request line nor the head can be over its limit
        self._common_max = min(limits.max_request_line, limits.max_header_bytes)
        # a head shorter than this has at most max_headers field lines (each
        # is >= 4 bytes, the request line >= 14), so only a longer one is
        # measured against both limits
        self._check_from = min(self._common_max + 1, 4 * limits.max_headers + 20)

    def _too_big(self, buf, s, e):
        """A common head at buf[s:e] that the exact path must decide (a limit)."""
        return e - s > self._common_max or buf.count(b"\n", s, e) - 2 > self.limits.max_headers

    # -- head ------------------------------------------------------------
    def parse_head(self, buf, start=0, end=None):
        if end is None:
            end = len(buf)
        m = self._common(buf, start, end)
        if m is not None:
            e = m.end()
            n = e - start
            if n < self._check_from or not self._too_big(buf, start, e):
                method, path, query, minor, conn = m.groups()
                tail = _TAILS.get((minor, conn)) or _TAILS[minor, conn.lower()]
                self.info = (method, path, query) + tail
                self._buf, self._start, self._table_pending = buf, start, n
                return n
        return self._parse(buf, start, end)

    def parse_heads(self, buf, start, end, max_count):
        """The batch protocol (parsers/__init__.py): every head buffered from
        `start` on, each through the common-head path when it matches, else
        through the exact path."""
        if max_count is None:
            max_count = end - start     # every head is at least one byte
        out = []
        pos = start
        common_heads = self._common_heads_folded if self.fold_runs else self._common_heads
        while pos < end and len(out) < max_count:
            pos, closing = common_heads(buf, pos, end, max_count - len(out), out)
            if closing or pos >= end or len(out) >= max_count:
                break
            # the head at pos is not a common one (unusual, an error, incomplete)
            n = self._parse(buf, pos, end)
            if n <= 0:
                out.append((n, None))
                break
            info = self.info
            out.append((n, info))
            if info[5] != BODY_NONE or not info[4]:
                break
            pos += n
        self._table_pending = 0
        self._fields = None             # head() is not defined after parse_heads
        return out

    def _common_heads(self, buf, pos, end, room, out):
        """Append (n, info) to out for the common heads from pos on, at most
        `room`: (where they end, whether the last one closes the connection).

        They are matched one after the other by a scanner, each match anchored
        where the previous one ended (Pattern.scanner: the standard library's
        re.Scanner uses it; it holds the buffer once for all its matches).
        Every head is matched -- validated -- whole and gets its own info,
        built from its own groups: a handful of C-level calls per head."""
        append = out.append
        tails = _TAILS
        check_from = self._check_from
        m = self._common(buf, pos, end)
        if m is None:
            return pos, False
        if m.end() == end:          # one head fills the buffer (keep-alive): no scanner
            heads = (m,)
        else:
            heads = islice(iter(self._common_scanner(buf, pos, end).match, None), room)
        for m in heads:
            e = m.end()
            n = e - pos
            if n >= check_from and self._too_big(buf, pos, e):
                return pos, False               # the exact path decides this one
            method, path, query, minor, conn = m.groups()
            pos = e
            if conn is None and minor == b"1":  # HTTP/1.1, keep-alive: one tuple built
                append((n, (method, path, query, 1, True, 0, -1, False)))
                continue
            tail = tails.get((minor, conn)) or tails[minor, conn.lower()]
            append((n, (method, path, query) + tail))
            if not tail[1]:                     # not keep-alive: nothing after it
                return pos, True
        return pos, False

    def _common_heads_folded(self, buf, pos, end, room, out):
        """_common_heads with fold_runs on: a head byte-identical to the one
        before it is still matched whole, but shares the previous entry (its
        groups are not extracted again)."""
        append = out.append
        check_from = self._check_from
        last = entry = None
        for m in islice(iter(self._common_scanner(buf, pos, end).match, None), room):
            e = m.end()
            n = e - pos
            if n >= check_from and self._too_big(buf, pos, e):
                return pos, False
            head = m[0]
            if head != last:
                method, path, query, minor, conn = m.groups()
                tail = _TAILS.get((minor, conn)) or _TAILS[minor, conn.lower()]
                last, entry = head, (n, (method, path, query) + tail)
            append(entry)
            pos = e
            if not entry[1][4]:
                return pos, True
        return pos, False

    def _parse(self, buf, start, end):
        """The exact path: every head, every error."""
        self._table_pending = 0
        lim = self.limits
        # leading empty lines are skipped but count toward the head limit
        # (RFC 9112 2.2; else a flood of them is "need more" forever)
        s = _LEADING_CRLF.match(buf, start, min(end, start + lim.max_header_bytes + 1)).end()
        if s - start >= lim.max_header_bytes:
            return -431
        lf = buf.find(b"\n", s, end)
        if lf < 0:
            k = end - s
            if k - 1 > lim.max_request_line or (k > lim.max_request_line and buf[end - 1] != 13):
                return -414
            return 0
        cr = lf > s and buf[lf - 1] == 13
        if lf - s - cr > lim.max_request_line:
            return -414
        if not cr:
            return -400
        m = _FAST_LINE.match(buf, s, lf + 1)
        if m is not None and m.group(1) != b"CONNECT":
            method, path, query, minor = m.group(1, 2, 3, 4)
            if b"%" in path or (query is not None and b"%" in query):
                if _BAD_PCT.search(m.group(2)) or (query is not None and _BAD_PCT.search(query)):
                    return -400
            minor = minor[0] - 48
            form = FORM_ORIGIN
            target_span = (m.start(2) - start, m.end(3 if query is not None else 2) - m.start(2))
        else:
            r = self._slow_request_line(bytes(buf[s:lf - 1]))
            if isinstance(r, int):
                return r
            method, path, query, minor, form, t_off, t_len = r
            target_span = (s - start + t_off, t_len)
        # the head ends at the first empty line: LF CR LF, or LF LF (a bare
        # LF, so 400 below) -- searching for both means "\n\n" cannot hide
        # a finished head from a CRLF-only search
        rl_end = lf + 1
        e1 = buf.find(b"\n\r\n", lf, end)
        e2 = buf.find(b"\n\n", lf, e1 + 1 if e1 >= 0 else end)
        if e2 >= 0:
            head_end = e2 + 2
        elif e1 >= 0:
            head_end = e1 + 3
        else:
            return -431 if end - start >= lim.max_header_bytes else 0
        if head_end - start > lim.max_header_bytes:
            return -431
        if e2 >= 0:
            return -400
        if buf.count(b"\n", rl_end, head_end) - 1 > lim.max_headers:
            return -431
        if _FIELDS.fullmatch(buf, rl_end, head_end) is None:
            return -400
        return self._semantics(buf, start, s, rl_end, head_end, method, path, query, minor, form,
                               target_span)

    def _slow_request_line(self, line):
        parts = line.split(b" ")
        if len(parts) != 3 or not all(parts):
            return -400
        method, target, version = parts
        if not _TOKEN_RE.fullmatch(method):
            return -400
        v = _VERSION.fullmatch(version)
        if v is None:
            return -400
        t_off = len(method) + 1
        query = None
        if target[:1] == b"/":
            form = FORM_ORIGIN
            path, q, query = target.partition(b"?")
            if not q:
                query = None
            if not _PATH_RE.fullmatch(path) or (query is not None and not _QUERY_RE.fullmatch(query)):
                return -400
        elif target == b"*":
            if method != b"OPTIONS":
                return -400
            form, path = FORM_ASTERISK, b""
        elif method == b"CONNECT":
            if not _AUTHORITY_FORM.fullmatch(target):
                return -400
            form, path = FORM_AUTHORITY, b""
        else:
            m = _ABSOLUTE_FORM.fullmatch(target)
            if m is None:
                return -400
            form, path, query = FORM_ABSOLUTE, m.group(2), m.group(3)
        if method == b"CONNECT" and form != FORM_AUTHORITY:
            return -400
        if _BAD_PCT.search(target):
            return -400
        major, minor = v.group(1)[0] - 48, v.group(2)[0] - 48
        if major != 1:
            return -505
        # RFC 9110 2.5: a higher minor version of a major version we implement
        # SHOULD be processed as the highest minor version we implement (1.1)
        minor = min(minor, 1)
        return method, path, query, minor, form, t_off, len(target)

    def _semantics(self, buf, start, s, rl_end, head_end, method, path, query, minor, form, target_span):
        # Framing fields are found in the lower-cased field section with C-speed
        # finds ("\r\nname:" can only start a field line); the section was
        # already validated, so every value runs to the next CRLF.
        lim = self.limits
        keep_alive = minor == 1
        body_kind, content_length, expect = BODY_NONE, -1, False
        hosts, cls, tes, conns, expects = [], [], [], [], []
        by_length = {4: hosts, 14: cls, 17: tes, 10: conns, 6: expects}   # the names differ in length
        block = bytes(buf[rl_end - 2:head_end - 2]).lower()    # "\r\n" + the field lines
        find = block.find
        for m in _FRAMING.finditer(block):
            e = m.end()
            by_length[e - m.start() - 3].append(block[e:find(b"\r\n", e)].strip(b" \t"))
        if len(hosts) > 1 or (not hosts and minor == 1):
            return -400
        if hosts and not _HOST_VALUE.fullmatch(hosts[0]):
            return -400
        if tes and cls:
            return -400
        if cls:
            digits = None
            for v in cls:
                for el in v.split(b","):
                    el = el.strip(b" \t")
                    if not el.isdigit() or not el.isascii():
                        return -400
                    el = el.lstrip(b"0") or b"0"
                    if digits is None:
                        digits = el
                    elif el != digits:
                        return -400
            body_kind = BODY_LENGTH
            if len(digits) > 18 or int(digits) > lim.max_body:
                return -413
            content_length = int(digits)
        if tes:
            if minor == 0:
                return -400
            codings = [c.strip(b" \t") for c in b",".join(tes).lower().split(b",")]
            codings = [c for c in codings if c]
            if not codings or not all(_TOKEN_RE.fullmatch(c) for c in codings):
                return -400
            if codings[-1] != b"chunked" or codings.count(b"chunked") != 1:
                return -400
            if len(codings) > 1:
                return -501
            body_kind = BODY_CHUNKED
        if conns:
            keep_alive = _keep_alive(minor, conns)
        for v in expects:
            if v.lower() != b"100-continue":
                return -417
            expect = minor == 1
        self.info = (method, path, query, minor, keep_alive, body_kind, content_length, expect)
        self._fields = (None, form, target_span, head_end - start, rl_end - start)
        self._buf, self._start = buf, start
        return head_end - start

    @staticmethod
    def _split_fields(buf, rl_end, head_end):
        return [m.group(1, 2) for m in _FIELD_SPLIT.finditer(buf, rl_end, head_end - 2)]

    def head(self) -> RequestHead:
        if self._table_pending:     # the common-head path keeps no table: build it now
            n = self._parse(self._buf, self._start, self._start + self._table_pending)
            assert n > 0, n
        if self._fields is None:
            raise RuntimeError("head() is defined only after parse_head() returned n > 0")
        method, path, query, minor, keep_alive, body_kind, content_length, expect = self.info
        fields, form, (t_off, t_len), head_len, rl_end = self._fields
        buf, start = self._buf, self._start
        if fields is None:      # not split on the hot path; do it now
            fields = self._split_fields(buf, start + rl_end, start + head_len)
        host = None
        for k, v in fields:
            if k.lower() == b"host":
                host = v
        return RequestHead(method=bytes(method), target=bytes(buf[start + t_off:start + t_off + t_len]),
                           path=bytes(path), query=None if query is None else bytes(query),
                           version_minor=minor, target_form=form,
                           headers=[(bytes(k), bytes(v)) for k, v in fields], host=host,
                           keep_alive=keep_alive, body_kind=body_kind, content_length=content_length,
                           expect_continue=expect, head_len=head_len)

    # -- chunked body ----------------------------------------------------
    def parse_chunked(self, buf, start, end=None):
        if end is None:
            end = len(buf)
        lim = self.limits
        pos = start
        parts = []
        total = overhead = 0
        while True:
            lf = buf.find(b"\n", pos, end)
            if lf < 0:
                if end - pos > MAX_CHUNK_LINE:
                    return -400, None
                return 0, None
            if lf - pos > MAX_CHUNK_LINE or lf == pos or buf[lf - 1] != 13:
                return -400, None
            m = _HEXRUN.match(buf, pos, lf - 1)
            if m is None:
                return -400, None
            digits = m.group().lstrip(b"0")
            if len(digits) > 15:
                return -400, None
            if _CHUNK_EXT.fullmatch(buf, m.end(), lf - 1) is None:
                return -400, None
            size = int(digits, 16) if digits else 0
            total += size
            if total > lim.max_body:
                return -413, None
            overhead += lf + 1 - pos + (2 if size else 0)
            if overhead > MAX_CHUNK_OVERHEAD and overhead > total:
                return -413, None
            pos = lf + 1
            if size == 0:
                break
            if end - pos < size + 2:
                return 0, None
            if buf[pos + size] != 13 or buf[pos + size + 1] != 10:
                return -400, None
            parts.append(bytes(buf[pos:pos + size]))
            pos += size + 2
        # trailer section: field lines then an empty line
        t_start = pos
        while True:
            lf = buf.find(b"\n", pos, end)
            if lf < 0:
                if end - t_start >= lim.max_header_bytes:
                    return -431, None
                return 0, None
            if lf + 1 - t_start > lim.max_header_bytes:
                return -431, None
            if lf == pos or buf[lf - 1] != 13:
                return -400, None
            if lf == pos + 1:      # the empty line
                return lf + 1 - start, b"".join(parts)
            if _FIELD_LINE.fullmatch(buf, pos, lf + 1) is None:
                return -400, None
            pos = lf + 1


register("python", PythonParser)
