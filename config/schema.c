/* schema.c — the one YAML loader of the config module, driven by a format's
 * key rows (schema.h): defaults, load with FILE:LINE:COL errors, dump,
 * example file and Markdown table. */
#include "config/schema.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "engine/engine.h"

/* A config file is a few kilobytes; anything this large is a wrong path. */
#define MAX_FILE_BYTES (1 << 20)
/* libyaml's loader takes time quadratic in the nesting depth (2.2 s for a
 * value nested 40,000 levels deep, 80 KB: the 1 MiB above would take
 * minutes to hours) and in the number of anchors, each of which it compares
 * with every earlier one (1.9 s for 40,000).  A configuration is three
 * levels deep and needs no anchor, so these limits leave room for any file
 * a person writes, and check_limits enforces them before the load. */
#define MAX_DEPTH 32
#define MAX_ANCHORS 64
#define MAX_ALIASES 64

static size_t count_keys(const cfg_section *sec)
{
    size_t n = 0;
    while (sec->keys[n].name)
        n++;
    return n;
}

static size_t section_index(const cfg_schema *S, const char *name)
{
    for (size_t i = 0; i < S->nsections; i++)
        if (strcmp(S->sections[i].name, name) == 0)
            return i;
    return S->nsections;
}

/* The row of name in sec, or the section's number of keys. */
static size_t key_index(const cfg_section *sec, const char *name)
{
    size_t i = 0;
    for (; sec->keys[i].name; i++)
        if (strcmp(sec->keys[i].name, name) == 0)
            break;
    return i;
}

/* ---- values -------------------------------------------------------------- */

/* The struct of entry e of a section in the config (e is 0 in a mapping). */
static void *entry_base(const cfg_section *sec, void *c, size_t e)
{
    return (char *)c + sec->off + e * sec->stride;
}
static const void *centry_base(const cfg_section *sec, const void *c, size_t e)
{
    return (const char *)c + sec->off + e * sec->stride;
}

/* Entries a config holds: a mapping section is one. */
static size_t nentries(const cfg_section *sec, const void *c)
{
    return sec->max ? (size_t)*(const int *)((const char *)c + sec->count_off) : 1;
}

/* The name of entry e in messages and the dump: "camera", "cameras[2]". */
static void entry_name(const cfg_section *sec, size_t e, char *buf, size_t n)
{
    if (sec->max)
        snprintf(buf, n, "%s[%zu]", sec->name, e);
    else
        snprintf(buf, n, "%s", sec->name);
}
static void *field(const cfg_key *k, void *base) { return (char *)base + k->off; }
static const void *cfield(const cfg_key *k, const void *base)
{
    return (const char *)base + k->off;
}

void cfg_fmt_double(char *buf, size_t n, double v)
{
    snprintf(buf, n, "%.15g", v);
    if (strtod(buf, NULL) != v)
        snprintf(buf, n, "%.17g", v);
}

static const char *type_noun(const cfg_key *k)
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

static void list_values(const cfg_key *k, char *buf, size_t n)
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

/* Parse the text of one value into its field of base, the section's struct.
 * plain: a plain (unquoted) YAML scalar; only plain scalars are numbers or
 * booleans.  null: the plain scalar is YAML's null (empty, ~ or null). */
