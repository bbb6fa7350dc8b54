// uthread/default_sched.hpp — the default 2LS: per-vcore FIFO run queues, stealing, and idle vcores
// that park with a check-sleep-check protocol.
//
// Shared state and who writes it:
//   vq.local         the owner vcore's private FIFO: only the owning vcore
//                    thread (its scheduler, or a uthread running on it)
//                    touches it, so it needs no lock. Work the vcore itself
//                    spawns, yields or finds in its idle poll goes here.
//   vq.runnext       owner only, like local: the uthread the vcore itself
//                    woke last (not a yield, not a new one). It runs
//                    next, while what it touches is still in the cache, up
//                    to kRunnextStreak times in a row; then it queues at
//                    the back of the local FIFO like the rest.
//   vq.shared        the shared run queue, under vq.lock: other vcores and
//                    plain threads push here; the owner pops; idle vcores
//                    steal from the head.
//   vq.n             its length, written under vq.lock, read without it as a
//                    hint and in the sleep handshake below.
//
// Local work (the FIFO and runnext) is invisible to thieves, so an owner
// with more than one uthread of it moves half to its shared queue when it
// sees a sleeping vcore (nsleeping_ > 0, checked when it makes a uthread
// runnable and at every pick) and wakes one. A vcore that falls asleep
// just after such a check sees that surplus at the owner's next pick or
// wake, not before: a uthread that runs long without blocking delays its
// neighbours' sharing, as it delays them anyway. Local work never
// strands: the owner is awake whenever its local queue is non-empty (it
// only idles after finding it empty, and work it makes runnable from
// inside its idle park, when its own host poll dispatches an event, ends
// that park), so the sleep handshake needs to cover only the shared queues.
//   vq.sleeping      written by the owning vcore around its park.
//   vq.idle_parker   parked on by the owning vcore; unparked by anyone who
//                    queues work it must see, and by stop().
//   nsleeping_       how many vcores are sleeping (a hint to skip scanning;
//                    also the sleeper's side of the timer handshake: a
//                    vcore that arms an earlier timer fences, then wakes a
//                    sleeper if it sees one).
//   stop_            set once by stop().
//
// The sleep handshake (a store-then-load on each side, hence seq_cst):
//   waker:   push u (vq.n += 1 under the lock); fence; load sleeping.
//   sleeper: reset its parker; store sleeping = true; fence; load every n.
// Either the sleeper sees the new work and does not park, or the waker sees
// `sleeping` and unparks it (the parker keeps the permit if the unpark lands
// before the park). No wakeup is lost.
//
// Private to this module. The class is final and visible to the core
// (uthread.cpp), so the switch path calls it directly, without the virtual
// dispatch a 2LS from elsewhere goes through.
#pragma once

#include <memory>

#include "ueq/runtime/backoff.hpp"
#include "ueq/runtime/lock.hpp"
#include "ueq/runtime/parker.hpp"
#include "ueq/runtime/vcore.hpp"
#include "ueq/uthread/sched.hpp"
#include "uthread_impl.hpp"

namespace ueq::detail {

inline sched_link& lnk(uthread* u) noexcept {
  return u->link;
}

class default_scheduler final : public scheduler_2ls {
 public:
  // How many picks in a row runnext may win before the FIFO gets a turn.
  static constexpr unsigned kRunnextStreak = 8;

  void init(unsigned nvcores) override {
    n_ = nvcores ? nvcores : 1;
    q_ = std::make_unique<vq[]>(n_);
  }

