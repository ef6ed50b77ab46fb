/* test_cuda.c — the cuda backend against the reference backend: f32 (TF32
 * off) within 1e-3 of ref on the reconstruction and the Markov maps, f16
 * within 2% of ref on the FMD, a batch equal to its images run one by one,
 * no device memory growth over many batches, and batches beyond max_batch
 * refused; the frame path (maa_inspect_frames: preprocessing and mask on the
 * device) equal to the host's, and f16 verdicts equal to f32's away from
 * the threshold.  Models: S=64 with small widths, and the default network at
 * S=256.  The tests that need a CUDA device SKIP without one (or in a build
 * without CUDA); the host fallback of the frame path runs everywhere. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/backend.h"
#include "tests/check.h"
#include "tests/testmodel.h"
#ifdef MAA_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

static const maa_model_info small = {64, 3, 4, 8, 1e-5, 0.1, 5};
static const maa_model_info full = {256, 3, 16, 64, 1e-5, 0.1, 29};

static char tmpdir[] = "/tmp/maa-test-cuda-XXXXXX";
static char why[MAA_ERRLEN];
static int have_device;

/* A model of info written to tmpdir/name and loaded; NULL, with the running
 * test failed, when that cannot be done. */
static maa_model *load(const maa_model_info *info, const char *name)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    spoil sp = {0};
    maa_model *m = NULL;
    char err[MAA_ERRLEN] = "";
    if (write_model(path, info, &sp))
        snprintf(err, sizeof err, "cannot write %s", path);
    else
        maa_model_load(path, &m, err, sizeof err);
    CHECK(m != NULL, "model: %s", err);
    return m;
}

/* Outputs of one engine for n images. */
typedef struct {
    int n;
    size_t img, mm;
    float *recon, *fx, *fr;
} outputs;

static void outputs_free(outputs *o)
{
    free(o->recon);
    free(o->fx);
    free(o->fr);
}

/* Deterministic images in [-1, 1]: smooth structure plus noise, so the
 * network sees something image-like. */
static float *images(const maa_model_info *info, int n)
{
    const int S = info->image_size, C = info->channels;
    float *x = malloc((size_t)n * C * S * S * sizeof(float));
    uint32_t s = 12345;
    for (int i = 0; i < n; i++)
        for (int c = 0; c < C; c++)
            for (int y = 0; y < S; y++)
                for (int xx = 0; xx < S; xx++) {
                    s = s * 1664525u + 1013904223u;
                    float noise = (float)(s >> 8) / 16777216.0f - 0.5f;
                    float v = 0.6f * sinf(0.11f * (xx + 3 * i) + 0.07f * y * (c + 1)) + 0.4f * noise;
                    x[(((size_t)i * C + c) * S + y) * S + xx] = v;
                }
    return x;
}

/* Runs engine kind/prec (max_batch mb) on x in batches of `batch`. */
static int run(const maa_model *m, maa_backend_kind kind, maa_precision prec, int mb, int batch,
               int n, const float *x, outputs *o)
{
    const maa_model_info *info = maa_model_get_info(m);
    o->n = n;
    o->img = (size_t)info->channels * info->image_size * info->image_size;
    o->mm = (size_t)info->markov_size * info->markov_size;
    o->recon = malloc(n * o->img * sizeof(float));
    o->fx = malloc(n * o->mm * sizeof(float));
    o->fr = malloc(n * o->mm * sizeof(float));
    maa_engine_opts opts = {.backend = kind, .precision = prec, .max_batch = mb};
    maa_engine *e;
    char err[MAA_ERRLEN];
    if (maa_engine_create(m, &opts, &e, err, sizeof err)) {
        fprintf(stderr, "  %s engine: %s\n", maa_backend_name(kind), err);
        outputs_free(o);
        memset(o, 0, sizeof *o);
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < n && !rc; i += batch) {
        int k = n - i < batch ? n - i : batch;
        rc = maa_engine_run(e, k, x + i * o->img, o->recon + i * o->img, o->fx + i * o->mm,
                            o->fr + i * o->mm, err, sizeof err);
        if (rc)
            fprintf(stderr, "  run: %s\n", err);
    }
    maa_engine_free(e);
    if (rc) {
        outputs_free(o);
        memset(o, 0, sizeof *o);
    }
    return rc;
}

