/*
 * loadgen.c — the lab's HTTP/1.1 load generator (`kourier-lab load`).
 *
 * Why it exists: wrk parses every response byte by byte and, on a machine
 * split one core for the server and one for the client, runs out of CPU before
 * the fastest servers do.  This tool does the same job with less work per
 * response, checks every response, and also runs an open loop.
 *
 * Shape: one thread per -t, each with its own epoll set (--io uring: its own
 * io_uring, see "io_uring" below) and its share of the
 * -c connections (connection j belongs to thread j % t), pinned to a CPU of
 * --cpus when given.  Above one process's descriptor limit the threads are
 * spread over several forked processes (--processes, or chosen from the
 * limit); every thread writes its counters and histogram into its own slot of
 * a shared mapping and the parent merges them and prints one summary.
 *
 * Requests: a table of requests, either one (GET of the URL's path with Host,
 * plus --header lines: wrk's request) or a corpus file (the format of
 * bench/experiment/corpora.py, the file wrk's pipeline.lua reads).  The table
 * is laid out once as consecutive bytes, repeated past its end by the deepest
 * write, so any run of consecutive requests is one contiguous span: a write
 * never copies request bytes.  Each connection starts at its own place in the
 * table and walks it in order, so the requests of one write all differ (as
 * long as the pipeline depth is at most the table's size).
 *
 * Schedule: every request gets an intended send time, kept in the
 * connection's FIFO until its response arrives.  Closed loop (default): when a
 * connection has no request outstanding, --pipeline requests are due now.
 * Open loop (--rate R): connection k of c sends at R/c per second on its own
 * evenly spaced timetable (the timetables are staggered); a thread keeps its
 * connections in a min-heap by next intended time, wakes when the earliest is
 * due (epoll_pwait2 or io_uring_enter with a ns timeout, coalescing wake-ups
 * closer than --tick-us) and writes everything due: O(log n) per connection
 * due, whatever the number of connections.  A server that falls
 * behind makes requests queue on their connection, pipelined: none is dropped,
 * and latency is counted from the intended time (wrk2's model, so a stall is
 * charged to every request it delayed, not only to the one that saw it).
 *
 * Responses: one per request, in order.  The fast path compares the bytes
 * with the previous response of the same connection (the head and body of a
 * benchmark answer repeat; only Date changes, once a second): a memcmp of a
 * complete message whose framing is already known proves the same framing.
 * Otherwise the response is parsed: status line "HTTP/1.x DDD", head ending
 * in CRLFCRLF, framing by Content-Length or chunked Transfer-Encoding
 * (204/304 and the answer to a HEAD without a body: each connection knows
 * which request of the table the next response answers).  1xx interim
 * responses (100 Continue, 103 Early Hints) are counted and skipped, the final
 * response follows; 101 is an error (the stream would no longer be HTTP).  A
 * Content-Length body is skipped and a chunked body not all in one read is
 * streamed through chunk by chunk, so neither is ever kept whatever its size.  Anything else is an error of a named kind;
 * errors that lose the stream's framing close the connection with a message
 * (the first message of each kind is kept for the summary) and it reconnects.
 * A connection that has requests outstanding and receives nothing for
 * --timeout seconds is closed the same way (kind "timeout").
 *
 * Latency: per request, completion time (one clock read per read()) minus the
 * intended send time, in log-linear buckets laid out as HdrHistogram's with 3
 * significant digits (sub-bucket count 2048, unit 1 ns); the summary lists the
 * non-empty buckets so the Python side can re-encode them as HdrHistogram.
 * Responses completing in [warm-up end, end] count toward requests/s; a
 * request's latency is kept when it was intended after the warm-up and
 * answered before the end (open loop: before the end of a short drain, so the
 * slowest answers of the last moments are not dropped).
 *
 * usage: loadgen URL [-c N] [-t N] [-d S] [--warmup S] [--pipeline N] [--rate R]
 *                [--corpus FILE] [--header "Name: value"]... [--timeout S]
 *                [--cpus 0,1] [--sources N] [--processes N] [--tick-us U] [--json]
 *                [--io epoll|uring]
 *        loadgen --io uring --probe-io   (exit 0 when io_uring can run here, else 2 and why)
 *        loadgen URL --hold -c N --rate R -d S [--first-index I] [--per-address P]
 *                [--concurrency K] [--connect-timeout S] [--timeout S]
 *                (the memory steps' client: phases on stdin, JSON lines out; see hold_main)
 * URL: http://IPv4-or-localhost[:port][/path].  Exit 0 on a finished run (errors
 * are in the summary), 2 on bad arguments, 1 when nothing could run.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef KL_LOADGEN_URING
#include <liburing.h>
#endif

/* ------------------------------------------------------------------ */
/* Histogram: HdrHistogram's layout, lowest value 1, 3 significant digits. */

#define SUB_BUCKET_BITS 11                 /* 2048 sub-buckets: 3 digits */
#define SUB_BUCKET_COUNT (1 << SUB_BUCKET_BITS)
#define SUB_BUCKET_HALF (SUB_BUCKET_COUNT / 2)
#define BUCKETS 27                          /* up to 2^37 ns, ~137 s */
#define HIST_LEN ((BUCKETS + 1) * SUB_BUCKET_HALF)
#define HIST_MAX_NS ((int64_t)1 << 37)

static inline int hist_index(int64_t v) {
    if (v < 1) v = 1;
    if (v >= HIST_MAX_NS) v = HIST_MAX_NS - 1;
    int bucket = 63 - __builtin_clzll((uint64_t)v | (SUB_BUCKET_COUNT - 1)) - (SUB_BUCKET_BITS - 1);
    int sub = (int)(v >> bucket);
    return ((bucket + 1) << (SUB_BUCKET_BITS - 1)) + (sub - SUB_BUCKET_HALF);
}

static inline int64_t hist_value(int idx) {      /* lowest value of the bucket */
    int bucket = (idx >> (SUB_BUCKET_BITS - 1)) - 1;
    int sub = (idx & (SUB_BUCKET_HALF - 1)) + SUB_BUCKET_HALF;
    if (bucket < 0) { bucket = 0; sub -= SUB_BUCKET_HALF; }
    return (int64_t)sub << bucket;
}

static inline int64_t hist_highest(int idx) {    /* highest value the bucket holds */
    int bucket = (idx >> (SUB_BUCKET_BITS - 1)) - 1;
    if (bucket < 0) bucket = 0;
    return hist_value(idx) + ((int64_t)1 << bucket) - 1;
}

/* The summary's "latency_buckets_ns": the non-empty buckets as [lowest ns, highest ns, count]. */
static void print_buckets(const uint64_t *hist)
{
    int first = 1;
    printf("\"latency_buckets_ns\":[");
    for (int i = 0; i < HIST_LEN; i++)
        if (hist[i]) {
            printf("%s[%lld,%lld,%llu]", first ? "" : ",", (long long)hist_value(i),
                   (long long)hist_highest(i), (unsigned long long)hist[i]);
            first = 0;
        }
    printf("]");
}

/* ------------------------------------------------------------------ */
/* Counters: one slot per thread, in a shared mapping. */

enum err_kind {
    E_CONNECT, E_READ, E_WRITE, E_CLOSED, E_TIMEOUT, E_STATUS_LINE, E_HEAD_TOO_LARGE,
    E_FRAMING, E_CHUNK, E_UNEXPECTED, E_KINDS
};
static const char *ERR_NAMES[E_KINDS] = {
    "connect", "read", "write", "closed", "timeout", "status_line", "head_too_large",
    "framing", "chunked", "unexpected_bytes"
};

#define MSG_LEN 200

typedef struct {
    uint64_t requests;            /* written, intended in the window */
    uint64_t responses;           /* completed in the window */
    uint64_t responses_all;       /* completed at any time */
    uint64_t non_2xx_3xx;         /* in the window */
    uint64_t fast_path;           /* responses matched by memcmp */
    uint64_t bytes_read;
    uint64_t errors[E_KINDS];
    uint64_t missing;             /* requests lost with a closed connection */
    uint64_t unanswered_at_end;
    uint64_t reconnects;
    uint64_t max_queue;           /* deepest FIFO seen */
    uint64_t interim;             /* 1xx interim responses skipped (any time) */
    char messages[E_KINDS][MSG_LEN];
    uint64_t hist[HIST_LEN];
} slot_t;

/* ------------------------------------------------------------------ */
/* Options and the request table. */

typedef struct {
    struct sockaddr_in addr;
    char host[256];
    char path[2048];
    int connections, threads, processes, pipeline, sources;
    double duration_s, warmup_s, timeout_s, rate, tick_us;
    const char *corpus;
    const char *headers[64];
    int nheaders;
    int cpus[256];
    int ncpus;
    int json;
    int uring;                   /* --io uring: io_uring instead of epoll */
    int probe_io;                /* --probe-io: say whether --io can run here, and exit */
    /* --hold: the memory steps' client (hold_main) */
    int hold, first_index, per_address, concurrency;
    double connect_timeout_s, connect_stall_s, go_timeout_s, close_timeout_s;
} opts_t;

static opts_t O;

static char *table;              /* requests laid out consecutively, repeated past the end */
static size_t *offsets;          /* offsets[i]: start of request i (0 <= i <= n + depth) */
static int nreq;                 /* distinct requests */
static int max_batch;            /* most requests one write may hold */
static uint64_t hold_status[600];  /* --hold: responses by status */
static char *is_head;            /* is_head[i]: request i is a HEAD (its answer has no body) */
static int any_head;             /* the table holds a HEAD request */

static int64_t t_start, t_warm, t_end, t_stop;   /* ns, CLOCK_MONOTONIC */

static inline int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("loadgen: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(code);
}

static void build_table(char **reqs, size_t *lens, int n) {
    nreq = n;
    int total = n + max_batch;
    offsets = malloc(sizeof(size_t) * (total + 1));
    size_t size = 0;
    for (int i = 0; i < total; i++) size += lens[i % n];
    table = malloc(size ? size : 1);
    size_t pos = 0;
    for (int i = 0; i < total; i++) {
        offsets[i] = pos;
        memcpy(table + pos, reqs[i % n], lens[i % n]);
        pos += lens[i % n];
    }
    offsets[total] = pos;
    is_head = calloc(n, 1);
    for (int i = 0; i < n; i++)
        if (lens[i] >= 5 && memcmp(reqs[i], "HEAD ", 5) == 0) is_head[i] = any_head = 1;
}

