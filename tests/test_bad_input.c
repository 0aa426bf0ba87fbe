/*
 * test_bad_input.c — every invalid spec and argument is refused with the
 * right status and a message that names the failing call and what is wrong,
 * and nothing crashes (the suite also runs under ASan + UBSan).
 */
#include "internal.h"
#include "support.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Whether message reads "call: ...". */
static int names_call(const char *message, const char *call) {
  size_t length = strlen(call);
  return strncmp(message, call, length) == 0 && message[length] == ':';
}

/* Asserts that expr fails with `expected` and that the context's message
 * starts with the public call's name and contains `fragment`. The error is
 * cleared first so that the message is this call's. */
#define EXPECT_FAILURE(ctx, expected, call, fragment, expr)                    \
  do {                                                                         \
    nn_context_clear_error(ctx);                                               \
    nn_status failure_status_ = (expr);                                        \
    const char *failure_message_ = nn_context_last_error(ctx);                 \
    cr_assert_eq(failure_status_, (expected), "%s -> %s (\"%s\"), want %s",    \
                 #expr, nn_status_str(failure_status_), failure_message_,      \
                 nn_status_str(expected));                                     \
    cr_assert(names_call(failure_message_, (call)),                            \
              "%s: message \"%s\" does not start with %s", #expr,              \
              failure_message_, (call));                                       \
    cr_assert_not_null(strstr(failure_message_, (fragment)),                   \
                       "%s: message \"%s\" lacks \"%s\"", #expr,               \
                       failure_message_, (fragment));                          \
  } while (0)

/* ------------------------------------------------------------------------ */
/* Fixtures                                                                  */
/* ------------------------------------------------------------------------ */

/* A spec over a caller-owned layers array; tests break one field each. */
typedef struct spec_fixture {
  nn_layer_spec layers[3];
  nn_model_spec spec;
} spec_fixture;

/* 2 -> 4 relu -> 3 tanh -> 1 sigmoid with binary cross-entropy: valid. */
static void spec_fixture_init(spec_fixture *fixture) {
  fixture->layers[0] = (nn_layer_spec){4, NN_ACTIVATION_RELU, 0.0f};
  fixture->layers[1] = (nn_layer_spec){3, NN_ACTIVATION_TANH, 0.0f};
  fixture->layers[2] = (nn_layer_spec){1, NN_ACTIVATION_SIGMOID, 0.0f};
  fixture->spec =
      (nn_model_spec){2, 3, fixture->layers, NN_LOSS_BINARY_CROSS_ENTROPY};
}

static void expect_bad_spec(nn_context *ctx, const spec_fixture *fixture,
                            nn_status expected, const char *fragment) {
  nn_model *model = (nn_model *)&model; /* must be reset to NULL */
  EXPECT_FAILURE(ctx, expected, "nn_model_create", fragment,
                 nn_model_create(ctx, &fixture->spec, &model));
  cr_assert_null(model, "*out must be NULL on failure");
}

/* A 2-3-1 classifier (sigmoid + binary CE) with Xavier weights. */
static nn_model *small_classifier(nn_context *ctx) {
  const size_t widths[] = {2, 3, 1};
  nn_model *model = support_model(ctx, widths, 2, NN_ACTIVATION_TANH,
                                  NN_LOSS_BINARY_CROSS_ENTROPY);
  SUPPORT_OK(ctx, nn_model_init(model, NN_INIT_XAVIER, 1));
  return model;
}

static const float xor_x[] = {0, 0, 0, 1, 1, 0, 1, 1};
static const float xor_y[] = {0, 1, 1, 0};

static nn_dataset *xor_dataset(nn_context *ctx) {
  nn_dataset *data = NULL;
  SUPPORT_OK(ctx, nn_dataset_create(ctx, 2, 1, 4, xor_x, xor_y, &data));
  return data;
}

static nn_train_options quick_options(void) {
  nn_train_options options;
  nn_train_options_default(&options);
  options.epochs = 3;
  return options;
}

static float *parameters_of(nn_context *ctx, const nn_model *model) {
  size_t count = nn_model_parameter_count(model);
  float *values = malloc(count * sizeof *values);
  cr_assert_not_null(values);
  SUPPORT_OK(ctx, nn_model_get_parameters(model, values, count));
  return values;
}

static void expect_parameters(nn_context *ctx, const nn_model *model,
                              const float *expected, const char *why) {
  float *actual = parameters_of(ctx, model);
  cr_assert_eq(
      memcmp(actual, expected, nn_model_parameter_count(model) * sizeof(float)),
      0, "%s", why);
  free(actual);
}

/* ------------------------------------------------------------------------ */
/* Context                                                                   */
/* ------------------------------------------------------------------------ */

Test(bad_input, context_create_rejects_bad_arguments) {
  char message[256];
  nn_context *ctx = (nn_context *)&ctx;
  cr_assert_eq(
      nn_context_create(NN_BACKEND_CPU, 0, NULL, message, sizeof message),
      NN_ERROR_INVALID_ARGUMENT);
  cr_assert_not_null(strstr(message, "out is NULL"), "\"%s\"", message);

  cr_assert_eq(
      nn_context_create((nn_backend_kind)42, 0, &ctx, message, sizeof message),
      NN_ERROR_INVALID_ARGUMENT);
  cr_assert_null(ctx);
  cr_assert_not_null(strstr(message, "backend"), "\"%s\"", message);

  ctx = (nn_context *)&ctx;
  cr_assert_eq(
      nn_context_create(NN_BACKEND_CPU, -1, &ctx, message, sizeof message),
      NN_ERROR_INVALID_ARGUMENT);
  cr_assert_null(ctx);
  cr_assert_not_null(strstr(message, "device index"), "\"%s\"", message);

  /* No message buffer at all, and one of size 1: still no crash. */
  cr_assert_eq(nn_context_create(NN_BACKEND_CPU, -1, &ctx, NULL, 0),
               NN_ERROR_INVALID_ARGUMENT);
  char tiny[1] = {'x'};
  cr_assert_eq(nn_context_create(NN_BACKEND_CPU, -1, &ctx, tiny, 1),
               NN_ERROR_INVALID_ARGUMENT);
  cr_assert_eq(tiny[0], '\0');
}

