/*
 * test_threads.c — no global mutable state: two contexts trained at the
 * same time from two threads give bit-identical parameters, equal to the
 * same run done alone on the main thread.
 *
 * The run exercises every seeded path: cuRAND initialization, the
 * validation split, per-epoch shuffles and dropout masks.
 */
#include "support.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define THREADS 2

/* One complete training run and what it produced. No Criterion assertions
 * here: they are not meant to be raised from other threads. */
typedef struct training_job {
  pthread_barrier_t *start; /* NULL when run alone */
  nn_status status;
  char error[512];
  float *parameters; /* malloc'd, parameter_count floats */
  size_t parameter_count;
  nn_train_summary summary;
} training_job;

static void fail_job(training_job *job, nn_context *ctx, nn_status status) {
  snprintf(job->error, sizeof job->error, "%s", nn_context_last_error(ctx));
  job->status = status;
}

/* The model on ctx, its dataset on data_ctx (ctx itself, or another). */
static nn_status train_flower(training_job *job, nn_context *ctx,
                              nn_context *data_ctx) {
  float x[2 * SUPPORT_PLANAR_EXAMPLES];
  int32_t labels[SUPPORT_PLANAR_EXAMPLES];
  support_planar_dataset(1, x, labels);
  const nn_layer_spec layers[] = {{16, NN_ACTIVATION_RELU, 0.1f},
                                  {8, NN_ACTIVATION_TANH, 0.0f},
                                  {1, NN_ACTIVATION_SIGMOID, 0.0f}};
  const nn_model_spec spec = {2, 3, layers, NN_LOSS_BINARY_CROSS_ENTROPY};
  nn_dataset *data = NULL;
  nn_model *model = NULL;
  nn_status status = nn_dataset_create_from_labels(
      data_ctx, 2, SUPPORT_PLANAR_EXAMPLES, x, labels, 1, &data);
  if (status == NN_OK)
    status = nn_model_create(ctx, &spec, &model);
  if (status == NN_OK)
    status = nn_model_init(model, NN_INIT_HE, 2024);
  nn_train_options options;
  nn_train_options_default(&options);
  options.optimizer.kind = NN_OPTIMIZER_ADAM;
  options.learning_rate = 0.01f;
  options.batch_size = 64;
  options.epochs = 20;
  options.seed = 7;
  options.validation_fraction = 0.2;
  options.l2_lambda = 0.01f;
  if (status == NN_OK)
    status = nn_model_train(model, data, &options, &job->summary);
  if (status == NN_OK) {
    job->parameter_count = nn_model_parameter_count(model);
    job->parameters = malloc(job->parameter_count * sizeof(float));
    status = job->parameters ? nn_model_get_parameters(model, job->parameters,
                                                       job->parameter_count)
                             : NN_ERROR_OUT_OF_MEMORY;
  }
  if (status != NN_OK)
    fail_job(job, ctx, status);
  nn_model_destroy(model);
  nn_dataset_destroy(data);
  return status;
}

static void *run_job(void *argument) {
  training_job *job = argument;
  if (job->start)
    pthread_barrier_wait(job->start);
  nn_context *ctx = NULL;
  job->status =
      nn_context_create(NN_BACKEND_CPU, 0, &ctx, job->error, sizeof job->error);
  if (job->status == NN_OK)
    job->status = train_flower(job, ctx, ctx);
  nn_context_destroy(ctx);
  return NULL;
}

static void expect_same_run(const training_job *a, const training_job *b,
                            const char *what) {
  cr_assert_eq(a->parameter_count, b->parameter_count);
  cr_assert_eq(
      memcmp(a->parameters, b->parameters, a->parameter_count * sizeof(float)),
      0, "%s: parameters differ", what);
  cr_assert_eq(a->summary.iterations_run, b->summary.iterations_run);
  cr_assert_eq(a->summary.final_cost, b->summary.final_cost, "%s", what);
  cr_assert_eq(a->summary.best_validation_cost, b->summary.best_validation_cost,
               "%s", what);
}

