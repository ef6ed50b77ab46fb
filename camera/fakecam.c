/* fakecam.c — an in-process GigE Vision camera (Aravis's fake camera) that
 * serves a list of images instead of Aravis's test pattern. */
#include "camera/camera.h"

#include <arv.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(CAM_FAKE_MAX_SIDE == ARV_FAKE_CAMERA_SENSOR_WIDTH &&
                   CAM_FAKE_MAX_SIDE == ARV_FAKE_CAMERA_SENSOR_HEIGHT,
               "camera.h's CAM_FAKE_MAX_SIDE is Aravis's fake sensor");

struct fake_image {
    int width, height;
    uint8_t *rgb; /* RGB8, the image's own size */
};

struct cam_fake {
    ArvGvFakeCamera *gv;
    struct fake_image *imgs;
    int nimgs;
    atomic_int next;          /* only the fake camera's thread advances it */
    _Atomic uint64_t frames;
    char device_id[96];
};

/* Colour (0 R, 1 G, 2 B) of a Bayer site; layouts named by their first two
 * rows' first two pixels. */
static int bayer_site(ArvPixelFormat pf, int x, int y)
{
    static const int rg[4] = {0, 1, 1, 2}, gr[4] = {1, 0, 2, 1},
                     gb[4] = {1, 2, 0, 1}, bg[4] = {2, 1, 1, 0};
    const int *l = pf == ARV_PIXEL_FORMAT_BAYER_RG_8   ? rg
                   : pf == ARV_PIXEL_FORMAT_BAYER_GR_8 ? gr
                   : pf == ARV_PIXEL_FORMAT_BAYER_GB_8 ? gb
                                                       : bg;
    return l[(y & 1) * 2 + (x & 1)];
}

/* Runs on the fake camera's thread, under its fill-pattern lock. */
static void fill(ArvBuffer *buffer, void *data, guint32 exposure_us, guint32 gain,
                 ArvPixelFormat pf)
{
    (void)exposure_us;
    (void)gain;
    cam_fake *f = data;
    /* The buffer's received size and image parts are set only after the
     * fill; its allocation was checked against the payload before. */
    ArvFakeCamera *fc = arv_gv_fake_camera_get_fake_camera(f->gv);
    size_t size = arv_fake_camera_get_payload(fc);
    uint8_t *px = (uint8_t *)arv_buffer_get_data(buffer, NULL);
    guint32 w = 0, h = 0;
    arv_fake_camera_read_register(fc, ARV_FAKE_CAMERA_REGISTER_WIDTH, &w);
    arv_fake_camera_read_register(fc, ARV_FAKE_CAMERA_REGISTER_HEIGHT, &h);
    int bpp = pf == ARV_PIXEL_FORMAT_RGB_8_PACKED ? 3 : 1;
    bool bayer = pf == ARV_PIXEL_FORMAT_BAYER_RG_8 || pf == ARV_PIXEL_FORMAT_BAYER_GR_8 ||
                 pf == ARV_PIXEL_FORMAT_BAYER_GB_8 || pf == ARV_PIXEL_FORMAT_BAYER_BG_8;
    if (!px || !w || !h || size < (size_t)w * h * bpp)
        return;
    if (pf != ARV_PIXEL_FORMAT_MONO_8 && pf != ARV_PIXEL_FORMAT_RGB_8_PACKED && !bayer) {
        memset(px, 0, size); /* a format nobody here reads (Mono16) */
        return;
    }
    int i = atomic_load(&f->next);
    atomic_store(&f->next, (i + 1) % f->nimgs);
    const struct fake_image *im = &f->imgs[i];
    for (int y = 0; y < (int)h; y++) {
        const uint8_t *row = im->rgb + (size_t)((int64_t)y * im->height / h) * im->width * 3;
        uint8_t *o = px + (size_t)y * w * bpp;
        for (int x = 0; x < (int)w; x++) {
            const uint8_t *p = row + (size_t)((int64_t)x * im->width / w) * 3;
            if (bpp == 3)
                memcpy(o + 3 * x, p, 3);
            else if (bayer)
                o[x] = p[bayer_site(pf, x, y)];
            else
                o[x] = (uint8_t)((299 * p[0] + 587 * p[1] + 114 * p[2] + 500) / 1000);
        }
    }
    atomic_fetch_add(&f->frames, 1);
}

static int to_rgb(const maa_image *im, struct fake_image *out)
{
    size_t n = (size_t)im->width * im->height;
    out->width = im->width;
    out->height = im->height;
    out->rgb = malloc(n * 3);
    if (!out->rgb)
        return MAA_ERR;
    const uint8_t *p8 = im->data;
    const uint16_t *p16 = im->data;
    for (size_t i = 0; i < n; i++)
        for (int c = 0; c < 3; c++) {
            size_t k = i * im->channels + (im->channels >= 3 ? c : 0);
            out->rgb[3 * i + c] = (uint8_t)(im->depth == 16 ? p16[k] >> 8 : p8[k]);
        }
    return MAA_OK;
}

