/* metrics.c — the Prometheus endpoint: GET /metrics over HTTP, answered on
 * libmicrohttpd's own thread with the text exposition format (version
 * 0.0.4) that the caller's collect function writes (see daemon.h and
 * docs/operations.md, "Metrics").
 *
 * The server never touches the worker's data itself: collect reads
 * snapshots that the worker, the publisher, the camera and the archive
 * hand out under their own short locks or as atomics, so a scrape costs
 * the line nothing but a copy.  Connections are few and short (a
 * Prometheus server every 15 s or so): a small limit and timeout keep a
 * client that connects and says nothing from holding the port. */
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "daemon/daemon.h"

#define CONNECTION_LIMIT 16
#define CONNECTION_TIMEOUT_S 10
#define CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct maad_metrics {
    struct MHD_Daemon *mhd;
    maad_collect_fn collect;
    void *user;
    const maad_logger *log;
};

struct maad_text {
    char *buf;
    size_t len, cap;
    int failed;                 /* out of memory: the scrape fails (500) */
};

void maad_text_printf(maad_text *t, const char *fmt, ...)
{
    if (t->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = 1;
            return;
        }
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = (t->cap + (size_t)n + 1) * 2;
        char *b = realloc(t->buf, cap);
        if (!b) {
            t->failed = 1;
            return;
        }
        t->buf = b;
        t->cap = cap;
    }
}

void maad_metric_head(maad_text *t, const char *name, const char *type, const char *help)
{
    maad_text_printf(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Prometheus reads Go's float syntax: +Inf, -Inf and NaN by those names. */
static void value(maad_text *t, double v)
{
    if (v != v)
        maad_text_printf(t, "NaN\n");
    else if (v > 1.7976931348623157e308)
        maad_text_printf(t, "+Inf\n");
    else if (v < -1.7976931348623157e308)
        maad_text_printf(t, "-Inf\n");
    else
        maad_text_printf(t, "%.17g\n", v);
}

void maad_metric(maad_text *t, const char *name, const char *labels, double v)
{
    maad_text_printf(t, "%s{%s} ", name, labels);
    value(t, v);
}

void maad_metric_hist(maad_text *t, const char *name, const char *labels, const maad_hist *h,
                      const double *le, int n)
{
    uint64_t cum = 0;
    for (int i = 0; i < n; i++) {
        cum += h->bucket[i];
        maad_text_printf(t, "%s_bucket{%s,le=\"%.17g\"} %llu\n", name, labels, le[i],
                         (unsigned long long)cum);
    }
    maad_text_printf(t, "%s_bucket{%s,le=\"+Inf\"} %llu\n", name, labels,
                     (unsigned long long)h->count);
    maad_text_printf(t, "%s_sum{%s} ", name, labels);
    value(t, h->sum);
    maad_text_printf(t, "%s_count{%s} %llu\n", name, labels, (unsigned long long)h->count);
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, char *body, size_t len,
                             enum MHD_ResponseMemoryMode mode, const char *type)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, mode);
    if (!r) {
        if (mode == MHD_RESPMEM_MUST_FREE)
            free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    enum MHD_Result ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_len, void **con_cls)
{
    (void)version;
    (void)upload;
    (void)con_cls;
    maad_metrics *m = cls;
    static char not_found[] = "maad serves its metrics at /metrics\n";
    static char bad_method[] = "only GET and HEAD\n";
    static char no_memory[] = "out of memory\n";
    /* A body sent with the request is not read: a GET has none, anything
     * else is refused. */
    if (*upload_len)
        *upload_len = 0;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, bad_method, sizeof bad_method - 1,
                     MHD_RESPMEM_PERSISTENT, "text/plain");
    if (strcmp(url, "/metrics") != 0)
        return reply(c, MHD_HTTP_NOT_FOUND, not_found, sizeof not_found - 1,
                     MHD_RESPMEM_PERSISTENT, "text/plain");
    maad_text t = {.cap = 16384};
    t.buf = malloc(t.cap);
    t.failed = !t.buf;
    if (!t.failed)
        m->collect(m->user, &t);
    if (t.failed) {
        free(t.buf);
        return reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, no_memory, sizeof no_memory - 1,
                     MHD_RESPMEM_PERSISTENT, "text/plain");
    }
    return reply(c, MHD_HTTP_OK, t.buf, t.len, MHD_RESPMEM_MUST_FREE, CONTENT_TYPE);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    maad_metrics *m = cls;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n && line[n - 1] == '\n')
        line[--n] = '\0';
    if (m->log)
        maad_log(m->log, MAAD_LOG_WARNING, "metrics: %s", line);
}

int maad_metrics_address(const char *listen, struct sockaddr_storage *addr, unsigned *len,
                         char *err, size_t errlen)
{
    char host[256];
    const char *colon = strrchr(listen, ':');
    const char *h = listen, *port = colon ? colon + 1 : NULL;
    size_t hl = colon ? (size_t)(colon - listen) : 0;
    if (hl >= 2 && listen[0] == '[' && listen[hl - 1] == ']') {
        h = listen + 1;
        hl -= 2;
    }
    char *end;
    long p = port ? strtol(port, &end, 10) : 0;
    if (!colon || !hl || hl >= sizeof host || !*port || *end || p < 1 || p > 65535) {
        snprintf(err, errlen, "metrics.listen \"%.200s\": want HOST:PORT (e.g. 127.0.0.1:9464, "
                 "[::1]:9464), a port of 1..65535", listen);
        return MAA_ERR;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV},
                    *res = NULL;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "metrics.listen \"%.200s\": %s", listen, gai_strerror(rc));
        return MAA_ERR;
    }
    memcpy(addr, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return MAA_OK;
}

int maad_metrics_start(const char *listen, maad_collect_fn collect, void *user,
                       const maad_logger *log, maad_metrics **out, char *err, size_t errlen)
{
    *out = NULL;
    struct sockaddr_storage addr;
    unsigned len;
    if (maad_metrics_address(listen, &addr, &len, err, errlen) != MAA_OK)
        return MAA_ERR;
    maad_metrics *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(err, errlen, "metrics: out of memory");
        return MAA_ERR;
    }
    m->collect = collect;
    m->user = user;
    m->log = log;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    if (addr.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    /* The port in the address is the one bound; MHD's own is then unused. */
    m->mhd = MHD_start_daemon(flags, 0, NULL, NULL, answer, m, MHD_OPTION_SOCK_ADDR,
                              (struct sockaddr *)&addr, MHD_OPTION_CONNECTION_LIMIT,
                              (unsigned)CONNECTION_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT,
                              (unsigned)CONNECTION_TIMEOUT_S, MHD_OPTION_EXTERNAL_LOGGER,
                              mhd_log, m, MHD_OPTION_END);
    if (!m->mhd) {
        /* libmicrohttpd says why through mhd_log; errno is the bind's. */
        snprintf(err, errlen, "metrics.listen %.200s: cannot serve HTTP there: %s", listen,
                 errno ? strerror(errno) : "libmicrohttpd refused to start");
        free(m);
        return MAA_ERR;
    }
    *out = m;
    return MAA_OK;
}

void maad_metrics_stop(maad_metrics *m)
{
    if (!m)
        return;
    MHD_stop_daemon(m->mhd);
    free(m);
}
