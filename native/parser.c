/*
 * parser.c — the strict HTTP/1.1 request parser in C, with SIMD fast paths.
 *
 * Semantics: exactly kourier_lab/parsers/python.py (the reference), including
 * the order of the checks, so that every prefix of an input gives 0 or the
 * whole input's error (see the contract in kourier_lab/parsers/__init__.py).
 *
 * Stateless: each call parses from the request's first byte; "incremental"
 * means calling again on the longer span.  The only global is the SIMD
 * dispatch pointer.
 *
 * Speed: one pass over the head.  Each field of the request is consumed by a
 * class scanner that returns the length of the longest prefix in a character
 * class; the byte where it stops is the delimiter (':', SP, CR, '%', '?') or an
 * error, so finding delimiters and validating every byte is the same work.  The
 * scanners exist three times: scalar (256-byte class table; this path defines
 * the behaviour and runs anywhere), SSE4.2 (16 bytes per step) and AVX2 (32),
 * the vector ones using a pshufb nibble lookup for the token / path / query
 * classes and range compares for field values.  The parser body is compiled
 * once per path (always_inline into a wrapper carrying the target attribute),
 * so the build needs no -mavx2 and the path is chosen at run time.
 *
 * Self-contained: this file + kl_tables.h (generated from
 * kourier_lab/http/chars.py by gen_tables.py) + kourier_lab.h + parser.h.
 */
#include <stdlib.h>
#include <string.h>
#include "parser.h"
#include "kl_tables.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define KL_HAVE_X86 1
#define KL_SSE42 __attribute__((target("sse4.2")))
#define KL_AVX2 __attribute__((target("avx2")))
#else
#define KL_HAVE_X86 0
#endif

#define KL_INLINE static inline __attribute__((always_inline))
#define KL_LIKELY(x) __builtin_expect(!!(x), 1)
#define KL_UNLIKELY(x) __builtin_expect(!!(x), 0)

#define MAX_CHUNK_LINE 4096   /* a chunk-size line, CR included; python.py MAX_CHUNK_LINE */
/* chunk framing bytes allowed beyond the data's size; python.py MAX_CHUNK_OVERHEAD */
#define KL_MAX_CHUNK_OVERHEAD 102400

/* ------------------------------------------------------------------------ */
/* scalar scanners: the behaviour every path must reproduce                  */

KL_INLINE size_t scan_scalar(const uint8_t *p, const uint8_t *end, uint8_t cls)
{
    const uint8_t *q = p;
    while (end - q >= 4) {
        if (!(kl_class[q[0]] & cls)) return (size_t)(q - p);
        if (!(kl_class[q[1]] & cls)) return (size_t)(q - p) + 1;
        if (!(kl_class[q[2]] & cls)) return (size_t)(q - p) + 2;
        if (!(kl_class[q[3]] & cls)) return (size_t)(q - p) + 3;
        q += 4;
    }
    while (q < end && (kl_class[*q] & cls)) q++;
    return (size_t)(q - p);
}

#if KL_HAVE_X86
/* ------------------------------------------------------------------------ */
/* SSE4.2: 16 bytes per step                                                  */

/* bit (b >> 4) of the nibble row; 0 for b >= 0x80, which no 7-bit class holds */
static const uint8_t kl_hi_bit[16] __attribute__((aligned(16))) = {
    1, 2, 4, 8, 16, 32, 64, 128, 0, 0, 0, 0, 0, 0, 0, 0};

/* mask of the bytes of v NOT in the class described by the nibble table */
KL_INLINE KL_SSE42 unsigned miss16_nib(__m128i v, __m128i tbl, __m128i bits)
{
    const __m128i lo4 = _mm_set1_epi8(0x0f);
    __m128i row = _mm_shuffle_epi8(tbl, _mm_and_si128(v, lo4));
    __m128i bit = _mm_shuffle_epi8(bits, _mm_and_si128(_mm_srli_epi16(v, 4), lo4));
    return (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_and_si128(row, bit), _mm_setzero_si128()));
}

/* field-content = HTAB / SP..0x7E / 0x80..0xFF (asserted by gen_tables.py) */
KL_INLINE KL_SSE42 unsigned miss16_field(__m128i v)
{
    __m128i ctl = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);   /* v <= 0x1F */
    __m128i tab = _mm_cmpeq_epi8(v, _mm_set1_epi8(0x09));
    __m128i del = _mm_cmpeq_epi8(v, _mm_set1_epi8(0x7f));
    return (unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_andnot_si128(tab, ctl), del));
}

/*
 * Tail of fewer than 16 bytes: when the buffer holds 16 bytes ending at `end`,
 * one overlapping load covers it (never outside [base, end)); else scalar.
 */
#define KL_TAIL16(MISS_EXPR, CLS)                                                   \
    do {                                                                            \
        size_t rest = (size_t)(end - q);                                            \
        if (rest == 0) return (size_t)(q - p);                                      \
        if (end - base >= 16) {                                                     \
            __m128i v = _mm_loadu_si128((const __m128i *)(end - 16));              \
            unsigned m = (MISS_EXPR) >> (16 - rest);                                \
            return (size_t)(q - p) + (m ? (size_t)__builtin_ctz(m) : rest);         \
        }                                                                           \
        return (size_t)(q - p) + scan_scalar(q, end, CLS);                          \
    } while (0)

#define KL_DEFINE_SSE_NIB(NAME, TABLE, CLS)                                          \
    static inline KL_SSE42 size_t sse42_scan_##NAME(const uint8_t *base, const uint8_t *p, \
                                                const uint8_t *end)                 \
    {                                                                               \
        const __m128i tbl = _mm_load_si128((const __m128i *)TABLE);                 \
        const __m128i bits = _mm_load_si128((const __m128i *)kl_hi_bit);            \
        const uint8_t *q = p;                                                       \
        while (end - q >= 16) {                                                     \
            __m128i v = _mm_loadu_si128((const __m128i *)q);                       \
            unsigned m = miss16_nib(v, tbl, bits);                                  \
            if (m) return (size_t)(q - p) + (size_t)__builtin_ctz(m);              \
            q += 16;                                                                \
        }                                                                           \
        KL_TAIL16(miss16_nib(v, tbl, bits), CLS);                                   \
    }

KL_DEFINE_SSE_NIB(tchar, kl_nib_tchar, KL_C_TCHAR)
KL_DEFINE_SSE_NIB(path, kl_nib_path, KL_C_PATH)
KL_DEFINE_SSE_NIB(query, kl_nib_query, KL_C_QUERY)

static inline KL_SSE42 size_t sse42_scan_field(const uint8_t *base, const uint8_t *p, const uint8_t *end)
{
    const uint8_t *q = p;
    while (end - q >= 16) {
        unsigned m = miss16_field(_mm_loadu_si128((const __m128i *)q));
        if (m) return (size_t)(q - p) + (size_t)__builtin_ctz(m);
        q += 16;
    }
    KL_TAIL16(miss16_field(v), KL_C_FIELD);
}

/* ------------------------------------------------------------------------ */
/* AVX2: one 16-byte step, 32 bytes per step, one 16-byte step, the tail     */

