"""The Numba loop: epoll, accept4, recv, send and close called from nopython
code by symbol name; static routes served without entering the interpreter.

How the work is split
---------------------
* Native (``run_native``, nopython): epoll_wait, then for every event: accept
  new connections (accept4, TCP_NODELAY, epoll_ctl), read into the
  connection's row of a read slab, parse every complete head of the read in
  one call of the Numba parser's parse_heads_kernel (each head in full, each
  its own row), and for each GET/HEAD of a static route look the route up and
  copy the precomputed response into a write row; send it all with one
  send().  A head that arrives in many reads is not parsed again after every
  read: the slot keeps _scan_head's state for the incomplete head at the row's
  front (S_HEAD: parsers/scan.py scan_head's (s, rl, scanned), the same
  decisions, 21 bits each in one int64, so no extra memory per connection; a
  head of 2 MiB or more buffered is not resumed but parsed after every read),
  which follows only the new bytes, and the parser is asked again only when its
  answer can have changed from "need more": O(head) for a 1-byte trickle, not
  O(head^2).  Keep-alive / close, HTTP/1.0, pipelining, backpressure
  (EPOLLOUT only while output is pending), request and idle deadlines
  (milliseconds, in a timer wheel compiled by Numba: 408 or close), the
  connection limit (503), lingering close.  It returns to Python
  when an event needs Python, or at the time the driver asked for (the next
  Python timer, the next Date second, at most 50 ms).
* Python (``NumbaLoop.run``, the driver): the app's Date refresh (the static
  responses are re-copied into the native table once a second), graceful stop,
  and every connection that needs Python.  A connection is *promoted* the first
  time the native path meets something it does not serve -- a Python handler,
  a body, an error status, a 404/405, a head larger than its slab row: its
  buffered input and pending output move into a Session with the configured
  (Numba) buffers, and from then on it is served exactly as the Python loop
  serves it (the driver reuses PythonLoop's code and timer wheel; the native
  side forwards that descriptor's events).  There is no native chunk decoder:
  bodies always go to Python here (a request with any body is promoted at its
  head), where the Session's scan_chunked follows a chunked one.  Returning
  to Python between epoll waits (rather than objmode inside the loop) keeps
  the native code free of interpreter state and lets one Python call handle
  every promoted event of a batch.

Folding runs (``serve --fold-runs on``, ServerConfig.fold_runs; off by
default, ctl[C_FOLD]): a run of equal consecutive requests is answered as a
run.  The kernel returns consecutive heads with the same length, flags, method
and path as one row with a count; a head whose method and path equal the
previous one's reuses its route instead of a look-up; a run of identical
answers is written with log2(count) memcpy calls.  Each head is still parsed
in full, and the bytes sent are the same; what folding saves is per-request
work that a benchmark of identical requests would otherwise measure, so it is
a separate knob.  Off, every request gets its own row, its own route look-up
and its own copy of its answer.  The head memo (ctl[C_MEMO_LEN]) is another
knob: a hit answers one request (with folding off, its answer is copied on
its own too).  ctl[C_ROUTED] and ctl[C_COPIED] count route look-ups and
answer copies, so a test can tell the two apart.

Why slabs: per-connection buffers must be reachable from nopython code by
index, without Python objects.  Every connection gets one row of a 2-D uint8
read slab (read_buffer bytes) and one of a write slab (16 KiB); while a
read's answers are produced and sent, the connection borrows one of BIG_ROWS
shared 256 KiB write rows (kept only while its output is pending), so the
answers to a whole 256-deep pipeline leave in one send (a full 16 KiB row is
sent, then reused, when none is free); the slabs grow by doubling (in the
driver, between native calls) as connections arrive and never shrink, so a
worker holds about 2 x (read_buffer + 16 KiB) per peak connection (~64 MB
at 1000 connections with the defaults).  The Numba ring/write buffers are
only used after promotion.

Timers: native connections are entries of a hashed timer wheel compiled by
Numba (loops/numba_timer_wheel.py; 50 ms ticks, 2048 buckets, entry id = the
connection's slot number, grown with the slabs).  Resetting a timer on a
request is one comparison and one store; the wheel is advanced when a tick
ends and visits only the buckets of the ticks that ended, so the cost per
tick is O(expiring + re-filed entries), not O(connections).  A connection is
cancelled when its slot is closed or promoted; promoted connections use the
Python timer wheel (the deadline is handed over in the slot's S_DEADLINE).

Start-up: libc is called by symbol name (Numba ExternalFunction: epoll_wait,
accept4, recv, send, close, memcpy, ...), not through cffi function pointers,
whose addresses Numba would bake into the machine code and so refuse to cache.
Every function here therefore uses cache=True: the first process on a machine
compiles, later ones load machine code from __pycache__ (notebook 02 shows both
times, measured by bench/notebooks/numba_costs.py start_up()).  The supervisor
still compiles (or loads) before forking, so workers inherit the code.
"""
import errno
import os
import platform
import select
import socket
import time
from collections import namedtuple

try:
    import numba  # noqa: F401  (imported for the clear error below)
except ImportError as e:  # pragma: no cover - depends on the machine
    raise ImportError(f"the numba loop needs numba ({e})") from e
import numpy as np
from numba import njit, types
from numba.core.extending import intrinsic

from .. import buffers, parsers
from ..numba_layout import limits_array, new_table
from ..parsers.numba import (H_COUNT, H_FLAGS0, H_LEN, H_METHOD, H_METHOD_LEN, H_PATH, H_PATH_LEN, HEAD_FIELDS,
                             load_byte,
                             parse_heads_kernel)
from ..server.app import StaticRoute
from ..server.session import Session
from . import register
from .python import _READ, PythonLoop, _Conn
from .numba_timer_wheel import grow_wheel, new_wheel, wheel_advance, wheel_cancel, wheel_next_end, wheel_reset
from .timer_wheel import TimerWheel

# -- libc by symbol name --------------------------------------------------------------
# Each is a Numba ExternalFunction: the compiled code calls the symbol (resolved
# when the code is loaded into the process, like any shared-library call), not an
# address baked in at compile time, so every function below caches to disk.
_u8p = types.CPointer(types.uint8)
_cint, _size = types.int32, types.intp
c_epoll_wait = types.ExternalFunction("epoll_wait", _cint(_cint, _u8p, _cint, _cint))
c_epoll_ctl = types.ExternalFunction("epoll_ctl", _cint(_cint, _cint, _cint, _u8p))
c_accept4 = types.ExternalFunction("accept4", _cint(_cint, _u8p, types.CPointer(types.uint32), _cint))
c_recv = types.ExternalFunction("recv", _size(_cint, _u8p, _size, _cint))
c_send = types.ExternalFunction("send", _size(_cint, _u8p, _size, _cint))
c_shutdown = types.ExternalFunction("shutdown", _cint(_cint, _cint))
c_close = types.ExternalFunction("close", _cint(_cint))
c_setsockopt = types.ExternalFunction("setsockopt", _cint(_cint, _cint, _cint, _u8p, types.uint32))
c_clock_gettime = types.ExternalFunction("clock_gettime", _cint(_cint, types.CPointer(types.int64)))
c_errno_location = types.ExternalFunction("__errno_location", types.CPointer(_cint)())
c_memcpy = types.ExternalFunction("memcpy", types.voidptr(_u8p, _u8p, _size))     # Numba's byte
c_memmove = types.ExternalFunction("memmove", types.voidptr(_u8p, _u8p, _size))   # loops are slower
c_memcmp = types.ExternalFunction("memcmp", _cint(_u8p, _u8p, _size))

