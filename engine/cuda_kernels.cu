/* cuda_kernels.cu — the elementwise kernels of the cuda backend (see
 * cuda_kernels.h).  Each is a grid-stride loop over elements, templated on
 * the storage type; the arithmetic is float.  The frame path's resize,
 * window means and variance are engine/pixel.h's, the functions the host's
 * engine/image.c and engine/mask.c use, so that it gives the host path's
 * numbers.  They are memory-bound and run once per layer at most, so
 * clarity wins over vector loads. */
#include <cuda_fp16.h>

#include "engine/cuda_kernels.h"
#include "engine/pixel.h"

namespace {

__device__ inline float load(const float *p, size_t i) { return p[i]; }
__device__ inline float load(const __half *p, size_t i) { return __half2float(p[i]); }
__device__ inline void store(float *p, size_t i, float v) { p[i] = v; }
__device__ inline void store(__half *p, size_t i, float v) { p[i] = __float2half_rn(v); }

__device__ inline float sigmoid(float v) { return 1.0f / (1.0f + expf(-v)); }

/* Storage offset of element (n, c, y, x) given as its NCHW linear index. */
__device__ inline size_t offset(size_t i, const maa_cuda_shape &s)
{
    if (!s.nhwc)
        return i;
    size_t x = i % s.w, y = (i / s.w) % s.h, c = (i / ((size_t)s.w * s.h)) % s.c,
           n = i / ((size_t)s.w * s.h * s.c);
    return ((n * s.h + y) * s.w + x) * s.c + c;
}

/* Channel of the element at storage offset j. */
__device__ inline int channel(size_t j, const maa_cuda_shape &s)
{
    return (int)(s.nhwc ? j % s.c : (j / ((size_t)s.w * s.h)) % s.c);
}

__host__ __device__ inline size_t count(const maa_cuda_shape &s)
{
    return (size_t)s.n * s.c * s.h * s.w;
}

#define GRID_STRIDE(i, total)                                                \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (total); \
         i += (size_t)gridDim.x * blockDim.x)

template <typename T>
__global__ void import_k(const float *src, T *dst, maa_cuda_shape s)
{
    GRID_STRIDE(i, count(s))
        store(dst, offset(i, s), src[i]);
}

template <typename T>
__global__ void export_k(const T *src, maa_cuda_shape s, float *dst)
{
    GRID_STRIDE(i, count(s))
        dst[i] = load(src, offset(i, s));
}

template <typename T>
__global__ void epilogue_k(T *y, const float *bias, const T *res, int act, float slope,
                           maa_cuda_shape s)
{
    GRID_STRIDE(j, count(s)) {
        float v = load(y, j);
        if (bias)
            v += bias[channel(j, s)];
        if (res)
            v += load(res, j);
        switch (act) {
        case MAA_CUDA_RELU: v = v > 0.0f ? v : 0.0f; break;
        case MAA_CUDA_LRELU: v = v > 0.0f ? v : slope * v; break;
        case MAA_CUDA_TANH: v = tanhf(v); break;
        default: break;
        }
        store(y, j, v);
    }
}

/* i runs over the output in NCHW order; gate k of channel c is gate channel
 * k*ch + c of the same image and pixel. */
template <typename T>
__global__ void lstm_k(const T *gates, const float *hconv, const float *c0, T *out,
                       maa_cuda_shape s)
{
    maa_cuda_shape g = s;
    g.c = 4 * s.c;
    const size_t hw = (size_t)s.h * s.w, plane = (size_t)s.c * hw;
    GRID_STRIDE(i, count(s)) {
        size_t n = i / plane, k0 = i % plane;  /* k0 = c*hw + pixel */
        size_t gi = n * 4 * plane + k0;        /* NCHW index of gate i */
        float pre[4];
        for (int k = 0; k < 4; k++)
            pre[k] = load(gates, offset(gi + k * plane, g)) + hconv[k * plane + k0];
        float cn = sigmoid(pre[1]) * c0[k0] + sigmoid(pre[0]) * tanhf(pre[3]);
        store(out, offset(i, s), sigmoid(pre[2]) * tanhf(cn));
    }
}

/* i runs over x in NCHW order. */
template <typename T>
__global__ void import8_k(const uint8_t *u8, size_t pitch, const maa_cuda_params *p, float *x,
                          T *images, maa_cuda_shape s)
{
    const int fw = p->width, fh = p->height, fc = p->channels;
    GRID_STRIDE(i, count(s)) {
        int ox = (int)(i % s.w), oy = (int)((i / s.w) % s.h),
            c = (int)((i / ((size_t)s.w * s.h)) % s.c);
        size_t n = i / ((size_t)s.w * s.h * s.c);
        float f = maa_area_pixel8(u8 + n * pitch, fw, fh, fc, fc == 1 ? 0 : c, s.w, ox, oy);
        x[i] = f;
        store(images, offset(i, s), f);
    }
}

/* i runs over the n*h*w pixels. */
template <typename T>
__global__ void residual_k(const float *x, const T *r, maa_cuda_shape s, float *e, float *e2)
{
    const size_t hw = (size_t)s.h * s.w;
    GRID_STRIDE(i, (size_t)s.n * hw) {
        size_t n = i / hw, px = i % hw;
        float acc = 0.0f;
        for (int c = 0; c < s.c; c++) {
            size_t j = (n * s.c + c) * hw + px;
            acc += fabsf(x[j] - load(r, offset(j, s)));
        }
        float v = acc / s.c;
        e[i] = v;
        e2[i] = maa_fmul(v, v);
    }
}

