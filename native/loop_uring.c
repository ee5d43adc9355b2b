/*
 * loop_uring.c -- the C loop's io_uring driver.  Without liburing at build
 * time only kl_uring_probe is compiled, and it says so.
 *
 * The same connections, process() and timer wheel as the epoll driver
 * (loop.c); what differs is how bytes move:
 *   - one multishot accept on the listener (re-armed when the kernel ends it;
 *     out of descriptors: re-armed after 100 ms, as epoll's pause);
 *   - per connection one multishot recv into a ring of provided buffers
 *     shared by the whole loop (KL_URING_BUF_RING | KL_URING_MULTISHOT), or a
 *     recv re-armed after each completion, or (without the buffer ring) a
 *     recv straight into the connection's own read buffer, which it then
 *     keeps for as long as it lives;
 *   - process() reads a provided buffer in place when the connection holds
 *     no earlier bytes (the common case: no copy), else its bytes are
 *     appended to the connection's ring; what stays unanswered is copied into
 *     a block of its own and the provided buffer goes back at once, so an
 *     idle connection owns no read memory;
 *   - the answers of a connection go out with one send whose buffer is the
 *     write buffer, taken over by the send until it completes (later answers
 *     gather in a new one); every SQE of a loop turn is submitted together
 *     with the wait for the next completions: one io_uring_enter per turn;
 *   - the timer wheel's next deadline is the wait's timeout;
 *   - the wake-up eventfd and the signal pipe are multishot polls.
 * A closed connection may still be named by operations in flight (a recv, a
 * send, both cancelled at close): its memory is freed when the last of their
 * completions arrives.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loop_shared.h"

#ifndef KL_HAVE_URING

int kl_uring_probe(char *why, size_t cap)
{
    snprintf(why, cap, "this build has no io_uring driver (liburing was not found when the native module "
             "was built: install liburing-dev and rebuild with pip install -e .)");
    return -ENOSYS;
}

#else

#include <liburing.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#define SQ_ENTRIES 4096
#define CQ_ENTRIES 16384
#define BUF_GROUP 0
#define BUF_COUNT 512                   /* provided buffers per loop at most (a power of two) */
#define BUF_START 32                    /* provided at first; doubled when the ring runs dry */
/* Each buffer holds the loop's read_buffer bytes (16 KiB by default, the
 * epoll driver's read block; clamped to 256 B .. 64 KiB): a pipelined batch
 * arrives in one completion, is answered by one process() and one send.
 * With 2 KiB buffers a batch of 256 requests took five completions, five
 * process() calls with the leftovers copied between them, and two sends. */

/* Write buffers: a send takes its connection's block until it completes, so
 * a pipelined connection goes through one block per send.  Freed blocks of
 * tens of KiB make malloc give memory back to the kernel and fault it in
 * again (page faults, zeroed pages: a sixth of the server's CPU under
 * pipelined load); the loop keeps a few blocks of WB_BLOCK bytes instead,
 * last freed first used (warm in cache), and frees them when it goes idle. */
#define WB_BLOCK 65536
#define WB_POOL 32

/* user_data: a connection's address with the operation in its low bits
 * (calloc aligns to 16), or one of the small numbers below */
enum { OP_RECV = 1, OP_SEND = 2 };
#define OP_MASK 7ULL
enum { UD_IGNORE = 0, UD_ACCEPT = 16, UD_EVENTFD = 32, UD_SIGNALS = 48 };
#define UD_SMALL 4096

typedef struct uconn {
    conn c;                             /* first: the shared code sees a conn */
    uint8_t *send_buf;                  /* the write buffer a send in flight reads */
    size_t send_off, send_len, send_cap;
    int slot;                           /* registered file index, or -1 */
    uint8_t ops;                        /* operations in flight that name it */
    uint8_t recv_armed, recv_cancelled, zombie;
} uconn;

