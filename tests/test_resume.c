/*
 * test_resume.c — stopping training at a batch boundary and resuming gives
 * exactly the costs and parameters of an uninterrupted run: in memory (the
 * summary's state) and through a safetensors checkpoint.
 */
#include "support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EXAMPLES 50
#define FEATURES 3
#define EPOCHS 6
#define MAX_REPORTS 256

/* Every cost the callback saw, in order; optionally stops after a count. */
typedef struct cost_log {
  double costs[MAX_REPORTS];
  size_t iterations[MAX_REPORTS];
  int epoch_end[MAX_REPORTS];
  size_t count;
  size_t stop_at_iteration; /* 0: never */
} cost_log;

static int record(const nn_progress *progress, void *user_data) {
  cost_log *log = user_data;
  cr_assert_lt(log->count, MAX_REPORTS);
  log->costs[log->count] = progress->cost;
  log->iterations[log->count] = progress->iteration;
  log->epoch_end[log->count] = progress->epoch_end;
  log->count++;
  return !progress->epoch_end && log->stop_at_iteration &&
         progress->iteration == log->stop_at_iteration;
}

/* A fixed pseudo-random regression-ish binary task (X: 3 × 50). */
static nn_dataset *make_data(nn_context *ctx) {
  float x[FEATURES * EXAMPLES], y[EXAMPLES];
  unsigned state = 12345;
  for (size_t j = 0; j < EXAMPLES; j++) {
    float total = 0;
    for (size_t i = 0; i < FEATURES; i++) {
      state = state * 1103515245u + 12345u;
      x[j * FEATURES + i] = (float)((state >> 8) % 2000) / 1000.0f - 1.0f;
      total += x[j * FEATURES + i] * (float)(i + 1);
    }
    y[j] = total > 0 ? 1.0f : 0.0f;
  }
  nn_dataset *data = NULL;
  SUPPORT_OK(ctx, nn_dataset_create(ctx, FEATURES, 1, EXAMPLES, x, y, &data));
  return data;
}

/* 3-6-1 with dropout on the hidden layer, so the dropout stream is part of
 * what must resume exactly. */
static nn_model *make_model(nn_context *ctx) {
  nn_layer_spec layers[] = {{6, NN_ACTIVATION_TANH, 0.2f},
                            {1, NN_ACTIVATION_SIGMOID, 0.0f}};
  nn_model_spec spec = {FEATURES, 2, layers, NN_LOSS_BINARY_CROSS_ENTROPY};
  nn_model *model = NULL;
  SUPPORT_OK(ctx, nn_model_create(ctx, &spec, &model));
  SUPPORT_OK(ctx, nn_model_init(model, NN_INIT_XAVIER, 99));
  return model;
}

static void adam_options(nn_train_options *options, cost_log *log) {
  nn_train_options_default(options);
  options->optimizer.kind = NN_OPTIMIZER_ADAM;
  options->learning_rate = 0.01f;
  /* 40 training examples after the split: batches of 16, 16 and 8. */
  options->batch_size = 16;
  options->epochs = EPOCHS;
  options->seed = 5;
  options->l2_lambda = 0.01f;
  options->validation_fraction = 0.2;
  options->iteration_report_every = 1;
  options->callback = record;
  options->callback_user_data = log;
}

static void read_parameters(nn_context *ctx, nn_model *model, float **out) {
  size_t count = nn_model_parameter_count(model);
  *out = malloc(count * sizeof(float));
  cr_assert_not_null(*out);
  SUPPORT_OK(ctx, nn_model_get_parameters(model, *out, count));
}

/* The uninterrupted reference run. */
static void reference_run(nn_context *ctx, nn_dataset *data, cost_log *log,
                          float **parameters) {
  nn_model *model = make_model(ctx);
  nn_train_options options;
  adam_options(&options, log);
  SUPPORT_OK(ctx, nn_model_train(model, data, &options, NULL));
  read_parameters(ctx, model, parameters);
  nn_model_destroy(model);
}

/* The interrupted run's log followed by the resumed run's log must be the
 * reference log, entry for entry, bit for bit. */
