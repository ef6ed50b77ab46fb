/* cudnn_plan.c — a layer as one fused cuDNN graph (see cudnn_plan.h).
 *
 * The graph is conv -> [+ bias] -> [+ res] -> [act], the intermediate
 * tensors virtual (never in memory) and float; cuDNN's heuristics (mode A)
 * rank the engines that can run it, and the first deterministic one within
 * the workspace limit that finalizes is kept.  Everything here is plain
 * cuDNN backend API; descriptors are released on every path. */
#include <cuda_runtime_api.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "engine/cudnn_plan.h"
#include "engine/backend.h"

typedef cudnnBackendDescriptor_t desc;

/* Tensor ids of a plan's variant pack; virtual tensors count up from V. */
enum { UID_X = 1, UID_W, UID_B, UID_R, UID_Y, UID_V = 100 };

/* Descriptors made while building, released together. */
typedef struct {
    desc d[96];  /* a graph needs ~15, each heuristics mode MAX_CFG + 2 */
    int n;
    cudnnStatus_t s;   /* first failure; later calls do nothing */
    const char *what;  /* the call that failed */
} pool;

static desc make(pool *p, cudnnBackendDescriptorType_t type)
{
    desc d = NULL;
    if (p->s)
        return NULL;
    if (p->n == (int)(sizeof p->d / sizeof *p->d)) {
        p->s = CUDNN_STATUS_ALLOC_FAILED;
        p->what = "descriptor pool";
        return NULL;
    }
    p->s = cudnnBackendCreateDescriptor(type, &d);
    if (p->s) {
        p->what = "cudnnBackendCreateDescriptor";
        return NULL;
    }
    return p->d[p->n++] = d;
}

static void set(pool *p, desc d, cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type,
                int64_t count, const void *value)
{
    if (p->s)
        return;
    p->s = cudnnBackendSetAttribute(d, name, type, count, value);
    if (p->s)
        p->what = "cudnnBackendSetAttribute";
}

static void finalize(pool *p, desc d, const char *what)
{
    if (p->s)
        return;
    p->s = cudnnBackendFinalize(d);
    if (p->s)
        p->what = what;
}

static void release(pool *p)
{
    for (int i = 0; i < p->n; i++)
        cudnnBackendDestroyDescriptor(p->d[i]);
    p->n = 0;
}

/* n x c x h x w in NHWC order (channels innermost), half or float. */
static desc tensor(pool *p, int64_t uid, int64_t n, int64_t c, int64_t h, int64_t w,
                   cudnnDataType_t type, bool virt)
{
    desc t = make(p, CUDNN_BACKEND_TENSOR_DESCRIPTOR);
    const int64_t dim[4] = {n, c, h, w}, str[4] = {c * h * w, 1, w * c, c}, align = 16;
    set(p, t, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &type);
    set(p, t, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dim);
    set(p, t, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, str);
    set(p, t, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid);
    set(p, t, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align);
    set(p, t, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &virt);
    finalize(p, t, "tensor descriptor");
    return t;
}

