// Sleeping on the timer service: never early, lateness bounded, many sleepers.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <vector>

#include "support.hpp"
#include "ueq/uthread/uthread.hpp"

using namespace std::chrono_literals;

TEST_CASE("sleep_for never wakes early and is late by less than 200 ms", "[sleep]") {
  std::vector<ueq::mono_ns> lateness;
  std::atomic<int> early{0};
  auto r = ueq::run(
      [&] {
        for (int ms : {0, 1, 2, 5, 10, 20}) {
          const ueq::mono_ns t0 = ueq::monotonic_now();
          const ueq::mono_ns want = t0 + ms * 1'000'000LL;
          ueq::this_uthread::sleep_for(std::chrono::milliseconds(ms));
          const ueq::mono_ns now = ueq::monotonic_now();
          if (now < want) early.fetch_add(1);
          lateness.push_back(now - want);
        }
      },
      {.vcores = 2});
  REQUIRE(r.ok());
  CHECK(early.load() == 0);
  for (auto l : lateness)
    CHECK(l < 200'000'000);
}

TEST_CASE("many concurrent sleepers all wake after their own deadlines, in bounded time",
          "[sleep]") {
  const int n = static_cast<int>(ueq::test::scaled(2000));
  std::atomic<int> early{0}, woke{0};
  std::atomic<ueq::mono_ns> worst{0};
  auto r = ueq::run(
      [&] {
        std::vector<ueq::uthread_handle> hs;
        for (int i = 0; i < n; ++i)
          hs.push_back(*ueq::spawn([&, i] {
            // From its own start, so slow spawning (sanitizers) is not counted.
            const ueq::mono_ns d = ueq::monotonic_now() + (i % 50) * 1'000'000LL;  // 0..49 ms
            ueq::this_uthread::sleep_until(d);
            const ueq::mono_ns now = ueq::monotonic_now();
            if (now < d) early.fetch_add(1);
            ueq::mono_ns late = now - d, w = worst.load();
            while (late > w && !worst.compare_exchange_weak(w, late)) {
            }
            woke.fetch_add(1);
          }));
        for (auto& h : hs)
          (void)h.join();
      },
      {.vcores = 2});
  REQUIRE(r.ok());
  CHECK(woke.load() == n);
  CHECK(early.load() == 0);
  CHECK(worst.load() < 200'000'000);
}

TEST_CASE("sleeping on a plain thread waits at least the duration", "[sleep]") {
  const ueq::mono_ns t0 = ueq::monotonic_now();
  ueq::this_uthread::sleep_for(5ms);
  CHECK(ueq::monotonic_now() - t0 >= 5'000'000);
}
