/* publish.c — verdicts and heartbeats on ZeroMQ (contract §8, docs/protocol.md).
 *
 * A PUB socket, not XPUB with XPUB_NODROP: with NODROP one stalled subscriber
 * (an operator's `maa watch` suspended with ^Z) would make every send fail
 * and cut the PLC bridge off too.  PUB keeps a queue of sndhwm messages per
 * subscriber and drops, for that subscriber alone, what does not fit; the
 * subscriber sees the loss as a gap in seq.  zmq_send on PUB never blocks,
 * and ZMQ_DONTWAIT makes sure of it; anything the socket refuses all the
 * same is counted in send_dropped with its seq spent. */
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "daemon/daemon.h"

#define PROTOCOL_VERSION 2
/* Reals with 15 significant digits: exact for any decimal a person wrote
 * (a threshold of 287.5 reads 287.5, not 287.50000000000000). */

struct maad_pub {
    /* The worker and its keep-alive thread both call in; ZeroMQ allows a
     * socket to change threads behind a full memory barrier, which the
     * lock is. */
    pthread_mutex_t lock;
    void *ctx, *sock;
    char *topic, *hb_topic, *camera;
    maad_mask_format mask_format;
    uint64_t heartbeat_ns;
    uint64_t last_hb_ns;
    maad_pub_stats st;
    /* The PNG of an empty s x s mask, what most verdicts of a good line
     * carry: encoded once instead of per frame (~100 us a mask at S=256 on
     * the development machine, build/bench_publish), where the engine can
     * judge thousands a second. */
    void *blank_png;
    size_t blank_len;
    int blank_side;
    /* The queue bound's inputs, to make it anew for another S. */
    int sndhwm;
    size_t subscriber_budget;
    maad_zap *zap;              /* CURVE: the handshakes' judge; NULL: plain */
};

static uint64_t clock_ns(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t maad_now_ns(void) { return clock_ns(CLOCK_REALTIME); }
uint64_t maad_mono_ns(void) { return clock_ns(CLOCK_MONOTONIC); }

static const char *const mask_names[] = {"none", "png", "raw"};

int maad_mask_format_parse(const char *name, maad_mask_format *out)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(name, mask_names[i]) == 0) {
            *out = (maad_mask_format)i;
            return MAA_OK;
        }
    return MAA_ERR;
}

const char *maad_mask_format_name(maad_mask_format f)
{
    return (unsigned)f < 3 ? mask_names[f] : "?";
}

static char *dupf(const char *fmt, const char *s)
{
    size_t n = (size_t)snprintf(NULL, 0, fmt, s) + 1;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, fmt, s);
    return p;
}

/* The largest verdict message with an S x S mask of format f: the topic and
 * JSON (a reason of MAAD_REASON_SIZE, each byte escaped as \u00XX at worst,
 * and MAA_MAX_REGIONS regions, within the 8 KiB added for every other field)
 * and the mask (raw bytes, or a PNG that deflate could not shrink: its rows
 * stored with their filter bytes, plus headers), plus ZeroMQ's own bytes for
 * each of its three parts. */
static size_t message_max(maad_mask_format f, int side)
{
    size_t s = side > 0 ? (size_t)side : 0;
    size_t mask = f == MAAD_MASK_RAW ? s * s : f == MAAD_MASK_PNG ? s * (s + 1) + s * 5 + 1024 : 0;
    return 6 * MAAD_REASON_SIZE + 8192 + mask + 3 * 128;
}

/* sndhwm cut so that a subscriber's queue of the largest messages fits the
 * budget: what bounds the memory a subscriber that never reads can make
 * maad hold (ZeroMQ counts messages, not bytes).  At least 1. */
static int queue_limit(int sndhwm, size_t budget, maad_mask_format f, int side)
{
    if (!budget)
        return sndhwm;
    size_t fit = budget / message_max(f, side);
    return fit < (size_t)sndhwm ? (fit ? (int)fit : 1) : sndhwm;
}

int maad_endpoint_is_local(const char *e)
{
    if (strncmp(e, "ipc://", 6) == 0 || strncmp(e, "inproc://", 9) == 0)
        return 1;
    if (strncmp(e, "tcp://", 6) != 0)
        return 0;
    e += 6;
    /* tcp://SOURCE;HOST:PORT binds HOST */
    const char *semi = strchr(e, ';');
    if (semi)
        e = semi + 1;
    return strncmp(e, "127.", 4) == 0 || strncmp(e, "localhost:", 10) == 0 ||
           strncmp(e, "[::1]:", 6) == 0 || strncmp(e, "lo:", 3) == 0;
}

