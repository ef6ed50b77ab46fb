/* test_curve.c — CURVE certificates (daemon/curve.c): what maa keygen
 * writes reads back and is refused where a secret would leak or a file
 * would be replaced; pyzmq's and CZMQ's layout parses; broken files are
 * named in the message.  The sockets that use them: test_publish. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "daemon/daemon.h"
#include "tests/check.h"

static char dir[64];

static void write_text(const char *name, const char *text, mode_t mode)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    chmod(path, mode);
}

static int load(const char *name, int want_secret, maad_curve_cert *c, char *err, size_t n)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return maad_curve_cert_load(path, want_secret, c, err, n);
}

static void test_keygen_round_trip(void)
{
    maad_curve_cert made, pub, sec;
    char err[MAA_ERRLEN] = "";
    CHECK(maad_curve_cert_write(dir, "maad", &made, err, sizeof err) == MAA_OK, "%s", err);
    CHECK(strlen(made.public_key) == 40 && strlen(made.secret_key) == 40);
    CHECK(load("maad.key", 0, &pub, err, sizeof err) == MAA_OK, "%s", err);
    CHECK(strcmp(pub.public_key, made.public_key) == 0 && !pub.has_secret);
    CHECK(load("maad.key_secret", 1, &sec, err, sizeof err) == MAA_OK, "%s", err);
    CHECK(strcmp(sec.secret_key, made.secret_key) == 0 && sec.has_secret);
    struct stat st;
    char path[256];
    snprintf(path, sizeof path, "%s/maad.key_secret", dir);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600, "mode %o", st.st_mode & 0777);
    /* Never over an existing key: that would lock out every peer holding
     * the old public half. */
    CHECK(maad_curve_cert_write(dir, "maad", &made, err, sizeof err) == MAA_ERR);
    CHECK(strstr(err, "exists already") != NULL, "%s", err);
    CHECK(load("maad.key_secret", 1, &sec, err, sizeof err) == MAA_OK, "%s", err);
    CHECK(strcmp(sec.public_key, pub.public_key) == 0, "the first pair is kept");
    /* The public half where the secret is wanted */
    CHECK(load("maad.key", 1, &sec, err, sizeof err) == MAA_ERR);
    CHECK(strstr(err, "no secret-key") != NULL, "%s", err);
}

static void test_secret_readable_by_others(void)
{
    maad_curve_cert c;
    char err[MAA_ERRLEN] = "";
    CHECK(maad_curve_cert_write(dir, "leaky", &c, err, sizeof err) == MAA_OK, "%s", err);
    char path[256];
    snprintf(path, sizeof path, "%s/leaky.key_secret", dir);
    chmod(path, 0644);
    CHECK(maad_curve_cert_load(path, 1, &c, err, sizeof err) == MAA_ERR);
    CHECK(strstr(err, "readable by others") != NULL && strstr(err, "0644"), "%s", err);
    chmod(path, 0640); /* group: root:maad 0640 is how a service reads it */
    CHECK(maad_curve_cert_load(path, 1, &c, err, sizeof err) == MAA_OK, "%s", err);
}

/* The layout pyzmq's zmq.auth.create_certificates and CZMQ's zcert write. */
static void test_foreign_layout(void)
{
    char pub[41], sec[41], text[1024], err[MAA_ERRLEN] = "";
    CHECK(zmq_curve_keypair(pub, sec) == 0);
    snprintf(text, sizeof text,
             "#   ****  Generated on 2026-12-04 12:00:00.000000 by pyzmq  ****\n"
             "#   ZeroMQ CURVE **Secret** Certificate\n"
             "#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.\n\n"
             "metadata\n"
             "curve\n"
             "    public-key = \"%s\"\r\n"
             "    secret-key = \"%s\"\n", pub, sec);
    write_text("py.key_secret", text, 0600);
    maad_curve_cert c;
    CHECK(load("py.key_secret", 1, &c, err, sizeof err) == MAA_OK, "%s", err);
    CHECK(strcmp(c.public_key, pub) == 0 && strcmp(c.secret_key, sec) == 0);
}

static void test_broken_files(void)
{
    char pub[41], sec[41], pub2[41], sec2[41], text[1024], err[MAA_ERRLEN];
    zmq_curve_keypair(pub, sec);
    zmq_curve_keypair(pub2, sec2);
    maad_curve_cert c;
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"", "no public-key line"},
        {"metadata\ncurve\n", "no public-key line"},
        {"curve\n    public-key = \"short\"\n", "40 characters of Z85"},
        /* 40 characters, but " is no Z85 digit; the quotes are stripped,
         * the space inside is not */
        {"curve\n    public-key = \"abcdefghij abcdefghijabcdefghijabcdefghi\"\n",
         "40 characters of Z85"},
        {"curve\n    public-key = \"~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~\"\n",
         "40 characters of Z85"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err[0] = '\0';
        CHECK(maad_curve_cert_parse(cases[i].text, strlen(cases[i].text), "x.key", &c, err,
                                    sizeof err) == MAA_ERR, "case %zu", i);
        CHECK(strstr(err, cases[i].want) && strstr(err, "x.key"), "case %zu: %s", i, err);
    }
    /* A secret of another pair: maad would run with a key nobody expects */
    snprintf(text, sizeof text, "curve\n public-key = \"%s\"\n secret-key = \"%s\"\n", pub, sec2);
    CHECK(maad_curve_cert_parse(text, strlen(text), "x.key", &c, err, sizeof err) == MAA_ERR);
    CHECK(strstr(err, "does not belong") != NULL, "%s", err);
    /* A NUL inside: a binary file, not a certificate */
    char bin[] = "curve\n public-key = \"a\0b\"\n";
    CHECK(maad_curve_cert_parse(bin, sizeof bin - 1, "x.key", &c, err, sizeof err) == MAA_ERR);
    CHECK(strstr(err, "not a text file") != NULL, "%s", err);
    /* Files that are not certificates at all */
    CHECK(maad_curve_cert_load(dir, 0, &c, err, sizeof err) == MAA_ERR);
    CHECK(strstr(err, dir) != NULL, "%s", err);
    char *big = calloc(1, 70000);
    memset(big, '#', 69999);
    write_text("big.key", big, 0644);
    free(big);
    CHECK(load("big.key", 0, &c, err, sizeof err) == MAA_ERR);
    CHECK(strstr(err, "larger than") != NULL, "%s", err);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/test_curve.XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_keygen_round_trip);
    RUN(test_secret_readable_by_others);
    RUN(test_foreign_layout);
    RUN(test_broken_files);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
    return CHECK_SUMMARY();
}
