/* watch.c — `maa watch ENDPOINT`: follow a maad verdict stream.
 *
 * For operators: one line per verdict, and notes ("#") when seq jumps
 * (verdicts lost between daemon and here), when a daemon restarts, and when
 * heartbeats stop for more than 2 s.  A good line is mostly passes: with
 * --passes count they are only counted, so that the rejects and
 * uninspected verdicts stand out (on a terminal one status line rewritten
 * in place, elsewhere a line per run of passes).  For scripts: --json
 * prints each verdict's JSON unchanged, one per line, with notes on stderr;
 * --count and --timeout bound the run.  SIGINT/SIGTERM end it with a
 * summary. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "daemon/daemon.h"
#include "maa/maa.h"

#define HEARTBEAT_LATE_NS 2000000000ull
/* --count: more verdicts than a camera at 1000 frames/s sends in 30 years. */
#define MAX_COUNT 1000000000000ll
#define MAX_CAMERAS 32
/* --passes count, not on a terminal: a run of passes is reported at the
 * latest this long after its first, so that a log shows the line alive. */
#define PASS_RUN_NS 10000000000ull

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
}

typedef struct {
    char name[64];
    int seen_verdict;
    long long next_seq;       /* seq expected next */
    uint64_t last_hb_ns;      /* local clock; 0 before the first */
    int hb_late;              /* a "no heartbeat" note is out */
    int drift;                /* the heartbeats' drift_alarm, as last noted */
} camera_state;

typedef struct {
    int json;
    const char *topic;        /* the subscription */
    int warned_none;          /* the "no heartbeat at all" note is out */
    FILE *notes;              /* stdout, or stderr with --json */
    camera_state cams[MAX_CAMERAS];
    int ncams;
    uint64_t frames, pass, reject, uninspected, gaps, missing, restarts,
        hb_outages, heartbeats;
    /* --passes count: passes are counted, not printed.  live (notes on a
     * terminal): one status line, rewritten in place; shown: it is on the
     * screen, dirty: it is behind.  Otherwise the run of passes since the
     * last line: how many, their capture times, when it began (local). */
    int count_passes, live, shown, dirty;
    char last_pass[160];
    uint64_t run, run_t0_ns, run_t1_ns, run_since_ns;
} watch;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: maa watch ENDPOINT [--topic T] [--count N] [--json] "
            "[--timeout S] [--passes each|count]\n"
            "                [--server-key MAAD.key --key NAME.key_secret]\n"
            "  Follow the verdicts a maad publishes on ENDPOINT "
            "(e.g. tcp://127.0.0.1:5555).\n"
            "  --topic T    subscribe to topics starting with T "
            "(default \"maad.\": every camera)\n"
            "  --count N    exit after N verdicts\n"
            "  --json       print each verdict's JSON as received; notes go "
            "to stderr\n"
            "  --timeout S  give up after S seconds (exit 1 if --count was "
            "not reached)\n"
            "  --passes M   each (default): a line per verdict; count: rejects,\n"
            "               uninspected verdicts and notes as usual, passes only\n"
            "               counted: on a terminal in one status line rewritten in\n"
            "               place, otherwise as a note \"# N passes, captured T0 to\n"
            "               T1\" before the next line and at least every 10 s\n"
            "  --server-key F  CURVE: maad's public certificate (its NAME.key)\n"
            "  --key F      CURVE: this subscriber's certificate with its secret key\n"
            "               (maa keygen NAME writes NAME.key_secret; maad must list\n"
            "               NAME.key in publish.curve_clients)\n"
            "  Notes (#) report seq gaps, refused handshakes, daemon restarts, heartbeats "
            "missing > 2 s\n"
            "  and maad's drift alarm raised or cleared;\n"
            "  SIGINT/SIGTERM print a summary and exit.\n");
}

static void format_time(uint64_t t_ns, char *buf, size_t len);

