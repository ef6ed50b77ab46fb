/* test_publish.c — the ZeroMQ verdict publisher against a real SUB socket:
 * topics, gap-free seq, JSON fields, mask part, heartbeats, prefix
 * filtering, bind errors, CURVE, the per-subscriber budget.  Runs in a
 * network namespace of its own (tests/netns.h). */
#include <jansson.h>
#include <malloc.h>
#include <spng.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "daemon/daemon.h"
#include "tests/check.h"
#include "tests/netns.h"
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
/* The sanitizer runtime's (sanitizer/allocator_interface.h, which gcc's
 * Debian packages do not install). */
size_t __sanitizer_get_current_allocated_bytes(void);
#endif

#define EP "tcp://127.0.0.1:5555"
#define EP2 "tcp://127.0.0.1:5556"

static char netns_skip[256]; /* empty when the private loopback is up */
static void *zctx;

typedef struct {
    char topic[128];
    json_t *json;
    unsigned char *data; /* third part, NULL when absent */
    size_t len;
    int parts;
} msg;

static void msg_free(msg *m)
{
    json_decref(m->json);
    free(m->data);
    memset(m, 0, sizeof *m);
}

/* One multipart message, or 0 after timeout_ms. */
static int recv_msg(void *sub, msg *m, int timeout_ms)
{
    memset(m, 0, sizeof *m);
    zmq_setsockopt(sub, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms);
    int more = 1;
    while (more) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, sub, 0) < 0) {
            zmq_msg_close(&part);
            return 0;
        }
        size_t n = zmq_msg_size(&part);
        const char *d = zmq_msg_data(&part);
        if (m->parts == 0) {
            snprintf(m->topic, sizeof m->topic, "%.*s", (int)n, d);
        } else if (m->parts == 1) {
            json_error_t je;
            m->json = json_loadb(d, n, 0, &je);
        } else if (m->parts == 2) {
            m->data = malloc(n ? n : 1);
            memcpy(m->data, d, n);
            m->len = n;
        }
        m->parts++;
        more = zmq_msg_more(&part);
        zmq_msg_close(&part);
    }
    return 1;
}

static void *sub_open(const char *ep, const char *filter)
{
    void *s = zmq_socket(zctx, ZMQ_SUB);
    zmq_setsockopt(s, ZMQ_SUBSCRIBE, filter, strlen(filter));
    zmq_connect(s, ep);
    return s;
}

/* PUB drops what it sends before a subscription arrives (slow joiner):
 * send heartbeats until one gets through, then drain. */
static int sync_sub(maad_pub *p, void *sub)
{
    static uint64_t fake_now = 1;
    msg m;
    for (int i = 0; i < 500; i++) {
        fake_now += 10ull * 1000000000u; /* always due */
        maad_pub_tick(p, fake_now, NULL, 0);
        if (recv_msg(sub, &m, 10)) {
            msg_free(&m);
            while (recv_msg(sub, &m, 50))
                msg_free(&m);
            return 1;
        }
    }
    return 0;
}

static maad_pub *pub_open(const char *ep, const char *camera,
                          maad_mask_format mf)
{
    maad_pub_opts o = {.endpoint = ep, .camera = camera, .sndhwm = 10000,
                       .mask_format = mf, .heartbeat_ms = 1000};
    maad_pub *p = NULL;
    char err[MAA_ERRLEN] = "";
    CHECK(maad_pub_create(&o, &p, err, sizeof err) == MAA_OK, "%s", err);
    return p;
}

static const char *jstr(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}
static long long jint(const json_t *o, const char *k)
{
    return json_integer_value(json_object_get(o, k));
}

#define S 16
/* A model file's SHA-256, as every verdict carries one. */
#define MODEL "5d4dc4a16543cd125fe9fb0e2df70cc1e97eb8c4a3055d53d39e2ebd593ea5e1"
#define MODEL2 "63c885439f0cead87e5c36a629bbe1d13b1ae3bbbf0237434f547a3cc49a176a"

static void make_mask(uint8_t *mask, int salt)
{
    for (int i = 0; i < S * S; i++)
        mask[i] = ((i * 7 + salt) % 5 == 0) ? 255 : 0;
}

/* Receives the next verdict (skipping heartbeats). */
static int next_verdict(void *sub, msg *m)
{
    while (recv_msg(sub, m, 2000)) {
        if (!strstr(m->topic, ".heartbeat"))
            return 1;
        msg_free(m);
    }
    return 0;
}

