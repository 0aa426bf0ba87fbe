/*
 * test_fast_paths.c — the fast paths keep the semantics: TF32 and BF16
 * products against the plain fp32 path, with tolerances suited to each
 * precision, and training in each reaching the fp32 accuracy on a small
 * task; the per-step CUDA event times. The CPU computes in fp32 only and
 * says so. GPU tests skip without a CUDA device, saying so.
 *
 * Tolerances, as ||x_p − x_fp32|| / ||x_fp32|| over a whole output or
 * gradient: TF32 rounds the products' inputs to a 10-bit mantissa (unit
 * roundoff 2^-11 ≈ 5e-4), BF16 to 7 bits (2^-8 ≈ 4e-3); through three
 * layers of 64–256 products with fp32 accumulation the relative error stays
 * within a few unit roundoffs: 5e-3 for TF32, 3e-2 for BF16.
 */
#include "support.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define INPUTS 64
#define EXAMPLES 96

Test(fast_paths, precision_names_round_trip) {
  for (int p = 0; p < NN_PRECISION_COUNT; p++) {
    nn_precision back = NN_PRECISION_COUNT;
    cr_assert_eq(
        nn_precision_from_name(nn_precision_name((nn_precision)p), &back),
        NN_OK);
    cr_assert_eq(back, (nn_precision)p);
  }
  nn_precision out;
  cr_assert_eq(nn_precision_from_name("fp16", &out), NN_ERROR_INVALID_ARGUMENT);
  cr_assert_str_eq(nn_precision_name(NN_PRECISION_BF16), "bf16");
}

Test(fast_paths, cpu_computes_in_fp32_only) {
  nn_context *ctx = support_cpu_context();
  const size_t widths[] = {3, 4, 1};
  nn_model *model = support_model(ctx, widths, 2, NN_ACTIVATION_RELU,
                                  NN_LOSS_BINARY_CROSS_ENTROPY);
  cr_assert_eq(nn_model_set_precision(model, NN_PRECISION_BF16),
               NN_ERROR_UNSUPPORTED);
  cr_assert_not_null(strstr(nn_context_last_error(ctx), "fp32 only"), "%s",
                     nn_context_last_error(ctx));
  cr_assert_not_null(strstr(nn_context_last_error(ctx), "bf16"));
  cr_assert_eq(nn_model_set_precision(model, NN_PRECISION_TF32),
               NN_ERROR_UNSUPPORTED);
  cr_assert_eq(nn_model_set_precision(model, (nn_precision)7),
               NN_ERROR_INVALID_ARGUMENT);
  cr_assert_eq(nn_model_precision(model), NN_PRECISION_FP32);
  SUPPORT_OK(ctx, nn_model_set_precision(model, NN_PRECISION_FP32));
  nn_model_destroy(model);
  nn_context_destroy(ctx);
}

/* A backward pass reads the operand copies its forward pass made in the
 * model's precision, so setting a precision asks for a new forward pass. */
Test(fast_paths, a_precision_change_asks_for_a_new_forward_pass) {
  nn_context *ctx = support_cpu_context();
  const size_t widths[] = {3, 4, 1};
  nn_model *model = support_model(ctx, widths, 2, NN_ACTIVATION_RELU,
                                  NN_LOSS_BINARY_CROSS_ENTROPY);
  SUPPORT_OK(ctx, nn_model_init(model, NN_INIT_HE, 3));
  const float x[3 * 2] = {0.5f, -1.0f, 2.0f, 1.5f, 0.25f, -0.75f};
  const float y[2] = {1.0f, 0.0f};
  SUPPORT_OK(ctx, nn_model_forward(model, x, 2, 1, NULL));
  SUPPORT_OK(ctx, nn_model_set_precision(model, NN_PRECISION_FP32));
  cr_assert_eq(nn_model_backward(model, y, 2, 0.0f), NN_ERROR_STATE);
  cr_assert_not_null(strstr(nn_context_last_error(ctx), "forward"), "%s",
                     nn_context_last_error(ctx));
  SUPPORT_OK(ctx, nn_model_forward(model, x, 2, 1, NULL));
  SUPPORT_OK(ctx, nn_model_backward(model, y, 2, 0.0f));
  nn_model_destroy(model);
  nn_context_destroy(ctx);
}

/* ------------------------------------------------------------------------ */
/* On the GPU                                                                */
/* ------------------------------------------------------------------------ */

