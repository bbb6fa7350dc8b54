// ueq/runtime/parker.hpp — block a thread until another says "go", and let a
// blocked thread poll the host kernel meanwhile.
//
// What it is for: the one place where a waiter sleeps. A `parker` holds a
// wake flag for one waiter. park() returns once unpark() has been called
// (before or during the park) or the deadline passes; the flag stays set
// until reset(), so exactly one unpark() per round reports "I woke it"
// (wake-one accounting depends on that).
//
// How a plain thread waits: it spins for up to ~5 us (a cross-CPU futex
// wake costs tens of microseconds on a VM, an observed store a fraction of
// one), but only when its waker can be running meanwhile: unpark() notes
// the CPU it ran on, and a waiter now on that same CPU does not spin (its
// waker would need the CPU it is burning). Then,
// if a host poller is installed (set_host_poller: taps/ installs one) and no
// other thread is polling, it becomes the poller and waits inside the host
// kernel's poll (events it finds are dispatched, and may wake it); otherwise
// it sleeps on a futex. When the polling thread leaves, it hands the role to
// a sleeping waiter, so while anyone waits, someone polls.
//
// How a uthread waits: when a park hook is installed (set_park_hook; uthread/
// installs one), park() offers the parker to the hook, which declines for a
// caller that is not a uthread; for a uthread it switches away (to the next
// uthread, or to the scheduler) and, in the callback that runs after the
// uthread's context is saved, moves the state kIdle -> kBlocked
// (begin_block). unpark() that replaces kBlocked asks the hook to make the
// uthread runnable; a timeout does the same after winning timeout_block(). Both
// go through the one state word, so exactly one of them makes it runnable.
//
// Thread-safety: park() and reset() by the owning waiter only; unpark() from
// any thread, any number of times.
//
// Usage:
//   ueq::parker p;                       // owned by the waiter
//   publish(&p); fence; if (!ready()) p.park(deadline);
//   // elsewhere: make_ready(); p.unpark();
#pragma once

#include <atomic>
#include <cstdint>

#include "ueq/runtime/clock.hpp"
#include "ueq/runtime/ilist.hpp"

namespace ueq {

class parker {
 public:
  // A parker that never polls the host: its plain-thread waiter only spins
  // and sleeps on its futex. For a thread whose wait is better left to
  // others' polling, such as ueq::run()'s caller while the vcores (which
  // poll the host when idle) run the program.
  struct no_host_poll_t {};
  static constexpr no_host_poll_t no_host_poll{};
  parker() = default;
  explicit parker(no_host_poll_t) noexcept : may_poll_host_(false) {}
  parker(const parker&) = delete;
  parker& operator=(const parker&) = delete;

  // Waits until unparked (true) or the deadline passes (false). An unpark
  // that races with the timeout may land just after park() returned false:
  // woken() tells.
  bool park(mono_ns deadline = kNoDeadline) noexcept;
  // Sets the wake flag and wakes the waiter. True if this call set it (it
  // was not already set this round).
  bool unpark() noexcept;
  // Starts a new round: clears the wake flag. Only while nobody can unpark
  // for the previous round's reasons, or when a stray wake is harmless.
  void reset() noexcept { state_.store(kIdle, std::memory_order_relaxed); }
  bool woken() const noexcept { return state_.load(std::memory_order_acquire) == kNotified; }

  // For park hooks only. begin_block: records `who` and moves kIdle ->
  // kBlocked; false if an unpark or a timeout got there first (then the hook
  // resumes the waiter itself). timeout_block: the waiter's deadline passed;
  // moves kBlocked -> kIdle and returns true (the caller must then make `who`
  // runnable), or kIdle -> kTimedOut (so a begin_block still to come fails)
  // and returns false, or does nothing if an unpark came first. end_block:
  // the resumed waiter clears a kTimedOut left behind.
  bool begin_block(void* who) noexcept;
  bool timeout_block() noexcept;
  void end_block() noexcept;

