/*
 * ceiling.c — the upper bound this machine and wrk allow for "Hello World!".
 *
 * It is not an HTTP server: it never parses.  It counts request terminators
 * ("\r\n\r\n", tracked across reads so a terminator split between two reads
 * still counts) and writes one canned response per terminator.  Whatever any
 * real server measures, it is shown as a fraction of this, measured in the
 * same batch on the same core split, so it must send exactly the bytes the
 * server sends and do less work per request than the server in every shape.
 *
 * The response is given on the command line (hex, so any bytes pass through
 * argv unchanged); bench/experiment/ceiling.py renders it from the server's own
 * benchmark_response().  If it has a "Date: " header, the 29-byte IMF-fixdate
 * value (RFC 7231, GMT, as the server's http_date) is rewritten each second.
 *
 * Why it is cheap:
 *   - terminators are found 32 (AVX2) or 16 (SSE2) candidate ends at a time:
 *     four shifted vector compares for '\r' '\n' '\r' '\n' and a bit mask;
 *     the last few bytes (and all of them off x86-64) by memchr('\n') plus
 *     one 4-byte compare; never a byte-by-byte loop;
 *   - one read() per readiness edge unless the read filled the buffer (a short
 *     read drained the socket; edge-triggered epoll reports new data), and
 *     one write() per read: the answers come from one block of the response
 *     replicated for as many requests as a full read buffer can hold;
 *   - EPOLLOUT stays registered (edge-triggered, it only fires after a write
 *     found the socket full) and a readiness event without EPOLLIN reads
 *     nothing, so no syscall is spent on an EAGAIN.
 * A response cut by a short write has its remainder copied to the connection,
 * so a Date rewrite of the shared block never tears a response in two.
 *
 * Shape: one process per server CPU.  Every process has its own listening
 * socket bound with SO_REUSEPORT (the kernel spreads connections among them),
 * its own epoll set, edge-triggered, non-blocking sockets, and is pinned to
 * its CPU.  Without a CPU list it is a single process on whatever CPUs it
 * inherited.  This is the same process-per-core layout as our server's
 * workers, so the comparison is like for like.
 *
 * usage: ceiling PORT [CPU,CPU,...] --response HEX    (listens on 127.0.0.1)
 *   HEX: the full response (status line, headers, body) as hex digits.
 * SIGTERM/SIGINT stop it (the parent forwards the signal to its workers).
 *
 * Build: cc -O2 -o ceiling native/ceiling.c   (the bench harness does this
 * into a cache directory, see kourier_lab/bench/experiment/ceiling.py).
 *
 * --uring: the same bytes and the same scan over io_uring instead (built with
 * -DKL_CEILING_URING -luring; the floor of the other kernel interface): one
 * multishot accept, one multishot recv per connection into a ring of provided
 * buffers, one send in flight per connection from the replicated block, and
 * one io_uring_enter per turn that submits and waits (SINGLE_ISSUER +
 * DEFER_TASKRUN).  A send the socket cannot take at once is finished by the
 * kernel from the block; a Date rewrite meanwhile changes only the Date bytes
 * still unsent, never a response's length.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#define MAX_CPUS 1024
#define MAX_RESPONSE 65536
#define RBUF_SIZE (1 << 16)
/* The most requests one full read can end: each needs its 4-byte terminator. */
#define BLOCK_RESPONSES (RBUF_SIZE / 4)
#define DATE_LEN 29                     /* "Sun, 06 Nov 1994 08:49:37 GMT" */

typedef struct conn {
    uint64_t owed;          /* whole responses still to write, after the partial one */
    char *partial;          /* remainder of a response a short write cut (own copy) */
    uint32_t partial_off;   /* bytes of it already written */
    uint32_t partial_len;   /* its length; 0: none */
    char tail[3];           /* the last 3 bytes read (a terminator may span reads) */
    uint32_t gen;           /* --uring: which connection on this descriptor a completion is for */
    uint32_t sent;          /* --uring: bytes of the send in flight already sent */
    uint64_t sending;       /* --uring: responses in the send in flight; 0: none */
    uint8_t peer_gone;      /* --uring: EOF or error seen; closed once no send is in flight */
    uint8_t guard;          /* bytes at the start of the next read that cannot end a
                               terminator (they belong to the one just counted) */
    uint8_t open;
} conn;

