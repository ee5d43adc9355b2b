"""The C buffer variant: native/ringbuffer.c through cffi (module kourier_lab._native_loop).

The ring and the write buffer keep their state (positions, capacity, limit)
in C structs and do their moves in C (sliding, growth copies, appends).  The
memory itself is a Python bytearray handed to C by address, for two reasons:
  * contiguous() returns that bytearray, zero-copy: the parsers use
    ``.find``/``.startswith``/``re`` on it, which a cffi buffer or memoryview
    does not offer (the alternative, ``bytes(view)``, copies all readable
    bytes on every call);
  * a view handed out earlier keeps its bytearray alive, so a stale view is
    never a dangling pointer, as in the Python variant.
The C loop uses the same C functions on malloc'd memory.

Read side: the readable bytes are always ONE span (spans() returns an empty
second span): instead of wrapping, the ring slides the small remainder to the
front when the room at the end falls under 1/8 of the capacity, and grows by
doubling up to the limit.  Why not the memfd double mapping is explained in
native/ringbuffer.c.  Like every variant it holds no memory while empty: the
first free_span() allocates ``capacity`` bytes, the consume() that empties it
drops them (capacity 0); the write buffer drops its block once all is sent.
"""
from . import DEFAULT_READ_CAPACITY, DEFAULT_READ_LIMIT, DEFAULT_WRITE_LIMIT, check_size, register

try:
    from .._native_loop import ffi, lib
except ImportError as e:  # pragma: no cover - depends on the build
    raise ImportError(f"the C buffer needs the compiled module kourier_lab._native_loop "
                      f"(build it: python native/build_loop.py, or pip install -e .): {e}") from None

__all__ = ["RingBuffer", "WriteBuffer"]

_EMPTY = memoryview(b"")
_EMPTY_ARRAY = bytearray()          # what an empty buffer points at (never written: capacity 0)
# Blocks of a ring's initial capacity given back when it empties, re-used by
# the next ring of this process that needs one (as buffers/python.py does):
# no new block per keep-alive request, no memory held by an idle connection.
SPARE_MAX = 16
_spare = []                         # (bytearray, its memoryview, its cdata)
# the same for the write side's first block (kl_wbuf_want's smallest)
WRITE_BLOCK = 4096
_spare_write = []                   # (bytearray, its cdata)



class RingBuffer:
    """The read side (see the contract in kourier_lab.buffers)."""

    __slots__ = ("_r", "_buf", "_mv", "_cdata", "_initial")

    def __init__(self, capacity: int = DEFAULT_READ_CAPACITY, limit: int = DEFAULT_READ_LIMIT):
        check_size("capacity", capacity)
        check_size("limit", limit)
        if capacity > limit:
            raise ValueError(f"capacity ({capacity}) must not exceed limit ({limit})")
        self._initial = capacity
        self._r = ffi.new("kl_ring *")
        self._r.limit = limit
        self._buf = _EMPTY_ARRAY
        self._release()

    def _adopt(self, capacity):
        if _spare and len(_spare[-1][0]) == capacity:
            self._buf, self._mv, self._cdata = _spare.pop()
            return
        self._buf = bytearray(capacity)
        self._mv = memoryview(self._buf)
        self._cdata = ffi.from_buffer("uint8_t[]", self._buf)

    def _release(self):
        """Hold no memory (the ring is empty); the next free_span() allocates."""
        self._drop()
        lib.kl_ring_drop(self._r)

    def _drop(self):
        buf = self._buf
        if buf is not _EMPTY_ARRAY and len(buf) == self._initial and len(_spare) < SPARE_MAX:
            _spare.append((buf, self._mv, self._cdata))
        self._buf = _EMPTY_ARRAY
        self._mv = _EMPTY
        self._cdata = ffi.NULL

    @property
    def capacity(self) -> int:
        return self._r.cap

    @property
    def limit(self) -> int:
        return self._r.limit

    def __len__(self) -> int:
        r = self._r
        return r.tail - r.head

    def __repr__(self):
        r = self._r
        return f"<c.RingBuffer len={r.tail - r.head} capacity={r.cap} limit={r.limit} head={r.head}>"

    def free_span(self) -> memoryview:
        r = self._r
        if self._buf is _EMPTY_ARRAY:    # no memory (what kl_ring_done and _release leave)
            self._adopt(self._initial)
            lib.kl_ring_adopt(r, self._cdata, self._initial)
            return self._mv
        want = lib.kl_ring_want(r)
        if want:
            old = self._buf          # alive until its bytes are copied
            self._adopt(want)
            lib.kl_ring_move(r, self._cdata, want)
            del old
        return self._mv[r.tail:r.cap]

    def commit(self, n: int) -> None:
        if n < 0 or lib.kl_ring_commit(self._r, n):
            r = self._r
            raise ValueError(f"commit({n!r}): the free span holds {r.cap - r.tail} bytes")

    def spans(self):
        r = self._r
        return self._mv[r.head:r.tail], _EMPTY

    def contiguous(self):
        r = self._r
        return self._buf, r.head, r.tail

    def consume(self, n: int) -> None:
        done = lib.kl_ring_done(self._r, n) if n >= 0 else -1
        if done:
            if done < 0:
                raise ValueError(f"consume({n!r}): {len(self)} bytes readable")
            self._drop()            # emptied (C let go of the block): give the memory back

    def reset(self) -> None:
        """Drop everything and give the memory back."""
        self._release()