void maad_pub_free(maad_pub *p)
{
    if (!p)
        return;
    if (p->sock)
        zmq_close(p->sock);
    maad_zap_stop(p->zap);
    if (p->ctx)
        zmq_ctx_term(p->ctx);
    free(p->topic);
    free(p->hb_topic);
    free(p->camera);
    free(p->blank_png);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

/* CURVE: the handler that judges handshakes runs before the socket binds,
 * so that no subscriber connects unjudged (libzmq lets every CURVE client
 * in when no handler is bound). */
static int curve_server(maad_pub *p, const maad_pub_opts *o, char *err, size_t errlen)
{
    int has_key = o->curve_secret_key && *o->curve_secret_key;
    int has_dir = o->curve_clients && *o->curve_clients;
    if (!has_key && !has_dir)
        return MAA_OK;
    if (!has_key || !has_dir) {
        snprintf(err, err ? errlen : 0, "publish: CURVE needs both curve_secret_key and "
                 "curve_clients");
        return MAA_ERR;
    }
    char why[MAA_ERRLEN];
    maad_curve_cert c;
    if (maad_curve_cert_load(o->curve_secret_key, 1, &c, why, sizeof why) != MAA_OK) {
        snprintf(err, err ? errlen : 0, "publish.curve_secret_key: %s", why);
        return MAA_ERR;
    }
    if (maad_zap_start(p->ctx, o->curve_clients, o->log, &p->zap, err, errlen) != MAA_OK)
        return MAA_ERR;
    int on = 1;
    if (zmq_setsockopt(p->sock, ZMQ_ZAP_DOMAIN, "maad", 4) ||
        zmq_setsockopt(p->sock, ZMQ_CURVE_SERVER, &on, sizeof on) ||
        zmq_setsockopt(p->sock, ZMQ_CURVE_SECRETKEY, c.secret_key, MAAD_CURVE_KEY_LEN + 1)) {
        snprintf(err, err ? errlen : 0, "publish: CURVE: %s", zmq_strerror(zmq_errno()));
        return MAA_ERR;
    }
    return MAA_OK;
}

int maad_pub_create(const maad_pub_opts *o, maad_pub **out, char *err,
                    size_t errlen)
{
    *out = NULL;
    if (!o->endpoint || !*o->endpoint || !o->camera || !*o->camera) {
        snprintf(err, err ? errlen : 0,
                 "publish: an endpoint and a camera name are required");
        return MAA_ERR;
    }
    for (const char *c = o->camera; *c; c++)
        if (*c <= ' ' || *c > '~') {
            snprintf(err, err ? errlen : 0,
                     "publish: camera name \"%s\": topics are printable "
                     "ASCII without spaces", o->camera);
            return MAA_ERR;
        }
    if (o->sndhwm < 1) {
        snprintf(err, err ? errlen : 0, "publish.sndhwm %d: must be >= 1",
                 o->sndhwm);
        return MAA_ERR;
    }
    if (o->heartbeat_ms < 0 || o->heartbeat_ms > 1000) {
        snprintf(err, err ? errlen : 0,
                 "publish.heartbeat_ms %d: must be 1..1000 (contract §8: at least "
                 "one a second)", o->heartbeat_ms);
        return MAA_ERR;
    }
    maad_pub *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, err ? errlen : 0, "publish: out of memory");
        return MAA_ERR;
    }
    pthread_mutex_init(&p->lock, NULL);
    p->mask_format = o->mask_format;
    p->heartbeat_ns = (uint64_t)(o->heartbeat_ms ? o->heartbeat_ms : 1000) * 1000000u;
    p->camera = dupf("%s", o->camera);
    p->topic = dupf("maad.%s", o->camera);
    p->hb_topic = dupf("maad.%s.heartbeat", o->camera);
    p->ctx = zmq_ctx_new();
    if (!p->camera || !p->topic || !p->hb_topic || !p->ctx) {
        snprintf(err, err ? errlen : 0, "publish: cannot create a ZeroMQ context");
        maad_pub_free(p);
        return MAA_ERR;
    }
    p->sndhwm = o->sndhwm;
    p->subscriber_budget = o->subscriber_budget;
    p->st.queue_limit = queue_limit(o->sndhwm, o->subscriber_budget, o->mask_format,
                                    o->mask_side);
    p->sock = zmq_socket(p->ctx, ZMQ_PUB);
    /* Linger briefly so the last verdicts leave at shutdown without letting
     * a dead subscriber hold the daemon's exit. */
    int linger = 200;
    if (!p->sock ||
        zmq_setsockopt(p->sock, ZMQ_SNDHWM, &p->st.queue_limit, sizeof p->st.queue_limit) ||
        zmq_setsockopt(p->sock, ZMQ_LINGER, &linger, sizeof linger)) {
        snprintf(err, err ? errlen : 0, "publish: socket: %s",
                 zmq_strerror(zmq_errno()));
        maad_pub_free(p);
        return MAA_ERR;
    }
    if (curve_server(p, o, err, errlen) != MAA_OK) {
        maad_pub_free(p);
        return MAA_ERR;
    }
    if (zmq_bind(p->sock, o->endpoint) != 0) {
        snprintf(err, err ? errlen : 0, "publish.endpoint %s: %s", o->endpoint,
                 zmq_strerror(zmq_errno()));
        maad_pub_free(p);
        return MAA_ERR;
    }
    p->last_hb_ns = 0;
    *out = p;
    return MAA_OK;
}

