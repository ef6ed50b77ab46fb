/* maa-plc.c — the PLC bridge daemon: `maa-plc --config FILE`.
 *
 * One thread here reads every camera's maad (a ZeroMQ SUB socket each),
 * hands the messages to the tracker, which decides each part once every
 * camera has had its say, and queues the decisions to the bus thread
 * (bus.c), which alone talks Modbus to the PLC.  So a slow or absent PLC
 * never stops the verdicts being read, and the deadlines being kept.
 *
 * Start-up checks the configuration and connects the sockets (a malformed
 * endpoint fails the start); the PLC may be unreachable: results queue until
 * it answers.  SIGTERM/SIGINT: every part seen is decided (what has not come
 * counts missing), the queue is delivered (up to DRAIN_MS), the final line
 * says what was left undelivered. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "config/config.h"
#include "daemon/daemon.h"
#include "plc/plc.h"

#define MAA_PLC_VERSION "0.1.0"
/* Time for the PLC to take what is queued at shutdown; the unit's
 * TimeoutStopSec leaves room for it. */
#define DRAIN_MS 10000
/* A camera sending messages the bridge refuses is reported at most this
 * often (with the count), so a broken sender cannot flood the journal. */
#define REFUSED_LOG_NS 10000000000ull

static atomic_int stop;

static void on_signal(int sig)
{
    (void)sig;
    atomic_store(&stop, 1);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: maa-plc --config FILE [--dry-run]  run the PLC bridge\n"
            "       maa-plc --check-config FILE        check the configuration, print the\n"
            "                                          effective one, exit 0 when it is good\n"
            "       maa-plc --version | --help\n"
            "--dry-run decides and logs every part but never connects to the PLC.\n"
            "Signals: SIGTERM or SIGINT decide every part seen and deliver the queue.\n"
            "See docs/plc.md.\n");
}

typedef struct {
    uint64_t refused;       /* messages refused, since start */
    uint64_t suppressed;    /* ... of them not logged since the last one logged */
    uint64_t last_refused_log;
    char last_refused[256]; /* the reason last logged */
    /* A refused handshake is logged once until it changes or one
     * succeeds, and tried again every second (maad's keys may be fixed by
     * a SIGHUP). */
    maad_handshakes hs;
} cam_input;

typedef struct {
    maa_plc_config cfg;
    maad_logger log;
    plc_tracker *tracker;
    plc_bus *bus;
    void *zctx;
    void *socks[MAA_PLC_MAX_CAMERAS];
    cam_input in[MAA_PLC_MAX_CAMERAS];
} bridge;

/* "groove, hook" for the cameras in mask. */
static void camera_names(const bridge *b, uint16_t mask, char *buf, size_t n)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int k = 0; k < b->cfg.ncameras && used < n; k++)
        if (mask & (1u << k))
            used += (size_t)snprintf(buf + used, n - used, "%s%s", used ? ", " : "",
                                     b->cfg.cameras[k].name);
}

/* "reject: groove; missing, camera down: hook" */
static void describe(const bridge *b, const plc_result *r, char *buf, size_t n)
{
    const struct {
        const char *what;
        uint16_t mask;
    } parts[] = {{"reject", r->rejected},
                 {"uninspected", r->uninspected},
                 {"missing", (uint16_t)(r->missing & ~r->down)},
                 {"missing, camera down", r->down}};
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof parts / sizeof parts[0] && used < n; i++) {
        if (!parts[i].mask)
            continue;
        char names[256];
        camera_names(b, parts[i].mask, names, sizeof names);
        used += (size_t)snprintf(buf + used, n - used, "%s%s: %s", used ? "; " : "",
                                 parts[i].what, names);
    }
}

static void log_result(const bridge *b, const plc_result *r)
{
    /* A pass per part is debug but in a dry run: most runs format nothing. */
    if (!r->reject && !b->cfg.plc.dry_run && b->log.level < MAAD_LOG_DEBUG)
        return;
    char why[512], names[256], f_part[32], f_dec[32], f_reasons[32], f_cams[300];
    describe(b, r, why, sizeof why);
    camera_names(b, r->cameras, names, sizeof names);
    snprintf(f_part, sizeof f_part, "MAA_PLC_PART=%" PRIu32, r->part);
    snprintf(f_dec, sizeof f_dec, "MAA_PLC_DECISION=%s", r->reject ? "reject" : "pass");
    snprintf(f_reasons, sizeof f_reasons, "MAA_PLC_REASONS=%u", (unsigned)r->reasons);
    snprintf(f_cams, sizeof f_cams, "MAA_PLC_CAMERAS=%s", names);
    const char *fields[] = {f_part, f_dec, f_reasons, f_cams};
    /* A pass per part would flood the journal at line rate; in a dry run
     * every decision is what the engineer commissioning it looks at. */
    const char *dry = b->cfg.plc.dry_run ? "dry run: " : "";
    if (r->reject)
        maad_log_fields(&b->log, MAAD_LOG_NOTICE, fields, 4, "%spart %" PRIu32 ": reject (%s)",
                        dry, r->part, why);
    else
        maad_log_fields(&b->log, *dry ? MAAD_LOG_INFO : MAAD_LOG_DEBUG, fields, 3,
                        "%spart %" PRIu32 ": pass", dry, r->part);
}

