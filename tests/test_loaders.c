/*
 * test_loaders.c — nn_dataset_load and nn_dataset_load_csv on small files
 * written here (IDX plain and gzipped, NPY of each dtype, CSV, HDF5), with
 * exact values: uint8 / 255, examples as contiguous columns in C order
 * (numpy's x.reshape(m, -1)), one-hot, binary and value targets. Then the
 * real files when they are present: the course's cat/non-cat HDF5 and
 * Fashion-MNIST.
 */
#include "load_files.h"
#include "load_tensor.h" /* nnlib_gzip_inflate_file */

TestSuite(loaders, .init = load_files_setup, .fini = load_files_teardown);

/* A dataset from files with the given options (NULL: defaults). */
static nn_dataset *load(nn_context *ctx, const char *x, const char *y,
                        const nn_load_options *options) {
  nn_dataset *data = NULL;
  SUPPORT_OK(ctx, nn_dataset_load(ctx, x, y, options, &data));
  return data;
}

static void assert_shape(const nn_dataset *data, size_t nx, size_t ny,
                         size_t m) {
  cr_assert_eq(nn_dataset_input_width(data), nx, "n_x %zu, want %zu",
               nn_dataset_input_width(data), nx);
  cr_assert_eq(nn_dataset_target_width(data), ny, "n_y %zu, want %zu",
               nn_dataset_target_width(data), ny);
  cr_assert_eq(nn_dataset_example_count(data), m, "m %zu, want %zu",
               nn_dataset_example_count(data), m);
}

static void assert_floats(const float *got, const float *want, size_t count) {
  for (size_t i = 0; i < count; i++)
    cr_assert_eq(got[i], want[i], "element %zu is %.9g, want %.9g", i,
                 (double)got[i], (double)want[i]);
}

/* 3 examples of 2×3 uint8 images, pixel i of the file = 15 i, and their
 * labels 2, 0, 1: what every IDX test reads. */
static const uint8_t idx_pixels[18] = {0,   15,  30,  45,  60,  75,
                                       90,  105, 120, 135, 150, 165,
                                       180, 195, 210, 225, 240, 255};
static const uint8_t idx_labels[3] = {2, 0, 1};
static const float one_hot_2_0_1[9] = {0, 0, 1, 1, 0, 0, 0, 1, 0};

static void check_idx_images(nn_context *ctx, bool images_gz, bool labels_gz) {
  const uint32_t image_dims[] = {3, 2, 3}, label_dims[] = {3};
  const char *x = write_idx(images_gz ? "images.gz" : "images", images_gz, 0x08,
                            3, image_dims, idx_pixels, 1);
  const char *y = write_idx(labels_gz ? "labels.gz" : "labels", labels_gz, 0x08,
                            1, label_dims, idx_labels, 1);
  nn_dataset *data = load(ctx, x, y, NULL);
  assert_shape(data, 6, 3, 3);
  float want[18];
  for (int i = 0; i < 18; i++)
    want[i] = (float)(idx_pixels[i] / 255.0);
  assert_floats(nn_dataset_inputs(data), want, 18);
  assert_floats(nn_dataset_targets(data), one_hot_2_0_1, 9);
  nn_dataset_destroy(data);
}

Test(loaders, idx_ubyte_images_plain_and_gzip) {
  nn_context *ctx = support_cpu_context();
  check_idx_images(ctx, false, false);
  check_idx_images(ctx, true, true);
  check_idx_images(ctx, true, false);
  nn_context_destroy(ctx);
}

/* A .gz of one gzip member is inflated whole (libdeflate, load_gzip.c);
 * anything else, such as two members one after the other, streams through
 * zlib. Each gives the plain file's values. */
