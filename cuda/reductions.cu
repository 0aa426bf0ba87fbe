/*
 * reductions.cu — the column-sum db reduction, the loss sum and the sum of
 * squares, all deterministic: no atomics, every partial sum formed in an
 * order fixed by the shapes alone (the number of blocks and chunks is a
 * function of n and m, never of timing or of the device), accumulated in
 * double as the CPU accumulates. The final scalar of a loss or
 * sum-of-squares reduction stays in device memory, where the caller asked
 * for it: the training loop reads many steps' costs at once.
 *
 * Scratch (cuda->reduction_scratch, NNLIB_CUDA_REDUCTION_DOUBLES doubles):
 *   loss / squares: [0, blocks) per-block partials;
 *   db:             [0, chunks · n) per-chunk partial column sums.
 * Both are used in compute-stream order, so they never overlap in time.
 */
#include "kernel_common.cuh"

#include <math.h>

/* ------------------------------------------------------------------------ */
/* db = (1/m) Σ over columns of dZ                                           */
/* ------------------------------------------------------------------------ */

/* Rows per block, and threads per row, of column_sum_kernel. */
#define COLUMN_SUM_ROWS 32
#define COLUMN_SUM_LANES 8
/* Columns a chunk should have at least, and the most chunks (gridDim.y). */
#define COLUMN_SUM_MIN_CHUNK 256
#define COLUMN_SUM_MAX_CHUNKS 64

/* Partial row sums of dZ (n × m, column-major) over one chunk of columns.
 * Grid (ceil(n / 32), chunks), block (32, 8): threadIdx.x picks one of the
 * block's 32 rows (consecutive rows: coalesced reads of each column),
 * threadIdx.y = t sums columns first + t, first + t + 8, ... of the chunk
 * [blockIdx.y · chunk_columns, + chunk_columns) ∩ [0, m); then lane t = 0
 * adds the 8 partial sums in order of t. With one chunk the result is final:
 * db[i] = (float)(total · inverse_m), as the CPU rounds it; otherwise it
 * goes to partials[chunk · n + i] for column_sum_finish_kernel. */
static __global__ void column_sum_kernel(const float *dz, size_t n, size_t m,
                                         size_t chunk_columns, double *partials,
                                         float *db, float inverse_m) {
  __shared__ double lane_sums[COLUMN_SUM_LANES][COLUMN_SUM_ROWS];
  const size_t row = blockIdx.x * (size_t)COLUMN_SUM_ROWS + threadIdx.x;
  const size_t first = blockIdx.y * chunk_columns;
  const size_t end = first + chunk_columns < m ? first + chunk_columns : m;
  double total = 0.0;
  if (row < n)
    for (size_t j = first + threadIdx.y; j < end; j += COLUMN_SUM_LANES)
      total += dz[row + j * n];
  lane_sums[threadIdx.y][threadIdx.x] = total;
  __syncthreads();
  if (threadIdx.y != 0 || row >= n)
    return;
  total = 0.0;
  for (int lane = 0; lane < COLUMN_SUM_LANES; lane++)
    total += lane_sums[lane][threadIdx.x];
  if (gridDim.y == 1)
    db[row] = (float)(total * (double)inverse_m);
  else
    partials[blockIdx.y * n + row] = total;
}

/* db (n) from partials (chunks × n): row i adds its chunks' sums in chunk
 * order. One thread per row, grid-stride. */
static __global__ void NNLIB_GRID_STRIDE_BOUNDS
column_sum_finish_kernel(const double *partials, size_t n, unsigned chunks,
                         float *db, float inverse_m) {
  NNLIB_GRID_STRIDE_LOOP(row, n) {
    double total = 0.0;
    for (unsigned chunk = 0; chunk < chunks; chunk++)
      total += partials[chunk * n + row];
    db[row] = (float)(total * (double)inverse_m);
  }
}

/* How many chunks of columns: enough that long reductions (large m, few
 * rows) spread over many blocks, at most COLUMN_SUM_MAX_CHUNKS, and no more
 * than the scratch holds for n rows. A function of n and m alone. */
