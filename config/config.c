/* config.c — the configuration key table and its YAML loader.
 *
 * Every key lives in one row of `keys` below; defaults, the loader's checks,
 * the example file, the Markdown table and the dump are all driven by it, so
 * adding a key is adding a row (and a field in config.h). */
#include "config/config.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

#include "camera/camera.h"
#include "engine/engine.h"

/* A config file is a few kilobytes; anything this large is a wrong path. */
#define MAX_FILE_BYTES (1 << 20)

typedef enum { T_INT, T_DOUBLE, T_BOOL, T_ENUM, T_STRING } key_type;

enum {
    F_REQUIRED = 1, /* no default: the file must set it */
    F_OPTIONAL = 2, /* no default: presence is recorded at set_off */
    F_PATH = 4,     /* a relative value is resolved against the file's dir */
    F_POW2 = 8,     /* integer must be a power of two */
    F_IDENT = 16,   /* string of 1+ characters from [A-Za-z0-9_-] */
};

typedef struct {
    const char *section, *name;
    key_type type;
    size_t off;                /* field in maad_config */
    size_t size;               /* T_STRING: buffer size, NUL included */
    double min, max;           /* T_INT, T_DOUBLE: inclusive bounds */
    const char *const *values; /* T_ENUM: allowed names, NULL-terminated */
    const char *def;           /* default as written in the file */
    const char *example;       /* shown in the example when def is NULL */
    unsigned flags;
    size_t set_off; /* F_OPTIONAL: bool field, true when the key is present */
    const char *doc;
} key;

static const char *const source_names[] = {"aravis", "replay", NULL};
static const char *const pixfmt_names[] = {"Mono8",    "RGB8",     "BayerRG8",
                                           "BayerGR8", "BayerGB8", "BayerBG8", NULL};
static const char *const trigger_names[] = {"free", "software", "hardware", NULL};
static const char *const backend_names[] = {"auto", "ref", "cpu", "cuda", NULL};
static const char *const precision_names[] = {"default", "f32", "f16", "bf16", NULL};
static const char *const mask_names[] = {"png", "raw", "none", NULL};
static const char *const rule_names[] = {"either", "score", "mask", NULL};
static const char *const level_names[] = {"debug", "info", "notice", "warning", NULL};

/* Enum fields are stored through an int. */
_Static_assert(sizeof(maad_source) == sizeof(int), "enum size");
_Static_assert(sizeof(maad_pixel_format) == sizeof(int), "enum size");
_Static_assert(sizeof(maad_trigger) == sizeof(int), "enum size");
_Static_assert(sizeof(maad_backend) == sizeof(int), "enum size");
_Static_assert(sizeof(maad_precision) == sizeof(int), "enum size");
_Static_assert(sizeof(maad_cfg_mask_format) == sizeof(int), "enum size");
_Static_assert(sizeof(maad_rule) == sizeof(int), "enum size");
_Static_assert(sizeof(maad_cfg_log_level) == sizeof(int), "enum size");

/* The camera module's defaults (CAM_DEFAULT_*) as the table writes them. */
#define TEXT_(x) #x
#define TEXT(x) TEXT_(x)
#define BOOL_TEXT(b) ((b) ? "true" : "false")

