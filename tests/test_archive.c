/* test_archive.c — the reject archive (daemon/archive.c) in a temporary
 * directory: record names, files and JSON; the budget of bytes and files
 * (checked against the directory itself after every record), oldest first;
 * passes sampled; a restart that keeps the budget and a smaller one; torn
 * records and temporaries removed at the start, other cameras' files left
 * alone; a record larger than the budget refused; a full queue counted; a
 * directory gone and back counted as failed, then written again; the start's
 * checks of the directory. */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "daemon/daemon.h"
#include "tests/check.h"

#define MODEL "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define S 32
#define W 96
#define H 64
/* 2026-12-04T10:15:30.123456Z */
#define T0 1796379330123456000ull

static maad_logger lg;
static char root[64];

static void path_in(char *buf, size_t n, const char *dir, const char *name)
{
    snprintf(buf, n, "%s/%s", dir, name);
}

static void rm_flat(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    char p[512];
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
            path_in(p, sizeof p, dir, de->d_name);
            unlink(p);
        }
    closedir(d);
    rmdir(dir);
}

/* A fresh directory under root. */
static void fresh(char *dir, size_t n, const char *name)
{
    snprintf(dir, n, "%s/%s", root, name);
    rm_flat(dir);
}

/* Files in dir: all of them (names beginning with prefix, "" for all) and
 * their bytes. */
static int count_files(const char *dir, const char *prefix, uint64_t *bytes)
{
    DIR *d = opendir(dir);
    int n = 0;
    *bytes = 0;
    if (!d)
        return -1;
    struct dirent *de;
    char p[512];
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
            strncmp(de->d_name, prefix, strlen(prefix)))
            continue;
        struct stat st;
        path_in(p, sizeof p, dir, de->d_name);
        if (stat(p, &st) == 0) {
            n++;
            *bytes += (uint64_t)st.st_size;
        }
    }
    closedir(d);
    return n;
}

static int exists(const char *dir, const char *name)
{
    char p[512];
    path_in(p, sizeof p, dir, name);
    return access(p, F_OK) == 0;
}

static maad_archive_opts opts(const char *dir)
{
    return (maad_archive_opts){.dir = dir, .camera = "cam0", .max_bytes = 1000000,
                               .max_files = 1000, .sample_passes = 0, .queue = 4,
                               .frame_bytes = W * H * 3, .mask_side = S, .log = &lg};
}

static uint8_t frame_px[W * H * 3], mask_px[S * S];
static maa_region region = {.x = 4, .y = 5, .w = 6, .h = 7, .area = 30};

static maad_verdict verdict(maad_outcome o, uint64_t k)
{
    maad_verdict v = {.frame_id = 100 + k, .t_capture_ns = T0 + k * 1000000u,
                      .verdict = o, .score = 3.5, .threshold = 2.5, .model = MODEL,
                      .rule = MAA_RULE_EITHER, .evidence = MAA_EVIDENCE_SCORE,
                      .mask_peak = 0.5, .mask_threshold = 0.25, .model_size = S,
                      .cam_width = W, .cam_height = H};
    if (o != MAAD_UNINSPECTED) {
        v.mask = mask_px;
        v.regions = &region;
        v.nregions = 1;
    } else {
        v.reason = "camera error: timeout";
    }
    return v;
}

static maa_image frame(int channels)
{
    return (maa_image){.width = W, .height = H, .channels = channels, .depth = 8,
                       .data = frame_px};
}

/* Until the archive's thread has written what was queued (bounded, not
 * timed: it fails only when the thread is stuck). */
