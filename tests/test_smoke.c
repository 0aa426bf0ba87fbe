#include "support.h"

Test(smoke, xor_learns) {
  nn_context *ctx = support_cpu_context();
  const size_t widths[] = {2, 4, 1};
  nn_model *model = support_model(ctx, widths, 2, NN_ACTIVATION_TANH,
                                  NN_LOSS_BINARY_CROSS_ENTROPY);
  const float x[] = {0, 0, 0, 1, 1, 0, 1, 1}, y[] = {0, 1, 1, 0};
  nn_dataset *data = NULL;
  SUPPORT_OK(ctx, nn_dataset_create(ctx, 2, 1, 4, x, y, &data));
  SUPPORT_OK(ctx, nn_model_init(model, NN_INIT_XAVIER, 3));
  nn_train_options options;
  nn_train_options_default(&options);
  options.optimizer.kind = NN_OPTIMIZER_ADAM;
  options.learning_rate = 0.05f;
  options.epochs = 500;
  SUPPORT_OK(ctx, nn_model_train(model, data, &options, NULL));
  nn_metrics metrics;
  SUPPORT_OK(ctx, nn_model_evaluate(model, data, &metrics));
  cr_assert_eq(metrics.accuracy, 1.0, "accuracy %g", metrics.accuracy);
  nn_dataset_destroy(data);
  nn_model_destroy(model);
  nn_context_destroy(ctx);
}
