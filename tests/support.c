#include "support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

nn_context *support_cpu_context(void) {
  char message[512];
  nn_context *ctx = NULL;
  nn_status status =
      nn_context_create(NN_BACKEND_CPU, 0, &ctx, message, sizeof message);
  cr_assert_eq(status, NN_OK, "nn_context_create: %s", message);
  return ctx;
}

nn_context *support_gpu_context_or_skip(void) {
  char message[512] = "";
  nn_context *ctx = NULL;
  nn_status status =
      nn_context_create(NN_BACKEND_CUDA, 0, &ctx, message, sizeof message);
  if (status == NN_ERROR_NO_DEVICE || status == NN_ERROR_UNSUPPORTED)
    cr_skip_test("no CUDA device: %s", message);
  cr_assert_eq(status, NN_OK, "nn_context_create(CUDA) -> %s: %s",
               nn_status_str(status), message);
  cr_assert_eq(nn_context_backend(ctx), NN_BACKEND_CUDA);
  return ctx;
}

nn_model *support_model(nn_context *ctx, const size_t *widths, size_t layers,
                        nn_activation hidden, nn_loss loss) {
  nn_layer_spec *specs = calloc(layers, sizeof *specs);
  cr_assert_not_null(specs);
  for (size_t l = 0; l < layers; l++) {
    specs[l].units = widths[l + 1];
    specs[l].activation =
        l + 1 == layers ? nn_loss_output_activation(loss) : hidden;
  }
  nn_model_spec spec = {widths[0], layers, specs, loss};
  nn_model *model = NULL;
  SUPPORT_OK(ctx, nn_model_create(ctx, &spec, &model));
  free(specs);
  return model;
}

int support_close(double a, double b, double tolerance) {
  double scale = fmax(1.0, fmax(fabs(a), fabs(b)));
  return fabs(a - b) <= tolerance * scale;
}

double support_relative_distance(const float *x, const float *reference,
                                 size_t count) {
  double difference = 0.0, norm = 0.0;
  for (size_t k = 0; k < count; k++) {
    double delta = (double)x[k] - reference[k];
    difference += delta * delta;
    norm += (double)reference[k] * reference[k];
  }
  return sqrt(difference / fmax(norm, 1e-300));
}

support_rng support_rng_seeded(uint64_t seed) {
  /* splitmix64 of the seed: never the all-zero state xorshift cannot leave. */
  uint64_t z = seed + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  support_rng rng = {z ? z : 1};
  return rng;
}

double support_rng_uniform(support_rng *rng) {
  rng->state ^= rng->state >> 12;
  rng->state ^= rng->state << 25;
  rng->state ^= rng->state >> 27;
  uint64_t bits = (rng->state * 0x2545F4914F6CDD1Dull) >> 11; /* 53 bits */
  return ((double)bits + 0.5) / 9007199254740992.0;
}

double support_rng_gaussian(support_rng *rng) {
  double u1 = support_rng_uniform(rng), u2 = support_rng_uniform(rng);
  return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

/* As the course draws it: per class j, all N angle noises, then all N
 * radius noises; t = linspace(3.12 j, 3.12 (j+1), N) + 0.2 randn,
 * r = 4 sin(4t) + 0.2 randn, x = (r sin t, r cos t). */
void support_planar_dataset(uint64_t seed, float *x, int32_t *labels) {
  enum { per_class = SUPPORT_PLANAR_EXAMPLES / 2 };
  support_rng rng = support_rng_seeded(seed);
  for (int j = 0; j < 2; j++) {
    double t[per_class], r[per_class];
    for (int i = 0; i < per_class; i++) {
      double start = 3.12 * j, step = 3.12 / (per_class - 1);
      t[i] = start + step * i + 0.2 * support_rng_gaussian(&rng);
    }
    for (int i = 0; i < per_class; i++)
      r[i] = 4.0 * sin(4.0 * t[i]) + 0.2 * support_rng_gaussian(&rng);
    for (int i = 0; i < per_class; i++) {
      size_t column = (size_t)(j * per_class + i);
      x[2 * column] = (float)(r[i] * sin(t[i]));
      x[2 * column + 1] = (float)(r[i] * cos(t[i]));
      labels[column] = j;
    }
  }
}

nn_dataset *support_planar_data(nn_context *ctx, uint64_t seed) {
  float x[2 * SUPPORT_PLANAR_EXAMPLES];
  int32_t labels[SUPPORT_PLANAR_EXAMPLES];
  support_planar_dataset(seed, x, labels);
  nn_dataset *data = NULL;
  SUPPORT_OK(ctx, nn_dataset_create_from_labels(ctx, 2, SUPPORT_PLANAR_EXAMPLES,
                                                x, labels, 1, &data));
  return data;
}

unsigned char *support_read_file(const char *path, size_t *size) {
  FILE *file = fopen(path, "rb");
  cr_assert_not_null(file, "cannot read %s", path);
  cr_assert_eq(fseek(file, 0, SEEK_END), 0);
  *size = (size_t)ftell(file);
  rewind(file);
  unsigned char *bytes = malloc(*size ? *size : 1);
  cr_assert_not_null(bytes);
  cr_assert_eq(fread(bytes, 1, *size, file), *size);
  fclose(file);
  return bytes;
}