static void drain(maad_archive *a)
{
    maad_archive_stats st;
    for (int i = 0; i < 60000; i++) {
        maad_archive_get_stats(a, &st);
        if (st.queued == 0)
            return;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    CHECK(0, "the archive's queue did not drain");
}

static void test_record(void)
{
    char dir[128], err[512];
    fresh(dir, sizeof dir, "record");
    maad_archive_opts o = opts(dir);
    maad_archive *a;
    CHECK(maad_archive_open(&o, &a, err, sizeof err) == MAA_OK, "%s", err);
    if (!a)
        return;
    maad_verdict v = verdict(MAAD_REJECT, 0);
    maa_image f = frame(3);
    CHECK(maad_archive_put(a, &v, 1234, T0 + 5, &f) == 1);
    maad_verdict u = verdict(MAAD_UNINSPECTED, 1);
    CHECK(maad_archive_put(a, &u, 1235, T0 + 6, NULL) == 1);
    maad_verdict p = verdict(MAAD_PASS, 2);
    CHECK(maad_archive_put(a, &p, 1236, T0 + 7, &f) == 0, "passes are not kept by default");
    drain(a);
    maad_archive_stats st;
    maad_archive_get_stats(a, &st);
    maad_archive_close(a, NULL);
    CHECK(st.written == 2 && st.records == 2 && st.files == 4, "written %llu records %llu "
          "files %llu", (unsigned long long)st.written, (unsigned long long)st.records,
          (unsigned long long)st.files);
    const char *stem = "20261204T101530.123456Z-cam0-000000001234-reject";
    char name[128];
    snprintf(name, sizeof name, "%s.png", stem);
    CHECK(exists(dir, name), "%s", name);
    /* For the group to review, whatever the umask. */
    struct stat fst;
    char fp[512];
    path_in(fp, sizeof fp, dir, name);
    CHECK(stat(fp, &fst) == 0 && (fst.st_mode & 0777) == 0640, "mode %o", fst.st_mode & 0777);
    snprintf(name, sizeof name, "%s.mask.png", stem);
    CHECK(exists(dir, name), "%s", name);
    CHECK(exists(dir, "20261204T101530.124456Z-cam0-000000001235-uninspected.json"));
    CHECK(!exists(dir, "20261204T101530.124456Z-cam0-000000001235-uninspected.png"));

    /* The frame back at camera resolution, pixel for pixel. */
    char p2[512];
    snprintf(name, sizeof name, "%s.png", stem);
    path_in(p2, sizeof p2, dir, name);
    maa_image back;
    CHECK(maa_image_load(p2, &back, err, sizeof err) == MAA_OK, "%s", err);
    CHECK(back.width == W && back.height == H && back.channels == 3 &&
          memcmp(back.data, frame_px, sizeof frame_px) == 0, "frame differs");
    maa_image_free(&back);
    snprintf(name, sizeof name, "%s.mask.png", stem);
    path_in(p2, sizeof p2, dir, name);
    CHECK(maa_image_load(p2, &back, err, sizeof err) == MAA_OK, "%s", err);
    CHECK(back.width == S && back.height == S && back.channels == 1 &&
          memcmp(back.data, mask_px, sizeof mask_px) == 0, "mask differs");
    maa_image_free(&back);

    /* The verdict as published, with seq, and what the record holds. */
    snprintf(name, sizeof name, "%s.json", stem);
    path_in(p2, sizeof p2, dir, name);
    json_error_t je;
    json_t *j = json_load_file(p2, 0, &je);
    CHECK(j, "%s", je.text);
    if (j) {
        json_t *ar = json_object_get(j, "archive");
        CHECK(json_integer_value(json_object_get(j, "seq")) == 1234);
        CHECK(json_integer_value(json_object_get(j, "t_publish_ns")) == (json_int_t)(T0 + 5));
        CHECK(json_integer_value(json_object_get(j, "frame_id")) == 100);
        CHECK(!strcmp(json_string_value(json_object_get(j, "verdict")), "reject"));
        CHECK(!strcmp(json_string_value(json_object_get(j, "camera")), "cam0"));
        CHECK(!strcmp(json_string_value(json_object_get(j, "model")), MODEL));
        CHECK(json_array_size(json_object_get(j, "defects")) == 1);
        CHECK(!strcmp(json_string_value(json_object_get(json_object_get(j, "mask"), "format")),
                      "png"));
        CHECK(ar && !strcmp(json_string_value(json_object_get(ar, "frame")),
                            "20261204T101530.123456Z-cam0-000000001234-reject.png"));
        CHECK(ar && !strcmp(json_string_value(json_object_get(ar, "mask")),
                            "20261204T101530.123456Z-cam0-000000001234-reject.mask.png"));
        CHECK(ar && !strcmp(json_string_value(json_object_get(ar, "why")), "reject"));
        json_decref(j);
    }
    path_in(p2, sizeof p2, dir, "20261204T101530.124456Z-cam0-000000001235-uninspected.json");
    j = json_load_file(p2, 0, &je);
    CHECK(j, "%s", je.text);
    if (j) {
        json_t *ar = json_object_get(j, "archive");
        CHECK(json_is_null(json_object_get(ar, "frame")) &&
              json_is_null(json_object_get(ar, "mask")));
        CHECK(!strcmp(json_string_value(json_object_get(ar, "why")), "uninspected"));
        CHECK(!strcmp(json_string_value(json_object_get(j, "reason")), "camera error: timeout"));
        CHECK(json_is_null(json_object_get(j, "score")));
        json_decref(j);
    }
    rm_flat(dir);
}

/* The archive's counts against the directory's. */
static void check_budget(const char *dir, maad_archive *a, const maad_archive_opts *o)
{
    maad_archive_stats st;
    maad_archive_get_stats(a, &st);
    uint64_t bytes;
    int n = count_files(dir, "", &bytes);
    CHECK(n >= 0 && (uint64_t)n == st.files && bytes == st.bytes,
          "directory %d files %llu bytes, archive says %llu files %llu bytes", n,
          (unsigned long long)bytes, (unsigned long long)st.files,
          (unsigned long long)st.bytes);
    CHECK(bytes <= o->max_bytes && (uint64_t)n <= o->max_files,
          "%d files %llu bytes over the budget", n, (unsigned long long)bytes);
}

/* The seqs of the records in dir, in name order, into seqs; their number. */
static int record_seqs(const char *dir, uint64_t *seqs, int max)
{
    struct dirent **list;
    int n = scandir(dir, &list, NULL, alphasort), k = 0;
    for (int i = 0; i < n; i++) {
        const char *nm = list[i]->d_name;
        size_t l = strlen(nm);
        if (l > 5 && !strcmp(nm + l - 5, ".json") && k < max)
            seqs[k++] = strtoull(nm + 29, NULL, 10);
        free(list[i]);
    }
    free(list);
    return k;
}

static void test_budget_oldest_first(void)
{
    char dir[128], err[512];
    fresh(dir, sizeof dir, "budget");
    maad_archive_opts o = opts(dir);
    /* Records of 1 file (no frame) or 3, of sizes from ~1 to ~7 kB (noise
     * frames of random widths, which PNG does not shrink): each budget
     * binds in turn, and a record of any size meets any state. */
    o.max_bytes = 30000;
    o.max_files = 20;
    maad_archive *a;
    CHECK(maad_archive_open(&o, &a, err, sizeof err) == MAA_OK, "%s", err);
    if (!a)
        return;
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof frame_px; i++) {
        x = x * 1103515245u + 12345u;
        frame_px[i] = (uint8_t)(x >> 24);
    }
    const int n = 300;
    uint64_t most_bytes = 0, most_files = 0;
    for (int k = 0; k < n; k++) {
        x = x * 1103515245u + 12345u;
        int with_frame = (x >> 16) % 4 != 0;
        maa_image f = {.width = 1 + (int)((x >> 8) % W), .height = H, .channels = 1,
                       .depth = 8, .data = frame_px};
        maad_verdict v = verdict(with_frame ? MAAD_REJECT : MAAD_UNINSPECTED, (uint64_t)k);
        CHECK(maad_archive_put(a, &v, (uint64_t)k, T0, with_frame ? &f : NULL) == 1);
        drain(a);
        check_budget(dir, a, &o);
        maad_archive_stats st;
        maad_archive_get_stats(a, &st);
        most_bytes = st.bytes > most_bytes ? st.bytes : most_bytes;
        most_files = st.files > most_files ? st.files : most_files;
    }
    maad_archive_stats st;
    maad_archive_get_stats(a, &st);
    maad_archive_close(a, NULL);
    CHECK(st.written == (uint64_t)n && st.failed == 0 && st.dropped == 0);
    CHECK(st.deleted == st.written - st.records, "deleted %llu", (unsigned long long)st.deleted);
    CHECK(most_files == o.max_files && most_bytes > o.max_bytes - 1000,
          "the budget was filled: at most %llu bytes, %llu files",
          (unsigned long long)most_bytes, (unsigned long long)most_files);
    /* What is left is the newest, every one of them. */
    uint64_t seqs[64];
    int k = record_seqs(dir, seqs, 64);
    CHECK(k > 0 && (uint64_t)k == st.records);
    for (int i = 0; i < k; i++)
        CHECK(seqs[i] == (uint64_t)(n - k + i), "record %d has seq %llu", i,
              (unsigned long long)seqs[i]);
    for (size_t i = 0; i < sizeof frame_px; i++)
        frame_px[i] = (uint8_t)(i * 7 + i / 97);
    rm_flat(dir);
}

