/* maad.c — the inspection daemon: `maad --config FILE`.
 *
 * Start-up loads and checks everything (configuration, model, calibration
 * and its binding to the model, engine, publisher, camera) before it tells
 * systemd READY=1, so a bad file fails the start, not the line.  Then three
 * threads: the camera module's capture thread hands frames to the ring
 * (worker.c, never blocking; with camera.trigger: software the module's
 * trigger thread fires them at camera.frame_rate), the worker judges and
 * publishes them, and this thread waits for signals: SIGHUP reloads the
 * calibration, or swaps in a new model with its calibration (its engine
 * made and tested here, beside the running one, while the worker goes on
 * judging), SIGTERM/SIGINT stop the camera and let the worker publish
 * everything in flight.  An
 * engine failing batch after batch stops it the same way, exit status 1. */
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "camera/camera.h"
#include "config/config.h"
#include "daemon/daemon.h"
#include "engine/engine.h"

#define MAAD_VERSION "0.1.0"

typedef struct {
    const char *config_path;
    maad_config cfg;
    maad_logger log;
    maa_model *model;
    maa_calibration cal;
    maa_inspector *inspector;
    maa_engine_opts eo;         /* what a swapped-in model's engine is made with */
    maad_ring *ring;
    maad_pub *pub;
    maad_worker *worker;
    maad_archive *archive;      /* NULL: archive.dir empty */
    maad_metrics *metrics;      /* NULL: metrics.listen empty */
    uint64_t started_ns;        /* CLOCK_REALTIME */
    cam_source *camera;
    atomic_int engine_failing;  /* set by the worker: exit with status 1 */
} maad;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: maad --config FILE        run the inspection daemon\n"
            "       maad --check-config FILE  check the configuration, the model and\n"
            "                                 the calibration, print the effective\n"
            "                                 configuration, exit 0 when all is good\n"
            "       maad --version | --help\n"
            "Signals: SIGHUP reloads the model and its calibration (model.*,\n"
            "mask.min_region_area): a new model file is checked, made and tested\n"
            "beside the running one and swapped in between two batches, or refused\n"
            "with the running one kept; SIGTERM or SIGINT stop after every captured\n"
            "frame has its verdict published.\n"
            "See docs/operations.md and docs/config.md.\n");
}

static maad_mask_format mask_format(maad_cfg_mask_format f)
{
    switch (f) {
    case MAAD_CFG_MASK_PNG: return MAAD_MASK_PNG;
    case MAAD_CFG_MASK_RAW: return MAAD_MASK_RAW;
    case MAAD_CFG_MASK_NONE: break;
    }
    return MAAD_MASK_NONE;
}

_Static_assert((int)MAA_RULE_EITHER == (int)MAAD_RULE_EITHER &&
                   (int)MAA_RULE_SCORE == (int)MAAD_RULE_SCORE &&
                   (int)MAA_RULE_MASK == (int)MAAD_RULE_MASK,
               "config rule values are the engine's");

/* The calibration file of cfg, bound to the model, with the configuration's
 * choices (model.rule, model.gamma, mask.min_region_area) applied. */
static int load_calibration(const maad_config *cfg, const maa_model *m,
                            maa_calibration *cal, char *err, size_t errlen)
{
    char why[MAA_ERRLEN];
    if (maa_calibration_load(cfg->model.calibration, cal, why, sizeof why) != MAA_OK ||
        maa_calibration_check_model(cal, m, why, sizeof why) != MAA_OK) {
        snprintf(err, errlen, "model.calibration: %s", why);
        return MAA_ERR;
    }
    cal->rule = (maa_rule)cfg->model.rule;
    if (cfg->model.has_gamma)
        maa_calibration_set_gamma(cal, cfg->model.gamma);
    if (cfg->mask.min_region_area >= 0)
        cal->min_region_area = cfg->mask.min_region_area;
    return MAA_OK;
}

/* Configuration, model, calibration and the backend's availability: what
 * --check-config answers for and what start-up needs first. */
static int load_files(maad *d, char *err, size_t errlen)
{
    char why[MAA_ERRLEN];
    if (maad_config_load(d->config_path, &d->cfg, err, errlen) != MAA_OK)
        return MAA_ERR;
    if (maa_model_load(d->cfg.model.path, &d->model, why, sizeof why) != MAA_OK) {
        snprintf(err, errlen, "model.path: %s", why);
        return MAA_ERR;
    }
    /* Every colour frame would be published uninspected by a mono model: a
     * wiring mistake to refuse now (and at a model swap), not a line that
     * rejects every part after READY.  config's rule, shared with maa
     * compare. */
    if (load_calibration(&d->cfg, d->model, &d->cal, err, errlen) != MAA_OK ||
        maad_config_check_channels(&d->cfg.camera, maa_model_get_info(d->model)->channels,
                                   maa_model_path(d->model), err, errlen) != MAA_OK)
        return MAA_ERR;
    struct sockaddr_storage addr;
    unsigned alen;
    if (d->cfg.metrics.listen[0] &&
        maad_metrics_address(d->cfg.metrics.listen, &addr, &alen, err, errlen) != MAA_OK)
        return MAA_ERR;
    maa_backend_kind kind = (maa_backend_kind)d->cfg.engine.backend;
    if (kind != MAA_BACKEND_AUTO && maa_backend_available(kind, why, sizeof why) != MAA_OK) {
        snprintf(err, errlen, "engine.backend %s: %s", maa_backend_name(kind), why);
        return MAA_ERR;
    }
    /* An archive that cannot be written is a mistake of the installation,
     * told now; a disk that fails later is counted and logged instead. */
    if (d->cfg.archive.dir[0] && maad_archive_check_dir(d->cfg.archive.dir, err, errlen) != MAA_OK)
        return MAA_ERR;
    return MAA_OK;
}

