// ueq-bench epoll: the facade against the kernel's epoll running identical
// call sequences in the same run.
#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <atomic>
#include <climits>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "echo/echo_load.hpp"
#include "harness.hpp"
#include "ueq/epoll.h"

namespace {

using ueq::bench::alternate;
using ueq::bench::now_ns;

struct api {
  int (*create1)(int);
  int (*ctl)(int, int, int, epoll_event*);
  int (*wait)(int, epoll_event*, int, int);
  int (*close)(int);
};
const api kKernel{::epoll_create1, ::epoll_ctl, ::epoll_wait, ::close};
const api kUeq{ueq_epoll_create1, ueq_epoll_ctl, ueq_epoll_wait, ueq_close};

// n eventfds, the first `ready` of them readable (count 1, level-triggered).
std::vector<int> eventfds(int n, int ready) {
  std::vector<int> v;
  for (int i = 0; i < n; ++i)
    v.push_back(::eventfd(i < ready ? 1 : 0, EFD_NONBLOCK | EFD_CLOEXEC));
  return v;
}

// ns per MOD that changes only data and mask bits (the fd stays registered).
double ctl_mod(const api& a, int iters) {
  const int ep = a.create1(0);
  const int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  a.ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  const std::uint64_t t0 = now_ns();
  for (int i = 0; i < iters; ++i) {
    ev.events = (i & 1) ? EPOLLIN : EPOLLIN | EPOLLRDHUP;
    ev.data.u64 = static_cast<std::uint64_t>(i);
    a.ctl(ep, EPOLL_CTL_MOD, fd, &ev);
  }
  const double r = double(now_ns() - t0) / iters;
  a.close(fd);
  a.close(ep);
  return r;
}

// ns per returned event, `ready` of `registered` eventfds readable.
double wait_ready(const api& a, int registered, int ready, int iters, int max) {
  const int ep = a.create1(0);
  auto fds = eventfds(registered, ready);
  for (int i = 0; i < registered; ++i) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = static_cast<std::uint64_t>(i);
    a.ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
  }
  std::vector<epoll_event> out(max);
  a.wait(ep, out.data(), max, 0);  // warm: everything harvested once
  std::uint64_t events = 0;
  const std::uint64_t t0 = now_ns();
  for (int i = 0; i < iters; ++i)
    events += static_cast<std::uint64_t>(a.wait(ep, out.data(), max, 0));
  const double r = double(now_ns() - t0) / double(events ? events : 1);
  for (int fd : fds)
    a.close(fd);
  a.close(ep);
  return r;
}

double wait_idle(const api& a, int iters) {
  const int ep = a.create1(0);
  const int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  a.ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  epoll_event out[8];
  const std::uint64_t t0 = now_ns();
  for (int i = 0; i < iters; ++i)
    a.wait(ep, out, 8, 0);
  const double r = double(now_ns() - t0) / iters;
  a.close(fd);
  a.close(ep);
  return r;
}

// Round trip through epoll_wait: two threads ping-pong a byte over a
// socketpair, each blocked in epoll_wait on its end.
double pingpong(const api& a, int iters) {
  int sv[2];
  ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv);
  auto side = [&](int fd, bool starts) {
    const int ep = a.create1(0);
    epoll_event ev{};
    ev.events = EPOLLIN;
    a.ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    char c = 'p';
    if (starts) (void)::write(fd, &c, 1);
    epoll_event out[1];
    for (int i = 0; i < iters; ++i) {
      while (a.wait(ep, out, 1, 5000) != 1) {
      }
      (void)::read(fd, &c, 1);
      if (!starts || i + 1 < iters) (void)::write(fd, &c, 1);
    }
    a.close(ep);
  };
  const std::uint64_t t0 = now_ns();
  std::thread other(side, sv[1], false);
  side(sv[0], true);
  other.join();
  const double r = double(now_ns() - t0) / iters;
  ::close(sv[0]);
  ::close(sv[1]);
  return r;
}

// Starts examples/epoll_echo_server on a free port, natively or under
// ueq-run; its pid, or -1.
pid_t spawn_epoll_echo_server(bool preload, std::uint16_t* port) {
  const std::string dir = ueq::echo::self_dir();
  std::vector<std::string> argv;
  if (preload) argv.push_back(dir + "/../epoll/ueq-run");
  argv.push_back(dir + "/../examples/epoll_echo_server");
  argv.push_back("--port");
  argv.push_back("0");
  return ueq::echo::spawn_server(argv, port);
}

// Requests per second of the plain epoll echo server, natively or under
// ueq-run, measured by the shared client.
double echo_server_rps(bool preload, double seconds) {
  std::uint16_t port = 0;
  const pid_t pid = spawn_epoll_echo_server(preload, &port);
  if (pid < 0) return 0;
  ueq::echo::load_config cfg;
  cfg.port = port;
  cfg.connections = 100;
  cfg.message = 64;
  cfg.seconds = seconds;
  const auto r = ueq::echo::run_load(cfg);
  ::kill(pid, SIGTERM);
  ::waitpid(pid, nullptr, 0);
  if (r.errors) std::fprintf(stderr, "echo_under_preload: %s\n", r.error.c_str());
  return r.errors ? 0 : r.requests_per_sec();
}