KL_INLINE KL_AVX2 unsigned miss32_nib(__m256i v, __m256i tbl, __m256i bits)
{
    const __m256i lo4 = _mm256_set1_epi8(0x0f);
    __m256i row = _mm256_shuffle_epi8(tbl, _mm256_and_si256(v, lo4));
    __m256i bit = _mm256_shuffle_epi8(bits, _mm256_and_si256(_mm256_srli_epi16(v, 4), lo4));
    return (unsigned)_mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_and_si256(row, bit),
                                                            _mm256_setzero_si256()));
}

KL_INLINE KL_AVX2 unsigned miss32_field(__m256i v)
{
    __m256i ctl = _mm256_cmpeq_epi8(_mm256_min_epu8(v, _mm256_set1_epi8(0x1f)), v);
    __m256i tab = _mm256_cmpeq_epi8(v, _mm256_set1_epi8(0x09));
    __m256i del = _mm256_cmpeq_epi8(v, _mm256_set1_epi8(0x7f));
    return (unsigned)_mm256_movemask_epi8(_mm256_or_si256(_mm256_andnot_si256(tab, ctl), del));
}

/* the 128-bit helpers again, but VEX-encoded inside AVX2 code */
KL_INLINE KL_AVX2 unsigned miss16_nib_v(__m128i v, __m128i tbl, __m128i bits)
{
    const __m128i lo4 = _mm_set1_epi8(0x0f);
    __m128i row = _mm_shuffle_epi8(tbl, _mm_and_si128(v, lo4));
    __m128i bit = _mm_shuffle_epi8(bits, _mm_and_si128(_mm_srli_epi16(v, 4), lo4));
    return (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_and_si128(row, bit), _mm_setzero_si128()));
}

KL_INLINE KL_AVX2 unsigned miss16_field_v(__m128i v)
{
    __m128i ctl = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
    __m128i tab = _mm_cmpeq_epi8(v, _mm_set1_epi8(0x09));
    __m128i del = _mm_cmpeq_epi8(v, _mm_set1_epi8(0x7f));
    return (unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_andnot_si128(tab, ctl), del));
}

#define KL_DEFINE_AVX2_NIB(NAME, TABLE, CLS)                                         \
    static inline KL_AVX2 size_t avx2_scan_##NAME(const uint8_t *base, const uint8_t *p,  \
                                              const uint8_t *end)                   \
    {                                                                               \
        const __m128i tbl = _mm_load_si128((const __m128i *)TABLE);                 \
        const __m128i bits = _mm_load_si128((const __m128i *)kl_hi_bit);            \
        const __m256i tbl2 = _mm256_broadcastsi128_si256(tbl);                      \
        const __m256i bits2 = _mm256_broadcastsi128_si256(bits);                    \
        const uint8_t *q = p;                                                       \
        if (end - q >= 16) { /* most names and values end within 16 bytes */        \
            unsigned m = miss16_nib_v(_mm_loadu_si128((const __m128i *)q), tbl, bits); \
            if (m) return (size_t)__builtin_ctz(m);                                 \
            q += 16;                                                                \
        }                                                                           \
        while (end - q >= 32) {                                                     \
            __m256i v = _mm256_loadu_si256((const __m256i *)q);                    \
            unsigned m = miss32_nib(v, tbl2, bits2);                                \
            if (m) return (size_t)(q - p) + (size_t)__builtin_ctz(m);              \
            q += 32;                                                                \
        }                                                                           \
        if (end - q >= 16) {                                                        \
            unsigned m = miss16_nib_v(_mm_loadu_si128((const __m128i *)q), tbl, bits); \
            if (m) return (size_t)(q - p) + (size_t)__builtin_ctz(m);              \
            q += 16;                                                                \
        }                                                                           \
        KL_TAIL16(miss16_nib_v(v, tbl, bits), CLS);                                 \
    }

KL_DEFINE_AVX2_NIB(tchar, kl_nib_tchar, KL_C_TCHAR)
KL_DEFINE_AVX2_NIB(path, kl_nib_path, KL_C_PATH)
KL_DEFINE_AVX2_NIB(query, kl_nib_query, KL_C_QUERY)

static inline KL_AVX2 size_t avx2_scan_field(const uint8_t *base, const uint8_t *p, const uint8_t *end)
{
    const uint8_t *q = p;
    if (end - q >= 16) {   /* short values end in the first 16 bytes */
        unsigned m = miss16_field_v(_mm_loadu_si128((const __m128i *)q));
        if (m) return (size_t)__builtin_ctz(m);
        q += 16;
    }
    while (end - q >= 32) {
        unsigned m = miss32_field(_mm256_loadu_si256((const __m256i *)q));
        if (m) return (size_t)(q - p) + (size_t)__builtin_ctz(m);
        q += 32;
    }
    if (end - q >= 16) {
        unsigned m = miss16_field_v(_mm_loadu_si128((const __m128i *)q));
        if (m) return (size_t)(q - p) + (size_t)__builtin_ctz(m);
        q += 16;
    }
    KL_TAIL16(miss16_field_v(v), KL_C_FIELD);
}
#endif /* KL_HAVE_X86 */

/*
 * SCAN(kind, p, end): length of the longest prefix of [p, end) in the class.
 * `level` is a compile-time constant in each instantiation of the bodies below.
 */
#if KL_HAVE_X86
#define SCAN(KIND, P, END, CLS)                                                    \
    (level == KL_SIMD_AVX2    ? avx2_scan_##KIND(buf, (P), (END))                  \
     : level == KL_SIMD_SSE42 ? sse42_scan_##KIND(buf, (P), (END))                 \
                              : scan_scalar((P), (END), (CLS)))
#else
#define SCAN(KIND, P, END, CLS) scan_scalar((P), (END), (CLS))
#endif

/* ------------------------------------------------------------------------ */
/* small helpers (cold or short; scalar on every path)                        */

KL_INLINE int is_hex(uint8_t c) { return kl_class[c] & KL_C_HEX; }
KL_INLINE int is_digit(uint8_t c) { return kl_class[c] & KL_C_DIGIT; }
KL_INLINE int is_ws(uint8_t c) { return c == ' ' || c == '\t'; }
KL_INLINE int is_alpha(uint8_t c) { return (uint8_t)((c | 0x20) - 'a') < 26; }
/* reg-name bytes and '%' (python.py _REGC) */
KL_INLINE int is_regc(uint8_t c) { return (kl_class[c] & KL_C_REGNAME) || c == '%'; }
/* inside "[...]": hex, ':', '.', 'v', 'V' and reg-name (python.py _IP_LITERAL) */
KL_INLINE int is_ipc(uint8_t c) { return (kl_class[c] & (KL_C_REGNAME | KL_C_HEX)) || c == ':'; }

KL_INLINE kl_span mkspan(const uint8_t *buf, const uint8_t *a, const uint8_t *b)
{
    kl_span s = {(uint32_t)(a - buf), (uint32_t)(b - a)};
    return s;
}

/* case-insensitive compare with a lower-case literal of letters and '-': only
   'A'-'Z' fold onto 'a'-'z' under |0x20, and nothing but CR (never inside a
   token) folds onto '-', so this equals python's bytes.lower() compare */
