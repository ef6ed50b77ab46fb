/* judge.c — a labelled set in the MVTec AD layout judged by one calibrated
 * model, and each decision rule's numbers on it: what maa eval reports and
 * what maa compare sets side by side, computed once so that the two always
 * agree. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/daemon.h"
#include "maa/maa.h"

double maa_cli_ratio(int a, int b) { return b ? (double)a / b : NAN; }

json_t *maa_cli_json_num(double v) { return isfinite(v) ? json_real(v) : json_null(); }

void maa_cli_set_free(maa_cli_set *set)
{
    for (int i = 0; i < set->n; i++)
        free(set->parts[i].path);
    free(set->parts);
    maa_cli_free_list(set->types, set->ntypes);
    memset(set, 0, sizeof *set);
}

int maa_cli_set_load(const char *who, const char *root, maa_cli_set *set)
{
    memset(set, 0, sizeof *set);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/test", root);
    set->types = maa_cli_list_subdirs(dir, &set->ntypes);
    if (!set->types) {
        fprintf(stderr, "%s: expected the MVTec AD layout ROOT/test/<type>/\n", who);
        return MAA_ERR;
    }
    for (int t = 0; t < set->ntypes; t++) {
        int n;
        snprintf(dir, sizeof dir, "%s/test/%s", root, set->types[t]);
        char **files = maa_cli_list_images(dir, &n);
        maa_cli_part *bigger =
            files ? realloc(set->parts, (size_t)(set->n + n + 1) * sizeof *bigger) : NULL;
        if (!bigger) {
            maa_cli_free_list(files, n);
            maa_cli_set_free(set);
            return MAA_ERR;
        }
        set->parts = bigger;
        for (int i = 0; i < n; i++) {
            int defective = strcmp(set->types[t], "good") != 0;
            set->parts[set->n++] = (maa_cli_part){.path = files[i], .type = set->types[t],
                                                  .defective = defective};
            set->ngood += !defective;
        }
        free(files); /* the paths now belong to the set */
    }
    if (set->ngood == 0 || set->ngood == set->n) {
        fprintf(stderr, "%s: %s/test needs good images (test/good) and defective ones\n", who,
                root);
        maa_cli_set_free(set);
        return MAA_ERR;
    }
    return MAA_OK;
}

int maa_cli_judge_set(const char *who, maa_inspector *in, const maa_calibration *cal,
                      const maa_model_info *info, int batch, const maa_cli_set *set,
                      maa_cli_judged *out, maa_cli_batch_fn each, void *user)
{
    const int S = info->image_size;
    const size_t img = (size_t)info->channels * S * S;
    float *x = malloc((size_t)batch * img * sizeof *x);
    maa_result *res = malloc((size_t)batch * sizeof *res);
    const char **paths = malloc((size_t)batch * sizeof *paths);
    int *scratch = malloc(3 * (size_t)S * S * sizeof *scratch);
    int rc = MAA_ERR;
    char err[MAA_ERRLEN];
    if (!x || !res || !paths || !scratch) {
        fprintf(stderr, "%s: out of memory for a batch of %d\n", who, batch);
        goto out;
    }
    for (int i = 0; i < set->n; i += batch) {
        int k = set->n - i < batch ? set->n - i : batch;
        for (int j = 0; j < k; j++)
            paths[j] = set->parts[i + j].path;
        if (maa_cli_inspect_files(in, cal, info, paths, k, x, res, err, sizeof err)) {
            fprintf(stderr, "%s: %s\n", who, err);
            goto out;
        }
        for (int j = 0; j < k; j++)
            out[i + j] = (maa_cli_judged){
                .score = res[j].score,
                .mask_score = maa_region_score(maa_inspector_varmap(in, j), S,
                                               cal->min_region_area, scratch),
                .evidence = res[j].evidence};
        if (each && each(user, in, i, k, x))
            goto out;
        maa_cli_progress(who, i + k, set->n);
    }
    rc = MAA_OK;
out:
    free(x);
    free(res);
    free(paths);
    free(scratch);
    return rc;
}