/* A plain socket that other hosts reach: whoever reaches the port reads
 * every verdict (and the masks), unauthenticated.  Right on a closed cell
 * network, so a warning, not an error. */
static int exposure_warning(const maad_config *c, char *buf, size_t n)
{
    if (c->publish.curve_secret_key[0] || maad_endpoint_is_local(c->publish.endpoint))
        return 0;
    snprintf(buf, n, "publish.endpoint %.255s listens beyond this host without CURVE: anyone who "
             "reaches it reads every verdict, unauthenticated and unencrypted; set "
             "publish.curve_secret_key and publish.curve_clients, or bind 127.0.0.1 "
             "(docs/operations.md, \"Securing the verdict socket\")", c->publish.endpoint);
    return 1;
}

/* The worker's drift alarm as the drift section sets it; window_frames 0:
 * none. */
static maad_drift_opts drift_opts(const maad_config *c)
{
    return (maad_drift_opts){.window_frames = c->drift.enabled ? c->drift.window_frames : 0,
                             .window_s = c->drift.window_s, .min_frames = c->drift.min_frames,
                             .mean_fraction = c->drift.mean_fraction,
                             .reject_rate = c->drift.reject_rate};
}

static int check_config(maad *d)
{
    char err[MAA_ERRLEN + 64];
    if (load_files(d, err, sizeof err) != MAA_OK) {
        fprintf(stderr, "maad: %s\n", err);
        return 1;
    }
    maad_config_dump(&d->cfg, stdout);
    char warning[1024];
    if (exposure_warning(&d->cfg, warning, sizeof warning))
        fprintf(stderr, "maad: warning: %s\n", warning);
    const maa_model_info *mi = maa_model_get_info(d->model);
    printf("# model: S %d, C %d, g_base %d, d_base %d, sha256 %s\n", mi->image_size,
           mi->channels, mi->g_base, mi->d_base, maa_model_sha256(d->model));
    printf("# calibration: n %d, mu %.6g, sigma %.6g, gamma %.6g, threshold %.6g, "
           "pixel threshold %.6g, min region area %d; rule %s\n",
           d->cal.n, d->cal.mu, d->cal.sigma, d->cal.gamma, d->cal.threshold,
           d->cal.pixel_threshold, d->cal.min_region_area, maa_rule_name(d->cal.rule));
    /* The drift alarm's band comes from the calibration: the operator
     * setting drift.* sees it before the line does. */
    maad_drift_opts dopts = drift_opts(&d->cfg);
    maad_drift *drift = NULL;
    char how[400];
    if (!dopts.window_frames)
        printf("# drift alarm: off (drift.enabled false)\n");
    else if (maad_drift_create(&dopts, d->cal.mu, d->cal.threshold, &drift, how, sizeof how) ==
             MAA_OK) {
        maad_drift_describe(drift, how, sizeof how);
        maad_drift_free(drift);
        printf("# drift alarm: watching %s\n", how);
    } else {
        fprintf(stderr, "maad: %s\n", how);
        return 1;
    }
    printf("# configuration OK\n");
    return 0;
}

/* ---- the camera's frames into the ring -------------------------------------- */

static int frame_image(const maad_slot *s, maa_image *img, void *scratch,
                       size_t scratch_bytes, char *err, size_t errlen)
{
    cam_event ev = {.kind = CAM_FRAME, .frame_id = s->frame_id,
                    .t_capture_ns = s->t_capture_ns, .width = s->width,
                    .height = s->height, .fmt = (cam_pixfmt)s->pixfmt,
                    .data = s->pixels, .size = s->size};
    return cam_frame_to_image(&ev, scratch, scratch_bytes, img, err, errlen);
}

/* GigE Vision frame ids run 1..65535 and wrap, skipping 0. */
static uint64_t id_before(uint64_t id, uint64_t k)
{
    if (id > 65535)
        return id - k;
    return (uint64_t)(((int64_t)id - 1 - (int64_t)(k % 65535) + 65535) % 65535) + 1;
}

/* An incomplete frame's reason begins so; the camera's reason after it
 * still fits a verdict's whole. */
#define INCOMPLETE "camera error: incomplete frame: "
_Static_assert(sizeof INCOMPLETE - 1 + CAM_REASON_SIZE <= MAAD_REASON_SIZE,
               "a camera's reason fits a verdict's whole");

/* On the capture thread: every event becomes ring traffic and so, in
 * order, one verdict per frame the camera took. */
static void on_camera(void *user, const cam_event *ev)
{
    maad *d = user;
    char reason[MAAD_REASON_SIZE];
    switch (ev->kind) {
    case CAM_FRAME:
        maad_worker_frame(d->worker, ev->frame_id, ev->t_capture_ns, ev->width,
                          ev->height, (uint32_t)ev->fmt, ev->data, ev->size);
        break;
    case CAM_INCOMPLETE:
        snprintf(reason, sizeof reason, INCOMPLETE "%s", ev->reason ? ev->reason : "");
        maad_worker_camera_error(d->worker, ev->frame_id, ev->t_capture_ns, reason);
        break;
    case CAM_MISSED:
        /* A long gap overflows the ring; those frames then read "ring
         * overflow", still one verdict each. */
        for (uint32_t k = ev->missed; k > 0; k--)
            maad_worker_camera_error(d->worker, id_before(ev->frame_id, k),
                                     ev->t_capture_ns, "camera error: frame missed");
        break;
    case CAM_ERROR:
        snprintf(reason, sizeof reason, "camera error: %s", ev->reason ? ev->reason : "");
        maad_worker_camera_error(d->worker, MAAD_FRAME_ID_UNKNOWN, ev->t_capture_ns, reason);
        break;
    case CAM_RECONNECTED:
        /* No frame, so no verdict; the operator who saw the errors learns
         * that the outage ended and how long the line was uninspected.  One
         * line per outage: the capture thread can afford it. */
        maad_log(&d->log, MAAD_LOG_NOTICE, "%s", ev->reason);
        break;
    }
}

