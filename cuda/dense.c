/*
 * dense.c — a dense layer forward and backward: cuBLAS for the three matrix
 * products, the kernels of activations.cu and reductions.cu for the rest.
 * The same math, in the same steps, as cpu_dense_forward/backward.
 *
 * Layout: W[l] is stored row-major [n, n_prev], the same bytes as a
 * column-major (n_prev × n) matrix, i.e. Wᵀ column-major with leading
 * dimension n_prev. Activations are column-major (rows × m), one example per
 * column. cuBLAS takes int dimensions: the model keeps n, n_prev and m at
 * most INT_MAX.
 */
#include "cuda_backend.h"

nn_status nnlib_cuda_dense_forward(nnlib_backend *backend, nn_context *ctx,
                                   const nnlib_layer *layer,
                                   const float *a_prev, size_t m) {
  nnlib_cuda_backend *cuda = nnlib_cuda(backend);
  const int n = (int)layer->units, n_prev = (int)layer->inputs;
  const float one = 1.0f, zero = 0.0f;
  nn_status status = nnlib_cuda_use_device(cuda, ctx);
  if (status != NN_OK || m == 0)
    return status;
  /* Z (n × m) = W (n × n_prev) · A_prev (n_prev × m); W read as (Wᵀ)ᵀ. The
   * bias is added afterwards, as on the CPU, not folded in with beta = 1. */
  status = NNLIB_CUBLAS_CHECK(
      ctx, cublasSgemm(cuda->cublas, CUBLAS_OP_T, CUBLAS_OP_N, n, (int)m,
                       n_prev, &one, layer->weights, n_prev, a_prev, n_prev,
                       &zero, layer->pre_activation, n));
  if (status == NN_OK)
    status = nnlib_cuda_bias_activation(cuda, ctx, layer, m);
  return status;
}

/* dW = (1/m) dZ A_prevᵀ + (λ/m) W: with L2, dW starts as (λ/m) W and the
 * product is accumulated onto it (beta = 1), exactly as the CPU does. */
static nn_status weight_gradient(nnlib_cuda_backend *cuda, nn_context *ctx,
                                 const nnlib_layer *layer, const float *a_prev,
                                 const float *dz, size_t m, float inverse_m,
                                 float l2_lambda) {
  const int n = (int)layer->units, n_prev = (int)layer->inputs;
  float beta = 0.0f;
  if (l2_lambda > 0.0f) {
    nn_status status =
        nnlib_cuda_scale(&cuda->base, ctx, layer->weight_grad, layer->weights,
                         l2_lambda * inverse_m, layer->units * layer->inputs);
    if (status != NN_OK)
      return status;
    beta = 1.0f;
  }
  /* dWᵀ (n_prev × n) = (1/m) A_prev (n_prev × m) · dZᵀ (m × n). */
  return NNLIB_CUBLAS_CHECK(
      ctx, cublasSgemm(cuda->cublas, CUBLAS_OP_N, CUBLAS_OP_T, n_prev, n,
                       (int)m, &inverse_m, a_prev, n_prev, dz, n, &beta,
                       layer->weight_grad, n_prev));
}

nn_status nnlib_cuda_dense_backward(nnlib_backend *backend, nn_context *ctx,
                                    const nnlib_layer *layer,
                                    const float *a_prev, const float *dz,
                                    size_t m, float l2_lambda, float *da_prev) {
  nnlib_cuda_backend *cuda = nnlib_cuda(backend);
  const int n = (int)layer->units, n_prev = (int)layer->inputs;
  const float inverse_m = 1.0f / (float)m;
  const float one = 1.0f, zero = 0.0f;
  nn_status status = nnlib_cuda_use_device(cuda, ctx);
  if (status != NN_OK || m == 0)
    return status;
  status =
      weight_gradient(cuda, ctx, layer, a_prev, dz, m, inverse_m, l2_lambda);
  if (status == NN_OK)
    status = nnlib_cuda_bias_gradient(cuda, ctx, dz, layer->units, m, inverse_m,
                                      layer->bias_grad);
  if (status == NN_OK && da_prev)
    /* dA_prev (n_prev × m) = Wᵀ (n_prev × n) · dZ (n × m). */
    status = NNLIB_CUBLAS_CHECK(
        ctx, cublasSgemm(cuda->cublas, CUBLAS_OP_N, CUBLAS_OP_N, n_prev, (int)m,
                         n, &one, layer->weights, n_prev, dz, n, &zero, da_prev,
                         n_prev));
  return status;
}
