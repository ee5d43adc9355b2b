/*
 * fuzz_parser.c — a standalone driver for the sanitizer build of parser.c
 * (make -C native asan / fuzz; tests/native/test_native_sanitizers.py runs it).
 *
 * For the built-in corpus, the corpus files given on the command line and a
 * deterministic random mutation pass, every input is copied into a heap block
 * of exactly its size (so AddressSanitizer sees any read past the end) and:
 *   - parsed by every SIMD path the CPU has: the answers and request tables must
 *     be identical (the scalar path defines the behaviour);
 *   - cut at prefixes: a prefix must give 0 or the whole input's answer;
 *   - decoded as a chunked body, out of place and in place: same answer, and an
 *     incomplete or bad body leaves the buffer untouched.
 * Any disagreement prints the input and exits 1; sanitizer reports abort.
 *
 * usage: fuzz_parser [-s seed] [-t seconds] [-n max_iterations] [-w seed_dir] [corpus files...]
 * A corpus file is a sequence of records: 4-byte little-endian length, bytes.
 * -w writes every corpus input as one file into seed_dir (first byte: the
 * limit set) and exits: the seed corpus of the libFuzzer build.
 *
 * Built with -DKL_LIBFUZZER (clang -fsanitize=fuzzer, make -C native libfuzzer)
 * the same checks run as a coverage-guided libFuzzer target instead.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "parser.h"

#define MAX_INPUT 8192

static const char *builtin_corpus[] = {
    "GET /hello HTTP/1.1\r\nHost: localhost:3275\r\n\r\n",
    "GET /static/js/app.min.js?v=3.14.1&lang=en-US HTTP/1.1\r\nHost: www.example.com\r\n"
    "Connection: keep-alive\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\nAccept: text/html,application/xhtml+xml,"
    "application/xml;q=0.9,*/*;q=0.8\r\nAccept-Encoding: gzip, deflate, br\r\nAccept-Language: "
    "en-US,en;q=0.9\r\nCookie: session=8f2a9c1e7b3d4f60; theme=dark\r\n\r\n",
    "GET / HTTP/1.0\r\n\r\n",
    "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: a\r\n\r\n",
    "GET /a/b%20c?x=1&y=%2F&z=/?q HTTP/1.1\r\nHost: example.com:8080\r\n\r\n",
    "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 005\r\nExpect: 100-continue\r\n\r\n",
    "POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    "POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
    "GET http://example.com:80/x?q HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
    "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    "OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nX-Obs: caf\xc3\xa9\r\nX-Empty:\r\n\r\n",
    "GET / HTTP/1.1\nHost: x\r\n\r\n",
    "GET / HTTP/2.0\r\nHost: x\r\n\r\n",
    "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    "5;name=value;flag ; q=\"a \\\" b\"\r\nhello\r\n0;last\r\nX-Trailer: abc\r\n\r\n",
    "1F\r\n0123456789012345678901234567890\r\n0\r\n\r\n",
};

static const char interesting[] = "\r\n \t:%?/#\x01\x0b\x7f\x80\xff,;\"=[]@*\\-._~!$&'()+01aAfFgGzZH";
static const char *tricky_lines[] = {
    "Host: other\r\n", "Content-Length: 5\r\n", "Content-Length: 99999999999999999999\r\n",
    "Transfer-Encoding: chunked\r\n", "Transfer-Encoding: gzip, chunked\r\n", "Connection: close\r\n",
    "Expect: 100-continue\r\n", "Expect: x\r\n", " folded\r\n", "X-A : b\r\n", "X: a\x01\r\n",
};

typedef struct {
    uint8_t *data;
    size_t len;
} input_t;

static input_t *corpus;
static size_t corpus_n, corpus_cap;
static int levels[3], nlevels;
static uint64_t rng_state;
static unsigned long long checks;

