// Scheduling: run order and fairness, join and detach, run() lifetime.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <climits>
#include <functional>
#include <thread>
#include <vector>

#include "support.hpp"
#include "ueq/runtime/backoff.hpp"
#include "ueq/runtime/lock.hpp"
#include "ueq/runtime/parker.hpp"
#include "ueq/runtime/vcore.hpp"
#include "ueq/uthread/sched.hpp"
#include "ueq/uthread/uthread.hpp"

using namespace std::chrono_literals;

TEST_CASE("run executes fn in a uthread and returns after it ends", "[sched]") {
  bool ran = false, was_uthread = false;
  auto r = ueq::run([&] {
    ran = true;
    was_uthread = ueq::this_uthread::active();
  });
  REQUIRE(r.ok());
  CHECK(ran);
  CHECK(was_uthread);
  CHECK_FALSE(ueq::this_uthread::active());
}

TEST_CASE("spawn without a running runtime fails with ENXIO", "[sched]") {
  auto h = ueq::spawn([] {});
  REQUIRE_FALSE(h.ok());
  CHECK(h.error() == std::errc::no_such_device_or_address);
}

TEST_CASE("a second concurrent run is refused with EBUSY", "[sched]") {
  std::error_code inner;
  auto r = ueq::run([&] {
    auto r2 = ueq::run([] {});
    inner = r2.error();
  });
  REQUIRE(r.ok());
  CHECK(inner == std::errc::device_or_resource_busy);
}

TEST_CASE("run refuses an empty function with EINVAL", "[sched][bad_input]") {
  auto r = ueq::run(std::function<void()>{});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error() == std::errc::invalid_argument);
  // The refusal left no runtime behind: the next run works.
  bool ran = false;
  auto again = ueq::run([&] { ran = true; });
  CHECK(again.ok());
  CHECK(ran);
}

TEST_CASE("spawn refuses an empty function with EINVAL", "[sched][bad_input]") {
  std::error_code err;
  auto r = ueq::run([&] {
    auto h = ueq::spawn(std::function<void()>{});
    if (!h) err = h.error();
  });
  REQUIRE(r.ok());
  CHECK(err == std::errc::invalid_argument);
}

TEST_CASE("run refuses more vcores than max_vcore_count with EINVAL", "[sched][bad_input]") {
  const unsigned max = ueq::max_vcore_count();
  CHECK(max == ueq::kVcoresPerCpu * ueq::default_vcore_count());
  for (unsigned n : {UINT_MAX, max + 1}) {
    bool ran = false;
    auto r = ueq::run([&] { ran = true; }, {.vcores = n});
    REQUIRE_FALSE(r.ok());
    CHECK(r.error() == std::errc::invalid_argument);
    CHECK_FALSE(ran);
  }
  // More vcores than CPUs is allowed.
  std::atomic<int> ran{0};
  auto r = ueq::run([&] { ran.fetch_add(1); }, {.vcores = ueq::default_vcore_count() + 1});
  REQUIRE(r.ok());
  CHECK(ran.load() == 1);
}

TEST_CASE("on one vcore uthreads run in spawn order and yield round-robin", "[sched]") {
  std::vector<int> trace;
  auto r = ueq::run(
      [&] {
        std::vector<ueq::uthread_handle> hs;
        for (int i = 0; i < 3; ++i)
          hs.push_back(*ueq::spawn([&trace, i] {
            for (int k = 0; k < 3; ++k) {
              trace.push_back(i);
              ueq::this_uthread::yield();
            }
          }));
        for (auto& h : hs)
          (void)h.join();
      },
      {.vcores = 1});
  REQUIRE(r.ok());
  CHECK(trace == std::vector<int>{0, 1, 2, 0, 1, 2, 0, 1, 2});
}

TEST_CASE("on one vcore a woken uthread runs before the queued ones (runnext)", "[sched]") {
  std::vector<char> trace;
  auto r = ueq::run(
      [&] {
        ueq::parker p;
        auto w = *ueq::spawn([&] {
          while (!p.park()) {
          }
          trace.push_back('w');
        });
        ueq::this_uthread::yield();  // w runs and parks
        auto x1 = *ueq::spawn([&] { trace.push_back('1'); });
        auto x2 = *ueq::spawn([&] { trace.push_back('2'); });
        p.unpark();                  // w: woken by this vcore
        ueq::this_uthread::yield();  // x1 and x2 were queued first
        trace.push_back('m');
        (void)w.join();
        (void)x1.join();
        (void)x2.join();
      },
      {.vcores = 1});
  REQUIRE(r.ok());
  CHECK(trace == std::vector<char>{'w', '1', '2', 'm'});
}