/* Sends topic, json and, when data is not NULL, data as one message. */
static int send_parts(maad_pub *p, const char *topic, const char *json,
                      const void *data, size_t len)
{
    int more = data ? ZMQ_SNDMORE : 0;
    /* Once the first part is queued the rest are too: ZeroMQ queues a
     * multipart message whole or not at all. */
    if (zmq_send(p->sock, topic, strlen(topic), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(p->sock, json, strlen(json), more | ZMQ_DONTWAIT) < 0 ||
        (data && zmq_send(p->sock, data, len, ZMQ_DONTWAIT) < 0)) {
        p->st.send_dropped++;
        return MAA_ERR;
    }
    return MAA_OK;
}

/* Model pixels [a, a+n) to camera pixels: the smallest covering range. */
static void to_camera(int a, int n, int s, int cam, int *ca, int *cn)
{
    long lo = (long)a * cam / s;
    long hi = ((long)(a + n) * cam + s - 1) / s;
    *ca = (int)lo;
    *cn = (int)(hi - lo);
}

static json_t *number_or_null(double x)
{
    return isfinite(x) ? json_real(x) : json_null();
}

static int all_zero(const uint8_t *b, size_t n)
{
    uint64_t acc = 0, w;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        memcpy(&w, b + i, 8);
        acc |= w;
    }
    for (; i < n; i++)
        acc |= b[i];
    return acc == 0;
}

/* The PNG of mask (s x s) into *bytes: the cached one for an empty mask, or
 * *owned, which the caller frees. */
static int mask_png(maad_pub *p, const uint8_t *mask, int s, const void **bytes, size_t *len,
                    void **owned, char *err, size_t errlen)
{
    *owned = NULL;
    if (!all_zero(mask, (size_t)s * s)) {
        if (maa_png_encode(mask, s, s, 1, owned, len, err, errlen) != MAA_OK)
            return MAA_ERR;
        *bytes = *owned;
        return MAA_OK;
    }
    if (p->blank_side != s) {
        void *png;
        size_t n;
        if (maa_png_encode(mask, s, s, 1, &png, &n, err, errlen) != MAA_OK)
            return MAA_ERR;
        free(p->blank_png);
        p->blank_png = png;
        p->blank_len = n;
        p->blank_side = s;
    }
    *bytes = p->blank_png;
    *len = p->blank_len;
    return MAA_OK;
}

json_t *maad_evidence_json(int evidence)
{
    json_t *a = json_array();
    if (evidence & MAA_EVIDENCE_SCORE)
        json_array_append_new(a, json_string("score"));
    if (evidence & MAA_EVIDENCE_MASK)
        json_array_append_new(a, json_string("mask"));
    return a;
}

