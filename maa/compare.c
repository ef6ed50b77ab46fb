/* compare.c — `maa compare`: the deployment check of a retrained model.  The
 * running model and a candidate, each at its own calibrated thresholds,
 * judge the same labelled parts; their numbers are maa eval's (maa/judge.c)
 * side by side, and a criterion says whether the candidate may replace the
 * running model.  Exit status: 0 deploy, 1 keep the running model, 2 no
 * comparison (a usage error, a refused candidate, an error). */
#include <errno.h>
#include <getopt.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config/config.h"
#include "maa/maa.h"

static const char who[] = "maa compare";

static const char usage[] =
    "usage: maa compare --model M --calibration C --candidate M2 --candidate-calibration C2\n"
    "       --data ROOT [--camera CONFIG] [criteria] [--rule R] [--json REPORT]\n"
    "       [--plots DIR] [engine options]\n"
    "Judges the labelled parts of ROOT/test/<type>/ (the MVTec AD layout, good parts in\n"
    "test/good) with the running model M and the candidate M2, each at the thresholds\n"
    "of its own calibration, and prints side by side the share of good parts each\n"
    "rejects, the share of defective parts it finds (recall) and the AUROC of its\n"
    "decision (maa eval's numbers), the parts on which they disagree, and a\n"
    "recommendation.  Exit status: 0 deploy the candidate; 1 keep the running model\n"
    "(the candidate fails a criterion, said on the last line); 2 no comparison (a\n"
    "usage error, a refused candidate, an error).  The candidate is refused when its\n"
    "calibration was made for another model, when it cannot judge the camera's\n"
    "frames (--camera), or when its split file says it trained on any of the parts.\n\n"
    MAA_CLI_ENGINE_HELP
    "                     (--model and --calibration: the running model's)\n"
    "  --candidate M2     the model to deploy, and its calibration:\n"
    "  --candidate-calibration C2\n"
    "  --candidate-split F  M2's split file from train.py (default: M2 without its\n"
    "                     extension + .split.json; without one, what it trained on\n"
    "                     cannot be checked)\n"
    "  --data ROOT        the labelled parts: good ones neither model trained on, and\n"
    "                     defective ones\n"
    "  --camera CONFIG    the camera's maad configuration: the candidate must be able\n"
    "                     to judge its frames (camera.pixel_format); its model.path,\n"
    "                     model.calibration and model.rule are the defaults of --model,\n"
    "                     --calibration and --rule\n"
    "  --rule R           the decision rule compared: either (default), score or mask\n"
    "criteria (the candidate is deployed only when it meets both):\n"
    "  --max-good-rejected-increase F  it may reject at most this larger share of the\n"
    "                     good parts (default 0: no more of them; 0.01: one point more)\n"
    "  --min-recall-change F  its recall must change by at least F (default 0: it\n"
    "                     must find at least as many defective parts; -0.02: two\n"
    "                     points fewer will do)\n"
    "  --json REPORT      both models' numbers under every rule, every part's verdicts,\n"
    "                     the disagreements and the recommendation, as JSON\n"
    "  --plots DIR        the score distributions (scores.png) and a contact sheet of\n"
    "                     the parts they disagree on (disagreements.png)\n";

#define LIST_MAX 10  /* disagreements listed on stdout; the report has them all */
#define SHEET_MAX 16 /* disagreements on the contact sheet */

/* One of the two models, its calibration and its judgement of the set. */
typedef struct {
    const char *name; /* "running", "candidate" */
    maa_cli_engine ce;
    maa_model *m;
    maa_calibration cal;
    maa_inspector *in;
    maa_cli_judged *jd;
    maa_cli_decision dec[3]; /* by maa_rule */
} side;

/* ROOT/test/<type>/<name> as "<type>/<name>", for tables. */
static const char *part_name(const maa_cli_part *p)
{
    const char *base = strrchr(p->path, '/');
    base = base ? base + 1 : p->path;
    size_t tl = strlen(p->type);
    return base - p->path > (ptrdiff_t)tl && !strncmp(base - tl - 1, p->type, tl)
               ? base - tl - 1
               : p->path;
}

/* How many parts of the set the split lists under each MAA_SPLIT_* (n[]),
 * and the first of each (example[]); MAA_ERR (printed) when an image cannot
 * be read. */