double maa_cli_rank_value(const maa_cli_judged *j, const maa_calibration *cal, maa_rule rule)
{
    double by_score = j->score / cal->threshold, by_mask = j->mask_score / cal->pixel_threshold;
    return rule == MAA_RULE_SCORE ? by_score
           : rule == MAA_RULE_MASK ? by_mask
                                   : fmax(by_score, by_mask);
}

const char *maa_cli_ranks_by(maa_rule rule)
{
    return rule == MAA_RULE_SCORE  ? "FMD"
           : rule == MAA_RULE_MASK ? "mask score"
                                   : "max(FMD / T, mask score / T_pix)";
}

int maa_cli_rejects(const maa_cli_judged *j, maa_rule rule)
{
    return (j->evidence & maa_rule_evidence(rule)) != 0;
}

int maa_cli_decide(const maa_cli_set *set, const maa_cli_judged *j, const maa_calibration *cal,
                   maa_rule rule, maa_cli_decision *d)
{
    float *sc = malloc((size_t)set->n * sizeof *sc);
    uint8_t *lab = malloc((size_t)set->n);
    if (!sc || !lab) {
        free(sc);
        free(lab);
        fprintf(stderr, "maa: out of memory\n");
        return MAA_ERR;
    }
    int rej_bad = 0, rej_good = 0;
    for (int i = 0; i < set->n; i++) {
        sc[i] = (float)maa_cli_rank_value(&j[i], cal, rule);
        lab[i] = (uint8_t)set->parts[i].defective;
        if (maa_cli_rejects(&j[i], rule))
            set->parts[i].defective ? rej_bad++ : rej_good++;
    }
    *d = (maa_cli_decision){.image_auroc = maa_auroc(sc, lab, (size_t)set->n),
                            .recall = maa_cli_ratio(rej_bad, set->n - set->ngood),
                            .false_reject_rate = maa_cli_ratio(rej_good, set->ngood),
                            .defective_rejected = rej_bad, .good_rejected = rej_good};
    free(sc);
    free(lab);
    return MAA_OK;
}

json_t *maa_cli_decision_json(const maa_cli_decision *d, maa_rule rule)
{
    return json_pack("{s:s,s:o,s:o,s:o,s:i,s:i}", "ranks_by", maa_cli_ranks_by(rule),
                     "image_auroc", maa_cli_json_num(d->image_auroc), "recall",
                     maa_cli_json_num(d->recall), "false_reject_rate",
                     maa_cli_json_num(d->false_reject_rate), "defective_rejected",
                     d->defective_rejected, "good_rejected", d->good_rejected);
}

json_t *maa_cli_judged_json(const maa_cli_judged *j, maa_rule rule)
{
    return json_pack("{s:f,s:f,s:o,s:s}", "score", j->score, "mask_score", j->mask_score,
                     "evidence", maad_evidence_json(j->evidence), "verdict",
                     maa_cli_rejects(j, rule) ? "reject" : "pass");
}

int maa_cli_write_case(const char *who, maa_inspector *in, const maa_calibration *cal,
                       const maa_model_info *info, const char *image, const char *recon_png,
                       const char *mask_png)
{
    const int S = info->image_size, C = info->channels;
    float *x = malloc((size_t)C * S * S * sizeof *x);
    uint8_t *px = malloc((size_t)C * S * S);
    maa_result res;
    char err[MAA_ERRLEN];
    int rc = !x || !px ? MAA_ERR : MAA_OK;
    if (rc)
        snprintf(err, sizeof err, "out of memory");
    if (!rc)
        rc = maa_cli_read_input(image, info, x, err, sizeof err);
    if (!rc)
        rc = maa_inspect(in, cal, 1, x, &res, err, sizeof err);
    if (!rc && recon_png) {
        const float *r = maa_inspector_recon(in, 0);
        for (int p = 0; p < S * S; p++)
            for (int k = 0; k < C; k++) {
                float v = (r[(size_t)k * S * S + p] + 1) * 127.5f;
                px[(size_t)p * C + k] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v + 0.5f);
            }
        rc = maa_png_write(recon_png, px, S, S, C, err, sizeof err);
    }
    if (!rc)
        rc = maa_png_write(mask_png, maa_inspector_mask(in, 0), S, S, 1, err, sizeof err);
    if (rc)
        fprintf(stderr, "%s: %s: %s\n", who, image, err);
    free(x);
    free(px);
    return rc;
}
