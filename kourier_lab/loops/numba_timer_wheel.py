"""A hashed timer wheel compiled by Numba (nopython, no NRT) over numpy arrays.

The same design as the pure-Python wheel (loops/timer_wheel.py; read its
docstring for the reasoning), on integer time (the Numba loop uses
milliseconds of CLOCK_MONOTONIC) and integer entry ids (the loop's connection
slot numbers) instead of objects:

    w = new_wheel(tick=50, n_slots=2048, capacity=16, now=now_ms)
    w = grow_wheel(w, capacity)            # keeps every scheduled entry
    wheel_schedule(w, i, deadline)         # file entry i (re-files a scheduled one)
    wheel_reset(w, i, deadline)            # the hot path, on every request
    wheel_cancel(w, i)
    n = wheel_advance(w, now, out)         # out[:n]: entries with deadline <= now
    wheel_next_end(w)                      # time at which the next tick ends

Every function is @njit(nopython, _nrt=False), so the Numba loop calls them
from its native code without entering the interpreter; Python may call them
too (the NumbaTimerWheel class wraps them with argument checks).

Layout (a namedtuple of int64 arrays, `Wheel`):
  ctl[4]          tick, n_slots, next tick to process, number scheduled
  head[n_slots+1] first entry of each bucket's list, -1 if empty; the extra
                  last list is the "due" list (deadline in an already processed tick)
  nxt, prv        per entry: an intrusive doubly linked list per bucket (O(1) unlink)
  deadline        per entry: its current deadline
  lower           per entry: start of the filed tick, (k-1)*tick; UNSCHEDULED
                  (int64 max) when not filed, DUE (int64 min) when on the due list

Tick k covers ((k-1)*tick, k*tick] and an entry whose deadline falls in it is
filed in bucket k % n_slots.  wheel_reset is the lazy path: while the new
deadline is later than the start of the filed tick, the old filing still fires
no later than the new deadline's tick ends, so the reset is one comparison and
one store (no allocation, no system call, O(1)); the entry is re-filed when
its old bucket comes due.  A deadline moved to or before that start (earlier)
is re-filed at once, so it still fires on time; `lower` == UNSCHEDULED fails
the same comparison, so an unscheduled entry is scheduled.  Deadlines beyond
one revolution share a bucket with nearer ticks and are re-filed each time it
comes due.  wheel_advance reports each expiry once and unschedules it.
"""
from collections import namedtuple

try:
    from numba import njit
except ImportError as e:  # pragma: no cover - depends on the machine
    raise ImportError(f"the numba timer wheel needs numba ({e})") from e
import numpy as np

__all__ = ["Wheel", "new_wheel", "grow_wheel", "wheel_schedule", "wheel_reset", "wheel_cancel",
           "wheel_advance", "wheel_next_end", "NumbaTimerWheel", "UNSCHEDULED", "DUE"]

W_TICK, W_NSLOTS, W_NEXT, W_COUNT = 0, 1, 2, 3
UNSCHEDULED = np.iinfo(np.int64).max
DUE = np.iinfo(np.int64).min

Wheel = namedtuple("Wheel", ["ctl", "head", "nxt", "prv", "deadline", "lower"])


def new_wheel(tick, n_slots, capacity, now):
    """An empty wheel for entry ids 0..capacity-1; ticks up to the one that
    contains `now` count as processed."""
    for name, v in (("tick", tick), ("n_slots", n_slots), ("now", now)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{name} must be an int, not {type(v).__name__}")
    if tick < 1 or n_slots < 1:
        raise ValueError(f"tick and n_slots must be >= 1, got {tick!r}, {n_slots!r}")
    if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)) or capacity < 0:
        raise ValueError(f"capacity must be an int >= 0, got {capacity!r}")
    ctl = np.zeros(4, np.int64)
    ctl[W_TICK] = tick
    ctl[W_NSLOTS] = n_slots
    ctl[W_NEXT] = now // tick + 1
    head = np.full(n_slots + 1, -1, np.int64)
    return grow_wheel(Wheel(ctl, head, *(np.zeros(0, np.int64) for _ in range(4))), capacity)


def grow_wheel(w, capacity):
    """The same wheel with room for `capacity` entries (never shrinks)."""
    old = w.nxt.shape[0]
    if capacity <= old:
        return w
    arrays = []
    for a, fill in ((w.nxt, -1), (w.prv, -1), (w.deadline, 0), (w.lower, UNSCHEDULED)):
        b = np.full(capacity, fill, np.int64)
        b[:old] = a
        arrays.append(b)
    return Wheel(w.ctl, w.head, *arrays)