/* y = mode(x[, b]) in float. */
static desc pointwise(pool *p, cudnnPointwiseMode_t mode, double slope, desc x, desc b, desc y)
{
    const cudnnDataType_t prec = CUDNN_DATA_FLOAT;
    desc pw = make(p, CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
    set(p, pw, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode);
    set(p, pw, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &prec);
    if (slope != 0.0)
        set(p, pw, CUDNN_ATTR_POINTWISE_RELU_LOWER_CLIP_SLOPE, CUDNN_TYPE_DOUBLE, 1, &slope);
    finalize(p, pw, "pointwise descriptor");
    desc op = make(p, CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
    set(p, op, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &pw);
    set(p, op, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x);
    if (b)
        set(p, op, CUDNN_ATTR_OPERATION_POINTWISE_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b);
    set(p, op, CUDNN_ATTR_OPERATION_POINTWISE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y);
    finalize(p, op, "pointwise operation");
    return op;
}

/* The convolution operation: forward y = conv(x), or backward data, where
 * y (the layer's output) is the conv's dx and x its dy. */
static desc convolution(pool *p, const maa_plan_layer *l, desc x, desc w, desc y)
{
    const int64_t dims = 2, pad[2] = {l->ph, l->pw}, stride[2] = {l->stride, l->stride},
                  dil[2] = {1, 1};
    const cudnnDataType_t acc = CUDNN_DATA_FLOAT;
    const cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
    const float alpha = 1.0f, beta = 0.0f;
    desc cd = make(p, CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR);
    set(p, cd, CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, CUDNN_TYPE_INT64, 1, &dims);
    set(p, cd, CUDNN_ATTR_CONVOLUTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &acc);
    set(p, cd, CUDNN_ATTR_CONVOLUTION_CONV_MODE, CUDNN_TYPE_CONVOLUTION_MODE, 1, &mode);
    set(p, cd, CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, CUDNN_TYPE_INT64, 2, pad);
    set(p, cd, CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, CUDNN_TYPE_INT64, 2, pad);
    set(p, cd, CUDNN_ATTR_CONVOLUTION_DILATIONS, CUDNN_TYPE_INT64, 2, dil);
    set(p, cd, CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, CUDNN_TYPE_INT64, 2, stride);
    finalize(p, cd, "convolution descriptor");
    const desc op =
        make(p, l->transposed ? CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR
                              : CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR);
    /* The same six attributes, named for each operation: x, w, y (for
     * backward data: dy, w, dx), the convolution, alpha, beta. */
    static const cudnnBackendAttributeName_t fwd[6] = {
        CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X,
        CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W,
        CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y,
        CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC,
        CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA,
        CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA,
    };
    static const cudnnBackendAttributeName_t bwd[6] = {
        CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DY,
        CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_W,
        CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DX,
        CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_CONV_DESC,
        CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_ALPHA,
        CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_BETA,
    };
    const cudnnBackendAttributeName_t *a = l->transposed ? bwd : fwd;
    const desc d[4] = {x, w, y, cd};
    for (int i = 0; i < 4; i++)
        set(p, op, a[i], CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &d[i]);
    set(p, op, a[4], CUDNN_TYPE_FLOAT, 1, &alpha);
    set(p, op, a[5], CUDNN_TYPE_FLOAT, 1, &beta);
    finalize(p, op, l->transposed ? "backward-data operation" : "convolution operation");
    return op;
}

/* The finalized operation graph of l, or NULL with p->s set. */
static desc op_graph(pool *p, const maa_plan_layer *l, cudnnHandle_t handle)
{
    const cudnnDataType_t H = CUDNN_DATA_HALF, F = CUDNN_DATA_FLOAT;
    /* The filter of the forward conv: [K, C, kh, kw] with K the channels of
     * its output, which for backward data is the layer's input. */
    const int K = l->transposed ? l->cin : l->cout, C = l->transposed ? l->cout : l->cin;
    const int epilogue = l->bias + l->residual + (l->act != MAA_ACT_NONE);
    int64_t vid = UID_V;
    desc ops[4];
    int nops = 0;

    desc x = tensor(p, UID_X, l->n, l->cin, l->hi, l->wi, H, false);
    desc w = tensor(p, UID_W, K, C, l->kh, l->kw, H, false);
    desc y = epilogue ? tensor(p, vid++, l->n, l->cout, l->ho, l->wo, F, true)
                      : tensor(p, UID_Y, l->n, l->cout, l->ho, l->wo, H, false);
    ops[nops++] = convolution(p, l, x, w, y);
    int left = epilogue;
    /* Each step writes the next virtual tensor, the last one the real y. */
#define NEXT() (--left ? tensor(p, vid++, l->n, l->cout, l->ho, l->wo, F, true) \
                       : tensor(p, UID_Y, l->n, l->cout, l->ho, l->wo, H, false))
    if (l->bias) {
        desc b = tensor(p, UID_B, 1, l->cout, 1, 1, F, false), out = NEXT();
        ops[nops++] = pointwise(p, CUDNN_POINTWISE_ADD, 0.0, y, b, out);
        y = out;
    }
    if (l->residual) {
        desc r = tensor(p, UID_R, l->n, l->cout, l->ho, l->wo, H, false), out = NEXT();
        ops[nops++] = pointwise(p, CUDNN_POINTWISE_ADD, 0.0, y, r, out);
        y = out;
    }
    if (l->act != MAA_ACT_NONE) {
        const cudnnPointwiseMode_t mode = l->act == MAA_ACT_TANH ? CUDNN_POINTWISE_TANH_FWD
                                                                 : CUDNN_POINTWISE_RELU_FWD;
        desc out = NEXT();
        ops[nops++] = pointwise(p, mode, l->act == MAA_ACT_LRELU ? l->slope : 0.0, y, NULL, out);
    }
#undef NEXT
    desc g = make(p, CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
    set(p, g, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, nops, ops);
    /* The handle attributes (here and on the plan) are deprecated since
     * cuDNN 9.x in favour of device properties, but remain the way to build
     * for a handle where cuDNN predates those (< 9.8) or where a plan built
     * for them would not run (backend_cuda.c's replan). */
    if (handle)
        set(p, g, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
    finalize(p, g, "operation graph");
    return p->s ? NULL : g;
}

/* Whether the engine of cfg keeps the promises of this path (run-to-run
 * identical results, float accumulation), and whether it compiles its
 * kernel at build time. */
static cudnnStatus_t engine_notes(desc cfg, desc engine, int *usable, int *compiled,
                                  int64_t *index)
{
    int64_t got = 0;
    cudnnStatus_t s = cudnnBackendGetAttribute(cfg, CUDNN_ATTR_ENGINECFG_ENGINE,
                                               CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &got, &engine);
    cudnnBackendNumericalNote_t num[CUDNN_NUMERICAL_NOTE_TYPE_COUNT];
    cudnnBackendBehaviorNote_t beh[CUDNN_BEHAVIOR_NOTE_TYPE_COUNT];
    int64_t nnum = 0, nbeh = 0;
    if (!s)
        s = cudnnBackendGetAttribute(engine, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE,
                                     CUDNN_TYPE_NUMERICAL_NOTE, CUDNN_NUMERICAL_NOTE_TYPE_COUNT,
                                     &nnum, num);
    if (!s)
        s = cudnnBackendGetAttribute(engine, CUDNN_ATTR_ENGINE_BEHAVIOR_NOTE,
                                     CUDNN_TYPE_BEHAVIOR_NOTE, CUDNN_BEHAVIOR_NOTE_TYPE_COUNT,
                                     &nbeh, beh);
    if (!s)
        s = cudnnBackendGetAttribute(engine, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1,
                                     &got, index);
    *usable = 1;
    *compiled = 0;
    for (int64_t i = 0; i < nnum; i++)
        if (num[i] == CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC ||
            num[i] == CUDNN_NUMERICAL_NOTE_REDUCED_PRECISION_REDUCTION)
            *usable = 0;
    for (int64_t i = 0; i < nbeh; i++)
        if (beh[i] == CUDNN_BEHAVIOR_NOTE_RUNTIME_COMPILATION)
            *compiled = 1;
    return s;
}

void maa_plan_network(const maa_model_info *info, int n, maa_plan_layer out[MAA_NET_LAYERS])
{
    maa_conv_desc descs[MAA_NET_LAYERS];
    maa_net_describe(info, descs);
    int h = info->image_size, w = info->image_size;
    for (int i = 0; i < MAA_NET_LAYERS; i++) {
        const maa_conv_desc *d = &descs[i];
        maa_plan_layer *l = &out[i];
        if (i == MAA_NET_D)
            h = w = info->image_size;
        *l = (maa_plan_layer){
            .transposed = d->transposed,
            .n = i >= MAA_NET_D ? 2 * n : n,
            .cin = i == MAA_NET_MEM ? d->cin / 2 : d->cin,
            .hi = h,
            .wi = w,
            .cout = d->cout,
            .kh = d->kh,
            .kw = d->kw,
            .stride = d->stride,
            .ph = d->ph,
            .pw = d->pw,
            .bias = i != MAA_NET_MEM && (d->bn[0] || d->has_bias),
            .act = d->act,
            .slope = info->lrelu_slope,
        };
        maa_conv_out_size(d, h, w, &l->ho, &l->wo);
        if (i != MAA_NET_MEM) {
            h = l->ho;
            w = l->wo;
        }
    }
    for (int k = 0; k < 6; k++)
        out[maa_net_res(k) + 1].residual = 1;
}

/* The last refusal while trying configurations, for the error message. */
typedef struct {
    cudnnStatus_t status;
    char msg[256];
    int64_t offered;
} refusal;

/* Tries, in order, the configurations the heuristics of one mode offer for
 * graph g; 1 when *out got a plan, 0 when none would do (p->s set when a
 * cuDNN call itself failed). */
static int try_mode(pool *p, desc g, cudnnBackendHeurMode_t mode, const maa_plan_target *t,
                    cudnnHandle_t handle, maa_plan *out, refusal *r)
{
    enum { MAX_CFG = 32 };
    desc cfg[MAX_CFG] = {0}, plan = NULL;
    int64_t count = 0;
    desc heur = make(p, CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
    set(p, heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &g);
    set(p, heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode);
    if (t->devprop)
        set(p, heur, CUDNN_ATTR_ENGINEHEUR_DEVICEPROP, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
            &t->devprop);
    finalize(p, heur, "engine heuristics");
    for (int i = 0; i < MAX_CFG; i++)
        cfg[i] = make(p, CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
    desc engine = make(p, CUDNN_BACKEND_ENGINE_DESCRIPTOR);
    if (!p->s) {
        p->s = cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                        CUDNN_TYPE_BACKEND_DESCRIPTOR, MAX_CFG, &count, cfg);
        if (p->s)
            p->what = "engine heuristics results";
    }
    if (p->s)
        return 0;
    r->offered += count;
    for (int64_t i = 0; i < count; i++) {
        int usable = 0, rtc = 0;
        int64_t index = -1, ws = 0, got = 0;
        if (engine_notes(cfg[i], engine, &usable, &rtc, &index) || !usable)
            continue;
        if (cudnnBackendCreateDescriptor(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, &plan))
            break;
        cudnnStatus_t s = cudnnBackendSetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG,
                                                   CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cfg[i]);
        if (!s)
            s = handle ? cudnnBackendSetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_HANDLE,
                                                  CUDNN_TYPE_HANDLE, 1, &handle)
                       : cudnnBackendSetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_DEVICEPROP,
                                                  CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &t->devprop);
        if (!s)
            s = cudnnBackendFinalize(plan);
        if (!s)
            s = cudnnBackendGetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                         CUDNN_TYPE_INT64, 1, &got, &ws);
        /* Without a device a compiled kernel cannot be loaded: for a checked
         * plan, reaching that step is the check. */
        const int checked = t->check_only && s == CUDNN_STATUS_EXECUTION_FAILED_CUDA_DRIVER && rtc;
        if (checked || (!s && ws >= 0 && (size_t)ws <= t->ws_limit)) {
            if (checked) {
                cudnnBackendDestroyDescriptor(plan);
                plan = NULL;
            }
            *out = (maa_plan){plan, ws, index, rtc, (int)r->offered, t->devprop != NULL, -1};
            return 1;
        }
        if (s) {
            r->status = s;
            cudnnGetLastErrorString(r->msg, sizeof r->msg);
        } else {
            r->status = CUDNN_STATUS_NOT_SUPPORTED;
            snprintf(r->msg, sizeof r->msg, "engine %lld needs %lld bytes of workspace",
                     (long long)index, (long long)ws);
        }
        cudnnBackendDestroyDescriptor(plan);
        plan = NULL;
    }
    return 0;
}

