/*
 * propagation.c — forward and backward propagation, the cost and the update,
 * as layer-level backend calls. These are the scheduler's steps and, through
 * the nn_model_forward/cost/backward/update wrappers, the notes' "forward
 * and backward functions" for callers who write their own loop.
 */
#include "backend.h"

#include <math.h>
#include <stdlib.h>

/* The timing probe's mark, when there is one (l: 1-based layer). */
static nn_status mark(nn_model *model, nnlib_phase phase, size_t l) {
  return model->probe ? model->probe->mark(model->probe, model, phase, l)
                      : NN_OK;
}

static const nnlib_layer *output_layer(const nn_model *model) {
  return &model->layers[model->layer_count - 1];
}

/* A[l-1] for layer index l (0-based: layers[l]) in the last forward pass. */
static const float *previous_activation(const nn_model *model, size_t l) {
  return l == 0 ? model->forward_input : model->layers[l - 1].activation_out;
}

nn_status nnlib_forward(nn_model *model, const float *input, size_t m,
                        bool training) {
  nn_status status = nnlib_model_prepare_bf16_parameters(model);
  model->forward_input = input;
  for (size_t l = 0; status == NN_OK && l < model->layer_count; l++) {
    const nnlib_layer *layer = &model->layers[l];
    status =
        NNLIB_OPS(model)->dense_forward(NNLIB_BACKEND(model), model->ctx, layer,
                                        previous_activation(model, l), m);
    if (status == NN_OK && training && layer->dropout > 0.0f)
      status = NNLIB_OPS(model)->dropout_forward(
          NNLIB_BACKEND(model), model->ctx, layer, model->dropout_rng, m);
    if (status == NN_OK)
      status = mark(model, NNLIB_PHASE_FORWARD, l + 1);
  }
  model->forward_examples = status == NN_OK ? m : 0;
  model->forward_training = training;
  model->backward_examples = 0;
  return status;
}

/* nnlib_cost_record; with dz (non-NULL only where the backend has
 * loss_sum_and_gradient), also dZ[L] = A - Y into dz in the same pass. */
static nn_status cost_record(nn_model *model, const float *targets, size_t m,
                             float l2_lambda, double *record, float *dz) {
  nnlib_backend *backend = NNLIB_BACKEND(model);
  nn_status status;
  if (dz)
    status = backend->ops->loss_sum_and_gradient(
        backend, model->ctx, model->loss, output_layer(model), targets, m,
        &record[0], dz);
  else
    status =
        backend->ops->loss_sum(backend, model->ctx, model->loss,
                               output_layer(model), targets, m, &record[0]);
  for (size_t l = 0;
       status == NN_OK && l2_lambda > 0.0f && l < model->layer_count; l++) {
    const nnlib_layer *layer = &model->layers[l];
    status =
        backend->ops->sum_squares(backend, model->ctx, layer->weights,
                                  layer->units * layer->inputs, &record[1 + l]);
  }
  return status;
}

nn_status nnlib_cost_record(nn_model *model, const float *targets, size_t m,
                            float l2_lambda, double *record) {
  return cost_record(model, targets, m, l2_lambda, record, NULL);
}

double nnlib_cost_of_record(const nn_model *model, const double *record,
                            size_t m, float l2_lambda) {
  double squares = 0.0;
  for (size_t l = 0; l2_lambda > 0.0f && l < model->layer_count; l++)
    squares += record[1 + l];
  const double penalty = (double)l2_lambda / (2.0 * (double)m) * squares;
  return record[0] / (double)m + penalty;
}

/* The record in model->cost_scratch, read back. */
static nn_status read_cost_scratch(nn_model *model, double *host_record) {
  return NNLIB_OPS(model)->download(
      NNLIB_BACKEND(model), model->ctx, (float *)(void *)host_record,
      (const float *)(const void *)model->cost_scratch,
      2 * NNLIB_COST_RECORD_DOUBLES(model));
}

nn_status nnlib_cost(nn_model *model, const float *targets, size_t m,
                     float l2_lambda, double *cost) {
  double *record = NULL;
  nn_status status =
      nnlib_host_alloc(model->ctx, NNLIB_COST_RECORD_DOUBLES(model),
                       sizeof *record, (void **)&record);
  if (status == NN_OK)
    status =
        nnlib_cost_record(model, targets, m, l2_lambda, model->cost_scratch);
  if (status == NN_OK)
    status = read_cost_scratch(model, record);
  if (status == NN_OK)
    *cost = nnlib_cost_of_record(model, record, m, l2_lambda);
  free(record);
  return status;
}

