/*
 * test_cpu_loops.c — the CPU backend's vectorized loops (optimizer update,
 * bias + activation, activation derivative, db column sum) give, bit for
 * bit, what the per-element rules of host/elementwise.h give one element at
 * a time: at lengths around every vector width (remainders included) and
 * on arrays that start off a vector boundary. The CUDA kernels apply those
 * same rules, so this is what keeps the two backends equal. Also: the
 * OpenBLAS advice in the CPU context's notice.
 */
#include "backend.h"
#include "elementwise.h"
#include "support.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Lengths around 4, 8 and 16 floats (SSE, AVX2, AVX-512) and the column
 * sum's 256-row block. */
static const size_t lengths[] = {1,  3,  4,   5,   15,  16,
                                 17, 33, 255, 256, 257, 1027};
#define LENGTH_COUNT (sizeof lengths / sizeof lengths[0])

/* Deterministic values in [low, high) (support.h's generator). */
static void fill_uniform(float *x, size_t count, float low, float high,
                         uint64_t seed) {
  support_rng rng = support_rng_seeded(seed);
  for (size_t k = 0; k < count; k++)
    x[k] = (float)(low + (high - low) * support_rng_uniform(&rng));
}

/* count zeroed floats starting one float past a 64-byte boundary. */
static float *misaligned(size_t count) {
  void *memory = NULL;
  cr_assert_eq(posix_memalign(&memory, 64, (count + 16) * sizeof(float)), 0);
  float *block = memory;
  memset(block, 0, (count + 16) * sizeof(float));
  return block + 1;
}

static void release_misaligned(float *x) {
  free(x - 1);
}

static void assert_same_bits(const float *got, const float *want, size_t count,
                             const char *what, size_t length) {
  for (size_t k = 0; k < count; k++)
    cr_assert(memcmp(&got[k], &want[k], sizeof(float)) == 0,
              "%s (length %zu): element %zu is %.9g, the per-element rule "
              "gives %.9g",
              what, length, k, (double)got[k], (double)want[k]);
}

/* ------------------------------------------------------------------------ */
/* The optimizer update                                                      */
/* ------------------------------------------------------------------------ */

typedef struct update_arrays {
  float *theta, *g, *v, *s;
} update_arrays;

static update_arrays make_update_arrays(size_t count, uint64_t seed) {
  update_arrays a = {misaligned(count), misaligned(count), misaligned(count),
                     misaligned(count)};
  fill_uniform(a.theta, count, -1.0f, 1.0f, seed);
  fill_uniform(a.g, count, -0.1f, 0.1f, seed + 1);
  fill_uniform(a.v, count, -0.01f, 0.01f, seed + 2);
  fill_uniform(a.s, count, 0.0f, 0.001f, seed + 3);
  return a;
}

static void copy_update_arrays(update_arrays *to, const update_arrays *from,
                               size_t count) {
  memcpy(to->theta, from->theta, count * sizeof(float));
  memcpy(to->g, from->g, count * sizeof(float));
  memcpy(to->v, from->v, count * sizeof(float));
  memcpy(to->s, from->s, count * sizeof(float));
}

static void release_update_arrays(update_arrays *a) {
  release_misaligned(a->theta);
  release_misaligned(a->g);
  release_misaligned(a->v);
  release_misaligned(a->s);
}

static void check_update(nn_context *ctx, nn_optimizer kind, size_t count) {
  nnlib_backend *backend = ctx->backend;
  const nnlib_optimizer_step step = {kind, 0.01f, 0.9f, 0.999f, 1e-8f, 3};
  const nnlib_update_constants constants = nnlib_optimizer_constants(&step);
  update_arrays got = make_update_arrays(count, 17 + count);
  update_arrays want = make_update_arrays(count, 0);
  copy_update_arrays(&want, &got, count);
  for (size_t k = 0; k < count; k++)
    nnlib_update_parameter(&constants, want.g[k], &want.theta[k], &want.v[k],
                           &want.s[k]);
  SUPPORT_OK(ctx, backend->ops->optimizer_stage(backend, ctx, &step));
  SUPPORT_OK(ctx, backend->ops->optimizer_apply(backend, ctx, got.theta, got.g,
                                                got.v, got.s, NULL, count));
  const char *name = nn_optimizer_name(kind);
  assert_same_bits(got.theta, want.theta, count, name, count);
  assert_same_bits(got.v, want.v, count, name, count);
  assert_same_bits(got.s, want.s, count, name, count);
  release_update_arrays(&got);
  release_update_arrays(&want);
}

