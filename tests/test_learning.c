/*
 * test_learning.c — does training learn, and does the scheduler do what
 * nn.h promises: classification (XOR, the course's planar flower, softmax
 * blobs), regression, every optimizer on mini-batches, L2, dropout,
 * learning-rate decay, the validation split with early stopping, the
 * progress callback, the full-batch loop step by step, chunked prediction.
 *
 * Data is drawn from the tests' own seeded generator (support_rng), so every
 * run sees the same examples; X is (n_x × m) column-major throughout.
 */
#include "support.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

/* Every report the progress callback received, in order. */
typedef struct progress_log {
  nn_progress *entries;
  size_t count, capacity;
  long stop_at_iteration; /* stop at the per-iteration report whose
                             iteration (updates done) is this; -1 */
  long stop_at_epoch_end; /* stop at this epoch's end report; -1 */
} progress_log;

static progress_log *progress_log_new(size_t capacity) {
  progress_log *log = calloc(1, sizeof *log);
  cr_assert_not_null(log);
  log->entries = calloc(capacity, sizeof *log->entries);
  cr_assert_not_null(log->entries);
  log->capacity = capacity;
  log->stop_at_iteration = -1;
  log->stop_at_epoch_end = -1;
  return log;
}

static void progress_log_free(progress_log *log) {
  free(log->entries);
  free(log);
}

static int record_progress(const nn_progress *progress, void *user_data) {
  progress_log *log = user_data;
  if (log->count < log->capacity)
    log->entries[log->count] = *progress;
  log->count++;
  if (!progress->epoch_end)
    return (long)progress->iteration == log->stop_at_iteration;
  return (long)progress->epoch == log->stop_at_epoch_end;
}

static void attach_log(nn_train_options *options, progress_log *log) {
  options->callback = record_progress;
  options->callback_user_data = log;
}

/* How many reports the log holds; fails the test if some did not fit. */
static size_t logged(const progress_log *log) {
  cr_assert_leq(log->count, log->capacity, "progress log overflowed");
  return log->count;
}

/* The epoch-end reports of a log, copied into a new array of *count. */
static nn_progress *epoch_reports(const progress_log *log, size_t *count) {
  logged(log);
  nn_progress *reports = calloc(log->count + 1, sizeof *reports);
  cr_assert_not_null(reports);
  *count = 0;
  for (size_t i = 0; i < log->count; i++)
    if (log->entries[i].epoch_end)
      reports[(*count)++] = log->entries[i];
  return reports;
}

/* A host copy of the whole parameter arena. */
static float *copy_parameters(nn_context *ctx, const nn_model *model) {
  size_t count = nn_model_parameter_count(model);
  float *values = malloc(count * sizeof *values);
  cr_assert_not_null(values);
  SUPPORT_OK(ctx, nn_model_get_parameters(model, values, count));
  return values;
}

static int same_parameters(nn_context *ctx, const nn_model *a,
                           const nn_model *b) {
  size_t count = nn_model_parameter_count(a);
  cr_assert_eq(count, nn_model_parameter_count(b));
  float *pa = copy_parameters(ctx, a), *pb = copy_parameters(ctx, b);
  int same = memcmp(pa, pb, count * sizeof *pa) == 0;
  free(pa);
  free(pb);
  return same;
}

/* Σ ||W[l]||² over every layer (biases excluded, as L2 excludes them). */
static double sum_squared_weights(nn_context *ctx, const nn_model *model) {
  double total = 0.0;
  for (size_t l = 1; l <= nn_model_layer_count(model); l++) {
    size_t count =
        nn_model_layer_units(model, l) * nn_model_layer_units(model, l - 1);
    float *weights = malloc(count * sizeof *weights);
    cr_assert_not_null(weights);
    SUPPORT_OK(ctx, nn_model_get_layer_parameters(model, l, weights, NULL));
    for (size_t k = 0; k < count; k++)
      total += (double)weights[k] * weights[k];
    free(weights);
  }
  return total;
}

/* A model from explicit layer specs (for dropout, which support_model does
 * not set). */
static nn_model *model_from_layers(nn_context *ctx, size_t input_width,
                                   const nn_layer_spec *layers,
                                   size_t layer_count, nn_loss loss) {
  nn_model_spec spec = {input_width, layer_count, layers, loss};
  nn_model *model = NULL;
  SUPPORT_OK(ctx, nn_model_create(ctx, &spec, &model));
  return model;
}

/* m points of 2-D Gaussian noise with random 0/1 labels: nothing to learn
 * but noise, so a wide network overfits and validation cost rises. */
static nn_dataset *random_label_dataset(nn_context *ctx, size_t m,
                                        uint64_t seed) {
  support_rng rng = support_rng_seeded(seed);
  float *x = malloc(2 * m * sizeof *x);
  int32_t *labels = malloc(m * sizeof *labels);
  cr_assert(x && labels);
  for (size_t j = 0; j < m; j++) {
    x[2 * j] = (float)support_rng_gaussian(&rng);
    x[2 * j + 1] = (float)support_rng_gaussian(&rng);
    labels[j] = support_rng_uniform(&rng) < 0.5 ? 0 : 1;
  }
  nn_dataset *data = NULL;
  SUPPORT_OK(ctx,
             nn_dataset_create_from_labels(ctx, 2, m, x, labels, 1, &data));
  free(x);
  free(labels);
  return data;
}

static double evaluate_accuracy(nn_context *ctx, nn_model *model,
                                const nn_dataset *data) {
  nn_metrics metrics;
  SUPPORT_OK(ctx, nn_model_evaluate(model, data, &metrics));
  return metrics.accuracy;
}

/* ------------------------------------------------------------------------ */
/* Classification                                                            */
/* ------------------------------------------------------------------------ */

