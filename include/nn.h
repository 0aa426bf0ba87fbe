/*
 * nn.h — the public API of libnn: training deep fully connected networks
 * ("L-layer" networks) on an NVIDIA GPU or on the CPU, from C.
 *
 * Conventions, kept literally from the course notes:
 *   - X is (n_x × m): one example per column, stored column-major, so one
 *     example is n_x contiguous floats (the bytes of a sample-major file).
 *   - Layers are numbered l = 1..L. Layer 0 is the input (width n_x).
 *     Z[l] = W[l] A[l-1] + b[l], A[l] = g[l](Z[l]), A[0] = X, A[L] = Ŷ.
 *   - W[l] is (n[l] × n[l-1]) and is exchanged row-major, shape
 *     [n_out, n_in] — PyTorch's nn.Linear layout. b[l] is (n[l] × 1).
 *   - Cost J = (1/m) Σ L(ŷ, y) (+ (λ/2m) Σ ||W[l]||² with L2).
 *
 * Every call returns nn_status. On failure the context keeps a message that
 * names the failing call, what is wrong and where (nn_context_last_error).
 * The library never prints, never exits, and keeps no global mutable state:
 * all state lives in a context and the objects made from it. A context and
 * its objects may be used by one thread at a time; separate contexts may be
 * used from separate threads concurrently. A CUDA context captures its
 * training steps into graphs in cudaStreamCaptureModeThreadLocal, and makes
 * ordinary synchronising CUDA calls: code elsewhere in the process that
 * captures a graph in cudaStreamCaptureModeGlobal (PyTorch's default) must
 * not do so while an nn call runs: CUDA would refuse nn's calls (nn
 * returns those as errors) and invalidate that capture.
 *
 * Naming: nanomsg (linked by Criterion) exports many nn_* symbols
 * (nn_socket, nn_close, nn_init, nn_free, nn_device, ...). Every symbol here
 * is prefixed nn_context_, nn_model_, nn_dataset_, nn_train_, nn_load_ or
 * is one of nn_status_str / nn_activation_* / nn_loss_* / nn_init_* /
 * nn_optimizer_*, none of which nanomsg uses; a test checks every exported
 * symbol against the installed libnanomsg.
 */
#ifndef NN_H
#define NN_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(NN_BUILDING_LIBRARY) && defined(__GNUC__)
#define NN_API __attribute__((visibility("default")))
#else
#define NN_API
#endif

#define NN_VERSION_MAJOR 0
#define NN_VERSION_MINOR 1
#define NN_VERSION_PATCH 0

/* ------------------------------------------------------------------------ */
/* Status codes                                                              */
/* ------------------------------------------------------------------------ */

typedef enum nn_status {
  NN_OK = 0,
  NN_ERROR_INVALID_ARGUMENT, /* NULL pointer, out-of-range value, bad option */
  NN_ERROR_INVALID_SPEC,     /* model spec: no layers, width 0, bad pairing */
  NN_ERROR_SHAPE_MISMATCH,   /* data or parameter shapes do not fit the model */
  NN_ERROR_INVALID_DATA,     /* NaN/Inf, labels out of range, bad targets */
  NN_ERROR_OUT_OF_MEMORY,    /* host or device allocation failed */
  NN_ERROR_NUMERIC,          /* training diverged: the cost became NaN/Inf */
  NN_ERROR_NO_DEVICE,        /* a GPU was asked for and none can be used */
  NN_ERROR_BACKEND,          /* a CUDA, cuBLAS, cuRAND or BLAS call failed */
  NN_ERROR_IO,               /* a file could not be read or written */
  NN_ERROR_FORMAT,           /* a file is truncated, corrupt or not ours */
  NN_ERROR_UNSUPPORTED,      /* valid request this build cannot serve */
  NN_ERROR_STATE,            /* call out of order (backward before forward) */
  NN_ERROR_STOPPED           /* not an error: training stopped by callback */
} nn_status;

/* A short fixed description of a status ("invalid argument"). Never NULL. */
NN_API const char *nn_status_str(nn_status status);

/* ------------------------------------------------------------------------ */
/* Context: backend and device choice, last error                            */
/* ------------------------------------------------------------------------ */

typedef struct nn_context nn_context;

typedef enum nn_backend_kind {
  NN_BACKEND_AUTO = 0, /* CUDA when a usable GPU is present, else the CPU */
  NN_BACKEND_CPU,      /* float32 reference backend: OpenBLAS + plain C */
  NN_BACKEND_CUDA      /* NVIDIA GPU (device chosen by index) */
} nn_backend_kind;

/* Creates a context on the given backend. device_index picks the GPU for
 * NN_BACKEND_CUDA and NN_BACKEND_AUTO (0 for the first) and is ignored for
 * the CPU. AUTO never fails for want of a GPU: it falls back to the CPU and
 * says why in nn_context_notice(). On failure *out is NULL; when
 * error_message is not NULL the reason is written there (the context that
 * would keep it does not exist). */
