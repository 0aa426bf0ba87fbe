/*
 * checkpoint_support.h — helpers for the checkpoint tests: temporary
 * directories, and safetensors files written by hand, independently of the
 * library, the way numpy or PyTorch would (or corrupted on purpose).
 * Header-only (static inline) so both test files can use it without a
 * change to the shared support files.
 */
#ifndef NN_TEST_CHECKPOINT_SUPPORT_H
#define NN_TEST_CHECKPOINT_SUPPORT_H

#include "support.h"

#include <cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A fresh directory under /tmp; free with st_remove_tree. */
static inline char *st_temp_dir(void) {
  char pattern[] = "/tmp/nn_checkpoint_XXXXXX";
  cr_assert_not_null(mkdtemp(pattern), "mkdtemp failed");
  char *dir = strdup(pattern);
  cr_assert_not_null(dir);
  return dir;
}

/* dir/name, malloc'ed. */
static inline char *st_join(const char *dir, const char *name) {
  size_t size = strlen(dir) + strlen(name) + 2;
  char *path = malloc(size);
  cr_assert_not_null(path);
  snprintf(path, size, "%s/%s", dir, name);
  return path;
}

/* Entries of dir other than . and .. */
static inline size_t st_count_entries(const char *dir) {
  DIR *stream = opendir(dir);
  cr_assert_not_null(stream, "opendir %s", dir);
  size_t count = 0;
  for (struct dirent *entry; (entry = readdir(stream));)
    count += strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..");
  closedir(stream);
  return count;
}

/* Removes the files (and empty subdirectories) in dir, then dir. */
static inline void st_remove_tree(char *dir) {
  chmod(dir, 0700);
  DIR *stream = opendir(dir);
  if (stream) {
    for (struct dirent *entry; (entry = readdir(stream));) {
      if (!strcmp(entry->d_name, ".") || !strcmp(entry->d_name, ".."))
        continue;
      char *path = st_join(dir, entry->d_name);
      if (remove(path) != 0)
        rmdir(path);
      free(path);
    }
    closedir(stream);
  }
  rmdir(dir);
  free(dir);
}

static inline void st_write_bytes(const char *path, const void *bytes,
                                  size_t size) {
  FILE *file = fopen(path, "wb");
  cr_assert_not_null(file, "cannot write %s", path);
  cr_assert_eq(fwrite(bytes, 1, size, file), size);
  cr_assert_eq(fclose(file), 0);
}

static inline uint64_t st_load_u64(const unsigned char *bytes) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; i--)
    value = value << 8 | bytes[i];
  return value;
}

/* u64 header length (little-endian), the header text, the data. */
static inline void st_write_raw(const char *path, const char *header,
                                size_t header_length, const void *data,
                                size_t data_size) {
  size_t size = 8 + header_length + data_size;
  unsigned char *bytes = malloc(size);
  cr_assert_not_null(bytes);
  for (int i = 0; i < 8; i++)
    bytes[i] = (unsigned char)((uint64_t)header_length >> (8 * i));
  memcpy(bytes + 8, header, header_length);
  if (data_size)
    memcpy(bytes + 8 + header_length, data, data_size);
  st_write_bytes(path, bytes, size);
  free(bytes);
}

/* One tensor of a hand-written file. */
typedef struct st_tensor {
  const char *name;
  const char *dtype;
  size_t rank;
  size_t shape[2];
  const void *data; /* little-endian bytes */
  size_t bytes;
} st_tensor;

/* Writes tensors with a header made by cJSON, as an independent writer
 * would: metadata is "key", "value", ..., NULL (or NULL for none); with
 * reverse, the data buffer holds the tensors in the opposite order of the
 * list (the header keeps list order), as files from other writers may. */
static inline void st_write_file(const char *path, const char *const *metadata,
                                 const st_tensor *tensors, size_t count,
                                 int reverse) {
  cJSON *header = cJSON_CreateObject();
  if (metadata) {
    cJSON *object = cJSON_AddObjectToObject(header, "__metadata__");
    for (size_t i = 0; metadata[i]; i += 2)
      cJSON_AddStringToObject(object, metadata[i], metadata[i + 1]);
  }
  size_t total = 0;
  for (size_t i = 0; i < count; i++)
    total += tensors[i].bytes;
  unsigned char *data = malloc(total ? total : 1);
  cr_assert_not_null(data);
  size_t offset = 0;
  for (size_t k = 0; k < count; k++) {
    const st_tensor *tensor = &tensors[reverse ? count - 1 - k : k];
    cJSON *object = cJSON_AddObjectToObject(header, tensor->name);
    cJSON_AddStringToObject(object, "dtype", tensor->dtype);
    cJSON *shape = cJSON_AddArrayToObject(object, "shape");
    for (size_t d = 0; d < tensor->rank; d++)
      cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)tensor->shape[d]));
    cJSON *offsets = cJSON_AddArrayToObject(object, "data_offsets");
    cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)offset));
    cJSON_AddItemToArray(offsets,
                         cJSON_CreateNumber((double)(offset + tensor->bytes)));
    if (tensor->bytes)
      memcpy(data + offset, tensor->data, tensor->bytes);
    offset += tensor->bytes;
  }
  char *text = cJSON_PrintUnformatted(header);
  cr_assert_not_null(text);
  st_write_raw(path, text, strlen(text), data, total);
  cJSON_free(text);
  cJSON_Delete(header);
  free(data);
}

/* Asserts the status, and that the context's message contains every
 * needle (a NULL-terminated list). */
static inline void st_expect_error(nn_context *ctx, nn_status got,
                                   nn_status wanted,
                                   const char *const *needles) {
  const char *message = nn_context_last_error(ctx);
  cr_assert_eq(got, wanted, "got %s, wanted %s: %s", nn_status_str(got),
               nn_status_str(wanted), message);
  for (size_t i = 0; needles[i]; i++)
    cr_assert_not_null(strstr(message, needles[i]), "message lacks \"%s\": %s",
                       needles[i], message);
}

#define ST_EXPECT_ERROR(ctx, expr, wanted, ...)                                \
  st_expect_error((ctx), (expr), (wanted),                                     \
                  (const char *const[]){__VA_ARGS__, NULL})

#endif
