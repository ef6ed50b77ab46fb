/* test_calib.c — calibration fit, pixel threshold and the calibration file
 * (contract §5, §6). */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/engine.h"
#include "tests/check.h"
#include "tests/testmodel.h"

static const char SHA[] =
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

static char dir[] = "/tmp/test_calib.XXXXXX";

static void sample40(double *a)
{
    for (int i = 0; i < 40; i++)
        a[i] = 1 + 0.1 * sin(i * 1.7) + 0.05 * (i % 7) / 7.0;
}

/* Reference values from scipy 1.10.1:
 * /usr/bin/python3 -c "import numpy as np, scipy.stats as st;
 *   i=np.arange(40); a=1+0.1*np.sin(i*1.7)+0.05*(i%7)/7; r=st.normaltest(a);
 *   print(repr(a.mean()), repr(a.std(ddof=1)), repr(r.statistic), repr(r.pvalue));
 *   b=(np.arange(25)**2)/100.0; r=st.normaltest(b);
 *   print(repr(r.statistic), repr(r.pvalue))" */
static void test_fit_matches_scipy(void)
{
    double a[40];
    sample40(a);
    maa_calibration c;
    char err[MAA_ERRLEN] = "";
    CHECK(maa_calibration_fit(a, 40, 3, &c, err, sizeof err) == MAA_OK, "%s", err);
    CHECK(c.n == 40, "n %d", c.n);
    CHECK_NEAR(c.mu, 1.0222729012831553, 1e-14);
    CHECK_NEAR(c.sigma, 0.07532292813227454, 1e-14);
    CHECK(c.threshold == c.mu + 3 * c.sigma, "threshold %.17g", c.threshold);
    CHECK_NEAR(c.normality_stat, 14.465227436084746, 1e-9);
    CHECK_NEAR(c.normality_p, 0.0007226296425331441, 1e-12);
    CHECK(strcmp(c.normality_test, "dagostino-pearson") == 0, "%s",
          c.normality_test);
    double lo = a[0], hi = a[0];
    for (int i = 1; i < 40; i++)
        lo = fmin(lo, a[i]), hi = fmax(hi, a[i]);
    CHECK(c.score_min == lo && c.score_max == hi, "%g %g", c.score_min,
          c.score_max);

    double b[25];
    for (int i = 0; i < 25; i++)
        b[i] = i * i / 100.0;
    CHECK(maa_calibration_fit(b, 25, 0, &c, err, sizeof err) == MAA_OK, "%s", err);
    CHECK_NEAR(c.normality_stat, 3.21588376459854, 1e-9);
    CHECK_NEAR(c.normality_p, 0.20029942994923344, 1e-10);
    CHECK(c.threshold == c.mu, "gamma 0: threshold %g, mu %g", c.threshold, c.mu);

    maa_calibration_set_gamma(&c, 2.5);
    CHECK(c.gamma == 2.5 && c.threshold == c.mu + 2.5 * c.sigma, "%g", c.threshold);
}

/* mu and sigma of 20 values: ten 1s and ten 3s: mu 2, sigma sqrt(20/19). */
static void test_fit_known(void)
{
    double a[20];
    for (int i = 0; i < 20; i++)
        a[i] = i % 2 ? 3 : 1;
    maa_calibration c;
    char err[MAA_ERRLEN];
    CHECK(maa_calibration_fit(a, 20, 3, &c, err, sizeof err) == MAA_OK, "%s", err);
    CHECK_NEAR(c.mu, 2, 1e-15);
    CHECK_NEAR(c.sigma, sqrt(20.0 / 19), 1e-15);
    CHECK_NEAR(c.threshold, 2 + 3 * sqrt(20.0 / 19), 1e-14);
}

static void test_fit_refusals(void)
{
    double a[40];
    sample40(a);
    maa_calibration c;
    char err[MAA_ERRLEN] = "";
    CHECK(maa_calibration_fit(a, 19, 3, &c, err, sizeof err) == MAA_ERR, "accepted");
    CHECK(strcmp(err, "calibration needs at least 20 good images, got 19") == 0,
          "%s", err);
    a[7] = NAN;
    CHECK(maa_calibration_fit(a, 40, 3, &c, err, sizeof err) == MAA_ERR, "accepted");
    CHECK(strstr(err, "image 7"), "%s", err);
    for (int i = 0; i < 40; i++)
        a[i] = 0.5;
    CHECK(maa_calibration_fit(a, 40, 3, &c, err, sizeof err) == MAA_ERR, "accepted");
    CHECK(strstr(err, "equal"), "%s", err);
}

