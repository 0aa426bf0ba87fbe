/*
 * test_loader_errors.c — every loader on bad input: the status (IO for
 * unreadable files, FORMAT for malformed content, UNSUPPORTED for valid
 * files we do not read, INVALID_DATA for bad values, SHAPE_MISMATCH for
 * counts that do not fit, INVALID_ARGUMENT for names not in the file) and a
 * message naming the file and the problem. No failure may allocate from an
 * unchecked header or print (libhdf5 would, unless silenced).
 */
#include "load_files.h"
#include "load_tensor.h" /* nnlib_gzip_inflate: the fast path alone */

#include <criterion/redirect.h>
#include <math.h>
#include <time.h>

TestSuite(loader_errors, .init = load_files_setup, .fini = load_files_teardown);

/* Loads x (and y) with options, expecting failure. */
#define EXPECT_LOAD(ctx, x, y, options, status, what, phrase)                  \
  do {                                                                         \
    nn_dataset *data_ = NULL;                                                  \
    ASSERT_LOAD_ERROR(ctx, nn_dataset_load(ctx, x, y, options, &data_),        \
                      status, what, phrase);                                   \
    cr_assert_null(data_);                                                     \
  } while (0)

#define EXPECT_CSV(ctx, path, target, options, status, phrase)                 \
  do {                                                                         \
    nn_dataset *data_ = NULL;                                                  \
    ASSERT_LOAD_ERROR(ctx,                                                     \
                      nn_dataset_load_csv(ctx, path, target, options, &data_), \
                      status, path, phrase);                                   \
    cr_assert_null(data_);                                                     \
  } while (0)

static const uint8_t pixels[18] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};

static nn_load_options options_for(nn_target_kind targets, size_t class_count) {
  nn_load_options options;
  nn_load_options_default(&options);
  options.targets = targets;
  options.class_count = class_count;
  return options;
}

/* ------------------------------------------------------------------------ */
/* Paths and arguments                                                       */
/* ------------------------------------------------------------------------ */

Test(loader_errors, missing_files_are_io_errors_naming_the_path) {
  nn_context *ctx = support_cpu_context();
  const char *names[] = {"nothing-ubyte.gz", "nothing.npy", "nothing.h5:x"};
  for (size_t i = 0; i < 3; i++) {
    const char *path = load_path(names[i]);
    EXPECT_LOAD(ctx, path, NULL, NULL, NN_ERROR_IO, load_path("nothing"),
                "cannot open");
  }
  const char *csv = load_path("nothing.csv");
  EXPECT_CSV(ctx, csv, "y", NULL, NN_ERROR_IO, "No such file");
  /* A good x with a missing y still fails on y, naming it. */
  const uint32_t dims[] = {2, 6};
  const char *x = write_idx("x", false, 0x08, 2, dims, pixels, 1);
  const char *y = load_path("no-labels");
  EXPECT_LOAD(ctx, x, y, NULL, NN_ERROR_IO, "no-labels", "cannot open");
  nn_context_destroy(ctx);
}

Test(loader_errors, bad_arguments) {
  nn_context *ctx = support_cpu_context();
  const uint32_t dims[] = {2, 6};
  const char *x = write_idx("x", false, 0x08, 2, dims, pixels, 1);
  nn_dataset *data = NULL;
  cr_assert_eq(nn_dataset_load(NULL, x, NULL, NULL, &data),
               NN_ERROR_INVALID_ARGUMENT);
  ASSERT_LOAD_ERROR(ctx, nn_dataset_load(ctx, x, NULL, NULL, NULL),
                    NN_ERROR_INVALID_ARGUMENT, "nn_dataset_load", "NULL");
  EXPECT_LOAD(ctx, NULL, NULL, NULL, NN_ERROR_INVALID_ARGUMENT,
              "nn_dataset_load", "NULL");
  nn_load_options options = options_for(NN_TARGETS_CLASSES, 1);
  EXPECT_LOAD(ctx, x, x, &options, NN_ERROR_INVALID_ARGUMENT, "class_count",
              "NN_TARGETS_BINARY");
  options = options_for((nn_target_kind)7, 0);
  EXPECT_LOAD(ctx, x, x, &options, NN_ERROR_INVALID_ARGUMENT, "nn_dataset_load",
              "target kind 7");
  ASSERT_LOAD_ERROR(ctx, nn_dataset_load_csv(ctx, NULL, "y", NULL, &data),
                    NN_ERROR_INVALID_ARGUMENT, "nn_dataset_load_csv", "NULL");
  nn_context_destroy(ctx);
}

