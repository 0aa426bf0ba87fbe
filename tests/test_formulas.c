/*
 * test_formulas.c — the notes' formulas on matrices small enough to write
 * down: forward Z = W X + b and A = g(Z), the three costs, the backward
 * formulas, the L2 term, the weight layout, initialization scales and the
 * symmetry that zero initialization cannot break.
 *
 * Expected values are computed here in double with plain loops, written
 * from the formulas and not from the library's code.
 */
#include "support.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* float32 arithmetic on values of order 1: ~1e-7 relative, with room. */
#define FLOAT_TOLERANCE 1e-5

/* ------------------------------------------------------------------------ */
/* Reference formulas (double, plain loops)                                  */
/* ------------------------------------------------------------------------ */

/* Z (n × m) = W (n × n_prev, row-major) X (n_prev × m) + b, column-major. */
static void reference_dense(const float *w, const float *b, const float *x,
                            size_t n, size_t n_prev, size_t m, double *z) {
  for (size_t j = 0; j < m; j++)
    for (size_t i = 0; i < n; i++) {
      double total = b[i];
      for (size_t k = 0; k < n_prev; k++)
        total += (double)w[i * n_prev + k] * x[j * n_prev + k];
      z[j * n + i] = total;
    }
}

/* A = g(Z) for linear, tanh and sigmoid (elementwise) and softmax (per
 * column, shifted by the column's max so that large logits stay finite). */
static void reference_activation(nn_activation activation, const double *z,
                                 size_t n, size_t m, double *a) {
  for (size_t j = 0; j < m; j++) {
    const double *zc = z + j * n;
    double *ac = a + j * n;
    double max = zc[0], total = 0.0;
    for (size_t i = 0; i < n; i++)
      max = fmax(max, zc[i]);
    for (size_t i = 0; i < n; i++) {
      if (activation == NN_ACTIVATION_SIGMOID)
        ac[i] = 1.0 / (1.0 + exp(-zc[i]));
      else if (activation == NN_ACTIVATION_TANH)
        ac[i] = tanh(zc[i]);
      else if (activation == NN_ACTIVATION_SOFTMAX)
        total += ac[i] = exp(zc[i] - max);
      else
        ac[i] = zc[i];
    }
    for (size_t i = 0; activation == NN_ACTIVATION_SOFTMAX && i < n; i++)
      ac[i] /= total;
  }
}

/* J = (1/m) Σ_j L(ŷ_j, y_j) from the logits z (n × m) and targets y:
 *   binary CE:      -Σ_i [y log σ(z) + (1-y) log(1-σ(z))], with
 *                   log σ(z) = -log(1 + e^-z) written stably;
 *   categorical CE: -Σ_i y_i (z_i - logsumexp(z));
 *   squared error:  ½ Σ_i (z_i - y_i)² (linear output: ŷ = z). */
static double reference_cost(nn_loss loss, const double *z, const float *y,
                             size_t n, size_t m) {
  double total = 0.0;
  for (size_t j = 0; j < m; j++) {
    const double *zc = z + j * n;
    const float *yc = y + j * n;
    double max = zc[0], sum_exp = 0.0;
    for (size_t i = 0; i < n; i++)
      max = fmax(max, zc[i]);
    for (size_t i = 0; i < n; i++)
      sum_exp += exp(zc[i] - max);
    for (size_t i = 0; i < n; i++) {
      /* log(1 + e^-|z|) + max(-z, 0) = -log σ(z), never overflowing. */
      double minus_log_sigmoid = log1p(exp(-fabs(zc[i]))) + fmax(-zc[i], 0);
      double minus_log_one_minus = minus_log_sigmoid + zc[i];
      if (loss == NN_LOSS_BINARY_CROSS_ENTROPY)
        total += yc[i] * minus_log_sigmoid + (1 - yc[i]) * minus_log_one_minus;
      else if (loss == NN_LOSS_CATEGORICAL_CROSS_ENTROPY)
        total -= yc[i] * (zc[i] - (max + log(sum_exp)));
      else
        total += 0.5 * (zc[i] - yc[i]) * (zc[i] - yc[i]);
    }
  }
  return total / (double)m;
}

/* dW = (1/m) dZ A_prevᵀ (n × n_prev, row-major) and db = (1/m) Σ_cols dZ. */
static void reference_weight_gradients(const double *dz, const double *a_prev,
                                       size_t n, size_t n_prev, size_t m,
                                       double *dw, double *db) {
  for (size_t i = 0; i < n; i++) {
    db[i] = 0.0;
    for (size_t j = 0; j < m; j++)
      db[i] += dz[j * n + i] / (double)m;
    for (size_t k = 0; k < n_prev; k++) {
      dw[i * n_prev + k] = 0.0;
      for (size_t j = 0; j < m; j++)
        dw[i * n_prev + k] += dz[j * n + i] * a_prev[j * n_prev + k] / m;
    }
  }
}

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

