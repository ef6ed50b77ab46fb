/* fmd.c — the Fréchet Markov Distance (SPEC §4).
 *
 * The trace of sqrt(Si Sr) is taken as the sum of the square roots of the
 * eigenvalues of sqrt(Si) Sr sqrt(Si): that matrix is symmetric positive
 * semi-definite and has the same spectrum as Si Sr, so a symmetric
 * eigensolver (dsyevd) gives the answer without the complex Schur form that
 * scipy.linalg.sqrtm needs, and without its spurious imaginary parts. */
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/backend.h"

static int check_finite(const float *f, int rows, int cols, const char *what,
                        char *err, size_t errlen)
{
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++)
            if (!isfinite(f[(size_t)i * cols + j])) {
                maa_seterr(err, errlen,
                           "fmd: %s has a non-finite value (%g) at row %d, "
                           "column %d", what, (double)f[(size_t)i * cols + j],
                           i, j);
                return MAA_ERR;
            }
    return MAA_OK;
}

/* Row mean and unbiased covariance (divisor rows - 1) of a rows x cols
 * matrix.  The mean is subtracted before the products so that large offsets
 * do not cancel the spread. */
static void mean_cov(const float *f, int rows, int cols, double *mu,
                     double *cov, double *centred)
{
    for (int j = 0; j < cols; j++) {
        double s = 0;
        for (int i = 0; i < rows; i++)
            s += f[(size_t)i * cols + j];
        mu[j] = s / rows;
    }
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++)
            centred[(size_t)i * cols + j] = f[(size_t)i * cols + j] - mu[j];
    for (int a = 0; a < cols; a++)
        for (int b = a; b < cols; b++) {
            double s = 0;
            for (int i = 0; i < rows; i++)
                s += centred[(size_t)i * cols + a] * centred[(size_t)i * cols + b];
            cov[(size_t)a * cols + b] = cov[(size_t)b * cols + a] = s / (rows - 1);
        }
}

int maa_fmd(const float *fi, const float *fr, int rows, int cols,
            double *out, char *err, size_t errlen)
{
    if (rows < 2) {
        maa_seterr(err, errlen, "fmd: need at least 2 rows to estimate a "
                   "covariance, got %d", rows);
        return MAA_ERR;
    }
    if (cols < 1) {
        maa_seterr(err, errlen, "fmd: need at least 1 column, got %d", cols);
        return MAA_ERR;
    }
    if (check_finite(fi, rows, cols, "f(x)", err, errlen) ||
        check_finite(fr, rows, cols, "f(r)", err, errlen))
        return MAA_ERR;

    size_t n = (size_t)cols, nn = n * n;
    size_t rc = (size_t)rows * n;
    /* mu_i, mu_r, eigenvalues | Si, Sr, V, sqrt(Si), T | centred rows */
    double *buf = malloc(sizeof(double) * (3 * n + 5 * nn + rc));
    if (!buf) {
        maa_seterr(err, errlen, "fmd: out of memory for %dx%d features",
                   rows, cols);
        return MAA_ERR;
    }
    double *mu_i = buf, *mu_r = mu_i + n, *lam = mu_r + n;
    double *si = lam + n, *sr = si + nn, *v = sr + nn, *sq = v + nn;
    double *t = sq + nn, *centred = t + nn;
    int rv = MAA_ERR;

    mean_cov(fi, rows, cols, mu_i, si, centred);
    mean_cov(fr, rows, cols, mu_r, sr, centred);

    double dmu = 0, tr = 0;
    for (size_t j = 0; j < n; j++) {
        dmu += (mu_i[j] - mu_r[j]) * (mu_i[j] - mu_r[j]);
        tr += si[j * n + j] + sr[j * n + j];
    }

    /* sqrt(Si) = V sqrt(max(D, 0)) V^T */
    memcpy(v, si, sizeof(double) * nn);
    lapack_int info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'U', cols, v,
                                     cols, lam);
    if (info != 0) {
        maa_seterr(err, errlen, "fmd: eigendecomposition of Sigma_i failed "
                   "(dsyevd info %d)", (int)info);
        goto out;
    }
    for (size_t k = 0; k < n; k++)
        lam[k] = sqrt(lam[k] > 0 ? lam[k] : 0);
    for (size_t a = 0; a < n; a++)
        for (size_t b = a; b < n; b++) {
            double s = 0;
            for (size_t k = 0; k < n; k++)
                s += v[a * n + k] * lam[k] * v[b * n + k];
            sq[a * n + b] = sq[b * n + a] = s;
        }

    /* T = sqrt(Si) Sr, then v = T sqrt(Si), symmetrised against rounding. */
    for (size_t a = 0; a < n; a++)
        for (size_t b = 0; b < n; b++) {
            double s = 0;
            for (size_t k = 0; k < n; k++)
                s += sq[a * n + k] * sr[k * n + b];
            t[a * n + b] = s;
        }
    for (size_t a = 0; a < n; a++)
        for (size_t b = 0; b < n; b++) {
            double s = 0;
            for (size_t k = 0; k < n; k++)
                s += t[a * n + k] * sq[k * n + b];
            v[a * n + b] = s;
        }
    for (size_t a = 0; a < n; a++)
        for (size_t b = a + 1; b < n; b++)
            v[a * n + b] = v[b * n + a] = 0.5 * (v[a * n + b] + v[b * n + a]);

    info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'N', 'U', cols, v, cols, lam);
    if (info != 0) {
        maa_seterr(err, errlen, "fmd: eigenvalues of sqrt(Sigma_i) Sigma_r "
                   "sqrt(Sigma_i) failed (dsyevd info %d)", (int)info);
        goto out;
    }
    double tr_covmean = 0;
    for (size_t k = 0; k < n; k++)
        tr_covmean += sqrt(lam[k] > 0 ? lam[k] : 0);

    *out = dmu + tr - 2 * tr_covmean;
    rv = MAA_OK;
out:
    free(buf);
    return rv;
}