typedef struct uring_state {
    struct io_uring ring;
    struct io_uring_buf_ring *br;
    size_t br_bytes;
    uint8_t *bufs;
    unsigned recycled;                  /* buffers given back since the last advance */
    unsigned provided;                  /* buffers in the ring so far (grown on ENOBUFS) */
    size_t buf_size;                    /* bytes per provided buffer */
    int ring_ok;                        /* io_uring_queue_init succeeded */
    int multishot, buf_ring, fixed;
    int accept_armed;
    int *free_slots;                    /* registered file indices not in use */
    unsigned nfree, nslots;
    uconn *zombies;                     /* closed, freed, but operations in flight still name them */
    uint8_t *pool[WB_POOL];             /* spare write buffers of WB_BLOCK bytes */
    unsigned npool;
} uring_state;

static inline uring_state *U(kl_loop *L)
{
    return (uring_state *)L->uring;
}

/* A write buffer's block back to the pool (or to malloc when it is not a
 * pool-sized block or the pool is full). */
static void wb_put(uring_state *S, uint8_t *mem, size_t cap)
{
    if (mem && cap == WB_BLOCK && S->npool < WB_POOL)
        S->pool[S->npool++] = mem;
    else
        free(mem);
}

static void wb_drop(uring_state *S, conn *c)
{
    wb_put(S, c->wb.data, c->wb.cap);
    kl_wbuf_init(&c->wb, NULL, 0, c->wb.limit);
}

/* An empty connection's write buffer gets a block before process() writes
 * answers into it (a block of its own stays: it holds earlier answers). */
static void wb_give(uring_state *S, conn *c)
{
    if (c->wb.cap || fail_injected())   /* none: copy_out allocates as on epoll */
        return;
    uint8_t *mem = S->npool ? S->pool[--S->npool] : malloc(WB_BLOCK);
    if (mem)
        kl_wbuf_init(&c->wb, mem, WB_BLOCK, c->wb.limit);
}

static void pool_drain(uring_state *S)
{
    while (S->npool)
        free(S->pool[--S->npool]);
}

/* An SQE, submitting what is queued when the ring is full. */
static struct io_uring_sqe *sqe_get(uring_state *S)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&S->ring);
    while (!sqe) {
        io_uring_submit(&S->ring);
        sqe = io_uring_get_sqe(&S->ring);
    }
    return sqe;
}

static inline void sqe_fd(struct io_uring_sqe *sqe, uconn *u)
{
    if (u->slot >= 0) {
        sqe->fd = u->slot;
        sqe->flags |= IOSQE_FIXED_FILE;
    }
}

static void recycle(uring_state *S, unsigned bid)
{
    io_uring_buf_ring_add(S->br, S->bufs + (size_t)bid * S->buf_size, S->buf_size, (unsigned short)bid,
                          io_uring_buf_ring_mask(BUF_COUNT), (int)S->recycled);
    S->recycled++;
}

/* The ring ran dry: more buffers, up to BUF_COUNT.  It starts with few, so
 * the ones in use stay warm in the cache (the kernel takes them in order:
 * a ring of 512 cycles through 1 MiB, and recv's copy missed the cache). */
static void grow_buffers(uring_state *S)
{
    unsigned to = S->provided * 2 < BUF_COUNT ? S->provided * 2 : BUF_COUNT;
    for (unsigned i = S->provided; i < to; i++)
        recycle(S, i);
    S->provided = to;
}

static void arm_accept(kl_loop *L)
{
    uring_state *S = U(L);
    struct io_uring_sqe *sqe = sqe_get(S);
    io_uring_prep_multishot_accept(sqe, L->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, UD_ACCEPT);
    S->accept_armed = 1;
}

static void arm_poll(uring_state *S, int fd, uint64_t ud)
{
    struct io_uring_sqe *sqe = sqe_get(S);
    io_uring_prep_poll_multishot(sqe, fd, POLLIN);
    io_uring_sqe_set_data64(sqe, ud);
}