static void assert_all_close(const float *actual, const double *expected,
                             size_t count, double tolerance, const char *what) {
  for (size_t k = 0; k < count; k++)
    cr_assert(support_close(actual[k], expected[k], tolerance),
              "%s[%zu] = %.9g, expected %.9g", what, k, (double)actual[k],
              expected[k]);
}

static void widen(const float *values, size_t count, double *out) {
  for (size_t k = 0; k < count; k++)
    out[k] = values[k];
}

/* The tiny layer most tests share: n_x = 2, n[1] = 2, m = 3. */
enum { TINY_INPUTS = 2, TINY_UNITS = 2, TINY_EXAMPLES = 3 };
static const float tiny_weights[] = {0.5f, -1.0f, /* row 1 */
                                     2.0f, 0.25f /* row 2 */};
static const float tiny_bias[] = {0.1f, -0.3f};
static const float tiny_x[] = {1.0f, 2.0f, -1.0f, 0.5f, 3.0f, -2.0f};

/* Targets (2 × 3) per loss: 0/1, one-hot columns, real values. */
static const float *tiny_targets(nn_loss loss) {
  static const float binary[] = {1, 0, 0, 0, 1, 1};
  static const float one_hot[] = {1, 0, 0, 1, 1, 0};
  static const float real[] = {0.5f, -1.0f, 2.0f, 0.0f, -0.25f, 1.5f};
  if (loss == NN_LOSS_BINARY_CROSS_ENTROPY)
    return binary;
  return loss == NN_LOSS_CATEGORICAL_CROSS_ENTROPY ? one_hot : real;
}

/* L = 1: the output layer is the tiny layer, with the loss's activation. */
static nn_model *tiny_model(nn_context *ctx, nn_loss loss) {
  const size_t widths[] = {TINY_INPUTS, TINY_UNITS};
  nn_model *model = support_model(ctx, widths, 1, NN_ACTIVATION_LINEAR, loss);
  SUPPORT_OK(ctx,
             nn_model_set_layer_parameters(model, 1, tiny_weights, tiny_bias));
  return model;
}

/* ------------------------------------------------------------------------ */
/* Forward and cost                                                          */
/* ------------------------------------------------------------------------ */

/* W[l] is exchanged row-major [n_out, n_in]: with n_x = 3 and two units,
 * unit 1 reads x3 and unit 2 reads -2·x1. Read column-major the same nine
 * bytes would wire other inputs; and the arena is W[1] then b[1]. */
Test(formulas, weight_layout_is_row_major_out_by_in) {
  nn_context *ctx = support_cpu_context();
  const size_t widths[] = {3, 2};
  nn_model *model = support_model(ctx, widths, 1, NN_ACTIVATION_LINEAR,
                                  NN_LOSS_MEAN_SQUARED_ERROR);
  const float weights[] = {0, 0, 1, /* unit 1 */ -2, 0, 0 /* unit 2 */};
  const float bias[] = {0.5f, 0.0f};
  SUPPORT_OK(ctx, nn_model_set_layer_parameters(model, 1, weights, bias));
  const float x[] = {3.0f, 5.0f, 7.0f};
  float yhat[2];
  SUPPORT_OK(ctx, nn_model_forward(model, x, 1, 0, yhat));
  cr_assert_float_eq(yhat[0], 7.0f + 0.5f, 1e-6);
  cr_assert_float_eq(yhat[1], -2.0f * 3.0f, 1e-6);
  float arena[8], read_weights[6], read_bias[2];
  SUPPORT_OK(ctx, nn_model_get_parameters(model, arena, 8));
  SUPPORT_OK(ctx,
             nn_model_get_layer_parameters(model, 1, read_weights, read_bias));
  cr_assert_arr_eq(arena, weights, sizeof weights);
  cr_assert_arr_eq(arena + 6, bias, sizeof bias);
  cr_assert_arr_eq(read_weights, weights, sizeof weights);
  cr_assert_arr_eq(read_bias, bias, sizeof bias);
  nn_model_destroy(model);
  nn_context_destroy(ctx);
}

