/*
 * gemm_floor_cuda.c — the gemm floor on a GPU: the step's products as the
 * CUDA backend runs them (cuda/dense.c) in the run's precision — fp32
 * cublasSgemm, tf32 cublasGemmEx with CUBLAS_COMPUTE_32F_FAST_TF32, bf16
 * cublasGemmEx on bf16 operands with fp32 results — on a handle configured
 * as the backend's (cuda/cuda_backend.c: a non-blocking stream, a 32 MiB
 * workspace, default math), timed per pass with CUDA events. The bf16
 * floor reads operands already in bf16: the backend's conversions are part
 * of its step, not of the products it cannot avoid.
 */
#include "gemm_floor.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FLOOR_CUBLAS_WORKSPACE_BYTES ((size_t)32 << 20)
#define FLOOR_FILL_CHUNK_FLOATS ((size_t)1 << 22) /* 16 MiB of host values */

typedef struct cuda_floor {
  cudaStream_t stream;
  cublasHandle_t cublas;
  void *workspace;
  nn_precision precision;
  float *weights, *gradients, *activations, *scratch;
  /* bf16 only: the operands the products read, element for element the
   * same layout as weights and activations. */
  uint16_t *weights16, *activations16;
  floor_sizes sizes;
  cudaEvent_t *events; /* passes + 1 */
  size_t event_count;
  char *error;
  size_t error_size;
} cuda_floor;

static bool cuda_ok(cuda_floor *floor, cudaError_t status, const char *call) {
  if (status == cudaSuccess)
    return true;
  snprintf(floor->error, floor->error_size, "gemm floor: %s: %s (%s)", call,
           cudaGetErrorString(status), cudaGetErrorName(status));
  (void)cudaGetLastError();
  return false;
}

static bool cublas_ok(cuda_floor *floor, cublasStatus_t status,
                      const char *call) {
  if (status == CUBLAS_STATUS_SUCCESS)
    return true;
  snprintf(floor->error, floor->error_size, "gemm floor: %s: %s", call,
           cublasGetStatusString(status));
  return false;
}

/* The handle as the backend makes it: the workspace is set after the
 * stream, since cublasSetStream resets it. */
static bool create_handle(cuda_floor *floor) {
  return cuda_ok(
             floor,
             cudaStreamCreateWithFlags(&floor->stream, cudaStreamNonBlocking),
             "cudaStreamCreateWithFlags") &&
         cublas_ok(floor, cublasCreate(&floor->cublas), "cublasCreate") &&
         cuda_ok(floor,
                 cudaMalloc(&floor->workspace, FLOOR_CUBLAS_WORKSPACE_BYTES),
                 "cudaMalloc") &&
         cublas_ok(floor, cublasSetStream(floor->cublas, floor->stream),
                   "cublasSetStream") &&
         cublas_ok(floor,
                   cublasSetWorkspace(floor->cublas, floor->workspace,
                                      FLOOR_CUBLAS_WORKSPACE_BYTES),
                   "cublasSetWorkspace") &&
         cublas_ok(floor, cublasSetMathMode(floor->cublas, CUBLAS_DEFAULT_MATH),
                   "cublasSetMathMode") &&
         cublas_ok(
             floor,
             cublasSetAtomicsMode(floor->cublas, CUBLAS_ATOMICS_NOT_ALLOWED),
             "cublasSetAtomicsMode");
}

static bool create_events(cuda_floor *floor, size_t passes) {
  floor->events = calloc(passes + 1, sizeof *floor->events);
  if (!floor->events) {
    snprintf(floor->error, floor->error_size, "gemm floor: out of memory");
    return false;
  }
  for (size_t i = 0; i <= passes; i++) {
    if (!cuda_ok(floor, cudaEventCreate(&floor->events[i]), "cudaEventCreate"))
      return false;
    floor->event_count = i + 1;
  }
  return true;
}

/* Random values from one host chunk, copied over the buffer repeatedly. */
static bool fill_device(cuda_floor *floor, float *device, size_t count,
                        const float *chunk) {
  for (size_t done = 0; done < count; done += FLOOR_FILL_CHUNK_FLOATS) {
    size_t floats = count - done < FLOOR_FILL_CHUNK_FLOATS
                        ? count - done
                        : FLOOR_FILL_CHUNK_FLOATS;
    if (!cuda_ok(floor,
                 cudaMemcpy(device + done, chunk, floats * sizeof(float),
                            cudaMemcpyHostToDevice),
                 "cudaMemcpy"))
      return false;
  }
  return true;
}

