// The runtime pieces the CEQ stands on: thread indices, sharded counters,
// backoff and its yield hook, result<T>.
#include <atomic>
#include <barrier>
#include <catch2/catch.hpp>
#include <set>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "ueq/runtime/backoff.hpp"
#include "ueq/runtime/fd.hpp"
#include "ueq/runtime/result.hpp"
#include "ueq/runtime/sharded_counters.hpp"
#include "ueq/runtime/thread_index.hpp"

TEST_CASE("thread indices are distinct among live threads and reused after exit", "[runtime]") {
  constexpr int kThreads = 12;
  std::vector<unsigned> seen(kThreads);
  std::atomic<int> unstable{0};  // Catch2 assertions are main-thread only
  std::barrier sync(kThreads);
  {
    std::vector<std::thread> ts;
    for (int i = 0; i < kThreads; ++i)
      ts.emplace_back([&, i] {
        seen[i] = ueq::this_thread_index();
        if (ueq::this_thread_index() != seen[i]) unstable.fetch_add(1);
        sync.arrive_and_wait();  // all alive at once
      });
    for (auto& t : ts)
      t.join();
  }
  REQUIRE(unstable.load() == 0);
  std::set<unsigned> distinct(seen.begin(), seen.end());
  REQUIRE(distinct.size() == kThreads);
  // After they exit, a new thread gets one of the freed indices: the pool
  // stays as small as the peak number of live threads.
  unsigned later = 0;
  std::thread([&] { later = ueq::this_thread_index(); }).join();
  REQUIRE(distinct.count(later) == 1);
}

TEST_CASE("sharded counters are exact after writers join, beyond the shard count", "[runtime]") {
  // 40 threads > 32 shards: some threads use the shared overflow shard.
  constexpr int kThreads = 40;
  constexpr std::uint64_t kPer = 20000;
  ueq::sharded_counters<2> c;
  std::barrier sync(kThreads);
  std::vector<std::thread> ts;
  for (int i = 0; i < kThreads; ++i)
    ts.emplace_back([&] {
      sync.arrive_and_wait();  // all threads hold an index at once
      for (std::uint64_t k = 0; k < kPer; ++k)
        c.add(0);
      c.add(1, 3);
      sync.arrive_and_wait();
    });
  for (auto& t : ts)
    t.join();
  REQUIRE(c.read(0) == kThreads * kPer);
  REQUIRE(c.read(1) == kThreads * 3);
}