/* Ŷ = g(W X + b) and J for one output/loss pair on the tiny layer. */
static void check_tiny_forward_and_cost(nn_loss loss) {
  nn_context *ctx = support_cpu_context();
  nn_model *model = tiny_model(ctx, loss);
  const size_t count = TINY_UNITS * TINY_EXAMPLES;
  double z[TINY_UNITS * TINY_EXAMPLES], a[TINY_UNITS * TINY_EXAMPLES];
  reference_dense(tiny_weights, tiny_bias, tiny_x, TINY_UNITS, TINY_INPUTS,
                  TINY_EXAMPLES, z);
  reference_activation(nn_loss_output_activation(loss), z, TINY_UNITS,
                       TINY_EXAMPLES, a);
  float yhat[TINY_UNITS * TINY_EXAMPLES], cost = 0.0f;
  SUPPORT_OK(ctx, nn_model_forward(model, tiny_x, TINY_EXAMPLES, 0, yhat));
  assert_all_close(yhat, a, count, FLOAT_TOLERANCE, "A");
  const float *y = tiny_targets(loss);
  SUPPORT_OK(ctx, nn_model_cost(model, y, TINY_EXAMPLES, 0.0f, &cost));
  double expected = reference_cost(loss, z, y, TINY_UNITS, TINY_EXAMPLES);
  cr_assert(support_close(cost, expected, FLOAT_TOLERANCE),
            "%s: J = %.9g, expected %.9g", nn_loss_name(loss), (double)cost,
            expected);
  nn_model_destroy(model);
  nn_context_destroy(ctx);
}

/* Z = W X + b by hand (the linear output returns Z itself):
 * column 1 is (0.5·1 - 1·2 + 0.1, 2·1 + 0.25·2 - 0.3) = (-1.4, 2.2). */
Test(formulas, linear_layer_is_w_x_plus_b) {
  double z[TINY_UNITS * TINY_EXAMPLES];
  reference_dense(tiny_weights, tiny_bias, tiny_x, TINY_UNITS, TINY_INPUTS,
                  TINY_EXAMPLES, z);
  cr_assert_float_eq(z[0], -1.4, 1e-6, "the reference itself is wrong");
  cr_assert_float_eq(z[1], 2.2, 1e-6, "the reference itself is wrong");
  check_tiny_forward_and_cost(NN_LOSS_MEAN_SQUARED_ERROR);
}

Test(formulas, sigmoid_layer_and_binary_cross_entropy) {
  check_tiny_forward_and_cost(NN_LOSS_BINARY_CROSS_ENTROPY);
}

Test(formulas, softmax_layer_and_categorical_cross_entropy) {
  check_tiny_forward_and_cost(NN_LOSS_CATEGORICAL_CROSS_ENTROPY);
}

/* Logits of ±1000 overflow e^z in float and double: the cost must come from
 * log-sum-exp (softmax) and softplus (sigmoid), finite and exact. W = 0, so
 * Z = b in every column; X only fills the batch. */
static void check_large_logits(nn_loss loss, size_t units, const float *bias,
                               const float *y, size_t m) {
  nn_context *ctx = support_cpu_context();
  const size_t widths[] = {1, units};
  nn_model *model = support_model(ctx, widths, 1, NN_ACTIVATION_LINEAR, loss);
  SUPPORT_OK(ctx, nn_model_set_layer_parameters(model, 1, NULL, bias));
  const float x[] = {1, 2, 3, 4};
  double z[16];
  for (size_t k = 0; k < units * m; k++)
    z[k] = bias[k % units];
  float yhat[16], cost = NAN;
  SUPPORT_OK(ctx, nn_model_forward(model, x, m, 0, yhat));
  for (size_t k = 0; k < units * m; k++)
    cr_assert(isfinite(yhat[k]), "yhat[%zu] = %g", k, (double)yhat[k]);
  SUPPORT_OK(ctx, nn_model_cost(model, y, m, 0.0f, &cost));
  double expected = reference_cost(loss, z, y, units, m);
  cr_assert(isfinite(cost), "%s: J = %g", nn_loss_name(loss), (double)cost);
  cr_assert(support_close(cost, expected, FLOAT_TOLERANCE),
            "%s: J = %.9g, expected %.9g", nn_loss_name(loss), (double)cost,
            expected);
  nn_model_destroy(model);
  nn_context_destroy(ctx);
}

/* Logits (1000, 999, -1000): class 1 costs log(1 + e^-1) ≈ 0.313, class 2
 * costs 1 + log(1 + e^-1) and class 3 costs ≈ 2000. */
Test(formulas, categorical_cross_entropy_with_large_logits) {
  const float bias[] = {1000.0f, 999.0f, -1000.0f};
  const float y[] = {1, 0, 0, /* */ 0, 1, 0, /* */ 0, 0, 1};
  double z[3] = {1000.0, 999.0, -1000.0};
  cr_assert_float_eq(
      reference_cost(NN_LOSS_CATEGORICAL_CROSS_ENTROPY, z, y, 3, 1),
      log1p(exp(-1.0)), 1e-12, "the reference is wrong");
  check_large_logits(NN_LOSS_CATEGORICAL_CROSS_ENTROPY, 3, bias, y, 3);
}

