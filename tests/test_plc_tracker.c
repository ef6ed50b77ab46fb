/* test_plc_tracker.c — maa-plc's part tracking and message checks: a line
 * of three cameras at offsets 0, 1, 2 driven with made-up verdicts and
 * clocks (no network): parts decided in order with the right reasons, lost
 * frames, 16-bit id wraps, verdicts arriving out of camera order, deadlines,
 * a dead and a restarted maad, a camera error, a camera on another trigger,
 * shutdown. */
#include "plc/plc.h"

#include <stdarg.h>

#include "tests/check.h"

#define MS 1000000ull
#define PERIOD (10 * MS) /* 100 parts/s */

static maa_plc_config cfg;
static maad_logger lg;
static plc_tracker *tr;
static uint64_t real0, mono0;
/* The bridge's clocks: the real-time one follows the capture times. */
static uint64_t now_real, now_mono;

/* Camera state the test keeps: next frame id and seq. */
static uint64_t next_id[3], next_seq[3];

static void setup(int deadline_ms)
{
    memset(&cfg, 0, sizeof cfg);
    snprintf(cfg.line.name, sizeof cfg.line.name, "test");
    cfg.line.deadline_ms = deadline_ms;
    cfg.line.sync_tolerance_ms = 2;
    cfg.line.heartbeat_timeout_ms = 800;
    cfg.ncameras = 3;
    const char *names[] = {"groove", "cylinder", "hook"};
    for (int k = 0; k < 3; k++) {
        snprintf(cfg.cameras[k].name, sizeof cfg.cameras[k].name, "%s", names[k]);
        cfg.cameras[k].offset = k;
    }
    maad_log_init(&lg, NULL, getenv("VERBOSE") ? MAAD_LOG_DEBUG : MAAD_LOG_ERR);
    char err[128];
    plc_tracker_free(tr);
    CHECK(plc_tracker_create(&cfg, &lg, &tr, err, sizeof err) == MAA_OK, "%s", err);
    real0 = 1800000000ull * 1000000000ull;
    mono0 = maad_mono_ns();
    now_real = real0;
    now_mono = mono0;
    next_id[0] = 100;
    next_id[1] = 65530; /* wraps to 1 after six frames */
    next_id[2] = 7;
    memset(next_seq, 0, sizeof next_seq);
}

/* The bridge's clocks at step s plus ms_after milliseconds. */
static void at(int64_t s, uint64_t ms_after)
{
    now_real = real0 + (uint64_t)s * PERIOD + ms_after * MS;
    now_mono = mono0 + (uint64_t)s * PERIOD + ms_after * MS;
}

static uint64_t next_frame(int k)
{
    uint64_t id = next_id[k];
    next_id[k] = id == 65535 ? 1 : id + 1;
    return id;
}

/* Camera k's verdict for its frame at line step s (capture at step s's
 * trigger plus jitter_us), arriving 1 ms after capture. */
static void verdict(int k, int64_t s, maad_outcome v, int jitter_us)
{
    plc_msg m = {.kind = PLC_MSG_VERDICT, .seq = next_seq[k]++, .has_frame_id = true,
                 .frame_id = next_frame(k), .verdict = v};
    snprintf(m.camera, sizeof m.camera, "%s", cfg.cameras[k].name);
    m.t_capture_ns = real0 + (uint64_t)s * PERIOD + (uint64_t)((int64_t)jitter_us * 1000);
    at(s, 1);
    plc_tracker_message(tr, k, &m, now_real, now_mono);
}

static void heartbeat(int k)
{
    plc_msg m = {.kind = PLC_MSG_HEARTBEAT, .seq = next_seq[k]};
    snprintf(m.camera, sizeof m.camera, "%s", cfg.cameras[k].name);
    plc_tracker_message(tr, k, &m, now_real, now_mono);
}

/* Every camera's pass for step s, in camera order. */
static void step_all(int64_t s)
{
    for (int k = 0; k < 3; k++)
        verdict(k, s, MAAD_PASS, k * 300);
}

static plc_result got[4096];
static int ngot;

static void take(void)
{
    while (ngot < 4096 && plc_tracker_next(tr, &got[ngot]))
        ngot++;
}

