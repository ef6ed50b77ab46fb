/* archive.c — the reject archive (see daemon.h; the format is in
 * docs/operations.md, "Reject archive").
 *
 * Two sides.  The worker calls maad_archive_put, which copies the verdict,
 * the frame and the mask into a record taken from a free list of `queue`
 * records allocated at the start, and queues it: a lock held for a few
 * pointer moves, never across a copy or the disk, and no allocation.  With
 * no free record the record is dropped, counted and logged once per run of
 * drops.  The archive's thread takes records in order, encodes the PNGs,
 * makes room within the budget, writes, and gives the record back.
 *
 * The budget is strict: the new record's bytes and files are known (the
 * PNGs and the JSON are encoded in memory first) before anything is
 * written, and the oldest records are deleted until they fit, so the
 * camera's records never exceed max_bytes or max_files, not even while a
 * record is being written (its temporary JSON counts as its JSON).  Bytes
 * are the files' sizes (st_size), not the blocks the file system rounds
 * them up to.
 *
 * The index of records on disk (stem, which files, their sizes) lives on the
 * archive's thread alone, oldest first; at the start it is read from the
 * directory, so a restart keeps the budget.
 *
 * fsync: each file is fdatasync'ed before the JSON's rename, so that a
 * complete record (its STEM.json is the commit point) never names a frame
 * that a power cut left empty.  The directory itself is not synced: a
 * rename or an unlink lost in a power cut leaves a torn record (removed at
 * the next start) or a record that comes back (counted at the next start),
 * both harmless, where a directory sync per record would double the disk's
 * flushes. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "daemon/daemon.h"

/* time (23) - camera (<= 32) - seq (12) - why (<= 11), NUL: 82. */
#define STEM_SIZE 96
#define TIME_LEN 23  /* YYYYMMDDTHHMMSS.ffffffZ */
/* Records are readable by the group (0640 files in a 0750 directory made
 * by maad), whatever the process's umask (the unit's is 0077): an operator
 * in maad's group reviews them (docs/operations.md). */
#define FILE_MODE 0640
#define DIR_MODE 0750
/* The directory (config's MAAD_PATH_SIZE at most), '/', '.', a stem, a suffix. */
#define PATH_SIZE (4096 + STEM_SIZE + 32)

/* A record's files, in the order they are deleted: the JSON first, so that
 * a deletion cut short leaves a torn record, never a complete one that
 * misses a file. */
enum { F_JSON, F_FRAME, F_MASK, NKINDS };
static const char *const suffixes[NKINDS] = {".json", ".png", ".mask.png"};

/* A record waiting for the disk: the verdict and what it points to, copied. */
typedef struct rec {
    struct rec *next;
    maad_verdict v;             /* its pointers lead into the fields below */
    uint64_t seq, t_publish_ns;
    char reason[MAAD_REASON_SIZE];
    char model[65];
    maa_region regions[MAA_MAX_REGIONS];
    int fw, fh, fc;             /* the frame's sides and channels; fw 0: none */
    uint8_t *buf;               /* the frame's pixels, then the mask's */
    size_t cap;
} rec;

/* A record on disk. */
typedef struct {
    char stem[STEM_SIZE];
    uint64_t size[NKINDS];
    unsigned char has[NKINDS];
} entry;

struct maad_archive {
    maad_archive_opts o;
    char *dir, *camera;

    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    /* Guarded by lock. */
    rec *free_list, *q_head, *q_tail;
    int stop;
    size_t rec_cap;             /* the room a record needs: grows when one did not fit */
    int grow;                   /* free records are smaller than rec_cap */
    maad_archive_stats st;

    rec *recs;                  /* all of them, for the free at the end */

    /* The worker's (maad_archive_put's caller's) alone. */
    uint64_t passes;            /* passes seen, for the sample */
    uint64_t drop_run;          /* records dropped since the last one queued */

    /* The archive thread's alone (and maad_archive_open's before it). */
    entry *idx;                 /* idx[lo .. lo + n): oldest first */
    size_t lo, n, cap;
    uint64_t fail_run;          /* records failed since the last one written */
    uint64_t refuse_run;
    int grow_failed;
};

