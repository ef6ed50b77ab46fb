/* ref.c — the reference backend: the network of contract §2 written as plainly
 * as C allows, one image at a time, float32 with the literal operations
 * (BN applied as (x - mean) / sqrt(var + eps) * gamma + beta, the ConvLSTM on
 * the concatenation of z and the stored h0).  It is the oracle the fast
 * backends are tested against, so clarity wins over speed here; the only
 * concession to speed is the loop order of the convolution, whose inner loop
 * runs along an output row so that the compiler can vectorise it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/backend.h"

typedef struct {
    int c, h, w;
    float *d;
} act_t;

typedef struct {
    const maa_model *m;
    maa_model_info info;
    maa_conv_desc l[MAA_NET_LAYERS];
    size_t cap;          /* floats in each work buffer */
    float *buf[4];
} ref_ctx;

static const float *W(const ref_ctx *c, const char *prefix, const char *what)
{
    char name[64];
    snprintf(name, sizeof name, "%s.%s", prefix, what);
    return maa_model_tensor(c->m, name, NULL, NULL);
}

/* out = conv(in) (+ bias), out sized by maa_conv_out_size. */
static void conv2d(const maa_conv_desc *l, const float *wt, const float *bias,
                   const act_t *in, act_t *out)
{
    int ho, wo;
    maa_conv_out_size(l, in->h, in->w, &ho, &wo);
    out->c = l->cout;
    out->h = ho;
    out->w = wo;
    const int s = l->stride, hw = ho * wo;
    for (int o = 0; o < l->cout; o++) {
        float *dst = out->d + (size_t)o * hw;
        float b0 = bias ? bias[o] : 0.0f;
        for (int p = 0; p < hw; p++)
            dst[p] = b0;
        for (int i = 0; i < l->cin; i++) {
            const float *src = in->d + (size_t)i * in->h * in->w;
            for (int ky = 0; ky < l->kh; ky++)
                for (int kx = 0; kx < l->kw; kx++) {
                    float wv = wt[(((size_t)o * l->cin + i) * l->kh + ky) * l->kw + kx];
                    /* Output columns whose input column ox*s - pw + kx lies inside. */
                    int x0 = l->pw - kx > 0 ? (l->pw - kx + s - 1) / s : 0;
                    int last = in->w - 1 + l->pw - kx;
                    if (last < 0)
                        continue;
                    int x1 = last / s;
                    if (x1 > wo - 1)
                        x1 = wo - 1;
                    for (int oy = 0; oy < ho; oy++) {
                        int iy = oy * s - l->ph + ky;
                        if (iy < 0 || iy >= in->h)
                            continue;
                        const float *row = src + (size_t)iy * in->w - l->pw + kx;
                        float *d = dst + (size_t)oy * wo;
                        for (int ox = x0; ox <= x1; ox++)
                            d[ox] += wv * row[ox * s];
                    }
                }
        }
    }
}

/* Transposed convolution: every input pixel scatters its kernel into the
 * output at (iy*s - ph + ky, ix*s - pw + kx). */
static void deconv2d(const maa_conv_desc *l, const float *wt, const act_t *in, act_t *out)
{
    int ho, wo;
    maa_conv_out_size(l, in->h, in->w, &ho, &wo);
    out->c = l->cout;
    out->h = ho;
    out->w = wo;
    memset(out->d, 0, (size_t)l->cout * ho * wo * sizeof(float));
    const int s = l->stride;
    for (int i = 0; i < l->cin; i++) {
        const float *src = in->d + (size_t)i * in->h * in->w;
        for (int o = 0; o < l->cout; o++) {
            float *dst = out->d + (size_t)o * ho * wo;
            for (int ky = 0; ky < l->kh; ky++)
                for (int kx = 0; kx < l->kw; kx++) {
                    float wv = wt[(((size_t)i * l->cout + o) * l->kh + ky) * l->kw + kx];
                    for (int iy = 0; iy < in->h; iy++) {
                        int oy = iy * s - l->ph + ky;
                        if (oy < 0 || oy >= ho)
                            continue;
                        for (int ix = 0; ix < in->w; ix++) {
                            int ox = ix * s - l->pw + kx;
                            if (ox >= 0 && ox < wo)
                                dst[(size_t)oy * wo + ox] += wv * src[(size_t)iy * in->w + ix];
                        }
                    }
                }
        }
    }
}

