/*
 * Corrupt, foreign and mismatched checkpoints: each is refused with the
 * right status (NN_ERROR_FORMAT malformed, NN_ERROR_SHAPE_MISMATCH shapes
 * that do not fit, NN_ERROR_IO unreadable, NN_ERROR_INVALID_DATA NaN, ...)
 * and a message naming the file and the tensor or field.
 */
#include "checkpoint_support.h"

#include <errno.h>
#include <math.h>

/* Each test gets a directory and a path in it. */
static nn_context *ctx;
static char *dir, *path;

static void setup(void) {
  ctx = support_cpu_context();
  dir = st_temp_dir();
  path = st_join(dir, "model.safetensors");
}

static void teardown(void) {
  free(path);
  st_remove_tree(dir);
  nn_context_destroy(ctx);
}

TestSuite(checkpoint_errors, .init = setup, .fini = teardown);

/* The tiny model the hand-written checkpoints describe:
 * 2 -> 3 relu -> 1 sigmoid, binary cross-entropy. */
static const char architecture[] =
    "{\"input_width\": 2, \"layers\": [{\"units\": 3, \"activation\": "
    "\"relu\", \"dropout\": 0}, {\"units\": 1, \"activation\": \"sigmoid\", "
    "\"dropout\": 0}], \"loss\": \"binary_cross_entropy\"}";

static float w0[6] = {1, 2, 3, 4, 5, 6}, b0[3] = {0.5f, 0, -0.5f};
static float w1[3] = {-1, 0, 1}, b1[1] = {0.25f};

static nn_model *tiny_model(void) {
  const size_t widths[] = {2, 3, 1};
  return support_model(ctx, widths, 2, NN_ACTIVATION_RELU,
                       NN_LOSS_BINARY_CROSS_ENTROPY);
}

/* The tiny model's four tensors; the first `count` are written. */
static void write_tiny(const char *const *metadata, size_t count) {
  const st_tensor tensors[] = {
      {"layers.0.weight", "F32", 2, {3, 2}, w0, sizeof w0},
      {"layers.0.bias", "F32", 1, {3, 0}, b0, sizeof b0},
      {"layers.1.weight", "F32", 2, {1, 3}, w1, sizeof w1},
      {"layers.1.bias", "F32", 1, {1, 0}, b1, sizeof b1}};
  st_write_file(path, metadata, tensors, count, 0);
}

/* A checkpoint of the tiny model with the given architecture metadata. */
static void write_checkpoint(const char *arch) {
  const char *metadata[] = {"format", "nn-checkpoint", "format_version",
                            "1",      "architecture",  arch,
                            NULL};
  write_tiny(metadata, 4);
}

static nn_status load(void) {
  nn_model *model = (nn_model *)&model; /* must be reset to NULL */
  nn_status status = nn_model_load(ctx, path, &model, NULL, NULL, NULL);
  cr_assert_null(model, "*out is not NULL after a failed load");
  return status;
}

static nn_status load_parameters(void) {
  nn_model *model = tiny_model();
  nn_status status = nn_model_load_parameters(model, path);
  nn_model_destroy(model);
  return status;
}

/* A header given as text, followed by `data_size` zero bytes. */
static void write_header(const char *header, size_t data_size) {
  unsigned char data[64] = {0};
  cr_assert_leq(data_size, sizeof data);
  st_write_raw(path, header, strlen(header), data, data_size);
}

Test(checkpoint_errors, the_hand_written_checkpoint_is_valid) {
  write_checkpoint(architecture);
  nn_model *model = NULL;
  SUPPORT_OK(ctx, nn_model_load(ctx, path, &model, NULL, NULL, NULL));
  float weights[6];
  SUPPORT_OK(ctx, nn_model_get_layer_parameters(model, 1, weights, NULL));
  cr_assert_eq(memcmp(weights, w0, sizeof w0), 0);
  nn_model_destroy(model);
}

/* ------------------------------------------------------------------------ */
/* Unreadable and truncated files                                            */
/* ------------------------------------------------------------------------ */

