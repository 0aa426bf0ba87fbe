/*
 * load_tensor.h — what the data loaders share: a small n-dimensional tensor
 * read from a file, the byte sources the binary parsers read from, each
 * format's parser, and the conversions of a tensor into X or Y.
 *
 * A tensor's first dimension counts examples; the rest is one example in C
 * order. Its data is therefore sample-major, which is exactly X (n_x × m)
 * column-major: converting never transposes.
 */
#ifndef NN_LOAD_TENSOR_H
#define NN_LOAD_TENSOR_H

#include "internal.h"

#include <stdio.h>
#include <zlib.h>

/* Element types a file may hold; data is in the host's byte order. */
typedef enum nnlib_dtype {
  NNLIB_DTYPE_UINT8 = 0,
  NNLIB_DTYPE_INT8,
  NNLIB_DTYPE_UINT16,
  NNLIB_DTYPE_INT16,
  NNLIB_DTYPE_UINT32,
  NNLIB_DTYPE_INT32,
  NNLIB_DTYPE_INT64,
  NNLIB_DTYPE_FLOAT32,
  NNLIB_DTYPE_FLOAT64
} nnlib_dtype;

/* IDX allows at most 255 dimensions; nothing we load needs more than 8. */
#define NNLIB_TENSOR_MAX_RANK 8

typedef struct nnlib_tensor {
  nnlib_dtype dtype;
  size_t rank;                         /* 1..NNLIB_TENSOR_MAX_RANK */
  size_t shape[NNLIB_TENSOR_MAX_RANK]; /* shape[0] = m, examples */
  size_t count;                        /* product of shape */
  void *data;                          /* count elements, C order */
} nnlib_tensor;

size_t nnlib_dtype_size(nnlib_dtype dtype);
const char *nnlib_dtype_name(nnlib_dtype dtype);

/* Sets dtype, rank and shape from a file's header and computes count,
 * rejecting rank 0 or > NNLIB_TENSOR_MAX_RANK and shapes whose byte size
 * overflows (NN_ERROR_FORMAT, naming file). Allocates nothing. */
nn_status nnlib_tensor_set_shape(nn_context *ctx, const char *call,
                                 const char *file, nnlib_tensor *tensor,
                                 nnlib_dtype dtype, size_t rank,
                                 const uint64_t *shape);

/* "(60000, 28, 28)" into text. */
void nnlib_tensor_shape_text(const nnlib_tensor *tensor, char *text,
                             size_t size);

/* Frees the data; the tensor is left empty. NULL is allowed. */
void nnlib_tensor_free(nnlib_tensor *tensor);

/* X (n_x × m) from a tensor of shape (m, ...): n_x is the product of the
 * other dimensions (1 for a rank-1 tensor). uint8 is divided by 255 when
 * options->scale_uint8. Rejects NaN/Inf naming the example and feature.
 * A float32 tensor's data is taken over rather than copied. */
nn_status nnlib_tensor_to_inputs(nn_context *ctx, const char *call,
                                 const char *file, nnlib_tensor *tensor,
                                 const nn_load_options *options, float **x,
                                 size_t *input_width, size_t *example_count);

/* Y (n_y × m) from a label tensor, per options->targets:
 *   CLASSES: shape (m) or (m, 1) of integer ids -> one-hot, n_y classes;
 *   BINARY:  shape (m) or (m, 1) of 0/1 -> one row;
 *   VALUES:  shape (m, ...) -> the rest flattened, as for X. */
nn_status nnlib_tensor_to_targets(nn_context *ctx, const char *call,
                                  const char *file, nnlib_tensor *tensor,
                                  const nn_load_options *options, float **y,
                                  size_t *target_width, size_t *example_count);

/* ------------------------------------------------------------------------ */
/* Byte sources: a FILE or a gzip stream, read with bounded allocations     */
/* ------------------------------------------------------------------------ */

typedef struct nnlib_source nnlib_source;