static void test_verdicts(void)
{
    if (*netns_skip)
        SKIP("%s", netns_skip);
    maad_pub *p = pub_open(EP, "cam0", MAAD_MASK_RAW);
    if (!p)
        return;
    void *sub = sub_open(EP, "maad.cam0");
    CHECK(sync_sub(p, sub), "no heartbeat reached the subscriber");

    const int n = 300;
    maa_region reg[2] = {{.x = 2, .y = 3, .w = 4, .h = 5, .area = 11},
                         {.x = 0, .y = 8, .w = 16, .h = 8, .area = 100}};
    uint8_t mask[S * S];
    char err[MAA_ERRLEN];
    for (int i = 0; i < n; i++) {
        make_mask(mask, i);
        maad_verdict v = {.frame_id = 1000 + (uint64_t)i,
                          .t_capture_ns = 5000000000ull + (uint64_t)i,
                          .verdict = (maad_outcome)(i % 3),
                          .reason = i % 3 == 2 ? "engine error: test" : NULL,
                          .score = 1.5 + i, .threshold = 100.25,
                          .model = i < n / 2 ? MODEL : MODEL2,
                          .rule = i % 3 == 1 ? MAA_RULE_MASK : MAA_RULE_EITHER,
                          .evidence = i % 3 == 1 ? MAA_EVIDENCE_SCORE | MAA_EVIDENCE_MASK : 0,
                          .mask_peak = 0.125 * i, .mask_threshold = 7.5,
                          .regions = reg, .nregions = i % 3 == 1 ? 2 : 0,
                          .model_size = S, .cam_width = 64, .cam_height = 48,
                          .mask = i % 3 == 2 ? NULL : mask};
        CHECK(maad_pub_verdict(p, &v, err, sizeof err) == MAA_OK, "%s", err);
    }
    long long seq0 = -1;
    int got = 0;
    msg m;
    for (int i = 0; i < n && next_verdict(sub, &m); i++, got++) {
        json_t *o = m.json;
        CHECK(o != NULL, "JSON does not parse");
        if (!o) {
            msg_free(&m);
            continue;
        }
        CHECK(strcmp(m.topic, "maad.cam0") == 0, "%s", m.topic);
        if (seq0 < 0)
            seq0 = jint(o, "seq");
        CHECK(jint(o, "seq") == seq0 + i, "seq %lld, expected %lld",
              jint(o, "seq"), seq0 + i);
        CHECK(jint(o, "v") == 2);
        CHECK(strcmp(jstr(o, "camera"), "cam0") == 0);
        CHECK(jint(o, "frame_id") == 1000 + i);
        CHECK(strcmp(jstr(o, "model"), i < n / 2 ? MODEL : MODEL2) == 0,
              "verdict %d: model %s", i, jstr(o, "model"));
        json_t *rule = json_object_get(o, "rule"), *ev = json_object_get(o, "evidence");
        json_t *peak = json_object_get(o, "mask_peak"), *tpix = json_object_get(o, "mask_threshold");
        if (i % 3 == 2) {
            CHECK(json_is_null(rule) && json_is_null(peak) && json_is_null(tpix),
                  "an uninspected frame has no decision");
            CHECK(json_is_array(ev) && json_array_size(ev) == 0);
        } else {
            CHECK(strcmp(json_string_value(rule), i % 3 ? "mask" : "either") == 0);
            CHECK(json_is_array(ev) && json_array_size(ev) == (i % 3 ? 2u : 0u));
            if (i % 3 == 1 && json_array_size(ev) == 2)
                CHECK(!strcmp(json_string_value(json_array_get(ev, 0)), "score") &&
                      !strcmp(json_string_value(json_array_get(ev, 1)), "mask"));
            CHECK_NEAR(json_number_value(peak), 0.125 * i, 1e-12);
            CHECK_NEAR(json_number_value(tpix), 7.5, 1e-12);
        }
        CHECK(jint(o, "t_capture_ns") == 5000000000ll + i);
        CHECK(jint(o, "t_publish_ns") > 1600000000ll * 1000000000ll);
        const char *want[] = {"pass", "reject", "uninspected"};
        CHECK(strcmp(jstr(o, "verdict"), want[i % 3]) == 0, "%s", jstr(o, "verdict"));
        const char *reasons[] = {"score at or below threshold",
                                 "score above threshold", "engine error: test"};
        CHECK(strcmp(jstr(o, "reason"), reasons[i % 3]) == 0, "%s", jstr(o, "reason"));
        json_t *score = json_object_get(o, "score");
        if (i % 3 == 2)
            CHECK(json_is_null(score));
        else
            CHECK_NEAR(json_number_value(score), 1.5 + i, 1e-9);
        CHECK_NEAR(json_number_value(json_object_get(o, "threshold")), 100.25, 1e-12);
        json_t *defs = json_object_get(o, "defects");
        CHECK(json_is_array(defs) && (int)json_array_size(defs) == (i % 3 == 1 ? 2 : 0));
        if (i % 3 == 1 && json_array_size(defs) == 2) {
            json_t *d0 = json_array_get(defs, 0), *d1 = json_array_get(defs, 1);
            CHECK(jint(d0, "x") == 2 && jint(d0, "y") == 3 && jint(d0, "w") == 4 &&
                  jint(d0, "h") == 5 && jint(d0, "area") == 11);
            /* 16 -> 64 wide (x4), 16 -> 48 high (x3) */
            CHECK(jint(d0, "cx") == 8 && jint(d0, "cw") == 16, "%lld %lld",
                  jint(d0, "cx"), jint(d0, "cw"));
            CHECK(jint(d0, "cy") == 9 && jint(d0, "ch") == 15, "%lld %lld",
                  jint(d0, "cy"), jint(d0, "ch"));
            CHECK(jint(d1, "cx") == 0 && jint(d1, "cw") == 64 &&
                  jint(d1, "cy") == 24 && jint(d1, "ch") == 24);
        }
        json_t *mk = json_object_get(o, "mask");
        if (i % 3 == 2) {
            CHECK(strcmp(jstr(mk, "format"), "none") == 0);
            CHECK(m.parts == 2, "%d parts", m.parts);
        } else {
            CHECK(strcmp(jstr(mk, "format"), "raw") == 0);
            CHECK(jint(mk, "width") == S && jint(mk, "height") == S);
            CHECK(m.parts == 3 && m.len == S * S, "%d parts, %zu bytes", m.parts, m.len);
            make_mask(mask, i);
            CHECK(m.data && memcmp(m.data, mask, S * S) == 0, "mask bytes differ");
        }
        msg_free(&m);
    }
    CHECK(got == n, "%d of %d verdicts", got, n);
    maad_pub_stats st;
    maad_pub_get_stats(p, &st);
    CHECK(st.pass == 100 && st.reject == 100 && st.uninspected == 100);
    CHECK(st.send_dropped == 0 && st.mask_errors == 0);
    CHECK((long long)st.seq_next == seq0 + n);
    zmq_close(sub);
    maad_pub_free(p);
}