// Connections per second through the plain epoll echo server, natively or
// under ueq-run: each of `clients` threads connects, makes one 64-byte
// round trip and closes, again and again (ADD, wait, DEL and close on the
// server for every connection).
double churn_rps(bool preload, double seconds, int clients = 4) {
  std::uint16_t port = 0;
  const pid_t pid = spawn_epoll_echo_server(preload, &port);
  if (pid < 0) return 0;
  std::atomic<std::uint64_t> done{0}, failed{0};
  const std::uint64_t end = now_ns() + static_cast<std::uint64_t>(seconds * 1e9);
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c)
    threads.emplace_back([&] {
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(port);
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      char msg[64] = "churn", back[64];
      while (now_ns() < end) {
        const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool ok = fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
                  ::write(fd, msg, sizeof msg) == static_cast<ssize_t>(sizeof msg);
        std::size_t got = 0;
        while (ok && got < sizeof back) {
          const ssize_t n = ::read(fd, back + got, sizeof back - got);
          if (n <= 0)
            ok = false;
          else
            got += static_cast<std::size_t>(n);
        }
        if (fd >= 0) ::close(fd);
        (ok ? done : failed).fetch_add(1, std::memory_order_relaxed);
      }
    });
  for (auto& t : threads)
    t.join();
  ::kill(pid, SIGTERM);
  ::waitpid(pid, nullptr, 0);
  if (failed.load())
    std::fprintf(stderr, "churn_under_preload: %llu failed connections\n",
                 static_cast<unsigned long long>(failed.load()));
  return failed.load() ? 0 : double(done.load()) / seconds;
}

}  // namespace

UEQ_BENCH(epoll, "the epoll facade vs the kernel's epoll, identical call sequences") {
  const int rounds = ctx.rounds();
  {
    const int iters = static_cast<int>(ctx.work(200000));
    auto [v, b] = alternate(
        rounds, [&] { return ctl_mod(kUeq, iters); }, [&] { return ctl_mod(kKernel, iters); });
    ctx.report({.name = "ctl_mod",
                .unit = "ns/op",
                .value = v,
                .baseline = "kernel_epoll",
                .baseline_value = b,
                .goal = "<= 1.0",
                .note = "EPOLL_CTL_MOD changing data and mask on a registered eventfd (the "
                        "goal once EFAULT's check costs a system call per call; 0.5 without)"});
  }
  {
    const int iters = static_cast<int>(ctx.work(20000));
    auto [v, b] = alternate(
        rounds, [&] { return wait_ready(kUeq, 256, 256, iters, 256); },
        [&] { return wait_ready(kKernel, 256, 256, iters, 256); });
    ctx.report({.name = "wait_ready_256",
                .unit = "ns/event",
                .value = v,
                .baseline = "kernel_epoll",
                .baseline_value = b,
                .goal = "<= 1.0",
                .note = "256 level-triggered eventfds always readable, timeout 0"});
  }
  {
    const int iters = static_cast<int>(ctx.work(500000));
    auto [v, b] = alternate(
        rounds, [&] { return wait_idle(kUeq, iters); }, [&] { return wait_idle(kKernel, iters); });
    ctx.report({.name = "wait_idle",
                .unit = "ns/op",
                .value = v,
                .baseline = "kernel_epoll",
                .baseline_value = b,
                .goal = "<= 1.1",
                .note = "timeout 0, nothing ready"});
  }
  {
    const int iters = static_cast<int>(ctx.work(50000));
    auto [v, b] = alternate(
        rounds, [&] { return pingpong(kUeq, iters); }, [&] { return pingpong(kKernel, iters); });
    ctx.report({.name = "pingpong_socketpair",
                .unit = "ns/roundtrip",
                .value = v,
                .baseline = "kernel_epoll",
                .baseline_value = b,
                .goal = "<= 1.15",
                .note = "two threads, each blocked in epoll_wait on its end"});
  }
  {
    // 100k registered fds where the hard RLIMIT_NOFILE allows it; as many as
    // it allows otherwise (the note says how many).
    const int want = ctx.quick() ? 20000 : 100000;
    const std::size_t lim = ueq::bench::raise_fd_limit(static_cast<std::size_t>(want) + 1024);
    const int big = static_cast<int>(std::min<std::size_t>(want, lim > 1024 ? lim - 1024 : 0));
    if (big >= 1000) {
      const int iters = static_cast<int>(ctx.work(100000));
      auto [v, b] = alternate(
          std::max(3, rounds / 3), [&] { return wait_ready(kUeq, big, 1, iters, 64); },
          [&] { return wait_ready(kUeq, 100, 1, iters, 64); });
      ctx.report(
          {.name = "scale_100k_registered",
           .unit = "ns/event",
           .value = v,
           .baseline = "ueq_100_registered",
           .baseline_value = b,
           .goal = "<= 1.2",
           .note = std::to_string(big) + " registered eventfds, 1 ready, vs 100 registered"});
    } else {
      std::fprintf(stderr, "scale_100k_registered: RLIMIT_NOFILE too low, skipped\n");
    }
  }
  // The echo server natively and under ueq-run, rate(preload, seconds).
  auto preload_case = [&](const char* name, const char* unit, double (*rate)(bool, double),
                          const char* goal, const char* note) {
    const double secs = ctx.quick() ? 0.5 : 2;
    auto [v, b] = alternate(
        std::max(3, rounds / 3), [&] { return rate(true, secs); },
        [&] { return rate(false, secs); });
    ctx.report({.name = name,
                .unit = unit,
                .value = v,
                .baseline = "native",
                .baseline_value = b,
                .higher_is_better = true,
                .goal = goal,
                .note = note});
  };
  preload_case("echo_under_preload", "requests/s", echo_server_rps, ">= 0.95",
               "examples/epoll_echo_server natively and under ueq-run; 100 "
               "connections x 64 bytes ping-pong, same client");
  preload_case(
      "churn_under_preload", "connections/s",
      [](bool preload, double secs) { return churn_rps(preload, secs); }, ">= 0.9",
      "examples/epoll_echo_server natively and under ueq-run; 4 clients "
      "each connect, make one 64-byte round trip, close");
}
