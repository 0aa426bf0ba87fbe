/*
 * cuda_backend.c — the CUDA backend's creation, destruction and operations
 * table. Per context: one device, a compute stream (kernels, cuBLAS,
 * cuRAND) and a copy stream (streamed batch uploads), one cuBLAS handle with
 * its own 32 MiB workspace (shared with the cuBLASLt handle of the fused
 * products), a device scratch for reductions. Everything is
 * allocated here, once; the step loop allocates nothing (set_gather_order
 * sizes its order buffers at the first epoch).
 */
#include "cuda_backend.h"

#include <stdio.h>
#include <stdlib.h>

/* Frees whatever creation got as far as making; errors are ignored (there
 * is nobody to report them to, and the context is going away). */
static void cuda_destroy(nnlib_backend *backend) {
  nnlib_cuda_backend *cuda = nnlib_cuda(backend);
  if (!cuda)
    return;
  cudaSetDevice(cuda->device);
  if (cuda->compute)
    cudaStreamSynchronize(cuda->compute);
  if (cuda->copy)
    cudaStreamSynchronize(cuda->copy);
  nnlib_cuda_gather_release(cuda);
  if (cuda->gather_copied)
    cudaEventDestroy(cuda->gather_copied);
  nnlib_cuda_lt_destroy(cuda);
  if (cuda->cublas)
    cublasDestroy(cuda->cublas);
  cudaFree(cuda->cublas_workspace);
  cudaFree(cuda->reduction_scratch);
  cudaFree(cuda->update_constants);
  if (cuda->copy)
    cudaStreamDestroy(cuda->copy);
  if (cuda->compute)
    cudaStreamDestroy(cuda->compute);
  (void)cudaGetLastError();
  free(cuda);
}

/* Non-blocking streams: no implicit ordering against the legacy default
 * stream, which this backend never uses. */
static nn_status create_streams(nnlib_cuda_backend *cuda, nn_context *ctx) {
  nn_status status = NNLIB_CUDA_CHECK(
      ctx, cudaStreamCreateWithFlags(&cuda->compute, cudaStreamNonBlocking));
  if (status == NN_OK)
    status = NNLIB_CUDA_CHECK(
        ctx, cudaStreamCreateWithFlags(&cuda->copy, cudaStreamNonBlocking));
  if (status == NN_OK)
    status =
        NNLIB_CUDA_CHECK(ctx, cudaEventCreateWithFlags(&cuda->gather_copied,
                                                       cudaEventDisableTiming));
  return status;
}

/* One handle per context, on the compute stream, with its own workspace.
 * cublasSetStream resets the workspace to cuBLAS's default pool, so the
 * workspace is set after the stream. Default math: plain FP32, no TF32
 * tensor-core rounding, so products stay comparable with the CPU's sgemm.
 * No atomics: the same inputs give the same bits on every run. */
static nn_status create_cublas(nnlib_cuda_backend *cuda, nn_context *ctx) {
  const size_t bytes = NNLIB_CUDA_CUBLAS_WORKSPACE_BYTES;
  nn_status status = NNLIB_CUBLAS_CHECK(ctx, cublasCreate(&cuda->cublas));
  if (status == NN_OK)
    status = nnlib_cuda_check_allocation(
        ctx, cudaMalloc(&cuda->cublas_workspace, bytes), "cudaMalloc", bytes,
        true, __FILE__, __LINE__);
  if (status == NN_OK)
    status =
        NNLIB_CUBLAS_CHECK(ctx, cublasSetStream(cuda->cublas, cuda->compute));
  if (status == NN_OK)
    status = NNLIB_CUBLAS_CHECK(
        ctx, cublasSetWorkspace(cuda->cublas, cuda->cublas_workspace, bytes));
  if (status == NN_OK)
    status = NNLIB_CUBLAS_CHECK(
        ctx, cublasSetMathMode(cuda->cublas, CUBLAS_DEFAULT_MATH));
  if (status == NN_OK)
    status = NNLIB_CUBLAS_CHECK(
        ctx, cublasSetAtomicsMode(cuda->cublas, CUBLAS_ATOMICS_NOT_ALLOWED));
  if (status == NN_OK)
    status = NNLIB_CUBLAS_CHECK(
        ctx, cublasSetPointerMode(cuda->cublas, CUBLAS_POINTER_MODE_HOST));
  return status;
}

