/* daemon.h — the daemon module's internal header: the capture -> worker frame
 * ring, the ZeroMQ verdict publisher, sd_notify and journald logging.  Shared
 * by maad (the daemon), maa (the tool) and maa-plc (the PLC bridge).
 *
 * Conventions as in engine/engine.h: MAA_OK / MAA_ERR, and a one-line reason
 * written into a caller-owned buffer (err, errlen; err may be NULL).
 * Times (t_*_ns) are CLOCK_REALTIME nanoseconds since the Unix epoch. */
#ifndef MAAD_DAEMON_H
#define MAAD_DAEMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"

/* ---- frame ring (ring.c) --------------------------------------------------
 * Single producer (the capture thread), single consumer (the worker), lock
 * free.  The producer never blocks: when every slot is full the frame is not
 * stored but recorded as dropped, and the run of dropped frames is attached
 * to the next slot it commits (slot->drops), so the consumer sees every
 * captured frame in capture order: first slot->drops, then the slot itself. */

typedef void *(*maad_alloc_fn)(size_t bytes, void *ctx);
typedef void (*maad_free_fn)(void *ptr, void *ctx);

typedef enum {
    MAAD_SLOT_FRAME = 0, /* pixels hold a frame */
    MAAD_SLOT_ERROR,     /* a frame the camera failed to deliver; see reason */
    MAAD_SLOT_DROPS_ONLY /* no frame: carries only drops (maad_ring_flush) */
} maad_slot_kind;

/* A run of consecutive frames that found the ring full. */
typedef struct {
    uint64_t count;                 /* 0: none */
    uint64_t first_id, last_id;     /* camera frame ids of the first/last */
    uint64_t first_t_ns, last_t_ns; /* their capture times */
} maad_drops;

/* Room for a verdict's reason, NUL included: an error of MAA_ERRLEN with the
 * camera module's and the daemon's wording around it (a failed reconnection
 * quotes Aravis's message whole).  Reasons are cut only beyond it. */
#define MAAD_REASON_SIZE (MAA_ERRLEN + 256)

typedef struct {
    uint64_t frame_id;      /* the camera's */
    uint64_t t_capture_ns;
    int width, height;
    uint32_t pixfmt;        /* the camera's pixel format code (PFNC) */
    size_t size;            /* bytes used in pixels */
    maad_slot_kind kind;
    char reason[MAAD_REASON_SIZE]; /* MAAD_SLOT_ERROR: why, e.g. "camera error: timeout" */
    maad_drops drops;       /* frames dropped just before this one */
    void *pixels;           /* slot_bytes, allocated at creation */
} maad_slot;

typedef struct maad_ring maad_ring;

/* nslots: a power of two >= 2.  alloc/free may be NULL (malloc/free); the
 * CUDA backend passes a pinned-memory pair.  Pixel buffers are 64-byte
 * aligned when the allocator's result is. */
int maad_ring_create(uint32_t nslots, size_t slot_bytes, maad_alloc_fn alloc,
                     maad_free_fn free_fn, void *alloc_ctx, maad_ring **out,
                     char *err, size_t errlen);
void maad_ring_free(maad_ring *r);
uint32_t maad_ring_size(const maad_ring *r);
size_t maad_ring_slot_bytes(const maad_ring *r);

/* Producer.  claim returns a free slot to fill (kind, frame_id, ... ; drops is
 * the ring's) or NULL when the ring is full; then call maad_ring_drop for
 * that frame.  commit publishes the claimed slot to the consumer. */
maad_slot *maad_ring_claim(maad_ring *r);
void maad_ring_commit(maad_ring *r);
void maad_ring_drop(maad_ring *r, uint64_t frame_id, uint64_t t_capture_ns);
/* Frames dropped and not yet attached to a slot. */
uint64_t maad_ring_pending_drops(const maad_ring *r);
/* At shutdown, from the producer: commit the pending drops in a
 * MAAD_SLOT_DROPS_ONLY slot.  MAA_OK when nothing is pending any more;
 * MAA_ERR when the ring is full (let the consumer drain, then call again). */
int maad_ring_flush(maad_ring *r);

/* Consumer.  ready: slots committed and not released; peek(i), i < ready, in
 * capture order; release(n), n <= ready, hands the n oldest back to the
 * producer (peek and release see only what the last ready or wait saw).  wait
 * sleeps (futex, no spinning) until a slot is ready, maad_ring_wake is
 * called, or timeout_ms passes (-1: no timeout); it returns ready.  The
 * producer pays a wake-up system call only while the consumer sleeps. */
