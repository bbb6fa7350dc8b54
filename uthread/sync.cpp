// Sync objects on parkers.
//
// Every object: a spin lock `lk_` guards its state and its FIFO waiter list;
// no switch happens while lk_ is held. A waiter links a stack-resident
// sync_waiter under lk_, drops lk_, then parks. Whoever grants it (unlock,
// notify, release) unlinks it under lk_, drops lk_, and unparks it. The
// parker's permit makes "unpark before park" safe, so this is the whole
// lost-wakeup argument. A granted waiter returns only after its unpark (it
// parks until woken), so the granter may touch the waiter's parker after
// dropping lk_; it touches nothing else of it.
//
// Timed waits: after a timeout the waiter takes lk_; if it is still queued
// it unlinks itself and reports the timeout; if not, a granter already took
// it and will unpark it, so it waits for that unpark (briefly) and reports
// success.
#include "ueq/uthread/sync.hpp"
#include "ueq/runtime/lock.hpp"

namespace ueq {
namespace detail {

namespace {
void park_until_granted(sync_waiter& w) noexcept {
  while (!w.p.park()) {
  }
}

// Timed park; true if granted. See the file comment.
bool park_timed(sync_waiter& w, spin_lock& lk, waiter_list& list, mono_ns deadline) noexcept {
  if (w.p.park(deadline)) return true;
  {
    lock_guard<spin_lock> g(lk);
    if (w.queued) {
      list.remove(&w);
      return false;
    }
  }
  park_until_granted(w);
  return true;
}
}  // namespace
}  // namespace detail

using detail::sync_waiter;

// --- mutex --------------------------------------------------------------------
void mutex::lock() noexcept {
  sync_waiter w;
  {
    lock_guard<spin_lock> g(lk_);
    if (!locked_) {
      locked_ = true;
      return;
    }
    waiters_.push(&w);
  }
  // Ownership is handed to us by unlock(): locked_ stays true.
  detail::park_until_granted(w);
}

bool mutex::try_lock() noexcept {
  lock_guard<spin_lock> g(lk_);
  if (locked_) return false;
  locked_ = true;
  return true;
}

void mutex::unlock() noexcept {
  sync_waiter* w;
  {
    lock_guard<spin_lock> g(lk_);
    w = waiters_.pop();
    if (!w) locked_ = false;  // else: hand-off, it stays locked for w
  }
  if (w) w->p.unpark();
}

// --- condition variable ---------------------------------------------------------
void condition_variable::wait(std::unique_lock<mutex>& l) noexcept {
  sync_waiter w;
  {
    lock_guard<spin_lock> g(lk_);
    waiters_.push(&w);
  }
  // Queued before the mutex is released: a notify after our caller's check
  // finds us, and the permit covers a notify that lands before we park.
  l.unlock();
  detail::park_until_granted(w);
  l.lock();
}

wait_status condition_variable::wait_until(std::unique_lock<mutex>& l, mono_ns deadline) noexcept {
  sync_waiter w;
  {
    lock_guard<spin_lock> g(lk_);
    waiters_.push(&w);
  }
  l.unlock();
  const bool granted = detail::park_timed(w, lk_, waiters_, deadline);
  l.lock();
  return granted ? wait_status::no_timeout : wait_status::timeout;
}

void condition_variable::notify_one() noexcept {
  sync_waiter* w;
  {
    lock_guard<spin_lock> g(lk_);
    w = waiters_.pop();
  }
  if (w) w->p.unpark();
}

void condition_variable::notify_all() noexcept {
  detail::waiter_list all;
  {
    lock_guard<spin_lock> g(lk_);
    all.take_all(waiters_);
    for (sync_waiter* w = all.front(); w; w = detail::waiter_list::next(w))
      w->queued = false;
  }
  // Read next before unparking: a woken waiter may return and free its node.
  for (sync_waiter* w = all.front(); w;) {
    sync_waiter* next = detail::waiter_list::next(w);
    w->p.unpark();
    w = next;
  }
}

// --- semaphore ------------------------------------------------------------------
void semaphore::acquire() noexcept {
  sync_waiter w;
  {
    lock_guard<spin_lock> g(lk_);
    if (count_ > 0) {
      --count_;
      return;
    }
    waiters_.push(&w);
  }
  detail::park_until_granted(w);  // release() handed its count to us
}

bool semaphore::try_acquire() noexcept {
  lock_guard<spin_lock> g(lk_);
  if (count_ == 0) return false;
  --count_;
  return true;
}

bool semaphore::acquire_until(mono_ns deadline) noexcept {
  sync_waiter w;
  {
    lock_guard<spin_lock> g(lk_);
    if (count_ > 0) {
      --count_;
      return true;
    }
    waiters_.push(&w);
  }
  return detail::park_timed(w, lk_, waiters_, deadline);
}

void semaphore::release(std::uint64_t n) noexcept {
  detail::waiter_list grant;
  {
    lock_guard<spin_lock> g(lk_);
    for (; n > 0; --n) {
      sync_waiter* w = waiters_.pop();
      if (!w) break;
      grant.push(w);
      w->queued = false;  // granted: a timed waiter must wait for its unpark
    }
    count_ += n;
  }
  for (sync_waiter* w = grant.front(); w;) {
    sync_waiter* next = detail::waiter_list::next(w);
    w->p.unpark();
    w = next;
  }
}

// --- rwlock ---------------------------------------------------------------------
void rwlock::lock() noexcept {
  sync_waiter w;
  w.writer = true;
  {
    lock_guard<spin_lock> g(lk_);
    if (!writer_ && readers_ == 0 && waiters_.empty()) {
      writer_ = true;
      return;
    }
    waiters_.push(&w);
  }
  detail::park_until_granted(w);  // granted with writer_ = true
}

bool rwlock::try_lock() noexcept {
  lock_guard<spin_lock> g(lk_);
  if (writer_ || readers_ != 0 || !waiters_.empty()) return false;
  writer_ = true;
  return true;
}

void rwlock::lock_shared() noexcept {
  sync_waiter w;
  {
    lock_guard<spin_lock> g(lk_);
    if (!writer_ && waiters_.empty()) {
      ++readers_;
      return;
    }
    waiters_.push(&w);
  }
  detail::park_until_granted(w);  // granted with readers_ counting us
}

bool rwlock::try_lock_shared() noexcept {
  lock_guard<spin_lock> g(lk_);
  if (writer_ || !waiters_.empty()) return false;
  ++readers_;
  return true;
}

// Under lk_, with no holder left: grant the head writer, or every reader at
// the head up to the next writer.
void rwlock::wake_next_locked(detail::waiter_list& out) noexcept {
  if (waiters_.empty()) return;
  // Granted waiters are not queued: a timed one must wait for its unpark.
  auto grant = [&out](sync_waiter* w) {
    out.push(w);
    w->queued = false;
  };
  if (waiters_.front()->writer) {
    writer_ = true;
    grant(waiters_.pop());
    return;
  }
  while (!waiters_.empty() && !waiters_.front()->writer) {
    ++readers_;
    grant(waiters_.pop());
  }
}

void rwlock::unlock() noexcept {
  detail::waiter_list grant;
  {
    lock_guard<spin_lock> g(lk_);
    writer_ = false;
    wake_next_locked(grant);
  }
  for (sync_waiter* w = grant.front(); w;) {
    sync_waiter* next = detail::waiter_list::next(w);
    w->p.unpark();
    w = next;
  }
}

void rwlock::unlock_shared() noexcept {
  detail::waiter_list grant;
  {
    lock_guard<spin_lock> g(lk_);
    if (--readers_ == 0) wake_next_locked(grant);
  }
  for (sync_waiter* w = grant.front(); w;) {
    sync_waiter* next = detail::waiter_list::next(w);
    w->p.unpark();
    w = next;
  }
}

}  // namespace ueq
