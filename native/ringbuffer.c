/*
 * ringbuffer.c — the C buffer variant: a read ring whose readable bytes are
 * always one contiguous span, and a write buffer that gathers a batch's
 * responses for one send.
 *
 * Why not the memfd double-mapping ("magic ring") trick?  It makes wrapped
 * data contiguous for free, but costs memfd_create + ftruncate + three mmaps
 * per connection (and again per growth), page-granular sizes and two virtual
 * mappings per buffer — while the copy it saves is small here: HTTP readers
 * consume whole requests, so what is left at the end of the buffer is at most
 * one partial request.  This ring slides that remainder to the front when the
 * room at the end falls under 1/8 of the capacity (a memmove of a few hundred
 * bytes, rare: after a read that filled the buffer), grows by doubling up to
 * the limit, and never hands the parser two spans.
 *
 * Memory is owned by the caller: kl_ring_want() / kl_wbuf_want() return the
 * capacity of a new block when one is needed, kl_*_move() copies the data to
 * the front of the new block.  The C loop uses malloc; the Python wrapper
 * uses bytearrays so that views stay valid (and contiguous() is zero-copy).
 */
#include <string.h>
#include "loop.h"

void kl_ring_init(kl_ring *r, uint8_t *mem, size_t cap, size_t limit)
{
    r->data = mem;
    r->cap = cap;
    r->head = r->tail = 0;
    r->limit = limit;
}

/* Make [tail, cap) the free span.  Returns 0 when it is ready (empty only when
 * the buffer holds `limit` bytes), else the capacity of the bigger block the
 * caller must hand to kl_ring_move(). */
size_t kl_ring_want(kl_ring *r)
{
    if (!r->cap)                  /* no memory yet (an idle connection's ring) */
        return r->limit < 256 ? r->limit : 256;
    size_t min_room = r->cap >> 3 ? r->cap >> 3 : 1;
    size_t room = r->cap - r->tail;
    if (room >= min_room)
        return 0;
    size_t len = r->tail - r->head;
    if (r->head && (r->cap - len >= min_room || r->cap >= r->limit)) {
        memmove(r->data, r->data + r->head, len);
        r->head = 0;
        r->tail = len;
        if (r->cap - len >= min_room)
            return 0;
    }
    if (r->cap < r->limit)
        return r->cap * 2 < r->limit ? r->cap * 2 : r->limit;
    return 0;
}

void kl_ring_move(kl_ring *r, uint8_t *mem, size_t cap)
{
    size_t len = r->tail - r->head;
    memcpy(mem, r->data + r->head, len);
    r->data = mem;
    r->cap = cap;
    r->head = 0;
    r->tail = len;
}

int kl_ring_commit(kl_ring *r, size_t n)
{
    if (n > r->cap - r->tail)
        return -1;
    r->tail += n;
    return 0;
}

int kl_ring_consume(kl_ring *r, size_t n)
{
    if (n > r->tail - r->head)
        return -1;
    r->head += n;
    if (r->head == r->tail)
        r->head = r->tail = 0;    /* empty: reads start at 0 again */
    return 0;
}

void kl_wbuf_init(kl_wbuf *w, uint8_t *mem, size_t cap, size_t limit)
{
    w->data = mem;
    w->cap = cap;
    w->start = w->end = 0;
    w->limit = limit;
}

/* Room for n more bytes: 0 when there is (possibly after sliding the pending
 * bytes to the front), else the capacity of the block to hand to kl_wbuf_move(). */
size_t kl_wbuf_want(kl_wbuf *w, size_t n)
{
    if (w->cap - w->end >= n)
        return 0;
    size_t len = w->end - w->start;
    if (w->start && w->cap - len >= n && len <= w->cap / 2) {
        memmove(w->data, w->data + w->start, len);
        w->start = 0;
        w->end = len;
        return 0;
    }
    size_t cap = w->cap * 2;
    if (cap < len + n)
        cap = len + n;
    if (cap < 4096)
        cap = 4096;
    return cap;
}

void kl_wbuf_move(kl_wbuf *w, uint8_t *mem, size_t cap)
{
    size_t len = w->end - w->start;
    if (len)
        memcpy(mem, w->data + w->start, len);
    w->data = mem;
    w->cap = cap;
    w->start = 0;
    w->end = len;
}

/* Append n bytes; the caller made room with kl_wbuf_want(). */
void kl_wbuf_put(kl_wbuf *w, const char *src, size_t n)
{
    if (!n)
        return;                 /* an empty buffer may have no memory yet */
    memcpy(w->data + w->end, src, n);
    w->end += n;
}

int kl_wbuf_consume(kl_wbuf *w, size_t n)
{
    if (n > w->end - w->start)
        return -1;
    w->start += n;
    if (w->start == w->end)
        w->start = w->end = 0;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* One crossing per call for the Python wrapper (buffers/c.py): each cffi call
 * and each struct field read from Python costs about as much as the work. */

/* consume n bytes; 1 when that emptied the ring (which then holds no memory:
 * the caller drops its block), 0 when bytes remain, -1 when fewer than n were
 * readable */
int kl_ring_done(kl_ring *r, size_t n)
{
    if (kl_ring_consume(r, n))
        return -1;
    if (r->tail)
        return 0;
    kl_ring_init(r, NULL, 0, r->limit);
    return 1;
}

/* an empty ring takes a block of cap bytes (the limit stays) */
void kl_ring_adopt(kl_ring *r, uint8_t *mem, size_t cap)
{
    kl_ring_init(r, mem, cap, r->limit);
}

/* no memory (an idle connection's ring); the limit stays */
void kl_ring_drop(kl_ring *r)
{
    kl_ring_init(r, NULL, 0, r->limit);
}

/* append n bytes when they fit (0), else the capacity of the block to hand to
 * kl_wbuf_move() before kl_wbuf_put() */
size_t kl_wbuf_append(kl_wbuf *w, const char *src, size_t n)
{
    size_t want = kl_wbuf_want(w, n);
    if (!want)
        kl_wbuf_put(w, src, n);
    return want;
}

/* the block kl_wbuf_append() asked for, then the n bytes it could not take */
void kl_wbuf_grow_put(kl_wbuf *w, uint8_t *mem, size_t cap, const char *src, size_t n)
{
    kl_wbuf_move(w, mem, cap);
    kl_wbuf_put(w, src, n);
}

/* n bytes were sent; 1 when all are (the buffer then holds no memory: the
 * caller drops its block), 0 when some remain, -1 when fewer than n were
 * pending */
int kl_wbuf_sent(kl_wbuf *w, size_t n)
{
    if (kl_wbuf_consume(w, n))
        return -1;
    if (w->end || !w->cap)
        return 0;
    kl_wbuf_init(w, NULL, 0, w->limit);
    return 1;
}

void kl_wbuf_drop(kl_wbuf *w)
{
    kl_wbuf_init(w, NULL, 0, w->limit);
}