/* ---- names ------------------------------------------------------------------ */

static void format_stem(const maad_archive *a, const rec *r, char *stem)
{
    time_t secs = (time_t)(r->v.t_capture_ns / 1000000000u);
    unsigned usec = (unsigned)(r->v.t_capture_ns % 1000000000u / 1000u);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char when[32];
    strftime(when, sizeof when, "%Y%m%dT%H%M%S", &tm);
    snprintf(stem, STEM_SIZE, "%s.%06uZ-%s-%012llu-%s", when, usec, a->camera,
             (unsigned long long)r->seq, maad_outcome_name(r->v.verdict));
}

static int all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

/* The length of this camera's stem that name begins with, else 0. */
static size_t own_stem(const maad_archive *a, const char *name)
{
    static const char *const whys[] = {"reject", "uninspected", "pass"};
    const size_t cl = strlen(a->camera);
    if (strlen(name) < TIME_LEN + 1 + cl + 1 + 12 + 1 || !all_digits(name, 8) ||
        name[8] != 'T' || !all_digits(name + 9, 6) || name[15] != '.' ||
        !all_digits(name + 16, 6) || name[22] != 'Z' || name[23] != '-' ||
        strncmp(name + 24, a->camera, cl) != 0 || name[24 + cl] != '-' ||
        !all_digits(name + 25 + cl, 12) || name[37 + cl] != '-')
        return 0;
    const char *why = name + 38 + cl;
    for (int i = 0; i < 3; i++) {
        size_t wl = strlen(whys[i]);
        if (strncmp(why, whys[i], wl) == 0 && (why[wl] == '.' || why[wl] == '\0'))
            return (size_t)(why + wl - name);
    }
    return 0;
}

static void path_of(const maad_archive *a, const char *stem, const char *suffix, char *path,
                    size_t n)
{
    snprintf(path, n, "%s/%s%s", a->dir, stem, suffix);
}

/* ---- the index ---------------------------------------------------------------- */

/* Room for one more entry at the end; MAA_ERR when out of memory. */
static int idx_reserve(maad_archive *a)
{
    if (a->lo + a->n < a->cap)
        return MAA_OK;
    if (a->lo > 0) {
        memmove(a->idx, a->idx + a->lo, a->n * sizeof *a->idx);
        a->lo = 0;
        if (a->n < a->cap)
            return MAA_OK;
    }
    size_t cap = a->cap ? 2 * a->cap : 256;
    entry *p = realloc(a->idx, cap * sizeof *p);
    if (!p)
        return MAA_ERR;
    a->idx = p;
    a->cap = cap;
    return MAA_OK;
}

/* e in name order: at the end, unless the clock went back. */
static int idx_insert(maad_archive *a, const entry *e)
{
    if (idx_reserve(a) != MAA_OK)
        return MAA_ERR;
    entry *v = a->idx + a->lo;
    size_t i = a->n;
    while (i > 0 && strcmp(v[i - 1].stem, e->stem) > 0)
        i--;
    memmove(v + i + 1, v + i, (a->n - i) * sizeof *v);
    v[i] = *e;
    a->n++;
    return MAA_OK;
}

static uint64_t entry_bytes(const entry *e)
{
    return e->size[F_JSON] + e->size[F_FRAME] + e->size[F_MASK];
}

static unsigned entry_files(const entry *e)
{
    return (unsigned)e->has[F_JSON] + e->has[F_FRAME] + e->has[F_MASK];
}

/* Deletes the oldest record's files, JSON first.  MAA_ERR (errno set, the
 * path in path) when one cannot be: the record then stays first, with what
 * is left of it counted. */
