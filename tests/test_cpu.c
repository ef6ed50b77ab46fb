/* test_cpu.c — the oneDNN backend against the reference backend (the oracle)
 * on small networks, batching, the engine's batch bound, refused options,
 * and bf16 where the CPU has it. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "engine/backend.h"
#include "tests/check.h"
#include "tests/testmodel.h"

static char tmpdir[] = "/tmp/maa-test-cpu-XXXXXX";

typedef struct {
    maa_model *m;
    const maa_model_info *in;
    size_t img, mk;
} fixture;

static int open_model(const char *name, const maa_model_info *info, fixture *f)
{
    char p[256], err[MAA_ERRLEN];
    snprintf(p, sizeof p, "%s/%s", tmpdir, name);
    spoil none = {0};
    CHECK(write_model(p, info, &none) == 0, "cannot write %s", p);
    if (maa_model_load(p, &f->m, err, sizeof err)) {
        CHECK(0, "%s", err);
        return -1;
    }
    f->in = maa_model_get_info(f->m);
    f->img = (size_t)f->in->channels * f->in->image_size * f->in->image_size;
    f->mk = (size_t)f->in->markov_size * f->in->markov_size;
    return 0;
}

static void fill(float *x, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = (float)(seed >> 8) / 8388608.0f - 1.0f;
    }
}

static maa_engine *engine(const fixture *f, maa_backend_kind kind, maa_precision prec, int max_batch)
{
    maa_engine_opts o = {.backend = kind, .precision = prec, .max_batch = max_batch};
    maa_engine *e = NULL;
    char err[MAA_ERRLEN];
    if (maa_engine_create(f->m, &o, &e, err, sizeof err))
        CHECK(0, "%s engine: %s", maa_backend_name(kind), err);
    return e;
}

typedef struct {
    float *x, *r, *fx, *fr;
} io;

static int io_alloc(io *b, const fixture *f, int n)
{
    b->x = malloc(n * f->img * sizeof(float));
    b->r = malloc(n * f->img * sizeof(float));
    b->fx = malloc(n * f->mk * sizeof(float));
    b->fr = malloc(n * f->mk * sizeof(float));
    return b->x && b->r && b->fx && b->fr ? 0 : -1;
}

static void io_free(io *b)
{
    free(b->x);
    free(b->r);
    free(b->fx);
    free(b->fr);
}

static int run(maa_engine *e, int n, io *b)
{
    char err[MAA_ERRLEN];
    int rc = maa_engine_run(e, n, b->x, b->r, b->fx, b->fr, err, sizeof err);
    CHECK(rc == MAA_OK, "%s", err);
    return rc;
}

static double maxdiff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= m))
            m = d; /* NaN propagates */
    }
    return m;
}

static double stdev(const float *a, size_t n)
{
    double s = 0, s2 = 0;
    for (size_t i = 0; i < n; i++)
        s += a[i], s2 += (double)a[i] * a[i];
    return sqrt(s2 / n - (s / n) * (s / n));
}