# struct epoll_event is packed on x86-64 (12 bytes), naturally aligned elsewhere
EV_SIZE, EV_DATA = (12, 4) if platform.machine() in ("x86_64", "AMD64") else (16, 8)
EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP = select.EPOLLIN, select.EPOLLOUT, select.EPOLLERR, select.EPOLLHUP
EPOLLRDHUP, EPOLLET = select.EPOLLRDHUP, select.EPOLLET & 0xFFFFFFFF
EV_READ = (EPOLLIN | EPOLLRDHUP | EPOLLET) & 0xFFFFFFFF
EV_READ_WRITE = EV_READ | EPOLLOUT
EV_INPUT = EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP
CTL_ADD, CTL_DEL, CTL_MOD = 1, 2, 3
SOCK_FLAGS = socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
IPPROTO_TCP, TCP_NODELAY, SHUT_WR = socket.IPPROTO_TCP, socket.TCP_NODELAY, socket.SHUT_WR
MSG_NOSIGNAL = getattr(socket, "MSG_NOSIGNAL", 0)
CLOCK_MONOTONIC = time.CLOCK_MONOTONIC
EAGAIN, EINTR = errno.EAGAIN, errno.EINTR
E_ACCEPT_SKIP = (errno.ECONNABORTED, errno.EPROTO, errno.EINTR)

MAX_EVENTS = 512

try:
    from numpy._core.multiarray import _set_madvise_hugepage
except ImportError:  # pragma: no cover - numpy < 2
    from numpy.core.multiarray import _set_madvise_hugepage


def _slab(rows, width):
    """A zeroed 2-D uint8 slab in ordinary 4 KiB pages.  NumPy asks the kernel
    for transparent huge pages on large arrays (madvise), and with a 2 MiB page
    the first byte a connection reads into makes 128 rows of 16 KiB resident at
    once: every connection then costs its whole row.  Small pages keep an idle
    row at the one page its last read touched."""
    previous = _set_madvise_hugepage(False)
    try:
        return np.zeros((rows, width), np.uint8)
    finally:
        _set_madvise_hugepage(previous)
MAX_HEADS = 1024           # heads parsed per kernel call (a 16 KiB row holds at most ~900)
ACCEPT_BATCH = 256
WRITE_ROW = 16384          # per native connection; a full row is sent and reused mid-batch
BIG_ROWS = 4               # shared write rows, lent while a connection's answers are produced and sent
BIG_ROW = 262144           # more than the answers to a full read row of small static GETs
BODY_NONE = parsers.BODY_NONE

# fd modes
M_NONE, M_FAST, M_PYTHON, M_LISTEN, M_WAKE = 0, 1, 2, 3, 4
# per-slot fields (int64 slab `slots`)
S_FD, S_RLEN, S_WPOS, S_WLEN, S_FLAGS, S_DEADLINE, S_BIG = 0, 1, 2, 3, 4, 5, 6   # S_BIG: lent big row or -1
S_HEAD = 7       # _scan_head's state for an incomplete head at the row's front (packed), 0: none
SLOT_FIELDS = 8
# S_HEAD packs scan_head's (s, rl, scanned), offsets from the row's front, in
# HS_BITS bits each; scanned >= every other and is > 0 for a buffered byte, so a
# state that does not fit is stored as 0 (parsed after every read, not resumed)
HS_BITS = 21
HS_MASK = (1 << HS_BITS) - 1
HS_LIMIT = 1 << HS_BITS
F_WANT_WRITE, F_CLOSING, F_PEER_CLOSED, F_IN_REQ, F_PAUSED = 1, 2, 4, 8, 16
# control words (int64 `ctl`)
(C_NCONNS, C_NFREE, C_MAXCONN, C_NEED_SLOTS, C_REQ_TO, C_IDLE_TO, C_EPFD, C_STOPPING,
 C_MAXRESP, C_CATCH_ALL, C_NEXT_TICK, C_SERVED, C_PROMOTED, C_MEMO_LEN, C_MEMO_RESP,
 C_MEMO_KA, C_NBIGFREE, C_FOLD, C_ROUTED, C_COPIED) = range(20)
CTL_WORDS = 20
TICK_MS = 50
WHEEL_SLOTS = 2048      # one revolution: 102 s; longer timeouts are re-filed once per lap
from ..parsers.memo import MEMO_MAX     # longest head the memo remembers (512, as in C)
# process() results
P_DONE, P_BLOCKED, P_PROMOTE = 0, 1, 2
# responses besides the routes' (indices into resp_idx after the routes' 8 each)
R_503, R_408 = 0, 1

# everything the native side works on, passed as one namedtuple of arrays
NativeState = namedtuple("NativeState", [
    "ctl", "fdmode", "fdslot", "slots", "freelist", "rdata", "wdata", "evbuf", "evrec", "pyev",
    "table", "limits", "path_blob", "path_idx", "resp_blob", "resp_idx", "scratch", "addrlen",
    "one", "ts", "memo", "wheel", "expired", "wbig", "bigfree", "heads", "stages"])
# stage counters (loops/stages.py): ns per stage at 0..5 (stages.STAGES order),
# on/off at G_ON, a timespec for the clock at G_TS; off unless KOURIER_LAB_STAGE_COUNTERS
G_READ, G_PARSE, G_ROUTE, G_RESPOND, G_WRITE, G_TIMERS, G_ON, G_TS = 0, 1, 2, 3, 4, 5, 6, 8
STAGE_WORDS = 10


# -- native helpers -----------------------------------------------------------------------
@intrinsic
def _ptr(typingctx, arr, off):
    """&arr[off] as a C pointer, for libc calls: ffi.from_buffer(arr[off:]) built
    a slice first (bounds normalisation, a new array struct) on every call."""
    sig = types.CPointer(arr.dtype)(arr, types.intp)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.gep(ary.data, [args[1]])
    return sig, codegen


@njit(cache=True, _nrt=False)
def _emit_run(wrow, at, resp_blob, off, size, count):
    """`count` copies of the answer resp_blob[off:off+size] at wrow[at:]: one
    copy, then the copies made so far copied after themselves (log2(count)
    memcpy calls for a run of identical answers, not one per request; only
    with fold_runs on).  Returns the number of memcpy calls."""
    c_memcpy(_ptr(wrow, at), _ptr(resp_blob, off), size)
    calls = 1
    done = 1
    while done < count:
        k = min(done, count - done)
        c_memcpy(_ptr(wrow, at + done * size), _ptr(wrow, at), k * size)
        done += k
        calls += 1
    return calls


