/*
 * train.c — the host-side training scheduler: per epoch a seeded
 * permutation, mini-batches delivered by the feeder (host/feeder.c),
 * then forward, cost, backward and update on the backend; learning-rate
 * decay, a validation split with early stopping, and progress callbacks.
 */
#include "backend.h"
#include "feeder.h"
#include "step_graphs.h"
#include "step_log.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Steps whose costs may wait on the device before they are read: the most
 * a diverging run goes on before it is noticed, in return for one wait per
 * this many steps instead of one per step. */
#define STEP_LOG_CAPACITY 256

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
  const nn_dataset *train;   /* what batches are drawn from */
  nn_dataset *validation;    /* NULL without a split */
  nn_dataset *owned_train;   /* the training part of a split */
  size_t batch_size;         /* effective: m for full batch */
  size_t *order;             /* this epoch's permutation (NULL: in order) */
  nnlib_feeder *feeder;      /* brings each batch to the backend */
  float *initial_parameters; /* restored if training fails */
  float *best_parameters;    /* for early stopping */
  nnlib_step_log *step_log;  /* costs (and times) not read yet */
  nnlib_step_graphs *graphs; /* NULL: every step runs eagerly */
  nn_train_state position;   /* where the run is; resumable */
  float learning_rate;       /* this epoch's */
  bool reached_max_iterations;
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
    return NNLIB_FAIL_CALL(run->model->ctx, NN_ERROR_INVALID_ARGUMENT,
                           "nn_model_train",
                           "a validation fraction of %g of %zu examples "
                           "leaves %zu for validation and %zu for training",
                           fraction, m, held_out, m - held_out);
  size_t *order = NULL;
  nn_status status =
      nnlib_host_alloc(run->model->ctx, m, sizeof *order, (void **)&order);
  if (status != NN_OK)
    return status;
  nnlib_permutation(order, m, nnlib_mix64(run->options->seed ^ SEED_SPLIT));
  nn_context *ctx = run->model->ctx;
  status =
      nnlib_dataset_gather(ctx, data, order, m - held_out, &run->owned_train);
  if (status == NN_OK)
    status = nnlib_dataset_gather(ctx, data, order + (m - held_out), held_out,
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
    status =
        NNLIB_OPS(model)->download(NNLIB_BACKEND(model), model->ctx, *out,
                                   model->parameters, model->parameter_count);
  return status;
}

static nn_status restore_parameters(nn_model *model, const float *saved) {
  nnlib_model_parameters_written(model);
  return NNLIB_OPS(model)->upload(NNLIB_BACKEND(model), model->ctx,
                                  model->parameters, saved,
                                  model->parameter_count);
}

/* The best parameters so far: those kept from the interrupted run when
 * resuming one, else the current ones. */
static nn_status start_best_parameters(training_run *run) {
  nn_model *model = run->model;
  if (run->options->resume && model->resume_best_parameters) {
    run->best_parameters = model->resume_best_parameters;
    model->resume_best_parameters = NULL;
    return NN_OK;
  }
  return snapshot_parameters(model, &run->best_parameters);
}

/* Read at report points and epoch ends anyway, so never larger than
 * either interval needs. */
static nn_status create_step_log(training_run *run) {
  const nn_train_options *options = run->options;
  const size_t m = run->train->example_count;
  size_t capacity = (m + run->batch_size - 1) / run->batch_size;
  if (options->iteration_report_every > 0 &&
      options->iteration_report_every < capacity)
    capacity = options->iteration_report_every;
  if (capacity > STEP_LOG_CAPACITY)
    capacity = STEP_LOG_CAPACITY;
  bool timing = options->step_times_ms && options->step_times_capacity > 0;
  nn_status status = nnlib_step_log_create(
      run->model, capacity, options->l2_lambda, timing, &run->step_log);
  if (status == NN_OK)
    status = nnlib_step_log_start(run->step_log);
  return status;
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
  status = nnlib_model_reserve(model, run->batch_size);
  if (status == NN_OK)
    status = nnlib_model_prepare_optimizer(model, run->options->optimizer.kind);
  /* Now, so that a captured step reads the copy rather than making it. */
  if (status == NN_OK)
    status = nnlib_model_prepare_bf16_parameters(model);
  if (status == NN_OK && run->batch_size < m)
    status = nnlib_host_alloc(ctx, m, sizeof *run->order, (void **)&run->order);
  if (status == NN_OK)
    status = nnlib_feeder_create(model, run->train, run->batch_size,
                                 run->options->data_placement, &run->feeder);
  if (status == NN_OK)
    status = snapshot_parameters(model, &run->initial_parameters);
  if (status == NN_OK && run->options->early_stopping_patience > 0)
    status = start_best_parameters(run);
  if (status == NN_OK)
    status = create_step_log(run);
  if (status == NN_OK)
    status = nnlib_step_graphs_create(model, run->options->step_graphs,
                                      &run->graphs);
  return status;
}

