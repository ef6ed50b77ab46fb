/* image.c — image files in and out, and the input transform (contract §1).
 *
 * Formats are recognised by their first bytes, never by the file name: a
 * line's image archive is full of files whose extension lies. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <spng.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/backend.h"
#include "engine/pixel.h"

#define MAX_SIDE 32768
/* 2^27 pixels (e.g. 16384 x 8192): a header can claim 32768 x 32768 in a few
 * bytes, which would ask for gigabytes before the data turns out missing. */
#define MAX_PIXELS (1ll << 27)
/* 512 MiB of samples: the pixel limit alone let a 16-bit RGBA header ask
 * for 1 GiB. */
#define MAX_BYTES (1ull << 29)
/* Deflate shrinks at most 1032 to 1 (a 258-byte match in 2 bits), so a
 * PNG's rows need at least this share of the file. */
#define DEFLATE_MAX_RATIO 1032

static int area_ok(const char *path, long long w, long long h, char *err, size_t errlen);

/* Whether an image of w x h taking bytes is within MAX_BYTES; else why. */
static int bytes_ok(const char *path, int w, int h, uint64_t bytes, char *err, size_t errlen)
{
    if (bytes <= MAX_BYTES)
        return 1;
    maa_seterr(err, errlen, "%s: a %dx%d image of %" PRIu64 " bytes is larger than the "
               "%llu MiB maa reads", path, w, h, bytes, MAX_BYTES >> 20);
    return 0;
}

static int alloc_image(maa_image *img, int w, int h, int ch, int depth,
                       const char *path, char *err, size_t errlen)
{
    if (!bytes_ok(path, w, h, (uint64_t)w * h * ch * (depth / 8), err, errlen))
        return MAA_ERR;
    img->width = w;
    img->height = h;
    img->channels = ch;
    img->depth = depth;
    img->data = malloc((size_t)w * h * ch * (depth / 8));
    if (!img->data) {
        maa_seterr(err, errlen, "%s: out of memory for a %dx%d image", path,
                   w, h);
        return MAA_ERR;
    }
    return MAA_OK;
}

/* ---- PNG ----------------------------------------------------------------- */

/* Bytes of one row as a PNG stores it, before compression: a filter byte
 * and the samples, packed (an interlaced image stores a little more). */
static uint64_t png_row_bytes(const struct spng_ihdr *ih)
{
    int samples = ih->color_type == SPNG_COLOR_TYPE_TRUECOLOR         ? 3
                  : ih->color_type == SPNG_COLOR_TYPE_GRAYSCALE_ALPHA ? 2
                  : ih->color_type == SPNG_COLOR_TYPE_TRUECOLOR_ALPHA ? 4
                                                                      : 1;
    return 1 + ((uint64_t)ih->width * (unsigned)samples * ih->bit_depth + 7) / 8;
}

