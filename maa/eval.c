/* eval.c — `maa eval`: how well a calibrated model finds defects on a
 * labelled set in the MVTec AD layout (ROOT/test/<type>/, good parts in
 * ROOT/test/good, masks in ROOT/ground_truth/<type>/<name>_mask.png). */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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

static json_t *rates(const counts *c, double *acc, double *prec, double *rec, double *f1)
{
    *acc = maa_cli_ratio(c->tp + c->tn, c->tp + c->tn + c->fp + c->fn);
    *prec = maa_cli_ratio(c->tp, c->tp + c->fp);
    *rec = maa_cli_ratio(c->tp, c->tp + c->fn);
    *f1 = (*prec + *rec) > 0 ? 2 * *prec * *rec / (*prec + *rec) : NAN;
    return json_pack("{s:o,s:o,s:o,s:o,s:i,s:i,s:i,s:i}", "accuracy", maa_cli_json_num(*acc),
                     "precision", maa_cli_json_num(*prec), "recall", maa_cli_json_num(*rec), "f1",
                     maa_cli_json_num(*f1), "tp", c->tp, "fp", c->fp, "tn", c->tn, "fn", c->fn);
}

/* The ground-truth mask of a defective image at the model's size, as 0/1. */
static int load_gt(const char *root, const maa_cli_part *s, int size, float *tmp, uint8_t *gt)
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

/* What eval gathers beyond the judgement, batch by batch: the paper's
 * Table III distances, and the variance maps and ground truth of the images
 * whose truth is known, for the pixel-level metrics. */
typedef struct {
    const char *root;
    const maa_cli_set *set;
    const maa_model_info *info;
    double *l1, *markov_l1;
    float *pix;      /* variance maps, S x S each */
    int *region;     /* their truth: 0, or a 1-based region id, per pixel */
    int npix_images, next_region;
    float *tmp;      /* scratch: S x S */
    uint8_t *gt;     /* scratch: S x S */
    int *stack;      /* scratch: 3 S x S */
} gather;