static int count_in_split(const maa_cli_split *sp, const maa_cli_set *set, int n[3],
                          const char *example[3])
{
    for (int k = 0; k < 3; k++)
        n[k] = 0, example[k] = NULL;
    for (int i = 0; i < set->n; i++) {
        int r = maa_cli_split_find(who, sp, set->parts[i].path);
        if (r < 0)
            return MAA_ERR;
        if (!n[r]++)
            example[r] = set->parts[i].path;
    }
    return MAA_OK;
}

/* The candidate must not be measured on its own training images: a model
 * scores them lower than new parts, so it would look better than it is.
 * Good parts it held out were most likely its calibration images, on which
 * its false-reject rate is low by construction: said, not refused.
 * MAA_ERR (printed) refuses the candidate. */
static int check_candidate_split(const char *model, const char *split_arg, const maa_cli_set *set)
{
    char *path = split_arg ? strdup(split_arg) : maa_cli_split_path(model);
    maa_cli_split sp;
    int have = path ? maa_cli_split_load(who, path, &sp) : -1, rc = MAA_ERR;
    if (have == 1 && split_arg)
        fprintf(stderr, "%s: %s: no such split file\n", who, path);
    else if (have == 1) {
        fprintf(stderr, "%s: note: no split file %s beside the candidate: whether it trained on "
                "these parts cannot be checked\n", who, path);
        rc = MAA_OK;
    } else if (have == 0) {
        int n[3];
        const char *ex[3];
        if (count_in_split(&sp, set, n, ex) == MAA_OK) {
            if (n[MAA_SPLIT_TRAINED])
                fprintf(stderr, "%s: refused: the candidate %s was trained on %d of the %d parts "
                        "(e.g. %s; %s).  A model scores its training images lower than new "
                        "parts, so it would look better than it is: compare on parts it never "
                        "saw.\n", who, model, n[MAA_SPLIT_TRAINED], set->n,
                        ex[MAA_SPLIT_TRAINED], path);
            else if (n[MAA_SPLIT_HELD_OUT])
                fprintf(stderr, "%s: warning: %d of the parts (e.g. %s) are ones the candidate "
                        "held out (%s); if its calibration was made on them (maa calibrate's "
                        "default), its false-reject rate on them is lower than on new parts\n",
                        who, n[MAA_SPLIT_HELD_OUT], ex[MAA_SPLIT_HELD_OUT], path);
            rc = n[MAA_SPLIT_TRAINED] ? MAA_ERR : MAA_OK;
        }
        maa_cli_split_free(&sp);
    }
    free(path);
    return rc;
}

/* The running model's training images flatter it, which favours keeping it:
 * said, not refused (it is what the line runs). */
static void check_running_split(const char *model, const maa_cli_set *set)
{
    char *path = maa_cli_split_path(model);
    maa_cli_split sp;
    if (path && maa_cli_split_load(who, path, &sp) == 0) {
        int n[3];
        const char *ex[3];
        if (count_in_split(&sp, set, n, ex) == MAA_OK && n[MAA_SPLIT_TRAINED])
            fprintf(stderr, "%s: warning: the running model was trained on %d of the parts "
                    "(e.g. %s; %s): its numbers look better than they are, which favours "
                    "keeping it\n", who, n[MAA_SPLIT_TRAINED], ex[MAA_SPLIT_TRAINED], path);
        maa_cli_split_free(&sp);
    }
    free(path);
}

/* "3 more", "2 fewer", "as many": a change in a count of parts, for people. */
static const char *more_fewer(int d, char *buf, size_t len)
{
    if (d > 0)
        snprintf(buf, len, "%d more", d);
    else if (d < 0)
        snprintf(buf, len, "%d fewer", -d);
    else
        snprintf(buf, len, "as many");
    return buf;
}

static json_t *side_json(const side *s)
{
    json_t *rules = json_object();
    for (int r = 0; r < 3; r++)
        json_object_set_new(rules, maa_rule_name((maa_rule)r),
                            maa_cli_decision_json(&s->dec[r], (maa_rule)r));
    return json_pack("{s:s,s:s,s:s,s:f,s:f,s:i,s:o}", "model", s->ce.model, "model_sha256",
                     maa_model_sha256(s->m), "calibration", s->ce.calibration, "threshold",
                     s->cal.threshold, "pixel_threshold", s->cal.pixel_threshold,
                     "min_region_area", s->cal.min_region_area, "rules", rules);
}

