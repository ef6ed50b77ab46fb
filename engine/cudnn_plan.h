/* cudnn_plan.h — private to engine/backend_cuda.c (and its deviceless test):
 * one layer of the network as a fused cuDNN graph (backend API):
 *
 *     y = act(conv(x, w) + bias + res)        act: none, ReLU, LeakyReLU, tanh
 *
 * where conv is a forward convolution or, for a transposed layer, cuDNN's
 * backward-data convolution; bias and res are optional.  Half data in NHWC
 * with float accumulation and float epilogue arithmetic; the legacy API
 * cannot fuse these epilogues (docs/cuda-backend.md, "Fused plans").
 *
 * A plan is built for one batch size and is either executable (built with a
 * cuDNN handle) or checked only (built with a device-properties descriptor,
 * no GPU needed: engine choice and kernel compilation, not execution). */
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
    cudnnBackendDescriptor_t plan;
    int64_t workspace;         /* bytes */
    int64_t engine;            /* cuDNN's global engine index */
    int compiled;              /* the engine compiles its kernel at build */
    int configs;               /* engine configurations cuDNN's heuristics offered */
} maa_plan;

/* Every layer of the network for a batch of n images, as engine/net.c
 * describes it: the Markov encoder's layers take 2n (x and r), g.mem reads
 * only z (its h-half and bias are a constant added by the ConvLSTM kernel),
 * conv2 of each residual block adds the block's input. */
void maa_plan_network(const maa_model_info *info, int n, maa_plan_layer out[MAA_NET_LAYERS]);

/* Builds the plan for l with the first configuration, in the order of
 * cuDNN's heuristics, that is deterministic, needs at most ws_limit bytes
 * of workspace and finalizes.  Exactly one of handle (an executable plan)
 * and devprop (a checked plan) is given.  Returns MAA_OK, or MAA_ERR with
 * the reason in err (an unsupported layer is an error: the caller keeps the
 * legacy path for it). */
int maa_plan_build(const maa_plan_layer *l, cudnnHandle_t handle,
                   cudnnBackendDescriptor_t devprop, size_t ws_limit,
                   maa_plan *out, char *err, size_t errlen);

/* Enqueues the plan on the handle's stream; bias and res as built (NULL
 * when the layer has none). */
int maa_plan_run(cudnnHandle_t handle, const maa_plan *p, const void *x,
                 const void *w, const float *bias, const void *res, void *y,
                 void *workspace, char *err, size_t errlen);

void maa_plan_free(maa_plan *p);

#endif
