/* cudnn_plan.h — private to engine/backend_cuda.c (and its deviceless test):
 * one layer of the network as a fused cuDNN graph (backend API):
 *
 *     y = act(conv(x, w) + bias + res)        act: none, ReLU, LeakyReLU, tanh
 *
 * where conv is a forward convolution or, for a transposed layer, cuDNN's
 * backward-data convolution; bias and res are optional.  Half data in NHWC
 * with float accumulation and float epilogue arithmetic; the legacy API
 * cannot fuse these epilogues (docs/cuda-backend.md, "Fused graphs").
 *
 * A plan is built for one batch size, for the device of a cuDNN handle or
 * for a device-properties descriptor (cuDNN >= 9.8).  The latter needs no
 * handle, so plans can be built on several threads at once (cuDNN forbids
 * sharing a handle between threads), and needs no device at all when only
 * checking: cuDNN then validates the graph, picks an engine for the device
 * described and compiles its kernel; only loading the kernel fails. */
#ifndef MAA_CUDNN_PLAN_H
#define MAA_CUDNN_PLAN_H

#include <cudnn.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/backend.h"

typedef struct {
    int transposed;            /* y is the backward-data conv of x */
    int n, cin, hi, wi;        /* x: n images of cin x hi x wi */
    int cout, ho, wo;          /* y */
    int kh, kw, stride, ph, pw;
    int bias;                  /* add a float bias per output channel */
    int residual;              /* add a half tensor of y's shape */
    int act;                   /* maa_act of engine/backend.h */
    double slope;              /* LeakyReLU's negative slope */
} maa_plan_layer;
/* No padding bytes: layers are compared with memcmp. */
_Static_assert(sizeof(maa_plan_layer) == 16 * sizeof(int) + sizeof(double),
               "maa_plan_layer has padding");

typedef struct {
    cudnnBackendDescriptor_t plan;  /* NULL for a plan only checked */
    int64_t workspace;         /* bytes */
    int64_t engine;            /* cuDNN's global engine index */
    int compiled;              /* the engine compiles its kernel at build */
    int configs;               /* engine configurations cuDNN's heuristics offered */
    int deviceless;            /* built for a devprop, not a handle */
    int same_as;               /* maa_plan_build_all: index of the layer whose
                                  plan this is, -1 when its own */
} maa_plan;

/* What a plan is built for: exactly one of handle and devprop. */
typedef struct {
    cudnnHandle_t handle;
    cudnnBackendDescriptor_t devprop;
    int check_only;            /* no device: a kernel that compiled counts */
    size_t ws_limit;           /* most workspace a plan may ask, bytes */
    int device;                /* CUDA device the building threads select, or -1 */
} maa_plan_target;

#define MAA_PLAN_WHY 256

/* The properties of the device of handle, as cuDNN describes it. */
int maa_plan_device(cudnnHandle_t handle, cudnnBackendDescriptor_t *out, char *err,
                    size_t errlen);

/* Every layer of the network for a batch of n images, as engine/net.c
 * describes it: the Markov encoder's layers take 2n (x and r), g.mem reads
 * only z (its h-half and bias are a constant added by the ConvLSTM kernel),
 * conv2 of each residual block adds the block's input. */
void maa_plan_network(const maa_model_info *info, int n, maa_plan_layer out[MAA_NET_LAYERS]);

/* Builds the plan for l with the first configuration, in the order of
 * cuDNN's heuristics, that is deterministic, needs at most t->ws_limit
 * bytes of workspace and finalizes.  Returns MAA_OK, or MAA_ERR with the
 * reason in err (an unsupported layer is an error: the caller keeps the
 * legacy path for it). */
int maa_plan_build(const maa_plan_layer *l, const maa_plan_target *t, maa_plan *out,
                   char *err, size_t errlen);

/* maa_plan_build for count layers: a layer equal to an earlier one gets
 * that one's plan (same_as), the others are built on parallel threads when
 * t has a devprop.  rc[i] and why[i] are each layer's result. */
void maa_plan_build_all(const maa_plan_layer *l, int count, const maa_plan_target *t,
                        maa_plan *out, int *rc, char (*why)[MAA_PLAN_WHY]);

/* Enqueues the plan on the handle's stream; bias and res as built (NULL
 * when the layer has none). */
int maa_plan_run(cudnnHandle_t handle, const maa_plan *p, const void *x,
                 const void *w, const float *bias, const void *res, void *y,
                 void *workspace, char *err, size_t errlen);

/* Releases p's plan unless it is another layer's (same_as >= 0). */
void maa_plan_free(maa_plan *p);

#endif
