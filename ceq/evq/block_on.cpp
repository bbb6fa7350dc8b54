// block_on: register on every queue, re-check, park (runtime/parker), and
// unlink from every queue before returning.
#include "ueq/ceq/evq/block_on.hpp"

#include <cerrno>
#include <memory>
#include <new>
#include <vector>

#include "ueq/runtime/backoff.hpp"

namespace ueq {

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

// A waiter woken by a wake-one queue that leaves while the queue still holds
// messages hands the wakeup on, so the queue is not stranded with sleepers.
// This holds even when the waiter took a message from that queue: it may
// have taken one on its own (the re-check before parking) and been woken for
// another (the model in tests/model/wakeup.pml found exactly that).
void pass_on(event_queue* woken_by) noexcept {
  if (woken_by && woken_by->policy() == notify_policy::wake_one && !woken_by->empty())
    woken_by->wake_one_waiter();
}

}  // namespace

result<block_result> block_on(std::span<event_queue* const> queues, mono_ns deadline) noexcept {
  if (queues.empty()) return errno_code(EINVAL);
  for (event_queue* q : queues)
    if (!q || q->hooked()) return errno_code(EINVAL);  // a hooked queue wakes no one
  block_result r;
  if (try_all(queues, r)) return r;

  // Links for up to 64 queues live on the stack, uninitialised until used:
  // building all 64 on every call cost ~100 instructions per wait (callgrind;
  // a same-vcore round trip is ~2200).
  alignas(detail::evq_link) unsigned char small[64 * sizeof(detail::evq_link)];
  std::unique_ptr<detail::evq_link[]> big;
  detail::evq_link* links = reinterpret_cast<detail::evq_link*>(small);
  if (queues.size() > 64) {
    big.reset(new (std::nothrow) detail::evq_link[queues.size()]);
    if (!big) return errno_code(ENOMEM);
    links = big.get();
  }
  detail::evq_waiter w;
  for (std::size_t i = 0; i < queues.size(); ++i)
    new (&links[i]) detail::evq_link{{}, &w};  // trivially destructible

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
      pass_on(by);
      return r;
    }
    if (closed || any_closed(queues)) {
      pass_on(by);
      return errno_code(ECANCELED);
    }
    if (by) {
      by->note_spurious();
      if (monotonic_now() < deadline) continue;
    }
    if (monotonic_now() >= deadline) {
      for (event_queue* q : queues)
        q->note_timeout();
      pass_on(by);
      return errno_code(ETIMEDOUT);
    }
  }
}

}  // namespace ueq