Test(checkpoint_errors, missing_file_is_io) {
  ST_EXPECT_ERROR(ctx, load(), NN_ERROR_IO, "nn_model_load", path,
                  strerror(ENOENT));
  ST_EXPECT_ERROR(ctx, load_parameters(), NN_ERROR_IO,
                  "nn_model_load_parameters", path, strerror(ENOENT));
}

Test(checkpoint_errors, directory_is_io) {
  cr_assert_eq(mkdir(path, 0700), 0);
  ST_EXPECT_ERROR(ctx, load(), NN_ERROR_IO, path, "not a regular file");
}

Test(checkpoint_errors, shorter_than_eight_bytes) {
  st_write_bytes(path, "\x05\0\0\0\0", 5);
  ST_EXPECT_ERROR(ctx, load(), NN_ERROR_FORMAT, path, "5 bytes");
}

Test(checkpoint_errors, header_length_beyond_the_file) {
  const char header[] = "{}";
  unsigned char bytes[8 + 2] = {200};
  memcpy(bytes + 8, header, 2);
  st_write_bytes(path, bytes, sizeof bytes);
  ST_EXPECT_ERROR(ctx, load(), NN_ERROR_FORMAT, path, "header length 200");
}

Test(checkpoint_errors, huge_header_length) {
  unsigned char bytes[16] = {0, 0, 0, 0, 0, 0, 0, 0x80};
  st_write_bytes(path, bytes, sizeof bytes);
  ST_EXPECT_ERROR(ctx, load_parameters(), NN_ERROR_FORMAT, path,
                  "header length");
}

/* ------------------------------------------------------------------------ */
/* Malformed headers                                                         */
/* ------------------------------------------------------------------------ */

Test(checkpoint_errors, header_not_json) {
  write_header("{\"layers.0.weight\": {", 0);
  ST_EXPECT_ERROR(ctx, load(), NN_ERROR_FORMAT, path, "not valid JSON");
}

Test(checkpoint_errors, garbage_after_the_json) {
  write_header("{} x", 0);
  ST_EXPECT_ERROR(ctx, load(), NN_ERROR_FORMAT, path, "after its JSON");
}

Test(checkpoint_errors, header_not_an_object) {
  write_header("[1, 2, 3]", 0);
  ST_EXPECT_ERROR(ctx, load(), NN_ERROR_FORMAT, path, "not a JSON object");
}

Test(checkpoint_errors, header_not_utf8) {
  write_header("{\"a\xff\": 1}", 0);
  ST_EXPECT_ERROR(ctx, load(), NN_ERROR_FORMAT, path, "UTF-8");
}

Test(checkpoint_errors, header_with_a_nul_byte) {
  st_write_raw(path, "{}\0 ", 4, NULL, 0);
  ST_EXPECT_ERROR(ctx, load(), NN_ERROR_FORMAT, path, "NUL");
}

Test(checkpoint_errors, unknown_dtype) {
  write_header("{\"w\": {\"dtype\": \"F31\", \"shape\": [2], "
               "\"data_offsets\": [0, 8]}}",
               8);
  ST_EXPECT_ERROR(ctx, load(), NN_ERROR_FORMAT, path, "\"w\"", "F31");
}

Test(checkpoint_errors, shape_disagrees_with_offsets) {
  write_header("{\"w\": {\"dtype\": \"F32\", \"shape\": [3], "
               "\"data_offsets\": [0, 8]}}",
               8);
  ST_EXPECT_ERROR(ctx, load(), NN_ERROR_FORMAT, path, "\"w\"", "[3]",
                  "needs 12");
}