nn_status nnlib_loss_sum(nn_model *model, const float *targets, size_t m,
                         double *sum) {
  nnlib_backend *backend = NNLIB_BACKEND(model);
  nn_status status = backend->ops->loss_sum(backend, model->ctx, model->loss,
                                            output_layer(model), targets, m,
                                            model->cost_scratch);
  if (status == NN_OK)
    status = backend->ops->download(
        backend, model->ctx, (float *)(void *)sum,
        (const float *)(const void *)model->cost_scratch, 2);
  return status;
}

/* Layer l's view for activation_backward: without its dropout mask when the
 * last forward pass applied none (an inference pass), so that backward
 * differentiates the function that forward computed instead of applying a
 * stale mask (or, on a fresh arena, an all-zero one). */
static nnlib_layer backward_view(const nn_model *model, size_t l) {
  nnlib_layer view = model->layers[l];
  if (!model->forward_training)
    view.dropout_mask = NULL;
  return view;
}

/* dZ[L] = A[L] - Y, then for l = L..1: dW, db, dA[l-1]; dZ[l-1] = dA[l-1] *
 * g'(Z[l-1]). dZ/dA live in two scratch buffers used alternately. */
/* Backward propagation from dZ[L] in backward_scratch[0], which
 * gradient_done says is there already (else it is A - Y, made now). */
static nn_status backward(nn_model *model, const float *targets, size_t m,
                          float l2_lambda, bool gradient_done) {
  nnlib_backend *backend = NNLIB_BACKEND(model);
  nn_context *ctx = model->ctx;
  size_t current = 0;
  float *dz = model->backward_scratch[current];
  nn_status status = NN_OK;
  if (!gradient_done)
    status = backend->ops->output_gradient(backend, ctx, output_layer(model),
                                           targets, m, dz);
  if (status == NN_OK)
    status = mark(model, NNLIB_PHASE_BACKWARD, model->layer_count + 1);
  for (size_t l = model->layer_count; status == NN_OK && l-- > 0;) {
    float *da_prev = l > 0 ? model->backward_scratch[1 - current] : NULL;
    status = backend->ops->dense_backward(backend, ctx, &model->layers[l],
                                          previous_activation(model, l), dz, m,
                                          l2_lambda, da_prev);
    if (status == NN_OK && da_prev) {
      const nnlib_layer below = backward_view(model, l - 1);
      status =
          backend->ops->activation_backward(backend, ctx, &below, da_prev, m);
    }
    if (status == NN_OK)
      status = mark(model, NNLIB_PHASE_BACKWARD, l + 1);
    current = 1 - current;
    dz = da_prev;
  }
  model->backward_examples = status == NN_OK ? m : 0;
  return status;
}

nn_status nnlib_backward(nn_model *model, const float *targets, size_t m,
                         float l2_lambda) {
  return backward(model, targets, m, l2_lambda, false);
}

nn_status nnlib_check_optimizer(nn_context *ctx, const char *call,
                                const nn_optimizer_settings *settings,
                                float learning_rate) {
  if (!settings)
    return NNLIB_FAIL_CALL(ctx, NN_ERROR_INVALID_ARGUMENT, call,
                           "optimizer settings are NULL");
  if ((int)settings->kind < 0 || settings->kind >= NN_OPTIMIZER_COUNT)
    return NNLIB_FAIL_CALL(ctx, NN_ERROR_INVALID_ARGUMENT, call,
                           "unknown optimizer %d", (int)settings->kind);
  if (!(learning_rate > 0.0f) || !isfinite(learning_rate))
    return NNLIB_FAIL_CALL(ctx, NN_ERROR_INVALID_ARGUMENT, call,
                           "learning rate must be a positive number, got %g",
                           (double)learning_rate);
  if (!(settings->beta1 >= 0.0f && settings->beta1 < 1.0f) ||
      !(settings->beta2 >= 0.0f && settings->beta2 < 1.0f))
    return NNLIB_FAIL_CALL(ctx, NN_ERROR_INVALID_ARGUMENT, call,
                           "beta1 = %g and beta2 = %g must lie in [0, 1)",
                           (double)settings->beta1, (double)settings->beta2);
  if (!(settings->epsilon > 0.0f) || !isfinite(settings->epsilon))
    return NNLIB_FAIL_CALL(ctx, NN_ERROR_INVALID_ARGUMENT, call,
                           "epsilon must be a positive number, got %g",
                           (double)settings->epsilon);
  return NN_OK;
}

/* Whether the moments the optimizer reads and writes exist (made before
 * the step loop by nnlib_model_prepare_optimizer). */