uint32_t maad_ring_ready(maad_ring *r);
/* Any thread: slots committed and not yet released, as of the call. */
uint32_t maad_ring_occupancy(const maad_ring *r);
maad_slot *maad_ring_peek(maad_ring *r, uint32_t i);
void maad_ring_release(maad_ring *r, uint32_t n);
uint32_t maad_ring_wait(maad_ring *r, int timeout_ms);
/* From any thread (e.g. at shutdown): end the consumer's current wait. */
void maad_ring_wake(maad_ring *r);

/* The k-th (0 <= k < d->count) dropped frame's id and capture time.  Ids are
 * exact when the run is consecutive (the usual case), else only the first and
 * last are, and the others read MAAD_FRAME_ID_UNKNOWN; middle capture times
 * are interpolated.  Returns 1 when both values are the recorded ones, 0 when
 * either is not.  Only counts and the ends are kept so that a long overflow
 * costs the capture thread no memory. */
#define MAAD_FRAME_ID_UNKNOWN UINT64_MAX
int maad_drops_frame(const maad_drops *d, uint64_t k, uint64_t *frame_id,
                     uint64_t *t_capture_ns);

/* ---- verdict publisher (publish.c, contract §8, docs/protocol.md) ------------
 * The worker uses a publisher, and its keep-alive thread sends heartbeats
 * through it while the worker is in the engine; calls are serialized by a
 * lock.  Nothing here blocks: sends are ZMQ_DONTWAIT on a PUB socket whose
 * queue per subscriber is ZMQ_SNDHWM. */

typedef enum { MAAD_MASK_NONE = 0, MAAD_MASK_PNG, MAAD_MASK_RAW } maad_mask_format;
typedef enum { MAAD_PASS = 0, MAAD_REJECT, MAAD_UNINSPECTED } maad_outcome;

typedef struct {
    const char *endpoint;       /* e.g. "tcp://127.0.0.1:5555" */
    const char *camera;         /* topic is "maad.<camera>" */
    int sndhwm;                 /* messages queued per subscriber (>= 1) */
    maad_mask_format mask_format;
    int heartbeat_ms;           /* 1..1000; 0 means 1000 */
    /* Bytes one subscriber's queue may hold (0: no bound but sndhwm): the
     * queue is cut to the messages of the largest size a verdict of an
     * S x S mask (mask_side, the model's S) can have that fit in it. */
    size_t subscriber_budget;
    int mask_side;
    /* CURVE (both set) or plain (both NULL or ""): maad's certificate with
     * its secret key (NAME.key_secret), and the directory of the public
     * certificates (NAME.key) of the subscribers allowed to connect. */
    const char *curve_secret_key;
    const char *curve_clients;
    const struct maad_logger *log; /* subscribers allowed and refused; NULL: none logged */
} maad_pub_opts;

typedef struct {
    uint64_t frame_id;
    uint64_t t_capture_ns;
    maad_outcome verdict;
    const char *reason;         /* NULL: a default for the verdict */
    double score;               /* ignored (null) when uninspected */
    double threshold;
    /* The SHA-256 (64 hex digits) of the model file in force: the one that
     * judged the frame, or the one running when it was not judged.
     * Required. */
    const char *model;
    /* The decision (ignored, null, when uninspected): the rule, which
     * evidence exceeded its threshold (MAA_EVIDENCE_* bits), and the mask's
     * peak beside the pixel threshold. */
    maa_rule rule;
    int evidence;
    double mask_peak, mask_threshold;
    /* Defects, in model pixels of an S x S image made from a camera frame of
     * cam_width x cam_height (contract §1: resized per axis). */
    const maa_region *regions;
    int nregions;
    int model_size;             /* S */
    int cam_width, cam_height;
    const uint8_t *mask;        /* S x S, 0 or 255; NULL: no mask */
} maad_verdict;

typedef struct {
    uint64_t seq_next;          /* seq the next verdict gets */
    uint64_t pass, reject, uninspected;
    uint64_t send_dropped;      /* zmq_send refused (EAGAIN or error) */
    uint64_t mask_errors;       /* mask not encoded; sent with format none */
    uint64_t heartbeats;
    int queue_limit;            /* messages a subscriber's queue holds: sndhwm cut to the budget */
    int curve_keys;             /* CURVE: subscriber keys allowed; 0: plain */
    uint64_t curve_accepted;    /* CURVE handshakes allowed */
    uint64_t curve_refused;     /* CURVE handshakes refused (key not allowed, or not CURVE) */
} maad_pub_stats;

