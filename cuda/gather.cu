/*
 * gather.cu — resident batches: set_gather_order uploads an epoch's column
 * order once (host, through a pinned staging buffer, to the device, by
 * cudaMemcpyAsync on the compute stream); gather_columns then copies a
 * batch's columns of both matrices (X and Y) in one kernel that reads its
 * positions of that order on the device. A step thus issues no copy of its
 * own: the compute stream goes from one step's last kernel to the next
 * step's gather with nothing in between.
 *
 * The staging buffer is refilled only once its last copy has run (its
 * event; an epoch ago, so long done), and the device order is rewritten
 * only by a copy issued after every gather that read it (the same stream).
 */
#include "kernel_common.cuh"

#include <cuda_bf16.h>

/* dst[index] = value, as a float or rounded to bf16 (nearest even). */
static __device__ __forceinline__ void store(void *dst, bool bf16, size_t index,
                                             float value) {
  if (bf16)
    ((__nv_bfloat16 *)dst)[index] = __float2bfloat16_rn(value);
  else
    ((float *)dst)[index] = value;
}

/* x_dst (x_rows × count, column-major; floats, or bf16 with x_bf16) =
 * columns indices[0..count) of x_src (x_rows × m), and the same of y
 * (y_rows may be 0, its pointers NULL). One thread per element of the two,
 * grid-stride, taken column by column of the stacked (x_rows + y_rows) ×
 * count: consecutive threads copy consecutive rows of one column
 * (coalesced both ways). */
static __global__ void NNLIB_GRID_STRIDE_BOUNDS
gather_columns_kernel(void *x_dst, const float *x_src, size_t x_rows,
                      bool x_bf16, void *y_dst, const float *y_src,
                      size_t y_rows, bool y_bf16, const uint64_t *indices,
                      size_t count) {
  const size_t rows = x_rows + y_rows;
  NNLIB_GRID_STRIDE_CELLS(cell, rows, rows * count) {
    const size_t column = cell.column, row = cell.row;
    const size_t source = indices[column];
    if (row < x_rows)
      store(x_dst, x_bf16, column * x_rows + row, x_src[source * x_rows + row]);
    else
      store(y_dst, y_bf16, column * y_rows + (row - x_rows),
            y_src[source * y_rows + (row - x_rows)]);
  }
}

extern "C" void nnlib_cuda_gather_release(nnlib_cuda_backend *cuda) {
  cudaFreeHost(cuda->gather_staging);
  cudaFree(cuda->gather_order);
  cuda->gather_staging = NULL;
  cuda->gather_order = NULL;
  cuda->gather_capacity = 0;
  cuda->gather_order_count = 0;
  (void)cudaGetLastError();
}

/* Makes both buffers hold count positions. Growing waits for the compute
 * stream (a gather may still read the old order): it happens at the first
 * epoch of a run, not in steady state. */
static nn_status reserve_order(nnlib_cuda_backend *cuda, nn_context *ctx,
                               size_t count) {
  if (count <= cuda->gather_capacity)
    return NN_OK;
  if (count > SIZE_MAX / sizeof(uint64_t))
    return NNLIB_FAIL_CALL(ctx, NN_ERROR_OUT_OF_MEMORY, "set_gather_order",
                           "%zu column positions overflow the address space",
                           count);
  const size_t bytes = count * sizeof(uint64_t);
  nn_status status =
      NNLIB_CUDA_CHECK(ctx, cudaStreamSynchronize(cuda->compute));
  if (status != NN_OK)
    return status;
  nnlib_cuda_gather_release(cuda);
  status = nnlib_cuda_check_allocation(
      ctx,
      cudaHostAlloc((void **)&cuda->gather_staging, bytes,
                    cudaHostAllocDefault),
      "cudaHostAlloc", bytes, false, __FILE__, __LINE__);
  if (status == NN_OK)
    status = nnlib_cuda_check_allocation(
        ctx, cudaMalloc((void **)&cuda->gather_order, bytes), "cudaMalloc",
        bytes, true, __FILE__, __LINE__);
  if (status != NN_OK) {
    nnlib_cuda_gather_release(cuda);
    return status;
  }
  cuda->gather_capacity = count;
  return NN_OK;
}

extern "C" nn_status nnlib_cuda_set_gather_order(nnlib_backend *backend,
                                                 nn_context *ctx,
                                                 const size_t *order,
                                                 size_t count) {
  nnlib_cuda_backend *cuda = nnlib_cuda(backend);
  nn_status status = nnlib_cuda_use_device(cuda, ctx);
  if (status == NN_OK)
    status = reserve_order(cuda, ctx, count);
  if (status == NN_OK)
    status = NNLIB_CUDA_CHECK(ctx, cudaEventSynchronize(cuda->gather_copied));
  cuda->gather_order_count = 0; /* until the new order is on its way */
  if (status != NN_OK || count == 0)
    return status;
  for (size_t k = 0; k < count; k++)
    cuda->gather_staging[k] = (uint64_t)order[k];
  status = NNLIB_CUDA_CHECK(
      ctx, cudaMemcpyAsync(cuda->gather_order, cuda->gather_staging,
                           count * sizeof(uint64_t), cudaMemcpyHostToDevice,
                           cuda->compute));
  if (status == NN_OK)
    status = NNLIB_CUDA_CHECK(
        ctx, cudaEventRecord(cuda->gather_copied, cuda->compute));
  if (status == NN_OK)
    cuda->gather_order_count = count;
  return status;
}

extern "C" nn_status
nnlib_cuda_gather_columns(nnlib_backend *backend, nn_context *ctx,
                          const nnlib_gather_matrix matrices[2], size_t first,
                          size_t count) {
  nnlib_cuda_backend *cuda = nnlib_cuda(backend);
  const nnlib_gather_matrix x = matrices[0], y = matrices[1];
  const size_t rows = x.rows + y.rows;
  nn_status status = nnlib_cuda_use_device(cuda, ctx);
  if (status != NN_OK || rows == 0 || count == 0)
    return status;
  status =
      nnlib_check_gather_range(ctx, first, count, cuda->gather_order_count);
  if (status != NN_OK)
    return status;
  gather_columns_kernel<<<nnlib_cuda_blocks(cuda, rows * count),
                          NNLIB_CUDA_THREADS, 0, cuda->compute>>>(
      x.dst, x.src, x.rows, x.bf16, y.rows ? y.dst : NULL,
      y.rows ? y.src : NULL, y.rows, y.bf16, cuda->gather_order + first, count);
  return NNLIB_CUDA_CHECK_LAUNCH(ctx, gather_columns_kernel);
}
