/* tracker.c — the verdicts of one physical part matched across cameras.
 *
 * The line model (docs/plc.md, "The line"): one index pulse per line step
 * triggers every camera once; camera k sits cfg offset_k steps downstream
 * of the first station, so its frame at step s shows part s - offset_k.
 * A part's number is the step at which it stood at the first station.
 *
 * Within one camera, frame ids give the step: step = id + delta, the id
 * extended through the 16-bit GigE Vision wrap (65535 -> 1, 0 unused).  So
 * a lost frame leaves a hole at its step, and never shifts the later ones.
 * Across cameras nothing shares ids, so a camera is placed on the line
 * (delta found) by capture time: its frame goes to the step whose frames,
 * from cameras already placed, were captured within sync_tolerance_ms of it
 * (they share the trigger).  That happens at its first verdict and again
 * whenever its maad restarts (seq or frame id goes back) or its ids jump;
 * the camera's next frame must fall on the next step too.  The first camera
 * placed when none is, anchors the steps.  (A trigger a camera misses
 * without using a frame id shifts it until it is placed again: docs/plc.md,
 * "The line it assumes".)
 *
 * A part is decided when every camera's verdict for it is known: arrived,
 * or missing because the camera has moved past that step, because the
 * camera is down, or because capture + deadline_ms has passed.  Parts are
 * decided strictly in order; a verdict for a part already decided is too
 * late and counted (the part was decided without it, as missing). */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "plc/plc.h"

#define STEPS 8192    /* steps held: parts between the first station and their decision */
#define HELD 256      /* verdicts of an unplaced camera held while it is matched */
#define MAX_JUMP 1000 /* ids further ahead than this: the camera restarted */
#define OUT 1024      /* decided results not yet taken */
#define NONE INT64_MIN

/* What one camera said about one step. */
enum { S_NONE = 0, S_PASS, S_REJECT, S_UNINSPECTED, S_MISSING, S_DOWN };

typedef struct {
    int64_t step;     /* the step this slot holds; NONE: empty */
    uint64_t t_real;  /* earliest capture time of the step; 0: unknown */
    uint8_t st[MAA_PLC_MAX_CAMERAS];
} slot;

typedef struct {
    plc_msg m;
    uint64_t mono;   /* arrival */
    int64_t checked; /* steps up to this one were tried for a match; NONE */
    int64_t match;   /* the step it matched; NONE */
    bool refuted;    /* the next frame did not confirm that match */
} held;

typedef struct {
    const maa_plc_camera_config *cfg;
    bool placed;
    int64_t delta;          /* step = ext + delta */
    uint64_t last_id;       /* last frame id, as sent */
    int64_t last_ext;       /* ... extended through wraps */
    int64_t last_step;      /* latest step it gave a verdict for; NONE */
    bool have_seq;
    uint64_t last_seq;
    bool ever;              /* a message came since start */
    uint64_t last_msg_mono;
    bool camera_error;      /* its maad reports its camera failing */
    bool late_logged;       /* a too-late verdict logged since the last in time */
    int down;               /* why it is down (DOWN_*), as last logged */
    held held[HELD];        /* FIFO, oldest first */
    int nheld;
} cam;

struct plc_tracker {
    const maad_logger *lg;
    int ncams, max_offset;
    uint64_t deadline_ns, tolerance_ns, heartbeat_ns;
    cam cams[MAA_PLC_MAX_CAMERAS];
    slot *slots;
    int64_t next_part;      /* the next part to decide */
    int64_t top_step;       /* the latest step any placed camera reported; NONE */
    uint64_t top_t;         /* its capture time */
    uint64_t start_mono;
    plc_result out[OUT];
    unsigned out_head, out_n;
    plc_tracker_stats st;
};

