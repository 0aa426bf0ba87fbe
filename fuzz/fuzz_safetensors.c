/*
 * fuzz_safetensors.c — libFuzzer target for the safetensors reader and the
 * checkpoint loaders, on the input as a file in memory: opened and
 * validated, every floating tensor read, then loaded as a checkpoint
 * (architecture, training settings, state, moments) and as the parameters
 * of a fixed 2 -> 3 relu -> 1 sigmoid model. Seeds: fuzz/corpus/safetensors,
 * tokens: fuzz/safetensors.dict.
 */
#include "checkpoint.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Every F32/F64/F16/BF16 tensor, converted; a tensor's elements fit in the
 * input (at least 2 bytes each), so the buffers stay small. */
static void read_tensors(nn_context *ctx, const uint8_t *data, size_t size) {
  nnlib_st_file *file = NULL;
  if (nnlib_st_open_memory(ctx, "fuzz", "input", data, size, &file) != NN_OK)
    return;
  for (size_t i = 0; i < nnlib_st_tensor_count(file); i++) {
    const nnlib_st_tensor *tensor = nnlib_st_tensor_at(file, i);
    if (nnlib_st_find(file, tensor->name) != tensor)
      abort(); /* names are unique and sorted */
    float *values = malloc(tensor->elements * sizeof *values + 1);
    if (values)
      nnlib_st_read_f32(file, tensor, values);
    free(values);
  }
  nnlib_st_metadata(file, "format");
  nnlib_st_close(file);
}

static nn_model *fixed_model(nn_context *ctx) {
  static nn_model *model;
  const nn_layer_spec layers[] = {{3, NN_ACTIVATION_RELU, 0.0f},
                                  {1, NN_ACTIVATION_SIGMOID, 0.0f}};
  const nn_model_spec spec = {2, 2, layers, NN_LOSS_BINARY_CROSS_ENTROPY};
  if (!model && nn_model_create(ctx, &spec, &model) != NN_OK)
    abort();
  return model;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  nn_context *ctx = fuzz_context();
  read_tensors(ctx, data, size);
  nn_model *model = NULL;
  nn_train_options options;
  nn_train_state state;
  int has_state = 0;
  if (nnlib_model_load_memory(ctx, "input", data, size, &model, &options,
                              &state, &has_state) == NN_OK)
    nn_model_destroy(model);
  nnlib_model_load_parameters_memory(fixed_model(ctx), "input", data, size);
  return 0;
}