static void finish_run(training_run *run) {
  nn_dataset_destroy(run->owned_train);
  nn_dataset_destroy(run->validation);
  nnlib_feeder_destroy(run->feeder);
  nnlib_step_log_destroy(run->step_log);
  nnlib_step_graphs_destroy(run->graphs);
  free(run->order);
  free(run->initial_parameters);
  free(run->best_parameters);
}

static int report(const training_run *run, const nn_progress *progress) {
  const nn_train_options *options = run->options;
  return options->callback &&
         options->callback(progress, options->callback_user_data) != 0;
}

/* Issues forward, cost (before the update, as the notes log it), backward
 * and update for the next batch — as one graph launch when it can — with
 * the cost left in the step log. */
static nn_status train_batch(training_run *run, size_t *count) {
  nn_model *model = run->model;
  const nn_train_options *options = run->options;
  const float *input = NULL, *targets = NULL;
  double *record = nnlib_step_log_next_record(run->step_log);
  nn_status status = nnlib_feeder_next(run->feeder, &input, &targets, count);
  if (status == NN_OK)
    status = nnlib_stage_update(model, &options->optimizer, run->learning_rate);
  bool graphed = false;
  /* For this step only: evaluation passes read their own fp32 X. */
  model->input_record.bf16_output = nnlib_feeder_input_in_bf16(run->feeder);
  if (status == NN_OK && run->graphs)
    status = nnlib_step_graphs_run(run->graphs, input, targets, *count,
                                   options->l2_lambda, record, &graphed);
  else if (status == NN_OK)
    status = nnlib_step_body(model, input, targets, *count, options->l2_lambda,
                             record);
  model->input_record.bf16_output = false;
  run->summary.steps_graphed += graphed;
  if (status == NN_OK)
    status = nnlib_feeder_release(run->feeder);
  return status;
}

static nn_status diverged(const training_run *run,
                          const nnlib_step_entry *step) {
  return NNLIB_FAIL_CALL(run->model->ctx, NN_ERROR_NUMERIC, "nn_model_train",
                         "the cost became %g at epoch %zu, iteration %zu "
                         "(learning rate %g too high?)",
                         step->cost, step->epoch, step->iteration,
                         (double)step->learning_rate);
}

/* Reads the steps not read yet: adds their costs to the epoch's sum (in
 * step order, as one at a time would), stops at a non-finite one, keeps
 * their times. *last_cost is the last step's cost (unchanged if none). */
static nn_status read_steps(training_run *run, double *last_cost) {
  const nnlib_step_entry *steps = NULL;
  size_t count = 0;
  nn_status status = nnlib_step_log_read(run->step_log, &steps, &count);
  const nn_train_options *options = run->options;
  for (size_t i = 0; status == NN_OK && i < count; i++) {
    if (!isfinite(steps[i].cost))
      return diverged(run, &steps[i]);
    run->position.epoch_cost_sum += steps[i].cost * (double)steps[i].examples;
    if (options->step_times_ms &&
        run->summary.steps_timed < options->step_times_capacity)
      options->step_times_ms[run->summary.steps_timed++] = steps[i].time_ms;
    *last_cost = steps[i].cost;
  }
  return status;
}

static bool stop_requested(const training_run *run) {
  return run->options->stop_request && *run->options->stop_request != 0;
}

static bool at_max_iterations(const training_run *run) {
  const size_t limit = run->options->max_iterations;
  return limit > 0 && run->position.iteration >= limit;
}

/* Dropout masks come from a stream seeded per epoch (reseeding cuRAND's
 * host generator costs milliseconds, too much per batch). A run resumed in
 * the middle of an epoch draws and discards the masks of the batches already
 * done, so it continues with the masks an uninterrupted run would use. */
