/*
 * bench.h — what the parts of nnbench share: the run's configuration, the
 * measurements, and the record the table and the JSON are written from.
 *
 * Widths follow the notes: n[0] is the input width, n[1..L] the layers, so a
 * model of L layers has L + 1 widths. The batch size is B.
 */
#ifndef NN_BENCH_H
#define NN_BENCH_H

#include <nn.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BENCH_MAX_LAYERS 64

/* ------------------------------------------------------------------------ */
/* Configuration (from the flags)                                            */
/* ------------------------------------------------------------------------ */

typedef struct bench_model {
  size_t widths[BENCH_MAX_LAYERS + 1]; /* n[0] .. n[L] */
  size_t layer_count;                  /* L >= 1 */
} bench_model;

typedef struct bench_config {
  bench_model model;
  const char *preset; /* "small", "medium", "large", or NULL for --layers */
  size_t batch_size;
  const char *precision;       /* "fp32", "tf32" or "bf16" */
  nn_precision precision_kind; /* the same, for the library */
  nn_data_placement placement; /* RESIDENT or STREAMING */
  nn_step_graphs step_graphs;  /* AUTO (the library's default) or OFF */
  nn_fusion fusion;            /* cuBLASLt epilogues: AUTO (default) or OFF */
  nn_optimizer optimizer;
  size_t warmup_steps, timed_steps;
  nn_backend_kind device;
  int device_index;
  const char *json_path; /* NULL: no record */
  uint64_t seed;
} bench_config;

/* The fixed learning rate of every run: small enough that no optimizer
 * diverges on random data within a few hundred steps; it does not change
 * the work a step does. */
#define BENCH_LEARNING_RATE 1e-4

/* ------------------------------------------------------------------------ */
/* Step-time statistics (stats.c)                                            */
/* ------------------------------------------------------------------------ */

typedef struct bench_stats {
  size_t count;
  double median, min, max, mean; /* seconds */
} bench_stats;

/* Sorts a copy; count 0 gives zeros. */
bench_stats bench_summarize(const double *seconds, size_t count);

/* ------------------------------------------------------------------------ */
/* Model arithmetic (model_math.c)                                           */
/* ------------------------------------------------------------------------ */

/* Σ n[l]·n[l-1] + n[l]: the floats of the parameter arena. */
size_t bench_parameter_count(const bench_model *model);

/* FLOPs of the step's matrix products at batch B: forward Z = W·A_prev
 * (2·n[l]·n[l-1]·B per layer), backward dW = dZ·A_prevᵀ (the same per layer)
 * and dA_prev = Wᵀ·dZ (the same, for every layer but the first). */
double bench_step_flops(const bench_model *model, size_t batch);

/* 3L - 1: L forward, L dW and L - 1 dA products. */
size_t bench_gemms_per_step(const bench_model *model);

typedef struct bench_memory_plan {
  /* The minimum a step needs, in bytes. */
  double parameters, gradients;
  double optimizer_state; /* gd 0, momentum / rmsprop 1×, adam 2× params */
  double activations;     /* X, Y, and Z[l], A[l] per layer, for one batch */
  double minimum;         /* the sum of the four */
  /* What the library allocates for this run: the model's own memory as
   * nn_model_memory_bytes counts it after the run (parameters, gradients,
   * the optimizer's moments, the activation arena with its backward
   * scratch and block rounding, bf16 copies), plus the batch buffers
   * (streaming: two (n[0] + n[L]) × B uploads; resident: the whole data
   * set plus one gathered batch, its Y only in bf16). Not the cuBLAS
   * workspace and the
   * reduction scratch the context itself holds. */
  double library_layout;
} bench_memory_plan;

/* precision: in bf16 a resident batch's X is gathered into the model's own
 * bf16 copy (counted in model_bytes), so only its Y has a buffer. */
bench_memory_plan bench_plan_memory(const bench_model *model, size_t batch,
                                    nn_optimizer optimizer,
                                    nn_precision precision, bool resident,
                                    size_t examples, size_t model_bytes);