namespace {
std::atomic<int> g_hook_calls{0};
void counting_yield() noexcept {
  g_hook_calls.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

TEST_CASE("backoff spins a bounded number of rounds, then yields through the hook", "[runtime]") {
  g_hook_calls.store(0);
  ueq::set_yield_hook(&counting_yield);
  ueq::backoff b;
  for (std::uint32_t i = 0; i < ueq::backoff::kSpinRounds; ++i)
    b.pause();
  REQUIRE(g_hook_calls.load() == 0);
  b.pause();
  b.pause();
  REQUIRE(g_hook_calls.load() == 2);
  REQUIRE(b.yields() == 2);
  ueq::set_yield_hook(nullptr);  // back to sched_yield
  b.pause();
  REQUIRE(g_hook_calls.load() == 2);
}

TEST_CASE("a kernel-only backoff never calls the yield hook", "[runtime]") {
  g_hook_calls.store(0);
  ueq::set_yield_hook(&counting_yield);
  ueq::backoff b(ueq::backoff::yield_to::kernel);
  for (std::uint32_t i = 0; i < ueq::backoff::kSpinRounds + 5; ++i)
    b.pause();
  REQUIRE(b.yields() == 5);
  REQUIRE(g_hook_calls.load() == 0);
  ueq::set_yield_hook(nullptr);
}

// A spin lock's holder is always running on some thread, so its waiter
// yields to the kernel: a uthread waiting for one while it holds another
// must not let a second uthread run on its thread meanwhile.
TEST_CASE("a spin_lock waiter yields to the kernel, not through the hook", "[runtime]") {
  g_hook_calls.store(0);
  ueq::set_yield_hook(&counting_yield);
  ueq::spin_lock lock;
  std::atomic<bool> held{false}, waiting{false};
  std::thread holder([&] {
    lock.lock();
    held.store(true);
    while (!waiting.load())
      std::this_thread::yield();
    // Long past the waiter's spin rounds (about 1 us), bounded: released
    // early if the waiter calls the hook.
    for (int i = 0; i < 20000 && g_hook_calls.load() == 0; ++i)
      std::this_thread::yield();
    lock.unlock();
  });
  while (!held.load())
    std::this_thread::yield();
  waiting.store(true);
  lock.lock();
  lock.unlock();
  holder.join();
  REQUIRE(g_hook_calls.load() == 0);
  ueq::set_yield_hook(nullptr);
}

TEST_CASE("spin_lock excludes: a counter guarded by it is exact", "[runtime]") {
  ueq::spin_lock lock;
  std::uint64_t guarded = 0;  // plain: only ever touched under the lock
  std::vector<std::thread> ts;
  for (int i = 0; i < 4; ++i)
    ts.emplace_back([&] {
      for (int k = 0; k < 20000; ++k) {
        lock.lock();
        ++guarded;
        lock.unlock();
      }
    });
  for (auto& t : ts)
    t.join();
  REQUIRE(guarded == 80000);
  REQUIRE(lock.try_lock());
  REQUIRE_FALSE(lock.try_lock());
  lock.unlock();
}

TEST_CASE("result carries a value or an errno code", "[runtime]") {
  ueq::result<int> ok = 5;
  REQUIRE(ok);
  REQUIRE(*ok == 5);
  REQUIRE_FALSE(ok.error());
  ueq::result<int> bad = ueq::errno_code(EINVAL);
  REQUIRE_FALSE(bad);
  REQUIRE(bad.error().value() == EINVAL);
  REQUIRE(bad.error() == std::errc::invalid_argument);
}

// The runtime's own descriptors: hide_fd() records the number it returns,
// close_own() forgets it before closing; next_own_fd() finds them in order.
// A number the program opens is never counted as the runtime's.
TEST_CASE("hide_fd records the runtime's own descriptors until close_own", "[runtime]") {
  const int a = ueq::hide_fd(::eventfd(0, EFD_CLOEXEC));
  const int b = ueq::hide_fd(::eventfd(0, EFD_CLOEXEC));
  REQUIRE(a >= 0);
  REQUIRE(b >= 0);
  REQUIRE(a != b);
  CHECK(ueq::is_own_fd(a));
  CHECK(ueq::is_own_fd(b));
  const int lo = a < b ? a : b, hi = a < b ? b : a;
  CHECK(ueq::next_own_fd(lo) == lo);
  const int next = ueq::next_own_fd(lo + 1);
  CHECK(next > lo);
  CHECK(next <= hi);
  CHECK(ueq::next_own_fd(hi) == hi);
  const int mine = ::eventfd(0, EFD_CLOEXEC);
  REQUIRE(mine >= 0);
  CHECK_FALSE(ueq::is_own_fd(mine));
  CHECK_FALSE(ueq::is_own_fd(-1));
  CHECK(ueq::close_own(a) == 0);
  CHECK_FALSE(ueq::is_own_fd(a));
  CHECK(::fcntl(a, F_GETFD) == -1);  // closed
  CHECK(ueq::close_own(b) == 0);
  CHECK_FALSE(ueq::is_own_fd(b));
  CHECK(ueq::next_own_fd(hi + 1) != hi);
  // A record that outlives its file (closed without close_own, the number
  // reused by a file of the program's) claims nothing.
  const int c = ueq::hide_fd(::eventfd(0, EFD_CLOEXEC));
  REQUIRE(c >= 0);
  ::close(c);
  REQUIRE(::dup2(mine, c) == c);
  CHECK_FALSE(ueq::is_own_fd(c));
  CHECK(ueq::next_own_fd(c) != c);  // forgotten
  ::close(c);
  ::close(mine);
}
