/*
 * train.c — the host-side training scheduler: per epoch a seeded
 * permutation, mini-batches gathered into a staging buffer and uploaded,
 * then forward, cost, backward and update on the backend; learning-rate
 * decay, a validation split with early stopping, and progress callbacks.
 */
#include "backend.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define BACKEND(model) ((model)->ctx->backend)
#define OPS(model) (BACKEND(model)->ops)

/* Domain separation for the seeds derived from options->seed. */
#define SEED_SPLIT 0x5350u
#define SEED_DROPOUT 0x4452u
#define SEED_SHUFFLE 0x5348u

void nn_train_options_default(nn_train_options *options) {
  if (!options)
    return;
  memset(options, 0, sizeof *options);
  options->optimizer.kind = NN_OPTIMIZER_GD;
  options->optimizer.beta1 = 0.9f;
  options->optimizer.beta2 = 0.999f;
  options->optimizer.epsilon = 1e-8f;
  options->learning_rate = 0.0075f;
  options->epochs = 100;
  options->seed = 1;
}

/* Everything a run needs besides the model and options. */
typedef struct training_run {
  nn_model *model;
  const nn_train_options *options;
  const nn_dataset *train;      /* what batches are drawn from */
  nn_dataset *validation;       /* NULL without a split */
  nn_dataset *owned_train;      /* the training part of a split */
  size_t batch_size;            /* effective: m for full batch */
  size_t *order;                /* this epoch's permutation (NULL: in order) */
  float *staging_x, *staging_y; /* host gather buffers for one batch */
  float *initial_parameters;    /* restored if training fails */
  float *best_parameters;       /* for early stopping */
  size_t iteration;
  nn_train_summary summary;
} training_run;

static nn_status check_options(nn_model *model, const nn_dataset *train,
                               const nn_train_options *options) {
  nn_context *ctx = model->ctx;
  const char *call = "nn_model_train";
  if (!train || !options)
    return NNLIB_FAIL_CALL(ctx, NN_ERROR_INVALID_ARGUMENT, call, "%s is NULL",
                           train ? "options" : "train");
  const size_t ny = model->layers[model->layer_count - 1].units;
  if (train->input_width != model->input_width || train->target_width != ny)
    return NNLIB_FAIL_CALL(ctx, NN_ERROR_SHAPE_MISMATCH, call,
                           "data has n_x = %zu, n_y = %zu; the model takes "
                           "%zu inputs and gives %zu outputs",
                           train->input_width, train->target_width,
                           model->input_width, ny);
  if (options->epochs == 0)
    return NNLIB_FAIL_CALL(ctx, NN_ERROR_INVALID_ARGUMENT, call,
                           "epochs must be > 0");
  if (!(options->decay_rate >= 0.0f) || !isfinite(options->decay_rate) ||
      !(options->l2_lambda >= 0.0f) || !isfinite(options->l2_lambda))
    return NNLIB_FAIL_CALL(ctx, NN_ERROR_INVALID_ARGUMENT, call,
                           "decay rate %g and L2 lambda %g must be >= 0",
                           (double)options->decay_rate,
                           (double)options->l2_lambda);
  if (!(options->validation_fraction >= 0.0 &&
        options->validation_fraction < 1.0))
    return NNLIB_FAIL_CALL(ctx, NN_ERROR_INVALID_ARGUMENT, call,
                           "validation fraction %g is outside [0, 1)",
                           options->validation_fraction);
  if (options->early_stopping_patience > 0 &&
      options->validation_fraction == 0.0)
    return NNLIB_FAIL_CALL(ctx, NN_ERROR_INVALID_ARGUMENT, call,
                           "early stopping needs a validation split "
                           "(validation_fraction > 0)");
  return nnlib_check_optimizer(ctx, call, &options->optimizer,
                               options->learning_rate);
}

/* Holds out round(fraction · m) seeded-random examples for validation. */
static nn_status split_validation(training_run *run, const nn_dataset *data) {
  const double fraction = run->options->validation_fraction;
  const size_t m = data->example_count;
  size_t held_out = (size_t)llround(fraction * (double)m);
  run->train = data;
  if (fraction == 0.0)
    return NN_OK;
  if (held_out == 0 || held_out >= m)
    return NNLIB_FAIL(run->model->ctx, NN_ERROR_INVALID_ARGUMENT,
                      "a validation fraction of %g of %zu examples leaves "
                      "%zu for validation and %zu for training",
                      fraction, m, held_out, m - held_out);
  size_t *order = NULL;
  nn_status status = nnlib_host_alloc(run->model->ctx, m, sizeof *order,
                                      (void **)&order);
  if (status != NN_OK)
    return status;
  nnlib_permutation(order, m, nnlib_mix64(run->options->seed ^ SEED_SPLIT));
  status = nnlib_dataset_gather(data, order, m - held_out, &run->owned_train);
  if (status == NN_OK)
    status = nnlib_dataset_gather(data, order + (m - held_out), held_out,
                                  &run->validation);
  free(order);
  run->train = run->owned_train;
  return status;
}

