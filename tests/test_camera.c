/* test_camera.c — the image sources: an in-process fake GigE Vision camera
 * read through the Aravis source (frame ids, exact pixels in Mono8, RGB8 and
 * Bayer, reconnection after the camera goes away, reported as an event,
 * without the device ever being finalized on an Aravis thread, a software
 * trigger at a rate, a bad device id), the replay directory (order, loop,
 * end), and Bayer demosaicing.
 *
 * The GigE tests need a private loopback: the process enters a new network
 * namespace (as root, or as the root of a new user namespace) and brings lo
 * up; where neither is permitted they are skipped with the reason. */
#include "camera/camera.h"
#include "tests/check.h"
#include "tests/netns.h"

#include <arv.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char netns_skip[256]; /* empty when the private loopback is up */

/* GLib holds a reference on the instance while a signal emission runs a
 * handler.  Aravis emits "control-lost" on its own heartbeat thread, whose
 * join is in the device's finalize: had the source a handler connected and
 * dropped its references during such an emission, the emission's unref
 * would finalize the device on the heartbeat thread, which then joins
 * itself (GLib-ERROR, SIGTRAP).  This stand-in for libaravis's
 * g_signal_emit widens that window on purpose: where a handler is connected
 * to control-lost, it holds its reference until every other one is gone
 * (at most 20 s).  The source must not let the emission own the last
 * reference; test_reconnect_software_trigger loses control this way. */
void g_signal_emit(gpointer instance, guint signal_id, GQuark detail, ...)
{
    va_list ap;
    va_start(ap, detail);
    bool hold = G_IS_OBJECT(instance) &&
                signal_id == g_signal_lookup("control-lost", ARV_TYPE_DEVICE) &&
                g_signal_has_handler_pending(instance, signal_id, detail, FALSE);
    if (hold)
        g_object_ref(instance);
    g_signal_emit_valist(instance, signal_id, detail, ap);
    va_end(ap);
    if (!hold)
        return;
    GObject *o = instance;
    for (int i = 0; i < 2000 && g_atomic_int_get(&o->ref_count) > 1; i++) {
        struct timespec ts = {0, 10000000L};
        nanosleep(&ts, NULL);
    }
    g_object_unref(instance);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- a recording callback ------------------------------------------------- */

#define MAX_REF 4

typedef struct {
    pthread_mutex_t lock;
    const uint8_t *ref[MAX_REF]; /* expected contents, any of them */
    size_t ref_size;
    int nref;
    int width, height;
    cam_pixfmt fmt;
    int frames, errors, incomplete, bad_pixels, bad_shape, non_increasing, wraps;
    int reconnected;   /* CAM_RECONNECTED events; the last one's: */
    uint32_t attempts;
    uint64_t away_ns;
    char reconnect_reason[512];
    uint64_t missed, last_id, ids[64];
    int seen[MAX_REF];
    char first_error[512], last_error[512];
    uint8_t *conv; /* when set, the first frame is converted into it */
    size_t conv_size;
    int converted;
    maa_image conv_img;
    cam_source *trigger; /* when set, wait_count fires software triggers */
    int delay_ms;      /* a slow consumer, to make the camera drop frames */
    uint64_t first_id, end_id; /* first and last frame or incomplete frame */
    int delivered;     /* frames + incomplete frames */
} recorder;

static void rec_init(recorder *r)
{
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->lock, NULL);
}

static void on_event(void *user, const cam_event *ev)
{
    recorder *r = user;
    if (r->delay_ms && ev->kind == CAM_FRAME)
        sleep_ms(r->delay_ms);
    pthread_mutex_lock(&r->lock);
    if (ev->kind == CAM_FRAME || ev->kind == CAM_INCOMPLETE) {
        /* Ids rise over complete and incomplete frames alike; which frames
         * complete with one stream buffer depends on the machine's timing. */
        if (r->delivered && ev->frame_id <= r->end_id) {
            if (r->end_id - ev->frame_id > 0x8000)
                r->wraps++; /* 16-bit GigE Vision ids */
            else
                r->non_increasing++;
        }
        if (r->end_id = ev->frame_id, !r->delivered++)
            r->first_id = ev->frame_id;
    }
    switch (ev->kind) {
    case CAM_FRAME: {
        r->last_id = ev->frame_id;
        if (r->frames < 64)
            r->ids[r->frames] = ev->frame_id;
        r->frames++;
        if (r->conv && !r->converted)
            r->converted = cam_frame_to_image(ev, r->conv, r->conv_size, &r->conv_img,
                                              NULL, 0) == MAA_OK ? 1 : -1;
        if (r->nref) {
            if (ev->width != r->width || ev->height != r->height || ev->fmt != r->fmt ||
                ev->size != r->ref_size) {
                r->bad_shape++;
                break;
            }
            int match = -1;
            for (int i = 0; i < r->nref && match < 0; i++)
                if (!memcmp(ev->data, r->ref[i], r->ref_size))
                    match = i;
            if (match < 0)
                r->bad_pixels++;
            else
                r->seen[match]++;
        }
        break;
    }
    case CAM_INCOMPLETE: r->incomplete++; break;
    case CAM_MISSED: r->missed += ev->missed; break;
    case CAM_RECONNECTED:
        r->reconnected++;
        r->attempts = ev->attempts;
        r->away_ns = ev->away_ns;
        snprintf(r->reconnect_reason, sizeof r->reconnect_reason, "%s", ev->reason);
        break;
    case CAM_ERROR:
        if (!r->errors++)
            snprintf(r->first_error, sizeof r->first_error, "%s", ev->reason);
        snprintf(r->last_error, sizeof r->last_error, "%s", ev->reason);
        break;
    }
    pthread_mutex_unlock(&r->lock);
}

