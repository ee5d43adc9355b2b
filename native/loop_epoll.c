/*
 * loop_epoll.c -- the C loop's epoll driver (edge-triggered): accept4 in
 * batches, recv into the connection's ring (or the loop's read block),
 * process() (loop.c), one sendmsg/send per read, EPOLLOUT only while the
 * socket is full.  The per-connection logic is loop.c's; this file only
 * moves bytes and waits.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loop_shared.h"

#define MAX_EVENTS 512

static void set_events(kl_loop *L, conn *c, int want_write)
{
    struct epoll_event ev;
    ev.events = EPOLLIN | EPOLLRDHUP | EPOLLET | (want_write ? EPOLLOUT : 0);
    ev.data.ptr = c;
    epoll_ctl(L->ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_write = (uint8_t)want_write;
}

static void flush(kl_loop *L, conn *c)
{
    int full = 0;
    if (c->staged) {                    /* the write buffer is empty: the staged answers go first */
        struct iovec *v = L->stage;
        int nv = L->nstage;
        while (c->staged) {
            struct msghdr msg = {0};
            msg.msg_iov = v;
            msg.msg_iovlen = (size_t)nv;
            ssize_t n = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    break;
                if (errno == EINTR)
                    continue;
                close_conn(L, c);
                return;
            }
            c->staged -= (size_t)n;
            while (n > 0) {             /* drop what was sent */
                if ((size_t)n >= v->iov_len) {
                    n -= (ssize_t)v->iov_len;
                    v++, nv--;
                } else {
                    v->iov_base = (uint8_t *)v->iov_base + n;
                    v->iov_len -= (size_t)n;
                    n = 0;
                }
            }
        }
        L->nstage = 0;
        if (c->staged) {                /* the socket is full: keep the rest as copies */
            memmove(L->stage, v, (size_t)nv * sizeof *v);
            L->nstage = nv;
            unstage(L, c);
            full = 1;
        }
    }
    while (!full && pending(c)) {
        ssize_t n = send(c->fd, c->wb.data + c->wb.start, pending(c), MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            if (errno == EINTR)
                continue;
            close_conn(L, c);
            return;
        }
        kl_wbuf_consume(&c->wb, (size_t)n);
    }
    if (pending(c)) {
        if (!c->want_write)
            set_events(L, c, 1);
        return;
    }
    if (c->want_write)
        set_events(L, c, 0);
    if (c->wb.cap) {                    /* drained: an idle connection keeps no output memory */
        free(c->wb.data);
        kl_wbuf_init(&c->wb, NULL, 0, c->wb.limit);
    }
    if (c->closing || (c->peer_closed && !c->in_request))
        close_conn(L, c);
}


static void do_accept(kl_loop *L)
{
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = accept4(L->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* out of descriptors or memory: the listener (level-triggered)
                 * would wake us at once, again and again; leave the backlog
                 * alone for 100 ms */
                epoll_ctl(L->ep, EPOLL_CTL_DEL, L->lfd, NULL);
                L->accept_paused = 1;
                L->accept_resume = L->cur_tick + 10;
            }
            return;                     /* EAGAIN: the backlog is empty */
        }
        if (refuse_over_limit(L, fd))
            continue;
        conn *c = conn_open(L, fd, sizeof *c);
        if (!c) {
            close(fd);
            return;
        }
        struct epoll_event ev;
        ev.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
        ev.data.ptr = c;
        if (epoll_ctl(L->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            free(c);
            close(fd);
            continue;
        }
        conn_link(L, c);
    }
}

