/* record.c — reading maad's archive of judged frames (docs/operations.md,
 * "Reject archive"), for maa review and maa archive.
 *
 * maad may be writing the directory while it is read: a new record's
 * STEM.json appears last (renamed into place), and the oldest records are
 * deleted whole to stay within the budget.  So only names ending in .json
 * are listed, a record deleted while it is read (its JSON, or its frame
 * after its JSON) is named as deleted and left out, and nothing here ever
 * waits for or changes the directory. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "maa/maa.h"

/* A record's JSON is a verdict message without its mask: a few KiB at most
 * (32 regions).  Anything much larger is not one. */
#define RECORD_JSON_MAX (1u << 20)

/* ---- options ------------------------------------------------------------- */

/* An option's time as a stem's first 15 characters (YYYYMMDDTHHMMSS, UTC):
 * the stems sort by time, so a record is compared by its name alone. */
static int parse_time(const char *who, const char *opt, const char *arg, char out[16])
{
    time_t t = 0;
    char *end;
    errno = 0;
    long long v = strtoll(arg, &end, 10);
    static const struct { const char *unit; long long s; } ago[] = {
        {"s", 1}, {"m", 60}, {"h", 3600}, {"d", 86400}};
    int found = 0;
    for (size_t i = 0; !errno && end != arg && *arg != '-' && *arg != '+' &&
                       i < sizeof ago / sizeof ago[0]; i++)
        if (!strcmp(end, ago[i].unit) && v <= (long long)(10 * MAA_CLI_MAX_SECONDS) / ago[i].s) {
            t = time(NULL) - (time_t)(v * ago[i].s);
            found = 1;
        }
    static const char *const forms[] = {"%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M",
                                        "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"};
    for (size_t i = 0; !found && i < sizeof forms / sizeof forms[0]; i++) {
        struct tm tm;
        memset(&tm, 0, sizeof tm);
        const char *rest = strptime(arg, forms[i], &tm);
        if (rest && (!*rest || !strcmp(rest, "Z"))) {
            t = timegm(&tm);
            found = 1;
        }
    }
    struct tm g;
    if (!found || !gmtime_r(&t, &g) || g.tm_year < 0 || g.tm_year > 8099) {
        fprintf(stderr, "%s: --%s \"%s\" is not a UTC time (2026-12-04T06:00, "
                "2026-12-04 06:00:00, 2026-12-04) or a time ago (90s, 30m, 8h, 2d)\n",
                who, opt, arg);
        return MAA_ERR;
    }
    strftime(out, 16, "%Y%m%dT%H%M%S", &g);
    return MAA_OK;
}

static const char *const whys[] = {"reject", "uninspected", "pass"};
/* Where a stem's camera name begins, after the time and its '-'. */
#define STEM_CAMERA 24

int maa_cli_record_option(const char *who, maa_cli_record_filter *f, int opt, const char *arg)
{
    long long v;
    switch (opt) {
    case 'W':
        for (size_t i = 0; i < sizeof whys / sizeof whys[0]; i++)
            if (!strcmp(arg, whys[i])) {
                f->why = whys[i];
                return 1;
            }
        fprintf(stderr, "%s: --why \"%s\" is not reject, uninspected or pass\n", who, arg);
        return -1;
    case 'R': f->reason = arg; return 1;
    case 'C': f->camera = arg; return 1;
    case 'S': return parse_time(who, "since", arg, f->since) ? -1 : 1;
    case 'U': return parse_time(who, "until", arg, f->until) ? -1 : 1;
    case 'L':
        if (maa_cli_parse_integer(who, "limit", arg, 1, 1000000000, &v))
            return -1;
        f->limit = v;
        return 1;
    default: return 0;
    }
}

/* ---- records ------------------------------------------------------------- */

/* STEM = <YYYYMMDDTHHMMSS.ffffffZ>-<camera>-<seq, 12 digits>-<why>; *why
 * gets the why's name.  0 when stem is one. */