/* On a machine without a usable GPU CUDA is refused as NO_DEVICE; a GPU
 * this build has no code for, as UNSUPPORTED. Either way with a reason. AUTO
 * then falls back to the CPU and says why. */
Test(bad_input, cuda_without_gpu_is_refused_and_auto_falls_back) {
  char message[256] = "unchanged";
  nn_context *ctx = (nn_context *)&ctx;
  nn_status status =
      nn_context_create(NN_BACKEND_CUDA, 0, &ctx, message, sizeof message);
  if (status == NN_OK) {
    /* A real CUDA backend: nothing to refuse. */
    cr_assert_eq(nn_context_backend(ctx), NN_BACKEND_CUDA);
    nn_context_destroy(ctx);
    return;
  }
  cr_assert(status == NN_ERROR_NO_DEVICE || status == NN_ERROR_UNSUPPORTED,
            "CUDA -> %s", nn_status_str(status));
  cr_assert_null(ctx);
  cr_assert_gt(strlen(message), 10, "a reason is required, got \"%s\"",
               message);

  ctx = NULL;
  SUPPORT_OK(ctx, nn_context_create(NN_BACKEND_AUTO, 0, &ctx, message,
                                    sizeof message));
  cr_assert_eq(nn_context_backend(ctx), NN_BACKEND_CPU);
  cr_assert_str_eq(nn_context_backend_name(ctx), "cpu");
  cr_assert_not_null(strstr(nn_context_notice(ctx), "CPU"), "notice \"%s\"",
                     nn_context_notice(ctx));
  cr_assert_str_eq(nn_context_last_error(ctx), "",
                   "a fallback is not an error");
  nn_context_destroy(ctx);

  /* Asked for, the CPU is no fallback (its notice at most advises on
   * OpenBLAS: test_cpu_loops). */
  ctx = support_cpu_context();
  cr_assert_null(strstr(nn_context_notice(ctx), "no usable GPU"),
                 "notice \"%s\"", nn_context_notice(ctx));
  cr_assert_eq(nn_context_backend(ctx), NN_BACKEND_CPU);
  nn_context_destroy(ctx);
}

/* The notes a context makes add up in order, each once; when the notice
 * is full, the first notes stay and the notice says later ones were left
 * out (nn.h, nn_context_notice). */
Test(bad_input, notes_add_up_and_the_first_are_kept) {
  nn_context *ctx = support_cpu_context();
  ctx->notice[0] = '\0'; /* whatever OpenBLAS advice the CPU had */
  nnlib_note(ctx, "first %d", 1);
  nnlib_note(ctx, "%s", "second");
  nnlib_note(ctx, "first %d", 1);
  nnlib_note(ctx, "%s", "");
  cr_assert_str_eq(nn_context_notice(ctx), "first 1; second");

  char long_note[300];
  memset(long_note, 'x', sizeof long_note - 1);
  long_note[sizeof long_note - 1] = '\0';
  size_t notes = 2;
  for (int k = 0; k < 40; k++) {
    long_note[0] = (char)('A' + k);
    nnlib_note(ctx, "%s", long_note);
    if (!strstr(nn_context_notice(ctx), NNLIB_NOTICE_FULL))
      notes++;
  }
  const char *notice = nn_context_notice(ctx);
  const size_t length = strlen(notice);
  cr_assert_lt(length, sizeof ctx->notice);
  cr_assert_gt(notes, 10, "only %zu notes fitted", notes);
  cr_assert_eq(strncmp(notice, "first 1; second; A", 18), 0, "%s", notice);
  cr_assert_str_eq(notice + length - strlen(NNLIB_NOTICE_FULL) - 2,
                   "; " NNLIB_NOTICE_FULL);
  nnlib_note(ctx, "after it filled");
  cr_assert_eq(strlen(nn_context_notice(ctx)), length, "a full notice grew");

  /* A first note too long to keep: the mark alone, and nothing after it. */
  ctx->notice[0] = '\0';
  static char huge[NNLIB_NOTICE_CAPACITY + 100];
  memset(huge, 'y', sizeof huge - 1);
  nnlib_note(ctx, "%s", huge);
  cr_assert_str_eq(nn_context_notice(ctx), NNLIB_NOTICE_FULL);
  nnlib_note(ctx, "short");
  cr_assert_str_eq(nn_context_notice(ctx), NNLIB_NOTICE_FULL);
  nn_context_destroy(ctx);
}

/* ------------------------------------------------------------------------ */
/* Model spec                                                                */
/* ------------------------------------------------------------------------ */

Test(bad_input, model_spec_structure) {
  nn_context *ctx = support_cpu_context();
  spec_fixture fixture;
  nn_model *model = NULL;

  EXPECT_FAILURE(ctx, NN_ERROR_INVALID_ARGUMENT, "nn_model_create",
                 "spec is NULL", nn_model_create(ctx, NULL, &model));
  spec_fixture_init(&fixture);
  EXPECT_FAILURE(ctx, NN_ERROR_INVALID_ARGUMENT, "nn_model_create",
                 "out is NULL", nn_model_create(ctx, &fixture.spec, NULL));
  cr_assert_eq(nn_model_create(NULL, &fixture.spec, &model),
               NN_ERROR_INVALID_ARGUMENT);

  fixture.spec.layer_count = 0;
  expect_bad_spec(ctx, &fixture, NN_ERROR_INVALID_SPEC, "no layers");
  spec_fixture_init(&fixture);
  fixture.spec.layers = NULL;
  expect_bad_spec(ctx, &fixture, NN_ERROR_INVALID_SPEC, "no layers");
  spec_fixture_init(&fixture);
  fixture.spec.input_width = 0;
  expect_bad_spec(ctx, &fixture, NN_ERROR_INVALID_SPEC, "input width 0");
  spec_fixture_init(&fixture);
  fixture.layers[1].units = 0;
  expect_bad_spec(ctx, &fixture, NN_ERROR_INVALID_SPEC, "layer 2 has width 0");
  spec_fixture_init(&fixture);
  fixture.layers[0].activation = (nn_activation)99;
  expect_bad_spec(ctx, &fixture, NN_ERROR_INVALID_SPEC,
                  "layer 1 has unknown activation 99");
  spec_fixture_init(&fixture);
  fixture.layers[0].activation = (nn_activation)-1;
  expect_bad_spec(ctx, &fixture, NN_ERROR_INVALID_SPEC,
                  "unknown activation -1");
  spec_fixture_init(&fixture);
  fixture.spec.loss = (nn_loss)7;
  expect_bad_spec(ctx, &fixture, NN_ERROR_INVALID_SPEC, "unknown loss 7");
  nn_context_destroy(ctx);
}

