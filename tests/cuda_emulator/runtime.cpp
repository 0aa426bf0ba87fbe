/*
 * runtime.cpp — the CUDA runtime API calls nn makes, on the CPU: one
 * emulated device, its memory, streams (each with a worker thread that runs
 * its work in order), events, graph capture and replay, and errors.
 *
 * Settings (environment):
 *   NNEMU_DEVICES=n        devices shown (default 1; 0: none)
 *   NNEMU_DEVICE_MEMORY=b  device memory in bytes (default 4 GiB)
 *   NNEMU_SYNCHRONOUS=1    run stream work at once, on the calling thread
 *   NNEMU_REVERSE=1        run blocks and threads last first (kernels.cpp)
 *   NNEMU_NO_KERNEL_IMAGE=1  the device is one this build has no code for
 *   NNEMU_NO_ORDER_CHECK=1 skip the check of work between streams (below)
 *   NNEMU_NO_HOST_GUARD=1  leave device memory open to host code (below)
 *
 * Stricter than a GPU where that finds bugs: cudaMalloc'd and pinned memory
 * start as NaN bytes (0xff); copies check that each side is the memory
 * their kind says; a capture is invalidated by the calls a CUDA graph
 * cannot hold (synchronising, allocating, the legacy stream, waiting on an
 * event from outside the capture, a copy with a pageable side); an event
 * recorded in a capture is no graph node and cannot be waited for, as in
 * CUDA; destroying an event orders nothing; an error found while work runs
 * is sticky, as a GPU's faults are, and named on stderr.
 *
 * Two checks stricter still live in files of their own: the order check
 * (order_check.cpp: work of two streams on memory a copy wrote must be
 * ordered by an event or the host) and the host guard (host_guard.cpp:
 * host code that touches device memory faults, as on a GPU).
 */
#include "runtime_state.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

/* ------------------------------------------------------------------------ */
/* The handles' structs (the headers only declare them)                      */
/* ------------------------------------------------------------------------ */

struct CUgraph_st {
  std::vector<nnemu::operation> operations;
};

struct CUgraphExec_st {
  std::shared_ptr<const std::vector<nnemu::operation>> operations;
};

struct CUevent_st {
  std::mutex mutex;
  std::condition_variable changed;
  uint64_t issued = 0; /* records issued on streams */
  /* Records issued and not yet reached by their stream. A set, not a
   * count: records on two streams may complete out of order, and a wait
   * on the earlier one must not be let through by the later. */
  std::set<uint64_t> pending;
  uint64_t latest_completed = 0; /* `when` is this record's */
  bool timing = true;
  /* Last recorded in a capturing stream: CUDA makes no graph node of such
   * a record, and querying or synchronising the event is an error. */
  bool captured = false;
  std::chrono::steady_clock::time_point when;
  /* The event itself, until cudaEventDestroy: queued records and waits
   * hold copies, so destroying it need not wait for them (CUDA releases an
   * event still in flight once the device is done with it). */
  std::shared_ptr<CUevent_st> self;
  /* The order check's clock of the stream at the latest record issued,
   * filled in when the stream reaches it (NULL: never recorded). */
  std::shared_ptr<std::map<uint64_t, uint64_t>> latest_clock;
};

