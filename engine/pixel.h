/* pixel.h — private to engine/: the per-pixel arithmetic that the host
 * (engine/image.c, engine/mask.c) and the cuda backend's frame-path kernels
 * (engine/cuda_kernels.cu) share, so that both take the same bins and
 * windows and round the same way: contract §1's area shrink and contract §6's
 * window means and variance.  The device's tensors and masks then equal
 * maa_preprocess's and maa_varmap's bit for bit.  Plain C that nvcc also
 * compiles for the device. */
#ifndef MAA_PIXEL_H
#define MAA_PIXEL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __CUDACC__
#define MAA_HD __host__ __device__
#else
#define MAA_HD
#endif

/* Output i's bin of a shrinking axis (out <= in): [floor(i*in/out),
 * ceil((i+1)*in/out)), as torch's adaptive_avg_pool2d (F.interpolate
 * mode='area').  Bins of neighbours overlap by a pixel when in/out is not
 * whole. */
MAA_HD static inline void maa_area_bin(int i, int in, int out, int *lo, int *hi)
{
    *lo = (int)((int64_t)i * in / out);
    *hi = (int)(((int64_t)(i + 1) * in + out - 1) / out);
}

/* The normalised mean of a bin: sum holds its samples exactly (integers in
 * double), count is its pixels; scale is 127.5 (8-bit) or 32767.5 (16-bit). */
MAA_HD static inline float maa_area_value(double sum, double count, double scale)
{
    return (float)(sum / count / scale - 1);
}

/* Output pixel (ox, oy) of the s x s shrink of an 8-bit frame of w x h
 * pixels (w, h >= s) with fc interleaved samples per pixel: the mean of
 * sample k over the pixel's bins, normalised.  At w = h = s a bin is one
 * pixel and this is p / 127.5 - 1. */
MAA_HD static inline float maa_area_pixel8(const uint8_t *frame, int w, int h, int fc, int k,
                                           int s, int ox, int oy)
{
    int x0, x1, y0, y1;
    maa_area_bin(ox, w, s, &x0, &x1);
    maa_area_bin(oy, h, s, &y0, &y1);
    uint64_t sum = 0;
    for (int y = y0; y < y1; y++) {
        const uint8_t *row = frame + (size_t)y * w * fc + k;
        for (int x = x0; x < x1; x++)
            sum += row[(size_t)x * fc];
    }
    return maa_area_value((double)sum, (double)(x1 - x0) * (y1 - y0), 127.5);
}

/* a * b rounded to float: nvcc would otherwise fuse a product into a
 * following add (the host compiler, in ISO C mode, does not). */
MAA_HD static inline float maa_fmul(float a, float b)
{
#ifdef __CUDA_ARCH__
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}

/* The mean of line[k * stride] over the window of half-width half around
 * element i, cut to [0, n): contract §6's border rule along one axis, summed in
 * double.  The window inside the image is a rectangle, so the rule applied
 * per axis gives the 2-D mean. */
MAA_HD static inline float maa_box_mean(const float *line, int i, int n, size_t stride, int half)
{
    const int lo = i - half < 0 ? 0 : i - half, hi = i + half >= n ? n - 1 : i + half;
    double sum = 0;
    for (int k = lo; k <= hi; k++)
        sum += line[(size_t)k * stride];
    return (float)(sum / (hi - lo + 1));
}

/* m = v * v with v = E_w[e^2] - E_w[e]^2 (contract §6), negative rounding
 * clamped to 0.  E_w[e]^2 is rounded to float as the stored e^2 terms are,
 * so a flat residual gives exactly 0. */
MAA_HD static inline float maa_var_square(float mean_sq, float mean)
{
    double v = (double)mean_sq - (double)maa_fmul(mean, mean);
    if (v < 0)
        v = 0;
    return (float)(v * v);
}

#endif
