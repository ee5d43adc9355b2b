"""The head memo: an explicit, recorded knob (`serve --head-memo on`), off by default.

A worker remembers the last request head it accepted, if that head has no
body and is at most MEMO_MAX bytes.  A request whose head is byte-identical
to it gets the same verdict without running the parser: parsers are
stateless, so identical bytes give the identical answer, and the memo is exact.
Under a benchmark client that repeats one request (wrk, h2load) it means
that, with the memo on, **no parser runs** after the first request: a row
measured with it measures the memo, not the parser.  That is why it is off by
default, why every results row records it (`head_memo`) and why plots and
tables label memo-on rows.

One semantics in every language, one cap (MEMO_MAX, also in native/loop.c
and loops/numba.py):

  * Python-level loops (python, asyncio, the Numba loop's promoted
    connections): `HeadMemo` below wraps the worker's parser;
  * the C loop: native/loop.c (kl_loop_set_head_memo), one memcmp per head;
  * the Numba loop: the memo row in loops/numba.py (ctl[C_MEMO_LEN]).
"""
from .request_table import BODY_NONE, parse_heads_by_head

MEMO_MAX = 512          # longest head remembered, in bytes (the same in C and Numba)


class HeadMemo:
    """A parser with the head memo in front of it (same contract as the parser).

    The memo is one worker's, not one connection's: the worker's loop holds a
    single parser for all its connections, as the C and Numba loops hold one
    memo row.  `hits` and `misses` count what it did."""

    def __init__(self, parser):
        self.parser = parser
        self.name = parser.name
        self.limits = parser.limits
        self.info = None
        self.hits = 0
        self.misses = 0
        self._last = None           # bytes of the remembered head
        self._last_info = None
        self._hit = False

    def parse_head(self, buf, start=0, end=None):
        if end is None:
            end = len(buf)
        last = self._last
        # memoryview has no startswith; the loops hand out bytes/bytearray
        if last is not None and type(buf) is not memoryview and buf.startswith(last, start, end):
            self.info = self._last_info
            self._hit = True
            self.hits += 1
            return len(last)
        p = self.parser
        n = p.parse_head(buf, start, end)
        self._hit = False
        self.misses += 1
        if n > 0:
            info = self.info = p.info
            if n <= MEMO_MAX and info[5] == BODY_NONE:
                self._last = bytes(buf[start:start + n])
                self._last_info = info
        return n

    def parse_heads(self, buf, start, end, max_count):
        """The batch protocol, head by head through the memo (never the wrapped
        parser's own parse_heads, which would bypass it)."""
        return parse_heads_by_head(self, buf, start, end, max_count)

    def head(self):
        if self._hit:       # the parser holds another head: parse the remembered one
            self.parser.parse_head(self._last, 0, len(self._last))
            self._hit = False
        return self.parser.head()

    def parse_chunked(self, buf, start, end=None):
        return self.parser.parse_chunked(buf, start, end)

    def __getattr__(self, name):        # anything else the parser offers
        return getattr(self.parser, name)