/* What one forward and backward pass gives: Ŷ and every dW, db. */
typedef struct pass_result {
  float yhat[10 * EXAMPLES];
  float *gradients[3];
  size_t gradient_count[3];
} pass_result;

static const size_t pass_widths[] = {INPUTS, 256, 128, 10};

static void run_pass(nn_model *model, nn_context *ctx, nn_precision precision,
                     const float *x, const float *y, pass_result *out) {
  SUPPORT_OK(ctx, nn_model_set_precision(model, precision));
  cr_assert_eq(nn_model_precision(model), precision);
  SUPPORT_OK(ctx, nn_model_forward(model, x, EXAMPLES, 1, out->yhat));
  SUPPORT_OK(ctx, nn_model_backward(model, y, EXAMPLES, 0.0f));
  for (size_t l = 1; l <= 3; l++) {
    size_t count = pass_widths[l] * pass_widths[l - 1] + pass_widths[l];
    out->gradients[l - 1] = calloc(count, sizeof(float));
    out->gradient_count[l - 1] = count;
    SUPPORT_OK(ctx, nn_model_get_layer_gradients(
                        model, l, out->gradients[l - 1],
                        out->gradients[l - 1] + count - pass_widths[l]));
  }
}

static void free_pass(pass_result *pass) {
  for (size_t l = 0; l < 3; l++)
    free(pass->gradients[l]);
}

/* One model, its outputs and gradients in each precision against fp32. */
Test(fast_paths, products_in_each_precision_are_close_to_fp32) {
  nn_context *ctx = support_gpu_context_or_skip();
  nn_model *model = support_model(ctx, pass_widths, 3, NN_ACTIVATION_RELU,
                                  NN_LOSS_CATEGORICAL_CROSS_ENTROPY);
  SUPPORT_OK(ctx, nn_model_init(model, NN_INIT_HE, 21));
  static float x[INPUTS * EXAMPLES], y[10 * EXAMPLES];
  support_rng rng = support_rng_seeded(4);
  for (size_t k = 0; k < INPUTS * EXAMPLES; k++)
    x[k] = (float)support_rng_gaussian(&rng);
  for (size_t j = 0; j < EXAMPLES; j++)
    y[j * 10 + j % 10] = 1.0f;
  static pass_result fp32, tf32, bf16;
  run_pass(model, ctx, NN_PRECISION_FP32, x, y, &fp32);
  run_pass(model, ctx, NN_PRECISION_TF32, x, y, &tf32);
  run_pass(model, ctx, NN_PRECISION_BF16, x, y, &bf16);
  /* Ŷ is off by about the unit roundoff of the inputs (2^-11 for tf32,
   * 2^-9 for bf16). The gradients are off by more, the further from the
   * output: dW = (1/m) dZ A_prevᵀ sums 96 examples' terms of either sign,
   * so the sum is smaller than its terms by about √96, while each term
   * carries the rounding of every product above it. On the CPU emulator
   * (inputs rounded to nearest, fp32 sums) the distances are tf32: Ŷ 4.9e-4,
   * layers 1-3: 2.1e-2, 7.0e-3, 4.6e-4; bf16: 4.0e-3, 4.7e-2, 2.6e-2,
   * 3.6e-3. The bounds leave room for hardware that truncates to tf32. */
  const struct {
    const char *name;
    const pass_result *pass;
    double yhat_tolerance, gradient_tolerance[3];
  } cases[] = {{"tf32", &tf32, 2e-3, {6e-2, 2e-2, 2e-3}},
               {"bf16", &bf16, 1.5e-2, {0.15, 8e-2, 1.5e-2}}};
  for (size_t c = 0; c < 2; c++) {
    double d = support_relative_distance(cases[c].pass->yhat, fp32.yhat,
                                         10 * EXAMPLES);
    cr_assert_leq(d, cases[c].yhat_tolerance, "%s: Ŷ off by %g", cases[c].name,
                  d);
    for (size_t l = 0; l < 3; l++) {
      d = support_relative_distance(cases[c].pass->gradients[l],
                                    fp32.gradients[l], fp32.gradient_count[l]);
      cr_assert_leq(d, cases[c].gradient_tolerance[l],
                    "%s: layer %zu gradients off by %g", cases[c].name, l + 1,
                    d);
    }
  }
  /* bf16 rounding of 64-wide random inputs cannot leave Ŷ exactly as is:
   * the path really ran in bf16. */
  cr_assert_gt(support_relative_distance(bf16.yhat, fp32.yhat, 10 * EXAMPLES),
               0.0);
  /* Back to fp32: the same bits as the first fp32 pass. */
  static pass_result again;
  run_pass(model, ctx, NN_PRECISION_FP32, x, y, &again);
  cr_assert_eq(memcmp(again.yhat, fp32.yhat, sizeof fp32.yhat), 0);
  free_pass(&fp32);
  free_pass(&tf32);
  free_pass(&bf16);
  free_pass(&again);
  nn_model_destroy(model);
  nn_context_destroy(ctx);
}

