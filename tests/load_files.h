/*
 * load_files.h — writers of small IDX, NPY, CSV and HDF5 files for the
 * loader tests, in a per-test temporary directory. Header-only (static
 * inline) because tests/CMakeLists.txt builds each test_*.c with support.c
 * alone.
 */
#ifndef NN_TEST_LOAD_FILES_H
#define NN_TEST_LOAD_FILES_H

#include "support.h"

#include <dirent.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* The test's directory, made by load_files_setup (a suite's .init). */
static char load_files_dir[64];

static inline void load_files_setup(void) {
  snprintf(load_files_dir, sizeof load_files_dir, "/tmp/nn_loaders_XXXXXX");
  cr_assert_not_null(mkdtemp(load_files_dir), "mkdtemp failed");
}

/* Removes the files of the (flat) directory, then the directory. */
static inline void load_files_teardown(void) {
  DIR *dir = load_files_dir[0] ? opendir(load_files_dir) : NULL;
  if (!dir)
    return;
  for (struct dirent *entry; (entry = readdir(dir));) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", load_files_dir, entry->d_name);
    if (strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0)
      remove(path);
  }
  closedir(dir);
  remove(load_files_dir);
}

/* dir/name in a rotating set of buffers, so a test can hold four at once
 * (copy a path that must outlive four more calls). */
static inline const char *load_path(const char *name) {
  static char paths[4][512];
  static int next;
  char *path = paths[next++ % 4];
  snprintf(path, sizeof paths[0], "%s/%s", load_files_dir, name);
  return path;
}

static inline const char *write_bytes(const char *name, const void *data,
                                      size_t size) {
  const char *path = load_path(name);
  FILE *file = fopen(path, "wb");
  cr_assert_not_null(file, "cannot write %s", path);
  cr_assert_eq(fwrite(data, 1, size, file), size);
  fclose(file);
  return path;
}

/* Gzip-compressed, through zlib as a user's gzip would. */
static inline const char *write_gz(const char *name, const void *data,
                                   size_t size) {
  const char *path = load_path(name);
  gzFile file = gzopen(path, "wb");
  cr_assert_not_null(file, "cannot write %s", path);
  cr_assert_eq(gzwrite(file, data, (unsigned)size), (int)size);
  gzclose(file);
  return path;
}

/* Two gzip members, data[0, split) and data[split, size), one after the
 * other: what `cat a.gz b.gz` makes, and gunzip reads as one file. */
static inline const char *write_gz_members(const char *name, const void *data,
                                           size_t size, size_t split) {
  size_t first_size, second_size;
  unsigned char *first =
      support_read_file(write_gz("member-1.gz", data, split), &first_size);
  unsigned char *second = support_read_file(
      write_gz("member-2.gz", (const char *)data + split, size - split),
      &second_size);
  unsigned char *both = malloc(first_size + second_size);
  cr_assert_not_null(both);
  memcpy(both, first, first_size);
  memcpy(both + first_size, second, second_size);
  const char *path = write_bytes(name, both, first_size + second_size);
  free(both);
  free(second);
  free(first);
  return path;
}

static inline const char *write_text(const char *name, const char *text) {
  return write_bytes(name, text, strlen(text));
}

/* An IDX file image: 0 0 type rank, big-endian dims, then count elements of
 * element_size bytes converted to big-endian. *size gets its length. */
static inline unsigned char *idx_image(unsigned char type, size_t rank,
                                       const uint32_t *dims, const void *data,
                                       size_t element_size, size_t *size) {
  size_t count = 1;
  for (size_t d = 0; d < rank; d++)
    count *= dims[d];
  *size = 4 + 4 * rank + count * element_size;
  unsigned char *image = malloc(*size), *at = image;
  cr_assert_not_null(image);
  *at++ = 0;
  *at++ = 0;
  *at++ = type;
  *at++ = (unsigned char)rank;
  for (size_t d = 0; d < rank; d++, at += 4) {
    at[0] = (unsigned char)(dims[d] >> 24);
    at[1] = (unsigned char)(dims[d] >> 16);
    at[2] = (unsigned char)(dims[d] >> 8);
    at[3] = (unsigned char)dims[d];
  }
  const unsigned char *in = data;
  for (size_t i = 0; i < count; i++)
    for (size_t b = 0; b < element_size; b++) /* host is little-endian */
      at[i * element_size + b] = in[i * element_size + element_size - 1 - b];
  return image;
}