NN_API nn_status nn_context_create(nn_backend_kind backend, int device_index,
                                   nn_context **out, char *error_message,
                                   size_t error_message_size);

/* Frees the context. Models and datasets made from it must be destroyed
 * first. NULL is allowed. */
NN_API void nn_context_destroy(nn_context *ctx);

/* The last error on this context: "call: what is wrong [file:line]", or ""
 * when no call has failed. Valid until the next failing call. */
NN_API const char *nn_context_last_error(const nn_context *ctx);

/* Clears the last error. */
NN_API void nn_context_clear_error(nn_context *ctx);

/* "cpu" or "cuda:N (device name)". */
NN_API const char *nn_context_backend_name(const nn_context *ctx);

/* Which backend the context actually runs on (never NN_BACKEND_AUTO). */
NN_API nn_backend_kind nn_context_backend(const nn_context *ctx);

/* A note for the user: from context creation (why AUTO fell back to the
 * CPU), or later the latest fast path the context gave up and why (a CUDA
 * graph capture that failed, a fused cuBLASLt product that refused to run,
 * an epilogue that failed nn's check); "" when there is nothing to say.
 * Training is not failed for any of these. Notes accumulate in the order
 * they were made, separated by "; ", each once; the notice holds at most
 * 4095 characters, and when a note does not fit it ends with "(later
 * notes left out)" instead, keeping the first notes. */
NN_API const char *nn_context_notice(const nn_context *ctx);

/* For a CPU context: the OpenBLAS kernels ("SkylakeX", "Haswell") that
 * would run its matrix products several times faster than the ones
 * OpenBLAS chose — Debian 12's OpenBLAS takes its generic SSE3 kernels on
 * CPUs newer than it knows. OpenBLAS reads the choice from the environment
 * variable OPENBLAS_CORETYPE when it loads, so only a new process can use
 * it (the tools start themselves again with it). NULL for a CUDA context,
 * when OPENBLAS_CORETYPE is set already, or when the kernels fit. */
NN_API const char *nn_context_faster_blas_core(const nn_context *ctx);

/* ------------------------------------------------------------------------ */
/* Activations, losses, initializations                                      */
/* ------------------------------------------------------------------------ */

typedef enum nn_activation {
  NN_ACTIVATION_LINEAR = 0, /* g(z) = z */
  NN_ACTIVATION_RELU,       /* g(z) = max(0, z) */
  NN_ACTIVATION_LEAKY_RELU, /* g(z) = z > 0 ? z : 0.01 z */
  NN_ACTIVATION_TANH,       /* g(z) = tanh(z) */
  NN_ACTIVATION_SIGMOID,    /* g(z) = 1 / (1 + e^-z) */
  NN_ACTIVATION_GELU,       /* g(z) = z Φ(z), exact (erf) form */
  NN_ACTIVATION_SOFTMAX,    /* output layer only, with categorical CE */
  /* g(z) = ½ z (1 + tanh(√(2/π) (z + 0.044715 z³))): GELU's tanh
   * approximation, PyTorch's gelu(approximate="tanh") and the GELU of
   * cuBLASLt's epilogues, which the CUDA backend fuses (nn_fusion). */
  NN_ACTIVATION_GELU_TANH,
  NN_ACTIVATION_COUNT
} nn_activation;

/* Slope of leaky ReLU for z <= 0, as in the course notes. */
#define NN_LEAKY_RELU_SLOPE 0.01f

typedef enum nn_loss {
  /* sigmoid output: -(y log ŷ + (1-y) log(1-ŷ)), summed over outputs */
  NN_LOSS_BINARY_CROSS_ENTROPY = 0,
  /* softmax output: -Σ_k y_k log ŷ_k, computed with log-sum-exp */
  NN_LOSS_CATEGORICAL_CROSS_ENTROPY,
  /* linear output: ½ Σ_k (ŷ_k - y_k)², the notes' squared error */
  NN_LOSS_MEAN_SQUARED_ERROR,
  NN_LOSS_COUNT
} nn_loss;

typedef enum nn_init {
  NN_INIT_ZEROS = 0, /* all zeros: hidden units stay symmetric (on purpose) */
  NN_INIT_NORMAL,    /* N(0, 1) · 0.01, the notes' small random init */
  NN_INIT_HE,        /* N(0, 1) · sqrt(2 / n[l-1]) */
  NN_INIT_XAVIER,    /* N(0, 1) · sqrt(1 / n[l-1]), the notes' Xavier */
  NN_INIT_GLOROT,    /* N(0, 1) · sqrt(2 / (n[l-1] + n[l])) */
  NN_INIT_COUNT
} nn_init;

