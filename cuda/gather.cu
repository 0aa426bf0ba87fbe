/*
 * gather.cu — gather_columns for device-resident data: the batch's column
 * indices go from the host through a pinned staging slot to the device
 * (cudaMemcpyAsync on the compute stream), then one kernel copies the
 * columns of both matrices (a batch's X and Y).
 *
 * The staging is a ring of NNLIB_CUDA_GATHER_SLOTS slots, each with an event
 * recorded after its copy: the host refills a slot only once the copy that
 * last read it has run, which, with several slots, is long done — the host
 * does not wait for the step in flight. Each slot has its own device index
 * buffer, rewritten only by a copy issued after the kernel that read it (the
 * same stream).
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
static __global__ void gather_columns_kernel(void *x_dst, const float *x_src,
                                             size_t x_rows, bool x_bf16,
                                             void *y_dst, const float *y_src,
                                             size_t y_rows, bool y_bf16,
                                             const uint64_t *indices,
                                             size_t count) {
  const size_t rows = x_rows + y_rows;
  NNLIB_GRID_STRIDE_LOOP(e, rows * count) {
    const size_t column = e / rows, row = e - column * rows;
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
  cudaFree(cuda->gather_indices);
  cuda->gather_staging = NULL;
  cuda->gather_indices = NULL;
  cuda->gather_capacity = 0;
  (void)cudaGetLastError();
}

/* Makes every slot hold count indices. Growing waits for the compute stream
 * (a kernel may still read the old buffers): it happens on the first gather
 * of a run, not in steady state. */
static nn_status reserve_indices(nnlib_cuda_backend *cuda, nn_context *ctx,
                                 size_t count) {
  if (count <= cuda->gather_capacity)
    return NN_OK;
  if (count > SIZE_MAX / sizeof(uint64_t) / NNLIB_CUDA_GATHER_SLOTS)
    return NNLIB_FAIL_CALL(ctx, NN_ERROR_OUT_OF_MEMORY, "gather_columns",
                           "%zu column indices overflow the address space",
                           count);
  const size_t bytes = NNLIB_CUDA_GATHER_SLOTS * count * sizeof(uint64_t);
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
        ctx, cudaMalloc((void **)&cuda->gather_indices, bytes), "cudaMalloc",
        bytes, true, __FILE__, __LINE__);
  if (status != NN_OK) {
    nnlib_cuda_gather_release(cuda);
    return status;
  }
  cuda->gather_capacity = count;
  return NN_OK;
}

/* Copies columns (host) into the next slot and on to the device; returns
 * the device indices. */
static nn_status stage_indices(nnlib_cuda_backend *cuda, nn_context *ctx,
                               const size_t *columns, size_t count,
                               const uint64_t **device_indices) {
  const unsigned slot = cuda->gather_next_slot;
  cuda->gather_next_slot = (slot + 1) % NNLIB_CUDA_GATHER_SLOTS;
  uint64_t *staging = cuda->gather_staging + slot * cuda->gather_capacity;
  uint64_t *indices = cuda->gather_indices + slot * cuda->gather_capacity;
  nn_status status =
      NNLIB_CUDA_CHECK(ctx, cudaEventSynchronize(cuda->gather_copied[slot]));
  if (status != NN_OK)
    return status;
  for (size_t k = 0; k < count; k++)
    staging[k] = (uint64_t)columns[k];
  status = NNLIB_CUDA_CHECK(
      ctx, cudaMemcpyAsync(indices, staging, count * sizeof(uint64_t),
                           cudaMemcpyHostToDevice, cuda->compute));
  if (status == NN_OK)
    status = NNLIB_CUDA_CHECK(
        ctx, cudaEventRecord(cuda->gather_copied[slot], cuda->compute));
  *device_indices = indices;
  return status;
}

extern "C" nn_status
nnlib_cuda_gather_columns(nnlib_backend *backend, nn_context *ctx,
                          const nnlib_gather_matrix matrices[2],
                          const size_t *columns, size_t count) {
  nnlib_cuda_backend *cuda = nnlib_cuda(backend);
  const uint64_t *indices = NULL;
  const nnlib_gather_matrix x = matrices[0], y = matrices[1];
  const size_t rows = x.rows + y.rows;
  nn_status status = nnlib_cuda_use_device(cuda, ctx);
  if (status != NN_OK || rows == 0 || count == 0)
    return status;
  status = reserve_indices(cuda, ctx, count);
  if (status == NN_OK)
    status = stage_indices(cuda, ctx, columns, count, &indices);
  if (status != NN_OK)
    return status;
  gather_columns_kernel<<<nnlib_cuda_blocks(rows * count), NNLIB_CUDA_THREADS,
                          0, cuda->compute>>>(
      x.dst, x.src, x.rows, x.bf16, y.rows ? y.dst : NULL,
      y.rows ? y.src : NULL, y.rows, y.bf16, indices, count);
  return NNLIB_CUDA_CHECK_LAUNCH(ctx, gather_columns_kernel);
}