Test(checkpoint_errors, negative_or_fractional_shape) {
  write_header("{\"w\": {\"dtype\": \"F32\", \"shape\": [-2], "
               "\"data_offsets\": [0, 8]}}",
               8);
  ST_EXPECT_ERROR(ctx, load(), NN_ERROR_FORMAT, path, "\"w\"", "shape");
  write_header("{\"w\": {\"dtype\": \"F32\", \"shape\": [1.5], "
               "\"data_offsets\": [0, 8]}}",
               8);
  ST_EXPECT_ERROR(ctx, load(), NN_ERROR_FORMAT, path, "\"w\"", "shape");
}

Test(checkpoint_errors, shape_product_overflows) {
  write_header("{\"w\": {\"dtype\": \"F32\", \"shape\": [4294967296, "
               "4294967296, 0], \"data_offsets\": [0, 0]}}",
               0);
  ST_EXPECT_ERROR(ctx, load(), NN_ERROR_FORMAT, path, "\"w\"", "overflows");
}

Test(checkpoint_errors, offsets_past_the_end) {
  write_header("{\"w\": {\"dtype\": \"F32\", \"shape\": [4], "
               "\"data_offsets\": [0, 16]}}",
               8);
  ST_EXPECT_ERROR(ctx, load(), NN_ERROR_FORMAT, path, "\"w\"", "outside");
}

Test(checkpoint_errors, offsets_not_a_pair) {
  write_header("{\"w\": {\"dtype\": \"F32\", \"shape\": [2], "
               "\"data_offsets\": [0]}}",
               8);
  ST_EXPECT_ERROR(ctx, load(), NN_ERROR_FORMAT, path, "\"w\"", "data_offsets");
}

Test(checkpoint_errors, overlapping_tensors) {
  write_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], "
               "\"data_offsets\": [0, 8]}, \"b\": {\"dtype\": \"F32\", "
               "\"shape\": [2], \"data_offsets\": [4, 12]}}",
               12);
  ST_EXPECT_ERROR(ctx, load(), NN_ERROR_FORMAT, path, "\"b\"", "overlaps",
                  "\"a\"");
}

Test(checkpoint_errors, bytes_no_tensor_claims) {
  write_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], "
               "\"data_offsets\": [0, 8]}}",
               12);
  ST_EXPECT_ERROR(ctx, load(), NN_ERROR_FORMAT, path, "cover 8 bytes");
  write_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], "
               "\"data_offsets\": [4, 8]}}",
               8);
  ST_EXPECT_ERROR(ctx, load(), NN_ERROR_FORMAT, path, "[0, 4)");
}

Test(checkpoint_errors, duplicate_tensor_names) {
  write_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], "
               "\"data_offsets\": [0, 4]}, \"a\": {\"dtype\": \"F32\", "
               "\"shape\": [1], \"data_offsets\": [4, 8]}}",
               8);
  ST_EXPECT_ERROR(ctx, load(), NN_ERROR_FORMAT, path, "\"a\"", "more than");
}

Test(checkpoint_errors, metadata_values_must_be_strings) {
  write_header("{\"__metadata__\": {\"format\": 1}}", 0);
  ST_EXPECT_ERROR(ctx, load(), NN_ERROR_FORMAT, path, "__metadata__",
                  "\"format\"", "not a string");
  write_header("{\"__metadata__\": [\"format\"]}", 0);
  ST_EXPECT_ERROR(ctx, load(), NN_ERROR_FORMAT, path, "__metadata__");
}

/* ------------------------------------------------------------------------ */
/* Well-formed files that do not fit                                         */
/* ------------------------------------------------------------------------ */

Test(checkpoint_errors, not_an_nn_checkpoint) {
  write_tiny(NULL, 4);
  ST_EXPECT_ERROR(ctx, load(), NN_ERROR_FORMAT, path, "not an nn checkpoint");
}

Test(checkpoint_errors, newer_format_version) {
  const char *metadata[] = {"format", "nn-checkpoint", "format_version",
                            "2",      "architecture",  architecture,
                            NULL};
  write_tiny(metadata, 4);
  ST_EXPECT_ERROR(ctx, load(), NN_ERROR_UNSUPPORTED, path, "\"2\"");
}

