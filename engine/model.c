/* model.c — the contract §3 model file: a safetensors file with the MAA tensors
 * by name and the network's hyper-parameters in __metadata__.
 *
 * The whole file is read and checked before anything is kept: a model that
 * loads is complete, consistent and F32 in memory.  Tensors the network does
 * not use (a PyTorch exporter may leave BN's num_batches_tracked, say) are
 * ignored, but their offsets are still checked, since overlapping or
 * out-of-range data means a damaged file. */
#include <errno.h>
#include <glib.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/backend.h"

#define MAX_HEADER (64u << 20)
#define MAX_TENSORS (MAA_NET_LAYERS * 8)

typedef struct {
    char name[48];
    int ndim;
    int64_t shape[4];
    float *data;
} tensor;

struct maa_model {
    char *path;
    char sha256[65];
    char dtype[8];
    maa_model_info info;
    size_t params;
    int ntensors;
    tensor tensors[MAX_TENSORS];
    size_t nmeta;
    char **meta_keys, **meta_values;
};

/* What the file's JSON says about one tensor, before it is trusted. */
typedef struct {
    const char *name;
    const char *dtype;
    int ndim;
    int64_t shape[8];
    uint64_t begin, end;
} entry;

static size_t dtype_size(const char *dtype)
{
    if (!strcmp(dtype, "F32") || !strcmp(dtype, "I32") || !strcmp(dtype, "U32"))
        return 4;
    if (!strcmp(dtype, "F16") || !strcmp(dtype, "BF16") || !strcmp(dtype, "I16") ||
        !strcmp(dtype, "U16"))
        return 2;
    if (!strcmp(dtype, "F64") || !strcmp(dtype, "I64") || !strcmp(dtype, "U64"))
        return 8;
    if (!strcmp(dtype, "I8") || !strcmp(dtype, "U8") || !strcmp(dtype, "BOOL"))
        return 1;
    return 0;
}

static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    } else if (man == 0) {
        bits = sign;
    } else { /* subnormal half: normalise */
        int e = -1;
        do {
            e++;
            man <<= 1;
        } while (!(man & 0x400));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ff) << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static void shape_str(char *buf, size_t len, const int64_t *shape, int ndim)
{
    size_t off = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < ndim && off < len; i++)
        off += (size_t)snprintf(buf + off, len - off, "%s%" PRId64, i ? "," : "", shape[i]);
    if (off < len)
        snprintf(buf + off, len - off, "]");
}

/* Strict decimal parsers for metadata values (strings by the format). */
static int parse_int(const char *s, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return MAA_ERR;
    *out = (int)v;
    return MAA_OK;
}

static int parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi)
        return MAA_ERR;
    *out = v;
    return MAA_OK;
}

