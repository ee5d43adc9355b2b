/*
 * ceiling.c — the upper bound this machine and wrk allow for "Hello World!".
 *
 * It is not an HTTP server: it never parses.  It counts request terminators
 * ("\r\n\r\n", tracked across reads so a terminator split between two reads
 * still counts) and writes one canned 200 response per terminator.  Whatever
 * any real server measures, it is shown as a fraction of this, measured in
 * the same batch on the same core split.
 *
 * Shape: one process per server CPU.  Every process has its own listening
 * socket bound with SO_REUSEPORT (the kernel spreads connections among them),
 * its own epoll set, edge-triggered, non-blocking sockets, and is pinned to
 * its CPU.  Without a CPU list it is a single process on whatever CPUs it
 * inherited.  This is the same process-per-core layout as our server's
 * workers, so the comparison is like for like.
 *
 * usage: ceiling PORT [CPU,CPU,...]   (listens on 127.0.0.1)
 * SIGTERM/SIGINT stop it (the parent forwards the signal to its workers).
 *
 * Build: cc -O2 -o ceiling native/ceiling.c   (the bench harness does this
 * into a cache directory, see kourier_lab/bench/ceiling.py).
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
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static const char RESPONSE[] =
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Length: 12\r\n"
    "\r\n"
    "Hello World!";
#define RESPONSE_LEN (sizeof(RESPONSE) - 1)
/* Responses written per write() at most: a 256-deep pipelined batch in one go. */
#define BATCH 256
#define MAX_CPUS 1024

typedef struct conn {
    uint64_t owed;       /* responses still to write */
    uint32_t offset;     /* bytes of the first owed response already written */
    uint8_t matched;     /* how much of "\r\n\r\n" the last bytes read matched */
    uint8_t open;
} conn;

static conn *conns;
static size_t nconns;
static char canned[BATCH * RESPONSE_LEN];
static volatile sig_atomic_t stopping;

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
    memset(c, 0, sizeof(*c));
    close(fd);
}

/* Count terminators in buf, carrying a partial match over from the last read. */
static uint64_t count_terminators(conn *c, const char *buf, ssize_t n) {
    uint64_t found = 0;
    uint8_t m = c->matched;
    for (ssize_t i = 0; i < n; i++) {
        char ch = buf[i];
        if (ch == '\r') m = (m == 2) ? 3 : 1;
        else if (ch == '\n' && (m == 1 || m == 3)) {
            if (m == 3) { found++; m = 0; } else m = 2;
        } else m = 0;
    }
    c->matched = m;
    return found;
}

/* Write what is owed until done or the socket is full; returns -1 to close. */
static int flush_conn(int fd, conn *c) {
    while (c->owed) {
        uint64_t k = c->owed < BATCH ? c->owed : BATCH;
        size_t len = k * RESPONSE_LEN - c->offset;
        ssize_t w = write(fd, canned + c->offset, len);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
            if (errno == EINTR) continue;
            return -1;
        }
        uint64_t total = (uint64_t)c->offset + (uint64_t)w;
        c->owed -= total / RESPONSE_LEN;
        c->offset = (uint32_t)(total % RESPONSE_LEN);
    }
    return 0;
}

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
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
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
    static char rbuf[1 << 16];

    while (!stopping) {
        int n = epoll_wait(ep, events, 512, 500);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("ceiling: epoll_wait"); exit(1);
        }
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
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
            int closing = (events[i].events & (EPOLLERR | EPOLLHUP)) != 0;
            /* Edge-triggered: drain the socket, answering as we go. */
            while (!closing) {
                ssize_t r = read(fd, rbuf, sizeof rbuf);
                if (r > 0) {
                    c->owed += count_terminators(c, rbuf, r);
                    if (flush_conn(fd, c) < 0) closing = 1;
                    continue;
                }
                if (r == 0) closing = 1;
                else if (errno == EINTR) continue;
                else if (errno != EAGAIN && errno != EWOULDBLOCK) closing = 1;
                break;
            }
            if (!closing && flush_conn(fd, c) < 0) closing = 1;
            if (closing) close_conn(fd);
        }
    }
}

static void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) < 0) perror("ceiling: sched_setaffinity");
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s PORT [CPU,CPU,...]\n", argv[0]);
        return 2;
    }
    char *end;
    long port = strtol(argv[1], &end, 10);
    if (*end || port <= 0 || port > 65535) {
        fprintf(stderr, "ceiling: bad port %s\n", argv[1]);
        return 2;
    }
    for (size_t i = 0; i < BATCH; i++) memcpy(canned + i * RESPONSE_LEN, RESPONSE, RESPONSE_LEN);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    if (argc == 2) { serve((int)port); return 0; }

    int cpus[MAX_CPUS], ncpus = 0;
    for (char *tok = strtok(argv[2], ","); tok; tok = strtok(NULL, ",")) {
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
            serve((int)port);
            return 0;
        }
        kids[i] = pid;
    }
    while (!stopping) pause();
    for (int i = 0; i < ncpus; i++) kill(kids[i], SIGTERM);
    for (int i = 0; i < ncpus; i++) waitpid(kids[i], NULL, 0);
    return 0;
}