@njit(cache=True, _nrt=False)
def _errno():
    return c_errno_location()[0]


@njit(cache=True, _nrt=False)
def now_ms(L):
    c_clock_gettime(CLOCK_MONOTONIC, _ptr(L.ts, 0))
    return L.ts[0] * 1000 + L.ts[1] // 1000000


@njit(cache=True, _nrt=False)
def _stage_now(g):
    """CLOCK_MONOTONIC in ns (the vDSO), or 0 when the stage counters are off."""
    if g[G_ON] == 0:
        return 0
    c_clock_gettime(CLOCK_MONOTONIC, _ptr(g, G_TS))
    return g[G_TS] * 1000000000 + g[G_TS + 1]


@njit(cache=True, _nrt=False)
def _stage_add(g, stage, t0):
    if g[G_ON]:
        g[stage] += _stage_now(g) - t0


@njit(cache=True, _nrt=False)
def _epoll_set(L, op, fd, events):
    r = L.evrec
    for i in range(4):
        r[i] = (events >> (8 * i)) & 0xFF
        r[EV_DATA + i] = (fd >> (8 * i)) & 0xFF
    return c_epoll_ctl(L.ctl[C_EPFD], op, fd, _ptr(r, 0))


@njit(cache=True, _nrt=False, inline="always")
def _wrow(L, slot):
    """The connection's write row: a lent big row, or its own row of the slab
    (inlined: without the NRT a function cannot return a view it was not given)."""
    k = L.slots[slot, S_BIG]
    if k >= 0:
        return L.wbig[k]
    return L.wdata[slot]


@njit(cache=True, _nrt=False)
def _lend_big(L, slot):
    """Lend a free big write row to a connection with no output pending, so that
    the answers to a whole read go out in one send (a 16 KiB row holds ~95 of
    the benchmark's 170-byte answers: a 256-deep pipeline took three sends)."""
    s = L.slots
    if s[slot, S_BIG] < 0 and s[slot, S_WLEN] == 0 and L.ctl[C_NBIGFREE] > 0:
        L.ctl[C_NBIGFREE] -= 1
        s[slot, S_BIG] = L.bigfree[L.ctl[C_NBIGFREE]]


@njit(cache=True, _nrt=False)
def _return_big(L, slot):
    """Give a lent big row back (its output has all been sent, or is dropped)."""
    k = L.slots[slot, S_BIG]
    if k >= 0:
        L.bigfree[L.ctl[C_NBIGFREE]] = k
        L.ctl[C_NBIGFREE] += 1
        L.slots[slot, S_BIG] = -1


@njit(cache=True, _nrt=False)
def _close_slot(L, slot):
    """Lingering close: drop what the client already sent, FIN, close; free the slot."""
    fd = L.slots[slot, S_FD]
    if fd < 0:
        return
    _epoll_set(L, CTL_DEL, fd, 0)
    for _ in range(16):
        if c_recv(fd, _ptr(L.scratch, 0), len(L.scratch), 0) <= 0:
            break
    c_shutdown(fd, SHUT_WR)
    c_close(fd)
    L.fdmode[fd] = M_NONE
    L.slots[slot, S_FD] = -1
    L.slots[slot, S_HEAD] = 0
    _return_big(L, slot)
    wheel_cancel(L.wheel, slot)
    L.freelist[L.ctl[C_NFREE]] = slot
    L.ctl[C_NFREE] += 1
    L.ctl[C_NCONNS] -= 1


@njit(cache=True, _nrt=False)
def _flush(L, slot):
    """Send the pending output; EPOLLOUT only while some remains.  Returns False
    when the connection was closed."""
    s = L.slots
    fd = s[slot, S_FD]
    row = _wrow(L, slot)
    while s[slot, S_WLEN] > s[slot, S_WPOS]:
        pos = s[slot, S_WPOS]
        n = c_send(fd, _ptr(row, pos), s[slot, S_WLEN] - pos, MSG_NOSIGNAL)
        if n < 0:
            e = _errno()
            if e == EINTR:
                continue
            if e == EAGAIN:
                break
            _close_slot(L, slot)
            return False
        s[slot, S_WPOS] = pos + n
    flags = s[slot, S_FLAGS]
    if s[slot, S_WLEN] > s[slot, S_WPOS]:
        if not flags & F_WANT_WRITE:
            s[slot, S_FLAGS] = flags | F_WANT_WRITE
            _epoll_set(L, CTL_MOD, fd, EV_READ_WRITE)
        return True
    s[slot, S_WPOS] = 0
    s[slot, S_WLEN] = 0
    _return_big(L, slot)
    if flags & F_WANT_WRITE:
        s[slot, S_FLAGS] = flags & ~F_WANT_WRITE
        _epoll_set(L, CTL_MOD, fd, EV_READ)
    if flags & F_CLOSING or (flags & F_PEER_CLOSED and s[slot, S_RLEN] == 0):
        _close_slot(L, slot)
        return False
    return True


@njit(cache=True, _nrt=False)
def _append(L, slot, resp):
    """Copy response row `resp` into the write row; False when it does not fit."""
    s = L.slots
    off = L.resp_idx[resp, 0]
    n = L.resp_idx[resp, 1]
    row = _wrow(L, slot)
    wlen = s[slot, S_WLEN]
    if wlen + n > row.shape[0]:
        wpos = s[slot, S_WPOS]
        if wlen - wpos + n > row.shape[0]:
            return False
        c_memmove(_ptr(row, 0), _ptr(row, wpos), wlen - wpos)   # compact
        wlen -= wpos
        s[slot, S_WPOS] = 0
    c_memcpy(_ptr(row, wlen), _ptr(L.resp_blob, off), n)
    s[slot, S_WLEN] = wlen + n
    return True


