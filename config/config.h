/* config.h — the daemon's configuration: a two-level YAML file
 * (`section: {key: value}`) read through one table of keys, each row holding
 * the key's name, type, bounds, default, target field and a one-line doc.
 * This is the config module's only public header.
 *
 * Functions that can fail return MAA_OK (0) or MAA_ERR (-1), the engine's
 * status codes (engine/engine.h), and write a one-line reason into the
 * caller's buffer (err, errlen; err may be NULL).  Load errors read
 * "FILE:LINE:COL: message" (1-based; see docs/config.md). */
#ifndef MAAD_CONFIG_H
#define MAAD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Buffer sizes, terminating NUL included. */
#define MAAD_NAME_SIZE 33   /* camera.name: 1..32 of [A-Za-z0-9_-] */
#define MAAD_STR_SIZE 256   /* other strings: at most 255 bytes */
#define MAAD_PATH_SIZE 4096 /* paths, after resolution against the file's dir */

typedef enum { MAAD_SOURCE_ARAVIS = 0, MAAD_SOURCE_REPLAY } maad_source;

typedef enum {
    MAAD_PIX_MONO8 = 0,
    MAAD_PIX_RGB8,
    MAAD_PIX_BAYER_RG8,
    MAAD_PIX_BAYER_GR8,
    MAAD_PIX_BAYER_GB8,
    MAAD_PIX_BAYER_BG8
} maad_pixel_format;

typedef enum { MAAD_TRIGGER_FREE = 0, MAAD_TRIGGER_SOFTWARE, MAAD_TRIGGER_HARDWARE } maad_trigger;

/* Value for value the engine's maa_backend_kind / maa_precision, so a cast
 * converts them (test_config checks it against maa_backend_name). */
typedef enum {
    MAAD_BACKEND_AUTO = 0,
    MAAD_BACKEND_REF,
    MAAD_BACKEND_CPU,
    MAAD_BACKEND_CUDA
} maad_backend;
typedef enum { MAAD_PREC_DEFAULT = 0, MAAD_PREC_F32, MAAD_PREC_F16, MAAD_PREC_BF16 } maad_precision;

typedef enum { MAAD_CFG_MASK_PNG = 0, MAAD_CFG_MASK_RAW, MAAD_CFG_MASK_NONE } maad_cfg_mask_format;

typedef enum {
    MAAD_CFG_LOG_DEBUG = 0,
    MAAD_CFG_LOG_INFO,
    MAAD_CFG_LOG_NOTICE,
    MAAD_CFG_LOG_WARNING
} maad_cfg_log_level;

/* Zero in a "0 = ..." field below means the special meaning, not a value. */
typedef struct {
    char name[MAAD_NAME_SIZE];       /* topic maad.<name> */
    maad_source source;
    char device_id[MAAD_STR_SIZE];   /* "" = first camera found */
    maad_pixel_format pixel_format;
    int width, height;               /* 0 = sensor maximum */
    int offset_x, offset_y;
    double exposure_us;              /* 0 = leave the camera's setting */
    double gain_db;                  /* -1 = leave the camera's setting */
    double frame_rate;               /* free run, or maad's software triggers */
    maad_trigger trigger;
    char trigger_source[MAAD_STR_SIZE];
    int packet_size;                 /* 0 = negotiate */
    bool packet_socket;
    int stream_buffers;
    int timeout_ms;                  /* 0 = derived from the frame rate */
    int reconnect_min_ms, reconnect_max_ms;
    int realtime_priority;           /* 0 = normal scheduling */
} maad_camera_config;

typedef struct {
    char dir[MAAD_PATH_SIZE];
    double fps;
    bool loop;
} maad_replay_config;

/* Value for value the engine's maa_rule. */
typedef enum { MAAD_RULE_EITHER = 0, MAAD_RULE_SCORE, MAAD_RULE_MASK } maad_rule;

typedef struct {
    char path[MAAD_PATH_SIZE];
    char calibration[MAAD_PATH_SIZE];
    maad_rule rule;                  /* which evidence rejects a part */
    double gamma;                    /* meaningful only when has_gamma */
    bool has_gamma;                  /* false: use the calibration's gamma */
} maad_model_config;

typedef struct {
    maad_backend backend;
    maad_precision precision;
    int threads;                     /* 0 = all cores */
    int device;
    int batch_max;
    double batch_timeout_ms;         /* 0 = one frame period */
    int ring_slots;                  /* a power of two */
    int max_failed_batches;          /* 0 = never give up */
    int max_age_ms;                  /* 0 = no limit */
    double test_delay_ms;            /* test only */
} maad_engine_config;

typedef struct {
    maad_cfg_mask_format format;
    int min_region_area;             /* -1 = the calibration's */
} maad_mask_config;

typedef struct {
    char endpoint[MAAD_STR_SIZE];
    int sndhwm;
    int subscriber_budget_mib;
    char curve_secret_key[MAAD_PATH_SIZE];  /* "" = plain mode */
    char curve_clients[MAAD_PATH_SIZE];     /* a directory of NAME.key */
    int heartbeat_ms;
} maad_publish_config;

typedef struct {
    int summary_interval_s;
    maad_cfg_log_level level;
} maad_log_config;

/* The reject archive (docs/operations.md, "Reject archive"). */
typedef struct {
    char dir[MAAD_PATH_SIZE];        /* "" = no archive */
    double max_bytes;                /* the budget: bytes of this camera's records */
    int max_files;                   /* and their files */
    int sample_passes;               /* one pass in N kept; 0 = none */
    int queue;                       /* records waiting for the disk */
} maad_archive_config;

typedef struct {
    char listen[MAAD_STR_SIZE];      /* HOST:PORT of /metrics; "" = off */
} maad_metrics_config;

