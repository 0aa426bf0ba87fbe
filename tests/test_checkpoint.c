/*
 * Checkpoints: save/load round trips (architecture, parameters bit for bit,
 * training settings, resume state, Adam's moments and step), the on-disk
 * layout PyTorch's safetensors expects, files written by other tools, and
 * the atomicity of saving.
 */
#include "checkpoint_support.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <sys/resource.h>

/* 6 -> 5 relu (dropout 0.1) -> 4 tanh -> 3 softmax. */
static nn_model *make_model(nn_context *ctx, uint64_t seed) {
  const nn_layer_spec layers[] = {{5, NN_ACTIVATION_RELU, 0.1f},
                                  {4, NN_ACTIVATION_TANH, 0.0f},
                                  {3, NN_ACTIVATION_SOFTMAX, 0.0f}};
  const nn_model_spec spec = {6, 3, layers, NN_LOSS_CATEGORICAL_CROSS_ENTROPY};
  nn_model *model = NULL;
  SUPPORT_OK(ctx, nn_model_create(ctx, &spec, &model));
  SUPPORT_OK(ctx, nn_model_init(model, NN_INIT_HE, seed));
  return model;
}

static float *parameters_of(nn_context *ctx, const nn_model *model) {
  size_t count = nn_model_parameter_count(model);
  float *values = malloc(count * sizeof *values);
  cr_assert_not_null(values);
  SUPPORT_OK(ctx, nn_model_get_parameters(model, values, count));
  return values;
}

static void assert_same_parameters(nn_context *ctx, const nn_model *a,
                                   const nn_model *b) {
  size_t count = nn_model_parameter_count(a);
  cr_assert_eq(nn_model_parameter_count(b), count);
  float *x = parameters_of(ctx, a), *y = parameters_of(ctx, b);
  cr_assert_eq(memcmp(x, y, count * sizeof *x), 0,
               "parameters differ after the round trip");
  free(x);
  free(y);
}

/* x (6 × m) from a fixed stream, y one-hot of 3 classes. */
static void make_batch(float *x, float *y, size_t m) {
  support_rng rng = support_rng_seeded(11);
  for (size_t i = 0; i < 6 * m; i++)
    x[i] = (float)support_rng_gaussian(&rng);
  memset(y, 0, 3 * m * sizeof *y);
  for (size_t j = 0; j < m; j++)
    y[3 * j + j % 3] = 1.0f;
}

Test(checkpoint, round_trip_keeps_architecture_and_parameters) {
  nn_context *ctx = support_cpu_context();
  char *dir = st_temp_dir(), *path = st_join(dir, "model.safetensors");
  nn_model *model = make_model(ctx, 7);
  SUPPORT_OK(ctx, nn_model_save(model, path, NULL, NULL));

  nn_model *loaded = NULL;
  nn_train_options options;
  memset(&options, 0xAB, sizeof options);
  const nn_train_options untouched = options;
  int has_state = -1;
  SUPPORT_OK(ctx,
             nn_model_load(ctx, path, &loaded, &options, NULL, &has_state));
  cr_assert_eq(has_state, 0);
  cr_assert_eq(memcmp(&options, &untouched, sizeof options), 0,
               "options were written although the file has none");
  cr_assert_eq(nn_model_layer_count(loaded), 3);
  cr_assert_eq(nn_model_loss(loaded), NN_LOSS_CATEGORICAL_CROSS_ENTROPY);
  for (size_t l = 0; l <= 3; l++)
    cr_assert_eq(nn_model_layer_units(loaded, l),
                 nn_model_layer_units(model, l));
  for (size_t l = 1; l <= 3; l++) {
    cr_assert_eq(nn_model_layer_activation(loaded, l),
                 nn_model_layer_activation(model, l));
    cr_assert_eq(nn_model_layer_dropout(loaded, l),
                 nn_model_layer_dropout(model, l));
  }
  assert_same_parameters(ctx, model, loaded);

  enum { m = 10 };
  float x[6 * m], y[3 * m], a[3 * m], b[3 * m];
  make_batch(x, y, m);
  SUPPORT_OK(ctx, nn_model_predict(model, x, m, a));
  SUPPORT_OK(ctx, nn_model_predict(loaded, x, m, b));
  cr_assert_eq(memcmp(a, b, sizeof a), 0, "predictions differ after load");

  nn_model_destroy(loaded);
  nn_model_destroy(model);
  free(path);
  st_remove_tree(dir);
  nn_context_destroy(ctx);
}

