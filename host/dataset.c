/*
 * dataset.c — X (n_x × m) and Y (n_y × m) in host memory, examples as
 * columns, owned or borrowed.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* Shapes and pointers shared by every constructor. y_name and width_name
 * are how the caller spells the targets and their width ("y" and "n_y", or
 * "labels" and "class_count"), so that messages name what was passed. */
static nn_status check_shape(nn_context *ctx, const char *call,
                             size_t input_width, size_t target_width,
                             size_t example_count, const float *x,
                             const void *y, const char *y_name,
                             const char *width_name, nn_dataset **out) {
  if (!ctx)
    return NN_ERROR_INVALID_ARGUMENT;
  if (!out)
    return NNLIB_FAIL_CALL(ctx, NN_ERROR_INVALID_ARGUMENT, call, "out is NULL");
  *out = NULL;
  if (!x || !y)
    return NNLIB_FAIL_CALL(ctx, NN_ERROR_INVALID_ARGUMENT, call, "%s is NULL",
                           x ? y_name : "x");
  if (input_width == 0 || target_width == 0 || example_count == 0)
    return NNLIB_FAIL_CALL(ctx, NN_ERROR_SHAPE_MISMATCH, call,
                           "empty dataset: n_x = %zu, %s = %zu, m = %zu",
                           input_width, width_name, target_width,
                           example_count);
  size_t total;
  if (!nnlib_checked_mul(input_width, example_count, &total) ||
      !nnlib_checked_mul(target_width, example_count, &total))
    return NNLIB_FAIL_CALL(ctx, NN_ERROR_SHAPE_MISMATCH, call,
                           "n × m overflows: n_x = %zu, n_y = %zu, m = %zu",
                           input_width, target_width, example_count);
  return NN_OK;
}

/* Rejects NaN/Inf in a (rows × m) matrix, naming row and example. */
static nn_status check_finite(nn_context *ctx, const char *call,
                              const char *name, const float *values,
                              size_t rows, size_t example_count) {
  size_t bad = nnlib_first_non_finite(values, rows * example_count);
  if (bad == rows * example_count)
    return NN_OK;
  return NNLIB_FAIL_CALL(ctx, NN_ERROR_INVALID_DATA, call,
                         "%s[row %zu, example %zu] is %g", name, bad % rows,
                         bad / rows, (double)values[bad]);
}

static nn_status new_dataset(nn_context *ctx, size_t input_width,
                             size_t target_width, size_t example_count,
                             bool owning, nn_dataset **out) {
  nn_dataset *dataset = NULL;
  nn_status status =
      nnlib_host_alloc(ctx, 1, sizeof *dataset, (void **)&dataset);
  if (status != NN_OK)
    return status;
  dataset->ctx = ctx;
  dataset->input_width = input_width;
  dataset->target_width = target_width;
  dataset->example_count = example_count;
  if (owning) {
    status = nnlib_host_alloc(ctx, input_width * example_count, sizeof(float),
                              (void **)&dataset->owned_x);
    if (status == NN_OK)
      status = nnlib_host_alloc(ctx, target_width * example_count,
                                sizeof(float), (void **)&dataset->owned_y);
    if (status != NN_OK) {
      nn_dataset_destroy(dataset);
      return status;
    }
    dataset->x = dataset->owned_x;
    dataset->y = dataset->owned_y;
  }
  *out = dataset;
  return NN_OK;
}

static nn_status create_checked(nn_context *ctx, const char *call,
                                size_t input_width, size_t target_width,
                                size_t example_count, const float *x,
                                const float *y, bool owning, nn_dataset **out) {
  nn_status status = check_shape(ctx, call, input_width, target_width,
                                 example_count, x, y, "y", "n_y", out);
  if (status == NN_OK)
    status = check_finite(ctx, call, "X", x, input_width, example_count);
  if (status == NN_OK)
    status = check_finite(ctx, call, "Y", y, target_width, example_count);
  if (status == NN_OK)
    status =
        new_dataset(ctx, input_width, target_width, example_count, owning, out);
  if (status != NN_OK)
    return status;
  if (owning) {
    memcpy((*out)->owned_x, x, input_width * example_count * sizeof(float));
    memcpy((*out)->owned_y, y, target_width * example_count * sizeof(float));
  } else {
    (*out)->x = x;
    (*out)->y = y;
  }
  return NN_OK;
}

nn_status nn_dataset_create(nn_context *ctx, size_t input_width,
                            size_t target_width, size_t example_count,
                            const float *x, const float *y, nn_dataset **out) {
  return create_checked(ctx, __func__, input_width, target_width, example_count,
                        x, y, true, out);
}

