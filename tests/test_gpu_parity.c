/*
 * test_gpu_parity.c — the CUDA backend against the CPU backend, the oracle:
 * initialization, every activation forward and backward, the db column-sum
 * reduction at awkward shapes, every loss, every optimizer, dropout masks,
 * whole training runs, and bit-identical reruns on the GPU. Also the
 * backend's streaming operations and its errors (no such device, out of
 * memory).
 *
 * Where there is no usable GPU every GPU test skips, saying why; the error
 * paths that need no GPU run everywhere.
 *
 * Tolerances are |gpu - cpu| <= absolute + relative · |cpu|, stated where
 * used with the reason. What differs between the backends: the order of the
 * gemm sums (cuBLAS against OpenBLAS, ~1e-7 relative per product), the math
 * library (CUDA's expf/tanhf/erff are within 2 ulp of glibc's), and the
 * order of double sums (below float resolution). The elementwise kernels are
 * built with --fmad=false, so their own arithmetic rounds as the CPU's does.
 */
#include "support.h"

#include "backend.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Contexts, models, data                                                    */
/* ------------------------------------------------------------------------ */

/* The CUDA context on device 0 (its name checked), or the test skips. */
static nn_context *gpu_context_or_skip(void) {
  nn_context *ctx = support_gpu_context_or_skip();
  cr_assert_eq(strncmp(nn_context_backend_name(ctx), "cuda:0 (", 8), 0,
               "backend name \"%s\"", nn_context_backend_name(ctx));
  return ctx;
}

typedef struct parity {
  nn_context *gpu, *cpu;
} parity;

static parity parity_open(void) {
  parity p;
  p.gpu = gpu_context_or_skip();
  p.cpu = support_cpu_context();
  return p;
}

static void parity_close(parity *p) {
  nn_context_destroy(p->gpu);
  nn_context_destroy(p->cpu);
}

static float *allocate_floats(size_t count) {
  float *values = calloc(count ? count : 1, sizeof *values);
  cr_assert_not_null(values, "calloc of %zu floats", count);
  return values;
}

static float *uniform_floats(support_rng *rng, size_t count, double low,
                             double high) {
  float *values = allocate_floats(count);
  for (size_t k = 0; k < count; k++)
    values[k] = (float)(low + (high - low) * support_rng_uniform(rng));
  return values;
}

/* Y (n × m) that suits the loss: 0/1 for binary CE, one-hot columns for
 * categorical CE, values in [-1, 1] for squared error. */
static float *targets_for(nn_loss loss, size_t n, size_t m, support_rng *rng) {
  if (loss == NN_LOSS_MEAN_SQUARED_ERROR)
    return uniform_floats(rng, n * m, -1.0, 1.0);
  float *y = allocate_floats(n * m);
  for (size_t j = 0; j < m; j++) {
    if (loss == NN_LOSS_BINARY_CROSS_ENTROPY) {
      for (size_t i = 0; i < n; i++)
        y[j * n + i] = support_rng_uniform(rng) < 0.5 ? 0.0f : 1.0f;
    } else {
      size_t hot = (size_t)(support_rng_uniform(rng) * (double)n);
      y[j * n + (hot < n ? hot : n - 1)] = 1.0f;
    }
  }
  return y;
}

/* widths[0] = n_x, widths[1..layers] the layer widths; hidden layers use
 * `hidden` and `dropout`, the output the loss's activation. */
static nn_model *make_model(nn_context *ctx, const size_t *widths,
                            size_t layers, nn_activation hidden, float dropout,
                            nn_loss loss) {
  nn_layer_spec specs[8];
  cr_assert_leq(layers, 8);
  for (size_t l = 0; l < layers; l++) {
    bool output = l + 1 == layers;
    specs[l].units = widths[l + 1];
    specs[l].activation = output ? nn_loss_output_activation(loss) : hidden;
    specs[l].dropout = output ? 0.0f : dropout;
  }
  nn_model_spec spec = {widths[0], layers, specs, loss};
  nn_model *model = NULL;
  SUPPORT_OK(ctx, nn_model_create(ctx, &spec, &model));
  return model;
}

typedef struct model_pair {
  nn_model *gpu, *cpu;
  size_t layers, count;
} model_pair;

/* The same model on both backends, with the same parameters drawn
 * uniformly from [-scale, scale]. */
static model_pair make_pair(parity *p, const size_t *widths, size_t layers,
                            nn_activation hidden, float dropout, nn_loss loss,
                            uint64_t seed, double scale) {
  model_pair pair;
  pair.gpu = make_model(p->gpu, widths, layers, hidden, dropout, loss);
  pair.cpu = make_model(p->cpu, widths, layers, hidden, dropout, loss);
  pair.layers = layers;
  pair.count = nn_model_parameter_count(pair.cpu);
  support_rng rng = support_rng_seeded(seed);
  float *theta = uniform_floats(&rng, pair.count, -scale, scale);
  SUPPORT_OK(p->gpu, nn_model_set_parameters(pair.gpu, theta, pair.count));
  SUPPORT_OK(p->cpu, nn_model_set_parameters(pair.cpu, theta, pair.count));
  free(theta);
  return pair;
}

static void destroy_pair(model_pair *pair) {
  nn_model_destroy(pair->gpu);
  nn_model_destroy(pair->cpu);
}

/* ------------------------------------------------------------------------ */
/* Comparisons                                                               */
/* ------------------------------------------------------------------------ */

static void assert_close_arrays(const char *what, const float *gpu,
                                const float *cpu, size_t count, double relative,
                                double absolute) {
  for (size_t k = 0; k < count; k++) {
    double difference = fabs((double)gpu[k] - (double)cpu[k]);
    cr_assert(difference <= absolute + relative * fabs((double)cpu[k]),
              "%s[%zu]: gpu %.9g, cpu %.9g (|difference| %.3g > %.3g + "
              "%.3g |cpu|)",
              what, k, (double)gpu[k], (double)cpu[k], difference, absolute,
              relative);
  }
}

static void assert_close_values(const char *what, double gpu, double cpu,
                                double relative) {
  cr_assert(fabs(gpu - cpu) <= relative * fabs(cpu),
            "%s: gpu %.12g, cpu %.12g (relative difference %.3g > %.3g)", what,
            gpu, cpu, fabs(gpu - cpu) / fabs(cpu), relative);
}

static void assert_parameters_close(const model_pair *pair, const char *what,
                                    double relative, double absolute) {
  float *gpu = allocate_floats(pair->count),
        *cpu = allocate_floats(pair->count);
  SUPPORT_OK(pair->gpu->ctx,
             nn_model_get_parameters(pair->gpu, gpu, pair->count));
  SUPPORT_OK(pair->cpu->ctx,
             nn_model_get_parameters(pair->cpu, cpu, pair->count));
  assert_close_arrays(what, gpu, cpu, pair->count, relative, absolute);
  free(gpu);
  free(cpu);
}

/* dW[l] and db[l] of the last backward pass, every layer. */
static void assert_gradients_close(const model_pair *pair, const char *what,
                                   double relative, double absolute) {
  for (size_t l = 1; l <= pair->layers; l++) {
    size_t n = nn_model_layer_units(pair->cpu, l);
    size_t weights = n * nn_model_layer_units(pair->cpu, l - 1);
    float *gpu = allocate_floats(weights + n),
          *cpu = allocate_floats(weights + n);
    SUPPORT_OK(pair->gpu->ctx,
               nn_model_get_layer_gradients(pair->gpu, l, gpu, gpu + weights));
    SUPPORT_OK(pair->cpu->ctx,
               nn_model_get_layer_gradients(pair->cpu, l, cpu, cpu + weights));
    char name[160];
    snprintf(name, sizeof name, "%s: dW[%zu]", what, l);
    assert_close_arrays(name, gpu, cpu, weights, relative, absolute);
    snprintf(name, sizeof name, "%s: db[%zu]", what, l);
    assert_close_arrays(name, gpu + weights, cpu + weights, n, relative,
                        absolute);
    free(gpu);
    free(cpu);
  }
}

/* ------------------------------------------------------------------------ */
/* Errors that need no GPU                                                   */
/* ------------------------------------------------------------------------ */

/* Device 99 does not exist anywhere: NO_DEVICE with the reason (here, with
 * no GPU at all, the reason is that there is none). */
Test(gpu_parity, device_99_is_no_device) {
  char message[512] = "";
  nn_context *ctx = (nn_context *)&message;
  nn_status status =
      nn_context_create(NN_BACKEND_CUDA, 99, &ctx, message, sizeof message);
  cr_assert_eq(status, NN_ERROR_NO_DEVICE, "CUDA device 99 -> %s: %s",
               nn_status_str(status), message);
  cr_assert_null(ctx);
  cr_assert_gt(strlen(message), 10, "a reason is required, got \"%s\"",
               message);
  /* Where devices exist, the message says how many. */
  if (strstr(message, "asked for"))
    cr_assert_not_null(strstr(message, "99"), "\"%s\" names the index",
                       message);
}