static const ArvPixelFormat arv_fmt[] = {
    [CAM_PIX_MONO8] = ARV_PIXEL_FORMAT_MONO_8,
    [CAM_PIX_RGB8] = ARV_PIXEL_FORMAT_RGB_8_PACKED,
    [CAM_PIX_BAYER_RG8] = ARV_PIXEL_FORMAT_BAYER_RG_8,
    [CAM_PIX_BAYER_GR8] = ARV_PIXEL_FORMAT_BAYER_GR_8,
    [CAM_PIX_BAYER_GB8] = ARV_PIXEL_FORMAT_BAYER_GB_8,
    [CAM_PIX_BAYER_BG8] = ARV_PIXEL_FORMAT_BAYER_BG_8,
};

int cam_fake_start(const cam_fake_config *cfg, const maa_image *images, int n,
                   cam_fake **out, char *err, size_t errlen)
{
    *out = NULL;
    const char *addr = cfg->address ? cfg->address : "127.0.0.1";
    const char *serial = cfg->serial ? cfg->serial : "MAA0";
    char why[160] = "";
    if (n < 1) {
        snprintf(err, errlen, "fake camera %s: no images to serve", serial);
        return MAA_ERR;
    }
    if ((unsigned)cfg->fmt >= sizeof arv_fmt / sizeof arv_fmt[0])
        snprintf(why, sizeof why, "pixel format %d is not known", (int)cfg->fmt);
    else if (cfg->fps != 0 && !(cfg->fps >= CAM_FAKE_MIN_FPS && cfg->fps <= CAM_FAKE_MAX_FPS))
        snprintf(why, sizeof why, "rate %g frames/s is outside [%g, %g]", cfg->fps,
                 CAM_FAKE_MIN_FPS, CAM_FAKE_MAX_FPS);
    else if (cfg->width < 0 || cfg->height < 0 || cfg->width > CAM_FAKE_MAX_SIDE ||
             cfg->height > CAM_FAKE_MAX_SIDE)
        snprintf(why, sizeof why, "size %dx%d is out of range (at most %dx%d)", cfg->width,
                 cfg->height, CAM_FAKE_MAX_SIDE, CAM_FAKE_MAX_SIDE);
    for (int i = 0; !*why && i < n; i++) {
        const maa_image *im = &images[i];
        if (im->width <= 0 || im->height <= 0 || !im->data ||
            (im->depth != 8 && im->depth != 16) || im->channels < 1 || im->channels > 4)
            snprintf(why, sizeof why, "image %d is not 8/16-bit with 1 to 4 channels", i);
    }
    if (*why) {
        snprintf(err, errlen, "fake camera %s: %s", serial, why);
        return MAA_ERR;
    }
    cam_fake *f = calloc(1, sizeof *f);
    if (f)
        f->imgs = calloc((size_t)n, sizeof *f->imgs);
    for (int i = 0; f && f->imgs && i < n; i++, f->nimgs++)
        if (to_rgb(&images[i], &f->imgs[i]) != MAA_OK)
            break;
    if (!f || !f->imgs || f->nimgs < n) {
        snprintf(err, errlen, "fake camera %s: out of memory", serial);
        cam_fake_stop(f);
        return MAA_ERR;
    }
    snprintf(f->device_id, sizeof f->device_id, "Aravis-Fake-%s", serial);

    f->gv = arv_gv_fake_camera_new(addr, serial);
    if (!f->gv || !arv_gv_fake_camera_is_running(f->gv)) {
        snprintf(err, errlen, "fake camera %s: cannot serve GigE Vision on %s "
                 "(no such interface, or another camera holds its port 3956)", serial, addr);
        cam_fake_stop(f);
        return MAA_ERR;
    }
    ArvFakeCamera *fc = arv_gv_fake_camera_get_fake_camera(f->gv);
    int w = cfg->width ? cfg->width : images[0].width;
    int h = cfg->height ? cfg->height : images[0].height;
    if (w > CAM_FAKE_MAX_SIDE)
        w = CAM_FAKE_MAX_SIDE;
    if (h > CAM_FAKE_MAX_SIDE)
        h = CAM_FAKE_MAX_SIDE;
    arv_fake_camera_write_register(fc, ARV_FAKE_CAMERA_REGISTER_WIDTH, (guint32)w);
    arv_fake_camera_write_register(fc, ARV_FAKE_CAMERA_REGISTER_HEIGHT, (guint32)h);
    arv_fake_camera_write_register(fc, ARV_FAKE_CAMERA_REGISTER_PIXEL_FORMAT, arv_fmt[cfg->fmt]);
    if (cfg->fps > 0) {
        arv_fake_camera_write_register(fc, ARV_FAKE_CAMERA_REGISTER_ACQUISITION_FRAME_PERIOD_US,
                                       (guint32)(1e6 / cfg->fps));
        arv_fake_camera_set_trigger_frequency(fc, cfg->fps);
    }
    arv_fake_camera_set_fill_pattern(fc, fill, f);
    *out = f;
    return MAA_OK;
}

const char *cam_fake_device_id(const cam_fake *f)
{
    return f->device_id;
}

uint64_t cam_fake_frames(const cam_fake *f)
{
    return atomic_load(&((cam_fake *)f)->frames);
}

void cam_fake_stop(cam_fake *f)
{
    if (!f)
        return;
    if (f->gv)
        g_object_unref(f->gv); /* joins the fake camera's thread */
    for (int i = 0; f->imgs && i < f->nimgs; i++)
        free(f->imgs[i].rgb);
    free(f->imgs);
    free(f);
}