static void assert_same_log(const cost_log *reference, const cost_log *first,
                            const cost_log *second) {
  cr_assert_eq(first->count + second->count, reference->count,
               "%zu + %zu reports, expected %zu", first->count, second->count,
               reference->count);
  for (size_t k = 0; k < reference->count; k++) {
    const cost_log *part = k < first->count ? first : second;
    size_t at = k < first->count ? k : k - first->count;
    cr_assert_eq(part->iterations[at], reference->iterations[k]);
    cr_assert_eq(part->epoch_end[at], reference->epoch_end[k]);
    cr_assert_eq(part->costs[at], reference->costs[k],
                 "report %zu: cost %.17g after resuming, %.17g uninterrupted",
                 k, part->costs[at], reference->costs[k]);
  }
}

static void assert_same_parameters(nn_context *ctx, nn_model *model,
                                   const float *expected) {
  float *actual = NULL;
  read_parameters(ctx, model, &actual);
  size_t count = nn_model_parameter_count(model);
  cr_assert_eq(memcmp(actual, expected, count * sizeof(float)), 0,
               "parameters differ from the uninterrupted run");
  free(actual);
}

#define CHECKPOINT_TEMPLATE "/tmp/nn_resume_XXXXXX.safetensors"

/* Saves model, options and state to a new file named from path (a
 * CHECKPOINT_TEMPLATE copy, filled in); the caller unlinks it. */
static void save_checkpoint(nn_context *ctx, nn_model *model,
                            const nn_train_options *options,
                            const nn_train_state *state, char *path) {
  int descriptor = mkstemps(path, (int)strlen(".safetensors"));
  cr_assert_geq(descriptor, 0);
  close(descriptor);
  SUPPORT_OK(ctx, nn_model_save(model, path, options, state));
}

/* Stops mid-epoch (after iteration 10, the first batch of epoch 3) and
 * continues from the summary's state in memory. */
Test(resume, in_memory_continuation_matches_uninterrupted_run) {
  nn_context *ctx = support_cpu_context();
  nn_dataset *data = make_data(ctx);
  cost_log reference = {0}, first = {.stop_at_iteration = 10}, second = {0};
  float *expected = NULL;
  reference_run(ctx, data, &reference, &expected);

  nn_model *model = make_model(ctx);
  nn_train_options options;
  adam_options(&options, &first);
  nn_train_summary summary;
  cr_assert_eq(nn_model_train(model, data, &options, &summary),
               NN_ERROR_STOPPED);
  cr_assert_eq(summary.state.iteration, 10);
  cr_assert_eq(summary.state.epoch, 3);
  cr_assert_eq(summary.state.batch, 1);

  nn_train_state state = summary.state;
  adam_options(&options, &second);
  options.resume = &state;
  SUPPORT_OK(ctx, nn_model_train(model, data, &options, &summary));
  assert_same_log(&reference, &first, &second);
  assert_same_parameters(ctx, model, expected);
  cr_assert_eq(summary.iterations_run,
               reference.iterations[reference.count - 1]);

  free(expected);
  nn_model_destroy(model);
  nn_dataset_destroy(data);
  nn_context_destroy(ctx);
}

/* Stops, saves a checkpoint with the state, loads it into a new model (a new
 * process would do the same) and continues. */
Test(resume, checkpoint_continuation_matches_uninterrupted_run) {
  nn_context *ctx = support_cpu_context();
  nn_dataset *data = make_data(ctx);
  cost_log reference = {0}, first = {.stop_at_iteration = 7}, second = {0};
  float *expected = NULL;
  reference_run(ctx, data, &reference, &expected);

  nn_model *model = make_model(ctx);
  nn_train_options options;
  adam_options(&options, &first);
  nn_train_summary summary;
  cr_assert_eq(nn_model_train(model, data, &options, &summary),
               NN_ERROR_STOPPED);
  char path[] = CHECKPOINT_TEMPLATE;
  save_checkpoint(ctx, model, &options, &summary.state, path);
  nn_model_destroy(model);

  nn_model *loaded = NULL;
  nn_train_options saved;
  nn_train_state state;
  int has_state = 0;
  SUPPORT_OK(ctx,
             nn_model_load(ctx, path, &loaded, &saved, &state, &has_state));
  cr_assert_eq(has_state, 1);
  cr_assert_eq(saved.optimizer.kind, NN_OPTIMIZER_ADAM);
  cr_assert_eq(saved.batch_size, 16);
  cr_assert_eq(saved.seed, 5);
  saved.callback = record;
  saved.callback_user_data = &second;
  saved.iteration_report_every = 1;
  saved.resume = &state;
  SUPPORT_OK(ctx, nn_model_train(loaded, data, &saved, NULL));
  assert_same_log(&reference, &first, &second);
  assert_same_parameters(ctx, loaded, expected);

  unlink(path);
  free(expected);
  nn_model_destroy(loaded);
  nn_dataset_destroy(data);
  nn_context_destroy(ctx);
}

