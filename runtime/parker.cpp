// The parker and the leader/follower protocol for polling the host.
//
// Process-wide state (owned by the process, never freed):
//   g_poller      the installed host poller or null (atomic pointer).
//   g_leader      true while some parked thread is inside g_poller->poll().
//                 Taken with an exchange (try-lock), released by the leader.
//   g_followers   intrusive list of parked threads sleeping on their futex
//                 while a host poller is installed, guarded by g_list_lock;
//                 g_nfollowers is its length, written under the lock.
//   g_poller_users  how many unpark() calls are between loading g_poller and
//                 returning from its wake(); removal waits for zero.
//
//   g_park_hook   the installed uthread park hook or null (atomic pointer).
//
// Per parker: state_ (kIdle / kNotified / kSleeping / kPolling).
//
// Four store-then-load handshakes, hence the seq_cst operations:
//  (1) waker vs waiter (the state word): unpark() exchanges kNotified in and
//      looks at what it replaced; the waiter moves kIdle -> kSleeping or
//      kPolling with a CAS that fails if kNotified is already there. A single
//      word, so its modification order alone decides: no fence needed.
//  (2) leaving leader vs new follower: the follower links itself, moves to
//      kSleeping, fences, then checks g_leader; the leader clears g_leader,
//      fences, then looks for a sleeping follower. Whichever is second sees
//      the other: either the follower sees no leader (and tries to lead), or
//      the leader sees the follower (and offers it the role).
//  (3) waker vs poller removal: a waker of a polling leader counts itself in
//      g_poller_users, then loads g_poller; set_host_poller(nullptr) swaps
//      g_poller out, then reads g_poller_users. Whichever is second sees the
//      other: the waker sees null (and touches nothing), or the remover sees
//      the waker and waits until it has left wake(). So the poller object
//      may be freed as soon as set_host_poller(nullptr) returns.
//  (4) poller installer vs new follower: the follower links itself, moves to
//      kSleeping, fences, then checks g_poller; set_host_poller() stores the
//      poller, fences, then looks for a sleeping follower. Either the
//      follower sees the poller (and tries to lead) or the installer sees the
//      follower (and offers it the role). Every parker that may poll sleeps
//      as a follower for this reason, installed poller or not.
#include "ueq/runtime/parker.hpp"
#include "ueq/runtime/fork.hpp"
#include "ueq/runtime/lock.hpp"

#include <linux/futex.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <sched.h>

#include <cerrno>

#include "ueq/runtime/backoff.hpp"

