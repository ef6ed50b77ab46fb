/* maa.h — the `maa` command-line tool: one function per subcommand, and the
 * few helpers the subcommands share (maa/common.c).  The module's only
 * public header. */
#ifndef MAA_TOOL_H
#define MAA_TOOL_H

#include <jansson.h>

#include "engine/engine.h"

int maa_cmd_infer(int argc, char **argv);
int maa_cmd_model_info(int argc, char **argv);
int maa_cmd_calibrate(int argc, char **argv);
int maa_cmd_eval(int argc, char **argv);
int maa_cmd_compare(int argc, char **argv);
int maa_cmd_fakecam(int argc, char **argv);
int maa_cmd_watch(int argc, char **argv);
int maa_cmd_keygen(int argc, char **argv);
int maa_cmd_review(int argc, char **argv);
int maa_cmd_archive(int argc, char **argv);

/* Options every engine-running subcommand shares, for getopt_long tables:
 * --model, --calibration, --backend, --precision, --threads, --batch. */
#define MAA_CLI_ENGINE_OPTIONS                                                \
    {"model", 1, 0, 'm'}, {"calibration", 1, 0, 'c'}, {"backend", 1, 0, 'B'}, \
    {"precision", 1, 0, 'P'}, {"threads", 1, 0, 'T'}, {"batch", 1, 0, 'N'}
#define MAA_CLI_ENGINE_HELP                                                   \
    "  --model M          model file (contract §3)\n"                              \
    "  --calibration C    calibration file from maa calibrate\n"               \
    "  --backend B        auto|ref|cpu|cuda (default auto)\n"                 \
    "  --precision P      default|f32|f16|bf16\n"                             \
    "  --threads N        CPU threads, 0 = all cores (default 0)\n"           \
    "  --batch N          images per engine run (default 4)\n"

typedef struct {
    const char *model, *calibration;
    maa_engine_opts engine;
} maa_cli_engine;

void maa_cli_engine_init(maa_cli_engine *c);
/* 1 when opt was one of the shared options (and arg was good), 0 when it
 * was not one, -1 (after printing why) when its argument is bad. */
int maa_cli_engine_option(maa_cli_engine *c, int opt, const char *arg);
/* An option's number in [lo, hi]; MAA_ERR, printed as who's ("who: --opt
 * "arg" is not a number in [lo, hi]"), otherwise.  Every numeric option of
 * maa goes through this or maa_cli_parse_integer: a value that does not
 * convert, or converts outside the range, is refused, never clamped. */
int maa_cli_parse_number(const char *who, const char *opt, const char *arg, double lo, double hi,
                         double *out);
/* An option's decimal integer in lo..hi; MAA_ERR, printed, otherwise. */
int maa_cli_parse_integer(const char *who, const char *opt, const char *arg, long long lo,
                          long long hi, long long *out);
/* The longest time an option of maa takes, in seconds (a year): beyond it
 * a time in nanoseconds would not fit 64 bits for long. */
#define MAA_CLI_MAX_SECONDS 31536000.0
/* Loads the model and (when given) the calibration, checking they belong
 * together; prints the reason and returns MAA_ERR otherwise. */
int maa_cli_load(const maa_cli_engine *c, maa_model **m, maa_calibration *cal,
                 int *have_cal);
/* Loads an image and preprocesses it for the model (contract §1) into x. */
int maa_cli_read_input(const char *path, const maa_model_info *info, float *x,
                       char *err, size_t errlen);
/* Reads the k images (k <= the inspector's max batch) into x and judges
 * them into res with cal: the scoring loop of maa calibrate and maa eval. */
int maa_cli_inspect_files(maa_inspector *in, const maa_calibration *cal,
                          const maa_model_info *info, const char *const *paths,
                          int k, float *x, maa_result *res, char *err,
                          size_t errlen);
/* The image files of a directory, sorted by name (PNG, PGM/PPM, BMP by
 * extension); *n gets the count.  NULL with a message on failure. */
char **maa_cli_list_images(const char *dir, int *n);
/* The subfolders of a directory, by name, sorted, as maa_cli_list_images. */
char **maa_cli_list_subdirs(const char *dir, int *n);
void maa_cli_free_list(char **list, int n);
/* Runs one of the project's Python scripts (scripts/NAME, found beside the
 * maa executable's ../scripts, or in $MAA_SCRIPTS) with /usr/bin/python3 (or
 * $MAA_PYTHON).  args ends with NULL.  Warns and returns MAA_ERR on failure. */
int maa_cli_run_script(const char *name, const char *const *args);
/* A report as indented JSON, doubles to 17 digits, written as the file at
 * path (maa_write_file: never through a link planted there); MAA_ERR,
 * printed as who's, when it cannot be. */
int maa_cli_write_json(const char *who, const json_t *report, const char *path);
/* The calibration histogram: scores, the fitted normal and T, as a PNG. */
int maa_cli_plot_scores(const char *png, const double *scores, int n,
                        const maa_calibration *cal);
