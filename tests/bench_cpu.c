/* bench_cpu.c — times maa_engine_run of one backend for scripts/bench-cpu.
 *
 *   bench_cpu MODEL INPUT.f32 BATCH ITERS WARMUP THREADS [BACKEND [PRECISION]]
 *
 * INPUT.f32 holds at least BATCH images (C x S x S float32, [-1, 1]).  Prints
 * one JSON object: the per-run times in ms, the engine's create time, and
 * the process's peak RSS. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

#include "engine/engine.h"
#include "tests/bench.h"

int main(int argc, char **argv)
{
    if (argc < 7) {
        fprintf(stderr, "usage: bench_cpu MODEL INPUT.f32 BATCH ITERS WARMUP THREADS [BACKEND [PRECISION]]\n");
        return 2;
    }
    int n = atoi(argv[3]), iters = atoi(argv[4]), warm = atoi(argv[5]);
    maa_engine_opts o = {.backend = MAA_BACKEND_CPU, .max_batch = n, .threads = atoi(argv[6])};
    if ((argc > 7 && maa_backend_parse(argv[7], &o.backend)) ||
        (argc > 8 && maa_precision_parse(argv[8], &o.precision))) {
        fprintf(stderr, "bench_cpu: unknown backend or precision\n");
        return 2;
    }
    char err[MAA_ERRLEN];
    maa_model *m;
    if (maa_model_load(argv[1], &m, err, sizeof err)) {
        fprintf(stderr, "bench_cpu: %s\n", err);
        return 1;
    }
    const maa_model_info *in = maa_model_get_info(m);
    size_t img = (size_t)in->channels * in->image_size * in->image_size,
           mk = (size_t)in->markov_size * in->markov_size;
    float *x = malloc(n * img * sizeof(float)), *r = malloc(n * img * sizeof(float)),
          *fx = malloc(n * mk * sizeof(float)), *fr = malloc(n * mk * sizeof(float));
    FILE *f = fopen(argv[2], "rb");
    if (!x || !r || !fx || !fr || !f || fread(x, sizeof(float), n * img, f) != n * img) {
        fprintf(stderr, "bench_cpu: cannot read %d images from %s\n", n, argv[2]);
        return 1;
    }
    fclose(f);
    double t0 = bench_now() * 1e3;
    maa_engine *e;
    if (maa_engine_create(m, &o, &e, err, sizeof err)) {
        fprintf(stderr, "bench_cpu: %s\n", err);
        return 1;
    }
    double create_ms = bench_now() * 1e3 - t0;
    printf("{\"backend\": \"%s\", \"precision\": \"%s\", \"batch\": %d, \"threads\": %d, "
           "\"create_ms\": %.1f, \"run_ms\": [",
           maa_backend_name(maa_engine_backend(e)), maa_precision_name(maa_engine_precision(e)), n,
           o.threads, create_ms);
    for (int i = 0; i < warm + iters; i++) {
        t0 = bench_now() * 1e3;
        if (maa_engine_run(e, n, x, r, fx, fr, err, sizeof err)) {
            fprintf(stderr, "bench_cpu: %s\n", err);
            return 1;
        }
        double dt = bench_now() * 1e3 - t0;
        if (i >= warm)
            printf("%s%.2f", i > warm ? ", " : "", dt);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    /* A checksum ties the timed outputs to the inputs. */
    double sum = 0;
    for (size_t i = 0; i < n * mk; i++)
        sum += fx[i] + fr[i];
    printf("], \"maxrss_kib\": %ld, \"markov_sum\": %.6g}\n", ru.ru_maxrss, sum);
    maa_engine_free(e);
    maa_model_free(m);
    free(x);
    free(r);
    free(fx);
    free(fr);
    return 0;
}