/* AUTO with a device that does not exist falls back to the CPU and says
 * why; the fallback is not an error. */
Test(gpu_parity, auto_with_missing_device_falls_back) {
  char message[512] = "";
  nn_context *ctx = NULL;
  SUPPORT_OK(ctx, nn_context_create(NN_BACKEND_AUTO, 99, &ctx, message,
                                    sizeof message));
  cr_assert_eq(nn_context_backend(ctx), NN_BACKEND_CPU);
  cr_assert_not_null(strstr(nn_context_notice(ctx), "CPU"), "notice \"%s\"",
                     nn_context_notice(ctx));
  cr_assert_str_eq(nn_context_last_error(ctx), "");
  nn_context_destroy(ctx);
}

/* ------------------------------------------------------------------------ */
/* Initialization                                                            */
/* ------------------------------------------------------------------------ */

/* The scale each scheme multiplies N(0, 1) by (as host/model.c). */
static double init_scale(nn_init init, size_t inputs, size_t units) {
  switch (init) {
  case NN_INIT_NORMAL:
    return 0.01;
  case NN_INIT_HE:
    return sqrt(2.0 / (double)inputs);
  case NN_INIT_XAVIER:
    return sqrt(1.0 / (double)inputs);
  case NN_INIT_GLOROT:
    return sqrt(2.0 / (double)(inputs + units));
  default:
    return 0.0;
  }
}

/* One seed, the same Philox stream on the host and device generators:
 * the same weights, but not the same bits: the host generator's
 * Box-Muller takes sinf/cosf, the device's the __sincosf intrinsic
 * (curand_normal.h), whose absolute error is ~2^-21 on [-π, π] and larger
 * on the rest of [0, 2π). A draw r·sin θ (r = √(-2 ln u) <= 6.7) may thus
 * differ by ~1e-6 · r absolute, however small it is: tolerance 4e-6
 * relative plus 1e-5 · scale absolute. A wrong stream or offset would be off
 * by O(scale). Zeros are exact.
 * 4-3-1 has an odd parameter count (19), 13-9-5-1 an even one. */
Test(gpu_parity, init_schemes_draw_the_same_weights) {
  parity p = parity_open();
  const size_t small[] = {4, 3, 1}, deep[] = {13, 9, 5, 1};
  const size_t *shapes[] = {small, deep};
  const size_t layer_counts[] = {2, 3};
  for (size_t s = 0; s < 2; s++) {
    for (int init = 0; init < NN_INIT_COUNT; init++) {
      model_pair pair =
          make_pair(&p, shapes[s], layer_counts[s], NN_ACTIVATION_TANH, 0.0f,
                    NN_LOSS_BINARY_CROSS_ENTROPY, 1, 1.0);
      SUPPORT_OK(p.gpu, nn_model_init(pair.gpu, (nn_init)init, 2024));
      SUPPORT_OK(p.cpu, nn_model_init(pair.cpu, (nn_init)init, 2024));
      for (size_t l = 1; l <= pair.layers; l++) {
        size_t n = nn_model_layer_units(pair.cpu, l);
        size_t inputs = nn_model_layer_units(pair.cpu, l - 1);
        float *gpu = allocate_floats(n * inputs + n);
        float *cpu = allocate_floats(n * inputs + n);
        SUPPORT_OK(p.gpu, nn_model_get_layer_parameters(pair.gpu, l, gpu,
                                                        gpu + n * inputs));
        SUPPORT_OK(p.cpu, nn_model_get_layer_parameters(pair.cpu, l, cpu,
                                                        cpu + n * inputs));
        char name[96];
        snprintf(name, sizeof name, "%s init, shape %zu, layer %zu",
                 nn_init_name((nn_init)init), s, l);
        double scale = init_scale((nn_init)init, inputs, n);
        assert_close_arrays(name, gpu, cpu, n * inputs + n, 4e-6, 1e-5 * scale);
        if (init != NN_INIT_ZEROS)
          cr_assert_neq(cpu[0], 0.0f, "%s: weights were drawn", name);
        free(gpu);
        free(cpu);
      }
      destroy_pair(&pair);
    }
  }
  parity_close(&p);
}

/* ------------------------------------------------------------------------ */
/* Forward, cost and backward                                                */
/* ------------------------------------------------------------------------ */

/* A network and batch that check_network compares on both backends. */
typedef struct network_case {
  const char *what;
  const size_t *widths; /* layers + 1: input, hidden..., output */
  size_t layers, m;
  nn_activation hidden;
  nn_loss loss;
  float lambda;
  uint64_t parameter_seed, data_seed;
} network_case;

/* Forward (yhat), cost (with L2) and backward (every dW, db) of one case
 * on both. Tolerances: yhat 1e-5 relative + 1e-6 absolute (the gemms and a
 * few ulp of activation); cost 1e-5 relative; gradients 1e-4 relative +
 * 1e-6 absolute (three more gemms, whose cancellations can lose the
 * relative precision of a small entry but not its absolute one). */
static void check_network(parity *p, const network_case *c) {
  const size_t out = c->widths[c->layers], m = c->m;
  model_pair pair = make_pair(p, c->widths, c->layers, c->hidden, 0.0f, c->loss,
                              c->parameter_seed, 1.0);
  support_rng rng = support_rng_seeded(c->data_seed);
  float *x = uniform_floats(&rng, c->widths[0] * m, -2.0, 2.0);
  float *y = targets_for(c->loss, out, m, &rng);
  float *yhat_gpu = allocate_floats(out * m),
        *yhat_cpu = allocate_floats(out * m);
  SUPPORT_OK(p->gpu, nn_model_forward(pair.gpu, x, m, 0, yhat_gpu));
  SUPPORT_OK(p->cpu, nn_model_forward(pair.cpu, x, m, 0, yhat_cpu));
  assert_close_arrays(c->what, yhat_gpu, yhat_cpu, out * m, 1e-5, 1e-6);
  float cost_gpu = 0.0f, cost_cpu = 0.0f;
  SUPPORT_OK(p->gpu, nn_model_cost(pair.gpu, y, m, c->lambda, &cost_gpu));
  SUPPORT_OK(p->cpu, nn_model_cost(pair.cpu, y, m, c->lambda, &cost_cpu));
  assert_close_values(c->what, cost_gpu, cost_cpu, 1e-5);
  SUPPORT_OK(p->gpu, nn_model_backward(pair.gpu, y, m, c->lambda));
  SUPPORT_OK(p->cpu, nn_model_backward(pair.cpu, y, m, c->lambda));
  assert_gradients_close(&pair, c->what, 1e-4, 1e-6);
  free(x);
  free(y);
  free(yhat_gpu);
  free(yhat_cpu);
  destroy_pair(&pair);
}

/* check_network of a 4-6-5-out network with `hidden` units and the loss's
 * output, 7 examples, L2 0.05. */
static void check_forward_backward(parity *p, nn_activation hidden,
                                   nn_loss loss) {
  const size_t out = loss == NN_LOSS_CATEGORICAL_CROSS_ENTROPY ? 3
                     : loss == NN_LOSS_MEAN_SQUARED_ERROR      ? 2
                                                               : 1;
  const size_t widths[] = {4, 6, 5, out};
  char what[128];
  snprintf(what, sizeof what, "%s hidden, %s", nn_activation_name(hidden),
           nn_loss_name(loss));
  const network_case c = {.what = what,
                          .widths = widths,
                          .layers = 3,
                          .m = 7,
                          .hidden = hidden,
                          .loss = loss,
                          .lambda = 0.05f,
                          .parameter_seed = 100 + (uint64_t)hidden,
                          .data_seed = 7 + (uint64_t)loss};
  check_network(p, &c);
}

Test(gpu_parity, every_activation_forward_and_backward) {
  parity p = parity_open();
  const nn_activation hidden[] = {NN_ACTIVATION_LINEAR,     NN_ACTIVATION_RELU,
                                  NN_ACTIVATION_LEAKY_RELU, NN_ACTIVATION_TANH,
                                  NN_ACTIVATION_SIGMOID,    NN_ACTIVATION_GELU,
                                  NN_ACTIVATION_GELU_TANH};
  for (size_t h = 0; h < sizeof hidden / sizeof hidden[0]; h++)
    for (int loss = 0; loss < NN_LOSS_COUNT; loss++)
      check_forward_backward(&p, hidden[h], (nn_loss)loss);
  parity_close(&p);
}

/* A hidden layer with more cells (1021 units × 2048 examples) than the
 * device runs threads at once (on the emulator's 2 multiprocessors 16 Ki,
 * on an H200 about 1.1 M), so that each thread of the bias add and the
 * activation walks several (NNLIB_GRID_STRIDE_CELLS): tanh (never fused:
 * nn's own kernels), forward and backward, against the CPU. 1021 is prime,
 * so the rows a thread's steps reach fall all over a column, and each
 * row's bias differs. */
