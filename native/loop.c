/*
 * loop.c — the C event loop: epoll (edge-triggered), one loop per worker.
 *
 * Hot path, entirely in C: accept4 in batches -> recv into the connection's
 * ring -> kl_parse_head -> route -> copy the precomputed static response into
 * the write buffer -> one send per read.  Python is entered only
 *   - once per batch of requests read together that need a Python handler
 *     (or a 404/405 answer): kl_py_batch gets every such request's table and
 *     body; the static answers around them keep their order;
 *   - per request with the Python parser (kl_py_parse_head: the crossing);
 *   - when a signal arrived (kl_py_signals runs Python's signal handlers).
 * The Date header of the static responses is patched in place once a second.
 *
 * A request arriving in many reads is not parsed from its start after every
 * read (O(bytes x reads), quadratic for a trickle): the parsers are stateless,
 * so the loop keeps a small scan state per connection for the request at the
 * front of its buffer and follows only the new bytes -- scan_head for an
 * incomplete head, scan_chunked for a chunked body -- asking the parser again
 * only when its answer can have changed from "need more" (the same scans as
 * kourier_lab/parsers/scan.py, whatever the parser: C, Python, Numba, a user's).
 *
 * Every complete head is parsed (unless the head memo is on), routed with
 * its own look-up and answered with its own copy of its response.  Folding
 * (off unless kl_loop_set_fold_runs(L, 1), `serve --fold-runs on`) exploits
 * runs of equal consecutive requests instead: a request whose method and
 * path bytes equal the previous head's takes that head's route without a
 * look-up, and consecutive requests answered by the same static response get
 * their answers with one copy from a block of RUN_MAX pre-replicated copies.
 * It is off by default so that a figure measures per-request work, not how
 * repetitive the client is.  The head memo (off unless
 * kl_loop_set_head_memo(L, 1), `serve --head-memo on`) is the one shortcut
 * past the parser: a head byte-identical to the last one a static route
 * answered is answered after one memcmp (parsers are stateless, so the same
 * bytes get the same verdict); a run of such heads is answered in one go only
 * when folding too.
 *
 * Backpressure: while more than write_buffer_limit bytes are queued the
 * connection is paused (its socket left unread) until a flush drains it.
 * Out of descriptors: the listener leaves epoll for 100 ms (no busy loop).
 *
 * Timers: a hashed timer wheel (10 ms ticks, 4096 slots).  A connection is
 * filed under one slot; resetting its deadline to a LATER time only stores the
 * new deadline (no unlink, no system call): when the slot comes round, the
 * entry is re-filed under its current deadline (lazy re-filing).  An EARLIER
 * deadline (idle -> request timeout) relinks it, O(1).  A bitmap of non-empty
 * slots gives epoll_wait its timeout without scanning the wheel.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "loop.h"
#include "parser.h"

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
#define MAX_EVENTS 512
#define MAX_PY 64                       /* Python requests per batch callback */
#define MAX_DEFERRED 4096               /* ordered answers waiting for a batch callback */
#define DATE_LEN 29                     /* "Thu, 01 Jan 1970 00:00:00 GMT" */
#define MEMO_MAX 512                    /* longest head the memo remembers */
#define RUN_MAX 64                      /* identical answers copied in one memcpy */
#define STAGE_MAX 64                    /* static answers sent by reference in one sendmsg */

static const char CONTINUE[] = "HTTP/1.1 100 Continue\r\n\r\n";

enum { SCAN_NONE, SCAN_HEAD, SCAN_CHUNKED };   /* conn.scan */