Test(learning, xor_reaches_full_accuracy) {
  nn_context *ctx = support_cpu_context();
  const size_t widths[] = {2, 4, 1};
  nn_model *model = support_model(ctx, widths, 2, NN_ACTIVATION_TANH,
                                  NN_LOSS_BINARY_CROSS_ENTROPY);
  const float x[] = {0, 0, 0, 1, 1, 0, 1, 1}, y[] = {0, 1, 1, 0};
  nn_dataset *data = NULL;
  SUPPORT_OK(ctx, nn_dataset_create(ctx, 2, 1, 4, x, y, &data));
  SUPPORT_OK(ctx, nn_model_init(model, NN_INIT_XAVIER, 3));
  nn_train_options options;
  nn_train_options_default(&options);
  options.optimizer.kind = NN_OPTIMIZER_ADAM;
  options.learning_rate = 0.05f;
  options.epochs = 500;
  nn_train_summary summary;
  SUPPORT_OK(ctx, nn_model_train(model, data, &options, &summary));
  cr_assert_eq(summary.epochs_run, 500);
  cr_assert_eq(summary.iterations_run, 500, "full batch: one update/epoch");
  cr_assert_eq(evaluate_accuracy(ctx, model, data), 1.0);
  int32_t classes[4];
  SUPPORT_OK(ctx, nn_model_predict_classes(model, x, 4, classes));
  for (int j = 0; j < 4; j++)
    cr_assert_eq(classes[j], (int32_t)y[j], "example %d", j);
  nn_dataset_destroy(data);
  nn_model_destroy(model);
  nn_context_destroy(ctx);
}

/* The course's week-3 result: 4 tanh units, gd at α = 1.2, 10000
 * iterations, small normal init, about 90% on the flower. */
Test(learning, planar_flower_reaches_90_percent) {
  nn_context *ctx = support_cpu_context();
  nn_dataset *data = support_planar_data(ctx, 1);
  const size_t widths[] = {2, 4, 1};
  nn_model *model = support_model(ctx, widths, 2, NN_ACTIVATION_TANH,
                                  NN_LOSS_BINARY_CROSS_ENTROPY);
  SUPPORT_OK(ctx, nn_model_init(model, NN_INIT_NORMAL, 2));
  double before = evaluate_accuracy(ctx, model, data);
  nn_train_options options;
  nn_train_options_default(&options);
  options.learning_rate = 1.2f;
  options.epochs = 10000;
  nn_train_summary summary;
  SUPPORT_OK(ctx, nn_model_train(model, data, &options, &summary));
  double after = evaluate_accuracy(ctx, model, data);
  cr_assert_geq(after, 0.90, "accuracy %g (%g before training)", after, before);
  cr_assert_lt(summary.final_cost, 0.35, "cost %g", summary.final_cost);
  nn_dataset_destroy(data);
  nn_model_destroy(model);
  nn_context_destroy(ctx);
}

/* Three Gaussian blobs in 2-D; the softmax probabilities and the classes
 * predict_classes picks must agree. */
Test(learning, softmax_separates_three_blobs) {
  enum { m = 300, classes = 3 };
  static const double centers[classes][2] = {{0, 3}, {3, -2}, {-3, -2}};
  nn_context *ctx = support_cpu_context();
  support_rng rng = support_rng_seeded(7);
  float x[2 * m];
  int32_t labels[m];
  for (int j = 0; j < m; j++) {
    labels[j] = j % classes;
    x[2 * j] = (float)(centers[j % classes][0] + support_rng_gaussian(&rng));
    x[2 * j + 1] =
        (float)(centers[j % classes][1] + support_rng_gaussian(&rng));
  }
  nn_dataset *data = NULL;
  SUPPORT_OK(ctx,
             nn_dataset_create_from_labels(ctx, 2, m, x, labels, 3, &data));
  cr_assert_eq(nn_dataset_target_width(data), 3);
  const float *targets = nn_dataset_targets(data);
  for (int j = 0; j < m; j++)
    for (int k = 0; k < classes; k++)
      cr_assert_eq(targets[j * classes + k], k == labels[j] ? 1.0f : 0.0f);

  const size_t widths[] = {2, 8, classes};
  nn_model *model = support_model(ctx, widths, 2, NN_ACTIVATION_RELU,
                                  NN_LOSS_CATEGORICAL_CROSS_ENTROPY);
  SUPPORT_OK(ctx, nn_model_init(model, NN_INIT_HE, 5));
  nn_train_options options;
  nn_train_options_default(&options);
  options.optimizer.kind = NN_OPTIMIZER_ADAM;
  options.learning_rate = 0.01f;
  options.batch_size = 32;
  options.epochs = 40;
  SUPPORT_OK(ctx, nn_model_train(model, data, &options, NULL));
  double accuracy = evaluate_accuracy(ctx, model, data);
  cr_assert_geq(accuracy, 0.95, "accuracy %g", accuracy);

  float yhat[classes * m];
  int32_t predicted[m];
  SUPPORT_OK(ctx, nn_model_predict(model, x, m, yhat));
  SUPPORT_OK(ctx, nn_model_predict_classes(model, x, m, predicted));
  for (int j = 0; j < m; j++) {
    const float *column = yhat + j * classes;
    int argmax = 0;
    double total = 0.0;
    for (int k = 0; k < classes; k++) {
      argmax = column[k] > column[argmax] ? k : argmax;
      total += column[k];
      cr_assert(column[k] >= 0.0f && column[k] <= 1.0f);
    }
    cr_assert(support_close(total, 1.0, 1e-5), "column %d sums to %g", j,
              total);
    cr_assert_eq(predicted[j], argmax, "example %d", j);
  }
  nn_dataset_destroy(data);
  nn_model_destroy(model);
  nn_context_destroy(ctx);
}

/* ------------------------------------------------------------------------ */
/* Regression                                                                */
/* ------------------------------------------------------------------------ */

/* y = 3 x1 - 2 x2 + 0.5 + small noise: a 2-1 linear model must recover the
 * weights (least squares on 200 points with σ = 0.01 noise). */
