// ueq/uthread/sync.hpp — mutex, condition variable, semaphore and rwlock for
// uthreads (and plain threads).
//
// What it is for: blocking synchronisation that blocks only the calling
// uthread, never its vcore. Every wait parks on a ueq::parker that lives on
// the waiter's stack: a uthread switches to its scheduler, a plain thread
// sleeps on a futex, so uthreads and plain threads may share these objects
// and wake each other.
//
// Policies: the mutex and the semaphore hand off directly to the first
// waiter (FIFO, no barging once someone waits); the condition variable wakes
// in FIFO order; the rwlock admits readers while no writer holds or waits,
// and on unlock hands off to the next writer or to the run of readers at the
// head of its queue. The waiter queue is guarded by a short internal spin
// lock, never held across a switch.
//
// Thread-safety: all members from any uthread or plain thread.
//
// Usage:
//   ueq::mutex m;
//   ueq::condition_variable cv;
//   bool ready = false;
//   // waiter:                                   // notifier:
//   std::unique_lock<ueq::mutex> l(m);           { std::lock_guard<ueq::mutex> g(m); ready = true;
//   } while (!ready) cv.wait(l);                   cv.notify_one();
#pragma once

#include <cstdint>
#include <mutex>

#include "ueq/runtime/backoff.hpp"
#include "ueq/runtime/clock.hpp"
#include "ueq/runtime/ilist.hpp"
#include "ueq/runtime/parker.hpp"

namespace ueq {

namespace detail {
// A waiter on one of the objects below; lives on the waiter's stack.
struct sync_waiter {
  parker p;
  ilist_link<sync_waiter> link;  // under the owner's lock
  bool queued = false;           // under the owner's lock
  bool writer = false;           // rwlock only
};
// A FIFO of waiters: push, pop and remove keep each one's `queued` flag.
class waiter_list {
 public:
  void push(sync_waiter* w) noexcept {
    q_.push_back(w);
    w->queued = true;
  }
  sync_waiter* pop() noexcept {
    sync_waiter* w = q_.pop_front();
    if (w) w->queued = false;
    return w;
  }
  void remove(sync_waiter* w) noexcept {
    q_.remove(w);
    w->queued = false;
  }
  bool empty() const noexcept { return q_.empty(); }
  sync_waiter* front() const noexcept { return q_.front(); }
  static sync_waiter* next(const sync_waiter* w) noexcept { return list::next(w); }
  // Moves every waiter of `other` to the back of this one (flags as they are).
  void take_all(waiter_list& other) noexcept { q_.splice_back(other.q_); }

 private:
  using list = ilist<sync_waiter, &sync_waiter::link>;
  list q_;
};
}  // namespace detail

class ABSL_LOCKABLE mutex {
 public:
  void lock() noexcept ABSL_EXCLUSIVE_LOCK_FUNCTION();
  bool try_lock() noexcept ABSL_EXCLUSIVE_TRYLOCK_FUNCTION(true);
  void unlock() noexcept ABSL_UNLOCK_FUNCTION();

 private:
  spin_lock lk_;
  bool locked_ ABSL_GUARDED_BY(lk_) = false;
  detail::waiter_list waiters_ ABSL_GUARDED_BY(lk_);
};

enum class wait_status : std::uint8_t { no_timeout, timeout };

class condition_variable {
 public:
  void wait(std::unique_lock<mutex>& l) noexcept;
  template <class Pred>
  void wait(std::unique_lock<mutex>& l, Pred pred) {
    while (!pred())
      wait(l);
  }
  // Waits until notified or the deadline (CLOCK_MONOTONIC) passes.
  wait_status wait_until(std::unique_lock<mutex>& l, mono_ns deadline) noexcept;
  template <class Pred>
  bool wait_until(std::unique_lock<mutex>& l, mono_ns deadline, Pred pred) {
    while (!pred())
      if (wait_until(l, deadline) == wait_status::timeout) return pred();
    return true;
  }
  void notify_one() noexcept;
  void notify_all() noexcept;

 private:
  spin_lock lk_;
  detail::waiter_list waiters_;
};

class semaphore {
 public:
  explicit semaphore(std::uint64_t initial = 0) noexcept : count_(initial) {}
  void acquire() noexcept;
  bool try_acquire() noexcept;
  // False if the deadline passed first (no count was taken).
  bool acquire_until(mono_ns deadline) noexcept;
  void release(std::uint64_t n = 1) noexcept;

 private:
  spin_lock lk_;
  std::uint64_t count_;  // under lk_
  detail::waiter_list waiters_;
};

class rwlock {
 public:
  void lock() noexcept;
  bool try_lock() noexcept;
  void unlock() noexcept;
  void lock_shared() noexcept;
  bool try_lock_shared() noexcept;
  void unlock_shared() noexcept;

 private:
  void wake_next_locked(detail::waiter_list& out) noexcept;
  spin_lock lk_;
  bool writer_ = false;        // under lk_
  std::uint32_t readers_ = 0;  // under lk_
  detail::waiter_list waiters_;
};

}  // namespace ueq
