/*
 * load.c — nn_dataset_load and nn_dataset_load_csv: pick the parser by the
 * path, turn its tensors into X (n_x × m) and Y (n_y × m), check that they
 * describe the same examples, and hand both buffers to a new dataset.
 */
#include "load_tensor.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void nn_load_options_default(nn_load_options *options) {
  if (!options)
    return;
  options->targets = NN_TARGETS_CLASSES;
  options->class_count = 0;
  options->scale_uint8 = 1;
}

/* options, or the defaults (filled into *defaults) when options is NULL. */
static const nn_load_options *
options_or_defaults(const nn_load_options *options, nn_load_options *defaults) {
  nn_load_options_default(defaults);
  return options ? options : defaults;
}

static nn_status check_call(nn_context *ctx, const char *call, const char *path,
                            const nn_load_options *options, nn_dataset **out) {
  if (!ctx)
    return NN_ERROR_INVALID_ARGUMENT;
  if (!out || !path)
    return NNLIB_FAIL_CALL(ctx, NN_ERROR_INVALID_ARGUMENT, call, "%s is NULL",
                           out ? "the path" : "out");
  *out = NULL;
  if (options->targets != NN_TARGETS_CLASSES &&
      options->targets != NN_TARGETS_BINARY &&
      options->targets != NN_TARGETS_VALUES)
    return NNLIB_FAIL_CALL(ctx, NN_ERROR_INVALID_ARGUMENT, call,
                           "unknown target kind %d", (int)options->targets);
  if (options->targets == NN_TARGETS_CLASSES && options->class_count == 1)
    return NNLIB_FAIL_CALL(ctx, NN_ERROR_INVALID_ARGUMENT, call,
                           "class_count 1: one-hot needs 0 (inferred) or >= "
                           "2 classes; NN_TARGETS_BINARY gives one 0/1 row");
  return NN_OK;
}

static bool ends_with(const char *text, const char *suffix) {
  size_t length = strlen(text), suffix_length = strlen(suffix);
  return length >= suffix_length &&
         strcmp(text + length - suffix_length, suffix) == 0;
}

/* Where "file.h5:dataset" splits: the colon after the first ".h5" or
 * ".hdf5" that one follows, or NULL. */
static const char *hdf5_colon(const char *path) {
  const char *h5 = strstr(path, ".h5:"), *hdf5 = strstr(path, ".hdf5:");
  if (h5 && (!hdf5 || h5 < hdf5))
    return h5 + 3;
  return hdf5 ? hdf5 + 5 : NULL;
}

static nn_status load_hdf5(nn_context *ctx, const char *call, const char *path,
                           const char *colon, nnlib_tensor *out) {
  if (colon[1] == '\0')
    return NNLIB_FAIL_CALL(ctx, NN_ERROR_INVALID_ARGUMENT, call,
                           "%s: no dataset name after the ':'", path);
  size_t length = (size_t)(colon - path);
  char *file = NULL;
  nn_status status = nnlib_host_alloc(ctx, length + 1, 1, (void **)&file);
  if (status != NN_OK)
    return status;
  memcpy(file, path, length);
  status = nnlib_hdf5_load(ctx, call, file, colon + 1, out);
  free(file);
  return status;
}

/* The tensor in path, read by the parser its name calls for. */
static nn_status load_tensor(nn_context *ctx, const char *call,
                             const char *path, nnlib_tensor *out) {
  const char *colon = hdf5_colon(path);
  if (colon)
    return load_hdf5(ctx, call, path, colon, out);
  if (ends_with(path, ".h5") || ends_with(path, ".hdf5"))
    return NNLIB_FAIL_CALL(ctx, NN_ERROR_INVALID_ARGUMENT, call,
                           "%s is an HDF5 file: name the dataset too, as in "
                           "'%s:train_set_x'",
                           path, path);
  if (ends_with(path, ".npy"))
    return nnlib_npy_load(ctx, call, path, out);
  return nnlib_idx_load(ctx, call, path, out);
}

