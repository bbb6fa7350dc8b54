// ueq/runtime/lock.hpp — a thread mutex and scoped locks that clang's
// thread-safety analysis understands.
//
// What it is for: stating which lock guards which state in a form the
// compiler checks. A member written `T x ABSL_GUARDED_BY(mu_);` may only be
// touched while mu_ is held, a function marked
// `ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_)` only called with it held; a clang
// build with -Wthread-safety (meson option thread_safety, run in CI) turns
// a miss into an error. GCC ignores the annotations.
//  - os_mutex: std::mutex (a futex; blocks the calling OS thread) marked as
//    a capability. libstdc++'s std::mutex is not annotated, so ueq's own
//    code uses this one. Given a lock_level, it takes its place in the
//    lock order that debug builds check (lock_order.hpp).
//  - lock_guard<L>: holds L (os_mutex, spin_lock) for a scope.
//  - unique_lock<L>: the same, with unlock() and lock() in between (always
//    owns the lock at construction).
// spin_lock (backoff.hpp) is annotated the same way.
//
// Thread-safety: os_mutex as std::mutex; the guards belong to one thread.
//
// Usage:
//   struct counter {
//     ueq::os_mutex mu;
//     int n ABSL_GUARDED_BY(mu) = 0;
//     void bump() { ueq::lock_guard<ueq::os_mutex> g(mu); ++n; }
//   };
#pragma once

#include <absl/base/thread_annotations.h>

#include <mutex>

#include "ueq/runtime/lock_order.hpp"

namespace ueq {

namespace detail {
// os_mutexes the calling thread holds. While it holds one, a backoff must
// not switch to another uthread (see the uthread yield hook): one that
// took the same mutex would block this thread, and with it the holder.
inline thread_local int tl_os_mutexes_held = 0;
}  // namespace detail

class ABSL_LOCKABLE os_mutex {
 public:
  constexpr os_mutex() noexcept = default;
  // A mutex with a place in the lock order (lock_order.hpp).
  constexpr explicit os_mutex(lock_level level) noexcept : level_(level) {}

  void lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() {
    if constexpr (detail::kCheckLockOrder) detail::lock_order_check(this, level_);
    m_.lock();
    if constexpr (detail::kCheckLockOrder) detail::lock_order_record(this, level_);
    ++detail::tl_os_mutexes_held;
  }
  bool try_lock() ABSL_EXCLUSIVE_TRYLOCK_FUNCTION(true) {
    if (!m_.try_lock()) return false;
    if constexpr (detail::kCheckLockOrder) detail::lock_order_record(this, level_);
    ++detail::tl_os_mutexes_held;
    return true;
  }
  void unlock() ABSL_UNLOCK_FUNCTION() {
    if constexpr (detail::kCheckLockOrder) detail::lock_order_release(this);
    --detail::tl_os_mutexes_held;
    m_.unlock();
  }

 private:
  std::mutex m_;
  lock_level level_ = lock_level::unordered;
};

template <class L>
class ABSL_SCOPED_LOCKABLE lock_guard {
 public:
  explicit lock_guard(L& l) ABSL_EXCLUSIVE_LOCK_FUNCTION(l) : l_(l) { l_.lock(); }
  ~lock_guard() ABSL_UNLOCK_FUNCTION() { l_.unlock(); }
  lock_guard(const lock_guard&) = delete;
  lock_guard& operator=(const lock_guard&) = delete;

 private:
  L& l_;
};

template <class L>
class ABSL_SCOPED_LOCKABLE unique_lock {
 public:
  explicit unique_lock(L& l) ABSL_EXCLUSIVE_LOCK_FUNCTION(l) : l_(l) { l_.lock(); }
  ~unique_lock() ABSL_UNLOCK_FUNCTION() {
    if (owns_) l_.unlock();
  }
  void lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() {
    l_.lock();
    owns_ = true;
  }
  void unlock() ABSL_UNLOCK_FUNCTION() {
    owns_ = false;
    l_.unlock();
  }
  unique_lock(const unique_lock&) = delete;
  unique_lock& operator=(const unique_lock&) = delete;

 private:
  L& l_;
  bool owns_ = true;
};

}  // namespace ueq