namespace nnemu {

size_t setting(const char *name, size_t fallback) {
  const char *text = getenv(name);
  if (!text || !*text)
    return fallback;
  return (size_t)strtoull(text, nullptr, 0);
}

namespace {

/* ------------------------------------------------------------------------ */
/* Settings and errors                                                       */
/* ------------------------------------------------------------------------ */

int device_count() {
  return (int)setting("NNEMU_DEVICES", 1);
}

size_t device_memory() {
  return setting("NNEMU_DEVICE_MEMORY", (size_t)4 << 30);
}

bool synchronous() {
  return setting("NNEMU_SYNCHRONOUS", 0) != 0;
}

thread_local cudaError_t last_error = cudaSuccess;
thread_local int current_device = 0;
std::mutex sticky_mutex;
cudaError_t sticky_error = cudaSuccess;

cudaError_t sticky() {
  std::lock_guard<std::mutex> lock(sticky_mutex);
  return sticky_error;
}

/* The result of a call: error (or the sticky one, which wins), also kept
 * as the thread's last error when it is one. */
cudaError_t result(cudaError_t error) {
  cudaError_t fault = sticky();
  if (fault != cudaSuccess)
    error = fault;
  if (error != cudaSuccess)
    last_error = error;
  return error;
}

void vprint(const char *format, va_list arguments) {
  fputs("nn CUDA emulator: ", stderr);
  vfprintf(stderr, format, arguments);
  fputc('\n', stderr);
}

/* ------------------------------------------------------------------------ */
/* Memory                                                                    */
/* ------------------------------------------------------------------------ */

size_t device_bytes_in_use = 0;

size_t round_up(size_t bytes, size_t unit) {
  return (bytes + unit - 1) / unit * unit;
}

size_t page_bytes() {
  static const size_t bytes = (size_t)sysconf(_SC_PAGESIZE);
  return bytes;
}

} // namespace

std::mutex memory_mutex;
std::map<uintptr_t, allocation> allocations;

const allocation *find_allocation(const void *pointer, size_t bytes,
                                  uintptr_t *start) {
  const uintptr_t address = (uintptr_t)pointer;
  auto after = allocations.upper_bound(address);
  if (after == allocations.begin())
    return nullptr;
  auto holder = std::prev(after);
  const uintptr_t end = holder->first + holder->second.bytes;
  if (address >= end && !(address == holder->first && bytes == 0))
    return nullptr;
  if (bytes > end - address)
    return nullptr;
  if (start)
    *start = holder->first;
  return &holder->second;
}

void run_operation(const operation &op) {
  /* After a fault the device runs nothing more, as a GPU context would. */
  if (sticky() == cudaSuccess)
    op();
}

namespace {

/* ------------------------------------------------------------------------ */
/* Streams                                                                   */
/* ------------------------------------------------------------------------ */

void worker_loop(CUstream_st *stream) {
  std::unique_lock<std::mutex> lock(stream->mutex);
  for (;;) {
    stream->changed.wait(
        lock, [stream] { return stream->stopping || !stream->queue.empty(); });
    if (stream->queue.empty())
      return;
    operation op = std::move(stream->queue.front());
    stream->queue.pop_front();
    stream->running = true;
    lock.unlock();
    run_operation(op);
    lock.lock();
    stream->running = false;
    stream->changed.notify_all();
  }
}

CUstream_st *make_stream() {
  static std::atomic<uint64_t> streams_made{0};
  CUstream_st *stream = new CUstream_st;
  stream->number = ++streams_made;
  if (!synchronous())
    stream->worker = std::thread(worker_loop, stream);
  return stream;
}

/* The legacy default stream (stream 0). */
CUstream_st *legacy_stream() {
  static CUstream_st *stream = make_stream();
  return stream;
}

CUstream_st *resolve(cudaStream_t stream) {
  if (stream == nullptr || stream == cudaStreamLegacy ||
      stream == cudaStreamPerThread)
    return legacy_stream();
  return stream;
}

/* Until stream has run everything queued on it; the host has seen that
 * happen. */
void drain(CUstream_st *stream) {
  {
    std::unique_lock<std::mutex> lock(stream->mutex);
    stream->changed.wait(
        lock, [stream] { return stream->queue.empty() && !stream->running; });
  }
  host_learns_stream(stream);
  host_waited();
}

std::mutex streams_mutex;
std::vector<CUstream_st *> all_streams;

void drain_all() {
  std::vector<CUstream_st *> streams;
  {
    std::lock_guard<std::mutex> lock(streams_mutex);
    streams = all_streams;
  }
  streams.push_back(legacy_stream());
  for (CUstream_st *stream : streams)
    drain(stream);
}

/* The capture the calling thread is making, if any (thread-local mode). */
CUstream_st *own_capture() {
  std::lock_guard<std::mutex> lock(streams_mutex);
  for (CUstream_st *stream : all_streams)
    if (stream->capture &&
        stream->capturing_thread == std::this_thread::get_id())
      return stream;
  return nullptr;
}

/* A call a graph cannot hold, made while this thread captures: the capture
 * is broken (cudaStreamEndCapture will say so) and the call fails. */
bool refused_during_capture(const char *call) {
  CUstream_st *capturing = own_capture();
  if (!capturing)
    return false;
  capturing->capture_invalidated = true;
  report("%s during stream capture: not allowed, the capture is invalidated",
         call);
  return true;
}

} // namespace

/* ------------------------------------------------------------------------ */
/* The shared interface (emulator.hpp)                                       */
/* ------------------------------------------------------------------------ */

void report(const char *format, ...) {
  va_list arguments;
  va_start(arguments, format);
  vprint(format, arguments);
  va_end(arguments);
}

void fail_execution(cudaError_t error, const char *format, ...) {
  va_list arguments;
  va_start(arguments, format);
  vprint(format, arguments);
  va_end(arguments);
  std::lock_guard<std::mutex> lock(sticky_mutex);
  if (sticky_error == cudaSuccess)
    sticky_error = error;
}

void set_last_error(cudaError_t error) {
  last_error = error;
}

bool is_device_range(const void *pointer, size_t bytes) {
  std::lock_guard<std::mutex> lock(memory_mutex);
  const allocation *found = find_allocation(pointer, bytes, nullptr);
  return found && !found->pinned;
}

bool is_pinned(const void *pointer) {
  std::lock_guard<std::mutex> lock(memory_mutex);
  const allocation *found = find_allocation(pointer, 0, nullptr);
  return found && found->pinned;
}

bool is_capturing(cudaStream_t stream) {
  CUstream_st *s = resolve(stream);
  std::lock_guard<std::mutex> lock(s->mutex);
  return s->capture != nullptr;
}

/* NNEMU_TRACE=1: every piece of stream work is named on stderr as it is
 * queued or captured ("nnemu trace: captured|queued <what>"), which counts
 * what a step launches. */
bool tracing() {
  static const bool on = setting("NNEMU_TRACE", 0) != 0;
  return on;
}

cudaError_t enqueue(cudaStream_t handle, operation op, const char *what) {
  CUstream_st *stream = resolve(handle);
  if (tracing())
    fprintf(stderr, "nnemu trace: %s %s\n",
            is_capturing(handle) ? "captured" : "queued", what);
  if (stream == legacy_stream() && refused_during_capture(what))
    return cudaErrorStreamCaptureImplicit;
  std::unique_lock<std::mutex> lock(stream->mutex);
  if (stream->capture) {
    if (stream->capture_invalidated)
      return cudaErrorStreamCaptureInvalidated;
    stream->capture->operations.push_back(std::move(op));
    return cudaSuccess;
  }
  operation queued = [stream, issued = host_knows(), op = std::move(op)] {
    run_as(stream, issued, op);
  };
  if (synchronous()) {
    lock.unlock();
    queued();
    return cudaSuccess;
  }
  stream->queue.push_back(std::move(queued));
  stream->changed.notify_all();
  return cudaSuccess;
}

} // namespace nnemu

