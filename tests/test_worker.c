/* test_worker — the capture hand-off and the inspection worker on fake
 * frames: a tiny model (tests/testmodel.h) on the reference backend, a
 * publisher on an ipc:// endpoint and a SUB socket here that reads back every
 * verdict.  What is checked is the contract of contract §8: one verdict per
 * captured frame, seq gap-free, frames in capture order, uninspected with the
 * right reason for camera errors, ring overflow and frames too old to
 * judge; batching by size; a calibration swapped between batches and while
 * a batch is in the engine; a model (another S, its calibration) swapped
 * in while a batch fills and while one is in the engine, each frame judged
 * by exactly one model and naming it; the final counts.  Every verdict read
 * is also checked against the score, threshold, rule and evidence it
 * carries (next_verdict).  With a reject archive, every frame's record holds
 * its verdict as published and the frame's pixels at camera resolution
 * (test_archive_records, test_archive_overflow).  On a CUDA device,
 * also the worker's 8-bit frame path (test_device_frames), and the archive's
 * frames out of the engine's frame buffers (test_device_archive).  The
 * drift alarm fed with every judged frame, started again by a calibration
 * that judges otherwise and by a model, not by the same calibration again,
 * its state in the live read-out and the heartbeat (test_drift_alarm). */
#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "daemon/daemon.h"
#include "tests/check.h"
#include "tests/testmodel.h"

#define S 64
#define S2 48   /* the model swapped in */
#define W 80
#define H 60
#define BW 160  /* test_device_frames: larger than S x S x 4 bytes */
#define BH 120
#define PFNC_MONO8 0x01080001u

static maa_model *model, *model2;
static char dir[64];
/* test_archive_records: the ring slots that frames were handed over in
 * (released before their batch is judged), overwritten while the batch is
 * in the engine, as a camera filling the ring again would. */
static int scribbling;
static uint8_t *handed_over[64];
static int nhanded;
/* The archive the next rig's worker hands its records to; NULL: none. */
static maad_archive *rig_archive;
/* The next rig's drift alarm; window_frames 0: none. */
static maad_drift_opts rig_drift;

/* The worker's to_image: odd frame ids are copied into the buffer given,
 * as the camera module's conversion does; even ones are handed over where
 * they lie, in the ring slot, which the worker releases before judging. */
static int mono_image(const maad_slot *s, maa_image *img, void *buf, size_t buf_bytes,
                      char *err, size_t errlen)
{
    if (s->pixfmt != PFNC_MONO8 || s->size != (size_t)s->width * s->height) {
        snprintf(err, errlen, "not a Mono8 frame");
        return MAA_ERR;
    }
    void *px = s->pixels;
    if (scribbling && !(s->frame_id % 2) && nhanded < 64)
        handed_over[nhanded++] = s->pixels;
    if (s->frame_id % 2) {
        if (buf_bytes < s->size) {
            snprintf(err, errlen, "buffer of %zu bytes for %zu", buf_bytes, s->size);
            return MAA_ERR;
        }
        px = memcpy(buf, s->pixels, s->size);
    }
    *img = (maa_image){s->width, s->height, 1, 8, px};
    return MAA_OK;
}

typedef struct rig rig;
struct rig {
    void *ctx, *sub;
    maad_ring *ring;
    maad_pub *pub;
    maa_inspector *in;
    maad_logger log;
    maad_worker *w;
    void (*in_engine)(rig *r);  /* the worker's test_in_engine; NULL: none */
    char endpoint[128];
};

typedef struct {
    long long seq;
    long long frame_id;
    char verdict[16];
    char reason[96];
    double score, threshold;
    char model[65];
    int mask_side;  /* the mask's width: the S of the model that judged the frame */
} msg;

/* One whole message from the SUB socket: its JSON part into json (NUL
 * terminated), any mask part dropped.  1 for a verdict, 0 for a heartbeat,
 * -1 on timeout. */
static int recv_message(void *sub, char *json, size_t len)
{
    char topic[64];
    int n = zmq_recv(sub, topic, sizeof topic, 0);
    if (n < 0)
        return -1;
    const int verdict = n == 6;  /* "maad.t" exactly; heartbeats are "maad.t.heartbeat" */
    int more;
    size_t ml = sizeof more;
    json[0] = 0;
    zmq_getsockopt(sub, ZMQ_RCVMORE, &more, &ml);
    if (more) {
        n = zmq_recv(sub, json, len - 1, 0);
        json[n < 0 ? 0 : (size_t)n < len - 1 ? (size_t)n : len - 1] = 0;
        zmq_getsockopt(sub, ZMQ_RCVMORE, &more, &ml);
    }
    while (more) {
        zmq_recv(sub, NULL, 0, 0);
        zmq_getsockopt(sub, ZMQ_RCVMORE, &more, &ml);
    }
    return verdict;
}

static atomic_int failing_calls, failing_batches;
static char failing_why[MAA_ERRLEN];

/* The worker's on_failing: counted, the last reason kept. */
static void on_failing(void *user, int batches, const char *why)
{
    (void)user;
    snprintf(failing_why, sizeof failing_why, "%s", why);
    atomic_store(&failing_batches, batches);
    atomic_fetch_add(&failing_calls, 1);
}

static void rig_in_engine(void *user)
{
    rig *r = user;
    r->in_engine(r);
}

/* batch_max, timeout, delay, ring slots; threshold of the calibration;
 * the engine: eo, or the ref backend for batches up to engine_batch;
 * in_engine (or NULL) called with each batch in the engine; the worker's
 * max_age_ms (0: no limit).  The worker
 * calls on_failing after 3 failed batches in a row.  A rig that cannot be
 * set up fails the running test; -1 then. */
