/* engine.c — the backend registry and the engine handle.  The build-time
 * choice of backends lives here and nowhere else. */
#include <stdlib.h>
#include <string.h>

#include "engine/backend.h"

struct maa_engine {
    const maa_backend_ops *ops;
    maa_backend_kind kind;
    maa_precision precision;
    int max_batch;
    size_t frame_bytes;  /* maa_engine_frame_bytes */
    void *ctx;
};

static const char *const backend_names[] = {"auto", "ref", "cpu", "cuda"};
static const char *const precision_names[] = {"default", "f32", "f16", "bf16"};

static const maa_backend_ops *backend_ops(maa_backend_kind kind)
{
    switch (kind) {
    case MAA_BACKEND_REF: return &maa_backend_ref;
    case MAA_BACKEND_CPU: return &maa_backend_cpu;
#ifdef MAA_HAVE_CUDA
    case MAA_BACKEND_CUDA: return &maa_backend_cuda;
#endif
    default: return NULL;
    }
}

int maa_backend_parse(const char *name, maa_backend_kind *out)
{
    for (int i = 0; i < 4; i++)
        if (!strcmp(name, backend_names[i])) {
            *out = (maa_backend_kind)i;
            return MAA_OK;
        }
    return MAA_ERR;
}

const char *maa_backend_name(maa_backend_kind kind)
{
    return (unsigned)kind < 4 ? backend_names[kind] : "?";
}

int maa_precision_parse(const char *name, maa_precision *out)
{
    for (int i = 0; i < 4; i++)
        if (!strcmp(name, precision_names[i])) {
            *out = (maa_precision)i;
            return MAA_OK;
        }
    return MAA_ERR;
}

const char *maa_precision_name(maa_precision p)
{
    return (unsigned)p < 4 ? precision_names[p] : "?";
}

int maa_backend_available(maa_backend_kind kind, char *why, size_t whylen)
{
    if (kind == MAA_BACKEND_AUTO)
        return MAA_OK;
    const maa_backend_ops *ops = backend_ops(kind);
    if (!ops) {
        maa_seterr(why, whylen, "backend %s is not built into this maa",
                   maa_backend_name(kind));
        return MAA_ERR;
    }
    return ops->available(why, whylen);
}

int maa_engine_create(const maa_model *m, const maa_engine_opts *opts, maa_engine **out,
                      char *err, size_t errlen)
{
    *out = NULL;
    maa_engine_opts o = *opts;
    if (o.max_batch < 1)
        o.max_batch = 1;
    if (o.backend == MAA_BACKEND_AUTO)
        o.backend = maa_backend_available(MAA_BACKEND_CUDA, NULL, 0) == MAA_OK ? MAA_BACKEND_CUDA
                                                                               : MAA_BACKEND_CPU;
    char why[MAA_ERRLEN];
    if (maa_backend_available(o.backend, why, sizeof why)) {
        maa_seterr(err, errlen, "backend %s unavailable: %s", maa_backend_name(o.backend), why);
        return MAA_ERR;
    }
    if (o.precision == MAA_PREC_DEFAULT)
        o.precision = o.backend == MAA_BACKEND_CUDA ? MAA_PREC_F16 : MAA_PREC_F32;
    if (o.backend == MAA_BACKEND_REF && o.precision != MAA_PREC_F32) {
        maa_seterr(err, errlen, "backend ref computes in f32 only, not %s", maa_precision_name(o.precision));
        return MAA_ERR;
    }
    maa_engine *e = calloc(1, sizeof *e);
    if (!e) {
        maa_seterr(err, errlen, "out of memory");
        return MAA_ERR;
    }
    e->ops = backend_ops(o.backend);
    e->kind = o.backend;
    e->precision = o.precision;
    e->max_batch = o.max_batch;
    e->frame_bytes = e->ops->inspect ? maa_frame_capacity(maa_model_get_info(m), &o) : 0;
    if (e->ops->create(m, &o, &e->ctx, err, errlen)) {
        free(e);
        return MAA_ERR;
    }
    *out = e;
    return MAA_OK;
}

void maa_engine_free(maa_engine *e)
{
    if (!e)
        return;
    e->ops->destroy(e->ctx);
    free(e);
}

maa_backend_kind maa_engine_backend(const maa_engine *e) { return e->kind; }
maa_precision maa_engine_precision(const maa_engine *e) { return e->precision; }

void maa_engine_describe(const maa_engine *e, char *buf, size_t len)
{
    if (!len)
        return;
    buf[0] = 0;
    if (e->ops->describe)
        e->ops->describe(e->ctx, buf, len);
}

size_t maa_engine_frame_bytes(const maa_engine *e) { return e->frame_bytes; }

uint8_t *maa_engine_frame_buffer(maa_engine *e, int i)
{
    if (!e->ops->frame_buffer || i < 0 || i >= e->max_batch)
        return NULL;
    return e->ops->frame_buffer(e->ctx, i);
}

int maa_engine_inspect(maa_engine *e, const maa_device_batch *b, char *err, size_t errlen)
{
    if (!e->ops->inspect) {
        maa_seterr(err, errlen, "backend %s judges no 8-bit frames on a device",
                   e->ops->name);
        return MAA_ERR;
    }
    if (b->n < 1 || b->n > e->max_batch) {
        maa_seterr(err, errlen, "batch of %d frames, engine built for 1..%d", b->n, e->max_batch);
        return MAA_ERR;
    }
    return e->ops->inspect(e->ctx, b, err, errlen);
}

int maa_engine_run(maa_engine *e, int n, const float *x, float *recon, float *fx, float *fr,
                   char *err, size_t errlen)
{
    if (n < 1 || n > e->max_batch) {
        maa_seterr(err, errlen, "batch of %d images, engine built for 1..%d", n, e->max_batch);
        return MAA_ERR;
    }
    return e->ops->run(e->ctx, n, x, recon, fx, fr, err, errlen);
}
