/*
 * cuda_backend.h — the CUDA backend's state and what its files share.
 *
 * Included from the C files (cuda_backend.c, device.c, memory.c, random.c,
 * dense.c, errors.c) and from the kernel files (*.cu, compiled as C++), hence
 * the extern "C" block. Everything here is private to the library: non-static
 * names are prefixed nnlib_cuda_ and built with hidden visibility.
 *
 * Streams: every kernel, cuBLAS call and cuRAND generator runs on the
 * context's compute stream, in the order the scheduler issues them; the copy
 * stream carries only streamed batch uploads (upload_async), ordered against
 * the compute stream by events. Blocking copies (upload, download, the
 * reduction result) are issued on the compute stream and then synchronized.
 */
#ifndef NN_CUDA_BACKEND_H
#define NN_CUDA_BACKEND_H

#include "../host/backend.h"

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <curand.h>

#ifdef __cplusplus
extern "C" {
#endif

/* cuBLAS workspace bound to the context's handle (cublasSetWorkspace): with
 * a workspace of its own per context, cuBLAS never allocates behind our back
 * and its results do not depend on what other streams are doing. */
#define NNLIB_CUDA_CUBLAS_WORKSPACE_BYTES ((size_t)32 << 20)

/* Device scratch for reductions, in doubles (1 MiB): per-block partial sums
 * of the loss and sum-of-squares reductions (at most
 * NNLIB_CUDA_REDUCTION_BLOCKS), or per-chunk partial column sums of db
 * (chunks × n). */
#define NNLIB_CUDA_REDUCTION_DOUBLES ((size_t)1 << 17)
#define NNLIB_CUDA_REDUCTION_BLOCKS 1024

/* Threads per block of the elementwise kernels. They are launched with at
 * most NNLIB_CUDA_BLOCKS_PER_SM blocks per multiprocessor of the device and
 * never more than NNLIB_CUDA_MAX_BLOCKS, and loop over the rest,
 * grid-stride. That is NNLIB_CUDA_WAVES whole waves: each kernel uses at
 * most 32 registers a thread (NNLIB_GRID_STRIDE_BOUNDS holds ptxas to it),
 * so NNLIB_CUDA_RESIDENT_BLOCKS blocks of 256 are resident on an SM at
 * once, and every block has the same share of the work. With fewer threads
 * than cells, a thread amortizes over several what it
 * works out once (NNLIB_GRID_STRIDE_CELLS); and the emulator's 2 SMs give
 * 64 blocks, so its tests walk the grid-stride loops. */
#define NNLIB_CUDA_THREADS 256
#define NNLIB_CUDA_RESIDENT_BLOCKS 8
#define NNLIB_CUDA_WAVES 4
#define NNLIB_CUDA_BLOCKS_PER_SM (NNLIB_CUDA_WAVES * NNLIB_CUDA_RESIDENT_BLOCKS)
#define NNLIB_CUDA_MAX_BLOCKS 32768

typedef struct nnlib_lt_cache nnlib_lt_cache;
typedef struct nnlib_lt_plan nnlib_lt_plan;

/* What epilogue_check.c found of a fused epilogue pair in one precision
 * and hand-over type. */
typedef enum nnlib_epilogue_check {
  NNLIB_EPILOGUE_UNCHECKED = 0,
  NNLIB_EPILOGUE_AGREES,     /* computes what dense.c relies on: fused */
  NNLIB_EPILOGUE_DIFFERS,    /* does not (the notice said how): plain */
  NNLIB_EPILOGUE_UNAVAILABLE /* no algorithm, or no memory to check: plain */
} nnlib_epilogue_check;

typedef struct nnlib_cuda_backend {
  nnlib_backend base;  /* first: the scheduler holds a nnlib_backend * */
  int device;          /* CUDA device index, made current by every op */
  int compute_major;   /* compute capability, major version */
  unsigned grid_limit; /* most blocks of an elementwise launch */
  cudaStream_t compute;
  cudaStream_t copy;
  cublasHandle_t cublas;     /* bound to compute, with cublas_workspace */
  void *cublas_workspace;    /* NNLIB_CUDA_CUBLAS_WORKSPACE_BYTES, device;
                                also cuBLASLt's, on the same stream */
  cublasLtHandle_t lt;       /* the fused products (lt_plans.c) */
  nnlib_lt_cache *lt_plans;  /* their plans, built once each */
  double *reduction_scratch; /* NNLIB_CUDA_REDUCTION_DOUBLES, device */
  nnlib_update_constants *update_constants; /* device: the staged step */
  /* [precision][ReLU rather than GELU-tanh][bf16 hand-over] */
  nnlib_epilogue_check epilogue_checks[NN_PRECISION_COUNT][2][2];

  /* The epoch's column order for gather_columns (set_gather_order):
   * staged in pinned memory, copied to the device; the event is recorded
   * after the copy, so the host refills the staging only once it is read. */
  uint64_t *gather_staging;  /* pinned host, gather_capacity */
  uint64_t *gather_order;    /* device, gather_capacity */
  size_t gather_capacity;    /* positions both hold */
  size_t gather_order_count; /* positions of the current order */
  cudaEvent_t gather_copied;
} nnlib_cuda_backend;

static inline nnlib_cuda_backend *nnlib_cuda(nnlib_backend *backend) {
  return (nnlib_cuda_backend *)backend;
}

/* Blocks of NNLIB_CUDA_THREADS covering count elements (at least 1, at most
 * the device's grid_limit). */
static inline unsigned nnlib_cuda_blocks(const nnlib_cuda_backend *cuda,
                                         size_t count) {
  size_t blocks = (count + NNLIB_CUDA_THREADS - 1) / NNLIB_CUDA_THREADS;
  if (blocks == 0)
    blocks = 1;
  return (unsigned)(blocks < cuda->grid_limit ? blocks : cuda->grid_limit);
}

/* grid_limit for a device of multiprocessors SMs. */
static inline unsigned nnlib_cuda_grid_limit(int multiprocessors) {
  const size_t sms = multiprocessors > 0 ? (size_t)multiprocessors : 1;
  const size_t blocks = sms * NNLIB_CUDA_BLOCKS_PER_SM;
  return (unsigned)(blocks < NNLIB_CUDA_MAX_BLOCKS ? blocks
                                                   : NNLIB_CUDA_MAX_BLOCKS);
}

/* ------------------------------------------------------------------------ */
/* Errors (errors.c): every failure becomes a message on the context naming  */
/* the library call, the library's own error string and file:line.          */
/* ------------------------------------------------------------------------ */

/* NN_OK for cudaSuccess; else NN_ERROR_BACKEND "call: string (name)". The
 * call is the function name at the start of expression ("cudaMemcpyAsync"
 * from "cudaMemcpyAsync(dst, ...)"). Clears the runtime's last error so that
 * a later launch check does not report this failure again. */
nn_status nnlib_cuda_check(nn_context *ctx, cudaError_t error,
                           const char *expression, const char *file, int line);
nn_status nnlib_cublas_check(nn_context *ctx, cublasStatus_t status,
                             const char *expression, const char *file,
                             int line);
nn_status nnlib_curand_check(nn_context *ctx, curandStatus_t status,
                             const char *expression, const char *file,
                             int line);
/* After a kernel launch: a bad configuration or a missing kernel image shows
 * up in cudaGetLastError. */
nn_status nnlib_cuda_check_launch(nn_context *ctx, const char *kernel,
                                  const char *file, int line);
/* NN_ERROR_OUT_OF_MEMORY when error is cudaErrorMemoryAllocation, saying how
 * many bytes `call` asked for and (for device memory) how many are free;
 * else as nnlib_cuda_check. */
nn_status nnlib_cuda_check_allocation(nn_context *ctx, cudaError_t error,
                                      const char *call, size_t bytes,
                                      bool device_memory, const char *file,
                                      int line);

#define NNLIB_CUDA_CHECK(ctx, expression)                                      \
  nnlib_cuda_check((ctx), (expression), #expression, __FILE__, __LINE__)
#define NNLIB_CUBLAS_CHECK(ctx, expression)                                    \
  nnlib_cublas_check((ctx), (expression), #expression, __FILE__, __LINE__)
#define NNLIB_CURAND_CHECK(ctx, expression)                                    \
  nnlib_curand_check((ctx), (expression), #expression, __FILE__, __LINE__)
#define NNLIB_CUDA_CHECK_LAUNCH(ctx, kernel)                                   \
  nnlib_cuda_check_launch((ctx), #kernel, __FILE__, __LINE__)

/* Makes the backend's device current for the calling thread (the runtime's
 * current device is per thread, and a context may move between threads). */
nn_status nnlib_cuda_use_device(nnlib_cuda_backend *cuda, nn_context *ctx);

/* ------------------------------------------------------------------------ */
/* Device discovery (device.c)                                               */
/* ------------------------------------------------------------------------ */

/* Checks that device_index names a usable device with code in this build,
 * makes it current and fills its properties. NN_ERROR_NO_DEVICE when there
 * is none, NN_ERROR_UNSUPPORTED when this build has no code for it. */
nn_status nnlib_cuda_open_device(nn_context *ctx, int device_index,
                                 struct cudaDeviceProp *properties);

/* cudaFuncGetAttributes on one of our kernels (fill_scale.cu): fails with
 * cudaErrorNoKernelImageForDevice (or cudaErrorInvalidDeviceFunction) on a
 * device the build has neither SASS nor usable PTX for. */
cudaError_t nnlib_cuda_probe_kernel_image(void);

/* ------------------------------------------------------------------------ */
/* Operations (the nnlib_backend_ops entries), by file                       */
/* ------------------------------------------------------------------------ */

/* memory.c */
nn_status nnlib_cuda_alloc(nnlib_backend *backend, nn_context *ctx,
                           size_t count, float **out);
void nnlib_cuda_release(nnlib_backend *backend, float *memory);
nn_status nnlib_cuda_upload(nnlib_backend *backend, nn_context *ctx, float *dst,
                            const float *host_src, size_t count);
nn_status nnlib_cuda_download(nnlib_backend *backend, nn_context *ctx,
                              float *host_dst, const float *src, size_t count);
nn_status nnlib_cuda_copy(nnlib_backend *backend, nn_context *ctx, float *dst,
                          const float *src, size_t count);
nn_status nnlib_cuda_host_alloc(nnlib_backend *backend, nn_context *ctx,
                                size_t count, float **out);
void nnlib_cuda_host_release(nnlib_backend *backend, float *memory);
nn_status nnlib_cuda_event_create(nnlib_backend *backend, nn_context *ctx,
                                  nnlib_event *out);
void nnlib_cuda_event_destroy(nnlib_backend *backend, nnlib_event event);
nn_status nnlib_cuda_upload_async(nnlib_backend *backend, nn_context *ctx,
                                  float *dst, const float *host_src,
                                  size_t count, nnlib_event copied);
nn_status nnlib_cuda_compute_wait(nnlib_backend *backend, nn_context *ctx,
                                  nnlib_event event);
nn_status nnlib_cuda_compute_record(nnlib_backend *backend, nn_context *ctx,
                                    nnlib_event event);
nn_status nnlib_cuda_copy_wait(nnlib_backend *backend, nn_context *ctx,
                               nnlib_event event);
nn_status nnlib_cuda_event_wait_host(nnlib_backend *backend, nn_context *ctx,
                                     nnlib_event event);
nn_status nnlib_cuda_timer_create(nnlib_backend *backend, nn_context *ctx,
                                  nnlib_event *out);
nn_status nnlib_cuda_elapsed_ms(nnlib_backend *backend, nn_context *ctx,
                                nnlib_event start, nnlib_event end, float *ms);
nn_status nnlib_cuda_check_precision(nnlib_backend *backend, nn_context *ctx,
                                     nn_precision precision);
nn_status nnlib_cuda_memory_info(nnlib_backend *backend, nn_context *ctx,
                                 size_t *free_bytes, size_t *total_bytes);

/* fill_scale.cu */
nn_status nnlib_cuda_fill(nnlib_backend *backend, nn_context *ctx, float *dst,
                          float value, size_t count);
nn_status nnlib_cuda_scale(nnlib_backend *backend, nn_context *ctx, float *dst,
                           const float *src, float alpha, size_t count);

/* gather.cu */
nn_status nnlib_cuda_set_gather_order(nnlib_backend *backend, nn_context *ctx,
                                      const size_t *order, size_t count);
nn_status nnlib_cuda_gather_columns(nnlib_backend *backend, nn_context *ctx,
                                    const nnlib_gather_matrix matrices[2],
                                    size_t first, size_t count);
/* Frees the gather staging (backend destruction). */
void nnlib_cuda_gather_release(nnlib_cuda_backend *cuda);

/* random.c */
nn_status nnlib_cuda_rng_create(nnlib_backend *backend, nn_context *ctx,
                                uint64_t seed, nnlib_rng *out);
void nnlib_cuda_rng_destroy(nnlib_backend *backend, nnlib_rng rng);
nn_status nnlib_cuda_rng_seed(nnlib_backend *backend, nn_context *ctx,
                              nnlib_rng rng, uint64_t seed);
nn_status nnlib_cuda_random_uniform(nnlib_backend *backend, nn_context *ctx,
                                    nnlib_rng rng, float *dst, size_t count);
nn_status nnlib_cuda_random_normal(nnlib_backend *backend, nn_context *ctx,
                                   nnlib_rng rng, float *dst, size_t count);

/* dense.c */
nn_status nnlib_cuda_dense_forward(nnlib_backend *backend, nn_context *ctx,
                                   const nnlib_layer *layer,
                                   const float *a_prev, size_t m);
nn_status nnlib_cuda_dense_backward(nnlib_backend *backend, nn_context *ctx,
                                    const nnlib_layer *layer,
                                    const float *a_prev, const float *dz,
                                    size_t m, float l2_lambda, float *da_prev);
/* activation_backward as the scheduler calls it: a no-op for a layer that
 * ran the ReLU epilogue (its dZ came with the layer above's backward),
 * else nnlib_cuda_activation_backward. */
nn_status nnlib_cuda_layer_activation_backward(nnlib_backend *backend,
                                               nn_context *ctx,
                                               const nnlib_layer *layer,
                                               float *da_dz, size_t m);

/* lt_plans.c: one cuBLASLt product D (rows × cols, column-major, ld ldd)
 * = alpha · op_a(A) (rows × inner) · op_b(B) (inner × cols), then the
 * epilogue, with beta = 0. A and B are fp32, or bf16 with bf16 precision.
 * D is fp32, or with bf16_output (bf16 precision only) bf16, and so are
 * the bias vector (rows) the BIAS epilogues add and the bias gradient
 * (rows) the BGRAD epilogues write: cuBLASLt gives them D's type. aux:
 * the ReLU bit mask (aux_ld bits per column) the RELU_AUX epilogues write
 * and DRELU reads, or the GELU input (aux_ld elements per column, of D's
 * type). Unused pointers are NULL. */
typedef struct nnlib_lt_product {
  cublasLtEpilogue_t epilogue;
  nn_precision precision;
  bool bf16_output;
  cublasOperation_t op_a, op_b;
  int rows, cols, inner;
  int lda, ldb, ldd;
  const void *a, *b;
  void *d;
  void *bias;
  void *aux;
  int64_t aux_ld;
  float alpha;
} nnlib_lt_product;

/* The handle and an empty plan cache (backend creation); everything freed
 * (destruction; safe on a partly created backend). */
nn_status nnlib_cuda_lt_create(nnlib_cuda_backend *cuda, nn_context *ctx);
void nnlib_cuda_lt_destroy(nnlib_cuda_backend *cuda);
/* The cached plan for the product, built on first use; *plan is NULL when
 * cuBLASLt has no algorithm for it (the caller takes its plain path). Only
 * the product's shape, precision, epilogue and pointer alignments count. */
nn_status nnlib_cuda_lt_plan(nnlib_cuda_backend *cuda, nn_context *ctx,
                             const nnlib_lt_product *product,
                             nnlib_lt_plan **plan);
/* Marks a plan unusable, so that nnlib_cuda_lt_plan gives NULL for its
 * product from now on (its algorithm failed to run). */
void nnlib_cuda_lt_refuse(nnlib_lt_plan *plan);
/* Runs the product with a plan nnlib_cuda_lt_plan gave for it, on the
 * compute stream. */
nn_status nnlib_cuda_lt_run(nnlib_cuda_backend *cuda, nn_context *ctx,
                            const nnlib_lt_plan *plan,
                            const nnlib_lt_product *product);

/* epilogue_check.c: whether the fused products of `fused` layers, in this
 * precision and handing over as bf16_output says, compute what dense.c
 * relies on — the bias gradient summed after the activation's gradient
 * and after alpha. Checked once per context on a product with a known
 * answer (a disagreement is no error: the notice says what differed);
 * during a stream capture, which cannot hold the check, a combination not
 * yet checked is reported unusable. */
nn_status nnlib_cuda_epilogue_usable(nnlib_cuda_backend *cuda, nn_context *ctx,
                                     nnlib_fused fused, nn_precision precision,
                                     bool bf16_output, bool *usable);
/* The backend op: checks, before a capture, the epilogues these layers
 * could fuse (dense.c). */
nn_status nnlib_cuda_prepare_capture(nnlib_backend *backend, nn_context *ctx,
                                     const nnlib_layer *layers, size_t count);

/* precision.cu: dst (count bf16) = src (count floats) rounded to nearest
 * even, on the compute stream. */
nn_status nnlib_cuda_to_bf16(nnlib_cuda_backend *cuda, nn_context *ctx,
                             const float *src, void *dst, size_t count);
/* The backend op: nnlib_cuda_to_bf16 after selecting the device. */
nn_status nnlib_cuda_to_bf16_op(nnlib_backend *backend, nn_context *ctx,
                                const float *src, void *dst, size_t count);
/* dst (count floats) = src (count bf16), on the compute stream. */
nn_status nnlib_cuda_from_bf16(nnlib_cuda_backend *cuda, nn_context *ctx,
                               const void *src, float *dst, size_t count);

/* activations.cu */
/* Z += b (broadcast over the m columns), A = g(Z); softmax per column. */
nn_status nnlib_cuda_bias_activation(nnlib_cuda_backend *cuda, nn_context *ctx,
                                     const nnlib_layer *layer, size_t m);
nn_status nnlib_cuda_output_gradient(nnlib_backend *backend, nn_context *ctx,
                                     const nnlib_layer *output, const float *y,
                                     size_t m, float *dz);
nn_status nnlib_cuda_activation_backward(nnlib_backend *backend,
                                         nn_context *ctx,
                                         const nnlib_layer *layer, float *da_dz,
                                         size_t m);

/* dropout.cu */
nn_status nnlib_cuda_dropout_forward(nnlib_backend *backend, nn_context *ctx,
                                     const nnlib_layer *layer, nnlib_rng rng,
                                     size_t m);

/* reductions.cu */
/* db (n) = inverse_m · Σ over the m columns of dz (n × m), fixed order. */
nn_status nnlib_cuda_bias_gradient(nnlib_cuda_backend *cuda, nn_context *ctx,
                                   const float *dz, size_t n, size_t m,
                                   float inverse_m, float *db);
nn_status nnlib_cuda_loss_sum(nnlib_backend *backend, nn_context *ctx,
                              nn_loss loss, const nnlib_layer *output,
                              const float *y, size_t m, double *sum);
/* The same, and dZ[L] = A - Y into dz in the same kernel. */
nn_status nnlib_cuda_loss_sum_and_gradient(nnlib_backend *backend,
                                           nn_context *ctx, nn_loss loss,
                                           const nnlib_layer *output,
                                           const float *y, size_t m,
                                           double *sum, float *dz);
nn_status nnlib_cuda_sum_squares(nnlib_backend *backend, nn_context *ctx,
                                 const float *x, size_t count, double *sum);

/* optimizers.cu */
nn_status nnlib_cuda_optimizer_stage(nnlib_backend *backend, nn_context *ctx,
                                     const nnlib_optimizer_step *step);
nn_status nnlib_cuda_optimizer_apply(nnlib_backend *backend, nn_context *ctx,
                                     float *parameters, const float *gradients,
                                     float *first_moment, float *second_moment,
                                     void *bf16_parameters, size_t count);

/* graphs.c: capture of the compute stream into a CUDA graph, and replay. */
nn_status nnlib_cuda_graph_capture_begin(nnlib_backend *backend,
                                         nn_context *ctx);
nn_status nnlib_cuda_graph_capture_end(nnlib_backend *backend, nn_context *ctx,
                                       bool keep, nnlib_graph *out);
nn_status nnlib_cuda_graph_launch(nnlib_backend *backend, nn_context *ctx,
                                  nnlib_graph graph);
void nnlib_cuda_graph_destroy(nnlib_backend *backend, nnlib_graph graph);

#ifdef __cplusplus
}
#endif

#endif /* NN_CUDA_BACKEND_H */
