/*
 * lt_plans.c — cuBLASLt matrix products with fused epilogues, and the cache
 * of their plans.
 *
 * A plan is everything cuBLASLt needs besides the data: the operation
 * descriptor (compute type, transposes, epilogue, bit-mask leading
 * dimension), the matrix layouts and the algorithm its heuristic chose.
 * The heuristic costs host time that a small model's whole step cannot
 * afford, so a plan is built once per product — shape, precision,
 * epilogue, and the alignment of every pointer (which decides which
 * algorithms may run) — and kept; a call then only sets the bias and aux
 * pointers on the cached descriptor. A product cuBLASLt has no algorithm
 * for is remembered too (as unusable), so that asking again costs nothing
 * and the caller takes its plain path.
 *
 * cuBLASLt shares the cuBLAS handle's workspace: both run on the compute
 * stream, one call after another.
 */
#include "cuda_backend.h"

#include <stdlib.h>
#include <string.h>

/* Plans kept: a model needs two per fused layer and batch size (its
 * forward product, and the backward product of the layer above); with the
 * full and the short batch of an epoch, evaluation batches and a few
 * models per context, 256 keeps them all. Beyond that the oldest goes. */
#define LT_PLAN_CAPACITY 256

/* What identifies a plan. Compared with memcmp: always zero-filled first. */
typedef struct lt_key {
  int32_t epilogue; /* cublasLtEpilogue_t */
  int32_t precision;
  int32_t bf16_output;
  int32_t op_a, op_b;
  int32_t rows, cols, inner, lda, ldb, ldd;
  int64_t aux_ld;
  uint32_t align_a, align_b, align_d, align_bias, align_aux; /* bytes */
} lt_key;

struct nnlib_lt_plan {
  lt_key key;
  bool usable; /* the heuristic found an algorithm */
  cublasLtMatmulDesc_t operation;
  cublasLtMatrixLayout_t layout_a, layout_b, layout_d; /* C shares D's */
  cublasLtMatmulAlgo_t algorithm;
};

struct nnlib_lt_cache {
  nnlib_lt_plan plans[LT_PLAN_CAPACITY];
  size_t count;  /* plans in use */
  size_t oldest; /* the next to go once all are in use */
};

/* The largest power of two, up to 256, that divides the address (256 for
 * NULL: a pointer that is not used constrains nothing). */
static uint32_t alignment_of(const void *pointer) {
  uintptr_t address = (uintptr_t)pointer;
  uint32_t alignment = 256;
  while (alignment > 1 && address % alignment != 0)
    alignment /= 2;
  return alignment;
}

static lt_key key_of(const nnlib_lt_product *product) {
  lt_key key;
  memset(&key, 0, sizeof key);
  key.epilogue = (int32_t)product->epilogue;
  key.precision = (int32_t)product->precision;
  key.bf16_output = product->bf16_output;
  key.op_a = (int32_t)product->op_a;
  key.op_b = (int32_t)product->op_b;
  key.rows = product->rows;
  key.cols = product->cols;
  key.inner = product->inner;
  key.lda = product->lda;
  key.ldb = product->ldb;
  key.ldd = product->ldd;
  key.aux_ld = product->aux_ld;
  key.align_a = alignment_of(product->a);
  key.align_b = alignment_of(product->b);
  key.align_d = alignment_of(product->d);
  key.align_bias = alignment_of(product->bias);
  key.align_aux = alignment_of(product->aux);
  return key;
}

static void release_plan(nnlib_lt_plan *plan) {
  if (plan->layout_a)
    cublasLtMatrixLayoutDestroy(plan->layout_a);
  if (plan->layout_b)
    cublasLtMatrixLayoutDestroy(plan->layout_b);
  if (plan->layout_d)
    cublasLtMatrixLayoutDestroy(plan->layout_d);
  if (plan->operation)
    cublasLtMatmulDescDestroy(plan->operation);
  memset(plan, 0, sizeof *plan);
}