namespace ueq {

struct parker_access {
  static constexpr std::uint32_t kIdle = parker::kIdle;
  static constexpr std::uint32_t kSleeping = parker::kSleeping;
  static std::atomic<std::uint32_t>& state(parker& p) { return p.state_; }
  using follower_list = ilist<parker, &parker::link_>;
};

namespace {

std::atomic<const host_poller*> g_poller{nullptr};
// parkers_poll_host(): set by the first may-poll parker, never cleared.
std::atomic<bool> g_parkers_poll_host{false};
std::atomic<const park_hook*> g_park_hook{nullptr};
std::atomic<bool> g_leader{false};
spin_lock g_list_lock{lock_level::parker};
parker_access::follower_list g_followers ABSL_GUARDED_BY(g_list_lock);
std::atomic<std::size_t> g_nfollowers{0};
std::atomic<std::uint32_t> g_poller_users{0};
std::atomic<const detail::parker_test_hooks*> g_test_hooks{nullptr};
// The parker this thread is polling for, so that a dispatch that unparks it
// (its own event) skips the pointless wake of the poll it is already in.
thread_local parker* tl_polling = nullptr;

// Before it sleeps, a parker spins for at most this long: a fraction of
// what a cross-CPU futex sleep and wake cost on a VM (~25 us a leg on the
// 2-vCPU machine of docs/benchmarks.md), and longer than a wake that is
// already on its way takes to land (a cross-CPU round trip of stores is
// under 1 us there; 2 us let a third of round trips fall asleep). Budgeted
// in time, not in PAUSEs, whose cost ranges from a few ns to ~140 ns
// between CPUs.
constexpr mono_ns kSpinBudgetNs = 5'000;
// How many PAUSEs between two looks at the clock.
constexpr int kPausesPerCheck = 4;

void futex_wake(std::atomic<std::uint32_t>* w) noexcept {
  syscall(SYS_futex, w, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
}

// Sleeps while *w == expect, until the absolute deadline (CLOCK_MONOTONIC).
void futex_wait(std::atomic<std::uint32_t>* w, std::uint32_t expect, mono_ns deadline) noexcept {
  timespec ts, *tsp = nullptr;
  if (deadline != kNoDeadline) {
    ts = to_timespec(deadline);
    tsp = &ts;
  }
  syscall(SYS_futex, w, FUTEX_WAIT_BITSET_PRIVATE, expect, tsp, nullptr, FUTEX_BITSET_MATCH_ANY);
}

bool try_lead() noexcept {
  // acquire: the previous leader's poll happened before ours.
  return !g_leader.load(std::memory_order_relaxed) &&
         !g_leader.exchange(true, std::memory_order_acquire);
}

void link_follower(parker* p) noexcept {
  lock_guard<spin_lock> g(g_list_lock);
  g_followers.push_front(p);
  g_nfollowers.store(g_nfollowers.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

void unlink_follower(parker* p) noexcept {
  lock_guard<spin_lock> g(g_list_lock);
  g_followers.remove(p);
  g_nfollowers.store(g_nfollowers.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
}

// Wakes one sleeping follower so it tries to become the leader. Called by a
// leaving leader, and by a follower that leaves while no one leads.
void offer_leadership() noexcept {
  if (g_nfollowers.load(std::memory_order_relaxed) == 0) return;
  lock_guard<spin_lock> g(g_list_lock);
  for (parker* f = g_followers.front(); f; f = g_followers.next(f)) {
    std::uint32_t s = parker_access::kSleeping;
    // acq_rel: the follower reads kIdle after its futex returns and loops.
    if (parker_access::state(*f).compare_exchange_strong(
            s, parker_access::kIdle, std::memory_order_acq_rel, std::memory_order_relaxed)) {
      futex_wake(&parker_access::state(*f));
      return;
    }
  }
}

// fork(): only the forking thread lives on in the child. A leader or
// follower that was another thread is gone, and so is any host poller
// (the taps layer installs its child's own). Start from scratch (the list
// lock may be held by a thread that is gone: no analysis).
void reset_after_fork_in_child() noexcept ABSL_NO_THREAD_SAFETY_ANALYSIS {
  g_poller.store(nullptr, std::memory_order_relaxed);
  g_leader.store(false, std::memory_order_relaxed);
  g_list_lock.unlock();
  g_followers.clear_unsafe();
  g_nfollowers.store(0, std::memory_order_relaxed);
  g_poller_users.store(0, std::memory_order_relaxed);
  tl_polling = nullptr;
}
[[maybe_unused]] const bool g_fork_registered =
    on_fork(fork_layer::runtime, {.child = &reset_after_fork_in_child});

// Breaks the host poll of a polling leader: handshake (3).
void wake_host_poller() noexcept {
  // seq_cst: handshake (3). The increment must be ordered before the load of
  // g_poller in the single total order, against set_host_poller's exchange
  // of g_poller and its load of g_poller_users.
  g_poller_users.fetch_add(1, std::memory_order_seq_cst);
  if (const host_poller* hp = g_poller.load(std::memory_order_seq_cst)) {
    // relaxed: tests install the hooks before the threads they observe start.
    if (const auto* t = g_test_hooks.load(std::memory_order_relaxed); t && t->in_poller_use)
      t->in_poller_use();
    hp->wake(hp->ctx);
  }
  // release: our use of *hp happens before the remover's acquire load that
  // reads zero here, and so before the poller is freed.
  g_poller_users.fetch_sub(1, std::memory_order_release);
}

}  // namespace

bool parker::unpark() noexcept {
  // relaxed: a hint for the waiter's next spin decision (see park()).
  // sched_getcpu reads glibc's rseq area (glibc >= 2.35) or the vDSO: no
  // system call. A poll unparking its own parker is no waker to predict,
  // and a blocked uthread never spins (relaxed peek: a stale value only
  // costs or saves one hint).
  if (tl_polling != this && state_.load(std::memory_order_relaxed) != kBlocked)
    waker_cpu_.store(::sched_getcpu(), std::memory_order_relaxed);
  // acq_rel: release publishes whatever the waker did before (the event) to
  // the waiter, which reads kNotified with acquire.
  const std::uint32_t prev = state_.exchange(kNotified, std::memory_order_acq_rel);
  if (prev == kSleeping) {
    futex_wake(&state_);
  } else if (prev == kBlocked) {
    // We replaced kBlocked, so we are the one party that makes the uthread
    // runnable. blocked_ was written before the waiter's release CAS to
    // kBlocked, which our acq_rel exchange read: we see it. Read it before
    // wake(): once runnable, the waiter may return and reuse the parker.
    void* who = blocked_;
    // acquire: pairs with the release in set_park_hook.
    g_park_hook.load(std::memory_order_acquire)->wake(who);
  } else if (prev == kPolling && tl_polling != this) {
    wake_host_poller();
  }
  return prev != kNotified;
}

bool parker::park(mono_ns deadline) noexcept {
  // acquire: pairs with set_park_hook's release, so the hook's functions
  // and whatever they use are visible.
  if (const park_hook* h = g_park_hook.load(std::memory_order_acquire))
    if (const park_hook::result r = h->park(*this, deadline); r != park_hook::kNotUthread)
      return r == park_hook::kWoken;
  if (state_.load(std::memory_order_acquire) == kNotified) return true;
  // Spin only if the waker can be running meanwhile: not if it last ran on
  // the CPU we are on (it would need this CPU; think of two threads pinned
  // side by side, or a single-CPU machine). relaxed: a hint.
  const int waker_cpu = waker_cpu_.load(std::memory_order_relaxed);
  if (waker_cpu < 0 || waker_cpu != ::sched_getcpu()) {
    const mono_ns start = monotonic_now();
    mono_ns now = start;
    while (now - start < kSpinBudgetNs && (deadline == kNoDeadline || now < deadline)) {
      for (int i = 0; i < kPausesPerCheck; ++i) {
        cpu_relax();
        if (state_.load(std::memory_order_acquire) == kNotified) return true;
      }
      now = monotonic_now();
    }
  }
  bool followed = false;  // slept as a follower at least once
  // acq_rel exchange, once per process: the first may-poll parker wakes a
  // host poll that another caller may be asleep in (parkers_poll_host()).
  if (may_poll_host_ && !g_parkers_poll_host.load(std::memory_order_relaxed) &&
      !g_parkers_poll_host.exchange(true, std::memory_order_acq_rel))
    wake_host_poller();
  for (;;) {
    if (state_.load(std::memory_order_acquire) == kNotified) return leave(followed, true);
    if (deadline != kNoDeadline && monotonic_now() >= deadline) return leave(followed, woken());
    const host_poller* hp = may_poll_host_ ? g_poller.load(std::memory_order_acquire) : nullptr;
    if (hp && try_lead()) {
      poll_host(deadline);
      continue;
    }
    // Every parker that may poll sleeps as a follower, poller or not: a
    // poller installed while it sleeps offers it the role.
    sleep(deadline, may_poll_host_);
    followed = followed || may_poll_host_;
  }
}

bool parker::leave(bool followed, bool result) noexcept {
  // A follower may have been offered the role (or seen no leader) and be
  // returning instead of looping to lead: pass it on, so the host keeps
  // being polled while anyone sleeps. Decided here, where park() returns,
  // not in sleep(): an unpark can land between the two
  // (tests/model/leader.pml -DTIMEOUT).
  // Without a poller nobody needs to lead (an installer offers the role).
  if (followed && !g_leader.load(std::memory_order_acquire) &&
      g_poller.load(std::memory_order_acquire))
    offer_leadership();
  return result;
}

void parker::poll_host(mono_ns deadline) noexcept {
  std::uint32_t s = kIdle;
  // acq_rel: fails (and we see kNotified) if a waker got there first.
  if (state_.compare_exchange_strong(s, kPolling, std::memory_order_acq_rel,
                                     std::memory_order_acquire)) {
    tl_polling = this;
    for (;;) {
      const host_poller* hp = g_poller.load(std::memory_order_acquire);
      if (!hp) break;
      hp->poll(hp->ctx, deadline);
      if (state_.load(std::memory_order_acquire) == kNotified) break;
      if (deadline != kNoDeadline && monotonic_now() >= deadline) break;
    }
    tl_polling = nullptr;
    s = kPolling;
    state_.compare_exchange_strong(s, kIdle, std::memory_order_acq_rel, std::memory_order_acquire);
  }
  // release: our poll happened before the next leader's.
  g_leader.store(false, std::memory_order_release);
  // seq_cst fence: handshake (2) — clear g_leader, then look for followers.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  offer_leadership();
}

void parker::sleep(mono_ns deadline, bool follower) noexcept {
  if (follower) link_follower(this);
  std::uint32_t s = kIdle;
  if (state_.compare_exchange_strong(s, kSleeping, std::memory_order_acq_rel,
                                     std::memory_order_acquire)) {
    bool sleep_now = true;
    if (follower) {
      // seq_cst fence: handshakes (2) and (4) — be visible as a sleeping
      // follower, then check for a leader and a poller. A poller and no
      // leader: try to lead instead of sleeping.
      std::atomic_thread_fence(std::memory_order_seq_cst);
      if (!g_leader.load(std::memory_order_relaxed) && g_poller.load(std::memory_order_relaxed))
        sleep_now = false;
    }
    if (sleep_now) futex_wait(&state_, kSleeping, deadline);
    // Back to kIdle unless a waker (kNotified) or a leader's offer (which
    // already moved us to kIdle) got there first.
    s = kSleeping;
    state_.compare_exchange_strong(s, kIdle, std::memory_order_acq_rel, std::memory_order_acquire);
  }
  if (follower) unlink_follower(this);
}

bool parker::begin_block(void* who) noexcept {
  blocked_ = who;
  std::uint32_t s = kIdle;
  // release: publishes blocked_ to the unpark() that replaces kBlocked.
  // Fails, seeing kNotified, if an unpark came first: the hook resumes the
  // waiter itself. One word decides, so no fence is needed.
  return state_.compare_exchange_strong(s, kBlocked, std::memory_order_acq_rel,
                                        std::memory_order_acquire);
}

bool parker::timeout_block() noexcept {
  // acquire: we may go on to make the waiter runnable; see its writes.
  std::uint32_t s = state_.load(std::memory_order_acquire);
  for (;;) {
    if (s == kBlocked) {
      // acq_rel: competes with unpark()'s exchange on the same word;
      // whichever replaces kBlocked first makes the waiter runnable.
      if (state_.compare_exchange_weak(s, kIdle, std::memory_order_acq_rel,
                                       std::memory_order_acquire))
        return true;
    } else if (s == kIdle) {
      // The waiter has not blocked yet (its post-switch callback is still to
      // run): leave a mark so its begin_block fails and it resumes itself.
      if (state_.compare_exchange_weak(s, kTimedOut, std::memory_order_acq_rel,
                                       std::memory_order_acquire))
        return false;
    } else {
      return false;  // kNotified (or already kTimedOut): nothing to do
    }
  }
}

void parker::end_block() noexcept {
  std::uint32_t s = kTimedOut;
  // relaxed: only the waiter itself runs this, after it resumed; an unpark
  // that replaced kTimedOut with kNotified wins and stays. The plain load
  // first skips the locked instruction in the common case (no timeout mark).
  if (state_.load(std::memory_order_relaxed) == kTimedOut)
    state_.compare_exchange_strong(s, kIdle, std::memory_order_relaxed, std::memory_order_relaxed);
}

bool parkers_poll_host() noexcept {
  return g_parkers_poll_host.load(std::memory_order_acquire);
}

bool parks_as_uthread() noexcept {
  // acquire: pairs with set_park_hook's release (the hook's functions).
  const park_hook* h = g_park_hook.load(std::memory_order_acquire);
  return h && h->active();
}

void set_park_hook(const park_hook* h) noexcept {
  // release: the hook object is fully built before anyone can use it.
  g_park_hook.store(h, std::memory_order_release);
}

void set_host_poller(const host_poller* p) noexcept {
  // seq_cst: handshake (3), against wake_host_poller().
  const host_poller* old = g_poller.exchange(p, std::memory_order_seq_cst);
  if (p) {
    // seq_cst fence: handshake (4) — install, then look for followers
    // asleep without a leader (no poller until now) and wake one to lead.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    offer_leadership();
    return;
  }
  if (!old) return;
  // Removal: break the running poll and wait until its leader has left, and
  // until every waker that loaded the old poller has left its wake().
  backoff b;
  while (g_leader.load(std::memory_order_acquire)) {
    old->wake(old->ctx);
    b.pause();
  }
  // seq_cst on the first load: handshake (3); acquire is what the later ones
  // need (pairs with the waker's release decrement).
  if (g_poller_users.load(std::memory_order_seq_cst) == 0) return;
  while (g_poller_users.load(std::memory_order_acquire) != 0) {
    // relaxed: see wake_host_poller().
    if (const auto* t = g_test_hooks.load(std::memory_order_relaxed); t && t->removal_waits)
      t->removal_waits();
    b.pause();
  }
}

namespace detail {
void set_parker_test_hooks(const parker_test_hooks* h) noexcept {
  g_test_hooks.store(h, std::memory_order_relaxed);
}
}  // namespace detail

}  // namespace ueq
