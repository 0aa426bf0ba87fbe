/*
 * load_npy.c — NumPy .npy files, format versions 1.0, 2.0 and 3.0:
 * "\x93NUMPY", major, minor, the header length (uint16 LE for 1.x, uint32 LE
 * for 2.x/3.x), a Python dict literal such as
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (60000, 784), }
 * padded with spaces and a newline, then the array's bytes.
 */
#include "load_tensor.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MAGIC "\x93NUMPY"
#define MAGIC_BYTES 6
/* numpy itself refuses headers over 10000 bytes unless told otherwise. */
#define MAX_HEADER_BYTES ((size_t)1 << 16)
#define MAX_DESCR 32

/* A cursor over the header text, and where the file's name is. */
typedef struct header_parser {
  nnlib_source *source;
  const char *start, *at, *end;
} header_parser;

/* The parsed dict. */
typedef struct npy_header {
  char descr[MAX_DESCR];
  bool fortran_order;
  size_t rank;
  uint64_t shape[NNLIB_TENSOR_MAX_RANK];
  bool seen_descr, seen_order, seen_shape;
} npy_header;

static nn_status malformed(header_parser *p, const char *expected) {
  return NNLIB_FAIL_CALL(p->source->ctx, NN_ERROR_FORMAT, p->source->call,
                         "%s: malformed .npy header at character %zu: "
                         "expected %s",
                         p->source->name, (size_t)(p->at - p->start), expected);
}

static void skip_space(header_parser *p) {
  while (p->at < p->end &&
         (*p->at == ' ' || *p->at == '\t' || *p->at == '\n' || *p->at == '\r'))
    p->at++;
}

/* Consumes c (after spaces) if it is next. */
static bool accept(header_parser *p, char c) {
  skip_space(p);
  if (p->at < p->end && *p->at == c) {
    p->at++;
    return true;
  }
  return false;
}

/* A quoted string without escapes, into out[size]. */
static nn_status parse_string(header_parser *p, char *out, size_t size) {
  skip_space(p);
  char quote = p->at < p->end ? *p->at : 0;
  if (quote != '\'' && quote != '"')
    return malformed(p, "a quoted string");
  size_t length = 0;
  for (p->at++; p->at < p->end && *p->at != quote; p->at++) {
    if (*p->at == '\\' || length + 1 >= size)
      return malformed(p, "a short string without escapes");
    out[length++] = *p->at;
  }
  if (p->at == p->end)
    return malformed(p, "a closing quote");
  p->at++;
  out[length] = '\0';
  return NN_OK;
}

static nn_status parse_bool(header_parser *p, bool *out) {
  skip_space(p);
  size_t left = (size_t)(p->end - p->at);
  if (left >= 4 && memcmp(p->at, "True", 4) == 0) {
    *out = true;
    p->at += 4;
  } else if (left >= 5 && memcmp(p->at, "False", 5) == 0) {
    *out = false;
    p->at += 5;
  } else {
    return malformed(p, "True or False");
  }
  return NN_OK;
}

static nn_status parse_dimension(header_parser *p, uint64_t *out) {
  skip_space(p);
  if (p->at == p->end || *p->at < '0' || *p->at > '9')
    return malformed(p, "a dimension (a non-negative integer)");
  uint64_t value = 0;
  for (; p->at < p->end && *p->at >= '0' && *p->at <= '9'; p->at++) {
    unsigned digit = (unsigned)(*p->at - '0');
    if (value > (UINT64_MAX - digit) / 10)
      return malformed(p, "a dimension that fits in 64 bits");
    value = value * 10 + digit;
  }
  if (p->at < p->end && *p->at == 'L') /* Python 2 longs: "(3L, 4L)" */
    p->at++;
  *out = value;
  return NN_OK;
}

