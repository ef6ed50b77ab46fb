/* test_ring.c — the SPSC frame ring: order and completeness across two
 * threads, overflow accounting in capture order, waiting and waking.
 * Also built with -fsanitize=thread as build/tests/test_ring_tsan (fewer
 * items: TSan is ~20x slower), where every report TSan prints fails
 * test_tsan_reports. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "daemon/daemon.h"
#include "tests/check.h"

#ifndef RING_ITEMS
#define RING_ITEMS 10000000u
#endif
#ifndef OVERFLOW_ITEMS
#define OVERFLOW_ITEMS 200000u
#endif

#ifdef __SANITIZE_THREAD__
static atomic_int tsan_reports;

/* The ThreadSanitizer runtime calls this weak hook for each report it
 * prints.  TSan itself only changes the exit status at the end, after
 * "N passed, 0 failed": counted here, a race is a failed test in the
 * output. */
void __tsan_on_report(void *report);
void __tsan_on_report(void *report)
{
    (void)report;
    atomic_fetch_add(&tsan_reports, 1);
}

static void test_tsan_reports(void)
{
    CHECK(atomic_load(&tsan_reports) == 0, "ThreadSanitizer printed %d reports (above)",
          atomic_load(&tsan_reports));
}
#endif

static void test_create_errors(void)
{
    maad_ring *r = NULL;
    char err[MAA_ERRLEN] = "";
    CHECK(maad_ring_create(6, 16, NULL, NULL, NULL, &r, err, sizeof err) == MAA_ERR);
    CHECK(r == NULL);
    CHECK(strstr(err, "power of two") != NULL, "%s", err);
    CHECK(maad_ring_create(1, 16, NULL, NULL, NULL, &r, err, sizeof err) == MAA_ERR);
    CHECK(maad_ring_create(8, 100, NULL, NULL, NULL, &r, err, sizeof err) == MAA_OK, "%s", err);
    CHECK(maad_ring_size(r) == 8);
    CHECK(maad_ring_slot_bytes(r) == 100);
    for (uint32_t i = 0; i < 8; i++) {
        maad_slot *s = maad_ring_claim(r);
        CHECK(s && ((uintptr_t)s->pixels & 63) == 0);
        memset(s->pixels, 0xab, 100); /* every byte is writable */
        maad_ring_commit(r);
    }
    maad_ring_free(r);
}

static int allocs, frees;
static void *count_alloc(size_t n, void *ctx)
{
    CHECK(ctx == &allocs);
    allocs++;
    return aligned_alloc(64, (n + 63) & ~(size_t)63);
}
static void count_free(void *p, void *ctx)
{
    CHECK(ctx == &allocs);
    frees++;
    free(p);
}

static void test_custom_allocator(void)
{
    maad_ring *r = NULL;
    char err[MAA_ERRLEN];
    CHECK(maad_ring_create(4, 1000, count_alloc, NULL, &allocs, &r, err, sizeof err) == MAA_ERR);
    CHECK(maad_ring_create(4, 1000, count_alloc, count_free, &allocs, &r, err,
                           sizeof err) == MAA_OK, "%s", err);
    CHECK(allocs == 1);
    maad_ring_free(r);
    CHECK(frees == 1);
}

