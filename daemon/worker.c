/* worker.c — the capture hand-off and the inspection worker (see daemon.h).
 *
 * Order is the contract (contract §8): the ring keeps capture order, dropped
 * frames travel attached to the next slot, and the worker publishes each
 * slot's drops, then whatever it batched before a non-frame slot, strictly in
 * the order it took them.  A batch is judged only when it is full, when its
 * first frame has waited batch_timeout_ms, or when something that must be
 * published after it (drops, a camera error, the end) arrives.
 *
 * A frame older than max_age_ms when the worker takes it from the ring
 * (the ring filled while the engine fell behind) is not judged: it is
 * published at once as uninspected, "too old", after whatever was batched
 * before it.  Skipping it costs no engine time, so the worker catches up
 * with the camera instead of publishing ever later verdicts.
 *
 * The worker copies each frame out of the ring and releases the slot at
 * once, so the ring's whole depth absorbs a slow batch, and maad_ring_wait
 * can sleep while a batch is still filling.  A frame that the inspector
 * takes as it is (cuda backend, 8-bit frames up to the engine's frame_bytes:
 * resize, preprocessing and mask on the GPU) is kept as 8-bit, converted
 * straight into the engine's pinned frame buffer; any other is preprocessed
 * on arrival, while the batch fills, and fails alone if it cannot be.
 *
 * With a reject archive, each batched frame's converted 8-bit pixels are kept
 * until its verdict (in the engine's frame buffer, which the next batch
 * alone overwrites, or in the frame's own keep buffer), so that the
 * archive gets the frame at camera resolution; the archive copies what it
 * keeps and never makes the worker wait for the disk.
 *
 * Each judged verdict also goes to the drift alarm (drift.c) on this
 * thread, after its publication: the alarm's transitions are logged here,
 * and its state reaches the heartbeat and the metrics endpoint through the
 * live read-out, under the lock taken after each batch anyway.
 *
 * So a batch belongs to the model it was started under (its frames are
 * preprocessed to that model's size, or lie in its inspector's buffers).
 * A model handed over (maad_worker_set_model, maad's SIGHUP) is taken only
 * between two batches: the worker first judges what it has batched with
 * the old model, then swaps, and hands the old one back to the caller to
 * free, so that the worker never waits on an allocation or a free. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/daemon.h"

/* Latency histogram: bucket i holds latencies up to 0.1 ms * 1.2^i (about
 * 10 s for the last); a quantile reads as its bucket's upper bound, within
 * 20 % of the true value, which is what a summary line needs. */
#define LAT_BUCKETS 64
#define LAT_BASE_MS 0.1
#define LAT_STEP 1.2

/* The model a batch is judged with, and what the worker keeps for it. */
typedef struct {
    maa_inspector *in;
    int image_size, channels;   /* S, C */
    char sha256[65];
    float *x;                   /* batch_max x C x S x S: preprocessed frames */
    size_t frame_cap;           /* maa_inspector_frame_bytes */
} model;

typedef struct {
    uint64_t frame_id, t_capture_ns;
    int width, height;
    int xi;                 /* index in the batch's images; -1: no image */
    int raw;                /* kept as 8-bit in img[xi], not preprocessed into x */
    maa_image frame;        /* with an archive: the converted pixels; data NULL: none */
    char reason[MAA_ERRLEN + 32]; /* why not, when xi < 0 */
} entry;

struct maad_worker {
    maad_worker_opts o;
    pthread_t thread;
    pthread_t keepalive;        /* heartbeats while the worker is in the engine */
    atomic_int keepalive_stop;
    _Atomic uint64_t busy_since_ns;  /* monotonic; 0 when not in the engine */
    _Atomic uint64_t overflow;  /* frames the ring had no room for; read by both */
    _Atomic uint64_t too_old;   /* frames older than max_age_ms; read by both */

    /* Written by the capture thread, read by the worker for the summary. */
    _Atomic uint64_t captured;
    /* Set once after the producer's last commit (release; the worker's
     * acquire load then sees every slot). */
    atomic_int finishing;

    /* What other threads hand the worker, to take between two batches. */
    pthread_mutex_t lock;
    maa_calibration cal_next;   /* guarded by lock */
    atomic_int cal_pending;
    /* maad_worker_set_model's model and its calibration; once the worker
     * has taken them (model_pending 0 again, model_taken signalled),
     * model_next holds the model it replaced, and model_seq the seq of the
     * first verdict under the new one.  Guarded by lock. */
    model model_next;
    maa_calibration model_cal;
    uint64_t model_seq;
    atomic_int model_pending;
    pthread_cond_t model_taken;

    /* Worker thread only from here on. */
    maa_calibration cal;
    model m;
    maa_image *img;             /* batch_max: frames kept as 8-bit, in the engine's buffers */
    maa_result *res;
    entry *batch;
    int nbatch, nx, nraw;
    uint64_t deadline_ns;       /* monotonic: judge the batch by then */
    int failed_run;             /* batches the engine failed in a row */
    void *scratch;              /* to_image's */
    size_t scratch_bytes;
    size_t keep_bytes;          /* o.image_bytes, or scratch_bytes without it */
    uint8_t *keep;              /* with an archive: batch_max x keep_bytes, a frame's
                                   pixels until its verdict */
    maad_worker_stats st;
    maad_worker_live acc;       /* histograms; st, model and threshold are copied in */
    pthread_mutex_t live_lock;  /* guards live */
    maad_worker_live live;
    uint64_t lat[LAT_BUCKETS], lat_n;
    uint64_t sum_next_ns, sum_captured, sum_t_ns;
    uint64_t wd_usec, wd_last_ns;
    /* The run of too-old frames not yet logged: one line per run, as for a
     * ring overflow, not one per frame. */
    uint64_t old_run, old_first, old_last, old_max_ms;
    maad_drift *drift;          /* NULL: no drift alarm */
    char err[MAA_ERRLEN];
};

static int model_valid(const maad_worker_model *m)
{
    return m->inspector && m->image_size >= 8 && (m->channels == 1 || m->channels == 3) &&
           m->sha256 && strlen(m->sha256) == 64;
}

