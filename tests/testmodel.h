/* testmodel.h — writes MAA model files (contract §3) with deterministic
 * pseudo-random weights from C, optionally spoiled in one chosen way, so that
 * the engine tests need neither PyTorch nor files in the repository.
 * Header-only and private to tests/. */
#ifndef MAA_TESTMODEL_H
#define MAA_TESTMODEL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/backend.h"

/* How the writer spoils the file it writes. */
typedef struct {
    int f16;
    const char *drop;      /* leave this tensor out */
    const char *reshape;   /* give this tensor shape [1] (and 1 element) */
    const char *as_i32;    /* store this tensor with dtype I32 */
    int overlap;           /* second tensor's data starts inside the first's */
    int out_of_range;      /* last tensor's end past the data section */
    long truncate;         /* cut this many bytes off the end */
    const char *meta_key, *meta_value;  /* override one metadata value */
    const char *header;    /* use this header text verbatim */
    int extra_i64;         /* add a num_batches_tracked-like I64 tensor */
} spoil;

typedef struct {
    char name[48];
    int ndim;
    int64_t shape[4];
    float scale;  /* range of the tensor's values, see value() */
    float offset;
} tdesc;

static inline int list_tensors(const maa_model_info *in, tdesc *t)
{
    maa_conv_desc l[MAA_NET_LAYERS];
    maa_net_describe(in, l);
    /* Weight variance gain/fan-in keeps the signal alive through the 29
     * layers without making the network chaotic (then a 1e-6 change of the
     * input would move the output by 1e-3 and no backend comparison would
     * mean anything); the deeper default size needs a little less. */
    const double gain = in->image_size >= 256 ? 0.2 : 0.3;
    int n = 0;
    memset(t, 0, 256 * sizeof *t);
    for (int i = 0; i < MAA_NET_LAYERS; i++) {
        double fan = (double)l[i].cin * l[i].kh * l[i].kw / (l[i].transposed ? l[i].stride * l[i].stride : 1);
        snprintf(t[n].name, sizeof t[n].name, "%s.weight", l[i].name);
        t[n].scale = (float)sqrt(12.0 * gain / fan); /* uniform: variance scale^2/12 */
        t[n].ndim = 4;
        int64_t a = l[i].transposed ? l[i].cin : l[i].cout, b = l[i].transposed ? l[i].cout : l[i].cin;
        t[n].shape[0] = a, t[n].shape[1] = b, t[n].shape[2] = l[i].kh, t[n].shape[3] = l[i].kw;
        n++;
        if (l[i].has_bias) {
            snprintf(t[n].name, sizeof t[n].name, "%s.bias", l[i].name);
            t[n].scale = 0.2f;
            t[n].ndim = 1, t[n].shape[0] = l[i].cout, n++;
        }
        if (l[i].bn[0]) {
            /* gamma near 1, beta and mean small, variance in [0, 1) */
            const char *p[] = {"weight", "bias", "running_mean", "running_var"};
            const float scale[] = {0.2f, 0.2f, 0.2f, 1.0f}, offset[] = {1.0f, 0, 0, 0.5f};
            for (int k = 0; k < 4; k++) {
                snprintf(t[n].name, sizeof t[n].name, "%s.%s", l[i].bn, p[k]);
                t[n].scale = scale[k], t[n].offset = offset[k];
                t[n].ndim = 1, t[n].shape[0] = l[i].cout, n++;
            }
        }
    }
    for (int k = 0; k < 2; k++) {
        snprintf(t[n].name, sizeof t[n].name, k ? "g.mem.c0" : "g.mem.h0");
        t[n].scale = 2.0f; /* the memory state in [-1, 1] */
        t[n].ndim = 3, t[n].shape[0] = 16 * in->g_base;
        t[n].shape[1] = t[n].shape[2] = in->image_size / 8;
        n++;
    }
    return n;
}

/* The description of one tensor by name (name "" when there is none). */
static inline tdesc find_tdesc(const maa_model_info *in, const char *name)
{
    tdesc t[256], none = {0};
    int n = list_tensors(in, t);
    for (int i = 0; i < n; i++)
        if (!strcmp(t[i].name, name))
            return t[i];
    return none;
}

