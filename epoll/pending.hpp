// epoll/pending.hpp (internal) — a set's pending signal: the one object
// through which everything that waits for a set learns that it has events.
//
// A set is pending while its CEQ holds a message or its ready list an
// entry. Who must learn of it, and how each one sleeps:
//   - the program's poll/select/epoll on the set's epoll fd, and a plain
//     thread's ppoll(): the hidden eventfd (fd()), readable while pending;
//   - a uthread in epoll_wait: block_on(uthread_queue()), a one-bit queue
//     posted each time the set becomes pending (and by a harvest that
//     leaves events);
//   - a plain thread asleep in the host poll (it leads the host poll for
//     its set): the tap service's wake channel;
//   - a plain thread in standby: the bell, an eventfd in sleep_fd()
//     (edge-triggered, so one edge wakes one sleeper);
//   - the sets that hold this one: a post of EPOLLIN into each one's CEQ
//     (listeners), which raises their own signal in turn.
// Raising wakes all of these once, on the flag's change only: a post into
// a set already pending does nothing more (the CEQ coalesces, and the
// flag's exchange finds it set).
//
// The handshake, in one place (modelled: tests/model/settle.pml for the
// eventfd and the uthread queue, standby.pml for the sleepers' counts):
//   raiser:  signaled := 1 (seq_cst exchange; if it was 1, done)
//            announce (writing), write the eventfd, post the uthread
//            queue, record (written), then read the sleepers' counts
//            (seq_cst) and wake one of them, then post the listeners.
//   sleeper: count itself (seq_cst increment), then read signaled
//            (seq_cst): set means pending already, do not sleep.
//   Both sides write, then read the other's word, in the single total
//   order of seq_cst operations: at least one sees the other, so a sleeper
//   either does not sleep or is woken.
//   settle:  (under the owner's lock, after a harvest) pending: raise, or
//            if already raised wake the next sleeper (leftovers). Not
//            pending: drain the eventfd, then clear signaled, then look at
//            the CEQ again and raise if a post came in between. The other
//            order would lose a post: a write between the clear and the
//            read is swallowed, and the flag stays set over an empty
//            eventfd. The drain is skipped when no write is announced or
//            recorded since the last one (the idle wait's shortcut).
//   hold:    (fork: the set handed to the kernel) raised for good, every
//            sleeper woken (the uthread queue closed), settle a no-op from
//            then on.
#pragma once

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <utility>
#include <vector>

#include "kcall.hpp"
#include "ueq/ceq/evq/event_queue.hpp"
#include "ueq/runtime/fd.hpp"
#include "ueq/runtime/lock.hpp"
#include "ueq/taps/tap.hpp"

namespace ueq::epoll_internal {

class pending_signal {
 public:
  pending_signal() = default;
  pending_signal(const pending_signal&) = delete;
  pending_signal& operator=(const pending_signal&) = delete;
  ~pending_signal() {
    if (evfd_ >= 0) close_own(evfd_);
    if (const int ep = sleep_ep_.load(std::memory_order_relaxed); ep >= 0) {
      close_own(ep);
      close_own(bell_);
    }
  }

  // Makes the eventfd (moved to a high number: the program's next fd is
  // the one Linux would give it) and the uthread queue. svc's host poll is
  // the one a leading sleeper sleeps in.
  status init(tap_service* svc) {
    svc_ = svc;
    auto wq = event_queue::create_bitmap(1);
    if (!wq) return status(wq.error().value());
    wakeq_ = std::move(*wq);
    evfd_ = hide_fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (evfd_ < 0) return status(errno);
    return {};
  }

  // The eventfd: readable while pending. The set's epoll fd watches it;
  // a set nested in another is probed through it.
  int fd() const noexcept { return evfd_; }
  // Where a uthread waiter parks (block_on): posted on every raise; closed
  // by hold() (block_on then returns ECANCELED).
  event_queue* uthread_queue() const noexcept { return wakeq_.get(); }

  // --- raising ---

  // The set became pending (the CEQ's post hook, on the posting thread).
  // seq_cst exchange: the raiser's half of the handshake; the first raise
  // after a clear does the rest.
  void raise() noexcept {
    if (signaled_.exchange(true, std::memory_order_seq_cst)) return;
    raised();
  }