int plc_tracker_create(const maa_plc_config *c, const maad_logger *lg, plc_tracker **out,
                       char *err, size_t errlen)
{
    if (c->ncameras < 1 || c->ncameras > MAA_PLC_MAX_CAMERAS) {
        snprintf(err, errlen, "%d cameras (1 to %d)", c->ncameras, MAA_PLC_MAX_CAMERAS);
        return MAA_ERR;
    }
    plc_tracker *t = calloc(1, sizeof *t);
    if (t)
        t->slots = malloc(STEPS * sizeof *t->slots);
    if (!t || !t->slots) {
        free(t);
        snprintf(err, errlen, "out of memory");
        return MAA_ERR;
    }
    t->lg = lg;
    t->ncams = c->ncameras;
    t->deadline_ns = (uint64_t)c->line.deadline_ms * 1000000u;
    t->tolerance_ns = (uint64_t)(c->line.sync_tolerance_ms * 1e6);
    t->heartbeat_ns = (uint64_t)c->line.heartbeat_timeout_ms * 1000000u;
    for (int k = 0; k < t->ncams; k++) {
        t->cams[k].cfg = &c->cameras[k];
        t->cams[k].last_step = NONE;
        t->cams[k].down = -1; /* unknown: the first health update logs it */
        if (c->cameras[k].offset > t->max_offset)
            t->max_offset = c->cameras[k].offset;
    }
    for (int i = 0; i < STEPS; i++)
        t->slots[i] = (slot){.step = NONE};
    t->top_step = NONE;
    t->start_mono = maad_mono_ns();
    *out = t;
    return MAA_OK;
}

void plc_tracker_free(plc_tracker *t)
{
    if (t)
        free(t->slots);
    free(t);
}

/* ---- frame ids -------------------------------------------------------------- */

/* b - a for frame ids: 16-bit GigE Vision block ids wrap from 65535 to 1
 * (0 is never sent), so the nearer way round is the difference; 64-bit
 * extended ids do not wrap. */
static int64_t id_diff(uint64_t a, uint64_t b)
{
    if (a > 65535 || b > 65535 || a == 0 || b == 0)
        return (int64_t)(b - a);
    int64_t fwd = b >= a ? (int64_t)(b - a) : (int64_t)(65535 - a + b);
    if (fwd <= 32767)
        return fwd;
    int64_t back = a >= b ? (int64_t)(a - b) : (int64_t)(65535 - b + a);
    return -back;
}

/* ---- steps ------------------------------------------------------------------ */

static slot *find(plc_tracker *t, int64_t step)
{
    slot *s = &t->slots[(uint64_t)step % STEPS];
    return s->step == step ? s : NULL;
}

static void decide_ready(plc_tracker *t, uint64_t now_real, uint64_t t_in, bool force);

/* The slot for step, claimed if need be.  A slot still holding an older
 * step some undecided part needs is freed by deciding those parts now, as
 * missing: the ring only runs out when a camera lags STEPS steps behind. */
static slot *claim(plc_tracker *t, int64_t step, uint64_t now_real, uint64_t now_mono)
{
    slot *s = &t->slots[(uint64_t)step % STEPS];
    if (s->step == step)
        return s;
    if (s->step != NONE && s->step >= t->next_part) {
        maad_log(t->lg, MAAD_LOG_WARNING,
                 "step %" PRId64 " needs the place of step %" PRId64
                 ": deciding parts up to it without the verdicts still missing",
                 step, s->step);
        while (s->step != NONE && s->step >= t->next_part && t->out_n < OUT)
            decide_ready(t, now_real, now_mono, true);
        if (s->step != NONE && s->step >= t->next_part)
            return NULL; /* results not taken: the caller stopped draining */
    }
    *s = (slot){.step = step};
    return s;
}

/* ---- cameras ---------------------------------------------------------------- */

static void unplace(plc_tracker *t, int k, const char *why)
{
    cam *c = &t->cams[k];
    if (c->placed)
        maad_log(t->lg, MAAD_LOG_WARNING, "camera %s: %s: placing it on the line again",
                 c->cfg->name, why);
    c->placed = false;
}

static bool any_placed(const plc_tracker *t)
{
    for (int k = 0; k < t->ncams; k++)
        if (t->cams[k].placed)
            return true;
    return false;
}

