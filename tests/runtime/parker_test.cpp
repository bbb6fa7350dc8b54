// The parker: unpark before/after park, concurrent unparks, deadlines, and
// the leader/follower protocol of host polling (with a fake host poller).
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <barrier>
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "../support.hpp"
#include "ueq/runtime/parker.hpp"

using ueq::deadline_after_ms;
using ueq::monotonic_now;
using ueq::parker;

TEST_CASE("unpark before park: park returns at once; the flag stays until reset", "[runtime]") {
  parker p;
  REQUIRE(p.unpark());
  REQUIRE_FALSE(p.unpark());  // already set this round
  REQUIRE(p.park(deadline_after_ms(10000)));
  REQUIRE(p.park(deadline_after_ms(10000)));  // not consumed
  p.reset();
  REQUIRE_FALSE(p.woken());
  REQUIRE_FALSE(p.park(deadline_after_ms(5)));  // nothing: times out
}

TEST_CASE("park times out never early", "[runtime]") {
  parker p;
  for (int ms : {0, 3, 30}) {
    const auto d = deadline_after_ms(ms);
    REQUIRE_FALSE(p.park(d));
    REQUIRE(monotonic_now() >= d);
  }
}

TEST_CASE("racing unparks: exactly one reports it woke the waiter", "[runtime][stress]") {
  const int rounds = static_cast<int>(ueq::test::scaled(3000));
  for (int r = 0; r < rounds; ++r) {
    parker p;
    std::atomic<int> winners{0};
    std::barrier go(4);
    std::vector<std::thread> ts;
    for (int k = 0; k < 3; ++k)
      ts.emplace_back([&] {
        go.arrive_and_wait();
        if (p.unpark()) winners.fetch_add(1);
      });
    go.arrive_and_wait();
    const bool woke = p.park(deadline_after_ms(20000));
    for (auto& t : ts)
      t.join();
    REQUIRE(woke);
    REQUIRE(winners.load() == 1);
  }
}

TEST_CASE("a parked thread sleeps and is woken by another thread", "[runtime][stress]") {
  const int rounds = static_cast<int>(ueq::test::scaled(2000));
  parker a, b;
  std::atomic<int> fails{0};
  std::thread t([&] {
    for (int i = 0; i < rounds; ++i) {
      if (!a.park(deadline_after_ms(10000))) fails.fetch_add(1);
      a.reset();
      b.unpark();
    }
  });
  for (int i = 0; i < rounds; ++i) {
    a.unpark();
    REQUIRE(b.park(deadline_after_ms(10000)));
    b.reset();
  }
  t.join();
  REQUIRE(fails.load() == 0);
}

namespace {

// A fake host: poll() blocks in ppoll on an eventfd until wake() or the
// deadline, and counts how many threads are inside at once.
struct fake_host {
  int efd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  std::atomic<int> inside{0}, max_inside{0}, polls{0};
  ueq::host_poller ops{&poll_fn, &wake_fn, this};
  ~fake_host() { ::close(efd); }

  static void poll_fn(void* ctx, ueq::mono_ns deadline) noexcept {
    auto* h = static_cast<fake_host*>(ctx);
    const int now_in = h->inside.fetch_add(1) + 1;
    int m = h->max_inside.load();
    while (now_in > m && !h->max_inside.compare_exchange_weak(m, now_in)) {
    }
    h->polls.fetch_add(1);
    pollfd pfd{h->efd, POLLIN, 0};
    timespec ts, *tsp = nullptr;
    if (deadline != ueq::kNoDeadline) {
      ts = ueq::to_timespec(std::max<ueq::mono_ns>(0, deadline - monotonic_now()));
      tsp = &ts;
    }
    if (::ppoll(&pfd, 1, tsp, nullptr) > 0) {
      std::uint64_t v;
      (void)::read(h->efd, &v, sizeof v);
    }
    h->inside.fetch_sub(1);
  }
  static void wake_fn(void* ctx) noexcept {
    const std::uint64_t one = 1;
    (void)::write(static_cast<fake_host*>(ctx)->efd, &one, sizeof one);
  }
};

// A thread parked on p (30 s deadline); asleep() waits until it sleeps in
// the kernel, join() returns what park() returned.
struct sleeper {
  std::atomic<pid_t> tid{0};
  std::atomic<bool> woken{false};
  std::thread t;
  explicit sleeper(parker& p)
      : t([this, &p] {
          tid.store(ueq::test::current_tid());
          woken.store(p.park(deadline_after_ms(30000)));
        }) {}
  bool asleep() {
    return ueq::test::wait_until([&] { return ueq::test::thread_sleeping(tid.load()); });
  }
  bool join() {
    t.join();
    return woken.load();
  }
};

}  // namespace