static int delete_oldest(maad_archive *a, char *path, size_t pathlen)
{
    entry *e = &a->idx[a->lo];
    for (int k = 0; k < NKINDS; k++) {
        if (!e->has[k])
            continue;
        path_of(a, e->stem, suffixes[k], path, pathlen);
        if (unlink(path) != 0 && errno != ENOENT)
            return MAA_ERR;
        pthread_mutex_lock(&a->lock);
        a->st.bytes -= e->size[k];
        a->st.files--;
        if (k == F_JSON)
            a->st.records--;
        pthread_mutex_unlock(&a->lock);
        e->has[k] = 0;
        e->size[k] = 0;
    }
    pthread_mutex_lock(&a->lock);
    a->st.deleted++;
    pthread_mutex_unlock(&a->lock);
    a->lo++;
    a->n--;
    return MAA_OK;
}

/* Deletes the oldest records until bytes and files more fit the budget. */
static int make_room(maad_archive *a, uint64_t bytes, uint64_t files, char *path,
                     size_t pathlen)
{
    for (;;) {
        pthread_mutex_lock(&a->lock);
        int fits = a->st.bytes + bytes <= a->o.max_bytes && a->st.files + files <= a->o.max_files;
        pthread_mutex_unlock(&a->lock);
        if (fits || a->n == 0)
            return fits ? MAA_OK : MAA_ERR;
        if (delete_oldest(a, path, pathlen) != MAA_OK)
            return MAA_ERR;
    }
}

/* ---- the directory at the start ------------------------------------------------ */

static int prepare_dir(const char *dir, int create, char *err, size_t errlen)
{
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) {
            snprintf(err, err ? errlen : 0, "archive.dir %s: not a directory", dir);
            return MAA_ERR;
        }
        if (access(dir, W_OK | X_OK) != 0) {
            snprintf(err, err ? errlen : 0, "archive.dir %s: not writable: %s", dir,
                     strerror(errno));
            return MAA_ERR;
        }
        return MAA_OK;
    }
    if (errno != ENOENT) {
        snprintf(err, err ? errlen : 0, "archive.dir %s: %s", dir, strerror(errno));
        return MAA_ERR;
    }
    /* Created only inside a directory that exists: a parent missing is
     * more likely an unmounted disk or a mistyped path than a wish for a
     * tree of directories, and an archive written to the root file system
     * instead of its disk fills the wrong one. */
    char *copy = strdup(dir);
    if (!copy) {
        snprintf(err, err ? errlen : 0, "archive.dir %s: out of memory", dir);
        return MAA_ERR;
    }
    const char *parent = dirname(copy);
    int rc = MAA_ERR;
    if (stat(parent, &st) != 0 || !S_ISDIR(st.st_mode))
        snprintf(err, err ? errlen : 0,
                 "archive.dir %s does not exist, nor does its parent %s (maad creates "
                 "only the last directory)", dir, parent);
    else if (access(parent, W_OK | X_OK) != 0)
        snprintf(err, err ? errlen : 0,
                 "archive.dir %s does not exist and cannot be made in %s: %s", dir, parent,
                 strerror(errno));
    else if (create && ((mkdir(dir, DIR_MODE) != 0 && errno != EEXIST) ||
                        chmod(dir, DIR_MODE) != 0))
        snprintf(err, err ? errlen : 0, "archive.dir %s: cannot make it: %s", dir,
                 strerror(errno));
    else
        rc = MAA_OK;
    free(copy);
    return rc;
}

int maad_archive_check_dir(const char *dir, char *err, size_t errlen)
{
    return prepare_dir(dir, 0, err, errlen);
}

/* One of this camera's files found at the start. */
typedef struct {
    char stem[STEM_SIZE];
    int kind;
    uint64_t size;
} found;

static int by_stem(const void *x, const void *y)
{
    return strcmp(((const found *)x)->stem, ((const found *)y)->stem);
}

/* Reads the directory into the index: this camera's complete records;
 * its torn records and temporaries are removed.  Counts into *torn. */