/* ------------------------------------------------------------------------ */
/* Building a plan                                                           */
/* ------------------------------------------------------------------------ */

/* fp32: fp32 data, fp32 arithmetic (no tensor cores); tf32: fp32 data on
 * tensor cores with TF32 inputs; bf16: bf16 A and B, fp32 accumulation,
 * and fp32 C/D unless the product hands bf16 over. Bias and bias gradient
 * take D's type (cuBLASLt's default), the GELU aux too; the scale is fp32
 * in each. */
static cudaDataType_t input_type(nn_precision precision) {
  return precision == NN_PRECISION_BF16 ? CUDA_R_16BF : CUDA_R_32F;
}

static cudaDataType_t output_type(const nnlib_lt_product *product) {
  return product->bf16_output ? CUDA_R_16BF : CUDA_R_32F;
}

static cublasComputeType_t compute_type(nn_precision precision) {
  return precision == NN_PRECISION_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32
                                        : CUBLAS_COMPUTE_32F;
}

#define SET_DESC(ctx, desc, attribute, value)                                  \
  NNLIB_CUBLAS_CHECK(ctx, cublasLtMatmulDescSetAttribute(                      \
                              desc, attribute, &(value), sizeof(value)))

static nn_status describe_operation(nn_context *ctx,
                                    const nnlib_lt_product *product,
                                    cublasLtMatmulDesc_t *out) {
  nn_status status = NNLIB_CUBLAS_CHECK(
      ctx, cublasLtMatmulDescCreate(out, compute_type(product->precision),
                                    CUDA_R_32F));
  const int32_t op_a = (int32_t)product->op_a, op_b = (int32_t)product->op_b;
  const uint32_t epilogue = (uint32_t)product->epilogue;
  if (status == NN_OK)
    status = SET_DESC(ctx, *out, CUBLASLT_MATMUL_DESC_TRANSA, op_a);
  if (status == NN_OK)
    status = SET_DESC(ctx, *out, CUBLASLT_MATMUL_DESC_TRANSB, op_b);
  if (status == NN_OK)
    status = SET_DESC(ctx, *out, CUBLASLT_MATMUL_DESC_EPILOGUE, epilogue);
  if (status == NN_OK && product->aux)
    status = SET_DESC(ctx, *out, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD,
                      product->aux_ld);
  return status;
}

/* The bias (or bias gradient) and aux pointers of one call. The heuristic
 * reads them too: their alignment rules algorithms in or out. */
static nn_status set_pointers(nn_context *ctx, cublasLtMatmulDesc_t operation,
                              const nnlib_lt_product *product) {
  nn_status status = NN_OK;
  if (product->bias)
    status = SET_DESC(ctx, operation, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                      product->bias);
  if (status == NN_OK && product->aux)
    status = SET_DESC(ctx, operation, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER,
                      product->aux);
  return status;
}

/* Column-major layouts of op(A) stored (rows × cols) before the transpose:
 * A is (rows × inner) after op_a, B (inner × cols) after op_b. */
static nn_status describe_layouts(nn_context *ctx,
                                  const nnlib_lt_product *product,
                                  nnlib_lt_plan *plan) {
  const bool a_transposed = product->op_a != CUBLAS_OP_N;
  const bool b_transposed = product->op_b != CUBLAS_OP_N;
  const cudaDataType_t type = input_type(product->precision);
  nn_status status = NNLIB_CUBLAS_CHECK(
      ctx, cublasLtMatrixLayoutCreate(
               &plan->layout_a, type,
               (uint64_t)(a_transposed ? product->inner : product->rows),
               (uint64_t)(a_transposed ? product->rows : product->inner),
               product->lda));
  if (status == NN_OK)
    status = NNLIB_CUBLAS_CHECK(
        ctx, cublasLtMatrixLayoutCreate(
                 &plan->layout_b, type,
                 (uint64_t)(b_transposed ? product->cols : product->inner),
                 (uint64_t)(b_transposed ? product->inner : product->cols),
                 product->ldb));
  if (status == NN_OK)
    status = NNLIB_CUBLAS_CHECK(
        ctx, cublasLtMatrixLayoutCreate(&plan->layout_d, output_type(product),
                                        (uint64_t)product->rows,
                                        (uint64_t)product->cols, product->ldd));
  return status;
}

