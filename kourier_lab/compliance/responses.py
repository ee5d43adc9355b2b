"""Split the bytes a server sent back into HTTP/1.x responses.

Lenient on purpose: it judges servers, so it must describe whatever came back
(status codes, how many responses, whether the last one is complete) rather
than fail on it.
"""
from dataclasses import dataclass, field
from typing import List, Optional, Tuple


@dataclass
class Response:
    status: int                      # 0 when the bytes are not an HTTP/1.x status line
    headers: List[Tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: bytes) -> Optional[bytes]:
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def connection_tokens(self) -> List[bytes]:
        v = self.header(b"connection") or b""
        return [t.strip().lower() for t in v.split(b",") if t.strip()]


def _chunked_length(buf: bytes, start: int) -> Optional[int]:
    """End offset of a chunked body starting at `start`, or None if incomplete."""
    pos = start
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size_text = buf[pos:eol].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            return len(buf)          # garbage: take the rest
        pos = eol + 2
        if size == 0:
            end = buf.find(b"\r\n\r\n", pos - 2)
            return None if end < 0 else end + 4
        if len(buf) < pos + size + 2:
            return None
        pos += size + 2


def split(buf: bytes, closed: bool) -> Tuple[List[Response], bool]:
    """(complete final responses, whether bytes of an incomplete one remain).

    1xx interim responses are dropped.  A response without Content-Length or
    chunked framing runs to the close.  Bytes that are not a status line count
    as one response with status 0 (e.g. an HTTP/0.9-style answer).
    """
    out: List[Response] = []
    pos = 0
    n = len(buf)
    while pos < n:
        if not buf.startswith(b"HTTP/", pos) and not (n - pos < 5 and b"HTTP/".startswith(buf[pos:])):
            out.append(Response(0, body=bytes(buf[pos:])))
            return out, False
        head_end = buf.find(b"\r\n\r\n", pos)
        if head_end < 0:
            return out, True
        lines = bytes(buf[pos:head_end]).split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers.append((name.strip(), value.strip()))
        resp = Response(status, headers)
        body_start = head_end + 4
        if 100 <= status < 200:
            pos = body_start
            continue
        te = resp.header(b"transfer-encoding")
        cl = resp.header(b"content-length")
        if status in (204, 304):
            end = body_start
        elif te is not None and b"chunked" in te.lower():
            end = _chunked_length(buf, body_start)
            if end is None:
                return out, True
        elif cl is not None and cl.strip().isdigit():
            end = body_start + int(cl)
            if end > n:
                return out, True
        else:
            if not closed:
                return out, True
            end = n
        resp.body = bytes(buf[body_start:end])
        out.append(resp)
        pos = end
    return out, False