/* Part i as both models judged it. */
static json_t *part_json(const maa_cli_part *p, side *const sides[2], int i, maa_rule rule)
{
    json_t *j = json_pack("{s:s,s:s,s:b}", "image", p->path, "type", p->type, "defective",
                          p->defective);
    for (int k = 0; k < 2; k++) {
        json_t *v = maa_cli_judged_json(&sides[k]->jd[i], rule);
        json_object_set_new(v, "rank_value",
                            maa_cli_json_num(maa_cli_rank_value(&sides[k]->jd[i], &sides[k]->cal,
                                                                rule)));
        json_object_set_new(j, sides[k]->name, v);
    }
    return j;
}

/* Where the candidate stands against the criteria: the changes are whole
 * parts over the same parts, the tolerance far below one part of any set
 * (the options are typed as decimals). */
typedef struct {
    int ngood, ndef, dgood, ddef;
    double frr_change, recall_change, max_frr_increase, min_recall_change;
    int frr_ok, recall_ok;
} outcome;

static outcome judge_outcome(const maa_cli_set *set, const maa_cli_decision *dr,
                             const maa_cli_decision *dc, double max_frr_increase,
                             double min_recall_change)
{
    outcome o = {.ngood = set->ngood, .ndef = set->n - set->ngood,
                 .dgood = dc->good_rejected - dr->good_rejected,
                 .ddef = dc->defective_rejected - dr->defective_rejected,
                 .max_frr_increase = max_frr_increase, .min_recall_change = min_recall_change};
    o.frr_change = maa_cli_ratio(o.dgood, o.ngood);
    o.recall_change = maa_cli_ratio(o.ddef, o.ndef);
    o.frr_ok = o.frr_change <= max_frr_increase + 1e-9;
    o.recall_ok = o.recall_change >= min_recall_change - 1e-9;
    return o;
}

/* The short table: each model's numbers under the rule, the change, and the
 * criterion it is held to. */
static void print_table(const char *root, maa_rule rule, const side *run, const side *cand,
                        const outcome *o)
{
    const maa_cli_decision *dr = &run->dec[rule], *dc = &cand->dec[rule];
    char a[32], b[32], d[32];
    printf("%s on %s: %d good and %d defective parts, rule %s\n", who, root, o->ngood, o->ndef,
           maa_rule_name(rule));
    printf("  running:   %s with %s\n", run->ce.model, run->ce.calibration);
    printf("  candidate: %s with %s\n\n", cand->ce.model, cand->ce.calibration);
    printf("  %-16s %-16s %-16s %-11s %s\n", "", "running", "candidate", "change", "criterion");
    snprintf(a, sizeof a, "%.2f%% (%d/%d)", 100 * dr->false_reject_rate, dr->good_rejected,
             o->ngood);
    snprintf(b, sizeof b, "%.2f%% (%d/%d)", 100 * dc->false_reject_rate, dc->good_rejected,
             o->ngood);
    snprintf(d, sizeof d, "%+.2f pts", 100 * o->frr_change);
    printf("  %-16s %-16s %-16s %-11s at most %+.2f pts%s\n", "good rejected", a, b, d,
           100 * o->max_frr_increase, o->frr_ok ? "" : "  FAILED");
    snprintf(a, sizeof a, "%.4f (%d/%d)", dr->recall, dr->defective_rejected, o->ndef);
    snprintf(b, sizeof b, "%.4f (%d/%d)", dc->recall, dc->defective_rejected, o->ndef);
    snprintf(d, sizeof d, "%+.4f", o->recall_change);
    printf("  %-16s %-16s %-16s %-11s at least %+.4f%s\n", "recall", a, b, d,
           o->min_recall_change, o->recall_ok ? "" : "  FAILED");
    snprintf(a, sizeof a, "%.4f", dr->image_auroc);
    snprintf(b, sizeof b, "%.4f", dc->image_auroc);
    snprintf(d, sizeof d, "%+.4f", dc->image_auroc - dr->image_auroc);
    printf("  %-16s %-16s %-16s %s\n", "AUROC", a, b, d);
    printf("  (good rejected and recall at the calibrated thresholds; AUROC of what rule %s\n"
           "   ranks parts by: %s)\n", maa_rule_name(rule), maa_cli_ranks_by(rule));
}

