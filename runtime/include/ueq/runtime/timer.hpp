// ueq/runtime/timer.hpp — deadlines on CLOCK_MONOTONIC that run a handler.
//
// What it is for: per-waiter timeouts (a uthread's sleep or timed wait) and
// any other "call this at time T". A `timer_service` keeps armed timers in a
// binary min-heap whose entries know their own index, so arm and cancel are
// O(log n) and next_deadline() is O(1). It has no thread of its own: whoever
// drives it (the uthread scheduler's vcores, between uthreads and before
// they sleep) calls run_expired() and sleeps no later than next_deadline().
//
// Cancel semantics: cancel() returns once the timer is either removed
// unfired (returns true) or its handler has finished (returns false). After
// cancel() the timer's memory may be reused. A handler must not cancel its
// own timer nor re-arm it, and must be short: it runs on the driving vcore.
//
// Thread-safety: arm, cancel, run_expired and next_deadline from any thread,
// concurrently. A `timer` object is armed by one party at a time.
//
// Usage:
//   ueq::timer t;
//   t.fn = [](ueq::timer*, void* arg) noexcept { static_cast<flag*>(arg)->set(); };
//   t.arg = &f;
//   bool earliest = svc.arm(t, ueq::deadline_after_ms(5));  // wake a driver if so
//   ...
//   svc.cancel(t);  // cancelled, or the handler has finished
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

#include "ueq/runtime/backoff.hpp"
#include "ueq/runtime/clock.hpp"

namespace ueq {

struct timer {
  void (*fn)(timer* t, void* arg) noexcept = nullptr;
  void* arg = nullptr;
  mono_ns deadline = kNoDeadline;
  // Owned by the service: heap index while armed, or one of the k* values.
  std::int32_t heap_index = -1;
  // kIdle / kArmed / kRunning. Written under the service lock; read by
  // cancel() while it waits for a running handler.
  std::atomic<std::uint8_t> state{0};
};

class timer_service {
 public:
  timer_service() = default;
  timer_service(const timer_service&) = delete;
  timer_service& operator=(const timer_service&) = delete;

  // Arms `t` for `deadline` (re-arming an armed timer moves it). True if it
  // became the earliest deadline: the caller should wake a driver that may
  // sleep past it.
  bool arm(timer& t, mono_ns deadline) noexcept;
  // See the header comment.
  bool cancel(timer& t) noexcept;
  // Runs the handlers of every timer due at `now`; returns how many ran.
  std::size_t run_expired(mono_ns now) noexcept;
  // The earliest armed deadline, or kNoDeadline: a snapshot. A driver that
  // must not miss a later arm pairs this with arm()'s result (the uthread
  // scheduler fences and wakes a sleeping vcore when arm() returns true).
  mono_ns next_deadline() const noexcept { return earliest_.load(std::memory_order_acquire); }
  std::size_t size() const noexcept;

 private:
  static constexpr std::uint8_t kIdle = 0, kArmed = 1, kRunning = 2;
  void sift_up(std::size_t i) noexcept ABSL_EXCLUSIVE_LOCKS_REQUIRED(lock_);
  void sift_down(std::size_t i) noexcept ABSL_EXCLUSIVE_LOCKS_REQUIRED(lock_);
  void remove_at(std::size_t i) noexcept ABSL_EXCLUSIVE_LOCKS_REQUIRED(lock_);
  void publish_earliest() noexcept ABSL_EXCLUSIVE_LOCKS_REQUIRED(lock_);

  mutable spin_lock lock_{lock_level::timer};
  // The deadline is copied into the heap so that ordering never touches
  // the timers themselves (they live on many different uthread stacks).
  struct heap_entry {
    mono_ns deadline;
    timer* t;
  };
  std::vector<heap_entry> heap_ ABSL_GUARDED_BY(lock_);
  // Copy of heap_[0]->deadline, written under lock_, read without it.
  std::atomic<mono_ns> earliest_{kNoDeadline};
};

}  // namespace ueq