static void batchnorm(const ref_ctx *c, const char *bn, act_t *a)
{
    const float *g = W(c, bn, "weight"), *b = W(c, bn, "bias"),
                *mean = W(c, bn, "running_mean"), *var = W(c, bn, "running_var");
    size_t hw = (size_t)a->h * a->w;
    for (int k = 0; k < a->c; k++) {
        float inv = 1.0f / sqrtf(var[k] + (float)c->info.bn_eps);
        float *p = a->d + k * hw;
        for (size_t i = 0; i < hw; i++)
            p[i] = (p[i] - mean[k]) * inv * g[k] + b[k];
    }
}

static void activate(maa_act act, float slope, act_t *a)
{
    size_t n = (size_t)a->c * a->h * a->w;
    for (size_t i = 0; i < n; i++) {
        float v = a->d[i];
        switch (act) {
        case MAA_ACT_RELU: a->d[i] = v > 0 ? v : 0; break;
        case MAA_ACT_LRELU: a->d[i] = v > 0 ? v : slope * v; break;
        case MAA_ACT_TANH: a->d[i] = tanhf(v); break;
        case MAA_ACT_NONE: break;
        }
    }
}

/* One layer of the table: conv or transposed conv, BN, activation. */
static void layer(const ref_ctx *c, int idx, const act_t *in, act_t *out)
{
    const maa_conv_desc *l = &c->l[idx];
    const float *wt = W(c, l->name, "weight");
    if (l->transposed)
        deconv2d(l, wt, in, out);
    else
        conv2d(l, wt, l->has_bias ? W(c, l->name, "bias") : NULL, in, out);
    if (l->bn[0])
        batchnorm(c, l->bn, out);
    activate(l->act, (float)c->info.lrelu_slope, out);
}

static float sigm(float v) { return 1.0f / (1.0f + expf(-v)); }

/* y = x + BN2(conv2(ReLU(BN1(conv1(x))))), in place on x. */
static void residual(const ref_ctx *c, int k, act_t *x, act_t *t1, act_t *t2)
{
    layer(c, maa_net_res(k), x, t1);
    layer(c, maa_net_res(k) + 1, t1, t2);
    size_t n = (size_t)x->c * x->h * x->w;
    for (size_t i = 0; i < n; i++)
        x->d[i] += t2->d[i];
}

/* ConvLSTM step from the stored state: output h' into z. */
static void memory(const ref_ctx *c, act_t *z, act_t *cat, act_t *gates)
{
    const maa_model *m = c->m;
    const size_t hw = (size_t)z->h * z->w, ch = (size_t)z->c;
    const float *h0 = maa_model_tensor(m, "g.mem.h0", NULL, NULL);
    const float *c0 = maa_model_tensor(m, "g.mem.c0", NULL, NULL);
    cat->c = 2 * z->c;
    cat->h = z->h;
    cat->w = z->w;
    memcpy(cat->d, z->d, ch * hw * sizeof(float));
    memcpy(cat->d + ch * hw, h0, ch * hw * sizeof(float));
    layer(c, MAA_NET_MEM, cat, gates);
    const float *gi = gates->d, *gf = gi + ch * hw, *go = gf + ch * hw, *gg = go + ch * hw;
    for (size_t p = 0; p < ch * hw; p++) {
        float cn = sigm(gf[p]) * c0[p] + sigm(gi[p]) * tanhf(gg[p]);
        z->d[p] = sigm(go[p]) * tanhf(cn);
    }
}

