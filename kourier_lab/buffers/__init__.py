"""The buffer contract and registry.

Two objects per connection:

ReadBuffer(capacity, limit) -- a ring buffer the loop reads into without copying
    free_span() -> memoryview     the largest contiguous free span; the loop does
                                  sock.recv_into(buf.free_span()) into it.  When the
                                  buffer is full it grows (doubling) up to `limit`;
                                  at the limit, the span is empty (len 0).
    commit(n)                     n bytes were written into the last free span
    spans() -> (mv1, mv2)         readable bytes as one or two contiguous spans
                                  (mv2 is empty unless the data wraps)
    contiguous() -> (obj, start, end)
                                  the readable bytes as ONE contiguous region
                                  obj[start:end] of a bytes-like object that
                                  supports find/re (bytearray for the Python
                                  variant).  If the data wraps, the buffer first
                                  rotates it (one copy, rare: only when a request
                                  straddles the wrap point).
    consume(n)                    drop n bytes from the front
    __len__()                     readable bytes
    capacity, limit               bytes of memory held now / growth limit
    reset()                       drop everything and give the memory back

    Memory (every variant): none while empty.  The first free_span() of an
    empty buffer allocates `capacity` bytes (the constructor's argument); when
    the largest free span falls under 1/8 of the block it grows by doubling,
    never past `limit`; the consume() that empties it (or reset()) drops the
    block, so capacity is 0 again.  An idle keep-alive connection therefore
    holds no buffer memory, and one that grew for a big request gives it all
    back once that request is answered.

WriteBuffer(limit) -- gathers the responses to one read for one send
    append(data: bytes)           queue bytes (never copies per append in the hot path
                                  beyond what the variant documents)
    view() -> memoryview          the pending bytes, contiguous, for sock.send()
    consume(n)                    n bytes were sent
    __len__()                     pending bytes
    over_limit() -> bool          pending > limit: the loop stops reading (backpressure)
    capacity                      bytes of memory held: 0 once everything is sent

Registry:  buffers.create_read(name, capacity, limit), buffers.create_write(name, limit),
           buffers.names().  Each variant module registers a pair with
           register(name, read_factory, write_factory).
"""
from typing import Callable

from ..registry import Registry

DEFAULT_READ_CAPACITY = 16384
DEFAULT_READ_LIMIT = 1 << 22
DEFAULT_WRITE_LIMIT = 1 << 20

READ_INTERFACE = ("free_span", "commit", "spans", "contiguous", "consume", "__len__", "reset")
WRITE_INTERFACE = ("append", "view", "consume", "__len__", "over_limit")


def _adapt_user_buffer(obj, spec):
    """What a user's buffer spec names -> (read_factory, write_factory): an
    object (class or module) with ReadBuffer and WriteBuffer attributes, or a
    (read_factory, write_factory) pair.  One of each is made here so that a
    missing method is reported by name."""
    from ..registry import VariantError, require_methods
    if isinstance(obj, tuple) and len(obj) == 2:
        read, write = obj
    else:
        read, write = getattr(obj, "ReadBuffer", None), getattr(obj, "WriteBuffer", None)
        if read is None or write is None:
            raise VariantError(f"buffer {spec!r}: needs ReadBuffer and WriteBuffer attributes "
                               f"(a class or module holding both) or a (read, write) pair")
    try:
        rb, wb = read(DEFAULT_READ_CAPACITY, DEFAULT_READ_LIMIT), write(DEFAULT_WRITE_LIMIT)
    except Exception as e:
        raise VariantError(f"buffer {spec!r}: creating it raised {type(e).__name__}: {e}") from None
    require_methods(rb, f"buffer {spec!r} ReadBuffer", READ_INTERFACE, "ReadBuffer")
    require_methods(wb, f"buffer {spec!r} WriteBuffer", WRITE_INTERFACE, "WriteBuffer")
    return read, write


_REGISTRY = Registry("buffer", __name__, ("python", "c", "numba"), adapt=_adapt_user_buffer,
                     recheck_s=1.0)
available, names, unavailable, source = (_REGISTRY.available, _REGISTRY.names, _REGISTRY.unavailable,
                                         _REGISTRY.source)


def check_size(what, value, minimum=1):
    """A buffer size argument: an int >= minimum (TypeError / ValueError otherwise)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {value}")
    return value


def register(name: str, read_factory: Callable, write_factory: Callable) -> None:
    _REGISTRY.register(name, (read_factory, write_factory))


def create_read(name: str, capacity: int = DEFAULT_READ_CAPACITY, limit: int = DEFAULT_READ_LIMIT):
    return _REGISTRY.get(name)[0](capacity, limit)


def create_write(name: str, limit: int = DEFAULT_WRITE_LIMIT):
    return _REGISTRY.get(name)[1](limit)