/* σ(-1000) underflows to 0 in float: log ŷ must not become -inf. Entry
 * losses: 1000 (y = 1 at z = -1000), ~0 (y = 1 at z = 1000), ~0 (y = 0 at
 * z = -1000) and 1000 (y = 0 at z = 1000), so J = 2000 / 2 = 1000. */
Test(formulas, binary_cross_entropy_with_large_logits) {
  const float bias[] = {-1000.0f, 1000.0f};
  const float y[] = {1, 1, /* */ 0, 0};
  check_large_logits(NN_LOSS_BINARY_CROSS_ENTROPY, 2, bias, y, 2);
}

/* MSE = (1/m) Σ ½(ŷ - y)², checked against a value worked out by hand:
 * Ŷ = b = (1, -2) in both columns, Y = ((0, 0), (3, -2)):
 * losses ½(1 + 4) = 2.5 and ½(4 + 0) = 2, so J = 2.25. */
Test(formulas, mean_squared_error_by_hand) {
  nn_context *ctx = support_cpu_context();
  const size_t widths[] = {1, 2};
  nn_model *model = support_model(ctx, widths, 1, NN_ACTIVATION_LINEAR,
                                  NN_LOSS_MEAN_SQUARED_ERROR);
  const float bias[] = {1.0f, -2.0f}, x[] = {5.0f, 6.0f};
  const float y[] = {0.0f, 0.0f, 3.0f, -2.0f};
  SUPPORT_OK(ctx, nn_model_set_layer_parameters(model, 1, NULL, bias));
  float cost = 0.0f;
  SUPPORT_OK(ctx, nn_model_forward(model, x, 2, 0, NULL));
  SUPPORT_OK(ctx, nn_model_cost(model, y, 2, 0.0f, &cost));
  cr_assert_float_eq(cost, 2.25f, 1e-6);
  nn_model_destroy(model);
  nn_context_destroy(ctx);
}

/* ------------------------------------------------------------------------ */
/* Backward                                                                  */
/* ------------------------------------------------------------------------ */

/* dZ = A - Y (every output/loss pair), dW = (1/m) dZ Xᵀ, db = (1/m) Σ dZ. */
static void check_output_layer_gradients(nn_loss loss) {
  nn_context *ctx = support_cpu_context();
  nn_model *model = tiny_model(ctx, loss);
  const float *y = tiny_targets(loss);
  double z[TINY_UNITS * TINY_EXAMPLES], dz[TINY_UNITS * TINY_EXAMPLES];
  double x[TINY_INPUTS * TINY_EXAMPLES];
  double dw[TINY_UNITS * TINY_INPUTS], db[TINY_UNITS];
  reference_dense(tiny_weights, tiny_bias, tiny_x, TINY_UNITS, TINY_INPUTS,
                  TINY_EXAMPLES, z);
  reference_activation(nn_loss_output_activation(loss), z, TINY_UNITS,
                       TINY_EXAMPLES, dz);
  for (size_t k = 0; k < TINY_UNITS * TINY_EXAMPLES; k++)
    dz[k] -= y[k];
  widen(tiny_x, TINY_INPUTS * TINY_EXAMPLES, x);
  reference_weight_gradients(dz, x, TINY_UNITS, TINY_INPUTS, TINY_EXAMPLES, dw,
                             db);
  float weight_grad[TINY_UNITS * TINY_INPUTS], bias_grad[TINY_UNITS];
  SUPPORT_OK(ctx, nn_model_forward(model, tiny_x, TINY_EXAMPLES, 1, NULL));
  SUPPORT_OK(ctx, nn_model_backward(model, y, TINY_EXAMPLES, 0.0f));
  SUPPORT_OK(ctx,
             nn_model_get_layer_gradients(model, 1, weight_grad, bias_grad));
  assert_all_close(weight_grad, dw, TINY_UNITS * TINY_INPUTS, FLOAT_TOLERANCE,
                   "dW");
  assert_all_close(bias_grad, db, TINY_UNITS, FLOAT_TOLERANCE, "db");
  nn_model_destroy(model);
  nn_context_destroy(ctx);
}

Test(formulas, output_gradients_binary_cross_entropy) {
  check_output_layer_gradients(NN_LOSS_BINARY_CROSS_ENTROPY);
}

Test(formulas, output_gradients_categorical_cross_entropy) {
  check_output_layer_gradients(NN_LOSS_CATEGORICAL_CROSS_ENTROPY);
}