using namespace nnemu;

/* ------------------------------------------------------------------------ */
/* Errors                                                                    */
/* ------------------------------------------------------------------------ */

namespace {
struct error_text {
  cudaError_t error;
  const char *name, *text;
};
const error_text error_texts[] = {
    {cudaSuccess, "cudaSuccess", "no error"},
    {cudaErrorInvalidValue, "cudaErrorInvalidValue", "invalid argument"},
    {cudaErrorMemoryAllocation, "cudaErrorMemoryAllocation", "out of memory"},
    {cudaErrorInvalidConfiguration, "cudaErrorInvalidConfiguration",
     "invalid configuration argument"},
    {cudaErrorInvalidDevice, "cudaErrorInvalidDevice",
     "invalid device ordinal"},
    {cudaErrorNoDevice, "cudaErrorNoDevice",
     "no CUDA-capable device is detected"},
    {cudaErrorInvalidResourceHandle, "cudaErrorInvalidResourceHandle",
     "invalid resource handle"},
    {cudaErrorNotReady, "cudaErrorNotReady", "device not ready"},
    {cudaErrorIllegalAddress, "cudaErrorIllegalAddress",
     "an illegal memory access was encountered"},
    {cudaErrorLaunchFailure, "cudaErrorLaunchFailure",
     "unspecified launch failure"},
    {cudaErrorLaunchOutOfResources, "cudaErrorLaunchOutOfResources",
     "too many resources requested for launch"},
    {cudaErrorNoKernelImageForDevice, "cudaErrorNoKernelImageForDevice",
     "no kernel image is available for execution on the device"},
    {cudaErrorStreamCaptureUnsupported, "cudaErrorStreamCaptureUnsupported",
     "operation not permitted when stream is capturing"},
    {cudaErrorStreamCaptureInvalidated, "cudaErrorStreamCaptureInvalidated",
     "operation failed due to a previous error during capture"},
    {cudaErrorStreamCaptureImplicit, "cudaErrorStreamCaptureImplicit",
     "operation would make the legacy stream depend on a capturing blocking "
     "stream"},
    {cudaErrorStreamCaptureIsolation, "cudaErrorStreamCaptureIsolation",
     "dependency created on uncaptured work in another stream"},
    {cudaErrorStreamCaptureWrongThread, "cudaErrorStreamCaptureWrongThread",
     "attempt to terminate a thread-local capture sequence from another "
     "thread"},
    {cudaErrorIllegalState, "cudaErrorIllegalState",
     "the operation is not permitted in the current state"},
    {cudaErrorCapturedEvent, "cudaErrorCapturedEvent",
     "operation not permitted on an event last recorded in a capturing "
     "stream"},
    {cudaErrorNotSupported, "cudaErrorNotSupported", "operation not supported"},
};

const error_text *text_of(cudaError_t error) {
  for (const error_text &t : error_texts)
    if (t.error == error)
      return &t;
  return nullptr;
}
} // namespace

extern "C" {

const char *cudaGetErrorName(cudaError_t error) {
  const error_text *t = text_of(error);
  return t ? t->name : "cudaErrorUnknown";
}

const char *cudaGetErrorString(cudaError_t error) {
  const error_text *t = text_of(error);
  return t ? t->text : "unknown error";
}

cudaError_t cudaGetLastError(void) {
  cudaError_t error = last_error;
  last_error = cudaSuccess;
  cudaError_t fault = sticky();
  return fault != cudaSuccess ? fault : error;
}

cudaError_t cudaPeekAtLastError(void) {
  cudaError_t fault = sticky();
  return fault != cudaSuccess ? fault : last_error;
}

/* ------------------------------------------------------------------------ */
/* Devices                                                                   */
/* ------------------------------------------------------------------------ */

cudaError_t cudaGetDeviceCount(int *count) {
  *count = device_count();
  return result(*count > 0 ? cudaSuccess : cudaErrorNoDevice);
}

cudaError_t cudaSetDevice(int device) {
  if (device < 0 || device >= device_count())
    return result(device_count() == 0 ? cudaErrorNoDevice
                                      : cudaErrorInvalidDevice);
  current_device = device;
  return result(cudaSuccess);
}

cudaError_t cudaGetDevice(int *device) {
  *device = current_device;
  return result(cudaSuccess);
}

cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *properties,
                                    int device) {
  if (device < 0 || device >= device_count())
    return result(cudaErrorInvalidDevice);
  memset(properties, 0, sizeof *properties);
  snprintf(properties->name, sizeof properties->name,
           "nn CUDA emulator (CPU, not a GPU)");
  properties->major = 9;
  properties->minor = 0;
  properties->totalGlobalMem = device_memory();
  properties->multiProcessorCount = 2;
  properties->maxThreadsPerBlock = 1024;
  properties->warpSize = 32;
  properties->sharedMemPerBlock = 48 * 1024;
  properties->memoryBusWidth = 64;
  properties->l2CacheSize = 1 << 20;
  properties->maxGridSize[0] = 0x7fffffff;
  properties->maxGridSize[1] = properties->maxGridSize[2] = 65535;
  properties->maxThreadsDim[0] = properties->maxThreadsDim[1] = 1024;
  properties->maxThreadsDim[2] = 64;
  return result(cudaSuccess);
}

