/* cuda_kernels.h — private to engine/backend_cuda.c: the few elementwise
 * kernels cuDNN does not provide, with C linkage so that the host code stays
 * plain C.  Activations are float or half (half: 16-bit storage, float
 * arithmetic) in NCHW or NHWC; a tensor is described by maa_cuda_shape.
 * Every function launches on the given stream and returns the launch status
 * (cudaGetLastError), so it may be called while the stream is captured. */
#ifndef MAA_CUDA_KERNELS_H
#define MAA_CUDA_KERNELS_H

#include <cuda_runtime_api.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int n, c, h, w;
    int half;  /* elements are IEEE half, else float */
    int nhwc;  /* layout NHWC, else NCHW */
} maa_cuda_shape;

/* The per-batch parameters of the frame path, in device memory: written by
 * an async copy before each graph launch, read by the kernels, so that the
 * captured graphs serve every frame layout and calibration. */
typedef struct {
    int width, height;  /* of the 8-bit frames: the model size or larger */
    int channels;   /* interleaved samples per pixel of the 8-bit frames: 1, 3, 4 */
    int window;     /* contract §6 w, odd */
    double t_pix;   /* mask threshold */
} maa_cuda_params;

/* Activation codes, equal to maa_act of engine/backend.h. */
enum { MAA_CUDA_NONE, MAA_CUDA_RELU, MAA_CUDA_LRELU, MAA_CUDA_TANH };

/* dst (shape) = src, src float NCHW with the same n, c, h, w. */
cudaError_t maa_cuda_import(const float *src, void *dst, maa_cuda_shape s,
                            cudaStream_t st);
/* dst float NCHW = src (shape). */
cudaError_t maa_cuda_export(const void *src, maa_cuda_shape s, float *dst,
                            cudaStream_t st);
/* y = act(y + bias[c] + res) in place; bias and res may be NULL.  res has
 * y's shape. */
cudaError_t maa_cuda_epilogue(void *y, const float *bias, const void *res,
                              int act, float slope, maa_cuda_shape s,
                              cudaStream_t st);
/* The ConvLSTM step from a frozen state.  gates (s with c = 4*ch) holds
 * conv(z) for the z-half of the weights; hconv [4*ch, h, w] float is
 * conv(h0) + bias, c0 [ch, h, w] float; both are shared by every image.
 * Gate order i, f, o, g: h = sig(o) * tanh(sig(f)*c0 + sig(i)*tanh(g)),
 * written to out (s with c = ch). */
cudaError_t maa_cuda_lstm(const void *gates, const float *hconv,
                          const float *c0, void *out, maa_cuda_shape s,
                          cudaStream_t st);
/* contract §1 on the device, as maa_preprocess for 8-bit frames no smaller than
 * the model: u8 holds s.n frames of p->width x p->height pixels, pitch bytes
 * apart, p->channels interleaved samples each (a gray frame fills every
 * channel); each is area-shrunk to s.h x s.w (engine/pixel.h; at the model
 * size a bin is one pixel) and normalised into x as float NCHW, and into
 * images the same in the activation layout s. */
cudaError_t maa_cuda_import8(const uint8_t *u8, size_t pitch, const maa_cuda_params *p,
                             float *x, void *images, maa_cuda_shape s, cudaStream_t st);
/* contract §6, as maa_varmap and the threshold of maa_regions compute it, in
 * three passes over s.n images of s.h x s.w: e = mean over the s.c channels
 * of |x - r| (x float NCHW, r in layout s) and e*e; the window means along
 * rows; the means along columns, v, m = v*v, mask = m > t_pix (0 or 255) and
 * peak[i] = max of m over image i (peak zeroed beforehand).  e, e2, he, he2:
 * n*h*w floats of scratch. */
cudaError_t maa_cuda_residual(const float *x, const void *r, maa_cuda_shape s, float *e,
                              float *e2, cudaStream_t st);
cudaError_t maa_cuda_box_rows(const float *e, const float *e2, const maa_cuda_params *p,
                              int n, int h, int w, float *he, float *he2, cudaStream_t st);
cudaError_t maa_cuda_box_cols_mask(const float *he, const float *he2,
                                   const maa_cuda_params *p, int n, int h, int w,
                                   uint8_t *mask, float *peak, cudaStream_t st);
/* dst[i] = (half)src[i], i < count. */
cudaError_t maa_cuda_to_half(const float *src, void *dst, size_t count,
                             cudaStream_t st);

#ifdef __cplusplus
}
#endif

#endif
