/* helper_metrics.c — reads "score label region" lines on stdin and prints
 * the AUROC of score vs label and the AUPRO(0.3) of score vs region, for
 * tests/test_metrics.py to compare with scikit-learn and a NumPy reference. */
#include <stdio.h>
#include <stdlib.h>

#include "engine/engine.h"

int main(void)
{
    size_t n = 0, cap = 1024;
    float *s = malloc(cap * sizeof *s);
    uint8_t *l = malloc(cap);
    int *r = malloc(cap * sizeof *r), nreg = 0;
    float sv;
    int lv, rv;
    while (s && l && r && scanf("%f %d %d", &sv, &lv, &rv) == 3) {
        if (n == cap) {
            cap *= 2;
            s = realloc(s, cap * sizeof *s);
            l = realloc(l, cap);
            r = realloc(r, cap * sizeof *r);
            if (!s || !l || !r)
                return 1;
        }
        s[n] = sv, l[n] = (uint8_t)lv, r[n] = rv;
        nreg = rv > nreg ? rv : nreg;
        n++;
    }
    printf("%.17g %.17g\n", maa_auroc(s, l, n), maa_aupro(s, r, n, nreg, 0.3));
    return 0;
}