static void test_sample_passes(void)
{
    char dir[128], err[512];
    fresh(dir, sizeof dir, "sample");
    maad_archive_opts o = opts(dir);
    o.sample_passes = 3;
    maad_archive *a;
    CHECK(maad_archive_open(&o, &a, err, sizeof err) == MAA_OK, "%s", err);
    if (!a)
        return;
    maa_image f = frame(1);
    int kept = 0;
    for (int k = 0; k < 9; k++) {
        maad_verdict v = verdict(MAAD_PASS, (uint64_t)k);
        int rc = maad_archive_put(a, &v, (uint64_t)k, T0, &f);
        CHECK(rc == (k % 3 == 0), "pass %d: %d", k, rc);
        kept += rc == 1;
        drain(a);
    }
    maad_archive_close(a, NULL);
    CHECK(kept == 3);
    CHECK(exists(dir, "20261204T101530.126456Z-cam0-000000000003-pass.json"));
    CHECK(exists(dir, "20261204T101530.126456Z-cam0-000000000003-pass.png"));
    rm_flat(dir);
}

static void make_file(const char *dir, const char *name, size_t bytes)
{
    char p[512];
    path_in(p, sizeof p, dir, name);
    FILE *f = fopen(p, "w");
    for (size_t i = 0; f && i < bytes; i++)
        fputc('x', f);
    if (f)
        fclose(f);
}