Test(loaders, idx_gzip_inflated_whole_or_streamed_alike) {
  nn_context *ctx = support_cpu_context();
  const uint32_t dims[] = {3, 2, 3};
  size_t size;
  unsigned char *image = idx_image(0x08, 3, dims, idx_pixels, 1, &size);
  char plain[512], one[512], two[512];
  snprintf(plain, sizeof plain, "%s", write_bytes("plain", image, size));
  snprintf(one, sizeof one, "%s", write_gz("one-member.gz", image, size));
  snprintf(two, sizeof two, "%s",
           write_gz_members("two-members.gz", image, size, 7));
  unsigned char *inflated = NULL;
  size_t inflated_size = 0;
  cr_assert(nnlib_gzip_inflate_file(one, &inflated, &inflated_size));
  cr_assert_eq(inflated_size, size);
  cr_assert_arr_eq(inflated, image, size);
  free(inflated);
  cr_assert_not(nnlib_gzip_inflate_file(two, &inflated, &inflated_size),
                "libdeflate inflates one member: two are zlib's");
  cr_assert_null(inflated);
  cr_assert_not(nnlib_gzip_inflate_file(plain, &inflated, &inflated_size));
  cr_assert_null(inflated);
  float want[18];
  for (int i = 0; i < 18; i++)
    want[i] = (float)(idx_pixels[i] / 255.0);
  const char *paths[] = {plain, one, two};
  for (size_t p = 0; p < 3; p++) {
    nn_dataset *data = load(ctx, paths[p], NULL, NULL);
    assert_shape(data, 6, 0, 3);
    assert_floats(nn_dataset_inputs(data), want, 18);
    nn_dataset_destroy(data);
  }
  free(image);
  nn_context_destroy(ctx);
}

Test(loaders, idx_unscaled_and_fixed_class_count) {
  nn_context *ctx = support_cpu_context();
  const uint32_t image_dims[] = {3, 6}, label_dims[] = {3};
  const char *x = write_idx("x", false, 0x08, 2, image_dims, idx_pixels, 1);
  const char *y = write_idx("y", true, 0x08, 1, label_dims, idx_labels, 1);
  nn_load_options options;
  nn_load_options_default(&options);
  options.scale_uint8 = 0;
  options.class_count = 5;
  nn_dataset *data = load(ctx, x, y, &options);
  assert_shape(data, 6, 5, 3);
  cr_assert_eq(nn_dataset_inputs(data)[17], 255.0f);
  const float *targets = nn_dataset_targets(data);
  for (size_t j = 0; j < 3; j++)
    for (size_t k = 0; k < 5; k++)
      cr_assert_eq(targets[j * 5 + k], k == idx_labels[j] ? 1.0f : 0.0f);
  nn_dataset_destroy(data);
  nn_context_destroy(ctx);
}

/* IDX's other element types: big-endian float, double, short, int, byte. */
Test(loaders, idx_other_types_are_big_endian) {
  nn_context *ctx = support_cpu_context();
  const uint32_t dims[] = {2, 2};
  const float f[] = {1.5f, -2.25f, 3e10f, 0};
  const double d[] = {0.1, -7, 1e-3, 2};
  const int16_t s[] = {-300, 300, 7, -1};
  const int32_t i[] = {-70000, 70000, 1, 0};
  const int8_t b[] = {-128, 127, 0, -1};
  nn_load_options values;
  nn_load_options_default(&values);
  values.targets = NN_TARGETS_VALUES;
  struct {
    unsigned char type;
    const void *data;
    size_t size;
    float want[4];
  } cases[] = {
      {0x0D, f, 4, {1.5f, -2.25f, 3e10f, 0}},
      {0x0E, d, 8, {0.1f, -7, 1e-3f, 2}},
      {0x0B, s, 2, {-300, 300, 7, -1}},
      {0x0C, i, 4, {-70000, 70000, 1, 0}},
      {0x09, b, 1, {-128, 127, 0, -1}},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    const char *path = write_idx("t.idx", false, cases[c].type, 2, dims,
                                 cases[c].data, cases[c].size);
    nn_dataset *data = load(ctx, path, path, &values);
    assert_shape(data, 2, 2, 2);
    assert_floats(nn_dataset_inputs(data), cases[c].want, 4);
    assert_floats(nn_dataset_targets(data), cases[c].want, 4);
    nn_dataset_destroy(data);
  }
  nn_context_destroy(ctx);
}

/* (2, 2, 2, 3) uint8: example j's 12 values in C order, as x.reshape(2, -1). */
Test(loaders, npy_uint8_4d_flattens_in_c_order) {
  nn_context *ctx = support_cpu_context();
  uint8_t pixels[24];
  for (int i = 0; i < 24; i++)
    pixels[i] = (uint8_t)(10 * i + 1);
  const char *x = write_npy("x.npy", "|u1", "(2, 2, 2, 3)", pixels, 24);
  const int64_t labels[] = {1, 0};
  const char *y = write_npy("y.npy", "<i8", "(2,)", labels, sizeof labels);
  nn_dataset *data = load(ctx, x, y, NULL);
  assert_shape(data, 12, 2, 2);
  float want[24];
  for (int i = 0; i < 24; i++)
    want[i] = (float)(pixels[i] / 255.0);
  assert_floats(nn_dataset_inputs(data), want, 24);
  const float one_hot[] = {0, 1, 1, 0};
  assert_floats(nn_dataset_targets(data), one_hot, 4);
  nn_dataset_destroy(data);
  nn_context_destroy(ctx);
}

