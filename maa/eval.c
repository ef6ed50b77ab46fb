/* eval.c — `maa eval`: how well a calibrated model finds defects on a
 * labelled set in the MVTec AD layout (ROOT/test/<type>/, good parts in
 * ROOT/test/good, masks in ROOT/ground_truth/<type>/<name>_mask.png). */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "daemon/daemon.h"
#include "maa/maa.h"

static const char usage[] =
    "usage: maa eval --model M --calibration C --data ROOT [--rule R] [--json REPORT]\n"
    "       [--plots DIR] [engine options]\n"
    "Judges every image of ROOT/test/<type>/ and reports, for each decision rule\n"
    "(either, score, mask), the image AUROC of what it ranks by, the recall of\n"
    "defective parts and the share of good parts rejected at the calibrated\n"
    "thresholds; the score's accuracy, precision, recall and F1 at T and at\n"
    "gamma = 0, overall and per defect type (the paper's Table II); pixel AUROC and\n"
    "AUPRO (FPR <= 0.3) where masks exist; and, as the paper's Table III, the image\n"
    "AUROC of two simpler distances for comparison.\n\n"
    MAA_CLI_ENGINE_HELP
    "  --rule R           the rule of the per-image verdicts and worst cases:\n"
    "                     either (default), score or mask\n"
    "  --json REPORT      write the report as JSON\n"
    "  --plots DIR        ROC curve, score distributions and the worst cases as PNG\n";

#define WORST 8

typedef struct {
    char *path, *type;
    int defective;
    double score;
    double l1, markov_l1; /* the paper's Table III distances, beside FMD */
    double mask_score;    /* maa_region_score: a region is kept when > T_pix */
    int evidence;         /* MAA_EVIDENCE_* at the calibrated thresholds */
    int has_gt;
} sample;

/* What a rule ranks parts by, with 1 at its decision boundary: the score
 * over T, the mask's region score over T_pix, or the larger of the two.  A
 * part is rejected exactly when this exceeds 1 (for T, T_pix > 0). */
static double rank_value(const sample *s, const maa_calibration *cal, maa_rule rule)
{
    double by_score = s->score / cal->threshold, by_mask = s->mask_score / cal->pixel_threshold;
    return rule == MAA_RULE_SCORE ? by_score
           : rule == MAA_RULE_MASK ? by_mask
                                   : fmax(by_score, by_mask);
}

static int rejects(const sample *s, maa_rule rule)
{
    return (s->evidence & maa_rule_evidence(rule)) != 0;
}

/* Mean |a - b| over n values, in double. */
static double mean_abs_diff(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += fabs((double)a[i] - b[i]);
    return s / (double)n;
}

typedef struct {
    int tp, fp, tn, fn;
} counts;

static void tally(counts *c, int defective, int rejected)
{
    if (defective)
        rejected ? c->tp++ : c->fn++;
    else
        rejected ? c->fp++ : c->tn++;
}

static double ratio(int a, int b) { return b ? (double)a / b : NAN; }

