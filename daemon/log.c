/* log.c — journald structured logging, or plain stderr lines.
 *
 * Under systemd the journal gets each record with fields an operator can
 * filter on (journalctl MAAD_VERDICT=reject, MAAD_CAMERA=line1); by hand,
 * stderr gets "2026-11-28T10:15:30.123Z maad[pid]: <level>: message" (UTC).  Without journald's socket (a
 * container) or when the journal refuses a record, stderr gets it, so
 * nothing is lost. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define SD_JOURNAL_SUPPRESS_LOCATION /* CODE_FILE would always be log.c */
#include <systemd/sd-journal.h>

#include "daemon/daemon.h"

static const char *const level_names[] = {
    [MAAD_LOG_ERR] = "error",    [MAAD_LOG_WARNING] = "warning",
    [MAAD_LOG_NOTICE] = "notice", [MAAD_LOG_INFO] = "info",
    [MAAD_LOG_DEBUG] = "debug",
};

int maad_log_level_parse(const char *name, maad_log_level *out)
{
    if (strcmp(name, "err") == 0) {
        *out = MAAD_LOG_ERR;
        return MAA_OK;
    }
    for (int l = MAAD_LOG_ERR; l <= MAAD_LOG_DEBUG; l++)
        if (strcmp(name, level_names[l]) == 0) {
            *out = (maad_log_level)l;
            return MAA_OK;
        }
    return MAA_ERR;
}

maad_log_level maad_log_level_of(int cfg_level)
{
    /* The configuration's names are the syslog levels from debug up. */
    static const maad_log_level of[] = {MAAD_LOG_DEBUG, MAAD_LOG_INFO, MAAD_LOG_NOTICE,
                                        MAAD_LOG_WARNING};
    return cfg_level >= 0 && cfg_level < 4 ? of[cfg_level] : MAAD_LOG_WARNING;
}

const char *maad_log_level_name(maad_log_level l)
{
    return l >= MAAD_LOG_ERR && l <= MAAD_LOG_DEBUG ? level_names[l] : "?";
}

const char *maad_outcome_name(maad_outcome v)
{
    switch (v) {
    case MAAD_PASS: return "pass";
    case MAAD_REJECT: return "reject";
    case MAAD_UNINSPECTED: return "uninspected";
    }
    return "?";
}

/* systemd sets JOURNAL_STREAM to the dev:ino of the stream it connected to
 * our stderr; if stderr was redirected since, it no longer matches. */
static int stderr_is_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2 || fstat(2, &st) != 0)
        return 0;
    return (unsigned long long)st.st_dev == dev &&
           (unsigned long long)st.st_ino == ino;
}

void maad_log_init(maad_logger *lg, const char *camera, maad_log_level level)
{
    memset(lg, 0, sizeof *lg);
    lg->level = level;
    /* sd_journal_send reports success when journald is absent, so look for
     * its socket here rather than lose records later. */
    lg->journal = (stderr_is_journal() || getenv("INVOCATION_ID") != NULL) &&
                  access("/run/systemd/journal/socket", W_OK) == 0;
    snprintf(lg->camera, sizeof lg->camera, "%s", camera ? camera : "");
    lg->program = "maad";
}

/* fields: "NAME=value" strings already formatted, nfields of them.  A
 * verdict has up to VERDICT_FIELDS; beyond MAX_FIELDS, emit drops them. */
#define MAX_FIELDS 10
#define VERDICT_FIELDS 9
_Static_assert(VERDICT_FIELDS <= MAX_FIELDS, "a verdict's journal fields all fit");

static void emit(const maad_logger *lg, maad_log_level l, const char *msg,
                 const char *const *fields, int nfields)
{
    if (lg->journal) {
        char prio[16], cam[96];
        size_t mlen = strlen(msg) + 9;
        char *m = malloc(mlen);
        struct iovec iov[3 + MAX_FIELDS];
        int n = 0;
        if (m) {
            snprintf(m, mlen, "MESSAGE=%s", msg);
            iov[n++] = (struct iovec){m, strlen(m)};
            snprintf(prio, sizeof prio, "PRIORITY=%d", (int)l);
            iov[n++] = (struct iovec){prio, strlen(prio)};
            if (lg->camera[0]) {
                snprintf(cam, sizeof cam, "MAAD_CAMERA=%s", lg->camera);
                iov[n++] = (struct iovec){cam, strlen(cam)};
            }
            /* iov_base is not const; journald only reads it. */
            for (int i = 0; i < nfields && i < MAX_FIELDS; i++)
                iov[n++] = (struct iovec){(void *)fields[i], strlen(fields[i])};
            int rc = sd_journal_sendv(iov, n);
            free(m);
            if (rc >= 0)
                return;
        }
    }
    /* journald stamps its records itself; a file or terminal needs the time
     * in the line.  UTC, so that lines from hosts in other zones compare. */
    struct timespec ts;
    struct tm tm;
    char when[32];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(stderr, "%s.%03ldZ %s[%d]: %s: %s\n", when, ts.tv_nsec / 1000000, lg->program,
            (int)getpid(), maad_log_level_name(l), msg);
}

