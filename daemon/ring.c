/* ring.c — the capture -> worker frame ring: single producer, single
 * consumer, lock free, in the style of ck_ring / DPDK rte_ring.
 *
 * head and tail are free-running 32-bit counters (unsigned wrap-around keeps
 * tail - head right) masked by the power-of-two size.  The producer owns tail
 * and the consumer head, each on its own cache line.  The producer keeps a
 * private copy of head and reads the consumer's line only when that copy
 * says the ring is full; the consumer reads tail once per ready() and works
 * on that snapshot (tail_cache) for peek and release.
 *
 * Waiting: the consumer sleeps on a futex word (bell) after announcing itself
 * in `sleeping`; the producer rings the bell only when it sees that flag, so
 * a commit costs no system call while the worker is busy and the capture
 * thread never takes a lock.  A condition variable would need the producer to
 * lock a mutex the consumer may hold; a timed poll would add up to its period
 * of latency to every frame. */
#include <linux/futex.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "daemon/daemon.h"

struct maad_ring {
    /* Read-only after creation. */
    uint32_t size, mask;
    size_t slot_bytes;
    maad_slot *slots;
    void *pixels;
    maad_free_fn free_fn;
    void *alloc_ctx;

    /* Producer's line. */
    alignas(64) _Atomic uint32_t tail; /* next slot to commit */
    uint32_t head_cache;               /* last head seen */
    int claimed;
    maad_drops pending;                /* dropped, not yet attached */
    _Atomic uint64_t pending_count;    /* pending.count, for other threads */

    /* Consumer's line. */
    alignas(64) _Atomic uint32_t head; /* next slot to release */
    uint32_t tail_cache;               /* last tail seen */
    _Atomic uint32_t sleeping;
    _Atomic uint32_t woken;            /* maad_ring_wake was called */

    /* The futex word, written by whoever wakes the consumer. */
    alignas(64) _Atomic uint32_t bell;
};

static void *default_alloc(size_t bytes, void *ctx)
{
    (void)ctx;
    void *p = NULL;
    return posix_memalign(&p, 64, bytes) == 0 ? p : NULL;
}

static void default_free(void *p, void *ctx)
{
    (void)ctx;
    free(p);
}

int maad_ring_create(uint32_t nslots, size_t slot_bytes, maad_alloc_fn alloc,
                     maad_free_fn free_fn, void *alloc_ctx, maad_ring **out,
                     char *err, size_t errlen)
{
    *out = NULL;
    if (nslots < 2 || nslots > (1u << 30) || (nslots & (nslots - 1))) {
        snprintf(err, err ? errlen : 0,
                 "ring: %u slots: must be a power of two from 2 to 2^30",
                 nslots);
        return MAA_ERR;
    }
    if ((alloc == NULL) != (free_fn == NULL)) {
        snprintf(err, err ? errlen : 0,
                 "ring: give both an allocator and its free, or neither");
        return MAA_ERR;
    }
    if (!alloc) {
        alloc = default_alloc;
        free_fn = default_free;
    }
    /* Round each buffer up to a cache line so neighbours never share one. */
    size_t stride = (slot_bytes + 63) & ~(size_t)63;
    if (stride && nslots > SIZE_MAX / stride) {
        snprintf(err, err ? errlen : 0, "ring: %u slots of %zu bytes overflow",
                 nslots, slot_bytes);
        return MAA_ERR;
    }
    maad_ring *r = NULL;
    if (posix_memalign((void **)&r, 64, sizeof *r) != 0) {
        snprintf(err, err ? errlen : 0, "ring: out of memory");
        return MAA_ERR;
    }
    memset(r, 0, sizeof *r);
    r->size = nslots;
    r->mask = nslots - 1;
    r->slot_bytes = slot_bytes;
    r->free_fn = free_fn;
    r->alloc_ctx = alloc_ctx;
    r->slots = calloc(nslots, sizeof *r->slots);
    if (stride)
        r->pixels = alloc(stride * nslots, alloc_ctx);
    if (!r->slots || (stride && !r->pixels)) {
        snprintf(err, err ? errlen : 0,
                 "ring: cannot allocate %u slots of %zu bytes", nslots,
                 slot_bytes);
        free(r->slots);
        if (r->pixels)
            free_fn(r->pixels, alloc_ctx);
        free(r);
        return MAA_ERR;
    }
    for (uint32_t i = 0; i < nslots; i++)
        r->slots[i].pixels = stride ? (char *)r->pixels + (size_t)i * stride : NULL;
    atomic_init(&r->tail, 0);
    atomic_init(&r->head, 0);
    atomic_init(&r->sleeping, 0);
    atomic_init(&r->woken, 0);
    atomic_init(&r->bell, 0);
    atomic_init(&r->pending_count, 0);
    *out = r;
    return MAA_OK;
}

