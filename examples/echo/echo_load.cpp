#include "echo_load.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <unordered_map>

namespace ueq::echo {
namespace {

using clock_type = std::chrono::steady_clock;

// Payload byte at `offset` of connection `c`'s stream.
inline unsigned char pattern(std::uint32_t c, std::uint64_t offset) {
  return static_cast<unsigned char>((offset * 2654435761u) ^ (c * 40503u) ^ (offset >> 13));
}

struct conn {
  int fd = -1;
  std::uint32_t id = 0;
  std::uint64_t sent = 0;      // bytes written so far
  std::uint64_t received = 0;  // bytes read back and verified
  std::uint64_t target = 0;    // ping-pong: end of the current request
  clock_type::time_point started;
};

void set_nonblock(int fd) {
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
}

}  // namespace

int spawn_server(std::vector<std::string> argv, std::uint16_t* port) {
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return -1;
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out[1], 1);
    std::vector<char*> args;
    for (auto& a : argv)
      args.push_back(a.data());
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(out[1]);
  char line[128] = {};
  std::size_t got = 0;
  while (got < sizeof line - 1) {
    const ssize_t r = ::read(out[0], line + got, 1);
    if (r <= 0 || line[got] == '\n') break;
    ++got;
  }
  ::close(out[0]);
  unsigned p = 0;
  if (std::sscanf(line, "listening on %u", &p) != 1) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    return -1;
  }
  *port = static_cast<std::uint16_t>(p);
  return pid;
}

std::string self_dir() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  std::string p(buf, static_cast<std::size_t>(n));
  return p.substr(0, p.rfind('/'));
}

int listen_loopback(std::uint16_t* port, int backlog) {
  const int l = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (l < 0) return -1;
  int one = 1;
  ::setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(*port);
  socklen_t len = sizeof a;
  if (::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(l, backlog) != 0 ||
      ::getsockname(l, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    const int e = errno;
    ::close(l);
    errno = e;
    return -1;
  }
  *port = ntohs(a.sin_port);
  return l;
}

int start_server(const char* name, std::uint16_t port, void (*on_stop)(int)) {
  const int l = listen_loopback(&port);
  if (l < 0) {
    std::fprintf(stderr, "%s: listen: %s\n", name, std::strerror(errno));
    return -1;
  }
  struct sigaction sa {};
  sa.sa_handler = on_stop;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  std::printf("listening on %u\n", port);
  std::fflush(stdout);
  return l;
}

load_result run_load(const load_config& cfg) {
  load_result res;
  auto fail = [&](const std::string& what) {
    ++res.errors;
    if (res.error.empty()) res.error = what;
  };
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  std::vector<conn> conns(cfg.connections);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(cfg.port);
  for (int i = 0; i < cfg.connections; ++i) {
    conn& c = conns[i];
    c.id = static_cast<std::uint32_t>(i);
    c.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c.fd < 0 || ::connect(c.fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      fail(std::string("connect: ") + std::strerror(errno));
      continue;
    }
    int one = 1;
    ::setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    set_nonblock(c.fd);
    epoll_event e{};
    e.events = EPOLLIN | EPOLLOUT | EPOLLET;
    e.data.u32 = c.id;
    ::epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &e);
  }
  std::vector<double> lat_us;
  lat_us.reserve(1 << 16);
  std::vector<unsigned char> buf(std::max<std::size_t>(cfg.message, 65536));
  if (cfg.on_start) cfg.on_start();
  const auto t0 = clock_type::now();
  const auto end = t0 + std::chrono::duration<double>(cfg.seconds);
  bool stopping = false;

  // Writes as much of the connection's pending output as the socket takes.
  auto pump_out = [&](conn& c) {
    for (;;) {
      const std::uint64_t limit = cfg.streaming ? c.received + cfg.window : c.target;
      if (c.sent >= limit) return;
      const std::size_t n =
          static_cast<std::size_t>(std::min<std::uint64_t>(limit - c.sent, buf.size()));
      for (std::size_t k = 0; k < n; ++k)
        buf[k] = pattern(c.id, c.sent + k);
      const ssize_t w = ::send(c.fd, buf.data(), n, MSG_NOSIGNAL);
      if (w < 0) {
        if (errno != EAGAIN) fail(std::string("send: ") + std::strerror(errno));
        return;
      }
      c.sent += static_cast<std::uint64_t>(w);
    }
  };
  auto start_request = [&](conn& c) {
    c.target = c.sent + cfg.message;
    c.started = clock_type::now();
    pump_out(c);
  };
  if (!cfg.streaming)
    for (auto& c : conns)
      if (c.fd >= 0) start_request(c);

  epoll_event evs[256];
  while (!stopping) {
    const int n = ::epoll_wait(ep, evs, 256, 50);
    if (clock_type::now() >= end) break;
    for (int i = 0; i < n && !stopping; ++i) {
      conn& c = conns[evs[i].data.u32];
      if (evs[i].events & (EPOLLERR | EPOLLHUP)) {
        fail("connection closed by the server");
        ::epoll_ctl(ep, EPOLL_CTL_DEL, c.fd, nullptr);
        continue;
      }
      if (evs[i].events & EPOLLOUT) pump_out(c);
      if (!(evs[i].events & EPOLLIN)) continue;
      for (;;) {
        const ssize_t r = ::recv(c.fd, buf.data(), buf.size(), 0);
        if (r <= 0) {
          if (r == 0 || errno != EAGAIN) {
            fail(r == 0 ? "server closed a connection"
                        : std::string("recv: ") + std::strerror(errno));
            ::epoll_ctl(ep, EPOLL_CTL_DEL, c.fd, nullptr);
          }
          break;
        }
        for (ssize_t k = 0; k < r; ++k)
          if (buf[k] != pattern(c.id, c.received + k)) {
            fail("wrong byte echoed");
            break;
          }
        c.received += static_cast<std::uint64_t>(r);
        res.bytes += static_cast<std::uint64_t>(r);
        if (cfg.streaming) {
          res.requests = res.bytes / cfg.message;
          pump_out(c);
        } else if (c.received == c.target) {
          lat_us.push_back(
              std::chrono::duration<double, std::micro>(clock_type::now() - c.started).count());
          if (++res.requests == cfg.requests && cfg.requests) {
            stopping = true;
            break;
          }
          start_request(c);
        } else if (c.received > c.target) {
          fail("more bytes echoed than sent");
        }
      }
    }
  }
  res.seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
  if (cfg.on_stop) cfg.on_stop();
  for (auto& c : conns)
    if (c.fd >= 0) ::close(c.fd);
  ::close(ep);
  if (!lat_us.empty()) {
    std::sort(lat_us.begin(), lat_us.end());
    res.p50_us = lat_us[lat_us.size() / 2];
    res.p99_us = lat_us[std::min(lat_us.size() - 1, lat_us.size() * 99 / 100)];
    res.max_us = lat_us.back();
  }
  return res;
}

