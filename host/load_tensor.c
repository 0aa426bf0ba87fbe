/*
 * load_tensor.c — tensors read from data files, and their conversion into
 * X (n_x × m) and Y (n_y × m). A tensor (m, d1, d2, ...) is sample-major,
 * the same bytes as X column-major, so examples are converted in place
 * order, element by element.
 */
#include "load_tensor.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Class ids are stored in float Y; past 2^24 floats skip integers, and an
 * inferred class count that large is a wrong file rather than a task. */
#define MAX_INFERRED_CLASSES 16777216.0

size_t nnlib_dtype_size(nnlib_dtype dtype) {
  static const size_t sizes[] = {1, 1, 2, 2, 4, 4, 8, 4, 8};
  return sizes[dtype];
}

const char *nnlib_dtype_name(nnlib_dtype dtype) {
  static const char *const names[] = {"uint8", "int8",    "uint16",
                                      "int16", "uint32",  "int32",
                                      "int64", "float32", "float64"};
  return names[dtype];
}

nn_status nnlib_tensor_set_shape(nn_context *ctx, const char *call,
                                 const char *file, nnlib_tensor *tensor,
                                 nnlib_dtype dtype, size_t rank,
                                 const uint64_t *shape) {
  if (rank == 0 || rank > NNLIB_TENSOR_MAX_RANK)
    return NNLIB_FAIL_CALL(ctx, NN_ERROR_FORMAT, call,
                           "%s: %zu dimensions; need 1 to %d (examples "
                           "first)",
                           file, rank, NNLIB_TENSOR_MAX_RANK);
  size_t count = nnlib_dtype_size(dtype), elements = 1;
  for (size_t d = 0; d < rank; d++) {
    if (shape[d] > SIZE_MAX || !nnlib_checked_mul(count, shape[d], &count) ||
        !nnlib_checked_mul(elements, shape[d], &elements))
      return NNLIB_FAIL_CALL(ctx, NN_ERROR_FORMAT, call,
                             "%s: the dimensions overflow the address space "
                             "(dimension %zu is %llu)",
                             file, d, (unsigned long long)shape[d]);
    tensor->shape[d] = (size_t)shape[d];
  }
  tensor->dtype = dtype;
  tensor->rank = rank;
  tensor->count = elements;
  return NN_OK;
}

void nnlib_tensor_shape_text(const nnlib_tensor *tensor, char *text,
                             size_t size) {
  size_t used = (size_t)snprintf(text, size, "(");
  for (size_t d = 0; d < tensor->rank && used < size; d++)
    used += (size_t)snprintf(text + used, size - used, "%s%zu", d ? ", " : "",
                             tensor->shape[d]);
  if (used < size)
    snprintf(text + used, size - used, ")");
}

void nnlib_tensor_free(nnlib_tensor *tensor) {
  if (!tensor)
    return;
  free(tensor->data);
  tensor->data = NULL;
  tensor->count = 0;
}

/* Element i as a double; every dtype fits (int64 rounds past 2^53). */
static double element(const nnlib_tensor *tensor, size_t i) {
  switch (tensor->dtype) {
  case NNLIB_DTYPE_UINT8:
    return ((const uint8_t *)tensor->data)[i];
  case NNLIB_DTYPE_INT8:
    return ((const int8_t *)tensor->data)[i];
  case NNLIB_DTYPE_UINT16:
    return ((const uint16_t *)tensor->data)[i];
  case NNLIB_DTYPE_INT16:
    return ((const int16_t *)tensor->data)[i];
  case NNLIB_DTYPE_UINT32:
    return ((const uint32_t *)tensor->data)[i];
  case NNLIB_DTYPE_INT32:
    return ((const int32_t *)tensor->data)[i];
  case NNLIB_DTYPE_INT64:
    return (double)((const int64_t *)tensor->data)[i];
  case NNLIB_DTYPE_FLOAT32:
    return ((const float *)tensor->data)[i];
  case NNLIB_DTYPE_FLOAT64:
    return ((const double *)tensor->data)[i];
  }
  return NAN;
}

