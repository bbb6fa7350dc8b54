// epoll_echo_server: a plain epoll echo server on 127.0.0.1 (the baseline
// the ueq servers are measured against, and the program `ueq-bench echo`
// runs natively and under ueq-run).
//
//   epoll_echo_server [--port P] [--seconds S]
// Prints "listening on PORT" once ready; serves until S seconds pass (0 =
// until SIGINT/SIGTERM).
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "echo/echo_load.hpp"

namespace {
std::atomic<bool> g_stop{false};
void on_signal(int) {
  g_stop.store(true);
}
}  // namespace

int main(int argc, char** argv) {
  std::uint16_t port = 0;
  double seconds = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--port"))
      port = static_cast<std::uint16_t>(std::atoi(argv[i + 1]));
    else if (!std::strcmp(argv[i], "--seconds"))
      seconds = std::atof(argv[i + 1]);
    else {
      std::fprintf(stderr, "usage: epoll_echo_server [--port P] [--seconds S]\n");
      return 2;
    }
  }
  const int l = ueq::echo::start_server("epoll_echo_server", port, on_signal);
  if (l < 0) return 1;
  std::thread timer;
  if (seconds > 0)
    timer = std::thread([seconds] {
      const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
      while (!g_stop.load() && std::chrono::steady_clock::now() < end)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));  // a timer, not sync
      g_stop.store(true);
    });
  ueq::echo::run_epoll_server(l, g_stop);
  if (timer.joinable()) timer.join();
  return 0;
}
