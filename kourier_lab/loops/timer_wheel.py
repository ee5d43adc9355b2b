"""A hashed timer wheel for per-connection request and idle timeouts (pure Python).

    wheel = TimerWheel(tick=0.1, slots=1024, now=time.monotonic())
    wheel.schedule(conn, deadline)    # file conn; deadline in the clock's seconds
    wheel.reset(conn, deadline)       # the hot path, on every request
    wheel.cancel(conn)
    expired = wheel.advance(now)      # conns whose deadline <= now, each once, removed
    wheel.next_timeout(now)           # seconds to sleep before calling advance, or None

A connection object carries two attributes the wheel owns: ``timer_deadline``
(its current deadline) and ``timer_slot`` (None while not scheduled; otherwise
the wheel's bookkeeping).  Initialize both (``timer_slot = None``); with
``__slots__``, list them.

Design
------
Time is cut into ticks of ``tick`` seconds; tick k covers ``((k-1)*tick, k*tick]``
and an entry whose deadline falls in it is *filed* in bucket ``k % slots`` (a
dict keyed by ``id(conn)``).  advance(now) visits, once each, the buckets of the
ticks k that ended since the last call (``k*tick <= now``): an entry whose
deadline has passed expires; any other entry is re-filed by its current deadline.
A timer therefore fires at the first advance() at or after the end of its tick:
never before its deadline, and no later than deadline + one tick provided the
loop calls advance() when next_timeout() says so.

Lazy rescheduling.  The filing is not updated when the deadline moves: reset()
only stores the new deadline in ``conn.timer_deadline`` -- one attribute load,
one chained comparison, one attribute store; no system call, no allocation,
O(1).  A deadline that moved later is noticed when its old bucket comes due
and the entry is re-filed then (at most once per old filing, however many
resets happened in between).  A deadline that moved *earlier* must still fire
on time, so ``timer_slot`` holds the start of the filed tick, ``(k-1)*tick``:
while the new deadline is later than that the old filing still fires within
one tick of it and nothing is done; otherwise reset() re-files at once (that
rare path does dictionary work).

Deadlines more than one revolution away (``slots * tick`` seconds) share a
bucket with nearer ticks; when the bucket comes due early the entry is simply
re-filed into the same bucket, once per revolution.  Entries scheduled into a
tick that has already been processed (a deadline in the past) go to a small
"due" dict that the next advance() handles first.

next_timeout() keeps a lower bound on the earliest non-empty tick (lowered by
every filing, recomputed by a forward scan only after advance() passed it), so
calling it once per loop iteration is O(1) amortized; it may wake the loop
early (after a cancel), never late.

Clock values are floats; tick boundaries are computed as ``k * tick`` and every
comparison uses that same expression, so results are exact up to float
rounding of those products (sub-nanosecond for monotonic clock values).
"""
import math
import time

__all__ = ["TimerWheel"]

_INF = float("inf")
# timer_slot of an entry waiting in the "due" dict: any finite deadline is later,
# so reset() keeps the fast path and advance() sorts it out.
_DUE = -_INF