Test(loaders, npy_float_dtypes_and_binary_labels) {
  nn_context *ctx = support_cpu_context();
  const float x32[] = {1.5f, -2, 0.25f, 8, 9, -10};
  const double x64[] = {0.5, -1.25, 3};
  const int32_t labels32[] = {1, 0, 1};
  nn_load_options binary;
  nn_load_options_default(&binary);
  binary.targets = NN_TARGETS_BINARY;
  const char *y = write_npy("y.npy", "<i4", "(3, 1)", labels32, 12);
  nn_dataset *data = load(
      ctx, write_npy("x32.npy", "<f4", "(3, 2)", x32, sizeof x32), y, &binary);
  assert_shape(data, 2, 1, 3);
  assert_floats(nn_dataset_inputs(data), x32, 6);
  const float want_y[] = {1, 0, 1};
  assert_floats(nn_dataset_targets(data), want_y, 3);
  nn_dataset_destroy(data);
  data = load(ctx, write_npy("x64.npy", "<f8", "(3,)", x64, sizeof x64), y,
              &binary);
  assert_shape(data, 1, 1, 3);
  const float want_x[] = {0.5f, -1.25f, 3};
  assert_floats(nn_dataset_inputs(data), want_x, 3);
  nn_dataset_destroy(data);
  nn_context_destroy(ctx);
}

/* The other integer dtypes, read as they are (VALUES) and as inputs. */
Test(loaders, npy_small_integer_dtypes) {
  nn_context *ctx = support_cpu_context();
  const int8_t i1[] = {-128, 127};
  const int16_t i2[] = {-32768, 32767};
  const uint16_t u2[] = {0, 65535};
  const uint32_t u4[] = {0, 4000000000u};
  struct {
    const char *descr;
    const void *data;
    size_t size;
    float want[2];
  } cases[] = {
      {"|i1", i1, 2, {-128, 127}},
      {"<i2", i2, 4, {-32768, 32767}},
      {"<u2", u2, 4, {0, 65535}},
      {"<u4", u4, 8, {0, 4e9f}},
  };
  nn_load_options values;
  nn_load_options_default(&values);
  values.targets = NN_TARGETS_VALUES;
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    const char *path = write_npy("t.npy", cases[c].descr, "(2,)", cases[c].data,
                                 cases[c].size);
    nn_dataset *data = load(ctx, path, path, &values);
    assert_shape(data, 1, 1, 2);
    assert_floats(nn_dataset_inputs(data), cases[c].want, 2);
    assert_floats(nn_dataset_targets(data), cases[c].want, 2);
    nn_dataset_destroy(data);
  }
  nn_context_destroy(ctx);
}

/* Values (m, k) give k target rows; labels as floats that are whole numbers
 * are class ids; a version 2.0 header reads like 1.0. */
Test(loaders, npy_values_float_labels_and_version_2) {
  nn_context *ctx = support_cpu_context();
  const double targets[] = {1, 2, 3, 4, 5, 6};
  const float x[] = {7, 8, 9};
  size_t size;
  unsigned char *image =
      npy_image(2, "<f8", "False", "(3, 2)", targets, sizeof targets, &size);
  const char *y = write_bytes("y.npy", image, size);
  free(image);
  const char *xp = write_npy("x.npy", "<f4", "(3,)", x, sizeof x);
  nn_load_options values;
  nn_load_options_default(&values);
  values.targets = NN_TARGETS_VALUES;
  nn_dataset *data = load(ctx, xp, y, &values);
  assert_shape(data, 1, 2, 3);
  const float want[] = {1, 2, 3, 4, 5, 6};
  assert_floats(nn_dataset_targets(data), want, 6);
  nn_dataset_destroy(data);
  const float labels[] = {3, 0, 1};
  y = write_npy("labels.npy", "<f4", "(3,)", labels, sizeof labels);
  data = load(ctx, xp, y, NULL);
  assert_shape(data, 1, 4, 3);
  nn_dataset_destroy(data);
  nn_context_destroy(ctx);
}