cudaError_t cudaDeviceGetAttribute(int *value, enum cudaDeviceAttr attribute,
                                   int device) {
  if (device < 0 || device >= device_count())
    return result(cudaErrorInvalidDevice);
  switch (attribute) {
  case cudaDevAttrClockRate:
    *value = 1000000; /* kHz */
    return result(cudaSuccess);
  case cudaDevAttrMemoryClockRate:
    *value = 1000000;
    return result(cudaSuccess);
  case cudaDevAttrMultiProcessorCount:
    *value = 2;
    return result(cudaSuccess);
  case cudaDevAttrComputeCapabilityMajor:
    *value = 9;
    return result(cudaSuccess);
  case cudaDevAttrComputeCapabilityMinor:
    *value = 0;
    return result(cudaSuccess);
  default:
    report("cudaDeviceGetAttribute: attribute %d is not emulated",
           (int)attribute);
    return result(cudaErrorInvalidValue);
  }
}

cudaError_t cudaDriverGetVersion(int *version) {
  *version = CUDART_VERSION;
  return result(cudaSuccess);
}

cudaError_t cudaRuntimeGetVersion(int *version) {
  *version = CUDART_VERSION;
  return result(cudaSuccess);
}

cudaError_t cudaFuncGetAttributes(struct cudaFuncAttributes *attributes,
                                  const void *function) {
  if (!function)
    return result(cudaErrorInvalidDeviceFunction);
  if (setting("NNEMU_NO_KERNEL_IMAGE", 0))
    return result(cudaErrorNoKernelImageForDevice);
  memset(attributes, 0, sizeof *attributes);
  attributes->maxThreadsPerBlock = 1024;
  attributes->ptxVersion = attributes->binaryVersion = 90;
  return result(cudaSuccess);
}

cudaError_t cudaDeviceSynchronize(void) {
  if (refused_during_capture("cudaDeviceSynchronize"))
    return result(cudaErrorStreamCaptureUnsupported);
  drain_all();
  return result(cudaSuccess);
}

/* ------------------------------------------------------------------------ */
/* Memory                                                                    */
/* ------------------------------------------------------------------------ */

static cudaError_t allocate(void **out, size_t bytes, bool pinned,
                            const char *call) {
  *out = nullptr;
  if (sticky() != cudaSuccess)
    return result(cudaSuccess); /* the sticky error */
  if (refused_during_capture(call))
    return result(cudaErrorStreamCaptureUnsupported);
  if (bytes == 0)
    return result(cudaSuccess);
  void *memory = nullptr;
  {
    std::lock_guard<std::mutex> lock(memory_mutex);
    if (!pinned && bytes > device_memory() - device_bytes_in_use)
      return result(cudaErrorMemoryAllocation);
    /* Device memory in whole pages of its own, for the host guard. */
    const size_t pages = pinned ? bytes : round_up(bytes, page_bytes());
    if (posix_memalign(&memory, pinned ? 256 : page_bytes(), pages) != 0)
      return result(cudaErrorMemoryAllocation);
    /* NaN in every float. Pinned memory too: CUDA promises nothing of its
     * contents, and a staging buffer read before it is filled should show. */
    memset(memory, 0xff, bytes);
#if defined(__SANITIZE_ADDRESS__)
    ASAN_POISON_MEMORY_REGION((char *)memory + bytes, pages - bytes);
#endif
    allocations[(uintptr_t)memory] = allocation{bytes, pages, pinned};
    if (!pinned)
      device_bytes_in_use += bytes;
  }
  if (!pinned) {
    install_host_guard();
    guard_new_allocation((uintptr_t)memory);
  }
  *out = memory;
  return result(cudaSuccess);
}

/* Frees even after a sticky error (which it still returns), so that
 * LeakSanitizer reports only memory nobody freed. */
static cudaError_t release(void *memory, bool pinned, const char *call) {
  if (!memory)
    return result(cudaSuccess);
  if (refused_during_capture(call))
    return result(cudaErrorStreamCaptureUnsupported);
  /* As on a GPU, freeing waits for the device's work first. */
  drain_all();
  std::lock_guard<std::mutex> guard(guard_mutex);
  std::lock_guard<std::mutex> lock(memory_mutex);
  auto found = allocations.find((uintptr_t)memory);
  if (found == allocations.end() || found->second.pinned != pinned) {
    report("%s(%p): not the start of memory from %s", call, memory,
           pinned ? "cudaHostAlloc" : "cudaMalloc");
    return result(cudaErrorInvalidValue);
  }
  if (!pinned) {
    device_bytes_in_use -= found->second.bytes;
    open_allocation(found->first, found->second);
#if defined(__SANITIZE_ADDRESS__)
    ASAN_UNPOISON_MEMORY_REGION(memory, found->second.pages_bytes);
#endif
  }
  forget_accesses_in(memory, found->second.bytes);
  const allocation block = found->second;
  allocations.erase(found);
  if (!pinned && host_guarded())
    quarantine_allocation((uintptr_t)memory, block);
  else
    free(memory);
  return result(cudaSuccess);
}