KL_INLINE int ci_eq(const uint8_t *p, size_t n, const char *lit, size_t litlen)
{
    if (n != litlen) return 0;
    for (size_t i = 0; i < n; i++)
        if ((uint8_t)(p[i] | 0x20) != (uint8_t)lit[i]) return 0;
    return 1;
}

/* uri-host: IP-literal or *( reg-name / '%' ); returns the end or NULL */
static const uint8_t *host_end(const uint8_t *p, const uint8_t *e)
{
    if (p < e && *p == '[') {
        const uint8_t *q = ++p;
        while (p < e && is_ipc(*p)) p++;
        if (p == q || p >= e || *p != ']') return NULL;
        return p + 1;
    }
    while (p < e && is_regc(*p)) p++;
    return p;
}

/* Host field value: uri-host [ ":" *DIGIT ] (python.py _HOST_VALUE) */
static int valid_host_value(const uint8_t *p, const uint8_t *e)
{
    p = host_end(p, e);
    if (!p) return 0;
    if (p == e) return 1;
    if (*p++ != ':') return 0;
    while (p < e && is_digit(*p)) p++;
    return p == e;
}

#if KL_HAVE_X86
/* nibble tables (as kl_nib_*) for reg-name + '%' and for DIGIT, built from
   kl_class by build_host_tables(); kl_host_vec_ok = 0 keeps the scalar check */
static uint8_t kl_nib_hostc[16] __attribute__((aligned(16)));
static uint8_t kl_nib_digit[16] __attribute__((aligned(16)));
static int kl_host_vec_ok;

static void build_host_tables(void)
{
    uint8_t hostc[16] = {0}, digit[16] = {0};
    int ok = 1;
    for (int b = 0; b < 256; b++) {
        int h = is_regc((uint8_t)b), d = is_digit((uint8_t)b) != 0;
        if (b >= 0x80) {
            if (h || d) ok = 0;          /* a nibble table holds 7-bit classes only */
            continue;
        }
        if (h) hostc[b & 15] |= (uint8_t)(1u << (b >> 4));
        if (d) digit[b & 15] |= (uint8_t)(1u << (b >> 4));
    }
    memcpy(kl_nib_hostc, hostc, 16);
    memcpy(kl_nib_digit, digit, 16);
    __atomic_store_n(&kl_host_vec_ok, ok, __ATOMIC_RELEASE);
}

/* valid_host_value for a value [p, e) of at most 16 bytes, not starting with
   '[', with 16 readable bytes ending at e: reg-name bytes up to the first other
   byte, which must be ':' followed by digits only (or the end) */
static inline KL_SSE42 int host_value_16(const uint8_t *p, const uint8_t *e)
{
    const size_t n = (size_t)(e - p);
    const __m128i bits = _mm_load_si128((const __m128i *)kl_hi_bit);
    const __m128i v = _mm_loadu_si128((const __m128i *)(e - 16));
    const unsigned inval = (0xffffu << (16 - n)) & 0xffffu;      /* window bits of the value */
    const unsigned other = miss16_nib(v, _mm_load_si128((const __m128i *)kl_nib_hostc), bits) & inval;
    if (!other) return 1;
    const unsigned k = (unsigned)__builtin_ctz(other);
    if (e[(int)k - 16] != ':') return 0;
    const unsigned nondigit = miss16_nib(v, _mm_load_si128((const __m128i *)kl_nib_digit), bits);
    return (nondigit & inval & ~((2u << k) - 1)) == 0;
}
#endif

#if KL_HAVE_X86
/* the first LF among p[0..32), or NULL (the caller has 32 readable bytes) */
static inline KL_SSE42 const uint8_t *first_lf_32(const uint8_t *p)
{
    const __m128i lf = _mm_set1_epi8('\n');
    unsigned m = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)p), lf)) |
                 (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(p + 16)), lf)) << 16;
    return m ? p + __builtin_ctz(m) : NULL;
}
#endif

/* authority-form: uri-host ":" 1*DIGIT (python.py _AUTHORITY_FORM) */
static int valid_authority_form(const uint8_t *p, const uint8_t *e)
{
    p = host_end(p, e);
    if (!p || p >= e || *p++ != ':') return 0;
    const uint8_t *d = p;
    while (p < e && is_digit(*p)) p++;
    return p > d && p == e;
}

/* every '%' in [p, e) starts %HEXDIG HEXDIG inside [p, e) (python.py _BAD_PCT) */
static int pct_ok(const uint8_t *p, const uint8_t *e)
{
    while ((p = memchr(p, '%', (size_t)(e - p))) != NULL) {
        if (e - p < 3 || !is_hex(p[1]) || !is_hex(p[2])) return 0;
        p += 3;
    }
    return 1;
}

/* absolute-form (python.py _ABSOLUTE_FORM): scheme "://" host [":" *DIGIT]
   ["/" *pchar-or-/] ["?" query]; fills path and query */
static int valid_absolute_form(const uint8_t *buf, const uint8_t *p, const uint8_t *e, kl_request *req)
{
    if (p >= e || !is_alpha(*p)) return 0;
    p++;
    while (p < e && (kl_class[*p] & KL_C_SCHEME)) p++;
    if (e - p < 3 || p[0] != ':' || p[1] != '/' || p[2] != '/') return 0;
    p = host_end(p + 3, e);
    if (!p) return 0;
    if (p < e && *p == ':') {
        p++;
        while (p < e && is_digit(*p)) p++;
    }
    const uint8_t *ps = p;
    if (p < e && *p == '/') {
        p++;
        while (p < e && ((kl_class[*p] & KL_C_PATH) || *p == '%')) p++;
    }
    req->path = mkspan(buf, ps, p);
    if (p < e && *p == '?') {
        const uint8_t *qs = ++p;
        while (p < e && ((kl_class[*p] & KL_C_QUERY) || *p == '%')) p++;
        req->query = mkspan(buf, qs, p);
        req->has_query = 1;
    }
    return p == e;
}

/* a field line [p, e) without its CRLF: token ":" *field-content (python.py _FIELD) */
static int valid_field_line(const uint8_t *p, const uint8_t *e)
{
    const uint8_t *q = p;
    while (q < e && (kl_class[*q] & KL_C_TCHAR)) q++;
    if (q == p || q >= e || *q != ':') return 0;
    q++;
    while (q < e && (kl_class[*q] & KL_C_FIELD)) q++;
    return q == e;
}

/* chunk extensions after the size (python.py _CHUNK_EXT), fullmatch of [p, e) */
static int valid_chunk_ext(const uint8_t *p, const uint8_t *e)
{
    while (p < e) {
        while (p < e && is_ws(*p)) p++;
        if (p >= e || *p != ';') return 0;
        p++;
        while (p < e && is_ws(*p)) p++;
        const uint8_t *t = p;
        while (p < e && (kl_class[*p] & KL_C_TCHAR)) p++;
        if (p == t) return 0;
        const uint8_t *q = p;
        while (q < e && is_ws(*q)) q++;
        if (q < e && *q == '=') {            /* BWS "=" BWS value */
            q++;
            while (q < e && is_ws(*q)) q++;
            if (q < e && *q == '"') {
                q++;
                for (;;) {
                    if (q >= e) return 0;
                    uint8_t c = *q;
                    if (c == '"') { q++; break; }
                    if (c == '\\') {          /* quoted-pair */
                        if (q + 1 >= e) return 0;
                        uint8_t d = q[1];
                        if (!(d == '\t' || d == ' ' || (d >= 0x21 && d != 0x7f))) return 0;
                        q += 2;
                        continue;
                    }
                    if (!(c == '\t' || c == ' ' || c == 0x21 || (c >= 0x23 && c != 0x5c && c != 0x7f)))
                        return 0;
                    q++;
                }
            } else {
                const uint8_t *v = q;
                while (q < e && (kl_class[*q] & KL_C_TCHAR)) q++;
                if (q == v) return 0;
            }
            p = q;
        }
        /* else: whitespace after the name is only fine before ';' (next turn) */
    }
    return 1;
}

