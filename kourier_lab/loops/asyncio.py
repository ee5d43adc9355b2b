"""The baseline most Python people know: an asyncio BufferedProtocol server.

Runs on the stdlib loop, or on uvloop with `--uvloop` (when installed).  The
transport reads straight into the ring buffer's free span (get_buffer), the
shared session logic answers every complete request, and one transport.write
sends them.  Timeouts use the same timer wheel as the Python loop, advanced by
one periodic callback instead of one TimerHandle per connection.
"""
import asyncio
import time

from .. import buffers, parsers
from ..server.session import CLOSE, Session
from . import register, stages
from .timer_wheel import TimerWheel

TICK = 0.05


class _Protocol(asyncio.BufferedProtocol):
    __slots__ = ("owner", "session", "transport", "timer_deadline", "timer_slot", "paused", "closed")

    def __init__(self, owner):
        self.owner = owner
        self.session = None
        self.transport = None
        self.timer_deadline = 0.0
        self.timer_slot = None
        self.paused = False
        self.closed = False

    def connection_made(self, transport):
        o = self.owner
        cfg = o.config
        self.transport = transport
        if len(o.conns) >= cfg.max_connections or o.stopping:
            transport.write(o.app.error(503, 1, False))
            transport.close()
            self.closed = True
            return
        self.session = Session(buffers.create_read(cfg.buffer, cfg.read_buffer, cfg.read_buffer_limit),
                               buffers.create_write(cfg.buffer, cfg.write_buffer_limit), o.parser, o.app,
                               fold_runs=cfg.fold_runs)
        o.conns.add(self)
        o.wheel.schedule(self, time.monotonic() + cfg.idle_timeout)

    def get_buffer(self, sizehint):
        span = self.session.rbuf.free_span()
        if not len(span):
            # cannot happen while limits hold (head and body limits < buffer limit);
            # give a scratch buffer and fail the connection rather than spin
            self._fail(431)
            return bytearray(1)
        return span

    def buffer_updated(self, nbytes):
        s = self.session
        if self.closed or s is None:
            return
        s.rbuf.commit(nbytes)
        self._process()

    def _process(self):
        s = self.session
        was_in_request = s.in_request
        served = s.requests
        o = self.owner
        if s.closing:
            return
        st = o.stages
        result = s.process() if st is None else st.process(s)
        if st is not None:
            t0 = stages.now_ns()
        if len(s.wbuf):
            view = s.wbuf.view()
            # the transport may keep what it could not send: hand it bytes we never reuse
            self.transport.write(view if isinstance(view.obj, bytes) else view.tobytes())
            s.wbuf.consume(len(view))
        if st is not None:
            t0 = st.add("write", t0)       # transport.write sends at once when it can
        if result == CLOSE:
            self._close()
            return
        now = time.monotonic()
        if s.in_request:
            if not was_in_request or s.requests != served:   # a new request began
                o.wheel.reset(self, now + o.config.request_timeout)
        else:
            o.wheel.reset(self, now + o.config.idle_timeout)
            if o.stopping:
                self._close()
        if st is not None:
            st.add("timers", t0)

    def _fail(self, status):
        if not self.closed:
            self.transport.write(self.owner.app.error(status, 1, False))
            self._close()

    def _close(self):
        if not self.closed:
            self.closed = True
            self.owner.wheel.cancel(self)
            self.transport.close()      # flushes what is queued, then closes
        self.owner.conns.discard(self)

    def pause_writing(self):
        # the transport's queue is over its high-water mark: stop reading
        self.paused = True
        self.transport.pause_reading()

    def resume_writing(self):
        self.paused = False
        if not self.closed:
            self.transport.resume_reading()
            if len(self.session.rbuf):
                self._process()

    def eof_received(self):
        return False      # close once what we queued is written

    def connection_lost(self, exc):
        self.closed = True
        self.owner.wheel.cancel(self)
        self.owner.conns.discard(self)

    def expire(self):
        if self.closed:
            return
        if self.session.in_request:
            self.transport.write(self.session.timeout_response())
        stuck = self.transport.get_write_buffer_size() > 0
        self._close()
        if stuck:
            self.transport.abort()     # do not wait for a client that does not read


class AsyncioLoop:
    name = "asyncio"

    def __init__(self, config, app):
        self.config, self.app = config, app
        self.parser = parsers.create(config.parser, config.limits, head_memo=config.head_memo,
                                     fold_runs=config.fold_runs)
        # stage counters (loops/stages.py): off unless KOURIER_LAB_STAGE_COUNTERS is set;
        # the reads happen inside asyncio's transport and are not counted here
        self.stages = stages.from_env()
        if self.stages is not None:
            self.parser = stages.timed_parser(self.parser, self.stages)
            stages.time_routes(app, self.stages)
        self.conns = set()
        self.stopping = False
        self.loop = None

    def request_stop(self):
        self.stopping = True
        if self.loop is not None:
            self.loop.call_soon_threadsafe(lambda: None)

    def run(self, lsock):
        if self.config.uvloop:
            try:
                import uvloop
            except ImportError:
                raise ImportError("--uvloop needs the uvloop package: pip install uvloop") from None
            loop = uvloop.new_event_loop()
        else:
            loop = asyncio.new_event_loop()
        self.loop = loop
        asyncio.set_event_loop(loop)
        self.wheel = TimerWheel(tick=TICK, slots=2048, now=time.monotonic())
        try:
            loop.run_until_complete(self._main(lsock))
        finally:
            loop.close()
            if self.stages is not None:
                self.stages.dump(self.name, {"uncounted": ["read"]})

    async def _main(self, lsock):
        server = await self.loop.create_server(lambda: _Protocol(self), sock=lsock,
                                               backlog=self.config.backlog)
        while not self.stopping:
            await asyncio.sleep(TICK)
            self._tick()
        server.close()
        deadline = time.monotonic() + self.config.graceful_timeout
        for p in list(self.conns):
            if not p.session.in_request:
                p._close()
        while self.conns and time.monotonic() < deadline:
            await asyncio.sleep(TICK)
            self._tick()
            for p in list(self.conns):
                if not p.session.in_request and not p.transport.get_write_buffer_size():
                    p._close()
        for p in list(self.conns):
            p.transport.abort()
        await asyncio.sleep(0)

    def _tick(self):
        self.app.refresh(time.time())
        t0 = stages.now_ns()
        for p in self.wheel.advance(time.monotonic()):
            p.expire()
        if self.stages is not None:
            self.stages.add("timers", t0)


register("asyncio", AsyncioLoop)