static int load_png(const char *path, const uint8_t *buf, size_t len,
                    maa_image *img, char *err, size_t errlen)
{
    spng_ctx *ctx = spng_ctx_new(0);
    if (!ctx) {
        maa_seterr(err, errlen, "%s: out of memory", path);
        return MAA_ERR;
    }
    int rv = MAA_ERR;
    uint8_t *tmp = NULL;
    struct spng_ihdr ih;
    int r = spng_set_png_buffer(ctx, buf, len);
    if (!r)
        r = spng_set_image_limits(ctx, MAX_SIDE, MAX_SIDE);
    if (!r)
        r = spng_get_ihdr(ctx, &ih);
    if (r)
        goto spng_fail;
    if (!area_ok(path, ih.width, ih.height, err, errlen)) {
        spng_ctx_free(ctx);
        return MAA_ERR;
    }
    /* The header is checked against the file before anything is allocated
     * for it: 69 bytes claiming 16384 x 8192 RGB had 384 MiB allocated
     * before libspng found the data missing. */
    uint64_t rows = png_row_bytes(&ih) * ih.height;
    if (rows / DEFLATE_MAX_RATIO > len) {
        maa_seterr(err, errlen, "%s: truncated PNG: its header claims %ux%u pixels, %" PRIu64
                   " bytes of rows, which %zu bytes of file cannot hold", path, ih.width,
                   ih.height, rows, len);
        spng_ctx_free(ctx);
        return MAA_ERR;
    }

    /* Decoded format, channels kept, and whether an alpha channel is to be
     * dropped after decoding: gray+alpha has no gray-only output format (and
     * spng 0.7 does not convert it to GA8/GA16), so it is decoded as stored
     * (SPNG_FMT_PNG: interleaved, 16-bit samples in host order). */
    int fmt, ch, depth = ih.bit_depth == 16 ? 16 : 8, drop_alpha = 0;
    switch (ih.color_type) {
    case SPNG_COLOR_TYPE_GRAYSCALE:
        fmt = depth == 16 ? SPNG_FMT_PNG : SPNG_FMT_G8;
        ch = 1;
        break;
    case SPNG_COLOR_TYPE_GRAYSCALE_ALPHA:
        fmt = SPNG_FMT_PNG;
        ch = 1;
        drop_alpha = 1;
        break;
    case SPNG_COLOR_TYPE_TRUECOLOR:
        fmt = depth == 16 ? SPNG_FMT_PNG : SPNG_FMT_RGB8;
        ch = 3;
        break;
    case SPNG_COLOR_TYPE_TRUECOLOR_ALPHA:
        fmt = depth == 16 ? SPNG_FMT_RGBA16 : SPNG_FMT_RGBA8;
        ch = 4;
        break;
    case SPNG_COLOR_TYPE_INDEXED:
        fmt = SPNG_FMT_RGB8;
        ch = 3;
        depth = 8;
        break;
    default:
        maa_seterr(err, errlen, "%s: unsupported PNG colour type %d", path,
                   ih.color_type);
        goto out;
    }
    size_t size;
    if ((r = spng_decoded_image_size(ctx, fmt, &size)))
        goto spng_fail;
    /* The decoded buffer too, which keeps an alpha channel to drop. */
    if (!bytes_ok(path, (int)ih.width, (int)ih.height, size, err, errlen) ||
        alloc_image(img, (int)ih.width, (int)ih.height, ch, depth, path, err, errlen))
        goto out;
    void *dst = img->data;
    if (drop_alpha) {
        if (!(tmp = malloc(size))) {
            maa_seterr(err, errlen, "%s: out of memory", path);
            goto out;
        }
        dst = tmp;
    }
    if ((r = spng_decode_image(ctx, dst, size, fmt, 0)))
        goto spng_fail;
    if (drop_alpha) {
        size_t n = (size_t)ih.width * ih.height;
        if (depth == 16)
            for (size_t i = 0; i < n; i++)
                ((uint16_t *)img->data)[i] = ((uint16_t *)tmp)[2 * i];
        else
            for (size_t i = 0; i < n; i++)
                ((uint8_t *)img->data)[i] = tmp[2 * i];
    }
    rv = MAA_OK;
    goto out;
spng_fail:
    if (r == SPNG_IO_EOF)
        maa_seterr(err, errlen, "%s: truncated PNG (spng: %s)", path,
                   spng_strerror(r));
    else
        maa_seterr(err, errlen, "%s: bad PNG (spng: %s)", path,
                   spng_strerror(r));
out:
    if (rv != MAA_OK) {
        free(img->data);
        img->data = NULL;
    }
    free(tmp);
    spng_ctx_free(ctx);
    return rv;
}

/* ---- PGM / PPM ----------------------------------------------------------- */

typedef struct {
    const uint8_t *p, *end;
} cursor;

/* Next decimal token, skipping whitespace and # comments; -1 at the end or
 * on anything else. */
static long pnm_number(cursor *c)
{
    for (;;) {
        while (c->p < c->end && isspace(*c->p))
            c->p++;
        if (c->p < c->end && *c->p == '#') {
            while (c->p < c->end && *c->p != '\n' && *c->p != '\r')
                c->p++;
            continue;
        }
        break;
    }
    if (c->p >= c->end || !isdigit(*c->p))
        return -1;
    long v = 0;
    while (c->p < c->end && isdigit(*c->p)) {
        v = v * 10 + (*c->p++ - '0');
        if (v > 100000000)
            return -1;
    }
    return v;
}

