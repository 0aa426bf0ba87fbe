/*
 * emulator_test.cu — the CUDA emulator checked on its own: that kernels see
 * the threads, blocks, barriers and shuffles a GPU gives them, that the
 * mistakes it promises to catch are caught, and that streams, events and
 * graphs keep CUDA's order. Compiled like the backend's .cu files (launches
 * rewritten, device_code.hpp force-included); each test runs in a process
 * of its own, so a sticky error ends with its test.
 */
#include <criterion/criterion.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

/* out[global thread] = its block-local index and block index, packed. */
static __global__ void index_kernel(uint32_t *out) {
  const unsigned global = blockIdx.x * blockDim.x + threadIdx.x;
  out[global] = threadIdx.x | (blockIdx.x << 16);
}

/* out[block] = Σ of in over the block's 256 values, by warp butterflies
 * then thread 0 over the warp totals after a barrier. */
static __global__ void block_sum_kernel(const float *in, float *out) {
  __shared__ float warp_totals[8];
  float value = in[blockIdx.x * blockDim.x + threadIdx.x];
  for (int offset = 16; offset > 0; offset /= 2)
    value += __shfl_xor_sync(0xffffffffu, value, offset);
  if (threadIdx.x % 32 == 0)
    warp_totals[threadIdx.x / 32] = value;
  __syncthreads();
  if (threadIdx.x == 0) {
    float total = 0.0f;
    for (int w = 0; w < 8; w++)
      total += warp_totals[w];
    out[blockIdx.x] = total;
  }
}

/* Lane 0 leaves before the shuffle its partner (lane 1) then makes. */
static __global__ void shuffle_after_return_kernel(float *out) {
  if (threadIdx.x == 0)
    return;
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);
}

/* Half the threads wait at __syncthreads, half at a shuffle. */
static __global__ void mixed_barriers_kernel(float *out) {
  if (threadIdx.x < 32)
    __syncthreads();
  else
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);
}

/* out[0] = what thread 1 reads of thread 0's write, with no barrier
 * between them: right only if thread 0 happens to run first. */
static __global__ void missing_barrier_kernel(float *out) {
  __shared__ float value;
  if (threadIdx.x == 0)
    value = 42.0f;
  __syncthreads();
  if (threadIdx.x == 1)
    value = 0.0f; /* thread 0 reads below without a barrier after this */
  if (threadIdx.x == 0)
    out[0] = value;
}

/* out[block] = what thread 0 finds in shared memory before writing it: on a
 * GPU, anything (here NaN), never what an earlier block left. */
static __global__ void stale_shared_kernel(float *out) {
  __shared__ float carried;
  if (threadIdx.x == 0) {
    out[blockIdx.x] = carried;
    carried = (float)blockIdx.x;
  }
}

/* Holds its stream until the host sets *flag (pinned memory). */
static __global__ void wait_for_flag_kernel(const int *flag) {
  while (__atomic_load_n(flag, __ATOMIC_ACQUIRE) == 0)
    std::this_thread::yield();
}

static __global__ void add_kernel(float *x, float amount, size_t count) {
  for (size_t k = threadIdx.x; k < count; k += blockDim.x)
    x[k] += amount;
}

/* Device memory made by a test, freed when the test ends (also after a
 * sticky error: the emulator frees then too, so LeakSanitizer stays quiet
 * about what the tests meant to free). */
static std::vector<void *> allocated;

static void free_allocated(void) {
  for (void *memory : allocated)
    cudaFree(memory);
  allocated.clear();
}

TestSuite(emulator, .fini = free_allocated);

template <class T> static T *device_array(size_t count) {
  void *memory = nullptr;
  cr_assert_eq(cudaMalloc(&memory, count * sizeof(T)), cudaSuccess);
  allocated.push_back(memory);
  return (T *)memory;
}

