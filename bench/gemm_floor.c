/*
 * gemm_floor.c — the gemm floor: the time the step's matrix products alone
 * take at the step's shapes, so the report shows how close the whole step
 * comes to the work it cannot avoid. This file: the list of products and
 * the CPU floor (OpenBLAS, host clock); gemm_floor_cuda.c times them with
 * cuBLAS.
 */
#include "gemm_floor.h"

#include "../tools/cli.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>

floor_sizes floor_arena_sizes(const bench_model *model, size_t batch) {
  floor_sizes sizes = {0};
  size_t widest = 0;
  for (size_t l = 1; l <= model->layer_count; l++) {
    size_t n = model->widths[l], n_prev = model->widths[l - 1];
    sizes.weights += n * n_prev;
    sizes.activations += (n_prev + n) * batch; /* A[l-1] and Z[l] */
    widest = n_prev > widest ? n_prev : widest;
  }
  sizes.scratch = widest * batch;
  return sizes;
}

/* C (m × n) = alpha · op(A) · op(B), column-major: the argument order of
 * cblas_sgemm and cublasSgemm, so each call below reads like the backend's. */
static floor_gemm product(bool transpose_a, bool transpose_b, int m, int n,
                          int k, float alpha, const float *a, int lda,
                          const float *b, int ldb, float *c, int ldc) {
  floor_gemm gemm = {.transpose_a = transpose_a, .transpose_b = transpose_b};
  gemm.m = m, gemm.n = n, gemm.k = k, gemm.alpha = alpha;
  gemm.a = a, gemm.lda = lda, gemm.b = b, gemm.ldb = ldb;
  gemm.c = c, gemm.ldc = ldc;
  return gemm;
}

void floor_plan(const bench_model *model, size_t batch, const float *weights,
                float *gradients, float *activations, float *scratch,
                floor_gemm *gemms) {
  const size_t layers = model->layer_count;
  const float *w[BENCH_MAX_LAYERS + 1], *a_prev[BENCH_MAX_LAYERS + 1];
  float *dw[BENCH_MAX_LAYERS + 1], *z[BENCH_MAX_LAYERS + 1];
  for (size_t l = 1; l <= layers; l++) {
    size_t n = model->widths[l], n_prev = model->widths[l - 1];
    w[l] = weights, dw[l] = gradients;
    weights += n * n_prev, gradients += n * n_prev;
    a_prev[l] = activations, z[l] = activations + n_prev * batch;
    activations += (n_prev + n) * batch;
  }
  const int m = (int)batch;
  size_t count = 0;
  for (size_t l = 1; l <= layers; l++) {
    int n = (int)model->widths[l], n_prev = (int)model->widths[l - 1];
    /* Z (n × B) = W (n × n_prev) · A_prev (n_prev × B) */
    gemms[count++] = product(true, false, n, m, n_prev, 1.0f, w[l], n_prev,
                             a_prev[l], n_prev, z[l], n);
  }
  for (size_t l = layers; l >= 1; l--) {
    int n = (int)model->widths[l], n_prev = (int)model->widths[l - 1];
    /* dWᵀ (n_prev × n) = (1/B) A_prev (n_prev × B) · dZᵀ (B × n) */
    gemms[count++] = product(false, true, n_prev, n, m, 1.0f / (float)m,
                             a_prev[l], n_prev, z[l], n, dw[l], n_prev);
    /* dA_prev (n_prev × B) = Wᵀ (n_prev × n) · dZ (n × B) */
    if (l > 1)
      gemms[count++] = product(false, false, n_prev, m, n, 1.0f, w[l], n_prev,
                               z[l], n, scratch, n_prev);
  }
}

void floor_random_fill(float *values, size_t count, uint64_t seed) {
  uint64_t state = seed ^ 0x6A09E667F3BCC909ull;
  for (size_t i = 0; i < count; i++) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    values[i] = (float)(state >> 40) * 0x1p-24f - 0.5f;
  }
}

/* ------------------------------------------------------------------------ */
/* CPU: OpenBLAS, the host clock                                             */
/* ------------------------------------------------------------------------ */

static void cpu_pass(const floor_gemm *gemms, size_t count) {
  for (size_t i = 0; i < count; i++) {
    const floor_gemm *g = &gemms[i];
    cblas_sgemm(CblasColMajor, g->transpose_a ? CblasTrans : CblasNoTrans,
                g->transpose_b ? CblasTrans : CblasNoTrans, g->m, g->n, g->k,
                g->alpha, g->a, g->lda, g->b, g->ldb, 0.0f, g->c, g->ldc);
  }
}

bool bench_gemm_floor_cpu(const bench_model *model, size_t batch, size_t passes,
                          uint64_t seed, bench_gemm_floor *floor, char *error,
                          size_t error_size) {
  floor_sizes sizes = floor_arena_sizes(model, batch);
  size_t count = bench_gemms_per_step(model);
  float *weights = malloc(sizes.weights * sizeof(float));
  float *gradients = malloc(sizes.weights * sizeof(float));
  float *activations = malloc(sizes.activations * sizeof(float));
  float *scratch = malloc(sizes.scratch * sizeof(float));
  floor_gemm *gemms = malloc(count * sizeof *gemms);
  double *seconds = malloc(passes * sizeof *seconds);
  bool ok = weights && gradients && activations && scratch && gemms && seconds;
  if (ok) {
    floor_random_fill(weights, sizes.weights, seed);
    floor_random_fill(activations, sizes.activations, seed + 1);
    floor_plan(model, batch, weights, gradients, activations, scratch, gemms);
    for (size_t pass = 0; pass < FLOOR_WARMUP_PASSES + passes; pass++) {
      double start = cli_now();
      cpu_pass(gemms, count);
      if (pass >= FLOOR_WARMUP_PASSES)
        seconds[pass - FLOOR_WARMUP_PASSES] = cli_now() - start;
    }
    *floor = (bench_gemm_floor){true, passes, bench_summarize(seconds, passes),
                                "OpenBLAS cblas_sgemm", "host clock"};
  } else {
    snprintf(error, error_size, "gemm floor: out of host memory");
  }
  free(weights), free(gradients), free(activations), free(scratch);
  free(gemms), free(seconds);
  return ok;
}