/* Element i of a tensor: deterministic, uniform in offset +- scale/2. */
static inline float value(const tdesc *t, size_t i)
{
    uint32_t h = 2166136261u;
    for (const char *p = t->name; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    h ^= (uint32_t)i * 2654435761u;
    h = (h ^ (h >> 15)) * 2246822519u;
    float u = (float)((h >> 8) & 0xffff) / 65536.0f - 0.5f;
    return t->offset + t->scale * u;
}

static inline uint16_t to_half(float f)
{
    /* Values here are small and normal: truncating the mantissa suffices. */
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000;
    int e = (int)((u >> 23) & 0xff) - 127 + 15;
    if (e <= 0)
        return (uint16_t)sign;
    return (uint16_t)(sign | (uint32_t)e << 10 | ((u >> 13) & 0x3ff));
}

static inline int write_model(const char *path, const maa_model_info *in, const spoil *sp)
{
    tdesc t[256];
    int n = list_tensors(in, t);
    if (sp->extra_i64) {
        snprintf(t[n].name, sizeof t[n].name, "g.enc.0.bn.num_batches_tracked");
        t[n].ndim = 0;
        n++;
    }
    static char header[65536];
    size_t off = 0, data = 0;
    const char *meta[][2] = {{"format", "maa"}, {"version", "1"}, {"image_size", NULL},
                             {"channels", NULL}, {"g_base", NULL}, {"d_base", NULL},
                             {"bn_eps", "1e-05"}, {"lrelu_slope", "0.1"}};
    char num[4][16];
    snprintf(num[0], 16, "%d", in->image_size);
    snprintf(num[1], 16, "%d", in->channels);
    snprintf(num[2], 16, "%d", in->g_base);
    snprintf(num[3], 16, "%d", in->d_base);
    for (int k = 0; k < 4; k++)
        meta[2 + k][1] = num[k];
    off += (size_t)snprintf(header + off, sizeof header - off, "{\"__metadata__\":{");
    for (int k = 0; k < 8; k++) {
        const char *v = sp->meta_key && !strcmp(sp->meta_key, meta[k][0]) ? sp->meta_value : meta[k][1];
        off += (size_t)snprintf(header + off, sizeof header - off, "%s\"%s\":\"%s\"", k ? "," : "",
                                meta[k][0], v);
    }
    off += (size_t)snprintf(header + off, sizeof header - off, "}");
    size_t begin[256], nbytes[256];
    for (int i = 0; i < n; i++) {
        if (sp->drop && !strcmp(sp->drop, t[i].name))
            continue;
        if (sp->reshape && !strcmp(sp->reshape, t[i].name))
            t[i].ndim = 1, t[i].shape[0] = 1;
        size_t numel = 1;
        for (int d = 0; d < t[i].ndim; d++)
            numel *= (size_t)t[i].shape[d];
        int i64 = sp->extra_i64 && i == n - 1;
        const char *dtype = i64 ? "I64" : sp->as_i32 && !strcmp(sp->as_i32, t[i].name) ? "I32"
                                        : sp->f16 ? "F16" : "F32";
        size_t es = i64 ? 8 : sp->f16 && strcmp(dtype, "I32") ? 2 : 4;
        begin[i] = data;
        nbytes[i] = numel * es;
        size_t b = data, e = data + numel * es;
        if (sp->overlap && i == 1)
            b -= 4, e -= 4;
        if (sp->out_of_range && i == n - 1)
            e += 4096, b += 4096;
        off += (size_t)snprintf(header + off, sizeof header - off,
                                ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", t[i].name, dtype);
        for (int d = 0; d < t[i].ndim; d++)
            off += (size_t)snprintf(header + off, sizeof header - off, "%s%lld", d ? "," : "",
                                    (long long)t[i].shape[d]);
        off += (size_t)snprintf(header + off, sizeof header - off, "],\"data_offsets\":[%zu,%zu]}", b, e);
        data = sp->overlap && i == 1 ? e : data + numel * es;
    }
    off += (size_t)snprintf(header + off, sizeof header - off, "}");
    const char *h = sp->header ? sp->header : header;
    uint64_t hl = strlen(h);
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    for (int k = 0; k < 8; k++)
        fputc((int)(hl >> (8 * k)) & 0xff, f);
    fwrite(h, 1, hl, f);
    for (int i = 0; i < n; i++) {
        if (sp->drop && !strcmp(sp->drop, t[i].name))
            continue;
        int i64 = sp->extra_i64 && i == n - 1;
        size_t es = i64 ? 8 : (sp->f16 && !(sp->as_i32 && !strcmp(sp->as_i32, t[i].name))) ? 2 : 4;
        for (size_t k = 0; k < nbytes[i] / es; k++) {
            float v = value(&t[i], k);
            if (i64 || (sp->as_i32 && !strcmp(sp->as_i32, t[i].name))) {
                uint64_t z = 0;
                fwrite(&z, es, 1, f);
            } else if (es == 2) {
                uint16_t hv = to_half(v);
                fwrite(&hv, 2, 1, f);
            } else {
                fwrite(&v, 4, 1, f);
            }
        }
        (void)begin;
    }
    fclose(f);
    if (sp->truncate) {
        FILE *g = fopen(path, "rb+");
        fseek(g, 0, SEEK_END);
        long size = ftell(g);
        fclose(g);
        if (truncate(path, size - sp->truncate))
            return -1;
    }
    return 0;
}

#endif
