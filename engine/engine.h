/* engine.h — the maa inspection engine: model file, backends, score, mask,
 * calibration and image input.  This is the engine's only public header; no
 * CUDA, oneDNN or LAPACK type appears here, so everything above the engine
 * builds and is tested without those toolkits.
 *
 * Conventions: functions return MAA_OK (0) or MAA_ERR (-1) and, on error,
 * write a one-line reason naming the problem into the caller's buffer
 * (err, errlen; err may be NULL).  Nothing in the engine exits or aborts.
 * Section numbers (contract §n) refer to docs/contract.md. */
#ifndef MAA_ENGINE_H
#define MAA_ENGINE_H

#include <stddef.h>
#include <stdint.h>

enum { MAA_OK = 0, MAA_ERR = -1 };
#define MAA_ERRLEN 512

/* ---- model file (contract §3) -------------------------------------------- */

typedef struct maa_model maa_model;

typedef struct {
    int image_size;     /* S */
    int channels;       /* C: 1 or 3 */
    int g_base;         /* b */
    int d_base;         /* a */
    double bn_eps;
    double lrelu_slope;
    int markov_size;    /* H' = W' of f(x): S/8 - 3 */
} maa_model_info;

/* Load and validate a model file.  F16 tensors are widened to F32 at load. */
int maa_model_load(const char *path, maa_model **out, char *err, size_t errlen);
void maa_model_free(maa_model *m);
const maa_model_info *maa_model_get_info(const maa_model *m);
const char *maa_model_path(const maa_model *m);
/* SHA-256 of the model file's bytes, 64 lowercase hex digits. */
const char *maa_model_sha256(const maa_model *m);
/* "F32", "F16" or "mixed": the storage dtype of the contract's tensors. */
const char *maa_model_dtype(const maa_model *m);
size_t maa_model_tensor_count(const maa_model *m);
size_t maa_model_param_count(const maa_model *m);
/* __metadata__ entries in file order (i < count). */
size_t maa_model_meta_count(const maa_model *m);
const char *maa_model_meta_key(const maa_model *m, size_t i);
const char *maa_model_meta_value(const maa_model *m, size_t i);
/* A contract tensor by name as float32; NULL when the model has none by that
 * name.  ndim/shape may be NULL. */
const float *maa_model_tensor(const maa_model *m, const char *name, int *ndim,
                              int64_t shape[4]);

/* ---- engine and backends ------------------------------------------------- */

typedef enum {
    MAA_BACKEND_AUTO = 0, /* cuda when a device is present, else cpu */
    MAA_BACKEND_REF,      /* plain C reference: the oracle, slow */
    MAA_BACKEND_CPU,      /* oneDNN */
    MAA_BACKEND_CUDA      /* CUDA + cuDNN */
} maa_backend_kind;

typedef enum {
    MAA_PREC_DEFAULT = 0, /* the backend's default: cuda f16, others f32 */
    MAA_PREC_F32,
    MAA_PREC_F16,
    MAA_PREC_BF16
} maa_precision;

typedef struct {
    maa_backend_kind backend;
    maa_precision precision;
    int max_batch;  /* largest n that maa_engine_run will be given (>= 1) */
    int threads;    /* CPU threads; 0 = all cores */
    int device;     /* CUDA device ordinal */
    /* The largest 8-bit frame (width * height * samples per pixel) that
     * maa_inspect_frames hands whole to a backend that preprocesses on its
     * device (cuda: resize included); larger frames are preprocessed on the
     * host.  Never less than S * S * 4, what 0 gives: the model size in any
     * channel count, and frames a little larger.  It sizes two buffers per
     * batch slot, one pinned on the host and one on the device. */
    size_t frame_bytes;
} maa_engine_opts;

typedef struct maa_engine maa_engine;

/* "auto", "ref", "cpu", "cuda" <-> kind. */
int maa_backend_parse(const char *name, maa_backend_kind *out);
const char *maa_backend_name(maa_backend_kind kind);
/* MAA_OK when the backend can run on this machine, else the reason. */
int maa_backend_available(maa_backend_kind kind, char *why, size_t whylen);
int maa_precision_parse(const char *name, maa_precision *out);
const char *maa_precision_name(maa_precision p);

