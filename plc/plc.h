/* plc.h — maa-plc, the PLC bridge: the verdicts of every camera's maad made
 * into one decision per part and handed to the line's PLC over Modbus TCP.
 * This is the plc module's only public header (docs/plc.md is its manual).
 *
 *   msg.c      a maad message (verdict or heartbeat) parsed and checked
 *   tracker.c  the verdicts of one physical part matched across cameras by
 *              frame id and station offset; one decision per part, in order
 *   bus.c      the Modbus TCP client: result mailbox with handshake, health
 *              word and coil, reject pulse, queue while the PLC is away
 *   maa-plc.c  the daemon: ZeroMQ subscriptions, the loop, systemd
 *
 * Conventions as in engine/engine.h: MAA_OK / MAA_ERR, a one-line reason in
 * a caller-owned buffer (err, errlen).  *_real_ns are CLOCK_REALTIME (the
 * verdicts' capture times), *_mono_ns CLOCK_MONOTONIC (durations). */
#ifndef MAA_PLC_H
#define MAA_PLC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "daemon/daemon.h"

/* ---- messages (msg.c) ----------------------------------------------------- */

typedef enum { PLC_MSG_VERDICT = 0, PLC_MSG_HEARTBEAT } plc_msg_kind;

/* What the bridge reads of a maad message (docs/protocol.md). */
typedef struct {
    plc_msg_kind kind;
    char camera[MAAD_NAME_SIZE];
    uint64_t seq;            /* verdict: seq; heartbeat: seq_next */
    bool has_frame_id;       /* false: frame_id was null */
    uint64_t frame_id;
    uint64_t t_capture_ns;   /* verdict only */
    maad_outcome verdict;    /* verdict only */
    bool camera_error;       /* verdict only: reason starts "camera error" */
} plc_msg;

/* Parses one message: topic (part 1) and JSON (part 2).  A message that is
 * not what maad sends (bad JSON, a missing or mistyped field, an unknown
 * verdict, a topic that does not match its camera) is refused with a reason
 * that names the problem. */
int plc_msg_parse(const char *topic, size_t topic_len, const char *json, size_t json_len,
                  plc_msg *out, char *err, size_t errlen);

/* ---- decisions (tracker.c) ------------------------------------------------ */

/* Reason bits of a decision (register mailbox+4). */
enum {
    PLC_REASON_REJECT = 1,      /* a camera judged the part defective */
    PLC_REASON_UNINSPECTED = 2, /* a camera could not judge it */
    PLC_REASON_MISSING = 4,     /* a camera's verdict never came: deadline, lost frame */
    PLC_REASON_DOWN = 8,        /* ... because that camera's maad was down or unsynchronised */
};

typedef struct {
    uint32_t part;           /* part number: the line step at the first station */
    bool reject;
    uint16_t reasons;        /* PLC_REASON_* */
    uint16_t cameras;        /* bit k: the k-th camera of the configuration did not pass */
    /* The same cameras by what each said: rejected, uninspected, missing
     * (down is a subset of missing). */
    uint16_t rejected, uninspected, missing, down;
    uint64_t t_capture_ns;   /* the part's capture at the first station; 0 unknown */
    uint64_t t_in_mono_ns;   /* when the input that completed the decision arrived */
} plc_result;

typedef struct plc_tracker plc_tracker;

typedef struct {
    uint64_t parts, passed, rejected;
    uint64_t missing;        /* (part, camera) pairs decided missing */
    uint64_t unmatched;      /* verdicts that could not be placed on the line */
    uint64_t too_late;       /* verdicts for a part already decided */
    uint64_t resyncs;        /* camera (re)synchronisations */
} plc_tracker_stats;

int plc_tracker_create(const maa_plc_config *c, const maad_logger *lg, plc_tracker **out,
                       char *err, size_t errlen);
void plc_tracker_free(plc_tracker *t);
/* One parsed message from the camera at index cam of the configuration. */
void plc_tracker_message(plc_tracker *t, int cam, const plc_msg *m, uint64_t now_real_ns,
                         uint64_t now_mono_ns);
/* Deadlines and heartbeats; call at least every few milliseconds. */
void plc_tracker_tick(plc_tracker *t, uint64_t now_real_ns, uint64_t now_mono_ns);
/* At shutdown: every part the bridge has seen at some station is decided
 * now, the verdicts still to come counted missing.  Call, then take the
 * results with plc_tracker_next, until it returns false. */
bool plc_tracker_flush(plc_tracker *t, uint64_t now_real_ns, uint64_t now_mono_ns);
/* The next decided part, in part order; false when none is ready. */
bool plc_tracker_next(plc_tracker *t, plc_result *out);
/* Bit k set: camera k is down (no message for heartbeat_timeout_ms, not
 * synchronised, or its maad reports a camera error).  0: all inspecting. */
uint16_t plc_tracker_down(const plc_tracker *t);
/* CLOCK_MONOTONIC time by which plc_tracker_tick should run next. */
uint64_t plc_tracker_wakeup(const plc_tracker *t, uint64_t now_real_ns, uint64_t now_mono_ns);
void plc_tracker_get_stats(const plc_tracker *t, plc_tracker_stats *s);

/* ---- the Modbus side (bus.c) ---------------------------------------------- */

typedef struct plc_bus plc_bus;

typedef struct {
    uint64_t written;        /* results the PLC acknowledged */
    uint64_t late;           /* results not written: too late for the reject station,
                                or pushed out of a full queue */
    uint64_t queued;         /* results waiting now */
    uint64_t pulses, pulses_late;
    uint64_t reconnects;     /* connections made after the first */
    bool connected;
    /* verdict-in (plc_result.t_in_mono_ns) to mailbox-written (the PLC's
     * response to the write), over every result written */
    double latency_p50_ms, latency_p99_ms, latency_max_ms;
} plc_bus_stats;

/* Starts the bus thread; it connects (with backoff) in the background, so an
 * unreachable PLC at start is logged, not fatal.  With plc.dry_run it never
 * connects and logs each decision instead. */
int plc_bus_start(const maa_plc_config *c, const maad_logger *lg, plc_bus **out, char *err,
                  size_t errlen);
/* Queues one result; never blocks.  A full queue pushes its oldest result
 * out, counted and logged as late. */
void plc_bus_push(plc_bus *b, const plc_result *r);
/* The healthy coil's value: written at once when it changes, and again every
 * health period. */
void plc_bus_set_healthy(plc_bus *b, bool healthy);
void plc_bus_get_stats(plc_bus *b, plc_bus_stats *s);
/* Delivers what is queued for up to drain_ms, then stops the thread; returns
 * the number of results left undelivered (each logged). */
uint64_t plc_bus_stop(plc_bus *b, int drain_ms);
void plc_bus_free(plc_bus *b);

#endif
