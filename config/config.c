/* config.c — maad's configuration file: its key table, its rules between
 * keys, and the maad_config_* functions over them (the loader itself is
 * schema.c's, shared with maa-plc: plc.c).
 *
 * Every key lives in one row of its section's table below; defaults, the
 * loader's checks, the example file, the Markdown table and the dump are all
 * driven by it, so adding a key is adding a row (and a field in config.h). */
#include "config/config.h"

#include <stdio.h>
#include <string.h>

#include "camera/camera.h"
#include "config/schema.h"
#include "engine/engine.h"

static const char *const source_names[] = {"aravis", "replay", NULL};
static const char *const pixfmt_names[] = {"Mono8",    "RGB8",     "BayerRG8",
                                           "BayerGR8", "BayerGB8", "BayerBG8", NULL};
static const char *const trigger_names[] = {"free", "software", "hardware", NULL};
static const char *const backend_names[] = {"auto", "ref", "cpu", "cuda", NULL};
static const char *const precision_names[] = {"default", "f32", "f16", "bf16", NULL};
static const char *const mask_names[] = {"png", "raw", "none", NULL};
static const char *const rule_names[] = {"either", "score", "mask", NULL};
static const char *const level_names[] = {"debug", "info", "notice", "warning", NULL};

/* Enum fields are stored through an int. */
_Static_assert(sizeof(maad_source) == sizeof(int), "enum size");
_Static_assert(sizeof(maad_pixel_format) == sizeof(int), "enum size");
_Static_assert(sizeof(maad_trigger) == sizeof(int), "enum size");
_Static_assert(sizeof(maad_backend) == sizeof(int), "enum size");
_Static_assert(sizeof(maad_precision) == sizeof(int), "enum size");
_Static_assert(sizeof(maad_cfg_mask_format) == sizeof(int), "enum size");
_Static_assert(sizeof(maad_rule) == sizeof(int), "enum size");
_Static_assert(sizeof(maad_cfg_log_level) == sizeof(int), "enum size");

/* The camera module's defaults (CAM_DEFAULT_*) as the table writes them. */
#define TEXT_(x) #x
#define TEXT(x) TEXT_(x)
#define BOOL_TEXT(b) ((b) ? "true" : "false")

/* Rows of section s, whose struct is maad_<s>_config. */
#define INT(s, k, lo, hi, d, fl, doc) CFG_INT(maad_##s##_config, k, lo, hi, d, fl, doc)
#define DBL(s, k, lo, hi, d, doc) CFG_DBL(maad_##s##_config, k, lo, hi, d, doc)
#define BOOL(s, k, d, doc) CFG_BOOL(maad_##s##_config, k, d, doc)
#define ENUM(s, k, v, d, doc) CFG_ENUM(maad_##s##_config, k, v, d, doc)
#define STR(s, k, d, ex, fl, doc) CFG_STR(maad_##s##_config, k, d, ex, fl, doc)

static const cfg_key camera_keys[] = {
    STR(camera, name, NULL, "cam0", F_REQUIRED | F_IDENT,
        "Names the camera; verdicts are published on topic maad.<name>."),
    ENUM(camera, source, source_names, "aravis",
         "Where frames come from: a GigE Vision camera or a replay directory."),
    STR(camera, device_id, "", NULL, 0, "Aravis device id; empty = the first camera found."),
    ENUM(camera, pixel_format, pixfmt_names, "Mono8", "Pixel format asked of the camera."),
    INT(camera, width, 0, MAA_IMAGE_MAX_SIDE, "0", 0,
        "Region of interest width; 0 = the sensor maximum."),
    INT(camera, height, 0, MAA_IMAGE_MAX_SIDE, "0", 0,
        "Region of interest height; 0 = the sensor maximum."),
    INT(camera, offset_x, 0, 65535, "0", 0, "Region of interest left edge."),
    INT(camera, offset_y, 0, 65535, "0", 0, "Region of interest top edge."),
    DBL(camera, exposure_us, 0, 1e7, "0",
        "Exposure time in microseconds; 0 = leave the camera's setting."),
    DBL(camera, gain_db, -1, 100, "-1", "Gain in dB; -1 = leave the camera's setting."),
    DBL(camera, frame_rate, 0.1, 1000, "33",
        "Frames per second: the camera's free-run rate, or maad's software-trigger rate."),
    ENUM(camera, trigger, trigger_names, "free",
         "free = the camera runs at frame_rate; software = maad triggers it frame_rate "
         "times a second; hardware = one frame per pulse on trigger_source."),
    STR(camera, trigger_source, CAM_DEFAULT_TRIGGER_SOURCE, NULL, 0,
        "Camera input line used by trigger: hardware."),
    INT(camera, packet_size, 0, 16000, "0", 0, "GigE Vision packet size in bytes; 0 = negotiate."),
    BOOL(camera, packet_socket, BOOL_TEXT(CAM_DEFAULT_PACKET_SOCKET),
         "Receive the stream through Aravis's packet socket where it may (CAP_NET_RAW; "
         "else it uses a UDP socket); false = always the UDP socket."),
    INT(camera, stream_buffers, 2, 256, TEXT(CAM_DEFAULT_STREAM_BUFFERS), 0,
        "Frame buffers queued to the camera."),
    INT(camera, timeout_ms, 0, 60000, "0", 0,
        "Free run or software trigger: no frame for this long is a lost camera "
        "(reconnect); 0 = max(1000, 3 frame periods)."),
    INT(camera, reconnect_min_ms, 10, 60000, TEXT(CAM_DEFAULT_RECONNECT_MIN_MS), 0,
        "First delay before reconnecting a lost camera."),
    INT(camera, reconnect_max_ms, 100, 600000, TEXT(CAM_DEFAULT_RECONNECT_MAX_MS), 0,
        "Longest delay between reconnections; >= reconnect_min_ms."),
    INT(camera, realtime_priority, 0, 99, "0", 0,
        "SCHED_FIFO priority of the capture thread and of maad's software trigger; "
        "0 = normal scheduling."),
    CFG_END,
};