int maa_plan_build(const maa_plan_layer *l, const maa_plan_target *t, maa_plan *out, char *err,
                   size_t errlen)
{
    cudnnHandle_t handle = t->devprop ? NULL : t->handle;
    const cudnnBackendHeurMode_t modes[2] = {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK};
    pool p = {0};
    refusal r = {CUDNN_STATUS_NOT_SUPPORTED, "no engine offered", 0};
    memset(out, 0, sizeof *out);
    out->same_as = -1;
    desc g = op_graph(&p, l, handle);
    int done = 0;
    char failed[300] = "";  /* the first heuristics call that failed */
    /* Mode A ranks the engines; the fallback list is tried only when none
     * of them would do, or when mode A's heuristics failed outright. */
    for (int m = 0; m < 2 && !done && g; m++) {
        done = try_mode(&p, g, modes[m], t, handle, out, &r);
        if (p.s && !*failed) {
            char msg[200] = "";
            cudnnGetLastErrorString(msg, sizeof msg);
            snprintf(failed, sizeof failed, "%s: %s%s%s", p.what, cudnnGetErrorString(p.s),
                     *msg ? ": " : "", msg);
        }
        p.s = CUDNN_STATUS_SUCCESS;
    }
    if (!g) {
        char msg[256] = "";
        cudnnGetLastErrorString(msg, sizeof msg);
        maa_seterr(err, errlen, "%s: %s%s%s", p.what, cudnnGetErrorString(p.s), *msg ? ": " : "",
                   msg);
    } else if (!done && !r.offered && *failed) {
        maa_seterr(err, errlen, "%s", failed);
    } else if (!done) {
        maa_seterr(err, errlen, "no usable engine among %lld offered (last: %s: %s)",
                   (long long)r.offered, cudnnGetErrorString(r.status), r.msg);
    }
    release(&p);
    return done ? MAA_OK : MAA_ERR;
}