/* Everything a backend needs is allocated here; runs allocate nothing.
 * The model must outlive the engine. */
int maa_engine_create(const maa_model *m, const maa_engine_opts *opts,
                      maa_engine **out, char *err, size_t errlen);
void maa_engine_free(maa_engine *e);
maa_backend_kind maa_engine_backend(const maa_engine *e);
maa_precision maa_engine_precision(const maa_engine *e);
/* What the backend adds about how it runs the network, for the log (cuda:
 * how many layers run as fused cuDNN graphs); "" when nothing. */
void maa_engine_describe(const maa_engine *e, char *buf, size_t len);

/* Run n (1..max_batch) images through the generator and the Markov encoder.
 *   x      n x C x S x S, values in [-1, 1] (contract §1)
 *   recon  n x C x S x S, r = G(x)
 *   fx, fr n x M x M, f(x) and f(r), M = markov_size
 * Each image's outputs do not depend on the others in the batch. */
int maa_engine_run(maa_engine *e, int n, const float *x, float *recon,
                   float *fx, float *fr, char *err, size_t errlen);

/* ---- score (contract §4) ------------------------------------------------- */

/* Fréchet Markov Distance of two rows x cols feature matrices (row-major,
 * rows are the observations), computed in float64. */
int maa_fmd(const float *fi, const float *fr, int rows, int cols,
            double *out, char *err, size_t errlen);

/* ---- mask (contract §6) -------------------------------------------------- */

typedef struct {
    int x, y, w, h; /* bounding box in model pixels */
    int area;       /* pixels in the region */
} maa_region;

/* m = v*v, v the local variance (window w, odd) of e = mean_c |x - r|.
 * x, r: C x S x S; m: S x S.  scratch: 3*S*S floats. */
void maa_varmap(const float *x, const float *r, int c, int s, int window,
                float *m, float *scratch);

/* mask = m > t_pix, then 8-connected regions of fewer than min_area pixels
 * are dropped.  mask: S x S bytes, 0 or 255.  Up to max_regions are stored
 * (largest first); *total gets the number found.  labels: S*S ints scratch. */
int maa_regions(const float *m, int s, double t_pix, int min_area,
                uint8_t *mask, int *labels, maa_region *regions,
                int max_regions, int *nregions, int *total);

/* The mask's image-level score: the largest t for which m > t still keeps a
 * region of at least min_area pixels, i.e. the value at which the first
 * region of that size appears as the threshold falls.  A region remains
 * after T_pix exactly when this score is > T_pix (so with min_area 1 it is
 * the peak of m).  scratch: 3*S*S ints. */
double maa_region_score(const float *m, int s, int min_area, int *scratch);

/* ---- calibration (contract §5, §6) --------------------------------------- */

/* Which evidence rejects a part (docs/scoring.md): the score (FMD > T, the
 * paper's rule), the mask (a region of at least min_region_area pixels
 * above T_pix), or either of them (the default). */
typedef enum { MAA_RULE_EITHER = 0, MAA_RULE_SCORE, MAA_RULE_MASK } maa_rule;

/* The MAA_EVIDENCE_* bits that reject a part under rule. */
int maa_rule_evidence(maa_rule rule);
/* "either", "score", "mask" <-> rule. */
int maa_rule_parse(const char *name, maa_rule *out);
const char *maa_rule_name(maa_rule rule);

typedef struct {
    char model_sha256[65];
    int n;
    double mu, sigma, gamma, threshold;  /* threshold = mu + gamma*sigma */
    char normality_test[32];             /* "dagostino-pearson" */
    double normality_stat, normality_p;
    double pixel_threshold;              /* T_pix */
    double mask_fraction;                /* q used to fit T_pix */
    int mask_window;                     /* w */
    int min_region_area;
    double score_min, score_max;
    /* Not in the file: the rule is the operator's choice (config key
     * decision.rule, or --rule), both thresholds serve every rule.  Fit and
     * load set MAA_RULE_EITHER. */
    maa_rule rule;
} maa_calibration;

/* The ranges maa calibrate takes and writes, and which a loaded calibration
 * must keep to (maad's model.gamma too). */
#define MAA_GAMMA_MIN (-10.0)
#define MAA_GAMMA_MAX 100.0
#define MAA_MASK_WINDOW_MAX 63       /* mask_window: odd, 1..this */
#define MAA_MIN_AREA_MAX 1000000     /* min_region_area: 1..this */