static int load_pnm(const char *path, const uint8_t *buf, size_t len,
                    maa_image *img, char *err, size_t errlen)
{
    char kind = (char)buf[1];
    int ch = kind == '3' || kind == '6' ? 3 : 1;
    int binary = kind == '5' || kind == '6';
    cursor c = {buf + 2, buf + len};
    long w = pnm_number(&c), h = pnm_number(&c), maxval = pnm_number(&c);
    if (w < 0 || h < 0 || maxval < 0) {
        maa_seterr(err, errlen, "%s: truncated or malformed P%c header", path,
                   kind);
        return MAA_ERR;
    }
    if (w < 1 || h < 1 || w > MAX_SIDE || h > MAX_SIDE) {
        maa_seterr(err, errlen, "%s: image size %ldx%ld is outside 1..%d",
                   path, w, h, MAX_SIDE);
        return MAA_ERR;
    }
    if (!area_ok(path, w, h, err, errlen))
        return MAA_ERR;
    if (maxval < 1 || maxval > 65535) {
        maa_seterr(err, errlen, "%s: maxval %ld is outside 1..65535", path,
                   maxval);
        return MAA_ERR;
    }
    int depth = maxval > 255 ? 16 : 8;
    long full = depth == 16 ? 65535 : 255;
    size_t n = (size_t)w * h * ch;
    if (binary) {
        /* exactly one whitespace byte separates maxval from the samples */
        if (c.p >= c.end || !isspace(*c.p)) {
            maa_seterr(err, errlen, "%s: truncated or malformed P%c header",
                       path, kind);
            return MAA_ERR;
        }
        c.p++;
        size_t need = n * (depth / 8);
        if ((size_t)(c.end - c.p) < need) {
            maa_seterr(err, errlen, "%s: truncated P%c data: %zu of %zu bytes",
                       path, kind, (size_t)(c.end - c.p), need);
            return MAA_ERR;
        }
    } else if ((size_t)(c.end - c.p) < 2 * n - 1) {
        /* A text sample is a digit and a separator at least: 20 bytes of
         * header claiming 16384 x 8192 had 256 MiB allocated before the
         * samples turned out missing. */
        maa_seterr(err, errlen, "%s: truncated P%c data: %zu bytes cannot hold %zu samples",
                   path, kind, (size_t)(c.end - c.p), n);
        return MAA_ERR;
    }
    if (alloc_image(img, (int)w, (int)h, ch, depth, path, err, errlen))
        return MAA_ERR;
    for (size_t i = 0; i < n; i++) {
        long v;
        if (!binary) {
            v = pnm_number(&c);
            if (v < 0) {
                maa_seterr(err, errlen, "%s: truncated or malformed P%c data "
                           "at sample %zu of %zu", path, kind, i, n);
                goto fail;
            }
        } else if (depth == 16) {
            v = (long)c.p[0] << 8 | c.p[1];  /* big-endian */
            c.p += 2;
        } else {
            v = *c.p++;
        }
        if (v > maxval) {
            maa_seterr(err, errlen, "%s: sample %zu is %ld, above maxval %ld",
                       path, i, v, maxval);
            goto fail;
        }
        /* Samples are stretched to the full 8- or 16-bit range, so a 10-bit
         * camera frame (maxval 1023) spans [-1, 1] like any other. */
        if (maxval != full)
            v = (v * full + maxval / 2) / maxval;
        if (depth == 16)
            ((uint16_t *)img->data)[i] = (uint16_t)v;
        else
            ((uint8_t *)img->data)[i] = (uint8_t)v;
    }
    return MAA_OK;
fail:
    free(img->data);
    img->data = NULL;
    return MAA_ERR;
}

/* ---- BMP ----------------------------------------------------------------- */

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

