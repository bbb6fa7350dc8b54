// ueq-soak: the epoll echo server running on ueq (under ueq-run) against
// churning clients, for a long time, with every byte checked.
//
//   ueq-soak [--seconds S] [--clients N] [--server PATH] [--ueq-run PATH]
//
// Each client thread loops: connect; exchange a random number of messages of
// random sizes, each filled with a pattern of (connection, offset) and
// checked when it comes back; then either close cleanly, close with a reset
// (SO_LINGER 0) in the middle of a message, or close while the server may be
// waiting to write; reconnect (so fd numbers are reused on both sides). The
// server's epoll_wait timeouts keep its timers busy. Every second the
// server's resident memory and open fd count are sampled. The run fails if
// any byte was wrong or missing, or if RSS or the fd count grew over the run
// (last quarter's maximum against the first quarter's, after warm-up, with
// slack). Prints a summary; exit status 0 when clean.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dirent.h>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "echo/echo_load.hpp"

namespace {

struct stats {
  std::atomic<std::uint64_t> messages{0}, bytes{0}, connections{0}, resets{0}, errors{0};
};

unsigned char pattern(std::uint64_t conn, std::uint64_t off) {
  return static_cast<unsigned char>((off * 131) ^ (conn * 7919) ^ (off >> 9));
}

bool write_all(int fd, const unsigned char* p, std::size_t n) {
  while (n) {
    const ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w <= 0) return false;
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

bool read_all(int fd, unsigned char* p, std::size_t n) {
  while (n) {
    const ssize_t r = ::recv(fd, p, n, 0);
    if (r <= 0) return false;
    p += r;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}

void client(int id, std::uint16_t port, const std::atomic<bool>& stop, stats& st) {
  std::mt19937_64 rng(id * 1000003u + 17);
  std::vector<unsigned char> out(65536), in(65536);
  std::uint64_t conn_id = static_cast<std::uint64_t>(id) << 40;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  while (!stop.load()) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    timeval tv{10, 0};  // a stuck server shows up as an error, not a hang
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      st.errors++;
      std::fprintf(stderr, "soak: connect: %s\n", std::strerror(errno));
      ::close(fd);
      continue;
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ++conn_id;
    st.connections++;
    std::uint64_t off = 0;
    const int msgs = 1 + static_cast<int>(rng() % 40);
    const int ending = static_cast<int>(rng() % 10);  // 0: reset mid-message, 1: close mid-message
    bool ok = true;
    for (int m = 0; m < msgs && ok && !stop.load(); ++m) {
      const std::size_t n = 1 + rng() % (rng() % 4 == 0 ? 65536 : 512);
      for (std::size_t k = 0; k < n; ++k)
        out[k] = pattern(conn_id, off + k);
      if (m == msgs - 1 && ending <= 1) {
        // Leave in the middle: the server is reading or about to write back.
        write_all(fd, out.data(), n / 2 + 1);
        if (ending == 0) {
          linger lg{1, 0};
          ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
          st.resets++;
        }
        break;
      }
      if (!write_all(fd, out.data(), n) || !read_all(fd, in.data(), n)) {
        ok = false;
        break;
      }
      for (std::size_t k = 0; k < n; ++k)
        if (in[k] != out[k]) {
          ok = false;
          break;
        }
      off += n;
      st.messages++;
      st.bytes += n;
    }
    if (!ok) {
      st.errors++;
      std::fprintf(stderr, "soak: connection %llu: lost or wrong bytes\n",
                   static_cast<unsigned long long>(conn_id));
    }
    ::close(fd);
  }
}

long rss_kib(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/status", pid);
  FILE* f = std::fopen(path, "re");
  if (!f) return -1;
  char line[256];
  long kib = -1;
  while (std::fgets(line, sizeof line, f))
    if (std::sscanf(line, "VmRSS: %ld", &kib) == 1) break;
  std::fclose(f);
  return kib;
}

long fd_count(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/fd", pid);
  DIR* d = ::opendir(path);
  if (!d) return -1;
  long n = 0;
  while (dirent* e = ::readdir(d))
    if (e->d_name[0] != '.') ++n;
  ::closedir(d);
  return n;
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 10;
  int clients = 4;
  std::string dir = ueq::echo::self_dir();
  std::string server = dir + "/../examples/epoll_echo_server";
  std::string runner = dir + "/../epoll/ueq-run";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--seconds"))
      seconds = std::atof(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--clients"))
      clients = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--server"))
      server = argv[i + 1];
    else if (!std::strcmp(argv[i], "--ueq-run"))
      runner = argv[i + 1];
    else {
      std::fprintf(
          stderr, "usage: ueq-soak [--seconds S] [--clients N] [--server PATH] [--ueq-run PATH]\n");
      return 2;
    }
  }
  ::signal(SIGPIPE, SIG_IGN);
  std::uint16_t port = 0;
  const pid_t pid = ueq::echo::spawn_server({runner, server, "--port", "0"}, &port);
  if (pid < 0) {
    std::fprintf(stderr, "soak: the server did not start (%s under %s)\n", server.c_str(),
                 runner.c_str());
    return 1;
  }
  // The server is the child of ueq-run's exec: same pid.
  stats st;
  std::atomic<bool> stop{false};
  std::vector<std::thread> ts;
  for (int c = 0; c < clients; ++c)
    ts.emplace_back(client, c, port, std::cref(stop), std::ref(st));
  std::vector<long> rss, fds;
  const auto t0 = std::chrono::steady_clock::now();
  const auto end = t0 + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::seconds(1));  // the sampling period
    rss.push_back(rss_kib(pid));
    fds.push_back(fd_count(pid));
  }
  stop.store(true);
  for (auto& t : ts)
    t.join();
  ::kill(pid, SIGTERM);
  int status = 0;
  ::waitpid(pid, &status, 0);

  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // Flat: after warm-up (the first quarter), the last quarter's maximum may
  // exceed the first quarter's maximum by at most 25% + 2 MiB (RSS) and
  // 16 (fds, for connections in flight).
  const std::size_t q = std::max<std::size_t>(1, rss.size() / 4);
  auto max_of = [](const std::vector<long>& v, std::size_t b, std::size_t e) {
    long m = 0;
    for (std::size_t i = b; i < e && i < v.size(); ++i)
      m = std::max(m, v[i]);
    return m;
  };
  const long rss_first = max_of(rss, 0, q), rss_last = max_of(rss, rss.size() - q, rss.size());
  const long fd_first = max_of(fds, 0, q), fd_last = max_of(fds, fds.size() - q, fds.size());
  const bool rss_flat = rss_last <= rss_first + rss_first / 4 + 2048;
  const bool fds_flat = fd_last <= fd_first + 16;
  std::printf("soak: %.0f s, %d clients, server under ueq-run\n", secs, clients);
  std::printf("  connections %llu (%llu reset mid-message), messages %llu, bytes %llu\n",
              (unsigned long long)st.connections.load(), (unsigned long long)st.resets.load(),
              (unsigned long long)st.messages.load(), (unsigned long long)st.bytes.load());
  std::printf("  server RSS KiB: first quarter max %ld, last quarter max %ld (%s)\n", rss_first,
              rss_last, rss_flat ? "flat" : "GREW");
  std::printf("  server fds: first quarter max %ld, last quarter max %ld (%s)\n", fd_first, fd_last,
              fds_flat ? "flat" : "GREW");
  std::printf("  lost or misdelivered: %llu\n", (unsigned long long)st.errors.load());
  const bool ok = st.errors.load() == 0 && rss_flat && fds_flat && st.messages.load() > 0;
  std::printf("soak: %d passed, %d failed\n", ok ? 1 : 0, ok ? 0 : 1);
  return ok ? 0 : 1;
}