typedef struct conn {
    int fd;
    uint8_t in_request, continue_sent, closing, peer_closed, want_write, paused, closed;
    uint8_t hangup;       /* the peer hung up: read on to the EOF, no later edge comes */
    /* an answer could not be buffered (out of memory): nothing after it is
     * written (later answers would go to the wrong requests); flush, close */
    uint8_t out_failed;
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
    int ep, lfd, sigfd, evfd;
    volatile sig_atomic_t stop;
    int accepting;
    int accept_paused;                  /* out of descriptors: listener out of epoll until accept_resume */
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

/* ---- time ---------------------------------------------------------------- */

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

static const char DAYS[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char MONTHS[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

static void patch_one(resp *r, const char *date)
{
    if (r->data && r->date_off >= 0) {
        memcpy(r->data + r->date_off, date, DATE_LEN);
        if (r->run)
            for (size_t i = 0; i < RUN_MAX; i++)
                memcpy(r->run + i * r->len + r->date_off, date, DATE_LEN);
    }
}

/* Re-write the Date of every static response when the second changed. */
static void refresh_date(kl_loop *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    if (ts.tv_sec == L->date_second)
        return;
    L->date_second = ts.tv_sec;
    struct tm tm;
    time_t t = ts.tv_sec;
    gmtime_r(&t, &tm);
    char date[64];
    /* the IMF-fixdate, as email.utils.formatdate(usegmt=True) writes it */
    snprintf(date, sizeof date, "%s, %02d %s %04d %02d:%02d:%02d GMT", DAYS[tm.tm_wday], tm.tm_mday,
             MONTHS[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    for (int i = 0; i < L->nroutes * KL_VARIANTS; i++)
        patch_one(&L->routes[i], date);
    for (int i = 0; i < 200; i++)
        patch_one(&L->errors[i], date);
}

/* ---- setup ----------------------------------------------------------------- */

kl_loop *kl_loop_new(const kl_loop_config *cfg, void *py_handle)
{
    kl_loop *L = calloc(1, sizeof *L);
    if (!L)
        return NULL;
    L->cfg = *cfg;
    L->py = py_handle;
    L->parser_kind = KL_PARSER_C;
    L->head_fn = kl_parse_head;
    L->chunked_fn = kl_parse_chunked;
    L->catch_all = -1;
    L->ep = L->lfd = L->sigfd = L->evfd = -1;
    L->date_second = -1;
    L->tables = calloc(MAX_PY + 1, sizeof(kl_request));
    L->table_size = 16;
    L->table = calloc(L->table_size, sizeof(route_entry));
    L->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    L->batch.reqs = L->pyreqs;
    if (!L->tables || !L->table || L->evfd < 0) {
        kl_loop_free(L);
        return NULL;
    }
    return L;
}

void kl_loop_free(kl_loop *L)
{
    if (!L)
        return;
    for (int i = 0; i < L->nroutes * KL_VARIANTS; i++)
        free(L->routes[i].data), free(L->routes[i].run);
    free(L->routes);
    for (size_t i = 0; i < L->table_size; i++)
        free(L->table[i].path);
    free(L->table);
    for (int i = 0; i < 200; i++)
        free(L->errors[i].data), free(L->errors[i].run);
    free(L->tables);
    free(L->scratch);
    free(L->rscratch);
    free(L->batch.arena);
    if (L->evfd >= 0)
        close(L->evfd);
    free(L);
}

int kl_loop_set_parser(kl_loop *L, int kind, kl_head_fn head, kl_chunked_fn chunked)
{
    if (kind == KL_PARSER_C) {
        L->head_fn = kl_parse_head;
        L->chunked_fn = kl_parse_chunked;
    } else if (kind == KL_PARSER_FNPTR) {
        if (!head || !chunked)
            return -1;
        L->head_fn = head;
        L->chunked_fn = chunked;
    } else if (kind != KL_PARSER_PYTHON) {
        return -1;
    }
    L->parser_kind = kind;
    return 0;
}

/*
 * The head memo.  Parsers are stateless: the same head bytes give the same
 * table, so a request whose head is byte-identical to the last head answered
 * by a static route (every request of a pipelined or keep-alive benchmark
 * client, most of a real one) gets the same answer after one memcmp, as the
 * Python parser's memo does.  Exact, not a shortcut around validation; off
 * (the default; kl_loop_set_head_memo(loop, 1) turns it on) to measure the
 * parser on every request.
 */
void kl_loop_set_head_memo(kl_loop *L, int on)
{
    L->memo_on = on;
    L->memo_len = 0;
}

/*
 * Folding runs of equal consecutive requests: route re-use and one copy for a
 * run of identical static answers (and, with the memo, a run of memo hits
 * answered together).  Off by default: each request then costs its own route
 * look-up and its own answer written, which is what a figure should measure.
 */
void kl_loop_set_fold_runs(kl_loop *L, int on)
{
    L->fold = on != 0;
}

static uint64_t hash_bytes(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL;      /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

static route_entry *lookup(kl_loop *L, const uint8_t *path, size_t len)
{
    size_t mask = L->table_size - 1;
    for (size_t i = hash_bytes(path, len) & mask;; i = (i + 1) & mask) {
        route_entry *e = &L->table[i];
        if (!e->path)
            return e;                          /* the empty slot where it would go */
        if (e->len == len && memcmp(e->path, path, len) == 0)
            return e;
    }
}

/* route >= 0: GET/HEAD on `path` answer the static route; -1: a path that has
 * only Python handlers (the catch-all must not answer it). */
int kl_loop_add_route(kl_loop *L, const char *path, size_t len, int route)
{
    if (route < -1)
        return -1;
    if ((L->table_used + 1) * 2 > L->table_size) {
        route_entry *old = L->table;
        size_t old_size = L->table_size;
        L->table_size *= 2;
        L->table = calloc(L->table_size, sizeof(route_entry));
        if (!L->table) {
            L->table = old;
            L->table_size = old_size;
            return -1;
        }
        for (size_t i = 0; i < old_size; i++)
            if (old[i].path)
                *lookup(L, old[i].path, old[i].len) = old[i];
        free(old);
    }
    route_entry *e = lookup(L, (const uint8_t *)path, len);
    if (!e->path) {
        e->path = malloc(len ? len : 1);
        if (!e->path)
            return -1;
        memcpy(e->path, path, len);
        e->len = len;
        L->table_used++;
    }
    e->route = route;
    return 0;
}

static int set_resp(resp *r, const char *data, size_t len)
{
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy)
        return -1;
    memcpy(copy, data, len);
    free(r->data);
    free(r->run);
    r->run = NULL;
    r->data = copy;
    r->len = len;
    r->date_off = -1;
    const char *d = memmem(data, len, "\r\nDate: ", 8);
    if (d && (size_t)(d - data) + 8 + DATE_LEN <= len)
        r->date_off = d - data + 8;
    return 0;
}

int kl_loop_set_response(kl_loop *L, int route, int variant, const char *data, size_t len)
{
    if (route < 0 || variant < 0 || variant >= KL_VARIANTS)
        return -1;
    if (route >= L->nroutes) {
        resp *r = realloc(L->routes, (size_t)(route + 1) * KL_VARIANTS * sizeof(resp));
        if (!r)
            return -1;
        memset(r + L->nroutes * KL_VARIANTS, 0, (size_t)(route + 1 - L->nroutes) * KL_VARIANTS * sizeof(resp));
        L->routes = r;
        L->nroutes = route + 1;
    }
    return set_resp(&L->routes[route * KL_VARIANTS + variant], data, len);
}

void kl_loop_set_catch_all(kl_loop *L, int route)
{
    L->catch_all = route;
}

int kl_loop_set_error(kl_loop *L, int status, const char *data, size_t len)
{
    if (status < 400 || status > 599)
        return -1;
    return set_resp(&L->errors[status - 400], data, len);
}

void kl_loop_get_stats(kl_loop *L, kl_loop_stats *out)
{
    *out = L->stats;
}

void kl_loop_set_stage_counters(kl_loop *L, int on)
{
    L->stages_on = on != 0;
    if (L->stages_on) {
        /* the least of back-to-back reads: subtracted from each sampled parse
         * and route, which are as short as a few clock reads */
        int64_t best = INT64_MAX;
        for (int i = 0; i < 64; i++) {
            int64_t a = stage_now(L), b = stage_now(L);
            if (b - a < best)
                best = b - a;
        }
        L->stage_clock_ns = best > 0 ? (uint64_t)best : 0;
    }
}

void kl_loop_get_stage_ns(kl_loop *L, uint64_t *out)
{
    memcpy(out, L->stage_ns, sizeof L->stage_ns);
    if (L->stage_sampled) {
        double scale = (double)L->stage_heads / (double)L->stage_sampled;
        uint64_t clock = L->stage_sampled * L->stage_clock_ns;
        for (int s = KL_STAGE_PARSE; s <= KL_STAGE_ROUTE; s++)
            out[s] = (uint64_t)((L->stage_ns[s] > clock ? L->stage_ns[s] - clock : 0) * scale);
    }
    uint64_t pr = out[KL_STAGE_PARSE] + out[KL_STAGE_ROUTE];
    out[KL_STAGE_RESPOND] = L->stage_ns[KL_STAGE_RESPOND] > pr ? L->stage_ns[KL_STAGE_RESPOND] - pr : 0;
}

void kl_loop_request_stop(kl_loop *L)
{
    L->stop = 1;
    uint64_t one = 1;
    ssize_t r = write(L->evfd, &one, sizeof one);
    (void)r;
}

/* ---- the Python batch ----------------------------------------------------- */

int kl_batch_put(kl_batch *b, uint32_t index, const char *data, size_t len)
{
    if (index >= b->count)
        return -1;
    if (b->arena_cap - b->arena_len < len) {
        size_t cap = b->arena_cap ? b->arena_cap * 2 : 65536;
        while (cap - b->arena_len < len)
            cap *= 2;
        uint8_t *a = realloc(b->arena, cap);
        if (!a)
            return -1;
        b->arena = a;
        b->arena_cap = cap;
    }
    memcpy(b->arena + b->arena_len, data, len);
    b->reqs[index].out_off = b->arena_len;
    b->reqs[index].out_len = len;
    b->reqs[index].done = 1;
    b->arena_len += len;
    return 0;
}

/* ---- the timer wheel ------------------------------------------------------- */

static void wheel_unlink(kl_loop *L, conn *c)
{
    size_t s = (size_t)(c->filed & WHEEL_MASK);
    if (c->tprev)
        c->tprev->tnext = c->tnext;
    else
        L->slots[s] = c->tnext;
    if (c->tnext)
        c->tnext->tprev = c->tprev;
    if (!L->slots[s])
        L->bitmap[s >> 6] &= ~(1ULL << (s & 63));
    c->filed = -1;
    c->tprev = c->tnext = NULL;
}

static void wheel_link(kl_loop *L, conn *c, int64_t tick)
{
    if (tick <= L->cur_tick)
        tick = L->cur_tick + 1;
    size_t s = (size_t)(tick & WHEEL_MASK);
    c->filed = tick;
    c->tprev = NULL;
    c->tnext = L->slots[s];
    if (c->tnext)
        c->tnext->tprev = c;
    L->slots[s] = c;
    L->bitmap[s >> 6] |= 1ULL << (s & 63);
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

/* ticks until the next non-empty slot, or -1 */
static int64_t wheel_next(kl_loop *L)
{
    size_t start = (size_t)((L->cur_tick + 1) & WHEEL_MASK);
    for (size_t k = 0; k <= WHEEL_SLOTS / 64; k++) {
        size_t s = (start + k * 64) & WHEEL_MASK;
        size_t w = s >> 6;
        uint64_t bits = L->bitmap[w];
        if (k == 0)
            bits &= ~0ULL << (s & 63);
        else
            s &= ~(size_t)63;
        if (bits) {
            size_t slot = (w << 6) | (size_t)__builtin_ctzll(bits);
            return 1 + (int64_t)((slot - start) & WHEEL_MASK);
        }
    }
    return -1;
}

/* ---- connections ------------------------------------------------------------ */

static void close_conn(kl_loop *L, conn *c);

static int ring_prepare(kl_loop *L, conn *c, size_t *room)
{
    size_t want = kl_ring_want(&c->rb);
    if (want) {
        uint8_t *mem = malloc(want);
        if (!mem)
            return -1;
        uint8_t *old = c->rb.data;
        kl_ring_move(&c->rb, mem, want);
        if (old != L->rscratch)
            free(old);
    }
    *room = c->rb.cap - c->rb.tail;
    return 0;
}

/* The block of its own that keeps `len` bytes a connection could not answer
 * yet: twice their size from 256 bytes on (so a slow request grows by doubling
 * as a Kourier RingBuffer does), never past the limit. */
static size_t own_capacity(size_t len, size_t limit)
{
    size_t cap = 256;
    while (cap < 2 * len)
        cap *= 2;
    return cap < limit ? cap : (len > limit ? len : limit);
}

static inline void ring_release(conn *c)
{
    kl_ring_init(&c->rb, NULL, 0, c->rb.limit);
}

/* Fault injection for the tests: KOURIER_LAB_FAIL_WBUF_ALLOC=N makes every
 * Nth write-buffer allocation fail (unset or 0: never). */
static int fail_injected(void)
{
    static long every = -1, count;
    if (every < 0) {
        const char *e = getenv("KOURIER_LAB_FAIL_WBUF_ALLOC");
        every = e ? atol(e) : 0;
    }
    return every > 0 && ++count % every == 0;
}

static int copy_out(conn *c, const void *data, size_t len)
{
    if (c->out_failed)
        return -1;
    if (kl_wbuf_want(&c->wb, len)) {
        size_t cap = kl_wbuf_want(&c->wb, len);
        uint8_t *mem = fail_injected() ? NULL : malloc(cap);
        if (!mem) {
            c->out_failed = 1;
            return -1;
        }
        uint8_t *old = c->wb.data;
        kl_wbuf_move(&c->wb, mem, cap);
        free(old);
    }
    kl_wbuf_put(&c->wb, data, len);
    return 0;
}

/* the staged answers, in order, into the write buffer (they stay first) */
static int unstage(kl_loop *L, conn *c)
{
    int rc = 0;
    if (c->staged) {
        for (int i = 0; i < L->nstage; i++)
            if (L->stage[i].iov_len && copy_out(c, L->stage[i].iov_base, L->stage[i].iov_len) < 0) {
                rc = -1;                /* the rest is dropped: no gap before later answers */
                break;
            }
        c->staged = 0;
    }
    L->nstage = 0;
    return rc;
}

/* bytes that are not static answers (Python's arena): copied, after what is staged */
static int out(kl_loop *L, conn *c, const void *data, size_t len)
{
    if (c->staged && unstage(L, c) < 0)
        return -1;
    return copy_out(c, data, len);
}

/* a static answer (memory that stays put until the next round of events):
 * staged by reference while nothing is buffered before it, else copied */
static int out_ref(kl_loop *L, conn *c, const void *data, size_t len)
{
    if (!len)
        return 0;
    if (c->out_failed)
        return -1;
    if (c->wb.end == c->wb.start && L->nstage < STAGE_MAX && (c->staged || !L->nstage)) {
        L->stage[L->nstage].iov_base = (void *)data;
        L->stage[L->nstage].iov_len = len;
        L->nstage++;
        c->staged += len;
        return 0;
    }
    return out(L, c, data, len);
}

static inline size_t pending(const conn *c)
{
    return c->wb.end - c->wb.start + c->staged;
}

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

/* Close without turning unread input into a RST that could destroy the
 * response just sent: discard what the client sent, send FIN, close. */
static void close_conn(kl_loop *L, conn *c)
{
    if (c->closed)
        return;
    c->closed = 1;
    if (c->staged) {
        c->staged = 0;
        L->nstage = 0;
    }
    if (c->filed >= 0)
        wheel_unlink(L, c);
    epoll_ctl(L->ep, EPOLL_CTL_DEL, c->fd, NULL);
    static uint8_t sink[65536];
    for (int i = 0; i < 16; i++)
        if (recv(c->fd, sink, sizeof sink, MSG_DONTWAIT) <= 0)
            break;
    shutdown(c->fd, SHUT_WR);
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        L->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    L->nconns--;
    c->dead_next = L->dead;             /* freed after this round of events */
    L->dead = c;
}

static void free_dead(kl_loop *L)
{
    while (L->dead) {
        conn *c = L->dead;
        L->dead = c->dead_next;
        free(c->rb.data);
        free(c->wb.data);
        free(c);
    }
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
        if (L->nconns >= L->cfg.max_connections) {
            resp *r = &L->errors[503 - 400];
            if (r->data) {
                ssize_t n = send(fd, r->data, r->len, MSG_NOSIGNAL | MSG_DONTWAIT);
                (void)n;
            }
            shutdown(fd, SHUT_WR);
            close(fd);
            L->stats.refused++;
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            return;
        }
        c->fd = fd;
        c->filed = -1;
        /* no read memory until bytes stay unanswered (see on_readable) */
        kl_ring_init(&c->rb, NULL, 0, L->cfg.read_buffer_limit);
        kl_wbuf_init(&c->wb, NULL, 0, L->cfg.write_buffer_limit);
        struct epoll_event ev;
        ev.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
        ev.data.ptr = c;
        if (epoll_ctl(L->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            free(c);
            close(fd);
            continue;
        }
        c->next = L->conns;
        if (L->conns)
            L->conns->prev = c;
        L->conns = c;
        L->nconns++;
        L->stats.accepted++;
        timer_set(L, c, L->cur_tick + L->idle_ticks);
    }
}

/* ---- per-connection HTTP logic (as server/session.py) --------------------- */

/* an answer, in order: straight into the write buffer, or queued behind a
 * Python answer of the same batch */
static int emit(kl_loop *L, conn *c, const uint8_t *data, size_t len)
{
    if (!L->deferring)
        return out_ref(L, c, data, len);
    deferred *d = &L->defer[L->ndefer++];
    d->data = data;
    d->len = len;
    return 0;
}

/* k copies of a static answer: from its run block, made on first use */
static int emit_run(kl_loop *L, conn *c, resp *r, size_t k)
{
    if (k == 1)
        return emit(L, c, r->data, r->len);
    L->stats.answers_folded += k;
    if (!r->run) {
        r->run = malloc(RUN_MAX * r->len);
        if (!r->run) {
            for (size_t i = 0; i < k; i++)
                if (emit(L, c, r->data, r->len) < 0)
                    return -1;
            return 0;
        }
        for (size_t i = 0; i < RUN_MAX; i++)
            memcpy(r->run + i * r->len, r->data, r->len);
    }
    return emit(L, c, r->run, k * r->len);
}

static int emit_error(kl_loop *L, conn *c, int status)
{
    if (status < 400 || status > 599 || !L->errors[status - 400].data)
        status = 400;
    resp *r = &L->errors[status - 400];
    return emit(L, c, r->data, r->len);
}

/* Write the pending run of identical static answers (before any other answer). */
static inline void flush_run(kl_loop *L, conn *c)
{
    if (L->run_k) {
        emit_run(L, c, L->run_resp, L->run_k);
        L->run_k = 0;
    }
}

/* Call Python once for the batch, then write every deferred answer in order. */
static void run_batch(kl_loop *L, conn *c)
{
    kl_batch *b = &L->batch;
    if (b->count) {
        L->stats.batches++;
        if (kl_py_batch(L->py, b) != 0)
            c->closing = 1;
    }
    for (uint32_t i = 0; i < L->ndefer; i++) {
        deferred *d = &L->defer[i];
        if (d->data) {
            out_ref(L, c, d->data, d->len);
        } else {
            kl_pyreq *q = &b->reqs[d->index];
            if (q->done) {
                out(L, c, b->arena + q->out_off, q->out_len);
            } else {                    /* the callback failed before this one: 500, close */
                resp *r = &L->errors[500 - 400];
                if (r->data)
                    out_ref(L, c, r->data, r->len);
                c->closing = 1;
                break;
            }
        }
    }
    b->count = 0;
    b->arena_len = 0;
    L->ndefer = 0;
    L->deferring = 0;
}

static inline int parse_head(kl_loop *L, const uint8_t *base, size_t end, size_t pos, kl_request *req)
{
    if (L->parser_kind == KL_PARSER_PYTHON)
        return kl_py_parse_head(L->py, L->gen, base, end, pos, req);
    if (L->parser_kind == KL_PARSER_C) {
        int r = L->c_head(base + pos, end - pos, &L->cfg.limits, req);
        req->status = r < 0 ? -r : 0;   /* as kl_parse_head */
        return r;
    }
    return L->head_fn(base + pos, end - pos, &L->cfg.limits, req);
}

static inline int64_t parse_chunked(kl_loop *L, uint8_t *base, size_t end, size_t pos, int64_t *body_len)
{
    if (L->parser_kind == KL_PARSER_PYTHON)
        return kl_py_parse_chunked(L->py, base, end, pos, body_len);
    if (L->parser_kind == KL_PARSER_C)
        return kl_parse_chunked(base + pos, end - pos, &L->cfg.limits, body_len);
    /* A parser from elsewhere may compact while it scans, even when it then
     * answers 0 (need more): the bytes must stay intact for the next try, so
     * it decodes a scratch copy and only a complete body is copied back. */
    size_t len = end - pos;
    if (L->scratch_cap < len) {
        size_t cap = L->scratch_cap ? L->scratch_cap : 4096;
        while (cap < len)
            cap *= 2;
        uint8_t *mem = realloc(L->scratch, cap);
        if (!mem)
            return -500;
        L->scratch = mem;
        L->scratch_cap = cap;
    }
    memcpy(L->scratch, base + pos, len);
    int64_t n = L->chunked_fn(L->scratch, len, &L->cfg.limits, body_len);
    if (n > 0)
        memcpy(base + pos, L->scratch, (size_t)*body_len);
    return n;
}

static inline int hex_value(uint8_t ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    ch |= 0x20;
    return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

#define CHUNK_LINE_MAX 4096             /* parser.c MAX_CHUNK_LINE */
#define CHUNK_OVERHEAD_MAX 102400       /* parser.c KL_MAX_CHUNK_OVERHEAD */

/* Follow the framing of the chunked body at base[body..end) from where this
 * connection's last scan stopped (session.py scan_chunked): 1 when the parser
 * must judge the body now (it looks complete, or something is wrong or over
 * a bound: the parser's answer is the one given), 0 to wait for more bytes.
 * Without it every read re-parsed the body from its start (quadratic). */
static int scan_chunked(conn *c, const uint8_t *base, size_t body, size_t end, const kl_limits *lim)
{
    if (c->scan != SCAN_CHUNKED) {
        c->scan = SCAN_CHUNKED;
        c->chunk_off = 0;
        c->chunk_total = c->chunk_overhead = 0;
    }
    size_t pos = body + c->chunk_off;
    int64_t total = c->chunk_total, overhead = c->chunk_overhead;
    for (;;) {
        size_t avail = end - pos;
        const uint8_t *lfp = memchr(base + pos, '\n', avail < CHUNK_LINE_MAX + 1 ? avail : CHUNK_LINE_MAX + 1);
        if (!lfp)
            break;
        size_t lf = (size_t)(lfp - base), d = pos, h;
        while (d < lf && base[d] == '0')
            d++;
        uint64_t size = 0;
        for (h = d; h < lf && hex_value(base[h]) >= 0; h++) {
            if (h - d >= 15)
                return 1;               /* overflow: the parser says 400 */
            size = size << 4 | (uint64_t)hex_value(base[h]);
        }
        if (h == pos)
            return 1;
        int64_t t = total + (int64_t)size, o = overhead + (int64_t)(lf + 1 - pos) + (size ? 2 : 0);
        if (t > lim->max_body || (o > CHUNK_OVERHEAD_MAX && o > t))
            return 1;
        if (size == 0) {                /* the trailer section, up to its empty line */
            size_t tr = lf + 1;
            if (end - tr >= lim->max_header_bytes || (end - tr >= 2 && base[tr] == '\r' && base[tr + 1] == '\n') ||
                memmem(base + lf, end - lf, "\n\r\n", 3))
                return 1;
            break;
        }
        if (end - (lf + 1) < size + 2)
            break;
        if (base[lf + 1 + size] != '\r' || base[lf + 2 + size] != '\n')
            return 1;
        pos = lf + 3 + size, total = t, overhead = o;
    }
    if (end - pos > CHUNK_LINE_MAX && !memchr(base + pos, '\n', CHUNK_LINE_MAX + 1))
        return 1;
    c->chunk_off = pos - body;
    c->chunk_total = total;
    c->chunk_overhead = overhead;
    return 0;
}

/* Follow the incomplete head at base[0..end) from where this connection's
 * last scan stopped (c->head_*; all 0 at first): the C twin of
 * parsers/scan.py scan_head, with the same semantics.  1 when the parser's
 * answer can have changed from "need more" -- by the contract's order of
 * checks: the leading CRLF pairs reach max_header_bytes (431), the request
 * line passes max_request_line (414) or ends (its syntax is judged), the
 * head's empty line arrives, or the head reaches max_header_bytes (431) --
 * so the parser must be asked now; 0 when it would answer 0 again (it is not
 * asked).  Either way c->head_* is left as the state to resume from when the
 * answer is 0.  Only bytes not searched before are searched (memchr), so a
 * head in many reads costs O(its bytes) with any parser.  Without it every
 * read re-parsed the whole head: ~head^2/2 byte scans for a 1-byte trickle. */
static int scan_head(conn *c, const uint8_t *base, size_t end, const kl_limits *lim)
{
    size_t s = c->head_s, rl = c->head_rl, scanned = c->head_scanned;
    size_t mhb = lim->max_header_bytes, mrl = lim->max_request_line;
    if (rl == 0) {
        /* the CRLF pairs before the request line, resumed where they stopped
         * (the parser bounds them at max_header_bytes + 1 bytes, so does this) */
        size_t bound = end < mhb + 1 ? end : mhb + 1;
        while (s + 2 <= bound && base[s] == '\r' && base[s + 1] == '\n')
            s += 2;
        c->head_s = s;
        c->head_scanned = end;
        if (s >= mhb)
            return 1;
        size_t from = s > scanned ? s : scanned;
        const uint8_t *lf = from < end ? memchr(base + from, '\n', end - from) : NULL;
        if (!lf) {                      /* 414 once the line cannot fit, whatever follows */
            size_t k = end - s;
            return k > mrl + 1 || (k > mrl && base[end - 1] != '\r');
        }
        /* the request line is complete: the parser judges it now; when the
         * head goes on, the search for its end starts at this LF */
        c->head_rl = c->head_scanned = (size_t)(lf - base) + 1;
        return 1;
    }
    /* the empty line ends the head: LF CR LF, or LF LF (a bare LF, the
     * parser's 400); either may start up to 2 bytes before the new ones */
    size_t at = scanned >= 2 ? scanned - 2 : 0;
    if (at < rl - 1)
        at = rl - 1;
    c->head_scanned = end;
    const uint8_t *e = base + end;
    for (const uint8_t *p = base + at; p < e && (p = memchr(p, '\n', (size_t)(e - p))) != NULL; p++)
        if ((e - p >= 2 && p[1] == '\n') || (e - p >= 3 && p[1] == '\r' && p[2] == '\n'))
            return 1;
    return end >= mhb;
}

int kl_loop_scan_head(const uint8_t *base, size_t end, size_t *state, const kl_limits *limits)
{
    conn c;
    memset(&c, 0, sizeof c);
    c.scan = SCAN_HEAD;
    c.head_s = state[0], c.head_rl = state[1], c.head_scanned = state[2];
    int r = scan_head(&c, base, end, limits);
    state[0] = c.head_s, state[1] = c.head_rl, state[2] = c.head_scanned;
    return r;
}

/* a[0..n) == b[0..n); `room16`: 16 bytes are readable at a and at b */
static inline int same_bytes(const uint8_t *a, const uint8_t *b, size_t n, int room16)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (room16 && n <= 16) {            /* two word compares, the bytes past n masked off */
        uint64_t a0, a1, b0, b1;
        memcpy(&a0, a, 8), memcpy(&a1, a + 8, 8), memcpy(&b0, b, 8), memcpy(&b1, b + 8, 8);
        uint64_t x0 = a0 ^ b0, x1 = a1 ^ b1;
        if (n < 8) {
            x0 &= n ? ~0ULL >> (64 - 8 * n) : 0;
            x1 = 0;
        } else if (n < 16) {
            x1 &= n > 8 ? ~0ULL >> (64 - 8 * (n - 8)) : 0;
        }
        return (x0 | x1) == 0;
    }
#endif
    (void)room16;
    return memcmp(a, b, n) == 0;
}

/* >= 0: the static route answering this request; -1: Python decides (handler, 404, 405) */
static inline int route_of(kl_loop *L, const uint8_t *base, const kl_request *req)
{
    const uint8_t *m = base + req->method.off;
    int get = req->method.len == 3 && m[0] == 'G' && m[1] == 'E' && m[2] == 'T';
    int head = req->method.len == 4 && memcmp(m, "HEAD", 4) == 0;
    if (!get && !head)
        return -1;
    if (L->table_used) {
        route_entry *e = lookup(L, base + req->path.off, req->path.len);
        if (e->path)
            return e->route;
    }
    return L->catch_all;
}

/* Answer every complete request buffered; returns how many were answered
 * (c->closing is set when the connection must close after flushing). */
static size_t process(kl_loop *L, conn *c)
{
    size_t answered = 0;
    uint8_t *base = c->rb.data + c->rb.head;
    size_t end = c->rb.tail - c->rb.head, pos = 0;
    int close_after = 0, incomplete = 0;
    /* head_wait: processing stopped at a head that needs more bytes (the
     * parser answered 0, or scan_head said it would); head_scanned: scan_head
     * ran on the front head at entry (its state is the one to keep) */
    int head_wait = 0, head_scanned = 0;
    /* the last static route resolved in this buffer: a request whose method
     * and path bytes equal that head's takes its route without a lookup */
    const uint8_t *last_m = NULL;
    uint32_t last_mp_len = 0, last_path_at = 0, last_mlen = 0;
    int last_r = -1;
    int64_t t_process = stage_now(L);
    L->gen++;
    L->run_k = 0;
    if (c->scan == SCAN_HEAD) {         /* the front head was incomplete: is the parser's answer due? */
        head_scanned = 1;
        if (!scan_head(c, base, end, &L->cfg.limits))
            incomplete = head_wait = 1; /* not yet: the parser is not asked */
    }
    while (!head_wait && pos < end) {
        /* backpressure: the rest waits until output drains (a pending run
         * counts as written, as it would be without deferring) */
        if (pending(c) + (L->run_k && !L->deferring ? L->run_k * L->run_resp->len : 0) > c->wb.limit)
            break;
        if (L->memo_len && end - pos >= L->memo_len && memcmp(base + pos, L->memo, L->memo_len) == 0) {
            size_t k = 1;
            flush_run(L, c);
            pos += L->memo_len;
            if (L->memo_keep_alive && L->fold)  /* a run of identical requests: one copy of their answers */
                while (k < RUN_MAX && end - pos >= L->memo_len && memcmp(base + pos, L->memo, L->memo_len) == 0) {
                    k++;
                    pos += L->memo_len;
                }
            emit_run(L, c, L->memo_resp, k);
            L->stats.requests_static += k;
            answered += k;
            c->continue_sent = 0;
            if (!L->memo_keep_alive) {
                close_after = 1;
                pos = end;
                break;
            }
            if (L->ndefer >= MAX_DEFERRED - 2)
                run_batch(L, c);
            continue;
        }
        kl_request *req = &L->tables[L->batch.count];
        int timed = L->stages_on && (L->stage_heads++ % STAGE_SAMPLE) == 0;
        int64_t t_parse = timed ? stage_now(L) : 0;
        int n = parse_head(L, base, end, pos, req);
        if (timed) {
            STAGE_ADD(L, KL_STAGE_PARSE, t_parse);
            L->stage_sampled++;
        }
        if (n <= 0) {
            flush_run(L, c);
            if (n < 0) {
                emit_error(L, c, -n);
                close_after = 1;
                pos = end;
            }
            incomplete = head_wait = n == 0;
            break;
        }
        size_t body_end = pos + (size_t)n;
        const uint8_t *body = NULL;
        int64_t body_len = 0;
        if (req->body_kind != KL_BODY_NONE) {
            int64_t m;
            if (req->body_kind == KL_BODY_CHUNKED) {
                if (pos)
                    c->scan = SCAN_NONE; /* the scan state is for the request at the front */
                m = scan_chunked(c, base, body_end, end, &L->cfg.limits)
                    ? parse_chunked(L, base, end, body_end, &body_len) : 0;
                if (m < 0) {
                    flush_run(L, c);
                    emit_error(L, c, (int)-m);
                    close_after = 1;
                    pos = end;
                    break;
                }
            } else {
                int64_t clen = req->content_length;
                m = (int64_t)(end - body_end) >= clen ? clen : 0;
                body_len = clen;
                if (clen == 0)
                    m = -1;             /* complete, empty */
            }
            if (m == 0) {
                incomplete = 1;
                flush_run(L, c);
                if (req->expect_continue && !c->continue_sent) {
                    emit(L, c, (const uint8_t *)CONTINUE, sizeof CONTINUE - 1);
                    c->continue_sent = 1;
                }
                break;
            }
            body = base + body_end;
            if (m > 0)
                body_end += (size_t)m;
        }
        /* the route: when folding, the previous head's when the bytes from
         * the method to the path's end are the same (so are the method and
         * the path); last_m stays NULL when not folding */
        const uint8_t *hm = base + pos + req->method.off;
        uint32_t mp_len = req->path.off + req->path.len - req->method.off;
        uint32_t path_at = req->path.off - req->method.off;
        int ordered = req->path.off >= req->method.off + req->method.len;
        int r;
        int64_t t_route = timed ? stage_now(L) : 0;
        if (last_m && ordered && mp_len == last_mp_len && path_at == last_path_at &&
            req->method.len == last_mlen && same_bytes(hm, last_m, mp_len, hm + 16 <= base + end)) {
            r = last_r;
            L->stats.routes_reused++;
        } else {
            r = route_of(L, base + pos, req);
            if (ordered && L->fold)
                last_m = hm, last_mp_len = mp_len, last_path_at = path_at, last_mlen = req->method.len,
                last_r = r;
        }
        if (timed)
            STAGE_ADD(L, KL_STAGE_ROUTE, t_route);
        int keep_alive = req->keep_alive != 0;
        if (r >= 0 && r < L->nroutes) {
            int variant = (req->method.len == 4 && hm[0] == 'H') * 4 + (req->version_minor ? 2 : 0) + keep_alive;
            resp *s = &L->routes[r * KL_VARIANTS + variant];
            if (!L->fold) {
                emit(L, c, s->data, s->len);    /* its own answer, now */
            } else {
                if (L->run_k && (s != L->run_resp || L->run_k == RUN_MAX))
                    flush_run(L, c);
                L->run_resp = s;        /* answered with the run when it ends, in order */
                L->run_k++;
            }
            L->stats.requests_static++;
            if (L->memo_on && req->body_kind == KL_BODY_NONE && (size_t)n <= MEMO_MAX) {
                memcpy(L->memo, base + pos, (size_t)n);
                L->memo_len = (size_t)n;
                L->memo_resp = s;
                L->memo_keep_alive = keep_alive;
            }
        } else {
            flush_run(L, c);
            uint32_t i = L->batch.count++;
            kl_pyreq *q = &L->pyreqs[i];
            q->base = base + pos;
            q->req = req;
            q->body = body;
            q->body_len = body ? body_len : 0;
            q->done = 0;
            L->deferring = 1;
            deferred *d = &L->defer[L->ndefer++];
            d->data = NULL;
            d->index = i;
            L->stats.requests_python++;
        }
        c->continue_sent = 0;
        answered++;
        pos = body_end;
        if (!keep_alive) {
            close_after = 1;
            pos = end;                  /* nothing after a closing request is read */
            break;
        }
        if (L->batch.count == MAX_PY || L->ndefer >= MAX_DEFERRED - 2) {
            flush_run(L, c);
            run_batch(L, c);
        }
    }
    flush_run(L, c);
    if (L->deferring)
        run_batch(L, c);
    if (c->out_failed) {                /* answers were dropped: close after those before them */
        close_after = 1;
        pos = end;
    }
    if (incomplete && !close_after && pos == 0 && end >= c->rb.limit) {
        /* the unfinished request fills the read buffer: it can never complete,
         * so say so now (not 408 after a stall) */
        emit_error(L, c, 413);
        close_after = 1;
        pos = end;
    }
    /* the scan state follows the request at the front */
    if (head_wait && !close_after) {
        if (pos || !head_scanned) {     /* a new incomplete head: scanned once from its start */
            c->scan = SCAN_HEAD;
            c->head_s = c->head_rl = c->head_scanned = 0;
            scan_head(c, base + pos, end - pos, &L->cfg.limits);
        }                               /* else: the state scan_head left at entry */
    } else if (pos || c->scan == SCAN_HEAD) {
        c->scan = SCAN_NONE;            /* the request it followed is done (or its head is) */
    }
    kl_ring_consume(&c->rb, pos);
    /* only a request known to be incomplete runs the request timeout; bytes
     * left unparsed by backpressure wait for the client to read (idle timeout) */
    c->in_request = incomplete && !close_after;
    if (close_after)
        c->closing = 1;
    STAGE_ADD(L, KL_STAGE_RESPOND, t_process);   /* less parse and route when read out */
    return answered;
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
     * idle timeout from the last response on */
    int64_t t_timers = stage_now(L);
    if (c->in_request) {
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

static void expire(kl_loop *L, conn *c)
{
    if (c->closed)
        return;
    if (c->in_request) {
        resp *r = &L->errors[408 - 400];
        if (r->data)
            out(L, c, r->data, r->len);
        c->closing = 1;
        L->stats.timeouts++;
        flush(L, c);
        if (!c->closed)                 /* could not send it all: do not wait for a client that is not reading */
            close_conn(L, c);
    } else {
        L->stats.idle_closed++;
        close_conn(L, c);
    }
}

static void wheel_advance(kl_loop *L, int64_t now)
{
    if (now - L->cur_tick > WHEEL_SLOTS)
        L->cur_tick = now - WHEEL_SLOTS;
    while (L->cur_tick < now) {
        int64_t t = ++L->cur_tick;
        size_t s = (size_t)(t & WHEEL_MASK);
        conn *list = L->slots[s];
        if (!list)
            continue;
        L->slots[s] = NULL;
        L->bitmap[s >> 6] &= ~(1ULL << (s & 63));
        while (list) {
            conn *c = list;
            list = c->tnext;
            int64_t filed = c->filed;
            c->filed = -1;
            c->tprev = c->tnext = NULL;
            if (filed > t)
                wheel_link(L, c, filed);            /* a later round of the wheel */
            else if (c->deadline > t)
                wheel_link(L, c, c->deadline);      /* lazy re-filing */
            else
                expire(L, c);
        }
    }
}

static void close_idle(kl_loop *L)
{
    conn *c = L->conns;
    while (c) {
        conn *next = c->next;
        if (!c->closed && !c->in_request && !c->want_write)
            close_conn(L, c);
        c = next;
    }
}

static inline int64_t ticks_of(double seconds)
{
    int64_t t = (int64_t)(seconds * 1e9 / TICK_NS + 0.999);
    return t > 0 ? t : 1;
}

/* Runs until stopped; 0, or -errno when the loop could not start. */
int kl_loop_run(kl_loop *L, int lfd, int sigfd)
{
    struct epoll_event ev, events[MAX_EVENTS];
    L->ep = epoll_create1(EPOLL_CLOEXEC);
    if (L->ep < 0)
        return -errno;
    L->lfd = lfd;
    L->sigfd = sigfd;
    L->c_head = kl_parser_head_impl();
    L->request_ticks = ticks_of(L->cfg.request_timeout);
    L->idle_ticks = ticks_of(L->cfg.idle_timeout);
    L->cur_tick = mono_ns() / TICK_NS;
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
                if (pending(c) < before && !c->in_request)
                    timer_set(L, c, L->cur_tick + L->idle_ticks);   /* a slow reader is not idle */
                if (c->paused && pending(c) <= c->wb.limit) {
                    c->paused = 0;
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