template <class T> static std::vector<T> download(const T *src, size_t count) {
  std::vector<T> host(count);
  cr_assert_eq(
      cudaMemcpy(host.data(), src, count * sizeof(T), cudaMemcpyDeviceToHost),
      cudaSuccess);
  return host;
}

Test(emulator, every_thread_sees_its_own_indices) {
  uint32_t *out = device_array<uint32_t>(3 * 128);
  index_kernel<<<3, 128>>>(out);
  cr_assert_eq(cudaGetLastError(), cudaSuccess);
  std::vector<uint32_t> seen = download(out, 3 * 128);
  for (unsigned k = 0; k < 3 * 128; k++)
    cr_assert_eq(seen[k], (k % 128) | ((k / 128) << 16), "thread %u", k);
}

Test(emulator, barriers_and_shuffles_sum_each_block) {
  const unsigned blocks = 3, threads = 256;
  std::vector<float> values(blocks * threads);
  for (size_t k = 0; k < values.size(); k++)
    values[k] = (float)(k % 7) - 2.0f;
  float *in = device_array<float>(values.size());
  float *out = device_array<float>(blocks);
  cudaMemcpy(in, values.data(), values.size() * sizeof(float),
             cudaMemcpyHostToDevice);
  /* Twice: the second launch runs the kernel as known to synchronise. */
  for (int pass = 0; pass < 2; pass++) {
    cudaMemset(out, 0, blocks * sizeof(float));
    block_sum_kernel<<<blocks, threads>>>(in, out);
    std::vector<float> sums = download(out, blocks);
    for (unsigned b = 0; b < blocks; b++) {
      float expected = 0.0f;
      for (unsigned t = 0; t < threads; t++)
        expected += values[b * threads + t];
      cr_assert_float_eq(sums[b], expected, 1e-4, "block %u", b);
    }
  }
}

/* In GPU order thread 0 reads before thread 1 writes; last first, after. */
static float missing_barrier_result(void) {
  float *out = device_array<float>(1);
  missing_barrier_kernel<<<1, 32>>>(out);
  return download(out, 1)[0];
}

Test(emulator, thread_order_decides_a_race_in_gpu_order) {
  unsetenv("NNEMU_REVERSE");
  cr_assert_eq(missing_barrier_result(), 42.0f);
}

Test(emulator, reversed_order_shows_the_race) {
  setenv("NNEMU_REVERSE", "1", 1);
  cr_assert_eq(missing_barrier_result(), 0.0f);
}

Test(emulator, device_memory_starts_as_nan) {
  float *x = device_array<float>(4);
  std::vector<float> seen = download(x, 4);
  for (float value : seen)
    cr_assert(std::isnan(value));
}

Test(emulator, a_host_pointer_given_to_a_kernel_is_an_illegal_address) {
  std::vector<float> host(16, 0.0f);
  add_kernel<<<1, 32>>>(host.data(), 1.0f, host.size());
  cr_assert_eq(cudaDeviceSynchronize(), cudaErrorIllegalAddress);
  cr_assert_eq(host[0], 0.0f, "the kernel must not have run");
  /* Sticky: every later call reports it. */
  void *memory = nullptr;
  cr_assert_eq(cudaMalloc(&memory, 16), cudaErrorIllegalAddress);
}

Test(emulator, a_shuffle_with_a_returned_lane_fails_the_launch) {
  float *out = device_array<float>(32);
  shuffle_after_return_kernel<<<1, 32>>>(out);
  cr_assert_eq(cudaDeviceSynchronize(), cudaErrorLaunchFailure);
}

Test(emulator, threads_at_different_barriers_fail_the_launch) {
  float *out = device_array<float>(64);
  mixed_barriers_kernel<<<1, 64>>>(out);
  cr_assert_eq(cudaDeviceSynchronize(), cudaErrorLaunchFailure);
}

