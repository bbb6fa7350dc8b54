// The facade when threads block in it: wakeups from other threads, deadlines,
// signals (EINTR even with SA_RESTART; pwait's mask applied atomically),
// several waiters on one instance, and close of a registered fd while a
// thread waits.
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdint>
#include <limits>
#include <thread>
#include <vector>

#include "../support.hpp"
#include "pipe_fds.hpp"
#include "ueq/epoll.h"
#include "ueq/runtime/clock.hpp"
#include "ueq/uthread/uthread.hpp"

using ueq::test::pipe_fds;

namespace {
std::atomic<int> g_handled{0};
void on_usr1(int) {
  g_handled.fetch_add(1);
}

}  // namespace

TEST_CASE("epoll: a blocked waiter is woken by a write from another thread", "[epoll]") {
  const int ep = ueq_epoll_create1(EPOLL_CLOEXEC);
  REQUIRE(ep >= 0);
  pipe_fds p;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = 42;
  REQUIRE(ueq_epoll_ctl(ep, EPOLL_CTL_ADD, p.r, &ev) == 0);
  std::thread writer([&] { (void)::write(p.w, "x", 1); });
  epoll_event out[4];
  const int n = ueq_epoll_wait(ep, out, 4, 10000);
  writer.join();
  REQUIRE(n == 1);
  REQUIRE(out[0].data.u64 == 42);
  REQUIRE(out[0].events == EPOLLIN);
  REQUIRE(ueq_close(ep) == 0);
}

TEST_CASE("epoll: timeouts are never early; INT_MAX and huge timespecs do not overflow",
          "[epoll]") {
  const int ep = ueq_epoll_create1(0);
  epoll_event out[1];
  for (int ms : {1, 30}) {
    const auto t0 = ueq::monotonic_now();
    REQUIRE(ueq_epoll_wait(ep, out, 1, ms) == 0);
    REQUIRE(ueq::monotonic_now() - t0 >= ms * 1'000'000LL);
  }
  // A huge timeout must block (not return at once from an overflow): give
  // it a signal to end it.
  struct sigaction sa {};
  sa.sa_handler = on_usr1;
  REQUIRE(::sigaction(SIGUSR1, &sa, nullptr) == 0);
  const pthread_t self = ::pthread_self();
  std::atomic<bool> stop{false};
  std::thread kicker([&] {
    while (!stop.load()) {
      ::pthread_kill(self, SIGUSR1);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));  // pacing, not sync
    }
  });
  const auto t0 = ueq::monotonic_now();
  errno = 0;
  REQUIRE(ueq_epoll_wait(ep, out, 1, INT_MAX) == -1);
  REQUIRE(errno == EINTR);
  timespec huge{std::numeric_limits<time_t>::max(), 999999999};
  REQUIRE(ueq_epoll_pwait2(ep, out, 1, &huge, nullptr) == -1);
  REQUIRE(errno == EINTR);
  stop.store(true);
  kicker.join();
  REQUIRE(ueq::monotonic_now() - t0 < 10'000'000'000LL);
  ueq_close(ep);
}

TEST_CASE("epoll: a signal handler makes the wait return EINTR, even with SA_RESTART", "[epoll]") {
  struct sigaction sa {};
  sa.sa_handler = on_usr1;
  sa.sa_flags = SA_RESTART;
  REQUIRE(::sigaction(SIGUSR1, &sa, nullptr) == 0);
  const int ep = ueq_epoll_create1(0);
  const pthread_t self = ::pthread_self();
  const int before = g_handled.load();
  std::atomic<bool> stop{false};
  std::thread kicker([&] {
    while (!stop.load()) {
      ::pthread_kill(self, SIGUSR1);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));  // pacing, not sync
    }
  });
  epoll_event out[1];
  errno = 0;
  const int r = ueq_epoll_wait(ep, out, 1, 20000);
  const int e = errno;
  stop.store(true);
  kicker.join();
  REQUIRE(r == -1);
  REQUIRE(e == EINTR);
  REQUIRE(g_handled.load() > before);
  ueq_close(ep);
}

