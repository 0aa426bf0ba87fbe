/*
 * test_train_controls.c — what the training loop promises about reading
 * costs late (the step log), max_iterations, stop_request and step times:
 * reading the costs of many steps at once changes no cost and no parameter;
 * a run ends exactly where it was told to and resumes from there.
 */
#include "support.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* 300 batches of 4: more than the scheduler's step log holds, so the log
 * fills (and is read) within an epoch. */
#define EXAMPLES 1200
#define BATCH 4
#define BATCHES (EXAMPLES / BATCH)
#define EPOCHS 2
#define MAX_REPORTS (EPOCHS * (BATCHES + 1))

typedef struct report_log {
  double iteration_cost[EPOCHS * BATCHES + 1]; /* by iteration; NAN unseen */
  double epoch_cost[EPOCHS];
  size_t reports;
  size_t raise_at; /* set *stop_flag after this iteration (0: never) */
  volatile sig_atomic_t *stop_flag;
} report_log;

static int record(const nn_progress *progress, void *user_data) {
  report_log *log = user_data;
  cr_assert_lt(log->reports, (size_t)MAX_REPORTS);
  log->reports++;
  if (progress->epoch_end)
    log->epoch_cost[progress->epoch] = progress->cost;
  else
    log->iteration_cost[progress->iteration] = progress->cost;
  if (log->raise_at && progress->iteration == log->raise_at)
    *log->stop_flag = 1;
  return 0;
}

static void clear_log(report_log *log) {
  memset(log, 0, sizeof *log);
  for (size_t i = 0; i <= EPOCHS * BATCHES; i++)
    log->iteration_cost[i] = NAN;
  for (size_t e = 0; e < EPOCHS; e++)
    log->epoch_cost[e] = NAN;
}

/* A seeded binary task: X (4 × 1200), y = [x0 + x1 > x2 + x3]. */
static nn_dataset *make_data(nn_context *ctx) {
  static float x[4 * EXAMPLES], y[EXAMPLES];
  support_rng rng = support_rng_seeded(17);
  for (size_t j = 0; j < EXAMPLES; j++) {
    for (size_t i = 0; i < 4; i++)
      x[4 * j + i] = (float)support_rng_uniform(&rng);
    y[j] = x[4 * j] + x[4 * j + 1] > x[4 * j + 2] + x[4 * j + 3] ? 1.0f : 0.0f;
  }
  nn_dataset *data = NULL;
  SUPPORT_OK(ctx, nn_dataset_create(ctx, 4, 1, EXAMPLES, x, y, &data));
  return data;
}

static nn_model *make_model(nn_context *ctx) {
  const size_t widths[] = {4, 5, 1};
  nn_model *model = support_model(ctx, widths, 2, NN_ACTIVATION_TANH,
                                  NN_LOSS_BINARY_CROSS_ENTROPY);
  SUPPORT_OK(ctx, nn_model_init(model, NN_INIT_XAVIER, 7));
  return model;
}

/* Adam with L2, so that the record's per-layer Σ W² is read late too. */
static nn_train_options make_options(report_log *log, size_t every) {
  nn_train_options options;
  nn_train_options_default(&options);
  options.optimizer.kind = NN_OPTIMIZER_ADAM;
  options.learning_rate = 0.01f;
  options.l2_lambda = 0.05f;
  options.batch_size = BATCH;
  options.epochs = EPOCHS;
  options.seed = 3;
  options.iteration_report_every = every;
  options.callback = record;
  options.callback_user_data = log;
  return options;
}

typedef struct trained {
  report_log log;
  nn_train_summary summary;
  float parameters[5 * 4 + 5 + 5 + 1];
} trained;

/* Trains a fresh model with these options; keeps the reports, the summary
 * and the parameters. */
