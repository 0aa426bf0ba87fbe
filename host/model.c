/*
 * model.c — the model spec, its validation, and the arenas: one parameter
 * arena holding every W[l] and b[l] back to back, gradient and optimizer
 * arenas of the same layout, and one activation arena for Z, A, dropout
 * masks and backward scratch, sized for the largest batch.
 */
#include "backend.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static bool is_known_loss(nn_loss loss) {
  return (int)loss >= 0 && loss < NN_LOSS_COUNT;
}

static nn_status check_layer(nn_context *ctx, const nn_layer_spec *layer,
                             size_t l, size_t layer_count, nn_loss loss) {
  const char *call = "nn_model_create";
  if (layer->units == 0)
    return NNLIB_FAIL_CALL(ctx, NN_ERROR_INVALID_SPEC, call,
                           "layer %zu has width 0", l);
  if (layer->units > INT_MAX)
    return NNLIB_FAIL_CALL(ctx, NN_ERROR_INVALID_SPEC, call,
                           "layer %zu width %zu exceeds %d", l, layer->units,
                           INT_MAX);
  if ((int)layer->activation < 0 || layer->activation >= NN_ACTIVATION_COUNT)
    return NNLIB_FAIL_CALL(ctx, NN_ERROR_INVALID_SPEC, call,
                           "layer %zu has unknown activation %d", l,
                           (int)layer->activation);
  if (!(layer->dropout >= 0.0f && layer->dropout < 1.0f))
    return NNLIB_FAIL_CALL(ctx, NN_ERROR_INVALID_SPEC, call,
                           "layer %zu dropout %g is outside [0, 1)", l,
                           (double)layer->dropout);
  if (l < layer_count) {
    if (layer->activation == NN_ACTIVATION_SOFTMAX)
      return NNLIB_FAIL_CALL(ctx, NN_ERROR_INVALID_SPEC, call,
                             "layer %zu: softmax is only allowed on the "
                             "output layer",
                             l);
    return NN_OK;
  }
  nn_activation wanted = nn_loss_output_activation(loss);
  if (layer->activation != wanted)
    return NNLIB_FAIL_CALL(
        ctx, NN_ERROR_INVALID_SPEC, call,
        "output layer %zu is %s, but loss %s needs a %s output", l,
        nn_activation_name(layer->activation), nn_loss_name(loss),
        nn_activation_name(wanted));
  if (layer->dropout != 0.0f)
    return NNLIB_FAIL_CALL(ctx, NN_ERROR_INVALID_SPEC, call,
                           "output layer %zu cannot have dropout (%g)", l,
                           (double)layer->dropout);
  if (loss == NN_LOSS_CATEGORICAL_CROSS_ENTROPY && layer->units < 2)
    return NNLIB_FAIL_CALL(ctx, NN_ERROR_INVALID_SPEC, call,
                           "a softmax output needs at least 2 units, got %zu "
                           "(use a sigmoid unit with binary cross-entropy)",
                           layer->units);
  return NN_OK;
}

static nn_status check_spec(nn_context *ctx, const nn_model_spec *spec) {
  const char *call = "nn_model_create";
  if (!spec)
    return NNLIB_FAIL_CALL(ctx, NN_ERROR_INVALID_ARGUMENT, call,
                           "spec is NULL");
  if (spec->input_width == 0 || spec->input_width > INT_MAX)
    return NNLIB_FAIL_CALL(ctx, NN_ERROR_INVALID_SPEC, call,
                           "input width %zu is outside 1..%d",
                           spec->input_width, INT_MAX);
  if (spec->layer_count == 0 || !spec->layers)
    return NNLIB_FAIL_CALL(ctx, NN_ERROR_INVALID_SPEC, call,
                           "the model has no layers");
  if (!is_known_loss(spec->loss))
    return NNLIB_FAIL_CALL(ctx, NN_ERROR_INVALID_SPEC, call, "unknown loss %d",
                           (int)spec->loss);
  for (size_t l = 1; l <= spec->layer_count; l++) {
    nn_status status = check_layer(ctx, &spec->layers[l - 1], l,
                                   spec->layer_count, spec->loss);
    if (status != NN_OK)
      return status;
  }
  return NN_OK;
}