static const plc_result *part(uint32_t p)
{
    for (int i = 0; i < ngot; i++)
        if (got[i].part == p)
            return &got[i];
    return NULL;
}

/* Results are consecutive part numbers from 0. */
static int in_order(void)
{
    for (int i = 0; i < ngot; i++)
        if (got[i].part != (uint32_t)i)
            return 0;
    return 1;
}

static void test_steady_line(void)
{
    setup(500);
    ngot = 0;
    for (int s = 2; s < 40; s++)
        step_all(s);
    take();
    /* Parts 0 and 1 passed the first stations before the bridge's first
     * step; part 39 has not reached camera 2 yet. */
    CHECK(ngot == 38, "%d results", ngot);
    CHECK(in_order(), "not in order");
    CHECK(got[0].reject && got[0].reasons == PLC_REASON_MISSING && got[0].missing == 3,
          "part 0: reasons %u missing %u", got[0].reasons, got[0].missing);
    CHECK(got[1].reject && got[1].missing == 1, "part 1: missing %u", got[1].missing);
    int passes = 0;
    for (int i = 2; i < ngot; i++)
        passes += !got[i].reject && got[i].reasons == 0 && got[i].cameras == 0;
    CHECK(passes == ngot - 2, "%d of %d later parts passed (camera 1's ids wrapped)", passes,
          ngot - 2);
    CHECK(got[5].t_capture_ns == real0 + 5 * PERIOD, "part 5 captured at %llu",
          (unsigned long long)got[5].t_capture_ns);
    CHECK(plc_tracker_down(tr) == 0, "down %x", plc_tracker_down(tr));
}

static void test_reject_uninspected_lost(void)
{
    setup(500);
    ngot = 0;
    for (int s = 2; s < 40; s++) {
        for (int k = 0; k < 3; k++) {
            maad_outcome v = MAAD_PASS;
            if (k == 1 && s == 10)
                v = MAAD_REJECT; /* part 9 */
            if (k == 2 && s == 12)
                v = MAAD_UNINSPECTED; /* part 10 */
            if (k == 0 && s == 15) {
                next_frame(0); /* part 15: the frame lost on the way */
                next_seq[0]++;
                continue;
            }
            verdict(k, s, v, 0);
        }
    }
    take();
    CHECK(in_order() && ngot == 38, "%d results", ngot);
    const plc_result *r9 = part(9), *r10 = part(10), *r15 = part(15);
    CHECK(r9 && r9->reject && r9->reasons == PLC_REASON_REJECT && r9->cameras == 2 &&
              r9->rejected == 2, "part 9");
    CHECK(r10 && r10->reject && r10->reasons == PLC_REASON_UNINSPECTED && r10->cameras == 4,
          "part 10");
    CHECK(r15 && r15->reject && r15->reasons == PLC_REASON_MISSING && r15->cameras == 1 &&
              r15->missing == 1, "part 15: reasons %u cameras %u", r15 ? r15->reasons : 0,
          r15 ? r15->cameras : 0);
    int bad = 0;
    for (int i = 2; i < ngot; i++)
        if (i != 9 && i != 10 && i != 15 && got[i].reject)
            bad++;
    CHECK(bad == 0, "%d other parts rejected: the line shifted", bad);
    plc_tracker_stats st;
    plc_tracker_get_stats(tr, &st);
    CHECK(st.parts == 38 && st.rejected == 5 && st.passed == 33, "parts %llu rejected %llu",
          (unsigned long long)st.parts, (unsigned long long)st.rejected);
}

/* Camera 2's verdicts come first, camera 0's last: the same decisions. */
static void test_out_of_camera_order(void)
{
    setup(500);
    ngot = 0;
    for (int s = 2; s < 30; s++)
        for (int k = 2; k >= 0; k--)
            verdict(k, s, k == 0 && s == 20 ? MAAD_REJECT : MAAD_PASS, -k * 300);
    take();
    CHECK(in_order(), "not in order");
    CHECK(ngot == 28, "%d results", ngot);
    int rejects = 0;
    for (int i = 2; i < ngot; i++)
        rejects += got[i].reject;
    CHECK(rejects == 1 && part(20) && part(20)->reject && part(20)->cameras == 1,
          "%d rejects", rejects);
}

