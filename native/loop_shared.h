/*
 * loop_shared.h -- what the C loop's drivers share (not part of the cffi cdef).
 *
 * loop.c holds the per-connection logic: framing, the resume scans, the
 * head memo and folding, backpressure, errors, answers written into the
 * connection's buffers, the timer wheel, closing.  A driver moves bytes
 * between the sockets and those buffers and decides when to call process():
 * loop_epoll.c (epoll, edge-triggered, recv/send) and loop_uring.c
 * (io_uring: multishot accept and recv, batched sends).  Both see the same
 * structures, declared here once.
 */
#ifndef KL_LOOP_SHARED_H
#define KL_LOOP_SHARED_H
#include <signal.h>
#include <stdint.h>
#include <sys/uio.h>
#include <time.h>

#include "loop.h"
#include "parser.h"

#define KL_HIDDEN __attribute__((visibility("hidden")))

/* the cffi `extern "Python+C"` callbacks (defined by the generated module) */
extern int kl_py_batch(void *handle, kl_batch *batch);
extern int kl_py_parse_head(void *handle, uint64_t gen, const uint8_t *base, size_t end, size_t pos,
                            kl_request *req);
extern int64_t kl_py_parse_chunked(void *handle, uint8_t *base, size_t end, size_t pos, int64_t *body_len);
extern void kl_py_signals(void *handle);

#define WHEEL_BITS 12
#define WHEEL_SLOTS (1 << WHEEL_BITS)
#define WHEEL_MASK (WHEEL_SLOTS - 1)
#define TICK_NS 10000000LL              /* 10 ms */
#define ACCEPT_BATCH 256
#define MAX_PY 64                       /* Python requests per batch callback */
#define MAX_DEFERRED 4096               /* ordered answers waiting for a batch callback */
#define DATE_LEN 29                     /* "Thu, 01 Jan 1970 00:00:00 GMT" */
#define MEMO_MAX 512                    /* longest head the memo remembers */
#define RUN_MAX 64                      /* identical answers copied in one memcpy */
#define STAGE_MAX 64                    /* static answers sent by reference in one sendmsg */

enum { SCAN_NONE, SCAN_HEAD, SCAN_CHUNKED };   /* conn.scan */

typedef struct conn {
    int fd;
    uint8_t in_request, continue_sent, closing, peer_closed, want_write, paused, closed;
    uint8_t hangup;       /* the peer hung up: read on to the EOF, no later edge comes */
    /* an answer could not be buffered (out of memory): nothing after it is
     * written (later answers would go to the wrong requests); flush, close */
    uint8_t out_failed;
    /* timed out with its 408 queued on a driver whose sends complete later:
     * closed when the send completes, or at its next deadline */
    uint8_t doomed;
    /* The scan state of the request at the buffer's front, so a request in
     * many reads is scanned once (scan_head, scan_chunked): `scan` says which
     * one the union holds.  The two are never needed at once -- an incomplete
     * head at the front, or the chunked body after a complete one -- so they
     * share storage (the connection is no bigger than with one). */
    uint8_t scan;                       /* SCAN_NONE, SCAN_HEAD, SCAN_CHUNKED */
    union {
        /* SCAN_HEAD: offsets from the buffer's front (scan.py's (s, rl, scanned)) */
        struct { size_t head_s, head_rl, head_scanned; };
        /* SCAN_CHUNKED: the next chunk-size line (from the body's start),
         * data and framing bytes so far */
        struct { size_t chunk_off; int64_t chunk_total, chunk_overhead; };
    };
    size_t staged;        /* bytes of static answers staged in the loop's iovecs (see out_ref) */
    kl_ring rb;
    kl_wbuf wb;
    int64_t deadline;                   /* tick */
    int64_t filed;                      /* tick of the slot it is filed under; -1: not filed */
    struct conn *tprev, *tnext;         /* wheel slot list */
    struct conn *prev, *next;           /* all live connections */
    struct conn *dead_next;
} conn;

typedef struct resp {
    uint8_t *data;
    size_t len;
    long date_off;                      /* offset of the Date value, -1: none */
    uint8_t *run;                       /* RUN_MAX copies back to back (made on first use) */
} resp;

typedef struct route_entry {
    uint8_t *path;
    size_t len;
    int route;                          /* >= 0: static route; -1: a known path answered by Python */
} route_entry;

typedef struct deferred {
    const uint8_t *data;                /* NULL: the Python answer `index` */
    size_t len;
    uint32_t index;
} deferred;

