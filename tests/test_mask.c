/* test_mask.c — variance map and defect regions (contract §6). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "tests/check.h"

#define S 20

static float xs[3 * S * S], rs[3 * S * S], m[S * S], scratch[3 * S * S];

static void test_constant_residual_is_zero(void)
{
    for (int i = 0; i < 3 * S * S; i++) {
        xs[i] = 0.5f;
        rs[i] = 0.2f;
    }
    maa_varmap(xs, rs, 3, S, 7, m, scratch);
    double worst = 0;
    for (int i = 0; i < S * S; i++)
        worst = fmax(worst, fabs(m[i]));
    CHECK(worst == 0, "max |m| = %g", worst);
}

/* One pixel with e = 1 (channel residuals 0.5, 1, 1.5), everything else 0.
 * A window of k pixels containing it has E[e] = 1/k, E[e^2] = 1/k, so
 * v = 1/k - 1/k^2.  Interior: k = 49.  At the corner (0,0), 7x7 window,
 * the pixel at (1,1): the window inside the image is rows 0..3 x cols 0..3,
 * k = 16. */
static void test_single_pixel(void)
{
    memset(xs, 0, sizeof xs);
    memset(rs, 0, sizeof rs);
    int p = 1 * S + 1, q = 10 * S + 10;
    xs[p] = 0.5f, xs[S * S + p] = -1.0f, xs[2 * S * S + p] = 1.5f;
    xs[q] = 0.5f, xs[S * S + q] = -1.0f, xs[2 * S * S + q] = 1.5f;
    maa_varmap(xs, rs, 3, S, 7, m, scratch);
    double v49 = 1.0 / 49 - 1.0 / (49.0 * 49), v16 = 1.0 / 16 - 1.0 / 256;
    CHECK_NEAR(m[10 * S + 10], v49 * v49, 1e-9);
    CHECK_NEAR(m[12 * S + 13], v49 * v49, 1e-9);   /* (13,12) sees only q */
    CHECK_NEAR(m[0], v16 * v16, 1e-9);              /* corner sees only p */
    /* (4,4): full window rows/cols 1..7 holds p, not q */
    CHECK_NEAR(m[4 * S + 4], v49 * v49, 1e-9);
    /* (7,7): window 4..10 contains q only */
    CHECK_NEAR(m[7 * S + 7], v49 * v49, 1e-9);
    /* (5,5): window 2..8, neither */
    CHECK_NEAR(m[5 * S + 5], 0, 1e-12);
    /* bottom-right corner: window rows/cols 16..19, k = 16, nothing */
    CHECK_NEAR(m[S * S - 1], 0, 1e-12);
}

static double brute(const float *e, int s, int w, int y, int x)
{
    double a = 0, b = 0;
    int k = 0;
    for (int yy = y - w / 2; yy <= y + w / 2; yy++)
        for (int xx = x - w / 2; xx <= x + w / 2; xx++) {
            if (yy < 0 || xx < 0 || yy >= s || xx >= s)
                continue;
            double v = e[yy * s + xx];
            a += v;
            b += v * v;
            k++;
        }
    double v = b / k - (a / k) * (a / k);
    return v * v;
}

static void test_brute_force(void)
{
    uint32_t seed = 12345;
    for (int i = 0; i < 3 * S * S; i++) {
        seed = seed * 1664525u + 1013904223u;
        xs[i] = (float)(seed >> 8) / (1 << 24) * 2 - 1;
        seed = seed * 1664525u + 1013904223u;
        rs[i] = (float)(seed >> 8) / (1 << 24) * 2 - 1;
    }
    float e[S * S];
    for (int c = 1; c <= 3; c += 2) {
        for (int p = 0; p < S * S; p++) {
            double a = 0;
            for (int ch = 0; ch < c; ch++)
                a += fabs(xs[ch * S * S + p] - rs[ch * S * S + p]);
            e[p] = (float)(a / c);
        }
        for (int w = 3; w <= 9; w += 2) {
            maa_varmap(xs, rs, c, S, w, m, scratch);
            double worst = 0;
            for (int y = 0; y < S; y++)
                for (int x = 0; x < S; x++)
                    worst = fmax(worst, fabs(m[y * S + x] - brute(e, S, w, y, x)));
            CHECK(worst <= 1e-6, "c=%d w=%d: max error %g", c, w, worst);
        }
    }
}

static uint8_t mask[S * S];
static int labels[S * S];

static void set_rect(int x, int y, int w, int h, float v)
{
    for (int yy = y; yy < y + h; yy++)
        for (int xx = x; xx < x + w; xx++)
            m[yy * S + xx] = v;
}

