// ueq-bench taps: host readiness to a running waiter, and per-event cost
// with many sockets, against raw epoll.
//
// write_to_run_latency blocks an OS thread (the uthread version waits for
// the uthread runtime).
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"
#include "ueq/ceq/block_on.hpp"
#include "ueq/taps/io.hpp"
#include "ueq/taps/tap.hpp"

namespace {

using ueq::bench::alternate;
using ueq::bench::now_ns;

struct pair_fds {
  int a, b;
};
pair_fds socketpair_nb() {
  int sv[2];
  ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv);
  return {sv[0], sv[1]};
}

// Round trip: the main thread writes a byte and blocks in read; the other
// thread, waiting for it, runs, reads it and writes it back. The waiter
// waits in ueq::io::read (tap, event queue, parker) or in a raw epoll_wait
// loop with direct dispatch. Threads pinned to cpus 0 and 1.
double roundtrip(bool use_ueq, int iters) {
  auto p = socketpair_nb();
  std::thread waiter([&] {
    ueq::bench::pin_to_cpu(1);
    char c;
    if (use_ueq) {
      for (int i = 0; i < iters; ++i) {
        if (!ueq::io::read(p.b, &c, 1)) return;
        (void)::write(p.b, &c, 1);
      }
      return;
    }
    const int ep = ::epoll_create1(EPOLL_CLOEXEC);
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLET;
    ::epoll_ctl(ep, EPOLL_CTL_ADD, p.b, &ev);
    for (int i = 0; i < iters;) {
      epoll_event out[4];
      if (::epoll_wait(ep, out, 4, -1) <= 0) continue;
      while (::read(p.b, &c, 1) == 1) {
        (void)::write(p.b, &c, 1);
        ++i;
      }
    }
    ::close(ep);
  });
  ueq::bench::pin_to_cpu(0);
  const int fl = ::fcntl(p.a, F_GETFL);
  ::fcntl(p.a, F_SETFL, fl & ~O_NONBLOCK);  // the driver blocks plainly
  char c = 'x';
  const std::uint64_t t0 = now_ns();
  for (int i = 0; i < iters; ++i) {
    (void)::write(p.a, &c, 1);
    (void)::read(p.a, &c, 1);
  }
  const double r = double(now_ns() - t0) / iters;
  waiter.join();
  if (use_ueq)
    (void)ueq::io::close(p.b);
  else
    ::close(p.b);
  ::close(p.a);
  return r;
}

// n socketpairs, `active` of them written each round; the consumer takes
// every event and reads the data. Value: ns per event.
double per_event(ueq::tap_service* svc, int n, int active, int rounds) {
  std::vector<pair_fds> ps(n);
  for (auto& p : ps)
    p = socketpair_nb();
  std::vector<ueq::tap_handle> taps;
  ueq::event_queue_ptr q;
  int ep = -1;
  if (svc) {
    q = std::move(ueq::event_queue::create_ceq({.ring_size = static_cast<std::uint32_t>(n),
                                                .max_ids = static_cast<std::uint64_t>(n)}))
            .value();
    for (int i = 0; i < n; ++i)
      taps.push_back(*svc->add({.fd = ps[i].b,
                                .filter = ueq::kTapReadable,
                                .queue = q,
                                .id = static_cast<std::uint32_t>(i)}));
    ueq::event_msg initial;  // writable-at-add and the like: not part of the count
    while (q->try_get(initial)) {
    }
  } else {
    ep = ::epoll_create1(EPOLL_CLOEXEC);
    for (int i = 0; i < n; ++i) {
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLET;
      ev.data.u32 = static_cast<std::uint32_t>(i);
      ::epoll_ctl(ep, EPOLL_CTL_ADD, ps[i].b, &ev);
    }
  }
  char buf[64];
  std::uint64_t events = 0, ns = 0;
  for (int r = 0; r < rounds; ++r) {
    for (int k = 0; k < active; ++k)
      (void)::write(ps[(r * 7 + k * 97) % n].a, "x", 1);
    const std::uint64_t t0 = now_ns();
    int got = 0;
    while (got < active) {
      if (svc) {
        (void)svc->poll(ueq::deadline_after_ms(100));
        ueq::event_msg m[256];
        while (std::size_t k = q->drain(m)) {
          for (std::size_t j = 0; j < k; ++j)
            (void)::read(ps[m[j].id].b, buf, sizeof buf);
          got += static_cast<int>(k);
        }
      } else {
        epoll_event out[256];
        const int k = ::epoll_wait(ep, out, 256, 100);
        for (int j = 0; j < k; ++j)
          (void)::read(ps[out[j].data.u32].b, buf, sizeof buf);
        got += std::max(k, 0);
      }
    }
    ns += now_ns() - t0;
    events += static_cast<std::uint64_t>(got);
  }
  if (svc) {
    for (auto& t : taps)
      (void)svc->remove(t);
  }
  if (ep >= 0) ::close(ep);
  for (auto& p : ps) {
    ::close(p.a);
    ::close(p.b);
  }
  return double(ns) / double(events);
}

}  // namespace

UEQ_BENCH(taps, "host readiness to a running waiter; per-event cost with many sockets") {
  {
    const int iters = static_cast<int>(ctx.work(50000));
    auto [v, b] = alternate(
        ctx.rounds(), [&] { return roundtrip(true, iters); },
        [&] { return roundtrip(false, iters); });
    ctx.report({.name = "write_to_run_latency",
                .unit = "ns/roundtrip",
                .value = v,
                .baseline = "raw_epoll_loop",
                .baseline_value = b,
                .goal = "<= 1.3",
                .note = "round trip over a socketpair; the waiting side is an OS thread in "
                        "ueq::io::read (uthreads pending), cpus 0 and 1"});
  }
  auto epoll_svc = ueq::tap_service::create(ueq::backend_kind::epoll);
  auto uring_svc = ueq::tap_service::create(ueq::backend_kind::io_uring);
  for (int n : {1000, 10000}) {
    if (ueq::bench::raise_fd_limit(2 * n + 256) < static_cast<std::size_t>(2 * n + 256)) {
      std::fprintf(stderr, "taps: RLIMIT_NOFILE too low for %d socketpairs, skipped\n", n);
      continue;
    }
    for (int pct : {1, 10}) {
      const int active = std::max(1, n * pct / 100);
      const int rounds = static_cast<int>(ctx.work(std::max(200, 200000 / active)));
      const std::string tag = std::to_string(n / 1000) + "k_" + std::to_string(pct) + "pct";
      if (epoll_svc) {
        auto [v, b] = alternate(
            std::max(3, ctx.rounds() / 3),
            [&] { return per_event(epoll_svc->get(), n, active, rounds); },
            [&] { return per_event(nullptr, n, active, rounds); });
        ctx.report({.name = "per_event_" + tag + "_epoll",
                    .unit = "ns/event",
                    .value = v,
                    .baseline = "raw_epoll",
                    .baseline_value = b,
                    .note = "host epoll backend; taps into one CEQ, consumer drains and reads"});
      }
      if (uring_svc) {
        auto [v, b] = alternate(
            std::max(3, ctx.rounds() / 3),
            [&] { return per_event(uring_svc->get(), n, active, rounds); },
            [&] { return per_event(nullptr, n, active, rounds); });
        ctx.report({.name = "per_event_" + tag + "_io_uring",
                    .unit = "ns/event",
                    .value = v,
                    .baseline = "raw_epoll",
                    .baseline_value = b,
                    .note = "io_uring multishot-poll backend"});
      }
    }
  }
}
