/*
 * kernels.cpp — running a grid on the CPU: block after block, and within a
 * block every thread, either as plain calls or as fibers.
 *
 * A kernel that never synchronises runs each thread as a plain call, in
 * thread order. A kernel that calls __syncthreads or a warp shuffle needs
 * its block's threads to stop and wait for each other: each thread then
 * runs on a fiber (a stack of its own) and the block's scheduler resumes
 * them round by round, one round per barrier. Fibers switch by saving and
 * loading the callee-saved registers and the stack pointer (x86-64 below;
 * ucontext elsewhere, which is a hundred times slower: a system call per
 * switch). Which kind a kernel is shows
 * when its first block runs, always on fibers; later blocks and launches
 * use what it showed. A kernel that synchronises in some block but not in
 * its first is reported (it would be a divergent barrier on a GPU too, or
 * close to one).
 *
 * Stricter than a GPU: threads of a block that wait at different barriers
 * (a __syncthreads here, a shuffle there) fail the launch, and so does a
 * shuffle whose partner lane has returned or is outside the mask; every
 * block's shared memory starts as NaN bytes.
 */
#include "launch.hpp"

#include <sys/mman.h>
#if !defined(__x86_64__)
#include <ucontext.h>
#endif

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define NNEMU_FIBER_ANNOTATIONS 1
#endif
/* ThreadSanitizer must be told of each switch too (it keeps a shadow
 * stack per fiber), else it crashes in the first synchronising kernel.
 * Each switch synchronises the two fibers: the threads of a block are
 * ordered for it, so that what it checks is the host's threads against
 * the streams' (races within a block are the GPU's racecheck's). */
#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#define NNEMU_TSAN_FIBERS 1
#endif