/* ------------------------------------------------------------------------ */
/* IDX                                                                       */
/* ------------------------------------------------------------------------ */

Test(loader_errors, idx_malformed_headers) {
  nn_context *ctx = support_cpu_context();
  struct {
    const char *name;
    const char *bytes;
    size_t size;
    const char *phrase;
  } cases[] = {
      {"short-header", "\0\0", 2, "truncated"},
      {"short-dims", "\0\0\x08\x03\0\0\0\x02\0\0", 10, "truncated"},
      {"zip", "PK\x03\x04\0\0\0\0", 8, "not an IDX file"},
      {"type-0a", "\0\0\x0A\x01\0\0\0\x01\0", 9, "unknown IDX element type"},
      {"rank-0", "\0\0\x08\0\0", 5, "rank 0"},
      {"rank-9", "\0\0\x08\x09", 4, "rank 9"},
      {"empty", "", 0, "truncated"},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    const char *path =
        write_bytes(cases[c].name, cases[c].bytes, cases[c].size);
    EXPECT_LOAD(ctx, path, NULL, NULL, NN_ERROR_FORMAT, cases[c].name,
                cases[c].phrase);
  }
  nn_context_destroy(ctx);
}

Test(loader_errors, idx_size_must_match_the_file) {
  nn_context *ctx = support_cpu_context();
  const uint32_t dims[] = {3, 2, 3};
  size_t size;
  unsigned char *image = idx_image(0x08, 3, dims, pixels, 1, &size);
  const char *path = write_bytes("short-data", image, size - 5);
  EXPECT_LOAD(ctx, path, NULL, NULL, NN_ERROR_FORMAT, "short-data",
              "needs 18 bytes of data, the file has 13");
  path = write_gz("short-data.gz", image, size - 1);
  EXPECT_LOAD(ctx, path, NULL, NULL, NN_ERROR_FORMAT, "short-data.gz",
              "truncated");
  unsigned char *longer = malloc(size + 3);
  memcpy(longer, image, size);
  memcpy(longer + size, "abc", 3);
  path = write_bytes("trailing", longer, size + 3);
  EXPECT_LOAD(ctx, path, NULL, NULL, NN_ERROR_FORMAT, "trailing",
              "unexpected bytes after the data");
  path = write_gz("trailing.gz", longer, size + 3);
  EXPECT_LOAD(ctx, path, NULL, NULL, NN_ERROR_FORMAT, "trailing.gz",
              "unexpected bytes after the data");
  free(longer);
  free(image);
  nn_context_destroy(ctx);
}

/* A 20-byte file claiming 2^40 elements fails at once, having allocated
 * only what it read (ASan would report a terabyte allocation); dimensions
 * whose product overflows are malformed. */
Test(loader_errors, idx_huge_claims_fail_fast) {
  nn_context *ctx = support_cpu_context();
  const char huge[] = "\0\0\x0D\x02\0\x10\0\0\0\x10\0\0" /* 2^20 × 2^20 */
                      "12345678";
  clock_t start = clock();
  const char *path = write_bytes("huge", huge, sizeof huge - 1);
  EXPECT_LOAD(ctx, path, NULL, NULL, NN_ERROR_FORMAT, "huge", "truncated");
  path = write_gz("huge.gz", huge, sizeof huge - 1);
  EXPECT_LOAD(ctx, path, NULL, NULL, NN_ERROR_FORMAT, "huge.gz", "truncated");
  cr_assert_lt((double)(clock() - start) / CLOCKS_PER_SEC, 1.0);
  const char overflow[] = "\0\0\x0E\x03\xff\xff\xff\xff\xff\xff\xff\xff"
                          "\xff\xff\xff\xff";
  path = write_bytes("overflow", overflow, sizeof overflow - 1);
  EXPECT_LOAD(ctx, path, NULL, NULL, NN_ERROR_FORMAT, "overflow", "overflow");
  nn_context_destroy(ctx);
}