/* Lays the layers out in the parameter arena: W[1] b[1] W[2] b[2] ... and
 * returns the total count, or fails on overflow. */
static nn_status layout_parameters(nn_model *model, const nn_model_spec *spec) {
  size_t offset = 0, inputs = spec->input_width;
  for (size_t l = 0; l < spec->layer_count; l++) {
    nnlib_layer *layer = &model->layers[l];
    layer->units = spec->layers[l].units;
    layer->inputs = inputs;
    layer->activation = spec->layers[l].activation;
    layer->dropout = spec->layers[l].dropout;
    layer->param_offset = offset;
    size_t weights;
    if (!nnlib_checked_mul(layer->units, inputs, &weights) ||
        weights + layer->units < weights ||
        offset + weights + layer->units < offset)
      return NNLIB_FAIL_CALL(model->ctx, NN_ERROR_INVALID_SPEC,
                             "nn_model_create",
                             "layer %zu: parameter count overflows", l + 1);
    offset += weights + layer->units;
    inputs = layer->units;
  }
  model->parameter_count = offset;
  return NN_OK;
}

/* Points every layer's W, b, dW, db into the arenas. */
static void bind_parameter_views(nn_model *model) {
  for (size_t l = 0; l < model->layer_count; l++) {
    nnlib_layer *layer = &model->layers[l];
    size_t weights = layer->units * layer->inputs;
    layer->weights = model->parameters + layer->param_offset;
    layer->bias = layer->weights + weights;
    layer->weight_grad = model->gradients + layer->param_offset;
    layer->bias_grad = layer->weight_grad + weights;
  }
}

/* Each layer's neighbours and epilogue state (fusion starts AUTO: the
 * arrays are zero-filled). */
static void link_layers(nn_model *model) {
  for (size_t l = 0; l < model->layer_count; l++) {
    nnlib_layer *layer = &model->layers[l];
    layer->below = l > 0 ? &model->layers[l - 1] : NULL;
    layer->above = l + 1 < model->layer_count ? &model->layers[l + 1] : NULL;
    layer->epilogue = &model->epilogues[l];
    layer->fusion = model->fusion;
    layer->input_record =
        l > 0 ? &model->epilogues[l - 1] : &model->input_record;
  }
}

static nn_status allocate_parameter_arenas(nn_model *model) {
  const nnlib_backend_ops *ops = NNLIB_OPS(model);
  nnlib_backend *backend = NNLIB_BACKEND(model);
  nn_context *ctx = model->ctx;
  size_t count = model->parameter_count;
  nn_status status = ops->alloc(backend, ctx, count, &model->parameters);
  if (status == NN_OK)
    status = ops->alloc(backend, ctx, count, &model->gradients);
  /* The optimizer moments wait for an optimizer that needs them
   * (nnlib_model_prepare_optimizer): gd needs neither. */
  if (status == NN_OK)
    status = ops->rng_create(backend, ctx, 0, &model->dropout_rng);
  if (status == NN_OK)
    status = nnlib_backend_alloc_doubles(
        backend, ctx, NNLIB_COST_RECORD_DOUBLES(model), &model->cost_scratch);
  return status;
}

nn_status nn_model_create(nn_context *ctx, const nn_model_spec *spec,
                          nn_model **out) {
  if (!ctx)
    return NN_ERROR_INVALID_ARGUMENT;
  if (!out)
    return NNLIB_FAIL(ctx, NN_ERROR_INVALID_ARGUMENT, "out is NULL");
  *out = NULL;
  nn_status status = check_spec(ctx, spec);
  if (status != NN_OK)
    return status;
  nn_model *model = NULL;
  status = nnlib_host_alloc(ctx, 1, sizeof *model, (void **)&model);
  if (status != NN_OK)
    return status;
  model->ctx = ctx;
  model->input_width = spec->input_width;
  model->layer_count = spec->layer_count;
  model->loss = spec->loss;
  status = nnlib_host_alloc(ctx, spec->layer_count, sizeof *model->layers,
                            (void **)&model->layers);
  if (status == NN_OK)
    status = nnlib_host_alloc(ctx, spec->layer_count, sizeof *model->epilogues,
                              (void **)&model->epilogues);
  if (status == NN_OK)
    status = layout_parameters(model, spec);
  if (status == NN_OK)
    status = allocate_parameter_arenas(model);
  if (status != NN_OK) {
    nn_model_destroy(model);
    return status;
  }
  bind_parameter_views(model);
  link_layers(model);
  *out = model;
  return NN_OK;
}

