"""The buffer contract, checked for every registered buffer variant.

Model-based: a hypothesis state machine drives a ReadBuffer / WriteBuffer with
random operations and compares it after every step with a plain ``bytes`` model,
including the memory rules: no memory while empty, growth by doubling from the
initial capacity up to the limit and never past it, everything given back when
the buffer empties.  New variants (C, Numba) join by registering in
kourier_lab.buffers.
"""
import socket

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition,
                                 rule, run_state_machine_as_test)

from kourier_lab import buffers

VARIANTS = buffers.names()

MACHINE_SETTINGS = settings(max_examples=120, stateful_step_count=60, deadline=None,
                            suppress_health_check=[HealthCheck.too_slow])


def _write(rb, data):
    """The loop's pattern: take the free span, fill (part of) it, commit, drop the view."""
    span = rb.free_span()
    room = len(span)
    k = min(room, len(data))
    span[:k] = data[:k]
    del span
    rb.commit(k)
    return room, k


def _readable(rb):
    first, second = rb.spans()
    return bytes(first) + bytes(second)


def read_machine(variant):
    class ReadBufferMachine(RuleBasedStateMachine):
        @initialize(capacity=st.integers(1, 64), extra=st.integers(0, 256))
        def create(self, capacity, extra):
            self.initial = capacity
            self.limit = capacity + extra
            self.rb = buffers.create_read(variant, capacity, self.limit)
            self.model = b""
            self.counter = 0
            # the sizes growth may reach: initial x 2^k, and the limit itself
            self.sizes = {self.limit}
            size = capacity
            while size < self.limit:
                self.sizes.add(size)
                size *= 2
            assert self.rb.capacity == 0, "a new buffer holds no memory"

        def fresh(self, size):
            # Distinct-looking bytes (a running counter), so that a rotation or
            # compaction that puts bytes in the wrong order cannot go unnoticed.
            start = self.counter
            self.counter += size
            return bytes((start + i) % 251 for i in range(size))

        @rule(size=st.integers(0, 100))
        def write(self, size):
            data = self.fresh(size)
            room, k = _write(self.rb, data)
            # The span is empty exactly when the buffer holds `limit` bytes.
            assert (room == 0) == (len(self.model) == self.limit)
            if not self.model:
                # An empty buffer offers all of its capacity (it restarts at 0).
                assert room == self.rb.capacity
            self.model += data[:k]

        @rule(size=st.integers(1, 64), short=st.integers(1, 64))
        def short_read(self, size, short):
            # recv_into filled less than it was offered.
            data = self.fresh(size)
            span = self.rb.free_span()
            k = min(len(span), len(data), short)
            span[:k] = data[:k]
            del span
            self.rb.commit(k)
            self.model += data[:k]

        @rule()
        def fill_to_limit(self):
            for _ in range(self.limit + 2):
                data = self.fresh(97)
                room, k = _write(self.rb, data)
                if room == 0:
                    break
                self.model += data[:k]
            assert len(self.rb) == self.limit
            assert self.rb.capacity == self.limit
            assert len(self.rb.free_span()) == 0

        @rule(extra=st.integers(1, 10))
        def commit_too_much(self, extra):
            span = self.rb.free_span()
            room = len(span)
            del span
            with pytest.raises(ValueError):
                self.rb.commit(room + extra)

        @rule(data=st.data())
        def consume(self, data):
            n = data.draw(st.integers(0, len(self.model)))
            self.rb.consume(n)
            self.model = self.model[n:]

        @rule(keep=st.integers(0, 40), size=st.integers(1, 120), whole=st.booleans())
        def parse_leaving_a_remainder(self, keep, size, whole):
            # The pipelined pattern: read, parse all complete requests, keep a
            # partial one (`keep` bytes) for the next read.  Drives compaction
            # and wrapping.  A parser reads either one contiguous region (the
            # Python parser) or the two spans.
            data = self.fresh(size)
            _room, k = _write(self.rb, data)
            self.model += data[:k]
            if whole:
                obj, start, end = self.rb.contiguous()
                assert bytes(obj[start:end]) == self.model
            else:
                assert _readable(self.rb) == self.model
            n = max(0, len(self.model) - keep)
            self.rb.consume(n)
            self.model = self.model[n:]

        @rule()
        def consume_all(self):
            self.rb.consume(len(self.model))
            self.model = b""
            assert self.rb.capacity == 0, "an emptied buffer gives its memory back"

        @rule(extra=st.integers(1, 10))
        def consume_too_much(self, extra):
            with pytest.raises(ValueError):
                self.rb.consume(len(self.model) + extra)

        @rule()
        def consume_negative(self):
            with pytest.raises(ValueError):
                self.rb.consume(-1)

        @rule()
        def check_spans(self):
            first, second = self.rb.spans()
            if len(second):
                assert len(first), "the second span is used only when the first is not empty"
            assert bytes(first) + bytes(second) == self.model

        @rule(data=st.data())
        def check_contiguous(self, data):
            obj, start, end = self.rb.contiguous()
            assert bytes(obj[start:end]) == self.model
            if self.model:
                # The region supports find() the way the parser uses it.
                i = data.draw(st.integers(0, len(self.model) - 1))
                needle = self.model[i:i + 2]
                assert obj.find(needle, start, end) - start == self.model.find(needle)

        @rule()
        def reset(self):
            self.rb.reset()
            self.model = b""
            assert self.rb.capacity == 0
            assert len(self.rb.free_span()) == self.initial   # allocated again, at the initial size

        @invariant()
        def matches_model(self):
            assert len(self.rb) == len(self.model)
            assert self.rb.limit == self.limit
            assert _readable(self.rb) == self.model

        @invariant()
        def memory_is_bounded(self):
            cap = self.rb.capacity
            if self.model:
                assert cap in self.sizes, f"capacity {cap}: not initial x 2^k nor the limit"
            else:
                # empty: no memory, or the fresh initial block of a free_span()
                assert cap in (0, self.initial)

    ReadBufferMachine.__name__ = f"ReadBufferMachine_{variant}"
    return ReadBufferMachine