_Static_assert((int)CAM_PIX_BAYER_BG8 == (int)MAAD_PIX_BAYER_BG8 &&
                   (int)CAM_PIX_RGB8 == (int)MAAD_PIX_RGB8,
               "config and camera pixel formats in one order");
_Static_assert((int)CAM_TRIGGER_HARDWARE == (int)MAAD_TRIGGER_HARDWARE &&
                   (int)CAM_TRIGGER_SOFTWARE == (int)MAAD_TRIGGER_SOFTWARE,
               "config and camera trigger modes in one order");

static void camera_config(const maad_config *c, cam_config *cc)
{
    cam_config_defaults(cc);
    cc->source = c->camera.source == MAAD_SOURCE_REPLAY ? CAM_SOURCE_REPLAY : CAM_SOURCE_ARAVIS;
    cc->device_id = c->camera.device_id[0] ? c->camera.device_id : NULL;
    /* Both enums follow the GenICam names in the same order. */
    cc->pixel_format = (cam_pixfmt)c->camera.pixel_format;
    cc->width = c->camera.width;
    cc->height = c->camera.height;
    cc->offset_x = c->camera.offset_x;
    cc->offset_y = c->camera.offset_y;
    cc->exposure_us = c->camera.exposure_us;
    cc->gain_db = c->camera.gain_db;
    cc->frame_rate = c->camera.frame_rate;
    cc->trigger = (cam_trigger_mode)c->camera.trigger;
    /* trigger: software means maad triggers at the configured rate; with
     * nothing calling cam_trigger, no frame would ever come. */
    if (c->camera.trigger == MAAD_TRIGGER_SOFTWARE)
        cc->trigger_rate = c->camera.source == MAAD_SOURCE_REPLAY ? c->replay.fps
                                                                  : c->camera.frame_rate;
    cc->trigger_source = c->camera.trigger_source;
    cc->packet_size = c->camera.packet_size;
    cc->packet_socket = c->camera.packet_socket;
    cc->stream_buffers = c->camera.stream_buffers;
    cc->timeout_ms = c->camera.timeout_ms;
    cc->reconnect_min_ms = c->camera.reconnect_min_ms;
    cc->reconnect_max_ms = c->camera.reconnect_max_ms;
    cc->realtime_priority = c->camera.realtime_priority;
    cc->replay_dir = c->replay.dir;
    cc->replay_fps = c->replay.fps;
    cc->replay_loop = c->replay.loop;
}

/* On the worker thread: the engine has failed batch after batch.  The main
 * thread stops as for SIGTERM (every frame in flight still gets its
 * verdict) and exits with status 1, so that systemd restarts maad. */
static void engine_failing(void *user, int batches, const char *why)
{
    maad *d = user;
    maad_log(&d->log, MAAD_LOG_ERR, "engine failed %d batches in a row (last: %s): stopping "
             "with exit status 1 for a restart (engine.max_failed_batches)", batches, why);
    atomic_store(&d->engine_failing, 1);
    kill(getpid(), SIGTERM);
}

/* ---- metrics ------------------------------------------------------------------ */

/* A metric family of one series: its name, type, help and value. */
typedef struct {
    const char *name, *type, *help;
    double v;
} family;

/* A family of one series a label value: name{camera, label="values[i].label"}. */
typedef struct {
    const char *label;
    double v;
} labelled;

static void labelled_family(maad_text *t, const char *l, const char *name, const char *type,
                            const char *help, const char *label, const labelled *values, int n)
{
    char lv[192];
    maad_metric_head(t, name, type, help);
    for (int i = 0; i < n; i++) {
        snprintf(lv, sizeof lv, "%s,%s=\"%s\"", l, label, values[i].label);
        maad_metric(t, name, lv, values[i].v);
    }
}

/* The exposition of /metrics (docs/operations.md, "Metrics", lists every
 * family), on the metrics thread: from the worker's, publisher's, camera's
 * and archive's snapshots only.  Counters end in _total, units are in the
 * names, every series carries the camera. */