static void test_regions(void)
{
    memset(m, 0, sizeof m);
    set_rect(2, 3, 4, 3, 1.0f);            /* A: 4x3, area 12 */
    set_rect(12, 10, 1, 4, 0.6f);          /* B: L shape, area 6 */
    set_rect(13, 13, 2, 1, 0.7f);
    m[18 * S + 1] = 2.0f;                  /* tiny: area 1 */
    m[0 * S + 19] = 0.5f;                  /* == threshold: not in mask */
    maa_region rg[4];
    int nreg = -1, total = -1;
    CHECK(maa_regions(m, S, 0.5, 3, mask, labels, rg, 4, &nreg, &total) == MAA_OK,
          "failed");
    CHECK(total == 2 && nreg == 2, "total %d stored %d", total, nreg);
    CHECK(rg[0].x == 2 && rg[0].y == 3 && rg[0].w == 4 && rg[0].h == 3 &&
          rg[0].area == 12, "A: %d %d %d %d %d", rg[0].x, rg[0].y, rg[0].w,
          rg[0].h, rg[0].area);
    CHECK(rg[1].x == 12 && rg[1].y == 10 && rg[1].w == 3 && rg[1].h == 4 &&
          rg[1].area == 6, "B: %d %d %d %d %d", rg[1].x, rg[1].y, rg[1].w,
          rg[1].h, rg[1].area);
    int on = 0;
    for (int i = 0; i < S * S; i++) {
        CHECK(mask[i] == 0 || mask[i] == 255, "mask value %d", mask[i]);
        on += mask[i] == 255;
    }
    CHECK(on == 18, "%d mask pixels", on);
    CHECK(mask[18 * S + 1] == 0, "tiny region left in the mask");
    CHECK(mask[19] == 0, "pixel equal to the threshold in the mask");
    CHECK(mask[4 * S + 3] == 255 && mask[13 * S + 14] == 255, "region pixel missing");

    /* Only the largest is stored when there is room for one. */
    CHECK(maa_regions(m, S, 0.5, 3, mask, labels, rg, 1, &nreg, &total) == MAA_OK,
          "failed");
    CHECK(total == 2 && nreg == 1 && rg[0].area == 12, "total %d stored %d "
          "area %d", total, nreg, rg[0].area);
    /* The smaller region first in raster order still sorts second. */
    memset(m, 0, sizeof m);
    set_rect(0, 0, 2, 1, 1);
    set_rect(10, 10, 3, 3, 1);
    CHECK(maa_regions(m, S, 0.5, 1, mask, labels, rg, 4, &nreg, &total) == MAA_OK,
          "failed");
    CHECK(nreg == 2 && rg[0].area == 9 && rg[1].area == 2, "%d: %d %d", nreg,
          rg[0].area, rg[1].area);
}

static void test_diagonal_is_connected(void)
{
    memset(m, 0, sizeof m);
    m[5 * S + 5] = m[6 * S + 6] = m[7 * S + 7] = 1;   /* a diagonal line */
    m[5 * S + 13] = m[6 * S + 12] = 1;                /* anti-diagonal pair */
    maa_region rg[4];
    int nreg, total;
    CHECK(maa_regions(m, S, 0, 1, mask, labels, rg, 4, &nreg, &total) == MAA_OK,
          "failed");
    CHECK(total == 2, "%d regions", total);
    CHECK(rg[0].area == 3 && rg[0].x == 5 && rg[0].y == 5 && rg[0].w == 3 &&
          rg[0].h == 3, "diagonal: %d at %d,%d %dx%d", rg[0].area, rg[0].x,
          rg[0].y, rg[0].w, rg[0].h);
    CHECK(rg[1].area == 2 && rg[1].x == 12 && rg[1].y == 5 && rg[1].w == 2 &&
          rg[1].h == 2, "anti-diagonal: %d at %d,%d %dx%d", rg[1].area,
          rg[1].x, rg[1].y, rg[1].w, rg[1].h);
    /* a whole image above threshold is one region */
    for (int i = 0; i < S * S; i++)
        m[i] = 1;
    CHECK(maa_regions(m, S, 0, 1, mask, labels, rg, 4, &nreg, &total) == MAA_OK,
          "failed");
    CHECK(total == 1 && rg[0].area == S * S && rg[0].w == S && rg[0].h == S,
          "%d regions, area %d", total, rg[0].area);
}

/* The region score against its definition: on random maps (with ties),
 * maa_regions at threshold t keeps a region of min_area exactly when
 * t < score, checked at the score, just below it, and at every value of
 * the map. */
static void test_region_score(void)
{
    static int rscratch[3 * S * S];
    maa_region rg[4];
    int nreg, total, bad = 0;
    unsigned seed = 12345;
    for (int trial = 0; trial < 60; trial++) {
        for (int i = 0; i < S * S; i++) {
            seed = seed * 1103515245u + 12345u;
            /* Few levels, so that ties and plateaus are common. */
            m[i] = (float)((seed >> 16) % (trial % 2 ? 7 : 1000)) / 8.0f;
        }
        int area = 1 + trial % 23;
        double t = maa_region_score(m, S, area, rscratch);
        maa_regions(m, S, t, area, mask, labels, rg, 4, &nreg, &total);
        bad += total != 0;
        maa_regions(m, S, nextafter(t, -INFINITY), area, mask, labels, rg, 4, &nreg, &total);
        bad += total == 0;
        for (int i = 0; i < S * S; i += 7) {
            maa_regions(m, S, m[i], area, mask, labels, rg, 4, &nreg, &total);
            bad += (total > 0) != (m[i] < t);
        }
    }
    CHECK(bad == 0, "%d disagreements with maa_regions", bad);
    /* min_area 1: the peak. */
    memset(m, 0, sizeof m);
    m[37] = 3.5f;
    m[38] = 2.0f;
    CHECK(maa_region_score(m, S, 1, rscratch) == 3.5, "peak");
    CHECK(maa_region_score(m, S, 2, rscratch) == 2.0, "second pixel of the pair");
    CHECK(maa_region_score(m, S, 3, rscratch) == 0, "a third pixel only at 0");
    CHECK(maa_region_score(m, S, S * S + 1, rscratch) == 0, "larger than the image");
}

int main(void)
{
    RUN(test_constant_residual_is_zero);
    RUN(test_single_pixel);
    RUN(test_brute_force);
    RUN(test_regions);
    RUN(test_diagonal_is_connected);
    RUN(test_region_score);
    return CHECK_SUMMARY();
}
