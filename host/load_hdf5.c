/*
 * load_hdf5.c — one dataset of an HDF5 file ("train.h5:train_set_x"),
 * through libhdf5, in the dataset's own element type (integers and floats;
 * libhdf5 converts to the host's native layout while reading).
 *
 * libhdf5 prints its error stack to stderr by default and the library must
 * never print: every call runs between H5E_BEGIN_TRY and H5E_END_TRY, which
 * switch the automatic printing off and restore whatever the program had.
 * That setting is libhdf5's own global state (per thread in thread-safe
 * builds), so, as with any libhdf5 use, do not load HDF5 files from several
 * threads at once with a serial (non-thread-safe) libhdf5.
 */
#include "load_tensor.h"

#include <errno.h>
#include <hdf5.h>
#include <string.h>

#define LIST_BYTES 400

/* The dataset's element type as a dtype, and the native memory type that
 * H5Dread converts to. Unsigned 64-bit integers are read as float64. */
static bool element_type(hid_t type, nnlib_dtype *dtype, hid_t *memory) {
  const size_t size = H5Tget_size(type);
  const H5T_class_t kind = H5Tget_class(type);
  if (kind == H5T_FLOAT) {
    *dtype = size <= 4 ? NNLIB_DTYPE_FLOAT32 : NNLIB_DTYPE_FLOAT64;
    *memory = size <= 4 ? H5T_NATIVE_FLOAT : H5T_NATIVE_DOUBLE;
    return true;
  }
  if (kind != H5T_INTEGER)
    return false;
  const bool is_signed = H5Tget_sign(type) == H5T_SGN_2;
  switch (size) {
  case 1:
    *dtype = is_signed ? NNLIB_DTYPE_INT8 : NNLIB_DTYPE_UINT8;
    *memory = is_signed ? H5T_NATIVE_INT8 : H5T_NATIVE_UINT8;
    return true;
  case 2:
    *dtype = is_signed ? NNLIB_DTYPE_INT16 : NNLIB_DTYPE_UINT16;
    *memory = is_signed ? H5T_NATIVE_INT16 : H5T_NATIVE_UINT16;
    return true;
  case 4:
    *dtype = is_signed ? NNLIB_DTYPE_INT32 : NNLIB_DTYPE_UINT32;
    *memory = is_signed ? H5T_NATIVE_INT32 : H5T_NATIVE_UINT32;
    return true;
  case 8:
    *dtype = is_signed ? NNLIB_DTYPE_INT64 : NNLIB_DTYPE_FLOAT64;
    *memory = is_signed ? H5T_NATIVE_INT64 : H5T_NATIVE_DOUBLE;
    return true;
  default:
    return false;
  }
}

static const char *class_name(H5T_class_t kind) {
  switch (kind) {
  case H5T_STRING:
    return "strings";
  case H5T_COMPOUND:
    return "compound records";
  case H5T_ENUM:
    return "enum values";
  case H5T_ARRAY:
    return "arrays";
  case H5T_VLEN:
    return "variable-length sequences";
  default:
    return "non-numeric elements";
  }
}

/* Appends each top-level link name to the list (for the "no dataset" error).
 * The callback's info type was renamed in libhdf5 1.12. */
#if H5_VERSION_GE(1, 12, 0)
typedef H5L_info2_t link_info;
#else
typedef H5L_info_t link_info;
#endif

static herr_t add_name(hid_t group, const char *name, const link_info *info,
                       void *data) {
  (void)group;
  (void)info;
  char *list = data;
  size_t used = strlen(list);
  if (used + 1 < LIST_BYTES)
    snprintf(list + used, LIST_BYTES - used, "%s'%s'", used ? ", " : "", name);
  return 0;
}

static nn_status missing_dataset(nn_context *ctx, const char *call,
                                 const char *label, hid_t file,
                                 const char *name) {
  char list[LIST_BYTES] = "";
  hsize_t index = 0;
  H5Literate(file, H5_INDEX_NAME, H5_ITER_NATIVE, &index, add_name, list);
  return NNLIB_FAIL_CALL(ctx, NN_ERROR_INVALID_ARGUMENT, call,
                         "%s: no dataset '%s' (the file's top level has: "
                         "%s)",
                         label, name, list[0] ? list : "nothing");
}