@njit(cache=True, _nrt=False)
def _scan_head(row, start, end, s, rl, scanned, max_request_line, max_header_bytes):
    """parsers/scan.py scan_head in nopython code, the same decisions: follow an
    incomplete head at row[start:end] from the state (s, rl, scanned) (offsets
    from `start`; (0, 0, 0) at first) and say whether the parser must be asked
    now (its answer can have changed from "need more": the leading CRLF pairs
    reach max_header_bytes, the request line ends or passes max_request_line,
    the head's empty line arrives or the head reaches max_header_bytes).
    Returns (decide, s, rl, scanned), the state to keep when the parser
    answers "need more".  Only the bytes after `scanned` are looked at (the
    CRLF pairs resume at s; the empty-line search backs up 2 bytes)."""
    if rl == 0:
        # the CRLF pairs before the request line, bounded at max_header_bytes + 1 bytes
        bound = min(end, start + max_header_bytes + 1)
        p = start + s
        while p + 2 <= bound and load_byte(row, p) == 13 and load_byte(row, p + 1) == 10:
            p += 2
        s = p - start
        if s >= max_header_bytes:
            return True, s, 0, end - start
        p = start + max(s, scanned)
        while p < end and load_byte(row, p) != 10:
            p += 1
        if p == end:
            # no LF yet: ask only when the request line is over its limit (414)
            k = end - start - s
            over = k - 1 > max_request_line or (k > max_request_line and load_byte(row, end - 1) != 13)
            return over, s, 0, end - start
        # the request line ends: judged now; the empty-line search starts at its LF
        rl = p + 1 - start
        return True, s, rl, rl
    # LF CR LF or LF LF ends the head; either may start 2 bytes before the new bytes
    p = start + max(rl - 1, scanned - 2)
    done = False
    while p < end:
        if load_byte(row, p) == 10:
            if p + 1 < end and load_byte(row, p + 1) == 10:
                done = True
                break
            if p + 2 < end and load_byte(row, p + 1) == 13 and load_byte(row, p + 2) == 10:
                done = True
                break
        p += 1
    return done or end - start >= max_header_bytes, s, rl, end - start


@njit(cache=True, _nrt=False, inline="always")
def _head_state(s, rl, scanned):
    """S_HEAD's packing of a scan state; 0 (not resumed) when it does not fit."""
    if scanned >= HS_LIMIT:
        return 0
    return s | (rl << HS_BITS) | (scanned << (2 * HS_BITS))


@njit(cache=True, _nrt=False)
def _process(L, slot):
    """Answer every complete request in the read row that the native path
    serves.  P_DONE (stopped at an incomplete head or the end), P_BLOCKED (the
    write row is full) or P_PROMOTE (Python must take over from the first
    request left in the row).  Routing and the response copy are written out
    here rather than called: a call that takes the state tuple passes every
    array in it, which cost more than the parse."""
    g = L.stages
    t0 = _stage_now(g)
    counted = g[G_PARSE] + g[G_ROUTE]
    r = _serve_row(L.rdata[slot], _wrow(L, slot), L.slots[slot], L.table, L.limits, L.ctl,
                   L.path_blob, L.path_idx, L.resp_blob, L.resp_idx, L.memo, L.heads, g)
    if g[G_ON]:
        g[G_RESPOND] += _stage_now(g) - t0 - (g[G_PARSE] + g[G_ROUTE] - counted)
    return r


@njit(cache=True, _nrt=False)
def _serve_row(row, wrow, st, t, lim, ctl, path_blob, path_idx, resp_blob, resp_idx, memo, heads, g):
    """Every head is parsed in full, all the heads of the row in one call of
    the parser's parse_heads_kernel (one head per call with the memo on: it is
    checked first).  With ctl[C_FOLD] 0 (the default) every head gets its own
    row, its own route look-up and its own memcpy of its answer.  With
    ctl[C_FOLD] 1 (fold_runs) the kernel folds runs of equal heads into one
    row with a count, a head whose method and path bytes equal the previous
    one's (in this call) reuses that head's route instead of looking it up
    again, and a run of identical answers is written by _emit_run.  The head
    memo (as the C loop's and the Python parser's): parsers are stateless, so
    a head byte-identical to the last one answered by a static route gets the
    same answer after one memcmp -- exact, not a shortcut around validation;
    a hit answers one request.  ctl[C_MEMO_LEN] = -1 (the default) turns it
    off.

    An incomplete head at the front is resumed, not parsed again after every
    read: st[S_HEAD] holds _scan_head's state for it (offsets from the row's
    front, where the compaction below puts it), and until the scan says the
    parser's answer can have changed the row is left as it is (P_DONE)."""
    rlen = st[S_RLEN]
    hs = st[S_HEAD]
    hs_s = hs_rl = hs_scanned = 0
    resumed = hs != 0        # the entry scan ran (and said: ask the parser)
    if resumed:
        tp = _stage_now(g)
        decide, hs_s, hs_rl, hs_scanned = _scan_head(row, 0, rlen, hs & HS_MASK, (hs >> HS_BITS) & HS_MASK,
                                                     hs >> (2 * HS_BITS), lim[0], lim[1])
        _stage_add(g, G_PARSE, tp)
        if not decide:
            st[S_HEAD] = _head_state(hs_s, hs_rl, hs_scanned)
            return P_DONE
    need_more = False        # stopped at a head the parser answered 0 (need more)
    wpos = st[S_WPOS]
    wlen = st[S_WLEN]
    wcap = wrow.shape[0]
    catch_all = ctl[C_CATCH_ALL]
    fold = ctl[C_FOLD]
    routed = copied = 0      # route look-ups and answer copies (ctl[C_ROUTED], ctl[C_COPIED])
    pos = 0
    hk = hn = 0              # the next row of `heads` to answer, the rows parsed
    result = P_DONE
    served = 0
    route = -1               # the previous head's route, its method and path spans
    head = 0
    pmo = pml = ppo = ppl = 0
    run_resp = -1            # the answer being repeated, where its copies start, how many
    run_off = run_size = run_at = run_count = 0
    while pos < rlen:
        mlen = ctl[C_MEMO_LEN]
        if mlen > 0 and rlen - pos >= mlen and c_memcmp(_ptr(row, pos), _ptr(memo, 0), mlen) == 0:
            n = mlen
            count = 1
            resp = ctl[C_MEMO_RESP]
            keep_alive = ctl[C_MEMO_KA]
        else:
            if hk == hn:
                tp = _stage_now(g)
                hn = parse_heads_kernel(row, pos, rlen, lim, t, heads, 1 if mlen >= 0 else MAX_HEADS, fold)
                _stage_add(g, G_PARSE, tp)
                hk = 0
            n = heads[hk, H_LEN]
            count = heads[hk, H_COUNT]       # heads of length n in a row that get this answer (1 unfolded)
            if n == 0:
                need_more = True
                break
            f0 = heads[hk, H_FLAGS0]
            if n < 0 or (f0 >> 24) != BODY_NONE:
                result = P_PROMOTE             # an error or a body: Python answers
                break
            mo = pos + heads[hk, H_METHOD]
            ml = heads[hk, H_METHOD_LEN]
            po = pos + heads[hk, H_PATH]
            pl = heads[hk, H_PATH_LEN]
            hk += 1
            same = fold != 0 and route >= 0 and ml == pml and pl == ppl
            if same:
                for i in range(ml):
                    if load_byte(row, mo + i) != load_byte(row, pmo + i):
                        same = False
                        break
            if same:
                for i in range(pl):
                    if load_byte(row, po + i) != load_byte(row, ppo + i):
                        same = False
                        break
            if not same:
                tr = _stage_now(g)
                route, head = _route(row, mo, ml, po, pl, catch_all, path_idx, path_blob)
                _stage_add(g, G_ROUTE, tr)
                routed += 1
                if route < 0:
                    result = P_PROMOTE         # a handler, 404 or 405: Python answers
                    break
                pmo, pml, ppo, ppl = mo, ml, po, pl
            keep_alive = (f0 >> 16) & 0xFF
            resp = route * 8 + head * 4 + (f0 & 0xFF) * 2 + keep_alive
            if mlen >= 0 and n <= MEMO_MAX:
                c_memcpy(_ptr(memo, 0), _ptr(row, pos), n)
                ctl[C_MEMO_LEN] = n
                ctl[C_MEMO_RESP] = resp
                ctl[C_MEMO_KA] = keep_alive
        off = resp_idx[resp, 0]
        size = resp_idx[resp, 1]
        blocked = False
        if wlen + count * size > wcap:
            if run_count:
                copied += _emit_run(wrow, run_at, resp_blob, run_off, run_size, run_count)
                run_count = 0
                run_resp = -1
            if wpos:
                c_memmove(_ptr(wrow, 0), _ptr(wrow, wpos), wlen - wpos)   # compact
                wlen -= wpos
                wpos = 0
            fit = (wcap - wlen) // size
            if fit == 0:
                # P_BLOCKED waits for the row to drain; an answer larger than the
                # whole row never fits: Python's growable buffer takes it
                result = P_BLOCKED if wlen > 0 else P_PROMOTE
                break
            if fit < count:
                count = fit                    # the rest are parsed again once the row drains
                blocked = True
        if fold == 0:
            c_memcpy(_ptr(wrow, wlen), _ptr(resp_blob, off), size)     # count is 1: its own copy
            copied += 1
        else:
            if resp != run_resp:               # a new run of identical answers
                if run_count:
                    copied += _emit_run(wrow, run_at, resp_blob, run_off, run_size, run_count)
                run_resp = resp
                run_off = off
                run_size = size
                run_at = wlen
                run_count = 0
            run_count += count                 # their bytes are written when the run ends
        wlen += count * size
        served += count
        pos += count * n
        if blocked:
            result = P_BLOCKED
            break
        if not keep_alive:                                 # nothing after it is read
            st[S_FLAGS] |= F_CLOSING
            pos = rlen
            break
    if run_count:
        copied += _emit_run(wrow, run_at, resp_blob, run_off, run_size, run_count)
    st[S_WPOS] = wpos
    st[S_WLEN] = wlen
    ctl[C_SERVED] += served
    ctl[C_ROUTED] += routed
    ctl[C_COPIED] += copied
    # the incomplete head that stays at the front: the entry scan's state when
    # it is the same head, else scanned once from its start (relative to pos,
    # the front after the compaction); none when the front head is complete
    # (blocked), promoted or gone
    hs = 0
    if need_more and result == P_DONE:
        if pos == 0 and resumed:
            hs = _head_state(hs_s, hs_rl, hs_scanned)
        elif rlen - pos < HS_LIMIT:
            tp = _stage_now(g)
            _d, a, b, c = _scan_head(row, pos, rlen, 0, 0, 0, lim[0], lim[1])
            _stage_add(g, G_PARSE, tp)
            hs = _head_state(a, b, c)
    st[S_HEAD] = hs
    if pos:
        rest = rlen - pos
        if rest:
            c_memmove(_ptr(row, 0), _ptr(row, pos), rest)   # to the front
        st[S_RLEN] = rest
    return result