Test(bad_input, model_spec_activation_and_loss_pairing) {
  nn_context *ctx = support_cpu_context();
  spec_fixture fixture;

  spec_fixture_init(&fixture);
  fixture.layers[1].activation = NN_ACTIVATION_SOFTMAX;
  expect_bad_spec(ctx, &fixture, NN_ERROR_INVALID_SPEC,
                  "layer 2: softmax is only allowed on the output layer");

  /* relu output with MSE: MSE needs a linear output. */
  spec_fixture_init(&fixture);
  fixture.spec.loss = NN_LOSS_MEAN_SQUARED_ERROR;
  fixture.layers[2].activation = NN_ACTIVATION_RELU;
  expect_bad_spec(ctx, &fixture, NN_ERROR_INVALID_SPEC,
                  "output layer 3 is relu, but loss mean_squared_error "
                  "needs a linear output");

  spec_fixture_init(&fixture);
  fixture.spec.loss = NN_LOSS_CATEGORICAL_CROSS_ENTROPY;
  fixture.layers[2].units = 3;
  expect_bad_spec(ctx, &fixture, NN_ERROR_INVALID_SPEC, "needs a softmax");

  spec_fixture_init(&fixture);
  fixture.layers[2].activation = NN_ACTIVATION_LINEAR;
  expect_bad_spec(ctx, &fixture, NN_ERROR_INVALID_SPEC, "needs a sigmoid");

  spec_fixture_init(&fixture);
  fixture.spec.loss = NN_LOSS_CATEGORICAL_CROSS_ENTROPY;
  fixture.layers[2].activation = NN_ACTIVATION_SOFTMAX;
  expect_bad_spec(ctx, &fixture, NN_ERROR_INVALID_SPEC,
                  "softmax output needs at least 2 units, got 1");

  /* The same softmax layer with 2 units is fine. */
  fixture.layers[2].units = 2;
  nn_model *model = NULL;
  SUPPORT_OK(ctx, nn_model_create(ctx, &fixture.spec, &model));
  nn_model_destroy(model);
  nn_context_destroy(ctx);
}

Test(bad_input, model_spec_dropout) {
  const float bad[] = {-0.1f, 1.0f, 1.5f, NAN, INFINITY};
  nn_context *ctx = support_cpu_context();
  spec_fixture fixture;
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    spec_fixture_init(&fixture);
    fixture.layers[1].dropout = bad[i];
    expect_bad_spec(ctx, &fixture, NN_ERROR_INVALID_SPEC, "layer 2 dropout");
    cr_assert_not_null(strstr(nn_context_last_error(ctx), "[0, 1)"));
  }
  spec_fixture_init(&fixture);
  fixture.layers[2].dropout = 0.5f;
  expect_bad_spec(ctx, &fixture, NN_ERROR_INVALID_SPEC,
                  "output layer 3 cannot have dropout");
  /* Dropout just below 1 on a hidden layer is accepted. */
  spec_fixture_init(&fixture);
  fixture.layers[0].dropout = 0.99f;
  nn_model *model = NULL;
  SUPPORT_OK(ctx, nn_model_create(ctx, &fixture.spec, &model));
  cr_assert_eq(nn_model_layer_dropout(model, 1), 0.99f);
  nn_model_destroy(model);
  nn_context_destroy(ctx);
}

Test(bad_input, model_init_rejects_unknown_scheme) {
  nn_context *ctx = support_cpu_context();
  nn_model *model = small_classifier(ctx);
  float *before = parameters_of(ctx, model);
  EXPECT_FAILURE(ctx, NN_ERROR_INVALID_ARGUMENT, "nn_model_init",
                 "unknown initialization 42",
                 nn_model_init(model, (nn_init)42, 1));
  expect_parameters(ctx, model, before, "a refused init changes nothing");
  cr_assert_eq(nn_model_init(NULL, NN_INIT_HE, 1), NN_ERROR_INVALID_ARGUMENT);
  free(before);
  nn_model_destroy(model);
  nn_context_destroy(ctx);
}

/* ------------------------------------------------------------------------ */
/* Datasets                                                                  */
/* ------------------------------------------------------------------------ */

Test(bad_input, dataset_shapes_and_pointers) {
  nn_context *ctx = support_cpu_context();
  nn_dataset *data = (nn_dataset *)&data;
  EXPECT_FAILURE(ctx, NN_ERROR_INVALID_ARGUMENT, "nn_dataset_create",
                 "x is NULL",
                 nn_dataset_create(ctx, 2, 1, 4, NULL, xor_y, &data));
  cr_assert_null(data);
  EXPECT_FAILURE(ctx, NN_ERROR_INVALID_ARGUMENT, "nn_dataset_create",
                 "y is NULL",
                 nn_dataset_create(ctx, 2, 1, 4, xor_x, NULL, &data));
  EXPECT_FAILURE(ctx, NN_ERROR_INVALID_ARGUMENT, "nn_dataset_create",
                 "out is NULL",
                 nn_dataset_create(ctx, 2, 1, 4, xor_x, xor_y, NULL));
  EXPECT_FAILURE(ctx, NN_ERROR_SHAPE_MISMATCH, "nn_dataset_create", "n_x = 0",
                 nn_dataset_create(ctx, 0, 1, 4, xor_x, xor_y, &data));
  EXPECT_FAILURE(ctx, NN_ERROR_SHAPE_MISMATCH, "nn_dataset_create", "n_y = 0",
                 nn_dataset_create(ctx, 2, 0, 4, xor_x, xor_y, &data));
  EXPECT_FAILURE(ctx, NN_ERROR_SHAPE_MISMATCH, "nn_dataset_view", "m = 0",
                 nn_dataset_view(ctx, 2, 1, 0, xor_x, xor_y, &data));
  EXPECT_FAILURE(
      ctx, NN_ERROR_SHAPE_MISMATCH, "nn_dataset_create", "overflows",
      nn_dataset_create(ctx, SIZE_MAX / 2, 1, 4, xor_x, xor_y, &data));
  cr_assert_eq(nn_dataset_create(NULL, 2, 1, 4, xor_x, xor_y, &data),
               NN_ERROR_INVALID_ARGUMENT);
  nn_context_destroy(ctx);
}