static conn *conns;
static size_t nconns;
static char *response;          /* the template */
static size_t response_len;
static long date_off = -1;      /* offset of the Date value in the template, -1: none */
static char *block;             /* BLOCK_RESPONSES copies of the response */
static time_t block_second = -1;
static volatile sig_atomic_t stopping;
#ifdef KL_CEILING_URING
static int use_uring;           /* --uring: serve_uring instead of serve */
#endif

static void on_stop(int sig) { (void)sig; stopping = 1; }

static conn *conn_for(int fd) {
    if ((size_t)fd >= nconns) {
        size_t n = nconns ? nconns : 1024;
        while (n <= (size_t)fd) n *= 2;
        conn *grown = realloc(conns, n * sizeof(conn));
        if (!grown) { perror("ceiling: realloc"); exit(1); }
        memset(grown + nconns, 0, (n - nconns) * sizeof(conn));
        conns = grown;
        nconns = n;
    }
    return &conns[fd];
}

static void close_conn(int fd) {
    conn *c = conn_for(fd);
    free(c->partial);
    memset(c, 0, sizeof(*c));
    close(fd);
}

/* RFC 7231 IMF-fixdate, always 29 bytes (locale-free, unlike strftime). */
static void put2(char *p, int v) { p[0] = (char)('0' + v / 10 % 10); p[1] = (char)('0' + v % 10); }

static void format_date(time_t t, char out[DATE_LEN]) {
    static const char days[] = "SunMonTueWedThuFriSat";
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    struct tm tm;
    gmtime_r(&t, &tm);
    int year = tm.tm_year + 1900;
    memcpy(out, "Sun, 00 Jan 0000 00:00:00 GMT", DATE_LEN);
    memcpy(out, days + 3 * tm.tm_wday, 3);
    put2(out + 5, tm.tm_mday);
    memcpy(out + 8, months + 3 * tm.tm_mon, 3);
    put2(out + 12, year / 100);
    put2(out + 14, year % 100);
    put2(out + 17, tm.tm_hour);
    put2(out + 20, tm.tm_min);
    put2(out + 23, tm.tm_sec);
}

/* Once a second: the current Date into every copy of the response. */
static void refresh_date(void) {
    if (date_off < 0) return;
    time_t now = time(NULL);
    if (now == block_second) return;
    block_second = now;
    char d[DATE_LEN];
    format_date(now, d);
    for (size_t i = 0; i < BLOCK_RESPONSES; i++)
        memcpy(block + i * response_len + date_off, d, DATE_LEN);
}

static const uint32_t TERMINATOR = 0x0a0d0a0du;   /* "\r\n\r\n" read little-endian */

static uint32_t load4(const char *p) { uint32_t v; memcpy(&v, p, 4); return v; }

#if defined(__x86_64__) && defined(__GNUC__)
/* Vector scans over candidate ends i.. (buf holds the 3 bytes before i): a
 * terminator ends at i when buf[i-3..i] is "\r\n\r\n", found with four shifted
 * compares per vector, counted in order so that none overlaps the one before.
 * They return where they stopped (fewer than a vector of ends left). */
#define SCAN_BODY(VEC, LOAD, SET1, CMPEQ, AND, MOVEMASK, WIDTH)                        \
    const VEC cr = SET1('\r'), lf = SET1('\n');                                         \
    for (; i + WIDTH <= n; i += WIDTH) {                                                \
        const char *q = buf + i;                                                        \
        VEC hit = AND(AND(CMPEQ(LOAD((const VEC *)q), lf), CMPEQ(LOAD((const VEC *)(q - 1)), cr)), \
                      AND(CMPEQ(LOAD((const VEC *)(q - 2)), lf), CMPEQ(LOAD((const VEC *)(q - 3)), cr))); \
        unsigned mask = (unsigned)MOVEMASK(hit);                                        \
        while (mask) {                                                                  \
            size_t at = i + (size_t)__builtin_ctz(mask);                                \
            mask &= mask - 1;                                                           \
            if (at >= *next_ok) { ++*found; *next_ok = at + 4; }                        \
        }                                                                               \
    }                                                                                   \
    return i;

static size_t scan_sse2(const char *buf, size_t n, size_t i, size_t *next_ok, uint64_t *found) {
    SCAN_BODY(__m128i, _mm_loadu_si128, _mm_set1_epi8, _mm_cmpeq_epi8, _mm_and_si128,
              _mm_movemask_epi8, 16)
}

