// ueq/runtime/thread_index.hpp — a small dense number for each live thread.
//
// What it is for: per-thread sharding (counters, statistics) without a
// registry per object. Every OS thread that asks gets the smallest free index;
// the index returns to the pool when the thread exits, so a process that
// keeps creating and joining threads keeps its indices small. While a thread
// lives, no other live thread has its index: a shard indexed by it has one
// writer, which may then update it with a plain load+store.
//
// Thread-safety: this_thread_index() may be called from any thread at any
// time, including from thread-exit destructors (those get kNoThreadIndex).
//
// Usage:
//   unsigned i = ueq::this_thread_index();
//   if (i < kShards) shards[i].bump(); else shared.fetch_add(1);
#pragma once

#include <cstdint>

namespace ueq {

// Returned to threads that are exiting (their index was already released).
inline constexpr unsigned kNoThreadIndex = ~0u - 1;

namespace detail {
// 0 = not yet assigned, otherwise index + 1. constinit tells every user that
// it needs no dynamic-initialisation guard; initial-exec TLS keeps the fast
// path a single %fs-relative load.
extern constinit thread_local unsigned tl_thread_index_plus1
    __attribute__((tls_model("initial-exec")));
unsigned assign_thread_index() noexcept;
// Test-only: takes (true) or releases (false) the index pool's lock, so a
// test can fork while another thread holds it. Never called outside tests.
void hold_thread_index_pool_for_test(bool hold) noexcept;
}  // namespace detail

inline unsigned this_thread_index() noexcept {
  unsigned v = detail::tl_thread_index_plus1;
  if (__builtin_expect(v != 0, 1)) return v - 1;
  return detail::assign_thread_index();
}

// Number of indices handed out and not yet returned (for tests).
unsigned live_thread_indices() noexcept;

}  // namespace ueq
