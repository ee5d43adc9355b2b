"""The pure-Python buffer variant: a ring buffer to read into, a bytearray to write from.

RingBuffer (the ReadBuffer of the contract in ``__init__``)
-----------------------------------------------------------
A bytearray used as a ring.  The loop does::

    n = sock.recv_into(rb.free_span())
    rb.commit(n)
    data, start, end = rb.contiguous()     # the parser searches data[start:end]
    rb.consume(used)

State: ``_head`` (first readable byte), ``_tail`` (where the next write goes) and
``_mark``.  ``_mark == 0`` means the data is linear, ``[head, tail)``.  ``_mark > 0``
means it wraps: ``[head, mark)`` followed by ``[0, tail)``; the bytes
``[mark, capacity)`` are an unused gap (the wrap happens where the last write
ended, so no write is ever split, as in a bip buffer).

* free_span() hands out a memoryview of the largest contiguous free region
  without copying data.  Two exceptions, both off the common path:
  - when the front region ``[0, head)`` is the larger one but the data is small
    (at most a quarter of the capacity), it moves the data to the front instead
    of wrapping.  The Python parser always asks for ``contiguous()``, and a wrap
    costs a rotation of *all* data (old remainder + the new read) there, while
    moving the small remainder now costs only its own bytes.  Pipelined clients
    hit exactly this case: a partial request left at the end of the buffer.
  - when the largest free region is small (under 1/8 of the capacity) the
    buffer grows by doubling (never past ``limit``), allocating a NEW bytearray
    and copying the data to its front.  At the limit it moves the data to the
    front if that frees space, and only when ``len(rb) == limit`` is the span
    empty (the loop must then stop reading: the request is too large).  Check
    ``len(span)`` before recv_into: a read into an empty span returns 0, which
    looks like end of stream.
* No memory while empty: the first free_span() takes a block of ``capacity``
  bytes and the consume() that empties the buffer gives it back, so an idle
  keep-alive connection holds no buffer at all (capacity 0), and the next
  read starts at offset 0 of an empty block, so wraps stay rare.  Blocks
  given back wait in a small pool of the process (SPARE_MAX) for the next
  buffer that needs one, so a keep-alive connection does not allocate a
  block per request; the memory benchmark rows show what giving it back buys.

The view rule: a memoryview returned by free_span() or spans() (and the region
returned by contiguous()) is valid until the next call that changes the buffer
(commit, consume, free_span, contiguous, reset).  Views never block anything:
the buffer never resizes its bytearray in place (a bytearray with live exports
cannot be resized, BufferError); growth takes a new one, and a stale view
merely keeps the old array alive.

WriteBuffer
-----------
A bytearray that pipelined responses are appended to with ``+=``, plus a send
position.  Against the obvious list of bytes joined at view() time it costs
about the same per response (the measurement is in the README, "How it is
built"); it is chosen for what comes free with it: the pending size is
``len()`` (over_limit is O(1)), a ``str`` is refused at append() time with
TypeError instead of at join time, and a partial send is just a moving offset.

A view from view() is valid until the next call that changes the buffer.  If a
caller still holds one when appending, ``+=`` would raise BufferError; append()
then moves the pending bytes to a fresh bytearray (the held view stays valid,
pointing at the old one), so holding a view is slow, never wrong.
"""
from . import DEFAULT_READ_CAPACITY, DEFAULT_READ_LIMIT, DEFAULT_WRITE_LIMIT, check_size, register

__all__ = ["RingBuffer", "WriteBuffer"]

# what an empty ring points at: no memory of its own
_EMPTY = bytearray()
_EMPTY_VIEW = memoryview(b"")
# Blocks of a buffer's initial capacity given back when it empties, re-used
# by the next buffer of this process that needs one: a keep-alive connection
# then allocates (and zeroes) no new block per request, while an idle one
# still holds no memory.  Bounded: at most SPARE_MAX blocks wait here.  A
# view into a buffer is not used after the consume() that empties it (the
# contract's rule), so a re-used block is never written through a stale view.
SPARE_MAX = 16
_spare = []                 # (bytearray, its memoryview)
_IDLE = b""                 # what an idle WriteBuffer holds: immutable, shared, never appended to