static int above(const double *p, int n, double t)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        k += p[i] > t;
    return k;
}

static void test_pixel_threshold(void)
{
    /* 200 distinct peaks: 1% = 2 images may be above. */
    double p[200];
    for (int i = 0; i < 200; i++)
        p[i] = (double)((i * 37) % 200);
    double t = maa_pixel_threshold(p, 200, 0.01);
    CHECK(t == 197, "t %g", t);
    CHECK(above(p, 200, t) == 2, "%d above", above(p, 200, t));
    CHECK(maa_pixel_threshold(p, 200, 0) == 199, "q = 0: the largest peak");
    CHECK(maa_pixel_threshold(p, 200, 1) == 0, "q = 1: the smallest peak");

    /* Ties: 5, 5, 5, 4, 3.98 ... with k = 1: the threshold is 5 and no image
     * is above it (fewer than k, never more). */
    double q[100];
    for (int i = 0; i < 100; i++)
        q[i] = i < 3 ? 5 : 4 - (i - 3) / 50.0;
    t = maa_pixel_threshold(q, 100, 0.01);
    CHECK(t == 5 && above(q, 100, t) == 0, "t %g", t);
    t = maa_pixel_threshold(q, 100, 0.03);
    CHECK(t == 4 && above(q, 100, t) == 3, "t %g", t);
    CHECK(isinf(maa_pixel_threshold(q, 0, 0.01)), "no peaks");
    /* the input is not reordered */
    CHECK(q[0] == 5 && q[99] == 4 - 96 / 50.0, "peaks modified");
}

static void fitted(maa_calibration *c)
{
    double a[40];
    sample40(a);
    char err[MAA_ERRLEN];
    CHECK(maa_calibration_fit(a, 40, 3, c, err, sizeof err) == MAA_OK, "%s", err);
    memcpy(c->model_sha256, SHA, 65);
    c->pixel_threshold = 1.234567890123e-7;
    c->mask_fraction = 0.01;
    c->mask_window = 7;
    c->min_region_area = 9;
}

static void test_round_trip(void)
{
    maa_calibration c, d;
    fitted(&c);
    maa_calibration_set_gamma(&c, 0.1);  /* a threshold that is not round */
    char path[256], err[MAA_ERRLEN] = "";
    snprintf(path, sizeof path, "%s/cal.yaml", dir);
    CHECK(maa_calibration_save(path, &c, err, sizeof err) == MAA_OK, "%s", err);
    memset(&d, 0x55, sizeof d);
    CHECK(maa_calibration_load(path, &d, err, sizeof err) == MAA_OK, "%s", err);
    CHECK(memcmp(c.model_sha256, d.model_sha256, 65) == 0, "%s", d.model_sha256);
    CHECK(c.n == d.n && c.mask_window == d.mask_window &&
          c.min_region_area == d.min_region_area, "ints differ");
    const double *pc[] = {&c.mu, &c.sigma, &c.gamma, &c.threshold,
                          &c.normality_stat, &c.normality_p, &c.pixel_threshold,
                          &c.mask_fraction, &c.score_min, &c.score_max};
    const double *pd[] = {&d.mu, &d.sigma, &d.gamma, &d.threshold,
                          &d.normality_stat, &d.normality_p, &d.pixel_threshold,
                          &d.mask_fraction, &d.score_min, &d.score_max};
    for (int i = 0; i < 10; i++)
        CHECK(memcmp(pc[i], pd[i], sizeof(double)) == 0, "field %d: %.17g vs %.17g",
              i, *pc[i], *pd[i]);
    CHECK(strcmp(c.normality_test, d.normality_test) == 0, "%s", d.normality_test);
    FILE *f = fopen(path, "r");
    char first[128] = "";
    CHECK(f && fgets(first, sizeof first, f) && first[0] == '#', "no header comment");
    if (f)
        fclose(f);
    /* no temporary left behind */
    DIR *ls = opendir(dir);
    struct dirent *e;
    while (ls && (e = readdir(ls)))
        CHECK(!strstr(e->d_name, ".tmp"), "%s left behind", e->d_name);
    if (ls)
        closedir(ls);
}