/* Fit mu, sigma (sample sd), n, threshold and the normality test from the
 * scores of good images (n >= 20). */
int maa_calibration_fit(const double *scores, int n, double gamma,
                        maa_calibration *c, char *err, size_t errlen);
/* T_pix such that at most floor(q*n) of the good images keep a region after
 * it; peaks[i] = maa_region_score of image i's m. */
double maa_pixel_threshold(const double *peaks, int n, double q);
/* Change gamma (and so the threshold) of a fitted calibration. */
void maa_calibration_set_gamma(maa_calibration *c, double gamma);
int maa_calibration_save(const char *path, const maa_calibration *c,
                         char *err, size_t errlen);
int maa_calibration_load(const char *path, maa_calibration *c,
                         char *err, size_t errlen);
/* Refuses a calibration made with another model file. */
int maa_calibration_check_model(const maa_calibration *c, const maa_model *m,
                                char *err, size_t errlen);

/* ---- images (contract §1) ------------------------------------------------ */

typedef struct {
    int width, height;
    int channels;  /* 1, 3 or 4 (alpha is ignored by preprocessing) */
    int depth;     /* bits per sample: 8 or 16 (16-bit: host-order uint16) */
    void *data;    /* interleaved rows, no padding */
} maa_image;

/* The largest width or height of an image the engine takes, in pixels: a
 * camera frame's sides (maad's camera.width and camera.height) are at most
 * this; image files are limited further (docs/engine.md). */
#define MAA_IMAGE_MAX_SIDE 65535

/* PNG (8/16-bit gray, gray+alpha, RGB, RGBA), PGM/PPM (P2, P3, P5, P6) and
 * BMP (8-bit palette, 24, 32-bit); the format is read from the content. */
int maa_image_load(const char *path, maa_image *img, char *err, size_t errlen);
void maa_image_free(maa_image *img);
/* 8-bit gray or RGB to a PNG file, or to a malloc'd buffer (*buf, *len). */
int maa_png_write(const char *path, const uint8_t *px, int w, int h, int ch,
                  char *err, size_t errlen);
int maa_png_encode(const uint8_t *px, int w, int h, int ch, void **buf,
                   size_t *len, char *err, size_t errlen);
/* Resize to s x s (area average when shrinking, bilinear when enlarging,
 * per axis), scale to [-1, 1] (16-bit: p / 32767.5 - 1), and write c x s x s
 * planar floats.  Gray feeds a 3-channel model by replication; an RGB image
 * for a 1-channel model is refused, and so is one without data or with a
 * side outside 1..MAA_IMAGE_MAX_SIDE. */
int maa_preprocess(const maa_image *img, int s, int c, float *out,
                   char *err, size_t errlen);

/* ---- files --------------------------------------------------------------- */

/* The whole of the regular file at path into *buf (malloc'd, with a NUL
 * after its *len bytes, so that a text can be parsed in place).  Refused,
 * with the path: a file that cannot be opened, a directory or anything else
 * that is not a regular file, and one larger than max bytes ("larger than
 * 1 MiB, not <what>"). */
int maa_read_file(const char *path, size_t max, const char *what, uint8_t **buf,
                  size_t *len, char *err, size_t errlen);
/* Writes len bytes as the file at path: into a new file beside it, created
 * exclusively (never through a symbolic link planted there), then renamed
 * over path, which replaces a link at path instead of writing through it.
 * A reader never sees half a file.  A path that is (or links to) a device,
 * pipe or socket is written to directly: there is no file to replace. */
/* All len bytes of data to fd, through short writes and EINTR: 0, or the
 * errno of the failure (ENOSPC for a write that writes nothing). */
int maa_write_all(int fd, const void *data, size_t len);
int maa_write_file(const char *path, const void *data, size_t len, char *err,
                   size_t errlen);

/* ---- evaluation metrics -------------------------------------------------- */

/* Area under the ROC curve of scores against 0/1 labels (ties get the
 * average rank, as scikit-learn's roc_auc_score); NAN without both classes. */
