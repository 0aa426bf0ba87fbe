/*
 * dense.c — a dense layer forward and backward: cuBLAS for the three matrix
 * products (in the layer's precision: fp32, tf32 or bf16), the kernels of
 * activations.cu and reductions.cu for the rest. The same math, in the same
 * steps, as cpu_dense_forward/backward; in fp32 the same arithmetic too.
 *
 * bf16: the products read W and b from the model's bf16 copy of the
 * parameters (made by the optimizer step, or converted before the forward
 * pass: host/internal.h); the forward pass converts A_prev into the
 * layer's own copy and the backward pass reads that again (only dZ is
 * converted there).
 *
 * Layout: W[l] is stored row-major [n, n_prev], the same bytes as a
 * column-major (n_prev × n) matrix, i.e. Wᵀ column-major with leading
 * dimension n_prev. Activations are column-major (rows × m), one example per
 * column. cuBLAS takes int dimensions: the model keeps n, n_prev and m at
 * most INT_MAX.
 *
 * Fusion (nn_model_set_fusion AUTO): a hidden ReLU layer without dropout
 * runs its forward product through cuBLASLt with the RELU_AUX_BIAS
 * epilogue — A = max(W A_prev + b, 0) straight out of the product, and a
 * ReLU bit mask written over its Z block — and the layer above runs its
 * dA_prev product with DRELU_BGRAD, which applies the mask (giving this
 * layer's dZ) and sums db in the same call. A hidden GELU-tanh layer does
 * the same with GELU_AUX_BIAS, which writes Z itself as the aux (GELU's
 * input), and DGELU_BGRAD. The forward pass fuses only when cuBLASLt has
 * algorithms for both products (so a backward never finds an aux it cannot
 * use) and records it in layer->epilogue; backward follows that record,
 * not the setting. And only once epilogue_check.c has found that
 * cuBLASLt's bias gradient is what the backward product relies on.
 *
 * In bf16 a fused layer's products hand over in bf16 where cuBLASLt has
 * algorithms for it (layer->epilogue->bf16_output): the forward product
 * writes A as bf16 straight into the copy the layer above reads (adding
 * b's bf16 copy: cuBLASLt gives a bf16 D's bias D's type), and the
 * backward product of the layer above writes this layer's dZ as bf16
 * straight into its copy, with db as bf16 (then converted into fp32 db).
 * That skips writing A and dZ in fp32 and converting them back: 8 bytes
 * an element of each. Otherwise the fused products write fp32 as before.
 */
#include "cuda_backend.h"

#include <stdio.h>
#include <string.h>

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

/* A_prev's operand in the forward pass: with bf16 the copy the fused
 * product below wrote, when it handed over in bf16, or for layer 1 the
 * copy the feeder gathered X into; else converted now. */
static nn_status input_operand(nnlib_cuda_backend *cuda, nn_context *ctx,
                               const nnlib_layer *layer, const float *a_prev,
                               size_t m, const void **out) {
  if (layer->input_record->bf16_output) {
    *out = layer->bf16_inputs;
    return NN_OK;
  }
  return operand(cuda, ctx, layer, a_prev, layer->inputs * m,
                 layer->bf16_inputs, out);
}

/* dZ's operand in the backward pass: with bf16 the copy the fused product
 * above wrote, when the layer hands over in bf16, else converted now. */
static nn_status gradient_operand(nnlib_cuda_backend *cuda, nn_context *ctx,
                                  const nnlib_layer *layer, const float *dz,
                                  size_t m, const void **out) {
  if (layer->epilogue->bf16_output) {
    *out = layer->bf16_gradients;
    return NN_OK;
  }
  return operand(cuda, ctx, layer, dz, layer->units * m, layer->bf16_gradients,
                 out);
}

/* Where a product's operand is, without converting anything: the fp32
 * matrix itself, or with bf16 its copy — for W, the model's copy of the
 * parameters (current in every pass), and for A_prev in a backward pass,
 * the one the forward pass made (A is unchanged since; host/internal.h). */
