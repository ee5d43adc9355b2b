"""The Numba-compiled timer wheel against a plain model, with a fake integer clock.

Properties, after every advance(now):
* every reported entry was scheduled, had deadline <= now, and is reported once;
* every scheduled entry with deadline + tick <= now has been reported;
* sleeping until next_end() never makes a timer late;
* the intrusive lists hold exactly the scheduled entries, once each, linked both ways.
"""
import numpy as np
import pytest

pytest.importorskip("numba")

from hypothesis import HealthCheck, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test  # noqa: E402

from kourier_lab.loops.numba_timer_wheel import (  # noqa: E402
    DUE, UNSCHEDULED, W_COUNT, W_NSLOTS, NumbaTimerWheel, new_wheel, wheel_advance, wheel_reset,
    wheel_schedule)

N = 8
# offsets in clock units: from the past to many wheel revolutions ahead
OFFSETS = st.integers(-200, 4000)
STEPS = st.integers(0, 400)


def check_lists(wheel):
    """Walk every bucket and the due list: each scheduled entry exactly once,
    in the bucket its `lower` names, prv/nxt consistent."""
    w = wheel.w
    n_slots = int(w.ctl[W_NSLOTS])
    seen = set()
    for b in range(n_slots + 1):
        prev = -1
        i = int(w.head[b])
        while i >= 0:
            assert i not in seen, "an entry is filed twice"
            seen.add(i)
            assert w.prv[i] == prev
            lower = int(w.lower[i])
            if b == n_slots:
                assert lower == DUE
            else:
                assert lower != DUE and lower != UNSCHEDULED
                assert (lower // int(w.ctl[0]) + 1) % n_slots == b
            prev = i
            i = int(w.nxt[i])
    scheduled = {i for i in range(wheel.capacity) if w.lower[i] != UNSCHEDULED}
    assert seen == scheduled
    assert int(w.ctl[W_COUNT]) == len(scheduled)


class NumbaWheelMachine(RuleBasedStateMachine):
    @initialize(tick=st.sampled_from([1, 2, 5, 16, 50]), slots=st.integers(1, 16),
                start=st.integers(0, 10 ** 9), capacity=st.integers(1, N))
    def create(self, tick, slots, start, capacity):
        self.tick = tick
        self.now = start
        self.wheel = NumbaTimerWheel(tick=tick, n_slots=slots, capacity=capacity, now=start)
        self.model = {}  # entry id -> deadline

    @rule(capacity=st.integers(1, N))
    def grow(self, capacity):
        # as the loop grows its connection arrays while timers are live
        self.wheel.grow(capacity)

    def _id(self, i):
        return i % self.wheel.capacity

    @rule(i=st.integers(0, N - 1), offset=OFFSETS)
    def schedule(self, i, offset):
        i = self._id(i)
        self.wheel.schedule(i, self.now + offset)
        self.model[i] = self.now + offset

    @rule(i=st.integers(0, N - 1), offset=OFFSETS)
    def reset(self, i, offset):
        i = self._id(i)
        self.wheel.reset(i, self.now + offset)
        self.model[i] = self.now + offset

    @rule(i=st.integers(0, N - 1), offset=OFFSETS, times=st.integers(1, 5), step=st.integers(-50, 400))
    def reset_repeatedly(self, i, offset, times, step):
        # keep-alive traffic moves the deadline forward; a negative step moves it earlier
        i = self._id(i)
        for t in range(times):
            self.wheel.reset(i, self.now + offset + t * step)
        self.model[i] = self.now + offset + (times - 1) * step

    @rule(i=st.integers(0, N - 1))
    def cancel(self, i):
        i = self._id(i)
        self.wheel.cancel(i)
        self.model.pop(i, None)

    @rule(step=STEPS)
    def advance(self, step):
        self.now += step
        self.check_advance()

    @rule(fraction=st.integers(0, 3))
    def sleep_until_next_end(self, fraction):
        # the loop calls advance when next_end() says (or earlier, on I/O)
        end = self.wheel.next_end()
        if self.model:
            assert end <= max(self.now, min(self.model.values()) + self.tick), "next_end is too late"
        target = max(self.now, end)
        if fraction:
            self.now += (target - self.now) * fraction // 4
            self.check_advance()
        self.now = target
        self.check_advance()

    def check_advance(self):
        expired = self.wheel.advance(self.now)
        assert len(expired) == len(set(expired)), "a timer fired twice"
        for i in expired:
            assert i in self.model, f"{i} fired but was not scheduled"
            assert self.model[i] <= self.now, "fired before its deadline"
            assert not self.wheel.scheduled(i)
            del self.model[i]
        for i, deadline in self.model.items():
            assert deadline + self.tick > self.now, f"{i} is more than one tick late"

    @invariant()
    def matches_model(self):
        assert len(self.wheel) == len(self.model)
        for i in range(self.wheel.capacity):
            assert self.wheel.deadline(i) == self.model.get(i)
        check_lists(self.wheel)


def test_wheel_matches_model():
    run_state_machine_as_test(
        NumbaWheelMachine,
        settings=settings(max_examples=300, stateful_step_count=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow]))


