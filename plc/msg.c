/* msg.c — one maad message as the bridge reads it.
 *
 * The bridge acts on a handful of fields (docs/protocol.md); everything else
 * is ignored so that maad may add fields.  Whatever the bridge does read is
 * checked strictly: a message it cannot trust is refused with a reason, and
 * the part then misses that camera's verdict and is rejected, rather than
 * judged on a guess. */
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "plc/plc.h"

static int refuse(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int refuse(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return MAA_ERR;
}

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a fractional number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

/* A non-negative integer field; null allowed when *present is non-NULL (it
 * then says whether the value was an integer). */
static int get_uint(json_t *o, const char *what, const char *key, uint64_t *out, bool *present,
                    char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);
    if (!v)
        return refuse(err, errlen, "%s: no field '%s'", what, key);
    if (present && json_is_null(v)) {
        *present = false;
        return MAA_OK;
    }
    if (!json_is_integer(v))
        return refuse(err, errlen, "%s: field '%s' is %s, expected an integer%s", what, key,
                      json_kind(v), present ? " or null" : "");
    if (json_integer_value(v) < 0)
        return refuse(err, errlen, "%s: field '%s' is negative (%lld)", what, key,
                      (long long)json_integer_value(v));
    *out = (uint64_t)json_integer_value(v);
    if (present)
        *present = true;
    return MAA_OK;
}

static int get_string(json_t *o, const char *what, const char *key, const char **out, char *err,
                      size_t errlen)
{
    json_t *v = json_object_get(o, key);
    if (!v)
        return refuse(err, errlen, "%s: no field '%s'", what, key);
    if (!json_is_string(v))
        return refuse(err, errlen, "%s: field '%s' is %s, expected a string", what, key,
                      json_kind(v));
    *out = json_string_value(v);
    return MAA_OK;
}

/* Bytes shown of a bad topic: enough to recognise it, never a flood. */
#define SHOWN 40

static void shown(const char *s, size_t len, char *buf, size_t n)
{
    size_t i, max = len > SHOWN ? SHOWN : len;
    for (i = 0; i < max && i + 4 < n; i++)
        buf[i] = (unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e ? '?' : s[i];
    if (max < len && i + 4 <= n) {
        memcpy(buf + i, "...", 3);
        i += 3;
    }
    buf[i] = '\0';
}

int plc_msg_parse(const char *topic, size_t topic_len, const char *json, size_t json_len,
                  plc_msg *out, char *err, size_t errlen)
{
    static const char prefix[] = "maad.", hb[] = ".heartbeat";
    const size_t plen = sizeof prefix - 1, hblen = sizeof hb - 1;
    char t[SHOWN + 4];
    shown(topic, topic_len, t, sizeof t);
    if (topic_len <= plen || memcmp(topic, prefix, plen) != 0)
        return refuse(err, errlen, "topic '%s' is not maad.<camera>", t);
    memset(out, 0, sizeof *out);
    size_t name_len = topic_len - plen;
    if (topic_len > plen + hblen && memcmp(topic + topic_len - hblen, hb, hblen) == 0) {
        out->kind = PLC_MSG_HEARTBEAT;
        name_len -= hblen;
    }
    const char *what = out->kind == PLC_MSG_HEARTBEAT ? "heartbeat" : "verdict";

    json_error_t jerr;
    json_t *o = json_loadb(json, json_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!o)
        return refuse(err, errlen, "%s on '%s': not JSON: %s at byte %d", what, t, jerr.text,
                      jerr.position);
    int rc = MAA_ERR;
    const char *camera, *verdict, *reason;
    uint64_t v;
    if (!json_is_object(o)) {
        refuse(err, errlen, "%s on '%s': %s, expected a JSON object", what, t, json_kind(o));
        goto done;
    }
    if (get_uint(o, what, "v", &v, NULL, err, errlen) != MAA_OK ||
        get_string(o, what, "camera", &camera, err, errlen) != MAA_OK)
        goto done;
    if (v < 1) {
        refuse(err, errlen, "%s: schema version %llu (maad sends 1 or later)", what,
               (unsigned long long)v);
        goto done;
    }
    /* The topic is what ZeroMQ filtered on: a camera field that differs
     * means a confused sender, whose message cannot be placed. */
    if (strlen(camera) != name_len || memcmp(camera, topic + plen, name_len) != 0 ||
        name_len >= sizeof out->camera) {
        refuse(err, errlen, "%s on '%s': camera field '%.32s' does not match the topic", what,
               t, camera);
        goto done;
    }
    memcpy(out->camera, camera, name_len);
    if (out->kind == PLC_MSG_HEARTBEAT) {
        rc = get_uint(o, what, "seq_next", &out->seq, NULL, err, errlen);
        goto done;
    }
    if (get_uint(o, what, "seq", &out->seq, NULL, err, errlen) != MAA_OK ||
        get_uint(o, what, "frame_id", &out->frame_id, &out->has_frame_id, err, errlen) !=
            MAA_OK ||
        get_uint(o, what, "t_capture_ns", &out->t_capture_ns, NULL, err, errlen) != MAA_OK ||
        get_string(o, what, "verdict", &verdict, err, errlen) != MAA_OK ||
        get_string(o, what, "reason", &reason, err, errlen) != MAA_OK)
        goto done;
    int v_known = 0;
    for (maad_outcome o = MAAD_PASS; o <= MAAD_UNINSPECTED && !v_known; o++)
        if (strcmp(verdict, maad_outcome_name(o)) == 0)
            out->verdict = o, v_known = 1;
    if (!v_known) {
        refuse(err, errlen, "verdict seq %llu: verdict '%.32s' is not pass, reject or "
               "uninspected", (unsigned long long)out->seq, verdict);
        goto done;
    }
    /* maad's wording for a lost or failing camera (docs/protocol.md). */
    out->camera_error = out->verdict == MAAD_UNINSPECTED &&
                        strncmp(reason, "camera error", 12) == 0;
    rc = MAA_OK;
done:
    json_decref(o);
    return rc;
}
