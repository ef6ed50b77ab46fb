/* common.c — what the maa subcommands share. */
#include <dirent.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "maa/maa.h"

void maa_cli_engine_init(maa_cli_engine *c)
{
    memset(c, 0, sizeof *c);
    c->engine.backend = MAA_BACKEND_AUTO;
    c->engine.precision = MAA_PREC_DEFAULT;
    c->engine.max_batch = 4;
}

int maa_cli_parse_number(const char *who, const char *opt, const char *arg, double lo, double hi,
                         double *out)
{
    char *end;
    double v = strtod(arg, &end);
    if (end == arg || *end || !isfinite(v) || v < lo || v > hi) {
        fprintf(stderr, "%s: --%s \"%s\" is not a number in [%.15g, %.15g]\n", who, opt, arg,
                lo, hi);
        return MAA_ERR;
    }
    *out = v;
    return MAA_OK;
}

int maa_cli_parse_integer(const char *who, const char *opt, const char *arg, long long lo,
                          long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(arg, &end, 10);
    if (errno || end == arg || *end || v < lo || v > hi) {
        fprintf(stderr, "%s: --%s \"%s\" is not an integer in %lld..%lld\n", who, opt, arg, lo,
                hi);
        return MAA_ERR;
    }
    *out = v;
    return MAA_OK;
}

/* A shared option's count, returned as maa_cli_engine_option returns. */
static int engine_count(const char *opt, const char *arg, int lo, int hi, int *out)
{
    long long v;
    if (maa_cli_parse_integer("maa", opt, arg, lo, hi, &v))
        return -1;
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
    case 'T': return engine_count("threads", arg, 0, 1024, &c->engine.threads);
    case 'N': return engine_count("batch", arg, 1, 256, &c->engine.max_batch);
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
    if (maa_calibration_load(c->calibration, cal, err, sizeof err)) {
        fprintf(stderr, "maa: %s\n", err);
        maa_model_free(*m);
        *m = NULL;
        return MAA_ERR;
    }
    if (maa_calibration_check_model(cal, *m, err, sizeof err)) {
        fprintf(stderr, "maa: %s: %s\n", c->calibration, err);
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

int maa_cli_inspect_files(maa_inspector *in, const maa_calibration *cal,
                          const maa_model_info *info, const char *const *paths, int k,
                          float *x, maa_result *res, char *err, size_t errlen)
{
    const size_t img = (size_t)info->channels * info->image_size * info->image_size;
    for (int j = 0; j < k; j++)
        if (maa_cli_read_input(paths[j], info, x + j * img, err, errlen))
            return MAA_ERR;
    return maa_inspect(in, cal, k, x, res, err, errlen);
}

static int is_image_name(const char *dir, const char *name)
{
    (void)dir;
    static const char *ext[] = {".png", ".pgm", ".ppm", ".pnm", ".bmp"};
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++)
        if (n > 4 && !strcasecmp(name + n - 4, ext[i]))
            return 1;
    return 0;
}

static int is_dir(const char *dir, const char *name)
{
    char p[PATH_MAX];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return !stat(p, &st) && S_ISDIR(st.st_mode);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The entries of dir that keep() takes (hidden ones never), as "dir/name"
 * when full, else as names, sorted. */
static char **list_dir(const char *dir, int (*keep)(const char *, const char *), int full,
                       int *n)
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
        if (e->d_name[0] == '.' || !keep(dir, e->d_name))
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
        if ((full ? asprintf(&list[*n], "%s/%s", dir, e->d_name)
                  : asprintf(&list[*n], "%s", e->d_name)) < 0) {
            maa_cli_free_list(list, *n);
            list = NULL;
            break;
        }
        (*n)++;
    }
    closedir(d);
    if (!list) {
        fprintf(stderr, "maa: %s: out of memory listing it\n", dir);
        return NULL;
    }
    qsort(list, (size_t)*n, sizeof *list, cmp_str);
    return list;
}

