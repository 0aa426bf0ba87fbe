/*
 * cpu_backend.c — the float32 reference backend: OpenBLAS CBLAS sgemm for the
 * matrix products, plain C loops for the rest, cuRAND's host generator for
 * random numbers. Deterministic for a given seed; the oracle for the GPU.
 *
 * Layout reminder: W[l] is stored row-major [n, n_prev], which is the same
 * bytes as a column-major (n_prev × n) matrix, i.e. W[l]ᵀ column-major. The
 * gemm calls below read it that way (lda = n_prev).
 */
#include "backend.h"
#include "elementwise.h"

#include <cblas.h>
#include <curand.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *curand_status_text(curandStatus_t status) {
  switch (status) {
  case CURAND_STATUS_SUCCESS:
    return "success";
  case CURAND_STATUS_ALLOCATION_FAILED:
    return "allocation failed";
  case CURAND_STATUS_NOT_INITIALIZED:
    return "generator not initialized";
  case CURAND_STATUS_LENGTH_NOT_MULTIPLE:
    return "length not a multiple of the dimension";
  case CURAND_STATUS_TYPE_ERROR:
    return "generator type error";
  case CURAND_STATUS_OUT_OF_RANGE:
    return "argument out of range";
  default:
    return "cuRAND error";
  }
}

static nn_status check_curand(nn_context *ctx, curandStatus_t status,
                              const char *call, const char *file, int line) {
  if (status == CURAND_STATUS_SUCCESS)
    return NN_OK;
  return nnlib_fail(ctx, NN_ERROR_BACKEND, call, file, line,
                    "cuRAND host generator: %s (status %d)",
                    curand_status_text(status), (int)status);
}

