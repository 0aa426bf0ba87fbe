/*
 * context.c — the context: which backend runs, and the last error.
 */
#include "backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void copy_message(char *destination, size_t size, const char *text) {
  if (destination && size > 0)
    snprintf(destination, size, "%s", text);
}

/* On the CPU the notice also says when OpenBLAS could run faster kernels
 * (host/cpu_blas.c), after the fallback's reason if there is one. */
static void append_blas_advice(nn_context *ctx) {
  char advice[256];
  nnlib_cpu_blas_advice(advice, sizeof advice);
  if (!advice[0])
    return;
  nnlib_note(ctx, "%s", advice);
}

/* Picks the backend for AUTO / CUDA / CPU; AUTO records why it fell back. */
static nn_status open_backend(nn_context *ctx, nn_backend_kind kind,
                              int device_index) {
  if (kind == NN_BACKEND_CUDA || kind == NN_BACKEND_AUTO) {
    nn_status status =
        nnlib_cuda_backend_create(ctx, device_index, &ctx->backend,
                                  ctx->backend_name, sizeof ctx->backend_name);
    if (status == NN_OK) {
      ctx->backend_kind = NN_BACKEND_CUDA;
      return NN_OK;
    }
    if (kind == NN_BACKEND_CUDA)
      return status;
    nnlib_note(ctx, "no usable GPU, training on the CPU (%.200s)",
               ctx->last_error);
    ctx->last_error[0] = '\0';
  }
  ctx->backend_kind = NN_BACKEND_CPU;
  snprintf(ctx->backend_name, sizeof ctx->backend_name, "cpu");
  append_blas_advice(ctx);
  return nnlib_cpu_backend_create(ctx, &ctx->backend);
}

nn_status nn_context_create(nn_backend_kind backend, int device_index,
                            nn_context **out, char *error_message,
                            size_t error_message_size) {
  copy_message(error_message, error_message_size, "");
  if (!out) {
    copy_message(error_message, error_message_size,
                 "nn_context_create: out is NULL");
    return NN_ERROR_INVALID_ARGUMENT;
  }
  *out = NULL;
  if (backend != NN_BACKEND_AUTO && backend != NN_BACKEND_CPU &&
      backend != NN_BACKEND_CUDA) {
    copy_message(error_message, error_message_size,
                 "nn_context_create: unknown backend kind");
    return NN_ERROR_INVALID_ARGUMENT;
  }
  if (device_index < 0) {
    copy_message(error_message, error_message_size,
                 "nn_context_create: device index must be >= 0");
    return NN_ERROR_INVALID_ARGUMENT;
  }
  nn_context *ctx = calloc(1, sizeof *ctx);
  if (!ctx) {
    copy_message(error_message, error_message_size,
                 "nn_context_create: out of host memory");
    return NN_ERROR_OUT_OF_MEMORY;
  }
  ctx->device_index = device_index;
  nn_status status = open_backend(ctx, backend, device_index);
  if (status != NN_OK) {
    copy_message(error_message, error_message_size, ctx->last_error);
    nn_context_destroy(ctx);
    return status;
  }
  *out = ctx;
  return NN_OK;
}

void nn_context_destroy(nn_context *ctx) {
  if (!ctx)
    return;
  if (ctx->backend)
    ctx->backend->ops->destroy(ctx->backend);
  free(ctx);
}

const char *nn_context_last_error(const nn_context *ctx) {
  return ctx ? ctx->last_error : "nn_context_last_error: context is NULL";
}

void nn_context_clear_error(nn_context *ctx) {
  if (ctx)
    ctx->last_error[0] = '\0';
}

const char *nn_context_backend_name(const nn_context *ctx) {
  return ctx ? ctx->backend_name : "";
}

nn_backend_kind nn_context_backend(const nn_context *ctx) {
  return ctx ? ctx->backend_kind : NN_BACKEND_CPU;
}

const char *nn_context_notice(const nn_context *ctx) {
  return ctx ? ctx->notice : "";
}

const char *nn_context_faster_blas_core(const nn_context *ctx) {
  if (!ctx || ctx->backend_kind != NN_BACKEND_CPU)
    return NULL;
  return nnlib_cpu_blas_better_core();
}