/* bf16 bits of x, rounded to nearest even (x is finite here). */
static uint16_t to_bf16(float x) {
  uint32_t bits;
  memcpy(&bits, &x, sizeof bits);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return (uint16_t)(bits >> 16);
}

/* The bf16 copy of one float arena, filled from the same host chunk. */
static bool fill_bf16(cuda_floor *floor, uint16_t **device, size_t count,
                      const float *chunk) {
  uint16_t *halves = malloc(FLOOR_FILL_CHUNK_FLOATS * sizeof *halves);
  bool ok = halves != NULL &&
            cuda_ok(floor, cudaMalloc((void **)device, count * sizeof **device),
                    "cudaMalloc");
  for (size_t k = 0; ok && k < FLOOR_FILL_CHUNK_FLOATS; k++)
    halves[k] = to_bf16(chunk[k]);
  for (size_t done = 0; ok && done < count; done += FLOOR_FILL_CHUNK_FLOATS) {
    size_t n = count - done < FLOOR_FILL_CHUNK_FLOATS ? count - done
                                                      : FLOOR_FILL_CHUNK_FLOATS;
    ok = cuda_ok(floor,
                 cudaMemcpy(*device + done, halves, n * sizeof *halves,
                            cudaMemcpyHostToDevice),
                 "cudaMemcpy");
  }
  if (!halves)
    snprintf(floor->error, floor->error_size, "gemm floor: out of memory");
  free(halves);
  return ok;
}

static bool allocate_float(cuda_floor *floor, float **device, size_t count) {
  return cuda_ok(floor, cudaMalloc((void **)device, count * sizeof(float)),
                 "cudaMalloc");
}

static bool allocate_arenas(cuda_floor *floor, floor_sizes sizes,
                            uint64_t seed) {
  float *chunk = malloc(FLOOR_FILL_CHUNK_FLOATS * sizeof(float));
  if (!chunk) {
    snprintf(floor->error, floor->error_size, "gemm floor: out of memory");
    return false;
  }
  floor->sizes = sizes;
  floor_random_fill(chunk, FLOOR_FILL_CHUNK_FLOATS, seed);
  bool ok = allocate_float(floor, &floor->weights, sizes.weights) &&
            allocate_float(floor, &floor->gradients, sizes.weights) &&
            allocate_float(floor, &floor->activations, sizes.activations) &&
            allocate_float(floor, &floor->scratch, sizes.scratch) &&
            fill_device(floor, floor->weights, sizes.weights, chunk) &&
            fill_device(floor, floor->activations, sizes.activations, chunk);
  if (ok && floor->precision == NN_PRECISION_BF16)
    ok = fill_bf16(floor, &floor->weights16, sizes.weights, chunk) &&
         fill_bf16(floor, &floor->activations16, sizes.activations, chunk);
  free(chunk);
  return ok;
}

/* The operand a product reads for a float pointer into the weights or
 * activations arena: the pointer itself, or with bf16 the same element of
 * the bf16 copy. */
static const void *operand(const cuda_floor *floor, const float *p) {
  if (floor->precision != NN_PRECISION_BF16)
    return p;
  if (p >= floor->weights && p < floor->weights + floor->sizes.weights)
    return floor->weights16 + (p - floor->weights);
  return floor->activations16 + (p - floor->activations);
}

static cublasStatus_t run_gemm(const cuda_floor *floor, const floor_gemm *g) {
  const float zero = 0.0f;
  const cublasOperation_t op_a = g->transpose_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = g->transpose_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  if (floor->precision == NN_PRECISION_FP32)
    return cublasSgemm(floor->cublas, op_a, op_b, g->m, g->n, g->k, &g->alpha,
                       g->a, g->lda, g->b, g->ldb, &zero, g->c, g->ldc);
  const bool bf16 = floor->precision == NN_PRECISION_BF16;
  const cudaDataType_t input = bf16 ? CUDA_R_16BF : CUDA_R_32F;
  return cublasGemmEx(floor->cublas, op_a, op_b, g->m, g->n, g->k, &g->alpha,
                      operand(floor, g->a), input, g->lda, operand(floor, g->b),
                      input, g->ldb, &zero, g->c, CUDA_R_32F, g->ldc,
                      bf16 ? CUBLAS_COMPUTE_32F : CUBLAS_COMPUTE_32F_FAST_TF32,
                      CUBLAS_GEMM_DEFAULT);
}