static void test_restart_and_torn(void)
{
    char dir[128], err[512];
    fresh(dir, sizeof dir, "restart");
    maad_archive_opts o = opts(dir);
    maad_archive *a;
    CHECK(maad_archive_open(&o, &a, err, sizeof err) == MAA_OK, "%s", err);
    if (!a)
        return;
    maa_image f = frame(3);
    for (int k = 0; k < 10; k++) {
        maad_verdict v = verdict(MAAD_REJECT, (uint64_t)k);
        maad_archive_put(a, &v, (uint64_t)k, T0, &f);
        drain(a);
    }
    maad_archive_stats before;
    maad_archive_get_stats(a, &before);
    maad_archive_close(a, NULL);
    /* A stop mid-record: its frame without its JSON, and a temporary. */
    make_file(dir, "20261204T101531.000000Z-cam0-000000000010-reject.png", 500);
    make_file(dir, "20261204T101531.000000Z-cam0-000000000010-reject.mask.png", 50);
    make_file(dir, ".20261204T101531.000000Z-cam0-000000000010-reject.json.tmp", 20);
    /* Another camera's (one whose name begins with ours, too), and what
     * is not a record: left alone, not counted. */
    make_file(dir, "20261204T101530.000000Z-cam01-000000000001-reject.png", 400);
    make_file(dir, "20261204T101530.000000Z-cam1-000000000001-reject.json", 300);
    make_file(dir, "notes.txt", 10);

    CHECK(maad_archive_open(&o, &a, err, sizeof err) == MAA_OK, "%s", err);
    if (!a)
        return;
    maad_archive_stats st;
    maad_archive_get_stats(a, &st);
    CHECK(st.records == before.records && st.bytes == before.bytes &&
          st.files == before.files, "restart: %llu records %llu bytes %llu files, were "
          "%llu %llu %llu", (unsigned long long)st.records, (unsigned long long)st.bytes,
          (unsigned long long)st.files, (unsigned long long)before.records,
          (unsigned long long)before.bytes, (unsigned long long)before.files);
    CHECK(!exists(dir, "20261204T101531.000000Z-cam0-000000000010-reject.png"), "torn frame");
    CHECK(!exists(dir, "20261204T101531.000000Z-cam0-000000000010-reject.mask.png"));
    CHECK(!exists(dir, ".20261204T101531.000000Z-cam0-000000000010-reject.json.tmp"));
    CHECK(exists(dir, "20261204T101530.000000Z-cam01-000000000001-reject.png"));
    CHECK(exists(dir, "20261204T101530.000000Z-cam1-000000000001-reject.json"));
    CHECK(exists(dir, "notes.txt"));
    maad_archive_close(a, NULL);

    /* A smaller budget holds from the start: the oldest go. */
    uint64_t per = before.bytes / before.records;
    o.max_bytes = per * 4 + per / 2;
    CHECK(maad_archive_open(&o, &a, err, sizeof err) == MAA_OK, "%s", err);
    if (!a)
        return;
    maad_archive_get_stats(a, &st);
    CHECK(st.bytes <= o.max_bytes && st.records == 4 && st.deleted == 6,
          "%llu records, %llu bytes, %llu deleted", (unsigned long long)st.records,
          (unsigned long long)st.bytes, (unsigned long long)st.deleted);
    uint64_t seqs[16];
    int k = record_seqs(dir, seqs, 16);
    /* cam1's JSON sorts among ours by name but is not ours. */
    int ours = 0;
    for (int i = 0; i < k; i++)
        ours += seqs[i] >= 6 && seqs[i] <= 9;
    CHECK(ours == 4, "the newest four are kept");
    maad_archive_close(a, NULL);
    rm_flat(dir);
}

