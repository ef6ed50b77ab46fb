/* fmd_literal.h — contract §4's FMD computed word for word, for tests/test_fmd.c
 * (the oracle for maa_fmd's SVD form) and tests/bench_fmd.c (the form it
 * replaced, as the competitor).  Header-only, as tests/testmodel.h. */
#ifndef MAA_FMD_LITERAL_H
#define MAA_FMD_LITERAL_H

#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* contract §4 word for word, in double: sqrt(Si) by eigendecomposition, then
 * the eigenvalues of sqrt(Si) Sr sqrt(Si).  maa_fmd computes the same sum
 * as the singular values of Xi Xr^T / (h-1). */
static inline double fmd_literal(const float *fi, const float *fr, int h, int n)
{
    double *mi = calloc(n, sizeof *mi), *mr = calloc(n, sizeof *mr);
    double *si = calloc((size_t)n * n, sizeof *si), *sr = calloc((size_t)n * n, sizeof *sr);
    double *v = calloc((size_t)n * n, sizeof *v), *sq = calloc((size_t)n * n, sizeof *sq);
    double *t = calloc((size_t)n * n, sizeof *t), *lam = calloc(n, sizeof *lam);
    for (int j = 0; j < n; j++)
        for (int r = 0; r < h; r++) {
            mi[j] += fi[r * n + j] / (double)h;
            mr[j] += fr[r * n + j] / (double)h;
        }
    for (int a = 0; a < n; a++)
        for (int b = 0; b < n; b++)
            for (int r = 0; r < h; r++) {
                si[a * n + b] += (fi[r * n + a] - mi[a]) * (fi[r * n + b] - mi[b]) / (h - 1);
                sr[a * n + b] += (fr[r * n + a] - mr[a]) * (fr[r * n + b] - mr[b]) / (h - 1);
            }
    double d = 0;
    for (int j = 0; j < n; j++)
        d += (mi[j] - mr[j]) * (mi[j] - mr[j]) + si[j * n + j] + sr[j * n + j];
    memcpy(v, si, sizeof(double) * n * n);
    LAPACKE_dsyev(LAPACK_ROW_MAJOR, 'V', 'U', n, v, n, lam);
    for (int a = 0; a < n; a++)
        for (int b = 0; b < n; b++)
            for (int k = 0; k < n; k++)
                sq[a * n + b] += v[a * n + k] * sqrt(fmax(lam[k], 0)) * v[b * n + k];
    for (int a = 0; a < n; a++)
        for (int b = 0; b < n; b++)
            for (int k = 0; k < n; k++)
                t[a * n + b] += sq[a * n + k] * sr[k * n + b];
    memset(v, 0, sizeof(double) * n * n);
    for (int a = 0; a < n; a++)
        for (int b = 0; b < n; b++)
            for (int k = 0; k < n; k++)
                v[a * n + b] += t[a * n + k] * sq[k * n + b];
    LAPACKE_dsyev(LAPACK_ROW_MAJOR, 'N', 'U', n, v, n, lam);
    for (int k = 0; k < n; k++)
        d -= 2 * sqrt(fmax(lam[k], 0));
    free(mi), free(mr), free(si), free(sr), free(v), free(sq), free(t), free(lam);
    return d;
}

#endif