static void cancel(uring_state *S, uint64_t ud)
{
    struct io_uring_sqe *sqe = sqe_get(S);
    io_uring_prep_cancel64(sqe, ud, 0);
    io_uring_sqe_set_data64(sqe, UD_IGNORE);
}

/* Without the buffer ring a recv reads into the connection's own buffer;
 * -1 when it cannot (out of memory, or the buffer is at its limit). */
static int arm_recv(kl_loop *L, uconn *u)
{
    uring_state *S = U(L);
    conn *c = &u->c;
    struct io_uring_sqe *sqe;
    if (S->buf_ring) {
        sqe = sqe_get(S);
        if (S->multishot)
            io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
        else
            io_uring_prep_recv(sqe, c->fd, NULL, S->buf_size, 0);
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = BUF_GROUP;
    } else {
        if (!c->rb.data) {
            uint8_t *mem = malloc(L->cfg.read_buffer);
            if (!mem)
                return -1;
            kl_ring_init(&c->rb, mem, L->cfg.read_buffer, c->rb.limit);
        }
        size_t room;
        if (ring_prepare(L, c, &room) < 0 || !room)
            return -1;
        sqe = sqe_get(S);
        io_uring_prep_recv(sqe, c->fd, c->rb.data + c->rb.tail, room, 0);
    }
    sqe_fd(sqe, u);
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)u | OP_RECV);
    u->recv_armed = 1;
    u->recv_cancelled = 0;
    u->ops++;
    return 0;
}

/* Reading stops while the connection is paused (backpressure) or closing. */
static void pause_recv(kl_loop *L, uconn *u)
{
    if (u->recv_armed && U(L)->multishot && U(L)->buf_ring && !u->recv_cancelled) {
        cancel(U(L), (uint64_t)(uintptr_t)u | OP_RECV);
        u->recv_cancelled = 1;
    }
}

static void uring_flush(kl_loop *L, conn *c)
{
    uconn *u = (uconn *)c;
    if (u->send_len) {                  /* a send is in flight: its completion sends the rest */
        c->want_write = 1;
        return;
    }
    if (c->staged)
        unstage(L, c);                  /* the staged answers must outlive this round: copies */
    size_t n = pending(c);
    if (!n) {
        c->want_write = 0;
        if (c->wb.cap)                  /* drained: an idle connection keeps no output memory */
            wb_drop(U(L), c);
        if (c->closing || (c->peer_closed && !c->in_request))
            close_conn(L, c);
        return;
    }
    /* the send takes the write buffer over; later answers gather in a new one */
    u->send_buf = c->wb.data;
    u->send_cap = c->wb.cap;
    u->send_off = c->wb.start;
    u->send_len = c->wb.end;
    kl_wbuf_init(&c->wb, NULL, 0, c->wb.limit);
    uring_state *S = U(L);
    struct io_uring_sqe *sqe = sqe_get(S);
    io_uring_prep_send(sqe, c->fd, u->send_buf + u->send_off, n, MSG_NOSIGNAL);
    sqe_fd(sqe, u);
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)u | OP_SEND);
    u->ops++;
    c->want_write = 1;
}

/* Bytes in the connection's ring, before new ones are appended: the block
 * grows to hold them all (a paused connection's recv may still deliver what
 * was on its way before the cancel: a few buffers past the limit at most). */
static int ring_append(conn *c, const uint8_t *src, size_t n)
{
    kl_ring *r = &c->rb;
    size_t len = r->tail - r->head;
    if (r->cap - r->tail < n) {
        if (r->head && r->cap - len >= n) {
            memmove(r->data, r->data + r->head, len);
            r->head = 0;
            r->tail = len;
        } else {
            size_t limit = r->limit > len + n ? r->limit : len + n;
            size_t cap = own_capacity(len + n, limit);
            uint8_t *mem = malloc(cap);
            if (!mem)
                return -1;
            uint8_t *old = r->data;
            kl_ring_move(r, mem, cap);
            free(old);
        }
    }
    memcpy(r->data + r->tail, src, n);
    r->tail += n;
    return 0;
}