static const void *converted(const nnlib_layer *layer, const float *matrix,
                             const void *copy) {
  return layer->precision == NN_PRECISION_BF16 ? copy : matrix;
}

/* ------------------------------------------------------------------------ */
/* The fused products (cuBLASLt epilogues)                                   */
/* ------------------------------------------------------------------------ */

static bool aligned_16(const void *pointer) {
  return (uintptr_t)pointer % 16 == 0;
}

/* What the layer's forward product may fuse: the ReLU epilogue when its
 * bit mask fits in the Z block, the GELU one when Z's leading dimension
 * (n) is one cuBLASLt takes for the GELU input (a multiple of 8); and a
 * layer above must take its dZ. */
static nnlib_fused fusable(const nnlib_layer *layer) {
  if (layer->fusion != NN_FUSION_AUTO || layer->dropout != 0.0f ||
      layer->above == NULL)
    return NNLIB_FUSED_NONE;
  if (layer->activation == NN_ACTIVATION_RELU &&
      layer->units >= NNLIB_RELU_MASK_MIN_UNITS)
    return NNLIB_FUSED_RELU;
  if (layer->activation == NN_ACTIVATION_GELU_TANH && layer->units % 8 == 0)
    return NNLIB_FUSED_GELU_TANH;
  return NNLIB_FUSED_NONE;
}

/* Whether the fused products have no dimension of 1 at this batch: the
 * forward one is n × m × n_prev, the backward one (the layer above's)
 * n × m × n_above. cuBLASLt's heuristic answers such products with
 * CUBLAS_STATUS_INVALID_VALUE (PyTorch keeps them off cuBLASLt for that
 * reason, and nvmath-python refuses K = 1 for DRELU/DGELU); a one-example
 * batch, or a layer under a single output unit, runs the plain path. */
static bool shape_fusable(const nnlib_layer *layer, size_t m) {
  return m >= 2 && layer->inputs >= 2 && layer->above->units >= 2;
}

/* Whether the products may hand over in bf16, or in fp32. b and db sit
 * at any float offset in their arenas, and b's bf16 copy at the same
 * offset in the copy's; cuBLASLt's epilogues have been seen to fail on
 * bias vectors less than 16-byte aligned, so the bias and bias gradient a
 * hand-over uses must be. The bf16 db has a region of its own (256-byte
 * aligned, host/model.c). */
static bool may_hand_over(const nnlib_layer *layer, bool bf16_output) {
  if (bf16_output)
    return layer->precision == NN_PRECISION_BF16 &&
           aligned_16(layer->bf16_bias);
  return aligned_16(layer->bias) && aligned_16(layer->bias_grad);
}

/* The aux of a fused layer: the ReLU mask's bits per column, or Z's
 * floats per column. */
static int64_t aux_ld(nnlib_fused fused, size_t units) {
  return fused == NNLIB_FUSED_RELU ? (int64_t)NNLIB_RELU_MASK_LD(units)
                                   : (int64_t)units;
}

static const char *fused_name(nnlib_fused fused) {
  return fused == NNLIB_FUSED_RELU ? "ReLU" : "GELU-tanh";
}

/* A (n × m) = g(W A_prev + b), the aux over Z: op(A) = (Wᵀ)ᵀ with W read
 * as column-major (n_prev × n), B = A_prev (n_prev × m). w and x are the
 * products' operands (bf16 copies with bf16). */