def write_machine(variant):
    class WriteBufferMachine(RuleBasedStateMachine):
        @initialize(limit=st.integers(0, 512))
        def create(self, limit):
            self.limit = limit
            self.wb = buffers.create_write(variant, limit)
            self.model = b""
            assert self.wb.capacity == 0, "a new write buffer holds no memory"

        @rule(data=st.binary(max_size=200))
        def append(self, data):
            self.wb.append(data)
            self.model += data

        @rule(data=st.binary(max_size=50))
        def append_while_holding_a_view(self, data):
            held = self.wb.view()
            before = bytes(held)
            self.wb.append(data)
            self.model += data
            assert before == self.model[:len(before)]

        @rule(data=st.data())
        def send_some(self, data):
            view = self.wb.view()
            assert bytes(view) == self.model
            n = data.draw(st.integers(0, len(view)))
            del view
            self.wb.consume(n)
            self.model = self.model[n:]

        @rule(extra=st.integers(1, 10))
        def consume_too_much(self, extra):
            with pytest.raises(ValueError):
                self.wb.consume(len(self.model) + extra)

        @invariant()
        def matches_model(self):
            assert len(self.wb) == len(self.model)
            assert bytes(self.wb.view()) == self.model
            assert self.wb.over_limit() == (len(self.model) > self.limit)

        @invariant()
        def memory_follows_pending(self):
            assert self.wb.capacity >= len(self.model)
            if not self.model:
                assert self.wb.capacity == 0, "everything sent: the memory is given back"

    WriteBufferMachine.__name__ = f"WriteBufferMachine_{variant}"
    return WriteBufferMachine


@pytest.mark.parametrize("variant", VARIANTS)
def test_read_buffer_matches_bytes_model(variant):
    run_state_machine_as_test(read_machine(variant), settings=MACHINE_SETTINGS)


@pytest.mark.parametrize("variant", VARIANTS)
def test_write_buffer_matches_bytes_model(variant):
    run_state_machine_as_test(write_machine(variant), settings=MACHINE_SETTINGS)


# -- examples -----------------------------------------------------------------

def test_python_variant_is_registered():
    assert "python" in VARIANTS