Test(learning, linear_regression_recovers_weights) {
  enum { m = 200 };
  nn_context *ctx = support_cpu_context();
  support_rng rng = support_rng_seeded(11);
  float x[2 * m], y[m];
  for (int j = 0; j < m; j++) {
    x[2 * j] = (float)(2.0 * support_rng_uniform(&rng) - 1.0);
    x[2 * j + 1] = (float)(2.0 * support_rng_uniform(&rng) - 1.0);
    y[j] = 3.0f * x[2 * j] - 2.0f * x[2 * j + 1] + 0.5f +
           (float)(0.01 * support_rng_gaussian(&rng));
  }
  nn_dataset *data = NULL;
  SUPPORT_OK(ctx, nn_dataset_create(ctx, 2, 1, m, x, y, &data));
  const size_t widths[] = {2, 1};
  nn_model *model = support_model(ctx, widths, 1, NN_ACTIVATION_LINEAR,
                                  NN_LOSS_MEAN_SQUARED_ERROR);
  SUPPORT_OK(ctx, nn_model_init(model, NN_INIT_XAVIER, 1));
  nn_train_options options;
  nn_train_options_default(&options);
  options.learning_rate = 0.5f;
  options.epochs = 1000;
  SUPPORT_OK(ctx, nn_model_train(model, data, &options, NULL));
  float weights[2], bias[1];
  SUPPORT_OK(ctx, nn_model_get_layer_parameters(model, 1, weights, bias));
  cr_assert(fabsf(weights[0] - 3.0f) < 0.02f, "w1 = %g", weights[0]);
  cr_assert(fabsf(weights[1] + 2.0f) < 0.02f, "w2 = %g", weights[1]);
  cr_assert(fabsf(bias[0] - 0.5f) < 0.02f, "b = %g", bias[0]);
  nn_metrics metrics;
  SUPPORT_OK(ctx, nn_model_evaluate(model, data, &metrics));
  cr_assert(isnan(metrics.accuracy), "regression has no accuracy");
  cr_assert_lt(metrics.mse, 4e-4, "mse %g (noise variance is 1e-4)",
               metrics.mse);
  nn_dataset_destroy(data);
  nn_model_destroy(model);
  nn_context_destroy(ctx);
}

/* sin on [-π, π] by a 1-16-1 tanh network; the metrics agree with each
 * other and with a hand computation from nn_model_predict. */
Test(learning, sine_fit_by_tanh_network) {
  enum { m = 200 };
  nn_context *ctx = support_cpu_context();
  float x[m], y[m], yhat[m];
  for (int j = 0; j < m; j++) {
    x[j] = (float)(-M_PI + 2.0 * M_PI * j / (m - 1));
    y[j] = sinf(x[j]);
  }
  nn_dataset *data = NULL;
  SUPPORT_OK(ctx, nn_dataset_create(ctx, 1, 1, m, x, y, &data));
  const size_t widths[] = {1, 16, 1};
  nn_model *model = support_model(ctx, widths, 2, NN_ACTIVATION_TANH,
                                  NN_LOSS_MEAN_SQUARED_ERROR);
  SUPPORT_OK(ctx, nn_model_init(model, NN_INIT_XAVIER, 4));
  nn_metrics before;
  SUPPORT_OK(ctx, nn_model_evaluate(model, data, &before));
  nn_train_options options;
  nn_train_options_default(&options);
  options.optimizer.kind = NN_OPTIMIZER_ADAM;
  options.learning_rate = 0.01f;
  options.epochs = 8000;
  SUPPORT_OK(ctx, nn_model_train(model, data, &options, NULL));
  nn_metrics metrics;
  SUPPORT_OK(ctx, nn_model_evaluate(model, data, &metrics));
  cr_assert_lt(metrics.mse, 1e-3, "mse %g (before training %g)", metrics.mse,
               before.mse);
  cr_assert_lt(metrics.mae, 0.03, "mae %g", metrics.mae);

  /* mse, mae by hand; the cost is the notes' ½ mean squared error. */
  SUPPORT_OK(ctx, nn_model_predict(model, x, m, yhat));
  double squared = 0.0, absolute = 0.0;
  for (int j = 0; j < m; j++) {
    double diff = (double)yhat[j] - y[j];
    squared += diff * diff;
    absolute += fabs(diff);
  }
  cr_assert(support_close(metrics.mse, squared / m, 1e-6));
  cr_assert(support_close(metrics.mae, absolute / m, 1e-6));
  cr_assert(support_close(metrics.cost, 0.5 * metrics.mse, 1e-6),
            "cost %g, mse %g", metrics.cost, metrics.mse);
  nn_dataset_destroy(data);
  nn_model_destroy(model);
  nn_context_destroy(ctx);
}

/* ------------------------------------------------------------------------ */
/* Optimizers and regularization                                             */
/* ------------------------------------------------------------------------ */

/* Mini-batches of 64 on the flower: every optimizer lowers the epoch cost,
 * and each follows its own rule (the four end at different parameters). */
Test(learning, every_optimizer_lowers_minibatch_cost) {
  static const float rates[NN_OPTIMIZER_COUNT] = {0.5f, 0.5f, 0.01f, 0.01f};
  enum { epochs = 30, batch = 64 };
  nn_context *ctx = support_cpu_context();
  nn_dataset *data = support_planar_data(ctx, 3);
  const size_t widths[] = {2, 8, 1};
  float *finals[NN_OPTIMIZER_COUNT];
  size_t parameter_count = 0;
  for (int kind = 0; kind < NN_OPTIMIZER_COUNT; kind++) {
    nn_model *model = support_model(ctx, widths, 2, NN_ACTIVATION_TANH,
                                    NN_LOSS_BINARY_CROSS_ENTROPY);
    SUPPORT_OK(ctx, nn_model_init(model, NN_INIT_XAVIER, 9));
    nn_train_options options;
    nn_train_options_default(&options);
    options.optimizer.kind = (nn_optimizer)kind;
    options.learning_rate = rates[kind];
    options.batch_size = batch;
    options.epochs = epochs;
    progress_log *log = progress_log_new(1024);
    attach_log(&options, log);
    nn_train_summary summary;
    SUPPORT_OK(ctx, nn_model_train(model, data, &options, &summary));
    size_t per_epoch = (SUPPORT_PLANAR_EXAMPLES + batch - 1) / batch;
    cr_assert_eq(summary.iterations_run, epochs * per_epoch);
    size_t count = 0;
    nn_progress *reports = epoch_reports(log, &count);
    cr_assert_eq(count, epochs);
    double first = reports[0].cost, last = reports[count - 1].cost;
    cr_assert_lt(last, 0.8 * first, "%s: epoch cost %g -> %g",
                 nn_optimizer_name((nn_optimizer)kind), first, last);
    cr_assert_eq(summary.final_cost, last);
    finals[kind] = copy_parameters(ctx, model);
    parameter_count = nn_model_parameter_count(model);
    free(reports);
    progress_log_free(log);
    nn_model_destroy(model);
  }
  for (int a = 0; a < NN_OPTIMIZER_COUNT; a++)
    for (int b = a + 1; b < NN_OPTIMIZER_COUNT; b++)
      cr_assert_neq(
          memcmp(finals[a], finals[b], parameter_count * sizeof(float)), 0,
          "%s and %s ended at the same parameters",
          nn_optimizer_name((nn_optimizer)a),
          nn_optimizer_name((nn_optimizer)b));
  for (int kind = 0; kind < NN_OPTIMIZER_COUNT; kind++)
    free(finals[kind]);
  nn_dataset_destroy(data);
  nn_context_destroy(ctx);
}