Test(formulas, output_gradients_mean_squared_error) {
  check_output_layer_gradients(NN_LOSS_MEAN_SQUARED_ERROR);
}

/* A 2-2-1 tanh/sigmoid network: the tiny layer feeding one sigmoid unit. */
static const float hidden_to_output[] = {1.5f, -0.75f};
static const float output_bias[] = {0.2f};
static const float single_targets[] = {1.0f, 0.0f, 1.0f};

static nn_model *two_layer_model(nn_context *ctx) {
  const size_t widths[] = {TINY_INPUTS, TINY_UNITS, 1};
  nn_model *model = support_model(ctx, widths, 2, NN_ACTIVATION_TANH,
                                  NN_LOSS_BINARY_CROSS_ENTROPY);
  SUPPORT_OK(ctx,
             nn_model_set_layer_parameters(model, 1, tiny_weights, tiny_bias));
  SUPPORT_OK(ctx, nn_model_set_layer_parameters(model, 2, hidden_to_output,
                                                output_bias));
  return model;
}

/* The notes' backward pass, step by step:
 * dZ[2] = A[2] - Y; dW[2] = (1/m) dZ[2] A[1]ᵀ; db[2] = (1/m) Σ dZ[2];
 * dA[1] = W[2]ᵀ dZ[2]; dZ[1] = dA[1] * (1 - A[1]²); dW[1], db[1] alike. */
Test(formulas, two_layer_backward_by_hand) {
  enum { M = TINY_EXAMPLES, N1 = TINY_UNITS };
  nn_context *ctx = support_cpu_context();
  nn_model *model = two_layer_model(ctx);
  double z1[N1 * M], a1[N1 * M], z2[M], dz2[M], dz1[N1 * M], x[2 * M];
  double dw2[N1], db2[1], dw1[N1 * 2], db1[N1];
  reference_dense(tiny_weights, tiny_bias, tiny_x, N1, 2, M, z1);
  reference_activation(NN_ACTIVATION_TANH, z1, N1, M, a1);
  for (size_t j = 0; j < M; j++) {
    z2[j] = output_bias[0] + hidden_to_output[0] * a1[j * N1] +
            hidden_to_output[1] * a1[j * N1 + 1];
    dz2[j] = 1.0 / (1.0 + exp(-z2[j])) - single_targets[j];
    for (size_t i = 0; i < N1; i++) {
      double da1 = hidden_to_output[i] * dz2[j];
      dz1[j * N1 + i] = da1 * (1.0 - a1[j * N1 + i] * a1[j * N1 + i]);
    }
  }
  reference_weight_gradients(dz2, a1, 1, N1, M, dw2, db2);
  widen(tiny_x, 2 * M, x);
  reference_weight_gradients(dz1, x, N1, 2, M, dw1, db1);

  float weight_grad[N1 * 2], bias_grad[N1];
  SUPPORT_OK(ctx, nn_model_forward(model, tiny_x, M, 1, NULL));
  SUPPORT_OK(ctx, nn_model_backward(model, single_targets, M, 0.0f));
  SUPPORT_OK(ctx,
             nn_model_get_layer_gradients(model, 2, weight_grad, bias_grad));
  assert_all_close(weight_grad, dw2, N1, FLOAT_TOLERANCE, "dW[2]");
  assert_all_close(bias_grad, db2, 1, FLOAT_TOLERANCE, "db[2]");
  SUPPORT_OK(ctx,
             nn_model_get_layer_gradients(model, 1, weight_grad, bias_grad));
  assert_all_close(weight_grad, dw1, N1 * 2, FLOAT_TOLERANCE, "dW[1]");
  assert_all_close(bias_grad, db1, N1, FLOAT_TOLERANCE, "db[1]");
  nn_model_destroy(model);
  nn_context_destroy(ctx);
}

/* L2: J grows by (λ/2m) Σ_l ||W[l]||² (weights only, biases are non-zero
 * here and must not count), dW grows by (λ/m) W and db does not change. */
