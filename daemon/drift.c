/* drift.c — the drift alarm's rolling statistics (see daemon.h and
 * docs/operations.md, "Drift alarm").
 *
 * Pure arithmetic on what it is handed: no thread, no clock, no log; the
 * worker feeds it each judged frame on its own thread and says what the
 * transitions mean.  So the alarm is tested frame by frame, with the times
 * chosen by the test.
 *
 * The window is a ring of the last window_frames judged frames; a frame
 * captured more than window_s before the newest leaves it too.  Sums are
 * updated as frames enter and leave, and recomputed from the ring once
 * every window_frames frames, so that the rounding of a long run of
 * additions and subtractions never builds up (O(1) a frame, amortized). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "daemon/daemon.h"

/* An alarm clears only once its value is back within half of its band:
 * the rolling mean of min_frames frames wanders by a fraction of that, so a
 * line sitting at a limit does not raise and clear an alarm frame after
 * frame. */
#define CLEAR_SHARE 0.5

typedef struct {
    uint64_t t_ns;
    double score;       /* passes only */
    int reject;
} sample;

struct maad_drift {
    maad_drift_opts o;
    uint64_t window_ns;
    sample *ring;
    int head, n;        /* oldest at head */
    int passes, rejects;
    double sum;         /* of the passes' scores in the window */
    int since_resum;
    double mu, threshold;
    int alarm;
    uint64_t raised_mean, raised_rejects;
};

int maad_drift_create(const maad_drift_opts *o, double mu, double threshold, maad_drift **out,
                      char *err, size_t errlen)
{
    *out = NULL;
    if (o->window_frames < 1 || o->min_frames < 1 || o->min_frames > o->window_frames ||
        !(o->window_s > 0) || !(o->mean_fraction >= 0) || !(o->reject_rate >= 0) ||
        o->reject_rate > 1) {
        snprintf(err, err ? errlen : 0, "drift: bad options (window_frames %d, min_frames %d, "
                 "window_s %g, mean_fraction %g, reject_rate %g)", o->window_frames,
                 o->min_frames, o->window_s, o->mean_fraction, o->reject_rate);
        return MAA_ERR;
    }
    maad_drift *d = calloc(1, sizeof *d);
    if (d)
        d->ring = malloc((size_t)o->window_frames * sizeof *d->ring);
    if (!d || !d->ring) {
        free(d);
        snprintf(err, err ? errlen : 0, "drift: out of memory for a window of %d frames",
                 o->window_frames);
        return MAA_ERR;
    }
    d->o = *o;
    d->window_ns = (uint64_t)(o->window_s * 1e9);
    maad_drift_reset(d, mu, threshold);
    *out = d;
    return MAA_OK;
}

void maad_drift_free(maad_drift *d)
{
    if (!d)
        return;
    free(d->ring);
    free(d);
}

void maad_drift_reset(maad_drift *d, double mu, double threshold)
{
    d->head = d->n = d->passes = d->rejects = d->since_resum = 0;
    d->sum = 0;
    d->alarm = 0;
    d->mu = mu;
    d->threshold = threshold;
}

/* The mean's alarm band [*low, *high], and where it clears; all NaN when
 * the mean is not watched (mean_fraction 0, or a threshold not above mu:
 * a gamma of 0 or less leaves no distance to take a fraction of). */
static void mean_band(const maad_drift *d, double *low, double *high, double *clear_low,
                      double *clear_high)
{
    const double span = d->threshold - d->mu;
    if (!(d->o.mean_fraction > 0) || !(span > 0) || !isfinite(span)) {
        *low = *high = *clear_low = *clear_high = NAN;
        return;
    }
    const double band = d->o.mean_fraction * span;
    *low = d->mu - band;
    *high = d->mu + band;
    *clear_low = d->mu - CLEAR_SHARE * band;
    *clear_high = d->mu + CLEAR_SHARE * band;
}

static void drop_oldest(maad_drift *d)
{
    const sample *s = &d->ring[d->head];
    if (s->reject)
        d->rejects--;
    else {
        d->passes--;
        d->sum -= s->score;
    }
    d->head = (d->head + 1) % d->o.window_frames;
    d->n--;
}

static void resum(maad_drift *d)
{
    double sum = 0;
    for (int i = 0; i < d->n; i++) {
        const sample *s = &d->ring[(d->head + i) % d->o.window_frames];
        if (!s->reject)
            sum += s->score;
    }
    d->sum = sum;
    d->since_resum = 0;
}