/* Trains a fresh 2-16-1 net on the flower with the given L2 λ and returns
 * Σ||W||² afterwards. */
static double weights_after_training(nn_context *ctx, const nn_dataset *data,
                                     float l2_lambda) {
  const size_t widths[] = {2, 16, 1};
  nn_model *model = support_model(ctx, widths, 2, NN_ACTIVATION_TANH,
                                  NN_LOSS_BINARY_CROSS_ENTROPY);
  SUPPORT_OK(ctx, nn_model_init(model, NN_INIT_XAVIER, 21));
  nn_train_options options;
  nn_train_options_default(&options);
  options.optimizer.kind = NN_OPTIMIZER_ADAM;
  options.learning_rate = 0.02f;
  options.epochs = 300;
  options.l2_lambda = l2_lambda;
  SUPPORT_OK(ctx, nn_model_train(model, data, &options, NULL));
  double squares = sum_squared_weights(ctx, model);
  nn_model_destroy(model);
  return squares;
}

Test(learning, l2_regularization_shrinks_weights) {
  nn_context *ctx = support_cpu_context();
  nn_dataset *data = support_planar_data(ctx, 4);
  double plain = weights_after_training(ctx, data, 0.0f);
  double regularized = weights_after_training(ctx, data, 4.0f);
  cr_assert_lt(regularized, 0.8 * plain, "Σ||W||²: %g with L2, %g without",
               regularized, plain);
  nn_dataset_destroy(data);
  nn_context_destroy(ctx);
}

/* The reported cost includes (λ/2m) Σ||W||², and nn_model_cost agrees. */
Test(learning, l2_term_is_in_the_reported_cost) {
  const float lambda = 0.7f;
  nn_context *ctx = support_cpu_context();
  nn_dataset *data = support_planar_data(ctx, 5);
  const size_t m = nn_dataset_example_count(data);
  const size_t widths[] = {2, 6, 1};
  nn_model *model = support_model(ctx, widths, 2, NN_ACTIVATION_TANH,
                                  NN_LOSS_BINARY_CROSS_ENTROPY);
  SUPPORT_OK(ctx, nn_model_init(model, NN_INIT_HE, 8));
  float plain = 0.0f, regularized = 0.0f;
  const float *x = nn_dataset_inputs(data), *y = nn_dataset_targets(data);
  SUPPORT_OK(ctx, nn_model_forward(model, x, m, 0, NULL));
  SUPPORT_OK(ctx, nn_model_cost(model, y, m, 0.0f, &plain));
  SUPPORT_OK(ctx, nn_model_cost(model, y, m, lambda, &regularized));
  double penalty = lambda / (2.0 * m) * sum_squared_weights(ctx, model);
  cr_assert_gt(penalty, 1e-3, "the check needs a visible penalty");
  cr_assert(support_close(regularized, plain + penalty, 1e-5),
            "J with L2 %g, without %g, penalty %g", regularized, plain,
            penalty);

  nn_train_options options;
  nn_train_options_default(&options);
  options.epochs = 1;
  options.l2_lambda = lambda;
  options.iteration_report_every = 1;
  progress_log *log = progress_log_new(8);
  attach_log(&options, log);
  SUPPORT_OK(ctx, nn_model_train(model, data, &options, NULL));
  cr_assert_eq(log->count, 2, "one iteration report, one epoch report");
  cr_assert(support_close(log->entries[0].cost, regularized, 1e-5),
            "reported %g, nn_model_cost %g", log->entries[0].cost, regularized);
  progress_log_free(log);
  nn_dataset_destroy(data);
  nn_model_destroy(model);
  nn_context_destroy(ctx);
}

/* ------------------------------------------------------------------------ */
/* Dropout                                                                   */
/* ------------------------------------------------------------------------ */

/* 2-32-1 with dropout 0.2 on the hidden layer trains; the same seed gives
 * the same run, another seed other masks and so other parameters. */
Test(learning, dropout_model_trains_reproducibly) {
  nn_context *ctx = support_cpu_context();
  nn_dataset *data = support_planar_data(ctx, 6);
  const nn_layer_spec layers[] = {{32, NN_ACTIVATION_RELU, 0.2f},
                                  {1, NN_ACTIVATION_SIGMOID, 0.0f}};
  nn_model *models[3];
  for (int i = 0; i < 3; i++) {
    models[i] =
        model_from_layers(ctx, 2, layers, 2, NN_LOSS_BINARY_CROSS_ENTROPY);
    SUPPORT_OK(ctx, nn_model_init(models[i], NN_INIT_HE, 12));
    nn_train_options options;
    nn_train_options_default(&options);
    options.optimizer.kind = NN_OPTIMIZER_ADAM;
    options.learning_rate = 0.01f;
    options.batch_size = 100;
    options.epochs = 30;
    options.seed = i == 2 ? 99 : 1;
    progress_log *log = progress_log_new(64);
    attach_log(&options, log);
    SUPPORT_OK(ctx, nn_model_train(models[i], data, &options, NULL));
    size_t count = 0;
    nn_progress *reports = epoch_reports(log, &count);
    cr_assert_lt(reports[count - 1].cost, 0.8 * reports[0].cost,
                 "epoch cost %g -> %g", reports[0].cost,
                 reports[count - 1].cost);
    free(reports);
    progress_log_free(log);
  }
  cr_assert(same_parameters(ctx, models[0], models[1]),
            "the same seed must give the same masks and parameters");
  cr_assert_not(same_parameters(ctx, models[0], models[2]),
                "another seed must give other masks");
  for (int i = 0; i < 3; i++)
    nn_model_destroy(models[i]);
  nn_dataset_destroy(data);
  nn_context_destroy(ctx);
}

