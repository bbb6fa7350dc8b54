// block_on from uthreads: it parks only the calling uthread; uthreads on two
// vcores and plain threads wake each other without a lost wakeup; deadlines
// hold for uthreads too.
#include <atomic>
#include <catch2/catch.hpp>
#include <random>
#include <thread>
#include <vector>

#include "../support.hpp"
#include "ueq/ceq/evq/block_on.hpp"
#include "ueq/uthread/uthread.hpp"

using ueq::block_on;
using ueq::deadline_after_ms;
using ueq::event_queue;
using ueq::event_queue_ptr;

namespace {
event_queue_ptr msgs(ueq::notify_policy p = ueq::notify_policy::wake_all) {
  return std::move(event_queue::create_messages({.notify = p})).value();
}
}  // namespace

TEST_CASE(
    "evq: two uthreads on ONE vcore ping-pong through block_on (it parks the uthread, "
    "not the vcore)",
    "[evq]") {
  const int rounds = static_cast<int>(ueq::test::scaled(20000));
  std::atomic<int> failures{0};
  auto r = ueq::run(
      [&] {
        auto ping = msgs(), pong = msgs();
        auto other = ueq::spawn([&] {
          for (int i = 0; i < rounds; ++i) {
            if (!block_on({ping.get()}, deadline_after_ms(10000))) failures.fetch_add(1);
            if (!pong->post(1).ok()) failures.fetch_add(1);
          }
        });
        for (int i = 0; i < rounds && failures.load() == 0; ++i) {
          if (!ping->post(1).ok()) failures.fetch_add(1);
          if (!block_on({pong.get()}, deadline_after_ms(10000))) failures.fetch_add(1);
        }
        (void)other->join();
      },
      {.vcores = 1});
  REQUIRE(r.ok());
  REQUIRE(failures.load() == 0);
}

TEST_CASE(
    "evq: uthread waiters on two vcores and plain-thread producers: every message "
    "arrives exactly once",
    "[evq][stress]") {
  for (ueq::notify_policy p : {ueq::notify_policy::wake_all, ueq::notify_policy::wake_one}) {
    const std::uint64_t per = ueq::test::scaled(10000);
    constexpr int kProducers = 2, kWaiters = 6;
    auto q = msgs(p);
    std::vector<std::atomic<std::uint8_t>> seen(kProducers * per);
    std::atomic<std::uint64_t> received{0};
    std::atomic<int> failures{0};
    std::vector<std::thread> producers;
    for (int k = 0; k < kProducers; ++k)
      producers.emplace_back([&, k] {
        for (std::uint64_t i = 0; i < per; ++i)
          if (!q->post(static_cast<std::uint32_t>(k * per + i)).ok()) failures.fetch_add(1);
      });
    auto r = ueq::run(
        [&] {
          std::vector<ueq::uthread_handle> ws;
          for (int w = 0; w < kWaiters; ++w)
            ws.push_back(*ueq::spawn([&] {
              while (received.load() < kProducers * per) {
                auto m = block_on({q.get()}, deadline_after_ms(200));
                if (!m) {
                  if (m.error() != std::errc::timed_out) failures.fetch_add(1);
                  continue;  // re-check the total: the run ends when all arrived
                }
                if (seen[m->msg.id].fetch_add(1) != 0) failures.fetch_add(1);
                received.fetch_add(1);
              }
            }));
          for (auto& h : ws)
            (void)h.join();
        },
        {.vcores = 2});
    for (auto& t : producers)
      t.join();
    REQUIRE(r.ok());
    REQUIRE(failures.load() == 0);
    REQUIRE(received.load() == kProducers * per);
  }
}

TEST_CASE("evq: a uthread's block_on deadline is never early", "[evq]") {
  std::int64_t late = -1;
  auto r = ueq::run(
      [&] {
        auto q = msgs();
        const auto d = deadline_after_ms(30);
        auto m = block_on({q.get()}, d);
        late = m ? -2 : ueq::monotonic_now() - d;
      },
      {.vcores = 1});
  REQUIRE(r.ok());
  REQUIRE(late >= 0);
  REQUIRE(late < 500'000'000);
}

// The one-waiter slot with a uthread waiter: its park timer races the post
// that claims it (see the plain-thread case in wakeup_stress_test.cpp).
TEST_CASE("evq: a lone uthread whose deadline races the post that claims it loses nothing",
          "[evq][stress]") {
  const int messages = static_cast<int>(ueq::test::scaled(10000));
  for (ueq::notify_policy p : {ueq::notify_policy::wake_all, ueq::notify_policy::wake_one}) {
    auto q = msgs(p);
    std::atomic<int> received{0}, timeouts{0}, failures{0};
    std::thread producer([&] {
      std::mt19937 rng(7);
      for (int i = 0; i < messages; ++i) {
        if (!ueq::test::wait_until([&] { return received.load() == i; })) {
          failures.fetch_add(1);
          return;
        }
        for (unsigned spin = rng() % 4096; spin > 0; --spin)
          ueq::cpu_relax();
        if (!q->post(1).ok()) failures.fetch_add(1);
      }
    });
    auto r = ueq::run(
        [&] {
          for (int i = 0; received.load() < messages && failures.load() == 0; ++i) {
            auto m = block_on({q.get()}, ueq::monotonic_now() + 1000 * (i % 20));
            if (q->waiters() != 0) failures.fetch_add(1);  // left its slot
            if (m)
              received.fetch_add(1);
            else if (m.error() == std::errc::timed_out)
              timeouts.fetch_add(1);
            else
              failures.fetch_add(1);
          }
        },
        {.vcores = 2});
    producer.join();
    INFO("timeouts " << timeouts.load());
    REQUIRE(r.ok());
    REQUIRE(failures.load() == 0);
    REQUIRE(received.load() == messages);
    REQUIRE(timeouts.load() > 0);
    REQUIRE(q->empty());
  }
}