Test(bad_input, dataset_rejects_non_finite_values_naming_them) {
  nn_context *ctx = support_cpu_context();
  nn_dataset *data = NULL;
  float x[8], y[4];
  memcpy(x, xor_x, sizeof x);
  memcpy(y, xor_y, sizeof y);
  x[5] = NAN; /* row 1 of example 2 */
  EXPECT_FAILURE(ctx, NN_ERROR_INVALID_DATA, "nn_dataset_create",
                 "X[row 1, example 2] is nan",
                 nn_dataset_create(ctx, 2, 1, 4, x, y, &data));
  EXPECT_FAILURE(ctx, NN_ERROR_INVALID_DATA, "nn_dataset_view",
                 "X[row 1, example 2]",
                 nn_dataset_view(ctx, 2, 1, 4, x, y, &data));
  int32_t labels[4] = {0, 1, 1, 0};
  EXPECT_FAILURE(ctx, NN_ERROR_INVALID_DATA, "nn_dataset_create_from_labels",
                 "X[row 1, example 2]",
                 nn_dataset_create_from_labels(ctx, 2, 4, x, labels, 1, &data));
  x[5] = 0.0f;
  y[3] = -INFINITY;
  EXPECT_FAILURE(ctx, NN_ERROR_INVALID_DATA, "nn_dataset_create",
                 "Y[row 0, example 3] is -inf",
                 nn_dataset_create(ctx, 2, 1, 4, x, y, &data));
  cr_assert_null(data);
  nn_context_destroy(ctx);
}

Test(bad_input, dataset_labels_out_of_range) {
  nn_context *ctx = support_cpu_context();
  nn_dataset *data = (nn_dataset *)&data;
  int32_t too_big[4] = {0, 1, 3, 2};
  EXPECT_FAILURE(
      ctx, NN_ERROR_INVALID_DATA, "nn_dataset_create_from_labels",
      "label of example 2 is 3, outside 0..2",
      nn_dataset_create_from_labels(ctx, 2, 4, xor_x, too_big, 3, &data));
  cr_assert_null(data);
  int32_t negative[4] = {0, 1, 1, -1};
  EXPECT_FAILURE(
      ctx, NN_ERROR_INVALID_DATA, "nn_dataset_create_from_labels",
      "label of example 3 is -1",
      nn_dataset_create_from_labels(ctx, 2, 4, xor_x, negative, 3, &data));
  /* class_count 1: a single sigmoid target, labels must be 0 or 1. */
  int32_t not_binary[4] = {0, 2, 1, 0};
  EXPECT_FAILURE(
      ctx, NN_ERROR_INVALID_DATA, "nn_dataset_create_from_labels",
      "label of example 1 is 2, outside 0..1",
      nn_dataset_create_from_labels(ctx, 2, 4, xor_x, not_binary, 1, &data));
  EXPECT_FAILURE(
      ctx, NN_ERROR_INVALID_ARGUMENT, "nn_dataset_create_from_labels",
      "labels is NULL",
      nn_dataset_create_from_labels(ctx, 2, 4, xor_x, NULL, 2, &data));
  EXPECT_FAILURE(
      ctx, NN_ERROR_SHAPE_MISMATCH, "nn_dataset_create_from_labels", "class",
      nn_dataset_create_from_labels(ctx, 2, 4, xor_x, too_big, 0, &data));
  cr_assert_null(data);
  nn_context_destroy(ctx);
}

/* ------------------------------------------------------------------------ */
/* Training options and targets                                              */
/* ------------------------------------------------------------------------ */

Test(bad_input, train_rejects_shapes_and_pointers) {
  nn_context *ctx = support_cpu_context();
  nn_model *model = small_classifier(ctx);
  nn_dataset *data = xor_dataset(ctx);
  nn_train_options options = quick_options();
  EXPECT_FAILURE(ctx, NN_ERROR_INVALID_ARGUMENT, "nn_model_train",
                 "train is NULL", nn_model_train(model, NULL, &options, NULL));
  EXPECT_FAILURE(ctx, NN_ERROR_INVALID_ARGUMENT, "nn_model_train",
                 "options is NULL", nn_model_train(model, data, NULL, NULL));
  cr_assert_eq(nn_model_train(NULL, data, &options, NULL),
               NN_ERROR_INVALID_ARGUMENT);

  /* Three inputs for a model that takes two; two targets for one output. */
  const float x3[] = {0, 0, 0, 1, 1, 1}, y2[] = {0, 1, 1, 0};
  nn_dataset *wide = NULL, *two_targets = NULL;
  SUPPORT_OK(ctx, nn_dataset_create(ctx, 3, 1, 2, x3, xor_y, &wide));
  SUPPORT_OK(ctx, nn_dataset_create(ctx, 2, 2, 2, xor_x, y2, &two_targets));
  EXPECT_FAILURE(ctx, NN_ERROR_SHAPE_MISMATCH, "nn_model_train", "n_x = 3",
                 nn_model_train(model, wide, &options, NULL));
  EXPECT_FAILURE(ctx, NN_ERROR_SHAPE_MISMATCH, "nn_model_train", "n_y = 2",
                 nn_model_train(model, two_targets, &options, NULL));
  nn_metrics metrics;
  EXPECT_FAILURE(ctx, NN_ERROR_SHAPE_MISMATCH, "nn_model_evaluate", "n_x = 3",
                 nn_model_evaluate(model, wide, &metrics));
  EXPECT_FAILURE(ctx, NN_ERROR_INVALID_ARGUMENT, "nn_model_evaluate",
                 "metrics is NULL", nn_model_evaluate(model, data, NULL));
  nn_dataset_destroy(wide);
  nn_dataset_destroy(two_targets);
  nn_dataset_destroy(data);
  nn_model_destroy(model);
  nn_context_destroy(ctx);
}