static void load_corpus(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) die(2, "cannot open the corpus %s: %s", path, strerror(errno));
    struct stat st;
    fstat(fileno(f), &st);
    char *data = malloc(st.st_size + 1);
    if (fread(data, 1, st.st_size, f) != (size_t)st.st_size) die(2, "cannot read %s", path);
    fclose(f);
    data[st.st_size] = 0;
    char *nl = memchr(data, '\n', st.st_size);
    if (!nl || strncmp(data, "kourier-corpus 1 ", 17) != 0)
        die(2, "%s is not a kourier corpus (version 1) file", path);
    char name[128];
    int count = 0;
    if (sscanf(data, "kourier-corpus 1 %127s %d", name, &count) != 2 || count < 1)
        die(2, "%s: bad corpus header", path);
    char **reqs = malloc(sizeof(char *) * count);
    size_t *lens = malloc(sizeof(size_t) * count);
    char *p = nl + 1, *end = data + st.st_size;
    int n = 0;
    while (p < end) {
        char *e = memchr(p, '\n', end - p);
        if (!e || n >= count) die(2, "%s: bad record at byte %ld", path, (long)(p - data));
        size_t len = strtoul(p, NULL, 10);
        if ((size_t)(end - (e + 1)) < len) die(2, "%s: record %d is cut short", path, n + 1);
        reqs[n] = e + 1;
        lens[n] = len;
        n++;
        p = e + 1 + len;
    }
    if (n != count) die(2, "%s: %d requests, the header says %d", path, n, count);
    if (O.pipeline > n)
        die(2, "the corpus has %d requests, fewer than the pipeline depth %d "
               "(a write would repeat requests)", n, O.pipeline);
    build_table(reqs, lens, n);
    free(reqs);
    free(lens);
    free(data);
}

static void build_single_request(void) {
    char buf[16384];
    int len = snprintf(buf, sizeof buf, "GET %s HTTP/1.1\r\nHost: %s\r\n", O.path, O.host);
    for (int i = 0; i < O.nheaders; i++)
        len += snprintf(buf + len, sizeof buf - len, "%s\r\n", O.headers[i]);
    len += snprintf(buf + len, sizeof buf - len, "\r\n");
    if (len >= (int)sizeof buf) die(2, "the request is longer than %zu bytes", sizeof buf);
    char *reqs[1] = {buf};
    size_t lens[1] = {(size_t)len};
    build_table(reqs, lens, 1);
}

/* ------------------------------------------------------------------ */
/* Connections. */

#define CACHE_MAX 4096
#define READ_BUF (256 << 10)

typedef struct conn {
    int fd;
    int index;                   /* global connection number */
    int connected;
    struct sockaddr_in source;
    int use_source;
    /* requests: FIFO of intended send times; [head, head+count) are scheduled,
     * the first `sent` of them have been (at least partly) written */
    int64_t *fifo;
    uint32_t cap, head, count, sent;
    uint32_t unstaged;           /* scheduled, not yet staged for writing */
    int cursor;                  /* next request of the table */
    const char *stage;           /* the span being written */
    size_t stage_left;
    uint32_t stage_reqs;
    int want_out;                /* waiting for EPOLLOUT */
    /* open loop: the next intended time and the spacing */
    int64_t next_due, interval;
    /* the response being read */
    char *carry;
    size_t carry_len, carry_cap;
    int64_t body_left;           /* Content-Length body bytes still to skip */
    int chunk_phase;             /* a chunked body streamed through (CH_*), 0: none */
    int64_t chunk_left;          /* CH_DATA: data bytes of the chunk still to skip */
    int resp_cursor;             /* the table's request the next response answers (HEADs) */
    int cache_head;              /* the cached response answered a HEAD */
    int status;                  /* status of the response whose body is skipped */
    char cache[CACHE_MAX];       /* the previous complete response */
    size_t cache_len;
    int64_t last_progress;       /* last read that brought bytes, or the connect */
    /* --io uring: which socket of this connection a completion belongs to, and
     * whether a send is in flight (one at a time, from the span being written) */
    uint32_t gen;
    int send_inflight;
} conn_t;

typedef struct {
    int id;                      /* global thread number */
    int cpu;
    int epfd;
    conn_t *conns;
    int nconns;
    slot_t *slot;
    char *rbuf;
    conn_t **heap;               /* open loop: connections by next intended time (a min-heap) */
    int heap_n;
#ifdef KL_LOADGEN_URING
    struct io_uring ring;
    struct io_uring_buf_ring *br;  /* provided receive buffers */
    char *bufs;
    unsigned given;                /* buffers handed back since the last advance */
#endif
} worker_t;

static void set_msg(slot_t *s, int kind, const char *fmt, ...) {
    if (s->messages[kind][0]) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->messages[kind], MSG_LEN, fmt, ap);
    va_end(ap);
}

static void fifo_push(conn_t *c, int64_t t, slot_t *s) {
    if (c->count == c->cap) {        /* grow: a backlog is queued, never dropped */
        uint32_t ncap = c->cap * 2;
        int64_t *n = malloc(sizeof(int64_t) * ncap);
        for (uint32_t i = 0; i < c->count; i++) n[i] = c->fifo[(c->head + i) & (c->cap - 1)];
        free(c->fifo);
        c->fifo = n;
        c->head = 0;
        c->cap = ncap;
    }
    c->fifo[(c->head + c->count) & (c->cap - 1)] = t;
    c->count++;
    if (c->count > s->max_queue) s->max_queue = c->count;
}

/* ------------------------------------------------------------------ */
/* io_uring (--io uring): the same connections and the same checks; a
 * connect, one multishot receive into the thread's provided buffers and one
 * send at a time per connection are in flight, and each turn of the thread is
 * one io_uring_enter that submits what the turn queued and waits. */

#define U_BUFS 256                   /* provided buffers per thread (a power of two) */
#define U_BUF_SIZE (64 << 10)
enum { U_CONNECT = 1, U_RECV = 2, U_SEND = 3, U_IGNORE = 4 };

#ifdef KL_LOADGEN_URING
static unsigned uring_flags;         /* the setup flags this kernel accepted */

static inline uint64_t u_data(worker_t *w, conn_t *c, int op) {
    return (uint64_t)c->gen << 32 | (uint64_t)op << 28 | (uint64_t)(c - w->conns);
}

static struct io_uring_sqe *u_sqe(worker_t *w) {
    struct io_uring_sqe *sqe;
    while (!(sqe = io_uring_get_sqe(&w->ring))) io_uring_submit(&w->ring);
    return sqe;
}

static void u_recv(worker_t *w, conn_t *c) {
    struct io_uring_sqe *sqe = u_sqe(w);
    io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = 0;
    io_uring_sqe_set_data64(sqe, u_data(w, c, U_RECV));
}

static void u_give(worker_t *w, unsigned bid) {
    io_uring_buf_ring_add(w->br, w->bufs + (size_t)bid * U_BUF_SIZE, U_BUF_SIZE,
                          (unsigned short)bid, io_uring_buf_ring_mask(U_BUFS), (int)w->given++);
}

/* The ring and its buffers.  Returns 0, or -errno with the step in *what. */
static int u_setup(worker_t *w, const char **what) {
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_CQSIZE | uring_flags;
    p.cq_entries = 16384;
    int rc = io_uring_queue_init_params(4096, &w->ring, &p);
    if (rc < 0) { *what = "io_uring_setup"; return rc; }
    w->br = mmap(NULL, U_BUFS * sizeof(struct io_uring_buf), PROT_READ | PROT_WRITE,
                 MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    w->bufs = malloc((size_t)U_BUFS * U_BUF_SIZE);
    if (w->br == MAP_FAILED || !w->bufs) { *what = "buffers"; return -ENOMEM; }
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof reg);
    reg.ring_addr = (uint64_t)(uintptr_t)w->br;
    reg.ring_entries = U_BUFS;
    if ((rc = io_uring_register_buf_ring(&w->ring, &reg, 0)) < 0) {
        *what = "a provided buffer ring (Linux 5.19 or later)";
        return rc;
    }
    io_uring_buf_ring_init(w->br);
    for (unsigned i = 0; i < U_BUFS; i++) u_give(w, i);
    io_uring_buf_ring_advance(w->br, (int)w->given);
    w->given = 0;
    return 0;
}
#endif

/* One line saying why --io uring cannot run here, or NULL when it can (a
 * ring with the flags and the buffer ring the threads use is set up and torn
 * down; the flags this kernel accepts are kept). */
static const char *uring_unavailable(void) {
#ifndef KL_LOADGEN_URING
    return "this build has no io_uring (liburing was not found when it was built)";
#else
    static char why[256];
    FILE *f = fopen("/proc/sys/kernel/io_uring_disabled", "r");
    int disabled = 0;
    if (f) {
        if (fscanf(f, "%d", &disabled) != 1) disabled = 0;
        fclose(f);
    }
    if (disabled == 2) return "io_uring is disabled here (kernel.io_uring_disabled = 2)";
    worker_t probe;
    memset(&probe, 0, sizeof probe);
    const char *what = "";
    uring_flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    int rc = u_setup(&probe, &what);
    if (rc == -EINVAL && !strcmp(what, "io_uring_setup")) {
        uring_flags = 0;                 /* a kernel before 6.1 */
        rc = u_setup(&probe, &what);
    }
    if (rc < 0) {
        if (rc == -ENOSYS)
            snprintf(why, sizeof why, "the kernel has no io_uring (%s: ENOSYS)", what);
        else if (rc == -EPERM || rc == -EACCES)
            snprintf(why, sizeof why, "io_uring is not permitted here (%s: %s; "
                     "kernel.io_uring_disabled = %d, or a seccomp filter)", what, strerror(-rc),
                     disabled);
        else
            snprintf(why, sizeof why, "io_uring cannot run here (%s: %s)", what, strerror(-rc));
        if (probe.ring.ring_fd > 0) io_uring_queue_exit(&probe.ring);
        return why;
    }
    io_uring_queue_exit(&probe.ring);
    munmap(probe.br, U_BUFS * sizeof(struct io_uring_buf));
    free(probe.bufs);
    return NULL;
#endif
}