/* A probe whose output is the dropped-out hidden layer itself:
 * x (1 × m) = 1, W[1] = 1, b[1] = 0 so Z[1] = A[1] = 1 (relu, > 0); then
 * dropout; then a linear layer with W[2] = I, b[2] = 0, so Ŷ = A[1] after
 * dropout, (width × m). */
static nn_model *dropout_probe(nn_context *ctx, size_t width, float p) {
  const nn_layer_spec layers[] = {{width, NN_ACTIVATION_RELU, p},
                                  {width, NN_ACTIVATION_LINEAR, 0.0f}};
  nn_model *model =
      model_from_layers(ctx, 1, layers, 2, NN_LOSS_MEAN_SQUARED_ERROR);
  float *ones = malloc(width * sizeof *ones);
  float *identity = calloc(width * width, sizeof *identity);
  cr_assert(ones && identity);
  for (size_t i = 0; i < width; i++) {
    ones[i] = 1.0f;
    identity[i * width + i] = 1.0f;
  }
  SUPPORT_OK(ctx, nn_model_set_layer_parameters(model, 1, ones, NULL));
  SUPPORT_OK(ctx, nn_model_set_layer_parameters(model, 2, identity, NULL));
  free(ones);
  free(identity);
  return model;
}

Test(learning, dropout_masks_follow_the_probability) {
  enum { width = 500, m = 20, count = width * m };
  const float p = 0.3f, keep = 1.0f - p;
  nn_context *ctx = support_cpu_context();
  nn_model *model = dropout_probe(ctx, width, p);
  float x[m];
  for (int j = 0; j < m; j++)
    x[j] = 1.0f;
  float *first = malloc(count * sizeof *first);
  float *second = malloc(count * sizeof *second);
  cr_assert(first && second);

  /* Inference: no dropout, deterministic. */
  SUPPORT_OK(ctx, nn_model_forward(model, x, m, 0, first));
  SUPPORT_OK(ctx, nn_model_forward(model, x, m, 0, second));
  for (int k = 0; k < count; k++)
    cr_assert_eq(first[k], 1.0f, "inference must not drop (element %d)", k);
  cr_assert_eq(memcmp(first, second, count * sizeof *first), 0);

  /* Training: a fraction p dropped, the rest scaled by 1/keep. */
  SUPPORT_OK(ctx, nn_model_seed_dropout(model, 5));
  SUPPORT_OK(ctx, nn_model_forward(model, x, m, 1, first));
  SUPPORT_OK(ctx, nn_model_forward(model, x, m, 1, second));
  size_t zeros = 0;
  double total = 0.0;
  for (int k = 0; k < count; k++) {
    cr_assert(first[k] == 0.0f || support_close(first[k], 1.0 / keep, 1e-6),
              "element %d is %g, neither 0 nor 1/keep", k, first[k]);
    zeros += first[k] == 0.0f;
    total += first[k];
  }
  /* Binomial(10000, 0.3): σ of the fraction ≈ 0.0046; allow 5σ. */
  double fraction = (double)zeros / count;
  cr_assert(fabs(fraction - p) < 0.023, "dropped fraction %g, p = %g", fraction,
            (double)p);
  cr_assert(fabs(total / count - 1.0) < 0.05,
            "inverted dropout keeps the mean: %g", total / count);
  cr_assert_neq(memcmp(first, second, count * sizeof *first), 0,
                "two training passes must draw different masks");

  /* Reseeding replays the masks. */
  SUPPORT_OK(ctx, nn_model_seed_dropout(model, 5));
  SUPPORT_OK(ctx, nn_model_forward(model, x, m, 1, second));
  cr_assert_eq(memcmp(first, second, count * sizeof *first), 0,
               "the same dropout seed must give the same mask");
  free(first);
  free(second);
  nn_model_destroy(model);
  nn_context_destroy(ctx);
}

/* Backward through dropout uses the forward pass's mask. With the probe,
 * y = 0: dZ[2] = Ŷ = D (the mask, 0 or 1/keep); dA[1] = I·dZ[2];
 * dZ[1] = dA[1]·D·relu'(1) = D²; dW[1] = db[1] = (1/m) Σ_j D². */
Test(learning, dropout_backward_applies_the_mask) {
  enum { width = 64, m = 10, count = width * m };
  nn_context *ctx = support_cpu_context();
  nn_model *model = dropout_probe(ctx, width, 0.5f);
  float x[m], y[count], mask[count], dw[width], db[width];
  for (int j = 0; j < m; j++)
    x[j] = 1.0f;
  memset(y, 0, sizeof y);
  SUPPORT_OK(ctx, nn_model_seed_dropout(model, 3));
  SUPPORT_OK(ctx, nn_model_forward(model, x, m, 1, mask));
  SUPPORT_OK(ctx, nn_model_backward(model, y, m, 0.0f));
  SUPPORT_OK(ctx, nn_model_get_layer_gradients(model, 1, dw, db));
  for (int i = 0; i < width; i++) {
    double expected = 0.0;
    for (int j = 0; j < m; j++)
      expected += (double)mask[j * width + i] * mask[j * width + i];
    expected /= m;
    cr_assert(support_close(dw[i], expected, 1e-5), "dW[%d] %g vs %g", i, dw[i],
              expected);
    cr_assert(support_close(db[i], expected, 1e-5), "db[%d] %g vs %g", i, db[i],
              expected);
  }
  nn_model_destroy(model);
  nn_context_destroy(ctx);
}

/* Backward after an inference pass (training = 0) differentiates what that
 * pass computed: no mask. With the probe and y = 0: Ŷ = A[1] = 1, so
 * dZ[1] = 1 and dW[1] = db[1] = 1 — both on a fresh model (whose mask
 * buffer holds zeros) and after a training pass (whose mask is stale). */
