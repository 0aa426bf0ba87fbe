/*
 * test_optimizers.c — each optimizer step against its formula (course 2):
 *   gd:       θ -= α g
 *   momentum: v = β1 v + (1-β1) g;  θ -= α v
 *   rmsprop:  s = β2 s + (1-β2) g²; θ -= α g / (√s + ε)
 *   adam:     v and s as above, t += 1, v̂ = v / (1-β1^t), ŝ = s / (1-β2^t);
 *             θ -= α v̂ / (√ŝ + ε)
 * over several successive steps, each with a freshly computed gradient, so
 * that the optimizer state and Adam's t carry from step to step. Then the
 * state's reset and the rejection of bad settings and of calls out of order.
 */
#include "support.h"

#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Non-default settings so that swapping β1 and β2, or putting ε inside the
 * square root (ε = 1e-3 against √ŝ ~ 0.05), changes the step by far more
 * than the tolerance. */
#define TEST_BETA1 0.8f
#define TEST_BETA2 0.95f
#define TEST_EPSILON 1e-3f
#define TEST_LEARNING_RATE 0.1f

/* A 3-4-2 tanh/linear network, its parameters and a batch of m = 5. */
typedef struct optimizer_fixture {
  nn_context *ctx;
  nn_model *model;
  size_t count; /* parameters */
  float x[3 * 5], y[2 * 5];
} optimizer_fixture;

enum { FIXTURE_EXAMPLES = 5 };

static float uniform_between(support_rng *rng, double low, double high) {
  return (float)(low + (high - low) * support_rng_uniform(rng));
}

static float *allocate_floats(size_t count) {
  float *values = calloc(count, sizeof *values);
  cr_assert_not_null(values);
  return values;
}

static optimizer_fixture *make_fixture(void) {
  optimizer_fixture *f = calloc(1, sizeof *f);
  cr_assert_not_null(f);
  f->ctx = support_cpu_context();
  const size_t widths[] = {3, 4, 2};
  f->model = support_model(f->ctx, widths, 2, NN_ACTIVATION_TANH,
                           NN_LOSS_MEAN_SQUARED_ERROR);
  f->count = nn_model_parameter_count(f->model);
  support_rng rng = support_rng_seeded(99);
  float *theta = allocate_floats(f->count);
  for (size_t k = 0; k < f->count; k++)
    theta[k] = uniform_between(&rng, -0.7, 0.7);
  SUPPORT_OK(f->ctx, nn_model_set_parameters(f->model, theta, f->count));
  free(theta);
  for (size_t k = 0; k < 3 * FIXTURE_EXAMPLES; k++)
    f->x[k] = uniform_between(&rng, -1.0, 1.0);
  for (size_t k = 0; k < 2 * FIXTURE_EXAMPLES; k++)
    f->y[k] = uniform_between(&rng, -1.0, 1.0);
  return f;
}

static void destroy_fixture(optimizer_fixture *f) {
  nn_model_destroy(f->model);
  nn_context_destroy(f->ctx);
  free(f);
}

static nn_optimizer_settings test_settings(nn_optimizer kind) {
  nn_optimizer_settings settings = {kind, TEST_BETA1, TEST_BETA2, TEST_EPSILON};
  return settings;
}

/* Forward and backward on the fixture's batch, then g in arena layout. */
static void compute_gradient(optimizer_fixture *f, float *gradient) {
  SUPPORT_OK(f->ctx,
             nn_model_forward(f->model, f->x, FIXTURE_EXAMPLES, 1, NULL));
  SUPPORT_OK(f->ctx, nn_model_backward(f->model, f->y, FIXTURE_EXAMPLES, 0.0f));
  float *cursor = gradient;
  for (size_t l = 1; l <= 2; l++) {
    size_t units = nn_model_layer_units(f->model, l);
    size_t weights = units * nn_model_layer_units(f->model, l - 1);
    SUPPORT_OK(f->ctx, nn_model_get_layer_gradients(f->model, l, cursor,
                                                    cursor + weights));
    cursor += weights + units;
  }
}

/* ------------------------------------------------------------------------ */
/* The reference optimizer, in double                                        */
/* ------------------------------------------------------------------------ */

