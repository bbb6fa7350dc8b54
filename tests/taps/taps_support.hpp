// Helpers for the taps and io suites: services per backend, fd pairs, and a
// pump that polls a service until a queue has a message.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <optional>
#include <string_view>
#include <utility>

#include "ueq/ceq/evq/event_queue.hpp"
#include "ueq/taps/tap.hpp"

namespace ueq::test {

// The host backend this run tests: io_uring in the runs meson registers as
// NAME-io_uring (UEQ_TEST_BACKEND=io_uring; the runner exits 77, skipped,
// where the host forbids io_uring: tests/catch_main.cpp), else epoll.
inline backend_kind backend_under_test() {
  const char* b = std::getenv("UEQ_TEST_BACKEND");
  return b && std::string_view(b) == "io_uring" ? backend_kind::io_uring : backend_kind::epoll;
}
inline const char* backend_name(backend_kind k) {
  return k == backend_kind::io_uring ? "io_uring" : "epoll";
}

// A service on the backend this run tests.
inline std::unique_ptr<tap_service> service_under_test() {
  auto s = tap_service::create(backend_under_test());
  REQUIRE(s.ok());
  return std::move(s).value();
}

inline event_queue_ptr msg_queue() {
  auto q = event_queue::create_messages();
  REQUIRE(q.ok());
  return std::move(q).value();
}

// Polls `svc` until `q` yields a message or `ms` pass.
inline std::optional<event_msg> pump(tap_service& svc, event_queue& q, int ms = 2000) {
  const mono_ns deadline = deadline_after_ms(ms);
  event_msg m;
  for (;;) {
    if (q.try_get(m)) return m;
    if (monotonic_now() >= deadline) return std::nullopt;
    (void)svc.poll(std::min(deadline, deadline_after_ms(20)));
  }
}

// Closed through ueq (the documented rule for fds ueq may have tapped), so
// a later test that gets the same numbers starts clean.
struct fd_pair {
  int a = -1, b = -1;
  ~fd_pair() {
    if (a >= 0) (void)ueq::close_fd(a);
    if (b >= 0) (void)ueq::close_fd(b);
  }
};

inline void make_pipe(fd_pair& p) {
  int f[2];
  REQUIRE(::pipe2(f, O_NONBLOCK | O_CLOEXEC) == 0);
  p.a = f[0];  // read end
  p.b = f[1];  // write end
}

inline void make_socketpair(fd_pair& p) {
  int f[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, f) == 0);
  p.a = f[0];
  p.b = f[1];
}

// A socket of `type` bound to 127.0.0.1 on a free port (listening, for
// SOCK_STREAM, if `listen` is set); its address goes to *addr.
inline int bound_loopback(int type, sockaddr_in* addr, bool listen = true) {
  const int s = ::socket(AF_INET, type | SOCK_CLOEXEC, 0);
  REQUIRE(s >= 0);
  *addr = {};
  addr->sin_family = AF_INET;
  addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof *addr;
  REQUIRE(::bind(s, reinterpret_cast<sockaddr*>(addr), sizeof *addr) == 0);
  if (type == SOCK_STREAM && listen) REQUIRE(::listen(s, 16) == 0);
  REQUIRE(::getsockname(s, reinterpret_cast<sockaddr*>(addr), &len) == 0);
  return s;
}

// A connected TCP pair on 127.0.0.1 (a = client, b = accepted server side).
inline void make_tcp(fd_pair& p) {
  sockaddr_in addr;
  const int l = bound_loopback(SOCK_STREAM, &addr);
  p.a = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(::connect(p.a, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  p.b = ::accept4(l, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
  REQUIRE(p.b >= 0);
  ::fcntl(p.a, F_SETFL, O_NONBLOCK);
  ::close(l);
}

}  // namespace ueq::test