Test(resume, rejects_a_state_that_does_not_fit_the_data) {
  nn_context *ctx = support_cpu_context();
  nn_dataset *data = make_data(ctx);
  nn_model *model = make_model(ctx);
  cost_log log = {0};
  nn_train_options options;
  adam_options(&options, &log);
  nn_train_state state = {.epoch = 1, .batch = 9, .best_validation_cost = NAN};
  options.resume = &state;
  cr_assert_eq(nn_model_train(model, data, &options, NULL),
               NN_ERROR_INVALID_ARGUMENT);
  cr_assert(strstr(nn_context_last_error(ctx), "batch 9"), "%s",
            nn_context_last_error(ctx));
  nn_model_destroy(model);
  nn_dataset_destroy(data);
  nn_context_destroy(ctx);
}

/* Random labels: the network overfits, so the best validation epoch comes
 * early and early stopping restores parameters from before an interruption
 * placed after it. The resumed run must restore the same ones. */
static nn_dataset *make_noise_data(nn_context *ctx) {
  float x[FEATURES * EXAMPLES], y[EXAMPLES];
  support_rng rng = support_rng_seeded(77);
  for (size_t k = 0; k < FEATURES * EXAMPLES; k++)
    x[k] = (float)support_rng_gaussian(&rng);
  for (size_t j = 0; j < EXAMPLES; j++)
    y[j] = support_rng_uniform(&rng) < 0.5 ? 1.0f : 0.0f;
  nn_dataset *data = NULL;
  SUPPORT_OK(ctx, nn_dataset_create(ctx, FEATURES, 1, EXAMPLES, x, y, &data));
  return data;
}

static void early_stopping_options(nn_train_options *options, cost_log *log) {
  adam_options(options, log);
  options->learning_rate = 0.05f;
  options->epochs = 60;
  options->early_stopping_patience = 8;
}

Test(resume, early_stopping_best_parameters_survive_a_checkpoint) {
  nn_context *ctx = support_cpu_context();
  nn_dataset *data = make_noise_data(ctx);
  cost_log reference = {0}, first = {0}, second = {0};

  nn_model *model = make_model(ctx);
  nn_train_options options;
  early_stopping_options(&options, &reference);
  nn_train_summary uninterrupted;
  SUPPORT_OK(ctx, nn_model_train(model, data, &options, &uninterrupted));
  cr_assert_eq(uninterrupted.stopped_early, 1, "the setup must overfit");
  float *expected = NULL;
  read_parameters(ctx, model, &expected);
  nn_model_destroy(model);

  /* Interrupt two epochs after the best one, mid-epoch. */
  first.stop_at_iteration = 3 * (uninterrupted.best_epoch + 2) + 2;
  model = make_model(ctx);
  early_stopping_options(&options, &first);
  nn_train_summary summary;
  cr_assert_eq(nn_model_train(model, data, &options, &summary),
               NN_ERROR_STOPPED);
  char path[] = CHECKPOINT_TEMPLATE;
  save_checkpoint(ctx, model, &options, &summary.state, path);
  nn_model_destroy(model);

  nn_model *loaded = NULL;
  nn_train_state state;
  SUPPORT_OK(ctx, nn_model_load(ctx, path, &loaded, NULL, &state, NULL));
  early_stopping_options(&options, &second);
  options.resume = &state;
  nn_train_summary resumed;
  SUPPORT_OK(ctx, nn_model_train(loaded, data, &options, &resumed));
  cr_assert_eq(resumed.best_epoch, uninterrupted.best_epoch);
  cr_assert_eq(resumed.epochs_run, uninterrupted.epochs_run);
  assert_same_parameters(ctx, loaded, expected);

  unlink(path);
  free(expected);
  nn_model_destroy(loaded);
  nn_dataset_destroy(data);
  nn_context_destroy(ctx);
}