static int parse_metadata(maa_model *m, json_t *meta, char *err, size_t errlen)
{
    const char *path = m->path;
    if (!json_is_object(meta)) {
        maa_seterr(err, errlen, "%s: no __metadata__ object in the header (not a maa model file)", path);
        return MAA_ERR;
    }
    m->nmeta = json_object_size(meta);
    m->meta_keys = calloc(m->nmeta + 1, sizeof *m->meta_keys);
    m->meta_values = calloc(m->nmeta + 1, sizeof *m->meta_values);
    if (!m->meta_keys || !m->meta_values) {
        maa_seterr(err, errlen, "%s: out of memory", path);
        return MAA_ERR;
    }
    size_t i = 0;
    const char *key;
    json_t *val;
    json_object_foreach(meta, key, val) {
        if (!json_is_string(val)) {
            maa_seterr(err, errlen, "%s: metadata %s is not a string", path, key);
            return MAA_ERR;
        }
        m->meta_keys[i] = strdup(key);
        m->meta_values[i] = strdup(json_string_value(val));
        if (!m->meta_keys[i] || !m->meta_values[i]) {
            maa_seterr(err, errlen, "%s: out of memory", path);
            return MAA_ERR;
        }
        i++;
    }

    static const char *required[] = {"format", "version", "image_size", "channels",
                                     "g_base", "d_base", "bn_eps", "lrelu_slope"};
    const char *v[8];
    for (size_t k = 0; k < 8; k++) {
        json_t *j = json_object_get(meta, required[k]);
        if (!j) {
            maa_seterr(err, errlen, "%s: metadata lacks %s", path, required[k]);
            return MAA_ERR;
        }
        v[k] = json_string_value(j);
    }
    maa_model_info *in = &m->info;
    if (strcmp(v[0], "maa")) {
        maa_seterr(err, errlen, "%s: metadata format is \"%s\", expected \"maa\"", path, v[0]);
        return MAA_ERR;
    }
    if (strcmp(v[1], "1")) {
        maa_seterr(err, errlen, "%s: model format version \"%s\" is not supported (this maa reads version 1)",
                   path, v[1]);
        return MAA_ERR;
    }
    /* S >= 40 keeps the Markov map at least 2 x 2, so a covariance exists. */
    if (parse_int(v[2], 40, 8192, &in->image_size) || in->image_size % 8) {
        maa_seterr(err, errlen, "%s: metadata image_size \"%s\" is not a multiple of 8 in 40..8192", path, v[2]);
        return MAA_ERR;
    }
    if (parse_int(v[3], 1, 3, &in->channels) || in->channels == 2) {
        maa_seterr(err, errlen, "%s: metadata channels \"%s\" is not 1 or 3", path, v[3]);
        return MAA_ERR;
    }
    if (parse_int(v[4], 1, 512, &in->g_base)) {
        maa_seterr(err, errlen, "%s: metadata g_base \"%s\" is not an integer in 1..512", path, v[4]);
        return MAA_ERR;
    }
    if (parse_int(v[5], 1, 1024, &in->d_base)) {
        maa_seterr(err, errlen, "%s: metadata d_base \"%s\" is not an integer in 1..1024", path, v[5]);
        return MAA_ERR;
    }
    if (parse_double(v[6], 1e-12, 1.0, &in->bn_eps)) {
        maa_seterr(err, errlen, "%s: metadata bn_eps \"%s\" is not a number in (0, 1]", path, v[6]);
        return MAA_ERR;
    }
    if (parse_double(v[7], 0.0, 1.0, &in->lrelu_slope)) {
        maa_seterr(err, errlen, "%s: metadata lrelu_slope \"%s\" is not a number in [0, 1]", path, v[7]);
        return MAA_ERR;
    }
    in->markov_size = in->image_size / 8 - 3;
    return MAA_OK;
}