static const cfg_key replay_keys[] = {
    STR(replay, dir, "", NULL, F_PATH,
        "Directory of images to replay; required when camera.source is replay."),
    DBL(replay, fps, 0.1, 1000, TEXT(CAM_DEFAULT_REPLAY_FPS),
        "Replay rate in frames per second."),
    BOOL(replay, loop, BOOL_TEXT(CAM_DEFAULT_REPLAY_LOOP),
         "Start again from the first image after the last."),
    CFG_END,
};

static const cfg_key model_keys[] = {
    STR(model, path, NULL, "model.safetensors", F_REQUIRED | F_PATH,
        "The model file; on SIGHUP, a file of other content (another path, or a new file "
        "moved to this one) is swapped in without stopping the line."),
    STR(model, calibration, NULL, "calibration.yaml", F_REQUIRED | F_PATH,
        "The calibration file made for that model (maa calibrate); reloaded on SIGHUP."),
    ENUM(model, rule, rule_names, "either",
         "Which evidence rejects a part: either = the score above T or a defect-mask "
         "region; score = the score alone (the paper's rule); mask = a mask region alone."),
    {.name = "gamma", .type = T_DOUBLE, .off = offsetof(maad_model_config, gamma),
     .min = MAA_GAMMA_MIN, .max = MAA_GAMMA_MAX, .example = "3", .flags = F_OPTIONAL,
     .set_off = offsetof(maad_model_config, has_gamma),
     .doc = "Sensitivity of T = mu + gamma*sigma; absent = the calibration's."},
    CFG_END,
};

static const cfg_key engine_keys[] = {
    ENUM(engine, backend, backend_names, "auto",
         "Inference backend; auto = cuda when a GPU is present, else cpu."),
    ENUM(engine, precision, precision_names, "default",
         "Compute precision; default = the backend's (cuda f16, others f32)."),
    INT(engine, threads, 0, 1024, "0", 0, "CPU threads of the engine; 0 = all cores."),
    INT(engine, device, 0, 64, "0", 0, "CUDA device ordinal."),
    INT(engine, batch_max, 1, 64, "4", 0, "Largest batch given to the engine."),
    DBL(engine, batch_timeout_ms, 0, 10000, "0",
        "Longest wait to fill a batch; 0 = one frame period."),
    INT(engine, ring_slots, 2, 4096, "64", F_POW2, "Frames the capture ring holds."),
    INT(engine, max_failed_batches, 0, 1000000, "10", 0,
        "Batches the engine fails in a row before maad stops with exit status 1, "
        "for systemd to restart it; 0 = never."),
    INT(engine, max_age_ms, 0, 60000, "1000", 0,
        "A frame older than this (ms since capture) when the worker takes it from the "
        "ring is published uninspected, reason \"too old\", not judged late; 0 = no limit."),
    DBL(engine, test_delay_ms, 0, 60000, "0",
        "Test only: every batch takes this much longer (ring overflow, frames too old)."),
    CFG_END,
};

static const cfg_key mask_keys[] = {
    ENUM(mask, format, mask_names, "png", "Defect mask encoding in the verdict; none = no mask."),
    INT(mask, min_region_area, -1, 1000000, "-1", 0,
        "Smallest defect region kept, in model pixels; -1 = the calibration's."),
    CFG_END,
};