static int parse_stem(const char *stem, const char **why)
{
    static const char form[] = "########T######.######Z-";
    size_t n = strlen(stem), t = sizeof form - 1;
    if (n < t)
        return -1;
    for (size_t i = 0; i < t; i++)
        if (form[i] == '#' ? stem[i] < '0' || stem[i] > '9' : stem[i] != form[i])
            return -1;
    const char *dash = strrchr(stem, '-');
    /* a camera name of at least one character, '-', 12 digits, '-' */
    if (dash - (stem + t) < 14 || dash[-13] != '-')
        return -1;
    for (const char *p = dash - 12; p < dash; p++)
        if (*p < '0' || *p > '9')
            return -1;
    for (size_t i = 0; i < sizeof whys / sizeof whys[0]; i++)
        if (!strcmp(dash + 1, whys[i])) {
            *why = whys[i];
            return 0;
        }
    return -1;
}

void maa_cli_record_free(maa_cli_record *r)
{
    free(r->stem);
    free(r->json);
    free(r->frame);
    free(r->mask);
    json_decref(r->doc);
    memset(r, 0, sizeof *r);
}

/* One of the record's files named in its "archive" object: null, or exactly
 * STEM + suffix (a name from the file is never followed elsewhere). */
static int record_file(const char *dir, const char *stem, json_t *arch, const char *key,
                       const char *suffix, char **path, char *err, size_t errlen)
{
    json_t *v = json_object_get(arch, key);
    *path = NULL;
    if (json_is_null(v))
        return MAA_OK;
    const char *name = json_string_value(v);
    size_t n = strlen(stem);
    if (!name || strncmp(name, stem, n) || strcmp(name + n, suffix)) {
        snprintf(err, errlen, "archive.%s is not null or \"%s%s\"", key, stem, suffix);
        return MAA_ERR;
    }
    if (asprintf(path, "%s/%s", dir, name) < 0) {
        *path = NULL;
        snprintf(err, errlen, "out of memory");
        return MAA_ERR;
    }
    return MAA_OK;
}

/* Reads DIR/NAME (a .json) into r; MAA_ERR with the reason in err.  One
 * that was listed and is gone was deleted meanwhile, and err says so. */
static int record_read(const char *dir, const char *name, int listed, maa_cli_record *r,
                       char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    size_t n = strlen(name) - 5;
    if (!(r->stem = strndup(name, n)) || asprintf(&r->json, "%s/%s", dir, name) < 0) {
        r->json = NULL;
        snprintf(err, errlen, "%s/%s: out of memory", dir, name);
        return MAA_ERR;
    }
    if (parse_stem(r->stem, &r->why)) {
        snprintf(err, errlen, "%s: not an archive record's name "
                 "(YYYYMMDDTHHMMSS.ffffffZ-CAMERA-SEQ-WHY.json)", r->json);
        return MAA_ERR;
    }
    uint8_t *buf;
    size_t len;
    char why[MAA_ERRLEN];
    if (maa_read_file(r->json, RECORD_JSON_MAX, "an archive record", &buf, &len, err, errlen)) {
        if (listed)
            maa_cli_record_gone(r, err, errlen);
        return MAA_ERR;
    }
    json_error_t je;
    r->doc = json_loadb((const char *)buf, len, 0, &je);
    free(buf);
    if (!r->doc) {
        snprintf(err, errlen, "%s: line %d: %s", r->json, je.line, je.text);
        return MAA_ERR;
    }
    json_t *arch = json_object_get(r->doc, "archive");
    const char *awhy = json_string_value(json_object_get(arch, "why"));
    if (!json_is_object(r->doc) || !json_is_object(arch))
        snprintf(why, sizeof why, "no \"archive\" object: not an archive record");
    else if (!awhy || strcmp(awhy, r->why))
        snprintf(why, sizeof why, "archive.why is not \"%s\", as its name says", r->why);
    else if (!json_is_string(json_object_get(r->doc, "verdict")) ||
             !json_is_string(json_object_get(r->doc, "reason")))
        snprintf(why, sizeof why, "no verdict or reason");
    else if (!record_file(dir, r->stem, arch, "frame", ".png", &r->frame, why, sizeof why) &&
             !record_file(dir, r->stem, arch, "mask", ".mask.png", &r->mask, why, sizeof why))
        why[0] = 0;
    if (why[0]) {
        snprintf(err, errlen, "%s: %s", r->json, why);
        return MAA_ERR;
    }
    const char *label =
        json_string_value(json_object_get(json_object_get(r->doc, "review"), "label"));
    if (label && (!strcmp(label, "good") || !strcmp(label, "defective")))
        r->label = label;
    const char *s = r->stem;
    snprintf(r->when, sizeof r->when, "%.4s-%.2s-%.2s %.2s:%.2s:%.2s.%.6s UTC", s, s + 4, s + 6,
             s + 9, s + 11, s + 13, s + 16);
    return MAA_OK;
}