Test(gpu_parity, a_layer_larger_than_the_grid_matches_the_cpu) {
  parity p = parity_open();
  const size_t widths[] = {3, 1021, 1};
  const network_case c = {.what = "a 1021-unit tanh layer, 2048 examples",
                          .widths = widths,
                          .layers = 2,
                          .m = 2048,
                          .hidden = NN_ACTIVATION_TANH,
                          .loss = NN_LOSS_BINARY_CROSS_ENTROPY,
                          .lambda = 0.05f,
                          .parameter_seed = 61,
                          .data_seed = 62};
  check_network(&p, &c);
  parity_close(&p);
}

/* Large logits: softplus for BCE (z = ±40 would overflow a naive log(1-ŷ)),
 * log-sum-exp for CE, large residuals for squared error. Cost 1e-5
 * relative: both sum double terms of z, which the two gemms round alike to
 * an ulp or two. Outputs 3e-5 relative + 1e-30 absolute: e^z (and e^(z -
 * max)) turn an ulp of |z| <= 60, 3.8e-6, into that relative difference, so
 * a saturated sigmoid of e^-45 may differ by a few 1e-6 of itself on an
 * exact kernel (a naive form would be off by 100%, or NaN). */
Test(gpu_parity, every_loss_at_large_logits) {
  parity p = parity_open();
  for (int loss = 0; loss < NN_LOSS_COUNT; loss++) {
    const size_t out = loss == NN_LOSS_BINARY_CROSS_ENTROPY ? 1 : 4;
    const size_t widths[] = {3, out}, m = 9;
    model_pair pair = make_pair(&p, widths, 1, NN_ACTIVATION_LINEAR, 0.0f,
                                (nn_loss)loss, 300 + (uint64_t)loss, 15.0);
    support_rng rng = support_rng_seeded(31);
    float *x = uniform_floats(&rng, 3 * m, -1.0, 1.0);
    float *y = targets_for((nn_loss)loss, out, m, &rng);
    float *yhat_gpu = allocate_floats(out * m);
    float *yhat_cpu = allocate_floats(out * m);
    SUPPORT_OK(p.gpu, nn_model_forward(pair.gpu, x, m, 0, yhat_gpu));
    SUPPORT_OK(p.cpu, nn_model_forward(pair.cpu, x, m, 0, yhat_cpu));
    const char *name = nn_loss_name((nn_loss)loss);
    assert_close_arrays(name, yhat_gpu, yhat_cpu, out * m, 3e-5, 1e-30);
    float cost_gpu = 0.0f, cost_cpu = 0.0f;
    SUPPORT_OK(p.gpu, nn_model_cost(pair.gpu, y, m, 0.0f, &cost_gpu));
    SUPPORT_OK(p.cpu, nn_model_cost(pair.cpu, y, m, 0.0f, &cost_cpu));
    cr_assert(isfinite(cost_gpu), "%s: cost %g", name, (double)cost_gpu);
    assert_close_values(name, cost_gpu, cost_cpu, 1e-5);
    free(x);
    free(y);
    free(yhat_gpu);
    free(yhat_cpu);
    destroy_pair(&pair);
  }
  parity_close(&p);
}

/* The softmax kernel is one warp per column, lane i taking rows i, i + 32,
 * ...: columns narrower than a warp (2), one row past it (33) and several
 * rows per lane with a partial last round (100), for m = 1 (one warp of an
 * 8-warp block), 9 (a second block with one column) and 13. Output layer
 * only (n_x = 5, no hidden layer), so yhat and dW/db test the kernel and the
 * CE reduction, with the tolerances of check_forward_backward. */
Test(gpu_parity, softmax_at_every_column_width) {
  parity p = parity_open();
  const size_t widths[] = {2, 33, 100}, examples[] = {1, 9, 13};
  for (size_t w = 0; w < 3; w++) {
    for (size_t e = 0; e < 3; e++) {
      const size_t n = widths[w], m = examples[e], shape[] = {5, n};
      model_pair pair =
          make_pair(&p, shape, 1, NN_ACTIVATION_LINEAR, 0.0f,
                    NN_LOSS_CATEGORICAL_CROSS_ENTROPY, 40 + n + m, 2.0);
      support_rng rng = support_rng_seeded(n * 100 + m);
      float *x = uniform_floats(&rng, 5 * m, -1.0, 1.0);
      float *y = targets_for(NN_LOSS_CATEGORICAL_CROSS_ENTROPY, n, m, &rng);
      float *yhat_gpu = allocate_floats(n * m),
            *yhat_cpu = allocate_floats(n * m);
      SUPPORT_OK(p.gpu, nn_model_forward(pair.gpu, x, m, 0, yhat_gpu));
      SUPPORT_OK(p.cpu, nn_model_forward(pair.cpu, x, m, 0, yhat_cpu));
      char name[96];
      snprintf(name, sizeof name, "softmax n = %zu, m = %zu", n, m);
      assert_close_arrays(name, yhat_gpu, yhat_cpu, n * m, 1e-5, 1e-6);
      for (size_t j = 0; j < m; j++) {
        double total = 0.0;
        for (size_t i = 0; i < n; i++)
          total += yhat_gpu[j * n + i];
        cr_assert(fabs(total - 1.0) < 1e-5, "%s: column %zu sums to %.9g", name,
                  j, total);
      }
      float cost_gpu = 0.0f, cost_cpu = 0.0f;
      SUPPORT_OK(p.gpu, nn_model_cost(pair.gpu, y, m, 0.0f, &cost_gpu));
      SUPPORT_OK(p.cpu, nn_model_cost(pair.cpu, y, m, 0.0f, &cost_cpu));
      assert_close_values(name, cost_gpu, cost_cpu, 1e-5);
      SUPPORT_OK(p.gpu, nn_model_backward(pair.gpu, y, m, 0.0f));
      SUPPORT_OK(p.cpu, nn_model_backward(pair.cpu, y, m, 0.0f));
      assert_gradients_close(&pair, name, 1e-4, 1e-6);
      free(x);
      free(y);
      free(yhat_gpu);
      free(yhat_cpu);
      destroy_pair(&pair);
    }
  }
  parity_close(&p);
}

/* ------------------------------------------------------------------------ */
/* The db column-sum reduction                                               */
/* ------------------------------------------------------------------------ */

/* A 1-layer linear model (n_x = 2, n units, squared error) with W = 0, so
 * that Z = b exactly on both backends and dZ = b - Y is the same floats:
 * db then tests the reduction alone. Both sum in double and round once, in
 * different orders: expected bit-equal; tolerance 3e-7 relative (2 ulp) +
 * 1e-12. dW goes through a float gemm of m terms (cuBLAS against
 * OpenBLAS), typically off by √m · ε · mean |term| (< 2e-5 at m = 70000):
 * 1e-3 relative + 1e-4 absolute; it is not what this test is about. */
static void check_bias_gradient(parity *p, size_t n, size_t m) {
  const size_t widths[] = {2, n};
  model_pair pair = make_pair(p, widths, 1, NN_ACTIVATION_LINEAR, 0.0f,
                              NN_LOSS_MEAN_SQUARED_ERROR, n + m, 1.0);
  float *zero_weights = allocate_floats(2 * n);
  SUPPORT_OK(p->gpu,
             nn_model_set_layer_parameters(pair.gpu, 1, zero_weights, NULL));
  SUPPORT_OK(p->cpu,
             nn_model_set_layer_parameters(pair.cpu, 1, zero_weights, NULL));
  support_rng rng = support_rng_seeded(n * 31 + m);
  float *x = uniform_floats(&rng, 2 * m, -1.0, 1.0);
  float *y = uniform_floats(&rng, n * m, -2.0, 2.0);
  SUPPORT_OK(p->gpu, nn_model_forward(pair.gpu, x, m, 1, NULL));
  SUPPORT_OK(p->cpu, nn_model_forward(pair.cpu, x, m, 1, NULL));
  SUPPORT_OK(p->gpu, nn_model_backward(pair.gpu, y, m, 0.0f));
  SUPPORT_OK(p->cpu, nn_model_backward(pair.cpu, y, m, 0.0f));
  float *dw_gpu = allocate_floats(2 * n), *dw_cpu = allocate_floats(2 * n);
  float *db_gpu = allocate_floats(n), *db_cpu = allocate_floats(n);
  SUPPORT_OK(p->gpu, nn_model_get_layer_gradients(pair.gpu, 1, dw_gpu, db_gpu));
  SUPPORT_OK(p->cpu, nn_model_get_layer_gradients(pair.cpu, 1, dw_cpu, db_cpu));
  char name[96];
  snprintf(name, sizeof name, "db (n = %zu, m = %zu)", n, m);
  assert_close_arrays(name, db_gpu, db_cpu, n, 3e-7, 1e-12);
  snprintf(name, sizeof name, "dW (n = %zu, m = %zu)", n, m);
  assert_close_arrays(name, dw_gpu, dw_cpu, 2 * n, 1e-3, 1e-4);
  free(zero_weights);
  free(x);
  free(y);
  free(dw_gpu);
  free(dw_cpu);
  free(db_gpu);
  free(db_cpu);
  destroy_pair(&pair);
}