#define OFF(s, k) offsetof(maad_config, s.k)
#define INT(s, k, lo, hi, d, fl, doc)                                                      \
    {#s, #k, T_INT, OFF(s, k), 0, lo, hi, NULL, d, NULL, fl, 0, doc}
#define DBL(s, k, lo, hi, d, doc) {#s, #k, T_DOUBLE, OFF(s, k), 0, lo, hi, NULL, d, NULL, 0, 0, doc}
#define BOOL(s, k, d, doc) {#s, #k, T_BOOL, OFF(s, k), 0, 0, 0, NULL, d, NULL, 0, 0, doc}
#define ENUM(s, k, v, d, doc) {#s, #k, T_ENUM, OFF(s, k), 0, 0, 0, v, d, NULL, 0, 0, doc}
#define STR(s, k, d, ex, fl, doc)                                                          \
    {#s, #k, T_STRING, OFF(s, k), sizeof(((maad_config *)0)->s.k), 0, 0, NULL, d, ex, fl, 0, doc}

static const key keys[] = {
    STR(camera, name, NULL, "cam0", F_REQUIRED | F_IDENT,
        "Names the camera; verdicts are published on topic maad.<name>."),
    ENUM(camera, source, source_names, "aravis",
         "Where frames come from: a GigE Vision camera or a replay directory."),
    STR(camera, device_id, "", NULL, 0, "Aravis device id; empty = the first camera found."),
    ENUM(camera, pixel_format, pixfmt_names, "Mono8", "Pixel format asked of the camera."),
    INT(camera, width, 0, 65535, "0", 0, "Region of interest width; 0 = the sensor maximum."),
    INT(camera, height, 0, 65535, "0", 0, "Region of interest height; 0 = the sensor maximum."),
    INT(camera, offset_x, 0, 65535, "0", 0, "Region of interest left edge."),
    INT(camera, offset_y, 0, 65535, "0", 0, "Region of interest top edge."),
    DBL(camera, exposure_us, 0, 1e7, "0",
        "Exposure time in microseconds; 0 = leave the camera's setting."),
    DBL(camera, gain_db, -1, 100, "-1", "Gain in dB; -1 = leave the camera's setting."),
    DBL(camera, frame_rate, 0.1, 1000, "33",
        "Frames per second: the camera's free-run rate, or maad's software-trigger rate."),
    ENUM(camera, trigger, trigger_names, "free",
         "free = the camera runs at frame_rate; software = maad triggers it frame_rate "
         "times a second; hardware = one frame per pulse on trigger_source."),
    STR(camera, trigger_source, CAM_DEFAULT_TRIGGER_SOURCE, NULL, 0,
        "Camera input line used by trigger: hardware."),
    INT(camera, packet_size, 0, 16000, "0", 0, "GigE Vision packet size in bytes; 0 = negotiate."),
    BOOL(camera, packet_socket, BOOL_TEXT(CAM_DEFAULT_PACKET_SOCKET),
         "Receive the stream through Aravis's packet socket where it may (CAP_NET_RAW; "
         "else it uses a UDP socket); false = always the UDP socket."),
    INT(camera, stream_buffers, 2, 256, TEXT(CAM_DEFAULT_STREAM_BUFFERS), 0,
        "Frame buffers queued to the camera."),
    INT(camera, timeout_ms, 0, 60000, "0", 0,
        "Free run or software trigger: no frame for this long is a lost camera "
        "(reconnect); 0 = max(1000, 3 frame periods)."),
    INT(camera, reconnect_min_ms, 10, 60000, TEXT(CAM_DEFAULT_RECONNECT_MIN_MS), 0,
        "First delay before reconnecting a lost camera."),
    INT(camera, reconnect_max_ms, 100, 600000, TEXT(CAM_DEFAULT_RECONNECT_MAX_MS), 0,
        "Longest delay between reconnections; >= reconnect_min_ms."),
    INT(camera, realtime_priority, 0, 99, "0", 0,
        "SCHED_FIFO priority of the capture thread; 0 = normal scheduling."),

    STR(replay, dir, "", NULL, F_PATH,
        "Directory of images to replay; required when camera.source is replay."),
    DBL(replay, fps, 0.1, 1000, TEXT(CAM_DEFAULT_REPLAY_FPS),
        "Replay rate in frames per second."),
    BOOL(replay, loop, BOOL_TEXT(CAM_DEFAULT_REPLAY_LOOP),
         "Start again from the first image after the last."),

    STR(model, path, NULL, "model.safetensors", F_REQUIRED | F_PATH, "The model file."),
    STR(model, calibration, NULL, "calibration.yaml", F_REQUIRED | F_PATH,
        "The calibration file made for that model (maa calibrate)."),
    ENUM(model, rule, rule_names, "either",
         "Which evidence rejects a part: either = the score above T or a defect-mask "
         "region; score = the score alone (the paper's rule); mask = a mask region alone."),
    {"model", "gamma", T_DOUBLE, OFF(model, gamma), 0, -10, 100, NULL, NULL, "3", F_OPTIONAL,
     OFF(model, has_gamma), "Sensitivity of T = mu + gamma*sigma; absent = the calibration's."},

    ENUM(engine, backend, backend_names, "auto",
         "Inference backend; auto = cuda when a GPU is present, else cpu."),
    ENUM(engine, precision, precision_names, "default",
         "Compute precision; default = the backend's (cuda f16, others f32)."),
    INT(engine, threads, 0, 1024, "0", 0, "CPU threads of the engine; 0 = all cores."),
    INT(engine, device, 0, 64, "0", 0, "CUDA device ordinal."),
    INT(engine, batch_max, 1, 64, "4", 0, "Largest batch given to the engine."),
    DBL(engine, batch_timeout_ms, 0, 10000, "0",
        "Longest wait to fill a batch; 0 = one frame period."),
    INT(engine, ring_slots, 2, 4096, "64", F_POW2, "Frames the capture ring holds."),
    INT(engine, max_failed_batches, 0, 1000000, "10", 0,
        "Batches the engine fails in a row before maad stops with exit status 1, "
        "for systemd to restart it; 0 = never."),
    INT(engine, max_age_ms, 0, 60000, "1000", 0,
        "A frame older than this (ms since capture) when the worker takes it from the "
        "ring is published uninspected, reason \"too old\", not judged late; 0 = no limit."),
    DBL(engine, test_delay_ms, 0, 60000, "0",
        "Test only: every batch takes this much longer (ring overflow, frames too old)."),

    ENUM(mask, format, mask_names, "png", "Defect mask encoding in the verdict; none = no mask."),
    INT(mask, min_region_area, -1, 1000000, "-1", 0,
        "Smallest defect region kept, in model pixels; -1 = the calibration's."),

    STR(publish, endpoint, "tcp://*:5555", NULL, 0, "ZeroMQ PUB endpoint of the verdicts."),
    INT(publish, sndhwm, 1, 1000000, "1000", 0, "ZeroMQ send high-water mark, in messages."),
    /* At most 750: the worker's loop may send a heartbeat up to a quarter
     * period late, and contract §8 wants one at least every second. */
    INT(publish, heartbeat_ms, 50, 750, "500", 0, "Interval of the heartbeat message."),

    INT(log, summary_interval_s, 1, 3600, "10", 0, "Interval of the summary log line."),
    ENUM(log, level, level_names, "info", "Lowest level logged."),
};

#define NKEYS (sizeof keys / sizeof keys[0])
/* Every section of the table, in its order. */
static const char *const sections[] = {"camera", "replay", "model", "engine",
                                       "mask",   "publish", "log"};
#define NSECTIONS (sizeof sections / sizeof sections[0])

static size_t section_index(const char *name)
{
    for (size_t i = 0; i < NSECTIONS; i++)
        if (strcmp(sections[i], name) == 0)
            return i;
    return NSECTIONS;
}

/* The row of section.name, or NKEYS. */
static size_t find_key(const char *section, const char *name)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].name, name) == 0)
            return i;
    return NKEYS;
}

