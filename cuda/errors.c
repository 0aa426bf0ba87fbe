/*
 * errors.c — CUDA runtime, cuBLAS and cuRAND failures as nn_status with a
 * message on the context: "call: the library's own error string (its name)
 * [file:line]". Nothing here prints or exits.
 */
#include "cuda_backend.h"

#include <ctype.h>
#include <stdio.h>

/* "cudaMemcpyAsync" from "cudaMemcpyAsync(dst, src, ...)": the call to name
 * in the message, without its arguments. */
static void copy_call_name(char *name, size_t size, const char *expression) {
  size_t used = 0;
  while (used + 1 < size && (isalnum((unsigned char)expression[used]) ||
                             expression[used] == '_')) {
    name[used] = expression[used];
    used++;
  }
  name[used] = '\0';
}

nn_status nnlib_cuda_check(nn_context *ctx, cudaError_t error,
                           const char *expression, const char *file, int line) {
  if (error == cudaSuccess)
    return NN_OK;
  /* A non-sticky error stays "last" until read: read it now so the next
   * launch check reports only its own failure. */
  (void)cudaGetLastError();
  char call[96];
  copy_call_name(call, sizeof call, expression);
  return nnlib_fail(ctx, NN_ERROR_BACKEND, call, file, line, "%s (%s)",
                    cudaGetErrorString(error), cudaGetErrorName(error));
}

nn_status nnlib_cuda_check_launch(nn_context *ctx, const char *kernel,
                                  const char *file, int line) {
  cudaError_t error = cudaGetLastError();
  if (error == cudaSuccess)
    return NN_OK;
  return nnlib_fail(ctx, NN_ERROR_BACKEND, kernel, file, line,
                    "kernel launch failed: %s (%s)", cudaGetErrorString(error),
                    cudaGetErrorName(error));
}

nn_status nnlib_cuda_check_allocation(nn_context *ctx, cudaError_t error,
                                      const char *call, size_t bytes,
                                      bool device_memory, const char *file,
                                      int line) {
  if (error == cudaSuccess)
    return NN_OK;
  if (error != cudaErrorMemoryAllocation)
    return nnlib_cuda_check(ctx, error, call, file, line);
  (void)cudaGetLastError();
  if (!device_memory)
    return nnlib_fail(ctx, NN_ERROR_OUT_OF_MEMORY, call, file, line,
                      "pinned host allocation of %zu bytes failed: %s", bytes,
                      cudaGetErrorString(error));
  size_t free_bytes = 0, total_bytes = 0;
  if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) {
    (void)cudaGetLastError();
    return nnlib_fail(ctx, NN_ERROR_OUT_OF_MEMORY, call, file, line,
                      "device allocation of %zu bytes failed: %s", bytes,
                      cudaGetErrorString(error));
  }
  return nnlib_fail(ctx, NN_ERROR_OUT_OF_MEMORY, call, file, line,
                    "device allocation of %zu bytes failed: %zu bytes free "
                    "of %zu",
                    bytes, free_bytes, total_bytes);
}

nn_status nnlib_cublas_check(nn_context *ctx, cublasStatus_t status,
                             const char *expression, const char *file,
                             int line) {
  if (status == CUBLAS_STATUS_SUCCESS)
    return NN_OK;
  /* A failed cuBLAS launch leaves the runtime's error set too. */
  (void)cudaGetLastError();
  char call[96];
  copy_call_name(call, sizeof call, expression);
  return nnlib_fail(ctx, NN_ERROR_BACKEND, call, file, line, "%s (%s)",
                    cublasGetStatusString(status), cublasGetStatusName(status));
}

/* cuRAND has no status-to-string function. */
static const char *curand_status_name(curandStatus_t status) {
  switch (status) {
  case CURAND_STATUS_SUCCESS:
    return "CURAND_STATUS_SUCCESS";
  case CURAND_STATUS_VERSION_MISMATCH:
    return "CURAND_STATUS_VERSION_MISMATCH: header and linked library "
           "versions do not match";
  case CURAND_STATUS_NOT_INITIALIZED:
    return "CURAND_STATUS_NOT_INITIALIZED: generator not initialized";
  case CURAND_STATUS_ALLOCATION_FAILED:
    return "CURAND_STATUS_ALLOCATION_FAILED: memory allocation failed";
  case CURAND_STATUS_TYPE_ERROR:
    return "CURAND_STATUS_TYPE_ERROR: generator is the wrong type";
  case CURAND_STATUS_OUT_OF_RANGE:
    return "CURAND_STATUS_OUT_OF_RANGE: argument out of range";
  case CURAND_STATUS_LENGTH_NOT_MULTIPLE:
    return "CURAND_STATUS_LENGTH_NOT_MULTIPLE: length not a multiple of "
           "the dimension";
  case CURAND_STATUS_DOUBLE_PRECISION_REQUIRED:
    return "CURAND_STATUS_DOUBLE_PRECISION_REQUIRED: the GPU does not "
           "support double precision";
  case CURAND_STATUS_LAUNCH_FAILURE:
    return "CURAND_STATUS_LAUNCH_FAILURE: kernel launch failure";
  case CURAND_STATUS_PREEXISTING_FAILURE:
    return "CURAND_STATUS_PREEXISTING_FAILURE: an earlier asynchronous "
           "failure (see the CUDA runtime's last error)";
  case CURAND_STATUS_INITIALIZATION_FAILED:
    return "CURAND_STATUS_INITIALIZATION_FAILED: initialization of CUDA "
           "failed";
  case CURAND_STATUS_ARCH_MISMATCH:
    return "CURAND_STATUS_ARCH_MISMATCH: architecture mismatch, the GPU "
           "does not support the requested feature";
  case CURAND_STATUS_INTERNAL_ERROR:
    return "CURAND_STATUS_INTERNAL_ERROR: internal library error";
  default:
    return "unknown cuRAND status";
  }
}

nn_status nnlib_curand_check(nn_context *ctx, curandStatus_t status,
                             const char *expression, const char *file,
                             int line) {
  if (status == CURAND_STATUS_SUCCESS)
    return NN_OK;
  /* A failed generator launch leaves the runtime's error set too. */
  cudaError_t runtime_error = cudaGetLastError();
  char call[96];
  copy_call_name(call, sizeof call, expression);
  if (runtime_error != cudaSuccess)
    return nnlib_fail(ctx, NN_ERROR_BACKEND, call, file, line,
                      "%s (status %d; CUDA: %s)", curand_status_name(status),
                      (int)status, cudaGetErrorString(runtime_error));
  return nnlib_fail(ctx, NN_ERROR_BACKEND, call, file, line, "%s (status %d)",
                    curand_status_name(status), (int)status);
}

/* Sets the device only when it is not already current: cheaper, and
 * nothing but a query while the stream is being captured into a graph. */
nn_status nnlib_cuda_use_device(nnlib_cuda_backend *cuda, nn_context *ctx) {
  int current = -1;
  if (cudaGetDevice(&current) == cudaSuccess && current == cuda->device)
    return NN_OK;
  (void)cudaGetLastError();
  return NNLIB_CUDA_CHECK(ctx, cudaSetDevice(cuda->device));
}