/* A progress line on stderr when it is a terminal. */
void maa_cli_progress(const char *what, int done, int total);

/* ---- train.py's split file, MODEL.split.json (maa/split.c) ---------------
 * Functions that print take `who`, the subcommand's name for the message. */
typedef struct {
    json_t *doc;
    char *dir;               /* "images", a relative one taken from the file's folder */
    json_t *held, *trained;  /* arrays of {"file", "sha256"} */
} maa_cli_split;

/* Where train.py puts a model's split file: the model's path without its
 * extension, + ".split.json" (malloc'd; NULL when out of memory). */
char *maa_cli_split_path(const char *model);
/* 0: loaded; 1: no such file (an error only where the caller needs it);
 * -1: unreadable or malformed (printed). */
int maa_cli_split_load(const char *who, const char *path, maa_cli_split *sp);
void maa_cli_split_free(maa_cli_split *sp);
/* SHA-256 of a file's bytes as lowercase hex; MAA_ERR (printed) when the
 * file cannot be read. */
int maa_cli_file_sha256(const char *who, const char *path, char hex[65]);
/* What the split says of the image at path, found by content: one of the
 * model's training images, one it held out, or neither; -1 (printed) when
 * the image cannot be read. */
enum { MAA_SPLIT_NONE = 0, MAA_SPLIT_TRAINED, MAA_SPLIT_HELD_OUT };
int maa_cli_split_find(const char *who, const maa_cli_split *sp, const char *path);

/* ---- a labelled set judged by one model (maa/judge.c) --------------------
 * What maa eval reports and maa compare sets side by side, computed in one
 * place so that the two agree to the bit. */

/* One image of a labelled set in the MVTec AD layout, ROOT/test/<type>/. */
typedef struct {
    char *path;
    const char *type; /* its folder's name; "good" holds the good parts */
    int defective;
} maa_cli_part;

typedef struct {
    char **types;         /* the subfolders of ROOT/test, sorted */
    int ntypes;
    maa_cli_part *parts;  /* every image, by type, then by name */
    int n, ngood;
} maa_cli_set;

/* Lists ROOT/test; refuses (printed) a set without both good and defective
 * images. */
int maa_cli_set_load(const char *who, const char *root, maa_cli_set *set);
void maa_cli_set_free(maa_cli_set *set);

/* How one model judged one part at its calibrated thresholds. */
typedef struct {
    double score;      /* FMD */
    double mask_score; /* maa_region_score: a region is kept when > T_pix */
    int evidence;      /* MAA_EVIDENCE_* */
} maa_cli_judged;

/* Sees parts first..first+k-1 after their batch, with its inputs x, while
 * the inspector still holds their intermediates; non-zero stops the run. */
typedef int (*maa_cli_batch_fn)(void *user, const maa_inspector *in, int first, int k,
                                const float *x);
/* Judges every part of set, batch images at a time, into out[i] (set->n of
 * them); each, when not NULL, sees every batch.  MAA_ERR, printed. */
int maa_cli_judge_set(const char *who, maa_inspector *in, const maa_calibration *cal,
                      const maa_model_info *info, int batch, const maa_cli_set *set,
                      maa_cli_judged *out, maa_cli_batch_fn each, void *user);

/* What rule ranks parts by, with 1 at its decision boundary: FMD / T, the
 * mask's region score / T_pix, or the larger of the two (either).  A part is
 * rejected exactly when this exceeds 1 (for T, T_pix > 0). */
double maa_cli_rank_value(const maa_cli_judged *j, const maa_calibration *cal, maa_rule rule);
/* That value in words, for tables and reports. */
const char *maa_cli_ranks_by(maa_rule rule);
/* Whether rule rejects the part: the evidence it counts is present. */
int maa_cli_rejects(const maa_cli_judged *j, maa_rule rule);

/* A rule's decision on a judged set: the image AUROC of its rank value,
 * the share of defective parts it rejects and of good parts. */
typedef struct {
    double image_auroc, recall, false_reject_rate;
    int defective_rejected, good_rejected;
} maa_cli_decision;
int maa_cli_decide(const maa_cli_set *set, const maa_cli_judged *j, const maa_calibration *cal,
                   maa_rule rule, maa_cli_decision *d);
/* A decision as maa eval's report writes it under "rules". */
json_t *maa_cli_decision_json(const maa_cli_decision *d, maa_rule rule);
/* A part's score, mask_score, evidence and verdict under rule, as JSON. */
json_t *maa_cli_judged_json(const maa_cli_judged *j, maa_rule rule);
/* a / b, NAN when b is 0; and a number for JSON, null when not finite. */
double maa_cli_ratio(int a, int b);
json_t *maa_cli_json_num(double v);
/* Judges one image alone and writes its mask and, when recon_png is not
 * NULL, its reconstruction as PNGs of the model's size (for the pictures of
 * eval's worst cases and compare's disagreements).  MAA_ERR, printed. */