void nn_model_destroy(nn_model *model) {
  if (!model)
    return;
  nnlib_backend *backend = NNLIB_BACKEND(model);
  const nnlib_backend_ops *ops = backend->ops;
  ops->release(backend, model->parameters);
  ops->release(backend, model->gradients);
  ops->release(backend, model->first_moment);
  ops->release(backend, model->second_moment);
  ops->release(backend, model->activation_arena);
  ops->release(backend, model->bf16_scratch);
  ops->rng_destroy(backend, model->dropout_rng);
  ops->release(backend, (float *)(void *)model->cost_scratch);
  free(model->resume_best_parameters);
  free(model->epilogues);
  free(model->layers);
  free(model);
}

/* ------------------------------------------------------------------------ */
/* Activation arena                                                          */
/* ------------------------------------------------------------------------ */

/* Every block of the activation arena starts 256 bytes apart from the
 * arena's start (64 floats), which cuBLASLt's fastest algorithms want of
 * their operands, bit masks and outputs. */
#define ACTIVATION_ALIGNMENT_FLOATS 64

/* Takes a block of rows × columns + extra floats, rounded up to the
 * alignment, at *cursor and returns its start; *ok turns false on
 * overflow. */
static size_t take_block(size_t *cursor, size_t rows, size_t columns,
                         size_t extra, bool *ok) {
  size_t floats = 0, start = *cursor;
  if (!nnlib_checked_mul(rows, columns, &floats) ||
      floats > SIZE_MAX / 2 - extra - ACTIVATION_ALIGNMENT_FLOATS)
    *ok = false;
  size_t block = (floats + extra + ACTIVATION_ALIGNMENT_FLOATS - 1) /
                 ACTIVATION_ALIGNMENT_FLOATS * ACTIVATION_ALIGNMENT_FLOATS;
  if (!*ok || *cursor > SIZE_MAX / 2 - block)
    *ok = false;
  else
    *cursor += block;
  return start;
}

/* *view = base + at, when there is a base (a layout walk only counting has
 * none). */
static void bind_view(float **view, float *base, size_t at) {
  if (base)
    *view = base + at;
}

/* The arena's layout for `capacity` columns: input, targets, per layer Z,
 * A and (with dropout) its mask with NNLIB_DROPOUT_PADDING spare floats,
 * two backward scratch blocks of the widest layer. Binds the views from
 * base when it is not NULL; the total in *floats; false on overflow. */
static bool layout_activations(nn_model *model, size_t capacity, float *base,
                               size_t *floats) {
  size_t cursor = 0, widest = model->input_width;
  bool ok = true;
  const size_t outputs = model->layers[model->layer_count - 1].units;
  bind_view(&model->input, base,
            take_block(&cursor, model->input_width, capacity, 0, &ok));
  bind_view(&model->targets, base,
            take_block(&cursor, outputs, capacity, 0, &ok));
  for (size_t l = 0; l < model->layer_count; l++) {
    nnlib_layer *layer = &model->layers[l];
    bind_view(&layer->pre_activation, base,
              take_block(&cursor, layer->units, capacity, 0, &ok));
    bind_view(&layer->activation_out, base,
              take_block(&cursor, layer->units, capacity, 0, &ok));
    if (base)
      layer->dropout_mask = NULL;
    if (layer->dropout > 0.0f)
      bind_view(&layer->dropout_mask, base,
                take_block(&cursor, layer->units, capacity,
                           NNLIB_DROPOUT_PADDING, &ok));
    widest = layer->units > widest ? layer->units : widest;
  }
  for (size_t k = 0; k < 2; k++)
    bind_view(&model->backward_scratch[k], base,
              take_block(&cursor, widest, capacity, 0, &ok));
  *floats = cursor;
  return ok;
}