/* Lower-case names ("relu", "leaky_relu", "binary_cross_entropy", "he", ...)
 * and their parsers. The parsers return NN_ERROR_INVALID_ARGUMENT for an
 * unknown name and leave *out untouched. name() returns "?" when out of
 * range. */
NN_API const char *nn_activation_name(nn_activation activation);
NN_API nn_status nn_activation_from_name(const char *name, nn_activation *out);
NN_API const char *nn_loss_name(nn_loss loss);
NN_API nn_status nn_loss_from_name(const char *name, nn_loss *out);
NN_API const char *nn_init_name(nn_init init);
NN_API nn_status nn_init_from_name(const char *name, nn_init *out);

/* The output activation each loss requires (sigmoid, softmax, linear). */
NN_API nn_activation nn_loss_output_activation(nn_loss loss);

/* ------------------------------------------------------------------------ */
/* Datasets: X (n_x × m) and Y (n_y × m), examples as columns                */
/* ------------------------------------------------------------------------ */

/* A dataset is host memory: models of any context train on it, evaluate
 * and predict on it (nntrain loads on a CPU context while a GPU's opens);
 * the context given at creation receives the errors of creating it. */
typedef struct nn_dataset nn_dataset;

/* Copies x (n_x × m, column-major: example j at x + j*n_x) and y (n_y × m)
 * into a new dataset. Rejects NaN/Inf (naming the first bad element). */
NN_API nn_status nn_dataset_create(nn_context *ctx, size_t input_width,
                                   size_t target_width, size_t example_count,
                                   const float *x, const float *y,
                                   nn_dataset **out);

/* Like nn_dataset_create but borrows x and y: no copy. The caller keeps them
 * alive and unchanged until the view is destroyed. Also checked for
 * NaN/Inf. */
NN_API nn_status nn_dataset_view(nn_context *ctx, size_t input_width,
                                 size_t target_width, size_t example_count,
                                 const float *x, const float *y,
                                 nn_dataset **out);

/* Copies x and turns integer class ids into targets: one-hot columns of
 * class_count rows when class_count >= 2 (for softmax), or a single 0/1 row
 * when class_count == 1 (for a sigmoid unit; labels must be 0 or 1).
 * Labels out of range are rejected naming the example. */
NN_API nn_status nn_dataset_create_from_labels(
    nn_context *ctx, size_t input_width, size_t example_count, const float *x,
    const int32_t *labels, size_t class_count, nn_dataset **out);

/* Frees the dataset (a view frees only itself). NULL is allowed. */
NN_API void nn_dataset_destroy(nn_dataset *dataset);

NN_API size_t nn_dataset_input_width(const nn_dataset *dataset);
NN_API size_t nn_dataset_target_width(const nn_dataset *dataset);
NN_API size_t nn_dataset_example_count(const nn_dataset *dataset);
/* X (n_x × m) and Y (n_y × m), column-major. */
NN_API const float *nn_dataset_inputs(const nn_dataset *dataset);
NN_API const float *nn_dataset_targets(const nn_dataset *dataset);

/* ------------------------------------------------------------------------ */
/* Data files                                                                */
/* ------------------------------------------------------------------------ */

/* How a label file (or a CSV target column) becomes Y. */
typedef enum nn_target_kind {
  NN_TARGETS_CLASSES = 0, /* integer class ids -> one-hot columns (softmax) */
  NN_TARGETS_BINARY,      /* 0/1 labels -> one row (a sigmoid unit) */
  NN_TARGETS_VALUES       /* numbers as they are (regression); a label
                             tensor of shape (m, k) gives k rows */
} nn_target_kind;

typedef struct nn_load_options {
  nn_target_kind targets;
  size_t class_count; /* NN_TARGETS_CLASSES: number of classes (labels must
                         lie in 0..class_count-1); 0 = max label + 1 */
  int scale_uint8;    /* divide uint8 inputs by 255, as the notes do */
} nn_load_options;

/* classes, class_count 0, scale_uint8 1. */
NN_API void nn_load_options_default(nn_load_options *options);

