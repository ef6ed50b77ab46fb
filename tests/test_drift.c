/* test_drift.c — the drift alarm's rolling statistics (daemon/drift.c):
 * quiet on a stationary line, raised by scores that drift up or down and by
 * a reject rate, cleared with hysteresis, the window by count and by
 * capture time, min_frames, a new baseline, and a window's sum that stays
 * exact over a long run.  Times are handed in: nothing here waits. */
#include <stdint.h>

#include "daemon/daemon.h"
#include "tests/check.h"

#define MS 1000000ull
#define S 1000000000ull

/* The calibration of these tests: mu 1, T 1.3 (sigma 0.1, gamma 3). */
#define MU 1.0
#define T 1.3

static maad_drift *make(int window, double window_s, int min_frames, double fraction,
                        double rate)
{
    maad_drift_opts o = {.window_frames = window, .window_s = window_s,
                         .min_frames = min_frames, .mean_fraction = fraction,
                         .reject_rate = rate};
    maad_drift *d = NULL;
    char err[MAA_ERRLEN] = "";
    CHECK(maad_drift_create(&o, MU, T, &d, err, sizeof err) == MAA_OK, "%s", err);
    return d;
}

/* A good part's score: mu + sigma * a sum of uniforms (near normal),
 * from a fixed sequence. */
static double good_score(uint64_t *rng, double mean)
{
    double z = 0;
    for (int i = 0; i < 12; i++) {
        *rng = *rng * 6364136223846793005ull + 1442695040888963407ull;
        z += (double)(*rng >> 11) / 9007199254740992.0;
    }
    return mean + 0.1 * (z - 6);
}

static void test_create_errors(void)
{
    maad_drift *d = NULL;
    char err[MAA_ERRLEN] = "";
    maad_drift_opts o = {.window_frames = 10, .window_s = 1, .min_frames = 11,
                         .mean_fraction = 0.3, .reject_rate = 0.1};
    CHECK(maad_drift_create(&o, MU, T, &d, err, sizeof err) == MAA_ERR && !d);
    CHECK(strstr(err, "min_frames 11") != NULL, "%s", err);
    o.min_frames = 5;
    o.window_s = 0;
    CHECK(maad_drift_create(&o, MU, T, &d, err, sizeof err) == MAA_ERR && !d);
    o.window_s = 1;
    o.reject_rate = 1.5;
    CHECK(maad_drift_create(&o, MU, T, &d, err, sizeof err) == MAA_ERR && !d);
    o.reject_rate = 0.1;
    CHECK(maad_drift_create(&o, MU, T, &d, err, sizeof err) == MAA_OK && d, "%s", err);
    maad_drift_state s;
    maad_drift_get(d, &s);
    CHECK(s.alarm == 0 && s.frames == 0 && !s.judging && isnan(s.mean) && isnan(s.reject_rate));
    CHECK_NEAR(s.mean_high, 1.09, 1e-12);
    CHECK_NEAR(s.mean_low, 0.91, 1e-12);
    CHECK_NEAR(s.mean_clear_high, 1.045, 1e-12);
    CHECK_NEAR(s.reject_limit, 0.1, 1e-12);
    CHECK_NEAR(s.reject_clear, 0.05, 1e-12);
    maad_drift_free(d);
}

/* A good line for 20000 parts, 0.5 % rejected: never an alarm. */
static void test_stationary_quiet(void)
{
    maad_drift *d = make(500, 600, 50, 0.3, 0.1);
    uint64_t rng = 42;
    int changes = 0;
    for (int i = 0; i < 20000; i++) {
        int reject = i % 200 == 7;
        changes += maad_drift_add(d, (uint64_t)i * 30 * MS, reject, good_score(&rng, MU)) != 0;
    }
    maad_drift_state s;
    maad_drift_get(d, &s);
    CHECK(changes == 0 && s.alarm == 0, "%d changes, alarm %d", changes, s.alarm);
    CHECK(s.raised_mean == 0 && s.raised_rejects == 0);
    CHECK(s.frames == 500 && s.judging);
    CHECK_NEAR(s.mean, MU, 0.02);
    CHECK_NEAR(s.reject_rate, 0.004, 0.0021);
    maad_drift_free(d);
}