int maa_cli_write_case(const char *who, maa_inspector *in, const maa_calibration *cal,
                       const maa_model_info *info, const char *image, const char *recon_png,
                       const char *mask_png);

/* ---- maad's archive of judged frames, read (maa/record.c) ----------------
 * The records maad writes to archive.dir (docs/operations.md, "Reject
 * archive"): STEM.json, written last, marks a complete record, so only
 * records with one are read, and an archive that maad is writing (or
 * deleting the oldest records of) meanwhile reads safely.  A record that
 * cannot be read is named on stderr and left out; the others are read. */

typedef struct {
    char *stem;        /* <time>-<camera>-<seq>-<why>, the name of its files */
    char *json;        /* DIR/STEM.json */
    char *frame, *mask; /* DIR/STEM.png, DIR/STEM.mask.png; NULL: the record has none */
    json_t *doc;       /* STEM.json's object */
    const char *why;   /* "reject", "uninspected" or "pass" */
    const char *label; /* the operator's mark, "good" or "defective"; NULL: none */
    char when[32];     /* the capture time, "2026-12-04 10:15:30.123456 UTC" */
} maa_cli_record;

/* Which records a command takes; the options below fill it. */
typedef struct {
    const char *why;    /* only records kept for this; NULL: all */
    const char *reason; /* only those whose reason contains this (any case); NULL: all */
    const char *camera; /* only this camera's; NULL: all */
    char since[16];     /* capture time >= this, as a stem begins ("20261204T060000"); "": any */
    char until[16];     /* capture time < this; "": any */
    long long limit;    /* the newest this many; 0: all */
} maa_cli_record_filter;

typedef struct {
    maa_cli_record *rec; /* newest first */
    int n;
    int matched;         /* records the filter took before --limit */
    int unreadable;      /* records left out, each named on stderr */
} maa_cli_archive;

/* Options of the commands that select records, for getopt_long tables. */
#define MAA_CLI_RECORD_OPTIONS                                                \
    {"why", 1, 0, 'W'}, {"reason", 1, 0, 'R'}, {"camera", 1, 0, 'C'},         \
    {"since", 1, 0, 'S'}, {"until", 1, 0, 'U'}, {"limit", 1, 0, 'L'}
#define MAA_CLI_RECORD_HELP                                                   \
    "  --why W            only records kept as W: reject, uninspected or pass\n" \
    "  --reason TEXT      only records whose reason contains TEXT (any case)\n" \
    "  --camera NAME      only the records of camera NAME\n"                 \
    "  --since TIME       captured at or after TIME (UTC: 2026-12-04T06:00,\n"  \
    "                     2026-12-04, or a time ago: 8h, 30m, 2d)\n"          \
    "  --until TIME       captured before TIME (same forms)\n"                \
    "  --limit N          the newest N records\n"

/* 1 when opt was one of the record options (and arg was good), 0 when it
 * was not one, -1 (printed as who's) when its argument is bad. */
int maa_cli_record_option(const char *who, maa_cli_record_filter *f, int opt, const char *arg);
/* The complete records of dir that f takes (NULL: all), newest first.
 * MAA_ERR (printed) only when dir cannot be listed or memory runs out. */
int maa_cli_archive_read(const char *who, const char *dir, const maa_cli_record_filter *f,
                         maa_cli_archive *a);
void maa_cli_archive_free(maa_cli_archive *a);
/* The record DIR/STEM.json alone (STEM may also be given as the name of any
 * of its files); MAA_ERR with the reason in err. */
int maa_cli_record_load(const char *dir, const char *stem, maa_cli_record *r, char *err,
                        size_t errlen);
void maa_cli_record_free(maa_cli_record *r);
/* After a file of r could not be read: 1 when r's STEM.json is gone too
 * (maad deleted the record meanwhile, to keep its budget), err then saying
 * so; 0, err unchanged, otherwise. */
int maa_cli_record_gone(const maa_cli_record *r, char *err, size_t errlen);
/* The camera name in a record's stem, into buf. */
void maa_cli_record_camera(const maa_cli_record *r, char *buf, size_t n);
/* "12 records, 2026-12-04 06:00:01 to 13:59:58 UTC: 9 reject, 2 uninspected,
 * 1 pass; marked 1 good, 0 defective": the first n records of a. */
void maa_cli_archive_summary(const maa_cli_archive *a, int n, char *buf, size_t len);
/* A field of a record's verdict: a number (NAN when absent or null), a
 * string (NULL when absent or not one). */
double maa_cli_record_number(const maa_cli_record *r, const char *key);
const char *maa_cli_record_string(const maa_cli_record *r, const char *key);
/* The record's frame shrunk (area average) to fit side x side, as 8-bit
 * RGB, with its mask laid over it in translucent red.  MAA_ERR when there is
 * no frame to show (err says why); MAA_OK with err set when the frame is
 * shown without its mask (err says why). */
int maa_cli_record_thumbnail(const maa_cli_record *r, int side, maa_image *out, char *err,
                             size_t errlen);

#endif
