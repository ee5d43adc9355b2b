/*
 * loop.h — the C ring buffer (ringbuffer.c) and the C event loop (loop.c).
 * build_loop.py copies the declarations between the KL_CDEF markers into the
 * cffi cdef, so the layouts below are written down once.
 */
#ifndef KL_LOOP_H
#define KL_LOOP_H
#include "kourier_lab.h"

/* KL_CDEF_BEGIN */

/*
 * The read side.  Readable bytes are [head, tail) and are ALWAYS contiguous:
 * instead of wrapping, the (small) remainder is slid to the front when the
 * free room at the end gets short, so the parser never sees two spans.
 * Memory is handed in by the owner (malloc in the C loop, a bytearray in the
 * Python wrapper): kl_ring_want() says when a bigger block is needed.
 */
typedef struct kl_ring {
    uint8_t *data;
    size_t cap;
    size_t head;
    size_t tail;
    size_t limit;
} kl_ring;

/* The write side: pending bytes are [start, end). */
typedef struct kl_wbuf {
    uint8_t *data;
    size_t cap;
    size_t start;
    size_t end;
    size_t limit;
} kl_wbuf;

/* One request answered by Python (handler, 404/405), as handed to the batch callback. */
typedef struct kl_pyreq {
    const uint8_t *base;      /* the first byte handed to the parser: the table's offsets count from here */
    kl_request *req;          /* the request table (C parser: complete; Python parser: see kourier_lab/loops/c.py) */
    const uint8_t *body;      /* decoded body (chunked bodies are compacted in place) */
    int64_t body_len;
    size_t out_off;           /* filled by kl_batch_put: the response in the batch's arena */
    size_t out_len;
    int32_t done;             /* 1 once kl_batch_put stored the response */
    int32_t _pad;
} kl_pyreq;

typedef struct kl_batch {
    kl_pyreq *reqs;
    uint32_t count;
    uint32_t _pad;
    uint8_t *arena;
    size_t arena_len;
    size_t arena_cap;
} kl_batch;

typedef struct kl_loop_config {
    double request_timeout;      /* seconds: first byte of a request to its last -> 408, close */
    double idle_timeout;         /* seconds: idle keep-alive connection -> close */
    double graceful_timeout;     /* seconds: after request_stop, force-close what is left */
    uint32_t max_connections;    /* past it: 503 and close */
    uint32_t read_buffer;        /* initial read buffer per connection */
    size_t read_buffer_limit;
    size_t write_buffer_limit;   /* queued output that pauses reading */
    kl_limits limits;
} kl_loop_config;

/* Parser entry points (kl_parse_head / kl_parse_chunked, or a Numba @cfunc with the same signature). */
typedef int (*kl_head_fn)(const uint8_t *buf, size_t len, const kl_limits *limits, kl_request *req);
typedef int64_t (*kl_chunked_fn)(uint8_t *buf, size_t len, const kl_limits *limits, int64_t *body_len);

#define KL_PARSER_C 0
#define KL_PARSER_PYTHON 1
#define KL_PARSER_FNPTR 2

/* response variants of a static route: head_only * 4 + version_minor * 2 + keep_alive */
#define KL_VARIANTS 8

typedef struct kl_loop_stats {
    uint64_t accepted;
    uint64_t refused;            /* 503: over max_connections */
    uint64_t requests_static;    /* answered without entering Python */
    uint64_t requests_python;    /* answered through the batch callback */
    uint64_t batches;            /* batch callbacks */
    uint64_t timeouts;           /* 408 sent */
    uint64_t idle_closed;
    uint64_t routes_reused;      /* folding: requests routed by the previous head's route, no look-up */
    uint64_t answers_folded;     /* folding: answers written as part of one copy of a run */
} kl_loop_stats;

typedef struct kl_loop kl_loop;
/* stage counters (off unless kl_loop_set_stage_counters(loop, 1)): ns per
 * stage, the same names as loops/stages.py */