/* The course's planar flower data, 2-64-64-1 ReLU, Adam: the fp32 run on
 * the CPU reaches ~0.9 training accuracy; every precision on the GPU gets
 * within 0.03 of the GPU's fp32 run. */
static double planar_accuracy(nn_context *ctx, nn_precision precision) {
  nn_dataset *data = support_planar_data(ctx, 11);
  const size_t widths[] = {2, 64, 64, 1};
  nn_model *model = support_model(ctx, widths, 3, NN_ACTIVATION_RELU,
                                  NN_LOSS_BINARY_CROSS_ENTROPY);
  SUPPORT_OK(ctx, nn_model_init(model, NN_INIT_HE, 5));
  SUPPORT_OK(ctx, nn_model_set_precision(model, precision));
  nn_train_options options;
  nn_train_options_default(&options);
  options.optimizer.kind = NN_OPTIMIZER_ADAM;
  options.learning_rate = 0.01f;
  options.batch_size = 64;
  options.epochs = 150;
  options.seed = 2;
  SUPPORT_OK(ctx, nn_model_train(model, data, &options, NULL));
  nn_metrics metrics;
  SUPPORT_OK(ctx, nn_model_evaluate(model, data, &metrics));
  nn_model_destroy(model);
  nn_dataset_destroy(data);
  return metrics.accuracy;
}

Test(fast_paths, planar_task_learns_on_the_cpu) {
  nn_context *ctx = support_cpu_context();
  double accuracy = planar_accuracy(ctx, NN_PRECISION_FP32);
  cr_assert_geq(accuracy, 0.85, "fp32 accuracy %g", accuracy);
  nn_context_destroy(ctx);
}

Test(fast_paths, training_in_each_precision_reaches_fp32_accuracy) {
  nn_context *ctx = support_gpu_context_or_skip();
  double fp32 = planar_accuracy(ctx, NN_PRECISION_FP32);
  cr_assert_geq(fp32, 0.85, "fp32 accuracy %g", fp32);
  for (int p = NN_PRECISION_TF32; p < NN_PRECISION_COUNT; p++) {
    double accuracy = planar_accuracy(ctx, (nn_precision)p);
    cr_assert_geq(accuracy, fp32 - 0.03, "%s accuracy %g, fp32 %g",
                  nn_precision_name((nn_precision)p), accuracy, fp32);
  }
  nn_context_destroy(ctx);
}

/* Every update of the call is timed by CUDA events, and the times add up to
 * no more than the call's wall time. */
Test(fast_paths, gpu_step_times_are_event_intervals) {
  nn_context *ctx = support_gpu_context_or_skip();
  enum { m = 512, batch = 32, epochs = 3 };
  static float x[8 * m], y[m];
  support_rng rng = support_rng_seeded(9);
  for (size_t k = 0; k < 8 * m; k++)
    x[k] = (float)support_rng_uniform(&rng);
  for (size_t j = 0; j < m; j++)
    y[j] = x[8 * j] > 0.5f ? 1.0f : 0.0f;
  nn_dataset *data = NULL;
  SUPPORT_OK(ctx, nn_dataset_create(ctx, 8, 1, m, x, y, &data));
  const size_t widths[] = {8, 32, 1};
  nn_model *model = support_model(ctx, widths, 2, NN_ACTIVATION_RELU,
                                  NN_LOSS_BINARY_CROSS_ENTROPY);
  SUPPORT_OK(ctx, nn_model_init(model, NN_INIT_HE, 1));
  float times[epochs * m / batch];
  nn_train_options options;
  nn_train_options_default(&options);
  options.batch_size = batch;
  options.epochs = epochs;
  options.step_times_ms = times;
  options.step_times_capacity = epochs * m / batch;
  nn_train_summary summary;
  struct timespec start, end;
  clock_gettime(CLOCK_MONOTONIC, &start);
  SUPPORT_OK(ctx, nn_model_train(model, data, &options, &summary));
  clock_gettime(CLOCK_MONOTONIC, &end);
  double wall_ms = 1e3 * (double)(end.tv_sec - start.tv_sec) +
                   1e-6 * (double)(end.tv_nsec - start.tv_nsec);
  cr_assert_eq(summary.steps_timed, epochs * m / batch);
  double total = 0.0;
  for (size_t i = 0; i < summary.steps_timed; i++) {
    cr_assert(isfinite(times[i]) && times[i] > 0.0f, "step %zu: %g", i,
              (double)times[i]);
    total += times[i];
  }
  cr_assert_leq(total, wall_ms, "steps %g ms in a call of %g ms", total,
                wall_ms);
  nn_model_destroy(model);
  nn_dataset_destroy(data);
  nn_context_destroy(ctx);
}

