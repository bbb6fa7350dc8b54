// The parker with uthreads: unpark before park, racing unparks, timeouts
// racing unparks, and plain threads and uthreads waking each other.
#include <catch2/catch.hpp>

#include <atomic>
#include <random>
#include <thread>
#include <vector>

#include "support.hpp"
#include "ueq/runtime/backoff.hpp"
#include "ueq/runtime/parker.hpp"
#include "ueq/uthread/uthread.hpp"

using namespace std::chrono_literals;

TEST_CASE("a uthread unparked before it parks does not block", "[park]") {
  bool first = false, ok = false;
  auto r = ueq::run([&] {
    ueq::parker p;
    first = p.unpark();
    ok = p.park();  // returns at once: the permit is there
  });
  REQUIRE(r.ok());
  CHECK(first);
  CHECK(ok);
}

TEST_CASE("racing unparks from plain threads wake a parked uthread exactly once per round",
          "[park]") {
  const int iters = static_cast<int>(ueq::test::scaled(3000));
  std::atomic<int> reported{0}, rounds{0};
  auto r = ueq::run(
      [&] {
        std::mt19937 rng(42);
        for (int it = 0; it < iters; ++it) {
          ueq::parker p;
          std::atomic<int> wins{0};
          std::atomic<bool> go{false};
          const int spin = static_cast<int>(rng() % 64);
          std::vector<std::thread> ts;
          for (int t = 0; t < 2; ++t)
            ts.emplace_back([&, t] {
              while (!go.load())
                ueq::cpu_relax();
              for (int s = 0; s < spin * t; ++s)
                ueq::cpu_relax();
              if (p.unpark()) wins.fetch_add(1);
            });
          go = true;
          if (it % 3 == 0) ueq::this_uthread::yield();  // park before or after the unparks
          while (!p.park()) {
          }
          for (auto& t : ts)
            t.join();
          reported.fetch_add(wins.load());
          rounds.fetch_add(1);
        }
      },
      {.vcores = 2});
  REQUIRE(r.ok());
  CHECK(rounds.load() == iters);
  CHECK(reported.load() == iters);  // exactly one unpark per round said "I woke it"
}

TEST_CASE("a uthread parked by a uthread on another vcore is woken (ping-pong)", "[park]") {
  const int iters = static_cast<int>(ueq::test::scaled(20000));
  int pings = 0, pongs = 0;
  auto r = ueq::run(
      [&] {
        ueq::parker a, b;
        auto h = ueq::spawn([&] {
          for (int i = 0; i < iters; ++i) {
            while (!b.park()) {
            }
            b.reset();
            ++pongs;
            a.unpark();
          }
        });
        for (int i = 0; i < iters; ++i) {
          ++pings;
          b.unpark();
          while (!a.park()) {
          }
          a.reset();
        }
        (void)h->join();
      },
      {.vcores = 2});
  REQUIRE(r.ok());
  CHECK(pings == iters);
  CHECK(pongs == iters);
}

TEST_CASE("a blocked plain thread and a blocked uthread wake each other", "[park]") {
  const int iters = static_cast<int>(ueq::test::scaled(5000));
  ueq::parker to_plain, to_uth;
  std::atomic<int> plain_seen{0};
  int uth_seen = 0;
  std::atomic<bool> started{false};
  std::thread plain([&] {
    ueq::test::wait_until([&] { return started.load(); });
    for (int i = 0; i < iters; ++i) {
      to_uth.unpark();
      while (!to_plain.park()) {
      }
      to_plain.reset();
      plain_seen.fetch_add(1);
    }
  });
  auto r = ueq::run(
      [&] {
        started = true;
        for (int i = 0; i < iters; ++i) {
          while (!to_uth.park()) {
          }
          to_uth.reset();
          ++uth_seen;
          to_plain.unpark();
        }
      },
      {.vcores = 2});
  plain.join();
  REQUIRE(r.ok());
  CHECK(uth_seen == iters);
  CHECK(plain_seen.load() == iters);
}

TEST_CASE("park with a deadline times out, and a racing unpark is never lost", "[park]") {
  const int iters = static_cast<int>(ueq::test::scaled(2000));
  std::atomic<int> lost{0}, early{0};
  auto r = ueq::run(
      [&] {
        std::mt19937 rng(9);
        for (int it = 0; it < iters; ++it) {
          ueq::parker p;
          const ueq::mono_ns t0 = ueq::monotonic_now();
          const ueq::mono_ns d = t0 + static_cast<ueq::mono_ns>(rng() % 30'000);
          std::atomic<bool> unparked{false};
          std::thread t([&] {
            for (unsigned s = rng() % 2000; s > 0; --s)
              ueq::cpu_relax();
            p.unpark();
            unparked = true;
          });
          const bool woke = p.park(d);
          if (!woke && ueq::monotonic_now() < d) early.fetch_add(1);
          t.join();
          // The unpark happened: the parker must say so now (woken() or a
          // second park returning at once), whichever way the race went.
          if (!p.woken() && !p.park(ueq::monotonic_now() + 1'000'000'000)) lost.fetch_add(1);
        }
      },
      {.vcores = 2});
  REQUIRE(r.ok());
  CHECK(early.load() == 0);
  CHECK(lost.load() == 0);
}