TEST_CASE("with a host poller, one parked thread polls at a time and hands over on leaving",
          "[runtime]") {
  fake_host host;
  ueq::set_host_poller(&host.ops);
  constexpr int kThreads = 4;
  std::vector<parker> ps(kThreads);
  std::atomic<int> done{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < kThreads; ++i)
    ts.emplace_back([&, i] {
      if (ps[i].park(deadline_after_ms(30000))) done.fetch_add(1);
    });
  // Someone polls while they all wait.
  REQUIRE(ueq::test::wait_until([&] { return host.inside.load() == 1; }));
  // Wake them one by one; each time the host must be polled again by one of
  // the remaining waiters (the leaving leader hands over).
  for (int i = 0; i < kThreads; ++i) {
    ps[i].unpark();
    REQUIRE(ueq::test::wait_until([&] { return done.load() == i + 1; }));
    if (i + 1 < kThreads) REQUIRE(ueq::test::wait_until([&] { return host.inside.load() == 1; }));
  }
  for (auto& t : ts)
    t.join();
  ueq::set_host_poller(nullptr);
  REQUIRE(host.max_inside.load() == 1);  // never two pollers at once
  REQUIRE(host.inside.load() == 0);
}

TEST_CASE("a no_host_poll parker sleeps without polling, and is woken", "[runtime]") {
  fake_host host;
  ueq::set_host_poller(&host.ops);
  parker p{parker::no_host_poll};
  sleeper s(p);
  // Asleep in the kernel, and never inside the host poll.
  REQUIRE(s.asleep());
  REQUIRE(host.polls.load() == 0);
  REQUIRE(p.unpark());
  REQUIRE(s.join());
  ueq::set_host_poller(nullptr);
  REQUIRE(host.polls.load() == 0);
}

namespace {

// Where the waker and the remover are, for the poller-removal test. The
// hooks are plain functions, so they reach it through a pointer.
struct removal_window {
  std::mutex mu;
  std::condition_variable cv;
  bool waker_inside = false;     // the waker holds the loaded poller
  bool remover_waiting = false;  // set_host_poller(nullptr) waits for it
  bool remover_done = false;     // set_host_poller(nullptr) has returned
  bool waker_saw_done = false;   // the waker found the removal finished
};
removal_window* g_window = nullptr;

// in_poller_use: hold the waker inside its window until the remover either
// waits for it (correct) or has finished without waiting (the poller is
// about to be freed under the waker).
void hold_waker_in_window() {
  removal_window& w = *g_window;
  std::unique_lock<std::mutex> l(w.mu);
  w.waker_inside = true;
  w.cv.notify_all();
  w.cv.wait_for(l, std::chrono::seconds(20), [&] { return w.remover_waiting || w.remover_done; });
  w.waker_saw_done = w.remover_done;
}

void note_removal_waits() {
  std::lock_guard<std::mutex> l(g_window->mu);
  g_window->remover_waiting = true;
  g_window->cv.notify_all();
}

}  // namespace

TEST_CASE("removing the host poller waits for an unpark inside its wake(); then it may be freed",
          "[runtime]") {
  auto* host = new fake_host;
  ueq::set_host_poller(&host->ops);
  removal_window w;
  g_window = &w;
  const ueq::detail::parker_test_hooks hooks{&hold_waker_in_window, &note_removal_waits};
  ueq::detail::set_parker_test_hooks(&hooks);

  parker p;
  std::thread leader([&] { (void)p.park(deadline_after_ms(30000)); });
  REQUIRE(ueq::test::wait_until([&] { return host->inside.load() == 1; }));  // polling
  std::thread waker([&] { p.unpark(); });  // replaces kPolling: wakes the poll
  {
    std::unique_lock<std::mutex> l(w.mu);
    REQUIRE(w.cv.wait_for(l, std::chrono::seconds(20), [&] { return w.waker_inside; }));
  }
  ueq::set_host_poller(nullptr);
  {
    std::lock_guard<std::mutex> l(w.mu);
    w.remover_done = true;
    w.cv.notify_all();
  }
  delete host;  // under ASan, a wake() after this is a use-after-free report
  waker.join();
  leader.join();
  ueq::detail::set_parker_test_hooks(nullptr);
  g_window = nullptr;
  REQUIRE(w.remover_waiting);
  REQUIRE_FALSE(w.waker_saw_done);
  REQUIRE(p.woken());
}

TEST_CASE("a host poller installed while threads sleep is polled by one of them", "[runtime]") {
  fake_host host;
  parker p;
  sleeper s(p);
  REQUIRE(s.asleep());  // in the kernel, with no poller installed
  ueq::set_host_poller(&host.ops);
  // The sleeper is offered the role and polls the new poller.
  REQUIRE(ueq::test::wait_until([&] { return host.inside.load() == 1; }));
  REQUIRE(p.unpark());
  REQUIRE(s.join());
  ueq::set_host_poller(nullptr);
  REQUIRE(host.polls.load() >= 1);
}
