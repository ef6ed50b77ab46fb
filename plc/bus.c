/* bus.c — maa-plc's Modbus TCP client: one thread that owns the connection
 * to the PLC and hands it each decided part through a mailbox of holding
 * registers, keeps the health word and the healthy coil up to date, and
 * queues results while the PLC does not take them.
 *
 * The handshake (register map in docs/plc.md; R = plc.mailbox_register):
 *
 *   bridge: FC16 R+0..R+5 = counter, part high, part low, decision, reasons,
 *           cameras                          (one request: never half written)
 *   PLC:    takes the result, then copies R+0 to R+6
 *   bridge: FC03 R+6, every ACK_POLL_NS, until it equals the counter; only
 *           then the next result goes out, so the PLC never loses one it
 *           has not acknowledged.
 *
 * The counter runs 1, 2, ..., 65535, 1, ...: 0 is never written, so R+0 = 0
 * means "nothing since the bridge started" to the PLC.  On each
 * (re)connection the bridge reads R+0..R+9 and continues the counter from
 * R+0 (a restarted bridge does not reuse the counter of a result the PLC
 * has just taken), and writes nothing before R+6 equals R+0.
 *
 * A write whose response never came (the connection broke, or timed out) may
 * or may not have reached the PLC.  After reconnecting: when R+0 still holds
 * that result's counter, the write landed and the bridge waits for its
 * acknowledgement as usual; otherwise the result is written again with the
 * next counter.  So a PLC whose registers were reset (or overwritten by
 * someone else) after it had taken a result can see that part twice, with
 * the same part number: the PLC should act only once per part number.
 *
 * Time: the loop's timers and latencies are CLOCK_MONOTONIC; the results'
 * capture times, and so the late rule, are CLOCK_REALTIME.  The thread holds
 * the lock only to move results and counters in and out, never across a
 * Modbus request, so plc_bus_push never waits on the network. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <modbus.h>

#include "plc/plc.h"

#define MS ((uint64_t)1000000)
/* A PLC acknowledges within a scan cycle or two; polling every half
 * millisecond keeps a burst of results flowing at the PLC's pace. */
#define ACK_POLL_NS (MS / 2)
/* ...but a PLC that has not acknowledged for ack_timeout_ms is asked less
 * often, not 2000 times a second for as long as it is stuck. */
#define ACK_SLOW_POLL_NS (10 * MS)
/* The same complaint (unreachable, an exception) is repeated at most this
 * often while it lasts: an unplugged PLC must not flood the journal. */
#define COMPLAIN_REPEAT_NS (10000 * MS)
/* maa-plc's loop tells the bus the health at least every 100 ms; silent
 * for this long, it has hung: the health word stops and the healthy coil
 * drops, so that the PLC sees a blind inspection, not a counting one. */
#define LOOP_SILENT_NS (1000 * MS)
/* Latency histogram: 10 us buckets up to 1 s; quantiles beyond it read as
 * the maximum. */
#define HIST_BUCKET_NS ((uint64_t)10000)
#define HIST_BUCKETS 100000
/* With nothing due, the thread still wakes this often: a step of the
 * real-time clock moves the pulses' times. */
#define IDLE_WAKE_NS (1000 * MS)

/* The operations whose failures are logged, each with its own limiter. */
enum {
    OP_CONNECT,    /* connecting and the first read: "unreachable" */
    OP_LOST,       /* a request failed on an established connection */
    OP_MAILBOX,    /* exception replies, per request kind */
    OP_ACK,
    OP_HEALTH,
    OP_HEALTHY,
    OP_REJECT,
    OP_COUNT
};

/* One reject pulse: the coil set from on to off (CLOCK_REALTIME).  Pulses
 * that overlap are merged into one window covering several parts. */
typedef struct {
    uint64_t on, off;
    uint32_t first, last;          /* the parts it is for */
    uint32_t n;                    /* how many */
    bool given;                    /* the coil was set for it */
} pulse;

typedef struct {
    char why[1024];   /* the reason last logged; "" none yet */
    uint64_t at;      /* when (mono) */
} complaint;

struct plc_bus {
    maa_plc_config cfg;
    maad_logger log;
    char plc[MAAD_STR_SIZE + 16];  /* "PLC host:port", every message's start */
    modbus_t *mb;                  /* NULL in dry run */
    pthread_t thread;
    bool joined;

