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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loop_shared.h"

static const char CONTINUE[] = "HTTP/1.1 100 Continue\r\n\r\n";

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
void refresh_date(kl_loop *L)
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
    L->driver = &kl_epoll_driver;
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

void wheel_unlink(kl_loop *L, conn *c)
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

void wheel_link(kl_loop *L, conn *c, int64_t tick)
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

/* ticks until the next non-empty slot, or -1 */
int64_t wheel_next(kl_loop *L)
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

int ring_prepare(kl_loop *L, conn *c, size_t *room)
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
size_t own_capacity(size_t len, size_t limit)
{
    size_t cap = 256;
    while (cap < 2 * len)
        cap *= 2;
    return cap < limit ? cap : (len > limit ? len : limit);
}

/* Fault injection for the tests: KOURIER_LAB_FAIL_WBUF_ALLOC=N makes every
 * Nth write-buffer allocation fail (unset or 0: never). */
int fail_injected(void)
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
int unstage(kl_loop *L, conn *c)
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

/* Close without turning unread input into a RST that could destroy the
 * response just sent: discard what the client sent, send FIN, close. */
void close_conn(kl_loop *L, conn *c)
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
    L->driver->forget(L, c);
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

void free_dead(kl_loop *L)
{
    while (L->dead) {
        conn *c = L->dead;
        L->dead = c->dead_next;
        if (!L->driver->release(L, c))
            continue;                   /* operations in flight still name it */
        free(c->rb.data);
        free(c->wb.data);
        free(c);
    }
}

/* ---- accepting (what both drivers do with a new descriptor) --------------- */

/* Past max_connections: 503 and close; 1 when fd was refused. */
int refuse_over_limit(kl_loop *L, int fd)
{
    if (L->nconns < L->cfg.max_connections)
        return 0;
    resp *r = &L->errors[503 - 400];
    if (r->data) {
        ssize_t n = send(fd, r->data, r->len, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)n;
    }
    shutdown(fd, SHUT_WR);
    close(fd);
    L->stats.refused++;
    return 1;
}

/* A connection for fd (TCP_NODELAY), `size` bytes (a driver may wrap conn),
 * not yet among the live ones; NULL when out of memory. */
conn *conn_open(kl_loop *L, int fd, size_t size)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    conn *c = calloc(1, size);
    if (!c)
        return NULL;
    c->fd = fd;
    c->filed = -1;
    /* no read memory until bytes stay unanswered (see the drivers' reads) */
    kl_ring_init(&c->rb, NULL, 0, L->cfg.read_buffer_limit);
    kl_wbuf_init(&c->wb, NULL, 0, L->cfg.write_buffer_limit);
    return c;
}

/* c joins the live connections, its idle timeout running. */
void conn_link(kl_loop *L, conn *c)
{
    c->next = L->conns;
    if (L->conns)
        L->conns->prev = c;
    L->conns = c;
    L->nconns++;
    L->stats.accepted++;
    timer_set(L, c, L->cur_tick + L->idle_ticks);
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
size_t process(kl_loop *L, conn *c)
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

static inline int64_t ticks_of(double seconds)
{
    int64_t t = (int64_t)(seconds * 1e9 / TICK_NS + 0.999);
    return t > 0 ? t : 1;
}

static void expire(kl_loop *L, conn *c)
{
    if (c->closed)
        return;
    /* a paused connection's timer is the idle one: the server stopped reading
     * (backpressure), so the client cannot be late with its request; it is the
     * client that does not read, and it is closed without an answer it would not read */
    if (c->in_request && !c->paused && !c->doomed) {
        resp *r = &L->errors[408 - 400];
        if (r->data)
            out(L, c, r->data, r->len);
        c->closing = 1;
        L->stats.timeouts++;
        L->driver->flush(L, c);
        if (c->closed)
            return;
        if (L->driver->async_writes) {  /* the send is on its way: a second for it to complete */
            c->doomed = 1;
            timer_set(L, c, L->cur_tick + ticks_of(1.0));
        } else {                        /* could not send it all: do not wait for a client that is not reading */
            close_conn(L, c);
        }
    } else if (c->doomed) {
        close_conn(L, c);
    } else {
        L->stats.idle_closed++;
        close_conn(L, c);
    }
}

void wheel_advance(kl_loop *L, int64_t now)
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

void close_idle(kl_loop *L)
{
    conn *c = L->conns;
    while (c) {
        conn *next = c->next;
        if (!c->closed && !c->in_request && !c->want_write)
            close_conn(L, c);
        c = next;
    }
}



int kl_loop_set_driver(kl_loop *L, int driver, uint32_t features)
{
    if (driver == KL_DRIVER_EPOLL) {
        L->driver = &kl_epoll_driver;
        return 0;
    }
    if (driver != KL_DRIVER_URING)
        return -EINVAL;
#ifdef KL_HAVE_URING
    L->driver = &kl_uring_driver;
    L->uring_features = features;
    return 0;
#else
    (void)features;
    return -ENOSYS;
#endif
}

/* Runs until stopped; 0, or -errno when the loop could not start. */
int kl_loop_run(kl_loop *L, int lfd, int sigfd)
{
    L->lfd = lfd;
    L->sigfd = sigfd;
    L->c_head = kl_parser_head_impl();
    L->request_ticks = ticks_of(L->cfg.request_timeout);
    L->idle_ticks = ticks_of(L->cfg.idle_timeout);
    L->cur_tick = mono_ns() / TICK_NS;
    return L->driver->run(L);
}
