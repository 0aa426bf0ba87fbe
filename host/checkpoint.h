/*
 * checkpoint.h — nn's checkpoints on top of the safetensors reader and
 * writer: the metadata JSON (architecture, training settings, resume
 * state) and in-memory entry points for the fuzzer.
 *
 * Metadata values (all strings, as safetensors requires):
 *   "format": "nn-checkpoint", "format_version": "1",
 *   "architecture": {"input_width": 784, "layers": [{"units": 128,
 *       "activation": "relu", "dropout": 0}, ...], "loss": "..."},
 *   "training": nn_train_options' settings (when saved with options),
 *   "state": nn_train_state and "optimizer_step" (when saved with a state).
 * Floats are printed with the fewest digits that read back to the same
 * float (at most 9), doubles likewise (at most 17); NaN and Inf become null
 * and read back as NaN. Integers above 2^53 (which a JSON number cannot
 * hold exactly) are written as strings of digits; both forms are read.
 */
#ifndef NN_CHECKPOINT_H
#define NN_CHECKPOINT_H

#include "safetensors.h"

#define NNLIB_CHECKPOINT_FORMAT "nn-checkpoint"
#define NNLIB_CHECKPOINT_VERSION "1"

/* The metadata JSON texts; NULL when out of memory. Free with cJSON_free. */
char *nnlib_architecture_json(const nn_model *model);
char *nnlib_training_json(const nn_train_options *options);
char *nnlib_state_json(const nn_train_state *state, uint64_t optimizer_step);

/* A spec read from the "architecture" metadata; layers is owned (free). */
typedef struct nnlib_architecture {
  nn_model_spec spec;
  nn_layer_spec *layers;
} nnlib_architecture;

/* Parsers of the metadata above. Syntax and names are checked here
 * (NN_ERROR_FORMAT naming the file and field); the spec's semantics are
 * left to nn_model_create. options' callback fields and resume are NULL. */
nn_status nnlib_parse_architecture(nnlib_st_file *file,
                                   nnlib_architecture *out);
nn_status nnlib_parse_training(nnlib_st_file *file, nn_train_options *out);
nn_status nnlib_parse_state(nnlib_st_file *file, nn_train_state *out,
                            uint64_t *optimizer_step);

/* nn_model_load and nn_model_load_parameters on size bytes in memory; name
 * stands in for the path in messages. */
nn_status nnlib_model_load_memory(nn_context *ctx, const char *name,
                                  const void *bytes, size_t size,
                                  nn_model **out, nn_train_options *options,
                                  nn_train_state *state, int *has_state);
nn_status nnlib_model_load_parameters_memory(nn_model *model, const char *name,
                                             const void *bytes, size_t size);

#endif /* NN_CHECKPOINT_H */