Test(emulator, a_bad_configuration_is_the_launch_error) {
  float *x = device_array<float>(1);
  add_kernel<<<1, 2048>>>(x, 1.0f, 1);
  cr_assert_eq(cudaGetLastError(), cudaErrorInvalidConfiguration);
  cr_assert_eq(cudaGetLastError(), cudaSuccess, "not sticky");
}

Test(emulator, copies_check_their_kind_and_bounds) {
  float *x = device_array<float>(4);
  float host[8] = {0};
  cr_assert_eq(cudaMemcpy(x, host, 8 * sizeof(float), cudaMemcpyHostToDevice),
               cudaErrorInvalidValue, "runs past the allocation");
  cr_assert_eq(cudaMemcpy(host, x, 4 * sizeof(float), cudaMemcpyHostToDevice),
               cudaErrorInvalidValue, "sides swapped");
  cr_assert_eq(cudaGetLastError(), cudaErrorInvalidValue);
  cr_assert_eq(cudaMemcpy(x, host, 4 * sizeof(float), cudaMemcpyHostToDevice),
               cudaSuccess);
}

Test(emulator, device_memory_runs_out_at_its_size) {
  setenv("NNEMU_DEVICE_MEMORY", "4096", 1);
  void *a = nullptr, *b = nullptr;
  cr_assert_eq(cudaMalloc(&a, 3000), cudaSuccess);
  allocated.push_back(a);
  cr_assert_eq(cudaMalloc(&b, 2000), cudaErrorMemoryAllocation);
  cr_assert_null(b);
  size_t free_bytes = 0, total_bytes = 0;
  cudaMemGetInfo(&free_bytes, &total_bytes);
  cr_assert_eq(total_bytes, 4096u);
  cr_assert_eq(free_bytes, 4096u - 3000u);
}

Test(emulator, a_stream_waits_for_an_event_of_another) {
  cudaStream_t first, second;
  cudaStreamCreateWithFlags(&first, cudaStreamNonBlocking);
  cudaStreamCreateWithFlags(&second, cudaStreamNonBlocking);
  cudaEvent_t done;
  cudaEventCreateWithFlags(&done, cudaEventDisableTiming);
  float *x = device_array<float>(1);
  cudaMemsetAsync(x, 0, sizeof(float), first);
  for (int k = 0; k < 200; k++)
    add_kernel<<<1, 32, 0, first>>>(x, 1.0f, 1);
  cudaEventRecord(done, first);
  cudaStreamWaitEvent(second, done, 0);
  /* Doubles what the first stream made, only once it has made all of it. */
  float *y = device_array<float>(1);
  cudaMemcpyAsync(y, x, sizeof(float), cudaMemcpyDeviceToDevice, second);
  cudaStreamSynchronize(second);
  cr_assert_eq(download(y, 1)[0], 200.0f);
  cudaEventDestroy(done);
  cudaStreamDestroy(first);
  cudaStreamDestroy(second);
}

Test(emulator, a_graph_replays_what_was_captured) {
  cudaStream_t stream;
  cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
  float *x = device_array<float>(1);
  cudaMemsetAsync(x, 0, sizeof(float), stream);
  cr_assert_eq(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal),
               cudaSuccess);
  add_kernel<<<1, 32, 0, stream>>>(x, 2.0f, 1);
  cudaGraph_t graph = nullptr;
  cr_assert_eq(cudaStreamEndCapture(stream, &graph), cudaSuccess);
  cudaStreamSynchronize(stream);
  cr_assert_eq(download(x, 1)[0], 0.0f, "capturing runs nothing");
  cudaGraphExec_t exec = nullptr;
  cr_assert_eq(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  for (int k = 0; k < 3; k++)
    cudaGraphLaunch(exec, stream);
  cudaStreamSynchronize(stream);
  cr_assert_eq(download(x, 1)[0], 6.0f);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

Test(emulator, synchronising_inside_a_capture_invalidates_it) {
  cudaStream_t stream;
  cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
  float *x = device_array<float>(1);
  cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal);
  add_kernel<<<1, 32, 0, stream>>>(x, 2.0f, 1);
  cr_assert_eq(cudaStreamSynchronize(stream),
               cudaErrorStreamCaptureUnsupported);
  void *memory = nullptr;
  cr_assert_eq(cudaMalloc(&memory, 16), cudaErrorStreamCaptureUnsupported);
  cudaGraph_t graph = nullptr;
  cr_assert_eq(cudaStreamEndCapture(stream, &graph),
               cudaErrorStreamCaptureInvalidated);
  cr_assert_null(graph);
  cudaStreamDestroy(stream);
}