static void assert_same_float(float a, float b, const char *what) {
  cr_assert_eq(memcmp(&a, &b, sizeof a), 0, "%s: %.9g != %.9g", what, (double)a,
               (double)b);
}

static void assert_same_double(double a, double b, const char *what) {
  cr_assert(memcmp(&a, &b, sizeof a) == 0 || (isnan(a) && isnan(b)),
            "%s: %.17g != %.17g", what, a, b);
}

static void assert_same_options(const nn_train_options *a,
                                const nn_train_options *b) {
  cr_assert_eq(a->optimizer.kind, b->optimizer.kind);
  assert_same_float(a->optimizer.beta1, b->optimizer.beta1, "beta1");
  assert_same_float(a->optimizer.beta2, b->optimizer.beta2, "beta2");
  assert_same_float(a->optimizer.epsilon, b->optimizer.epsilon, "epsilon");
  assert_same_float(a->learning_rate, b->learning_rate, "learning_rate");
  assert_same_float(a->decay_rate, b->decay_rate, "decay_rate");
  assert_same_float(a->l2_lambda, b->l2_lambda, "l2_lambda");
  cr_assert_eq(a->batch_size, b->batch_size);
  cr_assert_eq(a->epochs, b->epochs);
  cr_assert_eq(a->seed, b->seed, "seed %llu != %llu",
               (unsigned long long)a->seed, (unsigned long long)b->seed);
  assert_same_double(a->validation_fraction, b->validation_fraction,
                     "validation_fraction");
  cr_assert_eq(a->early_stopping_patience, b->early_stopping_patience);
  cr_assert_eq(a->iteration_report_every, b->iteration_report_every);
  cr_assert_eq(a->max_iterations, b->max_iterations);
}

static void assert_same_state(const nn_train_state *a,
                              const nn_train_state *b) {
  cr_assert_eq(a->epoch, b->epoch);
  cr_assert_eq(a->batch, b->batch);
  cr_assert_eq(a->iteration, b->iteration);
  assert_same_double(a->epoch_cost_sum, b->epoch_cost_sum, "epoch_cost_sum");
  assert_same_double(a->best_validation_cost, b->best_validation_cost,
                     "best_validation_cost");
  cr_assert_eq(a->best_epoch, b->best_epoch);
}

static int stop_never(const nn_progress *progress, void *user_data) {
  (void)progress;
  (void)user_data;
  return 0;
}

/* Values chosen to need every digit: floats and doubles that are not short
 * decimals, a seed above 2^53, a NaN best cost. */
static void unusual_settings(nn_train_options *options, nn_train_state *state) {
  nn_train_options_default(options);
  options->optimizer = (nn_optimizer_settings){NN_OPTIMIZER_ADAM, 0.85f,
                                               0.9995f, 1.17549435e-38f};
  options->learning_rate = 0.0123456789f;
  options->decay_rate = 1.0f / 3.0f;
  options->l2_lambda = 7e-4f;
  options->batch_size = 33;
  options->epochs = 12;
  options->seed = UINT64_MAX - 2;
  options->validation_fraction = 0.1 + 0.2;
  options->early_stopping_patience = 4;
  options->iteration_report_every = 9;
  options->max_iterations = 1234;
  options->callback = stop_never;
  *state = (nn_train_state){3, 2, 41, 1.0 / 7.0, NAN, 1};
}