/* ------------------------------------------------------------------------ */
/* the head parser body, instantiated once per SIMD level                     */

enum { K_OTHER = 0, K_HOST, K_CL, K_TE, K_CONN, K_EXPECT };

KL_INLINE uint64_t ld64(const void *p) { uint64_t v; memcpy(&v, p, 8); return v; }
KL_INLINE uint32_t ld32(const void *p) { uint32_t v; memcpy(&v, p, 4); return v; }
KL_INLINE uint16_t ld16(const void *p) { uint16_t v; memcpy(&v, p, 2); return v; }
#define FOLD64 0x2020202020202020ULL
#define FOLD32 0x20202020u
#define FOLD16 0x2020u

/* ci_eq on whole words: each byte still gets |0x20 and one compare with the
   literal's byte (overlapping loads compare some bytes twice, same verdict) */
KL_INLINE int name_kind(const uint8_t *n, size_t len)
{
    switch (len) {
    case 4: return (ld32(n) | FOLD32) == ld32("host") ? K_HOST : K_OTHER;
    case 6:
        return (ld32(n) | FOLD32) == ld32("expe") && (ld16(n + 4) | FOLD16) == ld16("ct") ? K_EXPECT : K_OTHER;
    case 10:
        return (ld64(n) | FOLD64) == ld64("connecti") && (ld16(n + 8) | FOLD16) == ld16("on") ? K_CONN
                                                                                           : K_OTHER;
    case 14:
        return (ld64(n) | FOLD64) == ld64("content-") && (ld64(n + 6) | FOLD64) == ld64("t-length") ? K_CL
                                                                                               : K_OTHER;
    case 17:
        return (ld64(n) | FOLD64) == ld64("transfer") && (ld64(n + 8) | FOLD64) == ld64("-encodin") &&
                       (uint8_t)(n[16] | 0x20) == 'g'
                   ? K_TE
                   : K_OTHER;
    default: return K_OTHER;
    }
}

/* request line [s, le) (le = its CR): 0, -400 or -505 (python.py _slow_request_line) */
KL_INLINE int request_line(const uint8_t *buf, const uint8_t *s, const uint8_t *le,
                           kl_request *req, const int level)
{
    size_t m = SCAN(tchar, s, le, KL_C_TCHAR);
    if (m == 0 || s + m >= le || s[m] != ' ') return -400;
    req->method = mkspan(buf, s, s + m);
    int connect = m == 7 && memcmp(s, "CONNECT", 7) == 0;
    const uint8_t *t = s + m + 1, *te;
    req->has_query = 0;
    req->query.off = req->query.len = 0;
    if (t < le && *t == '/') {
        const uint8_t *q = t;
        for (;;) {
            q += SCAN(path, q, le, KL_C_PATH);
            if (q >= le) return -400;
            if (*q != '%') break;
            if (le - q < 3 || !is_hex(q[1]) || !is_hex(q[2])) return -400;
            q += 3;
        }
        req->path = mkspan(buf, t, q);
        if (*q == '?') {
            const uint8_t *qs = ++q;
            for (;;) {
                q += SCAN(query, q, le, KL_C_QUERY);
                if (q >= le) return -400;
                if (*q != '%') break;
                if (le - q < 3 || !is_hex(q[1]) || !is_hex(q[2])) return -400;
                q += 3;
            }
            req->query = mkspan(buf, qs, q);
            req->has_query = 1;
        }
        if (*q != ' ' || connect) return -400;
        te = q;
        req->target_form = KL_FORM_ORIGIN;
    } else {
        te = t < le ? memchr(t, ' ', (size_t)(le - t)) : NULL;
        if (!te) return -400;
        req->path = mkspan(buf, t, t);
        if (te - t == 1 && *t == '*') {
            if (!(m == 7 && memcmp(s, "OPTIONS", 7) == 0)) return -400;
            req->target_form = KL_FORM_ASTERISK;
        } else if (connect) {
            if (!valid_authority_form(t, te)) return -400;
            req->target_form = KL_FORM_AUTHORITY;
        } else {
            if (!valid_absolute_form(buf, t, te, req)) return -400;
            req->target_form = KL_FORM_ABSOLUTE;
        }
        if (!pct_ok(t, te)) return -400;
    }
    req->target = mkspan(buf, t, te);
    const uint8_t *v = te + 1;
    if (le - v != 8 || memcmp(v, "HTTP/", 5) != 0 || !is_digit(v[5]) || v[6] != '.' || !is_digit(v[7]))
        return -400;
    if (v[5] != '1') return -505;
    /* RFC 9110 2.5: HTTP/1.x with x > 1 is processed as HTTP/1.1 */
    req->version_minor = v[7] > '0' ? 1 : 0;
    return 0;
}

/* Content-Length values, all fields in order (python.py _semantics) */
static int content_length(const uint8_t *buf, const kl_request *req, const uint8_t *kinds,
                          uint32_t n, const kl_limits *lim, int64_t *out)
{
    const uint8_t *digits = NULL;
    size_t ndigits = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (kinds[i] != K_CL) continue;
        const uint8_t *p = buf + req->values[i].off, *e = p + req->values[i].len;
        for (;;) {   /* each comma-separated element */
            const uint8_t *c = memchr(p, ',', (size_t)(e - p));
            const uint8_t *ee = c ? c : e;
            const uint8_t *a = p, *b = ee;
            while (a < b && is_ws(*a)) a++;
            while (b > a && is_ws(b[-1])) b--;
            if (a == b) return -400;
            for (const uint8_t *d = a; d < b; d++)
                if (!is_digit(*d)) return -400;
            while (b - a > 1 && *a == '0') a++;
            if (!digits) {
                digits = a;
                ndigits = (size_t)(b - a);
            } else if ((size_t)(b - a) != ndigits || memcmp(a, digits, ndigits) != 0) {
                return -400;
            }
            if (!c) break;
            p = c + 1;
        }
    }
    if (ndigits > 18) return -413;
    int64_t v = 0;
    for (size_t i = 0; i < ndigits; i++) v = v * 10 + (digits[i] - '0');
    if (v > lim->max_body) return -413;
    *out = v;
    return 0;
}

