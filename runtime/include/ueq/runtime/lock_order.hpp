// ueq/runtime/lock_order.hpp — the order in which ueq's locks nest,
// checked on every acquire in debug builds.
//
// What it is for: a deadlock between two locks needs two threads that take
// them in opposite orders, which a test may never happen to interleave. A
// fixed order, checked on each acquire in one thread, finds the inversion
// the first time either path runs, as Linux's lockdep does for eventpoll.
//
// The order, outermost first (a thread holding a lock may only take one of
// a later level; `unordered` locks are not checked):
//   epoll_registry reg().mu: epoll fd numbers, memberships, nesting graph
//   epoll_set      a set's entries and ready list (impl::mu)
//   epoll_service  registering the facade's close callback on its tap
//                  service (registry.cpp service(), called from ctl)
//   io_state       ueq::io's table of fds
//   io_entry       one fd's sides in ueq::io
//   tap_default    making the process's default tap service
//   tap_attach     a tap service's attachment to the parkers
//   tap_fd         one fd's taps in a tap service
//   tap_slot       one tap slot (dispatch posts under it)
//   tap_lists      a tap service's free slots, its close callbacks
//   backend        the host poller's own lock (epoll or io_uring backend)
//   epoll_parents  a set's parents list, taken by its post hook under
//                  tap_slot; nests child before parent. The checker lets
//                  it nest in itself and does not check that: the order
//                  between two sets' parents locks is the nesting graph's,
//                  which EPOLL_CTL_ADD keeps acyclic
//   event_queue    an event queue's waiter list
//   mailbox        a message queue's lock, the CEQ's overflow recovery
//   timer          the timer service's heap
//   parker         the parker's list of followers
//
// Debug builds (NDEBUG not defined: the sanitizer builds, and any build
// with -Db_ndebug=false) keep, per thread, the ordered locks it holds, and
// abort with both locks' levels on an out-of-order acquire, before
// blocking on it. A successful try_lock cannot deadlock and is recorded
// without the check. Release builds keep the level (one byte, so layouts
// do not depend on NDEBUG) and check nothing.
//
// A thread's record is its running uthread's: no ordered lock is held
// across a uthread switch. A spin lock's waiter yields to the kernel only,
// a backoff under an os_mutex does not switch (the uthread yield hook),
// and the uthread layer aborts on a switch with an ordered lock held, in
// either direction (a uthread that blocks, or one that is switched to). A
// signal handler's acquisitions nest inside what the interrupted code
// holds, as they do for deadlock.
//
// Thread-safety: the record is thread-local.
//
// Usage:
//   ueq::os_mutex mu{ueq::lock_level::epoll_set};
//   ueq::lock_guard<ueq::os_mutex> g(mu);  // checked in debug builds
#pragma once

#include <cstdint>

namespace ueq {

enum class lock_level : std::uint8_t {
  unordered = 0,
  epoll_registry = 20,
  epoll_set = 30,
  epoll_service = 35,
  io_state = 40,
  io_entry = 45,
  tap_default = 46,
  tap_attach = 48,
  tap_fd = 50,
  tap_slot = 55,
  tap_lists = 57,
  backend = 60,
  epoll_parents = 65,
  event_queue = 70,
  mailbox = 75,
  timer = 80,
  parker = 90,
};

const char* to_string(lock_level l) noexcept;

namespace detail {
#ifdef NDEBUG
inline constexpr bool kCheckLockOrder = false;
#else
inline constexpr bool kCheckLockOrder = true;
#endif
// Before a blocking acquire of `lock`: aborts if the calling thread holds
// `lock` or a lock that must nest inside `level`.
void lock_order_check(const void* lock, lock_level level) noexcept;
// Once `lock` is taken (by a blocking acquire or a successful try_lock):
// records it as held. Recording only then keeps the record right while a
// uthread that waits for a spin lock yields to another on its thread.
void lock_order_record(const void* lock, lock_level level) noexcept;
// Forgets `lock` (a lock not recorded, such as one a child re-makes after
// fork(), is ignored).
void lock_order_release(const void* lock) noexcept;
// Ordered locks the calling thread holds now.
int lock_order_depth() noexcept;
// Aborts, naming `what`, if the calling thread holds an ordered lock.
void lock_order_expect_none(const char* what) noexcept;
}  // namespace detail

}  // namespace ueq
