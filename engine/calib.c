/* calib.c — the statistical model of good parts (contract §5) and the pixel
 * threshold of the mask (contract §6), and their file.
 *
 * The file is YAML, read with libyaml.  It is written as formatted text
 * because libyaml's emitter cannot write comments and the file opens with
 * one that says what it is; every value is a plain scalar, doubles as %.17g
 * so that load(save(c)) == c bit for bit. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "engine/backend.h"

#define MIN_GOOD 20
/* A calibration is about a kilobyte; anything this large is a wrong path. */
#define MAX_FILE_BYTES (1 << 20)
#define NORMALITY_TEST "dagostino-pearson"

/* ---- D'Agostino-Pearson K^2, as scipy.stats.normaltest ------------------ */

/* scipy.stats.skewtest: Z of the sample skewness (D'Agostino 1970). */
static double skew_z(double g1, double n)
{
    double y = g1 * sqrt(((n + 1) * (n + 3)) / (6.0 * (n - 2)));
    double beta2 = 3.0 * (n * n + 27 * n - 70) * (n + 1) * (n + 3) /
                   ((n - 2.0) * (n + 5) * (n + 7) * (n + 9));
    double w2 = -1 + sqrt(2 * (beta2 - 1));
    double delta = 1 / sqrt(0.5 * log(w2));
    double alpha = sqrt(2.0 / (w2 - 1));
    if (y == 0)
        y = 1;
    return delta * log(y / alpha + sqrt((y / alpha) * (y / alpha) + 1));
}

/* scipy.stats.kurtosistest: Z of the sample kurtosis (Anscombe & Glynn
 * 1983).  b2 is the Pearson kurtosis m4/m2^2. */
static double kurtosis_z(double b2, double n)
{
    double e = 3.0 * (n - 1) / (n + 1);
    double varb2 = 24.0 * n * (n - 2) * (n - 3) /
                   ((n + 1) * (n + 1) * (n + 3) * (n + 5));
    double x = (b2 - e) / sqrt(varb2);
    double sqrtbeta1 = 6.0 * (n * n - 5 * n + 2) / ((n + 7) * (n + 9)) *
                       sqrt((6.0 * (n + 3) * (n + 5)) / (n * (n - 2) * (n - 3)));
    double a = 6.0 + 8.0 / sqrtbeta1 *
                     (2.0 / sqrtbeta1 + sqrt(1 + 4.0 / (sqrtbeta1 * sqrtbeta1)));
    double term1 = 1 - 2 / (9.0 * a);
    double denom = 1 + x * sqrt(2 / (a - 4.0));
    if (denom == 0)
        return NAN;
    double term2 = (denom > 0 ? 1 : -1) * cbrt((1 - 2.0 / a) / fabs(denom));
    return (term1 - term2) / sqrt(2 / (9.0 * a));
}

int maa_calibration_fit(const double *scores, int n, double gamma,
                        maa_calibration *c, char *err, size_t errlen)
{
    if (n < MIN_GOOD) {
        maa_seterr(err, errlen, "calibration needs at least %d good images, "
                   "got %d", MIN_GOOD, n);
        return MAA_ERR;
    }
    if (!isfinite(gamma)) {
        maa_seterr(err, errlen, "calibration: gamma must be finite, got %g",
                   gamma);
        return MAA_ERR;
    }
    double sum = 0, lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < n; i++) {
        if (!isfinite(scores[i])) {
            maa_seterr(err, errlen, "calibration: score of good image %d is "
                       "not finite (%g)", i, scores[i]);
            return MAA_ERR;
        }
        sum += scores[i];
        lo = fmin(lo, scores[i]);
        hi = fmax(hi, scores[i]);
    }
    double mu = sum / n, m2 = 0, m3 = 0, m4 = 0;
    for (int i = 0; i < n; i++) {
        double d = scores[i] - mu;
        m2 += d * d;
        m3 += d * d * d;
        m4 += d * d * d * d;
    }
    if (lo == hi) {
        /* A spread of zero gives threshold = mu and no normality test; it
         * means the scoring is broken, not that the parts are perfect. */
        maa_seterr(err, errlen, "calibration: all %d scores are equal (%.17g); "
                   "the scoring is not working", n, lo);
        return MAA_ERR;
    }
    double sigma = sqrt(m2 / (n - 1));
    m2 /= n, m3 /= n, m4 /= n;
    double zs = skew_z(m3 / pow(m2, 1.5), n);
    double zk = kurtosis_z(m4 / (m2 * m2), n);
    double k2 = zs * zs + zk * zk;

    memset(c, 0, sizeof *c);
    c->n = n;
    c->mu = mu;
    c->sigma = sigma;
    c->gamma = gamma;
    c->threshold = mu + gamma * sigma;
    snprintf(c->normality_test, sizeof c->normality_test, "%s", NORMALITY_TEST);
    c->normality_stat = k2;
    c->normality_p = exp(-k2 / 2);  /* chi-square survival, 2 dof */
    c->score_min = lo;
    c->score_max = hi;
    return MAA_OK;
}