/* The drift alarm (docs/operations.md, "Drift alarm"). */
typedef struct {
    bool enabled;
    int window_frames;               /* the last N judged parts */
    double window_s;                 /* and of those, the last W seconds' */
    int min_frames;                  /* judged parts before the alarm judges */
    double mean_fraction;            /* 0 = the mean not watched */
    double reject_rate;              /* 0 = the reject rate not watched */
} maad_drift_config;

typedef struct maad_config {
    maad_camera_config camera;
    maad_replay_config replay;
    maad_model_config model;
    maad_engine_config engine;
    maad_mask_config mask;
    maad_publish_config publish;
    maad_log_config log;
    maad_archive_config archive;
    maad_metrics_config metrics;
    maad_drift_config drift;
} maad_config;

/* The name of an enum value as the file writes it, e.g. "Mono8" for
 * ("camera.pixel_format", MAAD_PIX_MONO8); NULL when key is not an enum key
 * or value is out of range. */
const char *maad_config_enum_name(const char *key, int value);

/* Channels of the frames camera.pixel_format gives the engine: 1 for
 * Mono8, 3 for RGB8 and the Bayer formats (demosaiced to RGB). */
int maad_pixel_format_channels(maad_pixel_format f);

/* Whether a model of `channels` channels can judge this camera's frames
 * (contract §1): a gray frame feeds a 3-channel model replicated, but a
 * colour frame is refused by a 1-channel one, so every frame would be
 * published uninspected.  The check maad makes at start-up and maa compare
 * makes of a candidate model.  MAA_ERR, with a reason naming model_path,
 * when it cannot. */
int maad_config_check_channels(const maad_camera_config *cam, int channels,
                               const char *model_path, char *err, size_t errlen);

/* Every key at its default; required keys (camera.name, model.path,
 * model.calibration) empty. */
void maad_config_defaults(maad_config *c);

/* Defaults, then the file at path.  Relative model.path, model.calibration,
 * replay.dir and archive.dir are made absolute against the directory of
 * path.  On error
 * *c is left untouched and err reads "FILE:LINE:COL: message" (or
 * "FILE: message" when the file cannot be read). */
int maad_config_load(const char *path, maad_config *c, char *err, size_t errlen);

/* Effective configuration, one "section.key = value" line per key in table
 * order (strings double-quoted, an absent optional key as "(unset)"). */
void maad_config_dump(const maad_config *c, FILE *f);

/* The documented example configuration: every key with its doc, type,
 * bounds and default.  config/maad.example.yaml is exactly this output. */
void maad_config_write_doc(FILE *f);

/* The key table as Markdown (the one in docs/config.md). */
void maad_config_write_table(FILE *f);

/* ---- maa-plc, the PLC bridge (docs/plc.md) ------------------------------
 * A second file format read by the same loader: sections line, plc and log
 * as above, and `cameras`, a sequence of mappings (one per maad instance,
 * 1..MAA_PLC_MAX_CAMERAS of them, in the order the register map's camera
 * bits follow). */

#define MAA_PLC_MAX_CAMERAS 16 /* one bit each in a 16-bit register */

typedef struct {
    char name[MAAD_NAME_SIZE];       /* the maad's camera.name: topic maad.<name> */
    char endpoint[MAAD_STR_SIZE];    /* ZeroMQ endpoint to connect, e.g. tcp://host:5555 */
    int offset;                      /* stations downstream of the first camera (0..) */
    char server_key[MAAD_PATH_SIZE]; /* that maad's public certificate; "" = plain */
} maa_plc_camera_config;

typedef struct {
    char name[MAAD_NAME_SIZE];       /* names the line in logs */
    int deadline_ms;                 /* a verdict later than capture + this is missing */
    double sync_tolerance_ms;        /* capture times of one trigger differ by at most this */
    int heartbeat_timeout_ms;        /* no message from a maad for this long: it is down */
    char curve_key[MAAD_PATH_SIZE];  /* maa-plc's certificate with its secret; "" = none */
} maa_plc_line_config;

typedef struct {
    char address[MAAD_STR_SIZE];     /* the PLC's host name or IPv4 address */
    int port;
    int unit_id;
    int mailbox_register;            /* first of the 10 holding registers */
    int healthy_coil;
    int reject_coil;
    int response_timeout_ms;         /* one Modbus request */
    int ack_timeout_ms;              /* PLC silent this long: warn (results keep queueing) */
    int health_period_ms;            /* health word increment period */
    int reconnect_min_ms, reconnect_max_ms;
    int queue;                       /* results held while the PLC does not take them */
    int late_ms;                     /* 0 = never late; else older than this is late */
    int pulse_delay_ms;              /* 0 = no reject pulse */
    int pulse_width_ms;
    bool dry_run;                    /* log decisions, never connect */
} maa_plc_bus_config;

typedef struct maa_plc_config {
    maa_plc_line_config line;
    maa_plc_bus_config plc;
    maa_plc_camera_config cameras[MAA_PLC_MAX_CAMERAS];
    int ncameras;
    maad_log_config log;
} maa_plc_config;

/* As maad_config_* above.  Defaults: no cameras, plc.address empty.  The
 * dump writes an entry's keys as "cameras[0].name = ...". */
void maa_plc_config_defaults(maa_plc_config *c);
int maa_plc_config_load(const char *path, maa_plc_config *c, char *err, size_t errlen);
void maa_plc_config_dump(const maa_plc_config *c, FILE *f);
/* config/maa-plc.example.yaml is exactly this output. */
void maa_plc_config_write_doc(FILE *f);
/* The key table as Markdown (the one in docs/plc.md). */
void maa_plc_config_write_table(FILE *f);

#endif