static void conn_open(worker_t *w, conn_t *c) {
    /* io_uring waits for a blocking socket itself (a poll, not a thread) */
    c->fd = socket(AF_INET, SOCK_STREAM | (O.uring ? 0 : SOCK_NONBLOCK) | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        w->slot->errors[E_CONNECT]++;
        set_msg(w->slot, E_CONNECT, "socket(): %s", strerror(errno));
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (c->use_source) {
        /* the port is chosen at connect, per destination, so many sources
         * multiply the ports available */
        setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(c->fd, (struct sockaddr *)&c->source, sizeof c->source) < 0) {
            w->slot->errors[E_CONNECT]++;
            set_msg(w->slot, E_CONNECT, "bind(%s): %s", inet_ntoa(c->source.sin_addr),
                    strerror(errno));
            close(c->fd);
            c->fd = -1;
            return;
        }
    }
#ifdef KL_LOADGEN_URING
    if (O.uring) {
        c->gen++;
        c->send_inflight = 0;
        c->connected = 0;
        c->last_progress = now_ns();
        struct io_uring_sqe *sqe = u_sqe(w);
        io_uring_prep_connect(sqe, c->fd, (struct sockaddr *)&O.addr, sizeof O.addr);
        io_uring_sqe_set_data64(sqe, u_data(w, c, U_CONNECT));
        return;
    }
#endif
    if (connect(c->fd, (struct sockaddr *)&O.addr, sizeof O.addr) < 0 && errno != EINPROGRESS) {
        w->slot->errors[E_CONNECT]++;
        set_msg(w->slot, E_CONNECT, "connect(): %s", strerror(errno));
        close(c->fd);
        c->fd = -1;
        return;
    }
    c->connected = 0;
    c->want_out = 1;
    c->last_progress = now_ns();
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = c};
    epoll_ctl(w->epfd, EPOLL_CTL_ADD, c->fd, &ev);
}

/* Close after an error: the requests written and not answered are missing;
 * those not yet written stay scheduled and go out on the new connection. */
static void conn_close(worker_t *w, conn_t *c) {
    if (c->fd < 0) return;
#ifdef KL_LOADGEN_URING
    if (O.uring) {
        /* what is in flight on the socket is cancelled before the descriptor
         * can be reused; its completions carry the old generation */
        struct io_uring_sqe *sqe = u_sqe(w);
        io_uring_prep_cancel_fd(sqe, c->fd, IORING_ASYNC_CANCEL_ALL);
        io_uring_sqe_set_data64(sqe, (uint64_t)U_IGNORE << 28);
        io_uring_submit(&w->ring);
        c->gen++;
        c->send_inflight = 0;
    }
#endif
    close(c->fd);
    c->fd = -1;
}

static void conn_reset(worker_t *w, conn_t *c) {
    conn_close(w, c);
    c->fd = -1;
    w->slot->missing += c->sent;
    c->head = (c->head + c->sent) & (c->cap - 1);
    c->count -= c->sent;
    c->sent = 0;
    /* a half-written span is dropped; its requests are scheduled again */
    c->unstaged += c->stage_reqs;
    c->stage = NULL;
    c->stage_left = 0;
    c->stage_reqs = 0;
    c->carry_len = 0;
    c->body_left = 0;
    c->chunk_phase = 0;
    c->cache_len = 0;
    /* what was written is lost; the next response answers the next staged request */
    c->resp_cursor = c->cursor;
    if (O.hold) return;              /* the memory steps hold what they hold: no reconnect */
    w->slot->reconnects++;
    if (now_ns() < t_end) conn_open(w, c);
}

static void conn_error(worker_t *w, conn_t *c, int kind, const char *fmt, ...) {
    slot_t *s = w->slot;
    s->errors[kind]++;
    if (!s->messages[kind][0]) {
        char detail[MSG_LEN - 48];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(detail, sizeof detail, fmt, ap);
        va_end(ap);
        snprintf(s->messages[kind], MSG_LEN, "connection %d: %s (closed)", c->index, detail);
    }
    conn_reset(w, c);
}

/* Write what is due.  Returns -1 when the connection was reset. */
static int conn_flush(worker_t *w, conn_t *c) {
    if (!c->connected || c->fd < 0) return 0;
    for (;;) {
        if (!c->stage_left) {
            if (!c->unstaged) return 0;
            uint32_t k = c->unstaged < (uint32_t)max_batch ? c->unstaged : (uint32_t)max_batch;
            c->stage = table + offsets[c->cursor];
            c->stage_left = offsets[c->cursor + k] - offsets[c->cursor];
            c->stage_reqs = k;
            c->cursor = (c->cursor + k) % nreq;
            c->unstaged -= k;
        }
#ifdef KL_LOADGEN_URING
        if (O.uring) {
            /* one send at a time; its completion (uring_sent) sends on */
            if (c->send_inflight) return 0;
            c->sent += c->stage_reqs;
            c->stage_reqs = 0;
            struct io_uring_sqe *sqe = u_sqe(w);
            io_uring_prep_send(sqe, c->fd, c->stage, c->stage_left, MSG_NOSIGNAL);
            io_uring_sqe_set_data64(sqe, u_data(w, c, U_SEND));
            c->send_inflight = 1;
            return 0;
        }
#endif
        ssize_t n = write(c->fd, c->stage, c->stage_left);
        if (n < 0) {
            if (errno == EAGAIN) { c->want_out = 1; return 0; }
            if (errno == EINTR) continue;
            conn_error(w, c, E_WRITE, "write: %s", strerror(errno));
            return -1;
        }
        if (n > 0 && c->stage_reqs) {
            /* bytes of the span went out: its requests may be answered */
            c->sent += c->stage_reqs;
            c->stage_reqs = 0;
        }
        c->stage += n;
        c->stage_left -= n;
        if (c->stage_left) { c->want_out = 1; return 0; }
    }
}

/* Schedule `k` requests intended at `t`. */
static void schedule(worker_t *w, conn_t *c, uint32_t k, int64_t t) {
    /* an idle connection's silence so far is not the server's: --timeout
     * counts from its first request */
    if (!c->count) c->last_progress = t;
    for (uint32_t i = 0; i < k; i++) fifo_push(c, t, w->slot);
    c->unstaged += k;
    if (t >= t_warm && t < t_end) w->slot->requests += k;
}

static inline int lower(int ch) { return ch | 0x20; }

/* A chunk-size line's hexadecimal size (at most 15 digits, then an extension
 * or the line end, which the caller checks), or -1 when it has no digit. */
static int64_t chunk_size(const char *d, const char *eol)
{
    int64_t size = 0;
    int digits = 0;
    while (d < eol && isxdigit((unsigned char)*d) && digits < 15) {
        size = size * 16 + (isdigit((unsigned char)*d) ? *d - '0' : lower(*d) - 'a' + 10);
        d++;
        digits++;
    }
    return digits ? size : -1;
}

static int header_is(const char *p, const char *e, const char *name, size_t nlen) {
    if ((size_t)(e - p) < nlen + 1) return 0;
    for (size_t i = 0; i < nlen; i++)
        if (lower((unsigned char)p[i]) != name[i]) return 0;
    return p[nlen] == ':';
}

/* Parse one response at p[0..len) (head: it answers a HEAD request, so it
 * ends with its head whatever its framing says).  Returns its total length
 * when complete (a 1xx: its head, the caller skips it), 0 when more bytes are
 * needed, -1 on an error (kind in *kind).  For a Content-Length body not yet
 * complete returns -2 with the head's length in *head_len and the body's in
 * *body_len (the body is skipped, not kept); for a chunked body not yet
 * complete, -3 with the head's length in *head_len (the body is streamed
 * through, chunk by chunk, whatever its size). */
static int64_t parse_response(const char *p, size_t len, int head, int *status, int *kind,
                              char *why, int64_t *head_len, int64_t *body_len) {
    size_t check = len < 12 ? len : 12;
    static const char proto[] = "HTTP/1.";
    for (size_t i = 0; i < check; i++) {
        int ok;
        if (i < 7) ok = p[i] == proto[i];
        else if (i == 7) ok = p[i] == '0' || p[i] == '1';
        else if (i == 8) ok = p[i] == ' ';
        else ok = isdigit((unsigned char)p[i]);
        if (!ok) {
            *kind = E_STATUS_LINE;
            snprintf(why, MSG_LEN, "expected a status line, got %.*s%s",
                     (int)(len < 24 ? len : 24), p, len > 24 ? "..." : "");
            for (char *q = why; *q; q++) if (*q == '\r' || *q == '\n' || !isprint((unsigned char)*q)) *q = '.';
            return -1;
        }
    }
    if (len < 12) return 0;
    *status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    const char *end = memmem(p, len, "\r\n\r\n", 4);
    if (!end) {
        if (len > 65536) {
            *kind = E_HEAD_TOO_LARGE;
            snprintf(why, MSG_LEN, "no end of head within 64 KiB");
            return -1;
        }
        return 0;
    }
    size_t hl = end + 4 - p;
    int64_t clen = -1;
    int chunked = 0;
    const char *q = memchr(p, '\n', hl) + 1;
    while (q < end + 2) {
        const char *eol = memchr(q, '\n', end + 4 - q);
        if (header_is(q, eol, "content-length", 14)) {
            const char *v = q + 15;
            while (*v == ' ' || *v == '\t') v++;
            if (!isdigit((unsigned char)*v)) {
                *kind = E_FRAMING;
                snprintf(why, MSG_LEN, "bad Content-Length");
                return -1;
            }
            int64_t n = 0;
            while (isdigit((unsigned char)*v) && n < ((int64_t)1 << 50)) n = n * 10 + (*v++ - '0');
            if (clen >= 0 && clen != n) {
                *kind = E_FRAMING;
                snprintf(why, MSG_LEN, "two different Content-Length values");
                return -1;
            }
            clen = n;
        } else if (header_is(q, eol, "transfer-encoding", 17)) {
            if (memmem(q, eol - q, "chunked", 7)) chunked = 1;
        }
        q = eol + 1;
    }
    int s = *status;
    if ((s >= 100 && s < 200) || head || s == 204 || s == 304) return hl;
    *head_len = hl;
    if (chunked) {
        /* chunk-size [; ext] CRLF data CRLF ... 0 CRLF [trailers] CRLF */
        size_t pos = hl;
        for (;;) {
            const char *eol = memchr(p + pos, '\n', len - pos);
            if (!eol) return -3;
            int64_t size = chunk_size(p + pos, eol);
            if (size < 0) {
                *kind = E_CHUNK;
                snprintf(why, MSG_LEN, "bad chunk size line");
                return -1;
            }
            pos = eol + 1 - p;
            if (size == 0) {
                for (;;) {         /* trailers, then the empty line */
                    const char *t = memchr(p + pos, '\n', len - pos);
                    if (!t) return -3;
                    size_t l = t + 1 - (p + pos);
                    pos += l;
                    if (l <= 2) return pos;
                }
            }
            if (len - pos < (size_t)size + 2) return -3;
            if (p[pos + size] != '\r' || p[pos + size + 1] != '\n') {
                *kind = E_CHUNK;
                snprintf(why, MSG_LEN, "chunk data not followed by CRLF");
                return -1;
            }
            pos += size + 2;
        }
    }
    if (clen < 0) {
        *kind = E_FRAMING;
        snprintf(why, MSG_LEN, "status %d without Content-Length or chunked framing", s);
        return -1;
    }
    if ((int64_t)(len - hl) >= clen) return hl + clen;
    *head_len = hl;
    *body_len = clen;
    return -2;
}

