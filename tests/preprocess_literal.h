/* preprocess_literal.h — contract §1's area shrink computed word for word, for
 * tests/test_image.c (the oracle for maa_preprocess's shrinking path) and
 * tests/bench_preprocess.c (the competitor).  Header-only, as
 * tests/fmd_literal.h. */
#ifndef MAA_PREPROCESS_LITERAL_H
#define MAA_PREPROCESS_LITERAL_H

#include <stdint.h>
#include <string.h>

#include "engine/engine.h"

/* An image no smaller than s on either axis to s x s x c: each output pixel
 * is the mean, in double, of the samples in its bins [floor(i*in/s),
 * ceil((i+1)*in/s)) on both axes (torch's adaptive_avg_pool2d, i.e.
 * F.interpolate(mode='area')), then p / 127.5 - 1 (32767.5 for 16-bit).  A
 * gray image fills every channel; a fourth (alpha) sample is ignored. */
static inline void preprocess_literal(const maa_image *img, int s, int c, float *out)
{
    const int iw = img->width, ih = img->height, ic = img->channels;
    const double scale = img->depth == 16 ? 32767.5 : 127.5;
    for (int ch = 0; ch < c; ch++)
        for (int oy = 0; oy < s; oy++)
            for (int ox = 0; ox < s; ox++) {
                const int y0 = (int)((int64_t)oy * ih / s);
                const int y1 = (int)(((int64_t)(oy + 1) * ih + s - 1) / s);
                const int x0 = (int)((int64_t)ox * iw / s);
                const int x1 = (int)(((int64_t)(ox + 1) * iw + s - 1) / s);
                const int src = ic == 1 ? 0 : ch;
                double sum = 0;
                for (int y = y0; y < y1; y++)
                    for (int x = x0; x < x1; x++) {
                        const size_t i = ((size_t)y * iw + x) * ic + src;
                        sum += img->depth == 16 ? ((const uint16_t *)img->data)[i]
                                                : ((const uint8_t *)img->data)[i];
                    }
                const double mean = sum / ((double)(y1 - y0) * (x1 - x0));
                out[((size_t)ch * s + oy) * s + ox] = (float)(mean / scale - 1);
            }
}

#endif
