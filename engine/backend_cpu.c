/* backend_cpu.c — the fast CPU backend on oneDNN (C API).
 *
 * At create the model is turned into a fixed plan per batch size 1..max_batch:
 * BN folded into the conv weights and bias, activations and the residual sum
 * fused into the convs as post-ops, weights reordered once into the blocked
 * layout oneDNN picks (format_tag any), every activation buffer and the
 * scratchpad allocated once.  A run binds the caller's pointers and executes
 * the plan; it allocates nothing and creates no primitive.
 *
 * The ConvLSTM: the stored state h0 is constant, so conv(h0) with the h-half
 * of g.mem.weight plus the bias is computed once here (Gh).  Per image only
 * the z-half runs, split into the i,f,o gates (post-ops: sum onto a copy of
 * Gh, logistic) and the g gate (sum, tanh); then c' = f*c0 + i*g, a tanh
 * primitive, and h' = o*tanh(c').  Those two elementwise passes handle the
 * trunk layouts nchw, nChw8c, nChw16c and nhwc; create refuses others.
 *
 * Buffers: the generator reads the input from the first half of BUF_D
 * (2n images) and writes its reconstruction into the second half, so the
 * Markov encoder runs once on 2n images.  docs/cpu-backend.md has the
 * measurements behind these choices. */
#include <assert.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>

#include "engine/backend.h"

/* BUF_RS, BUF_RD: where a conv's input or output is reordered when oneDNN
 * wants another layout than its neighbour gives or takes. */
enum { BUF_D, BUF_A, BUF_B, BUF_X, BUF_T, BUF_IFO, BUF_G, BUF_OUT, BUF_RS, BUF_RD, BUF_SCRATCH, NBUF };

/* A unit is one convolution with its folded weights: the layers of the
 * table, g.mem's z-half split into the i,f,o gates (UNIT_MEM_IFO) and the g
 * gate (UNIT_MEM_G), and the phase convs.  A stride-2 transposed conv runs as
 * four small convs, one per output phase (even/odd row x even/odd column):
 * oneDNN 2.6's deconvolution is several times slower per FLOP than its
 * convolutions.  Phase q of g.dec.k is unit UNIT_PHASE + 4k + q. */
enum { UNIT_MEM_IFO = MAA_NET_LAYERS, UNIT_MEM_G, UNIT_PHASE, NUNIT = UNIT_PHASE + 12 };

typedef struct {
    maa_conv_desc l;
    float *w;              /* folded, PyTorch layout; freed after create */
    float *b;              /* folded bias, cout floats */
    dnnl_memory_t wmem[8]; /* reordered weights, one per distinct layout */
    int nwmem;
    dnnl_memory_t bmem;
    int pad_rh, pad_rw;    /* extra bottom/right padding (phase convs) */
} unit;

struct cpu_ctx;
typedef void (*host_fn)(struct cpu_ctx *c, int n);

typedef struct {
    dnnl_primitive_t prim; /* NULL: a host step */
    host_fn host;
    int nargs;
    dnnl_exec_arg_t args[6];
} step;

typedef struct {
    dnnl_memory_t mem;
    int buf;
    size_t off;
} binding;

typedef struct {
    int n;
    step *steps;
    int nsteps;
    binding *binds;
    int nbinds;
    dnnl_memory_t xuser, ruser; /* caller's x and recon, bound per run */
} plan;

typedef struct cpu_ctx {
    maa_model_info info;
    int max_batch, threads;
    dnnl_data_type_t dt;       /* activations and weights: f32 or bf16 */
    dnnl_engine_t eng;
    dnnl_stream_t stream;
    unit u[NUNIT];
    plan *plans;               /* plans[n - 1] */
    dnnl_format_tag_t trunk_tag;
    /* The trunk of an image is nrun runs of len floats; gate k of run r sits
     * at r*len*gstride + k*len in the gates tensor of that image. */
    size_t nrun, len, gstride;
    float *gh_ifo, *gh_g, *c0; /* per image, in the trunk's layout */
    size_t cap[NBUF];
    void *buf[NBUF];
    dnnl_memory_t *mems;       /* every memory object, for destroy */
    int nmems, capmems;
    dnnl_primitive_t *prims;
    int nprims, capprims;
    /* d.5 (1 -> 1 channel, 4x4) runs on the host: as a oneDNN primitive it
     * cost more in thread wake-ups than in arithmetic. */
    float d5w[16], d5b;
    int d4buf;              /* where d.4 leaves f32 [2n][M+1][M+1] */
    /* Set per run for the host steps. */
    float *fx, *fr;
} cpu_ctx;

