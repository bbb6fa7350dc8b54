// ueq/runtime/backoff.hpp — spin briefly, then yield.
//
// What it is for: waiting on another party that is expected to finish within
// a few hundred nanoseconds (a producer between claiming a ring cell and
// writing it, a consumer retiring its cell) but that may have been preempted
// by the host scheduler. Spinning forever on a descheduled peer burns the
// very CPU it needs; so `backoff` spins with exponentially growing pause
// bursts, then yields. The yield goes through a hook, so that a uthread
// yields to its scheduler rather than the whole vcore to the kernel.
//
// Thread-safety: a `backoff` object is a local of one waiting thread. The
// yield hook is process-wide; install it once at start-up (uthread/ does).
//
// Usage:
//   ueq::backoff b;
//   while (cell.load(std::memory_order_acquire) == kEmpty) b.pause();
#pragma once

#include <absl/base/thread_annotations.h>

#include <atomic>
#include <cstdint>

#include "ueq/runtime/lock_order.hpp"

namespace ueq {

// One CPU relaxation hint (x86 `pause`, arm `yield`).
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
  asm volatile("yield" ::: "memory");
#else
  std::atomic_signal_fence(std::memory_order_seq_cst);
#endif
}

namespace detail {
using yield_fn = void (*)() noexcept;
// Process-wide yield hook. Written by set_yield_hook() (normally once, by the
// uthread runtime), read by every backoff; relaxed is enough because the hook
// is a plain function pointer whose target has no state to publish.
extern std::atomic<yield_fn> g_yield_hook;
void default_yield() noexcept;  // sched_yield()
}  // namespace detail

// Replaces how a backoff yields (nullptr restores sched_yield). The hook must
// be callable from any thread and must decide for itself whether the caller
// is a uthread (yield to the scheduler) or a plain thread (sched_yield).
void set_yield_hook(detail::yield_fn fn) noexcept;

// Calls the current yield hook once.
inline void yield_now() noexcept {
  detail::g_yield_hook.load(std::memory_order_relaxed)();
}

class backoff {
 public:
  // How it yields: through the hook (a uthread may run another uthread
  // meanwhile), or to the kernel only (sched_yield), for waits on a party
  // that is always running on some thread.
  enum class yield_to : std::uint8_t { hook, kernel };
  constexpr backoff() noexcept = default;
  constexpr explicit backoff(yield_to y) noexcept : to_kernel_(y == yield_to::kernel) {}

  // Spin bursts of 1, 2, 4, ... 64 pauses (about 1 µs in all), then yield on
  // every further call.
  static constexpr std::uint32_t kSpinRounds = 7;

  void pause() noexcept {
    if (round_ < kSpinRounds) {
      for (std::uint32_t i = 0; i < (1u << round_); ++i)
        cpu_relax();
      ++round_;
    } else {
      ++yields_;
      if (to_kernel_)
        detail::default_yield();
      else
        yield_now();
    }
  }
  void reset() noexcept { round_ = 0; }
  std::uint32_t yields() const noexcept { return yields_; }

 private:
  std::uint32_t round_ = 0;
  std::uint32_t yields_ = 0;
  bool to_kernel_ = false;
};

// A test-and-test-and-set lock that waits with `backoff`. For short critical
// sections on slow paths (the CEQ's overflow recovery), never held across a
// blocking call or a context switch. So its holder is always running on
// some thread, and a waiter yields to the kernel, never to another uthread:
// a waiter that already holds a lock (nested locks) must not let another
// uthread run on its thread while it holds that one.
class ABSL_LOCKABLE spin_lock {
 public:
  constexpr spin_lock() noexcept = default;
  // A lock with a place in the lock order (lock_order.hpp).
  constexpr explicit spin_lock(lock_level level) noexcept : level_(level) {}

  void lock() noexcept ABSL_EXCLUSIVE_LOCK_FUNCTION() {
    if constexpr (detail::kCheckLockOrder) detail::lock_order_check(this, level_);
    // acquire on success: the critical section must see everything the
    // previous holder wrote before its release in unlock().
    if (locked_.exchange(true, std::memory_order_acquire)) [[unlikely]]
      lock_contended();
    if constexpr (detail::kCheckLockOrder) detail::lock_order_record(this, level_);
  }
  bool try_lock() noexcept ABSL_EXCLUSIVE_TRYLOCK_FUNCTION(true) {
    if (locked_.load(std::memory_order_relaxed) ||
        locked_.exchange(true, std::memory_order_acquire))
      return false;
    if constexpr (detail::kCheckLockOrder) detail::lock_order_record(this, level_);
    return true;
  }
  // release: publishes the critical section's writes to the next holder.
  void unlock() noexcept ABSL_UNLOCK_FUNCTION() {
    if constexpr (detail::kCheckLockOrder) detail::lock_order_release(this);
    locked_.store(false, std::memory_order_release);
  }
  bool is_locked() const noexcept { return locked_.load(std::memory_order_relaxed); }

 private:
  // The wait, out of line so that lock() stays small enough to inline.
  [[gnu::noinline]] void lock_contended() noexcept {
    backoff b(backoff::yield_to::kernel);
    do {
      while (locked_.load(std::memory_order_relaxed))
        b.pause();
    } while (locked_.exchange(true, std::memory_order_acquire));  // acquire: as in lock()
  }

  std::atomic<bool> locked_{false};
  lock_level level_ = lock_level::unordered;
};

}  // namespace ueq
