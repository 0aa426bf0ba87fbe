/*
 * train_xor.c — the smallest complete use of libnn: a 2-4-1 network learns
 * XOR with Adam, then predicts the four cases.
 *
 *   cc train_xor.c $(pkg-config --cflags --libs nn) -o train_xor
 */
#include <nn.h>

#include <stdio.h>

/* Four examples as columns of X (2 × 4) and Y (1 × 4). */
static const float inputs[] = {0, 0, 0, 1, 1, 0, 1, 1};
static const float targets[] = {0, 1, 1, 0};

static int fail(nn_context *ctx, nn_status status) {
  fprintf(stderr, "train_xor: %s: %s\n", nn_status_str(status),
          nn_context_last_error(ctx));
  return 1;
}

int main(void) {
  char message[512];
  nn_context *ctx = NULL;
  nn_status status =
      nn_context_create(NN_BACKEND_AUTO, 0, &ctx, message, sizeof message);
  if (status != NN_OK) {
    fprintf(stderr, "train_xor: %s\n", message);
    return 1;
  }
  if (nn_context_notice(ctx)[0])
    fprintf(stderr, "train_xor: %s\n", nn_context_notice(ctx));

  const nn_layer_spec layers[] = {{4, NN_ACTIVATION_TANH, 0.0f},
                                  {1, NN_ACTIVATION_SIGMOID, 0.0f}};
  const nn_model_spec spec = {2, 2, layers, NN_LOSS_BINARY_CROSS_ENTROPY};
  nn_model *model = NULL;
  nn_dataset *data = NULL;
  nn_train_options options;
  nn_train_options_default(&options);
  options.optimizer.kind = NN_OPTIMIZER_ADAM;
  options.learning_rate = 0.05f;
  options.epochs = 500;

  nn_train_summary summary;
  nn_metrics metrics;
  float probabilities[4];
  if ((status = nn_model_create(ctx, &spec, &model)) != NN_OK ||
      (status = nn_model_init(model, NN_INIT_XAVIER, 7)) != NN_OK ||
      (status = nn_dataset_create(ctx, 2, 1, 4, inputs, targets, &data)) !=
          NN_OK ||
      (status = nn_model_train(model, data, &options, &summary)) != NN_OK ||
      (status = nn_model_evaluate(model, data, &metrics)) != NN_OK ||
      (status = nn_model_predict(model, inputs, 4, probabilities)) != NN_OK) {
    int code = fail(ctx, status);
    nn_dataset_destroy(data);
    nn_model_destroy(model);
    nn_context_destroy(ctx);
    return code;
  }
  printf("backend %s, %zu epochs, final cost %.4f, accuracy %.2f\n",
         nn_context_backend_name(ctx), summary.epochs_run, summary.final_cost,
         metrics.accuracy);
  for (int j = 0; j < 4; j++)
    printf("  %g xor %g -> %.3f\n", inputs[2 * j], inputs[2 * j + 1],
           probabilities[j]);
  nn_dataset_destroy(data);
  nn_model_destroy(model);
  nn_context_destroy(ctx);
  return metrics.accuracy == 1.0 ? 0 : 1;
}
