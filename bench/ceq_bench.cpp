// ueq-bench ceq: the CEQ against the cheapest honest way to do each job.
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <barrier>
#include <boost/lockfree/queue.hpp>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"
#include "ueq/ceq/ceq.hpp"

namespace {

using ueq::bench::alternate;
using ueq::bench::keep;
using ueq::bench::now_ns;

std::unique_ptr<ueq::ceq> make(std::uint32_t ring, std::uint64_t max_ids = 1u << 20) {
  auto q = ueq::ceq::create({.ring_size = ring, .max_ids = max_ids});
  if (!q) {
    std::fprintf(stderr, "ceq create: %s\n", q.error().message().c_str());
    std::exit(1);
  }
  return std::move(q).value();
}

// The cost of an empty timed window (two clock reads), subtracted from the
// drain windows of both sides alike.
double window_overhead_ns() {
  std::vector<double> v;
  for (int i = 0; i < 2001; ++i) {
    const std::uint64_t t0 = now_ns();
    const std::uint64_t t1 = now_ns();
    v.push_back(static_cast<double>(t1 - t0));
  }
  return ueq::bench::median(v);
}

void bench_post(ueq::bench::context& ctx) {
  const std::uint64_t iters = ctx.work(20'000'000);
  {
    auto q = make(1024);
    (void)q->post(0, 1);  // slot 0 stays pending: every post below coalesces
    std::atomic<std::uint64_t> word{0};
    auto [v, b] = alternate(
        ctx.rounds(),
        [&] {
          const std::uint64_t t0 = now_ns();
          for (std::uint64_t i = 0; i < iters; ++i)
            (void)q->post(0, 1ull << (i & 7));
          return double(now_ns() - t0) / iters;
        },
        [&] {
          const std::uint64_t t0 = now_ns();
          for (std::uint64_t i = 0; i < iters; ++i)
            word.fetch_or(1ull << (i & 7), std::memory_order_acq_rel);
          return double(now_ns() - t0) / iters;
        });
    ctx.report({.name = "post_coalesced",
                .unit = "ns/op",
                .value = v,
                .baseline = "atomic_fetch_or",
                .baseline_value = b,
                .goal = "<= 1.5",
                .note = "one thread; the slot is already pending, so post merges and returns"});
  }
  {
    constexpr std::uint32_t kIds = 4096;
    auto q = make(kIds);
    std::vector<std::atomic<std::uint64_t>> words(kIds);
    std::atomic<std::uint64_t> counter{0};
    const std::uint64_t reps = std::max<std::uint64_t>(1, iters / 4 / kIds);
    std::vector<ueq::ceq_event> buf(kIds);
    auto [v, b] = alternate(
        ctx.rounds(),
        [&] {
          std::uint64_t ns = 0;
          for (std::uint64_t r = 0; r < reps; ++r) {
            const std::uint64_t t0 = now_ns();
            for (std::uint32_t id = 0; id < kIds; ++id)
              (void)q->post(id, 1);
            ns += now_ns() - t0;
            while (q->get_batch(buf) != 0) {
            }
          }
          return double(ns) / (reps * kIds);
        },
        [&] {
          std::uint64_t ns = 0;
          for (std::uint64_t r = 0; r < reps; ++r) {
            const std::uint64_t t0 = now_ns();
            for (std::uint32_t id = 0; id < kIds; ++id) {
              words[id].fetch_or(1, std::memory_order_acq_rel);
              counter.fetch_add(1, std::memory_order_acq_rel);
            }
            ns += now_ns() - t0;
          }
          return double(ns) / (reps * kIds);
        });
    ctx.report({.name = "post_fresh",
                .unit = "ns/op",
                .value = v,
                .baseline = "fetch_or+fetch_add",
                .baseline_value = b,
                .goal = "<= 3",
                .note = "4096 distinct IDs posted after a drain: each post pushes the ring"});
  }
}

void bench_drain(ueq::bench::context& ctx) {
  const double overhead = window_overhead_ns();
  for (std::uint32_t n : {1u, 16u, 256u, 4096u}) {
    if (ueq::bench::raise_fd_limit(n + 64) < n + 64) {
      std::fprintf(stderr, "drain_%u: cannot raise RLIMIT_NOFILE, skipped\n", n);
      continue;
    }
    const std::uint64_t reps = std::max<std::uint64_t>(4, ctx.work(4'000'000) / n / 4);
    auto q = make(std::max(n, 64u));
    std::vector<ueq::ceq_event> buf(n);

    // Kernel baseline: n eventfds with a count of 1 stay readable; a
    // level-triggered epoll_wait returns all n every call.
    const int ep = epoll_create1(EPOLL_CLOEXEC);
    std::vector<int> efds;
    for (std::uint32_t i = 0; i < n; ++i) {
      const int fd = eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC);
      epoll_event e{.events = EPOLLIN, .data = {.u64 = i}};
      if (fd < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) != 0) {
        std::perror("eventfd/epoll_ctl");
        std::exit(1);
      }
      efds.push_back(fd);
    }
    std::vector<epoll_event> evs(n);