static nn_status train_fresh(nn_train_options options, trained *out) {
  nn_context *ctx = support_cpu_context();
  nn_dataset *data = make_data(ctx);
  nn_model *model = make_model(ctx);
  cr_assert_eq(nn_model_parameter_count(model),
               sizeof out->parameters / sizeof(float));
  options.callback_user_data = &out->log;
  nn_status status = nn_model_train(model, data, &options, &out->summary);
  SUPPORT_OK(ctx, nn_model_get_parameters(model, out->parameters,
                                          nn_model_parameter_count(model)));
  nn_model_destroy(model);
  nn_dataset_destroy(data);
  nn_context_destroy(ctx);
  return status;
}

Test(train_controls, late_cost_reads_change_no_cost_and_no_parameter) {
  static trained every_step, every_seventh, epochs_only;
  clear_log(&every_step.log);
  clear_log(&every_seventh.log);
  clear_log(&epochs_only.log);
  cr_assert_eq(train_fresh(make_options(NULL, 1), &every_step), NN_OK);
  cr_assert_eq(train_fresh(make_options(NULL, 7), &every_seventh), NN_OK);
  cr_assert_eq(train_fresh(make_options(NULL, 0), &epochs_only), NN_OK);
  cr_assert_eq(every_step.log.reports, EPOCHS * (BATCHES + 1));
  cr_assert_eq(epochs_only.log.reports, EPOCHS);
  for (size_t e = 0; e < EPOCHS; e++) {
    double cost = every_step.log.epoch_cost[e];
    cr_assert(isfinite(cost) && cost > 0.0);
    cr_assert_eq(every_seventh.log.epoch_cost[e], cost, "epoch %zu", e);
    cr_assert_eq(epochs_only.log.epoch_cost[e], cost, "epoch %zu", e);
  }
  for (size_t i = 1; i <= EPOCHS * BATCHES; i++) {
    double cost = every_step.log.iteration_cost[i];
    cr_assert(isfinite(cost), "iteration %zu was not reported", i);
    if (i % 7 == 0)
      cr_assert_eq(every_seventh.log.iteration_cost[i], cost, "iteration %zu",
                   i);
    else
      cr_assert(isnan(every_seventh.log.iteration_cost[i]));
  }
  cr_assert_eq(memcmp(every_step.parameters, epochs_only.parameters,
                      sizeof every_step.parameters),
               0);
  cr_assert_eq(memcmp(every_step.parameters, every_seventh.parameters,
                      sizeof every_step.parameters),
               0);
}

/* 300 + 50 updates: the run ends within epoch 2 with NN_OK and a state that
 * resumes into the uninterrupted run. */
Test(train_controls, max_iterations_ends_within_an_epoch_and_resumes) {
  static trained whole, limited;
  clear_log(&whole.log);
  clear_log(&limited.log);
  cr_assert_eq(train_fresh(make_options(NULL, 1), &whole), NN_OK);
  nn_train_options options = make_options(NULL, 1);
  options.max_iterations = BATCHES + 50;
  cr_assert_eq(train_fresh(options, &limited), NN_OK);
  const nn_train_summary *summary = &limited.summary;
  cr_assert_eq(summary->iterations_run, BATCHES + 50);
  cr_assert_eq(summary->epochs_run, 1);
  cr_assert_eq(summary->state.epoch, 1);
  cr_assert_eq(summary->state.batch, 50);
  cr_assert(isnan(limited.log.iteration_cost[BATCHES + 51]));
  /* final_cost: the mean over the 50 batches of epoch 2 that ran. */
  double sum = 0.0;
  for (size_t i = BATCHES + 1; i <= BATCHES + 50; i++)
    sum += whole.log.iteration_cost[i] * BATCH;
  cr_assert(support_close(summary->final_cost, sum / (50 * BATCH), 1e-12),
            "final cost %.17g, expected %.17g", summary->final_cost,
            sum / (50 * BATCH));
  cr_assert(support_close(summary->state.epoch_cost_sum, sum, 1e-12));

  /* Resume in the same model: the rest of the uninterrupted run. */
  nn_context *ctx = support_cpu_context();
  nn_dataset *data = make_data(ctx);
  nn_model *model = make_model(ctx);
  report_log rest;
  clear_log(&rest);
  options = make_options(&rest, 1);
  options.max_iterations = BATCHES + 50;
  nn_train_summary first;
  SUPPORT_OK(ctx, nn_model_train(model, data, &options, &first));
  options.max_iterations = 0;
  options.resume = &first.state;
  nn_train_summary second;
  SUPPORT_OK(ctx, nn_model_train(model, data, &options, &second));
  cr_assert_eq(second.iterations_run, EPOCHS * BATCHES);
  cr_assert_eq(rest.epoch_cost[1], whole.log.epoch_cost[1]);
  float parameters[sizeof whole.parameters / sizeof(float)];
  SUPPORT_OK(ctx, nn_model_get_parameters(model, parameters,
                                          nn_model_parameter_count(model)));
  cr_assert_eq(memcmp(parameters, whole.parameters, sizeof parameters), 0);
  nn_model_destroy(model);
  nn_dataset_destroy(data);
  nn_context_destroy(ctx);
}

