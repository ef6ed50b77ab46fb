/* bench_cuda.c — times maad's whole inspection pipeline per batch, as the
 * daemon's worker runs it: 8-bit frames on the host -> maa_inspect_frames
 * (preprocessing, engine, mask on the device where the backend can; FMD
 * score, verdict and regions on the host) -> results on the host.
 * scripts/gpu-check.sh runs it next to the PyTorch benchmark
 * (scripts/bench_torch.py) on the same model file and frames.  Not a test:
 * tests/run.sh runs only test_* programs.
 *
 *   bench_cuda MODEL FRAMES BACKEND PRECISION BATCH SECONDS [WxH [device|host]]
 *       FRAMES: raw file of W*H*C-byte frames (interleaved rows; W = H = S
 *       unless given).  Frames larger than the model are shrunk on the
 *       device (maa_engine_opts.frame_bytes), or with "host" by
 *       maa_preprocess on the host, as an engine without frame_bytes does.
 *   bench_cuda --write-model PATH SIZE
 *       writes a model with the default widths and the deterministic test
 *       weights of tests/testmodel.h
 *
 * Prints three lines:
 *   RESULT maad-<precision>[-fused][-WxH-<device|host>] batch <n>: <ms> ms/batch
 *       <fps> frames/s score <mean> ... (-fused: MAA_CUDA_FUSED is set; ENGINE
 *       says what the engine made of it)
 *   STAGES ...: the engine alone (timed again afterwards on the same inputs),
 *       the device memory the inspector took (cuda only), its create time
 *   ENGINE ...: what maa_engine_describe says.
 * The frames
 * are taken for good parts: a calibration over them (gamma 3, mask fraction
 * 1%) gives the threshold and T_pix, as maa calibrate would. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/backend.h"
#include "tests/bench.h"
#include "tests/testmodel.h"
#ifdef MAA_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

/* Device memory in use, in bytes (0 without CUDA or a device). */
static size_t device_used(void)
{
#ifdef MAA_HAVE_CUDA
    size_t free_b, total;
    if (cudaMemGetInfo(&free_b, &total) == cudaSuccess)
        return total - free_b;
#endif
    return 0;
}