#define CHECK_CURAND(ctx, expr)                                                \
  check_curand((ctx), (expr), #expr, __FILE__, __LINE__)

static void cpu_destroy(nnlib_backend *backend) {
  free(backend);
}

static nn_status cpu_alloc(nnlib_backend *backend, nn_context *ctx,
                           size_t count, float **out) {
  (void)backend;
  *out = NULL;
  if (count == 0)
    count = 1;
  size_t bytes;
  if (!nnlib_checked_mul(count, sizeof(float), &bytes))
    return NNLIB_FAIL(ctx, NN_ERROR_OUT_OF_MEMORY,
                      "%zu floats overflow the address space", count);
  float *memory = calloc(count, sizeof(float));
  if (!memory)
    return NNLIB_FAIL(ctx, NN_ERROR_OUT_OF_MEMORY,
                      "host allocation of %zu bytes failed", bytes);
  *out = memory;
  return NN_OK;
}

static void cpu_release(nnlib_backend *backend, float *memory) {
  (void)backend;
  free(memory);
}

static nn_status cpu_copy(nnlib_backend *backend, nn_context *ctx, float *dst,
                          const float *src, size_t count) {
  (void)backend;
  (void)ctx;
  if (count > 0 && dst != src)
    memmove(dst, src, count * sizeof(float));
  return NN_OK;
}

static nn_status cpu_fill(nnlib_backend *backend, nn_context *ctx, float *dst,
                          float value, size_t count) {
  (void)backend;
  (void)ctx;
  for (size_t i = 0; i < count; i++)
    dst[i] = value;
  return NN_OK;
}

static nn_status cpu_scale(nnlib_backend *backend, nn_context *ctx, float *dst,
                           const float *src, float alpha, size_t count) {
  (void)backend;
  (void)ctx;
  for (size_t i = 0; i < count; i++)
    dst[i] = alpha * src[i];
  return NN_OK;
}

/* ------------------------------------------------------------------------ */
/* cuRAND host generator                                                     */
/* ------------------------------------------------------------------------ */

static nn_status cpu_rng_seed(nnlib_backend *backend, nn_context *ctx,
                              nnlib_rng rng, uint64_t seed) {
  (void)backend;
  curandGenerator_t generator = rng;
  nn_status status =
      CHECK_CURAND(ctx, curandSetPseudoRandomGeneratorSeed(generator, seed));
  if (status == NN_OK)
    status = CHECK_CURAND(ctx, curandSetGeneratorOffset(generator, 0));
  return status;
}

static nn_status cpu_rng_create(nnlib_backend *backend, nn_context *ctx,
                                uint64_t seed, nnlib_rng *out) {
  curandGenerator_t generator = NULL;
  *out = NULL;
  nn_status status = CHECK_CURAND(
      ctx,
      curandCreateGeneratorHost(&generator, CURAND_RNG_PSEUDO_PHILOX4_32_10));
  if (status != NN_OK)
    return status;
  status = cpu_rng_seed(backend, ctx, generator, seed);
  if (status != NN_OK) {
    curandDestroyGenerator(generator);
    return status;
  }
  *out = generator;
  return NN_OK;
}

static void cpu_rng_destroy(nnlib_backend *backend, nnlib_rng rng) {
  (void)backend;
  if (rng)
    curandDestroyGenerator((curandGenerator_t)rng);
}

static nn_status cpu_random_normal(nnlib_backend *backend, nn_context *ctx,
                                   nnlib_rng rng, float *dst, size_t count) {
  (void)backend;
  return CHECK_CURAND(ctx, curandGenerateNormal((curandGenerator_t)rng, dst,
                                                count, 0.0f, 1.0f));
}

static nn_status cpu_random_uniform(nnlib_backend *backend, nn_context *ctx,
                                    nnlib_rng rng, float *dst, size_t count) {
  (void)backend;
  return CHECK_CURAND(
      ctx, curandGenerateUniform((curandGenerator_t)rng, dst, count));
}

/* ------------------------------------------------------------------------ */
/* Layers (the element-wise math is host/elementwise.h, shared with CUDA)    */
/* ------------------------------------------------------------------------ */

/* Column-wise softmax of z (n × m) into a, subtracting each column's max. */
static void softmax_columns(const float *z, float *a, size_t n, size_t m) {
  for (size_t j = 0; j < m; j++) {
    const float *zc = z + j * n;
    float *ac = a + j * n;
    float max = zc[0];
    for (size_t i = 1; i < n; i++)
      max = zc[i] > max ? zc[i] : max;
    double total = 0.0;
    for (size_t i = 0; i < n; i++) {
      ac[i] = expf(zc[i] - max);
      total += ac[i];
    }
    float inverse = (float)(1.0 / total);
    for (size_t i = 0; i < n; i++)
      ac[i] *= inverse;
  }
}

/* Z (n × m) += b, column by column. */
static void add_bias(float *restrict z, const float *restrict bias, size_t n,
                     size_t m) {
  for (size_t j = 0; j < m; j++) {
    float *restrict column = z + j * n;
#pragma omp simd
    for (size_t i = 0; i < n; i++)
      column[i] += bias[i];
  }
}

/* Z (n × m) += b and A = g(Z) in one pass. Inlined with g a constant, the
 * loop is one activation's: ReLU's vectorizes (omp simd: Z, A and b never
 * overlap); the others call expf, tanhf or erff per element either way. */
static inline __attribute__((always_inline)) void
bias_activation_loop(nn_activation g, float *restrict z, float *restrict a,
                     const float *restrict bias, size_t n, size_t m) {
  for (size_t j = 0; j < m; j++) {
    float *restrict z_column = z + j * n;
    float *restrict a_column = a + j * n;
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
      z_column[i] += bias[i];
      a_column[i] = nnlib_activate(g, z_column[i]);
    }
  }
}

static void add_bias_and_activate(nn_activation g, float *z, float *a,
                                  const float *bias, size_t n, size_t m) {
  switch (g) {
  case NN_ACTIVATION_RELU:
    bias_activation_loop(NN_ACTIVATION_RELU, z, a, bias, n, m);
    break;
  case NN_ACTIVATION_LEAKY_RELU:
    bias_activation_loop(NN_ACTIVATION_LEAKY_RELU, z, a, bias, n, m);
    break;
  default:
    bias_activation_loop(g, z, a, bias, n, m);
    break;
  }
}

static nn_status cpu_dense_forward(nnlib_backend *backend, nn_context *ctx,
                                   const nnlib_layer *layer,
                                   const float *a_prev, size_t m) {
  (void)backend;
  (void)ctx;
  const size_t n = layer->units, n_prev = layer->inputs;
  float *z = layer->pre_activation;
  float *a = layer->activation_out;
  /* Z (n × m) = W (n × n_prev) · A_prev (n_prev × m); W is W ᵀ col-major. */
  cblas_sgemm(CblasColMajor, CblasTrans, CblasNoTrans, (int)n, (int)m,
              (int)n_prev, 1.0f, layer->weights, (int)n_prev, a_prev,
              (int)n_prev, 0.0f, z, (int)n);
  if (layer->activation == NN_ACTIVATION_SOFTMAX) {
    add_bias(z, layer->bias, n, m);
    softmax_columns(z, a, n, m);
  } else {
    add_bias_and_activate(layer->activation, z, a, layer->bias, n, m);
  }
  return NN_OK;
}