int maa_plan_run(cudnnHandle_t handle, const maa_plan *p, const void *x, const void *w,
                 const float *bias, const void *res, void *y, void *workspace, char *err,
                 size_t errlen)
{
    int64_t uids[5] = {UID_X, UID_W, UID_Y};
    void *ptrs[5] = {(void *)x, (void *)w, y};
    int n = 3;
    if (bias)
        uids[n] = UID_B, ptrs[n++] = (void *)bias;
    if (res)
        uids[n] = UID_R, ptrs[n++] = (void *)res;
    desc vp = NULL;
    cudnnStatus_t s = cudnnBackendCreateDescriptor(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, &vp);
    if (!s)
        s = cudnnBackendSetAttribute(vp, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, n,
                                     uids);
    if (!s)
        s = cudnnBackendSetAttribute(vp, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS,
                                     CUDNN_TYPE_VOID_PTR, n, ptrs);
    if (!s)
        s = cudnnBackendSetAttribute(vp, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1,
                                     &workspace);
    if (!s)
        s = cudnnBackendFinalize(vp);
    if (!s)
        s = cudnnBackendExecute(handle, p->plan, vp);
    if (vp)
        cudnnBackendDestroyDescriptor(vp);
    if (s) {
        char msg[256] = "";
        cudnnGetLastErrorString(msg, sizeof msg);
        maa_seterr(err, errlen, "cudnnBackendExecute (engine %lld) failed: %s%s%s",
                   (long long)p->engine, cudnnGetErrorString(s), *msg ? ": " : "", msg);
        return MAA_ERR;
    }
    return MAA_OK;
}