static nnlib_lt_product fused_forward_product(const nnlib_layer *layer,
                                              nnlib_fused fused,
                                              bool bf16_output, const void *w,
                                              const void *x, size_t m) {
  const int n = (int)layer->units, n_prev = (int)layer->inputs;
  nnlib_lt_product product = {
      .epilogue = fused == NNLIB_FUSED_RELU ? CUBLASLT_EPILOGUE_RELU_AUX_BIAS
                                            : CUBLASLT_EPILOGUE_GELU_AUX_BIAS,
      .precision = layer->precision,
      .bf16_output = bf16_output,
      .op_a = CUBLAS_OP_T,
      .op_b = CUBLAS_OP_N,
      .rows = n,
      .cols = (int)m,
      .inner = n_prev,
      .lda = n_prev,
      .ldb = n_prev,
      .ldd = n,
      .a = w,
      .b = x,
      .d = bf16_output ? layer->above->bf16_inputs
                       : (void *)layer->activation_out,
      .bias = bf16_output ? layer->bf16_bias : (void *)layer->bias,
      .aux = layer->pre_activation,
      .aux_ld = aux_ld(fused, layer->units),
      .alpha = 1.0f,
  };
  return product;
}

/* dZ[below] (n_prev × m) = alpha (Wᵀ dZ) through below's g' (its ReLU
 * mask, or GELU' of its Z), with db[below] = Σ over columns of it: op(A) =
 * W read as column-major (n_prev × n), B = dZ (n × m). alpha is what makes
 * dZ[below] divided by m (1/m, or 1 when dZ already is), so db[below] is
 * final. In fp32 into da_prev and below's db; handed over in bf16, into
 * below's bf16 dZ and db copies. */
static nnlib_lt_product
fused_backward_product(const nnlib_layer *layer,
                       const nnlib_layer_epilogue *below_record, const void *w,
                       const void *dz, float *da_prev, size_t m, float alpha) {
  const nnlib_layer *below = layer->below;
  const int n = (int)layer->units, n_prev = (int)layer->inputs;
  const bool bf16_output = below_record->bf16_output;
  nnlib_lt_product product = {
      .epilogue = below_record->fused == NNLIB_FUSED_RELU
                      ? CUBLASLT_EPILOGUE_DRELU_BGRAD
                      : CUBLASLT_EPILOGUE_DGELU_BGRAD,
      .precision = layer->precision,
      .bf16_output = bf16_output,
      .op_a = CUBLAS_OP_N,
      .op_b = CUBLAS_OP_N,
      .rows = n_prev,
      .cols = (int)m,
      .inner = n,
      .lda = n_prev,
      .ldb = n,
      .ldd = n_prev,
      .a = w,
      .b = dz,
      .d = bf16_output ? below->bf16_gradients : (void *)da_prev,
      .bias = bf16_output ? below->bf16_bias_grad : (void *)below->bias_grad,
      .aux = below->pre_activation,
      .aux_ld = aux_ld(below_record->fused, below->units),
      .alpha = alpha,
  };
  return product;
}

/* The plan of the forward product, when cuBLASLt also has one for the
 * backward product of the layer above at this m, handing over the same
 * way; NULL otherwise. The backward product's W operand is known now (W,
 * or its bf16 copy), and so is its dZ operand's address; an fp32 dA_prev
 * is a backward scratch block of the activation arena (256-byte aligned,
 * host/model.c), which the stand-in address below has the alignment of;
 * it is only used for planning. The backward product is planned first, so
 * that the plan handed back is the last one looked up (a full cache may
 * evict any earlier one). */
static nn_status fusion_plan(nnlib_cuda_backend *cuda, nn_context *ctx,
                             const nnlib_lt_product *forward,
                             const nnlib_layer *layer,
                             const nnlib_layer_epilogue *record, size_t m,
                             nnlib_lt_plan **out) {
  *out = NULL;
  const nnlib_layer *above = layer->above;
  float *scratch = (float *)(uintptr_t)256;
  const nnlib_lt_product backward = fused_backward_product(
      above, record, converted(above, above->weights, above->bf16_weights),
      converted(above, scratch, above->bf16_gradients), scratch, m, 1.0f);
  nnlib_lt_plan *backward_plan = NULL;
  nn_status status = nnlib_cuda_lt_plan(cuda, ctx, &backward, &backward_plan);
  if (status != NN_OK || !backward_plan)
    return status;
  return nnlib_cuda_lt_plan(cuda, ctx, forward, out);
}