/* m for src, with its own batch of preprocessed frames; MAA_ERR when out
 * of memory. */
static int model_make(model *m, const maad_worker_model *src, int batch_max)
{
    const size_t side = (size_t)src->image_size;
    m->in = src->inspector;
    m->image_size = src->image_size;
    m->channels = src->channels;
    snprintf(m->sha256, sizeof m->sha256, "%s", src->sha256);
    m->frame_cap = maa_inspector_frame_bytes(src->inspector);
    m->x = malloc((size_t)batch_max * src->channels * side * side * sizeof(float));
    return m->x ? MAA_OK : MAA_ERR;
}

static void sleep_ms(double ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000),
                          .tv_nsec = (long)(fmod(ms, 1000) * 1e6)};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* ---- capture side ---------------------------------------------------------- */

void maad_worker_frame(maad_worker *w, uint64_t frame_id, uint64_t t_capture_ns,
                       int width, int height, uint32_t pixfmt,
                       const void *pixels, size_t size)
{
    atomic_fetch_add_explicit(&w->captured, 1, memory_order_relaxed);
    maad_slot *s = maad_ring_claim(w->o.ring);
    if (!s) {
        maad_ring_drop(w->o.ring, frame_id, t_capture_ns);
        return;
    }
    s->frame_id = frame_id;
    s->t_capture_ns = t_capture_ns;
    s->width = width;
    s->height = height;
    s->pixfmt = pixfmt;
    if (size > maad_ring_slot_bytes(w->o.ring)) {
        s->kind = MAAD_SLOT_ERROR;
        s->size = 0;
        snprintf(s->reason, sizeof s->reason,
                 "camera error: frame of %zu bytes exceeds the ring slot (%zu)",
                 size, maad_ring_slot_bytes(w->o.ring));
    } else {
        s->kind = MAAD_SLOT_FRAME;
        s->size = size;
        memcpy(s->pixels, pixels, size);
    }
    maad_ring_commit(w->o.ring);
}

void maad_worker_camera_error(maad_worker *w, uint64_t frame_id,
                              uint64_t t_capture_ns, const char *reason)
{
    atomic_fetch_add_explicit(&w->captured, 1, memory_order_relaxed);
    maad_slot *s = maad_ring_claim(w->o.ring);
    if (!s) {
        maad_ring_drop(w->o.ring, frame_id, t_capture_ns);
        return;
    }
    s->kind = MAAD_SLOT_ERROR;
    s->frame_id = frame_id;
    s->t_capture_ns = t_capture_ns;
    s->width = s->height = 0;
    s->size = 0;
    snprintf(s->reason, sizeof s->reason, "%s", reason);
    maad_ring_commit(w->o.ring);
}

void maad_worker_set_calibration(maad_worker *w, const maa_calibration *c)
{
    pthread_mutex_lock(&w->lock);
    w->cal_next = *c;
    atomic_store_explicit(&w->cal_pending, 1, memory_order_release);
    pthread_mutex_unlock(&w->lock);
}

int maad_worker_set_model(maad_worker *w, const maad_worker_model *m, const maa_calibration *c,
                          maa_inspector **old, uint64_t *first_seq, char *err, size_t errlen)
{
    model next;
    if (!model_valid(m)) {
        snprintf(err, err ? errlen : 0, "worker: bad model");
        return MAA_ERR;
    }
    /* The new model's batch is allocated here, and the old one freed
     * here, so that the worker never waits on memory. */
    if (model_make(&next, m, w->o.batch_max) != MAA_OK) {
        snprintf(err, err ? errlen : 0, "worker: out of memory for a batch of %d at S %d, C %d",
                 w->o.batch_max, m->image_size, m->channels);
        return MAA_ERR;
    }
    pthread_mutex_lock(&w->lock);
    w->model_next = next;
    w->model_cal = *c;
    atomic_store_explicit(&w->model_pending, 1, memory_order_release);
    /* A worker waiting for frames takes it now, not when one comes. */
    maad_ring_wake(w->o.ring);
    while (atomic_load_explicit(&w->model_pending, memory_order_relaxed))
        pthread_cond_wait(&w->model_taken, &w->lock);
    const model replaced = w->model_next;
    *first_seq = w->model_seq;
    pthread_mutex_unlock(&w->lock);
    free(replaced.x);
    *old = replaced.in;
    return MAA_OK;
}

/* ---- publishing ------------------------------------------------------------ */

/* x into a cumulative-to-be histogram of upper bounds le[n] (the last
 * count, n, is +Inf). */
static void hist_add(maad_hist *h, const double *le, int n, double x)
{
    int i = 0;
    while (i < n && x > le[i])
        i++;
    h->bucket[i]++;
    h->count++;
    h->sum += x;
}

const double maad_batch_le[MAAD_BATCH_LE] = {1, 2, 4, 8, 16, 32, 64};
const double maad_latency_le[MAAD_LATENCY_LE] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                 0.5,   1,    2.5,   5,    10};
const double maad_engine_le[MAAD_ENGINE_LE] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                               0.1,   0.25,   0.5,   1,    2.5,   10};

static void note_latency(maad_worker *w, uint64_t t_capture_ns)
{
    uint64_t now = maad_now_ns();
    double ms = now > t_capture_ns ? (double)(now - t_capture_ns) / 1e6 : 0;
    int i = ms <= LAT_BASE_MS ? 0 : (int)ceil(log(ms / LAT_BASE_MS) / log(LAT_STEP));
    w->lat[i < LAT_BUCKETS ? i : LAT_BUCKETS - 1]++;
    w->lat_n++;
    hist_add(&w->acc.latency, maad_latency_le, MAAD_LATENCY_LE, ms / 1000);
}

/* The worker's counts and histograms to what maad_worker_get_live reads:
 * after each batch and each loop turn, so that a scrape is at most one
 * turn behind and the worker takes the lock a few times a batch, not a
 * frame. */