/* PNG masks decode to the mask sent: empty ones (the publisher encodes an
 * empty mask once per side and reuses it), marked ones and ones with a
 * single pixel, interleaved, at two sides. */
static void test_png_mask(void)
{
    if (*netns_skip)
        SKIP("%s", netns_skip);
    maad_pub *p = pub_open(EP, "cam0", MAAD_MASK_PNG);
    if (!p)
        return;
    void *sub = sub_open(EP, "maad.cam0");
    CHECK(sync_sub(p, sub), "no heartbeat reached the subscriber");
    enum { BIG = 24 };
    static const struct {
        int side, salt;  /* salt -1: empty; -2: one pixel, the 10th */
    } cases[] = {{S, -1}, {S, 3}, {S, -1}, {BIG, -1}, {BIG, 1},
                 {S, -1}, {BIG, -2}, {BIG, -1}, {S, -2}};
    uint8_t mask[BIG * BIG], out[BIG * BIG];
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        const int side = cases[k].side;
        memset(mask, 0, sizeof mask);
        for (int i = 0; cases[k].salt >= 0 && i < side * side; i++)
            mask[i] = ((i * 7 + cases[k].salt) % 5 == 0) ? 255 : 0;
        if (cases[k].salt == -2)
            mask[9] = 255;
        char err[MAA_ERRLEN];
        maad_verdict v = {.frame_id = 7 + k, .verdict = MAAD_REJECT, .score = 9,
                          .threshold = 1, .model = MODEL, .model_size = side, .mask = mask};
        CHECK(maad_pub_verdict(p, &v, err, sizeof err) == MAA_OK, "%s", err);
        msg m;
        if (!next_verdict(sub, &m)) {
            CHECK(0, "case %zu: no verdict", k);
            break;
        }
        CHECK(strcmp(jstr(json_object_get(m.json, "mask"), "format"), "png") == 0);
        CHECK(m.parts == 3 && m.len > 8 && memcmp(m.data, "\x89PNG", 4) == 0);
        if (m.parts == 3) {
            spng_ctx *c = spng_ctx_new(0);
            spng_set_png_buffer(c, m.data, m.len);
            struct spng_ihdr ih;
            CHECK(spng_get_ihdr(c, &ih) == 0 && (int)ih.width == side &&
                  (int)ih.height == side && ih.color_type == SPNG_COLOR_TYPE_GRAYSCALE &&
                  ih.bit_depth == 8, "case %zu: header", k);
            CHECK(spng_decode_image(c, out, (size_t)side * side, SPNG_FMT_G8, 0) == 0);
            CHECK(memcmp(out, mask, (size_t)side * side) == 0, "case %zu: decoded mask differs",
                  k);
            spng_ctx_free(c);
        }
        msg_free(&m);
    }
    zmq_close(sub);
    maad_pub_free(p);
}