enum { CH_SIZE = 1, CH_DATA, CH_CRLF, CH_TRAILER };

/* Stream through a chunked body from *pp: returns 1 when the body ended (*pp
 * after it), 0 when more bytes are needed (*pp: what to carry, a partial size
 * or trailer line, at most 4 KiB), -1 on an error (why). */
static int chunk_step(conn_t *c, const char **pp, const char *end, char *why) {
    const char *p = *pp;
    for (;;) {
        if (c->chunk_phase == CH_DATA) {
            size_t take = (size_t)c->chunk_left < (size_t)(end - p) ? (size_t)c->chunk_left
                                                                     : (size_t)(end - p);
            p += take;
            c->chunk_left -= take;
            if (c->chunk_left) { *pp = p; return 0; }
            c->chunk_phase = CH_CRLF;
        }
        if (c->chunk_phase == CH_CRLF) {
            if (end - p < 2) { *pp = p; return 0; }
            if (p[0] != '\r' || p[1] != '\n') {
                snprintf(why, MSG_LEN, "chunk data not followed by CRLF");
                return -1;
            }
            p += 2;
            c->chunk_phase = CH_SIZE;
        }
        const char *eol = memchr(p, '\n', end - p);
        if (!eol) {
            if (end - p > 4096) {
                snprintf(why, MSG_LEN, "a chunk size or trailer line over 4 KiB");
                return -1;
            }
            *pp = p;
            return 0;
        }
        if (c->chunk_phase == CH_SIZE) {
            int64_t size = chunk_size(p, eol);
            if (size < 0) {
                snprintf(why, MSG_LEN, "bad chunk size line");
                return -1;
            }
            p = eol + 1;
            if (size == 0) c->chunk_phase = CH_TRAILER;
            else {
                c->chunk_left = size;
                c->chunk_phase = CH_DATA;
            }
            continue;
        }
        size_t l = eol + 1 - p;               /* CH_TRAILER: a trailer, or the empty line */
        p = eol + 1;
        if (l <= 2) {
            c->chunk_phase = 0;
            *pp = p;
            return 1;
        }
    }
}

static inline void complete(worker_t *w, conn_t *c, int status, int64_t now) {
    slot_t *s = w->slot;
    int64_t intended = c->fifo[c->head];
    c->head = (c->head + 1) & (c->cap - 1);
    c->count--;
    c->sent--;
    s->responses_all++;
    if (now >= t_warm && now <= t_end) {
        s->responses++;
        if (status < 200 || status >= 400) s->non_2xx_3xx++;
    }
    if (intended >= t_warm && now <= t_stop) s->hist[hist_index(now - intended)]++;
    if (O.hold && status >= 100 && status < 600) hold_status[status]++;
    if (any_head && ++c->resp_cursor == nreq) c->resp_cursor = 0;
}

/* Parse the bytes of one read.  Returns the bytes left over (to carry), or
 * -1 when the connection was reset. */
static ssize_t consume(worker_t *w, conn_t *c, const char *p, size_t len, int64_t now) {
    const char *end = p + len;
    while (p < end) {
        if (c->body_left) {
            size_t take = (size_t)c->body_left < (size_t)(end - p) ? (size_t)c->body_left : (size_t)(end - p);
            p += take;
            c->body_left -= take;
            if (c->body_left) break;
            complete(w, c, c->status, now);
            continue;
        }
        if (c->chunk_phase) {
            char why[MSG_LEN];
            int r = chunk_step(c, &p, end, why);
            if (r < 0) {
                conn_error(w, c, E_CHUNK, "%s", why);
                return -1;
            }
            if (!r) break;
            complete(w, c, c->status, now);
            continue;
        }
        if (!c->sent) {
            conn_error(w, c, E_UNEXPECTED, "%zu bytes with no request outstanding: %.*s",
                       (size_t)(end - p), (int)(end - p < 16 ? end - p : 16), p);
            return -1;
        }
        size_t avail = end - p;
        int head = any_head && is_head[c->resp_cursor];
        if (c->cache_len && avail >= c->cache_len && c->cache_head == head
            && memcmp(p, c->cache, c->cache_len) == 0) {
            w->slot->fast_path++;
            /* the cached response was complete and 2xx/3xx or not: its status
             * is kept in the cache's first bytes */
            int st = (c->cache[9] - '0') * 100 + (c->cache[10] - '0') * 10 + (c->cache[11] - '0');
            complete(w, c, st, now);
            p += c->cache_len;
            continue;
        }
        int status = 0, kind = 0;
        int64_t hl = 0, bl = 0;
        char why[MSG_LEN];
        int64_t n = parse_response(p, avail, head, &status, &kind, why, &hl, &bl);
        if (n == 0) break;
        if (n == -1) {
            conn_error(w, c, kind, "%s", why);
            return -1;
        }
        if (n == -2) {
            c->body_left = hl + bl - avail;
            c->status = status;
            p = end;
            break;
        }
        if (n == -3) {              /* a chunked body not all here: streamed through */
            c->chunk_phase = CH_SIZE;
            c->status = status;
            p += hl;
            continue;
        }
        if (status < 200) {         /* 1xx: an interim response, then the final one */
            if (status == 101) {
                conn_error(w, c, E_STATUS_LINE, "101 Switching Protocols: the stream is no "
                           "longer HTTP/1.1");
                return -1;
            }
            w->slot->interim++;
            p += n;
            continue;
        }
        if ((size_t)n <= CACHE_MAX) {
            memcpy(c->cache, p, n);
            c->cache_len = n;
            c->cache_head = head;
        } else {
            c->cache_len = 0;
        }
        complete(w, c, status, now);
        p += n;
    }
    return end - p;
}

/* The server closed the connection (have: bytes of a response carried). */
static void conn_eof(worker_t *w, conn_t *c, size_t have) {
    if (c->sent || have)
        conn_error(w, c, E_CLOSED, "the server closed the connection with %u "
                   "request(s) unanswered", c->sent);
    else {
        w->slot->errors[E_CLOSED]++;
        set_msg(w->slot, E_CLOSED, "connection %d: the server closed an idle connection",
                c->index);
        conn_reset(w, c);
    }
}

/* buf[0..total) holds the carried bytes and then the n new ones: check the
 * responses and carry what is left.  Returns -1 when the connection was reset. */
static int take_bytes(worker_t *w, conn_t *c, const char *buf, size_t total, size_t n) {
    int64_t now = now_ns();
    c->last_progress = now;
    w->slot->bytes_read += n;
    ssize_t left = consume(w, c, buf, total, now);
    if (left < 0) return -1;
    if (left > READ_BUF / 2) {
        /* bodies are skipped or streamed through, never kept: only a head can be this long */
        conn_error(w, c, E_HEAD_TOO_LARGE, "a response head over %d bytes", READ_BUF / 2);
        return -1;
    }
    if ((size_t)left > c->carry_cap) {
        c->carry_cap = left * 2;
        c->carry = realloc(c->carry, c->carry_cap);
    }
    memmove(c->carry, buf + total - left, left);
    c->carry_len = left;
    return 0;
}

/* Read until the socket is drained.  Returns -1 when the connection was reset. */
static int conn_read(worker_t *w, conn_t *c) {
    for (;;) {
        size_t have = c->carry_len;
        if (have) memcpy(w->rbuf, c->carry, have);
        ssize_t n = read(c->fd, w->rbuf + have, READ_BUF - have);
        if (n < 0) {
            if (errno == EAGAIN) return 0;
            if (errno == EINTR) continue;
            conn_error(w, c, E_READ, "read: %s", strerror(errno));
            return -1;
        }
        if (n == 0) {
            conn_eof(w, c, have);
            return -1;
        }
        if (take_bytes(w, c, w->rbuf, have + n, n) < 0) return -1;
        if ((size_t)n < READ_BUF - have) return 0;   /* a short read drained the socket */
    }
}

static void closed_loop_refill(worker_t *w, conn_t *c, int64_t now) {
    if (O.rate <= 0 && c->fd >= 0 && c->connected && c->count == 0 && now < t_end)
        schedule(w, c, (uint32_t)O.pipeline, now);
}

