/* test_model.c — the contract §3 model loader: a valid file in F32 and F16, and
 * one crafted bad file for every refusal the contract lists, each checked for a
 * message that names the problem. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/backend.h"
#include "tests/check.h"
#include "tests/testmodel.h"

static const maa_model_info small = {64, 3, 4, 8, 1e-5, 0.1, 5};

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
    tdesc td = find_tdesc(&small, "g.res.2.conv1.weight");
    CHECK(w && w[7] == value(&td, 7));
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
    tdesc td = find_tdesc(&small, "d.2.weight");
    /* The writer truncates the mantissa: within one half ulp of the value. */
    for (int i = 0; w && i < 100; i++) {
        float v = value(&td, (size_t)i);
        CHECK(fabsf(w[i] - v) <= fabsf(v) / 1024.0f + 1e-7f, "%d: %g vs %g", i, w[i], v);
    }
    CHECK(maa_model_tensor(m, "g.enc.0.bn.num_batches_tracked", NULL, NULL) == NULL,
          "tensors outside the contract are ignored");
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

/* A valid file plus one unused tensor whose 3-D shape multiplies to 2^64
 * bytes, which wraps to the 0 bytes it is given: the loader must refuse it
 * rather than trust the wrapped product. */
static void test_shape_overflow(void)
{
    const char *good = tpath("wrapgood.safetensors");
    CHECK(write_model(good, &small, &(spoil){0}) == 0);
    FILE *f = fopen(good, "rb");
    if (!f) {
        CHECK(0, "cannot read %s", good);
        return;
    }
    fseek(f, 0, SEEK_END);
    size_t len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(len);
    CHECK(buf && fread(buf, 1, len, f) == len);
    fclose(f);
    if (!buf)
        return;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | buf[i];
    size_t data_len = len - 8 - (size_t)hlen;
    static char header[70000];
    /* The header ends with '}': append one entry before it.  Its empty data
     * sits at the very end, so no overlap or range check can catch it. */
    int n = snprintf(header, sizeof header,
                     "%.*s,\"junk\":{\"dtype\":\"F32\",\"shape\":[1073741824,1073741824,4],"
                     "\"data_offsets\":[%zu,%zu]}}",
                     (int)hlen - 1, (const char *)buf + 8, data_len, data_len);
    const char *p = tpath("wrap.safetensors");
    f = fopen(p, "wb");
    for (int k = 0; k < 8; k++)
        fputc((int)((uint64_t)n >> (8 * k)) & 0xff, f);
    fwrite(header, 1, (size_t)n, f);
    fwrite(buf + 8 + hlen, 1, data_len, f);
    fclose(f);
    free(buf);
    maa_model *m = NULL;
    char err[MAA_ERRLEN] = "";
    int rc = maa_model_load(p, &m, err, sizeof err);
    CHECK(rc == MAA_ERR && m == NULL, "a tensor of 2^64 bytes in 0 was accepted");
    CHECK(strstr(err, "junk") != NULL, "message \"%s\" does not name the tensor", err);
    maa_model_free(m);
}

/* A path that is no regular file: a directory's size from ftell was near
 * 2^63 (a hash cookie on ext4), which the loader asked malloc for (the
 * sanitizer build aborted); a FIFO would hang the open until a writer
 * came.  Both are refused at once, naming the path and what it is. */
static void test_not_a_file(void)
{
    maa_model *m = NULL;
    char err[MAA_ERRLEN] = "";
    const char *d = tpath("dir.safetensors");
    CHECK(mkdir(d, 0700) == 0, "cannot make %s", d);
    CHECK(maa_model_load(d, &m, err, sizeof err) == MAA_ERR && !m);
    CHECK(strstr(err, d) && strstr(err, "is a directory"), "%s", err);
    const char *fifo = tpath("fifo.safetensors");
    CHECK(mkfifo(fifo, 0600) == 0, "cannot make %s", fifo);
    CHECK(maa_model_load(fifo, &m, err, sizeof err) == MAA_ERR && !m);
    CHECK(strstr(err, fifo) && strstr(err, "not a regular file"), "%s", err);
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
    RUN(test_shape_overflow);
    RUN(test_not_a_file);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    return CHECK_SUMMARY();
}