static int rec_get(recorder *r, int which)
{
    pthread_mutex_lock(&r->lock);
    int v = which == 0 ? r->frames : r->errors;
    pthread_mutex_unlock(&r->lock);
    return v;
}

/* Waits up to ms for the count to reach n. */
static int wait_count(recorder *r, int which, int n, int ms)
{
    for (int t = 0; t < ms && rec_get(r, which) < n; t += 20) {
        if (r->trigger) /* fails while the camera is away */
            cam_trigger(r->trigger, NULL, 0);
        sleep_ms(20);
    }
    return rec_get(r, which);
}

/* ---- images -------------------------------------------------------------- */

/* Two distinct w x h images with ch channels. */
static void make_images(int w, int h, int ch, uint8_t *a, uint8_t *b)
{
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < ch; c++) {
                size_t k = ((size_t)y * w + x) * ch + c;
                a[k] = (uint8_t)(x * 3 + y * 5 + c * 70);
                b[k] = (uint8_t)(255 - x * 7 + y * 2 + c * 30);
            }
}

static void aravis_config(cam_config *c, const char *id, cam_pixfmt fmt)
{
    cam_config_defaults(c);
    c->device_id = id;
    c->pixel_format = fmt;
    c->packet_socket = false;
    c->reconnect_min_ms = 100;
    c->reconnect_max_ms = 400;
    c->timeout_ms = 1000;
}

/* Serves two images in fmt and checks the source delivers exactly them. */
static void fake_roundtrip(cam_pixfmt fmt)
{
    if (*netns_skip)
        SKIP("%s", netns_skip);
    enum { W = 64, H = 48 };
    int ch = fmt == CAM_PIX_RGB8 ? 3 : 1;
    static uint8_t a[W * H * 3], b[W * H * 3];
    make_images(W, H, ch, a, b);
    maa_image imgs[2] = {{W, H, ch, 8, a}, {W, H, ch, 8, b}};
    cam_fake_config fc = {.serial = "RT", .fps = 40, .fmt = fmt};
    cam_fake *fake;
    char err[MAA_ERRLEN];
    int rc = cam_fake_start(&fc, imgs, 2, &fake, err, sizeof err);
    CHECK(rc == MAA_OK, "%s", err);
    if (rc != MAA_OK)
        return;
    CHECK(!strcmp(cam_fake_device_id(fake), "Aravis-Fake-RT"), "%s", cam_fake_device_id(fake));

    recorder r;
    rec_init(&r);
    r.ref[0] = a, r.ref[1] = b, r.nref = 2;
    r.ref_size = (size_t)W * H * ch;
    r.width = W, r.height = H, r.fmt = fmt;
    cam_config cfg;
    aravis_config(&cfg, cam_fake_device_id(fake), fmt);
    cam_source *s;
    rc = cam_open(&cfg, on_event, &r, &s, err, sizeof err);
    CHECK(rc == MAA_OK, "%s", err);
    if (rc == MAA_OK) {
        CHECK(cam_frame_bytes(s) == r.ref_size, "frame bytes %zu", cam_frame_bytes(s));
        CHECK(cam_image_bytes_max(s) == (size_t)W * H * (fmt == CAM_PIX_MONO8 ? 1 : 3),
              "image bytes %zu", cam_image_bytes_max(s));
        CHECK(cam_start(s, err, sizeof err) == MAA_OK, "%s", err);
        int got = wait_count(&r, 0, 10, 5000);
        cam_stop(s);
        cam_stats st;
        cam_get_stats(s, &st);
        pthread_mutex_lock(&r.lock);
        CHECK(got >= 1, "no frame in 5 s (errors %d: %s)", r.errors, r.last_error);
        CHECK(st.frames == (uint64_t)r.frames, "stats %llu vs %d frames",
              (unsigned long long)st.frames, r.frames);
        CHECK(r.non_increasing == 0, "%d frame ids did not increase", r.non_increasing);
        CHECK(r.bad_shape == 0, "%d frames of the wrong size or format", r.bad_shape);
        CHECK(r.bad_pixels == 0, "%d frames differ from both images", r.bad_pixels);
        CHECK(r.frames < 2 || (r.seen[0] && r.seen[1]), "images seen %d, %d",
              r.seen[0], r.seen[1]);
        pthread_mutex_unlock(&r.lock);
        int after = rec_get(&r, 0);
        sleep_ms(200);
        CHECK(rec_get(&r, 0) == after, "a callback ran after cam_stop");
        cam_close(s);
    }
    cam_fake_stop(fake);
}