/* The parts on which the two verdicts differ, the candidate's mistakes
 * first (they are what deploying it would cost): listed on stdout, with
 * each model's mask written under plots for the contact sheet, and
 * returned as the report's "disagreements" (NULL when out of memory). */
static json_t *disagreements(const maa_cli_set *set, side *const sides[2], maa_rule rule,
                             const char *plots)
{
    const side *run = sides[0], *cand = sides[1];
    int *dis = malloc((size_t)set->n * sizeof *dis), ndis = 0, cand_right = 0;
    json_t *list = json_array();
    if (!dis || !list) {
        fprintf(stderr, "%s: out of memory\n", who);
        free(dis);
        json_decref(list);
        return NULL;
    }
    for (int right = 0; right < 2; right++)
        for (int i = 0; i < set->n; i++) {
            int vr = maa_cli_rejects(&run->jd[i], rule), vc = maa_cli_rejects(&cand->jd[i], rule);
            if (vr != vc && (vc == set->parts[i].defective) == right) {
                dis[ndis++] = i;
                cand_right += right;
            }
        }
    if (ndis) {
        printf("\n  they disagree on %d of the %d parts; the candidate is right on %d:\n", ndis,
               set->n, cand_right);
        printf("    %-28s %-10s %-8s %s\n", "part", "truth", "running", "candidate");
    } else {
        printf("\n  they agree on every part\n");
    }
    for (int d = 0; d < ndis; d++) {
        const int i = dis[d];
        const maa_cli_part *p = &set->parts[i];
        const int vr = maa_cli_rejects(&run->jd[i], rule), vc = maa_cli_rejects(&cand->jd[i], rule);
        const int right = vc == p->defective;
        json_t *e = part_json(p, sides, i, rule);
        json_object_set_new(e, "right", json_string(right ? "candidate" : "running"));
        for (int k = 0; plots && d < SHEET_MAX && k < 2; k++) {
            char mp[4608];
            snprintf(mp, sizeof mp, "%s/disagree%d_%s_mask.png", plots, d, sides[k]->name);
            if (maa_cli_write_case(who, sides[k]->in, &sides[k]->cal,
                                   maa_model_get_info(sides[k]->m), p->path, NULL, mp) == MAA_OK)
                json_object_set_new(json_object_get(e, sides[k]->name), "mask", json_string(mp));
        }
        json_array_append_new(list, e);
        if (d < LIST_MAX)
            printf("    %-28s %-10s %-8s %-10s candidate %s\n", part_name(p),
                   p->defective ? "defective" : "good", vr ? "reject" : "pass",
                   vc ? "reject" : "pass", right ? "right" : "wrong");
    }
    if (ndis > LIST_MAX)
        printf("    ... and %d more (--json)\n", ndis - LIST_MAX);
    free(dis);
    return list;
}

/* Why the candidate is kept out, one sentence per failed criterion. */
static json_t *reasons(const outcome *o)
{
    json_t *list = json_array();
    char why[256], n[32];
    if (!o->frr_ok) {
        snprintf(why, sizeof why, "the candidate rejects %s of the %d good parts (%+.2f pts; at "
                 "most %+.2f allowed)", more_fewer(o->dgood, n, sizeof n), o->ngood,
                 100 * o->frr_change, 100 * o->max_frr_increase);
        json_array_append_new(list, json_string(why));
    }
    if (!o->recall_ok) {
        snprintf(why, sizeof why, "the candidate finds %s of the %d defective parts (recall "
                 "%+.4f; at least %+.4f required)", more_fewer(o->ddef, n, sizeof n), o->ndef,
                 o->recall_change, o->min_recall_change);
        json_array_append_new(list, json_string(why));
    }
    return list;
}