/* Transfer-Encoding codings, all fields in order: 0 (chunked last), -400, -501 */
static int transfer_encoding(const uint8_t *buf, const kl_request *req, const uint8_t *kinds, uint32_t n)
{
    int ncodings = 0, nchunked = 0, last_chunked = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (kinds[i] != K_TE) continue;
        const uint8_t *p = buf + req->values[i].off, *e = p + req->values[i].len;
        for (;;) {
            const uint8_t *c = memchr(p, ',', (size_t)(e - p));
            const uint8_t *ee = c ? c : e;
            const uint8_t *a = p, *b = ee;
            while (a < b && is_ws(*a)) a++;
            while (b > a && is_ws(b[-1])) b--;
            if (a < b) {
                for (const uint8_t *d = a; d < b; d++)
                    if (!(kl_class[*d] & KL_C_TCHAR)) return -400;
                last_chunked = ci_eq(a, (size_t)(b - a), "chunked", 7);
                nchunked += last_chunked;
                ncodings++;
            }
            if (!c) break;
            p = c + 1;
        }
    }
    if (ncodings == 0 || !last_chunked || nchunked != 1) return -400;
    return ncodings > 1 ? -501 : 0;
}

/* what the field-line pass hands to the semantic checks */
typedef struct head_fields {
    uint32_t nlines;
    int nhost, ncl, nte;
    unsigned special;        /* bit k: a field of kind k was seen */
    int32_t host_i;
    const uint8_t *head_end;
} head_fields;

#if KL_HAVE_X86
/* the first byte at or after p outside the class, or NULL when every byte up
   to end is in it; fewer than 32 bytes before end are read with one load
   ending at end (the caller has end - buf >= 32), never outside [buf, end) */
static inline KL_AVX2 const uint8_t *fast_scan_nib(const uint8_t *p, const uint8_t *end, __m256i tbl,
                                                   __m256i bits)
{
    for (; end - p >= 32; p += 32) {
        unsigned m = miss32_nib(_mm256_loadu_si256((const __m256i *)p), tbl, bits);
        if (m) return p + __builtin_ctz(m);
    }
    if (p < end) {
        unsigned m = miss32_nib(_mm256_loadu_si256((const __m256i *)(end - 32)), tbl, bits) >> (32 - (end - p));
        if (m) return p + __builtin_ctz(m);
    }
    return NULL;
}

static inline KL_AVX2 const uint8_t *fast_scan_field(const uint8_t *p, const uint8_t *end)
{
    for (; end - p >= 32; p += 32) {
        unsigned m = miss32_field(_mm256_loadu_si256((const __m256i *)p));
        if (m) return p + __builtin_ctz(m);
    }
    if (p < end) {
        unsigned m = miss32_field(_mm256_loadu_si256((const __m256i *)(end - 32))) >> (32 - (end - p));
        if (m) return p + __builtin_ctz(m);
    }
    return NULL;
}

/*
 * The common head, in one lean pass: origin-form target without '%', version
 * HTTP/1.1 or HTTP/1.0, no leading CRLF, well-formed field lines, within the
 * limits, at least 32 bytes given (every load stays inside [buf, end)).  Returns 1 with the request line and
 * field spans set exactly as sections 1 and 2 of head_body set them for such a
 * head (the class scans are the same, only fewer bounds and error branches),
 * or 0: the head is anything else (or too close to the end of the bytes) and
 * the general path decides.  It never answers an error itself.
 */
static inline KL_AVX2 int fast_head_avx2(const uint8_t *buf, const uint8_t *end, const kl_limits *lim,
                                         kl_request *req, uint8_t *kinds, head_fields *f)
{
    const __m256i bits = _mm256_broadcastsi128_si256(_mm_load_si128((const __m128i *)kl_hi_bit));
    const __m256i t_tchar = _mm256_broadcastsi128_si256(_mm_load_si128((const __m128i *)kl_nib_tchar));
    const __m256i t_path = _mm256_broadcastsi128_si256(_mm_load_si128((const __m128i *)kl_nib_path));
    if (end - buf < 32) return 0;
    /* request line: method SP "/" path ["?" query] SP HTTP/1.x CRLF */
    const uint8_t *q = fast_scan_nib(buf, end, t_tchar, bits);
    if (!q || q == buf || *q != ' ') return 0;
    const size_t m = (size_t)(q - buf);
    if (m == 7 && memcmp(buf, "CONNECT", 7) == 0) return 0;
    const uint8_t *t = q + 1;
    if (t >= end || *t != '/') return 0;
    q = fast_scan_nib(t, end, t_path, bits);
    if (!q) return 0;
    req->path = mkspan(buf, t, q);
    req->has_query = 0;
    req->query.off = req->query.len = 0;
    if (*q == '?') {
        const uint8_t *qs = q + 1;
        const __m256i t_query = _mm256_broadcastsi128_si256(_mm_load_si128((const __m128i *)kl_nib_query));
        q = fast_scan_nib(qs, end, t_query, bits);
        if (!q) return 0;
        req->query = mkspan(buf, qs, q);
        req->has_query = 1;
    }
    if (*q != ' ' || end - q < 11) return 0;      /* '%' (or anything else): the general path */
    const uint8_t *v = q + 1;
    const uint64_t ver = ld64(v);
    int minor;
    if (ver == ld64("HTTP/1.1")) minor = 1;
    else if (ver == ld64("HTTP/1.0")) minor = 0;
    else return 0;
    if (v[8] != '\r' || v[9] != '\n' || (size_t)(v + 8 - buf) > lim->max_request_line) return 0;
    req->method = mkspan(buf, buf, buf + m);
    req->target = mkspan(buf, t, q);
    req->target_form = KL_FORM_ORIGIN;
    req->version_minor = (uint8_t)minor;

    /* field lines: token ":" OWS field-content CRLF, up to the empty line */
    const uint8_t *p = v + 10;
    uint32_t nlines = 0;
    for (;;) {
        if (end - p < 2) return 0;
        if (*p == '\r') {
            if (p[1] != '\n') return 0;
            f->head_end = p + 2;
            break;
        }
        const uint8_t *ne = fast_scan_nib(p, end, t_tchar, bits);
        if (!ne || ne == p || *ne != ':') return 0;
        q = ne + 1;
        q += q < end && *q == ' ';                   /* the usual single SP */
        while (q < end && is_ws(*q)) q++;
        const uint8_t *val = q;
        q = fast_scan_field(q, end);
        if (!q || end - q < 2 || q[0] != '\r' || q[1] != '\n') return 0;
        const uint8_t *ve = q;
        if (KL_UNLIKELY(ve > val && is_ws(ve[-1])))
            while (ve > val && is_ws(ve[-1])) ve--;
        if (nlines >= KL_MAX_HEADERS) return 0;
        req->names[nlines] = mkspan(buf, p, ne);
        req->values[nlines] = mkspan(buf, val, ve);
        int k = name_kind(p, (size_t)(ne - p));
        kinds[nlines] = (uint8_t)k;
        if (k) {
            f->special |= 1u << k;
            if (k == K_HOST) {
                f->nhost++;
                f->host_i = (int32_t)nlines;
            }
            f->ncl += k == K_CL;
            f->nte += k == K_TE;
        }
        nlines++;
        p = q + 2;
    }
    if ((size_t)(f->head_end - buf) > lim->max_header_bytes || nlines > lim->max_headers) return 0;
    f->nlines = nlines;
    return 1;
}
#endif

