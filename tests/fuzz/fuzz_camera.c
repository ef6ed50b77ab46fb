/* fuzz_camera.c — a camera's frame into the model's input, as maad's worker
 * takes it (camera/camera.h cam_frame_to_image, then engine/engine.h
 * maa_preprocess): Mono8 and RGB8 copied, the four Bayer layouts
 * demosaiced, then resized to the model's size and scaled.
 *
 * The input is a frame as a GigE Vision camera describes it: width and
 * height (32-bit little-endian each, as the stream's leader carries them:
 * a hostile camera chooses any), the pixel format, the model's channels and
 * size, then the pixels, as many as there are, whatever the sides claim
 * (cam_frame_to_image checks them against the sides). */
#include "camera/camera.h"
#include "tests/fuzz/fuzz.h"

enum { HEADER = 11 };

static int32_t le32(const uint8_t *p)
{
    return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                     (uint32_t)p[3] << 24);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < HEADER)
        return 0;
    cam_event ev = {.kind = CAM_FRAME,
                    .width = le32(data),
                    .height = le32(data + 4),
                    .fmt = (cam_pixfmt)(data[8] % (CAM_PIX_BAYER_BG8 + 1)),
                    .data = data + HEADER,
                    .size = size - HEADER};
    int channels = data[9] & 1 ? 3 : 1, side = 1 + data[10] % 64;
    /* The worker converts into a scratch buffer of three times the ring's
     * slot (daemon/worker.c), which holds the camera's largest frame: here,
     * this one's bytes. */
    size_t bytes = 3 * ev.size;
    uint8_t *buf = malloc(bytes);
    if (!buf && bytes)
        abort();
    maa_image img;
    char err[MAA_ERRLEN];
    if (cam_frame_to_image(&ev, buf, bytes, &img, err, sizeof err) == MAA_OK) {
        /* Exactly the model's input, so that a write past it is caught. */
        float *x = malloc(sizeof(float) * (size_t)channels * side * side);
        if (!x)
            abort();
        maa_preprocess(&img, side, channels, x, err, sizeof err);
        free(x);
    }
    free(buf);
    return 0;
}
