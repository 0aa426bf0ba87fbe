/*
 * backend.h — the layer-level operations the scheduler calls.
 *
 * Layer-level, not BLAS-level: a backend is free to fuse (a cuBLASLt
 * epilogue adding the bias and applying ReLU in the gemm) while the CPU
 * backend does the plain thing. Both implement the semantics written here;
 * the CPU backend is the oracle in tests.
 *
 * Every float pointer is backend memory unless it says host. Shapes use the
 * notes' notation: n = n[l] units, n_prev = n[l-1], m = examples; matrices
 * are column-major with one example per column.
 */
#ifndef NN_BACKEND_H
#define NN_BACKEND_H

#include "elementwise.h"
#include "internal.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nnlib_optimizer_step {
  nn_optimizer kind;
  float learning_rate;
  float beta1, beta2, epsilon;
  uint64_t step; /* t after this update, >= 1 (Adam's bias correction) */
} nnlib_optimizer_step;

/* The constants of one step for nnlib_update_parameter: Adam's bias
 * corrections in double with the host's pow, folded into its step size and
 * ε (host/elementwise.h), then rounded once — the same on every backend. */
static inline nnlib_update_constants
nnlib_optimizer_constants(const nnlib_optimizer_step *step) {
  const double t = (double)step->step;
  const double correction1 = 1.0 - pow((double)step->beta1, t);
  const double root_correction2 = sqrt(1.0 - pow((double)step->beta2, t));
  nnlib_update_constants constants = {
      step->kind,
      step->learning_rate,
      step->beta1,
      step->beta2,
      step->epsilon,
      (float)(step->learning_rate * root_correction2 / correction1),
      (float)(step->epsilon * root_correction2),
  };
  return constants;
}

/* One matrix of a column gather (gather_columns): dst holds floats, or
 * with bf16 (CUDA only) bf16 rounded to nearest even. */
typedef struct nnlib_gather_matrix {
  void *dst;
  const float *src;
  size_t rows;
  bool bf16;
} nnlib_gather_matrix;

/* gather_columns' check, for both backends: NN_OK when the positions
 * first .. first + count - 1 lie in the current order of order_count
 * columns (set_gather_order), else an error naming them. */
nn_status nnlib_check_gather_range(nn_context *ctx, size_t first, size_t count,
                                   size_t order_count);