TEST_CASE(
    "epoll: pwait applies its mask atomically: a blocked signal pending before the "
    "call is delivered during it",
    "[epoll]") {
  struct sigaction sa {};
  sa.sa_handler = on_usr1;
  REQUIRE(::sigaction(SIGUSR1, &sa, nullptr) == 0);
  sigset_t block, old, during;
  sigemptyset(&block);
  sigaddset(&block, SIGUSR1);
  REQUIRE(::pthread_sigmask(SIG_BLOCK, &block, &old) == 0);
  ::pthread_kill(::pthread_self(), SIGUSR1);  // pending, blocked
  const int ep = ueq_epoll_create1(0);
  const int before = g_handled.load();
  sigemptyset(&during);  // unblock everything for the wait
  epoll_event out[1];
  errno = 0;
  const int r = ueq_epoll_pwait(ep, out, 1, 5000, &during);
  const int e = errno;
  REQUIRE(::pthread_sigmask(SIG_SETMASK, &old, nullptr) == 0);
  REQUIRE(r == -1);
  REQUIRE(e == EINTR);
  REQUIRE(g_handled.load() == before + 1);
  ueq_close(ep);
}

TEST_CASE("epoll: several threads waiting on one instance, level- and edge-triggered", "[epoll]") {
  for (std::uint32_t mode : {0u, static_cast<std::uint32_t>(EPOLLET)}) {
    const int ep = ueq_epoll_create1(0);
    constexpr int kWaiters = 4, kEvents = 200;
    pipe_fds p;
    epoll_event ev{};
    ev.events = EPOLLIN | mode;
    REQUIRE(ueq_epoll_ctl(ep, EPOLL_CTL_ADD, p.r, &ev) == 0);
    std::atomic<int> consumed{0}, wakeups{0};
    std::atomic<bool> stop{false};
    std::vector<std::thread> ts;
    for (int w = 0; w < kWaiters; ++w)
      ts.emplace_back([&] {
        epoll_event out[4];
        while (!stop.load()) {
          const int n = ueq_epoll_wait(ep, out, 4, 50);
          if (n <= 0) continue;
          wakeups.fetch_add(1);
          char c;
          while (::read(p.r, &c, 1) == 1)
            consumed.fetch_add(1);
        }
      });
    for (int i = 0; i < kEvents; ++i) {
      REQUIRE(::write(p.w, "e", 1) == 1);
      REQUIRE(ueq::test::wait_until([&] { return consumed.load() == i + 1; }));
    }
    stop.store(true);
    for (auto& t : ts)
      t.join();
    INFO("mode " << mode << ": " << wakeups.load() << " wakeups for " << kEvents << " events");
    // Every event consumed (a lost wakeup would have stalled a wait_until
    // above); waiters did not storm: at most one wake per waiter per event.
    // (A waiter may take two events in one wake: its read loop can catch
    // the next byte, written as soon as the previous one was consumed.)
    REQUIRE(consumed.load() == kEvents);
    REQUIRE(wakeups.load() > 0);
    REQUIRE(wakeups.load() <= kEvents * kWaiters);
    ueq_close(ep);
  }
}

TEST_CASE("epoll: closing a registered fd while another thread waits removes it", "[epoll]") {
  const int ep = ueq_epoll_create1(0);
  pipe_fds p;
  epoll_event ev{};
  ev.events = EPOLLIN;
  REQUIRE(ueq_epoll_ctl(ep, EPOLL_CTL_ADD, p.r, &ev) == 0);
  std::atomic<int> result{-2};
  std::thread waiter([&] {
    epoll_event out[1];
    result.store(ueq_epoll_wait(ep, out, 1, 300));
  });
  REQUIRE(ueq_close(p.r) == 0);
  p.r = -1;
  (void)::write(p.w, "x", 1);  // nobody reads it: the entry is gone
  waiter.join();
  REQUIRE(result.load() == 0);
  ueq_close(ep);
}