/* ---- values -------------------------------------------------------------- */

static void *field(const key *k, maad_config *c) { return (char *)c + k->off; }
static const void *cfield(const key *k, const maad_config *c) { return (const char *)c + k->off; }

/* Shortest text that reads back as the same double. */
static void fmt_double(char *buf, size_t n, double v)
{
    snprintf(buf, n, "%.15g", v);
    if (strtod(buf, NULL) != v)
        snprintf(buf, n, "%.17g", v);
}

static const char *type_noun(const key *k)
{
    switch (k->type) {
    case T_INT: return "an integer";
    case T_DOUBLE: return "a number";
    case T_BOOL: return "true/false";
    case T_ENUM: return "a name";
    case T_STRING: return "a string";
    }
    return "?";
}

static void list_values(const key *k, char *buf, size_t n)
{
    size_t used = 0;
    buf[0] = '\0';
    for (const char *const *v = k->values; *v && used < n; v++)
        used += (size_t)snprintf(buf + used, n - used, "%s%s", v == k->values ? "" : ", ", *v);
}

/* Value text for messages: at most 40 bytes, control characters as '?'. */
static void shown(const char *s, size_t len, char *buf, size_t n)
{
    size_t max = len > 40 ? 37 : len, i;
    for (i = 0; i < max && i + 4 < n; i++)
        buf[i] = (unsigned char)s[i] < 0x20 ? '?' : s[i];
    if (max < len && i + 4 <= n) {
        memcpy(buf + i, "...", 3);
        i += 3;
    }
    buf[i] = '\0';
}

/* Writes the reason for a bad value; returns MAA_ERR. */
static int bad(char *why, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(char *why, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, n, fmt, ap);
    va_end(ap);
    return MAA_ERR;
}

/* Parse the text of one value into its field.  plain: a plain (unquoted)
 * YAML scalar; only plain scalars are numbers or booleans.  null: the plain
 * scalar is YAML's null (empty, ~ or null). */