typedef struct nnlib_backend_ops {
  void (*destroy)(nnlib_backend *backend);

  /* Memory. alloc returns zero-filled memory of count floats. */
  nn_status (*alloc)(nnlib_backend *backend, nn_context *ctx, size_t count,
                     float **out);
  void (*release)(nnlib_backend *backend, float *memory);
  nn_status (*upload)(nnlib_backend *backend, nn_context *ctx, float *dst,
                      const float *host_src, size_t count);
  nn_status (*download)(nnlib_backend *backend, nn_context *ctx,
                        float *host_dst, const float *src, size_t count);
  nn_status (*fill)(nnlib_backend *backend, nn_context *ctx, float *dst,
                    float value, size_t count);
  /* dst[i] = alpha * src[i]; dst may equal src. */
  nn_status (*scale)(nnlib_backend *backend, nn_context *ctx, float *dst,
                     const float *src, float alpha, size_t count);

  /* Where the data of a training run lives and how batches reach the
   * compute stream (host/feeder.c drives these):
   *   streaming: producer threads gather each batch into a pinned staging
   *   slot (host_alloc), upload_async copies it on the copy stream into one
   *   of two device input buffers and records an event; the compute stream
   *   waits on it (compute_wait). A slot is refilled only after its copy
   *   event completed (event_wait_host); a device buffer is overwritten only
   *   after the compute stream recorded that it is done with it
   *   (compute_record + copy_wait).
   *   resident: X and Y are uploaded once; batches are gathered on the
   *   device (gather_columns).
   * On the CPU every copy is synchronous and the events do nothing. */
  nn_status (*host_alloc)(nnlib_backend *backend, nn_context *ctx, size_t count,
                          float **out);
  void (*host_release)(nnlib_backend *backend, float *memory);
  nn_status (*event_create)(nnlib_backend *backend, nn_context *ctx,
                            nnlib_event *out);
  void (*event_destroy)(nnlib_backend *backend, nnlib_event event);
  nn_status (*upload_async)(nnlib_backend *backend, nn_context *ctx, float *dst,
                            const float *host_src, size_t count,
                            nnlib_event copied);
  nn_status (*compute_wait)(nnlib_backend *backend, nn_context *ctx,
                            nnlib_event event);
  nn_status (*compute_record)(nnlib_backend *backend, nn_context *ctx,
                              nnlib_event event);
  nn_status (*copy_wait)(nnlib_backend *backend, nn_context *ctx,
                         nnlib_event event);
  nn_status (*event_wait_host)(nnlib_backend *backend, nn_context *ctx,
                               nnlib_event event);
  /* Step timing: an event that keeps the time it happened at (record it
   * with compute_record), and the milliseconds from start to end once both
   * have happened (waits for end). The CPU keeps the host clock. */
  nn_status (*timer_create)(nnlib_backend *backend, nn_context *ctx,
                            nnlib_event *out);
  nn_status (*elapsed_ms)(nnlib_backend *backend, nn_context *ctx,
                          nnlib_event start, nnlib_event end, float *ms);
  /* Resident batches. set_gather_order makes order (count column
   * indices, host memory) the one gather_columns reads, in one upload per
   * epoch rather than one per batch; the CPU reads order itself, so it
   * must stay unchanged until the next call. gather_columns: for each of
   * the two matrices (a batch's X and Y; the second may have no rows), dst
   * (rows × count) = the columns order[first], ..., order[first + count -
   * 1] of src (rows × m), both backend memory, in one pass. */
  nn_status (*set_gather_order)(nnlib_backend *backend, nn_context *ctx,
                                const size_t *order, size_t count);
  nn_status (*gather_columns)(nnlib_backend *backend, nn_context *ctx,
                              const nnlib_gather_matrix matrices[2],
                              size_t first, size_t count);
  /* Free and total backend memory in bytes (the CPU reports 0, 0: no
   * limit is known). */
  nn_status (*memory_info)(nnlib_backend *backend, nn_context *ctx,
                           size_t *free_bytes, size_t *total_bytes);

  /* NN_OK if this backend computes products in the precision, else
   * NN_ERROR_UNSUPPORTED with the reason on ctx. */
  nn_status (*check_precision)(nnlib_backend *backend, nn_context *ctx,
                               nn_precision precision);

  /* Philox generators (cuRAND: host generator on the CPU, device generator
   * on the GPU, so one seed gives one stream on both). */
  nn_status (*rng_create)(nnlib_backend *backend, nn_context *ctx,
                          uint64_t seed, nnlib_rng *out);
  void (*rng_destroy)(nnlib_backend *backend, nnlib_rng rng);
  nn_status (*rng_seed)(nnlib_backend *backend, nn_context *ctx, nnlib_rng rng,
                        uint64_t seed);
  /* count uniforms in (0, 1]. */
  nn_status (*random_uniform)(nnlib_backend *backend, nn_context *ctx,
                              nnlib_rng rng, float *dst, size_t count);
  /* count must be even (cuRAND's Box-Muller makes pairs). */
  nn_status (*random_normal)(nnlib_backend *backend, nn_context *ctx,
                             nnlib_rng rng, float *dst, size_t count);

  /* Z = W A_prev + b (b broadcast over columns), A = g(Z).
   * W: [n, n_prev] row-major; A_prev: (n_prev × m); Z, A: (n × m).
   * Softmax is taken over each column, computed stably. The products of
   * dense_forward and dense_backward are in layer->precision. */
  nn_status (*dense_forward)(nnlib_backend *backend, nn_context *ctx,
                             const nnlib_layer *layer, const float *a_prev,
                             size_t m);

  /* Inverted dropout on A[l] (n × m): mask = (u < keep) / keep with
   * u ~ U(0, 1] from rng, A *= mask. */
  nn_status (*dropout_forward)(nnlib_backend *backend, nn_context *ctx,
                               const nnlib_layer *layer, nnlib_rng rng,
                               size_t m);

  /* Σ over all n × m entries of the per-example loss L(ŷ, y), from Z[L] and
   * A[L] (stable forms: softplus for BCE, log-sum-exp for CE), written to
   * *sum in backend memory: nothing waits for it (the scheduler reads the
   * costs of many steps at once). */
  nn_status (*loss_sum)(nnlib_backend *backend, nn_context *ctx, nn_loss loss,
                        const nnlib_layer *output, const float *y, size_t m,
                        double *sum);
  /* loss_sum and output_gradient in one pass over A, Z and Y, with the bits
   * of each (a training step needs both); NULL on a backend without it. */
  nn_status (*loss_sum_and_gradient)(nnlib_backend *backend, nn_context *ctx,
                                     nn_loss loss, const nnlib_layer *output,
                                     const float *y, size_t m, double *sum,
                                     float *dz);

  /* dZ[L] = A[L] - Y (n × m): the gradient of every supported output+loss
   * pair with respect to Z[L], per example (the 1/m comes in dW, db). */
  nn_status (*output_gradient)(nnlib_backend *backend, nn_context *ctx,
                               const nnlib_layer *output, const float *y,
                               size_t m, float *dz);

  /* dZ = dA * g'(Z) in place (n × m), after dA *= mask when
   * layer->dropout_mask is not NULL (the scheduler passes a view without it
   * when the forward pass applied no dropout). */
  nn_status (*activation_backward)(nnlib_backend *backend, nn_context *ctx,
                                   const nnlib_layer *layer, float *da_dz,
                                   size_t m);

  /* From dZ[l] (n × m):
   *   dW = (1/m) dZ A_prevᵀ + (λ/m) W   -> layer->weight_grad
   *   db = (1/m) Σ_columns dZ            -> layer->bias_grad (fixed order)
   *   dA_prev = Wᵀ dZ (n_prev × m)       -> da_prev, skipped when NULL */
  nn_status (*dense_backward)(nnlib_backend *backend, nn_context *ctx,
                              const nnlib_layer *layer, const float *a_prev,
                              const float *dz, size_t m, float l2_lambda,
                              float *da_prev);

  /* Σ x² over count floats, written to *sum in backend memory. */
  nn_status (*sum_squares)(nnlib_backend *backend, nn_context *ctx,
                           const float *x, size_t count, double *sum);

  /* One optimizer step over the whole arena (count floats), in two parts:
   * optimizer_stage puts the step's constants (learning rate, Adam's bias
   * corrections) where optimizer_apply reads them — backend memory, in
   * stream order — so that a captured step (a CUDA graph) replays the
   * update with each step's constants. */
  nn_status (*optimizer_stage)(nnlib_backend *backend, nn_context *ctx,
                               const nnlib_optimizer_step *step);
  /* bf16_parameters, when not NULL (bf16 precision), gets each updated
   * parameter rounded to bf16 (nearest even), in the arena's layout: the
   * copy the next step's products read, made without reading the arena
   * again. */
  nn_status (*optimizer_apply)(nnlib_backend *backend, nn_context *ctx,
                               float *parameters, const float *gradients,
                               float *first_moment, float *second_moment,
                               void *bf16_parameters, size_t count);

  /* dst (count bf16) = src (count floats) rounded to nearest even, in
   * stream order; NULL on a backend that computes in fp32 only. */
  nn_status (*to_bf16)(nnlib_backend *backend, nn_context *ctx,
                       const float *src, void *dst, size_t count);

  /* dst = src, count floats of backend memory, in stream order. */
  nn_status (*copy)(nnlib_backend *backend, nn_context *ctx, float *dst,
                    const float *src, size_t count);

  /* Called before a model's step is captured (NULL: nothing to do): what
   * the backend does once for these layers but a graph cannot hold (the
   * CUDA backend checks the epilogues they could fuse). */
  nn_status (*prepare_capture)(nnlib_backend *backend, nn_context *ctx,
                               const nnlib_layer *layers, size_t count);

  /* Step graphs (NULL on a backend without them): everything issued on the
   * compute stream between graph_capture_begin and graph_capture_end is
   * recorded, not run; graph_launch replays it. graph_capture_end always
   * ends the capture; with keep false it discards what was recorded (a
   * call failed during the capture). */
  nn_status (*graph_capture_begin)(nnlib_backend *backend, nn_context *ctx);
  nn_status (*graph_capture_end)(nnlib_backend *backend, nn_context *ctx,
                                 bool keep, nnlib_graph *out);
  nn_status (*graph_launch)(nnlib_backend *backend, nn_context *ctx,
                            nnlib_graph graph);
  void (*graph_destroy)(nnlib_backend *backend, nnlib_graph graph);
} nnlib_backend_ops;