/* A named number the caller adds to each heartbeat's "stats" object: an
 * integer when it is one, else a real (null when not finite); with real
 * set, always a real, so that a rate's type does not change with its
 * value (0 is 0.0). */
typedef struct {
    const char *name;
    double value;
    int real;
} maad_stat;

typedef struct maad_pub maad_pub;

const char *maad_outcome_name(maad_outcome v);
/* MAA_EVIDENCE_* bits as a verdict's "evidence" list (a new jansson array),
 * for the publisher and the maa tools alike. */
struct json_t *maad_evidence_json(int evidence);
int maad_mask_format_parse(const char *name, maad_mask_format *out);
const char *maad_mask_format_name(maad_mask_format f);

/* Binds opts->endpoint; the reason on failure reads like
 * "publish.endpoint tcp://...:5555: Address already in use". */
int maad_pub_create(const maad_pub_opts *opts, maad_pub **out, char *err,
                    size_t errlen);
void maad_pub_free(maad_pub *p);
/* Publish one verdict with the next seq.  A message the socket refuses is
 * counted in send_dropped (its seq is spent, so subscribers see the gap);
 * MAA_ERR only for a bad argument (a verdict without a model, say). */
int maad_pub_verdict(maad_pub *p, const maad_verdict *v, char *err,
                     size_t errlen);
/* The same, with the verdict's seq and t_publish_ns into *seq and
 * *t_publish_ns (each may be NULL) when it was published: what the reject
 * archive writes beside the frame. */
int maad_pub_verdict_stamped(maad_pub *p, const maad_verdict *v, uint64_t *seq,
                             uint64_t *t_publish_ns, char *err, size_t errlen);
/* A verdict message's JSON object (docs/protocol.md), a new jansson object
 * (NULL when it cannot be made: a reason not in UTF-8), with the mask
 * described as mf (side model_size, or 0 with none): the one construction of
 * the publisher and of the reject archive. */
struct json_t *maad_verdict_json(const maad_verdict *v, const char *camera, uint64_t seq,
                                 uint64_t t_publish_ns, maad_mask_format mf);
/* Publish each frame of d as uninspected, reason "ring overflow", with the
 * threshold and model (SHA-256) in force. */
int maad_pub_drops(maad_pub *p, const maad_drops *d, double threshold, const char *model,
                   char *err, size_t errlen);
/* Call often (at least every heartbeat_ms; the worker calls it every loop
 * turn and after each wait): sends the heartbeat when it is due.  extra may
 * be NULL.  Returns 1 when a heartbeat was sent. */
int maad_pub_tick(maad_pub *p, uint64_t now_ns, const maad_stat *extra,
                  int nextra);
void maad_pub_get_stats(maad_pub *p, maad_pub_stats *s);
/* A model of another S is in force (maad's model swap): the queue limit
 * is made anew for subscribers that connect from now on; one connected
 * already keeps the limit it connected under (ZeroMQ fixes it per
 * connection). */
void maad_pub_set_mask_side(maad_pub *p, int mask_side);
/* Reads curve_clients again (maad's SIGHUP): keys added are allowed from
 * the next handshake, keys removed refused from the next one (a subscriber
 * connected already stays until it disconnects).  MAA_ERR, keeping the set
 * in force, when the directory cannot be read or holds a bad certificate;
 * plain mode: MAA_OK, nothing to read.  *nkeys: the keys now allowed. */
int maad_pub_reload_clients(maad_pub *p, int *nkeys, char *err, size_t errlen);
/* Whether an endpoint is reachable only from this host (tcp on 127.0.0.0/8,
 * ::1 or localhost, ipc, inproc): the condition under which plain mode is
 * safe without a closed cell network. */
int maad_endpoint_is_local(const char *endpoint);

/* ---- CURVE certificates and the ZAP handler (curve.c) -----------------------
 * Certificates are CZMQ's and pyzmq's text files: NAME.key holds
 * `public-key = "<40 characters of Z85>"`, NAME.key_secret also
 * `secret-key = "..."` (mode 0600).  The allowed subscribers are a directory
 * of NAME.key files. */

#define MAAD_CURVE_KEY_LEN 40

typedef struct {
    char public_key[MAAD_CURVE_KEY_LEN + 1];
    char secret_key[MAAD_CURVE_KEY_LEN + 1];    /* "" unless has_secret */
    int has_secret;
} maad_curve_cert;

/* A certificate's text (n bytes, path names it in messages): the keys must
 * be valid Z85 and a secret key must belong to the public key. */
int maad_curve_cert_parse(const char *text, size_t n, const char *path, maad_curve_cert *c,
                          char *err, size_t errlen);