static int write_default(const char *path, int size)
{
    maa_model_info info = {size, 3, 16, 64, 1e-5, 0.1, size / 8 - 3};
    spoil sp = {0};
    if (size < 32 || size % 8 || write_model(path, &info, &sp)) {
        fprintf(stderr, "bench_cuda: cannot write a model of size %d to %s\n", size, path);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "--write-model"))
        return write_default(argv[2], atoi(argv[3]));
    if (argc < 7 || argc > 9) {
        fprintf(stderr, "usage: bench_cuda MODEL FRAMES BACKEND PRECISION BATCH SECONDS "
                        "[WxH [device|host]]\n"
                        "       bench_cuda --write-model PATH SIZE\n");
        return 2;
    }
    char err[MAA_ERRLEN];
    maa_model *m;
    maa_engine_opts opts = {.max_batch = atoi(argv[5])};
    double seconds = atof(argv[6]);
    if (maa_backend_parse(argv[3], &opts.backend) || maa_precision_parse(argv[4], &opts.precision) ||
        opts.max_batch < 1) {
        fprintf(stderr, "bench_cuda: bad backend, precision or batch\n");
        return 2;
    }
    if (maa_model_load(argv[1], &m, err, sizeof err)) {
        fprintf(stderr, "bench_cuda: %s\n", err);
        return 1;
    }
    const maa_model_info *info = maa_model_get_info(m);
    const int S = info->image_size, C = info->channels, n = opts.max_batch;
    int W = S, H = S;
    const char *where = argc == 9 ? argv[8] : "device";
    if ((argc >= 8 && (sscanf(argv[7], "%dx%d", &W, &H) != 2 || W < S || H < S)) ||
        (strcmp(where, "device") && strcmp(where, "host"))) {
        fprintf(stderr, "bench_cuda: frames WxH of at least %dx%d, placed device or host\n", S,
                S);
        return 2;
    }
    const size_t frame = (size_t)W * H * C, img = (size_t)S * S * C;
    if (!strcmp(where, "device"))
        opts.frame_bytes = frame;
    FILE *f = fopen(argv[2], "rb");
    if (!f) {
        perror(argv[2]);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long nframes = ftell(f) / (long)frame;
    rewind(f);
    if (nframes < 1) {
        fprintf(stderr, "bench_cuda: %s holds no %dx%dx%d frame\n", argv[2], W, H, C);
        return 1;
    }
    uint8_t *frames = malloc(nframes * frame);
    if (fread(frames, frame, nframes, f) != (size_t)nframes) {
        fprintf(stderr, "bench_cuda: short read on %s\n", argv[2]);
        return 1;
    }
    fclose(f);

    maa_inspector *in;
    const size_t used0 = device_used();
    const double tc = bench_now();
    if (maa_inspector_create(m, &opts, &in, err, sizeof err)) {
        fprintf(stderr, "bench_cuda: %s\n", err);
        return 1;
    }
    const double create_s = bench_now() - tc;
    const size_t used1 = device_used();
    char how[320], label[64], geometry[32] = "";
    maa_engine_describe(maa_inspector_engine(in), how, sizeof how);
    /* Labelled by what was asked, so that a run whose graphs were dropped
     * does not pass for the plain f16 row (its ENGINE line says why). */
    const char *fz = getenv("MAA_CUDA_FUSED");
    if (W != S || H != S)
        snprintf(geometry, sizeof geometry, "-%dx%d-%s", W, H, where);
    snprintf(label, sizeof label, "maad-%s%s%s",
             maa_precision_name(maa_engine_precision(maa_inspector_engine(in))),
             fz && *fz && strcmp(fz, "0") ? "-fused" : "", geometry);
    /* The calibration a line would have: maa calibrate's statistics over
     * the frames (all of them good parts), so that, as on a line, most
     * frames show no mask pixel and need no region labelling. */
    maa_image *ims = malloc(nframes * sizeof *ims);
    maa_result *res = malloc((n > nframes ? n : nframes) * sizeof *res);
    double *scores = malloc(nframes * sizeof *scores), *peaks = malloc(nframes * sizeof *peaks);
    for (long i = 0; i < nframes; i++)
        ims[i] = (maa_image){W, H, C, 8, frames + i * frame};
    for (long i = 0; i < nframes; i += n) {
        int k = nframes - i < n ? (int)(nframes - i) : n;
        if (maa_inspect_frames(in, NULL, k, ims + i, res, err, sizeof err)) {
            fprintf(stderr, "bench_cuda: %s\n", err);
            return 1;
        }
        for (int j = 0; j < k; j++) {
            scores[i + j] = res[j].score;
            peaks[i + j] = res[j].mask_peak;
        }
    }
    maa_calibration cal;
    if (nframes < 20 || maa_calibration_fit(scores, (int)nframes, 3.0, &cal, err, sizeof err)) {
        fprintf(stderr, "bench_cuda: calibration: %s\n", nframes < 20 ? "need 20 frames" : err);
        return 1;
    }
    cal.pixel_threshold = maa_pixel_threshold(peaks, (int)nframes, 0.01);
    cal.mask_fraction = 0.01;
    cal.mask_window = 7;
    cal.min_region_area = 10;
    maa_image *batch = malloc(n * sizeof *batch);
    long next = 0, batches = 0, rejects = 0;
    double t0 = 0, score = 0;
    for (int warm = 3;; warm--) {
        if (warm == 0)
            t0 = bench_now();
        for (int i = 0; i < n; i++, next = (next + 1) % nframes)
            batch[i] = ims[next];
        if (maa_inspect_frames(in, &cal, n, batch, res, err, sizeof err)) {
            fprintf(stderr, "bench_cuda: %s\n", err);
            return 1;
        }
        if (warm > 0)
            continue;
        batches++;
        for (int i = 0; i < n; i++) {
            score += res[i].score;
            rejects += res[i].verdict == MAA_REJECT;
        }
        if (batches >= 5 && bench_now() - t0 >= seconds)
            break;
    }
    double ms = (bench_now() - t0) * 1e3 / batches;
    printf("RESULT %s batch %d: %.3f ms/batch %.1f frames/s score %.6g (%ld batches, "
           "%ld rejects)\n", label, n, ms, n * 1e3 / ms, score / (batches * n), batches, rejects);
    /* The engine alone (float path: preprocessed images in, reconstruction
     * and maps out), as many batches again. */
    float *x = malloc(n * img * sizeof(float)), *recon = malloc(n * img * sizeof(float));
    const size_t mm = (size_t)info->markov_size * info->markov_size;
    float *fx = malloc(n * mm * sizeof(float)), *fr = malloc(n * mm * sizeof(float));
    for (int i = 0; i < n; i++)
        if (maa_preprocess(&batch[i], S, C, x + i * img, err, sizeof err)) {
            fprintf(stderr, "bench_cuda: %s\n", err);
            return 1;
        }
    maa_engine *e = maa_inspector_engine(in);
    double te = bench_now();
    for (long b = 0; b < batches; b++)
        if (maa_engine_run(e, n, x, recon, fx, fr, err, sizeof err)) {
            fprintf(stderr, "bench_cuda: %s\n", err);
            return 1;
        }
    te = bench_now() - te;
    /* The device part of the frame path alone: frames in, maps and masks out,
     * no FMD or region labelling on the host. */
    double td = -1;
    if (maa_inspector_takes_frame(in, &batch[0])) {
        const uint8_t **ptr = malloc(n * sizeof *ptr);
        float *peak = malloc(n * sizeof *peak);
        uint8_t *mask = malloc((size_t)n * S * S);
        for (int i = 0; i < n; i++)
            ptr[i] = batch[i].data;
        maa_device_batch db = {.n = n, .width = W, .height = H, .channels = C, .frames = ptr,
                               .window = 7, .t_pix = cal.pixel_threshold, .fx = fx, .fr = fr,
                               .peak = peak, .mask = mask};
        td = bench_now();
        for (long b = 0; b < batches; b++)
            if (maa_engine_inspect(e, &db, err, sizeof err)) {
                fprintf(stderr, "bench_cuda: %s\n", err);
                return 1;
            }
        td = (bench_now() - td) * 1e3 / batches;
        free(ptr);
        free(peak);
        free(mask);
    }
    printf("STAGES %s batch %d: device part alone %.3f, engine alone (float path, recon "
           "to host) %.3f ms/batch, device memory %.1f MiB, create %.1f s\n", label, n, td,
           te * 1e3 / batches, (double)(used1 - used0) / 1048576.0, create_s);
    printf("ENGINE %s batch %d: %s\n", label, n, how);
    free(x);
    free(recon);
    free(fx);
    free(fr);
    free(res);
    free(batch);
    free(ims);
    free(scores);
    free(peaks);
    free(frames);
    maa_inspector_free(in);
    maa_model_free(m);
    return 0;
}