/* ------------------------------------------------------------------------ */
/* Step graphs                                                               */
/* ------------------------------------------------------------------------ */

typedef struct graph_run {
  double epoch_costs[4];
  float parameters[2 * 64 + 64 + 64 * 64 + 64 + 64 + 1];
  nn_train_summary summary;
  /* When set, the callback runs two forward passes, each larger than any
   * before, at the end of the first three epochs. */
  bool grow_in_callback;
  nn_context *ctx;
  nn_model *model;
} graph_run;

/* Two reallocations of the activation arena between steps (the second
 * arena may take the first one's freed address). */
static void grow_twice(const graph_run *run, int epoch) {
  static float x[2 * 300];
  for (size_t k = 0; k < sizeof x / sizeof x[0]; k++)
    x[k] = (float)(k % 7) / 7.0f - 0.5f;
  const size_t first = 100 + 60 * (size_t)epoch;
  SUPPORT_OK(run->ctx, nn_model_forward(run->model, x, first, 0, NULL));
  SUPPORT_OK(run->ctx, nn_model_forward(run->model, x, first + 30, 0, NULL));
}

static int keep_epoch_cost(const nn_progress *progress, void *user_data) {
  graph_run *run = user_data;
  if (progress->epoch_end && progress->epoch < 4)
    run->epoch_costs[progress->epoch] = progress->cost;
  if (progress->epoch_end && run->grow_in_callback && progress->epoch < 3)
    grow_twice(run, (int)progress->epoch);
  return 0;
}

/* Planar data, 2-64-64-1, Adam with L2 and decay, batches of 64 with a
 * short last one (400 = 6 · 64 + 16): two graph shapes per buffer. */
static void train_planar(nn_context *ctx, nn_step_graphs graphs,
                         nn_data_placement placement, float dropout,
                         graph_run *out) {
  nn_dataset *data = support_planar_data(ctx, 3);
  nn_layer_spec layers[] = {{64, NN_ACTIVATION_RELU, dropout},
                            {64, NN_ACTIVATION_TANH, 0.0f},
                            {1, NN_ACTIVATION_SIGMOID, 0.0f}};
  nn_model_spec spec = {2, 3, layers, NN_LOSS_BINARY_CROSS_ENTROPY};
  nn_model *model = NULL;
  SUPPORT_OK(ctx, nn_model_create(ctx, &spec, &model));
  SUPPORT_OK(ctx, nn_model_init(model, NN_INIT_HE, 8));
  out->ctx = ctx;
  out->model = model;
  nn_train_options options;
  nn_train_options_default(&options);
  options.optimizer.kind = NN_OPTIMIZER_ADAM;
  options.learning_rate = 0.01f;
  options.decay_rate = 0.5f;
  options.l2_lambda = 0.01f;
  options.batch_size = 64;
  options.epochs = 4;
  options.step_graphs = graphs;
  options.data_placement = placement;
  options.callback = keep_epoch_cost;
  options.callback_user_data = out;
  SUPPORT_OK(ctx, nn_model_train(model, data, &options, &out->summary));
  cr_assert_eq(nn_model_parameter_count(model),
               sizeof out->parameters / sizeof(float));
  SUPPORT_OK(ctx, nn_model_get_parameters(model, out->parameters,
                                          nn_model_parameter_count(model)));
  nn_model_destroy(model);
  nn_dataset_destroy(data);
}

static void assert_same_run(const graph_run *a, const graph_run *b,
                            const char *what) {
  cr_assert_eq(memcmp(a->epoch_costs, b->epoch_costs, sizeof a->epoch_costs), 0,
               "%s: epoch costs differ", what);
  cr_assert_eq(memcmp(a->parameters, b->parameters, sizeof a->parameters), 0,
               "%s: parameters differ", what);
}