static int parse_value(const key *k, const char *s, size_t len, bool plain, bool null,
                       maad_config *c, char *why, size_t whylen)
{
    char v[48];
    shown(s, len, v, sizeof v);
    if (k->type == T_STRING) {
        if (null)
            len = 0;
        if (memchr(s, '\0', len))
            return bad(why, whylen, "contains a NUL byte");
        if (len > k->size - 1)
            return bad(why, whylen, "too long (%zu bytes, at most %zu)", len, k->size - 1);
        if (k->flags & F_IDENT) {
            bool ok = len > 0;
            for (size_t i = 0; i < len && ok; i++)
                ok = (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
                     (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-';
            if (!ok)
                return bad(why, whylen, "\"%s\" is not 1 to %zu characters from A-Z a-z 0-9 _ -",
                           v, k->size - 1);
        }
        memcpy(field(k, c), s, len);
        ((char *)field(k, c))[len] = '\0';
        return MAA_OK;
    }
    if (k->type == T_ENUM) {
        for (int i = 0; k->values[i]; i++)
            if (!null && strlen(k->values[i]) == len && memcmp(k->values[i], s, len) == 0) {
                memcpy(field(k, c), &i, sizeof i);
                return MAA_OK;
            }
        char names[160];
        list_values(k, names, sizeof names);
        return bad(why, whylen, "\"%s\" is not one of: %s", v, names);
    }
    if (null)
        return bad(why, whylen, "expected %s, got an empty value", type_noun(k));
    if (!plain)
        return bad(why, whylen, "expected %s, got the quoted string \"%s\"", type_noun(k), v);
    if (k->type == T_BOOL) {
        /* YAML 1.2 core schema booleans; yes/no/on/off are too easy to mistype. */
        static const char *const t[] = {"true", "True", "TRUE"};
        static const char *const f[] = {"false", "False", "FALSE"};
        for (int i = 0; i < 3; i++) {
            if (strcmp(s, t[i]) == 0 || strcmp(s, f[i]) == 0) {
                *(bool *)field(k, c) = strcmp(s, t[i]) == 0;
                return MAA_OK;
            }
        }
        return bad(why, whylen, "expected true/false, got \"%s\"", v);
    }
    char lo[32], hi[32], *end;
    fmt_double(lo, sizeof lo, k->min);
    fmt_double(hi, sizeof hi, k->max);
    errno = 0;
    if (k->type == T_INT) {
        long long x = strtoll(s, &end, 10);
        if (end == s || *end || (size_t)(end - s) != len)
            return bad(why, whylen, "expected an integer, got \"%s\"", v);
        if (errno == ERANGE || x < k->min || x > k->max)
            return bad(why, whylen, "%s is out of range [%s, %s]", v, lo, hi);
        if ((k->flags & F_POW2) && (x & (x - 1)))
            return bad(why, whylen, "%s is not a power of two", v);
        *(int *)field(k, c) = (int)x;
        return MAA_OK;
    }
    double x = strtod(s, &end);
    if (end == s || *end || (size_t)(end - s) != len || !isfinite(x))
        return bad(why, whylen, "expected a number, got \"%s\"", v);
    if (x < k->min || x > k->max)
        return bad(why, whylen, "%s is out of range [%s, %s]", v, lo, hi);
    *(double *)field(k, c) = x;
    return MAA_OK;
}

void maad_config_defaults(maad_config *c)
{
    /* memset first: padding and string tails are then zero, so two configs
     * with equal values compare equal byte for byte. */
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < NKEYS; i++) {
        if (!keys[i].def)
            continue;
        char why[128];
        int rc = parse_value(&keys[i], keys[i].def, strlen(keys[i].def), true, false, c, why,
                             sizeof why);
        assert(rc == MAA_OK && "a default outside its own row's bounds");
        (void)rc;
    }
}

const char *maad_config_enum_name(const char *name, int value)
{
    char section[32];
    const char *dot = strchr(name, '.');
    if (!dot || (size_t)(dot - name) >= sizeof section || value < 0)
        return NULL;
    memcpy(section, name, (size_t)(dot - name));
    section[dot - name] = '\0';
    size_t i = find_key(section, dot + 1);
    if (i == NKEYS || keys[i].type != T_ENUM)
        return NULL;
    for (int j = 0; keys[i].values[j]; j++)
        if (j == value)
            return keys[i].values[j];
    return NULL;
}

/* ---- loader -------------------------------------------------------------- */

typedef struct {
    const char *file;
    char *err;
    size_t errlen;
    yaml_document_t *doc;
    bool key_seen[NKEYS], section_seen[NSECTIONS];
    yaml_mark_t key_at[NKEYS], section_at[NSECTIONS];
} loader;

static int fail(loader *L, yaml_mark_t m, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(loader *L, yaml_mark_t m, const char *fmt, ...)
{
    if (!L->err || L->errlen == 0)
        return MAA_ERR;
    int n = snprintf(L->err, L->errlen, "%s:%zu:%zu: ", L->file, m.line + 1, m.column + 1);
    if (n >= 0 && (size_t)n < L->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(L->err + n, L->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return MAA_ERR;
}

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[64];
    if (la >= 64 || lb >= 64)
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* " (did you mean 'x'?)" for the closest candidate within distance 2, else "". */
static void suggest(const char *name, const char *const *cands, size_t n, char *buf, size_t len)
{
    size_t best = 3, at = n;
    for (size_t i = 0; i < n; i++) {
        size_t d = edit_distance(name, cands[i]);
        if (d < best)
            best = d, at = i;
    }
    buf[0] = '\0';
    if (at < n)
        snprintf(buf, len, " (did you mean '%s'?)", cands[at]);
}

static const char *describe(const yaml_node_t *n)
{
    if (n->type == YAML_MAPPING_NODE)
        return "a mapping";
    if (n->type == YAML_SEQUENCE_NODE)
        return "a sequence";
    return "a scalar";
}

static bool is_null(const yaml_node_t *n)
{
    const char *s = (const char *)n->data.scalar.value;
    return n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
           (!*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
            !strcmp(s, "NULL"));
}

static int set_key(loader *L, size_t i, yaml_node_t *v, maad_config *c)
{
    const key *k = &keys[i];
    if (v->type != YAML_SCALAR_NODE)
        return fail(L, v->start_mark, "%s.%s: expected %s, got %s", k->section, k->name,
                    type_noun(k), describe(v));
    char why[256];
    if (parse_value(k, (const char *)v->data.scalar.value, v->data.scalar.length,
                    v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE, is_null(v), c, why,
                    sizeof why) != MAA_OK)
        return fail(L, v->start_mark, "%s.%s: %s", k->section, k->name, why);
    if (k->flags & F_OPTIONAL)
        *(bool *)((char *)c + k->set_off) = true;
    return MAA_OK;
}

static int load_section(loader *L, size_t s, yaml_node_t *map, maad_config *c)
{
    if (is_null(map))
        return MAA_OK; /* "section:" with every key commented out */
    if (map->type != YAML_MAPPING_NODE)
        return fail(L, map->start_mark, "section %s: expected a mapping of keys, got %s",
                    sections[s], describe(map));
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *kn = yaml_document_get_node(L->doc, p->key);
        yaml_node_t *vn = yaml_document_get_node(L->doc, p->value);
        if (kn->type != YAML_SCALAR_NODE)
            return fail(L, kn->start_mark, "section %s: expected a key name, got %s",
                        sections[s], describe(kn));
        const char *name = (const char *)kn->data.scalar.value;
        size_t i = find_key(sections[s], name);
        if (i == NKEYS) {
            char full[160], hint[160], cand[NKEYS][64];
            const char *cands[NKEYS];
            snprintf(full, sizeof full, "%s.%s", sections[s], name);
            for (size_t j = 0; j < NKEYS; j++) {
                snprintf(cand[j], sizeof cand[j], "%s.%s", keys[j].section, keys[j].name);
                cands[j] = cand[j];
            }
            suggest(full, cands, NKEYS, hint, sizeof hint);
            char v[48];
            shown(name, strlen(name), v, sizeof v);
            return fail(L, kn->start_mark, "unknown key '%s.%s'%s", sections[s], v, hint);
        }
        if (L->key_seen[i])
            return fail(L, kn->start_mark, "duplicate key %s.%s (first at %zu:%zu)",
                        keys[i].section, keys[i].name, L->key_at[i].line + 1,
                        L->key_at[i].column + 1);
        L->key_seen[i] = true;
        L->key_at[i] = kn->start_mark;
        if (set_key(L, i, vn, c) != MAA_OK)
            return MAA_ERR;
    }
    return MAA_OK;
}

/* Where a rule that involves a key is reported: the key, else its section,
 * else the top of the file. */
static yaml_mark_t key_mark(const loader *L, size_t i)
{
    yaml_mark_t top = {0, 0, 0};
    if (L->key_seen[i])
        return L->key_at[i];
    size_t s = section_index(keys[i].section);
    assert(s < NSECTIONS && "a row's section missing from sections[]");
    return L->section_seen[s] ? L->section_at[s] : top;
}

/* A row the rules below name; its absence is a programming error. */
static size_t rule_key(const char *section, const char *name)
{
    size_t i = find_key(section, name);
    assert(i < NKEYS && "a rule names a key missing from the table");
    return i;
}

static int check_rules(loader *L, const maad_config *c)
{
    for (size_t i = 0; i < NKEYS; i++)
        if ((keys[i].flags & F_REQUIRED) && !L->key_seen[i])
            return fail(L, key_mark(L, i), "missing required key %s.%s", keys[i].section,
                        keys[i].name);
    const maad_camera_config *cam = &c->camera;
    if (cam->reconnect_min_ms > cam->reconnect_max_ms) {
        size_t lo = rule_key("camera", "reconnect_min_ms");
        size_t hi = rule_key("camera", "reconnect_max_ms");
        return fail(L, key_mark(L, L->key_seen[lo] ? lo : hi),
                    "camera.reconnect_min_ms (%d) is greater than camera.reconnect_max_ms (%d)",
                    cam->reconnect_min_ms, cam->reconnect_max_ms);
    }
    if (cam->source == MAAD_SOURCE_REPLAY && !c->replay.dir[0]) {
        size_t d = rule_key("replay", "dir"), src = rule_key("camera", "source");
        return fail(L, key_mark(L, L->key_seen[d] ? d : src),
                    "replay.dir is required when camera.source is replay");
    }
    /* Frames come a period apart (the camera's free run, or maad's software
     * triggers): a shorter timeout would call every frame a lost camera.  A
     * hardware trigger has no frame timeout (a line may pause), a replay no
     * camera. */
    double period_ms = 1000.0 / cam->frame_rate;
    if (cam->source == MAAD_SOURCE_ARAVIS && cam->trigger != MAAD_TRIGGER_HARDWARE &&
        cam->timeout_ms > 0 && cam->timeout_ms < period_ms) {
        char rate[32], period[32];
        fmt_double(rate, sizeof rate, cam->frame_rate);
        snprintf(period, sizeof period, "%.1f", period_ms);
        size_t len = strlen(period);
        if (len > 2 && strcmp(period + len - 2, ".0") == 0)
            period[len - 2] = '\0';
        return fail(L, key_mark(L, rule_key("camera", "timeout_ms")),
                    "camera.timeout_ms (%d) is shorter than the frame period of "
                    "camera.frame_rate (%s frames/s: %s ms); make it longer, or 0 to derive "
                    "it from the frame rate", cam->timeout_ms, rate, period);
    }
    return MAA_OK;
}

/* Absolute directory of the file at path, so that paths in it do not depend
 * on the daemon's working directory. */
static int file_dir(const char *path, char *dir, size_t n)
{
    const char *slash = strrchr(path, '/');
    size_t rel = slash ? (size_t)(slash - path) : 0;
    if (path[0] == '/') {
        if (rel == 0)
            return snprintf(dir, n, "/") < (int)n ? MAA_OK : MAA_ERR;
        return rel < n ? (memcpy(dir, path, rel), dir[rel] = '\0', MAA_OK) : MAA_ERR;
    }
    if (!getcwd(dir, n))
        return MAA_ERR;
    size_t used = strlen(dir);
    if (rel == 0 || (rel == 1 && path[0] == '.'))
        return MAA_OK;
    if (used + 1 + rel >= n)
        return MAA_ERR;
    if (dir[used - 1] != '/')
        dir[used++] = '/';
    memcpy(dir + used, path, rel);
    dir[used + rel] = '\0';
    return MAA_OK;
}

static int resolve_paths(loader *L, const char *path, maad_config *c)
{
    char dir[MAAD_PATH_SIZE], out[MAAD_PATH_SIZE];
    bool have_dir = false;
    for (size_t i = 0; i < NKEYS; i++) {
        char *v = field(&keys[i], c);
        if (!(keys[i].flags & F_PATH) || !v[0] || v[0] == '/')
            continue;
        errno = 0;
        if (!have_dir && file_dir(path, dir, sizeof dir) != MAA_OK) {
            if (L->err && L->errlen)
                snprintf(L->err, L->errlen, "%s: cannot find its directory: %s", path,
                         strerror(errno ? errno : ENAMETOOLONG));
            return MAA_ERR;
        }
        have_dir = true;
        const char *rel = v;
        while (rel[0] == '.' && rel[1] == '/')
            rel += 2;
        size_t dl = strlen(dir);
        int n = snprintf(out, sizeof out, "%s%s%s", dir, dir[dl - 1] == '/' ? "" : "/", rel);
        if (n < 0 || (size_t)n >= keys[i].size)
            return fail(L, key_mark(L, i), "%s.%s: longer than %zu bytes once made absolute",
                        keys[i].section, keys[i].name, keys[i].size - 1);
        memcpy(v, out, (size_t)n + 1);
    }
    return MAA_OK;
}

static int load_document(loader *L, yaml_node_t *root, maad_config *c)
{
    if (root->type != YAML_MAPPING_NODE)
        return fail(L, root->start_mark,
                    "expected a mapping of sections (camera:, model:, ...), got %s",
                    describe(root));
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        yaml_node_t *kn = yaml_document_get_node(L->doc, p->key);
        yaml_node_t *vn = yaml_document_get_node(L->doc, p->value);
        if (kn->type != YAML_SCALAR_NODE)
            return fail(L, kn->start_mark, "expected a section name, got %s", describe(kn));
        const char *name = (const char *)kn->data.scalar.value;
        size_t s = section_index(name);
        if (s == NSECTIONS) {
            char hint[96], v[48];
            suggest(name, sections, NSECTIONS, hint, sizeof hint);
            shown(name, strlen(name), v, sizeof v);
            return fail(L, kn->start_mark, "unknown section '%s'%s", v, hint);
        }
        if (L->section_seen[s])
            return fail(L, kn->start_mark, "duplicate section %s (first at %zu:%zu)", name,
                        L->section_at[s].line + 1, L->section_at[s].column + 1);
        L->section_seen[s] = true;
        L->section_at[s] = kn->start_mark;
        if (load_section(L, s, vn, c) != MAA_OK)
            return MAA_ERR;
    }
    return check_rules(L, c);
}

/* libyaml reports reader (encoding) errors by byte offset only. */
static yaml_mark_t mark_at(const char *text, size_t off)
{
    yaml_mark_t m = {off, 0, 0};
    for (size_t i = 0; i < off; i++) {
        if (text[i] == '\n')
            m.line++, m.column = 0;
        else if (((unsigned char)text[i] & 0xC0) != 0x80)
            m.column++;
    }
    return m;
}

static int syntax_error(loader *L, const yaml_parser_t *p, const char *text)
{
    if (p->error == YAML_MEMORY_ERROR)
        return fail(L, p->problem_mark, "out of memory");
    yaml_mark_t m = p->error == YAML_READER_ERROR ? mark_at(text, p->problem_offset)
                                                  : p->problem_mark;
    const char *problem = p->problem ? p->problem : "unknown error";
    if (p->context && p->error != YAML_READER_ERROR)
        return fail(L, m, "YAML syntax error: %s (%s at %zu:%zu)", problem, p->context,
                    p->context_mark.line + 1, p->context_mark.column + 1);
    return fail(L, m, "YAML syntax error: %s", problem);
}

static int read_file(const char *path, char **text, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (err && errlen)
            snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return MAA_ERR;
    }
    char *buf = malloc(MAX_FILE_BYTES + 1);
    size_t n = buf ? fread(buf, 1, MAX_FILE_BYTES + 1, f) : 0;
    int bad = !buf ? ENOMEM : ferror(f) ? EIO : 0;
    fclose(f);
    if (bad || n > MAX_FILE_BYTES) {
        if (err && errlen)
            snprintf(err, errlen, "%s: %s", path,
                     bad ? strerror(bad) : "larger than 1 MiB, not a config file");
        free(buf);
        return MAA_ERR;
    }
    buf[n] = '\0';
    *text = buf;
    *len = n;
    return MAA_OK;
}

int maad_config_load(const char *path, maad_config *out, char *err, size_t errlen)
{
    char *text;
    size_t len;
    if (read_file(path, &text, &len, err, errlen) != MAA_OK)
        return MAA_ERR;

    loader L = {.file = path, .err = err, .errlen = errlen};
    maad_config *c = malloc(sizeof *c);
    yaml_parser_t parser;
    yaml_document_t doc, extra;
    int rc = MAA_ERR;
    yaml_mark_t top = {0, 0, 0};
    if (!c) {
        rc = fail(&L, top, "out of memory");
        free(text);
        return rc;
    }
    maad_config_defaults(c);
    if (!yaml_parser_initialize(&parser)) {
        rc = fail(&L, top, "out of memory");
        goto done;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        rc = syntax_error(&L, &parser, text);
        goto parser;
    }
    L.doc = &doc;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) {
        rc = fail(&L, top, "empty file");
        goto document;
    }
    /* A second document would be silently ignored by a reader that stops at
     * the first; refuse it. */
    if (!yaml_parser_load(&parser, &extra)) {
        rc = syntax_error(&L, &parser, text);
        goto document;
    }
    yaml_node_t *more = yaml_document_get_root_node(&extra);
    if (more)
        rc = fail(&L, more->start_mark, "more than one YAML document in the file");
    yaml_document_delete(&extra);
    if (more)
        goto document;
    if (load_document(&L, root, c) == MAA_OK && resolve_paths(&L, path, c) == MAA_OK) {
        *out = *c;
        rc = MAA_OK;
    }
document:
    yaml_document_delete(&doc);
parser:
    yaml_parser_delete(&parser);
done:
    free(c);
    free(text);
    return rc;
}

