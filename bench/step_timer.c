/*
 * step_timer.c — the timed training run: nn_model_train with a callback
 * after every iteration, and the host clock between callbacks.
 *
 * Why the host clock measures the step: every step synchronizes once with
 * the device — the cost is read back after its forward pass — while its
 * backward pass and update are queued behind it. So the interval between
 * two callbacks holds the tail of one step and the head of the next: one
 * step of device work in steady state, plus whatever host work is not
 * overlapped. (CUDA events inside the library come with the fast paths.)
 */
#include "bench.h"

#include "../tools/cli.h"

#include <stdlib.h>

const char *bench_timer_description(bool on_cuda) {
  return on_cuda ? "host clock between per-iteration callbacks; each step "
                   "synchronizes with the device once (its cost is read "
                   "back after the forward pass)"
                 : "host clock between per-iteration callbacks (the CPU "
                   "backend runs each step to completion)";
}

typedef struct step_clock {
  const bench_config *config;
  size_t batches_per_epoch;
  bool on_cuda;
  double last; /* when the previous callback returned */
  bench_measurement *measurement;
} step_clock;

/* After the warmup every allocation of the run has been made. */
static void note_memory_after_warmup(step_clock *clock) {
  bench_device_memory *memory = &clock->measurement->memory;
  size_t total = 0;
  if (clock->on_cuda && memory->known)
    memory->known =
        bench_device_free_memory(&memory->free_after_warmup, &total);
}

static void record_step(step_clock *clock, size_t iteration, double seconds) {
  bench_measurement *measurement = clock->measurement;
  /* The first step of an epoch also restarts the batch pipeline (and
   * reshuffles): not a steady-state step. */
  if ((iteration - 1) % clock->batches_per_epoch == 0)
    measurement->epoch_start_seconds[measurement->epoch_start_count++] =
        seconds;
  else
    measurement->step_seconds[measurement->step_count++] = seconds;
}

static int on_progress(const nn_progress *progress, void *user_data) {
  step_clock *clock = user_data;
  double now = cli_now();
  if (progress->epoch_end) {
    clock->last = now;
    return 0;
  }
  size_t warmup = clock->config->warmup_steps;
  if (progress->iteration > warmup)
    record_step(clock, progress->iteration, now - clock->last);
  else if (progress->iteration == warmup)
    note_memory_after_warmup(clock);
  clock->last = cli_now();
  return clock->measurement->step_count >= clock->config->timed_steps;
}

/* Enough epochs for warmup + timed steady steps: at least 2 batches an
 * epoch, so at most every other step starts one. The callback stops the
 * run as soon as the steps are in. */
static size_t epochs_needed(const bench_config *config, size_t batches) {
  size_t iterations = config->warmup_steps + 2 * config->timed_steps + 2;
  return iterations / batches + 2;
}

static bool allocate_times(const bench_config *config,
                           bench_measurement *measurement) {
  /* At least 2 batches an epoch: epoch starts never outnumber the timed
   * steps by more than one. */
  size_t count = config->timed_steps + 2;
  measurement->step_seconds = calloc(count, sizeof(double));
  measurement->epoch_start_seconds = calloc(count, sizeof(double));
  return measurement->step_seconds && measurement->epoch_start_seconds;
}

nn_status bench_time_steps(const bench_config *config, nn_context *ctx,
                           nn_model *model, const bench_data *data,
                           bool on_cuda, bench_measurement *measurement) {
  if (!allocate_times(config, measurement))
    return NN_ERROR_OUT_OF_MEMORY;
  nn_dataset *dataset = NULL;
  const bench_model *shape = &config->model;
  nn_status status =
      nn_dataset_view(ctx, shape->widths[0], shape->widths[shape->layer_count],
                      data->examples, data->x, data->y, &dataset);
  if (status != NN_OK)
    return status;
  step_clock clock = {config, data->batches_per_epoch, on_cuda, cli_now(),
                      measurement};
  nn_train_options options;
  nn_train_options_default(&options);
  options.optimizer.kind = config->optimizer;
  options.learning_rate = (float)BENCH_LEARNING_RATE;
  options.batch_size = config->batch_size;
  options.epochs = epochs_needed(config, data->batches_per_epoch);
  options.seed = config->seed;
  options.iteration_report_every = 1;
  options.callback = on_progress;
  options.callback_user_data = &clock;
  options.data_placement = config->placement;
  nn_train_summary summary = {0};
  status = nn_model_train(model, dataset, &options, &summary);
  measurement->data_resident = summary.data_resident;
  nn_dataset_destroy(dataset);
  /* The callback stops the run once the timed steps are in. */
  return status == NN_ERROR_STOPPED ? NN_OK : status;
}

void bench_measurement_destroy(bench_measurement *measurement) {
  free(measurement->step_seconds);
  free(measurement->epoch_start_seconds);
  measurement->step_seconds = measurement->epoch_start_seconds = NULL;
}