static nn_status seed_dropout(training_run *run) {
  nn_model *model = run->model;
  bool any_dropout = false;
  for (size_t l = 0; l < model->layer_count; l++)
    any_dropout = any_dropout || model->layers[l].dropout > 0.0f;
  if (!any_dropout)
    return NN_OK;
  nn_status status = NNLIB_OPS(model)->rng_seed(
      NNLIB_BACKEND(model), model->ctx, model->dropout_rng,
      nnlib_mix64(run->options->seed ^ SEED_DROPOUT) ^
          nnlib_mix64(run->position.epoch));
  const size_t m = run->train->example_count;
  for (size_t batch = 0; status == NN_OK && batch < run->position.batch;
       batch++) {
    size_t first = batch * run->batch_size;
    size_t count = m - first < run->batch_size ? m - first : run->batch_size;
    for (size_t l = 0; status == NN_OK && l < model->layer_count; l++)
      if (model->layers[l].dropout > 0.0f)
        status = NNLIB_OPS(model)->random_uniform(
            NNLIB_BACKEND(model), model->ctx, model->dropout_rng,
            model->layers[l].dropout_mask,
            nnlib_dropout_draw_count(model->layers[l].units * count));
  }
  return status;
}

/* One step: issued, logged, and — when a report is due or the log is full
 * — read back; reports to the callback when due. */
static nn_status train_step(training_run *run) {
  nn_train_state *position = &run->position;
  size_t count = 0;
  nn_status status = train_batch(run, &count);
  const nnlib_step_entry entry = {position->epoch,
                                  position->iteration + 1,
                                  count,
                                  run->learning_rate,
                                  NAN,
                                  NAN};
  if (status == NN_OK)
    status = nnlib_step_log_commit(run->step_log, &entry);
  if (status != NN_OK)
    return status;
  position->batch++;
  position->iteration++;
  const size_t every = run->options->iteration_report_every;
  const bool report_due = every > 0 && position->iteration % every == 0;
  double cost = NAN;
  if (report_due || nnlib_step_log_full(run->step_log))
    status = read_steps(run, &cost);
  nn_progress progress = {
      position->epoch,   position->iteration, 0, cost, NAN, NAN,
      run->learning_rate};
  if (status == NN_OK && report_due && report(run, &progress))
    status = NN_ERROR_STOPPED;
  return status;
}

/* One pass over the training set, from batch position.batch on (non-zero
 * when resuming); *mean_cost is the example-weighted mean of the batch
 * costs (of those done, when max_iterations ends the run within the
 * epoch). A stop request ends it at a batch boundary. */
static nn_status train_epoch(training_run *run, double *mean_cost) {
  const nn_train_options *options = run->options;
  nn_train_state *position = &run->position;
  const size_t m = run->train->example_count, epoch = position->epoch;
  if (run->order)
    nnlib_permutation(run->order, m,
                      nnlib_mix64(options->seed ^ SEED_SHUFFLE) ^
                          nnlib_mix64(epoch));
  nn_status status = seed_dropout(run);
  if (status == NN_OK)
    status = nnlib_feeder_begin_epoch(run->feeder, run->order, position->batch);
  const size_t batches = (m + run->batch_size - 1) / run->batch_size;
  while (status == NN_OK && position->batch < batches) {
    if (stop_requested(run))
      status = NN_ERROR_STOPPED;
    else if (at_max_iterations(run))
      break;
    else
      status = train_step(run);
  }
  double last_cost = NAN;
  /* Also when stopped: the state handed back must hold every cost. */
  nn_status read = read_steps(run, &last_cost);
  if (status == NN_OK || (status == NN_ERROR_STOPPED && read != NN_OK))
    status = read;
  size_t done = position->batch * run->batch_size;
  *mean_cost = position->epoch_cost_sum / (double)(done < m ? done : m);
  run->reached_max_iterations = position->batch < batches;
  return status;
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
  progress->validation_metric = model->loss == NN_LOSS_MEAN_SQUARED_ERROR
                                    ? metrics.mse
                                    : metrics.accuracy;
  nn_train_state *best = &run->position;
  if (isnan(best->best_validation_cost) ||
      metrics.cost < best->best_validation_cost) {
    best->best_validation_cost = metrics.cost;
    best->best_epoch = epoch;
    if (run->best_parameters)
      status = NNLIB_OPS(model)->download(
          NNLIB_BACKEND(model), model->ctx, run->best_parameters,
          model->parameters, model->parameter_count);
  }
  size_t patience = run->options->early_stopping_patience;
  *stop = patience > 0 && epoch - best->best_epoch >= patience;
  return status;
}

