"""The Numba buffers beyond the shared contract suite: their memory is freed
without the cyclic collector (a numpy view and its bytearray must not refer to
each other both ways), and the bytes, the array and the views are one memory."""
import gc
import re
import tracemalloc

import pytest

pytest.importorskip("numba")

from kourier_lab.buffers import numba as nbuf  # noqa: E402
from kourier_lab.numba_layout import ArrayBytes  # noqa: E402


def _churn(count):
    for _ in range(count):
        rb = nbuf.NumbaRingBuffer(16384, 1 << 20)
        span = rb.free_span()
        span[:5] = b"hello"
        del span
        rb.commit(5)
        data, start, end = rb.contiguous()
        assert data.array[start] == ord("h")      # the parser's path to the array
        del data
        wb = nbuf.NumbaWriteBuffer(1 << 16)
        wb.append(b"x" * 5000)                    # grows once
        del rb, wb


def test_buffers_are_freed_without_the_cyclic_collector():
    _churn(5)
    was = gc.isenabled()
    gc.disable()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        _churn(200)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        if was:
            gc.enable()
    # a leak of one ring and one write buffer per round is ~6 MB here
    assert grown < 512 * 1024, f"{grown} bytes still allocated after 200 buffers"


def test_arraybytes_one_memory_three_views():
    ab = ArrayBytes(8)
    arr = ab.array
    assert ab.array is arr                        # kept while someone holds it
    mv = memoryview(ab)
    mv[0:3] = b"abc"
    assert arr[:3].tobytes() == b"abc" and ab.find(b"bc") == 1
    assert re.compile(rb"b(c)").search(ab).group(1) == b"c"
    del arr, mv
    assert ab.array[:3].tobytes() == b"abc"       # a fresh view once the old one is gone