static int scan(maad_archive *a, uint64_t *torn, uint64_t *temps, char *err, size_t errlen)
{
    DIR *d = opendir(a->dir);
    if (!d) {
        snprintf(err, errlen, "archive.dir %s: %s", a->dir, strerror(errno));
        return MAA_ERR;
    }
    found *f = NULL;
    size_t nf = 0, capf = 0;
    int rc = MAA_OK;
    char path[PATH_SIZE];
    struct dirent *de;
    while (rc == MAA_OK && (de = readdir(d))) {
        const char *name = de->d_name;
        /* Temporaries begin with a '.': ours, left by a stop mid-write. */
        if (name[0] == '.' && own_stem(a, name + 1)) {
            path_of(a, name, "", path, sizeof path);
            if (unlink(path) == 0)
                (*temps)++;
            continue;
        }
        size_t sl = own_stem(a, name);
        int kind = -1;
        for (int k = 0; sl && k < NKINDS; k++)
            if (strcmp(name + sl, suffixes[k]) == 0)
                kind = k;
        struct stat st;
        if (kind < 0 || fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
            !S_ISREG(st.st_mode) || sl >= STEM_SIZE)
            continue;
        if (nf == capf) {
            capf = capf ? 2 * capf : 256;
            found *p = realloc(f, capf * sizeof *p);
            if (!p) {
                snprintf(err, errlen, "archive.dir %s: out of memory reading it", a->dir);
                rc = MAA_ERR;
                break;
            }
            f = p;
        }
        memcpy(f[nf].stem, name, sl);
        f[nf].stem[sl] = '\0';
        f[nf].kind = kind;
        f[nf].size = (uint64_t)st.st_size;
        nf++;
    }
    closedir(d);
    if (rc == MAA_OK && nf)
        qsort(f, nf, sizeof *f, by_stem);
    for (size_t i = 0; rc == MAA_OK && i < nf;) {
        entry e = {0};
        snprintf(e.stem, sizeof e.stem, "%s", f[i].stem);
        for (; i < nf && strcmp(f[i].stem, e.stem) == 0; i++) {
            e.has[f[i].kind] = 1;
            e.size[f[i].kind] = f[i].size;
        }
        if (!e.has[F_JSON]) {
            for (int k = 0; k < NKINDS; k++)
                if (e.has[k]) {
                    path_of(a, e.stem, suffixes[k], path, sizeof path);
                    unlink(path);
                }
            (*torn)++;
            continue;
        }
        if (idx_insert(a, &e) != MAA_OK) {
            snprintf(err, errlen, "archive.dir %s: out of memory reading it", a->dir);
            rc = MAA_ERR;
            break;
        }
        a->st.records++;
        a->st.bytes += entry_bytes(&e);
        a->st.files += entry_files(&e);
    }
    free(f);
    return rc;
}

/* ---- writing a record ------------------------------------------------------------ */

/* Writes len bytes of data to a new file at path, synced.  MAA_ERR with
 * errno set. */
static int write_new(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, FILE_MODE);
    if (fd < 0)
        return MAA_ERR;
    if (fchmod(fd, FILE_MODE) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return MAA_ERR;
    }
    int e = maa_write_all(fd, data, len);
    if (e) {
        close(fd);
        errno = e;
        return MAA_ERR;
    }
    if (fdatasync(fd) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return MAA_ERR;
    }
    return close(fd) == 0 ? MAA_OK : MAA_ERR;
}

/* A record not written: "cannot <what> <path>: <why>", logged at the
 * first of a run. */
static void failed(maad_archive *a, const char *what, const char *path, const char *why)
{
    pthread_mutex_lock(&a->lock);
    a->st.failed++;
    pthread_mutex_unlock(&a->lock);
    if (a->fail_run++ == 0)
        maad_log(a->o.log, MAAD_LOG_WARNING,
                 "archive: %s %s: %s; records are counted as failed (not written) until "
                 "writing works again", what, path, why);
}