void run_epoll_server(int listen_fd, const std::atomic<bool>& stop) {
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  set_nonblock(listen_fd);
  epoll_event e{};
  e.events = EPOLLIN;
  e.data.fd = listen_fd;
  ::epoll_ctl(ep, EPOLL_CTL_ADD, listen_fd, &e);
  // Per connection: bytes read but not yet written back.
  std::unordered_map<int, std::string> pending;
  std::vector<char> buf(65536);
  epoll_event evs[256];
  while (!stop.load(std::memory_order_acquire)) {
    const int n = ::epoll_wait(ep, evs, 256, 50);
    for (int i = 0; i < n; ++i) {
      const int fd = evs[i].data.fd;
      if (fd == listen_fd) {
        for (;;) {
          const int c = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (c < 0) break;
          int one = 1;
          ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          epoll_event ce{};
          ce.events = EPOLLIN | EPOLLOUT | EPOLLET;
          ce.data.fd = c;
          ::epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
          pending[c];
        }
        continue;
      }
      std::string& out = pending[fd];
      bool closed = false;
      if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        for (;;) {
          const ssize_t r = ::recv(fd, buf.data(), buf.size(), 0);
          if (r > 0) {
            out.append(buf.data(), static_cast<std::size_t>(r));
            continue;
          }
          if (r == 0 || errno != EAGAIN) closed = true;
          break;
        }
      }
      while (!out.empty() && !closed) {
        const ssize_t w = ::send(fd, out.data(), out.size(), MSG_NOSIGNAL);
        if (w < 0) {
          if (errno != EAGAIN) closed = true;
          break;
        }
        out.erase(0, static_cast<std::size_t>(w));
      }
      if (closed) {
        ::close(fd);
        pending.erase(fd);
      }
    }
  }
  for (auto& [fd, _] : pending)
    ::close(fd);
  ::close(ep);
}

}  // namespace ueq::echo
