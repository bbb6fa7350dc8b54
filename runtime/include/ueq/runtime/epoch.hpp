// ueq/runtime/epoch.hpp — deferred reclamation by epochs.
//
// What it is for: freeing memory that lock-free readers may still be
// looking at. A reader pins the current epoch for the duration of its
// access; a writer unlinks an object and retires it; the object is freed once
// every reader that was pinned when it was retired has unpinned (the global
// epoch has moved two steps past the retire epoch).
//
// Rules: do not block or switch uthreads while pinned (a pin belongs to the
// host thread). Pins nest. At most kMaxThreads threads (by thread index) may
// pin; others fall back to a shared slot that is always treated as pinned at
// the oldest epoch it saw, which only delays reclamation.
//
// Thread-safety: pin/unpin, retire and reclaim from any thread.
//
// Usage:
//   ueq::epoch_domain ed;
//   { auto g = ed.pin(); node* n = head.load(std::memory_order_acquire); use(n); }
//   head.store(next); ed.retire(old, [](void* p) noexcept { delete static_cast<node*>(p); });
//   ed.reclaim();  // frees what is safe to free now
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <vector>

namespace ueq {

class epoch_domain {
 public:
  static constexpr unsigned kMaxThreads = 256;
  using deleter_fn = void (*)(void*) noexcept;

  epoch_domain() = default;
  epoch_domain(const epoch_domain&) = delete;
  epoch_domain& operator=(const epoch_domain&) = delete;
  ~epoch_domain();  // frees everything still retired; no pins may remain

  class guard {
   public:
    explicit guard(epoch_domain& d) noexcept : d_(&d) { d.enter(); }
    guard(guard&& o) noexcept : d_(o.d_) { o.d_ = nullptr; }
    guard(const guard&) = delete;
    ~guard() {
      if (d_) d_->exit();
    }

   private:
    epoch_domain* d_;
  };
  guard pin() noexcept { return guard(*this); }
  void enter() noexcept;
  void exit() noexcept;

  void retire(void* p, deleter_fn del);
  // Advances the epoch if every pinned thread has seen it, and frees what is
  // two epochs old. Returns how many objects it freed.
  std::size_t reclaim();
  std::size_t pending() const;
  std::uint64_t epoch() const noexcept { return epoch_.load(std::memory_order_acquire); }

 private:
  struct alignas(64) slot {
    // 0 = not pinned, else (epoch << 1) | 1.
    std::atomic<std::uint64_t> word{0};
    std::uint32_t depth = 0;  // nesting; only the owning thread touches it
  };
  struct retired {
    void* p;
    deleter_fn del;
    std::uint64_t epoch;
  };

  std::atomic<std::uint64_t> epoch_{1};
  slot slots_[kMaxThreads];
  std::atomic<std::uint32_t> shared_pins_{0};  // pins of threads beyond kMaxThreads
  mutable std::mutex mu_;                      // guards retired_
  std::vector<retired> retired_;
};

}  // namespace ueq