static const char *epilogue_name(int32_t epilogue) {
  switch (epilogue) {
  case CUBLASLT_EPILOGUE_RELU_AUX_BIAS:
    return "RELU_AUX_BIAS";
  case CUBLASLT_EPILOGUE_GELU_AUX_BIAS:
    return "GELU_AUX_BIAS";
  case CUBLASLT_EPILOGUE_DRELU_BGRAD:
    return "DRELU_BGRAD";
  case CUBLASLT_EPILOGUE_DGELU_BGRAD:
    return "DGELU_BGRAD";
  default:
    return "another epilogue";
  }
}

/* The heuristic refused a well-formed product with another status than
 * NOT_SUPPORTED: the real one answers INVALID_VALUE for some shapes (a
 * dimension of 1, which dense.c does not ask for). That is no reason to
 * fail a training step — the plain path computes the same — but it is one
 * to say so. */
static void note_refusal(nn_context *ctx, const nnlib_lt_plan *plan,
                         cublasStatus_t asked) {
  nnlib_note(ctx,
             "cuBLASLt's heuristic answered %s for a fused %s product (%s, "
             "D %d x %d, inner %d); nn runs its own kernels instead",
             cublasGetStatusName(asked), epilogue_name(plan->key.epilogue),
             nn_precision_name((nn_precision)plan->key.precision),
             plan->key.rows, plan->key.cols, plan->key.inner);
}

/* Asks the heuristic for the best algorithm under the workspace and the
 * operands' real alignment; plan->usable stays false when it has none
 * (no result, or any refusal: see note_refusal), which is not an error. */
static nn_status choose_algorithm(nnlib_cuda_backend *cuda, nn_context *ctx,
                                  nnlib_lt_plan *plan) {
  cublasLtMatmulPreference_t preference = NULL;
  nn_status status =
      NNLIB_CUBLAS_CHECK(ctx, cublasLtMatmulPreferenceCreate(&preference));
  const uint64_t workspace = NNLIB_CUDA_CUBLAS_WORKSPACE_BYTES;
  const struct {
    cublasLtMatmulPreferenceAttributes_t attribute;
    uint32_t bytes;
  } alignments[] = {
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, plan->key.align_a},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, plan->key.align_b},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, plan->key.align_d},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, plan->key.align_d},
  };
  if (status == NN_OK)
    status = NNLIB_CUBLAS_CHECK(
        ctx, cublasLtMatmulPreferenceSetAttribute(
                 preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                 &workspace, sizeof workspace));
  for (size_t k = 0; status == NN_OK && k < 4; k++)
    status = NNLIB_CUBLAS_CHECK(ctx, cublasLtMatmulPreferenceSetAttribute(
                                         preference, alignments[k].attribute,
                                         &alignments[k].bytes,
                                         sizeof alignments[k].bytes));
  cublasLtMatmulHeuristicResult_t result;
  memset(&result, 0, sizeof result);
  int found = 0;
  if (status == NN_OK) {
    cublasStatus_t asked = cublasLtMatmulAlgoGetHeuristic(
        cuda->lt, plan->operation, plan->layout_a, plan->layout_b,
        plan->layout_d, plan->layout_d, preference, 1, &result, &found);
    if (asked != CUBLAS_STATUS_SUCCESS) {
      found = 0;
      if (asked != CUBLAS_STATUS_NOT_SUPPORTED)
        note_refusal(ctx, plan, asked);
    }
  }
  if (status == NN_OK && found > 0 && result.state == CUBLAS_STATUS_SUCCESS) {
    plan->algorithm = result.algo;
    plan->usable = true;
  }
  if (preference)
    cublasLtMatmulPreferenceDestroy(preference);
  return status;
}

