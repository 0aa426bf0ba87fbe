/*
 * test_gradients.c — backward propagation against central differences.
 *
 * For every parameter θ_k of the arena (W[1] b[1] W[2] b[2] ...) the
 * numerical gradient is
 *   g_num[k] = (J(θ + ε e_k) - J(θ - ε e_k)) / (2ε)
 * from nn_model_forward (training = 0) and nn_model_cost, and the analytic
 * one is what nn_model_backward leaves for nn_model_get_layer_gradients. They
 * must agree by the relative error
 *   ||g_num - g_ana|| / (||g_num|| + ||g_ana||) < GRADIENT_TOLERANCE.
 */
#include "support.h"

#include "internal.h"

#include <math.h>
#include <stdlib.h>

/* The parameters and activations are float32, so the cost carries rounding
 * noise of ~1e-7 relative; divided by 2ε that is ~1e-5 per entry at
 * ε = 1e-2, while the O(ε²) truncation error stays ~1e-5 relative. A correct
 * backward pass shows relative errors of 3e-6..4e-5 here; 10% too much in
 * dW[1] alone shows 1.3e-2 and a wrong g' 0.2. The tolerance sits between,
 * ~30x above the first and ~13x below the second. */
#define SMOOTH_EPSILON 1e-2f
/* ReLU and leaky ReLU are piecewise linear: central differences are exact
 * on a linear piece but meaningless across the kink. A step of ε moves a Z
 * by ε·|A[l-1]| <= ε directly and by a few ε through later layers, so a
 * margin of 10ε keeps every perturbed Z on its side; the data seeds of the
 * ReLU tests are ones whose Z keep that margin (asserted, not assumed). */
#define KINKED_EPSILON 2e-3f
#define KINK_MARGIN 2e-2f
#define GRADIENT_TOLERANCE 1e-3

/* One gradient check: a model, a batch and the L2 strength. */
typedef struct gradient_problem {
  nn_context *ctx;
  nn_model *model;
  float *x; /* (n_x × m) */
  float *y; /* (n[L] × m) */
  size_t m;
  float l2_lambda;
} gradient_problem;

/* ------------------------------------------------------------------------ */
/* Building problems                                                         */
/* ------------------------------------------------------------------------ */

static float uniform_between(support_rng *rng, double low, double high) {
  return (float)(low + (high - low) * support_rng_uniform(rng));
}

static float *allocate_floats(size_t count) {
  float *values = calloc(count, sizeof *values);
  cr_assert_not_null(values);
  return values;
}

/* A model whose layer l has units[l - 1] units and activations[l - 1]. */
static nn_model *layered_model(nn_context *ctx, size_t input_width,
                               size_t layer_count, const size_t *units,
                               const nn_activation *activations, nn_loss loss) {
  nn_layer_spec specs[8] = {{0}};
  cr_assert_leq(layer_count, 8);
  for (size_t l = 0; l < layer_count; l++) {
    specs[l].units = units[l];
    specs[l].activation = activations[l];
  }
  nn_model_spec spec = {input_width, layer_count, specs, loss};
  nn_model *model = NULL;
  SUPPORT_OK(ctx, nn_model_create(ctx, &spec, &model));
  return model;
}

/* Every weight and bias uniform in [-scale, scale]: non-zero biases so that
 * db is exercised, large enough that the activations leave their linear
 * region near 0. */
static void randomize_parameters(nn_context *ctx, nn_model *model, float scale,
                                 uint64_t seed) {
  size_t count = nn_model_parameter_count(model);
  float *values = allocate_floats(count);
  support_rng rng = support_rng_seeded(seed);
  for (size_t k = 0; k < count; k++)
    values[k] = uniform_between(&rng, -scale, scale);
  SUPPORT_OK(ctx, nn_model_set_parameters(model, values, count));
  free(values);
}

/* Targets (n_y × m) that suit the loss: 0/1 entries for binary CE, one-hot
 * columns for categorical CE, real values for squared error. */