Test(emulator, shared_memory_starts_undefined_in_every_block) {
  float *out = device_array<float>(2);
  stale_shared_kernel<<<2, 32>>>(out);
  std::vector<float> seen = download(out, 2);
  cr_assert(std::isnan(seen[0]) && std::isnan(seen[1]),
            "block 0 found %g, block 1 found %g", seen[0], seen[1]);
}

Test(emulator, pinned_memory_starts_as_nan) {
  float *pinned = nullptr;
  cr_assert_eq(cudaHostAlloc((void **)&pinned, 8192, cudaHostAllocDefault),
               cudaSuccess);
  for (size_t k = 0; k < 8192 / sizeof(float); k++)
    cr_assert(std::isnan(pinned[k]), "float %zu", k);
  cudaFreeHost(pinned);
}

Test(emulator, a_grid_wider_than_the_limit_is_the_launch_error, .timeout = 30) {
  float *x = device_array<float>(1);
  add_kernel<<<dim3(0x80000000u), 32>>>(x, 1.0f, 1);
  cr_assert_eq(cudaGetLastError(), cudaErrorInvalidConfiguration);
}

Test(emulator, an_event_recorded_in_a_capture_is_not_a_graph_node) {
  cudaStream_t stream, other;
  cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
  cudaStreamCreateWithFlags(&other, cudaStreamNonBlocking);
  cudaEvent_t event;
  cudaEventCreateWithFlags(&event, cudaEventDisableTiming);
  float *x = device_array<float>(1);
  cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal);
  add_kernel<<<1, 32, 0, stream>>>(x, 2.0f, 1);
  cr_assert_eq(cudaEventRecord(event, stream), cudaSuccess);
  cudaGraph_t graph = nullptr;
  cr_assert_eq(cudaStreamEndCapture(stream, &graph), cudaSuccess);
  cudaGraphExec_t exec = nullptr;
  cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphLaunch(exec, stream);
  cudaStreamSynchronize(stream);
  /* No replay records it: it stands for no work that will run. */
  cr_assert_eq(cudaEventQuery(event), cudaErrorCapturedEvent);
  cr_assert_eq(cudaEventSynchronize(event), cudaErrorCapturedEvent);
  cr_assert_eq(cudaStreamWaitEvent(other, event, 0), cudaErrorNotSupported);
  /* Recorded again outside a capture, it is an ordinary event. */
  cudaEventRecord(event, stream);
  cr_assert_eq(cudaEventSynchronize(event), cudaSuccess);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaEventDestroy(event);
  cudaStreamDestroy(other);
  cudaStreamDestroy(stream);
}

Test(emulator, a_pageable_copy_inside_a_capture_invalidates_it) {
  cudaStream_t stream;
  cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
  float *x = device_array<float>(4);
  std::vector<float> host(4, 1.0f);
  cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal);
  /* Staged at capture, a replay would copy these values forever. */
  cr_assert_eq(cudaMemcpyAsync(x, host.data(), 4 * sizeof(float),
                               cudaMemcpyHostToDevice, stream),
               cudaErrorStreamCaptureUnsupported);
  cudaGraph_t graph = nullptr;
  cr_assert_eq(cudaStreamEndCapture(stream, &graph),
               cudaErrorStreamCaptureInvalidated);
  cudaStreamDestroy(stream);
}