static const cfg_key publish_keys[] = {
    STR(publish, endpoint, "tcp://127.0.0.1:5555", NULL, 0,
        "ZeroMQ PUB endpoint of the verdicts.  The default serves this host only (a maa-plc "
        "beside maad); to serve the cell network bind its interface's address, e.g. "
        "tcp://10.0.0.5:5555, with CURVE (curve_secret_key) unless the network is closed."),
    INT(publish, sndhwm, 1, 1000000, "1000", 0,
        "ZeroMQ send high-water mark: verdicts queued for a subscriber that does not read, "
        "cut to subscriber_budget_mib."),
    INT(publish, subscriber_budget_mib, 1, 65536, "64", 0,
        "Memory, in MiB, that one subscriber's queue may hold: bounds what a subscriber that "
        "never reads costs maad."),
    STR(publish, curve_secret_key, "", "/etc/maad/keys/maad.key_secret", F_PATH,
        "maad's CURVE certificate with its secret key (maa keygen); empty = plain mode, no "
        "authentication or encryption."),
    STR(publish, curve_clients, "", "/etc/maad/clients", F_PATH,
        "With curve_secret_key: the directory of the public certificates (NAME.key) of the "
        "subscribers allowed to connect; reread on SIGHUP."),
    /* At most 750: the worker's loop may send a heartbeat up to a quarter
     * period late, and contract §8 wants one at least every second. */
    INT(publish, heartbeat_ms, 50, 750, "500", 0, "Interval of the heartbeat message."),
    CFG_END,
};

/* A shift's rejects and uninspected frames fit the defaults at a few
 * percent rejected (docs/operations.md sizes it); the queue rides out a
 * burst of rejects while the disk is slow, without holding much memory
 * (each record is a frame and a mask). */
static const cfg_key metrics_keys[] = {
    STR(metrics, listen, "", "127.0.0.1:9464", 0,
        "HOST:PORT where maad serves Prometheus metrics over HTTP (/metrics); empty = off.  "
        "Loopback for a Prometheus on this host; its cell-network address for one elsewhere."),
    CFG_END,
};

static const cfg_key archive_keys[] = {
    STR(archive, dir, "", NULL, F_PATH,
        "Reject archive: rejects, uninspected frames and sampled passes kept here; "
        "empty = none.  Made at start if its parent exists."),
    DBL(archive, max_bytes, 1000, 1e15, "10e9",
        "Budget in bytes of this camera's records; the oldest are deleted first."),
    INT(archive, max_files, 3, 1000000000, "100000", 0,
        "Budget in files of this camera's records (up to 3 a record)."),
    INT(archive, sample_passes, 0, 1000000000, "0", 0,
        "Keep one pass in this many too (for retraining); 0 = no passes."),
    INT(archive, queue, 1, 1024, "16", 0,
        "Records waiting for the disk; one more is dropped (counted and logged)."),
    CFG_END,
};

/* A window of a thousand parts averages the good parts' spread down to a
 * thirtieth of sigma, far inside a band of 0.3 of the way to T (0.9 sigma
 * at gamma 3), so a good line never raises it; ten minutes keep a slow
 * line's window recent.  A reject rate of 10 % is well above a working
 * line's and well below a failing one's. */
static const cfg_key drift_keys[] = {
    BOOL(drift, enabled, "true",
         "Watch the scores of the judged parts for drift (tool wear, lighting) and raise "
         "the drift alarm: a journal warning, the heartbeat's drift_alarm, a metric."),
    INT(drift, window_frames, 1, 1000000, "1000", 0,
        "The window the alarm watches: at most the last this many judged parts..."),
    DBL(drift, window_s, 1, 86400, "600",
        "...and of them only those captured in the last this many seconds."),
    INT(drift, min_frames, 1, 1000000, "50", 0,
        "Judged parts in the window (and passes, for the mean) before the alarm is raised "
        "or cleared; <= window_frames."),
    DBL(drift, mean_fraction, 0, 1, "0.3",
        "Alarm when the mean score of the passes in the window is beyond mu +- this "
        "fraction of T - mu (the calibration's mu and threshold T); 0 = not watched."),
    DBL(drift, reject_rate, 0, 1, "0.1",
        "Alarm when more than this share of the judged parts in the window are rejected; "
        "0 = not watched."),
    CFG_END,
};

/* Also maa-plc's log section (plc.c). */
const cfg_key cfg_log_keys[] = {
    INT(log, summary_interval_s, 1, 3600, "10", 0, "Interval of the summary log line."),
    ENUM(log, level, level_names, "info", "Lowest level logged."),
    CFG_END,
};

