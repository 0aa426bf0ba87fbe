/*
 * fill_scale.cu — dst = value and dst = alpha · src over a buffer, and the
 * kernel-image probe used when a context is created.
 */
#include "kernel_common.cuh"

/* dst (count) = value. */
static __global__ void NNLIB_GRID_STRIDE_BOUNDS
fill_kernel(float *dst, float value, size_t count) {
  NNLIB_GRID_STRIDE_LOOP(k, count) {
    dst[k] = value;
  }
}

/* dst (count) = alpha · src (count); dst may be src. */
static __global__ void NNLIB_GRID_STRIDE_BOUNDS
scale_kernel(float *dst, const float *src, float alpha, size_t count) {
  NNLIB_GRID_STRIDE_LOOP(k, count) {
    dst[k] = alpha * src[k];
  }
}

extern "C" nn_status nnlib_cuda_fill(nnlib_backend *backend, nn_context *ctx,
                                     float *dst, float value, size_t count) {
  nnlib_cuda_backend *cuda = nnlib_cuda(backend);
  nn_status status = nnlib_cuda_use_device(cuda, ctx);
  if (status != NN_OK || count == 0)
    return status;
  fill_kernel<<<nnlib_cuda_blocks(cuda, count), NNLIB_CUDA_THREADS, 0,
                cuda->compute>>>(dst, value, count);
  return NNLIB_CUDA_CHECK_LAUNCH(ctx, fill_kernel);
}

extern "C" nn_status nnlib_cuda_scale(nnlib_backend *backend, nn_context *ctx,
                                      float *dst, const float *src, float alpha,
                                      size_t count) {
  nnlib_cuda_backend *cuda = nnlib_cuda(backend);
  nn_status status = nnlib_cuda_use_device(cuda, ctx);
  if (status != NN_OK || count == 0)
    return status;
  scale_kernel<<<nnlib_cuda_blocks(cuda, count), NNLIB_CUDA_THREADS, 0,
                 cuda->compute>>>(dst, src, alpha, count);
  return NNLIB_CUDA_CHECK_LAUNCH(ctx, scale_kernel);
}

/* Loading a kernel's attributes forces its module to load on the current
 * device: a device with neither SASS nor usable PTX in the fat binary fails
 * here, at context creation, rather than at the first launch. */
extern "C" cudaError_t nnlib_cuda_probe_kernel_image(void) {
  cudaFuncAttributes attributes;
  return cudaFuncGetAttributes(&attributes, fill_kernel);
}