cudaError_t cudaMalloc(void **pointer, size_t bytes) {
  return allocate(pointer, bytes, false, "cudaMalloc");
}

cudaError_t cudaFree(void *pointer) {
  return release(pointer, false, "cudaFree");
}

cudaError_t cudaHostAlloc(void **pointer, size_t bytes, unsigned int flags) {
  (void)flags;
  return allocate(pointer, bytes, true, "cudaHostAlloc");
}

cudaError_t cudaMallocHost(void **pointer, size_t bytes) {
  return allocate(pointer, bytes, true, "cudaMallocHost");
}

cudaError_t cudaFreeHost(void *pointer) {
  return release(pointer, true, "cudaFreeHost");
}

cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes) {
  std::lock_guard<std::mutex> lock(memory_mutex);
  *total_bytes = device_memory();
  *free_bytes = device_memory() - device_bytes_in_use;
  return result(cudaSuccess);
}

/* Whether each side of a copy is the memory its kind says. */
static bool check_copy(void *dst, const void *src, size_t bytes,
                       enum cudaMemcpyKind kind, const char *call) {
  const bool dst_device = is_device_range(dst, bytes);
  const bool src_device = is_device_range(src, bytes);
  const bool dst_host = !is_device_range(dst, 0);
  const bool src_host = !is_device_range(src, 0);
  bool ok = false;
  switch (kind) {
  case cudaMemcpyHostToDevice:
    ok = dst_device && src_host;
    break;
  case cudaMemcpyDeviceToHost:
    ok = dst_host && src_device;
    break;
  case cudaMemcpyDeviceToDevice:
    ok = dst_device && src_device;
    break;
  case cudaMemcpyHostToHost:
    ok = dst_host && src_host;
    break;
  case cudaMemcpyDefault:
    ok = (dst_device || dst_host) && (src_device || src_host);
    break;
  }
  if (!ok)
    report("%s(dst %p, src %p, %zu bytes, kind %d): a side is not the memory "
           "the kind says, or the range runs past its allocation",
           call, dst, src, bytes, (int)kind);
  return ok;
}

/* The order check's view of a copy as it runs: it reads device memory at
 * src (if any), and writes device memory at dst (if it is that). */
static void note_copy(void *dst, const void *src, size_t bytes) {
  if (src && is_device_range(src, 0))
    note_access(src, "cudaMemcpyAsync (its source)");
  if (is_device_range(dst, 0))
    note_copy_write(dst, bytes, "cudaMemcpyAsync");
}

/* A queued copy from pinned memory reads it when the stream gets there:
 * until then (an event says when) the host must not write it. A checksum at
 * the call and again at the copy finds a host write in between — a race on
 * a GPU, however the timing falls here — unless device work (a copy into
 * that memory) wrote it meanwhile. */
static uint64_t checksum(const void *memory, size_t bytes) {
  const unsigned char *byte = static_cast<const unsigned char *>(memory);
  uint64_t hash = 1469598103934665603ull; /* FNV-1a */
  for (size_t k = 0; k < bytes; k++)
    hash = (hash ^ byte[k]) * 1099511628211ull;
  return hash;
}

static uint64_t device_writes_into(const void *pinned) {
  std::lock_guard<std::mutex> lock(memory_mutex);
  const allocation *found = find_allocation(pinned, 0, nullptr);
  return found ? found->device_writes : 0;
}

static void note_device_write(const void *pinned) {
  std::lock_guard<std::mutex> lock(memory_mutex);
  uintptr_t start = 0;
  if (find_allocation(pinned, 0, &start))
    allocations[start].device_writes++;
}