static unsigned column_sum_chunks(size_t n, size_t m, size_t *chunk_columns) {
  size_t chunks = (m + COLUMN_SUM_MIN_CHUNK - 1) / COLUMN_SUM_MIN_CHUNK;
  if (chunks > COLUMN_SUM_MAX_CHUNKS)
    chunks = COLUMN_SUM_MAX_CHUNKS;
  if (chunks > NNLIB_CUDA_REDUCTION_DOUBLES / n)
    chunks = NNLIB_CUDA_REDUCTION_DOUBLES / n;
  if (chunks == 0)
    chunks = 1;
  *chunk_columns = (m + chunks - 1) / chunks;
  /* No empty chunk at the end. */
  return (unsigned)((m + *chunk_columns - 1) / *chunk_columns);
}

extern "C" nn_status nnlib_cuda_bias_gradient(nnlib_cuda_backend *cuda,
                                              nn_context *ctx, const float *dz,
                                              size_t n, size_t m,
                                              float inverse_m, float *db) {
  if (n == 0 || m == 0)
    return NN_OK;
  size_t chunk_columns = 0;
  const unsigned chunks = column_sum_chunks(n, m, &chunk_columns);
  const dim3 grid((unsigned)((n + COLUMN_SUM_ROWS - 1) / COLUMN_SUM_ROWS),
                  chunks);
  const dim3 block(COLUMN_SUM_ROWS, COLUMN_SUM_LANES);
  column_sum_kernel<<<grid, block, 0, cuda->compute>>>(
      dz, n, m, chunk_columns, cuda->reduction_scratch, db, inverse_m);
  nn_status status = NNLIB_CUDA_CHECK_LAUNCH(ctx, column_sum_kernel);
  if (status != NN_OK || chunks == 1)
    return status;
  column_sum_finish_kernel<<<nnlib_cuda_blocks(cuda, n), NNLIB_CUDA_THREADS, 0,
                             cuda->compute>>>(cuda->reduction_scratch, n,
                                              chunks, db, inverse_m);
  return NNLIB_CUDA_CHECK_LAUNCH(ctx, column_sum_finish_kernel);
}

/* ------------------------------------------------------------------------ */
/* Scalar sums: two stages, block partials then one block over them         */
/* ------------------------------------------------------------------------ */

/* Σ of one double per thread over the block, in a fixed order: a butterfly
 * within each warp, then thread 0 adds the warp totals in warp order. The
 * result is valid in thread 0 only. blockDim.x must be a multiple of 32. */
static __device__ double block_sum(double value) {
  __shared__ double warp_totals[NNLIB_CUDA_THREADS / NNLIB_WARP_SIZE];
  value = warp_sum(value);
  if (threadIdx.x % NNLIB_WARP_SIZE == 0)
    warp_totals[threadIdx.x / NNLIB_WARP_SIZE] = value;
  __syncthreads();
  double total = 0.0;
  if (threadIdx.x == 0)
    for (unsigned w = 0; w < blockDim.x / NNLIB_WARP_SIZE; w++)
      total += warp_totals[w];
  return total;
}

/* The per-element terms summed by elementwise_sum_kernel. */
enum elementwise_term {
  TERM_BINARY_CROSS_ENTROPY, /* softplus(z) - y z, from Z */
  TERM_HALF_SQUARED_ERROR,   /* ½ (a - y)², from A */
  TERM_SQUARE                /* x², y unused */
};

/* log(1 + e^x) without overflow, as the CPU computes it. */
static __device__ double softplus(double x) {
  return x > 0.0 ? x + log1p(exp(-x)) : log1p(exp(x));
}

static __device__ double elementwise_term_value(enum elementwise_term term,
                                                float x, const float *y,
                                                size_t k) {
  switch (term) {
  case TERM_BINARY_CROSS_ENTROPY:
    return softplus(x) - (double)y[k] * x;
  case TERM_HALF_SQUARED_ERROR: {
    double diff = (double)x - y[k];
    return 0.5 * diff * diff;
  }
  default:
    return (double)x * x;
  }
}

/* Stage 1: partials[blockIdx.x] = Σ of the term over this block's
 * grid-stride share of x (count) and y (count); with dz (a loss in a
 * training step) also dz = a - y, dZ[L] as output_gradient_kernel writes
 * it. Grid: blocks_for_sum(count) blocks of NNLIB_CUDA_THREADS; each
 * thread sums its elements in index order, then the block sums its
 * threads (block_sum). */