/* A host copy of the parameter arena. */
static nn_status snapshot_parameters(nn_model *model, float **out) {
  nn_status status = nnlib_host_alloc(model->ctx, model->parameter_count,
                                      sizeof(float), (void **)out);
  if (status == NN_OK)
    status = OPS(model)->download(BACKEND(model), model->ctx, *out,
                                  model->parameters, model->parameter_count);
  return status;
}

static nn_status restore_parameters(nn_model *model, const float *saved) {
  return OPS(model)->upload(BACKEND(model), model->ctx, model->parameters,
                            saved, model->parameter_count);
}

static nn_status prepare_run(training_run *run, const nn_dataset *data) {
  nn_model *model = run->model;
  nn_context *ctx = model->ctx;
  nn_status status = split_validation(run, data);
  if (status != NN_OK)
    return status;
  const size_t m = run->train->example_count;
  const size_t requested = run->options->batch_size;
  run->batch_size = requested == 0 || requested > m ? m : requested;
  const size_t nx = model->input_width, ny = run->train->target_width;
  status = nnlib_model_reserve(model, run->batch_size);
  if (status == NN_OK && run->batch_size < m)
    status = nnlib_host_alloc(ctx, m, sizeof *run->order,
                              (void **)&run->order);
  if (status == NN_OK && run->order)
    status = nnlib_host_alloc(ctx, nx * run->batch_size, sizeof(float),
                              (void **)&run->staging_x);
  if (status == NN_OK && run->order)
    status = nnlib_host_alloc(ctx, ny * run->batch_size, sizeof(float),
                              (void **)&run->staging_y);
  if (status == NN_OK)
    status = snapshot_parameters(model, &run->initial_parameters);
  if (status == NN_OK && run->options->early_stopping_patience > 0)
    status = snapshot_parameters(model, &run->best_parameters);
  if (status == NN_OK)
    status = OPS(model)->rng_seed(BACKEND(model), ctx, model->dropout_rng,
                                  nnlib_mix64(run->options->seed ^
                                              SEED_DROPOUT));
  return status;
}

static void finish_run(training_run *run) {
  nn_dataset_destroy(run->owned_train);
  nn_dataset_destroy(run->validation);
  free(run->order);
  free(run->staging_x);
  free(run->staging_y);
  free(run->initial_parameters);
  free(run->best_parameters);
}

/* Uploads batch columns [first, first + count) of this epoch's order. */
static nn_status stage_batch(training_run *run, size_t first, size_t count) {
  nn_model *model = run->model;
  const nn_dataset *data = run->train;
  const size_t nx = data->input_width, ny = data->target_width;
  const float *x = data->x + first * nx, *y = data->y + first * ny;
  if (run->order) {
    for (size_t j = 0; j < count; j++) {
      size_t column = run->order[first + j];
      memcpy(run->staging_x + j * nx, data->x + column * nx,
             nx * sizeof(float));
      memcpy(run->staging_y + j * ny, data->y + column * ny,
             ny * sizeof(float));
    }
    x = run->staging_x;
    y = run->staging_y;
  }
  nn_status status = OPS(model)->upload(BACKEND(model), model->ctx,
                                        model->input, x, nx * count);
  if (status == NN_OK)
    status = OPS(model)->upload(BACKEND(model), model->ctx, model->targets, y,
                                ny * count);
  return status;
}

static int report(const training_run *run, const nn_progress *progress) {
  const nn_train_options *options = run->options;
  return options->callback &&
         options->callback(progress, options->callback_user_data) != 0;
}

/* Forward, cost (before the update, as the notes log it), backward, update.
 */
static nn_status train_batch(training_run *run, size_t epoch, size_t first,
                             size_t count, float learning_rate,
                             double *cost) {
  nn_model *model = run->model;
  const nn_train_options *options = run->options;
  nn_status status = stage_batch(run, first, count);
  if (status == NN_OK)
    status = nnlib_forward(model, count, true);
  if (status == NN_OK)
    status = nnlib_cost(model, count, options->l2_lambda, cost);
  if (status == NN_OK && !isfinite(*cost))
    return NNLIB_FAIL_CALL(model->ctx, NN_ERROR_NUMERIC, "nn_model_train",
                           "the cost became %g at epoch %zu, iteration %zu "
                           "(learning rate %g too high?)",
                           *cost, epoch, run->iteration,
                           (double)learning_rate);
  if (status == NN_OK)
    status = nnlib_backward(model, count, options->l2_lambda);
  if (status == NN_OK)
    status = nnlib_update(model, &options->optimizer, learning_rate);
  return status;
}