class TimerWheel:
    __slots__ = ("tick", "slots", "_buckets", "_due", "_next", "_hint", "_count")

    def __init__(self, tick: float = 0.1, slots: int = 1024, now: float = None):
        if isinstance(tick, bool) or not isinstance(tick, (int, float)) or not 0 < tick < _INF:
            raise ValueError(f"tick must be a positive finite number of seconds, got {tick!r}")
        if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
            raise ValueError(f"slots must be a positive int, got {slots!r}")
        if now is None:
            now = time.monotonic()
        _check_time("now", now)
        self.tick = float(tick)
        self.slots = slots
        self._buckets = [{} for _ in range(slots)]
        self._due = {}
        # Ticks up to and including the one that contains `now` count as done.
        self._next = self._last_tick_ended(now) + 1
        # A lower bound on the earliest tick with entries; +inf: none filed.
        self._hint = _INF
        self._count = 0

    def __len__(self) -> int:
        """Number of scheduled connections."""
        return self._count

    def __repr__(self):
        return (f"<TimerWheel tick={self.tick} slots={self.slots} scheduled={self._count} "
                f"next_tick={self._next}>")

    # -- the hot path ------------------------------------------------------

    def reset(self, conn, deadline: float) -> None:
        """Move conn's deadline (scheduling it if it is not scheduled)."""
        lower = conn.timer_slot
        # NaN and +inf fail the comparison and take the checked path.
        if lower is not None and lower < deadline < _INF:
            conn.timer_deadline = deadline
            return
        self.schedule(conn, deadline)

    # -- the rest ------------------------------------------------------------

    def schedule(self, conn, deadline: float) -> None:
        """File conn to expire at `deadline` (replacing any earlier schedule)."""
        _check_time("deadline", deadline)
        try:
            filed = conn.timer_slot
        except AttributeError:
            raise TypeError(f"{type(conn).__name__} object has no timer_slot attribute "
                            "(initialize timer_slot = None and timer_deadline)") from None
        if filed is None:
            self._count += 1
        else:
            self._unfile(conn, filed)
        conn.timer_deadline = deadline
        self._file(conn, deadline)

    def cancel(self, conn) -> None:
        """Remove conn if it is scheduled; no-op otherwise."""
        filed = conn.timer_slot
        if filed is not None:
            self._unfile(conn, filed)
            conn.timer_slot = None
            self._count -= 1
            if not self._count:
                self._hint = _INF

    def advance(self, now: float) -> list:
        """Expire and return every connection whose tick ended by `now` and whose
        deadline is <= now; re-file the ones whose deadline moved later."""
        expired = []
        target = self._last_tick_ended(now)
        start = self._next
        if target >= start:
            # Before any re-filing: an entry re-filed into a tick <= target must
            # land in the due dict, not in a bucket that this call has passed.
            self._next = target + 1
        if self._due:
            due, self._due = self._due, {}
            self._expire_or_refile(due, now, expired)
        if target >= start:
            buckets = self._buckets
            n = self.slots
            # After a long pause every bucket is visited once, not once per tick.
            for k in range(start, start + min(target - start + 1, n)):
                bucket = buckets[k % n]
                if bucket:
                    buckets[k % n] = {}
                    self._expire_or_refile(bucket, now, expired)
        self._count -= len(expired)
        if not self._count:
            self._hint = _INF
        return expired

    def next_timeout(self, now: float):
        """Seconds from `now` until the next tick that may expire something
        (0.0 if one is already due), or None when nothing is scheduled."""
        if self._due:
            return 0.0
        if not self._count:
            return None
        hint = self._hint
        if hint < self._next:
            hint = self._first_busy_tick()
            if hint is None:  # pragma: no cover - only if the count were wrong
                return None
            self._hint = hint
        wait = hint * self.tick - now
        return wait if wait > 0.0 else 0.0

    # -- internals --------------------------------------------------------------

    def _last_tick_ended(self, now):
        """The largest k with k*tick <= now (the same product advance compares)."""
        _check_time("now", now)
        tick = self.tick
        k = math.floor(now / tick)
        if k * tick > now:
            k -= 1
        elif (k + 1) * tick <= now:
            k += 1
        return k

    def _file(self, conn, deadline):
        tick = self.tick
        k = math.ceil(deadline / tick)
        if (k - 1) * tick >= deadline:  # float rounding: keep (k-1)*tick < deadline
            k -= 1
        if k < self._next:
            conn.timer_slot = _DUE
            self._due[id(conn)] = conn
        else:
            conn.timer_slot = (k - 1) * tick
            self._buckets[k % self.slots][id(conn)] = conn
            if k < self._hint:
                self._hint = k

    def _unfile(self, conn, filed):
        if filed == _DUE:
            found = self._due.pop(id(conn), None)
        else:
            k = round(filed / self.tick) + 1
            found = self._buckets[k % self.slots].pop(id(conn), None)
        if found is None:
            raise ValueError(f"{conn!r} has timer_slot={filed!r} but is not filed in this wheel")

    def _expire_or_refile(self, entries, now, expired):
        for conn in entries.values():
            deadline = conn.timer_deadline
            if deadline <= now:
                conn.timer_slot = None
                expired.append(conn)
            else:
                self._file(conn, deadline)

    def _first_busy_tick(self):
        buckets = self._buckets
        n = self.slots
        start = self._next
        for k in range(start, start + n):
            if buckets[k % n]:
                return k
        return None


def _check_time(what, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number of seconds, not {type(value).__name__}")
    if not -_INF < value < _INF:
        raise ValueError(f"{what} must be finite, got {value!r}")