static void generator(const ref_ctx *c, const float *x, float *recon)
{
    const int S = c->info.image_size, C = c->info.channels;
    act_t in = {C, S, S, (float *)x}, a = {0, 0, 0, c->buf[0]}, b = {0, 0, 0, c->buf[1]},
          t1 = {0, 0, 0, c->buf[2]}, t2 = {0, 0, 0, c->buf[3]};
    layer(c, MAA_NET_ENC + 0, &in, &a);
    for (int k = 1; k < 5; k++) {
        layer(c, MAA_NET_ENC + k, &a, &b);
        act_t t = a;
        a = b;
        b = t;
    }
    for (int k = 0; k < 3; k++)
        residual(c, k, &a, &t1, &t2);
    memory(c, &a, &t1, &t2);
    for (int k = 3; k < 6; k++)
        residual(c, k, &a, &t1, &t2);
    for (int k = 0; k < 4; k++) {
        layer(c, MAA_NET_DEC + k, &a, &b);
        act_t t = a;
        a = b;
        b = t;
    }
    act_t out = {C, S, S, recon};
    layer(c, MAA_NET_DEC + 4, &a, &out);
}

static void markov(const ref_ctx *c, const float *x, float *f)
{
    const int S = c->info.image_size;
    act_t in = {c->info.channels, S, S, (float *)x}, a = {0, 0, 0, c->buf[0]},
          b = {0, 0, 0, c->buf[1]};
    layer(c, MAA_NET_D + 0, &in, &a);
    for (int k = 1; k < 5; k++) {
        layer(c, MAA_NET_D + k, &a, &b);
        act_t t = a;
        a = b;
        b = t;
    }
    act_t out = {1, 0, 0, f};
    layer(c, MAA_NET_D + 5, &a, &out);
}

static int ref_available(char *why, size_t whylen)
{
    (void)why;
    (void)whylen;
    return MAA_OK;
}

static int ref_create(const maa_model *m, const maa_engine_opts *opts, void **out,
                      char *err, size_t errlen)
{
    (void)opts;
    ref_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        maa_seterr(err, errlen, "ref backend: out of memory");
        return MAA_ERR;
    }
    c->m = m;
    c->info = *maa_model_get_info(m);
    maa_net_describe(&c->info, c->l);
    /* Every intermediate fits the largest layer output (or the ConvLSTM's
     * concatenated input, which no layer produces). */
    int h = c->info.image_size, w = h;
    size_t cap = (size_t)32 * c->info.g_base * (h / 8) * (w / 8);
    for (int i = 0; i < MAA_NET_LAYERS; i++) {
        const maa_conv_desc *l = &c->l[i];
        if (i == MAA_NET_D)
            h = w = c->info.image_size;
        int ho, wo;
        maa_conv_out_size(l, h, w, &ho, &wo);
        if ((size_t)l->cout * ho * wo > cap)
            cap = (size_t)l->cout * ho * wo;
        h = ho;
        w = wo;
    }
    c->cap = cap;
    for (int i = 0; i < 4; i++)
        if (!(c->buf[i] = malloc(cap * sizeof(float)))) {
            maa_seterr(err, errlen, "ref backend: out of memory for %zu-float buffers", cap);
            for (int k = 0; k < i; k++)
                free(c->buf[k]);
            free(c);
            return MAA_ERR;
        }
    *out = c;
    return MAA_OK;
}

static int ref_run(void *ctx, int n, const float *x, float *recon, float *fx, float *fr,
                   char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    const ref_ctx *c = ctx;
    const size_t img = (size_t)c->info.channels * c->info.image_size * c->info.image_size;
    const size_t mk = (size_t)c->info.markov_size * c->info.markov_size;
    for (int i = 0; i < n; i++) {
        generator(c, x + i * img, recon + i * img);
        markov(c, x + i * img, fx + i * mk);
        markov(c, recon + i * img, fr + i * mk);
    }
    return MAA_OK;
}

static void ref_destroy(void *ctx)
{
    ref_ctx *c = ctx;
    if (!c)
        return;
    for (int i = 0; i < 4; i++)
        free(c->buf[i]);
    free(c);
}

const maa_backend_ops maa_backend_ref = {
    .name = "ref",
    .available = ref_available,
    .create = ref_create,
    .run = ref_run,
    .destroy = ref_destroy,
};