Test(loader_errors, idx_corrupt_gzip) {
  nn_context *ctx = support_cpu_context();
  const uint32_t dims[] = {3, 6};
  const char *good = write_idx("good.gz", true, 0x08, 2, dims, pixels, 1);
  FILE *file = fopen(good, "rb");
  unsigned char bytes[256];
  size_t size = fread(bytes, 1, sizeof bytes, file);
  fclose(file);
  const char *path = write_bytes("cut.gz", bytes, size / 2);
  EXPECT_LOAD(ctx, path, NULL, NULL, NN_ERROR_FORMAT, "cut.gz",
              "the gzip stream is truncated");
  bytes[size - 4] ^= 0x01; /* the trailer's uncompressed size */
  path = write_bytes("isize.gz", bytes, size);
  EXPECT_LOAD(ctx, path, NULL, NULL, NN_ERROR_FORMAT, "isize.gz",
              "corrupt gzip data");
  bytes[size - 4] ^= 0x01;
  bytes[size - 8] ^= 0x5A; /* the CRC-32 of the trailer */
  path = write_bytes("crc.gz", bytes, size);
  EXPECT_LOAD(ctx, path, NULL, NULL, NN_ERROR_FORMAT, "crc.gz",
              "corrupt gzip data");
  nn_context_destroy(ctx);
}

/* The whole-file inflate (load_gzip.c) takes exactly one intact gzip
 * member and refuses the rest, leaving them to zlib's stream (whose
 * messages the test above checks): a refusal has no output. */
static void expect_refused(const unsigned char *bytes, size_t size,
                           const char *what) {
  unsigned char *out = (unsigned char *)"untouched";
  size_t out_size = 1;
  cr_expect_not(nnlib_gzip_inflate(bytes, size, &out, &out_size),
                "%s was inflated", what);
  cr_expect_null(out, "%s: output left behind", what);
  cr_expect_eq(out_size, 0, "%s: size left behind", what);
}

Test(loader_errors, gzip_inflated_whole_only_when_intact) {
  const uint32_t dims[] = {3, 6};
  size_t image_size, size, two_size;
  unsigned char *image = idx_image(0x08, 2, dims, pixels, 1, &image_size);
  unsigned char *bytes =
      support_read_file(write_gz("one.gz", image, image_size), &size);
  unsigned char *two = support_read_file(
      write_gz_members("two.gz", image, image_size, 5), &two_size);
  unsigned char *out = NULL;
  size_t out_size = 0;
  cr_assert(nnlib_gzip_inflate(bytes, size, &out, &out_size));
  cr_assert_eq(out_size, image_size);
  cr_assert_arr_eq(out, image, image_size);
  free(out);
  expect_refused(bytes, size - 1, "a stream cut by a byte");
  expect_refused(bytes, size / 2, "half a stream");
  expect_refused(two, two_size, "two members");
  expect_refused(image, image_size, "a plain IDX image");
  expect_refused(bytes, 0, "nothing");
  unsigned char isize[4];
  memcpy(isize, bytes + size - 4, 4);
  bytes[size - 4] ^= 0x01;
  expect_refused(bytes, size, "a wrong uncompressed size");
  memset(bytes + size - 4, 0xff, 4); /* 4 GiB − 1 from 60-odd bytes */
  expect_refused(bytes, size, "a size deflate cannot reach");
  memcpy(bytes + size - 4, isize, 4);
  bytes[size - 8] ^= 0x5A;
  expect_refused(bytes, size, "a wrong CRC-32");
  free(two);
  free(bytes);
  free(image);
}

/* ------------------------------------------------------------------------ */
/* NPY                                                                       */
/* ------------------------------------------------------------------------ */

static const char *write_npy_image(const char *name, int major,
                                   const char *descr, const char *fortran,
                                   const char *shape, size_t data_size) {
  static const unsigned char zeros[64];
  size_t size;
  unsigned char *image =
      npy_image(major, descr, fortran, shape, zeros, data_size, &size);
  const char *path = write_bytes(name, image, size);
  free(image);
  return path;
}