static int rig_up_engine(rig *r, int batch_max, double timeout_ms, double delay_ms,
                         int slots, double threshold, int engine_batch,
                         const maa_engine_opts *eo, void (*in_engine)(rig *r), int max_age_ms)
{
    static int n;
    memset(r, 0, sizeof *r);
    r->in_engine = in_engine;
    snprintf(r->endpoint, sizeof r->endpoint, "ipc://%s/pub%d", dir, n++);
    char err[MAA_ERRLEN];
    maa_engine_opts ref = {.backend = MAA_BACKEND_REF, .max_batch = engine_batch, .threads = 1};
    maad_pub_opts po = {.endpoint = r->endpoint, .camera = "t", .sndhwm = 100000,
                        .mask_format = MAAD_MASK_PNG, .heartbeat_ms = 50};
    if (maa_inspector_create(model, eo ? eo : &ref, &r->in, err, sizeof err) ||
        maad_ring_create((uint32_t)slots, BW * BH, NULL, NULL, NULL, &r->ring, err, sizeof err) ||
        maad_pub_create(&po, &r->pub, err, sizeof err)) {
        CHECK(0, "rig: %s", err);
        return -1;
    }
    maad_log_init(&r->log, "t", MAAD_LOG_WARNING);
    r->ctx = zmq_ctx_new();
    r->sub = zmq_socket(r->ctx, ZMQ_SUB);
    int hwm = 100000, tmo = 5000;
    zmq_setsockopt(r->sub, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(r->sub, ZMQ_RCVTIMEO, &tmo, sizeof tmo);
    zmq_setsockopt(r->sub, ZMQ_SUBSCRIBE, "maad.t", 6);
    zmq_connect(r->sub, r->endpoint);
    maa_calibration cal = {.n = 20, .sigma = 1, .gamma = 0, .threshold = threshold,
                           .pixel_threshold = 1e30, .mask_fraction = 0.01,
                           .mask_window = 7, .min_region_area = 1};
    maad_worker_opts wo = {.ring = r->ring, .pub = r->pub, .archive = rig_archive,
                           .model = {.inspector = r->in, .image_size = S, .channels = 1,
                                     .sha256 = maa_model_sha256(model)},
                           .cal = cal,
                           .to_image = mono_image, .image_bytes = BW * BH,
                           .batch_max = batch_max,
                           .batch_timeout_ms = timeout_ms, .max_age_ms = max_age_ms,
                           .test_delay_ms = delay_ms,
                           .test_in_engine = in_engine ? rig_in_engine : NULL,
                           .heartbeat_ms = 50, .log = &r->log,
                           .max_failed_batches = 3, .on_failing = on_failing, .user = r,
                           .drift = rig_drift};
    if (maad_worker_start(&wo, &r->w, err, sizeof err)) {
        CHECK(0, "rig: %s", err);
        return -1;
    }
    /* The worker's first heartbeat proves the subscription is in place
     * (a PUB socket drops what it sends before a subscriber joined). */
    char buf[4096];
    for (int tries = 0; tries < 100; tries++) {
        int k = recv_message(r->sub, buf, sizeof buf);
        if (k < 0)
            break;
        if (k == 0)
            return 0;
    }
    CHECK(0, "rig: no heartbeat from the worker");
    return -1;
}

static int rig_up(rig *r, int batch_max, double timeout_ms, double delay_ms,
                  int slots, double threshold)
{
    return rig_up_engine(r, batch_max, timeout_ms, delay_ms, slots, threshold, batch_max, NULL,
                         NULL, 0);
}

/* Whether a verdict agrees with what it carries (docs/protocol.md): judged,
 * it has "score" evidence exactly when score > threshold and "mask" evidence
 * exactly when it lists a defect, and is a reject exactly when its evidence
 * holds what its rule counts; uninspected, it has no score, rule or
 * evidence.  A verdict judged under one calibration and published with
 * another fails here.  Else why, into why. */
static int verdict_agrees(json_t *o, char *why, size_t n)
{
    const char *verdict = json_string_value(json_object_get(o, "verdict"));
    const char *rule = json_string_value(json_object_get(o, "rule"));
    json_t *score = json_object_get(o, "score"), *ev = json_object_get(o, "evidence"),
           *thr = json_object_get(o, "threshold");
    if (!verdict || !json_is_array(ev) || !json_is_number(thr)) {
        snprintf(why, n, "no verdict, evidence or threshold");
        return 0;
    }
    if (!strcmp(verdict, "uninspected")) {
        snprintf(why, n, "uninspected with a score, rule or evidence");
        return json_is_null(score) && !rule && json_array_size(ev) == 0;
    }
    if (!json_is_number(score) || !rule) {
        snprintf(why, n, "%s without a score or rule", verdict);
        return 0;
    }
    int has_score = 0, has_mask = 0;
    size_t i;
    json_t *e;
    json_array_foreach(ev, i, e) {
        const char *k = json_string_value(e);
        has_score |= k && !strcmp(k, "score");
        has_mask |= k && !strcmp(k, "mask");
    }
    const int defects = json_array_size(json_object_get(o, "defects")) > 0;
    const int counts = !strcmp(rule, "score")  ? has_score
                       : !strcmp(rule, "mask") ? has_mask
                                               : has_score || has_mask;
    const double s = json_number_value(score), t = json_number_value(thr);
    snprintf(why, n, "%s under rule %s with score %.15g, threshold %.15g, evidence [%s%s%s], %s",
             verdict, rule, s, t, has_score ? "score" : "", has_score && has_mask ? "," : "",
             has_mask ? "mask" : "", defects ? "defects" : "no defect");
    /* Both numbers are published to 15 digits: equal ones may have been
     * either way round. */
    return (s == t || has_score == (s > t)) && has_mask == defects &&
           !strcmp(verdict, counts ? "reject" : "pass");
}

/* Next verdict (heartbeats skipped); 0 on timeout.  Each one must agree
 * with what it carries (verdict_agrees): one that does not fails the
 * running test. */
static int next_verdict(rig *r, msg *m)
{
    static char buf[1 << 16];
    for (;;) {
        int k = recv_message(r->sub, buf, sizeof buf);
        if (k < 0)
            return 0;
        if (k == 0)
            continue;
        json_t *o = json_loads(buf, 0, NULL);
        if (!o)
            return 0;
        char why[256];
        CHECK(verdict_agrees(o, why, sizeof why), "seq %lld: %s",
              json_integer_value(json_object_get(o, "seq")), why);
        memset(m, 0, sizeof *m);
        m->seq = json_integer_value(json_object_get(o, "seq"));
        json_t *id = json_object_get(o, "frame_id");
        m->frame_id = json_is_integer(id) ? json_integer_value(id) : -1;
        snprintf(m->verdict, sizeof m->verdict, "%s",
                 json_string_value(json_object_get(o, "verdict")));
        snprintf(m->reason, sizeof m->reason, "%s",
                 json_string_value(json_object_get(o, "reason")));
        json_t *sc = json_object_get(o, "score");
        m->score = json_is_number(sc) ? json_number_value(sc) : NAN;
        m->threshold = json_number_value(json_object_get(o, "threshold"));
        const char *sha = json_string_value(json_object_get(o, "model"));
        snprintf(m->model, sizeof m->model, "%s", sha ? sha : "");
        m->mask_side = (int)json_integer_value(
            json_object_get(json_object_get(o, "mask"), "width"));
        json_decref(o);
        return 1;
    }
}

/* The worker stopped (everything in flight published) and freed; the rest
 * of the rig stays up for reading the verdicts. */
static void rig_stop(rig *r, maad_worker_stats *st)
{
    maad_worker_stop(r->w, st);
    maad_worker_free(r->w);
    r->w = NULL;
}

static void rig_down(rig *r, maad_worker_stats *st)
{
    if (r->w)
        rig_stop(r, st);
    zmq_close(r->sub);
    zmq_ctx_term(r->ctx);
    maad_pub_free(r->pub);
    maad_ring_free(r->ring);
    maa_inspector_free(r->in);
}

/* Frame id's pixels, w x h Mono8. */
static void pixels(uint64_t id, int w, int h, uint8_t *px)
{
    for (int i = 0; i < w * h; i++)
        px[i] = (uint8_t)(i * 7 + id * 13 + (i / w) * (id % 5));
}

static void frame_sized(rig *r, uint64_t id, int w, int h)
{
    static uint8_t px[BW * BH];
    pixels(id, w, h, px);
    maad_worker_frame(r->w, id, maad_now_ns(), w, h, PFNC_MONO8, px, (size_t)w * h);
}

static void frame(rig *r, uint64_t id)
{
    frame_sized(r, id, W, H);
}

/* Frames, camera errors and a frame the converter refuses, in one order:
 * every one comes back once, in order, with the right verdict kind, and
 * names the model. */
static void test_order_and_kinds(void)
{
    rig r;
    if (rig_up(&r, 4, 10000, 0, 64, 1e30))
        return;
    const int n = 30;
    for (int id = 1; id <= n; id++) {
        if (id % 7 == 0)
            maad_worker_camera_error(r.w, (uint64_t)id, maad_now_ns(), "camera error: timeout");
        else if (id == 10)
            maad_worker_frame(r.w, (uint64_t)id, maad_now_ns(), W, H, 0x02180014u, "", 0);
        else
            frame(&r, (uint64_t)id);
    }
    maad_worker_stats st;
    rig_stop(&r, &st);
    msg m;
    int got = 0, bad_order = 0, bad_kind = 0;
    while (got < n && next_verdict(&r, &m)) {
        if (m.seq != got || m.frame_id != got + 1)
            bad_order++;
        long long id = m.frame_id;
        const char *want = id % 7 == 0 || id == 10 ? "uninspected" : "pass";
        if (strcmp(m.verdict, want))
            bad_kind++;
        if (id % 7 == 0 && strcmp(m.reason, "camera error: timeout"))
            bad_kind++;
        if (id == 10 && !strstr(m.reason, "Mono8"))
            bad_kind++;
        if (!strcmp(want, "pass") && !isfinite(m.score))
            bad_kind++;
        /* Judged or not, each names the model in force. */
        if (strcmp(m.model, maa_model_sha256(model)))
            bad_kind++;
        got++;
    }
    CHECK(got == n, "got %d verdicts of %d", got, n);
    CHECK(bad_order == 0, "%d out of order", bad_order);
    CHECK(bad_kind == 0, "%d with the wrong verdict or reason", bad_kind);
    CHECK(st.captured == (uint64_t)n, "captured %llu", (unsigned long long)st.captured);
    CHECK(st.pass + st.reject + st.uninspected == (uint64_t)n);
    CHECK(st.camera_errors == 4 && st.engine_errors == 1, "camera %llu engine %llu",
          (unsigned long long)st.camera_errors, (unsigned long long)st.engine_errors);
    CHECK(st.overflow == 0);
    rig_down(&r, &st);
}

/* With a long timeout, a batch is judged when full, or when a camera error
 * or the end has to be published after it: 9 frames, an error, 2 frames ->
 * batches of 4, 4, 1 (before the error) and 2 (at the end). */
static void test_batches(void)
{
    rig r;
    if (rig_up(&r, 4, 60000, 0, 64, 1e30))
        return;
    for (int id = 1; id <= 9; id++)
        frame(&r, (uint64_t)id);
    maad_worker_camera_error(r.w, 10, maad_now_ns(), "camera error: incomplete frame");
    frame(&r, 11);
    frame(&r, 12);
    maad_worker_stats st;
    rig_stop(&r, &st);
    CHECK(st.batches == 4, "batches %llu", (unsigned long long)st.batches);
    CHECK(st.pass == 11 && st.uninspected == 1);
    rig_down(&r, &st);
}

/* The metrics endpoint's read-out: from another thread while frames are
 * judged (TSan watches the two), then, after the end, the counts and
 * histograms of the run: every batch in the batch and engine histograms,
 * every verdict in the latency one. */
static atomic_int live_stop;
static void *live_reader(void *arg)
{
    maad_worker *w = arg;
    maad_worker_live l;
    uint64_t last = 0;
    int ok = 1;
    while (!atomic_load(&live_stop)) {
        maad_worker_get_live(w, &l);
        ok &= l.st.captured >= last && l.latency.count <= l.st.captured;
        last = l.st.captured;
    }
    return (void *)(intptr_t)ok;
}

static void test_live(void)
{
    rig r;
    if (rig_up(&r, 4, 60000, 0, 64, 1e30))
        return;
    pthread_t t;
    atomic_store(&live_stop, 0);
    pthread_create(&t, NULL, live_reader, r.w);
    for (int id = 1; id <= 9; id++)
        frame(&r, (uint64_t)id);
    maad_worker_camera_error(r.w, 10, maad_now_ns(), "camera error: incomplete frame");
    for (int id = 11; id <= 14; id++)
        frame(&r, (uint64_t)id);
    /* The last batch waits for its timeout or the end: the end is not
     * ours to give (the read-out ends with maad_worker_stop), so the
     * timeout of 60 s is cut short by a batch that fills: one more frame
     * makes the fourth batch whole. */
    frame(&r, 15);
    maad_worker_live l;
    /* Up to 30 s: the TSan build judges ten times slower, beside other tests. */
    for (int i = 0; i < 3000; i++) {
        maad_worker_get_live(r.w, &l);
        /* and frame 15 taken from the ring into the next batch */
        if (l.latency.count == 14 && l.batch.count == 4 && l.ring_used == 0)
            break;
        usleep(10000);
    }
    atomic_store(&live_stop, 1);
    void *ok;
    pthread_join(t, &ok);
    CHECK(ok, "captured went back, or more latencies than frames, while running");
    CHECK(l.st.captured == 15 && l.st.pass == 13 && l.st.uninspected == 1 &&
          l.st.camera_errors == 1, "captured %llu pass %llu", (unsigned long long)l.st.captured,
          (unsigned long long)l.st.pass);
    /* 4 + 4 + 1 (before the error) + 4 (11..14) and 15 waiting: four batches
     * of 13 frames judged */
    CHECK(l.batch.count == 4 && l.batch.sum == 13 && l.engine.count == 4,
          "batches %llu of %g frames", (unsigned long long)l.batch.count, l.batch.sum);
    CHECK(l.batch.bucket[0] == 1 && l.batch.bucket[2] == 3, "le 1: %llu, le 4: %llu",
          (unsigned long long)l.batch.bucket[0], (unsigned long long)l.batch.bucket[2]);
    CHECK(l.latency.count == 14 && l.latency.sum > 0, "%llu verdicts in the latency histogram",
          (unsigned long long)l.latency.count);
    CHECK(strlen(l.model) == 64 && l.threshold == 1e30, "%s %g", l.model, l.threshold);
    CHECK(l.ring_slots == 64 && l.ring_used == 0, "%u %u", l.ring_slots, l.ring_used);
    maad_worker_stats st;
    rig_down(&r, &st);
}

/* A lone frame is judged once the timeout has passed, without the end. */
static void test_timeout(void)
{
    rig r;
    if (rig_up(&r, 4, 20, 0, 64, 1e30))
        return;
    frame(&r, 1);
    msg m;
    CHECK(next_verdict(&r, &m) && m.frame_id == 1 && !strcmp(m.verdict, "pass"));
    maad_worker_stats st;
    rig_down(&r, &st);
    CHECK(st.batches == 1 && st.pass == 1);
}

/* A slow engine (test_delay_ms) and a small ring: the frames that find the
 * ring full come back uninspected ("ring overflow") in their place; every
 * frame is accounted for exactly once. */
static void test_overflow(void)
{
    rig r;
    if (rig_up(&r, 1, 10, 100, 4, 1e30))
        return;
    const int n = 60;
    for (int id = 1; id <= n; id++)
        frame(&r, (uint64_t)id);
    maad_worker_stats st;
    rig_stop(&r, &st);
    msg m;
    int got = 0, bad_order = 0, overflow = 0, pass = 0;
    while (got < n && next_verdict(&r, &m)) {
        if (m.seq != got || m.frame_id != got + 1)
            bad_order++;
        if (!strcmp(m.verdict, "uninspected") && !strcmp(m.reason, "ring overflow"))
            overflow++;
        else if (!strcmp(m.verdict, "pass"))
            pass++;
        got++;
    }
    CHECK(got == n, "got %d of %d", got, n);
    CHECK(bad_order == 0, "%d out of order", bad_order);
    CHECK(overflow > 0 && (uint64_t)overflow == st.overflow, "overflow %d, stats %llu",
          overflow, (unsigned long long)st.overflow);
    CHECK(overflow + pass == n);
    CHECK(st.captured == (uint64_t)n && st.uninspected == st.overflow);
    rig_down(&r, &st);
}

/* Whether reason reads "too old: N ms after capture, max_age_ms M" with N
 * at least min_ms and M max_age. */
static int too_old_reason(const char *reason, long min_ms, int max_age)
{
    long ms;
    int m, end = 0;
    return sscanf(reason, "too old: %ld ms after capture, max_age_ms %d%n", &ms, &m, &end) == 2 &&
           reason[end] == '\0' && ms >= min_ms && m == max_age;
}

/* Frames older than max_age_ms when the worker takes them (here: captured
 * 5 s ago) are published uninspected with a reason that says so, in their
 * place, and never enter a batch: the batch before one is judged first, and
 * the engine judges only the fresh frames (3 batches: 1-2, 5-8, 10-12).
 * The heartbeat and the final counts call them too_old. */
static void test_too_old(void)
{
    rig r;
    if (rig_up_engine(&r, 4, 60000, 0, 64, 1e30, 4, NULL, NULL, 1000))
        return;
    const int n = 12;
    for (int id = 1; id <= n; id++) {
        static uint8_t px[W * H];
        const int old = id == 3 || id == 4 || id == 9;
        pixels((uint64_t)id, W, H, px);
        maad_worker_frame(r.w, (uint64_t)id, maad_now_ns() - (old ? 5000000000ull : 0), W, H,
                          PFNC_MONO8, px, sizeof px);
    }
    /* 1..9 are out before the end (10..12 wait for company); then a
     * heartbeat counts the three. */
    msg m;
    int got = 0, bad = 0, too_old = 0;
    while (got < 9 && next_verdict(&r, &m)) {
        const int old = m.frame_id == 3 || m.frame_id == 4 || m.frame_id == 9;
        too_old += old;
        bad += m.seq != got || m.frame_id != got + 1 ||
               strcmp(m.verdict, old ? "uninspected" : "pass") ||
               (old && !too_old_reason(m.reason, 5000, 1000));
        if (old && !too_old_reason(m.reason, 5000, 1000))
            printf("  frame %lld: %s\n", m.frame_id, m.reason);
        got++;
    }
    static char buf[1 << 16];
    long long hb_too_old = -1;
    for (int tries = 0; tries < 100 && hb_too_old != 3; tries++) {
        if (recv_message(r.sub, buf, sizeof buf) != 0)
            continue;
        json_t *o = json_loads(buf, 0, NULL);
        json_t *k = json_object_get(json_object_get(o, "stats"), "too_old");
        hb_too_old = json_is_integer(k) ? json_integer_value(k) : -1;
        json_decref(o);
    }
    CHECK(hb_too_old == 3, "heartbeat stats.too_old %lld", hb_too_old);
    maad_worker_stats st;
    rig_stop(&r, &st);
    while (got < n && next_verdict(&r, &m)) {
        bad += m.seq != got || m.frame_id != got + 1 || strcmp(m.verdict, "pass");
        got++;
    }
    CHECK(got == n && too_old == 3, "%d verdicts of %d, %d too old", got, n, too_old);
    CHECK(bad == 0, "%d verdicts out of order, of the wrong kind or reason", bad);
    CHECK(st.too_old == 3 && st.uninspected == 3 && st.pass == 9 && st.engine_errors == 0,
          "too_old %llu, uninspected %llu, pass %llu, engine errors %llu",
          (unsigned long long)st.too_old, (unsigned long long)st.uninspected,
          (unsigned long long)st.pass, (unsigned long long)st.engine_errors);
    CHECK(st.batches == 3, "batches %llu", (unsigned long long)st.batches);
    rig_down(&r, &st);
}

/* Frames made old by a slow engine (test_delay_ms 2000, max_age_ms 1000):
 * the frames that waited in the ring while a batch ran are published as
 * too old instead of being judged 2 s late, and none is lost.  Each frame
 * is judged or too old; every one after a judged one waited for its batch. */
static void test_too_old_slow_engine(void)
{
    rig r;
    if (rig_up_engine(&r, 1, 10, 2000, 64, 1e30, 1, NULL, NULL, 1000))
        return;
    const int n = 5;
    for (int id = 1; id <= n; id++)
        frame(&r, (uint64_t)id);
    maad_worker_stats st;
    rig_stop(&r, &st);
    msg m;
    int got = 0, bad = 0, judged = 0, too_old = 0;
    while (got < n && next_verdict(&r, &m)) {
        const int old = !strcmp(m.verdict, "uninspected");
        bad += m.seq != got || m.frame_id != got + 1 ||
               (old ? !too_old_reason(m.reason, 1000, 1000) : strcmp(m.verdict, "pass") != 0) ||
               (judged && !old);
        judged += !old;
        too_old += old;
        got++;
    }
    CHECK(got == n, "got %d verdicts of %d", got, n);
    CHECK(bad == 0, "%d verdicts out of order, or judged after a 2 s batch", bad);
    CHECK(judged == 1 && too_old == n - 1 && st.too_old == (uint64_t)too_old,
          "%d judged, %d too old, stats %llu", judged, too_old, (unsigned long long)st.too_old);
    rig_down(&r, &st);
}

/* A batch that keeps the worker in the engine for 2 s, 40 heartbeat
 * periods: heartbeats keep coming meanwhile (contract §8: at least one a
 * second; the worker's keep-alive thread sends them), each with seq_next
 * still the batch's first seq, then the verdict.  On the worker's own clock
 * (the frame's capture time, each heartbeat's t_ns, the verdict's
 * t_publish_ns) no gap is longer than contract §8's second: the 50 ms period
 * and 950 ms for a loaded machine's scheduler.  Without the keep-alive
 * thread the gap is the whole 2 s. */
static void test_heartbeats_while_busy(void)
{
    rig r;
    if (rig_up(&r, 1, 10, 2000, 8, 1e30))
        return;
    const long long t_frame = (long long)maad_now_ns();
    frame(&r, 1);
    static char buf[1 << 16];
    int heartbeats = 0, verdict = 0, bad_seq = 0;
    long long last = t_frame, gap = 0;
    while (!verdict) {
        int k = recv_message(r.sub, buf, sizeof buf);
        if (k < 0)
            break;
        verdict = k == 1;
        json_t *o = json_loads(buf, 0, NULL);
        long long t = json_integer_value(json_object_get(o, verdict ? "t_publish_ns" : "t_ns"));
        if (k == 0) {
            heartbeats += t > t_frame;
            bad_seq += !o || json_integer_value(json_object_get(o, "seq_next")) != 0;
        }
        json_decref(o);
        /* Heartbeats sent before the frame came are no part of it. */
        if (t > last) {
            gap = t - last > gap ? t - last : gap;
            last = t;
        }
    }
    printf("  %d heartbeats while the engine ran for 2 s (period 50 ms), longest gap %.0f ms\n",
           heartbeats, gap / 1e6);
    CHECK(verdict, "no verdict");
    CHECK(gap <= 1000000000, "a gap of %.0f ms without a heartbeat", gap / 1e6);
    CHECK(bad_seq == 0, "%d heartbeats with seq_next other than 0", bad_seq);
    maad_worker_stats st;
    rig_down(&r, &st);
}

/* An engine that fails a batch (here: a batch larger than the engine was
 * made for) makes that batch's frames uninspected with the engine's reason,
 * counted, in their place; the next batch is judged. */
static void test_engine_error(void)
{
    rig r;
    if (rig_up_engine(&r, 2, 60000, 0, 64, 1e30, 1, NULL, NULL, 0))
        return;
    for (int id = 1; id <= 3; id++)
        frame(&r, (uint64_t)id);
    maad_worker_stats st;
    rig_stop(&r, &st);
    msg m[3];
    int got = 0;
    while (got < 3 && next_verdict(&r, &m[got]))
        got++;
    CHECK(got == 3);
    for (int i = 0; i < got; i++)
        CHECK(m[i].seq == i && m[i].frame_id == i + 1, "verdict %d: seq %lld frame %lld", i,
              m[i].seq, m[i].frame_id);
    for (int i = 0; i < 2 && i < got; i++)
        CHECK(!strcmp(m[i].verdict, "uninspected") && !strncmp(m[i].reason, "engine error: ", 14),
              "frame %lld: %s (%s)", m[i].frame_id, m[i].verdict, m[i].reason);
    CHECK(got < 3 || !strcmp(m[2].verdict, "pass"), "the batch after the error: %s", m[2].verdict);
    CHECK(st.engine_errors == 2 && st.pass == 1 && st.uninspected == 2);
    rig_down(&r, &st);
}

/* on_failing comes once the engine has failed max_failed_batches (3)
 * batches in a row, not for failures a success came between, and once
 * only; every frame still gets its verdict, in capture order.  The engine
 * fails each batch of two frames (built for one); a camera error closes a
 * batch of one, which it judges. */
static void test_failing_engine(void)
{
    rig r;
    if (rig_up_engine(&r, 2, 60000, 0, 64, 1e30, 1, NULL, NULL, 0))
        return;
    atomic_store(&failing_calls, 0);
    /* fail, fail, success, fail, fail */
    for (int id = 1; id <= 4; id++)
        frame(&r, (uint64_t)id);
    frame(&r, 5);
    maad_worker_camera_error(r.w, 6, maad_now_ns(), "camera error: timeout");
    for (int id = 7; id <= 10; id++)
        frame(&r, (uint64_t)id);
    msg m;
    int got = 0, uninspected = 0, bad_order = 0;
    while (got < 10 && next_verdict(&r, &m)) {
        bad_order += m.seq != got || m.frame_id != got + 1;
        uninspected += !strcmp(m.verdict, "uninspected");
        got++;
    }
    CHECK(got == 10 && uninspected == 9, "%d verdicts, %d uninspected", got, uninspected);
    CHECK(atomic_load(&failing_calls) == 0, "on_failing after %d failures in a row",
          atomic_load(&failing_batches));
    /* the third in a row, then a fourth */
    for (int id = 11; id <= 14; id++)
        frame(&r, (uint64_t)id);
    maad_worker_stats st;
    rig_stop(&r, &st);
    while (got < 14 && next_verdict(&r, &m)) {
        bad_order += m.seq != got || m.frame_id != got + 1;
        got++;
    }
    CHECK(got == 14, "%d verdicts of 14", got);
    CHECK(bad_order == 0, "%d verdicts out of seq or frame order", bad_order);
    CHECK(atomic_load(&failing_calls) == 1 && atomic_load(&failing_batches) == 3,
          "on_failing called %d times, last after %d batches", atomic_load(&failing_calls),
          atomic_load(&failing_batches));
    CHECK(strstr(failing_why, "engine built for 1..1"), "reason: %s", failing_why);
    CHECK(st.engine_errors == 12 && st.pass == 1, "engine errors %llu, passes %llu",
          (unsigned long long)st.engine_errors, (unsigned long long)st.pass);
    rig_down(&r, &st);
}

/* A calibration set while frames flow applies from a batch boundary on:
 * the verdicts are passes, then only rejects. */
static void test_calibration_swap(void)
{
    rig r;
    if (rig_up(&r, 2, 10, 0, 64, 1e30))
        return;
    for (int id = 1; id <= 6; id++)
        frame(&r, (uint64_t)id);
    msg m;
    int got = 0, pass = 0, reject = 0, order_ok = 1;
    while (got < 2 && next_verdict(&r, &m))
        pass += !strcmp(m.verdict, "pass"), got++;
    maa_calibration cal = {.n = 20, .sigma = 1, .gamma = 0, .threshold = -1,
                           .pixel_threshold = 1e30, .mask_window = 7, .min_region_area = 1};
    maad_worker_set_calibration(r.w, &cal);
    for (int id = 7; id <= 10; id++)
        frame(&r, (uint64_t)id);
    while (got < 10 && next_verdict(&r, &m)) {
        if (!strcmp(m.verdict, "reject"))
            reject++;
        else if (reject)
            order_ok = 0;
        else
            pass++;
        got++;
    }
    maad_worker_stats st;
    rig_down(&r, &st);
    CHECK(got == 10);
    CHECK(order_ok, "a pass after a reject");
    CHECK(pass >= 2 && reject >= 4, "pass %d reject %d", pass, reject);
    CHECK(st.calibrations == 1);
}

static atomic_int engine_batches;

/* test_calibration_in_engine's test_in_engine: with the second batch in
 * the engine, a calibration that rejects every frame. */
static void swap_in_engine(rig *r)
{
    if (atomic_fetch_add(&engine_batches, 1) != 1)
        return;
    maa_calibration cal = {.n = 20, .sigma = 1, .gamma = 0, .threshold = -1,
                           .pixel_threshold = 1e30, .mask_window = 7, .min_region_area = 1};
    maad_worker_set_calibration(r->w, &cal);
}

/* A calibration set while a batch is in the engine (maad's SIGHUP during a
 * slow batch) applies from the next batch on: the batch in flight is
 * published with the threshold it was judged under, its frames passes
 * under 1e30, and the next batch's rejects under -1.  Judged with the old
 * threshold and published with the new, the in-flight batch's passes would
 * carry scores above their threshold (next_verdict fails them). */
static void test_calibration_in_engine(void)
{
    rig r;
    atomic_store(&engine_batches, 0);
    if (rig_up_engine(&r, 2, 60000, 0, 64, 1e30, 2, NULL, swap_in_engine, 0))
        return;
    for (int id = 1; id <= 6; id++)
        frame(&r, (uint64_t)id);
    maad_worker_stats st;
    rig_stop(&r, &st);
    msg m;
    int got = 0;
    while (got < 6 && next_verdict(&r, &m)) {
        const int old = m.frame_id <= 4;
        CHECK(m.seq == got && m.frame_id == got + 1 &&
                  !strcmp(m.verdict, old ? "pass" : "reject") && m.threshold == (old ? 1e30 : -1),
              "verdict %d: frame %lld %s with threshold %g", got, m.frame_id, m.verdict,
              m.threshold);
        got++;
    }
    CHECK(got == 6, "got %d verdicts of 6", got);
    CHECK(st.batches == 3 && st.calibrations == 1, "batches %llu, calibrations %llu",
          (unsigned long long)st.batches, (unsigned long long)st.calibrations);
    rig_down(&r, &st);
}

/* An inspector of model2 (S2) as the worker's next model, and the
 * calibration it comes with, which rejects every frame. */
static maa_inspector *inspector2(void)
{
    maa_engine_opts eo = {.backend = MAA_BACKEND_REF, .max_batch = 4, .threads = 1};
    maa_inspector *in = NULL;
    char err[MAA_ERRLEN] = "";
    CHECK(maa_inspector_create(model2, &eo, &in, err, sizeof err) == MAA_OK, "%s", err);
    return in;
}

static const maa_calibration rejects_all = {.n = 20, .sigma = 1, .gamma = 0, .threshold = -1,
                                            .pixel_threshold = 1e30, .mask_window = 7,
                                            .min_region_area = 1};

/* Hands the rig's worker model2 (in, its inspector); the rig keeps the
 * returned inspector, which must be the one replaced, for rig_down to
 * free.  The seq of the first verdict under model2, -1 on failure. */
static long long swap_to_model2(rig *r, maa_inspector *in)
{
    maad_worker_model m = {.inspector = in, .image_size = S2, .channels = 1,
                           .sha256 = maa_model_sha256(model2)};
    maa_inspector *old = NULL;
    uint64_t first_seq = 0;
    char err[MAA_ERRLEN] = "";
    if (maad_worker_set_model(r->w, &m, &rejects_all, &old, &first_seq, err, sizeof err)) {
        CHECK(0, "%s", err);
        maa_inspector_free(in);
        return -1;
    }
    CHECK(old == r->in, "the inspector returned is not the one replaced");
    maa_inspector_free(old);
    r->in = in;
    return (long long)first_seq;
}

/* Whether verdict m was judged (or not) under model 1 (passes, mask S) or
 * model 2 (rejects, mask S2), as old says; prints it when not. */
static int under(const msg *m, int old)
{
    const int ok = !strcmp(m->model, maa_model_sha256(old ? model : model2)) &&
                   !strcmp(m->verdict, old ? "pass" : "reject") &&
                   m->threshold == (old ? 1e30 : -1) && m->mask_side == (old ? S : S2);
    if (!ok)
        printf("  seq %lld frame %lld: %s, threshold %g, mask %d, model %.12s, expected model %d\n",
               m->seq, m->frame_id, m->verdict, m->threshold, m->mask_side, m->model,
               old ? 1 : 2);
    return ok;
}

/* The live read-out's drift state once it shows frames judged parts in
 * the window (the worker shares it after each batch); 0 when it does not
 * within 5 s. */
static int drift_frames(rig *r, int frames, maad_worker_live *l)
{
    for (int i = 0; i < 500; i++) {
        maad_worker_get_live(r->w, l);
        if (l->drift.frames == frames)
            return 1;
        usleep(10000);
    }
    return 0;
}

/* The drift alarm on the worker's verdicts: 4 passes judged (no alarm),
 * then a calibration that rejects every part starts the window again (6
 * rejects in it, not the passes before) and raises the reject-rate alarm,
 * which a heartbeat carries; the same calibration set again (a SIGHUP that
 * reloads the same file) keeps the window and the alarm; a model swapped
 * in starts the window again, the alarm cleared. */
static void test_drift_alarm(void)
{
    rig r;
    /* The reject rate alone (mean_fraction 0), over 8 parts, from 4 on. */
    rig_drift = (maad_drift_opts){.window_frames = 8, .window_s = 600, .min_frames = 4,
                                  .reject_rate = 0.5};
    int up = rig_up(&r, 2, 10, 0, 64, 1e30);
    rig_drift = (maad_drift_opts){0};
    if (up)
        return;
    msg m;
    int got = 0;
    maad_worker_live l;
    for (int id = 1; id <= 4; id++)
        frame(&r, (uint64_t)id);
    while (got < 4 && next_verdict(&r, &m))
        got++;
    CHECK(drift_frames(&r, 4, &l) && l.drift_on, "%d frames in the window", l.drift.frames);
    CHECK(l.drift.passes == 4 && l.drift.judging && l.drift.alarm == 0);
    maad_worker_set_calibration(r.w, &rejects_all);
    for (int id = 5; id <= 10; id++)
        frame(&r, (uint64_t)id);
    while (got < 10 && next_verdict(&r, &m))
        got++;
    CHECK(drift_frames(&r, 6, &l), "%d frames in the window", l.drift.frames);
    CHECK(l.drift.rejects == 6 && l.drift.alarm == MAAD_DRIFT_REJECTS &&
          l.drift.raised_rejects == 1 && l.drift.threshold == -1, "alarm %d, rejects %d",
          l.drift.alarm, l.drift.rejects);
    /* A heartbeat from now on says so. */
    static char buf[1 << 16];
    int beat = -1;
    for (int tries = 0; tries < 20 && beat != MAAD_DRIFT_REJECTS; tries++) {
        int k = recv_message(r.sub, buf, sizeof buf);
        if (k < 0)
            break;
        json_t *o = k == 0 ? json_loads(buf, 0, NULL) : NULL;
        json_t *st = json_object_get(o, "stats");
        if (st) {
            beat = (int)json_integer_value(json_object_get(st, "drift_alarm"));
            CHECK(json_real_value(json_object_get(st, "drift_reject_rate")) == 1);
            CHECK(json_is_null(json_object_get(st, "drift_mean")));
        }
        json_decref(o);
    }
    CHECK(beat == MAAD_DRIFT_REJECTS, "heartbeat drift_alarm %d", beat);
    maad_worker_set_calibration(r.w, &rejects_all);
    for (int id = 11; id <= 12; id++)
        frame(&r, (uint64_t)id);
    while (got < 12 && next_verdict(&r, &m))
        got++;
    CHECK(drift_frames(&r, 8, &l), "%d frames in the window", l.drift.frames);
    CHECK(l.drift.alarm == MAAD_DRIFT_REJECTS && l.drift.raised_rejects == 1);
    maad_worker_stats st;
    if (swap_to_model2(&r, inspector2()) >= 0) {
        CHECK(drift_frames(&r, 0, &l), "%d frames in the window", l.drift.frames);
        CHECK(l.drift.alarm == 0 && l.drift.raised_rejects == 1);
    }
    rig_down(&r, &st);
    CHECK(got == 12 && st.calibrations == 2 && st.models == 1);
}

/* A model handed over while a batch fills: the frames batched so far are
 * judged at once, as one batch, by the old model (not 60 s later, when the
 * batch would time out); every frame after by the new one, at its own size
 * (S2) and with its calibration; the old inspector comes back; none is
 * lost, repeated or out of order. */
static void test_model_swap(void)
{
    rig r;
    maad_worker_stats st;
    if (rig_up(&r, 4, 60000, 0, 64, 1e30))
        return;
    maa_inspector *in = inspector2();
    if (!in) {
        rig_down(&r, &st);
        return;
    }
    for (int id = 1; id <= 3; id++)
        frame(&r, (uint64_t)id);
    /* Lets the worker take frames 1..3, which wait for a fourth. */
    usleep(100000);
    const long long first = swap_to_model2(&r, in);
    for (int id = 4; id <= 9; id++)
        frame(&r, (uint64_t)id);
    rig_stop(&r, &st);
    msg m;
    int got = 0, bad = 0;
    while (got < 9 && next_verdict(&r, &m)) {
        bad += m.seq != got || m.frame_id != got + 1 || !under(&m, m.frame_id <= 3);
        got++;
    }
    CHECK(first == 3, "first seq under the new model %lld", first);
    CHECK(got == 9 && bad == 0, "%d verdicts of 9, %d out of order or under the wrong model",
          got, bad);
    /* 1..3, then 4..7 and 8..9: one batch each */
    CHECK(st.batches == 3 && st.models == 1 && st.pass == 3 && st.reject == 6,
          "batches %llu, models %llu, passes %llu, rejects %llu",
          (unsigned long long)st.batches, (unsigned long long)st.models,
          (unsigned long long)st.pass, (unsigned long long)st.reject);
    rig_down(&r, &st);
}

/* A new model starts with a clean record: two failed batches of the old
 * engine and one of the new do not make three in a row (on_failing would
 * stop maad on a model that failed once).  Both engines are built for one
 * frame and fail each batch of two. */
static void test_model_swap_resets_failures(void)
{
    rig r;
    maad_worker_stats st;
    if (rig_up_engine(&r, 2, 60000, 0, 64, 1e30, 1, NULL, NULL, 0))
        return;
    maa_engine_opts eo = {.backend = MAA_BACKEND_REF, .max_batch = 1, .threads = 1};
    maa_inspector *in = NULL;
    char err[MAA_ERRLEN] = "";
    CHECK(maa_inspector_create(model2, &eo, &in, err, sizeof err) == MAA_OK, "%s", err);
    if (!in) {
        rig_down(&r, &st);
        return;
    }
    atomic_store(&failing_calls, 0);
    for (int id = 1; id <= 4; id++)
        frame(&r, (uint64_t)id);
    msg m;
    int got = 0;
    while (got < 4 && next_verdict(&r, &m))
        got++;
    CHECK(got == 4, "%d verdicts of the old engine's 4", got);
    swap_to_model2(&r, in);
    frame(&r, 5);
    frame(&r, 6);
    rig_stop(&r, &st);
    while (got < 6 && next_verdict(&r, &m))
        got++;
    CHECK(got == 6 && st.engine_errors == 6, "%d verdicts, %llu engine errors", got,
          (unsigned long long)st.engine_errors);
    CHECK(atomic_load(&failing_calls) == 0, "on_failing after %d failures in a row",
          atomic_load(&failing_batches));
    rig_down(&r, &st);
}

static atomic_int in_engine, handing_over;

/* test_model_swap_in_engine's test_in_engine: the first batch stays in the
 * engine until the model is being handed over. */
static void hold_first_batch(rig *r)
{
    (void)r;
    if (atomic_fetch_add(&in_engine, 1) != 0)
        return;
    while (!atomic_load(&handing_over))
        usleep(1000);
    /* maad_worker_set_model's few steps before it waits */
    usleep(100000);
}

/* A model handed over while a batch is in the engine (a SIGHUP during a
 * slow batch): that batch is published as the old model judged it, and
 * the frames that came meanwhile are judged by the new one with its
 * calibration, not with one set for the old model after that batch had
 * taken its own (threshold 7 here). */
static void test_model_swap_in_engine(void)
{
    rig r;
    maad_worker_stats st;
    atomic_store(&in_engine, 0);
    atomic_store(&handing_over, 0);
    if (rig_up_engine(&r, 2, 60000, 0, 64, 1e30, 2, NULL, hold_first_batch, 0))
        return;
    maa_inspector *in = inspector2();
    if (!in) {
        rig_down(&r, &st);
        return;
    }
    frame(&r, 1);
    frame(&r, 2);
    while (!atomic_load(&in_engine))
        usleep(1000);
    frame(&r, 3);
    frame(&r, 4);
    maa_calibration stale = rejects_all;
    stale.threshold = 7;
    maad_worker_set_calibration(r.w, &stale);
    atomic_store(&handing_over, 1);
    const long long first = swap_to_model2(&r, in);
    rig_stop(&r, &st);
    msg m;
    int got = 0, bad = 0;
    while (got < 4 && next_verdict(&r, &m)) {
        bad += m.seq != got || m.frame_id != got + 1 || !under(&m, m.frame_id <= 2);
        got++;
    }
    CHECK(first == 2, "first seq under the new model %lld", first);
    CHECK(got == 4 && bad == 0, "%d verdicts of 4, %d out of order or under the wrong model",
          got, bad);
    CHECK(st.batches == 2 && st.models == 1, "batches %llu, models %llu",
          (unsigned long long)st.batches, (unsigned long long)st.models);
    rig_down(&r, &st);
}

/* A reason JSON cannot carry (not UTF-8, as a truncated multi-byte name
 * can leave it): the frame still gets exactly one verdict, and seq stays
 * gap-free as sent. */
static void test_unencodable_reason(void)
{
    rig r;
    if (rig_up(&r, 4, 10000, 0, 64, 1e30))
        return;
    frame(&r, 1);
    maad_worker_camera_error(r.w, 2, maad_now_ns(), "camera error: Pr\xc3");
    frame(&r, 3);
    maad_worker_stats st;
    rig_stop(&r, &st);
    msg m[3];
    int got = 0;
    while (got < 3 && next_verdict(&r, &m[got]))
        got++;
    CHECK(got == 3, "got %d verdicts of 3", got);
    for (int i = 0; i < got; i++)
        CHECK(m[i].seq == i && m[i].frame_id == i + 1, "verdict %d: seq %lld frame %lld", i,
              m[i].seq, m[i].frame_id);
    CHECK(got < 2 || !strcmp(m[1].verdict, "uninspected"), "%s", m[1].verdict);
    CHECK(st.pass == 2 && st.uninspected == 1);
    rig_down(&r, &st);
}

/* A camera error's reason as long as a verdict carries (MAAD_REASON_SIZE:
 * a failed reconnection quotes Aravis's message) travels whole to the
 * subscriber, not cut at a ring slot's buffer. */
static void test_long_reason(void)
{
    rig r;
    if (rig_up(&r, 4, 10000, 0, 64, 1e30))
        return;
    char reason[MAAD_REASON_SIZE];
    int n = snprintf(reason, sizeof reason, "camera error: reconnect attempt 3 failed: camera "
                     "(first found) not found or not accessible: ");
    memset(reason + n, 'x', sizeof reason - 1 - (size_t)n);
    snprintf(reason + sizeof reason - 20, 20, "; next in 400 ms");
    maad_worker_camera_error(r.w, MAAD_FRAME_ID_UNKNOWN, maad_now_ns(), reason);
    maad_worker_stats st;
    rig_stop(&r, &st);
    static char buf[1 << 16];
    int k;
    while ((k = recv_message(r.sub, buf, sizeof buf)) == 0)
        ;
    CHECK(k == 1, "no verdict");
    json_t *o = k == 1 ? json_loads(buf, 0, NULL) : NULL;
    const char *got = json_string_value(json_object_get(o, "reason"));
    CHECK(got && !strcmp(got, reason), "reason of %zu bytes published as %zu: ...%s",
          strlen(reason), got ? strlen(got) : 0, got ? got + (strlen(got) > 40 ? strlen(got) - 40 : 0) : "");
    json_decref(o);
    rig_down(&r, &st);
}

/* The final line names each count as the heartbeat's stats do: overflow
 * for the ring, too_old for max_age_ms, send_dropped for ZeroMQ. */
static void test_stats_line(void)
{
    maad_worker_stats st = {.captured = 12, .pass = 5, .reject = 1, .uninspected = 6,
                            .overflow = 2, .too_old = 2, .camera_errors = 1,
                            .engine_errors = 1, .send_dropped = 3};
    char line[512];
    maad_worker_stats_line(&st, line, sizeof line);
    CHECK(!strcmp(line, "final: captured 12, published 12 (pass 5, reject 1, uninspected 6), "
                        "overflow 2, too_old 2, camera errors 1, engine errors 1, "
                        "send_dropped 3"),
          "%s", line);
}

/* On a CUDA device (SKIP elsewhere): frames larger than the model, which
 * the worker keeps as 8-bit for the device to shrink and judge, and one
 * smaller than the model, which it preprocesses as it comes and which
 * sends its whole batch down the host path.  Every published score equals
 * maa_inspect's on the host-preprocessed frame, and the last batch went to
 * the device (it leaves no reconstruction on the host). */
static void test_device_frames(void)
{
    char why[MAA_ERRLEN];
    if (maa_backend_available(MAA_BACKEND_CUDA, why, sizeof why) != MAA_OK)
        SKIP("%s", why);
    const maa_engine_opts eo = {.backend = MAA_BACKEND_CUDA, .precision = MAA_PREC_F32,
                                .max_batch = 4, .frame_bytes = BW * BH};
    rig r;
    if (rig_up_engine(&r, 4, 60000, 0, 64, 1e30, 4, &eo, NULL, 0))
        return;
    CHECK(maa_inspector_frame_bytes(r.in) == BW * BH, "frame bytes %zu",
          maa_inspector_frame_bytes(r.in));
    /* 1..4: a mixed batch (2 is 80 x 60); 5..12: two batches of 8-bit frames. */
    const int n = 12;
    for (int id = 1; id <= n; id++)
        frame_sized(&r, (uint64_t)id, id == 2 ? W : BW, id == 2 ? H : BH);
    maad_worker_stats st;
    rig_stop(&r, &st);
    CHECK(maa_inspector_recon(r.in, 0) == NULL, "the last batch was judged on the host");
    maa_inspector *host = NULL;
    char err[MAA_ERRLEN] = "";
    CHECK(maa_inspector_create(model, &eo, &host, err, sizeof err) == MAA_OK, "%s", err);
    static uint8_t px[BW * BH];
    float x[S * S];
    msg m;
    int got = 0, off = 0;
    double worst = 0;
    while (host && got < n && next_verdict(&r, &m)) {
        const int id = got + 1, w = id == 2 ? W : BW, h = id == 2 ? H : BH;
        pixels((uint64_t)id, w, h, px);
        maa_image img = {w, h, 1, 8, px};
        maa_result want;
        if (maa_preprocess(&img, S, 1, x, err, sizeof err) ||
            maa_inspect(host, NULL, 1, x, &want, err, sizeof err)) {
            CHECK(0, "%s", err);
            break;
        }
        const double rel = fabs(m.score - want.score) / fmax(fabs(want.score), 1e-30);
        worst = fmax(worst, rel);
        off += m.frame_id != id || strcmp(m.verdict, "pass") || !(rel <= 1e-6);
        got++;
    }
    printf("  %d verdicts; scores against the host path: worst relative %.1e\n", got, worst);
    CHECK(got == n, "got %d verdicts of %d", got, n);
    CHECK(off == 0, "%d verdicts out of order, not passes or with another score", off);
    CHECK(st.batches == 3 && st.pass == (uint64_t)n, "batches %llu, passes %llu",
          (unsigned long long)st.batches, (unsigned long long)st.pass);
    maa_inspector_free(host);
    rig_down(&r, &st);
}

/* An archive in dir/name keeping every frame (a pass in 1), with room for
 * all of them in its queue. */
static maad_archive *archive_up(const char *name, maad_logger *lg, char *adir, size_t n)
{
    snprintf(adir, n, "%s/%s", dir, name);
    maad_log_init(lg, "t", MAAD_LOG_WARNING);
    maad_archive_opts ao = {.dir = adir, .camera = "t", .max_bytes = 100000000,
                            .max_files = 100000, .sample_passes = 1, .queue = 256,
                            .frame_bytes = BW * BH, .mask_side = S, .log = lg};
    maad_archive *a = NULL;
    char err[MAA_ERRLEN];
    CHECK(maad_archive_open(&ao, &a, err, sizeof err) == MAA_OK, "%s", err);
    return a;
}

/* The archive's JSON of each seq below n into recs[seq] (NULL: none);
 * their number. */
static int archive_records(const char *adir, json_t **recs, int n)
{
    memset(recs, 0, sizeof *recs * (size_t)n);
    DIR *d = opendir(adir);
    int k = 0;
    struct dirent *de;
    while (d && (de = readdir(d))) {
        const char *t = strstr(de->d_name, "-t-");
        size_t l = strlen(de->d_name);
        if (!t || l < 5 || strcmp(de->d_name + l - 5, ".json"))
            continue;
        long long seq = strtoll(t + 3, NULL, 10);
        char path[512];
        snprintf(path, sizeof path, "%s/%s", adir, de->d_name);
        if (seq >= 0 && seq < n && !recs[seq]) {
            recs[seq] = json_load_file(path, 0, NULL);
            k += recs[seq] != NULL;
        }
    }
    if (d)
        closedir(d);
    return k;
}

/* The frame of record o (its archive.frame in adir) is frame id's pixels
 * at camera resolution, w x h. */
static int archive_frame_is(const char *adir, json_t *o, uint64_t id, int w, int h)
{
    const char *f = json_string_value(json_object_get(json_object_get(o, "archive"), "frame"));
    char path[512];
    snprintf(path, sizeof path, "%s/%s", adir, f ? f : "");
    maa_image img;
    if (!f || maa_image_load(path, &img, NULL, 0) != MAA_OK)
        return 0;
    static uint8_t px[BW * BH];
    pixels(id, w, h, px);
    int same = img.width == w && img.height == h && img.channels == 1 &&
               memcmp(img.data, px, (size_t)w * h) == 0;
    maa_image_free(&img);
    return same;
}

static void scribble(rig *r)
{
    (void)r;
    for (int i = 0; i < nhanded; i++)
        memset(handed_over[i], 0xee, W * H);
    nhanded = 0;
}

/* Every frame handed to the archive with its verdict as published: judged
 * frames (copied by the converter, or lying in the ring slot, released
 * before the batch is judged and overwritten: the worker kept a copy) and a
 * frame too old to judge with their pixels; camera errors and a frame the
 * converter refused without. */
static void test_archive_records(void)
{
    maad_logger lg;
    char adir[128];
    rig_archive = archive_up("arch", &lg, adir, sizeof adir);
    if (!rig_archive)
        return;
    rig r;
    /* 64 slots for 20 frames: none is written twice by this thread. */
    scribbling = 1;
    /* max_age_ms long enough that no frame but 12 (a minute old) is too
     * old on a sanitizer build, ten times slower. */
    int up = rig_up_engine(&r, 4, 10000, 0, 64, 1e30, 4, NULL, scribble, 30000);
    maad_archive *a = rig_archive;
    rig_archive = NULL;
    if (up) {
        maad_archive_close(a, NULL);
        return;
    }
    enum { N = 20 };
    for (int id = 1; id <= N; id++) {
        static uint8_t px[W * H];
        pixels((uint64_t)id, W, H, px);
        if (id % 7 == 0)
            maad_worker_camera_error(r.w, (uint64_t)id, maad_now_ns(), "camera error: timeout");
        else if (id == 10)
            maad_worker_frame(r.w, (uint64_t)id, maad_now_ns(), W, H, 0x02180014u, "", 0);
        else
            maad_worker_frame(r.w, (uint64_t)id,
                              maad_now_ns() - (id == 12 ? 60000000000ull : 0), W, H,
                              PFNC_MONO8, px, sizeof px);
    }
    maad_worker_stats st;
    rig_stop(&r, &st);
    scribbling = 0;
    maad_archive_stats as;
    maad_archive_close(a, &as);
    CHECK(as.written == N && as.dropped == 0 && as.failed == 0, "written %llu",
          (unsigned long long)as.written);
    json_t *recs[N];
    CHECK(archive_records(adir, recs, N) == N);
    msg m;
    int got = 0;
    while (got < N && next_verdict(&r, &m)) {
        json_t *o = recs[m.seq];
        got++;
        CHECK(o, "no record of seq %lld", m.seq);
        if (!o)
            continue;
        json_t *ar = json_object_get(o, "archive");
        CHECK(json_integer_value(json_object_get(o, "frame_id")) == m.frame_id &&
              !strcmp(json_string_value(json_object_get(o, "verdict")), m.verdict) &&
              !strcmp(json_string_value(json_object_get(o, "reason")), m.reason) &&
              !strcmp(json_string_value(json_object_get(ar, "why")), m.verdict),
              "seq %lld: the record is not the verdict published", m.seq);
        const int pixels_lost = m.frame_id % 7 == 0 || m.frame_id == 10;
        if (pixels_lost)
            CHECK(json_is_null(json_object_get(ar, "frame")), "frame %lld", m.frame_id);
        else
            CHECK(archive_frame_is(adir, o, (uint64_t)m.frame_id, W, H),
                  "frame %lld: not its pixels at %dx%d", m.frame_id, W, H);
        /* Judged frames have their mask; the others none. */
        CHECK(json_is_null(json_object_get(ar, "mask")) ==
              (pixels_lost || m.frame_id == 12), "frame %lld: mask", m.frame_id);
    }
    CHECK(got == N, "got %d verdicts", got);
    CHECK(st.too_old == 1 && st.camera_errors == 2 && st.engine_errors == 1);
    for (int i = 0; i < N; i++)
        json_decref(recs[i]);
    rig_down(&r, &st);
}

/* Frames that found the ring full: each its own record, with its seq,
 * without a frame. */
static void test_archive_overflow(void)
{
    maad_logger lg;
    char adir[128];
    rig_archive = archive_up("arch-overflow", &lg, adir, sizeof adir);
    if (!rig_archive)
        return;
    rig r;
    int up = rig_up(&r, 1, 10, 100, 4, 1e30);
    maad_archive *a = rig_archive;
    rig_archive = NULL;
    if (up) {
        maad_archive_close(a, NULL);
        return;
    }
    enum { N = 40 };
    for (int id = 1; id <= N; id++)
        frame(&r, (uint64_t)id);
    maad_worker_stats st;
    rig_stop(&r, &st);
    maad_archive_stats as;
    maad_archive_close(a, &as);
    json_t *recs[N];
    CHECK(archive_records(adir, recs, N) == N && as.written == N, "written %llu",
          (unsigned long long)as.written);
    msg m;
    int got = 0, overflow = 0;
    while (got < N && next_verdict(&r, &m)) {
        got++;
        json_t *o = recs[m.seq];
        if (!o || strcmp(m.reason, "ring overflow"))
            continue;
        overflow++;
        CHECK(json_integer_value(json_object_get(o, "frame_id")) == m.frame_id &&
              !strcmp(json_string_value(json_object_get(o, "reason")), "ring overflow") &&
              json_is_null(json_object_get(json_object_get(o, "archive"), "frame")),
              "seq %lld: not the overflow verdict published", m.seq);
    }
    CHECK(got == N && overflow > 0 && (uint64_t)overflow == st.overflow,
          "got %d, overflow %d of %llu", got, overflow, (unsigned long long)st.overflow);
    for (int i = 0; i < N; i++)
        json_decref(recs[i]);
    rig_down(&r, &st);
}

/* On the device: the frames the engine takes from its own frame buffers
 * (kept there until the verdict, not copied) and a mixed batch's frame
 * preprocessed on the host, each archived with its own pixels. */
static void test_device_archive(void)
{
    char why[MAA_ERRLEN];
    if (maa_backend_available(MAA_BACKEND_CUDA, why, sizeof why) != MAA_OK)
        SKIP("%s", why);
    const maa_engine_opts eo = {.backend = MAA_BACKEND_CUDA, .precision = MAA_PREC_F32,
                                .max_batch = 4, .frame_bytes = BW * BH};
    maad_logger lg;
    char adir[128];
    rig_archive = archive_up("arch-device", &lg, adir, sizeof adir);
    if (!rig_archive)
        return;
    rig r;
    int up = rig_up_engine(&r, 4, 60000, 0, 64, 1e30, 4, &eo, NULL, 0);
    maad_archive *a = rig_archive;
    rig_archive = NULL;
    if (up) {
        maad_archive_close(a, NULL);
        return;
    }
    enum { N = 12 };
    for (int id = 1; id <= N; id++)
        frame_sized(&r, (uint64_t)id, id == 2 ? W : BW, id == 2 ? H : BH);
    maad_worker_stats st;
    rig_stop(&r, &st);
    maad_archive_stats as;
    maad_archive_close(a, &as);
    json_t *recs[N];
    CHECK(archive_records(adir, recs, N) == N && as.written == N, "written %llu",
          (unsigned long long)as.written);
    msg m;
    int got = 0;
    while (got < N && next_verdict(&r, &m)) {
        got++;
        const int id = (int)m.frame_id;
        CHECK(recs[m.seq] && archive_frame_is(adir, recs[m.seq], (uint64_t)id,
                                              id == 2 ? W : BW, id == 2 ? H : BH),
              "frame %d: not its pixels", id);
    }
    CHECK(got == N, "got %d verdicts", got);
    for (int i = 0; i < N; i++)
        json_decref(recs[i]);
    rig_down(&r, &st);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/test_worker.XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    char path[128], path2[128], err[MAA_ERRLEN];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    snprintf(path2, sizeof path2, "%s/model2.safetensors", dir);
    maa_model_info info = {.image_size = S, .channels = 1, .g_base = 1, .d_base = 2};
    maa_model_info info2 = {.image_size = S2, .channels = 1, .g_base = 1, .d_base = 2};
    spoil none = {0};
    if (write_model(path, &info, &none) || maa_model_load(path, &model, err, sizeof err) ||
        write_model(path2, &info2, &none) || maa_model_load(path2, &model2, err, sizeof err)) {
        fprintf(stderr, "model: %s\n", err);
        return 1;
    }
    RUN(test_order_and_kinds);
    RUN(test_batches);
    RUN(test_live);
    RUN(test_timeout);
    RUN(test_overflow);
    RUN(test_too_old);
    RUN(test_too_old_slow_engine);
    RUN(test_heartbeats_while_busy);
    RUN(test_engine_error);
    RUN(test_failing_engine);
    RUN(test_calibration_swap);
    RUN(test_calibration_in_engine);
    RUN(test_model_swap);
    RUN(test_model_swap_in_engine);
    RUN(test_model_swap_resets_failures);
    RUN(test_drift_alarm);
    RUN(test_unencodable_reason);
    RUN(test_long_reason);
    RUN(test_stats_line);
    RUN(test_archive_records);
    RUN(test_archive_overflow);
    RUN(test_device_frames);
    RUN(test_device_archive);
    maa_model_free(model);
    maa_model_free(model2);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
    return CHECK_SUMMARY();
}
