/* test_cudnn_plan.c — the cuda backend's fused cuDNN graphs (engine/cudnn_plan.c)
 * checked without a GPU: every layer of the default network (S=256, batch 4)
 * is built as a graph, handed to cuDNN's heuristics for an H200-class device
 * (tests/data/h200-deviceprop.json, sm_90) and planned, which makes cuDNN
 * validate the graph and compile the chosen engine's kernel.  Only loading
 * that kernel needs the device.  cuDNN compiles through the CUDA driver
 * library, so without a driver the test loads the toolkit's stub libcuda
 * (it has the driver's soname; every call of it fails, which cuDNN reports
 * only when it loads the compiled kernel).
 *
 * The layers whose channel counts suit the tensor cores (multiples of 8)
 * must get a plan: these carry the epilogues the legacy API cannot fuse.
 * The others (3-channel input and output, the 1-channel Markov head) may be
 * refused and then run on the legacy path; the test prints which.
 *
 *   test_cudnn_plan [DEVPROP.json]
 *   test_cudnn_plan --dump-device OUT.json   (on a GPU machine: writes the
 *       device's own properties, to check or replace the file above) */
#include <dlfcn.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tests/check.h"
#ifdef MAA_HAVE_CUDA
#include "engine/cudnn_plan.h"

static cudnnBackendDescriptor_t devprop;
static char devprop_why[768];

static void load_devprop(const char *path)
{
    FILE *f = fopen(path, "rb");
    static char json[1 << 16];
    size_t len = f ? fread(json, 1, sizeof json, f) : 0;
    if (f)
        fclose(f);
    if (!len) {
        snprintf(devprop_why, sizeof devprop_why, "cannot read %s", path);
        return;
    }
    cudnnStatus_t s = cudnnBackendCreateDescriptor(CUDNN_BACKEND_DEVICEPROP_DESCRIPTOR, &devprop);
    if (!s)
        s = cudnnBackendSetAttribute(devprop, CUDNN_ATTR_DEVICEPROP_JSON_REPRESENTATION,
                                     CUDNN_TYPE_CHAR, (int64_t)len, json);
    if (!s)
        s = cudnnBackendFinalize(devprop);
    if (s) {
        snprintf(devprop_why, sizeof devprop_why, "device properties %s: %s", path,
                 cudnnGetErrorString(s));
        devprop = NULL;
    }
}

/* The driver library, else the toolkit's stub, loaded before cuDNN looks
 * for it by its soname. */
static int load_libcuda(void)
{
    if (dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL))
        return 1;
    char stub[512];
    snprintf(stub, sizeof stub, "%s/lib64/stubs/libcuda.so", MAA_CUDA_DIR);
    if (dlopen(stub, RTLD_NOW | RTLD_GLOBAL))
        return 1;
    snprintf(devprop_why, sizeof devprop_why, "no libcuda.so.1 and no %s: cuDNN cannot compile",
             stub);
    return 0;
}

/* The layers that must fuse: tensor-core friendly channel counts. */
static int must_plan(const maa_plan_layer *l)
{
    return l->cin % 8 == 0 && l->cout % 8 == 0;
}