static void write_record(maad_archive *a, rec *r)
{
    char stem[STEM_SIZE], path[PATH_SIZE], tmp[PATH_SIZE], why[MAA_ERRLEN];
    format_stem(a, r, stem);
    void *png[NKINDS] = {NULL, NULL, NULL};
    size_t len[NKINDS] = {0, 0, 0};
    char *json = NULL;
    int written[NKINDS] = {0, 0, 0};
    const int s = r->v.model_size;

    if (r->fw && maa_png_encode(r->buf, r->fw, r->fh, r->fc, &png[F_FRAME], &len[F_FRAME],
                                why, sizeof why) != MAA_OK) {
        path_of(a, stem, suffixes[F_FRAME], path, sizeof path);
        failed(a, "cannot encode", path, why);
        goto out;
    }
    if (r->v.mask && maa_png_encode(r->v.mask, s, s, 1, &png[F_MASK], &len[F_MASK], why,
                                    sizeof why) != MAA_OK) {
        path_of(a, stem, suffixes[F_MASK], path, sizeof path);
        failed(a, "cannot encode", path, why);
        goto out;
    }
    char frame_name[STEM_SIZE + 16], mask_name[STEM_SIZE + 16];
    snprintf(frame_name, sizeof frame_name, "%s%s", stem, suffixes[F_FRAME]);
    snprintf(mask_name, sizeof mask_name, "%s%s", stem, suffixes[F_MASK]);
    json_t *o = maad_verdict_json(&r->v, a->camera, r->seq, r->t_publish_ns,
                                  r->v.mask ? MAAD_MASK_PNG : MAAD_MASK_NONE);
    if (o)
        json_object_set_new(o, "archive",
                            json_pack("{s:o,s:o,s:s}",
                                      "frame", png[F_FRAME] ? json_string(frame_name)
                                                            : json_null(),
                                      "mask", png[F_MASK] ? json_string(mask_name)
                                                          : json_null(),
                                      "why", maad_outcome_name(r->v.verdict)));
    json = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;
    json_decref(o);
    path_of(a, stem, suffixes[F_JSON], path, sizeof path);
    if (!json) {
        failed(a, "cannot encode", path, "not a JSON text (a reason not in UTF-8?)");
        goto out;
    }
    len[F_JSON] = strlen(json);
    png[F_JSON] = json;

    entry e = {0};
    snprintf(e.stem, sizeof e.stem, "%s", stem);
    for (int k = 0; k < NKINDS; k++) {
        e.has[k] = png[k] != NULL;
        e.size[k] = len[k];
    }
    const uint64_t bytes = entry_bytes(&e), files = entry_files(&e);
    if (bytes > a->o.max_bytes || files > a->o.max_files) {
        pthread_mutex_lock(&a->lock);
        a->st.refused++;
        pthread_mutex_unlock(&a->lock);
        if (a->refuse_run++ == 0)
            maad_log(a->o.log, MAAD_LOG_WARNING,
                     "archive: record %s of %llu bytes in %llu files is larger than the "
                     "budget alone (archive.max_bytes %llu, archive.max_files %llu): refused",
                     stem, (unsigned long long)bytes, (unsigned long long)files,
                     (unsigned long long)a->o.max_bytes, (unsigned long long)a->o.max_files);
        goto out;
    }
    a->refuse_run = 0;
    if (make_room(a, bytes, files, path, sizeof path) != MAA_OK) {
        failed(a, "cannot delete", path, strerror(errno));
        goto out;
    }
    for (int k = F_FRAME; k < NKINDS; k++) {
        if (!png[k])
            continue;
        path_of(a, stem, suffixes[k], path, sizeof path);
        if (write_new(path, png[k], len[k]) != MAA_OK) {
            failed(a, "cannot write", path, strerror(errno));
            goto undo;
        }
        written[k] = 1;
    }
    /* The commit point: a temporary, then the rename. */
    snprintf(tmp, sizeof tmp, "%s/.%s%s.tmp", a->dir, stem, suffixes[F_JSON]);
    path_of(a, stem, suffixes[F_JSON], path, sizeof path);
    if (write_new(tmp, json, len[F_JSON]) != MAA_OK || rename(tmp, path) != 0) {
        const int err = errno;
        unlink(tmp);
        failed(a, "cannot write", path, strerror(err));
        goto undo;
    }
    if (idx_insert(a, &e) != MAA_OK) {
        /* Written, but the index cannot hold it: deleted rather than left
         * uncounted beyond the budget. */
        unlink(path);
        failed(a, "index", path, "out of memory");
        goto undo;
    }
    pthread_mutex_lock(&a->lock);
    a->st.written++;
    a->st.written_bytes += bytes;
    a->st.records++;
    a->st.bytes += bytes;
    a->st.files += files;
    pthread_mutex_unlock(&a->lock);
    if (a->fail_run) {
        maad_log(a->o.log, MAAD_LOG_NOTICE,
                 "archive: writing to %s works again; %llu records failed before it",
                 a->dir, (unsigned long long)a->fail_run);
        a->fail_run = 0;
    }
    goto out;
undo:
    for (int k = F_FRAME; k < NKINDS; k++)
        if (written[k]) {
            path_of(a, stem, suffixes[k], path, sizeof path);
            unlink(path);
        }
out:
    for (int k = 0; k < NKINDS; k++)
        free(png[k]);
}