/* Camera 2 goes quiet: its parts wait for the deadline or the heartbeat
 * timeout, then are rejected; when its maad restarts (seq and ids from the
 * start) it is placed again by capture time and its parts pass. */
static void test_dead_and_restarted_maad(void)
{
    setup(300);
    ngot = 0;
    for (int s = 2; s < 20; s++)
        step_all(s);
    take();
    int before = ngot;
    CHECK(before == 18, "%d results", before);
    /* Steps 20..129 without camera 2: 1.1 s, longer than the heartbeat
     * timeout (0.8 s). */
    for (int s = 20; s < 130; s++) {
        verdict(0, s, MAAD_PASS, 0);
        verdict(1, s, MAAD_PASS, 0);
        heartbeat(0);
        plc_tracker_tick(tr, now_real, now_mono);
    }
    take();
    CHECK(plc_tracker_down(tr) == 4, "down %x", plc_tracker_down(tr));
    /* Every part up to the last step the others reported is decided (by the
     * deadline, then at once while camera 2 is down) and rejected for it. */
    CHECK(ngot >= 125, "%d results", ngot);
    int right = 0, down = 0;
    for (int i = 18; i < ngot; i++) {
        right += got[i].reject && got[i].cameras == 4 && (got[i].reasons & PLC_REASON_MISSING);
        down += (got[i].reasons & PLC_REASON_DOWN) != 0;
    }
    CHECK(right == ngot - 18, "%d of %d parts rejected for camera 2", right, ngot - 18);
    CHECK(down > 0, "no part marked camera down");
    /* The maad comes back: seq 0, frame ids from 1. */
    next_seq[2] = 0;
    next_id[2] = 1;
    for (int s = 130; s < 160; s++)
        step_all(s);
    take();
    CHECK(plc_tracker_down(tr) == 0, "down %x after the restart", plc_tracker_down(tr));
    CHECK(in_order(), "not in order");
    const plc_result *r = part(150);
    CHECK(r && !r->reject, "part 150 after the restart: %s",
          r ? (r->reject ? "rejected" : "passed") : "not decided");
    plc_tracker_stats st;
    plc_tracker_get_stats(tr, &st);
    CHECK(st.resyncs == 4, "%llu placements (3 at start, 1 after the restart)",
          (unsigned long long)st.resyncs);
}

/* A verdict that is merely slow waits until the deadline; one later than
 * that is counted too late and changes nothing. */
static void test_deadline_and_too_late(void)
{
    setup(200);
    ngot = 0;
    for (int s = 2; s < 10; s++)
        step_all(s);
    /* Step 10: cameras 0 and 1 only, for now. */
    verdict(0, 10, MAAD_PASS, 0);
    verdict(1, 10, MAAD_PASS, 0);
    take();
    int n = ngot;
    at(10, 100);
    plc_tracker_tick(tr, now_real, now_mono);
    take();
    CHECK(ngot == n, "part 8 decided before its deadline");
    at(10, 250);
    plc_tracker_tick(tr, now_real, now_mono);
    take();
    const plc_result *r = part(8);
    CHECK(ngot == n + 1 && r && r->reject && r->missing == 4 && !(r->reasons & PLC_REASON_DOWN),
          "part 8 after its deadline: %d results", ngot - n);
    verdict(2, 10, MAAD_PASS, 0);
    plc_tracker_stats st;
    plc_tracker_get_stats(tr, &st);
    CHECK(st.too_late == 1, "too late %llu", (unsigned long long)st.too_late);
}

static void test_camera_error(void)
{
    setup(500);
    for (int s = 2; s < 10; s++)
        step_all(s);
    plc_msg m = {.kind = PLC_MSG_VERDICT, .seq = next_seq[1]++, .verdict = MAAD_UNINSPECTED,
                 .camera_error = true, .t_capture_ns = now_real};
    snprintf(m.camera, sizeof m.camera, "cylinder");
    plc_tracker_message(tr, 1, &m, now_real, now_mono);
    CHECK(plc_tracker_down(tr) == 2, "down %x", plc_tracker_down(tr));
    next_frame(1);
    step_all(11);
    CHECK(plc_tracker_down(tr) == 0, "down %x once frames come again", plc_tracker_down(tr));
}

