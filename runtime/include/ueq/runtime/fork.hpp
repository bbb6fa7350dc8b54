// ueq/runtime/fork.hpp — what ueq does at fork(), in one place.
//
// What it is for: every module that keeps process-wide state (the parker's
// host-poll role, the default tap service, ueq::io's table, the epoll
// facade's registry and counters) must act at fork(): in the child only the
// forking thread lives on, so a lock another thread held is never released
// and a role another thread had is gone. Each registers its handlers here,
// with its layer; ueq installs one pthread_atfork handler that runs them in
// a fixed order, whatever order the static initialisers ran in:
//  - prepare (in the parent, before the fork): highest layer first;
//  - parent and child (after it): lowest layer first.
// The child first bumps fork_generation(), so state made lazily and tagged
// with the generation it was made in can tell it came from the parent.
//
// Thread-safety: on_fork() may be called from static initialisers and from
// any thread; handlers must not call on_fork() themselves. Handlers run in
// the forking thread, with its cancellation disabled (fork() is no
// cancellation point, and a cancel pending on the thread must not act in
// a handler); a child handler must only do what is safe in a child of a
// threaded process (no locks another thread may have held).
//
// Usage:
//   void reset_in_child() noexcept { /* forget what the parent's threads held */ }
//   [[maybe_unused]] const bool g_registered =
//       ueq::on_fork(ueq::fork_layer::taps, {.child = &reset_in_child});
#pragma once

#include <absl/base/thread_annotations.h>

#include <atomic>
#include <cstdint>

namespace ueq {

// The module layers, lowest first (the layering of README.md).
enum class fork_layer : std::uint8_t { runtime, uthread, ceq, taps, epoll };

struct fork_handlers {
  void (*prepare)() noexcept = nullptr;
  void (*parent)() noexcept = nullptr;
  void (*child)() noexcept = nullptr;
};

// Registers h for `layer`. Returns true (for static initialisers); false if
// the fixed table (32 entries) is full, which is a bug in ueq.
bool on_fork(fork_layer layer, const fork_handlers& h) noexcept;

// A process-wide lock held across fork(): taken in prepare (after any
// thread that holds it, or that still runs the initialiser of the object it
// lives in), released in the parent and in the child, so that a child never
// inherits it held by a thread it does not have. `Lock` is a function that
// returns the lock (anything with lock() and unlock()).
//   os_mutex& pool_lock() { return pool().mu; }
//   [[maybe_unused]] const bool g_held =
//       ueq::hold_across_fork<&pool_lock>(ueq::fork_layer::runtime);
namespace detail {
template <auto Lock>
struct held_across_fork {
  static void take() noexcept ABSL_NO_THREAD_SAFETY_ANALYSIS { Lock().lock(); }
  static void give() noexcept ABSL_NO_THREAD_SAFETY_ANALYSIS { Lock().unlock(); }
};
}  // namespace detail
template <auto Lock>
bool hold_across_fork(fork_layer layer) noexcept {
  using held = detail::held_across_fork<Lock>;
  return on_fork(layer, {.prepare = &held::take, .parent = &held::give, .child = &held::give});
}

// How many fork()s lie between the first process and this one: 0 in the
// process that started, bumped in each child before any child handler runs.
// Inline: every ueq::io call and wait reads it.
namespace detail {
extern std::atomic<std::uint64_t> g_fork_generation;  // bumped in the child only
}  // namespace detail
inline std::uint64_t fork_generation() noexcept {
  // relaxed: written once per fork, by the only thread of the new child.
  return detail::g_fork_generation.load(std::memory_order_relaxed);
}

}  // namespace ueq