/* Loads X, and Y when y_path is not NULL, from files:
 *   - "file.h5:dataset" or "file.hdf5:dataset": an HDF5 dataset (libhdf5);
 *   - "*.npy": NumPy, float32/float64/uint8/int64, C order;
 *   - anything else: IDX (the MNIST family), plain or gzip-compressed.
 * The first dimension counts examples; the rest is flattened per example in
 * C order (the notes' reshape(m, -1)), giving X (n_x × m). Inputs must be
 * finite; x and y must have the same number of examples. Without y_path the
 * dataset has no targets (target width 0, targets NULL): it can be
 * predicted on, not trained on or evaluated (NN_ERROR_SHAPE_MISMATCH).
 * options may be NULL for the defaults. Besides the dtypes above, .npy and
 * IDX files may hold int8/int16/int32 (and .npy uint16/uint32); HDF5
 * datasets any integer or float type.
 * Errors name the file and what is wrong:
 *   NN_ERROR_IO          the file cannot be opened or read;
 *   NN_ERROR_FORMAT      malformed content: truncated, wrong magic, bad
 *                        header, unknown IDX type, a size that does not
 *                        match the file, trailing bytes, not HDF5;
 *   NN_ERROR_UNSUPPORTED a valid file we do not read: big-endian or other
 *                        .npy dtypes, fortran_order, HDF5 strings;
 *   NN_ERROR_INVALID_DATA NaN/Inf or values too large for float, labels
 *                        negative, fractional or out of range;
 *   NN_ERROR_SHAPE_MISMATCH x and y example counts differ, no examples,
 *                        labels of the wrong shape;
 *   NN_ERROR_INVALID_ARGUMENT bad options (class_count 1), no such HDF5
 *                        dataset or CSV column. */
NN_API nn_status nn_dataset_load(nn_context *ctx, const char *x_path,
                                 const char *y_path,
                                 const nn_load_options *options,
                                 nn_dataset **out);

/* Loads a CSV file with a header row and numeric columns. target_column
 * names the column that becomes Y (interpreted per options); every other
 * column is an input. target_column may be NULL: inputs only. Cells are
 * comma separated, optionally double-quoted; blank lines, spaces around
 * cells and "\r\n" are accepted. Errors name the file, line and column
 * (statuses as above: an empty file, a ragged row or a cell that is not a
 * number is NN_ERROR_FORMAT; "nan"/"inf" is NN_ERROR_INVALID_DATA; a
 * header without rows NN_ERROR_SHAPE_MISMATCH). */
NN_API nn_status nn_dataset_load_csv(nn_context *ctx, const char *path,
                                     const char *target_column,
                                     const nn_load_options *options,
                                     nn_dataset **out);

/* ------------------------------------------------------------------------ */
/* Model                                                                     */
/* ------------------------------------------------------------------------ */

typedef struct nn_model nn_model;

typedef struct nn_layer_spec {
  size_t units;             /* n[l] > 0 */
  nn_activation activation; /* g[l]; the last layer's must fit the loss */
  float dropout;            /* probability of dropping a unit of A[l] while
                               training, in [0, 1); hidden layers only */
} nn_layer_spec;

typedef struct nn_model_spec {
  size_t input_width;          /* n_x = n[0] > 0 */
  size_t layer_count;          /* L >= 1 (1: logistic regression) */
  const nn_layer_spec *layers; /* layers[0] is layer 1 ... layers[L-1] is L */
  nn_loss loss;                /* output + loss pair */
} nn_model_spec;

/* Builds a model from a spec: validates it (and says what is wrong, never
 * replacing a setting silently), lays out the parameter, gradient and
 * optimizer arenas on the context's backend and zero-fills the parameters.
 * Call nn_model_init or nn_model_set_layer_parameters before training. */
NN_API nn_status nn_model_create(nn_context *ctx, const nn_model_spec *spec,
                                 nn_model **out);

/* Frees the model and every buffer it owns. NULL is allowed. */
NN_API void nn_model_destroy(nn_model *model);

/* L, and n[l] for l = 0..L (n[0] = n_x). */
NN_API size_t nn_model_layer_count(const nn_model *model);
NN_API size_t nn_model_layer_units(const nn_model *model, size_t layer);
NN_API nn_activation nn_model_layer_activation(const nn_model *model,
                                               size_t layer);
NN_API float nn_model_layer_dropout(const nn_model *model, size_t layer);
NN_API nn_loss nn_model_loss(const nn_model *model);
/* Number of floats in the parameter arena: Σ n[l]·n[l-1] + n[l]. */
NN_API size_t nn_model_parameter_count(const nn_model *model);

/* The arithmetic of the matrix products (every other step — bias,
 * activations, loss, reductions, the optimizer over the fp32 master
 * weights — stays fp32 whatever the precision):
 *   fp32: plain single precision (cuBLAS default math, no TF32); the CPU's
 *         only precision;
 *   tf32: fp32 data, products on tensor cores with TF32 inputs (10-bit
 *         mantissa), fp32 accumulation;
 *   bf16: W, A and dZ rounded to bf16 for the products, fp32 accumulation
 *         and fp32 results; parameters, gradients and optimizer state stay
 *         fp32. */
typedef enum nn_precision {
  NN_PRECISION_FP32 = 0,
  NN_PRECISION_TF32,
  NN_PRECISION_BF16,
  NN_PRECISION_COUNT
} nn_precision;

NN_API const char *nn_precision_name(nn_precision precision);
NN_API nn_status nn_precision_from_name(const char *name, nn_precision *out);

