// ueq/uthread/uthread.hpp — cooperative user threads.
//
// What it is for: many cheap threads of control (100k is fine) that block
// without blocking a host thread. A uthread runs on a Boost.Context context
// with a stack from the stack pool, on one of N vcores (host threads) of the
// scheduler started by ueq::run(). It runs until it yields or blocks (a
// mutex, a condition variable, a join, a sleep, any ueq::parker); then its
// vcore runs the next uthread the scheduler picks (by a direct switch), or
// its scheduler context when there is none. Nothing preempts a uthread.
//
// Thread-safety: spawn() and uthread_handle::join()/detach() from uthreads
// and from plain threads while the runtime runs; this_uthread:: functions
// from the uthread itself (from a plain thread, yield and sleep fall back to
// the host thread's equivalents). A handle is owned by one party.
//
// Errors: spawn() returns ENXIO when no runtime is running, ENOMEM when no
// stack can be mapped, EINVAL for an empty fn or a stack size over 1 GiB.
// run() returns EINVAL for an empty fn or more vcores than
// max_vcore_count() (64 per CPU this process may run on), EBUSY while
// another runtime runs.
//
// Usage:
//   int main() {
//     return ueq::run([] {
//       auto h = ueq::spawn([] { ueq::this_uthread::sleep_for(std::chrono::milliseconds(1)); },
//                           {.name = "sleeper"});
//       if (h) (*h).join();
//     }).value();
//   }
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <system_error>

#include "ueq/runtime/clock.hpp"
#include "ueq/runtime/result.hpp"
#include "ueq/runtime/vcore.hpp"

namespace ueq {

namespace detail {
struct uthread;
}  // namespace detail
class scheduler_2ls;

struct spawn_options {
  // Usable stack bytes, rounded up to pages and to at least kMinStackSize;
  // 0 = default_stack_size().
  std::size_t stack_size = 0;
  const char* name = nullptr;  // copied; for debugging
  bool detached = false;       // no handle needed; freed when it ends
};

// A joinable uthread. Move-only; must be joined or detached before it is
// destroyed (the destructor detaches, so nothing leaks).
class uthread_handle {
 public:
  uthread_handle() = default;
  explicit uthread_handle(detail::uthread* u) noexcept : u_(u) {}
  uthread_handle(uthread_handle&& o) noexcept : u_(o.u_) { o.u_ = nullptr; }
  uthread_handle& operator=(uthread_handle&& o) noexcept;
  uthread_handle(const uthread_handle&) = delete;
  uthread_handle& operator=(const uthread_handle&) = delete;
  ~uthread_handle() { detach(); }

  bool joinable() const noexcept { return u_ != nullptr; }
  // Waits for the uthread to end (blocking this uthread, or this plain
  // thread). EINVAL if not joinable, EDEADLK on joining oneself.
  std::error_code join() noexcept;
  void detach() noexcept;

 private:
  detail::uthread* u_ = nullptr;
};

// The smallest usable stack spawn() gives: besides the uthread's own frames,
// its stack carries ueq's switch bookkeeping and the post-switch callbacks
// of the uthread that switched to it (timer arming, wakes, a futex call).
inline constexpr std::size_t kMinStackSize = std::size_t{16} << 10;

// The default usable stack: 128 KiB (256 KiB in sanitizer builds), reserved
// and committed lazily, so a parked uthread costs only the pages it touched.
std::size_t default_stack_size() noexcept;

// Starts a uthread running fn. fn must not throw (an escaping exception
// terminates the process, as with std::thread).
result<uthread_handle> spawn(std::function<void()> fn, spawn_options opts = {});

struct run_options {
  // 0 = one per CPU this process may use; at most max_vcore_count().
  unsigned vcores = 0;
  scheduler_2ls* sched = nullptr;  // null = the default scheduler
};

// Starts the runtime (vcores and scheduler), runs fn in a uthread, and
// returns once fn has returned and every other uthread has ended; then the
// vcores are joined and everything is freed. EINVAL if fn is empty or
// opts.vcores exceeds max_vcore_count(); EBUSY if a runtime is already
// running. One runtime at a time; run() may be called again afterwards.
// fork() from a uthread: the child holds only the forking vcore's thread
// (the thread that called run() and the other vcores are gone), so its
// run() never returns there; a child ends with _exit() (or exec) from the
// uthread that forked.
result<int> run(std::function<void()> fn, run_options opts = {});

namespace this_uthread {
// True when the caller is a uthread.
bool active() noexcept;
// The running uthread, or null on a plain thread.
detail::uthread* current() noexcept;
// Its name ("" if none, or on a plain thread).
const char* name() noexcept;
// Lets every other runnable uthread on this vcore run first.
void yield() noexcept;
// Blocks until the deadline (CLOCK_MONOTONIC); never returns early. A
// deadline already past returns at once.
void sleep_until(mono_ns deadline) noexcept;
// Blocks for at least d. As std::this_thread::sleep_for, zero or a negative
// d returns at once; a d too long for nanoseconds sleeps for good.
template <class Rep, class Period>
void sleep_for(std::chrono::duration<Rep, Period> d) noexcept {
  if (!(d > d.zero())) return;  // also a floating-point NaN
  using long_ns = std::chrono::duration<long double, std::nano>;
  if (long_ns(d) >= long_ns(std::chrono::nanoseconds::max())) return sleep_until(kNoDeadline);
  // Rounded up, so a fraction of a nanosecond still waits.
  sleep_until(deadline_after_ns(std::chrono::ceil<std::chrono::nanoseconds>(d).count()));
}
}  // namespace this_uthread

}  // namespace ueq
