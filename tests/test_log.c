/* test_log.c — logger: level names and filter, the plain stderr format with
 * its time stamp, and the choice between journal and stderr from the
 * environment. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "daemon/daemon.h"
#include "tests/check.h"

static char captured[8192];

/* Runs fn with stderr sent to a temporary file, then reads it back. */
static void capture(void (*fn)(const maad_logger *), const maad_logger *lg)
{
    char path[] = "/tmp/test_log.XXXXXX";
    int fd = mkstemp(path);
    int saved = dup(2);
    fflush(stderr);
    dup2(fd, 2);
    fn(lg);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    ssize_t n = pread(fd, captured, sizeof captured - 1, 0);
    captured[n > 0 ? n : 0] = '\0';
    close(fd);
    unlink(path);
}

static void test_levels(void)
{
    maad_log_level l;
    CHECK(maad_log_level_parse("debug", &l) == MAA_OK && l == MAAD_LOG_DEBUG);
    CHECK(maad_log_level_parse("info", &l) == MAA_OK && l == MAAD_LOG_INFO);
    CHECK(maad_log_level_parse("notice", &l) == MAA_OK && l == MAAD_LOG_NOTICE);
    CHECK(maad_log_level_parse("warning", &l) == MAA_OK && l == MAAD_LOG_WARNING);
    CHECK(maad_log_level_parse("err", &l) == MAA_OK && l == MAAD_LOG_ERR);
    CHECK(maad_log_level_parse("verbose", &l) == MAA_ERR);
    CHECK(strcmp(maad_log_level_name(MAAD_LOG_NOTICE), "notice") == 0);
    /* The configuration's log.level, by the name both sides give it. */
    for (int c = MAAD_CFG_LOG_DEBUG; c <= MAAD_CFG_LOG_WARNING; c++)
        CHECK(strcmp(maad_log_level_name(maad_log_level_of(c)),
                     maad_config_enum_name("log.level", c)) == 0, "log.level %d", c);
}

static void some_records(const maad_logger *lg)
{
    maad_log(lg, MAAD_LOG_DEBUG, "d %d", 1);
    maad_log(lg, MAAD_LOG_INFO, "i %d", 2);
    maad_log(lg, MAAD_LOG_NOTICE, "n %d", 3);
    maad_log(lg, MAAD_LOG_WARNING, "w %s", "4");
}

static void verdicts(const maad_logger *lg)
{
    maad_verdict pass = {.frame_id = 70, .verdict = MAAD_PASS, .score = 1.0, .threshold = 2.0,
                         .mask_peak = 0.25, .mask_threshold = 0.5};
    maad_verdict reject = {.frame_id = 80, .verdict = MAAD_REJECT, .score = 1.5, .threshold = 2.0,
                           .reason = "defect region in the mask", .evidence = MAA_EVIDENCE_MASK,
                           .mask_peak = 0.75, .mask_threshold = 0.5};
    maad_verdict lost = {.frame_id = 90, .verdict = MAAD_UNINSPECTED, .score = NAN,
                         .threshold = 2.0, .reason = "ring overflow"};
    maad_log_verdict(lg, 7, &pass);
    maad_log_verdict(lg, 8, &reject);
    maad_log_verdict(lg, 9, &lost);
}

/* Every line of captured starts with an ISO-8601 UTC time with milliseconds
 * within a few seconds of now, "2026-11-28T10:15:30.123Z "; those stamps
 * are cut out of captured, so that the rest compares exactly.  0 when a
 * line has no such stamp. */
static int strip_stamps(void)
{
    const time_t now = time(NULL);
    char *in = captured, *out = captured;
    while (*in) {
        struct tm tm;
        memset(&tm, 0, sizeof tm);
        const char *rest = strptime(in, "%Y-%m-%dT%H:%M:%S", &tm);
        if (!rest || rest - in != 19 || rest[0] != '.' || !isdigit((unsigned char)rest[1]) ||
            !isdigit((unsigned char)rest[2]) || !isdigit((unsigned char)rest[3]) ||
            rest[4] != 'Z' || rest[5] != ' ' || labs((long)(timegm(&tm) - now)) > 5)
            return 0;
        char *eol = strchr(rest + 6, '\n');
        size_t n = eol ? (size_t)(eol + 1 - (rest + 6)) : strlen(rest + 6);
        memmove(out, rest + 6, n);
        out += n;
        in = (char *)rest + 6 + n;
    }
    *out = '\0';
    return 1;
}