  // Whether the set is signaled. seq_cst: read after a sleeper counts
  // itself (see sleeping), or by a waiter leaving without a harvest.
  bool raised_now() const noexcept { return signaled_.load(std::memory_order_seq_cst); }

  // After a harvest or a MOD, under the owner's lock (which serializes
  // settle() and hold()). `pending`: events remain (ready list or CEQ).
  // `leftover` (a harvest): a signal already raised wakes one more
  // sleeper, as Linux wakes the next waiter when a harvest leaves events,
  // and the uthread queue is posted again; a MOD passes false (its entry
  // is only queued to be probed), so it raises as a new post does, on the
  // flag's change only. `mailbox_empty()` is asked again after a clear.
  template <class MailboxEmpty>
  void settle(bool pending, bool leftover, MailboxEmpty&& mailbox_empty) noexcept {
    if (held_.load(std::memory_order_relaxed)) return;  // handed to the kernel: raised for good
    if (pending) {
      // A MOD of a set already raised: nothing to do, and no locked
      // exchange to find that out. Only settle() clears the flag, and it
      // runs under the owner's lock, which our caller holds: the flag stays
      // set until we return. relaxed: written by this lock's holders or
      // raise()'s exchange, which only sets it.
      if (!leftover && signaled_.load(std::memory_order_relaxed)) return;
      // seq_cst: the write wake_one() orders its loads after (a no-op
      // exchange when already set).
      const bool was = signaled_.exchange(true, std::memory_order_seq_cst);
      if (!was) raised();  // posts the uthread queue too
      // A MOD: as a post, nothing more than the raise on the flag's change.
      // While the flag is set, the uthread queue holds its bit, or the
      // uthread that took it has yet to harvest (a uthread that takes the
      // bit always harvests next, and its settle posts again or clears the
      // flag).
      if (!leftover) return;
      if (was) wake_one();
      // After a harvest: this harvester may have taken a stale bit, and a
      // post that found the flag set posted nothing new: post again.
      (void)wakeq_->post(0);
      return;
    }
    // The shortcut (no read, no exchange) needs more than a clear flag: a
    // raise that set the flag before an earlier settle()'s exchange may
    // write after that settle()'s read, leaving the eventfd readable with
    // nothing pending; the next settle() must drain it, or every wait
    // would return to an empty harvest until its timeout. So it is taken
    // only when no write is announced (writing_, read first) and none has
    // ended since the last drain (written_). acquire loads: pair with
    // raised()'s release decrement and store.
    if (quiet()) return;
    written_.store(false, std::memory_order_relaxed);  // before the read: a later write sets it
    std::uint64_t v;
    (void)sys_read(evfd_, &v, sizeof v);
    // relaxed: tests install the hook before the signal is used.
    if (auto* hook = test_hook_in_settle.load(std::memory_order_relaxed)) hook(*this);
    // acq_rel: a raise whose exchange came before ours in the flag's
    // modification order found it set and wrote nothing; our exchange reads
    // its release (or a later one), so its CEQ post is visible to the
    // re-check below, which raises again. A raise whose exchange comes
    // after ours finds the flag clear and writes after our read: the
    // eventfd stays readable.
    (void)signaled_.exchange(false, std::memory_order_acq_rel);
    if (!mailbox_empty()) raise();
  }

  // Nothing to drain and nothing raised: the flag is clear, no write is
  // announced (writing_, read first) and none has ended since the last
  // drain (written_). settle()'s shortcut; also a wait that will not sleep
  // (timeout 0) checks it, with the CEQ, to skip a harvest of an idle set:
  // the flag is cleared only by a settle() that found the ready list and
  // the CEQ empty, and whatever fills either one later raises it (a post
  // that makes a message; an ADD or MOD under the owner's lock), except
  // for a post that a settle found between its clear and its re-check, and
  // one that merged into a message already there: both are in the CEQ. With
  // the eventfd left readable (written_), the harvest's settle() must
  // drain it, or the program's poll on the epoll fd would spin. acquire
  // loads: pair with the raisers' seq_cst exchange and raised()'s release
  // decrement and store, and with settle()'s clear.
  bool quiet() const noexcept {
    return writing_.load(std::memory_order_acquire) == 0 &&
           !signaled_.load(std::memory_order_acquire) && !written_.load(std::memory_order_acquire);
  }

