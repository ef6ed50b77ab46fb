/* test_fmd.c — the Fréchet Markov Distance (contract §4). */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "engine/engine.h"
#include "tests/check.h"
#include "tests/fmd_literal.h"

static double fmd(const float *a, const float *b, int rows, int cols)
{
    double d = NAN;
    char err[MAA_ERRLEN] = "";
    int rc = maa_fmd(a, b, rows, cols, &d, err, sizeof err);
    CHECK(rc == MAA_OK, "%s", err);
    return d;
}

/* Multiples of 1/256 in [-1, 1): exact in float, so shifting them by a small
 * integer is exact too. */
static void fill(float *f, int n, uint32_t seed)
{
    for (int i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        f[i] = (float)((int)(seed >> 24) - 128) / 128.0f;
    }
}

static void test_identical_is_zero(void)
{
    float a[29 * 29];
    fill(a, 29 * 29, 1);
    CHECK_NEAR(fmd(a, a, 29, 29), 0, 1e-9);
}

/* Si = [[8,4],[4,4]]/3, Sr = (2/3) I, mean shift (1,2): for 2x2 SPD A,
 * Tr sqrt(A) = sqrt(Tr A + 2 sqrt(det A)), so Tr sqrt(Si Sr) = sqrt(40)/3 and
 * FMD = 5 + 4 + 4/3 - 2 sqrt(40)/3. */
static void test_hand_2x2(void)
{
    const float fi[] = {2, 1, 0, -1, -2, -1, 0, 1};
    const float fr[] = {2, 2, 0, 2, 1, 3, 1, 1};
    double want = 5 + (16 - 2 * sqrt(40)) / 3;
    CHECK_NEAR(fmd(fi, fr, 4, 2), want, 1e-12);
}

/* Orthogonal centred columns give diagonal covariances; then
 * FMD = |dmu|^2 + sum_k (sqrt(a_k) - sqrt(b_k))^2. */
static void test_diagonal_closed_form(void)
{
    static const int h[3][4] = {{1, -1, 1, -1}, {1, 1, -1, -1}, {1, -1, -1, 1}};
    const double sa[3] = {0.5, 2, 3}, sb[3] = {1.5, 0.25, 3};
    const double ma[3] = {1, -2, 0.5}, mb[3] = {0, 1, 0.5};
    float fa[12], fb[12];
    double want = 0;
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < 4; i++) {
            fa[i * 3 + k] = (float)(ma[k] + sa[k] * h[k][i]);
            fb[i * 3 + k] = (float)(mb[k] + sb[k] * h[k][i]);
        }
        /* variance of +-s over 4 rows with divisor 3 */
        double va = 4 * sa[k] * sa[k] / 3, vb = 4 * sb[k] * sb[k] / 3;
        want += (ma[k] - mb[k]) * (ma[k] - mb[k]) +
                (sqrt(va) - sqrt(vb)) * (sqrt(va) - sqrt(vb));
    }
    CHECK_NEAR(fmd(fa, fb, 4, 3), want, 1e-12);
}

static void test_translation_invariance(void)
{
    float a[29 * 29], b[29 * 29], a2[29 * 29], b2[29 * 29];
    fill(a, 29 * 29, 7);
    fill(b, 29 * 29, 8);
    for (int i = 0; i < 29 * 29; i++) {
        a2[i] = a[i] + 3;
        b2[i] = b[i] + 3;
    }
    double d = fmd(a, b, 29, 29), d2 = fmd(a2, b2, 29, 29);
    CHECK(d > 1, "%g", d);
    CHECK_NEAR(d2, d, 1e-9 * d);
}

static void test_symmetry(void)
{
    float a[29 * 29], b[29 * 29];
    fill(a, 29 * 29, 3);
    fill(b, 29 * 29, 4);
    for (int i = 0; i < 29 * 29; i++)
        b[i] = 0.5f * b[i] + (float)(i % 29) / 32;
    double ab = fmd(a, b, 29, 29), ba = fmd(b, a, 29, 29);
    CHECK(ab > 0.1, "%g", ab);
    CHECK_NEAR(ab, ba, 1e-9 * ab);
}

