/* archive.c — `maa archive ls|export|mark`: maad's archive of judged frames
 * (docs/operations.md, "Reject archive") as a person and the retraining
 * loop use it.  ls lists records; mark adds the operator's verdict on a part
 * to its record; export copies the frames of good parts into the MVTec AD
 * layout that scripts/train.py and maa calibrate read (and, for maa
 * compare, the test parts).
 *
 * Every file maa archive writes goes in whole or not at all: a record's
 * STEM.json is rewritten through a hidden temporary file (names beginning
 * with '.' are no records: maad and the readers skip them) renamed over it,
 * and an exported frame is written to a hidden file and linked to its name,
 * which never replaces a file already there. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "maa/maa.h"

static const char usage[] =
    "usage: maa archive ls DIR [options]\n"
    "       maa archive mark DIR STEM... --good|--defective|--clear\n"
    "       maa archive export DIR OUT [--include-marked-good] [--test | --defective]\n"
    "                          [--camera NAME] [--since TIME] [--until TIME]\n"
    "DIR is maad's archive.dir.  ls: one line per record, newest first, and a\n"
    "summary.  mark: records the operator's verdict on the parts (STEM: a record's\n"
    "name, or the name of any of its files), which maa review shows and export\n"
    "reads; --clear takes it back.  export: the frames of the sampled passes (and,\n"
    "with --include-marked-good, of every record marked good) into OUT/train/good/,\n"
    "as they were captured, for scripts/train.py and maa calibrate, or with --test\n"
    "into OUT/test/good/ (parts to compare models on, never trained on); with\n"
    "--defective the frames of the records marked defective into OUT/test/defective/.\n"
    "A pass marked defective is never exported as good.  Files already in OUT are\n"
    "kept as they are; records that cannot be read are named and left out.\n\n"
    "options of ls:\n" MAA_CLI_RECORD_HELP;

/* A frame at the most maa reads an image (engine/image.c's limit). */
#define FRAME_MAX (1u << 30)

/* ---- ls ------------------------------------------------------------------ */

static int cmd_ls(int argc, char **argv)
{
    static const char who[] = "maa archive ls";
    static const struct option opts[] = {MAA_CLI_RECORD_OPTIONS, {"help", 0, 0, 'h'},
                                         {0, 0, 0, 0}};
    maa_cli_record_filter f = {0};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int r = maa_cli_record_option(who, &f, c, optarg);
        if (r < 0)
            return 2;
        if (r == 0) {
            fputs(usage, c == 'h' ? stdout : stderr);
            return c == 'h' ? 0 : 2;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "%s: one archive directory expected\n", who);
        return 2;
    }
    maa_cli_archive a;
    if (maa_cli_archive_read(who, argv[optind], &f, &a))
        return 2;
    for (int i = 0; i < a.n; i++) {
        const maa_cli_record *r = &a.rec[i];
        double s = maa_cli_record_number(r, "score"), t = maa_cli_record_number(r, "threshold");
        char score[64] = "score none";
        if (!isnan(s))
            snprintf(score, sizeof score, "score %.4g / T %.4g", s, t);
        printf("%s  %-26s  %zu region%s%s%s  %s\n", r->stem, score,
               json_array_size(json_object_get(r->doc, "defects")),
               json_array_size(json_object_get(r->doc, "defects")) == 1 ? "" : "s",
               r->label ? "  marked " : "", r->label ? r->label : "",
               maa_cli_record_string(r, "reason"));
    }
    char sum[256];
    maa_cli_archive_summary(&a, a.n, sum, sizeof sum);
    printf("%s", sum);
    if (a.matched > a.n)
        printf(" (the newest %d of the %d taken)", a.n, a.matched);
    if (a.unreadable)
        printf("; %d unreadable (named above)", a.unreadable);
    printf("\n");
    maa_cli_archive_free(&a);
    return 0;
}

/* ---- mark ---------------------------------------------------------------- */