/* ------------------------------------------------------------------------ */
/* Precision and the bf16 conversion scratch                                 */
/* ------------------------------------------------------------------------ */

/* bf16 elements rounded up to 256 bytes, so that every region starts where
 * tensor-core products (and cuBLASLt's fastest algorithms) want their
 * operands aligned. */
static size_t bf16_region(size_t elements) {
  return (elements + 127) & ~(size_t)127;
}

/* Takes a region of `rows` × `columns` bf16 (rounded up by bf16_region)
 * at *cursor and returns its start; *ok turns false on overflow. */
static size_t take_bf16(size_t *cursor, size_t rows, size_t columns, bool *ok) {
  size_t elements = 0, start = *cursor;
  if (!nnlib_checked_mul(rows, columns, &elements) || elements > SIZE_MAX / 8)
    *ok = false;
  size_t region = bf16_region(elements);
  if (!*ok || *cursor > SIZE_MAX / 4 - region)
    *ok = false;
  else
    *cursor += region;
  return start;
}

/* The scratch's layout for `capacity` columns, in bf16 elements from base
 * (NULL: only counts): the parameters in the arena's layout (each layer's
 * W then b); then each layer's A_prev (n[l-1] × capacity) — converted by
 * the layer's forward pass or written by the fused product below, and
 * read again by its backward pass in the same step, A being unchanged in
 * between — then two dZ matrices (widest n[l] × capacity), layer l taking
 * the (l mod 2)-th, so that a fused backward product reads its layer's and
 * writes the layer below's; then one db vector (widest n[l]). Each in its
 * own 256-byte region. The total in *elements; false on overflow. */
static bool layout_bf16(nn_model *model, size_t capacity, uint16_t *base,
                        size_t *elements) {
  size_t cursor = 0, widest = 0;
  bool ok = true;
  const size_t parameters_at =
      take_bf16(&cursor, model->parameter_count, 1, &ok);
  if (base)
    model->bf16_parameters = base + parameters_at;
  for (size_t l = 0; l < model->layer_count; l++) {
    nnlib_layer *layer = &model->layers[l];
    if (base) {
      uint16_t *weights = base + parameters_at + layer->param_offset;
      layer->bf16_weights = weights;
      layer->bf16_bias = weights + layer->units * layer->inputs;
    }
    widest = layer->units > widest ? layer->units : widest;
  }
  for (size_t l = 0; l < model->layer_count; l++) {
    nnlib_layer *layer = &model->layers[l];
    size_t at = take_bf16(&cursor, layer->inputs, capacity, &ok);
    if (base)
      layer->bf16_inputs = base + at;
  }
  size_t gradients_at[2];
  for (size_t k = 0; k < 2; k++)
    gradients_at[k] = take_bf16(&cursor, widest, capacity, &ok);
  size_t bias_grad_at = take_bf16(&cursor, widest, 1, &ok);
  for (size_t l = 0; base && l < model->layer_count; l++) {
    model->layers[l].bf16_gradients = base + gradients_at[l % 2];
    model->layers[l].bf16_bias_grad = base + bias_grad_at;
  }
  *elements = cursor;
  return ok;
}

static nn_status reserve_bf16_scratch(nn_model *model) {
  if (model->precision != NN_PRECISION_BF16 ||
      model->bf16_capacity >= model->capacity)
    return NN_OK;
  size_t elements = 0;
  if (!layout_bf16(model, model->capacity, NULL, &elements))
    return NNLIB_FAIL(model->ctx, NN_ERROR_OUT_OF_MEMORY,
                      "bf16 scratch for %zu examples overflows",
                      model->capacity);
  float *scratch = NULL;
  /* Two bf16 per float; every region is a multiple of 128 bf16. */
  nn_status status = NNLIB_OPS(model)->alloc(NNLIB_BACKEND(model), model->ctx,
                                             elements / 2, &scratch);
  if (status != NN_OK)
    return status;
  NNLIB_OPS(model)->release(NNLIB_BACKEND(model), model->bf16_scratch);
  model->bf16_scratch = scratch;
  model->arena_generation++;
  model->bf16_capacity = model->capacity;
  model->bf16_elements = elements;
  /* The copies the old scratch held are gone with it. */
  model->forward_examples = 0;
  nnlib_model_parameters_written(model);
  layout_bf16(model, model->capacity, (uint16_t *)(void *)scratch, &elements);
  return NN_OK;
}