static void share_live(maad_worker *w)
{
    pthread_mutex_lock(&w->live_lock);
    w->live = w->acc;
    w->live.st = w->st;
    w->live.threshold = w->cal.threshold;
    snprintf(w->live.model, sizeof w->live.model, "%s", w->m.sha256);
    w->live.drift_on = w->drift != NULL;
    if (w->drift)
        maad_drift_get(w->drift, &w->live.drift);
    pthread_mutex_unlock(&w->live_lock);
}

void maad_worker_get_live(maad_worker *w, maad_worker_live *out)
{
    pthread_mutex_lock(&w->live_lock);
    *out = w->live;
    pthread_mutex_unlock(&w->live_lock);
    /* The counters other threads keep are read fresh. */
    maad_pub_stats ps;
    maad_pub_get_stats(w->o.pub, &ps);
    out->st.captured = atomic_load_explicit(&w->captured, memory_order_relaxed);
    out->st.overflow = atomic_load_explicit(&w->overflow, memory_order_relaxed);
    out->st.too_old = atomic_load_explicit(&w->too_old, memory_order_relaxed);
    out->st.pass = ps.pass;
    out->st.reject = ps.reject;
    out->st.uninspected = ps.uninspected;
    out->st.send_dropped = ps.send_dropped;
    out->st.heartbeats = ps.heartbeats;
    out->ring_slots = maad_ring_size(w->o.ring);
    out->ring_used = maad_ring_occupancy(w->o.ring);
}

static double latency_quantile(const maad_worker *w, double q)
{
    if (!w->lat_n)
        return NAN;
    uint64_t want = (uint64_t)ceil(q * (double)w->lat_n), sum = 0;
    for (int i = 0; i < LAT_BUCKETS; i++) {
        sum += w->lat[i];
        if (sum >= want && sum)
            return LAT_BASE_MS * pow(LAT_STEP, i);
    }
    return LAT_BASE_MS * pow(LAT_STEP, LAT_BUCKETS - 1);
}

/* Publishes v, then hands it to the archive with its frame (NULL: none);
 * logs it when log_it (a run of too-old frames is logged as one line
 * instead). */
static void publish(maad_worker *w, const maad_verdict *v, const maa_image *frame, int log_it)
{
    uint64_t seq = 0, t_publish = 0;
    const maad_verdict *sent = v;
    maad_verdict u;
    int rc = maad_pub_verdict_stamped(w->o.pub, v, &seq, &t_publish, w->err, sizeof w->err);
    if (rc != MAA_OK) {
        /* Only a malformed verdict is refused; publish the frame all the
         * same so that it is accounted for. */
        maad_log(w->o.log, MAAD_LOG_ERR, "%s", w->err);
        u = (maad_verdict){.frame_id = v->frame_id, .t_capture_ns = v->t_capture_ns,
                           .verdict = MAAD_UNINSPECTED, .reason = "internal error",
                           .threshold = v->threshold, .model = v->model};
        sent = &u;
        rc = maad_pub_verdict_stamped(w->o.pub, &u, &seq, &t_publish, NULL, 0);
    }
    /* After the send: the archive's copy never delays a verdict.  The
     * publisher gives the seq it spent, so no verdict it refused is kept. */
    if (w->o.archive && rc == MAA_OK)
        maad_archive_put(w->o.archive, sent, seq, t_publish, frame);
    note_latency(w, v->t_capture_ns);
    if (log_it)
        maad_log_verdict(w->o.log, seq, v);
}

static void publish_uninspected(maad_worker *w, uint64_t frame_id, uint64_t t_capture_ns,
                                const char *reason, const maa_image *frame)
{
    maad_verdict v = {.frame_id = frame_id, .t_capture_ns = t_capture_ns,
                      .verdict = MAAD_UNINSPECTED, .reason = reason,
                      .score = NAN, .threshold = w->cal.threshold, .model = w->m.sha256};
    publish(w, &v, frame, 1);
}

static void publish_drops(maad_worker *w, const maad_drops *d)
{
    if (w->o.archive) {
        /* One by one, for each verdict's seq in its record. */
        for (uint64_t k = 0; k < d->count; k++) {
            maad_verdict v = {.verdict = MAAD_UNINSPECTED, .reason = "ring overflow",
                              .score = NAN, .threshold = w->cal.threshold,
                              .model = w->m.sha256};
            maad_drops_frame(d, k, &v.frame_id, &v.t_capture_ns);
            publish(w, &v, NULL, 0);
        }
    } else {
        if (maad_pub_drops(w->o.pub, d, w->cal.threshold, w->m.sha256, w->err,
                           sizeof w->err) != MAA_OK)
            maad_log(w->o.log, MAAD_LOG_ERR, "%s", w->err);
        for (uint64_t k = 0; k < d->count; k++) {
            uint64_t id, t;
            maad_drops_frame(d, k, &id, &t);
            note_latency(w, t);
        }
    }
    atomic_fetch_add_explicit(&w->overflow, d->count, memory_order_relaxed);
    maad_log(w->o.log, MAAD_LOG_WARNING,
             "ring overflow: %llu frames (%llu..%llu) published uninspected",
             (unsigned long long)d->count, (unsigned long long)d->first_id,
             (unsigned long long)d->last_id);
}

/* ---- drift alarm ------------------------------------------------------------ */

/* One line a transition: a warning when a cause is raised, a notice when
 * it clears, with fields an operator (or a journal watcher) filters on. */