static uint64_t rnd(void)
{   /* xorshift64*: deterministic for a seed */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

static size_t rnd_below(size_t n) { return n ? (size_t)(rnd() % n) : 0; }

static void add_input(const uint8_t *d, size_t len)
{
    if (corpus_n == corpus_cap) {
        corpus_cap = corpus_cap ? 2 * corpus_cap : 64;
        corpus = realloc(corpus, corpus_cap * sizeof *corpus);
        if (!corpus) abort();
    }
    corpus[corpus_n].data = malloc(len ? len : 1);
    if (!corpus[corpus_n].data) abort();
    memcpy(corpus[corpus_n].data, d, len);
    corpus[corpus_n].len = len;
    corpus_n++;
}

static int load_corpus_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    uint8_t hdr[4];
    while (fread(hdr, 1, 4, f) == 4) {
        size_t len = (size_t)hdr[0] | (size_t)hdr[1] << 8 | (size_t)hdr[2] << 16 | (size_t)hdr[3] << 24;
        size_t skip = 0;
        if (len > MAX_INPUT) {                  /* longer records are cut, not refused */
            skip = len - MAX_INPUT;
            len = MAX_INPUT;
        }
        uint8_t *d = malloc(len ? len : 1);
        if (!d || fread(d, 1, len, f) != len || (skip && fseek(f, (long)skip, SEEK_CUR) != 0)) {
            fprintf(stderr, "%s: truncated record\n", path);
            free(d);
            fclose(f);
            return -1;
        }
        add_input(d, len);
        free(d);
    }
    fclose(f);
    return 0;
}

static void dump(const char *what, const uint8_t *d, size_t len)
{
    fprintf(stderr, "MISMATCH: %s\ninput (%zu bytes): \"", what, len);
    for (size_t i = 0; i < len; i++) {
        uint8_t c = d[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') fputc(c, stderr);
        else fprintf(stderr, "\\x%02x", c);
    }
    fprintf(stderr, "\"\n");
#ifdef KL_LIBFUZZER
    abort();   /* libFuzzer saves the input of a crash */
#else
    exit(1);
#endif
}

static int span_eq(kl_span a, kl_span b) { return a.off == b.off && a.len == b.len; }

static int req_eq(const kl_request *a, const kl_request *b)
{
    if (a->status != b->status || a->head_len != b->head_len || !span_eq(a->method, b->method) ||
        !span_eq(a->target, b->target) || !span_eq(a->path, b->path) || !span_eq(a->query, b->query) ||
        !span_eq(a->host, b->host) || a->version_minor != b->version_minor ||
        a->target_form != b->target_form || a->keep_alive != b->keep_alive ||
        a->body_kind != b->body_kind || a->expect_continue != b->expect_continue ||
        a->has_query != b->has_query || a->content_length != b->content_length ||
        a->header_count != b->header_count)
        return 0;
    for (uint32_t i = 0; i < a->header_count; i++)
        if (!span_eq(a->names[i], b->names[i]) || !span_eq(a->values[i], b->values[i])) return 0;
    return 1;
}

/* the request table's spans must lie inside the head */
static void check_spans(const kl_request *r, const uint8_t *d, size_t len)
{
    const kl_span *s[] = {&r->method, &r->target, &r->path, &r->query, &r->host};
    for (size_t i = 0; i < sizeof s / sizeof *s; i++)
        if ((uint64_t)s[i]->off + s[i]->len > r->head_len) dump("span outside the head", d, len);
    if (r->header_count > KL_MAX_HEADERS) dump("header_count", d, len);
    for (uint32_t i = 0; i < r->header_count; i++)
        if ((uint64_t)r->names[i].off + r->names[i].len > r->head_len ||
            (uint64_t)r->values[i].off + r->values[i].len > r->head_len)
            dump("field span outside the head", d, len);
}

static const kl_limits limit_sets[] = {
    {8192, 16384, 100, 0, 1 << 20},
    {64, 256, 4, 0, 1000},
    {20, 40, 1, 0, 10},
};

/* parse an exact-size copy of d[0..len) */
static int parse_exact(const uint8_t *d, size_t len, const kl_limits *lim, kl_request *req)
{
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy) abort();
    memcpy(copy, d, len);
    int r = kl_parse_head(copy, len, lim, req);
    free(copy);
    return r;
}

static void check_head(const uint8_t *d, size_t len, const kl_limits *lim, int prefixes)
{
    static kl_request ref, got;
    kl_parser_set_simd(levels[0]);
    int whole = parse_exact(d, len, lim, &ref);
    if (whole > 0) check_spans(&ref, d, len);
    if (whole > (int)len) dump("head longer than the input", d, len);
    for (int l = 1; l < nlevels; l++) {
        kl_parser_set_simd(levels[l]);
        int r = parse_exact(d, len, lim, &got);
        if (r != whole || (r > 0 && !req_eq(&ref, &got))) dump("SIMD paths disagree", d, len);
    }
    checks++;
    /* prefixes: all of them for short inputs, else a few at random */
    size_t n = prefixes ? len : 4;
    for (size_t i = 0; i < n && i < len; i++) {
        size_t k = prefixes ? i : rnd_below(len);
        for (int l = 0; l < nlevels; l++) {
            kl_parser_set_simd(levels[l]);
            int r = parse_exact(d, k, lim, &got);
            if (!(r == 0 || (r == whole && (whole < 0 || (size_t)whole <= k))))
                dump("a prefix gave a different answer", d, k);
        }
        checks++;
    }
}

