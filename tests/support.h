/*
 * support.h — helpers shared by the tests: a CPU context per test, tiny
 * models from a list of widths, and float comparisons.
 */
#ifndef NN_TEST_SUPPORT_H
#define NN_TEST_SUPPORT_H

#include <criterion/criterion.h>
#include <nn.h>
#include <stdint.h>

/* A CPU context; fails the test if it cannot be made. */
nn_context *support_cpu_context(void);

/* The CUDA context on device 0, or the test skips saying why (nothing is
 * allocated before the skip). */
nn_context *support_gpu_context_or_skip(void);

/* A model with hidden widths/activations and an output layer fitting loss.
 * widths[0] is n_x, widths[1..layers] the layer widths; every hidden layer
 * uses `hidden`. Fails the test on error. */
nn_model *support_model(nn_context *ctx, const size_t *widths, size_t layers,
                        nn_activation hidden, nn_loss loss);

/* Asserts that status is NN_OK, printing the context's error otherwise. */
#define SUPPORT_OK(ctx, expr)                                                  \
  do {                                                                         \
    nn_status support_status_ = (expr);                                        \
    cr_assert_eq(support_status_, NN_OK, "%s -> %s: %s", #expr,                \
                 nn_status_str(support_status_), nn_context_last_error(ctx));  \
  } while (0)

/* |a - b| <= tolerance · max(1, |a|, |b|). */
int support_close(double a, double b, double tolerance);

/* ||x − reference|| / ||reference|| over count floats (2-norms, in
 * double): how far a whole output or gradient is from its reference. */
double support_relative_distance(const float *x, const float *reference,
                                 size_t count);

/* A small seeded generator for test data (xorshift64*), independent of the
 * library's generators so that data never depends on what is under test. */
typedef struct support_rng {
  uint64_t state;
} support_rng;

support_rng support_rng_seeded(uint64_t seed);
/* Uniform in (0, 1). */
double support_rng_uniform(support_rng *rng);
/* Standard normal, by Box-Muller. */
double support_rng_gaussian(support_rng *rng);

/* The course's planar "flower" data set (load_planar_dataset): m = 400
 * examples, 200 per class; x is (2 × 400) column-major, labels 0 or 1. */
#define SUPPORT_PLANAR_EXAMPLES 400
void support_planar_dataset(uint64_t seed, float *x, int32_t *labels);
/* The same as an nn_dataset on ctx (targets 0/1, one output). */
nn_dataset *support_planar_data(nn_context *ctx, uint64_t seed);

/* The bytes of the file at path (malloc'd; *size gets their count). */
unsigned char *support_read_file(const char *path, size_t *size);

#endif