Test(cpu_loops, every_optimizer_update_matches_the_per_element_rule) {
  nn_context *ctx = support_cpu_context();
  for (int kind = 0; kind < NN_OPTIMIZER_COUNT; kind++)
    for (size_t k = 0; k < LENGTH_COUNT; k++)
      check_update(ctx, (nn_optimizer)kind, lengths[k]);
  nn_context_destroy(ctx);
}

/* ------------------------------------------------------------------------ */
/* Layers: bias + activation, the derivative, db                             */
/* ------------------------------------------------------------------------ */

/* Activations with an element-wise rule (softmax is per column). */
static const nn_activation elementwise_activations[] = {
    NN_ACTIVATION_LINEAR,   NN_ACTIVATION_RELU,    NN_ACTIVATION_LEAKY_RELU,
    NN_ACTIVATION_TANH,     NN_ACTIVATION_SIGMOID, NN_ACTIVATION_GELU,
    NN_ACTIVATION_GELU_TANH};
#define ACTIVATION_COUNT                                                       \
  (sizeof elementwise_activations / sizeof elementwise_activations[0])

/* m examples of a layer of n units over n_prev = 2 inputs, its arrays
 * misaligned; W = 0, so that the forward product leaves Z = b exactly and
 * the loops alone decide A. */
typedef struct test_layer {
  nnlib_layer layer;
  size_t m;
  float *a_prev, *dz;
} test_layer;

static test_layer make_layer(nn_activation g, size_t n, size_t m) {
  test_layer t;
  memset(&t, 0, sizeof t);
  t.m = m;
  t.layer.units = n;
  t.layer.inputs = 2;
  t.layer.activation = g;
  t.layer.weights = misaligned(n * 2);
  t.layer.weight_grad = misaligned(n * 2);
  t.layer.bias = misaligned(n);
  t.layer.bias_grad = misaligned(n);
  t.layer.pre_activation = misaligned(n * m);
  t.layer.activation_out = misaligned(n * m);
  t.a_prev = misaligned(2 * m);
  t.dz = misaligned(n * m);
  fill_uniform(t.layer.bias, n, -4.0f, 4.0f, n + 5);
  fill_uniform(t.a_prev, 2 * m, -1.0f, 1.0f, m);
  fill_uniform(t.dz, n * m, -1.0f, 1.0f, n * m);
  return t;
}

static void release_layer(test_layer *t) {
  release_misaligned(t->layer.weights);
  release_misaligned(t->layer.weight_grad);
  release_misaligned(t->layer.bias);
  release_misaligned(t->layer.bias_grad);
  release_misaligned(t->layer.pre_activation);
  release_misaligned(t->layer.activation_out);
  release_misaligned(t->a_prev);
  release_misaligned(t->dz);
}

static void check_forward_and_derivative(nn_context *ctx, nn_activation g,
                                         size_t n) {
  nnlib_backend *backend = ctx->backend;
  const size_t m = 3;
  test_layer t = make_layer(g, n, m);
  const nnlib_layer *layer = &t.layer;
  SUPPORT_OK(ctx,
             backend->ops->dense_forward(backend, ctx, layer, t.a_prev, m));
  float *want = calloc(n * m, sizeof(float));
  cr_assert_not_null(want);
  for (size_t k = 0; k < n * m; k++)
    want[k] = layer->bias[k % n];
  assert_same_bits(layer->pre_activation, want, n * m, "Z = 0 + b", n);
  for (size_t k = 0; k < n * m; k++)
    want[k] = nnlib_activate(g, layer->pre_activation[k]);
  assert_same_bits(layer->activation_out, want, n * m, nn_activation_name(g),
                   n);
  for (size_t k = 0; k < n * m; k++)
    want[k] = t.dz[k] * nnlib_activation_derivative(g, layer->pre_activation[k],
                                                    layer->activation_out[k]);
  SUPPORT_OK(ctx,
             backend->ops->activation_backward(backend, ctx, layer, t.dz, m));
  assert_same_bits(t.dz, want, n * m, "dZ = dA g'(Z)", n);
  free(want);
  release_layer(&t);
}

Test(cpu_loops, bias_activation_and_derivative_match_the_per_element_rules) {
  nn_context *ctx = support_cpu_context();
  for (size_t a = 0; a < ACTIVATION_COUNT; a++)
    for (size_t k = 0; k < LENGTH_COUNT; k++)
      check_forward_and_derivative(ctx, elementwise_activations[a], lengths[k]);
  nn_context_destroy(ctx);
}