char **maa_cli_list_images(const char *dir, int *n) { return list_dir(dir, is_image_name, 1, n); }

char **maa_cli_list_subdirs(const char *dir, int *n) { return list_dir(dir, is_dir, 0, n); }

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

/* The scripts lie beside the executable's directory: ../scripts in the
 * build tree (build/maa), ../share/maad/scripts once installed. */
static int find_script(const char *name, char *path, size_t len)
{
    const char *env = getenv("MAA_SCRIPTS");
    if (env) {
        snprintf(path, len, "%s/%s", env, name);
        return access(path, R_OK) == 0 ? MAA_OK : MAA_ERR;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return MAA_ERR;
    exe[n] = 0;
    const char *dir = dirname(exe);
    static const char *const where[] = {"scripts", "share/maad/scripts"};
    for (size_t i = 0; i < sizeof where / sizeof where[0]; i++) {
        snprintf(path, len, "%s/../%s/%s", dir, where[i], name);
        if (access(path, R_OK) == 0)
            return MAA_OK;
    }
    return MAA_ERR;
}

extern char **environ;

int maa_cli_run_script(const char *name, const char *const *args)
{
    char path[PATH_MAX + 64];
    if (find_script(name, path, sizeof path)) {
        fprintf(stderr, "maa: warning: script %s not found (set MAA_SCRIPTS); no plot\n", name);
        return MAA_ERR;
    }
    const char *python = getenv("MAA_PYTHON") ? getenv("MAA_PYTHON") : "/usr/bin/python3";
    const char *argv[64] = {python, path};
    int k = 2;
    for (int i = 0; args[i] && k < 63; i++)
        argv[k++] = args[i];
    argv[k] = NULL;
    pid_t pid;
    int rc = posix_spawn(&pid, python, NULL, NULL, (char *const *)argv, environ), st = 0;
    if (rc) {
        fprintf(stderr, "maa: warning: cannot run %s: %s\n", python, strerror(rc));
        return MAA_ERR;
    }
    if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st)) {
        fprintf(stderr, "maa: warning: %s %s failed\n", python, path);
        return MAA_ERR;
    }
    return MAA_OK;
}

int maa_cli_write_json(const char *who, const json_t *report, const char *path)
{
    char err[MAA_ERRLEN];
    char *text = json_dumps(report, JSON_INDENT(1) | JSON_REAL_PRECISION(17));
    int rc = text ? maa_write_file(path, text, strlen(text), err, sizeof err) : MAA_ERR;
    if (rc)
        fprintf(stderr, "%s: %s\n", who, text ? err : "out of memory for the report");
    free(text);
    return rc;
}

int maa_cli_plot_scores(const char *png, const double *scores, int n, const maa_calibration *cal)
{
    char tmp[] = "/tmp/maa-scores-XXXXXX";
    int fd = mkstemp(tmp);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        fprintf(stderr, "maa: warning: cannot write a temporary file: %s\n", strerror(errno));
        return MAA_ERR;
    }
    for (int i = 0; i < n; i++)
        fprintf(f, "%.17g\n", scores[i]);
    fclose(f);
    char mu[32], sigma[32], gamma[32], t[32], p[32];
    snprintf(mu, sizeof mu, "%.17g", cal->mu);
    snprintf(sigma, sizeof sigma, "%.17g", cal->sigma);
    snprintf(gamma, sizeof gamma, "%.17g", cal->gamma);
    snprintf(t, sizeof t, "%.17g", cal->threshold);
    snprintf(p, sizeof p, "%.17g", cal->normality_p);
    const char *args[] = {"--scores", tmp, "--mu", mu, "--sigma", sigma, "--gamma", gamma,
                          "--threshold", t, "--normality-p", p, "--out", png, NULL};
    int rc = maa_cli_run_script("plot_calibration.py", args);
    unlink(tmp);
    return rc;
}