@njit(cache=True, _nrt=False)
def _file(w, i, deadline):
    """Put unfiled entry i into the list of the tick containing `deadline`."""
    tick = w.ctl[W_TICK]
    k = -((-deadline) // tick)                 # ceil(deadline / tick)
    if k < w.ctl[W_NEXT]:
        b = w.ctl[W_NSLOTS]                    # already processed: the due list
        w.lower[i] = DUE
    else:
        b = k % w.ctl[W_NSLOTS]
        w.lower[i] = (k - 1) * tick
    first = w.head[b]
    w.nxt[i] = first
    w.prv[i] = -1
    if first >= 0:
        w.prv[first] = i
    w.head[b] = i


@njit(cache=True, _nrt=False)
def _unfile(w, i):
    lower = w.lower[i]
    if lower == DUE:
        b = w.ctl[W_NSLOTS]
    else:
        b = (lower // w.ctl[W_TICK] + 1) % w.ctl[W_NSLOTS]
    p = w.prv[i]
    n = w.nxt[i]
    if p >= 0:
        w.nxt[p] = n
    else:
        w.head[b] = n
    if n >= 0:
        w.prv[n] = p


@njit(cache=True, _nrt=False)
def wheel_schedule(w, i, deadline):
    """File entry i to expire at `deadline` (replacing any earlier schedule)."""
    if w.lower[i] == UNSCHEDULED:
        w.ctl[W_COUNT] += 1
    else:
        _unfile(w, i)
    w.deadline[i] = deadline
    _file(w, i, deadline)


@njit(cache=True, _nrt=False)
def wheel_reset(w, i, deadline):
    """Move entry i's deadline (scheduling it if it is not scheduled)."""
    if w.lower[i] < deadline:
        w.deadline[i] = deadline
    else:
        wheel_schedule(w, i, deadline)


@njit(cache=True, _nrt=False)
def wheel_cancel(w, i):
    """Unschedule entry i; no-op when it is not scheduled."""
    if w.lower[i] != UNSCHEDULED:
        _unfile(w, i)
        w.lower[i] = UNSCHEDULED
        w.ctl[W_COUNT] -= 1


@njit(cache=True, _nrt=False)
def _expire_or_refile(w, first, now, out, n_out):
    i = first
    while i >= 0:
        after = w.nxt[i]                       # before re-filing rewrites it
        if w.deadline[i] <= now and n_out < out.shape[0]:
            w.lower[i] = UNSCHEDULED
            out[n_out] = i
            n_out += 1
        else:
            # later deadline: file by it; or `out` is full: it goes back to a
            # list this or the next call visits (never lost, never reported twice)
            _file(w, i, w.deadline[i])
        i = after
    return n_out


@njit(cache=True, _nrt=False)
def wheel_advance(w, now, out):
    """Expire every entry whose tick ended by `now` and whose deadline is
    <= now: their ids go to out[:n], they are unscheduled, n is returned.
    Entries whose deadline moved later are re-filed.  If `out` is too small
    the rest are reported by the next call."""
    ctl = w.ctl
    tick = ctl[W_TICK]
    n_slots = ctl[W_NSLOTS]
    target = now // tick                       # the last tick that has ended
    start = ctl[W_NEXT]
    if target >= start:
        # before any re-filing: one into a tick <= target goes to the due list
        ctl[W_NEXT] = target + 1
    n_out = 0
    first = w.head[n_slots]
    if first >= 0:
        w.head[n_slots] = -1
        n_out = _expire_or_refile(w, first, now, out, n_out)
    if target >= start:
        # after a long pause every bucket is visited once, not once per tick
        for k in range(start, start + min(target - start + 1, n_slots)):
            b = k % n_slots
            first = w.head[b]
            if first >= 0:
                w.head[b] = -1
                n_out = _expire_or_refile(w, first, now, out, n_out)
    ctl[W_COUNT] -= n_out
    return n_out


@njit(cache=True, _nrt=False)
def wheel_next_end(w):
    """The time at which the next unprocessed tick ends: calling advance then
    (or earlier, when the due list is not empty) keeps every timer within one
    tick of its deadline."""
    if w.head[w.ctl[W_NSLOTS]] >= 0:
        return w.ctl[W_NEXT] * w.ctl[W_TICK] - w.ctl[W_TICK]
    return w.ctl[W_NEXT] * w.ctl[W_TICK]


class NumbaTimerWheel:
    """The compiled wheel with checked arguments, for Python callers and tests
    (the Numba loop calls the @njit functions directly)."""
    __slots__ = ("w", "_out")

    def __init__(self, tick, n_slots, capacity, now):
        self.w = new_wheel(tick, n_slots, capacity, now)
        self._out = np.zeros(max(capacity, 1), np.int64)

    def __len__(self):
        return int(self.w.ctl[W_COUNT])

    @property
    def capacity(self):
        return self.w.nxt.shape[0]

    def grow(self, capacity):
        self.w = grow_wheel(self.w, capacity)
        if self._out.shape[0] < capacity:
            self._out = np.zeros(capacity, np.int64)

    def _check(self, i, deadline=0):
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < self.capacity:
            raise IndexError(f"entry id must be an int in [0, {self.capacity}), got {i!r}")
        if isinstance(deadline, bool) or not isinstance(deadline, (int, np.integer)):
            raise TypeError(f"deadline must be an int, not {type(deadline).__name__}")
        if not DUE < deadline < UNSCHEDULED:
            raise ValueError(f"deadline out of range: {deadline!r}")

    def scheduled(self, i):
        self._check(i)
        return bool(self.w.lower[i] != UNSCHEDULED)

    def deadline(self, i):
        self._check(i)
        return int(self.w.deadline[i]) if self.w.lower[i] != UNSCHEDULED else None

    def schedule(self, i, deadline):
        self._check(i, deadline)
        wheel_schedule(self.w, i, deadline)

    def reset(self, i, deadline):
        self._check(i, deadline)
        wheel_reset(self.w, i, deadline)

    def cancel(self, i):
        self._check(i)
        wheel_cancel(self.w, i)

    def advance(self, now):
        """Ids of the entries that expired, as a list."""
        if isinstance(now, bool) or not isinstance(now, (int, np.integer)):
            raise TypeError(f"now must be an int, not {type(now).__name__}")
        if not DUE < now < UNSCHEDULED:
            raise ValueError(f"now out of range: {now!r}")
        n = wheel_advance(self.w, now, self._out)
        return self._out[:n].tolist()

    def next_end(self):
        return int(wheel_next_end(self.w))