@njit(cache=True, _nrt=False)
def _route(row, mo, ml, po, pl, catch_all, path_idx, path_blob):
    """(route, head) for the method at row[mo:mo+ml] and the path at
    row[po:po+pl]: GET/HEAD of a static path, or of any other path when there
    is a catch-all; route -1 when Python must answer (a handler, 404, 405)."""
    if ml == 3 and row[mo] == 71 and row[mo + 1] == 69 and row[mo + 2] == 84:               # GET
        head = 0
    elif ml == 4 and row[mo] == 72 and row[mo + 1] == 69 and row[mo + 2] == 65 and row[mo + 3] == 68:
        head = 1                                                                          # HEAD
    else:
        return -1, 0
    route = catch_all
    for k in range(path_idx.shape[0]):
        if path_idx[k, 1] != pl:
            continue
        off = path_idx[k, 0]
        same = True
        for i in range(pl):
            if path_blob[off + i] != row[po + i]:
                same = False
                break
        if same:
            route = path_idx[k, 2]
            break
    return route, head


@njit(cache=True, _nrt=False)
def _read(L, slot, hup):
    """recv into the read row: 1 drained (EAGAIN, short read or EOF), 0 the row
    filled up, -1 the connection was closed on an error.  With `hup` (the event
    said the peer hung up) a short read is not taken as drained: reading goes on
    to the EOF, so a request and its FIN in one event still close promptly."""
    s = L.slots
    fd = s[slot, S_FD]
    row = L.rdata[slot]
    cap = row.shape[0]
    while s[slot, S_RLEN] < cap:
        rlen = s[slot, S_RLEN]
        room = cap - rlen
        n = c_recv(fd, _ptr(row, rlen), room, 0)
        if n < 0:
            e = _errno()
            if e == EINTR:
                continue
            if e == EAGAIN:
                return 1
            _close_slot(L, slot)
            return -1
        if n == 0:
            s[slot, S_FLAGS] |= F_PEER_CLOSED
            return 1
        s[slot, S_RLEN] = rlen + n
        if n < room and not hup:
            return 1
    return 0


@njit(cache=True, _nrt=False)
def _on_readable(L, slot, now, hup):
    """Read, answer, send; as the Python loop's _on_readable.  Returns True when
    the connection must be promoted to Python."""
    s = L.slots
    was_in_request = s[slot, S_FLAGS] & F_IN_REQ
    served_before = L.ctl[C_SERVED]
    drained = 1
    read = True
    while True:
        if read:
            t0 = _stage_now(L.stages)
            drained = _read(L, slot, hup)
            _stage_add(L.stages, G_READ, t0)
            if drained < 0:
                return False
        read = True
        blocked = False
        if s[slot, S_RLEN] > 0 and not s[slot, S_FLAGS] & F_CLOSING:
            _lend_big(L, slot)
            r = _process(L, slot)
            if r == P_PROMOTE:
                return True
            blocked = r == P_BLOCKED
            if not blocked:
                s[slot, S_FLAGS] &= ~F_PAUSED
        if s[slot, S_WLEN] > s[slot, S_WPOS]:
            t0 = _stage_now(L.stages)
            sent = _flush(L, slot)
            _stage_add(L.stages, G_WRITE, t0)
            if not sent:
                return False
        else:
            s[slot, S_WPOS] = 0
            s[slot, S_WLEN] = 0
            _return_big(L, slot)
        flags = s[slot, S_FLAGS]
        if flags & F_CLOSING and not flags & F_WANT_WRITE:
            _close_slot(L, slot)
            return False
        if flags & F_PEER_CLOSED:
            # the client half-closed: answer what it sent (done above), then close
            if not flags & F_WANT_WRITE:
                _close_slot(L, slot)
            return False
        if blocked:
            if flags & F_WANT_WRITE:
                s[slot, S_FLAGS] = flags | F_PAUSED          # EPOLLOUT resumes
                break
            # all sent: go on answering; a drained socket is not read again
            # first (edge-triggered: new bytes bring a new event)
            read = drained == 0
            continue
        if drained == 0:
            if s[slot, S_RLEN] == L.rdata.shape[1]:
                return True      # one head fills the row: Python's growable buffer takes over
            continue
        break
    if L.ctl[C_STOPPING] and s[slot, S_RLEN] == 0 and not s[slot, S_FLAGS] & F_WANT_WRITE:
        _close_slot(L, slot)
        return False
    # the request timeout runs from a request's first byte (a new request
    # begins when this round answered others); the idle timeout from the last
    # response on
    t0 = _stage_now(L.stages)
    if s[slot, S_RLEN] > 0:
        if not was_in_request or L.ctl[C_SERVED] != served_before:
            wheel_reset(L.wheel, slot, now + L.ctl[C_REQ_TO])
        s[slot, S_FLAGS] |= F_IN_REQ
    else:
        wheel_reset(L.wheel, slot, now + L.ctl[C_IDLE_TO])
        s[slot, S_FLAGS] &= ~F_IN_REQ
    _stage_add(L.stages, G_TIMERS, t0)
    return False


