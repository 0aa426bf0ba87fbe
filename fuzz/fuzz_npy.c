/*
 * fuzz_npy.c — libFuzzer target for the .npy parser: the input read as a
 * stdio stream over memory, then converted to X and Y.
 */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  nn_context *ctx = fuzz_context();
  if (size == 0)
    return 0; /* fmemopen refuses an empty buffer */
  FILE *file = fmemopen((void *)data, size, "rb");
  if (!file)
    return 0;
  nnlib_source source = nnlib_source_from_file(ctx, "fuzz_npy", "input", file);
  nnlib_tensor tensor = {0};
  if (nnlib_npy_read(&source, &tensor) == NN_OK)
    fuzz_convert(ctx, &tensor);
  nnlib_tensor_free(&tensor);
  fclose(file);
  return 0;
}