static __global__ void elementwise_sum_kernel(enum elementwise_term term,
                                              const float *x, const float *y,
                                              size_t count, const float *a,
                                              float *dz, double *partials) {
  double total = 0.0;
  NNLIB_GRID_STRIDE_LOOP(k, count) {
    total += elementwise_term_value(term, x[k], y, k);
    if (dz)
      dz[k] = a[k] - y[k];
  }
  total = block_sum(total);
  if (threadIdx.x == 0)
    partials[blockIdx.x] = total;
}

/* Stage 1 of the categorical cross-entropy: one thread per column j of
 * Z, Y (n × m) computes -Σ_i y_ij (z_ij - logsumexp(z_:j)) in double, as
 * the CPU does, and with dz (a training step) the column of dZ[L] = A - Y;
 * the block sums its threads into partials[blockIdx.x]. Grid:
 * blocks_for_sum(m) blocks of NNLIB_CUDA_THREADS, grid-stride over
 * columns. */
static __global__ void
categorical_cross_entropy_kernel(const float *z, const float *y, size_t n,
                                 size_t m, const float *a, float *dz,
                                 double *partials) {
  double total = 0.0;
  NNLIB_GRID_STRIDE_LOOP(j, m) {
    const float *zc = z + j * n, *yc = y + j * n;
    double max = zc[0];
    for (size_t i = 1; i < n; i++)
      max = zc[i] > max ? zc[i] : max;
    double sum_exp = 0.0;
    for (size_t i = 0; i < n; i++)
      sum_exp += exp(zc[i] - max);
    const double log_sum_exp = max + log(sum_exp);
    for (size_t i = 0; i < n; i++)
      total -= (double)yc[i] * (zc[i] - log_sum_exp);
    for (size_t i = 0; dz && i < n; i++)
      dz[j * n + i] = a[j * n + i] - yc[i];
  }
  total = block_sum(total);
  if (threadIdx.x == 0)
    partials[blockIdx.x] = total;
}

/* Stage 2: *result = Σ partials[0..count) (count <= REDUCTION_BLOCKS), one
 * block of NNLIB_CUDA_THREADS: thread t adds partials t, t + 256, ... in
 * order, then block_sum. */
static __global__ void sum_partials_kernel(const double *partials,
                                           unsigned count, double *result) {
  double total = 0.0;
  for (unsigned k = threadIdx.x; k < count; k += blockDim.x)
    total += partials[k];
  total = block_sum(total);
  if (threadIdx.x == 0)
    *result = total;
}

/* Stage-1 blocks for count items: one per NNLIB_CUDA_THREADS items, at most
 * NNLIB_CUDA_REDUCTION_BLOCKS. A function of count alone. */
static unsigned blocks_for_sum(size_t count) {
  size_t blocks = (count + NNLIB_CUDA_THREADS - 1) / NNLIB_CUDA_THREADS;
  if (blocks > NNLIB_CUDA_REDUCTION_BLOCKS)
    blocks = NNLIB_CUDA_REDUCTION_BLOCKS;
  return blocks == 0 ? 1 : (unsigned)blocks;
}

/* Where stage 1 writes: the partials, or with a single block *sum itself
 * — stage 2 of one partial would add only zeros to it, so the bits are the
 * same and a launch is saved (a small batch's cost). */
static double *stage_one_output(nnlib_cuda_backend *cuda, unsigned blocks,
                                double *sum) {
  return blocks == 1 ? sum : cuda->reduction_scratch;
}

/* Stage 2 into *sum (device memory), unless stage 1 wrote it; nothing
 * waits for it. */
static nn_status finish_sum(nnlib_cuda_backend *cuda, nn_context *ctx,
                            unsigned blocks, double *sum) {
  if (blocks == 1)
    return NN_OK;
  sum_partials_kernel<<<1, NNLIB_CUDA_THREADS, 0, cuda->compute>>>(
      cuda->reduction_scratch, blocks, sum);
  return NNLIB_CUDA_CHECK_LAUNCH(ctx, sum_partials_kernel);
}

