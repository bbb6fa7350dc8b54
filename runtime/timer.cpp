// The timer service: a min-heap under one spin lock.
//
// Shared state and who writes it:
//   heap_        armed timers, ordered by deadline; each timer's heap_index
//                is its position. Only under lock_.
//   timer.state  kIdle -> kArmed (arm), kArmed -> kIdle (cancel), kArmed ->
//                kRunning (run_expired takes it off the heap) and kRunning ->
//                kIdle (after its handler returned). Written under lock_,
//                except the last store, which is the release that cancel()
//                waits for.
//   earliest_    heap_[0]'s deadline, written under lock_.
//
// lock_ is never held while a handler runs, so a handler may arm timers.
#include "ueq/runtime/timer.hpp"
#include "ueq/runtime/lock.hpp"

#include <mutex>

namespace ueq {

void timer_service::sift_up(std::size_t i) noexcept {
  const heap_entry e = heap_[i];
  while (i > 0) {
    std::size_t p = (i - 1) / 2;
    if (heap_[p].deadline <= e.deadline) break;
    heap_[i] = heap_[p];
    heap_[i].t->heap_index = static_cast<std::int32_t>(i);
    i = p;
  }
  heap_[i] = e;
  e.t->heap_index = static_cast<std::int32_t>(i);
}

void timer_service::sift_down(std::size_t i) noexcept {
  const heap_entry e = heap_[i];
  const std::size_t n = heap_.size();
  for (;;) {
    std::size_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && heap_[c + 1].deadline < heap_[c].deadline) ++c;
    if (e.deadline <= heap_[c].deadline) break;
    heap_[i] = heap_[c];
    heap_[i].t->heap_index = static_cast<std::int32_t>(i);
    i = c;
  }
  heap_[i] = e;
  e.t->heap_index = static_cast<std::int32_t>(i);
}

void timer_service::remove_at(std::size_t i) noexcept {
  timer* removed = heap_[i].t;
  const heap_entry last = heap_.back();
  heap_.pop_back();
  removed->heap_index = -1;
  if (removed != last.t) {
    heap_[i] = last;
    last.t->heap_index = static_cast<std::int32_t>(i);
    sift_up(i);
    sift_down(static_cast<std::size_t>(last.t->heap_index));
  }
}

void timer_service::publish_earliest() noexcept {
  // release: a driver that reads a deadline also sees the timer it belongs
  // to (only as a hint; it takes lock_ before touching the heap).
  earliest_.store(heap_.empty() ? kNoDeadline : heap_[0].deadline, std::memory_order_release);
}

bool timer_service::arm(timer& t, mono_ns deadline) noexcept {
  lock_guard<spin_lock> g(lock_);
  // relaxed: under lock_, which orders every state change but the final
  // kRunning -> kIdle; re-arming a running timer is the owner's error.
  if (t.state.load(std::memory_order_relaxed) == kArmed)
    remove_at(static_cast<std::size_t>(t.heap_index));
  t.deadline = deadline;
  t.state.store(kArmed, std::memory_order_relaxed);  // relaxed: under lock_
  heap_.push_back({deadline, &t});
  sift_up(heap_.size() - 1);
  const bool first = heap_[0].t == &t;
  publish_earliest();
  return first;
}

bool timer_service::cancel(timer& t) noexcept {
  {
    lock_guard<spin_lock> g(lock_);
    // relaxed: under lock_ (see arm).
    if (t.state.load(std::memory_order_relaxed) == kArmed) {
      remove_at(static_cast<std::size_t>(t.heap_index));
      t.state.store(kIdle, std::memory_order_relaxed);
      publish_earliest();
      return true;
    }
  }
  // Fired: wait until its handler has finished. acquire: pairs with the
  // release store in run_expired, so the handler's writes are visible and
  // it no longer touches `t` when we return.
  backoff b;
  while (t.state.load(std::memory_order_acquire) == kRunning)
    b.pause();
  return false;
}

std::size_t timer_service::run_expired(mono_ns now) noexcept {
  std::size_t n = 0;
  for (;;) {
    timer* t;
    {
      lock_guard<spin_lock> g(lock_);
      if (heap_.empty() || heap_[0].deadline > now) return n;
      t = heap_[0].t;
      remove_at(0);
      t->state.store(kRunning, std::memory_order_relaxed);  // relaxed: under lock_
      publish_earliest();
    }
    t->fn(t, t->arg);
    ++n;
    // release: the handler's effects happen before cancel() sees kIdle;
    // after this store we never touch `t` again.
    t->state.store(kIdle, std::memory_order_release);
  }
}

std::size_t timer_service::size() const noexcept {
  lock_guard<spin_lock> g(lock_);
  return heap_.size();
}

}  // namespace ueq