static int parse_entry(const char *path, const char *name, json_t *j, uint64_t data_len,
                       entry *e, char *err, size_t errlen)
{
    json_t *dt = json_object_get(j, "dtype"), *sh = json_object_get(j, "shape"),
           *off = json_object_get(j, "data_offsets");
    e->name = name;
    if (!json_is_object(j) || !json_is_string(dt) || !json_is_array(sh) ||
        !json_is_array(off) || json_array_size(off) != 2) {
        maa_seterr(err, errlen, "%s: tensor %s: entry needs dtype, shape and data_offsets", path, name);
        return MAA_ERR;
    }
    e->dtype = json_string_value(dt);
    size_t esize = dtype_size(e->dtype);
    if (!esize) {
        maa_seterr(err, errlen, "%s: tensor %s has unknown dtype %s", path, name, e->dtype);
        return MAA_ERR;
    }
    if (json_array_size(sh) > 8) {
        maa_seterr(err, errlen, "%s: tensor %s has %zu dimensions", path, name, json_array_size(sh));
        return MAA_ERR;
    }
    e->ndim = (int)json_array_size(sh);
    /* Up to 8 dimensions of up to 2^30 each: the product would wrap, and a
     * wrapped product can match a small byte count, so it is capped at what
     * the data section could hold. */
    uint64_t numel = 1;
    int zero = 0, too_big = 0;
    for (int d = 0; d < e->ndim; d++) {
        json_t *x = json_array_get(sh, (size_t)d);
        if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) > (1 << 30)) {
            maa_seterr(err, errlen, "%s: tensor %s has a bad shape", path, name);
            return MAA_ERR;
        }
        e->shape[d] = json_integer_value(x);
        uint64_t k = (uint64_t)e->shape[d];
        if (k == 0)
            zero = 1;
        else if (numel > data_len / esize / k)
            too_big = 1;
        else
            numel *= k;
    }
    if (zero)
        numel = 0;
    else if (too_big) {
        maa_seterr(err, errlen, "%s: tensor %s has a shape larger than the file's %" PRIu64
                   " data bytes can hold", path, name, data_len);
        return MAA_ERR;
    }
    json_t *b = json_array_get(off, 0), *en = json_array_get(off, 1);
    if (!json_is_integer(b) || !json_is_integer(en) || json_integer_value(b) < 0 ||
        json_integer_value(en) < json_integer_value(b)) {
        maa_seterr(err, errlen, "%s: tensor %s has bad data_offsets", path, name);
        return MAA_ERR;
    }
    e->begin = (uint64_t)json_integer_value(b);
    e->end = (uint64_t)json_integer_value(en);
    if (e->end > data_len) {
        maa_seterr(err, errlen,
                   "%s: tensor %s data [%" PRIu64 ", %" PRIu64 ") runs past the end of the file "
                   "(%" PRIu64 " data bytes): truncated file?",
                   path, name, e->begin, e->end, data_len);
        return MAA_ERR;
    }
    if (e->end - e->begin != numel * esize) {
        maa_seterr(err, errlen, "%s: tensor %s holds %" PRIu64 " bytes, but its shape and dtype need %" PRIu64,
                   path, name, e->end - e->begin, numel * esize);
        return MAA_ERR;
    }
    return MAA_OK;
}

static int cmp_begin(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

static const entry *find_entry(const entry *es, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(es[i].name, name))
            return &es[i];
    return NULL;
}

/* Take one contract tensor from the file: dtype and shape checked, widened to
 * F32. */
static int take(maa_model *m, const entry *es, size_t n, const uint8_t *data,
                const char *name, int ndim, const int64_t *shape, char *err, size_t errlen)
{
    const entry *e = find_entry(es, n, name);
    if (!e) {
        maa_seterr(err, errlen, "%s: missing tensor %s", m->path, name);
        return MAA_ERR;
    }
    int same = e->ndim == ndim;
    for (int d = 0; same && d < ndim; d++)
        same = e->shape[d] == shape[d];
    if (!same) {
        char got[96], want[96];
        shape_str(got, sizeof got, e->shape, e->ndim);
        shape_str(want, sizeof want, shape, ndim);
        maa_seterr(err, errlen, "%s: tensor %s has shape %s, expected %s", m->path, name, got, want);
        return MAA_ERR;
    }
    int f16 = !strcmp(e->dtype, "F16");
    if (!f16 && strcmp(e->dtype, "F32")) {
        maa_seterr(err, errlen, "%s: tensor %s has dtype %s, expected F32 or F16", m->path, name, e->dtype);
        return MAA_ERR;
    }
    if (m->ntensors == 0)
        snprintf(m->dtype, sizeof m->dtype, "%s", e->dtype);
    else if (strcmp(m->dtype, e->dtype))
        snprintf(m->dtype, sizeof m->dtype, "mixed");

    size_t numel = 1;
    for (int d = 0; d < ndim; d++)
        numel *= (size_t)shape[d];
    tensor *t = &m->tensors[m->ntensors];
    t->data = malloc(numel * sizeof(float));
    if (!t->data) {
        maa_seterr(err, errlen, "%s: out of memory for tensor %s", m->path, name);
        return MAA_ERR;
    }
    m->ntensors++;
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    const uint8_t *src = data + e->begin;
    for (size_t i = 0; i < numel; i++) {
        if (f16) {
            uint16_t h = (uint16_t)(src[2 * i] | src[2 * i + 1] << 8);
            t->data[i] = half_to_float(h);
        } else {
            uint32_t u = (uint32_t)src[4 * i] | (uint32_t)src[4 * i + 1] << 8 |
                         (uint32_t)src[4 * i + 2] << 16 | (uint32_t)src[4 * i + 3] << 24;
            memcpy(&t->data[i], &u, sizeof u);
        }
        if (!isfinite(t->data[i])) {
            maa_seterr(err, errlen, "%s: tensor %s holds a non-finite value at index %zu", m->path, name, i);
            return MAA_ERR;
        }
    }
    m->params += numel;
    return MAA_OK;
}