  // Wakes one sleeper: the one in the host poll if any (it harvests when
  // its poll returns), else none for the deputy (it sleeps on the eventfd,
  // readable since the caller raised), else one in standby (the bell).
  // seq_cst loads after the caller's seq_cst write of signaled: the
  // raiser's half. Not when this thread leads the host poll for this set,
  // dispatching: it harvests next anyway.
  void wake_one() noexcept {
    if (leading == this) return;
    if (counts_[host].load(std::memory_order_seq_cst) > 0) {
      svc_->wake();
    } else if (counts_[deputy].load(std::memory_order_seq_cst) > 0) {
      // The deputy wakes on the eventfd, readable from before this call
      // until the harvest that takes the events; one that is leaving
      // harvests next, or wakes another (leave()).
    } else if (counts_[standby].load(std::memory_order_seq_cst) > 0) {
      const std::uint64_t one = 1;
      (void)sys_write(bell_, &one, sizeof one);
    }
  }

  // A waiter leaving without a harvest (a signal, an error): an event left
  // pending, whose wake may have been its own, wakes another sleeper.
  void leave() noexcept {
    if (raised_now()) wake_one();
  }

  // The set was handed to the kernel (fork): raised for good and every
  // sleeper woken. ppoll sleepers wake on the eventfd; uthreads on their
  // queue, which is closed (every one parked there wakes, and every later
  // block_on on it returns ECANCELED at once: one bit would wake one of
  // them); one in the host poll on the wake channel; and all in standby:
  // the eventfd, now readable for good, joins their sleep fd level-
  // triggered, and the kernel wakes its sleepers one after another while
  // it stays ready. The seq_cst store stops those about to sleep. Under the
  // owner's lock.
  void hold() noexcept {
    held_.store(true, std::memory_order_relaxed);
    signaled_.store(true, std::memory_order_seq_cst);
    const std::uint64_t one = 1;
    (void)sys_write(evfd_, &one, sizeof one);
    wakeq_->close();
    svc_->wake();
    if (const int ep = sleep_ep_.load(std::memory_order_acquire); ep >= 0) {
      epoll_event all{};
      all.events = EPOLLIN;
      all.data.u32 = kBellTag;
      (void)k_epoll_ctl(ep, EPOLL_CTL_ADD, evfd_, &all);
    }
  }

  // --- listeners: the sets that hold this one ---
  // Each is posted {id, EPOLLIN} when this set becomes pending. The graph
  // is acyclic, so these locks are taken child before parent only.
  void listen(event_queue* q, std::uint32_t id) {
    lock_guard<spin_lock> g(listeners_lock_);
    listeners_.emplace_back(q, id);
  }
  void unlisten(event_queue* q, std::uint32_t id) {
    lock_guard<spin_lock> g(listeners_lock_);
    std::erase(listeners_, std::pair<event_queue*, std::uint32_t>(q, id));
  }

  // --- sleeping ---
  // The plain-thread sleeps, each counted from before it reads the signal
  // until it wakes (the sleeper's half of the handshake):
  enum kind : int {
    host,     // asleep in the host poll, leading it (woken: svc->wake())
    deputy,   // asleep in ppoll() on the eventfd and the host's fd
    standby,  // asleep in sleep_fd() (woken: the bell)
  };
  // Counts the caller as a sleeper of kind k while it lives. seq_cst
  // increment, then seq_cst load of signaled (pending()); seq_cst
  // decrement: a raise that reads the count after it is ordered with the
  // sleeper's later loads of signaled in the single total order.
  class sleeper {
   public:
    sleeper(pending_signal& s, kind k) noexcept : s_(s), k_(k) {
      s_.counts_[k_].fetch_add(1, std::memory_order_seq_cst);
    }
    ~sleeper() { s_.counts_[k_].fetch_sub(1, std::memory_order_seq_cst); }
    sleeper(const sleeper&) = delete;
    sleeper& operator=(const sleeper&) = delete;
    // Raised already: do not sleep.
    bool pending() const noexcept { return s_.raised_now(); }

   private:
    pending_signal& s_;
    const kind k_;
  };