#define KL_STAGE_READ 0
#define KL_STAGE_PARSE 1
#define KL_STAGE_ROUTE 2
#define KL_STAGE_RESPOND 3
#define KL_STAGE_WRITE 4
#define KL_STAGE_TIMERS 5
#define KL_STAGES 6
/* the drivers (kl_loop_set_driver): epoll, the default, or io_uring when built with liburing */
#define KL_DRIVER_EPOLL 0
#define KL_DRIVER_URING 1
/* io_uring features, each a switch (`serve --uring-features`) */
#define KL_URING_MULTISHOT 1         /* one multishot recv per connection, else a recv armed per completion */
#define KL_URING_BUF_RING 2          /* recv into a provided buffer ring, else into the connection's own buffer */
#define KL_URING_DEFER_TASKRUN 4     /* SINGLE_ISSUER + DEFER_TASKRUN: completions run when the loop waits */
#define KL_URING_FIXED_FILES 8       /* sockets in the ring's registered file table */
/* KL_CDEF_END */

/* ring buffer (ringbuffer.c) */
void kl_ring_init(kl_ring *r, uint8_t *mem, size_t cap, size_t limit);
size_t kl_ring_want(kl_ring *r);
void kl_ring_move(kl_ring *r, uint8_t *mem, size_t cap);
int kl_ring_commit(kl_ring *r, size_t n);
int kl_ring_consume(kl_ring *r, size_t n);
void kl_wbuf_init(kl_wbuf *w, uint8_t *mem, size_t cap, size_t limit);
size_t kl_wbuf_want(kl_wbuf *w, size_t n);
void kl_wbuf_move(kl_wbuf *w, uint8_t *mem, size_t cap);
void kl_wbuf_put(kl_wbuf *w, const char *src, size_t n);
int kl_wbuf_consume(kl_wbuf *w, size_t n);
/* one crossing per call for buffers/c.py */
int kl_ring_done(kl_ring *r, size_t n);
void kl_ring_adopt(kl_ring *r, uint8_t *mem, size_t cap);
void kl_ring_drop(kl_ring *r);
size_t kl_wbuf_append(kl_wbuf *w, const char *src, size_t n);
void kl_wbuf_grow_put(kl_wbuf *w, uint8_t *mem, size_t cap, const char *src, size_t n);
int kl_wbuf_sent(kl_wbuf *w, size_t n);
void kl_wbuf_drop(kl_wbuf *w);

/* event loop (loop.c) */
kl_loop *kl_loop_new(const kl_loop_config *cfg, void *py_handle);
void kl_loop_free(kl_loop *loop);
int kl_loop_set_parser(kl_loop *loop, int kind, kl_head_fn head, kl_chunked_fn chunked);
void kl_loop_set_head_memo(kl_loop *loop, int on);
void kl_loop_set_fold_runs(kl_loop *loop, int on);   /* off by default: no folding of equal requests */
int kl_loop_add_route(kl_loop *loop, const char *path, size_t len, int route);
int kl_loop_set_response(kl_loop *loop, int route, int variant, const char *data, size_t len);
void kl_loop_set_catch_all(kl_loop *loop, int route);
int kl_loop_set_error(kl_loop *loop, int status, const char *data, size_t len);
int kl_loop_run(kl_loop *loop, int listen_fd, int signal_fd);
/* 0, or -errno: -ENOSYS when built without liburing, -EINVAL for an unknown driver */
int kl_loop_set_driver(kl_loop *loop, int driver, uint32_t features);
/* 0 when an io_uring with what the driver needs can be set up here, else
 * -errno with one line in `why` (cap bytes) saying what is missing */
int kl_uring_probe(char *why, size_t cap);
void kl_loop_request_stop(kl_loop *loop);
void kl_loop_get_stats(kl_loop *loop, kl_loop_stats *out);
void kl_loop_set_stage_counters(kl_loop *loop, int on);
void kl_loop_get_stage_ns(kl_loop *loop, uint64_t *out);   /* KL_STAGES values; parse and route scaled from the sampled heads */
int kl_batch_put(kl_batch *batch, uint32_t index, const char *data, size_t len);
/* the loop's scan_head on its own (tests: it decides as parsers/scan.py does);
 * state = {s, rl, scanned}, in and out; 1 when the parser must be asked */
int kl_loop_scan_head(const uint8_t *base, size_t end, size_t *state, const kl_limits *limits);

#endif