static void test_drops(void)
{
    if (*netns_skip)
        SKIP("%s", netns_skip);
    maad_pub *p = pub_open(EP, "cam0", MAAD_MASK_PNG);
    if (!p)
        return;
    void *sub = sub_open(EP, "maad.cam0");
    CHECK(sync_sub(p, sub), "no heartbeat reached the subscriber");
    char err[MAA_ERRLEN];
    maad_drops d = {.count = 4, .first_id = 50, .last_id = 53,
                    .first_t_ns = 1000, .last_t_ns = 4000};
    CHECK(maad_pub_drops(p, &d, 2.5, MODEL, err, sizeof err) == MAA_OK);
    maad_verdict v = {.frame_id = 54, .verdict = MAAD_PASS, .score = 1,
                      .threshold = 2.5, .model = MODEL};
    CHECK(maad_pub_verdict(p, &v, err, sizeof err) == MAA_OK);
    msg m;
    long long seq0 = -1;
    for (int k = 0; k < 5; k++) {
        CHECK(next_verdict(sub, &m));
        if (!m.json)
            break;
        if (seq0 < 0)
            seq0 = jint(m.json, "seq");
        CHECK(jint(m.json, "seq") == seq0 + k);
        CHECK(jint(m.json, "frame_id") == 50 + k);
        if (k < 4) {
            CHECK(jint(m.json, "t_capture_ns") == 1000 * (k + 1));
            CHECK(strcmp(jstr(m.json, "verdict"), "uninspected") == 0);
            CHECK(strcmp(jstr(m.json, "reason"), "ring overflow") == 0);
            CHECK(strcmp(jstr(m.json, "model"), MODEL) == 0, "%s", jstr(m.json, "model"));
            CHECK(json_is_null(json_object_get(m.json, "score")));
            CHECK(strcmp(jstr(json_object_get(m.json, "mask"), "format"), "none") == 0);
            CHECK(m.parts == 2);
        } else {
            CHECK(strcmp(jstr(m.json, "verdict"), "pass") == 0);
        }
        msg_free(&m);
    }
    zmq_close(sub);
    maad_pub_free(p);
}