static operation checked_pinned_copy(void *dst, const void *src, size_t bytes) {
  const uint64_t sum = checksum(src, bytes);
  const uint64_t writes = device_writes_into(src);
  return [dst, src, bytes, sum, writes] {
    if (device_writes_into(src) == writes && checksum(src, bytes) != sum)
      fail_execution(cudaErrorIllegalState,
                     "cudaMemcpyAsync: the pinned source at %p (%zu bytes) "
                     "changed between the call and the copy: the host wrote "
                     "it before the stream read it (wait for an event "
                     "recorded after the copy first)",
                     src, bytes);
    note_copy(dst, src, bytes);
    memcpy(dst, src, bytes);
  };
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes,
                            enum cudaMemcpyKind kind, cudaStream_t stream) {
  if (bytes == 0)
    return result(cudaSuccess);
  if (!check_copy(dst, src, bytes, kind, "cudaMemcpyAsync"))
    return result(cudaErrorInvalidValue);
  const bool from_pageable = !is_device_range(src, 0) && !is_pinned(src);
  const bool to_pageable = !is_device_range(dst, 0) && !is_pinned(dst);
  if ((from_pageable || to_pageable) && is_capturing(stream)) {
    /* A copy from pageable memory is staged when it is issued, and one to
     * it is waited for: neither is work a graph can replay (staging the
     * source once, at capture, would replay stale data forever). */
    CUstream_st *s = resolve(stream);
    {
      std::lock_guard<std::mutex> lock(s->mutex);
      s->capture_invalidated = true;
    }
    report("cudaMemcpyAsync(dst %p, src %p) during stream capture: a side is "
           "pageable host memory; the capture is invalidated",
           dst, src);
    return result(cudaErrorStreamCaptureUnsupported);
  }
  cudaError_t error;
  if (from_pageable) {
    /* Pageable source: read before the call returns, as CUDA stages it. */
    auto staged = std::make_shared<std::vector<unsigned char>>(
        (const unsigned char *)src, (const unsigned char *)src + bytes);
    error = enqueue(
        stream,
        [dst, staged] {
          note_copy(dst, nullptr, staged->size());
          memcpy(dst, staged->data(), staged->size());
        },
        "cudaMemcpyAsync");
  } else if (is_pinned(src) && !is_capturing(stream)) {
    error = enqueue(stream, checked_pinned_copy(dst, src, bytes),
                    "cudaMemcpyAsync");
  } else if (is_pinned(dst)) {
    error = enqueue(
        stream,
        [dst, src, bytes] {
          note_copy(dst, src, bytes);
          memcpy(dst, src, bytes);
          note_device_write(dst);
        },
        "cudaMemcpyAsync");
  } else {
    error = enqueue(
        stream,
        [dst, src, bytes] {
          note_copy(dst, src, bytes);
          memcpy(dst, src, bytes);
        },
        "cudaMemcpyAsync");
  }
  if (error == cudaSuccess && to_pageable)
    drain(resolve(stream)); /* to pageable memory: done when it returns */
  return result(error);
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes,
                       enum cudaMemcpyKind kind) {
  if (refused_during_capture("cudaMemcpy"))
    return result(cudaErrorStreamCaptureUnsupported);
  cudaError_t error = cudaMemcpyAsync(dst, src, bytes, kind, nullptr);
  if (error == cudaSuccess)
    drain(legacy_stream());
  return result(error);
}

cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes,
                            cudaStream_t stream) {
  if (bytes == 0)
    return result(cudaSuccess);
  if (!is_device_range(dst, bytes)) {
    report("cudaMemsetAsync(%p, %zu bytes): not inside device memory", dst,
           bytes);
    return result(cudaErrorInvalidValue);
  }
  return result(enqueue(
      stream,
      [dst, value, bytes] {
        note_copy_write(dst, bytes, "cudaMemsetAsync");
        memset(dst, value, bytes);
      },
      "cudaMemsetAsync"));
}

cudaError_t cudaMemset(void *dst, int value, size_t bytes) {
  cudaError_t error = cudaMemsetAsync(dst, value, bytes, nullptr);
  if (error == cudaSuccess)
    drain(legacy_stream());
  return result(error);
}

/* ------------------------------------------------------------------------ */
/* Streams                                                                   */
/* ------------------------------------------------------------------------ */

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream,
                                      unsigned int flags) {
  (void)flags; /* streams here never wait for the legacy stream */
  *stream = make_stream();
  std::lock_guard<std::mutex> lock(streams_mutex);
  all_streams.push_back(*stream);
  return result(cudaSuccess);
}

cudaError_t cudaStreamCreate(cudaStream_t *stream) {
  return cudaStreamCreateWithFlags(stream, cudaStreamDefault);
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  if (!stream)
    return result(cudaErrorInvalidResourceHandle);
  {
    std::lock_guard<std::mutex> lock(streams_mutex);
    auto found = std::find(all_streams.begin(), all_streams.end(), stream);
    if (found == all_streams.end())
      return result(cudaErrorInvalidResourceHandle);
    all_streams.erase(found);
  }
  {
    std::lock_guard<std::mutex> lock(stream->mutex);
    stream->stopping = true; /* its queued work still runs */
    stream->changed.notify_all();
  }
  if (stream->worker.joinable())
    stream->worker.join();
  delete stream->capture;
  delete stream;
  return result(cudaSuccess);
}

cudaError_t cudaStreamSynchronize(cudaStream_t handle) {
  CUstream_st *stream = resolve(handle);
  if (is_capturing(handle)) {
    refused_during_capture("cudaStreamSynchronize");
    std::lock_guard<std::mutex> lock(stream->mutex);
    stream->capture_invalidated = true;
    return result(cudaErrorStreamCaptureUnsupported);
  }
  if (stream == legacy_stream() &&
      refused_during_capture("cudaStreamSynchronize(legacy stream)"))
    return result(cudaErrorStreamCaptureImplicit);
  drain(stream);
  return result(cudaSuccess);
}

/* ------------------------------------------------------------------------ */
/* Events                                                                    */
/* ------------------------------------------------------------------------ */

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned int flags) {
  std::shared_ptr<CUevent_st> made = std::make_shared<CUevent_st>();
  made->timing = !(flags & cudaEventDisableTiming);
  made->self = made;
  *event = made.get();
  return result(cudaSuccess);
}

cudaError_t cudaEventCreate(cudaEvent_t *event) {
  return cudaEventCreateWithFlags(event, cudaEventDefault);
}