Test(emulator, destroying_an_event_waits_for_nothing, .timeout = 30) {
  cudaStream_t stream;
  cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
  int *flag = nullptr;
  cudaHostAlloc((void **)&flag, sizeof *flag, cudaHostAllocDefault);
  *flag = 0;
  cudaEvent_t event;
  cudaEventCreateWithFlags(&event, cudaEventDisableTiming);
  wait_for_flag_kernel<<<1, 1, 0, stream>>>(flag);
  cudaEventRecord(event, stream);
  /* Returns with the record still queued (waiting for it would hang: the
   * stream is held until the flag is set below). */
  cr_assert_eq(cudaEventDestroy(event), cudaSuccess);
  __atomic_store_n(flag, 1, __ATOMIC_RELEASE);
  cr_assert_eq(cudaStreamSynchronize(stream), cudaSuccess);
  cudaFreeHost(flag);
  cudaStreamDestroy(stream);
}

Test(emulator, a_wait_is_for_the_record_it_saw, .timeout = 30) {
  cudaStream_t held, quick, waiting;
  cudaStreamCreateWithFlags(&held, cudaStreamNonBlocking);
  cudaStreamCreateWithFlags(&quick, cudaStreamNonBlocking);
  cudaStreamCreateWithFlags(&waiting, cudaStreamNonBlocking);
  int *flag = nullptr;
  cudaHostAlloc((void **)&flag, sizeof *flag, cudaHostAllocDefault);
  *flag = 0;
  cudaEvent_t event, waited;
  cudaEventCreateWithFlags(&event, cudaEventDisableTiming);
  cudaEventCreateWithFlags(&waited, cudaEventDisableTiming);
  wait_for_flag_kernel<<<1, 1, 0, held>>>(flag);
  cudaEventRecord(event, held);
  cudaStreamWaitEvent(waiting, event, 0); /* for the held stream's work */
  cudaEventRecord(waited, waiting);
  cudaEventRecord(event, quick); /* a later record, done at once */
  cudaStreamSynchronize(quick);
  cr_assert_eq(cudaEventQuery(event), cudaSuccess, "its latest record");
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  cr_assert_eq(cudaEventQuery(waited), cudaErrorNotReady,
               "the later record let the wait for the earlier one through");
  __atomic_store_n(flag, 1, __ATOMIC_RELEASE);
  cr_assert_eq(cudaEventSynchronize(waited), cudaSuccess);
  cudaEventDestroy(event);
  cudaEventDestroy(waited);
  cudaFreeHost(flag);
  cudaStreamDestroy(held);
  cudaStreamDestroy(quick);
  cudaStreamDestroy(waiting);
}

/* The emulator's verdict on a race between streams: a sticky
 * cudaErrorIllegalState. */
static void assert_race(cudaError_t error) {
  cr_assert_eq(error, cudaErrorIllegalState, "-> %s", cudaGetErrorName(error));
}

/* A pinned buffer queued for upload, written by the host before the copy
 * stream got to it (it waits on another stream, held by a flag the host
 * sets only after the write, so the copy cannot have run yet): a race on a
 * GPU, reported; the same write after an event says the copy is done is
 * fine. */