Test(threads, two_contexts_train_independently_and_identically) {
  training_job alone = {0};
  run_job(&alone);
  cr_assert_eq(alone.status, NN_OK, "alone: %s", alone.error);
  cr_assert_gt(alone.parameter_count, 0);

  pthread_barrier_t start;
  cr_assert_eq(pthread_barrier_init(&start, NULL, THREADS), 0);
  training_job jobs[THREADS] = {{0}};
  pthread_t threads[THREADS];
  for (int t = 0; t < THREADS; t++) {
    jobs[t].start = &start;
    cr_assert_eq(pthread_create(&threads[t], NULL, run_job, &jobs[t]), 0);
  }
  for (int t = 0; t < THREADS; t++)
    cr_assert_eq(pthread_join(threads[t], NULL), 0);
  pthread_barrier_destroy(&start);

  for (int t = 0; t < THREADS; t++) {
    cr_assert_eq(jobs[t].status, NN_OK, "thread %d: %s", t, jobs[t].error);
    expect_same_run(&jobs[t], &alone,
                    t ? "thread 1 vs alone" : "thread 0 vs alone");
  }
  expect_same_run(&jobs[0], &jobs[1], "thread 0 vs thread 1");
  for (int t = 0; t < THREADS; t++)
    free(jobs[t].parameters);
  free(alone.parameters);
}

/* A dataset is host memory: a model trains on one made on another context
 * (nntrain loads its data on a CPU context while the device's opens) as on
 * one of its own. */
Test(threads, a_dataset_of_another_context_trains_the_same) {
  training_job own = {0}, borrowed = {0};
  run_job(&own);
  cr_assert_eq(own.status, NN_OK, "own: %s", own.error);
  nn_context *ctx = support_cpu_context(), *data_ctx = support_cpu_context();
  borrowed.status = train_flower(&borrowed, ctx, data_ctx);
  cr_assert_eq(borrowed.status, NN_OK, "borrowed: %s", borrowed.error);
  expect_same_run(&borrowed, &own, "dataset of another context");
  nn_context_destroy(data_ctx);
  nn_context_destroy(ctx);
  free(own.parameters);
  free(borrowed.parameters);
}

/* Errors are per context: a failure on one context leaves another's
 * message alone, even when both are used from different threads. */
static void *fail_on_own_context(void *argument) {
  nn_context *ctx = argument;
  nn_model *model = NULL;
  for (int i = 0; i < 1000; i++)
    nn_model_create(ctx, NULL, &model);
  return NULL;
}

Test(threads, errors_stay_on_their_context) {
  nn_context *failing = support_cpu_context();
  nn_context *quiet = support_cpu_context();
  pthread_t thread;
  cr_assert_eq(pthread_create(&thread, NULL, fail_on_own_context, failing), 0);
  training_job job = {0};
  cr_assert_eq(train_flower(&job, quiet, quiet), NN_OK, "%s", job.error);
  cr_assert_eq(pthread_join(thread, NULL), 0);
  cr_assert_str_eq(nn_context_last_error(quiet), "");
  cr_assert_not_null(strstr(nn_context_last_error(failing), "spec is NULL"));
  free(job.parameters);
  nn_context_destroy(failing);
  nn_context_destroy(quiet);
}

/* A model's calls on a dataset of another context leave that context
 * alone: their errors are the model's, and a run with a validation split
 * (new datasets made from the borrowed one) writes nothing there either. */
Test(threads, a_borrowed_datasets_context_is_left_alone) {
  nn_context *ctx = support_cpu_context(), *data_ctx = support_cpu_context();
  training_job job = {0};
  cr_assert_eq(train_flower(&job, ctx, data_ctx), NN_OK, "%s", job.error);
  cr_assert_str_eq(nn_context_last_error(data_ctx), "");
  /* Three inputs against the data's two: refused, on the model's context. */
  const size_t widths[] = {3, 4, 1};
  nn_model *model = support_model(ctx, widths, 2, NN_ACTIVATION_TANH,
                                  NN_LOSS_BINARY_CROSS_ENTROPY);
  float x[2 * SUPPORT_PLANAR_EXAMPLES];
  int32_t labels[SUPPORT_PLANAR_EXAMPLES];
  support_planar_dataset(1, x, labels);
  nn_dataset *data = NULL;
  SUPPORT_OK(data_ctx,
             nn_dataset_create_from_labels(data_ctx, 2, SUPPORT_PLANAR_EXAMPLES,
                                           x, labels, 1, &data));
  nn_train_options options;
  nn_train_options_default(&options);
  options.epochs = 1;
  options.validation_fraction = 0.2;
  cr_assert_eq(nn_model_train(model, data, &options, NULL),
               NN_ERROR_SHAPE_MISMATCH);
  cr_assert_str_neq(nn_context_last_error(ctx), "");
  cr_assert_str_eq(nn_context_last_error(data_ctx), "");
  nn_dataset_destroy(data);
  nn_model_destroy(model);
  free(job.parameters);
  nn_context_destroy(data_ctx);
  nn_context_destroy(ctx);
}
