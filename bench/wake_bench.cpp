// ueq-bench wake: a plain thread wakes a parked uthread and it answers
// (a round trip), against an eventfd ping-pong between two threads pinned
// the same way; a pthread condvar and a spinning ping-pong are the floor.
//
// Pinning: "same vcore" puts the uthread's vcore and the plain thread on
// CPU 0; "cross vcore" puts the vcore on CPU 0 and the plain thread on
// CPU 1. The uthread runtime runs with one vcore.
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "harness.hpp"
#include "ueq/runtime/backoff.hpp"
#include "ueq/runtime/parker.hpp"
#include "ueq/uthread/uthread.hpp"

namespace {

using ueq::bench::alternate;
using ueq::bench::now_ns;

double uthread_wake(int iters, int plain_cpu) {
  ueq::parker to_uth, to_plain;
  std::atomic<bool> ready{false};
  double r = 0;
  std::thread plain([&] {
    ueq::bench::pin_to_cpu(plain_cpu);
    while (!ready.load())
      ::sched_yield();
    const std::uint64_t t0 = now_ns();
    for (int i = 0; i < iters; ++i) {
      to_uth.unpark();
      while (!to_plain.park()) {
      }
      to_plain.reset();
    }
    r = double(now_ns() - t0) / iters;
  });
  (void)ueq::run(
      [&] {
        ueq::bench::pin_to_cpu(0);  // pins this vcore
        ready = true;
        for (int i = 0; i < iters; ++i) {
          while (!to_uth.park()) {
          }
          to_uth.reset();
          to_plain.unpark();
        }
      },
      {.vcores = 1});
  plain.join();
  return r;
}

double eventfd_pingpong(int iters, int other_cpu) {
  const int a = ::eventfd(0, EFD_CLOEXEC), b = ::eventfd(0, EFD_CLOEXEC);
  std::thread other([&] {
    ueq::bench::pin_to_cpu(0);
    std::uint64_t v;
    for (int i = 0; i < iters; ++i) {
      (void)::read(a, &v, 8);
      v = 1;
      (void)::write(b, &v, 8);
    }
  });
  ueq::bench::pin_to_cpu(other_cpu);
  std::uint64_t v = 1;
  const std::uint64_t t0 = now_ns();
  for (int i = 0; i < iters; ++i) {
    v = 1;
    (void)::write(a, &v, 8);
    (void)::read(b, &v, 8);
  }
  const double r = double(now_ns() - t0) / iters;
  other.join();
  ::close(a);
  ::close(b);
  return r;
}

double condvar_pingpong(int iters) {
  std::mutex m;
  std::condition_variable cv;
  int turn = 0;
  std::thread other([&] {
    ueq::bench::pin_to_cpu(0);
    for (int i = 0; i < iters; ++i) {
      std::unique_lock<std::mutex> l(m);
      cv.wait(l, [&] { return turn == 1; });
      turn = 0;
      cv.notify_one();
    }
  });
  ueq::bench::pin_to_cpu(1);
  const std::uint64_t t0 = now_ns();
  for (int i = 0; i < iters; ++i) {
    std::unique_lock<std::mutex> l(m);
    turn = 1;
    cv.notify_one();
    cv.wait(l, [&] { return turn == 0; });
  }
  const double r = double(now_ns() - t0) / iters;
  other.join();
  return r;
}

double spin_pingpong(int iters) {
  std::atomic<int> turn{0};
  std::thread other([&] {
    ueq::bench::pin_to_cpu(0);
    for (int i = 0; i < iters; ++i) {
      while (turn.load(std::memory_order_acquire) != 1)
        ueq::cpu_relax();
      turn.store(0, std::memory_order_release);
    }
  });
  ueq::bench::pin_to_cpu(1);
  const std::uint64_t t0 = now_ns();
  for (int i = 0; i < iters; ++i) {
    turn.store(1, std::memory_order_release);
    while (turn.load(std::memory_order_acquire) != 0)
      ueq::cpu_relax();
  }
  const double r = double(now_ns() - t0) / iters;
  other.join();
  return r;
}

}  // namespace

UEQ_BENCH(wake, "plain thread wakes a parked uthread (round trip) vs eventfd; floors") {
  const int n = static_cast<int>(ctx.work(50'000));
  const char* pin_note = ueq::bench::cpu_count() > 1 ? "pinned" : "one CPU: cross = same";
  {
    auto [v, b] = alternate(
        ctx.rounds(), [&] { return uthread_wake(n / 5, 0); },
        [&] { return eventfd_pingpong(n / 5, 0); });
    ctx.report({.name = "wake_parked_same_vcore",
                .unit = "ns/roundtrip",
                .value = v,
                .baseline = "eventfd_pingpong_same_cpu",
                .baseline_value = b,
                .goal = "<= 1.1",
                .note = pin_note});
  }
  {
    auto [v, b] = alternate(
        ctx.rounds(), [&] { return uthread_wake(n, 1); }, [&] { return eventfd_pingpong(n, 1); });
    ctx.report({.name = "wake_parked_cross_vcore",
                .unit = "ns/roundtrip",
                .value = v,
                .baseline = "eventfd_pingpong_cross_cpu",
                .baseline_value = b,
                .goal = "<= 1.1",
                .note = pin_note});
  }
  {
    std::vector<double> c, s;
    for (int r = 0; r < ctx.rounds(); ++r) {
      c.push_back(condvar_pingpong(n));
      s.push_back(spin_pingpong(n));
    }
    ctx.report({.name = "condvar_pingpong_cross",
                .unit = "ns/roundtrip",
                .value = ueq::bench::median(c),
                .note = "floor: pthread condvar"});
    ctx.report({.name = "spin_pingpong_cross",
                .unit = "ns/roundtrip",
                .value = ueq::bench::median(s),
                .note = "floor: spinning"});
  }
}