__attribute__((target("avx2")))
static size_t scan_avx2(const char *buf, size_t n, size_t i, size_t *next_ok, uint64_t *found) {
    SCAN_BODY(__m256i, _mm256_loadu_si256, _mm256_set1_epi8, _mm256_cmpeq_epi8, _mm256_and_si256,
              _mm256_movemask_epi8, 32)
}

static int have_avx2;       /* set once in main (cpuid) */
#endif

/* Count terminators in buf.  A terminator ends at a '\n' preceded by "\r\n\r";
 * terminators never overlap (after one, four new bytes are needed), as in a
 * byte-by-byte state machine.  The last 3 bytes and the overlap guard carry
 * over to the next read. */
static uint64_t count_terminators(conn *c, const char *buf, size_t n) {
    uint64_t found = 0;
    size_t next_ok = c->guard;          /* the first index a terminator may end at */
    /* Terminators ending in the first 3 bytes use the carried tail. */
    char head[6];
    size_t nh = n < 3 ? n : 3;
    memcpy(head, c->tail, 3);
    memcpy(head + 3, buf, nh);
    for (size_t i = next_ok; i < nh; i++) {
        if (load4(head + i) == TERMINATOR) { found++; next_ok = i + 4; i += 3; }
    }
    size_t i = next_ok > 3 ? next_ok : 3;  /* from here buf holds the 3 bytes before i */
#if defined(__x86_64__) && defined(__GNUC__)
    i = have_avx2 ? scan_avx2(buf, n, i, &next_ok, &found) : scan_sse2(buf, n, i, &next_ok, &found);
#endif
    /* The rest (all of it off x86-64): memchr for '\n', then the 3 bytes before. */
    const char *p = buf + (i > next_ok ? i : next_ok);
    const char *end = buf + n;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) break;
        if (load4(nl - 3) == TERMINATOR) {
            found++;
            next_ok = (size_t)(nl - buf) + 4;
            p = nl + 4;
        } else {
            p = nl + 1;
        }
    }
    c->guard = (uint8_t)(next_ok > n ? next_ok - n : 0);
    if (n >= 3) memcpy(c->tail, end - 3, 3);
    else memcpy(c->tail, head + nh, 3);     /* the last 3 of tail+buf */
    return found;
}

/* Write what is owed until done or the socket is full; returns -1 to close.
 * One write (writev with a partial remainder in front) per call unless the
 * block was not enough for everything owed. */
static int flush_conn(int fd, conn *c) {
    while (c->owed || c->partial_len) {
        uint64_t k = c->owed < BLOCK_RESPONSES ? c->owed : BLOCK_RESPONSES;
        size_t whole = (size_t)k * response_len;
        size_t plen = c->partial_len - c->partial_off;
        ssize_t w;
        if (plen) {
            struct iovec iov[2] = {{c->partial + c->partial_off, plen}, {block, whole}};
            w = writev(fd, iov, whole ? 2 : 1);
        } else {
            w = write(fd, block, whole);
        }
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
            if (errno == EINTR) continue;
            return -1;
        }
        size_t done = (size_t)w;
        if (plen) {
            size_t from_partial = done < plen ? done : plen;
            c->partial_off += (uint32_t)from_partial;
            done -= from_partial;
            if (c->partial_off == c->partial_len) c->partial_len = c->partial_off = 0;
        }
        c->owed -= done / response_len;
        size_t cut = done % response_len;
        if (cut) {
            /* Keep the rest of the cut response as written so far (same Date). */
            if (!c->partial && !(c->partial = malloc(response_len))) return -1;
            memcpy(c->partial, block, response_len);
            c->partial_off = (uint32_t)cut;
            c->partial_len = (uint32_t)response_len;
            c->owed--;
        }
        if ((size_t)w < plen + whole) return 0;     /* the socket is full: EPOLLOUT resumes */
    }
    return 0;
}

/* The IPv4 address to listen on: loopback unless --address (a server host of
 * a two-machine run listens where its clients dial). */
static struct in_addr listen_addr = {0};

static int listen_on(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0) { perror("ceiling: socket"); exit(1); }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) {
        perror("ceiling: SO_REUSEPORT"); exit(1);
    }
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr = listen_addr;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) { perror("ceiling: bind"); exit(1); }
    if (listen(fd, 4096) < 0) { perror("ceiling: listen"); exit(1); }
    return fd;
}

