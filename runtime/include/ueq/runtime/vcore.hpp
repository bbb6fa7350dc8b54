// ueq/runtime/vcore.hpp — vcores: the worker OS threads a scheduler runs on.
//
// What it is for: a fixed group of host threads, each with a small dense
// vcore index, started together and joined together. The uthread scheduler
// runs its loop on each; anything that needs "which vcore am I on" (per-vcore
// run queues, counters) asks this_vcore().
//
// Thread-safety: start() and join() by the owning thread; this_vcore() from
// anywhere (kNoVcore on a thread that is not a vcore).
//
// Usage:
//   ueq::vcore_group g;
//   g.start(ueq::default_vcore_count(), [](unsigned i) { loop(i); });
//   ...
//   g.join();
#pragma once

#include <functional>
#include <thread>
#include <vector>

namespace ueq {

inline constexpr unsigned kNoVcore = ~0u;

// The number of CPUs this process may run on (at least 1).
unsigned default_vcore_count() noexcept;

// How many vcores per CPU a group may have: oversubscribing is allowed (a
// vcore blocked in the kernel leaves its CPU to another), within reason.
inline constexpr unsigned kVcoresPerCpu = 64;

// The most vcores a group may have: kVcoresPerCpu * default_vcore_count().
// Every vcore is a host thread with its own run queue, so a count past this
// is a mistake, not a configuration (UINT_MAX would ask for hundreds of GiB).
unsigned max_vcore_count() noexcept;

// This thread's vcore index, or kNoVcore.
unsigned this_vcore() noexcept;

class vcore_group {
 public:
  vcore_group() = default;
  vcore_group(const vcore_group&) = delete;
  vcore_group& operator=(const vcore_group&) = delete;
  ~vcore_group() { join(); }

  // Starts n vcores (n == 0 means default_vcore_count()), each running fn(i).
  // n must not exceed max_vcore_count(); callers check it.
  void start(unsigned n, std::function<void(unsigned)> fn);
  // Waits for every vcore's fn to return.
  void join();
  unsigned size() const noexcept { return static_cast<unsigned>(threads_.size()); }

 private:
  std::vector<std::thread> threads_;
};

}  // namespace ueq