/* Tool wear: the scores creep up towards T.  The alarm is raised once,
 * at the first frame whose window mean is beyond the band, and stays. */
static void test_rising_fires(void)
{
    maad_drift *d = make(200, 600, 50, 0.3, 0);
    uint64_t rng = 7;
    int raised_at = -1, changes = 0;
    double sum[200] = {0};
    for (int i = 0; i < 3000; i++) {
        /* Stationary for 1000 parts, then the mean climbs 0.25 (most
         * parts still pass: T is 3 sigma above mu). */
        double mean = MU + (i < 1000 ? 0 : 0.25 * (i - 1000) / 2000.0);
        double x = good_score(&rng, mean);
        sum[i % 200] = x;
        int c = maad_drift_add(d, (uint64_t)i * 30 * MS, 0, x);
        if (c) {
            changes++;
            CHECK(c == MAAD_DRIFT_MEAN, "changed %d", c);
            if (raised_at < 0)
                raised_at = i;
            double w = 0;
            for (int k = 0; k < 200; k++)
                w += sum[k];
            CHECK(w / 200 > MU + 0.3 * (T - MU), "raised at a window mean of %g", w / 200);
        }
    }
    maad_drift_state s;
    maad_drift_get(d, &s);
    CHECK(changes == 1 && s.alarm == MAAD_DRIFT_MEAN && s.raised_mean == 1, "%d changes", changes);
    /* The window mean reaches 1.09 when the true mean is near it: about
     * (0.09 / 0.25) * 2000 parts into the climb. */
    CHECK(raised_at > 1500 && raised_at < 2100, "raised at part %d", raised_at);
    maad_drift_free(d);
}

/* A lamp failing dark: frames with less texture than any good part score
 * below mu.  That is drift too. */
static void test_falling_fires(void)
{
    maad_drift *d = make(100, 600, 50, 0.3, 0.1);
    uint64_t rng = 9;
    int changes = 0;
    for (int i = 0; i < 300; i++)
        changes += maad_drift_add(d, (uint64_t)i * 30 * MS, 0, good_score(&rng, MU)) != 0;
    CHECK(changes == 0);
    int c = 0;
    for (int i = 300; i < 400 && !c; i++)
        c = maad_drift_add(d, (uint64_t)i * 30 * MS, 0, good_score(&rng, 0.6));
    maad_drift_state s;
    maad_drift_get(d, &s);
    CHECK(c == MAAD_DRIFT_MEAN && s.alarm == MAAD_DRIFT_MEAN && s.mean < s.mean_low,
          "changed %d, alarm %d, mean %g", c, s.alarm, s.mean);
    maad_drift_free(d);
}

/* Raised beyond the band, held while the mean is between the band and its
 * clearing line, cleared within it: one raise and one clear however long
 * the mean hovers at the limit. */
static void test_hysteresis(void)
{
    maad_drift *d = make(10, 600, 10, 0.3, 0);
    uint64_t t = 0;
    int raised = 0, cleared = 0;
    /* Window means of 1.10 (beyond 1.09), then 1.08 and 1.095 in turn
     * (inside the band, above the clearing line of 1.045), then 1.04. */
    const double level[] = {1.10, 1.08, 1.095, 1.08, 1.095, 1.08, 1.04};
    for (size_t k = 0; k < sizeof level / sizeof level[0]; k++)
        for (int i = 0; i < 10; i++) {
            int c = maad_drift_add(d, t += 30 * MS, 0, level[k]);
            maad_drift_state s;
            maad_drift_get(d, &s);
            raised += c && s.alarm;
            cleared += c && !s.alarm;
        }
    maad_drift_state s;
    maad_drift_get(d, &s);
    CHECK(raised == 1 && cleared == 1 && s.alarm == 0, "raised %d, cleared %d", raised,
          cleared);
    CHECK(s.raised_mean == 1);
    maad_drift_free(d);
}