/* Single thread: full ring, drops attached to the next commit, flush. */
static void test_overflow_single(void)
{
    maad_ring *r = NULL;
    char err[MAA_ERRLEN];
    CHECK(maad_ring_create(4, 8, NULL, NULL, NULL, &r, err, sizeof err) == MAA_OK);
    CHECK(maad_ring_ready(r) == 0);
    CHECK(maad_ring_flush(r) == MAA_OK); /* nothing pending */
    CHECK(maad_ring_ready(r) == 0);
    for (uint64_t id = 0; id < 4; id++) {
        maad_slot *s = maad_ring_claim(r);
        CHECK(s != NULL);
        s->frame_id = id;
        maad_ring_commit(r);
    }
    CHECK(maad_ring_claim(r) == NULL);
    for (uint64_t id = 4; id < 7; id++)
        maad_ring_drop(r, id, id * 10);
    CHECK(maad_ring_pending_drops(r) == 3);
    CHECK(maad_ring_ready(r) == 4);
    CHECK(maad_ring_peek(r, 0)->frame_id == 0);
    CHECK(maad_ring_peek(r, 3)->frame_id == 3);
    CHECK(maad_ring_peek(r, 4) == NULL);
    CHECK(maad_ring_peek(r, 0)->drops.count == 0);
    maad_ring_release(r, 2);
    CHECK(maad_ring_ready(r) == 2);

    maad_slot *s = maad_ring_claim(r);
    CHECK(s != NULL);
    s->frame_id = 7;
    maad_ring_commit(r);
    CHECK(maad_ring_pending_drops(r) == 0);
    CHECK(maad_ring_ready(r) == 3);
    maad_slot *p = maad_ring_peek(r, 2);
    CHECK(p->frame_id == 7);
    CHECK(p->drops.count == 3);
    CHECK(p->drops.first_id == 4 && p->drops.last_id == 6);
    uint64_t id, t;
    for (uint64_t k = 0; k < 3; k++) {
        CHECK(maad_drops_frame(&p->drops, k, &id, &t) == (k != 1));
        CHECK(id == 4 + k && t == (4 + k) * 10, "k %llu: id %llu t %llu",
              (unsigned long long)k, (unsigned long long)id,
              (unsigned long long)t);
    }

    /* Non-consecutive ids: only the ends are known. */
    CHECK(maad_ring_claim(r) != NULL);
    maad_ring_commit(r); /* ring full again */
    CHECK(maad_ring_claim(r) == NULL);
    maad_ring_drop(r, 20, 200);
    maad_ring_drop(r, 25, 250);
    maad_ring_drop(r, 26, 260);
    CHECK(maad_ring_flush(r) == MAA_ERR); /* still full */
    CHECK(maad_ring_ready(r) == 4);
    maad_ring_release(r, 4);
    CHECK(maad_ring_flush(r) == MAA_OK);
    CHECK(maad_ring_pending_drops(r) == 0);
    CHECK(maad_ring_ready(r) == 1);
    p = maad_ring_peek(r, 0);
    CHECK(p->kind == MAAD_SLOT_DROPS_ONLY);
    CHECK(p->drops.count == 3);
    CHECK(maad_drops_frame(&p->drops, 1, &id, &t) == 0);
    CHECK(id == MAAD_FRAME_ID_UNKNOWN);
    CHECK(t == 230, "%llu", (unsigned long long)t);
    CHECK(maad_drops_frame(&p->drops, 2, &id, &t) == 1 && id == 26 && t == 260);
    maad_ring_release(r, 1);
    CHECK(maad_ring_flush(r) == MAA_OK);
    CHECK(maad_ring_ready(r) == 0);
    maad_ring_free(r);
}

/* ---- two threads ---------------------------------------------------------- */

typedef struct {
    maad_ring *r;
    uint64_t n;
    int lossy;           /* drop when full instead of retrying */
    atomic_int done;
    uint64_t dropped;
} run_ctx;

static void fill(maad_slot *s, uint64_t id)
{
    s->frame_id = id;
    s->t_capture_ns = id * 1000;
    s->size = 16;
    memcpy(s->pixels, &id, 8);
    uint64_t inv = ~id;
    memcpy((char *)s->pixels + 8, &inv, 8);
}

static void *producer(void *arg)
{
    run_ctx *c = arg;
    for (uint64_t id = 0; id < c->n; id++) {
        maad_slot *s;
        while (!(s = maad_ring_claim(c->r))) {
            if (c->lossy) {
                maad_ring_drop(c->r, id, id * 1000);
                c->dropped++;
                break;
            }
            sched_yield();
        }
        if (s) {
            fill(s, id);
            maad_ring_commit(c->r);
        }
        if (c->lossy && id % 64 == 0)
            sched_yield(); /* a camera is slower than this loop */
    }
    while (maad_ring_flush(c->r) != MAA_OK)
        sched_yield();
    atomic_store(&c->done, 1);
    maad_ring_wake(c->r);
    return NULL;
}

/* Consumes until the producer is done and the ring is empty; checks that
 * every id arrives exactly once and in order, as a slot or a dropped
 * record.  Returns the next expected id (== n when complete). */
