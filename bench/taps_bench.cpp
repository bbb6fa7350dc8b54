// ueq-bench taps: host readiness to a running waiter, and per-event cost
// with many sockets, against raw epoll and libevent.
//
// write_to_run_latency: the waiter is a uthread (ueq::run with one vcore)
// blocked in ueq::io::read; write_to_run_latency_thread: an OS thread in the
// same call. per_event_*: n receiving sockets, a share of them written each
// round, one consumer.
#include <event2/event.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"
#include "ueq/ceq/evq/block_on.hpp"
#include "ueq/taps/io.hpp"
#include "ueq/taps/tap.hpp"
#include "ueq/uthread/uthread.hpp"

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

enum class waiter_kind { uthread, thread, raw_epoll };

// Round trip: the main thread writes a byte and blocks in read; the waiter
// runs, reads it and writes it back. The waiter waits in ueq::io::read (tap,
// event queue, parker) as a uthread or as an OS thread, or in a raw
// epoll_wait loop with direct dispatch. Pinned to cpus 0 and 1.
double roundtrip(waiter_kind kind, int iters) {
  auto p = socketpair_nb();
  std::thread waiter([&] {
    ueq::bench::pin_to_cpu(1);
    auto echo_loop = [&] {
      char c;
      for (int i = 0; i < iters; ++i) {
        if (!ueq::io::read(p.b, &c, 1)) return;
        (void)::write(p.b, &c, 1);
      }
    };
    if (kind == waiter_kind::uthread) {
      // One vcore: it runs on this (pinned) thread's cpu set.
      (void)ueq::run(echo_loop, {.vcores = 1});
      return;
    }
    if (kind == waiter_kind::thread) {
      echo_loop();
      return;
    }
    char c;
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
  if (kind != waiter_kind::raw_epoll)
    (void)ueq::io::close(p.b);
  else
    ::close(p.b);
  ::close(p.a);
  return r;
}

// The receiving sockets of the per-event cases. Socketpairs when the fd
// limit holds both ends of all n; otherwise n AF_UNIX datagram sockets bound
// to abstract addresses, fed by shared sending sockets (one per
// kPerSender receivers: a unix datagram is charged to its sender's buffer
// until read, so one sender could not hold a round's worth), so 10k
// receivers fit under a 20000-fd hard limit. The consumers see the same
// thing either way: one readable socket per written receiver.
class receivers {
 public:
  static constexpr int kPerSender = 64;
  receivers(int n, bool pairs)
      : pairs_(pairs), rx_(n), tx_(pairs ? n : (n + kPerSender - 1) / kPerSender, -1) {
    for (int i = 0; i < n; ++i) {
      if (pairs) {
        auto p = socketpair_nb();
        tx_[i] = p.a;
        rx_[i] = p.b;
        continue;
      }
      rx_[i] = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      sockaddr_un a = addr(i);
      ::bind(rx_[i], reinterpret_cast<sockaddr*>(&a), addr_len());
    }
    if (!pairs)
      for (int& fd : tx_)
        fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  }
  ~receivers() {
    for (int fd : rx_)
      ::close(fd);
    for (int fd : tx_)
      ::close(fd);
  }
  int size() const { return static_cast<int>(rx_.size()); }
  int fd(int i) const { return rx_[i]; }
  // False if the byte could not be sent (then no event is due for it).
  bool poke(int i) const {
    if (pairs_) return ::write(tx_[i], "x", 1) == 1;
    sockaddr_un a = addr(i);
    return ::sendto(tx_[i / kPerSender], "x", 1, 0, reinterpret_cast<sockaddr*>(&a), addr_len()) ==
           1;
  }
  void drain(int i) const {
    char buf[64];
    (void)::read(rx_[i], buf, sizeof buf);
  }

 private:
  sockaddr_un addr(int i) const {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    // Abstract namespace: a leading NUL, then a name unique to this process.
    std::snprintf(a.sun_path + 1, sizeof a.sun_path - 1, "ueq-bench-%d-%d", ::getpid(), i);
    return a;
  }
  static socklen_t addr_len() {
    return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + sizeof(sockaddr_un::sun_path));
  }
  bool pairs_;
  std::vector<int> rx_, tx_;
};

enum class consumer { ueq_taps, raw_epoll, libevent };

// `active` receivers written each round; the consumer takes every event and
// reads the data. Value: ns per event, timed from the first wait to the
// last read of a round.
double per_event(consumer kind, ueq::tap_service* svc, const receivers& rx, int active,
                 int rounds) {
  const int n = rx.size();
  std::vector<ueq::tap_handle> taps;
  ueq::event_queue_ptr q;
  int ep = -1;
  event_base* base = nullptr;
  std::vector<event*> evs;
  int got = 0;
  if (kind == consumer::ueq_taps) {
    q = std::move(ueq::event_queue::create_ceq({.ring_size = static_cast<std::uint32_t>(n),
                                                .max_ids = static_cast<std::uint64_t>(n)}))
            .value();
    for (int i = 0; i < n; ++i)
      taps.push_back(*svc->add({.fd = rx.fd(i),
                                .filter = ueq::kTapReadable,
                                .queue = q,
                                .id = static_cast<std::uint32_t>(i)}));
    ueq::event_msg initial;  // writable-at-add and the like: not part of the count
    while (q->try_get(initial)) {
    }
  } else if (kind == consumer::raw_epoll) {
    ep = ::epoll_create1(EPOLL_CLOEXEC);
    for (int i = 0; i < n; ++i) {
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLET;
      ev.data.u32 = static_cast<std::uint32_t>(i);
      ::epoll_ctl(ep, EPOLL_CTL_ADD, rx.fd(i), &ev);
    }
  } else {
    // libevent on its epoll method, edge-triggered persistent events whose
    // callback reads, as a libevent program would be written.
    event_config* cfg = event_config_new();
    event_config_require_features(cfg, EV_FEATURE_ET);
    base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    struct ctx_t {
      const receivers* rx;
      int* got;
      int i;
    };
    static thread_local std::vector<ctx_t> ctxs;
    ctxs.assign(n, {});
    for (int i = 0; i < n; ++i) {
      ctxs[i] = {&rx, &got, i};
      event* e = event_new(
          base, rx.fd(i), EV_READ | EV_PERSIST | EV_ET,
          [](evutil_socket_t, short, void* arg) {
            auto* c = static_cast<ctx_t*>(arg);
            c->rx->drain(c->i);
            ++*c->got;
          },
          &ctxs[i]);
      event_add(e, nullptr);
      evs.push_back(e);
    }
  }
  std::uint64_t events = 0, ns = 0;
  for (int r = 0; r < rounds; ++r) {
    int due = 0;
    for (int k = 0; k < active; ++k)
      due += rx.poke((r * 7 + k * 97) % n);
    const std::uint64_t t0 = now_ns();
    got = 0;
    while (got < due) {
      if (kind == consumer::ueq_taps) {
        (void)svc->poll(ueq::deadline_after_ms(100));
        ueq::event_msg m[256];
        while (std::size_t k = q->drain(m)) {
          for (std::size_t j = 0; j < k; ++j)
            rx.drain(static_cast<int>(m[j].id));
          got += static_cast<int>(k);
        }
      } else if (kind == consumer::raw_epoll) {
        epoll_event out[256];
        const int k = ::epoll_wait(ep, out, 256, 100);
        for (int j = 0; j < k; ++j)
          rx.drain(static_cast<int>(out[j].data.u32));
        got += std::max(k, 0);
      } else {
        event_base_loop(base, EVLOOP_ONCE);
      }
    }
    ns += now_ns() - t0;
    events += static_cast<std::uint64_t>(got);
  }
  if (svc)
    for (auto& t : taps)
      (void)svc->remove(t);
  if (ep >= 0) ::close(ep);
  for (event* e : evs)
    event_free(e);
  if (base) event_base_free(base);
  return double(ns) / double(events);
}

}  // namespace