/* What arrived (src: a provided buffer, NULL when the bytes are already in
 * the ring or none came), answered as the epoll driver's serve_readable does. */
static void serve(kl_loop *L, uconn *u, uint8_t *src, size_t n)
{
    conn *c = &u->c;
    uring_state *S = U(L);
    int was_in_request = c->in_request, was_paused = c->paused;
    int borrowed = 0;
    if (src && n) {
        if (!c->rb.data) {              /* nothing earlier: read the provided buffer in place */
            kl_ring_init(&c->rb, src, S->buf_size, c->rb.limit);
            c->rb.tail = n;
            borrowed = 1;
        } else if (ring_append(c, src, n) < 0) {
            close_conn(L, c);
            return;
        }
    }
    size_t answered = 0;
    if (c->rb.tail > c->rb.head && !c->closing) {
        if (pending(c) > c->wb.limit) {
            c->paused = 1;
        } else {
            wb_give(S, c);
            answered = process(L, c);
            if (pending(c) > c->wb.limit)
                c->paused = 1;
        }
    }
    if (pending(c) || c->staged) {
        int64_t t_write = stage_now(L);
        uring_flush(L, c);
        STAGE_ADD(L, KL_STAGE_WRITE, t_write);
    } else if (c->wb.cap && !c->closed) {
        wb_drop(S, c);                  /* nothing to answer yet: no output memory */
    }
    if (!c->closed) {
        if (c->closing && !c->want_write) {
            close_conn(L, c);
        } else if (c->peer_closed) {
            if (!c->want_write)
                close_conn(L, c);
        } else {
            if (c->paused || c->closing)
                pause_recv(L, u);
            /* as the epoll driver: while backpressure stops reading, the idle
             * timeout (from the pause), not the request's */
            int64_t t_timers = stage_now(L);
            if (c->paused) {
                if (!was_paused)
                    timer_set(L, c, L->cur_tick + L->idle_ticks);
            } else if (c->in_request) {
                if (!was_in_request || answered)
                    timer_set(L, c, L->cur_tick + L->request_ticks);
            } else {
                timer_set(L, c, L->cur_tick + L->idle_ticks);
            }
            STAGE_ADD(L, KL_STAGE_TIMERS, t_timers);
        }
    }
    if (borrowed) {                     /* the provided buffer goes back: keep what is left */
        size_t len = c->rb.tail - c->rb.head;
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
    } else if (S->buf_ring && c->rb.data && c->rb.tail == c->rb.head && !c->closed) {
        free(c->rb.data);               /* emptied: give it back */
        ring_release(c);
    }
}

static void free_uconn(uconn *u)
{
    free(u->c.rb.data);
    free(u->c.wb.data);
    free(u->send_buf);
    free(u);
}

/* A completion for a connection closed earlier: freed with the last one. */
static void zombie_done(kl_loop *L, uconn *u)
{
    if (--u->ops || !u->zombie)
        return;
    uring_state *S = U(L);
    conn *c = &u->c;
    if (c->prev)
        c->prev->next = c->next;
    else
        S->zombies = (uconn *)c->next;
    if (c->next)
        c->next->prev = c->prev;
    free_uconn(u);
}