@pytest.mark.parametrize("variant", VARIANTS)
def test_recv_into_from_a_socketpair_pipelined(variant):
    """Pipelined requests arrive in arbitrary chunks; the loop's read/parse/consume
    cycle recovers every one of them, in order, while the buffer grows as needed."""
    requests = [b"GET /%d HTTP/1.1\r\nHost: x\r\n%s\r\n" % (i, b"X-Pad: " + b"p" * (i % 300) + b"\r\n")
                for i in range(2000)]
    stream = b"".join(requests)
    a, b = socket.socketpair()
    rb = buffers.create_read(variant, 64, 4096)
    got = []
    try:
        a.setblocking(False)
        b.setblocking(False)
        sent = 0
        for _ in range(100_000):  # bounded: a corrupting buffer must fail, not hang
            if len(got) >= len(requests):
                break
            if sent < len(stream):
                try:
                    sent += a.send(stream[sent:sent + 777])
                except BlockingIOError:
                    pass
            span = rb.free_span()
            assert len(span) > 0
            try:
                n = b.recv_into(span, min(len(span), 1000))
            except BlockingIOError:
                n = 0
            del span
            rb.commit(n)
            data, start, end = rb.contiguous()
            pos = start
            while True:
                stop = data.find(b"\r\n\r\n", pos, end)
                if stop < 0:
                    break
                got.append(bytes(data[pos:stop + 4]))
                pos = stop + 4
            rb.consume(pos - start)
    finally:
        a.close()
        b.close()
    assert got == requests
    assert len(rb) == 0
    assert rb.capacity == 0


@pytest.mark.parametrize("variant", VARIANTS)
def test_empty_span_at_the_limit(variant):
    rb = buffers.create_read(variant, 8, 32)
    for _ in range(10):
        _write(rb, b"z" * 100)
    assert len(rb) == 32 and rb.capacity == 32
    assert len(rb.free_span()) == 0
    rb.commit(0)
    rb.consume(5)
    assert len(rb.free_span()) == 5
    rb.reset()
    assert len(rb) == 0 and rb.capacity == 0
    assert len(rb.free_span()) == 8 and rb.capacity == 8


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_held_view_does_not_block_growth(variant):
    """A view kept past its validity must not make the buffer fail (BufferError)."""
    rb = buffers.create_read(variant, 16, 1024)
    stale = rb.free_span()
    stale[:16] = b"a" * 16
    rb.commit(16)
    first, second = rb.spans()
    for _ in range(40):  # forces growth while `stale`, `first`, `second` are alive
        _write(rb, b"b")
    assert _readable(rb) == b"a" * 16 + b"b" * 40
    rb.reset()
    assert len(rb) == 0
    del stale, first, second


@pytest.mark.parametrize("variant", VARIANTS)
def test_wrapped_data_is_rotated_by_contiguous(variant):
    rb = buffers.create_read(variant, 16, 16)
    _write(rb, b"0123456789ABCDEF")
    rb.consume(6)                 # 10 bytes left at the end, 6 free at the front
    _write(rb, b"ghijkl")         # wraps (or, for some variants, compacts)
    assert _readable(rb) == b"6789ABCDEFghijkl"
    data, start, end = rb.contiguous()
    assert bytes(data[start:end]) == b"6789ABCDEFghijkl"
    assert _readable(rb) == b"6789ABCDEFghijkl"


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_small_layout(variant):
    """Exhaustive over a tiny ring: fill f bytes, consume c, write w, consume d,
    write v; after each step the spans and contiguous() match the model.  Covers
    every wrap / compaction / rotation / growth branch deterministically."""
    counter = 0

    def fresh(size):
        nonlocal counter
        counter += size
        return bytes((counter - size + i) % 251 for i in range(size))

    for limit in (8, 16):
        for f in range(1, 9):
            for c in range(0, f + 1):
                for w in range(0, 10):
                    for d in (0, 1, 3):
                        for v in (0, 1, 5):
                            rb = buffers.create_read(variant, 8, limit)
                            model = b""
                            for op, n in (("w", f), ("c", c), ("w", w), ("c", d), ("w", v)):
                                if op == "w":
                                    data = fresh(n)
                                    room, k = _write(rb, data)
                                    if not model:
                                        assert room == rb.capacity, (limit, f, c, w, d, v)
                                    model += data[:k]
                                else:
                                    n = min(n, len(model))
                                    rb.consume(n)
                                    model = model[n:]
                                assert _readable(rb) == model, (limit, f, c, w, d, v, op)
                            obj, start, end = rb.contiguous()
                            assert bytes(obj[start:end]) == model, (limit, f, c, w, d, v)
                            assert _readable(rb) == model


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("capacity, limit", [(0, 16), (-1, 16), (32, 16)])
def test_bad_sizes_are_refused(variant, capacity, limit):
    with pytest.raises(ValueError):
        buffers.create_read(variant, capacity, limit)