static void test_fake_mono8(void) { fake_roundtrip(CAM_PIX_MONO8); }
static void test_fake_rgb8(void) { fake_roundtrip(CAM_PIX_RGB8); }

/* A flat colour served as BayerGR8 demosaics back to that colour. */
static void test_fake_bayer(void)
{
    if (*netns_skip)
        SKIP("%s", netns_skip);
    enum { W = 32, H = 16 };
    static uint8_t rgb[W * H * 3], out[W * H * 3];
    for (int i = 0; i < W * H; i++)
        rgb[3 * i] = 210, rgb[3 * i + 1] = 120, rgb[3 * i + 2] = 40;
    maa_image img = {W, H, 3, 8, rgb};
    cam_fake_config fc = {.serial = "BY", .fps = 40, .fmt = CAM_PIX_BAYER_GR8};
    cam_fake *fake;
    char err[MAA_ERRLEN];
    if (cam_fake_start(&fc, &img, 1, &fake, err, sizeof err) != MAA_OK) {
        CHECK(0, "%s", err);
        return;
    }
    recorder r;
    rec_init(&r);
    r.conv = out, r.conv_size = sizeof out;
    cam_config cfg;
    aravis_config(&cfg, cam_fake_device_id(fake), CAM_PIX_BAYER_GR8);
    cam_source *s;
    int rc = cam_open(&cfg, on_event, &r, &s, err, sizeof err);
    CHECK(rc == MAA_OK, "%s", err);
    if (rc == MAA_OK) {
        /* One byte a pixel on the wire, three once demosaiced. */
        CHECK(cam_frame_bytes(s) == W * H && cam_image_bytes_max(s) == W * H * 3,
              "frame bytes %zu, image bytes %zu", cam_frame_bytes(s), cam_image_bytes_max(s));
        CHECK(cam_start(s, err, sizeof err) == MAA_OK, "%s", err);
        CHECK(wait_count(&r, 0, 1, 5000) >= 1, "no frame in 5 s: %s", r.last_error);
        cam_stop(s);
        cam_close(s);
    }
    cam_fake_stop(fake);
    CHECK(r.converted == 1, "first frame not converted (%d)", r.converted);
    CHECK(r.conv_img.width == W && r.conv_img.height == H && r.conv_img.channels == 3);
    CHECK(!memcmp(out, rgb, sizeof out), "flat GR8 field is not flat after demosaic");
}

/* A consumer too slow for the camera, with one stream buffer, loses frames:
 * every id from the first to the last is delivered or counted missed, also
 * across the wrap of the 16-bit ids (which start near 65535 and skip 0). */
static void test_frame_id_wrap(void)
{
    if (*netns_skip)
        SKIP("%s", netns_skip);
    static uint8_t px[16 * 16];
    maa_image img = {16, 16, 1, 8, px};
    cam_fake_config fc = {.serial = "WR", .fps = 250, .fmt = CAM_PIX_MONO8};
    cam_fake *fake;
    char err[MAA_ERRLEN];
    if (cam_fake_start(&fc, &img, 1, &fake, err, sizeof err) != MAA_OK) {
        CHECK(0, "%s", err);
        return;
    }
    recorder r;
    rec_init(&r);
    r.delay_ms = 5;
    cam_config cfg;
    aravis_config(&cfg, cam_fake_device_id(fake), CAM_PIX_MONO8);
    cfg.stream_buffers = 1;
    cam_source *s;
    int rc = cam_open(&cfg, on_event, &r, &s, err, sizeof err);
    CHECK(rc == MAA_OK, "%s", err);
    if (rc == MAA_OK) {
        CHECK(cam_start(s, err, sizeof err) == MAA_OK, "%s", err);
        for (int t = 0; t < 20000; t += 20) {
            pthread_mutex_lock(&r.lock);
            bool wrapped = r.wraps > 0;
            pthread_mutex_unlock(&r.lock);
            if (wrapped)
                break;
            sleep_ms(20);
        }
        cam_stop(s);
        cam_stats st;
        cam_get_stats(s, &st);
        CHECK(r.wraps == 1, "ids %llu .. %llu did not wrap (%d frames, %d incomplete, %llu missed, "
              "%d errors: %s)", (unsigned long long)r.first_id, (unsigned long long)r.end_id, r.frames,
              r.incomplete, (unsigned long long)r.missed, r.errors, r.first_error);
        CHECK(r.non_increasing == 0, "%d ids out of order", r.non_increasing);
        uint64_t span = r.end_id >= r.first_id ? r.end_id - r.first_id + 1
                                               : 0xffff - r.first_id + 1 + r.end_id;
        CHECK(st.missed == r.missed, "stats missed %llu, events %llu",
              (unsigned long long)st.missed, (unsigned long long)r.missed);
        CHECK(r.missed > 0, "a slow consumer lost no frame");
        CHECK(span == r.delivered + r.missed, "ids %llu..%llu: %d delivered + %llu missed",
              (unsigned long long)r.first_id, (unsigned long long)r.end_id, r.delivered,
              (unsigned long long)r.missed);
        cam_close(s);
    }
    cam_fake_stop(fake);
}