Test(bad_input, train_rejects_bad_options) {
  nn_context *ctx = support_cpu_context();
  nn_model *model = small_classifier(ctx);
  nn_dataset *data = xor_dataset(ctx);
  float *before = parameters_of(ctx, model);
  nn_train_options options;

#define EXPECT_BAD_OPTION(field_assignment, status, fragment)                  \
  do {                                                                         \
    options = quick_options();                                                 \
    field_assignment;                                                          \
    EXPECT_FAILURE(ctx, status, "nn_model_train", fragment,                    \
                   nn_model_train(model, data, &options, NULL));               \
  } while (0)

  EXPECT_BAD_OPTION(options.epochs = 0, NN_ERROR_INVALID_ARGUMENT,
                    "epochs must be > 0");
  EXPECT_BAD_OPTION(options.learning_rate = 0.0f, NN_ERROR_INVALID_ARGUMENT,
                    "learning rate");
  EXPECT_BAD_OPTION(options.learning_rate = -0.1f, NN_ERROR_INVALID_ARGUMENT,
                    "learning rate");
  EXPECT_BAD_OPTION(options.learning_rate = NAN, NN_ERROR_INVALID_ARGUMENT,
                    "learning rate");
  EXPECT_BAD_OPTION(options.learning_rate = INFINITY, NN_ERROR_INVALID_ARGUMENT,
                    "learning rate");
  EXPECT_BAD_OPTION(options.l2_lambda = -1.0f, NN_ERROR_INVALID_ARGUMENT,
                    "L2 lambda -1");
  EXPECT_BAD_OPTION(options.l2_lambda = NAN, NN_ERROR_INVALID_ARGUMENT,
                    "L2 lambda nan");
  EXPECT_BAD_OPTION(options.decay_rate = -0.5f, NN_ERROR_INVALID_ARGUMENT,
                    "decay rate -0.5");
  EXPECT_BAD_OPTION(options.validation_fraction = -0.25,
                    NN_ERROR_INVALID_ARGUMENT, "validation fraction -0.25");
  EXPECT_BAD_OPTION(options.validation_fraction = 1.0,
                    NN_ERROR_INVALID_ARGUMENT, "outside [0, 1)");
  EXPECT_BAD_OPTION(options.validation_fraction = NAN,
                    NN_ERROR_INVALID_ARGUMENT, "validation fraction nan");
  /* 0.1 of 4 examples rounds to none held out; 0.9 to none left. */
  EXPECT_BAD_OPTION(options.validation_fraction = 0.1,
                    NN_ERROR_INVALID_ARGUMENT, "0 for validation");
  EXPECT_BAD_OPTION(options.validation_fraction = 0.9,
                    NN_ERROR_INVALID_ARGUMENT, "0 for training");
  EXPECT_BAD_OPTION(options.early_stopping_patience = 3,
                    NN_ERROR_INVALID_ARGUMENT,
                    "early stopping needs a validation split");
  EXPECT_BAD_OPTION(options.optimizer.kind = (nn_optimizer)9,
                    NN_ERROR_INVALID_ARGUMENT, "unknown optimizer 9");
  EXPECT_BAD_OPTION(options.optimizer.beta1 = 1.0f, NN_ERROR_INVALID_ARGUMENT,
                    "beta1 = 1");
  EXPECT_BAD_OPTION(options.optimizer.beta2 = -0.1f, NN_ERROR_INVALID_ARGUMENT,
                    "beta2 = -0.1");
  EXPECT_BAD_OPTION(options.optimizer.epsilon = 0.0f, NN_ERROR_INVALID_ARGUMENT,
                    "epsilon");
#undef EXPECT_BAD_OPTION

  expect_parameters(ctx, model, before, "refused training changes nothing");
  free(before);
  nn_dataset_destroy(data);
  nn_model_destroy(model);
  nn_context_destroy(ctx);
}

Test(bad_input, train_rejects_targets_that_do_not_fit_the_loss) {
  nn_context *ctx = support_cpu_context();
  nn_train_options options = quick_options();

  /* Binary cross-entropy: targets in [0, 1]. */
  nn_model *binary = small_classifier(ctx);
  const float outside[] = {0, 1, 2, 0};
  nn_dataset *data = NULL;
  SUPPORT_OK(ctx, nn_dataset_create(ctx, 2, 1, 4, xor_x, outside, &data));
  EXPECT_FAILURE(ctx, NN_ERROR_INVALID_DATA, "nn_model_train",
                 "Y[row 0, example 2] = 2",
                 nn_model_train(binary, data, &options, NULL));
  nn_metrics metrics;
  EXPECT_FAILURE(ctx, NN_ERROR_INVALID_DATA, "nn_model_evaluate", "example 2",
                 nn_model_evaluate(binary, data, &metrics));
  nn_dataset_destroy(data);

  /* Categorical cross-entropy: each column a distribution. */
  const size_t widths[] = {2, 3};
  nn_model *softmax = support_model(ctx, widths, 1, NN_ACTIVATION_LINEAR,
                                    NN_LOSS_CATEGORICAL_CROSS_ENTROPY);
  const float two_hot[] = {1, 0, 0, 0, 1, 0, 1, 1, 0, 0, 0, 1};
  SUPPORT_OK(ctx, nn_dataset_create(ctx, 2, 3, 4, xor_x, two_hot, &data));
  EXPECT_FAILURE(ctx, NN_ERROR_INVALID_DATA, "nn_model_train",
                 "targets of example 2 sum to 2",
                 nn_model_train(softmax, data, &options, NULL));
  nn_dataset_destroy(data);
  /* A soft distribution is accepted. */
  const float soft[] = {1, 0, 0, 0.5f, 0.5f, 0, 0, 0.25f, 0.75f, 0, 0, 1};
  SUPPORT_OK(ctx, nn_dataset_create(ctx, 2, 3, 4, xor_x, soft, &data));
  SUPPORT_OK(ctx, nn_model_train(softmax, data, &options, NULL));
  nn_dataset_destroy(data);

  nn_model_destroy(binary);
  nn_model_destroy(softmax);
  nn_context_destroy(ctx);
}

/* A learning rate of 1e6 on squared error with large inputs overflows
 * float within a few updates: NN_ERROR_NUMERIC, and the parameters are
 * those from before training. */
