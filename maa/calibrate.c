/* calibrate.c — `maa calibrate`: the statistical model of good parts
 * (contract §5) and the pixel threshold of the mask (contract §6). */
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "maa/maa.h"

static const char who[] = "maa calibrate";

static const char usage[] =
    "usage: maa calibrate --model M [--images DIR] --out C.yaml [options] [engine options]\n"
    "Scores defect-free parts (at least 20) the model was not trained on and writes\n"
    "the calibration: mu, sigma, T = mu + gamma*sigma, a normality test, and the pixel\n"
    "threshold of the defect mask.  Without --images, the images train.py held out\n"
    "(listed in M's split file, M.split.json) are used; with --images, every image\n"
    "of DIR, and a warning names those the split file says the model was trained on.\n\n"
    MAA_CLI_ENGINE_HELP
    "  --images DIR       calibrate on every image of DIR instead of the held-out ones\n"
    "  --split F          the split file (default: M without extension + .split.json)\n"
    "  --gamma G          sensitivity: T = mu + G*sigma (default 3; 0 = the paper's)\n"
    "  --mask-fraction Q  at most this fraction of good images may keep a mask region\n"
    "                     (default 0.01)\n"
    "  --window W         local-variance window of the mask, odd (default 7)\n"
    "  --min-area A       regions smaller than A model pixels are dropped (default 16)\n"
    "  --plot PNG         histogram of the scores with the fitted normal and T\n"
    "                     (default: C.yaml with .png; needs python3-matplotlib)\n";

/* Every image must be readable and of one kind (gray or colour): a mixed set
 * is a wiring mistake on the line, not something to average over. */
static int check_images(char **files, int n)
{
    int first_color = -1, first_gray = -1;
    for (int i = 0; i < n; i++) {
        maa_image im;
        char err[MAA_ERRLEN];
        if (maa_image_load(files[i], &im, err, sizeof err)) {
            fprintf(stderr, "maa calibrate: %s\n(every calibration image must be readable)\n", err);
            return MAA_ERR;
        }
        if (im.channels >= 3 && first_color < 0)
            first_color = i;
        if (im.channels < 3 && first_gray < 0)
            first_gray = i;
        maa_image_free(&im);
        if (first_color >= 0 && first_gray >= 0) {
            fprintf(stderr, "maa calibrate: mixed channel counts: %s is colour, %s is gray\n",
                    files[first_color], files[first_gray]);
            return MAA_ERR;
        }
    }
    return MAA_OK;
}

/* The held-out images of the split, checked to be the very files the split
 * recorded: a changed image would calibrate on something else. */
static char **held_out_files(const char *split_path, const maa_cli_split *sp, int *n)
{
    *n = 0;
    size_t nh = json_array_size(sp->held);
    char **files = calloc(nh ? nh : 1, sizeof *files);
    if (!files) {
        fprintf(stderr, "maa calibrate: out of memory\n");
        return NULL;
    }
    for (size_t i = 0; i < nh; i++) {
        json_t *e = json_array_get(sp->held, i);
        if (asprintf(&files[i], "%s/%s", sp->dir,
                     json_string_value(json_object_get(e, "file"))) < 0) {
            files[i] = NULL;
            maa_cli_free_list(files, (int)i);
            fprintf(stderr, "maa calibrate: out of memory\n");
            return NULL;
        }
        char sha[65];
        int read = maa_cli_file_sha256(who, files[i], sha) == MAA_OK;
        int same = read && strcmp(sha, json_string_value(json_object_get(e, "sha256"))) == 0;
        if (read && !same)
            fprintf(stderr, "maa calibrate: %s is not the image %s held out (its content "
                    "changed); give the images with --images\n", files[i], split_path);
        if (!same) {
            maa_cli_free_list(files, (int)i + 1);
            return NULL;
        }
    }
    *n = (int)nh;
    return files;
}

/* Warns about the images the model was trained on: their scores are lower
 * than a new good part's, so thresholds fitted on them reject good parts. */
static int warn_trained(char **files, int n, const maa_cli_split *sp, const char *split_path)
{
    int trained = 0;
    const char *example = NULL;
    for (int i = 0; i < n; i++) {
        int r = maa_cli_split_find(who, sp, files[i]);
        if (r < 0)
            return MAA_ERR;
        if (r == MAA_SPLIT_TRAINED) {
            trained++;
            example = example ? example : files[i];
        }
    }
    if (trained)
        fprintf(stderr, "maa calibrate: warning: %d of the %d images (e.g. %s) were used to "
                "train this model (%s).  A model scores its training images lower than new "
                "good parts, so the thresholds will come out too low and good parts will "
                "be rejected.  Calibrate on images it never saw: leave out --images to use "
                "the %zu it held out.\n", trained, n, example, split_path,
                json_array_size(sp->held));
    return MAA_OK;
}