Test(train_controls, stop_request_stops_at_the_next_batch_boundary) {
  static volatile sig_atomic_t stop = 0;
  static trained stopped;
  clear_log(&stopped.log);
  stopped.log.raise_at = 123;
  stopped.log.stop_flag = &stop;
  nn_train_options options = make_options(NULL, 1);
  options.stop_request = &stop;
  cr_assert_eq(train_fresh(options, &stopped), NN_ERROR_STOPPED);
  cr_assert_eq(stopped.summary.iterations_run, 123);
  cr_assert_eq(stopped.summary.state.batch, 123);
  cr_assert(isnan(stopped.log.iteration_cost[124]));
  double sum = 0.0;
  for (size_t i = 1; i <= 123; i++)
    sum += stopped.log.iteration_cost[i] * BATCH;
  cr_assert_eq(stopped.summary.state.epoch_cost_sum, sum);

  /* Already set: nothing is trained. */
  static trained untouched, reference;
  clear_log(&untouched.log);
  clear_log(&reference.log);
  options.stop_request = &stop;
  cr_assert_eq(train_fresh(options, &untouched), NN_ERROR_STOPPED);
  cr_assert_eq(untouched.summary.iterations_run, 0);
  cr_assert_eq(untouched.log.reports, 0);
  options.epochs = 1;
  options.max_iterations = 1;
  options.stop_request = NULL;
  cr_assert_eq(train_fresh(options, &reference), NN_OK);
  cr_assert_neq(memcmp(untouched.parameters, reference.parameters,
                       sizeof reference.parameters),
                0, "one update must change the parameters");
}

Test(train_controls, step_times_cover_the_updates_of_the_call) {
  float times[BATCHES + 10];
  for (size_t i = 0; i < BATCHES + 10; i++)
    times[i] = -1.0f;
  static trained run;
  clear_log(&run.log);
  nn_train_options options = make_options(NULL, 0);
  options.epochs = 1;
  options.step_times_ms = times;
  options.step_times_capacity = BATCHES + 10;
  cr_assert_eq(train_fresh(options, &run), NN_OK);
  cr_assert_eq(run.summary.steps_timed, BATCHES);
  for (size_t i = 0; i < BATCHES; i++)
    cr_assert(isfinite(times[i]) && times[i] >= 0.0f, "step %zu: %g", i,
              (double)times[i]);
  cr_assert_eq(times[BATCHES], -1.0f, "beyond the run: untouched");

  /* A short buffer keeps the first steps only. */
  options.step_times_capacity = 3;
  times[3] = -1.0f;
  clear_log(&run.log);
  cr_assert_eq(train_fresh(options, &run), NN_OK);
  cr_assert_eq(run.summary.steps_timed, 3);
  cr_assert_eq(times[3], -1.0f);
}

/* ------------------------------------------------------------------------ */
/* A progress callback may read the model, not change it                    */
/* ------------------------------------------------------------------------ */