Test(bad_input, divergent_training_fails_and_restores_parameters) {
  enum { m = 16 };
  nn_context *ctx = support_cpu_context();
  const size_t widths[] = {1, 8, 1};
  nn_model *model = support_model(ctx, widths, 2, NN_ACTIVATION_RELU,
                                  NN_LOSS_MEAN_SQUARED_ERROR);
  SUPPORT_OK(ctx, nn_model_init(model, NN_INIT_HE, 3));
  float x[m], y[m];
  for (int j = 0; j < m; j++) {
    x[j] = 100.0f + j;
    y[j] = 1000.0f * x[j];
  }
  nn_dataset *data = NULL;
  SUPPORT_OK(ctx, nn_dataset_create(ctx, 1, 1, m, x, y, &data));
  float *before = parameters_of(ctx, model);
  nn_train_options options = quick_options();
  options.learning_rate = 1e6f;
  options.epochs = 100;
  nn_train_summary summary;
  EXPECT_FAILURE(ctx, NN_ERROR_NUMERIC, "nn_model_train", "the cost became",
                 nn_model_train(model, data, &options, &summary));
  cr_assert_lt(summary.iterations_run, 100);
  expect_parameters(ctx, model, before,
                    "a diverged run must restore the parameters");
  /* The model is still usable. */
  options.learning_rate = 1e-9f;
  options.epochs = 1;
  SUPPORT_OK(ctx, nn_model_train(model, data, &options, NULL));
  free(before);
  nn_dataset_destroy(data);
  nn_model_destroy(model);
  nn_context_destroy(ctx);
}

/* ------------------------------------------------------------------------ */
/* The single-batch steps out of order                                       */
/* ------------------------------------------------------------------------ */

Test(bad_input, steps_out_of_order) {
  nn_context *ctx = support_cpu_context();
  nn_model *model = small_classifier(ctx);
  nn_optimizer_settings gd = {NN_OPTIMIZER_GD, 0.9f, 0.999f, 1e-8f};
  float cost = 0.0f, dw[6];

  EXPECT_FAILURE(ctx, NN_ERROR_STATE, "nn_model_cost", "nn_model_forward",
                 nn_model_cost(model, xor_y, 4, 0.0f, &cost));
  EXPECT_FAILURE(ctx, NN_ERROR_STATE, "nn_model_backward", "nn_model_forward",
                 nn_model_backward(model, xor_y, 4, 0.0f));
  EXPECT_FAILURE(ctx, NN_ERROR_STATE, "nn_model_update", "nn_model_backward",
                 nn_model_update(model, &gd, 0.1f));
  EXPECT_FAILURE(ctx, NN_ERROR_STATE, "nn_model_get_layer_gradients",
                 "backward", nn_model_get_layer_gradients(model, 1, dw, NULL));

  SUPPORT_OK(ctx, nn_model_forward(model, xor_x, 4, 1, NULL));
  EXPECT_FAILURE(ctx, NN_ERROR_SHAPE_MISMATCH, "nn_model_cost",
                 "y has 3 examples but the forward pass had 4",
                 nn_model_cost(model, xor_y, 3, 0.0f, &cost));
  EXPECT_FAILURE(ctx, NN_ERROR_SHAPE_MISMATCH, "nn_model_backward",
                 "y has 2 examples", nn_model_backward(model, xor_y, 2, 0.0f));
  EXPECT_FAILURE(ctx, NN_ERROR_INVALID_ARGUMENT, "nn_model_cost",
                 "cost is NULL", nn_model_cost(model, xor_y, 4, 0.0f, NULL));
  EXPECT_FAILURE(ctx, NN_ERROR_INVALID_ARGUMENT, "nn_model_cost",
                 "L2 lambda must be >= 0",
                 nn_model_cost(model, xor_y, 4, -1.0f, &cost));
  EXPECT_FAILURE(ctx, NN_ERROR_INVALID_ARGUMENT, "nn_model_backward",
                 "y is NULL", nn_model_backward(model, NULL, 4, 0.0f));
  const float bad_y[] = {0, 1, 1.5f, 0};
  EXPECT_FAILURE(ctx, NN_ERROR_INVALID_DATA, "nn_model_backward",
                 "Y[row 0, example 2] = 1.5",
                 nn_model_backward(model, bad_y, 4, 0.0f));
  /* The forward pass survives refused calls; update still needs backward. */
  SUPPORT_OK(ctx, nn_model_cost(model, xor_y, 4, 0.0f, &cost));
  EXPECT_FAILURE(ctx, NN_ERROR_STATE, "nn_model_update", "nn_model_backward",
                 nn_model_update(model, &gd, 0.1f));
  SUPPORT_OK(ctx, nn_model_backward(model, xor_y, 4, 0.0f));
  EXPECT_FAILURE(ctx, NN_ERROR_INVALID_ARGUMENT, "nn_model_update",
                 "learning rate", nn_model_update(model, &gd, NAN));
  EXPECT_FAILURE(ctx, NN_ERROR_INVALID_ARGUMENT, "nn_model_update",
                 "optimizer settings are NULL",
                 nn_model_update(model, NULL, 0.1f));
  SUPPORT_OK(ctx, nn_model_update(model, &gd, 0.1f));

  /* An update consumes the pass: backward and a second update need a new
   * forward pass. */
  EXPECT_FAILURE(ctx, NN_ERROR_STATE, "nn_model_update", "nn_model_backward",
                 nn_model_update(model, &gd, 0.1f));
  EXPECT_FAILURE(ctx, NN_ERROR_STATE, "nn_model_backward", "nn_model_forward",
                 nn_model_backward(model, xor_y, 4, 0.0f));

  /* New parameters invalidate a forward pass. */
  SUPPORT_OK(ctx, nn_model_forward(model, xor_x, 4, 1, NULL));
  SUPPORT_OK(ctx, nn_model_init(model, NN_INIT_HE, 2));
  EXPECT_FAILURE(ctx, NN_ERROR_STATE, "nn_model_cost", "nn_model_forward",
                 nn_model_cost(model, xor_y, 4, 0.0f, &cost));

  EXPECT_FAILURE(ctx, NN_ERROR_INVALID_ARGUMENT, "nn_model_forward",
                 "x is NULL", nn_model_forward(model, NULL, 4, 0, NULL));
  EXPECT_FAILURE(ctx, NN_ERROR_SHAPE_MISMATCH, "nn_model_forward", "m = 0",
                 nn_model_forward(model, xor_x, 0, 0, NULL));
  nn_model_destroy(model);
  nn_context_destroy(ctx);
}