static void store(plc_tracker *t, int k, const plc_msg *m, int64_t step, uint64_t now_real,
                  uint64_t now_mono)
{
    cam *c = &t->cams[k];
    if (step > c->last_step)
        c->last_step = step;
    if (t->top_step == NONE) /* the first step of all: parts count from here */
        t->next_part = step - t->max_offset;
    if (step - c->cfg->offset < t->next_part) {
        /* Once per run of them: a maad catching up sends many. */
        t->st.too_late++;
        if (!c->late_logged)
            maad_log(t->lg, MAAD_LOG_WARNING,
                     "camera %s: frame %" PRIu64 " (part %" PRId64
                     ") came after its part was decided without it", c->cfg->name,
                     m->frame_id, step - c->cfg->offset);
        c->late_logged = true;
        return;
    }
    c->late_logged = false;
    slot *s = claim(t, step, now_real, now_mono);
    if (!s)
        return;
    s->st[k] = m->verdict == MAAD_PASS     ? S_PASS
               : m->verdict == MAAD_REJECT ? S_REJECT
                                           : S_UNINSPECTED;
    if (m->t_capture_ns && (!s->t_real || m->t_capture_ns < s->t_real))
        s->t_real = m->t_capture_ns;
    if (t->top_step == NONE || step > t->top_step) {
        t->top_step = step;
        t->top_t = s->t_real;
    }
}

/* A verdict with a frame id from a placed camera. */
static void place_verdict(plc_tracker *t, int k, const plc_msg *m, uint64_t now_real,
                          uint64_t now_mono)
{
    cam *c = &t->cams[k];
    int64_t d = id_diff(c->last_id, m->frame_id);
    if (d == 0) {
        maad_log(t->lg, MAAD_LOG_WARNING, "camera %s: frame %" PRIu64 " again: ignored",
                 c->cfg->name, m->frame_id);
        return;
    }
    c->last_ext += d;
    c->last_id = m->frame_id;
    store(t, k, m, c->last_ext + c->delta, now_real, now_mono);
}

/* The step whose capture time, from a placed camera, is nearest h's and
 * within the tolerance; NONE when there is none.  Only steps reported since
 * h was last tried are looked at, so a camera that matches nothing costs
 * little while it is held. */
static int64_t match_step(plc_tracker *t, held *h)
{
    if (h->match != NONE || h->refuted || t->top_step == NONE)
        return h->refuted ? NONE : h->match;
    int64_t from = t->top_step - STEPS + 1;
    if (h->checked != NONE && h->checked + 1 > from)
        from = h->checked + 1;
    int64_t best = NONE;
    uint64_t best_d = UINT64_MAX, tc = h->m.t_capture_ns;
    for (int64_t step = from; step <= t->top_step; step++) {
        const slot *s = find(t, step);
        if (!s || !s->t_real)
            continue;
        uint64_t d = s->t_real > tc ? s->t_real - tc : tc - s->t_real;
        if (d <= t->tolerance_ns && d < best_d)
            best = step, best_d = d;
    }
    h->checked = t->top_step;
    return h->match = best;
}

/* Whether the held verdicts after h (frames of the same camera) confirm
 * its match: 1 yes, 0 no (refuted), -1 not yet known.  One frame can match
 * the wrong step (a camera's first frame may come off the trigger, a step
 * away from its neighbours); the next one tells. */
static int confirmed(plc_tracker *t, const cam *c, int i)
{
    const held *h = &c->held[i];
    for (int j = i + 1; j < c->nheld; j++) {
        int64_t d = id_diff(h->m.frame_id, c->held[j].m.frame_id);
        if (d <= 0)
            continue;
        const slot *s = find(t, h->match + d);
        if (!s || !s->t_real)
            return -1;
        uint64_t tc = c->held[j].m.t_capture_ns;
        uint64_t diff = s->t_real > tc ? s->t_real - tc : tc - s->t_real;
        return diff <= t->tolerance_ns;
    }
    return -1;
}

