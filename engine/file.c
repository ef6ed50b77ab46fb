/* file.c — whole files in, checked before anything is allocated for them,
 * and whole files out, never through a link someone left in the way.
 *
 * Every loader of the project (model, image, calibration, configuration)
 * reads its file whole through maa_read_file, so that what may stand at a
 * path is judged in one place: the size of a directory or a device says
 * nothing about what read() will return (a directory's stream position is
 * a hash cookie near 2^63 on ext4), so only a regular file is read.  Every
 * file the tools write (calibrations, PNGs, reports) goes through
 * maa_write_file. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
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

/* A new file beside path, under a random name, created with O_EXCL: O_CREAT
 * | O_EXCL never opens an existing file nor follows a symbolic link, so a
 * link planted under the name (the fixed PATH.tmp of old was one) fails
 * the write instead of redirecting it.  Mode 0666 less the umask, as fopen
 * creates. */
static int create_beside(const char *path, char *tmp, size_t n, char *err, size_t errlen)
{
    uint64_t r;
    if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r) {
        maa_seterr(err, errlen, "%s: cannot write: no random name: %s", path, strerror(errno));
        return -1;
    }
    if (snprintf(tmp, n, "%s.%016" PRIx64 ".tmp", path, r) >= (int)n) {
        maa_seterr(err, errlen, "%s: cannot write: path too long", path);
        return -1;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0)
        maa_seterr(err, errlen, "%s: cannot write: %s", path, strerror(errno));
    return fd;
}

int maa_write_all(int fd, const void *data, size_t len)
{
    const uint8_t *p = data;
    size_t done = 0;
    while (done < len) {
        ssize_t w = write(fd, p + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return errno;
        /* A write of nothing would repeat for ever: the disk is full. */
        if (w == 0)
            return ENOSPC;
        done += (size_t)w;
    }
    return 0;
}

int maa_write_file(const char *path, const void *data, size_t len, char *err, size_t errlen)
{
    /* A pipe, a terminal or a device (maa eval --json /dev/stdout) is
     * written to as it is: there is no file to replace beside it. */
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        int bad = fd < 0 ? errno : maa_write_all(fd, data, len);
        if (fd >= 0 && close(fd) != 0 && !bad)
            bad = errno;
        if (bad)
            maa_seterr(err, errlen, "%s: cannot write: %s", path, strerror(bad));
        return bad ? MAA_ERR : MAA_OK;
    }
    char tmp[4096];
    int fd = create_beside(path, tmp, sizeof tmp, err, errlen);
    if (fd < 0)
        return MAA_ERR;
    int bad = maa_write_all(fd, data, len);
    if (close(fd) != 0 && !bad)
        bad = errno;
    /* rename replaces whatever stands at path, a link included, without
     * following it; a reader never sees half a file. */
    if (!bad && rename(tmp, path) != 0)
        bad = errno;
    if (bad) {
        maa_seterr(err, errlen, "%s: cannot write: %s", path, strerror(bad));
        unlink(tmp);
        return MAA_ERR;
    }
    return MAA_OK;
}
