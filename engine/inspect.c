/* inspect.c — one call from preprocessed images to judged parts: the
 * engine's reconstruction and Markov maps, the FMD score (contract §4), the
 * decision against the calibrated threshold (contract §5) and the defect mask
 * with its regions (contract §6).  All buffers are sized for the engine's largest
 * batch at creation (scratch per frame: the frames of a batch are judged in
 * parallel), so judging a batch allocates nothing but the FMD's scratch.
 * maa_inspect_frames hands 8-bit frames, resized or not, to a backend that
 * does preprocessing and mask on its device (cuda); only the score and the
 * region labelling of masks that have any pixel stay here. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/backend.h"

#define DEFAULT_WINDOW 7

struct maa_inspector {
    maa_engine *engine;
    maa_model_info info;
    int max_batch;
    float *recon, *fx, *fr, *varmap, *scratch;
    float *x, *peak;          /* maa_inspect_frames: host-preprocessed images, peaks */
    const uint8_t **frames;   /* maa_inspect_frames: the batch's frames */
    uint8_t *mask;
    int *labels;              /* per frame: the frames are judged in parallel */
    char *errs;               /* per frame: MAA_ERRLEN each */
    int host_maps;            /* recon and varmap hold the last batch's */
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
    in->scratch = malloc(n * 3 * s2 * sizeof(float));
    in->mask = calloc(n * s2, 1);
    in->labels = malloc(n * s2 * sizeof(int));
    in->errs = malloc(n * MAA_ERRLEN);
    in->x = malloc(n * in->info.channels * s2 * sizeof(float));
    in->peak = malloc(n * sizeof(float));
    in->frames = malloc(n * sizeof *in->frames);
    if (!in->recon || !in->fx || !in->fr || !in->varmap || !in->scratch || !in->mask ||
        !in->labels || !in->x || !in->peak || !in->frames || !in->errs) {
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
    free(in->x);
    free(in->peak);
    free(in->frames);
    free(in->errs);
    free(in);
}

maa_engine *maa_inspector_engine(maa_inspector *in) { return in->engine; }

/* The evidence of a judged frame and the verdict its rule gives. */
static void decide(const maa_calibration *cal, maa_result *r)
{
    if (!cal) {
        r->verdict = MAA_UNJUDGED;
        return;
    }
    r->evidence = (r->score > cal->threshold ? MAA_EVIDENCE_SCORE : 0) |
                  (r->regions_total > 0 ? MAA_EVIDENCE_MASK : 0);
    r->verdict = r->evidence & maa_rule_evidence(cal->rule) ? MAA_REJECT : MAA_PASS;
}

const char *maa_reason(const maa_result *r, maa_rule rule)
{
    const int score = r->evidence & MAA_EVIDENCE_SCORE, mask = r->evidence & MAA_EVIDENCE_MASK;
    if (r->verdict == MAA_REJECT) {
        if (rule == MAA_RULE_SCORE || (score && !mask))
            return "score above threshold";
        if (rule == MAA_RULE_MASK || !score)
            return "defect region in the mask";
        return "score above threshold and defect region in the mask";
    }
    if (rule == MAA_RULE_SCORE && mask)
        return "score at or below threshold (rule score ignores the mask region)";
    if (rule == MAA_RULE_MASK && score)
        return "no defect region in the mask (rule mask ignores the score above threshold)";
    if (rule == MAA_RULE_SCORE)
        return "score at or below threshold";
    if (rule == MAA_RULE_MASK)
        return "no defect region in the mask";
    return "score at or below threshold, no defect region in the mask";
}

/* Frame i of the batch in the engine's outputs: score, verdict, and on the
 * host path (x given) the variance map and its peak; then mask and regions. */
static int judge_one(maa_inspector *in, const maa_calibration *cal, const float *x, int i,
                     maa_result *r, char *err, size_t errlen)
{
    const int S = in->info.image_size, C = in->info.channels, M = in->info.markov_size;
    const size_t s2 = (size_t)S * S, m2 = (size_t)M * M;
    memset(r, 0, sizeof *r);
    if (maa_fmd(in->fx + i * m2, in->fr + i * m2, M, M, &r->score, err, errlen))
        return MAA_ERR;
    uint8_t *mask = in->mask + i * s2;
    int *labels = in->labels + i * s2;
    if (!x) {
        /* The device made the mask; most good parts have no pixel in it. */
        r->mask_peak = in->peak[i];
        if (cal && r->mask_peak > cal->pixel_threshold)
            maa_mask_regions(mask, S, cal->min_region_area, labels, r->regions, MAA_MAX_REGIONS,
                             &r->nregions, &r->regions_total);
        decide(cal, r);
        return MAA_OK;
    }
    float *m = in->varmap + i * s2;
    maa_varmap(x + i * C * s2, in->recon + i * C * s2, C, S,
               cal ? cal->mask_window : DEFAULT_WINDOW, m, in->scratch + 3 * i * s2);
    float peak = m[0];
    for (size_t p = 1; p < s2; p++)
        if (m[p] > peak)
            peak = m[p];
    r->mask_peak = peak;
    if (!cal)
        memset(mask, 0, s2);
    else
        maa_regions(m, S, cal->pixel_threshold, cal->min_region_area, mask, labels, r->regions,
                    MAA_MAX_REGIONS, &r->nregions, &r->regions_total);
    decide(cal, r);
    return MAA_OK;
}