 private:
  friend struct parker_access;
  enum : std::uint32_t {
    kIdle = 0,      // not woken; the waiter runs or spins
    kNotified = 1,  // unpark() happened this round
    kSleeping = 2,  // the waiter sleeps (or is about to) on the futex
    kPolling = 3,   // the waiter is inside the host poller
    kBlocked = 4,   // a uthread waiter is switched out; blocked_ names it
    kTimedOut = 5,  // a uthread waiter's deadline passed before it blocked
  };
  void sleep(mono_ns deadline, bool follower) noexcept;
  bool leave(bool followed, bool result) noexcept;
  void poll_host(mono_ns deadline) noexcept;

  std::atomic<std::uint32_t> state_{kIdle};
  void* blocked_ = nullptr;  // written before the kBlocked CAS, read after
  ilist_link<parker> link_;  // in the followers list; guarded by its lock
  const bool may_poll_host_ = true;
  // The CPU the last unpark() ran on, or -1: where the next waker is
  // likely to run. A hint only (relaxed both ways): a wrong guess costs a
  // spin or a sleep, never a wakeup.
  std::atomic<int> waker_cpu_{-1};
};

// How a parker blocks a uthread (see the header comment). active() tells
// whether the caller is a uthread; park() returns kNotUthread at once if it
// is not (one call on the park path, not two), and otherwise blocks it (it
// must call begin_block from its post-switch callback) and returns kWoken
// or kNotWoken, what parker::park() then returns. wake(who) makes the
// uthread recorded by begin_block runnable. Callable from any thread.
struct park_hook {
  enum result : int { kNotUthread = -1, kNotWoken = 0, kWoken = 1 };
  bool (*active)() noexcept;
  result (*park)(parker& p, mono_ns deadline) noexcept;
  void (*wake)(void* who) noexcept;
};

// Installs (or, with nullptr, removes) the process's park hook. The object
// must outlive every park() and unpark() that may use it.
void set_park_hook(const park_hook* h) noexcept;

// True when a park() by the caller would go through the park hook, i.e. the
// caller is a uthread: then blocking in the host kernel (a blocking system
// call) would stall its whole vcore, and waits should park instead.
bool parks_as_uthread() noexcept;

// True once a parker that may poll the host has slept in this process
// (sticky). Other code that would sleep in the host poll itself (the epoll
// facade's plain-thread waiters) leaves it to the parkers from then on: a
// parker that leads finds the poll busy while another caller holds it, and
// retries until that caller returns. The first such park wakes the host
// poller, so a caller asleep there returns and sees this.
bool parkers_poll_host() noexcept;

// The host kernel poll that a blocked thread may run instead of sleeping.
// poll() waits for host events until the deadline or until wake() is called,
// and dispatches what it finds (which may unpark parkers); it is called by one
// thread at a time. wake() is callable from any thread and makes a running or
// the next poll() return promptly.
struct host_poller {
  void (*poll)(void* ctx, mono_ns deadline) noexcept;
  void (*wake)(void* ctx) noexcept;
  void* ctx;
};

// Installs (or, with nullptr, removes) the process's host poller. Removal
// waits for a running poll to finish and for every unpark() that is calling
// the poller's wake(): once it returns, the old object may be freed.
void set_host_poller(const host_poller* p) noexcept;

namespace detail {
// Test-only hooks that let a test hold one party inside a handshake window.
// Production code never installs them; install before starting the threads
// the test observes, remove after joining them.
struct parker_test_hooks {
  // unpark() of a polling leader: after loading the poller, before its wake().
  void (*in_poller_use)() = nullptr;
  // set_host_poller(nullptr): each time it waits for an unpark() still
  // inside the old poller's wake().
  void (*removal_waits)() = nullptr;
};
void set_parker_test_hooks(const parker_test_hooks* h) noexcept;
}  // namespace detail

}  // namespace ueq
