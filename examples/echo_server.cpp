// echo_server: a TCP echo server in blocking style, one uthread per
// connection, on ueq::io. Every wait parks only its uthread; idle vcores
// poll the host kernel.
//
//   echo_server [--port P] [--vcores N] [--seconds S]
// Prints "listening on PORT" once ready; serves until S seconds pass (0 =
// until SIGINT/SIGTERM). After S seconds, open connections are served
// until their clients close them; on SIGINT/SIGTERM they are shut down, so
// the server exits even when a peer has vanished without closing.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_set>

#include "echo/echo_load.hpp"
#include "ueq/taps/io.hpp"
#include "ueq/uthread/sync.hpp"
#include "ueq/uthread/uthread.hpp"

namespace {
std::atomic<bool> g_stop{false};
void on_signal(int) {
  g_stop.store(true);
}

// The connections being served, so a stop request can shut them down. An
// fd leaves the set before it is closed, so a number in it is still ours.
ueq::mutex g_conns_mu;
std::unordered_set<int> g_conns;  // guarded by g_conns_mu

void serve(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  char buf[16384];
  for (;;) {
    auto n = ueq::io::read(fd, buf, sizeof buf);
    if (!n || *n == 0) break;                          // error, peer closed, or shut down
    if (!ueq::io::write_all(fd, buf, *n).ok()) break;  // peer gone
  }
  {
    std::lock_guard<ueq::mutex> g(g_conns_mu);
    g_conns.erase(fd);
  }
  (void)ueq::io::close(fd);
}

// Ends every connection's reads and writes (the serving uthreads then see
// end of file and close their fds).
void shut_down_connections() {
  std::lock_guard<ueq::mutex> g(g_conns_mu);
  for (int fd : g_conns)
    ::shutdown(fd, SHUT_RDWR);
}
}  // namespace

int main(int argc, char** argv) {
  std::uint16_t port = 0;
  unsigned vcores = 0;
  double seconds = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--port"))
      port = static_cast<std::uint16_t>(std::atoi(argv[i + 1]));
    else if (!std::strcmp(argv[i], "--vcores"))
      vcores = static_cast<unsigned>(std::atoi(argv[i + 1]));
    else if (!std::strcmp(argv[i], "--seconds"))
      seconds = std::atof(argv[i + 1]);
    else {
      std::fprintf(stderr, "usage: echo_server [--port P] [--vcores N] [--seconds S]\n");
      return 2;
    }
  }
  const int l = ueq::echo::start_server("echo_server", port, on_signal);
  if (l < 0) return 1;
  const ueq::mono_ns end = seconds > 0
                               ? ueq::deadline_after_ns(static_cast<std::int64_t>(seconds * 1e9))
                               : ueq::kNoDeadline;
  auto r = ueq::run(
      [&] {
        // Accept in short slices so a stop request or the end is noticed.
        while (!g_stop.load() && ueq::monotonic_now() < end) {
          auto c = ueq::io::accept(l, nullptr, nullptr, SOCK_CLOEXEC,
                                   std::min(end, ueq::deadline_after_ms(100)));
          if (!c) continue;  // ETIMEDOUT: look at the clock and the flag again
          const int fd = *c;
          {
            std::lock_guard<ueq::mutex> g(g_conns_mu);
            g_conns.insert(fd);
          }
          if (!ueq::spawn([fd] { serve(fd); }, {.detached = true})) {
            std::lock_guard<ueq::mutex> g(g_conns_mu);
            g_conns.erase(fd);
            (void)ueq::io::close(fd);
          }
        }
        // Close the listener so no new connections come. On a stop request
        // end the open ones too; after --seconds, they end when their
        // clients close them.
        (void)ueq::io::close(l);
        if (g_stop.load()) shut_down_connections();
      },
      {.vcores = vcores});
  if (!r) {
    std::fprintf(stderr, "echo_server: %s\n", r.error().message().c_str());
    return 1;
  }
  return 0;
}
