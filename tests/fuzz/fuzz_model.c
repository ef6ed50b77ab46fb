/* fuzz_model.c — the model file (engine/engine.h maa_model_load, contract
 * §3): the safetensors header's length and JSON, the metadata, every
 * tensor's dtype, shape and data offsets, F16 widening; and the accessors
 * of a model that loads. */
#include "engine/engine.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    maa_model *m;
    char err[MAA_ERRLEN];
    if (maa_model_load(fuzz_file(data, size), &m, err, sizeof err) != MAA_OK)
        return 0;
    /* What maa model-info prints of a model. */
    FILE *f = fuzz_null();
    const maa_model_info *in = maa_model_get_info(m);
    fprintf(f, "%d %d %d %d %s %s %zu %zu\n", in->image_size, in->channels, in->g_base,
            in->d_base, maa_model_sha256(m), maa_model_dtype(m), maa_model_tensor_count(m),
            maa_model_param_count(m));
    for (size_t i = 0; i < maa_model_meta_count(m); i++)
        fprintf(f, "%s %s\n", maa_model_meta_key(m, i), maa_model_meta_value(m, i));
    maa_model_free(m);
    return 0;
}
