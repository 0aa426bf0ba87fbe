/*
 * memory.c — device and pinned host memory, blocking copies, and the events
 * that order streamed batch uploads (copy stream) against training steps
 * (compute stream). See backend.h for how host/feeder.c drives them.
 *
 * alloc, upload and download are used outside the step loop (arenas are
 * made once; parameters go in and out between runs), so they simply finish
 * before returning: the copy is issued on the compute stream, after whatever
 * work is queued there, and the stream is synchronized.
 */
#include "cuda_backend.h"

/* count floats as bytes, or an out-of-memory failure of `call` on
 * overflow. */
static nn_status float_bytes(nn_context *ctx, const char *call, size_t count,
                             size_t *bytes) {
  if (nnlib_checked_mul(count, sizeof(float), bytes))
    return NN_OK;
  return NNLIB_FAIL_CALL(ctx, NN_ERROR_OUT_OF_MEMORY, call,
                         "%zu floats overflow the address space", count);
}

nn_status nnlib_cuda_alloc(nnlib_backend *backend, nn_context *ctx,
                           size_t count, float **out) {
  nnlib_cuda_backend *cuda = nnlib_cuda(backend);
  *out = NULL;
  size_t bytes = 0;
  nn_status status = float_bytes(ctx, "cudaMalloc", count ? count : 1, &bytes);
  if (status == NN_OK)
    status = nnlib_cuda_use_device(cuda, ctx);
  if (status != NN_OK)
    return status;
  void *memory = NULL;
  status =
      nnlib_cuda_check_allocation(ctx, cudaMalloc(&memory, bytes), "cudaMalloc",
                                  bytes, true, __FILE__, __LINE__);
  if (status != NN_OK)
    return status;
  status =
      NNLIB_CUDA_CHECK(ctx, cudaMemsetAsync(memory, 0, bytes, cuda->compute));
  if (status == NN_OK)
    status = NNLIB_CUDA_CHECK(ctx, cudaStreamSynchronize(cuda->compute));
  if (status != NN_OK) {
    cudaFree(memory);
    return status;
  }
  *out = memory;
  return NN_OK;
}

/* Both streams may still have work reading or writing the memory: wait for
 * them (release is never in the step loop). */
static void wait_for_streams(nnlib_cuda_backend *cuda) {
  cudaSetDevice(cuda->device);
  cudaStreamSynchronize(cuda->compute);
  cudaStreamSynchronize(cuda->copy);
}

void nnlib_cuda_release(nnlib_backend *backend, float *memory) {
  if (!memory)
    return;
  wait_for_streams(nnlib_cuda(backend));
  cudaFree(memory);
  (void)cudaGetLastError();
}

static nn_status copy_and_wait(nnlib_cuda_backend *cuda, nn_context *ctx,
                               void *dst, const void *src, size_t count,
                               enum cudaMemcpyKind kind) {
  if (count == 0 || dst == src)
    return NN_OK;
  size_t bytes = 0;
  nn_status status = float_bytes(ctx, "cudaMemcpyAsync", count, &bytes);
  if (status == NN_OK)
    status = nnlib_cuda_use_device(cuda, ctx);
  if (status == NN_OK)
    status = NNLIB_CUDA_CHECK(
        ctx, cudaMemcpyAsync(dst, src, bytes, kind, cuda->compute));
  if (status == NN_OK)
    status = NNLIB_CUDA_CHECK(ctx, cudaStreamSynchronize(cuda->compute));
  return status;
}

nn_status nnlib_cuda_upload(nnlib_backend *backend, nn_context *ctx, float *dst,
                            const float *host_src, size_t count) {
  return copy_and_wait(nnlib_cuda(backend), ctx, dst, host_src, count,
                       cudaMemcpyHostToDevice);
}

nn_status nnlib_cuda_download(nnlib_backend *backend, nn_context *ctx,
                              float *host_dst, const float *src, size_t count) {
  return copy_and_wait(nnlib_cuda(backend), ctx, host_dst, src, count,
                       cudaMemcpyDeviceToHost);
}