/* Every new kind of problem is logged; the same problem again only every
 * REFUSED_LOG_NS, with the count of those not logged, so that a sender
 * repeating one mistake at line rate cannot flood the journal. */
static void refused(bridge *b, int k, const char *why, uint64_t now_mono)
{
    cam_input *in = &b->in[k];
    in->refused++;
    if (strcmp(why, in->last_refused) == 0 && now_mono - in->last_refused_log < REFUSED_LOG_NS) {
        in->suppressed++;
        return;
    }
    char more[64] = "";
    if (in->suppressed)
        snprintf(more, sizeof more, " (and %" PRIu64 " refused since the last report)",
                 in->suppressed);
    maad_log(&b->log, MAAD_LOG_WARNING, "camera %s: message refused: %s%s",
             b->cfg.cameras[k].name, why, more);
    snprintf(in->last_refused, sizeof in->last_refused, "%s", why);
    in->suppressed = 0;
    in->last_refused_log = now_mono;
}

/* Every message waiting on camera k's socket. */
static void read_camera(bridge *b, int k)
{
    for (;;) {
        zmq_msg_t part[2], rest;
        zmq_msg_init(&part[0]);
        zmq_msg_init(&part[1]);
        zmq_msg_init(&rest);
        int n = 0;
        if (zmq_msg_recv(&part[0], b->socks[k], ZMQ_DONTWAIT) >= 0) {
            /* The rest of a multipart message is there once its first part
             * is; the mask (part 3) is not the bridge's business. */
            n = 1;
            for (int more = zmq_msg_more(&part[0]); more; n++) {
                zmq_msg_t *p = n < 2 ? &part[n] : &rest;
                if (zmq_msg_recv(p, b->socks[k], 0) < 0)
                    break;
                more = zmq_msg_more(p);
            }
        }
        uint64_t now_real = maad_now_ns(), now_mono = maad_mono_ns();
        plc_msg m;
        char err[256];
        if (n == 0) {
            /* nothing waiting (EAGAIN), or the context is ending */
        } else if (n < 2) {
            refused(b, k, "a message of one part (maad sends a topic and a JSON object)",
                    now_mono);
        } else if (plc_msg_parse(zmq_msg_data(&part[0]), zmq_msg_size(&part[0]),
                                 zmq_msg_data(&part[1]), zmq_msg_size(&part[1]), &m, err,
                                 sizeof err) != MAA_OK) {
            refused(b, k, err, now_mono);
        } else if (strcmp(m.camera, b->cfg.cameras[k].name) != 0) {
            /* a camera whose name our topic is a prefix of: not ours */
        } else {
            plc_tracker_message(b->tracker, k, &m, now_real, now_mono);
        }
        zmq_msg_close(&part[0]);
        zmq_msg_close(&part[1]);
        zmq_msg_close(&rest);
        if (n == 0)
            return;
    }
}

/* The decided parts to the log and the bus; the health to the bus. */
static void hand_over(bridge *b)
{
    plc_result r;
    while (plc_tracker_next(b->tracker, &r)) {
        log_result(b, &r);
        plc_bus_push(b->bus, &r);
    }
    plc_bus_set_healthy(b->bus, plc_tracker_down(b->tracker) == 0);
}

static void stats_line(bridge *b, const char *what, char *buf, size_t n)
{
    plc_tracker_stats ts;
    plc_bus_stats bs;
    plc_tracker_get_stats(b->tracker, &ts);
    plc_bus_get_stats(b->bus, &bs);
    uint64_t refused = 0;
    for (int k = 0; k < b->cfg.ncameras; k++)
        refused += b->in[k].refused;
    snprintf(buf, n,
             "%s: parts %" PRIu64 " (pass %" PRIu64 ", reject %" PRIu64 "), missing %" PRIu64
             ", unmatched %" PRIu64 ", too late %" PRIu64 ", refused %" PRIu64
             ", written %" PRIu64 ", late %" PRIu64 ", queued %" PRIu64 ", PLC %s, "
             "latency p50 %.3f ms p99 %.3f ms max %.3f ms",
             what, ts.parts, ts.passed, ts.rejected, ts.missing, ts.unmatched, ts.too_late,
             refused, bs.written, bs.late, bs.queued,
             b->cfg.plc.dry_run ? "dry run" : bs.connected ? "connected" : "not connected",
             bs.latency_p50_ms, bs.latency_p99_ms, bs.latency_max_ms);
}