static void collect(void *user, maad_text *t)
{
    maad *d = user;
    char l[64];
    snprintf(l, sizeof l, "camera=\"%s\"", d->cfg.camera.name);
    maad_worker_live w;
    maad_worker_get_live(d->worker, &w);
    cam_stats cs;
    cam_get_stats(d->camera, &cs);
    maad_pub_stats ps;
    maad_pub_get_stats(d->pub, &ps);

    labelled_family(t, l, "maad_build_info", "gauge", "maad's version: 1, labelled", "version",
                    &(labelled){MAAD_VERSION, 1}, 1);
    labelled_family(t, l, "maad_model_info", "gauge",
                    "The model in force, by the SHA-256 of its file: 1, labelled", "sha256",
                    &(labelled){w.model, 1}, 1);
    labelled_family(t, l, "maad_verdicts_total", "counter", "Verdicts published, by verdict",
                    "verdict",
                    (labelled[]){{"pass", (double)w.st.pass},
                                 {"reject", (double)w.st.reject},
                                 {"uninspected", (double)w.st.uninspected}},
                    3);
    labelled_family(t, l, "maad_uninspected_total", "counter",
                    "Frames published uninspected, by reason", "reason",
                    (labelled[]){{"ring_overflow", (double)w.st.overflow},
                                 {"too_old", (double)w.st.too_old},
                                 {"camera_error", (double)w.st.camera_errors},
                                 {"engine_error", (double)w.st.engine_errors}},
                    4);
    const family f[] = {
        {"maad_start_time_seconds", "gauge", "When maad started (Unix time)",
         (double)d->started_ns / 1e9},
        {"maad_score_threshold", "gauge", "The score threshold T in force (the calibration's)",
         w.threshold},
        {"maad_frames_captured_total", "counter",
         "Frames the camera delivered or failed to deliver: each gets one verdict",
         (double)w.st.captured},
        {"maad_ring_slots", "gauge", "Slots of the capture-to-worker frame ring", w.ring_slots},
        {"maad_ring_used_slots", "gauge", "Ring slots holding frames the worker has not taken yet",
         w.ring_used},
        {"maad_models_swapped_total", "counter", "Models swapped in by SIGHUP",
         (double)w.st.models},
        {"maad_calibrations_reloaded_total", "counter",
         "Calibrations reloaded by SIGHUP (same model)", (double)w.st.calibrations},
        {"maad_camera_errors_total", "counter",
         "Camera failures reported (lost camera, stream error)", (double)cs.errors},
        {"maad_camera_incomplete_frames_total", "counter", "Frames the camera delivered incomplete",
         (double)cs.incomplete},
        {"maad_camera_missed_frames_total", "counter",
         "Frames the camera's ids show were never delivered", (double)cs.missed},
        {"maad_camera_reconnections_total", "counter", "Successful reconnections to the camera",
         (double)cs.reconnects},
        {"maad_publish_dropped_total", "counter",
         "Verdicts the socket refused (their seq spent: subscribers see a gap)",
         (double)ps.send_dropped},
        {"maad_heartbeats_total", "counter", "Heartbeats published", (double)ps.heartbeats},
        {"maad_subscriber_queue_limit_messages", "gauge",
         "Messages one subscriber's queue holds (sndhwm cut to the budget)", ps.queue_limit},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        maad_metric_head(t, f[i].name, f[i].type, f[i].help);
        maad_metric(t, f[i].name, l, f[i].v);
    }
    maad_metric_head(t, "maad_batch_frames", "histogram", "Frames in each batch the engine judged");
    maad_metric_hist(t, "maad_batch_frames", l, &w.batch, maad_batch_le, MAAD_BATCH_LE);
    maad_metric_head(t, "maad_engine_batch_seconds", "histogram",
                     "Time in the engine (preprocessing on the device, networks, FMD, mask) a batch");
    maad_metric_hist(t, "maad_engine_batch_seconds", l, &w.engine, maad_engine_le,
                     MAAD_ENGINE_LE);
    maad_metric_head(t, "maad_verdict_latency_seconds", "histogram",
                     "From a frame's capture to its verdict's publication");
    maad_metric_hist(t, "maad_verdict_latency_seconds", l, &w.latency, maad_latency_le,
                     MAAD_LATENCY_LE);
    if (ps.curve_keys) {
        labelled_family(t, l, "maad_curve_handshakes_total", "counter",
                        "CURVE handshakes of subscribers, by result", "result",
                        (labelled[]){{"accepted", (double)ps.curve_accepted},
                                     {"refused", (double)ps.curve_refused}},
                        2);
        maad_metric_head(t, "maad_curve_client_keys", "gauge", "Subscriber keys allowed");
        maad_metric(t, "maad_curve_client_keys", l, ps.curve_keys);
    }
    if (w.drift_on) {
        /* The drift alarm (docs/operations.md, "Drift alarm"); NaN where a
         * value is not watched, or not known yet. */
        const maad_drift_state *s = &w.drift;
        labelled_family(t, l, "maad_drift_alarm", "gauge",
                        "The drift alarm, by cause: 1 raised, 0 quiet", "cause",
                        (labelled[]){{"mean", (s->alarm & MAAD_DRIFT_MEAN) != 0},
                                     {"reject_rate", (s->alarm & MAAD_DRIFT_REJECTS) != 0}},
                        2);
        labelled_family(t, l, "maad_drift_alarms_total", "counter",
                        "Drift alarms raised, by cause", "cause",
                        (labelled[]){{"mean", (double)s->raised_mean},
                                     {"reject_rate", (double)s->raised_rejects}},
                        2);
        const family g[] = {
            {"maad_drift_window_frames", "gauge", "Judged parts in the drift window",
             s->frames},
            {"maad_drift_pass_score_mean", "gauge",
             "Mean score of the passes in the drift window", s->mean},
            {"maad_drift_reject_ratio", "gauge",
             "Share of the judged parts in the drift window rejected", s->reject_rate},
            {"maad_drift_baseline_score", "gauge",
             "The calibration's mean good-part score mu", s->mu},
            {"maad_drift_pass_score_mean_low", "gauge",
             "The drift alarm's lower limit of the mean", s->mean_low},
            {"maad_drift_pass_score_mean_high", "gauge",
             "The drift alarm's upper limit of the mean", s->mean_high},
            {"maad_drift_reject_ratio_limit", "gauge",
             "The drift alarm's limit of the reject share", s->reject_limit},
        };
        for (size_t i = 0; i < sizeof g / sizeof g[0]; i++) {
            maad_metric_head(t, g[i].name, g[i].type, g[i].help);
            maad_metric(t, g[i].name, l, g[i].v);
        }
    }
    if (d->archive) {
        maad_archive_stats as;
        maad_archive_get_stats(d->archive, &as);
        const family a[] = {
            {"maad_archive_records", "gauge", "The camera's records in the archive",
             (double)as.records},
            {"maad_archive_bytes", "gauge", "Their bytes", (double)as.bytes},
            {"maad_archive_files", "gauge", "Their files", (double)as.files},
            {"maad_archive_budget_bytes", "gauge", "archive.max_bytes", (double)as.max_bytes},
            {"maad_archive_budget_files", "gauge", "archive.max_files", (double)as.max_files},
            {"maad_archive_queued_records", "gauge", "Records waiting for the disk",
             (double)as.queued},
            {"maad_archive_written_total", "counter", "Records written", (double)as.written},
            {"maad_archive_written_bytes_total", "counter", "Bytes of the records written",
             (double)as.written_bytes},
            {"maad_archive_deleted_total", "counter",
             "Records deleted, oldest first, to stay within the budget", (double)as.deleted},
        };
        for (size_t i = 0; i < sizeof a / sizeof a[0]; i++) {
            maad_metric_head(t, a[i].name, a[i].type, a[i].help);
            maad_metric(t, a[i].name, l, a[i].v);
        }
        labelled_family(t, l, "maad_archive_lost_total", "counter",
                        "Records not written, by reason (queue full, disk failed, larger than "
                        "the budget)",
                        "reason",
                        (labelled[]){{"queue_full", (double)as.dropped},
                                     {"disk_failed", (double)as.failed},
                                     {"over_budget", (double)as.refused}},
                        3);
    }
}