/* The window by time: frames older than window_s before the newest leave
 * it, however few frames came since. */
static void test_time_window(void)
{
    maad_drift *d = make(1000, 10, 20, 0.3, 0);
    maad_drift_state s;
    uint64_t t = 0;
    /* 1 part a second: the window holds the last 11 (0..10 s back). */
    for (int i = 0; i < 50; i++)
        maad_drift_add(d, t += S, 0, MU);
    maad_drift_get(d, &s);
    CHECK(s.frames == 11 && !s.judging, "%d frames", s.frames);
    /* 20 a second: 100 parts within 5 s all count, beside the 6 of the
     * second before them, and their drift is seen with min_frames of
     * them. */
    for (int i = 0; i < 100; i++)
        maad_drift_add(d, t += 50 * MS, 0, 1.2);
    maad_drift_get(d, &s);
    CHECK(s.frames == 106 && s.alarm == MAAD_DRIFT_MEAN, "%d frames, alarm %d", s.frames,
          s.alarm);
    /* A pause of a minute: the next part is alone in the window, too few
     * to tell, so the alarm stands until min_frames good parts clear it. */
    int c = maad_drift_add(d, t += 60 * S, 0, MU);
    maad_drift_get(d, &s);
    CHECK(c == 0 && s.frames == 1 && s.alarm == MAAD_DRIFT_MEAN && !s.judging);
    CHECK_NEAR(s.mean, MU, 1e-12);
    int cleared_after = 0;
    for (int i = 2; i <= 20 && !cleared_after; i++)
        if (maad_drift_add(d, t += 50 * MS, 0, MU))
            cleared_after = i;
    CHECK(cleared_after == 20, "cleared after %d parts", cleared_after);
    maad_drift_free(d);
}

/* Rejects: raised above reject_rate, cleared at half of it; the passes'
 * mean, unchanged, raises nothing. */
static void test_reject_rate(void)
{
    maad_drift *d = make(100, 600, 50, 0.3, 0.1);
    uint64_t t = 0, rng = 3;
    int changes = 0;
    /* 8 % rejected, spread out: below the rate in every window. */
    for (int i = 0; i < 500; i++)
        changes += maad_drift_add(d, t += 30 * MS, i % 25 == 12 || i % 25 == 24,
                                  good_score(&rng, MU)) != 0;
    CHECK(changes == 0);
    /* 20 %: raised within a window. */
    int raised_at = -1;
    for (int i = 0; i < 100; i++) {
        int c = maad_drift_add(d, t += 30 * MS, i % 5 == 0, good_score(&rng, MU));
        if (c && raised_at < 0) {
            CHECK(c == MAAD_DRIFT_REJECTS, "changed %d", c);
            raised_at = i;
        }
    }
    maad_drift_state s;
    maad_drift_get(d, &s);
    CHECK(raised_at >= 0 && s.alarm == MAAD_DRIFT_REJECTS, "alarm %d", s.alarm);
    CHECK(s.rejects == 20 && s.frames == 100);
    CHECK_NEAR(s.reject_rate, 0.2, 1e-12);
    /* Back to 8 %: above half the rate, so still raised; at 4 %, cleared. */
    for (int i = 0; i < 200; i++)
        changes += maad_drift_add(d, t += 30 * MS, i % 25 < 2, good_score(&rng, MU)) != 0;
    maad_drift_get(d, &s);
    CHECK(changes == 0 && s.alarm == MAAD_DRIFT_REJECTS);
    int cleared = 0;
    for (int i = 0; i < 200; i++)
        cleared |= maad_drift_add(d, t += 30 * MS, i % 25 == 0, good_score(&rng, MU));
    maad_drift_get(d, &s);
    CHECK(cleared == MAAD_DRIFT_REJECTS && s.alarm == 0 && s.raised_rejects == 1);
    CHECK(s.raised_mean == 0);
    maad_drift_free(d);
}

/* Nothing is judged before min_frames frames, nor the mean before
 * min_frames passes. */