static void upload_then_write(bool wait_first) {
  cudaStream_t slow, copy;
  cudaStreamCreateWithFlags(&slow, cudaStreamNonBlocking);
  cudaStreamCreateWithFlags(&copy, cudaStreamNonBlocking);
  cudaEvent_t ready, copied;
  cudaEventCreateWithFlags(&ready, cudaEventDisableTiming);
  cudaEventCreateWithFlags(&copied, cudaEventDisableTiming);
  float *dst = device_array<float>(4);
  float *staging = nullptr;
  int *flag = nullptr;
  cr_assert_eq(
      cudaHostAlloc((void **)&staging, 4 * sizeof(float), cudaHostAllocDefault),
      cudaSuccess);
  cr_assert_eq(
      cudaHostAlloc((void **)&flag, sizeof *flag, cudaHostAllocDefault),
      cudaSuccess);
  *flag = 0;
  for (int k = 0; k < 4; k++)
    staging[k] = (float)k;
  wait_for_flag_kernel<<<1, 1, 0, slow>>>(flag);
  cudaEventRecord(ready, slow);
  cudaStreamWaitEvent(copy, ready, 0);
  cudaMemcpyAsync(dst, staging, 4 * sizeof(float), cudaMemcpyHostToDevice,
                  copy);
  cudaEventRecord(copied, copy);
  if (wait_first) {
    __atomic_store_n(flag, 1, __ATOMIC_RELEASE);
    cudaEventSynchronize(copied);
  }
  staging[0] = 99.0f; /* the next batch */
  __atomic_store_n(flag, 1, __ATOMIC_RELEASE);
  cudaStreamSynchronize(copy);
  cudaError_t error = cudaGetLastError();
  cudaFreeHost(staging);
  cudaFreeHost(flag);
  cudaEventDestroy(ready);
  cudaEventDestroy(copied);
  cudaStreamDestroy(slow);
  cudaStreamDestroy(copy);
  if (wait_first) {
    cr_assert_eq(error, cudaSuccess);
    cr_assert_eq(download(dst, 4)[0], 0.0f);
  } else {
    assert_race(error);
  }
}

Test(emulator, a_host_write_to_a_queued_upload_is_a_race, .timeout = 30) {
  upload_then_write(false);
}

Test(emulator, a_host_write_after_the_copy_event_is_fine, .timeout = 30) {
  upload_then_write(true);
}

/* The order check. A copy (here a memset, which counts as one) writes x on
 * `writer`; a kernel on `reader` then reads and writes it, ordered after
 * the copy by an event, by the host, or by nothing. The check finds the
 * unordered case from the clocks, whichever stream happens to run first. */
enum class ordering { none, event, host };

/* The two streams of a case and its events, made and destroyed with it. */
struct two_streams {
  cudaStream_t writer, reader;
  cudaEvent_t written, consumed;
  two_streams() {
    cudaStreamCreateWithFlags(&writer, cudaStreamNonBlocking);
    cudaStreamCreateWithFlags(&reader, cudaStreamNonBlocking);
    cudaEventCreateWithFlags(&written, cudaEventDisableTiming);
    cudaEventCreateWithFlags(&consumed, cudaEventDisableTiming);
  }
  ~two_streams() {
    cudaEventDestroy(written);
    cudaEventDestroy(consumed);
    cudaStreamDestroy(writer);
    cudaStreamDestroy(reader);
  }
  /* Once both have run everything: the (sticky) error, if any. */
  cudaError_t finish() {
    cudaStreamSynchronize(reader);
    cudaStreamSynchronize(writer);
    return cudaGetLastError();
  }
};

static cudaError_t touch_after_copy(ordering how) {
  two_streams streams;
  float *x = device_array<float>(4);
  cudaMemsetAsync(x, 0, 4 * sizeof(float), streams.writer);
  cudaEventRecord(streams.written, streams.writer);
  if (how == ordering::event)
    cudaStreamWaitEvent(streams.reader, streams.written, 0);
  if (how == ordering::host)
    cudaStreamSynchronize(streams.writer);
  add_kernel<<<1, 32, 0, streams.reader>>>(x + 1, 1.0f, 2);
  return streams.finish();
}

Test(emulator, a_kernel_on_memory_another_streams_copy_wrote_is_a_race) {
  assert_race(touch_after_copy(ordering::none));
}

Test(emulator, an_event_orders_a_kernel_after_another_streams_copy) {
  cr_assert_eq(touch_after_copy(ordering::event), cudaSuccess);
}