Test(learning, backward_after_inference_ignores_the_mask) {
  enum { width = 64, m = 10, count = width * m };
  nn_context *ctx = support_cpu_context();
  nn_model *model = dropout_probe(ctx, width, 0.5f);
  float x[m], y[count], yhat[count], dw[width], db[width];
  for (int j = 0; j < m; j++)
    x[j] = 1.0f;
  memset(y, 0, sizeof y);
  for (int trained_before = 0; trained_before < 2; trained_before++) {
    if (trained_before) {
      SUPPORT_OK(ctx, nn_model_seed_dropout(model, 3));
      SUPPORT_OK(ctx, nn_model_forward(model, x, m, 1, NULL));
    }
    SUPPORT_OK(ctx, nn_model_forward(model, x, m, 0, yhat));
    SUPPORT_OK(ctx, nn_model_backward(model, y, m, 0.0f));
    SUPPORT_OK(ctx, nn_model_get_layer_gradients(model, 1, dw, db));
    for (int i = 0; i < width; i++) {
      cr_assert_eq(yhat[i], 1.0f, "inference output %g", (double)yhat[i]);
      cr_assert(support_close(dw[i], 1.0, 1e-6) &&
                    support_close(db[i], 1.0, 1e-6),
                "trained before: %d, dW[%d] %g, db[%d] %g (expected 1)",
                trained_before, i, (double)dw[i], i, (double)db[i]);
    }
  }
  nn_model_destroy(model);
  nn_context_destroy(ctx);
}

/* ------------------------------------------------------------------------ */
/* The scheduler                                                             */
/* ------------------------------------------------------------------------ */

/* α_e = α / (1 + decay · e) is what the callback sees at every epoch. */
Test(learning, learning_rate_decay_schedule) {
  enum { epochs = 20 };
  const float alpha = 0.3f, decay = 0.37f;
  nn_context *ctx = support_cpu_context();
  nn_dataset *data = support_planar_data(ctx, 2);
  const size_t widths[] = {2, 3, 1};
  nn_model *model = support_model(ctx, widths, 2, NN_ACTIVATION_TANH,
                                  NN_LOSS_BINARY_CROSS_ENTROPY);
  SUPPORT_OK(ctx, nn_model_init(model, NN_INIT_XAVIER, 1));
  nn_train_options options;
  nn_train_options_default(&options);
  options.learning_rate = alpha;
  options.decay_rate = decay;
  options.epochs = epochs;
  options.batch_size = 100;
  options.iteration_report_every = 1;
  progress_log *log = progress_log_new(256);
  attach_log(&options, log);
  SUPPORT_OK(ctx, nn_model_train(model, data, &options, NULL));
  cr_assert_eq(log->count, epochs * 5, "4 iteration + 1 epoch report each");
  for (size_t i = 0; i < logged(log); i++) {
    const nn_progress *entry = &log->entries[i];
    double expected = alpha / (1.0 + decay * (double)entry->epoch);
    cr_assert(support_close(entry->learning_rate, expected, 1e-6),
              "epoch %zu: rate %g, expected %g", entry->epoch,
              entry->learning_rate, expected);
  }
  progress_log_free(log);
  nn_dataset_destroy(data);
  nn_model_destroy(model);
  nn_context_destroy(ctx);
}

/* Full batch: one update per epoch, each reported cost is J before that
 * update, and the run equals the notes' loop written out by hand with
 * nn_model_forward / cost / backward / update at α / (1 + decay · e). */
Test(learning, full_batch_loop_matches_manual_steps) {
  enum { epochs = 6 };
  const float alpha = 0.5f, decay = 0.5f; /* 1 + 0.5 e is exact */
  nn_context *ctx = support_cpu_context();
  nn_dataset *data = support_planar_data(ctx, 8);
  const size_t m = nn_dataset_example_count(data);
  const float *x = nn_dataset_inputs(data), *y = nn_dataset_targets(data);
  const size_t widths[] = {2, 5, 3, 1};
  nn_model *trained = support_model(ctx, widths, 3, NN_ACTIVATION_TANH,
                                    NN_LOSS_BINARY_CROSS_ENTROPY);
  nn_model *manual = support_model(ctx, widths, 3, NN_ACTIVATION_TANH,
                                   NN_LOSS_BINARY_CROSS_ENTROPY);
  SUPPORT_OK(ctx, nn_model_init(trained, NN_INIT_XAVIER, 17));
  SUPPORT_OK(ctx, nn_model_init(manual, NN_INIT_XAVIER, 17));

  nn_train_options options;
  nn_train_options_default(&options);
  options.learning_rate = alpha;
  options.decay_rate = decay;
  options.epochs = epochs;
  options.iteration_report_every = 1;
  progress_log *log = progress_log_new(64);
  attach_log(&options, log);
  nn_train_summary summary;
  SUPPORT_OK(ctx, nn_model_train(trained, data, &options, &summary));
  cr_assert_eq(summary.iterations_run, epochs);
  cr_assert_eq(summary.epochs_run, epochs);

  size_t iteration = 0;
  for (size_t i = 0; i < logged(log); i++) {
    const nn_progress *entry = &log->entries[i];
    if (entry->epoch_end) {
      cr_assert_eq(entry->iteration, iteration, "epoch report: updates done");
      continue;
    }
    cr_assert_eq(entry->iteration, iteration + 1, "updates done so far");
    cr_assert_eq(entry->epoch, iteration, "full batch: one update/epoch");
    float cost = 0.0f;
    SUPPORT_OK(ctx, nn_model_forward(manual, x, m, 1, NULL));
    SUPPORT_OK(ctx, nn_model_cost(manual, y, m, 0.0f, &cost));
    cr_assert(support_close(entry->cost, cost, 1e-6),
              "iteration %zu: reported %g, by hand %g", iteration, entry->cost,
              cost);
    SUPPORT_OK(ctx, nn_model_backward(manual, y, m, 0.0f));
    float rate = alpha / (1.0f + decay * (float)iteration);
    SUPPORT_OK(ctx, nn_model_update(manual, &options.optimizer, rate));
    iteration++;
  }
  cr_assert_eq(iteration, epochs);
  cr_assert(same_parameters(ctx, trained, manual),
            "training and the hand-written loop must agree bit for bit");
  progress_log_free(log);
  nn_dataset_destroy(data);
  nn_model_destroy(trained);
  nn_model_destroy(manual);
  nn_context_destroy(ctx);
}