/* The name of the oneDNN function, not the whole expression, in messages. */
#define DNC(fn, ...)                                                                \
    do {                                                                            \
        dnnl_status_t st_ = fn(__VA_ARGS__);                                        \
        if (st_ != dnnl_success) {                                                  \
            maa_seterr(err, errlen, "cpu backend: %s: %s", #fn, dnnl_status2str(st_)); \
            return MAA_ERR;                                                         \
        }                                                                           \
    } while (0)

static int oom(char *err, size_t errlen, const char *what)
{
    maa_seterr(err, errlen, "cpu backend: out of memory for %s", what);
    return MAA_ERR;
}

static int keep_mem(cpu_ctx *c, dnnl_memory_t m, char *err, size_t errlen)
{
    if (c->nmems == c->capmems) {
        int cap = c->capmems ? 2 * c->capmems : 64;
        dnnl_memory_t *p = realloc(c->mems, (size_t)cap * sizeof *p);
        if (!p) {
            dnnl_memory_destroy(m);
            return oom(err, errlen, "memory objects");
        }
        c->mems = p;
        c->capmems = cap;
    }
    c->mems[c->nmems++] = m;
    return MAA_OK;
}

static int keep_prim(cpu_ctx *c, dnnl_primitive_t p, char *err, size_t errlen)
{
    if (c->nprims == c->capprims) {
        int cap = c->capprims ? 2 * c->capprims : 64;
        dnnl_primitive_t *q = realloc(c->prims, (size_t)cap * sizeof *q);
        if (!q) {
            dnnl_primitive_destroy(p);
            return oom(err, errlen, "primitives");
        }
        c->prims = q;
        c->capprims = cap;
    }
    c->prims[c->nprims++] = p;
    return MAA_OK;
}

static int new_mem(cpu_ctx *c, const dnnl_memory_desc_t *md, void *handle, dnnl_memory_t *out,
                   char *err, size_t errlen)
{
    DNC(dnnl_memory_create, out, md, c->eng, handle);
    return keep_mem(c, *out, err, errlen);
}

static step *add_step(plan *p, char *err, size_t errlen)
{
    /* The plan's length is bounded by the network; grow in small chunks. */
    if (p->nsteps % 16 == 0) {
        step *s = realloc(p->steps, (size_t)(p->nsteps + 16) * sizeof *s);
        if (!s) {
            oom(err, errlen, "plan steps");
            return NULL;
        }
        p->steps = s;
    }
    step *s = &p->steps[p->nsteps++];
    memset(s, 0, sizeof *s);
    return s;
}

/* A memory object of plan p living in buffer buf at byte offset off; the
 * buffer's capacity grows to fit, and the handle is set once buffers exist. */
static int bound_mem(cpu_ctx *c, plan *p, const dnnl_memory_desc_t *md, int buf, size_t off,
                     dnnl_memory_t *out, char *err, size_t errlen)
{
    if (new_mem(c, md, DNNL_MEMORY_NONE, out, err, errlen))
        return MAA_ERR;
    size_t end = off + dnnl_memory_desc_get_size(md);
    if (end > c->cap[buf])
        c->cap[buf] = end;
    if (p->nbinds % 32 == 0) {
        binding *b = realloc(p->binds, (size_t)(p->nbinds + 32) * sizeof *b);
        if (!b)
            return oom(err, errlen, "plan bindings");
        p->binds = b;
    }
    p->binds[p->nbinds++] = (binding){*out, buf, off};
    return MAA_OK;
}

static void plain_md(dnnl_memory_desc_t *md, int n, int ch, int h, int w, dnnl_data_type_t dt,
                     dnnl_format_tag_t tag)
{
    dnnl_dims_t d = {n, ch, h, w};
    /* Cannot fail for a 4-D tensor with a valid tag. */
    dnnl_memory_desc_init_by_tag(md, 4, d, dt, tag);
}

/* One-shot reorder from a plain f32 array into new memory of layout dst. */
static int reorder_in(cpu_ctx *c, const dnnl_memory_desc_t *src_md, const void *src,
                      const dnnl_memory_desc_t *dst_md, dnnl_memory_t *out, char *err, size_t errlen)
{
    dnnl_memory_t sm;
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t r;
    if (new_mem(c, dst_md, DNNL_MEMORY_ALLOCATE, out, err, errlen))
        return MAA_ERR;
    DNC(dnnl_memory_create, &sm, src_md, c->eng, (void *)src);
    dnnl_status_t st = dnnl_reorder_primitive_desc_create(&pd, src_md, c->eng, dst_md, c->eng, NULL);
    if (st == dnnl_success) {
        st = dnnl_primitive_create(&r, pd);
        dnnl_primitive_desc_destroy(pd);
        if (st == dnnl_success) {
            dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, sm}, {DNNL_ARG_TO, *out}};
            st = dnnl_primitive_execute(r, c->stream, 2, a);
            if (st == dnnl_success)
                st = dnnl_stream_wait(c->stream);
            dnnl_primitive_destroy(r);
        }
    }
    dnnl_memory_destroy(sm);
    if (st != dnnl_success) {
        maa_seterr(err, errlen, "cpu backend: reorder at load: %s", dnnl_status2str(st));
        return MAA_ERR;
    }
    return MAA_OK;
}

/* ---- weights --------------------------------------------------------------- */

static const float *tensor(const maa_model *m, const char *prefix, const char *what)
{
    char name[64];
    snprintf(name, sizeof name, "%s.%s", prefix, what);
    return maa_model_tensor(m, name, NULL, NULL);
}

/* w' = w * s, b' = (b - mean) * s + beta with s = gamma / sqrt(var + eps),
 * along the output-channel axis (dim 0, or dim 1 of a transposed conv). */
static int load_unit(cpu_ctx *c, const maa_model *m, unit *u, char *err, size_t errlen)
{
    const maa_conv_desc *l = &u->l;
    size_t k = (size_t)l->kh * l->kw, nw = (size_t)l->cin * l->cout * k;
    u->w = malloc(nw * sizeof(float));
    u->b = calloc((size_t)l->cout, sizeof(float));
    if (!u->w || !u->b)
        return oom(err, errlen, l->name);
    const float *w = tensor(m, l->name, "weight"), *b = l->has_bias ? tensor(m, l->name, "bias") : NULL;
    memcpy(u->w, w, nw * sizeof(float));
    if (b)
        memcpy(u->b, b, (size_t)l->cout * sizeof(float));
    if (!l->bn[0])
        return MAA_OK;
    const float *g = tensor(m, l->bn, "weight"), *beta = tensor(m, l->bn, "bias"),
                *mean = tensor(m, l->bn, "running_mean"), *var = tensor(m, l->bn, "running_var");
    for (int o = 0; o < l->cout; o++) {
        float s = g[o] / sqrtf(var[o] + (float)c->info.bn_eps);
        u->b[o] = (u->b[o] - mean[o]) * s + beta[o];
        for (int i = 0; i < l->cin; i++) {
            float *p = u->w + (l->transposed ? ((size_t)i * l->cout + o) : ((size_t)o * l->cin + i)) * k;
            for (size_t j = 0; j < k; j++)
                p[j] *= s;
        }
    }
    return MAA_OK;
}

/* out[2m + p] of a k3 s2 p1 transposed conv takes tap 1 of input m when
 * p = 0, taps 2 and 0 of inputs m and m+1 when p = 1: per axis a conv of
 * kernel 1, or of kernel 2 padded by one at the end. */
static int load_phases(cpu_ctx *c, int k, char *err, size_t errlen)
{
    const unit *d = &c->u[MAA_NET_DEC + k];
    const maa_conv_desc *l = &d->l;
    assert(l->kh == 3 && l->kw == 3 && l->stride == 2 && l->ph == 1 && l->pw == 1 && l->out_pad == 1);
    static const int taps[2][2] = {{1, -1}, {2, 0}};
    for (int q = 0; q < 4; q++) {
        int py = q >> 1, px = q & 1;
        unit *u = &c->u[UNIT_PHASE + 4 * k + q];
        u->l = *l;
        u->l.transposed = 0;
        u->l.stride = 1;
        u->l.kh = py + 1;
        u->l.kw = px + 1;
        u->l.ph = u->l.pw = 0;
        u->pad_rh = py;
        u->pad_rw = px;
        u->w = malloc((size_t)l->cout * l->cin * u->l.kh * u->l.kw * sizeof(float));
        u->b = malloc((size_t)l->cout * sizeof(float));
        if (!u->w || !u->b)
            return oom(err, errlen, l->name);
        memcpy(u->b, d->b, (size_t)l->cout * sizeof(float));
        for (int o = 0; o < l->cout; o++)
            for (int i = 0; i < l->cin; i++)
                for (int ty = 0; ty < u->l.kh; ty++)
                    for (int tx = 0; tx < u->l.kw; tx++)
                        u->w[(((size_t)o * l->cin + i) * u->l.kh + ty) * u->l.kw + tx] =
                            d->w[(((size_t)i * l->cout + o) * 3 + taps[py][ty]) * 3 + taps[px][tx]];
    }
    return MAA_OK;
}

