"""The project's own loop in pure Python: select.epoll, edge-triggered.

Per read event: recv_into the ring buffer's free span until the socket is
drained, answer every complete request (server.session), send all the
responses in one send().  EPOLLOUT is registered only while output is pending;
while more than write_buffer_limit bytes are queued, input is left unread
(backpressure).  Request and idle timeouts live on a timer wheel whose reset
is an attribute store.
"""
import errno
import select
import socket
import time

from .. import buffers, parsers
from ..server.session import CLOSE, Session
from . import register, stages
from .timer_wheel import TimerWheel

EPOLLIN, EPOLLOUT, EPOLLET = select.EPOLLIN, select.EPOLLOUT, select.EPOLLET
EPOLLERR, EPOLLHUP, EPOLLRDHUP = select.EPOLLERR, select.EPOLLHUP, select.EPOLLRDHUP
_READ = EPOLLIN | EPOLLRDHUP | EPOLLET
_READ_WRITE = _READ | EPOLLOUT
ACCEPT_BATCH = 256
_AGAIN = (errno.EAGAIN, errno.EWOULDBLOCK)


class _Conn:
    __slots__ = ("sock", "fd", "session", "want_write", "paused", "timer_deadline", "timer_slot",
                 "closed", "peer_closed")

    def __init__(self, sock, session):
        self.sock, self.fd, self.session = sock, sock.fileno(), session
        self.want_write = False
        self.paused = False
        self.timer_deadline = 0.0
        self.timer_slot = None
        self.closed = False
        self.peer_closed = False