static nn_status run_epochs(training_run *run) {
  const nn_train_options *options = run->options;
  nn_train_state *position = &run->position;
  while (position->epoch < options->epochs) {
    const size_t epoch = position->epoch;
    if (at_max_iterations(run)) {
      run->reached_max_iterations = true;
      break;
    }
    run->learning_rate =
        options->learning_rate / (1.0f + options->decay_rate * (float)epoch);
    nn_progress progress = {epoch, 0, 1, 0.0, NAN, NAN, run->learning_rate};
    nn_status status = train_epoch(run, &progress.cost);
    if (status == NN_OK && run->reached_max_iterations) {
      run->summary.final_cost = progress.cost;
      break;
    }
    bool stop = false;
    if (status == NN_OK && run->validation)
      status = validate(run, epoch, &progress, &stop);
    if (status != NN_OK)
      return status;
    progress.iteration = position->iteration;
    run->summary.epochs_run = epoch + 1;
    run->summary.final_cost = progress.cost;
    /* The epoch is done: a stop from here resumes at the next one. */
    position->epoch++;
    position->batch = 0;
    position->epoch_cost_sum = 0.0;
    if (report(run, &progress))
      return NN_ERROR_STOPPED;
    if (stop) {
      run->summary.stopped_early = 1;
      break;
    }
  }
  return NN_OK;
}

/* Starts from options->resume when given, after checking that it fits this
 * data and batch size. */
static nn_status start_position(training_run *run) {
  const nn_train_state *resume = run->options->resume;
  nn_train_state *position = &run->position;
  if (!resume) {
    position->best_validation_cost = NAN;
    return NN_OK;
  }
  const size_t m = run->train->example_count;
  const size_t batches = (m + run->batch_size - 1) / run->batch_size;
  if (resume->batch > batches || !isfinite(resume->epoch_cost_sum) ||
      resume->epoch_cost_sum < 0.0)
    return NNLIB_FAIL_CALL(run->model->ctx, NN_ERROR_INVALID_ARGUMENT,
                           "nn_model_train",
                           "resume state (epoch %zu, batch %zu, cost sum %g) "
                           "does not fit %zu batches of %zu examples: "
                           "different data or batch size?",
                           resume->epoch, resume->batch, resume->epoch_cost_sum,
                           batches, run->batch_size);
  *position = *resume;
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
  status = nnlib_refuse_while_training(model, "nn_model_train");
  if (status != NN_OK)
    return status;
  training_run run = {.model = model, .options = options};
  model->training = true;
  status = prepare_run(&run, train);
  if (status == NN_OK)
    status = start_position(&run);
  run.summary.epochs_run = run.position.epoch;
  if (status == NN_OK)
    status = run_epochs(&run);
  if (status == NN_ERROR_STOPPED)
    nnlib_fail(model->ctx, status, "nn_model_train", __FILE__, __LINE__,
               "the progress callback stopped training after %zu "
               "iteration(s)",
               run.position.iteration);
  model->training = false;
  if (status == NN_OK && run.best_parameters)
    status = restore_parameters(model, run.best_parameters);
  if (status != NN_OK && status != NN_ERROR_STOPPED && run.initial_parameters)
    restore_parameters(model, run.initial_parameters);
  run.summary.iterations_run = run.position.iteration;
  run.summary.best_validation_cost = run.position.best_validation_cost;
  size_t last_epoch = run.summary.epochs_run ? run.summary.epochs_run - 1 : 0;
  run.summary.best_epoch =
      run.validation ? run.position.best_epoch : last_epoch;
  run.summary.state = run.position;
  run.summary.data_resident =
      run.feeder ? nnlib_feeder_is_resident(run.feeder) : 0;
  if (summary)
    *summary = run.summary;
  /* A stopped run may be resumed: keep its best parameters with the model. */
  free(model->resume_best_parameters);
  model->resume_best_parameters = NULL;
  if (status == NN_ERROR_STOPPED) {
    model->resume_best_parameters = run.best_parameters;
    run.best_parameters = NULL;
  }
  finish_run(&run);
  model->forward_examples = 0;
  model->backward_examples = 0;
  return status;
}