#define SECTION(s, rows) {.name = #s, .keys = rows, .off = offsetof(maad_config, s)}
static const cfg_section sections[] = {
    SECTION(camera, camera_keys),
    SECTION(replay, replay_keys),
    SECTION(model, model_keys),
    SECTION(engine, engine_keys),
    SECTION(mask, mask_keys),
    SECTION(publish, publish_keys),
    SECTION(log, cfg_log_keys),
    SECTION(archive, archive_keys),
    SECTION(metrics, metrics_keys),
    SECTION(drift, drift_keys),
};

static int check_rules(cfg_loader *L, const void *config)
{
    const maad_config *c = config;
    const maad_camera_config *cam = &c->camera;
    if (cfg_check_order(L, c, "camera", "reconnect_min_ms", "reconnect_max_ms") != MAA_OK ||
        cfg_check_order(L, c, "drift", "min_frames", "window_frames") != MAA_OK)
        return MAA_ERR;
    /* Half of CURVE is no security at all: a secret key without allowed
     * clients would refuse everyone, clients without a key allow anyone. */
    const maad_publish_config *pub = &c->publish;
    if (!pub->curve_secret_key[0] != !pub->curve_clients[0]) {
        const char *set = pub->curve_secret_key[0] ? "curve_secret_key" : "curve_clients";
        return cfg_fail(L, cfg_mark(L, "publish", 0, set),
                        "publish.curve_secret_key and publish.curve_clients go together: "
                        "set both for CURVE, neither for plain mode");
    }
    if (cam->source == MAAD_SOURCE_REPLAY && !c->replay.dir[0])
        return cfg_fail(L,
                        cfg_seen(L, "replay", 0, "dir") ? cfg_mark(L, "replay", 0, "dir")
                                                        : cfg_mark(L, "camera", 0, "source"),
                        "replay.dir is required when camera.source is replay");
    /* Frames come a period apart (the camera's free run, or maad's software
     * triggers): a shorter timeout would call every frame a lost camera.  A
     * hardware trigger has no frame timeout (a line may pause), a replay no
     * camera. */
    double period_ms = 1000.0 / cam->frame_rate;
    if (cam->source == MAAD_SOURCE_ARAVIS && cam->trigger != MAAD_TRIGGER_HARDWARE &&
        cam->timeout_ms > 0 && cam->timeout_ms < period_ms) {
        char rate[32], period[32];
        cfg_fmt_double(rate, sizeof rate, cam->frame_rate);
        snprintf(period, sizeof period, "%.1f", period_ms);
        size_t len = strlen(period);
        if (len > 2 && strcmp(period + len - 2, ".0") == 0)
            period[len - 2] = '\0';
        return cfg_fail(L, cfg_mark(L, "camera", 0, "timeout_ms"),
                        "camera.timeout_ms (%d) is shorter than the frame period of "
                        "camera.frame_rate (%s frames/s: %s ms); make it longer, or 0 to derive "
                        "it from the frame rate", cam->timeout_ms, rate, period);
    }
    return MAA_OK;
}

static const cfg_schema maad_schema = {
    .sections = sections,
    .nsections = sizeof sections / sizeof sections[0],
    .size = sizeof(maad_config),
    .outline = "camera:, model:, ...",
    .doc_header = "# maad configuration: every key with its default.\n"
                  "# Written by maad_config_write_doc() (config/config.c); do not edit by\n"
                  "# hand, change the key table and regenerate.  See docs/config.md.\n"
                  "# Relative paths (model.path, model.calibration, replay.dir, archive.dir)\n"
                  "# are resolved against the directory of this file.\n",
    .check = check_rules,
};

const char *maad_config_enum_name(const char *key, int value)
{
    return cfg_enum_name(&maad_schema, key, value);
}

int maad_pixel_format_channels(maad_pixel_format f) { return f == MAAD_PIX_MONO8 ? 1 : 3; }

int maad_config_check_channels(const maad_camera_config *cam, int channels,
                               const char *model_path, char *err, size_t errlen)
{
    if (channels != 1 || maad_pixel_format_channels(cam->pixel_format) == 1)
        return MAA_OK;
    snprintf(err, errlen, "camera.pixel_format %s gives colour frames, but the model %.200s "
             "is mono (1 channel); use Mono8 or a 3-channel model",
             maad_config_enum_name("camera.pixel_format", (int)cam->pixel_format), model_path);
    return MAA_ERR;
}

void maad_config_defaults(maad_config *c) { cfg_defaults(&maad_schema, c); }

int maad_config_load(const char *path, maad_config *c, char *err, size_t errlen)
{
    return cfg_load(&maad_schema, path, c, err, errlen);
}

void maad_config_dump(const maad_config *c, FILE *f) { cfg_dump(&maad_schema, c, f); }

void maad_config_write_doc(FILE *f) { cfg_write_doc(&maad_schema, f); }

void maad_config_write_table(FILE *f) { cfg_write_table(&maad_schema, f); }
