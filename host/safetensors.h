/*
 * safetensors.h — a generic, defensive reader and an atomic writer of the
 * safetensors format (https://github.com/huggingface/safetensors):
 *
 *   u64 N (little-endian) | N bytes of UTF-8 JSON header | data buffer
 *
 * The header maps tensor names to {"dtype", "shape", "data_offsets": [begin,
 * end)} (offsets relative to the data buffer) plus an optional
 * "__metadata__" object of string values. Nothing in a file is trusted
 * before it is checked: the reader enforces the reference implementation's
 * rules (header length, JSON object, known dtypes, shape × dtype size ==
 * byte length without overflow, tensors covering the data buffer exactly,
 * without overlaps or gaps, string metadata) and reports every violation as
 * NN_ERROR_FORMAT naming the file and the tensor or field.
 *
 * nn's tensor names and metadata live in checkpoint.c; nothing here knows
 * about models.
 */
#ifndef NN_SAFETENSORS_H
#define NN_SAFETENSORS_H

#include "internal.h"

/* The reference implementation's dtypes, in its order. */
typedef enum nnlib_st_dtype {
  NNLIB_ST_BOOL = 0,
  NNLIB_ST_U8,
  NNLIB_ST_I8,
  NNLIB_ST_F8_E5M2,
  NNLIB_ST_F8_E4M3,
  NNLIB_ST_I16,
  NNLIB_ST_U16,
  NNLIB_ST_F16,
  NNLIB_ST_BF16,
  NNLIB_ST_I32,
  NNLIB_ST_U32,
  NNLIB_ST_F32,
  NNLIB_ST_F64,
  NNLIB_ST_I64,
  NNLIB_ST_U64,
  NNLIB_ST_DTYPE_COUNT
} nnlib_st_dtype;

/* "F32", "BF16", ... */
const char *nnlib_st_dtype_name(nnlib_st_dtype dtype);

/* The reference's cap on the header length (100 MB). */
#define NNLIB_ST_MAX_HEADER 100000000u

/* One tensor of an opened file, already validated. */
typedef struct nnlib_st_tensor {
  const char *name; /* valid while the file is open */
  nnlib_st_dtype dtype;
  size_t rank;
  const uint64_t *shape; /* rank dimensions */
  uint64_t elements;     /* product of the shape (1 for rank 0) */
  uint64_t begin, end;   /* byte range [begin, end) in the data buffer */
} nnlib_st_tensor;

typedef struct nnlib_st_file nnlib_st_file;

/* Opens and validates a file. call names the public function on whose
 * behalf it runs (for messages); errors name the path. */
nn_status nnlib_st_open(nn_context *ctx, const char *call, const char *path,
                        nnlib_st_file **out);

/* The same for size bytes in memory (borrowed until close); name stands in
 * for the path in messages. Used by the fuzzer. */
nn_status nnlib_st_open_memory(nn_context *ctx, const char *call,
                               const char *name, const void *bytes, size_t size,
                               nnlib_st_file **out);

/* NULL is allowed. */
void nnlib_st_close(nnlib_st_file *file);

/* The path (or name) the file was opened under. */
const char *nnlib_st_name(const nnlib_st_file *file);

/* Tensors sorted by name. */
size_t nnlib_st_tensor_count(const nnlib_st_file *file);
const nnlib_st_tensor *nnlib_st_tensor_at(const nnlib_st_file *file,
                                          size_t index);

/* The tensor called name, or NULL. */
const nnlib_st_tensor *nnlib_st_find(const nnlib_st_file *file,
                                     const char *name);

/* A __metadata__ value, or NULL when absent. */
const char *nnlib_st_metadata(const nnlib_st_file *file, const char *key);

/* The context and call the file reports errors on. */
nn_context *nnlib_st_context(const nnlib_st_file *file);
const char *nnlib_st_call(const nnlib_st_file *file);

/* Records "call: path: message [source:line]" as ctx's last error and returns
 * status: every message about a file names it first. */
nn_status nnlib_st_fail_path(nn_context *ctx, nn_status status,
                             const char *call, const char *path,
                             const char *source, int line, const char *format,
                             ...) __attribute__((format(printf, 7, 8)));

#define NNLIB_ST_FAIL_PATH(ctx, status, call, path, ...)                       \
  nnlib_st_fail_path((ctx), (status), (call), (path), __FILE__, __LINE__,      \
                     __VA_ARGS__)

/* The same about an opened file. */
#define NNLIB_ST_FAIL(file, status, ...)                                       \
  NNLIB_ST_FAIL_PATH(nnlib_st_context(file), (status), nnlib_st_call(file),    \
                     nnlib_st_name(file), __VA_ARGS__)

/* "[2, 3]" into buffer (truncated to size). */
void nnlib_st_format_shape(char *buffer, size_t size, const uint64_t *shape,
                           size_t rank);

/* Whether read_f32 can convert the dtype (F32, F64, F16, BF16). */
bool nnlib_st_is_float(nnlib_st_dtype dtype);

/* Reads a floating tensor's tensor->elements values into out, converting to
 * float (F64 values beyond float's range become ±Inf: callers check). Fails
 * with NN_ERROR_UNSUPPORTED for other dtypes. */
nn_status nnlib_st_read_f32(nnlib_st_file *file, const nnlib_st_tensor *tensor,
                            float *out);

/* ------------------------------------------------------------------------ */
/* Writer                                                                    */
/* ------------------------------------------------------------------------ */

/* One F32 tensor to write: host values, row-major, of the given shape. */
typedef struct nnlib_st_entry {
  const char *name;
  size_t rank; /* 0..2 */
  size_t shape[2];
  const float *values;
} nnlib_st_entry;

/* One __metadata__ string. */
typedef struct nnlib_st_pair {
  const char *key;
  const char *value;
} nnlib_st_pair;

/* Writes the tensors, in the given order and contiguously, with the
 * metadata, to path atomically: a temporary file "path.tmp.XXXXXX" in the
 * same directory is written, flushed, fsync'ed and renamed over path. On
 * any failure the temporary file is removed and an existing path is left as
 * it was. The header is padded with spaces to a multiple of 8 bytes, as the
 * reference writer does. */
nn_status nnlib_st_write(nn_context *ctx, const char *call, const char *path,
                         const nnlib_st_pair *metadata, size_t metadata_count,
                         const nnlib_st_entry *entries, size_t entry_count);

#endif /* NN_SAFETENSORS_H */
