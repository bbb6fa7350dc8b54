// ueq-bench evq: blocking on event queues, from uthreads and plain threads.
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <barrier>
#include <thread>
#include <vector>

#include "harness.hpp"
#include "roundtrips.hpp"
#include "ueq/ceq/evq/block_on.hpp"
#include "ueq/uthread/uthread.hpp"

namespace {

using ueq::bench::alternate;
using ueq::bench::now_ns;

ueq::event_queue_ptr queue(ueq::notify_policy p = ueq::notify_policy::wake_all) {
  return std::move(ueq::event_queue::create_messages({.notify = p})).value();
}

// Two uthreads on one vcore ping-pong through two event queues.
double blockon_same_vcore(int iters) {
  double r = 0;
  (void)ueq::run(
      [&] {
        auto ping = queue(), pong = queue();
        auto other = ueq::spawn([&] {
          for (int i = 0; i < iters; ++i) {
            (void)ueq::block_on({ping.get()});
            (void)pong->post(1);
          }
        });
        const std::uint64_t t0 = now_ns();
        for (int i = 0; i < iters; ++i) {
          (void)ping->post(1);
          (void)ueq::block_on({pong.get()});
        }
        r = double(now_ns() - t0) / iters;
        (void)other->join();
      },
      {.vcores = 1});
  return r;
}

// Two threads pinned to different CPUs ping-pong through two event queues.
double blockon_roundtrip(int iters) {
  auto ping = queue(), pong = queue();
  std::thread other([&] {
    ueq::bench::pin_to_cpu(1);
    for (int i = 0; i < iters; ++i) {
      (void)ueq::block_on({ping.get()});
      (void)pong->post(1);
    }
  });
  ueq::bench::pin_to_cpu(0);
  const std::uint64_t t0 = now_ns();
  for (int i = 0; i < iters; ++i) {
    (void)ping->post(1);
    (void)ueq::block_on({pong.get()});
  }
  const double r = double(now_ns() - t0) / iters;
  other.join();
  return r;
}

// The same round trip through two eventfds (blocking reads).
double eventfd_roundtrip(int iters) {
  const int a = ::eventfd(0, EFD_CLOEXEC), b = ::eventfd(0, EFD_CLOEXEC);
  std::thread other([&] {
    ueq::bench::pin_to_cpu(1);
    std::uint64_t v;
    for (int i = 0; i < iters; ++i) {
      (void)::read(a, &v, 8);
      v = 1;
      (void)::write(b, &v, 8);
    }
  });
  ueq::bench::pin_to_cpu(0);
  const std::uint64_t t0 = now_ns();
  std::uint64_t v = 1;
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

// 64 uthreads on two vcores blocked on one queue; `messages` posted one at
// a time by another uthread, each once the previous was taken and every
// waiter is back in block_on. Value: wakeups per message.
double herd(ueq::notify_policy p, int messages) {
  constexpr int kWaiters = 64;
  auto q = queue(p);
  double per_message = 0;
  (void)ueq::run(
      [&] {
        std::atomic<int> taken{0};
        std::vector<ueq::uthread_handle> hs;
        for (int w = 0; w < kWaiters; ++w)
          hs.push_back(*ueq::spawn([&] {
            while (ueq::block_on({q.get()}, ueq::deadline_after_ms(60000)))
              taken.fetch_add(1);
          }));
        // Post only once every waiter is registered afresh: each wakeup
        // so far has been used up, by the take or as a spurious wakeup
        // (a waiter still holding an unused wakeup would not be woken
        // again, which would understate the herd).
        auto settled = [&](int i) {
          if (q->waiters() < kWaiters || taken.load() != i) return false;
          const auto c = q->counters();
          return c.wakeups <= c.spurious_wakeups + static_cast<std::uint64_t>(i);
        };
        for (int i = 0; i < messages; ++i) {
          while (!settled(i))
            ueq::this_uthread::yield();
          (void)q->post(static_cast<std::uint32_t>(i));
        }
        while (taken.load() != messages)
          ueq::this_uthread::yield();
        per_message = double(q->counters().wakeups) / messages;
        q->close();
        for (auto& h : hs)
          (void)h.join();
      },
      {.vcores = 2});
  return per_message;
}

}  // namespace

UEQ_BENCH(evq, "block_on round trips (uthreads, threads) and wake-one herds") {
  {
    const int iters = static_cast<int>(ctx.work(500000));
    auto [v, b] = alternate(
        ctx.rounds(), [&] { return blockon_same_vcore(iters); },
        [&] { return ueq::bench::park_roundtrip_same_vcore(iters); });
    ctx.report({.name = "blockon_roundtrip_same_vcore",
                .unit = "ns/roundtrip",
                .value = v,
                .baseline = "park_unpark_roundtrip",
                .baseline_value = b,
                .goal = "<= 1.5",
                .note = "two uthreads on one vcore through two message queues, vs the same "
                        "round trip through two bare parkers"});
  }
  {
    const int iters = static_cast<int>(ctx.work(50000));
    auto [v, b] = alternate(
        ctx.rounds(), [&] { return blockon_roundtrip(iters); },
        [&] { return eventfd_roundtrip(iters); });
    ctx.report({.name = "blockon_roundtrip_cross_vcore",
                .unit = "ns/roundtrip",
                .value = v,
                .baseline = "eventfd_pingpong",
                .baseline_value = b,
                .goal = "<= 1.1",
                .note = "plain threads pinned to cpus 0 and 1 (the default 2LS runs a uthread "
                        "woken by a uthread on the waker's vcore, so a uthread pair does not stay "
                        "split across vcores)"});
  }
  {
    const int messages = static_cast<int>(ctx.work(2000));
    auto [v, b] = alternate(
        std::max(3, ctx.rounds() / 3), [&] { return herd(ueq::notify_policy::wake_one, messages); },
        [&] { return herd(ueq::notify_policy::wake_all, messages); });
    ctx.report({.name = "wake_one_herd_64",
                .unit = "wakeups/message",
                .value = v,
                .baseline = "wake_all",
                .baseline_value = b,
                .goal = "<= 1.05",
                .goal_on_value = true,
                .note = "64 uthreads on 2 vcores blocked on one queue; wake_all's figure beside "
                        "it"});
  }
}
