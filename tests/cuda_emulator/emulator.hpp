/*
 * emulator.hpp — what the CUDA emulator's parts share.
 *
 * The emulator lets the CUDA backend's own code (the .c files of cuda/, and its
 * .cu files compiled as C++ by g++) run on a machine with no GPU, so that CI
 * tests it: the runtime API (runtime.cpp), kernel launches with their threads,
 * blocks,
 * __syncthreads and warp shuffles (kernels.cpp), cuBLAS and cuBLASLt on
 * OpenBLAS (blas.cpp) and cuRAND's device generators as the real library's
 * host generators (rand.cpp). It is test infrastructure, never a GPU result:
 * the device it shows is named "nn CUDA emulator (CPU, not a GPU)".
 *
 * Stricter than a GPU where it can be: memory from cudaMalloc and
 * cudaHostAlloc, and each block's shared memory, is filled with NaN bytes
 * (uninitialised reads show up in results), every pointer a kernel
 * or cuBLAS gets must lie inside device memory, cuBLAS operands are checked
 * against their allocation's bounds, a capture that does what a graph cannot
 * hold is invalidated, each stream runs its work on a thread of its own,
 * so work ordered only by luck on a GPU can go wrong here too, and work of
 * two streams on memory a copy wrote must be ordered by an event or the
 * host (the order check, order_check.cpp), however the timing falls, and host
 * code that touches device memory after a synchronisation faults (the host
 * guard, host_guard.cpp), as it would on a GPU.
 */
#ifndef NNEMU_EMULATOR_HPP
#define NNEMU_EMULATOR_HPP

#include <cuda_runtime_api.h>

#include <cstddef>
#include <functional>

namespace nnemu {

/* One piece of stream work. It runs on the stream's thread (or at once with
 * NNEMU_SYNCHRONOUS=1), or is recorded into the graph the stream is
 * capturing and runs at each replay. */
using operation = std::function<void()>;

/* Queues op on stream (NULL: the legacy default stream) in issue order.
 * cudaErrorStreamCaptureInvalidated when the stream's capture was already
 * broken; otherwise cudaSuccess. `what` names the work in diagnostics. */
cudaError_t enqueue(cudaStream_t stream, operation op, const char *what);

/* The order check (order_check.cpp): the stream work running on this thread
 * (a kernel, a cuBLAS product, ...; `what`) reads or writes device memory
 * at pointer. A sticky error when that memory was written by a copy on
 * another stream that neither an event nor the host has ordered before
 * this work. Nothing outside stream work. */
void note_access(const void *pointer, const char *what);

/* The same for work that writes all of [pointer, pointer + bytes) as a
 * copy does (cuRAND's generators): work of another stream on that memory
 * must then be ordered after it, and it after theirs. */
void note_write(void *pointer, size_t bytes, const char *what);

/* Whether the stream is capturing into a graph now. */
bool is_capturing(cudaStream_t stream);

/* Whether [pointer, pointer + bytes) lies inside one cudaMalloc allocation
 * (bytes 0: whether pointer does). */
bool is_device_range(const void *pointer, size_t bytes);

/* Whether pointer lies inside memory from cudaHostAlloc. */
bool is_pinned(const void *pointer);

/* An error found while queued work ran (a kernel reading a host pointer, a
 * barrier some threads never reach, ...): printed to stderr with "nn CUDA
 * emulator:", and from then on returned by every runtime call, as a GPU's
 * sticky errors are. */
void fail_execution(cudaError_t error, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

/* Prints a diagnostic about a call that fails at once (not sticky). */
void report(const char *format, ...) __attribute__((format(printf, 1, 2)));

/* Sets the calling thread's last error (what cudaGetLastError returns). */
void set_last_error(cudaError_t error);

} // namespace nnemu

#endif /* NNEMU_EMULATOR_HPP */
