/*
 * dense.c — a dense layer forward and backward: cuBLAS for the three matrix
 * products (in the layer's precision: fp32, tf32 or bf16), the kernels of
 * activations.cu and reductions.cu for the rest. The same math, in the same
 * steps, as cpu_dense_forward/backward; in fp32 the same arithmetic too.
 *
 * Layout: W[l] is stored row-major [n, n_prev], the same bytes as a
 * column-major (n_prev × n) matrix, i.e. Wᵀ column-major with leading
 * dimension n_prev. Activations are column-major (rows × m), one example per
 * column. cuBLAS takes int dimensions: the model keeps n, n_prev and m at
 * most INT_MAX.
 */
#include "cuda_backend.h"

/* C (rows × cols, column-major) = alpha op(A) op(B) + beta C in a
 * precision: fp32 with cublasSgemm in the handle's default math (no TF32);
 * tf32 with cublasGemmEx computing in CUBLAS_COMPUTE_32F_FAST_TF32; bf16
 * with cublasGemmEx on bf16 A and B (the caller has converted them), fp32 C
 * and fp32 accumulation. A and B are float * except with bf16. */
typedef struct gemm_shape {
  cublasOperation_t op_a, op_b;
  int rows, cols, inner;
  int lda, ldb, ldc;
} gemm_shape;

static nn_status gemm(nnlib_cuda_backend *cuda, nn_context *ctx,
                      nn_precision precision, const gemm_shape *shape,
                      float alpha, const void *a, const void *b, float beta,
                      float *c) {
  if (precision == NN_PRECISION_FP32)
    return NNLIB_CUBLAS_CHECK(
        ctx, cublasSgemm(cuda->cublas, shape->op_a, shape->op_b, shape->rows,
                         shape->cols, shape->inner, &alpha, (const float *)a,
                         shape->lda, (const float *)b, shape->ldb, &beta, c,
                         shape->ldc));
  const bool bf16 = precision == NN_PRECISION_BF16;
  const cudaDataType_t input_type = bf16 ? CUDA_R_16BF : CUDA_R_32F;
  const cublasComputeType_t compute =
      bf16 ? CUBLAS_COMPUTE_32F : CUBLAS_COMPUTE_32F_FAST_TF32;
  return NNLIB_CUBLAS_CHECK(
      ctx, cublasGemmEx(cuda->cublas, shape->op_a, shape->op_b, shape->rows,
                        shape->cols, shape->inner, &alpha, a, input_type,
                        shape->lda, b, input_type, shape->ldb, &beta, c,
                        CUDA_R_32F, shape->ldc, compute, CUBLAS_GEMM_DEFAULT));
}

/* The operand a product reads for an fp32 matrix of count floats: the
 * matrix itself, or with bf16 its copy converted into `copy`. */
static nn_status operand(nnlib_cuda_backend *cuda, nn_context *ctx,
                         const nnlib_layer *layer, const float *matrix,
                         size_t count, void *copy, const void **out) {
  *out = matrix;
  if (layer->precision != NN_PRECISION_BF16)
    return NN_OK;
  *out = copy;
  return nnlib_cuda_to_bf16(cuda, ctx, matrix, copy, count);
}

nn_status nnlib_cuda_dense_forward(nnlib_backend *backend, nn_context *ctx,
                                   const nnlib_layer *layer,
                                   const float *a_prev, size_t m) {
  nnlib_cuda_backend *cuda = nnlib_cuda(backend);
  const int n = (int)layer->units, n_prev = (int)layer->inputs;
  nn_status status = nnlib_cuda_use_device(cuda, ctx);
  if (status != NN_OK || m == 0)
    return status;
  const void *w = NULL, *x = NULL;
  status = operand(cuda, ctx, layer, layer->weights,
                   layer->units * layer->inputs, layer->bf16_weights, &w);
  if (status == NN_OK)
    status = operand(cuda, ctx, layer, a_prev, layer->inputs * m,
                     layer->bf16_inputs, &x);
  /* Z (n × m) = W (n × n_prev) · A_prev (n_prev × m); W read as (Wᵀ)ᵀ. The
   * bias is added afterwards, as on the CPU, not folded in with beta = 1. */
  const gemm_shape shape = {CUBLAS_OP_T, CUBLAS_OP_N, n,      (int)m,
                            n_prev,      n_prev,      n_prev, n};
  if (status == NN_OK)
    status = gemm(cuda, ctx, layer->precision, &shape, 1.0f, w, x, 0.0f,
                  layer->pre_activation);
  if (status == NN_OK)
    status = nnlib_cuda_bias_activation(cuda, ctx, layer, m);
  return status;
}

/* dW = (1/m) dZ A_prevᵀ + (λ/m) W: with L2, dW starts as (λ/m) W and the
 * product is accumulated onto it (beta = 1), exactly as the CPU does.
 * a_prev and dz are the products' operands (bf16 copies with bf16). */
static nn_status weight_gradient(nnlib_cuda_backend *cuda, nn_context *ctx,
                                 const nnlib_layer *layer, const void *a_prev,
                                 const void *dz, size_t m, float inverse_m,
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
  const gemm_shape shape = {CUBLAS_OP_N, CUBLAS_OP_T, n_prev, n,
                            (int)m,      n_prev,      n,      n_prev};
  return gemm(cuda, ctx, layer->precision, &shape, inverse_m, a_prev, dz, beta,
              layer->weight_grad);
}

/* dA_prev (n_prev × m) = Wᵀ (n_prev × n) · dZ (n × m); dz is the product's
 * operand. */
static nn_status input_gradient(nnlib_cuda_backend *cuda, nn_context *ctx,
                                const nnlib_layer *layer, const void *dz,
                                size_t m, float *da_prev) {
  const int n = (int)layer->units, n_prev = (int)layer->inputs;
  const void *w = NULL;
  nn_status status =
      operand(cuda, ctx, layer, layer->weights, layer->units * layer->inputs,
              layer->bf16_weights, &w);
  const gemm_shape shape = {CUBLAS_OP_N, CUBLAS_OP_N, n_prev, (int)m,
                            n,           n_prev,      n,      n_prev};
  if (status == NN_OK)
    status =
        gemm(cuda, ctx, layer->precision, &shape, 1.0f, w, dz, 0.0f, da_prev);
  return status;
}

nn_status nnlib_cuda_dense_backward(nnlib_backend *backend, nn_context *ctx,
                                    const nnlib_layer *layer,
                                    const float *a_prev, const float *dz,
                                    size_t m, float l2_lambda, float *da_prev) {
  nnlib_cuda_backend *cuda = nnlib_cuda(backend);
  const float inverse_m = 1.0f / (float)m;
  nn_status status = nnlib_cuda_use_device(cuda, ctx);
  if (status != NN_OK || m == 0)
    return status;
  const void *x = NULL, *g = NULL;
  status = operand(cuda, ctx, layer, a_prev, layer->inputs * m,
                   layer->bf16_inputs, &x);
  if (status == NN_OK)
    status = operand(cuda, ctx, layer, dz, layer->units * m,
                     layer->bf16_gradients, &g);
  if (status == NN_OK)
    status = weight_gradient(cuda, ctx, layer, x, g, m, inverse_m, l2_lambda);
  if (status == NN_OK)
    status = nnlib_cuda_bias_gradient(cuda, ctx, dz, layer->units, m, inverse_m,
                                      layer->bias_grad);
  if (status == NN_OK && da_prev)
    status = input_gradient(cuda, ctx, layer, g, m, da_prev);
  return status;
}
