/* bench_cuda.c — times maad's whole inspection pipeline per batch, as the
 * daemon's worker runs it: 8-bit frames on the host -> maa_preprocess ->
 * maa_inspect (engine run, FMD score, verdict, mask and regions) -> results
 * on the host.  scripts/gpu-check.sh runs it next to the PyTorch benchmark
 * (scripts/bench_torch.py) on the same model file and frames.  Not a test:
 * tests/run.sh runs only test_* programs.
 *
 *   bench_cuda MODEL FRAMES BACKEND PRECISION BATCH SECONDS
 *       FRAMES: raw file of S*S*C-byte frames (interleaved, rows of S)
 *   bench_cuda --write-model PATH SIZE
 *       writes a model with the default widths and the deterministic test
 *       weights of tests/testmodel.h
 *
 * Prints one line:
 *   RESULT maad-<precision> batch <n>: <ms> ms/batch <fps> frames/s score <mean> */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/engine.h"
#include "tests/testmodel.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
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
    if (argc != 7) {
        fprintf(stderr, "usage: bench_cuda MODEL FRAMES BACKEND PRECISION BATCH SECONDS\n"
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
    const size_t frame = (size_t)S * S * C, img = frame;
    FILE *f = fopen(argv[2], "rb");
    if (!f) {
        perror(argv[2]);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long nframes = ftell(f) / (long)frame;
    rewind(f);
    if (nframes < 1) {
        fprintf(stderr, "bench_cuda: %s holds no %dx%dx%d frame\n", argv[2], S, S, C);
        return 1;
    }
    uint8_t *frames = malloc(nframes * frame);
    if (fread(frames, frame, nframes, f) != (size_t)nframes) {
        fprintf(stderr, "bench_cuda: short read on %s\n", argv[2]);
        return 1;
    }
    fclose(f);

    maa_inspector *in;
    if (maa_inspector_create(m, &opts, &in, err, sizeof err)) {
        fprintf(stderr, "bench_cuda: %s\n", err);
        return 1;
    }
    /* A plausible calibration: the verdicts and masks are computed as in
     * production; their values do not matter here. */
    maa_calibration cal = {.threshold = 1.0, .pixel_threshold = 1e-3, .mask_window = 7,
                           .min_region_area = 10};
    float *x = malloc(n * img * sizeof(float));
    maa_result *res = malloc(n * sizeof *res);
    long next = 0, batches = 0, rejects = 0;
    double t0 = 0, score = 0;
    for (int warm = 3;; warm--) {
        if (warm == 0)
            t0 = now();
        for (int i = 0; i < n; i++, next = (next + 1) % nframes) {
            maa_image im = {S, S, C, 8, frames + next * frame};
            if (maa_preprocess(&im, S, C, x + i * img, err, sizeof err)) {
                fprintf(stderr, "bench_cuda: %s\n", err);
                return 1;
            }
        }
        if (maa_inspect(in, &cal, n, x, res, err, sizeof err)) {
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
        if (batches >= 5 && now() - t0 >= seconds)
            break;
    }
    double ms = (now() - t0) * 1e3 / batches;
    printf("RESULT maad-%s batch %d: %.3f ms/batch %.1f frames/s score %.6g (%ld batches, "
           "%ld rejects)\n", maa_precision_name(maa_engine_precision(maa_inspector_engine(in))),
           n, ms, n * 1e3 / ms, score / (batches * n), batches, rejects);
    free(x);
    free(res);
    free(frames);
    maa_inspector_free(in);
    maa_model_free(m);
    return 0;
}