static nn_status cpu_dropout_forward(nnlib_backend *backend, nn_context *ctx,
                                     const nnlib_layer *layer, nnlib_rng rng,
                                     size_t m) {
  size_t count = layer->units * m;
  float *mask = layer->dropout_mask;
  nn_status status = cpu_random_uniform(backend, ctx, rng, mask,
                                        nnlib_dropout_draw_count(count));
  if (status != NN_OK)
    return status;
  const float keep = 1.0f - layer->dropout;
  const float kept_scale = 1.0f / keep;
  for (size_t k = 0; k < count; k++) {
    mask[k] = mask[k] < keep ? kept_scale : 0.0f;
    layer->activation_out[k] *= mask[k];
  }
  return NN_OK;
}

/* log(1 + e^x) without overflow. */
static double softplus(double x) {
  return x > 0.0 ? x + log1p(exp(-x)) : log1p(exp(x));
}

/* Σ_ij y log(1/(1+e^-z)) + (1-y) log(1 - ...) negated = softplus(z) - y z. */
static double binary_cross_entropy_sum(const float *z, const float *y,
                                       size_t count) {
  double total = 0.0;
  for (size_t k = 0; k < count; k++)
    total += softplus(z[k]) - (double)y[k] * z[k];
  return total;
}

/* -Σ_j Σ_i y_ij (z_ij - logsumexp(z_:j)) over m columns of n rows. */
static double categorical_cross_entropy_sum(const float *z, const float *y,
                                            size_t n, size_t m) {
  double total = 0.0;
  for (size_t j = 0; j < m; j++) {
    const float *zc = z + j * n, *yc = y + j * n;
    double max = zc[0];
    for (size_t i = 1; i < n; i++)
      max = zc[i] > max ? zc[i] : max;
    double sum_exp = 0.0;
    for (size_t i = 0; i < n; i++)
      sum_exp += exp(zc[i] - max);
    double log_sum_exp = max + log(sum_exp);
    for (size_t i = 0; i < n; i++)
      total -= (double)yc[i] * (zc[i] - log_sum_exp);
  }
  return total;
}

static double squared_error_sum(const float *a, const float *y, size_t count) {
  double total = 0.0;
  for (size_t k = 0; k < count; k++) {
    double diff = (double)a[k] - y[k];
    total += 0.5 * diff * diff;
  }
  return total;
}

static nn_status cpu_loss_sum(nnlib_backend *backend, nn_context *ctx,
                              nn_loss loss, const nnlib_layer *output,
                              const float *y, size_t m, double *sum) {
  (void)backend;
  (void)ctx;
  const size_t n = output->units;
  switch (loss) {
  case NN_LOSS_BINARY_CROSS_ENTROPY:
    *sum = binary_cross_entropy_sum(output->pre_activation, y, n * m);
    break;
  case NN_LOSS_CATEGORICAL_CROSS_ENTROPY:
    *sum = categorical_cross_entropy_sum(output->pre_activation, y, n, m);
    break;
  default:
    *sum = squared_error_sum(output->activation_out, y, n * m);
    break;
  }
  return NN_OK;
}

static nn_status cpu_output_gradient(nnlib_backend *backend, nn_context *ctx,
                                     const nnlib_layer *output, const float *y,
                                     size_t m, float *dz) {
  (void)backend;
  (void)ctx;
  const size_t count = output->units * m;
  for (size_t k = 0; k < count; k++)
    dz[k] = output->activation_out[k] - y[k];
  return NN_OK;
}

/* dZ = dA ⊙ g'(Z), in place over count elements; inlined with g a
 * constant, as bias_activation_loop. */
static inline __attribute__((always_inline)) void
derivative_loop(nn_activation g, float *restrict da_dz, const float *restrict z,
                const float *restrict a, size_t count) {
#pragma omp simd
  for (size_t k = 0; k < count; k++)
    da_dz[k] *= nnlib_activation_derivative(g, z[k], a[k]);
}

static void apply_derivative(nn_activation g, float *da_dz, const float *z,
                             const float *a, size_t count) {
  switch (g) {
  case NN_ACTIVATION_RELU:
    derivative_loop(NN_ACTIVATION_RELU, da_dz, z, a, count);
    break;
  case NN_ACTIVATION_LEAKY_RELU:
    derivative_loop(NN_ACTIVATION_LEAKY_RELU, da_dz, z, a, count);
    break;
  default:
    derivative_loop(g, da_dz, z, a, count);
    break;
  }
}

