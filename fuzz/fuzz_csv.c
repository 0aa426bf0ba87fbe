/*
 * fuzz_csv.c — libFuzzer target for the CSV parser: the input as a stdio
 * stream over memory, read once with target column "y" and once with no
 * target, and the tensors converted to X and Y.
 */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void read_once(nn_context *ctx, FILE *file, const char *target) {
  nnlib_tensor inputs = {0}, targets = {0};
  rewind(file);
  if (nnlib_csv_read(ctx, "fuzz_csv", "input", file, target, &inputs,
                     &targets) == NN_OK) {
    fuzz_convert(ctx, &inputs);
    if (targets.data)
      fuzz_convert(ctx, &targets);
  }
  nnlib_tensor_free(&inputs);
  nnlib_tensor_free(&targets);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  nn_context *ctx = fuzz_context();
  if (size == 0)
    return 0; /* fmemopen refuses an empty buffer */
  FILE *file = fmemopen((void *)data, size, "rb");
  if (!file)
    return 0;
  read_once(ctx, file, "y");
  read_once(ctx, file, NULL);
  fclose(file);
  return 0;
}
