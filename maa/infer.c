/* infer.c — `maa infer` and `maa model-info`. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "daemon/daemon.h"
#include "maa/maa.h"

static const char infer_usage[] =
    "usage: maa infer --model M [--calibration C [--rule R]] [--masks DIR] [engine options]\n"
    "       IMAGE...\n"
    "Prints one JSON object per image and line: image, score and mask_peak, and with a\n"
    "calibration the verdict with its rule, reason and evidence, threshold,\n"
    "mask_threshold and defects (as the daemon's verdicts name them).  Unreadable\n"
    "images are reported on stderr, the others are still judged, and the exit status\n"
    "is then 1.\n\n" MAA_CLI_ENGINE_HELP
    "  --rule R           which evidence rejects: either (default), score, mask\n"
    "  --masks DIR        write DIR/<image name>_mask.png (S x S, 0/255)\n";

static void print_result(const char *image, const maa_result *r, const maa_calibration *cal)
{
    json_t *o = json_object();
    json_object_set_new(o, "image", json_string(image));
    json_object_set_new(o, "score", json_real(r->score));
    json_object_set_new(o, "mask_peak", json_real(r->mask_peak));
    if (cal) {
        json_object_set_new(o, "verdict", json_string(r->verdict == MAA_REJECT ? "reject" : "pass"));
        json_object_set_new(o, "rule", json_string(maa_rule_name(cal->rule)));
        json_object_set_new(o, "reason", json_string(maa_reason(r, cal->rule)));
        json_object_set_new(o, "evidence", maad_evidence_json(r->evidence));
        json_object_set_new(o, "threshold", json_real(cal->threshold));
        json_object_set_new(o, "mask_threshold", json_real(cal->pixel_threshold));
        json_t *regions = json_array();
        for (int k = 0; k < r->nregions; k++) {
            const maa_region *g = &r->regions[k];
            json_array_append_new(regions, json_pack("{s:i,s:i,s:i,s:i,s:i}", "x", g->x, "y", g->y,
                                                     "w", g->w, "h", g->h, "area", g->area));
        }
        json_object_set_new(o, "defects", regions);
        json_object_set_new(o, "defects_total", json_integer(r->regions_total));
    }
    char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(17));
    puts(s);
    free(s);
    json_decref(o);
}

/* The name of an image without directory and extension. */
static void stem(const char *image, char *out, size_t len)
{
    char *copy = strdup(image);
    if (!copy) {
        snprintf(out, len, "%s", image);
        return;
    }
    char *base = basename(copy), *dot = strrchr(base, '.');
    if (dot)
        *dot = 0;
    snprintf(out, len, "%s", base);
    free(copy);
}

/* Masks are named after the image's stem; two images with one stem would
 * overwrite each other's mask, so such a run is refused before it starts. */
static int stems_unique(char **images, int n)
{
    char a[1024], b[1024];
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            stem(images[i], a, sizeof a);
            stem(images[j], b, sizeof b);
            if (!strcmp(a, b)) {
                fprintf(stderr, "maa infer: %s and %s would both write %s_mask.png; "
                                "rename one or run them separately\n", images[i], images[j], a);
                return 0;
            }
        }
    return 1;
}

static int write_mask(const char *dir, const char *image, const uint8_t *mask, int s)
{
    char path[4096], name[1024], err[MAA_ERRLEN];
    stem(image, name, sizeof name);
    snprintf(path, sizeof path, "%s/%s_mask.png", dir, name);
    if (maa_png_write(path, mask, s, s, 1, err, sizeof err)) {
        fprintf(stderr, "maa: %s\n", err);
        return MAA_ERR;
    }
    return MAA_OK;
}