static bool run_pass(cuda_floor *floor, const floor_gemm *gemms, size_t count) {
  for (size_t i = 0; i < count; i++)
    if (!cublas_ok(floor, run_gemm(floor, &gemms[i]), "cublasSgemm/GemmEx"))
      return false;
  return true;
}

/* Enqueues every timed pass back to back with an event between passes, so
 * the host's launches run ahead of the GPU and pass i's time is the
 * device's alone: events[i] to events[i + 1]. */
static bool time_enqueued_passes(cuda_floor *floor, const floor_gemm *gemms,
                                 size_t count, size_t passes, double *seconds) {
  bool ok = true;
  for (size_t pass = 0; ok && pass < FLOOR_WARMUP_PASSES; pass++)
    ok = run_pass(floor, gemms, count);
  for (size_t i = 0; ok && i <= passes; i++) {
    ok = cuda_ok(floor, cudaEventRecord(floor->events[i], floor->stream),
                 "cudaEventRecord");
    if (ok && i < passes)
      ok = run_pass(floor, gemms, count);
  }
  ok = ok && cuda_ok(floor, cudaStreamSynchronize(floor->stream),
                     "cudaStreamSynchronize");
  for (size_t i = 0; ok && i < passes; i++) {
    float milliseconds = 0;
    ok = cuda_ok(floor,
                 cudaEventElapsedTime(&milliseconds, floor->events[i],
                                      floor->events[i + 1]),
                 "cudaEventElapsedTime");
    seconds[i] = 1e-3 * (double)milliseconds;
  }
  return ok;
}

static bool time_passes(cuda_floor *floor, const bench_model *model,
                        size_t batch, size_t passes, double *seconds) {
  size_t count = bench_gemms_per_step(model);
  floor_gemm *gemms = malloc(count * sizeof *gemms);
  if (!gemms) {
    snprintf(floor->error, floor->error_size, "gemm floor: out of memory");
    return false;
  }
  floor_plan(model, batch, floor->weights, floor->gradients, floor->activations,
             floor->scratch, gemms);
  bool ok = time_enqueued_passes(floor, gemms, count, passes, seconds);
  free(gemms);
  return ok;
}

static void release(cuda_floor *floor) {
  if (floor->stream)
    cudaStreamSynchronize(floor->stream);
  cudaFree(floor->weights);
  cudaFree(floor->gradients);
  cudaFree(floor->activations);
  cudaFree(floor->scratch);
  cudaFree(floor->weights16);
  cudaFree(floor->activations16);
  for (size_t i = 0; i < floor->event_count; i++)
    cudaEventDestroy(floor->events[i]);
  free(floor->events);
  if (floor->cublas)
    cublasDestroy(floor->cublas);
  cudaFree(floor->workspace);
  if (floor->stream)
    cudaStreamDestroy(floor->stream);
  (void)cudaGetLastError();
}

static const char *floor_library(nn_precision precision) {
  switch (precision) {
  case NN_PRECISION_TF32:
    return "cuBLAS cublasGemmEx (fp32 data, CUBLAS_COMPUTE_32F_FAST_TF32)";
  case NN_PRECISION_BF16:
    return "cuBLAS cublasGemmEx (bf16 operands, fp32 accumulation and "
           "results)";
  default:
    return "cuBLAS cublasSgemm (default math: FP32, no TF32)";
  }
}

bool bench_gemm_floor_cuda(const bench_model *model, size_t batch, int device,
                           nn_precision precision, size_t passes, uint64_t seed,
                           bench_gemm_floor *result, char *error,
                           size_t error_size) {
  cuda_floor floor = {
      .precision = precision, .error = error, .error_size = error_size};
  double *seconds = malloc(passes * sizeof *seconds);
  bool ok = seconds != NULL &&
            cuda_ok(&floor, cudaSetDevice(device), "cudaSetDevice") &&
            create_handle(&floor) && create_events(&floor, passes) &&
            allocate_arenas(&floor, floor_arena_sizes(model, batch), seed) &&
            time_passes(&floor, model, batch, passes, seconds);
  if (!seconds)
    snprintf(error, error_size, "gemm floor: out of memory");
  if (ok)
    *result = (bench_gemm_floor){true, passes, bench_summarize(seconds, passes),
                                 floor_library(precision), "CUDA events"};
  release(&floor);
  free(seconds);
  return ok;
}