Test(checkpoint_errors, missing_tensor) {
  const char *metadata[] = {"format", "nn-checkpoint", "format_version",
                            "1",      "architecture",  architecture,
                            NULL};
  write_tiny(metadata, 3);
  ST_EXPECT_ERROR(ctx, load(), NN_ERROR_FORMAT, path, "layers.1.bias");
  ST_EXPECT_ERROR(ctx, load_parameters(), NN_ERROR_SHAPE_MISMATCH, path,
                  "layers.1.bias");
}

Test(checkpoint_errors, missing_optimizer_state) {
  const char *metadata[] = {"format",
                            "nn-checkpoint",
                            "format_version",
                            "1",
                            "architecture",
                            architecture,
                            "state",
                            "{\"epoch\": 0, \"batch\": 0, \"iteration\": 0, "
                            "\"epoch_cost_sum\": 0, \"best_validation_cost\": "
                            "null, \"best_epoch\": 0, \"optimizer_step\": 3}",
                            NULL};
  write_tiny(metadata, 4);
  ST_EXPECT_ERROR(ctx, load(), NN_ERROR_FORMAT, path, "optimizer.first_moment");
}

/* The message the header promises, word for word. */
Test(checkpoint_errors, wrong_shape_for_the_model) {
  nn_model *wide = NULL;
  const size_t widths[] = {784, 64, 10};
  wide = support_model(ctx, widths, 2, NN_ACTIVATION_RELU,
                       NN_LOSS_CATEGORICAL_CROSS_ENTROPY);
  SUPPORT_OK(ctx, nn_model_save(wide, path, NULL, NULL));
  nn_model_destroy(wide);
  const size_t other_widths[] = {784, 128, 64, 10};
  nn_model *model = support_model(ctx, other_widths, 3, NN_ACTIVATION_RELU,
                                  NN_LOSS_CATEGORICAL_CROSS_ENTROPY);
  ST_EXPECT_ERROR(ctx, nn_model_load_parameters(model, path),
                  NN_ERROR_SHAPE_MISMATCH, path,
                  "layers.0.weight has shape [64, 784] but the model's layer "
                  "1 is [128, 784]");
  nn_model_destroy(model);

  const size_t second[] = {784, 64, 128, 10};
  model = support_model(ctx, second, 3, NN_ACTIVATION_RELU,
                        NN_LOSS_CATEGORICAL_CROSS_ENTROPY);
  ST_EXPECT_ERROR(ctx, nn_model_load_parameters(model, path),
                  NN_ERROR_SHAPE_MISMATCH, path,
                  "layers.1.weight has shape [10, 64] but the model's layer "
                  "2 is [128, 64]");
  nn_model_destroy(model);
}

Test(checkpoint_errors, tensor_disagrees_with_the_architecture) {
  const char *metadata[] = {"format", "nn-checkpoint", "format_version",
                            "1",      "architecture",  architecture,
                            NULL};
  const st_tensor tensors[] = {
      {"layers.0.weight", "F32", 2, {2, 3}, w0, sizeof w0},
      {"layers.0.bias", "F32", 1, {3, 0}, b0, sizeof b0},
      {"layers.1.weight", "F32", 2, {1, 3}, w1, sizeof w1},
      {"layers.1.bias", "F32", 1, {1, 0}, b1, sizeof b1}};
  st_write_file(path, metadata, tensors, 4, 0);
  ST_EXPECT_ERROR(ctx, load(), NN_ERROR_SHAPE_MISMATCH, path,
                  "layers.0.weight has shape [2, 3] but the architecture's "
                  "layer 1 is [3, 2]");
}

Test(checkpoint_errors, a_deeper_network_does_not_fit) {
  const st_tensor tensors[] = {
      {"layers.0.weight", "F32", 2, {3, 2}, w0, sizeof w0},
      {"layers.0.bias", "F32", 1, {3, 0}, b0, sizeof b0},
      {"layers.1.weight", "F32", 2, {1, 3}, w1, sizeof w1},
      {"layers.1.bias", "F32", 1, {1, 0}, b1, sizeof b1},
      {"layers.2.weight", "F32", 2, {1, 1}, b1, sizeof b1}};
  st_write_file(path, NULL, tensors, 5, 0);
  ST_EXPECT_ERROR(ctx, load_parameters(), NN_ERROR_SHAPE_MISMATCH, path,
                  "layers.2.weight", "2 layer(s)");
}