/* *sum = 0 for an empty reduction, in stream order. */
static nn_status zero_sum(nnlib_cuda_backend *cuda, nn_context *ctx,
                          double *sum) {
  return NNLIB_CUDA_CHECK(ctx,
                          cudaMemsetAsync(sum, 0, sizeof *sum, cuda->compute));
}

/* Σ of the term over x and y (count), and with dz also dz = a - y. */
static nn_status elementwise_sum(nnlib_cuda_backend *cuda, nn_context *ctx,
                                 enum elementwise_term term, const float *x,
                                 const float *y, size_t count, const float *a,
                                 float *dz, double *sum) {
  const unsigned blocks = blocks_for_sum(count);
  elementwise_sum_kernel<<<blocks, NNLIB_CUDA_THREADS, 0, cuda->compute>>>(
      term, x, y, count, a, dz, stage_one_output(cuda, blocks, sum));
  nn_status status = NNLIB_CUDA_CHECK_LAUNCH(ctx, elementwise_sum_kernel);
  return status == NN_OK ? finish_sum(cuda, ctx, blocks, sum) : status;
}

static nn_status categorical_cross_entropy_sum(nnlib_cuda_backend *cuda,
                                               nn_context *ctx,
                                               const nnlib_layer *output,
                                               const float *y, size_t m,
                                               float *dz, double *sum) {
  const unsigned blocks = blocks_for_sum(m);
  categorical_cross_entropy_kernel<<<blocks, NNLIB_CUDA_THREADS, 0,
                                     cuda->compute>>>(
      output->pre_activation, y, output->units, m, output->activation_out, dz,
      stage_one_output(cuda, blocks, sum));
  nn_status status =
      NNLIB_CUDA_CHECK_LAUNCH(ctx, categorical_cross_entropy_kernel);
  return status == NN_OK ? finish_sum(cuda, ctx, blocks, sum) : status;
}

/* The loss sum, and with dz dZ[L] = A - Y in the same pass. */
static nn_status loss_pass(nnlib_backend *backend, nn_context *ctx,
                           nn_loss loss, const nnlib_layer *output,
                           const float *y, size_t m, double *sum, float *dz) {
  nnlib_cuda_backend *cuda = nnlib_cuda(backend);
  const size_t n = output->units;
  nn_status status = nnlib_cuda_use_device(cuda, ctx);
  if (status != NN_OK || m == 0 || n == 0)
    return status == NN_OK ? zero_sum(cuda, ctx, sum) : status;
  const float *a = output->activation_out;
  switch (loss) {
  case NN_LOSS_BINARY_CROSS_ENTROPY:
    return elementwise_sum(cuda, ctx, TERM_BINARY_CROSS_ENTROPY,
                           output->pre_activation, y, n * m, a, dz, sum);
  case NN_LOSS_CATEGORICAL_CROSS_ENTROPY:
    return categorical_cross_entropy_sum(cuda, ctx, output, y, m, dz, sum);
  default:
    return elementwise_sum(cuda, ctx, TERM_HALF_SQUARED_ERROR, a, y, n * m, a,
                           dz, sum);
  }
}

extern "C" nn_status nnlib_cuda_loss_sum(nnlib_backend *backend,
                                         nn_context *ctx, nn_loss loss,
                                         const nnlib_layer *output,
                                         const float *y, size_t m,
                                         double *sum) {
  return loss_pass(backend, ctx, loss, output, y, m, sum, NULL);
}

extern "C" nn_status nnlib_cuda_loss_sum_and_gradient(nnlib_backend *backend,
                                                      nn_context *ctx,
                                                      nn_loss loss,
                                                      const nnlib_layer *output,
                                                      const float *y, size_t m,
                                                      double *sum, float *dz) {
  return loss_pass(backend, ctx, loss, output, y, m, sum, dz);
}

extern "C" nn_status nnlib_cuda_sum_squares(nnlib_backend *backend,
                                            nn_context *ctx, const float *x,
                                            size_t count, double *sum) {
  nnlib_cuda_backend *cuda = nnlib_cuda(backend);
  nn_status status = nnlib_cuda_use_device(cuda, ctx);
  if (status != NN_OK || count == 0)
    return status == NN_OK ? zero_sum(cuda, ctx, sum) : status;
  return elementwise_sum(cuda, ctx, TERM_SQUARE, x, NULL, count, NULL, NULL,
                         sum);
}