/* ------------------------------------------------------------------------ */
/* Parameters and prediction                                                 */
/* ------------------------------------------------------------------------ */

Test(bad_input, layer_parameter_exchange) {
  nn_context *ctx = support_cpu_context();
  nn_model *model = small_classifier(ctx); /* 2-3-1: 13 parameters */
  float weights[6] = {1, 2, 3, 4, 5, 6}, bias[3] = {0, 0, 0};
  const char *get = "nn_model_get_layer_parameters";
  const char *set = "nn_model_set_layer_parameters";
  EXPECT_FAILURE(ctx, NN_ERROR_INVALID_ARGUMENT, get, "layer 0 is outside 1..2",
                 nn_model_get_layer_parameters(model, 0, weights, bias));
  EXPECT_FAILURE(ctx, NN_ERROR_INVALID_ARGUMENT, get, "layer 3 is outside 1..2",
                 nn_model_get_layer_parameters(model, 3, weights, bias));
  EXPECT_FAILURE(ctx, NN_ERROR_INVALID_ARGUMENT, set, "layer 0 is outside 1..2",
                 nn_model_set_layer_parameters(model, 0, weights, bias));
  EXPECT_FAILURE(ctx, NN_ERROR_INVALID_ARGUMENT, set, "layer 3 is outside 1..2",
                 nn_model_set_layer_parameters(model, 3, weights, bias));
  EXPECT_FAILURE(ctx, NN_ERROR_INVALID_ARGUMENT, "nn_model_get_layer_gradients",
                 "layer 9",
                 nn_model_get_layer_gradients(model, 9, weights, bias));

  /* Non-finite values are refused and nothing is written, not even the
   * valid tensor of the pair. */
  float *before = parameters_of(ctx, model);
  weights[4] = NAN;
  EXPECT_FAILURE(ctx, NN_ERROR_INVALID_DATA, set,
                 "weights of layer 1: element 4 is nan",
                 nn_model_set_layer_parameters(model, 1, weights, bias));
  weights[4] = 5.0f;
  bias[2] = INFINITY;
  EXPECT_FAILURE(ctx, NN_ERROR_INVALID_DATA, set,
                 "bias of layer 1: element 2 is inf",
                 nn_model_set_layer_parameters(model, 1, weights, bias));
  expect_parameters(ctx, model, before, "refused values must not be set");

  size_t count = nn_model_parameter_count(model);
  cr_assert_eq(count, 13);
  float *values = parameters_of(ctx, model);
  EXPECT_FAILURE(ctx, NN_ERROR_SHAPE_MISMATCH, "nn_model_get_parameters",
                 "need a buffer of 13 floats, got 12",
                 nn_model_get_parameters(model, values, count - 1));
  EXPECT_FAILURE(ctx, NN_ERROR_SHAPE_MISMATCH, "nn_model_get_parameters",
                 "(NULL)", nn_model_get_parameters(model, NULL, count));
  EXPECT_FAILURE(ctx, NN_ERROR_SHAPE_MISMATCH, "nn_model_set_parameters",
                 "need 13 floats, got 14",
                 nn_model_set_parameters(model, values, count + 1));
  values[11] = -NAN;
  EXPECT_FAILURE(ctx, NN_ERROR_INVALID_DATA, "nn_model_set_parameters",
                 "parameter 11 is",
                 nn_model_set_parameters(model, values, count));
  expect_parameters(ctx, model, before, "refused values must not be set");
  free(values);
  free(before);
  nn_model_destroy(model);
  nn_context_destroy(ctx);
}

Test(bad_input, prediction_arguments) {
  nn_context *ctx = support_cpu_context();
  const size_t widths[] = {2, 1};
  nn_model *regression = support_model(ctx, widths, 1, NN_ACTIVATION_LINEAR,
                                       NN_LOSS_MEAN_SQUARED_ERROR);
  int32_t classes[4];
  float yhat[4];
  EXPECT_FAILURE(ctx, NN_ERROR_INVALID_ARGUMENT, "nn_model_predict_classes",
                 "regression",
                 nn_model_predict_classes(regression, xor_x, 4, classes));
  SUPPORT_OK(ctx, nn_model_predict(regression, xor_x, 4, yhat));

  nn_model *model = small_classifier(ctx);
  EXPECT_FAILURE(ctx, NN_ERROR_INVALID_ARGUMENT, "nn_model_predict",
                 "x is NULL", nn_model_predict(model, NULL, 4, yhat));
  EXPECT_FAILURE(ctx, NN_ERROR_INVALID_ARGUMENT, "nn_model_predict",
                 "output buffer is NULL",
                 nn_model_predict(model, xor_x, 4, NULL));
  EXPECT_FAILURE(ctx, NN_ERROR_SHAPE_MISMATCH, "nn_model_predict", "m = 0",
                 nn_model_predict(model, xor_x, 0, yhat));
  EXPECT_FAILURE(ctx, NN_ERROR_INVALID_ARGUMENT, "nn_model_predict_classes",
                 "output buffer is NULL",
                 nn_model_predict_classes(model, xor_x, 4, NULL));
  EXPECT_FAILURE(ctx, NN_ERROR_SHAPE_MISMATCH, "nn_model_predict_classes",
                 "m = 0", nn_model_predict_classes(model, xor_x, 0, classes));
  nn_model_destroy(regression);
  nn_model_destroy(model);
  nn_context_destroy(ctx);
}

/* ------------------------------------------------------------------------ */
/* NULL handles, names, statuses                                             */
/* ------------------------------------------------------------------------ */

