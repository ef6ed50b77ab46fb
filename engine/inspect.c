/* inspect.c — one call from preprocessed images to judged parts: the
 * engine's reconstruction and Markov maps, the FMD score (SPEC §4), the
 * decision against the calibrated threshold (SPEC §5) and the defect mask
 * with its regions (SPEC §6).  All buffers are sized for the engine's largest
 * batch at creation, so judging a batch allocates nothing but LAPACK's
 * scratch. */
#include <stdlib.h>
#include <string.h>

#include "engine/backend.h"

#define DEFAULT_WINDOW 7

struct maa_inspector {
    maa_engine *engine;
    maa_model_info info;
    int max_batch;
    float *recon, *fx, *fr, *varmap, *scratch;
    uint8_t *mask;
    int *labels;
};

int maa_inspector_create(const maa_model *m, const maa_engine_opts *opts,
                         maa_inspector **out, char *err, size_t errlen)
{
    *out = NULL;
    maa_inspector *in = calloc(1, sizeof *in);
    if (!in) {
        maa_seterr(err, errlen, "out of memory");
        return MAA_ERR;
    }
    if (maa_engine_create(m, opts, &in->engine, err, errlen)) {
        free(in);
        return MAA_ERR;
    }
    in->info = *maa_model_get_info(m);
    in->max_batch = opts->max_batch < 1 ? 1 : opts->max_batch;
    const size_t n = (size_t)in->max_batch, s2 = (size_t)in->info.image_size * in->info.image_size,
                 m2 = (size_t)in->info.markov_size * in->info.markov_size;
    in->recon = malloc(n * in->info.channels * s2 * sizeof(float));
    in->fx = malloc(n * m2 * sizeof(float));
    in->fr = malloc(n * m2 * sizeof(float));
    in->varmap = malloc(n * s2 * sizeof(float));
    in->scratch = malloc(3 * s2 * sizeof(float));
    in->mask = calloc(n * s2, 1);
    in->labels = malloc(s2 * sizeof(int));
    if (!in->recon || !in->fx || !in->fr || !in->varmap || !in->scratch || !in->mask ||
        !in->labels) {
        maa_inspector_free(in);
        maa_seterr(err, errlen, "out of memory for inspection buffers (batch %d)", (int)n);
        return MAA_ERR;
    }
    *out = in;
    return MAA_OK;
}

void maa_inspector_free(maa_inspector *in)
{
    if (!in)
        return;
    maa_engine_free(in->engine);
    free(in->recon);
    free(in->fx);
    free(in->fr);
    free(in->varmap);
    free(in->scratch);
    free(in->mask);
    free(in->labels);
    free(in);
}

maa_engine *maa_inspector_engine(maa_inspector *in) { return in->engine; }

int maa_inspect(maa_inspector *in, const maa_calibration *cal, int n, const float *x,
                maa_result *res, char *err, size_t errlen)
{
    const int S = in->info.image_size, C = in->info.channels, M = in->info.markov_size;
    const size_t s2 = (size_t)S * S, m2 = (size_t)M * M;
    if (maa_engine_run(in->engine, n, x, in->recon, in->fx, in->fr, err, errlen))
        return MAA_ERR;
    for (int i = 0; i < n; i++) {
        maa_result *r = &res[i];
        memset(r, 0, sizeof *r);
        if (maa_fmd(in->fx + i * m2, in->fr + i * m2, M, M, &r->score, err, errlen))
            return MAA_ERR;
        float *m = in->varmap + i * s2;
        maa_varmap(x + i * C * s2, in->recon + i * C * s2, C, S,
                   cal ? cal->mask_window : DEFAULT_WINDOW, m, in->scratch);
        float peak = m[0];
        for (size_t p = 1; p < s2; p++)
            if (m[p] > peak)
                peak = m[p];
        r->mask_peak = peak;
        uint8_t *mask = in->mask + i * s2;
        if (!cal) {
            r->verdict = MAA_UNJUDGED;
            memset(mask, 0, s2);
            continue;
        }
        r->verdict = r->score > cal->threshold ? MAA_REJECT : MAA_PASS;
        maa_regions(m, S, cal->pixel_threshold, cal->min_region_area, mask, in->labels,
                    r->regions, MAA_MAX_REGIONS, &r->nregions, &r->regions_total);
    }
    return MAA_OK;
}

const float *maa_inspector_recon(const maa_inspector *in, int i)
{
    return in->recon + (size_t)i * in->info.channels * in->info.image_size * in->info.image_size;
}

const float *maa_inspector_markov(const maa_inspector *in, int i, int recon)
{
    size_t m2 = (size_t)in->info.markov_size * in->info.markov_size;
    return (recon ? in->fr : in->fx) + i * m2;
}

const float *maa_inspector_varmap(const maa_inspector *in, int i)
{
    return in->varmap + (size_t)i * in->info.image_size * in->info.image_size;
}

const uint8_t *maa_inspector_mask(const maa_inspector *in, int i)
{
    return in->mask + (size_t)i * in->info.image_size * in->info.image_size;
}
