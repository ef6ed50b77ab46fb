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
int maa_cmd_fakecam(int argc, char **argv);
int maa_cmd_watch(int argc, char **argv);

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
void maa_cli_free_list(char **list, int n);
/* Runs one of the project's Python scripts (scripts/NAME, found beside the
 * maa executable's ../scripts, or in $MAA_SCRIPTS) with /usr/bin/python3 (or
 * $MAA_PYTHON).  args ends with NULL.  Warns and returns MAA_ERR on failure. */
int maa_cli_run_script(const char *name, const char *const *args);
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
/* 1 when the image at path is, by content, one the split says the model was
 * trained on; 0 when not; -1 (printed) when it cannot be read. */
int maa_cli_split_trained(const char *who, const maa_cli_split *sp, const char *path);

#endif
