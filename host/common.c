/*
 * common.c — errors, checked allocation, names of enums, seeded host
 * randomness: the small pieces every other file uses.
 */
#include "backend.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "host/model.c" from the compiler's full path. */
static const char *source_relative(const char *file) {
  static const char *const roots[] = {"/host/", "/cuda/"};
  for (size_t i = 0; i < sizeof roots / sizeof roots[0]; i++) {
    const char *found = strstr(file, roots[i]);
    if (found)
      return found + 1;
  }
  return file;
}

nn_status nnlib_fail(nn_context *ctx, nn_status status, const char *call,
                     const char *file, int line, const char *format, ...) {
  if (!ctx)
    return status;
  char *text = ctx->last_error;
  const size_t capacity = sizeof ctx->last_error;
  size_t used = (size_t)snprintf(text, capacity, "%s: ", call);
  va_list args;
  va_start(args, format);
  if (used < capacity)
    used += (size_t)vsnprintf(text + used, capacity - used, format, args);
  va_end(args);
  if (used < capacity)
    snprintf(text + used, capacity - used, " [%s:%d]", source_relative(file),
             line);
  return status;
}

/* Appends separator and text to the notice, which has used characters,
 * if both fit within capacity. */
static bool append_note(char *notice, size_t used, size_t capacity,
                        const char *separator, const char *text) {
  if (used + strlen(separator) + strlen(text) >= capacity)
    return false;
  snprintf(notice + used, capacity - used, "%s%s", separator, text);
  return true;
}

void nnlib_note(nn_context *ctx, const char *format, ...) {
  if (!ctx)
    return;
  char note[NNLIB_NOTICE_CAPACITY];
  va_list args;
  va_start(args, format);
  vsnprintf(note, sizeof note, format, args);
  va_end(args);
  char *notice = ctx->notice;
  const size_t used = strlen(notice), mark = strlen(NNLIB_NOTICE_FULL);
  const bool full =
      used >= mark && strcmp(notice + used - mark, NNLIB_NOTICE_FULL) == 0;
  if (!note[0] || full || strstr(notice, note))
    return;
  /* Room is kept for the mark (and its separator). */
  const char *separator = used ? "; " : "";
  if (!append_note(notice, used, sizeof ctx->notice - (2 + mark), separator,
                   note))
    append_note(notice, used, sizeof ctx->notice, separator, NNLIB_NOTICE_FULL);
}

bool nnlib_checked_mul(size_t a, size_t b, size_t *out) {
  if (a != 0 && b > SIZE_MAX / a)
    return false;
  *out = a * b;
  return true;
}

nn_status nnlib_host_alloc(nn_context *ctx, size_t count, size_t size,
                           void **out) {
  size_t bytes;
  *out = NULL;
  if (!nnlib_checked_mul(count, size, &bytes))
    return NNLIB_FAIL(ctx, NN_ERROR_OUT_OF_MEMORY,
                      "%zu elements of %zu bytes overflow the address space",
                      count, size);
  void *memory = calloc(count ? count : 1, size ? size : 1);
  if (!memory)
    return NNLIB_FAIL(ctx, NN_ERROR_OUT_OF_MEMORY,
                      "host allocation of %zu bytes failed", bytes);
  *out = memory;
  return NN_OK;
}

size_t nnlib_first_non_finite(const float *values, size_t count) {
  for (size_t i = 0; i < count; i++)
    if (!isfinite(values[i]))
      return i;
  return count;
}

const char *nn_status_str(nn_status status) {
  switch (status) {
  case NN_OK:
    return "ok";
  case NN_ERROR_INVALID_ARGUMENT:
    return "invalid argument";
  case NN_ERROR_INVALID_SPEC:
    return "invalid model spec";
  case NN_ERROR_SHAPE_MISMATCH:
    return "shape mismatch";
  case NN_ERROR_INVALID_DATA:
    return "invalid data";
  case NN_ERROR_OUT_OF_MEMORY:
    return "out of memory";
  case NN_ERROR_NUMERIC:
    return "numeric failure (NaN or Inf)";
  case NN_ERROR_NO_DEVICE:
    return "no usable GPU";
  case NN_ERROR_BACKEND:
    return "backend library failure";
  case NN_ERROR_IO:
    return "I/O error";
  case NN_ERROR_FORMAT:
    return "malformed file";
  case NN_ERROR_UNSUPPORTED:
    return "unsupported";
  case NN_ERROR_STATE:
    return "call out of order";
  case NN_ERROR_STOPPED:
    return "stopped by callback";
  }
  return "unknown status";
}

/* ------------------------------------------------------------------------ */
/* Names                                                                     */
/* ------------------------------------------------------------------------ */

static const char *const activation_names[NN_ACTIVATION_COUNT] = {
    "linear",  "relu", "leaky_relu", "tanh",
    "sigmoid", "gelu", "softmax",    "gelu_tanh"};
static const char *const loss_names[NN_LOSS_COUNT] = {
    "binary_cross_entropy", "categorical_cross_entropy", "mean_squared_error"};
static const char *const init_names[NN_INIT_COUNT] = {"zeros", "normal", "he",
                                                      "xavier", "glorot"};