static void test_min_frames(void)
{
    maad_drift *d = make(100, 600, 20, 0.3, 0.1);
    uint64_t t = 0;
    for (int i = 0; i < 19; i++)
        CHECK(maad_drift_add(d, t += 30 * MS, 0, 1.25) == 0);
    maad_drift_state s;
    maad_drift_get(d, &s);
    CHECK(!s.judging && s.alarm == 0 && s.frames == 19);
    CHECK(maad_drift_add(d, t += 30 * MS, 0, 1.25) == MAAD_DRIFT_MEAN);
    maad_drift_free(d);
    /* All rejects: 20 frames judge the rate; the mean of no pass is none. */
    d = make(100, 600, 20, 0.3, 0.1);
    int c = 0;
    for (int i = 0; i < 20; i++)
        c |= maad_drift_add(d, t += 30 * MS, 1, NAN);
    maad_drift_get(d, &s);
    CHECK(c == MAAD_DRIFT_REJECTS && s.alarm == MAAD_DRIFT_REJECTS && isnan(s.mean));
    maad_drift_free(d);
}

/* Another calibration: the window starts again, the alarm cleared, the
 * counts of alarms raised kept.  Scores that drifted under the old
 * baseline are the new one's good parts. */
static void test_reset(void)
{
    maad_drift *d = make(50, 600, 20, 0.3, 0.1);
    uint64_t t = 0, rng = 5;
    for (int i = 0; i < 50; i++)
        maad_drift_add(d, t += 30 * MS, 0, good_score(&rng, 1.2));
    maad_drift_state s;
    maad_drift_get(d, &s);
    CHECK(s.alarm == MAAD_DRIFT_MEAN && s.raised_mean == 1);
    maad_drift_reset(d, 1.2, 1.5);
    maad_drift_get(d, &s);
    CHECK(s.alarm == 0 && s.frames == 0 && !s.judging && s.raised_mean == 1);
    CHECK(s.mu == 1.2 && s.threshold == 1.5);
    CHECK_NEAR(s.mean_high, 1.29, 1e-12);
    int changes = 0;
    for (int i = 0; i < 500; i++)
        changes += maad_drift_add(d, t += 30 * MS, 0, good_score(&rng, 1.2)) != 0;
    CHECK(changes == 0);
    /* A threshold not above mu (gamma <= 0) leaves no band: the mean is
     * not watched, the reject rate still is. */
    maad_drift_reset(d, 1.0, 0.9);
    maad_drift_get(d, &s);
    CHECK(isnan(s.mean_high) && isnan(s.mean_low) && s.reject_limit == 0.1);
    for (int i = 0; i < 100; i++)
        changes += maad_drift_add(d, t += 30 * MS, 0, 5.0) != 0;
    CHECK(changes == 0);
    maad_drift_free(d);
}

/* A window's sum over a long run: huge scores that left the window leave
 * no rounding behind (a sum only added to and subtracted from would have
 * swallowed the small ones whole). */
static void test_sum_exact(void)
{
    maad_drift *d = make(100, 1e6, 10, 0, 0);
    uint64_t t = 0;
    for (int i = 0; i < 1000; i++)
        maad_drift_add(d, t += 30 * MS, 0, 1e17);
    for (int i = 0; i < 200; i++)
        maad_drift_add(d, t += 30 * MS, 0, 1.0);
    maad_drift_state s;
    maad_drift_get(d, &s);
    CHECK(s.frames == 100 && s.passes == 100);
    CHECK_NEAR(s.mean, 1.0, 1e-12);
    maad_drift_free(d);
}

int main(void)
{
    RUN(test_create_errors);
    RUN(test_stationary_quiet);
    RUN(test_rising_fires);
    RUN(test_falling_fires);
    RUN(test_hysteresis);
    RUN(test_time_window);
    RUN(test_reject_rate);
    RUN(test_min_frames);
    RUN(test_reset);
    RUN(test_sum_exact);
    return CHECK_SUMMARY();
}