double maa_auroc(const float *scores, const uint8_t *labels, size_t n);
/* Area under the per-region-overlap curve up to fpr_limit, divided by
 * fpr_limit (MVTec AD's AUPRO).  region[i] is 0 for a defect-free pixel, else
 * the 1-based id of its ground-truth region (nregions in all). */
double maa_aupro(const float *scores, const int *region, size_t n, int nregions,
                 double fpr_limit);

/* ---- inspection: engine + score + decision + mask ------------------------ */

#define MAA_MAX_REGIONS 32

typedef enum { MAA_UNJUDGED = 0, MAA_PASS, MAA_REJECT } maa_verdict;

/* Bits of maa_result.evidence: which evidence exceeds its threshold,
 * whatever the rule. */
enum { MAA_EVIDENCE_SCORE = 1, MAA_EVIDENCE_MASK = 2 };

typedef struct {
    double score;       /* FMD */
    double mask_peak;   /* max of m */
    int evidence;       /* MAA_EVIDENCE_* bits; 0 without a calibration */
    maa_verdict verdict;   /* by cal->rule; MAA_UNJUDGED without a calibration */
    int nregions;          /* regions stored (<= MAA_MAX_REGIONS) */
    int regions_total;     /* regions found */
    maa_region regions[MAA_MAX_REGIONS];
} maa_result;

/* Why a judged result got its verdict under rule, for people: the evidence
 * that rejected it, or for a pass the evidence the rule ignored. */
const char *maa_reason(const maa_result *r, maa_rule rule);

typedef struct maa_inspector maa_inspector;

int maa_inspector_create(const maa_model *m, const maa_engine_opts *opts,
                         maa_inspector **out, char *err, size_t errlen);
void maa_inspector_free(maa_inspector *in);
maa_engine *maa_inspector_engine(maa_inspector *in);
/* Judge n preprocessed images.  cal may be NULL (score only; mask window 7,
 * no regions).  Evidence: score > cal->threshold, and a mask region left
 * after T_pix and the minimum area; the verdict rejects on the evidence
 * cal->rule names. */
int maa_inspect(maa_inspector *in, const maa_calibration *cal, int n,
                const float *x, maa_result *res, char *err, size_t errlen);
/* Judge n frames: maa_preprocess of each, then maa_inspect, with the same
 * results.  Where the backend can (cuda; 8-bit frames at least S x S and of
 * at most maa_inspector_frame_bytes, one geometry and channel count per
 * batch) preprocessing with its resize, variance map and mask run on the
 * device and only maps, masks and peaks come back; other frames are
 * preprocessed here. */
int maa_inspect_frames(maa_inspector *in, const maa_calibration *cal, int n,
                       const maa_image *frames, maa_result *res, char *err,
                       size_t errlen);
/* Whether maa_inspect_frames takes img as it is, with no preprocessing on
 * the host.  Other frames it preprocesses on the host when judging; a caller
 * that collects a batch over time may rather preprocess them as they come. */
int maa_inspector_takes_frame(const maa_inspector *in, const maa_image *img);
/* The largest frame, in bytes, that maa_inspect_frames may take whole: the
 * larger of maa_engine_opts.frame_bytes and S * S * 4; 0 when the backend
 * takes none. */
size_t maa_inspector_frame_bytes(const maa_inspector *in);
/* Where frame i (0 <= i < max batch) of the next maa_inspect_frames may be
 * written: maa_inspector_frame_bytes bytes of the backend's own staging
 * memory (pinned on cuda), so that a frame converted straight into it is
 * not copied again on the host.  Frame i of a batch belongs at the start of
 * buffer i: a frame lying anywhere else in these buffers fails the batch
 * (copying it could overwrite it first); one outside them is copied in.
 * NULL when the backend takes no frames, or for i out of range. */
uint8_t *maa_inspector_frame_buffer(maa_inspector *in, int i);
/* The last batch's intermediates for image i, valid until the next call.
 * recon and varmap are NULL after a batch that maa_inspect_frames judged on
 * the device, and after a failed call. */
const float *maa_inspector_recon(const maa_inspector *in, int i);
const float *maa_inspector_markov(const maa_inspector *in, int i, int recon);
const float *maa_inspector_varmap(const maa_inspector *in, int i);
const uint8_t *maa_inspector_mask(const maa_inspector *in, int i);

#endif
