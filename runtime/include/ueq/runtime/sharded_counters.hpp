// ueq/runtime/sharded_counters.hpp — cheap event counters for research.
//
// What it is for: counting on hot paths (every CEQ post) without making
// threads fight over one cache line. Each of the first kShards live threads
// (by this_thread_index()) owns one cache-line-aligned shard and bumps it with
// a relaxed load+store — no locked instruction. Later threads share one
// overflow shard updated with fetch_add. read() sums the shards: exact once
// the writers are quiescent (joined), a close lower bound while they run.
//
// Thread-safety: add() from any thread; read() from any thread.
//
// Usage:
//   enum { kPosts, kDrops, kCount };
//   ueq::sharded_counters<kCount> c;
//   c.add(kPosts);
//   uint64_t posts = c.read(kPosts);
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "ueq/runtime/thread_index.hpp"

namespace ueq {

inline constexpr std::size_t kCacheLine = 64;

template <std::size_t N, std::size_t Shards = 32>
class sharded_counters {
 public:
  sharded_counters() : shards_(new shard[Shards + 1]) {}

  void add(std::size_t which, std::uint64_t n = 1) noexcept {
    unsigned i = this_thread_index();
    if (i < Shards) {
      // Single writer per shard (see thread_index.hpp): a relaxed load+store
      // cannot lose an update, and readers only need an eventually-exact sum.
      auto& c = shards_[i].v[which];
      c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    } else {
      // The overflow shard has many writers: a relaxed RMW keeps it exact.
      shards_[Shards].v[which].fetch_add(n, std::memory_order_relaxed);
    }
  }

  std::uint64_t read(std::size_t which) const noexcept {
    std::uint64_t sum = 0;
    for (std::size_t s = 0; s <= Shards; ++s)
      sum += shards_[s].v[which].load(std::memory_order_relaxed);
    return sum;
  }

 private:
  struct alignas(kCacheLine) shard {
    std::atomic<std::uint64_t> v[N] = {};
  };
  std::unique_ptr<shard[]> shards_;
};

}  // namespace ueq
