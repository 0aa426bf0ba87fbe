/*
 * safetensors.c — the reader: opens a file (or bytes in memory), checks
 * its header against every rule of the reference implementation before
 * anything in it is used, and reads floating tensors as float32.
 *
 * Layout: u64 N (little-endian) | N bytes of UTF-8 JSON | data buffer.
 * Tensors are read on demand from the open stream, so a large file with
 * many tensors costs only the ones asked for.
 */
#define _GNU_SOURCE /* fopen's "e" (O_CLOEXEC) */
#include "safetensors.h"

#include <cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const struct {
  const char *name;
  size_t size; /* bytes per element */
} dtypes[NNLIB_ST_DTYPE_COUNT] = {
    {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1},
    {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
    {"U32", 4},  {"F32", 4}, {"F64", 8}, {"I64", 8},     {"U64", 8}};

/* JSON numbers are doubles: integers are exact up to 2^53. */
#define JSON_MAX_INTEGER 9007199254740992.0

struct nnlib_st_file {
  nn_context *ctx;
  const char *call;
  char *name;                  /* the path, for messages */
  FILE *stream;                /* NULL when reading from memory */
  const unsigned char *memory; /* the whole file, when from memory */
  uint64_t size;               /* bytes in the file */
  uint64_t data_start;         /* 8 + N */
  uint64_t data_size;          /* size - 8 - N */
  cJSON *header;
  const cJSON *metadata;    /* "__metadata__", or NULL */
  nnlib_st_tensor *tensors; /* sorted by name */
  size_t tensor_count;
  uint64_t *dims; /* every tensor's shape, back to back */
};

const char *nnlib_st_dtype_name(nnlib_st_dtype dtype) {
  return (int)dtype >= 0 && dtype < NNLIB_ST_DTYPE_COUNT ? dtypes[dtype].name
                                                         : "?";
}

nn_context *nnlib_st_context(const nnlib_st_file *file) {
  return file->ctx;
}

const char *nnlib_st_call(const nnlib_st_file *file) {
  return file->call;
}

const char *nnlib_st_name(const nnlib_st_file *file) {
  return file->name;
}

nn_status nnlib_st_fail_path(nn_context *ctx, nn_status status,
                             const char *call, const char *path,
                             const char *source, int line, const char *format,
                             ...) {
  char message[NNLIB_ERROR_CAPACITY];
  va_list args;
  va_start(args, format);
  vsnprintf(message, sizeof message, format, args);
  va_end(args);
  return nnlib_fail(ctx, status, call, source, line, "%s: %s", path, message);
}

void nnlib_st_format_shape(char *buffer, size_t size, const uint64_t *shape,
                           size_t rank) {
  size_t used = (size_t)snprintf(buffer, size, "[");
  for (size_t i = 0; i < rank && used < size; i++)
    used += (size_t)snprintf(buffer + used, size - used, "%s%llu",
                             i ? ", " : "", (unsigned long long)shape[i]);
  if (used < size)
    snprintf(buffer + used, size - used, "]");
}

/* ------------------------------------------------------------------------ */
/* Raw access                                                                */
/* ------------------------------------------------------------------------ */

static uint64_t load_le(const unsigned char *bytes, size_t count) {
  uint64_t value = 0;
  for (size_t i = count; i-- > 0;)
    value = value << 8 | bytes[i];
  return value;
}

/* count bytes at offset into dst; the caller has checked the range against
 * the size, so a short read means the file changed under us. */
static nn_status read_exact(nnlib_st_file *file, uint64_t offset, void *dst,
                            size_t count) {
  if (file->memory) {
    memcpy(dst, file->memory + offset, count);
    return NN_OK;
  }
  if (fseeko(file->stream, (off_t)offset, SEEK_SET) != 0)
    return NNLIB_ST_FAIL(file, NN_ERROR_IO, "cannot seek to byte %llu: %s",
                         (unsigned long long)offset, strerror(errno));
  if (fread(dst, 1, count, file->stream) == count)
    return NN_OK;
  if (ferror(file->stream))
    return NNLIB_ST_FAIL(file, NN_ERROR_IO, "read failed at byte %llu: %s",
                         (unsigned long long)offset, strerror(errno));
  return NNLIB_ST_FAIL(file, NN_ERROR_FORMAT,
                       "the file ended before byte %llu (did it change while "
                       "being read?)",
                       (unsigned long long)(offset + count));
}

/* ------------------------------------------------------------------------ */
/* Header checks                                                             */
/* ------------------------------------------------------------------------ */

/* Length of the UTF-8 sequence at s (at most size bytes), or 0 if it is not
 * valid (overlong forms, surrogates and code points past U+10FFFF
 * included). */
static size_t utf8_sequence(const unsigned char *s, size_t size) {
  static const uint32_t minimum[5] = {0, 0, 0x80, 0x800, 0x10000};
  size_t length = s[0] < 0x80             ? 1
                  : (s[0] & 0xE0) == 0xC0 ? 2
                  : (s[0] & 0xF0) == 0xE0 ? 3
                  : (s[0] & 0xF8) == 0xF0 ? 4
                                          : 0;
  if (length <= 1 || length > size)
    return length <= size ? length : 0;
  uint32_t code = s[0] & (0x7Fu >> length);
  for (size_t k = 1; k < length; k++) {
    if ((s[k] & 0xC0) != 0x80)
      return 0;
    code = code << 6 | (s[k] & 0x3Fu);
  }
  if (code < minimum[length] || code > 0x10FFFF ||
      (code >= 0xD800 && code <= 0xDFFF))
    return 0;
  return length;
}

/* Offset of the first byte that is not valid UTF-8, or size. */
static size_t utf8_invalid_at(const unsigned char *s, size_t size) {
  size_t i = 0;
  while (i < size) {
    size_t length = utf8_sequence(s + i, size - i);
    if (length == 0)
      return i;
    i += length;
  }
  return size;
}

/* A JSON number that is an integer in 0..2^53. */
static bool json_index(const cJSON *item, uint64_t *out) {
  if (!cJSON_IsNumber(item))
    return false;
  double value = item->valuedouble;
  if (!(value >= 0.0 && value <= JSON_MAX_INTEGER) ||
      value != (double)(uint64_t)value)
    return false;
  *out = (uint64_t)value;
  return true;
}

static int compare_strings(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The first name that appears twice among count names (sorted in place),
 * or NULL. */
static const char *first_duplicate(const char **names, size_t count) {
  qsort(names, count, sizeof *names, compare_strings);
  for (size_t i = 1; i < count; i++)
    if (strcmp(names[i - 1], names[i]) == 0)
      return names[i];
  return NULL;
}

/* Rejects a key that appears twice in object (cJSON keeps both; the
 * reference would silently keep one). */
static nn_status check_unique_keys(nnlib_st_file *file, const cJSON *object,
                                   const char *where) {
  size_t count = (size_t)cJSON_GetArraySize(object), i = 0;
  const char **names = NULL;
  nn_status status =
      nnlib_host_alloc(file->ctx, count, sizeof *names, (void **)&names);
  if (status != NN_OK)
    return status;
  for (const cJSON *item = object->child; item; item = item->next)
    names[i++] = item->string;
  const char *duplicate = first_duplicate(names, count);
  if (duplicate)
    status = NNLIB_ST_FAIL(file, NN_ERROR_FORMAT,
                           "%s has the key \"%.200s\" more than once", where,
                           duplicate);
  free(names);
  return status;
}

static nn_status check_metadata(nnlib_st_file *file, const cJSON *metadata) {
  if (!cJSON_IsObject(metadata))
    return NNLIB_ST_FAIL(file, NN_ERROR_FORMAT,
                         "__metadata__ is not a JSON object");
  for (const cJSON *item = metadata->child; item; item = item->next)
    if (!cJSON_IsString(item))
      return NNLIB_ST_FAIL(file, NN_ERROR_FORMAT,
                           "__metadata__ \"%.200s\" is not a string",
                           item->string);
  return check_unique_keys(file, metadata, "__metadata__");
}

/* ------------------------------------------------------------------------ */
/* Tensor entries                                                            */
/* ------------------------------------------------------------------------ */

static nn_status parse_dtype(nnlib_st_file *file, const cJSON *entry,
                             nnlib_st_tensor *tensor) {
  const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(entry, "dtype");
  if (!cJSON_IsString(dtype))
    return NNLIB_ST_FAIL(file, NN_ERROR_FORMAT,
                         "tensor \"%.200s\" has no \"dtype\" string",
                         tensor->name);
  for (int d = 0; d < NNLIB_ST_DTYPE_COUNT; d++)
    if (strcmp(dtype->valuestring, dtypes[d].name) == 0) {
      tensor->dtype = (nnlib_st_dtype)d;
      return NN_OK;
    }
  return NNLIB_ST_FAIL(file, NN_ERROR_FORMAT,
                       "tensor \"%.200s\" has unknown dtype \"%.40s\"",
                       tensor->name, dtype->valuestring);
}

/* Fills the shape (into dims) and the element count, rejecting overflow as
 * the reference does even when a later dimension is 0. */
static nn_status parse_shape(nnlib_st_file *file, const cJSON *entry,
                             nnlib_st_tensor *tensor, uint64_t *dims) {
  const cJSON *shape = cJSON_GetObjectItemCaseSensitive(entry, "shape");
  uint64_t elements = 1;
  size_t rank = 0;
  for (const cJSON *item = shape->child; item; item = item->next, rank++) {
    if (!json_index(item, &dims[rank]))
      return NNLIB_ST_FAIL(file, NN_ERROR_FORMAT,
                           "tensor \"%.200s\": shape element %zu is not an "
                           "integer in 0..2^53",
                           tensor->name, rank);
    if (dims[rank] != 0 && elements > UINT64_MAX / dims[rank])
      return NNLIB_ST_FAIL(file, NN_ERROR_FORMAT,
                           "tensor \"%.200s\": the element count of its "
                           "shape overflows",
                           tensor->name);
    elements *= dims[rank];
  }
  tensor->rank = rank;
  tensor->shape = dims;
  tensor->elements = elements;
  if (elements > UINT64_MAX / dtypes[tensor->dtype].size)
    return NNLIB_ST_FAIL(file, NN_ERROR_FORMAT,
                         "tensor \"%.200s\": its byte count overflows",
                         tensor->name);
  return NN_OK;
}

static nn_status parse_offsets(nnlib_st_file *file, const cJSON *entry,
                               nnlib_st_tensor *tensor) {
  const cJSON *offsets =
      cJSON_GetObjectItemCaseSensitive(entry, "data_offsets");
  if (!cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2 ||
      !json_index(offsets->child, &tensor->begin) ||
      !json_index(offsets->child->next, &tensor->end))
    return NNLIB_ST_FAIL(file, NN_ERROR_FORMAT,
                         "tensor \"%.200s\": \"data_offsets\" is not an "
                         "array of two integers in 0..2^53",
                         tensor->name);
  const uint64_t begin = tensor->begin, end = tensor->end;
  const uint64_t bytes = tensor->elements * dtypes[tensor->dtype].size;
  if (begin > end || end > file->data_size)
    return NNLIB_ST_FAIL(file, NN_ERROR_FORMAT,
                         "tensor \"%.200s\": data_offsets [%llu, %llu) lie "
                         "outside the %llu-byte data buffer",
                         tensor->name, (unsigned long long)begin,
                         (unsigned long long)end,
                         (unsigned long long)file->data_size);
  if (end - begin != bytes) {
    char shape[128];
    nnlib_st_format_shape(shape, sizeof shape, tensor->shape, tensor->rank);
    return NNLIB_ST_FAIL(file, NN_ERROR_FORMAT,
                         "tensor \"%.200s\": data_offsets [%llu, %llu) hold "
                         "%llu bytes, but shape %s of %s needs %llu",
                         tensor->name, (unsigned long long)begin,
                         (unsigned long long)end,
                         (unsigned long long)(end - begin), shape,
                         dtypes[tensor->dtype].name, (unsigned long long)bytes);
  }
  return NN_OK;
}

static nn_status parse_tensor(nnlib_st_file *file, const cJSON *entry,
                              nnlib_st_tensor *tensor, uint64_t *dims) {
  tensor->name = entry->string;
  nn_status status = parse_dtype(file, entry, tensor);
  if (status == NN_OK)
    status = parse_shape(file, entry, tensor, dims);
  if (status == NN_OK)
    status = parse_offsets(file, entry, tensor);
  return status;
}

static int compare_by_offsets(const void *a, const void *b) {
  const nnlib_st_tensor *x = *(const nnlib_st_tensor *const *)a;
  const nnlib_st_tensor *y = *(const nnlib_st_tensor *const *)b;
  if (x->begin != y->begin)
    return x->begin < y->begin ? -1 : 1;
  return x->end < y->end ? -1 : x->end > y->end;
}

/* Walks the tensors by offset: each must start where the previous ended and
 * the last must end at the end of the data buffer, as the reference
 * requires (no overlaps, no gaps, no unclaimed bytes). */
static nn_status check_tiling(nnlib_st_file *file,
                              const nnlib_st_tensor **by_offset) {
  uint64_t expected = 0;
  for (size_t i = 0; i < file->tensor_count; i++) {
    const nnlib_st_tensor *tensor = by_offset[i];
    if (tensor->begin < expected)
      return NNLIB_ST_FAIL(file, NN_ERROR_FORMAT,
                           "tensor \"%.200s\" at [%llu, %llu) overlaps "
                           "tensor \"%.200s\"",
                           tensor->name, (unsigned long long)tensor->begin,
                           (unsigned long long)tensor->end,
                           by_offset[i - 1]->name);
    if (tensor->begin > expected)
      return NNLIB_ST_FAIL(
          file, NN_ERROR_FORMAT,
          "bytes [%llu, %llu) of the data buffer belong to no tensor",
          (unsigned long long)expected, (unsigned long long)tensor->begin);
    expected = tensor->end;
  }
  if (expected != file->data_size)
    return NNLIB_ST_FAIL(file, NN_ERROR_FORMAT,
                         "the tensors cover %llu bytes, but the data buffer "
                         "has %llu",
                         (unsigned long long)expected,
                         (unsigned long long)file->data_size);
  return NN_OK;
}

static nn_status check_layout(nnlib_st_file *file) {
  const nnlib_st_tensor **by_offset = NULL;
  nn_status status = nnlib_host_alloc(file->ctx, file->tensor_count,
                                      sizeof *by_offset, (void **)&by_offset);
  if (status != NN_OK)
    return status;
  for (size_t i = 0; i < file->tensor_count; i++)
    by_offset[i] = &file->tensors[i];
  qsort(by_offset, file->tensor_count, sizeof *by_offset, compare_by_offsets);
  status = check_tiling(file, by_offset);
  free(by_offset);
  return status;
}

static int compare_by_name(const void *a, const void *b) {
  return strcmp(((const nnlib_st_tensor *)a)->name,
                ((const nnlib_st_tensor *)b)->name);
}

/* Counts the tensors and their dimensions, and finds __metadata__, so that
 * the tensor table and the shapes take one allocation each. */
static nn_status count_entries(nnlib_st_file *file, size_t *dim_count) {
  *dim_count = 0;
  for (const cJSON *item = file->header->child; item; item = item->next) {
    if (strcmp(item->string, "__metadata__") == 0) {
      file->metadata = item;
      continue;
    }
    const cJSON *shape = cJSON_IsObject(item)
                             ? cJSON_GetObjectItemCaseSensitive(item, "shape")
                             : NULL;
    if (!cJSON_IsArray(shape))
      return NNLIB_ST_FAIL(file, NN_ERROR_FORMAT,
                           "tensor \"%.200s\" is not an object with a "
                           "\"shape\" array",
                           item->string);
    *dim_count += (size_t)cJSON_GetArraySize(shape);
    file->tensor_count++;
  }
  return NN_OK;
}

static nn_status collect_tensors(nnlib_st_file *file) {
  size_t dim_count = 0;
  nn_status status = check_unique_keys(file, file->header, "the header");
  if (status == NN_OK)
    status = count_entries(file, &dim_count);
  if (status == NN_OK && file->metadata)
    status = check_metadata(file, file->metadata);
  if (status == NN_OK)
    status = nnlib_host_alloc(file->ctx, file->tensor_count,
                              sizeof *file->tensors, (void **)&file->tensors);
  if (status == NN_OK)
    status = nnlib_host_alloc(file->ctx, dim_count, sizeof *file->dims,
                              (void **)&file->dims);
  size_t t = 0, d = 0;
  for (const cJSON *item = file->header->child; status == NN_OK && item;
       item = item->next) {
    if (item == file->metadata)
      continue;
    status = parse_tensor(file, item, &file->tensors[t], file->dims + d);
    d += file->tensors[t++].rank;
  }
  if (status == NN_OK)
    status = check_layout(file);
  if (status == NN_OK)
    qsort(file->tensors, file->tensor_count, sizeof *file->tensors,
          compare_by_name);
  return status;
}

static bool is_json_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Parses the N header bytes (text[length] is a NUL the caller added). */
static nn_status parse_header(nnlib_st_file *file, const char *text,
                              size_t length) {
  if (memchr(text, '\0', length))
    return NNLIB_ST_FAIL(file, NN_ERROR_FORMAT,
                         "the header contains a NUL byte");
  size_t bad = utf8_invalid_at((const unsigned char *)text, length);
  if (bad != length)
    return NNLIB_ST_FAIL(file, NN_ERROR_FORMAT,
                         "the header is not valid UTF-8 (byte %zu)", bad);
  const char *end = NULL;
  file->header = cJSON_ParseWithLengthOpts(text, length, &end, 0);
  if (!file->header)
    return NNLIB_ST_FAIL(file, NN_ERROR_FORMAT,
                         "the %zu-byte header is not valid JSON (error near "
                         "byte %zu)",
                         length, end ? (size_t)(end - text) : (size_t)0);
  for (; end < text + length; end++)
    if (!is_json_space(*end))
      return NNLIB_ST_FAIL(file, NN_ERROR_FORMAT,
                           "the header has bytes after its JSON value (at "
                           "byte %zu)",
                           (size_t)(end - text));
  if (!cJSON_IsObject(file->header))
    return NNLIB_ST_FAIL(file, NN_ERROR_FORMAT,
                         "the header is not a JSON object");
  return collect_tensors(file);
}

/* Reads and checks the header length, then the header. */
static nn_status read_header(nnlib_st_file *file) {
  unsigned char prefix[8];
  if (file->size < sizeof prefix)
    return NNLIB_ST_FAIL(file, NN_ERROR_FORMAT,
                         "the file has %llu bytes, fewer than the 8 of the "
                         "header length: not a safetensors file",
                         (unsigned long long)file->size);
  nn_status status = read_exact(file, 0, prefix, sizeof prefix);
  if (status != NN_OK)
    return status;
  const uint64_t length = load_le(prefix, sizeof prefix);
  if (length > file->size - sizeof prefix || length > NNLIB_ST_MAX_HEADER)
    return NNLIB_ST_FAIL(file, NN_ERROR_FORMAT,
                         "the header length %llu exceeds the %llu bytes "
                         "after it (or the %u-byte limit): not a "
                         "safetensors file",
                         (unsigned long long)length,
                         (unsigned long long)(file->size - sizeof prefix),
                         NNLIB_ST_MAX_HEADER);
  file->data_start = sizeof prefix + length;
  file->data_size = file->size - file->data_start;
  char *text = NULL;
  status = nnlib_host_alloc(file->ctx, (size_t)length + 1, 1, (void **)&text);
  if (status == NN_OK)
    status = read_exact(file, sizeof prefix, text, (size_t)length);
  if (status == NN_OK)
    status = parse_header(file, text, (size_t)length);
  free(text);
  return status;
}

/* ------------------------------------------------------------------------ */
/* Opening                                                                   */
/* ------------------------------------------------------------------------ */

static nn_status new_file(nn_context *ctx, const char *call, const char *name,
                          nnlib_st_file **out) {
  nn_status status = nnlib_host_alloc(ctx, 1, sizeof **out, (void **)out);
  if (status != NN_OK)
    return status;
  (*out)->ctx = ctx;
  (*out)->call = call;
  size_t length = strlen(name);
  status = nnlib_host_alloc(ctx, length + 1, 1, (void **)&(*out)->name);
  if (status == NN_OK)
    memcpy((*out)->name, name, length + 1);
  return status;
}

static nn_status open_stream(nnlib_st_file *file) {
  file->stream = fopen(file->name, "rbe");
  if (!file->stream)
    return NNLIB_ST_FAIL(file, NN_ERROR_IO, "cannot open: %s", strerror(errno));
  struct stat info;
  if (fstat(fileno(file->stream), &info) != 0)
    return NNLIB_ST_FAIL(file, NN_ERROR_IO, "cannot stat: %s", strerror(errno));
  if (!S_ISREG(info.st_mode))
    return NNLIB_ST_FAIL(file, NN_ERROR_IO, "not a regular file");
  file->size = (uint64_t)info.st_size;
  return NN_OK;
}

/* Takes ownership of a half-made file: closes it on failure. */
static nn_status finish_open(nnlib_st_file *file, nn_status status,
                             nnlib_st_file **out) {
  if (status == NN_OK)
    status = read_header(file);
  if (status != NN_OK) {
    nnlib_st_close(file);
    return status;
  }
  *out = file;
  return NN_OK;
}

nn_status nnlib_st_open(nn_context *ctx, const char *call, const char *path,
                        nnlib_st_file **out) {
  *out = NULL;
  nnlib_st_file *file = NULL;
  nn_status status = new_file(ctx, call, path, &file);
  if (status == NN_OK)
    status = open_stream(file);
  return file ? finish_open(file, status, out) : status;
}

nn_status nnlib_st_open_memory(nn_context *ctx, const char *call,
                               const char *name, const void *bytes, size_t size,
                               nnlib_st_file **out) {
  *out = NULL;
  nnlib_st_file *file = NULL;
  nn_status status = new_file(ctx, call, name, &file);
  if (status == NN_OK) {
    /* A non-NULL pointer even for 0 bytes: memory marks the source. */
    file->memory = bytes ? bytes : (const unsigned char *)"";
    file->size = bytes ? size : 0;
  }
  return file ? finish_open(file, status, out) : status;
}

void nnlib_st_close(nnlib_st_file *file) {
  if (!file)
    return;
  if (file->stream)
    fclose(file->stream);
  cJSON_Delete(file->header);
  free(file->tensors);
  free(file->dims);
  free(file->name);
  free(file);
}

/* ------------------------------------------------------------------------ */
/* Queries and reading                                                       */
/* ------------------------------------------------------------------------ */

size_t nnlib_st_tensor_count(const nnlib_st_file *file) {
  return file->tensor_count;
}

const nnlib_st_tensor *nnlib_st_tensor_at(const nnlib_st_file *file,
                                          size_t index) {
  return index < file->tensor_count ? &file->tensors[index] : NULL;
}

const nnlib_st_tensor *nnlib_st_find(const nnlib_st_file *file,
                                     const char *name) {
  nnlib_st_tensor key = {.name = name};
  return bsearch(&key, file->tensors, file->tensor_count, sizeof *file->tensors,
                 compare_by_name);
}

const char *nnlib_st_metadata(const nnlib_st_file *file, const char *key) {
  if (!file->metadata)
    return NULL;
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(file->metadata, key);
  return cJSON_IsString(item) ? item->valuestring : NULL;
}

bool nnlib_st_is_float(nnlib_st_dtype dtype) {
  return dtype == NNLIB_ST_F32 || dtype == NNLIB_ST_F64 ||
         dtype == NNLIB_ST_F16 || dtype == NNLIB_ST_BF16;
}

static float float_from_bits(uint32_t bits) {
  float value;
  memcpy(&value, &bits, sizeof value);
  return value;
}

/* IEEE half: 1 sign, 5 exponent (bias 15), 10 mantissa bits. */
static float half_to_float(uint16_t half) {
  const uint32_t sign = (uint32_t)(half & 0x8000u) << 16;
  const uint32_t exponent = (half >> 10) & 0x1Fu, mantissa = half & 0x3FFu;
  if (exponent == 0x1F) /* Inf, NaN */
    return float_from_bits(sign | 0x7F800000u | mantissa << 13);
  if (exponent == 0) { /* zero, subnormal: mantissa · 2^-24 */
    float magnitude = (float)mantissa * (1.0f / 16777216.0f);
    return sign ? -magnitude : magnitude;
  }
  return float_from_bits(sign | (exponent + 112) << 23 | mantissa << 13);
}

static float element_to_float(nnlib_st_dtype dtype,
                              const unsigned char *bytes) {
  switch (dtype) {
  case NNLIB_ST_F64: {
    uint64_t bits = load_le(bytes, 8);
    double value;
    memcpy(&value, &bits, sizeof value);
    return (float)value;
  }
  case NNLIB_ST_F16:
    return half_to_float((uint16_t)load_le(bytes, 2));
  case NNLIB_ST_BF16: /* the top half of a float32 */
    return float_from_bits((uint32_t)load_le(bytes, 2) << 16);
  default:
    return float_from_bits((uint32_t)load_le(bytes, 4));
  }
}

nn_status nnlib_st_read_f32(nnlib_st_file *file, const nnlib_st_tensor *tensor,
                            float *out) {
  if (!nnlib_st_is_float(tensor->dtype))
    return NNLIB_ST_FAIL(file, NN_ERROR_UNSUPPORTED,
                         "tensor \"%.200s\" has dtype %s; only F32, F64, F16 "
                         "and BF16 can be read as floats",
                         tensor->name, dtypes[tensor->dtype].name);
  unsigned char chunk[16384];
  const size_t size = dtypes[tensor->dtype].size,
               per_chunk = sizeof chunk / size;
  const uint64_t start = file->data_start + tensor->begin;
  for (uint64_t done = 0; done < tensor->elements;) {
    uint64_t left = tensor->elements - done;
    size_t count = left < per_chunk ? (size_t)left : per_chunk;
    nn_status status =
        read_exact(file, start + done * size, chunk, count * size);
    if (status != NN_OK)
      return status;
    for (size_t i = 0; i < count; i++)
      out[done + i] = element_to_float(tensor->dtype, chunk + i * size);
    done += count;
  }
  return NN_OK;
}