struct nnlib_source {
  nn_context *ctx;
  const char *call; /* the public function reading, for messages */
  const char *name; /* the file, for messages */
  /* Reads up to size bytes into buffer; *got = 0 at end of file. On a read
   * error records it (naming the file) and returns its status. */
  nn_status (*read)(nnlib_source *source, void *buffer, size_t size,
                    size_t *got);
  void *handle;  /* FILE * or gzFile */
  size_t offset; /* bytes read so far, for messages */
};

nnlib_source nnlib_source_from_file(nn_context *ctx, const char *call,
                                    const char *name, FILE *file);
nnlib_source nnlib_source_from_gz(nn_context *ctx, const char *call,
                                  const char *name, gzFile file);

/* Bytes in memory (a file inflated whole), read by a source over them. */
typedef struct nnlib_bytes {
  const unsigned char *data;
  size_t size;
} nnlib_bytes;

nnlib_source nnlib_source_from_memory(nn_context *ctx, const char *call,
                                      const char *name,
                                      const nnlib_bytes *bytes);

/* The fast path for gzip files (load_gzip.c): in, one gzip member, inflated
 * whole into *out (malloc'd, out_size bytes). False, with *out NULL, for
 * anything else — not gzip, several members, corrupt, over 4 GiB, out of
 * memory — which the caller then streams through zlib, whose errors name
 * what is wrong. */
bool nnlib_gzip_inflate(const unsigned char *in, size_t in_size,
                        unsigned char **out, size_t *out_size);
/* The same for the file at path (false too if it cannot be opened). */
bool nnlib_gzip_inflate_file(const char *path, unsigned char **out,
                             size_t *out_size);

/* Reads exactly size bytes of `what` ("header", "shape") or fails with
 * NN_ERROR_FORMAT: "truncated". */
nn_status nnlib_source_read_exact(nnlib_source *source, void *buffer,
                                  size_t size, const char *what);

/* Reads the tensor's count elements into newly allocated data. The header's
 * size is not trusted: the buffer grows with what the file really holds, so
 * a short file claiming 10^12 elements fails after a small allocation. Then
 * requires the end of the file (trailing bytes are NN_ERROR_FORMAT). */
nn_status nnlib_source_read_tensor(nnlib_source *source, nnlib_tensor *tensor);

/* Reverses the bytes of each of count elements of the given size. */
void nnlib_swap_bytes(void *data, size_t count, size_t size);

/* ------------------------------------------------------------------------ */
/* Parsers, one per format                                                   */
/* ------------------------------------------------------------------------ */

/* IDX (big-endian; magic 0 0 type rank) from a gzip, plain or memory
 * source. */
nn_status nnlib_idx_read(nnlib_source *source, nnlib_tensor *out);
/* Opens path (plain or .gz; a .gz of one member is inflated whole, the
 * rest streamed) and reads it: NN_ERROR_IO if unreadable. */
nn_status nnlib_idx_load(nn_context *ctx, const char *call, const char *path,
                         nnlib_tensor *out);

/* NumPy .npy, versions 1.0 to 3.0, little-endian, C order. */
nn_status nnlib_npy_read(nnlib_source *source, nnlib_tensor *out);
nn_status nnlib_npy_load(nn_context *ctx, const char *call, const char *path,
                         nnlib_tensor *out);

/* One dataset of an HDF5 file. file_label names the file in messages. The
 * _read form takes an open file (hid_t as int64_t, to keep hdf5.h out of
 * this header). */
nn_status nnlib_hdf5_read(nn_context *ctx, const char *call,
                          const char *file_label, int64_t file,
                          const char *dataset, nnlib_tensor *out);
nn_status nnlib_hdf5_load(nn_context *ctx, const char *call, const char *path,
                          const char *dataset, nnlib_tensor *out);

/* CSV with a header row: inputs (m, columns - 1) float32 and, when
 * target_column is not NULL, targets (m) float64. name labels messages. */
nn_status nnlib_csv_read(nn_context *ctx, const char *call, const char *name,
                         FILE *file, const char *target_column,
                         nnlib_tensor *inputs, nnlib_tensor *targets);

#endif /* NN_LOAD_TENSOR_H */