static float *random_targets(nn_loss loss, size_t n_y, size_t m,
                             support_rng *rng) {
  float *y = allocate_floats(n_y * m);
  for (size_t j = 0; j < m; j++) {
    float *column = y + j * n_y;
    if (loss == NN_LOSS_CATEGORICAL_CROSS_ENTROPY) {
      column[(size_t)(support_rng_uniform(rng) * (double)n_y)] = 1.0f;
      continue;
    }
    for (size_t i = 0; i < n_y; i++)
      column[i] = loss == NN_LOSS_BINARY_CROSS_ENTROPY
                      ? (float)(support_rng_uniform(rng) < 0.5)
                      : uniform_between(rng, -1.0, 1.0);
  }
  return y;
}

/* A problem on `model` with m random examples, inputs in [-1, 1]. */
static gradient_problem make_problem(nn_context *ctx, nn_model *model, size_t m,
                                     float l2_lambda, uint64_t seed) {
  const size_t n_x = nn_model_layer_units(model, 0);
  const size_t n_y = nn_model_layer_units(model, nn_model_layer_count(model));
  gradient_problem problem = {.ctx = ctx,
                              .model = model,
                              .x = allocate_floats(n_x * m),
                              .m = m,
                              .l2_lambda = l2_lambda};
  support_rng rng = support_rng_seeded(seed);
  for (size_t k = 0; k < n_x * m; k++)
    problem.x[k] = uniform_between(&rng, -1.0, 1.0);
  problem.y = random_targets(nn_model_loss(model), n_y, m, &rng);
  randomize_parameters(ctx, model, 0.8f, seed + 1);
  return problem;
}

static void destroy_problem(gradient_problem *problem) {
  free(problem->x);
  free(problem->y);
  nn_model_destroy(problem->model);
  nn_context_destroy(problem->ctx);
}

/* ------------------------------------------------------------------------ */
/* The checker                                                               */
/* ------------------------------------------------------------------------ */

/* J at the current parameters. nn_model_cost stages Y, checks it and gives
 * J as a float; the same sum before that cast (nnlib_cost, in double) is
 * what the quotient uses, since a float J would put ~1e-7 · J / 2ε of
 * rounding noise into every entry. */
static double problem_cost(const gradient_problem *p) {
  float cost = 0.0f;
  SUPPORT_OK(p->ctx, nn_model_forward(p->model, p->x, p->m, 0, NULL));
  SUPPORT_OK(p->ctx, nn_model_cost(p->model, p->y, p->m, p->l2_lambda, &cost));
  double exact = 0.0;
  SUPPORT_OK(p->ctx, nnlib_cost(p->model, p->model->targets, p->m, p->l2_lambda,
                                &exact));
  cr_assert_float_eq(cost, exact, 1e-6 * fmax(1.0, fabs(exact)));
  return exact;
}

/* The last backward pass's gradient in arena layout: dW[l] (row-major
 * [n[l], n[l-1]]) then db[l], layer after layer, like
 * nn_model_get_parameters. */
static float *read_gradient(const gradient_problem *p) {
  float *gradient = allocate_floats(nn_model_parameter_count(p->model));
  float *cursor = gradient;
  for (size_t l = 1; l <= nn_model_layer_count(p->model); l++) {
    size_t units = nn_model_layer_units(p->model, l);
    size_t weights = units * nn_model_layer_units(p->model, l - 1);
    SUPPORT_OK(p->ctx, nn_model_get_layer_gradients(p->model, l, cursor,
                                                    cursor + weights));
    cursor += weights + units;
  }
  return gradient;
}

/* Backward propagation's gradient at the current parameters. */
static float *analytic_gradient(const gradient_problem *p) {
  SUPPORT_OK(p->ctx, nn_model_forward(p->model, p->x, p->m, 0, NULL));
  SUPPORT_OK(p->ctx, nn_model_backward(p->model, p->y, p->m, p->l2_lambda));
  return read_gradient(p);
}

/* Central differences over the whole arena. The step actually taken is
 * (θ+ε) - (θ-ε) after rounding to float, not 2ε, so that rounding of the
 * perturbed parameter does not bias the quotient. Parameters are restored. */