/* Writes text as DIR/STEM.json in place of the record's file r->json:
 * through a hidden file renamed over it, with the old file's mode (and,
 * for root, owner), so that whoever read the record can still read it.  A
 * record that maad deleted meanwhile stays deleted. */
static int rewrite_record(const maa_cli_record *r, const char *dir, const char *text,
                          char *err, size_t errlen)
{
    struct stat st;
    if (stat(r->json, &st)) {
        snprintf(err, errlen, "%s: %s", r->json, strerror(errno));
        return MAA_ERR;
    }
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s/.%s.json.XXXXXX", dir, r->stem) >= (int)sizeof tmp) {
        snprintf(err, errlen, "%s: path too long", r->json);
        return MAA_ERR;
    }
    int fd = mkstemp(tmp);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot write beside it: %s", r->json, strerror(errno));
        return MAA_ERR;
    }
    int bad = maa_write_all(fd, text, strlen(text));
    if (!bad && fchmod(fd, st.st_mode & 07777))
        bad = errno;
    if (!bad && geteuid() == 0 && fchown(fd, st.st_uid, st.st_gid))
        bad = errno;
    if (!bad && fsync(fd))
        bad = errno;
    if (close(fd) && !bad)
        bad = errno;
    /* maad deletes whole records, oldest first: one deleted since it was
     * read must not come back as a lone STEM.json */
    if (!bad && access(r->json, F_OK) && errno == ENOENT) {
        snprintf(err, errlen, "%s: deleted meanwhile (maad keeps the archive within its "
                 "budget); not marked", r->json);
        unlink(tmp);
        return MAA_ERR;
    }
    if (!bad && rename(tmp, r->json))
        bad = errno;
    if (bad) {
        snprintf(err, errlen, "%s: cannot write: %s", r->json, strerror(bad));
        unlink(tmp);
        return MAA_ERR;
    }
    return MAA_OK;
}

static int cmd_mark(int argc, char **argv)
{
    static const char who[] = "maa archive mark";
    static const struct option opts[] = {{"good", 0, 0, 'g'}, {"defective", 0, 0, 'd'},
                                         {"clear", 0, 0, 'c'}, {"help", 0, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *label = NULL;
    int c, clear = 0, given = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1)
        switch (c) {
        case 'g': label = "good"; given++; break;
        case 'd': label = "defective"; given++; break;
        case 'c': clear = 1; given++; break;
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return 2;
        }
    if (given != 1 || argc - optind < 2) {
        fprintf(stderr, "%s: DIR, at least one STEM and one of --good, --defective or "
                "--clear expected\n", who);
        return 2;
    }
    const char *dir = argv[optind];
    char now[32], err[MAA_ERRLEN + PATH_MAX];
    time_t t = time(NULL);
    struct tm g;
    strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &g));
    int done = 0, failed = 0;
    for (int i = optind + 1; i < argc; i++) {
        maa_cli_record r;
        int rc = maa_cli_record_load(dir, argv[i], &r, err, sizeof err);
        char *text = NULL;
        if (rc == MAA_OK) {
            if (clear)
                json_object_del(r.doc, "review");
            else
                json_object_set_new(r.doc, "review", json_pack("{s:s,s:s}", "label", label,
                                                               "t", now));
            /* doubles to 17 digits: the verdict's numbers as maad wrote them */
            text = json_dumps(r.doc, JSON_COMPACT | JSON_REAL_PRECISION(17));
            if (!text) {
                snprintf(err, sizeof err, "%s: out of memory", r.json);
                rc = MAA_ERR;
            }
        }
        if (rc == MAA_OK)
            rc = rewrite_record(&r, dir, text, err, sizeof err);
        if (rc) {
            fprintf(stderr, "%s: %s\n", who, err);
            failed++;
        } else {
            done++;
        }
        free(text);
        maa_cli_record_free(&r);
    }
    if (clear)
        printf("%s: cleared the mark of %d record%s", who, done, done == 1 ? "" : "s");
    else
        printf("%s: marked %d record%s %s", who, done, done == 1 ? "" : "s", label);
    printf(failed ? "; %d not (named above)\n" : "\n", failed);
    return failed ? 1 : 0;
}