static void drift_log(maad_worker *w, int cause, const maad_drift_state *s)
{
    const int raised = (s->alarm & cause) != 0;
    char f[7][96], text[512];
    int n = 0;
    const size_t fl = sizeof f[0];
    /* The line crossed: the limit when raised, the clearing line when
     * cleared, on the side of mu the mean is. */
    const int low = s->mean < s->mu;
    const double limit = cause == MAAD_DRIFT_REJECTS ? raised ? s->reject_limit : s->reject_clear
                         : raised ? low ? s->mean_low : s->mean_high
                         : low    ? s->mean_clear_low
                                  : s->mean_clear_high;
    const double value = cause == MAAD_DRIFT_REJECTS ? s->reject_rate : s->mean;
    const int frames = cause == MAAD_DRIFT_REJECTS ? s->frames : s->passes;
    snprintf(f[n++], fl, "MAAD_DRIFT=%s", cause == MAAD_DRIFT_REJECTS ? "reject_rate" : "mean");
    snprintf(f[n++], fl, "MAAD_DRIFT_ALARM=%d", raised);
    snprintf(f[n++], fl, "MAAD_DRIFT_VALUE=%.6g", value);
    snprintf(f[n++], fl, "MAAD_DRIFT_LIMIT=%.6g", limit);
    snprintf(f[n++], fl, "MAAD_DRIFT_FRAMES=%d", frames);
    snprintf(f[n++], fl, "MAAD_THRESHOLD=%.6g", s->threshold);
    snprintf(f[n++], fl, "MAAD_MODEL=%s", w->m.sha256);
    const char *fp[7];
    for (int i = 0; i < n; i++)
        fp[i] = f[i];
    if (cause == MAAD_DRIFT_MEAN && raised)
        snprintf(text, sizeof text, "drift alarm: the mean score of the last %d passes, %.4g, "
                 "is %s %.4g (mu %.4g %s %.3g of the way to the threshold %.4g): the parts "
                 "or the images are no longer those of the calibration (tool wear, "
                 "lighting, lens); see docs/operations.md, \"Drift alarm\"", frames, value,
                 low ? "below" : "above", limit, s->mu, low ? "-" : "+",
                 w->o.drift.mean_fraction, s->threshold);
    else if (cause == MAAD_DRIFT_MEAN)
        snprintf(text, sizeof text, "drift alarm over: the mean score of the last %d passes, "
                 "%.4g, is back within %.4g..%.4g (mu %.4g)", frames, value,
                 s->mean_clear_low, s->mean_clear_high, s->mu);
    else if (raised)
        snprintf(text, sizeof text, "drift alarm: %d of the last %d judged parts rejected "
                 "(%.3g %%), more than drift.reject_rate %.3g %%: review the rejects; see "
                 "docs/operations.md, \"Drift alarm\"", s->rejects, frames, 100 * value,
                 100 * limit);
    else
        snprintf(text, sizeof text, "drift alarm over: %d of the last %d judged parts "
                 "rejected (%.3g %%), at most %.3g %%", s->rejects, frames, 100 * value,
                 100 * limit);
    maad_log_fields(w->o.log, raised ? MAAD_LOG_WARNING : MAAD_LOG_NOTICE, fp, n, "%s", text);
}

/* A judged frame into the alarm, after its verdict went out. */
static void drift_note(maad_worker *w, uint64_t t_capture_ns, int reject, double score)
{
    if (!w->drift)
        return;
    const int changed = maad_drift_add(w->drift, t_capture_ns, reject, score);
    if (!changed)
        return;
    maad_drift_state s;
    maad_drift_get(w->drift, &s);
    if (changed & MAAD_DRIFT_MEAN)
        drift_log(w, MAAD_DRIFT_MEAN, &s);
    if (changed & MAAD_DRIFT_REJECTS)
        drift_log(w, MAAD_DRIFT_REJECTS, &s);
}

/* Whether two calibrations judge a part alike: the same mu and threshold
 * (the alarm's baseline), rule and mask thresholds. */
static int same_judgement(const maa_calibration *a, const maa_calibration *b)
{
    return a->mu == b->mu && a->threshold == b->threshold && a->rule == b->rule &&
           a->pixel_threshold == b->pixel_threshold &&
           a->min_region_area == b->min_region_area;
}

/* w->cal has just replaced the calibration old (NULL: with a new model):
 * the window's frames were judged under the old one, and a model's scores
 * are on a scale of their own, so the alarm starts again rather than
 * compare them with the new baseline.  A SIGHUP that reloads the same
 * calibration (to reread the CURVE keys, say) leaves it alone. */
static void drift_rebase(maad_worker *w, const maa_calibration *old)
{
    if (!w->drift || (old && same_judgement(old, &w->cal)))
        return;
    const char *what = old ? "calibration" : "model";
    maad_drift_state s;
    maad_drift_get(w->drift, &s);
    maad_drift_reset(w->drift, w->cal.mu, w->cal.threshold);
    char how[400];
    maad_drift_describe(w->drift, how, sizeof how);
    if (s.alarm) {
        const char *f[] = {"MAAD_DRIFT=reset", "MAAD_DRIFT_ALARM=0"};
        maad_log_fields(w->o.log, MAAD_LOG_NOTICE, f, 2, "drift alarm reset by the new %s: "
                        "watching %s", what, how);
    } else {
        maad_log(w->o.log, MAAD_LOG_INFO, "drift alarm restarted for the new %s: watching %s",
                 what, how);
    }
}

/* ---- batches --------------------------------------------------------------- */

static void take_calibration(maad_worker *w)
{
    if (!atomic_load_explicit(&w->cal_pending, memory_order_acquire))
        return;
    const maa_calibration old = w->cal;
    pthread_mutex_lock(&w->lock);
    w->cal = w->cal_next;
    atomic_store_explicit(&w->cal_pending, 0, memory_order_relaxed);
    pthread_mutex_unlock(&w->lock);
    w->st.calibrations++;
    maad_log(w->o.log, MAAD_LOG_NOTICE,
             "calibration swapped in: threshold %.6g (gamma %.3g), pixel threshold %.6g",
             w->cal.threshold, w->cal.gamma, w->cal.pixel_threshold);
    drift_rebase(w, &old);
}

/* The engine's part: all frames kept as 8-bit go to maa_inspect_frames;
 * a batch that mixes them with preprocessed ones (frames of several formats)
 * preprocesses the 8-bit ones too.  One that cannot be is judged on a blank
 * image and published as uninspected. */