TEST_CASE("two uthreads waking each other do not starve a queued one", "[sched]") {
  // A and B hand a token back and forth through parkers, each waking the
  // other into the runnext slot; C waits in the FIFO meanwhile. It must
  // get its turn within a few hand-offs, not after the last.
  const int rounds = 1000;
  constexpr int kSpawnAt = 10;
  int round = 0, c_ran_at = -1;
  auto r = ueq::run(
      [&] {
        ueq::parker pa, pb;
        ueq::uthread_handle c;
        auto b = *ueq::spawn([&] {
          for (int i = 0; i < rounds; ++i) {
            while (!pb.park()) {
            }
            pb.reset();
            pa.unpark();
          }
        });
        for (int i = 0; i < rounds; ++i) {
          round = i;
          // Spawned once the hand-offs are under way: C queues behind them.
          if (i == kSpawnAt) c = *ueq::spawn([&] { c_ran_at = round; });
          pb.unpark();
          while (!pa.park()) {
          }
          pa.reset();
        }
        (void)b.join();
        (void)c.join();
      },
      {.vcores = 1});
  REQUIRE(r.ok());
  CHECK(c_ran_at >= kSpawnAt);
  CHECK(c_ran_at < kSpawnAt + 20);
}

TEST_CASE("a due timer fires while uthreads switch directly among themselves", "[sched]") {
  // Two uthreads yield to each other without ever leaving the vcore idle,
  // so only the switch path itself can notice the sleeper's deadline.
  std::atomic<bool> woke{false};
  bool woke_in_time = false;  // before the yielders gave up
  long yields = 0;
  auto r = ueq::run(
      [&] {
        auto s = *ueq::spawn([&] {
          ueq::this_uthread::sleep_for(5ms);
          woke.store(true);
        });
        auto y = *ueq::spawn([&] {
          const auto cap = std::chrono::steady_clock::now() + 10s;
          while (!woke.load() && std::chrono::steady_clock::now() < cap)
            ueq::this_uthread::yield();
        });
        const auto cap = std::chrono::steady_clock::now() + 10s;
        while (!woke.load() && std::chrono::steady_clock::now() < cap) {
          ueq::this_uthread::yield();
          ++yields;
        }
        woke_in_time = woke.load();
        (void)s.join();
        (void)y.join();
      },
      {.vcores = 1});
  REQUIRE(r.ok());
  CHECK(woke_in_time);
  CHECK(yields > 0);
}

TEST_CASE("yielding uthreads on 2 vcores all make progress (no starvation)", "[sched]") {
  const int n = 16;
  const int rounds = static_cast<int>(ueq::test::scaled(2000));
  std::vector<std::atomic<int>> progress(n);
  auto r = ueq::run(
      [&] {
        std::vector<ueq::uthread_handle> hs;
        for (int i = 0; i < n; ++i)
          hs.push_back(*ueq::spawn([&, i] {
            for (int k = 0; k < rounds; ++k) {
              progress[i].fetch_add(1, std::memory_order_relaxed);
              ueq::this_uthread::yield();
            }
          }));
        for (auto& h : hs)
          (void)h.join();
      },
      {.vcores = 2});
  REQUIRE(r.ok());
  for (auto& p : progress)
    CHECK(p.load() == rounds);
}

TEST_CASE("join returns after the uthread ended and sees its writes", "[sched]") {
  const int n = static_cast<int>(ueq::test::scaled(2000));
  std::atomic<int> bad{0};
  auto r = ueq::run(
      [&] {
        for (int i = 0; i < n; ++i) {
          int v = 0;
          auto h = ueq::spawn([&v, i] {
            if (i % 3 == 0) ueq::this_uthread::yield();
            v = i + 1;
          });
          if (i % 2) ueq::this_uthread::yield();  // sometimes it has already ended
          if (h->join()) bad.fetch_add(1);
          if (v != i + 1) bad.fetch_add(1);
        }
      },
      {.vcores = 2});
  REQUIRE(r.ok());
  CHECK(bad.load() == 0);
}

TEST_CASE("join errors: EDEADLK on joining oneself, EINVAL when not joinable", "[sched]") {
  std::error_code self, twice, first;
  auto r = ueq::run(
      [&] {
        ueq::uthread_handle h;
        std::atomic<bool> done{false};
        // One vcore: the child runs only when we yield, after h is set.
        h = std::move(*ueq::spawn([&] {
          self = h.join();
          done = true;
        }));
        while (!done.load())
          ueq::this_uthread::yield();
        first = h.join();
        twice = h.join();
      },
      {.vcores = 1});
  REQUIRE(r.ok());
  CHECK(self == std::errc::resource_deadlock_would_occur);
  CHECK(!first);
  CHECK(twice == std::errc::invalid_argument);
}