static int open_sockets(bridge *b, char *err, size_t errlen)
{
    b->zctx = zmq_ctx_new();
    if (!b->zctx) {
        snprintf(err, errlen, "ZeroMQ: %s", zmq_strerror(errno));
        return MAA_ERR;
    }
    for (int k = 0; k < b->cfg.ncameras; k++) {
        const maa_plc_camera_config *c = &b->cfg.cameras[k];
        char topic[MAAD_NAME_SIZE + 8];
        int zero = 0, ivl = 100, ivl_max = 1000;
        snprintf(topic, sizeof topic, "maad.%s", c->name);
        void *s = b->socks[k] = zmq_socket(b->zctx, ZMQ_SUB);
        /* RCVHWM 0: no limit on our side, so nothing is dropped while the
         * loop is busy; maad's own queue (publish.sndhwm) bounds the rest. */
        if (!s || zmq_setsockopt(s, ZMQ_RCVHWM, &zero, sizeof zero) ||
            zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero) ||
            zmq_setsockopt(s, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl) ||
            zmq_setsockopt(s, ZMQ_RECONNECT_IVL_MAX, &ivl_max, sizeof ivl_max) ||
            zmq_setsockopt(s, ZMQ_SUBSCRIBE, topic, strlen(topic))) {
            snprintf(err, errlen, "camera %s: %s", c->name, zmq_strerror(errno));
            return MAA_ERR;
        }
        char why[MAA_ERRLEN];
        if ((c->server_key[0] &&
             maad_curve_client(s, c->server_key, b->cfg.line.curve_key, why, sizeof why)) ||
            maad_handshakes_open(&b->in[k].hs, b->zctx, s, why, sizeof why)) {
            snprintf(err, errlen, "camera %s: %s", c->name, why);
            return MAA_ERR;
        }
        if (zmq_connect(s, c->endpoint)) {
            snprintf(err, errlen, "camera %s: cannot connect to %s: %s", c->name, c->endpoint,
                     zmq_strerror(errno));
            return MAA_ERR;
        }
    }
    return MAA_OK;
}

/* Camera k's handshakes: a failure logged as an error, the success that
 * ends it as a notice. */
static void read_handshakes(bridge *b, int k, uint64_t now_mono)
{
    char why[MAA_ERRLEN];
    int ev;
    while ((ev = maad_handshakes_poll(&b->in[k].hs, b->socks[k], b->cfg.cameras[k].endpoint,
                                      now_mono, why, sizeof why)))
        maad_log(&b->log, ev == MAAD_HANDSHAKE_FAILED ? MAAD_LOG_ERR : MAAD_LOG_NOTICE,
                 "camera %s: %s", b->cfg.cameras[k].name, why);
}

static void close_sockets(bridge *b)
{
    for (int k = 0; k < b->cfg.ncameras; k++) {
        maad_handshakes_close(&b->in[k].hs);
        if (b->socks[k])
            zmq_close(b->socks[k]);
    }
    if (b->zctx)
        zmq_ctx_term(b->zctx);
}