json_t *maad_verdict_json(const maad_verdict *v, const char *camera, uint64_t seq,
                          uint64_t t_publish_ns, maad_mask_format mf)
{
    const char *reason = v->reason;
    if (!reason)
        reason = v->verdict == MAAD_PASS     ? "score at or below threshold"
                 : v->verdict == MAAD_REJECT ? "score above threshold"
                                             : "not inspected";
    json_t *defects = json_array();
    int s = v->model_size;
    for (int i = 0; i < v->nregions; i++) {
        const maa_region *g = &v->regions[i];
        int cx, cy, cw, ch;
        to_camera(g->x, g->w, s, v->cam_width > 0 ? v->cam_width : s, &cx, &cw);
        to_camera(g->y, g->h, s, v->cam_height > 0 ? v->cam_height : s, &cy, &ch);
        json_array_append_new(defects,
            json_pack("{s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i}", "x", g->x,
                      "y", g->y, "w", g->w, "h", g->h, "area", g->area,
                      "cx", cx, "cy", cy, "cw", cw, "ch", ch));
    }
    int mw = mf == MAAD_MASK_NONE ? 0 : s;
    int judged = v->verdict != MAAD_UNINSPECTED;
    json_t *evidence = maad_evidence_json(judged ? v->evidence : 0);
    return json_pack(
        "{s:i,s:s,s:I,s:o,s:I,s:I,s:s,s:s,s:s,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:{s:s,s:i,s:i}}",
        "v", PROTOCOL_VERSION, "camera", camera, "seq", (json_int_t)seq,
        "frame_id", v->frame_id == MAAD_FRAME_ID_UNKNOWN
                        ? json_null() : json_integer((json_int_t)v->frame_id),
        "t_capture_ns", (json_int_t)v->t_capture_ns,
        "t_publish_ns", (json_int_t)t_publish_ns, "model", v->model,
        "verdict", maad_outcome_name(v->verdict), "reason", reason,
        "score", judged ? number_or_null(v->score) : json_null(),
        "threshold", number_or_null(v->threshold),
        "rule", judged ? json_string(maa_rule_name(v->rule)) : json_null(),
        "evidence", evidence,
        "mask_peak", judged ? number_or_null(v->mask_peak) : json_null(),
        "mask_threshold", judged ? number_or_null(v->mask_threshold) : json_null(),
        "defects", defects,
        "mask", "format", maad_mask_format_name(mf), "width", mw, "height", mw);
}

static int verdict_locked(maad_pub *p, const maad_verdict *v, uint64_t *seq_out,
                          uint64_t *t_publish_out, char *err, size_t errlen)
{
    /* Every verdict names the model in force, judged or not (contract §8):
     * across a model swap, that is how a subscriber tells the models'
     * verdicts apart. */
    if ((unsigned)v->verdict > MAAD_UNINSPECTED || !v->model || !*v->model ||
        v->nregions < 0 || (v->nregions && !v->regions) ||
        ((v->nregions || v->mask) && v->model_size <= 0)) {
        snprintf(err, err ? errlen : 0, "publish: bad verdict for frame %llu",
                 (unsigned long long)v->frame_id);
        return MAA_ERR;
    }
    /* Spent only once the message is encoded: a verdict refused here is
     * published again by the caller (as uninspected), with this seq. */
    uint64_t seq = p->st.seq_next;
    const int s = v->model_size;
    maad_mask_format mf = v->mask ? p->mask_format : MAAD_MASK_NONE;
    void *png = NULL;
    const void *mask_bytes = NULL;
    size_t mask_len = 0;
    if (mf == MAAD_MASK_PNG) {
        char perr[MAA_ERRLEN];
        if (mask_png(p, v->mask, s, &mask_bytes, &mask_len, &png, perr, sizeof perr) !=
            MAA_OK) {
            p->st.mask_errors++;
            mf = MAAD_MASK_NONE;
            mask_len = 0;
        }
    } else if (mf == MAAD_MASK_RAW) {
        mask_bytes = v->mask;
        mask_len = (size_t)s * (size_t)s;
    }
    const uint64_t t_publish = maad_now_ns();
    json_t *o = maad_verdict_json(v, p->camera, seq, t_publish, mf);
    char *json = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;
    json_decref(o);
    if (!json) {
        free(png);
        snprintf(err, err ? errlen : 0,
                 "publish: cannot encode frame %llu (reason not UTF-8?)",
                 (unsigned long long)v->frame_id);
        return MAA_ERR;
    }
    p->st.seq_next++;
    if (v->verdict == MAAD_PASS)
        p->st.pass++;
    else if (v->verdict == MAAD_REJECT)
        p->st.reject++;
    else
        p->st.uninspected++;
    send_parts(p, p->topic, json, mask_bytes, mask_len);
    free(json);
    free(png);
    if (seq_out)
        *seq_out = seq;
    if (t_publish_out)
        *t_publish_out = t_publish;
    return MAA_OK;
}