    /* Shared with the callers, under mu. */
    pthread_mutex_t mu;
    pthread_cond_t cv;             /* CLOCK_MONOTONIC: work queued, stop */
    plc_result *q;                 /* ring of qcap */
    size_t qcap, qhead, qlen;
    bool inflight;                 /* the thread holds a result not yet acknowledged */
    bool healthy;                  /* what the healthy coil should read */
    uint64_t alive_at;             /* last plc_bus_set_healthy call (mono) */
    bool silent_logged;            /* the loop's silence was logged */
    bool stopping;
    uint64_t drain_until;          /* mono */
    uint64_t written, late, reconnects;
    pulse *pulses;                 /* pending windows by time; pcap of them */
    size_t pcap, plen;
    uint64_t pulses_given, pulses_late;
    bool connected;
    uint32_t *hist;                /* HIST_BUCKETS latency buckets */
    uint64_t hist_n, lat_max_ns;

    /* The thread's own. */
    bool up;                       /* connected */
    bool ever_up;
    uint64_t next_connect, backoff_ms;
    uint16_t ctr;                  /* the counter R+0 holds (ours or found) */
    bool waiting_ack;              /* nothing written before R+6 == ctr */
    uint64_t ack_since;            /* mono: since when R+6 != ctr */
    bool ack_warned;
    uint64_t next_poll;
    bool have_pending;             /* pending: the result being delivered */
    plc_result pending;
    bool pend_written;             /* its write was sent (maybe not answered) */
    uint16_t pend_ctr;             /* ... with this counter */
    bool pend_timed;               /* its latency is recorded */
    uint64_t mailbox_retry_at;
    uint16_t health;               /* R+7 */
    uint64_t next_health;
    int healthy_coil;              /* last value written; -1 unknown */
    uint64_t healthy_retry_at;
    int reject_coil;               /* last value written; -1 unknown */
    uint64_t pulse_retry_at;
    complaint complaints[OP_COUNT];
};