static int cmp_desc(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

double maa_pixel_threshold(const double *peaks, int n, double q)
{
    if (n <= 0)
        return INFINITY;
    double *d = malloc(sizeof(double) * (size_t)n);
    if (!d)
        return NAN;
    memcpy(d, peaks, sizeof(double) * (size_t)n);
    qsort(d, (size_t)n, sizeof(double), cmp_desc);
    /* Only peaks strictly above d[k] are masked: at most k of them, fewer
     * when d[k] is tied with larger ones.  k is capped at n - 1 so that the
     * threshold stays a value seen in calibration. */
    double kq = q > 0 ? floor(q * n) : 0;
    int k = kq >= n ? n - 1 : (int)kq;
    double t = d[k];
    free(d);
    return t;
}

static const char *const rule_names[] = {"either", "score", "mask"};

int maa_rule_parse(const char *name, maa_rule *out)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(name, rule_names[i]) == 0) {
            *out = (maa_rule)i;
            return MAA_OK;
        }
    return MAA_ERR;
}

int maa_rule_evidence(maa_rule rule)
{
    return rule == MAA_RULE_SCORE  ? MAA_EVIDENCE_SCORE
           : rule == MAA_RULE_MASK ? MAA_EVIDENCE_MASK
                                   : MAA_EVIDENCE_SCORE | MAA_EVIDENCE_MASK;
}

const char *maa_rule_name(maa_rule rule)
{
    return (unsigned)rule < 3 ? rule_names[rule] : "?";
}

void maa_calibration_set_gamma(maa_calibration *c, double gamma)
{
    c->gamma = gamma;
    c->threshold = c->mu + gamma * c->sigma;
}

int maa_calibration_check_model(const maa_calibration *c, const maa_model *m,
                                char *err, size_t errlen)
{
    const char *sha = maa_model_sha256(m);
    if (strcmp(c->model_sha256, sha) != 0) {
        maa_seterr(err, errlen, "calibration was made for the model with "
                   "sha256 %s, but %s has sha256 %s; calibrate again for this "
                   "model", c->model_sha256, maa_model_path(m), sha);
        return MAA_ERR;
    }
    return MAA_OK;
}

/* ---- the file ------------------------------------------------------------ */

enum { F_SHA, F_N, F_MU, F_SIGMA, F_GAMMA, F_THRESHOLD, F_NTEST, F_NSTAT,
       F_NP, F_PIX, F_MASKFRAC, F_WINDOW, F_MINAREA, F_SMIN, F_SMAX, F_COUNT };

static const char *const field_names[F_COUNT] = {
    "model_sha256", "n", "mu", "sigma", "gamma", "threshold",
    "normality_test", "normality_stat", "normality_p", "pixel_threshold",
    "mask_fraction", "mask_window", "min_region_area", "score_min",
    "score_max",
};