typedef struct reference_optimizer {
  nn_optimizer_settings settings;
  float learning_rate;
  size_t count;
  double *velocity; /* v: momentum, Adam's first moment */
  double *squares;  /* s: RMSprop, Adam's second moment */
  unsigned step;    /* Adam's t */
} reference_optimizer;

static reference_optimizer make_reference(nn_optimizer kind, size_t count) {
  reference_optimizer r = {test_settings(kind),
                           TEST_LEARNING_RATE,
                           count,
                           calloc(count, sizeof(double)),
                           calloc(count, sizeof(double)),
                           0};
  cr_assert(r.velocity && r.squares);
  return r;
}

static void reset_reference(reference_optimizer *r) {
  for (size_t k = 0; k < r->count; k++)
    r->velocity[k] = r->squares[k] = 0.0;
  r->step = 0;
}

static void destroy_reference(reference_optimizer *r) {
  free(r->velocity);
  free(r->squares);
}

/* Advances the state by one step with gradient g; returns each parameter's
 * decrement in step[k]. */
static void reference_step(reference_optimizer *r, const float *gradient,
                           double *step) {
  const double b1 = r->settings.beta1, b2 = r->settings.beta2;
  const double eps = r->settings.epsilon, lr = r->learning_rate;
  r->step++;
  for (size_t k = 0; k < r->count; k++) {
    const double g = gradient[k];
    double *v = &r->velocity[k], *s = &r->squares[k];
    switch (r->settings.kind) {
    case NN_OPTIMIZER_GD:
      step[k] = lr * g;
      break;
    case NN_OPTIMIZER_MOMENTUM:
      *v = b1 * *v + (1.0 - b1) * g;
      step[k] = lr * *v;
      break;
    case NN_OPTIMIZER_RMSPROP:
      *s = b2 * *s + (1.0 - b2) * g * g;
      step[k] = lr * g / (sqrt(*s) + eps);
      break;
    default: { /* Adam */
      *v = b1 * *v + (1.0 - b1) * g;
      *s = b2 * *s + (1.0 - b2) * g * g;
      double v_hat = *v / (1.0 - pow(b1, r->step));
      double s_hat = *s / (1.0 - pow(b2, r->step));
      step[k] = lr * v_hat / (sqrt(s_hat) + eps);
      break;
    }
    }
  }
}

/* One step on the model and on the reference, comparing every parameter:
 * float32 state and parameters round at ~1e-7 of their size, far below
 * what any wrong term in the formula costs (>= 1% of the step). */
static void step_and_compare(optimizer_fixture *f, reference_optimizer *r,
                             const char *when) {
  float *gradient = allocate_floats(f->count);
  float *before = allocate_floats(f->count);
  float *after = allocate_floats(f->count);
  double *step = calloc(f->count, sizeof *step);
  cr_assert_not_null(step);
  compute_gradient(f, gradient);
  SUPPORT_OK(f->ctx, nn_model_get_parameters(f->model, before, f->count));
  SUPPORT_OK(f->ctx, nn_model_update(f->model, &r->settings, r->learning_rate));
  SUPPORT_OK(f->ctx, nn_model_get_parameters(f->model, after, f->count));
  reference_step(r, gradient, step);
  for (size_t k = 0; k < f->count; k++) {
    double expected = (double)before[k] - step[k];
    double tolerance = 1e-6 * fmax(1.0, fabs(expected)) + 1e-5 * fabs(step[k]);
    cr_assert(fabs(after[k] - expected) <= tolerance,
              "%s, %s step %u: θ[%zu] = %.9g, expected %.9g (g = %g)",
              nn_optimizer_name(r->settings.kind), when, r->step, k,
              (double)after[k], expected, (double)gradient[k]);
  }
  free(gradient);
  free(before);
  free(after);
  free(step);
}

/* Three successive steps: the state after step 1 and 2 feeds step 3. */
static void check_optimizer(nn_optimizer kind) {
  optimizer_fixture *f = make_fixture();
  reference_optimizer r = make_reference(kind, f->count);
  for (int step = 0; step < 3; step++)
    step_and_compare(f, &r, "successive");
  destroy_reference(&r);
  destroy_fixture(f);
}

