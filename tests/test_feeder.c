/*
 * test_feeder.c — batch delivery: streaming (producer thread, staging slots,
 * double-buffered device input) and resident data give bit-identical
 * training, with more batches than staging slots, partial last batches,
 * shuffling, dropout, and stops in the middle of an epoch. Runs on the CPU
 * and, where there is one, on the GPU.
 */
#include "support.h"

#include <stdlib.h>
#include <string.h>

#define FEATURES 4
#define EXAMPLES 83 /* with batch 5: 17 batches, the last of 3 */

typedef struct run_result {
  float *parameters;
  size_t count;
  double final_cost;
  int resident;
  size_t iterations;
} run_result;

static nn_dataset *make_data(nn_context *ctx) {
  float x[FEATURES * EXAMPLES];
  int32_t labels[EXAMPLES];
  support_rng rng = support_rng_seeded(21);
  for (size_t j = 0; j < EXAMPLES; j++) {
    float total = 0;
    for (size_t i = 0; i < FEATURES; i++) {
      x[j * FEATURES + i] = (float)support_rng_gaussian(&rng);
      total += x[j * FEATURES + i];
    }
    labels[j] = total > 0.5f ? 2 : (total > -0.5f ? 1 : 0);
  }
  nn_dataset *data = NULL;
  SUPPORT_OK(ctx, nn_dataset_create_from_labels(ctx, FEATURES, EXAMPLES, x,
                                                labels, 3, &data));
  return data;
}

static int stop_after(const nn_progress *progress, void *user_data) {
  const size_t *limit = user_data;
  return !progress->epoch_end && progress->iteration == *limit;
}

/* Trains a 4-8-3 relu/softmax net with dropout, Adam, shuffled batches of
 * `batch` (0: full) for 4 epochs; stops after `stop_at` iterations if
 * non-zero. */
static run_result train(nn_context *ctx, nn_data_placement placement,
                        size_t batch, size_t stop_at) {
  nn_dataset *data = make_data(ctx);
  nn_layer_spec layers[] = {{8, NN_ACTIVATION_RELU, 0.25f},
                            {3, NN_ACTIVATION_SOFTMAX, 0.0f}};
  nn_model_spec spec = {FEATURES, 2, layers, NN_LOSS_CATEGORICAL_CROSS_ENTROPY};
  nn_model *model = NULL;
  SUPPORT_OK(ctx, nn_model_create(ctx, &spec, &model));
  SUPPORT_OK(ctx, nn_model_init(model, NN_INIT_HE, 4));
  nn_train_options options;
  nn_train_options_default(&options);
  options.optimizer.kind = NN_OPTIMIZER_ADAM;
  options.learning_rate = 0.01f;
  options.batch_size = batch;
  options.epochs = 4;
  options.seed = 8;
  options.data_placement = placement;
  if (stop_at) {
    options.callback = stop_after;
    options.callback_user_data = &stop_at;
    options.iteration_report_every = 1;
  }
  nn_train_summary summary;
  nn_status status = nn_model_train(model, data, &options, &summary);
  cr_assert_eq(status, stop_at ? NN_ERROR_STOPPED : NN_OK, "%s",
               nn_context_last_error(ctx));
  run_result result = {.count = nn_model_parameter_count(model),
                       .final_cost = summary.final_cost,
                       .resident = summary.data_resident,
                       .iterations = summary.iterations_run};
  result.parameters = malloc(result.count * sizeof(float));
  cr_assert_not_null(result.parameters);
  SUPPORT_OK(ctx,
             nn_model_get_parameters(model, result.parameters, result.count));
  nn_model_destroy(model);
  nn_dataset_destroy(data);
  return result;
}

static void assert_identical(const run_result *a, const run_result *b) {
  cr_assert_eq(a->count, b->count);
  cr_assert_eq(a->iterations, b->iterations);
  cr_assert_eq(a->final_cost, b->final_cost, "cost %.17g vs %.17g",
               a->final_cost, b->final_cost);
  cr_assert_eq(memcmp(a->parameters, b->parameters, a->count * sizeof(float)),
               0, "parameters differ between streaming and resident data");
}

/* Streaming and resident runs of the same training, bit for bit. */
static void compare_placements(nn_context *ctx, size_t batch, size_t stop) {
  run_result streamed = train(ctx, NN_DATA_STREAMING, batch, stop);
  run_result resident = train(ctx, NN_DATA_RESIDENT, batch, stop);
  cr_assert_eq(streamed.resident, 0);
  cr_assert_eq(resident.resident, 1);
  assert_identical(&streamed, &resident);
  free(streamed.parameters);
  free(resident.parameters);
}

/* The GPU context when there is a usable GPU, else NULL. Only "no device"
 * and "no code for this device" mean there is none: any other failure on a
 * machine with a GPU (cuBLAS, streams, memory) is a failure of the test, not
 * a reason to skip it. */
static nn_context *gpu_context_or_null(void) {
  nn_context *ctx = NULL;
  char message[512] = "";
  nn_status status =
      nn_context_create(NN_BACKEND_CUDA, 0, &ctx, message, sizeof message);
  if (status == NN_ERROR_NO_DEVICE || status == NN_ERROR_UNSUPPORTED)
    return NULL;
  cr_assert_eq(status, NN_OK, "nn_context_create(CUDA) -> %s: %s",
               nn_status_str(status), message);
  return ctx;
}

Test(feeder, cpu_streaming_equals_resident_with_many_batches) {
  nn_context *ctx = support_cpu_context();
  compare_placements(ctx, 5, 0); /* 17 batches through 3 staging slots */
  compare_placements(ctx, 1, 0); /* 83 single-example batches */
  compare_placements(ctx, 0, 0); /* full batch: in order, no gather */
  nn_context_destroy(ctx);
}

Test(feeder, cpu_stop_mid_epoch_leaves_nothing_running) {
  nn_context *ctx = support_cpu_context();
  compare_placements(ctx, 5, 23); /* stops in the second epoch */
  run_result once = train(ctx, NN_DATA_STREAMING, 5, 23);
  cr_assert_eq(once.iterations, 23);
  free(once.parameters);
  nn_context_destroy(ctx);
}

Test(feeder, cpu_auto_streams) {
  nn_context *ctx = support_cpu_context();
  run_result automatic = train(ctx, NN_DATA_AUTO, 5, 0);
  run_result streamed = train(ctx, NN_DATA_STREAMING, 5, 0);
  cr_assert_eq(automatic.resident, 0, "the CPU backend streams under AUTO");
  assert_identical(&automatic, &streamed);
  free(automatic.parameters);
  free(streamed.parameters);
  nn_context_destroy(ctx);
}

Test(feeder, gpu_streaming_equals_resident) {
  nn_context *ctx = gpu_context_or_null();
  if (!ctx)
    cr_skip_test("no usable CUDA device: GPU streaming test not run");
  compare_placements(ctx, 5, 0);
  compare_placements(ctx, 1, 0);
  compare_placements(ctx, 5, 23);
  nn_context_destroy(ctx);
}
