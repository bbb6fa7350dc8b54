// ueq-bench echo: examples/echo_server (one uthread per connection on
// ueq::io) against examples/epoll_echo_server (one thread, one kernel epoll
// loop), both as separate processes on 127.0.0.1, driven in turn by the same
// client (examples/echo/echo_load) running in this process.
//
// Each server runs on one OS thread (the ueq server with --vcores 1) so the
// comparison is per core: the client takes the other core of a 2-core
// machine. Rounds alternate the two servers; each round starts a fresh
// server process. The p99 round-trip latency of the ping-pong cases is
// reported as its own row (`..._p99`).
#include <signal.h>
#include <sys/wait.h>

#include <string>
#include <vector>

#include "echo/echo_load.hpp"
#include "harness.hpp"

namespace {

struct load_case {
  const char* name;
  int connections;
  std::size_t message;
  bool streaming;
  const char* goal;
};

// One run of the client against a freshly started server; errors > 0 when
// the server did not start or a byte was lost or wrong.
ueq::echo::load_result run_against(bool use_ueq, const load_case& lc, double seconds) {
  const std::string dir = ueq::echo::self_dir() + "/../examples/";
  std::vector<std::string> argv;
  if (use_ueq)
    argv = {dir + "echo_server", "--port", "0", "--vcores", "1"};
  else
    argv = {dir + "epoll_echo_server", "--port", "0"};
  std::uint16_t port = 0;
  const pid_t pid = ueq::echo::spawn_server(argv, &port);
  ueq::echo::load_result r;
  if (pid < 0) {
    r.errors = 1;
    r.error = "could not start " + argv[0];
    return r;
  }
  ueq::echo::load_config cfg;
  cfg.port = port;
  cfg.connections = lc.connections;
  cfg.message = lc.message;
  cfg.streaming = lc.streaming;
  cfg.seconds = seconds;
  r = ueq::echo::run_load(cfg);
  ::kill(pid, SIGTERM);
  ::waitpid(pid, nullptr, 0);
  return r;
}

}  // namespace

UEQ_BENCH(echo, "ueq echo_server (uthreads on ueq::io) vs a plain epoll echo server") {
  const load_case cases[] = {
      {"pingpong_100x64", 100, 64, false, ">= 0.95"},
      {"pingpong_1000x512", 1000, 512, false, ">= 0.95"},
      {"stream_4x512", 4, 512, true, ">= 0.9"},
  };
  (void)ueq::bench::raise_fd_limit(2 * 1000 + 256);  // both ends of 1000 connections
  const double secs = ctx.quick() ? 0.5 : 2;
  const int rounds = std::max(3, ctx.rounds() / 3);
  for (const load_case& lc : cases) {
    std::vector<double> p99_ueq, p99_epoll;
    std::string failure;
    auto measure = [&](bool use_ueq) {
      const auto r = run_against(use_ueq, lc, secs);
      if (r.errors) {
        if (failure.empty())
          failure = std::string(use_ueq ? "ueq" : "epoll") + " server: " + r.error;
        return 0.0;
      }
      (use_ueq ? p99_ueq : p99_epoll).push_back(r.p99_us);
      return lc.streaming ? r.mb_per_sec() : r.requests_per_sec();
    };
    auto [v, b] = ueq::bench::alternate(
        rounds, [&] { return measure(true); }, [&] { return measure(false); });
    if (!failure.empty()) {
      // A lost or wrong byte makes the case fail outright, whatever the rate.
      std::fprintf(stderr, "echo %s: %s\n", lc.name, failure.c_str());
      v = 0;
    }
    const std::string shape =
        std::to_string(lc.connections) + " connections x " + std::to_string(lc.message) + " bytes";
    ctx.report({.name = lc.name,
                .unit = lc.streaming ? "MB/s" : "requests/s",
                .value = v,
                .baseline = "epoll_echo_server",
                .baseline_value = b,
                .higher_is_better = true,
                .goal = lc.goal,
                .note = (lc.streaming ? "streaming, " : "ping-pong, ") + shape +
                        "; each server on one thread, every byte checked"});
    if (!lc.streaming)
      ctx.report({.name = std::string(lc.name) + "_p99",
                  .unit = "us",
                  .value = ueq::bench::median(p99_ueq),
                  .baseline = "epoll_echo_server",
                  .baseline_value = ueq::bench::median(p99_epoll),
                  .note = "median over rounds of each round's p99 round-trip latency"});
  }
}