Test(fast_paths, cpu_runs_no_graphs) {
  nn_context *ctx = support_cpu_context();
  static graph_run run;
  train_planar(ctx, NN_STEP_GRAPHS_AUTO, NN_DATA_AUTO, 0.0f, &run);
  cr_assert_eq(run.summary.steps_graphed, 0);
  cr_assert_eq(run.summary.iterations_run, 4 * 7);
  nn_context_destroy(ctx);
}

/* The same bits with and without graphs, resident and streamed (each
 * with its own buffers to key graphs on), and the steps really graphed. */
Test(fast_paths, graphed_steps_give_the_bits_of_eager_ones) {
  nn_context *ctx = support_gpu_context_or_skip();
  static graph_run eager, graphed, streamed;
  train_planar(ctx, NN_STEP_GRAPHS_OFF, NN_DATA_RESIDENT, 0.0f, &eager);
  train_planar(ctx, NN_STEP_GRAPHS_AUTO, NN_DATA_RESIDENT, 0.0f, &graphed);
  train_planar(ctx, NN_STEP_GRAPHS_AUTO, NN_DATA_STREAMING, 0.0f, &streamed);
  cr_assert_eq(eager.summary.steps_graphed, 0);
  cr_assert_eq(graphed.summary.steps_graphed, 4 * 7,
               "every step of a resident run replays a graph");
  cr_assert_eq(streamed.summary.steps_graphed, 4 * 7);
  assert_same_run(&graphed, &eager, "resident, graphs against eager");
  assert_same_run(&streamed, &eager, "streamed, graphs against eager");
  nn_context_destroy(ctx);
}

/* A forward pass in the progress callback that regrows the activation
 * arena, twice between two steps: the graphs captured on the old arena
 * are not replayed (the new one may sit at the old address, with another
 * layout), new ones are captured, and the run keeps the eager bits. */
Test(fast_paths, graphs_follow_an_arena_regrown_in_the_callback) {
  nn_context *ctx = support_gpu_context_or_skip();
  static graph_run eager, grown;
  train_planar(ctx, NN_STEP_GRAPHS_OFF, NN_DATA_RESIDENT, 0.0f, &eager);
  grown.grow_in_callback = true;
  /* Streamed, so that the batches' device buffers (the feeder's) stay
   * where they were: only the arena moves. */
  train_planar(ctx, NN_STEP_GRAPHS_AUTO, NN_DATA_STREAMING, 0.0f, &grown);
  cr_assert_eq(grown.summary.steps_graphed, 4 * 7);
  assert_same_run(&grown, &eager, "regrown in the callback, against eager");
  nn_context_destroy(ctx);
}

/* Dropout masks come from cuRAND's host-side stream position, which a
 * replayed graph would freeze: those runs stay eager. */
Test(fast_paths, dropout_runs_stay_eager) {
  nn_context *ctx = support_gpu_context_or_skip();
  static graph_run run;
  train_planar(ctx, NN_STEP_GRAPHS_AUTO, NN_DATA_RESIDENT, 0.2f, &run);
  cr_assert_eq(run.summary.steps_graphed, 0);
  nn_context_destroy(ctx);
}

/* ------------------------------------------------------------------------ */
/* The bf16 copy of the parameters                                           */
/* ------------------------------------------------------------------------ */

/* In bf16 the products read a bf16 copy of the parameters, which the
 * optimizer step writes along with them; whatever else writes parameters
 * must leave the copy to be made again. Each check: the model's Ŷ after a
 * change has the bits of a fresh bf16 model given the same parameters. */
#define COPY_EXAMPLES 24

typedef struct copy_check {
  nn_context *ctx;
  float x[INPUTS * COPY_EXAMPLES], y[10 * COPY_EXAMPLES];
  float *parameters; /* scratch for one model's parameters */
  size_t count;
} copy_check;

static nn_model *bf16_model(copy_check *check) {
  nn_model *model =
      support_model(check->ctx, pass_widths, 3, NN_ACTIVATION_RELU,
                    NN_LOSS_CATEGORICAL_CROSS_ENTROPY);
  SUPPORT_OK(check->ctx, nn_model_init(model, NN_INIT_HE, 21));
  SUPPORT_OK(check->ctx, nn_model_set_precision(model, NN_PRECISION_BF16));
  return model;
}