/* With validation_fraction 0.25 of 100 examples, 25 are held out: batches
 * of 25 make 3 updates per epoch, and epoch reports carry a finite
 * validation cost and metric; per-iteration reports and runs without a
 * split carry NAN. */
Test(learning, validation_split_reports_validation_cost) {
  enum { m = 100, epochs = 4 };
  nn_context *ctx = support_cpu_context();
  support_rng rng = support_rng_seeded(13);
  float x[m], y[m];
  for (int j = 0; j < m; j++) {
    x[j] = (float)support_rng_gaussian(&rng);
    y[j] = 2.0f * x[j] + 1.0f;
  }
  nn_dataset *data = NULL;
  SUPPORT_OK(ctx, nn_dataset_create(ctx, 1, 1, m, x, y, &data));
  const size_t widths[] = {1, 1};
  for (int split = 0; split <= 1; split++) {
    nn_model *model = support_model(ctx, widths, 1, NN_ACTIVATION_LINEAR,
                                    NN_LOSS_MEAN_SQUARED_ERROR);
    nn_train_options options;
    nn_train_options_default(&options);
    options.learning_rate = 0.05f;
    options.batch_size = 25;
    options.epochs = epochs;
    options.validation_fraction = split ? 0.25 : 0.0;
    options.iteration_report_every = 1;
    progress_log *log = progress_log_new(64);
    attach_log(&options, log);
    nn_train_summary summary;
    SUPPORT_OK(ctx, nn_model_train(model, data, &options, &summary));
    cr_assert_eq(summary.iterations_run, epochs * (split ? 3 : 4));
    for (size_t i = 0; i < logged(log); i++) {
      const nn_progress *entry = &log->entries[i];
      if (!split || !entry->epoch_end) {
        cr_assert(isnan(entry->validation_cost) &&
                  isnan(entry->validation_metric));
        continue;
      }
      cr_assert(isfinite(entry->validation_cost) &&
                entry->validation_cost > 0.0);
      /* For regression the metric is the MSE: twice the ½-squared cost. */
      cr_assert(support_close(entry->validation_metric,
                              2.0 * entry->validation_cost, 1e-6),
                "metric %g, cost %g", entry->validation_metric,
                entry->validation_cost);
    }
    cr_assert_eq(isnan(summary.best_validation_cost), !split);
    progress_log_free(log);
    nn_model_destroy(model);
  }
  nn_dataset_destroy(data);
  nn_context_destroy(ctx);
}

/* Options for the overfitting run: a wide net memorizing random labels,
 * a quarter held out. */
static nn_train_options overfit_options(size_t epochs, size_t patience) {
  nn_train_options options;
  nn_train_options_default(&options);
  options.optimizer.kind = NN_OPTIMIZER_ADAM;
  options.learning_rate = 0.02f;
  options.epochs = epochs;
  options.validation_fraction = 0.25;
  options.early_stopping_patience = patience;
  return options;
}

static nn_model *overfit_model(nn_context *ctx) {
  const size_t widths[] = {2, 64, 1};
  nn_model *model = support_model(ctx, widths, 2, NN_ACTIVATION_RELU,
                                  NN_LOSS_BINARY_CROSS_ENTROPY);
  SUPPORT_OK(ctx, nn_model_init(model, NN_INIT_HE, 31));
  return model;
}

/* Random labels: the validation cost bottoms out early and then rises, so
 * training stops `patience` epochs after the best one, keeps the best
 * epoch's parameters, and the summary names that epoch and its cost. */
Test(learning, early_stopping_restores_the_best_epoch) {
  enum { epochs = 1000, patience = 15 };
  nn_context *ctx = support_cpu_context();
  nn_dataset *data = random_label_dataset(ctx, 80, 41);
  nn_model *model = overfit_model(ctx);
  nn_train_options options = overfit_options(epochs, patience);
  progress_log *log = progress_log_new(epochs * 2);
  attach_log(&options, log);
  nn_train_summary summary;
  SUPPORT_OK(ctx, nn_model_train(model, data, &options, &summary));
  cr_assert_eq(summary.stopped_early, 1);
  cr_assert_lt(summary.epochs_run, epochs);
  cr_assert_eq(summary.epochs_run, summary.best_epoch + patience + 1,
               "stops once %d epochs pass without improvement", patience);

  size_t count = 0;
  nn_progress *reports = epoch_reports(log, &count);
  cr_assert_eq(count, summary.epochs_run);
  size_t best = 0;
  for (size_t e = 0; e < count; e++) {
    cr_assert(isfinite(reports[e].validation_cost));
    best =
        reports[e].validation_cost < reports[best].validation_cost ? e : best;
  }
  cr_assert_eq(summary.best_epoch, best);
  cr_assert_eq(summary.best_validation_cost, reports[best].validation_cost);

  /* The same run cut at best_epoch + 1 epochs ends at the restored
   * parameters; the run cut where early stopping stopped does not. */
  nn_model *at_best = overfit_model(ctx);
  nn_train_options replay = overfit_options(best + 1, 0);
  SUPPORT_OK(ctx, nn_model_train(at_best, data, &replay, NULL));
  cr_assert(same_parameters(ctx, model, at_best),
            "early stopping must restore the best epoch's parameters");
  nn_model *at_stop = overfit_model(ctx);
  replay = overfit_options(summary.epochs_run, 0);
  SUPPORT_OK(ctx, nn_model_train(at_stop, data, &replay, NULL));
  cr_assert_not(same_parameters(ctx, model, at_stop));

  free(reports);
  progress_log_free(log);
  nn_model_destroy(at_best);
  nn_model_destroy(at_stop);
  nn_model_destroy(model);
  nn_dataset_destroy(data);
  nn_context_destroy(ctx);
}

static nn_model *stoppable_model(nn_context *ctx) {
  const size_t widths[] = {2, 4, 1};
  nn_model *model = support_model(ctx, widths, 2, NN_ACTIVATION_TANH,
                                  NN_LOSS_BINARY_CROSS_ENTROPY);
  SUPPORT_OK(ctx, nn_model_init(model, NN_INIT_XAVIER, 6));
  return model;
}

