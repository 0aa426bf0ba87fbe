/*
 * test_feeder.c — batch delivery: streaming (producer threads, staging
 * slots, double-buffered device input) and resident data give bit-identical
 * training, with more batches than staging slots, partial last batches,
 * shuffling, dropout, and stops in the middle of an epoch, for any number of
 * producers (NN_FEEDER_THREADS); the streamed batches are the ordered
 * columns of the set. Runs on the CPU and, where there is one, on the GPU.
 */
#include "support.h"

#include "feeder.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* The models' precision and hidden dropout (fp32 and 0.25 unless a test
 * says otherwise; each test runs in its own process). */
static nn_precision model_precision = NN_PRECISION_FP32;
static float model_dropout = 0.25f;

/* A 4-8-3 relu/softmax net, with dropout on the hidden layer. */
static nn_model *make_model(nn_context *ctx) {
  nn_layer_spec layers[] = {{8, NN_ACTIVATION_RELU, model_dropout},
                            {3, NN_ACTIVATION_SOFTMAX, 0.0f}};
  nn_model_spec spec = {FEATURES, 2, layers, NN_LOSS_CATEGORICAL_CROSS_ENTROPY};
  nn_model *model = NULL;
  SUPPORT_OK(ctx, nn_model_create(ctx, &spec, &model));
  SUPPORT_OK(ctx, nn_model_init(model, NN_INIT_HE, 4));
  SUPPORT_OK(ctx, nn_model_set_precision(model, model_precision));
  return model;
}

/* Adam, shuffled batches of `batch` (0: full) for 4 epochs. */
static void train_options(nn_train_options *options,
                          nn_data_placement placement, size_t batch) {
  nn_train_options_default(options);
  options->optimizer.kind = NN_OPTIMIZER_ADAM;
  options->learning_rate = 0.01f;
  options->batch_size = batch;
  options->epochs = 4;
  options->seed = 8;
  options->data_placement = placement;
}

static run_result result_of(nn_context *ctx, nn_model *model,
                            const nn_train_summary *summary) {
  run_result result = {.count = nn_model_parameter_count(model),
                       .final_cost = summary->final_cost,
                       .resident = summary->data_resident,
                       .iterations = summary->iterations_run};
  result.parameters = malloc(result.count * sizeof(float));
  cr_assert_not_null(result.parameters);
  SUPPORT_OK(ctx,
             nn_model_get_parameters(model, result.parameters, result.count));
  return result;
}

/* Trains the model with train_options; stops after `stop_at` iterations if
 * non-zero (the summary then holds the state to resume from). */
static void train_model(nn_context *ctx, nn_model *model,
                        const nn_dataset *data, nn_data_placement placement,
                        size_t batch, size_t stop_at,
                        const nn_train_state *resume,
                        nn_train_summary *summary) {
  nn_train_options options;
  train_options(&options, placement, batch);
  options.resume = resume;
  if (stop_at) {
    options.callback = stop_after;
    options.callback_user_data = &stop_at;
    options.iteration_report_every = 1;
  }
  nn_status status = nn_model_train(model, data, &options, summary);
  cr_assert_eq(status, stop_at ? NN_ERROR_STOPPED : NN_OK, "%s",
               nn_context_last_error(ctx));
}

/* A fresh model trained for 4 epochs; stopped after `stop_at` iterations
 * if non-zero. */
static run_result train(nn_context *ctx, nn_data_placement placement,
                        size_t batch, size_t stop_at) {
  nn_dataset *data = make_data(ctx);
  nn_model *model = make_model(ctx);
  nn_train_summary summary;
  train_model(ctx, model, data, placement, batch, stop_at, NULL, &summary);
  run_result result = result_of(ctx, model, &summary);
  nn_model_destroy(model);
  nn_dataset_destroy(data);
  return result;
}

/* Stopped after `stop_at` iterations, then resumed from the summary's state
 * to the end of the 4 epochs. */