nn_status nn_model_set_precision(nn_model *model, nn_precision precision) {
  if (!model)
    return NN_ERROR_INVALID_ARGUMENT;
  NNLIB_REFUSE_WHILE_TRAINING(model);
  if ((int)precision < 0 || precision >= NN_PRECISION_COUNT)
    return NNLIB_FAIL(model->ctx, NN_ERROR_INVALID_ARGUMENT,
                      "unknown precision %d", (int)precision);
  nn_status status = NNLIB_OPS(model)->check_precision(NNLIB_BACKEND(model),
                                                       model->ctx, precision);
  if (status != NN_OK)
    return status;
  model->precision = precision;
  for (size_t l = 0; l < model->layer_count; l++)
    model->layers[l].precision = precision;
  /* A backward pass reads the bf16 copies its forward pass made: none was
   * made in another precision; nor was the parameters' copy kept. */
  model->forward_examples = 0;
  nnlib_model_parameters_written(model);
  /* The scratch follows the activation arena's capacity. */
  return reserve_bf16_scratch(model);
}

nn_precision nn_model_precision(const nn_model *model) {
  return model ? model->precision : NN_PRECISION_FP32;
}

nn_status nn_model_set_fusion(nn_model *model, nn_fusion fusion) {
  if (!model)
    return NN_ERROR_INVALID_ARGUMENT;
  NNLIB_REFUSE_WHILE_TRAINING(model);
  if ((int)fusion < 0 || fusion >= NN_FUSION_COUNT)
    return NNLIB_FAIL(model->ctx, NN_ERROR_INVALID_ARGUMENT,
                      "unknown fusion setting %d (auto or off)", (int)fusion);
  model->fusion = fusion;
  for (size_t l = 0; l < model->layer_count; l++)
    model->layers[l].fusion = fusion;
  return NN_OK;
}

nn_fusion nn_model_fusion(const nn_model *model) {
  return model ? model->fusion : NN_FUSION_AUTO;
}

size_t nn_model_memory_bytes(const nn_model *model) {
  if (!model)
    return 0;
  const size_t arena = model->parameter_count * sizeof(float);
  size_t bytes = 2 * arena; /* parameters and gradients */
  bytes += model->first_moment ? arena : 0;
  bytes += model->second_moment ? arena : 0;
  bytes += model->activation_floats * sizeof(float);
  bytes += model->bf16_elements * sizeof(uint16_t);
  bytes += NNLIB_COST_RECORD_DOUBLES(model) * sizeof(double);
  return bytes;
}

int nn_model_layer_fused(const nn_model *model, size_t layer) {
  if (!model || layer == 0 || layer > model->layer_count)
    return 0;
  return model->epilogues[layer - 1].fused != NNLIB_FUSED_NONE ? 1 : 0;
}

static nn_status reserve_activations(nn_model *model, size_t examples) {
  if (examples <= model->capacity)
    return NN_OK;
  size_t total = 0;
  if (examples > INT_MAX || !layout_activations(model, examples, NULL, &total))
    return NNLIB_FAIL(model->ctx, NN_ERROR_OUT_OF_MEMORY,
                      "activations for %zu examples overflow", examples);
  float *arena = NULL;
  nn_status status =
      NNLIB_OPS(model)->alloc(NNLIB_BACKEND(model), model->ctx, total, &arena);
  if (status != NN_OK)
    return status;
  NNLIB_OPS(model)->release(NNLIB_BACKEND(model), model->activation_arena);
  model->activation_arena = arena;
  model->arena_generation++;
  model->activation_floats = total;
  model->capacity = examples;
  model->forward_examples = 0;
  model->backward_examples = 0;
  layout_activations(model, examples, arena, &total);
  return NN_OK;
}