Test(checkpoint, round_trip_keeps_options_and_state) {
  nn_context *ctx = support_cpu_context();
  char *dir = st_temp_dir(), *path = st_join(dir, "model.safetensors");
  nn_model *model = make_model(ctx, 3);
  nn_train_options options;
  nn_train_state state;
  unusual_settings(&options, &state);
  for (int round = 0; round < 2; round++) {
    if (round == 1) /* a finite best cost that needs 17 digits */
      state.best_validation_cost = 0.1 + 0.2;
    SUPPORT_OK(ctx, nn_model_save(model, path, &options, &state));
    nn_model *loaded = NULL;
    nn_train_options read_options;
    nn_train_state read_state;
    int has_state = 0;
    SUPPORT_OK(ctx, nn_model_load(ctx, path, &loaded, &read_options,
                                  &read_state, &has_state));
    cr_assert_eq(has_state, 1);
    assert_same_options(&options, &read_options);
    cr_assert_null(read_options.callback);
    cr_assert_null(read_options.callback_user_data);
    cr_assert_null(read_options.resume);
    assert_same_state(&state, &read_state);
    assert_same_parameters(ctx, model, loaded);
    nn_model_destroy(loaded);
  }
  nn_model_destroy(model);
  free(path);
  st_remove_tree(dir);
  nn_context_destroy(ctx);
}

static void adam_step(nn_context *ctx, nn_model *model, const float *x,
                      const float *y, size_t m) {
  const nn_optimizer_settings adam = {NN_OPTIMIZER_ADAM, 0.9f, 0.999f, 1e-8f};
  SUPPORT_OK(ctx, nn_model_forward(model, x, m, 1, NULL));
  SUPPORT_OK(ctx, nn_model_backward(model, y, m, 0.01f));
  SUPPORT_OK(ctx, nn_model_update(model, &adam, 0.01f));
}

/* Three Adam steps, save with a state, load; one more step on each must
 * agree bit for bit (the moments and t were restored), and differ from a
 * model loaded without its optimizer state. */
Test(checkpoint, resumed_adam_continues_bit_exactly) {
  nn_context *ctx = support_cpu_context();
  char *dir = st_temp_dir(), *path = st_join(dir, "resume.safetensors");
  enum { m = 12 };
  float x[6 * m], y[3 * m];
  make_batch(x, y, m);
  nn_model *model = make_model(ctx, 5);
  SUPPORT_OK(ctx, nn_model_seed_dropout(model, 1));
  for (int step = 0; step < 3; step++)
    adam_step(ctx, model, x, y, m);
  nn_train_options options;
  nn_train_state state;
  unusual_settings(&options, &state);
  SUPPORT_OK(ctx, nn_model_save(model, path, &options, &state));

  nn_model *resumed = NULL, *fresh = NULL;
  nn_train_state read_state;
  SUPPORT_OK(ctx, nn_model_load(ctx, path, &resumed, NULL, &read_state, NULL));
  SUPPORT_OK(ctx, nn_model_load(ctx, path, &fresh, NULL, NULL, NULL));
  nn_model *models[] = {model, resumed, fresh};
  for (int i = 0; i < 3; i++) {
    SUPPORT_OK(ctx, nn_model_seed_dropout(models[i], 99));
    adam_step(ctx, models[i], x, y, m);
  }
  assert_same_parameters(ctx, model, resumed);
  size_t count = nn_model_parameter_count(model);
  float *a = parameters_of(ctx, model), *b = parameters_of(ctx, fresh);
  cr_assert_neq(memcmp(a, b, count * sizeof *a), 0,
                "a model without its moments took the same step");
  free(a);
  free(b);
  for (int i = 0; i < 3; i++)
    nn_model_destroy(models[i]);
  free(path);
  st_remove_tree(dir);
  nn_context_destroy(ctx);
}

/* ------------------------------------------------------------------------ */
/* The file as PyTorch's safetensors reads it                                */
/* ------------------------------------------------------------------------ */

static const cJSON *tensor_entry(const cJSON *header, const char *name,
                                 size_t n_out, size_t n_in) {
  const cJSON *entry = cJSON_GetObjectItemCaseSensitive(header, name);
  cr_assert(cJSON_IsObject(entry), "no tensor %s", name);
  const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(entry, "dtype");
  cr_assert_str_eq(cJSON_GetStringValue(dtype), "F32");
  const cJSON *shape = cJSON_GetObjectItemCaseSensitive(entry, "shape");
  cr_assert_eq(cJSON_GetArraySize(shape), n_in ? 2 : 1, "%s rank", name);
  cr_assert_eq(cJSON_GetArrayItem(shape, 0)->valuedouble, (double)n_out);
  if (n_in)
    cr_assert_eq(cJSON_GetArrayItem(shape, 1)->valuedouble, (double)n_in);
  return entry;
}

