/* metrics.c — detection quality as the literature reports it: image and
 * pixel AUROC, and AUPRO (Bergmann et al., MVTec AD). */
#include <math.h>
#include <stdlib.h>

#include "engine/backend.h"

typedef struct {
    float s;
    int tag; /* label, or region id */
} item;

static int by_score_asc(const void *a, const void *b)
{
    float x = ((const item *)a)->s, y = ((const item *)b)->s;
    return x < y ? -1 : x > y;
}

static item *sorted_items(const float *scores, const uint8_t *labels, const int *region,
                          size_t n)
{
    item *it = malloc(n * sizeof *it);
    if (!it)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        it[i].s = scores[i];
        it[i].tag = labels ? labels[i] != 0 : region[i];
    }
    qsort(it, n, sizeof *it, by_score_asc);
    return it;
}

double maa_auroc(const float *scores, const uint8_t *labels, size_t n)
{
    item *it = sorted_items(scores, labels, NULL, n);
    if (!it)
        return NAN;
    /* Mann-Whitney U with mid-ranks for ties. */
    double rank_sum = 0, pos = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && it[j].s == it[i].s)
            j++;
        double mid = (double)(i + 1 + j) / 2.0, p = 0;
        for (size_t k = i; k < j; k++)
            p += it[k].tag;
        rank_sum += mid * p;
        pos += p;
        i = j;
    }
    free(it);
    double neg = (double)n - pos;
    if (pos == 0 || neg == 0)
        return NAN;
    return (rank_sum - pos * (pos + 1) / 2.0) / (pos * neg);
}

double maa_aupro(const float *scores, const int *region, size_t n, int nregions,
                 double fpr_limit)
{
    double *area = calloc((size_t)nregions + 1, sizeof *area);
    item *it = sorted_items(scores, NULL, region, n);
    if (!area || !it || nregions < 1) {
        free(area);
        free(it);
        return NAN;
    }
    for (size_t i = 0; i < n; i++)
        area[region[i]] += 1;
    double negatives = area[0];
    if (negatives == 0) {
        free(area);
        free(it);
        return NAN;
    }
    /* Lower the threshold one group of equal scores at a time: the curve
     * moves from (0, 0) to (fpr, pro) after each group. */
    double fp = 0, pro = 0, fpr_prev = 0, pro_prev = 0, integral = 0;
    for (size_t i = n; i > 0;) {
        size_t j = i;
        while (j > 0 && it[j - 1].s == it[i - 1].s)
            j--;
        for (size_t k = j; k < i; k++) {
            if (it[k].tag)
                pro += 1.0 / (area[it[k].tag] * nregions);
            else
                fp += 1;
        }
        i = j;
        double fpr = fp / negatives;
        if (fpr >= fpr_limit) {
            double t = fpr > fpr_prev ? (fpr_limit - fpr_prev) / (fpr - fpr_prev) : 0;
            double pro_at = pro_prev + t * (pro - pro_prev);
            integral += (fpr_limit - fpr_prev) * (pro_prev + pro_at) / 2;
            fpr_prev = fpr_limit;
            break;
        }
        integral += (fpr - fpr_prev) * (pro_prev + pro) / 2;
        fpr_prev = fpr;
        pro_prev = pro;
    }
    free(area);
    free(it);
    return integral / fpr_limit;
}