/* Splits g.mem.weight [64b, 32b, 3, 3] into the z-half units (i,f,o and g)
 * and returns the h-half as a new [64b, 16b, 3, 3] array. */
static int load_mem(cpu_ctx *c, const maa_model *m, float **hhalf, char *err, size_t errlen)
{
    const maa_conv_desc *l = &c->u[MAA_NET_MEM].l;
    const int ch = l->cin / 2, k = l->kh * l->kw;
    const float *w = tensor(m, "g.mem", "weight");
    *hhalf = malloc((size_t)l->cout * ch * k * sizeof(float));
    if (!*hhalf)
        return oom(err, errlen, "g.mem");
    for (int part = 0; part < 2; part++) {
        unit *u = &c->u[part ? UNIT_MEM_G : UNIT_MEM_IFO];
        u->l = *l;
        u->l.cin = ch;
        u->l.cout = part ? ch : 3 * ch;
        u->l.has_bias = 0;
        u->w = malloc((size_t)u->l.cout * ch * k * sizeof(float));
        u->b = calloc((size_t)u->l.cout, sizeof(float)); /* the bias is in Gh */
        if (!u->w || !u->b)
            return oom(err, errlen, "g.mem");
        for (int o = 0; o < u->l.cout; o++)
            memcpy(u->w + (size_t)o * ch * k, w + ((size_t)(o + (part ? 3 * ch : 0)) * l->cin) * k,
                   (size_t)ch * k * sizeof(float));
    }
    for (int o = 0; o < l->cout; o++)
        memcpy(*hhalf + (size_t)o * ch * k, w + ((size_t)o * l->cin + ch) * k, (size_t)ch * k * sizeof(float));
    return MAA_OK;
}

/* ---- plan building --------------------------------------------------------- */

typedef struct {
    maa_act act;
    int sum;        /* accumulate onto the destination's content */
    int logistic;   /* the i,f,o gates */
} postops;

static int add_reorder(cpu_ctx *c, plan *p, const dnnl_memory_desc_t *smd, dnnl_memory_t sm,
                       const dnnl_memory_desc_t *dmd, dnnl_memory_t dm, char *err, size_t errlen);

/* Where a conv writes: the layout `md` (NULL: oneDNN's choice, data type dt)
 * at byte `off` of buffer `buf`.  exact: md is imposed on the conv (a sum
 * post-op's destination); otherwise oneDNN chooses and a reorder into md
 * follows when its choice differs. */
typedef struct {
    const dnnl_memory_desc_t *md;
    int exact;
    dnnl_data_type_t dt;
    int buf;
    size_t off;
} target;

/* Adds conv unit u reading `src` (layout src_md) to plan p, reordering the
 * input first when the conv wants another layout.  On return *out_md is the
 * destination's layout and *dst its memory (reused when already set). */
