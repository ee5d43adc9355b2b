"""The Numba buffer variant: the ring buffer's state and index arithmetic
compiled by Numba, over numpy uint8 arrays; a write buffer over the same kind
of array.

Layout
------
Data lives in a ``numba_layout.ArrayBytes``: a bytearray that carries a numpy
uint8 view of its own memory.  So one block of memory is, at once,
  * a numpy array for the kernels here and for the Numba parser (which reads
    ``.array`` instead of calling np.frombuffer on every parse),
  * a bytearray for everything else: contiguous() returns it, so the
    pure-Python parser gets ``find`` and ``re`` works on it (a bare numpy array
    offers the buffer protocol, so ``re`` would work, but no ``find``; and
    ``bytes(arr[a:b])`` or slicing by bytes semantics would differ),
  * a memoryview for the loop: free_span() and spans() slice one cached
    memoryview of it, so ``sock.recv_into`` writes straight into the ring.
The array is never resized (the export would forbid it anyway): growth and
reset allocate a new one, so stale views stay valid, as the contract asks.

The ring's state lives in a small int64 numpy array (head, tail, mark,
capacity, ...) and every operation is one @njit kernel over (state, data).
They are plain functions of arrays, cheap to call from nopython code.  Called
from Python, each one pays Numba's dispatch (notebook 02 measures it), more
than the pure-Python ring's attribute arithmetic: under the Python and asyncio
loops this variant is the slower one, and the benchmark rows show by how
much.  (The Numba loop does not use these objects for the connections it
serves natively: nopython code cannot reach per-connection Python objects, so
it keeps fixed rows of 2-D slabs; see loops/numba.py.  A connection it hands
to Python gets the buffers registered here.)

The ring follows the pure-Python RingBuffer policy exactly (buffers/python.py):
wrap where the last write ended (no write is split), move a small remainder to
the front instead of wrapping, grow by doubling when the largest free region is
under 1/8 of the capacity, empty span only when len == limit, rotate in place
on contiguous() when wrapped, no memory while empty (the first free_span()
allocates, the consume() that empties the ring drops the block: capacity 0).
The write buffer, too, allocates on the first append and drops its block once
everything is sent.

All kernels use cache=True.  Growth allocates the new ArrayBytes in Python
(the kernels then copy into it), so no kernel allocates except the rotation
of wrapped data in contiguous() (a temporary of the smaller span).  The write
buffer keeps its two offsets as Python ints (see NumbaWriteBuffer for why).
"""
import numpy as np
from numba import njit

from ..numba_layout import ArrayBytes
from . import DEFAULT_READ_CAPACITY, DEFAULT_READ_LIMIT, DEFAULT_WRITE_LIMIT, check_size, register

__all__ = ["NumbaRingBuffer", "NumbaWriteBuffer"]

# what an empty buffer points at: no memory of its own (never written: capacity 0)
_EMPTY_BUF = ArrayBytes(0)
_EMPTY_ARR = _EMPTY_BUF.array
_EMPTY_VIEW = memoryview(_EMPTY_BUF)

# ring state: indices into the int64 state array
HEAD, TAIL, MARK, CAP, MIN_ROOM, LIMIT = 0, 1, 2, 3, 4, 5
RING_STATE = 6



# -- ring kernels ------------------------------------------------------------------
@njit(cache=True)
def ring_len(st):
    if st[MARK]:
        return st[MARK] - st[HEAD] + st[TAIL]
    return st[TAIL] - st[HEAD]


@njit(cache=True)
def ring_reset_state(st, capacity):
    st[HEAD] = 0
    st[TAIL] = 0
    st[MARK] = 0
    st[CAP] = capacity
    st[MIN_ROOM] = max(capacity >> 3, 1)       # an empty span means full


@njit(cache=True)
def ring_free_span(st, data):
    """(lo, hi) of the largest contiguous free region, or (-1, new_capacity)
    when the caller must grow (allocate new_capacity bytes, ring_relocate into
    them, and ask again).  May move a small remainder to the front or start a
    wrap, exactly as the pure-Python ring does."""
    head = st[HEAD]
    tail = st[TAIL]
    cap = st[CAP]
    if st[MARK]:
        end = head
    else:
        end = cap
        if end - tail < head:                  # the front region is the larger one
            size = tail - head
            if size <= cap >> 2:
                for i in range(size):          # forward copy: the target is lower
                    data[i] = data[head + i]
                st[HEAD] = 0
                st[TAIL] = size
                tail = size
            else:
                st[MARK] = tail
                st[TAIL] = 0
                tail = 0
                end = head
    if end - tail >= st[MIN_ROOM]:
        return tail, end
    # the largest free region is small: grow, or at the limit linearize to
    # recover the gap; an empty span only when full
    size = ring_len(st)
    if cap < st[LIMIT]:
        return -1, min(cap * 2, st[LIMIT])
    if st[MARK] or st[HEAD]:
        room = (st[HEAD] if st[MARK] else cap) - st[TAIL]
        if cap - size > room:
            return -1, cap
    if st[MARK]:
        return st[TAIL], st[HEAD]
    return st[TAIL], cap


