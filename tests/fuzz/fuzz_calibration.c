/* fuzz_calibration.c — the calibration file (engine/engine.h
 * maa_calibration_load, contract §5, §6): its YAML events, keys, numbers and
 * the checks between fields. */
#include "engine/engine.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    maa_calibration c;
    char err[MAA_ERRLEN];
    maa_calibration_load(fuzz_file(data, size), &c, err, sizeof err);
    return 0;
}
