/*
 * safetensors_write.c — the writer: builds the header with cJSON, lays the
 * F32 tensors out back to back in the order given, and replaces the target
 * atomically (temporary file in the same directory, fsync, rename), so that
 * a crash or a full disk never leaves a half-written checkpoint behind.
 */
#define _GNU_SOURCE /* mkostemp, fopen's "e" */
#include "safetensors.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* Header                                                                    */
/* ------------------------------------------------------------------------ */

/* Integers are written as raw digits: cJSON would print 2^31 and above in
 * exponent form ("1e+15"), which the reference's u64 parser rejects. */
static bool add_integer(cJSON *array, uint64_t value) {
  char digits[24];
  snprintf(digits, sizeof digits, "%" PRIu64, value);
  cJSON *item = cJSON_CreateRaw(digits);
  if (!item)
    return false;
  if (!cJSON_AddItemToArray(array, item)) {
    cJSON_Delete(item);
    return false;
  }
  return true;
}

/* {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]} */
static bool add_entry(cJSON *header, const nnlib_st_entry *entry,
                      uint64_t begin, uint64_t end) {
  cJSON *object = cJSON_AddObjectToObject(header, entry->name);
  if (!object || !cJSON_AddStringToObject(object, "dtype", "F32"))
    return false;
  cJSON *shape = cJSON_AddArrayToObject(object, "shape");
  cJSON *offsets = cJSON_AddArrayToObject(object, "data_offsets");
  bool ok = shape && offsets;
  for (size_t i = 0; ok && i < entry->rank; i++)
    ok = add_integer(shape, entry->shape[i]);
  return ok && add_integer(offsets, begin) && add_integer(offsets, end);
}

static size_t entry_elements(const nnlib_st_entry *entry) {
  size_t elements = 1;
  for (size_t i = 0; i < entry->rank; i++)
    elements *= entry->shape[i];
  return elements;
}

static bool add_metadata(cJSON *header, const nnlib_st_pair *metadata,
                         size_t count) {
  if (count == 0)
    return true;
  cJSON *object = cJSON_AddObjectToObject(header, "__metadata__");
  bool ok = object != NULL;
  for (size_t i = 0; ok && i < count; i++)
    ok = cJSON_AddStringToObject(object, metadata[i].key, metadata[i].value) !=
         NULL;
  return ok;
}

/* The header text padded with spaces to a multiple of 8 bytes (so the data
 * buffer is 8-byte aligned, as the reference writer does); NULL when out
 * of memory. */
static char *print_padded(const cJSON *header, size_t *length) {
  char *text = cJSON_PrintUnformatted(header);
  if (!text)
    return NULL;
  size_t used = strlen(text), padded = (used + 7) & ~(size_t)7;
  char *out = malloc(padded + 1);
  if (out) {
    memcpy(out, text, used);
    memset(out + used, ' ', padded - used);
    out[padded] = '\0';
    *length = padded;
  }
  cJSON_free(text);
  return out;
}

static char *build_header(const nnlib_st_pair *metadata, size_t metadata_count,
                          const nnlib_st_entry *entries, size_t entry_count,
                          size_t *length) {
  cJSON *header = cJSON_CreateObject();
  bool ok = header && add_metadata(header, metadata, metadata_count);
  uint64_t offset = 0;
  for (size_t i = 0; ok && i < entry_count; i++) {
    uint64_t bytes = (uint64_t)entry_elements(&entries[i]) * sizeof(float);
    ok = add_entry(header, &entries[i], offset, offset + bytes);
    offset += bytes;
  }
  char *text = ok ? print_padded(header, length) : NULL;
  cJSON_Delete(header);
  return text;
}

/* ------------------------------------------------------------------------ */
/* Contents                                                                  */
/* ------------------------------------------------------------------------ */

static void store_le(unsigned char *bytes, uint64_t value, size_t count) {
  for (size_t i = 0; i < count; i++, value >>= 8)
    bytes[i] = (unsigned char)value;
}

/* Floats as little-endian F32, whatever the host's byte order. */
static bool write_floats(FILE *stream, const float *values, size_t count) {
  unsigned char chunk[16384];
  const size_t per_chunk = sizeof chunk / sizeof(float);
  while (count > 0) {
    size_t n = count < per_chunk ? count : per_chunk;
    for (size_t i = 0; i < n; i++) {
      uint32_t bits;
      memcpy(&bits, &values[i], sizeof bits);
      store_le(chunk + 4 * i, bits, 4);
    }
    if (fwrite(chunk, sizeof(float), n, stream) != n)
      return false;
    values += n;
    count -= n;
  }
  return true;
}