/* ---- start, run, stop -------------------------------------------------------- */

static int start(maad *d, char *err, size_t errlen)
{
    d->started_ns = maad_now_ns();
    const maad_config *c = &d->cfg;
    const maa_model_info *mi = maa_model_get_info(d->model);

    /* Bound before the camera opens, so subscribers have that long to
     * connect before the first verdict. */
    maad_pub_opts po = {.endpoint = c->publish.endpoint, .camera = c->camera.name,
                        .sndhwm = c->publish.sndhwm,
                        .mask_format = mask_format(c->mask.format),
                        .heartbeat_ms = c->publish.heartbeat_ms,
                        .subscriber_budget = (size_t)c->publish.subscriber_budget_mib << 20,
                        .mask_side = mi->image_size,
                        .curve_secret_key = c->publish.curve_secret_key,
                        .curve_clients = c->publish.curve_clients,
                        .log = &d->log};
    if (maad_pub_create(&po, &d->pub, err, errlen) != MAA_OK)
        return MAA_ERR;
    maad_pub_stats ps;
    maad_pub_get_stats(d->pub, &ps);
    if (ps.curve_keys)
        maad_log(&d->log, MAAD_LOG_INFO, "publish: %s, CURVE: %d subscriber keys allowed (%s); "
                 "a subscriber's queue holds at most %d verdicts", c->publish.endpoint,
                 ps.curve_keys, c->publish.curve_clients, ps.queue_limit);
    else
        maad_log(&d->log, MAAD_LOG_INFO, "publish: %s, plain (no CURVE); a subscriber's queue "
                 "holds at most %d verdicts", c->publish.endpoint, ps.queue_limit);
    char warning[1024];
    if (exposure_warning(c, warning, sizeof warning))
        maad_log(&d->log, MAAD_LOG_WARNING, "%s", warning);
    uint64_t bound_ns = maad_now_ns();

    /* `systemctl status` names each step while the unit is still
     * "activating": making the engine can take a while (below). */
    maad_notify_status("starting: opening camera %s", c->camera.name);
    cam_config cc;
    camera_config(c, &cc);
    if (cam_open(&cc, on_camera, d, &d->camera, err, errlen) != MAA_OK)
        return MAA_ERR;
    size_t slot_bytes = cam_frame_bytes(d->camera);
    if (slot_bytes == 0) {
        /* Without it every frame would be uninspected after READY. */
        snprintf(err, errlen, "camera: cannot tell the size of its frames (payload size 0)");
        return MAA_ERR;
    }
    /* Created once the camera's frame size is known: a backend that
     * preprocesses on its device sizes its frame buffers for it. */
    d->eo = (maa_engine_opts){.backend = (maa_backend_kind)c->engine.backend,
                              .precision = (maa_precision)c->engine.precision,
                              .max_batch = c->engine.batch_max,
                              .threads = c->engine.threads,
                              .device = c->engine.device,
                              .frame_bytes = cam_image_bytes_max(d->camera)};
    /* cuda: a cuDNN search per layer and graph captures per batch size,
     * seconds that the operator sees here rather than wonders about. */
    maad_notify_status("starting: making the engine (backend %s, batch %d)",
                       maa_backend_name(d->eo.backend), d->eo.max_batch);
    const uint64_t t0 = maad_mono_ns();
    if (maa_inspector_create(d->model, &d->eo, &d->inspector, err, errlen) != MAA_OK)
        return MAA_ERR;
    const double create_s = (maad_mono_ns() - t0) / 1e9;
    maa_engine *e = maa_inspector_engine(d->inspector);
    char how[320], frames[96] = "";
    maa_engine_describe(e, how, sizeof how);
    if (maa_inspector_frame_bytes(d->inspector))
        snprintf(frames, sizeof frames, "; frames up to %.1f MB preprocessed on the device",
                 maa_inspector_frame_bytes(d->inspector) / 1e6);
    maad_log(&d->log, MAAD_LOG_INFO, "model %s (S %d, C %d), backend %s, precision %s, batch %d, "
             "engine made in %.1f s%s%s%s", c->model.path, mi->image_size, mi->channels,
             maa_backend_name(maa_engine_backend(e)),
             maa_precision_name(maa_engine_precision(e)), c->engine.batch_max, create_s,
             *how ? ": " : "", how, frames);
    if (maad_ring_create((uint32_t)c->engine.ring_slots, slot_bytes, NULL, NULL, NULL,
                         &d->ring, err, errlen) != MAA_OK)
        return MAA_ERR;
    if (c->archive.dir[0]) {
        maad_archive_opts ao = {.dir = c->archive.dir, .camera = c->camera.name,
                                .max_bytes = (uint64_t)c->archive.max_bytes,
                                .max_files = (uint64_t)c->archive.max_files,
                                .sample_passes = c->archive.sample_passes,
                                .queue = c->archive.queue,
                                .frame_bytes = cam_image_bytes_max(d->camera),
                                .mask_side = mi->image_size, .log = &d->log};
        if (maad_archive_open(&ao, &d->archive, err, errlen) != MAA_OK)
            return MAA_ERR;
    }

    double rate = c->camera.source == MAAD_SOURCE_REPLAY ? c->replay.fps : c->camera.frame_rate;
    maad_worker_opts wo = {
        .ring = d->ring, .pub = d->pub, .archive = d->archive,
        .model = {.inspector = d->inspector, .image_size = mi->image_size,
                  .channels = mi->channels, .sha256 = maa_model_sha256(d->model)},
        .cal = d->cal,
        .to_image = frame_image, .image_bytes = cam_image_bytes_max(d->camera),
        .batch_max = c->engine.batch_max,
        /* By default a frame waits at most one frame period for company. */
        .batch_timeout_ms = c->engine.batch_timeout_ms > 0 ? c->engine.batch_timeout_ms
                                                           : 1000.0 / rate,
        .max_age_ms = c->engine.max_age_ms,
        .test_delay_ms = c->engine.test_delay_ms,
        .heartbeat_ms = c->publish.heartbeat_ms,
        .summary_interval_s = c->log.summary_interval_s, .log = &d->log,
        .max_failed_batches = c->engine.max_failed_batches, .on_failing = engine_failing,
        .user = d,
        .drift = drift_opts(c)};
    if (maad_worker_start(&wo, &d->worker, err, errlen) != MAA_OK)
        return MAA_ERR;
    if (c->metrics.listen[0]) {
        if (maad_metrics_start(c->metrics.listen, collect, d, &d->log, &d->metrics, err,
                               errlen) != MAA_OK)
            return MAA_ERR;
        maad_log(&d->log, MAAD_LOG_INFO, "metrics: Prometheus endpoint http://%s/metrics",
                 c->metrics.listen);
    }
    /* Subscribers that were waiting for us (a PLC bridge reconnecting
     * after a restart, 100 ms apart by ZeroMQ's default) are connected
     * before the first verdict if the camera starts a heartbeat period
     * after the bind: a PUB socket drops what it sends before that. */
    uint64_t grace_ns = (uint64_t)c->publish.heartbeat_ms * 1000000u, now = maad_now_ns();
    if (now - bound_ns < grace_ns) {
        uint64_t left = grace_ns - (now - bound_ns);
        struct timespec ts = {(time_t)(left / 1000000000u), (long)(left % 1000000000u)};
        nanosleep(&ts, NULL);
    }
    char why[MAA_ERRLEN];
    int rc = cam_start(d->camera, why, sizeof why);
    if (rc == CAM_WARN)
        maad_log(&d->log, MAAD_LOG_WARNING, "camera: %s", why);
    else if (rc != MAA_OK) {
        snprintf(err, errlen, "camera: %s", why);
        return MAA_ERR;
    }
    return MAA_OK;
}