static int parse_value(const cfg_key *k, const char *s, size_t len, bool plain, bool null,
                       void *base, char *why, size_t whylen)
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
        if ((k->flags & F_NONEMPTY) && len == 0)
            return bad(why, whylen, "expected 1 to %zu bytes, got an empty string", k->size - 1);
        if (k->flags & F_IDENT) {
            bool ok = len > 0;
            for (size_t i = 0; i < len && ok; i++)
                ok = (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
                     (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-';
            if (!ok)
                return bad(why, whylen, "\"%s\" is not 1 to %zu characters from A-Z a-z 0-9 _ -",
                           v, k->size - 1);
        }
        memcpy(field(k, base), s, len);
        ((char *)field(k, base))[len] = '\0';
        return MAA_OK;
    }
    if (k->type == T_ENUM) {
        for (int i = 0; k->values[i]; i++)
            if (!null && strlen(k->values[i]) == len && memcmp(k->values[i], s, len) == 0) {
                memcpy(field(k, base), &i, sizeof i);
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
                *(bool *)field(k, base) = strcmp(s, t[i]) == 0;
                return MAA_OK;
            }
        }
        return bad(why, whylen, "expected true/false, got \"%s\"", v);
    }
    char lo[32], hi[32], *end;
    cfg_fmt_double(lo, sizeof lo, k->min);
    cfg_fmt_double(hi, sizeof hi, k->max);
    errno = 0;
    if (k->type == T_INT) {
        long long x = strtoll(s, &end, 10);
        if (end == s || *end || (size_t)(end - s) != len)
            return bad(why, whylen, "expected an integer, got \"%s\"", v);
        if (errno == ERANGE || x < k->min || x > k->max)
            return bad(why, whylen, "%s is out of range [%s, %s]", v, lo, hi);
        if ((k->flags & F_POW2) && (x & (x - 1)))
            return bad(why, whylen, "%s is not a power of two", v);
        *(int *)field(k, base) = (int)x;
        return MAA_OK;
    }
    double x = strtod(s, &end);
    if (end == s || *end || (size_t)(end - s) != len || !isfinite(x))
        return bad(why, whylen, "expected a number, got \"%s\"", v);
    if (x < k->min || x > k->max)
        return bad(why, whylen, "%s is out of range [%s, %s]", v, lo, hi);
    *(double *)field(k, base) = x;
    return MAA_OK;
}

/* Every key of the section that has a default, at it. */
static void section_defaults(const cfg_section *sec, void *base)
{
    for (const cfg_key *k = sec->keys; k->name; k++) {
        if (!k->def)
            continue;
        char why[128];
        int rc = parse_value(k, k->def, strlen(k->def), true, false, base, why, sizeof why);
        assert(rc == MAA_OK && "a default outside its own row's bounds");
        (void)rc;
    }
}

void cfg_defaults(const cfg_schema *S, void *c)
{
    /* memset first: padding and string tails are then zero, so two configs
     * with equal values compare equal byte for byte. */
    memset(c, 0, S->size);
    for (size_t s = 0; s < S->nsections; s++)
        if (!S->sections[s].max)
            section_defaults(&S->sections[s], entry_base(&S->sections[s], c, 0));
}

const char *cfg_enum_name(const cfg_schema *S, const char *name, int value)
{
    char section[32];
    const char *dot = strchr(name, '.');
    if (!dot || (size_t)(dot - name) >= sizeof section || value < 0)
        return NULL;
    memcpy(section, name, (size_t)(dot - name));
    section[dot - name] = '\0';
    size_t s = section_index(S, section);
    if (s == S->nsections)
        return NULL;
    const cfg_key *k = &S->sections[s].keys[key_index(&S->sections[s], dot + 1)];
    if (!k->name || k->type != T_ENUM)
        return NULL;
    for (int j = 0; k->values[j]; j++)
        if (j == value)
            return k->values[j];
    return NULL;
}

/* ---- loader -------------------------------------------------------------- */

/* Whether the file has a section or key, and where. */
typedef struct {
    bool seen;
    yaml_mark_t at;
} place;

struct cfg_loader {
    const cfg_schema *S;
    const char *file;
    char *err;
    size_t errlen;
    yaml_document_t *doc;
    /* Section after section: the section's place, then for each entry it
     * may hold (one in a mapping), the entry's and its keys'. */
    place *places;
};

static size_t block_size(const cfg_section *sec)
{
    return 1 + (sec->max ? sec->max : 1) * (1 + count_keys(sec));
}

static place *section_at(const cfg_loader *L, size_t s)
{
    size_t n = 0;
    for (size_t t = 0; t < s; t++)
        n += block_size(&L->S->sections[t]);
    return &L->places[n];
}