static void on_recv(kl_loop *L, uconn *u, struct io_uring_cqe *cqe)
{
    uring_state *S = U(L);
    conn *c = &u->c;
    int res = cqe->res;
    int more = (cqe->flags & IORING_CQE_F_MORE) != 0;
    int has_buf = (cqe->flags & IORING_CQE_F_BUFFER) != 0;
    unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
    if (!more)
        u->recv_armed = 0;
    if (c->closed) {
        if (has_buf)
            recycle(S, bid);
        if (!more)
            zombie_done(L, u);
        return;
    }
    if (!more)
        u->ops--;
    if (has_buf) {
        serve(L, u, S->bufs + (size_t)bid * S->buf_size, res > 0 ? (size_t)res : 0);
        recycle(S, bid);                /* serve kept a copy of what it did not answer */
    } else if (res > 0) {               /* into the connection's own buffer */
        kl_ring_commit(&c->rb, (size_t)res);
        serve(L, u, NULL, 0);
    } else if (res == 0) {
        c->peer_closed = 1;             /* EOF: answer what is complete, then close */
        serve(L, u, NULL, 0);
        return;
    } else if (res == -ENOBUFS) {
        grow_buffers(S);
    } else if (res != -ECANCELED) {
        close_conn(L, c);
        return;
    }
    if (!c->closed && !u->recv_armed && !c->paused && !c->closing && !c->peer_closed && arm_recv(L, u) < 0)
        close_conn(L, c);
}

static void on_send(kl_loop *L, uconn *u, int res)
{
    conn *c = &u->c;
    if (c->closed) {
        zombie_done(L, u);
        return;
    }
    u->ops--;
    if (res < 0) {
        close_conn(L, c);
        return;
    }
    u->send_off += (size_t)res;
    if ((!c->in_request || c->paused) && res > 0)
        timer_set(L, c, L->cur_tick + L->idle_ticks);   /* a slow reader is not idle */
    if (u->send_off < u->send_len) {    /* a short send: the rest, from the same block */
        uring_state *S = U(L);
        struct io_uring_sqe *sqe = sqe_get(S);
        io_uring_prep_send(sqe, c->fd, u->send_buf + u->send_off, u->send_len - u->send_off, MSG_NOSIGNAL);
        sqe_fd(sqe, u);
        io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)u | OP_SEND);
        u->ops++;
        return;
    }
    wb_put(U(L), u->send_buf, u->send_cap);
    u->send_buf = NULL;
    u->send_off = u->send_len = u->send_cap = 0;
    uring_flush(L, c);                  /* what gathered meanwhile, or the drained connection's end */
    if (c->closed)
        return;
    if (c->paused && pending(c) <= c->wb.limit) {
        c->paused = 0;                  /* backpressure released: the bytes waiting, then read on */
        if (c->in_request)              /* reading again: the request's own time, from now */
            timer_set(L, c, L->cur_tick + L->request_ticks);
        serve(L, u, NULL, 0);
        if (!c->closed && !c->paused && !u->recv_armed && !c->closing && !c->peer_closed &&
            arm_recv(L, u) < 0)
            close_conn(L, c);
    }
}

static void on_accept(kl_loop *L, struct io_uring_cqe *cqe)
{
    uring_state *S = U(L);
    if (!(cqe->flags & IORING_CQE_F_MORE))
        S->accept_armed = 0;
    int fd = cqe->res;
    if (fd < 0) {
        if (fd == -EMFILE || fd == -ENFILE || fd == -ENOBUFS || fd == -ENOMEM) {
            /* out of descriptors or memory: leave the backlog alone for 100 ms */
            if (S->accept_armed)
                cancel(S, UD_ACCEPT);
            L->accept_paused = 1;
            L->accept_resume = L->cur_tick + 10;
        }
        return;
    }
    if (!L->accepting) {
        close(fd);
        return;
    }
    if (refuse_over_limit(L, fd))
        return;
    uconn *u = (uconn *)conn_open(L, fd, sizeof *u);
    if (!u) {
        close(fd);
        return;
    }
    u->slot = -1;
    if (S->fixed && S->nfree) {
        int slot = S->free_slots[--S->nfree];
        if (io_uring_register_files_update(&S->ring, (unsigned)slot, &fd, 1) == 1)
            u->slot = slot;
        else
            S->free_slots[S->nfree++] = slot;
    }
    conn_link(L, &u->c);
    if (arm_recv(L, u) < 0)
        close_conn(L, &u->c);
}