@njit(cache=True, _nrt=False)
def _send_and_close(L, fd, resp):
    off = L.resp_idx[resp, 0]
    c_send(fd, _ptr(L.resp_blob, off), L.resp_idx[resp, 1], MSG_NOSIGNAL)
    c_close(fd)


@njit(cache=True, _nrt=False)
def _accept(L, lfd, now):
    ctl = L.ctl
    for _ in range(ACCEPT_BATCH):
        if ctl[C_NFREE] == 0 and ctl[C_NCONNS] < ctl[C_MAXCONN]:
            ctl[C_NEED_SLOTS] = 1      # the driver grows the slabs; the listener is level-triggered
            return
        L.addrlen[0] = len(L.scratch)
        fd = c_accept4(lfd, _ptr(L.scratch, 0), _ptr(L.addrlen, 0), SOCK_FLAGS)
        if fd < 0:
            e = _errno()
            if e == EAGAIN:
                return
            skip = False
            for x in E_ACCEPT_SKIP:
                if e == x:
                    skip = True
            if skip:
                continue
            return                     # out of descriptors or memory: the rest waits in the backlog
        if fd >= len(L.fdmode):
            c_close(fd)
            continue
        if ctl[C_NCONNS] >= ctl[C_MAXCONN]:
            _send_and_close(L, fd, L.resp_idx.shape[0] - 2 + R_503)
            continue
        c_setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, _ptr(L.one, 0), 4)
        ctl[C_NFREE] -= 1
        slot = L.freelist[ctl[C_NFREE]]
        s = L.slots
        s[slot, S_FD] = fd
        s[slot, S_RLEN] = 0
        s[slot, S_WPOS] = 0
        s[slot, S_WLEN] = 0
        s[slot, S_FLAGS] = 0
        s[slot, S_BIG] = -1
        s[slot, S_HEAD] = 0
        wheel_reset(L.wheel, slot, now + ctl[C_IDLE_TO])
        L.fdmode[fd] = M_FAST
        L.fdslot[fd] = slot
        ctl[C_NCONNS] += 1
        _epoll_set(L, CTL_ADD, fd, EV_READ)


@njit(cache=True, _nrt=False)
def _expire(L, now):
    """When a tick ends: 408 and close a connection whose request is late,
    close an idle one (the wheel reports each expiry once)."""
    s = L.slots
    n = wheel_advance(L.wheel, now, L.expired)
    for e in range(n):
        slot = L.expired[e]
        if s[slot, S_FD] < 0:         # pragma: no cover - closing cancels the timer
            continue
        if s[slot, S_FLAGS] & F_IN_REQ:
            s[slot, S_FLAGS] |= F_CLOSING
            if _append(L, slot, L.resp_idx.shape[0] - 2 + R_408):
                if _flush(L, slot) and s[slot, S_FLAGS] & F_WANT_WRITE:
                    _close_slot(L, slot)      # not reading: do not wait for it
            else:
                _close_slot(L, slot)
        else:
            _close_slot(L, slot)


@njit(cache=True, nogil=True, _nrt=False)
def close_idle(L):
    """Graceful stop: close every native connection with no request in flight."""
    s = L.slots
    for slot in range(s.shape[0]):
        if s[slot, S_FD] >= 0 and s[slot, S_RLEN] == 0 and not s[slot, S_FLAGS] & F_WANT_WRITE:
            _close_slot(L, slot)


@njit(cache=True, nogil=True, _nrt=False)
def close_all(L):
    s = L.slots
    for slot in range(s.shape[0]):
        if s[slot, S_FD] >= 0:
            _close_slot(L, slot)


@njit(cache=True, nogil=True, _nrt=False)
def run_native(L, until):
    """epoll_wait and serve, until an event needs Python or the monotonic clock
    (ms) reaches `until`.  Returns how many rows of L.pyev the driver must
    handle: (fd, events) for Python's descriptors, (fd, -1, slot) for a
    connection to promote."""
    ctl = L.ctl
    npy = 0
    while True:
        now = now_ms(L)
        if now >= ctl[C_NEXT_TICK]:
            t0 = _stage_now(L.stages)
            _expire(L, now)
            ctl[C_NEXT_TICK] = wheel_next_end(L.wheel)
            _stage_add(L.stages, G_TIMERS, t0)
        wait = min(until, ctl[C_NEXT_TICK]) - now
        if wait < 0:
            wait = 0
        n = c_epoll_wait(ctl[C_EPFD], _ptr(L.evbuf, 0), MAX_EVENTS, wait)
        if n < 0:
            if _errno() == EINTR:
                return npy               # a signal: let the driver look at the stop flag
            return -1
        now = now_ms(L)
        for i in range(n):
            b = i * EV_SIZE
            ev = (np.int64(L.evbuf[b]) | (np.int64(L.evbuf[b + 1]) << 8) | (np.int64(L.evbuf[b + 2]) << 16)
                  | (np.int64(L.evbuf[b + 3]) << 24))
            d = b + EV_DATA
            fd = (np.int64(L.evbuf[d]) | (np.int64(L.evbuf[d + 1]) << 8) | (np.int64(L.evbuf[d + 2]) << 16)
                  | (np.int64(L.evbuf[d + 3]) << 24))
            mode = L.fdmode[fd]
            if mode == M_FAST:
                slot = L.fdslot[fd]
                hup = (ev & (EPOLLRDHUP | EPOLLHUP)) != 0
                promote = False
                if ev & EPOLLOUT:
                    t0 = _stage_now(L.stages)
                    sent = _flush(L, slot)
                    _stage_add(L.stages, G_WRITE, t0)
                    if not sent:
                        continue
                    flags = L.slots[slot, S_FLAGS]
                    if flags & F_PAUSED and not flags & F_WANT_WRITE:
                        L.slots[slot, S_FLAGS] = flags & ~F_PAUSED
                        promote = _on_readable(L, slot, now, hup)
                    elif ev & EV_INPUT:
                        promote = _on_readable(L, slot, now, hup)
                elif ev & EV_INPUT:
                    promote = _on_readable(L, slot, now, hup)
                if promote:
                    # the Python wheel takes the deadline over (see _promote)
                    L.slots[slot, S_DEADLINE] = L.wheel.deadline[slot]
                    L.slots[slot, S_HEAD] = 0     # a Session has its own scan (session.py)
                    wheel_cancel(L.wheel, slot)
                    L.fdmode[fd] = M_PYTHON       # later events go to Python
                    ctl[C_PROMOTED] += 1
                    L.pyev[npy, 0] = fd
                    L.pyev[npy, 1] = -1
                    L.pyev[npy, 2] = slot
                    npy += 1
            elif mode == M_LISTEN:
                _accept(L, fd, now)
            elif mode == M_PYTHON or mode == M_WAKE:
                L.pyev[npy, 0] = fd
                L.pyev[npy, 1] = ev
                L.pyev[npy, 2] = -1
                npy += 1
        if npy or ctl[C_NEED_SLOTS] or now >= until:
            return npy