static run_result train_stopped_and_resumed(nn_context *ctx,
                                            nn_data_placement placement,
                                            size_t batch, size_t stop_at) {
  nn_dataset *data = make_data(ctx);
  nn_model *model = make_model(ctx);
  nn_train_summary summary;
  train_model(ctx, model, data, placement, batch, stop_at, NULL, &summary);
  cr_assert_eq(summary.iterations_run, stop_at);
  cr_assert_gt(summary.state.batch, 0, "the stop is in the middle of an epoch");
  nn_train_state state = summary.state;
  train_model(ctx, model, data, placement, batch, 0, &state, &summary);
  run_result result = result_of(ctx, model, &summary);
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

/* ------------------------------------------------------------------------ */
/* Producer threads                                                          */
/* ------------------------------------------------------------------------ */

/* NN_FEEDER_THREADS values the tests pin; the feeder reads the variable
 * when it is created (at the start of each training). Every test runs in
 * its own process, so a value set here does not reach other tests. */
static const size_t PRODUCER_COUNTS[] = {1, 2, 3, 5};
#define PRODUCER_COUNT_CASES (sizeof PRODUCER_COUNTS / sizeof *PRODUCER_COUNTS)

/* A lost wake-up between the producers and the training thread hangs;
 * this turns it into a failure (the tests take well under a second). */
#define HANG_TIMEOUT_S 120

static void set_feeder_setting(const char *value) {
  cr_assert_eq(setenv("NN_FEEDER_THREADS", value, 1), 0);
}

static void set_feeder_threads(size_t threads) {
  char value[32];
  snprintf(value, sizeof value, "%zu", threads);
  set_feeder_setting(value);
}

static size_t smaller(size_t a, size_t b) {
  return a < b ? a : b;
}

/* What the feeder chooses without NN_FEEDER_THREADS: half the online CPUs,
 * 1 to 4, no more than the epoch's batches. */
static size_t default_producers(size_t batches) {
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  size_t half = cpus >= 2 ? (size_t)cpus / 2 : 1;
  return smaller(smaller(half, 4), batches);
}

/* A permutation of 0 .. count-1 (Fisher-Yates on the tests' generator). */
static void shuffled_order(size_t *order, size_t count, uint64_t seed) {
  support_rng rng = support_rng_seeded(seed);
  for (size_t j = 0; j < count; j++)
    order[j] = j;
  for (size_t j = count - 1; j > 0; j--) {
    size_t k = (size_t)(support_rng_uniform(&rng) * (double)(j + 1));
    k = k > j ? j : k;
    size_t kept = order[j];
    order[j] = order[k];
    order[k] = kept;
  }
}

/* delivered (rows × count) must be columns first .. first+count-1 of the
 * order (NULL: in order) taken from all (rows × m). */
static void assert_columns(const float *delivered, const float *all,
                           size_t rows, const size_t *order, size_t first,
                           size_t count, size_t batch) {
  for (size_t j = 0; j < count; j++) {
    size_t column = order ? order[first + j] : first + j;
    cr_assert_eq(
        memcmp(delivered + j * rows, all + column * rows, rows * sizeof(float)),
        0, "batch %zu, column %zu: not example %zu", batch, j, column);
  }
}

/* Begins an epoch at first_batch and takes batches up to end_batch (the
 * epoch's end or a stop before it), checking each against the order. */
static void deliver_and_check(nn_context *ctx, nnlib_feeder *feeder,
                              const nn_dataset *data, size_t batch_size,
                              const size_t *order, size_t first_batch,
                              size_t end_batch) {
  SUPPORT_OK(ctx, nnlib_feeder_begin_epoch(feeder, order, first_batch));
  const size_t m = data->example_count;
  for (size_t b = first_batch; b < end_batch; b++) {
    const float *input = NULL, *targets = NULL;
    size_t count = 0;
    SUPPORT_OK(ctx, nnlib_feeder_next(feeder, &input, &targets, &count));
    size_t first = b * batch_size;
    cr_assert_eq(count, smaller(batch_size, m - first), "batch %zu", b);
    /* On the CPU the backend's memory is host memory: readable here. */
    assert_columns(input, data->x, data->input_width, order, first, count, b);
    assert_columns(targets, data->y, data->target_width, order, first, count,
                   b);
    SUPPORT_OK(ctx, nnlib_feeder_release(feeder));
  }
}

static nnlib_feeder *streaming_feeder(nn_context *ctx, nn_model *model,
                                      const nn_dataset *data,
                                      size_t batch_size) {
  nnlib_feeder *feeder = NULL;
  SUPPORT_OK(ctx, nnlib_feeder_create(model, data, batch_size,
                                      NN_DATA_STREAMING, &feeder));
  cr_assert_eq(nnlib_feeder_is_resident(feeder), 0);
  return feeder;
}

/* Epochs of 17 batches (the last of 3) through threads + 2 slots: whole,
 * stopped after 7 batches, resumed at 7 with another order, at 15 in
 * order, at the end, and whole again. Each epoch's batches must be its own
 * order's columns, whatever the stopped epoch had gathered. */
static void check_epochs_of_five(nn_context *ctx, nn_model *model,
                                 const nn_dataset *data, size_t threads) {
  size_t orders[4][EXAMPLES];
  for (size_t e = 0; e < 4; e++)
    shuffled_order(orders[e], EXAMPLES, 100 + e);
  nnlib_feeder *feeder = streaming_feeder(ctx, model, data, 5);
  cr_assert_eq(nnlib_feeder_staging_slots(feeder), threads + 2);
  cr_assert_eq(nnlib_feeder_producers(feeder), 0, "none before an epoch");
  deliver_and_check(ctx, feeder, data, 5, orders[0], 0, 17);
  cr_assert_eq(nnlib_feeder_producers(feeder), threads);
  deliver_and_check(ctx, feeder, data, 5, orders[1], 0, 7);
  deliver_and_check(ctx, feeder, data, 5, orders[2], 7, 17);
  cr_assert_eq(nnlib_feeder_producers(feeder), threads, "10 batches left");
  deliver_and_check(ctx, feeder, data, 5, NULL, 15, 17);
  cr_assert_eq(nnlib_feeder_producers(feeder), smaller(threads, 2));
  SUPPORT_OK(ctx, nnlib_feeder_begin_epoch(feeder, orders[3], 17));
  cr_assert_eq(nnlib_feeder_producers(feeder), 0, "no batch left");
  const float *input = NULL, *targets = NULL;
  size_t count = 0;
  cr_assert_eq(nnlib_feeder_next(feeder, &input, &targets, &count),
               NN_ERROR_STATE, "a batch past the epoch's end");
  deliver_and_check(ctx, feeder, data, 5, orders[3], 0, 17);
  nnlib_feeder_destroy(feeder);
}

/* 83 single-column batches for several epochs, stopped and resumed at
 * varying points: many slot turns for the producers to race through. Every
 * epoch stopped early is followed by one in order (order NULL), which the
 * stopped epoch's producers must not see. */
static void check_epochs_of_one(nn_context *ctx, nn_model *model,
                                const nn_dataset *data) {
  size_t orders[2][EXAMPLES]; /* the last epoch's stays valid until begin */
  nnlib_feeder *feeder = streaming_feeder(ctx, model, data, 1);
  for (size_t e = 0; e < 12; e++) {
    size_t *order = orders[e % 2];
    shuffled_order(order, EXAMPLES, 200 + e);
    size_t first = (e * 29) % 50, end = e % 3 == 0 ? first + 20 : EXAMPLES;
    deliver_and_check(ctx, feeder, data, 1, e % 3 == 1 ? NULL : order, first,
                      end);
  }
  nnlib_feeder_destroy(feeder);
}

Test(feeder, cpu_streamed_batches_are_the_ordered_columns,
     .timeout = HANG_TIMEOUT_S) {
  nn_context *ctx = support_cpu_context();
  nn_dataset *data = make_data(ctx);
  nn_model *model = make_model(ctx);
  for (size_t k = 0; k < PRODUCER_COUNT_CASES; k++) {
    set_feeder_threads(PRODUCER_COUNTS[k]);
    check_epochs_of_five(ctx, model, data, PRODUCER_COUNTS[k]);
    check_epochs_of_one(ctx, model, data);
  }
  nn_model_destroy(model);
  nn_dataset_destroy(data);
  nn_context_destroy(ctx);
}

Test(feeder, cpu_streaming_equals_resident_for_any_producer_count,
     .timeout = HANG_TIMEOUT_S) {
  nn_context *ctx = support_cpu_context();
  for (size_t k = 0; k < PRODUCER_COUNT_CASES; k++) {
    set_feeder_threads(PRODUCER_COUNTS[k]);
    compare_placements(ctx, 5, 0); /* 17 batches through 3 to 7 slots */
    compare_placements(ctx, 1, 0); /* 83 batches */
    compare_placements(ctx, 5, 23);
    run_result whole = train(ctx, NN_DATA_RESIDENT, 5, 0);
    /* Resumed at batch 6 of epoch 1, and at batch 16 (one batch left). */
    const size_t stops[] = {23, 16};
    for (size_t s = 0; s < 2; s++) {
      run_result resumed =
          train_stopped_and_resumed(ctx, NN_DATA_STREAMING, 5, stops[s]);
      assert_identical(&resumed, &whole);
      free(resumed.parameters);
    }
    free(whole.parameters);
  }
  nn_context_destroy(ctx);
}

/* NN_FEEDER_THREADS in 1 .. 16 sets the producers (no more than the
 * batches); anything else leaves the default. */
Test(feeder, cpu_producer_count_follows_the_setting,
     .timeout = HANG_TIMEOUT_S) {
  nn_context *ctx = support_cpu_context();
  nn_dataset *data = make_data(ctx);
  nn_model *model = make_model(ctx);
  const char *ignored[] = {"0", "17", "-2", "3x", "", "abc", " 2"};
  const size_t ignored_count = sizeof ignored / sizeof *ignored;
  for (size_t k = 0; k <= ignored_count; k++) { /* the last: unset */
    if (k < ignored_count)
      set_feeder_setting(ignored[k]);
    else
      cr_assert_eq(unsetenv("NN_FEEDER_THREADS"), 0);
    nnlib_feeder *feeder = streaming_feeder(ctx, model, data, 5);
    SUPPORT_OK(ctx, nnlib_feeder_begin_epoch(feeder, NULL, 0));
    cr_assert_eq(nnlib_feeder_producers(feeder), default_producers(17),
                 "NN_FEEDER_THREADS=\"%s\"",
                 k < ignored_count ? ignored[k] : "(unset)");
    nnlib_feeder_destroy(feeder);
  }
  set_feeder_threads(16);
  nnlib_feeder *feeder = streaming_feeder(ctx, model, data, 5);
  cr_assert_eq(nnlib_feeder_staging_slots(feeder), 17, "no more than batches");
  deliver_and_check(ctx, feeder, data, 5, NULL, 0, 17);
  cr_assert_eq(nnlib_feeder_producers(feeder), 16);
  nnlib_feeder_destroy(feeder);

  set_feeder_threads(5);
  feeder = streaming_feeder(ctx, model, data, 30); /* 30, 30, 23 */
  cr_assert_eq(nnlib_feeder_staging_slots(feeder), 3);
  deliver_and_check(ctx, feeder, data, 30, NULL, 0, 3);
  cr_assert_eq(nnlib_feeder_producers(feeder), 3, "one per batch");
  deliver_and_check(ctx, feeder, data, 30, NULL, 2, 3);
  cr_assert_eq(nnlib_feeder_producers(feeder), 1, "one batch left");
  nnlib_feeder_destroy(feeder);

  nnlib_feeder *resident = NULL;
  SUPPORT_OK(ctx,
             nnlib_feeder_create(model, data, 5, NN_DATA_RESIDENT, &resident));
  SUPPORT_OK(ctx, nnlib_feeder_begin_epoch(resident, NULL, 0));
  cr_assert_eq(nnlib_feeder_producers(resident), 0);
  cr_assert_eq(nnlib_feeder_staging_slots(resident), 0);
  nnlib_feeder_destroy(resident);
  nn_model_destroy(model);
  nn_dataset_destroy(data);
  nn_context_destroy(ctx);
}

/* Stopped and resumed the same way, streaming and resident, bit for bit
 * (this compares the placements, whether or not a resume on the device is
 * exact). */
static void compare_resumed_placements(nn_context *ctx, size_t batch,
                                       size_t stop) {
  run_result streamed =
      train_stopped_and_resumed(ctx, NN_DATA_STREAMING, batch, stop);
  run_result resident =
      train_stopped_and_resumed(ctx, NN_DATA_RESIDENT, batch, stop);
  assert_identical(&streamed, &resident);
  free(streamed.parameters);
  free(resident.parameters);
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

/* bf16: resident batches are gathered (or, in order, converted) straight
 * into layer 1's bf16 copy, streamed ones converted by the forward pass;
 * the bits are the same. With dropout (plain products, eager steps) and
 * without (the hidden layer fused, steps replayed as graphs); shuffled,
 * in order (one full batch) and stopped then resumed. */
Test(feeder, gpu_bf16_streaming_equals_resident) {
  nn_context *ctx = gpu_context_or_null();
  if (!ctx)
    cr_skip_test("no usable CUDA device: GPU streaming test not run");
  model_precision = NN_PRECISION_BF16;
  const float dropouts[2] = {0.25f, 0.0f};
  for (int d = 0; d < 2; d++) {
    model_dropout = dropouts[d];
    compare_placements(ctx, 5, 0);
    compare_placements(ctx, 0, 0);
    compare_resumed_placements(ctx, 5, 23);
  }
  nn_context_destroy(ctx);
}

/* Real asynchronous copies: slots are recycled only after their upload
 * events, for every number of producers. */
Test(feeder, gpu_streaming_equals_resident_for_any_producer_count,
     .timeout = HANG_TIMEOUT_S) {
  nn_context *ctx = gpu_context_or_null();
  if (!ctx)
    cr_skip_test("no usable CUDA device: GPU streaming test not run");
  for (size_t k = 0; k < PRODUCER_COUNT_CASES; k++) {
    set_feeder_threads(PRODUCER_COUNTS[k]);
    compare_placements(ctx, 5, 0);
    compare_placements(ctx, 1, 0);
    compare_resumed_placements(ctx, 5, 23);
    compare_resumed_placements(ctx, 5, 16);
  }
  nn_context_destroy(ctx);
}