Test(formulas, l2_term_in_cost_and_gradients) {
  enum { M = TINY_EXAMPLES };
  const float lambda = 0.6f;
  nn_context *ctx = support_cpu_context();
  nn_model *model = two_layer_model(ctx);
  double squares = 0.0;
  for (size_t k = 0; k < 4; k++)
    squares += (double)tiny_weights[k] * tiny_weights[k];
  squares += (double)hidden_to_output[0] * hidden_to_output[0] +
             (double)hidden_to_output[1] * hidden_to_output[1];
  float plain = 0.0f, regularized = 0.0f;
  SUPPORT_OK(ctx, nn_model_forward(model, tiny_x, M, 0, NULL));
  SUPPORT_OK(ctx, nn_model_cost(model, single_targets, M, 0.0f, &plain));
  SUPPORT_OK(ctx,
             nn_model_cost(model, single_targets, M, lambda, &regularized));
  cr_assert_float_eq(regularized - plain, lambda / (2.0 * M) * squares, 1e-5,
                     "L2 term %g", (double)(regularized - plain));

  float dw_plain[4], db_plain[2], dw_l2[4], db_l2[2];
  SUPPORT_OK(ctx, nn_model_backward(model, single_targets, M, 0.0f));
  SUPPORT_OK(ctx, nn_model_get_layer_gradients(model, 1, dw_plain, db_plain));
  SUPPORT_OK(ctx, nn_model_backward(model, single_targets, M, lambda));
  SUPPORT_OK(ctx, nn_model_get_layer_gradients(model, 1, dw_l2, db_l2));
  for (size_t k = 0; k < 4; k++)
    cr_assert_float_eq(dw_l2[k] - dw_plain[k], lambda / M * tiny_weights[k],
                       1e-6, "dW[1][%zu]", k);
  for (size_t i = 0; i < 2; i++)
    cr_assert_float_eq(db_l2[i], db_plain[i], 1e-7, "db[1][%zu]", i);
  nn_model_destroy(model);
  nn_context_destroy(ctx);
}

/* ------------------------------------------------------------------------ */
/* Initialization                                                            */
/* ------------------------------------------------------------------------ */

/* 500 -> 400 -> 50: 200 000 and 20 000 weights, enough that the sample std
 * is within 0.2% and 0.5% (one standard error) of the scheme's. */
static nn_model *wide_model(nn_context *ctx) {
  const size_t widths[] = {500, 400, 50};
  return support_model(ctx, widths, 2, NN_ACTIVATION_RELU,
                       NN_LOSS_MEAN_SQUARED_ERROR);
}

static float *read_parameters(nn_context *ctx, const nn_model *model) {
  size_t count = nn_model_parameter_count(model);
  float *values = malloc(count * sizeof *values);
  cr_assert_not_null(values);
  SUPPORT_OK(ctx, nn_model_get_parameters(model, values, count));
  return values;
}

Test(formulas, zeros_initialization) {
  nn_context *ctx = support_cpu_context();
  nn_model *model = two_layer_model(ctx); /* non-zero parameters first */
  SUPPORT_OK(ctx, nn_model_init(model, NN_INIT_ZEROS, 7));
  float *values = read_parameters(ctx, model);
  for (size_t k = 0; k < nn_model_parameter_count(model); k++)
    cr_assert_eq(values[k], 0.0f, "parameter %zu = %g", k, (double)values[k]);
  free(values);
  nn_model_destroy(model);
  nn_context_destroy(ctx);
}

/* The standard deviation each scheme promises for a layer. */
static double expected_init_std(nn_init init, size_t n_in, size_t n_out) {
  switch (init) {
  case NN_INIT_NORMAL:
    return 0.01;
  case NN_INIT_HE:
    return sqrt(2.0 / (double)n_in);
  case NN_INIT_XAVIER:
    return sqrt(1.0 / (double)n_in);
  default: /* glorot */
    return sqrt(2.0 / (double)(n_in + n_out));
  }
}

/* Biases exactly 0; weights with mean ~0 and std within 3% of the scheme's
 * (6 standard errors for the smaller layer; Xavier and Glorot differ by
 * 5.4% on layer 1 and 33% on layer 2, so neither passes for the other). */
static void check_init_scale(nn_init init) {
  nn_context *ctx = support_cpu_context();
  nn_model *model = wide_model(ctx);
  SUPPORT_OK(ctx, nn_model_init(model, init, 2024));
  float *values = read_parameters(ctx, model);
  const float *cursor = values;
  for (size_t l = 1; l <= 2; l++) {
    size_t n_in = nn_model_layer_units(model, l - 1);
    size_t n_out = nn_model_layer_units(model, l);
    size_t count = n_in * n_out;
    double sum = 0.0, squares = 0.0;
    for (size_t k = 0; k < count; k++) {
      sum += cursor[k];
      squares += (double)cursor[k] * cursor[k];
    }
    double mean = sum / (double)count;
    double std = sqrt(squares / (double)count - mean * mean);
    double expected = expected_init_std(init, n_in, n_out);
    cr_assert_lt(fabs(mean), 5.0 * expected / sqrt((double)count),
                 "%s layer %zu: mean %g", nn_init_name(init), l, mean);
    cr_assert_lt(fabs(std / expected - 1.0), 0.03,
                 "%s layer %zu: std %g, expected %g", nn_init_name(init), l,
                 std, expected);
    for (size_t i = 0; i < n_out; i++)
      cr_assert_eq(cursor[count + i], 0.0f, "%s: b[%zu][%zu] = %g",
                   nn_init_name(init), l, i, (double)cursor[count + i]);
    cursor += count + n_out;
  }
  free(values);
  nn_model_destroy(model);
  nn_context_destroy(ctx);
}

