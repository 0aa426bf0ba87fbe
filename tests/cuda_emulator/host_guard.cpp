/*
 * host_guard.cpp — the CUDA emulator's host guard.
 *
 * Host code must not touch device memory (the host guard): on a GPU that
 * is a segmentation fault, here the memory is the process's own. So while
 * no stream work runs, every cudaMalloc allocation is mprotect'ed to
 * PROT_NONE, and host code that reads or writes it stops with SIGSEGV,
 * which the handler here names before the usual crash report (ASan's,
 * with the stack). While any stream work runs the memory is open to every
 * thread (protection is per process), so a host access then goes unseen:
 * the guard finds what host code does after a synchronisation, which is
 * where such a bug usually is (reading a result straight from the device
 * buffer). Each allocation takes whole pages for this (runtime.cpp); the
 * tail past its size is poisoned for ASan, so overruns are still caught.
 *
 * Memory that cudaFree releases is not handed back at once: it stays
 * PROT_NONE in a quarantine (the latest NNEMU_QUARANTINE_BYTES of it,
 * 128 MiB unless set), so that a kernel or a replayed graph still using it
 * stops with SIGSEGV, named as a use after free — compute-sanitizer
 * memcheck's finding on a GPU — instead of reading stale bytes that
 * happen to be right.
 */
#include "runtime_state.hpp"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>

#include <sys/mman.h>
#include <unistd.h>

namespace nnemu {

std::mutex guard_mutex;

namespace {

size_t operations_running = 0; /* stream work running now, on any thread */
bool device_closed = false;    /* device memory is PROT_NONE now */

void set_protection(uintptr_t start, const allocation &block, bool closed) {
  if (mprotect((void *)start, block.pages_bytes,
               closed ? PROT_NONE : PROT_READ | PROT_WRITE) != 0)
    report("host guard: mprotect(%p, %zu bytes) failed: %s", (void *)start,
           block.pages_bytes, strerror(errno));
}

/* Every device allocation closed or opened; guard_mutex held. */
void set_device_closed(bool closed) {
  if (device_closed == closed)
    return;
  std::lock_guard<std::mutex> lock(memory_mutex);
  for (const auto &[start, block] : allocations)
    if (!block.pinned)
      set_protection(start, block, closed);
  device_closed = closed;
}

/* Released device memory, oldest first; memory_mutex held. */
struct freed_block {
  uintptr_t start;
  size_t bytes, pages_bytes;
};
std::deque<freed_block> quarantine;
size_t quarantined_bytes = 0;

void hand_back(const freed_block &block) {
  if (mprotect((void *)block.start, block.pages_bytes,
               PROT_READ | PROT_WRITE) != 0)
    report("host guard: mprotect(%p) failed: %s", (void *)block.start,
           strerror(errno));
  free((void *)block.start);
}

/* The quarantined block holding address, or NULL; memory_mutex held. */
const freed_block *find_freed(uintptr_t address) {
  for (const freed_block &block : quarantine)
    if (address >= block.start && address < block.start + block.pages_bytes)
      return &block;
  return nullptr;
}

struct sigaction earlier_segv_action;

/* A fault: named when it is in device memory, then handed to whoever
 * handled SIGSEGV before (the fault recurs on return). */
void on_segv(int, siginfo_t *info, void *) {
  const uintptr_t address = (uintptr_t)info->si_addr;
  uintptr_t start = 0;
  const allocation *block = nullptr;
  freed_block freed = {0, 0, 0};
  if (memory_mutex.try_lock()) {
    block = find_allocation((const void *)address, 0, &start);
    if (const freed_block *found = find_freed(address))
      freed = *found;
    memory_mutex.unlock();
  }
  if (freed.start) {
    char text[320];
    const int length = snprintf(
        text, sizeof text,
        "nn CUDA emulator: device memory at %p was used after cudaFree "
        "released it (the %zu-byte allocation at %p): on a GPU, "
        "compute-sanitizer memcheck's error. The stack follows.\n",
        (void *)address, freed.bytes, (void *)freed.start);
    if (length > 0 && write(STDERR_FILENO, text, (size_t)length) < 0)
      _exit(1);
  }
  if (block && !block->pinned) {
    char text[320];
    const int length = snprintf(
        text, sizeof text,
        "nn CUDA emulator: host guard: host code touched device memory at "
        "%p (in the %zu-byte cudaMalloc allocation at %p) while no stream "
        "work ran: on a GPU that is a segmentation fault. The stack "
        "follows.\n",
        (void *)address, block->bytes, (void *)start);
    if (length > 0 && write(STDERR_FILENO, text, (size_t)length) < 0)
      _exit(1);
  }
  sigaction(SIGSEGV, &earlier_segv_action, nullptr);
}

} // namespace

void open_allocation(uintptr_t start, const allocation &block) {
  set_protection(start, block, false);
}

void quarantine_allocation(uintptr_t start, const allocation &block) {
  static const size_t budget =
      setting("NNEMU_QUARANTINE_BYTES", (size_t)128 << 20);
  set_protection(start, block, true);
  quarantine.push_back({start, block.bytes, block.pages_bytes});
  quarantined_bytes += block.pages_bytes;
  while (quarantined_bytes > budget) {
    hand_back(quarantine.front());
    quarantined_bytes -= quarantine.front().pages_bytes;
    quarantine.pop_front();
  }
}

bool host_guarded() {
  static const bool on = setting("NNEMU_NO_HOST_GUARD", 0) == 0;
  return on;
}

/* Stream work starts (device memory opens) or ends. */
void enter_device() {
  if (!host_guarded())
    return;
  std::lock_guard<std::mutex> lock(guard_mutex);
  if (operations_running++ == 0)
    set_device_closed(false);
}

void leave_device() {
  if (!host_guarded())
    return;
  std::lock_guard<std::mutex> lock(guard_mutex);
  operations_running--;
}

/* The host has waited for device work (a synchronisation): device memory
 * closes if no stream work runs. Closing here rather than whenever the
 * device goes idle costs a fraction of the system calls, and guards the
 * moment host code would read a result it waited for. */
void host_waited() {
  if (!host_guarded())
    return;
  std::lock_guard<std::mutex> lock(guard_mutex);
  if (operations_running == 0)
    set_device_closed(true);
}

/* A new allocation (already filled, in the table) closed if device memory
 * is closed now. */
void guard_new_allocation(uintptr_t start) {
  if (!host_guarded())
    return;
  std::lock_guard<std::mutex> guard(guard_mutex);
  std::lock_guard<std::mutex> lock(memory_mutex);
  auto found = allocations.find(start);
  if (device_closed && found != allocations.end())
    set_protection(start, found->second, true);
}

/* The handler, and device memory opened at exit (LeakSanitizer's scan of
 * the heap runs after atexit handlers registered this late). */
void install_host_guard() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_segv;
    action.sa_flags = SA_SIGINFO;
    sigemptyset(&action.sa_mask);
    sigaction(SIGSEGV, &action, &earlier_segv_action);
    atexit([] {
      std::lock_guard<std::mutex> lock(guard_mutex);
      set_device_closed(false);
      operations_running = 1; /* stays open */
      std::lock_guard<std::mutex> memory(memory_mutex);
      for (const freed_block &block : quarantine)
        hand_back(block);
      quarantine.clear();
      quarantined_bytes = 0;
    });
  });
}

} // namespace nnemu
