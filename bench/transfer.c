/*
 * transfer.c — host-to-device copies of one batch, as the streaming feeder
 * issues them (host/feeder.c): X then Y, two cudaMemcpyAsync from pinned
 * host memory on a non-blocking stream. Timed with CUDA events, alone (the
 * model is gone by then), so the result is the link's rate for a batch of
 * this size, to set against the step time.
 */
#include "bench.h"

#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UPLOAD_WARMUP_COPIES 2

typedef struct upload {
  float *host_x, *host_y;     /* pinned */
  float *device_x, *device_y; /* device */
  cudaStream_t stream;
  cudaEvent_t start, stop;
  char *error;
  size_t error_size;
} upload;

static bool cuda_ok(upload *upload, cudaError_t status, const char *call) {
  if (status == cudaSuccess)
    return true;
  snprintf(upload->error, upload->error_size, "upload: %s: %s (%s)", call,
           cudaGetErrorString(status), cudaGetErrorName(status));
  (void)cudaGetLastError();
  return false;
}

static bool allocate(upload *upload, size_t x_bytes, size_t y_bytes) {
  return cuda_ok(upload,
                 cudaHostAlloc((void **)&upload->host_x, x_bytes,
                               cudaHostAllocDefault),
                 "cudaHostAlloc") &&
         cuda_ok(upload,
                 cudaHostAlloc((void **)&upload->host_y, y_bytes,
                               cudaHostAllocDefault),
                 "cudaHostAlloc") &&
         cuda_ok(upload, cudaMalloc((void **)&upload->device_x, x_bytes),
                 "cudaMalloc") &&
         cuda_ok(upload, cudaMalloc((void **)&upload->device_y, y_bytes),
                 "cudaMalloc") &&
         cuda_ok(
             upload,
             cudaStreamCreateWithFlags(&upload->stream, cudaStreamNonBlocking),
             "cudaStreamCreateWithFlags") &&
         cuda_ok(upload, cudaEventCreate(&upload->start), "cudaEventCreate") &&
         cuda_ok(upload, cudaEventCreate(&upload->stop), "cudaEventCreate");
}

static bool copy_batch(upload *upload, size_t x_bytes, size_t y_bytes) {
  return cuda_ok(upload,
                 cudaMemcpyAsync(upload->device_x, upload->host_x, x_bytes,
                                 cudaMemcpyHostToDevice, upload->stream),
                 "cudaMemcpyAsync") &&
         cuda_ok(upload,
                 cudaMemcpyAsync(upload->device_y, upload->host_y, y_bytes,
                                 cudaMemcpyHostToDevice, upload->stream),
                 "cudaMemcpyAsync");
}

static bool time_copy(upload *upload, size_t x_bytes, size_t y_bytes,
                      double *seconds) {
  float milliseconds = 0;
  bool ok =
      cuda_ok(upload, cudaEventRecord(upload->start, upload->stream),
              "cudaEventRecord") &&
      copy_batch(upload, x_bytes, y_bytes) &&
      cuda_ok(upload, cudaEventRecord(upload->stop, upload->stream),
              "cudaEventRecord") &&
      cuda_ok(upload, cudaEventSynchronize(upload->stop),
              "cudaEventSynchronize") &&
      cuda_ok(upload,
              cudaEventElapsedTime(&milliseconds, upload->start, upload->stop),
              "cudaEventElapsedTime");
  *seconds = 1e-3 * (double)milliseconds;
  return ok;
}

static void release(upload *upload) {
  if (upload->stream)
    cudaStreamSynchronize(upload->stream);
  if (upload->start)
    cudaEventDestroy(upload->start);
  if (upload->stop)
    cudaEventDestroy(upload->stop);
  if (upload->stream)
    cudaStreamDestroy(upload->stream);
  cudaFree(upload->device_x);
  cudaFree(upload->device_y);
  cudaFreeHost(upload->host_x);
  cudaFreeHost(upload->host_y);
  (void)cudaGetLastError();
}

bool bench_measure_upload(int device, size_t x_floats, size_t y_floats,
                          size_t repeats, bench_transfer *transfer, char *error,
                          size_t error_size) {
  const size_t x_bytes = x_floats * sizeof(float);
  const size_t y_bytes = y_floats * sizeof(float);
  upload upload = {.error = error, .error_size = error_size};
  double *seconds = calloc(repeats, sizeof *seconds);
  bool ok = seconds != NULL &&
            cuda_ok(&upload, cudaSetDevice(device), "cudaSetDevice") &&
            allocate(&upload, x_bytes, y_bytes);
  if (ok) {
    memset(upload.host_x, 0, x_bytes);
    memset(upload.host_y, 0, y_bytes);
  }
  if (!seconds)
    snprintf(error, error_size, "upload: out of memory");
  /* Untimed copies first: the first pays one-time setup. */
  for (size_t i = 0; ok && i < UPLOAD_WARMUP_COPIES; i++) {
    double ignored = 0;
    ok = time_copy(&upload, x_bytes, y_bytes, &ignored);
  }
  for (size_t i = 0; ok && i < repeats; i++)
    ok = time_copy(&upload, x_bytes, y_bytes, &seconds[i]);
  if (ok) {
    transfer->measured = true;
    transfer->bytes_per_step = (double)(x_bytes + y_bytes);
    transfer->copy = bench_summarize(seconds, repeats);
  }
  release(&upload);
  free(seconds);
  return ok;
}
