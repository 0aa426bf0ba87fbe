/*
 * load_idx.c — IDX files (MNIST, Fashion-MNIST): the bytes 0 0 <type>
 * <rank>, rank big-endian uint32 dimensions, then the elements big-endian
 * in C order. Read through zlib, so foo-ubyte and foo-ubyte.gz both work
 * (a .gz of one member is inflated whole by libdeflate first: load_gzip.c).
 */
#include "load_tensor.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define HEADER_BYTES 4

/* The IDX type byte to a dtype; false for codes the format does not have. */
static bool idx_dtype(unsigned char code, nnlib_dtype *dtype) {
  switch (code) {
  case 0x08:
    *dtype = NNLIB_DTYPE_UINT8;
    return true;
  case 0x09:
    *dtype = NNLIB_DTYPE_INT8;
    return true;
  case 0x0B:
    *dtype = NNLIB_DTYPE_INT16;
    return true;
  case 0x0C:
    *dtype = NNLIB_DTYPE_INT32;
    return true;
  case 0x0D:
    *dtype = NNLIB_DTYPE_FLOAT32;
    return true;
  case 0x0E:
    *dtype = NNLIB_DTYPE_FLOAT64;
    return true;
  default:
    return false;
  }
}

/* The 4-byte magic: two zero bytes, the type, the rank. */
static nn_status read_magic(nnlib_source *source, nnlib_dtype *dtype,
                            size_t *rank) {
  unsigned char magic[HEADER_BYTES];
  nn_status status =
      nnlib_source_read_exact(source, magic, sizeof magic, "IDX header");
  if (status != NN_OK)
    return status;
  if (magic[0] != 0 || magic[1] != 0)
    return NNLIB_FAIL_CALL(source->ctx, NN_ERROR_FORMAT, source->call,
                           "%s: not an IDX file: it starts %02x %02x %02x "
                           "%02x, not 00 00 <type> <rank> (.npy and "
                           "file.h5:dataset are recognized by name; CSV "
                           "files load with nn_dataset_load_csv)",
                           source->name, magic[0], magic[1], magic[2],
                           magic[3]);
  if (!idx_dtype(magic[2], dtype))
    return NNLIB_FAIL_CALL(source->ctx, NN_ERROR_FORMAT, source->call,
                           "%s: unknown IDX element type 0x%02x (known: 08 "
                           "ubyte, 09 byte, 0B short, 0C int, 0D float, 0E "
                           "double)",
                           source->name, magic[2]);
  *rank = magic[3];
  if (*rank == 0 || *rank > NNLIB_TENSOR_MAX_RANK)
    return NNLIB_FAIL_CALL(source->ctx, NN_ERROR_FORMAT, source->call,
                           "%s: IDX rank %zu; need 1 to %d (examples first)",
                           source->name, *rank, NNLIB_TENSOR_MAX_RANK);
  return NN_OK;
}

nn_status nnlib_idx_read(nnlib_source *source, nnlib_tensor *out) {
  nnlib_dtype dtype = NNLIB_DTYPE_UINT8;
  size_t rank = 0;
  nn_status status = read_magic(source, &dtype, &rank);
  unsigned char bytes[4 * NNLIB_TENSOR_MAX_RANK];
  if (status == NN_OK)
    status = nnlib_source_read_exact(source, bytes, 4 * rank, "dimensions");
  if (status != NN_OK)
    return status;
  uint64_t shape[NNLIB_TENSOR_MAX_RANK];
  for (size_t d = 0; d < rank; d++) {
    const unsigned char *b = bytes + 4 * d;
    shape[d] = (uint64_t)b[0] << 24 | (uint64_t)b[1] << 16 |
               (uint64_t)b[2] << 8 | b[3];
  }
  status = nnlib_tensor_set_shape(source->ctx, source->call, source->name, out,
                                  dtype, rank, shape);
  if (status == NN_OK)
    status = nnlib_source_read_tensor(source, out);
  if (status != NN_OK)
    return status;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  nnlib_swap_bytes(out->data, out->count, nnlib_dtype_size(dtype));
#endif
  return NN_OK;
}

nn_status nnlib_idx_load(nn_context *ctx, const char *call, const char *path,
                         nnlib_tensor *out) {
  unsigned char *inflated = NULL;
  size_t inflated_size = 0;
  if (nnlib_gzip_inflate_file(path, &inflated, &inflated_size)) {
    const nnlib_bytes bytes = {inflated, inflated_size};
    nnlib_source source = nnlib_source_from_memory(ctx, call, path, &bytes);
    nn_status status = nnlib_idx_read(&source, out);
    free(inflated);
    return status;
  }
  errno = 0;
  gzFile file = gzopen(path, "rbe");
  if (!file)
    return NNLIB_FAIL_CALL(ctx, NN_ERROR_IO, call, "%s: cannot open: %s", path,
                           errno ? strerror(errno) : "out of memory");
  gzbuffer(file, 1u << 17); /* zlib's default 8 KiB is slow for 47 MB */
  nnlib_source source = nnlib_source_from_gz(ctx, call, path, file);
  nn_status status = nnlib_idx_read(&source, out);
  gzclose(file);
  return status;
}