/* The file at path; want_secret: it must hold the secret key, and not be
 * readable by others. */
int maad_curve_cert_load(const char *path, int want_secret, maad_curve_cert *c, char *err,
                         size_t errlen);
/* A new key pair as DIR/NAME.key (0644) and DIR/NAME.key_secret (0600);
 * existing files are never replaced. */
int maad_curve_cert_write(const char *dir, const char *name, maad_curve_cert *c, char *err,
                          size_t errlen);
/* Makes sock (SUB) a CURVE client of the server whose public certificate
 * is server_key, as the client certificate client_cert (with its secret). */
int maad_curve_client(void *sock, const char *server_key, const char *client_cert, char *err,
                      size_t errlen);

/* A subscriber's handshakes with its endpoint, to tell the user why no
 * verdict comes (maa watch, maa-plc).  open watches sock's handshakes
 * through a PAIR socket of ctx, monitor, to poll for ZMQ_POLLIN beside sock
 * (close before sock).  poll, after such an event or on any loop turn,
 * reads the events and, libzmq giving up on an endpoint whose handshake
 * failed, connects sock to endpoint again a second after a failure (so
 * that a key maad allows later is followed).  It returns
 * MAAD_HANDSHAKE_FAILED with "ENDPOINT: why" for a failure not reported
 * yet (one repeating at each retry is reported once), MAAD_HANDSHAKE_OK
 * when one succeeds after a reported failure, 0 when there is nothing to
 * report; call it until it returns 0.  now: CLOCK_MONOTONIC ns. */
enum { MAAD_HANDSHAKE_FAILED = 1, MAAD_HANDSHAKE_OK = 2 };
typedef struct {
    void *monitor;
    char failed[MAA_ERRLEN];    /* the failure last reported; "" since a success */
    uint64_t retry_at;          /* 0: no retry pending */
} maad_handshakes;
int maad_handshakes_open(maad_handshakes *h, void *ctx, void *sock, char *err, size_t errlen);
int maad_handshakes_poll(maad_handshakes *h, void *sock, const char *endpoint, uint64_t now,
                         char *why, size_t n);
void maad_handshakes_close(maad_handshakes *h);

/* The ZAP handler: answers the CURVE handshakes of sockets in ctx, allowing
 * the keys of clients_dir.  Start it before such a socket binds. */
typedef struct maad_zap maad_zap;
int maad_zap_start(void *ctx, const char *clients_dir, const struct maad_logger *log,
                   maad_zap **out,
                   char *err, size_t errlen);
int maad_zap_reload(maad_zap *z, int *nkeys, char *err, size_t errlen);
/* The keys allowed now, and the handshakes allowed and refused so far. */
void maad_zap_counts(maad_zap *z, int *keys, uint64_t *accepted, uint64_t *refused);
void maad_zap_stop(maad_zap *z);
/* CLOCK_REALTIME, for the messages' times; CLOCK_MONOTONIC, for durations. */
uint64_t maad_now_ns(void);
uint64_t maad_mono_ns(void);

/* ---- systemd notification (notify.c) --------------------------------------
 * Thin sd_notify wrappers; each is a no-op when NOTIFY_SOCKET is unset.
 * They return what sd_notify does: > 0 sent, 0 no socket, < 0 -errno. */