Test(checkpoint_errors, weights_of_an_integer_dtype) {
  const int32_t integers[6] = {1, 2, 3, 4, 5, 6};
  const st_tensor tensors[] = {
      {"layers.0.weight", "I32", 2, {3, 2}, integers, sizeof integers},
      {"layers.0.bias", "F32", 1, {3, 0}, b0, sizeof b0},
      {"layers.1.weight", "F32", 2, {1, 3}, w1, sizeof w1},
      {"layers.1.bias", "F32", 1, {1, 0}, b1, sizeof b1}};
  st_write_file(path, NULL, tensors, 4, 0);
  ST_EXPECT_ERROR(ctx, load_parameters(), NN_ERROR_UNSUPPORTED, path,
                  "layers.0.weight", "I32");
}

/* ------------------------------------------------------------------------ */
/* Metadata                                                                  */
/* ------------------------------------------------------------------------ */

Test(checkpoint_errors, unknown_activation) {
  write_checkpoint("{\"input_width\": 2, \"layers\": [{\"units\": 3, "
                   "\"activation\": \"swish\", \"dropout\": 0}, {\"units\": "
                   "1, \"activation\": \"sigmoid\", \"dropout\": 0}], "
                   "\"loss\": \"binary_cross_entropy\"}");
  ST_EXPECT_ERROR(ctx, load(), NN_ERROR_FORMAT, path, "architecture layers[0]",
                  "activation", "swish");
}

Test(checkpoint_errors, zero_width) {
  /* Tensors that agree with a zero input width, so that the architecture
   * itself is what is refused. */
  const char *metadata[] = {
      "format",
      "nn-checkpoint",
      "format_version",
      "1",
      "architecture",
      "{\"input_width\": 0, \"layers\": [{\"units\": 1, \"activation\": "
      "\"sigmoid\", \"dropout\": 0}], \"loss\": \"binary_cross_entropy\"}",
      NULL};
  const st_tensor tensors[] = {{"layers.0.weight", "F32", 2, {1, 0}, w0, 0},
                               {"layers.0.bias", "F32", 1, {1, 0}, b1, 4}};
  st_write_file(path, metadata, tensors, 2, 0);
  ST_EXPECT_ERROR(ctx, load(), NN_ERROR_FORMAT, path, "architecture",
                  "input width 0");
}

Test(checkpoint_errors, architecture_not_json) {
  write_checkpoint("{\"input_width\": 2,");
  ST_EXPECT_ERROR(ctx, load(), NN_ERROR_FORMAT, path, "\"architecture\"",
                  "not a JSON object");
}

Test(checkpoint_errors, architecture_field_of_the_wrong_type) {
  write_checkpoint("{\"input_width\": \"two\", \"layers\": [], \"loss\": "
                   "\"binary_cross_entropy\"}");
  ST_EXPECT_ERROR(ctx, load(), NN_ERROR_FORMAT, path, "architecture",
                  "input_width");
  write_checkpoint("{\"input_width\": 2, \"layers\": [{\"units\": 3, "
                   "\"activation\": \"relu\", \"dropout\": 0}, {\"units\": "
                   "1, \"activation\": \"sigmoid\", \"dropout\": 0}]}");
  ST_EXPECT_ERROR(ctx, load(), NN_ERROR_FORMAT, path, "architecture",
                  "\"loss\"");
}

