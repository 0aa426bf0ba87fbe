/*
 * launch.hpp — kernel launches in the emulator: what `kernel<<<grid, block,
 * shared, stream>>>(args...)` becomes once cmake/emulate_cu.cmake has
 * rewritten it as `::nnemu::launch(kernel, "kernel", grid, block, shared,
 * stream)(args...)`.
 *
 * A launch checks its configuration at once (a bad one is the launch's own
 * error, in cudaGetLastError, as on a GPU), checks that every pointer
 * argument points into device (or pinned) memory (else the kernel would
 * fault: a sticky cudaErrorIllegalAddress), then queues the grid on the
 * stream with the arguments copied, as a GPU copies them at launch.
 */
#ifndef NNEMU_LAUNCH_HPP
#define NNEMU_LAUNCH_HPP

#include "emulator.hpp"

#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

namespace nnemu {

struct launch_shape {
  dim3 grid, block;
  size_t shared_bytes;
  cudaStream_t stream;
};

/* The built-in variables of the thread running now. */
struct kernel_thread_state {
  uint3 thread_index, block_index;
  dim3 block_dim, grid_dim;
};
kernel_thread_state &kernel_thread();

/* Makes [start, stop), a module's __shared__ arrays (device_code.hpp),
 * known to the launcher, which fills it with NaN bytes before each block.
 * NULL or empty: nothing. Returns true (for a static initialiser). */
bool register_shared_memory(char *start, char *stop);

/* __syncthreads(): every thread of the block that has not returned waits
 * here until all have arrived. */
void sync_threads();

/* The bits that lane (this lane ^ lane_mask) within its `width`-lane
 * segment posted in the same exchange; every lane of `mask` must take
 * part. */
uint64_t exchange_xor(unsigned mask, uint64_t bits, int lane_mask, int width);

/* false (with cudaGetLastError set) when the configuration cannot launch. */
bool check_configuration(const launch_shape &shape, const char *kernel);

/* false (with a sticky error) when pointer is neither NULL nor device or
 * pinned memory. */
bool check_pointer_argument(const void *pointer, int index, const char *kernel);

/* Queues the grid: body runs once per thread, with kernel_thread() set;
 * pointers (the kernel's pointer arguments) go to the order check as the
 * grid starts. */
void enqueue_grid(const launch_shape &shape, const void *kernel_address,
                  const char *kernel, std::function<void()> body,
                  std::vector<const void *> pointers);

template <class T>
bool check_argument(const T &value, int index, const char *kernel) {
  if constexpr (std::is_pointer_v<T>)
    return check_pointer_argument((const void *)value, index, kernel);
  else
    return true;
}

template <class T>
void collect_pointer(const T &value, std::vector<const void *> &pointers) {
  if constexpr (std::is_pointer_v<T>)
    pointers.push_back((const void *)value);
}

template <class Kernel> struct launcher {
  Kernel *kernel;
  const char *name;
  launch_shape shape;

  template <class... Args> void operator()(Args... args) const {
    if (!check_configuration(shape, name))
      return;
    int index = 0;
    if (!(check_argument(args, index++, name) && ...))
      return;
    std::vector<const void *> pointers;
    (collect_pointer(args, pointers), ...);
    Kernel *function = kernel;
    enqueue_grid(
        shape, (const void *)kernel, name,
        [function, args...]() { function(args...); }, std::move(pointers));
  }
};

template <class Kernel>
launcher<Kernel> launch(Kernel *kernel, const char *name, dim3 grid, dim3 block,
                        size_t shared_bytes = 0, cudaStream_t stream = 0) {
  return launcher<Kernel>{kernel, name, {grid, block, shared_bytes, stream}};
}

/* __shfl_xor_sync for any 4- or 8-byte value. */
template <class T>
T shuffle_xor(unsigned mask, T value, int lane_mask, int width) {
  static_assert(sizeof(T) <= sizeof(uint64_t), "shuffle of a large type");
  uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof value);
  bits = exchange_xor(mask, bits, lane_mask, width);
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

} // namespace nnemu

#endif /* NNEMU_LAUNCH_HPP */