__global__ void box_rows_k(const float *e, const float *e2, const maa_cuda_params *p, int n,
                           int h, int w, float *he, float *he2)
{
    const int half = p->window / 2;
    GRID_STRIDE(i, (size_t)n * h * w) {
        size_t row = i - i % w;
        int x = (int)(i % w);
        he[i] = maa_box_mean(e + row, x, w, 1, half);
        he2[i] = maa_box_mean(e2 + row, x, w, 1, half);
    }
}

__global__ void box_cols_mask_k(const float *he, const float *he2, const maa_cuda_params *p,
                                int n, int h, int w, uint8_t *mask, float *peak)
{
    const int half = p->window / 2;
    const double t = p->t_pix;
    const size_t hw = (size_t)h * w;
    GRID_STRIDE(i, (size_t)n * hw) {
        size_t img = i / hw, x = i % w;
        int y = (int)((i % hw) / w);
        const size_t col = img * hw + x;
        const float m = maa_var_square(maa_box_mean(he2 + col, y, h, w, half),
                                       maa_box_mean(he + col, y, h, w, half));
        mask[i] = (double)m > t ? 255 : 0;
        /* m >= 0: its bits order as the values do. */
        atomicMax((int *)&peak[img], __float_as_int(m));
    }
}

__global__ void to_half_k(const float *src, __half *dst, size_t total)
{
    GRID_STRIDE(i, total)
        dst[i] = __float2half_rn(src[i]);
}

/* Enough blocks to fill an H200 several times over; the loops stride. */
inline unsigned blocks(size_t total)
{
    size_t b = (total + 255) / 256;
    return (unsigned)(b < 4096 ? (b ? b : 1) : 4096);
}

} // namespace

extern "C" cudaError_t maa_cuda_import(const float *src, void *dst, maa_cuda_shape s,
                                       cudaStream_t st)
{
    if (s.half)
        import_k<<<blocks(count(s)), 256, 0, st>>>(src, (__half *)dst, s);
    else
        import_k<<<blocks(count(s)), 256, 0, st>>>(src, (float *)dst, s);
    return cudaGetLastError();
}

extern "C" cudaError_t maa_cuda_export(const void *src, maa_cuda_shape s, float *dst,
                                       cudaStream_t st)
{
    if (s.half)
        export_k<<<blocks(count(s)), 256, 0, st>>>((const __half *)src, s, dst);
    else
        export_k<<<blocks(count(s)), 256, 0, st>>>((const float *)src, s, dst);
    return cudaGetLastError();
}

extern "C" cudaError_t maa_cuda_epilogue(void *y, const float *bias, const void *res, int act,
                                         float slope, maa_cuda_shape s, cudaStream_t st)
{
    if (s.half)
        epilogue_k<<<blocks(count(s)), 256, 0, st>>>((__half *)y, bias, (const __half *)res,
                                                     act, slope, s);
    else
        epilogue_k<<<blocks(count(s)), 256, 0, st>>>((float *)y, bias, (const float *)res,
                                                     act, slope, s);
    return cudaGetLastError();
}

extern "C" cudaError_t maa_cuda_lstm(const void *gates, const float *hconv, const float *c0,
                                     void *out, maa_cuda_shape s, cudaStream_t st)
{
    if (s.half)
        lstm_k<<<blocks(count(s)), 256, 0, st>>>((const __half *)gates, hconv, c0,
                                                 (__half *)out, s);
    else
        lstm_k<<<blocks(count(s)), 256, 0, st>>>((const float *)gates, hconv, c0,
                                                 (float *)out, s);
    return cudaGetLastError();
}

extern "C" cudaError_t maa_cuda_import8(const uint8_t *u8, size_t pitch,
                                        const maa_cuda_params *p, float *x, void *images,
                                        maa_cuda_shape s, cudaStream_t st)
{
    if (s.half)
        import8_k<<<blocks(count(s)), 256, 0, st>>>(u8, pitch, p, x, (__half *)images, s);
    else
        import8_k<<<blocks(count(s)), 256, 0, st>>>(u8, pitch, p, x, (float *)images, s);
    return cudaGetLastError();
}

extern "C" cudaError_t maa_cuda_residual(const float *x, const void *r, maa_cuda_shape s,
                                         float *e, float *e2, cudaStream_t st)
{
    size_t total = (size_t)s.n * s.h * s.w;
    if (s.half)
        residual_k<<<blocks(total), 256, 0, st>>>(x, (const __half *)r, s, e, e2);
    else
        residual_k<<<blocks(total), 256, 0, st>>>(x, (const float *)r, s, e, e2);
    return cudaGetLastError();
}

extern "C" cudaError_t maa_cuda_box_rows(const float *e, const float *e2,
                                         const maa_cuda_params *p, int n, int h, int w,
                                         float *he, float *he2, cudaStream_t st)
{
    box_rows_k<<<blocks((size_t)n * h * w), 256, 0, st>>>(e, e2, p, n, h, w, he, he2);
    return cudaGetLastError();
}

extern "C" cudaError_t maa_cuda_box_cols_mask(const float *he, const float *he2,
                                              const maa_cuda_params *p, int n, int h, int w,
                                              uint8_t *mask, float *peak, cudaStream_t st)
{
    box_cols_mask_k<<<blocks((size_t)n * h * w), 256, 0, st>>>(he, he2, p, n, h, w, mask, peak);
    return cudaGetLastError();
}

extern "C" cudaError_t maa_cuda_to_half(const float *src, void *dst, size_t total,
                                        cudaStream_t st)
{
    to_half_k<<<blocks(total), 256, 0, st>>>(src, (__half *)dst, total);
    return cudaGetLastError();
}
