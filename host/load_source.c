/*
 * load_source.c — byte sources for the binary parsers (IDX, NPY): a stdio
 * FILE or a zlib stream (which also reads uncompressed files), and reading
 * a tensor's payload without trusting the size its header claims.
 */
#include "load_tensor.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* The first allocation for a payload; it doubles as data keeps coming. */
#define FIRST_CHUNK ((size_t)1 << 20)

static nn_status read_file(nnlib_source *source, void *buffer, size_t size,
                           size_t *got) {
  FILE *file = source->handle;
  *got = fread(buffer, 1, size, file);
  if (*got < size && ferror(file))
    return NNLIB_FAIL_CALL(source->ctx, NN_ERROR_IO, source->call,
                           "%s: read failed after byte %zu: %s", source->name,
                           source->offset + *got, strerror(errno));
  source->offset += *got;
  return NN_OK;
}

/* A short read is the end of the data, a truncated gzip stream (zlib says
 * Z_BUF_ERROR) or corrupt compressed data. */
static nn_status gz_failure(nnlib_source *source) {
  int code = Z_OK;
  const char *message = gzerror(source->handle, &code);
  if (code == Z_OK)
    return NN_OK;
  if (code == Z_ERRNO)
    return NNLIB_FAIL_CALL(source->ctx, NN_ERROR_IO, source->call,
                           "%s: read failed after byte %zu: %s", source->name,
                           source->offset, strerror(errno));
  return NNLIB_FAIL_CALL(source->ctx, NN_ERROR_FORMAT, source->call,
                         "%s: %s after %zu uncompressed bytes (zlib: %s)",
                         source->name,
                         code == Z_BUF_ERROR ? "the gzip stream is truncated"
                                             : "corrupt gzip data",
                         source->offset, message);
}

static nn_status read_gz(nnlib_source *source, void *buffer, size_t size,
                         size_t *got) {
  *got = 0;
  while (*got < size) {
    size_t want = size - *got;
    unsigned chunk = want > INT_MAX ? INT_MAX : (unsigned)want;
    int count = gzread(source->handle, (char *)buffer + *got, chunk);
    if (count > 0) {
      *got += (size_t)count;
      source->offset += (size_t)count;
    }
    if (count < (int)chunk)
      break;
  }
  return *got < size ? gz_failure(source) : NN_OK;
}

nnlib_source nnlib_source_from_file(nn_context *ctx, const char *call,
                                    const char *name, FILE *file) {
  nnlib_source source = {ctx, call, name, read_file, file, 0};
  return source;
}

nnlib_source nnlib_source_from_gz(nn_context *ctx, const char *call,
                                  const char *name, gzFile file) {
  nnlib_source source = {ctx, call, name, read_gz, file, 0};
  return source;
}

nn_status nnlib_source_read_exact(nnlib_source *source, void *buffer,
                                  size_t size, const char *what) {
  size_t got = 0, start = source->offset;
  nn_status status = source->read(source, buffer, size, &got);
  if (status == NN_OK && got < size)
    status = NNLIB_FAIL_CALL(source->ctx, NN_ERROR_FORMAT, source->call,
                             "%s: truncated: the %s needs %zu bytes at "
                             "offset %zu, the file has %zu",
                             source->name, what, size, start, got);
  return status;
}

/* Grows *buffer from *capacity towards `needed` bytes, doubling. */
static nn_status grow(nnlib_source *source, unsigned char **buffer,
                      size_t *capacity, size_t needed) {
  size_t next = *capacity > needed / 2 ? needed : *capacity * 2;
  unsigned char *larger = realloc(*buffer, next);
  if (!larger)
    return NNLIB_FAIL_CALL(source->ctx, NN_ERROR_OUT_OF_MEMORY, source->call,
                           "%s: host allocation of %zu bytes failed",
                           source->name, next);
  *buffer = larger;
  *capacity = next;
  return NN_OK;
}

/* After the payload the file must end: trailing bytes mean the header
 * describes something other than what the file holds. */
static nn_status expect_end(nnlib_source *source) {
  unsigned char extra;
  size_t got = 0, end = source->offset;
  nn_status status = source->read(source, &extra, 1, &got);
  if (status == NN_OK && got)
    status = NNLIB_FAIL_CALL(source->ctx, NN_ERROR_FORMAT, source->call,
                             "%s: unexpected bytes after the data (which "
                             "ends at offset %zu): the header's shape does "
                             "not match the file",
                             source->name, end);
  return status;
}

nn_status nnlib_source_read_tensor(nnlib_source *source, nnlib_tensor *tensor) {
  const size_t needed = tensor->count * nnlib_dtype_size(tensor->dtype);
  size_t capacity = needed < FIRST_CHUNK ? needed : FIRST_CHUNK, filled = 0;
  unsigned char *buffer = malloc(capacity ? capacity : 1);
  if (!buffer)
    return NNLIB_FAIL_CALL(source->ctx, NN_ERROR_OUT_OF_MEMORY, source->call,
                           "%s: host allocation of %zu bytes failed",
                           source->name, capacity);
  nn_status status = NN_OK;
  while (status == NN_OK && filled < needed) {
    if (filled == capacity)
      status = grow(source, &buffer, &capacity, needed);
    size_t got = 0;
    if (status == NN_OK)
      status = source->read(source, buffer + filled, capacity - filled, &got);
    filled += got;
    if (status == NN_OK && got == 0) {
      char shape[160];
      nnlib_tensor_shape_text(tensor, shape, sizeof shape);
      status = NNLIB_FAIL_CALL(source->ctx, NN_ERROR_FORMAT, source->call,
                               "%s: truncated: shape %s of %s needs %zu "
                               "bytes of data, the file has %zu",
                               source->name, shape,
                               nnlib_dtype_name(tensor->dtype), needed, filled);
    }
  }
  if (status == NN_OK)
    status = expect_end(source);
  if (status != NN_OK) {
    free(buffer);
    return status;
  }
  tensor->data = buffer;
  return NN_OK;
}

void nnlib_swap_bytes(void *data, size_t count, size_t size) {
  unsigned char *bytes = data;
  if (size < 2)
    return;
  for (size_t i = 0; i < count; i++, bytes += size)
    for (size_t a = 0, b = size - 1; a < b; a++, b--) {
      unsigned char swap = bytes[a];
      bytes[a] = bytes[b];
      bytes[b] = swap;
    }
}