static int add_conv(cpu_ctx *c, plan *p, unit *u, const dnnl_memory_desc_t *src_md, dnnl_memory_t src,
                    target to, postops po, dnnl_memory_desc_t *out_md, dnnl_memory_t *dst, char *err,
                    size_t errlen)
{
    const maa_conv_desc *l = &u->l;
    int hi = (int)src_md->dims[2], wi = (int)src_md->dims[3], ho, wo;
    maa_conv_out_size(l, hi, wi, &ho, &wo);
    ho += u->pad_rh;
    wo += u->pad_rw;
    dnnl_memory_desc_t wmd, bmd, dmd, smd;
    dnnl_dims_t wd = {l->cout, l->cin, l->kh, l->kw}, bd = {l->cout};
    DNC(dnnl_memory_desc_init_by_tag, &wmd, 4, wd, c->dt, dnnl_format_tag_any);
    DNC(dnnl_memory_desc_init_by_tag, &bmd, 1, bd, dnnl_f32, dnnl_a);
    const int nb = (int)src_md->dims[0]; /* 2n in the Markov encoder */
    plain_md(&smd, nb, l->cin, hi, wi, src_md->data_type, dnnl_format_tag_any);
    if (to.md && to.exact)
        dmd = *to.md;
    else
        plain_md(&dmd, nb, l->cout, ho, wo, to.md ? to.md->data_type : to.dt, dnnl_format_tag_any);
    dnnl_dims_t strides = {l->stride, l->stride}, pl = {l->ph, l->pw},
                pr = {l->ph + u->pad_rh, l->pw + u->pad_rw};
    /* Transposed convs never get here: see add_deconv. */
    assert(!l->transposed);
    dnnl_convolution_desc_t d;
    DNC(dnnl_convolution_forward_desc_init, &d, dnnl_forward_inference, dnnl_convolution_direct, &smd, &wmd,
        &bmd, &dmd, strides, pl, pr);
    dnnl_primitive_attr_t attr;
    dnnl_post_ops_t ops;
    DNC(dnnl_primitive_attr_create, &attr);
    const char *what = "dnnl_primitive_attr_set_scratchpad_mode";
    dnnl_status_t st = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (st == dnnl_success)
        what = "setting up post-ops", st = dnnl_post_ops_create(&ops);
    if (st == dnnl_success) {
        if (po.sum)
            st = dnnl_post_ops_append_sum(ops, 1.0f);
        float slope = (float)c->info.lrelu_slope;
        if (st == dnnl_success && po.logistic)
            st = dnnl_post_ops_append_eltwise(ops, 1.0f, dnnl_eltwise_logistic, 0, 0);
        else if (st == dnnl_success && po.act == MAA_ACT_RELU)
            st = dnnl_post_ops_append_eltwise(ops, 1.0f, dnnl_eltwise_relu, 0, 0);
        else if (st == dnnl_success && po.act == MAA_ACT_LRELU)
            st = dnnl_post_ops_append_eltwise(ops, 1.0f, dnnl_eltwise_relu, slope, 0);
        else if (st == dnnl_success && po.act == MAA_ACT_TANH)
            st = dnnl_post_ops_append_eltwise(ops, 1.0f, dnnl_eltwise_tanh, 0, 0);
        if (st == dnnl_success)
            st = dnnl_primitive_attr_set_post_ops(attr, ops);
        dnnl_post_ops_destroy(ops);
    }
    dnnl_primitive_desc_t pd = NULL;
    if (st == dnnl_success)
        what = "dnnl_primitive_desc_create", st = dnnl_primitive_desc_create(&pd, &d, attr, c->eng, NULL);
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success) {
        maa_seterr(err, errlen, "cpu backend: %s for %s (batch %d): %s", what, l->name, nb,
                   dnnl_status2str(st));
        return MAA_ERR;
    }
    dnnl_primitive_t prim;
    st = dnnl_primitive_create(&prim, pd);
    if (st != dnnl_success) {
        dnnl_primitive_desc_destroy(pd);
        maa_seterr(err, errlen, "cpu backend: dnnl_primitive_create for %s: %s", l->name, dnnl_status2str(st));
        return MAA_ERR;
    }
    const dnnl_memory_desc_t *qw = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    const dnnl_memory_desc_t *qd = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    const dnnl_memory_desc_t *qs = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    const dnnl_memory_desc_t *qsrc = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    int rc = keep_prim(c, prim, err, errlen);
    if (rc == MAA_OK && !dnnl_memory_desc_equal(qsrc, src_md)) {
        dnnl_memory_t rs;
        rc = bound_mem(c, p, qsrc, BUF_RS, 0, &rs, err, errlen);
        if (rc == MAA_OK)
            rc = add_reorder(c, p, src_md, src, qsrc, rs, err, errlen);
        src = rs;
    }
    /* Weights: reuse a reordered copy whose layout matches. */
    dnnl_memory_t wm = NULL;
    for (int i = 0; rc == MAA_OK && i < u->nwmem; i++) {
        const dnnl_memory_desc_t *have;
        dnnl_memory_get_memory_desc(u->wmem[i], &have);
        if (dnnl_memory_desc_equal(have, qw))
            wm = u->wmem[i];
    }
    if (rc == MAA_OK && !wm) {
        if (u->nwmem == (int)(sizeof u->wmem / sizeof u->wmem[0])) {
            maa_seterr(err, errlen, "cpu backend: too many weight layouts for %s", l->name);
            rc = MAA_ERR;
        } else {
            dnnl_memory_desc_t umd;
            plain_md(&umd, l->cout, l->cin, l->kh, l->kw, dnnl_f32, dnnl_oihw);
            rc = reorder_in(c, &umd, u->w, qw, &wm, err, errlen);
            if (rc == MAA_OK)
                u->wmem[u->nwmem++] = wm;
        }
    }
    if (rc == MAA_OK && !u->bmem)
        rc = new_mem(c, &bmd, u->b, &u->bmem, err, errlen);
    dnnl_memory_t sp = NULL;
    if (rc == MAA_OK && dnnl_memory_desc_get_size(qs) > 0)
        rc = bound_mem(c, p, qs, BUF_SCRATCH, 0, &sp, err, errlen);
    /* A reorder follows when the target layout is not oneDNN's choice. */
    int after = to.md && !dnnl_memory_desc_equal(qd, to.md);
    dnnl_memory_t cd = *dst;
    if (rc == MAA_OK && (after || !cd))
        rc = bound_mem(c, p, qd, after ? BUF_RD : to.buf, after ? 0 : to.off, &cd, err, errlen);
    dnnl_memory_desc_t qdc = *qd;
    dnnl_primitive_desc_destroy(pd);
    if (rc)
        return rc;
    step *s = add_step(p, err, errlen);
    if (!s)
        return MAA_ERR;
    s->prim = prim;
    s->args[0] = (dnnl_exec_arg_t){DNNL_ARG_SRC, src};
    s->args[1] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, wm};
    s->args[2] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, u->bmem};
    s->args[3] = (dnnl_exec_arg_t){DNNL_ARG_DST, cd};
    s->nargs = 4;
    if (sp)
        s->args[s->nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, sp};
    if (!after) {
        *out_md = qdc;
        *dst = cd;
        return MAA_OK;
    }
    *out_md = *to.md;
    if (!*dst && bound_mem(c, p, to.md, to.buf, to.off, dst, err, errlen))
        return MAA_ERR;
    return add_reorder(c, p, &qdc, cd, to.md, *dst, err, errlen);
}

/* Transposed conv k as its four phase convs into dense nhwc tensors (a
 * strided destination would send oneDNN to its reference conv), then one
 * reorder interleaves them: both sides seen as [py][px][n][h][w][c]. */
static int add_deconv(cpu_ctx *c, plan *p, int k, const dnnl_memory_desc_t *src_md, dnnl_memory_t src,
                      target to, dnnl_memory_desc_t *out_md, dnnl_memory_t *dst, char *err, size_t errlen)
{
    const maa_conv_desc *l = &c->u[MAA_NET_DEC + k].l;
    const dnnl_dim_t n = src_md->dims[0], C = l->cout, H = src_md->dims[2], W = src_md->dims[3];
    const size_t esz = to.dt == dnnl_f32 ? 4 : 2, phase = (size_t)(n * H * W * C) * esz;
    dnnl_memory_desc_t pmd, got;
    plain_md(&pmd, (int)n, (int)C, (int)H, (int)W, to.dt, dnnl_nhwc);
    for (int q = 0; q < 4; q++) {
        dnnl_memory_t pm;
        if (bound_mem(c, p, &pmd, BUF_RD, q * phase, &pm, err, errlen) ||
            add_conv(c, p, &c->u[UNIT_PHASE + 4 * k + q], src_md, src, (target){&pmd, 1, to.dt, BUF_RD, 0},
                     (postops){l->act, 0, 0}, &got, &pm, err, errlen))
            return MAA_ERR;
    }
    dnnl_memory_desc_t smd6, dmd6;
    dnnl_memory_t s6, d6;
    dnnl_dims_t dims = {2, 2, n, H, W, C}, ss = {2 * n * H * W * C, n * H * W * C, H * W * C, W * C, C, 1},
                ds = {2 * W * C, C, 4 * H * W * C, 4 * W * C, 2 * C, 1};
    DNC(dnnl_memory_desc_init_by_strides, &smd6, 6, dims, to.dt, ss);
    DNC(dnnl_memory_desc_init_by_strides, &dmd6, 6, dims, to.dt, ds);
    plain_md(out_md, (int)n, (int)C, (int)(2 * H), (int)(2 * W), to.dt, dnnl_nhwc);
    if (bound_mem(c, p, &smd6, BUF_RD, 0, &s6, err, errlen) ||
        bound_mem(c, p, &dmd6, to.buf, to.off, &d6, err, errlen) ||
        bound_mem(c, p, out_md, to.buf, to.off, dst, err, errlen))
        return MAA_ERR;
    return add_reorder(c, p, &smd6, s6, &dmd6, d6, err, errlen);
}

