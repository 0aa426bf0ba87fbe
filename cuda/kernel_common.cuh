/*
 * kernel_common.cuh — what the kernel files share: the grid-stride loop and
 * warp-level reductions in a fixed order.
 *
 * Kernels are `static __global__`: internal linkage keeps nvcc's host stubs
 * out of the static library's global symbols (every global there must be
 * nn_ or nnlib_).
 */
#ifndef NN_KERNEL_COMMON_CUH
#define NN_KERNEL_COMMON_CUH

#include "cuda_backend.h"

/* index runs over 0..count-1, each thread taking every
 * (gridDim.x · blockDim.x)-th element. */
#define NNLIB_GRID_STRIDE_LOOP(index, count)                                   \
  for (size_t index = blockIdx.x * (size_t)blockDim.x + threadIdx.x;           \
       index < (count); index += (size_t)gridDim.x * blockDim.x)

#define NNLIB_WARP_SIZE 32
#define NNLIB_FULL_WARP 0xffffffffu

/* Σ of value over the 32 lanes of a warp, by a butterfly: every lane ends
 * with the same bits (each pairwise sum is formed from the same two operands
 * on both lanes, and addition commutes), in the same order on every run. All
 * 32 lanes must take part. */
static __device__ __forceinline__ double warp_sum(double value) {
  for (int offset = NNLIB_WARP_SIZE / 2; offset > 0; offset /= 2)
    value += __shfl_xor_sync(NNLIB_FULL_WARP, value, offset);
  return value;
}

/* Largest value over the 32 lanes of a warp (exact in any order). */
static __device__ __forceinline__ float warp_max(float value) {
  for (int offset = NNLIB_WARP_SIZE / 2; offset > 0; offset /= 2)
    value = fmaxf(value, __shfl_xor_sync(NNLIB_FULL_WARP, value, offset));
  return value;
}

#endif /* NN_KERNEL_COMMON_CUH */