UEQ_BENCH(taps, "host readiness to a running waiter; per-event cost with many sockets") {
  {
    const int iters = static_cast<int>(ctx.work(50000));
    auto [v, b] = alternate(
        ctx.rounds(), [&] { return roundtrip(waiter_kind::uthread, iters); },
        [&] { return roundtrip(waiter_kind::raw_epoll, iters); });
    ctx.report({.name = "write_to_run_latency",
                .unit = "ns/roundtrip",
                .value = v,
                .baseline = "raw_epoll_loop",
                .baseline_value = b,
                .goal = "<= 1.3",
                .note = "round trip over a socketpair; the waiting side is a uthread (one "
                        "vcore) in ueq::io::read, cpus 0 and 1"});
  }
  {
    const int iters = static_cast<int>(ctx.work(50000));
    auto [v, b] = alternate(
        ctx.rounds(), [&] { return roundtrip(waiter_kind::thread, iters); },
        [&] { return roundtrip(waiter_kind::raw_epoll, iters); });
    ctx.report({.name = "write_to_run_latency_thread",
                .unit = "ns/roundtrip",
                .value = v,
                .baseline = "raw_epoll_loop",
                .baseline_value = b,
                .note = "the same with an OS thread in ueq::io::read"});
  }
  auto epoll_svc = ueq::tap_service::create(ueq::backend_kind::epoll);
  auto uring_svc = ueq::tap_service::create(ueq::backend_kind::io_uring);
  if (!uring_svc) std::fprintf(stderr, "taps: io_uring unavailable, its rows skipped\n");
  for (int n : {1000, 10000}) {
    const bool pairs =
        ueq::bench::raise_fd_limit(2 * n + 256) >= static_cast<std::size_t>(2 * n + 256);
    if (!pairs && ueq::bench::raise_fd_limit(n + 256) < static_cast<std::size_t>(n + 256)) {
      std::fprintf(stderr, "taps: RLIMIT_NOFILE too low for %d receivers, skipped\n", n);
      continue;
    }
    const receivers rx(n, pairs);
    const std::string shape = pairs ? std::to_string(n) + " socketpairs"
                                    : std::to_string(n) +
                                          " unix datagram sockets (the fd limit does not hold "
                                          "2x" +
                                          std::to_string(n) + " socketpair ends)";
    for (int pct : {1, 10}) {
      const int active = std::max(1, n * pct / 100);
      const int rounds = static_cast<int>(ctx.work(std::max(200, 200000 / active)));
      const std::string tag = std::to_string(n / 1000) + "k_" + std::to_string(pct) + "pct";
      const int r3 = std::max(3, ctx.rounds() / 3);
      const std::string what = shape + ", " + std::to_string(pct) + "% written per round";
      {
        auto [v, b] = alternate(
            r3, [&] { return per_event(consumer::libevent, nullptr, rx, active, rounds); },
            [&] { return per_event(consumer::raw_epoll, nullptr, rx, active, rounds); });
        ctx.report({.name = "per_event_" + tag + "_libevent",
                    .unit = "ns/event",
                    .value = v,
                    .baseline = "raw_epoll",
                    .baseline_value = b,
                    .note = "libevent " + std::string(event_get_version()) +
                            " (epoll, ET, persistent events); " + what});
      }
      for (auto* svc :
           {epoll_svc ? epoll_svc->get() : nullptr, uring_svc ? uring_svc->get() : nullptr}) {
        if (!svc) continue;
        const bool uring = uring_svc && svc == uring_svc->get();
        auto [v, b] = alternate(
            r3, [&] { return per_event(consumer::ueq_taps, svc, rx, active, rounds); },
            [&] { return per_event(consumer::raw_epoll, nullptr, rx, active, rounds); });
        ctx.report({.name = "per_event_" + tag + (uring ? "_io_uring" : "_epoll"),
                    .unit = "ns/event",
                    .value = v,
                    .baseline = "raw_epoll",
                    .baseline_value = b,
                    .note = std::string(uring ? "io_uring multishot-poll" : "host epoll") +
                            " backend, taps into one CEQ, consumer drains and reads; " + what});
      }
    }
  }
}