    auto [v, b] = alternate(
        ctx.rounds(),
        [&] {
          double ns = 0;
          for (std::uint64_t r = 0; r < reps; ++r) {
            for (std::uint32_t id = 0; id < n; ++id)
              (void)q->post(id, 1);  // untimed
            const std::uint64_t t0 = now_ns();
            std::size_t got = 0;
            while (got < n)
              got += q->get_batch({buf.data() + got, n - got});
            const std::uint64_t t1 = now_ns();
            keep(buf[0]);
            ns += double(t1 - t0) - overhead;
          }
          return ns / double(reps * n);
        },
        [&] {
          double ns = 0;
          for (std::uint64_t r = 0; r < reps; ++r) {
            const std::uint64_t t0 = now_ns();
            const int got = epoll_wait(ep, evs.data(), static_cast<int>(n), 0);
            const std::uint64_t t1 = now_ns();
            if (got != static_cast<int>(n)) {
              std::fprintf(stderr, "epoll_wait returned %d, expected %u\n", got, n);
              std::exit(1);
            }
            ns += double(t1 - t0) - overhead;
          }
          return ns / double(reps * n);
        });
    const std::string name = "drain_" + std::to_string(n);
    ctx.report({.name = name,
                .unit = "ns/event",
                .value = v,
                .baseline = "epoll_wait_lt_eventfd",
                .baseline_value = b,
                .goal = n >= 256 ? "<= 0.2" : "",
                .note = name == "drain_1" ? "drain window timed alone; clock overhead subtracted "
                                            "from both sides"
                                          : ""});
    for (int fd : efds)
      close(fd);
    close(ep);
  }
}

// Two producers pinned to the two cores post the same ID sequence into a CEQ
// and into a boost::lockfree::queue; one consumer thread drains. Value =
// events (posts) delivered per second, from the start barrier until the
// consumer has drained everything after the producers finished.
void bench_mp(ueq::bench::context& ctx) {
  const std::uint64_t per_producer = ctx.work(2'000'000);
  constexpr std::uint32_t kIdsPerProducer = 1024;
  for (bool hot : {false, true}) {
    auto id_of = [&](int p, std::uint64_t i) -> std::uint32_t {
      return hot ? 0 : static_cast<std::uint32_t>(p * kIdsPerProducer + (i % kIdsPerProducer));
    };
    std::uint64_t messages = 0;
    // Two pinned producers call post(p, i); one consumer calls drain() (which
    // returns how much it took) until the producers are done and it finds
    // nothing. Returns posts per second.
    auto run = [&](auto post, auto drain) {
      std::atomic<int> left{2};
      std::barrier start(3);
      std::uint64_t t0 = 0, t1 = 0;
      std::thread cons([&] {
        start.arrive_and_wait();
        for (;;) {
          const bool done = left.load(std::memory_order_acquire) == 0;
          if (drain() == 0 && done) break;
        }
        t1 = now_ns();
      });
      std::vector<std::thread> prods;
      for (int p = 0; p < 2; ++p)
        prods.emplace_back([&, p] {
          ueq::bench::pin_to_cpu(p);
          start.arrive_and_wait();
          if (p == 0) t0 = now_ns();
          for (std::uint64_t i = 0; i < per_producer; ++i)
            post(p, i);
          left.fetch_sub(1, std::memory_order_release);
        });
      for (auto& t : prods)
        t.join();
      cons.join();
      return double(2 * per_producer) / (double(t1 - t0) / 1e9);
    };
    auto run_ceq = [&] {
      auto q = make(2 * kIdsPerProducer);
      std::uint64_t msgs = 0;
      const double r = run([&](int p, std::uint64_t i) { (void)q->post(id_of(p, i), 1ull << p); },
                           [&] {
                             ueq::ceq_event buf[256];
                             const std::size_t n = q->get_batch(buf);
                             msgs += n;
                             return n;
                           });
      messages = msgs;
      return r;
    };
    auto run_queue = [&] {
      boost::lockfree::queue<std::uint32_t> lq(1 << 16);
      return run(
          [&](int p, std::uint64_t i) {
            while (!lq.push(id_of(p, i))) {
            }
          },
          [&] {
            std::size_t n = 0;
            std::uint32_t id;
            while (lq.pop(id)) {
              keep(id);
              ++n;
            }
            return n;
          });
    };
    auto [v, b] = alternate(ctx.rounds(), run_ceq, run_queue);
    char note[160];
    std::snprintf(note, sizeof note,
                  "2 producers pinned to cpus 0,1 + 1 consumer; %s; last CEQ round: %llu posts "
                  "-> %llu messages",
                  hot ? "all posts to one ID" : "1024 distinct IDs per producer",
                  static_cast<unsigned long long>(2 * per_producer),
                  static_cast<unsigned long long>(messages));
    ctx.report({.name = hot ? "mp_hot" : "mp_distinct",
                .unit = "events/s",
                .value = v,
                .baseline = "boost_lockfree_queue",
                .baseline_value = b,
                .higher_is_better = true,
                .goal = hot ? "" : ">= 0.5",
                .note = note});
  }
}

}  // namespace

UEQ_BENCH(ceq, "CEQ post, drain and multi-producer throughput vs atomics, epoll, lockfree queue") {
  bench_post(ctx);
  bench_drain(ctx);
  bench_mp(ctx);
}
