"""Split the bytes a server sent back into HTTP/1.x responses: the lab's one response reader.

Bytes in, Response objects out, no I/O (h11 style): the tests' socket helper
(server/process.py), the spec's connection scripts, the compliance suite and
the bench's verification all frame what they read through `parse_response`,
and only their policy differs.  Lenient by default, since it also judges other
servers: it describes whatever came back, and records what a strict reader
would reject in `Response.problem` (the bench's check raises on it).

Framing (RFC 9112 6.3): 1xx, 204 and 304 have no body; then chunked, then
Content-Length; otherwise the body runs to the close.  Bytes that do not
start with a status line are one response of status 0 that takes the rest
(an HTTP/0.9-style answer, or garbage).
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

# framing of a response's body
NONE, LENGTH, CHUNKED, CLOSE, GARBLED = "none", "length", "chunked", "close", "garbled"


@dataclass
class Response:
    status: int                      # 0 when the bytes are not an HTTP/1.x status line
    headers: List[Tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""                # as sent: a chunked body keeps its framing
    status_line: bytes = b""
    framing: str = NONE
    size: int = 0                    # bytes it took from the stream, head and body
    problem: str = ""                # what a strict reader rejects; "" when well formed

    def header(self, name: bytes) -> Optional[bytes]:
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def connection_tokens(self) -> List[bytes]:
        v = self.header(b"connection") or b""
        return [t.strip().lower() for t in v.split(b",") if t.strip()]

    def header_dict(self) -> Dict[str, str]:
        """Lower-case names to values, as text (the last of a repeated name wins)."""
        return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in self.headers}

    @property
    def content(self) -> bytes:
        """The body without its transfer coding (the chunks' data joined)."""
        if self.framing != CHUNKED:
            return self.body
        return _chunks(self.body, 0)[1]


def _chunks(buf, start: int) -> Tuple[Optional[int], bytes, str]:
    """(end offset or None while incomplete, the data, a problem) of a chunked body at `start`."""
    pos, data, problem = start, [], ""
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None, b"", ""
        size_text = bytes(buf[pos:eol]).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:           # garbage: it takes the rest
            return len(buf), b"".join(data), f"bad chunk size {size_text[:20]!r}"
        pos = eol + 2
        if size == 0:                # then trailers, up to a blank line
            end = buf.find(b"\r\n\r\n", pos - 2)
            return (None, b"", "") if end < 0 else (end + 4, b"".join(data), problem)
        if len(buf) < pos + size + 2:
            return None, b"", ""
        data.append(bytes(buf[pos:pos + size]))
        if buf[pos + size:pos + size + 2] != b"\r\n" and not problem:
            problem = "chunk data not followed by CRLF"
        pos += size + 2


def parse_status_line(line: bytes) -> Tuple[int, str]:
    """(status, problem) of `HTTP/1.x NNN reason`; status 0 when there is no code."""
    parts = line.split(b" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        return 0, f"not an HTTP/1.x status line: {line[:80]!r}"
    if not parts[0].startswith(b"HTTP/1."):
        return int(parts[1]), f"not an HTTP/1.x status line: {line[:80]!r}"
    return int(parts[1]), ""


def parse_head(buf, start: int = 0) -> Optional[Response]:
    """The status line and headers at buf[start:] (body empty, framing decided,
    size the head's length), or None while the head is incomplete."""
    n = len(buf)
    if not buf.startswith(b"HTTP/", start) and not (n - start < 5 and b"HTTP/".startswith(bytes(buf[start:]))):
        line = bytes(buf[start:]).split(b"\r\n", 1)[0]
        return Response(0, body=bytes(buf[start:]), status_line=line, framing=GARBLED,
                        size=n - start, problem=f"not an HTTP/1.x status line: {line[:80]!r}")
    head_end = buf.find(b"\r\n\r\n", start)
    if head_end < 0:
        return None
    lines = bytes(buf[start:head_end]).split(b"\r\n")
    status, problem = parse_status_line(lines[0])
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep and not problem:
            problem = f"malformed header line: {line[:80]!r}"
        headers.append((name.strip(), value.strip()))
    r = Response(status, headers, status_line=lines[0], size=head_end + 4 - start, problem=problem)
    te, cl = r.header(b"transfer-encoding"), r.header(b"content-length")
    if 100 <= status < 200 or status in (204, 304):
        r.framing = NONE
    elif te is not None and b"chunked" in te.lower():
        r.framing = CHUNKED
    elif cl is not None and cl.strip().isdigit():
        r.framing = LENGTH
    else:
        r.framing = CLOSE
        if cl is not None and not r.problem:
            r.problem = f"bad Content-Length {cl!r}"
    return r


def parse_response(buf, start: int = 0, closed: bool = False) -> Optional[Response]:
    """The whole response at buf[start:], or None while it is incomplete
    (`closed`: no more bytes will come, so a close-delimited body ends here)."""
    r = parse_head(buf, start)
    if r is None or r.framing == GARBLED:
        return r
    body_start = start + r.size
    if r.framing == NONE:
        end = body_start
    elif r.framing == CHUNKED:
        end, _, problem = _chunks(buf, body_start)
        if end is None:
            return None
        r.problem = r.problem or problem
    elif r.framing == LENGTH:
        end = body_start + int(r.header(b"content-length"))
        if end > len(buf):
            return None
    else:
        if not closed:
            return None
        end = len(buf)
    r.body = bytes(buf[body_start:end])
    r.size = end - start
    return r


def split(buf, closed: bool) -> Tuple[List[Response], bool]:
    """(the complete final responses in buf, whether bytes of an incomplete one
    remain); 1xx interim responses are dropped."""
    out: List[Response] = []
    pos = 0
    while pos < len(buf):
        r = parse_response(buf, pos, closed)
        if r is None:
            return out, True
        pos += r.size
        if not 100 <= r.status < 200:
            out.append(r)
    return out, False