static void serve(int port) {
    int lfd = listen_on(port);
    int ep = epoll_create1(0);
    if (ep < 0) { perror("ceiling: epoll_create1"); exit(1); }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.fd = lfd};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    struct epoll_event events[512];
    static char rbuf[RBUF_SIZE];

    while (!stopping) {
        int n = epoll_wait(ep, events, 512, 500);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("ceiling: epoll_wait"); exit(1);
        }
        refresh_date();
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            uint32_t e = events[i].events;
            if (fd == lfd) {
                for (;;) {
                    int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
                    if (cfd < 0) break;   /* EAGAIN, or a transient error: next event */
                    int one = 1;
                    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    conn *c = conn_for(cfd);
                    memset(c, 0, sizeof(*c));
                    c->open = 1;
                    struct epoll_event cev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                              .data.fd = cfd};
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &cev) < 0) close_conn(cfd);
                }
                continue;
            }
            conn *c = conn_for(fd);
            if (!c->open) continue;
            int closing = (e & (EPOLLERR | EPOLLHUP)) != 0;
            /* After the peer's FIN no new edge comes: read on to the end. */
            int to_eof = (e & EPOLLRDHUP) != 0;
            while (!closing && (e & (EPOLLIN | EPOLLRDHUP))) {
                ssize_t r = read(fd, rbuf, sizeof rbuf);
                if (r > 0) {
                    c->owed += count_terminators(c, rbuf, (size_t)r);
                    if (flush_conn(fd, c) < 0) closing = 1;
                    if ((size_t)r < sizeof rbuf && !to_eof) break;   /* drained */
                    continue;
                }
                if (r == 0) closing = 1;
                else if (errno == EINTR) continue;
                else if (errno != EAGAIN && errno != EWOULDBLOCK) closing = 1;
                break;
            }
            /* Socket space freed; a read above has already written what it could. */
            if (!closing && !(e & (EPOLLIN | EPOLLRDHUP)) && (e & EPOLLOUT)
                && (c->owed || c->partial_len) && flush_conn(fd, c) < 0)
                closing = 1;
            if (closing) close_conn(fd);
        }
    }
}

#ifdef KL_CEILING_URING
#include <liburing.h>

#define U_BUFS 256                      /* provided buffers (a power of two) */
#define U_BUF_SIZE 16384
enum { U_ACCEPT = 1, U_RECV = 2, U_SEND = 3, U_IGNORE = 4 };

static struct io_uring uring;
static struct io_uring_buf_ring *ubr;
static char *ubufs;
static unsigned uadded;
static uint32_t ugen;

static inline uint64_t u_data(int op, int fd, uint32_t gen) {
    return (uint64_t)gen << 32 | (uint64_t)op << 28 | (uint32_t)fd;
}

static struct io_uring_sqe *u_sqe(void) {
    struct io_uring_sqe *sqe;
    while (!(sqe = io_uring_get_sqe(&uring))) io_uring_submit(&uring);
    return sqe;
}

static void u_give(unsigned bid) {
    io_uring_buf_ring_add(ubr, ubufs + (size_t)bid * U_BUF_SIZE, U_BUF_SIZE, (unsigned short)bid,
                          io_uring_buf_ring_mask(U_BUFS), (int)uadded++);
}

static void u_accept(int lfd) {
    struct io_uring_sqe *sqe = u_sqe();
    io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, SOCK_NONBLOCK);
    io_uring_sqe_set_data64(sqe, u_data(U_ACCEPT, lfd, 0));
}

static void u_recv(int fd, conn *c) {
    struct io_uring_sqe *sqe = u_sqe();
    io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = 0;
    io_uring_sqe_set_data64(sqe, u_data(U_RECV, fd, c->gen));
}

/* What is owed, from the block, unless a send is in flight (its completion sends on). */
static void u_send(int fd, conn *c) {
    if (c->sending || !c->owed) return;
    c->sending = c->owed < BLOCK_RESPONSES ? c->owed : BLOCK_RESPONSES;
    c->sent = 0;
    struct io_uring_sqe *sqe = u_sqe();
    io_uring_prep_send(sqe, fd, block, (size_t)c->sending * response_len, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, u_data(U_SEND, fd, c->gen));
}

static void u_close(int fd, conn *c) {
    struct io_uring_sqe *sqe = u_sqe();
    io_uring_prep_cancel64(sqe, u_data(U_RECV, fd, c->gen), 0);
    io_uring_sqe_set_data64(sqe, u_data(U_IGNORE, 0, 0));
    io_uring_submit(&uring);            /* issued before the descriptor can be reused */
    close_conn(fd);
}