static place *entry_at(const cfg_loader *L, size_t s, size_t e)
{
    return section_at(L, s) + 1 + e * (1 + count_keys(&L->S->sections[s]));
}

static place *key_at(const cfg_loader *L, size_t s, size_t e, size_t i)
{
    return entry_at(L, s, e) + 1 + i;
}

int cfg_fail(cfg_loader *L, yaml_mark_t m, const char *fmt, ...)
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

/* Whether the keys of section t are candidates for an unknown key in
 * section s: in a mapping section the keys of every mapping section (a key
 * written in the wrong section is found too), in an entry the entry's. */
static bool candidate(const cfg_schema *S, size_t s, size_t t)
{
    return S->sections[s].max ? t == s : !S->sections[t].max;
}

/* " (did you mean 'x'?)" for an unknown key of entry e of section s, full
 * its name as "camera.widht" or "cameras[1].nmae". */
static void suggest_key(const cfg_schema *S, size_t s, size_t e, const char *full, char *buf,
                        size_t len)
{
    size_t n = 0;
    for (size_t t = 0; t < S->nsections; t++)
        if (candidate(S, s, t))
            n += count_keys(&S->sections[t]);
    char cand[n][64];
    const char *cands[n];
    n = 0;
    for (size_t t = 0; t < S->nsections; t++) {
        const cfg_section *sec = &S->sections[t];
        if (!candidate(S, s, t))
            continue;
        char name[48];
        entry_name(sec, e, name, sizeof name);
        for (const cfg_key *k = sec->keys; k->name; k++, n++) {
            snprintf(cand[n], sizeof cand[n], "%s.%s", name, k->name);
            cands[n] = cand[n];
        }
    }
    suggest(full, cands, n, buf, len);
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

/* name: the entry's name (entry_name). */
static int set_key(cfg_loader *L, const char *name, const cfg_key *k, yaml_node_t *v, void *base)
{
    if (v->type != YAML_SCALAR_NODE)
        return cfg_fail(L, v->start_mark, "%s.%s: expected %s, got %s", name, k->name,
                        type_noun(k), describe(v));
    char why[256];
    if (parse_value(k, (const char *)v->data.scalar.value, v->data.scalar.length,
                    v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE, is_null(v), base, why,
                    sizeof why) != MAA_OK)
        return cfg_fail(L, v->start_mark, "%s.%s: %s", name, k->name, why);
    if (k->flags & F_OPTIONAL)
        *(bool *)((char *)base + k->set_off) = true;
    return MAA_OK;
}

/* The keys of entry e of section s (e 0: a mapping section), from map. */
static int load_keys(cfg_loader *L, size_t s, size_t e, yaml_node_t *map, void *c)
{
    const cfg_section *sec = &L->S->sections[s];
    char entry[48];
    entry_name(sec, e, entry, sizeof entry);
    /* A mapping section is "section camera", an entry "cameras[1]". */
    const char *what = sec->max ? "" : "section ";
    if (map->type != YAML_MAPPING_NODE)
        return cfg_fail(L, map->start_mark, "%s%s: expected a mapping of keys, got %s", what,
                        entry, describe(map));
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *kn = yaml_document_get_node(L->doc, p->key);
        yaml_node_t *vn = yaml_document_get_node(L->doc, p->value);
        if (kn->type != YAML_SCALAR_NODE)
            return cfg_fail(L, kn->start_mark, "%s%s: expected a key name, got %s", what, entry,
                            describe(kn));
        const char *name = (const char *)kn->data.scalar.value;
        size_t i = key_index(sec, name);
        if (!sec->keys[i].name) {
            char full[160], hint[160], v[48];
            snprintf(full, sizeof full, "%s.%s", entry, name);
            suggest_key(L->S, s, e, full, hint, sizeof hint);
            shown(name, strlen(name), v, sizeof v);
            return cfg_fail(L, kn->start_mark, "unknown key '%s.%s'%s", entry, v, hint);
        }
        place *at = key_at(L, s, e, i);
        if (at->seen)
            return cfg_fail(L, kn->start_mark, "duplicate key %s.%s (first at %zu:%zu)", entry,
                            name, at->at.line + 1, at->at.column + 1);
        *at = (place){true, kn->start_mark};
        if (set_key(L, entry, &sec->keys[i], vn, entry_base(sec, c, e)) != MAA_OK)
            return MAA_ERR;
    }
    return MAA_OK;
}