static void test_refused(void)
{
    char dir[128], err[512];
    fresh(dir, sizeof dir, "refused");
    maad_archive_opts o = opts(dir);
    o.max_bytes = 2000;
    maad_archive *a;
    CHECK(maad_archive_open(&o, &a, err, sizeof err) == MAA_OK, "%s", err);
    if (!a)
        return;
    /* Noise does not compress: a frame of ~18 kB, more than the budget. */
    uint32_t x = 1;
    for (size_t i = 0; i < sizeof frame_px; i++) {
        x = x * 1103515245u + 12345u;
        frame_px[i] = (uint8_t)(x >> 24);
    }
    maa_image f = frame(3);
    maad_verdict small = verdict(MAAD_UNINSPECTED, 0);
    CHECK(maad_archive_put(a, &small, 0, T0, NULL) == 1);
    maad_verdict big = verdict(MAAD_REJECT, 1);
    CHECK(maad_archive_put(a, &big, 1, T0, &f) == 1);
    drain(a);
    maad_archive_stats st;
    maad_archive_get_stats(a, &st);
    maad_archive_close(a, NULL);
    CHECK(st.refused == 1 && st.written == 1 && st.deleted == 0 && st.records == 1,
          "refused %llu written %llu deleted %llu", (unsigned long long)st.refused,
          (unsigned long long)st.written, (unsigned long long)st.deleted);
    uint64_t bytes;
    CHECK(count_files(dir, "", &bytes) == 1, "only the small record");
    memset(frame_px, 0, sizeof frame_px);
    rm_flat(dir);
}

static void test_queue_full(void)
{
    char dir[128], err[512];
    fresh(dir, sizeof dir, "queue");
    /* Frames far larger than the test's: encoding one (PNG of noise) takes
     * far longer than copying the next in, so a queue of 1 overflows. */
    enum { BW = 1500, BH = 1000 };
    uint8_t *big = malloc((size_t)BW * BH);
    if (!big)
        return;
    uint32_t x = 7;
    for (size_t i = 0; i < (size_t)BW * BH; i++) {
        x = x * 1103515245u + 12345u;
        big[i] = (uint8_t)(x >> 24);
    }
    maad_archive_opts o = opts(dir);
    o.queue = 1;
    o.frame_bytes = (size_t)BW * BH;
    o.max_bytes = 100000000;
    maad_archive *a;
    CHECK(maad_archive_open(&o, &a, err, sizeof err) == MAA_OK, "%s", err);
    if (!a) {
        free(big);
        return;
    }
    maa_image f = {.width = BW, .height = BH, .channels = 1, .depth = 8, .data = big};
    int queued = 0, dropped = 0;
    for (int k = 0; k < 40; k++) {
        maad_verdict v = verdict(MAAD_REJECT, (uint64_t)k);
        int rc = maad_archive_put(a, &v, (uint64_t)k, T0, &f);
        queued += rc == 1;
        dropped += rc == -1;
    }
    drain(a);
    maad_archive_stats st;
    maad_archive_get_stats(a, &st);
    maad_archive_close(a, NULL);
    CHECK(dropped > 0, "a queue of 1 never filled");
    CHECK(st.dropped == (uint64_t)dropped && st.written == (uint64_t)queued &&
          queued + dropped == 40, "dropped %llu (%d), written %llu (%d)",
          (unsigned long long)st.dropped, dropped, (unsigned long long)st.written, queued);
    free(big);
    rm_flat(dir);
}

/* A mask larger than the queue's records (a model of larger S swapped in):
 * that record is dropped and counted, the next fits. */
static void test_record_grows(void)
{
    char dir[128], err[512];
    fresh(dir, sizeof dir, "grow");
    maad_archive_opts o = opts(dir);
    o.mask_side = 8;
    o.frame_bytes = 0;
    maad_archive *a;
    CHECK(maad_archive_open(&o, &a, err, sizeof err) == MAA_OK, "%s", err);
    if (!a)
        return;
    maad_verdict v = verdict(MAAD_REJECT, 0);
    CHECK(maad_archive_put(a, &v, 0, T0, NULL) == -1);
    int rc = -1;
    /* The archive's thread grows its free records; bounded, not timed. */
    for (int i = 0; i < 60000 && rc == -1; i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
        rc = maad_archive_put(a, &v, 1, T0, NULL);
    }
    CHECK(rc == 1);
    drain(a);
    maad_archive_stats st;
    maad_archive_get_stats(a, &st);
    maad_archive_close(a, NULL);
    CHECK(st.written == 1 && st.dropped >= 1);
    rm_flat(dir);
}

