/* backend_cuda.c — the cuda backend: the network of contract §2 on cuDNN's
 * legacy convolution API, with the few elementwise steps cuDNN lacks in
 * engine/cuda_kernels.cu.  Design, precisions and memory plan are in
 * docs/cuda-backend.md; in short:
 *   - f16: half activations and weights in NHWC, float accumulation, tensor
 *     cores allowed; f32: float NCHW with TF32 off (CUDNN_FMA_MATH);
 *   - BN is folded into the weights and a per-channel bias at create; the
 *     h-half of the ConvLSTM conv plus its bias is a constant computed once;
 *   - every byte of device and pinned host memory is allocated at create, and
 *     for each batch size 1..max_batch the whole run (copy in, generator,
 *     Markov encoder on x and r as one batch of 2n, copy out) is captured in
 *     a CUDA graph that run only launches;
 *   - the frame path (inspect) has a second graph per batch size: 8-bit
 *     frames to tensors, the network, the contract §6 variance map and mask on
 *     the device; only the Markov maps, masks and their peaks come back;
 *   - with MAA_CUDA_FUSED=1 (f16 only, not yet measured on a GPU) each layer
 *     runs as one fused cuDNN graph (engine/cudnn_plan.c) where cuDNN plans
 *     it and it beats the legacy calls; plans exist for batch sizes 1, 2,
 *     4, ... and max_batch, and a batch runs at the next of these. */
#include <cuda_runtime_api.h>
#include <cudnn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/backend.h"
#include "engine/cuda_kernels.h"
#include "engine/cudnn_plan.h"

/* The largest workspace one algorithm may ask for; faster ones asking more
 * are passed over.  It bounds the engine's device memory (docs/cuda-backend.md). */
#define WS_LIMIT ((size_t)64 << 20)

/* Planned batch sizes: powers of two below max_batch, and max_batch. */
#define MAX_SIZES 10

static int fail(char *err, size_t errlen, const char *fn, const char *why, const char *file,
                int line)
{
    maa_seterr(err, errlen, "%s failed: %s (%s:%d)", fn, why, file, line);
    return MAA_ERR;
}

/* Every CUDA and cuDNN call goes through one of these; they need err and
 * errlen in scope and return MAA_ERR from the calling function. */