static void test_heartbeat(void)
{
    if (*netns_skip)
        SKIP("%s", netns_skip);
    maad_pub *p = NULL;
    char err[MAA_ERRLEN];
    maad_pub_opts o = {.endpoint = EP, .camera = "cam0", .sndhwm = 100,
                       .heartbeat_ms = 500};
    CHECK(maad_pub_create(&o, &p, err, sizeof err) == MAA_OK, "%s", err);
    if (!p)
        return;
    /* Due-ness follows the clock the caller passes. */
    uint64_t t0 = 1000000000000ull;
    CHECK(maad_pub_tick(p, t0, NULL, 0) == 1);
    CHECK(maad_pub_tick(p, t0 + 499999999, NULL, 0) == 0);
    CHECK(maad_pub_tick(p, t0 + 500000000, NULL, 0) == 1);
    CHECK(maad_pub_tick(p, t0 + 600000000, NULL, 0) == 0);

    void *sub = sub_open(EP, "maad.cam0.heartbeat");
    CHECK(sync_sub(p, sub), "no heartbeat reached the subscriber");
    maad_verdict v = {.frame_id = 1, .verdict = MAAD_REJECT, .score = 3,
                      .threshold = 2, .model = MODEL};
    maad_pub_verdict(p, &v, err, sizeof err);
    /* A worker's loop: tick every 10 ms for 1.5 s of real time. */
    maad_stat extra[3] = {{"ring_overflow", 12, 0}, {"fps", 29.5, 0}, {"rate", 0, 1}};
    int beats = 0;
    msg m;
    uint64_t end = maad_now_ns() + 1500000000ull;
    while (maad_now_ns() < end) {
        maad_pub_tick(p, maad_now_ns(), extra, 3);
        while (recv_msg(sub, &m, 10)) {
            CHECK(strcmp(m.topic, "maad.cam0.heartbeat") == 0, "%s", m.topic);
            CHECK(m.parts == 2);
            json_t *o2 = m.json, *st = json_object_get(o2, "stats");
            CHECK(jint(o2, "v") == 2 && strcmp(jstr(o2, "camera"), "cam0") == 0);
            CHECK(jint(o2, "t_ns") > 1600000000ll * 1000000000ll);
            CHECK(jint(o2, "seq_next") >= 1);
            CHECK(jint(st, "reject") == 1 && jint(st, "ring_overflow") == 12);
            CHECK_NEAR(json_number_value(json_object_get(st, "fps")), 29.5, 1e-12);
            /* A real, whole or not. */
            CHECK(json_is_real(json_object_get(st, "rate")) &&
                  json_real_value(json_object_get(st, "rate")) == 0);
            beats++;
            msg_free(&m);
        }
    }
    CHECK(beats >= 1, "%d heartbeats in 1.5 s", beats);
    printf("  %d heartbeats in 1.5 s at 500 ms\n", beats);
    zmq_close(sub);
    maad_pub_free(p);
}

static void test_prefix_filter(void)
{
    if (*netns_skip)
        SKIP("%s", netns_skip);
    maad_pub *a = pub_open(EP, "line1", MAAD_MASK_NONE);
    maad_pub *b = pub_open(EP2, "line2", MAAD_MASK_NONE);
    if (!a || !b) {
        maad_pub_free(a);
        maad_pub_free(b);
        return;
    }
    void *sub = zmq_socket(zctx, ZMQ_SUB);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "maad.line2", 10);
    zmq_connect(sub, EP);
    zmq_connect(sub, EP2);
    CHECK(sync_sub(b, sub), "no heartbeat reached the subscriber");
    char err[MAA_ERRLEN];
    for (int i = 0; i < 10; i++) {
        maad_verdict v = {.frame_id = (uint64_t)i, .verdict = MAAD_PASS, .model = MODEL};
        maad_pub_verdict(a, &v, err, sizeof err);
        maad_pub_tick(a, maad_now_ns() + (uint64_t)i * 2000000000ull, NULL, 0);
        maad_pub_verdict(b, &v, err, sizeof err);
    }
    int from_b = 0, from_a = 0;
    msg m;
    while (recv_msg(sub, &m, 300)) {
        if (strncmp(m.topic, "maad.line2", 10) == 0 &&
            strcmp(jstr(m.json, "camera"), "line2") == 0)
            from_b++;
        else
            from_a++;
        msg_free(&m);
    }
    CHECK(from_b == 10, "%d", from_b);
    CHECK(from_a == 0, "%d messages of line1 passed the filter", from_a);
    zmq_close(sub);
    maad_pub_free(a);
    maad_pub_free(b);
}

static void test_errors(void)
{
    if (*netns_skip)
        SKIP("%s", netns_skip);
    char err[MAA_ERRLEN] = "";
    maad_pub *p = pub_open(EP, "cam0", MAAD_MASK_NONE), *q = NULL;
    maad_pub_opts o = {.endpoint = EP, .camera = "cam0", .sndhwm = 10};
    CHECK(maad_pub_create(&o, &q, err, sizeof err) == MAA_ERR);
    CHECK(q == NULL);
    CHECK(strcmp(err, "publish.endpoint " EP ": Address already in use") == 0,
          "%s", err);
    o.endpoint = "bogus://x";
    CHECK(maad_pub_create(&o, &q, err, sizeof err) == MAA_ERR);
    CHECK(strncmp(err, "publish.endpoint bogus://x: ", 28) == 0, "%s", err);
    o.endpoint = EP2;
    o.camera = "has space";
    CHECK(maad_pub_create(&o, &q, err, sizeof err) == MAA_ERR);
    CHECK(strstr(err, "has space") != NULL, "%s", err);
    o.camera = "cam0";
    o.sndhwm = 0;
    CHECK(maad_pub_create(&o, &q, err, sizeof err) == MAA_ERR);
    CHECK(strstr(err, "sndhwm") != NULL, "%s", err);
    o.sndhwm = 10;
    o.heartbeat_ms = 1500;
    CHECK(maad_pub_create(&o, &q, err, sizeof err) == MAA_ERR);
    CHECK(strstr(err, "heartbeat_ms") != NULL, "%s", err);
    maad_verdict v = {.verdict = MAAD_REJECT, .model = MODEL, .nregions = 1};
    CHECK(maad_pub_verdict(p, &v, err, sizeof err) == MAA_ERR);
    /* Every verdict names its model (contract §8). */
    maad_verdict anonymous = {.verdict = MAAD_PASS, .score = 1, .threshold = 2};
    CHECK(maad_pub_verdict(p, &anonymous, err, sizeof err) == MAA_ERR);
    CHECK(strstr(err, "bad verdict") != NULL, "%s", err);
    maad_mask_format mf;
    CHECK(maad_mask_format_parse("png", &mf) == MAA_OK && mf == MAAD_MASK_PNG);
    CHECK(maad_mask_format_parse("jpeg", &mf) == MAA_ERR);
    maad_pub_free(p);
}