/* ---- export -------------------------------------------------------------- */

static int make_dir(const char *path)
{
    if (mkdir(path, 0777) && errno != EEXIST) {
        fprintf(stderr, "maa archive export: %s: cannot create: %s\n", path, strerror(errno));
        return MAA_ERR;
    }
    return MAA_OK;
}

enum { COPIED, THERE, SKIPPED, FAILED };

/* Copies the record's frame as OUT/STEM.png, byte for byte, checked to read
 * as an image (train.py stops at one that does not).  THERE when the file
 * exists: left as it is (a second export into OUT adds the new records);
 * SKIPPED (printed) for a record without a readable frame; FAILED (printed)
 * when OUT cannot be written. */
static int export_frame(const char *who, const maa_cli_record *r, const char *out)
{
    char dst[PATH_MAX], tmp[PATH_MAX], err[MAA_ERRLEN + PATH_MAX];
    if (!r->frame) {
        fprintf(stderr, "%s: %s: no frame in the record; left out\n", who, r->json);
        return SKIPPED;
    }
    if (snprintf(dst, sizeof dst, "%s/%s.png", out, r->stem) >= (int)sizeof dst ||
        snprintf(tmp, sizeof tmp, "%s/.%s.png.XXXXXX", out, r->stem) >= (int)sizeof tmp) {
        fprintf(stderr, "%s: %s: path too long\n", who, out);
        return FAILED;
    }
    struct stat st;
    if (!lstat(dst, &st))
        return THERE;
    uint8_t *buf;
    size_t len;
    if (maa_read_file(r->frame, FRAME_MAX, "a frame", &buf, &len, err, sizeof err)) {
        maa_cli_record_gone(r, err, sizeof err);
        fprintf(stderr, "%s: %s; left out\n", who, err);
        return SKIPPED;
    }
    int fd = mkstemp(tmp), bad = fd < 0 ? errno : maa_write_all(fd, buf, len);
    free(buf);
    if (fd >= 0 && !bad && fchmod(fd, 0644))
        bad = errno;
    if (fd >= 0 && close(fd) && !bad)
        bad = errno;
    if (bad) {
        fprintf(stderr, "%s: %s: cannot write: %s\n", who, fd < 0 ? out : tmp, strerror(bad));
        if (fd >= 0)
            unlink(tmp);
        return FAILED;
    }
    /* the copy is what train.py will read */
    maa_image im;
    if (maa_image_load(tmp, &im, err, sizeof err)) {
        fprintf(stderr, "%s: %s: not a readable image (%s); left out\n", who, r->frame, err);
        unlink(tmp);
        return SKIPPED;
    }
    maa_image_free(&im);
    /* link, unlike rename, never replaces a file that appeared meanwhile */
    int rc = link(tmp, dst) ? (errno == EEXIST ? THERE : FAILED) : COPIED;
    if (rc == FAILED)
        fprintf(stderr, "%s: %s: cannot write: %s\n", who, dst, strerror(errno));
    unlink(tmp);
    return rc;
}

