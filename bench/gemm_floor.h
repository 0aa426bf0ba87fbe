/*
 * gemm_floor.h — the step's matrix products as a list, shared by the CPU
 * and CUDA floors (gemm_floor.c, gemm_floor_cuda.c).
 *
 * Shapes and transposes are the backends' (host/cpu_backend.c,
 * cuda/dense.c), column-major, W[l] stored row-major [n, n_prev] = Wᵀ
 * column-major with leading dimension n_prev:
 *   forward  Z[l] (n × B)      = W (T) · A[l-1] (n_prev × B)
 *   dW       dWᵀ (n_prev × n)  = (1/B) A[l-1] · dZᵀ (N, T)
 *   dA       dA[l-1] (n_prev × B) = Wᵀ · dZ (N, N), layers 2..L
 * dZ[l] is read from Z[l]'s buffer: its values stay fixed from pass to pass
 * (nothing feeds back), so no pass drifts towards overflow or denormals.
 */
#ifndef NN_BENCH_GEMM_FLOOR_H
#define NN_BENCH_GEMM_FLOOR_H

#include "bench.h"

typedef struct floor_gemm {
  bool transpose_a, transpose_b;
  int m, n, k;
  float alpha;
  const float *a, *b;
  int lda, ldb;
  float *c;
  int ldc;
} floor_gemm;

/* Floats of each arena the products read and write. */
typedef struct floor_sizes {
  size_t weights;     /* Σ n[l]·n[l-1]: W, and the same again for dW */
  size_t activations; /* A[0..L-1] then Z[1..L], each (n × B) */
  size_t scratch;     /* dA: widest × B */
} floor_sizes;

floor_sizes floor_arena_sizes(const bench_model *model, size_t batch);

/* Fills gemms[0 .. 3L-2] in the order a step runs them (forward 1..L, then
 * dW and dA for L..1), pointing into the given arenas. */
void floor_plan(const bench_model *model, size_t batch, const float *weights,
                float *gradients, float *activations, float *scratch,
                floor_gemm *gemms);

/* Values for the arenas: uniform in [-0.5, 0.5), from a seed. */
void floor_random_fill(float *values, size_t count, uint64_t seed);

/* Timed passes after two untimed ones. */
#define FLOOR_WARMUP_PASSES 2

#endif