Test(checkpoint_errors, training_field_of_the_wrong_type) {
  const char *metadata[] = {"format",
                            "nn-checkpoint",
                            "format_version",
                            "1",
                            "architecture",
                            architecture,
                            "training",
                            "{\"optimizer\": \"adam\", \"beta1\": \"high\"}",
                            NULL};
  write_tiny(metadata, 4);
  nn_model *model = NULL;
  nn_train_options options;
  ST_EXPECT_ERROR(ctx, nn_model_load(ctx, path, &model, &options, NULL, NULL),
                  NN_ERROR_FORMAT, path, "training", "beta1");
  cr_assert_null(model);
}

/* ------------------------------------------------------------------------ */
/* Values                                                                    */
/* ------------------------------------------------------------------------ */

Test(checkpoint_errors, nan_in_weights) {
  const char *metadata[] = {"format", "nn-checkpoint", "format_version",
                            "1",      "architecture",  architecture,
                            NULL};
  w1[2] = NAN;
  write_tiny(metadata, 4);
  w1[2] = 1;
  ST_EXPECT_ERROR(ctx, load(), NN_ERROR_INVALID_DATA, path, "layers.1.weight",
                  "element 2");
  ST_EXPECT_ERROR(ctx, load_parameters(), NN_ERROR_INVALID_DATA, path,
                  "layers.1.weight", "element 2");
}

Test(checkpoint_errors, f64_beyond_float_range) {
  const double huge[3] = {1e300, 0, 0};
  const st_tensor tensors[] = {
      {"layers.0.weight", "F32", 2, {3, 2}, w0, sizeof w0},
      {"layers.0.bias", "F32", 1, {3, 0}, b0, sizeof b0},
      {"layers.1.weight", "F64", 2, {1, 3}, huge, sizeof huge},
      {"layers.1.bias", "F32", 1, {1, 0}, b1, sizeof b1}};
  st_write_file(path, NULL, tensors, 4, 0);
  ST_EXPECT_ERROR(ctx, load_parameters(), NN_ERROR_INVALID_DATA, path,
                  "layers.1.weight", "element 0");
}

/* A failed load leaves the model as it was. */
Test(checkpoint_errors, failed_load_parameters_leaves_the_model) {
  const char *metadata[] = {"format", "nn-checkpoint", "format_version",
                            "1",      "architecture",  architecture,
                            NULL};
  b1[0] = INFINITY;
  write_tiny(metadata, 4);
  b1[0] = 0.25f;
  nn_model *model = tiny_model();
  SUPPORT_OK(ctx, nn_model_init(model, NN_INIT_HE, 4));
  float before[13], after[13];
  SUPPORT_OK(ctx, nn_model_get_parameters(model, before, 13));
  ST_EXPECT_ERROR(ctx, nn_model_load_parameters(model, path),
                  NN_ERROR_INVALID_DATA, "layers.1.bias");
  SUPPORT_OK(ctx, nn_model_get_parameters(model, after, 13));
  cr_assert_eq(memcmp(before, after, sizeof before), 0);
  nn_model_destroy(model);
}

Test(checkpoint_errors, null_arguments) {
  nn_model *model = NULL;
  cr_assert_eq(nn_model_load(NULL, path, &model, NULL, NULL, NULL),
               NN_ERROR_INVALID_ARGUMENT);
  ST_EXPECT_ERROR(ctx, nn_model_load(ctx, NULL, &model, NULL, NULL, NULL),
                  NN_ERROR_INVALID_ARGUMENT, "path");
  ST_EXPECT_ERROR(ctx, nn_model_load(ctx, path, NULL, NULL, NULL, NULL),
                  NN_ERROR_INVALID_ARGUMENT, "out");
  cr_assert_eq(nn_model_load_parameters(NULL, path), NN_ERROR_INVALID_ARGUMENT);
  cr_assert_eq(nn_model_save(NULL, path, NULL, NULL),
               NN_ERROR_INVALID_ARGUMENT);
  model = tiny_model();
  ST_EXPECT_ERROR(ctx, nn_model_save(model, NULL, NULL, NULL),
                  NN_ERROR_INVALID_ARGUMENT, "path");
  nn_model_destroy(model);
}
