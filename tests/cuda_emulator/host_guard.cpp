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
 */
#include "runtime_state.hpp"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>

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

struct sigaction earlier_segv_action;

/* A fault: named when it is in device memory, then handed to whoever
 * handled SIGSEGV before (the fault recurs on return). */
void on_segv(int, siginfo_t *info, void *) {
  const uintptr_t address = (uintptr_t)info->si_addr;
  uintptr_t start = 0;
  const allocation *block = nullptr;
  if (memory_mutex.try_lock()) {
    block = find_allocation((const void *)address, 0, &start);
    memory_mutex.unlock();
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
    });
  });
}

} // namespace nnemu