static int load_section(cfg_loader *L, size_t s, yaml_node_t *node, void *c)
{
    const cfg_section *sec = &L->S->sections[s];
    if (is_null(node))
        return MAA_OK; /* "section:" with every key commented out */
    if (!sec->max)
        return load_keys(L, s, 0, node, c);
    if (node->type != YAML_SEQUENCE_NODE)
        return cfg_fail(L, node->start_mark, "section %s: expected a sequence of mappings, got %s",
                        sec->name, describe(node));
    yaml_node_item_t *items = node->data.sequence.items.start;
    size_t n = (size_t)(node->data.sequence.items.top - items);
    for (size_t e = 0; e < n; e++) {
        yaml_node_t *en = yaml_document_get_node(L->doc, items[e]);
        if (e == sec->max)
            return cfg_fail(L, en->start_mark, "section %s: expected %zu to %zu entries, got %zu",
                            sec->name, sec->min, sec->max, n);
        *entry_at(L, s, e) = (place){true, en->start_mark};
        section_defaults(sec, entry_base(sec, c, e));
        if (load_keys(L, s, e, en, c) != MAA_OK)
            return MAA_ERR;
    }
    *(int *)((char *)c + sec->count_off) = (int)n;
    return MAA_OK;
}

/* The row of section.key, s its section; a name missing from the schema is
 * a programming error. */
static size_t rule_key(const cfg_schema *S, const char *section, const char *key, size_t *s)
{
    *s = section_index(S, section);
    assert(*s < S->nsections && "a rule names a section missing from the schema");
    size_t i = key_index(&S->sections[*s], key);
    assert(S->sections[*s].keys[i].name && "a rule names a key missing from the schema");
    return i;
}

bool cfg_seen(const cfg_loader *L, const char *section, size_t entry, const char *key)
{
    size_t s, i = rule_key(L->S, section, key, &s);
    return key_at(L, s, entry, i)->seen;
}

static yaml_mark_t section_mark(const cfg_loader *L, size_t s)
{
    yaml_mark_t top = {0, 0, 0};
    return section_at(L, s)->seen ? section_at(L, s)->at : top;
}

/* Where key i of entry e of section s is reported: the key, else the entry,
 * else the section, else the top of the file. */
static yaml_mark_t where(const cfg_loader *L, size_t s, size_t e, size_t i)
{
    if (key_at(L, s, e, i)->seen)
        return key_at(L, s, e, i)->at;
    if (entry_at(L, s, e)->seen)
        return entry_at(L, s, e)->at;
    return section_mark(L, s);
}

yaml_mark_t cfg_mark(const cfg_loader *L, const char *section, size_t entry, const char *key)
{
    size_t s, i = rule_key(L->S, section, key, &s);
    return where(L, s, entry, i);
}

yaml_mark_t cfg_section_mark(const cfg_loader *L, const char *section)
{
    size_t s = section_index(L->S, section);
    assert(s < L->S->nsections && "a rule names a section missing from the schema");
    return section_mark(L, s);
}

int cfg_check_order(cfg_loader *L, const void *c, const char *section, const char *lo,
                    const char *hi)
{
    size_t s, ilo = rule_key(L->S, section, lo, &s), ihi = rule_key(L->S, section, hi, &s);
    const cfg_section *sec = &L->S->sections[s];
    int vlo = *(const int *)cfield(&sec->keys[ilo], centry_base(sec, c, 0));
    int vhi = *(const int *)cfield(&sec->keys[ihi], centry_base(sec, c, 0));
    if (vlo <= vhi)
        return MAA_OK;
    return cfg_fail(L, where(L, s, 0, key_at(L, s, 0, ilo)->seen ? ilo : ihi),
                    "%s.%s (%d) is greater than %s.%s (%d)", section, lo, vlo, section, hi, vhi);
}