/* Free-run notices the silence; in a triggered mode silence is normal and
 * only Aravis's control-lost (heartbeat) can tell.  Software triggers are
 * fired while waiting (the fake camera does not fire hardware triggers). */
static void reconnect(cam_trigger_mode trigger)
{
    if (*netns_skip)
        SKIP("%s", netns_skip);
    enum { W = 32, H = 32 };
    static uint8_t a[W * H], b[W * H];
    make_images(W, H, 1, a, b);
    maa_image img = {W, H, 1, 8, a};
    cam_fake_config fc = {.serial = "RC", .fps = 30, .fmt = CAM_PIX_MONO8};
    cam_fake *fake;
    char err[MAA_ERRLEN];
    if (cam_fake_start(&fc, &img, 1, &fake, err, sizeof err) != MAA_OK) {
        CHECK(0, "%s", err);
        return;
    }
    recorder r;
    rec_init(&r);
    cam_config cfg;
    aravis_config(&cfg, cam_fake_device_id(fake), CAM_PIX_MONO8);
    cfg.trigger = trigger;
    cam_source *s;
    int rc = cam_open(&cfg, on_event, &r, &s, err, sizeof err);
    CHECK(rc == MAA_OK, "%s", err);
    if (rc != MAA_OK) {
        cam_fake_stop(fake);
        return;
    }
    if (trigger == CAM_TRIGGER_SOFTWARE)
        r.trigger = s;
    CHECK(cam_start(s, err, sizeof err) == MAA_OK, "%s", err);
    CHECK(wait_count(&r, 0, 3, 5000) >= 3, "no frames before the camera went away");
    cam_fake_stop(fake);
    CHECK(wait_count(&r, 1, 1, 15000) >= 1, "no CAM_ERROR within 15 s of losing the camera");
    if (trigger != CAM_TRIGGER_FREE)
        CHECK(strstr(r.first_error, "control lost") != NULL, "%s", r.first_error);
    int before = rec_get(&r, 0);
    /* Reconnection attempts fail while the camera is away, each reported. */
    CHECK(wait_count(&r, 1, 2, 15000) >= 2, "one CAM_ERROR only while the camera is away");
    img.data = b;
    fake = NULL;
    CHECK(cam_fake_start(&fc, &img, 1, &fake, err, sizeof err) == MAA_OK, "%s", err);
    CHECK(wait_count(&r, 0, before + 3, 20000) >= before + 3,
          "no frames within 20 s of the camera coming back (last error: %s)", r.last_error);
    r.trigger = NULL;
    cam_stop(s);
    cam_stats st;
    cam_get_stats(s, &st);
    CHECK(st.reconnects >= 1, "reconnects %llu", (unsigned long long)st.reconnects);
    /* The reconnection is an event of its own: how many attempts it took
     * (the errors counted at least one that failed) and how long the
     * camera was away (it was gone for seconds). */
    pthread_mutex_lock(&r.lock);
    CHECK(r.reconnected == (int)st.reconnects, "%d CAM_RECONNECTED events, %llu reconnects",
          r.reconnected, (unsigned long long)st.reconnects);
    CHECK(r.attempts >= 2, "reconnected at attempt %u", r.attempts);
    CHECK(r.away_ns >= 500000000u, "away %.3f s", r.away_ns / 1e9);
    CHECK(strstr(r.reconnect_reason, "reconnected") && strstr(r.reconnect_reason, "Aravis-Fake-RC"),
          "%s", r.reconnect_reason);
    fprintf(stderr, "  %s\n", r.reconnect_reason);
    pthread_mutex_unlock(&r.lock);
    CHECK(st.errors >= 2 && st.errors == (uint64_t)rec_get(&r, 1), "errors %llu",
          (unsigned long long)st.errors);
    fprintf(stderr, "  reconnect (%s): %d errors (first: %s; last: %s), %llu reconnects\n",
            trigger == CAM_TRIGGER_FREE ? "free-run" : "software trigger", rec_get(&r, 1),
            r.first_error, r.last_error, (unsigned long long)st.reconnects);
    cam_close(s);
    cam_fake_stop(fake);
}

static void test_reconnect_free_run(void) { reconnect(CAM_TRIGGER_FREE); }
static void test_reconnect_software_trigger(void) { reconnect(CAM_TRIGGER_SOFTWARE); }

/* Software trigger at a rate: the source fires TriggerSoftware itself and
 * frames arrive with no cam_trigger call; without a rate none do, so they
 * are the triggers' (the fake camera waits for its trigger).  A replay
 * triggers itself the same way; a rate without software trigger is
 * refused. */