KL_INLINE int head_body(const uint8_t *buf, size_t len, const kl_limits *lim, kl_request *req,
                        const int level)
{
    const uint8_t *end = buf + len;
    const size_t max_hb = lim->max_header_bytes;
    head_fields f = {0, 0, 0, 0, 0, -1, NULL};
    uint8_t kinds[KL_MAX_HEADERS];
    int bad = 0, bare_end = 0, r;
#if KL_HAVE_X86
    if (level == KL_SIMD_AVX2) {
        if (fast_head_avx2(buf, end, lim, req, kinds, &f)) goto semantics;
        f = (head_fields){0, 0, 0, 0, 0, -1, NULL};
    }
#endif
    /* RFC 9112 2.2: empty lines before the request line are skipped, but they
       count toward the head limit (else a flood of them is "need more" forever) */
    const uint8_t *s = buf, *lead_end = buf + (len < max_hb + 1 ? len : max_hb + 1);
    while (s + 1 < lead_end && s[0] == '\r' && s[1] == '\n') s += 2;
    if ((size_t)(s - buf) >= max_hb) return -431;

    /* 1. the request line ends at the first LF; 414 as soon as it is certain */
    const size_t max_rl = lim->max_request_line;
    const size_t avail = (size_t)(end - s);
    if (avail == 0) return 0;
    const size_t lf_room = avail < max_rl + 2 ? avail : max_rl + 2;
    const uint8_t *lf = NULL;
#if KL_HAVE_X86
    /* a request line within the first 32 bytes (most are): the first LF from
       one vector compare, as memchr would find it; else memchr */
    if (level != KL_SIMD_SCALAR && lf_room >= 32) lf = first_lf_32(s);
    if (!lf)
#endif
        lf = memchr(s, '\n', lf_room);
    if (!lf) {
        if ((avail >= 1 && avail - 1 > max_rl) || (avail > max_rl && end[-1] != '\r')) return -414;
        return 0;
    }
    const int cr = lf > s && lf[-1] == '\r';
    if ((size_t)(lf - s) - (size_t)cr > max_rl) return -414;
    if (!cr) return -400;
    r = request_line(buf, s, lf - 1, req, level);
    if (r) return r;

    /* 2. field lines up to the first empty line.  Nothing past max_header_bytes
       can belong to an acceptable head, so the scan stops there. */
    const uint8_t *hend = len > max_hb ? buf + max_hb : end;
    const uint8_t *p = lf + 1, *q;
    for (;;) {
        if (KL_UNLIKELY(p >= hend)) goto incomplete;
        if (*p == '\r') {
            if (KL_UNLIKELY(p + 1 >= hend)) goto incomplete;
            if (KL_LIKELY(p[1] == '\n')) {
                f.head_end = p + 2;
                break;
            }
            bad = 1;
            q = p + 1;
            goto skip_line;
        }
        if (KL_UNLIKELY(*p == '\n')) {   /* LF LF: the head ends, on a bare LF */
            f.head_end = p + 1;
            bare_end = 1;
            break;
        }
        if (KL_UNLIKELY(bad)) {
            q = p;
            goto skip_line;
        }
        q = p + SCAN(tchar, p, hend, KL_C_TCHAR);
        if (KL_UNLIKELY(q >= hend)) goto incomplete;
        if (KL_UNLIKELY(q == p || *q != ':')) {
            bad = 1;
            goto skip_line;
        }
        {
            const uint8_t *name_e = q++;
            while (q < hend && is_ws(*q)) q++;
            const uint8_t *v = q;
            q += SCAN(field, q, hend, KL_C_FIELD);
            if (KL_UNLIKELY(q + 1 >= hend)) goto incomplete;
            if (KL_UNLIKELY(q[0] != '\r' || q[1] != '\n')) {
                bad = 1;
                q += q[0] == '\r';
                goto skip_line;
            }
            const uint8_t *ve = q;
            while (ve > v && is_ws(ve[-1])) ve--;
            if (KL_LIKELY(f.nlines < KL_MAX_HEADERS)) {
                req->names[f.nlines] = mkspan(buf, p, name_e);
                req->values[f.nlines] = mkspan(buf, v, ve);
                int k = name_kind(p, (size_t)(name_e - p));
                kinds[f.nlines] = (uint8_t)k;
                if (k) {
                    f.special |= 1u << k;
                    if (k == K_HOST) {
                        f.nhost++;
                        f.host_i = (int32_t)f.nlines;
                    }
                    f.ncl += k == K_CL;
                    f.nte += k == K_TE;
                }
            }
            f.nlines++;
            p = q + 2;
            continue;
        }
    skip_line:
        /* an invalid line: the answer is 400 unless a limit says otherwise,
           which needs the head's end; find the line's LF */
        q = memchr(q, '\n', (size_t)(hend - q));
        if (!q) goto incomplete;
        f.nlines++;
        p = q + 1;
    }

semantics:
    if ((size_t)(f.head_end - buf) > max_hb) return -431;
    if (bare_end) return -400;
    /* the tables hold KL_MAX_HEADERS lines: bounded whatever max_headers says */
    if (f.nlines > lim->max_headers || f.nlines > KL_MAX_HEADERS) return -431;
    if (bad) return -400;

    /* 3. framing and semantics, in python.py _semantics' order */
    const int minor = req->version_minor;
    if (f.nhost > 1 || (f.nhost == 0 && minor == 1)) return -400;
    int keep_alive = minor == 1, body_kind = KL_BODY_NONE, expect = 0;
    int64_t clen = -1;
    req->host.off = req->host.len = 0;
    if (f.special) {
        if (f.host_i >= 0) {
            const uint8_t *hv = buf + req->values[f.host_i].off, *he = hv + req->values[f.host_i].len;
            int ok;
#if KL_HAVE_X86
            /* a short reg-name host (the common case) in one vector step; the
               scalar check defines the verdict and takes everything else */
            if (level != KL_SIMD_SCALAR && kl_host_vec_ok && he - hv <= 16 && he - buf >= 16 &&
                (hv == he || hv[0] != '['))
                ok = host_value_16(hv, he);
            else
#endif
                ok = valid_host_value(hv, he);
            if (!ok) return -400;
            req->host = req->values[f.host_i];
        }
        if (f.ncl && f.nte) return -400;
        if (f.ncl) {
            r = content_length(buf, req, kinds, f.nlines, lim, &clen);
            if (r) return r;
            body_kind = KL_BODY_LENGTH;
        }
        if (f.nte) {
            if (minor == 0) return -400;
            r = transfer_encoding(buf, req, kinds, f.nlines);
            if (r) return r;
            body_kind = KL_BODY_CHUNKED;
        }
        /* Connection: "close" anywhere wins; HTTP/1.0 keeps alive only with
           "keep-alive" (RFC 9112 9.3) */
        int closed = 0, ka = 0;
        for (uint32_t i = 0; (f.special & (1u << K_CONN)) && i < f.nlines; i++) {
            if (kinds[i] != K_CONN) continue;
            const uint8_t *a0 = buf + req->values[i].off, *e = a0 + req->values[i].len;
            for (;;) {
                const uint8_t *c = memchr(a0, ',', (size_t)(e - a0));
                const uint8_t *a = a0, *b = c ? c : e;
                while (a < b && is_ws(*a)) a++;
                while (b > a && is_ws(b[-1])) b--;
                if (ci_eq(a, (size_t)(b - a), "close", 5)) closed = 1;
                else if (ci_eq(a, (size_t)(b - a), "keep-alive", 10)) ka = 1;
                if (!c) break;
                a0 = c + 1;
            }
        }
        if (closed) keep_alive = 0;
        else if (ka && minor == 0) keep_alive = 1;
        for (uint32_t i = 0; (f.special & (1u << K_EXPECT)) && i < f.nlines; i++) {
            if (kinds[i] != K_EXPECT) continue;
            if (!ci_eq(buf + req->values[i].off, req->values[i].len, "100-continue", 12)) return -417;
            if (minor == 1) expect = 1;
        }
    }
    req->keep_alive = (uint8_t)keep_alive;
    req->body_kind = (uint8_t)body_kind;
    req->expect_continue = (uint8_t)expect;
    req->content_length = clen;
    req->header_count = f.nlines;
    req->head_len = (uint32_t)(f.head_end - buf);
    req->status = 0;
    return (int)(f.head_end - buf);

incomplete:
    return len >= max_hb ? -431 : 0;
}

