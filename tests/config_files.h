/* config_files.h — what test_config and test_plc_config share: files in a
 * temporary folder, text captured from a writer, a load that must fail with
 * an exact FILE:LINE:COL message and leave the config untouched, and the
 * committed example file and docs table compared with their generators.
 * Run from the repository root (tests/run.sh does). */
#ifndef MAA_TEST_CONFIG_FILES_H
#define MAA_TEST_CONFIG_FILES_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/engine.h"
#include "tests/check.h"

static char tmpdir[64];

/* The temporary folder, named after the test program; 0 when made. */
static int make_tmpdir(const char *program)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/%s.XXXXXX", program);
    if (mkdtemp(tmpdir))
        return 0;
    perror("mkdtemp");
    return 1;
}

static void remove_tmpdir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
}

/* Write text to tmpdir/name; returns the path (one static buffer). */
static const char *write_file(const char *name, const char *text, size_t len)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    if (!f)
        return path;
    fwrite(text, 1, len, f);
    fclose(f);
    return path;
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        fwrite(chunk, 1, n, m);
    fclose(f);
    fclose(m);
    return buf;
}

/* What fn writes. */
static char *capture(void (*fn)(FILE *))
{
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    fn(m);
    fclose(m);
    return buf;
}

/* A config type's loader, seen through void *. */
typedef int (*config_loader)(const char *path, void *config, char *err, size_t errlen);

/* Load text (len bytes) as a file and expect the error "<path>:<where_msg>";
 * a failed load leaves the caller's config (size bytes) untouched. */
static void expect_load_error(config_loader load, size_t size, const char *text, size_t len,
                              const char *where_msg, int line)
{
    const char *path = write_file("bad.yaml", text, len);
    void *c = malloc(size), *before = malloc(size);
    memset(c, 0xA5, size);
    memcpy(before, c, size);
    char err[MAA_ERRLEN] = "", want[MAA_ERRLEN];
    snprintf(want, sizeof want, "%s:%s", path, where_msg);
    int rc = load(path, c, err, sizeof err);
    CHECK(rc == MAA_ERR, "line %d: loaded, expected %s", line, where_msg);
    CHECK(strcmp(err, want) == 0, "line %d:\n    got  %s\n    want %s", line, err, want);
    CHECK(memcmp(c, before, size) == 0, "line %d: config changed by a failed load", line);
    free(c);
    free(before);
}

/* Leave text at out, for a developer to copy over the committed file. */
static void leave(const char *out, const char *text)
{
    FILE *f = fopen(out, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* Compare the committed file with the generated text; on a mismatch leave
 * the generated one under build/ so that it can be copied over. */
static void check_generated(const char *committed, const char *generated, const char *out)
{
    char *have = read_all(committed);
    CHECK(have != NULL, "cannot read %s (run from the repository root)", committed);
    if (have && strcmp(have, generated) != 0) {
        leave(out, generated);
        CHECK(0, "%s is not the generated text; see %s", committed, out);
    }
    free(have);
}

/* Every key of the dump d ("section.key = value" lines, cut up by strtok)
 * appears in the example doc as " key: ". */
static void check_every_key_shown(char *d, const char *doc)
{
    for (char *line = strtok(d, "\n"); line; line = strtok(NULL, "\n")) {
        char needle[96];
        snprintf(needle, sizeof needle, " %.*s: ", (int)strcspn(strchr(line, '.') + 1, " "),
                 strchr(line, '.') + 1);
        CHECK(strstr(doc, needle) != NULL, "%s missing from the example", needle);
    }
}

/* No line of the dump of the defaults (dd) is in the dump of a full file
 * (dc): the file exercises every row.  Frees both. */
static void check_none_at_default(char *dd, char *dc)
{
    int same = 0;
    for (char *a = strtok(dd, "\n"); a; a = strtok(NULL, "\n"))
        same += strstr(dc, a) != NULL;
    CHECK(same == 0, "%d keys of the full file are at their default", same);
    free(dd);
    free(dc);
}

/* The key table between "<!-- keys: WRITER -->" and "<!-- end of keys -->"
 * in the document md is the one write_table writes now. */
static void check_docs_table(const char *md_path, const char *writer,
                             void (*write_table)(FILE *), const char *out)
{
    char begin[128];
    static const char end[] = "<!-- end of keys -->\n";
    snprintf(begin, sizeof begin, "<!-- keys: %s -->\n", writer);
    char *md = read_all(md_path);
    CHECK(md != NULL, "cannot read %s (run from the repository root)", md_path);
    if (!md)
        return;
    char *table = capture(write_table);
    char *b = strstr(md, begin), *e = b ? strstr(b, end) : NULL;
    CHECK(b && e, "%s lacks the table markers", md_path);
    if (b && e) {
        b += strlen(begin);
        *e = '\0';
        if (strcmp(b, table) != 0) {
            leave(out, table);
            CHECK(0, "%s table differs; see %s", md_path, out);
        }
    }
    free(table);
    free(md);
}

#endif
