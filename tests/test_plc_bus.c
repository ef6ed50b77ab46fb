/* test_plc_bus.c — maa-plc's Modbus side (plc/bus.c) against a PLC made of
 * libmodbus's own server in a thread, on a free 127.0.0.1 port.  The fake
 * PLC acknowledges each mailbox write by copying R+0 to R+6 (at once, after
 * a delay, or never), can stop listening, drop the connection, lose its
 * registers and answer mailbox writes with exceptions; it records every
 * mailbox write and coil write it took.
 *
 * No assertion here is about time: waits have deadlines (EVENTUALLY), and
 * only what happened, and in which order, is checked.  The bus's log goes to
 * stderr, kept in a file the tests search. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <modbus.h>

#include "plc/plc.h"
#include "tests/check.h"

#define MS ((uint64_t)1000000)

/* Polls cond every millisecond until it holds or ms pass; its last value. */
#define EVENTUALLY(cond, ms)                                                 \
    ({                                                                       \
        uint64_t end_ = maad_mono_ns() + (uint64_t)(ms) * MS;                \
        bool ok_;                                                            \
        while (!(ok_ = (cond)) && maad_mono_ns() < end_)                     \
            usleep(1000);                                                    \
        ok_;                                                                 \
    })
/* Long enough for a loaded 2-core machine; the tests wait this only when
 * they fail. */
#define WAIT_MS 10000

/* ---- stderr, kept in a file ------------------------------------------------
 * A file rather than a pipe: a line is in it the moment fprintf returns, so
 * a check right after a log call sees it. */

static int log_fd = -1, saved_stderr = -1;

static void logcap_start(void)
{
    char path[] = "/tmp/test_plc_bus.XXXXXX";
    log_fd = mkstemp(path);
    if (log_fd < 0)
        abort();
    unlink(path);
    /* Every thread's line lands at the end, whatever the offset. */
    fcntl(log_fd, F_SETFL, O_APPEND);
    fflush(stderr);
    saved_stderr = dup(2);
    dup2(log_fd, 2);
}

static size_t log_mark(void)
{
    struct stat st;
    fflush(stderr);
    return fstat(log_fd, &st) == 0 ? (size_t)st.st_size : 0;
}

/* What was logged since mark; free it. */
static char *log_since(size_t mark)
{
    size_t end = log_mark(), n = end > mark ? end - mark : 0;
    char *buf = malloc(n + 1);
    ssize_t got = pread(log_fd, buf, n, (off_t)mark);
    buf[got > 0 ? got : 0] = '\0';
    return buf;
}

/* Occurrences of needle logged since mark. */
static int log_count(size_t mark, const char *needle)
{
    char *buf = log_since(mark);
    int n = 0;
    for (const char *p = buf; (p = strstr(p, needle)); p++)
        n++;
    free(buf);
    return n;
}

/* A sanitizer's report among the lines kept is shown whole: tests/run.sh
 * looks for them in the output. */
static void logcap_end(void)
{
    fflush(stderr);
    char *all = log_since(0);
    if (strstr(all, "Sanitizer") || strstr(all, ": runtime error: "))
        fputs(all, stdout);
    free(all);
    dup2(saved_stderr, 2);
    close(saved_stderr);
    close(log_fd);
}

/* A test's log (its failed checks too) is shown only when it failed. */
#define RUN_LOGGED(fn)                                                       \
    do {                                                                     \
        size_t mark_ = log_mark();                                           \
        RUN(fn);                                                             \
        if (check_cur_failed) {                                              \
            char *log_ = log_since(mark_);                                   \
            if (write(saved_stderr, log_, strlen(log_)) < 0) {               \
                /* nowhere left to say it */                                 \
            }                                                                \
            free(log_);                                                      \
        }                                                                    \
    } while (0)

/* ---- the fake PLC ---------------------------------------------------------- */

enum { ACK_NOW, ACK_NEVER, ACK_DELAYED };
/* A PLC that stopped answering: it drops each request, or it applies a
 * mailbox write and only the reply is lost. */
enum { ANSWER, SILENT_DROP, SILENT_APPLY };

#define R 10 /* plc.mailbox_register in these tests */
#define HEALTHY_COIL 3
#define REJECT_COIL 5
#define MAXREC 8192

typedef struct {
    uint16_t ctr;
    uint32_t part;
    uint16_t decision, reasons, cameras;
} mail;

typedef struct {
    pthread_t th;
    pthread_mutex_t mu;
    int port;
    /* Sockets: only the PLC's thread opens and closes them. */
    int lfd, cfd;
    modbus_t *ctx;
    modbus_mapping_t *map;
    /* Controls, set by the tests under mu. */
    bool quit, listening, drop;
    int ack, ack_delay_ms;
    int exceptions;          /* mailbox writes still to refuse */
    int silent;
    uint64_t ack_due;
    /* What it saw. */
    mail mails[MAXREC];
    int nmails;
    int overwrites;          /* mailbox writes while R+6 != R+0 */
    int coil_addr[MAXREC];
    uint8_t coil_val[MAXREC];
    int ncoils;
    int accepts, requests, health_writes;
} fake_plc;

