// ueq/ceq/evq/block_on.hpp — block until one of several event queues has a message.
//
// What it is for: a waiter (a plain OS thread today; uthreads park through
// the same parker once the uthread runtime installs its park hook) that waits
// for the first message from any of up to 64 queues (more are allowed, at a
// heap allocation), with an absolute CLOCK_MONOTONIC deadline.
//
// Guarantees:
//  - No lost wakeup, whatever the interleaving of post, register, re-check and
//    park (the handshake is described in event_queue.hpp/.cpp).
//  - Queues are tried in the order given: when several have messages, the
//    first listed wins.
//  - The deadline is absolute: spurious wakeups never restart the wait, and
//    the call never returns ETIMEDOUT before the deadline has passed.
//  - A waiter woken by a wake-one queue that leaves (timed out, or took a
//    message elsewhere) while that queue is still non-empty passes the wakeup
//    on to another waiter of that queue.
//  - The timer is the waiter's own (its parker's deadline): waiters never
//    share or steal each other's timeouts.
//  - While it waits, a plain thread may be the one that polls the host
//    kernel for fd events (see parker.hpp), so blocking here also drives
//    the taps.
//
// Errors: EINVAL (no queues, a null one, or one with a post hook), ETIMEDOUT (deadline passed with
// nothing), ECANCELED (a queue was closed and none had a message), EAGAIN
// (with a wake_check only: it moved, or a wake found no message).
//
// Thread-safety: any number of threads may block on overlapping sets of
// queues at once.
//
// Usage:
//   auto r = ueq::block_on({timers.get(), messages.get()}, ueq::deadline_after_ms(100));
//   if (r) handle(r->queue, r->msg);
//   else if (r.error() == std::errc::timed_out) ...
#pragma once

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <span>

#include "ueq/ceq/event.hpp"
#include "ueq/ceq/evq/event_queue.hpp"
#include "ueq/runtime/backoff.hpp"
#include "ueq/runtime/clock.hpp"
#include "ueq/runtime/parker.hpp"
#include "ueq/runtime/result.hpp"

namespace ueq {

struct block_result {
  event_queue* queue = nullptr;  // the queue the message came from
  event_msg msg;
};

result<block_result> block_on(std::span<event_queue* const> queues,
                              mono_ns deadline = kNoDeadline) noexcept;

// A condition besides the queues that ends a wait: `moved(ctx)` is asked
// after the waiter registers, beside the mailboxes' re-check, and if true
// the call returns EAGAIN; and a wake that finds no message returns EAGAIN
// too, instead of waiting again. For waiters that share one message among
// themselves and retry a call of their own when woken (ueq::io: see
// `share` in taps/io.cpp): `moved` says another waiter took a message
// since the caller last looked, and that waiter wakes the others with
// event_queue::wake_waiters().
struct wake_check {
  bool (*moved)(const void* ctx) noexcept;
  const void* ctx;
};
result<block_result> block_on(std::span<event_queue* const> queues, mono_ns deadline,
                              const wake_check& check) noexcept;
inline result<block_result> block_on(std::initializer_list<event_queue*> queues,
                                     mono_ns deadline = kNoDeadline) noexcept {
  return block_on(std::span<event_queue* const>(queues.begin(), queues.size()), deadline);
}

namespace detail {

// One blocked call to block_on. Lives on the waiter's stack; every queue it is
// linked into holds its link only while the waiter is inside block_on, and
// the waiter unlinks from all of them (taking each queue's lock, which every
// waker holds while touching the waiter) before it returns.
class evq_waiter {
 public:
  // Called by a waker under queue `by`'s lock: true if this call woke the
  // waiter (it was not yet woken this round).
  bool wake(event_queue* by) noexcept {
    if (!parker_.unpark()) return false;
    // relaxed: only the winner writes it; see woken_by() for the ordering.
    woken_by_.store(by, std::memory_order_relaxed);
    return true;
  }
  // The queue whose wake() or wake_claimed() woke the waiter this round.
  // Read only after the waiter has unlinked from every queue: taking each
  // queue's lock (a listed waiter), or seeing the claimer's unpark
  // (remove_solo, for the slot's), orders the waker's write before this
  // read.
  event_queue* woken_by() const noexcept { return woken_by_.load(std::memory_order_relaxed); }
  // Called by the waker whose exchange took the waiter out of a queue's
  // one-waiter slot: no other party can wake it this round, so this call
  // always wins. woken_by_ is written first (relaxed), and the unpark's
  // release exchange publishes it: the waiter reads it after seeing the
  // wake (acquire, await_claimer or its park). Once the exchange is done
  // the waiter may return and its stack go: unpark() touches nothing of
  // the parker after it but the address for a futex wake (a private futex:
  // a stale address wakes no one, or someone who re-checks).
  void wake_claimed(event_queue* by) noexcept {
    woken_by_.store(by, std::memory_order_relaxed);
    parker_.unpark();
  }
  // The waiter's side of a claim: returns once wake_claimed() has done its
  // exchange. Bounded: the claimer calls it right after its claim, and
  // nothing it does in between blocks.
  void await_claimer() noexcept {
    backoff b(backoff::yield_to::kernel);  // the claimer is running, not queued
    while (!parker_.woken())
      b.pause();
  }
  void reset() noexcept {
    parker_.reset();
    woken_by_.store(nullptr, std::memory_order_relaxed);
  }
  void wait(mono_ns deadline) noexcept { parker_.park(deadline); }

 private:
  parker parker_;
  std::atomic<event_queue*> woken_by_{nullptr};
};

}  // namespace detail
}  // namespace ueq