/* [begin, end) of a tensor, checked to be n floats inside the buffer. */
static void tensor_range(const cJSON *entry, size_t n, size_t data_size,
                         size_t *begin, size_t *end) {
  const cJSON *offsets =
      cJSON_GetObjectItemCaseSensitive(entry, "data_offsets");
  cr_assert_eq(cJSON_GetArraySize(offsets), 2);
  *begin = (size_t)cJSON_GetArrayItem(offsets, 0)->valuedouble;
  *end = (size_t)cJSON_GetArrayItem(offsets, 1)->valuedouble;
  cr_assert_eq(*end - *begin, n * sizeof(float));
  cr_assert_leq(*end, data_size);
}

static void check_architecture(const cJSON *metadata) {
  const char *text = cJSON_GetStringValue(
      cJSON_GetObjectItemCaseSensitive(metadata, "architecture"));
  cr_assert_not_null(text);
  cJSON *architecture = cJSON_Parse(text);
  cr_assert_not_null(architecture, "architecture is not JSON: %s", text);
  cr_assert_eq(cJSON_GetObjectItemCaseSensitive(architecture, "input_width")
                   ->valuedouble,
               6.0);
  const cJSON *layers =
      cJSON_GetObjectItemCaseSensitive(architecture, "layers");
  cr_assert_eq(cJSON_GetArraySize(layers), 3);
  const cJSON *first = cJSON_GetArrayItem(layers, 0);
  cr_assert_eq(cJSON_GetObjectItemCaseSensitive(first, "units")->valuedouble,
               5.0);
  cr_assert_str_eq(cJSON_GetStringValue(
                       cJSON_GetObjectItemCaseSensitive(first, "activation")),
                   "relu");
  cr_assert_str_eq(cJSON_GetStringValue(
                       cJSON_GetObjectItemCaseSensitive(architecture, "loss")),
                   "categorical_cross_entropy");
  cJSON_Delete(architecture);
}

