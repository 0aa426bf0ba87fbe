/*
 * order_check.cpp — the CUDA emulator's order check.
 *
 * Work of two streams on memory a copy wrote must be ordered (the order
 * check): device memory written by cudaMemcpyAsync or cudaMemsetAsync, then
 * read or written by work of another stream (a kernel given a pointer into
 * it, a cuBLAS operand, a copy), or the reverse, is a race on a GPU unless
 * an event (cudaEventRecord + cudaStreamWaitEvent) or the host (a
 * synchronisation, then issuing the later work) orders the two. Each stream
 * keeps a vector clock of the work it knows has happened; events and host
 * synchronisations pass clocks on; an access the clocks do not order is a
 * sticky error naming both sides, however the timing fell in this run.
 */
#include "runtime_state.hpp"

#include <algorithm>
#include <cstdio>
#include <string>

namespace nnemu {
namespace {

/* Taken last: nothing else is locked while it is held (memory_mutex may be
 * held when it is taken). */
std::mutex order_mutex;
/* What the host has seen happen (synchronisations); work issued from now
 * on comes after it. One clock for every host thread: an ordering between
 * host threads (a mutex, a join) is not seen, so that this errs towards
 * finding no race rather than a false one. */
vector_clock host_clock;
/* The stream whose operation runs on this thread now (NULL: none). */
thread_local CUstream_st *running_stream = nullptr;

void merge(vector_clock &into, const vector_clock &from) {
  for (const auto &[stream, count] : from) {
    uint64_t &known = into[stream];
    known = std::max(known, count);
  }
}

/* One operation of one stream. */
struct access {
  uint64_t stream, operation;
  const char *what;
};
/* Device memory a copy or memset wrote, and which operation did. */
struct copied_region {
  size_t bytes;
  access written;
};
std::map<uintptr_t, copied_region> copied_regions; /* by start address */
/* The pointers stream work was given (a kernel's pointer arguments, cuBLAS
 * operands, a copy's source), each with the latest operation of each
 * stream that was given it since the last copy over it. Kept whether or
 * not a copy wrote there yet, so that the check does not depend on which
 * stream happened to run first. */
std::map<uintptr_t, std::map<uint64_t, access>> touches;

/* Whether the operation `earlier` happened before the one running on
 * stream: the same stream, or one it knows of through its clock. */
bool ordered_before(const access &earlier, const CUstream_st *stream) {
  if (earlier.stream == stream->number)
    return true;
  auto known = stream->clock.find(earlier.stream);
  return known != stream->clock.end() && earlier.operation <= known->second;
}

std::string race_message(const char *what, const void *pointer,
                         const access &earlier, const char *earlier_did) {
  char text[512];
  snprintf(text, sizeof text,
           "order check: %s on stream %llu touches %p, which %s on stream "
           "%llu %s, and no event or host synchronisation orders the two: a "
           "race on a GPU",
           what, (unsigned long long)running_stream->number, pointer,
           earlier.what, (unsigned long long)earlier.stream, earlier_did);
  return text;
}

/* The region holding address, or end(). */
std::map<uintptr_t, copied_region>::iterator region_holding(uintptr_t address) {
  auto after = copied_regions.upper_bound(address);
  if (after == copied_regions.begin())
    return copied_regions.end();
  auto holder = std::prev(after);
  return address < holder->first + holder->second.bytes ? holder
                                                        : copied_regions.end();
}

/* Runs check(the running stream) under the order lock, when the check is
 * on and stream work runs on this thread; a race it returns (a message)
 * becomes a sticky error. */
template <class Check> void check_order(Check check) {
  if (!order_checked())
    return;
  std::string race;
  {
    std::lock_guard<std::mutex> lock(order_mutex);
    if (running_stream)
      race = check(running_stream);
  }
  if (!race.empty())
    fail_execution(cudaErrorIllegalState, "%s", race.c_str());
}

} // namespace

bool order_checked() {
  static const bool on = setting("NNEMU_NO_ORDER_CHECK", 0) == 0;
  return on;
}

vector_clock host_knows() {
  std::lock_guard<std::mutex> lock(order_mutex);
  return host_clock;
}

void host_learns(const vector_clock &clock) {
  std::lock_guard<std::mutex> lock(order_mutex);
  merge(host_clock, clock);
}

void host_learns_stream(CUstream_st *stream) {
  std::lock_guard<std::mutex> lock(order_mutex);
  merge(host_clock, stream->clock);
}

/* The running operation's stream's clock, into slot (an event record). */
void record_clock(vector_clock &slot) {
  std::lock_guard<std::mutex> lock(order_mutex);
  if (running_stream)
    slot = running_stream->clock;
}

/* The running operation waited for an event record whose clock is slot. */
void learn_clock(const vector_clock &slot) {
  std::lock_guard<std::mutex> lock(order_mutex);
  if (running_stream)
    merge(running_stream->clock, slot);
}

/* The running operation (`what`, a copy or memset) writes [dst, dst +
 * bytes): every earlier touch of memory there must have happened before. */
void note_copy_write(const void *dst, size_t bytes, const char *what) {
  if (bytes == 0)
    return;
  check_order([dst, bytes, what](CUstream_st *stream) {
    std::string race;
    const uintptr_t start = (uintptr_t)dst, end = start + bytes;
    auto region = region_holding(start);
    if (region == copied_regions.end())
      region = copied_regions.lower_bound(start);
    while (region != copied_regions.end() && region->first < end) {
      if (race.empty() && !ordered_before(region->second.written, stream))
        race = race_message(what, dst, region->second.written, "wrote");
      region = copied_regions.erase(region);
    }
    /* Touches ordered before this write need no keeping: whatever is
     * ordered after the write is ordered after them too. */
    auto touched = touches.lower_bound(start);
    while (touched != touches.end() && touched->first < end) {
      for (const auto &[number, touch] : touched->second)
        if (race.empty() && !ordered_before(touch, stream))
          race = race_message(what, (const void *)touched->first, touch,
                              "was given");
      touched = touches.erase(touched);
    }
    const access now{stream->number, stream->clock[stream->number], what};
    copied_regions[start] = copied_region{bytes, now};
    return race;
  });
}

/* What the check knows of memory dies with it. */
void forget_accesses_in(const void *memory, size_t bytes) {
  std::lock_guard<std::mutex> lock(order_mutex);
  const uintptr_t start = (uintptr_t)memory;
  auto region = copied_regions.lower_bound(start);
  while (region != copied_regions.end() && region->first < start + bytes)
    region = copied_regions.erase(region);
  auto touched = touches.lower_bound(start);
  while (touched != touches.end() && touched->first < start + bytes)
    touched = touches.erase(touched);
}

/* Runs op as stream's next operation, after what the host had seen when op
 * was issued. */
void run_as(CUstream_st *stream, const vector_clock &issued,
            const operation &op) {
  if (order_checked()) {
    std::lock_guard<std::mutex> lock(order_mutex);
    merge(stream->clock, issued);
    stream->clock[stream->number]++;
  }
  CUstream_st *outer = running_stream;
  running_stream = stream;
  enter_device();
  run_operation(op);
  leave_device();
  running_stream = outer;
}

void note_access(const void *pointer, const char *what) {
  if (!pointer || !is_device_range(pointer, 0))
    return;
  check_order([pointer, what](CUstream_st *stream) {
    std::string race;
    auto region = region_holding((uintptr_t)pointer);
    if (region != copied_regions.end() &&
        !ordered_before(region->second.written, stream))
      race = race_message(what, pointer, region->second.written, "wrote");
    touches[(uintptr_t)pointer][stream->number] =
        access{stream->number, stream->clock[stream->number], what};
    return race;
  });
}

void note_write(void *pointer, size_t bytes, const char *what) {
  if (pointer && is_device_range(pointer, bytes))
    note_copy_write(pointer, bytes, what);
}

} // namespace nnemu