Test(loader_errors, npy_unsupported_dtypes_and_order) {
  nn_context *ctx = support_cpu_context();
  const char *path = write_npy_image("be.npy", 1, ">f4", "False", "(2, 2)", 16);
  EXPECT_LOAD(ctx, path, NULL, NULL, NN_ERROR_UNSUPPORTED, "be.npy",
              "dtype '>f4' not supported: use float32/float64/uint8/int64");
  path = write_npy_image("c8.npy", 1, "<c8", "False", "(2,)", 16);
  EXPECT_LOAD(ctx, path, NULL, NULL, NN_ERROR_UNSUPPORTED, "c8.npy",
              "dtype '<c8'");
  path = write_npy_image("f.npy", 1, "<f4", "True", "(2, 2)", 16);
  EXPECT_LOAD(ctx, path, NULL, NULL, NN_ERROR_UNSUPPORTED, "f.npy",
              "fortran_order is True");
  nn_context_destroy(ctx);
}

Test(loader_errors, npy_malformed) {
  nn_context *ctx = support_cpu_context();
  const char *path = write_bytes("magic.npy", "XNUMPY\x01\0\x10\0", 10);
  EXPECT_LOAD(ctx, path, NULL, NULL, NN_ERROR_FORMAT, "magic.npy",
              "not a .npy file");
  path = write_bytes("short.npy", "\x93NUMPY\x01", 7);
  EXPECT_LOAD(ctx, path, NULL, NULL, NN_ERROR_FORMAT, "short.npy", "truncated");
  path = write_bytes("header.npy", "\x93NUMPY\x01\0\xff\0{'descr'", 18);
  EXPECT_LOAD(ctx, path, NULL, NULL, NN_ERROR_FORMAT, "header.npy",
              "truncated");
  path = write_npy_image("v4.npy", 4, "<f4", "False", "(2,)", 8);
  EXPECT_LOAD(ctx, path, NULL, NULL, NN_ERROR_FORMAT, "v4.npy", "version 4.0");
  path = write_npy_image("bool.npy", 1, "<f4", "Maybe", "(2,)", 8);
  EXPECT_LOAD(ctx, path, NULL, NULL, NN_ERROR_FORMAT, "bool.npy",
              "malformed .npy header");
  path = write_npy_image("tuple.npy", 1, "<f4", "False", "(2 2)", 16);
  EXPECT_LOAD(ctx, path, NULL, NULL, NN_ERROR_FORMAT, "tuple.npy",
              "malformed .npy header");
  path = write_npy_image("scalar.npy", 1, "<f4", "False", "()", 4);
  EXPECT_LOAD(ctx, path, NULL, NULL, NN_ERROR_FORMAT, "scalar.npy",
              "0 dimensions");
  nn_context_destroy(ctx);
}

/* Version 1.0 with a raw header text. */
static const char *write_npy_dict(const char *name, const char *dict) {
  unsigned char image[256] = "\x93NUMPY\x01";
  size_t length = strlen(dict);
  image[8] = (unsigned char)length;
  memcpy(image + 10, dict, length);
  return write_bytes(name, image, 10 + length);
}

Test(loader_errors, npy_header_keys) {
  nn_context *ctx = support_cpu_context();
  const char *path =
      write_npy_dict("nokey.npy", "{'descr': '<f4', 'shape': ()}\n");
  EXPECT_LOAD(ctx, path, NULL, NULL, NN_ERROR_FORMAT, "nokey.npy",
              "lacks 'fortran_order'");
  path = write_npy_dict("extra.npy", "{'descrs': 1,}\n");
  EXPECT_LOAD(ctx, path, NULL, NULL, NN_ERROR_FORMAT, "extra.npy",
              "unexpected key 'descrs'");
  nn_context_destroy(ctx);
}