static double max_abs(const float *a, const float *b, size_t n)
{
    double d = 0;
    for (size_t i = 0; i < n; i++)
        d = fmax(d, fabs((double)a[i] - b[i]));
    return d;
}

static double max_mag(const float *a, size_t n)
{
    double d = 0;
    for (size_t i = 0; i < n; i++)
        d = fmax(d, fabs(a[i]));
    return d;
}

static void test_unavailable_is_refused(void)
{
    if (have_device)
        SKIP("a CUDA device is present");
    CHECK(strstr(why, "no CUDA device") || strstr(why, "not built"), "reason: %s", why);
    maa_model *m = load(&small, "refused.safetensors");
    if (!m)
        return;
    maa_engine_opts opts = {.backend = MAA_BACKEND_CUDA, .max_batch = 1};
    maa_engine *e = NULL;
    char err[MAA_ERRLEN] = "";
    CHECK(maa_engine_create(m, &opts, &e, err, sizeof err) == MAA_ERR && e == NULL);
    CHECK(strstr(err, "cuda") != NULL, "message: %s", err);
    maa_model_free(m);
}

/* f32 within 1e-3 of ref; f16 FMD within 2% of ref's (fmd_check). */
static void compare_with_ref(const maa_model_info *info, const char *name, int n, int fmd_check)
{
    if (!have_device)
        SKIP("%s", why);
    maa_model *m = load(info, name);
    if (!m)
        return;
    float *x = images(info, n);
    outputs ref = {0}, f32 = {0}, f16 = {0};
    CHECK(run(m, MAA_BACKEND_REF, MAA_PREC_F32, n, n, n, x, &ref) == 0);
    CHECK(run(m, MAA_BACKEND_CUDA, MAA_PREC_F32, n, n, n, x, &f32) == 0);
    CHECK(run(m, MAA_BACKEND_CUDA, MAA_PREC_F16, n, n, n, x, &f16) == 0);
    if (ref.recon && f32.recon && f16.recon) {
        double er = max_abs(ref.recon, f32.recon, n * ref.img);
        double ex = max_abs(ref.fx, f32.fx, n * ref.mm), ef = max_abs(ref.fr, f32.fr, n * ref.mm);
        printf("  S=%d f32 vs ref: recon %.2e, f(x) %.2e, f(r) %.2e (|f| up to %.3g)\n",
               info->image_size, er, ex, ef, max_mag(ref.fx, n * ref.mm));
        CHECK(er <= 1e-3, "recon differs by %g", er);
        CHECK(ex <= 1e-3, "f(x) differs by %g", ex);
        CHECK(ef <= 1e-3, "f(r) differs by %g", ef);
        /* f16 keeps about three digits per layer: elementwise within 2% of
         * the outputs' scale. */
        double hr = max_abs(ref.recon, f16.recon, n * ref.img);
        double hx = max_abs(ref.fx, f16.fx, n * ref.mm), hf = max_abs(ref.fr, f16.fr, n * ref.mm);
        double scale = fmax(max_mag(ref.fx, n * ref.mm), max_mag(ref.fr, n * ref.mm));
        printf("  S=%d f16 vs ref: recon %.2e, f(x) %.2e, f(r) %.2e\n", info->image_size, hr,
               hx, hf);
        CHECK(hr <= 0.02 && hx <= 0.02 * scale && hf <= 0.02 * scale, "f16 outputs");
        /* The FMD is checked on the default network only: with the small
         * widths the test weights give maps so alike (FMD ~1e-7 of maps
         * ~3e-2) that any rounding moves it by more than 2%. */
        const int M = info->markov_size;
        for (int i = 0; fmd_check && i < n; i++) {
            double s_ref, s16;
            char err[MAA_ERRLEN];
            CHECK(maa_fmd(ref.fx + i * ref.mm, ref.fr + i * ref.mm, M, M, &s_ref, err,
                          sizeof err) == MAA_OK, "%s", err);
            CHECK(maa_fmd(f16.fx + i * ref.mm, f16.fr + i * ref.mm, M, M, &s16, err,
                          sizeof err) == MAA_OK, "%s", err);
            double rel = fabs(s16 - s_ref) / fmax(fabs(s_ref), 1e-12);
            printf("  S=%d image %d: FMD ref %.6g, f16 %.6g (%.3f%%)\n", info->image_size, i,
                   s_ref, s16, 100 * rel);
            CHECK(rel <= 0.02, "f16 FMD %g vs ref %g", s16, s_ref);
        }
    }
    outputs_free(&ref);
    outputs_free(&f32);
    outputs_free(&f16);
    free(x);
    maa_model_free(m);
}

