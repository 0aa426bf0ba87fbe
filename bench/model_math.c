/*
 * model_math.c — what a model of widths n[0..L] costs per step: parameters,
 * gemm FLOPs, and the memory a step needs against what the library lays
 * out (host/model.c, host/feeder.c).
 */
#include "bench.h"

/* W[l] (n[l] × n[l-1]) and b[l] (n[l]). */
size_t bench_parameter_count(const bench_model *model) {
  size_t count = 0;
  for (size_t l = 1; l <= model->layer_count; l++)
    count += model->widths[l] * model->widths[l - 1] + model->widths[l];
  return count;
}

double bench_step_flops(const bench_model *model, size_t batch) {
  double flops = 0;
  for (size_t l = 1; l <= model->layer_count; l++) {
    double product = 2.0 * (double)model->widths[l] *
                     (double)model->widths[l - 1] * (double)batch;
    size_t products = l == 1 ? 2 : 3; /* forward, dW, and dA_prev if l > 1 */
    flops += (double)products * product;
  }
  return flops;
}

size_t bench_gemms_per_step(const bench_model *model) {
  return 3 * model->layer_count - 1;
}

/* X (n[0]) and Y (n[L]) plus Z[l] and A[l] per layer: floats per example
 * of one batch's activations. */
static double minimum_activation_floats(const bench_model *model) {
  double floats =
      (double)model->widths[0] + (double)model->widths[model->layer_count];
  for (size_t l = 1; l <= model->layer_count; l++)
    floats += 2.0 * (double)model->widths[l];
  return floats;
}

static double optimizer_state_arenas(nn_optimizer optimizer) {
  switch (optimizer) {
  case NN_OPTIMIZER_MOMENTUM: /* v */
  case NN_OPTIMIZER_RMSPROP:  /* s */
    return 1;
  case NN_OPTIMIZER_ADAM: /* m and s */
    return 2;
  default:
    return 0;
  }
}

bench_memory_plan bench_plan_memory(const bench_model *model, size_t batch,
                                    nn_optimizer optimizer,
                                    nn_precision precision, bool resident,
                                    size_t examples, size_t model_bytes) {
  const double bytes = sizeof(float), b = (double)batch;
  const double parameters = (double)bench_parameter_count(model) * bytes;
  const double activations = minimum_activation_floats(model) * b * bytes;
  bench_memory_plan plan = {
      .parameters = parameters,
      .gradients = parameters,
      .optimizer_state = optimizer_state_arenas(optimizer) * parameters,
      .activations = activations,
  };
  plan.minimum = plan.parameters + plan.gradients + plan.optimizer_state +
                 plan.activations;
  const double x_rows = (double)model->widths[0];
  const double y_rows = (double)model->widths[model->layer_count];
  const double gathered_rows =
      precision == NN_PRECISION_BF16 ? y_rows : x_rows + y_rows;
  double batch_buffers =
      resident
          ? ((x_rows + y_rows) * (double)examples + gathered_rows * b) * bytes
          : 2.0 * (x_rows + y_rows) * b * bytes;
  plan.library_layout = (double)model_bytes + batch_buffers;
  return plan;
}
