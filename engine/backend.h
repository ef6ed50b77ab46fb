/* backend.h — private to engine/: the interface every backend implements.
 * A backend keeps all of its state (weights, buffers, device handles) in the
 * context it returns from create; run allocates nothing. */
#ifndef MAA_BACKEND_H
#define MAA_BACKEND_H

#include "engine/engine.h"

/* One batch for a backend's inspect: n 8-bit frames of one geometry go in
 * (width x height, at least S x S and at most maa_frame_capacity bytes;
 * `channels` interleaved samples of 1, 3 or 4; a gray frame feeds a C = 3
 * model replicated; alpha is ignored); f(x) and f(r) as maa_engine_run
 * gives them, and per frame the peak of m and the mask m > t_pix of contract §6
 * (S x S bytes, 0 or 255, before small regions are dropped) come out.  The
 * preprocessing (contract §1, area shrink included) and the mask equal
 * maa_preprocess and maa_varmap + threshold on the same numbers. */
typedef struct maa_device_batch {
    int n, width, height, channels;
    const uint8_t *const *frames;
    int window;       /* contract §6 w, odd */
    double t_pix;     /* mask threshold; INFINITY for no mask */
    float *fx, *fr;   /* n x M x M */
    float *peak;      /* n */
    uint8_t *mask;    /* n x S x S */
} maa_device_batch;

typedef struct {
    const char *name;
    /* MAA_OK when the backend can run here, else the reason. */
    int (*available)(char *why, size_t whylen);
    int (*create)(const maa_model *m, const maa_engine_opts *opts, void **ctx,
                  char *err, size_t errlen);
    /* See maa_engine_run for the tensor layouts. */
    int (*run)(void *ctx, int n, const float *x, float *recon, float *fx,
               float *fr, char *err, size_t errlen);
    void (*destroy)(void *ctx);
    /* Optional (NULL when the backend has none): the whole device side of an
     * inspection, see maa_device_batch. */
    int (*inspect)(void *ctx, const struct maa_device_batch *b, char *err,
                   size_t errlen);
    /* Optional: how the backend runs the network, for maa_engine_describe. */
    void (*describe)(const void *ctx, char *buf, size_t len);
    /* With inspect: the staging memory of frame i, maa_frame_capacity bytes
     * (see maa_inspector_frame_buffer). */
    uint8_t *(*frame_buffer)(void *ctx, int i);
} maa_backend_ops;

extern const maa_backend_ops maa_backend_ref;
extern const maa_backend_ops maa_backend_cpu;
#ifdef MAA_HAVE_CUDA
extern const maa_backend_ops maa_backend_cuda;
#endif

/* The MAA network of contract §2 as a list of convolutions (engine/net.c), in
 * execution order, so the loader, every backend and the tests agree on one
 * description.  Residual block k (0..5) is conv1 at maa_net_res(k), conv2 at
 * maa_net_res(k) + 1. */
typedef enum { MAA_ACT_NONE, MAA_ACT_RELU, MAA_ACT_LRELU, MAA_ACT_TANH } maa_act;

typedef struct {
    char name[16];    /* tensor prefix: "<name>.weight", "<name>.bias" */
    char bn[20];      /* BN prefix ("<bn>.weight", ...), "" when no BN */
    int transposed;   /* weights [cin, cout, kh, kw] when set */
    int cin, cout, kh, kw, stride, ph, pw, out_pad;
    int has_bias;
    maa_act act;      /* after BN; the residual sum adds no activation */
} maa_conv_desc;

enum {
    MAA_NET_ENC = 0,    /* g.enc.0 .. g.enc.4 */
    MAA_NET_RES_A = 5,  /* g.res.0 .. g.res.2, two convs each */
    MAA_NET_MEM = 11,   /* g.mem: conv over cat(z, h), 4 gates i f o g */
    MAA_NET_RES_B = 12, /* g.res.3 .. g.res.5 */
    MAA_NET_DEC = 18,   /* g.dec.0 .. g.dec.4 */
    MAA_NET_D = 23,     /* d.0 .. d.5: the Markov encoder */
    MAA_NET_LAYERS = 29
};

void maa_net_describe(const maa_model_info *info,
                      maa_conv_desc layers[MAA_NET_LAYERS]);
static inline int maa_net_res(int k)
{
    return k < 3 ? MAA_NET_RES_A + 2 * k : MAA_NET_RES_B + 2 * (k - 3);
}
/* The backend's inspect for this engine (an error for a backend without
 * one: maa_engine_frame_bytes is 0 there). */
int maa_engine_inspect(maa_engine *e, const maa_device_batch *b, char *err, size_t errlen);
/* The bytes of one frame that the backend's inspect takes; 0 when it has
 * none. */
size_t maa_engine_frame_bytes(const maa_engine *e);
/* The backend's frame_buffer; NULL without one or for i out of range. */
uint8_t *maa_engine_frame_buffer(maa_engine *e, int i);

/* What a backend with inspect sizes its frame buffers for: opts->frame_bytes,
 * and never less than an S x S frame of four samples. */
static inline size_t maa_frame_capacity(const maa_model_info *info, const maa_engine_opts *opts)
{
    size_t model = (size_t)info->image_size * info->image_size * 4;
    return opts->frame_bytes > model ? opts->frame_bytes : model;
}

/* The labelling half of maa_regions: mask (0 or 255) is already the
 * thresholded m; regions smaller than min_area are cleared from it. */
void maa_mask_regions(uint8_t *mask, int s, int min_area, int *labels, maa_region *regions,
                      int max_regions, int *nregions, int *total);

/* Output size of a layer for an input of h x w. */
void maa_conv_out_size(const maa_conv_desc *l, int h, int w, int *ho, int *wo);

/* Shared helpers (engine/util.c). */
void maa_seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