/* ------------------------------------------------------------------------ */
/* chunked bodies (python.py parse_chunked); out == NULL only validates        */

KL_INLINE int64_t chunked_body(const uint8_t *buf, size_t len, const kl_limits *lim,
                               uint8_t *out, int64_t *body_len)
{
    const uint8_t *end = buf + len, *pos = buf;
    int64_t total = 0, overhead = 0;
    for (;;) {
        size_t avail = (size_t)(end - pos);
        const uint8_t *lf = memchr(pos, '\n', avail < MAX_CHUNK_LINE + 1 ? avail : MAX_CHUNK_LINE + 1);
        if (!lf) return avail > MAX_CHUNK_LINE ? -400 : 0;
        if (lf == pos || lf[-1] != '\r') return -400;
        const uint8_t *le = lf - 1, *h = pos;
        while (h < le && is_hex(*h)) h++;
        if (h == pos) return -400;
        const uint8_t *d = pos;
        while (d < h && *d == '0') d++;
        if (h - d > 15) return -400;
        if (!valid_chunk_ext(h, le)) return -400;
        int64_t size = 0;
        for (; d < h; d++) size = (size << 4) | (int64_t)(*d <= '9' ? *d - '0' : (*d | 0x20) - 'a' + 10);
        if (size > lim->max_body - total) return -413;   /* total + size > max_body, no overflow */
        /* framing bytes (size lines, the CRLF after each chunk's data) are bounded */
        overhead += (lf + 1 - pos) + (size ? 2 : 0);
        if (overhead > KL_MAX_CHUNK_OVERHEAD && overhead > total + size) return -413;
        pos = lf + 1;
        if (size == 0) break;
        if ((uint64_t)(end - pos) < (uint64_t)size + 2) return 0;
        if (pos[size] != '\r' || pos[size + 1] != '\n') return -400;
        if (out) memmove(out + total, pos, (size_t)size);
        total += size;
        pos += size + 2;
    }
    /* trailer section: field lines up to an empty line, at most max_header_bytes */
    const uint8_t *t_start = pos;
    const size_t max_hb = lim->max_header_bytes;
    const uint8_t *tend = (size_t)(end - t_start) > max_hb ? t_start + max_hb : end;
    for (;;) {
        const uint8_t *lf = memchr(pos, '\n', (size_t)(tend - pos));
        if (!lf) return (size_t)(end - t_start) >= max_hb ? -431 : 0;
        if (lf == pos || lf[-1] != '\r') return -400;
        if (lf == pos + 1) {
            *body_len = total;
            return (int64_t)(lf + 1 - buf);
        }
        if (!valid_field_line(pos, lf - 1)) return -400;
        pos = lf + 1;
    }
}

/* ------------------------------------------------------------------------ */
/* instantiation and run-time dispatch                                         */

typedef int (*kl_head_fn)(const uint8_t *, size_t, const kl_limits *, kl_request *);

static int head_scalar(const uint8_t *buf, size_t len, const kl_limits *lim, kl_request *req)
{
    return head_body(buf, len, lim, req, KL_SIMD_SCALAR);
}
#if KL_HAVE_X86
static KL_SSE42 int head_sse42(const uint8_t *buf, size_t len, const kl_limits *lim, kl_request *req)
{
    return head_body(buf, len, lim, req, KL_SIMD_SSE42);
}
static KL_AVX2 int head_avx2(const uint8_t *buf, size_t len, const kl_limits *lim, kl_request *req)
{
    return head_body(buf, len, lim, req, KL_SIMD_AVX2);
}
#endif

typedef struct kl_impl {
    int level;
    const char *name;
    kl_head_fn head;
} kl_impl;

static const kl_impl kl_impls[3] = {
    {KL_SIMD_SCALAR, "scalar", head_scalar},
#if KL_HAVE_X86
    {KL_SIMD_SSE42, "sse42", head_sse42},
    {KL_SIMD_AVX2, "avx2", head_avx2},
#else
    {KL_SIMD_SSE42, "sse42", head_scalar},
    {KL_SIMD_AVX2, "avx2", head_scalar},
#endif
};

/* the one piece of global state: which implementation runs */
static const kl_impl *kl_active;

int kl_parser_simd_supported(int level)
{
    if (level == KL_SIMD_SCALAR) return 1;
#if KL_HAVE_X86
    __builtin_cpu_init();
    if (level == KL_SIMD_SSE42) return __builtin_cpu_supports("sse4.2") && __builtin_cpu_supports("ssse3");
    if (level == KL_SIMD_AVX2) return __builtin_cpu_supports("avx2");
#endif
    return 0;
}

const char *kl_parser_simd_name(int level)
{
    return level >= 0 && level <= 2 ? kl_impls[level].name : "unknown";
}

int kl_parser_set_simd(int level)
{
    if (level < 0 || level > 2 || !kl_parser_simd_supported(level)) return -1;
#if KL_HAVE_X86
    if (level != KL_SIMD_SCALAR) build_host_tables();   /* before the store that publishes the path */
#endif
    __atomic_store_n(&kl_active, &kl_impls[level], __ATOMIC_RELEASE);
    return level;
}

int kl_parser_init(void)
{
    int best = kl_parser_simd_supported(KL_SIMD_AVX2)    ? KL_SIMD_AVX2
               : kl_parser_simd_supported(KL_SIMD_SSE42) ? KL_SIMD_SSE42
                                                         : KL_SIMD_SCALAR;
    const char *want = getenv("KOURIER_LAB_SIMD");
    if (want && *want) {
        for (int level = 0; level <= 2; level++) {
            if (strcmp(want, kl_impls[level].name) == 0 && kl_parser_set_simd(level) == level)
                return level;
        }
        kl_parser_set_simd(best);
        return -1;
    }
    return kl_parser_set_simd(best);
}

static inline const kl_impl *active(void)
{
    const kl_impl *a = __atomic_load_n(&kl_active, __ATOMIC_ACQUIRE);
    if (KL_UNLIKELY(!a)) {
        kl_parser_init();
        a = __atomic_load_n(&kl_active, __ATOMIC_ACQUIRE);
    }
    return a;
}

int kl_parser_simd(void)
{
    return active()->level;
}

kl_head_impl_fn kl_parser_head_impl(void)
{
    return active()->head;
}