static int load_bmp(const char *path, const uint8_t *buf, size_t len,
                    maa_image *img, char *err, size_t errlen)
{
    if (len < 14 + 4) {
        maa_seterr(err, errlen, "%s: truncated BMP header", path);
        return MAA_ERR;
    }
    uint32_t off = le32(buf + 10), hsize = le32(buf + 14);
    if (hsize != 40 && hsize != 52 && hsize != 56 && hsize != 108 &&
        hsize != 124) {
        maa_seterr(err, errlen, "%s: unsupported BMP header size %u", path,
                   hsize);
        return MAA_ERR;
    }
    if (len < 14 + (size_t)hsize) {
        maa_seterr(err, errlen, "%s: truncated BMP header", path);
        return MAA_ERR;
    }
    const uint8_t *ih = buf + 14;
    int32_t w = (int32_t)le32(ih + 4), hh = (int32_t)le32(ih + 8);
    unsigned bpp = le16(ih + 14), comp = le32(ih + 16), ncol = le32(ih + 32);
    int top_down = hh < 0;
    int64_t h = top_down ? -(int64_t)hh : hh;
    if (w < 1 || h < 1 || w > MAX_SIDE || h > MAX_SIDE) {
        maa_seterr(err, errlen, "%s: image size %dx%lld is outside 1..%d",
                   path, w, (long long)h, MAX_SIDE);
        return MAA_ERR;
    }
    if (!area_ok(path, w, h, err, errlen))
        return MAA_ERR;
    if (bpp != 8 && bpp != 24 && bpp != 32) {
        maa_seterr(err, errlen, "%s: unsupported BMP bit depth %u (only 8, "
                   "24 and 32)", path, bpp);
        return MAA_ERR;
    }
    /* BI_BITFIELDS is accepted only with the masks that mean plain BGRX,
     * which is what most writers put in a 32-bit file. */
    if (comp == 3 && bpp == 32) {
        const uint8_t *m = hsize >= 52 ? ih + 40 : buf + 14 + hsize;
        if ((size_t)(m + 12 - buf) > len || le32(m) != 0xff0000 ||
            le32(m + 4) != 0xff00 || le32(m + 8) != 0xff) {
            maa_seterr(err, errlen, "%s: unsupported BMP bit-field masks",
                       path);
            return MAA_ERR;
        }
    } else if (comp != 0) {
        maa_seterr(err, errlen, "%s: unsupported BMP compression %u", path,
                   comp);
        return MAA_ERR;
    }
    const uint8_t *pal = buf + 14 + hsize;
    int ch = 3;
    if (bpp == 8) {
        if (ncol == 0)
            ncol = 256;
        if (ncol > 256 || (size_t)(pal - buf) + 4 * (size_t)ncol > len) {
            maa_seterr(err, errlen, "%s: bad or truncated BMP palette (%u "
                       "colours)", path, ncol);
            return MAA_ERR;
        }
        /* A palette of grays is a mono image: keep it one channel. */
        ch = 1;
        for (unsigned i = 0; i < ncol; i++)
            if (pal[4 * i] != pal[4 * i + 1] || pal[4 * i] != pal[4 * i + 2])
                ch = 3;
    }
    size_t stride = ((size_t)w * bpp + 31) / 32 * 4;
    if (off > len || (len - off) / stride < (size_t)h) {
        maa_seterr(err, errlen, "%s: truncated BMP pixel data", path);
        return MAA_ERR;
    }
    if (alloc_image(img, w, (int)h, ch, 8, path, err, errlen))
        return MAA_ERR;
    uint8_t *out = img->data;
    for (int64_t y = 0; y < h; y++) {
        const uint8_t *row = buf + off + stride * (top_down ? y : h - 1 - y);
        uint8_t *o = out + (size_t)y * w * ch;
        for (int32_t x = 0; x < w; x++) {
            const uint8_t *bgr;
            if (bpp == 8) {
                if (row[x] >= ncol) {
                    maa_seterr(err, errlen, "%s: palette index %u out of "
                               "range at %d,%lld", path, row[x], x,
                               (long long)y);
                    free(img->data);
                    img->data = NULL;
                    return MAA_ERR;
                }
                bgr = pal + 4 * row[x];
            } else {
                bgr = row + (size_t)x * (bpp / 8);
            }
            if (ch == 1) {
                o[x] = bgr[0];
            } else {
                o[3 * x] = bgr[2];
                o[3 * x + 1] = bgr[1];
                o[3 * x + 2] = bgr[0];
            }
        }
    }
    return MAA_OK;
}