/* "()", "(3,)", "(3, 4)", "(3, 4,)". */
static nn_status parse_shape(header_parser *p, npy_header *header) {
  if (!accept(p, '('))
    return malformed(p, "'(' opening the shape");
  header->rank = 0;
  while (!accept(p, ')')) {
    if (header->rank == NNLIB_TENSOR_MAX_RANK)
      return NNLIB_FAIL_CALL(p->source->ctx, NN_ERROR_FORMAT, p->source->call,
                             "%s: more than %d dimensions", p->source->name,
                             NNLIB_TENSOR_MAX_RANK);
    nn_status status = parse_dimension(p, &header->shape[header->rank++]);
    if (status != NN_OK)
      return status;
    if (!accept(p, ',') && !(p->at < p->end && *p->at == ')'))
      return malformed(p, "',' or ')' in the shape");
  }
  return NN_OK;
}

/* One "key: value" pair; each of the three keys exactly once. */
static nn_status parse_entry(header_parser *p, npy_header *header) {
  char key[32];
  nn_status status = parse_string(p, key, sizeof key);
  if (status == NN_OK && !accept(p, ':'))
    status = malformed(p, "':' after a key");
  if (status != NN_OK)
    return status;
  bool *seen = strcmp(key, "descr") == 0           ? &header->seen_descr
               : strcmp(key, "fortran_order") == 0 ? &header->seen_order
               : strcmp(key, "shape") == 0         ? &header->seen_shape
                                                   : NULL;
  if (!seen || *seen)
    return NNLIB_FAIL_CALL(p->source->ctx, NN_ERROR_FORMAT, p->source->call,
                           "%s: %s key '%s' in the .npy header (it holds "
                           "descr, fortran_order and shape once each)",
                           p->source->name, seen ? "repeated" : "unexpected",
                           key);
  *seen = true;
  if (seen == &header->seen_order)
    return parse_bool(p, &header->fortran_order);
  if (seen == &header->seen_shape)
    return parse_shape(p, header);
  if (accept(p, '['))
    return NNLIB_FAIL_CALL(p->source->ctx, NN_ERROR_UNSUPPORTED,
                           p->source->call,
                           "%s: structured dtype not supported: use a plain "
                           "numeric array",
                           p->source->name);
  return parse_string(p, header->descr, sizeof header->descr);
}

/* The whole dict, then only padding. */
static nn_status parse_dict(header_parser *p, npy_header *header) {
  if (!accept(p, '{'))
    return malformed(p, "'{'");
  while (!accept(p, '}')) {
    nn_status status = parse_entry(p, header);
    if (status != NN_OK)
      return status;
    if (!accept(p, ',') && !(p->at < p->end && *p->at == '}'))
      return malformed(p, "',' or '}' after a value");
  }
  skip_space(p);
  if (p->at != p->end)
    return malformed(p, "only padding after '}'");
  if (!header->seen_descr || !header->seen_order || !header->seen_shape)
    return NNLIB_FAIL_CALL(p->source->ctx, NN_ERROR_FORMAT, p->source->call,
                           "%s: the .npy header lacks '%s'", p->source->name,
                           !header->seen_descr   ? "descr"
                           : !header->seen_order ? "fortran_order"
                                                 : "shape");
  return NN_OK;
}

/* Little-endian (or single-byte) numeric descrs we read. */
static bool npy_dtype(const char *descr, nnlib_dtype *dtype) {
  static const struct {
    const char *descr;
    nnlib_dtype dtype;
  } known[] = {
      {"|u1", NNLIB_DTYPE_UINT8},   {"<u1", NNLIB_DTYPE_UINT8},
      {"|i1", NNLIB_DTYPE_INT8},    {"<i1", NNLIB_DTYPE_INT8},
      {"<u2", NNLIB_DTYPE_UINT16},  {"<i2", NNLIB_DTYPE_INT16},
      {"<u4", NNLIB_DTYPE_UINT32},  {"<i4", NNLIB_DTYPE_INT32},
      {"<i8", NNLIB_DTYPE_INT64},   {"<f4", NNLIB_DTYPE_FLOAT32},
      {"<f8", NNLIB_DTYPE_FLOAT64},
  };
  for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
    if (strcmp(descr, known[i].descr) == 0) {
      *dtype = known[i].dtype;
      return true;
    }
  return false;
}