Test(loader_errors, npy_size_must_match_the_file) {
  nn_context *ctx = support_cpu_context();
  const char *path =
      write_npy_image("short.npy", 1, "<f4", "False", "(3, 2)", 20);
  EXPECT_LOAD(ctx, path, NULL, NULL, NN_ERROR_FORMAT, "short.npy",
              "needs 24 bytes of data, the file has 20");
  path = write_npy_image("long.npy", 1, "<f4", "False", "(3, 2)", 28);
  EXPECT_LOAD(ctx, path, NULL, NULL, NN_ERROR_FORMAT, "long.npy",
              "unexpected bytes");
  clock_t start = clock();
  path = write_npy_image("huge.npy", 1, "<f8", "False", "(1099511627776,)", 16);
  EXPECT_LOAD(ctx, path, NULL, NULL, NN_ERROR_FORMAT, "huge.npy", "truncated");
  cr_assert_lt((double)(clock() - start) / CLOCKS_PER_SEC, 1.0);
  path = write_npy_image("overflow.npy", 2, "<f8", "False",
                         "(4294967296, 4294967296)", 16);
  EXPECT_LOAD(ctx, path, NULL, NULL, NN_ERROR_FORMAT, "overflow.npy",
              "overflow");
  path = write_npy_image("empty.npy", 1, "<f4", "False", "(0, 3)", 0);
  EXPECT_LOAD(ctx, path, NULL, NULL, NN_ERROR_SHAPE_MISMATCH, "empty.npy",
              "no examples");
  nn_context_destroy(ctx);
}

/* ------------------------------------------------------------------------ */
/* Values and counts                                                         */
/* ------------------------------------------------------------------------ */

Test(loader_errors, example_counts_must_match) {
  nn_context *ctx = support_cpu_context();
  const uint32_t x_dims[] = {3, 6}, y_dims[] = {2};
  const uint8_t labels[] = {0, 1};
  const char *x = write_idx("x-ubyte", false, 0x08, 2, x_dims, pixels, 1);
  const char *y = write_idx("y-ubyte", false, 0x08, 1, y_dims, labels, 1);
  EXPECT_LOAD(ctx, x, y, NULL, NN_ERROR_SHAPE_MISMATCH, "x-ubyte",
              "x has 3 examples");
  EXPECT_LOAD(ctx, x, y, NULL, NN_ERROR_SHAPE_MISMATCH, "y-ubyte",
              "but y has 2");
  nn_context_destroy(ctx);
}

Test(loader_errors, bad_labels) {
  nn_context *ctx = support_cpu_context();
  const float x[] = {1, 2, 3};
  char xp[512]; /* load_path's buffers are reused: keep a copy */
  snprintf(xp, sizeof xp, "%s", write_npy("x.npy", "<f4", "(3,)", x, 12));
  const int64_t out_of_range[] = {0, 3, 1}, negative[] = {0, -1, 1};
  const int64_t zeros[] = {0, 0, 0}, large[] = {0, 1000000000, 1};
  const double fractional[] = {0, 0.5, 1}, nan_label[] = {0, NAN, 1};
  const int64_t pairs[] = {0, 1, 1, 0, 0, 1};
  nn_load_options three = options_for(NN_TARGETS_CLASSES, 3);
  nn_load_options inferred = options_for(NN_TARGETS_CLASSES, 0);
  nn_load_options binary = options_for(NN_TARGETS_BINARY, 0);
  nn_load_options values = options_for(NN_TARGETS_VALUES, 0);
  struct {
    const char *name, *descr, *shape;
    const void *data;
    size_t size;
    const nn_load_options *options;
    nn_status status;
    const char *phrase;
  } cases[] = {
      {"range.npy", "<i8", "(3,)", out_of_range, 24, &three,
       NN_ERROR_INVALID_DATA, "label of example 1 is 3: outside"},
      {"negative.npy", "<i8", "(3,)", negative, 24, &inferred,
       NN_ERROR_INVALID_DATA, "label of example 1 is -1"},
      {"fraction.npy", "<f8", "(3,)", fractional, 24, &inferred,
       NN_ERROR_INVALID_DATA, "0.5: not a whole number"},
      {"nan.npy", "<f8", "(3,)", nan_label, 24, &inferred,
       NN_ERROR_INVALID_DATA, "label of example 1 is nan"},
      {"nanvalue.npy", "<f8", "(3,)", nan_label, 24, &values,
       NN_ERROR_INVALID_DATA, "example 1, target 0 is nan"},
      {"zeros.npy", "<i8", "(3,)", zeros, 24, &inferred, NN_ERROR_INVALID_DATA,
       "one class"},
      {"large.npy", "<i8", "(3,)", large, 24, &inferred, NN_ERROR_INVALID_DATA,
       "2^24"},
      {"binary.npy", "<i8", "(3,)", out_of_range, 24, &binary,
       NN_ERROR_INVALID_DATA, "needs 0 or 1"},
      {"pairs.npy", "<i8", "(3, 2)", pairs, 48, &inferred,
       NN_ERROR_SHAPE_MISMATCH, "must have shape (m) or (m, 1), not (3, 2)"},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    const char *y = write_npy(cases[c].name, cases[c].descr, cases[c].shape,
                              cases[c].data, cases[c].size);
    EXPECT_LOAD(ctx, xp, y, cases[c].options, cases[c].status, cases[c].name,
                cases[c].phrase);
  }
  nn_context_destroy(ctx);
}