static void test_software_trigger_rate(void)
{
    static uint8_t px[32 * 32];
    char dir[] = "/tmp/test_camera_XXXXXX", path[64], err[MAA_ERRLEN];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/a.png", dir);
    CHECK(maa_png_write(path, px, 32, 32, 1, err, sizeof err) == MAA_OK, "%s", err);
    recorder rrec;
    rec_init(&rrec);
    cam_config rcfg;
    cam_config_defaults(&rcfg);
    rcfg.source = CAM_SOURCE_REPLAY;
    rcfg.replay_dir = dir;
    rcfg.replay_loop = true;    /* one image, served at every trigger */
    rcfg.trigger = CAM_TRIGGER_SOFTWARE;
    rcfg.trigger_rate = 50;
    cam_source *rsrc;
    if (cam_open(&rcfg, on_event, &rrec, &rsrc, err, sizeof err) == MAA_OK) {
        CHECK(cam_start(rsrc, err, sizeof err) == MAA_OK, "%s", err);
        CHECK(wait_count(&rrec, 0, 5, 5000) >= 5, "replay: %d frames at 50 triggers/s",
              rec_get(&rrec, 0));
        cam_close(rsrc);
    } else {
        CHECK(0, "%s", err);
    }
    rcfg.trigger = CAM_TRIGGER_FREE;
    CHECK(cam_open(&rcfg, on_event, &rrec, &rsrc, err, sizeof err) == MAA_ERR);
    CHECK(strstr(err, "trigger_rate 50 is for software-trigger mode only"), "%s", err);
    unlink(path);
    rmdir(dir);

    if (*netns_skip)
        SKIP("%s", netns_skip);
    maa_image img = {32, 32, 1, 8, px};
    cam_fake_config fc = {.serial = "ST", .fps = 30, .fmt = CAM_PIX_MONO8};
    cam_fake *fake;
    if (cam_fake_start(&fc, &img, 1, &fake, err, sizeof err) != MAA_OK) {
        CHECK(0, "%s", err);
        return;
    }
    for (int rated = 0; rated <= 1; rated++) {
        recorder r;
        rec_init(&r);
        cam_config cfg;
        aravis_config(&cfg, cam_fake_device_id(fake), CAM_PIX_MONO8);
        cfg.trigger = CAM_TRIGGER_SOFTWARE;
        cfg.trigger_rate = rated ? 20 : 0;
        cam_source *s;
        int rc = cam_open(&cfg, on_event, &r, &s, err, sizeof err);
        CHECK(rc == MAA_OK, "%s", err);
        if (rc != MAA_OK)
            continue;
        CHECK(cam_start(s, err, sizeof err) == MAA_OK, "%s", err);
        if (rated) {
            CHECK(wait_count(&r, 0, 10, 5000) >= 10, "%d frames in 5 s at 20 triggers/s "
                  "(errors %d: %s)", rec_get(&r, 0), r.errors, r.last_error);
        } else {
            sleep_ms(600);
            CHECK(rec_get(&r, 0) == 0, "%d frames without a trigger", rec_get(&r, 0));
        }
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        cam_stop(s);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double stop_ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
        CHECK(stop_ms < 1000, "cam_stop took %.0f ms", stop_ms);
        CHECK(r.errors == 0, "%d errors: %s", r.errors, r.first_error);
        int after = rec_get(&r, 0);
        sleep_ms(200);
        CHECK(rec_get(&r, 0) == after, "a frame after cam_stop");
        cam_close(s);
    }
    cam_fake_stop(fake);
}

static void test_bad_device(void)
{
    if (*netns_skip)
        SKIP("%s", netns_skip);
    recorder r;
    rec_init(&r);
    cam_config cfg;
    aravis_config(&cfg, "Nobody-NoSuchCam-42", CAM_PIX_MONO8);
    cam_source *s = NULL;
    char err[MAA_ERRLEN] = "";
    CHECK(cam_open(&cfg, on_event, &r, &s, err, sizeof err) == MAA_ERR);
    CHECK(s == NULL);
    CHECK(strstr(err, "Nobody-NoSuchCam-42") != NULL, "error does not name the device: %s", err);
}

/* ---- replay -------------------------------------------------------------- */

static int write_pnm(const char *path, int w, int h, int ch, const uint8_t *px)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    fprintf(f, "P%d\n%d %d\n255\n", ch == 1 ? 5 : 6, w, h);
    size_t n = fwrite(px, 1, (size_t)w * h * ch, f);
    return fclose(f) == 0 && n == (size_t)w * h * ch ? 0 : -1;
}


/* Threads of this process under SCHED_FIFO (/proc/self/task/N/stat's
 * policy, field 41). */
static int fifo_threads(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/task");
    for (struct dirent *e; d && (e = readdir(d));) {
        char path[300], buf[1024];
        snprintf(path, sizeof path, "/proc/self/task/%s/stat", e->d_name);
        FILE *f = e->d_name[0] == '.' ? NULL : fopen(path, "r");
        size_t len = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
        if (f)
            fclose(f);
        buf[len] = '\0';
        char *p = strrchr(buf, ')'); /* the name may hold spaces */
        int field = 2;
        for (; p && *p && field < 41; p++)
            field += *p == ' ';
        n += p && field == 41 && atoi(p) == SCHED_FIFO;
    }
    if (d)
        closedir(d);
    return n;
}

