/*
 * device.c — finding the GPU a context asks for and checking that this build
 * can run on it: the device exists, it can be made current, and the build
 * has code for it (SASS for its architecture, or PTX the driver can
 * compile).
 */
#include "cuda_backend.h"

/* "sm_80, sm_90, PTX compute_90", made by CMakeLists.txt from
 * CMAKE_CUDA_ARCHITECTURES. */
#ifndef NNLIB_CUDA_BUILT_FOR
#define NNLIB_CUDA_BUILT_FOR "the default architecture of nvcc"
#endif

static nn_status count_devices(nn_context *ctx, int device_index) {
  int count = 0;
  cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess) {
    (void)cudaGetLastError();
    return NNLIB_FAIL_CALL(ctx, NN_ERROR_NO_DEVICE, "cudaGetDeviceCount",
                           "no CUDA device can be used: %s (%s)",
                           cudaGetErrorString(error), cudaGetErrorName(error));
  }
  if (count == 0)
    return NNLIB_FAIL_CALL(ctx, NN_ERROR_NO_DEVICE, "cudaGetDeviceCount",
                           "no CUDA device is present");
  if (device_index >= count)
    return NNLIB_FAIL_CALL(
        ctx, NN_ERROR_NO_DEVICE, "nn_context_create",
        "device %d asked for, but only %d CUDA device(s) exist (0..%d)",
        device_index, count, count - 1);
  return NN_OK;
}

static nn_status make_current(nn_context *ctx, int device_index) {
  cudaError_t error = cudaSetDevice(device_index);
  if (error == cudaErrorDevicesUnavailable) {
    (void)cudaGetLastError();
    return NNLIB_FAIL_CALL(ctx, NN_ERROR_NO_DEVICE, "cudaSetDevice",
                           "device %d is busy or unavailable (exclusive or "
                           "prohibited compute mode): %s",
                           device_index, cudaGetErrorString(error));
  }
  return nnlib_cuda_check(ctx, error, "cudaSetDevice", __FILE__, __LINE__);
}

/* Whether a kernel of ours can run on the current device. */
static nn_status check_kernel_image(nn_context *ctx, int device_index,
                                    const struct cudaDeviceProp *properties) {
  cudaError_t error = nnlib_cuda_probe_kernel_image();
  if (error == cudaSuccess)
    return NN_OK;
  (void)cudaGetLastError();
  if (error == cudaErrorNoKernelImageForDevice ||
      error == cudaErrorInvalidDeviceFunction ||
      error == cudaErrorUnsupportedPtxVersion || error == cudaErrorInvalidPtx)
    return NNLIB_FAIL_CALL(ctx, NN_ERROR_UNSUPPORTED, "cudaFuncGetAttributes",
                           "device %d (%s, compute capability %d.%d) has no "
                           "code in this build (built for %s): %s",
                           device_index, properties->name, properties->major,
                           properties->minor, NNLIB_CUDA_BUILT_FOR,
                           cudaGetErrorName(error));
  return nnlib_cuda_check(ctx, error, "cudaFuncGetAttributes", __FILE__,
                          __LINE__);
}

nn_status nnlib_cuda_open_device(nn_context *ctx, int device_index,
                                 struct cudaDeviceProp *properties) {
  nn_status status = count_devices(ctx, device_index);
  if (status == NN_OK)
    status = make_current(ctx, device_index);
  if (status == NN_OK)
    status = NNLIB_CUDA_CHECK(
        ctx, cudaGetDeviceProperties(properties, device_index));
  if (status == NN_OK)
    status = check_kernel_image(ctx, device_index, properties);
  return status;
}