static int is_sha256(const char *s)
{
    if (strlen(s) != 64)
        return 0;
    for (int i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

/* Semantic checks shared by save and load: what a daemon may rely on, and
 * the ranges maa calibrate writes (a file may carry anything: a mask window
 * of 2^31 - 1 made every frame's mask 17 times slower).  0 when valid;
 * otherwise 1, the failing field's index in *field and why in why. */
static int invalid(const maa_calibration *c, int *field, char *why, size_t n)
{
#define BAD(f, ...) do { *field = (f); snprintf(why, n, __VA_ARGS__); return 1; } while (0)
    if (!is_sha256(c->model_sha256))
        BAD(F_SHA, "must be 64 lowercase hex digits");
    if (c->n < MIN_GOOD)
        BAD(F_N, "must be at least 20 good images");
    if (!isfinite(c->mu))
        BAD(F_MU, "must be finite");
    if (!(c->sigma > 0) || !isfinite(c->sigma))
        BAD(F_SIGMA, "must be a finite number > 0");
    if (!(c->gamma >= MAA_GAMMA_MIN && c->gamma <= MAA_GAMMA_MAX))
        BAD(F_GAMMA, "must be a number in [%g, %g]", MAA_GAMMA_MIN, MAA_GAMMA_MAX);
    double want = c->mu + c->gamma * c->sigma;
    if (!isfinite(c->threshold) ||
        fabs(c->threshold - want) > 1e-9 * fmax(fabs(want), fabs(c->threshold)))
        BAD(F_THRESHOLD, "is not mu + gamma * sigma");
    if (strcmp(c->normality_test, NORMALITY_TEST) != 0)
        BAD(F_NTEST, "must be " NORMALITY_TEST);
    if (!(c->normality_stat >= 0) || !isfinite(c->normality_stat))
        BAD(F_NSTAT, "must be a finite number >= 0");
    if (!(c->normality_p >= 0 && c->normality_p <= 1))
        BAD(F_NP, "must be between 0 and 1");
    if (!(c->pixel_threshold >= 0) || !isfinite(c->pixel_threshold))
        BAD(F_PIX, "must be a finite number >= 0");
    if (!(c->mask_fraction >= 0 && c->mask_fraction <= 1))
        BAD(F_MASKFRAC, "must be between 0 and 1");
    if (c->mask_window < 1 || c->mask_window > MAA_MASK_WINDOW_MAX || c->mask_window % 2 == 0)
        BAD(F_WINDOW, "must be an odd integer in 1..%d", MAA_MASK_WINDOW_MAX);
    if (c->min_region_area < 1 || c->min_region_area > MAA_MIN_AREA_MAX)
        BAD(F_MINAREA, "must be an integer in 1..%d", MAA_MIN_AREA_MAX);
    if (!isfinite(c->score_min) || !isfinite(c->score_max) ||
        c->score_min > c->score_max)
        BAD(F_SMAX, "score_min and score_max must be finite, min <= max");
    return 0;
#undef BAD
}

int maa_calibration_save(const char *path, const maa_calibration *c,
                         char *err, size_t errlen)
{
    int field;
    char why[64];
    if (invalid(c, &field, why, sizeof why)) {
        maa_seterr(err, errlen, "%s: not saving an invalid calibration: %s %s",
                   path, field_names[field], why);
        return MAA_ERR;
    }
    char *text;
    if (asprintf(&text,
            "# maad calibration for the model file with this SHA-256 (docs/contract.md).\n"
            "# Evidence of a defect: score > threshold = mu + gamma * sigma, or a mask\n"
            "# region of at least min_region_area pixels above pixel_threshold; maad's\n"
            "# model.rule says which evidence rejects (default: either).\n"
            "model_sha256: %s\n"
            "n: %d\n"
            "mu: %.17g\n"
            "sigma: %.17g\n"
            "gamma: %.17g\n"
            "threshold: %.17g\n"
            "normality_test: %s\n"
            "normality_stat: %.17g\n"
            "normality_p: %.17g\n"
            "pixel_threshold: %.17g\n"
            "mask_fraction: %.17g\n"
            "mask_window: %d\n"
            "min_region_area: %d\n"
            "score_min: %.17g\n"
            "score_max: %.17g\n",
            c->model_sha256, c->n, c->mu, c->sigma, c->gamma, c->threshold,
            c->normality_test, c->normality_stat, c->normality_p,
            c->pixel_threshold, c->mask_fraction, c->mask_window,
            c->min_region_area, c->score_min, c->score_max) < 0) {
        maa_seterr(err, errlen, "%s: out of memory", path);
        return MAA_ERR;
    }
    int rc = maa_write_file(path, text, strlen(text), err, errlen);
    free(text);
    return rc;
}

static int parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno == ERANGE || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

static int parse_int(const char *s, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno == ERANGE || v < -2147483647L - 1 ||
        v > 2147483647L)
        return -1;
    *out = (int)v;
    return 0;
}

static int set_field(maa_calibration *c, int f, const char *v)
{
    switch (f) {
    case F_SHA:
        if (!is_sha256(v))
            return -1;
        memcpy(c->model_sha256, v, 65);
        return 0;
    case F_NTEST:
        if (strlen(v) >= sizeof c->normality_test)
            return -1;
        strcpy(c->normality_test, v);
        return 0;
    case F_N: return parse_int(v, &c->n);
    case F_WINDOW: return parse_int(v, &c->mask_window);
    case F_MINAREA: return parse_int(v, &c->min_region_area);
    case F_MU: return parse_double(v, &c->mu);
    case F_SIGMA: return parse_double(v, &c->sigma);
    case F_GAMMA: return parse_double(v, &c->gamma);
    case F_THRESHOLD: return parse_double(v, &c->threshold);
    case F_NSTAT: return parse_double(v, &c->normality_stat);
    case F_NP: return parse_double(v, &c->normality_p);
    case F_PIX: return parse_double(v, &c->pixel_threshold);
    case F_MASKFRAC: return parse_double(v, &c->mask_fraction);
    case F_SMIN: return parse_double(v, &c->score_min);
    case F_SMAX: return parse_double(v, &c->score_max);
    }
    return -1;
}

static const char *what_expected(int f)
{
    switch (f) {
    case F_SHA: return "64 lowercase hex digits";
    case F_NTEST: return "a test name";
    case F_N: case F_WINDOW: case F_MINAREA: return "an integer";
    default: return "a finite number";
    }
}

int maa_calibration_load(const char *path, maa_calibration *out,
                         char *err, size_t errlen)
{
    uint8_t *text;
    size_t len;
    if (maa_read_file(path, MAX_FILE_BYTES, "a calibration file", &text, &len, err, errlen))
        return MAA_ERR;
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) {
        free(text);
        maa_seterr(err, errlen, "%s: out of memory", path);
        return MAA_ERR;
    }
    yaml_parser_set_input_string(&p, text, len);

    maa_calibration c;
    memset(&c, 0, sizeof c);
    int line[F_COUNT] = {0};  /* line of each key seen, 0 = missing */
    int rv = MAA_ERR, depth = 0, key = -2;  /* -2: expecting a key */
    int done = 0, docs = 0;
    yaml_event_t ev;
    while (!done) {
        if (!yaml_parser_parse(&p, &ev)) {
            maa_seterr(err, errlen, "%s:%zu: YAML error: %s", path,
                       p.problem_mark.line + 1,
                       p.problem ? p.problem : "unknown");
            goto out;
        }
        int ln = (int)ev.start_mark.line + 1;
        const char *bad = NULL;
        switch (ev.type) {
        case YAML_STREAM_START_EVENT:
        case YAML_DOCUMENT_END_EVENT:
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (docs++ != 0)
                bad = "only one document is allowed";
            break;
        case YAML_STREAM_END_EVENT:
            done = 1;
            break;
        case YAML_MAPPING_START_EVENT:
            if (depth++ != 0)
                bad = "nested mappings are not allowed";
            break;
        case YAML_MAPPING_END_EVENT:
            depth--;
            break;
        case YAML_SCALAR_EVENT: {
            const char *s = (const char *)ev.data.scalar.value;
            if (depth != 1) {
                bad = "expected a mapping of keys to values";
            } else if (key == -2) {
                for (key = 0; key < F_COUNT; key++)
                    if (strcmp(s, field_names[key]) == 0)
                        break;
                if (key == F_COUNT) {
                    maa_seterr(err, errlen, "%s:%d: unknown key '%s'", path,
                               ln, s);
                    yaml_event_delete(&ev);
                    goto out;
                }
                if (line[key]) {
                    maa_seterr(err, errlen, "%s:%d: duplicate key '%s' (first "
                               "on line %d)", path, ln, s, line[key]);
                    yaml_event_delete(&ev);
                    goto out;
                }
                line[key] = ln;
            } else {
                if (set_field(&c, key, s) != 0) {
                    maa_seterr(err, errlen, "%s:%d: %s: '%s' is not %s", path,
                               ln, field_names[key], s, what_expected(key));
                    yaml_event_delete(&ev);
                    goto out;
                }
                key = -2;
            }
            break;
        }
        default:
            bad = "only plain keys and values are allowed (no lists, "
                  "anchors or aliases)";
            break;
        }
        yaml_event_delete(&ev);
        if (bad) {
            maa_seterr(err, errlen, "%s:%d: %s", path, ln, bad);
            goto out;
        }
    }
    for (int i = 0; i < F_COUNT; i++)
        if (!line[i]) {
            maa_seterr(err, errlen, "%s: missing key '%s'", path,
                       field_names[i]);
            goto out;
        }
    int field;
    char why[64];
    if (invalid(&c, &field, why, sizeof why)) {
        maa_seterr(err, errlen, "%s:%d: %s %s", path, line[field],
                   field_names[field], why);
        goto out;
    }
    *out = c;
    rv = MAA_OK;
out:
    yaml_parser_delete(&p);
    free(text);
    return rv;
}