/* Sets the precision of the model's matrix products from the next call on
 * (training, prediction, the single-batch steps). NN_ERROR_UNSUPPORTED on a
 * backend that cannot (the CPU computes in fp32 only). A new model is
 * fp32. */
NN_API nn_status nn_model_set_precision(nn_model *model,
                                        nn_precision precision);
NN_API nn_precision nn_model_precision(const nn_model *model);

/* Whether the CUDA backend fuses work into the matrix products with
 * cuBLASLt epilogues. With AUTO, a hidden ReLU layer without dropout, with
 * at least 4 units and its b 16-byte aligned in the parameter arena (so
 * when n[0..l] are multiples of 4), gets Z = W A_prev + b and A = max(Z, 0)
 * from one cuBLASLt call that also keeps a ReLU bit mask, and the backward
 * product of the layer above it yields this layer's dZ (dA through the mask)
 * and its db column sums in the same call (DRELU_BGRAD). A hidden GELU_TANH
 * layer with a multiple of 8 units is fused the same way (GELU_AUX_BIAS
 * keeps Z; DGELU_BGRAD). Every other layer — and any layer whose shapes
 * cuBLASLt has no fused algorithm for — runs the plain products and nn's
 * own kernels, which OFF uses everywhere (the reference). The exact (erf)
 * GELU is not fused: cuBLASLt's GELU is the tanh approximation. Fused and
 * plain results agree to rounding (the order of the sums differs), not bit
 * for bit. The CPU has nothing to fuse and takes either setting. A new
 * model is AUTO. */
typedef enum nn_fusion {
  NN_FUSION_AUTO = 0,
  NN_FUSION_OFF,
  NN_FUSION_COUNT
} nn_fusion;

NN_API const char *nn_fusion_name(nn_fusion fusion);
NN_API nn_status nn_fusion_from_name(const char *name, nn_fusion *out);
/* Takes effect from the next forward pass. */
NN_API nn_status nn_model_set_fusion(nn_model *model, nn_fusion fusion);
NN_API nn_fusion nn_model_fusion(const nn_model *model);
/* Bytes the model holds in its backend's memory (the GPU's, on CUDA):
 * parameters, gradients, the optimizer moments in use (none for gd, one
 * arena for momentum or RMSprop, two for Adam; made when a run or
 * nn_model_update first needs them), the activation arena for the largest
 * batch reserved so far and, in bf16, the products' bf16 copies. The data
 * set and the batch buffers of a training run are not the model's. */
NN_API size_t nn_model_memory_bytes(const nn_model *model);

/* 1 if layer l's last forward pass ran fused (an epilogue), 0 if it
 * ran the plain product and kernels or has not run; l = 1..L. */
NN_API int nn_model_layer_fused(const nn_model *model, size_t layer);

/* Initializes every W[l] with the given scheme from cuRAND (Philox) seeded
 * with seed, and every b[l] to zero. One seed gives the same weights on the
 * CPU (cuRAND host generator) and the GPU (device generator). */
NN_API nn_status nn_model_init(nn_model *model, nn_init init, uint64_t seed);

/* Copies W[l] (row-major [n[l], n[l-1]]) and b[l] ([n[l]]) in or out,
 * l = 1..L. Either pointer may be NULL to skip that tensor. Setting rejects
 * NaN/Inf and clears optimizer state. */
NN_API nn_status nn_model_set_layer_parameters(nn_model *model, size_t layer,
                                               const float *weights,
                                               const float *bias);
NN_API nn_status nn_model_get_layer_parameters(const nn_model *model,
                                               size_t layer, float *weights,
                                               float *bias);

/* The whole parameter arena, layer by layer, W[l] then b[l], in the layouts
 * above; count must be nn_model_parameter_count(). */
NN_API nn_status nn_model_get_parameters(const nn_model *model, float *out,
                                         size_t count);
NN_API nn_status nn_model_set_parameters(nn_model *model, const float *values,
                                         size_t count);

/* ------------------------------------------------------------------------ */
/* Optimizers and training options                                           */
/* ------------------------------------------------------------------------ */

typedef enum nn_optimizer {
  NN_OPTIMIZER_GD = 0,   /* θ -= α g */
  NN_OPTIMIZER_MOMENTUM, /* v = β1 v + (1-β1) g;  θ -= α v */
  NN_OPTIMIZER_RMSPROP,  /* s = β2 s + (1-β2) g²; θ -= α g / (√s + ε) */
  NN_OPTIMIZER_ADAM,     /* bias-corrected: v̂ = v/(1-β1^t), ŝ = s/(1-β2^t);
                            θ -= α v̂ / (√ŝ + ε), evaluated (as PyTorch
                            does) as θ -= α_t v / (√s + ε_t) with
                            α_t = α √(1-β2^t) / (1-β1^t), ε_t = ε √(1-β2^t) */
  NN_OPTIMIZER_COUNT
} nn_optimizer;

