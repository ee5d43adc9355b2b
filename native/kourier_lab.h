/*
 * kourier_lab.h — the one place that fixes every memory layout shared across
 * languages.  The C variants use it directly, cffi reads it (cdef copies the
 * declarations below between the KL_CDEF markers), the Numba variants mirror it
 * with numpy dtypes (kourier_lab/numba_layout.py; tests/test_numba_parser.py
 * checks their offsets against this header through cffi).
 *
 * The request table holds offsets, never pointers: every span is relative to
 * the first byte of the request (the byte `start` handed to the parser), so a
 * table stays valid when a ring buffer moves the bytes it describes.
 */
#ifndef KOURIER_LAB_H
#define KOURIER_LAB_H
#include <stdint.h>
#include <stddef.h>

/* KL_CDEF_BEGIN */
#define KL_MAX_HEADERS 128

/* target_form */
#define KL_FORM_ORIGIN 0
#define KL_FORM_ABSOLUTE 1
#define KL_FORM_AUTHORITY 2
#define KL_FORM_ASTERISK 3

/* body_kind */
#define KL_BODY_NONE 0
#define KL_BODY_LENGTH 1
#define KL_BODY_CHUNKED 2

typedef struct kl_span {
    uint32_t off;   /* from the first byte of the request */
    uint32_t len;
} kl_span;

/* Limits a parser enforces; every variant reads the same struct. */
typedef struct kl_limits {
    uint32_t max_request_line;   /* bytes, CRLF excluded          -> 414 */
    uint32_t max_header_bytes;   /* whole head incl. request line -> 431 */
    uint32_t max_headers;        /* field lines (<= KL_MAX_HEADERS) -> 431 */
    uint32_t _pad;
    int64_t  max_body;           /* decoded body bytes            -> 413 */
} kl_limits;

/*
 * The request table.  A parse returns n > 0 (the head's length, blank line
 * included), 0 (need more bytes; nothing wrong so far) or -status (400, 413,
 * 414, 431, 501, 505).  On n > 0 every field below is set.
 */
typedef struct kl_request {
    int32_t  status;          /* 0 when the head is valid, else the error status */
    uint32_t head_len;        /* bytes of the head, blank line included */
    kl_span  method;
    kl_span  target;          /* the whole request-target */
    kl_span  path;            /* origin/absolute form: the path (may be empty in absolute form) */
    kl_span  query;           /* without the '?'; len 0 when absent */
    kl_span  host;            /* the Host field value (trimmed); off == 0 && len == 0 when
                                 absent (a present, empty Host has off > 0) */
    uint8_t  version_minor;   /* 0 or 1 (HTTP/1.0, HTTP/1.1) */
    uint8_t  target_form;     /* KL_FORM_* */
    uint8_t  keep_alive;      /* after version and Connection tokens */
    uint8_t  body_kind;       /* KL_BODY_* */
    uint8_t  expect_continue; /* Expect: 100-continue */
    uint8_t  has_query;       /* a '?' was present (query may still be empty) */
    uint8_t  _pad[2];
    int64_t  content_length;  /* -1 when absent */
    uint32_t header_count;
    uint32_t _pad2;
    kl_span  names[KL_MAX_HEADERS];
    kl_span  values[KL_MAX_HEADERS];   /* OWS trimmed */
} kl_request;

/*
 * Chunked body decoding.  Stateless like the head parser: called on the bytes
 * after the head (buf[0] is the body's first byte), it returns n > 0 (bytes of
 * the chunked body, trailers and final CRLF included), 0 (need more) or
 * -status.  On n > 0 the chunk data is compacted in place at
 * buf[0 .. *body_len) (the framing between chunks is overwritten), so a body
 * is always one span; on 0 or an error the buffer is untouched.
 */
/* KL_CDEF_END */

int kl_parse_head(const uint8_t *buf, size_t len, const kl_limits *limits, kl_request *req);
int64_t kl_parse_chunked(uint8_t *buf, size_t len, const kl_limits *limits, int64_t *body_len);

#endif