/* The run of passes since the last line, as a line of its own. */
static void end_run(watch *w)
{
    if (!w->run)
        return;
    char t0[32], t1[32];
    format_time(w->run_t0_ns, t0, sizeof t0);
    format_time(w->run_t1_ns, t1, sizeof t1);
    fprintf(w->notes, "# %llu pass%s, captured %s to %s\n", (unsigned long long)w->run,
            w->run == 1 ? "" : "es", t0, t1);
    w->run = 0;
}

/* The status line of --passes count on a terminal. */
static void draw_status(watch *w)
{
    if (!w->pass)
        return;
    fprintf(w->notes, "\r# %llu pass%s; last: %s\033[K", (unsigned long long)w->pass,
            w->pass == 1 ? "" : "es", w->last_pass);
    fflush(w->notes);
    w->shown = 1;
    w->dirty = 0;
}

/* Before any other line: the status line goes, or the run of passes is
 * reported first, so that lines keep the order of what they report. */
static void before_line(watch *w)
{
    if (w->live && w->shown) {
        fputs("\r\033[K", w->notes);
        w->shown = 0;
        w->dirty = 1;
    }
    end_run(w);
}

/* A note ("# ...") on the notes stream. */
static void note(watch *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(watch *w, const char *fmt, ...)
{
    before_line(w);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(w->notes, fmt, ap);
    va_end(ap);
}

static camera_state *camera(watch *w, const char *name)
{
    for (int i = 0; i < w->ncams; i++)
        if (strcmp(w->cams[i].name, name) == 0)
            return &w->cams[i];
    if (w->ncams == MAX_CAMERAS)
        return NULL;
    camera_state *c = &w->cams[w->ncams++];
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", name);
    return c;
}

/* A seq maad can send: 0 up, and one more after it still counts.  Anything
 * else (a forged or corrupt message) would overflow the gap arithmetic. */
static int seq_ok(const json_t *v)
{
    return json_is_integer(v) && json_integer_value(v) >= 0 &&
           json_integer_value(v) < LLONG_MAX;
}

/* Checks seq against what the camera's stream promised so far. */
static void check_seq(watch *w, camera_state *c, long long seq, int verdict)
{
    if (!c->seen_verdict) {
        c->seen_verdict = 1;
    } else if (seq > c->next_seq) {
        long long lost = seq - c->next_seq;
        w->gaps++;
        w->missing += (uint64_t)lost;
        note(w, "# %s: seq gap: %lld verdict%s lost (seq %lld..%lld)\n",
             c->name, lost, lost == 1 ? "" : "s", c->next_seq, seq - 1);
    } else if (seq < c->next_seq) {
        w->restarts++;
        note(w, "# %s: seq went back from %lld to %lld: maad "
             "restarted\n", c->name, c->next_seq - 1, seq);
    }
    c->next_seq = verdict ? seq + 1 : seq;
}

static void format_time(uint64_t t_ns, char *buf, size_t len)
{
    time_t s = (time_t)(t_ns / 1000000000u);
    struct tm tm;
    localtime_r(&s, &tm);
    size_t n = strftime(buf, len, "%H:%M:%S", &tm);
    snprintf(buf + n, len - n, ".%03u", (unsigned)(t_ns / 1000000u % 1000u));
}

static void on_verdict(watch *w, json_t *o, const char *raw, size_t rawlen)
{
    const char *cam = json_string_value(json_object_get(o, "camera"));
    const char *verdict = json_string_value(json_object_get(o, "verdict"));
    json_t *seqj = json_object_get(o, "seq");
    if (!cam || !verdict || !seq_ok(seqj)) {
        note(w, "# malformed verdict: %.*s\n", (int)rawlen, raw);
        return;
    }
    long long seq = json_integer_value(seqj);
    camera_state *c = camera(w, cam);
    if (c)
        check_seq(w, c, seq, 1);
    w->frames++;
    const int pass = strcmp(verdict, "pass") == 0;
    if (pass)
        w->pass++;
    else if (strcmp(verdict, "reject") == 0)
        w->reject++;
    else
        w->uninspected++;

    uint64_t tc = (uint64_t)json_integer_value(json_object_get(o, "t_capture_ns"));
    json_t *fid = json_object_get(o, "frame_id");
    char when[32], frame[32];
    format_time(tc, when, sizeof when);
    if (json_is_integer(fid))
        snprintf(frame, sizeof frame, "%lld", (long long)json_integer_value(fid));
    else
        snprintf(frame, sizeof frame, "?");
    if (pass && w->count_passes) {
        if (w->live) {
            snprintf(w->last_pass, sizeof w->last_pass, "%s seq %lld frame %s at %s", cam, seq,
                     frame, when);
            w->dirty = 1;
        } else {
            if (!w->run++) {
                w->run_t0_ns = tc;
                w->run_since_ns = maad_now_ns();
            }
            w->run_t1_ns = tc;
        }
        return;
    }
    before_line(w);
    if (w->json) {
        printf("%.*s\n", (int)rawlen, raw);
        fflush(stdout);
        return;
    }
    uint64_t tp = (uint64_t)json_integer_value(json_object_get(o, "t_publish_ns"));
    json_t *score = json_object_get(o, "score");
    char sc[64];
    if (json_is_number(score))
        snprintf(sc, sizeof sc, "%.4g/%.4g", json_number_value(score),
                 json_number_value(json_object_get(o, "threshold")));
    else
        snprintf(sc, sizeof sc, "-/%.4g",
                 json_number_value(json_object_get(o, "threshold")));
    printf("%s %s seq %lld frame %s %-11s score %s defects %zu latency %.1f ms",
           when, cam, seq, frame, verdict, sc,
           json_array_size(json_object_get(o, "defects")),
           tp >= tc ? (double)(tp - tc) / 1e6 : 0.0);
    if (strcmp(verdict, "pass") != 0) {
        const char *why = json_string_value(json_object_get(o, "reason"));
        if (why)
            printf(" (%s)", why);
    }
    putchar('\n');
    fflush(stdout);
}

static void on_heartbeat(watch *w, json_t *o, uint64_t now)
{
    const char *cam = json_string_value(json_object_get(o, "camera"));
    json_t *next = json_object_get(o, "seq_next");
    camera_state *c = cam ? camera(w, cam) : NULL;
    if (!c)
        return;
    w->heartbeats++;
    if (c->hb_late)
        note(w, "# %s: heartbeat back after %.1f s\n", c->name,
             (double)(now - c->last_hb_ns) / 1e9);
    c->hb_late = 0;
    c->last_hb_ns = now;
    /* maad's drift alarm (docs/operations.md, "Drift alarm"): a note when
     * it is raised or cleared.  Absent (the alarm off), or not one of its
     * values: nothing. */
    json_t *da = json_object_get(json_object_get(o, "stats"), "drift_alarm");
    const long long drift = json_is_integer(da) ? json_integer_value(da) : -1;
    if (drift >= 0 && drift <= 3 && drift != c->drift) {
        if (drift)
            note(w, "# %s: drift alarm: %s%s%s: the parts or the pictures have changed since "
                 "the calibration (docs/operations.md, \"Drift alarm\")\n", c->name,
                 drift & 1 ? "the passes' mean score has drifted" : "",
                 drift == 3 ? ", " : "", drift & 2 ? "too many rejects" : "");
        else
            note(w, "# %s: drift alarm over\n", c->name);
        c->drift = (int)drift;
    }
    /* Verdicts go out before the heartbeat on the same connection, so every
     * seq below seq_next should have arrived by now -- if the subscription
     * lets verdicts through at all. */
    char vt[128];
    snprintf(vt, sizeof vt, "maad.%s", cam);
    if (strncmp(vt, w->topic, strlen(w->topic)) != 0)
        return;
    if (seq_ok(next) && c->seen_verdict)
        check_seq(w, c, json_integer_value(next), 0);
    else if (seq_ok(next)) {
        c->seen_verdict = 1;
        c->next_seq = json_integer_value(next);
    }
}

static void check_heartbeats(watch *w, uint64_t now, uint64_t start)
{
    for (int i = 0; i < w->ncams; i++) {
        camera_state *c = &w->cams[i];
        if (c->last_hb_ns && !c->hb_late && now - c->last_hb_ns > HEARTBEAT_LATE_NS) {
            c->hb_late = 1;
            w->hb_outages++;
            note(w, "# %s: no heartbeat for %.1f s: is maad "
                 "running?\n", c->name, (double)(now - c->last_hb_ns) / 1e9);
        }
    }
    if (!w->heartbeats && !w->warned_none && now - start > HEARTBEAT_LATE_NS) {
        w->warned_none = 1;
        w->hb_outages++;
        note(w, "# no heartbeat in %.1f s: check the endpoint and "
             "--topic\n", (double)(now - start) / 1e9);
    }
    if (w->run && now - w->run_since_ns >= PASS_RUN_NS)
        end_run(w);
    if (w->live && w->dirty)
        draw_status(w);
    fflush(w->notes);
}

static void summary(watch *w)
{
    /* The last count stays on the screen above the summary. */
    if (w->live && w->pass) {
        draw_status(w);
        fputc('\n', w->notes);
        w->shown = 0;
    }
    end_run(w);
    fprintf(w->notes,
            "# summary: %llu frames: %llu pass, %llu reject, %llu uninspected; "
            "%llu seq gaps (%llu verdicts lost); %llu restarts; %llu heartbeat "
            "outages\n",
            (unsigned long long)w->frames, (unsigned long long)w->pass,
            (unsigned long long)w->reject, (unsigned long long)w->uninspected,
            (unsigned long long)w->gaps, (unsigned long long)w->missing,
            (unsigned long long)w->restarts, (unsigned long long)w->hb_outages);
    fflush(w->notes);
}

/* One message as recv_message gives it: its topic, and its JSON (jl bytes,
 * NUL-terminated; NULL when the message had no second part).  Apart from
 * the socket, this is all maa watch does with what a publisher sends, so
 * tests/fuzz/fuzz_watch.c feeds hostile messages here. */
static void on_message(watch *w, const char *topic, const char *js, size_t jl, uint64_t now)
{
    json_error_t je;
    json_t *o = js ? json_loadb(js, jl, 0, &je) : NULL;
    size_t tl = strlen(topic);
    if (!o)
        note(w, "# %s: message without valid JSON\n", topic);
    else if (tl > 10 && strcmp(topic + tl - 10, ".heartbeat") == 0)
        on_heartbeat(w, o, now);
    else
        on_verdict(w, o, js, jl);
    json_decref(o);
}

/* Receives one multipart message: topic into topic, second part into *json
 * (malloc'd, NUL-terminated); further parts are discarded. */
static int recv_message(void *sock, char *topic, size_t tlen, char **json,
                        size_t *jlen)
{
    int part = 0, more = 1;
    *json = NULL;
    *jlen = 0;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sock, part ? 0 : ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return part ? -1 : 0;
        }
        size_t n = zmq_msg_size(&m);
        if (part == 0) {
            snprintf(topic, tlen, "%.*s", (int)n, (const char *)zmq_msg_data(&m));
        } else if (part == 1) {
            *json = malloc(n + 1);
            if (*json) {
                memcpy(*json, zmq_msg_data(&m), n);
                (*json)[n] = '\0';
                *jlen = n;
            }
        }
        more = zmq_msg_more(&m);
        zmq_msg_close(&m);
        part++;
    }
    return 1;
}