Test(loader_errors, non_finite_inputs) {
  nn_context *ctx = support_cpu_context();
  const float nan_x[] = {1, 2, NAN, 4};
  const double inf_x[] = {1, INFINITY, 3, 4}, big_x[] = {1, 2, 3, 1e300};
  const char *path = write_npy("nan.npy", "<f4", "(2, 2)", nan_x, 16);
  EXPECT_LOAD(ctx, path, NULL, NULL, NN_ERROR_INVALID_DATA, "nan.npy",
              "example 1, feature 0 is nan");
  path = write_npy("inf.npy", "<f8", "(2, 2)", inf_x, 32);
  EXPECT_LOAD(ctx, path, NULL, NULL, NN_ERROR_INVALID_DATA, "inf.npy",
              "example 0, feature 1 is inf");
  path = write_npy("big.npy", "<f8", "(2, 2)", big_x, 32);
  EXPECT_LOAD(ctx, path, NULL, NULL, NN_ERROR_INVALID_DATA, "big.npy",
              "fit in float32");
  const uint32_t dims[] = {2, 2};
  path = write_idx("nan-idx", true, 0x0D, 2, dims, nan_x, 4);
  EXPECT_LOAD(ctx, path, NULL, NULL, NN_ERROR_INVALID_DATA, "nan-idx",
              "example 1, feature 0 is nan");
  nn_context_destroy(ctx);
}

/* ------------------------------------------------------------------------ */
/* CSV                                                                       */
/* ------------------------------------------------------------------------ */

Test(loader_errors, csv_structure) {
  nn_context *ctx = support_cpu_context();
  const char *path = write_text("empty.csv", "");
  EXPECT_CSV(ctx, path, "y", NULL, NN_ERROR_FORMAT, "empty file");
  path = write_text("blank.csv", "\n  \r\n");
  EXPECT_CSV(ctx, path, "y", NULL, NN_ERROR_FORMAT, "empty file");
  path = write_text("header.csv", "a,b,y\n");
  EXPECT_CSV(ctx, path, "y", NULL, NN_ERROR_SHAPE_MISMATCH, "no data rows");
  path = write_text("fewer.csv", "a,b,y\n1,2,0\n3,4\n");
  EXPECT_CSV(ctx, path, "y", NULL, NN_ERROR_FORMAT,
             "line 3 has fewer cells than the header's 3");
  path = write_text("more.csv", "a,b,y\n1,2,0,5\n");
  EXPECT_CSV(ctx, path, "y", NULL, NN_ERROR_FORMAT, "line 2 has more cells");
  path = write_text("quote.csv", "a,b,y\n1,\"2,0\n");
  EXPECT_CSV(ctx, path, "y", NULL, NN_ERROR_FORMAT,
             "line 2, column 2: unterminated quote");
  path = write_text("only.csv", "y\n1\n");
  EXPECT_CSV(ctx, path, "y", NULL, NN_ERROR_SHAPE_MISMATCH, "no inputs");
  path = write_text("twice.csv", "y,a,y\n1,2,3\n");
  EXPECT_CSV(ctx, path, "y", NULL, NN_ERROR_FORMAT, "two columns");
  nn_context_destroy(ctx);
}

Test(loader_errors, csv_missing_target_lists_the_columns) {
  nn_context *ctx = support_cpu_context();
  const char *path = write_text("d.csv", "sepal,\"petal\",kind\n1,2,0\n");
  EXPECT_CSV(ctx, path, "label", NULL, NN_ERROR_INVALID_ARGUMENT,
             "no column named 'label'; the columns are 'sepal', 'petal', "
             "'kind'");
  nn_context_destroy(ctx);
}