/* Returns at once, as CUDA's does: work still queued that records or waits
 * on the event holds it until it has run. No drain here, so that host code
 * that destroys an event gets no ordering from it that a GPU would not
 * give. */
cudaError_t cudaEventDestroy(cudaEvent_t event) {
  if (!event)
    return result(cudaErrorInvalidResourceHandle);
  std::shared_ptr<CUevent_st> last;
  {
    std::lock_guard<std::mutex> lock(event->mutex);
    last = std::move(event->self);
  }
  last.reset(); /* outside the lock: this may delete the event */
  return result(cudaSuccess);
}

static void complete(CUevent_st *event, uint64_t record) {
  std::lock_guard<std::mutex> lock(event->mutex);
  event->pending.erase(record);
  if (record >= event->latest_completed) {
    event->latest_completed = record;
    event->when = std::chrono::steady_clock::now();
  }
  event->changed.notify_all();
}

/* An event last recorded in a capturing stream stands for no work that
 * will run (cudaErrorCapturedEvent). */
static bool refused_as_captured(CUevent_st *event, const char *call) {
  bool captured;
  {
    std::lock_guard<std::mutex> lock(event->mutex);
    captured = event->captured;
  }
  if (captured)
    report("%s: the event was last recorded in a capturing stream, so it "
           "stands for no work that will run (cudaErrorCapturedEvent)",
           call);
  return captured;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  if (!event)
    return result(cudaErrorInvalidResourceHandle);
  if (is_capturing(stream)) {
    /* As in CUDA: a record in a capture makes no node of the graph (only
     * cudaEventRecordWithFlags(..., cudaEventRecordExternal) would), so
     * replays never complete it; it only marks a point of the capture for
     * cudaStreamWaitEvent. */
    CUstream_st *s = resolve(stream);
    {
      std::lock_guard<std::mutex> lock(s->mutex);
      if (s->capture_invalidated)
        return result(cudaErrorStreamCaptureInvalidated);
    }
    std::lock_guard<std::mutex> lock(event->mutex);
    event->captured = true;
    return result(cudaSuccess);
  }
  uint64_t record;
  std::shared_ptr<CUevent_st> held;
  auto clock = std::make_shared<vector_clock>();
  std::shared_ptr<vector_clock> earlier_clock;
  {
    std::lock_guard<std::mutex> lock(event->mutex);
    record = ++event->issued;
    event->pending.insert(record);
    event->captured = false;
    held = event->self;
    earlier_clock = std::move(event->latest_clock);
    event->latest_clock = clock;
  }
  cudaError_t error = enqueue(
      stream,
      [held, record, clock] {
        record_clock(*clock);
        complete(held.get(), record);
      },
      "cudaEventRecord");
  if (error != cudaSuccess) {
    /* Never queued: nothing will complete it. */
    std::lock_guard<std::mutex> lock(event->mutex);
    event->pending.erase(record);
    if (event->issued == record) {
      event->issued--;
      event->latest_clock = std::move(earlier_clock);
    }
  }
  return result(error);
}

/* Until the stream reaches the record; or, after a fault, at once-ish:
 * the device runs nothing more then (run_operation), so the record would
 * never come, and a GPU's waits return the fault instead of hanging. */
static void wait_for_record(CUevent_st *event, uint64_t record) {
  std::unique_lock<std::mutex> lock(event->mutex);
  while (!event->changed.wait_for(
      lock, std::chrono::milliseconds(10),
      [event, record] { return event->pending.count(record) == 0; }))
    if (sticky() != cudaSuccess)
      return;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  if (!event)
    return result(cudaErrorInvalidResourceHandle);
  if (refused_as_captured(event, "cudaEventSynchronize"))
    return result(cudaErrorCapturedEvent);
  if (own_capture() && refused_during_capture("cudaEventSynchronize"))
    return result(cudaErrorStreamCaptureUnsupported);
  uint64_t record;
  std::shared_ptr<vector_clock> clock;
  {
    std::lock_guard<std::mutex> lock(event->mutex);
    record = event->issued;
    clock = event->latest_clock;
  }
  wait_for_record(event, record);
  if (clock)
    host_learns(*clock);
  host_waited();
  return result(cudaSuccess);
}

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event,
                                unsigned int flags) {
  (void)flags;
  if (!event)
    return result(cudaErrorInvalidResourceHandle);
  uint64_t record;
  bool captured;
  std::shared_ptr<CUevent_st> held;
  std::shared_ptr<vector_clock> clock;
  {
    std::lock_guard<std::mutex> lock(event->mutex);
    record = event->issued;
    captured = event->captured;
    held = event->self;
    clock = event->latest_clock;
  }
  const bool capturing = is_capturing(stream);
  if (captured && !capturing) {
    /* CUDA would make this stream join the capture (a fork of it); the
     * emulator captures one stream only, and nn never forks. */
    report("cudaStreamWaitEvent: a stream that is not capturing waits on an "
           "event recorded in a capture (joining a capture from another "
           "stream is not emulated)");
    return result(cudaErrorNotSupported);
  }
  if (capturing && !captured && record > 0) {
    /* Waiting inside a capture on work outside it. */
    CUstream_st *s = resolve(stream);
    std::lock_guard<std::mutex> lock(s->mutex);
    s->capture_invalidated = true;
    report("cudaStreamWaitEvent: a capturing stream waits on an event "
           "recorded outside the capture; the capture is invalidated");
    return result(cudaErrorStreamCaptureIsolation);
  }
  if (capturing)
    return result(cudaSuccess); /* ordered by the graph itself */
  return result(enqueue(
      stream,
      [held, record, clock] {
        leave_device(); /* a wait touches no memory: the guard stays up */
        wait_for_record(held.get(), record);
        enter_device();
        if (clock)
          learn_clock(*clock);
      },
      "cudaStreamWaitEvent"));
}