/* ---- CURVE and the per-subscriber budget ---------------------------------- */

static char keydir[64];

static void curve_sub_keys(void *s, const maad_curve_cert *server, const maad_curve_cert *me)
{
    zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, server->public_key, 41);
    zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, me->public_key, 41);
    zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, me->secret_key, 41);
}

/* A SUB of ctx zctx with keys (NULL: plain), subscribed to everything. */
static void *curve_sub(const maad_curve_cert *server, const maad_curve_cert *me)
{
    void *s = zmq_socket(zctx, ZMQ_SUB);
    int ivl = 20, linger = 0;
    zmq_setsockopt(s, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    if (me)
        curve_sub_keys(s, server, me);
    zmq_setsockopt(s, ZMQ_SUBSCRIBE, "", 0);
    zmq_connect(s, EP);
    return s;
}

static void test_curve_access(void)
{
    if (*netns_skip)
        SKIP("%s", netns_skip);
    char err[MAA_ERRLEN] = "", clients[96], path[160];
    snprintf(clients, sizeof clients, "%s/clients", keydir);
    mkdir(clients, 0755);
    maad_curve_cert server, allowed, stranger;
    CHECK(maad_curve_cert_write(keydir, "maad", &server, err, sizeof err) == MAA_OK, "%s", err);
    CHECK(maad_curve_cert_write(clients, "plc", &allowed, err, sizeof err) == MAA_OK, "%s", err);
    CHECK(maad_curve_cert_write(keydir, "stranger", &stranger, err, sizeof err) == MAA_OK,
          "%s", err);
    snprintf(path, sizeof path, "%s/maad.key_secret", keydir);
    maad_pub_opts o = {.endpoint = EP, .camera = "cam", .sndhwm = 100, .heartbeat_ms = 1000,
                       .curve_secret_key = path, .curve_clients = clients};
    maad_pub *p = NULL;
    CHECK(maad_pub_create(&o, &p, err, sizeof err) == MAA_OK, "%s", err);
    if (!p)
        return;
    maad_pub_stats st;
    maad_pub_get_stats(p, &st);
    CHECK(st.curve_keys == 1, "%d keys", st.curve_keys);

    void *good = curve_sub(&server, &allowed);
    CHECK(sync_sub(p, good), "the allowed key gets heartbeats");
    /* A key not in the directory, and a plain subscriber: neither gets a
     * message while the allowed one gets many. */
    void *bad = curve_sub(&server, &stranger), *plain = curve_sub(NULL, NULL);
    msg m;
    int got_good = 0, got_bad = 0, got_plain = 0;
    for (int i = 0; i < 30; i++) {
        maad_pub_tick(p, (uint64_t)(i + 1) * 10000000000ull + 1000000000000ull, NULL, 0);
        got_good += recv_msg(good, &m, 20);
        msg_free(&m);
        got_bad += recv_msg(bad, &m, 20);
        msg_free(&m);
        got_plain += recv_msg(plain, &m, 20);
        msg_free(&m);
    }
    CHECK(got_good == 30, "allowed: %d of 30 heartbeats", got_good);
    CHECK(got_bad == 0 && got_plain == 0, "refused: %d, plain: %d", got_bad, got_plain);
    maad_pub_get_stats(p, &st);
    CHECK(st.curve_accepted >= 1 && st.curve_refused >= 1, "accepted %llu refused %llu",
          (unsigned long long)st.curve_accepted, (unsigned long long)st.curve_refused);

    /* A key added to the directory is allowed after the reload (SIGHUP),
     * at the stranger's next connection: libzmq does not retry a refused
     * handshake by itself (maa watch and maa-plc connect again). */
    snprintf(path, sizeof path, "%s/stranger.key", keydir);
    char to[160];
    snprintf(to, sizeof to, "%s/stranger.key", clients);
    CHECK(rename(path, to) == 0);
    int nkeys = 0;
    CHECK(maad_pub_reload_clients(p, &nkeys, err, sizeof err) == MAA_OK && nkeys == 2, "%s",
          err);
    zmq_close(bad);
    bad = curve_sub(&server, &stranger);
    for (int i = 0; i < 200 && !got_bad; i++) {
        maad_pub_tick(p, (uint64_t)(i + 1) * 10000000000ull + 2000000000000ull, NULL, 0);
        got_bad = recv_msg(bad, &m, 20);
        msg_free(&m);
    }
    maad_pub_get_stats(p, &st);
    CHECK(got_bad, "the stranger's key, once added, is allowed (accepted %llu refused %llu)",
          (unsigned long long)st.curve_accepted, (unsigned long long)st.curve_refused);
    /* A broken certificate in the directory: the reload is refused and the
     * allowed set stays. */
    snprintf(path, sizeof path, "%s/broken.key", clients);
    FILE *f = fopen(path, "w");
    fputs("curve\n public-key = \"nope\"\n", f);
    fclose(f);
    CHECK(maad_pub_reload_clients(p, &nkeys, err, sizeof err) == MAA_ERR);
    CHECK(strstr(err, "broken.key") != NULL, "%s", err);
    maad_pub_get_stats(p, &st);
    CHECK(st.curve_keys == 2, "%d keys kept", st.curve_keys);
    unlink(path);
    zmq_close(good);
    zmq_close(bad);
    zmq_close(plain);
    maad_pub_free(p);

    /* Half of CURVE, or a clients directory without keys, is refused. */
    snprintf(path, sizeof path, "%s/maad.key_secret", keydir);
    maad_pub_opts half = {.endpoint = EP, .camera = "cam", .sndhwm = 1, .curve_secret_key = path};
    CHECK(maad_pub_create(&half, &p, err, sizeof err) == MAA_ERR);
    CHECK(strstr(err, "both") != NULL, "%s", err);
    char empty[96];
    snprintf(empty, sizeof empty, "%s/empty", keydir);
    mkdir(empty, 0755);
    half.curve_clients = empty;
    CHECK(maad_pub_create(&half, &p, err, sizeof err) == MAA_ERR);
    CHECK(strstr(err, "no client certificates") != NULL, "%s", err);
}

/* Bytes allocated and not freed: what the sanitizers' allocators count
 * (their quarantine keeps freed memory resident, so the process's size
 * would say nothing there), else glibc's count of the main arena, where
 * the publishing thread allocates the messages and their queue. */
static long heap_kib(void)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    return (long)(__sanitizer_get_current_allocated_bytes() / 1024);
#else
    struct mallinfo2 m = mallinfo2();
    return (long)((m.uordblks + m.hblkhd) / 1024);
#endif
}