int maa_image_load(const char *path, maa_image *img, char *err, size_t errlen)
{
    uint8_t *buf;
    size_t len;
    memset(img, 0, sizeof *img);
    if (maa_read_file(path, SIZE_MAX, "an image", &buf, &len, err, errlen))
        return MAA_ERR;
    static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    int rv;
    if (len >= 8 && memcmp(buf, png_magic, 8) == 0) {
        rv = load_png(path, buf, len, img, err, errlen);
    } else if (len >= 2 && buf[0] == 'P' && buf[1] && strchr("2356", buf[1])) {
        rv = load_pnm(path, buf, len, img, err, errlen);
    } else if (len >= 2 && buf[0] == 'P' && buf[1] && strchr("147", buf[1])) {
        maa_seterr(err, errlen, "%s: unsupported netpbm format P%c (only P2, "
                   "P3, P5 and P6)", path, buf[1]);
        rv = MAA_ERR;
    } else if (len >= 2 && buf[0] == 'B' && buf[1] == 'M') {
        rv = load_bmp(path, buf, len, img, err, errlen);
    } else {
        maa_seterr(err, errlen, "%s: not a PNG, PGM/PPM or BMP file", path);
        rv = MAA_ERR;
    }
    free(buf);
    return rv;
}

void maa_image_free(maa_image *img)
{
    if (!img)
        return;
    free(img->data);
    img->data = NULL;
}

/* ---- PNG output ---------------------------------------------------------- */

int maa_png_encode(const uint8_t *px, int w, int h, int ch, void **buf,
                   size_t *len, char *err, size_t errlen)
{
    if ((ch != 1 && ch != 3) || w < 1 || h < 1 || w > MAX_SIDE || h > MAX_SIDE) {
        maa_seterr(err, errlen, "png: cannot encode a %dx%d image with %d "
                   "channels (1 or 3)", w, h, ch);
        return MAA_ERR;
    }
    spng_ctx *ctx = spng_ctx_new(SPNG_CTX_ENCODER);
    if (!ctx) {
        maa_seterr(err, errlen, "png: out of memory");
        return MAA_ERR;
    }
    struct spng_ihdr ih = {
        .width = (uint32_t)w, .height = (uint32_t)h, .bit_depth = 8,
        .color_type = ch == 1 ? SPNG_COLOR_TYPE_GRAYSCALE : SPNG_COLOR_TYPE_TRUECOLOR,
    };
    int r = spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1);
    /* Masks are mostly zeros: the fastest deflate level without row filters
     * compresses them almost as well in a fifth of the time, which matters
     * since the daemon encodes one per frame. */
    if (!r)
        r = spng_set_option(ctx, SPNG_FILTER_CHOICE, SPNG_DISABLE_FILTERING);
    if (!r)
        r = spng_set_option(ctx, SPNG_IMG_COMPRESSION_LEVEL, 1);
    if (!r)
        r = spng_set_ihdr(ctx, &ih);
    if (!r)
        r = spng_encode_image(ctx, px, (size_t)w * h * ch, SPNG_FMT_PNG,
                              SPNG_ENCODE_FINALIZE);
    if (!r) {
        *buf = spng_get_png_buffer(ctx, len, &r);
        if (!*buf && !r)
            r = SPNG_EMEM;
    }
    spng_ctx_free(ctx);
    if (r) {
        maa_seterr(err, errlen, "png: encoding failed (spng: %s)",
                   spng_strerror(r));
        return MAA_ERR;
    }
    return MAA_OK;
}

int maa_png_write(const char *path, const uint8_t *px, int w, int h, int ch,
                  char *err, size_t errlen)
{
    void *buf;
    size_t len;
    if (maa_png_encode(px, w, h, ch, &buf, &len, err, errlen))
        return MAA_ERR;
    int rc = maa_write_file(path, buf, len, err, errlen);
    free(buf);
    return rc;
}

/* ---- preprocessing (contract §1) ----------------------------------------- */

/* One axis of the resize as taps: output i is sum_t w[i*taps + t] *
 * in[first[i] + t].  Shrinking averages the bins [floor(i*in/out),
 * ceil((i+1)*in/out)) as torch's adaptive_avg_pool2d (F.interpolate
 * mode='area') does; enlarging is bilinear with half-pixel centres as
 * F.interpolate(mode='bilinear', align_corners=False). */
typedef struct {
    int taps;
    int *first;
    double *w;
} axis_map;