/* Device to device on the compute stream; nothing waits for it. */
nn_status nnlib_cuda_copy(nnlib_backend *backend, nn_context *ctx, float *dst,
                          const float *src, size_t count) {
  nnlib_cuda_backend *cuda = nnlib_cuda(backend);
  size_t bytes = 0;
  nn_status status = float_bytes(ctx, "cudaMemcpyAsync", count, &bytes);
  if (status == NN_OK)
    status = nnlib_cuda_use_device(cuda, ctx);
  if (status == NN_OK && bytes > 0 && dst != src)
    status = NNLIB_CUDA_CHECK(ctx, cudaMemcpyAsync(dst, src, bytes,
                                                   cudaMemcpyDeviceToDevice,
                                                   cuda->compute));
  return status;
}

/* Pinned (page-locked) host memory: what cudaMemcpyAsync needs to copy
 * without blocking the host. */
nn_status nnlib_cuda_host_alloc(nnlib_backend *backend, nn_context *ctx,
                                size_t count, float **out) {
  nnlib_cuda_backend *cuda = nnlib_cuda(backend);
  *out = NULL;
  size_t bytes = 0;
  nn_status status =
      float_bytes(ctx, "cudaHostAlloc", count ? count : 1, &bytes);
  if (status == NN_OK)
    status = nnlib_cuda_use_device(cuda, ctx);
  if (status != NN_OK)
    return status;
  void *memory = NULL;
  status = nnlib_cuda_check_allocation(
      ctx, cudaHostAlloc(&memory, bytes, cudaHostAllocDefault), "cudaHostAlloc",
      bytes, false, __FILE__, __LINE__);
  if (status == NN_OK)
    *out = memory;
  return status;
}

void nnlib_cuda_host_release(nnlib_backend *backend, float *memory) {
  if (!memory)
    return;
  wait_for_streams(nnlib_cuda(backend));
  cudaFreeHost(memory);
  (void)cudaGetLastError();
}