static void test_small_vs_ref(void) { compare_with_ref(&small, "small.safetensors", 3, 0); }
static void test_default_vs_ref(void) { compare_with_ref(&full, "default.safetensors", 1, 1); }

/* A batch of 4 gives what four batches of 1 give, in both precisions (the
 * same algorithms serve every batch size; f16 may round one ulp apart). */
static void test_batch_equals_singles(void)
{
    if (!have_device)
        SKIP("%s", why);
    maa_model *m = load(&small, "batch.safetensors");
    if (!m)
        return;
    float *x = images(&small, 4);
    for (int p = 0; p < 2; p++) {
        maa_precision prec = p ? MAA_PREC_F16 : MAA_PREC_F32;
        outputs four = {0}, ones = {0};
        CHECK(run(m, MAA_BACKEND_CUDA, prec, 4, 4, 4, x, &four) == 0);
        CHECK(run(m, MAA_BACKEND_CUDA, prec, 4, 1, 4, x, &ones) == 0);
        if (four.recon && ones.recon) {
            double tol_r = p ? 1e-2 : 1e-5;
            double tol_f = tol_r * fmax(1.0, max_mag(ones.fx, 4 * ones.mm));
            double er = max_abs(four.recon, ones.recon, 4 * four.img);
            double ex = max_abs(four.fx, ones.fx, 4 * four.mm);
            double ef = max_abs(four.fr, ones.fr, 4 * four.mm);
            printf("  %s batch 4 vs 4 x 1: recon %.2e, f(x) %.2e, f(r) %.2e\n",
                   maa_precision_name(prec), er, ex, ef);
            CHECK(er <= tol_r && ex <= tol_f && ef <= tol_f, "%s", maa_precision_name(prec));
        }
        outputs_free(&four);
        outputs_free(&ones);
    }
    free(x);
    maa_model_free(m);
}

static void test_refuses_oversized_batch(void)
{
    if (!have_device)
        SKIP("%s", why);
    maa_model *m = load(&small, "refuse.safetensors");
    if (!m)
        return;
    maa_engine_opts opts = {.backend = MAA_BACKEND_CUDA, .max_batch = 2};
    maa_engine *e;
    char err[MAA_ERRLEN] = "";
    CHECK(maa_engine_create(m, &opts, &e, err, sizeof err) == MAA_OK, "%s", err);
    if (e) {
        CHECK(maa_engine_precision(e) == MAA_PREC_F16, "cuda defaults to f16");
        size_t img = 3 * 64 * 64;
        float *x = calloc(3 * img, sizeof(float)), *r = calloc(3 * img, sizeof(float));
        float f[3 * 25], g[3 * 25];
        err[0] = 0;
        CHECK(maa_engine_run(e, 3, x, r, f, g, err, sizeof err) == MAA_ERR);
        CHECK(strstr(err, "3") != NULL, "message: %s", err);
        CHECK(maa_engine_run(e, 0, x, r, f, g, err, sizeof err) == MAA_ERR);
        CHECK(maa_engine_run(e, 2, x, r, f, g, err, sizeof err) == MAA_OK, "%s", err);
        free(x);
        free(r);
        maa_engine_free(e);
    }
    maa_model_free(m);
}