static void check_chunked(const uint8_t *d, size_t len, const kl_limits *lim)
{
    uint8_t *a = malloc(len ? len : 1), *out = malloc(len ? len : 1);
    if (!a || !out) abort();
    memcpy(a, d, len);
    int64_t blen_a = -1, blen_b = -1;
    int64_t n = kl_decode_chunked(a, len, lim, out, &blen_a);
    if (memcmp(a, d, len) != 0) dump("decoder wrote its input", d, len);
    int64_t m = kl_parse_chunked(a, len, lim, &blen_b);
    if (m != n) dump("in-place and out-of-place chunked disagree", d, len);
    if (n > 0) {
        if (n > (int64_t)len || blen_a != blen_b || blen_a < 0 || blen_a > n ||
            memcmp(a, out, (size_t)blen_a) != 0 || memcmp(a + n, d + n, len - (size_t)n) != 0)
            dump("chunked body differs", d, len);
    } else if (memcmp(a, d, len) != 0) {
        dump("an incomplete or bad chunked body was modified", d, len);
    }
    /* and a validating-only pass (out == NULL) */
    int64_t blen_c = -1;
    if (kl_decode_chunked(d, len, lim, NULL, &blen_c) != n || (n > 0 && blen_c != blen_a))
        dump("validate-only chunked differs", d, len);
    free(a);
    free(out);
    checks++;
}

static size_t mutate(uint8_t *buf, size_t len)
{
    int rounds = 1 + (int)rnd_below(4);
    for (int i = 0; i < rounds; i++) {
        size_t pos = rnd_below(len + 1);
        uint8_t byte = (rnd() & 1) ? (uint8_t)interesting[rnd_below(sizeof interesting - 1)] : (uint8_t)rnd();
        switch (rnd_below(8)) {
        case 0:   /* insert a byte */
            if (len < MAX_INPUT) {
                memmove(buf + pos + 1, buf + pos, len - pos);
                buf[pos] = byte;
                len++;
            }
            break;
        case 1: { /* delete 1..3 bytes */
            size_t k = 1 + rnd_below(3);
            if (pos + k > len) k = len - pos;
            memmove(buf + pos, buf + pos + k, len - pos - k);
            len -= k;
            break;
        }
        case 2:   /* replace a byte */
            if (pos < len) buf[pos] = byte;
            break;
        case 3:   /* CRLF -> LF or CR */
            for (size_t j = pos; j + 1 < len; j++)
                if (buf[j] == '\r' && buf[j + 1] == '\n') {
                    if (rnd() & 1) buf[j] = '\n';
                    memmove(buf + j + 1, buf + j + 2, len - j - 2);
                    len--;
                    break;
                }
            break;
        case 4: { /* splice a tricky field line after an LF */
            const char *line = tricky_lines[rnd_below(sizeof tricky_lines / sizeof *tricky_lines)];
            size_t k = strlen(line);
            const uint8_t *lf = pos < len ? memchr(buf + pos, '\n', len - pos) : NULL;
            if (lf && len + k <= MAX_INPUT) {
                size_t at = (size_t)(lf - buf) + 1;
                memmove(buf + at + k, buf + at, len - at);
                memcpy(buf + at, line, k);
                len += k;
            }
            break;
        }
        case 5:   /* truncate */
            len = pos;
            break;
        case 6: { /* a run of one byte: moves content across 16/32-byte blocks */
            size_t k = 1 + rnd_below(40);
            if (len + k <= MAX_INPUT) {
                memmove(buf + pos + k, buf + pos, len - pos);
                memset(buf + pos, (rnd() & 1) ? 'a' : byte, k);
                len += k;
            }
            break;
        }
        default: { /* splice a piece of another corpus entry */
            const input_t *o = &corpus[rnd_below(corpus_n)];
            size_t from = rnd_below(o->len + 1), k = rnd_below(o->len - from + 1);
            if (len + k <= MAX_INPUT) {
                memmove(buf + pos + k, buf + pos, len - pos);
                memcpy(buf + pos, o->data + from, k);
                len += k;
            }
            break;
        }
        }
    }
    return len;
}

static void find_levels(void)
{
    nlevels = 0;
    for (int l = 0; l <= 2; l++)
        if (kl_parser_simd_supported(l)) levels[nlevels++] = l;
}