Test(formulas, normal_initialization_scale) {
  check_init_scale(NN_INIT_NORMAL);
}

Test(formulas, he_initialization_scale) {
  check_init_scale(NN_INIT_HE);
}

Test(formulas, xavier_initialization_scale) {
  check_init_scale(NN_INIT_XAVIER);
}

Test(formulas, glorot_initialization_scale) {
  check_init_scale(NN_INIT_GLOROT);
}

/* The same seed draws the same weights; another seed, other weights. */
Test(formulas, initialization_seed) {
  nn_context *ctx = support_cpu_context();
  const size_t widths[] = {30, 20, 3};
  nn_model *model = support_model(ctx, widths, 2, NN_ACTIVATION_RELU,
                                  NN_LOSS_CATEGORICAL_CROSS_ENTROPY);
  const size_t count = nn_model_parameter_count(model);
  SUPPORT_OK(ctx, nn_model_init(model, NN_INIT_HE, 5));
  float *first = read_parameters(ctx, model);
  SUPPORT_OK(ctx, nn_model_init(model, NN_INIT_HE, 5));
  float *again = read_parameters(ctx, model);
  SUPPORT_OK(ctx, nn_model_init(model, NN_INIT_HE, 6));
  float *other = read_parameters(ctx, model);
  cr_assert_arr_eq(first, again, count * sizeof *first);
  size_t differing = 0, weights = 0;
  for (size_t k = 0; k < count; k++) {
    weights += first[k] != 0.0f;
    differing += first[k] != other[k];
  }
  cr_assert_eq(differing, weights, "seed 6 repeats %zu weights of seed 5",
               weights - differing);
  free(first);
  free(again);
  free(other);
  nn_model_destroy(model);
  nn_context_destroy(ctx);
}

/* ------------------------------------------------------------------------ */
/* Symmetry: why zero initialization fails                                   */
/* ------------------------------------------------------------------------ */

/* A 2-3-1 network trained with gradient descent on 300 examples of the
 * planar data set: all 200 of class 0 and 100 of class 1. (On the balanced
 * set, a zero network's first gradient is exactly 0: mean(Ŷ - Y) = 0.5 -
 * 0.5, and nothing would ever move.) */
static nn_model *trained_planar_model(nn_context *ctx, nn_activation hidden,
                                      nn_init init) {
  enum { USED = SUPPORT_PLANAR_EXAMPLES * 3 / 4 };
  float x[2 * SUPPORT_PLANAR_EXAMPLES];
  int32_t labels[SUPPORT_PLANAR_EXAMPLES];
  support_planar_dataset(1, x, labels);
  nn_dataset *data = NULL;
  SUPPORT_OK(ctx,
             nn_dataset_create_from_labels(ctx, 2, USED, x, labels, 1, &data));
  const size_t widths[] = {2, 3, 1};
  nn_model *model =
      support_model(ctx, widths, 2, hidden, NN_LOSS_BINARY_CROSS_ENTROPY);
  SUPPORT_OK(ctx, nn_model_init(model, init, 3));
  nn_train_options options;
  nn_train_options_default(&options);
  options.learning_rate = 0.5f;
  options.epochs = 300;
  SUPPORT_OK(ctx, nn_model_train(model, data, &options, NULL));
  nn_dataset_destroy(data);
  return model;
}

/* Largest difference between hidden unit 1 and units 2, 3: rows of W[1]
 * (3 × 2), entries of b[1] and columns of W[2] (1 × 3). */
static double hidden_unit_asymmetry(nn_context *ctx, const nn_model *model) {
  float w1[6], b1[3], w2[3];
  SUPPORT_OK(ctx, nn_model_get_layer_parameters(model, 1, w1, b1));
  SUPPORT_OK(ctx, nn_model_get_layer_parameters(model, 2, w2, NULL));
  double largest = 0.0;
  for (size_t unit = 1; unit < 3; unit++) {
    largest = fmax(largest, fabs(w1[2 * unit] - w1[0]));
    largest = fmax(largest, fabs(w1[2 * unit + 1] - w1[1]));
    largest = fmax(largest, fabs(b1[unit] - b1[0]));
    largest = fmax(largest, fabs(w2[unit] - w2[0]));
  }
  return largest;
}