static nn_status build_plan(nnlib_cuda_backend *cuda, nn_context *ctx,
                            const nnlib_lt_product *product,
                            nnlib_lt_plan *plan) {
  memset(plan, 0, sizeof *plan);
  plan->key = key_of(product);
  nn_status status = describe_operation(ctx, product, &plan->operation);
  if (status == NN_OK)
    status = set_pointers(ctx, plan->operation, product);
  if (status == NN_OK)
    status = describe_layouts(ctx, product, plan);
  if (status == NN_OK)
    status = choose_algorithm(cuda, ctx, plan);
  if (status != NN_OK)
    release_plan(plan);
  return status;
}

/* ------------------------------------------------------------------------ */
/* The cache                                                                 */
/* ------------------------------------------------------------------------ */

nn_status nnlib_cuda_lt_create(nnlib_cuda_backend *cuda, nn_context *ctx) {
  nn_status status = NNLIB_CUBLAS_CHECK(ctx, cublasLtCreate(&cuda->lt));
  if (status == NN_OK)
    status = nnlib_host_alloc(ctx, 1, sizeof *cuda->lt_plans,
                              (void **)&cuda->lt_plans);
  return status;
}

void nnlib_cuda_lt_destroy(nnlib_cuda_backend *cuda) {
  if (cuda->lt_plans) {
    for (size_t k = 0; k < cuda->lt_plans->count; k++)
      release_plan(&cuda->lt_plans->plans[k]);
    free(cuda->lt_plans);
    cuda->lt_plans = NULL;
  }
  if (cuda->lt)
    cublasLtDestroy(cuda->lt);
  cuda->lt = NULL;
}

static nnlib_lt_plan *find_plan(nnlib_lt_cache *cache, const lt_key *key) {
  for (size_t k = 0; k < cache->count; k++)
    if (memcmp(&cache->plans[k].key, key, sizeof *key) == 0)
      return &cache->plans[k];
  return NULL;
}

/* A slot for a new plan: the next free one, or the oldest plan's. */
static nnlib_lt_plan *free_slot(nnlib_lt_cache *cache) {
  if (cache->count < LT_PLAN_CAPACITY)
    return &cache->plans[cache->count++];
  nnlib_lt_plan *slot = &cache->plans[cache->oldest];
  cache->oldest = (cache->oldest + 1) % LT_PLAN_CAPACITY;
  release_plan(slot);
  return slot;
}

nn_status nnlib_cuda_lt_plan(nnlib_cuda_backend *cuda, nn_context *ctx,
                             const nnlib_lt_product *product,
                             nnlib_lt_plan **out) {
  *out = NULL;
  const lt_key key = key_of(product);
  nnlib_lt_plan *plan = find_plan(cuda->lt_plans, &key);
  if (!plan) {
    /* Built aside, so that a failure leaves the cache as it was. */
    nnlib_lt_plan built;
    nn_status status = build_plan(cuda, ctx, product, &built);
    if (status != NN_OK)
      return status;
    plan = free_slot(cuda->lt_plans);
    *plan = built;
  }
  *out = plan->usable ? plan : NULL;
  return NN_OK;
}

void nnlib_cuda_lt_refuse(nnlib_lt_plan *plan) {
  plan->usable = false;
}

nn_status nnlib_cuda_lt_run(nnlib_cuda_backend *cuda, nn_context *ctx,
                            const nnlib_lt_plan *plan,
                            const nnlib_lt_product *product) {
  const float beta = 0.0f;
  nn_status status = set_pointers(ctx, plan->operation, product);
  if (status == NN_OK)
    status = NNLIB_CUBLAS_CHECK(
        ctx,
        cublasLtMatmul(cuda->lt, plan->operation, &product->alpha, product->a,
                       plan->layout_a, product->b, plan->layout_b, &beta,
                       product->d, plan->layout_d, product->d, plan->layout_d,
                       &plan->algorithm, cuda->cublas_workspace,
                       NNLIB_CUDA_CUBLAS_WORKSPACE_BYTES, cuda->compute));
  return status;
}