Test(checkpoint, file_layout_is_what_pytorch_expects) {
  cr_assert_eq(*(const uint16_t *)"\x01\x00", 1,
               "this test assumes a "
               "little-endian host");
  nn_context *ctx = support_cpu_context();
  char *dir = st_temp_dir(), *path = st_join(dir, "layout.safetensors");
  nn_model *model = make_model(ctx, 9);
  nn_train_state state = {0, 0, 0, 0.0, NAN, 0};
  SUPPORT_OK(ctx, nn_model_save(model, path, NULL, &state));
  size_t size = 0;
  unsigned char *bytes = support_read_file(path, &size);
  cr_assert_geq(size, 8);
  const uint64_t n = st_load_u64(bytes);
  cr_assert_eq(n % 8, 0, "header length %llu is not padded to 8",
               (unsigned long long)n);
  cr_assert_leq(n, size - 8);
  const size_t data_size = size - 8 - (size_t)n;
  const unsigned char *data = bytes + 8 + n;
  cJSON *header = cJSON_ParseWithLength((const char *)bytes + 8, (size_t)n);
  cr_assert(cJSON_IsObject(header), "the header is not a JSON object");

  const cJSON *metadata =
      cJSON_GetObjectItemCaseSensitive(header, "__metadata__");
  cr_assert_str_eq(cJSON_GetStringValue(
                       cJSON_GetObjectItemCaseSensitive(metadata, "format")),
                   "nn-checkpoint");
  for (const cJSON *item = metadata->child; item; item = item->next)
    cr_assert(cJSON_IsString(item), "metadata %s is not a string",
              item->string);
  check_architecture(metadata);

  /* Tensors tile the data buffer in file order: layers, then moments. */
  size_t expected_begin = 0, begin = 0, end = 0;
  for (size_t l = 0; l < 3; l++) {
    const size_t n_out = nn_model_layer_units(model, l + 1);
    const size_t n_in = nn_model_layer_units(model, l);
    char name[32];
    snprintf(name, sizeof name, "layers.%zu.weight", l);
    tensor_range(tensor_entry(header, name, n_out, n_in), n_out * n_in,
                 data_size, &begin, &end);
    cr_assert_eq(begin, expected_begin);
    float *weights = malloc(n_out * n_in * sizeof *weights);
    float *bias = malloc(n_out * sizeof *bias);
    SUPPORT_OK(ctx, nn_model_get_layer_parameters(model, l + 1, weights, bias));
    cr_assert_eq(memcmp(data + begin, weights, end - begin), 0,
                 "%s is not the row-major [n_out, n_in] W", name);
    snprintf(name, sizeof name, "layers.%zu.bias", l);
    tensor_range(tensor_entry(header, name, n_out, 0), n_out, data_size, &begin,
                 &expected_begin);
    cr_assert_eq(begin, end);
    cr_assert_eq(memcmp(data + begin, bias, n_out * sizeof *bias), 0);
    free(weights);
    free(bias);
  }
  /* The model never stepped, so it has no moments yet (they are made when
   * an optimizer first needs them): the file holds them as zeros. */
  const size_t count = nn_model_parameter_count(model);
  const char *const moments[2] = {"optimizer.first_moment",
                                  "optimizer.second_moment"};
  for (size_t k = 0; k < 2; k++) {
    tensor_range(tensor_entry(header, moments[k], count, 0), count, data_size,
                 &begin, &end);
    cr_assert_eq(begin, expected_begin, "%s out of place", moments[k]);
    for (size_t b = begin; b < end; b++)
      cr_assert_eq(data[b], 0, "%s byte %zu is not zero", moments[k],
                   b - begin);
    expected_begin = end;
  }
  cr_assert_eq(end, data_size, "the tensors do not end the file");
  cr_assert_eq(cJSON_GetArraySize(header), 3 * 2 + 2 + 1);

  cJSON_Delete(header);
  free(bytes);
  nn_model_destroy(model);
  free(path);
  st_remove_tree(dir);
  nn_context_destroy(ctx);
}

/* ------------------------------------------------------------------------ */
/* Files from other writers                                                  */
/* ------------------------------------------------------------------------ */

static uint16_t half_bits(float value) {
  /* Exact for the values used here: normal halves with short mantissas. */
  uint32_t bits;
  memcpy(&bits, &value, sizeof bits);
  uint32_t sign = (bits >> 16) & 0x8000u;
  int exponent = (int)((bits >> 23) & 0xFF) - 127 + 15;
  return (uint16_t)(sign | (uint32_t)exponent << 10 | (bits >> 13 & 0x3FFu));
}

/* What numpy/PyTorch would write for a 3 -> 4 tanh -> 2 softmax model: no
 * metadata, tensors in the reverse order in the buffer, F64 weights, an F32
 * and an F16 bias, and an unrelated I64 tensor that must be ignored. */