/* Deterministic 8-bit frames: smooth structure plus noise. */
static uint8_t *frames8(int n, int w, int h, int ch)
{
    uint8_t *f = malloc((size_t)n * w * h * ch);
    uint32_t s = 777;
    for (int i = 0; i < n; i++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                for (int c = 0; c < ch; c++) {
                    s = s * 1664525u + 1013904223u;
                    double v = 128 + 90 * sin(0.09 * (x + 5 * i) + 0.05 * y * (c + 1)) +
                               30.0 * ((s >> 8) / 16777216.0 - 0.5);
                    f[(((size_t)i * h + y) * w + x) * ch + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
                }
    return f;
}

/* Runs allocate nothing: free device memory is the same before and after
 * many batches (after a few warm-up launches), on the float path and on the
 * frame path. */
static void test_no_memory_growth(void)
{
    if (!have_device)
        SKIP("%s", why);
#ifdef MAA_HAVE_CUDA
    maa_model *m = load(&small, "leak.safetensors");
    if (!m)
        return;
    maa_engine_opts opts = {.backend = MAA_BACKEND_CUDA, .max_batch = 2};
    maa_engine *e;
    char err[MAA_ERRLEN] = "";
    CHECK(maa_engine_create(m, &opts, &e, err, sizeof err) == MAA_OK, "%s", err);
    if (e) {
        float *x = images(&small, 2), *r = malloc(2 * 3 * 64 * 64 * sizeof(float));
        float f[2 * 25], g[2 * 25];
        for (int i = 0; i < 10; i++)
            maa_engine_run(e, 1 + i % 2, x, r, f, g, err, sizeof err);
        size_t free0, free1, total;
        CHECK(cudaMemGetInfo(&free0, &total) == cudaSuccess);
        int fails = 0;
        for (int i = 0; i < 10000; i++)
            fails += maa_engine_run(e, 1 + i % 2, x, r, f, g, err, sizeof err) != MAA_OK;
        CHECK(cudaMemGetInfo(&free1, &total) == cudaSuccess);
        CHECK(fails == 0, "%d of 10000 batches failed: %s", fails, err);
        printf("  free device memory before %zu, after %zu\n", free0, free1);
        CHECK(free1 >= free0, "device memory fell by %zu bytes", free0 - free1);
        maa_engine_free(e);
        e = NULL;
        /* The frame path, through an inspector, likewise. */
        maa_inspector *in = NULL;
        CHECK(maa_inspector_create(m, &opts, &in, err, sizeof err) == MAA_OK, "%s", err);
        uint8_t *px = frames8(2, 64, 64, 3);
        maa_image ims[2] = {{64, 64, 3, 8, px}, {64, 64, 3, 8, px + 64 * 64 * 3}};
        maa_result res[2];
        for (int i = 0; in && i < 10; i++)
            maa_inspect_frames(in, NULL, 1 + i % 2, ims, res, err, sizeof err);
        CHECK(cudaMemGetInfo(&free0, &total) == cudaSuccess);
        fails = 0;
        for (int i = 0; in && i < 10000; i++)
            fails += maa_inspect_frames(in, NULL, 1 + i % 2, ims, res, err, sizeof err) != MAA_OK;
        CHECK(cudaMemGetInfo(&free1, &total) == cudaSuccess);
        CHECK(fails == 0, "%d of 10000 frame batches failed: %s", fails, err);
        printf("  frame path: free device memory before %zu, after %zu\n", free0, free1);
        CHECK(free1 >= free0, "device memory fell by %zu bytes", free0 - free1);
        maa_inspector_free(in);
        free(px);
        free(x);
        free(r);
        maa_engine_free(e);
    }
    maa_model_free(m);
#endif
}


/* maa_inspect_frames against the contract's steps done one by one on the host
 * (maa_preprocess, maa_engine_run on the same engine, maa_fmd, maa_varmap,
 * threshold and maa_regions): the device path (cuda, frames of w x h no
 * smaller than the model and within frame_bytes, resized there) and the
 * host fallback (larger frames, other backends) must give the same scores,
 * peaks, masks and regions. */
static void frames_vs_host(maa_backend_kind kind, maa_precision prec, int ch, int w, int h,
                           size_t frame_bytes)
{
    const maa_model_info *info = &small;
    const int S = info->image_size, C = info->channels, M = info->markov_size, n = 3;
    maa_model *m = load(info, "frames.safetensors");
    if (!m)
        return;
    maa_engine_opts opts = {.backend = kind, .precision = prec, .max_batch = 4,
                            .frame_bytes = frame_bytes};
    maa_inspector *in = NULL;
    char err[MAA_ERRLEN] = "";
    CHECK(maa_inspector_create(m, &opts, &in, err, sizeof err) == MAA_OK, "%s", err);
    uint8_t *px = frames8(n, w, h, ch);
    const size_t img = (size_t)C * S * S, s2 = (size_t)S * S, mm = (size_t)M * M;
    float *x = malloc(n * img * sizeof(float)), *r = malloc(n * img * sizeof(float));
    float *fx = malloc(n * mm * sizeof(float)), *fr = malloc(n * mm * sizeof(float));
    float *vm = malloc(n * s2 * sizeof(float)), *scratch = malloc(3 * s2 * sizeof(float));
    uint8_t *mask_h = malloc(n * s2);
    int *labels = malloc(s2 * sizeof(int));
    maa_image ims[3];
    maa_result rd[3];
    double score[3], peak[3];
    int total[3];
    int ok = in != NULL;
    for (int i = 0; ok && i < n; i++) {
        ims[i] = (maa_image){w, h, ch, 8, px + (size_t)i * w * h * ch};
        ok = maa_preprocess(&ims[i], S, C, x + i * img, err, sizeof err) == MAA_OK;
    }
    if (ok)
        ok = maa_engine_run(maa_inspector_engine(in), n, x, r, fx, fr, err, sizeof err) == MAA_OK;
    CHECK(ok, "%s", err);
    maa_calibration cal = {.mask_window = 5, .min_region_area = 1};
    for (int i = 0; ok && i < n; i++) {
        CHECK(maa_fmd(fx + i * mm, fr + i * mm, M, M, &score[i], err, sizeof err) == MAA_OK);
        maa_varmap(x + i * img, r + i * img, C, S, cal.mask_window, vm + i * s2, scratch);
        peak[i] = 0;
        for (size_t p = 0; p < s2; p++)
            peak[i] = fmax(peak[i], vm[i * s2 + p]);
    }
    /* Two thresholds: half the smallest peak (every frame has a mask, a few
     * hundred pixels), then the smallest peak itself (m > T_pix is strict:
     * that frame has no pixel, so no labelling at all).  The second pass
     * gives the device path its frames in the engine's own buffers. */
    for (int pass = 0; ok && pass < 2; pass++) {
        uint8_t *fb0 = maa_inspector_frame_buffer(in, 0);
        CHECK((fb0 != NULL) == (kind == MAA_BACKEND_CUDA), "frame buffer %p", (void *)fb0);
        if (pass && fb0 && maa_inspector_takes_frame(in, &ims[0]))
            for (int i = 0; i < n; i++) {
                uint8_t *fb = maa_inspector_frame_buffer(in, i);
                memcpy(fb, ims[i].data, (size_t)w * h * ch);
                ims[i].data = fb;
            }
        const double lo = fmin(peak[0], fmin(peak[1], peak[2]));
        cal.pixel_threshold = pass ? lo : 0.5 * lo;
        cal.threshold = score[1];
        for (int i = 0; i < n; i++) {
            maa_region rg[MAA_MAX_REGIONS];
            int stored;
            maa_regions(vm + i * s2, S, cal.pixel_threshold, cal.min_region_area, mask_h + i * s2,
                        labels, rg, MAA_MAX_REGIONS, &stored, &total[i]);
        }
        CHECK(maa_inspect_frames(in, &cal, n, ims, rd, err, sizeof err) == MAA_OK, "%s", err);
        const size_t cap = frame_bytes > s2 * 4 ? frame_bytes : s2 * 4;
        const int device = kind == MAA_BACKEND_CUDA && w >= S && h >= S &&
                           (size_t)w * h * ch <= cap;
        CHECK(maa_inspector_frame_bytes(in) == (kind == MAA_BACKEND_CUDA ? cap : 0),
              "frame bytes %zu", maa_inspector_frame_bytes(in));
        CHECK(maa_inspector_takes_frame(in, &ims[0]) == device, "takes the frame: %d",
              maa_inspector_takes_frame(in, &ims[0]));
        CHECK((maa_inspector_recon(in, 0) == NULL) == device, "recon kept on the host path only");
        double ds = 0, dp = 0;
        size_t off = 0, on = 0;
        int blank = 0;
        for (int i = 0; i < n; i++) {
            ds = fmax(ds, fabs(rd[i].score - score[i]) / fmax(fabs(score[i]), 1e-30));
            dp = fmax(dp, fabs(rd[i].mask_peak - peak[i]) / fmax(peak[i], 1e-30));
            const uint8_t *md = maa_inspector_mask(in, i);
            size_t on_i = 0;
            for (size_t p = 0; p < s2; p++) {
                off += md[p] != mask_h[i * s2 + p];
                on_i += md[p] != 0;
            }
            on += on_i;
            blank += on_i == 0 && rd[i].regions_total == 0;
            /* The default rule, either: the score above T or a region kept. */
            int evidence = (score[i] > cal.threshold ? MAA_EVIDENCE_SCORE : 0) |
                           (total[i] > 0 ? MAA_EVIDENCE_MASK : 0);
            maa_verdict want = evidence ? MAA_REJECT : MAA_PASS;
            CHECK(rd[i].verdict == want && rd[i].evidence == evidence &&
                      rd[i].regions_total == total[i],
                  "frame %d: verdict %d/%d, evidence %d/%d, regions %d/%d", i, rd[i].verdict,
                  want, rd[i].evidence, evidence, rd[i].regions_total, total[i]);
        }
        printf("  %s %s, %d-channel %dx%d frames (%s path), T_pix %s: score %.1e, peak %.1e "
               "relative; %zu of %zu mask pixels differ (%zu on, %d frame(s) blank)\n",
               maa_backend_name(kind), maa_precision_name(prec), ch, w, h,
               device ? "device" : "host", pass ? "lowest peak" : "half the lowest peak", ds,
               dp, off, n * s2, on, blank);
        CHECK(ds <= 1e-6 && dp <= 1e-6, "scores or peaks differ");
        CHECK(off == 0, "%zu mask pixels differ", off);
        CHECK(on > 0 && on < n * s2 && blank == pass, "the masks do not test what they should");
    }
    maa_inspector_free(in);
    free(px), free(x), free(r), free(fx), free(fr), free(vm), free(scratch), free(mask_h);
    free(labels);
    maa_model_free(m);
}

/* The host fallback runs everywhere; ref stands for the backends without
 * a device path (and the cpu backend with its oneDNN kernels too). */
static void test_frames_host_fallback(void)
{
    frames_vs_host(MAA_BACKEND_REF, MAA_PREC_F32, 3, 64, 64, 0);
    frames_vs_host(MAA_BACKEND_REF, MAA_PREC_F32, 1, 80, 80, 1 << 20);
    frames_vs_host(MAA_BACKEND_CPU, MAA_PREC_F32, 4, 64, 64, 0);
}

static void test_frames_on_device(void)
{
    if (!have_device)
        SKIP("%s", why);
    for (int p = 0; p < 2; p++) {
        maa_precision prec = p ? MAA_PREC_F16 : MAA_PREC_F32;
        frames_vs_host(MAA_BACKEND_CUDA, prec, 3, 64, 64, 0);
        frames_vs_host(MAA_BACKEND_CUDA, prec, 1, 64, 64, 0);
        frames_vs_host(MAA_BACKEND_CUDA, prec, 4, 64, 64, 0);
        /* Shrunk on the device: within an S x S x 4 frame, then beyond it
         * with frame_bytes, at ratios that are not whole (bins overlap). */
        frames_vs_host(MAA_BACKEND_CUDA, prec, 3, 72, 72, 0);
        frames_vs_host(MAA_BACKEND_CUDA, prec, 1, 203, 150, 203 * 150);
        frames_vs_host(MAA_BACKEND_CUDA, prec, 3, 130, 97, 130 * 97 * 3);
        frames_vs_host(MAA_BACKEND_CUDA, prec, 4, 100, 64, 100 * 64 * 4);
        /* Over frame_bytes, or smaller than the model: the host's. */
        frames_vs_host(MAA_BACKEND_CUDA, prec, 3, 130, 97, 130 * 97 * 3 - 1);
        frames_vs_host(MAA_BACKEND_CUDA, prec, 1, 80, 60, 1 << 20);
    }
    /* A frame in another frame's buffer is refused, not sent half
     * overwritten. */
    maa_model *m = load(&small, "frames.safetensors");
    maa_engine_opts opts = {.backend = MAA_BACKEND_CUDA, .max_batch = 2};
    maa_inspector *in = NULL;
    char err[MAA_ERRLEN] = "";
    CHECK(!m || maa_inspector_create(m, &opts, &in, err, sizeof err) == MAA_OK, "%s", err);
    if (in) {
        uint8_t *px = frames8(1, 64, 64, 3), *fb1 = maa_inspector_frame_buffer(in, 1);
        memcpy(fb1, px, 64 * 64 * 3);
        maa_image img = {64, 64, 3, 8, fb1};
        maa_result res;
        CHECK(maa_inspect_frames(in, NULL, 1, &img, &res, err, sizeof err) == MAA_ERR &&
              strstr(err, "frame 0 of the batch lies at byte 0 of frame buffer 1"), "%s", err);
        img.data = px;
        CHECK(maa_inspect_frames(in, NULL, 1, &img, &res, err, sizeof err) == MAA_OK, "%s", err);
        free(px);
    }
    maa_inspector_free(in);
    maa_model_free(m);
}

/* The f16 path against f32 on the default network, on the frame path: every
 * score within 2%, and the same verdict for every frame whose score is not
 * within 2% of the threshold (here the median score). */
static void test_f16_verdicts(void)
{
    if (!have_device)
        SKIP("%s", why);
    enum { N = 16 };
    maa_model *m = load(&full, "verdicts.safetensors");
    if (!m)
        return;
    uint8_t *px = frames8(N, 256, 256, 3);
    maa_image ims[N];
    for (int i = 0; i < N; i++)
        ims[i] = (maa_image){256, 256, 3, 8, px + (size_t)i * 256 * 256 * 3};
    maa_result r[2][N];
    char err[MAA_ERRLEN] = "";
    int ok = 1;
    for (int p = 0; p < 2 && ok; p++) {
        maa_engine_opts opts = {.backend = MAA_BACKEND_CUDA,
                                .precision = p ? MAA_PREC_F16 : MAA_PREC_F32, .max_batch = 4};
        maa_inspector *in = NULL;
        ok = maa_inspector_create(m, &opts, &in, err, sizeof err) == MAA_OK;
        for (int i = 0; ok && i < N; i += 4)
            ok = maa_inspect_frames(in, NULL, 4, ims + i, r[p] + i, err, sizeof err) == MAA_OK;
        CHECK(ok, "%s", err);
        maa_inspector_free(in);
    }
    if (ok) {
        double sorted[N], worst = 0;
        for (int i = 0; i < N; i++)
            sorted[i] = r[0][i].score;
        for (int i = 1; i < N; i++)
            for (int j = i; j > 0 && sorted[j] < sorted[j - 1]; j--) {
                double t = sorted[j];
                sorted[j] = sorted[j - 1];
                sorted[j - 1] = t;
            }
        const double T = 0.5 * (sorted[N / 2 - 1] + sorted[N / 2]);
        int judged = 0;
        for (int i = 0; i < N; i++) {
            double rel = fabs(r[1][i].score - r[0][i].score) / r[0][i].score;
            worst = fmax(worst, rel);
            if (fabs(r[0][i].score - T) > 0.02 * T) {
                judged++;
                CHECK((r[0][i].score > T) == (r[1][i].score > T), "frame %d: f32 %g, f16 %g, T %g",
                      i, r[0][i].score, r[1][i].score, T);
            }
        }
        printf("  S=256 f16 vs f32 scores: worst relative error %.3f%%, %d of %d frames away "
               "from T judged alike\n", 100 * worst, judged, N);
        CHECK(worst <= 0.02, "f16 score off by %.2f%%", 100 * worst);
        CHECK(judged > 0, "every score within 2%% of T: no verdict was compared");
    }
    free(px);
    maa_model_free(m);
}

/* MAA_CUDA_FUSED (docs/cuda-backend.md, "Fused graphs"): the f16 engine
 * plans its layers as fused cuDNN graphs for batch sizes 1, 2, 4, ... and
 * max_batch, and runs a batch at the next of these (frames_vs_host's 3 at 4).
 * "force" makes every planned layer run its plan, where the plain setting
 * would keep the legacy calls wherever they are faster: so the f16 tests
 * below check the plans' numbers, not only the padding.  The layers with
 * channel counts that suit the tensor cores (24 of 29 at the default
 * widths; tests/test_cudnn_plan.c checks the same without a GPU) must be
 * planned and in use. */
static void with_plans(void (*fn)(void))
{
    /* scripts/gpu-check.sh sets this, and fails its run, when its smoke
     * check of the fused graphs failed: then these would only time out. */
    const char *skip = getenv("MAA_TEST_FUSED_SKIP");
    if (skip && *skip)
        SKIP("%s", skip);
    setenv("MAA_CUDA_FUSED", "force", 1);
    fn();
    unsetenv("MAA_CUDA_FUSED");
}

static void planned_layers(void)
{
    if (!have_device)
        SKIP("%s", why);
    maa_model *m = load(&full, "fused.safetensors");
    if (!m)
        return;
    maa_engine_opts opts = {.backend = MAA_BACKEND_CUDA, .precision = MAA_PREC_F16,
                            .max_batch = 4};
    maa_engine *e = NULL;
    char err[MAA_ERRLEN], how[320] = "";
    CHECK(maa_engine_create(m, &opts, &e, err, sizeof err) == MAA_OK, "%s", err);
    int planned = -1, used = -1;
    if (e) {
        maa_engine_describe(e, how, sizeof how);
        sscanf(how, "fused cuDNN graphs (MAA_CUDA_FUSED=force) for %d of %*d layers at batch %*d, "
               "%d in use", &planned, &used);
        printf("  %s\n", how);
    }
    CHECK(planned >= 24 && used == planned, "%s", how);
    maa_engine_free(e);
    maa_model_free(m);
}

static void test_fused_planned(void) { with_plans(planned_layers); }
static void test_fused_default_vs_ref(void) { with_plans(test_default_vs_ref); }
static void test_fused_batch_equals_singles(void) { with_plans(test_batch_equals_singles); }
static void test_fused_frames_on_device(void) { with_plans(test_frames_on_device); }
static void test_fused_f16_verdicts(void) { with_plans(test_f16_verdicts); }

/* --quick: the small-model tests only, for compute-sanitizer's slow runs. */
int main(int argc, char **argv)
{
    const int quick = argc > 1 && !strcmp(argv[1], "--quick");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    have_device = maa_backend_available(MAA_BACKEND_CUDA, why, sizeof why) == MAA_OK;
    RUN(test_unavailable_is_refused);
    RUN(test_refuses_oversized_batch);
    RUN(test_batch_equals_singles);
    if (!quick)
        RUN(test_no_memory_growth);
    RUN(test_small_vs_ref);
    RUN(test_frames_host_fallback);
    RUN(test_frames_on_device);
    if (!quick) {
        RUN(test_default_vs_ref);
        RUN(test_f16_verdicts);
        RUN(test_fused_planned);
        RUN(test_fused_default_vs_ref);
        RUN(test_fused_batch_equals_singles);
        RUN(test_fused_frames_on_device);
        RUN(test_fused_f16_verdicts);
    }
    const char *names[] = {"refused", "small", "default", "batch", "refuse", "leak", "frames",
                           "verdicts", "fused"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char p[256];
        snprintf(p, sizeof p, "%s/%s.safetensors", tmpdir, names[i]);
        unlink(p);
    }
    rmdir(tmpdir);
    return CHECK_SUMMARY();
}