nn_status nnlib_model_reserve(nn_model *model, size_t examples) {
  nn_status status = reserve_activations(model, examples);
  return status == NN_OK ? reserve_bf16_scratch(model) : status;
}

/* ------------------------------------------------------------------------ */
/* Shape queries                                                             */
/* ------------------------------------------------------------------------ */

size_t nn_model_layer_count(const nn_model *model) {
  return model ? model->layer_count : 0;
}

size_t nn_model_layer_units(const nn_model *model, size_t layer) {
  if (!model || layer > model->layer_count)
    return 0;
  return layer == 0 ? model->input_width : model->layers[layer - 1].units;
}

nn_activation nn_model_layer_activation(const nn_model *model, size_t layer) {
  if (!model || layer == 0 || layer > model->layer_count)
    return NN_ACTIVATION_LINEAR;
  return model->layers[layer - 1].activation;
}

float nn_model_layer_dropout(const nn_model *model, size_t layer) {
  if (!model || layer == 0 || layer > model->layer_count)
    return 0.0f;
  return model->layers[layer - 1].dropout;
}

nn_loss nn_model_loss(const nn_model *model) {
  return model ? model->loss : NN_LOSS_BINARY_CROSS_ENTROPY;
}

size_t nn_model_parameter_count(const nn_model *model) {
  return model ? model->parameter_count : 0;
}

/* ------------------------------------------------------------------------ */
/* Initialization and parameter exchange                                     */
/* ------------------------------------------------------------------------ */

static float init_scale(nn_init init, const nnlib_layer *layer) {
  switch (init) {
  case NN_INIT_NORMAL:
    return 0.01f;
  case NN_INIT_HE:
    return sqrtf(2.0f / (float)layer->inputs);
  case NN_INIT_XAVIER:
    return sqrtf(1.0f / (float)layer->inputs);
  case NN_INIT_GLOROT:
    return sqrtf(2.0f / (float)(layer->inputs + layer->units));
  default:
    return 0.0f;
  }
}

/* Draws N(0, 1) for the whole arena in one generator call into a scratch
 * buffer (its length rounded up to even for cuRAND's Box-Muller pairs), then
 * scales each W[l] from its slice and zeroes each b[l]. One call makes the
 * stream independent of how it is split, so host and device agree. */
static nn_status draw_normal_parameters(nn_model *model, nn_init init,
                                        uint64_t seed) {
  nnlib_backend *backend = NNLIB_BACKEND(model);
  const nnlib_backend_ops *ops = backend->ops;
  nn_context *ctx = model->ctx;
  size_t even = (model->parameter_count + 1) & ~(size_t)1;
  float *scratch = NULL;
  nnlib_rng rng = NULL;
  nn_status status = ops->alloc(backend, ctx, even, &scratch);
  if (status == NN_OK)
    status = ops->rng_create(backend, ctx, seed, &rng);
  if (status == NN_OK)
    status = ops->random_normal(backend, ctx, rng, scratch, even);
  for (size_t l = 0; status == NN_OK && l < model->layer_count; l++) {
    nnlib_layer *layer = &model->layers[l];
    status =
        ops->scale(backend, ctx, layer->weights, scratch + layer->param_offset,
                   init_scale(init, layer), layer->units * layer->inputs);
    if (status == NN_OK)
      status = ops->fill(backend, ctx, layer->bias, 0.0f, layer->units);
  }
  ops->rng_destroy(backend, rng);
  ops->release(backend, scratch);
  return status;
}

nn_status nn_model_reset_optimizer(nn_model *model) {
  if (!model)
    return NN_ERROR_INVALID_ARGUMENT;
  NNLIB_REFUSE_WHILE_TRAINING(model);
  float *const moments[2] = {model->first_moment, model->second_moment};
  nn_status status = NN_OK;
  for (size_t k = 0; status == NN_OK && k < 2; k++)
    if (moments[k])
      status = NNLIB_OPS(model)->fill(NNLIB_BACKEND(model), model->ctx,
                                      moments[k], 0.0f, model->parameter_count);
  model->optimizer_step = 0;
  return status;
}