void maa_plan_build_all(const maa_plan_layer *l, int count, const maa_plan_target *t,
                        maa_plan *out, int *rc, char (*why)[MAA_PLAN_WHY])
{
    for (int i = 0; i < count; i++) {
        out[i].same_as = -1;
        for (int j = 0; j < i && out[i].same_as < 0; j++)
            if (!memcmp(&l[i], &l[j], sizeof l[i]))
                out[i].same_as = j;
    }
    /* cuDNN compiles most plans' kernels here, seconds of CPU each.  The
     * threads select the engine's device first, so that nothing cuDNN does
     * on the current device while building lands on device 0. */
#pragma omp parallel if (t->devprop)
    {
        if (t->device >= 0)
            cudaSetDevice(t->device);
#pragma omp for schedule(dynamic)
        for (int i = 0; i < count; i++)
            if (out[i].same_as < 0)
                rc[i] = maa_plan_build(&l[i], t, &out[i], why[i], MAA_PLAN_WHY);
    }
    for (int i = 0; i < count; i++) {
        const int j = out[i].same_as;
        if (j >= 0) {
            out[i] = out[j];
            out[i].same_as = j;
            rc[i] = rc[j];
            memcpy(why[i], why[j], MAA_PLAN_WHY);
        }
    }
}

int maa_plan_device(cudnnHandle_t handle, cudnnBackendDescriptor_t *out, char *err,
                    size_t errlen)
{
    cudnnBackendDescriptor_t d = NULL;
    cudnnStatus_t s = cudnnBackendCreateDescriptor(CUDNN_BACKEND_DEVICEPROP_DESCRIPTOR, &d);
    if (!s)
        s = cudnnBackendSetAttribute(d, CUDNN_ATTR_DEVICEPROP_HANDLE, CUDNN_TYPE_HANDLE, 1,
                                     &handle);
    if (!s)
        s = cudnnBackendFinalize(d);
    if (s) {
        if (d)
            cudnnBackendDestroyDescriptor(d);
        maa_seterr(err, errlen, "cuDNN device properties: %s", cudnnGetErrorString(s));
        return MAA_ERR;
    }
    *out = d;
    return MAA_OK;
}

void maa_plan_free(maa_plan *p)
{
    if (p->plan && p->same_as < 0)
        cudnnBackendDestroyDescriptor(p->plan);
    p->plan = NULL;
}