static nn_status load_inputs(nn_context *ctx, const char *call,
                             const char *path, const nn_load_options *options,
                             float **x, size_t *input_width, size_t *m) {
  nnlib_tensor tensor = {0};
  nn_status status = load_tensor(ctx, call, path, &tensor);
  if (status == NN_OK)
    status = nnlib_tensor_to_inputs(ctx, call, path, &tensor, options, x,
                                    input_width, m);
  nnlib_tensor_free(&tensor);
  return status;
}

/* y must describe the m examples of x_path. */
static nn_status load_targets(nn_context *ctx, const char *call,
                              const char *x_path, const char *y_path,
                              const nn_load_options *options, size_t m,
                              float **y, size_t *target_width) {
  nnlib_tensor tensor = {0};
  size_t y_examples = 0;
  nn_status status = load_tensor(ctx, call, y_path, &tensor);
  if (status == NN_OK && tensor.shape[0] != m)
    status = NNLIB_FAIL_CALL(ctx, NN_ERROR_SHAPE_MISMATCH, call,
                             "x has %zu examples (%s) but y has %zu (%s)", m,
                             x_path, tensor.shape[0], y_path);
  if (status == NN_OK)
    status = nnlib_tensor_to_targets(ctx, call, y_path, &tensor, options, y,
                                     target_width, &y_examples);
  nnlib_tensor_free(&tensor);
  return status;
}

nn_status nn_dataset_load(nn_context *ctx, const char *x_path,
                          const char *y_path, const nn_load_options *options,
                          nn_dataset **out) {
  const char *call = __func__;
  nn_load_options defaults;
  options = options_or_defaults(options, &defaults);
  nn_status status = check_call(ctx, call, x_path, options, out);
  if (status != NN_OK)
    return status;
  float *x = NULL, *y = NULL;
  size_t input_width = 0, target_width = 0, m = 0;
  status = load_inputs(ctx, call, x_path, options, &x, &input_width, &m);
  if (status == NN_OK && y_path)
    status =
        load_targets(ctx, call, x_path, y_path, options, m, &y, &target_width);
  if (status != NN_OK) {
    free(x);
    return status;
  }
  return nnlib_dataset_adopt(ctx, input_width, target_width, m, x, y, out);
}

/* The CSV's tensors as X and Y. */
static nn_status csv_matrices(nn_context *ctx, const char *call,
                              const char *path, nnlib_tensor *inputs,
                              nnlib_tensor *targets,
                              const nn_load_options *options, float **x,
                              float **y, size_t widths[2], size_t *m) {
  nn_status status = nnlib_tensor_to_inputs(ctx, call, path, inputs, options, x,
                                            &widths[0], m);
  if (status == NN_OK && targets->data)
    status = nnlib_tensor_to_targets(ctx, call, path, targets, options, y,
                                     &widths[1], m);
  return status;
}

nn_status nn_dataset_load_csv(nn_context *ctx, const char *path,
                              const char *target_column,
                              const nn_load_options *options,
                              nn_dataset **out) {
  const char *call = __func__;
  nn_load_options defaults;
  options = options_or_defaults(options, &defaults);
  nn_status status = check_call(ctx, call, path, options, out);
  if (status != NN_OK)
    return status;
  FILE *file = fopen(path, "rbe");
  if (!file)
    return NNLIB_FAIL_CALL(ctx, NN_ERROR_IO, call, "%s: cannot open: %s", path,
                           strerror(errno));
  nnlib_tensor inputs = {0}, targets = {0};
  status =
      nnlib_csv_read(ctx, call, path, file, target_column, &inputs, &targets);
  fclose(file);
  float *x = NULL, *y = NULL;
  size_t widths[2] = {0, 0}, m = 0;
  if (status == NN_OK)
    status = csv_matrices(ctx, call, path, &inputs, &targets, options, &x, &y,
                          widths, &m);
  nnlib_tensor_free(&inputs);
  nnlib_tensor_free(&targets);
  if (status != NN_OK) {
    free(x);
    free(y);
    return status;
  }
  return nnlib_dataset_adopt(ctx, widths[0], widths[1], m, x, y, out);
}