/* Events only order work; timing them would cost for nothing. */
nn_status nnlib_cuda_event_create(nnlib_backend *backend, nn_context *ctx,
                                  nnlib_event *out) {
  *out = NULL;
  cudaEvent_t event = NULL;
  nn_status status = nnlib_cuda_use_device(nnlib_cuda(backend), ctx);
  if (status == NN_OK)
    status = NNLIB_CUDA_CHECK(
        ctx, cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
  if (status == NN_OK)
    *out = event;
  return status;
}

/* Step timing: an event with timing on (it costs a little more to record,
 * so only the step log makes these). */
nn_status nnlib_cuda_timer_create(nnlib_backend *backend, nn_context *ctx,
                                  nnlib_event *out) {
  *out = NULL;
  cudaEvent_t event = NULL;
  nn_status status = nnlib_cuda_use_device(nnlib_cuda(backend), ctx);
  if (status == NN_OK)
    status = NNLIB_CUDA_CHECK(ctx, cudaEventCreate(&event));
  if (status == NN_OK)
    *out = event;
  return status;
}

/* Waits for end, then the GPU time between the two (both recorded on the
 * compute stream). */
nn_status nnlib_cuda_elapsed_ms(nnlib_backend *backend, nn_context *ctx,
                                nnlib_event start, nnlib_event end, float *ms) {
  *ms = 0.0f;
  nn_status status = nnlib_cuda_use_device(nnlib_cuda(backend), ctx);
  if (status == NN_OK)
    status = NNLIB_CUDA_CHECK(ctx, cudaEventSynchronize((cudaEvent_t)end));
  if (status == NN_OK)
    status = NNLIB_CUDA_CHECK(
        ctx, cudaEventElapsedTime(ms, (cudaEvent_t)start, (cudaEvent_t)end));
  return status;
}

void nnlib_cuda_event_destroy(nnlib_backend *backend, nnlib_event event) {
  if (!event)
    return;
  cudaSetDevice(nnlib_cuda(backend)->device);
  cudaEventDestroy((cudaEvent_t)event);
  (void)cudaGetLastError();
}

/* host_src (pinned) -> dst on the copy stream; `copied` is recorded after
 * it, so that the compute stream can wait for the data and the host for the
 * staging slot to be free again. */
nn_status nnlib_cuda_upload_async(nnlib_backend *backend, nn_context *ctx,
                                  float *dst, const float *host_src,
                                  size_t count, nnlib_event copied) {
  nnlib_cuda_backend *cuda = nnlib_cuda(backend);
  size_t bytes = 0;
  nn_status status = float_bytes(ctx, "cudaMemcpyAsync", count, &bytes);
  if (status == NN_OK)
    status = nnlib_cuda_use_device(cuda, ctx);
  if (status == NN_OK && bytes > 0)
    status = NNLIB_CUDA_CHECK(ctx, cudaMemcpyAsync(dst, host_src, bytes,
                                                   cudaMemcpyHostToDevice,
                                                   cuda->copy));
  if (status == NN_OK && copied)
    status =
        NNLIB_CUDA_CHECK(ctx, cudaEventRecord((cudaEvent_t)copied, cuda->copy));
  return status;
}

/* The compute stream runs nothing issued after this until event has
 * happened (the batch's upload is complete). */
nn_status nnlib_cuda_compute_wait(nnlib_backend *backend, nn_context *ctx,
                                  nnlib_event event) {
  nnlib_cuda_backend *cuda = nnlib_cuda(backend);
  nn_status status = nnlib_cuda_use_device(cuda, ctx);
  if (status == NN_OK)
    status = NNLIB_CUDA_CHECK(
        ctx, cudaStreamWaitEvent(cuda->compute, (cudaEvent_t)event, 0));
  return status;
}

/* Marks the point the compute stream has reached (a step done with its
 * input buffer). */
nn_status nnlib_cuda_compute_record(nnlib_backend *backend, nn_context *ctx,
                                    nnlib_event event) {
  nnlib_cuda_backend *cuda = nnlib_cuda(backend);
  nn_status status = nnlib_cuda_use_device(cuda, ctx);
  if (status == NN_OK)
    status = NNLIB_CUDA_CHECK(
        ctx, cudaEventRecord((cudaEvent_t)event, cuda->compute));
  return status;
}

/* The copy stream overwrites nothing issued after this until event has
 * happened (the step that read the buffer is done). */
nn_status nnlib_cuda_copy_wait(nnlib_backend *backend, nn_context *ctx,
                               nnlib_event event) {
  nnlib_cuda_backend *cuda = nnlib_cuda(backend);
  nn_status status = nnlib_cuda_use_device(cuda, ctx);
  if (status == NN_OK)
    status = NNLIB_CUDA_CHECK(
        ctx, cudaStreamWaitEvent(cuda->copy, (cudaEvent_t)event, 0));
  return status;
}

/* Blocks the calling thread until event has happened (at once for an event
 * never recorded). */
nn_status nnlib_cuda_event_wait_host(nnlib_backend *backend, nn_context *ctx,
                                     nnlib_event event) {
  nn_status status = nnlib_cuda_use_device(nnlib_cuda(backend), ctx);
  if (status == NN_OK)
    status = NNLIB_CUDA_CHECK(ctx, cudaEventSynchronize((cudaEvent_t)event));
  return status;
}

/* TF32 and BF16 products run on tensor cores from compute capability 8.0
 * (Ampere) on; the build has code for nothing older anyway. */
nn_status nnlib_cuda_check_precision(nnlib_backend *backend, nn_context *ctx,
                                     nn_precision precision) {
  const int major = nnlib_cuda(backend)->compute_major;
  if (precision == NN_PRECISION_FP32 || major >= 8)
    return NN_OK;
  return NNLIB_FAIL_CALL(ctx, NN_ERROR_UNSUPPORTED, "nn_model_set_precision",
                         "%s products need compute capability 8.0 or newer; "
                         "this device has %d.x",
                         nn_precision_name(precision), major);
}

nn_status nnlib_cuda_memory_info(nnlib_backend *backend, nn_context *ctx,
                                 size_t *free_bytes, size_t *total_bytes) {
  *free_bytes = 0;
  *total_bytes = 0;
  nn_status status = nnlib_cuda_use_device(nnlib_cuda(backend), ctx);
  if (status == NN_OK)
    status = NNLIB_CUDA_CHECK(ctx, cudaMemGetInfo(free_bytes, total_bytes));
  return status;
}
