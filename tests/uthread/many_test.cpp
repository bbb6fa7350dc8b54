// Scale: 100k uthreads alive at once, spawned and joined, on a default
// vm.max_map_count (the stack pool stops guarding and uses canaries).
#include <catch2/catch.hpp>

#include <atomic>
#include <vector>

#include "support.hpp"
#include "ueq/runtime/parker.hpp"
#include "ueq/uthread/stack_pool.hpp"
#include "ueq/uthread/sync.hpp"
#include "ueq/uthread/uthread.hpp"

namespace {
#if defined(__SANITIZE_THREAD__)
constexpr int kMany = 5000;  // TSan counts each fiber as a thread (limit 8128)
#else
constexpr int kMany = ueq::test::kSanitized ? 20000 : 100000;
#endif
}  // namespace

TEST_CASE("100k uthreads blocked at once are all woken and joined", "[scale]") {
  const int n = kMany;
  std::atomic<int> started{0}, finished{0};
  auto r = ueq::run(
      [&] {
        ueq::mutex m;
        ueq::condition_variable cv;
        bool go = false;
        std::vector<ueq::uthread_handle> hs;
        hs.reserve(n);
        for (int i = 0; i < n; ++i) {
          auto h = ueq::spawn([&] {
            started.fetch_add(1, std::memory_order_relaxed);
            std::unique_lock<ueq::mutex> l(m);
            cv.wait(l, [&] { return go; });
            finished.fetch_add(1, std::memory_order_relaxed);
          });
          if (!h) break;
          hs.push_back(std::move(*h));
        }
        // Every uthread is alive now (none can finish before go).
        while (started.load() < static_cast<int>(hs.size()))
          ueq::this_uthread::yield();
        {
          std::lock_guard<ueq::mutex> g(m);
          go = true;
        }
        cv.notify_all();
        for (auto& h : hs)
          (void)h.join();
      },
      {.vcores = 2});
  REQUIRE(r.ok());
  CHECK(started.load() == n);
  CHECK(finished.load() == n);
  auto st = ueq::stack_pool::stats();
  CHECK(st.stacks_carved >= static_cast<std::size_t>(n));
  CHECK(st.free_stacks == st.stacks_carved);  // every stack came back
}

TEST_CASE("stacks are reused after uthreads end", "[scale]") {
  auto before = ueq::stack_pool::stats();
  auto r = ueq::run(
      [&] {
        for (int i = 0; i < 1000; ++i)
          (void)ueq::spawn([] {})->join();
      },
      {.vcores = 1});
  REQUIRE(r.ok());
  auto after = ueq::stack_pool::stats();
  CHECK(after.stacks_carved - before.stacks_carved <= 2);
}

TEST_CASE("a custom stack size is honoured and usable", "[scale]") {
  bool ok = false;
  auto r = ueq::run([&] {
    (void)ueq::spawn(
        [&] {
          volatile char buf[400 * 1024];
          buf[0] = 1;
          buf[sizeof buf - 1] = 2;
          ok = buf[0] + buf[sizeof buf - 1] == 3;
        },
        {.stack_size = 1 << 20, .name = "big"})
        ->join();
  });
  REQUIRE(r.ok());
  CHECK(ok);
}