int maad_pub_verdict_stamped(maad_pub *p, const maad_verdict *v, uint64_t *seq,
                             uint64_t *t_publish_ns, char *err, size_t errlen)
{
    pthread_mutex_lock(&p->lock);
    int rc = verdict_locked(p, v, seq, t_publish_ns, err, errlen);
    pthread_mutex_unlock(&p->lock);
    return rc;
}

int maad_pub_verdict(maad_pub *p, const maad_verdict *v, char *err, size_t errlen)
{
    return maad_pub_verdict_stamped(p, v, NULL, NULL, err, errlen);
}

int maad_pub_drops(maad_pub *p, const maad_drops *d, double threshold, const char *model,
                   char *err, size_t errlen)
{
    int rc = MAA_OK;
    pthread_mutex_lock(&p->lock);
    for (uint64_t k = 0; k < d->count && rc == MAA_OK; k++) {
        maad_verdict v = {.verdict = MAAD_UNINSPECTED,
                          .reason = "ring overflow",
                          .threshold = threshold, .model = model};
        maad_drops_frame(d, k, &v.frame_id, &v.t_capture_ns);
        rc = verdict_locked(p, &v, NULL, NULL, err, errlen);
    }
    pthread_mutex_unlock(&p->lock);
    return rc;
}

static int tick_locked(maad_pub *p, uint64_t now_ns, const maad_stat *extra, int nextra)
{
    if (p->last_hb_ns && now_ns - p->last_hb_ns < p->heartbeat_ns)
        return 0;
    p->last_hb_ns = now_ns;
    p->st.heartbeats++;
    json_t *stats = json_pack("{s:I,s:I,s:I,s:I,s:I}",
                              "pass", (json_int_t)p->st.pass,
                              "reject", (json_int_t)p->st.reject,
                              "uninspected", (json_int_t)p->st.uninspected,
                              "send_dropped", (json_int_t)p->st.send_dropped,
                              "mask_errors", (json_int_t)p->st.mask_errors);
    for (int i = 0; stats && i < nextra; i++) {
        double x = extra[i].value;
        /* Counters read as integers, rates as reals. */
        int integral = !extra[i].real && isfinite(x) && fabs(x) < 9e15 && x == floor(x);
        json_object_set_new(stats, extra[i].name,
                            integral ? json_integer((json_int_t)x)
                                     : number_or_null(x));
    }
    json_t *o = json_pack("{s:i,s:s,s:I,s:I,s:o}", "v", PROTOCOL_VERSION,
                          "camera", p->camera, "t_ns", (json_int_t)now_ns,
                          "seq_next", (json_int_t)p->st.seq_next,
                          "stats", stats);
    char *json = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;
    json_decref(o);
    if (!json) {
        p->st.send_dropped++;
        return 0;
    }
    send_parts(p, p->hb_topic, json, NULL, 0);
    free(json);
    return 1;
}

int maad_pub_tick(maad_pub *p, uint64_t now_ns, const maad_stat *extra, int nextra)
{
    pthread_mutex_lock(&p->lock);
    int sent = tick_locked(p, now_ns, extra, nextra);
    pthread_mutex_unlock(&p->lock);
    return sent;
}

void maad_pub_get_stats(maad_pub *p, maad_pub_stats *s)
{
    pthread_mutex_lock(&p->lock);
    *s = p->st;
    pthread_mutex_unlock(&p->lock);
    if (p->zap)
        maad_zap_counts(p->zap, &s->curve_keys, &s->curve_accepted, &s->curve_refused);
}

void maad_pub_set_mask_side(maad_pub *p, int mask_side)
{
    pthread_mutex_lock(&p->lock);
    p->st.queue_limit = queue_limit(p->sndhwm, p->subscriber_budget, p->mask_format, mask_side);
    zmq_setsockopt(p->sock, ZMQ_SNDHWM, &p->st.queue_limit, sizeof p->st.queue_limit);
    pthread_mutex_unlock(&p->lock);
}

int maad_pub_reload_clients(maad_pub *p, int *nkeys, char *err, size_t errlen)
{
    if (nkeys)
        *nkeys = 0;
    return p->zap ? maad_zap_reload(p->zap, nkeys, err, errlen) : MAA_OK;
}