#define LOCKED(f, stmt)                                                      \
    do {                                                                     \
        pthread_mutex_lock(&(f)->mu);                                        \
        stmt;                                                                \
        pthread_mutex_unlock(&(f)->mu);                                      \
    } while (0)

/* A listening socket on 127.0.0.1:port (0: any free port); -1 on failure. */
static int listen_on(int port)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(s, (struct sockaddr *)&a, sizeof a) != 0 || listen(s, 4) != 0) {
        close(s);
        return -1;
    }
    return s;
}

static int port_of(int s)
{
    struct sockaddr_in a;
    socklen_t n = sizeof a;
    getsockname(s, (struct sockaddr *)&a, &n);
    return ntohs(a.sin_port);
}

/* A port nothing listens on (for a moment: the kernel just handed it out). */
static int free_port(void)
{
    int s = listen_on(0), p = port_of(s);
    close(s);
    return p;
}

static void serve(fake_plc *f, const uint8_t *req, int len)
{
    const int off = modbus_get_header_length(f->ctx);
    const int fc = req[off], addr = req[off + 1] << 8 | req[off + 2];
    uint16_t *t = f->map->tab_registers;
    f->requests++;
    if (f->silent == SILENT_DROP)
        return;
    if (f->silent == SILENT_APPLY) {
        if (fc == MODBUS_FC_WRITE_MULTIPLE_REGISTERS && addr == R && f->nmails < MAXREC) {
            for (int i = 0; i < 6; i++)
                t[R + i] = (uint16_t)(req[off + 6 + 2 * i] << 8 | req[off + 7 + 2 * i]);
            f->mails[f->nmails++] = (mail){t[R], (uint32_t)t[R + 1] << 16 | t[R + 2], t[R + 3],
                                           t[R + 4], t[R + 5]};
        }
        return;
    }
    if (fc == MODBUS_FC_WRITE_MULTIPLE_REGISTERS && addr == R) {
        if (f->exceptions > 0) {
            f->exceptions--;
            modbus_reply_exception(f->ctx, req, MODBUS_EXCEPTION_ILLEGAL_DATA_ADDRESS);
            return;
        }
        if (t[R] != 0 && t[R + 6] != t[R])
            f->overwrites++;
        modbus_reply(f->ctx, req, len, f->map);
        if (f->nmails < MAXREC)
            f->mails[f->nmails++] = (mail){t[R], (uint32_t)t[R + 1] << 16 | t[R + 2], t[R + 3],
                                           t[R + 4], t[R + 5]};
        if (f->ack == ACK_DELAYED)
            f->ack_due = maad_mono_ns() + (uint64_t)f->ack_delay_ms * MS;
        return;
    }
    modbus_reply(f->ctx, req, len, f->map);
    if (fc == MODBUS_FC_WRITE_MULTIPLE_REGISTERS && addr == R + 7)
        f->health_writes++;
    if (fc == MODBUS_FC_WRITE_SINGLE_COIL && f->ncoils < MAXREC) {
        f->coil_addr[f->ncoils] = addr;
        f->coil_val[f->ncoils++] = f->map->tab_bits[addr];
    }
}

static void close_client(fake_plc *f)
{
    if (f->cfd >= 0)
        close(f->cfd);
    f->cfd = -1;
    modbus_set_socket(f->ctx, -1);
}