typedef struct meddler {
  nn_context *ctx;
  nn_model *model;
  const nn_dataset *data;
  nn_status changes[10]; /* what each change returned, at the first report */
  char first_error[256];
  nn_status predicted, saved;
  int calls;
} meddler;

static int meddle(const nn_progress *progress, void *user_data) {
  (void)progress;
  meddler *m = user_data;
  if (m->calls++ > 0)
    return 0;
  nn_model *model = m->model;
  size_t count = nn_model_parameter_count(model);
  float *parameters = calloc(count, sizeof(float));
  float weights[5 * 4] = {0};
  const nn_optimizer_settings gd = {NN_OPTIMIZER_GD, 0.9f, 0.999f, 1e-8f};
  nn_train_options options;
  nn_train_options_default(&options);
  m->changes[0] = nn_model_set_parameters(model, parameters, count);
  snprintf(m->first_error, sizeof m->first_error, "%s",
           nn_context_last_error(m->ctx));
  m->changes[1] = nn_model_set_layer_parameters(model, 1, weights, NULL);
  m->changes[2] = nn_model_init(model, NN_INIT_HE, 1);
  m->changes[3] = nn_model_set_precision(model, NN_PRECISION_FP32);
  m->changes[4] = nn_model_set_fusion(model, NN_FUSION_OFF);
  m->changes[5] = nn_model_reset_optimizer(model);
  m->changes[6] = nn_model_update(model, &gd, 0.1f);
  m->changes[7] = nn_model_load_parameters(model, "/nonexistent.safetensors");
  m->changes[8] = nn_model_train(model, m->data, &options, NULL);
  m->changes[9] = nn_model_seed_dropout(model, 5);
  /* Reading is fine. */
  float x[4] = {0.1f, 0.2f, 0.3f, 0.4f}, yhat;
  m->predicted = nn_model_predict(model, x, 1, &yhat);
  char path[] = "/tmp/nn_meddle_XXXXXX";
  int fd = mkstemp(path);
  cr_assert_geq(fd, 0);
  close(fd);
  m->saved = nn_model_save(model, path, NULL, NULL);
  remove(path);
  free(parameters);
  return 0;
}

/* Every change from the callback is refused with NN_ERROR_STATE, saying
 * why, and changes nothing: the run ends with the parameters of an
 * undisturbed run. Predicting and saving work. */
Test(train_controls, a_callback_cannot_change_the_model_in_training) {
  static trained undisturbed;
  nn_train_options options = make_options(&undisturbed.log, 50);
  cr_assert_eq(train_fresh(options, &undisturbed), NN_OK);

  nn_context *ctx = support_cpu_context();
  nn_dataset *data = make_data(ctx);
  nn_model *model = make_model(ctx);
  static meddler m;
  m.ctx = ctx;
  m.model = model;
  m.data = data;
  options.callback = meddle;
  options.callback_user_data = &m;
  nn_train_summary summary;
  SUPPORT_OK(ctx, nn_model_train(model, data, &options, &summary));
  cr_assert_gt(m.calls, 0);
  for (size_t k = 0; k < sizeof m.changes / sizeof m.changes[0]; k++)
    cr_assert_eq(m.changes[k], NN_ERROR_STATE, "change %zu returned %s", k,
                 nn_status_str(m.changes[k]));
  cr_assert_not_null(strstr(m.first_error, "being trained"), "%s",
                     m.first_error);
  cr_assert_eq(m.predicted, NN_OK);
  cr_assert_eq(m.saved, NN_OK);
  float parameters[sizeof undisturbed.parameters / sizeof(float)];
  SUPPORT_OK(ctx, nn_model_get_parameters(model, parameters,
                                          nn_model_parameter_count(model)));
  cr_assert_eq(memcmp(parameters, undisturbed.parameters, sizeof parameters), 0,
               "the refused changes changed the run");
  /* After the run the model is the caller's again. */
  SUPPORT_OK(ctx, nn_model_set_fusion(model, NN_FUSION_OFF));
  nn_model_destroy(model);
  nn_dataset_destroy(data);
  nn_context_destroy(ctx);
}