static int take_layer(maa_model *m, const entry *es, size_t n, const uint8_t *data,
                      const maa_conv_desc *l, char *err, size_t errlen)
{
    char name[64];
    int64_t w[4] = {l->cout, l->cin, l->kh, l->kw}, c[1] = {l->cout};
    if (l->transposed) {
        w[0] = l->cin;
        w[1] = l->cout;
    }
    snprintf(name, sizeof name, "%s.weight", l->name);
    if (take(m, es, n, data, name, 4, w, err, errlen))
        return MAA_ERR;
    if (l->has_bias) {
        snprintf(name, sizeof name, "%s.bias", l->name);
        if (take(m, es, n, data, name, 1, c, err, errlen))
            return MAA_ERR;
    }
    if (l->bn[0]) {
        static const char *parts[] = {"weight", "bias", "running_mean", "running_var"};
        for (int k = 0; k < 4; k++) {
            snprintf(name, sizeof name, "%s.%s", l->bn, parts[k]);
            if (take(m, es, n, data, name, 1, c, err, errlen))
                return MAA_ERR;
        }
        snprintf(name, sizeof name, "%s.running_var", l->bn);
        const float *var = maa_model_tensor(m, name, NULL, NULL);
        for (int i = 0; i < l->cout; i++)
            if (var[i] < 0) {
                maa_seterr(err, errlen, "%s: tensor %s has a negative variance at %d", m->path, name, i);
                return MAA_ERR;
            }
    }
    return MAA_OK;
}

static int parse(maa_model *m, const uint8_t *buf, size_t len, char *err, size_t errlen)
{
    const char *path = m->path;
    if (len < 8) {
        maa_seterr(err, errlen, "%s: truncated file (%zu bytes, no safetensors header)", path, len);
        return MAA_ERR;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | buf[i];
    if (hlen > MAX_HEADER || hlen < 2) {
        maa_seterr(err, errlen, "%s: header length %" PRIu64 " is implausible (not a safetensors file?)",
                   path, hlen);
        return MAA_ERR;
    }
    if (8 + hlen > len) {
        maa_seterr(err, errlen, "%s: truncated file: header of %" PRIu64 " bytes, file has %zu", path,
                   hlen, len);
        return MAA_ERR;
    }
    json_error_t jerr;
    json_t *root = json_loadb((const char *)buf + 8, (size_t)hlen, 0, &jerr);
    if (!root || !json_is_object(root)) {
        maa_seterr(err, errlen, "%s: header is not valid JSON (%s at line %d column %d)", path,
                   root ? "not an object" : jerr.text, root ? 1 : jerr.line, root ? 1 : jerr.column);
        json_decref(root);
        return MAA_ERR;
    }
    int rc = MAA_ERR;
    uint64_t data_len = len - 8 - hlen;
    const uint8_t *data = buf + 8 + hlen;
    size_t n = json_object_size(root);
    entry *es = calloc(n + 1, sizeof *es);
    if (!es) {
        maa_seterr(err, errlen, "%s: out of memory", path);
        goto out;
    }
    if (parse_metadata(m, json_object_get(root, "__metadata__"), err, errlen))
        goto out;

    size_t ne = 0;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (!strcmp(key, "__metadata__"))
            continue;
        if (parse_entry(path, key, val, data_len, &es[ne], err, errlen))
            goto out;
        ne++;
    }
    qsort(es, ne, sizeof *es, cmp_begin);
    for (size_t i = 1; i < ne; i++)
        if (es[i].begin < es[i - 1].end) {
            maa_seterr(err, errlen, "%s: tensors %s and %s overlap in the data section", path,
                       es[i - 1].name, es[i].name);
            goto out;
        }

    maa_conv_desc layers[MAA_NET_LAYERS];
    maa_net_describe(&m->info, layers);
    for (int i = 0; i < MAA_NET_LAYERS; i++)
        if (take_layer(m, es, ne, data, &layers[i], err, errlen))
            goto out;
    int64_t state[3] = {16 * m->info.g_base, m->info.image_size / 8, m->info.image_size / 8};
    if (take(m, es, ne, data, "g.mem.h0", 3, state, err, errlen) ||
        take(m, es, ne, data, "g.mem.c0", 3, state, err, errlen))
        goto out;
    rc = MAA_OK;
out:
    free(es);
    json_decref(root);
    return rc;
}

