/*
 * fuzz_common.h — what every libFuzzer target shares: one CPU context for
 * the whole run, and the conversions of a parsed tensor into X and into Y
 * of each target kind, so that a fuzzer reaches everything a loader does.
 * Each target calls its parser's internal entry point on the input in
 * memory and frees everything before returning.
 */
#ifndef NN_FUZZ_COMMON_H
#define NN_FUZZ_COMMON_H

#include "load_tensor.h"

#include <stdlib.h>
#include <string.h>

static inline nn_context *fuzz_context(void) {
  static nn_context *ctx;
  if (!ctx && nn_context_create(NN_BACKEND_CPU, 0, &ctx, NULL, 0) != NN_OK)
    abort();
  return ctx;
}

/* A copy of the tensor: conversions may take a float32 buffer over. */
static inline bool fuzz_copy(const nnlib_tensor *tensor, nnlib_tensor *copy) {
  *copy = *tensor;
  size_t bytes = tensor->count * nnlib_dtype_size(tensor->dtype);
  copy->data = malloc(bytes ? bytes : 1);
  if (!copy->data)
    return false;
  memcpy(copy->data, tensor->data, bytes);
  return true;
}

/* Converts as X (scaled and not), then as Y of every kind. class_count is
 * fixed at 10 for one-hot (an inferred count may be up to 2^24 classes
 * times m floats: a legitimate but huge allocation, not a bug). */
static inline void fuzz_convert(nn_context *ctx, const nnlib_tensor *tensor) {
  for (int mode = 0; mode < 5; mode++) {
    nnlib_tensor copy;
    if (!fuzz_copy(tensor, &copy))
      return;
    nn_load_options options;
    nn_load_options_default(&options);
    options.scale_uint8 = mode == 1;
    options.targets = mode == 2   ? NN_TARGETS_CLASSES
                      : mode == 3 ? NN_TARGETS_BINARY
                                  : NN_TARGETS_VALUES;
    options.class_count = 10;
    float *matrix = NULL;
    size_t width = 0, m = 0;
    if (mode < 2)
      nnlib_tensor_to_inputs(ctx, "fuzz", "input", &copy, &options, &matrix,
                             &width, &m);
    else
      nnlib_tensor_to_targets(ctx, "fuzz", "input", &copy, &options, &matrix,
                              &width, &m);
    free(matrix);
    nnlib_tensor_free(&copy);
  }
}

#endif