static void test_default_network(void)
{
    if (!devprop)
        SKIP("%s", devprop_why);
    const maa_model_info info = {256, 3, 16, 64, 1e-5, 0.1, 29};
    maa_plan_layer layers[MAA_NET_LAYERS];
    maa_conv_desc descs[MAA_NET_LAYERS];
    maa_plan plans[MAA_NET_LAYERS];
    int rc[MAA_NET_LAYERS];
    char why[MAA_NET_LAYERS][MAA_PLAN_WHY];
    maa_plan_network(&info, 4, layers);
    maa_net_describe(&info, descs);
    /* As the backend builds them: in parallel, identical layers sharing. */
    const maa_plan_target t = {.devprop = devprop, .check_only = 1, .ws_limit = (size_t)64 << 20,
                               .device = -1};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    maa_plan_build_all(layers, MAA_NET_LAYERS, &t, plans, rc, why);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    int planned = 0, required = 0, built = 0, kept = 0, usable = 0;
    printf("  layer          configs engine compiled  result\n");
    for (int i = 0; i < MAA_NET_LAYERS; i++) {
        const maa_plan *p = &plans[i];
        if (p->same_as >= 0)
            printf("  %-14s as %s\n", descs[i].name, descs[p->same_as].name);
        else
            printf("  %-14s %7d %6lld %8d  %s\n", descs[i].name, p->configs,
                   rc[i] ? -1LL : (long long)p->engine, rc[i] ? 0 : p->compiled,
                   rc[i] ? why[i] : "planned");
        planned += !rc[i];
        built += !rc[i] && p->same_as < 0;
        /* A plan finalized here (a precompiled engine: nothing to load)
         * outlives the descriptors it was built from, which
         * maa_plan_build released: it must still answer. */
        if (!rc[i] && p->same_as < 0 && p->plan) {
            static char json[1 << 16];
            int64_t len = 0;
            kept++;
            usable += cudnnBackendGetAttribute(p->plan, CUDNN_ATTR_EXECUTION_PLAN_JSON_REPRESENTATION,
                                               CUDNN_TYPE_CHAR, sizeof json, &len, json) ==
                          CUDNN_STATUS_SUCCESS && len > 0;
        }
        if (must_plan(&layers[i])) {
            required++;
            CHECK(rc[i] == MAA_OK, "%s: %s", descs[i].name, why[i]);
        }
    }
    printf("  %d of %d layers planned, %d required; %d plans built in %.1f s on %d threads\n",
           planned, MAA_NET_LAYERS, required, built,
           (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9,
           omp_get_max_threads());
    CHECK(usable == kept, "%d of %d finalized plans answer after their build", usable, kept);
    CHECK(required >= 20, "only %d layers qualify", required);
    /* The residual blocks' convs are built once each. */
    for (int k = 1; k < 6; k++) {
        CHECK(plans[maa_net_res(k)].same_as == maa_net_res(0), "g.res.%d.conv1", k);
        CHECK(plans[maa_net_res(k) + 1].same_as == maa_net_res(0) + 1, "g.res.%d.conv2", k);
    }
    CHECK(plans[MAA_NET_D].same_as < 0 && plans[MAA_NET_DEC].same_as < 0);
    for (int i = 0; i < MAA_NET_LAYERS; i++)
        maa_plan_free(&plans[i]);
}

/* A graph cuDNN must reject: the check is not a formality. */
static void test_refuses_bad_geometry(void)
{
    if (!devprop)
        SKIP("%s", devprop_why);
    /* y's size does not follow from x, the filter and the padding. */
    maa_plan_layer l = {.n = 4, .cin = 64, .hi = 32, .wi = 32, .cout = 64, .ho = 17, .wo = 17,
                        .kh = 3, .kw = 3, .stride = 1, .ph = 1, .pw = 1, .bias = 1,
                        .act = MAA_ACT_RELU};
    const maa_plan_target t = {.devprop = devprop, .check_only = 1, .ws_limit = (size_t)64 << 20,
                               .device = -1};
    maa_plan p;
    char err[512] = "";
    CHECK(maa_plan_build(&l, &t, &p, err, sizeof err) == MAA_ERR);
    CHECK(strlen(err) > 0);
    printf("  refused as expected: %s\n", err);
}

/* The geometry the backend plans with matches engine/net.c's sizes. */
static void test_network_geometry(void)
{
    const maa_model_info info = {256, 3, 16, 64, 1e-5, 0.1, 29};
    maa_plan_layer l[MAA_NET_LAYERS];
    maa_plan_network(&info, 3, l);
    CHECK(l[MAA_NET_ENC].n == 3 && l[MAA_NET_D].n == 6, "batch %d, encoder %d", l[0].n,
          l[MAA_NET_D].n);
    CHECK(l[MAA_NET_MEM].cin == 256 && l[MAA_NET_MEM].cout == 1024 && !l[MAA_NET_MEM].bias);
    CHECK(l[MAA_NET_MEM].hi == 32 && l[MAA_NET_MEM].ho == 32);
    CHECK(l[MAA_NET_DEC].transposed && l[MAA_NET_DEC].hi == 32 && l[MAA_NET_DEC].ho == 64);
    CHECK(l[MAA_NET_DEC + 4].ho == 256 && l[MAA_NET_DEC + 4].act == MAA_ACT_TANH);
    CHECK(l[MAA_NET_D].hi == 256 && l[MAA_NET_D + 5].ho == 29 && l[MAA_NET_D + 5].cout == 1);
    for (int k = 0; k < 6; k++) {
        CHECK(!l[maa_net_res(k)].residual && l[maa_net_res(k)].act == MAA_ACT_RELU);
        CHECK(l[maa_net_res(k) + 1].residual && l[maa_net_res(k) + 1].act == MAA_ACT_NONE);
    }
    CHECK(l[MAA_NET_D + 1].act == MAA_ACT_LRELU && l[MAA_NET_D + 1].slope == 0.1);
}

/* cuDNN's description of device 0, as the JSON the test reads. */
static int dump_device(const char *path)
{
    cudnnHandle_t h = NULL;
    cudnnBackendDescriptor_t d = NULL;
    static char json[1 << 16];
    char err[MAA_ERRLEN] = "";
    int64_t len = 0;
    cudnnStatus_t s = cudnnCreate(&h);
    if (s)
        snprintf(err, sizeof err, "cudnnCreate: %s", cudnnGetErrorString(s));
    else if (maa_plan_device(h, &d, err, sizeof err))
        s = CUDNN_STATUS_NOT_SUPPORTED;
    else if ((s = cudnnBackendGetAttribute(d, CUDNN_ATTR_DEVICEPROP_JSON_REPRESENTATION,
                                           CUDNN_TYPE_CHAR, sizeof json, &len, json)))
        snprintf(err, sizeof err, "device properties as JSON: %s", cudnnGetErrorString(s));
    FILE *f = s ? NULL : fopen(path, "w");
    int ok = f && fwrite(json, 1, strnlen(json, (size_t)len), f) == strnlen(json, (size_t)len);
    if (f && fclose(f))
        ok = 0;
    if (s)
        fprintf(stderr, "test_cudnn_plan: %s\n", err);
    else if (!ok)
        perror(path);
    if (d)
        cudnnBackendDestroyDescriptor(d);
    if (h)
        cudnnDestroy(h);
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc > 2 && !strcmp(argv[1], "--dump-device"))
        return dump_device(argv[2]);
    if (load_libcuda())
        load_devprop(argc > 1 ? argv[1] : "tests/data/h200-deviceprop.json");
    RUN(test_network_geometry);
    RUN(test_default_network);
    RUN(test_refuses_bad_geometry);
    return CHECK_SUMMARY();
}
#else
static void test_no_cuda(void)
{
    SKIP("built without CUDA");
}

int main(void)
{
    RUN(test_no_cuda);
    return CHECK_SUMMARY();
}
#endif