Test(emulator, the_host_orders_a_kernel_after_another_streams_copy) {
  cr_assert_eq(touch_after_copy(ordering::host), cudaSuccess);
}

/* The reverse: a kernel on `reader` uses an uploaded buffer, then the next
 * upload into it on `writer` must wait for that kernel (the feeder's
 * reuse of a device batch buffer). */
static cudaError_t copy_over_what_a_kernel_used(ordering how) {
  two_streams streams;
  float *x = device_array<float>(4), *y = device_array<float>(4);
  cudaMemsetAsync(x, 0, 4 * sizeof(float), streams.writer);
  cudaEventRecord(streams.written, streams.writer);
  cudaStreamWaitEvent(streams.reader, streams.written, 0);
  add_kernel<<<1, 32, 0, streams.reader>>>(x, 1.0f, 4);
  cudaEventRecord(streams.consumed, streams.reader);
  if (how == ordering::event)
    cudaStreamWaitEvent(streams.writer, streams.consumed, 0);
  if (how == ordering::host)
    cudaEventSynchronize(streams.consumed);
  cudaMemcpyAsync(x, y, 4 * sizeof(float), cudaMemcpyDeviceToDevice,
                  streams.writer);
  return streams.finish();
}

Test(emulator, a_copy_over_memory_another_stream_used_is_a_race) {
  assert_race(copy_over_what_a_kernel_used(ordering::none));
}

Test(emulator, an_event_orders_a_copy_after_another_streams_kernel) {
  cr_assert_eq(copy_over_what_a_kernel_used(ordering::event), cudaSuccess);
}

Test(emulator, the_host_orders_a_copy_after_another_streams_kernel) {
  cr_assert_eq(copy_over_what_a_kernel_used(ordering::host), cudaSuccess);
}

/* Runs body in a child process (its stderr collected into errors), so that
 * a test can see how a crash ends; returns the child's wait status. */
template <class Body> static int run_in_child(Body body, std::string *errors) {
  int channel[2];
  cr_assert_eq(pipe(channel), 0);
  const pid_t child = fork();
  cr_assert_neq(child, -1);
  if (child == 0) {
    dup2(channel[1], STDERR_FILENO);
    body();
    _exit(0);
  }
  close(channel[1]);
  char buffer[4096];
  ssize_t length;
  while ((length = read(channel[0], buffer, sizeof buffer)) > 0)
    errors->append(buffer, (size_t)length);
  close(channel[0]);
  int status = 0;
  waitpid(child, &status, 0);
  return status;
}