/* Shape and element type of an open dataset. */
static nn_status describe(nn_context *ctx, const char *call, const char *label,
                          const char *name, hid_t dataset, nnlib_tensor *out,
                          hid_t *memory) {
  hid_t type = H5Dget_type(dataset), space = H5Dget_space(dataset);
  int rank = space < 0 ? -1 : H5Sget_simple_extent_ndims(space);
  hsize_t dims[H5S_MAX_RANK];
  uint64_t shape[NNLIB_TENSOR_MAX_RANK];
  nnlib_dtype dtype = NNLIB_DTYPE_UINT8;
  nn_status status = NN_OK;
  if (type < 0 || rank < 0)
    status = NNLIB_FAIL_CALL(ctx, NN_ERROR_FORMAT, call,
                             "%s: dataset '%s': cannot read its type or "
                             "shape (corrupt file?)",
                             label, name);
  else if (!element_type(type, &dtype, memory))
    status = NNLIB_FAIL_CALL(ctx, NN_ERROR_UNSUPPORTED, call,
                             "%s: dataset '%s' holds %s; need integers or "
                             "floats",
                             label, name, class_name(H5Tget_class(type)));
  else if (rank == 0 || rank > NNLIB_TENSOR_MAX_RANK ||
           H5Sget_simple_extent_dims(space, dims, NULL) != rank)
    status = NNLIB_FAIL_CALL(ctx, NN_ERROR_FORMAT, call,
                             "%s: dataset '%s' has %d dimensions; need 1 to "
                             "%d (examples first)",
                             label, name, rank, NNLIB_TENSOR_MAX_RANK);
  for (int d = 0; status == NN_OK && d < rank; d++)
    shape[d] = dims[d];
  if (status == NN_OK)
    status = nnlib_tensor_set_shape(ctx, call, label, out, dtype, (size_t)rank,
                                    shape);
  if (type >= 0)
    H5Tclose(type);
  if (space >= 0)
    H5Sclose(space);
  return status;
}

static nn_status read_dataset(nn_context *ctx, const char *call,
                              const char *label, const char *name,
                              hid_t dataset, nnlib_tensor *out) {
  hid_t memory;
  nn_status status = describe(ctx, call, label, name, dataset, out, &memory);
  if (status == NN_OK)
    status = nnlib_host_alloc(ctx, out->count, nnlib_dtype_size(out->dtype),
                              &out->data);
  if (status != NN_OK)
    return status;
  if (H5Dread(dataset, memory, H5S_ALL, H5S_ALL, H5P_DEFAULT, out->data) < 0) {
    nnlib_tensor_free(out);
    return NNLIB_FAIL_CALL(ctx, NN_ERROR_FORMAT, call,
                           "%s: reading dataset '%s' failed (corrupt file?)",
                           label, name);
  }
  return NN_OK;
}

static nn_status read_named(nn_context *ctx, const char *call,
                            const char *label, hid_t file, const char *name,
                            nnlib_tensor *out) {
  if (H5Lexists(file, name, H5P_DEFAULT) <= 0)
    return missing_dataset(ctx, call, label, file, name);
  hid_t dataset = H5Dopen2(file, name, H5P_DEFAULT);
  if (dataset < 0)
    return NNLIB_FAIL_CALL(ctx, NN_ERROR_INVALID_ARGUMENT, call,
                           "%s: '%s' is not a dataset (a group?)", label, name);
  nn_status status = read_dataset(ctx, call, label, name, dataset, out);
  H5Dclose(dataset);
  return status;
}

nn_status nnlib_hdf5_read(nn_context *ctx, const char *call,
                          const char *file_label, int64_t file,
                          const char *dataset, nnlib_tensor *out) {
  nn_status status = NN_OK;
  H5E_BEGIN_TRY {
    status = read_named(ctx, call, file_label, (hid_t)file, dataset, out);
  }
  H5E_END_TRY;
  return status;
}

static bool is_hdf5(const char *path) {
#if H5_VERSION_GE(1, 12, 0)
  return H5Fis_accessible(path, H5P_DEFAULT) > 0;
#else
  return H5Fis_hdf5(path) > 0;
#endif
}

nn_status nnlib_hdf5_load(nn_context *ctx, const char *call, const char *path,
                          const char *dataset, nnlib_tensor *out) {
  FILE *probe = fopen(path, "rbe"); /* for errno: libhdf5 does not say why */
  if (!probe)
    return NNLIB_FAIL_CALL(ctx, NN_ERROR_IO, call, "%s: cannot open: %s", path,
                           strerror(errno));
  fclose(probe);
  hid_t file = -1;
  H5E_BEGIN_TRY {
    if (is_hdf5(path))
      file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  }
  H5E_END_TRY;
  if (file < 0)
    return NNLIB_FAIL_CALL(ctx, NN_ERROR_FORMAT, call,
                           "%s: not an HDF5 file (libhdf5 cannot open it; "
                           "wanted dataset '%s')",
                           path, dataset);
  nn_status status = nnlib_hdf5_read(ctx, call, path, file, dataset, out);
  H5E_BEGIN_TRY {
    H5Fclose(file);
  }
  H5E_END_TRY;
  return status;
}