/* cpu vs ref on n random images; tol on every output. */
static void compare(const char *name, const maa_model_info *info, maa_precision prec, int n, double tol)
{
    fixture f;
    if (open_model(name, info, &f))
        return;
    maa_engine *ref = engine(&f, MAA_BACKEND_REF, MAA_PREC_F32, n);
    maa_engine *cpu = engine(&f, MAA_BACKEND_CPU, prec, n);
    io a, b;
    if (ref && cpu && !io_alloc(&a, &f, n) && !io_alloc(&b, &f, n)) {
        fill(a.x, n * f.img, 7);
        memcpy(b.x, a.x, n * f.img * sizeof(float));
        if (!run(ref, n, &a) && !run(cpu, n, &b)) {
            double dr = maxdiff(a.r, b.r, n * f.img), dx = maxdiff(a.fx, b.fx, n * f.mk),
                   df = maxdiff(a.fr, b.fr, n * f.mk);
            printf("  %s: max |cpu - ref| recon %.3g, f(x) %.3g, f(r) %.3g; std recon %.3g f(x) %.3g f(r) %.3g\n",
                   name, dr, dx, df, stdev(a.r, n * f.img), stdev(a.fx, n * f.mk), stdev(a.fr, n * f.mk));
            CHECK(dr <= tol && dx <= tol && df <= tol, "%s: errors %g %g %g over %g", name, dr, dx, df, tol);
            /* The comparison means something only if the signals are not tiny. */
            CHECK(stdev(a.r, n * f.img) > 0.1, "%s: reconstruction nearly constant", name);
            CHECK(stdev(a.fx, n * f.mk) > 0.01 && stdev(a.fr, n * f.mk) > 0.01, "%s: Markov maps nearly constant",
                  name);
        }
        io_free(&a);
        io_free(&b);
    }
    maa_engine_free(ref);
    maa_engine_free(cpu);
    maa_model_free(f.m);
}

static void test_small_rgb(void)
{
    compare("rgb.safetensors", &(maa_model_info){64, 3, 4, 8, 1e-5, 0.1, 5}, MAA_PREC_F32, 2, 1e-4);
}

static void test_small_mono(void)
{
    compare("mono.safetensors", &(maa_model_info){48, 1, 2, 4, 1e-5, 0.1, 3}, MAA_PREC_F32, 1, 1e-4);
}

static void test_wide_generator(void)
{
    compare("wide.safetensors", &(maa_model_info){64, 3, 8, 8, 1e-5, 0.1, 5}, MAA_PREC_F32, 1, 1e-4);
}

/* A batch's outputs equal the images run one at a time. */
static void test_batch_equals_singles(void)
{
    fixture f;
    if (open_model("batch.safetensors", &(maa_model_info){64, 3, 4, 8, 1e-5, 0.1, 5}, &f))
        return;
    maa_engine *cpu = engine(&f, MAA_BACKEND_CPU, MAA_PREC_F32, 3);
    io a, b;
    if (cpu && !io_alloc(&a, &f, 3) && !io_alloc(&b, &f, 1)) {
        fill(a.x, 3 * f.img, 11);
        if (!run(cpu, 3, &a)) {
            double worst = 0;
            for (int i = 0; i < 3; i++) {
                memcpy(b.x, a.x + i * f.img, f.img * sizeof(float));
                if (run(cpu, 1, &b))
                    break;
                worst = fmax(worst, maxdiff(b.r, a.r + i * f.img, f.img));
                worst = fmax(worst, maxdiff(b.fx, a.fx + i * f.mk, f.mk));
                worst = fmax(worst, maxdiff(b.fr, a.fr + i * f.mk, f.mk));
            }
            printf("  batch of 3 vs 3 singles: max difference %.3g\n", worst);
            CHECK(worst <= 1e-6, "batch differs from singles by %g", worst);
        }
        io_free(&a);
        io_free(&b);
    }
    maa_engine_free(cpu);
    maa_model_free(f.m);
}