static uint64_t consume(run_ctx *c, int slow, uint64_t *bad, uint64_t *as_drops)
{
    uint64_t next = 0, turns = 0;
    for (;;) {
        uint32_t n = maad_ring_wait(c->r, 100);
        if (n == 0) {
            if (atomic_load(&c->done) && maad_ring_ready(c->r) == 0)
                break;
            continue;
        }
        for (uint32_t i = 0; i < n; i++) {
            maad_slot *s = maad_ring_peek(c->r, i);
            for (uint64_t k = 0; k < s->drops.count; k++) {
                uint64_t id, t;
                maad_drops_frame(&s->drops, k, &id, &t);
                if (id != next || t != next * 1000)
                    (*bad)++;
                next++;
                (*as_drops)++;
            }
            if (s->kind == MAAD_SLOT_DROPS_ONLY)
                continue;
            uint64_t a, b;
            memcpy(&a, s->pixels, 8);
            memcpy(&b, (char *)s->pixels + 8, 8);
            if (s->frame_id != next || a != next || b != ~next ||
                s->t_capture_ns != next * 1000 || s->kind != MAAD_SLOT_FRAME)
                (*bad)++;
            next++;
        }
        /* Release in pieces so the producer sees partial progress. */
        maad_ring_release(c->r, n / 2);
        maad_ring_release(c->r, n - n / 2);
        if (slow && ++turns % 16 == 0) {
            struct timespec ts = {0, 200000};
            nanosleep(&ts, NULL);
        }
    }
    return next;
}

static void test_spsc_lossless(void)
{
    run_ctx c = {.n = RING_ITEMS};
    char err[MAA_ERRLEN];
    CHECK(maad_ring_create(64, 16, NULL, NULL, NULL, &c.r, err, sizeof err) == MAA_OK);
    atomic_init(&c.done, 0);
    pthread_t th;
    pthread_create(&th, NULL, producer, &c);
    uint64_t bad = 0, drops = 0;
    uint64_t got = consume(&c, 0, &bad, &drops);
    pthread_join(th, NULL);
    CHECK(got == c.n, "%llu of %llu", (unsigned long long)got,
          (unsigned long long)c.n);
    CHECK(bad == 0, "%llu out of order or corrupt", (unsigned long long)bad);
    CHECK(drops == 0);
    maad_ring_free(c.r);
}

static void test_spsc_overflow(void)
{
    run_ctx c = {.n = OVERFLOW_ITEMS, .lossy = 1};
    char err[MAA_ERRLEN];
    CHECK(maad_ring_create(8, 16, NULL, NULL, NULL, &c.r, err, sizeof err) == MAA_OK);
    atomic_init(&c.done, 0);
    pthread_t th;
    pthread_create(&th, NULL, producer, &c);
    uint64_t bad = 0, drops = 0;
    uint64_t got = consume(&c, 1, &bad, &drops);
    pthread_join(th, NULL);
    CHECK(got == c.n, "%llu of %llu", (unsigned long long)got,
          (unsigned long long)c.n);
    CHECK(bad == 0, "%llu out of order or corrupt", (unsigned long long)bad);
    CHECK(drops == c.dropped, "%llu dropped, %llu reported",
          (unsigned long long)c.dropped, (unsigned long long)drops);
    /* A consumer that sleeps while the producer runs flat out on an 8-slot
     * ring must have seen overflow, or the test tested nothing. */
    CHECK(c.dropped > 0);
    printf("  overflow: %llu of %llu frames dropped\n",
           (unsigned long long)c.dropped, (unsigned long long)c.n);
    maad_ring_free(c.r);
}

static atomic_int waited;
static void *waiter(void *arg)
{
    maad_ring *r = arg;
    uint32_t n = maad_ring_wait(r, -1);
    atomic_store(&waited, (int)n + 1);
    return NULL;
}

static void test_wait_wake(void)
{
    maad_ring *r = NULL;
    char err[MAA_ERRLEN];
    CHECK(maad_ring_create(4, 8, NULL, NULL, NULL, &r, err, sizeof err) == MAA_OK);
    CHECK(maad_ring_wait(r, 1) == 0); /* times out */
    /* A wake ends an untimed wait, whether it comes before or during it;
     * a lost wake hangs here and the alarm fails the test. */
    alarm(30);
    pthread_t th;
    atomic_init(&waited, 0);
    pthread_create(&th, NULL, waiter, r);
    maad_ring_wake(r);
    pthread_join(th, NULL);
    CHECK(atomic_load(&waited) == 1);
    /* A commit ends an untimed wait. */
    atomic_store(&waited, 0);
    pthread_create(&th, NULL, waiter, r);
    maad_ring_claim(r);
    maad_ring_commit(r);
    pthread_join(th, NULL);
    CHECK(atomic_load(&waited) == 2);
    alarm(0);
    maad_ring_free(r);
}

int main(void)
{
    RUN(test_create_errors);
    RUN(test_custom_allocator);
    RUN(test_overflow_single);
    RUN(test_wait_wake);
    RUN(test_spsc_lossless);
    RUN(test_spsc_overflow);
#ifdef __SANITIZE_THREAD__
    RUN(test_tsan_reports);
#endif
    return CHECK_SUMMARY();
}
