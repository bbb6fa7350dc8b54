// uthread/uthread_impl.hpp — the uthread record, shared by the core
// (uthread.cpp) and the default 2LS (default_sched.hpp). Private to this module:
// a 2LS elsewhere reaches the link through detail::link_of().
#pragma once

#include <atomic>
#include <boost/context/detail/fcontext.hpp>
#include <cstdint>
#include <functional>

#include "ueq/runtime/parker.hpp"
#include "ueq/uthread/sched.hpp"
#include "ueq/uthread/stack_pool.hpp"

namespace ueq::detail {

struct vcore_ctx;  // uthread.cpp's per-vcore switch state

struct uthread {
  sched_link link;  // the 2LS's; first, as the hot path touches it most
  // The saved context while it is not running (boost.context's fcontext
  // layer; uthread/README.md says why not its fiber class).
  boost::context::detail::fcontext_t ctx = nullptr;
  std::function<void()> fn;
  stack_slot stack;
  std::atomic<std::uint32_t> join_state{0};
  parker* joiner = nullptr;  // written before the kJoining CAS (release)
  // The vcore that resumed it, written by the resumer just before the
  // switch: the resumed side reads it instead of its thread-local, whose
  // address the compiler might have cached from before a migration.
  vcore_ctx* vc = nullptr;
  char name[32] = {};
  void* tsan_fiber = nullptr;
  void* asan_fake = nullptr;
};

}  // namespace ueq::detail