class WriteBuffer:
    """The write side: responses to one read gathered for one send."""

    __slots__ = ("_w", "_buf", "_cdata")

    def __init__(self, limit: int = DEFAULT_WRITE_LIMIT):
        check_size("limit", limit, minimum=0)
        self._w = ffi.new("kl_wbuf *")
        self._buf = bytearray()
        self._cdata = ffi.NULL
        lib.kl_wbuf_init(self._w, ffi.NULL, 0, limit)

    @property
    def limit(self) -> int:
        return self._w.limit

    def __len__(self) -> int:
        w = self._w
        return w.end - w.start

    @property
    def capacity(self) -> int:
        """Bytes of memory held (0 once everything is sent)."""
        return self._w.cap

    def __repr__(self):
        return f"<c.WriteBuffer pending={len(self)} limit={self._w.limit}>"

    def append(self, data) -> None:
        if type(data) is bytes:     # cffi passes bytes to a char * as they are
            src = data
        elif isinstance(data, str):
            raise TypeError("a WriteBuffer takes bytes-like objects, not str")
        else:
            src = ffi.from_buffer(data)
        n = len(src)
        w = self._w
        want = lib.kl_wbuf_append(w, src, n)     # appended unless a bigger block is needed
        if want:
            # a new bytearray: a view still held keeps the old one alive
            old = self._buf          # alive until its bytes are copied
            if want == WRITE_BLOCK and _spare_write:
                self._buf, self._cdata = _spare_write.pop()
            else:
                self._buf = bytearray(want)
                self._cdata = ffi.from_buffer("uint8_t[]", self._buf)
            lib.kl_wbuf_grow_put(w, self._cdata, want, src, n)
            del old

    def _release(self):
        self._drop()
        lib.kl_wbuf_drop(self._w)

    def _drop(self):
        buf = self._buf
        if len(buf) == WRITE_BLOCK and len(_spare_write) < SPARE_MAX:
            _spare_write.append((buf, self._cdata))
        self._buf = _EMPTY_ARRAY
        self._cdata = ffi.NULL

    def view(self) -> memoryview:
        w = self._w
        return memoryview(self._buf)[w.start:w.end]

    def consume(self, n: int) -> None:
        sent = lib.kl_wbuf_sent(self._w, n) if n >= 0 else -1
        if sent:
            if sent < 0:
                raise ValueError(f"consume({n!r}): {len(self)} bytes pending")
            self._drop()            # all sent (C let go of the block): give the memory back

    def over_limit(self) -> bool:
        w = self._w
        return w.end - w.start > w.limit

    def clear(self) -> None:
        """Drop everything pending (the connection is closing)."""
        self._release()


register("c", RingBuffer, WriteBuffer)