static int cmp_desc(const void *a, const void *b)
{
    return strcmp(*(char *const *)b, *(char *const *)a);
}

static int name_is_record(const char *name)
{
    size_t n = strlen(name);
    return name[0] != '.' && n > 5 && !strcmp(name + n - 5, ".json");
}

/* The .json names in dir, newest first; NULL (printed) on failure. */
static char **list_records(const char *who, const char *dir, int *n)
{
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "%s: %s: %s\n", who, dir, strerror(errno));
        return NULL;
    }
    size_t cap = 256;
    char **names = malloc(cap * sizeof *names);
    struct dirent *e = NULL;
    while (names && (e = readdir(d))) {
        if (!name_is_record(e->d_name))
            continue;
        if ((size_t)*n == cap) {
            char **bigger = realloc(names, (cap *= 2) * sizeof *names);
            if (!bigger)
                break;
            names = bigger;
        }
        if (!(names[*n] = strdup(e->d_name)))
            break;
        (*n)++;
    }
    int failed = !names || e;
    closedir(d);
    if (failed) {
        maa_cli_free_list(names, *n);
        fprintf(stderr, "%s: %s: out of memory listing it\n", who, dir);
        return NULL;
    }
    qsort(names, (size_t)*n, sizeof *names, cmp_desc);
    return names;
}

/* Whether f takes the record by its name alone (time, why, camera). */
static int name_matches(const maa_cli_record_filter *f, const char *name)
{
    const char *why = NULL;
    if (!f)
        return 1;
    if (f->since[0] && strncmp(name, f->since, 15) < 0)
        return 0;
    if (f->until[0] && strncmp(name, f->until, 15) >= 0)
        return 0;
    char stem[256];
    snprintf(stem, sizeof stem, "%.*s", (int)strlen(name) - 5, name);
    /* a name that is no stem is read, to be reported */
    if (parse_stem(stem, &why))
        return 1;
    if (f->why && strcmp(why, f->why))
        return 0;
    if (f->camera) {
        size_t n = strlen(f->camera);
        /* the camera sits between the time and '-' seq '-' why */
        if (strlen(stem) - strlen(why) - 14 != STEM_CAMERA + n ||
            strncmp(stem + STEM_CAMERA, f->camera, n))
            return 0;
    }
    return 1;
}

int maa_cli_record_load(const char *dir, const char *stem, maa_cli_record *r, char *err,
                        size_t errlen)
{
    /* the name of any of its files, perhaps with a folder, will do */
    const char *base = strrchr(stem, '/') ? strrchr(stem, '/') + 1 : stem;
    static const char *const ext[] = {".mask.png", ".png", ".json"};
    size_t n = strlen(base);
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++) {
        size_t k = strlen(ext[i]);
        if (n > k && !strcmp(base + n - k, ext[i])) {
            n -= k;
            break;
        }
    }
    char name[512];
    if (!n || n + 6 > sizeof name) {
        memset(r, 0, sizeof *r);
        snprintf(err, errlen, "\"%s\": not an archive record's name", stem);
        return MAA_ERR;
    }
    snprintf(name, sizeof name, "%.*s.json", (int)n, base);
    return record_read(dir, name, 0, r, err, errlen);
}

int maa_cli_record_gone(const maa_cli_record *r, char *err, size_t errlen)
{
    if (access(r->json, F_OK) == 0 || errno != ENOENT)
        return 0;
    snprintf(err, errlen, "%s: deleted while it was read (maad keeps the archive within its "
             "budget)", r->json);
    return 1;
}