namespace nnemu {

namespace {

/* Bytes of stack per fiber: kernels are small, but an unoptimised,
 * sanitized build spends more stack per frame. Mapped lazily. */
constexpr size_t fiber_stack_bytes = 256 * 1024;
constexpr unsigned max_threads_per_block = 1024;
constexpr unsigned warp_size = 32;

enum class wait_kind { none, barrier, exchange };

/* ------------------------------------------------------------------------ */
/* Execution contexts                                                        */
/* ------------------------------------------------------------------------ */

#if defined(__x86_64__)
/* A suspended execution: its stack pointer, below which its callee-saved
 * registers, MXCSR and x87 control word are pushed. */
struct context {
  void *stack_pointer = nullptr;
};

/* Saves the running execution into *save and resumes the one whose stack
 * pointer is `load` (System V x86-64). */
extern "C" void nnemu_switch_context(void **save, void *load);
asm(R"(
  .text
  .globl nnemu_switch_context
  .hidden nnemu_switch_context
  .type nnemu_switch_context, @function
nnemu_switch_context:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size nnemu_switch_context, .-nnemu_switch_context
)");

/* A context that starts entry() on [stack, stack + bytes): a frame laid out
 * as nnemu_switch_context leaves one, returning into entry with the stack
 * aligned as a call would leave it. entry must never return. */
void make_context(context *c, void *stack, size_t bytes, void (*entry)()) {
  uintptr_t top = ((uintptr_t)stack + bytes) & ~(uintptr_t)15;
  uint64_t *frame = (uint64_t *)top;
  *--frame = 0;               /* entry's own return address: none */
  *--frame = (uint64_t)entry; /* where the final ret goes */
  for (int r = 0; r < 6; r++) /* rbp, rbx, r12-r15 */
    *--frame = 0;
  *--frame = 0x037f00001f80ull; /* x87 control word : MXCSR defaults */
  c->stack_pointer = frame;
}

void switch_context(context *from, const context *to) {
  nnemu_switch_context(&from->stack_pointer, to->stack_pointer);
}
#else
struct context {
  ucontext_t state;
};

void make_context(context *c, void *stack, size_t bytes, void (*entry)()) {
  getcontext(&c->state);
  c->state.uc_stack.ss_sp = stack;
  c->state.uc_stack.ss_size = bytes;
  c->state.uc_link = nullptr;
  makecontext(&c->state, entry, 0);
}

void switch_context(context *from, const context *to) {
  swapcontext(&from->state, &to->state);
}
#endif

struct fiber {
  context saved;
#ifdef NNEMU_TSAN_FIBERS
  void *tsan_fiber = nullptr;
#endif
  bool finished = false;
  wait_kind waiting = wait_kind::none;
  /* Shuffles: the bits posted in each of the last two exchange rounds (by
   * parity), and the round of each, + 1. Two slots let a lane post its
   * next value while a slower partner still reads the last one. */
  uint64_t posted_bits[2] = {0, 0};
  uint64_t posted_round[2] = {0, 0};
};

/* One block being run on fibers. */
struct block_run {
  context scheduler;
#ifdef NNEMU_TSAN_FIBERS
  void *tsan_scheduler = nullptr; /* the stream thread's own */
#endif
  std::vector<fiber> fibers;
  dim3 extent; /* blockDim: fiber t is thread index_of(t, extent) */
  const std::function<void()> *body = nullptr;
  unsigned current = 0;
  uint64_t round = 0;
  bool failed = false;
  const char *kernel = nullptr;
};

thread_local kernel_thread_state current_thread;
/* The block running on fibers now; NULL while threads run as plain calls. */
thread_local block_run *current_block = nullptr;
/* Thrown by a barrier reached by a thread running as a plain call. */
struct barrier_in_direct_mode {};

/* Stacks reused by every block this OS thread (a stream's) runs, and
 * under TSan its fiber of each (creating one costs system calls: once per
 * stack, not per block). */
struct stack_pool {
  std::vector<void *> stacks;
#ifdef NNEMU_TSAN_FIBERS
  std::vector<void *> tsan_fibers;
  void *tsan_fiber(size_t index) {
    while (tsan_fibers.size() <= index)
      tsan_fibers.push_back(__tsan_create_fiber(0));
    return tsan_fibers[index];
  }
#endif
  ~stack_pool() {
    for (void *stack : stacks)
      munmap(stack, fiber_stack_bytes);
#ifdef NNEMU_TSAN_FIBERS
    for (void *f : tsan_fibers)
      __tsan_destroy_fiber(f);
#endif
  }
  void *get(size_t index) {
    while (stacks.size() <= index) {
      void *stack = mmap(nullptr, fiber_stack_bytes, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (stack == MAP_FAILED)
        return nullptr;
      stacks.push_back(stack);
    }
    return stacks[index];
  }
};
thread_local stack_pool stacks;

enum class kernel_kind { unknown, plain, synchronising };
std::mutex kinds_mutex;
std::map<const void *, kernel_kind> kinds;
/* One grid at a time: __shared__ arrays are statics. */
std::mutex grid_mutex;

/* Where each module's __shared__ arrays lie (device_code.hpp puts them in
 * one section per module and registers it), each range once. */
struct shared_ranges {
  std::mutex mutex;
  std::vector<std::pair<char *, char *>> ranges;
};
shared_ranges &shared_memory() {
  /* Never destroyed: modules register from their constructors, and
   * stream threads may run blocks while statics are torn down. */
  static shared_ranges *ranges = new shared_ranges;
  return *ranges;
}

/* A block's shared memory starts undefined on a GPU (what some earlier
 * block of any kernel left there, or anything). Here the arrays are
 * statics that would keep the last block's values, so a thread reading
 * before any thread wrote would see plausible numbers: fill them with NaN
 * bytes (0xff) before every block instead. Called with grid_mutex held. */
void poison_shared_memory() {
  shared_ranges &shared = shared_memory();
  std::lock_guard<std::mutex> lock(shared.mutex);
  for (const auto &range : shared.ranges)
    memset(range.first, 0xff, (size_t)(range.second - range.first));
}

kernel_kind kind_of(const void *kernel) {
  std::lock_guard<std::mutex> lock(kinds_mutex);
  auto found = kinds.find(kernel);
  return found == kinds.end() ? kernel_kind::unknown : found->second;
}

void set_kind(const void *kernel, kernel_kind kind) {
  std::lock_guard<std::mutex> lock(kinds_mutex);
  kinds[kernel] = kind;
}

/* Context switches, told to AddressSanitizer when it is there (it tracks
 * which stack is in use). The scheduler's stack bounds are learnt when a
 * fiber first starts. */
#ifdef NNEMU_FIBER_ANNOTATIONS
thread_local void *scheduler_stack_bottom = nullptr;
thread_local size_t scheduler_stack_size = 0;
#endif

void resume_fiber(block_run *block, unsigned t) {
#ifdef NNEMU_TSAN_FIBERS
  __tsan_switch_to_fiber(block->fibers[t].tsan_fiber, 0);
#endif
#ifdef NNEMU_FIBER_ANNOTATIONS
  void *fake_stack = nullptr;
  __sanitizer_start_switch_fiber(&fake_stack, stacks.get(t), fiber_stack_bytes);
  switch_context(&block->scheduler, &block->fibers[t].saved);
  __sanitizer_finish_switch_fiber(fake_stack, nullptr, nullptr);
#else
  switch_context(&block->scheduler, &block->fibers[t].saved);
#endif
}

void yield_to_scheduler(block_run *block) {
  context *self = &block->fibers[block->current].saved;
#ifdef NNEMU_TSAN_FIBERS
  __tsan_switch_to_fiber(block->tsan_scheduler, 0);
#endif
#ifdef NNEMU_FIBER_ANNOTATIONS
  void *fake_stack = nullptr;
  __sanitizer_start_switch_fiber(&fake_stack, scheduler_stack_bottom,
                                 scheduler_stack_size);
  switch_context(self, &block->scheduler);
  __sanitizer_finish_switch_fiber(fake_stack,
                                  (const void **)&scheduler_stack_bottom,
                                  &scheduler_stack_size);
#else
  switch_context(self, &block->scheduler);
#endif
}

void fiber_entry() {
  block_run *block = current_block;
#ifdef NNEMU_FIBER_ANNOTATIONS
  __sanitizer_finish_switch_fiber(
      nullptr, (const void **)&scheduler_stack_bottom, &scheduler_stack_size);
#endif
  (*block->body)();
  block->fibers[block->current].finished = true;
#ifdef NNEMU_FIBER_ANNOTATIONS
  /* NULL: this fiber's fake stack goes with it. */
  __sanitizer_start_switch_fiber(nullptr, scheduler_stack_bottom,
                                 scheduler_stack_size);
#endif
#ifdef NNEMU_TSAN_FIBERS
  __tsan_switch_to_fiber(block->tsan_scheduler, 0);
#endif
  context finished; /* never resumed */
  switch_context(&finished, &block->scheduler);
}

void set_thread_index(const uint3 &index) {
  current_thread.thread_index = index;
}

/* NNEMU_REVERSE=1 runs blocks, and the threads of each block (in every
 * round between barriers), last first: a kernel whose result depends on
 * the order they happen to run in (a missing __syncthreads, one block
 * reading what another writes) then gives another answer. */
bool reversed() {
  static const bool reverse = [] {
    const char *text = getenv("NNEMU_REVERSE");
    return text && *text && *text != '0';
  }();
  return reverse;
}

/* Which of count items runs k-th. */
size_t run_position(size_t k, size_t count) {
  return reversed() ? count - 1 - k : k;
}

/* The index of the linear-th thread (or block) of an extent, in the
 * order a GPU numbers them (x fastest). */
uint3 index_of(size_t linear, const dim3 &extent) {
  const size_t x = linear % extent.x, rest = linear / extent.x;
  return uint3{(unsigned)x, (unsigned)(rest % extent.y),
               (unsigned)(rest / extent.y)};
}

size_t count_of(const dim3 &extent) {
  return (size_t)extent.x * extent.y * extent.z;
}

/* Resumes every unfinished fiber once; false when the block must stop
 * (a fiber could not start, or threads wait at different barriers). */
bool run_round(block_run &block, bool *any_waiting) {
  *any_waiting = false;
  wait_kind kind = wait_kind::none;
  const size_t count = block.fibers.size();
  for (size_t k = 0; k < count; k++) {
    const unsigned t = (unsigned)run_position(k, count);
    fiber &f = block.fibers[t];
    if (f.finished)
      continue;
    f.waiting = wait_kind::none;
    block.current = t;
    set_thread_index(index_of(t, block.extent));
    resume_fiber(&block, t);
    if (block.failed)
      return false;
    if (f.finished)
      continue;
    if (kind != wait_kind::none && f.waiting != kind) {
      fail_execution(cudaErrorLaunchFailure,
                     "kernel %s: threads of block (%u,%u,%u) wait at "
                     "different barriers (a __syncthreads and a warp "
                     "shuffle, or shuffles in different places)",
                     block.kernel, current_thread.block_index.x,
                     current_thread.block_index.y,
                     current_thread.block_index.z);
      return false;
    }
    kind = f.waiting;
    *any_waiting = true;
  }
  block.round++;
  return true;
}

/* Runs one block with a fiber per thread; whether any thread waited. */
bool run_block_on_fibers(const std::function<void()> &body, const dim3 &threads,
                         const char *kernel, bool *synchronised) {
  block_run block;
  block.body = &body;
  block.kernel = kernel;
  block.extent = threads;
  block.fibers.resize(count_of(threads));
#ifdef NNEMU_TSAN_FIBERS
  block.tsan_scheduler = __tsan_get_current_fiber();
#endif
  for (size_t t = 0; t < block.fibers.size(); t++) {
    void *stack = stacks.get(t);
    if (!stack) {
      fail_execution(cudaErrorLaunchOutOfResources,
                     "kernel %s: no memory for the stack of thread %zu", kernel,
                     t);
      return false;
    }
#ifdef NNEMU_FIBER_ANNOTATIONS
    /* The stack's last fiber left its frames' redzones marked. */
    __asan_unpoison_memory_region(stack, fiber_stack_bytes);
#endif
    make_context(&block.fibers[t].saved, stack, fiber_stack_bytes, fiber_entry);
#ifdef NNEMU_TSAN_FIBERS
    block.fibers[t].tsan_fiber = stacks.tsan_fiber(t);
#endif
  }
  block_run *outer = current_block;
  current_block = &block;
  *synchronised = false;
  bool ok = true, any_waiting = true;
  while (ok && any_waiting) {
    ok = run_round(block, &any_waiting);
    if (any_waiting)
      *synchronised = true;
  }
  current_block = outer;
  return ok;
}

/* Runs one block as plain calls; false if a thread tried to synchronise. */
bool run_block_plainly(const std::function<void()> &body, const dim3 &threads) {
  try {
    const size_t count = count_of(threads);
    for (size_t k = 0; k < count; k++) {
      set_thread_index(index_of(run_position(k, count), threads));
      body();
    }
  } catch (const barrier_in_direct_mode &) {
    return false;
  }
  return true;
}

bool run_block(const std::function<void()> &body, const dim3 &threads,
               const void *kernel_address, const char *kernel) {
  kernel_kind kind = kind_of(kernel_address);
  if (kind == kernel_kind::plain) {
    if (run_block_plainly(body, threads))
      return true;
    fail_execution(cudaErrorLaunchFailure,
                   "kernel %s synchronises in block (%u,%u,%u) but not in "
                   "the first block it ran (a divergent barrier?)",
                   kernel, current_thread.block_index.x,
                   current_thread.block_index.y, current_thread.block_index.z);
    return false;
  }
  bool synchronised = false;
  if (!run_block_on_fibers(body, threads, kernel, &synchronised))
    return false;
  if (kind == kernel_kind::unknown)
    set_kind(kernel_address,
             synchronised ? kernel_kind::synchronising : kernel_kind::plain);
  return true;
}

void run_grid(const launch_shape &shape, const void *kernel_address,
              const char *kernel, const std::function<void()> &body) {
  std::lock_guard<std::mutex> lock(grid_mutex);
  kernel_thread_state saved = current_thread;
  current_thread.block_dim = shape.block;
  current_thread.grid_dim = shape.grid;
  const size_t blocks = count_of(shape.grid);
  bool ok = true;
  for (size_t k = 0; ok && k < blocks; k++) {
    current_thread.block_index = index_of(run_position(k, blocks), shape.grid);
    poison_shared_memory();
    ok = run_block(body, shape.block, kernel_address, kernel);
  }
  current_thread = saved;
}

/* The calling fiber waits at a barrier of the given kind. */
void wait_at(wait_kind kind) {
  block_run *block = current_block;
  if (!block)
    throw barrier_in_direct_mode{};
  block->fibers[block->current].waiting = kind;
  yield_to_scheduler(block);
}

unsigned linear_thread_index() {
  const kernel_thread_state &t = current_thread;
  return t.thread_index.x +
         t.block_dim.x * (t.thread_index.y + t.block_dim.y * t.thread_index.z);
}

} // namespace

kernel_thread_state &kernel_thread() {
  return current_thread;
}

bool register_shared_memory(char *start, char *stop) {
  if (!start || start == stop)
    return true; /* a module with no __shared__ arrays */
  shared_ranges &shared = shared_memory();
  std::lock_guard<std::mutex> lock(shared.mutex);
  const std::pair<char *, char *> range(start, stop);
  if (std::find(shared.ranges.begin(), shared.ranges.end(), range) ==
      shared.ranges.end())
    shared.ranges.push_back(range);
  return true;
}

void sync_threads() {
  wait_at(wait_kind::barrier);
}

uint64_t exchange_xor(unsigned mask, uint64_t bits, int lane_mask, int width) {
  block_run *block = current_block;
  if (!block)
    throw barrier_in_direct_mode{};
  const unsigned self = linear_thread_index();
  const unsigned lane = self % warp_size;
  const uint64_t round = block->round;
  const unsigned slot = round % 2;
  fiber &me = block->fibers[block->current];
  me.posted_bits[slot] = bits;
  me.posted_round[slot] = round + 1;
  wait_at(wait_kind::exchange);
  /* Every lane has posted in `round`: read the partner's bits of it. */
  const unsigned segment = width > 0 ? (unsigned)width : warp_size;
  const unsigned partner_lane =
      (lane & ~(segment - 1)) | ((lane ^ (unsigned)lane_mask) & (segment - 1));
  const unsigned partner = self - lane + partner_lane;
  if (!(mask & (1u << lane)) || !(mask & (1u << partner_lane)) ||
      partner >= block->fibers.size() ||
      block->fibers[partner].posted_round[slot] != round + 1) {
    fail_execution(cudaErrorLaunchFailure,
                   "kernel %s: lane %u of thread %u shuffles with lane %u, "
                   "which is outside the mask 0x%08x or did not take part "
                   "(returned early, or the block is not whole warps)",
                   block->kernel, lane, self, partner_lane, mask);
    return bits;
  }
  return block->fibers[partner].posted_bits[slot];
}

bool check_configuration(const launch_shape &shape, const char *kernel) {
  const dim3 &g = shape.grid, &b = shape.block;
  const unsigned long long threads =
      (unsigned long long)b.x * b.y * (unsigned long long)b.z;
  const bool ok = g.x >= 1 && g.y >= 1 && g.z >= 1 && g.x <= 0x7fffffffu &&
                  g.y <= 65535 && g.z <= 65535 && threads >= 1 &&
                  threads <= max_threads_per_block && b.z <= 64 &&
                  shape.shared_bytes <= 48 * 1024;
  if (!ok) {
    report("kernel %s: launch with grid (%u,%u,%u), block (%u,%u,%u), %zu "
           "shared bytes is not a valid configuration",
           kernel, g.x, g.y, g.z, b.x, b.y, b.z, shape.shared_bytes);
    set_last_error(cudaErrorInvalidConfiguration);
  }
  return ok;
}

bool check_pointer_argument(const void *pointer, int index,
                            const char *kernel) {
  if (!pointer || is_device_range(pointer, 0) || is_pinned(pointer))
    return true;
  fail_execution(cudaErrorIllegalAddress,
                 "kernel %s: argument %d (%p) points to neither device nor "
                 "pinned memory",
                 kernel, index, pointer);
  return false;
}

void enqueue_grid(const launch_shape &shape, const void *kernel_address,
                  const char *kernel, std::function<void()> body,
                  std::vector<const void *> pointers) {
  const launch_shape copy = shape;
  cudaError_t error = enqueue(
      shape.stream,
      [copy, kernel_address, kernel, body, pointers]() {
        for (const void *pointer : pointers)
          note_access(pointer, kernel);
        run_grid(copy, kernel_address, kernel, body);
      },
      kernel);
  if (error != cudaSuccess)
    set_last_error(error);
}

} // namespace nnemu
