"""The timer wheel against a plain model, with a fake clock.

Properties, after every advance(now):
* every returned connection was scheduled, had deadline <= now, and is returned once;
* every scheduled connection with deadline + tick <= now has been returned;
* next_timeout() never points past a timer's latest firing time (deadline + tick).
Clock values are multiples of 1/64 s and ticks are powers of two, so the float
arithmetic is exact and the bounds can be checked without tolerance.
"""
import math
import tracemalloc

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from kourier_lab.loops.timer_wheel import TimerWheel


class Conn:
    __slots__ = ("name", "timer_deadline", "timer_slot")

    def __init__(self, name):
        self.name = name
        self.timer_deadline = None
        self.timer_slot = None

    def __repr__(self):
        return f"Conn({self.name})"


# Time offsets in 1/64 s units: from the past to several wheel revolutions ahead.
OFFSETS = st.integers(-200, 4000).map(lambda u: u / 64)
STEPS = st.integers(0, 400).map(lambda u: u / 64)


class TimerWheelMachine(RuleBasedStateMachine):
    @initialize(tick_exp=st.integers(-4, 1), slots=st.integers(1, 16), start=st.integers(0, 10 ** 6))
    def create(self, tick_exp, slots, start):
        self.tick = 2.0 ** tick_exp
        self.now = start / 64
        self.wheel = TimerWheel(tick=self.tick, slots=slots, now=self.now)
        self.conns = [Conn(i) for i in range(8)]
        self.model = {}  # conn index -> deadline

    @rule(i=st.integers(0, 7), offset=OFFSETS)
    def schedule(self, i, offset):
        self.wheel.schedule(self.conns[i], self.now + offset)
        self.model[i] = self.now + offset

    @rule(i=st.integers(0, 7), offset=OFFSETS)
    def reset(self, i, offset):
        self.wheel.reset(self.conns[i], self.now + offset)
        self.model[i] = self.now + offset

    @rule(i=st.integers(0, 7), offset=OFFSETS, times=st.integers(1, 5), step=STEPS)
    def reset_repeatedly(self, i, offset, times, step):
        # Keep-alive traffic: the deadline moves forward request after request.
        for t in range(times):
            self.wheel.reset(self.conns[i], self.now + offset + t * step)
        self.model[i] = self.now + offset + (times - 1) * step

    @rule(i=st.integers(0, 7))
    def cancel(self, i):
        self.wheel.cancel(self.conns[i])
        self.model.pop(i, None)

    @rule(step=STEPS)
    def advance(self, step):
        self.now += step
        self.check_advance()

    def check_advance(self):
        expired = self.wheel.advance(self.now)
        names = [c.name for c in expired]
        assert len(names) == len(set(names)), "a timer fired twice"
        for name in names:
            assert name in self.model, f"{name} fired but was not scheduled"
            assert self.model[name] <= self.now, "fired before its deadline"
            assert self.conns[name].timer_slot is None
            del self.model[name]
        for name, deadline in self.model.items():
            assert deadline + self.tick > self.now, f"{name} is more than one tick late"

    @rule(fraction=st.integers(0, 63))
    def sleep_as_told(self, fraction):
        # The loop sleeps next_timeout() seconds (or is woken earlier by I/O).
        # The wait must not make any timer late; a timer sharing a bucket with
        # an earlier tick may fire before the wait ends, but never before its
        # deadline (check_advance checks both).
        wait = self.wheel.next_timeout(self.now)
        if wait is None:
            assert not self.model
            return
        assert wait >= 0
        earliest = min(self.model.values())
        assert self.now + wait <= max(self.now, earliest + self.tick), "next_timeout is too late"
        start = self.now
        if wait > 0 and fraction:
            self.now = start + wait * fraction / 64
            self.check_advance()
        self.now = start + wait
        self.check_advance()

    @invariant()
    def matches_model(self):
        assert len(self.wheel) == len(self.model)
        for i, c in enumerate(self.conns):
            assert (c.timer_slot is not None) == (i in self.model)
            if i in self.model:
                assert c.timer_deadline == self.model[i]


def test_wheel_matches_model():
    run_state_machine_as_test(
        TimerWheelMachine,
        settings=settings(max_examples=300, stateful_step_count=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow]))


def test_deadlines_beyond_one_revolution():
    # 8 slots of 0.1 s: one revolution is 0.8 s; a 5.05 s timer laps it six times.
    wheel = TimerWheel(tick=0.1, slots=8, now=100.0)
    far, near = Conn("far"), Conn("near")
    wheel.schedule(far, 105.05)
    wheel.schedule(near, 100.25)
    fired = {}
    now = 100.0
    while now < 106:
        now = round(now + 0.05, 2)
        for c in wheel.advance(now):
            fired[c.name] = now
    assert fired["near"] >= 100.25 and fired["near"] <= 100.25 + 0.1 + 1e-9
    assert fired["far"] >= 105.05 and fired["far"] <= 105.05 + 0.1 + 1e-9
    assert len(wheel) == 0