/* A camera whose captures are 5 ms off the others' (tolerance 2 ms) is on
 * another trigger: never placed, its verdicts unmatched, its parts
 * rejected. */
static void test_camera_on_another_trigger(void)
{
    setup(100);
    ngot = 0;
    for (int s = 2; s < 60; s++) {
        verdict(0, s, MAAD_PASS, 0);
        verdict(1, s, MAAD_PASS, 0);
        verdict(2, s, MAAD_PASS, 5000);
        plc_tracker_tick(tr, now_real, now_mono);
    }
    take();
    plc_tracker_stats st;
    plc_tracker_get_stats(tr, &st);
    CHECK(plc_tracker_down(tr) == 4, "down %x", plc_tracker_down(tr));
    CHECK(st.unmatched > 30, "unmatched %llu", (unsigned long long)st.unmatched);
    int rejected = 0;
    for (int i = 0; i < ngot; i++)
        rejected += got[i].reject && (got[i].missing & 4);
    CHECK(ngot > 40 && rejected == ngot, "%d of %d rejected", rejected, ngot);
}

/* A camera's first frame comes off the trigger, 1.5 ms before step 10's
 * (within the tolerance): its next frame, on step 10, refutes that match,
 * and the camera is placed by the frames after it, not a step off. */
static void test_first_frame_off_the_trigger(void)
{
    setup(500);
    ngot = 0;
    for (int s = 2; s < 40; s++) {
        verdict(0, s, MAAD_PASS, 0);
        verdict(1, s, s % 5 == 1 ? MAAD_REJECT : MAAD_PASS, 0); /* parts 5n */
        if (s == 10)
            verdict(2, s, MAAD_PASS, -1500);
        if (s >= 10)
            verdict(2, s, s % 7 == 2 ? MAAD_REJECT : MAAD_PASS, 0); /* parts 7n */
    }
    take();
    CHECK(in_order(), "not in order");
    int wrong = 0;
    for (int i = 8; i < ngot; i++) {
        bool want = got[i].part % 5 == 0 || got[i].part % 7 == 0;
        wrong += got[i].reject != want || (got[i].missing != 0);
    }
    CHECK(ngot == 38 && wrong == 0, "%d results, %d of parts 8.. decided wrong", ngot, wrong);
    plc_tracker_stats st;
    plc_tracker_get_stats(tr, &st);
    CHECK(st.resyncs == 3, "%llu placements: one each, none undone",
          (unsigned long long)st.resyncs);
}

static void test_flush(void)
{
    setup(60000);
    ngot = 0;
    for (int s = 2; s < 10; s++)
        step_all(s);
    verdict(0, 10, MAAD_PASS, 0);
    take();
    CHECK(ngot == 8, "%d results before the flush", ngot);
    while (plc_tracker_flush(tr, now_real, now_mono))
        take();
    /* Parts 8..10 have been seen at some station. */
    CHECK(ngot == 11 && in_order(), "%d results after the flush", ngot);
    CHECK(got[10].reject && got[10].missing == 6 && got[8].missing == 4 && !got[7].reject,
          "part 10 missing %u, part 8 missing %u", got[10].missing, got[8].missing);
}

/* ---- messages ----------------------------------------------------------- */

static int parse(const char *topic, const char *json, plc_msg *m, char *err, size_t n)
{
    return plc_msg_parse(topic, strlen(topic), json, strlen(json), m, err, n);
}

static void refused_with(const char *topic, const char *json, const char *want)
{
    plc_msg m;
    char err[256] = "";
    int rc = parse(topic, json, &m, err, sizeof err);
    CHECK(rc == MAA_ERR && strstr(err, want), "%s %s: got [%s], want [%s]", topic, json, err,
          want);
}

