/* bench.h — what the bench_* programs share: a monotonic clock and the
 * [SIZE [SECONDS]] arguments of the small ones.  Header-only, as
 * tests/check.h. */
#ifndef MAA_BENCH_H
#define MAA_BENCH_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* Seconds on CLOCK_MONOTONIC. */
static inline double bench_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* PROG [SIZE [SECONDS]]: *size (what names it, def, lo..hi) and *seconds
 * (default 1) per measurement; 0, or 2 after the usage line. */
static inline int bench_args(int argc, char **argv, const char *what, int def, int lo, int hi,
                             int *size, double *seconds)
{
    *size = argc > 1 ? atoi(argv[1]) : def;
    *seconds = argc > 2 ? atof(argv[2]) : 1.0;
    if (argc > 3 || *size < lo || *size > hi || !(*seconds > 0)) {
        fprintf(stderr, "usage: %s [%s (%d..%d) [SECONDS]]\n", argv[0], what, lo, hi);
        return 2;
    }
    return 0;
}

#endif