static int run(bridge *b)
{
    /* The cameras' sockets, then their handshake monitors. */
    const int n = b->cfg.ncameras;
    zmq_pollitem_t items[2 * MAA_PLC_MAX_CAMERAS];
    for (int k = 0; k < n; k++) {
        items[k] = (zmq_pollitem_t){.socket = b->socks[k], .events = ZMQ_POLLIN};
        items[n + k] = (zmq_pollitem_t){.socket = b->in[k].hs.monitor, .events = ZMQ_POLLIN};
    }
    uint64_t wd_usec = maad_notify_watchdog_usec(), last_wd = 0, last_summary = maad_mono_ns();
    uint64_t summary_ns = (uint64_t)b->cfg.log.summary_interval_s * 1000000000ull;
    char line[512];
    while (!atomic_load(&stop)) {
        uint64_t now_mono = maad_mono_ns();
        uint64_t wake = plc_tracker_wakeup(b->tracker, maad_now_ns(), now_mono);
        /* Round up: waking a little early only ticks for nothing. */
        long timeout = (long)((wake - now_mono + 999999) / 1000000);
        if (timeout > 100)
            timeout = 100;
        if (zmq_poll(items, 2 * n, timeout) < 0 && errno != EINTR) {
            maad_log(&b->log, MAAD_LOG_ERR, "zmq_poll: %s", zmq_strerror(errno));
            return MAA_ERR;
        }
        now_mono = maad_mono_ns();
        for (int k = 0; k < n; k++) {
            if (items[k].revents & ZMQ_POLLIN)
                read_camera(b, k);
            read_handshakes(b, k, now_mono);
        }
        now_mono = maad_mono_ns();
        plc_tracker_tick(b->tracker, maad_now_ns(), now_mono);
        hand_over(b);
        if (wd_usec && now_mono - last_wd >= wd_usec * 500) {
            maad_notify_watchdog();
            last_wd = now_mono;
        }
        if (now_mono - last_summary >= summary_ns) {
            stats_line(b, "summary", line, sizeof line);
            maad_log(&b->log, MAAD_LOG_INFO, "%s", line);
            uint16_t down = plc_tracker_down(b->tracker);
            char names[256];
            camera_names(b, down, names, sizeof names);
            maad_notify_status("%s%s; %s", down ? "BLIND: down: " : "inspecting",
                               down ? names : "", line + strlen("summary: "));
            last_summary = now_mono;
        }
    }
    return MAA_OK;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, 0, 'c'},
                                         {"check-config", required_argument, 0, 'k'},
                                         {"dry-run", no_argument, 0, 'n'},
                                         {"version", no_argument, 0, 'V'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *config = NULL, *check = NULL;
    bool dry_run = false;
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'c': config = optarg; break;
        case 'k': check = optarg; break;
        case 'n': dry_run = true; break;
        case 'V': printf("maa-plc %s\n", MAA_PLC_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc || !!config == !!check) {
        usage(stderr);
        return 2;
    }
    static bridge b; /* large (the config's cameras); one per process */
    char err[1024];
    if (maa_plc_config_load(check ? check : config, &b.cfg, err, sizeof err) != MAA_OK) {
        fprintf(stderr, "maa-plc: %s\n", err);
        return 1;
    }
    if (dry_run)
        b.cfg.plc.dry_run = true;
    if (check) {
        maa_plc_config_dump(&b.cfg, stdout);
        printf("maa-plc: %s: configuration good\n", check);
        return 0;
    }
    maad_log_init(&b.log, NULL, maad_log_level_of(b.cfg.log.level));
    b.log.program = "maa-plc";

    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN); /* a PLC closing its socket under a write */

    int rc = 1;
    if (plc_tracker_create(&b.cfg, &b.log, &b.tracker, err, sizeof err) != MAA_OK ||
        open_sockets(&b, err, sizeof err) != MAA_OK ||
        plc_bus_start(&b.cfg, &b.log, &b.bus, err, sizeof err) != MAA_OK) {
        maad_log(&b.log, MAAD_LOG_ERR, "%s", err);
        maad_notify_status("failed: %s", err);
        goto out;
    }
    char cams[512];
    size_t used = 0;
    for (int k = 0; k < b.cfg.ncameras && used < sizeof cams; k++)
        used += (size_t)snprintf(cams + used, sizeof cams - used, "%s%s@%d", k ? ", " : "",
                                 b.cfg.cameras[k].name, b.cfg.cameras[k].offset);
    char plc[MAAD_STR_SIZE + 48];
    if (b.cfg.plc.dry_run)
        snprintf(plc, sizeof plc, "dry run (no PLC)");
    else
        snprintf(plc, sizeof plc, "PLC %s:%d unit %d", b.cfg.plc.address, b.cfg.plc.port,
                 b.cfg.plc.unit_id);
    maad_log(&b.log, MAAD_LOG_NOTICE, "ready: line %s, %d camera%s (%s), %s", b.cfg.line.name,
             b.cfg.ncameras, b.cfg.ncameras == 1 ? "" : "s", cams, plc);
    maad_notify_ready();
    maad_notify_status("inspecting line %s: %d cameras, %s", b.cfg.line.name, b.cfg.ncameras,
                       plc);

    rc = run(&b) == MAA_OK ? 0 : 1;

    maad_notify_stopping();
    maad_log(&b.log, MAAD_LOG_NOTICE, "stopping: deciding every part seen, delivering the queue");
    uint64_t now_mono = maad_mono_ns();
    plc_tracker_tick(b.tracker, maad_now_ns(), now_mono);
    hand_over(&b);
    while (plc_tracker_flush(b.tracker, maad_now_ns(), maad_mono_ns()))
        hand_over(&b);
    uint64_t undelivered = plc_bus_stop(b.bus, DRAIN_MS);
    char line[512];
    stats_line(&b, "final", line, sizeof line);
    maad_log(&b.log, MAAD_LOG_NOTICE, "%s, undelivered %" PRIu64, line, undelivered);
out:
    plc_bus_free(b.bus);
    close_sockets(&b);
    plc_tracker_free(b.tracker);
    return rc;
}