TEST_CASE("epoll: an epoll fd closed while a thread waits in it keeps reporting to that wait",
          "[epoll]") {
  const int ep = ueq_epoll_create1(0);
  REQUIRE(ep >= 0);
  pipe_fds p;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = 9;
  REQUIRE(ueq_epoll_ctl(ep, EPOLL_CTL_ADD, p.r, &ev) == 0);
  std::atomic<pid_t> tid{0};
  int n = -2;
  epoll_event out[2]{};
  std::thread waiter([&] {
    tid.store(ueq::test::current_tid());
    n = ueq_epoll_wait(ep, out, 2, 20000);
  });
  REQUIRE(ueq::test::wait_until([&] { return ueq::test::thread_sleeping(tid.load()); }));
  REQUIRE(ueq_close(ep) == 0);
  // The number is free: a new set may take it, and is empty.
  const int again = ueq_epoll_create1(0);
  REQUIRE(again >= 0);
  REQUIRE(::write(p.w, "x", 1) == 1);
  waiter.join();
  CHECK(n == 1);
  CHECK(out[0].data.u64 == 9);
  REQUIRE(ueq_epoll_wait(again, out, 2, 0) == 0);
  // A wait that starts after the close finds no set (the number's new set
  // aside): EBADF from the kernel.
  REQUIRE(ueq_close(again) == 0);
  errno = 0;
  REQUIRE(ueq_epoll_wait(ep, out, 2, 0) == -1);
  REQUIRE(errno == EBADF);
}

namespace {

// One vcore: a uthread waits (up to 20 s) on a set holding pipe p.r with
// `data`; once it has parked, another uthread runs `then`, then writes a
// byte to the pipe. What the wait returned, and how long it took.
struct uthread_wait {
  bool ran = false;
  int n = -2;
  epoll_event out[4]{};
  std::int64_t waited_ms = -1;
};
template <class Then>
uthread_wait wait_in_uthread(const pipe_fds& p, int ep, std::uint64_t data, Then then) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = data;
  REQUIRE(ueq_epoll_ctl(ep, EPOLL_CTL_ADD, p.r, &ev) == 0);
  uthread_wait w;
  std::atomic<bool> waiter_started{false};
  auto ran = ueq::run(
      [&] {
        auto waiter = ueq::spawn([&] {
          waiter_started.store(true);
          const auto t0 = std::chrono::steady_clock::now();
          w.n = ueq_epoll_wait(ep, w.out, 4, 20000);
          w.waited_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::steady_clock::now() - t0)
                            .count();
        });
        // Let the waiter reach its wait first: it runs when we yield.
        while (!waiter_started.load())
          ueq::this_uthread::yield();
        ueq::this_uthread::yield();
        then();
        (void)::write(p.w, "x", 1);
        if (waiter) (void)waiter->join();
      },
      {.vcores = 1});
  w.ran = ran.ok();
  return w;
}

}  // namespace

TEST_CASE("epoll: an epoll fd closed while a uthread waits in it keeps reporting to that wait",
          "[epoll][uthread]") {
  pipe_fds p;
  const int ep = ueq_epoll_create1(EPOLL_CLOEXEC);
  REQUIRE(ep >= 0);
  int closed = -2;
  const uthread_wait w = wait_in_uthread(p, ep, 78, [&] { closed = ueq_close(ep); });
  REQUIRE(w.ran);
  REQUIRE(closed == 0);
  REQUIRE(w.n == 1);
  REQUIRE(w.out[0].data.u64 == 78);
}

TEST_CASE("epoll: from a uthread, epoll_wait parks only that uthread", "[epoll][uthread]") {
  // One vcore: if the waiting uthread held it (blocked in the kernel), the
  // writer uthread could not run until the 20 s timeout, and the wait
  // would return 0.
  pipe_fds p;
  const int ep = ueq_epoll_create1(EPOLL_CLOEXEC);
  REQUIRE(ep >= 0);
  const uthread_wait w = wait_in_uthread(p, ep, 77, [] {});
  REQUIRE(w.ran);
  REQUIRE(w.n == 1);
  REQUIRE(w.out[0].data.u64 == 77);
  REQUIRE((w.out[0].events & EPOLLIN));
  REQUIRE(w.waited_ms < 10000);
  REQUIRE(ueq_close(ep) == 0);
}