/* STATUS= while inspecting: the camera and the model judging, and what the
 * last SIGHUP refused (note; NULL: nothing). */
static void notify_inspecting(const maad *d, const char *note)
{
    maad_notify_status("inspecting camera %s with model %s (sha256 %.12s)%s%s",
                       d->cfg.camera.name, maa_model_path(d->model),
                       maa_model_sha256(d->model), note ? "; " : "", note ? note : "");
}

/* A candidate model not swapped in (sha256 NULL: it did not load): said in
 * the journal and in STATUS=, the running model named as the one kept. */
static void refuse_model(maad *d, const char *path, const char *sha256, const char *why)
{
    char sha[32] = "", note[MAA_ERRLEN + 320];
    if (sha256)
        snprintf(sha, sizeof sha, " (sha256 %.12s)", sha256);
    maad_log(&d->log, MAAD_LOG_ERR, "SIGHUP: model %s%s not swapped in, keeping %s (sha256 "
             "%.12s): %s", path, sha, maa_model_path(d->model), maa_model_sha256(d->model), why);
    snprintf(note, sizeof note, "SIGHUP: model %s%s not swapped in: %s", path, sha, why);
    notify_inspecting(d, note);
}

/* A frame of the model's size and channels, a shaded texture as a part's
 * surface gives, through in: a model that loads but computes nothing
 * finite (overflowing weights, say) is refused here, not found out on the
 * line.  Its score into *score. */