static void serve_uring(int port) {
    int lfd = listen_on(port);
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    p.cq_entries = 16384;
    int rc = io_uring_queue_init_params(4096, &uring, &p);
    if (rc < 0) { fprintf(stderr, "ceiling: io_uring_setup: %s\n", strerror(-rc)); exit(1); }
    io_uring_register_ring_fd(&uring);
    ubr = mmap(NULL, U_BUFS * sizeof(struct io_uring_buf), PROT_READ | PROT_WRITE,
               MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    ubufs = malloc((size_t)U_BUFS * U_BUF_SIZE);
    if (ubr == MAP_FAILED || !ubufs) { perror("ceiling: buffers"); exit(1); }
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof reg);
    reg.ring_addr = (uint64_t)(uintptr_t)ubr;
    reg.ring_entries = U_BUFS;
    if ((rc = io_uring_register_buf_ring(&uring, &reg, 0)) < 0) {
        fprintf(stderr, "ceiling: provided buffer ring: %s\n", strerror(-rc)); exit(1);
    }
    io_uring_buf_ring_init(ubr);
    for (unsigned i = 0; i < U_BUFS; i++) u_give(i);
    io_uring_buf_ring_advance(ubr, (int)uadded);
    uadded = 0;
    u_accept(lfd);
    while (!stopping) {
        struct io_uring_cqe *cqe;
        struct __kernel_timespec ts = {0, 500000000};
        rc = io_uring_submit_and_wait_timeout(&uring, &cqe, 1, &ts, NULL);
        if (rc < 0 && rc != -ETIME && rc != -EINTR) {
            fprintf(stderr, "ceiling: io_uring_enter: %s\n", strerror(-rc)); exit(1);
        }
        refresh_date();
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&uring, head, cqe) {
            seen++;
            uint64_t ud = io_uring_cqe_get_data64(cqe);
            int op = (int)(ud >> 28 & 15), fd = (int)(ud & 0x0fffffff);
            uint32_t gen = (uint32_t)(ud >> 32);
            int more = (cqe->flags & IORING_CQE_F_MORE) != 0, res = cqe->res;
            if (op == U_ACCEPT) {
                if (!more) u_accept(lfd);
                if (res < 0) continue;
                int one = 1;
                setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                conn *c = conn_for(res);
                memset(c, 0, sizeof(*c));
                c->open = 1;
                c->gen = ++ugen;
                u_recv(res, c);
                continue;
            }
            if (op == U_IGNORE) continue;
            conn *c = conn_for(fd);
            int mine = c->open && c->gen == gen;
            if (op == U_RECV) {
                if (cqe->flags & IORING_CQE_F_BUFFER) {
                    unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
                    if (mine && res > 0) c->owed += count_terminators(c, ubufs + (size_t)bid * U_BUF_SIZE, (size_t)res);
                    u_give(bid);
                }
                if (!mine) continue;
                if (res > 0) {
                    u_send(fd, c);
                    if (!more) u_recv(fd, c);
                } else if (res == -ENOBUFS) {
                    u_recv(fd, c);
                } else {
                    c->peer_gone = 1;   /* EOF or error: closed once no send is in flight */
                    if (!c->sending) u_close(fd, c);
                }
                continue;
            }
            if (!mine) continue;       /* U_SEND */
            if (res < 0) { u_close(fd, c); continue; }
            c->sent += (uint32_t)res;
            size_t want = (size_t)c->sending * response_len;
            if (c->sent < want) {       /* the rest of the block, from where the socket stopped */
                struct io_uring_sqe *sqe = u_sqe();
                io_uring_prep_send(sqe, fd, block + c->sent, want - c->sent, MSG_NOSIGNAL);
                io_uring_sqe_set_data64(sqe, u_data(U_SEND, fd, c->gen));
                continue;
            }
            c->owed -= c->sending;
            c->sending = 0;
            if (c->peer_gone) u_close(fd, c);
            else u_send(fd, c);
        }
        io_uring_cq_advance(&uring, seen);
        if (uadded) { io_uring_buf_ring_advance(ubr, (int)uadded); uadded = 0; }
    }
}
#endif

static void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) < 0) perror("ceiling: sched_setaffinity");
}

