// block_on and the waiter it parks.
//
// The waiter's state word: kWaiting (registered, running or spinning),
// kSleeping (about to sleep, or asleep, on the futex), kWoken (a waker
// claimed it). Wakers exchange it to kWoken and issue a futex wake only if it
// was kSleeping, so waking a spinning waiter costs no system call.
#include "ueq/ceq/block_on.hpp"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <vector>

#include "ueq/runtime/backoff.hpp"

namespace ueq {

namespace detail {

bool evq_waiter::wake(event_queue* by) noexcept {
  // acq_rel: release publishes the waker's mailbox post (already fenced) to
  // the waiter that reads kWoken with acquire; acquire is harmless.
  const std::uint32_t prev = state_.exchange(kWoken, std::memory_order_acq_rel);
  if (prev == kWoken) return false;
  // relaxed: only the winner writes it; see woken_by() for the ordering.
  woken_by_.store(by, std::memory_order_relaxed);
  if (prev == kSleeping) syscall(SYS_futex, &state_, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
  return true;
}

bool evq_waiter::wait(mono_ns deadline) noexcept {
  // Spin briefly first: a cross-CPU futex wake costs tens of microseconds on
  // a VM, a spin-observed wake a fraction of one.
  for (int i = 0; i < 200; ++i) {
    if (state_.load(std::memory_order_acquire) == kWoken) return true;
    cpu_relax();
  }
  for (;;) {
    std::uint32_t s = kWaiting;
    // acquire on failure: we then read kWoken and return.
    if (!state_.compare_exchange_strong(s, kSleeping, std::memory_order_acq_rel,
                                        std::memory_order_acquire) &&
        s == kWoken)
      return true;
    timespec ts, *tsp = nullptr;
    if (deadline != kNoDeadline) {
      if (monotonic_now() >= deadline) break;
      ts = to_timespec(deadline);
      tsp = &ts;
    }
    // Absolute CLOCK_MONOTONIC timeout (FUTEX_WAIT_BITSET measures it so);
    // returns at once if a waker already moved the word off kSleeping.
    const long rc = syscall(SYS_futex, &state_, FUTEX_WAIT_BITSET_PRIVATE, kSleeping, tsp, nullptr,
                            FUTEX_BITSET_MATCH_ANY);
    if (state_.load(std::memory_order_acquire) == kWoken) return true;
    if (rc == -1 && errno == ETIMEDOUT) break;
    // EINTR, EAGAIN or a spurious return: wait again for the same deadline.
  }
  // Timed out. Withdraw unless a waker got there first (then we are woken).
  std::uint32_t s = kSleeping;
  if (state_.compare_exchange_strong(s, kWaiting, std::memory_order_acq_rel,
                                     std::memory_order_acquire))
    return false;
  return s == kWoken;
}

}  // namespace detail

namespace {

bool try_all(std::span<event_queue* const> qs, block_result& out) noexcept {
  for (event_queue* q : qs)
    if (q->try_get(out.msg)) {
      out.queue = q;
      return true;
    }
  return false;
}

bool any_closed(std::span<event_queue* const> qs) noexcept {
  for (event_queue* q : qs)
    if (q->closed()) return true;
  return false;
}

// A waiter woken by a wake-one queue that leaves without taking a message
// from it (timed out, or took one elsewhere) while it still holds messages
// hands the wakeup on, so the queue is not stranded with sleepers. A waiter
// that did take from it needs not: every message-creating post wakes its
// own waiter.
void pass_on(event_queue* woken_by, const event_queue* took_from) noexcept {
  if (woken_by && woken_by != took_from && woken_by->policy() == notify_policy::wake_one &&
      !woken_by->empty())
    woken_by->wake_one_waiter();
}

}  // namespace

result<block_result> block_on(std::span<event_queue* const> queues, mono_ns deadline) noexcept {
  if (queues.empty()) return errno_code(EINVAL);
  for (event_queue* q : queues)
    if (!q) return errno_code(EINVAL);
  block_result r;
  if (try_all(queues, r)) return r;

  detail::evq_link small[64];
  std::unique_ptr<detail::evq_link[]> big;
  detail::evq_link* links = small;
  if (queues.size() > 64) {
    big.reset(new (std::nothrow) detail::evq_link[queues.size()]);
    if (!big) return errno_code(ENOMEM);
    links = big.get();
  }
  detail::evq_waiter w;
  for (std::size_t i = 0; i < queues.size(); ++i)
    links[i].waiter = &w;

  for (;;) {
    w.reset();
    for (std::size_t i = 0; i < queues.size(); ++i)
      queues[i]->add_waiter(&links[i]);
    // seq_cst fence: the waiter half of the handshake (event_queue.cpp):
    // our registration is ordered before the mailbox re-check below.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    bool got = try_all(queues, r);
    const bool closed = !got && any_closed(queues);
    if (!got && !closed) w.wait(deadline);
    for (std::size_t i = 0; i < queues.size(); ++i)
      queues[i]->remove_waiter(&links[i]);
    // A waker may have claimed us after we stopped waiting: then we count
    // as woken (and may owe a hand-off) all the same.
    event_queue* by = w.woken_by();
    if (!got) got = try_all(queues, r);
    if (got) {
      pass_on(by, r.queue);
      return r;
    }
    if (closed || any_closed(queues)) {
      pass_on(by, nullptr);
      return errno_code(ECANCELED);
    }
    if (by) {
      by->note_spurious();
      if (monotonic_now() < deadline) continue;
    }
    if (monotonic_now() >= deadline) {
      for (event_queue* q : queues)
        q->note_timeout();
      pass_on(by, nullptr);
      return errno_code(ETIMEDOUT);
    }
  }
}

}  // namespace ueq