static inline const char *write_idx(const char *name, bool gz,
                                    unsigned char type, size_t rank,
                                    const uint32_t *dims, const void *data,
                                    size_t element_size) {
  size_t size;
  unsigned char *image = idx_image(type, rank, dims, data, element_size, &size);
  const char *path =
      gz ? write_gz(name, image, size) : write_bytes(name, image, size);
  free(image);
  return path;
}

/* A .npy image: version major.0, the dict {'descr': descr,
 * 'fortran_order': fortran, 'shape': shape} padded to 64 bytes, then
 * data_size bytes. */
static inline unsigned char *npy_image(int major, const char *descr,
                                       const char *fortran, const char *shape,
                                       const void *data, size_t data_size,
                                       size_t *size) {
  char dict[256];
  int length = snprintf(dict, sizeof dict,
                        "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }",
                        descr, fortran, shape);
  size_t prefix = major == 1 ? 10 : 12;
  size_t header = ((prefix + (size_t)length + 1 + 63) / 64) * 64 - prefix;
  *size = prefix + header + data_size;
  unsigned char *image = malloc(*size);
  cr_assert_not_null(image);
  memcpy(image, "\x93NUMPY", 6);
  image[6] = (unsigned char)major;
  image[7] = 0;
  for (size_t b = 0; b < prefix - 8; b++)
    image[8 + b] = (unsigned char)(header >> (8 * b));
  memset(image + prefix, ' ', header);
  memcpy(image + prefix, dict, (size_t)length);
  image[prefix + header - 1] = '\n';
  memcpy(image + prefix + header, data, data_size);
  return image;
}

static inline const char *write_npy(const char *name, const char *descr,
                                    const char *shape, const void *data,
                                    size_t data_size) {
  size_t size;
  unsigned char *image =
      npy_image(1, descr, "False", shape, data, data_size, &size);
  const char *path = write_bytes(name, image, size);
  free(image);
  return path;
}

/* One dataset `name` of rank dims and memory type `type` into an HDF5 file,
 * created when create, else opened for writing. */
static inline void write_h5(const char *path, bool create, const char *name,
                            hid_t type, int rank, const hsize_t *dims,
                            const void *data) {
  hid_t file = create ? H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT)
                      : H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  cr_assert_geq(file, 0, "cannot write %s", path);
  hid_t space = H5Screate_simple(rank, dims, NULL);
  hid_t dataset = H5Dcreate2(file, name, type, space, H5P_DEFAULT, H5P_DEFAULT,
                             H5P_DEFAULT);
  cr_assert_geq(dataset, 0);
  cr_assert_geq(H5Dwrite(dataset, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data),
                0);
  H5Dclose(dataset);
  H5Sclose(space);
  H5Fclose(file);
}

/* The status, and a message naming the file (or what) and the problem. */
#define ASSERT_LOAD_ERROR(ctx, expr, expected, what, phrase)                   \
  do {                                                                         \
    nn_status load_status_ = (expr);                                           \
    const char *load_message_ = nn_context_last_error(ctx);                    \
    cr_assert_eq(load_status_, (expected), "%s -> %s, want %s: %s", #expr,     \
                 nn_status_str(load_status_), nn_status_str(expected),         \
                 load_message_);                                               \
    cr_assert(strstr(load_message_, (what)) != NULL,                           \
              "message does not name '%s': %s", (what), load_message_);        \
    cr_assert(strstr(load_message_, (phrase)) != NULL,                         \
              "message does not say '%s': %s", (phrase), load_message_);       \
  } while (0)

#endif
