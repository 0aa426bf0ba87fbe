/*
 * fuzz_idx.c — libFuzzer target for the IDX parser: the input, through
 * zlib as a file would be (a memfd, so gzip seeds are decompressed and
 * plain ones read transparently), then converted to X and Y.
 */
#define _GNU_SOURCE
#include "fuzz_common.h"

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  nn_context *ctx = fuzz_context();
  int fd = memory_file(data, size);
  if (fd < 0)
    return 0;
  gzFile file = gzdopen(fd, "rb"); /* gzclose closes fd */
  if (!file) {
    close(fd);
    return 0;
  }
  nnlib_source source = nnlib_source_from_gz(ctx, "fuzz_idx", "input", file);
  nnlib_tensor tensor = {0};
  if (nnlib_idx_read(&source, &tensor) == NN_OK)
    fuzz_convert(ctx, &tensor);
  nnlib_tensor_free(&tensor);
  gzclose(file);
  return 0;
}