Test(loader_errors, csv_cells) {
  nn_context *ctx = support_cpu_context();
  const char *path = write_text("text.csv", "a,b,y\n1,2,0\n3,abc,1\n");
  EXPECT_CSV(ctx, path, "y", NULL, NN_ERROR_FORMAT,
             "line 3, column 2 ('b'): 'abc' is not a number");
  path = write_text("partial.csv", "a,b,y\n1,2x,0\n");
  EXPECT_CSV(ctx, path, "y", NULL, NN_ERROR_FORMAT,
             "line 2, column 2 ('b'): '2x' is not a number");
  path = write_text("blank-cell.csv", "a,b,y\n1, ,0\n");
  EXPECT_CSV(ctx, path, "y", NULL, NN_ERROR_FORMAT,
             "line 2, column 2 ('b'): empty cell");
  path = write_text("nan.csv", "a,b,y\r\n1,2,0\r\nnan,2,0\r\n");
  EXPECT_CSV(ctx, path, "y", NULL, NN_ERROR_INVALID_DATA,
             "line 3, column 1 ('a'): 'nan' is not a finite number");
  path = write_text("huge.csv", "a,b,y\n1,1e39,0\n");
  EXPECT_CSV(ctx, path, "y", NULL, NN_ERROR_INVALID_DATA,
             "too large for float32");
  path = write_text("label.csv", "a,b,y\n1,2,0.5\n");
  EXPECT_CSV(ctx, path, "y", NULL, NN_ERROR_INVALID_DATA,
             "label of example 0 is 0.5");
  nn_context_destroy(ctx);
}

/* ------------------------------------------------------------------------ */
/* HDF5                                                                      */
/* ------------------------------------------------------------------------ */

/* Runs after the suite's .init (which makes the directory). */
static void redirect_stderr(void) {
  cr_redirect_stderr();
}

/* libhdf5 prints its error stack unless silenced: nothing may reach
 * stderr. */
Test(loader_errors, hdf5_errors_print_nothing, .init = redirect_stderr) {
  nn_context *ctx = support_cpu_context();
  const char *h5 = load_path("d.h5");
  const hsize_t dims[] = {2, 3};
  write_h5(h5, true, "x", H5T_NATIVE_UINT8, 2, dims, pixels);
  hid_t string = H5Tcopy(H5T_C_S1);
  H5Tset_size(string, 3);
  write_h5(h5, false, "names", string, 2, dims, "abcdefghijklmnopqr");
  H5Tclose(string);
  char path[600];
  snprintf(path, sizeof path, "%s:nope", h5);
  EXPECT_LOAD(ctx, path, NULL, NULL, NN_ERROR_INVALID_ARGUMENT, h5,
              "no dataset 'nope' (the file's top level has: 'names', 'x')");
  snprintf(path, sizeof path, "%s:group/nope", h5);
  EXPECT_LOAD(ctx, path, NULL, NULL, NN_ERROR_INVALID_ARGUMENT, h5,
              "no dataset 'group/nope'");
  snprintf(path, sizeof path, "%s:names", h5);
  EXPECT_LOAD(ctx, path, NULL, NULL, NN_ERROR_UNSUPPORTED, h5,
              "dataset 'names' holds strings");
  snprintf(path, sizeof path, "%s:", h5);
  EXPECT_LOAD(ctx, path, NULL, NULL, NN_ERROR_INVALID_ARGUMENT, h5,
              "no dataset name");
  EXPECT_LOAD(ctx, h5, NULL, NULL, NN_ERROR_INVALID_ARGUMENT, h5,
              "name the dataset");
  const char *text = write_text("text.h5", "not hdf5 at all\n");
  snprintf(path, sizeof path, "%s:x", text);
  EXPECT_LOAD(ctx, path, NULL, NULL, NN_ERROR_FORMAT, text, "not an HDF5 file");
  snprintf(path, sizeof path, "%s:x", load_path("missing.hdf5"));
  EXPECT_LOAD(ctx, path, NULL, NULL, NN_ERROR_IO, "missing.hdf5",
              "cannot open");
  nn_context_destroy(ctx);
  fflush(stderr);
  cr_assert_stderr_eq_str("");
}
