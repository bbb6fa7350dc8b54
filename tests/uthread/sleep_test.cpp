// Sleeping on the timer service: never early, lateness bounded, many sleepers;
// no sleep at all for a zero or negative duration or a past deadline.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
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

namespace {

// Runs fn in a child process, so that a sleep that never returns fails the
// test instead of hanging it. The child's status: 0 if fn returned true,
// -1 if it did not exit within `limit` (then it is killed), else 1.
template <class Fn>
int child_status_within(Fn fn, std::chrono::milliseconds limit) {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(fn() ? 0 : 1);
  REQUIRE(pid > 0);
  int status = 0;
  const bool exited =
      ueq::test::wait_until([&] { return ::waitpid(pid, &status, WNOHANG) == pid; }, limit);
  if (!exited) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    return -1;
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}

// Every way of asking for no sleep at all: each must return at once.
bool sleep_nothing() {
  ueq::this_uthread::sleep_for(-1s);
  ueq::this_uthread::sleep_for(-1ns);
  ueq::this_uthread::sleep_for(0ns);
  ueq::this_uthread::sleep_for(std::chrono::nanoseconds::min());
  ueq::this_uthread::sleep_for(std::chrono::hours::min());
  ueq::this_uthread::sleep_for(std::chrono::duration<double>(-0.5));
  ueq::this_uthread::sleep_for(std::chrono::duration<double>(NAN));
  ueq::this_uthread::sleep_until(ueq::monotonic_now() - 1'000'000'000);
  ueq::this_uthread::sleep_until(INT64_MIN);
  return true;
}

}  // namespace

TEST_CASE("sleep_for a negative or zero duration and sleep_until a past deadline return at once",
          "[sleep][bad_input]") {
  // Generous: a fork and a run() under sanitizers take milliseconds.
  const auto limit = 10s;
  SECTION("in a uthread") {
    CHECK(child_status_within(
              [] {
                bool done = false;
                auto r = ueq::run(
                    [&] {
                      const ueq::mono_ns t0 = ueq::monotonic_now();
                      done = sleep_nothing() && ueq::monotonic_now() - t0 < 1'000'000'000;
                    },
                    {.vcores = 1});
                return r.ok() && done;
              },
              limit) == 0);
  }
  SECTION("on a plain thread") {
    CHECK(child_status_within(
              [] {
                const ueq::mono_ns t0 = ueq::monotonic_now();
                return sleep_nothing() && ueq::monotonic_now() - t0 < 1'000'000'000;
              },
              limit) == 0);
  }
}

TEST_CASE("sleep_for a duration too long for nanoseconds sleeps for good", "[sleep][bad_input]") {
  // Saturates to no deadline rather than overflowing into a past one. The
  // child is still asleep when the bound passes, and is then killed.
  CHECK(child_status_within(
            [] {
              ueq::this_uthread::sleep_for(std::chrono::hours::max());
              return true;
            },
            100ms) == -1);
  CHECK(child_status_within(
            [] {
              ueq::this_uthread::sleep_for(std::chrono::duration<double>(1e300));
              return true;
            },
            100ms) == -1);
}