static int cmd_export(int argc, char **argv)
{
    static const char who[] = "maa archive export";
    static const struct option opts[] = {
        {"include-marked-good", 0, 0, 'g'}, {"test", 0, 0, 't'}, {"defective", 0, 0, 'd'},
        {"camera", 1, 0, 'C'}, {"since", 1, 0, 'S'}, {"until", 1, 0, 'U'},
        {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    maa_cli_record_filter f = {0};
    int c, marked = 0, test = 0, defective = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int r = maa_cli_record_option(who, &f, c, optarg);
        if (r < 0)
            return 2;
        if (r > 0)
            continue;
        switch (c) {
        case 'g': marked = 1; break;
        case 't': test = 1; break;
        case 'd': defective = 1; break;
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (argc - optind != 2 || (defective && marked)) {
        fprintf(stderr, "%s: DIR and OUT expected%s\n", who,
                defective && marked ? "; --defective takes no --include-marked-good" : "");
        return 2;
    }
    const char *dir = argv[optind], *root = argv[optind + 1];
    /* Only passes unless marked records are asked for: the name says it
     * before the record is read. */
    if (!marked && !defective)
        f.why = "pass";
    maa_cli_archive a;
    if (maa_cli_archive_read(who, dir, &f, &a))
        return 2;
    /* One camera's model learns one camera's view. */
    char cam[256] = "", other[256];
    for (int i = 0; i < a.n; i++) {
        maa_cli_record_camera(&a.rec[i], other, sizeof other);
        if (!cam[0])
            snprintf(cam, sizeof cam, "%s", other);
        else if (strcmp(cam, other)) {
            fprintf(stderr, "%s: %s holds the records of cameras %s and %s, and a model "
                    "learns one camera's view: choose one with --camera\n", who, dir, cam,
                    other);
            maa_cli_archive_free(&a);
            return 2;
        }
    }
    char top[PATH_MAX], sub[PATH_MAX + 16];
    if (snprintf(top, sizeof top, "%s/%s", root, test || defective ? "test" : "train") >=
        (int)sizeof top) {
        fprintf(stderr, "%s: %s: path too long\n", who, root);
        maa_cli_archive_free(&a);
        return 2;
    }
    snprintf(sub, sizeof sub, "%s/%s", top, defective ? "defective" : "good");
    if (make_dir(root) || make_dir(top) || make_dir(sub)) {
        maa_cli_archive_free(&a);
        return 1;
    }
    int n[4] = {0}, passes = 0, left_out = 0, rc = 0;
    for (int i = 0; i < a.n && !n[FAILED]; i++) {
        const maa_cli_record *r = &a.rec[i];
        int pass = !strcmp(r->why, "pass");
        const char *label = r->label ? r->label : "";
        if (defective ? strcmp(label, "defective") : strcmp(label, "good") && !pass)
            continue;
        /* a pass the operator found defective: one the model missed */
        if (!defective && pass && !strcmp(label, "defective")) {
            left_out++;
            continue;
        }
        int k = export_frame(who, r, sub);
        n[k]++;
        passes += pass && k == COPIED;
    }
    a.unreadable += n[SKIPPED];
    printf("%s: %s: %d frame%s written", who, sub, n[COPIED], n[COPIED] == 1 ? "" : "s");
    if (!defective)
        printf(" (%d sampled passes, %d marked good)", passes, n[COPIED] - passes);
    printf(", %d already there and kept", n[THERE]);
    if (left_out)
        printf(", %d pass%s marked defective left out", left_out, left_out == 1 ? "" : "es");
    if (a.unreadable)
        printf(", %d record%s left out (named above)", a.unreadable,
               a.unreadable == 1 ? "" : "s");
    printf("\n");
    if (n[FAILED])
        rc = 1;
    else if (!n[COPIED] && !n[THERE]) {
        fprintf(stderr, "%s: nothing to export: no %s in %s%s\n", who,
                defective ? "records marked defective"
                : marked  ? "sampled passes or records marked good"
                          : "sampled passes",
                dir, defective ? "" : " (maad keeps passes only with archive.sample_passes set)");
        rc = 1;
    }
    maa_cli_archive_free(&a);
    return rc;
}

int maa_cmd_archive(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } sub[] = {{"ls", cmd_ls}, {"mark", cmd_mark}, {"export", cmd_export}};
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        fputs(usage, stdout);
        return 0;
    }
    for (size_t i = 0; argc >= 2 && i < sizeof sub / sizeof sub[0]; i++)
        if (!strcmp(argv[1], sub[i].name))
            return sub[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "maa archive: expected ls, mark or export\n%s", usage);
    return 2;
}