static int axis_build(axis_map *a, int in, int out)
{
    a->taps = out <= in ? (in + out - 1) / out + 1 : 2;
    a->first = malloc(sizeof(int) * (size_t)out);
    a->w = calloc((size_t)out * a->taps, sizeof(double));
    if (!a->first || !a->w)
        return MAA_ERR;
    for (int i = 0; i < out; i++) {
        double *w = a->w + (size_t)i * a->taps;
        if (out <= in) {
            int lo, hi;
            maa_area_bin(i, in, out, &lo, &hi);
            a->first[i] = lo;
            for (int t = 0; t < hi - lo; t++)
                w[t] = 1.0 / (hi - lo);
        } else {
            double src = ((double)i + 0.5) * in / out - 0.5;
            if (src < 0)
                src = 0;
            int i0 = (int)src;
            double l1 = src - i0;
            a->first[i] = i0;
            w[0] = 1 - l1;
            /* at the last input pixel the second tap would fall outside */
            if (i0 < in - 1)
                w[1] = l1;
            else
                w[0] = 1;
        }
    }
    return MAA_OK;
}

static void axis_free(axis_map *a)
{
    free(a->first);
    free(a->w);
}

/* Both axes shrinking (the usual case: camera frames larger than S): each
 * output pixel is the mean of its maa_area_bin on both axes, summed exactly in
 * integers with one division at the end instead of weighted in double, the
 * output rows on parallel threads.  Bit for bit the literal bin means
 * (test_image), in a fraction of the time (build/bench_preprocess). */
static int area_shrink(const maa_image *img, int s, int planes, float *out)
{
    const int iw = img->width, ih = img->height, ic = img->channels;
    const double scale = img->depth == 16 ? 32767.5 : 127.5;
    const size_t ss = (size_t)s * s;
    int *xb = malloc(sizeof(int) * ((size_t)s + 1) * 2), failed = !xb;
    if (failed)
        return MAA_ERR;
    int *xlo = xb, *xhi = xb + s + 1;
    for (int i = 0; i < s; i++)
        maa_area_bin(i, iw, s, &xlo[i], &xhi[i]);
#pragma omp parallel
    {
        double *acc = malloc(sizeof(double) * (size_t)planes * s);
        if (!acc) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int oy = 0; oy < s; oy++) {
            if (!acc)
                continue;
            int y0, y1;
            maa_area_bin(oy, ih, s, &y0, &y1);
            memset(acc, 0, sizeof(double) * (size_t)planes * s);
            for (int y = y0; y < y1; y++) {
                const size_t base = (size_t)y * iw * ic;
                for (int ox = 0; ox < s; ox++) {
                    /* A pixel's samples are adjacent: all planes (1 or 3)
                     * in one pass. */
                    uint64_t sum[3] = {0, 0, 0};
                    const size_t from = base + (size_t)xlo[ox] * ic,
                                 to = base + (size_t)xhi[ox] * ic;
#define SUM_BIN(T)                                                          \
    do {                                                                    \
        const T *r = img->data;                                             \
        if (planes == 1)                                                    \
            for (size_t i = from; i < to; i += ic)                          \
                sum[0] += r[i];                                             \
        else                                                                \
            for (size_t i = from; i < to; i += ic) {                        \
                sum[0] += r[i];                                             \
                sum[1] += r[i + 1];                                         \
                sum[2] += r[i + 2];                                         \
            }                                                               \
    } while (0)
                    if (img->depth == 16)
                        SUM_BIN(uint16_t);
                    else
                        SUM_BIN(uint8_t);
#undef SUM_BIN
                    for (int ch = 0; ch < planes; ch++)
                        acc[(size_t)ch * s + ox] += (double)sum[ch];
                }
            }
            for (int ch = 0; ch < planes; ch++)
                for (int ox = 0; ox < s; ox++) {
                    const double n = (double)(xhi[ox] - xlo[ox]) * (y1 - y0);
                    out[ch * ss + (size_t)oy * s + ox] =
                        maa_area_value(acc[(size_t)ch * s + ox], n, scale);
                }
        }
        free(acc);
    }
    free(xb);
    return failed ? MAA_ERR : MAA_OK;
}

