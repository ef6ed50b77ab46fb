/* fmd.c — the Fréchet Markov Distance (contract §4).
 *
 * contract §4 sums the square roots of the eigenvalues of sqrt(Si) Sr sqrt(Si).
 * With X the centred rows (so Si = Xi^T Xi / (h-1), Sr likewise), those
 * nonzero eigenvalues are the nonzero eigenvalues of Si Sr, and so of
 * K K^T with K = Xi Xr^T / (h-1), an h x h matrix (h = rows): the sum of
 * their square roots is the sum of the singular values of K.  One SVD
 * (values only) replaces the two eigensolves of the literal formula (one
 * with vectors, for sqrt(Si)) and its three matrix products: about 4x faster
 * on the 29 x 29 maps of the default model (build/bench_fmd), with the same
 * numbers to float64 rounding (tests/test_fmd.c checks them against the
 * literal formula and scipy).  Neither needs the complex Schur form of
 * scipy.linalg.sqrtm or its spurious imaginary parts. */
#include <dlfcn.h>
#include <lapacke.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "engine/backend.h"

/* OpenBLAS's own threads only cost wake-ups on matrices of 29 x 29, and the
 * inspector already spreads a batch's frames over threads: one BLAS thread.
 * Debian's liblapack.so.3 can be a whole OpenBLAS of its own (the
 * openblas-pthread alternative), with its own thread pool, so the setter is
 * looked up in every library that has one. */
static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
static void blas_single(void)
{
    const char *libs[] = {"liblapack.so.3", "libopenblas.so.0", "libblas.so.3"};
    for (size_t i = 0; i < sizeof libs / sizeof *libs; i++) {
        void *h = dlopen(libs[i], RTLD_LAZY | RTLD_NOLOAD);
        void (*set)(int) = h ? (void (*)(int))dlsym(h, "openblas_set_num_threads") : NULL;
        if (set)
            set(1);
        if (h)
            dlclose(h);
    }
}

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

/* Column means of a rows x cols matrix, and the rows with them taken off:
 * the products below then see the spread, not large offsets. */
static void centre(const float *f, int rows, int cols, double *mu, double *centred)
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
    pthread_once(&blas_once, blas_single);
    if (check_finite(fi, rows, cols, "f(x)", err, errlen) ||
        check_finite(fr, rows, cols, "f(r)", err, errlen))
        return MAA_ERR;

    const size_t h = (size_t)rows, n = (size_t)cols, hn = h * n, hh = h * h;
    /* mu_i, mu_r | Xi, Xr | K | dgesvd's workspace | singular values */
    double *buf = malloc(sizeof(double) * (2 * n + 2 * hn + hh + 5 * h + h));
    if (!buf) {
        maa_seterr(err, errlen, "fmd: out of memory for %dx%d features",
                   rows, cols);
        return MAA_ERR;
    }
    double *mu_i = buf, *mu_r = mu_i + n, *xi = mu_r + n, *xr = xi + hn;
    double *k = xr + hn, *g = k + hh, *lam = g + 5 * h;
    int rv = MAA_ERR;

    centre(fi, rows, cols, mu_i, xi);
    centre(fr, rows, cols, mu_r, xr);
    double dmu = 0, tr = 0;
    for (size_t j = 0; j < n; j++)
        dmu += (mu_i[j] - mu_r[j]) * (mu_i[j] - mu_r[j]);
    for (size_t p = 0; p < hn; p++)
        tr += xi[p] * xi[p] + xr[p] * xr[p];
    tr /= (double)(h - 1);

    /* K = Xi Xr^T / (h-1); its singular values straight from dgesvd, not
     * as square roots of the eigenvalues of K K^T: squaring would turn the
     * exact zeros (rank <= min(h-1, cols)) into sqrt(rounding) ~ 1e-8. */
    for (size_t a = 0; a < h; a++)
        for (size_t b = 0; b < h; b++) {
            double s = 0;
            for (size_t j = 0; j < n; j++)
                s += xi[a * n + j] * xr[b * n + j];
            k[a * h + b] = s / (double)(h - 1);
        }
    /* Read column-major, the buffer holds K^T: the same singular values,
     * without LAPACKE's transposed copy.  The workspace is dgesvd's minimum
     * for jobu = jobvt = 'N' and a square matrix, 5h. */
    lapack_int info = LAPACKE_dgesvd_work(LAPACK_COL_MAJOR, 'N', 'N', rows, rows, k, rows, lam,
                                          NULL, 1, NULL, 1, g, (lapack_int)(5 * h));
    if (info != 0) {
        maa_seterr(err, errlen, "fmd: singular values of Xi Xr^T failed "
                   "(dgesvd info %d)", (int)info);
        goto out;
    }
    double tr_covmean = 0;
    for (size_t p = 0; p < h; p++)
        tr_covmean += lam[p];

    *out = dmu + tr - 2 * tr_covmean;
    rv = MAA_OK;
out:
    free(buf);
    return rv;
}