static int judge_images(maad_worker *w)
{
    const model *m = &w->m;
    if (w->nraw == w->nx)
        return maa_inspect_frames(m->in, &w->cal, w->nx, w->img, w->res, w->err,
                                  sizeof w->err);
    const size_t plane = (size_t)m->channels * m->image_size * m->image_size;
    char why[MAA_ERRLEN];
    for (int i = 0; i < w->nbatch; i++) {
        entry *e = &w->batch[i];
        if (e->xi < 0 || !e->raw)
            continue;
        float *x = m->x + (size_t)e->xi * plane;
        if (maa_preprocess(&w->img[e->xi], m->image_size, m->channels, x, why,
                           sizeof why) != MAA_OK) {
            memset(x, 0, plane * sizeof *x);
            snprintf(e->reason, sizeof e->reason, "preprocess error: %s", why);
            e->xi = -1;
        }
    }
    return maa_inspect(m->in, &w->cal, w->nx, m->x, w->res, w->err, sizeof w->err);
}

/* Judge and publish the batch, in order. */
static void judge(maad_worker *w)
{
    if (!w->nbatch)
        return;
    /* Before the engine, and not again until the batch is published: each
     * verdict carries the threshold and rule it was judged under, also when
     * a SIGHUP lands while the batch is in the engine. */
    take_calibration(w);
    int rc = MAA_OK;
    if (w->nx) {
        atomic_store_explicit(&w->busy_since_ns, maad_mono_ns(), memory_order_relaxed);
        if (w->o.test_delay_ms > 0)
            sleep_ms(w->o.test_delay_ms);
        if (w->o.test_in_engine)
            w->o.test_in_engine(w->o.user);
        uint64_t t0 = maad_mono_ns();
        rc = judge_images(w);
        hist_add(&w->acc.engine, maad_engine_le, MAAD_ENGINE_LE,
                 (double)(maad_mono_ns() - t0) / 1e9);
        hist_add(&w->acc.batch, maad_batch_le, MAAD_BATCH_LE, w->nx);
        atomic_store_explicit(&w->busy_since_ns, 0, memory_order_relaxed);
        w->st.batches++;
        w->failed_run = rc == MAA_OK ? 0 : w->failed_run + 1;
        if (rc != MAA_OK)
            maad_log(w->o.log, MAAD_LOG_ERR, "engine error on a batch of %d: %s",
                     w->nx, w->err);
        /* An engine that fails every batch (a GPU fallen off the bus, a
         * corrupted CUDA context) would otherwise leave the line with
         * uninspected parts for good; a restart may recover it, and a unit
         * that keeps failing to start shows in systemctl. */
        if (w->o.max_failed_batches > 0 && w->failed_run == w->o.max_failed_batches &&
            w->o.on_failing)
            w->o.on_failing(w->o.user, w->failed_run, w->err);
    }
    char reason[MAA_ERRLEN + 16] = "";
    if (rc != MAA_OK)
        snprintf(reason, sizeof reason, "engine error: %s", w->err);
    for (int i = 0; i < w->nbatch; i++) {
        const entry *e = &w->batch[i];
        if (e->xi < 0 || rc != MAA_OK) {
            w->st.engine_errors++;
            publish_uninspected(w, e->frame_id, e->t_capture_ns,
                                e->xi < 0 ? e->reason : reason, &e->frame);
            continue;
        }
        const maa_result *r = &w->res[e->xi];
        const int reject = r->verdict == MAA_REJECT;
        maad_verdict v = {
            .frame_id = e->frame_id, .t_capture_ns = e->t_capture_ns,
            .verdict = reject ? MAAD_REJECT : MAAD_PASS,
            .reason = maa_reason(r, w->cal.rule),
            .score = r->score, .threshold = w->cal.threshold,
            .rule = w->cal.rule, .evidence = r->evidence,
            .mask_peak = r->mask_peak, .mask_threshold = w->cal.pixel_threshold,
            .regions = r->regions, .nregions = r->nregions,
            .model = w->m.sha256, .model_size = w->m.image_size,
            .cam_width = e->width, .cam_height = e->height,
            .mask = maa_inspector_mask(w->m.in, e->xi)};
        publish(w, &v, &e->frame, 1);
        drift_note(w, e->t_capture_ns, reject, r->score);
    }
    w->nbatch = w->nx = w->nraw = 0;
    share_live(w);
}

/* Between two batches: the model maad_worker_set_model handed over, with
 * its calibration, replaces the worker's, which goes back to it. */
static void take_model(maad_worker *w)
{
    if (!atomic_load_explicit(&w->model_pending, memory_order_acquire))
        return;
    /* The frames batched so far were preprocessed for the old model, or
     * lie in its inspector's buffers: it judges them, and no batch is
     * split between two models. */
    judge(w);
    maad_pub_stats ps;
    maad_pub_get_stats(w->o.pub, &ps);
    pthread_mutex_lock(&w->lock);
    const model old = w->m;
    w->m = w->model_next;
    w->model_next = old;
    w->cal = w->model_cal;
    /* The new engine starts with a clean record: the old one's failures
     * must not count towards stopping maad on the new one. */
    w->failed_run = 0;
    /* A calibration still pending was made for the model just replaced. */
    atomic_store_explicit(&w->cal_pending, 0, memory_order_relaxed);
    w->model_seq = ps.seq_next;
    atomic_store_explicit(&w->model_pending, 0, memory_order_relaxed);
    pthread_cond_signal(&w->model_taken);
    pthread_mutex_unlock(&w->lock);
    w->st.models++;
    drift_rebase(w, NULL);
}