static void *plc_main(void *arg)
{
    fake_plc *f = arg;
    uint8_t req[MODBUS_TCP_MAX_ADU_LENGTH];
    pthread_mutex_lock(&f->mu);
    while (!f->quit) {
        if (!f->listening && f->lfd >= 0) {
            close(f->lfd);
            f->lfd = -1;
            close_client(f);
        }
        if (f->listening && f->lfd < 0)
            f->lfd = listen_on(f->port);
        if (f->drop) {
            close_client(f);
            f->drop = false;
        }
        struct pollfd p[2] = {{.fd = f->lfd, .events = POLLIN}, {.fd = f->cfd, .events = POLLIN}};
        pthread_mutex_unlock(&f->mu);
        poll(p, 2, 1);
        pthread_mutex_lock(&f->mu);
        if (p[0].revents & POLLIN) {
            int s = f->lfd;
            /* One client at a time, as the bus has one connection. */
            if (modbus_tcp_accept(f->ctx, &s) >= 0) {
                int c = modbus_get_socket(f->ctx);
                modbus_set_socket(f->ctx, f->cfd);
                close_client(f);
                f->cfd = c;
                f->accepts++;
            }
        }
        if (p[1].revents && f->cfd >= 0) {
            modbus_set_socket(f->ctx, f->cfd);
            int n = modbus_receive(f->ctx, req);
            if (n < 0)
                close_client(f);
            else if (n > 0)
                serve(f, req, n);
        }
        uint16_t *t = f->map->tab_registers;
        if (f->ack == ACK_NOW || (f->ack == ACK_DELAYED && f->ack_due && maad_mono_ns() >= f->ack_due)) {
            t[R + 6] = t[R];
            f->ack_due = 0;
        }
    }
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

/* A PLC listening on port (0: a free one). */
static fake_plc *plc_new(int port)
{
    fake_plc *f = calloc(1, sizeof *f);
    pthread_mutex_init(&f->mu, NULL);
    f->ctx = modbus_new_tcp("127.0.0.1", 502);
    f->map = modbus_mapping_new(16, 0, 64, 0);
    f->lfd = listen_on(port);
    f->port = port_of(f->lfd);
    f->cfd = -1;
    f->listening = true;
    pthread_create(&f->th, NULL, plc_main, f);
    return f;
}

static void plc_free(fake_plc *f)
{
    LOCKED(f, f->quit = true);
    pthread_join(f->th, NULL);
    close_client(f);
    if (f->lfd >= 0)
        close(f->lfd);
    modbus_mapping_free(f->map);
    modbus_free(f->ctx);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

static int plc_nmails(fake_plc *f)
{
    int n;
    LOCKED(f, n = f->nmails);
    return n;
}

static mail plc_mail(fake_plc *f, int i)
{
    mail m;
    LOCKED(f, m = f->mails[i]);
    return m;
}

static uint16_t plc_reg(fake_plc *f, int i)
{
    uint16_t v;
    LOCKED(f, v = f->map->tab_registers[i]);
    return v;
}

static int plc_coil(fake_plc *f, int addr)
{
    int v;
    LOCKED(f, v = f->map->tab_bits[addr]);
    return v;
}

static int plc_int(fake_plc *f, const int *field)
{
    int v;
    LOCKED(f, v = *field);
    return v;
}

/* Stops listening and drops the client; returns once done. */
static void plc_stop(fake_plc *f)
{
    LOCKED(f, f->listening = false);
    CHECK(EVENTUALLY(plc_int(f, &f->lfd) < 0, WAIT_MS));
}

static void plc_listen(fake_plc *f)
{
    LOCKED(f, f->listening = true);
    CHECK(EVENTUALLY(plc_int(f, &f->lfd) >= 0, WAIT_MS), "cannot listen on port %d again", f->port);
}

/* ---- the bus side ---------------------------------------------------------- */

static maad_logger lg;

static void config(maa_plc_config *c, int port)
{
    memset(c, 0, sizeof *c);
    snprintf(c->line.name, sizeof c->line.name, "line1");
    snprintf(c->plc.address, sizeof c->plc.address, "127.0.0.1");
    c->plc.port = port;
    c->plc.unit_id = 1;
    c->plc.mailbox_register = R;
    c->plc.healthy_coil = HEALTHY_COIL;
    c->plc.reject_coil = REJECT_COIL;
    c->plc.response_timeout_ms = 500;
    c->plc.ack_timeout_ms = 1000;
    c->plc.health_period_ms = 100;
    c->plc.reconnect_min_ms = 10;
    c->plc.reconnect_max_ms = 40;
    c->plc.queue = 64;
    c->plc.pulse_width_ms = 50;
    c->ncameras = 2;
    snprintf(c->cameras[0].name, sizeof c->cameras[0].name, "groove");
    snprintf(c->cameras[1].name, sizeof c->cameras[1].name, "hook");
    c->cameras[1].offset = 1;
}

static plc_result result(uint32_t part, bool reject)
{
    return (plc_result){.part = part, .reject = reject,
                        .reasons = reject ? PLC_REASON_REJECT : 0, .cameras = reject ? 1 : 0,
                        .t_capture_ns = maad_now_ns(), .t_in_mono_ns = maad_mono_ns()};
}

static void push(plc_bus *b, uint32_t part, bool reject)
{
    plc_result r = result(part, reject);
    plc_bus_push(b, &r);
}

static plc_bus *start(const maa_plc_config *c)
{
    plc_bus *b = NULL;
    char err[256] = "";
    int rc = plc_bus_start(c, &lg, &b, err, sizeof err);
    CHECK(rc == MAA_OK && b, "%s", err);
    return b;
}

static plc_bus_stats stats(plc_bus *b)
{
    plc_bus_stats s;
    plc_bus_get_stats(b, &s);
    return s;
}

/* Whether the PLC took exactly parts first..first+n-1 in order, from mail i0
 * on, with the counters following each other from ctr0. */
static bool mails_in_order(fake_plc *f, int i0, uint32_t first, int n, uint16_t ctr0)
{
    bool ok = plc_nmails(f) == i0 + n;
    for (int i = 0; ok && i < n; i++) {
        mail m = plc_mail(f, i0 + i);
        ok = m.part == first + (uint32_t)i && m.ctr == ctr0;
        CHECK(ok, "mail %d: part %u counter %u, expected part %u counter %u", i0 + i, m.part, m.ctr,
              first + (uint32_t)i, ctr0);
        ctr0 = ctr0 == 65535 ? 1 : ctr0 + 1;
    }
    return ok;
}

/* ---- tests ------------------------------------------------------------------ */

/* Results reach the mailbox in order with every field; the PLC is named by
 * its host name (modbus_new_tcp_pi resolves it). */
static void test_results_in_order(void)
{
    fake_plc *f = plc_new(0);
    maa_plc_config c;
    config(&c, f->port);
    snprintf(c.plc.address, sizeof c.plc.address, "localhost");
    size_t mark = log_mark();
    plc_bus *b = start(&c);
    const plc_result rs[] = {
        {.part = 1, .t_in_mono_ns = maad_mono_ns()},
        {.part = 70000, .reject = true, .reasons = PLC_REASON_REJECT | PLC_REASON_MISSING,
         .cameras = 3, .t_in_mono_ns = maad_mono_ns()},
        {.part = 0xfffffffe, .reject = true, .reasons = PLC_REASON_UNINSPECTED | PLC_REASON_DOWN,
         .cameras = 0x8002, .t_in_mono_ns = maad_mono_ns()},
        {.part = 70002, .t_in_mono_ns = maad_mono_ns()},
    };
    for (size_t i = 0; i < 4; i++)
        plc_bus_push(b, &rs[i]);
    CHECK(EVENTUALLY(stats(b).written == 4, WAIT_MS));
    CHECK(plc_nmails(f) == 4);
    for (int i = 0; i < plc_nmails(f) && i < 4; i++) {
        mail m = plc_mail(f, i);
        CHECK(m.ctr == i + 1, "counter %u", m.ctr);
        CHECK(m.part == rs[i].part, "part %u", m.part);
        CHECK(m.decision == (rs[i].reject ? 2 : 1));
        CHECK(m.reasons == rs[i].reasons && m.cameras == rs[i].cameras);
    }
    CHECK(plc_reg(f, R + 6) == 4);
    plc_bus_stats s = stats(b);
    CHECK(s.connected && s.queued == 0 && s.late == 0 && s.reconnects == 0);
    CHECK(s.latency_max_ms > 0 && s.latency_p50_ms <= s.latency_p99_ms &&
          s.latency_p99_ms <= s.latency_max_ms);
    char want[128];
    snprintf(want, sizeof want, "PLC localhost:%d: connected", f->port);
    CHECK(log_count(mark, want) == 1);
    CHECK(plc_bus_stop(b, 1000) == 0);
    plc_bus_free(b);
    plc_free(f);
}

/* With a slow PLC every write waits for the acknowledgement of the one
 * before: the PLC never finds an unacknowledged result overwritten. */
static void test_never_overwritten(void)
{
    fake_plc *f = plc_new(0);
    LOCKED(f, f->ack = ACK_DELAYED; f->ack_delay_ms = 20);
    maa_plc_config c;
    config(&c, f->port);
    plc_bus *b = start(&c);
    for (uint32_t p = 1; p <= 6; p++)
        push(b, p, p % 2);
    CHECK(EVENTUALLY(stats(b).written == 6, WAIT_MS));
    CHECK(mails_in_order(f, 0, 1, 6, 1));
    CHECK(plc_int(f, &f->overwrites) == 0);
    plc_bus_free(b);
    plc_free(f);
}

/* The counter continues from R+0 at connection and wraps 65535 -> 1; a
 * counter found unacknowledged is waited for before anything is written. */
static void test_counter(void)
{
    fake_plc *f = plc_new(0);
    LOCKED(f, f->map->tab_registers[R] = f->map->tab_registers[R + 6] = 65534);
    maa_plc_config c;
    config(&c, f->port);
    plc_bus *b = start(&c);
    for (uint32_t p = 1; p <= 3; p++)
        push(b, p, false);
    CHECK(EVENTUALLY(stats(b).written == 3, WAIT_MS));
    CHECK(mails_in_order(f, 0, 1, 3, 65535));
    plc_bus_free(b);
    plc_free(f);

    /* Counter 7 not yet taken by the PLC (R+6 = 6). */
    f = plc_new(0);
    LOCKED(f, f->ack = ACK_NEVER; f->map->tab_registers[R] = 7; f->map->tab_registers[R + 6] = 6);
    config(&c, f->port);
    b = start(&c);
    push(b, 1, true);
    /* It polls R+6 again and again, and writes nothing. */
    CHECK(EVENTUALLY(plc_int(f, &f->requests) >= 20, WAIT_MS));
    CHECK(plc_nmails(f) == 0);
    CHECK(stats(b).queued == 1);
    LOCKED(f, f->ack = ACK_NOW);
    CHECK(EVENTUALLY(stats(b).written == 1, WAIT_MS));
    CHECK(mails_in_order(f, 0, 1, 1, 8));
    plc_bus_free(b);
    plc_free(f);
}

/* Results queue while the PLC is away and go out in order once it is back. */
static void test_queued_while_stopped(void)
{
    fake_plc *f = plc_new(0);
    maa_plc_config c;
    config(&c, f->port);
    plc_bus *b = start(&c);
    push(b, 1, false);
    CHECK(EVENTUALLY(stats(b).written == 1, WAIT_MS));
    size_t mark = log_mark();
    plc_stop(f);
    for (uint32_t p = 2; p <= 6; p++)
        push(b, p, p == 4);
    CHECK(EVENTUALLY(!stats(b).connected, WAIT_MS));
    CHECK(EVENTUALLY(log_count(mark, ": unreachable: Connection refused; retrying in ") >= 1, WAIT_MS));
    CHECK(plc_nmails(f) == 1);
    CHECK(stats(b).queued == 5);
    plc_listen(f);
    CHECK(EVENTUALLY(stats(b).written == 6, WAIT_MS));
    CHECK(mails_in_order(f, 0, 1, 6, 1));
    plc_bus_stats s = stats(b);
    CHECK(s.reconnects == 1 && s.late == 0, "reconnects %llu", (unsigned long long)s.reconnects);
    plc_bus_free(b);
    plc_free(f);
}

/* A result written but not acknowledged when the connection broke: taken
 * by the PLC meanwhile (R+6 shows it), it is not written again; the PLC's
 * registers lost, it is written again, with the counter from R+0. */
static void test_unacknowledged_at_break(void)
{
    fake_plc *f = plc_new(0);
    LOCKED(f, f->ack = ACK_NEVER);
    maa_plc_config c;
    config(&c, f->port);
    plc_bus *b = start(&c);
    push(b, 1, true);
    CHECK(EVENTUALLY(plc_nmails(f) == 1, WAIT_MS));
    plc_stop(f);
    CHECK(EVENTUALLY(!stats(b).connected, WAIT_MS));
    LOCKED(f, f->ack = ACK_NOW);
    plc_listen(f);
    CHECK(EVENTUALLY(stats(b).written == 1, WAIT_MS));
    CHECK(plc_nmails(f) == 1);
    push(b, 2, false);
    CHECK(EVENTUALLY(stats(b).written == 2, WAIT_MS));
    CHECK(mails_in_order(f, 0, 1, 2, 1));
    plc_bus_free(b);
    plc_free(f);

    f = plc_new(0);
    LOCKED(f, f->ack = ACK_NEVER; f->map->tab_registers[R] = f->map->tab_registers[R + 6] = 40);
    config(&c, f->port);
    b = start(&c);
    push(b, 1, true);
    CHECK(EVENTUALLY(plc_nmails(f) == 1, WAIT_MS));
    CHECK(plc_mail(f, 0).ctr == 41);
    plc_stop(f);
    CHECK(EVENTUALLY(!stats(b).connected, WAIT_MS));
    LOCKED(f, memset(f->map->tab_registers, 0, 64 * sizeof(uint16_t)); f->ack = ACK_NOW);
    plc_listen(f);
    CHECK(EVENTUALLY(stats(b).written == 1, WAIT_MS));
    CHECK(mails_in_order(f, 1, 1, 1, 1), "the same part again, counter 1");
    plc_bus_free(b);
    plc_free(f);
}

/* A PLC that stops answering: the request times out, the connection is
 * made again, and the result goes out once, whether the PLC had dropped the
 * write or applied it and lost only the reply. */
static void test_no_answer(void)
{
    for (int silent = SILENT_DROP; silent <= SILENT_APPLY; silent++) {
        fake_plc *f = plc_new(0);
        maa_plc_config c;
        config(&c, f->port);
        c.plc.response_timeout_ms = 50;
        c.plc.health_period_ms = 10000; /* only the mailbox asks the PLC */
        size_t mark = log_mark();
        plc_bus *b = start(&c);
        push(b, 1, false);
        CHECK(EVENTUALLY(stats(b).written == 1, WAIT_MS));
        LOCKED(f, f->silent = silent);
        push(b, 2, true);
        CHECK(EVENTUALLY(log_count(mark, "writing the mailbox (registers 10..15): Connection timed out; "
                                         "reconnecting") == 1, WAIT_MS));
        CHECK(EVENTUALLY(log_count(mark, "unreachable: reading the mailbox (registers 10..19): "
                                         "Connection timed out; retrying in") == 1, WAIT_MS));
        LOCKED(f, f->silent = ANSWER);
        CHECK(EVENTUALLY(stats(b).written == 2, WAIT_MS));
        CHECK(mails_in_order(f, 0, 1, 2, 1), "silent mode %d", silent);
        CHECK(stats(b).reconnects == 1);
        plc_bus_free(b);
        plc_free(f);
    }
}

/* A full queue pushes its oldest result out, counted and logged late; the
 * PLC unreachable at start is logged once, not fatal, and the queue goes out
 * when it comes. */
static void test_full_queue_and_unreachable(void)
{
    int port = free_port();
    maa_plc_config c;
    config(&c, port);
    c.plc.queue = 3;
    size_t mark = log_mark();
    plc_bus *b = start(&c);
    char want[160];
    snprintf(want, sizeof want, "PLC 127.0.0.1:%d: unreachable: Connection refused; retrying in 10 ms",
             port);
    CHECK(EVENTUALLY(log_count(mark, want) == 1, WAIT_MS));
    for (uint32_t p = 1; p <= 5; p++)
        push(b, p, p == 2);
    plc_bus_stats s = stats(b);
    CHECK(s.late == 2 && s.queued == 3 && !s.connected);
    CHECK(log_count(mark, "late: part 1 (pass): pushed out of the full queue (plc.queue 3)") == 1);
    CHECK(log_count(mark, "late: part 2 (reject): pushed out of the full queue (plc.queue 3)") == 1);
    /* Retries meanwhile (every 10..40 ms) do not repeat the same complaint. */
    usleep(300 * 1000);
    CHECK(log_count(mark, ": unreachable: ") == 1);
    fake_plc *f = plc_new(port);
    CHECK(f->port == port);
    CHECK(EVENTUALLY(stats(b).written == 3, WAIT_MS));
    CHECK(mails_in_order(f, 0, 3, 3, 1));
    s = stats(b);
    CHECK(s.connected && s.reconnects == 0 && s.late == 2);
    plc_bus_free(b);
    plc_free(f);
}

/* A result captured more than late_ms ago is not written. */
static void test_late_ms(void)
{
    fake_plc *f = plc_new(0);
    maa_plc_config c;
    config(&c, f->port);
    c.plc.late_ms = 100;
    size_t mark = log_mark();
    plc_bus *b = start(&c);
    plc_result old = result(1, true);
    old.t_capture_ns -= 1000 * MS;
    plc_bus_push(b, &old);
    push(b, 2, false);
    CHECK(EVENTUALLY(stats(b).written == 1, WAIT_MS));
    CHECK(mails_in_order(f, 0, 2, 1, 1));
    CHECK(stats(b).late == 1);
    CHECK(log_count(mark, "late: part 1 (reject): captured ") == 1);
    CHECK(log_count(mark, " ms ago, more than plc.late_ms 100") == 1);
    plc_bus_free(b);
    plc_free(f);
}

/* R+7 counts up every period (continuing from what the PLC holds, wrapping
 * 65535 -> 0), R+8 reads the results waiting, R+9 the late ones. */
static void test_health_word(void)
{
    fake_plc *f = plc_new(0);
    LOCKED(f, f->ack = ACK_NEVER; f->map->tab_registers[R + 7] = 65533);
    maa_plc_config c;
    config(&c, f->port);
    c.plc.health_period_ms = 10;
    c.plc.late_ms = 100;
    plc_bus *b = start(&c);
    CHECK(EVENTUALLY(plc_reg(f, R + 7) >= 2 && plc_reg(f, R + 7) < 1000, WAIT_MS),
          "R+7 %u", plc_reg(f, R + 7));
    plc_result old = result(1, false);
    old.t_capture_ns -= 1000 * MS;
    plc_bus_push(b, &old);
    CHECK(EVENTUALLY(plc_reg(f, R + 9) == 1, WAIT_MS));
    for (uint32_t p = 2; p <= 4; p++)
        push(b, p, false);
    CHECK(EVENTUALLY(plc_reg(f, R + 8) == 3, WAIT_MS), "R+8 %u", plc_reg(f, R + 8));
    CHECK(plc_nmails(f) == 1);
    int n = plc_int(f, &f->health_writes);
    CHECK(EVENTUALLY(plc_int(f, &f->health_writes) >= n + 3, WAIT_MS));
    plc_bus_free(b);
    plc_free(f);
}

static int coil_writes(fake_plc *f, int addr)
{
    int n = 0;
    LOCKED(f, for (int i = 0; i < f->ncoils; i++) n += f->coil_addr[i] == addr);
    return n;
}

/* As maa-plc's loop does, tells the bus the health (every 10 ms, so it never
 * goes silent) until the coil reads it; whether it did within WAIT_MS. */
static bool tell_healthy(plc_bus *b, fake_plc *f, bool healthy)
{
    return EVENTUALLY((plc_bus_set_healthy(b, healthy), plc_coil(f, HEALTHY_COIL) == healthy),
                      WAIT_MS);
}

/* The healthy coil follows plc_bus_set_healthy, and is written again every
 * health period. */
static void test_healthy_coil(void)
{
    fake_plc *f = plc_new(0);
    LOCKED(f, f->map->tab_bits[HEALTHY_COIL] = 1);
    maa_plc_config c;
    config(&c, f->port);
    c.plc.health_period_ms = 20;
    plc_bus *b = start(&c);
    CHECK(EVENTUALLY(coil_writes(f, HEALTHY_COIL) >= 1, WAIT_MS));
    CHECK(plc_coil(f, HEALTHY_COIL) == 0, "not healthy until told");
    CHECK(tell_healthy(b, f, true));
    CHECK(tell_healthy(b, f, false));
    CHECK(tell_healthy(b, f, true));
    int n = coil_writes(f, HEALTHY_COIL);
    CHECK(EVENTUALLY((plc_bus_set_healthy(b, true), coil_writes(f, HEALTHY_COIL) >= n + 3),
                     WAIT_MS));
    CHECK(coil_writes(f, REJECT_COIL) == 0, "no reject pulse configured");
    plc_bus_free(b);
    plc_free(f);
}

/* maa-plc's loop gone silent (no plc_bus_set_healthy for over a second):
 * the health word stops and the healthy coil drops, although the bus thread
 * itself runs on; the loop's next call brings both back. */
static void test_silent_loop(void)
{
    fake_plc *f = plc_new(0);
    maa_plc_config c;
    config(&c, f->port);
    c.plc.health_period_ms = 20;
    size_t mark = log_mark();
    plc_bus *b = start(&c);
    CHECK(tell_healthy(b, f, true));
    /* From here the loop is silent. */
    CHECK(EVENTUALLY(plc_coil(f, HEALTHY_COIL) == 0, WAIT_MS), "coil still set, loop silent");
    CHECK(EVENTUALLY(log_count(mark, "the decision loop has been silent") == 1, WAIT_MS));
    uint16_t held = plc_reg(f, R + 7);
    usleep(200000);
    CHECK(plc_reg(f, R + 7) == held, "the health word counted on: %u, then %u", held,
          plc_reg(f, R + 7));
    plc_bus_set_healthy(b, true);
    CHECK(EVENTUALLY(plc_coil(f, HEALTHY_COIL) == 1 && plc_reg(f, R + 7) != held, WAIT_MS));
    plc_bus_free(b);
    plc_free(f);
}

/* An exception reply to the mailbox write is logged, naming the PLC and the
 * operation, and the write retried. */
static void test_exception_retried(void)
{
    fake_plc *f = plc_new(0);
    LOCKED(f, f->exceptions = 3);
    maa_plc_config c;
    config(&c, f->port);
    size_t mark = log_mark();
    plc_bus *b = start(&c);
    push(b, 1, true);
    CHECK(EVENTUALLY(stats(b).written == 1, WAIT_MS));
    CHECK(plc_int(f, &f->exceptions) == 0);
    CHECK(mails_in_order(f, 0, 1, 1, 1));
    char want[160];
    snprintf(want, sizeof want,
             "PLC 127.0.0.1:%d: writing the mailbox (registers 10..15): Illegal data address",
             f->port);
    CHECK(log_count(mark, want) == 1, "logged once, not at every retry");
    CHECK(stats(b).connected && stats(b).reconnects == 0, "an exception keeps the connection");
    plc_bus_free(b);
    plc_free(f);
}

/* ack_timeout_ms without an acknowledgement: one warning per result. */
static void test_ack_timeout(void)
{
    fake_plc *f = plc_new(0);
    LOCKED(f, f->ack = ACK_NEVER);
    maa_plc_config c;
    config(&c, f->port);
    c.plc.ack_timeout_ms = 30;
    size_t mark = log_mark();
    plc_bus *b = start(&c);
    push(b, 1, false);
    push(b, 2, false);
    CHECK(EVENTUALLY(log_count(mark, ": no acknowledgement of part 1 (counter 1, register 16 reads 0)") == 1,
                     WAIT_MS));
    usleep(200 * 1000);
    CHECK(log_count(mark, "no acknowledgement") == 1);
    LOCKED(f, f->ack = ACK_NOW);
    CHECK(EVENTUALLY(stats(b).written == 2, WAIT_MS));
    CHECK(log_count(mark, ": part 1 acknowledged after ") == 1);
    CHECK(mails_in_order(f, 0, 1, 2, 1));
    plc_bus_free(b);
    plc_free(f);
}

/* The reject coil's writes with repeats left out: 0,1,0 is one pulse. */
static int coil_edges(fake_plc *f, int addr, uint8_t *out, int max)
{
    int n = 0;
    LOCKED(f, for (int i = 0; i < f->ncoils; i++) {
        if (f->coil_addr[i] == addr && (n == 0 || out[n - 1] != f->coil_val[i]) && n < max)
            out[n++] = f->coil_val[i];
    });
    return n;
}

/* A rejected part's pulse: the coil set at capture + pulse_delay_ms and
 * cleared pulse_width_ms later; overlapping pulses merge into one; a pulse
 * already due when its result comes is not given.  Passes pulse nothing. */
static void test_reject_pulse(void)
{
    fake_plc *f = plc_new(0);
    LOCKED(f, f->map->tab_bits[REJECT_COIL] = 1);
    maa_plc_config c;
    config(&c, f->port);
    /* Windows wide enough that a loaded machine still sets the coil in time. */
    c.plc.pulse_delay_ms = 200;
    c.plc.pulse_width_ms = 150;
    size_t mark = log_mark();
    plc_bus *b = start(&c);
    /* Connected, the coil is cleared first: a bridge that died with it set
     * does not leave it so. */
    CHECK(EVENTUALLY(coil_writes(f, REJECT_COIL) >= 1, WAIT_MS));
    CHECK(plc_coil(f, REJECT_COIL) == 0);
    uint64_t t0 = maad_now_ns();
    plc_result r1 = result(1, true), r2 = result(2, false), r3 = result(3, true),
               r4 = result(4, true);
    r1.t_capture_ns = t0 - 20 * MS; /* pulses 180..330 and 190..340 ms from now */
    r2.t_capture_ns = t0 - 15 * MS;
    r3.t_capture_ns = t0 - 10 * MS;
    r4.t_capture_ns = t0 - 1000 * MS; /* due 800 ms ago */
    plc_bus_push(b, &r1);
    plc_bus_push(b, &r2);
    plc_bus_push(b, &r3);
    plc_bus_push(b, &r4);
    CHECK(log_count(mark, "reject pulse for part 4 not given: due ") == 1);
    CHECK(EVENTUALLY(stats(b).pulses == 2, WAIT_MS));
    uint8_t e[16];
    int n = coil_edges(f, REJECT_COIL, e, 16);
    CHECK(n == 3 && e[0] == 0 && e[1] == 1 && e[2] == 0, "%d edges", n);
    CHECK(plc_coil(f, REJECT_COIL) == 0);
    CHECK(stats(b).pulses_late == 1);
    CHECK(EVENTUALLY(stats(b).written == 4, WAIT_MS));

    /* The PLC away while a pulse is due: not given, counted, logged. */
    plc_stop(f);
    CHECK(EVENTUALLY(!stats(b).connected, WAIT_MS));
    push(b, 5, true);
    CHECK(EVENTUALLY(stats(b).pulses_late == 2, WAIT_MS));
    char want[128];
    snprintf(want, sizeof want,
             "reject pulse for part 5 not given: the PLC 127.0.0.1:%d was not reachable in time",
             f->port);
    CHECK(log_count(mark, want) == 1);
    plc_listen(f);
    CHECK(EVENTUALLY(stats(b).written == 5, WAIT_MS));
    CHECK(coil_edges(f, REJECT_COIL, e, 16) == 3, "no pulse while away, none after");
    CHECK(stats(b).pulses == 2);
    plc_bus_free(b);
    plc_free(f);
}

/* Dry run: results taken (maa-plc logs them), the PLC never contacted. */
static void test_dry_run(void)
{
    fake_plc *f = plc_new(0);
    maa_plc_config c;
    config(&c, f->port);
    c.plc.dry_run = true;
    plc_bus *b = start(&c);
    push(b, 1, false);
    push(b, 2, true);
    CHECK(EVENTUALLY(stats(b).queued == 0, WAIT_MS), "queued %llu",
          (unsigned long long)stats(b).queued);
    CHECK(plc_bus_stop(b, 1000) == 0);
    CHECK(plc_int(f, &f->accepts) == 0 && !stats(b).connected);
    plc_bus_free(b);
    plc_free(f);
}

/* Stop delivers what it can within drain_ms, then logs and counts the rest. */
static void test_stop(void)
{
    fake_plc *f = plc_new(0);
    LOCKED(f, f->ack = ACK_DELAYED; f->ack_delay_ms = 5);
    maa_plc_config c;
    config(&c, f->port);
    plc_bus *b = start(&c);
    for (uint32_t p = 1; p <= 5; p++)
        push(b, p, false);
    CHECK(plc_bus_stop(b, 10000) == 0);
    CHECK(mails_in_order(f, 0, 1, 5, 1));
    CHECK(stats(b).written == 5);
    plc_bus_free(b);

    LOCKED(f, f->ack = ACK_NEVER);
    size_t mark = log_mark();
    b = start(&c);
    for (uint32_t p = 6; p <= 8; p++)
        push(b, p, p == 7);
    CHECK(EVENTUALLY(plc_nmails(f) == 6, WAIT_MS));
    CHECK(plc_bus_stop(b, 50) == 3);
    CHECK(log_count(mark, "undelivered: part 6 (pass): written, not acknowledged by the PLC") == 1);
    CHECK(log_count(mark, "undelivered: part 7 (reject): still queued") == 1);
    CHECK(log_count(mark, "undelivered: part 8 (pass): still queued") == 1);
    plc_bus_free(b);
    plc_free(f);
}

/* Not a check: verdict-in to mailbox-written on loopback, printed. */
static void test_latency(void)
{
    fake_plc *f = plc_new(0);
    maa_plc_config c;
    config(&c, f->port);
    c.plc.queue = 2000;
    plc_bus *b = start(&c);
    CHECK(EVENTUALLY(stats(b).connected, WAIT_MS));
    const int n = 1000;
    for (int p = 1; p <= n; p++) {
        push(b, (uint32_t)p, p % 10 == 0);
        usleep(1000);
    }
    CHECK(EVENTUALLY(stats(b).written == (uint64_t)n, WAIT_MS));
    CHECK(mails_in_order(f, 0, 1, n, 1));
    plc_bus_stats s = stats(b);
    printf("  %d results 1 ms apart, verdict-in to mailbox-written: p50 %.3f ms, p99 %.3f ms, "
           "max %.3f ms\n", n, s.latency_p50_ms, s.latency_p99_ms, s.latency_max_ms);
    plc_bus_free(b);
    plc_free(f);
}

int main(void)
{
    logcap_start();
    maad_log_init(&lg, NULL, MAAD_LOG_DEBUG);
    lg.journal = 0; /* the tests read stderr */
    RUN_LOGGED(test_results_in_order);
    RUN_LOGGED(test_never_overwritten);
    RUN_LOGGED(test_counter);
    RUN_LOGGED(test_queued_while_stopped);
    RUN_LOGGED(test_unacknowledged_at_break);
    RUN_LOGGED(test_no_answer);
    RUN_LOGGED(test_full_queue_and_unreachable);
    RUN_LOGGED(test_late_ms);
    RUN_LOGGED(test_health_word);
    RUN_LOGGED(test_healthy_coil);
    RUN_LOGGED(test_silent_loop);
    RUN_LOGGED(test_exception_retried);
    RUN_LOGGED(test_ack_timeout);
    RUN_LOGGED(test_reject_pulse);
    RUN_LOGGED(test_dry_run);
    RUN_LOGGED(test_stop);
    RUN_LOGGED(test_latency);
    logcap_end();
    return CHECK_SUMMARY();
}