static json_t *num(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static json_t *rates(const counts *c, double *acc, double *prec, double *rec, double *f1)
{
    *acc = ratio(c->tp + c->tn, c->tp + c->tn + c->fp + c->fn);
    *prec = ratio(c->tp, c->tp + c->fp);
    *rec = ratio(c->tp, c->tp + c->fn);
    *f1 = (*prec + *rec) > 0 ? 2 * *prec * *rec / (*prec + *rec) : NAN;
    return json_pack("{s:o,s:o,s:o,s:o,s:i,s:i,s:i,s:i}", "accuracy", num(*acc), "precision",
                     num(*prec), "recall", num(*rec), "f1", num(*f1), "tp", c->tp, "fp", c->fp,
                     "tn", c->tn, "fn", c->fn);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The defect types: subfolders of ROOT/test, "good" first. */
static char **list_types(const char *root, int *n)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/test", root);
    DIR *d = opendir(dir);
    *n = 0;
    if (!d) {
        fprintf(stderr, "maa eval: %s: %s (expected the MVTec AD layout ROOT/test/<type>/)\n", dir,
                strerror(errno));
        return NULL;
    }
    char **types = calloc(256, sizeof *types);
    struct dirent *e;
    while (types && (e = readdir(d)) && *n < 256) {
        char p[4608];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (e->d_name[0] != '.' && !stat(p, &st) && S_ISDIR(st.st_mode))
            types[(*n)++] = strdup(e->d_name);
    }
    closedir(d);
    if (types)
        qsort(types, (size_t)*n, sizeof *types, cmp_str);
    return types;
}

/* The ground-truth mask of a defective image at the model's size, as 0/1. */
static int load_gt(const char *root, const sample *s, int size, float *tmp, uint8_t *gt)
{
    char *copy = strdup(s->path), *base = basename(copy), *dot = strrchr(base, '.');
    if (dot)
        *dot = 0;
    char p[4096], err[MAA_ERRLEN];
    snprintf(p, sizeof p, "%s/ground_truth/%s/%s_mask.png", root, s->type, base);
    free(copy);
    maa_image im;
    if (maa_image_load(p, &im, err, sizeof err))
        return MAA_ERR;
    int rc = maa_preprocess(&im, size, 1, tmp, err, sizeof err);
    maa_image_free(&im);
    if (rc) {
        fprintf(stderr, "maa eval: %s\n", err);
        return MAA_ERR;
    }
    for (int i = 0; i < size * size; i++)
        gt[i] = tmp[i] > 0; /* more than half-covered after resizing */
    return MAA_OK;
}

/* 8-connected labels of a 0/1 mask, continuing from *next (1-based ids). */
static void label_regions(const uint8_t *gt, int s, int *region, int *next, int *stack)
{
    for (int i = 0; i < s * s; i++)
        region[i] = 0;
    for (int i = 0; i < s * s; i++) {
        if (!gt[i] || region[i])
            continue;
        int id = (*next)++, top = 0;
        region[i] = id;
        stack[top++] = i;
        while (top) {
            int p = stack[--top], y = p / s, x = p % s;
            for (int dy = -1; dy <= 1; dy++)
                for (int dx = -1; dx <= 1; dx++) {
                    int yy = y + dy, xx = x + dx;
                    if (yy < 0 || yy >= s || xx < 0 || xx >= s)
                        continue;
                    int q = yy * s + xx;
                    if (gt[q] && !region[q]) {
                        region[q] = id;
                        stack[top++] = q;
                    }
                }
        }
    }
}

static void to_png(const char *path, const float *x, int c, int s)
{
    uint8_t *px = malloc((size_t)c * s * s);
    if (!px)
        return;
    for (int y = 0; y < s * s; y++)
        for (int k = 0; k < c; k++) {
            float v = (x[(size_t)k * s * s + y] + 1) * 127.5f;
            px[(size_t)y * c + k] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v + 0.5f);
        }
    char err[MAA_ERRLEN];
    if (maa_png_write(path, px, s, s, c, err, sizeof err))
        fprintf(stderr, "maa eval: %s\n", err);
    free(px);
}

