/*
 * fuzz_idx.c — libFuzzer target for the IDX parser: the input, through
 * zlib as a file would be (a memfd, so gzip seeds are decompressed and
 * plain ones read transparently), then converted to X and Y; and, when it
 * is one intact gzip member, inflated whole as nnlib_idx_load's fast path
 * does (load_gzip.c) and parsed from memory.
 */
#define _GNU_SOURCE
#include "fuzz_common.h"

#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An in-memory file holding data, rewound; -1 on failure. */
static int memory_file(const uint8_t *data, size_t size) {
  int fd = memfd_create("fuzz_idx", 0);
  for (size_t done = 0; fd >= 0 && done < size;) {
    ssize_t wrote = write(fd, data + done, size - done);
    if (wrote <= 0) {
      close(fd);
      return -1;
    }
    done += (size_t)wrote;
  }
  if (fd >= 0 && lseek(fd, 0, SEEK_SET) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* The tensor that source holds, converted as the loaders would. */
static void parse(nn_context *ctx, nnlib_source *source) {
  nnlib_tensor tensor = {0};
  if (nnlib_idx_read(source, &tensor) == NN_OK)
    fuzz_convert(ctx, &tensor);
  nnlib_tensor_free(&tensor);
}

static void parse_inflated_whole(nn_context *ctx, const uint8_t *data,
                                 size_t size) {
  unsigned char *inflated = NULL;
  size_t inflated_size = 0;
  if (!nnlib_gzip_inflate(data, size, &inflated, &inflated_size))
    return;
  const nnlib_bytes bytes = {inflated, inflated_size};
  nnlib_source source =
      nnlib_source_from_memory(ctx, "fuzz_idx", "input", &bytes);
  parse(ctx, &source);
  free(inflated);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  nn_context *ctx = fuzz_context();
  parse_inflated_whole(ctx, data, size);
  int fd = memory_file(data, size);
  if (fd < 0)
    return 0;
  gzFile file = gzdopen(fd, "rb"); /* gzclose closes fd */
  if (!file) {
    close(fd);
    return 0;
  }
  nnlib_source source = nnlib_source_from_gz(ctx, "fuzz_idx", "input", file);
  parse(ctx, &source);
  gzclose(file);
  return 0;
}