/* Reference from the pytorch-fid formula (scipy.linalg.sqrtm), obtained with:
 * /usr/bin/python3 -c "import numpy as np, scipy.linalg as L;
 *   r=np.arange(29)[:,None]; c=np.arange(29)[None,:];
 *   fi=np.sin(0.37*r*c+0.11*r+0.5*c).astype(np.float32).astype(np.float64);
 *   fr=(0.8*np.cos(0.23*r*r+0.71*c)+0.1*c).astype(np.float32).astype(np.float64);
 *   m1,m2=fi.mean(0),fr.mean(0); s1,s2=np.cov(fi,rowvar=False),np.cov(fr,rowvar=False);
 *   cm,_=L.sqrtm(s1.dot(s2),disp=False);
 *   print(repr(((m1-m2)**2).sum()+np.trace(s1)+np.trace(s2)-2*np.trace(cm.real)))"
 * (scipy 1.10.1). */
static void test_matches_scipy_sqrtm(void)
{
    float fi[29 * 29], fr[29 * 29];
    for (int r = 0; r < 29; r++)
        for (int c = 0; c < 29; c++) {
            fi[r * 29 + c] = (float)sin(0.37 * r * c + 0.11 * r + 0.5 * c);
            fr[r * 29 + c] = (float)(0.8 * cos(0.23 * r * r + 0.71 * c) + 0.1 * c);
        }
    const double want = 99.81141071215241;
    CHECK_NEAR(fmd(fi, fr, 29, 29), want, 1e-5 * want);
}

/* Fewer rows than columns, more, and square: the SVD form agrees with the
 * literal formula.  The literal one is the less exact of the two where the
 * covariances are rank-deficient (always here: rank <= h - 1): the zero
 * eigenvalues of sqrt(Si) Sr sqrt(Si) come out as +-rounding, and their
 * square roots as ~1e-8 of the scale, hence the bound.  The exact cases
 * (identical inputs, the hand 2x2, the closed forms) hold maa_fmd to 1e-9
 * and below. */
static void test_matches_literal_formula(void)
{
    const int shapes[][2] = {{5, 12}, {12, 5}, {29, 29}, {2, 7}};
    for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) {
        const int h = shapes[k][0], n = shapes[k][1];
        float fi[29 * 29], fr[29 * 29];
        fill(fi, h * n, 11 + (uint32_t)k);
        fill(fr, h * n, 97 + (uint32_t)k);
        for (int i = 0; i < h * n; i++)
            fr[i] = 0.5f * fr[i] + 0.5f * fi[i];
        double want = fmd_literal(fi, fr, h, n), got = fmd(fi, fr, h, n);
        CHECK(fabs(got - want) <= 1e-7 * fmax(1.0, fabs(want)), "%dx%d: %.12g vs literal %.12g",
              h, n, got, want);
    }
}

static void test_refusals(void)
{
    float a[29 * 29], b[29 * 29];
    fill(a, 29 * 29, 5);
    memcpy(b, a, sizeof a);
    double d = 42;
    char err[MAA_ERRLEN] = "";

    CHECK(maa_fmd(a, b, 1, 29, &d, err, sizeof err) == MAA_ERR, "accepted");
    CHECK(strstr(err, "at least 2 rows"), "%s", err);
    CHECK(maa_fmd(a, b, 0, 29, &d, err, sizeof err) == MAA_ERR, "accepted");

    b[3 * 29 + 4] = NAN;
    CHECK(maa_fmd(a, b, 29, 29, &d, err, sizeof err) == MAA_ERR, "accepted");
    CHECK(strstr(err, "f(r)") && strstr(err, "row 3") && strstr(err, "column 4"),
          "%s", err);
    a[0] = INFINITY;
    CHECK(maa_fmd(a, b, 29, 29, &d, err, sizeof err) == MAA_ERR, "accepted");
    CHECK(strstr(err, "f(x)") && strstr(err, "non-finite"), "%s", err);
    CHECK(d == 42, "output written on error");
    /* err may be NULL */
    CHECK(maa_fmd(a, b, 29, 29, &d, NULL, 0) == MAA_ERR, "accepted");
}

int main(void)
{
    RUN(test_identical_is_zero);
    RUN(test_hand_2x2);
    RUN(test_diagonal_closed_form);
    RUN(test_translation_invariance);
    RUN(test_symmetry);
    RUN(test_matches_scipy_sqrtm);
    RUN(test_matches_literal_formula);
    RUN(test_refusals);
    return CHECK_SUMMARY();
}