/* A reorder or an in-place eltwise step. */
static int add_simple(cpu_ctx *c, plan *p, dnnl_primitive_desc_t pd, int arg0, dnnl_memory_t m0,
                      int arg1, dnnl_memory_t m1, char *err, size_t errlen)
{
    dnnl_primitive_t prim;
    dnnl_status_t st = dnnl_primitive_create(&prim, pd);
    dnnl_primitive_desc_destroy(pd);
    if (st != dnnl_success) {
        maa_seterr(err, errlen, "cpu backend: dnnl_primitive_create: %s", dnnl_status2str(st));
        return MAA_ERR;
    }
    if (keep_prim(c, prim, err, errlen))
        return MAA_ERR;
    step *s = add_step(p, err, errlen);
    if (!s)
        return MAA_ERR;
    s->prim = prim;
    s->args[0] = (dnnl_exec_arg_t){arg0, m0};
    s->args[1] = (dnnl_exec_arg_t){arg1, m1};
    s->nargs = 2;
    return MAA_OK;
}

static int add_reorder(cpu_ctx *c, plan *p, const dnnl_memory_desc_t *smd, dnnl_memory_t sm,
                       const dnnl_memory_desc_t *dmd, dnnl_memory_t dm, char *err, size_t errlen)
{
    dnnl_primitive_desc_t pd;
    DNC(dnnl_reorder_primitive_desc_create, &pd, smd, c->eng, dmd, c->eng, NULL);
    return add_simple(c, p, pd, DNNL_ARG_FROM, sm, DNNL_ARG_TO, dm, err, errlen);
}

static int add_host(plan *p, host_fn fn, char *err, size_t errlen)
{
    step *s = add_step(p, err, errlen);
    if (!s)
        return MAA_ERR;
    s->host = fn;
    return MAA_OK;
}

/* Layouts the ConvLSTM passes handle: nchw, nChw8c, nChw16c (a gate's
 * channels are one contiguous slice of an image) and nhwc (a slice of each
 * pixel). */
static dnnl_format_tag_t trunk_tag_of(const dnnl_memory_desc_t *md)
{
    if (md->format_kind != dnnl_blocked || md->padded_dims[1] != md->dims[1])
        return dnnl_format_tag_undef;
    const dnnl_blocking_desc_t *b = &md->format_desc.blocking;
    const dnnl_dim_t *s = b->strides, C = md->dims[1], H = md->dims[2], W = md->dims[3];
    if (b->inner_nblks == 0 && s[1] == 1 && s[3] == C && s[2] == W * C && s[0] == H * W * C)
        return dnnl_nhwc;
    if (!(s[0] >= s[1] && s[1] >= s[2] && s[2] >= s[3]))
        return dnnl_format_tag_undef;
    if (b->inner_nblks == 0 && s[3] == 1)
        return dnnl_nchw;
    if (b->inner_nblks == 1 && b->inner_idxs[0] == 1 && s[3] == b->inner_blks[0])
        return b->inner_blks[0] == 16 ? dnnl_nChw16c : b->inner_blks[0] == 8 ? dnnl_nChw8c
                                                                             : dnnl_format_tag_undef;
    return dnnl_format_tag_undef;
}

static float *fbuf(cpu_ctx *c, int b) { return c->buf[b]; }

static void host_prefill(cpu_ctx *c, int n)
{
    const size_t g = (size_t)c->u[UNIT_MEM_G].l.cout * (c->info.image_size / 8) * (c->info.image_size / 8);
    for (int i = 0; i < n; i++) {
        memcpy(fbuf(c, BUF_IFO) + i * 3 * g, c->gh_ifo, 3 * g * sizeof(float));
        memcpy(fbuf(c, BUF_G) + i * g, c->gh_g, g * sizeof(float));
    }
}

/* G = sig(f)*c0 + sig(i)*tanh(g), in place on the g gate. */
static void host_cell(cpu_ctx *c, int n)
{
    const size_t L = c->len, g = c->nrun * L;
    for (int i = 0; i < n; i++)
        for (size_t r = 0; r < c->nrun; r++) {
            const float *gi = fbuf(c, BUF_IFO) + i * 3 * g + r * L * c->gstride, *gf = gi + L, *c0 = c->c0 + r * L;
            float *gg = fbuf(c, BUF_G) + i * g + r * L;
            for (size_t k = 0; k < L; k++)
                gg[k] = gf[k] * c0[k] + gi[k] * gg[k];
        }
}

static uint16_t to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fff + ((u >> 16) & 1); /* round to nearest even; no NaN here */
    return (uint16_t)(u >> 16);
}

/* h' = sig(o) * tanh(c') into the trunk. */
static void host_out(cpu_ctx *c, int n)
{
    const size_t L = c->len, g = c->nrun * L;
    for (int i = 0; i < n; i++)
        for (size_t r = 0; r < c->nrun; r++) {
            const float *go = fbuf(c, BUF_IFO) + i * 3 * g + r * L * c->gstride + 2 * L,
                        *t = fbuf(c, BUF_G) + i * g + r * L;
            if (c->dt == dnnl_f32) {
                float *x = fbuf(c, BUF_X) + i * g + r * L;
                for (size_t k = 0; k < L; k++)
                    x[k] = go[k] * t[k];
            } else {
                uint16_t *x = (uint16_t *)c->buf[BUF_X] + i * g + r * L;
                for (size_t k = 0; k < L; k++)
                    x[k] = to_bf16(go[k] * t[k]);
            }
        }
}

static void host_markov(cpu_ctx *c, int n)
{
    const int M = c->info.markov_size, I = M + 1;
    const size_t mk = (size_t)M * M;
    for (int i = 0; i < 2 * n; i++) {
        const float *in = fbuf(c, c->d4buf) + (size_t)i * I * I;
        float *out = i < n ? c->fx + i * mk : c->fr + (i - n) * mk;
        for (int y = 0; y < M; y++)
            for (int x = 0; x < M; x++) {
                float acc = c->d5b;
                for (int ky = 0; ky < 4; ky++) {
                    int iy = y - 1 + ky;
                    if (iy < 0 || iy >= I)
                        continue;
                    for (int kx = 0; kx < 4; kx++) {
                        int ix = x - 1 + kx;
                        if (ix >= 0 && ix < I)
                            acc += c->d5w[ky * 4 + kx] * in[iy * I + ix];
                    }
                }
                out[y * M + x] = acc;
            }
    }
}

/* The layout oneDNN wants for the Markov encoder's input, so that the image
 * buffer is written in it once and read by both networks. */