static bool write_contents(FILE *stream, const char *header, size_t length,
                           const nnlib_st_entry *entries, size_t count) {
  unsigned char prefix[8];
  store_le(prefix, length, sizeof prefix);
  bool ok = fwrite(prefix, 1, sizeof prefix, stream) == sizeof prefix &&
            fwrite(header, 1, length, stream) == length;
  for (size_t i = 0; ok && i < count; i++)
    ok = write_floats(stream, entries[i].values, entry_elements(&entries[i]));
  return ok && fflush(stream) == 0 && fsync(fileno(stream)) == 0;
}

/* ------------------------------------------------------------------------ */
/* Atomic replacement                                                        */
/* ------------------------------------------------------------------------ */

/* The mode open(path, O_CREAT, 0666) would give: an existing file keeps
 * its permission bits, a new one gets 0666 less the umask. The umask is
 * read from /proc because umask() cannot be read without being set, which
 * would race with other threads; without /proc the file stays 0600, as
 * mkstemp made it. */
static mode_t target_mode(const char *path) {
  struct stat info;
  if (stat(path, &info) == 0 && S_ISREG(info.st_mode))
    return info.st_mode & 0777;
  unsigned mask = 077;
  FILE *status = fopen("/proc/self/status", "re");
  if (status) {
    char line[256];
    while (fgets(line, sizeof line, status))
      if (sscanf(line, "Umask: %o", &mask) == 1)
        break;
    fclose(status);
  }
  return 0666 & ~(mode_t)mask;
}

/* Makes the rename itself durable; best effort (some file systems refuse
 * fsync on a directory, and the data is already safe). */
static void sync_directory(const char *path) {
  const char *slash = strrchr(path, '/');
  char *directory = slash ? strndup(path, (size_t)(slash - path)) : NULL;
  const char *name = !slash ? "." : slash == path ? "/" : directory;
  if (!name)
    return;
  int fd = open(name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
  free(directory);
}

/* Writes everything into temp (open as fd), then renames it over path. On
 * failure the caller removes temp. */
static nn_status write_and_rename(nn_context *ctx, const char *call,
                                  const char *path, const char *temp, int fd,
                                  const char *header, size_t length,
                                  const nnlib_st_entry *entries, size_t count) {
  fchmod(fd, target_mode(path)); /* cosmetic: failure leaves 0600 */
  FILE *stream = fdopen(fd, "wb");
  if (!stream) {
    int error = errno;
    close(fd);
    return NNLIB_ST_FAIL_PATH(ctx, NN_ERROR_IO, call, path,
                              "cannot write %s: %s", temp, strerror(error));
  }
  bool written = write_contents(stream, header, length, entries, count);
  int error = errno;
  if (fclose(stream) != 0 && written) {
    written = false;
    error = errno;
  }
  if (!written)
    return NNLIB_ST_FAIL_PATH(ctx, NN_ERROR_IO, call, path,
                              "writing %s failed: %s", temp, strerror(error));
  if (rename(temp, path) != 0)
    return NNLIB_ST_FAIL_PATH(ctx, NN_ERROR_IO, call, path,
                              "cannot rename %s over it: %s", temp,
                              strerror(errno));
  sync_directory(path);
  return NN_OK;
}

static nn_status write_atomically(nn_context *ctx, const char *call,
                                  const char *path, const char *header,
                                  size_t length, const nnlib_st_entry *entries,
                                  size_t count) {
  static const char suffix[] = ".tmp.XXXXXX";
  char *temp = NULL;
  nn_status status =
      nnlib_host_alloc(ctx, strlen(path) + sizeof suffix, 1, (void **)&temp);
  if (status != NN_OK)
    return status;
  strcat(strcpy(temp, path), suffix);
  int fd = mkostemp(temp, O_CLOEXEC);
  if (fd < 0)
    status = NNLIB_ST_FAIL_PATH(ctx, NN_ERROR_IO, call, path,
                                "cannot create a temporary file next to it: "
                                "%s",
                                strerror(errno));
  else
    status = write_and_rename(ctx, call, path, temp, fd, header, length,
                              entries, count);
  if (status != NN_OK && fd >= 0)
    unlink(temp);
  free(temp);
  return status;
}

nn_status nnlib_st_write(nn_context *ctx, const char *call, const char *path,
                         const nnlib_st_pair *metadata, size_t metadata_count,
                         const nnlib_st_entry *entries, size_t entry_count) {
  size_t length = 0;
  char *header =
      build_header(metadata, metadata_count, entries, entry_count, &length);
  if (!header)
    return NNLIB_ST_FAIL_PATH(ctx, NN_ERROR_OUT_OF_MEMORY, call, path,
                              "out of memory building the header");
  nn_status status =
      write_atomically(ctx, call, path, header, length, entries, entry_count);
  free(header);
  return status;
}