static double *numerical_gradient(const gradient_problem *p, float epsilon) {
  const size_t count = nn_model_parameter_count(p->model);
  float *theta = allocate_floats(count);
  double *gradient = calloc(count, sizeof *gradient);
  cr_assert_not_null(gradient);
  SUPPORT_OK(p->ctx, nn_model_get_parameters(p->model, theta, count));
  for (size_t k = 0; k < count; k++) {
    const float original = theta[k];
    const float plus = original + epsilon, minus = original - epsilon;
    theta[k] = plus;
    SUPPORT_OK(p->ctx, nn_model_set_parameters(p->model, theta, count));
    const double cost_plus = problem_cost(p);
    theta[k] = minus;
    SUPPORT_OK(p->ctx, nn_model_set_parameters(p->model, theta, count));
    const double cost_minus = problem_cost(p);
    theta[k] = original;
    gradient[k] = (cost_plus - cost_minus) / ((double)plus - (double)minus);
  }
  SUPPORT_OK(p->ctx, nn_model_set_parameters(p->model, theta, count));
  free(theta);
  return gradient;
}

/* ||g_num - g_ana|| / (||g_num|| + ||g_ana||), accumulated in double. */
static double relative_error(const double *numerical, const float *analytic,
                             size_t count) {
  double difference = 0.0, numerical_norm = 0.0, analytic_norm = 0.0;
  for (size_t k = 0; k < count; k++) {
    double delta = numerical[k] - (double)analytic[k];
    difference += delta * delta;
    numerical_norm += numerical[k] * numerical[k];
    analytic_norm += (double)analytic[k] * analytic[k];
  }
  double denominator = sqrt(numerical_norm) + sqrt(analytic_norm);
  cr_assert_gt(denominator, 0.0, "both gradients are zero: nothing checked");
  return sqrt(difference) / denominator;
}

static bool is_kinked(nn_activation activation) {
  return activation == NN_ACTIVATION_RELU ||
         activation == NN_ACTIVATION_LEAKY_RELU;
}

/* Smallest |Z[l]| over the hidden layers with a kink at 0, from the last
 * forward pass (CPU backend: Z lives in host memory); INFINITY if none. */
static float smallest_kink_distance(const nn_model *model) {
  float smallest = INFINITY;
  for (size_t l = 0; l + 1 < model->layer_count; l++) {
    const nnlib_layer *layer = &model->layers[l];
    for (size_t k = 0; is_kinked(layer->activation) &&
                       k < layer->units * model->forward_examples;
         k++)
      smallest = fminf(smallest, fabsf(layer->pre_activation[k]));
  }
  return smallest;
}

static bool has_kinks(const nn_model *model) {
  for (size_t l = 0; l + 1 < model->layer_count; l++)
    if (is_kinked(model->layers[l].activation))
      return true;
  return false;
}

/* The relative error between backward propagation and central differences
 * (parameters left as they were). With ReLU-like layers, first makes sure
 * that no Z lies so close to the kink that a perturbation could cross it,
 * which would make the numerical side meaningless, not the analytic one. */
static double gradient_check_error(const gradient_problem *p) {
  problem_cost(p);
  float epsilon = SMOOTH_EPSILON;
  if (has_kinks(p->model)) {
    epsilon = KINKED_EPSILON;
    float distance = smallest_kink_distance(p->model);
    cr_assert_gt(distance, KINK_MARGIN,
                 "a Z lies %g from the ReLU kink: pick another data seed",
                 (double)distance);
  }
  float *analytic = analytic_gradient(p);
  double *numerical = numerical_gradient(p, epsilon);
  double error =
      relative_error(numerical, analytic, nn_model_parameter_count(p->model));
  free(numerical);
  free(analytic);
  return error;
}

static void assert_gradients_match(const gradient_problem *p,
                                   const char *what) {
  double error = gradient_check_error(p);
  cr_log_info("%s: relative error %.3g", what, error);
  cr_assert_lt(error, GRADIENT_TOLERANCE,
               "%s: backward and central differences disagree, relative "
               "error %g",
               what, error);
}