/* The events of one epoll wait (at most `wait` ns).  Returns -1 on a failed wait. */
static int epoll_turn(worker_t *w, int64_t wait) {
    struct epoll_event evs[512];
    struct timespec ts = {wait / 1000000000LL, wait % 1000000000LL};
    int n = epoll_pwait2(w->epfd, evs, 512, &ts, NULL);
    if (n < 0) return errno == EINTR ? 0 : -1;
    for (int i = 0; i < n; i++) {
        conn_t *c = evs[i].data.ptr;
        uint32_t e = evs[i].events;
        if (c->fd < 0) continue;
        if (!c->connected) {
            if (e & (EPOLLERR | EPOLLHUP)) {
                int err = 0;
                socklen_t l = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
                w->slot->errors[E_CONNECT]++;
                set_msg(w->slot, E_CONNECT, "connect: %s", strerror(err ? err : ECONNREFUSED));
                close(c->fd);
                c->fd = -1;
                continue;
            }
            if (!(e & EPOLLOUT)) continue;
            c->connected = 1;
            c->last_progress = now_ns();
            closed_loop_refill(w, c, c->last_progress);
            c->want_out = 0;
            if (conn_flush(w, c) < 0) continue;
            continue;
        }
        if (e & EPOLLIN) {
            if (conn_read(w, c) < 0) continue;
            closed_loop_refill(w, c, now_ns());
            if (!c->want_out && conn_flush(w, c) < 0) continue;
        } else if (e & (EPOLLERR | EPOLLHUP)) {
            conn_error(w, c, E_READ, "socket error or hang-up");
            continue;
        }
        if ((e & EPOLLOUT) && c->want_out) {
            c->want_out = 0;
            if (conn_flush(w, c) < 0) continue;
        }
    }
    return 0;
}

#ifdef KL_LOADGEN_URING
/* Submit what this turn queued, wait at most `wait` ns for a completion, and
 * handle every completion there is.  Returns -1 on a failed io_uring_enter. */
static int uring_turn(worker_t *w, int64_t wait) {
    struct io_uring_cqe *cqe;
    struct __kernel_timespec ts = {wait / 1000000000LL, wait % 1000000000LL};
    int rc = io_uring_submit_and_wait_timeout(&w->ring, &cqe, 1, &ts, NULL);
    if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
        set_msg(w->slot, E_READ, "io_uring_enter: %s", strerror(-rc));
        return -1;
    }
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&w->ring, head, cqe) {
        seen++;
        uint64_t ud = io_uring_cqe_get_data64(cqe);
        int op = (int)(ud >> 28 & 15), res = cqe->res;
        int more = (cqe->flags & IORING_CQE_F_MORE) != 0;
        int has_buf = (cqe->flags & IORING_CQE_F_BUFFER) != 0;
        unsigned bid = has_buf ? cqe->flags >> IORING_CQE_BUFFER_SHIFT : 0;
        if (op == U_IGNORE) continue;
        conn_t *c = &w->conns[ud & 0x0fffffff];
        if (c->fd < 0 || c->gen != (uint32_t)(ud >> 32)) {   /* an earlier socket's */
            if (has_buf) u_give(w, bid);
            continue;
        }
        if (op == U_CONNECT) {
            if (res < 0) {
                w->slot->errors[E_CONNECT]++;
                set_msg(w->slot, E_CONNECT, "connect: %s", strerror(-res));
                conn_close(w, c);
                continue;
            }
            c->connected = 1;
            c->last_progress = now_ns();
            u_recv(w, c);
            closed_loop_refill(w, c, c->last_progress);
            conn_flush(w, c);
            continue;
        }
        if (op == U_SEND) {
            c->send_inflight = 0;
            if (res < 0) {
                conn_error(w, c, E_WRITE, "send: %s", strerror(-res));
                continue;
            }
            c->stage += res;
            c->stage_left -= res;
            conn_flush(w, c);
            continue;
        }
        /* U_RECV */
        if (res > 0 && has_buf) {
            const char *data = w->bufs + (size_t)bid * U_BUF_SIZE;
            size_t have = c->carry_len;
            int r;
            if (!have) {
                r = take_bytes(w, c, data, (size_t)res, (size_t)res);
            } else {
                memcpy(w->rbuf, c->carry, have);
                memcpy(w->rbuf + have, data, (size_t)res);
                r = take_bytes(w, c, w->rbuf, have + (size_t)res, (size_t)res);
            }
            u_give(w, bid);
            if (r < 0) continue;
            if (!more) u_recv(w, c);
            closed_loop_refill(w, c, now_ns());
            conn_flush(w, c);
            continue;
        }
        if (has_buf) u_give(w, bid);
        if (res == 0) conn_eof(w, c, c->carry_len);
        else if (res == -ENOBUFS) u_recv(w, c);      /* the buffers come back this turn */
        else if (res < 0) conn_error(w, c, E_READ, "recv: %s", strerror(-res));
        else if (!more) u_recv(w, c);
    }
    io_uring_cq_advance(&w->ring, seen);
    if (w->given) {
        io_uring_buf_ring_advance(w->br, (int)w->given);
        w->given = 0;
    }
    return 0;
}
#endif

/* The open loop's timetable: a binary min-heap of the connections by their
 * next intended send time, so a wake-up costs O(log n) per connection that is
 * due, not a scan of all of them. */
static void heap_down(worker_t *w, int i) {
    conn_t **h = w->heap;
    int n = w->heap_n;
    conn_t *c = h[i];
    for (;;) {
        int l = 2 * i + 1, m = l;
        if (l >= n) break;
        if (l + 1 < n && h[l + 1]->next_due < h[l]->next_due) m = l + 1;
        if (h[m]->next_due >= c->next_due) break;
        h[i] = h[m];
        i = m;
    }
    h[i] = c;
}

static void heap_build(worker_t *w) {
    w->heap = malloc(sizeof(conn_t *) * (w->nconns ? w->nconns : 1));
    w->heap_n = 0;
    for (int i = 0; i < w->nconns; i++)
        if (w->conns[i].next_due < t_end) w->heap[w->heap_n++] = &w->conns[i];
    for (int i = w->heap_n / 2 - 1; i >= 0; i--) heap_down(w, i);
}

/* Schedule every request now due; returns the earliest time one is due next
 * (t_stop when none is). */
static int64_t open_loop_due(worker_t *w, int64_t now) {
    while (w->heap_n) {
        conn_t *c = w->heap[0];
        if (c->next_due > now) return c->next_due;
        uint32_t k = 0;
        while (c->next_due <= now && c->next_due < t_end) {
            k++;
            c->next_due += c->interval;
        }
        /* every request keeps its own intended time */
        int64_t t = c->next_due - (int64_t)k * c->interval;
        for (uint32_t j = 0; j < k; j++) schedule(w, c, 1, t + j * c->interval);
        if (!c->want_out) conn_flush(w, c);
        if (c->next_due >= t_end) w->heap[0] = w->heap[--w->heap_n];   /* its timetable ended */
        if (w->heap_n) heap_down(w, 0);
    }
    return t_stop;
}

