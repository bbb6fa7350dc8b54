// echo_client: a load generator for echo servers on 127.0.0.1. Prints
// requests/s, MB/s and round-trip latency percentiles, and checks every byte
// that comes back.
//
//   echo_client --port P [--connections N] [--message BYTES] [--seconds S]
//               [--requests N] [--streaming] [--window BYTES]
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "echo/echo_load.hpp"

int main(int argc, char** argv) {
  ueq::echo::load_config cfg;
  for (int i = 1; i < argc; ++i) {
    auto next = [&](const char* name) -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "echo_client: %s needs a value\n", name);
        std::exit(2);
      }
      return argv[++i];
    };
    if (!std::strcmp(argv[i], "--port"))
      cfg.port = static_cast<std::uint16_t>(std::atoi(next("--port")));
    else if (!std::strcmp(argv[i], "--connections"))
      cfg.connections = std::atoi(next("--connections"));
    else if (!std::strcmp(argv[i], "--message"))
      cfg.message = std::strtoul(next("--message"), nullptr, 10);
    else if (!std::strcmp(argv[i], "--seconds"))
      cfg.seconds = std::atof(next("--seconds"));
    else if (!std::strcmp(argv[i], "--requests"))
      cfg.requests = std::strtoull(next("--requests"), nullptr, 10);
    else if (!std::strcmp(argv[i], "--window"))
      cfg.window = std::strtoul(next("--window"), nullptr, 10);
    else if (!std::strcmp(argv[i], "--streaming"))
      cfg.streaming = true;
    else {
      std::fprintf(stderr,
                   "usage: echo_client --port P [--connections N] [--message BYTES] "
                   "[--seconds S] [--requests N] [--streaming] [--window BYTES]\n");
      return 2;
    }
  }
  if (cfg.port == 0 || cfg.connections < 1 || cfg.message == 0 || cfg.seconds <= 0) {
    std::fprintf(stderr, "echo_client: need --port, connections >= 1, message >= 1, seconds > 0\n");
    return 2;
  }
  const auto r = ueq::echo::run_load(cfg);
  std::printf("%d connections x %zu bytes, %s: %.0f requests/s, %.1f MB/s over %.2f s\n",
              cfg.connections, cfg.message, cfg.streaming ? "streaming" : "ping-pong",
              r.requests_per_sec(), r.mb_per_sec(), r.seconds);
  if (!cfg.streaming)
    std::printf("round trip: p50 %.1f us, p99 %.1f us, max %.1f us\n", r.p50_us, r.p99_us,
                r.max_us);
  std::printf("verified bytes: %llu, errors: %llu%s%s\n", (unsigned long long)r.bytes,
              (unsigned long long)r.errors,
              r.error.empty() ? "" : " (first: ", r.error.empty() ? "" : (r.error + ")").c_str());
  return r.errors == 0 && r.requests > 0 ? 0 : 1;
}