static int self_test(maa_inspector *in, const maa_model *m, const maa_calibration *cal,
                     double *score, char *err, size_t errlen)
{
    const maa_model_info *mi = maa_model_get_info(m);
    const int s = mi->image_size, c = mi->channels;
    uint8_t *px = malloc((size_t)s * s * c);
    if (!px) {
        snprintf(err, errlen, "self-test: out of memory");
        return MAA_ERR;
    }
    for (int y = 0; y < s; y++)
        for (int x = 0; x < s * c; x++)
            px[(size_t)y * s * c + x] =
                (uint8_t)(128 + 60 * sin(x / (5.0 * c)) * cos(y / 7.0) + (x * 7 + y * 13) % 9);
    maa_image img = {.width = s, .height = s, .channels = c, .depth = 8, .data = px};
    maa_result r;
    char why[MAA_ERRLEN];
    int rc = maa_inspect_frames(in, cal, 1, &img, &r, why, sizeof why);
    free(px);
    if (rc != MAA_OK) {
        snprintf(err, errlen, "self-test: %s", why);
        return MAA_ERR;
    }
    if (!isfinite(r.score) || !isfinite(r.mask_peak)) {
        snprintf(err, errlen, "self-test: score %g, mask peak %g on a test frame", r.score,
                 r.mask_peak);
        return MAA_ERR;
    }
    *score = r.score;
    return MAA_OK;
}

/* SIGHUP with a model file of other content than the running one's: m,
 * with cfg's calibration, checked against the camera, its engine made
 * beside the running one and tested, then handed to the worker, which
 * swaps it in between two batches; the old engine and model are freed
 * here once the worker has let go of them.  At the first failure m is
 * refused and the running model kept. */
static void swap_model(maad *d, const maad_config *cfg, maa_model *m)
{
    const maa_model_info *mi = maa_model_get_info(m);
    char err[MAA_ERRLEN + 64], why[MAA_ERRLEN];
    maa_calibration cal;
    maa_inspector *in = NULL, *old = NULL;
    uint64_t first_seq = 0;
    double made_s = 0, test_ms = 0, score = 0;
    /* The camera's frames as it was opened: its keys need a restart. */
    int rc = maad_config_check_channels(&d->cfg.camera, mi->channels, maa_model_path(m), err,
                                        sizeof err);
    if (rc == MAA_OK)
        rc = load_calibration(cfg, m, &cal, err, sizeof err);
    if (rc == MAA_OK) {
        const uint64_t t0 = maad_mono_ns();
        /* On a GPU, or a machine short of memory, the second engine may
         * not fit: then the running one stays. */
        rc = maa_inspector_create(m, &d->eo, &in, why, sizeof why);
        if (rc != MAA_OK)
            snprintf(err, sizeof err, "cannot make its engine beside the running one: %s", why);
        made_s = (maad_mono_ns() - t0) / 1e9;
    }
    if (rc == MAA_OK) {
        const uint64_t t0 = maad_mono_ns();
        rc = self_test(in, m, &cal, &score, err, sizeof err);
        test_ms = (maad_mono_ns() - t0) / 1e6;
    }
    if (rc == MAA_OK) {
        maad_worker_model wm = {.inspector = in, .image_size = mi->image_size,
                                .channels = mi->channels, .sha256 = maa_model_sha256(m)};
        rc = maad_worker_set_model(d->worker, &wm, &cal, &old, &first_seq, err, sizeof err);
    }
    if (rc != MAA_OK) {
        maa_inspector_free(in);
        refuse_model(d, maa_model_path(m), maa_model_sha256(m), err);
        maa_model_free(m);
        return;
    }
    maad_log(&d->log, MAAD_LOG_NOTICE, "SIGHUP: model %s (sha256 %.12s) swapped in from the "
             "next batch, seq %llu on: S %d, C %d; calibration %s: threshold %.6g, pixel "
             "threshold %.6g, rule %s; engine made in %.2f s beside the running one, self-test "
             "score %.6g in %.1f ms; replaces %s (sha256 %.12s), freed", maa_model_path(m),
             maa_model_sha256(m), (unsigned long long)first_seq, mi->image_size, mi->channels,
             cfg->model.calibration, cal.threshold, cal.pixel_threshold, maa_rule_name(cal.rule),
             made_s, score, test_ms, maa_model_path(d->model), maa_model_sha256(d->model));
    maad_pub_set_mask_side(d->pub, mi->image_size);
    maa_inspector_free(old);
    maa_model_free(d->model);
    d->model = m;
    d->inspector = in;
    d->cal = cal;
    notify_inspecting(d, NULL);
}

/* SIGHUP: the configuration again.  A model file whose content differs
 * from the running model's (another path, or a new file moved into place
 * at the same one: told apart by their SHA-256) is swapped in; with the
 * same model, the calibration and the configuration's choices are
 * reloaded. */
static void reload(maad *d)
{
    maad_config cfg;
    maa_calibration cal;
    maa_model *m = NULL;
    char err[MAA_ERRLEN + 64];
    int nkeys;
    /* The allowed subscribers first: revoking a key must not wait on a
     * model that fails to load. */
    if (maad_pub_reload_clients(d->pub, &nkeys, err, sizeof err) != MAA_OK)
        maad_log(&d->log, MAAD_LOG_ERR, "SIGHUP: subscriber keys not reloaded, keeping the "
                 "ones allowed: %s", err);
    else if (nkeys)
        maad_log(&d->log, MAAD_LOG_NOTICE, "SIGHUP: %d subscriber keys allowed (%s)", nkeys,
                 d->cfg.publish.curve_clients);
    if (maad_config_load(d->config_path, &cfg, err, sizeof err) != MAA_OK) {
        maad_log(&d->log, MAAD_LOG_ERR, "SIGHUP: configuration not reloaded, keeping model %s "
                 "(sha256 %.12s) and threshold %.6g: %s", maa_model_path(d->model),
                 maa_model_sha256(d->model), d->cal.threshold, err);
        return;
    }
    if (maa_model_load(cfg.model.path, &m, err, sizeof err) != MAA_OK) {
        refuse_model(d, cfg.model.path, NULL, err);
        return;
    }
    if (strcmp(maa_model_sha256(m), maa_model_sha256(d->model)) != 0) {
        swap_model(d, &cfg, m);
        return;
    }
    maa_model_free(m);
    if (load_calibration(&cfg, d->model, &cal, err, sizeof err) != MAA_OK) {
        maad_log(&d->log, MAAD_LOG_ERR, "SIGHUP: calibration not reloaded, keeping "
                 "threshold %.6g: %s", d->cal.threshold, err);
        return;
    }
    d->cal = cal;
    maad_worker_set_calibration(d->worker, &cal);
    maad_log(&d->log, MAAD_LOG_NOTICE, "SIGHUP: calibration %s reloaded: threshold %.6g "
             "(mu %.6g, sigma %.6g, gamma %.6g), pixel threshold %.6g, rule %s; it applies "
             "from the next batch", cfg.model.calibration, cal.threshold, cal.mu, cal.sigma,
             cal.gamma, cal.pixel_threshold, maa_rule_name(cal.rule));
}

