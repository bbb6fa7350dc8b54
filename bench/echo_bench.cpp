// ueq-bench echo: examples/echo_server (one uthread per connection on
// ueq::io) against examples/epoll_echo_server (one thread, one kernel epoll
// loop), both as separate processes on 127.0.0.1, driven in turn by the same
// client (examples/echo/echo_load) running in this process.
//
// Each server runs on one OS thread (the ueq server with --vcores 1) so the
// comparison is per core: the client takes the other core of a 2-core
// machine. Rounds alternate the two servers; each round starts a fresh
// server process. The p99 round-trip latency of the ping-pong cases is
// reported as its own row (`..._p99`), and so is the server's CPU time per
// request (`cpu_per_request_...`: user + system time of the server process
// over the load, from /proc/PID/stat), which a client-limited run hides
// from the throughput rows.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>

#include <cstring>
#include <string>
#include <vector>

#include "echo/echo_load.hpp"
#include "harness.hpp"
#include "ueq/runtime/clock.hpp"

namespace {

struct load_case {
  const char* name;
  int connections;
  std::size_t message;
  bool streaming;
  const char* goal;
};

// User + system CPU seconds a process has used so far, or -1.
double cpu_seconds(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  FILE* f = std::fopen(path, "r");
  if (!f) return -1;
  char buf[1024];
  const std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = 0;
  // Fields after the command name (which may hold spaces) start past ')':
  // state is field 3; utime and stime are fields 14 and 15.
  const char* p = std::strrchr(buf, ')');
  unsigned long ut = 0, st = 0;
  if (!p ||
      std::sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*s %*s %*s %*s %*s %lu %lu", &ut, &st) != 2)
    return -1;
  return double(ut + st) / double(::sysconf(_SC_CLK_TCK));
}

// Stops a server: SIGTERM, then SIGKILL if it has not exited within 3 s.
// Both servers end their connections on SIGTERM (a connection the kernel
// completed after the client gave up on it, as at 10k connects when the
// listen queue overflows, has no peer to close it); the kill is a backstop
// so a stuck server cannot hang the bench.
void stop_server(pid_t pid) {
  ::kill(pid, SIGTERM);
  const ueq::mono_ns give_up = ueq::deadline_after_ms(3000);
  while (::waitpid(pid, nullptr, WNOHANG) == 0) {
    if (ueq::monotonic_now() >= give_up) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      return;
    }
    ::usleep(10'000);  // polling a child's exit; nothing to synchronise with
  }
}

struct round_result {
  ueq::echo::load_result load;
  double server_cpu_s = -1;  // the server's CPU time over the load
};

// One run of the client against a freshly started server; errors > 0 when
// the server did not start or a byte was lost or wrong.
round_result run_against(bool use_ueq, const load_case& lc, double seconds) {
  const std::string dir = ueq::echo::self_dir() + "/../examples/";
  std::vector<std::string> argv;
  if (use_ueq)
    argv = {dir + "echo_server", "--port", "0", "--vcores", "1"};
  else
    argv = {dir + "epoll_echo_server", "--port", "0"};
  std::uint16_t port = 0;
  const pid_t pid = ueq::echo::spawn_server(argv, &port);
  round_result rr;
  ueq::echo::load_result& r = rr.load;
  if (pid < 0) {
    r.errors = 1;
    r.error = "could not start " + argv[0];
    return rr;
  }
  ueq::echo::load_config cfg;
  cfg.port = port;
  cfg.connections = lc.connections;
  cfg.message = lc.message;
  cfg.streaming = lc.streaming;
  cfg.seconds = seconds;
  // The server's CPU over the window the client counts requests in (not
  // its start-up, the connects, or the closes).
  double cpu0 = -1, cpu1 = -1;
  cfg.on_start = [&] { cpu0 = cpu_seconds(pid); };
  cfg.on_stop = [&] { cpu1 = cpu_seconds(pid); };
  r = ueq::echo::run_load(cfg);
  if (cpu0 >= 0 && cpu1 >= 0) rr.server_cpu_s = cpu1 - cpu0;
  stop_server(pid);
  return rr;
}

}  // namespace

UEQ_BENCH(echo, "ueq echo_server (uthreads on ueq::io) vs a plain epoll echo server") {
  const load_case cases[] = {
      {"pingpong_100x64", 100, 64, false, ">= 0.95"},
      {"pingpong_1000x512", 1000, 512, false, ">= 0.95"},
      {"pingpong_10kx64", 10000, 64, false, ">= 0.95"},  // needs 10256 fds
      {"stream_4x512", 4, 512, true, ">= 0.95"},
  };
  // The client (this process) holds one end of each connection, the server
  // (a child, which inherits the limit) the other.
  const std::size_t fds = ueq::bench::raise_fd_limit(10000 + 256);
  const double secs = ctx.quick() ? 0.5 : 2;
  const int rounds = std::max(3, ctx.rounds() / 3);
  for (const load_case& lc : cases) {
    if (fds < std::size_t(lc.connections + 256)) {
      std::fprintf(stderr, "echo %s: SKIPPED, needs %d fds and the hard limit allows %zu\n",
                   lc.name, lc.connections + 256, fds);
      continue;
    }
    std::vector<double> p99_ueq, p99_epoll, cpu_ueq, cpu_epoll;
    std::string failure;
    auto measure = [&](bool use_ueq) {
      const auto rr = run_against(use_ueq, lc, secs);
      const auto& r = rr.load;
      if (r.errors) {
        if (failure.empty())
          failure = std::string(use_ueq ? "ueq" : "epoll") + " server: " + r.error;
        return 0.0;
      }
      (use_ueq ? p99_ueq : p99_epoll).push_back(r.p99_us);
      if (rr.server_cpu_s >= 0 && r.requests > 0)
        (use_ueq ? cpu_ueq : cpu_epoll).push_back(1e6 * rr.server_cpu_s / double(r.requests));
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
                  .goal = "<= 1.3",
                  .note = "median over rounds of each round's p99 round-trip latency"});
    if (!lc.streaming && !cpu_ueq.empty() && !cpu_epoll.empty())
      ctx.report({.name = std::string("cpu_per_request_") + lc.name,
                  .unit = "us/request",
                  .value = ueq::bench::median(cpu_ueq),
                  .baseline = "epoll_echo_server",
                  .baseline_value = ueq::bench::median(cpu_epoll),
                  .goal = "<= 1.5",
                  .note = "server user+system CPU per request (/proc/PID/stat), median of rounds"});
  }
}
