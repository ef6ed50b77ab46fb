/* fuzz_plc_config.c — maa-plc's configuration file (config/config.h
 * maa_plc_config_load): the same loader as maad's with the cameras
 * sequence, its entries and their rules; and the dump of what loads. */
#include "config/config.h"
#include "engine/engine.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    maa_plc_config c;
    char err[MAA_ERRLEN];
    if (maa_plc_config_load(fuzz_file(data, size), &c, err, sizeof err) == MAA_OK)
        maa_plc_config_dump(&c, fuzz_null());
    return 0;
}