Test(loaders, csv_target_column_and_inputs) {
  nn_context *ctx = support_cpu_context();
  const char *path = write_text("d.csv", "\xEF\xBB\xBF"
                                         "a, \"b\" ,label,c\r\n"
                                         "1, 2.5, 1, -3\r\n"
                                         "\r\n"
                                         " 4 ,5e-1,0,6\r\n"
                                         "7,8,2,\"9\"\n");
  nn_dataset *data = NULL;
  SUPPORT_OK(ctx, nn_dataset_load_csv(ctx, path, "label", NULL, &data));
  assert_shape(data, 3, 3, 3);
  const float x[] = {1, 2.5f, -3, 4, 0.5f, 6, 7, 8, 9};
  assert_floats(nn_dataset_inputs(data), x, 9);
  const float y[] = {0, 1, 0, 1, 0, 0, 0, 0, 1};
  assert_floats(nn_dataset_targets(data), y, 9);
  nn_dataset_destroy(data);
  nn_load_options values;
  nn_load_options_default(&values);
  values.targets = NN_TARGETS_VALUES;
  SUPPORT_OK(ctx, nn_dataset_load_csv(ctx, path, "c", &values, &data));
  assert_shape(data, 3, 1, 3);
  const float c[] = {-3, 6, 9};
  assert_floats(nn_dataset_targets(data), c, 3);
  nn_dataset_destroy(data);
  SUPPORT_OK(ctx, nn_dataset_load_csv(ctx, path, NULL, NULL, &data));
  assert_shape(data, 4, 0, 3);
  cr_assert_null(nn_dataset_targets(data));
  nn_dataset_destroy(data);
  nn_context_destroy(ctx);
}

Test(loaders, hdf5_datasets_of_several_types) {
  nn_context *ctx = support_cpu_context();
  const char *path = load_path("d.h5");
  const uint8_t x[] = {0, 51, 102, 153, 204, 255, 1, 2, 3, 4, 5, 6};
  const int64_t y[] = {1, 0};
  const double v[] = {0.5, -0.5, 1, 2};
  const int16_t s[] = {-5, 5};
  const hsize_t x_dims[] = {2, 2, 3}, y_dims[] = {2}, v_dims[] = {2, 2};
  write_h5(path, true, "x", H5T_NATIVE_UINT8, 3, x_dims, x);
  write_h5(path, false, "y", H5T_NATIVE_INT64, 1, y_dims, y);
  write_h5(path, false, "v", H5T_NATIVE_DOUBLE, 2, v_dims, v);
  write_h5(path, false, "s", H5T_NATIVE_INT16, 1, y_dims, s);
  char x_path[600], y_path[600];
  snprintf(x_path, sizeof x_path, "%s:x", path);
  snprintf(y_path, sizeof y_path, "%s:y", path);
  nn_dataset *data = load(ctx, x_path, y_path, NULL);
  assert_shape(data, 6, 2, 2);
  for (int i = 0; i < 12; i++)
    cr_assert_eq(nn_dataset_inputs(data)[i], (float)(x[i] / 255.0));
  const float one_hot[] = {0, 1, 1, 0};
  assert_floats(nn_dataset_targets(data), one_hot, 4);
  nn_dataset_destroy(data);
  nn_load_options values;
  nn_load_options_default(&values);
  values.targets = NN_TARGETS_VALUES;
  snprintf(x_path, sizeof x_path, "%s:s", path);
  snprintf(y_path, sizeof y_path, "%s:v", path);
  data = load(ctx, x_path, y_path, &values);
  assert_shape(data, 1, 2, 2);
  const float want_x[] = {-5, 5}, want_y[] = {0.5f, -0.5f, 1, 2};
  assert_floats(nn_dataset_inputs(data), want_x, 2);
  assert_floats(nn_dataset_targets(data), want_y, 4);
  nn_dataset_destroy(data);
  nn_context_destroy(ctx);
}