/* ------------------------------------------------------------------------ */
/* Synthetic data (synthetic_data.c)                                         */
/* ------------------------------------------------------------------------ */

typedef struct bench_data {
  float *x;        /* n[0] × m, uniform in [0, 1) */
  float *y;        /* n[L] × m, one-hot of random labels */
  size_t examples; /* m = batches_per_epoch · B */
  size_t batches_per_epoch;
} bench_data;

/* Sizes the set (see synthetic_data.c) and fills it from the seed. Returns
 * false when the host cannot hold it (message in error). */
bool bench_data_create(const bench_config *config, bench_data *data,
                       char *error, size_t error_size);
void bench_data_destroy(bench_data *data);

/* ------------------------------------------------------------------------ */
/* The timed training run (step_timer.c)                                     */
/* ------------------------------------------------------------------------ */

typedef struct bench_device_memory {
  bool known;         /* a CUDA run whose free memory could be read */
  size_t free_before; /* before the context was created */
  size_t free_after_warmup;
  size_t total;
} bench_device_memory;

typedef struct bench_measurement {
  double *step_seconds; /* the timed steady-state steps */
  size_t step_count;
  double *epoch_start_seconds; /* first steps of an epoch, not in the stats */
  size_t epoch_start_count;
  bool data_resident;
  size_t steps_graphed; /* of the whole run, warmup included */
  size_t fused_layers;  /* layers whose last step ran a fused epilogue */
  size_t steps_run;
  /* What the library noted during the run (a fast path given up, and
   * why: nn_context_notice), or "" when it noted nothing new. */
  char notice[4096];
  bench_device_memory memory;
} bench_measurement;

/* Trains the model on the data for warmup + timed steps, timing each step
 * from one per-iteration callback to the next. Returns the library's status
 * (NN_OK once the steps are collected). memory->free_before must be filled
 * by the caller for CUDA runs. */
nn_status bench_time_steps(const bench_config *config, nn_context *ctx,
                           nn_model *model, const bench_data *data,
                           bool on_cuda, bench_measurement *measurement);
void bench_measurement_destroy(bench_measurement *measurement);

/* ------------------------------------------------------------------------ */
/* The gemm floor (gemm_floor.c)                                             */
/* ------------------------------------------------------------------------ */

typedef struct bench_gemm_floor {
  bool measured;
  size_t passes; /* timed passes over the step's products */
  bench_stats pass;
  const char *library; /* "OpenBLAS cblas_sgemm", "cuBLAS cublasSgemm ..." */
  const char *timer;   /* "host clock" or "CUDA events" */
} bench_gemm_floor;

/* Times the step's 3L - 1 products alone, at the backends' shapes and
 * transposes, on the CPU or on CUDA device `device`. False on failure
 * (message in error). */
bool bench_gemm_floor_cpu(const bench_model *model, size_t batch, size_t passes,
                          uint64_t seed, bench_gemm_floor *floor, char *error,
                          size_t error_size);
/* In the library's precision: cublasSgemm (fp32), cublasGemmEx with
 * CUBLAS_COMPUTE_32F_FAST_TF32 (tf32), or on bf16 copies of the operands
 * (bf16; fp32 results), as cuda/dense.c runs its products. */
bool bench_gemm_floor_cuda(const bench_model *model, size_t batch, int device,
                           nn_precision precision, size_t passes, uint64_t seed,
                           bench_gemm_floor *floor, char *error,
                           size_t error_size);

/* ------------------------------------------------------------------------ */
/* Host-to-device copies (transfer.c)                                        */
/* ------------------------------------------------------------------------ */

typedef struct bench_transfer {
  bool measured;
  double bytes_per_step; /* X and Y of one batch: (n[0] + n[L]) · B · 4 */
  bench_stats copy;      /* one batch, pinned host -> device, CUDA events */
} bench_transfer;

/* Copies one batch (x_floats + y_floats, as the streaming feeder does: two
 * cudaMemcpyAsync from pinned memory) `repeats` times on device `device`. */