/* Places camera k by its held verdicts, then feeds them in order. */
static void try_place(plc_tracker *t, int k, uint64_t now_real, uint64_t now_mono)
{
    cam *c = &t->cams[k];
    if (c->placed || c->nheld == 0)
        return;
    int at = -1;
    int64_t step = NONE;
    if (!any_placed(t)) {
        /* Nothing to match against: this camera anchors the steps, after
         * the last one known so that part numbers never go back. */
        at = 0;
        step = t->top_step == NONE ? t->max_offset : t->top_step + 1;
    } else {
        for (int i = 0; i < c->nheld && at < 0; i++) {
            if ((step = match_step(t, &c->held[i])) == NONE)
                continue;
            int ok = confirmed(t, c, i);
            if (ok < 0)
                return; /* wait for the next frame */
            if (ok)
                at = i;
            else
                c->held[i].refuted = true;
        }
    }
    if (at < 0)
        return;
    const plc_msg *a = &c->held[at].m;
    c->placed = true;
    c->last_id = a->frame_id;
    c->last_ext = 0;
    c->delta = step;
    t->st.resyncs++;
    maad_log(t->lg, MAAD_LOG_NOTICE, "camera %s: placed on the line: frame %" PRIu64
             " is step %" PRId64 " (part %" PRId64 ")", c->cfg->name, a->frame_id, step,
             step - c->cfg->offset);
    /* Held verdicts before the matched one lie before it on the line. */
    int n = c->nheld;
    c->nheld = 0;
    for (int i = 0; i < n; i++) {
        const plc_msg *m = &c->held[i].m;
        int64_t d = id_diff(a->frame_id, m->frame_id);
        if (i < at && d >= 0) {
            t->st.unmatched++;
            continue;
        }
        if (i <= at)
            store(t, k, m, step + d, now_real, now_mono);
        else
            place_verdict(t, k, m, now_real, now_mono);
    }
}

static void hold(plc_tracker *t, int k, const plc_msg *m, uint64_t now_mono)
{
    cam *c = &t->cams[k];
    if (c->nheld == HELD) {
        memmove(c->held, c->held + 1, (HELD - 1) * sizeof *c->held);
        c->nheld--;
        t->st.unmatched++;
    }
    c->held[c->nheld++] = (held){*m, now_mono, NONE, NONE, false};
}

/* Held verdicts that found no step in a deadline never will: the parts
 * they belong to are decided without them. */
static void expire_held(plc_tracker *t, int k, uint64_t now_mono)
{
    cam *c = &t->cams[k];
    int drop = 0;
    while (drop < c->nheld && now_mono - c->held[drop].mono > t->deadline_ns)
        drop++;
    if (!drop)
        return;
    t->st.unmatched += (uint64_t)drop;
    maad_log(t->lg, MAAD_LOG_WARNING,
             "camera %s: %d verdicts matched no step of the other cameras within %.3g ms "
             "(capture times too far apart: same trigger? sync_tolerance_ms?)",
             c->cfg->name, drop, (double)t->tolerance_ns / 1e6);
    memmove(c->held, c->held + drop, (size_t)(c->nheld - drop) * sizeof *c->held);
    c->nheld -= drop;
}

/* ---- health ----------------------------------------------------------------- */

enum { UP = 0, DOWN_SILENT, DOWN_CAMERA, DOWN_UNPLACED };

/* When camera c was last heard from (the bridge's start, before its first
 * message). */
static uint64_t last_heard(const plc_tracker *t, const cam *c)
{
    return c->ever ? c->last_msg_mono : t->start_mono;
}

static int down_reason(const plc_tracker *t, const cam *c, uint64_t now_mono)
{
    uint64_t since = last_heard(t, c);
    if (now_mono > since && now_mono - since > t->heartbeat_ns)
        return DOWN_SILENT;
    if (c->camera_error)
        return DOWN_CAMERA;
    return c->placed ? UP : DOWN_UNPLACED;
}