static dnnl_format_tag_t image_tag(cpu_ctx *c, int nb)
{
    const maa_conv_desc *l = &c->u[MAA_NET_D].l;
    const int S = c->info.image_size, So = (S + 2 * l->ph - l->kh) / l->stride + 1;
    dnnl_memory_desc_t smd, wmd, dmd;
    plain_md(&smd, nb, l->cin, S, S, c->dt, dnnl_format_tag_any);
    plain_md(&wmd, l->cout, l->cin, l->kh, l->kw, c->dt, dnnl_format_tag_any);
    plain_md(&dmd, nb, l->cout, So, So, c->dt, dnnl_format_tag_any);
    dnnl_dims_t st = {l->stride, l->stride}, pad = {l->ph, l->pw};
    dnnl_convolution_desc_t cd;
    dnnl_primitive_desc_t pd;
    dnnl_format_tag_t tag = dnnl_format_tag_undef;
    if (dnnl_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct, &smd, &wmd,
                                           NULL, &dmd, st, pad, pad) == dnnl_success &&
        dnnl_primitive_desc_create(&pd, &cd, NULL, c->eng, NULL) == dnnl_success) {
        tag = trunk_tag_of(dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0));
        dnnl_primitive_desc_destroy(pd);
    }
    /* Any other choice costs one reorder before d.0. */
    return tag == dnnl_format_tag_undef ? dnnl_nchw : tag;
}

static int build_plan(cpu_ctx *c, plan *p, char *err, size_t errlen)
{
    const int n = p->n, S = c->info.image_size, C = c->info.channels;
    const size_t esz = c->dt == dnnl_f32 ? 4 : 2, img = (size_t)C * S * S;
    dnnl_memory_desc_t umd, imd, cur, nxt;
    dnnl_memory_t in, x = NULL, t = NULL;

    /* Input: caller's f32 -> first half of dbuf. */
    const dnnl_format_tag_t itag = image_tag(c, 2 * n);
    plain_md(&umd, n, C, S, S, dnnl_f32, dnnl_nchw);
    plain_md(&imd, n, C, S, S, c->dt, itag);
    if (new_mem(c, &umd, DNNL_MEMORY_NONE, &p->xuser, err, errlen) ||
        new_mem(c, &umd, DNNL_MEMORY_NONE, &p->ruser, err, errlen) ||
        bound_mem(c, p, &imd, BUF_D, 0, &in, err, errlen) ||
        add_reorder(c, p, &umd, p->xuser, &imd, in, err, errlen))
        return MAA_ERR;

    /* Encoder: D -> A -> B -> A -> B -> X. */
    const int enc_buf[5] = {BUF_A, BUF_B, BUF_A, BUF_B, BUF_X};
    dnnl_memory_t src = in;
    cur = imd;
    for (int k = 0; k < 5; k++) {
        unit *u = &c->u[MAA_NET_ENC + k];
        dnnl_memory_t dst = NULL;
        if (add_conv(c, p, u, &cur, src, (target){NULL, 0, c->dt, enc_buf[k], 0}, (postops){u->l.act, 0, 0},
                     &nxt, &dst, err, errlen))
            return MAA_ERR;
        cur = nxt;
        src = dst;
    }
    x = src;
    const dnnl_memory_desc_t xmd = cur;
    dnnl_format_tag_t tag = trunk_tag_of(&xmd);
    if (tag == dnnl_format_tag_undef || (c->trunk_tag && tag != c->trunk_tag)) {
        maa_seterr(err, errlen, "cpu backend: oneDNN chose a trunk layout the ConvLSTM pass does not handle");
        return MAA_ERR;
    }
    c->trunk_tag = tag;
    const size_t hw = (size_t)xmd.dims[2] * xmd.dims[3], ch = (size_t)xmd.dims[1];
    c->nrun = tag == dnnl_nhwc ? hw : 1;
    c->len = tag == dnnl_nhwc ? ch : ch * hw;
    c->gstride = tag == dnnl_nhwc ? 3 : 1;

    for (int k = 0; k < 6; k++) {
        if (k == 3) {
            /* The ConvLSTM step from the stored state. */
            const int ch = c->u[UNIT_MEM_G].l.cout, hh = (int)xmd.dims[2], ww = (int)xmd.dims[3];
            dnnl_memory_desc_t ifomd, gmd, o1, o2;
            dnnl_memory_t ifo = NULL, g = NULL;
            plain_md(&ifomd, n, 3 * ch, hh, ww, dnnl_f32, tag);
            plain_md(&gmd, n, ch, hh, ww, dnnl_f32, tag);
            if (add_host(p, host_prefill, err, errlen) ||
                add_conv(c, p, &c->u[UNIT_MEM_IFO], &xmd, x, (target){&ifomd, 1, dnnl_f32, BUF_IFO, 0},
                         (postops){MAA_ACT_NONE, 1, 1}, &o1, &ifo, err, errlen) ||
                add_conv(c, p, &c->u[UNIT_MEM_G], &xmd, x, (target){&gmd, 1, dnnl_f32, BUF_G, 0},
                         (postops){MAA_ACT_TANH, 1, 0}, &o2, &g, err, errlen) ||
                add_host(p, host_cell, err, errlen))
                return MAA_ERR;
            dnnl_eltwise_desc_t ed;
            dnnl_primitive_desc_t pd;
            DNC(dnnl_eltwise_forward_desc_init, &ed, dnnl_forward_inference, dnnl_eltwise_tanh, &gmd, 0, 0);
            DNC(dnnl_primitive_desc_create, &pd, &ed, NULL, c->eng, NULL);
            if (add_simple(c, p, pd, DNNL_ARG_SRC, g, DNNL_ARG_DST, g, err, errlen) ||
                add_host(p, host_out, err, errlen))
                return MAA_ERR;
        }
        unit *u1 = &c->u[maa_net_res(k)], *u2 = u1 + 1;
        if (add_conv(c, p, u1, &xmd, x, (target){NULL, 0, c->dt, BUF_T, 0}, (postops){MAA_ACT_RELU, 0, 0},
                     &nxt, &t, err, errlen))
            return MAA_ERR;
        dnnl_memory_desc_t tmd = nxt;
        if (add_conv(c, p, u2, &tmd, t, (target){&xmd, 1, c->dt, BUF_X, 0}, (postops){MAA_ACT_NONE, 1, 0},
                     &nxt, &x, err, errlen))
            return MAA_ERR;
        t = NULL;
    }

    /* Decoder: X -> A -> B -> A -> B -> second half of D. */
    cur = xmd;
    src = x;
    for (int k = 0; k < 5; k++) {
        unit *u = &c->u[MAA_NET_DEC + k];
        dnnl_memory_t dst = NULL;
        int last = k == 4;
        target to = {last ? &imd : NULL, 0, c->dt, last ? BUF_D : (k % 2 ? BUF_B : BUF_A),
                     last ? n * img * esz : 0};
        if (u->l.transposed ? add_deconv(c, p, k, &cur, src, to, &nxt, &dst, err, errlen)
                            : add_conv(c, p, u, &cur, src, to, (postops){u->l.act, 0, 0}, &nxt, &dst, err, errlen))
            return MAA_ERR;
        cur = nxt;
        src = dst;
    }
    if (add_reorder(c, p, &imd, src, &umd, p->ruser, err, errlen))
        return MAA_ERR;

    /* Markov encoder on x and r together: 2n images; d.5 on the host. */
    dnnl_memory_desc_t dmd;
    plain_md(&dmd, 2 * n, C, S, S, c->dt, itag);
    if (bound_mem(c, p, &dmd, BUF_D, 0, &src, err, errlen))
        return MAA_ERR;
    cur = dmd;
    for (int k = 0; k < 5; k++) {
        unit *u = &c->u[MAA_NET_D + k];
        dnnl_memory_t dst = NULL;
        target to = {NULL, 0, k == 4 ? dnnl_f32 : c->dt, k % 2 ? BUF_B : BUF_A, 0};
        if (add_conv(c, p, u, &cur, src, to, (postops){u->l.act, 0, 0}, &nxt, &dst, err, errlen))
            return MAA_ERR;
        cur = nxt;
        src = dst;
    }
    /* One channel: nchw and nhwc are the same bytes. */
    c->d4buf = BUF_A;
    if (trunk_tag_of(&cur) == dnnl_format_tag_undef) {
        dnnl_memory_desc_t pmd;
        dnnl_memory_t pm;
        plain_md(&pmd, 2 * n, 1, (int)cur.dims[2], (int)cur.dims[3], dnnl_f32, dnnl_nchw);
        if (bound_mem(c, p, &pmd, BUF_OUT, 0, &pm, err, errlen) ||
            add_reorder(c, p, &cur, src, &pmd, pm, err, errlen))
            return MAA_ERR;
        c->d4buf = BUF_OUT;
    }
    return add_host(p, host_markov, err, errlen);
}