class PythonLoop:
    name = "python"

    def __init__(self, config, app):
        self.config, self.app = config, app
        self.parser = parsers.create(config.parser, config.limits, head_memo=config.head_memo,
                                     fold_runs=config.fold_runs)   # stateless: one per worker
        # stage counters (loops/stages.py): off unless KOURIER_LAB_STAGE_COUNTERS is set
        self.stages = stages.from_env()
        if self.stages is not None:
            self.parser = stages.timed_parser(self.parser, self.stages)
            stages.time_routes(app, self.stages)
        self.conns = {}
        self.stopping = False
        self._stop_deadline = None
        self._wake_r, self._wake_w = socket.socketpair()

    def request_stop(self):
        self.stopping = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    # -- main loop -----------------------------------------------------------
    def run(self, lsock):
        cfg = self.config
        lsock.setblocking(False)
        self.lsock = lsock
        ep = self.ep = select.epoll()
        lfd = lsock.fileno()
        ep.register(lfd, EPOLLIN)
        self._wake_r.setblocking(False)
        wfd = self._wake_r.fileno()
        ep.register(wfd, EPOLLIN)
        self.wheel = TimerWheel(tick=0.05, slots=2048, now=time.monotonic())
        conns = self.conns
        app = self.app
        accepting = True
        while True:
            now = time.monotonic()
            timeout = self.wheel.next_timeout(now)
            if self.stopping:
                if accepting:
                    accepting = False
                    ep.unregister(lfd)
                    self._stop_deadline = now + cfg.graceful_timeout
                    for c in list(conns.values()):
                        if not c.session.in_request and not c.want_write:
                            self._close(c)
                if not conns or now >= self._stop_deadline:
                    break
                timeout = 0.05 if timeout is None else min(timeout, 0.05)
            try:
                events = ep.poll(-1 if timeout is None else timeout)
            except InterruptedError:
                continue
            now = time.monotonic()
            app.refresh(time.time())
            for fd, ev in events:
                c = conns.get(fd)
                if c is None:
                    if fd == lfd:
                        self._accept(lsock, now)
                    elif fd == wfd:
                        try:
                            self._wake_r.recv(4096)
                        except OSError:
                            pass
                    continue
                self._on_event(c, ev, now)
            if self.stages is not None:
                t0 = stages.now_ns()
                for c in self.wheel.advance(now):
                    self._expire(c)
                self.stages.add("timers", t0)
            else:
                for c in self.wheel.advance(now):
                    self._expire(c)
            if self.stopping:
                for c in list(conns.values()):
                    if not c.closed and not c.session.in_request and not c.want_write:
                        self._close(c)
        for c in list(conns.values()):
            self._close(c)
        ep.close()
        if self.stages is not None:
            self.stages.dump(self.name)

    def _on_event(self, c, ev, now):
        """One epoll event of a connection (the Numba loop's driver shares it)."""
        if ev & EPOLLOUT:
            self._flush(c)
            if c.closed:
                return
            if c.paused and not c.session.wbuf.over_limit():
                c.paused = False
                self._on_readable(c, now)
                return
        if ev & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP):
            self._on_readable(c, now, ev & (EPOLLHUP | EPOLLRDHUP))

    def _accept(self, lsock, now):
        cfg = self.config
        for _ in range(ACCEPT_BATCH):
            try:
                sock, _addr = lsock.accept()
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    return          # out of descriptors: leave the rest in the backlog
                if e.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue
                raise
            sock.setblocking(False)
            if len(self.conns) >= cfg.max_connections:
                try:
                    sock.send(self.app.error(503, 1, False))
                except OSError:
                    pass
                sock.close()
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            session = Session(buffers.create_read(cfg.buffer, cfg.read_buffer, cfg.read_buffer_limit),
                              buffers.create_write(cfg.buffer, cfg.write_buffer_limit), self.parser, self.app,
                              fold_runs=cfg.fold_runs)
            c = _Conn(sock, session)
            self.conns[c.fd] = c
            self.ep.register(c.fd, _READ)
            self.wheel.schedule(c, now + cfg.idle_timeout)

    def _on_readable(self, c, now, hangup=0):
        s = c.session
        rbuf = s.rbuf
        sock = c.sock
        was_in_request = s.in_request
        served = s.requests
        st = self.stages
        if st is not None:
            t0 = stages.now_ns()
        got = 0
        while True:
            span = rbuf.free_span()
            room = len(span)
            if not room:
                break               # buffer at its limit; process what is there
            try:
                n = sock.recv_into(span)
            except BlockingIOError:
                break
            except OSError:
                self._close(c)
                return
            if n == 0:
                c.peer_closed = True
                break
            rbuf.commit(n)
            got += n
            if n < room and not hangup:
                break               # drained: a short read empties the socket (but after a
                                    # hang-up, read on to see the EOF: no later edge comes)
        if st is not None:
            st.add("read", t0)
        wbuf = s.wbuf
        if (got or len(rbuf)) and not s.closing:
            # output is pending only while a flush waits for the socket (want_write)
            if c.want_write and wbuf.over_limit():
                c.paused = True
            else:
                if (s.process() if st is None else st.process(s)) == CLOSE:
                    s.closing = True
                if wbuf.over_limit():
                    c.paused = True
            # (a buffer that empties gives its memory back by itself: an idle
            # connection holds none, see kourier_lab/buffers)
        if len(wbuf):
            self._flush(c)
            if c.closed:
                return
        if s.closing and not c.want_write:
            self._close(c)
            return
        if c.peer_closed:
            # the client half-closed: answer what it sent (done above), then close
            if not c.want_write:
                self._close(c)
            return
        # timers: the request timeout runs from a request's first byte to its
        # last; the idle timeout from the last response on
        if st is not None:
            t0 = stages.now_ns()
        if s.in_request:
            # restart only when a new request began (not for every byte of a
            # slow one), including one that began in a round that finished others
            if not was_in_request or s.requests != served:
                self.wheel.reset(c, now + self.config.request_timeout)
        else:
            self.wheel.reset(c, now + self.config.idle_timeout)
        if st is not None:
            st.add("timers", t0)

    def _flush(self, c):
        wbuf = c.session.wbuf
        st = self.stages
        if st is not None:
            t0 = stages.now_ns()
        pending = len(wbuf)
        while pending:
            try:
                n = c.sock.send(wbuf.view())
            except BlockingIOError:
                break
            except OSError:
                self._close(c)
                return
            wbuf.consume(n)
            pending -= n
        if st is not None:
            st.add("write", t0)
        if pending:
            if not c.want_write:
                c.want_write = True
                self.ep.modify(c.fd, _READ_WRITE)
        else:
            if c.want_write:
                c.want_write = False
                self.ep.modify(c.fd, _READ)
            if c.session.closing or (c.peer_closed and not c.session.in_request):
                self._close(c)

    def _expire(self, c):
        if c.closed:
            return
        s = c.session
        if s.in_request:
            # 408 then close; best effort, the socket may be full
            s.wbuf.append(s.timeout_response())
            s.closing = True
            self._flush(c)
            if not c.closed and c.want_write:
                # could not send it all: do not wait for a client that is not reading
                self._close(c)
        else:
            self._close(c)

    def _close(self, c):
        if c.closed:
            return
        c.closed = True
        self.wheel.cancel(c)
        try:
            self.ep.unregister(c.fd)
        except (OSError, ValueError):
            pass
        self.conns.pop(c.fd, None)
        lingering_close(c.sock)


def lingering_close(sock):
    """Close without turning unread input into a RST that could destroy the
    response just sent: discard what the client already sent, send FIN, close."""
    try:
        for _ in range(16):
            if not sock.recv(65536):
                break
    except OSError:
        pass
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


register("python", PythonLoop)
