/* cuda_kernels.h — private to engine/backend_cuda.c: the few elementwise
 * kernels cuDNN does not provide, with C linkage so that the host code stays
 * plain C.  Activations are float or half (half: 16-bit storage, float
 * arithmetic) in NCHW or NHWC; a tensor is described by maa_cuda_shape.
 * Every function launches on the given stream and returns the launch status
 * (cudaGetLastError), so it may be called while the stream is captured. */
#ifndef MAA_CUDA_KERNELS_H
#define MAA_CUDA_KERNELS_H

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int n, c, h, w;
    int half;  /* elements are IEEE half, else float */
    int nhwc;  /* layout NHWC, else NCHW */
} maa_cuda_shape;

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
/* dst[i] = (half)src[i], i < count. */
cudaError_t maa_cuda_to_half(const float *src, void *dst, size_t count,
                             cudaStream_t st);

#ifdef __cplusplus
}
#endif

#endif