NN_API const char *nn_optimizer_name(nn_optimizer optimizer);
NN_API nn_status nn_optimizer_from_name(const char *name, nn_optimizer *out);

typedef struct nn_optimizer_settings {
  nn_optimizer kind;
  float beta1;   /* momentum / Adam first moment, default 0.9 */
  float beta2;   /* RMSprop / Adam second moment, default 0.999 */
  float epsilon; /* default 1e-8 */
} nn_optimizer_settings;

/* What a progress callback receives. */
typedef struct nn_progress {
  size_t epoch;             /* 0-based */
  size_t iteration;         /* updates done so far, this one included
                               (counting any before a resume) */
  int epoch_end;            /* 1 for the per-epoch report, 0 per iteration */
  double cost;              /* iteration: that batch's cost, before its update;
                               epoch end: the example-weighted mean of the
                               epoch's batch costs */
  double validation_cost;   /* epoch end with a validation split, else NAN */
  double validation_metric; /* accuracy, or MSE for regression; else NAN */
  float learning_rate;      /* the rate in force for this epoch */
} nn_progress;

/* Returns 0 to continue, non-zero to stop training (nn_model_train then
 * returns NN_ERROR_STOPPED with the parameters of the last update). It may
 * read the model being trained (predict, evaluate, save, the getters) but
 * not change it: its setters, nn_model_init, nn_model_update,
 * nn_model_reset_optimizer, nn_model_seed_dropout,
 * nn_model_load_parameters and nn_model_train fail with NN_ERROR_STATE
 * until the run returns (stop, change, resume). A forward pass with
 * training on draws dropout masks from the run's stream: a callback that
 * wants the run's masks unchanged predicts instead. */
typedef int (*nn_progress_callback)(const nn_progress *progress,
                                    void *user_data);

/* Where the training data lives during nn_model_train. */
typedef enum nn_data_placement {
  NN_DATA_AUTO = 0,  /* resident when it fits on the GPU (half of the free
                        memory at most), else streamed; the CPU streams */
  NN_DATA_STREAMING, /* host memory; producer threads (NN_FEEDER_THREADS
                        in the environment, else half the CPUs, 1 to 4)
                        gather each batch into pinned staging buffers
                        copied on a copy stream while the previous batch
                        trains */
  NN_DATA_RESIDENT   /* the whole set is copied to the device once and
                        batches are gathered there */
} nn_data_placement;

/* Whether each training step (forward, loss, backward, update) is
 * captured once into a CUDA graph and replayed as one launch. The results
 * are the same bits either way; graphs save the per-kernel launch cost that
 * dominates small models. */
typedef enum nn_step_graphs {
  NN_STEP_GRAPHS_AUTO = 0, /* on where they apply: a CUDA context and no
                              dropout (whose masks come from cuRAND's
                              host-side stream state) */
  NN_STEP_GRAPHS_OFF       /* every kernel launched one by one */
} nn_step_graphs;

/* Where a training run is, to continue it exactly: the costs logged after
 * resuming equal those of an uninterrupted run with the same seed. Every
 * random stream (split, shuffle, dropout) is derived from the seed and the
 * epoch / iteration, so this is all the scheduler needs besides the
 * parameters and optimizer state kept in the model. */
typedef struct nn_train_state {
  size_t epoch;          /* epoch in progress (0-based) */
  size_t batch;          /* batches of that epoch already done */
  size_t iteration;      /* updates done so far */
  double epoch_cost_sum; /* Σ batch cost · batch examples over those batches */
  double best_validation_cost; /* NAN when no epoch has been validated */
  size_t best_epoch;
} nn_train_state;

typedef struct nn_train_options {
  nn_optimizer_settings optimizer;
  float learning_rate; /* α > 0, default 0.0075 */
  float decay_rate;    /* α_epoch = α / (1 + decay_rate · epoch), 0 = off */
  float l2_lambda;     /* λ >= 0: cost += (λ/2m) Σ ||W||², dW += (λ/m) W */
  size_t batch_size;   /* 0: full batch (the course's loop) */
  size_t epochs;       /* passes over the data; with full batch, iterations */
  uint64_t seed;       /* shuffle, dropout masks, validation split */
  double validation_fraction; /* in [0, 1): held out from the training set */
  size_t early_stopping_patience; /* epochs without a better validation cost
                                     before stopping (best parameters are
                                     restored); 0 = off; needs a split */
  size_t iteration_report_every;  /* call back every N iterations; 0 = only
                                     at epoch ends. A batch's cost stays on
                                     the GPU until it is needed, so a report
                                     waits for the device: every iteration
                                     costs one wait per step, which small
                                     models feel. */
  nn_progress_callback callback;  /* may be NULL */
  void *callback_user_data;
  nn_data_placement data_placement; /* default NN_DATA_AUTO; the results
                                       are identical either way */
  const nn_train_state *resume;     /* NULL: start afresh; else continue from
                                       this state (from a summary or a
                                       checkpoint) */
  size_t max_iterations; /* 0 = no limit; else training ends (NN_OK, with a
                            resumable state) once this many updates are done
                            in all, counting any before a resume */
  const volatile sig_atomic_t *stop_request; /* NULL, or a flag (set by a
                            signal handler, say) read before every batch:
                            when non-zero, training stops at that batch
                            boundary as if the callback had asked
                            (NN_ERROR_STOPPED, resumable), without waiting
                            for the device */
  float *step_times_ms;       /* NULL, or room for step_times_capacity
                                 floats: the time of each update of this
                                 call, in order — on the GPU between CUDA
                                 events recorded after consecutive updates
                                 on the compute stream (the first from the
                                 start of the run), on the CPU by the host
                                 clock. Written by the time nn_model_train
                                 returns. */
  size_t step_times_capacity; /* steps beyond it are not timed */
  nn_step_graphs step_graphs; /* default NN_STEP_GRAPHS_AUTO */
} nn_train_options;