int maa_cmd_watch(int argc, char **argv)
{
    static const struct option opts[] = {
        {"topic", required_argument, NULL, 't'},
        {"count", required_argument, NULL, 'n'},
        {"json", no_argument, NULL, 'j'},
        {"timeout", required_argument, NULL, 'T'},
        {"passes", required_argument, NULL, 'p'},
        {"server-key", required_argument, NULL, 'S'},
        {"key", required_argument, NULL, 'K'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static const char who[] = "maa watch";
    const char *topic = "maad.", *server_key = NULL, *key = NULL;
    long long count = 0;
    double timeout = 0;
    watch w = {.notes = stdout};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "t:n:jT:p:h", opts, NULL)) != -1) {
        switch (c) {
        case 't':
            topic = optarg;
            break;
        case 'n':
            if (maa_cli_parse_integer(who, "count", optarg, 1, MAX_COUNT, &count))
                return 2;
            break;
        case 'j':
            w.json = 1;
            w.notes = stderr;
            break;
        case 'T':
            if (maa_cli_parse_number(who, "timeout", optarg, 0.001, MAA_CLI_MAX_SECONDS, &timeout))
                return 2;
            break;
        case 'p':
            if (strcmp(optarg, "each") && strcmp(optarg, "count")) {
                fprintf(stderr, "maa watch: --passes %s: want each or count\n", optarg);
                return 2;
            }
            w.count_passes = strcmp(optarg, "count") == 0;
            break;
        case 'S':
            server_key = optarg;
            break;
        case 'K':
            key = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!server_key != !key) {
        fprintf(stderr, "maa watch: CURVE needs both --server-key and --key\n");
        return 2;
    }
    w.topic = topic;
    w.live = w.count_passes && isatty(fileno(w.notes));
    if (optind != argc - 1) {
        usage(stderr);
        return 2;
    }
    const char *endpoint = argv[optind];

    void *ctx = zmq_ctx_new();
    void *sock = ctx ? zmq_socket(ctx, ZMQ_SUB) : NULL;
    /* Refused handshakes are noted when their reason first comes or
     * changes, and tried again every second: maa watch follows once maad
     * allows its key (SIGHUP) or is restarted with the keys it expects. */
    maad_handshakes hs = {0};
    char why[MAA_ERRLEN];
    snprintf(why, sizeof why, "%s", zmq_strerror(zmq_errno()));
    if (!sock || (key && maad_curve_client(sock, server_key, key, why, sizeof why)) ||
        maad_handshakes_open(&hs, ctx, sock, why, sizeof why) ||
        zmq_setsockopt(sock, ZMQ_SUBSCRIBE, topic, strlen(topic)) ||
        zmq_connect(sock, endpoint)) {
        if (hs.monitor)
            snprintf(why, sizeof why, "%s", zmq_strerror(zmq_errno()));
        fprintf(stderr, "maa watch: %s: %s\n", endpoint, why);
        maad_handshakes_close(&hs);
        if (sock)
            zmq_close(sock);
        if (ctx)
            zmq_ctx_term(ctx);
        return 1;
    }
    struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    uint64_t start = maad_now_ns();
    uint64_t deadline = timeout > 0 ? start + (uint64_t)(timeout * 1e9) : 0;
    int rc = 0;
    while (!stop_signal) {
        uint64_t now = maad_now_ns();
        if (deadline && now >= deadline) {
            if (count && (long long)w.frames < count) {
                note(&w, "# timeout after %.1f s: %llu of %lld "
                     "verdicts\n", timeout, (unsigned long long)w.frames, count);
                rc = 1;
            }
            break;
        }
        check_heartbeats(&w, now, start);
        zmq_pollitem_t item[2] = {{.socket = sock, .events = ZMQ_POLLIN},
                                  {.socket = hs.monitor, .events = ZMQ_POLLIN}};
        if (zmq_poll(item, 2, 200) < 0) {
            if (zmq_errno() == EINTR)
                continue;
            fprintf(stderr, "maa watch: %s\n", zmq_strerror(zmq_errno()));
            rc = 1;
            break;
        }
        while (maad_handshakes_poll(&hs, sock, endpoint, maad_mono_ns(), why, sizeof why))
            note(&w, "# %s\n", why);
        char tp[256], *js;
        size_t jl;
        int got;
        while (!stop_signal &&
               (got = recv_message(sock, tp, sizeof tp, &js, &jl)) > 0) {
            on_message(&w, tp, js, jl, maad_now_ns());
            free(js);
            if (count && (long long)w.frames >= count)
                break;
        }
        if (count && (long long)w.frames >= count)
            break;
    }
    summary(&w);
    int linger = 0;
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    maad_handshakes_close(&hs);
    zmq_close(sock);
    zmq_ctx_term(ctx);
    return rc;
}
