// Taps under concurrency: block_on driving the host poll, add/remove racing
// with dispatch, close and fd-number reuse racing with a poller.
#include <atomic>
#include <thread>
#include <vector>

#include "../support.hpp"
#include "taps_support.hpp"
#include "ueq/ceq/evq/block_on.hpp"

using namespace ueq;
using ueq::test::fd_pair;

TEST_CASE("a thread blocked in block_on polls the host and receives its tap event", "[taps]") {
  auto svc = tap_service::instance();
  REQUIRE(svc.ok());
  fd_pair p;
  ueq::test::make_pipe(p);
  auto q = ueq::test::msg_queue();
  auto t = tap_add({.fd = p.a, .filter = kTapReadable, .queue = q, .id = 3});
  REQUIRE(t.ok());
  std::atomic<bool> wrote{false};
  std::thread writer([&] {
    // The reader may or may not be blocked yet: either way it must get it.
    char c = 'y';
    wrote.store(::write(p.b, &c, 1) == 1);
  });
  auto r = block_on({q.get()}, deadline_after_ms(10000));
  writer.join();
  REQUIRE(wrote.load());
  REQUIRE(r.ok());
  REQUIRE(r->msg.id == 3);
  REQUIRE(r->msg.bits == kTapReadable);
  REQUIRE(tap_remove(*t).ok());
}

TEST_CASE("two blocked threads on different fds: both are served while one polls", "[taps]") {
  fd_pair p1, p2;
  ueq::test::make_pipe(p1);
  ueq::test::make_pipe(p2);
  auto q1 = ueq::test::msg_queue(), q2 = ueq::test::msg_queue();
  auto t1 = tap_add({.fd = p1.a, .filter = kTapReadable, .queue = q1});
  auto t2 = tap_add({.fd = p2.a, .filter = kTapReadable, .queue = q2});
  REQUIRE(t1.ok());
  REQUIRE(t2.ok());
  const int rounds = static_cast<int>(ueq::test::scaled(200));
  std::atomic<int> got1{0}, got2{0}, fails{0};
  auto reader = [&](event_queue_ptr q, int fd, std::atomic<int>& got) {
    for (int i = 0; i < rounds; ++i) {
      if (!block_on({q.get()}, deadline_after_ms(10000)).ok()) {
        fails.fetch_add(1);
        return;
      }
      char buf[64];
      while (::read(fd, buf, sizeof buf) > 0) {
      }
      got.fetch_add(1);
    }
  };
  std::thread a(reader, q1, p1.a, std::ref(got1)), b(reader, q2, p2.a, std::ref(got2));
  char c = 'z';
  for (int i = 0; i < rounds && fails.load() == 0; ++i) {
    // One write per round to each pipe, after the reader took the last one.
    REQUIRE(ueq::test::wait_until([&] { return got1.load() == i && got2.load() == i; }));
    REQUIRE(::write(p1.b, &c, 1) == 1);
    REQUIRE(::write(p2.b, &c, 1) == 1);
  }
  a.join();
  b.join();
  REQUIRE(fails.load() == 0);
  REQUIRE(tap_remove(*t1).ok());
  REQUIRE(tap_remove(*t2).ok());
}

TEST_CASE("add/remove/modify race with dispatch on one fd", "[taps][stress]") {
  {
    auto svc = ueq::test::service_under_test();
    fd_pair p;
    ueq::test::make_socketpair(p);
    std::atomic<bool> stop{false};
    std::atomic<int> errors{0};
    std::thread poller([&] {
      while (!stop.load())
        (void)svc->poll(deadline_after_ms(5));
    });
    std::thread writer([&] {
      char buf[256] = {};
      while (!stop.load()) {
        (void)::write(p.b, buf, sizeof buf);
        while (::read(p.a, buf, sizeof buf) > 0) {
        }
        std::this_thread::yield();
      }
    });
    const int iters = static_cast<int>(ueq::test::scaled(2000));
    std::vector<std::thread> ts;
    for (int k2 = 0; k2 < 3; ++k2)
      ts.emplace_back([&, q = ueq::test::msg_queue()] {  // made here: Catch2 is main-thread only
        for (int i = 0; i < iters; ++i) {
          auto t = svc->add({.fd = p.a, .filter = kTapReadable | kTapWritable, .queue = q});
          if (!t) {
            errors.fetch_add(1);
            continue;
          }
          if (!svc->modify(*t, kTapReadable, i).ok()) errors.fetch_add(1);
          if (!svc->remove(*t).ok()) errors.fetch_add(1);
          // After remove() returned, the tap posts nothing more: drain, then
          // check that no post arrives for this queue from a later dispatch.
          event_msg m;
          while (q->try_get(m)) {
          }
        }
      });
    for (auto& t : ts)
      t.join();
    stop.store(true);
    poller.join();
    writer.join();
    REQUIRE(errors.load() == 0);
  }
}

TEST_CASE("close_fd and number reuse racing with a poller: no post after close returns",
          "[taps][stress]") {
  {
    auto svc = ueq::test::service_under_test();
    std::atomic<bool> stop{false};
    std::thread poller([&] {
      while (!stop.load())
        (void)svc->poll(deadline_after_ms(5));
    });
    const int iters = static_cast<int>(ueq::test::scaled(500));
    int late_posts = 0;
    for (int i = 0; i < iters; ++i) {
      int f[2];
      REQUIRE(::pipe2(f, O_NONBLOCK | O_CLOEXEC) == 0);
      auto q = ueq::test::msg_queue();
      auto t = svc->add({.fd = f[0], .filter = kTapReadable | kTapHangup, .queue = q});
      REQUIRE(t.ok());
      char c = 'q';
      REQUIRE(::write(f[1], &c, 1) == 1);
      // Every other round, let the poller deliver the write first; otherwise
      // close while it may be dispatching.
      if (i % 2 == 0) REQUIRE(ueq::test::wait_until([&] { return q->counters().posts >= 1; }));
      REQUIRE(svc->close_fd(f[0]).ok());
      const std::uint64_t posts = q->counters().posts;
      ::close(f[1]);  // would hang up the closed read end: must not be posted
      (void)svc->poll(deadline_after_ms(1));
      if (q->counters().posts != posts) ++late_posts;
    }
    stop.store(true);
    poller.join();
    REQUIRE(late_posts == 0);
    REQUIRE(svc->counters().posts >= static_cast<std::uint64_t>(iters / 2));
  }
}