@pytest.mark.parametrize("variant", VARIANTS)
def test_write_buffer_refuses_str(variant):
    wb = buffers.create_write(variant, 100)
    with pytest.raises(TypeError):
        wb.append("text")
    assert len(wb) == 0


@pytest.mark.parametrize("variant", VARIANTS)
def test_write_buffer_long_backlog(variant):
    """A large backlog drained by partial sends stays exact."""
    wb = buffers.create_write(variant, 1 << 16)
    chunks = [bytes([i % 256]) * 1000 for i in range(300)]
    for c in chunks:
        wb.append(c)
    expected = b"".join(chunks)
    assert wb.over_limit()
    sent = 0
    for step in (1, 99_999, 70_001, 3, 50_000, 17):
        wb.consume(step)
        sent += step
        assert bytes(wb.view()) == expected[sent:]
        wb.append(b"!")
        expected += b"!"
    assert len(wb) == len(expected) - sent
    wb.consume(len(wb))
    assert len(wb) == 0 and bytes(wb.view()) == b"" and not wb.over_limit()


@pytest.mark.parametrize("variant", VARIANTS)
def test_write_buffer_partial_sends_over_a_socketpair(variant):
    """Many pipelined responses, sent through a small non-blocking socket with
    partial sends, arrive complete and in order."""
    responses = [b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (i % 50, b"r" * (i % 50))
                 for i in range(3000)]
    expected = b"".join(responses)
    a, b = socket.socketpair()
    wb = buffers.create_write(variant, 1 << 12)
    received = bytearray()
    try:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        a.setblocking(False)
        b.setblocking(False)
        it = iter(responses)
        done = False
        for _ in range(1_000_000):  # bounded: fail, never hang
            if done and not len(wb):
                break
            while not done and not wb.over_limit():
                r = next(it, None)
                if r is None:
                    done = True
                else:
                    wb.append(r)
            if len(wb):
                try:
                    wb.consume(a.send(wb.view()))
                except BlockingIOError:
                    pass
            try:
                received += b.recv(65536)
            except BlockingIOError:
                pass
        a.shutdown(socket.SHUT_WR)
        b.setblocking(True)
        while True:
            chunk = b.recv(65536)
            if not chunk:
                break
            received += chunk
    finally:
        a.close()
        b.close()
    assert bytes(received) == expected


# -- memory: what an idle connection and a big request cost -----------------------

@pytest.mark.parametrize("variant", VARIANTS)
def test_idle_keep_alive_buffers_hold_no_memory(variant):
    """The life of a keep-alive connection: a request read and answered, the
    response sent; between requests neither buffer holds memory."""
    rb = buffers.create_read(variant, 16384, 1 << 20)
    wb = buffers.create_write(variant, 1 << 20)
    assert rb.capacity == 0 and wb.capacity == 0
    for _ in range(3):
        _write(rb, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert rb.capacity == 16384
        rb.consume(len(rb))
        wb.append(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        assert wb.capacity > 0
        wb.consume(len(wb))
        assert rb.capacity == 0 and wb.capacity == 0


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_big_pending_request_grows_to_the_limit_and_gives_it_back(variant):
    """A request that arrives slowly in small pieces: the ring doubles as it
    grows, stops at the limit (empty span: the loop stops reading) and, once
    the request is consumed, holds nothing again."""
    initial, limit = 256, 8192 + 1000            # the limit need not be a power of two
    rb = buffers.create_read(variant, initial, limit)
    seen = []
    while True:
        room, k = _write(rb, b"h" * 100)
        if room == 0:
            break
        if rb.capacity not in seen:
            seen.append(rb.capacity)
    assert len(rb) == limit and rb.capacity == limit
    assert seen == [256, 512, 1024, 2048, 4096, 8192, limit]
    rb.consume(limit - 10)
    assert 0 < rb.capacity <= limit
    rb.consume(10)
    assert rb.capacity == 0


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_slow_reader_backlog_is_given_back(variant):
    """Output the client does not read piles up (the loop pauses reading past
    the limit); once it is all sent, the write buffer holds nothing."""
    wb = buffers.create_write(variant, 1 << 16)
    chunk = b"r" * 1000
    while not wb.over_limit():
        wb.append(chunk)
    held = wb.capacity
    assert len(wb) <= held <= 4 * len(wb) + 4096
    while len(wb):
        wb.consume(min(len(wb), 3000))
    assert wb.capacity == 0