static int hex_digit(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* The template from hex; finds its Date value.  Returns 0, or -1 with a message. */
static int set_response(const char *hex) {
    size_t nhex = strlen(hex);
    if (nhex == 0 || nhex % 2 || nhex / 2 > MAX_RESPONSE) {
        fprintf(stderr, "ceiling: --response needs an even number of hex digits "
                        "(1 to %d bytes)\n", MAX_RESPONSE);
        return -1;
    }
    response_len = nhex / 2;
    response = malloc(response_len);
    if (!response) { perror("ceiling: malloc"); return -1; }
    for (size_t i = 0; i < response_len; i++) {
        int hi = hex_digit(hex[2 * i]), lo = hex_digit(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) { fprintf(stderr, "ceiling: --response is not hex\n"); return -1; }
        response[i] = (char)(hi << 4 | lo);
    }
    const char *d = memmem(response, response_len, "\r\nDate: ", 8);
    if (d) {
        date_off = (d - response) + 8;
        if ((size_t)date_off + DATE_LEN + 2 > response_len
            || memcmp(response + date_off + DATE_LEN, "\r\n", 2) != 0) {
            fprintf(stderr, "ceiling: the response's Date value is not %d bytes\n", DATE_LEN);
            return -1;
        }
    }
    block = malloc(BLOCK_RESPONSES * response_len);
    if (!block) { perror("ceiling: malloc"); return -1; }
    for (size_t i = 0; i < BLOCK_RESPONSES; i++)
        memcpy(block + i * response_len, response, response_len);
    refresh_date();
    return 0;
}

static int usage(const char *argv0) {
    fprintf(stderr, "usage: %s PORT [CPU,CPU,...] --response HEX [--address IPV4] [--uring]\n", argv0);
    return 2;
}

int main(int argc, char **argv) {
    const char *port_arg = NULL, *cpus_arg = NULL, *hex = NULL;
    listen_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--response") == 0) {
            if (++i == argc) return usage(argv[0]);
            hex = argv[i];
        } else if (strcmp(argv[i], "--address") == 0) {
            if (++i == argc) return usage(argv[0]);
            if (inet_pton(AF_INET, argv[i], &listen_addr) != 1) {
                fprintf(stderr, "ceiling: --address %s is not an IPv4 address\n", argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--uring") == 0) {
#ifdef KL_CEILING_URING
            use_uring = 1;
#else
            fprintf(stderr, "ceiling: --uring: built without liburing (install liburing-dev)\n");
            return 2;
#endif
        } else if (!port_arg) port_arg = argv[i];
        else if (!cpus_arg) cpus_arg = argv[i];
        else return usage(argv[0]);
    }
    if (!port_arg || !hex) return usage(argv[0]);
    char *end;
    long port = strtol(port_arg, &end, 10);
    if (*end || port <= 0 || port > 65535) {
        fprintf(stderr, "ceiling: bad port %s\n", port_arg);
        return 2;
    }
#if defined(__x86_64__) && defined(__GNUC__)
    have_avx2 = __builtin_cpu_supports("avx2");
#endif
    if (set_response(hex) < 0) return 2;
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    void (*serve_port)(int) = serve;
#ifdef KL_CEILING_URING
    if (use_uring) serve_port = serve_uring;
#endif
    if (!cpus_arg) { serve_port((int)port); return 0; }

    int cpus[MAX_CPUS], ncpus = 0;
    char *list = strdup(cpus_arg);
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        long cpu = strtol(tok, &end, 10);
        if (*end || cpu < 0 || cpu >= CPU_SETSIZE || ncpus == MAX_CPUS) {
            fprintf(stderr, "ceiling: bad CPU list entry %s\n", tok);
            return 2;
        }
        cpus[ncpus++] = (int)cpu;
    }
    if (ncpus == 0) { fprintf(stderr, "ceiling: empty CPU list\n"); return 2; }
    pid_t kids[MAX_CPUS];
    pid_t parent = getpid();
    for (int i = 0; i < ncpus; i++) {
        pid_t pid = fork();
        if (pid < 0) { perror("ceiling: fork"); return 1; }
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGTERM);     /* never outlive the parent */
            if (getppid() != parent) return 0;
            pin(cpus[i]);
            serve_port((int)port);
            return 0;
        }
        kids[i] = pid;
    }
    while (!stopping) pause();
    for (int i = 0; i < ncpus; i++) kill(kids[i], SIGTERM);
    for (int i = 0; i < ncpus; i++) waitpid(kids[i], NULL, 0);
    return 0;
}