/* Without y: predicting works; training and evaluating say why not. */
Test(loaders, inputs_only_predict_but_do_not_train) {
  nn_context *ctx = support_cpu_context();
  const float x[] = {0, 0, 0, 1, 1, 0, 1, 1};
  nn_dataset *data =
      load(ctx, write_npy("x.npy", "<f4", "(4, 2)", x, sizeof x), NULL, NULL);
  assert_shape(data, 2, 0, 4);
  cr_assert_null(nn_dataset_targets(data));
  const size_t widths[] = {2, 3, 1};
  nn_model *model = support_model(ctx, widths, 2, NN_ACTIVATION_TANH,
                                  NN_LOSS_BINARY_CROSS_ENTROPY);
  SUPPORT_OK(ctx, nn_model_init(model, NN_INIT_XAVIER, 1));
  float yhat[4];
  SUPPORT_OK(ctx, nn_model_predict(model, nn_dataset_inputs(data),
                                   nn_dataset_example_count(data), yhat));
  nn_train_options options;
  nn_train_options_default(&options);
  options.epochs = 1;
  ASSERT_LOAD_ERROR(ctx, nn_model_train(model, data, &options, NULL),
                    NN_ERROR_SHAPE_MISMATCH, "nn_model_train", "n_y = 0");
  nn_metrics metrics;
  ASSERT_LOAD_ERROR(ctx, nn_model_evaluate(model, data, &metrics),
                    NN_ERROR_SHAPE_MISMATCH, "nn_model_evaluate", "n_y = 0");
  nn_model_destroy(model);
  nn_dataset_destroy(data);
  nn_context_destroy(ctx);
}

/* The course's files, when ../shared/data is there (never copied here). */
static const char *shared_file(const char *relative, char *path, size_t size) {
  const char *root = getenv("NN_SHARED_DATA");
  if (!root) {
    load_files_teardown(); /* a skipped test's .fini does not run */
    cr_skip_test("NN_SHARED_DATA is not set");
  }
  snprintf(path, size, "%s/%s", root, relative);
  FILE *file = fopen(path, "rb");
  if (!file) {
    load_files_teardown();
    cr_skip_test("%s not present", path);
  }
  fclose(file);
  return path;
}

Test(loaders, catvnoncat_hdf5) {
  char file[512], x_path[600], y_path[600];
  shared_file("catvnoncat/train_catvnoncat.h5", file, sizeof file);
  snprintf(x_path, sizeof x_path, "%s:train_set_x", file);
  snprintf(y_path, sizeof y_path, "%s:train_set_y", file);
  nn_context *ctx = support_cpu_context();
  nn_load_options options;
  nn_load_options_default(&options);
  options.targets = NN_TARGETS_BINARY;
  nn_dataset *data = load(ctx, x_path, y_path, &options);
  assert_shape(data, 12288, 1, 209);
  const float *x = nn_dataset_inputs(data);
  const float first[] = {17, 31, 56, 22, 33};
  for (int i = 0; i < 5; i++)
    cr_assert(support_close(x[i] * 255.0, first[i], 1e-5), "x[%d] = %g", i,
              x[i] * 255.0);
  double cats = 0;
  for (size_t j = 0; j < 209; j++)
    cats += nn_dataset_targets(data)[j];
  cr_assert_eq(cats, 72.0);
  nn_dataset_destroy(data);
  nn_context_destroy(ctx);
}

Test(loaders, fashion_mnist_idx_gz) {
  const char *root = "/usr/share/datasets/fashion-mnist";
  char x_path[256], y_path[256];
  snprintf(x_path, sizeof x_path, "%s/train-images-idx3-ubyte.gz", root);
  snprintf(y_path, sizeof y_path, "%s/train-labels-idx1-ubyte.gz", root);
  FILE *probe = fopen(x_path, "rb");
  if (!probe) {
    load_files_teardown();
    cr_skip_test("%s not present", x_path);
  }
  fclose(probe);
  nn_context *ctx = support_cpu_context();
  nn_dataset *data = load(ctx, x_path, y_path, NULL);
  assert_shape(data, 784, 10, 60000);
  /* The first training label is 9 (ankle boot), the second 0. */
  cr_assert_eq(nn_dataset_targets(data)[9], 1.0f);
  cr_assert_eq(nn_dataset_targets(data)[10], 1.0f);
  double sum = 0;
  for (size_t i = 0; i < 784; i++)
    sum += nn_dataset_inputs(data)[i] * 255.0;
  cr_assert(support_close(sum, 76247, 1e-5), "pixel sum %g", sum);
  nn_dataset_destroy(data);
  snprintf(x_path, sizeof x_path, "%s/t10k-images-idx3-ubyte.gz", root);
  snprintf(y_path, sizeof y_path, "%s/t10k-labels-idx1-ubyte.gz", root);
  data = load(ctx, x_path, y_path, NULL);
  assert_shape(data, 784, 10, 10000);
  nn_dataset_destroy(data);
  nn_context_destroy(ctx);
}
