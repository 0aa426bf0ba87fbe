/*
 * activations.cu — the bias add fused with each activation's forward, the
 * column-wise softmax, each activation's derivative applied to dA (through
 * the dropout mask) and the output gradient dZ[L] = A[L] - Y.
 *
 * The element-wise math is host/elementwise.h, the CPU backend's own; the build
 * passes --fmad=false so that no multiply-add is contracted where the CPU
 * rounds twice. Only the math library differs (CUDA's expf, tanhf, erff are
 * within 2 ulp of glibc's).
 */
#include "kernel_common.cuh"

/* Z (n × m, column-major, count = n·m) += b (n) broadcast over columns, in
 * place; A (n × m) = g(Z). One thread per element, grid-stride. */
static __global__ void NNLIB_GRID_STRIDE_BOUNDS
bias_activation_kernel(float *z, float *a, const float *bias, size_t n,
                       size_t count, nn_activation activation) {
  NNLIB_GRID_STRIDE_CELLS(cell, n, count) {
    const size_t k = cell.index;
    float value = z[k] + bias[cell.row];
    z[k] = value;
    a[k] = nnlib_activate(activation, value);
  }
}

/* Z (n × m) += b (n), then A = softmax of each column of Z, stably: with
 * the column's max subtracted, exponentials summed in double.
 * One warp per column (blockDim.x / 32 columns per block); lane i handles
 * rows i, i + 32, ... The sum of a column is a warp butterfly, the same bits
 * on every run. */
static __global__ void softmax_kernel(float *z, float *a, const float *bias,
                                      size_t n, size_t m) {
  const size_t column = blockIdx.x * (size_t)(blockDim.x / NNLIB_WARP_SIZE) +
                        threadIdx.x / NNLIB_WARP_SIZE;
  const unsigned lane = threadIdx.x % NNLIB_WARP_SIZE;
  if (column >= m) /* the whole warp leaves together */
    return;
  float *zc = z + column * n, *ac = a + column * n;
  float max = -INFINITY;
  for (size_t i = lane; i < n; i += NNLIB_WARP_SIZE) {
    zc[i] += bias[i];
    max = fmaxf(max, zc[i]);
  }
  max = warp_max(max);
  double total = 0.0;
  for (size_t i = lane; i < n; i += NNLIB_WARP_SIZE) {
    ac[i] = expf(zc[i] - max);
    total += ac[i];
  }
  total = warp_sum(total);
  const float inverse = (float)(1.0 / total);
  for (size_t i = lane; i < n; i += NNLIB_WARP_SIZE)
    ac[i] *= inverse;
}

/* dZ = dA · g'(Z) in place over count = n·m elements, after dA *= mask when
 * the layer has dropout (mask non-NULL, of 0 or 1/keep). With dropout,
 * A = g(Z)·mask, so g is recomputed from Z for g'. One thread per element. */
static __global__ void NNLIB_GRID_STRIDE_BOUNDS
activation_backward_kernel(float *da_dz, const float *z, const float *a,
                           const float *mask, nn_activation activation,
                           size_t count) {
  NNLIB_GRID_STRIDE_LOOP(k, count) {
    float da = mask ? da_dz[k] * mask[k] : da_dz[k];
    float g = mask ? nnlib_activate(activation, z[k]) : a[k];
    da_dz[k] = da * nnlib_activation_derivative(activation, z[k], g);
  }
}

/* dZ[L] (count = n·m) = A[L] - Y: the gradient of every output+loss pair
 * (sigmoid+BCE, softmax+CE, linear+½SE) with respect to Z[L]. */
static __global__ void NNLIB_GRID_STRIDE_BOUNDS
output_gradient_kernel(float *dz, const float *a, const float *y,
                       size_t count) {
  NNLIB_GRID_STRIDE_LOOP(k, count) {
    dz[k] = a[k] - y[k];
  }
}

static nn_status softmax_forward(nnlib_cuda_backend *cuda, nn_context *ctx,
                                 const nnlib_layer *layer, size_t m) {
  const unsigned columns_per_block = NNLIB_CUDA_THREADS / NNLIB_WARP_SIZE;
  const size_t blocks = (m + columns_per_block - 1) / columns_per_block;
  softmax_kernel<<<(unsigned)blocks, NNLIB_CUDA_THREADS, 0, cuda->compute>>>(
      layer->pre_activation, layer->activation_out, layer->bias, layer->units,
      m);
  return NNLIB_CUDA_CHECK_LAUNCH(ctx, softmax_kernel);
}

extern "C" nn_status nnlib_cuda_bias_activation(nnlib_cuda_backend *cuda,
                                                nn_context *ctx,
                                                const nnlib_layer *layer,
                                                size_t m) {
  if (m == 0) /* units > 0: host/model.c refuses a layer of width 0 */
    return NN_OK;
  if (layer->activation == NN_ACTIVATION_SOFTMAX)
    return softmax_forward(cuda, ctx, layer, m);
  const size_t count = layer->units * m;
  bias_activation_kernel<<<nnlib_cuda_blocks(cuda, count), NNLIB_CUDA_THREADS,
                           0, cuda->compute>>>(
      layer->pre_activation, layer->activation_out, layer->bias, layer->units,
      count, layer->activation);
  return NNLIB_CUDA_CHECK_LAUNCH(ctx, bias_activation_kernel);
}

extern "C" nn_status nnlib_cuda_activation_backward(nnlib_backend *backend,
                                                    nn_context *ctx,
                                                    const nnlib_layer *layer,
                                                    float *da_dz, size_t m) {
  nnlib_cuda_backend *cuda = nnlib_cuda(backend);
  const size_t count = layer->units * m;
  nn_status status = nnlib_cuda_use_device(cuda, ctx);
  if (status != NN_OK || count == 0)
    return status;
  activation_backward_kernel<<<nnlib_cuda_blocks(cuda, count),
                               NNLIB_CUDA_THREADS, 0, cuda->compute>>>(
      da_dz, layer->pre_activation, layer->activation_out, layer->dropout_mask,
      layer->activation, count);
  return NNLIB_CUDA_CHECK_LAUNCH(ctx, activation_backward_kernel);
}

extern "C" nn_status nnlib_cuda_output_gradient(nnlib_backend *backend,
                                                nn_context *ctx,
                                                const nnlib_layer *output,
                                                const float *y, size_t m,
                                                float *dz) {
  nnlib_cuda_backend *cuda = nnlib_cuda(backend);
  const size_t count = output->units * m;
  nn_status status = nnlib_cuda_use_device(cuda, ctx);
  if (status != NN_OK || count == 0)
    return status;
  output_gradient_kernel<<<nnlib_cuda_blocks(cuda, count), NNLIB_CUDA_THREADS,
                           0, cuda->compute>>>(dz, output->activation_out, y,
                                               count);
  return NNLIB_CUDA_CHECK_LAUNCH(ctx, output_gradient_kernel);
}
