// ueq/uthread/sched.hpp — the second-level scheduler (2LS) interface and
// blocking with a post-switch callback.
//
// What it is for: separating "how a uthread switches and blocks" (the core,
// in uthread.cpp) from "which uthread runs next, where" (the 2LS). The core
// calls the 2LS at each event of a uthread's life, Akaros-style:
//   thread_runnable     it may run now (new, woken, or resumed by a waiter);
//                       callable from any vcore or plain thread;
//   thread_paused       it stopped voluntarily but stays runnable (yield);
//   thread_has_blocked  it switched out to wait (reason given);
//   thread_exited       it ended (its stack is already released);
//   pick_next           the next uthread for this vcore, or null: asked by
//                       a uthread that is switching out (on its stack,
//                       with no current uthread) or by the vcore's loop;
//   idle                nothing to run: park the vcore until work arrives,
//                       the next timer deadline passes, or stop() is
//                       called, with a check-sleep-check so no
//                       thread_runnable (and no earlier timer) is missed;
//   timer_armed         a timer became the earliest: a sleeping vcore must
//                       wake and take the new deadline.
// The default 2LS (default_scheduler) runs the uthread a vcore woke last
// next (runnext), keeps one FIFO run queue per vcore, steals from the others
// when its own is empty, and wakes a sleeping vcore when work arrives that
// its own vcore may not get to soon.
//
// block_with(fn): switches the calling uthread out and runs fn(u) after the
// uthread's context is saved, on the stack of whatever runs next (the
// uthread pick_next chose, or the vcore's scheduler), with no current
// uthread. That is the
// place to publish "I am waiting" and drop a lock: whoever sees it may make
// u runnable at once (even on another vcore) without a lost wakeup. fn must
// not block; after it publishes u it must not touch the uthread's stack.
//
// Thread-safety: every 2LS operation may be called concurrently from all
// vcores and plain threads.
#pragma once

#include <cstdint>
#include <memory>
#include <type_traits>

#include "ueq/runtime/clock.hpp"
#include "ueq/runtime/ilist.hpp"
#include "ueq/runtime/timer.hpp"
#include "ueq/uthread/uthread.hpp"

namespace ueq {

enum class block_reason : std::uint8_t { yield, mutex, condvar, join, sleep, park, misc };

class scheduler_2ls {
 public:
  virtual ~scheduler_2ls() = default;
  // Called once by run() before any other call, with the vcore count.
  virtual void init(unsigned nvcores) = 0;
  virtual void thread_runnable(detail::uthread* u) noexcept = 0;
  virtual void thread_paused(detail::uthread* u) noexcept = 0;
  virtual void thread_has_blocked(detail::uthread* u, block_reason why) noexcept = 0;
  virtual void thread_exited(detail::uthread* u) noexcept = 0;
  virtual detail::uthread* pick_next(unsigned vcore) noexcept = 0;
  // Reads timers.next_deadline() after publishing that it sleeps.
  virtual void idle(unsigned vcore, const timer_service& timers) noexcept = 0;
  virtual void timer_armed() noexcept = 0;
  // Ends every idle() now and makes later ones return at once.
  virtual void stop() noexcept = 0;
};

// Per-uthread link and vcore affinity that a 2LS may use freely.
namespace detail {
struct sched_link {
  ilist_link<uthread> q;  // the 2LS's run-queue link
  unsigned vcore = 0;     // where it last ran
};
sched_link& link_of(uthread* u) noexcept;
}  // namespace detail

// The default 2LS; see the header comment.
std::unique_ptr<scheduler_2ls> make_default_scheduler();

// See the header comment. Only from a uthread.
template <class Fn>
void block_with(block_reason why, Fn&& fn) noexcept;

namespace detail {
using post_switch_fn = void (*)(uthread* u, void* arg) noexcept;
void block_with_raw(block_reason why, post_switch_fn fn, void* arg) noexcept;
}  // namespace detail

template <class Fn>
void block_with(block_reason why, Fn&& fn) noexcept {
  using F = std::remove_reference_t<Fn>;
  detail::block_with_raw(
      why, [](detail::uthread* u, void* arg) noexcept { (*static_cast<F*>(arg))(u); },
      const_cast<void*>(static_cast<const void*>(&fn)));
}

// Makes a uthread blocked by block_with runnable again (through the 2LS).
void make_runnable(detail::uthread* u) noexcept;

}  // namespace ueq