static void test_replay(void)
{
    char dir[] = "/tmp/test_camera_XXXXXX", path[64];
    CHECK(mkdtemp(dir) != NULL);
    enum { W = 8, H = 6 };
    static uint8_t px[3][W * H];
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < W * H; k++)
            px[i][k] = (uint8_t)(i * 80 + k);
    /* Names sort as 0, 1, 2 whatever the order written; formats differ. */
    snprintf(path, sizeof path, "%s/b.pgm", dir);
    CHECK(write_pnm(path, W, H, 1, px[1]) == 0);
    snprintf(path, sizeof path, "%s/a.png", dir);
    char err[MAA_ERRLEN];
    CHECK(maa_png_write(path, px[0], W, H, 1, err, sizeof err) == MAA_OK, "%s", err);
    snprintf(path, sizeof path, "%s/c.pgm", dir);
    CHECK(write_pnm(path, W, H, 1, px[2]) == 0);
    snprintf(path, sizeof path, "%s/notes.txt", dir);
    FILE *f = fopen(path, "w");
    if (f)
        fputs("not an image\n", f), fclose(f);

    for (int loop = 1; loop >= 0; loop--) {
        recorder r;
        rec_init(&r);
        cam_config cfg;
        cam_config_defaults(&cfg);
        cfg.source = CAM_SOURCE_REPLAY;
        cfg.replay_dir = dir;
        cfg.replay_fps = 200;
        cfg.replay_loop = loop;
        cam_source *s;
        int rc = cam_open(&cfg, on_event, &r, &s, err, sizeof err);
        CHECK(rc == MAA_OK, "%s", err);
        if (rc != MAA_OK)
            continue;
        CHECK(cam_frame_bytes(s) == (size_t)W * H, "frame bytes %zu", cam_frame_bytes(s));
        CHECK(cam_image_bytes_max(s) == (size_t)W * H, "image bytes %zu", cam_image_bytes_max(s));
        /* Contents are checked per frame below: keep every frame's data. */
        CHECK(cam_start(s, err, sizeof err) == MAA_OK, "%s", err);
        int want = loop ? 7 : 3;
        wait_count(&r, 0, want, 5000);
        if (!loop)
            sleep_ms(100); /* a non-looping replay must not go on */
        cam_stop(s);
        cam_stats st;
        cam_get_stats(s, &st);
        if (loop)
            CHECK(r.frames >= want, "%d frames", r.frames);
        else
            CHECK(r.frames == 3 && st.finished, "%d frames, finished %d", r.frames, st.finished);
        for (int i = 0; i < r.frames && i < 64; i++)
            CHECK(r.ids[i] == (uint64_t)i + 1, "frame %d has id %llu", i,
                  (unsigned long long)r.ids[i]);
        cam_close(s);
    }

    /* Contents and order: collect frame data through a software trigger. */
    recorder r;
    rec_init(&r);
    cam_config cfg;
    cam_config_defaults(&cfg);
    cfg.source = CAM_SOURCE_REPLAY;
    cfg.replay_dir = dir;
    cfg.replay_loop = true;     /* five triggers on three images */
    cfg.trigger = CAM_TRIGGER_SOFTWARE;
    cam_source *s;
    if (cam_open(&cfg, on_event, &r, &s, err, sizeof err) != MAA_OK) {
        CHECK(0, "%s", err);
        return;
    }
    int rc = cam_start(s, err, sizeof err);
    CHECK(rc == MAA_OK, "%s", err);
    r.nref = 1;
    r.width = W, r.height = H, r.fmt = CAM_PIX_MONO8, r.ref_size = W * H;
    for (int i = 0; i < 5; i++) {
        pthread_mutex_lock(&r.lock);
        r.ref[0] = px[i % 3];
        pthread_mutex_unlock(&r.lock);
        CHECK(cam_trigger(s, err, sizeof err) == MAA_OK, "%s", err);
        CHECK(wait_count(&r, 0, i + 1, 5000) == i + 1, "trigger %d: %d frames", i, r.frames);
    }
    cam_stop(s);
    CHECK(r.bad_pixels == 0 && r.bad_shape == 0, "%d frames out of order or wrong, %d bad shape",
          r.bad_pixels, r.bad_shape);
    cam_close(s);

    /* RGB8 replay of gray images replicates the gray; the source triggers
     * itself 100 times a second, its capture and trigger threads both at
     * realtime priority. */
    cfg.trigger = CAM_TRIGGER_SOFTWARE;
    cfg.trigger_rate = 100;
    cfg.pixel_format = CAM_PIX_RGB8;
    cfg.replay_fps = 100;
    cfg.realtime_priority = 10;
    rec_init(&r);
    static uint8_t rgb[3][W * H * 3];
    for (int i = 0; i < 3; i++) {
        for (int k = 0; k < W * H * 3; k++)
            rgb[i][k] = px[i][k / 3];
        r.ref[i] = rgb[i];
    }
    r.nref = 3;
    r.width = W, r.height = H, r.fmt = CAM_PIX_RGB8, r.ref_size = W * H * 3;
    if (cam_open(&cfg, on_event, &r, &s, err, sizeof err) == MAA_OK) {
        /* Realtime priority is granted or refused with a warning, never fatal. */
        err[0] = 0;
        rc = cam_start(s, err, sizeof err);
        CHECK(rc == MAA_OK || (rc == CAM_WARN && strstr(err, "realtime priority 10")),
              "%d: %s", rc, err);
        printf("  realtime priority: %s\n", rc == MAA_OK ? "granted" : err);
        if (rc == MAA_OK)
            CHECK(fifo_threads() == 2, "%d SCHED_FIFO threads, want the capture and the "
                  "trigger thread", fifo_threads());
        else
            CHECK(strstr(err, "capturing and triggering at normal priority") != NULL, "%s", err);
        CHECK(wait_count(&r, 0, 3, 5000) >= 3);
        cam_stop(s);
        CHECK(r.frames >= 3 && !r.bad_pixels && !r.bad_shape && r.seen[0] && r.seen[2],
              "%d frames, %d wrong, %d bad shape", r.frames, r.bad_pixels, r.bad_shape);
        cam_close(s);
    } else {
        CHECK(0, "%s", err);
    }

    cfg.replay_dir = "/nonexistent/replay";
    CHECK(cam_open(&cfg, on_event, &r, &s, err, sizeof err) == MAA_ERR);
    CHECK(strstr(err, "/nonexistent/replay") != NULL, "%s", err);

    for (const char *n = "a.png\0b.pgm\0c.pgm\0notes.txt\0"; *n; n += strlen(n) + 1) {
        snprintf(path, sizeof path, "%s/%s", dir, n);
        unlink(path);
    }
    rmdir(dir);
}