/* A moment arena, allocated (zeros) the first time it is needed. */
static nn_status ensure_moment(nn_model *model, float **moment) {
  if (*moment)
    return NN_OK;
  return NNLIB_OPS(model)->alloc(NNLIB_BACKEND(model), model->ctx,
                                 model->parameter_count, moment);
}

nn_status nnlib_model_prepare_optimizer(nn_model *model, nn_optimizer kind) {
  nn_status status = NN_OK;
  if (nnlib_uses_first_moment(kind))
    status = ensure_moment(model, &model->first_moment);
  if (status == NN_OK && nnlib_uses_second_moment(kind))
    status = ensure_moment(model, &model->second_moment);
  return status;
}

nn_status nnlib_refuse_while_training(nn_model *model, const char *call) {
  if (!model->training)
    return NN_OK;
  return NNLIB_FAIL_CALL(model->ctx, NN_ERROR_STATE, call,
                         "the model is being trained: nn_model_train's "
                         "progress callback may predict, evaluate and save "
                         "it, not change it (stop, change, then resume)");
}

nn_status nnlib_model_prepare_bf16_parameters(nn_model *model) {
  if (model->precision != NN_PRECISION_BF16 || model->bf16_parameters_current)
    return NN_OK;
  nnlib_backend *backend = NNLIB_BACKEND(model);
  nn_status status =
      backend->ops->to_bf16(backend, model->ctx, model->parameters,
                            model->bf16_parameters, model->parameter_count);
  model->bf16_parameters_current = status == NN_OK;
  return status;
}

/* After a write of parameters that ended with `status`: the bf16 copy is
 * stale either way (a failed write may have written a part); new
 * parameters also invalidate cached passes and optimizer state. */
static nn_status parameters_written(nn_model *model, nn_status status) {
  nnlib_model_parameters_written(model);
  if (status != NN_OK)
    return status;
  model->forward_examples = 0;
  model->backward_examples = 0;
  return nn_model_reset_optimizer(model);
}

nn_status nn_model_init(nn_model *model, nn_init init, uint64_t seed) {
  if (!model)
    return NN_ERROR_INVALID_ARGUMENT;
  NNLIB_REFUSE_WHILE_TRAINING(model);
  if ((int)init < 0 || init >= NN_INIT_COUNT)
    return NNLIB_FAIL(model->ctx, NN_ERROR_INVALID_ARGUMENT,
                      "unknown initialization %d", (int)init);
  nn_status status = init == NN_INIT_ZEROS
                         ? NNLIB_OPS(model)->fill(NNLIB_BACKEND(model),
                                                  model->ctx, model->parameters,
                                                  0.0f, model->parameter_count)
                         : draw_normal_parameters(model, init, seed);
  return parameters_written(model, status);
}

static nn_status check_layer_index(const nn_model *model, size_t layer,
                                   const char *call) {
  if (layer == 0 || layer > model->layer_count)
    return NNLIB_FAIL_CALL(model->ctx, NN_ERROR_INVALID_ARGUMENT, call,
                           "layer %zu is outside 1..%zu", layer,
                           model->layer_count);
  return NN_OK;
}

/* Copies a layer's W/b pair (of the parameter or gradient arena) out. */
static nn_status download_pair(const nn_model *model, const float *weights,
                               const float *bias, const nnlib_layer *layer,
                               float *weights_out, float *bias_out) {
  nnlib_backend *backend = NNLIB_BACKEND(model);
  nn_status status = NN_OK;
  if (weights_out)
    status = backend->ops->download(backend, model->ctx, weights_out, weights,
                                    layer->units * layer->inputs);
  if (status == NN_OK && bias_out)
    status = backend->ops->download(backend, model->ctx, bias_out, bias,
                                    layer->units);
  return status;
}

nn_status nn_model_get_layer_parameters(const nn_model *model, size_t layer,
                                        float *weights, float *bias) {
  if (!model)
    return NN_ERROR_INVALID_ARGUMENT;
  nn_status status = check_layer_index(model, layer, __func__);
  if (status != NN_OK)
    return status;
  const nnlib_layer *view = &model->layers[layer - 1];
  return download_pair(model, view->weights, view->bias, view, weights, bias);
}

