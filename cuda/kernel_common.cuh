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

/* What the kernels launched with nnlib_cuda_blocks promise ptxas: blocks
 * of NNLIB_CUDA_THREADS, NNLIB_CUDA_RESIDENT_BLOCKS of them resident on an
 * SM at once — at most 32 registers a thread, which the launch shape's
 * whole waves rest on (cuda_backend.h). One register more would now spill
 * (ptxas -v says so) rather than quietly cost a wave. */
#define NNLIB_GRID_STRIDE_BOUNDS                                               \
  __launch_bounds__(NNLIB_CUDA_THREADS, NNLIB_CUDA_RESIDENT_BLOCKS)

/* index runs over 0..count-1, each thread taking every
 * (gridDim.x · blockDim.x)-th element. */
#define NNLIB_GRID_STRIDE_LOOP(index, count)                                   \
  for (size_t index = blockIdx.x * (size_t)blockDim.x + threadIdx.x;           \
       index < (count); index += (size_t)gridDim.x * blockDim.x)

/* A grid-stride walk over the cells of a column-major matrix of `rows` rows
 * (rows > 0; cell index = column · rows + row), which keeps each cell's row
 * and column without a division per cell: a thread divides once for its
 * first cell and once for the grid's stride, then steps, carrying a row
 * past the last into the next column. (An integer division is no GPU
 * instruction: nvcc emits tens of instructions for it, a 32-bit path
 * where the operands fit and a longer 64-bit one where not; a large layer
 * has tens of millions of cells. The loop body of the kernels that use
 * this has no division left in its PTX.) */
typedef struct nnlib_cell_walk {
  size_t index, row, column;
  size_t rows, stride, stride_rows, stride_columns;
} nnlib_cell_walk;

static __device__ __forceinline__ nnlib_cell_walk
nnlib_cell_walk_start(size_t rows) {
  nnlib_cell_walk walk;
  walk.rows = rows;
  walk.index = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  walk.column = walk.index / rows;
  walk.row = walk.index - walk.column * rows;
  walk.stride = (size_t)gridDim.x * blockDim.x;
  walk.stride_columns = walk.stride / rows;
  walk.stride_rows = walk.stride - walk.stride_columns * rows;
  return walk;
}

/* row, stride_rows < rows, so one carry at most. */
static __device__ __forceinline__ void
nnlib_cell_walk_next(nnlib_cell_walk *walk) {
  walk->index += walk->stride;
  walk->row += walk->stride_rows;
  walk->column += walk->stride_columns;
  if (walk->row >= walk->rows) {
    walk->row -= walk->rows;
    walk->column++;
  }
}

/* walk.index runs over 0..count-1 as NNLIB_GRID_STRIDE_LOOP's index does,
 * with walk.row = index % rows and walk.column = index / rows. */
#define NNLIB_GRID_STRIDE_CELLS(walk, rows, count)                             \
  for (nnlib_cell_walk walk = nnlib_cell_walk_start(rows);                     \
       walk.index < (count); nnlib_cell_walk_next(&walk))

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
