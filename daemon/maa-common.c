/* maa-common.c — what the maa subcommands share. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "daemon/maa.h"

void maa_cli_engine_init(maa_cli_engine *c)
{
    memset(c, 0, sizeof *c);
    c->engine.backend = MAA_BACKEND_AUTO;
    c->engine.precision = MAA_PREC_DEFAULT;
    c->engine.max_batch = 4;
}

static int parse_count(const char *what, const char *arg, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(arg, &end, 10);
    if (errno || end == arg || *end || v < lo || v > hi) {
        fprintf(stderr, "maa: --%s \"%s\" is not an integer in %d..%d\n", what, arg, lo, hi);
        return -1;
    }
    *out = (int)v;
    return 1;
}

int maa_cli_engine_option(maa_cli_engine *c, int opt, const char *arg)
{
    switch (opt) {
    case 'm': c->model = arg; return 1;
    case 'c': c->calibration = arg; return 1;
    case 'B':
        if (maa_backend_parse(arg, &c->engine.backend)) {
            fprintf(stderr, "maa: --backend \"%s\": expected auto, ref, cpu or cuda\n", arg);
            return -1;
        }
        return 1;
    case 'P':
        if (maa_precision_parse(arg, &c->engine.precision)) {
            fprintf(stderr, "maa: --precision \"%s\": expected default, f32, f16 or bf16\n", arg);
            return -1;
        }
        return 1;
    case 'T': return parse_count("threads", arg, 0, 1024, &c->engine.threads);
    case 'N': return parse_count("batch", arg, 1, 256, &c->engine.max_batch);
    default: return 0;
    }
}

int maa_cli_load(const maa_cli_engine *c, maa_model **m, maa_calibration *cal, int *have_cal)
{
    char err[MAA_ERRLEN];
    *m = NULL;
    if (have_cal)
        *have_cal = 0;
    if (!c->model) {
        fprintf(stderr, "maa: --model is required\n");
        return MAA_ERR;
    }
    if (maa_model_load(c->model, m, err, sizeof err)) {
        fprintf(stderr, "maa: %s\n", err);
        return MAA_ERR;
    }
    if (!c->calibration)
        return MAA_OK;
    if (maa_calibration_load(c->calibration, cal, err, sizeof err) ||
        maa_calibration_check_model(cal, *m, err, sizeof err)) {
        fprintf(stderr, "maa: %s\n", err);
        maa_model_free(*m);
        *m = NULL;
        return MAA_ERR;
    }
    if (have_cal)
        *have_cal = 1;
    return MAA_OK;
}

int maa_cli_read_input(const char *path, const maa_model_info *info, float *x,
                       char *err, size_t errlen)
{
    maa_image im;
    if (maa_image_load(path, &im, err, errlen))
        return MAA_ERR;
    int rc = maa_preprocess(&im, info->image_size, info->channels, x, err, errlen);
    maa_image_free(&im);
    return rc;
}

static int is_image_name(const char *name)
{
    static const char *ext[] = {".png", ".pgm", ".ppm", ".pnm", ".bmp"};
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++)
        if (n > 4 && !strcasecmp(name + n - 4, ext[i]))
            return 1;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

char **maa_cli_list_images(const char *dir, int *n)
{
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "maa: %s: %s\n", dir, strerror(errno));
        return NULL;
    }
    int cap = 64;
    char **list = malloc((size_t)cap * sizeof *list);
    struct dirent *e;
    while (list && (e = readdir(d))) {
        if (e->d_name[0] == '.' || !is_image_name(e->d_name))
            continue;
        if (*n == cap) {
            char **bigger = realloc(list, (size_t)(cap *= 2) * sizeof *list);
            if (!bigger) {
                maa_cli_free_list(list, *n);
                list = NULL;
                break;
            }
            list = bigger;
        }
        if (asprintf(&list[*n], "%s/%s", dir, e->d_name) < 0) {
            maa_cli_free_list(list, *n);
            list = NULL;
            break;
        }
        (*n)++;
    }
    closedir(d);
    if (!list) {
        fprintf(stderr, "maa: %s: out of memory listing images\n", dir);
        return NULL;
    }
    qsort(list, (size_t)*n, sizeof *list, cmp_str);
    return list;
}

void maa_cli_free_list(char **list, int n)
{
    for (int i = 0; list && i < n; i++)
        free(list[i]);
    free(list);
}

void maa_cli_progress(const char *what, int done, int total)
{
    if (!isatty(STDERR_FILENO))
        return;
    fprintf(stderr, "\r%s %d/%d (%d%%)%s", what, done, total, total ? 100 * done / total : 100,
            done == total ? "\n" : "");
}
