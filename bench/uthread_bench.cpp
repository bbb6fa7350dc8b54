// ueq-bench uthread: switch, spawn and block costs of uthreads against a raw
// boost::context::fiber and Boost.Fiber, memory per parked uthread, timers.
//
// Every uthread case runs inside ueq::run with one vcore (so "same vcore"
// really is one host thread); the timed region excludes run()'s start-up.
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <boost/context/fiber.hpp>
#include <cstdio>
#include <vector>

#include "harness.hpp"
#include "roundtrips.hpp"
#include "ueq/runtime/parker.hpp"
#include "ueq/runtime/timer.hpp"
#include "ueq/uthread/sync.hpp"
#include "ueq/uthread/uthread.hpp"

// Last: Boost.Fiber defines a cpu_relax() macro that would clobber ueq::cpu_relax.
#include <boost/fiber/all.hpp>

namespace {

using ueq::bench::alternate;
using ueq::bench::now_ns;
namespace bctx = boost::context;

// ns per switch: two uthreads yielding to each other on one vcore.
double ueq_yield(int iters) {
  double r = 0;
  (void)ueq::run(
      [&] {
        auto other = ueq::spawn([&] {
          for (int i = 0; i < iters; ++i)
            ueq::this_uthread::yield();
        });
        const std::uint64_t t0 = now_ns();
        for (int i = 0; i < iters; ++i)
          ueq::this_uthread::yield();
        r = double(now_ns() - t0) / (2.0 * iters);
        (void)other->join();
      },
      {.vcores = 1});
  return r;
}

// ns per switch: a raw fiber resumed and suspending, back and forth.
double raw_fiber_switch(int iters) {
  bctx::fiber f([iters](bctx::fiber&& back) {
    for (int i = 0; i < iters; ++i)
      back = std::move(back).resume();
    return std::move(back);
  });
  const std::uint64_t t0 = now_ns();
  for (int i = 0; i < iters; ++i)
    f = std::move(f).resume();
  const double r = double(now_ns() - t0) / (2.0 * iters);
  f = std::move(f).resume();  // let it finish
  return r;
}

double boost_fiber_yield(int iters) {
  boost::fibers::fiber other([iters] {
    for (int i = 0; i < iters; ++i)
      boost::this_fiber::yield();
  });
  const std::uint64_t t0 = now_ns();
  for (int i = 0; i < iters; ++i)
    boost::this_fiber::yield();
  const double r = double(now_ns() - t0) / (2.0 * iters);
  other.join();
  return r;
}

double ueq_spawn_join(int iters) {
  double r = 0;
  (void)ueq::run(
      [&] {
        const std::uint64_t t0 = now_ns();
        for (int i = 0; i < iters; ++i)
          (void)ueq::spawn([] {})->join();
        r = double(now_ns() - t0) / iters;
      },
      {.vcores = 1});
  return r;
}

double boost_fiber_spawn_join(int iters) {
  const std::uint64_t t0 = now_ns();
  for (int i = 0; i < iters; ++i)
    boost::fibers::fiber([] {}).join();
  return double(now_ns() - t0) / iters;
}

// ns per round trip: A unparks B and parks; B wakes, unparks A and parks.
}  // namespace

double ueq::bench::park_roundtrip_same_vcore(int iters) {
  double r = 0;
  (void)ueq::run(
      [&] {
        ueq::parker a, b;
        auto other = ueq::spawn([&] {
          for (int i = 0; i < iters; ++i) {
            while (!b.park()) {
            }
            b.reset();
            a.unpark();
          }
        });
        const std::uint64_t t0 = now_ns();
        for (int i = 0; i < iters; ++i) {
          b.unpark();
          while (!a.park()) {
          }
          a.reset();
        }
        r = double(now_ns() - t0) / iters;
        (void)other->join();
      },
      {.vcores = 1});
  return r;
}

namespace {

// A round trip of the raw fiber: two switches.
double raw_fiber_roundtrip(int iters) {
  return 2 * raw_fiber_switch(iters);
}

long rss_bytes() {
  long pages = 0, rss = 0;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0;
    std::fclose(f);
  }
  return rss * sysconf(_SC_PAGESIZE);
}

double rss_per_parked(int n) {
  double r = 0;
  (void)ueq::run(
      [&] {
        ueq::semaphore gate(0);
        std::atomic<int> parked{0};
        std::vector<ueq::uthread_handle> hs;
        hs.reserve(n);
        const long before = rss_bytes();
        for (int i = 0; i < n; ++i)
          hs.push_back(*ueq::spawn([&] {
            parked.fetch_add(1, std::memory_order_relaxed);
            gate.acquire();
          }));
        while (parked.load() < n)
          ueq::this_uthread::yield();
        r = double(rss_bytes() - before) / n;
        gate.release(n);
        for (auto& h : hs)
          (void)h.join();
      },
      {.vcores = 1});
  return r;
}

}  // namespace