/* Fills the defaults: gd, α 0.0075, β1 0.9, β2 0.999, ε 1e-8, full batch,
 * 100 epochs, seed 1, everything else off. */
NN_API void nn_train_options_default(nn_train_options *options);

/* What training did. */
typedef struct nn_train_summary {
  size_t epochs_run;     /* epochs completed, counting any before a resume */
  size_t iterations_run; /* updates, counting any before a resume */
  double final_cost;     /* cost of the last epoch (mean over its batches;
                            over those done, when max_iterations ended
                            training within an epoch) */
  double best_validation_cost; /* NAN without a validation split */
  size_t best_epoch;           /* epoch whose parameters were kept */
  int stopped_early;           /* early stopping triggered */
  int data_resident;           /* 1 if the data was resident, 0 streamed */
  size_t steps_timed;          /* entries written to options.step_times_ms */
  size_t steps_graphed;        /* steps run as CUDA graph launches */
  nn_train_state state;        /* where training ended: after a stop by the
                                  callback, pass it as options.resume to go
                                  on from the next batch */
} nn_train_summary;

/* Trains on the dataset with mini-batch (or full-batch) gradient descent and
 * the chosen optimizer. Targets are checked against the loss first (0/1 or
 * [0, 1] for binary CE, columns of a distribution for categorical CE).
 * summary may be NULL. Returns NN_ERROR_NUMERIC if the cost becomes NaN/Inf,
 * NN_ERROR_STOPPED if the callback stopped it. */
NN_API nn_status nn_model_train(nn_model *model, const nn_dataset *train,
                                const nn_train_options *options,
                                nn_train_summary *summary);

/* ------------------------------------------------------------------------ */
/* Checkpoints (safetensors)                                                 */
/* ------------------------------------------------------------------------ */

/* Saves the model as safetensors: tensors layers.{l}.weight (F32, shape
 * [n_out, n_in], row-major: PyTorch's nn.Linear layout) and layers.{l}.bias
 * ([n_out]) for l = 0..L-1, the architecture in __metadata__, and, when given,
 * the training settings (options) and, with a state, everything needed to
 * resume: optimizer moments (optimizer.first_moment, optimizer.second_moment,
 * [parameter_count]), Adam's step and the state, and, for a run stopped with
 * early stopping on, the best parameters so far
 * (early_stopping.best_parameters). The write is atomic
 * (temporary file "path.tmp.XXXXXX" in the same directory, fsync, rename): an
 * existing file is never left half-written, and on failure (NN_ERROR_IO, the
 * message naming the path and the system's reason) the temporary file is
 * removed. Floats in the metadata read back bit for bit; a NaN
 * best_validation_cost is stored as null. The file has the mode a new file
 * would get (0666 less the umask), or keeps the one it had. */
NN_API nn_status nn_model_save(nn_model *model, const char *path,
                               const nn_train_options *options,
                               const nn_train_state *state);

/* Creates a model from a checkpoint written by nn_model_save, its
 * architecture taken from the metadata. When options is not NULL and the file
 * has training settings they are filled in (callback fields NULL, resume
 * NULL; left untouched when the file has none); when state is not NULL and
 * the file has a resume state, it is filled in and the optimizer state
 * restored; *has_state (may be NULL) says whether it had one. Nothing is
 * written to the outputs unless the call succeeds. Everything is checked
 * before it is trusted, and before anything is allocated from it: header
 * length, JSON, dtypes, shapes, offsets inside the file, the architecture.
 * Weights may be F32, F64, F16 or BF16 (converted to float). Tensors named
 * layers.* that the architecture has no place for are refused; tensors with
 * other names are ignored. Status: NN_ERROR_IO when the file cannot be read;
 * NN_ERROR_FORMAT when it is malformed or not an nn checkpoint (including a
 * missing tensor, an invalid architecture, and any layers.* stray);
 * NN_ERROR_SHAPE_MISMATCH when a tensor's shape disagrees with the
 * architecture; NN_ERROR_UNSUPPORTED for a newer format_version or weights
 * of a non-float dtype; NN_ERROR_INVALID_DATA for NaN/Inf parameters or
 * moments (or a negative second moment). Messages name the file and the
 * tensor or metadata field. */