  void thread_runnable(uthread* u) noexcept override {
    const unsigned self = this_vcore();
    if (self < n_) {
      vq& q = q_[self];
      // We are inside our own idle(): the host poll it runs dispatched an
      // event that made u runnable. End the park so the loop runs u (the
      // unpark of our own polling parker only sets its permit). relaxed:
      // `sleeping` is written by this thread alone.
      if (q.sleeping.load(std::memory_order_relaxed)) {
        push_local(q, u);
        q.idle_parker.unpark();
        return;
      }
      // Never ran (u->vc is written by whoever resumes it, before we can
      // learn of it through the hand-off that made it runnable): new
      // uthreads start in spawn order.
      if (!u->vc) {
        push_local(q, u);
      } else {
        if (q.runnext) push_local(q, q.runnext);
        q.runnext = u;
      }
      // We are awake and will run it, but maybe not soon (the running
      // uthread may keep going): with a vcore asleep, hand half over.
      // relaxed: a hint; see share_half for the handshake.
      if (surplus(q) && nsleeping_.load(std::memory_order_relaxed) > 0) share_half(q);
      return;
    }
    const unsigned target = lnk(u).vcore % n_;
    push(q_[target], u);
    // seq_cst fence: the waker half of the sleep handshake.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    vq& t = q_[target];
    if (t.sleeping.load(std::memory_order_relaxed)) {
      t.idle_parker.unpark();
      return;
    }
    // The target is awake but busy: let a sleeping vcore steal it, so it
    // runs promptly.
    if (nsleeping_.load(std::memory_order_relaxed) > 0) wake_one_sleeper();
  }

  // Called on the vcore u ran on, which link.vcore names (run_one and the
  // direct switch set it): its local queue is this thread's.
  void thread_paused(uthread* u) noexcept override { push_local(q_[lnk(u).vcore], u); }

  void thread_has_blocked(uthread*, block_reason) noexcept override {}
  void thread_exited(uthread*) noexcept override {}

  uthread* pick_next(unsigned v) noexcept override {
    vq& q = q_[v];
    // relaxed: a hint; a sleeper that we miss here is seen at the next pick.
    if (surplus(q) && nsleeping_.load(std::memory_order_relaxed) > 0) share_half(q);
    // The uthread this vcore woke last, unless it has had its streak.
    if (uthread* u = q.runnext) {
      q.runnext = nullptr;
      if (q.runnext_streak < kRunnextStreak) {
        ++q.runnext_streak;
        return u;
      }
      push_local(q, u);  // it had its turns: to the back of the line
    }
    q.runnext_streak = 0;
    // Alternate between the shared and the local queue when both have work,
    // so neither starves the other.
    const bool shared_first = (++q.ticks & 1) != 0;
    if (shared_first)
      if (uthread* u = pop(q)) return u;
    if (uthread* u = pop_local(q)) return u;
    if (uthread* u = pop(q)) return u;
    for (unsigned j = 1; j < n_; ++j)
      if (uthread* u = pop(q_[(v + j) % n_])) return u;
    return nullptr;
  }

  // A yield's pick on vcore v by the running uthread u, when the answer is
  // plainly the head of the local FIFO: runnext and the shared queue are
  // empty, and there is no surplus a sleeping vcore should get (pick_next
  // would return the same uthread). Then u joins the back of the FIFO
  // here, before the switch, instead of in thread_paused after it: the
  // FIFO is this thread's alone, and u's context is saved before the next
  // uthread runs. Null when the general path (pick_next) must decide.
  uthread* yield_pick(unsigned v, uthread* u) noexcept {
    vq& q = q_[v];
    // relaxed: hints, as in pick_next; work we miss is seen at the next pick.
    if (q.runnext || q.local_n == 0 || q.n.load(std::memory_order_relaxed) != 0) return nullptr;
    if (q.local_n > 1 && nsleeping_.load(std::memory_order_relaxed) > 0) return nullptr;
    q.runnext_streak = 0;
    ++q.ticks;
    uthread* next = pop_local(q);
    push_local(q, u);
    return next;
  }

  void idle(unsigned v, const timer_service& timers) noexcept override {
    vq& q = q_[v];
    q.idle_parker.reset();
    // seq_cst: the sleeper half of the handshake (store, fence, loads).
    q.sleeping.store(true, std::memory_order_seq_cst);
    nsleeping_.fetch_add(1, std::memory_order_seq_cst);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    bool work = stop_.load(std::memory_order_relaxed);
    for (unsigned j = 0; !work && j < n_; ++j)
      work = q_[j].n.load(std::memory_order_relaxed) != 0;
    // Read after the fence: a timer armed earlier than this either is seen
    // here, or its arming vcore sees us sleeping (timer_armed) and wakes us.
    if (!work) q.idle_parker.park(timers.next_deadline());
    // relaxed: a stale `true` only costs a waker a spare unpark.
    q.sleeping.store(false, std::memory_order_relaxed);
    nsleeping_.fetch_sub(1, std::memory_order_relaxed);
  }