int maa_preprocess(const maa_image *img, int s, int c, float *out,
                   char *err, size_t errlen)
{
    if (c != 1 && c != 3) {
        maa_seterr(err, errlen, "preprocess: a model has 1 or 3 channels, "
                   "not %d", c);
        return MAA_ERR;
    }
    if (s < 1 || s > MAX_SIDE) {
        maa_seterr(err, errlen, "preprocess: bad model image size %d", s);
        return MAA_ERR;
    }
    int ic = img->channels;
    if (ic != 1 && ic != 3 && ic != 4) {
        maa_seterr(err, errlen, "preprocess: images with %d channels are not "
                   "supported", ic);
        return MAA_ERR;
    }
    if (img->depth != 8 && img->depth != 16) {
        maa_seterr(err, errlen, "preprocess: %d-bit samples are not supported",
                   img->depth);
        return MAA_ERR;
    }
    if (c == 1 && ic != 1) {
        maa_seterr(err, errlen, "preprocess: a colour image cannot feed a "
                   "1-channel (mono) model; convert it to gray first");
        return MAA_ERR;
    }
    /* The sides may come from a camera's stream: a negative one made the
     * buffers below 2^64 bytes. */
    if (img->width < 1 || img->height < 1 || img->width > MAA_IMAGE_MAX_SIDE ||
        img->height > MAA_IMAGE_MAX_SIDE) {
        maa_seterr(err, errlen, "preprocess: a %dx%d image: each side must be 1..%d",
                   img->width, img->height, MAA_IMAGE_MAX_SIDE);
        return MAA_ERR;
    }
    if (!img->data) {
        maa_seterr(err, errlen, "preprocess: an image without data");
        return MAA_ERR;
    }
    int iw = img->width, ih = img->height;
    /* A gray image is resized once and the plane copied into every
     * channel. */
    int planes = ic == 1 ? 1 : c;
    axis_map ax = {0}, ay = {0};
    double *tmp = NULL, *row = NULL;
    int rv = MAA_ERR;
    if (s <= iw && s <= ih) {
        if (area_shrink(img, s, planes, out)) {
            maa_seterr(err, errlen, "preprocess: out of memory");
            goto out;
        }
        goto copy;
    }
    tmp = malloc(sizeof(double) * (size_t)planes * ih * s);
    row = malloc(sizeof(double) * (size_t)iw * ic);
    if (!tmp || !row || axis_build(&ax, iw, s) || axis_build(&ay, ih, s)) {
        maa_seterr(err, errlen, "preprocess: out of memory");
        goto out;
    }
    /* Across first, one input row at a time, so the image is read once. */
    for (int y = 0; y < ih; y++) {
        size_t n = (size_t)iw * ic, base = (size_t)y * n;
        if (img->depth == 16)
            for (size_t i = 0; i < n; i++)
                row[i] = ((const uint16_t *)img->data)[base + i];
        else
            for (size_t i = 0; i < n; i++)
                row[i] = ((const uint8_t *)img->data)[base + i];
        for (int ch = 0; ch < planes; ch++) {
            double *t = tmp + ((size_t)ch * ih + y) * s;
            for (int x = 0; x < s; x++) {
                const double *w = ax.w + (size_t)x * ax.taps;
                const double *px = row + (size_t)ax.first[x] * ic + ch;
                double acc = 0;
                for (int k = 0; k < ax.taps && w[k] != 0; k++)
                    acc += w[k] * px[(size_t)k * ic];
                t[x] = acc;
            }
        }
    }
    double scale = img->depth == 16 ? 32767.5 : 127.5;
    size_t ss = (size_t)s * s;
    for (int ch = 0; ch < planes; ch++) {
        const double *t = tmp + (size_t)ch * ih * s;
        float *o = out + ch * ss;
        for (int y = 0; y < s; y++) {
            const double *w = ay.w + (size_t)y * ay.taps;
            const double *src = t + (size_t)ay.first[y] * s;
            for (int x = 0; x < s; x++) {
                double acc = 0;
                for (int k = 0; k < ay.taps && w[k] != 0; k++)
                    acc += w[k] * src[(size_t)k * s + x];
                o[(size_t)y * s + x] = (float)(acc / scale - 1);
            }
        }
    }
copy:
    for (int ch = planes; ch < c; ch++)
        memcpy(out + ch * (size_t)s * s, out, sizeof(float) * (size_t)s * s);
    rv = MAA_OK;
out:
    free(tmp);
    free(row);
    axis_free(&ax);
    axis_free(&ay);
    return rv;
}

static int area_ok(const char *path, long long w, long long h, char *err, size_t errlen)
{
    if (w * h <= MAX_PIXELS)
        return 1;
    maa_seterr(err, errlen, "%s: image of %lldx%lld pixels is larger than the %lld pixels maa reads",
               path, w, h, MAX_PIXELS);
    return 0;
}