TEST_CASE("detached uthreads run to completion and run() waits for them", "[sched]") {
  const int n = static_cast<int>(ueq::test::scaled(5000));
  std::atomic<int> done{0};
  auto r = ueq::run(
      [&] {
        for (int i = 0; i < n; ++i) {
          if (i % 2) {
            auto h = ueq::spawn([&] {
              ueq::this_uthread::yield();
              done.fetch_add(1);
            });
            h->detach();
          } else {
            (void)ueq::spawn(
                [&] {
                  ueq::this_uthread::yield();
                  done.fetch_add(1);
                },
                {.detached = true});
          }
        }
      },
      {.vcores = 2});
  REQUIRE(r.ok());
  CHECK(done.load() == n);
}

TEST_CASE("a plain thread can spawn and join uthreads while the runtime runs", "[sched]") {
  std::atomic<bool> go{false}, finish{false};
  std::atomic<int> sum{0};
  std::error_code err;
  std::thread plain([&] {
    ueq::test::wait_until([&] { return go.load(); });
    std::vector<ueq::uthread_handle> hs;
    for (int i = 1; i <= 100; ++i) {
      auto h = ueq::spawn([&sum, i] { sum.fetch_add(i); });
      if (!h) {
        err = h.error();
        break;
      }
      hs.push_back(std::move(*h));
    }
    for (auto& h : hs)
      (void)h.join();
    finish = true;
  });
  auto r = ueq::run(
      [&] {
        go = true;
        // Keep the runtime alive, blocking (not spinning) in a uthread.
        while (!finish.load())
          ueq::this_uthread::sleep_for(1ms);
      },
      {.vcores = 2});
  plain.join();
  REQUIRE(r.ok());
  CHECK(!err);
  CHECK(sum.load() == 5050);
}

TEST_CASE("ueq::backoff in a uthread yields to the other uthreads of its vcore", "[sched]") {
  bool flag_seen = false;
  std::uint32_t yields = 0;
  auto r = ueq::run(
      [&] {
        bool flag = false;  // one vcore: no data race, only interleaving
        auto setter = ueq::spawn([&] { flag = true; });
        ueq::backoff b;
        // Without the yield hook the setter could never run on this vcore;
        // bounded so a regression fails instead of hanging.
        for (int i = 0; i < 1'000'000 && !flag; ++i)
          b.pause();
        flag_seen = flag;
        yields = b.yields();
        (void)setter->join();
      },
      {.vcores = 1});
  REQUIRE(r.ok());
  CHECK(flag_seen);
  CHECK(yields >= 1);
}

TEST_CASE("a backoff does not switch uthreads while the thread holds an os_mutex", "[sched]") {
  // Uthread a holds an os_mutex and spins on a spin lock another thread
  // holds for a while; uthread b, queued behind it on the one vcore, wants
  // the os_mutex. Had a's backoff switched to b, b would block the vcore's
  // thread on the mutex and a would never run again. In a child process,
  // so that a hang is seen (and ended) by the parent.
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ueq::os_mutex m;
    ueq::spin_lock l;
    std::atomic<bool> held{false}, a_spinning{false};
    std::thread holder([&] {
      l.lock();
      held.store(true);
      while (!a_spinning.load()) {
      }
      // Contention well past the backoff's spin rounds (about 1 us).
      const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(20);
      while (std::chrono::steady_clock::now() < until) {
      }
      l.unlock();
    });
    while (!held.load()) {
    }
    int order = 0, a_done = -1, b_done = -1;
    auto r = ueq::run(
        [&] {
          auto b = ueq::spawn([&] {
            ueq::lock_guard<ueq::os_mutex> g(m);
            b_done = ++order;
          });
          {
            ueq::lock_guard<ueq::os_mutex> g(m);
            a_spinning.store(true);
            ueq::lock_guard<ueq::spin_lock> s(l);
            a_done = ++order;
          }
          (void)b->join();
        },
        {.vcores = 1});
    holder.join();
    ::_exit(r.ok() && a_done == 1 && b_done == 2 ? 0 : 1);
  }
  int st = 0;
  const bool ended = ueq::test::wait_until([&] { return ::waitpid(pid, &st, WNOHANG) == pid; },
                                           std::chrono::seconds(20));
  if (!ended) {
    ::kill(pid, SIGKILL);
    (void)::waitpid(pid, &st, 0);
  }
  REQUIRE(ended);
  REQUIRE(WIFEXITED(st));
  REQUIRE(WEXITSTATUS(st) == 0);
}