/* The calibration was written to PATH.tmp with fopen, through whatever
 * stood there: a link planted under that name made maa calibrate write over
 * its target.  Now the temporary file is created exclusively under a random
 * name, and a link at PATH itself is replaced, not written through. */
static void test_save_through_links(void)
{
    maa_calibration c;
    fitted(&c);
    char path[256], tmp[300], victim[256], err[MAA_ERRLEN] = "";
    snprintf(path, sizeof path, "%s/linked.yaml", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    snprintf(victim, sizeof victim, "%s/victim", dir);
    FILE *f = fopen(victim, "w");
    CHECK(f && fputs("precious\n", f) >= 0, "cannot write %s", victim);
    if (f)
        fclose(f);
    CHECK(symlink(victim, tmp) == 0 && symlink(victim, path) == 0, "cannot make links");
    CHECK(maa_calibration_save(path, &c, err, sizeof err) == MAA_OK, "%s", err);
    char text[64] = "";
    f = fopen(victim, "r");
    CHECK(f && fgets(text, sizeof text, f) && !strcmp(text, "precious\n"),
          "the link's target was written: '%s'", text);
    if (f)
        fclose(f);
    struct stat st;
    CHECK(lstat(path, &st) == 0 && S_ISREG(st.st_mode), "%s is not a regular file", path);
    maa_calibration d;
    CHECK(maa_calibration_load(path, &d, err, sizeof err) == MAA_OK, "%s", err);
    /* The planted name is left alone, as it was found. */
    CHECK(lstat(tmp, &st) == 0 && S_ISLNK(st.st_mode), "%s is no longer a link", tmp);
    unlink(tmp);
}

/* A path that names no file but a device (here a link to /dev/null, as
 * maa eval --json /dev/stdout names a terminal or pipe) is written to, not
 * replaced by a file. */
static void test_save_to_a_device(void)
{
    maa_calibration c;
    fitted(&c);
    char path[256], err[MAA_ERRLEN] = "";
    snprintf(path, sizeof path, "%s/device.yaml", dir);
    CHECK(symlink("/dev/null", path) == 0, "cannot make the link");
    CHECK(maa_calibration_save(path, &c, err, sizeof err) == MAA_OK, "%s", err);
    struct stat st;
    CHECK(lstat(path, &st) == 0 && S_ISLNK(st.st_mode), "%s was replaced by a file", path);
    unlink(path);
}

/* Whether line holds one of the keys named in keys (separated by spaces). */
static int names_key(const char *keys, const char *line)
{
    size_t n = strcspn(line, ":");
    for (const char *k = keys; *k; k += strcspn(k, " "), k += *k == ' ')
        if (strcspn(k, " ") == n && strncmp(k, line, n) == 0 && line[n] == ':')
            return 1;
    return 0;
}

/* Writes the saved calibration with the lines of the keys named in `key`
 * replaced by `repl` (NULL: removed), plus `extra` appended; loads it and
 * returns the error message (empty when it loaded). */
static const char *load_edited(const char *key, const char *repl,
                               const char *extra)
{
    static char err[MAA_ERRLEN];
    maa_calibration c;
    fitted(&c);
    char path[256], text[4096] = "", line[512];
    snprintf(path, sizeof path, "%s/edit.yaml", dir);
    CHECK(maa_calibration_save(path, &c, err, sizeof err) == MAA_OK, "%s", err);
    FILE *f = fopen(path, "r");
    int replaced = 0;
    while (f && fgets(line, sizeof line, f)) {
        if (key && names_key(key, line)) {
            if (repl && !replaced++)
                strcat(text, repl);
            continue;
        }
        strcat(text, line);
    }
    if (f)
        fclose(f);
    if (extra)
        strcat(text, extra);
    f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    err[0] = 0;
    if (maa_calibration_load(path, &c, err, sizeof err) == MAA_OK)
        err[0] = 0;
    return err;
}

#define REFUSED(msg_part, key, repl, extra)                                   \
    do {                                                                      \
        const char *e_ = load_edited(key, repl, extra);                       \
        CHECK(strstr(e_, "edit.yaml") && strstr(e_, msg_part), "'%s'", e_);   \
    } while (0)

static void test_load_refusals(void)
{
    CHECK(load_edited(NULL, NULL, NULL)[0] == 0, "unedited file refused: %s",
          load_edited(NULL, NULL, NULL));
    REFUSED("missing key 'sigma'", "sigma", NULL, NULL);
    REFUSED("missing key 'model_sha256'", "model_sha256", NULL, NULL);
    REFUSED(":20: unknown key 'colour'", NULL, NULL, "colour: blue\n");
    REFUSED(":20: duplicate key 'mu' (first on line 7)", NULL, NULL, "mu: 1\n");
    REFUSED(":7: mu: 'abc' is not a finite number", "mu", "mu: abc\n", NULL);
    REFUSED(":7: mu: '1.5x' is not a finite number", "mu", "mu: 1.5x\n", NULL);
    REFUSED("mu: 'nan' is not a finite number", "mu", "mu: nan\n", NULL);
    REFUSED(":6: n: '40.5' is not an integer", "n", "n: 40.5\n", NULL);
    REFUSED(":5: model_sha256: 'abc' is not 64 lowercase hex digits",
            "model_sha256", "model_sha256: abc\n", NULL);
    REFUSED("is not 64 lowercase hex", "model_sha256",
            "model_sha256: 0123456789abcdef0123456789abcdef0123456789abcdef"
            "0123456789abcdeg\n", NULL);
    REFUSED(":10: threshold is not mu + gamma * sigma", "threshold",
            "threshold: 2\n", NULL);
    REFUSED(":8: sigma must be a finite number > 0", "sigma", "sigma: -1\n", NULL);
    REFUSED(":6: n must be at least 20", "n", "n: 19\n", NULL);
    REFUSED(":16: mask_window must be an odd integer in 1..63", "mask_window",
            "mask_window: 6\n", NULL);
    /* The ranges maa calibrate writes: a file may carry anything, and a
     * window of 2^31 - 1 made every frame's mask 17 times slower. */
    REFUSED(":16: mask_window must be an odd integer in 1..63", "mask_window",
            "mask_window: 2147483647\n", NULL);
    REFUSED(":16: mask_window must be an odd integer in 1..63", "mask_window",
            "mask_window: 65\n", NULL);
    REFUSED(":17: min_region_area must be an integer in 1..1000000", "min_region_area",
            "min_region_area: 1000001\n", NULL);
    REFUSED(":17: min_region_area must be an integer in 1..1000000", "min_region_area",
            "min_region_area: 0\n", NULL);
    /* A gamma beyond the range with the threshold that goes with it. */
    maa_calibration g;
    fitted(&g);
    char both[128];
    snprintf(both, sizeof both, "gamma: 100.5\nthreshold: %.17g\n", g.mu + 100.5 * g.sigma);
    REFUSED(":9: gamma must be a number in [-10, 100]", "gamma threshold", both, NULL);
    snprintf(both, sizeof both, "gamma: -11\nthreshold: %.17g\n", g.mu - 11 * g.sigma);
    REFUSED(":9: gamma must be a number in [-10, 100]", "gamma threshold", both, NULL);
    const char *e = load_edited("mask_window", "mask_window: 63\n", NULL);
    CHECK(!e[0], "the largest window refused: %s", e);
    e = load_edited("min_region_area", "min_region_area: 1000000\n", NULL);
    CHECK(!e[0], "the largest minimum area refused: %s", e);
    REFUSED(":13: normality_p must be between 0 and 1", "normality_p",
            "normality_p: 1.5\n", NULL);
    REFUSED(":11: normality_test must be dagostino-pearson", "normality_test",
            "normality_test: shapiro\n", NULL);
    REFUSED(":7: nested mappings", "mu", "mu: {a: 1}\n", NULL);
    REFUSED(":7: only plain keys", "mu", "mu: [1, 2]\n", NULL);
    REFUSED("YAML error", "mu", "mu: 'unterminated\n", NULL);
    REFUSED("only one document", NULL, NULL, "---\nmu: 1\n");

    char err[MAA_ERRLEN] = "";
    maa_calibration c;
    CHECK(maa_calibration_load("/nonexistent/cal.yaml", &c, err, sizeof err) ==
              MAA_ERR && strstr(err, "/nonexistent/cal.yaml: cannot open"),
          "%s", err);
    char path[256];
    snprintf(path, sizeof path, "%s/empty.yaml", dir);
    fclose(fopen(path, "w"));
    CHECK(maa_calibration_load(path, &c, err, sizeof err) == MAA_ERR &&
              strstr(err, "missing key 'model_sha256'"), "%s", err);
    /* A directory was handed to libyaml, which said "input error". */
    snprintf(path, sizeof path, "%s/cal.d", dir);
    CHECK(mkdir(path, 0700) == 0, "cannot make %s", path);
    CHECK(maa_calibration_load(path, &c, err, sizeof err) == MAA_ERR &&
              strstr(err, path) && strstr(err, "is a directory"), "%s", err);
    /* Nor is a file of any size read: a calibration is a kilobyte. */
    snprintf(path, sizeof path, "%s/huge.yaml", dir);
    FILE *f = fopen(path, "w");
    CHECK(f && ftruncate(fileno(f), 2 << 20) == 0, "cannot write %s", path);
    if (f)
        fclose(f);
    CHECK(maa_calibration_load(path, &c, err, sizeof err) == MAA_ERR &&
              strstr(err, "larger than 1 MiB, not a calibration file"), "%s", err);
    /* libyaml's document loader takes seconds over a value nested 40,000
     * levels deep; this loader reads events and stops at the first nested
     * one. */
    snprintf(path, sizeof path, "%s/deep.yaml", dir);
    f = fopen(path, "w");
    fputs("mu: ", f);
    for (int i = 0; i < 40000; i++)
        fputc('{', f);
    fclose(f);
    CHECK(maa_calibration_load(path, &c, err, sizeof err) == MAA_ERR &&
              strstr(err, "deep.yaml:1: nested mappings are not allowed"), "%s", err);
}

static void test_save_refuses_invalid(void)
{
    maa_calibration c;
    fitted(&c);
    c.model_sha256[0] = 0;
    char path[256], err[MAA_ERRLEN] = "";
    snprintf(path, sizeof path, "%s/invalid.yaml", dir);
    CHECK(maa_calibration_save(path, &c, err, sizeof err) == MAA_ERR, "accepted");
    CHECK(strstr(err, "model_sha256"), "%s", err);
    CHECK(access(path, F_OK) != 0, "file written");
}

/* A calibration binds to the bytes of its model file: the same weights
 * stored as F16 are another model. */
static void test_check_model(void)
{
    static const maa_model_info info = {64, 3, 4, 8, 1e-5, 0.1, 5};
    char p32[256], p16[256], err[MAA_ERRLEN] = "";
    snprintf(p32, sizeof p32, "%s/a.safetensors", dir);
    snprintf(p16, sizeof p16, "%s/b.safetensors", dir);
    CHECK(write_model(p32, &info, &(spoil){0}) == 0 && write_model(p16, &info, &(spoil){.f16 = 1}) == 0,
          "cannot write models");
    maa_model *a = NULL, *b = NULL;
    CHECK(maa_model_load(p32, &a, err, sizeof err) == MAA_OK, "%s", err);
    CHECK(maa_model_load(p16, &b, err, sizeof err) == MAA_OK, "%s", err);
    if (!a || !b)
        goto out;
    maa_calibration c;
    fitted(&c);
    snprintf(c.model_sha256, sizeof c.model_sha256, "%s", maa_model_sha256(a));
    CHECK(maa_calibration_check_model(&c, a, err, sizeof err) == MAA_OK, "%s", err);
    CHECK(maa_calibration_check_model(&c, b, err, sizeof err) == MAA_ERR, "accepted");
    CHECK(strstr(err, maa_model_sha256(a)) && strstr(err, maa_model_sha256(b)) && strstr(err, p16),
          "%s", err);
out:
    maa_model_free(a);
    maa_model_free(b);
}

int main(void)
{
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_fit_matches_scipy);
    RUN(test_fit_known);
    RUN(test_fit_refusals);
    RUN(test_pixel_threshold);
    RUN(test_round_trip);
    RUN(test_load_refusals);
    RUN(test_save_refuses_invalid);
    RUN(test_save_through_links);
    RUN(test_save_to_a_device);
    RUN(test_check_model);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return CHECK_SUMMARY();
}