/* m and the per-example width of a tensor (m, ...); both must be > 0. */
static nn_status split_shape(nn_context *ctx, const char *call,
                             const char *file, const nnlib_tensor *tensor,
                             size_t *width, size_t *m) {
  *m = tensor->shape[0];
  *width = *m ? tensor->count / *m : 0;
  if (*m && *width)
    return NN_OK;
  char shape[160];
  nnlib_tensor_shape_text(tensor, shape, sizeof shape);
  return NNLIB_FAIL_CALL(ctx, NN_ERROR_SHAPE_MISMATCH, call,
                         "%s: shape %s holds no %s", file, shape,
                         *m ? "values per example" : "examples");
}

/* uint8 -> float through a table: 47M pixels of Fashion-MNIST convert at
 * memory speed. /255.0 in double then rounded, as numpy's x / 255. then
 * astype(float32). */
static void convert_uint8(const uint8_t *in, size_t count, bool scale,
                          float *out) {
  float table[256];
  for (int v = 0; v < 256; v++)
    table[v] = scale ? (float)(v / 255.0) : (float)v;
  for (size_t i = 0; i < count; i++)
    out[i] = table[in[i]];
}

/* Any dtype into float. Returns the first element that is not finite or
 * lies outside float's range (converting those is undefined), or count. */
static size_t convert(const nnlib_tensor *tensor, bool scale_uint8,
                      float *out) {
  if (tensor->dtype == NNLIB_DTYPE_UINT8) {
    convert_uint8(tensor->data, tensor->count, scale_uint8, out);
    return tensor->count;
  }
  for (size_t i = 0; i < tensor->count; i++) {
    double value = element(tensor, i);
    if (!(fabs(value) <= FLT_MAX))
      return i;
    out[i] = (float)value;
  }
  return tensor->count;
}

/* (m × width) floats converted from the tensor; a float32 tensor's buffer
 * is taken over. what names a row in messages ("feature", "target"). */
static nn_status to_matrix(nn_context *ctx, const char *call, const char *file,
                           nnlib_tensor *tensor, bool scale_uint8,
                           const char *what, size_t width, float **out) {
  float *values = NULL;
  size_t bad;
  double value;
  if (tensor->dtype == NNLIB_DTYPE_FLOAT32) {
    values = tensor->data;
    tensor->data = NULL;
    bad = nnlib_first_non_finite(values, tensor->count);
    value = bad < tensor->count ? values[bad] : 0.0;
  } else {
    nn_status status =
        nnlib_host_alloc(ctx, tensor->count, sizeof(float), (void **)&values);
    if (status != NN_OK)
      return status;
    bad = convert(tensor, scale_uint8, values);
    value = bad < tensor->count ? element(tensor, bad) : 0.0;
  }
  if (bad < tensor->count) {
    free(values);
    return NNLIB_FAIL_CALL(ctx, NN_ERROR_INVALID_DATA, call,
                           "%s: example %zu, %s %zu is %g (values must be "
                           "finite and fit in float32)",
                           file, bad / width, what, bad % width, value);
  }
  *out = values;
  return NN_OK;
}

nn_status nnlib_tensor_to_inputs(nn_context *ctx, const char *call,
                                 const char *file, nnlib_tensor *tensor,
                                 const nn_load_options *options, float **x,
                                 size_t *input_width, size_t *example_count) {
  nn_status status =
      split_shape(ctx, call, file, tensor, input_width, example_count);
  if (status != NN_OK)
    return status;
  return to_matrix(ctx, call, file, tensor, options->scale_uint8 != 0,
                   "feature", *input_width, x);
}

/* Class ids and 0/1 labels come one per example: (m) or (m, 1). */
static nn_status check_label_shape(nn_context *ctx, const char *call,
                                   const char *file,
                                   const nnlib_tensor *tensor) {
  if (tensor->rank == 1 || (tensor->rank == 2 && tensor->shape[1] == 1))
    return NN_OK;
  char shape[160];
  nnlib_tensor_shape_text(tensor, shape, sizeof shape);
  return NNLIB_FAIL_CALL(ctx, NN_ERROR_SHAPE_MISMATCH, call,
                         "%s: labels must have shape (m) or (m, 1), not %s "
                         "(NN_TARGETS_VALUES takes (m, k))",
                         file, shape);
}