/* ---- the thread ------------------------------------------------------------------ */

/* r with room for want bytes, when memory allows (else it stays as it
 * was, and a record that large is dropped again). */
static void grow_rec(maad_archive *a, rec *r, size_t want)
{
    if (r->cap >= want)
        return;
    uint8_t *b = malloc(want);
    if (!b) {
        if (!a->grow_failed)
            maad_log(a->o.log, MAAD_LOG_ERR, "archive: out of memory for queued records of "
                     "%zu bytes: records that large are dropped", want);
        a->grow_failed = 1;
        return;
    }
    a->grow_failed = 0;
    free(r->buf);
    r->buf = b;
    r->cap = want;
}

/* After a record did not fit (a model of a larger S swapped in): every
 * free record grown to rec_cap.  Called and returns with the lock held;
 * allocates without it, with the records out of the free list (a put
 * meanwhile finds none: dropped, counted); the records in the queue grow
 * when they come back (run). */
static void grow_free(maad_archive *a)
{
    const size_t want = a->rec_cap;
    rec *list = a->free_list, *last = NULL;
    a->free_list = NULL;
    a->grow = 0;
    pthread_mutex_unlock(&a->lock);
    for (rec *r = list; r; last = r, r = r->next)
        grow_rec(a, r, want);
    pthread_mutex_lock(&a->lock);
    if (last) {
        last->next = a->free_list;
        a->free_list = list;
    }
}

static void *run(void *arg)
{
    maad_archive *a = arg;
    pthread_mutex_lock(&a->lock);
    for (;;) {
        while (!a->q_head && !a->stop && !a->grow)
            pthread_cond_wait(&a->wake, &a->lock);
        if (a->grow) {
            grow_free(a);
            continue;
        }
        rec *r = a->q_head;
        if (!r)
            break;
        a->q_head = r->next;
        if (!a->q_head)
            a->q_tail = NULL;
        pthread_mutex_unlock(&a->lock);
        write_record(a, r);
        pthread_mutex_lock(&a->lock);
        const size_t want = a->rec_cap;
        pthread_mutex_unlock(&a->lock);
        grow_rec(a, r, want);
        pthread_mutex_lock(&a->lock);
        a->st.queued--;
        r->next = a->free_list;
        a->free_list = r;
    }
    pthread_mutex_unlock(&a->lock);
    return NULL;
}

/* ---- the worker's side ------------------------------------------------------------- */