/* What maad holds for a subscriber that never reads (its receive queue of
 * one message, and its TCP buffers, full): the growth of this process's
 * heap over 3000 verdicts with raw 128 x 128 masks (48 MiB sent). */
static long held_kib(size_t budget)
{
    maad_pub_opts o = {.endpoint = EP, .camera = "cam", .sndhwm = 1000000,
                       .mask_format = MAAD_MASK_RAW, .heartbeat_ms = 1000,
                       .subscriber_budget = budget, .mask_side = 128};
    maad_pub *p = NULL;
    char err[MAA_ERRLEN] = "";
    CHECK(maad_pub_create(&o, &p, err, sizeof err) == MAA_OK, "%s", err);
    if (!p)
        return 0;
    void *sub = zmq_socket(zctx, ZMQ_SUB);
    int one = 1, linger = 0;
    zmq_setsockopt(sub, ZMQ_RCVHWM, &one, sizeof one);
    zmq_setsockopt(sub, ZMQ_RCVBUF, &one, sizeof one);
    zmq_setsockopt(sub, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0);
    zmq_connect(sub, EP);
    CHECK(sync_sub(p, sub));
    static uint8_t mask[128 * 128];
    maad_verdict v = {.verdict = MAAD_REJECT, .score = 2, .threshold = 1, .model = MODEL,
                      .model_size = 128, .cam_width = 128, .cam_height = 128, .mask = mask};
    long before = heap_kib();
    for (int i = 0; i < 3000; i++) {
        v.frame_id = (uint64_t)i + 1;
        mask[i % sizeof mask] = 255; /* not the cached empty one */
        maad_pub_verdict(p, &v, NULL, 0);
    }
    usleep(300000); /* the I/O thread moves what it can */
    long grew = heap_kib() - before;
    zmq_close(sub);
    maad_pub_free(p);
    return grew;
}

