/* fuzz_image.c — the image loaders (engine/engine.h maa_image_load): PNG
 * through libspng, PGM/PPM (P2, P3, P5, P6) and BMP (8-bit palette, 24 and
 * 32-bit) read by engine/image.c; and the preprocessing of an image that
 * loads into the smallest model's input, as maa infer does (8 and 16-bit,
 * 1, 3 and 4 channels, resized up or down). */
#include "engine/engine.h"
#include "tests/fuzz/fuzz.h"

/* The smallest model size the model file allows. */
#define S 40

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    maa_image img;
    char err[MAA_ERRLEN];
    if (maa_image_load(fuzz_file(data, size), &img, err, sizeof err) != MAA_OK)
        return 0;
    static float x[3 * S * S];
    maa_preprocess(&img, S, 3, x, err, sizeof err);
    if (img.channels == 1)
        maa_preprocess(&img, S, 1, x, err, sizeof err);
    maa_image_free(&img);
    return 0;
}