nn_status nn_dataset_view(nn_context *ctx, size_t input_width,
                          size_t target_width, size_t example_count,
                          const float *x, const float *y, nn_dataset **out) {
  return create_checked(ctx, __func__, input_width, target_width, example_count,
                        x, y, false, out);
}

/* Labels -> targets: one-hot columns (class_count >= 2) or a 0/1 row. */
static nn_status encode_labels(nn_context *ctx, const int32_t *labels,
                               size_t example_count, size_t class_count,
                               float *targets) {
  size_t limit = class_count == 1 ? 2 : class_count;
  for (size_t j = 0; j < example_count; j++) {
    if (labels[j] < 0 || (size_t)labels[j] >= limit)
      return NNLIB_FAIL_CALL(ctx, NN_ERROR_INVALID_DATA,
                             "nn_dataset_create_from_labels",
                             "label of example %zu is %d, outside 0..%zu", j,
                             (int)labels[j], limit - 1);
    if (class_count == 1)
      targets[j] = (float)labels[j];
    else
      targets[j * class_count + (size_t)labels[j]] = 1.0f;
  }
  return NN_OK;
}

nn_status nn_dataset_create_from_labels(nn_context *ctx, size_t input_width,
                                        size_t example_count, const float *x,
                                        const int32_t *labels,
                                        size_t class_count, nn_dataset **out) {
  const char *call = __func__;
  nn_status status =
      check_shape(ctx, call, input_width, class_count, example_count, x, labels,
                  "labels", "class_count", out);
  if (status == NN_OK)
    status = check_finite(ctx, call, "X", x, input_width, example_count);
  if (status == NN_OK)
    status =
        new_dataset(ctx, input_width, class_count, example_count, true, out);
  if (status != NN_OK)
    return status;
  memcpy((*out)->owned_x, x, input_width * example_count * sizeof(float));
  status =
      encode_labels(ctx, labels, example_count, class_count, (*out)->owned_y);
  if (status != NN_OK) {
    nn_dataset_destroy(*out);
    *out = NULL;
  }
  return status;
}

nn_status nnlib_dataset_gather(nn_context *ctx, const nn_dataset *source,
                               const size_t *columns, size_t count,
                               nn_dataset **out) {
  const size_t nx = source->input_width, ny = source->target_width;
  nn_status status = new_dataset(ctx, nx, ny, count, true, out);
  if (status != NN_OK)
    return status;
  for (size_t j = 0; j < count; j++) {
    memcpy((*out)->owned_x + j * nx, source->x + columns[j] * nx,
           nx * sizeof(float));
    memcpy((*out)->owned_y + j * ny, source->y + columns[j] * ny,
           ny * sizeof(float));
  }
  return NN_OK;
}

nn_status nnlib_dataset_adopt(nn_context *ctx, size_t input_width,
                              size_t target_width, size_t example_count,
                              float *x, float *y, nn_dataset **out) {
  nn_status status = NN_OK;
  size_t total;
  if (input_width == 0 || example_count == 0 || (target_width == 0) != !y ||
      !nnlib_checked_mul(input_width, example_count, &total) ||
      !nnlib_checked_mul(target_width, example_count, &total))
    status = NNLIB_FAIL(ctx, NN_ERROR_SHAPE_MISMATCH,
                        "n_x = %zu, n_y = %zu (y %s), m = %zu", input_width,
                        target_width, y ? "given" : "NULL", example_count);
  if (status == NN_OK)
    status =
        new_dataset(ctx, input_width, target_width, example_count, false, out);
  if (status != NN_OK) {
    free(x);
    free(y);
    return status;
  }
  (*out)->x = (*out)->owned_x = x;
  (*out)->y = (*out)->owned_y = y;
  return NN_OK;
}

void nn_dataset_destroy(nn_dataset *dataset) {
  if (!dataset)
    return;
  free(dataset->owned_x);
  free(dataset->owned_y);
  free(dataset);
}

size_t nn_dataset_input_width(const nn_dataset *dataset) {
  return dataset ? dataset->input_width : 0;
}

size_t nn_dataset_target_width(const nn_dataset *dataset) {
  return dataset ? dataset->target_width : 0;
}

size_t nn_dataset_example_count(const nn_dataset *dataset) {
  return dataset ? dataset->example_count : 0;
}

const float *nn_dataset_inputs(const nn_dataset *dataset) {
  return dataset ? dataset->x : NULL;
}

const float *nn_dataset_targets(const nn_dataset *dataset) {
  return dataset ? dataset->y : NULL;
}