static void test_subscriber_budget(void)
{
    if (*netns_skip)
        SKIP("%s", netns_skip);
    /* The limit: the budget over the largest message, never above sndhwm,
     * at least 1. */
    maad_pub_opts o = {.endpoint = EP, .camera = "cam", .sndhwm = 1000,
                       .mask_format = MAAD_MASK_RAW, .heartbeat_ms = 1000,
                       .subscriber_budget = 4u << 20, .mask_side = 256};
    maad_pub *p = NULL;
    char err[MAA_ERRLEN] = "";
    maad_pub_stats st;
    CHECK(maad_pub_create(&o, &p, err, sizeof err) == MAA_OK, "%s", err);
    maad_pub_get_stats(p, &st);
    CHECK(st.queue_limit > 30 && st.queue_limit < 64, "4 MiB of 64 KiB masks: %d",
          st.queue_limit);
    maad_pub_set_mask_side(p, 1024); /* a model swap to S = 1024: 1 MiB masks */
    maad_pub_get_stats(p, &st);
    CHECK(st.queue_limit == 3, "%d", st.queue_limit);
    maad_pub_free(p);
    o.subscriber_budget = 64u << 20;
    o.mask_side = 64;
    CHECK(maad_pub_create(&o, &p, err, sizeof err) == MAA_OK, "%s", err);
    maad_pub_get_stats(p, &st);
    CHECK(st.queue_limit == 1000, "64 MiB of 4 KiB masks: sndhwm holds (%d)", st.queue_limit);
    maad_pub_free(p);
    o.subscriber_budget = 1000;
    CHECK(maad_pub_create(&o, &p, err, sizeof err) == MAA_OK, "%s", err);
    maad_pub_get_stats(p, &st);
    CHECK(st.queue_limit == 1, "%d", st.queue_limit);
    maad_pub_free(p);

    /* The bound holds in memory: without it the 48 MiB queue up for the
     * subscriber that does not read (which shows the test can tell). */
    long bounded = held_kib(2u << 20), unbounded = held_kib(0);
    printf("  held for a subscriber that does not read: %ld KiB with a 2 MiB budget, %ld KiB "
           "without\n", bounded, unbounded);
    CHECK(bounded < 12 * 1024, "2 MiB budget: %ld KiB held", bounded);
    CHECK(unbounded > 32 * 1024, "unbounded: %ld KiB held", unbounded);
}

static void test_endpoint_local(void)
{
    CHECK(maad_endpoint_is_local("tcp://127.0.0.1:5555"));
    CHECK(maad_endpoint_is_local("tcp://localhost:5555"));
    CHECK(maad_endpoint_is_local("tcp://[::1]:5555"));
    CHECK(maad_endpoint_is_local("tcp://lo:5555"));
    CHECK(maad_endpoint_is_local("ipc:///run/maad/cam0"));
    CHECK(!maad_endpoint_is_local("tcp://*:5555"));
    CHECK(!maad_endpoint_is_local("tcp://0.0.0.0:5555"));
    CHECK(!maad_endpoint_is_local("tcp://10.0.0.5:5555"));
    CHECK(!maad_endpoint_is_local("tcp://eth0:5555"));
    CHECK(!maad_endpoint_is_local("tcp://127x:5555"));
}

int main(void)
{
    netns_enter(netns_skip, sizeof netns_skip);
    zctx = zmq_ctx_new();
    RUN(test_verdicts);
    RUN(test_png_mask);
    RUN(test_drops);
    RUN(test_heartbeat);
    RUN(test_prefix_filter);
    RUN(test_errors);
    snprintf(keydir, sizeof keydir, "/tmp/test_publish.XXXXXX");
    if (!mkdtemp(keydir))
        perror("mkdtemp");
    RUN(test_curve_access);
    RUN(test_subscriber_budget);
    RUN(test_endpoint_local);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", keydir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", keydir);
    zmq_ctx_term(zctx);
    return CHECK_SUMMARY();
}