static void update_health(plc_tracker *t, uint64_t now_mono)
{
    for (int k = 0; k < t->ncams; k++) {
        cam *c = &t->cams[k];
        int why = down_reason(t, c, now_mono);
        if (why == c->down)
            continue;
        uint64_t since = last_heard(t, c);
        if (why == DOWN_SILENT)
            maad_log(t->lg, MAAD_LOG_WARNING, "camera %s: down: no message for %" PRIu64
                     " ms%s (maad stopped, or the network to it is down)", c->cfg->name,
                     (now_mono - since) / 1000000u, c->ever ? "" : " since the bridge started");
        else if (why == DOWN_CAMERA)
            maad_log(t->lg, MAAD_LOG_WARNING, "camera %s: down: its maad reports a camera error",
                     c->cfg->name);
        else if (why == DOWN_UNPLACED)
            maad_log(t->lg, c->ever ? MAAD_LOG_WARNING : MAAD_LOG_INFO,
                     "camera %s: down: not placed on the line yet", c->cfg->name);
        else
            maad_log(t->lg, MAAD_LOG_NOTICE, "camera %s: up", c->cfg->name);
        c->down = why;
    }
}

uint16_t plc_tracker_down(const plc_tracker *t)
{
    uint16_t m = 0;
    for (int k = 0; k < t->ncams; k++)
        if (t->cams[k].down != UP)
            m |= (uint16_t)(1u << k);
    return m;
}

/* ---- decisions -------------------------------------------------------------- */

/* What camera k says about part p now: S_NONE while it may still come. */
static int resolve(plc_tracker *t, int k, int64_t p, uint64_t now_real, bool force)
{
    cam *c = &t->cams[k];
    int64_t step = p + c->cfg->offset;
    slot *s = find(t, step);
    if (s && s->st[k] != S_NONE)
        return s->st[k];
    if (c->placed && c->last_step > step)
        return S_MISSING; /* ids run in order: that frame was lost */
    /* A silent maad or a failing camera sends nothing more for this step:
     * missing now.  One sending but not yet placed may place the verdict
     * in a moment (the bridge starting, a maad restarting): the deadline. */
    bool exists = t->top_step != NONE && t->top_step >= step;
    if (exists && (c->down == DOWN_SILENT || c->down == DOWN_CAMERA))
        return S_DOWN;
    uint64_t t_ref = s && s->t_real ? s->t_real : t->top_t;
    if (exists && t_ref && now_real > t_ref + t->deadline_ns)
        return S_MISSING;
    return force ? S_MISSING : S_NONE;
}

static void decide_ready(plc_tracker *t, uint64_t now_real, uint64_t t_in, bool force)
{
    while (t->top_step != NONE && t->out_n < OUT) {
        int64_t p = t->next_part;
        int st[MAA_PLC_MAX_CAMERAS];
        for (int k = 0; k < t->ncams; k++)
            if ((st[k] = resolve(t, k, p, now_real, force)) == S_NONE)
                return;
        plc_result r = {.part = (uint32_t)p, .t_in_mono_ns = t_in};
        for (int k = 0; k < t->ncams; k++) {
            uint16_t bit = (uint16_t)(1u << k);
            switch (st[k]) {
            case S_REJECT: r.rejected |= bit; r.reasons |= PLC_REASON_REJECT; break;
            case S_UNINSPECTED: r.uninspected |= bit; r.reasons |= PLC_REASON_UNINSPECTED; break;
            case S_DOWN: r.down |= bit; r.reasons |= PLC_REASON_DOWN; /* fall through */
            case S_MISSING:
                r.missing |= bit;
                r.reasons |= PLC_REASON_MISSING;
                t->st.missing++;
                break;
            }
            if (st[k] != S_PASS)
                r.cameras |= bit;
        }
        const slot *s = find(t, p);
        r.t_capture_ns = s ? s->t_real : 0;
        r.reject = r.cameras != 0;
        t->st.parts++;
        if (r.reject)
            t->st.rejected++;
        else
            t->st.passed++;
        t->out[(t->out_head + t->out_n++) % OUT] = r;
        t->next_part++;
        force = false;
    }
}