static void test_messages(void)
{
    plc_msg m;
    char err[256];
    const char *v = "{\"v\":2,\"camera\":\"c1\",\"seq\":5,\"frame_id\":65406,"
                    "\"t_capture_ns\":1796369858120160000,\"verdict\":\"reject\","
                    "\"reason\":\"score above threshold\",\"score\":1.5,\"new_field\":[1]}";
    CHECK(parse("maad.c1", v, &m, err, sizeof err) == MAA_OK, "%s", err);
    CHECK(m.kind == PLC_MSG_VERDICT && !strcmp(m.camera, "c1") && m.seq == 5 &&
          m.has_frame_id && m.frame_id == 65406 && m.t_capture_ns == 1796369858120160000ull &&
          m.verdict == MAAD_REJECT && !m.camera_error);
    CHECK(parse("maad.c1", "{\"v\":2,\"camera\":\"c1\",\"seq\":6,\"frame_id\":null,"
                "\"t_capture_ns\":1,\"verdict\":\"uninspected\",\"reason\":\"camera error: "
                "timeout\"}", &m, err, sizeof err) == MAA_OK, "%s", err);
    CHECK(!m.has_frame_id && m.camera_error && m.verdict == MAAD_UNINSPECTED);
    CHECK(parse("maad.c1.heartbeat", "{\"v\":2,\"camera\":\"c1\",\"t_ns\":1,\"seq_next\":7}",
                &m, err, sizeof err) == MAA_OK, "%s", err);
    CHECK(m.kind == PLC_MSG_HEARTBEAT && m.seq == 7);

    refused_with("maad.c1", "{\"v\":2,", "verdict on 'maad.c1': not JSON");
    refused_with("maad.c1", "[1]", "an array, expected a JSON object");
    refused_with("other.c1", "{}", "topic 'other.c1' is not maad.<camera>");
    refused_with("maad.c1", "{\"v\":2,\"camera\":\"c2\"}", "camera field 'c2' does not match");
    refused_with("maad.c1", "{\"v\":2,\"camera\":\"c1\",\"frame_id\":1}", "no field 'seq'");
    refused_with("maad.c1",
                 "{\"v\":2,\"camera\":\"c1\",\"seq\":\"5\",\"frame_id\":1,\"t_capture_ns\":1,"
                 "\"verdict\":\"pass\",\"reason\":\"\"}",
                 "field 'seq' is a string, expected an integer");
    refused_with("maad.c1",
                 "{\"v\":2,\"camera\":\"c1\",\"seq\":5,\"frame_id\":-1,\"t_capture_ns\":1,"
                 "\"verdict\":\"pass\",\"reason\":\"\"}",
                 "field 'frame_id' is negative");
    refused_with("maad.c1",
                 "{\"v\":2,\"camera\":\"c1\",\"seq\":5,\"frame_id\":1.5,\"t_capture_ns\":1,"
                 "\"verdict\":\"pass\",\"reason\":\"\"}",
                 "field 'frame_id' is a fractional number, expected an integer or null");
    refused_with("maad.c1",
                 "{\"v\":2,\"camera\":\"c1\",\"seq\":5,\"frame_id\":1,\"t_capture_ns\":1,"
                 "\"verdict\":\"ok\",\"reason\":\"\"}",
                 "verdict 'ok' is not pass, reject or uninspected");
    refused_with("maad.c1", "{\"v\":2,\"v\":3,\"camera\":\"c1\"}", "duplicate");
    refused_with("maad.c1.heartbeat", "{\"v\":2,\"camera\":\"c1\"}", "heartbeat: no field 'seq_next'");
    refused_with("maad.c1", "{\"v\":0,\"camera\":\"c1\"}", "schema version 0");
    /* Binary garbage in the topic is shown, not printed raw. */
    refused_with("\x01\x02garbage", "{}", "topic '??garbage'");
}

int main(void)
{
    RUN(test_steady_line);
    RUN(test_reject_uninspected_lost);
    RUN(test_out_of_camera_order);
    RUN(test_dead_and_restarted_maad);
    RUN(test_deadline_and_too_late);
    RUN(test_camera_error);
    RUN(test_camera_on_another_trigger);
    RUN(test_first_frame_off_the_trigger);
    RUN(test_flush);
    RUN(test_messages);
    plc_tracker_free(tr);
    return CHECK_SUMMARY();
}