int kl_parse_head(const uint8_t *buf, size_t len, const kl_limits *limits, kl_request *req)
{
    int r = active()->head(buf, len, limits, req);
    req->status = r < 0 ? -r : 0;
    return r;
}

int kl_parse_head_at(const char *buf, size_t buflen, size_t start, size_t end,
                     const kl_limits *limits, kl_request *req)
{
    if (start > end || end > buflen) return -1;
    return kl_parse_head((const uint8_t *)buf + start, end - start, limits, req);
}

int64_t kl_decode_chunked_at(const char *buf, size_t buflen, size_t start, size_t end,
                             const kl_limits *limits, uint8_t *out, int64_t *body_len)
{
    if (start > end || end > buflen) return -1;
    return chunked_body((const uint8_t *)buf + start, end - start, limits, out, body_len);
}

int64_t kl_decode_chunked(const uint8_t *buf, size_t len, const kl_limits *limits, uint8_t *out,
                          int64_t *body_len)
{
    return chunked_body(buf, len, limits, out, body_len);
}

int64_t kl_parse_chunked(uint8_t *buf, size_t len, const kl_limits *limits, int64_t *body_len)
{
    /* validate first: an incomplete or bad body must leave buf untouched so
       the stateless re-parse on more bytes sees the original framing */
    int64_t n = chunked_body(buf, len, limits, NULL, body_len);
    if (n > 0) chunked_body(buf, (size_t)n, limits, buf, body_len);
    return n;
}

int64_t kl_parse_batch(const uint8_t *buf, size_t len, const kl_limits *limits, kl_request *req,
                       int64_t max_requests, size_t *consumed, int *last_status)
{
    kl_head_fn head = active()->head;
    size_t pos = 0;
    int64_t count = 0;
    int r = 0;
    while (count < max_requests) {
        r = head(buf + pos, len - pos, limits, req);
        if (r <= 0) break;
        pos += (size_t)r;
        count++;
        r = 0;
    }
    *consumed = pos;
    *last_status = r;
    return count;
}

/* ------------------------------------------------------------------------ */
/* batch entry point for Python callers: runs of equal head summaries (fold) */

/* the hot-path summary of a head equals run r's (spans compared as bytes) */
static int same_summary(const uint8_t *base, const kl_head_run *r, size_t pos, const kl_request *req)
{
    return r->version_minor == req->version_minor && r->keep_alive == req->keep_alive &&
           r->body_kind == req->body_kind && r->expect_continue == req->expect_continue &&
           r->has_query == req->has_query && r->content_length == req->content_length &&
           r->method.len == req->method.len && r->path.len == req->path.len &&
           r->query.len == req->query.len &&
           memcmp(base + r->method.off, base + pos + req->method.off, req->method.len) == 0 &&
           memcmp(base + r->path.off, base + pos + req->path.off, req->path.len) == 0 &&
           memcmp(base + r->query.off, base + pos + req->query.off, req->query.len) == 0;
}

int64_t kl_parse_heads_at(const char *buf, size_t buflen, size_t start, size_t end,
                          const kl_limits *limits, kl_head_run *out, int64_t max_runs,
                          int64_t max_heads, int fold)
{
    if (start > end || end > buflen) return -1;
    kl_head_fn head = active()->head;
    const uint8_t *base = (const uint8_t *)buf + start;
    size_t len = end - start, pos = 0;
    int64_t runs = 0, heads = 0;
    kl_request req;   /* scratch: only the summary leaves this function */
    while (heads < max_heads && pos < len) {
        int r = head(base + pos, len - pos, limits, &req);
        /* folding off: no head is compared with the one before it, so every
         * head is its own run and its summary comes from its own bytes */
        kl_head_run *last = fold && runs ? &out[runs - 1] : NULL;
        if (r > 0 && last && last->n == r && same_summary(base, last, pos, &req)) {
            last->count++;          /* the same n and summary: one more head in the run */
        } else {
            /* no room, or spans past what a uint32 offset holds: the caller goes on from here */
            if (runs == max_runs || pos + (size_t)(r > 0 ? r : 0) > UINT32_MAX) break;
            kl_head_run *run = &out[runs];
            run->n = r;
            run->count = 1;
            run->same_info = 0;
            if (r <= 0) {
                memset(&run->method, 0, offsetof(kl_head_run, same_info) - offsetof(kl_head_run, method));
                runs++;
                break;
            }
            run->method.off = (uint32_t)pos + req.method.off;
            run->method.len = req.method.len;
            run->path.off = (uint32_t)pos + req.path.off;
            run->path.len = req.path.len;
            run->query.off = (uint32_t)pos + req.query.off;
            run->query.len = req.query.len;
            run->content_length = req.content_length;
            run->version_minor = req.version_minor;
            run->keep_alive = req.keep_alive;
            run->body_kind = req.body_kind;
            run->expect_continue = req.expect_continue;
            run->has_query = req.has_query;
            run->same_info = last && same_summary(base, last, pos, &req);
            runs++;
        }
        heads++;
        pos += (size_t)r;
        if (req.body_kind != KL_BODY_NONE || !req.keep_alive) break;
    }
    return runs;
}

/* one field into the batch's text, SP after it */
KL_INLINE uint8_t *put_field(uint8_t *t, const uint8_t *base, kl_span span)
{
    memcpy(t, base + span.off, span.len);
    t[span.len] = ' ';
    return t + span.len + 1;
}

int64_t kl_parse_heads_cols(const char *buf, size_t buflen, size_t start, size_t end,
                            const kl_limits *limits, kl_head_cols *cols, int64_t capacity,
                            int64_t max_heads)
{
    if (start > end || end > buflen) return -1;
    kl_head_fn head = active()->head;
    const uint8_t *base = (const uint8_t *)buf + start;
    size_t len = end - start, pos = 0;
    int64_t rows = 0, with_query = 0, limit = max_heads < capacity ? max_heads : capacity;
    uint8_t *text = cols->text, *t = text;
    kl_request req;   /* scratch: only the columns leave this function */
    while (rows < limit && pos < len) {
        int r = head(base + pos, len - pos, limits, &req);
        if (r <= 0) {
            cols->n[rows++] = r;
            break;
        }
        /* no room for its fields: the caller goes on from this head */
        if ((size_t)(t - text) + req.method.len + req.path.len + req.query.len + 3 > cols->text_capacity)
            break;
        const uint8_t *h = base + pos;
        t = put_field(t, h, req.method);
        t = put_field(t, h, req.path);
        t = put_field(t, h, req.query);
        cols->n[rows] = r;
        cols->query_index[rows] = req.has_query ? (int32_t)(3 * rows + 2) : -1;
        with_query += req.has_query != 0;
        cols->content_length[rows] = req.content_length;
        cols->version_minor[rows] = req.version_minor;
        cols->keep_alive[rows] = req.keep_alive != 0;
        cols->body_kind[rows] = req.body_kind;
        cols->expect_continue[rows] = req.expect_continue != 0;
        rows++;
        pos += (size_t)r;
        if (req.body_kind != KL_BODY_NONE || !req.keep_alive) break;
    }
    cols->text_len = (size_t)(t - text);
    cols->with_query = with_query;
    return rows;
}
