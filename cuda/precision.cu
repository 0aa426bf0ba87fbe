/*
 * precision.cu — fp32 to bf16 for the bf16 products (nn_precision): W, A
 * and dZ are rounded to the nearest bf16 (ties to even) just before the
 * product that reads them, unless a fused product wrote them in bf16
 * itself (cuda/dense.c); and back, for the bias gradient such a product
 * sums in bf16. Everything else stays fp32.
 */
#include "kernel_common.cuh"

#include <cuda_bf16.h>

/* dst (count, bf16) = round-to-nearest-even(src (count, fp32)). */
static __global__ void NNLIB_GRID_STRIDE_BOUNDS
to_bf16_kernel(const float *src, __nv_bfloat16 *dst, size_t count) {
  NNLIB_GRID_STRIDE_LOOP(k, count) {
    dst[k] = __float2bfloat16_rn(src[k]);
  }
}

extern "C" nn_status nnlib_cuda_to_bf16(nnlib_cuda_backend *cuda,
                                        nn_context *ctx, const float *src,
                                        void *dst, size_t count) {
  if (count == 0)
    return NN_OK;
  to_bf16_kernel<<<nnlib_cuda_blocks(cuda, count), NNLIB_CUDA_THREADS, 0,
                   cuda->compute>>>(src, (__nv_bfloat16 *)dst, count);
  return NNLIB_CUDA_CHECK_LAUNCH(ctx, to_bf16_kernel);
}

extern "C" nn_status nnlib_cuda_to_bf16_op(nnlib_backend *backend,
                                           nn_context *ctx, const float *src,
                                           void *dst, size_t count) {
  nnlib_cuda_backend *cuda = nnlib_cuda(backend);
  nn_status status = nnlib_cuda_use_device(cuda, ctx);
  return status == NN_OK ? nnlib_cuda_to_bf16(cuda, ctx, src, dst, count)
                         : status;
}

/* dst (count, fp32) = src (count, bf16): the bias gradient a fused bf16
 * product summed, into the gradient arena. */
static __global__ void NNLIB_GRID_STRIDE_BOUNDS
from_bf16_kernel(float *dst, const __nv_bfloat16 *src, size_t count) {
  NNLIB_GRID_STRIDE_LOOP(k, count) {
    dst[k] = __bfloat162float(src[k]);
  }
}

extern "C" nn_status nnlib_cuda_from_bf16(nnlib_cuda_backend *cuda,
                                          nn_context *ctx, const void *src,
                                          float *dst, size_t count) {
  if (count == 0)
    return NN_OK;
  from_bf16_kernel<<<nnlib_cuda_blocks(cuda, count), NNLIB_CUDA_THREADS, 0,
                     cuda->compute>>>(dst, (const __nv_bfloat16 *)src, count);
  return NNLIB_CUDA_CHECK_LAUNCH(ctx, from_bf16_kernel);
}