Test(bad_input, null_handles_are_harmless) {
  nn_context_destroy(NULL);
  nn_model_destroy(NULL);
  nn_dataset_destroy(NULL);
  nn_context_clear_error(NULL);
  nn_train_options_default(NULL);
  cr_assert_not_null(nn_context_last_error(NULL));
  cr_assert_not_null(nn_context_notice(NULL));
  cr_assert_not_null(nn_context_backend_name(NULL));
  cr_assert_eq(nn_model_layer_count(NULL), 0);
  cr_assert_eq(nn_model_layer_units(NULL, 0), 0);
  cr_assert_eq(nn_model_parameter_count(NULL), 0);
  cr_assert_eq(nn_dataset_example_count(NULL), 0);
  cr_assert_null(nn_dataset_inputs(NULL));
  float value = 0.0f;
  int32_t label = 0;
  nn_optimizer_settings gd = {NN_OPTIMIZER_GD, 0.9f, 0.999f, 1e-8f};
  cr_assert_eq(nn_model_forward(NULL, &value, 1, 0, NULL),
               NN_ERROR_INVALID_ARGUMENT);
  cr_assert_eq(nn_model_cost(NULL, &value, 1, 0.0f, &value),
               NN_ERROR_INVALID_ARGUMENT);
  cr_assert_eq(nn_model_backward(NULL, &value, 1, 0.0f),
               NN_ERROR_INVALID_ARGUMENT);
  cr_assert_eq(nn_model_update(NULL, &gd, 0.1f), NN_ERROR_INVALID_ARGUMENT);
  cr_assert_eq(nn_model_predict(NULL, &value, 1, &value),
               NN_ERROR_INVALID_ARGUMENT);
  cr_assert_eq(nn_model_predict_classes(NULL, &value, 1, &label),
               NN_ERROR_INVALID_ARGUMENT);
  cr_assert_eq(nn_model_evaluate(NULL, NULL, NULL), NN_ERROR_INVALID_ARGUMENT);
  cr_assert_eq(nn_model_get_parameters(NULL, &value, 1),
               NN_ERROR_INVALID_ARGUMENT);
  cr_assert_eq(nn_model_set_parameters(NULL, &value, 1),
               NN_ERROR_INVALID_ARGUMENT);
  cr_assert_eq(nn_model_reset_optimizer(NULL), NN_ERROR_INVALID_ARGUMENT);
  cr_assert_eq(nn_model_seed_dropout(NULL, 1), NN_ERROR_INVALID_ARGUMENT);
}

Test(bad_input, name_parsers_reject_unknown_names) {
  nn_activation activation = NN_ACTIVATION_GELU;
  nn_loss loss = NN_LOSS_MEAN_SQUARED_ERROR;
  nn_init init = NN_INIT_GLOROT;
  nn_optimizer optimizer = NN_OPTIMIZER_ADAM;
  const char *const unknown[] = {NULL, "", "Relu", "relu ", "sgd", "xavier2"};
  for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
    const char *name = unknown[i];
    cr_assert_eq(nn_activation_from_name(name, &activation),
                 NN_ERROR_INVALID_ARGUMENT, "\"%s\"", name ? name : "NULL");
    cr_assert_eq(nn_loss_from_name(name, &loss), NN_ERROR_INVALID_ARGUMENT);
    cr_assert_eq(nn_init_from_name(name, &init), NN_ERROR_INVALID_ARGUMENT);
    cr_assert_eq(nn_optimizer_from_name(name, &optimizer),
                 NN_ERROR_INVALID_ARGUMENT);
  }
  /* *out is left untouched. */
  cr_assert_eq(activation, NN_ACTIVATION_GELU);
  cr_assert_eq(loss, NN_LOSS_MEAN_SQUARED_ERROR);
  cr_assert_eq(init, NN_INIT_GLOROT);
  cr_assert_eq(optimizer, NN_OPTIMIZER_ADAM);
  cr_assert_eq(nn_activation_from_name("relu", NULL),
               NN_ERROR_INVALID_ARGUMENT);

  /* Every name round-trips; out-of-range values are named "?". */
  for (int a = 0; a < NN_ACTIVATION_COUNT; a++) {
    SUPPORT_OK(NULL, nn_activation_from_name(
                         nn_activation_name((nn_activation)a), &activation));
    cr_assert_eq(activation, (nn_activation)a);
  }
  for (int l = 0; l < NN_LOSS_COUNT; l++) {
    SUPPORT_OK(NULL, nn_loss_from_name(nn_loss_name((nn_loss)l), &loss));
    cr_assert_eq(loss, (nn_loss)l);
  }
  for (int i = 0; i < NN_INIT_COUNT; i++) {
    SUPPORT_OK(NULL, nn_init_from_name(nn_init_name((nn_init)i), &init));
    cr_assert_eq(init, (nn_init)i);
  }
  for (int o = 0; o < NN_OPTIMIZER_COUNT; o++) {
    SUPPORT_OK(NULL, nn_optimizer_from_name(nn_optimizer_name((nn_optimizer)o),
                                            &optimizer));
    cr_assert_eq(optimizer, (nn_optimizer)o);
  }
  cr_assert_str_eq(nn_activation_name(NN_ACTIVATION_COUNT), "?");
  cr_assert_str_eq(nn_activation_name((nn_activation)-1), "?");
  cr_assert_str_eq(nn_loss_name(NN_LOSS_COUNT), "?");
  cr_assert_str_eq(nn_init_name(NN_INIT_COUNT), "?");
  cr_assert_str_eq(nn_optimizer_name(NN_OPTIMIZER_COUNT), "?");
}

Test(bad_input, every_status_has_a_distinct_description) {
  const char *seen[NN_ERROR_STOPPED + 1];
  for (int s = NN_OK; s <= NN_ERROR_STOPPED; s++) {
    seen[s] = nn_status_str((nn_status)s);
    cr_assert_not_null(seen[s]);
    cr_assert_gt(strlen(seen[s]), 0, "status %d", s);
    for (int t = NN_OK; t < s; t++)
      cr_assert_str_neq(seen[s], seen[t], "statuses %d and %d", s, t);
  }
  cr_assert_not_null(nn_status_str((nn_status)1000));
  cr_assert_not_null(nn_status_str((nn_status)-1));
}

/* A failure leaves a message until cleared; success does not erase it. */
Test(bad_input, last_error_lifecycle) {
  nn_context *ctx = support_cpu_context();
  cr_assert_str_eq(nn_context_last_error(ctx), "");
  nn_model *model = NULL;
  cr_assert_eq(nn_model_create(ctx, NULL, &model), NN_ERROR_INVALID_ARGUMENT);
  cr_assert_not_null(strstr(nn_context_last_error(ctx), "[host/model.c:"),
                     "the message ends in file:line: \"%s\"",
                     nn_context_last_error(ctx));
  nn_context_clear_error(ctx);
  cr_assert_str_eq(nn_context_last_error(ctx), "");
  nn_context_destroy(ctx);
}