static char *default_plot(const char *out)
{
    size_t n = strlen(out);
    char *p = malloc(n + 5);
    if (!p)
        return NULL;
    strcpy(p, out);
    char *dot = strrchr(p, '.'), *slash = strrchr(p, '/');
    if (dot && (!slash || dot > slash))
        *dot = 0;
    strcat(p, ".png");
    return p;
}

int maa_cmd_calibrate(int argc, char **argv)
{
    static const struct option opts[] = {
        MAA_CLI_ENGINE_OPTIONS, {"images", 1, 0, 'i'}, {"out", 1, 0, 'o'},
        {"gamma", 1, 0, 'g'}, {"mask-fraction", 1, 0, 'q'}, {"window", 1, 0, 'w'},
        {"min-area", 1, 0, 'a'}, {"plot", 1, 0, 'p'}, {"split", 1, 0, 's'},
        {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    maa_cli_engine ce;
    maa_cli_engine_init(&ce);
    const char *dir = NULL, *out = NULL, *plot = NULL, *split_arg = NULL;
    double gamma = 3, q = 0.01;
    long long window = 7, min_area = 16;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int r = maa_cli_engine_option(&ce, c, optarg);
        if (r < 0)
            return 2;
        if (r)
            continue;
        switch (c) {
        case 'i': dir = optarg; break;
        case 'o': out = optarg; break;
        case 'p': plot = optarg; break;
        case 's': split_arg = optarg; break;
        case 'g':
            if (maa_cli_parse_number(who, "gamma", optarg, MAA_GAMMA_MIN, MAA_GAMMA_MAX, &gamma))
                return 2;
            break;
        case 'q':
            if (maa_cli_parse_number(who, "mask-fraction", optarg, 0, 1, &q))
                return 2;
            break;
        case 'w':
            if (maa_cli_parse_integer(who, "window", optarg, 1, MAA_MASK_WINDOW_MAX, &window))
                return 2;
            if (!(window & 1)) {
                fprintf(stderr, "%s: --window \"%s\" is not an odd integer in 1..%d\n", who,
                        optarg, MAA_MASK_WINDOW_MAX);
                return 2;
            }
            break;
        case 'a':
            if (maa_cli_parse_integer(who, "min-area", optarg, 1, MAA_MIN_AREA_MAX, &min_area))
                return 2;
            break;
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (!ce.model || !out || optind != argc) {
        fprintf(stderr, "maa calibrate: --model and --out are required\n%s", usage);
        return 2;
    }
    char *split_path = split_arg ? strdup(split_arg) : maa_cli_split_path(ce.model);
    maa_cli_split sp;
    int have = split_path ? maa_cli_split_load(who, split_path, &sp) : -1;
    if (have < 0 || (have == 1 && (split_arg || !dir))) {
        if (have == 1)
            fprintf(stderr, "maa calibrate: %s: no such split file%s\n", split_path,
                    dir ? "" : "; give the defect-free images with --images DIR");
        free(split_path);
        return have < 0 ? 1 : 2;
    }
    int n;
    char **files = dir ? maa_cli_list_images(dir, &n) : held_out_files(split_path, &sp, &n);
    if (files && dir && have == 0 && warn_trained(files, n, &sp, split_path)) {
        maa_cli_free_list(files, n);
        files = NULL;
    }
    char source[4200];
    snprintf(source, sizeof source, dir ? "%s" : "the held-out images of %s",
             dir ? dir : split_path);
    if (!files || n < 20) {
        if (files)
            fprintf(stderr, "maa calibrate: %s holds %d images; calibration needs at least 20 "
                    "good images%s\n", dir ? dir : "the split's held-out set", n,
                    dir ? "" : " (train with a larger --holdout, or give --images)");
        maa_cli_free_list(files, n);
        if (have == 0)
            maa_cli_split_free(&sp);
        free(split_path);
        return 1;
    }
    if (have == 0)
        maa_cli_split_free(&sp);
    free(split_path);
    int status = 1;
    maa_model *m = NULL;
    maa_inspector *in = NULL;
    float *x = NULL;
    double *scores = NULL, *peaks = NULL;
    int *scratch = NULL;
    maa_result *res = NULL;
    char *plot_path = NULL;
    char err[MAA_ERRLEN];
    if (check_images(files, n) || maa_cli_load(&ce, &m, NULL, NULL))
        goto out;
    if (maa_inspector_create(m, &ce.engine, &in, err, sizeof err)) {
        fprintf(stderr, "maa calibrate: %s\n", err);
        goto out;
    }
    const maa_model_info *info = maa_model_get_info(m);
    const int B = ce.engine.max_batch;
    const size_t img = (size_t)info->channels * info->image_size * info->image_size;
    x = malloc((size_t)B * img * sizeof *x);
    scores = malloc((size_t)n * sizeof *scores);
    peaks = malloc((size_t)n * sizeof *peaks);
    res = malloc((size_t)B * sizeof *res);
    scratch = malloc(3 * (size_t)info->image_size * info->image_size * sizeof *scratch);
    if (!x || !scores || !peaks || !res || !scratch) {
        fprintf(stderr, "maa calibrate: out of memory\n");
        goto out;
    }
    /* Scoring needs only the mask window; nothing is judged yet. */
    maa_calibration scoring = {.threshold = INFINITY, .pixel_threshold = INFINITY,
                               .mask_window = (int)window, .min_region_area = 1};
    for (int i = 0; i < n; i += B) {
        int k = n - i < B ? n - i : B;
        if (maa_cli_inspect_files(in, &scoring, info, (const char *const *)files + i, k, x, res,
                                  err, sizeof err)) {
            fprintf(stderr, "maa calibrate: %s\n", err);
            goto out;
        }
        /* T_pix is fitted to the region rule itself: with the minimum area,
         * an image keeps a region exactly when its region score > T_pix. */
        for (int j = 0; j < k; j++) {
            scores[i + j] = res[j].score;
            peaks[i + j] = maa_region_score(maa_inspector_varmap(in, j), info->image_size,
                                            (int)min_area, scratch);
        }
        maa_cli_progress("maa calibrate: scoring", i + k, n);
    }
    maa_calibration cal;
    if (maa_calibration_fit(scores, n, gamma, &cal, err, sizeof err)) {
        fprintf(stderr, "maa calibrate: %s\n", err);
        goto out;
    }
    snprintf(cal.model_sha256, sizeof cal.model_sha256, "%s", maa_model_sha256(m));
    cal.mask_fraction = q;
    cal.mask_window = (int)window;
    cal.min_region_area = (int)min_area;
    cal.pixel_threshold = maa_pixel_threshold(peaks, n, q);
    if (maa_calibration_save(out, &cal, err, sizeof err)) {
        fprintf(stderr, "maa calibrate: %s\n", err);
        goto out;
    }
    int above = 0, masked = 0;
    for (int i = 0; i < n; i++) {
        above += scores[i] > cal.threshold;
        masked += peaks[i] > cal.pixel_threshold;
    }
    printf("calibration of %s on %d good images (%s)\n", maa_model_path(m), n, source);
    printf("  score    mu %.6g  sigma %.6g  min %.6g  max %.6g\n", cal.mu, cal.sigma,
           cal.score_min, cal.score_max);
    printf("  threshold T = mu + %g * sigma = %.6g  (%d of %d calibration images above T)\n",
           gamma, cal.threshold, above, n);
    printf("  normality %s: statistic %.4g, p = %.4g\n", cal.normality_test, cal.normality_stat,
           cal.normality_p);
    printf("  mask     window %d, min area %d px, T_pix %.6g (%d of %d calibration images keep "
           "a region)\n", cal.mask_window, cal.min_region_area, cal.pixel_threshold, masked, n);
    printf("  written  %s\n", out);
    if (cal.normality_p < 0.05)
        fprintf(stderr, "maa calibrate: warning: the scores do not look normal (p = %.3g < 0.05); "
                        "T = mu + gamma*sigma may not give the expected false-reject rate — check the "
                        "histogram, and that the images are all good parts of one product; then "
                        "measure the false-reject rate on other good parts with maa eval and "
                        "raise --gamma if it is too high\n",
                cal.normality_p);
    plot_path = plot ? strdup(plot) : default_plot(out);
    if (plot_path && maa_cli_plot_scores(plot_path, scores, n, &cal) == MAA_OK)
        printf("  plot     %s\n", plot_path);
    status = 0;
out:
    free(plot_path);
    free(x);
    free(scores);
    free(peaks);
    free(scratch);
    free(res);
    maa_inspector_free(in);
    maa_model_free(m);
    maa_cli_free_list(files, n);
    return status;
}
