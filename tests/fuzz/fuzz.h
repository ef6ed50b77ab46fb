/* fuzz.h — what the libFuzzer harnesses (tests/fuzz/fuzz_*.c) share.
 * Header-only and private to tests/fuzz/; docs/fuzzing.md says how they are
 * built and run. */
#ifndef MAA_FUZZ_H
#define MAA_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* The input as a file that a loader taking a path can open: an anonymous
 * memory file (memfd), rewritten for each input, by its /proc/self/fd name.
 * The loaders then read the bytes exactly as they read a file on disk, and
 * nothing is written to the file system at fuzzing speed.  Aborts when the
 * file cannot be made: the harness would test nothing. */
static inline const char *fuzz_file(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static char path[32];
    if (fd < 0) {
        fd = memfd_create("fuzz-input", 0);
        if (fd < 0) {
            perror("fuzz: memfd_create");
            abort();
        }
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0 || (size && pwrite(fd, data, size, 0) != (ssize_t)size)) {
        perror("fuzz: writing the input file");
        abort();
    }
    return path;
}

/* A copy of n bytes in a block of exactly that size (n + 1 with the NUL
 * that nul asks for): a parser that reads a byte too far then touches
 * memory AddressSanitizer watches, where in the fuzzer's input it would
 * read the next field. */
static inline char *fuzz_copy(const uint8_t *p, size_t n, int nul)
{
    size_t len = n + (nul ? 1 : 0);
    char *c = malloc(len);
    if (!c && len)
        abort();
    if (n)
        memcpy(c, p, n);
    if (nul)
        c[n] = '\0';
    return c;
}

/* Where a harness writes what a loaded file turns into (a dump, a report),
 * so that the writing runs too, unseen. */
static inline FILE *fuzz_null(void)
{
    static FILE *f;
    if (!f && !(f = fopen("/dev/null", "w"))) {
        perror("fuzz: /dev/null");
        abort();
    }
    return f;
}

/* The messages of a subscriber's input, one a line: "TOPIC JSON" (the two
 * parts of a maad message, docs/protocol.md), or "TOPIC" alone for a
 * message of one part (json NULL).  The topic ends at the first space; the
 * JSON may hold any byte but a newline. */
typedef void (*fuzz_message_fn)(void *user, const uint8_t *topic, size_t topic_len,
                                const uint8_t *json, size_t json_len);

static inline void fuzz_messages(const uint8_t *data, size_t size, fuzz_message_fn fn,
                                 void *user)
{
    const uint8_t *end = data + size;
    for (const uint8_t *line = data; line < end;) {
        const uint8_t *nl = memchr(line, '\n', (size_t)(end - line));
        const uint8_t *le = nl ? nl : end;
        const uint8_t *sp = memchr(line, ' ', (size_t)(le - line));
        if (sp)
            fn(user, line, (size_t)(sp - line), sp + 1, (size_t)(le - sp - 1));
        else
            fn(user, line, (size_t)(le - line), NULL, 0);
        line = le + 1;
    }
}

#endif
