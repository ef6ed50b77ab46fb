/* file.c — whole files in, checked before anything is allocated for them.
 *
 * Every loader of the engine (model, image, calibration) reads its file
 * whole through maa_read_file, so that what may stand at a path is judged
 * in one place: the size of a directory or a device says nothing about what
 * read() will return (a directory's stream position is a hash cookie near
 * 2^63 on ext4), so only a regular file is read. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/backend.h"

/* "1 MiB" for the limits in use, bytes otherwise. */
static void size_text(char *buf, size_t n, size_t bytes)
{
    if (bytes >= (1u << 20) && bytes % (1u << 20) == 0)
        snprintf(buf, n, "%zu MiB", bytes >> 20);
    else
        snprintf(buf, n, "%zu bytes", bytes);
}

int maa_read_file(const char *path, size_t max, const char *what, uint8_t **buf, size_t *len,
                  char *err, size_t errlen)
{
    *buf = NULL;
    *len = 0;
    /* O_NONBLOCK: a FIFO at the path must not hang the open until a writer
     * comes; it is refused below like any other file that is not regular. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        maa_seterr(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return MAA_ERR;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        maa_seterr(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        close(fd);
        return MAA_ERR;
    }
    if (!S_ISREG(st.st_mode)) {
        maa_seterr(err, errlen, S_ISDIR(st.st_mode) ? "%s: is a directory, not a file"
                                                    : "%s: not a regular file", path);
        close(fd);
        return MAA_ERR;
    }
    if ((uint64_t)st.st_size > max) {
        char limit[32];
        size_text(limit, sizeof limit, max);
        maa_seterr(err, errlen, "%s: larger than %s, not %s", path, limit, what);
        close(fd);
        return MAA_ERR;
    }
    size_t size = (size_t)st.st_size;
    /* One byte more, a NUL, so that a text can be parsed in place. */
    uint8_t *b = malloc(size + 1);
    if (!b) {
        maa_seterr(err, errlen, "%s: out of memory for %zu bytes", path, size);
        close(fd);
        return MAA_ERR;
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, b + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (r < 0)
                maa_seterr(err, errlen, "%s: read error: %s", path, strerror(errno));
            else
                maa_seterr(err, errlen, "%s: shrank from %zu to %zu bytes while being read",
                           path, size, got);
            free(b);
            close(fd);
            return MAA_ERR;
        }
        got += (size_t)r;
    }
    close(fd);
    b[size] = 0;
    *buf = b;
    *len = size;
    return MAA_OK;
}