static const char *const optimizer_names[NN_OPTIMIZER_COUNT] = {
    "gd", "momentum", "rmsprop", "adam"};

static const char *const precision_names[NN_PRECISION_COUNT] = {"fp32", "tf32",
                                                                "bf16"};
static const char *const fusion_names[NN_FUSION_COUNT] = {"auto", "off"};

static nn_status find_name(const char *const *names, int count,
                           const char *name, int *out) {
  if (!name)
    return NN_ERROR_INVALID_ARGUMENT;
  for (int i = 0; i < count; i++)
    if (strcmp(names[i], name) == 0) {
      *out = i;
      return NN_OK;
    }
  return NN_ERROR_INVALID_ARGUMENT;
}

#define NAME_OR_UNKNOWN(table, value, count)                                   \
  ((int)(value) >= 0 && (int)(value) < (count) ? (table)[(value)] : "?")

const char *nn_activation_name(nn_activation activation) {
  return NAME_OR_UNKNOWN(activation_names, activation, NN_ACTIVATION_COUNT);
}

const char *nn_loss_name(nn_loss loss) {
  return NAME_OR_UNKNOWN(loss_names, loss, NN_LOSS_COUNT);
}

const char *nn_init_name(nn_init init) {
  return NAME_OR_UNKNOWN(init_names, init, NN_INIT_COUNT);
}

const char *nn_optimizer_name(nn_optimizer optimizer) {
  return NAME_OR_UNKNOWN(optimizer_names, optimizer, NN_OPTIMIZER_COUNT);
}

const char *nn_precision_name(nn_precision precision) {
  return NAME_OR_UNKNOWN(precision_names, precision, NN_PRECISION_COUNT);
}

const char *nn_fusion_name(nn_fusion fusion) {
  return NAME_OR_UNKNOWN(fusion_names, fusion, NN_FUSION_COUNT);
}

#define DEFINE_FROM_NAME(function, type, table, count)                         \
  nn_status function(const char *name, type *out) {                            \
    int index = 0;                                                             \
    if (!out || find_name(table, count, name, &index) != NN_OK)                \
      return NN_ERROR_INVALID_ARGUMENT;                                        \
    *out = (type)index;                                                        \
    return NN_OK;                                                              \
  }

DEFINE_FROM_NAME(nn_activation_from_name, nn_activation, activation_names,
                 NN_ACTIVATION_COUNT)
DEFINE_FROM_NAME(nn_loss_from_name, nn_loss, loss_names, NN_LOSS_COUNT)
DEFINE_FROM_NAME(nn_init_from_name, nn_init, init_names, NN_INIT_COUNT)
DEFINE_FROM_NAME(nn_optimizer_from_name, nn_optimizer, optimizer_names,
                 NN_OPTIMIZER_COUNT)
DEFINE_FROM_NAME(nn_precision_from_name, nn_precision, precision_names,
                 NN_PRECISION_COUNT)
DEFINE_FROM_NAME(nn_fusion_from_name, nn_fusion, fusion_names, NN_FUSION_COUNT)

nn_activation nn_loss_output_activation(nn_loss loss) {
  switch (loss) {
  case NN_LOSS_BINARY_CROSS_ENTROPY:
    return NN_ACTIVATION_SIGMOID;
  case NN_LOSS_CATEGORICAL_CROSS_ENTROPY:
    return NN_ACTIVATION_SOFTMAX;
  default:
    return NN_ACTIVATION_LINEAR;
  }
}

/* ------------------------------------------------------------------------ */
/* Seeded host randomness                                                    */
/* ------------------------------------------------------------------------ */

uint64_t nnlib_mix64(uint64_t value) {
  value += 0x9E3779B97F4A7C15ull;
  value = (value ^ (value >> 30)) * 0xBF58476D1CE4E5B9ull;
  value = (value ^ (value >> 27)) * 0x94D049BB133111EBull;
  return value ^ (value >> 31);
}

/* Uniform in [0, bound) without modulo bias (Lemire's multiply-shift with
 * rejection). */
static uint64_t bounded(uint64_t *state, uint64_t bound) {
  uint64_t threshold = (0 - bound) % bound;
  for (;;) {
    *state += 0x9E3779B97F4A7C15ull;
    uint64_t draw = nnlib_mix64(*state);
    unsigned __int128 product = (unsigned __int128)draw * bound;
    if ((uint64_t)product >= threshold)
      return (uint64_t)(product >> 64);
  }
}

void nnlib_permutation(size_t *order, size_t count, uint64_t seed) {
  for (size_t i = 0; i < count; i++)
    order[i] = i;
  uint64_t state = nnlib_mix64(seed);
  for (size_t i = count; i > 1; i--) {
    size_t j = (size_t)bounded(&state, i);
    size_t swap = order[i - 1];
    order[i - 1] = order[j];
    order[j] = swap;
  }
}

nn_status nnlib_check_gather_range(nn_context *ctx, size_t first, size_t count,
                                   size_t order_count) {
  if (first <= order_count && count <= order_count - first)
    return NN_OK;
  return NNLIB_FAIL_CALL(ctx, NN_ERROR_INVALID_ARGUMENT, "gather_columns",
                         "positions %zu..%zu of an order of %zu (internal: "
                         "set_gather_order first)",
                         first, first + count, order_count);
}