  // While this thread leads the host poll for this set and dispatches, its
  // own raises wake no one (it harvests next).
  class leading_scope {
   public:
    explicit leading_scope(const pending_signal& s) noexcept { leading = &s; }
    ~leading_scope() { leading = nullptr; }
    leading_scope(const leading_scope&) = delete;
    leading_scope& operator=(const leading_scope&) = delete;
  };

  // The standby sleep fd: a hidden epoll fd watching, edge-triggered, the
  // bell (tag kBellTag) and the tap service's role hand-off fd (kHandoffTag,
  // EPOLLEXCLUSIVE: a hand-off wakes one sleeper among all sets). A kernel
  // epoll wait queues its sleepers exclusively, so one edge wakes one of
  // them. -1 until made.
  static constexpr std::uint32_t kBellTag = 0;
  static constexpr std::uint32_t kHandoffTag = 1;
  int sleep_fd() const noexcept {
    // acquire: pairs with the release store in make_sleep_fd (bell_ is set).
    return sleep_ep_.load(std::memory_order_acquire);
  }
  // Makes it, once, under the owner's lock; -1 if it cannot be (EMFILE,
  // ENOMEM), and a later call tries again.
  int make_sleep_fd() {
    int ep = sleep_ep_.load(std::memory_order_relaxed);
    if (ep >= 0) return ep;
    const int hand = svc_->role_handoff_fd();
    if (hand < 0) return -1;
    const int b = hide_fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    ep = b < 0 ? -1 : hide_fd(k_epoll_create1(EPOLL_CLOEXEC));
    epoll_event w{};
    w.events = EPOLLIN | EPOLLET;
    w.data.u32 = kBellTag;
    bool ok = ep >= 0 && k_epoll_ctl(ep, EPOLL_CTL_ADD, b, &w) == 0;
    w.events = EPOLLIN | EPOLLET | EPOLLEXCLUSIVE;
    w.data.u32 = kHandoffTag;
    ok = ok && k_epoll_ctl(ep, EPOLL_CTL_ADD, hand, &w) == 0;
    if (!ok) {
      if (ep >= 0) close_own(ep);
      if (b >= 0) close_own(b);
      return -1;
    }
    bell_ = b;
    sleep_ep_.store(ep, std::memory_order_release);
    return ep;
  }

  // Test-only: called inside settle(), between its drain of the eventfd and
  // its clear of the flag, so a test can put a raise exactly there. Never
  // set outside tests.
  static inline std::atomic<void (*)(pending_signal&)> test_hook_in_settle{nullptr};

 private:
  // The rest of a raise, by the caller whose exchange set signaled.
  void raised() noexcept {
    // The write is announced before it is made (writing_) and recorded
    // after it (written_), for settle()'s shortcut. seq_cst increment:
    // before the write in every thread's view, so a waiter that the write
    // woke sees it.
    writing_.fetch_add(1, std::memory_order_seq_cst);
    const std::uint64_t one = 1;
    (void)sys_write(evfd_, &one, sizeof one);
    (void)wakeq_->post(0);
    written_.store(true, std::memory_order_release);
    // release: a settle() that reads writing_ == 0 (acquire) after this
    // decrement sees written_ set.
    writing_.fetch_sub(1, std::memory_order_release);
    wake_one();
    lock_guard<spin_lock> g(listeners_lock_);
    for (auto& [q, id] : listeners_)
      (void)q->post(id, EPOLLIN);
  }

  // The set whose host poll this thread leads (leading_scope).
  static inline thread_local const pending_signal* leading = nullptr;

  tap_service* svc_ = nullptr;
  event_queue_ptr wakeq_;
  int evfd_ = -1;
  std::atomic<bool> signaled_{false};  // the eventfd has been made readable
  std::atomic<int> writing_{0};        // raises inside their write
  std::atomic<bool> written_{false};   // a write has ended since the last drain
  std::atomic<bool> held_{false};      // hold(): raised for good (under the owner's lock)
  std::atomic<int> counts_[3] = {};    // sleepers, by kind
  std::atomic<int> sleep_ep_{-1};
  int bell_ = -1;  // written before sleep_ep_ is published (release)
  spin_lock listeners_lock_{lock_level::epoll_parents};
  std::vector<std::pair<event_queue*, std::uint32_t>> listeners_ ABSL_GUARDED_BY(listeners_lock_);
};

}  // namespace ueq::epoll_internal
