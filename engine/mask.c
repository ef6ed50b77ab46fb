/* mask.c — the defect mask (contract §6): local variance of the residual,
 * squared, thresholded, split into 8-connected regions. */
#include <math.h>
#include <stdlib.h>

#include "engine/backend.h"
#include "engine/pixel.h"

/* maa_box_mean of every element of a line of n values, stride apart. */
static void box_mean(const float *in, float *out, int n, int stride, int half)
{
    for (int i = 0; i < n; i++)
        out[(size_t)i * stride] = maa_box_mean(in, i, n, (size_t)stride, half);
}

void maa_varmap(const float *x, const float *r, int c, int s, int window,
                float *m, float *scratch)
{
    size_t ss = (size_t)s * s;
    int half = window / 2;
    float *e = scratch, *he = scratch + ss, *he2 = scratch + 2 * ss;

    for (size_t p = 0; p < ss; p++) {
        float acc = 0;
        for (int ch = 0; ch < c; ch++)
            acc += fabsf(x[ch * ss + p] - r[ch * ss + p]);
        e[p] = acc / c;
    }
    /* Horizontal means of e and of e^2 (the latter via m as a row buffer). */
    for (int y = 0; y < s; y++) {
        float *row = e + (size_t)y * s, *sq = m + (size_t)y * s;
        for (int xx = 0; xx < s; xx++)
            sq[xx] = maa_fmul(row[xx], row[xx]);
        box_mean(row, he + (size_t)y * s, s, 1, half);
        box_mean(sq, he2 + (size_t)y * s, s, 1, half);
    }
    /* Vertical means: E_w[e] into e, E_w[e^2] into m. */
    for (int xx = 0; xx < s; xx++) {
        box_mean(he + xx, e + xx, s, s, half);
        box_mean(he2 + xx, m + xx, s, s, half);
    }
    for (size_t p = 0; p < ss; p++)
        m[p] = maa_var_square(m[p], e[p]);
}

/* Region bookkeeping in the mask itself while labelling: 255 = above the
 * threshold and not yet visited, 1 = queued in the current flood fill,
 * 2 = in a region that is kept (turned back into 255 at the end). */
enum { PX_OFF = 0, PX_QUEUED = 1, PX_KEPT = 2, PX_ON = 255 };

static void insert_region(maa_region *regions, int max_regions, int *stored,
                          maa_region r)
{
    /* Largest first; among equal areas, the one found first (raster order
     * of its first pixel) stays first. */
    int i = *stored;
    if (i == max_regions) {
        if (max_regions == 0 || regions[i - 1].area >= r.area)
            return;
        i--;
    } else {
        (*stored)++;
    }
    while (i > 0 && regions[i - 1].area < r.area) {
        regions[i] = regions[i - 1];
        i--;
    }
    regions[i] = r;
}

int maa_regions(const float *m, int s, double t_pix, int min_area,
                uint8_t *mask, int *labels, maa_region *regions,
                int max_regions, int *nregions, int *total)
{
    if (s < 1 || max_regions < 0 || (max_regions > 0 && !regions))
        return MAA_ERR;
    size_t ss = (size_t)s * s;
    for (size_t p = 0; p < ss; p++)
        mask[p] = m[p] > t_pix ? PX_ON : PX_OFF;
    maa_mask_regions(mask, s, min_area, labels, regions, max_regions, nregions, total);
    return MAA_OK;
}

void maa_mask_regions(uint8_t *mask, int s, int min_area, int *labels, maa_region *regions,
                      int max_regions, int *nregions, int *total)
{
    const size_t ss = (size_t)s * s;
    int stored = 0, kept = 0;
    /* labels is the flood-fill queue: every pixel of the region being filled
     * is in labels[0 .. tail) once the fill ends. */
    for (size_t seed = 0; seed < ss; seed++) {
        if (mask[seed] != PX_ON)
            continue;
        size_t head = 0, tail = 0;
        int x0 = s, y0 = s, x1 = -1, y1 = -1;
        labels[tail++] = (int)seed;
        mask[seed] = PX_QUEUED;
        while (head < tail) {
            int p = labels[head++], py = p / s, px = p % s;
            if (px < x0) x0 = px;
            if (px > x1) x1 = px;
            if (py < y0) y0 = py;
            if (py > y1) y1 = py;
            for (int dy = -1; dy <= 1; dy++)
                for (int dx = -1; dx <= 1; dx++) {
                    int qx = px + dx, qy = py + dy;
                    if (qx < 0 || qy < 0 || qx >= s || qy >= s)
                        continue;
                    size_t q = (size_t)qy * s + qx;
                    if (mask[q] == PX_ON) {
                        mask[q] = PX_QUEUED;
                        labels[tail++] = (int)q;
                    }
                }
        }
        int area = (int)tail;
        uint8_t mark = area < min_area ? PX_OFF : PX_KEPT;
        for (size_t i = 0; i < tail; i++)
            mask[labels[i]] = mark;
        if (mark == PX_KEPT) {
            kept++;
            maa_region r = {x0, y0, x1 - x0 + 1, y1 - y0 + 1, area};
            insert_region(regions, max_regions, &stored, r);
        }
    }
    for (size_t p = 0; p < ss; p++)
        if (mask[p] == PX_KEPT)
            mask[p] = PX_ON;
    if (nregions)
        *nregions = stored;
    if (total)
        *total = kept;
}

/* Pixels by value, largest first (qsort_r: judging runs on many threads). */
static int by_value_desc(const void *a, const void *b, void *values)
{
    const float *v = values;
    float x = v[*(const int *)a], y = v[*(const int *)b];
    return (x < y) - (x > y);
}

static int find_root(int *parent, int p)
{
    while (parent[p] != p) {
        parent[p] = parent[parent[p]];
        p = parent[p];
    }
    return p;
}

double maa_region_score(const float *m, int s, int min_area, int *scratch)
{
    const int ss = s * s;
    if (min_area < 1)
        min_area = 1;
    if (ss < min_area)
        return 0;
    /* Pixels join the picture from the largest value down, each merged with
     * its 8 neighbours already in (union-find with sizes).  The value at
     * which some component first holds min_area pixels is the score: every
     * pixel above it was in and no component was that large, so a threshold
     * at or above it keeps no region, and any threshold below it keeps that
     * component. */
    int *order = scratch, *parent = scratch + ss, *size = scratch + 2 * ss;
    for (int p = 0; p < ss; p++) {
        order[p] = p;
        parent[p] = -1;
    }
    qsort_r(order, (size_t)ss, sizeof *order, by_value_desc, (void *)m);
    for (int i = 0; i < ss; i++) {
        int p = order[i], py = p / s, px = p % s;
        parent[p] = p;
        size[p] = 1;
        int root = p;
        for (int dy = -1; dy <= 1; dy++)
            for (int dx = -1; dx <= 1; dx++) {
                int qx = px + dx, qy = py + dy;
                if ((dx == 0 && dy == 0) || qx < 0 || qy < 0 || qx >= s || qy >= s)
                    continue;
                int q = qy * s + qx;
                if (parent[q] < 0)
                    continue;
                int rq = find_root(parent, q);
                if (rq == root)
                    continue;
                if (size[rq] > size[root]) {
                    int t = rq;
                    rq = root;
                    root = t;
                }
                parent[rq] = root;
                size[root] += size[rq];
            }
        if (size[root] >= min_area)
            return m[p];
    }
    return 0;
}