class RingBuffer:
    """The read side: a growable ring the loop reads into with recv_into."""

    __slots__ = ("_buf", "_mv", "_head", "_tail", "_mark", "_cap", "_min_room",
                 "_initial", "limit")

    def __init__(self, capacity: int = DEFAULT_READ_CAPACITY, limit: int = DEFAULT_READ_LIMIT):
        check_size("capacity", capacity)
        check_size("limit", limit)
        if capacity > limit:
            raise ValueError(f"capacity ({capacity}) must not exceed limit ({limit})")
        self._initial = capacity
        self.limit = limit
        self._buf = _EMPTY
        self._release()

    def _release(self):
        """Hold no memory (the buffer is empty); the next free_span() allocates."""
        buf = self._buf
        if buf is not _EMPTY and len(buf) == self._initial and len(_spare) < SPARE_MAX:
            _spare.append((buf, self._mv))
        self._buf = _EMPTY
        self._mv = _EMPTY_VIEW
        self._cap = 0
        self._min_room = 1
        self._head = self._tail = self._mark = 0

    def _allocate(self, capacity):
        if _spare and len(_spare[-1][0]) == capacity:
            self._buf, self._mv = _spare.pop()
        else:
            self._buf = bytearray(capacity)
            # One cached export of the whole array: slicing it is cheaper than
            # memoryview(bytearray) per call.  It pins the array's size, which is
            # fine because the array is never resized, only replaced.
            self._mv = memoryview(self._buf)
        self._cap = capacity
        self._min_room = (capacity >> 3) or 1  # an empty span means full
        self._head = self._tail = self._mark = 0

    @property
    def capacity(self) -> int:
        return self._cap

    def __len__(self) -> int:
        if self._mark:
            return self._mark - self._head + self._tail
        return self._tail - self._head

    def __repr__(self):
        return (f"<RingBuffer len={len(self)} capacity={self._cap} limit={self.limit} "
                f"head={self._head} tail={self._tail} mark={self._mark}>")

    # -- writing (the loop) -------------------------------------------------

    def free_span(self) -> memoryview:
        tail = self._tail
        if self._mark:
            end = self._head
        else:
            end = self._cap
            if end - tail < self._head:  # the front region is the larger one
                return self._free_span_front()
        if end - tail >= self._min_room:
            return self._mv[tail:end]
        return self._make_room()

    def _free_span_front(self):
        head, tail = self._head, self._tail
        size = tail - head
        if size <= self._cap >> 2:
            # Move the small remainder to the front instead of wrapping: see the
            # module docstring.  memoryview assignment is memmove-safe.
            self._mv[0:size] = self._mv[head:tail]
            self._head = 0
            self._tail = tail = size
            end = self._cap
        else:
            self._mark, self._tail = tail, 0
            tail, end = 0, head
        if end - tail >= self._min_room:
            return self._mv[tail:end]
        return self._make_room()

    def _make_room(self):
        """The largest free region is under 1/8 of the capacity: grow, or at the
        limit linearize to recover the gap; an empty span only when full."""
        if not self._cap:
            self._allocate(self._initial)
            return self._mv
        size = len(self)
        if self._cap < self.limit:
            self._relocate(min(self._cap * 2, self.limit))
        elif self._mark or self._head:
            if self._cap - size > self._room():
                self._relocate(self._cap)
        if self._mark:
            return self._mv[self._tail:self._head]
        return self._mv[self._tail:self._cap]

    def _room(self):
        return (self._head if self._mark else self._cap) - self._tail

    def _relocate(self, capacity):
        """Copy the data to the front of a new bytearray of `capacity` bytes."""
        old = self._mv
        head, tail, mark = self._head, self._tail, self._mark
        self._allocate(capacity)
        new = self._mv
        if mark:
            first = mark - head
            new[0:first] = old[head:mark]
            new[first:first + tail] = old[0:tail]
            self._tail = first + tail
        else:
            new[0:tail - head] = old[head:tail]
            self._tail = tail - head

    def commit(self, n: int) -> None:
        """`n` bytes were written at the start of the last free_span()."""
        tail = self._tail
        end = self._head if self._mark else self._cap
        if 0 <= n <= end - tail:
            self._tail = tail + n
        else:
            raise ValueError(f"commit({n!r}): the free span holds {end - tail} bytes")

    # -- reading (the parser) ---------------------------------------------

    def spans(self):
        """(mv1, mv2): the readable bytes in order; mv2 is empty unless the data wraps."""
        mv = self._mv
        mark = self._mark
        if mark:
            return mv[self._head:mark], mv[0:self._tail]
        return mv[self._head:self._tail], mv[0:0]

    def contiguous(self):
        """(bytearray, start, end): the readable bytes as one region; rotates
        the data in place first when it wraps (one copy of the data)."""
        if self._mark:
            self._unwrap()
        return self._buf, self._head, self._tail

    def _unwrap(self):
        head, tail, mark = self._head, self._tail, self._mark
        mv = self._mv
        first = mark - head
        if tail == 0:  # nothing was written after the wrap
            self._tail = mark
        elif first <= tail:
            # Save the (smaller) first span, slide the second one up, put it back.
            saved = bytes(mv[head:mark])
            mv[first:first + tail] = mv[0:tail]
            mv[0:first] = saved
            self._head, self._tail = 0, first + tail
        else:
            saved = bytes(mv[0:tail])
            mv[0:first] = mv[head:mark]
            mv[first:first + tail] = saved
            self._head, self._tail = 0, first + tail
        self._mark = 0

    def consume(self, n: int) -> None:
        """Drop `n` readable bytes from the front."""
        head = self._head + n
        mark = self._mark
        if mark:
            if n >= 0 and head < mark:
                self._head = head
                return
            head -= mark
            if n < 0 or head > self._tail:
                raise ValueError(f"consume({n!r}): {len(self)} bytes readable")
            self._mark = 0
        elif n < 0 or head > self._tail:
            raise ValueError(f"consume({n!r}): {len(self)} bytes readable")
        if head == self._tail:
            self._release()             # empty: give the memory back
        else:
            self._head = head

    def reset(self) -> None:
        """Drop everything and give the memory back."""
        self._release()