/* A frame slot into the batch: kept as 8-bit or preprocessed (see top). */
static void add_frame(maad_worker *w, const maad_slot *s, uint64_t timeout_ns)
{
    entry *e = &w->batch[w->nbatch];
    e->frame_id = s->frame_id;
    e->t_capture_ns = s->t_capture_ns;
    e->width = s->width;
    e->height = s->height;
    e->xi = -1;
    e->raw = 0;
    e->frame.data = NULL;
    const model *m = &w->m;
    const size_t side = (size_t)m->image_size, plane = (size_t)m->channels * side * side;
    maa_image img;
    char why[MAA_ERRLEN];
    /* Into the engine's buffer for this place in the batch where there is
     * one: a frame it takes is then not copied again.  One too large for it
     * converts into the scratch buffer. */
    uint8_t *fb = maa_inspector_frame_buffer(m->in, w->nx);
    /* With an archive, a frame that the engine's buffer does not hold
     * converts straight into its keep buffer. */
    uint8_t *keep = w->keep ? w->keep + (size_t)w->nbatch * w->keep_bytes : NULL;
    int rc = fb ? w->o.to_image(s, &img, fb, m->frame_cap, why, sizeof why) : MAA_ERR;
    if (rc != MAA_OK)
        rc = keep ? w->o.to_image(s, &img, keep, w->keep_bytes, why, sizeof why)
                  : w->o.to_image(s, &img, w->scratch, w->scratch_bytes, why, sizeof why);
    if (rc != MAA_OK) {
        snprintf(e->reason, sizeof e->reason, "frame error: %s", why);
    } else if (fb && maa_inspector_takes_frame(m->in, &img)) {
        /* img may point into the slot, released before the batch is judged. */
        if (img.data != fb)
            memcpy(fb, img.data, (size_t)img.width * img.height * img.channels);
        img.data = fb;
        w->img[w->nx] = img;
        e->raw = 1;
        w->nraw++;
        e->xi = w->nx++;
    } else if (maa_preprocess(&img, m->image_size, m->channels,
                              m->x + (size_t)w->nx * plane, why, sizeof why) != MAA_OK) {
        snprintf(e->reason, sizeof e->reason, "preprocess error: %s", why);
    } else {
        e->xi = w->nx++;
    }
    /* The engine's buffer of a frame in the batch (xi) is not written
     * again before the verdict; pixels anywhere else (in the slot, or in a
     * buffer the next frame takes) are copied. */
    if (keep && rc == MAA_OK && img.depth == 8) {
        const size_t bytes = (size_t)img.width * img.height * img.channels;
        if (img.data != keep && !(img.data == fb && e->xi >= 0) && bytes <= w->keep_bytes) {
            memcpy(keep, img.data, bytes);
            img.data = keep;
        }
        if (img.data == keep || img.data == fb)
            e->frame = img;
    }
    if (w->nbatch++ == 0)
        w->deadline_ns = maad_mono_ns() + timeout_ns;
    if (w->nbatch == w->o.batch_max)
        judge(w);
}

/* The run of too-old frames so far as one warning line. */
static void end_old_run(maad_worker *w)
{
    if (!w->old_run)
        return;
    char first[24] = "?", last[24] = "?";
    if (w->old_first != MAAD_FRAME_ID_UNKNOWN)
        snprintf(first, sizeof first, "%llu", (unsigned long long)w->old_first);
    if (w->old_last != MAAD_FRAME_ID_UNKNOWN)
        snprintf(last, sizeof last, "%llu", (unsigned long long)w->old_last);
    maad_log(w->o.log, MAAD_LOG_WARNING,
             "too old: %llu frames (%s..%s) published uninspected, up to %llu ms after "
             "capture (engine.max_age_ms %d)", (unsigned long long)w->old_run, first, last,
             (unsigned long long)w->old_max_ms, w->o.max_age_ms);
    w->old_run = 0;
}

/* A frame older than max_age_ms: published uninspected, after the batch
 * so far, without entering a batch (see top).  1 when it was. */
static int take_too_old(maad_worker *w, const maad_slot *s)
{
    const uint64_t now = maad_now_ns();
    const uint64_t age_ms = now > s->t_capture_ns ? (now - s->t_capture_ns) / 1000000u : 0;
    if (w->o.max_age_ms <= 0 || age_ms <= (uint64_t)w->o.max_age_ms)
        return 0;
    judge(w);
    char reason[96];
    snprintf(reason, sizeof reason, "too old: %llu ms after capture, max_age_ms %d",
             (unsigned long long)age_ms, w->o.max_age_ms);
    maad_verdict v = {.frame_id = s->frame_id, .t_capture_ns = s->t_capture_ns,
                      .verdict = MAAD_UNINSPECTED, .reason = reason,
                      .score = NAN, .threshold = w->cal.threshold, .model = w->m.sha256};
    /* The archive keeps its frame too: a conversion, far cheaper than the
     * judgement skipped (the batch was just judged: scratch is free). */
    maa_image img, *frame = NULL;
    char why[MAA_ERRLEN];
    if (w->o.archive &&
        w->o.to_image(s, &img, w->scratch, w->scratch_bytes, why, sizeof why) == MAA_OK)
        frame = &img;
    publish(w, &v, frame, 0);
    atomic_fetch_add_explicit(&w->too_old, 1, memory_order_relaxed);
    if (!w->old_run++) {
        w->old_first = s->frame_id;
        w->old_max_ms = 0;
    }
    w->old_last = s->frame_id;
    w->old_max_ms = age_ms > w->old_max_ms ? age_ms : w->old_max_ms;
    return 1;
}

static void take_slot(maad_worker *w, maad_slot *s, uint64_t timeout_ns)
{
    if (s->drops.count) {
        end_old_run(w);
        judge(w);
        publish_drops(w, &s->drops);
    }
    switch (s->kind) {
    case MAAD_SLOT_FRAME:
        if (take_too_old(w, s))
            break;
        end_old_run(w);
        add_frame(w, s, timeout_ns);
        break;
    case MAAD_SLOT_ERROR:
        end_old_run(w);
        judge(w);
        w->st.camera_errors++;
        publish_uninspected(w, s->frame_id, s->t_capture_ns, s->reason, NULL);
        break;
    case MAAD_SLOT_DROPS_ONLY:
        break;
    }
}

/* ---- housekeeping: heartbeat, summary, watchdog ---------------------------- */