int maa_cmd_eval(int argc, char **argv)
{
    static const struct option opts[] = {MAA_CLI_ENGINE_OPTIONS, {"data", 1, 0, 'd'},
                                         {"json", 1, 0, 'j'}, {"plots", 1, 0, 'p'},
                                         {"rule", 1, 0, 'r'},
                                         {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    maa_cli_engine ce;
    maa_cli_engine_init(&ce);
    const char *root = NULL, *json_path = NULL, *plots = NULL;
    maa_rule rule = MAA_RULE_EITHER;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int r = maa_cli_engine_option(&ce, c, optarg);
        if (r < 0)
            return 2;
        if (r)
            continue;
        switch (c) {
        case 'd': root = optarg; break;
        case 'j': json_path = optarg; break;
        case 'p': plots = optarg; break;
        case 'r':
            if (maa_rule_parse(optarg, &rule)) {
                fprintf(stderr, "maa eval: --rule \"%s\": need either, score or mask\n", optarg);
                return 2;
            }
            break;
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (!root || !ce.calibration || optind != argc) {
        fprintf(stderr, "maa eval: --model, --calibration and --data are required\n%s", usage);
        return 2;
    }
    if (plots && mkdir(plots, 0777) && errno != EEXIST) {
        fprintf(stderr, "maa eval: --plots %s: %s\n", plots, strerror(errno));
        return 2;
    }
    int ntypes = 0, ns = 0, status = 1;
    char **types = list_types(root, &ntypes);
    if (!types)
        return 1;
    sample *ss = NULL;
    maa_model *m = NULL;
    maa_inspector *in = NULL;
    maa_calibration cal;
    float *x = NULL, *pix = NULL, *tmp = NULL;
    uint8_t *gt = NULL;
    int *region = NULL, *stack = NULL;
    maa_result *res = NULL;
    const char **paths = NULL;
    json_t *report = NULL;
    char err[MAA_ERRLEN];

    for (int t = 0; t < ntypes; t++) {
        char dir[4096];
        int n;
        snprintf(dir, sizeof dir, "%s/test/%s", root, types[t]);
        char **files = maa_cli_list_images(dir, &n);
        sample *bigger = files ? realloc(ss, (size_t)(ns + n + 1) * sizeof *ss) : NULL;
        if (!bigger) {
            maa_cli_free_list(files, n);
            goto out;
        }
        ss = bigger;
        for (int i = 0; i < n; i++)
            ss[ns++] = (sample){.path = files[i], .type = types[t],
                                .defective = strcmp(types[t], "good") != 0};
        free(files); /* the paths now belong to ss */
    }
    int ngood = 0;
    for (int i = 0; i < ns; i++)
        ngood += !ss[i].defective;
    if (ngood == 0 || ngood == ns) {
        fprintf(stderr, "maa eval: %s/test needs good images (test/good) and defective ones\n", root);
        goto out;
    }
    if (maa_cli_load(&ce, &m, &cal, NULL))
        goto out;
    cal.rule = rule;
    if (maa_inspector_create(m, &ce.engine, &in, err, sizeof err)) {
        fprintf(stderr, "maa eval: %s\n", err);
        goto out;
    }
    const maa_model_info *info = maa_model_get_info(m);
    const int B = ce.engine.max_batch, S = info->image_size;
    const size_t img = (size_t)info->channels * S * S, s2 = (size_t)S * S;
    const size_t mk = (size_t)info->markov_size * info->markov_size;
    x = malloc((size_t)B * img * sizeof *x);
    res = malloc((size_t)B * sizeof *res);
    paths = malloc((size_t)B * sizeof *paths);
    pix = malloc((size_t)ns * s2 * sizeof *pix);
    region = malloc((size_t)ns * s2 * sizeof *region);
    tmp = malloc(s2 * sizeof *tmp);
    gt = malloc(s2);
    stack = malloc(3 * s2 * sizeof *stack); /* also maa_region_score's scratch */
    if (!x || !res || !paths || !pix || !region || !tmp || !gt || !stack) {
        fprintf(stderr, "maa eval: out of memory for %d images\n", ns);
        goto out;
    }
    int next_region = 1, npix_images = 0;
    for (int i = 0; i < ns; i += B) {
        int k = ns - i < B ? ns - i : B;
        for (int j = 0; j < k; j++)
            paths[j] = ss[i + j].path;
        if (maa_cli_inspect_files(in, &cal, info, paths, k, x, res, err, sizeof err)) {
            fprintf(stderr, "maa eval: %s\n", err);
            goto out;
        }
        for (int j = 0; j < k; j++) {
            sample *s = &ss[i + j];
            s->score = res[j].score;
            s->l1 = mean_abs_diff(x + (size_t)j * img, maa_inspector_recon(in, j), img);
            s->markov_l1 = mean_abs_diff(maa_inspector_markov(in, j, 0),
                                         maa_inspector_markov(in, j, 1), mk);
            s->evidence = res[j].evidence;
            s->mask_score = maa_region_score(maa_inspector_varmap(in, j), S,
                                             cal.min_region_area, stack);
            /* Pixel metrics use the images whose truth is known: good parts
             * (no defect pixel) and defective parts with a mask file. */
            s->has_gt = !s->defective || load_gt(root, s, S, tmp, gt) == MAA_OK;
            if (!s->has_gt)
                continue;
            if (!s->defective)
                memset(gt, 0, s2);
            memcpy(pix + (size_t)npix_images * s2, maa_inspector_varmap(in, j), s2 * sizeof *pix);
            label_regions(gt, S, region + (size_t)npix_images * s2, &next_region, stack);
            npix_images++;
        }
        maa_cli_progress("maa eval:", i + k, ns);
    }

    /* Image-level metrics. */
    float *sc = malloc((size_t)ns * sizeof *sc);
    uint8_t *lab = malloc((size_t)ns);
    uint8_t *pl = malloc((size_t)npix_images * s2);
    if (!sc || !lab || !pl) {
        free(sc), free(lab), free(pl);
        fprintf(stderr, "maa eval: out of memory\n");
        goto out;
    }
    for (int i = 0; i < ns; i++)
        sc[i] = (float)ss[i].l1, lab[i] = (uint8_t)ss[i].defective;
    double auroc_l1 = maa_auroc(sc, lab, (size_t)ns);
    for (int i = 0; i < ns; i++)
        sc[i] = (float)ss[i].markov_l1;
    double auroc_markov_l1 = maa_auroc(sc, lab, (size_t)ns);
    for (int i = 0; i < ns; i++)
        sc[i] = (float)ss[i].score;
    double auroc = maa_auroc(sc, lab, (size_t)ns);
    for (size_t p = 0; p < (size_t)npix_images * s2; p++)
        pl[p] = region[p] != 0;
    double pixel_auroc = maa_auroc(pix, pl, (size_t)npix_images * s2);
    double aupro = maa_aupro(pix, region, (size_t)npix_images * s2, next_region - 1, 0.3);
    free(pl);

    /* Each rule at the calibrated thresholds: AUROC of what it ranks by,
     * recall of defective parts, share of good parts rejected. */
    static const char *const ranks_by[] = {"max(FMD / T, mask score / T_pix)", "FMD",
                                           "mask score"};
    json_t *rules = json_object();
    double rule_auroc[3], rule_recall[3], rule_frr[3];
    for (int r = 0; r < 3; r++) {
        int rej_bad = 0, rej_good = 0;
        for (int i = 0; i < ns; i++) {
            sc[i] = (float)rank_value(&ss[i], &cal, (maa_rule)r);
            if (rejects(&ss[i], (maa_rule)r))
                ss[i].defective ? rej_bad++ : rej_good++;
        }
        rule_auroc[r] = maa_auroc(sc, lab, (size_t)ns);
        rule_recall[r] = ratio(rej_bad, ns - ngood);
        rule_frr[r] = ratio(rej_good, ngood);
        json_object_set_new(rules, maa_rule_name((maa_rule)r),
                            json_pack("{s:s,s:o,s:o,s:o,s:i,s:i}", "ranks_by", ranks_by[r],
                                      "image_auroc", num(rule_auroc[r]), "recall",
                                      num(rule_recall[r]), "false_reject_rate",
                                      num(rule_frr[r]), "defective_rejected", rej_bad,
                                      "good_rejected", rej_good));
    }
    for (int i = 0; i < ns; i++)
        sc[i] = (float)ss[i].score;

    const double t0 = cal.mu; /* gamma = 0: the paper's setting */
    counts at_t = {0}, at_0 = {0};
    for (int i = 0; i < ns; i++) {
        tally(&at_t, ss[i].defective, ss[i].score > cal.threshold);
        tally(&at_0, ss[i].defective, ss[i].score > t0);
    }
    double acc, prec, rec, f1, acc0, prec0, rec0, f10;
    report = json_object();
    json_t *rt = rates(&at_t, &acc, &prec, &rec, &f1), *r0 = rates(&at_0, &acc0, &prec0, &rec0, &f10);
    json_object_set_new(report, "image_auroc", num(auroc));
    json_object_set_new(report, "pixel_auroc", num(pixel_auroc));
    json_object_set_new(report, "aupro", num(aupro));
    json_object_set_new(report, "image_auroc_by_distance",
                        json_pack("{s:o,s:o,s:o}", "l1", num(auroc_l1), "markov_l1",
                                  num(auroc_markov_l1), "fmd", num(auroc)));
    json_object_set_new(report, "accuracy", num(acc));
    json_object_set_new(report, "precision", num(prec));
    json_object_set_new(report, "recall", num(rec));
    json_object_set_new(report, "f1", num(f1));
    json_object_set_new(report, "rule", json_string(maa_rule_name(rule)));
    json_object_set_new(report, "rules", rules);
    json_object_set_new(report, "pixel_threshold", json_real(cal.pixel_threshold));
    json_object_set_new(report, "min_region_area", json_integer(cal.min_region_area));
    json_object_set_new(report, "gamma", json_real(cal.gamma));
    json_object_set_new(report, "threshold", json_real(cal.threshold));
    json_object_set_new(report, "at_threshold", rt);
    json_object_set_new(report, "gamma0", json_pack("{s:f,s:o}", "threshold", t0, "rates", r0));
    json_object_set_new(report, "n_good", json_integer(ngood));
    json_object_set_new(report, "n_defective", json_integer(ns - ngood));

    printf("maa eval: %s on %s (%d good, %d defective)\n", maa_model_path(m), root, ngood, ns - ngood);
    printf("  decision at the calibrated thresholds (T = %.6g, T_pix = %.6g, min area %d px):\n",
           cal.threshold, cal.pixel_threshold, cal.min_region_area);
    printf("  %-7s %-34s %7s %7s %14s\n", "rule", "ranks parts by", "AUROC", "recall",
           "good rejected");
    for (int r = 0; r < 3; r++)
        printf("  %-7s %-34s %7.4f %7.4f %7.2f%%%s\n", maa_rule_name((maa_rule)r), ranks_by[r],
               rule_auroc[r], rule_recall[r], 100 * rule_frr[r],
               r == (int)rule ? "   <- verdicts below" : "");
    printf("\n  score (FMD): image AUROC %.4f   mask: pixel AUROC %.4f   AUPRO(0.3) %.4f\n", auroc,
           pixel_auroc, aupro);
    printf("  image AUROC by distance (paper Table III): L1 %.4f   Markov+L1 %.4f   FMD %.4f\n"
           "    (L1: mean |x - G(x)|; Markov+L1: mean |f(x) - f(G(x))|; the score is FMD)\n",
           auroc_l1, auroc_markov_l1, auroc);
    printf("\n  the score alone (the paper's Table II):\n");
    printf("  %-12s %5s %7s | %-31s | %-31s\n", "", "", "", "at T (gamma as calibrated)",
           "at gamma = 0 (T = mu)");
    printf("  %-12s %5s %7s | %7s %7s %7s %7s | %7s %7s %7s %7s\n", "type", "n", "AUROC", "acc",
           "prec", "recall", "F1", "acc", "prec", "recall", "F1");
    printf("  %-12s %5d %7.4f | %7.4f %7.4f %7.4f %7.4f | %7.4f %7.4f %7.4f %7.4f\n", "all", ns,
           auroc, acc, prec, rec, f1, acc0, prec0, rec0, f10);
    json_t *per = json_object();
    for (int t = 0; t < ntypes; t++) {
        int n = 0, by_rule = 0;
        counts ct = {0}, c0 = {0};
        for (int i = 0; i < ns; i++) {
            if (strcmp(ss[i].type, types[t]))
                continue;
            n++;
            by_rule += rejects(&ss[i], rule);
            tally(&ct, ss[i].defective, ss[i].score > cal.threshold);
            tally(&c0, ss[i].defective, ss[i].score > t0);
        }
        /* Per type: that type against the good parts. */
        int k = 0;
        for (int i = 0; i < ns; i++)
            if (!ss[i].defective || !strcmp(ss[i].type, types[t]))
                sc[k] = (float)ss[i].score, lab[k++] = (uint8_t)ss[i].defective;
        double a = strcmp(types[t], "good") ? maa_auroc(sc, lab, (size_t)k) : NAN;
        double ta, tp, tr, tf, za, zp, zr, zf;
        json_t *jt = rates(&ct, &ta, &tp, &tr, &tf), *j0 = rates(&c0, &za, &zp, &zr, &zf);
        json_object_set_new(per, types[t], json_pack("{s:i,s:o,s:o,s:o,s:o,s:o,s:o}", "n", n,
                                                     "auroc", num(a), "recall", num(tr),
                                                     "recall_gamma0", num(zr), "rejected_by_rule",
                                                     num(ratio(by_rule, n)), "at_threshold", jt,
                                                     "gamma0", j0));
        int good = !strcmp(types[t], "good");
        if (good) { /* for good parts: the share passed */
            tr = ratio(ct.tn, ct.tn + ct.fp);
            zr = ratio(c0.tn, c0.tn + c0.fp);
            json_object_set_new(json_object_get(per, types[t]), "pass_rate", num(tr));
        }
        printf("  %-12s %5d %7.4f | %7.4f %7s %7.4f %7s | %7.4f %7s %7.4f %7s\n", types[t], n, a, ta,
               "", tr, "", za, "", zr, "");
    }
    json_object_set_new(report, "per_type", per);
    printf("  (per type: AUROC of that type against the good parts; recall of a defect type,\n"
           "   for good parts the share passed)\n");
    printf("\n  rejected by rule %s, per type:", maa_rule_name(rule));
    for (int t = 0; t < ntypes; t++)
        printf(" %s %.2f", types[t],
               json_real_value(json_object_get(json_object_get(per, types[t]), "rejected_by_rule")));
    printf("\n");

    json_t *jimgs = json_array();
    for (int i = 0; i < ns; i++) {
        json_t *ev = maad_evidence_json(ss[i].evidence);
        json_array_append_new(jimgs, json_pack("{s:s,s:s,s:b,s:f,s:f,s:f,s:f,s:o,s:s}", "image",
                                               ss[i].path, "type", ss[i].type, "defective",
                                               ss[i].defective, "score", ss[i].score, "l1",
                                               ss[i].l1, "markov_l1", ss[i].markov_l1,
                                               "mask_score", ss[i].mask_score, "evidence", ev,
                                               "verdict", rejects(&ss[i], rule) ? "reject" : "pass"));
    }
    json_object_set_new(report, "images", jimgs);
    free(sc);
    free(lab);

    if (plots) {
        /* The worst cases: the defective parts ranked lowest and the good
         * parts ranked highest, relative to the rule's decision boundary. */
        int order[WORST], nw = 0;
        int *used = calloc((size_t)ns, sizeof *used);
        for (; used && nw < WORST && nw < ns; nw++) {
            int best = -1;
            double worst = -INFINITY;
            for (int i = 0; i < ns; i++) {
                double v = rank_value(&ss[i], &cal, rule);
                double badness = ss[i].defective ? 1 - v : v - 1;
                if (!used[i] && badness > worst)
                    worst = badness, best = i;
            }
            used[best] = 1;
            order[nw] = best;
        }
        free(used);
        json_t *cases = json_array();
        for (int w = 0; w < nw; w++) {
            sample *s = &ss[order[w]];
            if (maa_cli_read_input(s->path, info, x, err, sizeof err) ||
                maa_inspect(in, &cal, 1, x, res, err, sizeof err))
                continue;
            char rp[4608], mp[4608];
            snprintf(rp, sizeof rp, "%s/case%d_recon.png", plots, w);
            snprintf(mp, sizeof mp, "%s/case%d_mask.png", plots, w);
            to_png(rp, maa_inspector_recon(in, 0), info->channels, S);
            if (maa_png_write(mp, maa_inspector_mask(in, 0), S, S, 1, err, sizeof err))
                fprintf(stderr, "maa eval: %s\n", err);
            json_array_append_new(cases, json_pack("{s:s,s:s,s:s,s:s,s:f}", "image", s->path,
                                                   "type", s->type, "recon", rp, "mask", mp,
                                                   "score", s->score));
        }
        json_object_set_new(report, "worst_cases", cases);
        char rpath[4608];
        snprintf(rpath, sizeof rpath, "%s/report.json", plots);
        if (json_dump_file(report, rpath, JSON_INDENT(1) | JSON_REAL_PRECISION(17)) == 0) {
            const char *args[] = {"--report", rpath, "--out", plots, NULL};
            if (maa_cli_run_script("plot_eval.py", args) == MAA_OK)
                printf("  plots in %s (roc.png, scores.png, worst.png)\n", plots);
        }
    }
    if (json_path && json_dump_file(report, json_path, JSON_INDENT(1) | JSON_REAL_PRECISION(17))) {
        fprintf(stderr, "maa eval: cannot write %s\n", json_path);
        goto out;
    }
    status = 0;
out:
    json_decref(report);
    for (int i = 0; i < ns; i++)
        free(ss[i].path);
    free(ss);
    for (int t = 0; t < ntypes; t++)
        free(types[t]);
    free(types);
    free(x);
    free(res);
    free(paths);
    free(pix);
    free(region);
    free(tmp);
    free(gt);
    free(stack);
    maa_inspector_free(in);
    maa_model_free(m);
    return status;
}
