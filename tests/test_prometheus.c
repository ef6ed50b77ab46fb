/* test_prometheus.c — the metrics endpoint's pieces (daemon/metrics.c):
 * metrics.listen's forms and refusals, and the text exposition of counters
 * and histograms (cumulative buckets, +Inf, _sum and _count, Go's names for
 * infinities and NaN).  The server itself, scraped by a real Prometheus:
 * tests/e2e_maad_metrics.sh. */
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon/daemon.h"
#include "tests/check.h"
#include "tests/netns.h"

static char netns_skip[256]; /* empty when the private loopback is up */

static void test_listen_forms(void)
{
    struct sockaddr_storage a;
    unsigned len;
    char err[MAA_ERRLEN];
    CHECK(maad_metrics_address("127.0.0.1:9464", &a, &len, err, sizeof err) == MAA_OK, "%s",
          err);
    CHECK(a.ss_family == AF_INET && ntohs(((struct sockaddr_in *)&a)->sin_port) == 9464);
    CHECK(maad_metrics_address("[::1]:9464", &a, &len, err, sizeof err) == MAA_OK, "%s", err);
    CHECK(a.ss_family == AF_INET6 && ntohs(((struct sockaddr_in6 *)&a)->sin6_port) == 9464);
    CHECK(maad_metrics_address("0.0.0.0:1", &a, &len, err, sizeof err) == MAA_OK, "%s", err);
    static const char *const bad[] = {"127.0.0.1",   "127.0.0.1:",     ":9464",
                                      "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:94x",
                                      "[::1]9464",   ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        CHECK(maad_metrics_address(bad[i], &a, &len, err, sizeof err) == MAA_ERR, "%s", bad[i]);
        CHECK(strstr(err, "metrics.listen") && strstr(err, "HOST:PORT"), "%s: %s", bad[i], err);
    }
    CHECK(maad_metrics_address("no-such-host.invalid:9464", &a, &len, err, sizeof err) ==
          MAA_ERR);
    CHECK(strstr(err, "metrics.listen \"no-such-host.invalid:9464\": ") != NULL, "%s", err);
}

static void collect(void *user, maad_text *t)
{
    (void)user;
    maad_hist h = {.count = 6, .sum = 10.5};
    static const double le[] = {0.5, 1, 2};
    h.bucket[0] = 1; /* <= 0.5 */
    h.bucket[1] = 2; /* (0.5, 1] */
    h.bucket[2] = 0; /* (1, 2] */
    h.bucket[3] = 3; /* > 2 */
    maad_metric_head(t, "x_seconds", "histogram", "A histogram");
    maad_metric_hist(t, "x_seconds", "camera=\"c\"", &h, le, 3);
    maad_metric_head(t, "y_total", "counter", "Counts");
    maad_metric(t, "y_total", "camera=\"c\"", 12345678901.0);
    maad_metric(t, "y_total", "camera=\"d\"", 1.0 / 0.0);
    maad_metric(t, "y_total", "camera=\"e\"", 0.0 / 0.0);
    maad_metric(t, "y_total", "camera=\"f\"", 0.25);
}

/* The body of GET path from 127.0.0.1:port, and its status line. */
static char *get(int port, const char *method, const char *path, char *status, size_t n)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return NULL;
    }
    char req[256];
    int len = snprintf(req, sizeof req, "%s %s HTTP/1.0\r\nHost: x\r\n\r\n", method, path);
    if (write(fd, req, (size_t)len) != len) {
        close(fd);
        return NULL;
    }
    size_t cap = 65536, got = 0;
    char *buf = calloc(1, cap);
    ssize_t r;
    while ((r = read(fd, buf + got, cap - 1 - got)) > 0)
        got += (size_t)r;
    close(fd);
    snprintf(status, n, "%.*s", (int)strcspn(buf, "\r\n"), buf);
    char *body = strstr(buf, "\r\n\r\n");
    char *out = strdup(body ? body + 4 : "");
    free(buf);
    return out;
}

static void test_exposition(void)
{
    if (*netns_skip)
        SKIP("%s", netns_skip);
    maad_metrics *m = NULL;
    char err[MAA_ERRLEN] = "", status[128];
    CHECK(maad_metrics_start("127.0.0.1:9464", collect, NULL, NULL, &m, err, sizeof err) ==
              MAA_OK, "%s", err);
    if (!m)
        return;
    char *body = get(9464, "GET", "/metrics", status, sizeof status);
    CHECK(body && strstr(status, " 200 OK"), "%s", status);
    static const char want[] =
        "# HELP x_seconds A histogram\n"
        "# TYPE x_seconds histogram\n"
        "x_seconds_bucket{camera=\"c\",le=\"0.5\"} 1\n"
        "x_seconds_bucket{camera=\"c\",le=\"1\"} 3\n"
        "x_seconds_bucket{camera=\"c\",le=\"2\"} 3\n"
        "x_seconds_bucket{camera=\"c\",le=\"+Inf\"} 6\n"
        "x_seconds_sum{camera=\"c\"} 10.5\n"
        "x_seconds_count{camera=\"c\"} 6\n"
        "# HELP y_total Counts\n"
        "# TYPE y_total counter\n"
        "y_total{camera=\"c\"} 12345678901\n"
        "y_total{camera=\"d\"} +Inf\n"
        "y_total{camera=\"e\"} NaN\n"
        "y_total{camera=\"f\"} 0.25\n";
    CHECK(body && strcmp(body, want) == 0, "got:\n%s", body ? body : "(nothing)");
    free(body);
    body = get(9464, "GET", "/", status, sizeof status);
    CHECK(strstr(status, " 404 ") != NULL, "%s", status);
    free(body);
    body = get(9464, "DELETE", "/metrics", status, sizeof status);
    CHECK(strstr(status, " 405 ") != NULL, "%s", status);
    free(body);
    /* The port is taken now: a second server says so, naming the key. */
    maad_metrics *m2 = NULL;
    CHECK(maad_metrics_start("127.0.0.1:9464", collect, NULL, NULL, &m2, err, sizeof err) ==
          MAA_ERR);
    CHECK(strstr(err, "metrics.listen 127.0.0.1:9464: cannot serve HTTP there") != NULL, "%s",
          err);
    maad_metrics_stop(m);
}

int main(void)
{
    netns_enter(netns_skip, sizeof netns_skip);
    RUN(test_listen_forms);
    RUN(test_exposition);
    return CHECK_SUMMARY();
}
