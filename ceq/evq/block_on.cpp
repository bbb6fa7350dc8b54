// block_on: register on every queue, re-check, park (runtime/parker), and
// unlink from every queue before returning.
//
// One loop (wait_loop) serves two shapes of queue set: one queue, the
// common case (no link array, no loops: the wait of a green thread on its
// own queue), and several. The shape only says how the set is walked; the
// protocol is the same.
#include "ueq/ceq/evq/block_on.hpp"

#include <algorithm>
#include <cerrno>
#include <memory>
#include <new>

namespace ueq {

namespace {

using detail::evq_link;
using detail::evq_waiter;

// Exactly one queue: the waiter takes the queue's one-waiter slot if it
// can (no lock, no list), else joins the list.
class one_queue {
 public:
  one_queue(event_queue* q, evq_waiter* w) noexcept : q_(q), link_{{}, w} {}
  bool try_all(block_result& out) noexcept {
    if (!q_->try_get(out.msg)) return false;
    out.queue = q_;
    return true;
  }
  bool any_closed() const noexcept { return q_->closed(); }
  static constexpr bool prepare() noexcept { return true; }
  void add() noexcept {
    solo_ = q_->add_solo(link_.waiter);
    if (!solo_) q_->add_waiter(&link_);
  }
  void remove() noexcept {
    if (solo_)
      q_->remove_solo(link_.waiter);
    else
      q_->remove_waiter(&link_);
  }
  template <class F>
  void each(F&& f) noexcept {
    f(q_);
  }

 private:
  event_queue* q_;
  evq_link link_;
  bool solo_ = false;  // registered in the slot this round (else listed)
};

// Several queues, tried in the order given. Links for up to 64 live on the
// stack, uninitialised until the call has to wait: building all 64 on every
// call cost ~100 instructions per wait (callgrind; a same-vcore round trip
// was ~2200).
class many_queues {
 public:
  many_queues(std::span<event_queue* const> qs, evq_waiter* w) noexcept : qs_(qs), w_(w) {}
  // Builds the links; false if there is no memory for them.
  bool prepare() noexcept {
    links_ = reinterpret_cast<evq_link*>(small_);
    if (qs_.size() > kSmall) {
      big_.reset(new (std::nothrow) evq_link[qs_.size()]);
      if (!big_) return false;
      links_ = big_.get();
    }
    for (std::size_t i = 0; i < qs_.size(); ++i)
      new (&links_[i]) evq_link{{}, w_};  // trivially destructible
    return true;
  }
  bool try_all(block_result& out) noexcept {
    for (event_queue* q : qs_)
      if (q->try_get(out.msg)) {
        out.queue = q;
        return true;
      }
    return false;
  }
  bool any_closed() const noexcept {
    for (event_queue* q : qs_)
      if (q->closed()) return true;
    return false;
  }
  void add() noexcept {
    for (std::size_t i = 0; i < qs_.size(); ++i)
      qs_[i]->add_waiter(&links_[i]);
  }
  void remove() noexcept {
    for (std::size_t i = 0; i < qs_.size(); ++i)
      qs_[i]->remove_waiter(&links_[i]);
  }
  template <class F>
  void each(F&& f) noexcept {
    for (event_queue* q : qs_)
      f(q);
  }

 private:
  static constexpr std::size_t kSmall = 64;
  std::span<event_queue* const> qs_;
  evq_waiter* w_;
  alignas(evq_link) unsigned char small_[kSmall * sizeof(evq_link)];
  std::unique_ptr<evq_link[]> big_;
  evq_link* links_ = nullptr;
};

// A waiter woken by a wake-one queue that leaves while the queue still holds
// messages hands the wakeup on, so the queue is not stranded with sleepers.
// This holds even when the waiter took a message from that queue: it may
// have taken one on its own (the re-check before parking) and been woken for
// another (the model in tests/model/wakeup.pml found exactly that).
void pass_on(event_queue* woken_by) noexcept {
  if (woken_by && woken_by->policy() == notify_policy::wake_one && !woken_by->empty())
    woken_by->wake_one_waiter();
}

// Try the queues; then register, re-check, park and unregister until a
// message, a close or the deadline.
template <class Set>
result<block_result> wait_loop(Set& set, evq_waiter& w, mono_ns deadline,
                               const wake_check* check) noexcept {
  block_result r;
  if (set.try_all(r)) return r;
  if (!set.prepare()) return errno_code(ENOMEM);
  for (;;) {
    w.reset();
    set.add();
    // seq_cst fence: the waiter half of the handshake (event_queue.cpp):
    // our registration is ordered before the mailbox re-check below (and
    // before the check's own re-check, whose waker wakes registered
    // waiters after it makes `moved` true).
    std::atomic_thread_fence(std::memory_order_seq_cst);
    bool got = set.try_all(r);
    const bool closed = !got && set.any_closed();
    const bool moved = !got && !closed && check && check->moved(check->ctx);
    if (!got && !closed && !moved) w.wait(deadline);
    set.remove();
    // A waker may have claimed us after we stopped waiting: then we count
    // as woken (and may owe a hand-off) all the same.
    event_queue* by = w.woken_by();
    if (!got) got = set.try_all(r);
    if (got) {
      pass_on(by);
      return r;
    }
    if (closed || set.any_closed()) {
      pass_on(by);
      return errno_code(ECANCELED);
    }
    if (moved || (check && by)) {
      pass_on(by);
      return errno_code(EAGAIN);  // the caller looks for itself
    }
    if (by) {
      by->note_spurious();
      if (monotonic_now() < deadline) continue;
    }
    if (monotonic_now() >= deadline) {
      set.each([](event_queue* q) { q->note_timeout(); });
      pass_on(by);
      return errno_code(ETIMEDOUT);
    }
  }
}

result<block_result> block_checked(std::span<event_queue* const> queues, mono_ns deadline,
                                   const wake_check* check) noexcept {
  const auto usable = [](const event_queue* q) { return q && !q->hooked(); };  // hooked: no waking
  evq_waiter w;
  if (queues.size() == 1) {
    if (!usable(queues[0])) return errno_code(EINVAL);
    one_queue set(queues[0], &w);
    return wait_loop(set, w, deadline, check);
  }
  if (queues.empty() || !std::all_of(queues.begin(), queues.end(), usable))
    return errno_code(EINVAL);
  many_queues set(queues, &w);
  return wait_loop(set, w, deadline, check);
}

}  // namespace

result<block_result> block_on(std::span<event_queue* const> queues, mono_ns deadline) noexcept {
  return block_checked(queues, deadline, nullptr);
}

result<block_result> block_on(std::span<event_queue* const> queues, mono_ns deadline,
                              const wake_check& check) noexcept {
  return block_checked(queues, deadline, &check);
}

}  // namespace ueq
