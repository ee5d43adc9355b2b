/*
 * count_parser.c — the C parser alone, for exact instruction counts under
 * valgrind's callgrind (bench/profile/instructions.py builds and runs it).
 *
 * usage: count_parser SIMD ROUNDS FILE
 *   SIMD    scalar | sse42 | avx2 (the path every head is parsed on)
 *   ROUNDS  how many times the whole file is parsed
 *   FILE    pipelined request heads, back to back (one corpus)
 *
 * parse_rounds() is the function callgrind collects (--toggle-collect): it
 * parses every head of the file, one kl_parse_head call each (as a loop parses
 * a read), ROUNDS times.  Reading the file, choosing the path and printing
 * are outside it.  Prints "requests bytes" parsed; exits 1 when a head is
 * incomplete or invalid (a count of a failing parse would mean nothing).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "parser.h"

/* noinline: callgrind toggles collection on entering and leaving it */
__attribute__((noinline)) int64_t parse_rounds(const uint8_t *buf, size_t len, long rounds,
                                               const kl_limits *limits, kl_request *req)
{
    int64_t parsed = 0;
    for (long r = 0; r < rounds; r++) {
        size_t pos = 0;
        while (pos < len) {
            int n = kl_parse_head(buf + pos, len - pos, limits, req);
            if (n <= 0)
                return -1;
            pos += (size_t)n;
            parsed++;
        }
    }
    return parsed;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: count_parser scalar|sse42|avx2 ROUNDS FILE\n");
        return 2;
    }
    int level = !strcmp(argv[1], "scalar") ? KL_SIMD_SCALAR
              : !strcmp(argv[1], "sse42") ? KL_SIMD_SSE42
              : !strcmp(argv[1], "avx2") ? KL_SIMD_AVX2 : -1;
    if (level < 0 || kl_parser_set_simd(level) < 0) {
        fprintf(stderr, "count_parser: SIMD path %s is unknown or not supported by this CPU\n", argv[1]);
        return 2;
    }
    long rounds = strtol(argv[2], NULL, 10);
    FILE *f = fopen(argv[3], "rb");
    if (!f || rounds < 1) {
        fprintf(stderr, "count_parser: cannot read %s (or ROUNDS < 1)\n", argv[3]);
        return 2;
    }
    static uint8_t buf[1 << 20];
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    kl_limits limits = {8192, 16384, 100, 0, 1 << 20};
    static kl_request req;
    int64_t parsed = parse_rounds(buf, len, rounds, &limits, &req);
    if (parsed < 0) {
        fprintf(stderr, "count_parser: a head in %s did not parse\n", argv[3]);
        return 1;
    }
    printf("%lld %lld\n", (long long)parsed, (long long)len * rounds);
    return 0;
}
