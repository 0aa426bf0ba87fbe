/*
 * test_shuffle.c — the seeded permutation behind mini-batches, and what it
 * means for training: reproducible runs, seeds that matter, full batch when
 * the batch holds all of m, and a last partial batch that is counted right.
 */
#include "support.h"

#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static size_t *allocate_order(size_t count) {
  size_t *order = calloc(count, sizeof *order);
  cr_assert_not_null(order);
  return order;
}

/* ------------------------------------------------------------------------ */
/* nnlib_permutation                                                         */
/* ------------------------------------------------------------------------ */

/* Every index 0..count-1 exactly once, for sizes down to 1 and 2. */
Test(shuffle, permutation_holds_every_index_once) {
  const size_t sizes[] = {1, 2, 3, 8, 37, 1000};
  const uint64_t seeds[] = {0, 1, 42, UINT64_MAX};
  for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
    for (size_t t = 0; t < sizeof seeds / sizeof seeds[0]; t++) {
      const size_t count = sizes[s];
      size_t *order = allocate_order(count);
      size_t *seen = allocate_order(count);
      nnlib_permutation(order, count, seeds[t]);
      for (size_t i = 0; i < count; i++) {
        cr_assert_lt(order[i], count, "n = %zu: order[%zu] = %zu", count, i,
                     order[i]);
        seen[order[i]]++;
      }
      for (size_t i = 0; i < count; i++)
        cr_assert_eq(seen[i], 1, "n = %zu, seed %llu: %zu appears %zu times",
                     count, (unsigned long long)seeds[t], i, seen[i]);
      free(order);
      free(seen);
    }
}

Test(shuffle, same_seed_same_order_other_seed_other_order) {
  enum { COUNT = 37 };
  size_t first[COUNT], again[COUNT], other[COUNT];
  for (uint64_t seed = 1; seed <= 20; seed++) {
    nnlib_permutation(first, COUNT, seed);
    nnlib_permutation(again, COUNT, seed);
    nnlib_permutation(other, COUNT, seed + 1);
    cr_assert_arr_eq(first, again, sizeof first, "seed %llu",
                     (unsigned long long)seed);
    cr_assert_arr_neq(first, other, sizeof first, "seeds %llu and %llu",
                      (unsigned long long)seed, (unsigned long long)seed + 1);
  }
}

/* A shuffle that moved nothing, or little, would pass the tests above: a
 * random permutation of 1000 has ~1 fixed point on average. */
Test(shuffle, permutation_moves_almost_everything) {
  enum { COUNT = 1000 };
  size_t *order = allocate_order(COUNT);
  nnlib_permutation(order, COUNT, 5);
  size_t fixed = 0;
  for (size_t i = 0; i < COUNT; i++)
    fixed += order[i] == i;
  cr_assert_lt(fixed, 10, "%zu of %d indices stay in place", fixed, COUNT);
  free(order);
}

/* Each of the 3! orders of three elements is drawn 1/6 of the time over
 * 60 000 seeds (10 000 ± 91 each, so ±5% is 5.5 standard deviations).
 * The classic mistakes are far outside: the naive shuffle that swaps with
 * any position draws some orders 4/27 and others 5/27 of the time (±20%),
 * and Sattolo's off-by-one never draws the three orders with fixed points. */
Test(shuffle, permutation_of_three_is_uniform) {
  enum { SEEDS = 60000, ORDERS = 6 };
  size_t counts[ORDERS] = {0};
  for (uint64_t seed = 0; seed < SEEDS; seed++) {
    size_t order[3];
    nnlib_permutation(order, 3, seed);
    /* Lehmer code: which of 3 comes first, then which of the other 2. */
    size_t second = order[1] > order[0] ? order[1] - 1 : order[1];
    counts[order[0] * 2 + second]++;
  }
  for (size_t k = 0; k < ORDERS; k++)
    cr_assert(fabs((double)counts[k] / (SEEDS / ORDERS) - 1.0) < 0.05,
              "order %zu drawn %zu times of %d", k, counts[k], SEEDS);
}

Test(shuffle, permutation_of_two_is_fair) {
  enum { SEEDS = 60000 };
  size_t swapped = 0;
  for (uint64_t seed = 0; seed < SEEDS; seed++) {
    size_t order[2];
    nnlib_permutation(order, 2, seed);
    swapped += order[0] == 1;
  }
  /* 30 000 ± 122: ±3% is 7 standard deviations. */
  cr_assert(fabs((double)swapped / (SEEDS / 2) - 1.0) < 0.03,
            "swapped %zu times of %d", swapped, SEEDS);
}

/* ------------------------------------------------------------------------ */
/* Training with mini-batches                                                */
/* ------------------------------------------------------------------------ */

/* m random examples of 3 inputs with 0/1 targets, for a 3-4-1 network. */
static nn_dataset *random_dataset(nn_context *ctx, size_t m, uint64_t seed) {
  float *x = calloc(3 * m, sizeof *x), *y = calloc(m, sizeof *y);
  cr_assert(x && y);
  support_rng rng = support_rng_seeded(seed);
  for (size_t k = 0; k < 3 * m; k++)
    x[k] = (float)(2.0 * support_rng_uniform(&rng) - 1.0);
  for (size_t j = 0; j < m; j++)
    y[j] = (float)(support_rng_uniform(&rng) < 0.5);
  nn_dataset *data = NULL;
  SUPPORT_OK(ctx, nn_dataset_create(ctx, 3, 1, m, x, y, &data));
  free(x);
  free(y);
  return data;
}

