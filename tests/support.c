#include "support.h"

#include <math.h>
#include <stdlib.h>

nn_context *support_cpu_context(void) {
  char message[512];
  nn_context *ctx = NULL;
  nn_status status =
      nn_context_create(NN_BACKEND_CPU, 0, &ctx, message, sizeof message);
  cr_assert_eq(status, NN_OK, "nn_context_create: %s", message);
  return ctx;
}

nn_model *support_model(nn_context *ctx, const size_t *widths, size_t layers,
                        nn_activation hidden, nn_loss loss) {
  nn_layer_spec *specs = calloc(layers, sizeof *specs);
  cr_assert_not_null(specs);
  for (size_t l = 0; l < layers; l++) {
    specs[l].units = widths[l + 1];
    specs[l].activation =
        l + 1 == layers ? nn_loss_output_activation(loss) : hidden;
  }
  nn_model_spec spec = {widths[0], layers, specs, loss};
  nn_model *model = NULL;
  SUPPORT_OK(ctx, nn_model_create(ctx, &spec, &model));
  free(specs);
  return model;
}

int support_close(double a, double b, double tolerance) {
  double scale = fmax(1.0, fmax(fabs(a), fabs(b)));
  return fabs(a - b) <= tolerance * scale;
}