static uint16_t next_counter(uint16_t c)
{
    return c == UINT16_MAX ? 1 : (uint16_t)(c + 1);
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

/* Exception replies say the PLC refused one request: the connection is
 * sound.  Any other failure (timeout, reset, a reply that does not match)
 * leaves the stream in an unknown state, so the connection is dropped. */
static bool is_exception(int e)
{
    return e >= EMBXILFUN && e <= EMBXGTAR;
}

/* Logs msg unless the same complaint (why) was logged less than
 * COMPLAIN_REPEAT_NS ago: why leaves out what changes at every retry, such
 * as the backoff. */
static void complain(plc_bus *b, int op, maad_log_level l, const char *why, const char *msg)
{
    complaint *c = &b->complaints[op];
    uint64_t now = maad_mono_ns();
    if (c->why[0] && strcmp(c->why, why) == 0 && now - c->at < COMPLAIN_REPEAT_NS)
        return;
    snprintf(c->why, sizeof c->why, "%s", why);
    c->at = now;
    maad_log(&b->log, l, "%s", msg);
}

static const char *decision_name(const plc_result *r)
{
    return r->reject ? "reject" : "pass";
}

static void set_connected(plc_bus *b, bool up)
{
    b->up = up;
    pthread_mutex_lock(&b->mu);
    b->connected = up;
    if (up && b->ever_up)
        b->reconnects++;
    pthread_mutex_unlock(&b->mu);
    if (up)
        b->ever_up = true;
}

/* The response to the mailbox write came at t: verdict-in to written. */
static void record_latency(plc_bus *b, const plc_result *r, uint64_t t)
{
    if (!r->t_in_mono_ns || t < r->t_in_mono_ns)
        return;
    uint64_t ns = t - r->t_in_mono_ns, k = ns / HIST_BUCKET_NS;
    pthread_mutex_lock(&b->mu);
    if (k < HIST_BUCKETS)
        b->hist[k]++;
    b->hist_n++;
    if (ns > b->lat_max_ns)
        b->lat_max_ns = ns;
    pthread_mutex_unlock(&b->mu);
}

/* The q-quantile in ms: the upper edge of its bucket (never above the
 * maximum seen).  Under mu. */
static double quantile_ms(const plc_bus *b, double q)
{
    if (!b->hist_n)
        return 0;
    uint64_t rank = (uint64_t)ceil(q * (double)b->hist_n), seen = 0;
    for (size_t k = 0; k < HIST_BUCKETS; k++) {
        seen += b->hist[k];
        if (seen >= rank)
            return (double)min_u64((k + 1) * HIST_BUCKET_NS, b->lat_max_ns) / 1e6;
    }
    return (double)b->lat_max_ns / 1e6;
}

/* ---- the connection ------------------------------------------------------ */

/* Why modbus_connect failed, in words.  libmodbus reports a name that does
 * not resolve as ECONNREFUSED and a connect timeout as whatever errno
 * select left (EINPROGRESS), so both are told apart here. */
static void connect_reason(plc_bus *b, int e, char *why, size_t n)
{
    if (e == EINPROGRESS || e == ETIMEDOUT || e == EINTR) {
        snprintf(why, n, "no answer within %d ms (plc.response_timeout_ms)",
                 b->cfg.plc.response_timeout_ms);
        return;
    }
    if (e == ECONNREFUSED) {
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
        int rc = getaddrinfo(b->cfg.plc.address, NULL, &hints, &ai);
        if (rc != 0) {
            snprintf(why, n, "%s", rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
            return;
        }
        freeaddrinfo(ai);
    }
    snprintf(why, n, "%s", modbus_strerror(e));
}

/* A request failed with something other than an exception: drop the
 * connection and reconnect after the shortest backoff. */
static void lose(plc_bus *b, const char *what, int e)
{
    char msg[1024];
    snprintf(msg, sizeof msg, "%s: %s: %s; reconnecting", b->plc, what, modbus_strerror(e));
    complain(b, OP_LOST, MAAD_LOG_WARNING, msg, msg);
    modbus_close(b->mb);
    set_connected(b, false);
    b->backoff_ms = (uint64_t)b->cfg.plc.reconnect_min_ms;
    b->next_connect = maad_mono_ns() + b->backoff_ms * MS;
}

/* An exception reply to one request: logged (limited); the caller retries
 * the request later on the same connection. */
static void refused(plc_bus *b, int op, const char *what, int e)
{
    char msg[1024];
    snprintf(msg, sizeof msg, "%s: %s: %s", b->plc, what, modbus_strerror(e));
    complain(b, op, MAAD_LOG_ERR, msg, msg);
}

/* The pending result is acknowledged: it is the PLC's now. */
static void delivered(plc_bus *b, uint64_t now)
{
    if (b->ack_warned)
        maad_log(&b->log, MAAD_LOG_NOTICE, "%s: part %" PRIu32 " acknowledged after %" PRIu64 " ms",
                 b->plc, b->pending.part, (now - b->ack_since) / MS);
    b->have_pending = false;
    pthread_mutex_lock(&b->mu);
    b->written++;
    b->inflight = false;
    pthread_mutex_unlock(&b->mu);
}

/* R+6 now equals ctr: the mailbox is free again. */
static void acknowledged(plc_bus *b, uint64_t now)
{
    b->waiting_ack = false;
    if (b->have_pending && b->pend_written && b->pend_ctr == b->ctr)
        delivered(b, now);
    b->ack_warned = false;
}

static void try_connect(plc_bus *b, uint64_t now)
{
    const int R = b->cfg.plc.mailbox_register;
    char why[384];
    uint16_t regs[10];
    if (modbus_connect(b->mb) == -1) {
        connect_reason(b, errno, why, sizeof why);
    } else if (modbus_read_registers(b->mb, R, 10, regs) != 10) {
        snprintf(why, sizeof why, "reading the mailbox (registers %d..%d): %s", R, R + 9,
                 modbus_strerror(errno));
        modbus_close(b->mb);
    } else {
        set_connected(b, true);
        maad_log(&b->log, MAAD_LOG_NOTICE, "%s: connected", b->plc);
        b->backoff_ms = (uint64_t)b->cfg.plc.reconnect_min_ms;
        b->ctr = regs[0];
        b->health = regs[7];
        /* Our last write did not stand in the mailbox: write it again. */
        if (b->have_pending && b->pend_written && b->pend_ctr != b->ctr)
            b->pend_written = false;
        bool ours = b->have_pending && b->pend_written;
        /* 0: nothing was ever written, there is nothing to wait for. */
        b->waiting_ack = b->ctr != 0 && regs[6] != b->ctr;
        if (!b->waiting_ack)
            acknowledged(b, now);
        else if (!ours) {
            b->ack_since = now;
            b->ack_warned = false;
        }
        b->next_poll = b->mailbox_retry_at = b->next_health = b->pulse_retry_at = now;
        /* Whatever the coils read, they are written again. */
        b->healthy_coil = b->reject_coil = -1;
        return;
    }
    char msg[1024];
    snprintf(msg, sizeof msg, "%s: unreachable: %s; retrying in %" PRIu64 " ms", b->plc, why,
             b->backoff_ms);
    complain(b, OP_CONNECT, MAAD_LOG_WARNING, why, msg);
    b->next_connect = now + b->backoff_ms * MS;
    b->backoff_ms = min_u64(b->backoff_ms * 2, (uint64_t)b->cfg.plc.reconnect_max_ms);
}

/* ---- the mailbox --------------------------------------------------------- */

static bool late_now(const plc_bus *b, const plc_result *r, uint64_t *age_ms)
{
    if (b->cfg.plc.late_ms <= 0 || !r->t_capture_ns)
        return false;
    uint64_t real = maad_now_ns();
    if (real <= r->t_capture_ns)
        return false;
    *age_ms = (real - r->t_capture_ns) / MS;
    return real - r->t_capture_ns > (uint64_t)b->cfg.plc.late_ms * MS;
}

/* Takes the next queued result as pending; false when none. */
static bool take(plc_bus *b)
{
    pthread_mutex_lock(&b->mu);
    bool any = b->qlen > 0;
    if (any) {
        b->pending = b->q[b->qhead];
        b->qhead = (b->qhead + 1) % b->qcap;
        b->qlen--;
        b->inflight = true;
    }
    pthread_mutex_unlock(&b->mu);
    if (any) {
        b->have_pending = true;
        b->pend_written = b->pend_timed = false;
    }
    return any;
}

/* Writes the pending result (taking one from the queue first if needed). */
static void write_mailbox(plc_bus *b)
{
    if (!b->have_pending && !take(b))
        return;
    const plc_result *r = &b->pending;
    uint64_t age_ms;
    if (late_now(b, r, &age_ms)) {
        maad_log(&b->log, MAAD_LOG_WARNING,
                 "late: part %" PRIu32 " (%s): captured %" PRIu64 " ms ago, more than plc.late_ms %d",
                 r->part, decision_name(r), age_ms, b->cfg.plc.late_ms);
        b->have_pending = false;
        pthread_mutex_lock(&b->mu);
        b->late++;
        b->inflight = false;
        pthread_mutex_unlock(&b->mu);
        return;
    }
    const int R = b->cfg.plc.mailbox_register;
    uint16_t c = next_counter(b->ctr);
    uint16_t regs[6] = {c, (uint16_t)(r->part >> 16), (uint16_t)r->part, r->reject ? 2 : 1,
                        r->reasons, r->cameras};
    int rc = modbus_write_registers(b->mb, R, 6, regs);
    int e = errno;
    uint64_t t = maad_mono_ns();
    char what[64] = ""; /* named only when something went wrong */
    if (rc != 6)
        snprintf(what, sizeof what, "writing the mailbox (registers %d..%d)", R, R + 5);
    if (rc == 6) {
        if (!b->pend_timed)
            record_latency(b, r, t);
        b->pend_timed = true;
    } else if (is_exception(e)) {
        /* The PLC refused it: the mailbox still holds the previous result. */
        refused(b, OP_MAILBOX, what, e);
        b->mailbox_retry_at = t + (uint64_t)b->cfg.plc.reconnect_min_ms * MS;
        return;
    }
    /* Written, or maybe written (no answer): the reconnection tells. */
    b->ctr = b->pend_ctr = c;
    b->pend_written = true;
    b->waiting_ack = true;
    b->ack_since = t;
    b->ack_warned = false;
    b->next_poll = t + ACK_POLL_NS;
    if (rc != 6)
        lose(b, what, e);
}

static void poll_ack(plc_bus *b, uint64_t now)
{
    const int R = b->cfg.plc.mailbox_register;
    uint16_t v;
    if (modbus_read_registers(b->mb, R + 6, 1, &v) != 1) {
        int e = errno;
        char what[64];
        snprintf(what, sizeof what, "reading the acknowledgement (register %d)", R + 6);
        if (!is_exception(e)) {
            lose(b, what, e);
            return;
        }
        refused(b, OP_ACK, what, e);
        b->next_poll = now + (uint64_t)b->cfg.plc.reconnect_min_ms * MS;
        return;
    }
    now = maad_mono_ns();
    if (v == b->ctr) {
        acknowledged(b, now);
        return;
    }
    bool slow = now - b->ack_since >= (uint64_t)b->cfg.plc.ack_timeout_ms * MS;
    b->next_poll = now + (slow ? ACK_SLOW_POLL_NS : ACK_POLL_NS);
    if (slow && !b->ack_warned) {
        b->ack_warned = true;
        pthread_mutex_lock(&b->mu);
        size_t waiting = b->qlen;
        pthread_mutex_unlock(&b->mu);
        if (b->have_pending && b->pend_written && b->pend_ctr == b->ctr)
            maad_log(&b->log, MAAD_LOG_WARNING,
                     "%s: no acknowledgement of part %" PRIu32 " (counter %u, register %d reads %u) "
                     "after %d ms (plc.ack_timeout_ms); %zu more waiting",
                     b->plc, b->pending.part, b->ctr, R + 6, v, b->cfg.plc.ack_timeout_ms, waiting);
        else
            maad_log(&b->log, MAAD_LOG_WARNING,
                     "%s: no acknowledgement of counter %u found at connection (register %d reads %u) "
                     "after %d ms (plc.ack_timeout_ms); %zu waiting",
                     b->plc, b->ctr, R + 6, v, b->cfg.plc.ack_timeout_ms,
                     waiting + (b->have_pending ? 1 : 0));
    }
}

/* ---- health -------------------------------------------------------------- */

/* Whether maa-plc's loop has gone silent (LOOP_SILENT_NS).  Under mu. */
static bool loop_silent(const plc_bus *b, uint64_t now)
{
    return now > b->alive_at && now - b->alive_at > LOOP_SILENT_NS;
}

/* What the healthy coil should read now.  Under mu. */
static bool coil_wanted(const plc_bus *b, uint64_t now)
{
    return b->healthy && !loop_silent(b, now);
}

static void write_health(plc_bus *b, uint64_t now)
{
    const int R = b->cfg.plc.mailbox_register;
    pthread_mutex_lock(&b->mu);
    uint64_t queued = b->qlen + (b->inflight ? 1 : 0), late = b->late;
    bool silent = loop_silent(b, now);
    pthread_mutex_unlock(&b->mu);
    if (silent && !b->silent_logged)
        maad_log(&b->log, MAAD_LOG_ERR, "the decision loop has been silent for over %d ms: "
                 "health word held, healthy coil cleared", (int)(LOOP_SILENT_NS / MS));
    else if (!silent && b->silent_logged)
        maad_log(&b->log, MAAD_LOG_NOTICE, "the decision loop is back: health word counting");
    b->silent_logged = silent;
    uint16_t regs[3] = {(uint16_t)(b->health + !silent), (uint16_t)min_u64(queued, UINT16_MAX),
                        (uint16_t)late};
    uint64_t period = (uint64_t)b->cfg.plc.health_period_ms * MS;
    /* A late wake-up does not make up for lost periods with a burst. */
    b->next_health = b->next_health + period > now ? b->next_health + period : now + period;
    if (modbus_write_registers(b->mb, R + 7, 3, regs) == 3) {
        b->health = regs[0];
    } else {
        int e = errno;
        char what[64];
        snprintf(what, sizeof what, "writing the health word (registers %d..%d)", R + 7, R + 9);
        if (!is_exception(e)) {
            lose(b, what, e);
            return;
        }
        refused(b, OP_HEALTH, what, e);
    }
    /* The coil is repeated every period: a PLC that restarted learns it. */
    b->healthy_coil = -1;
    b->healthy_retry_at = now;
}

static void write_healthy(plc_bus *b, bool want, uint64_t now)
{
    if (modbus_write_bit(b->mb, b->cfg.plc.healthy_coil, want) == 1) {
        b->healthy_coil = want;
        return;
    }
    int e = errno;
    char what[64];
    snprintf(what, sizeof what, "writing the healthy coil %d", b->cfg.plc.healthy_coil);
    if (!is_exception(e)) {
        lose(b, what, e);
        return;
    }
    refused(b, OP_HEALTHY, what, e);
    b->healthy_retry_at = now + (uint64_t)b->cfg.plc.reconnect_min_ms * MS;
}

/* ---- reject pulse --------------------------------------------------------- */

static bool pulses_on(const plc_bus *b)
{
    return b->cfg.plc.pulse_delay_ms > 0 && !b->cfg.plc.dry_run;
}

static void log_pulse(plc_bus *b, const pulse *w, const char *why)
{
    if (w->n == 1)
        maad_log(&b->log, MAAD_LOG_WARNING, "reject pulse for part %" PRIu32 " not given: %s",
                 w->first, why);
    else
        maad_log(&b->log, MAAD_LOG_WARNING,
                 "reject pulse for parts %" PRIu32 "..%" PRIu32 " (%" PRIu32 ") not given: %s",
                 w->first, w->last, w->n, why);
}

/* Adds r's pulse to the windows, merged with those it overlaps.  Under mu.
 * NULL when scheduled, else why not. */
static const char *schedule_pulse(plc_bus *b, const plc_result *r, uint64_t real, char *why,
                                  size_t n)
{
    if (!r->t_capture_ns)
        return "its capture time is unknown";
    pulse x = {.on = r->t_capture_ns + (uint64_t)b->cfg.plc.pulse_delay_ms * MS,
               .first = r->part, .last = r->part, .n = 1};
    x.off = x.on + (uint64_t)b->cfg.plc.pulse_width_ms * MS;
    if (real >= x.on) {
        snprintf(why, n, "due %" PRIu64 " ms before the result came (plc.pulse_delay_ms %d)",
                 (real - x.on) / MS, b->cfg.plc.pulse_delay_ms);
        return why;
    }
    /* Parts come in order, so the new window is nearly always the last;
     * an open window starts before now, so nothing goes in front of it. */
    size_t i = b->plen;
    while (i > 0 && b->pulses[i - 1].on > x.on)
        i--;
    if (i > 0 && b->pulses[i - 1].off >= x.on) {
        pulse *w = &b->pulses[--i];
        w->off = x.off > w->off ? x.off : w->off;
        w->first = x.first < w->first ? x.first : w->first;
        w->last = x.last > w->last ? x.last : w->last;
        w->n++;
    } else {
        if (b->plen == b->pcap) {
            snprintf(why, n, "%zu pulses already pending (plc.queue)", b->pcap);
            return why;
        }
        memmove(&b->pulses[i + 1], &b->pulses[i], (b->plen - i) * sizeof *b->pulses);
        b->pulses[i] = x;
        b->plen++;
    }
    /* The window may now reach the ones after it. */
    pulse *w = &b->pulses[i];
    while (i + 1 < b->plen && b->pulses[i + 1].on <= w->off) {
        pulse *v = &b->pulses[i + 1];
        w->off = v->off > w->off ? v->off : w->off;
        w->first = v->first < w->first ? v->first : w->first;
        w->last = v->last > w->last ? v->last : w->last;
        w->n += v->n;
        memmove(v, v + 1, (b->plen - i - 2) * sizeof *b->pulses);
        b->plen--;
    }
    return NULL;
}

/* Removes the windows that ended by real, counting each given or late
 * (coil never set: the PLC was away or refused). */
static void finish_pulses(plc_bus *b, uint64_t real)
{
    for (;;) {
        pthread_mutex_lock(&b->mu);
        bool done = b->plen > 0 && b->pulses[0].off <= real;
        pulse w = done ? b->pulses[0] : (pulse){0};
        if (done) {
            memmove(&b->pulses[0], &b->pulses[1], (b->plen - 1) * sizeof *b->pulses);
            b->plen--;
            if (w.given)
                b->pulses_given += w.n;
            else
                b->pulses_late += w.n;
        }
        pthread_mutex_unlock(&b->mu);
        if (!done)
            return;
        if (!w.given) {
            char why[MAAD_STR_SIZE + 64];
            snprintf(why, sizeof why, "the %s was not reachable in time", b->plc);
            log_pulse(b, &w, why);
        }
    }
}

/* Sets the reject coil while the first window is open, clears it once it
 * ended.  Returns whether it sent a request. */
static bool step_pulse(plc_bus *b, uint64_t now)
{
    if (now < b->pulse_retry_at)
        return false;
    uint64_t real = maad_now_ns();
    /* A window that ended is dropped once the coil is known clear. */
    if (b->reject_coil == 0)
        finish_pulses(b, real);
    pthread_mutex_lock(&b->mu);
    bool any = b->plen > 0;
    pulse w = any ? b->pulses[0] : (pulse){0};
    pthread_mutex_unlock(&b->mu);
    int want = any && real >= w.on && real < w.off;
    if (b->reject_coil == want)
        return false;
    const int coil = b->cfg.plc.reject_coil;
    if (modbus_write_bit(b->mb, coil, want) == 1) {
        b->reject_coil = want;
        if (want) {
            pthread_mutex_lock(&b->mu);
            b->pulses[0].given = true; /* the first window stays first while open */
            pthread_mutex_unlock(&b->mu);
        }
        return true;
    }
    int e = errno;
    char what[64];
    snprintf(what, sizeof what, "%s the reject coil %d", want ? "setting" : "clearing", coil);
    if (!is_exception(e)) {
        lose(b, what, e);
        return true;
    }
    refused(b, OP_REJECT, what, e);
    b->pulse_retry_at = now + (uint64_t)b->cfg.plc.reconnect_min_ms * MS;
    return true;
}

/* ---- the thread ---------------------------------------------------------- */

/* When the loop must run again (mono); now or earlier: at once.  Under mu. */
static uint64_t next_wake(const plc_bus *b, uint64_t now, uint64_t real)
{
    uint64_t wake = now + IDLE_WAKE_NS;
    if (b->stopping)
        wake = min_u64(wake, b->drain_until);
    if (b->cfg.plc.dry_run)
        return b->qlen ? now : wake;
    if (b->plen) {
        /* The first window's next edge, from the real-time clock to ours. */
        const pulse *w = &b->pulses[0];
        uint64_t edge = real < w->on ? w->on : w->off;
        uint64_t at = edge > real ? now + (edge - real) : now;
        if (b->up && b->pulse_retry_at > at)
            at = b->pulse_retry_at;
        wake = min_u64(wake, at);
    }
    if (!b->up)
        return min_u64(wake, b->next_connect);
    wake = min_u64(wake, b->next_health);
    if (b->healthy_coil != (int)coil_wanted(b, now))
        wake = min_u64(wake, b->healthy_retry_at);
    else if (b->healthy && !loop_silent(b, now))
        wake = min_u64(wake, b->alive_at + LOOP_SILENT_NS + 1);
    if (b->waiting_ack)
        wake = min_u64(wake, b->next_poll);
    else if (b->have_pending || b->qlen)
        wake = min_u64(wake, b->mailbox_retry_at);
    return wake;
}

static void step(plc_bus *b, uint64_t now)
{
    if (b->cfg.plc.dry_run) {
        /* maa-plc logs every decision itself ("dry run: part N: ..."). */
        while (take(b)) {
            b->have_pending = false;
            pthread_mutex_lock(&b->mu);
            b->inflight = false;
            pthread_mutex_unlock(&b->mu);
        }
        return;
    }
    if (!b->up) {
        finish_pulses(b, maad_now_ns());
        if (now >= b->next_connect)
            try_connect(b, now);
        return;
    }
    /* One request per turn, the most urgent first (the pulse has a time to
     * keep); the loop comes straight back while anything else is due. */
    if (pulses_on(b) && step_pulse(b, now))
        return;
    pthread_mutex_lock(&b->mu);
    bool want = coil_wanted(b, now);
    bool queued = b->qlen > 0;
    pthread_mutex_unlock(&b->mu);
    if (b->healthy_coil != (int)want && now >= b->healthy_retry_at)
        write_healthy(b, want, now);
    else if (b->waiting_ack && now >= b->next_poll)
        poll_ack(b, now);
    else if (!b->waiting_ack && (b->have_pending || queued) && now >= b->mailbox_retry_at)
        write_mailbox(b);
    else if (now >= b->next_health)
        write_health(b, now);
}

static void *bus_main(void *arg)
{
    plc_bus *b = arg;
    for (;;) {
        step(b, maad_mono_ns());
        uint64_t now = maad_mono_ns();
        uint64_t real = maad_now_ns();
        pthread_mutex_lock(&b->mu);
        bool idle = !b->qlen && !b->have_pending && !b->plen;
        if (b->stopping && (idle || now >= b->drain_until)) {
            pthread_mutex_unlock(&b->mu);
            break;
        }
        uint64_t wake = next_wake(b, now, real);
        if (wake > now) {
            struct timespec ts = {.tv_sec = (time_t)(wake / 1000000000u),
                                  .tv_nsec = (long)(wake % 1000000000u)};
            pthread_cond_timedwait(&b->cv, &b->mu, &ts);
        }
        pthread_mutex_unlock(&b->mu);
    }
    /* Never leave the reject coil set behind us. */
    if (b->up && pulses_on(b) && b->reject_coil != 0 &&
        modbus_write_bit(b->mb, b->cfg.plc.reject_coil, 0) != 1)
        maad_log(&b->log, MAAD_LOG_ERR, "%s: clearing the reject coil %d at stop: %s", b->plc,
                 b->cfg.plc.reject_coil, modbus_strerror(errno));
    if (b->up)
        modbus_close(b->mb);
    return NULL;
}

/* ---- the API ------------------------------------------------------------- */

static void bus_destroy(plc_bus *b)
{
    if (b->mb)
        modbus_free(b->mb);
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    free(b->q);
    free(b->hist);
    free(b->pulses);
    free(b);
}

int plc_bus_start(const maa_plc_config *c, const maad_logger *lg, plc_bus **out, char *err,
                  size_t errlen)
{
    *out = NULL;
    plc_bus *b = calloc(1, sizeof *b);
    if (!b) {
        snprintf(err, errlen, "plc bus: out of memory");
        return MAA_ERR;
    }
    b->cfg = *c;
    b->log = *lg;
    b->qcap = (size_t)(c->plc.queue > 0 ? c->plc.queue : 1);
    b->backoff_ms = (uint64_t)c->plc.reconnect_min_ms;
    b->healthy_coil = b->reject_coil = -1;
    snprintf(b->plc, sizeof b->plc, "PLC %s:%d", c->plc.address, c->plc.port);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&b->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&b->mu, NULL);
    b->alive_at = maad_mono_ns();
    b->q = calloc(b->qcap, sizeof *b->q);
    b->hist = calloc(HIST_BUCKETS, sizeof *b->hist);
    b->pcap = pulses_on(b) ? b->qcap : 0;
    b->pulses = pulses_on(b) ? calloc(b->pcap, sizeof *b->pulses) : NULL;
    if (!b->q || !b->hist || (pulses_on(b) && !b->pulses)) {
        snprintf(err, errlen, "plc.queue %d: out of memory", c->plc.queue);
        bus_destroy(b);
        return MAA_ERR;
    }
    if (!c->plc.dry_run) {
        char port[16];
        snprintf(port, sizeof port, "%d", c->plc.port);
        b->mb = modbus_new_tcp_pi(c->plc.address, port);
        if (!b->mb) {
            snprintf(err, errlen, "%s: %s", b->plc, modbus_strerror(errno));
            bus_destroy(b);
            return MAA_ERR;
        }
        if (modbus_set_slave(b->mb, c->plc.unit_id) == -1) {
            snprintf(err, errlen, "plc.unit_id %d: libmodbus takes 0..247 or 255 over TCP",
                     c->plc.unit_id);
            bus_destroy(b);
            return MAA_ERR;
        }
        uint32_t ms = (uint32_t)c->plc.response_timeout_ms;
        modbus_set_response_timeout(b->mb, ms / 1000, ms % 1000 * 1000);
        /* A reply cut in the middle fails within the same bound. */
        modbus_set_byte_timeout(b->mb, ms / 1000, ms % 1000 * 1000);
    }
    int rc = pthread_create(&b->thread, NULL, bus_main, b);
    if (rc != 0) {
        snprintf(err, errlen, "plc bus: thread: %s", strerror(rc));
        bus_destroy(b);
        return MAA_ERR;
    }
    *out = b;
    return MAA_OK;
}

void plc_bus_push(plc_bus *b, const plc_result *r)
{
    plc_result old;
    char buf[128];
    const char *no_pulse = NULL;
    pthread_mutex_lock(&b->mu);
    if (r->reject && pulses_on(b)) {
        no_pulse = schedule_pulse(b, r, maad_now_ns(), buf, sizeof buf);
        if (no_pulse)
            b->pulses_late++;
    }
    bool full = b->qlen == b->qcap;
    if (full) {
        old = b->q[b->qhead];
        b->q[b->qhead] = *r;
        b->qhead = (b->qhead + 1) % b->qcap;
        b->late++;
    } else {
        b->q[(b->qhead + b->qlen) % b->qcap] = *r;
        b->qlen++;
    }
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
    if (no_pulse)
        log_pulse(b, &(pulse){.first = r->part, .last = r->part, .n = 1}, no_pulse);
    if (full)
        maad_log(&b->log, MAAD_LOG_WARNING,
                 "late: part %" PRIu32 " (%s): pushed out of the full queue (plc.queue %d)",
                 old.part, decision_name(&old), b->cfg.plc.queue);
}

void plc_bus_set_healthy(plc_bus *b, bool healthy)
{
    pthread_mutex_lock(&b->mu);
    bool was_silent = loop_silent(b, maad_mono_ns());
    b->alive_at = maad_mono_ns();
    if (b->healthy != healthy || was_silent) {
        b->healthy = healthy;
        pthread_cond_signal(&b->cv);
    }
    pthread_mutex_unlock(&b->mu);
}

void plc_bus_get_stats(plc_bus *b, plc_bus_stats *s)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_lock(&b->mu);
    s->written = b->written;
    s->late = b->late;
    s->queued = b->qlen + (b->inflight ? 1 : 0);
    s->reconnects = b->reconnects;
    s->pulses = b->pulses_given;
    s->pulses_late = b->pulses_late;
    s->connected = b->connected;
    s->latency_p50_ms = quantile_ms(b, 0.50);
    s->latency_p99_ms = quantile_ms(b, 0.99);
    s->latency_max_ms = (double)b->lat_max_ns / 1e6;
    pthread_mutex_unlock(&b->mu);
}

