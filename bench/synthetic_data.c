/*
 * synthetic_data.c — the benchmark's training set: seeded random inputs and
 * labels, sized so host memory stays bounded.
 *
 * Size: as many batches as fit in BENCH_DATA_BUDGET_BYTES of inputs, but at
 * least 2 (one batch would make every step the start of an epoch) and at
 * most warmup + timed steps (then the whole run is one epoch). Larger runs
 * go over the same batches epoch after epoch; step_timer.c leaves the first
 * step of each epoch out of the statistics, since it restarts the streaming
 * pipeline. E.g. small (n[0] = 784) at B = 256: 0.8 MB a batch, all steps
 * in one epoch; large (n[0] = 8192) at B = 8192: 256 MiB a batch, so 2
 * batches, 512 MiB.
 */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>

#define BENCH_DATA_BUDGET_BYTES ((size_t)256 << 20)

/* splitmix64: one 64-bit state, good enough for benchmark inputs. */
static uint64_t next_random(uint64_t *state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static size_t batches_per_epoch(const bench_config *config,
                                size_t batch_bytes) {
  size_t most = config->warmup_steps + config->timed_steps;
  size_t fit = BENCH_DATA_BUDGET_BYTES / batch_bytes;
  size_t batches = fit < most ? fit : most;
  return batches < 2 ? 2 : batches;
}

static void fill(const bench_model *model, bench_data *data, uint64_t seed) {
  const size_t inputs = model->widths[0];
  const size_t classes = model->widths[model->layer_count];
  uint64_t state = seed;
  for (size_t i = 0; i < inputs * data->examples; i++)
    data->x[i] = (float)(next_random(&state) >> 40) * 0x1p-24f;
  for (size_t j = 0; j < data->examples; j++)
    data->y[j * classes + next_random(&state) % classes] = 1.0f;
}

bool bench_data_create(const bench_config *config, bench_data *data,
                       char *error, size_t error_size) {
  const bench_model *model = &config->model;
  const size_t inputs = model->widths[0];
  const size_t classes = model->widths[model->layer_count];
  size_t batch_bytes = 0, examples = 0, x_floats = 0, y_floats = 0;
  bool overflow = __builtin_mul_overflow(inputs * sizeof(float),
                                         config->batch_size, &batch_bytes) ||
                  __builtin_mul_overflow(batches_per_epoch(config, batch_bytes),
                                         config->batch_size, &examples) ||
                  __builtin_mul_overflow(inputs, examples, &x_floats) ||
                  __builtin_mul_overflow(classes, examples, &y_floats);
  *data = (bench_data){0};
  if (!overflow) {
    data->x = malloc(x_floats * sizeof(float));
    data->y = calloc(y_floats, sizeof(float));
  }
  if (overflow || !data->x || !data->y) {
    snprintf(error, error_size,
             "cannot allocate the synthetic data set (%zu inputs × batch "
             "%zu, at least 2 batches)",
             inputs, config->batch_size);
    bench_data_destroy(data);
    return false;
  }
  data->examples = examples;
  data->batches_per_epoch = examples / config->batch_size;
  fill(model, data, config->seed);
  return true;
}

void bench_data_destroy(bench_data *data) {
  free(data->x);
  free(data->y);
  *data = (bench_data){0};
}