static void fill_stats(maad_worker *w, maad_worker_stats *st)
{
    maad_pub_stats ps;
    maad_pub_get_stats(w->o.pub, &ps);
    *st = w->st;
    st->captured = atomic_load_explicit(&w->captured, memory_order_relaxed);
    st->overflow = atomic_load_explicit(&w->overflow, memory_order_relaxed);
    st->too_old = atomic_load_explicit(&w->too_old, memory_order_relaxed);
    st->pass = ps.pass;
    st->reject = ps.reject;
    st->uninspected = ps.uninspected;
    st->send_dropped = ps.send_dropped;
    st->heartbeats = ps.heartbeats;
}

static void summary(maad_worker *w, uint64_t now)
{
    maad_worker_stats st;
    fill_stats(w, &st);
    double secs = (double)(now - w->sum_t_ns) / 1e9;
    double fps = secs > 0 ? (double)(st.captured - w->sum_captured) / secs : 0;
    double p50 = latency_quantile(w, 0.5), p99 = latency_quantile(w, 0.99);
    char line[256];
    /* overflow, too_old and send_dropped: the heartbeat's names for the
     * losses.  The model, because this line is also STATUS=, which should
     * say what is judging. */
    snprintf(line, sizeof line,
             "fps %.1f, passes %llu, rejects %llu, uninspected %llu, overflow %llu, "
             "too_old %llu, send_dropped %llu, latency p50 %.1f ms p99 %.1f ms, model %.12s",
             fps, (unsigned long long)st.pass, (unsigned long long)st.reject,
             (unsigned long long)st.uninspected, (unsigned long long)st.overflow,
             (unsigned long long)st.too_old, (unsigned long long)st.send_dropped, p50, p99,
             w->m.sha256);
    if (w->o.archive) {
        maad_archive_stats as;
        maad_archive_get_stats(w->o.archive, &as);
        char al[256];
        maad_archive_stats_line(&as, al, sizeof al);
        maad_log(w->o.log, MAAD_LOG_INFO, "summary: %s; %s", line, al);
    } else {
        maad_log(w->o.log, MAAD_LOG_INFO, "summary: %s", line);
    }
    maad_notify_status("%s", line);
    memset(w->lat, 0, sizeof w->lat);
    w->lat_n = 0;
    w->sum_captured = st.captured;
    w->sum_t_ns = now;
}

/* The heartbeat when it is due, with the worker's counters; 1 when sent.
 * From the worker's loop and from its keep-alive thread. */
static int tick(maad_worker *w)
{
    maad_stat extra[6] = {
        {"captured", (double)atomic_load_explicit(&w->captured, memory_order_relaxed), 0},
        {"overflow", (double)atomic_load_explicit(&w->overflow, memory_order_relaxed), 0},
        {"too_old", (double)atomic_load_explicit(&w->too_old, memory_order_relaxed), 0}};
    int n = 3;
    /* The drift alarm as last shared: the keep-alive thread ticks too, so
     * not from the worker's own tracker. */
    pthread_mutex_lock(&w->live_lock);
    if (w->live.drift_on) {
        extra[n++] = (maad_stat){"drift_alarm", w->live.drift.alarm, 0};
        extra[n++] = (maad_stat){"drift_mean", w->live.drift.mean, 1};
        extra[n++] = (maad_stat){"drift_reject_rate", w->live.drift.reject_rate, 1};
    }
    pthread_mutex_unlock(&w->live_lock);
    return maad_pub_tick(w->o.pub, maad_now_ns(), extra, n);
}

/* How often the worker's loop and the keep-alive thread look at the
 * heartbeat: four times per period, at most every 10 ms. */
static int tick_period_ms(const maad_worker *w)
{
    return w->o.heartbeat_ms / 4 > 10 ? w->o.heartbeat_ms / 4 : 10;
}

static void housekeeping(maad_worker *w)
{
    uint64_t now = maad_mono_ns();
    share_live(w);
    int sent = tick(w);
    /* Pinging only from this loop, after a heartbeat went out, means a
     * worker stuck in the engine or a dead publisher stops the pings and
     * systemd restarts us. */
    if (sent && w->wd_usec && now - w->wd_last_ns >= w->wd_usec * 1000 / 2) {
        maad_notify_watchdog();
        w->wd_last_ns = now;
    }
    if (w->o.summary_interval_s > 0 && now >= w->sum_next_ns) {
        summary(w, now);
        w->sum_next_ns = now + (uint64_t)w->o.summary_interval_s * 1000000000u;
    }
}

/* The worker pings the publisher only between batches, and a batch on a
 * slow backend (the cpu backend's batch of 4 at S=256 takes seconds) would
 * leave the PLC bridge without a heartbeat for longer than contract §8's
 * second: while the worker is in the engine, this thread sends them.  For
 * BUSY_LIMIT_NS of one batch at most: an engine call that long is taken for
 * a stuck one, and the heartbeats stop, as they would without this thread
 * (the unit's WatchdogSec is 10 s as well; the watchdog is pinged from the
 * worker's loop only). */
#define BUSY_LIMIT_NS (10 * 1000000000ull)

static void *keepalive(void *arg)
{
    maad_worker *w = arg;
    while (!atomic_load_explicit(&w->keepalive_stop, memory_order_relaxed)) {
        sleep_ms(tick_period_ms(w));
        uint64_t since = atomic_load_explicit(&w->busy_since_ns, memory_order_relaxed);
        if (since && maad_mono_ns() - since <= BUSY_LIMIT_NS)
            tick(w);
    }
    return NULL;
}

static void *run(void *arg)
{
    maad_worker *w = arg;
    const uint64_t timeout_ns = (uint64_t)(w->o.batch_timeout_ms * 1e6);
    const int idle_ms = tick_period_ms(w);
    for (;;) {
        /* Also while no frame comes: maad_worker_set_model waits for it. */
        take_model(w);
        int wait_ms = idle_ms;
        if (w->nbatch) {
            uint64_t now = maad_mono_ns();
            uint64_t left = w->deadline_ns > now ? w->deadline_ns - now : 0;
            int left_ms = (int)((left + 999999) / 1000000);
            if (left_ms < wait_ms)
                wait_ms = left_ms;
        }
        int finishing = atomic_load_explicit(&w->finishing, memory_order_acquire);
        uint32_t n = maad_ring_wait(w->o.ring, finishing ? 0 : wait_ms);
        for (uint32_t i = 0; i < n; i++) {
            take_model(w);
            maad_slot *s = maad_ring_peek(w->o.ring, 0);
            take_slot(w, s, timeout_ns);
            maad_ring_release(w->o.ring, 1);
            housekeeping(w);
        }
        /* The ring is drained: a run of too-old frames ends here at the
         * latest, so that its line is not held back by a quiet camera. */
        end_old_run(w);
        if (w->nbatch && (finishing || maad_mono_ns() >= w->deadline_ns))
            judge(w);
        housekeeping(w);
        if (finishing && n == 0 && !w->nbatch)
            break;
    }
    return NULL;
}