bool bench_measure_upload(int device, size_t x_floats, size_t y_floats,
                          size_t repeats, bench_transfer *transfer, char *error,
                          size_t error_size);

/* ------------------------------------------------------------------------ */
/* The machine (environment.c, peak.c)                                       */
/* ------------------------------------------------------------------------ */

typedef struct bench_gpu {
  char name[256];
  int index;
  int compute_major, compute_minor;
  int multiprocessors;
  size_t memory_bytes;
  int driver_cuda_version;  /* cudaDriverGetVersion: 13000 = 13.0 */
  int runtime_version;      /* cudaRuntimeGetVersion */
  int cublas_version[3];    /* major, minor, patch */
  int sm_clock_max_khz;     /* cudaDevAttrClockRate: the peak, not current */
  int memory_clock_max_khz; /* cudaDevAttrMemoryClockRate */
  char driver_release[64];  /* "580.65.06" from /proc, or "" */
} bench_gpu;

typedef struct bench_environment {
  char date_utc[32]; /* 2025-01-31T12:00:00Z */
  const char *commit;
  char cpu_model[256];
  long cpu_cores;
  int blas_threads;
  char blas_core[64]; /* OpenBLAS's kernels: "SkylakeX", "Prescott", ... */
  bool has_gpu;       /* the run is on CUDA and `gpu` is filled */
  bench_gpu gpu;
} bench_environment;

/* Date, commit, CPU. */
void bench_describe_host(bench_environment *environment);

/* Fills environment->gpu and memory->free_before/total for CUDA device
 * `device`, before any context exists on it. False (and nothing set) when
 * there is no usable device: the library will say why. */
bool bench_describe_gpu(int device, bench_environment *environment,
                        bench_device_memory *memory);

/* Free and total bytes of the current device; false on failure. */
bool bench_device_free_memory(size_t *free_bytes, size_t *total_bytes);

typedef struct bench_peak {
  double tflops;      /* NAN when unknown */
  const char *device; /* the table row that matched, or NULL */
} bench_peak;

/* The datasheet's dense peak for a device name and precision ("fp32",
 * "tf32", "bf16"); unknown devices give NAN. */
bench_peak bench_peak_tflops(const char *device_name, const char *precision);

/* Where the table's numbers come from. */
extern const char *const bench_peak_source;

/* ------------------------------------------------------------------------ */
/* The record (report_table.c, report_json.c)                                */
/* ------------------------------------------------------------------------ */

typedef struct bench_report {
  const bench_config *config;
  const char *backend_name; /* nn_context_backend_name */
  bool on_cuda;
  size_t examples, batches_per_epoch;
  size_t parameter_count;
  const bench_measurement *measurement;
  bench_stats steps, epoch_starts;
  double flops_per_step;
  bench_peak peak;
  bench_gemm_floor floor;
  bench_transfer transfer; /* measured only when streaming on CUDA */
  bench_memory_plan memory;
  const bench_environment *environment;
} bench_report;

/* The figures the table and the record derive from a report; NAN where a
 * figure does not apply (no peak for the device, not streaming, CPU). */
typedef struct bench_metrics {
  double samples_per_second; /* B / median step */
  double achieved_tflops;    /* flops_per_step / median step */
  double fraction_of_peak;   /* achieved / peak */
  double floor_tflops;       /* flops_per_step / median floor pass */
  double step_over_floor;    /* median step / median floor pass */
  double required_gb_per_s;  /* X and Y bytes of a batch / median step */
  double copy_gb_per_s;      /* X and Y bytes of a batch / median copy */
  double copy_fraction;      /* median copy / median step */
  double device_used_bytes;  /* free before context - free after warmup */
} bench_metrics;

bench_metrics bench_derive(const bench_report *report);

/* What the step timer measures on each backend, in the words the table and
 * the record use. */
const char *bench_timer_description(bool on_cuda);

void bench_print_table(const bench_report *report);

/* Writes the record to path atomically (temporary file, fsync, rename).
 * False on failure (message in error). */
bool bench_write_json(const bench_report *report, const char *path, char *error,
                      size_t error_size);

#endif