static bool ended_well(int status) {
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* The host guard: host code that reads device memory after a
 * synchronisation faults, and the emulator names it; `touch` false: the
 * same steps without the bad read end well. */
static void device_memory_after_a_sync(bool touch) {
  float *x = nullptr;
  cudaMalloc((void **)&x, 64 * sizeof(float));
  cudaMemset(x, 0, 64 * sizeof(float));
  cudaDeviceSynchronize();
  if (touch) {
    volatile float value = x[3]; /* the bug: x is device memory */
    (void)value;
  }
  cudaFree(x);
}

Test(emulator, host_code_reading_device_memory_faults, .timeout = 60) {
  std::string errors;
  const int status =
      run_in_child([] { device_memory_after_a_sync(true); }, &errors);
  cr_assert(!ended_well(status),
            "the host's read of device memory went unseen");
  cr_assert(errors.find("host guard: host code touched device memory") !=
                std::string::npos,
            "no host guard message in: %s", errors.c_str());
}

Test(emulator, the_same_steps_without_the_host_read_end_well, .timeout = 60) {
  std::string errors;
  const int status =
      run_in_child([] { device_memory_after_a_sync(false); }, &errors);
  cr_assert(ended_well(status), "%s", errors.c_str());
}

/* Memory cudaFree released stays out of reach (the quarantine), and the
 * system says so without a crash: write(2) from it fails with EFAULT.
 * Without the quarantine the write would succeed (or, under ASan, be
 * reported as the use after free it is). */
Test(emulator, freed_device_memory_stays_out_of_reach) {
  float *x = nullptr;
  cr_assert_eq(cudaMalloc((void **)&x, 64 * sizeof(float)), cudaSuccess);
  cudaMemset(x, 0, 64 * sizeof(float));
  cr_assert_eq(cudaDeviceSynchronize(), cudaSuccess);
  cr_assert_eq(cudaFree(x), cudaSuccess);
  int channel[2];
  cr_assert_eq(pipe(channel), 0);
  errno = 0;
  const ssize_t written = write(channel[1], x, sizeof(float));
  const int error = errno;
  close(channel[0]);
  close(channel[1]);
  cr_assert_eq(written, -1, "freed device memory could be read");
  cr_assert_eq(error, EFAULT);
}

#if !defined(__SANITIZE_ADDRESS__)
/* A graph replayed after the memory it was captured on has been freed
 * (what a stale step graph would do): the memory is still in the
 * quarantine, no access, so the replay faults and the emulator names the
 * use after free. `free_first` false: the same steps, freeing after the
 * replay, end well. Not under ASan: a forked child dying of its report
 * there made Criterion's runner leak (as below), every run. */
static void replay_around_a_free(bool free_first) {
  cudaStream_t stream;
  cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
  float *x = nullptr;
  cudaMalloc((void **)&x, 64 * sizeof(float));
  cudaMemset(x, 0, 64 * sizeof(float));
  cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal);
  add_kernel<<<1, 32, 0, stream>>>(x, 1.0f, 64);
  cudaGraph_t graph = nullptr;
  cudaStreamEndCapture(stream, &graph);
  cudaGraphExec_t exec = nullptr;
  cudaGraphInstantiate(&exec, graph, 0);
  if (free_first)
    cudaFree(x); /* the bug: the graph still writes x */
  cudaGraphLaunch(exec, stream);
  cudaStreamSynchronize(stream);
  if (!free_first)
    cudaFree(x);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

Test(emulator, a_graph_replayed_on_freed_memory_faults, .timeout = 60) {
  std::string errors;
  const int status = run_in_child([] { replay_around_a_free(true); }, &errors);
  cr_assert(!ended_well(status), "the use after cudaFree went unseen");
  cr_assert(errors.find("was used after cudaFree released it") !=
                std::string::npos,
            "no use-after-free message in: %s", errors.c_str());
}

Test(emulator, the_same_replay_before_the_free_ends_well, .timeout = 60) {
  std::string errors;
  const int status = run_in_child([] { replay_around_a_free(false); }, &errors);
  cr_assert(ended_well(status), "%s", errors.c_str());
}
#endif

#if defined(__SANITIZE_ADDRESS__)
/* Device memory takes whole pages for the guard; the tail past an
 * allocation's size stays poisoned, so a kernel that writes one float too
 * far is still an ASan report. Asked of ASan's shadow rather than shown by
 * a crash: a forked child dying of an ASan report made Criterion's runner
 * leak (one run in four with two jobs), failing the suite by chance. */
Test(emulator, the_tail_past_an_allocation_stays_poisoned) {
  const size_t counts[] = {1, 10, 1000, 1024 + 3};
  for (size_t count : counts) {
    float *x = device_array<float>(count);
    add_kernel<<<1, 32, 0, 0>>>(x, 1.0f, count); /* the whole of it is fine */
    cr_assert_eq(cudaDeviceSynchronize(), cudaSuccess);
    cr_assert(!__asan_address_is_poisoned(x + count - 1),
              "the last float of %zu is poisoned", count);
    cr_assert(__asan_address_is_poisoned(x + count),
              "the float past %zu floats is not poisoned", count);
  }
}
#endif