int maa_cmd_compare(int argc, char **argv)
{
    static const struct option opts[] = {
        MAA_CLI_ENGINE_OPTIONS, {"candidate", 1, 0, 'M'}, {"candidate-calibration", 1, 0, 'C'},
        {"candidate-split", 1, 0, 's'}, {"data", 1, 0, 'd'}, {"camera", 1, 0, 'k'},
        {"rule", 1, 0, 'r'}, {"max-good-rejected-increase", 1, 0, 'g'},
        {"min-recall-change", 1, 0, 'R'}, {"json", 1, 0, 'j'}, {"plots", 1, 0, 'p'},
        {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    side run = {.name = "running"}, cand = {.name = "candidate"};
    maa_cli_engine_init(&run.ce);
    const char *root = NULL, *camera = NULL, *split_arg = NULL, *json_path = NULL, *plots = NULL;
    maa_rule rule = MAA_RULE_EITHER;
    int have_rule = 0;
    double max_frr_increase = 0, min_recall_change = 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int r = maa_cli_engine_option(&run.ce, c, optarg);
        if (r < 0)
            return 2;
        if (r)
            continue;
        switch (c) {
        case 'M': cand.ce.model = optarg; break;
        case 'C': cand.ce.calibration = optarg; break;
        case 's': split_arg = optarg; break;
        case 'd': root = optarg; break;
        case 'k': camera = optarg; break;
        case 'j': json_path = optarg; break;
        case 'p': plots = optarg; break;
        case 'r':
            if (maa_rule_parse(optarg, &rule)) {
                fprintf(stderr, "%s: --rule \"%s\": need either, score or mask\n", who, optarg);
                return 2;
            }
            have_rule = 1;
            break;
        case 'g':
            if (maa_cli_parse_number(who, "max-good-rejected-increase", optarg, -1, 1,
                                     &max_frr_increase))
                return 2;
            break;
        case 'R':
            if (maa_cli_parse_number(who, "min-recall-change", optarg, -1, 1, &min_recall_change))
                return 2;
            break;
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "%s: unexpected argument \"%s\"\n%s", who, argv[optind], usage);
        return 2;
    }
    maad_config cfg;
    char err[MAA_ERRLEN + 64];
    if (camera) {
        if (maad_config_load(camera, &cfg, err, sizeof err)) {
            fprintf(stderr, "%s: --camera: %s\n", who, err);
            return 2;
        }
        run.ce.model = run.ce.model ? run.ce.model : cfg.model.path;
        run.ce.calibration = run.ce.calibration ? run.ce.calibration : cfg.model.calibration;
        rule = have_rule ? rule : (maa_rule)cfg.model.rule;
        /* maad moves the thresholds by these keys whichever calibration it
         * loads; the comparison takes the calibrations as they are. */
        if (cfg.model.has_gamma)
            fprintf(stderr, "%s: warning: %s sets model.gamma %g, which maad applies to any "
                    "calibration; the comparison uses each calibration's own (calibrate both "
                    "at that gamma to compare what the line would do)\n", who, camera,
                    cfg.model.gamma);
        if (cfg.mask.min_region_area >= 0)
            fprintf(stderr, "%s: warning: %s sets mask.min_region_area %d, which maad applies to "
                    "any calibration; the comparison uses each calibration's own\n", who, camera,
                    cfg.mask.min_region_area);
    }
    if (!run.ce.model || !run.ce.calibration || !cand.ce.model || !cand.ce.calibration || !root) {
        fprintf(stderr, "%s: --model, --calibration (or --camera), --candidate, "
                "--candidate-calibration and --data are required\n%s", who, usage);
        return 2;
    }
    cand.ce.engine = run.ce.engine;
    if (plots && mkdir(plots, 0777) && errno != EEXIST) {
        fprintf(stderr, "%s: --plots %s: %s\n", who, plots, strerror(errno));
        return 2;
    }

    maa_cli_set set;
    if (maa_cli_set_load(who, root, &set))
        return 2;
    int status = 2;
    side *const sides[2] = {&run, &cand};
    json_t *report = NULL;
    /* Refusals first, before any image is judged.  maa_cli_load refuses a
     * calibration made for another model (by the model file's SHA-256),
     * which also keeps a calibration made at another image size or channel
     * count away from the model: those are part of the file. */
    for (int k = 0; k < 2; k++)
        if (maa_cli_load(&sides[k]->ce, &sides[k]->m, &sides[k]->cal, NULL)) {
            fprintf(stderr, "%s: %s: the %s model %s with calibration %s (above)\n", who,
                    k ? "refused" : "no comparison", sides[k]->name, sides[k]->ce.model,
                    sides[k]->ce.calibration);
            goto out;
        }
    if (camera && maad_config_check_channels(&cfg.camera, maa_model_get_info(cand.m)->channels,
                                             cand.ce.model, err, sizeof err)) {
        fprintf(stderr, "%s: refused: %s (--camera %s)\n", who, err, camera);
        goto out;
    }
    if (check_candidate_split(cand.ce.model, split_arg, &set))
        goto out;
    check_running_split(run.ce.model, &set);

    for (int k = 0; k < 2; k++) {
        side *s = sides[k];
        s->cal.rule = rule;
        s->jd = malloc((size_t)set.n * sizeof *s->jd);
        if (!s->jd) {
            fprintf(stderr, "%s: out of memory for %d parts\n", who, set.n);
            goto out;
        }
        if (maa_inspector_create(s->m, &s->ce.engine, &s->in, err, sizeof err)) {
            fprintf(stderr, "%s: %s\n", who, err);
            goto out;
        }
        if (maa_cli_judge_set(who, s->in, &s->cal, maa_model_get_info(s->m),
                              s->ce.engine.max_batch, &set, s->jd, NULL, NULL))
            goto out;
        for (int r = 0; r < 3; r++)
            if (maa_cli_decide(&set, s->jd, &s->cal, (maa_rule)r, &s->dec[r]))
                goto out;
    }

    const maa_cli_decision *dr = &run.dec[rule], *dc = &cand.dec[rule];
    const outcome o = judge_outcome(&set, dr, dc, max_frr_increase, min_recall_change);
    const int deploy = o.frr_ok && o.recall_ok;
    print_table(root, rule, &run, &cand, &o);
    json_t *dis = disagreements(&set, sides, rule, plots);
    if (!dis)
        goto out;
    json_t *images = json_array(), *why = reasons(&o);
    for (int i = 0; i < set.n; i++)
        json_array_append_new(images, part_json(&set.parts[i], sides, i, rule));
    report = json_pack("{s:s,s:i,s:s,s:s,s:i,s:i,s:{s:f,s:f},s:o,s:o,s:{s:f,s:f,s:o},s:s,s:o,s:o,"
                       "s:o}",
                       "format", "maa-compare", "version", 1, "data", root, "rule",
                       maa_rule_name(rule), "n_good", o.ngood, "n_defective", o.ndef, "criteria",
                       "max_good_rejected_increase", max_frr_increase, "min_recall_change",
                       min_recall_change, "running", side_json(&run), "candidate",
                       side_json(&cand), "change", "false_reject_rate", o.frr_change, "recall",
                       o.recall_change, "image_auroc",
                       maa_cli_json_num(dc->image_auroc - dr->image_auroc), "recommendation",
                       deploy ? "deploy" : "keep", "reasons", json_incref(why), "disagreements",
                       dis, "images", images);
    if (!report) {
        fprintf(stderr, "%s: out of memory for the report\n", who);
        json_decref(why);
        goto out;
    }
    if (plots) {
        char rpath[4608];
        snprintf(rpath, sizeof rpath, "%s/report.json", plots);
        if (maa_cli_write_json(who, report, rpath) == MAA_OK) {
            const char *args[] = {"--report", rpath, "--out", plots, NULL};
            if (maa_cli_run_script("plot_compare.py", args) == MAA_OK)
                printf("\n  plots in %s (scores.png%s)\n", plots,
                       json_array_size(dis) ? ", disagreements.png" : "");
        }
    }
    if (json_path && maa_cli_write_json(who, report, json_path)) {
        json_decref(why);
        goto out;
    }
    /* The last line, for people and for scripts that keep only that. */
    char n1[32], n2[32];
    if (deploy)
        printf("\nrecommendation: deploy the candidate: it rejects %s of the %d good parts "
               "(%+.2f pts) and finds %s of the %d defective parts (recall %+.4f)\n",
               more_fewer(o.dgood, n1, sizeof n1), o.ngood, 100 * o.frr_change,
               more_fewer(o.ddef, n2, sizeof n2), o.ndef, o.recall_change);
    else
        printf("\nrecommendation: keep the running model: %s%s%s\n",
               json_string_value(json_array_get(why, 0)), json_array_size(why) > 1 ? "; " : "",
               json_array_size(why) > 1 ? json_string_value(json_array_get(why, 1)) : "");
    json_decref(why);
    status = deploy ? 0 : 1;
out:
    json_decref(report);
    for (int k = 0; k < 2; k++) {
        free(sides[k]->jd);
        maa_inspector_free(sides[k]->in);
        maa_model_free(sides[k]->m);
    }
    maa_cli_set_free(&set);
    return status;
}