struct kl_loop {
    kl_loop_config cfg;
    void *py;
    int parser_kind;
    kl_head_fn head_fn;
    kl_head_impl_fn c_head;             /* KL_PARSER_C: the parser's active level, taken at kl_loop_run */
    kl_chunked_fn chunked_fn;
    /* routes */
    resp *routes;                       /* [nroutes * KL_VARIANTS] */
    int nroutes;
    route_entry *table;                 /* open addressing, power of two */
    size_t table_size, table_used;
    int catch_all;
    resp errors[200];                   /* statuses 400..599 */
    /* runtime */
    const struct kl_driver *driver;     /* epoll (loop_epoll.c) or io_uring (loop_uring.c) */
    uint32_t uring_features;            /* KL_URING_*: what the io_uring driver uses */
    void *uring;                        /* the io_uring driver's state while it runs */
    int ep, lfd, sigfd, evfd;
    volatile sig_atomic_t stop;
    int accepting;
    int accept_paused;                  /* out of descriptors: no accepting until accept_resume */
    int64_t accept_resume;
    uint32_t nconns;
    conn *conns;                        /* list of live connections */
    conn *dead;                         /* closed during this round of events; freed after it */
    /* wheel */
    conn *slots[WHEEL_SLOTS];
    uint64_t bitmap[WHEEL_SLOTS / 64];
    int64_t cur_tick;
    int64_t request_ticks, idle_ticks;
    long date_second;
    /* the Python batch */
    kl_batch batch;
    kl_pyreq pyreqs[MAX_PY];
    kl_request *tables;                 /* [MAX_PY + 1]: the last one is scratch for static requests */
    deferred defer[MAX_DEFERRED];
    uint32_t ndefer;
    int deferring;
    uint64_t gen;
    /* the head memo: the bytes of the last head answered by a static route */
    uint8_t *scratch;                   /* chunked decoding for parsers from elsewhere */
    uint8_t *rscratch;                  /* the read block every connection without bytes of its own reads into */
    size_t scratch_cap;
    int memo_on;
    int fold;                           /* fold runs of equal requests (kl_loop_set_fold_runs) */
    size_t memo_len;
    resp *memo_resp;
    int memo_keep_alive;
    uint8_t memo[MEMO_MAX];
    /* folding: a run of parsed requests answered by the same static response,
     * written with one copy from its run block once the run ends (flush_run) */
    resp *run_resp;
    size_t run_k;
    /* static answers of the connection being served, by reference, while its
     * write buffer is empty: sent with one sendmsg by flush, what the socket
     * does not take is copied into the write buffer (the connection's
     * `staged` counts them; at most one connection has any) */
    struct iovec stage[STAGE_MAX];
    int nstage;
    kl_loop_stats stats;
    int stages_on;                      /* stage counters: two clock reads per stage boundary */
    uint64_t stage_ns[KL_STAGES];       /* parse, route: the sampled requests' only; respond: all of process() */
    uint64_t stage_heads, stage_sampled; /* heads parsed, heads whose parse and route were timed */
    uint64_t stage_clock_ns;            /* what one clock read adds to a timed interval */
    char tags[3];                       /* epoll data for the listener, the eventfd, the signal pipe */
};

static inline int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Stage counters: CLOCK_MONOTONIC (the vDSO, no system call; the coarse clock
 * above has a tick's resolution), read only when they are on. */
static inline int64_t stage_now(const kl_loop *L)
{
    if (!L->stages_on)
        return 0;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}
#define STAGE_ADD(L, s, t0) do { if ((L)->stages_on) (L)->stage_ns[s] += (uint64_t)(stage_now(L) - (t0)); } while (0)
/* parse and route take tens of ns per head: timing every head cost as much as
 * they do, so one head in STAGE_SAMPLE is timed and the totals are scaled */
#define STAGE_SAMPLE 64

/* What differs between the drivers where the shared code needs the socket. */
typedef struct kl_driver {
    int (*run)(kl_loop *L);             /* until stopped: 0, or -errno */
    void (*flush)(kl_loop *L, conn *c); /* start writing what is pending */
    void (*forget)(kl_loop *L, conn *c);/* close_conn: before the descriptor is closed */
    int (*release)(kl_loop *L, conn *c);/* free_dead: 1 when c may be freed now (the driver frees it later otherwise) */
    int async_writes;                   /* flush only queues a send: it completes later */
} kl_driver;

extern const kl_driver kl_epoll_driver KL_HIDDEN;
#ifdef KL_HAVE_URING
extern const kl_driver kl_uring_driver KL_HIDDEN;
#endif

static inline size_t pending(const conn *c)
{
    return c->wb.end - c->wb.start + c->staged;
}

/* loop.c: the shared logic the drivers call */
void refresh_date(kl_loop *L) KL_HIDDEN;
void wheel_unlink(kl_loop *L, conn *c) KL_HIDDEN;
void wheel_link(kl_loop *L, conn *c, int64_t tick) KL_HIDDEN;
int64_t wheel_next(kl_loop *L) KL_HIDDEN;
void wheel_advance(kl_loop *L, int64_t now) KL_HIDDEN;
int ring_prepare(kl_loop *L, conn *c, size_t *room) KL_HIDDEN;
size_t own_capacity(size_t len, size_t limit) KL_HIDDEN;
int unstage(kl_loop *L, conn *c) KL_HIDDEN;
int fail_injected(void) KL_HIDDEN;        /* KOURIER_LAB_FAIL_WBUF_ALLOC: this write-buffer allocation fails */
size_t process(kl_loop *L, conn *c) KL_HIDDEN;
void close_conn(kl_loop *L, conn *c) KL_HIDDEN;
void free_dead(kl_loop *L) KL_HIDDEN;
void close_idle(kl_loop *L) KL_HIDDEN;
conn *conn_open(kl_loop *L, int fd, size_t size) KL_HIDDEN;
void conn_link(kl_loop *L, conn *c) KL_HIDDEN;
int refuse_over_limit(kl_loop *L, int fd) KL_HIDDEN;

static inline void ring_release(conn *c)
{
    kl_ring_init(&c->rb, NULL, 0, c->rb.limit);
}

/* O(1), no system call: a later deadline is only stored (lazy re-filing). */
static inline void timer_set(kl_loop *L, conn *c, int64_t deadline)
{
    c->deadline = deadline;
    if (c->filed >= 0) {
        if (c->filed <= deadline)
            return;
        wheel_unlink(L, c);
    }
    wheel_link(L, c, deadline);
}

#endif