static bool has_moments(const nn_model *model, nn_optimizer kind) {
  return (model->first_moment || !nnlib_uses_first_moment(kind)) &&
         (model->second_moment || !nnlib_uses_second_moment(kind));
}

nn_status nnlib_stage_update(nn_model *model,
                             const nn_optimizer_settings *settings,
                             float learning_rate) {
  if (!has_moments(model, settings->kind))
    return NNLIB_FAIL(model->ctx, NN_ERROR_STATE,
                      "%s step without its moments (internal: "
                      "nnlib_model_prepare_optimizer was not called)",
                      nn_optimizer_name(settings->kind));
  nnlib_optimizer_step step = {
      .kind = settings->kind,
      .learning_rate = learning_rate,
      .beta1 = settings->beta1,
      .beta2 = settings->beta2,
      .epsilon = settings->epsilon,
      .step = model->optimizer_step + 1,
  };
  nn_status status = NNLIB_OPS(model)->optimizer_stage(NNLIB_BACKEND(model),
                                                       model->ctx, &step);
  if (status == NN_OK)
    model->optimizer_step++;
  return status;
}

nn_status nnlib_apply_update(nn_model *model) {
  /* In bf16 the update writes the products' copy too. */
  const bool bf16 = model->precision == NN_PRECISION_BF16;
  nn_status status = NNLIB_OPS(model)->optimizer_apply(
      NNLIB_BACKEND(model), model->ctx, model->parameters, model->gradients,
      model->first_moment, model->second_moment,
      bf16 ? model->bf16_parameters : NULL, model->parameter_count);
  model->bf16_parameters_current = bf16 && status == NN_OK;
  model->forward_examples = 0;
  model->backward_examples = 0;
  return status;
}

nn_status nnlib_update(nn_model *model, const nn_optimizer_settings *settings,
                       float learning_rate) {
  nn_status status = nnlib_stage_update(model, settings, learning_rate);
  return status == NN_OK ? nnlib_apply_update(model) : status;
}

nn_status nnlib_step_body(nn_model *model, const float *input,
                          const float *targets, size_t m, float l2_lambda,
                          double *record) {
  nn_status status = nnlib_forward(model, input, m, true);
  /* The loss and dZ[L] = A - Y in one pass where the backend can. */
  float *dz = NNLIB_OPS(model)->loss_sum_and_gradient
                  ? model->backward_scratch[0]
                  : NULL;
  if (status == NN_OK)
    status = cost_record(model, targets, m, l2_lambda, record, dz);
  if (status == NN_OK)
    status = mark(model, NNLIB_PHASE_COST, 0);
  if (status == NN_OK)
    status = backward(model, targets, m, l2_lambda, dz != NULL);
  if (status == NN_OK)
    status = nnlib_apply_update(model);
  if (status == NN_OK)
    status = mark(model, NNLIB_PHASE_UPDATE, 0);
  return status;
}

/* ------------------------------------------------------------------------ */
/* Targets                                                                   */
/* ------------------------------------------------------------------------ */

static nn_status bad_target(nn_model *model, const char *what, size_t index,
                            size_t rows, float value, const char *rule) {
  return NNLIB_FAIL_CALL(model->ctx, NN_ERROR_INVALID_DATA, what,
                         "Y[row %zu, example %zu] = %g, but %s", index % rows,
                         index / rows, (double)value, rule);
}

nn_status nnlib_check_targets(nn_model *model, const float *targets, size_t m,
                              const char *what) {
  const size_t n = output_layer(model)->units;
  for (size_t k = 0; k < n * m; k++) {
    float y = targets[k];
    if (!isfinite(y))
      return bad_target(model, what, k, n, y, "targets must be finite");
    if (model->loss != NN_LOSS_MEAN_SQUARED_ERROR && (y < 0.0f || y > 1.0f))
      return bad_target(model, what, k, n, y,
                        "cross-entropy targets must lie in [0, 1]");
  }
  if (model->loss != NN_LOSS_CATEGORICAL_CROSS_ENTROPY)
    return NN_OK;
  for (size_t j = 0; j < m; j++) {
    double total = 0.0;
    for (size_t i = 0; i < n; i++)
      total += targets[j * n + i];
    if (fabs(total - 1.0) > 1e-3)
      return NNLIB_FAIL_CALL(model->ctx, NN_ERROR_INVALID_DATA, what,
                             "targets of example %zu sum to %g, but softmax "
                             "targets must be a distribution (one-hot labels)",
                             j, total);
  }
  return NN_OK;
}

/* ------------------------------------------------------------------------ */
/* Public single-batch steps                                                 */
/* ------------------------------------------------------------------------ */