/* Gh = conv(h0; h-half) + bias for one image, and c0, in the trunk layout. */
static int precompute_state(cpu_ctx *c, const maa_model *m, float *hhalf, char *err, size_t errlen)
{
    const maa_conv_desc *l = &c->u[MAA_NET_MEM].l;
    const int ch = l->cin / 2, s8 = c->info.image_size / 8;
    const size_t g = (size_t)ch * s8 * s8;
    dnnl_memory_desc_t hmd, wmd, bmd, dmd, tmd;
    dnnl_dims_t wd = {l->cout, ch, 3, 3}, bd = {l->cout};
    plain_md(&hmd, 1, ch, s8, s8, dnnl_f32, dnnl_nchw);
    plain_md(&dmd, 1, l->cout, s8, s8, dnnl_f32, dnnl_nchw);
    DNC(dnnl_memory_desc_init_by_tag, &wmd, 4, wd, dnnl_f32, dnnl_format_tag_any);
    DNC(dnnl_memory_desc_init_by_tag, &bmd, 1, bd, dnnl_f32, dnnl_a);
    dnnl_dims_t st = {1, 1}, pad = {l->ph, l->pw};
    dnnl_convolution_desc_t cd;
    DNC(dnnl_convolution_forward_desc_init, &cd, dnnl_forward_inference, dnnl_convolution_direct, &hmd, &wmd,
        &bmd, &dmd, st, pad, pad);
    dnnl_primitive_desc_t pd;
    DNC(dnnl_primitive_desc_create, &pd, &cd, NULL, c->eng, NULL);
    dnnl_memory_desc_t qw = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    dnnl_primitive_t prim;
    dnnl_status_t s = dnnl_primitive_create(&prim, pd);
    dnnl_primitive_desc_destroy(pd);
    if (s != dnnl_success) {
        maa_seterr(err, errlen, "cpu backend: dnnl_primitive_create for g.mem h-half: %s", dnnl_status2str(s));
        return MAA_ERR;
    }
    if (keep_prim(c, prim, err, errlen))
        return MAA_ERR;
    dnnl_memory_desc_t uwmd;
    plain_md(&uwmd, l->cout, ch, 3, 3, dnnl_f32, dnnl_oihw);
    dnnl_memory_t wm, hm, bm, dm, gm;
    float *gates = malloc((size_t)l->cout * s8 * s8 * sizeof(float));
    if (!gates)
        return oom(err, errlen, "g.mem state");
    int rc = reorder_in(c, &uwmd, hhalf, &qw, &wm, err, errlen);
    if (!rc)
        rc = new_mem(c, &hmd, (void *)maa_model_tensor(m, "g.mem.h0", NULL, NULL), &hm, err, errlen);
    if (!rc)
        rc = new_mem(c, &bmd, (void *)maa_model_tensor(m, "g.mem.bias", NULL, NULL), &bm, err, errlen);
    if (!rc)
        rc = new_mem(c, &dmd, gates, &dm, err, errlen);
    if (!rc) {
        dnnl_exec_arg_t a[4] = {{DNNL_ARG_SRC, hm}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_BIAS, bm}, {DNNL_ARG_DST, dm}};
        s = dnnl_primitive_execute(prim, c->stream, 4, a);
        if (s == dnnl_success)
            s = dnnl_stream_wait(c->stream);
        if (s != dnnl_success) {
            maa_seterr(err, errlen, "cpu backend: dnnl_primitive_execute for g.mem h-half: %s", dnnl_status2str(s));
            rc = MAA_ERR;
        }
    }
    /* Into the trunk layout: i,f,o as one 3ch-channel tensor, g, and c0. */
    const float *c0 = maa_model_tensor(m, "g.mem.c0", NULL, NULL);
    struct {
        const float *src;
        int chans;
        float **out;
    } parts[3] = {{gates, 3 * ch, &c->gh_ifo}, {gates + 3 * g, ch, &c->gh_g}, {c0, ch, &c->c0}};
    for (int i = 0; !rc && i < 3; i++) {
        plain_md(&hmd, 1, parts[i].chans, s8, s8, dnnl_f32, dnnl_nchw);
        plain_md(&tmd, 1, parts[i].chans, s8, s8, dnnl_f32, c->trunk_tag);
        rc = reorder_in(c, &hmd, parts[i].src, &tmd, &gm, err, errlen);
        if (!rc && (s = dnnl_memory_get_data_handle(gm, (void **)parts[i].out)) != dnnl_success) {
            maa_seterr(err, errlen, "cpu backend: dnnl_memory_get_data_handle: %s", dnnl_status2str(s));
            rc = MAA_ERR;
        }
    }
    free(gates);
    return rc;
}

/* ---- backend interface ----------------------------------------------------- */

static int cpu_available(char *why, size_t whylen)
{
    if (dnnl_engine_get_count(dnnl_cpu) < 1) {
        maa_seterr(why, whylen, "oneDNN reports no CPU engine");
        return MAA_ERR;
    }
    return MAA_OK;
}

