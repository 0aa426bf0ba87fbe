/*
 * predict.c — prediction and evaluation, chunked so that a large data set
 * never needs activations for all its examples at once.
 */
#include "backend.h"

#include <math.h>
#include <stdlib.h>

/* Examples per forward pass when predicting: at least the training capacity
 * (no reallocation after training), at least this many otherwise. */
#define PREDICT_CHUNK 4096

static const nnlib_layer *output_layer(const nn_model *model) {
  return &model->layers[model->layer_count - 1];
}

static size_t chunk_size(const nn_model *model, size_t m) {
  size_t chunk =
      model->capacity > PREDICT_CHUNK ? model->capacity : PREDICT_CHUNK;
  return chunk < m ? chunk : m;
}

/* Forward pass (no dropout) of `count` columns of x starting at `first`;
 * copies A[L] to yhat (n[L] × count) when not NULL. */
static nn_status forward_chunk(nn_model *model, const float *x, size_t first,
                               size_t count, float *yhat) {
  const size_t nx = model->input_width, ny = output_layer(model)->units;
  nn_status status =
      NNLIB_OPS(model)->upload(NNLIB_BACKEND(model), model->ctx, model->input,
                               x + first * nx, nx * count);
  if (status == NN_OK)
    status = nnlib_forward(model, model->input, count, false);
  if (status == NN_OK && yhat)
    status = NNLIB_OPS(model)->download(NNLIB_BACKEND(model), model->ctx, yhat,
                                        output_layer(model)->activation_out,
                                        ny * count);
  return status;
}

static nn_status check_predict_args(nn_model *model, const char *call,
                                    const float *x, size_t m, const void *out) {
  if (!x || !out)
    return NNLIB_FAIL_CALL(model->ctx, NN_ERROR_INVALID_ARGUMENT, call,
                           "%s is NULL", x ? "the output buffer" : "x");
  if (m == 0)
    return NNLIB_FAIL_CALL(model->ctx, NN_ERROR_SHAPE_MISMATCH, call,
                           "m = 0 examples");
  return nnlib_model_reserve(model, chunk_size(model, m));
}

nn_status nn_model_predict(nn_model *model, const float *x, size_t m,
                           float *yhat) {
  if (!model)
    return NN_ERROR_INVALID_ARGUMENT;
  nn_status status = check_predict_args(model, __func__, x, m, yhat);
  const size_t chunk = chunk_size(model, m), ny = output_layer(model)->units;
  for (size_t first = 0; status == NN_OK && first < m; first += chunk) {
    size_t count = m - first < chunk ? m - first : chunk;
    status = forward_chunk(model, x, first, count, yhat + first * ny);
  }
  return status;
}

/* The class of one column of ŷ (n rows). */
static int32_t column_class(const float *yhat, size_t n) {
  if (n == 1)
    return yhat[0] >= 0.5f ? 1 : 0;
  size_t best = 0;
  for (size_t i = 1; i < n; i++)
    best = yhat[i] > yhat[best] ? i : best;
  return (int32_t)best;
}

nn_status nn_model_predict_classes(nn_model *model, const float *x, size_t m,
                                   int32_t *classes) {
  if (!model)
    return NN_ERROR_INVALID_ARGUMENT;
  if (model->loss == NN_LOSS_MEAN_SQUARED_ERROR)
    return NNLIB_FAIL(model->ctx, NN_ERROR_INVALID_ARGUMENT,
                      "a regression model (linear output) has no classes; "
                      "use nn_model_predict");
  nn_status status = check_predict_args(model, __func__, x, m, classes);
  if (status != NN_OK)
    return status;
  const size_t chunk = chunk_size(model, m), ny = output_layer(model)->units;
  float *yhat = NULL;
  status =
      nnlib_host_alloc(model->ctx, ny, chunk * sizeof(float), (void **)&yhat);
  for (size_t first = 0; status == NN_OK && first < m; first += chunk) {
    size_t count = m - first < chunk ? m - first : chunk;
    status = forward_chunk(model, x, first, count, yhat);
    for (size_t j = 0; status == NN_OK && j < count; j++)
      classes[first + j] = column_class(yhat + j * ny, ny);
  }
  free(yhat);
  return status;
}

/* Running sums over chunks for nn_metrics. */
typedef struct metric_sums {
  double loss, correct, squared, absolute;
} metric_sums;

static void accumulate_metrics(const nn_model *model, const float *yhat,
                               const float *y, size_t count,
                               metric_sums *sums) {
  const size_t ny = output_layer(model)->units;
  if (model->loss != NN_LOSS_MEAN_SQUARED_ERROR) {
    for (size_t j = 0; j < count; j++)
      sums->correct +=
          column_class(yhat + j * ny, ny) == column_class(y + j * ny, ny);
    return;
  }
  for (size_t k = 0; k < ny * count; k++) {
    double diff = (double)yhat[k] - y[k];
    sums->squared += diff * diff;
    sums->absolute += fabs(diff);
  }
}

static nn_status evaluate_chunk(nn_model *model, const nn_dataset *data,
                                size_t first, size_t count, float *yhat,
                                metric_sums *sums) {
  const size_t ny = output_layer(model)->units;
  const float *y = data->y + first * ny;
  double loss = 0.0;
  nn_status status = forward_chunk(model, data->x, first, count, yhat);
  if (status == NN_OK)
    status = NNLIB_OPS(model)->upload(NNLIB_BACKEND(model), model->ctx,
                                      model->targets, y, ny * count);
  if (status == NN_OK)
    status = nnlib_loss_sum(model, model->targets, count, &loss);
  if (status == NN_OK) {
    sums->loss += loss;
    accumulate_metrics(model, yhat, y, count, sums);
  }
  return status;
}

nn_status nn_model_evaluate(nn_model *model, const nn_dataset *data,
                            nn_metrics *metrics) {
  if (!model)
    return NN_ERROR_INVALID_ARGUMENT;
  if (!data || !metrics)
    return NNLIB_FAIL(model->ctx, NN_ERROR_INVALID_ARGUMENT, "%s is NULL",
                      data ? "metrics" : "data");
  const size_t ny = output_layer(model)->units, m = data->example_count;
  if (data->input_width != model->input_width || data->target_width != ny)
    return NNLIB_FAIL(model->ctx, NN_ERROR_SHAPE_MISMATCH,
                      "data has n_x = %zu, n_y = %zu; the model takes %zu "
                      "inputs and gives %zu outputs",
                      data->input_width, data->target_width, model->input_width,
                      ny);
  nn_status status = nnlib_check_targets(model, data->y, m, __func__);
  if (status == NN_OK)
    status = nnlib_model_reserve(model, chunk_size(model, m));
  if (status != NN_OK)
    return status;
  const size_t chunk = chunk_size(model, m);
  float *yhat = NULL;
  metric_sums sums = {0};
  status =
      nnlib_host_alloc(model->ctx, ny, chunk * sizeof(float), (void **)&yhat);
  for (size_t first = 0; status == NN_OK && first < m; first += chunk) {
    size_t count = m - first < chunk ? m - first : chunk;
    status = evaluate_chunk(model, data, first, count, yhat, &sums);
  }
  free(yhat);
  if (status != NN_OK)
    return status;
  bool regression = model->loss == NN_LOSS_MEAN_SQUARED_ERROR;
  metrics->cost = sums.loss / (double)m;
  metrics->accuracy = regression ? NAN : sums.correct / (double)m;
  metrics->mse = regression ? sums.squared / (double)(m * ny) : NAN;
  metrics->mae = regression ? sums.absolute / (double)(m * ny) : NAN;
  return NN_OK;
}