cudaError_t cudaEventQuery(cudaEvent_t event) {
  if (!event)
    return result(cudaErrorInvalidResourceHandle);
  if (refused_as_captured(event, "cudaEventQuery"))
    return result(cudaErrorCapturedEvent);
  std::shared_ptr<vector_clock> clock;
  {
    std::lock_guard<std::mutex> lock(event->mutex);
    if (event->pending.count(event->issued))
      return cudaErrorNotReady;
    clock = event->latest_clock;
  }
  if (clock)
    host_learns(*clock); /* the host saw it happen */
  host_waited();
  return result(cudaSuccess);
}

/* When event's latest record completed, or why that cannot be told. */
static cudaError_t completion_time(CUevent_st *event,
                                   std::chrono::steady_clock::time_point *at) {
  if (refused_as_captured(event, "cudaEventElapsedTime"))
    return cudaErrorCapturedEvent;
  std::lock_guard<std::mutex> lock(event->mutex);
  if (!event->timing || event->issued == 0)
    return cudaErrorInvalidResourceHandle;
  if (event->pending.count(event->issued))
    return cudaErrorNotReady;
  *at = event->when;
  return cudaSuccess;
}

cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start,
                                 cudaEvent_t end) {
  if (!start || !end)
    return result(cudaErrorInvalidResourceHandle);
  std::chrono::steady_clock::time_point from, to;
  cudaError_t error = completion_time(start, &from);
  if (error == cudaSuccess)
    error = completion_time(end, &to);
  if (error != cudaSuccess)
    return result(error);
  *ms = std::chrono::duration<float, std::milli>(to - from).count();
  return result(cudaSuccess);
}

/* ------------------------------------------------------------------------ */
/* Graphs                                                                    */
/* ------------------------------------------------------------------------ */

cudaError_t cudaStreamBeginCapture(cudaStream_t handle,
                                   enum cudaStreamCaptureMode mode) {
  (void)mode; /* every mode is held to the thread-local rules */
  if (!handle || handle == cudaStreamLegacy)
    return result(cudaErrorStreamCaptureUnsupported);
  std::lock_guard<std::mutex> lock(handle->mutex);
  if (handle->capture)
    return result(cudaErrorIllegalState);
  /* Work queued before the capture is not part of it; the graph replays
   * only what is issued from now on. */
  handle->capture = new CUgraph_st;
  handle->capturing_thread = std::this_thread::get_id();
  handle->capture_invalidated = false;
  return result(cudaSuccess);
}

/* Active while the stream captures, whichever thread asks, and
 * Invalidated once a refused call broke the capture, until it is ended
 * (the real runtime's answers). */
cudaError_t cudaStreamIsCapturing(cudaStream_t handle,
                                  enum cudaStreamCaptureStatus *status) {
  if (!status)
    return result(cudaErrorInvalidValue);
  *status = cudaStreamCaptureStatusNone;
  if (!handle || handle == cudaStreamLegacy)
    return result(cudaSuccess);
  std::lock_guard<std::mutex> lock(handle->mutex);
  if (handle->capture)
    *status = handle->capture_invalidated ? cudaStreamCaptureStatusInvalidated
                                          : cudaStreamCaptureStatusActive;
  return result(cudaSuccess);
}

cudaError_t cudaStreamEndCapture(cudaStream_t handle, cudaGraph_t *graph) {
  *graph = nullptr;
  if (!handle)
    return result(cudaErrorInvalidResourceHandle);
  std::lock_guard<std::mutex> lock(handle->mutex);
  if (!handle->capture)
    return result(cudaErrorIllegalState);
  if (handle->capturing_thread != std::this_thread::get_id())
    return result(cudaErrorStreamCaptureWrongThread);
  CUgraph_st *captured = handle->capture;
  handle->capture = nullptr;
  if (handle->capture_invalidated) {
    delete captured;
    return result(cudaErrorStreamCaptureInvalidated);
  }
  *graph = captured;
  return result(cudaSuccess);
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph,
                                 unsigned long long flags) {
  (void)flags;
  if (!graph)
    return result(cudaErrorInvalidValue);
  *exec = new CUgraphExec_st;
  (*exec)->operations =
      std::make_shared<const std::vector<operation>>(graph->operations);
  return result(cudaSuccess);
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  if (!exec)
    return result(cudaErrorInvalidResourceHandle);
  auto operations = exec->operations; /* kept alive while queued */
  return result(enqueue(
      stream,
      [operations] {
        for (const operation &op : *operations)
          run_operation(op);
      },
      "cudaGraphLaunch"));
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  delete graph;
  return result(cudaSuccess);
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  delete exec;
  return result(cudaSuccess);
}

} /* extern "C" */