/* ---- conversion ---------------------------------------------------------- */

static void test_demosaic_flat(void)
{
    enum { W = 6, H = 4 };
    static const int layouts[4][4] = {{0, 1, 1, 2}, {1, 0, 2, 1}, {1, 2, 0, 1}, {2, 1, 1, 0}};
    static const cam_pixfmt fmts[4] = {CAM_PIX_BAYER_RG8, CAM_PIX_BAYER_GR8,
                                       CAM_PIX_BAYER_GB8, CAM_PIX_BAYER_BG8};
    const uint8_t colour[3] = {200, 100, 50};
    char err[MAA_ERRLEN];
    for (int l = 0; l < 4; l++) {
        uint8_t raw[W * H], rgb[W * H * 3];
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                raw[y * W + x] = colour[layouts[l][(y & 1) * 2 + (x & 1)]];
        cam_event ev = {.kind = CAM_FRAME, .width = W, .height = H, .fmt = fmts[l],
                        .data = raw, .size = sizeof raw};
        maa_image img;
        CHECK(cam_image_bytes(&ev) == sizeof rgb);
        CHECK(cam_frame_to_image(&ev, rgb, sizeof rgb, &img, err, sizeof err) == MAA_OK, "%s", err);
        CHECK(img.width == W && img.height == H && img.channels == 3 && img.depth == 8);
        int bad = 0;
        for (int i = 0; i < W * H * 3; i++)
            bad += rgb[i] != colour[i % 3];
        CHECK(bad == 0, "%s: %d samples differ from the flat colour", cam_pixfmt_name(fmts[l]), bad);
        CHECK(cam_frame_to_image(&ev, rgb, sizeof rgb - 1, &img, err, sizeof err) == MAA_ERR);
    }
    /* A horizontal ramp in every colour keeps its interior values. */
    uint8_t raw[W * H], rgb[W * H * 3];
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            raw[y * W + x] = (uint8_t)(10 * x);
    cam_event ev = {.kind = CAM_FRAME, .width = W, .height = H, .fmt = CAM_PIX_BAYER_RG8,
                    .data = raw, .size = sizeof raw};
    maa_image img;
    CHECK(cam_frame_to_image(&ev, rgb, sizeof rgb, &img, err, sizeof err) == MAA_OK, "%s", err);
    for (int y = 1; y < H - 1; y++)
        for (int x = 1; x < W - 1; x++)
            for (int c = 0; c < 3; c++)
                CHECK(rgb[3 * (y * W + x) + c] == 10 * x, "(%d,%d,%d) = %d", x, y, c,
                      rgb[3 * (y * W + x) + c]);
    /* Any content, every layout: the mean of each colour's sites in the 3x3
     * neighbourhood, borders mirrored (computed here independently). */
    enum { RW = 7, RH = 5 };
    uint8_t rraw[RW * RH], rrgb[RW * RH * 3];
    srand(7);
    for (int i = 0; i < RW * RH; i++)
        rraw[i] = (uint8_t)(rand() & 255);
    for (int l = 0; l < 4; l++) {
        cam_event rev = {.kind = CAM_FRAME, .width = RW, .height = RH, .fmt = fmts[l],
                         .data = rraw, .size = sizeof rraw};
        CHECK(cam_frame_to_image(&rev, rrgb, sizeof rrgb, &img, err, sizeof err) == MAA_OK);
        int bad = 0;
        for (int y = 0; y < RH; y++)
            for (int x = 0; x < RW; x++) {
                int own = layouts[l][(y & 1) * 2 + (x & 1)], sum[3] = {0}, cnt[3] = {0};
                for (int dy = -1; dy <= 1; dy++)
                    for (int dx = -1; dx <= 1; dx++) {
                        int yy = abs(y + dy), xx = abs(x + dx);
                        yy = yy >= RH ? 2 * RH - 2 - yy : yy;
                        xx = xx >= RW ? 2 * RW - 2 - xx : xx;
                        int c = layouts[l][(yy & 1) * 2 + (xx & 1)];
                        sum[c] += rraw[yy * RW + xx], cnt[c]++;
                    }
                for (int c = 0; c < 3; c++) {
                    int want = c == own ? rraw[y * RW + x] : (sum[c] + cnt[c] / 2) / cnt[c];
                    bad += rrgb[3 * (y * RW + x) + c] != want;
                }
            }
        CHECK(bad == 0, "%s: %d samples differ from the bilinear means",
              cam_pixfmt_name(fmts[l]), bad);
    }
    /* Mono8 is copied as one channel. */
    ev.fmt = CAM_PIX_MONO8;
    CHECK(cam_frame_to_image(&ev, rgb, sizeof rgb, &img, err, sizeof err) == MAA_OK, "%s", err);
    CHECK(img.channels == 1 && !memcmp(rgb, raw, sizeof raw));
    cam_pixfmt f;
    CHECK(cam_pixfmt_parse("BayerGB8", &f) == MAA_OK && f == CAM_PIX_BAYER_GB8);
    CHECK(cam_pixfmt_parse("Mono16", &f) == MAA_ERR);
}

