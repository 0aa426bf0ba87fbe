/*
 * device_code.hpp — force-included (g++ -include) ahead of every .cu file
 * of cuda/ in the emulated build, after cmake/emulate_cu.cmake has rewritten
 * its launches: the CUDA keywords and built-ins of device code, for a host
 * compiler.
 *
 * The CUDA headers are included first, so that their include guards keep
 * them from being read again once the keywords below mean something else.
 * __shared__ becomes `static`: the blocks of a grid run one after another,
 * so one static array per kernel is exactly one block's shared memory.
 * They all go in one section (nnemu_shared), which each file registers
 * with the launcher through the linker's __start_/__stop_ symbols for it
 * (hidden: this module's own; weak: NULL in a module with none), so that
 * every block's shared memory can start as NaN, as undefined as a GPU's.
 */
#ifndef NNEMU_DEVICE_CODE_HPP
#define NNEMU_DEVICE_CODE_HPP

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>
#include <curand.h>

#include "launch.hpp"

#include <cmath>

#undef __global__
#undef __device__
#undef __host__
#undef __shared__
#undef __forceinline__
#undef __launch_bounds__
#define __global__
#define __device__
#define __host__
#define __shared__ static __attribute__((section("nnemu_shared")))
#define __forceinline__ inline
#define __launch_bounds__(...)

#define threadIdx (::nnemu::kernel_thread().thread_index)
#define blockIdx (::nnemu::kernel_thread().block_index)
#define blockDim (::nnemu::kernel_thread().block_dim)
#define gridDim (::nnemu::kernel_thread().grid_dim)
#define __syncthreads() ::nnemu::sync_threads()

extern "C" char __start_nnemu_shared[]
    __attribute__((weak, visibility("hidden")));
extern "C" char __stop_nnemu_shared[]
    __attribute__((weak, visibility("hidden")));
namespace {
[[maybe_unused]] const bool nnemu_shared_memory_registered =
    ::nnemu::register_shared_memory(__start_nnemu_shared, __stop_nnemu_shared);
} // namespace

template <class T>
static inline T __shfl_xor_sync(unsigned mask, T value, int lane_mask,
                                int width = 32) {
  return ::nnemu::shuffle_xor(mask, value, lane_mask, width);
}

/* cuda_runtime.h's overload for a kernel (nvcc's headers have it). */
template <class Kernel>
static inline cudaError_t cudaFuncGetAttributes(cudaFuncAttributes *attributes,
                                                Kernel *kernel) {
  return ::cudaFuncGetAttributes(attributes, (const void *)kernel);
}

#endif /* NNEMU_DEVICE_CODE_HPP */