/* The directory moved away under the archive (a disk unmounted): records
 * fail, are counted, and the archive writes again once it is back. */
static void test_dir_gone(void)
{
    char dir[128], away[160], err[512];
    fresh(dir, sizeof dir, "gone");
    snprintf(away, sizeof away, "%s.away", dir);
    rm_flat(away);
    maad_archive_opts o = opts(dir);
    maad_archive *a;
    CHECK(maad_archive_open(&o, &a, err, sizeof err) == MAA_OK, "%s", err);
    if (!a)
        return;
    maa_image f = frame(1);
    maad_verdict v = verdict(MAAD_REJECT, 0);
    maad_archive_put(a, &v, 0, T0, &f);
    drain(a);
    CHECK(rename(dir, away) == 0, "%s", strerror(errno));
    for (int k = 1; k <= 3; k++) {
        v = verdict(MAAD_REJECT, (uint64_t)k);
        maad_archive_put(a, &v, (uint64_t)k, T0, &f);
        drain(a);
    }
    maad_archive_stats st;
    maad_archive_get_stats(a, &st);
    CHECK(st.failed == 3 && st.written == 1, "failed %llu written %llu",
          (unsigned long long)st.failed, (unsigned long long)st.written);
    CHECK(rename(away, dir) == 0, "%s", strerror(errno));
    v = verdict(MAAD_REJECT, 4);
    maad_archive_put(a, &v, 4, T0, &f);
    drain(a);
    maad_archive_get_stats(a, &st);
    maad_archive_close(a, NULL);
    CHECK(st.failed == 3 && st.written == 2 && st.records == 2);
    uint64_t bytes;
    CHECK(count_files(dir, "", &bytes) == 6 && st.files == 6 && bytes == st.bytes,
          "no partial files left");
    rm_flat(dir);
}

static void test_dir_checks(void)
{
    char dir[128], deep[192], file[192], err[512];
    fresh(dir, sizeof dir, "made");
    snprintf(deep, sizeof deep, "%s/no/such", root);
    snprintf(file, sizeof file, "%s/plain", root);
    make_file(root, "plain", 1);
    CHECK(maad_archive_check_dir(dir, err, sizeof err) == MAA_OK, "%s", err);
    CHECK(access(dir, F_OK) != 0, "the check makes nothing");
    CHECK(maad_archive_check_dir(deep, err, sizeof err) == MAA_ERR &&
          strstr(err, "nor does its parent"), "%s", err);
    CHECK(maad_archive_check_dir(file, err, sizeof err) == MAA_ERR &&
          strstr(err, "not a directory"), "%s", err);
    maad_archive_opts o = opts(dir);
    maad_archive *a;
    CHECK(maad_archive_open(&o, &a, err, sizeof err) == MAA_OK, "%s", err);
    maad_archive_close(a, NULL);
    struct stat st;
    CHECK(stat(dir, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0750,
          "the start makes the directory, mode 0750");
    o.dir = deep;
    CHECK(maad_archive_open(&o, &a, err, sizeof err) == MAA_ERR && !a &&
          strstr(err, deep), "%s", err);
    rm_flat(dir);
    unlink(file);
}

int main(void)
{
    snprintf(root, sizeof root, "/tmp/test_archive.XXXXXX");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    maad_log_init(&lg, "t", MAAD_LOG_ERR);
    /* The unit's umask: the modes above are maad's own. */
    umask(0077);
    for (int i = 0; i < S * S; i++)
        mask_px[i] = (i / S > 4 && i / S < 12 && i % S > 3 && i % S < 10) ? 255 : 0;
    for (size_t i = 0; i < sizeof frame_px; i++)
        frame_px[i] = (uint8_t)(i * 7 + i / 97);
    RUN(test_record);
    RUN(test_budget_oldest_first);
    RUN(test_sample_passes);
    RUN(test_restart_and_torn);
    RUN(test_refused);
    RUN(test_queue_full);
    RUN(test_record_grows);
    RUN(test_dir_gone);
    RUN(test_dir_checks);
    rmdir(root);
    return CHECK_SUMMARY();
}
