/*
 * parser.h — what native/parser.c offers beyond the two entry points fixed in
 * kourier_lab.h: SIMD path selection, an out-of-place chunked decoder (for
 * callers whose buffer must stay untouched), a batch entry point that parses
 * pipelined requests in one call (to measure the parser apart from the cffi
 * crossing) and kl_parse_heads_at / kl_parse_heads_cols, the batch that
 * Python loops use (one crossing per read; runs of equal summaries only when
 * asked to fold, columns when not).
 * build_parser.py copies the declarations between the KL_CDEF markers into
 * the cffi cdef.
 */
#ifndef KL_PARSER_H
#define KL_PARSER_H
#include "kourier_lab.h"

/* KL_CDEF_BEGIN */
#define KL_SIMD_SCALAR 0
#define KL_SIMD_SSE42 1
#define KL_SIMD_AVX2 2

/*
 * Choose the SIMD path: from KOURIER_LAB_SIMD (scalar | sse42 | avx2) when set,
 * else the best the CPU supports.  Called lazily by the first parse; calling it
 * again re-reads the environment.  Returns the active KL_SIMD_* level, or -1
 * when the environment asks for a path this CPU lacks or names no path (the
 * parser then falls back to the best supported one).
 */
int kl_parser_init(void);
/* Force a level (tests run every path on one corpus); -1 if unsupported here. */
int kl_parser_set_simd(int level);
int kl_parser_simd(void);                 /* the active level */
/*
 * The active level's head parser: kl_parse_head without the dispatch and
 * without setting req->status (the caller does), for a loop that parses many
 * heads on one level.
 */
typedef int (*kl_head_impl_fn)(const uint8_t *buf, size_t len, const kl_limits *limits, kl_request *req);
kl_head_impl_fn kl_parser_head_impl(void);
const char *kl_parser_simd_name(int level);
int kl_parser_simd_supported(int level);  /* 1 when this CPU can run it */

/*
 * Chunked body, decoded into `out` (capacity >= the returned *body_len; pass
 * NULL to only validate and measure).  buf is never written.  Returns as
 * kl_parse_chunked: n > 0, 0 (need more) or -status.
 */
int64_t kl_decode_chunked(const uint8_t *buf, size_t len, const kl_limits *limits,
                          uint8_t *out, int64_t *body_len);

/*
 * Parse pipelined heads back to back (bodies are not skipped: for GET-style
 * batches).  Stops at the first head that is incomplete or invalid, or after
 * max_requests.  *consumed gets the bytes parsed; returns the number of heads;
 * *last_status the final kl_parse_head result (0 or -status when it stopped early).
 */
int64_t kl_parse_batch(const uint8_t *buf, size_t len, const kl_limits *limits,
                       kl_request *req, int64_t max_requests, size_t *consumed,
                       int *last_status);
/*
 * The same two parsers on buf[start, end) of a buffer of buflen bytes, taking
 * `const char *` so Python bytes pass to cffi without a from_buffer.  Spans in
 * req stay relative to buf + start.  -1 (no status) when the span is outside
 * the buffer.
 */
int kl_parse_head_at(const char *buf, size_t buflen, size_t start, size_t end,
                     const kl_limits *limits, kl_request *req);
int64_t kl_decode_chunked_at(const char *buf, size_t buflen, size_t start, size_t end,
                             const kl_limits *limits, uint8_t *out, int64_t *body_len);
/*
 * Batch entry point for the Python-level loops: every complete head of
 * buf[start, end) in one crossing (each head fully parsed and validated, as
 * kl_parse_head_at would), summarised as runs.  Spans are relative to
 * buf + start and point into the run's first head.
 *
 * `fold` (the fold_runs knob, off by default): 0 gives one run per head
 * (count 1, same_info 0), so the caller builds every head's summary from that
 * head's own bytes.  1 folds: a run is `count` consecutive heads with the same
 * length n and the same hot-path summary (method, path and query bytes,
 * version, keep-alive, body kind, content length, expect), and same_info says
 * a run's summary equals the previous run's, so a caller builds one summary
 * per run instead of one per head.
 *
 * Stops after (and includes) a head that is incomplete or invalid (a run with
 * n = 0 or -status, count 1), has a body, or ends the connection; after
 * max_heads heads; when the next head would start at `end`; or, leaving the
 * rest for another call, when `max_runs` runs are written or the next head
 * would start beyond UINT32_MAX bytes from start.  Returns the number of runs
 * written, or -1 when the span is outside the buffer.
 */
typedef struct kl_head_run {
    int32_t  n;               /* each head's length; 0 (need more) or -status ends the batch */
    uint32_t count;           /* consecutive heads this run describes (>= 1) */
    kl_span  method;          /* from buf + start: spans of the run's first head */
    kl_span  path;
    kl_span  query;
    int64_t  content_length;  /* -1 when absent */
    uint8_t  version_minor;
    uint8_t  keep_alive;
    uint8_t  body_kind;       /* KL_BODY_* */
    uint8_t  expect_continue;
    uint8_t  has_query;
    uint8_t  same_info;       /* fold only: 1 when the summary equals the previous run's (only n differs) */
    uint8_t  _pad[2];
} kl_head_run;

int64_t kl_parse_heads_at(const char *buf, size_t buflen, size_t start, size_t end,
                          const kl_limits *limits, kl_head_run *out, int64_t max_runs,
                          int64_t max_heads, int fold);
/*
 * The same batch for folding off, written as columns (one array per field,
 * `capacity` rows each) so that Python builds each field's list with one
 * builtin call instead of unpacking a record per head.  Row i is the i-th
 * head.  Its method, path and query are copied to `text`, each followed by
 * one SP (none of them can hold a SP: the request line is split on SP), so
 * that one bytes.split gives every field of the batch in head order (an
 * absent query as an empty field); query_index is that query's position in
 * the split list (3 i + 2), or -1 when the head has no '?'.  Flags are 0 / 1.
 *
 * The stop rules are kl_parse_heads_at's with one head per row (`capacity`
 * in place of max_runs; the rest is left for another call when the next
 * head's fields do not fit the text, which never happens to a batch's first
 * head when text_capacity is at least max_request_line + 3).  A final row with
 * n <= 0 has only n.  Returns the rows written (text_len and with_query
 * set), or -1 when the span is outside the buffer.
 */
typedef struct kl_head_cols {
    int32_t  *n;
    int32_t  *query_index;
    int64_t  *content_length;
    uint8_t  *version_minor;
    uint8_t  *keep_alive;
    uint8_t  *body_kind;
    uint8_t  *expect_continue;
    uint8_t  *text;
    size_t   text_capacity;
    size_t   text_len;        /* out: bytes of text written */
    int64_t  with_query;      /* out: rows with a query (query_index >= 0) */
} kl_head_cols;

int64_t kl_parse_heads_cols(const char *buf, size_t buflen, size_t start, size_t end,
                            const kl_limits *limits, kl_head_cols *cols, int64_t capacity,
                            int64_t max_heads);
/* KL_CDEF_END */

#endif