void maa_cli_record_camera(const maa_cli_record *r, char *buf, size_t n)
{
    snprintf(buf, n, "%.*s", (int)(strlen(r->stem) - strlen(r->why) - 14 - STEM_CAMERA),
             r->stem + STEM_CAMERA);
}

int maa_cli_archive_read(const char *who, const char *dir, const maa_cli_record_filter *f,
                         maa_cli_archive *a)
{
    memset(a, 0, sizeof *a);
    int n;
    char **names = list_records(who, dir, &n);
    if (!names)
        return MAA_ERR;
    if (n && !(a->rec = calloc((size_t)n, sizeof *a->rec))) {
        maa_cli_free_list(names, n);
        fprintf(stderr, "%s: out of memory for %d records\n", who, n);
        return MAA_ERR;
    }
    char err[MAA_ERRLEN + 256];
    for (int i = 0; i < n; i++) {
        if (!name_matches(f, names[i]))
            continue;
        maa_cli_record *r = &a->rec[a->n];
        if (record_read(dir, names[i], 1, r, err, sizeof err)) {
            fprintf(stderr, "%s: %s; left out\n", who, err);
            a->unreadable++;
            maa_cli_record_free(r);
            continue;
        }
        const char *reason = maa_cli_record_string(r, "reason");
        if (f && f->reason && !strcasestr(reason, f->reason)) {
            maa_cli_record_free(r);
            continue;
        }
        a->matched++;
        /* Counted to the end, kept only up to the limit: the page says
         * "the newest N of M". */
        if (f && f->limit && a->n >= f->limit)
            maa_cli_record_free(r);
        else
            a->n++;
    }
    maa_cli_free_list(names, n);
    return MAA_OK;
}

void maa_cli_archive_free(maa_cli_archive *a)
{
    for (int i = 0; i < a->n; i++)
        maa_cli_record_free(&a->rec[i]);
    free(a->rec);
    memset(a, 0, sizeof *a);
}

double maa_cli_record_number(const maa_cli_record *r, const char *key)
{
    json_t *v = json_object_get(r->doc, key);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

const char *maa_cli_record_string(const maa_cli_record *r, const char *key)
{
    return json_string_value(json_object_get(r->doc, key));
}

/* Counts by why and by mark, and the time span, of the records. */
typedef struct {
    int why[3], good, defective;
} tally;

static void count(const maa_cli_archive *a, int n, tally *t)
{
    memset(t, 0, sizeof *t);
    for (int i = 0; i < n; i++) {
        const maa_cli_record *r = &a->rec[i];
        t->why[!strcmp(r->why, "reject") ? 0 : !strcmp(r->why, "uninspected") ? 1 : 2]++;
        t->good += r->label && !strcmp(r->label, "good");
        t->defective += r->label && !strcmp(r->label, "defective");
    }
}

void maa_cli_archive_summary(const maa_cli_archive *a, int n, char *buf, size_t len)
{
    tally t;
    count(a, n, &t);
    if (!n) {
        snprintf(buf, len, "no records");
        return;
    }
    const char *first = a->rec[n - 1].when, *last = a->rec[0].when;
    snprintf(buf, len, "%d record%s, %.19s to %.*s UTC: %d reject, %d uninspected, %d pass; "
             "marked %d good, %d defective", n, n == 1 ? "" : "s", first,
             strncmp(first, last, 10) ? 19 : 8, strncmp(first, last, 10) ? last : last + 11,
             t.why[0], t.why[1], t.why[2], t.good, t.defective);
}

/* ---- thumbnails ---------------------------------------------------------- */

/* Sample c (0..2) of pixel i of an image maa_image_load gave: gray is
 * repeated, alpha ignored, 16 bits cut to 8. */
static unsigned sample(const maa_image *im, size_t i, int c)
{
    int ch = im->channels < 3 ? 0 : c;
    size_t k = i * (size_t)im->channels + (size_t)ch;
    return im->depth == 16 ? ((const uint16_t *)im->data)[k] >> 8 : ((const uint8_t *)im->data)[k];
}

/* Whether the mask (side s) has a defect pixel in the part of it that
 * thumbnail pixel (tx, ty) of tw x th covers: every mask pixel counts, so
 * that a thin scratch does not vanish when the thumbnail is smaller than
 * the mask. */
static int mask_hit(const maa_image *m, int tx, int ty, int tw, int th)
{
    int s = m->width;
    int x0 = (int)((long long)tx * s / tw), x1 = (int)(((long long)(tx + 1) * s + tw - 1) / tw);
    int y0 = (int)((long long)ty * s / th), y1 = (int)(((long long)(ty + 1) * s + th - 1) / th);
    const uint8_t *p = m->data;
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++)
            if (p[(size_t)y * s + x] > 127)
                return 1;
    return 0;
}