/* The model's Ŷ against a fresh model's with its parameters. */
static void assert_copy_follows(copy_check *check, nn_model *model,
                                const char *after) {
  static float yhat[10 * COPY_EXAMPLES], fresh_yhat[10 * COPY_EXAMPLES];
  SUPPORT_OK(check->ctx,
             nn_model_get_parameters(model, check->parameters, check->count));
  SUPPORT_OK(check->ctx,
             nn_model_forward(model, check->x, COPY_EXAMPLES, 0, yhat));
  nn_model *fresh = bf16_model(check);
  SUPPORT_OK(check->ctx,
             nn_model_set_parameters(fresh, check->parameters, check->count));
  SUPPORT_OK(check->ctx,
             nn_model_forward(fresh, check->x, COPY_EXAMPLES, 0, fresh_yhat));
  cr_assert_eq(memcmp(yhat, fresh_yhat, sizeof yhat), 0,
               "after %s, Ŷ is not that of the parameters (off by %g)", after,
               support_relative_distance(yhat, fresh_yhat, 10 * COPY_EXAMPLES));
  nn_model_destroy(fresh);
}

Test(fast_paths, the_bf16_copy_follows_every_change_of_parameters) {
  static copy_check check;
  check.ctx = support_gpu_context_or_skip();
  support_rng rng = support_rng_seeded(8);
  for (size_t k = 0; k < INPUTS * COPY_EXAMPLES; k++)
    check.x[k] = (float)support_rng_gaussian(&rng);
  for (size_t j = 0; j < COPY_EXAMPLES; j++)
    check.y[j * 10 + j % 10] = 1.0f;
  nn_model *model = bf16_model(&check);
  check.count = nn_model_parameter_count(model);
  check.parameters = calloc(check.count, sizeof(float));
  cr_assert_not_null(check.parameters);
  nn_context *ctx = check.ctx;

  /* Adam steps: the copy the update wrote is the one a conversion makes. */
  const nn_optimizer_settings adam = {NN_OPTIMIZER_ADAM, 0.9f, 0.999f, 1e-8f};
  for (int step = 0; step < 3; step++) {
    SUPPORT_OK(ctx, nn_model_forward(model, check.x, COPY_EXAMPLES, 1, NULL));
    SUPPORT_OK(ctx, nn_model_backward(model, check.y, COPY_EXAMPLES, 0.01f));
    SUPPORT_OK(ctx, nn_model_update(model, &adam, 0.01f));
  }
  assert_copy_follows(&check, model, "Adam steps");

  /* New parameters, all at once and one layer's. */
  for (size_t k = 0; k < check.count; k++)
    check.parameters[k] = 0.5f * (float)support_rng_gaussian(&rng);
  SUPPORT_OK(ctx,
             nn_model_set_parameters(model, check.parameters, check.count));
  assert_copy_follows(&check, model, "nn_model_set_parameters");
  const size_t layer_2 = pass_widths[2] * pass_widths[1] + pass_widths[2];
  float *weights = calloc(layer_2, sizeof(float));
  for (size_t k = 0; k < layer_2; k++)
    weights[k] = 0.1f * (float)support_rng_gaussian(&rng);
  SUPPORT_OK(ctx, nn_model_set_layer_parameters(
                      model, 2, weights, weights + layer_2 - pass_widths[2]));
  assert_copy_follows(&check, model, "nn_model_set_layer_parameters");
  free(weights);
  SUPPORT_OK(ctx, nn_model_init(model, NN_INIT_XAVIER, 99));
  assert_copy_follows(&check, model, "nn_model_init");

  /* A run that diverges puts the parameters it started from back. */
  nn_dataset *data = NULL;
  SUPPORT_OK(ctx, nn_dataset_create(ctx, INPUTS, 10, COPY_EXAMPLES, check.x,
                                    check.y, &data));
  nn_train_options options;
  nn_train_options_default(&options);
  options.optimizer.kind = NN_OPTIMIZER_GD;
  options.learning_rate = 1e30f;
  options.epochs = 5;
  options.batch_size = 8;
  cr_assert_neq(nn_model_train(model, data, &options, NULL), NN_OK,
                "a learning rate of 1e30 diverges");
  assert_copy_follows(&check, model, "a diverged run");
  nn_dataset_destroy(data);

  free(check.parameters);
  nn_model_destroy(model);
  nn_context_destroy(ctx);
}