class WriteBuffer:
    """The write side: responses to one read gathered for one send."""

    __slots__ = ("_buf", "_pos", "limit")

    def __init__(self, limit: int = DEFAULT_WRITE_LIMIT):
        check_size("limit", limit, minimum=0)
        self.limit = limit
        self._buf = _IDLE
        self._pos = 0

    def __len__(self) -> int:
        return len(self._buf) - self._pos

    @property
    def capacity(self) -> int:
        """Bytes of memory held (0 once everything is sent)."""
        return len(self._buf)

    def __repr__(self):
        return f"<WriteBuffer pending={len(self)} limit={self.limit}>"

    def append(self, data) -> None:
        if self._buf is _IDLE:
            # nothing pending: the first append makes the array (an idle
            # connection shares the one empty bytes object instead of owning one)
            self._buf = bytearray(memoryview(data))    # (TypeError for str and int, as += gives)
            return
        try:
            self._buf += data
        except BufferError:
            # A view from view() is still alive: continue in a new array.
            self._buf = self._buf[self._pos:] + data
            self._pos = 0

    def view(self) -> memoryview:
        if self._pos:
            return memoryview(self._buf)[self._pos:]
        return memoryview(self._buf)

    def consume(self, n: int) -> None:
        """`n` pending bytes were sent."""
        pos = self._pos + n
        end = len(self._buf)
        if n < 0 or pos > end:
            raise ValueError(f"consume({n!r}): {end - self._pos} bytes pending")
        if pos == end:
            # All sent: no array at all (clear() would also raise BufferError
            # while the caller still holds the view it sent from).
            self._buf = _IDLE
            self._pos = 0
        elif pos > 65536 and pos > end >> 1:
            # A long partial-send backlog: drop the sent prefix (a copy of
            # the rest) so it does not pin memory.
            self._buf = self._buf[pos:]
            self._pos = 0
        else:
            self._pos = pos

    def over_limit(self) -> bool:
        return len(self._buf) - self._pos > self.limit

    def clear(self) -> None:
        """Drop everything pending (the connection is closing)."""
        self._buf = _IDLE
        self._pos = 0


register("python", RingBuffer, WriteBuffer)