static void serve_readable(kl_loop *L, conn *c)
{
    if (c->paused)
        return;                         /* EPOLLOUT resumes it */
    int was_in_request = c->in_request;
    size_t answered = 0;
again:
    for (;;) {
        int full = 0;
        int64_t t_read = stage_now(L);
        for (;;) {
            size_t room;
            if (ring_prepare(L, c, &room) < 0) {
                close_conn(L, c);
                return;
            }
            if (!room) {
                full = 1;               /* at the limit: process what is there */
                break;
            }
            ssize_t n = recv(c->fd, c->rb.data + c->rb.tail, room, 0);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    break;
                if (errno == EINTR)
                    continue;
                close_conn(L, c);
                return;
            }
            if (n == 0) {
                c->peer_closed = 1;
                break;
            }
            kl_ring_commit(&c->rb, (size_t)n);
            if ((size_t)n < room && !c->hangup)
                break;                  /* a short read drained the socket */
        }
        STAGE_ADD(L, KL_STAGE_READ, t_read);
        size_t before = c->rb.tail - c->rb.head;
        if (before && !c->closing) {
            if (pending(c) > c->wb.limit) {
                c->paused = 1;
            } else {
                answered += process(L, c);
                if (pending(c) > c->wb.limit)
                    c->paused = 1;
            }
        }
        if (!full || c->paused || c->closing || c->peer_closed || c->rb.tail - c->rb.head == before)
            break;
    }
    if (pending(c)) {
        int64_t t_write = stage_now(L);
        flush(L, c);
        STAGE_ADD(L, KL_STAGE_WRITE, t_write);
        if (c->closed)
            return;
        if (c->paused && !c->closing && pending(c) <= c->wb.limit) {
            c->paused = 0;              /* the socket took it all: no EPOLLOUT will come */
            goto again;
        }
    }
    if (c->closing && !c->want_write) {
        close_conn(L, c);
        return;
    }
    if (c->peer_closed) {
        if (!c->want_write)
            close_conn(L, c);
        return;
    }
    /* the request timeout runs from a request's first byte to its last; the
     * idle timeout from the last response on, and from the moment backpressure
     * stopped reading (the client cannot send while it does not read: its request
     * timeout starts again when reading resumes) */
    int64_t t_timers = stage_now(L);
    if (c->paused) {
        timer_set(L, c, L->cur_tick + L->idle_ticks);
    } else if (c->in_request) {
        /* a new request began in this round: the one still incomplete */
        if (!was_in_request || answered)
            timer_set(L, c, L->cur_tick + L->request_ticks);
    } else {
        timer_set(L, c, L->cur_tick + L->idle_ticks);
    }
    STAGE_ADD(L, KL_STAGE_TIMERS, t_timers);
}

/* A connection owns read memory only while it holds bytes it could not
 * answer yet (an incomplete request, or input paused by backpressure): it
 * reads into the loop's scratch block (read_buffer bytes, one per loop), and
 * what is left afterwards is copied into a block of its own, sized to it;
 * that block is freed as soon as it empties.  An idle keep-alive connection
 * costs its struct and nothing else. */
static void on_readable(kl_loop *L, conn *c)
{
    if (!c->rb.data) {
        if (!L->rscratch && !(L->rscratch = malloc(L->cfg.read_buffer))) {
            close_conn(L, c);
            return;
        }
        kl_ring_init(&c->rb, L->rscratch, L->cfg.read_buffer, c->rb.limit);
    }
    serve_readable(L, c);
    size_t len = c->rb.tail - c->rb.head;
    if (c->rb.data == L->rscratch) {
        if (c->closed || !len) {
            ring_release(c);
            return;
        }
        size_t cap = own_capacity(len, c->rb.limit);
        uint8_t *mem = malloc(cap);
        if (!mem) {
            ring_release(c);
            close_conn(L, c);
            return;
        }
        kl_ring_move(&c->rb, mem, cap);
    } else if (!len && !c->closed) {
        free(c->rb.data);               /* emptied: give it back */
        ring_release(c);
    }
}