static void log_undelivered(plc_bus *b, const plc_result *r, const char *where)
{
    maad_log(&b->log, MAAD_LOG_WARNING, "undelivered: part %" PRIu32 " (%s): %s", r->part,
             decision_name(r), where);
}

uint64_t plc_bus_stop(plc_bus *b, int drain_ms)
{
    if (b->joined)
        return 0;
    pthread_mutex_lock(&b->mu);
    b->stopping = true;
    b->drain_until = maad_mono_ns() + (uint64_t)(drain_ms > 0 ? drain_ms : 0) * MS;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
    pthread_join(b->thread, NULL);
    b->joined = true;
    /* The thread is gone: its fields are ours to read. */
    uint64_t n = 0;
    if (b->have_pending) {
        log_undelivered(b, &b->pending, b->pend_written ? "written, not acknowledged by the PLC"
                                                        : "not written");
        n++;
    }
    pthread_mutex_lock(&b->mu);
    for (size_t i = 0; i < b->qlen; i++, n++)
        log_undelivered(b, &b->q[(b->qhead + i) % b->qcap], "still queued");
    for (size_t i = 0; i < b->plen; i++) {
        log_pulse(b, &b->pulses[i], "stopping");
        b->pulses_late += b->pulses[i].n;
    }
    b->plen = 0;
    pthread_mutex_unlock(&b->mu);
    return n;
}

void plc_bus_free(plc_bus *b)
{
    if (!b)
        return;
    plc_bus_stop(b, 0);
    bus_destroy(b);
}