def test_deadlines_beyond_one_revolution():
    # 8 slots of 100 ms: one revolution is 800 ms; a 5050 ms timer laps it six times
    wheel = NumbaTimerWheel(tick=100, n_slots=8, capacity=2, now=100_000)
    wheel.schedule(0, 105_050)
    wheel.schedule(1, 100_250)
    fired = {}
    now = 100_000
    while now < 106_000:
        now += 50
        for i in wheel.advance(now):
            assert i not in fired
            fired[i] = now
    assert 100_250 <= fired[1] <= 100_350
    assert 105_050 <= fired[0] <= 105_150
    assert len(wheel) == 0


def test_reset_to_an_earlier_deadline_fires_on_time():
    wheel = NumbaTimerWheel(tick=100, n_slots=64, capacity=1, now=0)
    wheel.schedule(0, 5000)
    wheel.reset(0, 300)
    assert wheel.advance(250) == []
    assert wheel.advance(410) == [0]


def test_forward_reset_is_one_store():
    """A later deadline only stores it: the filing and the lists are untouched."""
    wheel = NumbaTimerWheel(tick=50, n_slots=1024, capacity=64, now=0)
    for i in range(64):
        wheel.schedule(i, 10_000)
    w = wheel.w
    before = [a.copy() for a in (w.ctl, w.head, w.nxt, w.prv, w.lower)]
    for d in range(10_000, 12_000):
        for i in range(64):
            wheel_reset(w, i, d)
    after = (w.ctl, w.head, w.nxt, w.prv, w.lower)
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    assert (w.deadline == 11_999).all()
    assert wheel.advance(11_800) == []
    assert sorted(wheel.advance(12_050)) == list(range(64))


def test_reset_schedules_an_unscheduled_entry_and_cancel_is_idempotent():
    wheel = NumbaTimerWheel(tick=25, n_slots=4, capacity=1, now=0)
    wheel.reset(0, 1000)
    assert len(wheel) == 1
    wheel.cancel(0)
    wheel.cancel(0)
    assert len(wheel) == 0 and not wheel.scheduled(0)
    assert wheel.advance(10_000) == []


def test_past_deadline_fires_at_the_next_advance():
    wheel = NumbaTimerWheel(tick=500, n_slots=4, capacity=1, now=10_000)
    wheel.schedule(0, 3000)
    assert wheel.next_end() <= 10_000
    assert wheel.advance(10_000) == [0]


def test_long_pause_visits_every_bucket_once():
    wheel = NumbaTimerWheel(tick=100, n_slots=16, capacity=100, now=0)
    for i in range(100):
        wheel.schedule(i, 50 + i * 370)
    assert sorted(wheel.advance(1_000_000)) == list(range(100))
    assert len(wheel) == 0


def test_a_short_out_array_defers_the_rest_without_loss():
    w = new_wheel(tick=10, n_slots=8, capacity=20, now=0)
    for i in range(20):
        wheel_schedule(w, i, 5 + i)
    out = np.zeros(7, np.int64)
    got = []
    for _ in range(3):
        n = wheel_advance(w, 1000, out)
        got += out[:n].tolist()
    assert sorted(got) == list(range(20))
    assert wheel_advance(w, 1000, out) == 0 and w.ctl[W_COUNT] == 0


def test_grow_keeps_scheduled_entries():
    wheel = NumbaTimerWheel(tick=10, n_slots=8, capacity=2, now=0)
    wheel.schedule(0, 100)
    wheel.schedule(1, 30)
    wheel.grow(64)
    wheel.schedule(63, 50)
    assert wheel.advance(45) == [1]
    assert wheel.advance(65) == [63]
    assert wheel.advance(115) == [0]


@pytest.mark.parametrize("kwargs", [dict(tick=0), dict(tick=-1), dict(tick=0.5), dict(n_slots=0),
                                    dict(capacity=-1), dict(now=1.5)])
def test_bad_construction_is_refused(kwargs):
    with pytest.raises((ValueError, TypeError)):
        NumbaTimerWheel(**{"tick": 10, "n_slots": 8, "capacity": 4, "now": 0, **kwargs})


def test_bad_arguments_are_refused():
    wheel = NumbaTimerWheel(tick=10, n_slots=8, capacity=4, now=0)
    with pytest.raises(IndexError):
        wheel.schedule(4, 100)
    with pytest.raises(IndexError):
        wheel.reset(-1, 100)
    with pytest.raises(TypeError):
        wheel.schedule(0, 1.5)
    with pytest.raises(ValueError):
        wheel.schedule(0, int(UNSCHEDULED))
    with pytest.raises(TypeError):
        wheel.advance(None)
    assert len(wheel) == 0