UEQ_BENCH(uthread, "uthread switch/spawn/block vs raw fiber and Boost.Fiber; memory; timers") {
  const int iters = static_cast<int>(ctx.work(1'000'000));
  {
    // First, and once: the pool keeps stacks (and their pages) for reuse,
    // so only a cold pool shows what 100k parked uthreads cost.
    std::vector<double> xs{rss_per_parked(100'000)};
    ctx.report({.name = "rss_per_parked_uthread_100k",
                .unit = "bytes",
                .value = ueq::bench::median(xs),
                .goal = "<= 16384",
                .goal_on_value = true,
                .note = "RSS growth / 100k uthreads parked on a semaphore, default stacks"});
  }
  {
    auto [v, b] = alternate(
        ctx.rounds(), [&] { return ueq_yield(iters); }, [&] { return raw_fiber_switch(iters); });
    ctx.report({.name = "yield",
                .unit = "ns/switch",
                .value = v,
                .baseline = "boost_context_fiber_resume",
                .baseline_value = b,
                .goal = "<= 2.5",
                .note = "two uthreads yielding on one vcore"});
  }
  {
    auto [v, b] = alternate(
        ctx.rounds(), [&] { return ueq_yield(iters); }, [&] { return boost_fiber_yield(iters); });
    ctx.report({.name = "yield_vs_boost_fiber",
                .unit = "ns/switch",
                .value = v,
                .baseline = "boost_this_fiber_yield",
                .baseline_value = b,
                .goal = "<= 0.33"});
  }
  {
    const int n = static_cast<int>(ctx.work(200'000));
    auto [v, b] = alternate(
        ctx.rounds(), [&] { return ueq_spawn_join(n); }, [&] { return boost_fiber_spawn_join(n); });
    ctx.report({.name = "spawn_join",
                .unit = "ns/op",
                .value = v,
                .baseline = "boost_fiber_create_join",
                .baseline_value = b,
                .goal = "<= 0.5"});
  }
  {
    const int n = static_cast<int>(ctx.work(500'000));
    auto [v, b] = alternate(
        ctx.rounds(), [&] { return ueq::bench::park_roundtrip_same_vcore(n); },
        [&] { return raw_fiber_roundtrip(n); });
    ctx.report({.name = "block_wake_same_vcore",
                .unit = "ns/roundtrip",
                .value = v,
                .baseline = "boost_context_fiber_pingpong",
                .baseline_value = b,
                .goal = "<= 5"});
  }
  {
    // Arm+cancel with 100k other timers armed.
    const int n = 100'000;
    ueq::timer_service svc;
    std::vector<ueq::timer> bg(n);
    for (int i = 0; i < n; ++i) {
      bg[i].fn = [](ueq::timer*, void*) noexcept {};
      svc.arm(bg[i], ueq::monotonic_now() + 1'000'000'000LL + i * 1000LL);
    }
    const int m = static_cast<int>(ctx.work(1'000'000));
    std::vector<double> xs;
    for (int r = 0; r < ctx.rounds(); ++r) {
      ueq::timer t;
      t.fn = [](ueq::timer*, void*) noexcept {};
      const std::uint64_t t0 = now_ns();
      for (int i = 0; i < m; ++i) {
        svc.arm(t, 2'000'000'000LL + (i & 1023) * 997LL);
        svc.cancel(t);
      }
      xs.push_back(double(now_ns() - t0) / m);
    }
    for (auto& t : bg)
      svc.cancel(t);
    ctx.report({.name = "timer_arm_cancel_100k_armed",
                .unit = "ns/op",
                .value = ueq::bench::median(xs),
                .note = "arm+cancel, 100k other timers armed"});
  }
  {
    // Wake lateness with 100k sleepers (deadlines spread over 100 ms) vs
    // clock_nanosleep from a plain thread.
    const int n = ctx.quick() ? 20'000 : 100'000;
    std::vector<double> late(n);
    (void)ueq::run(
        [&] {
          std::vector<ueq::uthread_handle> hs;
          hs.reserve(n);
          for (int i = 0; i < n; ++i)
            hs.push_back(*ueq::spawn([&, i] {
              // From its own start (spawning 100k takes a while), 50 ms
              // out plus a spread over 100 ms.
              const ueq::mono_ns d = ueq::monotonic_now() + 50'000'000 + (i % 1000) * 100'000LL;
              ueq::this_uthread::sleep_until(d);
              late[i] = double(ueq::monotonic_now() - d) / 1000.0;
            }));
          for (auto& h : hs)
            (void)h.join();
        },
        {.vcores = 2});
    std::vector<double> base_late;
    for (int i = 0; i < (ctx.quick() ? 100 : 500); ++i) {
      const ueq::mono_ns d = ueq::monotonic_now() + 200'000;
      timespec ts = ueq::to_timespec(d);
      clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr);
      base_late.push_back(double(ueq::monotonic_now() - d) / 1000.0);
    }
    ctx.report({.name = "sleep_lateness_p50_100k",
                .unit = "us",
                .value = ueq::bench::percentile(late, 50),
                .baseline = "clock_nanosleep_p50",
                .baseline_value = ueq::bench::percentile(base_late, 50)});
    ctx.report({.name = "sleep_lateness_p99_100k",
                .unit = "us",
                .value = ueq::bench::percentile(late, 99),
                .baseline = "clock_nanosleep_p99",
                .baseline_value = ueq::bench::percentile(base_late, 99)});
  }
}