static nn_train_options stoppable_options(size_t epochs) {
  nn_train_options options;
  nn_train_options_default(&options);
  options.learning_rate = 0.1f;
  options.batch_size = 40; /* 10 updates per epoch of 400 */
  options.epochs = epochs;
  options.iteration_report_every = 1;
  return options;
}

/* Returning non-zero from the per-iteration report after update k (its
 * iteration field, updates done so far) stops at once: k updates,
 * NN_ERROR_STOPPED, a message saying so, no more callbacks. */
Test(learning, callback_stops_training_mid_epoch) {
  const long k = 14;
  nn_context *ctx = support_cpu_context();
  nn_dataset *data = support_planar_data(ctx, 9);
  nn_model *model = stoppable_model(ctx);
  float *initial = copy_parameters(ctx, model);
  nn_train_options options = stoppable_options(5);
  progress_log *log = progress_log_new(128);
  log->stop_at_iteration = k;
  attach_log(&options, log);
  nn_train_summary summary;
  nn_status status = nn_model_train(model, data, &options, &summary);
  cr_assert_eq(status, NN_ERROR_STOPPED, "%s", nn_status_str(status));
  cr_assert_eq(summary.iterations_run, (size_t)k);
  cr_assert_eq(summary.epochs_run, 1, "one whole epoch before the stop");
  /* Reports after updates 1..10, the epoch report, then after 11..14. */
  cr_assert_eq(log->count, 15);
  const char *message = nn_context_last_error(ctx);
  cr_assert(strstr(message, "stopped") && strstr(message, "14"), "\"%s\"",
            message);
  float *after = copy_parameters(ctx, model);
  cr_assert_neq(
      memcmp(initial, after, nn_model_parameter_count(model) * sizeof(float)),
      0, "the parameters of the last update are kept");
  free(initial);
  free(after);
  progress_log_free(log);
  nn_model_destroy(model);
  nn_dataset_destroy(data);
  nn_context_destroy(ctx);
}

/* Stopping at the end of epoch 2 leaves exactly the parameters of an
 * uninterrupted 3-epoch run. */
Test(learning, callback_stops_training_at_epoch_end) {
  nn_context *ctx = support_cpu_context();
  nn_dataset *data = support_planar_data(ctx, 9);
  nn_model *stopped = stoppable_model(ctx);
  nn_train_options options = stoppable_options(10);
  progress_log *log = progress_log_new(256);
  log->stop_at_epoch_end = 2;
  attach_log(&options, log);
  nn_train_summary summary;
  cr_assert_eq(nn_model_train(stopped, data, &options, &summary),
               NN_ERROR_STOPPED);
  cr_assert_eq(summary.epochs_run, 3);
  cr_assert_eq(summary.iterations_run, 30);
  nn_model *complete = stoppable_model(ctx);
  nn_train_options three = stoppable_options(3);
  SUPPORT_OK(ctx, nn_model_train(complete, data, &three, NULL));
  cr_assert(same_parameters(ctx, stopped, complete));
  progress_log_free(log);
  nn_model_destroy(stopped);
  nn_model_destroy(complete);
  nn_dataset_destroy(data);
  nn_context_destroy(ctx);
}

/* ------------------------------------------------------------------------ */
/* Prediction                                                                */
/* ------------------------------------------------------------------------ */

/* m = 10000 is more than one prediction chunk: the chunked result equals
 * each example predicted alone, predict_classes agrees with argmax, and
 * evaluate's cost and accuracy equal a hand computation over all chunks. */
Test(learning, predict_large_m_matches_one_at_a_time) {
  enum { m = 10000, nx = 3, ny = 4 };
  nn_context *ctx = support_cpu_context();
  const size_t widths[] = {nx, 5, ny};
  nn_model *model = support_model(ctx, widths, 2, NN_ACTIVATION_TANH,
                                  NN_LOSS_CATEGORICAL_CROSS_ENTROPY);
  SUPPORT_OK(ctx, nn_model_init(model, NN_INIT_XAVIER, 77));
  float *x = malloc((size_t)nx * m * sizeof *x);
  float *yhat = malloc((size_t)ny * m * sizeof *yhat);
  int32_t *classes = malloc(m * sizeof *classes);
  int32_t *labels = malloc(m * sizeof *labels);
  cr_assert(x && yhat && classes && labels);
  support_rng rng = support_rng_seeded(17);
  for (size_t k = 0; k < (size_t)nx * m; k++)
    x[k] = (float)(3.0 * support_rng_gaussian(&rng));
  for (size_t j = 0; j < m; j++)
    labels[j] = (int32_t)(support_rng_uniform(&rng) * ny); /* not periodic */
  SUPPORT_OK(ctx, nn_model_predict(model, x, m, yhat));
  SUPPORT_OK(ctx, nn_model_predict_classes(model, x, m, classes));
  double log_loss = 0.0;
  size_t correct = 0;
  for (size_t j = 0; j < m; j++) {
    float alone[ny];
    SUPPORT_OK(ctx, nn_model_predict(model, x + j * nx, 1, alone));
    int argmax = 0;
    for (int i = 0; i < ny; i++) {
      cr_assert(support_close(yhat[j * ny + i], alone[i], 1e-5),
                "example %zu, output %d: %g in bulk, %g alone", j, i,
                yhat[j * ny + i], alone[i]);
      argmax = yhat[j * ny + i] > yhat[j * ny + argmax] ? i : argmax;
    }
    cr_assert_eq(classes[j], argmax, "example %zu", j);
    log_loss -= log(yhat[j * ny + labels[j]]);
    correct += argmax == labels[j];
  }

  nn_dataset *data = NULL;
  SUPPORT_OK(ctx,
             nn_dataset_create_from_labels(ctx, nx, m, x, labels, ny, &data));
  nn_metrics metrics;
  SUPPORT_OK(ctx, nn_model_evaluate(model, data, &metrics));
  cr_assert(support_close(metrics.cost, log_loss / m, 1e-5),
            "evaluate cost %g, by hand %g", metrics.cost, log_loss / m);
  cr_assert_eq(metrics.accuracy, (double)correct / m);
  nn_dataset_destroy(data);
  free(x);
  free(yhat);
  free(classes);
  free(labels);
  nn_model_destroy(model);
  nn_context_destroy(ctx);
}