static void test_stderr_format_and_filter(void)
{
    unsetenv("JOURNAL_STREAM");
    unsetenv("INVOCATION_ID");
    maad_logger lg;
    maad_log_init(&lg, "cam0", MAAD_LOG_NOTICE);
    CHECK(lg.journal == 0);
    capture(some_records, &lg);
    CHECK(strip_stamps(), "a line without its time: [%s]", captured);
    char want[256];
    snprintf(want, sizeof want, "maad[%d]: notice: n 3\nmaad[%d]: warning: w 4\n",
             (int)getpid(), (int)getpid());
    CHECK(strcmp(captured, want) == 0, "got [%s]", captured);

    maad_log_init(&lg, "cam0", MAAD_LOG_DEBUG);
    capture(some_records, &lg);
    CHECK(strstr(captured, ": debug: d 1\n") && strstr(captured, ": info: i 2\n"),
          "got [%s]", captured);

    maad_log_init(&lg, "cam0", MAAD_LOG_INFO);
    capture(verdicts, &lg);
    CHECK(!strstr(captured, "seq 7"), "a pass is debug: [%s]", captured);
    CHECK(strstr(captured, ": notice: seq 8 frame 80: reject, score 1.5, threshold 2, "
                           "mask peak 0.75, pixel threshold 0.5: defect region in the mask\n"),
          "got [%s]", captured);
    CHECK(strstr(captured, ": warning: seq 9 frame 90: uninspected: ring overflow\n"),
          "got [%s]", captured);
}

static void test_journal_detection(void)
{
    int journald = access("/run/systemd/journal/socket", W_OK) == 0;
    maad_logger lg;
    struct stat st;
    char js[64];
    unsetenv("INVOCATION_ID");
    fstat(2, &st);
    snprintf(js, sizeof js, "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino);
    setenv("JOURNAL_STREAM", js, 1);
    maad_log_init(&lg, NULL, MAAD_LOG_INFO);
    CHECK(lg.journal == journald, "JOURNAL_STREAM %s names stderr", js);
    CHECK(lg.camera[0] == '\0');
    /* stderr redirected since systemd set it: not the journal. */
    snprintf(js, sizeof js, "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino + 1);
    setenv("JOURNAL_STREAM", js, 1);
    maad_log_init(&lg, NULL, MAAD_LOG_INFO);
    CHECK(lg.journal == 0);
    setenv("JOURNAL_STREAM", "garbage", 1);
    maad_log_init(&lg, NULL, MAAD_LOG_INFO);
    CHECK(lg.journal == 0);
    unsetenv("JOURNAL_STREAM");
    setenv("INVOCATION_ID", "0123456789abcdef0123456789abcdef", 1);
    maad_log_init(&lg, NULL, MAAD_LOG_INFO);
    CHECK(lg.journal == journald);
    unsetenv("INVOCATION_ID");
}

/* A camera error has no frame id: the line says so rather than print
 * MAAD_FRAME_ID_UNKNOWN's value. */
static void unknown_frame(const maad_logger *lg)
{
    maad_verdict v = {.frame_id = MAAD_FRAME_ID_UNKNOWN, .verdict = MAAD_UNINSPECTED,
                      .score = NAN, .threshold = 2.0,
                      .reason = "camera error: control lost; reconnecting"};
    maad_log_verdict(lg, 10, &v);
}

static void test_unknown_frame_id(void)
{
    unsetenv("JOURNAL_STREAM");
    unsetenv("INVOCATION_ID");
    maad_logger lg;
    maad_log_init(&lg, "cam0", MAAD_LOG_INFO);
    capture(unknown_frame, &lg);
    CHECK(strstr(captured, ": warning: seq 10 frame ?: uninspected: camera error: control "
                           "lost; reconnecting\n"), "got [%s]", captured);
    CHECK(!strstr(captured, "18446744073709551615"), "got [%s]", captured);
}

/* A reason as long as a verdict carries (MAAD_REASON_SIZE) is logged whole. */
static char long_reason[MAAD_REASON_SIZE];

static void long_verdict(const maad_logger *lg)
{
    maad_verdict v = {.frame_id = 5, .verdict = MAAD_UNINSPECTED, .score = NAN,
                      .threshold = 2.0, .reason = long_reason};
    maad_log_verdict(lg, 11, &v);
}

static void test_long_reason(void)
{
    unsetenv("JOURNAL_STREAM");
    unsetenv("INVOCATION_ID");
    memset(long_reason, 'r', sizeof long_reason - 1);
    memcpy(long_reason + sizeof long_reason - 5, "end", 4);
    maad_logger lg;
    maad_log_init(&lg, "cam0", MAAD_LOG_INFO);
    capture(long_verdict, &lg);
    char want[sizeof long_reason + 64];
    snprintf(want, sizeof want, ": warning: seq 11 frame 5: uninspected: %s\n", long_reason);
    CHECK(strstr(captured, want), "reason cut: %zu bytes logged", strlen(captured));
}

/* Under systemd without journald (a container) records must still be seen. */
static void test_journal_fallback(void)
{
    if (access("/run/systemd/journal/socket", F_OK) == 0)
        SKIP("journald runs here; records would go to it");
    maad_logger lg;
    setenv("INVOCATION_ID", "0123456789abcdef0123456789abcdef", 1);
    maad_log_init(&lg, "cam0", MAAD_LOG_INFO);
    unsetenv("INVOCATION_ID");
    CHECK(lg.journal == 0);
    capture(verdicts, &lg);
    CHECK(strstr(captured, ": notice: seq 8 frame 80: reject") != NULL,
          "got [%s]", captured);
}

int main(void)
{
    RUN(test_levels);
    RUN(test_stderr_format_and_filter);
    RUN(test_unknown_frame_id);
    RUN(test_long_reason);
    RUN(test_journal_detection);
    RUN(test_journal_fallback);
    return CHECK_SUMMARY();
}
