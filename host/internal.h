/*
 * internal.h — library-private structures shared by host/ and cuda/.
 *
 * Nothing here is exported: the library is built with hidden visibility and
 * every non-static private symbol is prefixed nnlib_ so that the static
 * library cannot collide with nanomsg's many nn_* symbols or a caller's.
 */
#ifndef NN_INTERNAL_H
#define NN_INTERNAL_H

#include "nn.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Included from the CUDA backend's .cu files, compiled as C++. */
#ifdef __cplusplus
extern "C" {
#endif

#define NNLIB_ERROR_CAPACITY 1024
#define NNLIB_NOTICE_CAPACITY 4096

typedef struct nnlib_backend nnlib_backend;

struct nn_context {
  nn_backend_kind backend_kind;
  int device_index;
  nnlib_backend *backend;
  char backend_name[128];
  char notice[NNLIB_NOTICE_CAPACITY];
  char last_error[NNLIB_ERROR_CAPACITY];
};

/* Records "call: message [file:line]" as the context's last error and returns
 * status, so that failures read `return NNLIB_FAIL(ctx, STATUS, "...", ...)`.
 * call is the public entry point (or library function) that failed. */
nn_status nnlib_fail(nn_context *ctx, nn_status status, const char *call,
                     const char *file, int line, const char *format, ...)
    __attribute__((format(printf, 6, 7)));

#define NNLIB_FAIL(ctx, status, ...)                                           \
  nnlib_fail((ctx), (status), __func__, __FILE__, __LINE__, __VA_ARGS__)

/* The same, with the failing call named explicitly (a library call such as
 * cublasSgemm, or the public function on whose behalf a helper runs). */
#define NNLIB_FAIL_CALL(ctx, status, call, ...)                                \
  nnlib_fail((ctx), (status), (call), __FILE__, __LINE__, __VA_ARGS__)

/* Adds a note to the context's notice (nn_context_notice): after the
 * notes already there, separated by "; ", unless the same note is there
 * already. A note that does not fit whole is left out, and the notice
 * ends with NNLIB_NOTICE_FULL instead, so that the first notes — the
 * causes of what follows — are the ones kept. */
void nnlib_note(nn_context *ctx, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

#define NNLIB_NOTICE_FULL "(later notes left out)"

/* Multiplies a * b into *out; false on size_t overflow. */
bool nnlib_checked_mul(size_t a, size_t b, size_t *out);

/* Host allocation that records how many bytes failed. */
nn_status nnlib_host_alloc(nn_context *ctx, size_t count, size_t size,
                           void **out);

/* First non-finite element of values[0..count), or count if all are finite. */
size_t nnlib_first_non_finite(const float *values, size_t count);

/* ------------------------------------------------------------------------ */
/* Datasets                                                                  */
/* ------------------------------------------------------------------------ */

struct nn_dataset {
  nn_context *ctx;
  size_t input_width;  /* n_x */
  size_t target_width; /* n_y */
  size_t example_count;
  const float *x; /* (n_x × m) column-major */
  const float *y; /* (n_y × m) column-major */
  float *owned_x; /* non-NULL when the dataset owns its copies */
  float *owned_y;
};

/* A new owning dataset of ctx holding the given columns of source, in that
 * order (used for the validation split). ctx is the model's: source may
 * belong to another context, which a model's call must not touch (its
 * errors, its thread). */
nn_status nnlib_dataset_gather(nn_context *ctx, const nn_dataset *source,
                               const size_t *columns, size_t count,
                               nn_dataset **out);

/* A new dataset taking ownership of x (n_x × m) and y (n_y × m), both from
 * malloc and already checked finite (the loaders check while converting).
 * y may be NULL with target_width 0: a dataset without targets, which can
 * be predicted on but not trained on or evaluated. On failure both buffers
 * are freed. */
nn_status nnlib_dataset_adopt(nn_context *ctx, size_t input_width,
                              size_t target_width, size_t example_count,
                              float *x, float *y, nn_dataset **out);

/* ------------------------------------------------------------------------ */
/* Model and its arenas                                                      */
/* ------------------------------------------------------------------------ */

/* What a layer's last forward pass fused into its product (cuBLASLt
 * epilogues, cuda/dense.c). Either way A came out of the product, and the
 * backward product of the layer above produces this layer's dZ and db
 * (DRELU_BGRAD, DGELU_BGRAD), so its own activation_backward and db sum are
 * skipped. */
typedef enum nnlib_fused {
  NNLIB_FUSED_NONE = 0,
  /* RELU_AUX_BIAS: the Z block holds cuBLASLt's ReLU bit mask — one bit
   * per element, NNLIB_RELU_MASK_LD(units) bits per column — not Z. */
  NNLIB_FUSED_RELU,
  /* GELU_AUX_BIAS (tanh approximation): the Z block holds Z, cuBLASLt's
   * GELU input, as a plain pass leaves it. */
  NNLIB_FUSED_GELU_TANH
} nnlib_fused;

/* What a layer's last forward pass left in its Z block, written by the
 * backend (host memory, one per layer, owned by the model). */
typedef struct nnlib_layer_epilogue {
  nnlib_fused fused;
  /* bf16 only: the fused products hand over in bf16 and skip fp32. The
   * forward product wrote A (with a bf16 bias) only into the layer
   * above's bf16_inputs, and the GELU input (aux) as bf16; the backward
   * product of the layer above writes this layer's dZ only into its
   * bf16_gradients and db, as bf16, into bf16_bias_grad. The fp32 A and
   * dZ of the layer are then never written: nothing reads them. */
  bool bf16_output;
} nnlib_layer_epilogue;

/* Bits per column of a ReLU bit mask (cuBLASLt wants a multiple of 128). */
#define NNLIB_RELU_MASK_LD(units) (((units) + 127) / 128 * 128)
/* Fewest units whose bit mask fits in the layer's Z block: ld / 8 bytes per
 * column <= 4 · units bytes. */
#define NNLIB_RELU_MASK_MIN_UNITS 4

/* One layer's view into the arenas. All pointers are backend memory (host
 * memory on the CPU backend, device memory on CUDA). */
typedef struct nnlib_layer {
  size_t units;  /* n[l] */
  size_t inputs; /* n[l-1] */
  nn_activation activation;
  float dropout;         /* drop probability of A[l] while training */
  size_t param_offset;   /* W[l] starts here in the parameter arena */
  float *weights;        /* W[l]: row-major [n[l], n[l-1]] */
  float *bias;           /* b[l]: [n[l]] */
  float *weight_grad;    /* dW[l], same layout as W[l] */
  float *bias_grad;      /* db[l] */
  float *pre_activation; /* Z[l]: (n[l] × capacity) */
  float *activation_out; /* A[l]: (n[l] × capacity) */
  float *dropout_mask;   /* (n[l] × capacity) of 0 or 1/keep; NULL if none */
  /* The model's precision, and with bf16 this layer's views into the
   * model's conversion scratch (nn_model.bf16_scratch; NULL otherwise):
   * its W and b in the model's bf16 copy of the parameters (current
   * whenever a forward pass starts: nnlib_model_prepare_bf16_parameters);
   * its A_prev copy, converted by its forward pass or written by the fused
   * product below, and read again by the backward pass that follows (A
   * does not change in between; a new forward pass is needed after new
   * parameters, precision or capacity); its dZ copy, one of two that
   * alternate from layer to layer (a fused backward product reads the dZ
   * of its layer and writes the one below); and the db copy all layers
   * share in stream order. */
  nn_precision precision;
  void *bf16_weights;   /* n[l]·n[l-1] bf16: W[l] */
  void *bf16_bias;      /* n[l] bf16: b[l] */
  void *bf16_inputs;    /* n[l-1] × capacity bf16: A_prev */
  void *bf16_gradients; /* max n[l] × capacity bf16: dZ, every other layer */
  void *bf16_bias_grad; /* max n[l] bf16: db from a fused product, shared */
  /* How this layer's A_prev reached it: the record of the layer below, or
   * for layer 1 the model's input_record. */
  const nnlib_layer_epilogue *input_record;
  /* The model's fusion setting (nn_model_set_fusion); the neighbouring
   * layers, which a fused backward product reaches into (NULL at the
   * ends); and what the last forward pass left (never NULL). */
  nn_fusion fusion;
  const struct nnlib_layer *below, *above;
  nnlib_layer_epilogue *epilogue;
} nnlib_layer;

/* Where a step is, for a timing probe (bench/breakdown.c): after layer l's
 * forward (with its dropout), after the cost record, after layer l's
 * backward (its dW, db, dA_prev and the layer below's dZ; l counts down
 * from L, and L + 1 marks the output gradient), after the update. */
typedef enum nnlib_phase {
  NNLIB_PHASE_FORWARD,
  NNLIB_PHASE_COST,
  NNLIB_PHASE_BACKWARD,
  NNLIB_PHASE_UPDATE,
} nnlib_phase;

/* Called by the scheduler at each of those points, in stream order, when
 * nn_model.probe is set (never in normal use); a failure ends the step. */
typedef struct nnlib_phase_probe nnlib_phase_probe;
struct nnlib_phase_probe {
  nn_status (*mark)(nnlib_phase_probe *probe, nn_model *model,
                    nnlib_phase phase, size_t layer);
};

typedef void *nnlib_rng;
/* A point in a backend's streams (cudaEvent_t on the GPU). */
typedef void *nnlib_event;
/* A recorded training step, replayed as one launch (cudaGraphExec_t). */
typedef void *nnlib_graph;

struct nn_model {
  nn_context *ctx;
  size_t input_width;              /* n_x */
  size_t layer_count;              /* L */
  nnlib_layer *layers;             /* layers[0] is layer 1 */
  nnlib_layer_epilogue *epilogues; /* layers[l].epilogue = &epilogues[l] */
  nn_fusion fusion;
  nn_loss loss;

  /* Arenas of parameter_count floats, all in the same layout. */
  size_t parameter_count;
  float *parameters;
  float *gradients;
  float *first_moment;     /* momentum velocity / Adam m; NULL until used */
  float *second_moment;    /* RMSprop / Adam s; NULL until used */
  uint64_t optimizer_step; /* Adam's t */

  /* Activation arena: input, targets, per layer Z, A, masks, and two
   * backward scratch buffers, all for `capacity` examples. */
  size_t capacity;
  float *activation_arena;
  size_t activation_floats; /* its size */
  nn_precision precision;
  float *bf16_scratch;  /* backend memory for the layers' bf16 views */
  size_t bf16_capacity; /* columns it was sized for; 0 = none */
  size_t bf16_elements; /* its size, in bf16 */
  /* Counts the reallocations of the activation arena and the bf16 scratch:
   * a captured step graph holds their addresses and layout, and is stale
   * once this moves on (an address alone could come back). */
  uint64_t arena_generation;
  /* In the scratch: the parameters rounded to bf16, in the arena's layout
   * (parameter_count bf16), which the products read. The optimizer step
   * writes it with the parameters; anything else that writes parameters
   * marks it stale, and the next forward pass converts it. */
  void *bf16_parameters;
  bool bf16_parameters_current;
  float *input; /* A[0]: (n_x × capacity) */
  /* Layer 1's input_record. Its bf16_output is set by the training loop
   * for one step when the feeder gathered the batch's X straight into
   * layer 1's bf16 A_prev copy (bf16, resident data), so the forward pass
   * neither converts nor reads the fp32 X. */
  nnlib_layer_epilogue input_record;
  float *targets;             /* Y: (n[L] × capacity) */
  float *backward_scratch[2]; /* (max n[l] × capacity) each: dA / dZ */

  nnlib_rng dropout_rng;
  nnlib_phase_probe *probe; /* NULL unless a timing tool set it */

  /* Backend memory for one cost record (nnlib_cost_record): 1 + L doubles.
   * For the costs asked for one at a time (nn_model_cost, evaluation). */
  double *cost_scratch;

  /* What the last calls left behind, to reject calls out of order. */
  const float *forward_input; /* A[0] of the last forward pass */

  /* Host copy of the best parameters of a run that was stopped (by its
   * callback) with early stopping on, kept so that resuming it — in memory
   * or through a checkpoint — restores the right ones at the end; NULL
   * otherwise. */
  float *resume_best_parameters;
  size_t forward_examples;  /* m of the last forward pass, 0 if none */
  bool forward_training;    /* whether it applied dropout */
  size_t backward_examples; /* m of the last backward pass, 0 if none */
  /* nn_model_train is running on the model: its progress callback may
   * read the model (predict, evaluate, save) but not change it
   * (nnlib_refuse_while_training). */
  bool training;
};

/* NN_ERROR_STATE naming `call` while nn_model_train runs on the model: a
 * change from its progress callback would not reach the steps it replays
 * as graphs, nor the run's own records of the parameters. */
nn_status nnlib_refuse_while_training(nn_model *model, const char *call);
/* The guard of a public call that changes the model. */
#define NNLIB_REFUSE_WHILE_TRAINING(model)                                     \
  do {                                                                         \
    nn_status refused_ = nnlib_refuse_while_training((model), __func__);       \
    if (refused_ != NN_OK)                                                     \
      return refused_;                                                         \
  } while (0)

/* Makes sure the activation arena holds at least `examples` columns. */
nn_status nnlib_model_reserve(nn_model *model, size_t examples);
/* Allocates the optimizer moments `kind` uses that the model does not
 * have yet (zeros): momentum's velocity and Adam's m in first_moment,
 * RMSprop's and Adam's s in second_moment. Before the step loop, never in
 * it (nor inside a graph capture). */
nn_status nnlib_model_prepare_optimizer(nn_model *model, nn_optimizer kind);

/* In bf16, makes the bf16 copy of the parameters current (one conversion
 * of the arena, in stream order) if anything but the optimizer wrote the
 * parameters since it was made; nothing otherwise. Before every forward
 * pass, and before a run's first step so that a captured step does not
 * convert. */
nn_status nnlib_model_prepare_bf16_parameters(nn_model *model);
/* The parameters were written (not by the optimizer step). */
static inline void nnlib_model_parameters_written(nn_model *model) {
  model->bf16_parameters_current = false;
}

/* Which moments an optimizer reads and writes. */
static inline bool nnlib_uses_first_moment(nn_optimizer kind) {
  return kind == NN_OPTIMIZER_MOMENTUM || kind == NN_OPTIMIZER_ADAM;
}
static inline bool nnlib_uses_second_moment(nn_optimizer kind) {
  return kind == NN_OPTIMIZER_RMSPROP || kind == NN_OPTIMIZER_ADAM;
}

/* The scheduler's building blocks on m columns already in backend memory:
 * input X (n_x × m) and targets Y (n[L] × m). Backward uses the input of the
 * last forward pass (kept in model->forward_input). */
nn_status nnlib_forward(nn_model *model, const float *input, size_t m,
                        bool training);
/* The cost of a batch is computed in two halves so that the training loop
 * need not wait for the device after every step:
 *   nnlib_cost_record issues, into backend memory, the record
 *     record[0] = Σ L(ŷ, y) over the batch, and with λ > 0
 *     record[1 + l] = Σ W[l+1]² for every layer;
 *   nnlib_cost_of_record combines a record read back to the host:
 *     J = record[0] / m + (λ/2m) Σ_l record[1 + l].
 * nnlib_cost does both and waits. */
#define NNLIB_COST_RECORD_DOUBLES(model) (1 + (model)->layer_count)
nn_status nnlib_cost_record(nn_model *model, const float *targets, size_t m,
                            float l2_lambda, double *record);
double nnlib_cost_of_record(const nn_model *model, const double *record,
                            size_t m, float l2_lambda);
nn_status nnlib_cost(nn_model *model, const float *targets, size_t m,
                     float l2_lambda, double *cost);
/* Σ L(ŷ, y) over the last forward pass's m columns, read back. */
nn_status nnlib_loss_sum(nn_model *model, const float *targets, size_t m,
                         double *sum);
nn_status nnlib_backward(nn_model *model, const float *targets, size_t m,
                         float l2_lambda);
nn_status nnlib_update(nn_model *model, const nn_optimizer_settings *settings,
                       float learning_rate);
/* nnlib_update in its two halves: the constants of the model's next step
 * (counting it), then the update that reads them. */
nn_status nnlib_stage_update(nn_model *model,
                             const nn_optimizer_settings *settings,
                             float learning_rate);
nn_status nnlib_apply_update(nn_model *model);
/* A whole training step on one batch in backend memory, after
 * nnlib_stage_update: forward (with dropout), the cost record into
 * `record` (nnlib_cost_record), backward, the update. */
nn_status nnlib_step_body(nn_model *model, const float *input,
                          const float *targets, size_t m, float l2_lambda,
                          double *record);

/* Checks that targets (n[L] × m) suit the model's loss; names the first bad
 * element. */
nn_status nnlib_check_targets(nn_model *model, const float *targets, size_t m,
                              const char *what);

/* Rejects an invalid optimizer setting with a message. */
nn_status nnlib_check_optimizer(nn_context *ctx, const char *call,
                                const nn_optimizer_settings *settings,
                                float learning_rate);

/* ------------------------------------------------------------------------ */
/* Seeded host randomness for the scheduler (shuffles, splits)               */
/* ------------------------------------------------------------------------ */

/* splitmix64: a stateless mix of a 64-bit value. */
uint64_t nnlib_mix64(uint64_t value);

/* Fills order[0..count) with a permutation of 0..count-1 drawn from seed
 * (Fisher-Yates over a splitmix64 stream): the same seed, the same order. */
void nnlib_permutation(size_t *order, size_t count, uint64_t seed);

#ifdef __cplusplus
}
#endif

#endif /* NN_INTERNAL_H */
