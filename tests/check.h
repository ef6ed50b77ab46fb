/* check.h — the tiny test harness every tests/test_*.c uses.
 * A test is a function; CHECK marks the running test failed (and carries on,
 * so one run shows every broken assertion); SKIP ends it as skipped.  main()
 * ends with CHECK_SUMMARY(), which prints "N passed, N failed[, N skipped]".
 * CHECK_ONLY=text in the environment runs only the tests whose names hold
 * it (scripts/gpu-check.sh picks the device cases of a suite so); one that
 * runs none fails. */
#ifndef MAA_CHECK_H
#define MAA_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_pass, check_fail, check_skip, check_cur_failed, check_cur_skipped;

#define CHECK(cond, ...)                                                     \
    do {                                                                     \
        if (!(cond)) {                                                       \
            check_cur_failed = 1;                                            \
            fprintf(stderr, "  FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, " " __VA_ARGS__);                                \
            fputc('\n', stderr);                                             \
        }                                                                    \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                \
    CHECK(fabs((double)(a) - (double)(b)) <= (tol), "%.9g vs %.9g (tol %g)",  \
          (double)(a), (double)(b), (double)(tol))

#define SKIP(...)                                                            \
    do {                                                                     \
        check_cur_skipped = 1;                                               \
        printf("  SKIP: ");                                                  \
        printf(__VA_ARGS__);                                                 \
        putchar('\n');                                                       \
        return;                                                              \
    } while (0)

static inline int check_selected(const char *name)
{
    const char *only = getenv("CHECK_ONLY");
    return !only || !*only || strstr(name, only);
}

#define RUN(fn)                                                              \
    do {                                                                     \
        if (!check_selected(#fn))                                            \
            break;                                                           \
        check_cur_failed = check_cur_skipped = 0;                            \
        fn();                                                                \
        if (check_cur_skipped && !check_cur_failed) {                        \
            check_skip++;                                                    \
            printf("skip %s\n", #fn);                                        \
        } else if (check_cur_failed) {                                       \
            check_fail++;                                                    \
            printf("FAIL %s\n", #fn);                                        \
        } else {                                                             \
            check_pass++;                                                    \
            printf("ok   %s\n", #fn);                                        \
        }                                                                    \
        fflush(stdout);                                                      \
    } while (0)

/* A CHECK_ONLY that selects nothing (a typo, a renamed test) is a failure,
 * not an empty success. */
static inline void check_nothing_run(void)
{
    if (check_pass + check_fail + check_skip == 0 && !check_selected("")) {
        printf("FAIL CHECK_ONLY=%s matches no test\n", getenv("CHECK_ONLY"));
        check_fail++;
    }
}

#define CHECK_SUMMARY()                                                      \
    (check_nothing_run(),                                                    \
     check_skip ? printf("%d passed, %d failed, %d skipped\n", check_pass,   \
                         check_fail, check_skip)                             \
                : printf("%d passed, %d failed\n", check_pass, check_fail),  \
     check_fail ? 1 : 0)

#endif