/* ------------------------------------------------------------------------ */
/* Hidden activations: 3-5-4-2 with two sigmoid outputs and binary CE        */
/* ------------------------------------------------------------------------ */

static void check_hidden_activation(nn_activation hidden, uint64_t seed) {
  nn_context *ctx = support_cpu_context();
  const size_t widths[] = {3, 5, 4, 2};
  nn_model *model =
      support_model(ctx, widths, 3, hidden, NN_LOSS_BINARY_CROSS_ENTROPY);
  gradient_problem problem = make_problem(ctx, model, 7, 0.0f, seed);
  assert_gradients_match(&problem, nn_activation_name(hidden));
  destroy_problem(&problem);
}

Test(gradients, hidden_linear) {
  check_hidden_activation(NN_ACTIVATION_LINEAR, 11);
}

Test(gradients, hidden_relu) {
  check_hidden_activation(NN_ACTIVATION_RELU, 15);
}

Test(gradients, hidden_leaky_relu) {
  check_hidden_activation(NN_ACTIVATION_LEAKY_RELU, 136);
}

Test(gradients, hidden_tanh) {
  check_hidden_activation(NN_ACTIVATION_TANH, 14);
}

Test(gradients, hidden_sigmoid) {
  check_hidden_activation(NN_ACTIVATION_SIGMOID, 15);
}

Test(gradients, hidden_gelu) {
  check_hidden_activation(NN_ACTIVATION_GELU, 16);
}

Test(gradients, hidden_gelu_tanh) {
  check_hidden_activation(NN_ACTIVATION_GELU_TANH, 17);
}

/* ------------------------------------------------------------------------ */
/* Output and loss pairs: 3-5-4-n_y with tanh hidden layers                  */
/* ------------------------------------------------------------------------ */

static void check_output(nn_loss loss, size_t outputs, float l2_lambda,
                         uint64_t seed) {
  nn_context *ctx = support_cpu_context();
  const size_t widths[] = {3, 5, 4, outputs};
  nn_model *model = support_model(ctx, widths, 3, NN_ACTIVATION_TANH, loss);
  gradient_problem problem = make_problem(ctx, model, 7, l2_lambda, seed);
  assert_gradients_match(&problem, nn_loss_name(loss));
  destroy_problem(&problem);
}

Test(gradients, sigmoid_binary_cross_entropy_one_output) {
  check_output(NN_LOSS_BINARY_CROSS_ENTROPY, 1, 0.0f, 21);
}

Test(gradients, sigmoid_binary_cross_entropy_several_outputs) {
  check_output(NN_LOSS_BINARY_CROSS_ENTROPY, 3, 0.0f, 22);
}

Test(gradients, softmax_categorical_cross_entropy) {
  check_output(NN_LOSS_CATEGORICAL_CROSS_ENTROPY, 4, 0.0f, 23);
}

Test(gradients, linear_mean_squared_error) {
  check_output(NN_LOSS_MEAN_SQUARED_ERROR, 3, 0.0f, 24);
}

/* λ = 0.7 with m = 7: the (λ/m) W term is ~0.1 W, as large as the data
 * term, so a missing or mis-scaled L2 gradient cannot hide. */
Test(gradients, l2_regularization) {
  check_output(NN_LOSS_BINARY_CROSS_ENTROPY, 1, 0.7f, 25);
  check_output(NN_LOSS_CATEGORICAL_CROSS_ENTROPY, 3, 0.7f, 26);
  check_output(NN_LOSS_MEAN_SQUARED_ERROR, 2, 0.7f, 27);
}

/* Four hidden layers, each with a different smooth activation, and a
 * softmax output: dA[l-1] = W[l]ᵀ dZ[l] must chain through all of them. */
