/* camera.h — maad's image sources: a GigE Vision (or USB3 Vision) camera
 * through Aravis, or a directory of images replayed at a fixed rate, plus an
 * in-process fake GigE Vision camera for tests and demos.  This is the
 * module's only public header; no Aravis or GLib type appears here.
 *
 * A source runs one capture thread (and a trigger thread for a software
 * trigger at a rate) and hands every frame, incomplete frame, gap in the
 * camera's frame ids and error to a callback, on the capture thread.  The module knows
 * nothing of the daemon.  Functions return MAA_OK / MAA_ERR and write a
 * one-line reason into the caller's buffer (err may be NULL).  See
 * docs/camera.md. */
#ifndef MAA_CAMERA_H
#define MAA_CAMERA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"

/* cam_start's status when the thread runs but without the realtime priority
 * asked for; err says why. */
enum { CAM_WARN = 1 };

/* An event's reason is shorter than this: an error of MAA_ERRLEN (Aravis's
 * message, quoted whole) with the module's wording around it. */
#define CAM_REASON_SIZE (MAA_ERRLEN + 128)

typedef enum {
    CAM_PIX_MONO8 = 0,
    CAM_PIX_RGB8,
    CAM_PIX_BAYER_RG8,
    CAM_PIX_BAYER_GR8,
    CAM_PIX_BAYER_GB8,
    CAM_PIX_BAYER_BG8
} cam_pixfmt;

/* GenICam names: "Mono8", "RGB8", "BayerRG8", "BayerGR8", "BayerGB8",
 * "BayerBG8". */
int cam_pixfmt_parse(const char *name, cam_pixfmt *out);
const char *cam_pixfmt_name(cam_pixfmt f);

typedef enum { CAM_SOURCE_ARAVIS = 0, CAM_SOURCE_REPLAY } cam_source_kind;
typedef enum { CAM_TRIGGER_FREE = 0, CAM_TRIGGER_SOFTWARE, CAM_TRIGGER_HARDWARE } cam_trigger_mode;

/* "aravis"/"replay" and "free"/"software"/"hardware". */
int cam_source_parse(const char *name, cam_source_kind *out);
int cam_trigger_parse(const char *name, cam_trigger_mode *out);

/* The defaults that maad's configuration shares with this module and that
 * are numbers or names of this module's own (the rest, like "source:
 * aravis" or "gain_db: -1", are written out in both): config/config.c
 * takes these from here.  tests/test_config checks every shared field, so
 * the daemon and a caller of cam_config_defaults start from the same
 * settings either way. */
#define CAM_DEFAULT_TRIGGER_SOURCE "Line0"
#define CAM_DEFAULT_PACKET_SOCKET true
#define CAM_DEFAULT_STREAM_BUFFERS 16
#define CAM_DEFAULT_RECONNECT_MIN_MS 500
#define CAM_DEFAULT_RECONNECT_MAX_MS 10000
#define CAM_DEFAULT_REPLAY_FPS 33
#define CAM_DEFAULT_REPLAY_LOOP false

/* Plain settings; cam_config_defaults fills every field.  Strings are copied
 * by cam_open. */
typedef struct {
    cam_source_kind source;
    /* aravis */
    const char *device_id;    /* Aravis id, address or NULL: the first camera */
    cam_pixfmt pixel_format;  /* replay: Mono8 or RGB8 */
    int width, height;        /* 0: leave the camera's */
    int offset_x, offset_y;
    double exposure_us;       /* 0: leave */
    double gain_db;           /* < 0: leave */
    double frame_rate;        /* free-run frames/s; 0: leave */
    cam_trigger_mode trigger;
    double trigger_rate;      /* software trigger: the source triggers itself
                                 this often a second; 0: only cam_trigger */
    const char *trigger_source;  /* hardware trigger line; NULL: the default */
    int packet_size;          /* GigE bytes; 0: negotiate */
    bool packet_socket;       /* Aravis's packet socket where it may (CAP_NET_RAW);
                                 false: always its UDP socket (docs/camera.md) */
    int socket_buffer;        /* GigE receive buffer bytes; 0: 4 payloads */
    int stream_buffers;       /* buffers queued to the stream */
    int timeout_ms;           /* free-run, software trigger at trigger_rate:
                                 no frame this long = camera lost;
                                 0: max(1000, 3 frame periods) */
    int reconnect_min_ms, reconnect_max_ms;  /* backoff between attempts */
    int realtime_priority;    /* capture thread SCHED_FIFO priority; 0: none */
    /* replay */
    const char *replay_dir;
    double replay_fps;        /* > 0 */
    bool replay_loop;
} cam_config;

void cam_config_defaults(cam_config *c);

typedef enum { CAM_FRAME, CAM_INCOMPLETE, CAM_MISSED, CAM_ERROR, CAM_RECONNECTED } cam_event_kind;