/* The fused forward product handing over as `record` says, when cuBLASLt
 * has algorithms for it (*ran says whether it did). The heuristic's word
 * is no guarantee that an algorithm runs (cuBLASLt says so): one that
 * refuses is not tried again, and the layer takes another way — the call
 * wrote nothing, as a refused call does not launch. */
static nn_status run_fused_forward(nnlib_cuda_backend *cuda, nn_context *ctx,
                                   const nnlib_layer *layer,
                                   const nnlib_layer_epilogue *record,
                                   const void *w, const void *x, size_t m,
                                   bool *ran) {
  *ran = false;
  const nnlib_lt_product product =
      fused_forward_product(layer, record->fused, record->bf16_output, w, x, m);
  nnlib_lt_plan *plan = NULL;
  nn_status status = fusion_plan(cuda, ctx, &product, layer, record, m, &plan);
  if (status != NN_OK || !plan)
    return status;
  char before[sizeof ctx->last_error];
  memcpy(before, ctx->last_error, sizeof before);
  if (nnlib_cuda_lt_run(cuda, ctx, plan, &product) != NN_OK) {
    nnlib_cuda_lt_refuse(plan);
    nnlib_note(ctx,
               "a fused %s product (%s out) failed, layers of its shape run "
               "another way: %.140s",
               fused_name(record->fused), record->bf16_output ? "bf16" : "fp32",
               ctx->last_error);
    memcpy(ctx->last_error, before, sizeof before);
    return NN_OK;
  }
  *ran = true;
  return NN_OK;
}

/* Whether the layer may fuse as `attempt` says: its bias vectors aligned
 * for the hand-over, and the epilogue checked on this context. */
static nn_status way_usable(nnlib_cuda_backend *cuda, nn_context *ctx,
                            const nnlib_layer *layer,
                            const nnlib_layer_epilogue *attempt, bool *usable) {
  *usable = false;
  if (!may_hand_over(layer, attempt->bf16_output))
    return NN_OK;
  return nnlib_cuda_epilogue_usable(cuda, ctx, attempt->fused, layer->precision,
                                    attempt->bf16_output, usable);
}

/* The layer's epilogue when one applies, handing over in bf16 if it can
 * (bf16 precision), else in fp32; *record says what ran (nothing: the
 * plain path follows). */
static nn_status try_fused_forward(nnlib_cuda_backend *cuda, nn_context *ctx,
                                   const nnlib_layer *layer, const void *w,
                                   const void *x, size_t m,
                                   nnlib_layer_epilogue *record) {
  const nnlib_fused candidate = fusable(layer);
  if (candidate == NNLIB_FUSED_NONE || !shape_fusable(layer, m))
    return NN_OK;
  for (int way = 0; way < 2; way++) {
    const nnlib_layer_epilogue attempt = {candidate, way == 0};
    bool usable = false;
    nn_status status = way_usable(cuda, ctx, layer, &attempt, &usable);
    if (status != NN_OK)
      return status;
    if (!usable)
      continue;
    bool ran = false;
    status = run_fused_forward(cuda, ctx, layer, &attempt, w, x, m, &ran);
    if (status != NN_OK || ran) {
      if (ran)
        *record = attempt;
      return status;
    }
  }
  return NN_OK;
}

/* Each way the layer could hand over (try_fused_forward's order) checked,
 * so that its first captured step finds the verdicts. */
static nn_status check_epilogues(nnlib_cuda_backend *cuda, nn_context *ctx,
                                 const nnlib_layer *layer) {
  const nnlib_fused candidate = fusable(layer);
  nn_status status = NN_OK;
  for (int way = 0; candidate != NNLIB_FUSED_NONE && way < 2 && status == NN_OK;
       way++) {
    const nnlib_layer_epilogue attempt = {candidate, way == 0};
    bool usable = false;
    status = way_usable(cuda, ctx, layer, &attempt, &usable);
  }
  return status;
}