/* ---- life cycle ------------------------------------------------------------- */

static void sync_destroy(maad_worker *w)
{
    pthread_cond_destroy(&w->model_taken);
    pthread_mutex_destroy(&w->lock);
    pthread_mutex_destroy(&w->live_lock);
}

int maad_worker_start(const maad_worker_opts *o, maad_worker **out, char *err,
                      size_t errlen)
{
    *out = NULL;
    if (o->batch_max < 1 || o->batch_timeout_ms <= 0 || o->max_age_ms < 0 || !o->to_image ||
        !model_valid(&o->model)) {
        snprintf(err, err ? errlen : 0, "worker: bad options");
        return MAA_ERR;
    }
    maad_worker *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(err, err ? errlen : 0, "worker: out of memory");
        return MAA_ERR;
    }
    w->o = *o;
    w->cal = o->cal;
    w->img = calloc((size_t)o->batch_max, sizeof *w->img);
    w->res = calloc((size_t)o->batch_max, sizeof *w->res);
    w->batch = calloc((size_t)o->batch_max, sizeof *w->batch);
    /* A demosaiced Bayer frame takes three times its slot. */
    w->scratch_bytes = 3 * maad_ring_slot_bytes(o->ring);
    w->scratch = malloc(w->scratch_bytes);
    /* A Mono8 camera's frames keep in a third of that. */
    w->keep_bytes = o->image_bytes && o->image_bytes < w->scratch_bytes ? o->image_bytes
                                                                        : w->scratch_bytes;
    if (o->archive)
        w->keep = malloc((size_t)o->batch_max * w->keep_bytes);
    int made = model_make(&w->m, &o->model, o->batch_max);
    if (o->drift.window_frames > 0 &&
        maad_drift_create(&o->drift, o->cal.mu, o->cal.threshold, &w->drift, err, errlen) !=
            MAA_OK) {
        maad_worker_free(w);
        return MAA_ERR;
    }
    /* w->m is the model from here on; the caller's may be freed by a swap. */
    memset(&w->o.model, 0, sizeof w->o.model);
    if (made != MAA_OK || !w->img || !w->res || !w->batch || !w->scratch ||
        (o->archive && !w->keep)) {
        maad_worker_free(w);
        snprintf(err, err ? errlen : 0, "worker: out of memory for a batch of %d",
                 o->batch_max);
        return MAA_ERR;
    }
    pthread_mutex_init(&w->lock, NULL);
    pthread_mutex_init(&w->live_lock, NULL);
    pthread_cond_init(&w->model_taken, NULL);
    share_live(w);
    if (w->drift) {
        char how[400];
        maad_drift_describe(w->drift, how, sizeof how);
        maad_log(w->o.log, MAAD_LOG_INFO, "drift alarm: watching %s", how);
    }
    w->wd_usec = maad_notify_watchdog_usec();
    w->sum_t_ns = maad_mono_ns();
    w->sum_next_ns = w->sum_t_ns + (uint64_t)o->summary_interval_s * 1000000000u;
    int e = pthread_create(&w->keepalive, NULL, keepalive, w);
    if (e) {
        sync_destroy(w);
        maad_worker_free(w);
        snprintf(err, err ? errlen : 0, "worker: cannot start its keep-alive thread: %s",
                 strerror(e));
        return MAA_ERR;
    }
    e = pthread_create(&w->thread, NULL, run, w);
    if (e) {
        atomic_store(&w->keepalive_stop, 1);
        pthread_join(w->keepalive, NULL);
        sync_destroy(w);
        maad_worker_free(w);
        snprintf(err, err ? errlen : 0, "worker: cannot start its thread: %s",
                 strerror(e));
        return MAA_ERR;
    }
    *out = w;
    return MAA_OK;
}

void maad_worker_stop(maad_worker *w, maad_worker_stats *st)
{
    /* The capture thread is gone, so this thread is the producer now. */
    while (maad_ring_flush(w->o.ring) != MAA_OK)
        sleep_ms(1);
    atomic_store_explicit(&w->finishing, 1, memory_order_release);
    maad_ring_wake(w->o.ring);
    pthread_join(w->thread, NULL);
    atomic_store(&w->keepalive_stop, 1);
    pthread_join(w->keepalive, NULL);
    sync_destroy(w);
    fill_stats(w, st);
}

void maad_worker_free(maad_worker *w)
{
    if (!w)
        return;
    free(w->m.x);
    free(w->img);
    free(w->scratch);
    free(w->keep);
    free(w->res);
    free(w->batch);
    maad_drift_free(w->drift);
    free(w);
}

void maad_worker_stats_line(const maad_worker_stats *st, char *buf, size_t n)
{
    snprintf(buf, n,
             "final: captured %llu, published %llu (pass %llu, reject %llu, "
             "uninspected %llu), overflow %llu, too_old %llu, camera errors %llu, "
             "engine errors %llu, send_dropped %llu",
             (unsigned long long)st->captured,
             (unsigned long long)(st->pass + st->reject + st->uninspected),
             (unsigned long long)st->pass, (unsigned long long)st->reject,
             (unsigned long long)st->uninspected, (unsigned long long)st->overflow,
             (unsigned long long)st->too_old, (unsigned long long)st->camera_errors,
             (unsigned long long)st->engine_errors,
             (unsigned long long)st->send_dropped);
}