/* Every hidden unit computes the same function from zeros, receives the
 * same gradient, and so stays the same after 300 updates. With sigmoid
 * units (A[1] = 0.5 ≠ 0) the weights do move, identically; with tanh
 * (A[1] = tanh 0 = 0) W[2] and W[1] get no gradient at all. */
static void check_zero_init_stays_symmetric(nn_activation hidden) {
  nn_context *ctx = support_cpu_context();
  nn_model *model = trained_planar_model(ctx, hidden, NN_INIT_ZEROS);
  double asymmetry = hidden_unit_asymmetry(ctx, model);
  cr_assert_leq(asymmetry, 1e-6, "%s: hidden units drifted apart by %g",
                nn_activation_name(hidden), asymmetry);
  float w2[3], b2[1];
  SUPPORT_OK(ctx, nn_model_get_layer_parameters(model, 2, w2, b2));
  cr_assert_neq(b2[0], 0.0f, "training did not move the parameters");
  if (hidden == NN_ACTIVATION_SIGMOID)
    cr_assert_gt(fabsf(w2[0]), 1e-3f, "sigmoid units did not move: %g",
                 (double)w2[0]);
  nn_model_destroy(model);
  nn_context_destroy(ctx);
}

Test(formulas, zero_initialization_keeps_tanh_units_identical) {
  check_zero_init_stays_symmetric(NN_ACTIVATION_TANH);
}

Test(formulas, zero_initialization_keeps_sigmoid_units_identical) {
  check_zero_init_stays_symmetric(NN_ACTIVATION_SIGMOID);
}

Test(formulas, random_initialization_breaks_symmetry) {
  nn_context *ctx = support_cpu_context();
  nn_model *model =
      trained_planar_model(ctx, NN_ACTIVATION_TANH, NN_INIT_XAVIER);
  double asymmetry = hidden_unit_asymmetry(ctx, model);
  cr_assert_gt(asymmetry, 0.1, "random init left units alike (%g)", asymmetry);
  nn_model_destroy(model);
  nn_context_destroy(ctx);
}

/* Ŷ = g(x) for a hidden activation g: 1 -> 1 unit g -> 1 linear output,
 * both weights 1 and biases 0 (squared error: the output is linear). */
static void hidden_activation_values(nn_activation hidden, const float *x,
                                     size_t count, float *yhat) {
  nn_context *ctx = support_cpu_context();
  const size_t widths[] = {1, 1, 1};
  nn_model *model =
      support_model(ctx, widths, 2, hidden, NN_LOSS_MEAN_SQUARED_ERROR);
  const float parameters[4] = {1.0f, 0.0f, 1.0f, 0.0f}; /* W1 b1 W2 b2 */
  SUPPORT_OK(ctx, nn_model_set_parameters(model, parameters, 4));
  SUPPORT_OK(ctx, nn_model_forward(model, x, count, 0, yhat));
  nn_model_destroy(model);
  nn_context_destroy(ctx);
}

/* GELU's tanh approximation against its formula in double, and its
 * distance from the exact GELU: small (the approximation is good to about
 * 5e-4) but not nil (it is another function). */
Test(formulas, gelu_tanh_is_the_tanh_approximation) {
  const float x[] = {-4.0f, -2.0f, -1.0f, -0.5f, 0.0f, 0.5f, 1.0f, 2.0f, 4.0f};
  const size_t count = sizeof x / sizeof x[0];
  float approximate[9], exact[9];
  hidden_activation_values(NN_ACTIVATION_GELU_TANH, x, count, approximate);
  hidden_activation_values(NN_ACTIVATION_GELU, x, count, exact);
  double largest_gap = 0.0;
  for (size_t k = 0; k < count; k++) {
    const double z = x[k];
    const double u = sqrt(2.0 / M_PI) * (z + 0.044715 * z * z * z);
    const double expected = 0.5 * z * (1.0 + tanh(u));
    cr_assert_float_eq(approximate[k], expected, 1e-6, "gelu_tanh(%g) = %g", z,
                       (double)approximate[k]);
    const double gap = fabs((double)approximate[k] - (double)exact[k]);
    cr_assert_leq(gap, 1e-3, "x = %g: tanh form %g, erf form %g", z,
                  (double)approximate[k], (double)exact[k]);
    largest_gap = fmax(largest_gap, gap);
  }
  cr_assert_gt(largest_gap, 1e-5, "gelu_tanh is not the erf GELU");
  cr_assert_str_eq(nn_activation_name(NN_ACTIVATION_GELU_TANH), "gelu_tanh");
}
