/* fuzz_curve_cert.c — a CURVE certificate as maad, maa watch and maa-plc
 * read it (daemon/daemon.h maad_curve_cert_parse): the input is the file's
 * bytes, in a block of their exact size (not NUL-terminated), as
 * maad_curve_cert_load hands them over. */
#include "daemon/daemon.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_copy(data, size, 0);
    maad_curve_cert c;
    char err[MAA_ERRLEN];
    maad_curve_cert_parse(text, size, "fuzz.key", &c, err, sizeof err);
    free(text);
    return 0;
}