  void timer_armed() noexcept override {
    // seq_cst fence: the arm (earliest_ store) before, the sleepers after;
    // pairs with the fence in idle().
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (nsleeping_.load(std::memory_order_relaxed) > 0) wake_one_sleeper();
  }

  void stop() noexcept override {
    stop_.store(true, std::memory_order_seq_cst);
    for (unsigned j = 0; j < n_; ++j)
      q_[j].idle_parker.unpark();
  }

 private:
  // The run queues, linked through each uthread's sched_link.
  struct run_link {
    static ilist_link<uthread>& link(uthread* u) noexcept { return lnk(u).q; }
  };
  using run_queue = basic_ilist<uthread, run_link>;
  struct alignas(64) vq {
    // Owner only.
    uthread* runnext = nullptr;
    unsigned runnext_streak = 0;
    run_queue local;
    std::size_t local_n = 0;
    unsigned ticks = 0;
    // Shared.
    alignas(64) spin_lock lock;
    run_queue shared;  // guarded by lock
    std::atomic<std::size_t> n{0};
    std::atomic<bool> sleeping{false};
    parker idle_parker;
  };

  // Appends u to the shared queue; q.lock is held.
  static void push_locked(vq& q, uthread* u) noexcept {
    q.shared.push_back(u);
    // relaxed: under the lock; the sleep handshake's fences (after the
    // caller's push) order it for sleepers.
    q.n.store(q.n.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }

  static void push(vq& q, uthread* u) noexcept {
    lock_guard<spin_lock> g(q.lock);
    push_locked(q, u);
  }

  static void push_local(vq& q, uthread* u) noexcept {
    q.local.push_back(u);
    ++q.local_n;
  }

  static uthread* pop_local(vq& q) noexcept {
    uthread* u = q.local.pop_front();
    if (u) --q.local_n;
    return u;
  }

  // More than one uthread waits on this vcore's private queues.
  static bool surplus(const vq& q) noexcept { return q.local_n + (q.runnext ? 1 : 0) > 1; }

  // Moves the older half of the vcore's private work to the shared queue,
  // in order, and wakes a sleeper to steal it. runnext joins the local FIFO
  // first: work for an idle vcore beats running it next here. Out of line:
  // pick_next's fast path stays small.
  __attribute__((noinline, cold)) void share_half(vq& q) noexcept {
    if (q.runnext) {
      push_local(q, q.runnext);
      q.runnext = nullptr;
    }
    std::size_t k = q.local_n / 2;
    {
      lock_guard<spin_lock> g(q.lock);
      for (; k > 0; --k)
        push_locked(q, pop_local(q));
    }
    // seq_cst fence: the waker half of the sleep handshake.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    wake_one_sleeper();
  }

  static uthread* pop(vq& q) noexcept {
    // relaxed: a hint; the lock orders the real check.
    if (q.n.load(std::memory_order_relaxed) == 0) return nullptr;
    lock_guard<spin_lock> g(q.lock);
    uthread* u = q.shared.pop_front();
    if (!u) return nullptr;
    q.n.store(q.n.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
    return u;
  }

  void wake_one_sleeper() noexcept {
    for (unsigned j = 0; j < n_; ++j)
      if (q_[j].sleeping.load(std::memory_order_relaxed)) {
        q_[j].idle_parker.unpark();
        return;
      }
  }

  unsigned n_ = 1;
  std::unique_ptr<vq[]> q_;
  std::atomic<unsigned> nsleeping_{0};
  std::atomic<bool> stop_{false};
};

}  // namespace ueq::detail