int maa_cmd_infer(int argc, char **argv)
{
    static const struct option opts[] = {MAA_CLI_ENGINE_OPTIONS, {"masks", 1, 0, 'k'},
                                         {"rule", 1, 0, 'r'}, {"help", 0, 0, 'h'},
                                         {0, 0, 0, 0}};
    maa_cli_engine ce;
    maa_cli_engine_init(&ce);
    const char *masks = NULL;
    maa_rule rule = MAA_RULE_EITHER;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int r = maa_cli_engine_option(&ce, c, optarg);
        if (r < 0)
            return 2;
        if (r)
            continue;
        if (c == 'k')
            masks = optarg;
        else if (c == 'r') {
            if (maa_rule_parse(optarg, &rule)) {
                fprintf(stderr, "maa infer: --rule \"%s\": need either, score or mask\n", optarg);
                return 2;
            }
        } else if (c == 'h') {
            fputs(infer_usage, stdout);
            return 0;
        } else {
            fputs(infer_usage, stderr);
            return 2;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "maa infer: no images given\n%s", infer_usage);
        return 2;
    }
    if (masks && !stems_unique(argv + optind, argc - optind))
        return 2;
    if (masks && mkdir(masks, 0777) && errno != EEXIST) {
        fprintf(stderr, "maa: --masks %s: %s\n", masks, strerror(errno));
        return 2;
    }
    maa_model *m;
    maa_calibration cal;
    int have_cal;
    if (maa_cli_load(&ce, &m, &cal, &have_cal))
        return 2;
    cal.rule = rule;
    char err[MAA_ERRLEN];
    maa_inspector *in;
    if (maa_inspector_create(m, &ce.engine, &in, err, sizeof err)) {
        fprintf(stderr, "maa: %s\n", err);
        maa_model_free(m);
        return 2;
    }
    const maa_model_info *info = maa_model_get_info(m);
    const int B = ce.engine.max_batch, S = info->image_size;
    const size_t img = (size_t)info->channels * S * S;
    float *x = malloc((size_t)B * img * sizeof *x);
    const char **names = calloc((size_t)B, sizeof *names);
    maa_result *res = malloc((size_t)B * sizeof *res);
    int status = 0, total = argc - optind, done = 0;
    if (!x || !names || !res) {
        fprintf(stderr, "maa: out of memory\n");
        status = 2;
        goto out;
    }
    for (int i = optind; i < argc;) {
        int n = 0;
        /* Fill a batch with the next readable images. */
        for (; i < argc && n < B; i++) {
            if (maa_cli_read_input(argv[i], info, x + n * img, err, sizeof err)) {
                fprintf(stderr, "maa: %s\n", err);
                status = 1;
                done++;
                continue;
            }
            names[n++] = argv[i];
        }
        if (n == 0)
            break;
        if (maa_inspect(in, have_cal ? &cal : NULL, n, x, res, err, sizeof err)) {
            fprintf(stderr, "maa: %s\n", err);
            status = 2;
            break;
        }
        for (int k = 0; k < n; k++) {
            print_result(names[k], &res[k], have_cal ? &cal : NULL);
            if (masks && write_mask(masks, names[k], maa_inspector_mask(in, k), S))
                status = 1;
        }
        fflush(stdout);
        done += n;
        maa_cli_progress("maa infer:", done, total);
    }
out:
    free(x);
    free(names);
    free(res);
    maa_inspector_free(in);
    maa_model_free(m);
    return status;
}

int maa_cmd_model_info(int argc, char **argv)
{
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(argc == 2 ? stdout : stderr, "usage: maa model-info MODEL\n");
        return argc == 2 && !strcmp(argv[1], "--help") ? 0 : 2;
    }
    maa_model *m;
    char err[MAA_ERRLEN];
    if (maa_model_load(argv[1], &m, err, sizeof err)) {
        fprintf(stderr, "maa: %s\n", err);
        return 1;
    }
    const maa_model_info *in = maa_model_get_info(m);
    printf("model:       %s\n", argv[1]);
    printf("sha256:      %s\n", maa_model_sha256(m));
    printf("dtype:       %s\n", maa_model_dtype(m));
    printf("tensors:     %zu\n", maa_model_tensor_count(m));
    printf("parameters:  %zu\n", maa_model_param_count(m));
    printf("input:       %d x %d x %d (C x S x S)\n", in->channels, in->image_size, in->image_size);
    printf("markov map:  %d x %d\n", in->markov_size, in->markov_size);
    printf("metadata:\n");
    for (size_t i = 0; i < maa_model_meta_count(m); i++)
        printf("  %-12s %s\n", maa_model_meta_key(m, i), maa_model_meta_value(m, i));
    maa_model_free(m);
    return 0;
}