struct nnlib_backend {
  const nnlib_backend_ops *ops;
};

/* Philox4x32 makes random numbers in blocks of 4. Every dropout draw is
 * rounded up to whole blocks, so the host and device generators advance
 * alike whatever the layer width and batch size; each mask buffer has
 * NNLIB_DROPOUT_PADDING spare floats for the rounding. */
#define NNLIB_DROPOUT_PADDING 4
static inline size_t nnlib_dropout_draw_count(size_t count) {
  return (count + NNLIB_DROPOUT_PADDING - 1) &
         ~(size_t)(NNLIB_DROPOUT_PADDING - 1);
}

/* count doubles of zero-filled backend memory, from alloc (which gives
 * floats: every backend aligns its allocations to at least 16 bytes);
 * release it with ops->release((float *)memory) and copy it with
 * upload/download of 2 · count floats. */
static inline nn_status nnlib_backend_alloc_doubles(nnlib_backend *backend,
                                                    nn_context *ctx,
                                                    size_t count,
                                                    double **out) {
  float *memory = NULL;
  nn_status status = backend->ops->alloc(backend, ctx, 2 * count, &memory);
  *out = (double *)(void *)memory;
  return status;
}

/* The backend a model's arenas live on, and its operations. */
#define NNLIB_BACKEND(model) ((model)->ctx->backend)
#define NNLIB_OPS(model) (NNLIB_BACKEND(model)->ops)