void maad_ring_free(maad_ring *r)
{
    if (!r)
        return;
    if (r->pixels)
        r->free_fn(r->pixels, r->alloc_ctx);
    free(r->slots);
    free(r);
}

uint32_t maad_ring_size(const maad_ring *r) { return r->size; }
size_t maad_ring_slot_bytes(const maad_ring *r) { return r->slot_bytes; }

/* ---- producer ------------------------------------------------------------ */

maad_slot *maad_ring_claim(maad_ring *r)
{
    uint32_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    if (tail - r->head_cache == r->size) {
        /* A0: pairs with the store-release of head at R1: once we see the
         * consumer's new head, its reads of the slots it released are done,
         * so we may overwrite them. */
        r->head_cache = atomic_load_explicit(&r->head, memory_order_acquire);
        if (tail - r->head_cache == r->size)
            return NULL;
    }
    r->claimed = 1;
    maad_slot *s = &r->slots[tail & r->mask];
    s->kind = MAAD_SLOT_FRAME;
    s->reason[0] = '\0';
    s->size = 0;
    memset(&s->drops, 0, sizeof s->drops);
    return s;
}

static void wake_consumer(maad_ring *r)
{
    atomic_fetch_add_explicit(&r->bell, 1, memory_order_seq_cst);
    syscall(SYS_futex, &r->bell, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

void maad_ring_commit(maad_ring *r)
{
    if (!r->claimed)
        return;
    uint32_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    maad_slot *s = &r->slots[tail & r->mask];
    if (r->pending.count) {
        s->drops = r->pending;
        memset(&r->pending, 0, sizeof r->pending);
        atomic_store_explicit(&r->pending_count, 0, memory_order_relaxed);
    }
    r->claimed = 0;
    /* R0: pairs with the load-acquire of tail at A1: the slot's contents
     * written above are visible to the consumer once it sees this tail.
     * seq_cst also orders this store before the load of `sleeping` below
     * (Dekker with W0 in maad_ring_wait): either the consumer sees the new
     * tail before it sleeps, or we see it sleeping and ring the bell. */
    atomic_store_explicit(&r->tail, tail + 1, memory_order_seq_cst);
    if (atomic_load_explicit(&r->sleeping, memory_order_seq_cst))
        wake_consumer(r);
}

void maad_ring_drop(maad_ring *r, uint64_t frame_id, uint64_t t_capture_ns)
{
    maad_drops *d = &r->pending;
    if (d->count == 0) {
        d->first_id = frame_id;
        d->first_t_ns = t_capture_ns;
    }
    d->last_id = frame_id;
    d->last_t_ns = t_capture_ns;
    d->count++;
    atomic_store_explicit(&r->pending_count, d->count, memory_order_relaxed);
}

uint64_t maad_ring_pending_drops(const maad_ring *r)
{
    return atomic_load_explicit(&r->pending_count, memory_order_relaxed);
}

int maad_ring_flush(maad_ring *r)
{
    if (r->pending.count == 0)
        return MAA_OK;
    maad_slot *s = maad_ring_claim(r);
    if (!s)
        return MAA_ERR;
    s->kind = MAAD_SLOT_DROPS_ONLY;
    s->frame_id = r->pending.last_id;
    s->t_capture_ns = r->pending.last_t_ns;
    s->width = s->height = 0;
    maad_ring_commit(r);
    return MAA_OK;
}

/* ---- consumer ------------------------------------------------------------ */

uint32_t maad_ring_ready(maad_ring *r)
{
    uint32_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    /* A1: pairs with the store-release of tail at R0: the slots up to the
     * tail we read here are completely written. */
    r->tail_cache = atomic_load_explicit(&r->tail, memory_order_acquire);
    return r->tail_cache - head;
}

uint32_t maad_ring_occupancy(const maad_ring *r)
{
    /* Head first: read after it, the tail is never behind it. */
    maad_ring *m = (maad_ring *)r; /* atomics: loads only */
    uint32_t head = atomic_load_explicit(&m->head, memory_order_acquire);
    return atomic_load_explicit(&m->tail, memory_order_acquire) - head;
}

maad_slot *maad_ring_peek(maad_ring *r, uint32_t i)
{
    uint32_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    if (i >= r->tail_cache - head)
        return NULL;
    return &r->slots[(head + i) & r->mask];
}

void maad_ring_release(maad_ring *r, uint32_t n)
{
    uint32_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    if (n > r->tail_cache - head)
        n = r->tail_cache - head;
    /* R1: pairs with the load-acquire of head at A0: our reads of these
     * slots happen before the producer reuses them. */
    atomic_store_explicit(&r->head, head + n, memory_order_release);
}

uint32_t maad_ring_wait(maad_ring *r, int timeout_ms)
{
    uint32_t n = maad_ring_ready(r);
    if (n)
        return n;
    /* W0: pairs with R0's seq_cst store of tail and load of sleeping. */
    atomic_store_explicit(&r->sleeping, 1, memory_order_seq_cst);
    uint32_t bell = atomic_load_explicit(&r->bell, memory_order_seq_cst);
    /* A wake before we read the bell would not change it under our eyes, so
     * it is seen here instead; a later one changes the bell (W1). */
    if (atomic_exchange_explicit(&r->woken, 0, memory_order_seq_cst)) {
        atomic_store_explicit(&r->sleeping, 0, memory_order_relaxed);
        return maad_ring_ready(r);
    }
    uint32_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    /* A2: pairs with R0 like A1; seq_cst for the Dekker pairing above. */
    r->tail_cache = atomic_load_explicit(&r->tail, memory_order_seq_cst);
    if (r->tail_cache == head) {
        struct timespec ts, *tsp = NULL;
        if (timeout_ms >= 0) {
            ts.tv_sec = timeout_ms / 1000;
            ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
            tsp = &ts;
        }
        /* Returns at once if the bell rang since we read it (EAGAIN). */
        syscall(SYS_futex, &r->bell, FUTEX_WAIT_PRIVATE, bell, tsp, NULL, 0);
    }
    atomic_store_explicit(&r->sleeping, 0, memory_order_relaxed);
    /* A wake that ended this wait (or came since) is spent by returning. */
    atomic_store_explicit(&r->woken, 0, memory_order_relaxed);
    return maad_ring_ready(r);
}

void maad_ring_wake(maad_ring *r)
{
    /* W1: pairs with the exchange of woken in maad_ring_wait. */
    atomic_store_explicit(&r->woken, 1, memory_order_seq_cst);
    wake_consumer(r);
}

/* ---- dropped frames ------------------------------------------------------ */

int maad_drops_frame(const maad_drops *d, uint64_t k, uint64_t *frame_id,
                     uint64_t *t_capture_ns)
{
    uint64_t n = d->count;
    int exact_ids = d->last_id - d->first_id == n - 1;
    if (k == 0 || k + 1 == n) {
        *frame_id = k == 0 ? d->first_id : d->last_id;
        *t_capture_ns = k == 0 ? d->first_t_ns : d->last_t_ns;
        return 1;
    }
    *frame_id = exact_ids ? d->first_id + k : MAAD_FRAME_ID_UNKNOWN;
    /* Frames come at a steady trigger rate, so a linear estimate is close;
     * the recorded times of middle frames were not kept (see daemon.h). */
    unsigned __int128 span = d->last_t_ns - d->first_t_ns;
    *t_capture_ns = d->first_t_ns + (uint64_t)(span * k / (n - 1));
    return 0;
}