/* One pass over the training set; *mean_cost is the example-weighted mean
 * of the batch costs. */
static nn_status train_epoch(training_run *run, size_t epoch,
                             float learning_rate, double *mean_cost) {
  const nn_train_options *options = run->options;
  const size_t m = run->train->example_count;
  if (run->order)
    nnlib_permutation(run->order, m,
                      nnlib_mix64(options->seed ^ SEED_SHUFFLE) ^
                          nnlib_mix64(epoch));
  double weighted = 0.0;
  for (size_t first = 0; first < m; first += run->batch_size) {
    size_t count = m - first < run->batch_size ? m - first : run->batch_size;
    double cost = 0.0;
    nn_status status =
        train_batch(run, epoch, first, count, learning_rate, &cost);
    if (status != NN_OK)
      return status;
    weighted += cost * (double)count;
    run->iteration++;
    size_t every = options->iteration_report_every;
    nn_progress progress = {epoch, run->iteration - 1, 0, cost, NAN,
                            NAN,   learning_rate};
    if (every > 0 && run->iteration % every == 0 && report(run, &progress))
      return NN_ERROR_STOPPED;
  }
  *mean_cost = weighted / (double)m;
  return NN_OK;
}

/* Validation cost and metric; tracks the best epoch for early stopping.
 * Sets *stop when patience has run out. */
static nn_status validate(training_run *run, size_t epoch,
                          nn_progress *progress, bool *stop) {
  nn_model *model = run->model;
  nn_metrics metrics;
  nn_status status = nn_model_evaluate(model, run->validation, &metrics);
  if (status != NN_OK)
    return status;
  progress->validation_cost = metrics.cost;
  progress->validation_metric =
      model->loss == NN_LOSS_MEAN_SQUARED_ERROR ? metrics.mse
                                                : metrics.accuracy;
  nn_train_summary *summary = &run->summary;
  if (epoch == 0 || metrics.cost < summary->best_validation_cost) {
    summary->best_validation_cost = metrics.cost;
    summary->best_epoch = epoch;
    if (run->best_parameters)
      status = OPS(model)->download(BACKEND(model), model->ctx,
                                    run->best_parameters, model->parameters,
                                    model->parameter_count);
  }
  size_t patience = run->options->early_stopping_patience;
  *stop = patience > 0 && epoch - summary->best_epoch >= patience;
  return status;
}

static nn_status run_epochs(training_run *run) {
  const nn_train_options *options = run->options;
  for (size_t epoch = 0; epoch < options->epochs; epoch++) {
    float learning_rate =
        options->learning_rate / (1.0f + options->decay_rate * (float)epoch);
    nn_progress progress = {epoch, run->iteration, 1, 0.0, NAN, NAN,
                            learning_rate};
    nn_status status = train_epoch(run, epoch, learning_rate, &progress.cost);
    bool stop = false;
    if (status == NN_OK && run->validation)
      status = validate(run, epoch, &progress, &stop);
    if (status != NN_OK)
      return status;
    run->summary.epochs_run = epoch + 1;
    run->summary.final_cost = progress.cost;
    if (!run->validation)
      run->summary.best_epoch = epoch;
    if (report(run, &progress))
      return NN_ERROR_STOPPED;
    if (stop) {
      run->summary.stopped_early = 1;
      break;
    }
  }
  return NN_OK;
}

nn_status nn_model_train(nn_model *model, const nn_dataset *train,
                         const nn_train_options *options,
                         nn_train_summary *summary) {
  if (!model)
    return NN_ERROR_INVALID_ARGUMENT;
  nn_status status = check_options(model, train, options);
  if (status == NN_OK)
    status = nnlib_check_targets(model, train->y, train->example_count,
                                 "nn_model_train");
  if (status != NN_OK)
    return status;
  training_run run = {.model = model, .options = options};
  run.summary.best_validation_cost = NAN;
  status = prepare_run(&run, train);
  if (status == NN_OK)
    status = run_epochs(&run);
  if (status == NN_ERROR_STOPPED)
    nnlib_fail(model->ctx, status, "nn_model_train", __FILE__, __LINE__,
               "the progress callback stopped training after %zu "
               "iteration(s)",
               run.iteration);
  if (status == NN_OK && run.best_parameters)
    status = restore_parameters(model, run.best_parameters);
  if (status != NN_OK && status != NN_ERROR_STOPPED &&
      run.initial_parameters)
    restore_parameters(model, run.initial_parameters);
  run.summary.iterations_run = run.iteration;
  if (summary)
    *summary = run.summary;
  finish_run(&run);
  model->forward_examples = 0;
  model->backward_examples = 0;
  return status;
}