#ifdef KL_LIBFUZZER
/* first byte: the limit set; the rest: the input (as a head and as a chunked body) */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!nlevels) find_levels();
    if (size == 0 || size - 1 > MAX_INPUT) return 0;
    const kl_limits *lim = &limit_sets[data[0] % (sizeof limit_sets / sizeof *limit_sets)];
    uint64_t h = 1469598103934665603ULL;   /* the prefix choice depends on the input only */
    for (size_t i = 0; i < size; i++) h = (h ^ data[i]) * 1099511628211ULL;
    rng_state = h | 1;
    check_head(data + 1, size - 1, lim, size <= 256);
    check_chunked(data + 1, size - 1, lim);
    return 0;
}
#else
static int write_seeds(const char *dir)
{
    char path[4096];
    for (size_t k = 0; k < corpus_n; k++)
        for (unsigned l = 0; l < sizeof limit_sets / sizeof *limit_sets; l++) {
            snprintf(path, sizeof path, "%s/seed-%zu-%u", dir, k, l);
            FILE *f = fopen(path, "wb");
            if (!f) {
                perror(path);
                return 2;
            }
            uint8_t sel = (uint8_t)l;
            fwrite(&sel, 1, 1, f);
            fwrite(corpus[k].data, 1, corpus[k].len, f);
            fclose(f);
        }
    printf("wrote %zu seeds to %s\n", corpus_n * (sizeof limit_sets / sizeof *limit_sets), dir);
    return 0;
}

int main(int argc, char **argv)
{
    uint64_t seed = 1;
    double seconds = 20;
    unsigned long long max_iter = ~0ULL;
    const char *seed_dir = NULL;
    int i;
    for (i = 1; i < argc && argv[i][0] == '-'; i += 2) {
        if (i + 1 >= argc) {
            fprintf(stderr, "usage: %s [-s seed] [-t seconds] [-n iterations] [-w seed_dir] [corpus...]\n", argv[0]);
            return 2;
        }
        if (strcmp(argv[i], "-s") == 0) seed = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "-t") == 0) seconds = strtod(argv[i + 1], NULL);
        else if (strcmp(argv[i], "-n") == 0) max_iter = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "-w") == 0) seed_dir = argv[i + 1];
        else {
            fprintf(stderr, "unknown option %s\n", argv[i]);
            return 2;
        }
    }
    for (size_t k = 0; k < sizeof builtin_corpus / sizeof *builtin_corpus; k++)
        add_input((const uint8_t *)builtin_corpus[k], strlen(builtin_corpus[k]));
    for (; i < argc; i++)
        if (load_corpus_file(argv[i]) != 0) return 2;
    if (seed_dir) return write_seeds(seed_dir);
    find_levels();
    rng_state = seed * 0x9E3779B97F4A7C15ULL + 1;

    /* 1. the corpus, every prefix, every limit set */
    for (size_t k = 0; k < corpus_n; k++)
        for (size_t l = 0; l < sizeof limit_sets / sizeof *limit_sets; l++) {
            check_head(corpus[k].data, corpus[k].len, &limit_sets[l], corpus[k].len <= 2048);
            check_chunked(corpus[k].data, corpus[k].len, &limit_sets[l]);
        }
    unsigned long long corpus_checks = checks;

    /* 2. mutations, bounded by time and count */
    static uint8_t buf[MAX_INPUT];
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    unsigned long long iter = 0;
    for (; iter < max_iter; iter++) {
        if ((iter & 255) == 0) {
            clock_gettime(CLOCK_MONOTONIC, &t);
            if ((double)(t.tv_sec - t0.tv_sec) + 1e-9 * (double)(t.tv_nsec - t0.tv_nsec) >= seconds) break;
        }
        const input_t *base = &corpus[rnd_below(corpus_n)];
        memcpy(buf, base->data, base->len);
        size_t len = mutate(buf, base->len);
        const kl_limits *lim = &limit_sets[rnd_below(sizeof limit_sets / sizeof *limit_sets)];
        check_head(buf, len, lim, 0);
        check_chunked(buf, len, lim);
    }
    printf("fuzz_parser: seed %llu, simd paths %d, corpus %zu inputs (%llu checks), "
           "%llu mutations, %llu checks, no mismatch\n",
           (unsigned long long)seed, nlevels, corpus_n, corpus_checks, iter, checks);
    for (size_t k = 0; k < corpus_n; k++) free(corpus[k].data);
    free(corpus);
    return 0;
}
#endif