int maad_archive_put(maad_archive *a, const maad_verdict *v, uint64_t seq,
                     uint64_t t_publish_ns, const maa_image *frame)
{
    if (v->verdict == MAAD_PASS &&
        (a->o.sample_passes <= 0 || a->passes++ % (uint64_t)a->o.sample_passes != 0))
        return 0;
    /* The camera module makes 8-bit gray or RGB frames; anything else is
     * kept without its frame rather than not at all. */
    if (frame && (!frame->data || frame->depth != 8 ||
                  (frame->channels != 1 && frame->channels != 3)))
        frame = NULL;
    const size_t fbytes = frame ? (size_t)frame->width * frame->height * frame->channels : 0;
    const size_t mbytes = v->mask ? (size_t)v->model_size * v->model_size : 0;
    const size_t need = fbytes + mbytes;

    pthread_mutex_lock(&a->lock);
    rec *r = a->free_list;
    int too_small = r && r->cap < need;
    if (too_small) {
        /* Grown by the archive's thread, which may allocate. */
        if (need > a->rec_cap)
            a->rec_cap = need;
        a->grow = 1;
        pthread_cond_signal(&a->wake);
        r = NULL;
    }
    if (r) {
        a->free_list = r->next;
        a->st.queued++;
    } else {
        a->st.dropped++;
    }
    pthread_mutex_unlock(&a->lock);
    if (!r) {
        if (a->drop_run++ > 0)
            return -1;
        if (too_small)
            maad_log(a->o.log, MAAD_LOG_WARNING,
                     "archive: a record of %zu bytes does not fit the queue's records: "
                     "dropped (they grow for the next)", need);
        else
            maad_log(a->o.log, MAAD_LOG_WARNING,
                     "archive: the queue is full (archive.queue %d): records are dropped "
                     "until the disk catches up", a->o.queue);
        return -1;
    }

    r->v = *v;
    r->seq = seq;
    r->t_publish_ns = t_publish_ns;
    if (v->reason) {
        snprintf(r->reason, sizeof r->reason, "%s", v->reason);
        r->v.reason = r->reason;
    }
    snprintf(r->model, sizeof r->model, "%s", v->model ? v->model : "");
    r->v.model = r->model;
    int nreg = v->nregions < MAA_MAX_REGIONS ? v->nregions : MAA_MAX_REGIONS;
    if (nreg > 0)
        memcpy(r->regions, v->regions, (size_t)nreg * sizeof *r->regions);
    r->v.nregions = nreg > 0 ? nreg : 0;
    r->v.regions = r->regions;
    r->fw = frame ? frame->width : 0;
    r->fh = frame ? frame->height : 0;
    r->fc = frame ? frame->channels : 0;
    if (fbytes)
        memcpy(r->buf, frame->data, fbytes);
    if (mbytes) {
        memcpy(r->buf + fbytes, v->mask, mbytes);
        r->v.mask = r->buf + fbytes;
    }
    r->next = NULL;

    pthread_mutex_lock(&a->lock);
    if (a->q_tail)
        a->q_tail->next = r;
    else
        a->q_head = r;
    a->q_tail = r;
    pthread_cond_signal(&a->wake);
    pthread_mutex_unlock(&a->lock);
    if (a->drop_run) {
        maad_log(a->o.log, MAAD_LOG_NOTICE,
                 "archive: records are queued again; %llu were dropped before",
                 (unsigned long long)a->drop_run);
        a->drop_run = 0;
    }
    return 1;
}

void maad_archive_get_stats(maad_archive *a, maad_archive_stats *st)
{
    pthread_mutex_lock(&a->lock);
    *st = a->st;
    pthread_mutex_unlock(&a->lock);
}

void maad_archive_stats_line(const maad_archive_stats *st, char *buf, size_t n)
{
    snprintf(buf, n,
             "archive: written %llu (%.1f MB), holds %llu records (%.1f of %.1f MB, %llu of "
             "%llu files), dropped %llu, failed %llu, refused %llu, deleted %llu",
             (unsigned long long)st->written, st->written_bytes / 1e6,
             (unsigned long long)st->records, st->bytes / 1e6, st->max_bytes / 1e6,
             (unsigned long long)st->files, (unsigned long long)st->max_files,
             (unsigned long long)st->dropped, (unsigned long long)st->failed,
             (unsigned long long)st->refused, (unsigned long long)st->deleted);
}

/* ---- life cycle -------------------------------------------------------------------- */

static void archive_free(maad_archive *a)
{
    pthread_cond_destroy(&a->wake);
    pthread_mutex_destroy(&a->lock);
    if (a->recs)
        for (int i = 0; i < a->o.queue; i++)
            free(a->recs[i].buf);
    free(a->recs);
    free(a->idx);
    free(a->dir);
    free(a->camera);
    free(a);
}