# -- the driver ---------------------------------------------------------------------------
class NumbaLoop(PythonLoop):
    """The Numba loop (see the module docstring); Python-side connections are
    handled by the inherited PythonLoop methods."""
    name = "numba"
    supported_parsers = ("numba",)
    supported_buffers = ("numba",)

    def __init__(self, config, app):
        super().__init__(config, app)
        import resource
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        nfd = min(max(soft, 1024), 1 << 20)
        self._row = max(config.read_buffer, 1024)
        ctl = np.zeros(CTL_WORDS, np.int64)
        ctl[C_MAXCONN] = config.max_connections
        ctl[C_REQ_TO] = int(config.request_timeout * 1000)
        ctl[C_IDLE_TO] = int(config.idle_timeout * 1000)
        ctl[C_CATCH_ALL] = -1
        ctl[C_EPFD] = -1
        table = new_table(1)[1][0]
        self._L = NativeState(
            ctl=ctl, fdmode=np.zeros(nfd, np.int8), fdslot=np.zeros(nfd, np.int32),
            slots=np.zeros((0, SLOT_FIELDS), np.int64), freelist=np.zeros(0, np.int32),
            rdata=np.zeros((0, self._row), np.uint8), wdata=np.zeros((0, WRITE_ROW), np.uint8),
            evbuf=np.zeros(MAX_EVENTS * EV_SIZE, np.uint8), evrec=np.zeros(16, np.uint8),
            pyev=np.zeros((MAX_EVENTS, 3), np.int64), table=table, limits=limits_array(config.limits),
            path_blob=np.zeros(1, np.uint8), path_idx=np.zeros((0, 3), np.int64),
            resp_blob=np.zeros(1, np.uint8), resp_idx=np.zeros((2, 2), np.int64),
            scratch=np.zeros(65536, np.uint8), addrlen=np.zeros(1, np.uint32),
            one=np.array([1, 0, 0, 0], np.uint8), ts=np.zeros(2, np.int64),
            memo=np.zeros(MEMO_MAX, np.uint8),
            wheel=new_wheel(TICK_MS, WHEEL_SLOTS, 0, time.clock_gettime_ns(CLOCK_MONOTONIC) // 1000000),
            expired=np.zeros(0, np.int64),
            wbig=np.zeros((BIG_ROWS, BIG_ROW), np.uint8), bigfree=np.arange(BIG_ROWS, dtype=np.int32),
            heads=np.zeros((MAX_HEADS, HEAD_FIELDS), np.int64), stages=np.zeros(STAGE_WORDS, np.int64))
        # stage counters: self.stages (PythonLoop.__init__) is set when the switch is on
        self._L.stages[G_ON] = 1 if self.stages is not None else 0
        ctl[C_NBIGFREE] = BIG_ROWS
        # the head memo (parsers/memo.py): config.head_memo, off by default (-1)
        ctl[C_MEMO_LEN] = 0 if config.head_memo else -1
        # folding runs of equal requests: config.fold_runs, off by default (0)
        ctl[C_FOLD] = 1 if config.fold_runs else 0
        self._grow(16)
        self._date = None
        self._routes()
        self.jit_seconds = self._compile()

    # -- native tables ---------------------------------------------------------
    def _grow(self, count):
        """Room for `count` native connections (slab rows), keeping the live ones."""
        L = self._L
        old = L.slots.shape[0]
        if count <= old:
            return
        slots = np.zeros((count, SLOT_FIELDS), np.int64)
        slots[:, S_FD] = -1
        slots[:, S_BIG] = -1
        slots[:old] = L.slots
        # Copy only the rows that hold bytes (unanswered input, unsent output):
        # the new slabs come zeroed from the kernel, so the rows of idle
        # connections stay untouched pages that cost no RSS until they are used
        # (copying whole slabs made every row of every connection resident).
        rdata = _slab(count, self._row)
        live = np.flatnonzero(L.slots[:, S_RLEN] > 0)
        rdata[live] = L.rdata[live]
        wdata = _slab(count, WRITE_ROW)
        live = np.flatnonzero(L.slots[:, S_WLEN] > 0)
        wdata[live] = L.wdata[live]
        nfree = int(L.ctl[C_NFREE])
        freelist = np.zeros(count, np.int32)
        freelist[:nfree] = L.freelist[:nfree]
        new = np.arange(count - 1, old - 1, -1, dtype=np.int32)
        freelist[nfree:nfree + len(new)] = new
        L.ctl[C_NFREE] = nfree + len(new)
        self._L = L._replace(slots=slots, rdata=rdata, wdata=wdata, freelist=freelist,
                             wheel=grow_wheel(L.wheel, count), expired=np.zeros(count, np.int64))

    def _routes(self):
        """Copy the app's static responses (and 503/408) into the native tables;
        called again whenever the Date second changes."""
        app = self.app
        if app.date == self._date:
            return
        self._date = app.date
        statics = list(app.static.items())
        blob = bytearray()
        idx = []
        routes = [r for _, r in statics] + ([app.catch_all] if app.catch_all is not None else [])
        for r in routes:
            for head in (False, True):
                for minor in (0, 1):
                    for ka in (False, True):
                        data = r.responses[(head, minor, ka)]
                        idx.append((len(blob), len(data)))
                        blob += data
        for extra in (app.error(503, 1, False), app.error(408, 1, False)):
            idx.append((len(blob), len(extra)))
            blob += extra
        resp_idx = np.array(idx, np.int64).reshape(-1, 2)
        paths = sorted(set(app._paths) | set(app.static))
        pblob = bytearray()
        pidx = []
        static_index = {p: k for k, (p, _) in enumerate(statics)}
        for p in paths:
            pidx.append((len(pblob), len(p), static_index.get(p, -1)))
            pblob += p
        L = self._L
        if L.ctl[C_MEMO_LEN] > 0:
            L.ctl[C_MEMO_LEN] = 0            # the memo points at response rows: forget it
        L.ctl[C_CATCH_ALL] = len(statics) if app.catch_all is not None else -1
        L.ctl[C_MAXRESP] = int(resp_idx[:, 1].max())
        self._L = L._replace(resp_blob=np.frombuffer(bytes(blob) or b"\0", np.uint8).copy(),
                             resp_idx=resp_idx,
                             path_blob=np.frombuffer(bytes(pblob) or b"\0", np.uint8).copy(),
                             path_idx=np.array(pidx, np.int64).reshape(-1, 3))

    def _compile(self):
        """JIT every native function now (in the supervisor, before the fork):
        one run over an empty epoll set.  Returns the seconds it took."""
        t0 = time.perf_counter()
        ep = select.epoll()
        try:
            self._L.ctl[C_EPFD] = ep.fileno()
            self._L.ctl[C_NEXT_TICK] = 0
            run_native(self._L, 0)
            close_idle(self._L)
            close_all(self._L)
        finally:
            self._L.ctl[C_EPFD] = -1
            ep.close()
        return time.perf_counter() - t0

    # -- the driver loop -------------------------------------------------------
    def run(self, lsock):
        cfg = self.config
        lsock.setblocking(False)
        self.lsock = lsock
        ep = self.ep = select.epoll()
        L = self._L
        L.ctl[C_EPFD] = ep.fileno()
        lfd = lsock.fileno()
        ep.register(lfd, select.EPOLLIN)          # level-triggered: accept resumes after growth
        L.fdmode[lfd] = M_LISTEN
        self._wake_r.setblocking(False)
        wfd = self._wake_r.fileno()
        ep.register(wfd, select.EPOLLIN)
        L.fdmode[wfd] = M_WAKE
        self.wheel = TimerWheel(tick=0.05, slots=2048, now=time.monotonic())
        conns = self.conns
        app = self.app
        accepting = True
        while True:
            now = time.monotonic()
            app.refresh(time.time())
            self._routes()
            L = self._L
            timeout = self.wheel.next_timeout(now)
            if self.stopping:
                if accepting:
                    accepting = False
                    ep.unregister(lfd)
                    L.fdmode[lfd] = M_NONE
                    L.ctl[C_STOPPING] = 1
                    self._stop_deadline = now + cfg.graceful_timeout
                    for c in list(conns.values()):
                        if not c.session.in_request and not c.want_write:
                            self._close(c)
                    close_idle(L)
                if L.ctl[C_NCONNS] == 0 or now >= self._stop_deadline:
                    break
            # back to Python at the next Python timer, the next Date second, or in 50 ms
            wait = 0.05 if timeout is None else min(timeout, 0.05)
            wait = min(wait, 1.0 - (time.time() % 1.0) + 0.001)
            until = int((now + wait) * 1000) + 1
            npy = run_native(L, until)
            if npy < 0:
                raise OSError("epoll_wait failed in the numba loop")
            if L.ctl[C_NEED_SLOTS]:
                L.ctl[C_NEED_SLOTS] = 0
                self._grow(min(2 * L.slots.shape[0], max(cfg.max_connections, 16)))
                L = self._L
            now = time.monotonic()
            if npy:
                app.refresh(time.time())
                rows = L.pyev[:npy].tolist()
                for fd, ev, slot in rows:
                    if ev == -1:
                        self._promote(fd, slot, now)
                        continue
                    c = conns.get(fd)
                    if c is None:
                        if fd == wfd:
                            try:
                                self._wake_r.recv(4096)
                            except OSError:
                                pass
                        continue
                    self._on_event(c, ev, now)     # a promoted connection: PythonLoop's code
            for c in self.wheel.advance(now):
                self._expire(c)
            if self.stopping:
                for c in list(conns.values()):
                    if not c.closed and not c.session.in_request and not c.want_write:
                        self._close(c)
        for c in list(conns.values()):
            self._close(c)
        close_all(self._L)
        self._L.ctl[C_EPFD] = -1
        ep.close()
        if self.stages is not None:        # native stages plus the promoted connections' own
            from .stages import STAGES
            for k, name in enumerate(STAGES):
                self.stages.ns[name] += int(self._L.stages[k])
            self.stages.requests += int(self._L.ctl[C_SERVED])
            self.stages.dump(self.name)

    def _promote(self, fd, slot, now):
        """Hand a native connection to Python: its buffered input and pending
        output move into a Session; the native slot is freed."""
        L = self._L
        cfg = self.config
        _fd, rlen, wpos, wlen, flags, deadline, big = L.slots[slot, :7].tolist()
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)
        session = Session(buffers.create_read(cfg.buffer, cfg.read_buffer, cfg.read_buffer_limit),
                          buffers.create_write(cfg.buffer, cfg.write_buffer_limit), self.parser, self.app,
                          fold_runs=cfg.fold_runs)
        data = L.rdata[slot, :rlen].tobytes()
        while data:
            span = session.rbuf.free_span()
            k = min(len(span), len(data))
            span[:k] = data[:k]
            del span
            session.rbuf.commit(k)
            data = data[k:]
        if wlen > wpos:
            wrow = L.wbig[big] if big >= 0 else L.wdata[slot]
            session.wbuf.append(wrow[wpos:wlen].tobytes())
        if big >= 0:                      # the big row goes back to the native side's pool
            L.bigfree[L.ctl[C_NBIGFREE]] = big
            L.ctl[C_NBIGFREE] += 1
            L.slots[slot, S_BIG] = -1
        session.closing = bool(flags & F_CLOSING)
        session.in_request = bool(flags & F_IN_REQ)
        c = _Conn(sock, session)
        c.want_write = bool(flags & F_WANT_WRITE)
        c.peer_closed = bool(flags & F_PEER_CLOSED)
        c.paused = bool(flags & F_PAUSED)
        L.slots[slot, S_FD] = -1
        L.freelist[L.ctl[C_NFREE]] = slot
        L.ctl[C_NFREE] += 1
        self.conns[fd] = c
        left = (deadline - int(now * 1000)) / 1000.0
        self.wheel.schedule(c, now + max(left, 0.0))
        self._on_readable(c, now)

    def _close(self, c):
        if c.closed:
            return
        super()._close(c)
        self._L.fdmode[c.fd] = M_NONE
        self._L.ctl[C_NCONNS] -= 1

    def _accept(self, lsock, now):  # pragma: no cover - the native side accepts
        raise AssertionError("the numba loop accepts in nopython code")


_ = (StaticRoute, _READ)   # re-exported names the docstring refers to
register("numba", NumbaLoop)
