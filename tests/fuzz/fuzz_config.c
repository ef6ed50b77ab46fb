/* fuzz_config.c — maad's configuration file (config/config.h
 * maad_config_load): the YAML reader, the key table with its types and
 * bounds, the rules between keys, the resolution of relative paths; and the
 * dump of what loads, which writes the file's strings back out. */
#include "config/config.h"
#include "engine/engine.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    maad_config c;
    char err[MAA_ERRLEN];
    if (maad_config_load(fuzz_file(data, size), &c, err, sizeof err) == MAA_OK)
        maad_config_dump(&c, fuzz_null());
    return 0;
}