int maad_archive_open(const maad_archive_opts *o, maad_archive **out, char *err,
                      size_t errlen)
{
    *out = NULL;
    if (!o->dir || !*o->dir || !o->camera || !*o->camera || o->queue < 1 ||
        o->max_bytes == 0 || o->max_files == 0 || o->sample_passes < 0 || o->mask_side < 0) {
        snprintf(err, err ? errlen : 0, "archive: bad options");
        return MAA_ERR;
    }
    if (prepare_dir(o->dir, 1, err, errlen) != MAA_OK)
        return MAA_ERR;
    maad_archive *a = calloc(1, sizeof *a);
    if (!a) {
        snprintf(err, err ? errlen : 0, "archive: out of memory");
        return MAA_ERR;
    }
    pthread_mutex_init(&a->lock, NULL);
    pthread_cond_init(&a->wake, NULL);
    a->o = *o;
    a->dir = strdup(o->dir);
    a->camera = strdup(o->camera);
    a->recs = calloc((size_t)o->queue, sizeof *a->recs);
    const size_t cap = o->frame_bytes + (size_t)o->mask_side * o->mask_side;
    a->rec_cap = cap;
    int ok = a->dir && a->camera && a->recs;
    for (int i = 0; ok && i < o->queue; i++) {
        rec *r = &a->recs[i];
        r->buf = malloc(cap ? cap : 1);
        r->cap = cap;
        r->next = a->free_list;
        a->free_list = r;
        ok = r->buf != NULL;
    }
    if (!ok) {
        snprintf(err, err ? errlen : 0, "archive: out of memory for a queue of %d records of "
                 "%zu bytes (archive.queue)", o->queue, cap);
        archive_free(a);
        return MAA_ERR;
    }
    a->o.dir = a->dir;
    a->o.camera = a->camera;
    a->st.max_bytes = o->max_bytes;
    a->st.max_files = o->max_files;
    uint64_t torn = 0, temps = 0, over = 0;
    char path[PATH_SIZE];
    if (scan(a, &torn, &temps, err, errlen) != MAA_OK) {
        archive_free(a);
        return MAA_ERR;
    }
    /* A budget made smaller since the last run is kept from the start. */
    while (a->n && (a->st.bytes > o->max_bytes || a->st.files > o->max_files)) {
        if (delete_oldest(a, path, sizeof path) != MAA_OK) {
            snprintf(err, err ? errlen : 0, "archive.dir %s: cannot delete %s: %s", a->dir,
                     path, strerror(errno));
            archive_free(a);
            return MAA_ERR;
        }
        over++;
    }
    int e = pthread_create(&a->thread, NULL, run, a);
    if (e) {
        archive_free(a);
        snprintf(err, err ? errlen : 0, "archive: cannot start its thread: %s", strerror(e));
        return MAA_ERR;
    }
    /* For top -H and scripts/bench-archive.sh: its CPU is the disk's cost. */
    pthread_setname_np(a->thread, "maad-archive");
    maad_log(o->log, MAAD_LOG_INFO,
             "archive: %s holds %llu records of camera %s (%.1f of %.1f MB, %llu of %llu "
             "files); removed at start: %llu torn records, %llu temporaries, %llu records "
             "over the budget", a->dir, (unsigned long long)a->st.records, a->camera,
             a->st.bytes / 1e6, o->max_bytes / 1e6, (unsigned long long)a->st.files,
             (unsigned long long)o->max_files, (unsigned long long)torn,
             (unsigned long long)temps, (unsigned long long)over);
    *out = a;
    return MAA_OK;
}

void maad_archive_close(maad_archive *a, maad_archive_stats *st)
{
    if (!a)
        return;
    pthread_mutex_lock(&a->lock);
    a->stop = 1;
    pthread_cond_signal(&a->wake);
    pthread_mutex_unlock(&a->lock);
    pthread_join(a->thread, NULL);
    if (st)
        *st = a->st;
    archive_free(a);
}