static void test_max_batch_and_options(void)
{
    fixture f;
    if (open_model("opts.safetensors", &(maa_model_info){48, 1, 2, 4, 1e-5, 0.1, 3}, &f))
        return;
    maa_engine *cpu = engine(&f, MAA_BACKEND_CPU, MAA_PREC_DEFAULT, 2);
    io a;
    if (cpu && !io_alloc(&a, &f, 3)) {
        fill(a.x, 3 * f.img, 3);
        char err[MAA_ERRLEN] = "";
        CHECK(maa_engine_run(cpu, 3, a.x, a.r, a.fx, a.fr, err, sizeof err) == MAA_ERR &&
                  strstr(err, "1..2"), "batch 3 on a max_batch 2 engine: \"%s\"", err);
        CHECK(maa_engine_precision(cpu) == MAA_PREC_F32);
        run(cpu, 2, &a);
        io_free(&a);
    }
    maa_engine_free(cpu);

    char err[MAA_ERRLEN] = "";
    maa_engine *e = NULL;
    maa_engine_opts o = {.backend = MAA_BACKEND_CPU, .max_batch = 1, .threads = -2};
    CHECK(maa_engine_create(f.m, &o, &e, err, sizeof err) == MAA_ERR && e == NULL &&
              strstr(err, "thread count -2"), "\"%s\"", err);
    o.threads = 1;
    o.precision = MAA_PREC_F16;
    CHECK(maa_engine_create(f.m, &o, &e, err, sizeof err) == MAA_ERR && strstr(err, "f16"), "\"%s\"", err);
    o.precision = MAA_PREC_F32;
    CHECK(maa_engine_create(f.m, &o, &e, err, sizeof err) == MAA_OK, "one thread: %s", err);
    maa_engine_free(e);
    maa_model_free(f.m);
}

/* bf16 on a CPU oneDNN is told lacks it must be refused with a reason.  The
 * CPU ISA limit is read once per process, so a child process checks it. */
static void test_bf16_refused_without_isa(void)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        setenv("DNNL_MAX_CPU_ISA", "AVX2", 1);
        fixture f;
        if (open_model("isa.safetensors", &(maa_model_info){48, 1, 2, 4, 1e-5, 0.1, 3}, &f))
            _exit(2);
        maa_engine_opts o = {.backend = MAA_BACKEND_CPU, .precision = MAA_PREC_BF16, .max_batch = 1};
        maa_engine *e = NULL;
        char err[MAA_ERRLEN] = "";
        int rc = maa_engine_create(f.m, &o, &e, err, sizeof err);
        _exit(rc == MAA_ERR && strstr(err, "AVX512_BF16") ? 0 : 1);
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "bf16 with DNNL_MAX_CPU_ISA=AVX2 was not refused with a reason (status %d)", status);
}

static void test_bf16_close_to_ref(void)
{
    fixture f;
    if (open_model("bf16.safetensors", &(maa_model_info){64, 3, 4, 8, 1e-5, 0.1, 5}, &f))
        return;
    maa_engine_opts o = {.backend = MAA_BACKEND_CPU, .precision = MAA_PREC_BF16, .max_batch = 1};
    maa_engine *e = NULL;
    char err[MAA_ERRLEN] = "";
    if (maa_engine_create(f.m, &o, &e, err, sizeof err)) {
        maa_model_free(f.m);
        CHECK(strstr(err, "AVX512_BF16"), "bf16 refused without the reason: %s", err);
        SKIP("%s", err);
    }
    maa_engine_free(e);
    maa_model_free(f.m);
    /* bf16 keeps 8 mantissa bits: a few per cent of the signal. */
    compare("bf16.safetensors", &(maa_model_info){64, 3, 4, 8, 1e-5, 0.1, 5}, MAA_PREC_BF16, 1, 0.05);
}

/* The paper's size once, when ref finishes in reasonable time. */
static void test_default_size(void)
{
    /* About 22 s of CPU, nearly all in ref. */
    if (getenv("MAA_TEST_QUICK"))
        SKIP("MAA_TEST_QUICK set: no comparison at S=256");
    compare("default.safetensors", &(maa_model_info){256, 3, 16, 64, 1e-5, 0.1, 29}, MAA_PREC_F32, 1, 1e-4);
}

int main(void)
{
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    /* First, before this process has touched oneDNN. */
    RUN(test_bf16_refused_without_isa);
    RUN(test_small_rgb);
    RUN(test_small_mono);
    RUN(test_wide_generator);
    RUN(test_batch_equals_singles);
    RUN(test_max_batch_and_options);
    RUN(test_bf16_close_to_ref);
    RUN(test_default_size);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    return CHECK_SUMMARY();
}