/* Checks every label is a whole number in 0..limit-1 and returns the
 * largest in *largest. limit 0: only 0..2^24-1 (the count is inferred). */
static nn_status check_class_ids(nn_context *ctx, const char *call,
                                 const char *file, const nnlib_tensor *tensor,
                                 size_t limit, double *largest) {
  const double bound = limit ? (double)limit : MAX_INFERRED_CLASSES;
  *largest = 0;
  for (size_t j = 0; j < tensor->count; j++) {
    double label = element(tensor, j);
    const char *problem = NULL;
    if (!(label == floor(label)) || !isfinite(label))
      problem = "not a whole number";
    else if (label < 0 || label >= bound)
      problem = limit ? "outside 0..class_count-1"
                      : "not a class id below "
                        "2^24 (set class_count)";
    if (problem)
      return NNLIB_FAIL_CALL(ctx, NN_ERROR_INVALID_DATA, call,
                             "%s: label of example %zu is %g: %s "
                             "(class_count %zu)",
                             file, j, label, problem, limit);
    *largest = fmax(*largest, label);
  }
  return NN_OK;
}

/* One-hot columns: example j's column has a 1 in row labels[j]. */
static nn_status one_hot(nn_context *ctx, const char *call, const char *file,
                         const nnlib_tensor *tensor, size_t class_count,
                         float **y, size_t *target_width) {
  double largest;
  nn_status status =
      check_class_ids(ctx, call, file, tensor, class_count, &largest);
  if (status != NN_OK)
    return status;
  size_t classes = class_count ? class_count : (size_t)largest + 1;
  if (classes < 2)
    return NNLIB_FAIL_CALL(ctx, NN_ERROR_INVALID_DATA, call,
                           "%s: every label is 0, one class; set class_count "
                           "or use NN_TARGETS_BINARY",
                           file);
  float *values = NULL;
  const size_t m = tensor->count;
  size_t total = 0;
  if (!nnlib_checked_mul(classes, m, &total))
    return NNLIB_FAIL_CALL(ctx, NN_ERROR_OUT_OF_MEMORY, call,
                           "%s: %zu classes × %zu examples overflow", file,
                           classes, m);
  status = nnlib_host_alloc(ctx, total, sizeof(float), (void **)&values);
  if (status != NN_OK)
    return status;
  for (size_t j = 0; j < m; j++)
    values[j * classes + (size_t)element(tensor, j)] = 1.0f;
  *y = values;
  *target_width = classes;
  return NN_OK;
}

/* One row of 0/1. */
static nn_status binary_row(nn_context *ctx, const char *call, const char *file,
                            nnlib_tensor *tensor, float **y,
                            size_t *target_width) {
  for (size_t j = 0; j < tensor->count; j++) {
    double label = element(tensor, j);
    if (label != 0.0 && label != 1.0)
      return NNLIB_FAIL_CALL(ctx, NN_ERROR_INVALID_DATA, call,
                             "%s: label of example %zu is %g; "
                             "NN_TARGETS_BINARY needs 0 or 1",
                             file, j, label);
  }
  *target_width = 1;
  return to_matrix(ctx, call, file, tensor, false, "target", 1, y);
}

nn_status nnlib_tensor_to_targets(nn_context *ctx, const char *call,
                                  const char *file, nnlib_tensor *tensor,
                                  const nn_load_options *options, float **y,
                                  size_t *target_width, size_t *example_count) {
  size_t width;
  nn_status status =
      split_shape(ctx, call, file, tensor, &width, example_count);
  if (status != NN_OK)
    return status;
  if (options->targets == NN_TARGETS_VALUES) {
    *target_width = width;
    return to_matrix(ctx, call, file, tensor, false, "target", width, y);
  }
  status = check_label_shape(ctx, call, file, tensor);
  if (status != NN_OK)
    return status;
  if (options->targets == NN_TARGETS_BINARY)
    return binary_row(ctx, call, file, tensor, y, target_width);
  return one_hot(ctx, call, file, tensor, options->class_count, y,
                 target_width);
}