@njit(cache=True)
def ring_relocate(st, old, new):
    """Copy the readable bytes to the front of `new` (the new capacity is len(new))."""
    head = st[HEAD]
    tail = st[TAIL]
    mark = st[MARK]
    if mark:
        first = mark - head
        new[0:first] = old[head:mark]
        new[first:first + tail] = old[0:tail]
        size = first + tail
    else:
        size = tail - head
        new[0:size] = old[head:tail]
    ring_reset_state(st, len(new))
    st[TAIL] = size


@njit(cache=True)
def ring_commit(st, n):
    """n bytes were written at the start of the last free span; False when
    that is more than the span held."""
    tail = st[TAIL]
    end = st[HEAD] if st[MARK] else st[CAP]
    if 0 <= n <= end - tail:
        st[TAIL] = tail + n
        return True
    return False


@njit(cache=True)
def ring_unwrap(st, data):
    """Make the readable bytes one region [head, tail) (rotating in place when
    wrapped); returns (head, tail)."""
    head = st[HEAD]
    tail = st[TAIL]
    mark = st[MARK]
    if mark:
        first = mark - head
        if tail == 0:                          # nothing was written after the wrap
            st[TAIL] = mark
        elif first <= tail:
            saved = data[head:mark].copy()     # keep the smaller span aside
            for i in range(tail - 1, -1, -1):  # slide the second span up (backwards: overlap)
                data[first + i] = data[i]
            data[0:first] = saved
            st[HEAD] = 0
            st[TAIL] = first + tail
        else:
            saved = data[0:tail].copy()
            for i in range(first):             # slide the first span down (forwards)
                data[i] = data[head + i]
            data[first:first + tail] = saved
            st[HEAD] = 0
            st[TAIL] = first + tail
        st[MARK] = 0
    return st[HEAD], st[TAIL]


CONSUME_BAD, CONSUME_OK, CONSUME_EMPTIED = 0, 1, 2


@njit(cache=True)
def ring_consume(st, n):
    """Drop n readable bytes: CONSUME_OK, CONSUME_EMPTIED when nothing is left
    (the caller drops the block), CONSUME_BAD when n is negative or too large."""
    if n < 0:
        return CONSUME_BAD
    head = st[HEAD] + n
    mark = st[MARK]
    if mark:
        if head < mark:
            st[HEAD] = head
            return CONSUME_OK
        head -= mark
        if head > st[TAIL]:
            return CONSUME_BAD
        st[MARK] = 0
    elif head > st[TAIL]:
        return CONSUME_BAD
    if head == st[TAIL]:
        st[HEAD] = 0                           # empty: start over at 0, no wraps
        st[TAIL] = 0
        return CONSUME_EMPTIED
    st[HEAD] = head
    return CONSUME_OK