/* A 3-4-1 tanh network with every parameter non-zero (biases included, so
 * that a learning rate too small to move them leaves all of them alone). */
static nn_model *fresh_model(nn_context *ctx) {
  const size_t widths[] = {3, 4, 1};
  nn_model *model = support_model(ctx, widths, 2, NN_ACTIVATION_TANH,
                                  NN_LOSS_BINARY_CROSS_ENTROPY);
  const size_t count = nn_model_parameter_count(model);
  float *values = calloc(count, sizeof *values);
  cr_assert_not_null(values);
  support_rng rng = support_rng_seeded(77);
  for (size_t k = 0; k < count; k++)
    values[k] = (float)(1.2 * support_rng_uniform(&rng) - 0.6);
  SUPPORT_OK(ctx, nn_model_set_parameters(model, values, count));
  free(values);
  return model;
}

static float *read_parameters(nn_context *ctx, const nn_model *model) {
  size_t count = nn_model_parameter_count(model);
  float *values = calloc(count, sizeof *values);
  cr_assert_not_null(values);
  SUPPORT_OK(ctx, nn_model_get_parameters(model, values, count));
  return values;
}

/* Trains a fresh model (always the same start) with Adam for 5 epochs and
 * returns its parameters. */
static float *train_fresh(nn_context *ctx, const nn_dataset *data,
                          size_t batch_size, uint64_t seed) {
  nn_model *model = fresh_model(ctx);
  nn_train_options options;
  nn_train_options_default(&options);
  options.optimizer.kind = NN_OPTIMIZER_ADAM;
  options.learning_rate = 0.01f;
  options.epochs = 5;
  options.batch_size = batch_size;
  options.seed = seed;
  SUPPORT_OK(ctx, nn_model_train(model, data, &options, NULL));
  float *values = read_parameters(ctx, model);
  nn_model_destroy(model);
  return values;
}

/* m = 37 in batches of 8: four full batches and a last one of 5. */
Test(shuffle, training_is_reproducible_and_seed_dependent) {
  nn_context *ctx = support_cpu_context();
  nn_dataset *data = random_dataset(ctx, 37, 3);
  float *first = train_fresh(ctx, data, 8, 11);
  float *again = train_fresh(ctx, data, 8, 11);
  float *other = train_fresh(ctx, data, 8, 12);
  const size_t bytes = 21 * sizeof(float); /* 3·4 + 4 + 4·1 + 1 */
  cr_assert_arr_eq(first, again, bytes, "same seed, different parameters");
  cr_assert_arr_neq(first, other, bytes, "the seed did not change the order");
  free(first);
  free(again);
  free(other);
  nn_dataset_destroy(data);
  nn_context_destroy(ctx);
}

/* A batch of m or more is one batch in data order: the course's loop. */
Test(shuffle, batch_of_m_or_more_is_full_batch) {
  nn_context *ctx = support_cpu_context();
  nn_dataset *data = random_dataset(ctx, 37, 3);
  float *full = train_fresh(ctx, data, 0, 11);
  float *exact = train_fresh(ctx, data, 37, 11);
  float *larger = train_fresh(ctx, data, 100, 12);
  float *mini = train_fresh(ctx, data, 8, 11);
  const size_t bytes = 21 * sizeof(float);
  cr_assert_arr_eq(full, exact, bytes, "batch 37 differs from full batch");
  cr_assert_arr_eq(full, larger, bytes, "batch 100 differs from full batch");
  cr_assert_arr_neq(full, mini, bytes, "batch 8 equals full batch");
  free(full);
  free(exact);
  free(larger);
  free(mini);
  nn_dataset_destroy(data);
  nn_context_destroy(ctx);
}

/* ------------------------------------------------------------------------ */
/* The last, partial batch                                                   */
/* ------------------------------------------------------------------------ */

enum { MAX_REPORTS = 16 };

typedef struct progress_log {
  size_t count;
  nn_progress reports[MAX_REPORTS];
} progress_log;

static int record_progress(const nn_progress *progress, void *user_data) {
  progress_log *log = user_data;
  cr_assert_lt(log->count, MAX_REPORTS, "more reports than expected");
  log->reports[log->count++] = *progress;
  return 0;
}

/* m = 10 in batches of 4 (4, 4, 2) with gd, no L2, for 2 epochs, every
 * iteration reported. */
static progress_log train_ten_in_fours(nn_context *ctx, nn_model *model,
                                       const nn_dataset *data,
                                       float learning_rate) {
  progress_log log = {0};
  nn_train_options options;
  nn_train_options_default(&options);
  options.learning_rate = learning_rate;
  options.epochs = 2;
  options.batch_size = 4;
  options.iteration_report_every = 1;
  options.callback = record_progress;
  options.callback_user_data = &log;
  nn_train_summary summary;
  SUPPORT_OK(ctx, nn_model_train(model, data, &options, &summary));
  cr_assert_eq(summary.epochs_run, 2);
  cr_assert_eq(summary.iterations_run, 6, "%zu iterations for 2 epochs",
               summary.iterations_run);
  return log;
}