/* Every required key of every entry, and the entries a sequence needs. */
static int check_required(cfg_loader *L, const void *c)
{
    for (size_t s = 0; s < L->S->nsections; s++) {
        const cfg_section *sec = &L->S->sections[s];
        size_t n = nentries(sec, c);
        if (n < sec->min)
            return cfg_fail(L, section_mark(L, s),
                            "section %s: expected %zu to %zu entries, got %zu", sec->name,
                            sec->min, sec->max, n);
        for (size_t e = 0; e < n; e++)
            for (size_t i = 0; sec->keys[i].name; i++)
                if ((sec->keys[i].flags & F_REQUIRED) && !key_at(L, s, e, i)->seen) {
                    char entry[48];
                    entry_name(sec, e, entry, sizeof entry);
                    return cfg_fail(L, where(L, s, e, i), "missing required key %s.%s", entry,
                                    sec->keys[i].name);
                }
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

/* Value i of entry e of section s, a path, made absolute against the
 * directory of the file at path (found once, into dir). */
static int resolve_path(cfg_loader *L, const char *path, size_t s, size_t e, size_t i, void *c,
                        char *dir, bool *have_dir)
{
    const cfg_section *sec = &L->S->sections[s];
    const cfg_key *k = &sec->keys[i];
    char *v = field(k, entry_base(sec, c, e)), out[MAAD_PATH_SIZE];
    if (!v[0] || v[0] == '/')
        return MAA_OK;
    errno = 0;
    if (!*have_dir && file_dir(path, dir, MAAD_PATH_SIZE) != MAA_OK) {
        if (L->err && L->errlen)
            snprintf(L->err, L->errlen, "%s: cannot find its directory: %s", path,
                     strerror(errno ? errno : ENAMETOOLONG));
        return MAA_ERR;
    }
    *have_dir = true;
    const char *rel = v;
    while (rel[0] == '.' && rel[1] == '/')
        rel += 2;
    size_t dl = strlen(dir);
    int n = snprintf(out, sizeof out, "%s%s%s", dir, dir[dl - 1] == '/' ? "" : "/", rel);
    if (n < 0 || (size_t)n >= k->size) {
        char entry[48];
        entry_name(sec, e, entry, sizeof entry);
        return cfg_fail(L, where(L, s, e, i), "%s.%s: longer than %zu bytes once made absolute",
                        entry, k->name, k->size - 1);
    }
    memcpy(v, out, (size_t)n + 1);
    return MAA_OK;
}

static int resolve_paths(cfg_loader *L, const char *path, void *c)
{
    char dir[MAAD_PATH_SIZE];
    bool have_dir = false;
    for (size_t s = 0; s < L->S->nsections; s++) {
        const cfg_section *sec = &L->S->sections[s];
        for (size_t e = 0; e < nentries(sec, c); e++)
            for (size_t i = 0; sec->keys[i].name; i++)
                if ((sec->keys[i].flags & F_PATH) &&
                    resolve_path(L, path, s, e, i, c, dir, &have_dir) != MAA_OK)
                    return MAA_ERR;
    }
    return MAA_OK;
}

static int load_document(cfg_loader *L, yaml_node_t *root, void *c)
{
    if (root->type != YAML_MAPPING_NODE)
        return cfg_fail(L, root->start_mark, "expected a mapping of sections (%s), got %s",
                        L->S->outline, describe(root));
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        yaml_node_t *kn = yaml_document_get_node(L->doc, p->key);
        yaml_node_t *vn = yaml_document_get_node(L->doc, p->value);
        if (kn->type != YAML_SCALAR_NODE)
            return cfg_fail(L, kn->start_mark, "expected a section name, got %s", describe(kn));
        const char *name = (const char *)kn->data.scalar.value;
        size_t s = section_index(L->S, name);
        if (s == L->S->nsections) {
            char hint[96], v[48];
            const char *names[L->S->nsections];
            for (size_t i = 0; i < L->S->nsections; i++)
                names[i] = L->S->sections[i].name;
            suggest(name, names, L->S->nsections, hint, sizeof hint);
            shown(name, strlen(name), v, sizeof v);
            return cfg_fail(L, kn->start_mark, "unknown section '%s'%s", v, hint);
        }
        place *at = section_at(L, s);
        if (at->seen)
            return cfg_fail(L, kn->start_mark, "duplicate section %s (first at %zu:%zu)", name,
                            at->at.line + 1, at->at.column + 1);
        *at = (place){true, kn->start_mark};
        if (load_section(L, s, vn, c) != MAA_OK)
            return MAA_ERR;
    }
    if (check_required(L, c) != MAA_OK)
        return MAA_ERR;
    return L->S->check(L, c);
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

static int syntax_error(cfg_loader *L, const yaml_parser_t *p, const char *text)
{
    if (p->error == YAML_MEMORY_ERROR)
        return cfg_fail(L, p->problem_mark, "out of memory");
    yaml_mark_t m = p->error == YAML_READER_ERROR ? mark_at(text, p->problem_offset)
                                                  : p->problem_mark;
    const char *problem = p->problem ? p->problem : "unknown error";
    if (p->context && p->error != YAML_READER_ERROR)
        return cfg_fail(L, m, "YAML syntax error: %s (%s at %zu:%zu)", problem, p->context,
                        p->context_mark.line + 1, p->context_mark.column + 1);
    return cfg_fail(L, m, "YAML syntax error: %s", problem);
}

/* The file's events read once, in time linear in its size, counting its
 * nesting, anchors and aliases: refused at the first event beyond a limit.
 * A syntax error ends the count; the load that follows reports it. */
static int check_limits(cfg_loader *L, const char *text, size_t len)
{
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p))
        return cfg_fail(L, (yaml_mark_t){0, 0, 0}, "out of memory");
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    int rc = MAA_OK, depth = 0, anchors = 0, aliases = 0, end = 0;
    yaml_event_t ev;
    while (rc == MAA_OK && !end && yaml_parser_parse(&p, &ev)) {
        const yaml_char_t *anchor = NULL;
        switch (ev.type) {
        case YAML_SEQUENCE_START_EVENT:
            anchor = ev.data.sequence_start.anchor;
            depth++;
            break;
        case YAML_MAPPING_START_EVENT:
            anchor = ev.data.mapping_start.anchor;
            depth++;
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            depth--;
            break;
        case YAML_SCALAR_EVENT:
            anchor = ev.data.scalar.anchor;
            break;
        case YAML_ALIAS_EVENT:
            aliases++;
            break;
        case YAML_STREAM_END_EVENT:
            end = 1;
            break;
        default:
            break;
        }
        anchors += anchor != NULL;
        if (depth > MAX_DEPTH)
            rc = cfg_fail(L, ev.start_mark, "nested deeper than %d levels", MAX_DEPTH);
        else if (anchors > MAX_ANCHORS)
            rc = cfg_fail(L, ev.start_mark, "more than %d anchors (&name)", MAX_ANCHORS);
        else if (aliases > MAX_ALIASES)
            rc = cfg_fail(L, ev.start_mark, "more than %d aliases (*name)", MAX_ALIASES);
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&p);
    return rc;
}