class NumbaRingBuffer:
    """The read side of the contract (buffers/__init__.py) over the kernels above."""

    __slots__ = ("_buf", "_arr", "_mv", "_st", "_initial", "limit")

    def __init__(self, capacity: int = DEFAULT_READ_CAPACITY, limit: int = DEFAULT_READ_LIMIT):
        capacity = check_size("capacity", capacity)
        limit = check_size("limit", limit)
        if capacity > limit:
            raise ValueError(f"capacity ({capacity}) must not exceed limit ({limit})")
        self._initial = capacity
        self.limit = limit
        self._st = np.zeros(RING_STATE, np.int64)
        self._st[LIMIT] = limit
        self._release()

    def _allocate(self, capacity):
        self._buf = ArrayBytes(capacity)
        self._arr = self._buf.array
        self._mv = memoryview(self._buf)

    def _release(self):
        """Hold no memory (the ring is empty): the next free_span() allocates.
        (A zero-capacity state makes ring_free_span ask for a block of 0 bytes
        to grow into, which free_span reads as "allocate the initial size".)"""
        self._buf, self._arr, self._mv = _EMPTY_BUF, _EMPTY_ARR, _EMPTY_VIEW
        ring_reset_state(self._st, 0)

    @property
    def capacity(self) -> int:
        return len(self._arr)

    @property
    def state(self):
        """The int64 state array (head, tail, mark, capacity, min_room, limit)
        the kernels share with the Numba loop."""
        return self._st

    @property
    def array(self):
        """The data as a numpy uint8 array (the same memory as contiguous()'s object)."""
        return self._arr

    def __len__(self) -> int:
        return ring_len(self._st)

    def __repr__(self):
        head, tail, mark, cap = self._st[:4].tolist()
        return (f"<NumbaRingBuffer len={len(self)} capacity={cap} limit={self.limit} "
                f"head={head} tail={tail} mark={mark}>")

    def free_span(self) -> memoryview:
        lo, hi = ring_free_span(self._st, self._arr)
        if lo < 0:
            old = self._arr
            self._allocate(hi or self._initial)
            ring_relocate(self._st, old, self._arr)
            lo, hi = ring_free_span(self._st, self._arr)
        return self._mv[lo:hi]

    def commit(self, n: int) -> None:
        if not ring_commit(self._st, n):
            head, tail, mark, cap = self._st[:4].tolist()
            raise ValueError(f"commit({n!r}): the free span holds {(head if mark else cap) - tail} bytes")

    def spans(self):
        head, tail, mark = self._st[:3].tolist()
        mv = self._mv
        if mark:
            return mv[head:mark], mv[0:tail]
        return mv[head:tail], mv[0:0]

    def contiguous(self):
        """(ArrayBytes, start, end): one region; rotates in place when wrapped."""
        head, tail = ring_unwrap(self._st, self._arr)
        return self._buf, head, tail

    def consume(self, n: int) -> None:
        done = ring_consume(self._st, n)
        if done == CONSUME_EMPTIED:
            self._release()                    # empty: give the memory back
        elif not done:
            raise ValueError(f"consume({n!r}): {len(self)} bytes readable")

    def reset(self) -> None:
        """Drop everything and give the memory back."""
        self._release()


# -- the write side -------------------------------------------------------------------
@njit(cache=True)
def write_move(old, pos, end, new):
    """Copy the pending bytes old[pos:end] to the front of a new, larger array."""
    new[0:end - pos] = old[pos:end]


class NumbaWriteBuffer:
    """The write side: pending responses in one ArrayBytes, sent from a
    memoryview of [pos, end).

    Unlike the ring, its state is two Python ints, not a state array driven by
    kernels: appending a response is one memcpy, which memoryview slice
    assignment already does in C, and a Numba dispatch (plus np.frombuffer for
    the source) costs more than the copy itself (the README's "How it is
    built" has what kernels for append/len cost).  Numba keeps the one bulk
    operation, the copy into a grown array; the Numba loop has its own native
    write rows."""

    __slots__ = ("_buf", "_arr", "_mv", "_pos", "_end", "limit")

    def __init__(self, limit: int = DEFAULT_WRITE_LIMIT):
        self.limit = check_size("limit", limit, minimum=0)
        self._release()

    def _release(self):
        """Nothing pending: hold no memory (the next append allocates)."""
        self._buf, self._arr, self._mv = _EMPTY_BUF, _EMPTY_ARR, _EMPTY_VIEW
        self._pos = self._end = 0

    def _new(self, capacity):
        self._buf = ArrayBytes(capacity)
        self._arr = self._buf.array        # the owner's strong reference (see ArrayBytes)
        self._mv = memoryview(self._buf)

    @property
    def array(self):
        return self._arr

    def __len__(self) -> int:
        return self._end - self._pos

    @property
    def capacity(self) -> int:
        """Bytes of memory held (0 once everything is sent)."""
        return len(self._arr)

    def __repr__(self):
        return f"<NumbaWriteBuffer pending={len(self)} limit={self.limit}>"

    def append(self, data) -> None:
        if isinstance(data, str):
            raise TypeError("append() takes bytes-like data, not str")
        n = len(data)
        end = self._end
        if end + n > len(self._mv):
            pos = self._pos
            pending = end - pos
            if pending + n <= len(self._mv) and pos >= pending:
                self._mv[0:pending] = self._mv[pos:end]      # compact in place (no overlap)
            else:
                size = max(2 * len(self._mv), 4096)
                while size < pending + n:
                    size *= 2
                old = self._arr
                self._new(size)
                write_move(old, pos, end, self._arr)
            self._pos = 0
            end = self._end = pending
        self._mv[end:end + n] = data
        self._end = end + n

    def view(self) -> memoryview:
        return self._mv[self._pos:self._end]

    def consume(self, n: int) -> None:
        pos = self._pos + n
        if n < 0 or pos > self._end:
            raise ValueError(f"consume({n!r}): {self._end - self._pos} bytes pending")
        if pos == self._end:
            self._release()                    # all sent: give the memory back
        else:
            self._pos = pos

    def over_limit(self) -> bool:
        return self._end - self._pos > self.limit

    def clear(self) -> None:
        self._release()


register("numba", NumbaRingBuffer, NumbaWriteBuffer)