static nn_status create_reduction_buffers(nnlib_cuda_backend *cuda,
                                          nn_context *ctx) {
  const size_t bytes = NNLIB_CUDA_REDUCTION_DOUBLES * sizeof(double);
  nn_status status = nnlib_cuda_check_allocation(
      ctx, cudaMalloc((void **)&cuda->reduction_scratch, bytes), "cudaMalloc",
      bytes, true, __FILE__, __LINE__);
  if (status == NN_OK)
    status = nnlib_cuda_check_allocation(
        ctx,
        cudaMalloc((void **)&cuda->update_constants,
                   sizeof *cuda->update_constants),
        "cudaMalloc", sizeof *cuda->update_constants, true, __FILE__, __LINE__);
  return status;
}

static const nnlib_backend_ops cuda_ops = {
    .destroy = cuda_destroy,
    .alloc = nnlib_cuda_alloc,
    .release = nnlib_cuda_release,
    .upload = nnlib_cuda_upload,
    .download = nnlib_cuda_download,
    .fill = nnlib_cuda_fill,
    .scale = nnlib_cuda_scale,
    .host_alloc = nnlib_cuda_host_alloc,
    .host_release = nnlib_cuda_host_release,
    .event_create = nnlib_cuda_event_create,
    .event_destroy = nnlib_cuda_event_destroy,
    .upload_async = nnlib_cuda_upload_async,
    .compute_wait = nnlib_cuda_compute_wait,
    .compute_record = nnlib_cuda_compute_record,
    .copy_wait = nnlib_cuda_copy_wait,
    .event_wait_host = nnlib_cuda_event_wait_host,
    .timer_create = nnlib_cuda_timer_create,
    .check_precision = nnlib_cuda_check_precision,
    .elapsed_ms = nnlib_cuda_elapsed_ms,
    .set_gather_order = nnlib_cuda_set_gather_order,
    .gather_columns = nnlib_cuda_gather_columns,
    .memory_info = nnlib_cuda_memory_info,
    .rng_create = nnlib_cuda_rng_create,
    .rng_destroy = nnlib_cuda_rng_destroy,
    .rng_seed = nnlib_cuda_rng_seed,
    .random_uniform = nnlib_cuda_random_uniform,
    .random_normal = nnlib_cuda_random_normal,
    .dense_forward = nnlib_cuda_dense_forward,
    .dropout_forward = nnlib_cuda_dropout_forward,
    .loss_sum = nnlib_cuda_loss_sum,
    .loss_sum_and_gradient = nnlib_cuda_loss_sum_and_gradient,
    .output_gradient = nnlib_cuda_output_gradient,
    .activation_backward = nnlib_cuda_layer_activation_backward,
    .dense_backward = nnlib_cuda_dense_backward,
    .sum_squares = nnlib_cuda_sum_squares,
    .optimizer_stage = nnlib_cuda_optimizer_stage,
    .optimizer_apply = nnlib_cuda_optimizer_apply,
    .to_bf16 = nnlib_cuda_to_bf16_op,
    .copy = nnlib_cuda_copy,
    .graph_capture_begin = nnlib_cuda_graph_capture_begin,
    .prepare_capture = nnlib_cuda_prepare_capture,
    .graph_capture_end = nnlib_cuda_graph_capture_end,
    .graph_launch = nnlib_cuda_graph_launch,
    .graph_destroy = nnlib_cuda_graph_destroy,
};

nn_status nnlib_cuda_backend_create(nn_context *ctx, int device_index,
                                    nnlib_backend **out, char *name,
                                    size_t name_size) {
  *out = NULL;
  struct cudaDeviceProp properties;
  nn_status status = nnlib_cuda_open_device(ctx, device_index, &properties);
  if (status != NN_OK)
    return status;
  nnlib_cuda_backend *cuda = NULL;
  status = nnlib_host_alloc(ctx, 1, sizeof *cuda, (void **)&cuda);
  if (status != NN_OK)
    return status;
  cuda->base.ops = &cuda_ops;
  cuda->device = device_index;
  cuda->compute_major = properties.major;
  cuda->grid_limit = nnlib_cuda_grid_limit(properties.multiProcessorCount);
  status = create_streams(cuda, ctx);
  if (status == NN_OK)
    status = create_cublas(cuda, ctx);
  if (status == NN_OK)
    status = nnlib_cuda_lt_create(cuda, ctx);
  if (status == NN_OK)
    status = create_reduction_buffers(cuda, ctx);
  if (status != NN_OK) {
    cuda_destroy(&cuda->base);
    return status;
  }
  snprintf(name, name_size, "cuda:%d (%s)", device_index, properties.name);
  *out = &cuda->base;
  return NN_OK;
}