static int gather_batch(void *user, const maa_inspector *in, int first, int k, const float *x)
{
    gather *g = user;
    const int S = g->info->image_size;
    const size_t img = (size_t)g->info->channels * S * S, s2 = (size_t)S * S;
    const size_t mk = (size_t)g->info->markov_size * g->info->markov_size;
    for (int j = 0; j < k; j++) {
        const maa_cli_part *p = &g->set->parts[first + j];
        g->l1[first + j] = mean_abs_diff(x + (size_t)j * img, maa_inspector_recon(in, j), img);
        g->markov_l1[first + j] = mean_abs_diff(maa_inspector_markov(in, j, 0),
                                                maa_inspector_markov(in, j, 1), mk);
        /* Pixel metrics use the images whose truth is known: good parts
         * (no defect pixel) and defective parts with a mask file. */
        if (p->defective && load_gt(g->root, p, S, g->tmp, g->gt) != MAA_OK)
            continue;
        if (!p->defective)
            memset(g->gt, 0, s2);
        memcpy(g->pix + (size_t)g->npix_images * s2, maa_inspector_varmap(in, j),
               s2 * sizeof *g->pix);
        label_regions(g->gt, S, g->region + (size_t)g->npix_images * s2, &g->next_region,
                      g->stack);
        g->npix_images++;
    }
    return 0;
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
    maa_cli_set set;
    if (maa_cli_set_load("maa eval", root, &set))
        return 1;
    const int ns = set.n, ngood = set.ngood, ntypes = set.ntypes;
    char *const *types = set.types;
    int status = 1;
    maa_model *m = NULL;
    maa_inspector *in = NULL;
    maa_calibration cal;
    maa_cli_judged *jd = NULL;
    gather g = {.root = root, .set = &set, .next_region = 1};
    json_t *report = NULL;
    char err[MAA_ERRLEN];

    if (maa_cli_load(&ce, &m, &cal, NULL))
        goto out;
    cal.rule = rule;
    if (maa_inspector_create(m, &ce.engine, &in, err, sizeof err)) {
        fprintf(stderr, "maa eval: %s\n", err);
        goto out;
    }
    const maa_model_info *info = maa_model_get_info(m);
    const int S = info->image_size;
    const size_t s2 = (size_t)S * S;
    g.info = info;
    jd = malloc((size_t)ns * sizeof *jd);
    g.l1 = malloc((size_t)ns * sizeof *g.l1);
    g.markov_l1 = malloc((size_t)ns * sizeof *g.markov_l1);
    g.pix = malloc((size_t)ns * s2 * sizeof *g.pix);
    g.region = malloc((size_t)ns * s2 * sizeof *g.region);
    g.tmp = malloc(s2 * sizeof *g.tmp);
    g.gt = malloc(s2);
    g.stack = malloc(3 * s2 * sizeof *g.stack);
    if (!jd || !g.l1 || !g.markov_l1 || !g.pix || !g.region || !g.tmp || !g.gt || !g.stack) {
        fprintf(stderr, "maa eval: out of memory for %d images\n", ns);
        goto out;
    }
    if (maa_cli_judge_set("maa eval", in, &cal, info, ce.engine.max_batch, &set, jd, gather_batch,
                          &g))
        goto out;
    const int npix_images = g.npix_images;

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
        sc[i] = (float)g.l1[i], lab[i] = (uint8_t)set.parts[i].defective;
    double auroc_l1 = maa_auroc(sc, lab, (size_t)ns);
    for (int i = 0; i < ns; i++)
        sc[i] = (float)g.markov_l1[i];
    double auroc_markov_l1 = maa_auroc(sc, lab, (size_t)ns);
    for (int i = 0; i < ns; i++)
        sc[i] = (float)jd[i].score;
    double auroc = maa_auroc(sc, lab, (size_t)ns);
    for (size_t p = 0; p < (size_t)npix_images * s2; p++)
        pl[p] = g.region[p] != 0;
    double pixel_auroc = maa_auroc(g.pix, pl, (size_t)npix_images * s2);
    double aupro = maa_aupro(g.pix, g.region, (size_t)npix_images * s2, g.next_region - 1, 0.3);
    free(pl);

    /* Each rule at the calibrated thresholds: AUROC of what it ranks by,
     * recall of defective parts, share of good parts rejected. */
    json_t *rules = json_object();
    maa_cli_decision dec[3];
    for (int r = 0; r < 3; r++) {
        if (maa_cli_decide(&set, jd, &cal, (maa_rule)r, &dec[r])) {
            free(sc), free(lab), json_decref(rules);
            goto out;
        }
        json_object_set_new(rules, maa_rule_name((maa_rule)r),
                            maa_cli_decision_json(&dec[r], (maa_rule)r));
    }

    const double t0 = cal.mu; /* gamma = 0: the paper's setting */
    counts at_t = {0}, at_0 = {0};
    for (int i = 0; i < ns; i++) {
        tally(&at_t, set.parts[i].defective, jd[i].score > cal.threshold);
        tally(&at_0, set.parts[i].defective, jd[i].score > t0);
    }
    double acc, prec, rec, f1, acc0, prec0, rec0, f10;
    report = json_object();
    json_t *rt = rates(&at_t, &acc, &prec, &rec, &f1), *r0 = rates(&at_0, &acc0, &prec0, &rec0, &f10);
    json_object_set_new(report, "image_auroc", maa_cli_json_num(auroc));
    json_object_set_new(report, "pixel_auroc", maa_cli_json_num(pixel_auroc));
    json_object_set_new(report, "aupro", maa_cli_json_num(aupro));
    json_object_set_new(report, "image_auroc_by_distance",
                        json_pack("{s:o,s:o,s:o}", "l1", maa_cli_json_num(auroc_l1),
                                  "markov_l1", maa_cli_json_num(auroc_markov_l1), "fmd",
                                  maa_cli_json_num(auroc)));
    json_object_set_new(report, "accuracy", maa_cli_json_num(acc));
    json_object_set_new(report, "precision", maa_cli_json_num(prec));
    json_object_set_new(report, "recall", maa_cli_json_num(rec));
    json_object_set_new(report, "f1", maa_cli_json_num(f1));
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
        printf("  %-7s %-34s %7.4f %7.4f %7.2f%%%s\n", maa_rule_name((maa_rule)r),
               maa_cli_ranks_by((maa_rule)r), dec[r].image_auroc, dec[r].recall,
               100 * dec[r].false_reject_rate,
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
            const maa_cli_part *p = &set.parts[i];
            if (strcmp(p->type, types[t]))
                continue;
            n++;
            by_rule += maa_cli_rejects(&jd[i], rule);
            tally(&ct, p->defective, jd[i].score > cal.threshold);
            tally(&c0, p->defective, jd[i].score > t0);
        }
        /* Per type: that type against the good parts. */
        int k = 0;
        for (int i = 0; i < ns; i++)
            if (!set.parts[i].defective || !strcmp(set.parts[i].type, types[t]))
                sc[k] = (float)jd[i].score, lab[k++] = (uint8_t)set.parts[i].defective;
        double a = strcmp(types[t], "good") ? maa_auroc(sc, lab, (size_t)k) : NAN;
        double ta, tp, tr, tf, za, zp, zr, zf;
        json_t *jt = rates(&ct, &ta, &tp, &tr, &tf), *j0 = rates(&c0, &za, &zp, &zr, &zf);
        json_object_set_new(per, types[t],
                            json_pack("{s:i,s:o,s:o,s:o,s:o,s:o,s:o}", "n", n, "auroc",
                                      maa_cli_json_num(a), "recall", maa_cli_json_num(tr),
                                      "recall_gamma0", maa_cli_json_num(zr), "rejected_by_rule",
                                      maa_cli_json_num(maa_cli_ratio(by_rule, n)),
                                      "at_threshold", jt, "gamma0", j0));
        int good = !strcmp(types[t], "good");
        if (good) { /* for good parts: the share passed */
            tr = maa_cli_ratio(ct.tn, ct.tn + ct.fp);
            zr = maa_cli_ratio(c0.tn, c0.tn + c0.fp);
            json_object_set_new(json_object_get(per, types[t]), "pass_rate",
                                maa_cli_json_num(tr));
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
        json_t *ji = json_pack("{s:s,s:s,s:b,s:f,s:f}", "image", set.parts[i].path, "type",
                               set.parts[i].type, "defective", set.parts[i].defective, "l1",
                               g.l1[i], "markov_l1", g.markov_l1[i]);
        json_object_update_new(ji, maa_cli_judged_json(&jd[i], rule));
        json_array_append_new(jimgs, ji);
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
                double v = maa_cli_rank_value(&jd[i], &cal, rule);
                double badness = set.parts[i].defective ? 1 - v : v - 1;
                if (!used[i] && badness > worst)
                    worst = badness, best = i;
            }
            used[best] = 1;
            order[nw] = best;
        }
        free(used);
        json_t *cases = json_array();
        for (int w = 0; w < nw; w++) {
            const maa_cli_part *p = &set.parts[order[w]];
            char rp[4608], mp[4608];
            snprintf(rp, sizeof rp, "%s/case%d_recon.png", plots, w);
            snprintf(mp, sizeof mp, "%s/case%d_mask.png", plots, w);
            if (maa_cli_write_case("maa eval", in, &cal, info, p->path, rp, mp))
                continue;
            json_array_append_new(cases, json_pack("{s:s,s:s,s:s,s:s,s:f}", "image", p->path,
                                                   "type", p->type, "recon", rp, "mask", mp,
                                                   "score", jd[order[w]].score));
        }
        json_object_set_new(report, "worst_cases", cases);
        char rpath[4608];
        snprintf(rpath, sizeof rpath, "%s/report.json", plots);
        if (maa_cli_write_json("maa eval", report, rpath) == MAA_OK) {
            const char *args[] = {"--report", rpath, "--out", plots, NULL};
            if (maa_cli_run_script("plot_eval.py", args) == MAA_OK)
                printf("  plots in %s (roc.png, scores.png, worst.png)\n", plots);
        }
    }
    if (json_path && maa_cli_write_json("maa eval", report, json_path))
        goto out;
    status = 0;
out:
    json_decref(report);
    free(jd);
    free(g.l1);
    free(g.markov_l1);
    free(g.pix);
    free(g.region);
    free(g.tmp);
    free(g.gt);
    free(g.stack);
    maa_cli_set_free(&set);
    maa_inspector_free(in);
    maa_model_free(m);
    return status;
}