static void vlog_fields(const maad_logger *lg, maad_log_level l, const char *const *fields,
                        int nfields, const char *fmt, va_list ap)
{
    if (l > lg->level)
        return;
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    emit(lg, l, msg, fields, nfields);
}

void maad_vlog(const maad_logger *lg, maad_log_level l, const char *fmt,
               va_list ap)
{
    vlog_fields(lg, l, NULL, 0, fmt, ap);
}

void maad_log(const maad_logger *lg, maad_log_level l, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    maad_vlog(lg, l, fmt, ap);
    va_end(ap);
}

void maad_log_fields(const maad_logger *lg, maad_log_level l, const char *const *fields,
                     int nfields, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog_fields(lg, l, fields, nfields, fmt, ap);
    va_end(ap);
}

void maad_log_verdict(const maad_logger *lg, uint64_t seq, const maad_verdict *v)
{
    /* A pass per frame at line rate would flood the journal: debug only. */
    maad_log_level l = v->verdict == MAAD_PASS     ? MAAD_LOG_DEBUG
                       : v->verdict == MAAD_REJECT ? MAAD_LOG_NOTICE
                                                   : MAAD_LOG_WARNING;
    if (l > lg->level)
        return;
    char f[VERDICT_FIELDS][MAAD_REASON_SIZE + 32], msg[MAAD_REASON_SIZE + 256];
    const size_t fl = sizeof f[0];
    int n = 0;
    const char *reason = v->reason;
    /* A camera error belongs to no frame: "frame ?" and no MAAD_FRAME_ID,
     * as the verdict's frame_id is null, rather than the marker's value. */
    char frame[24] = "?";
    if (v->frame_id != MAAD_FRAME_ID_UNKNOWN)
        snprintf(frame, sizeof frame, "%llu", (unsigned long long)v->frame_id);
    snprintf(f[n++], fl, "MAAD_SEQ=%llu", (unsigned long long)seq);
    if (v->frame_id != MAAD_FRAME_ID_UNKNOWN)
        snprintf(f[n++], fl, "MAAD_FRAME_ID=%s", frame);
    snprintf(f[n++], fl, "MAAD_VERDICT=%s", maad_outcome_name(v->verdict));
    if (reason)
        snprintf(f[n++], fl, "MAAD_REASON=%s", reason);
    int judged = v->verdict != MAAD_UNINSPECTED && isfinite(v->score);
    if (judged) {
        snprintf(f[n++], fl, "MAAD_SCORE=%.6g", v->score);
        snprintf(f[n++], fl, "MAAD_MASK_PEAK=%.6g", v->mask_peak);
        snprintf(f[n++], fl, "MAAD_PIXEL_THRESHOLD=%.6g", v->mask_threshold);
    }
    snprintf(f[n++], fl, "MAAD_THRESHOLD=%.6g", v->threshold);
    if (v->model)
        snprintf(f[n++], fl, "MAAD_MODEL=%s", v->model);
    if (judged)
        snprintf(msg, sizeof msg, "seq %llu frame %s: %s, score %.4g, threshold %.4g, "
                 "mask peak %.4g, pixel threshold %.4g%s%s", (unsigned long long)seq,
                 frame, maad_outcome_name(v->verdict), v->score,
                 v->threshold, v->mask_peak, v->mask_threshold, reason ? ": " : "",
                 reason ? reason : "");
    else
        snprintf(msg, sizeof msg, "seq %llu frame %s: %s%s%s",
                 (unsigned long long)seq, frame,
                 maad_outcome_name(v->verdict), reason ? ": " : "",
                 reason ? reason : "");
    const char *fp[VERDICT_FIELDS];
    for (int i = 0; i < n; i++)
        fp[i] = f[i];
    emit(lg, l, msg, fp, n);
}