#define CUDA(fn, ...)                                                          \
    do {                                                                       \
        cudaError_t e_ = fn(__VA_ARGS__);                                      \
        if (e_ != cudaSuccess)                                                 \
            return fail(err, errlen, #fn, cudaGetErrorString(e_), __FILE__, __LINE__); \
    } while (0)
#define DNN(fn, ...)                                                           \
    do {                                                                       \
        cudnnStatus_t s_ = fn(__VA_ARGS__);                                    \
        if (s_ != CUDNN_STATUS_SUCCESS)                                        \
            return fail(err, errlen, #fn, cudnnGetErrorString(s_), __FILE__, __LINE__); \
    } while (0)

/* MAA_CUDA_FUSED: a layer as one cuDNN graph at one batch size. */
typedef struct {
    maa_plan plan;
    int has;             /* built (and, once probed, runs) */
    int probed;          /* has had its first run */
    cudnnBackendDescriptor_t stale;  /* replaced by replan, kept for sharers */
} layer_plan;

typedef struct {
    maa_conv_desc d;
    int cin;             /* channels read: g.mem reads z only */
    int hi, wi, ho, wo;
    int per_image;       /* images per input image: 2 in the Markov encoder (x, r) */
    void *w;             /* weights, filter layout, activation type */
    float *bias;         /* folded bias for the epilogue kernel, or NULL */
    void *bias_t;        /* the same in the activation type, for the fused call */
    int algo, math;      /* plain path: forward or backward-data algorithm */
    int falgo, fmath;    /* fused ReLU path, falgo < 0 when there is none */
    int fused;           /* the fused path is in use */
    layer_plan lp[MAX_SIZES];  /* MAA_CUDA_FUSED: per planned batch size */
    int decided, use_plan;     /* plan or legacy calls, for every size */
    float plan_ms, legacy_ms;  /* what decided it */
    char why[MAA_PLAN_WHY];    /* why the layer lacks a plan at some size */
    cudnnFilterDescriptor_t wd;
    cudnnConvolutionDescriptor_t cd;
    cudnnTensorDescriptor_t xd, yd, bd;
} layer;

typedef struct {
    maa_model_info info;
    int device, max_batch, half, probing;
    int fused_asked;     /* MAA_CUDA_FUSED is set (f16) */
    int force;           /* MAA_CUDA_FUSED=force: plans without timing */
    int plans;           /* layers are planned; batches run at planned sizes */
    int nsizes, sizes[MAX_SIZES];
    int cur;             /* index in sizes of the batch being issued */
    int rebuilt;         /* plans built again on the handle */
    cudnnBackendDescriptor_t devprop;  /* the device, for building plans */
    char devprop_why[160];  /* why there is none: plans built one at a time */
    char plans_off[160]; /* why the plans were dropped after all */
    cudaEvent_t tune_ev[2];  /* timing plan against legacy calls, with plans */
    cudnnTensorFormat_t fmt;
    cudnnDataType_t dt;
    size_t esz;          /* bytes per activation element */
    size_t img;          /* elements per image: C*S*S */
    size_t mm;           /* elements per Markov map */
    cudaStream_t st;
    cudnnHandle_t dnn;
    cudnnActivationDescriptor_t relu;
    layer l[MAA_NET_LAYERS];
    float *hconv, *c0;   /* ConvLSTM constants, float [64b|16b, S/8, S/8] */
    float *d_x, *d_r, *d_f;  /* float NCHW: input, recon, Markov maps (f(x) then f(r)) */
    void *images;        /* 2*max_batch images, activation type: x then r */
    void *act[3];
    void *ws;
    size_t ws_size;
    float *h_x, *h_r, *h_f;  /* pinned staging for d_x, d_r, d_f */
    cudaGraphExec_t *exec;   /* per batch size: float images in, recon and maps out */
    /* The frame path (cuda_inspect): 8-bit frames in, maps, masks, peaks out. */
    uint8_t *d_u8, *h_u8, *d_mask, *h_mask;
    size_t frame_cap;        /* bytes per frame in d_u8 and h_u8: frame i at i * frame_cap */
    float *d_e, *d_e2, *d_he, *d_he2, *d_peak, *h_peak;
    maa_cuda_params *d_par, *h_par;
    cudaGraphExec_t *exec8;  /* per batch size */
    cudaEvent_t *prof;       /* MAA_CUDA_PROFILE: two events per layer while set */
} cuda_ctx;

static const float one = 1.0f, zero = 0.0f;

static int cuda_available(char *why, size_t whylen)
{
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        maa_seterr(why, whylen, "no CUDA device: %s", cudaGetErrorString(e));
        return MAA_ERR;
    }
    if (count == 0) {
        maa_seterr(why, whylen, "no CUDA device: cudaGetDeviceCount found none");
        return MAA_ERR;
    }
    return MAA_OK;
}

static maa_cuda_shape shape(const cuda_ctx *c, int n, int ch, int h, int w)
{
    maa_cuda_shape s = {n, ch, h, w, c->half, c->fmt == CUDNN_TENSOR_NHWC};
    return s;
}

/* ---- weights ------------------------------------------------------------- */

/* count floats from the host to a new device buffer, as half when asked.
 * The copy goes on the backend's stream, which does not wait for the legacy
 * default stream that a plain cudaMemcpy would use. */
static int upload(const cuda_ctx *c, const float *src, size_t count, int half, void **dst,
                  char *err, size_t errlen)
{
    const size_t bytes = count * sizeof(float);
    if (!half) {
        CUDA(cudaMalloc, dst, bytes);
        CUDA(cudaMemcpyAsync, *dst, src, bytes, cudaMemcpyHostToDevice, c->st);
        CUDA(cudaStreamSynchronize, c->st);
        return MAA_OK;
    }
    float *tmp = NULL;
    CUDA(cudaMalloc, dst, count * 2);
    CUDA(cudaMalloc, (void **)&tmp, bytes);
    cudaError_t e = cudaMemcpyAsync(tmp, src, bytes, cudaMemcpyHostToDevice, c->st);
    if (e == cudaSuccess)
        e = maa_cuda_to_half(tmp, *dst, count, c->st);
    if (e == cudaSuccess)
        e = cudaStreamSynchronize(c->st);
    cudaFree(tmp);
    if (e != cudaSuccess)
        return fail(err, errlen, "uploading weights", cudaGetErrorString(e), __FILE__, __LINE__);
    return MAA_OK;
}

static const float *tensor(const maa_model *m, const char *prefix, const char *what)
{
    char name[64];
    snprintf(name, sizeof name, "%s.%s", prefix, what);
    return maa_model_tensor(m, name, NULL, NULL);
}

/* The filter of l as [K, C, kh, kw] (NCHW) or [K, kh, kw, C] (NHWC), where
 * K, C are dims 0, 1 of the stored tensor (C restricted to [c_off, c_off +
 * nc)), with BN's scale folded in along the output channels: dim 0 for a
 * conv, dim 1 for a transposed conv.  bias gets BN's shift (plus the conv's
 * own bias); it is left alone when the layer has neither. */
static int fold(const maa_model *m, const maa_model_info *info, const maa_conv_desc *d,
                int c_off, int nc, int nhwc, float *out, float *bias)
{
    const float *w = tensor(m, d->name, "weight");
    const int K = d->transposed ? d->cin : d->cout, Ctot = d->transposed ? d->cout : d->cin;
    const int kk = d->kh * d->kw;
    double *scale = malloc((size_t)d->cout * sizeof *scale);
    if (!scale)
        return MAA_ERR;
    for (int o = 0; o < d->cout; o++)
        scale[o] = 1.0;
    if (d->bn[0]) {
        const float *g = tensor(m, d->bn, "weight"), *b = tensor(m, d->bn, "bias"),
                    *mean = tensor(m, d->bn, "running_mean"), *var = tensor(m, d->bn, "running_var");
        const float *own = d->has_bias ? tensor(m, d->name, "bias") : NULL;
        for (int o = 0; o < d->cout; o++) {
            scale[o] = g[o] / sqrt((double)var[o] + info->bn_eps);
            bias[o] = (float)(b[o] + ((own ? own[o] : 0.0) - mean[o]) * scale[o]);
        }
    } else if (d->has_bias) {
        const float *own = tensor(m, d->name, "bias");
        memcpy(bias, own, (size_t)d->cout * sizeof(float));
    }
    for (int k = 0; k < K; k++)
        for (int ci = 0; ci < nc; ci++)
            for (int p = 0; p < kk; p++) {
                double s = scale[d->transposed ? ci : k];
                float v = w[((size_t)k * Ctot + c_off + ci) * kk + p];
                size_t o = nhwc ? ((size_t)k * kk + p) * nc + ci : ((size_t)k * nc + ci) * kk + p;
                out[o] = (float)(v * s);
            }
    free(scale);
    return MAA_OK;
}

/* conv(h0) with the h-half of g.mem.weight, plus g.mem.bias: the constant
 * part of every image's gates, computed once in f32 whatever the precision. */
static int memory_constant(cuda_ctx *c, const maa_model *m, char *err, size_t errlen)
{
    const maa_conv_desc *d = &c->l[MAA_NET_MEM].d;
    const int ch = d->cin / 2, hw = c->info.image_size / 8;
    const size_t nw = (size_t)d->cout * ch * 9, plane = (size_t)hw * hw;
    float *wh = malloc(nw * sizeof(float)), *unused = malloc((size_t)d->cout * sizeof(float));
    void *w = NULL, *h0 = NULL, *ws = NULL;
    cudnnTensorDescriptor_t xd = NULL, yd = NULL;
    cudnnFilterDescriptor_t wd = NULL;
    cudnnConvolutionDescriptor_t cd = NULL;
    int rc = MAA_ERR;
    /* No BN on g.mem: fold only selects the h-half; the bias is added below. */
    if (!wh || !unused || fold(m, &c->info, d, ch, ch, 0, wh, unused)) {
        maa_seterr(err, errlen, "cuda backend: out of memory");
        goto out;
    }
    if (upload(c, wh, nw, 0, &w, err, errlen) ||
        upload(c, maa_model_tensor(m, "g.mem.h0", NULL, NULL), ch * plane, 0, &h0, err, errlen) ||
        upload(c, maa_model_tensor(m, "g.mem.c0", NULL, NULL), ch * plane, 0, (void **)&c->c0,
               err, errlen))
        goto out;
    cudaError_t e = cudaMalloc((void **)&c->hconv, d->cout * plane * sizeof(float));
    if (e != cudaSuccess) {
        fail(err, errlen, "cudaMalloc", cudaGetErrorString(e), __FILE__, __LINE__);
        goto out;
    }
    cudnnStatus_t s = cudnnCreateTensorDescriptor(&xd);
    if (!s) s = cudnnCreateTensorDescriptor(&yd);
    if (!s) s = cudnnCreateFilterDescriptor(&wd);
    if (!s) s = cudnnCreateConvolutionDescriptor(&cd);
    if (!s) s = cudnnSetTensor4dDescriptor(xd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, ch, hw, hw);
    if (!s) s = cudnnSetTensor4dDescriptor(yd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, d->cout, hw, hw);
    if (!s) s = cudnnSetFilter4dDescriptor(wd, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, d->cout, ch, 3, 3);
    if (!s) s = cudnnSetConvolution2dDescriptor(cd, 1, 1, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION,
                                                CUDNN_DATA_FLOAT);
    if (!s) s = cudnnSetConvolutionMathType(cd, CUDNN_FMA_MATH);
    cudnnConvolutionFwdAlgoPerf_t p[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int got = 0, pick = -1;
    if (!s) s = cudnnGetConvolutionForwardAlgorithm_v7(c->dnn, xd, wd, cd, yd,
                                                      CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &got, p);
    for (int i = 0; !s && i < got && pick < 0; i++)
        if (p[i].status == CUDNN_STATUS_SUCCESS && p[i].mathType == CUDNN_FMA_MATH)
            pick = i;
    if (s) {
        fail(err, errlen, "cudnn setup of the ConvLSTM constant", cudnnGetErrorString(s), __FILE__,
             __LINE__);
        goto out;
    }
    if (pick < 0) {
        maa_seterr(err, errlen, "cuda backend: cuDNN offers no f32 algorithm for conv(g.mem.h0)");
        goto out;
    }
    e = p[pick].memory ? cudaMalloc(&ws, p[pick].memory) : cudaSuccess;
    if (e != cudaSuccess) {
        fail(err, errlen, "cudaMalloc", cudaGetErrorString(e), __FILE__, __LINE__);
        goto out;
    }
    s = cudnnConvolutionForward(c->dnn, &one, xd, h0, wd, w, cd, p[pick].algo, ws, p[pick].memory,
                                &zero, yd, c->hconv);
    if (s) {
        fail(err, errlen, "cudnnConvolutionForward", cudnnGetErrorString(s), __FILE__, __LINE__);
        goto out;
    }
    /* The bias rides on the epilogue kernel, in float NCHW. */
    float *bias = NULL;
    if (upload(c, tensor(m, "g.mem", "bias"), (size_t)d->cout, 0, (void **)&bias, err, errlen))
        goto out;
    maa_cuda_shape hs = {1, d->cout, hw, hw, 0, 0};
    e = maa_cuda_epilogue(c->hconv, bias, NULL, MAA_CUDA_NONE, 0.0f, hs, c->st);
    if (e == cudaSuccess)
        e = cudaStreamSynchronize(c->st);
    cudaFree(bias);
    if (e != cudaSuccess) {
        fail(err, errlen, "ConvLSTM constant", cudaGetErrorString(e), __FILE__, __LINE__);
        goto out;
    }
    rc = MAA_OK;
out:
    if (xd) cudnnDestroyTensorDescriptor(xd);
    if (yd) cudnnDestroyTensorDescriptor(yd);
    if (wd) cudnnDestroyFilterDescriptor(wd);
    if (cd) cudnnDestroyConvolutionDescriptor(cd);
    cudaFree(w);
    cudaFree(h0);
    cudaFree(ws);
    free(wh);
    free(unused);
    return rc;
}

/* Geometry, descriptors, folded weights and biases of every layer. */
static int setup_layers(cuda_ctx *c, const maa_model *m, char *err, size_t errlen)
{
    maa_conv_desc descs[MAA_NET_LAYERS];
    maa_net_describe(&c->info, descs);
    const int S = c->info.image_size, nhwc = c->fmt == CUDNN_TENSOR_NHWC;
    int h = S, w = S;
    DNN(cudnnCreateActivationDescriptor, &c->relu);
    DNN(cudnnSetActivationDescriptor, c->relu, CUDNN_ACTIVATION_RELU, CUDNN_NOT_PROPAGATE_NAN, 0.0);
    for (int i = 0; i < MAA_NET_LAYERS; i++) {
        layer *l = &c->l[i];
        const maa_conv_desc *d = &l->d;
        l->d = descs[i];
        if (i == MAA_NET_D)
            h = w = S;
        l->cin = i == MAA_NET_MEM ? d->cin / 2 : d->cin;
        l->per_image = i >= MAA_NET_D ? 2 : 1;
        l->hi = h;
        l->wi = w;
        maa_conv_out_size(d, h, w, &l->ho, &l->wo);
        if (i != MAA_NET_MEM) {
            h = l->ho;
            w = l->wo;
        }
        l->falgo = -1;
        DNN(cudnnCreateFilterDescriptor, &l->wd);
        DNN(cudnnCreateConvolutionDescriptor, &l->cd);
        DNN(cudnnCreateTensorDescriptor, &l->xd);
        DNN(cudnnCreateTensorDescriptor, &l->yd);
        DNN(cudnnCreateTensorDescriptor, &l->bd);
        const int K = d->transposed ? l->cin : d->cout, C = d->transposed ? d->cout : l->cin;
        DNN(cudnnSetFilter4dDescriptor, l->wd, c->dt, c->fmt, K, C, d->kh, d->kw);
        DNN(cudnnSetConvolution2dDescriptor, l->cd, d->ph, d->pw, d->stride, d->stride, 1, 1,
            CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT);
        DNN(cudnnSetConvolutionMathType, l->cd, c->half ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH);
        DNN(cudnnSetTensor4dDescriptor, l->bd, CUDNN_TENSOR_NCHW, c->dt, 1, d->cout, 1, 1);

        const size_t nw = (size_t)K * C * d->kh * d->kw;
        float *hw_ = malloc(nw * sizeof(float)), *hb = malloc((size_t)d->cout * sizeof(float));
        if (!hw_ || !hb || fold(m, &c->info, d, 0, C, nhwc, hw_, hb)) {
            free(hw_);
            free(hb);
            maa_seterr(err, errlen, "cuda backend: out of memory for layer %s", d->name);
            return MAA_ERR;
        }
        /* g.mem's bias is part of the constant gates (memory_constant). */
        int has_bias = i != MAA_NET_MEM && (d->bn[0] || d->has_bias);
        int rc = upload(c, hw_, nw, c->half, &l->w, err, errlen);
        if (!rc && has_bias)
            rc = upload(c, hb, (size_t)d->cout, 0, (void **)&l->bias, err, errlen);
        /* Only plain ReLU convs can use cuDNN's fused epilogue. */
        if (!rc && has_bias && !d->transposed && d->act == MAA_ACT_RELU)
            rc = upload(c, hb, (size_t)d->cout, c->half, &l->bias_t, err, errlen);
        free(hw_);
        free(hb);
        if (rc)
            return MAA_ERR;
    }
    return MAA_OK;
}

/* ---- algorithms, workspace ----------------------------------------------- */

static void *elem(const cuda_ctx *c, void *base, size_t i)
{
    return (char *)base + i * c->esz;
}

/* Sets every layer's tensor descriptors for a batch of n images. */
static int set_batch(cuda_ctx *c, int n, char *err, size_t errlen)
{
    for (int i = 0; i < MAA_NET_LAYERS; i++) {
        layer *l = &c->l[i];
        const int N = n * l->per_image;
        DNN(cudnnSetTensor4dDescriptor, l->xd, c->fmt, c->dt, N, l->cin, l->hi, l->wi);
        DNN(cudnnSetTensor4dDescriptor, l->yd, c->fmt, c->dt, N, l->d.cout, l->ho, l->wo);
    }
    return MAA_OK;
}

/* Whether an algorithm's math mode is allowed: f32 must not use TF32. */
static int math_ok(const cuda_ctx *c, cudnnMathType_t m)
{
    return c->half || (m != CUDNN_TENSOR_OP_MATH && m != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION);
}

/* The fastest deterministic algorithm cuDNN's Find measures at max_batch,
 * and for ReLU layers with a bias the implicit precomputed GEMM, the one
 * algorithm cuDNN documents for the fused conv-bias-activation call. */
static int choose_algos(cuda_ctx *c, layer *l, char *err, size_t errlen)
{
    int got = 0;
    l->algo = l->falgo = -1;
    if (l->d.transposed) {
        cudnnConvolutionBwdDataAlgoPerf_t p[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
        DNN(cudnnFindConvolutionBackwardDataAlgorithm, c->dnn, l->wd, l->xd, l->cd, l->yd,
            CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &got, p);
        for (int i = 0; i < got && l->algo < 0; i++)
            if (p[i].status == CUDNN_STATUS_SUCCESS && p[i].determinism == CUDNN_DETERMINISTIC &&
                p[i].memory <= WS_LIMIT && math_ok(c, p[i].mathType))
                l->algo = p[i].algo, l->math = p[i].mathType;
    } else {
        cudnnConvolutionFwdAlgoPerf_t p[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
        DNN(cudnnFindConvolutionForwardAlgorithm, c->dnn, l->xd, l->wd, l->cd, l->yd,
            CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &got, p);
        for (int i = 0; i < got; i++) {
            if (p[i].status != CUDNN_STATUS_SUCCESS || p[i].determinism != CUDNN_DETERMINISTIC ||
                p[i].memory > WS_LIMIT || !math_ok(c, p[i].mathType))
                continue;
            if (l->algo < 0)
                l->algo = p[i].algo, l->math = p[i].mathType;
            if (l->bias_t && l->falgo < 0 && p[i].algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM)
                l->falgo = p[i].algo, l->fmath = p[i].mathType;
        }
    }
    if (l->algo < 0) {
        maa_seterr(err, errlen, "cuda backend: cuDNN offers no deterministic %s algorithm for %s",
                   c->half ? "f16" : "f32", l->d.name);
        return MAA_ERR;
    }
    l->fused = l->falgo >= 0;
    DNN(cudnnSetConvolutionMathType, l->cd, (cudnnMathType_t)(l->fused ? l->fmath : l->math));
    return MAA_OK;
}

/* Raises *size to the workspace l needs at the current batch, on either path. */
static int need_workspace(cuda_ctx *c, layer *l, size_t *size, char *err, size_t errlen)
{
    size_t s = 0;
    if (l->d.transposed) {
        DNN(cudnnGetConvolutionBackwardDataWorkspaceSize, c->dnn, l->wd, l->xd, l->cd, l->yd,
            (cudnnConvolutionBwdDataAlgo_t)l->algo, &s);
        *size = s > *size ? s : *size;
        return MAA_OK;
    }
    DNN(cudnnSetConvolutionMathType, l->cd, (cudnnMathType_t)l->math);
    DNN(cudnnGetConvolutionForwardWorkspaceSize, c->dnn, l->xd, l->wd, l->cd, l->yd,
        (cudnnConvolutionFwdAlgo_t)l->algo, &s);
    *size = s > *size ? s : *size;
    if (l->falgo >= 0) {
        DNN(cudnnSetConvolutionMathType, l->cd, (cudnnMathType_t)l->fmath);
        DNN(cudnnGetConvolutionForwardWorkspaceSize, c->dnn, l->xd, l->wd, l->cd, l->yd,
            (cudnnConvolutionFwdAlgo_t)l->falgo, &s);
        *size = s > *size ? s : *size;
    }
    DNN(cudnnSetConvolutionMathType, l->cd, (cudnnMathType_t)(l->fused ? l->fmath : l->math));
    return MAA_OK;
}

/* ---- the network --------------------------------------------------------- */

/* out = act(conv(in) + bias (+ res)) for the current batch, with the
 * legacy calls. */
static int legacy_body(cuda_ctx *c, layer *l, int n, const void *in, void *out, const void *res,
                       char *err, size_t errlen)
{
    if (l->fused) {
        /* z = out with alpha2 = 0: cuDNN reads nothing from it. */
        cudnnStatus_t s = cudnnConvolutionBiasActivationForward(
            c->dnn, &one, l->xd, in, l->wd, l->w, l->cd, (cudnnConvolutionFwdAlgo_t)l->falgo,
            c->ws, c->ws_size, &zero, l->yd, out, l->bd, l->bias_t, c->relu, l->yd, out);
        if (s == CUDNN_STATUS_SUCCESS)
            return MAA_OK;
        if (!c->probing)
            return fail(err, errlen, "cudnnConvolutionBiasActivationForward",
                        cudnnGetErrorString(s), __FILE__, __LINE__);
        /* cuDNN may refuse the fused call where its Find accepted the plain
         * conv; the warm-up run finds out, and the plain path always works. */
        l->fused = 0;
        DNN(cudnnSetConvolutionMathType, l->cd, (cudnnMathType_t)l->math);
    }
    if (l->d.transposed)
        DNN(cudnnConvolutionBackwardData, c->dnn, &one, l->wd, l->w, l->xd, in, l->cd,
            (cudnnConvolutionBwdDataAlgo_t)l->algo, c->ws, c->ws_size, &zero, l->yd, out);
    else
        DNN(cudnnConvolutionForward, c->dnn, &one, l->xd, in, l->wd, l->w, l->cd,
            (cudnnConvolutionFwdAlgo_t)l->algo, c->ws, c->ws_size, &zero, l->yd, out);
    if (l->bias || res || l->d.act != MAA_ACT_NONE)
        CUDA(maa_cuda_epilogue, out, l->bias, res, (int)l->d.act, (float)c->info.lrelu_slope,
             shape(c, n * l->per_image, l->d.cout, l->ho, l->wo), c->st);
    return MAA_OK;
}

/* Drops the thread's last CUDA error after a failure that was handled: a
 * failed capture leaves it set, and every launch wrapper of
 * engine/cuda_kernels.cu returns cudaGetLastError, which would report it
 * again from the next kernel (only errors that are not sticky clear). */
static void clear_error(void)
{
    (void)cudaGetLastError();
}

/* A plan built for the device's description that does not run: built
 * again on the handle (one thread), and the layers that shared the old one
 * take the new one.  The old one stays alive until destroy. */
static int replan(cuda_ctx *c, int idx, layer_plan *lp)
{
    layer *l = &c->l[idx];
    maa_plan_layer pl[MAA_NET_LAYERS];
    maa_plan np;
    const maa_plan_target t = {.handle = c->dnn, .ws_limit = WS_LIMIT, .device = -1};
    maa_plan_network(&c->info, c->sizes[c->cur], pl);
    if (maa_plan_build(&pl[idx], &t, &np, l->why, sizeof l->why))
        return MAA_ERR;
    if ((size_t)np.workspace > c->ws_size) {
        snprintf(l->why, sizeof l->why, "plan rebuilt on the handle needs %lld bytes of workspace",
                 (long long)np.workspace);
        maa_plan_free(&np);
        return MAA_ERR;
    }
    c->rebuilt++;
    const int self = c->cur * MAA_NET_LAYERS + idx;
    const int owner = lp->plan.same_as >= 0 ? lp->plan.same_as : self;
    if (lp->plan.same_as < 0)
        lp->stale = lp->plan.plan;
    lp->plan = np;
    for (int j = idx + 1; j < MAA_NET_LAYERS; j++) {
        layer_plan *o = &c->l[j].lp[c->cur];
        if (o->has && o->plan.same_as == owner) {
            o->plan = np;
            o->plan.same_as = self;
        }
    }
    return MAA_OK;
}

static int run_plan(cuda_ctx *c, const layer *l, const layer_plan *lp, const void *in, void *out,
                    const void *res, char *err, size_t errlen)
{
    return maa_plan_run(c->dnn, &lp->plan, in, l->w, l->bias, res, out, c->ws, err, errlen);
}

/* A plan's first run, in the warm-up before capture: one that fails is
 * built again on the handle if it was built for the device's description,
 * and dropped if that fails too, as a refused fused legacy call is. */
static void probe(cuda_ctx *c, int idx, layer_plan *lp, const void *in, void *out,
                  const void *res)
{
    layer *l = &c->l[idx];
    char err[MAA_ERRLEN];
    lp->probed = 1;
    if (!run_plan(c, l, lp, in, out, res, err, sizeof err))
        return;
    clear_error();
    const int self = c->cur * MAA_NET_LAYERS + idx;
    const int owner = lp->plan.same_as >= 0 ? lp->plan.same_as : self;
    if (!lp->plan.deviceless) {
        snprintf(l->why, sizeof l->why, "%.200s", err);
    } else if (!replan(c, idx, lp)) {
        if (!run_plan(c, l, lp, in, out, res, err, sizeof err))
            return;
        clear_error();
        snprintf(l->why, sizeof l->why, "%.200s", err);
    } else {
        /* The layers sharing the plan would fail and rebuild it in turn. */
        for (int j = idx + 1; j < MAA_NET_LAYERS; j++) {
            layer_plan *o = &c->l[j].lp[c->cur];
            if (o->has && o->plan.same_as == owner) {
                o->has = 0;
                snprintf(c->l[j].why, sizeof c->l[j].why, "%.200s", l->why);
            }
        }
    }
    lp->has = 0;
}

/* REPS runs of the layer's plan (k = 0) or legacy calls (k = 1) captured in
 * a graph, whose launch is timed: the host's cost of issuing the calls is
 * left out, as it is from the engine's own graphs. */
static int time_variant(cuda_ctx *c, int idx, const layer_plan *lp, int k, int n, const void *in,
                        void *out, const void *res, float *ms, char *err, size_t errlen)
{
    enum { REPS = 5 };
    layer *l = &c->l[idx];
    cudaGraph_t g = NULL;
    cudaGraphExec_t x = NULL;
    int rc = MAA_OK;
    CUDA(cudaStreamBeginCapture, c->st, cudaStreamCaptureModeThreadLocal);
    for (int r = 0; r < REPS && !rc; r++)
        rc = k ? legacy_body(c, l, n, in, out, res, err, errlen)
               : run_plan(c, l, lp, in, out, res, err, errlen);
    cudaError_t e = cudaStreamEndCapture(c->st, &g);
    if (!rc && e != cudaSuccess)
        rc = fail(err, errlen, "cudaStreamEndCapture", cudaGetErrorString(e), __FILE__, __LINE__);
    if (!rc && (e = cudaGraphInstantiate(&x, g, 0)) != cudaSuccess)
        rc = fail(err, errlen, "cudaGraphInstantiate", cudaGetErrorString(e), __FILE__, __LINE__);
    /* The first launch uploads the graph; the second is timed. */
    if (!rc && ((e = cudaGraphLaunch(x, c->st)) != cudaSuccess ||
                (e = cudaEventRecord(c->tune_ev[0], c->st)) != cudaSuccess ||
                (e = cudaGraphLaunch(x, c->st)) != cudaSuccess ||
                (e = cudaEventRecord(c->tune_ev[1], c->st)) != cudaSuccess ||
                (e = cudaEventSynchronize(c->tune_ev[1])) != cudaSuccess ||
                (e = cudaEventElapsedTime(ms, c->tune_ev[0], c->tune_ev[1])) != cudaSuccess))
        rc = fail(err, errlen, "timing a layer", cudaGetErrorString(e), __FILE__, __LINE__);
    if (!rc)
        *ms /= REPS;
    else
        clear_error();
    if (x)
        cudaGraphExecDestroy(x);
    if (g)
        cudaGraphDestroy(g);
    return rc;
}

/* Plan or legacy calls for layer idx, decided once, at the largest planned
 * size (captured first), for every size: an image's result then does not
 * depend on the size of its batch.  The faster in time_variant wins; a plan
 * that cannot be captured loses.  MAA_CUDA_FUSED=force takes the plan. */
static int decide(cuda_ctx *c, int idx, const layer_plan *lp, int n, const void *in, void *out,
                  const void *res, char *err, size_t errlen)
{
    layer *l = &c->l[idx];
    char perr[MAA_ERRLEN];
    l->decided = l->use_plan = 1;
    if (c->force)
        return MAA_OK;
    /* The legacy calls' own probe (a refused fused call) runs eagerly. */
    if (legacy_body(c, l, n, in, out, res, err, errlen))
        return MAA_ERR;
    c->probing = 0;
    int rc = time_variant(c, idx, lp, 1, n, in, out, res, &l->legacy_ms, err, errlen);
    if (!rc && time_variant(c, idx, lp, 0, n, in, out, res, &l->plan_ms, perr, sizeof perr)) {
        snprintf(l->why, sizeof l->why, "%.200s", perr);
        l->plan_ms = INFINITY;
    }
    c->probing = 1;
    l->use_plan = !rc && l->plan_ms <= l->legacy_ms;
    return rc;
}

static int layer_body(cuda_ctx *c, int idx, int n, const void *in, void *out, const void *res,
                      char *err, size_t errlen)
{
    layer *l = &c->l[idx];
    layer_plan *lp = c->plans ? &l->lp[c->cur] : NULL;
    if (lp && lp->has && c->probing && !lp->probed)
        probe(c, idx, lp, in, out, res);
    if (lp && lp->has && c->probing && !l->decided &&
        decide(c, idx, lp, n, in, out, res, err, errlen))
        return MAA_ERR;
    if (lp && lp->has && l->use_plan)
        return run_plan(c, l, lp, in, out, res, err, errlen);
    return legacy_body(c, l, n, in, out, res, err, errlen);
}

/* layer_body, timed by events while profiling. */
static int run_layer(cuda_ctx *c, int idx, int n, const void *in, void *out, const void *res,
                     char *err, size_t errlen)
{
    if (c->prof)
        CUDA(cudaEventRecord, c->prof[2 * idx], c->st);
    int rc = layer_body(c, idx, n, in, out, res, err, errlen);
    if (!rc && c->prof)
        CUDA(cudaEventRecord, c->prof[2 * idx + 1], c->st);
    return rc;
}

/* r = G(x) for n images. */
static int generator(cuda_ctx *c, int n, const void *x, void *r, char *err, size_t errlen)
{
    void *a = c->act[0], *b = c->act[1], *t = c->act[2], *swap;
#define STEP(idx, in, out, res) \
    if (run_layer(c, idx, n, in, out, res, err, errlen)) return MAA_ERR
#define SWAP() (swap = a, a = b, b = swap)
    STEP(MAA_NET_ENC, x, a, NULL);
    for (int k = 1; k < 5; k++) {
        STEP(MAA_NET_ENC + k, a, b, NULL);
        SWAP();
    }
    for (int k = 0; k < 6; k++) {
        if (k == 3) {
            const layer *m = &c->l[MAA_NET_MEM];
            STEP(MAA_NET_MEM, a, t, NULL);
            CUDA(maa_cuda_lstm, t, c->hconv, c->c0, b, shape(c, n, m->cin, m->ho, m->wo), c->st);
            SWAP();
        }
        STEP(maa_net_res(k), a, t, NULL);
        STEP(maa_net_res(k) + 1, t, b, a);
        SWAP();
    }
    for (int k = 0; k < 4; k++) {
        STEP(MAA_NET_DEC + k, a, b, NULL);
        SWAP();
    }
    STEP(MAA_NET_DEC + 4, a, r, NULL);
    return MAA_OK;
#undef STEP
#undef SWAP
}

/* The index in c->sizes of the batch size n images run at with plans: the
 * smallest planned size >= n.  The images beyond n are left over from
 * earlier batches (or zeros) and their outputs ignored. */
static int size_index(const cuda_ctx *c, int n)
{
    int k = 0;
    while (k < c->nsizes - 1 && c->sizes[k] < n)
        k++;
    return k;
}

static int run_size(const cuda_ctx *c, int n)
{
    return c->plans ? c->sizes[size_index(c, n)] : n;
}

/* f(x) and f(r) of the first n images of the 2p maps at f, to d_f as n
 * maps of f(x) then n of f(r), float. */
static int export_maps(cuda_ctx *c, void *f, int n, int p, char *err, size_t errlen)
{
    const int M = c->info.markov_size;
    CUDA(maa_cuda_export, f, shape(c, n, 1, M, M), c->d_f, c->st);
    CUDA(maa_cuda_export, elem(c, f, (size_t)p * c->mm), shape(c, n, 1, M, M),
         c->d_f + (size_t)n * c->mm, c->st);
    return MAA_OK;
}

/* The Markov encoder over the 2n images at c->images; *f gets its output. */
static int markov(cuda_ctx *c, int n, void **f, char *err, size_t errlen)
{
    const void *in = c->images;
    for (int k = 0; k < 6; k++) {
        void *out = c->act[k & 1];
        if (run_layer(c, MAA_NET_D + k, n, in, out, NULL, err, errlen))
            return MAA_ERR;
        in = out;
    }
    *f = c->act[1];
    return MAA_OK;
}

/* One batch of n on the stream: what each graph holds. */
static int issue(cuda_ctx *c, int n, char *err, size_t errlen)
{
    const int S = c->info.image_size, C = c->info.channels, p = run_size(c, n);
    void *r = elem(c, c->images, (size_t)p * c->img), *f;
    CUDA(cudaMemcpyAsync, c->d_x, c->h_x, n * c->img * sizeof(float), cudaMemcpyHostToDevice,
         c->st);
    CUDA(maa_cuda_import, c->d_x, c->images, shape(c, n, C, S, S), c->st);
    if (generator(c, p, c->images, r, err, errlen) || markov(c, p, &f, err, errlen) ||
        export_maps(c, f, n, p, err, errlen))
        return MAA_ERR;
    CUDA(maa_cuda_export, r, shape(c, n, C, S, S), c->d_r, c->st);
    CUDA(cudaMemcpyAsync, c->h_r, c->d_r, n * c->img * sizeof(float), cudaMemcpyDeviceToHost,
         c->st);
    CUDA(cudaMemcpyAsync, c->h_f, c->d_f, 2 * n * c->mm * sizeof(float), cudaMemcpyDeviceToHost,
         c->st);
    return MAA_OK;
}

/* One batch of n frames on the stream, the frames and parameters already in
 * d_u8 and d_par: what each frame-path graph holds. */
static int issue8(cuda_ctx *c, int n, char *err, size_t errlen)
{
    const int S = c->info.image_size, C = c->info.channels, p = run_size(c, n);
    const size_t s2 = (size_t)S * S;
    void *r = elem(c, c->images, (size_t)p * c->img), *f;
    CUDA(cudaMemsetAsync, c->d_peak, 0, n * sizeof(float), c->st);
    CUDA(maa_cuda_import8, c->d_u8, c->frame_cap, c->d_par, c->d_x, c->images,
         shape(c, n, C, S, S), c->st);
    if (generator(c, p, c->images, r, err, errlen) || markov(c, p, &f, err, errlen) ||
        export_maps(c, f, n, p, err, errlen))
        return MAA_ERR;
    CUDA(maa_cuda_residual, c->d_x, r, shape(c, n, C, S, S), c->d_e, c->d_e2, c->st);
    CUDA(maa_cuda_box_rows, c->d_e, c->d_e2, c->d_par, n, S, S, c->d_he, c->d_he2, c->st);
    CUDA(maa_cuda_box_cols_mask, c->d_he, c->d_he2, c->d_par, n, S, S, c->d_mask, c->d_peak,
         c->st);
    CUDA(cudaMemcpyAsync, c->h_f, c->d_f, 2 * n * c->mm * sizeof(float), cudaMemcpyDeviceToHost,
         c->st);
    CUDA(cudaMemcpyAsync, c->h_mask, c->d_mask, n * s2, cudaMemcpyDeviceToHost, c->st);
    CUDA(cudaMemcpyAsync, c->h_peak, c->d_peak, n * sizeof(float), cudaMemcpyDeviceToHost, c->st);
    return MAA_OK;
}

/* Runs fn for a batch of n once for real (loading cuDNN's kernels and
 * probing the fused calls and plans, none of which may happen during
 * capture), then captures it into *exec. */
static int capture_one(cuda_ctx *c, int n, int (*fn)(cuda_ctx *, int, char *, size_t),
                       cudaGraphExec_t *exec, char *err, size_t errlen)
{
    c->probing = 1;
    int rc = fn(c, n, err, errlen);
    c->probing = 0;
    if (rc)
        return MAA_ERR;
    CUDA(cudaStreamSynchronize, c->st);
    CUDA(cudaStreamBeginCapture, c->st, cudaStreamCaptureModeThreadLocal);
    rc = fn(c, n, err, errlen);
    cudaGraph_t g = NULL;
    cudaError_t e = cudaStreamEndCapture(c->st, &g);
    if (!rc && e != cudaSuccess)
        rc = fail(err, errlen, "cudaStreamEndCapture", cudaGetErrorString(e), __FILE__, __LINE__);
    if (!rc) {
        e = cudaGraphInstantiate(exec, g, 0);
        if (e != cudaSuccess)
            rc = fail(err, errlen, "cudaGraphInstantiate", cudaGetErrorString(e), __FILE__,
                      __LINE__);
    }
    if (g)
        cudaGraphDestroy(g);
    if (rc)
        clear_error();
    return rc;
}

static int capture(cuda_ctx *c, int n, char *err, size_t errlen)
{
    c->cur = size_index(c, n);
    if (set_batch(c, run_size(c, n), err, errlen) ||
        capture_one(c, n, issue, &c->exec[n - 1], err, errlen) ||
        capture_one(c, n, issue8, &c->exec8[n - 1], err, errlen))
        return MAA_ERR;
    return MAA_OK;
}

/* The graphs of every batch size, any earlier ones dropped first; the
 * largest first, where each layer decides between its plan and its legacy
 * calls.  When no layer chose its plan, the smaller batches run at their
 * own size. */
static int capture_all(cuda_ctx *c, char *err, size_t errlen)
{
    for (int n = 1; n <= c->max_batch; n++) {
        if (c->exec[n - 1])
            cudaGraphExecDestroy(c->exec[n - 1]);
        if (c->exec8[n - 1])
            cudaGraphExecDestroy(c->exec8[n - 1]);
        c->exec[n - 1] = c->exec8[n - 1] = NULL;
    }
    for (int n = c->max_batch; n >= 1; n--) {
        if (capture(c, n, err, errlen))
            return MAA_ERR;
        int used = 0;
        for (int i = 0; c->plans && i < MAA_NET_LAYERS; i++)
            used += c->l[i].lp[c->cur].has && c->l[i].use_plan;
        if (n == c->max_batch && c->plans && !used)
            c->plans = 0;
    }
    return MAA_OK;
}

/* MAA_CUDA_PROFILE set: one frame-path batch of max_batch, layer by layer
 * with events, printed to stderr (docs/cuda-backend.md shows a table).  A
 * diagnostic: its own failure is printed, never the engine's. */
static void profile(cuda_ctx *c)
{
    enum { NEV = 2 * MAA_NET_LAYERS + 2 };
    const int n = c->max_batch;
    cudaEvent_t ev[NEV];
    char err[MAA_ERRLEN] = "";
    int made = 0, rc = MAA_OK;
    while (made < NEV && cudaEventCreate(&ev[made]) == cudaSuccess)
        made++;
    if (made < NEV)
        rc = fail(err, sizeof err, "cudaEventCreate", "failed", __FILE__, __LINE__);
    c->cur = size_index(c, n);
    if (!rc && !(rc = set_batch(c, run_size(c, n), err, sizeof err))) {
        c->prof = ev;
        cudaEventRecord(ev[NEV - 2], c->st);
        rc = issue8(c, n, err, sizeof err);
        cudaEventRecord(ev[NEV - 1], c->st);
        c->prof = NULL;
    }
    if (!rc) {
        cudaError_t e = cudaStreamSynchronize(c->st);
        if (e != cudaSuccess)
            rc = fail(err, sizeof err, "cudaStreamSynchronize", cudaGetErrorString(e), __FILE__,
                      __LINE__);
    }
    if (!rc) {
        float total = 0, layers = 0;
        cudaEventElapsedTime(&total, ev[NEV - 2], ev[NEV - 1]);
        fprintf(stderr, "cuda profile, batch %d, %s: layer, ms, how\n", n,
                c->half ? "f16" : "f32");
        for (int i = 0; i < MAA_NET_LAYERS; i++) {
            const layer *l = &c->l[i];
            float ms = 0;
            char how[220];
            cudaEventElapsedTime(&ms, ev[2 * i], ev[2 * i + 1]);
            layers += ms;
            const layer_plan *lp = &l->lp[c->cur];
            int k = 0;
            if (c->plans && lp->has && l->use_plan)
                k = snprintf(how, sizeof how, "plan: engine %lld%s", (long long)lp->plan.engine,
                             lp->plan.compiled ? " (compiled)" : "");
            else
                k = snprintf(how, sizeof how, "legacy: algorithm %d%s%s%s", l->fused ? l->falgo :
                             l->algo, l->fused ? " fused" : "", *l->why ? "; plan: " : "",
                             l->why);
            if (l->decided && !c->force && k > 0 && (size_t)k < sizeof how)
                snprintf(how + k, sizeof how - k, " (timed: plan %.4f, legacy %.4f ms)",
                         l->plan_ms, l->legacy_ms);
            fprintf(stderr, "  %-14s %8.4f  %s\n", l->d.name, ms, how);
        }
        fprintf(stderr, "  layers %.4f ms, whole batch %.4f ms (rest: copies, LSTM, mask)\n",
                layers, total);
    } else {
        fprintf(stderr, "cuda profile: %s\n", err);
    }
    for (int i = 0; i < made; i++)
        cudaEventDestroy(ev[i]);
}

/* MAA_CUDA_FUSED: a plan per layer and planned batch size, one for each
 * set of identical layers (the residual blocks' convs), built on parallel
 * threads for the device's description where cuDNN has one (>= 9.8),
 * else one after another on the handle.  A layer cuDNN cannot plan keeps
 * the legacy calls, with the reason kept for the profile. */
static int plan_layers(cuda_ctx *c, char *err, size_t errlen)
{
    const int L = MAA_NET_LAYERS, count = c->nsizes * L;
    maa_plan_layer *pl = malloc(count * sizeof *pl);
    maa_plan *plans = malloc(count * sizeof *plans);
    int *rc = malloc(count * sizeof *rc);
    char(*why)[MAA_PLAN_WHY] = malloc(count * sizeof *why);
    if (!pl || !plans || !rc || !why) {
        free(pl);
        free(plans);
        free(rc);
        free(why);
        maa_seterr(err, errlen, "cuda backend: out of memory");
        return MAA_ERR;
    }
    for (int s = 0; s < c->nsizes; s++)
        maa_plan_network(&c->info, c->sizes[s], pl + s * L);
    if (maa_plan_device(c->dnn, &c->devprop, c->devprop_why, sizeof c->devprop_why))
        c->devprop = NULL;
    const maa_plan_target t = {.handle = c->dnn, .devprop = c->devprop, .ws_limit = WS_LIMIT,
                               .device = c->device};
    maa_plan_build_all(pl, count, &t, plans, rc, why);
    for (int s = 0; s < c->nsizes; s++)
        for (int i = 0; i < L; i++) {
            layer_plan *lp = &c->l[i].lp[s];
            lp->plan = plans[s * L + i];
            lp->has = rc[s * L + i] == MAA_OK;
            if (!lp->has)
                snprintf(c->l[i].why, sizeof c->l[i].why, "%s", why[s * L + i]);
        }
    free(pl);
    free(plans);
    free(rc);
    free(why);
    return MAA_OK;
}

/* ---- create, run, destroy ------------------------------------------------ */

static int alloc_buffers(cuda_ctx *c, char *err, size_t errlen)
{
    const size_t B = (size_t)c->max_batch;
    size_t cap = 0;
    for (int i = 0; i < MAA_NET_LAYERS; i++) {
        const layer *l = &c->l[i];
        size_t e = B * l->per_image * l->d.cout * l->ho * l->wo;
        cap = e > cap ? e : cap;
    }
    for (int k = 0; k < 3; k++)
        CUDA(cudaMalloc, &c->act[k], cap * c->esz);
    CUDA(cudaMalloc, &c->images, 2 * B * c->img * c->esz);
    /* With plans, batches run padded to the next planned size: the unused
     * images must be finite from the start (and are old images after that). */
    CUDA(cudaMemsetAsync, c->images, 0, 2 * B * c->img * c->esz, c->st);
    CUDA(cudaMalloc, (void **)&c->d_x, B * c->img * sizeof(float));
    CUDA(cudaMalloc, (void **)&c->d_r, B * c->img * sizeof(float));
    CUDA(cudaMalloc, (void **)&c->d_f, 2 * B * c->mm * sizeof(float));
    CUDA(cudaHostAlloc, (void **)&c->h_x, B * c->img * sizeof(float), cudaHostAllocDefault);
    CUDA(cudaHostAlloc, (void **)&c->h_r, B * c->img * sizeof(float), cudaHostAllocDefault);
    CUDA(cudaHostAlloc, (void **)&c->h_f, 2 * B * c->mm * sizeof(float), cudaHostAllocDefault);
    /* The warm-up runs read the staging buffer before any image arrives. */
    memset(c->h_x, 0, B * c->img * sizeof(float));
    const size_t s2 = (size_t)c->info.image_size * c->info.image_size;
    CUDA(cudaMalloc, (void **)&c->d_u8, B * c->frame_cap);
    CUDA(cudaHostAlloc, (void **)&c->h_u8, B * c->frame_cap, cudaHostAllocDefault);
    CUDA(cudaMalloc, (void **)&c->d_mask, B * s2);
    CUDA(cudaHostAlloc, (void **)&c->h_mask, B * s2, cudaHostAllocDefault);
    float **scratch[] = {&c->d_e, &c->d_e2, &c->d_he, &c->d_he2};
    for (int k = 0; k < 4; k++)
        CUDA(cudaMalloc, (void **)scratch[k], B * s2 * sizeof(float));
    CUDA(cudaMalloc, (void **)&c->d_peak, B * sizeof(float));
    CUDA(cudaHostAlloc, (void **)&c->h_peak, B * sizeof(float), cudaHostAllocDefault);
    CUDA(cudaMalloc, (void **)&c->d_par, sizeof *c->d_par);
    CUDA(cudaHostAlloc, (void **)&c->h_par, sizeof *c->h_par, cudaHostAllocDefault);
    /* Valid parameters and frames for the warm-up runs of the frame path. */
    *c->h_par = (maa_cuda_params){c->info.image_size, c->info.image_size, 3, 7, INFINITY};
    CUDA(cudaMemcpyAsync, c->d_par, c->h_par, sizeof *c->h_par, cudaMemcpyHostToDevice, c->st);
    CUDA(cudaMemsetAsync, c->d_u8, 0, B * c->frame_cap, c->st);
    CUDA(cudaStreamSynchronize, c->st);
    return MAA_OK;
}

static void cuda_destroy(void *ctx)
{
    cuda_ctx *c = ctx;
    if (!c)
        return;
    cudaSetDevice(c->device);
    if (c->st)
        cudaStreamSynchronize(c->st);
    for (int n = 0; n < c->max_batch; n++) {
        if (c->exec && c->exec[n])
            cudaGraphExecDestroy(c->exec[n]);
        if (c->exec8 && c->exec8[n])
            cudaGraphExecDestroy(c->exec8[n]);
    }
    free(c->exec);
    free(c->exec8);
    for (int i = 0; i < MAA_NET_LAYERS; i++) {
        layer *l = &c->l[i];
        cudaFree(l->w);
        cudaFree(l->bias);
        cudaFree(l->bias_t);
        for (int s = 0; s < MAX_SIZES; s++) {
            maa_plan_free(&l->lp[s].plan);
            if (l->lp[s].stale)
                cudnnBackendDestroyDescriptor(l->lp[s].stale);
        }
        if (l->wd) cudnnDestroyFilterDescriptor(l->wd);
        if (l->cd) cudnnDestroyConvolutionDescriptor(l->cd);
        if (l->xd) cudnnDestroyTensorDescriptor(l->xd);
        if (l->yd) cudnnDestroyTensorDescriptor(l->yd);
        if (l->bd) cudnnDestroyTensorDescriptor(l->bd);
    }
    if (c->relu)
        cudnnDestroyActivationDescriptor(c->relu);
    for (int k = 0; k < 2; k++)
        if (c->tune_ev[k])
            cudaEventDestroy(c->tune_ev[k]);
    if (c->devprop)
        cudnnBackendDestroyDescriptor(c->devprop);
    cudaFree(c->hconv);
    cudaFree(c->c0);
    cudaFree(c->d_x);
    cudaFree(c->d_r);
    cudaFree(c->d_f);
    cudaFree(c->images);
    for (int k = 0; k < 3; k++)
        cudaFree(c->act[k]);
    cudaFree(c->ws);
    cudaFreeHost(c->h_x);
    cudaFreeHost(c->h_r);
    cudaFreeHost(c->h_f);
    void *dev[] = {c->d_u8, c->d_mask, c->d_e, c->d_e2, c->d_he, c->d_he2, c->d_peak, c->d_par};
    for (size_t k = 0; k < sizeof dev / sizeof *dev; k++)
        cudaFree(dev[k]);
    void *host[] = {c->h_u8, c->h_mask, c->h_peak, c->h_par};
    for (size_t k = 0; k < sizeof host / sizeof *host; k++)
        cudaFreeHost(host[k]);
    if (c->dnn)
        cudnnDestroy(c->dnn);
    if (c->st)
        cudaStreamDestroy(c->st);
    free(c);
}

static int setup(cuda_ctx *c, const maa_model *m, char *err, size_t errlen)
{
    int count = 0;
    CUDA(cudaGetDeviceCount, &count);
    if (c->device < 0 || c->device >= count) {
        maa_seterr(err, errlen, "cuda backend: device %d requested, %d present", c->device, count);
        return MAA_ERR;
    }
    CUDA(cudaSetDevice, c->device);
    CUDA(cudaStreamCreateWithFlags, &c->st, cudaStreamNonBlocking);
    DNN(cudnnCreate, &c->dnn);
    DNN(cudnnSetStream, c->dnn, c->st);
    if (setup_layers(c, m, err, errlen) || memory_constant(c, m, err, errlen) ||
        alloc_buffers(c, err, errlen) || set_batch(c, c->max_batch, err, errlen))
        return MAA_ERR;
    for (int i = 0; i < MAA_NET_LAYERS; i++)
        if (choose_algos(c, &c->l[i], err, errlen))
            return MAA_ERR;
    if (c->plans) {
        CUDA(cudaEventCreate, &c->tune_ev[0]);
        CUDA(cudaEventCreate, &c->tune_ev[1]);
        if (plan_layers(c, err, errlen))
            return MAA_ERR;
    }
    /* Workspace sizes may depend on the batch: take the largest. */
    size_t ws = 0;
    for (int n = 1; n <= c->max_batch; n++) {
        if (set_batch(c, n, err, errlen))
            return MAA_ERR;
        for (int i = 0; i < MAA_NET_LAYERS; i++)
            if (need_workspace(c, &c->l[i], &ws, err, errlen))
                return MAA_ERR;
    }
    for (int i = 0; c->plans && i < MAA_NET_LAYERS; i++)
        for (int s = 0; s < c->nsizes; s++)
            if (c->l[i].lp[s].has && (size_t)c->l[i].lp[s].plan.workspace > ws)
                ws = (size_t)c->l[i].lp[s].plan.workspace;
    c->ws_size = ws;
    if (ws)
        CUDA(cudaMalloc, &c->ws, ws);
    if (!(c->exec = calloc((unsigned)c->max_batch, sizeof *c->exec)) ||
        !(c->exec8 = calloc((unsigned)c->max_batch, sizeof *c->exec8))) {
        maa_seterr(err, errlen, "cuda backend: out of memory");
        return MAA_ERR;
    }
    if (capture_all(c, err, errlen)) {
        if (!c->plans)
            return MAA_ERR;
        /* Whatever failed with plans (a warm-up run, a capture), the
         * legacy calls serve instead. */
        snprintf(c->plans_off, sizeof c->plans_off, "%.150s", err);
        c->plans = 0;
        clear_error();
        if (capture_all(c, err, errlen)) {
            char again[MAA_ERRLEN];
            snprintf(again, sizeof again, "%.300s", err);
            maa_seterr(err, errlen, "%s (after MAA_CUDA_FUSED's graphs were dropped: %s)", again,
                       c->plans_off);
            return MAA_ERR;
        }
    }
    const char *p = getenv("MAA_CUDA_PROFILE");
    if (p && *p && strcmp(p, "0"))
        profile(c);
    return MAA_OK;
}

static int cuda_create(const maa_model *m, const maa_engine_opts *opts, void **out, char *err,
                       size_t errlen)
{
    *out = NULL;
    if (opts->precision != MAA_PREC_F32 && opts->precision != MAA_PREC_F16) {
        maa_seterr(err, errlen, "backend cuda computes in f16 or f32, not %s",
                   maa_precision_name(opts->precision));
        return MAA_ERR;
    }
    cuda_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        maa_seterr(err, errlen, "cuda backend: out of memory");
        return MAA_ERR;
    }
    c->info = *maa_model_get_info(m);
    c->device = opts->device;
    c->max_batch = opts->max_batch < 1 ? 1 : opts->max_batch;
    c->frame_cap = maa_frame_capacity(&c->info, opts);
    c->half = opts->precision == MAA_PREC_F16;
    const char *fused = getenv("MAA_CUDA_FUSED");
    c->plans = c->fused_asked = c->half && fused && *fused && strcmp(fused, "0");
    c->force = c->plans && !strcmp(fused, "force");
    /* Powers of two below max_batch, at most MAX_SIZES - 1 of them, then
     * max_batch: the larger batches pad up to it. */
    for (int s = 1; s < c->max_batch && c->nsizes < MAX_SIZES - 1; s *= 2)
        c->sizes[c->nsizes++] = s;
    c->sizes[c->nsizes++] = c->max_batch;
    c->fmt = c->half ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW;
    c->dt = c->half ? CUDNN_DATA_HALF : CUDNN_DATA_FLOAT;
    c->esz = c->half ? 2 : 4;
    c->img = (size_t)c->info.channels * c->info.image_size * c->info.image_size;
    c->mm = (size_t)c->info.markov_size * c->info.markov_size;
    if (setup(c, m, err, errlen)) {
        cuda_destroy(c);
        return MAA_ERR;
    }
    *out = c;
    return MAA_OK;
}

static int cuda_run(void *ctx, int n, const float *x, float *recon, float *fx, float *fr,
                    char *err, size_t errlen)
{
    cuda_ctx *c = ctx;
    if (n < 1 || n > c->max_batch) {
        maa_seterr(err, errlen, "cuda backend: batch of %d images, built for 1..%d", n,
                   c->max_batch);
        return MAA_ERR;
    }
    /* The calling thread may not be the one that created the engine. */
    CUDA(cudaSetDevice, c->device);
    memcpy(c->h_x, x, n * c->img * sizeof(float));
    CUDA(cudaGraphLaunch, c->exec[n - 1], c->st);
    CUDA(cudaStreamSynchronize, c->st);
    memcpy(recon, c->h_r, n * c->img * sizeof(float));
    memcpy(fx, c->h_f, n * c->mm * sizeof(float));
    memcpy(fr, c->h_f + n * c->mm, n * c->mm * sizeof(float));
    return MAA_OK;
}

static int cuda_inspect(void *ctx, const maa_device_batch *b, char *err, size_t errlen)
{
    cuda_ctx *c = ctx;
    const int n = b->n, ch = b->channels, S = c->info.image_size;
    const size_t s2 = (size_t)S * S, frame = (size_t)b->width * b->height * ch;
    if (ch != 1 && ch != 3 && ch != 4) {
        maa_seterr(err, errlen, "cuda backend: frames with %d channels", ch);
        return MAA_ERR;
    }
    if (b->width < S || b->height < S || frame > c->frame_cap) {
        maa_seterr(err, errlen, "cuda backend: %dx%d frames of %d channels; it takes frames "
                   "of %dx%d or more, up to %zu bytes", b->width, b->height, ch, S, S,
                   c->frame_cap);
        return MAA_ERR;
    }
    if (c->info.channels == 1 && ch != 1) {
        maa_seterr(err, errlen, "cuda backend: %d-channel frames for a 1-channel (mono) model",
                   ch);
        return MAA_ERR;
    }
    if (b->window < 1 || b->window % 2 == 0) {
        maa_seterr(err, errlen, "cuda backend: mask window %d is not odd", b->window);
        return MAA_ERR;
    }
    /* A frame written into its own buffer (cuda_frame_buffer) is sent from
     * there; one elsewhere in the buffers could be overwritten before it is
     * copied, so the batch is refused before anything is copied. */
    const uintptr_t lo = (uintptr_t)c->h_u8, hi = lo + c->max_batch * c->frame_cap;
    for (int i = 0; i < n; i++) {
        const uintptr_t at = (uintptr_t)b->frames[i];
        if (at >= lo && at < hi && at != lo + i * c->frame_cap) {
            maa_seterr(err, errlen, "cuda backend: frame %d of the batch lies at byte %zu of "
                       "frame buffer %d; frame i belongs at the start of buffer i", i,
                       (size_t)((at - lo) % c->frame_cap), (int)((at - lo) / c->frame_cap));
            return MAA_ERR;
        }
    }
    for (int i = 0; i < n; i++) {
        uint8_t *own = c->h_u8 + i * c->frame_cap;
        if (b->frames[i] != own)
            memcpy(own, b->frames[i], frame);
    }
    CUDA(cudaSetDevice, c->device);
    *c->h_par = (maa_cuda_params){b->width, b->height, ch, b->window, b->t_pix};
    CUDA(cudaMemcpyAsync, c->d_par, c->h_par, sizeof *c->h_par, cudaMemcpyHostToDevice, c->st);
    CUDA(cudaMemcpy2DAsync, c->d_u8, c->frame_cap, c->h_u8, c->frame_cap, frame, n,
         cudaMemcpyHostToDevice, c->st);
    CUDA(cudaGraphLaunch, c->exec8[n - 1], c->st);
    CUDA(cudaStreamSynchronize, c->st);
    memcpy(b->fx, c->h_f, n * c->mm * sizeof(float));
    memcpy(b->fr, c->h_f + n * c->mm, n * c->mm * sizeof(float));
    memcpy(b->peak, c->h_peak, n * sizeof(float));
    memcpy(b->mask, c->h_mask, n * s2);
    return MAA_OK;
}

static uint8_t *cuda_frame_buffer(void *ctx, int i)
{
    cuda_ctx *c = ctx;
    return c->h_u8 + (size_t)i * c->frame_cap;
}

static void cuda_describe(const void *ctx, char *buf, size_t len)
{
    const cuda_ctx *c = ctx;
    const int top = c->nsizes - 1;
    int planned = 0, used = 0, k = 0;
    if (!c->fused_asked) {
        snprintf(buf, len, "cuDNN legacy API");
        return;
    }
    if (*c->plans_off) {
        snprintf(buf, len, "cuDNN legacy API: MAA_CUDA_FUSED's graphs were dropped (%s)",
                 c->plans_off);
        return;
    }
    for (int i = 0; i < MAA_NET_LAYERS; i++) {
        planned += c->l[i].lp[top].has;
        used += c->plans && c->l[i].lp[top].has && c->l[i].use_plan;
    }
    char sizes[64] = "", rebuilt[64] = "";
    for (int s = 0; s < c->nsizes && k >= 0 && (size_t)k < sizeof sizes; s++)
        k += snprintf(sizes + k, sizeof sizes - k, "%s%d", s ? " " : "", c->sizes[s]);
    if (c->rebuilt)
        snprintf(rebuilt, sizeof rebuilt, "; %d plans rebuilt on the handle", c->rebuilt);
    snprintf(buf, len, "fused cuDNN graphs (MAA_CUDA_FUSED%s) for %d of %d layers at batch %d, "
             "%d in use (%s); %s%s%s%s%s", c->force ? "=force" : "", planned, MAA_NET_LAYERS,
             c->max_batch, used, c->force ? "forced" : "faster than the legacy calls",
             c->plans ? "planned batch sizes " : "a batch runs at its own size",
             c->plans ? sizes : "", rebuilt, *c->devprop_why ? "; built one at a time: " : "",
             c->devprop_why);
}

const maa_backend_ops maa_backend_cuda = {
    .name = "cuda",
    .available = cuda_available,
    .create = cuda_create,
    .run = cuda_run,
    .destroy = cuda_destroy,
    .inspect = cuda_inspect,
    .describe = cuda_describe,
    .frame_buffer = cuda_frame_buffer,
};