static void cpu_destroy(void *ctx)
{
    cpu_ctx *c = ctx;
    if (!c)
        return;
    for (int i = 0; i < c->nprims; i++)
        dnnl_primitive_destroy(c->prims[i]);
    for (int i = 0; i < c->nmems; i++)
        dnnl_memory_destroy(c->mems[i]);
    for (int n = 0; c->plans && n < c->max_batch; n++) {
        free(c->plans[n].steps);
        free(c->plans[n].binds);
    }
    for (int i = 0; i < NUNIT; i++) {
        free(c->u[i].w);
        free(c->u[i].b);
    }
    for (int b = 0; b < NBUF; b++)
        free(c->buf[b]);
    if (c->stream)
        dnnl_stream_destroy(c->stream);
    if (c->eng)
        dnnl_engine_destroy(c->eng);
    free(c->plans);
    free(c->prims);
    free(c->mems);
    free(c);
}

static int check_opts(const maa_engine_opts *opts, dnnl_data_type_t *dt, char *err, size_t errlen)
{
    if (opts->threads < 0 || opts->threads > 4096) {
        maa_seterr(err, errlen, "cpu backend: thread count %d is not in 0..4096 (0 = all cores)", opts->threads);
        return MAA_ERR;
    }
    switch (opts->precision) {
    case MAA_PREC_DEFAULT:
    case MAA_PREC_F32: *dt = dnnl_f32; return MAA_OK;
    case MAA_PREC_BF16:
        if ((dnnl_get_effective_cpu_isa() & dnnl_cpu_isa_avx512_core_bf16) != dnnl_cpu_isa_avx512_core_bf16) {
            maa_seterr(err, errlen, "cpu backend: bf16 needs a CPU with AVX512_BF16 (oneDNN isa "
                       "avx512_core_bf16), which this machine lacks; use f32");
            return MAA_ERR;
        }
        *dt = dnnl_bf16;
        return MAA_OK;
    default:
        maa_seterr(err, errlen, "cpu backend: precision %s is not supported (f32, or bf16 on AVX512_BF16)",
                   maa_precision_name(opts->precision));
        return MAA_ERR;
    }
}

static int cpu_create(const maa_model *m, const maa_engine_opts *opts, void **out, char *err, size_t errlen)
{
    *out = NULL;
    dnnl_data_type_t dt;
    if (check_opts(opts, &dt, err, errlen))
        return MAA_ERR;
    cpu_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return oom(err, errlen, "the context");
    c->info = *maa_model_get_info(m);
    c->max_batch = opts->max_batch < 1 ? 1 : opts->max_batch;
    c->threads = opts->threads ? opts->threads : omp_get_num_procs();
    c->dt = dt;
    /* oneDNN sizes its kernels' work split by the thread count at creation. */
    omp_set_num_threads(c->threads);
    int rc = MAA_ERR;
    float *hhalf = NULL;
    dnnl_status_t st = dnnl_engine_create(&c->eng, dnnl_cpu, 0);
    if (st == dnnl_success)
        st = dnnl_stream_create(&c->stream, c->eng, dnnl_stream_default_flags);
    if (st != dnnl_success) {
        maa_seterr(err, errlen, "cpu backend: creating the oneDNN engine and stream: %s", dnnl_status2str(st));
        goto out;
    }
    maa_conv_desc l[MAA_NET_LAYERS];
    maa_net_describe(&c->info, l);
    for (int i = 0; i < MAA_NET_LAYERS; i++) {
        c->u[i].l = l[i];
        if (i != MAA_NET_MEM && load_unit(c, m, &c->u[i], err, errlen))
            goto out;
        if (l[i].transposed && load_phases(c, i - MAA_NET_DEC, err, errlen))
            goto out;
    }
    if (load_mem(c, m, &hhalf, err, errlen))
        goto out;
    memcpy(c->d5w, c->u[MAA_NET_D + 5].w, sizeof c->d5w);
    c->d5b = c->u[MAA_NET_D + 5].b[0];
    if (!(c->plans = calloc((size_t)c->max_batch, sizeof *c->plans))) {
        oom(err, errlen, "plans");
        goto out;
    }
    for (int n = c->max_batch; n >= 1; n--) {
        c->plans[n - 1].n = n;
        if (build_plan(c, &c->plans[n - 1], err, errlen))
            goto out;
    }
    for (int b = 0; b < NBUF; b++)
        if (c->cap[b] && !(c->buf[b] = aligned_alloc(64, (c->cap[b] + 63) / 64 * 64))) {
            oom(err, errlen, "activations");
            goto out;
        }
    for (int n = 0; n < c->max_batch; n++)
        for (int i = 0; i < c->plans[n].nbinds; i++) {
            binding *bd = &c->plans[n].binds[i];
            st = dnnl_memory_set_data_handle(bd->mem, (char *)c->buf[bd->buf] + bd->off);
            if (st != dnnl_success) {
                maa_seterr(err, errlen, "cpu backend: dnnl_memory_set_data_handle: %s", dnnl_status2str(st));
                goto out;
            }
        }
    if (precompute_state(c, m, hhalf, err, errlen))
        goto out;
    for (int i = 0; i < NUNIT; i++) {
        free(c->u[i].w);
        c->u[i].w = NULL;
    }
    rc = MAA_OK;
out:
    free(hhalf);
    if (rc) {
        cpu_destroy(c);
        return rc;
    }
    *out = c;
    return MAA_OK;
}

static int cpu_run(void *ctx, int n, const float *x, float *recon, float *fx, float *fr, char *err,
                   size_t errlen)
{
    cpu_ctx *c = ctx;
    plan *p = &c->plans[n - 1];
    /* The thread count is per calling thread in OpenMP: set it here, where
     * the caller's worker thread runs the primitives. */
    omp_set_num_threads(c->threads);
    c->fx = fx;
    c->fr = fr;
    DNC(dnnl_memory_set_data_handle, p->xuser, (void *)x);
    DNC(dnnl_memory_set_data_handle, p->ruser, recon);
    for (int i = 0; i < p->nsteps; i++) {
        step *s = &p->steps[i];
        if (s->prim) {
            DNC(dnnl_primitive_execute, s->prim, c->stream, s->nargs, s->args);
        } else {
            DNC(dnnl_stream_wait, c->stream);
            s->host(c, n);
        }
    }
    DNC(dnnl_stream_wait, c->stream);
    return MAA_OK;
}

const maa_backend_ops maa_backend_cpu = {
    .name = "cpu",
    .available = cpu_available,
    .create = cpu_create,
    .run = cpu_run,
    .destroy = cpu_destroy,
};