/* Per epoch: three iteration reports, then the epoch's report; each counts
 * the updates done so far (this one included), across epochs. */
static void assert_report_sequence(const progress_log *log) {
  cr_assert_eq(log->count, 8, "%zu reports", log->count);
  for (size_t epoch = 0; epoch < 2; epoch++) {
    const nn_progress *reports = log->reports + 4 * epoch;
    for (size_t b = 0; b < 3; b++) {
      cr_assert_eq(reports[b].epoch_end, 0);
      cr_assert_eq(reports[b].epoch, epoch);
      cr_assert_eq(reports[b].iteration, 3 * epoch + b + 1,
                   "epoch %zu, batch %zu: iteration %zu", epoch, b,
                   reports[b].iteration);
    }
    cr_assert_eq(reports[3].epoch_end, 1, "epoch %zu: a 4th batch", epoch);
    cr_assert_eq(reports[3].epoch, epoch);
    cr_assert_eq(reports[3].iteration, 3 * (epoch + 1));
  }
}

/* (4 c1 + 4 c2 + 2 c3) / 10: each batch cost weighted by its examples. */
static double weighted_batch_cost(const nn_progress *reports) {
  return (4.0 * reports[0].cost + 4.0 * reports[1].cost +
          2.0 * reports[2].cost) /
         10.0;
}

Test(shuffle, epoch_cost_weights_the_partial_batch) {
  nn_context *ctx = support_cpu_context();
  nn_dataset *data = random_dataset(ctx, 10, 4);
  nn_model *model = fresh_model(ctx);
  progress_log log = train_ten_in_fours(ctx, model, data, 0.1f);
  assert_report_sequence(&log);
  for (size_t epoch = 0; epoch < 2; epoch++) {
    const nn_progress *reports = log.reports + 4 * epoch;
    double weighted = weighted_batch_cost(reports);
    double unweighted =
        (reports[0].cost + reports[1].cost + reports[2].cost) / 3.0;
    cr_assert(support_close(reports[3].cost, weighted, 1e-12),
              "epoch %zu: cost %.17g, weighted batch mean %.17g", epoch,
              reports[3].cost, weighted);
    /* The data must make the weighting visible, or this proves nothing. */
    cr_assert_gt(fabs(weighted - unweighted), 1e-4,
                 "batch costs too alike to tell the means apart");
  }
  nn_model_destroy(model);
  nn_dataset_destroy(data);
  nn_context_destroy(ctx);
}

/* With a learning rate too small to change any float parameter, every
 * batch cost is taken at the same parameters, and since the batches
 * partition the data, 4 c1 + 4 c2 + 2 c3 = 10 J(all ten examples): true only
 * if the last batch holds exactly the two examples not drawn yet (not stale
 * columns of the previous batch, nor a repeat). */
Test(shuffle, partial_batch_holds_the_remaining_examples) {
  nn_context *ctx = support_cpu_context();
  nn_dataset *data = random_dataset(ctx, 10, 4);
  nn_model *model = fresh_model(ctx);
  float *before = read_parameters(ctx, model);
  float full_cost = 0.0f;
  SUPPORT_OK(ctx,
             nn_model_forward(model, nn_dataset_inputs(data), 10, 0, NULL));
  SUPPORT_OK(ctx, nn_model_cost(model, nn_dataset_targets(data), 10, 0.0f,
                                &full_cost));
  progress_log log = train_ten_in_fours(ctx, model, data, 1e-30f);
  float *after = read_parameters(ctx, model);
  cr_assert_arr_eq(before, after, 21 * sizeof(float),
                   "the parameters moved: the premise does not hold");
  assert_report_sequence(&log);
  for (size_t epoch = 0; epoch < 2; epoch++) {
    const nn_progress *reports = log.reports + 4 * epoch;
    cr_assert(support_close(weighted_batch_cost(reports), full_cost, 1e-6),
              "epoch %zu: batches give %.9g, all ten examples %.9g", epoch,
              weighted_batch_cost(reports), (double)full_cost);
    cr_assert(support_close(reports[3].cost, full_cost, 1e-6),
              "epoch %zu: epoch cost %.9g, all ten examples %.9g", epoch,
              reports[3].cost, (double)full_cost);
    cr_assert(fabs(reports[2].cost - full_cost) > 1e-3,
              "the last batch costs what all ten do: it proves nothing");
  }
  /* Each epoch draws a new order, so the same frozen parameters give other
   * batch costs in epoch 2. */
  cr_assert(log.reports[0].cost != log.reports[4].cost ||
                log.reports[2].cost != log.reports[6].cost,
            "epoch 2 repeated epoch 1's batches");
  free(before);
  free(after);
  nn_model_destroy(model);
  nn_dataset_destroy(data);
  nn_context_destroy(ctx);
}