int maa_model_load(const char *path, maa_model **out, char *err, size_t errlen)
{
    *out = NULL;
    maa_model *m = calloc(1, sizeof *m);
    uint8_t *buf = NULL;
    size_t len = 0;
    if (!m || !(m->path = strdup(path))) {
        free(m);
        maa_seterr(err, errlen, "%s: out of memory", path);
        return MAA_ERR;
    }
    if (maa_read_file(path, SIZE_MAX, "a model file", &buf, &len, err, errlen) ||
        parse(m, buf, len, err, errlen)) {
        free(buf);
        maa_model_free(m);
        return MAA_ERR;
    }
    gchar *hex = g_compute_checksum_for_data(G_CHECKSUM_SHA256, buf, len);
    snprintf(m->sha256, sizeof m->sha256, "%s", hex);
    g_free(hex);
    free(buf);
    *out = m;
    return MAA_OK;
}

void maa_model_free(maa_model *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->ntensors; i++)
        free(m->tensors[i].data);
    for (size_t i = 0; i < m->nmeta; i++) {
        free(m->meta_keys ? m->meta_keys[i] : NULL);
        free(m->meta_values ? m->meta_values[i] : NULL);
    }
    free(m->meta_keys);
    free(m->meta_values);
    free(m->path);
    free(m);
}

const maa_model_info *maa_model_get_info(const maa_model *m) { return &m->info; }
const char *maa_model_path(const maa_model *m) { return m->path; }
const char *maa_model_sha256(const maa_model *m) { return m->sha256; }
const char *maa_model_dtype(const maa_model *m) { return m->dtype; }
size_t maa_model_tensor_count(const maa_model *m) { return (size_t)m->ntensors; }
size_t maa_model_param_count(const maa_model *m) { return m->params; }
size_t maa_model_meta_count(const maa_model *m) { return m->nmeta; }
const char *maa_model_meta_key(const maa_model *m, size_t i) { return m->meta_keys[i]; }
const char *maa_model_meta_value(const maa_model *m, size_t i) { return m->meta_values[i]; }

const float *maa_model_tensor(const maa_model *m, const char *name, int *ndim, int64_t shape[4])
{
    for (int i = 0; i < m->ntensors; i++) {
        const tensor *t = &m->tensors[i];
        if (strcmp(t->name, name))
            continue;
        if (ndim)
            *ndim = t->ndim;
        if (shape)
            memcpy(shape, t->shape, (size_t)t->ndim * sizeof *shape);
        return t->data;
    }
    return NULL;
}