Test(optimizers, gradient_descent_steps) {
  check_optimizer(NN_OPTIMIZER_GD);
}

Test(optimizers, momentum_steps) {
  check_optimizer(NN_OPTIMIZER_MOMENTUM);
}

Test(optimizers, rmsprop_steps) {
  check_optimizer(NN_OPTIMIZER_RMSPROP);
}

Test(optimizers, adam_steps_with_bias_correction) {
  check_optimizer(NN_OPTIMIZER_ADAM);
}

/* Two Adam steps with a reference whose β1 and β2 are swapped, or whose
 * bias correction is missing: at the second step (the first one is
 * invariant to β: v̂ = g, ŝ = g²) both are off by far more than the 1e-5
 * tolerance of step_and_compare, so the comparison can see such mistakes. */
Test(optimizers, reference_distinguishes_adam_variants) {
  const float first[] = {0.05f, -0.2f}, second[] = {0.1f, 0.02f};
  double correct[2], swapped[2];
  reference_optimizer r = make_reference(NN_OPTIMIZER_ADAM, 2);
  reference_step(&r, first, correct);
  reference_step(&r, second, correct);
  /* Without correction: α v / (√s + ε) with the same v and s. */
  double uncorrected =
      TEST_LEARNING_RATE * r.velocity[0] / (sqrt(r.squares[0]) + TEST_EPSILON);
  reset_reference(&r);
  r.settings.beta1 = TEST_BETA2;
  r.settings.beta2 = TEST_BETA1;
  reference_step(&r, first, swapped);
  reference_step(&r, second, swapped);
  for (size_t k = 0; k < 2; k++)
    cr_assert_gt(fabs(correct[k] - swapped[k]), 1e-2 * fabs(correct[k]),
                 "swapped betas: %g vs %g", swapped[k], correct[k]);
  cr_assert_gt(fabs(correct[0] - uncorrected), 1e-2 * fabs(correct[0]),
               "no bias correction: %g vs %g", uncorrected, correct[0]);
  destroy_reference(&r);
}

/* ------------------------------------------------------------------------ */
/* Resetting the state                                                       */
/* ------------------------------------------------------------------------ */

static void assert_state_is_zero(const nn_model *model) {
  cr_assert_eq(model->optimizer_step, 0, "t = %llu after a reset",
               (unsigned long long)model->optimizer_step);
  /* A moment never needed is not there at all: zero too. */
  for (size_t k = 0; k < model->parameter_count; k++) {
    const float v = model->first_moment ? model->first_moment[k] : 0.0f;
    const float s = model->second_moment ? model->second_moment[k] : 0.0f;
    cr_assert(v == 0.0f && s == 0.0f, "moment %zu is (%g, %g) after a reset", k,
              (double)v, (double)s);
  }
}

/* Each optimizer makes only the moments it uses, when a step first needs
 * them, and nn_model_memory_bytes counts what is there. */