Test(gradients, deep_network) {
  nn_context *ctx = support_cpu_context();
  const size_t units[] = {6, 5, 5, 4, 3};
  const nn_activation activations[] = {
      NN_ACTIVATION_TANH, NN_ACTIVATION_GELU, NN_ACTIVATION_SIGMOID,
      NN_ACTIVATION_LINEAR, NN_ACTIVATION_SOFTMAX};
  nn_model *model = layered_model(ctx, 4, 5, units, activations,
                                  NN_LOSS_CATEGORICAL_CROSS_ENTROPY);
  gradient_problem problem = make_problem(ctx, model, 7, 0.1f, 31);
  assert_gradients_match(&problem, "deep network");
  destroy_problem(&problem);
}

/* Four ReLU hidden layers, where a wrong dead-unit mask would show. */
Test(gradients, deep_relu_network) {
  nn_context *ctx = support_cpu_context();
  const size_t widths[] = {4, 6, 5, 5, 4, 1};
  nn_model *model = support_model(ctx, widths, 5, NN_ACTIVATION_RELU,
                                  NN_LOSS_BINARY_CROSS_ENTROPY);
  gradient_problem problem = make_problem(ctx, model, 7, 0.0f, 8);
  assert_gradients_match(&problem, "deep relu network");
  destroy_problem(&problem);
}

/* ------------------------------------------------------------------------ */
/* The check has teeth                                                       */
/* ------------------------------------------------------------------------ */

/* A tanh 3-5-4-1 problem whose correct gradient passes the check. */
static gradient_problem tanh_problem(void) {
  nn_context *ctx = support_cpu_context();
  const size_t widths[] = {3, 5, 4, 1};
  nn_model *model = support_model(ctx, widths, 3, NN_ACTIVATION_TANH,
                                  NN_LOSS_BINARY_CROSS_ENTROPY);
  return make_problem(ctx, model, 7, 0.0f, 41);
}

/* dW[1] scaled by 1.1 — the layer farthest from the loss — must fail. */
Test(gradients, rejects_a_scaled_layer_gradient) {
  gradient_problem problem = tanh_problem();
  float *analytic = analytic_gradient(&problem);
  double *numerical = numerical_gradient(&problem, SMOOTH_EPSILON);
  const size_t count = nn_model_parameter_count(problem.model);
  cr_assert_lt(relative_error(numerical, analytic, count), GRADIENT_TOLERANCE);
  const size_t first_layer_weights = 5 * 3; /* W[1] opens the arena */
  for (size_t k = 0; k < first_layer_weights; k++)
    analytic[k] *= 1.1f;
  double error = relative_error(numerical, analytic, count);
  cr_assert_gt(error, GRADIENT_TOLERANCE,
               "a 10%% error in dW[1] passed the check (error %g)", error);
  free(numerical);
  free(analytic);
  destroy_problem(&problem);
}

/* Backward with the sigmoid derivative a(1 - a) on a tanh layer, whose
 * derivative is 1 - a²: the forward pass is right, only g' is wrong. The
 * layer's activation is swapped between forward and backward (a white-box
 * edit of the model, restored right after). */
Test(gradients, rejects_the_wrong_activation_derivative) {
  gradient_problem problem = tanh_problem();
  const size_t count = nn_model_parameter_count(problem.model);
  double *numerical = numerical_gradient(&problem, SMOOTH_EPSILON);
  nnlib_layer *first_hidden = &problem.model->layers[0];
  SUPPORT_OK(problem.ctx,
             nn_model_forward(problem.model, problem.x, problem.m, 0, NULL));
  first_hidden->activation = NN_ACTIVATION_SIGMOID;
  SUPPORT_OK(problem.ctx,
             nn_model_backward(problem.model, problem.y, problem.m, 0.0f));
  first_hidden->activation = NN_ACTIVATION_TANH;
  float *analytic = read_gradient(&problem);
  double error = relative_error(numerical, analytic, count);
  cr_assert_gt(error, GRADIENT_TOLERANCE,
               "the sigmoid derivative on a tanh layer passed (error %g)",
               error);
  free(analytic);
  free(numerical);
  destroy_problem(&problem);
}
