/* util.c — small helpers shared inside engine/. */
#include <stdarg.h>
#include <stdio.h>

#include "engine/backend.h"

void maa_seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}