Test(optimizers, moments_are_made_only_for_the_optimizers_that_use_them) {
  const struct {
    nn_optimizer kind;
    bool velocity, squares;
  } cases[] = {{NN_OPTIMIZER_GD, false, false},
               {NN_OPTIMIZER_MOMENTUM, true, false},
               {NN_OPTIMIZER_RMSPROP, false, true},
               {NN_OPTIMIZER_ADAM, true, true}};
  const size_t widths[] = {3, 4, 2};
  const float x[3 * 2] = {0.5f, -1.0f, 2.0f, 1.5f, 0.25f, -0.75f};
  const float y[2 * 2] = {1.0f, 0.0f, 0.0f, 1.0f};
  for (size_t c = 0; c < 4; c++) {
    nn_context *ctx = support_cpu_context();
    nn_model *model = support_model(ctx, widths, 2, NN_ACTIVATION_TANH,
                                    NN_LOSS_CATEGORICAL_CROSS_ENTROPY);
    SUPPORT_OK(ctx, nn_model_init(model, NN_INIT_HE, 1));
    cr_assert_null(model->first_moment, "no moment before a step");
    cr_assert_null(model->second_moment);
    const size_t arena = model->parameter_count * sizeof(float);
    SUPPORT_OK(ctx, nn_model_forward(model, x, 2, 1, NULL));
    SUPPORT_OK(ctx, nn_model_backward(model, y, 2, 0.0f));
    const size_t before = nn_model_memory_bytes(model);
    cr_assert_geq(before, 2 * arena, "parameters and gradients at least");
    const nn_optimizer_settings settings = test_settings(cases[c].kind);
    SUPPORT_OK(ctx, nn_model_update(model, &settings, 0.01f));
    const char *name = nn_optimizer_name(cases[c].kind);
    cr_assert_eq(model->first_moment != NULL, cases[c].velocity, "%s", name);
    cr_assert_eq(model->second_moment != NULL, cases[c].squares, "%s", name);
    const size_t moments =
        (cases[c].velocity ? 1 : 0) + (cases[c].squares ? 1 : 0);
    cr_assert_eq(nn_model_memory_bytes(model), before + moments * arena,
                 "%s: %zu bytes, %zu before the step", name,
                 nn_model_memory_bytes(model), before);
    nn_model_destroy(model);
    nn_context_destroy(ctx);
  }
}

/* Two steps, a reset, and the next step is a first step again: zero v and
 * s, and t = 1 for Adam's bias correction. */
static void check_reset(nn_optimizer kind) {
  optimizer_fixture *f = make_fixture();
  reference_optimizer r = make_reference(kind, f->count);
  step_and_compare(f, &r, "before reset");
  step_and_compare(f, &r, "before reset");
  SUPPORT_OK(f->ctx, nn_model_reset_optimizer(f->model));
  assert_state_is_zero(f->model);
  reset_reference(&r);
  step_and_compare(f, &r, "after reset");
  step_and_compare(f, &r, "after reset");
  destroy_reference(&r);
  destroy_fixture(f);
}

Test(optimizers, reset_momentum) {
  check_reset(NN_OPTIMIZER_MOMENTUM);
}

Test(optimizers, reset_rmsprop) {
  check_reset(NN_OPTIMIZER_RMSPROP);
}

Test(optimizers, reset_adam) {
  check_reset(NN_OPTIMIZER_ADAM);
}

/* New parameters make the old velocities meaningless: setting them resets
 * the state as nn_model_reset_optimizer does. */
Test(optimizers, setting_parameters_resets_state) {
  optimizer_fixture *f = make_fixture();
  reference_optimizer r = make_reference(NN_OPTIMIZER_ADAM, f->count);
  step_and_compare(f, &r, "before set");
  float bias[2] = {0.3f, -0.1f};
  SUPPORT_OK(f->ctx, nn_model_set_layer_parameters(f->model, 2, NULL, bias));
  assert_state_is_zero(f->model);
  reset_reference(&r);
  step_and_compare(f, &r, "after set");
  destroy_reference(&r);
  destroy_fixture(f);
}

/* ------------------------------------------------------------------------ */
/* Rejections                                                                */
/* ------------------------------------------------------------------------ */

/* An update that must fail with `expected`, leave the parameters alone and
 * say why, naming nn_model_update. */
static void expect_rejected(optimizer_fixture *f,
                            const nn_optimizer_settings *settings,
                            float learning_rate, nn_status expected,
                            const char *what) {
  float *before = allocate_floats(f->count);
  float *after = allocate_floats(f->count);
  SUPPORT_OK(f->ctx, nn_model_get_parameters(f->model, before, f->count));
  nn_context_clear_error(f->ctx);
  nn_status status = nn_model_update(f->model, settings, learning_rate);
  cr_assert_eq(status, expected, "%s: got %s, expected %s", what,
               nn_status_str(status), nn_status_str(expected));
  const char *message = nn_context_last_error(f->ctx);
  cr_assert(strstr(message, "nn_model_update") != NULL,
            "%s: message \"%s\" does not name the call", what, message);
  SUPPORT_OK(f->ctx, nn_model_get_parameters(f->model, after, f->count));
  cr_assert_arr_eq(before, after, f->count * sizeof *before,
                   "%s changed the parameters", what);
  free(before);
  free(after);
}