/* With dropout, A = g(Z)·mask: dZ = (dA·mask) ⊙ g'(Z), with g(Z) itself
 * recomputed from Z for g'. */
static void dropout_derivative_loop(nn_activation g, float *da_dz,
                                    const float *z, const float *mask,
                                    size_t count) {
  for (size_t k = 0; k < count; k++) {
    float da = da_dz[k] * mask[k];
    da_dz[k] =
        da * nnlib_activation_derivative(g, z[k], nnlib_activate(g, z[k]));
  }
}

static nn_status cpu_activation_backward(nnlib_backend *backend,
                                         nn_context *ctx,
                                         const nnlib_layer *layer, float *da_dz,
                                         size_t m) {
  (void)backend;
  (void)ctx;
  const size_t count = layer->units * m;
  const float *z = layer->pre_activation, *a = layer->activation_out;
  if (layer->dropout_mask)
    dropout_derivative_loop(layer->activation, da_dz, z, layer->dropout_mask,
                            count);
  else
    apply_derivative(layer->activation, da_dz, z, a, count);
  return NN_OK;
}

/* Rows summed per block: the block's running sums stay in registers or L1
 * while dZ is read column by column, in memory order. */
#define COLUMN_SUM_BLOCK 256

/* db (n) = scale · Σ_j dZ[:, j] (dZ n × m): each row summed in double, in
 * column order j = 0, 1, ..., m - 1, and rounded once. */
static void column_sum(const float *restrict dz, size_t n, size_t m,
                       float scale, float *restrict db) {
  for (size_t first = 0; first < n; first += COLUMN_SUM_BLOCK) {
    const size_t rows =
        n - first < COLUMN_SUM_BLOCK ? n - first : COLUMN_SUM_BLOCK;
    double totals[COLUMN_SUM_BLOCK] = {0.0};
    for (size_t j = 0; j < m; j++) {
      const float *restrict column = dz + first + j * n;
#pragma omp simd
      for (size_t i = 0; i < rows; i++)
        totals[i] += column[i];
    }
    for (size_t i = 0; i < rows; i++)
      db[first + i] = (float)(totals[i] * scale);
  }
}

static nn_status cpu_dense_backward(nnlib_backend *backend, nn_context *ctx,
                                    const nnlib_layer *layer,
                                    const float *a_prev, const float *dz,
                                    size_t m, float l2_lambda, float *da_prev) {
  (void)backend;
  (void)ctx;
  const size_t n = layer->units, n_prev = layer->inputs;
  const float inverse_m = 1.0f / (float)m;
  float beta = 0.0f;
  if (l2_lambda > 0.0f) {
    cpu_scale(backend, ctx, layer->weight_grad, layer->weights,
              l2_lambda * inverse_m, n * n_prev);
    beta = 1.0f;
  }
  /* dWᵀ (n_prev × n) = (1/m) A_prev (n_prev × m) · dZᵀ (m × n). */
  cblas_sgemm(CblasColMajor, CblasNoTrans, CblasTrans, (int)n_prev, (int)n,
              (int)m, inverse_m, a_prev, (int)n_prev, dz, (int)n, beta,
              layer->weight_grad, (int)n_prev);
  column_sum(dz, n, m, inverse_m, layer->bias_grad);
  if (da_prev)
    /* dA_prev (n_prev × m) = Wᵀ (n_prev × n) · dZ (n × m). */
    cblas_sgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, (int)n_prev, (int)m,
                (int)n, 1.0f, layer->weights, (int)n_prev, dz, (int)n, 0.0f,
                da_prev, (int)n_prev);
  return NN_OK;
}

static nn_status cpu_sum_squares(nnlib_backend *backend, nn_context *ctx,
                                 const float *x, size_t count, double *sum) {
  (void)backend;
  (void)ctx;
  double total = 0.0;
  for (size_t k = 0; k < count; k++)
    total += (double)x[k] * x[k];
  *sum = total;
  return NN_OK;
}

/* The CPU backend's state: the staged optimizer constants, and the column
 * order gathers read (the caller's, kept unchanged: set_gather_order). */
typedef struct cpu_backend {
  nnlib_backend base; /* first: the scheduler holds a nnlib_backend * */
  nnlib_update_constants staged;
  const size_t *gather_order;
  size_t gather_order_count;
} cpu_backend;