/* ---- entry points ----------------------------------------------------------- */

void plc_tracker_message(plc_tracker *t, int k, const plc_msg *m, uint64_t now_real,
                         uint64_t now_mono)
{
    cam *c = &t->cams[k];
    c->ever = true;
    c->last_msg_mono = now_mono;
    if (m->kind == PLC_MSG_HEARTBEAT) {
        /* seq_next below what came: maad restarted before its first verdict. */
        if (c->have_seq && m->seq <= c->last_seq) {
            unplace(t, k, "its maad restarted (seq went back)");
            c->have_seq = false;
        }
    } else {
        if (c->have_seq && m->seq <= c->last_seq)
            unplace(t, k, "its maad restarted (seq went back)");
        c->have_seq = true;
        c->last_seq = m->seq;
        if (!m->has_frame_id) {
            /* Frames whose ids were lost (ring overflow) leave holes the
             * next id shows; a camera error means the camera is failing
             * until a frame comes again. */
            c->camera_error |= m->camera_error;
        } else {
            c->camera_error = false;
            if (c->placed) {
                int64_t d = id_diff(c->last_id, m->frame_id);
                if (d < 0)
                    unplace(t, k, "its frame ids went back");
                else if (d > MAX_JUMP)
                    unplace(t, k, "its frame ids jumped ahead");
            }
            if (c->placed)
                place_verdict(t, k, m, now_real, now_mono);
            else
                hold(t, k, m, now_mono);
        }
    }
    /* This camera's held verdicts, and others' held against steps that may
     * have come now. */
    for (int j = 0; j < t->ncams; j++)
        try_place(t, j, now_real, now_mono);
    update_health(t, now_mono);
    decide_ready(t, now_real, now_mono, false);
}

void plc_tracker_tick(plc_tracker *t, uint64_t now_real, uint64_t now_mono)
{
    for (int k = 0; k < t->ncams; k++)
        expire_held(t, k, now_mono);
    update_health(t, now_mono);
    decide_ready(t, now_real, now_mono, false);
}

bool plc_tracker_flush(plc_tracker *t, uint64_t now_real, uint64_t now_mono)
{
    while (t->top_step != NONE && t->next_part <= t->top_step &&
           t->out_n < OUT)
        decide_ready(t, now_real, now_mono, true);
    return t->out_n > 0;
}

bool plc_tracker_next(plc_tracker *t, plc_result *out)
{
    if (!t->out_n)
        return false;
    *out = t->out[t->out_head];
    t->out_head = (t->out_head + 1) % OUT;
    t->out_n--;
    return true;
}

uint64_t plc_tracker_wakeup(const plc_tracker *t, uint64_t now_real, uint64_t now_mono)
{
    /* Health is judged to a few milliseconds, so the coil drops well within
     * a second; a part's deadline the same. */
    uint64_t w = now_mono + 100000000u;
    for (int k = 0; k < t->ncams; k++) {
        const cam *c = &t->cams[k];
        uint64_t since = last_heard(t, c);
        if (c->down == UP && since + t->heartbeat_ns < w)
            w = since + t->heartbeat_ns;
        if (c->nheld && c->held[0].mono + t->deadline_ns < w)
            w = c->held[0].mono + t->deadline_ns;
    }
    if (t->top_step != NONE && t->top_step >= t->next_part) {
        const slot *s = &t->slots[(uint64_t)t->next_part % STEPS];
        uint64_t t_ref = s->step == t->next_part && s->t_real ? s->t_real : t->top_t;
        if (t_ref) {
            uint64_t due = t_ref + t->deadline_ns;
            uint64_t at = due > now_real ? now_mono + (due - now_real) : now_mono;
            if (at < w)
                w = at;
        }
    }
    return w < now_mono ? now_mono : w;
}

void plc_tracker_get_stats(const plc_tracker *t, plc_tracker_stats *s) { *s = t->st; }