int maad_drift_add(maad_drift *d, uint64_t t_ns, int reject, double score)
{
    /* A pass without a score has nothing to add to the mean; the engine
     * gives every judged frame a finite one, so this is only a guard. */
    if (!reject && !isfinite(score))
        return 0;
    if (d->n == d->o.window_frames)
        drop_oldest(d);
    d->ring[(d->head + d->n) % d->o.window_frames] =
        (sample){.t_ns = t_ns, .score = reject ? 0 : score, .reject = !!reject};
    d->n++;
    if (reject)
        d->rejects++;
    else {
        d->passes++;
        d->sum += score;
    }
    /* Capture times come in order; a clock stepped back leaves the
     * window to the count alone until it catches up. */
    while (d->n > 1 && d->ring[d->head].t_ns + d->window_ns < t_ns)
        drop_oldest(d);
    if (++d->since_resum >= d->o.window_frames)
        resum(d);
    if (d->n < d->o.min_frames)
        return 0;   /* too few to tell: the state stands */

    int alarm = d->alarm;
    double low, high, clear_low, clear_high;
    mean_band(d, &low, &high, &clear_low, &clear_high);
    /* The mean of a handful of passes among a storm of rejects says
     * little; the reject rate speaks for that window. */
    if (isfinite(high) && d->passes >= d->o.min_frames) {
        const double mean = d->sum / d->passes;
        if (!(alarm & MAAD_DRIFT_MEAN) && (mean > high || mean < low))
            alarm |= MAAD_DRIFT_MEAN;
        else if ((alarm & MAAD_DRIFT_MEAN) && mean <= clear_high && mean >= clear_low)
            alarm &= ~MAAD_DRIFT_MEAN;
    }
    if (d->o.reject_rate > 0) {
        const double rate = (double)d->rejects / d->n;
        if (!(alarm & MAAD_DRIFT_REJECTS) && rate > d->o.reject_rate)
            alarm |= MAAD_DRIFT_REJECTS;
        else if ((alarm & MAAD_DRIFT_REJECTS) && rate <= CLEAR_SHARE * d->o.reject_rate)
            alarm &= ~MAAD_DRIFT_REJECTS;
    }
    const int changed = alarm ^ d->alarm;
    d->raised_mean += (changed & alarm & MAAD_DRIFT_MEAN) != 0;
    d->raised_rejects += (changed & alarm & MAAD_DRIFT_REJECTS) != 0;
    d->alarm = alarm;
    return changed;
}

void maad_drift_describe(const maad_drift *d, char *buf, size_t n)
{
    maad_drift_state s;
    maad_drift_get(d, &s);
    char mean[160] = "the passes' mean score not watched", rate[96] = "";
    if (isfinite(s.mean_high))
        snprintf(mean, sizeof mean, "the passes' mean score within %.4g..%.4g (mu %.4g, "
                 "threshold %.4g)", s.mean_low, s.mean_high, s.mu, s.threshold);
    if (isfinite(s.reject_limit))
        snprintf(rate, sizeof rate, ", at most %.3g %% rejected", 100 * s.reject_limit);
    snprintf(buf, n, "the last %d judged parts of at most %.4g s, from %d of them: %s%s",
             s.window_frames, s.window_s, s.min_frames, mean, rate);
}

void maad_drift_get(const maad_drift *d, maad_drift_state *s)
{
    double clear_low, clear_high;
    *s = (maad_drift_state){
        .alarm = d->alarm, .frames = d->n, .passes = d->passes, .rejects = d->rejects,
        .judging = d->n >= d->o.min_frames,
        .mean = d->passes ? d->sum / d->passes : NAN,
        .reject_rate = d->n ? (double)d->rejects / d->n : NAN,
        .mu = d->mu, .threshold = d->threshold,
        .reject_limit = d->o.reject_rate > 0 ? d->o.reject_rate : NAN,
        .reject_clear = d->o.reject_rate > 0 ? CLEAR_SHARE * d->o.reject_rate : NAN,
        .window_frames = d->o.window_frames, .window_s = d->o.window_s,
        .min_frames = d->o.min_frames,
        .raised_mean = d->raised_mean, .raised_rejects = d->raised_rejects};
    mean_band(d, &s->mean_low, &s->mean_high, &clear_low, &clear_high);
    s->mean_clear_low = clear_low;
    s->mean_clear_high = clear_high;
}