int maad_notify_ready(void);
int maad_notify_status(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
int maad_notify_watchdog(void);
int maad_notify_stopping(void);
/* The watchdog interval in microseconds when systemd expects pings for this
 * process (WATCHDOG_USEC and WATCHDOG_PID), else 0.  Ping at half of it. */
uint64_t maad_notify_watchdog_usec(void);

/* ---- logging (log.c) ------------------------------------------------------
 * Under systemd (JOURNAL_STREAM names our stderr, or INVOCATION_ID is set)
 * and with journald's socket present, records go to the journal with
 * structured fields (MESSAGE, PRIORITY, MAAD_CAMERA, and for verdicts
 * MAAD_SEQ, MAAD_FRAME_ID, MAAD_VERDICT, MAAD_SCORE, MAAD_THRESHOLD,
 * MAAD_MODEL);
 * otherwise to stderr as "<time> <program>[pid]: <level>: message", the time in
 * ISO 8601 UTC with milliseconds ("2026-11-28T10:15:30.123Z").  Levels are
 * syslog priorities.  A logger is read-only after init: threads may share
 * one. */

typedef enum {
    MAAD_LOG_ERR = 3,
    MAAD_LOG_WARNING = 4,
    MAAD_LOG_NOTICE = 5,
    MAAD_LOG_INFO = 6,
    MAAD_LOG_DEBUG = 7
} maad_log_level;

typedef struct maad_logger {
    maad_log_level level;   /* records above (less severe than) it are dropped */
    int journal;            /* 1: sd_journal_send, 0: stderr */
    char camera[64];        /* MAAD_CAMERA field; "" for none */
    const char *program;    /* names the stderr lines; "maad" unless changed after init */
} maad_logger;

/* "debug", "info", "notice", "warning" (also "err"). */
int maad_log_level_parse(const char *name, maad_log_level *out);
const char *maad_log_level_name(maad_log_level l);
/* The level of the configuration's log.level (a maad_cfg_log_level, from
 * config/config.h: debug, info, notice, warning). */
maad_log_level maad_log_level_of(int cfg_level);
/* Picks the journal or stderr from the environment (see above). */
void maad_log_init(maad_logger *lg, const char *camera, maad_log_level level);
void maad_log(const maad_logger *lg, maad_log_level l, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void maad_vlog(const maad_logger *lg, maad_log_level l, const char *fmt,
               va_list ap);
/* A record with extra journal fields, each "NAME=value" (at most 10). */
void maad_log_fields(const maad_logger *lg, maad_log_level l, const char *const *fields,
                     int nfields, const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* One verdict: pass at debug, reject at notice, uninspected at warning, with
 * MAAD_SEQ, MAAD_FRAME_ID, MAAD_VERDICT, MAAD_REASON, MAAD_THRESHOLD and
 * MAAD_MODEL (the model's SHA-256) fields, and when judged MAAD_SCORE,
 * MAAD_MASK_PEAK and MAAD_PIXEL_THRESHOLD.  A
 * verdict of MAAD_FRAME_ID_UNKNOWN reads "frame ?" and has no
 * MAAD_FRAME_ID. */
void maad_log_verdict(const maad_logger *lg, uint64_t seq, const maad_verdict *v);

/* ---- reject archive (archive.c, docs/operations.md "Reject archive") ------
 * Every reject and uninspected frame, and one pass in sample_passes, kept in
 * a directory as records of up to three files sharing a stem
 *     <capture time, YYYYMMDDTHHMMSS.ffffffZ>-<camera>-<seq, 12 digits>-<why>
 * (STEM.png the frame, STEM.mask.png the mask, STEM.json the verdict, written
 * last: its presence marks a complete record), within a budget of bytes and
 * files: the oldest records (by name) are deleted first, before a new one is
 * written, so the budget holds at every moment.  A record is counted and
 * deleted only by the maad of its camera, so cameras may share a directory,
 * each within its own budget.
 *
 * The worker hands records over with maad_archive_put, which never waits
 * for the disk: it copies the verdict, frame and mask into one of `queue`
 * preallocated records, or, with none free, counts and logs the record as
 * dropped.  The archive's own thread encodes the PNGs and writes; a write
 * that fails (disk full, read-only, directory gone) is counted and logged,
 * once per run of failures, and the archive goes on with the next record. */

typedef struct {
    const char *dir;            /* the directory; created when its parent exists */
    const char *camera;         /* the stems' camera name ([A-Za-z0-9_-]) */
    uint64_t max_bytes;         /* the budget: bytes of the camera's records */
    uint64_t max_files;         /* and their files (each record 1 to 3) */
    int sample_passes;          /* one pass in this many is kept; 0: none */
    int queue;                  /* records waiting for the disk (>= 1) */
    size_t frame_bytes;         /* the largest frame (8-bit pixels) to keep */
    int mask_side;              /* the model's S (masks S x S) */
    const maad_logger *log;
} maad_archive_opts;

typedef struct {
    uint64_t written;           /* records written since the start */
    uint64_t written_bytes;     /* their bytes */
    uint64_t records, bytes, files; /* the camera's records in the directory now */
    uint64_t dropped;           /* not written: no free record in the queue */
    uint64_t failed;            /* not written: the disk failed (see the log) */
    uint64_t refused;           /* not written: larger than the budget alone */
    uint64_t deleted;           /* records deleted to stay within the budget */
    uint64_t queued;            /* waiting for the disk now */
    uint64_t max_bytes, max_files; /* the budget */
} maad_archive_stats;

typedef struct maad_archive maad_archive;

/* Whether opts->dir can hold the archive, without changing anything (for
 * maad --check-config): a writable directory, or one that does not exist in
 * a writable directory.  The reason reads "archive.dir /x: ...". */
int maad_archive_check_dir(const char *dir, char *err, size_t errlen);
/* Creates the directory when its parent exists, scans it: removes this
 * camera's torn records (files without their STEM.json) and temporaries,
 * counts its records and deletes the oldest beyond the budget; then starts
 * the archive's thread. */
int maad_archive_open(const maad_archive_opts *o, maad_archive **out, char *err,
                      size_t errlen);
/* Writes what is queued, stops the thread, fills *st (may be NULL) with the
 * last counts, frees a (may be NULL). */
void maad_archive_close(maad_archive *a, maad_archive_stats *st);
/* One thread at a time (the worker): keeps v (published with seq at
 * t_publish_ns) when its outcome is archived, with its frame (8-bit, 1 or 3
 * channels; NULL when the frame never arrived) and v->mask.  Never waits for
 * the disk.  Returns 1 when queued, 0 when not archived (a pass not
 * sampled), -1 when dropped (counted and logged). */
int maad_archive_put(maad_archive *a, const maad_verdict *v, uint64_t seq,
                     uint64_t t_publish_ns, const maa_image *frame);
/* Any thread. */
void maad_archive_get_stats(maad_archive *a, maad_archive_stats *st);
/* "archive: written N (B bytes), ..." for the summary and final lines. */
void maad_archive_stats_line(const maad_archive_stats *st, char *buf, size_t n);

/* ---- drift alarm (drift.c, docs/operations.md "Drift alarm") -----------------
 * Rolling statistics of the judged frames: the last window_frames of them,
 * and of those only the ones captured within window_s of the newest.  The
 * alarm has two causes, each raised and cleared on its own:
 *   MAAD_DRIFT_MEAN     the mean score of the passes in the window is
 *                       beyond mu +- mean_fraction * (T - mu), either way
 *                       (mu and T the calibration's);
 *   MAAD_DRIFT_REJECTS  rejects / judged frames in the window is above
 *                       reject_rate.
 * Each clears once its value is back within half its band (hysteresis).
 * Nothing is judged, and the state stands, while the window holds fewer
 * than min_frames frames (the mean: passes).  Not thread-safe: one thread
 * feeds it and reads it (the worker, which shares the state it reads). */

enum { MAAD_DRIFT_MEAN = 1, MAAD_DRIFT_REJECTS = 2 };

typedef struct {
    int window_frames;          /* >= 1 */
    double window_s;            /* > 0 */
    int min_frames;             /* 1..window_frames */
    double mean_fraction;       /* >= 0; 0: the mean not watched */
    double reject_rate;         /* 0..1; 0: the reject rate not watched */
} maad_drift_opts;

/* The state, for the log, the heartbeat and the metrics endpoint. */
typedef struct {
    int alarm;                  /* MAAD_DRIFT_* bits raised now; 0: quiet */
    int judging;                /* the window holds min_frames frames */
    int frames, passes, rejects; /* in the window */
    double mean;                /* of the passes' scores in the window; NaN: no pass */
    double reject_rate;         /* rejects / frames; NaN: no frame */
    double mu, threshold;       /* the baseline: the calibration in force */
    double mean_low, mean_high; /* the mean's alarm band; NaN: not watched */
    double mean_clear_low, mean_clear_high; /* where a mean alarm clears */
    double reject_limit, reject_clear;      /* NaN: not watched */
    int window_frames, min_frames;
    double window_s;
    uint64_t raised_mean, raised_rejects;   /* alarms raised since the start */
} maad_drift_state;

typedef struct maad_drift maad_drift;

int maad_drift_create(const maad_drift_opts *o, double mu, double threshold, maad_drift **out,
                      char *err, size_t errlen);
void maad_drift_free(maad_drift *d);
/* A new baseline (another calibration or model): the window is emptied
 * and the alarm cleared, the raised counts kept. */
void maad_drift_reset(maad_drift *d, double mu, double threshold);
/* A judged frame captured at t_ns: a reject, or a pass with its score.
 * Returns the MAAD_DRIFT_* bits that changed (raised or cleared: see
 * maad_drift_get's alarm); 0 when none did. */
int maad_drift_add(maad_drift *d, uint64_t t_ns, int reject, double score);
void maad_drift_get(const maad_drift *d, maad_drift_state *s);
/* What it watches, for a log line: "the last 1000 judged parts of at most
 * 600 s, from 50 of them: the passes' mean score within 0.91..1.09 (mu 1,
 * threshold 1.3), at most 10 % rejected". */
void maad_drift_describe(const maad_drift *d, char *buf, size_t n);

/* ---- capture hand-off and the inspection worker (worker.c) ---------------
 * The capture thread hands every camera event to maad_worker_frame or
 * maad_worker_camera_error; neither blocks (a full ring counts the frame as
 * dropped).  The worker thread takes frames from the ring in capture order,
 * batches them (up to batch_max, or batch_timeout_ms after the first),
 * preprocesses and judges them, and publishes exactly one verdict per
 * captured frame in capture order: frames it could not or would not judge
 * (ring overflow, older than max_age_ms, camera error, preprocessing or
 * engine error) as uninspected with a reason.  Each batch is judged by one
 * model; a new calibration or model is taken between two batches.
 * It also sends the heartbeats, the periodic summary (log line and sd_notify
 * STATUS) and the watchdog pings. */

/* A ring slot as an image maa_preprocess reads; buf (buf_bytes: the engine's
 * frame buffer, maa_inspector_frame_bytes, or the worker's scratch, the
 * ring's slot size times 3) may hold converted pixels, e.g. demosaiced Bayer;
 * img may also point into the slot. */
typedef int (*maad_image_fn)(const maad_slot *s, maa_image *img, void *buf,
                             size_t buf_bytes, char *err, size_t errlen);

/* The model the worker judges with. */
typedef struct {
    maa_inspector *inspector;   /* created with max_batch >= batch_max */
    int image_size, channels;   /* the model's S and C */
    const char *sha256;         /* the model file's (64 hex digits), copied: each
                                   verdict carries it */
} maad_worker_model;

typedef struct {
    maad_ring *ring;            /* the worker is its only consumer */
    maad_pub *pub;              /* the worker's (and its keep-alive thread's) */
    /* Where the worker hands rejects, uninspected frames and sampled passes
     * with their frames; NULL: no archive.  With one, the worker keeps each
     * batched frame's pixels until its verdict. */
    maad_archive *archive;
    maad_worker_model model;    /* to start with */
    maa_calibration cal;        /* threshold and mask parameters to start with */
    maad_image_fn to_image;
    /* The largest image to_image makes of the camera's frames (a Mono8
     * frame's own size, a Bayer frame's three times it): the size of the
     * buffers that keep the frames for the archive.  0: three ring slots,
     * what any frame of a slot converts into. */
    size_t image_bytes;
    int batch_max;              /* 1..64 */
    double batch_timeout_ms;    /* > 0 */
    /* A frame older than this (capture to the worker taking it from the
     * ring) is published uninspected, "too old: ...", not judged: a verdict
     * that late is of no use to a reject gate.  0: no limit. */
    int max_age_ms;
    double test_delay_ms;       /* added to every batch (tests only) */
    /* Tests only: called on the worker thread, with user, while each batch
     * is in the engine (after test_delay_ms): a calibration set from here
     * arrives as maad's SIGHUP does during a slow batch.  NULL: none. */
    void (*test_in_engine)(void *user);
    int heartbeat_ms;           /* the publisher's; the worker ticks 4x as often */
    int summary_interval_s;     /* summary log line and STATUS; 0: none */
    const maad_logger *log;
    /* After max_failed_batches batches in a row that the engine failed (0:
     * never), on_failing(user, that count, the last failure's reason) once,
     * on the worker thread; the worker goes on publishing every frame. */
    int max_failed_batches;
    void (*on_failing)(void *user, int batches, const char *why);
    void *user;
    /* The drift alarm over the judged frames, against the calibration in
     * force (a new one, or a new model, starts its window again);
     * window_frames 0: none. */
    maad_drift_opts drift;
} maad_worker_opts;

typedef struct {
    uint64_t captured;          /* camera events handed over: frames + errors */
    uint64_t pass, reject, uninspected;
    uint64_t overflow;          /* uninspected: the ring was full */
    uint64_t too_old;           /* uninspected: older than max_age_ms */
    uint64_t camera_errors;     /* uninspected: the camera failed the frame */
    uint64_t engine_errors;     /* uninspected: preprocessing or engine failed */
    uint64_t batches;
    uint64_t send_dropped;      /* verdicts the socket refused (seq spent) */
    uint64_t heartbeats;
    uint64_t calibrations;      /* calibrations swapped in after the start */
    uint64_t models;            /* models swapped in after the start */
} maad_worker_stats;

/* A histogram for the metrics endpoint: bucket[i] counts the values up to
 * the i-th bound of its kind (maad_*_le) and above the one before, the
 * last bucket those above every bound; count and sum of all values. */
#define MAAD_HIST_MAX 16
typedef struct {
    uint64_t bucket[MAAD_HIST_MAX];
    uint64_t count;
    double sum;
} maad_hist;

#define MAAD_BATCH_LE 7     /* frames in a batch the engine judged */
#define MAAD_LATENCY_LE 11  /* seconds from capture to publication, every verdict */
#define MAAD_ENGINE_LE 12   /* seconds in the engine, a batch */
extern const double maad_batch_le[MAAD_BATCH_LE];
extern const double maad_latency_le[MAAD_LATENCY_LE];
extern const double maad_engine_le[MAAD_ENGINE_LE];

/* What the worker has done so far, read from another thread (the metrics
 * endpoint's): counts as maad_worker_stop gives them (those other threads
 * keep read fresh, the worker's own as of its last batch or loop turn), the
 * histograms, the model and threshold in force, the ring's use and the
 * drift alarm's state. */
typedef struct {
    maad_worker_stats st;
    maad_hist batch, latency, engine;
    char model[65];
    double threshold;
    uint32_t ring_slots, ring_used;
    int drift_on;               /* 0: no drift alarm (drift.window_frames 0) */
    maad_drift_state drift;
} maad_worker_live;

typedef struct maad_worker maad_worker;

int maad_worker_start(const maad_worker_opts *o, maad_worker **out, char *err,
                      size_t errlen);
/* Capture thread only. */
void maad_worker_frame(maad_worker *w, uint64_t frame_id, uint64_t t_capture_ns,
                       int width, int height, uint32_t pixfmt,
                       const void *pixels, size_t size);
void maad_worker_camera_error(maad_worker *w, uint64_t frame_id,
                              uint64_t t_capture_ns, const char *reason);
/* Any thread: the worker judges the batches it starts from now on with c. */
void maad_worker_set_calibration(maad_worker *w, const maa_calibration *c);
/* Any thread but the worker's, until maad_worker_stop: the worker judges
 * with m and its calibration c from its next batch on, and drops a
 * calibration set before.  The frames it has batched already are judged
 * first, by the model they were batched for: a batch is never split
 * between two models.  Returns once the worker has taken m (at most one
 * batch in the engine later): *old is the inspector m replaced, for the
 * caller to free, with its model, now that nothing uses them; *first_seq
 * the seq of the first verdict under m.  MAA_ERR, the worker keeping its
 * model, when m is not valid or its batch finds no memory. */
int maad_worker_set_model(maad_worker *w, const maad_worker_model *m, const maa_calibration *c,
                          maa_inspector **old, uint64_t *first_seq, char *err, size_t errlen);
/* Any thread, from maad_worker_start until maad_worker_stop. */
void maad_worker_get_live(maad_worker *w, maad_worker_live *out);
/* After the capture thread has stopped for good: hands the pending drops
 * over, lets the worker publish everything in flight, joins it and fills
 * *st with the final counts.  Then maad_worker_free. */
void maad_worker_stop(maad_worker *w, maad_worker_stats *st);
void maad_worker_free(maad_worker *w);
/* The final stats line maad prints and the tests read. */
void maad_worker_stats_line(const maad_worker_stats *st, char *buf, size_t n);

/* ---- the metrics endpoint (metrics.c, docs/operations.md "Metrics") ----------
 * Prometheus's text exposition format over HTTP: GET (or HEAD) /metrics is
 * answered, on libmicrohttpd's own thread, with what collect writes into a
 * maad_text; other paths 404, other methods 405.  collect runs on that
 * thread: it must only read what other threads hand out safely. */

typedef struct maad_text maad_text;
typedef struct maad_metrics maad_metrics;
typedef void (*maad_collect_fn)(void *user, maad_text *t);

void maad_text_printf(maad_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The # HELP and # TYPE lines of a metric family. */
void maad_metric_head(maad_text *t, const char *name, const char *type, const char *help);
/* name{labels} value; labels: `camera="cam0",verdict="pass"`, never empty. */
void maad_metric(maad_text *t, const char *name, const char *labels, double v);
/* A histogram's _bucket (cumulative, le = each of le[n], then +Inf), _sum
 * and _count lines. */
void maad_metric_hist(maad_text *t, const char *name, const char *labels, const maad_hist *h,
                      const double *le, int n);
/* listen: "HOST:PORT" (an IPv4 address or name, or [IPv6]); the reason on
 * failure names metrics.listen. */
struct sockaddr_storage;
int maad_metrics_address(const char *listen, struct sockaddr_storage *addr,
                         unsigned *len, char *err, size_t errlen);
int maad_metrics_start(const char *listen, maad_collect_fn collect, void *user,
                       const struct maad_logger *log, maad_metrics **out, char *err,
                       size_t errlen);
void maad_metrics_stop(maad_metrics *m);

#endif