nn_status nnlib_cuda_prepare_capture(nnlib_backend *backend, nn_context *ctx,
                                     const nnlib_layer *layers, size_t count) {
  nnlib_cuda_backend *cuda = nnlib_cuda(backend);
  nn_status status = nnlib_cuda_use_device(cuda, ctx);
  for (size_t l = 0; l < count && status == NN_OK; l++)
    status = check_epilogues(cuda, ctx, &layers[l]);
  return status;
}

/* dZ[below] and db[below], both divided by m, from the DRELU_BGRAD or
 * DGELU_BGRAD product (alpha: see nnlib_cuda_dense_backward), and db
 * converted from its bf16 copy when handed over in bf16. The forward pass
 * made sure of the plan; one missing now means the scratch was not as
 * aligned as planned, which is a bug worth reporting. */
static nn_status fused_backward(nnlib_cuda_backend *cuda, nn_context *ctx,
                                const nnlib_layer *layer, const void *dz,
                                size_t m, float alpha, float *da_prev) {
  const void *w = converted(layer, layer->weights, layer->bf16_weights);
  const nnlib_layer *below = layer->below;
  const nnlib_layer_epilogue *below_record = below->epilogue;
  const nnlib_lt_product product =
      fused_backward_product(layer, below_record, w, dz, da_prev, m, alpha);
  nnlib_lt_plan *plan = NULL;
  nn_status status = nnlib_cuda_lt_plan(cuda, ctx, &product, &plan);
  if (status == NN_OK && !plan)
    return NNLIB_FAIL_CALL(ctx, NN_ERROR_BACKEND, "cublasLtMatmul",
                           "no fused %s backward algorithm for %d x %d x %d "
                           "after the forward pass found one (operands not "
                           "as aligned as planned); nn_model_set_fusion(OFF) "
                           "avoids the fused products",
                           fused_name(below_record->fused), product.rows,
                           product.cols, product.inner);
  if (status == NN_OK) {
    status = nnlib_cuda_lt_run(cuda, ctx, plan, &product);
    /* Nothing can take this step's place (the forward pass kept only what
     * this product reads), but later forward passes plan around it. */
    if (status != NN_OK)
      nnlib_cuda_lt_refuse(plan);
  }
  if (status != NN_OK || !below_record->bf16_output)
    return status;
  return nnlib_cuda_from_bf16(cuda, ctx, below->bf16_bias_grad,
                              below->bias_grad, below->units);
}

/* ------------------------------------------------------------------------ */
/* Forward and backward                                                      */
/* ------------------------------------------------------------------------ */

nn_status nnlib_cuda_dense_forward(nnlib_backend *backend, nn_context *ctx,
                                   const nnlib_layer *layer,
                                   const float *a_prev, size_t m) {
  nnlib_cuda_backend *cuda = nnlib_cuda(backend);
  const int n = (int)layer->units, n_prev = (int)layer->inputs;
  nn_status status = nnlib_cuda_use_device(cuda, ctx);
  if (status != NN_OK || m == 0)
    return status;
  const void *w = converted(layer, layer->weights, layer->bf16_weights);
  const void *x = NULL;
  status = input_operand(cuda, ctx, layer, a_prev, m, &x);
  nnlib_layer_epilogue record = {NNLIB_FUSED_NONE, false};
  if (status == NN_OK)
    status = try_fused_forward(cuda, ctx, layer, w, x, m, &record);
  if (status != NN_OK)
    record = (nnlib_layer_epilogue){NNLIB_FUSED_NONE, false};
  *layer->epilogue = record;
  if (status != NN_OK || record.fused != NNLIB_FUSED_NONE)
    return status;
  /* Z (n × m) = W (n × n_prev) · A_prev (n_prev × m); W read as (Wᵀ)ᵀ. The
   * bias is added afterwards, as on the CPU, not folded in with beta = 1. */
  const gemm_shape shape = {CUBLAS_OP_T, CUBLAS_OP_N, n,      (int)m,
                            n_prev,      n_prev,      n_prev, n};
  status = gemm(cuda, ctx, layer->precision, &shape, 1.0f, w, x, 0.0f,
                layer->pre_activation);
  if (status == NN_OK)
    status = nnlib_cuda_bias_activation(cuda, ctx, layer, m);
  return status;
}

