/*
 * runtime_state.hpp — what the emulated runtime's parts share among
 * themselves: runtime.cpp (memory, streams, events, graphs, errors), the
 * order check (order_check.cpp) and the host guard (host_guard.cpp).
 * Kernels and cuBLAS see only emulator.hpp.
 */
#ifndef NNEMU_RUNTIME_STATE_HPP
#define NNEMU_RUNTIME_STATE_HPP

#include "emulator.hpp"

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

namespace nnemu {
/* The order check's vector clock: for each stream (by number), how many of
 * its operations have happened. */
using vector_clock = std::map<uint64_t, uint64_t>;
} // namespace nnemu

struct CUgraph_st;

struct CUstream_st {
  uint64_t number = 0; /* from 1, in creation order */
  /* The order check's vector clock: how many operations of each stream (by
   * number) this stream knows have happened, its own included. Guarded by
   * order_check.cpp's order_mutex. */
  nnemu::vector_clock clock;
  std::mutex mutex;
  std::condition_variable changed;
  std::deque<nnemu::operation> queue;
  bool running = false; /* the worker is inside an operation */
  bool stopping = false;
  std::thread worker;
  /* Capture: the graph being recorded, who records it, and whether a call
   * that a graph cannot hold has broken it. */
  CUgraph_st *capture = nullptr;
  std::thread::id capturing_thread;
  bool capture_invalidated = false;
};

namespace nnemu {

/* A setting from the environment (strtoull's bases), or fallback. */
size_t setting(const char *name, size_t fallback);

/* Runs one piece of stream work, unless a sticky error stopped the device. */
void run_operation(const operation &op);

/* Memory (runtime.cpp) */

struct allocation {
  size_t bytes;
  size_t pages_bytes; /* device memory: whole pages, for the host guard */
  bool pinned;
  /* Pinned memory: device work (copies) that has written into it so far. */
  uint64_t device_writes = 0;
};

extern std::mutex memory_mutex;
extern std::map<uintptr_t, allocation> allocations; /* by start address */

/* The allocation holding [pointer, pointer + bytes), or NULL; memory_mutex
 * held. */
const allocation *find_allocation(const void *pointer, size_t bytes,
                                  uintptr_t *start);

/* The host guard (host_guard.cpp) */

bool host_guarded();
/* Taken before memory_mutex where both are. */
extern std::mutex guard_mutex;
/* Opens a device allocation (to be freed); guard_mutex held. */
void open_allocation(uintptr_t start, const allocation &block);
/* Takes a released device allocation, out of the table, instead of free():
 * PROT_NONE until later releases push it out; guard_mutex and
 * memory_mutex held. */
void quarantine_allocation(uintptr_t start, const allocation &block);
/* Stream work starts (device memory opens) or ends. */
void enter_device();
void leave_device();
/* The host has waited for device work: device memory closes if no stream
 * work runs. */
void host_waited();
/* A new allocation (already filled, in the table) closed if device memory
 * is closed now. */
void guard_new_allocation(uintptr_t start);
/* The SIGSEGV handler that names faults in device memory, once. */
void install_host_guard();

/* The order check (order_check.cpp) */

bool order_checked();
/* What the host has seen happen, and learning more of it (a
 * synchronisation: an event's record, or all of a stream's work). */
vector_clock host_knows();
void host_learns(const vector_clock &clock);
void host_learns_stream(CUstream_st *stream);
/* The running operation's stream's clock, into slot (an event record). */
void record_clock(vector_clock &slot);
/* The running operation waited for an event record whose clock is slot. */
void learn_clock(const vector_clock &slot);
/* The running operation (`what`, a copy or memset) writes [dst, dst +
 * bytes): every earlier touch of memory there must have happened before. */
void note_copy_write(const void *dst, size_t bytes, const char *what);
/* What the check knows of memory dies with it (cudaFree). */
void forget_accesses_in(const void *memory, size_t bytes);
/* Runs op as stream's next operation, after what the host had seen when op
 * was issued (issued). */
void run_as(CUstream_st *stream, const vector_clock &issued,
            const operation &op);

} // namespace nnemu

#endif /* NNEMU_RUNTIME_STATE_HPP */