/* A spoofed stream's sides: Aravis gives the leader's 32-bit width and
 * height as int, and a -1 x -1 frame of one byte passed a size check made
 * with a wrapping product (1 byte), to become an image that preprocessing
 * sized at 2^64 bytes.  Sides are checked first, sizes counted in 64 bits;
 * a frame with fewer bytes than its sides need is refused, not read past. */
static void test_frame_geometry(void)
{
    static const int sides[][2] = {{-1, -1}, {-65536, -65536}, {0, 4}, {4, 0},
                                   {65536, 1}, {1, -2147483647 - 1}};
    uint8_t px[16] = {0}, out[48];
    char err[MAA_ERRLEN];
    maa_image img;
    for (size_t i = 0; i < sizeof sides / sizeof sides[0]; i++) {
        cam_event ev = {.kind = CAM_FRAME, .frame_id = 7, .width = sides[i][0],
                        .height = sides[i][1], .fmt = CAM_PIX_MONO8, .data = px,
                        .size = sizeof px};
        err[0] = 0;
        CHECK(cam_image_bytes(&ev) == 0, "%dx%d: %zu bytes", ev.width, ev.height,
              cam_image_bytes(&ev));
        CHECK(cam_frame_to_image(&ev, out, sizeof out, &img, err, sizeof err) == MAA_ERR &&
                  strstr(err, "each side must be 1..65535"),
              "%dx%d: %s", ev.width, ev.height, err);
    }
    cam_event ev = {.kind = CAM_FRAME, .frame_id = 7, .width = 4, .height = 4,
                    .fmt = CAM_PIX_RGB8, .data = px, .size = sizeof px};
    CHECK(cam_frame_to_image(&ev, out, sizeof out, &img, err, sizeof err) == MAA_ERR &&
              strstr(err, "frame 7 has 16 bytes, too few for a 4x4 RGB8 image"), "%s", err);
}

/* The fake camera's rate becomes a frame period in microseconds in a 32-bit
 * register: 0.0001 frames/s overflowed the conversion.  Rate and size are
 * checked against what the fake takes before it starts. */
static void test_fake_refusals(void)
{
    uint8_t px[16] = {0};
    maa_image im = {4, 4, 1, 8, px};
    char err[MAA_ERRLEN] = "";
    cam_fake *f = NULL;
    cam_fake_config fc = {.serial = "RF", .fps = 0.0001, .fmt = CAM_PIX_MONO8};
    CHECK(cam_fake_start(&fc, &im, 1, &f, err, sizeof err) == MAA_ERR &&
              strstr(err, "rate 0.0001 frames/s is outside [0.01, 1000]"), "%s", err);
    cam_fake_stop(f);
    fc.fps = 10;
    fc.width = 4096;
    fc.height = 4;
    CHECK(cam_fake_start(&fc, &im, 1, &f, err, sizeof err) == MAA_ERR &&
              strstr(err, "size 4096x4 is out of range (at most 2048x2048)"), "%s", err);
    cam_fake_stop(f);
}

int main(void)
{
    netns_enter(netns_skip, sizeof netns_skip);
    RUN(test_demosaic_flat);
    RUN(test_frame_geometry);
    RUN(test_fake_refusals);
    RUN(test_replay);
    RUN(test_bad_device);
    RUN(test_fake_mono8);
    RUN(test_fake_rgb8);
    RUN(test_fake_bayer);
    RUN(test_frame_id_wrap);
    RUN(test_software_trigger_rate);
    RUN(test_reconnect_free_run);
    RUN(test_reconnect_software_trigger);
    return CHECK_SUMMARY();
}