nn_status nn_model_get_layer_gradients(const nn_model *model, size_t layer,
                                       float *weights, float *bias) {
  if (!model)
    return NN_ERROR_INVALID_ARGUMENT;
  nn_status status = check_layer_index(model, layer, __func__);
  if (status != NN_OK)
    return status;
  if (model->backward_examples == 0)
    return NNLIB_FAIL(model->ctx, NN_ERROR_STATE,
                      "no backward pass has run since the last change");
  const nnlib_layer *view = &model->layers[layer - 1];
  return download_pair(model, view->weight_grad, view->bias_grad, view, weights,
                       bias);
}

static nn_status check_finite_values(nn_context *ctx, const char *call,
                                     const char *what, size_t layer,
                                     const float *values, size_t count) {
  if (!values)
    return NN_OK;
  size_t bad = nnlib_first_non_finite(values, count);
  if (bad == count)
    return NN_OK;
  return NNLIB_FAIL_CALL(ctx, NN_ERROR_INVALID_DATA, call,
                         "%s of layer %zu: element %zu is %g", what, layer, bad,
                         (double)values[bad]);
}

nn_status nn_model_set_layer_parameters(nn_model *model, size_t layer,
                                        const float *weights,
                                        const float *bias) {
  if (!model)
    return NN_ERROR_INVALID_ARGUMENT;
  NNLIB_REFUSE_WHILE_TRAINING(model);
  const char *call = __func__;
  nn_status status = check_layer_index(model, layer, call);
  if (status != NN_OK)
    return status;
  nnlib_layer *view = &model->layers[layer - 1];
  size_t weight_count = view->units * view->inputs;
  status = check_finite_values(model->ctx, call, "weights", layer, weights,
                               weight_count);
  if (status == NN_OK)
    status =
        check_finite_values(model->ctx, call, "bias", layer, bias, view->units);
  nnlib_backend *backend = NNLIB_BACKEND(model);
  if (status == NN_OK && weights)
    status = backend->ops->upload(backend, model->ctx, view->weights, weights,
                                  weight_count);
  if (status == NN_OK && bias)
    status = backend->ops->upload(backend, model->ctx, view->bias, bias,
                                  view->units);
  return parameters_written(model, status);
}

nn_status nn_model_get_parameters(const nn_model *model, float *out,
                                  size_t count) {
  if (!model)
    return NN_ERROR_INVALID_ARGUMENT;
  if (!out || count != model->parameter_count)
    return NNLIB_FAIL(model->ctx, NN_ERROR_SHAPE_MISMATCH,
                      "need a buffer of %zu floats, got %zu%s",
                      model->parameter_count, count, out ? "" : " (NULL)");
  return NNLIB_BACKEND(model)->ops->download(NNLIB_BACKEND(model), model->ctx,
                                             out, model->parameters, count);
}

nn_status nn_model_set_parameters(nn_model *model, const float *values,
                                  size_t count) {
  if (!model)
    return NN_ERROR_INVALID_ARGUMENT;
  NNLIB_REFUSE_WHILE_TRAINING(model);
  if (!values || count != model->parameter_count)
    return NNLIB_FAIL(model->ctx, NN_ERROR_SHAPE_MISMATCH,
                      "need %zu floats, got %zu%s", model->parameter_count,
                      count, values ? "" : " (NULL)");
  size_t bad = nnlib_first_non_finite(values, count);
  if (bad != count)
    return NNLIB_FAIL(model->ctx, NN_ERROR_INVALID_DATA, "parameter %zu is %g",
                      bad, (double)values[bad]);
  nn_status status = NNLIB_BACKEND(model)->ops->upload(
      NNLIB_BACKEND(model), model->ctx, model->parameters, values, count);
  return parameters_written(model, status);
}

nn_status nn_model_seed_dropout(nn_model *model, uint64_t seed) {
  if (!model)
    return NN_ERROR_INVALID_ARGUMENT;
  NNLIB_REFUSE_WHILE_TRAINING(model);
  return NNLIB_OPS(model)->rng_seed(NNLIB_BACKEND(model), model->ctx,
                                    model->dropout_rng, seed);
}