/* judge_one for every frame, the frames spread over OpenMP's threads: the
 * FMD's SVD and the region labelling take ~0.1 ms a frame on the host, as
 * long as the GPU needs for a frame's whole network.  On failure, the first
 * failing frame's reason. */
static int judge(maa_inspector *in, const maa_calibration *cal, const float *x, int n,
                 maa_result *res, char *err, size_t errlen)
{
    int first = n;
#pragma omp parallel for schedule(static, 1) reduction(min : first) if (n > 1)
    for (int i = 0; i < n; i++)
        if (judge_one(in, cal, x, i, &res[i], in->errs + (size_t)i * MAA_ERRLEN, MAA_ERRLEN))
            first = i < first ? i : first;
    if (first < n) {
        maa_seterr(err, errlen, "%s", in->errs + (size_t)first * MAA_ERRLEN);
        return MAA_ERR;
    }
    return MAA_OK;
}

int maa_inspect(maa_inspector *in, const maa_calibration *cal, int n, const float *x,
                maa_result *res, char *err, size_t errlen)
{
    in->host_maps = 0;
    if (maa_engine_run(in->engine, n, x, in->recon, in->fx, in->fr, err, errlen))
        return MAA_ERR;
    int rc = judge(in, cal, x, n, res, err, errlen);
    in->host_maps = rc == MAA_OK;
    return rc;
}

int maa_inspector_takes_frame(const maa_inspector *in, const maa_image *img)
{
    const int S = in->info.image_size, ch = img->channels;
    /* Enlarging (a frame below S on an axis) stays on the host: no camera
     * worth calibrating for is smaller than the model. */
    return img->depth == 8 && img->width >= S && img->height >= S &&
           (size_t)img->width * img->height * ch <= maa_engine_frame_bytes(in->engine) &&
           (ch == 1 || ((ch == 3 || ch == 4) && in->info.channels == 3));
}

size_t maa_inspector_frame_bytes(const maa_inspector *in)
{
    return maa_engine_frame_bytes(in->engine);
}

uint8_t *maa_inspector_frame_buffer(maa_inspector *in, int i)
{
    return maa_engine_frame_buffer(in->engine, i);
}

/* Whether the batch can go to the backend's inspect: frames it takes, all
 * of one geometry and channel count. */
static int device_batch_ok(const maa_inspector *in, int n, const maa_image *frames)
{
    for (int i = 0; i < n; i++)
        if (!maa_inspector_takes_frame(in, &frames[i]) ||
            frames[i].width != frames[0].width || frames[i].height != frames[0].height ||
            frames[i].channels != frames[0].channels)
            return 0;
    return 1;
}

int maa_inspect_frames(maa_inspector *in, const maa_calibration *cal, int n,
                       const maa_image *frames, maa_result *res, char *err, size_t errlen)
{
    const int S = in->info.image_size, C = in->info.channels;
    const size_t s2 = (size_t)S * S;
    if (n < 1 || n > in->max_batch) {
        maa_seterr(err, errlen, "batch of %d frames, inspector built for 1..%d", n,
                   in->max_batch);
        return MAA_ERR;
    }
    if (!device_batch_ok(in, n, frames)) {
        for (int i = 0; i < n; i++)
            if (maa_preprocess(&frames[i], S, C, in->x + i * C * s2, err, errlen))
                return MAA_ERR;
        return maa_inspect(in, cal, n, in->x, res, err, errlen);
    }
    for (int i = 0; i < n; i++)
        in->frames[i] = frames[i].data;
    maa_device_batch b = {
        .n = n, .width = frames[0].width, .height = frames[0].height,
        .channels = frames[0].channels, .frames = in->frames,
        .window = cal ? cal->mask_window : DEFAULT_WINDOW,
        .t_pix = cal ? cal->pixel_threshold : INFINITY,
        .fx = in->fx, .fr = in->fr, .peak = in->peak, .mask = in->mask,
    };
    in->host_maps = 0;
    if (maa_engine_inspect(in->engine, &b, err, errlen))
        return MAA_ERR;
    return judge(in, cal, NULL, n, res, err, errlen);
}

const float *maa_inspector_recon(const maa_inspector *in, int i)
{
    if (!in->host_maps)
        return NULL;
    return in->recon + (size_t)i * in->info.channels * in->info.image_size * in->info.image_size;
}

const float *maa_inspector_markov(const maa_inspector *in, int i, int recon)
{
    size_t m2 = (size_t)in->info.markov_size * in->info.markov_size;
    return (recon ? in->fr : in->fx) + i * m2;
}

const float *maa_inspector_varmap(const maa_inspector *in, int i)
{
    if (!in->host_maps)
        return NULL;
    return in->varmap + (size_t)i * in->info.image_size * in->info.image_size;
}

const uint8_t *maa_inspector_mask(const maa_inspector *in, int i)
{
    return in->mask + (size_t)i * in->info.image_size * in->info.image_size;
}