static int epoll_run(kl_loop *L)
{
    struct epoll_event ev, events[MAX_EVENTS];
    int lfd = L->lfd, sigfd = L->sigfd;
    L->ep = epoll_create1(EPOLL_CLOEXEC);
    if (L->ep < 0)
        return -errno;
    ev.events = EPOLLIN;                /* level-triggered: a capped accept batch is resumed */
    ev.data.ptr = &L->tags[0];
    if (epoll_ctl(L->ep, EPOLL_CTL_ADD, lfd, &ev) < 0)
        goto fail;
    ev.data.ptr = &L->tags[1];
    if (epoll_ctl(L->ep, EPOLL_CTL_ADD, L->evfd, &ev) < 0)
        goto fail;
    if (sigfd >= 0) {
        ev.data.ptr = &L->tags[2];
        if (epoll_ctl(L->ep, EPOLL_CTL_ADD, sigfd, &ev) < 0)
            goto fail;
    }
    L->accepting = 1;
    int64_t stop_deadline = 0;
    refresh_date(L);
    for (;;) {
        int64_t now_ns = mono_ns();
        int timeout = -1;
        int64_t next = wheel_next(L);
        if (next >= 0) {
            int64_t at = (L->cur_tick + next) * TICK_NS;
            timeout = at > now_ns ? (int)((at - now_ns) / 1000000 + 1) : 0;
        }
        if (L->accept_paused && !L->stop) {
            int64_t at = L->accept_resume * TICK_NS;
            if (now_ns >= at) {
                L->accept_paused = 0;
                ev.events = EPOLLIN;
                ev.data.ptr = &L->tags[0];
                epoll_ctl(L->ep, EPOLL_CTL_ADD, lfd, &ev);
            } else {
                int ms = (int)((at - now_ns) / 1000000 + 1);
                if (timeout < 0 || timeout > ms)
                    timeout = ms;
            }
        }
        if (L->stop) {
            if (L->accepting) {
                L->accepting = 0;
                if (!L->accept_paused)
                    epoll_ctl(L->ep, EPOLL_CTL_DEL, lfd, NULL);
                stop_deadline = now_ns + (int64_t)(L->cfg.graceful_timeout * 1e9);
                close_idle(L);
                free_dead(L);
            }
            if (!L->conns || now_ns >= stop_deadline)
                break;
            if (timeout < 0 || timeout > 50)
                timeout = 50;
        }
        int n = epoll_wait(L->ep, events, MAX_EVENTS, timeout);
        if (n < 0) {
            if (errno == EINTR) {
                kl_py_signals(L->py);   /* let Python run its signal handlers */
                continue;
            }
            goto fail;
        }
        refresh_date(L);
        /* expire what is due first: the deadlines set below count from cur_tick = now */
        int64_t t_wheel = stage_now(L);
        wheel_advance(L, mono_ns() / TICK_NS);
        STAGE_ADD(L, KL_STAGE_TIMERS, t_wheel);
        for (int i = 0; i < n; i++) {
            void *p = events[i].data.ptr;
            uint32_t e = events[i].events;
            if (p == &L->tags[0]) {
                if (L->accepting)
                    do_accept(L);
                continue;
            }
            if (p == &L->tags[1]) {
                uint64_t v;
                ssize_t r = read(L->evfd, &v, sizeof v);
                (void)r;
                continue;
            }
            if (p == &L->tags[2]) {
                char buf[256];
                while (read(sigfd, buf, sizeof buf) > 0) {
                }
                kl_py_signals(L->py);
                continue;
            }
            conn *c = p;
            if (c->closed)
                continue;
            if (e & EPOLLOUT) {
                size_t before = pending(c);
                int64_t t_write = stage_now(L);
                flush(L, c);
                STAGE_ADD(L, KL_STAGE_WRITE, t_write);
                if (c->closed)
                    continue;
                if (pending(c) < before && (!c->in_request || c->paused))
                    timer_set(L, c, L->cur_tick + L->idle_ticks);   /* a slow reader is not idle */
                if (c->paused && pending(c) <= c->wb.limit) {
                    c->paused = 0;
                    if (c->in_request)          /* reading again: the request's own time, from now */
                        timer_set(L, c, L->cur_tick + L->request_ticks);
                    on_readable(L, c);
                    continue;
                }
            }
            if (e & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)) {
                if (e & (EPOLLHUP | EPOLLRDHUP))
                    c->hangup = 1;
                on_readable(L, c);
            }
        }
        if (L->stop && !L->accepting)
            close_idle(L);
        free_dead(L);
    }
    while (L->conns)
        close_conn(L, L->conns);
    free_dead(L);
    close(L->ep);
    L->ep = -1;
    return 0;
fail:;
    int err = errno;
    while (L->conns)
        close_conn(L, L->conns);
    free_dead(L);
    close(L->ep);
    L->ep = -1;
    return -err;
}


static void epoll_forget(kl_loop *L, conn *c)
{
    epoll_ctl(L->ep, EPOLL_CTL_DEL, c->fd, NULL);
}

static int epoll_release(kl_loop *L, conn *c)
{
    (void)L, (void)c;
    return 1;
}

const kl_driver kl_epoll_driver = {epoll_run, flush, epoll_forget, epoll_release, 0};
