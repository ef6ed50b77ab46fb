/* bench_fmd.c — times maa_fmd (contract §4 as the singular values of Xi Xr^T)
 * against the literal formula it replaced (sqrt(Si) by eigendecomposition,
 * then the eigenvalues of sqrt(Si) Sr sqrt(Si): tests/fmd_literal.h), in one
 * run, on the same maps, one BLAS thread for both (maa_fmd's first call sets
 * it, and it is made before timing).  The numbers in docs/scoring.md come
 * from this program.  Not a test: tests/run.sh runs only test_* programs.
 *
 *   bench_fmd [M [SECONDS]]     M x M maps (default 29: S=256), default 1 s
 *
 * Prints: maa_fmd <us>/score, literal <us>/score, ratio, largest difference. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/engine.h"
#include "tests/bench.h"
#include "tests/fmd_literal.h"

int main(int argc, char **argv)
{
    int M;
    double seconds;
    if (bench_args(argc, argv, "M", 29, 2, 256, &M, &seconds))
        return 2;
    enum { SETS = 16 };
    const size_t mm = (size_t)M * M;
    float *fx = malloc(SETS * mm * sizeof *fx), *fr = malloc(SETS * mm * sizeof *fr);
    uint32_t s = 1;
    for (size_t i = 0; i < SETS * mm; i++) {
        s = s * 1664525u + 1013904223u;
        fx[i] = (float)(s >> 8) / 16777216.0f;
        fr[i] = 0.7f * fx[i] + 0.3f * (float)((s * 69069u) >> 8) / 16777216.0f;
    }
    char err[MAA_ERRLEN];
    double d, sink = 0, worst = 0;
    for (int k = 0; k < SETS; k++) {
        if (maa_fmd(fx + k * mm, fr + k * mm, M, M, &d, err, sizeof err)) {
            fprintf(stderr, "bench_fmd: %s\n", err);
            return 1;
        }
        double l = fmd_literal(fx + k * mm, fr + k * mm, M, M);
        worst = fmax(worst, fabs(d - l) / fmax(fabs(l), 1e-300));
    }
    double us[2];
    for (int form = 0; form < 2; form++) {
        long calls = 0;
        double t0 = bench_now(), t;
        do {
            for (int k = 0; k < SETS; k++, calls++) {
                if (form == 0)
                    maa_fmd(fx + k * mm, fr + k * mm, M, M, &d, err, sizeof err);
                else
                    d = fmd_literal(fx + k * mm, fr + k * mm, M, M);
                sink += d;
            }
            t = bench_now() - t0;
        } while (t < seconds);
        us[form] = t * 1e6 / calls;
    }
    printf("M=%d: maa_fmd %.1f us/score, literal formula %.1f us/score, %.2fx; "
           "largest relative difference %.1e (checksum %.6g)\n",
           M, us[0], us[1], us[1] / us[0], worst, sink);
    free(fx);
    free(fr);
    return 0;
}