static void teardown(maad *d)
{
    maad_metrics_stop(d->metrics);
    if (d->camera)
        cam_close(d->camera);
    maad_worker_free(d->worker);
    /* After the worker: what it queued last is written first. */
    maad_archive_close(d->archive, NULL);
    maad_pub_free(d->pub);
    maad_ring_free(d->ring);
    maa_inspector_free(d->inspector);
    maa_model_free(d->model);
}

/* The thread that waits for the signals: run's, the main thread. */
static pthread_t signal_thread;

/* Threads that a library starts before main (OpenBLAS's pool, from its
 * constructor) do not block the signals run waits for, and one the kernel
 * hands to such a thread would take its default action: a SIGTERM, or a
 * second SIGHUP, that came while the main thread was busy swapping a
 * model in would end maad at once, the frames in flight unpublished.
 * This handler, which runs only there, passes it on to the main thread,
 * which blocks it until sigwaitinfo takes it. */
static void pass_signal(int sig)
{
    pthread_kill(signal_thread, sig);
}

static int run(maad *d)
{
    char err[MAA_ERRLEN + 64];
    if (load_files(d, err, sizeof err) != MAA_OK) {
        fprintf(stderr, "maad: %s\n", err);
        maa_model_free(d->model);
        return 1;
    }
    maad_log_init(&d->log, d->cfg.camera.name, maad_log_level_of(d->cfg.log.level));

    /* Every thread started from here on inherits the mask, so the signals
     * reach only sigwaitinfo below (or pass_signal, on threads started
     * before). */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    /* Blocked here first: on this thread the handler would pass the
     * signal to itself, for ever. */
    signal_thread = pthread_self();
    struct sigaction pass = {.sa_handler = pass_signal, .sa_flags = SA_RESTART};
    sigemptyset(&pass.sa_mask);
    sigaction(SIGTERM, &pass, NULL);
    sigaction(SIGINT, &pass, NULL);
    sigaction(SIGHUP, &pass, NULL);
    /* A subscriber vanishing must not kill us through a write. */
    signal(SIGPIPE, SIG_IGN);

    if (start(d, err, sizeof err) != MAA_OK) {
        maad_log(&d->log, MAAD_LOG_ERR, "start-up failed: %s", err);
        if (d->worker) {
            maad_worker_stats st;
            cam_stop(d->camera);
            maad_worker_stop(d->worker, &st);
        }
        teardown(d);
        return 1;
    }
    maad_notify_ready();
    notify_inspecting(d, NULL);
    maad_log(&d->log, MAAD_LOG_NOTICE, "ready: camera %s, publishing on %s",
             d->cfg.camera.name, d->cfg.publish.endpoint);

    for (;;) {
        int sig = sigwaitinfo(&set, NULL);
        if (sig == SIGHUP) {
            reload(d);
            continue;
        }
        if (sig == SIGTERM || sig == SIGINT)
            break;
    }
    maad_notify_stopping();
    maad_log(&d->log, MAAD_LOG_NOTICE, "stopping: draining the frames in flight");
    /* Before the archive closes: a scrape reads it. */
    maad_metrics_stop(d->metrics);
    d->metrics = NULL;
    cam_stop(d->camera);
    maad_worker_stats st;
    maad_worker_stop(d->worker, &st);
    char line[512];
    maad_worker_stats_line(&st, line, sizeof line);
    maad_log(&d->log, MAAD_LOG_NOTICE, "%s", line);
    if (d->archive) {
        /* Closed first, its queue written, so that the line counts all. */
        maad_archive_stats as;
        maad_archive_close(d->archive, &as);
        d->archive = NULL;
        maad_archive_stats_line(&as, line, sizeof line);
        maad_log(&d->log, MAAD_LOG_NOTICE, "final %s", line);
    }
    teardown(d);
    return atomic_load(&d->engine_failing) ? 1 : 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"config", 1, 0, 'c'},
                                         {"check-config", 1, 0, 'k'},
                                         {"version", 0, 0, 'V'},
                                         {"help", 0, 0, 'h'},
                                         {0, 0, 0, 0}};
    maad d = {0};
    int check = 0, o;
    while ((o = getopt_long(argc, argv, "c:k:Vh", opts, NULL)) != -1) {
        switch (o) {
        case 'c': d.config_path = optarg; break;
        case 'k': d.config_path = optarg, check = 1; break;
        case 'V': printf("maad %s\n", MAAD_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!d.config_path || optind != argc) {
        usage(stderr);
        return 2;
    }
    if (check) {
        int rc = check_config(&d);
        maa_model_free(d.model);
        return rc;
    }
    return run(&d);
}