typedef struct {
    cam_event_kind kind;
    /* CAM_FRAME, CAM_INCOMPLETE: the frame's id (GigE Vision ids are 16 bit,
     * 1..65535, and wrap); CAM_MISSED: the id of the frame that arrived
     * after the gap. */
    uint64_t frame_id;
    uint64_t t_capture_ns;  /* CLOCK_REALTIME when the frame arrived */
    uint64_t t_camera_ns;   /* the camera's own timestamp; 0: none */
    /* CAM_FRAME: the pixels, rows of width * bytes-per-pixel, no padding. */
    int width, height;
    cam_pixfmt fmt;
    const uint8_t *data;
    size_t size;
    uint32_t missed;        /* CAM_MISSED: frame ids never delivered */
    /* CAM_RECONNECTED: the lost camera is streaming again, at this attempt
     * (1: the first), away_ns after it was found lost. */
    uint32_t attempts;
    uint64_t away_ns;
    const char *reason;     /* CAM_INCOMPLETE, CAM_ERROR, CAM_RECONNECTED: one
                               line, shorter than CAM_REASON_SIZE */
} cam_event;

/* Called on the capture thread; must not block.  ev and its data are valid
 * only during the call. */
typedef void (*cam_event_fn)(void *user, const cam_event *ev);

typedef struct cam_source cam_source;

/* Opens the source and checks the configuration: the camera is found and
 * configured (a camera that is absent is an error here, not later), the
 * replay images are loaded and converted. */
int cam_open(const cam_config *cfg, cam_event_fn fn, void *user,
             cam_source **out, char *err, size_t errlen);
/* Starts acquisition and the capture thread.  MAA_OK, CAM_WARN (running,
 * but realtime priority was refused: err says why) or MAA_ERR. */
int cam_start(cam_source *s, char *err, size_t errlen);
/* Fires one frame in software-trigger mode.  With cfg.trigger_rate the
 * source calls it itself, on a thread of its own, from cam_start to
 * cam_stop.  May wait seconds (Aravis's retries) for an unreachable
 * camera. */
int cam_trigger(cam_source *s, char *err, size_t errlen);
/* Stops within about 100 ms (longer while an unreachable camera is being
 * released); no callback runs after it returns. */
void cam_stop(cam_source *s);
void cam_close(cam_source *s);

typedef struct {
    uint64_t frames;      /* CAM_FRAME events */
    uint64_t incomplete;  /* CAM_INCOMPLETE events */
    uint64_t missed;      /* sum of CAM_MISSED counts */
    uint64_t errors;      /* CAM_ERROR events */
    uint64_t reconnects;  /* successful reconnections */
    bool finished;        /* a replay without loop delivered its last image */
} cam_stats;

/* The largest frame the source delivers, in bytes (replay: its largest
 * image; a camera: its payload size as cam_open configured it), so that a
 * consumer can size its frame buffers before cam_start. */
size_t cam_frame_bytes(const cam_source *s);
/* The largest 8-bit image cam_frame_to_image makes of those frames, in
 * bytes (a Bayer frame demosaics to three samples a pixel). */
size_t cam_image_bytes_max(const cam_source *s);

/* Safe from any thread. */
void cam_get_stats(const cam_source *s, cam_stats *out);

/* ---- frames to engine images --------------------------------------------- */

/* Bytes cam_frame_to_image writes for this frame: width*height*channels,
 * 1 channel for Mono8, 3 for RGB8 and Bayer; 0 when a side is outside
 * 1..MAA_IMAGE_MAX_SIDE (such a frame is refused). */
size_t cam_image_bytes(const cam_event *ev);
/* Converts a CAM_FRAME into an 8-bit maa_image in buf (no allocation):
 * Mono8 and RGB8 are copied, Bayer is demosaiced bilinearly to RGB.  A
 * frame with a side outside 1..MAA_IMAGE_MAX_SIDE, or with fewer bytes than
 * its sides need, is refused. */
int cam_frame_to_image(const cam_event *ev, void *buf, size_t bufsize,
                       maa_image *img, char *err, size_t errlen);

/* ---- fake GigE Vision camera --------------------------------------------- */

typedef struct cam_fake cam_fake;

/* What a fake camera takes: Aravis's fake sensor is 2048 x 2048, and its
 * frame period is a 32-bit register in microseconds (0.0001 frames/s was
 * converted to it with an overflow). */
#define CAM_FAKE_MAX_SIDE 2048
#define CAM_FAKE_MIN_FPS 0.01
#define CAM_FAKE_MAX_FPS 1000.0

typedef struct {
    const char *address;  /* NULL: "127.0.0.1" */
    const char *serial;   /* NULL: "MAA0" */
    double fps;           /* CAM_FAKE_MIN_FPS..CAM_FAKE_MAX_FPS; 0: the fake's default (25) */
    int width, height;    /* 1..CAM_FAKE_MAX_SIDE; 0: the first image's */
    cam_pixfmt fmt;
} cam_fake_config;

/* Serves the images (8 or 16-bit, 1, 3 or 4 channels; copied) in turn, each
 * resized (nearest) and converted to the camera's current size and pixel
 * format, which a client may change.  One fake camera per address. */
int cam_fake_start(const cam_fake_config *cfg, const maa_image *images, int n,
                   cam_fake **out, char *err, size_t errlen);
/* The id a client opens, "Aravis-Fake-<serial>". */
const char *cam_fake_device_id(const cam_fake *f);
uint64_t cam_fake_frames(const cam_fake *f);
void cam_fake_stop(cam_fake *f);

#endif