/* The CPU backend (host/cpu_backend.c). */
nn_status nnlib_cpu_backend_create(nn_context *ctx, nnlib_backend **out);

/* The OPENBLAS_CORETYPE whose kernels would run faster than `core`'s on a
 * CPU with (or without) AVX2 + FMA and AVX-512 (host/cpu_blas.c):
 * "SkylakeX", "Haswell", or NULL when core's kernels fit. */
const char *nnlib_blas_better_core(const char *core, bool avx2_fma,
                                   bool avx512);

/* The same for this process's OpenBLAS and CPU; NULL when
 * OPENBLAS_CORETYPE is set. */
const char *nnlib_cpu_blas_better_core(void);

/* Advice on OpenBLAS's kernels (host/cpu_blas.c): into out, "" when OpenBLAS
 * runs `core`'s kernels and they use what a CPU with (or without) AVX2 +
 * FMA and AVX-512 has, else which OPENBLAS_CORETYPE would. */
void nnlib_blas_advice(const char *core, bool avx2_fma, bool avx512, char *out,
                       size_t size);

/* The same for this process's OpenBLAS and CPU; "" when OPENBLAS_CORETYPE
 * is set. */
void nnlib_cpu_blas_advice(char *out, size_t size);

/* The CUDA backend (cuda/), or NN_ERROR_NO_DEVICE / NN_ERROR_UNSUPPORTED with
 * the reason recorded on ctx. */
nn_status nnlib_cuda_backend_create(nn_context *ctx, int device_index,
                                    nnlib_backend **out, char *name,
                                    size_t name_size);

#ifdef __cplusplus
}
#endif

#endif /* NN_BACKEND_H */
