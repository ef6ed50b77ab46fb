/* bench_preprocess.c — times maa_preprocess shrinking camera-sized 8-bit
 * frames to S x S (contract §1, area) against the literal bin means of
 * tests/preprocess_literal.h, in one run, on the same frames, and prints
 * their ratio and largest difference.  maa_preprocess uses OpenMP's threads
 * (OMP_NUM_THREADS), the literal form one.  The numbers in
 * docs/engine.md come from this program.  Not a test: tests/run.sh runs
 * only test_* programs.
 *
 *   bench_preprocess [S [SECONDS]]     default 256, 1 s per measurement */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/engine.h"
#include "tests/bench.h"
#include "tests/preprocess_literal.h"

int main(int argc, char **argv)
{
    int S;
    double seconds;
    if (bench_args(argc, argv, "S", 256, 8, 640, &S, &seconds))
        return 2;
    static const struct {
        int w, h, ch;
        const char *what;
    } frames[] = {
        {2448, 2048, 1, "5 MP mono"}, {2448, 2048, 3, "5 MP RGB"},
        {1280, 1024, 1, "1.3 MP mono"}, {640, 480, 3, "VGA RGB"},
    };
    printf("S=%d, maa_preprocess on %d OpenMP threads\n", S, omp_get_max_threads());
    printf("%-12s %14s %14s %8s %10s\n", "frame", "maa ms", "literal ms", "ratio", "max diff");
    for (size_t k = 0; k < sizeof frames / sizeof *frames; k++) {
        const int w = frames[k].w, h = frames[k].h, ch = frames[k].ch, c = 3;
        const size_t n = (size_t)w * h * ch, o = (size_t)c * S * S;
        uint8_t *px = malloc(n);
        float *a = malloc(o * sizeof *a), *b = malloc(o * sizeof *b);
        char err[MAA_ERRLEN];
        uint32_t r = 7;
        for (size_t i = 0; i < n; i++) {
            r = r * 1664525u + 1013904223u;
            px[i] = (uint8_t)(r >> 24);
        }
        maa_image img = {w, h, ch, 8, px};
        double t[2];
        for (int m = 0; m < 2; m++) {
            long reps = 0;
            double t0 = bench_now();
            do {
                if (m == 0 && maa_preprocess(&img, S, c, a, err, sizeof err)) {
                    fprintf(stderr, "bench_preprocess: %s\n", err);
                    return 1;
                }
                if (m == 1)
                    preprocess_literal(&img, S, c, b);
                reps++;
            } while (bench_now() - t0 < seconds);
            t[m] = (bench_now() - t0) * 1e3 / reps;
        }
        double worst = 0;
        for (size_t i = 0; i < o; i++)
            worst = fmax(worst, fabs((double)a[i] - b[i]));
        printf("%-12s %14.3f %14.3f %7.2fx %10.1e\n", frames[k].what, t[0], t[1], t[1] / t[0],
               worst);
        free(px);
        free(a);
        free(b);
    }
    return 0;
}