NN_API nn_status nn_model_load(nn_context *ctx, const char *path,
                               nn_model **out, nn_train_options *options,
                               nn_train_state *state, int *has_state);

/* Sets the parameters of an existing model from a safetensors file holding
 * layers.{l}.weight / layers.{l}.bias of matching shapes (F32 or F64, also
 * F16 and BF16; converted to float), such as one written by PyTorch or numpy
 * (tensors in any order in the buffer); no metadata is needed, and any there
 * is ignored. Shapes must match exactly; a missing tensor, a different shape
 * or a layers.* tensor the model has no place for (a deeper network) is
 * NN_ERROR_SHAPE_MISMATCH, e.g. "layers.1.weight has shape [64, 784] but the
 * model's layer 2 is [64, 128]". Other tensors are ignored. Other statuses
 * as for nn_model_load. The optimizer state is reset; on failure the model
 * is unchanged. */
NN_API nn_status nn_model_load_parameters(nn_model *model, const char *path);

/* ------------------------------------------------------------------------ */
/* The notes' forward and backward functions, on one batch                   */
/* ------------------------------------------------------------------------ */

/* Forward propagation of x (n_x × m). training != 0 applies dropout (masks
 * drawn from the model's generator) and keeps Z/A for backward. When yhat is
 * not NULL, A[L] (n[L] × m) is copied there. */
NN_API nn_status nn_model_forward(nn_model *model, const float *x, size_t m,
                                  int training, float *yhat);

/* Cost J of the last forward pass against y (n[L] × m), with the L2 term
 * (λ/2m) Σ||W||² when l2_lambda > 0. */
NN_API nn_status nn_model_cost(nn_model *model, const float *y, size_t m,
                               float l2_lambda, float *cost);

/* Backward propagation from the last forward pass: fills the gradient arena
 * with dW[l] = (1/m) dZ[l] A[l-1]ᵀ + (λ/m) W[l] and db[l] = (1/m) Σ_cols
 * dZ[l]. The dropout masks enter only if that pass applied them
 * (training != 0). */
NN_API nn_status nn_model_backward(nn_model *model, const float *y, size_t m,
                                   float l2_lambda);

/* dW[l] (row-major [n[l], n[l-1]]) and db[l] of the last backward pass,
 * until an update consumes them (NN_ERROR_STATE after that). */
NN_API nn_status nn_model_get_layer_gradients(const nn_model *model,
                                              size_t layer, float *weights,
                                              float *bias);

/* One optimizer step over the whole parameter arena with the gradients of
 * the last backward pass. Adam's step counter t lives in the model. The
 * update consumes the gradients: a second update without a new backward
 * pass returns NN_ERROR_STATE. */
NN_API nn_status nn_model_update(nn_model *model,
                                 const nn_optimizer_settings *optimizer,
                                 float learning_rate);

/* Resets the optimizer state (velocities, second moments, Adam's t). */
NN_API nn_status nn_model_reset_optimizer(nn_model *model);

/* Reseeds the generator used for dropout masks. */
NN_API nn_status nn_model_seed_dropout(nn_model *model, uint64_t seed);

/* ------------------------------------------------------------------------ */
/* Prediction and evaluation                                                 */
/* ------------------------------------------------------------------------ */

/* Ŷ = A[L] (n[L] × m): probabilities for sigmoid/softmax, values for a
 * linear output. Processes large m in chunks. */
NN_API nn_status nn_model_predict(nn_model *model, const float *x, size_t m,
                                  float *yhat);

/* Class per example: argmax for softmax; ŷ >= 0.5 for a single sigmoid unit
 * (argmax for several). Regression models return NN_ERROR_INVALID_ARGUMENT. */
NN_API nn_status nn_model_predict_classes(nn_model *model, const float *x,
                                          size_t m, int32_t *classes);

typedef struct nn_metrics {
  double cost;     /* J on the data (without L2) */
  double accuracy; /* classification; NAN for regression */
  double mse;      /* mean over all elements of (ŷ - y)²; regression only */
  double mae;      /* mean over all elements of |ŷ - y|; regression only */
} nn_metrics;

NN_API nn_status nn_model_evaluate(nn_model *model, const nn_dataset *data,
                                   nn_metrics *metrics);

#ifdef __cplusplus
}
#endif

#endif /* NN_H */
