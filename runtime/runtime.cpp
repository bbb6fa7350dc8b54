// Process-wide pieces of the runtime substrate: the yield hook and the thread
// index pool.
#include <sched.h>

#include <mutex>
#include <vector>

#include "ueq/runtime/backoff.hpp"
#include "ueq/runtime/fork.hpp"
#include "ueq/runtime/lock.hpp"
#include "ueq/runtime/thread_index.hpp"

namespace ueq {
namespace detail {

void default_yield() noexcept {
  ::sched_yield();
}

// Owned by the process; see backoff.hpp for why relaxed suffices.
std::atomic<yield_fn> g_yield_hook{&default_yield};

constinit thread_local unsigned tl_thread_index_plus1 __attribute__((tls_model("initial-exec"))) =
    0;

namespace {

// The index pool: owned by the process, guarded by its mutex. Never
// destroyed (threads may exit after static destructors have run).
struct index_pool {
  os_mutex mu;
  // Returned indices, reused smallest-last-freed first.
  std::vector<unsigned> free ABSL_GUARDED_BY(mu);
  unsigned next ABSL_GUARDED_BY(mu) = 0;  // first index never handed out
  unsigned live ABSL_GUARDED_BY(mu) = 0;
};
index_pool& pool() {
  static index_pool* p = new index_pool;
  return *p;
}

// fork(): the pool is made (a first call in another thread, still in its
// initialiser, is waited for) and its lock held across the fork, so that
// the child, where only the forking thread lives, never inherits it half
// made or locked by a thread it does not have. Runtime layer: its prepare
// runs after every other layer's.
os_mutex& pool_lock() {
  return pool().mu;
}
[[maybe_unused]] const bool g_pool_fork_registered =
    hold_across_fork<&pool_lock>(fork_layer::runtime);

// Returns the thread's index to the pool at thread exit. After that the
// thread reports kNoThreadIndex, which every user treats as "shared shard".
struct index_releaser {
  unsigned index;
  ~index_releaser() {
    auto& p = pool();
    lock_guard<os_mutex> g(p.mu);
    p.free.push_back(index);
    --p.live;
    tl_thread_index_plus1 = kNoThreadIndex + 1;  // fast path now yields kNoThreadIndex
  }
};

}  // namespace

void hold_thread_index_pool_for_test(bool hold) noexcept ABSL_NO_THREAD_SAFETY_ANALYSIS {
  if (hold)
    pool().mu.lock();
  else
    pool().mu.unlock();
}

unsigned assign_thread_index() noexcept {
  auto& p = pool();
  unsigned idx;
  {
    lock_guard<os_mutex> g(p.mu);
    if (!p.free.empty()) {
      idx = p.free.back();
      p.free.pop_back();
    } else {
      idx = p.next++;
    }
    ++p.live;
  }
  tl_thread_index_plus1 = idx + 1;
  thread_local index_releaser releaser{idx};
  (void)releaser;
  return idx;
}

}  // namespace detail

void set_yield_hook(detail::yield_fn fn) noexcept {
  detail::g_yield_hook.store(fn ? fn : &detail::default_yield, std::memory_order_relaxed);
}

unsigned live_thread_indices() noexcept {
  auto& p = detail::pool();
  lock_guard<os_mutex> g(p.mu);
  return p.live;
}

}  // namespace ueq