static void uring_forget(kl_loop *L, conn *c)
{
    uconn *u = (uconn *)c;
    uring_state *S = U(L);
    if (u->recv_armed && !u->recv_cancelled)
        cancel(S, (uint64_t)(uintptr_t)u | OP_RECV);
    if (u->send_len)
        cancel(S, (uint64_t)(uintptr_t)u | OP_SEND);
    if (u->ops)
        io_uring_submit(&S->ring);      /* queued SQEs name the descriptor: issued before it is closed */
    if (u->slot >= 0) {
        int none = -1;
        io_uring_register_files_update(&S->ring, (unsigned)u->slot, &none, 1);
        S->free_slots[S->nfree++] = u->slot;
        u->slot = -1;
    }
}

static int uring_release(kl_loop *L, conn *c)
{
    uconn *u = (uconn *)c;
    if (!u->ops) {
        free(u->send_buf);
        return 1;
    }
    uring_state *S = U(L);
    u->zombie = 1;                      /* its last completion frees it */
    c->prev = NULL;
    c->next = (conn *)S->zombies;
    if (S->zombies)
        S->zombies->c.prev = c;
    S->zombies = u;
    return 0;
}

static int ring_setup(kl_loop *L, uring_state *S)
{
    uint32_t f = L->uring_features;
    S->buf_ring = (f & KL_URING_BUF_RING) != 0;
    S->multishot = S->buf_ring && (f & KL_URING_MULTISHOT);
    S->buf_size = L->cfg.read_buffer < 256 ? 256 : L->cfg.read_buffer > 65536 ? 65536 : L->cfg.read_buffer;
    S->fixed = (f & KL_URING_FIXED_FILES) != 0;
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
    p.cq_entries = CQ_ENTRIES;
    if (f & KL_URING_DEFER_TASKRUN)
        p.flags |= IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    else
        p.flags |= IORING_SETUP_COOP_TASKRUN;
    int rc = io_uring_queue_init_params(SQ_ENTRIES, &S->ring, &p);
    if (rc < 0)
        return rc;
    S->ring_ok = 1;
    io_uring_register_ring_fd(&S->ring);
    if (S->buf_ring) {
        S->br_bytes = BUF_COUNT * sizeof(struct io_uring_buf);
        void *br = mmap(NULL, S->br_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
        if (br == MAP_FAILED)
            return -errno;
        S->br = br;
        struct io_uring_buf_reg reg;
        memset(&reg, 0, sizeof reg);
        reg.ring_addr = (uint64_t)(uintptr_t)br;
        reg.ring_entries = BUF_COUNT;
        reg.bgid = BUF_GROUP;
        if ((rc = io_uring_register_buf_ring(&S->ring, &reg, 0)) < 0)
            return rc;
        S->bufs = malloc((size_t)BUF_COUNT * S->buf_size);
        if (!S->bufs)
            return -ENOMEM;
        io_uring_buf_ring_init(S->br);
        S->provided = BUF_START < BUF_COUNT ? BUF_START : BUF_COUNT;
        for (unsigned i = 0; i < S->provided; i++)
            recycle(S, i);
        io_uring_buf_ring_advance(S->br, (int)S->recycled);
        S->recycled = 0;
    }
    if (S->fixed) {
        S->nslots = L->cfg.max_connections + 1;
        S->free_slots = malloc(S->nslots * sizeof(int));
        if (!S->free_slots)
            return -ENOMEM;
        if ((rc = io_uring_register_files_sparse(&S->ring, S->nslots)) < 0)
            return rc;
        for (unsigned i = 0; i < S->nslots; i++)
            S->free_slots[S->nfree++] = (int)(S->nslots - 1 - i);
    }
    return 0;
}

static void ring_teardown(uring_state *S)
{
    if (S->ring_ok)
        io_uring_queue_exit(&S->ring);  /* cancels what is in flight */
    while (S->zombies) {
        uconn *u = S->zombies;
        S->zombies = (uconn *)u->c.next;
        free_uconn(u);
    }
    if (S->br)
        munmap(S->br, S->br_bytes);
    free(S->bufs);
    free(S->free_slots);
    pool_drain(S);
}

static int64_t stage_cpu_now(const kl_loop *L)
{
    if (!L->stages_on)
        return 0;
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void drain_fd(int fd)
{
    char buf[256];
    while (read(fd, buf, sizeof buf) > 0) {
    }
}

static int uring_run(kl_loop *L)
{
    uring_state S;
    memset(&S, 0, sizeof S);
    L->uring = &S;
    int err = ring_setup(L, &S);
    if (err < 0)
        goto out;
    arm_accept(L);
    arm_poll(&S, L->evfd, UD_EVENTFD);
    if (L->sigfd >= 0)
        arm_poll(&S, L->sigfd, UD_SIGNALS);
    L->accepting = 1;
    int64_t stop_deadline = 0;
    refresh_date(L);
    for (;;) {
        int64_t now_ns = mono_ns();
        int64_t timeout_ns = -1;
        int64_t next = wheel_next(L);
        if (next >= 0) {
            int64_t at = (L->cur_tick + next) * TICK_NS;
            timeout_ns = at > now_ns ? at - now_ns : 0;
        }
        if (L->accept_paused && !L->stop) {
            int64_t at = L->accept_resume * TICK_NS;
            if (now_ns >= at) {
                L->accept_paused = 0;
                if (!S.accept_armed)
                    arm_accept(L);
            } else if (timeout_ns < 0 || timeout_ns > at - now_ns) {
                timeout_ns = at - now_ns;
            }
        }
        if (L->stop) {
            if (L->accepting) {
                L->accepting = 0;
                if (S.accept_armed)
                    cancel(&S, UD_ACCEPT);
                stop_deadline = now_ns + (int64_t)(L->cfg.graceful_timeout * 1e9);
                close_idle(L);
                free_dead(L);
            }
            if (!L->conns || now_ns >= stop_deadline)
                break;
            if (timeout_ns < 0 || timeout_ns > 50000000)
                timeout_ns = 50000000;
        }
        if (S.npool && (timeout_ns < 0 || timeout_ns > 1000000000LL))
            timeout_ns = 1000000000LL;  /* idle for a second: the spare write buffers go back */
        if (S.recycled) {
            io_uring_buf_ring_advance(S.br, (int)S.recycled);
            S.recycled = 0;
        }
        struct io_uring_cqe *cqe;
        struct __kernel_timespec ts = {timeout_ns / 1000000000LL, timeout_ns % 1000000000LL};
        /* The read stage: the kernel receives inside this call (the
         * completions' task work), and sends what was queued there too, so
         * it is this call's CPU time (the thread's clock: the wait itself
         * is not counted), recvs and sends together; the write stage is
         * only the queueing of sends (uring_flush). */
        int64_t t_enter = stage_cpu_now(L);
        int rc = io_uring_submit_and_wait_timeout(&S.ring, &cqe, 1, timeout_ns >= 0 ? &ts : NULL, NULL);
        if (L->stages_on)
            L->stage_ns[KL_STAGE_READ] += (uint64_t)(stage_cpu_now(L) - t_enter);
        if (rc == -EINTR) {
            kl_py_signals(L->py);       /* let Python run its signal handlers */
            continue;
        }
        if (rc < 0 && rc != -ETIME && rc != -EBUSY && rc != -EAGAIN) {
            err = rc;
            goto out;
        }
        if (rc == -ETIME && !io_uring_cq_ready(&S.ring))
            pool_drain(&S);
        refresh_date(L);
        int64_t t_wheel = stage_now(L);
        wheel_advance(L, mono_ns() / TICK_NS);
        STAGE_ADD(L, KL_STAGE_TIMERS, t_wheel);
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&S.ring, head, cqe) {
            seen++;
            uint64_t ud = io_uring_cqe_get_data64(cqe);
            if (ud < UD_SMALL) {
                if (ud == UD_ACCEPT) {
                    on_accept(L, cqe);
                } else if (ud == UD_EVENTFD) {
                    uint64_t v;
                    ssize_t r = read(L->evfd, &v, sizeof v);
                    (void)r;
                    if (!(cqe->flags & IORING_CQE_F_MORE))
                        arm_poll(&S, L->evfd, UD_EVENTFD);
                } else if (ud == UD_SIGNALS) {
                    drain_fd(L->sigfd);
                    kl_py_signals(L->py);
                    if (!(cqe->flags & IORING_CQE_F_MORE))
                        arm_poll(&S, L->sigfd, UD_SIGNALS);
                }
                continue;
            }
            uconn *u = (uconn *)(uintptr_t)(ud & ~OP_MASK);
            if ((ud & OP_MASK) == OP_RECV)
                on_recv(L, u, cqe);
            else
                on_send(L, u, cqe->res);
        }
        io_uring_cq_advance(&S.ring, seen);
        if (L->stop && !L->accepting)
            close_idle(L);
        free_dead(L);
    }
    err = 0;
out:
    while (L->conns)
        close_conn(L, L->conns);
    free_dead(L);
    ring_teardown(&S);
    L->uring = NULL;
    return err;
}

/* Whether the driver can start here, with the same calls it makes. */
int kl_uring_probe(char *why, size_t cap)
{
    FILE *f = fopen("/proc/sys/kernel/io_uring_disabled", "r");
    if (f) {
        int v = 0;
        if (fscanf(f, "%d", &v) != 1)
            v = 0;
        fclose(f);
        if (v == 2) {
            snprintf(why, cap, "io_uring is disabled on this machine (sysctl kernel.io_uring_disabled = 2; "
                     "set it to 0 to use --loop uring, or use --loop c)");
            return -EPERM;
        }
    }
    struct io_uring ring;
    int rc = io_uring_queue_init(8, &ring, 0);
    if (rc == -ENOSYS) {
        snprintf(why, cap, "the kernel has no io_uring (io_uring_setup: ENOSYS): use --loop c");
        return rc;
    }
    if (rc == -EPERM || rc == -EACCES) {
        snprintf(why, cap, "io_uring_setup is not permitted here (kernel.io_uring_disabled = 1 for this user, "
                 "or a seccomp filter, as in many containers): use --loop c");
        return rc;
    }
    if (rc < 0) {
        snprintf(why, cap, "io_uring_setup failed: %s; use --loop c", strerror(-rc));
        return rc;
    }
    struct io_uring_probe *p = io_uring_get_probe_ring(&ring);
    const char *missing = NULL;
    if (!p)
        missing = "the opcode probe";
    else if (!io_uring_opcode_supported(p, IORING_OP_SEND) || !io_uring_opcode_supported(p, IORING_OP_RECV))
        missing = "send and recv";
    else if (!io_uring_opcode_supported(p, IORING_OP_ACCEPT) ||
             !io_uring_opcode_supported(p, IORING_OP_ASYNC_CANCEL))
        missing = "accept and cancel";
    if (p)
        io_uring_free_probe(p);
    if (!missing) {
        /* provided buffer rings (5.19) stand for the multishot operations of the same releases */
        struct io_uring_buf_reg reg;
        void *br = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
        memset(&reg, 0, sizeof reg);
        reg.ring_addr = (uint64_t)(uintptr_t)br;
        reg.ring_entries = 8;
        if (br == MAP_FAILED || io_uring_register_buf_ring(&ring, &reg, 0) < 0)
            missing = "provided buffer rings (kernel 5.19 or later)";
        if (br != MAP_FAILED)
            munmap(br, 4096);
    }
    io_uring_queue_exit(&ring);
    if (missing) {
        snprintf(why, cap, "this kernel's io_uring lacks %s: use --loop c", missing);
        return -EOPNOTSUPP;
    }
    return 0;
}

const kl_driver kl_uring_driver = {uring_run, uring_flush, uring_forget, uring_release, 1};

#endif