static void *worker_main(void *arg) {
    worker_t *w = arg;
    if (w->cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(w->cpu, &set);
        pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    }
    w->rbuf = malloc(READ_BUF);
#ifdef KL_LOADGEN_URING
    if (O.uring) {
        const char *what = "";
        int rc = u_setup(w, &what);
        if (rc < 0) {
            w->slot->errors[E_CONNECT] += w->nconns;
            set_msg(w->slot, E_CONNECT, "io_uring: %s: %s", what, strerror(-rc));
            return NULL;
        }
    } else
#endif
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    int64_t interval = 0;
    if (O.rate > 0) interval = (int64_t)(1e9 * O.connections / O.rate);
    for (int i = 0; i < w->nconns; i++) {
        conn_t *c = &w->conns[i];
        c->cap = 64;
        while (c->cap < (uint32_t)O.pipeline * 2) c->cap *= 2;
        c->fifo = malloc(sizeof(int64_t) * c->cap);
        c->cursor = (int)(((int64_t)c->index * nreq) / O.connections) % nreq;
        c->resp_cursor = c->cursor;
        if (interval) {
            c->interval = interval;
            /* stagger the timetables over one interval */
            c->next_due = t_start + (interval * c->index) / O.connections;
        }
        conn_open(w, c);
    }
    if (interval) heap_build(w);
    int64_t tick = (int64_t)(O.tick_us * 1000);
    int64_t last_pending_scan = 0;
    int64_t last_timeout_scan = t_start;
    int64_t timeout_ns = (int64_t)(O.timeout_s * 1e9);
    for (;;) {
        int64_t now = now_ns();
        if (now >= t_stop) break;
        int64_t wake = t_stop;
        if (interval) {
            wake = open_loop_due(w, now);
            if (wake < now + tick) wake = now + tick;
        }
        if (now >= t_end && (O.rate <= 0 || now - last_pending_scan >= 1000000)) {
            /* after the last due requests were scheduled: the closed loop stops
             * at the end, the open loop drains what was intended (looked at
             * once a millisecond at most) */
            last_pending_scan = now;
            int pending = 0;
            if (O.rate > 0)
                for (int i = 0; i < w->nconns && !pending; i++)
                    if (w->conns[i].fd >= 0 && w->conns[i].count) pending = 1;
            if (!pending) break;
            if (wake > now + 1000000) wake = now + 1000000;
        }
        if (now - last_timeout_scan > 100000000LL) {
            last_timeout_scan = now;
            for (int i = 0; i < w->nconns; i++) {
                conn_t *c = &w->conns[i];
                if (c->fd >= 0 && (c->sent || !c->connected) && now - c->last_progress > timeout_ns) {
                    w->slot->errors[E_TIMEOUT] += c->sent ? c->sent : 1;
                    if (!w->slot->messages[E_TIMEOUT][0])
                        snprintf(w->slot->messages[E_TIMEOUT], MSG_LEN,
                                 "connection %d: nothing %s for %.3g s with %u request(s) "
                                 "outstanding (closed)", c->index,
                                 c->connected ? "received" : "connected", O.timeout_s, c->sent);
                    uint32_t sent = c->sent;
                    conn_reset(w, c);
                    w->slot->missing -= sent;      /* counted as timeouts, not twice */
                }
            }
        }
        if (now < t_end && wake > t_end) wake = t_end;   /* the drain starts on time */
        int64_t wait = wake - now;
        if (wait > 100000000LL) wait = 100000000LL;
        if (wait < 0) wait = 0;
#ifdef KL_LOADGEN_URING
        if (O.uring) {
            if (uring_turn(w, wait) < 0) break;
            continue;
        }
#endif
        if (epoll_turn(w, wait) < 0) break;
    }
    for (int i = 0; i < w->nconns; i++) {
        conn_t *c = &w->conns[i];
        w->slot->unanswered_at_end += c->count;
        if (c->fd >= 0) close(c->fd);
    }
#ifdef KL_LOADGEN_URING
    if (O.uring) io_uring_queue_exit(&w->ring);
    else
#endif
    close(w->epfd);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Arguments. */

static void usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("loadgen: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(" (usage: loadgen URL [-c N] [-t N] [-d S] [--pipeline N] [--rate R] "
          "[--corpus FILE] [--json] ...)\n", stderr);
    va_end(ap);
    exit(2);
}

static double num_arg(const char *name, const char *v, double lo) {
    char *e;
    double d = strtod(v, &e);
    if (e == v || *e || d < lo) usage_error("%s needs a number >= %g, not '%s'", name, lo, v);
    return d;
}

static void parse_url(const char *url) {
    const char *p = url;
    if (strncmp(p, "http://", 7) == 0) p += 7;
    else if (strstr(p, "://")) usage_error("only http:// URLs, not '%s'", url);
    const char *slash = strchr(p, '/');
    size_t hostport = slash ? (size_t)(slash - p) : strlen(p);
    if (!hostport || hostport >= sizeof O.host) usage_error("no host in '%s'", url);
    memcpy(O.host, p, hostport);
    O.host[hostport] = 0;
    snprintf(O.path, sizeof O.path, "%s", slash ? slash : "/");
    char name[256];
    snprintf(name, sizeof name, "%s", O.host);
    int port = 80;
    char *colon = strrchr(name, ':');
    if (colon) {
        *colon = 0;
        port = atoi(colon + 1);
        if (port < 1 || port > 65535) usage_error("bad port in '%s'", url);
    }
    O.addr.sin_family = AF_INET;
    O.addr.sin_port = htons(port);
    if (strcmp(name, "localhost") == 0) snprintf(name, sizeof name, "127.0.0.1");
    if (inet_pton(AF_INET, name, &O.addr.sin_addr) != 1)
        usage_error("the host must be an IPv4 address or localhost, not '%s'", name);
}

static void parse_args(int argc, char **argv) {
    O.connections = 10;
    O.threads = 1;
    O.pipeline = 1;
    O.duration_s = 10;
    O.warmup_s = 0;
    O.timeout_s = 2;
    O.tick_us = 20;
    O.per_address = 1000;
    O.concurrency = 256;
    O.connect_timeout_s = 300;
    O.connect_stall_s = 15;
    O.go_timeout_s = 600;
    O.close_timeout_s = 120;
    const char *url = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
#define VALUE() (i + 1 < argc ? argv[++i] : (usage_error("%s needs a value", a), ""))
        if (!strcmp(a, "-c") || !strcmp(a, "--connections")) O.connections = (int)num_arg(a, VALUE(), 1);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) O.threads = (int)num_arg(a, VALUE(), 1);
        else if (!strcmp(a, "-d") || !strcmp(a, "--duration")) O.duration_s = num_arg(a, VALUE(), 0.01);
        else if (!strcmp(a, "--warmup")) O.warmup_s = num_arg(a, VALUE(), 0);
        else if (!strcmp(a, "--pipeline")) O.pipeline = (int)num_arg(a, VALUE(), 1);
        else if (!strcmp(a, "--rate")) O.rate = num_arg(a, VALUE(), 0.001);
        else if (!strcmp(a, "--timeout")) O.timeout_s = num_arg(a, VALUE(), 0.01);
        else if (!strcmp(a, "--tick-us")) O.tick_us = num_arg(a, VALUE(), 0);
        else if (!strcmp(a, "--sources")) O.sources = (int)num_arg(a, VALUE(), 1);
        else if (!strcmp(a, "--processes")) O.processes = (int)num_arg(a, VALUE(), 1);
        else if (!strcmp(a, "--corpus")) O.corpus = VALUE();
        else if (!strcmp(a, "--header") || !strcmp(a, "-H")) {
            if (O.nheaders == 64) usage_error("at most 64 headers");
            O.headers[O.nheaders++] = VALUE();
        } else if (!strcmp(a, "--cpus")) {
            char *s = strdup(VALUE()), *tok, *save;
            for (tok = strtok_r(s, ",", &save); tok && O.ncpus < 256; tok = strtok_r(NULL, ",", &save))
                O.cpus[O.ncpus++] = (int)num_arg("--cpus", tok, 0);
        } else if (!strcmp(a, "--io")) {
            const char *v = VALUE();
            if (!strcmp(v, "uring")) O.uring = 1;
            else if (!strcmp(v, "epoll")) O.uring = 0;
            else usage_error("--io is epoll or uring, not '%s'", v);
        } else if (!strcmp(a, "--probe-io")) O.probe_io = 1;
        else if (!strcmp(a, "--hold")) O.hold = 1;
        else if (!strcmp(a, "--first-index")) O.first_index = (int)num_arg(a, VALUE(), 0);
        else if (!strcmp(a, "--per-address")) O.per_address = (int)num_arg(a, VALUE(), 1);
        else if (!strcmp(a, "--concurrency")) O.concurrency = (int)num_arg(a, VALUE(), 1);
        else if (!strcmp(a, "--connect-timeout")) O.connect_timeout_s = num_arg(a, VALUE(), 0.01);
        else if (!strcmp(a, "--connect-stall")) O.connect_stall_s = num_arg(a, VALUE(), 0.01);
        else if (!strcmp(a, "--go-timeout")) O.go_timeout_s = num_arg(a, VALUE(), 0.01);
        else if (!strcmp(a, "--close-timeout")) O.close_timeout_s = num_arg(a, VALUE(), 0.01);
        else if (!strcmp(a, "--json")) O.json = 1;
        else if (a[0] == '-') usage_error("unknown option %s", a);
        else if (!url) url = a;
        else usage_error("one URL only (got '%s' and '%s')", url, a);
#undef VALUE
    }
    if (O.probe_io) {
        /* no load: exit 0 when the chosen --io can run here, else 2 with the reason */
        if (O.uring) {
            const char *why = uring_unavailable();
            if (why) die(2, "--io uring: %s", why);
        }
        puts(O.uring ? "uring" : "epoll");
        exit(0);
    }
    if (!url) usage_error("no URL");
    parse_url(url);
    if (O.threads > O.connections) O.threads = O.connections;
    if (O.rate > 0 && O.rate / O.connections > 1e8)
        usage_error("--rate %g over %d connections is more than 1e8 per connection", O.rate,
                    O.connections);
}

/* ------------------------------------------------------------------ */
/* Summary. */

static void json_str(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') printf("\\%c", ch);
        else if (ch < 0x20 || ch >= 0x7f) printf("\\u%04x", ch);
        else putchar(ch);
    }
    putchar('"');
}

static int64_t percentile(const uint64_t *h, uint64_t total, double pct) {
    if (!total) return -1;
    uint64_t rank = (uint64_t)ceil((pct / 100.0) * total);
    if (rank < 1) rank = 1;
    if (rank > total) rank = total;
    uint64_t cum = 0;
    for (int i = 0; i < HIST_LEN; i++) {
        cum += h[i];
        if (cum >= rank) return hist_highest(i);
    }
    return -1;
}