Test(checkpoint, numpy_style_file_loads_into_a_model) {
  nn_context *ctx = support_cpu_context();
  char *dir = st_temp_dir(), *path = st_join(dir, "numpy.safetensors");
  double w0[4][3], w1[2][4];
  float b0[4] = {0.5f, -0.25f, 1.5f, -2.0f};
  uint16_t b1[2] = {half_bits(0.75f), half_bits(-1.125f)};
  int64_t steps[1] = {1234};
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < 3; j++)
      w0[i][j] = 0.1 * (i * 3 + j) - 0.55;
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 4; j++)
      w1[i][j] = 1.0 / (1 + i * 4 + j);
  const st_tensor tensors[] = {
      {"layers.0.weight", "F64", 2, {4, 3}, w0, sizeof w0},
      {"layers.0.bias", "F32", 1, {4, 0}, b0, sizeof b0},
      {"layers.1.weight", "F64", 2, {2, 4}, w1, sizeof w1},
      {"layers.1.bias", "F16", 1, {2, 0}, b1, sizeof b1},
      {"num_batches_tracked", "I64", 0, {0, 0}, steps, sizeof steps}};
  st_write_file(path, NULL, tensors, 5, 1);

  const size_t widths[] = {3, 4, 2};
  nn_model *model = support_model(ctx, widths, 2, NN_ACTIVATION_TANH,
                                  NN_LOSS_CATEGORICAL_CROSS_ENTROPY);
  SUPPORT_OK(ctx, nn_model_load_parameters(model, path));
  float weights[12], bias[4];
  SUPPORT_OK(ctx, nn_model_get_layer_parameters(model, 1, weights, bias));
  for (int k = 0; k < 12; k++)
    cr_assert_eq(weights[k], (float)w0[k / 3][k % 3], "W[1] element %d", k);
  cr_assert_eq(memcmp(bias, b0, sizeof b0), 0);
  SUPPORT_OK(ctx, nn_model_get_layer_parameters(model, 2, weights, bias));
  for (int k = 0; k < 8; k++)
    cr_assert_eq(weights[k], (float)w1[k / 4][k % 4], "W[2] element %d", k);
  cr_assert_eq(bias[0], 0.75f);
  cr_assert_eq(bias[1], -1.125f);
  nn_model_destroy(model);
  free(path);
  st_remove_tree(dir);
  nn_context_destroy(ctx);
}

/* A checkpoint's parameters load into a model built separately. */
Test(checkpoint, load_parameters_reads_a_checkpoint) {
  nn_context *ctx = support_cpu_context();
  char *dir = st_temp_dir(), *path = st_join(dir, "model.safetensors");
  nn_model *model = make_model(ctx, 21), *other = make_model(ctx, 22);
  SUPPORT_OK(ctx, nn_model_save(model, path, NULL, NULL));
  SUPPORT_OK(ctx, nn_model_load_parameters(other, path));
  assert_same_parameters(ctx, model, other);
  nn_model_destroy(model);
  nn_model_destroy(other);
  free(path);
  st_remove_tree(dir);
  nn_context_destroy(ctx);
}

/* ------------------------------------------------------------------------ */
/* Atomic saves                                                              */
/* ------------------------------------------------------------------------ */

Test(checkpoint, save_into_a_missing_directory_fails_with_io) {
  nn_context *ctx = support_cpu_context();
  char *dir = st_temp_dir(), *path = st_join(dir, "absent/model.safetensors");
  nn_model *model = make_model(ctx, 1);
  ST_EXPECT_ERROR(ctx, nn_model_save(model, path, NULL, NULL), NN_ERROR_IO,
                  "nn_model_save", path, strerror(ENOENT));
  cr_assert_eq(st_count_entries(dir), 0);
  nn_model_destroy(model);
  free(path);
  st_remove_tree(dir);
  nn_context_destroy(ctx);
}

/* A model too large for the file-size limit: the write fails half-way. */
static nn_model *large_model(nn_context *ctx) {
  const size_t widths[] = {200, 200, 2};
  return support_model(ctx, widths, 2, NN_ACTIVATION_RELU,
                       NN_LOSS_CATEGORICAL_CROSS_ENTROPY);
}

Test(checkpoint, a_failed_write_leaves_the_old_file_intact) {
  nn_context *ctx = support_cpu_context();
  char *dir = st_temp_dir(), *path = st_join(dir, "model.safetensors");
  nn_model *small = make_model(ctx, 1), *large = large_model(ctx);
  SUPPORT_OK(ctx, nn_model_save(small, path, NULL, NULL));
  size_t old_size = 0, new_size = 0;
  unsigned char *old_bytes = support_read_file(path, &old_size);

  /* RLIMIT_FSIZE makes write() fail with EFBIG even for root. */
  struct rlimit saved, limit;
  cr_assert_eq(getrlimit(RLIMIT_FSIZE, &saved), 0);
  limit = saved;
  limit.rlim_cur = 64 * 1024;
  signal(SIGXFSZ, SIG_IGN);
  cr_assert_eq(setrlimit(RLIMIT_FSIZE, &limit), 0);
  nn_status status = nn_model_save(large, path, NULL, NULL);
  cr_assert_eq(setrlimit(RLIMIT_FSIZE, &saved), 0);
  ST_EXPECT_ERROR(ctx, status, NN_ERROR_IO, path, strerror(EFBIG));

  unsigned char *new_bytes = support_read_file(path, &new_size);
  cr_assert_eq(new_size, old_size);
  cr_assert_eq(memcmp(old_bytes, new_bytes, old_size), 0,
               "the old checkpoint was changed");
  cr_assert_eq(st_count_entries(dir), 1, "a temporary file was left behind");
  free(old_bytes);
  free(new_bytes);
  nn_model_destroy(small);
  nn_model_destroy(large);
  free(path);
  st_remove_tree(dir);
  nn_context_destroy(ctx);
}