static nn_status cpu_optimizer_stage(nnlib_backend *backend, nn_context *ctx,
                                     const nnlib_optimizer_step *step) {
  (void)ctx;
  ((cpu_backend *)backend)->staged = nnlib_optimizer_constants(step);
  return NN_OK;
}

/* Each optimizer's loop on its own, so that it vectorizes (omp simd: the
 * arenas never overlap). Vector division and square root round as the
 * scalar ones do (IEEE), so the result is the same element for element. A
 * moment the optimizer does not use may be NULL (never allocated). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) &&         \
    !defined(__SANITIZE_THREAD__)
/* Built for AVX-512 and AVX2 too, chosen at load time by the CPU (an
 * ifunc): the same IEEE operations on wider vectors. GCC only: Clang 14
 * makes the clones' resolver a global symbol of libnn.a. Not under
 * ThreadSanitizer, whose instrumented resolver runs during relocation,
 * before TSan is set up, and crashes every program at startup. */
#define NNLIB_CPU_CLONES                                                       \
  __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define NNLIB_CPU_CLONES
#endif

NNLIB_CPU_CLONES
static void update_all(const nnlib_update_constants *c, float *restrict theta,
                       const float *restrict g, float *restrict v,
                       float *restrict s, size_t count) {
  switch (c->kind) {
  case NN_OPTIMIZER_MOMENTUM:
#pragma omp simd
    for (size_t k = 0; k < count; k++)
      nnlib_momentum_update(c, g[k], &theta[k], &v[k]);
    break;
  case NN_OPTIMIZER_RMSPROP:
#pragma omp simd
    for (size_t k = 0; k < count; k++)
      nnlib_rmsprop_update(c, g[k], &theta[k], &s[k]);
    break;
  case NN_OPTIMIZER_ADAM:
#pragma omp simd
    for (size_t k = 0; k < count; k++)
      nnlib_adam_update(c, g[k], &theta[k], &v[k], &s[k]);
    break;
  default:
#pragma omp simd
    for (size_t k = 0; k < count; k++)
      nnlib_gd_update(c, g[k], &theta[k]);
    break;
  }
}

static nn_status cpu_optimizer_apply(nnlib_backend *backend, nn_context *ctx,
                                     float *parameters, const float *gradients,
                                     float *first_moment, float *second_moment,
                                     void *bf16_parameters, size_t count) {
  (void)ctx;
  (void)bf16_parameters; /* always NULL: the CPU computes in fp32 only */
  const nnlib_update_constants constants = ((cpu_backend *)backend)->staged;
  update_all(&constants, parameters, gradients, first_moment, second_moment,
             count);
  return NN_OK;
}

/* ------------------------------------------------------------------------ */
/* Batch delivery: host memory is the backend's memory, so copies are        */
/* synchronous and there are no streams or events to order.                  */
/* ------------------------------------------------------------------------ */

static nn_status cpu_event_create(nnlib_backend *backend, nn_context *ctx,
                                  nnlib_event *out) {
  (void)backend;
  (void)ctx;
  *out = NULL;
  return NN_OK;
}

static nn_status cpu_upload_async(nnlib_backend *backend, nn_context *ctx,
                                  float *dst, const float *host_src,
                                  size_t count, nnlib_event copied) {
  (void)copied;
  return cpu_copy(backend, ctx, dst, host_src, count);
}

static nn_status cpu_check_precision(nnlib_backend *backend, nn_context *ctx,
                                     nn_precision precision) {
  (void)backend;
  if (precision == NN_PRECISION_FP32)
    return NN_OK;
  return NNLIB_FAIL_CALL(ctx, NN_ERROR_UNSUPPORTED, "nn_model_set_precision",
                         "the CPU backend computes in fp32 only; %s needs a "
                         "CUDA device",
                         nn_precision_name(precision));
}

/* A timer event is a host double: the clock when it was recorded. The
 * feeder's events are NULL and record nothing. */
static nn_status cpu_timer_create(nnlib_backend *backend, nn_context *ctx,
                                  nnlib_event *out) {
  (void)backend;
  double *when = NULL;
  nn_status status = nnlib_host_alloc(ctx, 1, sizeof *when, (void **)&when);
  *out = when;
  return status;
}

static void cpu_event_destroy(nnlib_backend *backend, nnlib_event event) {
  (void)backend;
  free(event);
}

/* Every operation before it has finished (the CPU runs them to completion),
 * so now is when the event happens. */
static nn_status cpu_compute_record(nnlib_backend *backend, nn_context *ctx,
                                    nnlib_event event) {
  (void)backend;
  (void)ctx;
  if (event) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    *(double *)event = (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
  }
  return NN_OK;
}