/* m = 1 (one column), m = 7, m = 4097 (17 chunks of 241 columns),
 * m = 70000 (the most chunks: 64 of 1094, the last short), n = 1, a
 * 20000-unit layer with m = 3 and m = 1 (625 blocks of rows, one chunk). */
Test(gpu_parity, bias_gradient_at_awkward_shapes) {
  parity p = parity_open();
  const size_t shapes[][2] = {{1, 1},     {5, 1},     {5, 7},     {1, 4097},
                              {33, 4097}, {3, 70000}, {20000, 3}, {20000, 1}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
    check_bias_gradient(&p, shapes[s][0], shapes[s][1]);
  parity_close(&p);
}

/* Where n · m exceeds what the reduction scratch holds for 64 chunks, the
 * chunk count is capped by the scratch (n = 20000, m = 2000: 6 chunks).
 * Too big for the CPU oracle to run quickly, so the expected db is computed
 * here exactly as the CPU backend computes it: Σ_j (b_i - y_ij) in double,
 * times (float)(1/m), rounded to float. Same tolerance as above. */
Test(gpu_parity, bias_gradient_with_scratch_capped_chunks) {
  nn_context *gpu = gpu_context_or_skip();
  const size_t n = 20000, m = 2000, widths[] = {2, n};
  nn_model *model = make_model(gpu, widths, 1, NN_ACTIVATION_LINEAR, 0.0f,
                               NN_LOSS_MEAN_SQUARED_ERROR);
  support_rng rng = support_rng_seeded(5);
  float *weights = allocate_floats(2 * n);
  float *bias = uniform_floats(&rng, n, -1.0, 1.0);
  SUPPORT_OK(gpu, nn_model_set_layer_parameters(model, 1, weights, bias));
  float *x = uniform_floats(&rng, 2 * m, -1.0, 1.0);
  float *y = uniform_floats(&rng, n * m, -2.0, 2.0);
  SUPPORT_OK(gpu, nn_model_forward(model, x, m, 1, NULL));
  /* The loss over n · m = 4e7 terms: 1024 stage-1 blocks, each thread
   * summing ~150 elements grid-stride, then 1024 partials in one block.
   * A = Z = b exactly, so the terms are the host's: Σ ½ (b_i - y_ij)² / m
   * in double, rounded once to the float cost (3e-7: 2 ulp, for the double
   * sums' different order crossing a float rounding boundary). */
  float cost = 0.0f;
  SUPPORT_OK(gpu, nn_model_cost(model, y, m, 0.0f, &cost));
  double loss = 0.0;
  for (size_t k = 0; k < n * m; k++) {
    double diff = (double)bias[k % n] - (double)y[k];
    loss += 0.5 * diff * diff;
  }
  assert_close_values("MSE cost (n = 20000, m = 2000)", cost,
                      (double)(float)(loss / (double)m), 3e-7);
  SUPPORT_OK(gpu, nn_model_backward(model, y, m, 0.0f));
  float *db = allocate_floats(n), *expected = allocate_floats(n);
  SUPPORT_OK(gpu, nn_model_get_layer_gradients(model, 1, NULL, db));
  const float inverse_m = 1.0f / (float)m;
  for (size_t i = 0; i < n; i++) {
    double total = 0.0;
    for (size_t j = 0; j < m; j++)
      total += (float)(bias[i] - y[i + j * n]);
    expected[i] = (float)(total * inverse_m);
  }
  assert_close_arrays("db (n = 20000, m = 2000)", db, expected, n, 3e-7, 1e-12);
  free(weights);
  free(bias);
  free(x);
  free(y);
  free(db);
  free(expected);
  nn_model_destroy(model);
  nn_context_destroy(gpu);
}

/* ------------------------------------------------------------------------ */
/* Optimizers                                                                */
/* ------------------------------------------------------------------------ */

/* Five forward/backward/update steps of each optimizer, with and without
 * L2, on a 3-4-2 tanh/linear network. The update itself rounds as the
 * CPU's (same formulas, --fmad=false, IEEE sqrt and division); what differs
 * is the gradients (gemm order), which the steps carry forward. ε = 1e-3
 * keeps RMSprop and Adam from dividing a gradient that is rounding noise by
 * its own square root (with ε = 1e-8 a gradient of 1e-9 of either sign
 * becomes a step of ±α/10). Tolerance 1e-5 relative + 1e-6 absolute. */
Test(gpu_parity, every_optimizer_over_five_steps) {
  parity p = parity_open();
  const size_t widths[] = {3, 4, 2}, m = 5;
  support_rng rng = support_rng_seeded(99);
  float *x = uniform_floats(&rng, 3 * m, -1.0, 1.0);
  float *y = uniform_floats(&rng, 2 * m, -1.0, 1.0);
  const float lambdas[] = {0.0f, 0.1f};
  for (int kind = 0; kind < NN_OPTIMIZER_COUNT; kind++) {
    for (size_t l2 = 0; l2 < 2; l2++) {
      model_pair pair = make_pair(&p, widths, 2, NN_ACTIVATION_TANH, 0.0f,
                                  NN_LOSS_MEAN_SQUARED_ERROR, 77, 0.7);
      nn_optimizer_settings settings = {(nn_optimizer)kind, 0.8f, 0.95f, 1e-3f};
      for (int step = 0; step < 5; step++) {
        SUPPORT_OK(p.gpu, nn_model_forward(pair.gpu, x, m, 1, NULL));
        SUPPORT_OK(p.cpu, nn_model_forward(pair.cpu, x, m, 1, NULL));
        SUPPORT_OK(p.gpu, nn_model_backward(pair.gpu, y, m, lambdas[l2]));
        SUPPORT_OK(p.cpu, nn_model_backward(pair.cpu, y, m, lambdas[l2]));
        SUPPORT_OK(p.gpu, nn_model_update(pair.gpu, &settings, 0.1f));
        SUPPORT_OK(p.cpu, nn_model_update(pair.cpu, &settings, 0.1f));
      }
      char name[96];
      snprintf(name, sizeof name, "%s, lambda %g, after 5 steps",
               nn_optimizer_name((nn_optimizer)kind), (double)lambdas[l2]);
      assert_parameters_close(&pair, name, 1e-5, 1e-6);
      destroy_pair(&pair);
    }
  }
  free(x);
  free(y);
  parity_close(&p);
}

/* ------------------------------------------------------------------------ */
/* Dropout                                                                   */
/* ------------------------------------------------------------------------ */

/* Layer l's dropout mask (n × m) downloaded through the backend. */
static float *download_mask(nn_model *model, size_t l, size_t m) {
  const nnlib_layer *layer = &model->layers[l - 1];
  cr_assert_not_null(layer->dropout_mask);
  float *mask = allocate_floats(layer->units * m);
  nnlib_backend *backend = model->ctx->backend;
  SUPPORT_OK(model->ctx,
             backend->ops->download(backend, model->ctx, mask,
                                    layer->dropout_mask, layer->units * m));
  return mask;
}

/* Same dropout seed: the same uniforms from both Philox generators, so the
 * same masks, bit for bit (0 or 1/keep), over two successive forward passes
 * whose masks (63 and 27 values per pass) are not multiples of Philox's 4
 * outputs per counter — the draws are rounded up to whole blocks
 * (nnlib_dropout_draw_count) so the generators advance alike. Then outputs
 * and gradients within the tolerances of the dropout-free test. */
Test(gpu_parity, dropout_masks_are_identical) {
  parity p = parity_open();
  const size_t widths[] = {5, 7, 3, 1}, m = 9;
  model_pair pair = make_pair(&p, widths, 3, NN_ACTIVATION_RELU, 0.3f,
                              NN_LOSS_BINARY_CROSS_ENTROPY, 17, 1.0);
  SUPPORT_OK(p.gpu, nn_model_seed_dropout(pair.gpu, 4242));
  SUPPORT_OK(p.cpu, nn_model_seed_dropout(pair.cpu, 4242));
  support_rng rng = support_rng_seeded(3);
  float *x = uniform_floats(&rng, 5 * m, -1.0, 1.0);
  float *y = targets_for(NN_LOSS_BINARY_CROSS_ENTROPY, 1, m, &rng);
  for (int pass = 0; pass < 2; pass++) {
    float yhat_gpu[9], yhat_cpu[9];
    SUPPORT_OK(p.gpu, nn_model_forward(pair.gpu, x, m, 1, yhat_gpu));
    SUPPORT_OK(p.cpu, nn_model_forward(pair.cpu, x, m, 1, yhat_cpu));
    for (size_t l = 1; l <= 2; l++) {
      size_t count = widths[l] * m, dropped = 0;
      float *gpu = download_mask(pair.gpu, l, m);
      float *cpu = download_mask(pair.cpu, l, m);
      for (size_t k = 0; k < count; k++) {
        cr_assert_eq(gpu[k], cpu[k],
                     "pass %d, layer %zu mask[%zu]: gpu %g, "
                     "cpu %g",
                     pass, l, k, (double)gpu[k], (double)cpu[k]);
        dropped += cpu[k] == 0.0f;
      }
      cr_assert(dropped > 0 && dropped < count,
                "pass %d layer %zu: %zu of "
                "%zu dropped",
                pass, l, dropped, count);
      free(gpu);
      free(cpu);
    }
    assert_close_arrays("dropout yhat", yhat_gpu, yhat_cpu, m, 1e-5, 1e-6);
    SUPPORT_OK(p.gpu, nn_model_backward(pair.gpu, y, m, 0.0f));
    SUPPORT_OK(p.cpu, nn_model_backward(pair.cpu, y, m, 0.0f));
    assert_gradients_close(&pair, "dropout", 1e-4, 1e-6);
  }
  free(x);
  free(y);
  destroy_pair(&pair);
  parity_close(&p);
}

/* ------------------------------------------------------------------------ */
/* Whole training runs                                                       */
/* ------------------------------------------------------------------------ */

#define TRAIN_EPOCHS 20

typedef struct training_case {
  const char *name;
  nn_optimizer optimizer;
  float learning_rate;
  nn_activation hidden;
  float dropout, l2_lambda, decay_rate;
  size_t batch_size;
  double validation_fraction;
  nn_loss loss;
} training_case;

typedef struct training_result {
  double costs[TRAIN_EPOCHS];
  size_t epochs;
  float *parameters;
  size_t count;
} training_result;

static int record_epoch_cost(const nn_progress *progress, void *user_data) {
  training_result *result = user_data;
  if (progress->epoch_end && progress->epoch < TRAIN_EPOCHS) {
    result->costs[progress->epoch] = progress->cost;
    result->epochs = progress->epoch + 1;
  }
  return 0;
}

/* The course's planar "flower" data (2 × 400) as a dataset of data_ctx, a
 * 2-8-4-1 network (2-8-4-2 with softmax, the classes one-hot) on ctx,
 * initialized from the seed on ctx's own generator, trained 20 epochs. */
static training_result train_case_on(nn_context *ctx, nn_context *data_ctx,
                                     const training_case *c) {
  float x[2 * SUPPORT_PLANAR_EXAMPLES];
  int32_t labels[SUPPORT_PLANAR_EXAMPLES];
  support_planar_dataset(11, x, labels);
  const bool softmax = c->loss == NN_LOSS_CATEGORICAL_CROSS_ENTROPY;
  nn_dataset *data = NULL;
  SUPPORT_OK(data_ctx,
             nn_dataset_create_from_labels(data_ctx, 2, SUPPORT_PLANAR_EXAMPLES,
                                           x, labels, softmax ? 2 : 1, &data));
  const size_t widths[] = {2, 8, 4, softmax ? 2 : 1};
  nn_model *model = make_model(ctx, widths, 3, c->hidden, c->dropout, c->loss);
  SUPPORT_OK(ctx, nn_model_init(model, NN_INIT_XAVIER, 5));
  training_result result;
  memset(&result, 0, sizeof result);
  nn_train_options options;
  nn_train_options_default(&options);
  options.optimizer.kind = c->optimizer;
  options.learning_rate = c->learning_rate;
  options.l2_lambda = c->l2_lambda;
  options.decay_rate = c->decay_rate;
  options.batch_size = c->batch_size;
  options.validation_fraction = c->validation_fraction;
  options.epochs = TRAIN_EPOCHS;
  options.seed = 8;
  options.callback = record_epoch_cost;
  options.callback_user_data = &result;
  SUPPORT_OK(ctx, nn_model_train(model, data, &options, NULL));
  cr_assert_eq(result.epochs, TRAIN_EPOCHS, "%s: %zu epochs reported", c->name,
               result.epochs);
  result.count = nn_model_parameter_count(model);
  result.parameters = allocate_floats(result.count);
  SUPPORT_OK(ctx,
             nn_model_get_parameters(model, result.parameters, result.count));
  nn_model_destroy(model);
  nn_dataset_destroy(data);
  return result;
}

static training_result train_case(nn_context *ctx, const training_case *c) {
  return train_case_on(ctx, ctx, c);
}

/* Each loss through nn_model_train, whose steps compute the loss and dZ[L]
 * in one kernel on the GPU. */
#define BCE NN_LOSS_BINARY_CROSS_ENTROPY
static const training_case training_cases[] = {
    {"gd", NN_OPTIMIZER_GD, 0.3f, NN_ACTIVATION_TANH, 0.0f, 0.0f, 0.0f, 64, 0.0,
     BCE},
    {"momentum", NN_OPTIMIZER_MOMENTUM, 0.3f, NN_ACTIVATION_TANH, 0.0f, 0.0f,
     0.0f, 64, 0.0, BCE},
    {"rmsprop", NN_OPTIMIZER_RMSPROP, 0.01f, NN_ACTIVATION_TANH, 0.0f, 0.0f,
     0.0f, 64, 0.0, BCE},
    {"adam", NN_OPTIMIZER_ADAM, 0.01f, NN_ACTIVATION_TANH, 0.0f, 0.0f, 0.0f, 64,
     0.0, BCE},
    {"adam, relu, dropout, L2, decay, validation", NN_OPTIMIZER_ADAM, 0.01f,
     NN_ACTIVATION_RELU, 0.1f, 0.01f, 0.1f, 50, 0.2, BCE},
    {"gd, full batch", NN_OPTIMIZER_GD, 1.2f, NN_ACTIVATION_TANH, 0.0f, 0.0f,
     0.0f, 0, 0.0, BCE},
    {"adam, softmax cross-entropy", NN_OPTIMIZER_ADAM, 0.01f,
     NN_ACTIVATION_RELU, 0.0f, 0.0f, 0.0f, 64, 0.0,
     NN_LOSS_CATEGORICAL_CROSS_ENTROPY},
    {"momentum, squared error", NN_OPTIMIZER_MOMENTUM, 0.05f,
     NN_ACTIVATION_TANH, 0.0f, 0.0f, 0.0f, 64, 0.0, NN_LOSS_MEAN_SQUARED_ERROR},
};
#undef BCE

/* 20 epochs of mini-batches (140 updates): rounding differences of 1e-7
 * compound through the updates, and Adam/RMSprop rescale small gradients.
 * Costs per epoch 1e-4 relative; final parameters 1e-3 relative + 1e-4
 * absolute. */
Test(gpu_parity, training_runs_match_the_cpu) {
  parity p = parity_open();
  for (size_t c = 0; c < sizeof training_cases / sizeof training_cases[0];
       c++) {
    const training_case *tc = &training_cases[c];
    training_result gpu = train_case(p.gpu, tc);
    training_result cpu = train_case(p.cpu, tc);
    for (size_t e = 0; e < TRAIN_EPOCHS; e++) {
      char name[128];
      snprintf(name, sizeof name, "%s: cost of epoch %zu", tc->name, e);
      assert_close_values(name, gpu.costs[e], cpu.costs[e], 1e-4);
    }
    cr_assert_lt(cpu.costs[TRAIN_EPOCHS - 1], cpu.costs[0], "%s learns",
                 tc->name);
    assert_close_arrays(tc->name, gpu.parameters, cpu.parameters, cpu.count,
                        1e-3, 1e-4);
    free(gpu.parameters);
    free(cpu.parameters);
  }
  parity_close(&p);
}

/* ------------------------------------------------------------------------ */
/* Determinism on the GPU                                                    */
/* ------------------------------------------------------------------------ */

/* The same seed twice on the GPU: the same bits, costs and parameters
 * (reductions in a fixed order, no atomics; cuBLAS is deterministic on one
 * device with its own workspace). */
Test(gpu_parity, reruns_are_bit_identical) {
  nn_context *gpu = gpu_context_or_skip();
  const training_case *tc = &training_cases[4]; /* dropout, L2, validation */
  training_result first = train_case(gpu, tc);
  training_result second = train_case(gpu, tc);
  cr_assert_eq(memcmp(first.costs, second.costs, sizeof first.costs), 0,
               "epoch costs differ between reruns");
  cr_assert_eq(
      memcmp(first.parameters, second.parameters, first.count * sizeof(float)),
      0, "parameters differ between reruns");
  free(first.parameters);
  free(second.parameters);
  nn_context_destroy(gpu);
}

/* nntrain loads its data on a CPU context while the GPU's opens: a model on
 * the GPU trains on a dataset of a CPU context (host memory, streamed or
 * uploaded as its own would be) to the same bits. */
Test(gpu_parity, a_dataset_of_a_cpu_context_trains_the_same_on_the_gpu) {
  parity p = parity_open();
  const training_case *tc = &training_cases[4]; /* dropout, L2, validation */
  training_result own = train_case(p.gpu, tc);
  training_result borrowed = train_case_on(p.gpu, p.cpu, tc);
  cr_assert_eq(memcmp(own.costs, borrowed.costs, sizeof own.costs), 0,
               "epoch costs differ with the CPU context's dataset");
  cr_assert_eq(
      memcmp(own.parameters, borrowed.parameters, own.count * sizeof(float)), 0,
      "parameters differ with the CPU context's dataset");
  free(own.parameters);
  free(borrowed.parameters);
  parity_close(&p);
}

/* Large batches spread every reduction over many blocks (the loss over
 * 20 stage-1 blocks, db over 20 chunks): two passes give the same bits. */
Test(gpu_parity, large_batch_reductions_are_bit_identical) {
  nn_context *gpu = gpu_context_or_skip();
  const size_t widths[] = {20, 64, 10}, m = 5000;
  nn_model *model = make_model(gpu, widths, 2, NN_ACTIVATION_RELU, 0.0f,
                               NN_LOSS_CATEGORICAL_CROSS_ENTROPY);
  SUPPORT_OK(gpu, nn_model_init(model, NN_INIT_HE, 9));
  support_rng rng = support_rng_seeded(12);
  float *x = uniform_floats(&rng, 20 * m, -1.0, 1.0);
  float *y = targets_for(NN_LOSS_CATEGORICAL_CROSS_ENTROPY, 10, m, &rng);
  const size_t count = nn_model_parameter_count(model);
  float *gradients[2];
  float costs[2];
  for (int run = 0; run < 2; run++) {
    SUPPORT_OK(gpu, nn_model_forward(model, x, m, 1, NULL));
    SUPPORT_OK(gpu, nn_model_cost(model, y, m, 0.01f, &costs[run]));
    SUPPORT_OK(gpu, nn_model_backward(model, y, m, 0.01f));
    gradients[run] = allocate_floats(count);
    float *cursor = gradients[run];
    for (size_t l = 1; l <= 2; l++) {
      size_t weights = widths[l] * widths[l - 1];
      SUPPORT_OK(gpu, nn_model_get_layer_gradients(model, l, cursor,
                                                   cursor + weights));
      cursor += weights + widths[l];
    }
  }
  cr_assert_eq(memcmp(&costs[0], &costs[1], sizeof costs[0]), 0,
               "cost %.9g then %.9g", (double)costs[0], (double)costs[1]);
  cr_assert_eq(memcmp(gradients[0], gradients[1], count * sizeof(float)), 0,
               "gradients differ between passes");
  free(gradients[0]);
  free(gradients[1]);
  free(x);
  free(y);
  nn_model_destroy(model);
  nn_context_destroy(gpu);
}

/* ------------------------------------------------------------------------ */
/* The backend's streaming operations and errors, directly                   */
/* ------------------------------------------------------------------------ */

/* Pinned staging -> copy stream -> event -> compute stream, and back. */
Test(gpu_parity, upload_async_orders_through_events) {
  nn_context *gpu = gpu_context_or_skip();
  nnlib_backend *backend = gpu->backend;
  const nnlib_backend_ops *ops = backend->ops;
  const size_t count = 100003;
  float *pinned = NULL, *device = NULL;
  nnlib_event copied = NULL, consumed = NULL;
  SUPPORT_OK(gpu, ops->host_alloc(backend, gpu, count, &pinned));
  SUPPORT_OK(gpu, ops->alloc(backend, gpu, count, &device));
  SUPPORT_OK(gpu, ops->event_create(backend, gpu, &copied));
  SUPPORT_OK(gpu, ops->event_create(backend, gpu, &consumed));
  /* Never recorded: waiting on it returns at once. */
  SUPPORT_OK(gpu, ops->event_wait_host(backend, gpu, consumed));
  for (int round = 0; round < 3; round++) {
    for (size_t k = 0; k < count; k++)
      pinned[k] = (float)(k * 3 + (size_t)round);
    SUPPORT_OK(gpu, ops->copy_wait(backend, gpu, consumed));
    SUPPORT_OK(gpu,
               ops->upload_async(backend, gpu, device, pinned, count, copied));
    SUPPORT_OK(gpu, ops->compute_wait(backend, gpu, copied));
    SUPPORT_OK(gpu, ops->scale(backend, gpu, device, device, 2.0f, count));
    SUPPORT_OK(gpu, ops->compute_record(backend, gpu, consumed));
    SUPPORT_OK(gpu, ops->event_wait_host(backend, gpu, copied));
    float *back = allocate_floats(count);
    SUPPORT_OK(gpu, ops->download(backend, gpu, back, device, count));
    for (size_t k = 0; k < count; k++)
      cr_assert_eq(back[k], 2.0f * (float)(k * 3 + (size_t)round),
                   "round %d, element %zu: %g", round, k, (double)back[k]);
    free(back);
  }
  size_t free_bytes = 0, total_bytes = 0;
  SUPPORT_OK(gpu, ops->memory_info(backend, gpu, &free_bytes, &total_bytes));
  cr_assert(free_bytes > 0 && free_bytes <= total_bytes, "free %zu of %zu",
            free_bytes, total_bytes);
  ops->event_destroy(backend, copied);
  ops->event_destroy(backend, consumed);
  ops->release(backend, device);
  ops->host_release(backend, pinned);
  nn_context_destroy(gpu);
}

/* count column indices in 0..m-1, drawn from rng (repeats allowed). */
static void random_columns(support_rng *rng, size_t *columns, size_t count,
                           size_t m) {
  for (size_t k = 0; k < count; k++)
    columns[k] = (size_t)(support_rng_uniform(rng) * (double)m) % m;
}

/* The batches of one order: its positions in three gathers of their own
 * ranges (the first half, the rest, all but the first). */
typedef struct gather_range {
  size_t first, count;
} gather_range;

static void order_ranges(size_t length, gather_range ranges[3]) {
  ranges[0] = (gather_range){0, length / 2};
  ranges[1] = (gather_range){length / 2, length - length / 2};
  ranges[2] = (gather_range){1, length - 1};
}

/* gather_columns against the CPU's, over orders of 5, 50 and 20 columns
 * (the order buffers grow once, then hold a shorter order), each gathered
 * in ranges at different positions. */
Test(gpu_parity, gather_columns_matches_the_cpu) {
  parity p = parity_open();
  nnlib_backend *backends[2] = {p.gpu->backend, p.cpu->backend};
  nn_context *contexts[2] = {p.gpu, p.cpu};
  const size_t rows = 3, m = 40;
  support_rng rng = support_rng_seeded(8);
  float *source = uniform_floats(&rng, rows * m, -1.0, 1.0);
  float *src[2], *dst[2];
  for (int b = 0; b < 2; b++) {
    const nnlib_backend_ops *ops = backends[b]->ops;
    SUPPORT_OK(contexts[b],
               ops->alloc(backends[b], contexts[b], rows * m, &src[b]));
    SUPPORT_OK(contexts[b],
               ops->alloc(backends[b], contexts[b], rows * 50, &dst[b]));
    SUPPORT_OK(contexts[b],
               ops->upload(backends[b], contexts[b], src[b], source, rows * m));
  }
  const size_t lengths[] = {5, 50, 20};
  size_t columns[50];
  for (int epoch = 0; epoch < 3; epoch++) {
    const size_t length = lengths[epoch];
    random_columns(&rng, columns, length, m);
    gather_range ranges[3];
    order_ranges(length, ranges);
    for (int b = 0; b < 2; b++)
      SUPPORT_OK(contexts[b], backends[b]->ops->set_gather_order(
                                  backends[b], contexts[b], columns, length));
    for (int r = 0; r < 3; r++) {
      const size_t count = ranges[r].count;
      float results[2][3 * 50];
      for (int b = 0; b < 2; b++) {
        const nnlib_backend_ops *ops = backends[b]->ops;
        const nnlib_gather_matrix matrices[2] = {{dst[b], src[b], rows, false},
                                                 {NULL, NULL, 0, false}};
        SUPPORT_OK(contexts[b],
                   ops->gather_columns(backends[b], contexts[b], matrices,
                                       ranges[r].first, count));
        SUPPORT_OK(contexts[b],
                   ops->download(backends[b], contexts[b], results[b], dst[b],
                                 rows * count));
      }
      cr_assert_eq(memcmp(results[0], results[1], rows * count * sizeof(float)),
                   0, "order of %zu, positions %zu.. (%zu): the gathers differ",
                   length, ranges[r].first, count);
      for (size_t k = 0; k < count; k++)
        cr_assert_eq(results[1][k * rows],
                     source[columns[ranges[r].first + k] * rows]);
    }
  }
  for (int b = 0; b < 2; b++) {
    backends[b]->ops->release(backends[b], src[b]);
    backends[b]->ops->release(backends[b], dst[b]);
  }
  free(source);
  parity_close(&p);
}

/* A gather test's backend memory, one allocation: X (x_rows × m) and Y
 * (y_rows × m) uploaded, then room for their gathered columns (x_dst holds
 * x_rows × count floats, or as many bf16). Freed with ops->release(memory). */
typedef struct gather_memory {
  float *memory, *x_src, *y_src, *x_dst, *y_dst;
} gather_memory;

static gather_memory upload_gather_sources(nn_context *ctx, const float *x,
                                           size_t x_rows, const float *y,
                                           size_t y_rows, size_t m,
                                           size_t count) {
  nnlib_backend *backend = ctx->backend;
  const nnlib_backend_ops *ops = backend->ops;
  gather_memory g;
  SUPPORT_OK(ctx, ops->alloc(backend, ctx, (x_rows + y_rows) * (m + count),
                             &g.memory));
  g.x_src = g.memory;
  g.y_src = g.x_src + x_rows * m;
  g.x_dst = g.y_src + y_rows * m;
  g.y_dst = g.x_dst + x_rows * count;
  SUPPORT_OK(ctx, ops->upload(backend, ctx, g.x_src, x, x_rows * m));
  SUPPORT_OK(ctx, ops->upload(backend, ctx, g.y_src, y, y_rows * m));
  return g;
}

/* A batch's X and Y in one gather, against the CPU's: both matrices of
 * their own heights take the same columns. */
Test(gpu_parity, gather_columns_takes_x_and_y_together) {
  parity p = parity_open();
  nn_context *contexts[2] = {p.gpu, p.cpu};
  enum { x_rows = 5, y_rows = 2, m = 30, count = 17 };
  support_rng rng = support_rng_seeded(21);
  float *x_source = uniform_floats(&rng, x_rows * m, -1.0, 1.0);
  float *y_source = uniform_floats(&rng, y_rows * m, -1.0, 1.0);
  size_t columns[count];
  random_columns(&rng, columns, count, m);
  float results[2][(x_rows + y_rows) * count];
  for (int b = 0; b < 2; b++) {
    nn_context *ctx = contexts[b];
    nnlib_backend *backend = ctx->backend;
    const nnlib_backend_ops *ops = backend->ops;
    const gather_memory g = upload_gather_sources(ctx, x_source, x_rows,
                                                  y_source, y_rows, m, count);
    const nnlib_gather_matrix matrices[2] = {{g.x_dst, g.x_src, x_rows, false},
                                             {g.y_dst, g.y_src, y_rows, false}};
    SUPPORT_OK(ctx, ops->set_gather_order(backend, ctx, columns, count));
    SUPPORT_OK(ctx, ops->gather_columns(backend, ctx, matrices, 0, count));
    SUPPORT_OK(ctx, ops->download(backend, ctx, results[b], g.x_dst,
                                  (x_rows + y_rows) * count));
    ops->release(backend, g.memory);
  }
  cr_assert_eq(memcmp(results[0], results[1], sizeof results[0]), 0,
               "the paired gather differs from the CPU's");
  for (size_t k = 0; k < count; k++) {
    cr_assert_eq(results[1][k * x_rows], x_source[columns[k] * x_rows]);
    cr_assert_eq(results[1][x_rows * count + k * y_rows + 1],
                 y_source[columns[k] * y_rows + 1]);
  }
  free(x_source);
  free(y_source);
  parity_close(&p);
}

/* A batch with more cells than the device runs threads at once (on the
 * emulator's 2 multiprocessors 16 Ki, on an H200 about 1.1 M): each thread
 * of the gather walks several cells, its row and column carried from one
 * to the next (NNLIB_GRID_STRIDE_CELLS). X's 1021 rows and Y's 2 stack to
 * 1023 = 3·11·31, of which neither the emulator's grid stride (2^14
 * threads) nor an H200's (132 · 32 blocks of 256) is a multiple: the
 * walk's steps land on rows all over a column and carry into the next.
 * Every cell is checked against its source. */
Test(gpu_parity, gather_columns_walks_a_batch_larger_than_the_grid) {
  nn_context *gpu = gpu_context_or_skip();
  enum { x_rows = 1021, y_rows = 2, m = 2100, count = 2048 };
  support_rng rng = support_rng_seeded(55);
  float *x_source = uniform_floats(&rng, (size_t)x_rows * m, -1.0, 1.0);
  float *y_source = uniform_floats(&rng, (size_t)y_rows * m, -1.0, 1.0);
  static size_t columns[count];
  random_columns(&rng, columns, count, m);
  nnlib_backend *backend = gpu->backend;
  const nnlib_backend_ops *ops = backend->ops;
  const gather_memory g =
      upload_gather_sources(gpu, x_source, x_rows, y_source, y_rows, m, count);
  const nnlib_gather_matrix matrices[2] = {{g.x_dst, g.x_src, x_rows, false},
                                           {g.y_dst, g.y_src, y_rows, false}};
  SUPPORT_OK(gpu, ops->set_gather_order(backend, gpu, columns, count));
  SUPPORT_OK(gpu, ops->gather_columns(backend, gpu, matrices, 0, count));
  const size_t cells = (size_t)(x_rows + y_rows) * count;
  float *result = allocate_floats(cells);
  SUPPORT_OK(gpu, ops->download(backend, gpu, result, g.x_dst, cells));
  const float *y_result = result + (size_t)x_rows * count;
  for (size_t k = 0; k < count; k++) {
    for (size_t r = 0; r < x_rows; r++)
      cr_assert_eq(result[k * x_rows + r], x_source[columns[k] * x_rows + r],
                   "X column %zu (source column %zu), row %zu", k, columns[k],
                   r);
    for (size_t r = 0; r < y_rows; r++)
      cr_assert_eq(y_result[k * y_rows + r], y_source[columns[k] * y_rows + r],
                   "Y column %zu (source column %zu), row %zu", k, columns[k],
                   r);
  }
  ops->release(backend, g.memory);
  free(result);
  free(x_source);
  free(y_source);
  nn_context_destroy(gpu);
}

/* bf16 bits of x rounded to nearest even (x finite). */
static uint16_t bf16_bits(float x) {
  uint32_t bits;
  memcpy(&bits, &x, sizeof bits);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return (uint16_t)(bits >> 16);
}

/* X gathered into bf16 (a bf16 model's resident batches), Y beside it in
 * fp32: X's elements are those columns rounded to nearest even. */
Test(gpu_parity, gather_columns_rounds_x_into_bf16) {
  nn_context *gpu = gpu_context_or_skip();
  nnlib_backend *backend = gpu->backend;
  const nnlib_backend_ops *ops = backend->ops;
  enum { x_rows = 6, y_rows = 3, m = 25, count = 11 };
  support_rng rng = support_rng_seeded(34);
  float *x_source = uniform_floats(&rng, x_rows * m, -3.0, 3.0);
  float *y_source = uniform_floats(&rng, y_rows * m, -1.0, 1.0);
  size_t columns[count];
  random_columns(&rng, columns, count, m);
  const gather_memory g =
      upload_gather_sources(gpu, x_source, x_rows, y_source, y_rows, m, count);
  const nnlib_gather_matrix matrices[2] = {{g.x_dst, g.x_src, x_rows, true},
                                           {g.y_dst, g.y_src, y_rows, false}};
  SUPPORT_OK(gpu, ops->set_gather_order(backend, gpu, columns, count));
  SUPPORT_OK(gpu, ops->gather_columns(backend, gpu, matrices, 0, count));
  /* x_rows × count bf16 take half as many floats. */
  float y_result[y_rows * count], x_result[x_rows * count / 2 + 1];
  SUPPORT_OK(gpu,
             ops->download(backend, gpu, y_result, g.y_dst, y_rows * count));
  SUPPORT_OK(gpu, ops->download(backend, gpu, x_result, g.x_dst,
                                (x_rows * count + 1) / 2));
  uint16_t halves[x_rows * count];
  memcpy(halves, x_result, sizeof halves);
  for (size_t k = 0; k < count; k++) {
    for (size_t r = 0; r < x_rows; r++)
      cr_assert_eq(halves[k * x_rows + r],
                   bf16_bits(x_source[columns[k] * x_rows + r]),
                   "X column %zu row %zu", k, r);
    for (size_t r = 0; r < y_rows; r++)
      cr_assert_eq(y_result[k * y_rows + r], y_source[columns[k] * y_rows + r]);
  }
  ops->release(backend, g.memory);
  free(x_source);
  free(y_source);
  nn_context_destroy(gpu);
}

Test(gpu_parity, the_cpu_refuses_a_bf16_gather) {
  nn_context *cpu = support_cpu_context();
  float dst[4], src[4] = {1, 2, 3, 4};
  const size_t one[1] = {0};
  const nnlib_gather_matrix refused[2] = {{dst, src, 4, true},
                                          {NULL, NULL, 0, false}};
  SUPPORT_OK(cpu,
             cpu->backend->ops->set_gather_order(cpu->backend, cpu, one, 1));
  cr_assert_eq(
      cpu->backend->ops->gather_columns(cpu->backend, cpu, refused, 0, 1),
      NN_ERROR_UNSUPPORTED);
  cr_assert_not_null(strstr(nn_context_last_error(cpu), "fp32 only"));
  nn_context_destroy(cpu);
}

/* Positions past the order (or before any order) are refused by both
 * backends, naming the range, and nothing is read. */
static void check_gather_range_refused(nn_context *ctx) {
  nnlib_backend *backend = ctx->backend;
  const nnlib_backend_ops *ops = backend->ops;
  float *memory = NULL;
  SUPPORT_OK(ctx, ops->alloc(backend, ctx, 16, &memory));
  const nnlib_gather_matrix matrices[2] = {{memory + 8, memory, 2, false},
                                           {NULL, NULL, 0, false}};
  cr_assert_eq(ops->gather_columns(backend, ctx, matrices, 0, 1),
               NN_ERROR_INVALID_ARGUMENT, "a gather before any order");
  const size_t order[3] = {2, 0, 1};
  SUPPORT_OK(ctx, ops->set_gather_order(backend, ctx, order, 3));
  cr_assert_eq(ops->gather_columns(backend, ctx, matrices, 2, 2),
               NN_ERROR_INVALID_ARGUMENT, "positions 2..4 of 3");
  cr_assert_not_null(
      strstr(nn_context_last_error(ctx), "2..4 of an order of 3"), "%s",
      nn_context_last_error(ctx));
  cr_assert_eq(ops->gather_columns(backend, ctx, matrices, 4, 0), NN_OK,
               "an empty gather reads nothing");
  SUPPORT_OK(ctx, ops->gather_columns(backend, ctx, matrices, 1, 2));
  ops->release(backend, memory);
}

Test(gpu_parity, a_gather_past_the_order_is_refused) {
  nn_context *cpu = support_cpu_context();
  check_gather_range_refused(cpu);
  nn_context_destroy(cpu);
  nn_context *gpu = gpu_context_or_skip();
  check_gather_range_refused(gpu);
  nn_context_destroy(gpu);
}

/* 12 orders, each set and gathered back to back with nothing synchronized
 * in between, behind ~1 GB of fills that keep the compute stream busy: the
 * host may refill the order's pinned staging only once the copy that read
 * it has run, and the device order is overwritten only after the gather
 * that read it (a refill too early would gather another order's columns).
 * Each gather writes its own region of dst; one download at the end. */
Test(gpu_parity, gather_columns_back_to_back) {
  nn_context *gpu = gpu_context_or_skip();
  nnlib_backend *backend = gpu->backend;
  const nnlib_backend_ops *ops = backend->ops;
  enum { rows = 7, m = 1000, count = 300, calls = 12 };
  const size_t busy_count = (size_t)64 << 20;
  support_rng rng = support_rng_seeded(13);
  float *source = uniform_floats(&rng, rows * m, -1.0, 1.0);
  float *src = NULL, *dst = NULL, *busy = NULL;
  SUPPORT_OK(gpu, ops->alloc(backend, gpu, rows * m, &src));
  SUPPORT_OK(gpu, ops->alloc(backend, gpu, (size_t)rows * count * calls, &dst));
  SUPPORT_OK(gpu, ops->alloc(backend, gpu, busy_count, &busy));
  SUPPORT_OK(gpu, ops->upload(backend, gpu, src, source, rows * m));
  for (int round = 0; round < 4; round++)
    SUPPORT_OK(gpu, ops->fill(backend, gpu, busy, (float)round, busy_count));
  static size_t columns[calls][count];
  for (size_t c = 0; c < calls; c++) {
    random_columns(&rng, columns[c], count, m);
    const nnlib_gather_matrix matrices[2] = {
        {dst + c * (size_t)rows * count, src, rows, false},
        {NULL, NULL, 0, false}};
    SUPPORT_OK(gpu, ops->set_gather_order(backend, gpu, columns[c], count));
    SUPPORT_OK(gpu, ops->gather_columns(backend, gpu, matrices, 0, count));
  }
  float *result = allocate_floats((size_t)rows * count * calls);
  SUPPORT_OK(gpu, ops->download(backend, gpu, result, dst,
                                (size_t)rows * count * calls));
  for (size_t c = 0; c < calls; c++)
    for (size_t k = 0; k < count; k++)
      for (size_t r = 0; r < rows; r++)
        cr_assert_eq(result[(c * count + k) * rows + r],
                     source[columns[c][k] * rows + r],
                     "call %zu, column %zu (source column %zu), row %zu", c, k,
                     columns[c][k], r);
  ops->release(backend, busy);
  ops->release(backend, dst);
  ops->release(backend, src);
  free(result);
  free(source);
  nn_context_destroy(gpu);
}

/* A device this build has no code for is refused as UNSUPPORTED, naming the
 * device and what the build has code for. Only the CPU emulator of the
 * CUDA libraries (tests/cuda_emulator) can pose as such a device
 * (NNEMU_NO_KERNEL_IMAGE=1); elsewhere the test skips. */
Test(gpu_parity, a_device_without_code_in_this_build_is_refused) {
  nn_context *gpu = gpu_context_or_skip();
  const bool emulated =
      strstr(nn_context_backend_name(gpu), "nn CUDA emulator") != NULL;
  nn_context_destroy(gpu);
  if (!emulated)
    cr_skip_test("needs the CUDA emulator to pose as a device without code");
  setenv("NNEMU_NO_KERNEL_IMAGE", "1", 1);
  char message[512] = "";
  nn_context *ctx = NULL;
  nn_status status =
      nn_context_create(NN_BACKEND_CUDA, 0, &ctx, message, sizeof message);
  cr_assert_eq(status, NN_ERROR_UNSUPPORTED, "-> %s: %s", nn_status_str(status),
               message);
  cr_assert_null(ctx);
  cr_assert_not_null(strstr(message, "has no code in this build (built for"),
                     "\"%s\"", message);
  cr_assert_not_null(strstr(message, "compute capability 9.0"), "\"%s\"",
                     message);
  /* AUTO takes the CPU instead, and says why. */
  status = nn_context_create(NN_BACKEND_AUTO, 0, &ctx, message, sizeof message);
  cr_assert_eq(status, NN_OK, "AUTO -> %s: %s", nn_status_str(status), message);
  cr_assert_eq(nn_context_backend(ctx), NN_BACKEND_CPU);
  cr_assert_not_null(strstr(nn_context_notice(ctx), "no code"), "\"%s\"",
                     nn_context_notice(ctx));
  nn_context_destroy(ctx);
}

/* A model far larger than any GPU (3e5 × 3e5 weights, 360 GB): out of
 * memory, saying how many bytes were asked for and how many are free; the
 * context stays usable. */
Test(gpu_parity, out_of_memory_is_reported) {
  nn_context *gpu = gpu_context_or_skip();
  nn_layer_spec layers[] = {{300000, NN_ACTIVATION_RELU, 0.0f},
                            {1, NN_ACTIVATION_SIGMOID, 0.0f}};
  nn_model_spec spec = {300000, 2, layers, NN_LOSS_BINARY_CROSS_ENTROPY};
  nn_model *model = NULL;
  nn_status status = nn_model_create(gpu, &spec, &model);
  cr_assert_eq(status, NN_ERROR_OUT_OF_MEMORY, "-> %s: %s",
               nn_status_str(status), nn_context_last_error(gpu));
  cr_assert_null(model);
  const char *message = nn_context_last_error(gpu);
  cr_assert_not_null(strstr(message, "cudaMalloc"), "\"%s\"", message);
  cr_assert_not_null(strstr(message, "bytes free"), "\"%s\"", message);
  const size_t widths[] = {2, 3, 1};
  model = make_model(gpu, widths, 2, NN_ACTIVATION_TANH, 0.0f,
                     NN_LOSS_BINARY_CROSS_ENTROPY);
  SUPPORT_OK(gpu, nn_model_init(model, NN_INIT_HE, 1));
  float x[2] = {0.5f, -0.5f}, yhat = 0.0f;
  SUPPORT_OK(gpu, nn_model_forward(model, x, 1, 0, &yhat));
  cr_assert(yhat > 0.0f && yhat < 1.0f, "yhat %g", (double)yhat);
  nn_model_destroy(model);
  nn_context_destroy(gpu);
}