static void check_column_sum(nn_context *ctx, size_t n, size_t m) {
  nnlib_backend *backend = ctx->backend;
  test_layer t = make_layer(NN_ACTIVATION_RELU, n, m);
  SUPPORT_OK(ctx, backend->ops->dense_backward(backend, ctx, &t.layer, t.a_prev,
                                               t.dz, m, 0.0f, NULL));
  const float inverse_m = 1.0f / (float)m;
  for (size_t i = 0; i < n; i++) {
    /* Row i in double, columns in order, rounded once. */
    double total = 0.0;
    for (size_t j = 0; j < m; j++)
      total += t.dz[i + j * n];
    const float want = (float)(total * inverse_m);
    cr_assert(memcmp(&t.layer.bias_grad[i], &want, sizeof want) == 0,
              "db[%zu] of n = %zu, m = %zu is %.9g, want %.9g", i, n, m,
              (double)t.layer.bias_grad[i], (double)want);
  }
  release_layer(&t);
}

Test(cpu_loops, bias_gradient_is_each_row_summed_in_column_order) {
  nn_context *ctx = support_cpu_context();
  const size_t examples[] = {1, 2, 7, 130};
  for (size_t e = 0; e < 4; e++)
    for (size_t k = 0; k < LENGTH_COUNT; k++)
      check_column_sum(ctx, lengths[k], examples[e]);
  check_column_sum(ctx, 600, 5); /* three row blocks, the last partial */
  nn_context_destroy(ctx);
}

/* ------------------------------------------------------------------------ */
/* OpenBLAS's kernels                                                        */
/* ------------------------------------------------------------------------ */

Test(cpu_loops, generic_openblas_kernels_on_a_vector_cpu_are_named) {
  char advice[256];
  nnlib_blas_advice("Prescott", true, true, advice, sizeof advice);
  cr_assert(strstr(advice, "Prescott") && strstr(advice, "AVX-512") &&
                strstr(advice, "OPENBLAS_CORETYPE=SkylakeX"),
            "advice: '%s'", advice);
  nnlib_blas_advice("Sandybridge", true, false, advice, sizeof advice);
  cr_assert(strstr(advice, "OPENBLAS_CORETYPE=Haswell") &&
                strstr(advice, "AVX2"),
            "advice: '%s'", advice);
}

Test(cpu_loops, openblas_kernels_that_fit_the_cpu_need_no_advice) {
  char advice[256];
  const char *fitting[] = {
      "Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids", "skylakex"};
  for (size_t k = 0; k < 6; k++) {
    nnlib_blas_advice(fitting[k], true, true, advice, sizeof advice);
    cr_assert_str_empty(advice, "%s: '%s'", fitting[k], advice);
  }
  /* Without AVX2 and FMA the generic kernels are the right ones. */
  nnlib_blas_advice("Prescott", false, false, advice, sizeof advice);
  cr_assert_str_empty(advice, "'%s'", advice);
}

Test(cpu_loops, the_faster_core_is_the_one_the_advice_names) {
  cr_assert_str_eq(nnlib_blas_better_core("Prescott", true, true), "SkylakeX");
  cr_assert_str_eq(nnlib_blas_better_core("Nehalem", true, false), "Haswell");
  cr_assert_null(nnlib_blas_better_core("Prescott", false, false));
  cr_assert_null(nnlib_blas_better_core("SkylakeX", true, true));
  cr_assert_null(nnlib_blas_better_core("Haswell", true, true));
}

Test(cpu_loops, a_cpu_context_names_the_faster_core_unless_one_is_set) {
  nn_context *ctx = support_cpu_context();
  const char *faster = nn_context_faster_blas_core(ctx);
  const char *expected = nnlib_cpu_blas_better_core();
  if (expected)
    cr_assert(faster && strcmp(faster, expected) == 0,
              "the context says %s, the CPU check %s", faster ? faster : "NULL",
              expected);
  else
    cr_assert_null(faster, "%s", faster);
  /* Once OPENBLAS_CORETYPE is set (by the user or by a tool's new start)
   * there is nothing to suggest. */
  const char *saved = getenv("OPENBLAS_CORETYPE");
  char *copy = saved ? strdup(saved) : NULL;
  setenv("OPENBLAS_CORETYPE", "Prescott", 1);
  cr_expect_null(nn_context_faster_blas_core(ctx));
  if (copy)
    setenv("OPENBLAS_CORETYPE", copy, 1);
  else
    unsetenv("OPENBLAS_CORETYPE");
  free(copy);
  cr_assert_null(nn_context_faster_blas_core(NULL));
  nn_context_destroy(ctx);
}

Test(cpu_loops, the_cpu_context_notice_carries_this_machines_advice) {
  char advice[256];
  nnlib_cpu_blas_advice(advice, sizeof advice);
  nn_context *ctx = support_cpu_context();
  cr_assert_str_eq(nn_context_notice(ctx), advice);
  nn_context_destroy(ctx);
}