Test(optimizers, invalid_settings_are_rejected) {
  optimizer_fixture *f = make_fixture();
  float *gradient = allocate_floats(f->count);
  compute_gradient(f, gradient); /* so that only the settings are wrong */
  const nn_optimizer_settings good = test_settings(NN_OPTIMIZER_ADAM);
  enum { ADAM = NN_OPTIMIZER_ADAM };
  const struct {
    const char *what;
    float learning_rate, beta1, beta2, epsilon;
    int kind;
  } cases[] = {
      {"lr = 0", 0.0f, TEST_BETA1, TEST_BETA2, TEST_EPSILON, ADAM},
      {"lr < 0", -0.1f, TEST_BETA1, TEST_BETA2, TEST_EPSILON, ADAM},
      {"lr = NaN", NAN, TEST_BETA1, TEST_BETA2, TEST_EPSILON, ADAM},
      {"lr = inf", INFINITY, TEST_BETA1, TEST_BETA2, TEST_EPSILON, ADAM},
      {"beta1 = 1", 0.1f, 1.0f, TEST_BETA2, TEST_EPSILON, ADAM},
      {"beta1 < 0", 0.1f, -0.1f, TEST_BETA2, TEST_EPSILON, ADAM},
      {"beta1 = NaN", 0.1f, NAN, TEST_BETA2, TEST_EPSILON, ADAM},
      {"beta2 = 1", 0.1f, TEST_BETA1, 1.0f, TEST_EPSILON, ADAM},
      {"beta2 > 1", 0.1f, TEST_BETA1, 1.5f, TEST_EPSILON, ADAM},
      {"beta2 = NaN", 0.1f, TEST_BETA1, NAN, TEST_EPSILON, ADAM},
      {"epsilon = 0", 0.1f, TEST_BETA1, TEST_BETA2, 0.0f, ADAM},
      {"epsilon < 0", 0.1f, TEST_BETA1, TEST_BETA2, -1e-8f, ADAM},
      {"epsilon = NaN", 0.1f, TEST_BETA1, TEST_BETA2, NAN, ADAM},
      {"kind = count", 0.1f, TEST_BETA1, TEST_BETA2, TEST_EPSILON,
       NN_OPTIMIZER_COUNT},
      {"kind = -1", 0.1f, TEST_BETA1, TEST_BETA2, TEST_EPSILON, -1},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    nn_optimizer_settings settings = {(nn_optimizer)cases[c].kind,
                                      cases[c].beta1, cases[c].beta2,
                                      cases[c].epsilon};
    expect_rejected(f, &settings, cases[c].learning_rate,
                    NN_ERROR_INVALID_ARGUMENT, cases[c].what);
  }
  expect_rejected(f, NULL, 0.1f, NN_ERROR_INVALID_ARGUMENT, "NULL settings");
  /* The gradients are still there: a valid update goes through. */
  SUPPORT_OK(f->ctx, nn_model_update(f->model, &good, 0.1f));
  free(gradient);
  destroy_fixture(f);
}

/* No gradients to apply: on a fresh model, after a forward pass alone, and
 * after new parameters invalidated the last backward pass. */
Test(optimizers, update_before_backward_is_a_state_error) {
  optimizer_fixture *f = make_fixture();
  const nn_optimizer_settings gd = test_settings(NN_OPTIMIZER_GD);
  expect_rejected(f, &gd, 0.1f, NN_ERROR_STATE, "fresh model");
  SUPPORT_OK(f->ctx,
             nn_model_forward(f->model, f->x, FIXTURE_EXAMPLES, 1, NULL));
  expect_rejected(f, &gd, 0.1f, NN_ERROR_STATE, "forward only");
  SUPPORT_OK(f->ctx, nn_model_backward(f->model, f->y, FIXTURE_EXAMPLES, 0.0f));
  float bias[2] = {0.0f, 0.0f};
  SUPPORT_OK(f->ctx, nn_model_set_layer_parameters(f->model, 2, NULL, bias));
  expect_rejected(f, &gd, 0.1f, NN_ERROR_STATE, "after new parameters");
  destroy_fixture(f);
}