def test_reset_to_an_earlier_deadline_fires_on_time():
    wheel = TimerWheel(tick=0.1, slots=64, now=0.0)
    c = Conn("c")
    wheel.schedule(c, 5.0)
    wheel.reset(c, 0.3)
    assert wheel.advance(0.25) == []
    assert wheel.advance(0.41) == [c]


def test_reset_forward_moves_firing_later():
    wheel = TimerWheel(tick=0.1, slots=64, now=0.0)
    c = Conn("c")
    wheel.schedule(c, 0.5)
    for i in range(100):
        wheel.reset(c, 0.5 + i * 0.01)  # the deadline ends at 1.49
    assert wheel.advance(1.0) == []
    assert wheel.advance(1.48) == []
    assert wheel.advance(1.6) == [c]
    assert c.timer_slot is None and len(wheel) == 0


def test_reset_schedules_an_unscheduled_conn_and_cancel_is_idempotent():
    wheel = TimerWheel(tick=0.25, slots=4, now=0.0)
    c = Conn("c")
    wheel.reset(c, 1.0)
    assert len(wheel) == 1
    wheel.cancel(c)
    wheel.cancel(c)
    assert len(wheel) == 0 and c.timer_slot is None
    assert wheel.advance(10.0) == []
    assert wheel.next_timeout(10.0) is None


def test_past_deadline_fires_at_the_next_advance():
    wheel = TimerWheel(tick=0.5, slots=4, now=10.0)
    c = Conn("c")
    wheel.schedule(c, 3.0)
    assert wheel.next_timeout(10.0) == 0.0
    assert wheel.advance(10.0) == [c]


def test_long_pause_visits_every_bucket_once():
    wheel = TimerWheel(tick=0.1, slots=16, now=0.0)
    conns = [Conn(i) for i in range(100)]
    for i, c in enumerate(conns):
        wheel.schedule(c, 0.05 + i * 0.37)
    expired = wheel.advance(1000.0)
    assert sorted(c.name for c in expired) == list(range(100))
    assert len(wheel) == 0


def test_next_timeout_points_at_the_filed_tick():
    wheel = TimerWheel(tick=0.1, slots=1024, now=0.0)
    c = Conn("c")
    assert wheel.next_timeout(0.0) is None
    wheel.schedule(c, 60.0)  # an idle timeout: 600 ticks ahead
    assert wheel.next_timeout(0.0) == pytest.approx(60.0)
    assert wheel.next_timeout(30.0) == pytest.approx(30.0)
    wheel.cancel(c)
    assert wheel.next_timeout(30.0) is None


def test_forward_reset_is_lazy_and_keeps_nothing():
    """Moving a deadline later only stores it: the filing is untouched and no
    memory is retained (transient allocations are not visible here; the
    code path has none -- see reset())."""
    wheel = TimerWheel(tick=0.1, slots=1024, now=0.0)
    conns = [Conn(i) for i in range(64)]
    for c in conns:
        wheel.schedule(c, 10.0)
    deadlines = [10.0 + i / 1000 for i in range(2000)]  # created before measuring
    filings = [c.timer_slot for c in conns]
    reset = wheel.reset
    for d in deadlines[:100]:  # warm up (specialization, caches)
        for c in conns:
            reset(c, d)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for d in deadlines:
            for c in conns:
                reset(c, d)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = [s for s in after.compare_to(before, "filename")
             if s.size_diff > 0 and "timer_wheel" in str(s.traceback)]
    assert grown == []
    assert all(c.timer_slot is f for c, f in zip(conns, filings))
    assert all(c.timer_deadline == deadlines[-1] for c in conns)
    assert wheel.advance(deadlines[-1] - 0.2) == []
    assert len(wheel.advance(deadlines[-1] + 0.1)) == 64


@pytest.mark.parametrize("kwargs", [dict(tick=0), dict(tick=-1), dict(tick=math.nan),
                                    dict(tick=math.inf), dict(slots=0), dict(slots=2.5),
                                    dict(now=math.nan)])
def test_bad_construction_is_refused(kwargs):
    with pytest.raises(ValueError):
        TimerWheel(**{"tick": 0.1, "slots": 8, "now": 0.0, **kwargs})


@pytest.mark.parametrize("deadline", [math.nan, math.inf, -math.inf])
def test_non_finite_deadlines_are_refused(deadline):
    wheel = TimerWheel(tick=0.1, slots=8, now=0.0)
    c = Conn("c")
    with pytest.raises(ValueError):
        wheel.schedule(c, deadline)
    wheel.schedule(c, 1.0)
    with pytest.raises(ValueError):
        wheel.reset(c, deadline)
    assert c.timer_deadline == 1.0 and len(wheel) == 1
    assert wheel.advance(1.2) == [c]


def test_objects_without_timer_attributes_are_refused():
    wheel = TimerWheel(tick=0.1, slots=8, now=0.0)
    with pytest.raises(TypeError):
        wheel.schedule(object(), 1.0)