/* The places of every section, entry and key, all unseen; NULL when out of memory. */
static place *new_places(const cfg_schema *S)
{
    size_t n = 0;
    for (size_t s = 0; s < S->nsections; s++)
        n += block_size(&S->sections[s]);
    return calloc(n, sizeof(place));
}

int cfg_load(const cfg_schema *S, const char *path, void *out, char *err, size_t errlen)
{
    uint8_t *bytes;
    size_t len;
    if (maa_read_file(path, MAX_FILE_BYTES, "a config file", &bytes, &len, err, errlen) != MAA_OK)
        return MAA_ERR;
    char *text = (char *)bytes;

    cfg_loader L = {.S = S, .file = path, .err = err, .errlen = errlen};
    void *c = malloc(S->size);
    L.places = new_places(S);
    yaml_parser_t parser;
    yaml_document_t doc, extra;
    int rc = MAA_ERR;
    yaml_mark_t top = {0, 0, 0};
    if (!c || !L.places) {
        rc = cfg_fail(&L, top, "out of memory");
        goto done;
    }
    cfg_defaults(S, c);
    if (check_limits(&L, text, len) != MAA_OK)
        goto done;
    if (!yaml_parser_initialize(&parser)) {
        rc = cfg_fail(&L, top, "out of memory");
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
        rc = cfg_fail(&L, top, "empty file");
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
        rc = cfg_fail(&L, more->start_mark, "more than one YAML document in the file");
    yaml_document_delete(&extra);
    if (more)
        goto document;
    if (load_document(&L, root, c) == MAA_OK && resolve_paths(&L, path, c) == MAA_OK) {
        memcpy(out, c, S->size);
        rc = MAA_OK;
    }
document:
    yaml_document_delete(&doc);
parser:
    yaml_parser_delete(&parser);
done:
    free(L.places);
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

static void put_value(FILE *f, const cfg_key *k, const void *base)
{
    char buf[32];
    int e;
    switch (k->type) {
    case T_INT: fprintf(f, "%d", *(const int *)cfield(k, base)); break;
    case T_DOUBLE:
        if ((k->flags & F_OPTIONAL) && !*(const bool *)((const char *)base + k->set_off)) {
            fputs("(unset)", f);
            break;
        }
        cfg_fmt_double(buf, sizeof buf, *(const double *)cfield(k, base));
        fputs(buf, f);
        break;
    case T_BOOL: fputs(*(const bool *)cfield(k, base) ? "true" : "false", f); break;
    case T_ENUM:
        memcpy(&e, cfield(k, base), sizeof e);
        fputs(k->values[e], f);
        break;
    case T_STRING: put_quoted(f, cfield(k, base)); break;
    }
}

void cfg_dump(const cfg_schema *S, const void *c, FILE *f)
{
    for (size_t s = 0; s < S->nsections; s++) {
        const cfg_section *sec = &S->sections[s];
        for (size_t e = 0; e < nentries(sec, c); e++) {
            char entry[48];
            entry_name(sec, e, entry, sizeof entry);
            for (const cfg_key *k = sec->keys; k->name; k++) {
                fprintf(f, "%s.%s = ", entry, k->name);
                put_value(f, k, centry_base(sec, c, e));
                fputc('\n', f);
            }
        }
    }
}

/* Type and bounds in words, e.g. "integer 2..4096, a power of two". */
static void type_text(const cfg_key *k, char *buf, size_t n)
{
    char lo[32], hi[32], names[160];
    cfg_fmt_double(lo, sizeof lo, k->min);
    cfg_fmt_double(hi, sizeof hi, k->max);
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
        else if (k->flags & F_NONEMPTY)
            snprintf(buf, n, "string, 1 to %zu bytes", k->size - 1);
        else
            snprintf(buf, n, "string, at most %zu bytes", k->size - 1);
        break;
    }
}

/* The default (or the example value) as written in a file. */
static void put_literal(FILE *f, const cfg_key *k, const char *text)
{
    if (k->type == T_STRING)
        put_quoted(f, text);
    else
        fputs(text, f);
}

/* A sequence section's type in words, e.g. "sequence of 1 to 16 mappings". */
static void sequence_text(const cfg_section *sec, char *buf, size_t n)
{
    snprintf(buf, n, "sequence of %zu to %zu mappings", sec->min, sec->max);
}

/* A key's doc and type comment lines, the first at the caller's position,
 * the rest at indent; ends at indent on the line of the key itself. */
static void put_key_doc(FILE *f, const cfg_key *k, const char *indent)
{
    char type[192];
    type_text(k, type, sizeof type);
    fprintf(f, "# %s\n%s# %s; ", k->doc, indent, type);
    if (k->flags & F_REQUIRED) {
        fputs("required", f);
    } else if (k->flags & F_OPTIONAL) {
        fputs("optional", f);
    } else {
        fputs("default ", f);
        put_literal(f, k, k->def);
    }
    fprintf(f, "\n%s", indent);
}

/* Every key at its default, or its example when it has none; an optional
 * key commented out. */
static void put_mapping_doc(FILE *f, const cfg_section *sec)
{
    fprintf(f, "\n%s:\n", sec->name);
    for (const cfg_key *k = sec->keys; k->name; k++) {
        if (k != sec->keys)
            fputc('\n', f);
        fputs("  ", f);
        put_key_doc(f, k, "  ");
        fprintf(f, "%s%s: ", k->flags & F_OPTIONAL ? "# " : "", k->name);
        put_literal(f, k, k->flags & (F_REQUIRED | F_OPTIONAL) ? k->example : k->def);
        fputc('\n', f);
    }
}

/* The section's example entries, the first with the doc of every key:
 *
 *   cameras:
 *     - # doc of name
 *       # its type; required
 *       name: "groove"
 *       ...
 *     - name: "cylinder"
 */
static void put_sequence_doc(FILE *f, const cfg_section *sec)
{
    char type[64];
    sequence_text(sec, type, sizeof type);
    /* min >= 1 (schema.h): a sequence section is required. */
    fprintf(f, "\n# %s\n# %s; required\n%s:\n", sec->doc, type, sec->name);
    for (size_t e = 0; e < sec->nexamples; e++) {
        const void *ex = (const char *)sec->examples + e * sec->stride;
        if (e)
            fputc('\n', f);
        for (const cfg_key *k = sec->keys; k->name; k++) {
            if (e == 0 && k != sec->keys)
                fputc('\n', f);
            fputs(k == sec->keys ? "  - " : "    ", f);
            if (e == 0)
                put_key_doc(f, k, "    ");
            fprintf(f, "%s: ", k->name);
            put_value(f, k, ex);
            fputc('\n', f);
        }
    }
}

void cfg_write_doc(const cfg_schema *S, FILE *f)
{
    fputs(S->doc_header, f);
    for (size_t s = 0; s < S->nsections; s++) {
        if (S->sections[s].max)
            put_sequence_doc(f, &S->sections[s]);
        else
            put_mapping_doc(f, &S->sections[s]);
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

/* "| `name` | type | ", a row up to its default cell. */
static void put_row_start(FILE *f, const char *name, const char *type)
{
    fprintf(f, "| `%s` | ", name);
    put_cell(f, type);
    fputs(" | ", f);
}

static void put_row_end(FILE *f, const char *doc)
{
    fputs(" | ", f);
    put_cell(f, doc);
    fputs(" |\n", f);
}

void cfg_write_table(const cfg_schema *S, FILE *f)
{
    fputs("| key | type | default | description |\n|---|---|---|---|\n", f);
    for (size_t s = 0; s < S->nsections; s++) {
        const cfg_section *sec = &S->sections[s];
        char type[192], name[128];
        if (sec->max) {
            sequence_text(sec, type, sizeof type);
            put_row_start(f, sec->name, type);
            fputs("required", f);
            put_row_end(f, sec->doc);
        }
        for (const cfg_key *k = sec->keys; k->name; k++) {
            /* An entry's key is "cameras[].name". */
            snprintf(name, sizeof name, "%s%s.%s", sec->name, sec->max ? "[]" : "", k->name);
            type_text(k, type, sizeof type);
            put_row_start(f, name, type);
            if (k->flags & F_REQUIRED)
                fputs("required", f);
            else if (k->flags & F_OPTIONAL)
                fputs("absent", f);
            else if (k->type == T_STRING)
                fprintf(f, "`\"%s\"`", k->def);
            else
                fprintf(f, "`%s`", k->def);
            put_row_end(f, k->doc);
        }
    }
}
