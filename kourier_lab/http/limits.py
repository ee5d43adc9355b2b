"""Configurable parser limits (mirrors kl_limits in native/kourier_lab.h)."""
from dataclasses import dataclass

MAX_HEADERS_CAP = 128  # KL_MAX_HEADERS: the request table has room for this many


@dataclass(frozen=True)
class Limits:
    max_request_line: int = 8192      # bytes, CRLF excluded        -> 414
    max_header_bytes: int = 16384     # the whole head              -> 431
    max_headers: int = 100            # field lines                  -> 431
    max_body: int = 1 << 20           # decoded body bytes           -> 413

    def __post_init__(self):
        for name in ("max_request_line", "max_header_bytes", "max_headers", "max_body"):
            v = getattr(self, name)
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f"limit {name} must be a positive integer, got {v!r}")
        if self.max_headers > MAX_HEADERS_CAP:
            raise ValueError(f"max_headers must be <= {MAX_HEADERS_CAP} (the request table's size)")
        if self.max_request_line > self.max_header_bytes:
            raise ValueError("max_request_line must not exceed max_header_bytes")
        if self.max_header_bytes >= 1 << 31 or self.max_body >= 1 << 62:
            raise ValueError("limits too large")


DEFAULT_LIMITS = Limits()