/* Magic and version; the length of the header dict that follows. */
static nn_status read_preamble(nnlib_source *source, size_t *header_bytes) {
  unsigned char bytes[12];
  nn_status status =
      nnlib_source_read_exact(source, bytes, 10, ".npy preamble");
  if (status != NN_OK)
    return status;
  if (memcmp(bytes, MAGIC, MAGIC_BYTES) != 0)
    return NNLIB_FAIL_CALL(source->ctx, NN_ERROR_FORMAT, source->call,
                           "%s: not a .npy file (no \\x93NUMPY magic)",
                           source->name);
  const unsigned major = bytes[6], minor = bytes[7];
  if (major < 1 || major > 3 || minor != 0)
    return NNLIB_FAIL_CALL(source->ctx, NN_ERROR_FORMAT, source->call,
                           "%s: .npy format version %u.%u; known: 1.0, 2.0, "
                           "3.0",
                           source->name, major, minor);
  *header_bytes = (size_t)bytes[8] | (size_t)bytes[9] << 8;
  if (major == 1)
    return NN_OK;
  status = nnlib_source_read_exact(source, bytes + 10, 2, ".npy preamble");
  *header_bytes |= (size_t)bytes[10] << 16 | (size_t)bytes[11] << 24;
  if (status == NN_OK && *header_bytes > MAX_HEADER_BYTES)
    status = NNLIB_FAIL_CALL(source->ctx, NN_ERROR_FORMAT, source->call,
                             "%s: .npy header of %zu bytes; at most %zu",
                             source->name, *header_bytes, MAX_HEADER_BYTES);
  return status;
}

static nn_status read_header(nnlib_source *source, npy_header *header) {
  size_t length = 0;
  nn_status status = read_preamble(source, &length);
  if (status != NN_OK)
    return status;
  char *text = malloc(length ? length : 1);
  if (!text)
    return NNLIB_FAIL_CALL(source->ctx, NN_ERROR_OUT_OF_MEMORY, source->call,
                           "%s: host allocation of %zu bytes failed",
                           source->name, length);
  status = nnlib_source_read_exact(source, text, length, ".npy header");
  if (status == NN_OK) {
    header_parser parser = {source, text, text, text + length};
    status = parse_dict(&parser, header);
  }
  free(text);
  return status;
}

/* The dict's dtype and order as a tensor description. */
static nn_status check_header(nnlib_source *source, const npy_header *header,
                              nnlib_tensor *out) {
  nnlib_dtype dtype;
  if (!npy_dtype(header->descr, &dtype))
    return NNLIB_FAIL_CALL(source->ctx, NN_ERROR_UNSUPPORTED, source->call,
                           "%s: dtype '%s' not supported: use "
                           "float32/float64/uint8/int64 (or int8, int16, "
                           "int32, uint16, uint32), little-endian, C order",
                           source->name, header->descr);
  if (header->fortran_order)
    return NNLIB_FAIL_CALL(source->ctx, NN_ERROR_UNSUPPORTED, source->call,
                           "%s: fortran_order is True (column-major) and "
                           "only C order is supported: save "
                           "np.ascontiguousarray(a)",
                           source->name);
  return nnlib_tensor_set_shape(source->ctx, source->call, source->name, out,
                                dtype, header->rank, header->shape);
}

nn_status nnlib_npy_read(nnlib_source *source, nnlib_tensor *out) {
  npy_header header = {0};
  nn_status status = read_header(source, &header);
  if (status == NN_OK)
    status = check_header(source, &header, out);
  if (status == NN_OK)
    status = nnlib_source_read_tensor(source, out);
  if (status != NN_OK)
    return status;
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  nnlib_swap_bytes(out->data, out->count, nnlib_dtype_size(out->dtype));
#endif
  return NN_OK;
}

nn_status nnlib_npy_load(nn_context *ctx, const char *call, const char *path,
                         nnlib_tensor *out) {
  FILE *file = fopen(path, "rbe");
  if (!file)
    return NNLIB_FAIL_CALL(ctx, NN_ERROR_IO, call, "%s: cannot open: %s", path,
                           strerror(errno));
  nnlib_source source = nnlib_source_from_file(ctx, call, path, file);
  nn_status status = nnlib_npy_read(&source, out);
  fclose(file);
  return status;
}