int maa_cli_record_thumbnail(const maa_cli_record *r, int side, maa_image *out, char *err,
                             size_t errlen)
{
    memset(out, 0, sizeof *out);
    err[0] = 0;
    if (!r->frame) {
        snprintf(err, errlen, "%s: no frame in the record (it never arrived)", r->json);
        return MAA_ERR;
    }
    maa_image im, m = {0};
    if (maa_image_load(r->frame, &im, err, errlen)) {
        maa_cli_record_gone(r, err, errlen);
        return MAA_ERR;
    }
    int W = im.width, H = im.height, big = W > H ? W : H;
    int tw = big > side ? (int)((long long)W * side / big) : W;
    int th = big > side ? (int)((long long)H * side / big) : H;
    tw = tw < 1 ? 1 : tw;
    th = th < 1 ? 1 : th;
    uint8_t *px = malloc((size_t)tw * th * 3);
    if (!px) {
        maa_image_free(&im);
        snprintf(err, errlen, "%s: out of memory for its thumbnail", r->frame);
        return MAA_ERR;
    }
    /* The mask is S x S over the whole frame, stretched per axis as the
     * frame was for the model (protocol: defects). */
    int have_mask = 0;
    if (r->mask && maa_image_load(r->mask, &m, err, errlen) != MAA_OK) {
        maa_cli_record_gone(r, err, errlen);
    } else if (r->mask) {
        if (m.channels != 1 || m.depth != 8 || m.width != m.height) {
            snprintf(err, errlen, "%s: a %dx%d image of %d channel(s), %d bits, not an S x S "
                     "8-bit gray mask", r->mask, m.width, m.height, m.channels, m.depth);
            maa_image_free(&m);
        } else {
            have_mask = 1;
        }
    }
    for (int ty = 0; ty < th; ty++) {
        int y0 = (int)((long long)ty * H / th), y1 = (int)((long long)(ty + 1) * H / th);
        y1 = y1 > y0 ? y1 : y0 + 1;
        for (int tx = 0; tx < tw; tx++) {
            int x0 = (int)((long long)tx * W / tw), x1 = (int)((long long)(tx + 1) * W / tw);
            x1 = x1 > x0 ? x1 : x0 + 1;
            unsigned long sum[3] = {0, 0, 0};
            for (int y = y0; y < y1; y++)
                for (int x = x0; x < x1; x++)
                    for (int c = 0; c < 3; c++)
                        sum[c] += sample(&im, (size_t)y * W + x, c);
            unsigned long cnt = (unsigned long)(y1 - y0) * (unsigned long)(x1 - x0);
            uint8_t *o = px + ((size_t)ty * tw + tx) * 3;
            int red = have_mask && mask_hit(&m, tx, ty, tw, th);
            for (int c = 0; c < 3; c++) {
                unsigned v = (unsigned)((sum[c] + cnt / 2) / cnt);
                /* 55 % red over the pixel: the part stays visible under it */
                o[c] = (uint8_t)(red ? (45 * v + (c == 0 ? 55 * 255 : 0) + 50) / 100 : v);
            }
        }
    }
    maa_image_free(&im);
    maa_image_free(&m);
    out->width = tw;
    out->height = th;
    out->channels = 3;
    out->depth = 8;
    out->data = px;
    return MAA_OK;
}