static void summary(slot_t *slots, int nslots, double wall_s, double cpu_user, double cpu_sys,
                    int processes) {
    slot_t *m = calloc(1, sizeof(slot_t));
    for (int k = 0; k < nslots; k++) {
        slot_t *s = &slots[k];
        m->requests += s->requests;
        m->responses += s->responses;
        m->responses_all += s->responses_all;
        m->non_2xx_3xx += s->non_2xx_3xx;
        m->fast_path += s->fast_path;
        m->bytes_read += s->bytes_read;
        m->missing += s->missing;
        m->unanswered_at_end += s->unanswered_at_end;
        m->reconnects += s->reconnects;
        m->interim += s->interim;
        if (s->max_queue > m->max_queue) m->max_queue = s->max_queue;
        for (int e = 0; e < E_KINDS; e++) {
            m->errors[e] += s->errors[e];
            if (!m->messages[e][0] && s->messages[e][0]) memcpy(m->messages[e], s->messages[e], MSG_LEN);
        }
        for (int i = 0; i < HIST_LEN; i++) m->hist[i] += s->hist[i];
    }
    uint64_t samples = 0, errors = 0;
    int64_t maxv = -1;
    double sum = 0;
    for (int i = 0; i < HIST_LEN; i++)
        if (m->hist[i]) {
            samples += m->hist[i];
            maxv = hist_highest(i);
            sum += (double)m->hist[i] * (double)hist_value(i);
        }
    for (int e = 0; e < E_KINDS; e++) errors += m->errors[e];
    double window = O.duration_s;
    double rps = m->responses / window;
    static const double PCTS[] = {50, 90, 99, 99.9, 99.99};
    static const char *PNAMES[] = {"p50", "p90", "p99", "p999", "p9999"};
    if (!O.json) {
        printf("%s%s: %d connections, %d threads, %d process(es), %.3g s after %.3g s warm-up, "
               "%s %d, %s\n", O.host, O.path, O.connections, O.threads, processes, O.duration_s,
               O.warmup_s, O.rate > 0 ? "open loop" : "closed loop, pipeline",
               O.rate > 0 ? (int)O.rate : O.pipeline, O.uring ? "io_uring" : "epoll");
        printf("  %llu responses, %.0f requests/s, %llu errors, client CPU %.3f s\n",
               (unsigned long long)m->responses, rps, (unsigned long long)errors, cpu_user + cpu_sys);
        for (int k = 0; k < 5; k++) {
            int64_t v = percentile(m->hist, samples, PCTS[k]);
            printf("  latency %-6s %.1f us\n", PNAMES[k], v < 0 ? 0.0 : v / 1e3);
        }
        for (int e = 0; e < E_KINDS; e++)
            if (m->errors[e])
                printf("  %s: %llu  %s\n", ERR_NAMES[e], (unsigned long long)m->errors[e], m->messages[e]);
        return;
    }
    printf("{\"tool\":\"kourier-lab load\",\"url_host\":");
    json_str(O.host);
    printf(",\"path\":");
    json_str(O.path);
    printf(",\"io\":\"%s\"", O.uring ? "uring" : "epoll");
    printf(",\"connections\":%d,\"threads\":%d,\"processes\":%d,\"pipeline\":%d,"
           "\"duration_s\":%.6g,\"warmup_s\":%.6g,\"timeout_s\":%.6g,",
           O.connections, O.threads, processes, O.pipeline, O.duration_s, O.warmup_s, O.timeout_s);
    if (O.rate > 0) printf("\"rate\":%.6g,", O.rate);
    else printf("\"rate\":null,");
    printf("\"corpus_requests\":%d,\"sources\":%d,\"wall_s\":%.6f,", nreq, O.sources ? O.sources : 1,
           wall_s);
    printf("\"requests\":%llu,\"responses\":%llu,\"responses_total\":%llu,\"non_2xx_3xx\":%llu,"
           "\"fast_path\":%llu,\"bytes_read\":%llu,\"req_per_s\":%.3f,",
           (unsigned long long)m->requests, (unsigned long long)m->responses,
           (unsigned long long)m->responses_all, (unsigned long long)m->non_2xx_3xx,
           (unsigned long long)m->fast_path, (unsigned long long)m->bytes_read, rps);
    printf("\"errors\":%llu,\"errors_by_kind\":{", (unsigned long long)errors);
    for (int e = 0; e < E_KINDS; e++) printf("%s\"%s\":%llu", e ? "," : "", ERR_NAMES[e],
                                             (unsigned long long)m->errors[e]);
    printf("},\"messages\":{");
    int first = 1;
    for (int e = 0; e < E_KINDS; e++)
        if (m->messages[e][0]) {
            printf("%s\"%s\":", first ? "" : ",", ERR_NAMES[e]);
            json_str(m->messages[e]);
            first = 0;
        }
    printf("},\"interim_responses\":%llu,", (unsigned long long)m->interim);
    printf("\"missing\":%llu,\"unanswered_at_end\":%llu,\"reconnects\":%llu,\"max_queue\":%llu,",
           (unsigned long long)m->missing, (unsigned long long)m->unanswered_at_end,
           (unsigned long long)m->reconnects, (unsigned long long)m->max_queue);
    printf("\"client_cpu_user_s\":%.6f,\"client_cpu_sys_s\":%.6f,\"client_cpu_s\":%.6f,",
           cpu_user, cpu_sys, cpu_user + cpu_sys);
    printf("\"latency_samples\":%llu,", (unsigned long long)samples);
    for (int k = 0; k < 5; k++) {
        int64_t v = percentile(m->hist, samples, PCTS[k]);
        if (v < 0) printf("\"latency_%s_us\":null,", PNAMES[k]);
        else printf("\"latency_%s_us\":%.3f,", PNAMES[k], v / 1e3);
    }
    if (samples) printf("\"latency_max_us\":%.3f,\"latency_avg_us\":%.3f,", maxv / 1e3, sum / samples / 1e3);
    else printf("\"latency_max_us\":null,\"latency_avg_us\":null,");
    print_buckets(m->hist);
    printf("}\n");
}

/* ------------------------------------------------------------------ */
/* --hold: the memory steps' client (kourier_lab/stress/connections.py starts
 * one per share of the connections).  One thread, epoll, three phases driven
 * by lines on stdin, each reported as one JSON line on stdout:
 *   1. connect -c connections, each bound to a source address in 127.0.0.0/8
 *      (--per-address connections per address from 127.0.0.2, connection i of
 *      the whole load being --first-index + i), at most --concurrency connects
 *      in flight so the listen backlog does not overflow; stop opening when a
 *      socket cannot be had or nothing connects for --connect-stall s; then
 *      0.3 s for servers at their limit to answer 503 or close;
 *      print {"phase":"connected",...}
 *   2. on "go": keep-alive requests at --rate in all for -d s, round robin over
 *      the idle connections, at most one in flight per connection (a request
 *      due when every connection is busy is counted as `behind`, not sent);
 *      every response checked as in the other modes, latency from its send;
 *      print {"phase":"done",...} with the connections still open
 *   3. on "close" (or EOF, or --close-timeout): close everything and exit. */

static struct { char name[40]; uint64_t n; } herr[64];
static int nherr;

static void herr_add(const char *name, uint64_t k) {
    if (!k) return;
    for (int i = 0; i < nherr; i++)
        if (!strcmp(herr[i].name, name)) { herr[i].n += k; return; }
    if (nherr == 64) return;
    snprintf(herr[nherr].name, sizeof herr[nherr].name, "%s", name);
    herr[nherr++].n = k;
}

static const char *errno_name(int e) {
    switch (e) {
    case ECONNREFUSED: return "ECONNREFUSED";
    case ECONNRESET: return "ECONNRESET";
    case ETIMEDOUT: return "ETIMEDOUT";
    case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
    case EADDRINUSE: return "EADDRINUSE";
    case EMFILE: return "EMFILE";
    case ENFILE: return "ENFILE";
    case ENOBUFS: return "ENOBUFS";
    case ENOMEM: return "ENOMEM";
    case EAGAIN: return "EAGAIN";
    case ENETUNREACH: return "ENETUNREACH";
    case EHOSTUNREACH: return "EHOSTUNREACH";
    case EPIPE: return "EPIPE";
    default: return "OSERROR";
    }
}

/* Wait for the line `want` on stdin: 1 when it came, 0 on EOF, timeout or another line. */
static int hold_wait_line(const char *want, double timeout_s) {
    static char line[256];
    static size_t have;
    int64_t deadline = now_ns() + (int64_t)(timeout_s * 1e9);
    for (;;) {
        char *nl = memchr(line, '\n', have);
        if (nl) {
            *nl = 0;
            int ok = !strcmp(line, want);
            size_t used = nl + 1 - line;
            memmove(line, nl + 1, have - used);
            have -= used;
            return ok;
        }
        int64_t left = deadline - now_ns();
        if (left <= 0 || have == sizeof line) return 0;
        struct timespec ts = {left / 1000000000LL, left % 1000000000LL};
        fd_set rd;
        FD_ZERO(&rd);
        FD_SET(0, &rd);
        int r = pselect(1, &rd, NULL, NULL, &ts, NULL);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return 0;
        ssize_t n = read(0, line + have, sizeof line - have);
        if (n <= 0) return 0;
        have += n;
    }
}

static void hold_errors_json(slot_t *s) {
    /* the connect phase's by errno, then the checked responses' in the
     * memory rows' names */
    herr_add("closed_by_server", s->errors[E_CLOSED] + s->errors[E_READ]);
    herr_add("send_failed", s->errors[E_WRITE]);
    herr_add("unsolicited_data", s->errors[E_UNEXPECTED]);
    herr_add("bad_response", s->errors[E_STATUS_LINE] + s->errors[E_HEAD_TOO_LARGE] +
             s->errors[E_FRAMING] + s->errors[E_CHUNK]);
    herr_add("timeout", s->errors[E_TIMEOUT]);
    memset(s->errors, 0, sizeof s->errors);
    uint64_t non_2xx = 0;
    for (int st = 100; st < 600; st++)
        if (st < 200 || st >= 300) non_2xx += hold_status[st];
    static uint64_t non_2xx_reported;
    herr_add("non_2xx", non_2xx - non_2xx_reported);
    non_2xx_reported = non_2xx;
    printf("\"errors\":{");
    for (int i = 0; i < nherr; i++)
        printf("%s\"%s\":%llu", i ? "," : "", herr[i].name, (unsigned long long)herr[i].n);
    printf("}");
}

/* Bytes or a close on a connection with no request: a server at its limit
 * (503, or a close).  The connection is closed and counted. */
static void hold_unsolicited(conn_t *c) {
    char head[16] = "";
    ssize_t r = read(c->fd, head, sizeof head - 1);
    if (r < 0 && errno == EAGAIN) return;
    herr_add(r > 0 && !strncmp(head, "HTTP/1.1 503", 12) ? "rejected_503" : "closed_by_server", 1);
    close(c->fd);
    c->fd = -1;
    c->connected = 0;
}

static int hold_held(worker_t *w) {
    int held = 0;
    for (int i = 0; i < w->nconns; i++) held += w->conns[i].fd >= 0 && w->conns[i].connected;
    return held;
}