static nn_status cpu_elapsed_ms(nnlib_backend *backend, nn_context *ctx,
                                nnlib_event start, nnlib_event end, float *ms) {
  (void)backend;
  (void)ctx;
  *ms = (float)(1e3 * (*(const double *)end - *(const double *)start));
  return NN_OK;
}

/* compute_wait, copy_wait and event_wait_host alike. */
static nn_status cpu_event_nothing(nnlib_backend *backend, nn_context *ctx,
                                   nnlib_event event) {
  (void)backend;
  (void)ctx;
  (void)event;
  return NN_OK;
}

static nn_status cpu_set_gather_order(nnlib_backend *backend, nn_context *ctx,
                                      const size_t *order, size_t count) {
  (void)ctx;
  ((cpu_backend *)backend)->gather_order = order;
  ((cpu_backend *)backend)->gather_order_count = count;
  return NN_OK;
}

static nn_status cpu_gather_columns(nnlib_backend *backend, nn_context *ctx,
                                    const nnlib_gather_matrix matrices[2],
                                    size_t first, size_t count) {
  const cpu_backend *cpu = (const cpu_backend *)backend;
  if (count == 0) /* nothing to read, as on CUDA */
    return NN_OK;
  nn_status status =
      nnlib_check_gather_range(ctx, first, count, cpu->gather_order_count);
  if (status != NN_OK)
    return status;
  const size_t *columns = cpu->gather_order + first;
  for (int k = 0; k < 2; k++)
    if (matrices[k].bf16 && matrices[k].rows > 0)
      return NNLIB_FAIL_CALL(ctx, NN_ERROR_UNSUPPORTED, "gather_columns",
                             "the CPU backend gathers into fp32 only");
  for (int k = 0; k < 2; k++) {
    const nnlib_gather_matrix *g = &matrices[k];
    float *dst = g->dst;
    for (size_t j = 0; g->rows > 0 && j < count; j++)
      memcpy(dst + j * g->rows, g->src + columns[j] * g->rows,
             g->rows * sizeof(float));
  }
  return NN_OK;
}

static nn_status cpu_memory_info(nnlib_backend *backend, nn_context *ctx,
                                 size_t *free_bytes, size_t *total_bytes) {
  (void)backend;
  (void)ctx;
  *free_bytes = 0;
  *total_bytes = 0;
  return NN_OK;
}

static const nnlib_backend_ops cpu_ops = {
    .destroy = cpu_destroy,
    .alloc = cpu_alloc,
    .release = cpu_release,
    .upload = cpu_copy,
    .download = cpu_copy,
    .fill = cpu_fill,
    .scale = cpu_scale,
    .host_alloc = cpu_alloc,
    .host_release = cpu_release,
    .event_create = cpu_event_create,
    .event_destroy = cpu_event_destroy,
    .upload_async = cpu_upload_async,
    .compute_wait = cpu_event_nothing,
    .compute_record = cpu_compute_record,
    .copy_wait = cpu_event_nothing,
    .event_wait_host = cpu_event_nothing,
    .timer_create = cpu_timer_create,
    .check_precision = cpu_check_precision,
    .elapsed_ms = cpu_elapsed_ms,
    .set_gather_order = cpu_set_gather_order,
    .gather_columns = cpu_gather_columns,
    .memory_info = cpu_memory_info,
    .rng_create = cpu_rng_create,
    .rng_destroy = cpu_rng_destroy,
    .rng_seed = cpu_rng_seed,
    .random_uniform = cpu_random_uniform,
    .random_normal = cpu_random_normal,
    .dense_forward = cpu_dense_forward,
    .dropout_forward = cpu_dropout_forward,
    .loss_sum = cpu_loss_sum,
    .output_gradient = cpu_output_gradient,
    .activation_backward = cpu_activation_backward,
    .dense_backward = cpu_dense_backward,
    .sum_squares = cpu_sum_squares,
    .optimizer_stage = cpu_optimizer_stage,
    .optimizer_apply = cpu_optimizer_apply,
    .copy = cpu_copy,
};

nn_status nnlib_cpu_backend_create(nn_context *ctx, nnlib_backend **out) {
  cpu_backend *backend = NULL;
  nn_status status =
      nnlib_host_alloc(ctx, 1, sizeof *backend, (void **)&backend);
  if (status != NN_OK)
    return status;
  backend->base.ops = &cpu_ops;
  *out = &backend->base;
  return NN_OK;
}