static nn_status upload_columns(nn_model *model, float *dst, const float *src,
                                size_t rows, size_t m) {
  return NNLIB_OPS(model)->upload(NNLIB_BACKEND(model), model->ctx, dst, src,
                                  rows * m);
}

static nn_status check_batch(nn_model *model, const char *call,
                             const void *data, const char *name, size_t m) {
  if (!data)
    return NNLIB_FAIL_CALL(model->ctx, NN_ERROR_INVALID_ARGUMENT, call,
                           "%s is NULL", name);
  if (m == 0)
    return NNLIB_FAIL_CALL(model->ctx, NN_ERROR_SHAPE_MISMATCH, call,
                           "m = 0 examples");
  return NN_OK;
}

nn_status nn_model_forward(nn_model *model, const float *x, size_t m,
                           int training, float *yhat) {
  if (!model)
    return NN_ERROR_INVALID_ARGUMENT;
  nn_status status = check_batch(model, __func__, x, "x", m);
  if (status == NN_OK)
    status = nnlib_model_reserve(model, m);
  if (status == NN_OK)
    status = upload_columns(model, model->input, x, model->input_width, m);
  if (status == NN_OK)
    status = nnlib_forward(model, model->input, m, training != 0);
  if (status == NN_OK && yhat)
    status = NNLIB_OPS(model)->download(NNLIB_BACKEND(model), model->ctx, yhat,
                                        output_layer(model)->activation_out,
                                        output_layer(model)->units * m);
  return status;
}

/* Uploads y after checking that it follows a forward pass of m examples. */
static nn_status stage_targets(nn_model *model, const char *call,
                               const float *y, size_t m) {
  nn_status status = check_batch(model, call, y, "y", m);
  if (status != NN_OK)
    return status;
  if (model->forward_examples == 0)
    return NNLIB_FAIL_CALL(model->ctx, NN_ERROR_STATE, call,
                           "no forward pass to use: call nn_model_forward "
                           "first");
  if (model->forward_examples != m)
    return NNLIB_FAIL_CALL(model->ctx, NN_ERROR_SHAPE_MISMATCH, call,
                           "y has %zu examples but the forward pass had %zu", m,
                           model->forward_examples);
  status = nnlib_check_targets(model, y, m, call);
  if (status == NN_OK)
    status =
        upload_columns(model, model->targets, y, output_layer(model)->units, m);
  return status;
}

static nn_status check_l2(nn_model *model, const char *call, float lambda) {
  if (lambda >= 0.0f && isfinite(lambda))
    return NN_OK;
  return NNLIB_FAIL_CALL(model->ctx, NN_ERROR_INVALID_ARGUMENT, call,
                         "L2 lambda must be >= 0, got %g", (double)lambda);
}

nn_status nn_model_cost(nn_model *model, const float *y, size_t m,
                        float l2_lambda, float *cost) {
  if (!model)
    return NN_ERROR_INVALID_ARGUMENT;
  if (!cost)
    return NNLIB_FAIL(model->ctx, NN_ERROR_INVALID_ARGUMENT, "cost is NULL");
  double value = 0.0;
  nn_status status = check_l2(model, __func__, l2_lambda);
  if (status == NN_OK)
    status = stage_targets(model, __func__, y, m);
  if (status == NN_OK)
    status = nnlib_cost(model, model->targets, m, l2_lambda, &value);
  if (status == NN_OK)
    *cost = (float)value;
  return status;
}

nn_status nn_model_backward(nn_model *model, const float *y, size_t m,
                            float l2_lambda) {
  if (!model)
    return NN_ERROR_INVALID_ARGUMENT;
  nn_status status = check_l2(model, __func__, l2_lambda);
  if (status == NN_OK)
    status = stage_targets(model, __func__, y, m);
  if (status == NN_OK)
    status = nnlib_backward(model, model->targets, m, l2_lambda);
  return status;
}

nn_status nn_model_update(nn_model *model,
                          const nn_optimizer_settings *optimizer,
                          float learning_rate) {
  if (!model)
    return NN_ERROR_INVALID_ARGUMENT;
  NNLIB_REFUSE_WHILE_TRAINING(model);
  nn_status status =
      nnlib_check_optimizer(model->ctx, __func__, optimizer, learning_rate);
  if (status != NN_OK)
    return status;
  if (model->backward_examples == 0)
    return NNLIB_FAIL(model->ctx, NN_ERROR_STATE,
                      "no gradients to apply: call nn_model_backward first");
  status = nnlib_model_prepare_optimizer(model, optimizer->kind);
  return status == NN_OK ? nnlib_update(model, optimizer, learning_rate)
                         : status;
}