/* ---- output -------------------------------------------------------------- */

/* A YAML double-quoted string (also readable as a C string literal). */
static void put_quoted(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20 || ch == 0x7f)
            fprintf(f, "\\x%02x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

static void put_value(FILE *f, const key *k, const maad_config *c)
{
    char buf[32];
    int e;
    switch (k->type) {
    case T_INT: fprintf(f, "%d", *(const int *)cfield(k, c)); break;
    case T_DOUBLE:
        if ((k->flags & F_OPTIONAL) && !*(const bool *)((const char *)c + k->set_off)) {
            fputs("(unset)", f);
            break;
        }
        fmt_double(buf, sizeof buf, *(const double *)cfield(k, c));
        fputs(buf, f);
        break;
    case T_BOOL: fputs(*(const bool *)cfield(k, c) ? "true" : "false", f); break;
    case T_ENUM:
        memcpy(&e, cfield(k, c), sizeof e);
        fputs(k->values[e], f);
        break;
    case T_STRING: put_quoted(f, cfield(k, c)); break;
    }
}

void maad_config_dump(const maad_config *c, FILE *f)
{
    for (size_t i = 0; i < NKEYS; i++) {
        fprintf(f, "%s.%s = ", keys[i].section, keys[i].name);
        put_value(f, &keys[i], c);
        fputc('\n', f);
    }
}

/* Type and bounds in words, e.g. "integer 2..4096, a power of two". */
static void type_text(const key *k, char *buf, size_t n)
{
    char lo[32], hi[32], names[160];
    fmt_double(lo, sizeof lo, k->min);
    fmt_double(hi, sizeof hi, k->max);
    switch (k->type) {
    case T_INT:
        snprintf(buf, n, "integer %s..%s%s", lo, hi, k->flags & F_POW2 ? ", a power of two" : "");
        break;
    case T_DOUBLE: snprintf(buf, n, "number %s..%s", lo, hi); break;
    case T_BOOL: snprintf(buf, n, "true or false"); break;
    case T_ENUM:
        list_values(k, names, sizeof names);
        snprintf(buf, n, "one of: %s", names);
        break;
    case T_STRING:
        if (k->flags & F_IDENT)
            snprintf(buf, n, "string, 1 to %zu of A-Z a-z 0-9 _ -", k->size - 1);
        else if (k->flags & F_PATH)
            snprintf(buf, n, "path, relative to this file's directory");
        else
            snprintf(buf, n, "string, at most %zu bytes", k->size - 1);
        break;
    }
}

/* The default (or the example value) as written in a file. */
static void put_literal(FILE *f, const key *k, const char *text)
{
    if (k->type == T_STRING)
        put_quoted(f, text);
    else
        fputs(text, f);
}

void maad_config_write_doc(FILE *f)
{
    fputs("# maad configuration: every key with its default.\n"
          "# Written by maad_config_write_doc() (config/config.c); do not edit by\n"
          "# hand, change the key table and regenerate.  See docs/config.md.\n"
          "# Relative paths (model.path, model.calibration, replay.dir) are resolved\n"
          "# against the directory of this file.\n",
          f);
    const char *section = "";
    for (size_t i = 0; i < NKEYS; i++) {
        const key *k = &keys[i];
        char type[192];
        if (strcmp(section, k->section) != 0) {
            section = k->section;
            fprintf(f, "\n%s:\n", section);
        } else {
            fputc('\n', f);
        }
        type_text(k, type, sizeof type);
        fprintf(f, "  # %s\n  # %s; ", k->doc, type);
        if (k->flags & F_REQUIRED) {
            fprintf(f, "required\n  %s: ", k->name);
            put_literal(f, k, k->example);
        } else if (k->flags & F_OPTIONAL) {
            fprintf(f, "optional\n  # %s: ", k->name);
            put_literal(f, k, k->example);
        } else {
            fputs("default ", f);
            put_literal(f, k, k->def);
            fprintf(f, "\n  %s: ", k->name);
            put_literal(f, k, k->def);
        }
        fputc('\n', f);
    }
}

/* Markdown cell text: '<' and '>' would read as HTML. */
static void put_cell(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '<')
            fputs("&lt;", f);
        else if (*s == '>')
            fputs("&gt;", f);
        else if (*s == '|')
            fputs("\\|", f);
        else
            fputc(*s, f);
    }
}

void maad_config_write_table(FILE *f)
{
    fputs("| key | type | default | description |\n|---|---|---|---|\n", f);
    for (size_t i = 0; i < NKEYS; i++) {
        const key *k = &keys[i];
        char type[192];
        type_text(k, type, sizeof type);
        fprintf(f, "| `%s.%s` | ", k->section, k->name);
        put_cell(f, type);
        fputs(" | ", f);
        if (k->flags & F_REQUIRED)
            fputs("required", f);
        else if (k->flags & F_OPTIONAL)
            fputs("absent", f);
        else if (k->type == T_STRING)
            fprintf(f, "`\"%s\"`", k->def);
        else
            fprintf(f, "`%s`", k->def);
        fputs(" | ", f);
        put_cell(f, k->doc);
        fputs(" |\n", f);
    }
}
