/*
 * fuzz_hdf5.c — libFuzzer target for the HDF5 loader: the input opened as
 * an in-memory file image (libhdf5's core driver) and its dataset "x" read
 * and converted. libhdf5 itself is not instrumented, so this mostly checks
 * our handling of what libhdf5 reports; a crash inside libhdf5 is
 * libhdf5's (tools/fuzz runs this target only when FUZZ_HDF5=1).
 */
#include "fuzz_common.h"

#include <hdf5.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The image as a read-only file; -1 if libhdf5 will not open it. */
static hid_t open_image(const uint8_t *data, size_t size) {
  hid_t file = -1, access = H5Pcreate(H5P_FILE_ACCESS);
  H5E_BEGIN_TRY {
    if (H5Pset_fapl_core(access, 4096, 0) >= 0 &&
        H5Pset_file_image(access, (void *)data, size) >= 0)
      file = H5Fopen("fuzz.h5", H5F_ACC_RDONLY, access);
    H5Pclose(access);
  }
  H5E_END_TRY;
  return file;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  nn_context *ctx = fuzz_context();
  hid_t file = open_image(data, size);
  if (file < 0)
    return 0;
  nnlib_tensor tensor = {0};
  if (nnlib_hdf5_read(ctx, "fuzz_hdf5", "input", file, "x", &tensor) == NN_OK)
    fuzz_convert(ctx, &tensor);
  nnlib_tensor_free(&tensor);
  H5E_BEGIN_TRY {
    H5Fclose(file);
  }
  H5E_END_TRY;
  return 0;
}
