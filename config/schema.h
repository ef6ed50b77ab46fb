/* schema.h — inside the config module: a file format described as data, and
 * the one loader that reads any such description.  Not a public header
 * (config/config.h is); only the files of config/ include it.
 *
 * A format (cfg_schema) is a list of sections; a section is a list of key
 * rows.  From the rows alone schema.c sets defaults, loads and checks a YAML
 * file with FILE:LINE:COL errors, dumps the effective values and writes the
 * documented example and the Markdown key table.  config.c describes maad's
 * file, plc.c maa-plc's; what rows cannot say (rules between keys) each
 * format checks in its own check function, through cfg_mark and cfg_fail.
 *
 * A row's offsets are into its section's struct, not into the whole config,
 * so that one set of rows serves every config that embeds that struct: the
 * log section of maad and of maa-plc is the same cfg_log_keys. */
#ifndef MAAD_CONFIG_SCHEMA_H
#define MAAD_CONFIG_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <yaml.h>

typedef enum { T_INT, T_DOUBLE, T_BOOL, T_ENUM, T_STRING } key_type;

enum {
    F_REQUIRED = 1, /* no default: the file must set it */
    F_OPTIONAL = 2, /* no default: presence is recorded at set_off */
    F_PATH = 4,     /* a relative value is resolved against the file's dir */
    F_POW2 = 8,     /* integer must be a power of two */
    F_IDENT = 16,   /* string of 1+ characters from [A-Za-z0-9_-] */
    F_NONEMPTY = 32 /* string of 1+ bytes */
};

typedef struct {
    const char *name;          /* NULL ends a section's rows */
    key_type type;
    size_t off;                /* field in the section's (or entry's) struct */
    size_t size;               /* T_STRING: buffer size, NUL included */
    double min, max;           /* T_INT, T_DOUBLE: inclusive bounds */
    const char *const *values; /* T_ENUM: allowed names, NULL-terminated */
    const char *def;           /* default as written in the file */
    const char *example;       /* shown in the example when def is NULL */
    unsigned flags;
    size_t set_off; /* F_OPTIONAL: bool field, true when the key is present */
    const char *doc;
} cfg_key;

/* Rows of a section whose struct is T. */
#define CFG_INT(T, k, lo, hi, d, fl, doc_)                                                 \
    {.name = #k, .type = T_INT, .off = offsetof(T, k), .min = lo, .max = hi, .def = d,      \
     .flags = fl, .doc = doc_}
#define CFG_DBL(T, k, lo, hi, d, doc_)                                                     \
    {.name = #k, .type = T_DOUBLE, .off = offsetof(T, k), .min = lo, .max = hi, .def = d,   \
     .doc = doc_}
#define CFG_BOOL(T, k, d, doc_)                                                            \
    {.name = #k, .type = T_BOOL, .off = offsetof(T, k), .def = d, .doc = doc_}
#define CFG_ENUM(T, k, v, d, doc_)                                                         \
    {.name = #k, .type = T_ENUM, .off = offsetof(T, k), .values = v, .def = d, .doc = doc_}
#define CFG_STR(T, k, d, ex, fl, doc_)                                                     \
    {.name = #k, .type = T_STRING, .off = offsetof(T, k), .size = sizeof(((T *)0)->k),      \
     .def = d, .example = ex, .flags = fl, .doc = doc_}
#define CFG_END {.name = NULL}

/* A mapping section (max 0) is one struct at off in the config.  A sequence
 * section (max > 0) is an array there: its entries are mappings of the same
 * rows, stride bytes apart, min..max of them (min >= 1: the section is
 * required), their number in the int at count_off.  An absent or empty
 * mapping section takes the defaults; an entry starts at the defaults. */
typedef struct {
    const char *name;
    const cfg_key *keys;
    size_t off;
    size_t min, max, stride, count_off;
    /* Sequence only: the entries the example file shows (nexamples structs,
     * stride apart), and a one-line doc of the section. */
    const void *examples;
    size_t nexamples;
    const char *doc;
} cfg_section;

/* The state of one load, handed to a format's check function. */
typedef struct cfg_loader cfg_loader;

typedef struct {
    const cfg_section *sections;
    size_t nsections;
    size_t size;            /* of the config struct */
    const char *outline;    /* "camera:, model:, ..." in the top-level error */
    const char *doc_header; /* comment lines that open the example file */
    /* Rules between keys, run once every key is loaded and every required
     * key found: MAA_OK, or the error through cfg_fail. */
    int (*check)(cfg_loader *L, const void *c);
} cfg_schema;

/* The rows of the log section, maad's and maa-plc's (maad_log_config). */
extern const cfg_key cfg_log_keys[];

/* The functions behind maad_config_* and maa_plc_config_* (config.h). */
void cfg_defaults(const cfg_schema *S, void *c);
int cfg_load(const cfg_schema *S, const char *path, void *c, char *err, size_t errlen);
void cfg_dump(const cfg_schema *S, const void *c, FILE *f);
void cfg_write_doc(const cfg_schema *S, FILE *f);
void cfg_write_table(const cfg_schema *S, FILE *f);
/* name is "section.key" of a mapping section. */
const char *cfg_enum_name(const cfg_schema *S, const char *name, int value);

/* ---- for check functions --------------------------------------------------
 * Keys are named by section, entry (0 in a mapping section) and key; a name
 * missing from the schema is a programming error (assert). */

/* Writes "FILE:LINE:COL: message"; returns MAA_ERR. */
int cfg_fail(cfg_loader *L, yaml_mark_t m, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Whether the file sets the key. */
bool cfg_seen(const cfg_loader *L, const char *section, size_t entry, const char *key);
/* Where a rule that involves a key is reported: the key, else its entry (in
 * a sequence), else its section, else the top of the file. */
yaml_mark_t cfg_mark(const cfg_loader *L, const char *section, size_t entry, const char *key);
/* The section's name in the file, else the top of the file. */
yaml_mark_t cfg_section_mark(const cfg_loader *L, const char *section);
/* The rule "section.lo <= section.hi" of two integer keys of a mapping
 * section, reported at lo when the file sets it, else at hi. */
int cfg_check_order(cfg_loader *L, const void *c, const char *section, const char *lo,
                    const char *hi);
/* Shortest text that reads back as the same double. */
void cfg_fmt_double(char *buf, size_t n, double v);

#endif
