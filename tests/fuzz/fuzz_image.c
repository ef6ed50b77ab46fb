/* fuzz_image.c — the image loaders (engine/engine.h maa_image_load): PNG
 * through libspng, PGM/PPM (P2, P3, P5, P6) and BMP (8-bit palette, 24 and
 * 32-bit) read by engine/image.c; and the preprocessing of an image that
 * loads into the smallest model's input, as maa infer does (8 and 16-bit,
 * 1, 3 and 4 channels, resized up or down). */
#include "engine/engine.h"
#include "tests/fuzz/fuzz.h"

/* The smallest model size the model file allows. */
#define S 40

/* Into a block of exactly the model's input, so that a write past it is
 * caught. */
static void preprocess(const maa_image *img, int c)
{
    float *x = malloc(sizeof(float) * c * S * S);
    char err[MAA_ERRLEN];
    if (!x)
        abort();
    maa_preprocess(img, S, c, x, err, sizeof err);
    free(x);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    maa_image img;
    char err[MAA_ERRLEN];
    if (maa_image_load(fuzz_file(data, size), &img, err, sizeof err) != MAA_OK)
        return 0;
    preprocess(&img, 3);
    if (img.channels == 1)
        preprocess(&img, 1);
    maa_image_free(&img);
    return 0;
}