static int hold_main(void) {
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    long soft_before = (long)rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    static worker_t W;
    worker_t *w = &W;
    w->slot = calloc(1, sizeof(slot_t));
    w->nconns = O.connections;
    w->conns = calloc(w->nconns, sizeof(conn_t));
    w->rbuf = malloc(READ_BUF);
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    t_start = t_warm = now_ns();
    t_end = t_stop = INT64_MAX;          /* the load phase sets the window */
    struct epoll_event evs[512];
    /* 1. connect */
    int next = 0, pending = 0;
    char stopped[200] = "";
    int64_t t0 = now_ns(), last_progress = t0;
    int64_t deadline = t0 + (int64_t)(O.connect_timeout_s * 1e9);
    int64_t stall = (int64_t)(O.connect_stall_s * 1e9);
    while ((next < w->nconns && !stopped[0]) || pending) {
        int64_t now = now_ns();
        int stalled = pending && now - last_progress > stall;
        if (now > deadline || stalled) {
            herr_add("connect_timeout", pending);
            for (int i = 0; i < next; i++) {
                conn_t *c = &w->conns[i];
                if (c->fd >= 0 && !c->connected) { close(c->fd); c->fd = -1; }
            }
            pending = 0;
            if (next < w->nconns || stalled)
                snprintf(stopped, sizeof stopped, stalled ? "no connection completed for %g s"
                         : "connect phase deadline", O.connect_stall_s);
            break;
        }
        while (next < w->nconns && pending < O.concurrency && !stopped[0]) {
            conn_t *c = &w->conns[next];
            c->index = O.first_index + next;
            c->cap = 4;
            c->fifo = malloc(sizeof(int64_t) * c->cap);
            c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (c->fd < 0) {
                herr_add(errno_name(errno), 1);
                snprintf(stopped, sizeof stopped, "client socket(): %s", strerror(errno));
                break;
            }
            int one = 1;
            setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
            uint32_t host = 2 + (uint32_t)(c->index / O.per_address);
            struct sockaddr_in src = {.sin_family = AF_INET};
            src.sin_addr.s_addr = htonl(0x7f000000u | (host & 0xffffff));
            if (host >= (1u << 24) || bind(c->fd, (struct sockaddr *)&src, sizeof src) < 0 ||
                (connect(c->fd, (struct sockaddr *)&O.addr, sizeof O.addr) < 0 &&
                 errno != EINPROGRESS)) {
                int e = host >= (1u << 24) ? EADDRNOTAVAIL : errno;
                herr_add(errno_name(e), 1);
                snprintf(stopped, sizeof stopped, "client bind/connect: %s", strerror(e));
                close(c->fd);
                c->fd = -1;
                break;
            }
            next++;
            pending++;
            struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
            epoll_ctl(w->epfd, EPOLL_CTL_ADD, c->fd, &ev);
        }
        int n = epoll_wait(w->epfd, evs, 512, 50);
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (c->fd < 0) continue;
            if (c->connected) {
                if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) hold_unsolicited(c);
                continue;
            }
            pending--;
            last_progress = now_ns();
            int err = 0;
            socklen_t l = sizeof err;
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
            if (err) {
                herr_add(errno_name(err), 1);
                close(c->fd);
                c->fd = -1;
                continue;
            }
            int one = 1;
            setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                     .data.ptr = c};
            epoll_ctl(w->epfd, EPOLL_CTL_MOD, c->fd, &ev);
            c->connected = 1;
            c->last_progress = last_progress;
        }
    }
    /* servers at their connection limit accept, then answer 503 or close */
    int64_t drain_end = now_ns() + 300000000LL;
    for (int64_t now = now_ns(); now < drain_end; now = now_ns()) {
        int n = epoll_wait(w->epfd, evs, 512, (int)((drain_end - now) / 1000000) + 1);
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (c->fd >= 0 && (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)))
                hold_unsolicited(c);
        }
    }
    printf("{\"phase\":\"connected\",\"attempted\":%d,\"held\":%d,\"connect_s\":%.6f,", next,
           hold_held(w), (now_ns() - t0) / 1e9);
    hold_errors_json(w->slot);
    printf(",\"stopped\":");
    json_str(stopped);
    printf(",\"nofile\":{\"soft_before\":%ld,\"soft\":%ld,\"hard\":%ld}}\n", soft_before,
           (long)rl.rlim_cur, (long)rl.rlim_max);
    fflush(stdout);
    /* 2. on "go", the load */
    if (!hold_wait_line("go", O.go_timeout_s)) return 1;
    int64_t start = now_ns();
    t_warm = start;
    t_end = t_stop = start + (int64_t)(O.duration_s * 1e9);
    int64_t timeout_ns = (int64_t)(O.timeout_s * 1e9), next_timeout_scan = start + 250000000LL;
    uint64_t sent = 0, behind = 0;
    int cursor = 0;
    for (;;) {
        int64_t now = now_ns();
        if (now >= t_end) break;
        int64_t due = (int64_t)(O.rate * ((now - start) / 1e9)) - (int64_t)(sent + behind);
        for (int tries = 0; due > 0 && tries < w->nconns; tries++) {
            conn_t *c = &w->conns[cursor];
            if (++cursor == w->nconns) cursor = 0;
            if (c->fd < 0 || !c->connected || c->count) continue;
            schedule(w, c, 1, now);
            sent++;
            due--;
            conn_flush(w, c);
        }
        if (due > 0) behind += due;
        if (now >= next_timeout_scan) {
            next_timeout_scan = now + 250000000LL;
            for (int i = 0; i < w->nconns; i++) {
                conn_t *c = &w->conns[i];
                if (c->fd >= 0 && c->sent && now - c->last_progress > timeout_ns) {
                    w->slot->errors[E_TIMEOUT]++;
                    uint32_t lost = c->sent;
                    conn_reset(w, c);
                    w->slot->missing -= lost;
                }
            }
        }
        /* wake for the next request due, a response, or the end */
        int64_t next_due = O.rate > 0 ? start + (int64_t)((sent + behind + 1) * 1e9 / O.rate) : t_end;
        int64_t wait = next_due - now_ns();
        if (wait > 5000000) wait = 5000000;
        if (wait < 0) wait = 0;
        if (t_end - now < wait) wait = t_end - now;
        struct timespec ts = {wait / 1000000000LL, wait % 1000000000LL};
        int n = epoll_pwait2(w->epfd, evs, 512, &ts, NULL);
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (c->fd < 0) continue;
            if ((evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) && conn_read(w, c) < 0)
                continue;
            if ((evs[i].events & EPOLLOUT) && c->want_out) {
                c->want_out = 0;
                conn_flush(w, c);
            }
        }
    }
    int in_flight = 0;
    for (int i = 0; i < w->nconns; i++) in_flight += w->conns[i].fd >= 0 && w->conns[i].count;
    slot_t *s = w->slot;
    printf("{\"phase\":\"done\",\"sent\":%llu,\"responses\":%llu,\"in_flight\":%d,\"behind\":%llu,"
           "\"wall_s\":%.6f,\"held\":%d,", (unsigned long long)sent,
           (unsigned long long)s->responses, in_flight, (unsigned long long)behind,
           (now_ns() - start) / 1e9, hold_held(w));
    hold_errors_json(s);
    printf(",\"statuses\":{");
    int first = 1;
    for (int st = 100; st < 600; st++)
        if (hold_status[st]) {
            printf("%s\"%d\":%llu", first ? "" : ",", st, (unsigned long long)hold_status[st]);
            first = 0;
        }
    printf("},");
    print_buckets(s->hist);
    printf("}\n");
    fflush(stdout);
    /* 3. hold until "close" */
    hold_wait_line("close", O.close_timeout_s);
    for (int i = 0; i < w->nconns; i++)
        if (w->conns[i].fd >= 0) close(w->conns[i].fd);
    return 0;
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    max_batch = O.pipeline > 1024 ? O.pipeline : 1024;
    if (O.uring) {
        const char *why = uring_unavailable();
        if (why) die(2, "--io uring: %s", why);
    }
    if (O.corpus) load_corpus(O.corpus);
    else build_single_request();
    signal(SIGPIPE, SIG_IGN);
    if (O.hold) {
        if (O.uring) die(2, "--hold runs on epoll only");
        if (O.rate <= 0) O.rate = 1000;
        return hold_main();
    }

    /* descriptors: raise the soft limit to the hard one, then spread the
     * connections over enough processes */
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    long per_process = (long)rl.rlim_cur - 64;
    if (per_process < 1) per_process = 1;
    int processes = O.processes;
    int needed = (int)((O.connections + per_process - 1) / per_process);
    if (!processes) processes = needed;
    if (processes < needed)
        usage_error("%d connections need %d processes with a limit of %ld descriptors each",
                    O.connections, needed, (long)rl.rlim_cur);
    if (O.threads < processes) O.threads = processes;
    if (O.threads > O.connections) die(2, "more processes than connections");

    slot_t *slots = mmap(NULL, sizeof(slot_t) * O.threads, PROT_READ | PROT_WRITE,
                         MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (slots == MAP_FAILED) die(1, "mmap: %s", strerror(errno));

    t_start = now_ns();
    t_warm = t_start + (int64_t)(O.warmup_s * 1e9);
    t_end = t_warm + (int64_t)(O.duration_s * 1e9);
    /* open loop: answers still due get a short drain (at most the timeout, 1 s) */
    double drain = O.rate > 0 ? (O.timeout_s < 1 ? O.timeout_s : 1) : 0;
    t_stop = t_end + (int64_t)(drain * 1e9);

    pid_t pids[1024];
    int nchildren = 0;
    int me = 0;
    if (processes > 1) {
        for (int p = 1; p < processes && p < 1024; p++) {
            pid_t pid = fork();
            if (pid < 0) die(1, "fork: %s", strerror(errno));
            if (pid == 0) { me = p; nchildren = 0; break; }
            pids[nchildren++] = pid;
        }
    }
    /* this process runs threads me, me + processes, ... */
    int mine = 0;
    for (int t = me; t < O.threads; t += processes) mine++;
    worker_t *workers = calloc(mine, sizeof(worker_t));
    pthread_t *tids = calloc(mine, sizeof(pthread_t));
    int k = 0;
    for (int t = me; t < O.threads; t += processes, k++) {
        worker_t *w = &workers[k];
        w->id = t;
        w->cpu = O.ncpus ? O.cpus[t % O.ncpus] : -1;
        w->slot = &slots[t];
        for (int j = t; j < O.connections; j += O.threads) w->nconns++;
        w->conns = calloc(w->nconns, sizeof(conn_t));
        int i = 0;
        for (int j = t; j < O.connections; j += O.threads, i++) {
            conn_t *c = &w->conns[i];
            c->index = j;
            c->fd = -1;
            if (O.sources > 1) {
                c->use_source = 1;
                c->source.sin_family = AF_INET;
                c->source.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)(j % O.sources));
            }
        }
    }
    for (k = 0; k < mine; k++) pthread_create(&tids[k], NULL, worker_main, &workers[k]);
    for (k = 0; k < mine; k++) pthread_join(tids[k], NULL);
    if (me != 0) _exit(0);
    for (int i = 0; i < nchildren; i++) waitpid(pids[i], NULL, 0);
    double wall = (now_ns() - t_start) / 1e9;
    struct rusage self, kids;
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &kids);
    double user = self.ru_utime.tv_sec + self.ru_utime.tv_usec / 1e6 +
                  kids.ru_utime.tv_sec + kids.ru_utime.tv_usec / 1e6;
    double sys = self.ru_stime.tv_sec + self.ru_stime.tv_usec / 1e6 +
                 kids.ru_stime.tv_sec + kids.ru_stime.tv_usec / 1e6;
    summary(slots, O.threads, wall, user, sys, processes);
    return 0;
}