/* dW = (1/m) dZ A_prevᵀ + (λ/m) W: with L2, dW starts as (λ/m) W and the
 * product is accumulated onto it (beta = 1), exactly as the CPU does. The
 * product's alpha is scale: 1/m, or 1 for a dZ already divided by m.
 * a_prev and dz are the products' operands (bf16 copies with bf16). */
static nn_status weight_gradient(nnlib_cuda_backend *cuda, nn_context *ctx,
                                 const nnlib_layer *layer, const void *a_prev,
                                 const void *dz, size_t m, float inverse_m,
                                 float scale, float l2_lambda) {
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
  return gemm(cuda, ctx, layer->precision, &shape, scale, a_prev, dz, beta,
              layer->weight_grad);
}

/* dA_prev (n_prev × m) = alpha Wᵀ (n_prev × n) · dZ (n × m); dz is the
 * product's operand. */
static nn_status input_gradient(nnlib_cuda_backend *cuda, nn_context *ctx,
                                const nnlib_layer *layer, const void *dz,
                                size_t m, float alpha, float *da_prev) {
  const int n = (int)layer->units, n_prev = (int)layer->inputs;
  const void *w = converted(layer, layer->weights, layer->bf16_weights);
  const gemm_shape shape = {CUBLAS_OP_N, CUBLAS_OP_N, n_prev, (int)m,
                            n,           n_prev,      n,      n_prev};
  return gemm(cuda, ctx, layer->precision, &shape, alpha, w, dz, 0.0f, da_prev);
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
  /* Only the output layer's dZ (A - Y) is whole: its products divide by
   * m as they multiply (dW, db, and dA_prev), so every hidden layer's dA
   * and dZ come divided already, and its products take them as they are.
   * A fused backward product's db is then final, which saves the launches
   * that would divide db alone. The CPU divides each layer's dW and db
   * instead: the same up to rounding. */
  const float scale = layer->above == NULL ? inverse_m : 1.0f;
  const void *x = converted(layer, a_prev, layer->bf16_inputs);
  const void *g = NULL;
  status = gradient_operand(cuda, ctx, layer, dz, m, &g);
  if (status == NN_OK)
    status =
        weight_gradient(cuda, ctx, layer, x, g, m, inverse_m, scale, l2_lambda);
  /* A layer that ran an epilogue got its db with its dZ, from the
   * backward product of the layer above. */
  if (status == NN_OK && layer->epilogue->fused == NNLIB_FUSED_NONE)
    status = nnlib_cuda_bias_gradient(cuda, ctx, dz, layer->units, m, scale,
                                      layer->bias_grad);
  if (status != NN_OK || !da_prev)
    return status;
  if (layer->below && layer->below->epilogue->fused != NNLIB_FUSED_NONE)
    return fused_backward(cuda, ctx, layer, g, m, scale, da_prev);
  return input_gradient(cuda, ctx, layer, g, m, scale, da_prev);
}

/* The scheduler's activation_backward: nothing to do for a layer whose dZ
 * the fused path already produced (fused_backward, one layer up). */
nn_status nnlib_cuda_layer_activation_backward(nnlib_backend *backend,
                                               nn_context *ctx,
                                               const nnlib_layer *layer,
                                               float *da_dz, size_t m) {
  if (layer->epilogue->fused != NNLIB_FUSED_NONE)
    return NN_OK;
  return nnlib_cuda_activation_backward(backend, ctx, layer, da_dz, m);
}
