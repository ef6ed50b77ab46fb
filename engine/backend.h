/* backend.h — private to engine/: the interface every backend implements.
 * A backend keeps all of its state (weights, buffers, device handles) in the
 * context it returns from create; run allocates nothing. */
#ifndef MAA_BACKEND_H
#define MAA_BACKEND_H

#include "engine/engine.h"

typedef struct {
    const char *name;
    /* MAA_OK when the backend can run here, else the reason. */
    int (*available)(char *why, size_t whylen);
    int (*create)(const maa_model *m, const maa_engine_opts *opts, void **ctx,
                  char *err, size_t errlen);
    /* See maa_engine_run for the tensor layouts. */
    int (*run)(void *ctx, int n, const float *x, float *recon, float *fx,
               float *fr, char *err, size_t errlen);
    void (*destroy)(void *ctx);
} maa_backend_ops;

extern const maa_backend_ops maa_backend_ref;
extern const maa_backend_ops maa_backend_cpu;
#ifdef MAA_HAVE_CUDA
extern const maa_backend_ops maa_backend_cuda;
#endif

/* Shared helpers (engine/util.c). */
void maa_seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
