"""The request table every parser fills (RequestHead, the target forms and body
kinds), and the batch protocol over parse_head for parsers without their own
parse_heads.  The contract itself is described in the package docstring."""
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

NEED_MORE = 0

FORM_ORIGIN, FORM_ABSOLUTE, FORM_AUTHORITY, FORM_ASTERISK = 0, 1, 2, 3
BODY_NONE, BODY_LENGTH, BODY_CHUNKED = 0, 1, 2


@dataclass
class RequestHead:
    """The request table as Python values; every variant's head() returns one.

    Spans of the table are materialized here as bytes so tests and handlers can
    compare variants field by field.
    """
    method: bytes
    target: bytes
    path: bytes
    query: Optional[bytes]          # None when there is no '?'
    version_minor: int
    target_form: int
    headers: List[Tuple[bytes, bytes]] = field(default_factory=list)
    host: Optional[bytes] = None
    keep_alive: bool = True
    body_kind: int = BODY_NONE
    content_length: int = -1
    expect_continue: bool = False
    head_len: int = 0

    def header(self, name: bytes, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default


def parse_heads_by_head(parser, buf, start, end, max_count):
    """The batch protocol (see the module docstring) over parse_head and info:
    for parsers without a parse_heads of their own."""
    if max_count is None:
        max_count = end - start         # every head is at least one byte
    out = []
    parse = parser.parse_head
    pos = start
    while pos < end and len(out) < max_count:
        n = parse(buf, pos, end)
        if n <= 0:
            out.append((n, None))
            break
        info = parser.info
        out.append((n, info))
        if info[5] != BODY_NONE or not info[4]:
            break
        pos += n
    return out
