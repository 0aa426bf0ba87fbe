/*
 * step_timer.c — the timed training run: one nn_model_train call for the
 * warmup and timed steps, with the library timing every update
 * (nn_train_options.step_times_ms).
 *
 * On CUDA a step's time is the interval between CUDA events the library
 * records on the compute stream after consecutive updates: nothing waits
 * for the device between steps (costs are read back in bulk), so the
 * interval is the step's device time in steady state, plus any time the
 * GPU sat idle waiting for the host to issue work. On the CPU, whose
 * backend runs each step to completion, it is the host clock between step
 * ends.
 */
#include "bench.h"

#include "../tools/cli.h"

#include <stdio.h>
#include <stdlib.h>

const char *bench_timer_description(bool on_cuda) {
  return on_cuda ? "CUDA events recorded by the library on the compute "
                   "stream after each update (no per-step wait for the "
                   "device)"
                 : "host clock between the ends of consecutive updates (the "
                   "CPU backend runs each step to completion)";
}

typedef struct run_watch {
  bool on_cuda;
  bench_measurement *measurement;
} run_watch;

/* Called once, at the last iteration, while every buffer of the run is
 * still allocated: its device memory is what the run needed. */
static int on_last_iteration(const nn_progress *progress, void *user_data) {
  run_watch *watch = user_data;
  bench_device_memory *memory = &watch->measurement->memory;
  size_t total = 0;
  (void)progress;
  if (watch->on_cuda && memory->known)
    memory->known =
        bench_device_free_memory(&memory->free_after_warmup, &total);
  return 0;
}

/* The first step of an epoch also reshuffles and, when streaming, restarts
 * the batch pipeline with nothing gathered ahead: not a steady-state step.
 * Step index i (0-based) starts an epoch when i is a multiple of the
 * batches per epoch. */
static bool starts_epoch(size_t step, size_t batches_per_epoch) {
  return step % batches_per_epoch == 0;
}

/* Updates to run: the warmup, then steps until `timed` of them are steady
 * ones. */
static size_t iterations_needed(const bench_config *config, size_t batches) {
  size_t step = config->warmup_steps, steady = 0;
  while (steady < config->timed_steps)
    steady += !starts_epoch(step++, batches);
  return step;
}

static bool allocate_times(size_t count, bench_measurement *measurement) {
  measurement->step_seconds = calloc(count, sizeof(double));
  measurement->epoch_start_seconds = calloc(count, sizeof(double));
  return measurement->step_seconds && measurement->epoch_start_seconds;
}

/* Sorts the library's times (after the warmup) into steady steps and epoch
 * starts, in seconds. */
static void sort_times(const float *times_ms, size_t count, size_t warmup,
                       size_t batches, bench_measurement *measurement) {
  for (size_t step = warmup; step < count; step++) {
    double seconds = 1e-3 * (double)times_ms[step];
    if (starts_epoch(step, batches))
      measurement->epoch_start_seconds[measurement->epoch_start_count++] =
          seconds;
    else
      measurement->step_seconds[measurement->step_count++] = seconds;
  }
}

static void set_options(const bench_config *config, size_t iterations,
                        nn_train_options *options) {
  nn_train_options_default(options);
  options->optimizer.kind = config->optimizer;
  options->learning_rate = (float)BENCH_LEARNING_RATE;
  options->batch_size = config->batch_size;
  options->epochs = iterations; /* max_iterations ends the run first */
  options->max_iterations = iterations;
  options->seed = config->seed;
  options->iteration_report_every = iterations;
  options->callback = on_last_iteration;
  options->data_placement = config->placement;
  options->step_graphs = config->step_graphs;
}

nn_status bench_time_steps(const bench_config *config, nn_context *ctx,
                           nn_model *model, const bench_data *data,
                           bool on_cuda, bench_measurement *measurement) {
  const size_t iterations = iterations_needed(config, data->batches_per_epoch);
  float *times_ms = calloc(iterations, sizeof *times_ms);
  if (!times_ms || !allocate_times(iterations, measurement)) {
    free(times_ms);
    return NN_ERROR_OUT_OF_MEMORY;
  }
  nn_dataset *dataset = NULL;
  const bench_model *shape = &config->model;
  nn_status status =
      nn_dataset_view(ctx, shape->widths[0], shape->widths[shape->layer_count],
                      data->examples, data->x, data->y, &dataset);
  run_watch watch = {on_cuda, measurement};
  nn_train_options options;
  set_options(config, iterations, &options);
  options.callback_user_data = &watch;
  options.step_times_ms = times_ms;
  options.step_times_capacity = iterations;
  nn_train_summary summary = {0};
  char *notice = cli_notice_snapshot(ctx);
  if (status == NN_OK)
    status = nn_model_train(model, dataset, &options, &summary);
  const char *noted = cli_new_notice(ctx, notice);
  snprintf(measurement->notice, sizeof measurement->notice, "%s",
           noted ? noted : "");
  measurement->data_resident = summary.data_resident;
  measurement->steps_graphed = summary.steps_graphed;
  measurement->steps_run = summary.iterations_run;
  measurement->fused_layers = 0;
  for (size_t l = 1; l <= shape->layer_count; l++)
    measurement->fused_layers += (size_t)nn_model_layer_fused(model, l);
  if (status == NN_OK)
    sort_times(times_ms, summary.steps_timed, config->warmup_steps,
               data->batches_per_epoch, measurement);
  nn_dataset_destroy(dataset);
  free(times_ms);
  return status;
}

void bench_measurement_destroy(bench_measurement *measurement) {
  free(measurement->step_seconds);
  free(measurement->epoch_start_seconds);
  measurement->step_seconds = measurement->epoch_start_seconds = NULL;
}
