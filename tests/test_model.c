/* test_model.c — the SPEC §3 model loader: a valid file in F32 and F16, and
 * one crafted bad file for every refusal the SPEC lists, each checked for a
 * message that names the problem. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/backend.h"
#include "tests/check.h"

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
} tdesc;

static int list_tensors(const maa_model_info *in, tdesc *t)
{
    maa_conv_desc l[MAA_NET_LAYERS];
    maa_net_describe(in, l);
    int n = 0;
    for (int i = 0; i < MAA_NET_LAYERS; i++) {
        snprintf(t[n].name, sizeof t[n].name, "%s.weight", l[i].name);
        t[n].ndim = 4;
        int64_t a = l[i].transposed ? l[i].cin : l[i].cout, b = l[i].transposed ? l[i].cout : l[i].cin;
        t[n].shape[0] = a, t[n].shape[1] = b, t[n].shape[2] = l[i].kh, t[n].shape[3] = l[i].kw;
        n++;
        if (l[i].has_bias) {
            snprintf(t[n].name, sizeof t[n].name, "%s.bias", l[i].name);
            t[n].ndim = 1, t[n].shape[0] = l[i].cout, n++;
        }
        if (l[i].bn[0]) {
            const char *p[] = {"weight", "bias", "running_mean", "running_var"};
            for (int k = 0; k < 4; k++) {
                snprintf(t[n].name, sizeof t[n].name, "%s.%s", l[i].bn, p[k]);
                t[n].ndim = 1, t[n].shape[0] = l[i].cout, n++;
            }
        }
    }
    for (int k = 0; k < 2; k++) {
        snprintf(t[n].name, sizeof t[n].name, k ? "g.mem.c0" : "g.mem.h0");
        t[n].ndim = 3, t[n].shape[0] = 16 * in->g_base;
        t[n].shape[1] = t[n].shape[2] = in->image_size / 8;
        n++;
    }
    return n;
}

/* Deterministic values; variances positive. */
static float value(const char *name, size_t i)
{
    uint32_t h = 2166136261u;
    for (const char *p = name; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    h ^= (uint32_t)i * 2654435761u;
    h = (h ^ (h >> 15)) * 2246822519u;
    float v = (float)((h >> 8) & 0xffff) / 65536.0f - 0.5f;
    return strstr(name, "running_var") ? 0.5f + v : v * 0.2f;
}

static uint16_t to_half(float f)
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

static const maa_model_info small = {64, 3, 4, 8, 1e-5, 0.1, 5};

static int write_model(const char *path, const maa_model_info *in, const spoil *sp)
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
            float v = value(t[i].name, k);
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

static char tmpdir[] = "/tmp/maa-test-model-XXXXXX";

static const char *tpath(const char *name)
{
    static char p[256];
    snprintf(p, sizeof p, "%s/%s", tmpdir, name);
    return p;
}

/* Loads a spoiled file and expects a refusal whose message contains want. */
static void expect_refusal(const char *name, const spoil *sp, const char *want)
{
    const char *p = tpath(name);
    CHECK(write_model(p, &small, sp) == 0, "cannot write %s", p);
    maa_model *m = NULL;
    char err[MAA_ERRLEN] = "";
    int rc = maa_model_load(p, &m, err, sizeof err);
    CHECK(rc == MAA_ERR && m == NULL, "%s loaded but should be refused", name);
    CHECK(strstr(err, want) != NULL, "%s: message \"%s\" lacks \"%s\"", name, err, want);
    CHECK(strstr(err, name) != NULL, "%s: message \"%s\" does not name the file", name, err);
}

static void test_valid_f32(void)
{
    spoil sp = {0};
    const char *p = tpath("good.safetensors");
    CHECK(write_model(p, &small, &sp) == 0);
    maa_model *m;
    char err[MAA_ERRLEN];
    CHECK(maa_model_load(p, &m, err, sizeof err) == MAA_OK, "%s", err);
    if (!m)
        return;
    const maa_model_info *in = maa_model_get_info(m);
    CHECK(in->image_size == 64 && in->channels == 3 && in->g_base == 4 && in->d_base == 8);
    CHECK(in->markov_size == 5);
    CHECK_NEAR(in->bn_eps, 1e-5, 1e-12);
    CHECK(!strcmp(maa_model_dtype(m), "F32"));
    CHECK(strlen(maa_model_sha256(m)) == 64);
    tdesc t[256];
    int n = list_tensors(&small, t);
    CHECK(maa_model_tensor_count(m) == (size_t)n, "%zu tensors, expected %d", maa_model_tensor_count(m), n);
    int64_t shape[4];
    int nd;
    const float *w = maa_model_tensor(m, "g.res.2.conv1.weight", &nd, shape);
    CHECK(w && nd == 4 && shape[0] == 64 && shape[1] == 64 && shape[2] == 3);
    CHECK(w && w[7] == value("g.res.2.conv1.weight", 7));
    w = maa_model_tensor(m, "g.dec.0.weight", &nd, shape);
    CHECK(w && shape[0] == 64 && shape[1] == 32, "transposed conv weights are [in, out, kh, kw]");
    CHECK(maa_model_tensor(m, "g.nope", NULL, NULL) == NULL);
    CHECK(maa_model_meta_count(m) == 8);
    maa_model_free(m);
}

static void test_valid_f16_and_extra(void)
{
    spoil sp = {.f16 = 1, .extra_i64 = 1};
    const char *p = tpath("half.safetensors");
    CHECK(write_model(p, &small, &sp) == 0);
    maa_model *m;
    char err[MAA_ERRLEN];
    CHECK(maa_model_load(p, &m, err, sizeof err) == MAA_OK, "%s", err);
    if (!m)
        return;
    CHECK(!strcmp(maa_model_dtype(m), "F16"));
    const float *w = maa_model_tensor(m, "d.2.weight", NULL, NULL);
    /* The writer truncates the mantissa: within one half ulp of the value. */
    for (int i = 0; w && i < 100; i++) {
        float v = value("d.2.weight", (size_t)i);
        CHECK(fabsf(w[i] - v) <= fabsf(v) / 1024.0f + 1e-7f, "%d: %g vs %g", i, w[i], v);
    }
    CHECK(maa_model_tensor(m, "g.enc.0.bn.num_batches_tracked", NULL, NULL) == NULL,
          "tensors outside the SPEC are ignored");
    maa_model_free(m);
}

static void test_refusals(void)
{
    spoil none = {0};
    expect_refusal("badjson.safetensors", &(spoil){.header = "{\"a\": tru"}, "not valid JSON");
    expect_refusal("missing.safetensors", &(spoil){.drop = "g.mem.h0"}, "missing tensor g.mem.h0");
    expect_refusal("shape.safetensors", &(spoil){.reshape = "g.res.2.conv1.weight"},
                   "tensor g.res.2.conv1.weight has shape [1], expected [64,64,3,3]");
    expect_refusal("dtype.safetensors", &(spoil){.as_i32 = "d.1.bn.running_var"},
                   "tensor d.1.bn.running_var has dtype I32, expected F32 or F16");
    expect_refusal("overlap.safetensors", &(spoil){.overlap = 1}, "overlap");
    expect_refusal("range.safetensors", &(spoil){.out_of_range = 1}, "runs past the end");
    expect_refusal("trunc.safetensors", &(spoil){.truncate = 100}, "truncated");
    expect_refusal("format.safetensors", &(spoil){.meta_key = "format", .meta_value = "onnx"},
                   "format is \"onnx\"");
    expect_refusal("version.safetensors", &(spoil){.meta_key = "version", .meta_value = "2"},
                   "version \"2\"");
    expect_refusal("size.safetensors", &(spoil){.meta_key = "image_size", .meta_value = "60"},
                   "image_size \"60\"");
    expect_refusal("chan.safetensors", &(spoil){.meta_key = "channels", .meta_value = "2"},
                   "channels \"2\"");
    expect_refusal("eps.safetensors", &(spoil){.meta_key = "bn_eps", .meta_value = "abc"},
                   "bn_eps \"abc\"");
    expect_refusal("notmaa.safetensors", &(spoil){.header = "{\"x\":1}"}, "__metadata__");
    (void)none;

    /* A header length beyond the file, and a file shorter than 8 bytes. */
    const char *p = tpath("short.safetensors");
    FILE *f = fopen(p, "wb");
    fwrite("\x10\x00\x00\x00\x00\x00\x00\x00{}", 1, 10, f);
    fclose(f);
    maa_model *m;
    char err[MAA_ERRLEN] = "";
    CHECK(maa_model_load(p, &m, err, sizeof err) == MAA_ERR && strstr(err, "truncated"), "%s", err);
    f = fopen(p, "wb");
    fwrite("abc", 1, 3, f);
    fclose(f);
    CHECK(maa_model_load(p, &m, err, sizeof err) == MAA_ERR && strstr(err, "truncated"), "%s", err);
    CHECK(maa_model_load(tpath("absent"), &m, err, sizeof err) == MAA_ERR &&
              strstr(err, "No such file"), "%s", err);
}

int main(void)
{
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_valid_f32);
    RUN(test_valid_f16_and_extra);
    RUN(test_refusals);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    return CHECK_SUMMARY();
}