/* Without write permission on the directory no temporary file can be made
 * (root is exempt from permissions, so this only runs unprivileged). */
Test(checkpoint, a_read_only_directory_leaves_the_old_file_intact) {
  if (geteuid() == 0)
    cr_skip_test("running as root: directory permissions do not apply");
  nn_context *ctx = support_cpu_context();
  char *dir = st_temp_dir(), *path = st_join(dir, "model.safetensors");
  nn_model *model = make_model(ctx, 1), *other = make_model(ctx, 2);
  SUPPORT_OK(ctx, nn_model_save(model, path, NULL, NULL));
  size_t old_size = 0, new_size = 0;
  unsigned char *old_bytes = support_read_file(path, &old_size);
  cr_assert_eq(chmod(dir, 0555), 0);
  ST_EXPECT_ERROR(ctx, nn_model_save(other, path, NULL, NULL), NN_ERROR_IO,
                  path, "temporary", strerror(EACCES));
  unsigned char *new_bytes = support_read_file(path, &new_size);
  cr_assert_eq(new_size, old_size);
  cr_assert_eq(memcmp(old_bytes, new_bytes, old_size), 0);
  free(old_bytes);
  free(new_bytes);
  nn_model_destroy(model);
  nn_model_destroy(other);
  free(path);
  st_remove_tree(dir);
  nn_context_destroy(ctx);
}

/* The rename fails when the target is a directory: nothing is left. */
Test(checkpoint, a_failed_rename_removes_the_temporary_file) {
  nn_context *ctx = support_cpu_context();
  char *dir = st_temp_dir(), *path = st_join(dir, "model.safetensors");
  cr_assert_eq(mkdir(path, 0700), 0);
  nn_model *model = make_model(ctx, 1);
  ST_EXPECT_ERROR(ctx, nn_model_save(model, path, NULL, NULL), NN_ERROR_IO,
                  path, "rename");
  cr_assert_eq(st_count_entries(dir), 1, "a temporary file was left behind");
  nn_model_destroy(model);
  free(path);
  st_remove_tree(dir);
  nn_context_destroy(ctx);
}

/* Saving twice leaves one file, with the mode open() would give it (and
 * the mode it already had when it existed). */
Test(checkpoint, successful_saves_leave_only_the_file) {
  nn_context *ctx = support_cpu_context();
  char *dir = st_temp_dir(), *path = st_join(dir, "model.safetensors");
  nn_model *model = make_model(ctx, 1);
  umask(022);
  SUPPORT_OK(ctx, nn_model_save(model, path, NULL, NULL));
  SUPPORT_OK(ctx, nn_model_save(model, path, NULL, NULL));
  cr_assert_eq(st_count_entries(dir), 1);
  struct stat info;
  cr_assert_eq(stat(path, &info), 0);
  cr_assert_eq(info.st_mode & 0777, 0644, "mode %o", info.st_mode & 0777);
  cr_assert_eq(chmod(path, 0600), 0);
  SUPPORT_OK(ctx, nn_model_save(model, path, NULL, NULL));
  cr_assert_eq(stat(path, &info), 0);
  cr_assert_eq(info.st_mode & 0777, 0600, "mode %o", info.st_mode & 0777);
  nn_model_destroy(model);
  free(path);
  st_remove_tree(dir);
  nn_context_destroy(ctx);
}
