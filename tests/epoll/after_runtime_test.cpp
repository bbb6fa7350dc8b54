// A plain thread's epoll_wait once a uthread runtime has run and stopped.
// Parked threads poll the host only while one is parked; after run()
// returns none is, so a plain waiter that is not the host poll's leader
// must still see host events (it sleeps watching the host and polls when
// woken), and so must a uthread whose signal mask keeps it on its vcore.
// Each case fails by timing out (n == 0 after the full timeout) if the
// waiter only waits for posts that nobody dispatches.
#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include "../support.hpp"
#include "ueq/epoll.h"
#include "ueq/runtime/parker.hpp"
#include "ueq/uthread/uthread.hpp"

namespace {

struct pipe_set {
  int r = -1, w = -1, ep = -1;
  pipe_set() {
    int p[2];
    REQUIRE(::pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0);
    r = p[0];
    w = p[1];
    ep = ueq_epoll_create1(EPOLL_CLOEXEC);
    REQUIRE(ep >= 0);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = r;
    REQUIRE(ueq_epoll_ctl(ep, EPOLL_CTL_ADD, r, &ev) == 0);
  }
  ~pipe_set() {
    ueq_close(ep);
    ::close(r);
    ::close(w);
  }
};

// Writes a byte once thread `tid` (set by the waiter) sleeps in the kernel
// (or after 20 s: the wait then fails on its own). No assertion here: Catch2
// v2 asserts from the test's thread only.
std::thread write_when_asleep(std::atomic<pid_t>& tid, int fd) {
  return std::thread([&tid, fd] {
    (void)ueq::test::wait_until(
        [&] { return tid.load() != 0 && ueq::test::thread_sleeping(tid.load()); });
    (void)::write(fd, "x", 1);
  });
}

}  // namespace

TEST_CASE("epoll after a runtime: a plain waiter sees a host event", "[epoll]") {
  pipe_set s;  // the tap service first: parked vcores then poll it
  // A uthread that sleeps parks its vcore, which polls the host.
  REQUIRE(
      ueq::run([] { ueq::this_uthread::sleep_for(std::chrono::milliseconds(5)); }, {.vcores = 2})
          .ok());
  REQUIRE(ueq::parkers_poll_host());  // set for good by the run
  std::atomic<pid_t> tid{0};
  std::thread writer = write_when_asleep(tid, s.w);
  tid.store(ueq::test::current_tid());
  epoll_event out[1];
  const int n = ueq_epoll_wait(s.ep, out, 1, 10000);
  writer.join();
  REQUIRE(n == 1);
  REQUIRE(out[0].data.fd == s.r);
}

TEST_CASE("epoll after a runtime: a uthread waiting with a signal mask sees a host event",
          "[epoll]") {
  pipe_set s;
  std::atomic<pid_t> tid{0};
  std::thread writer = write_when_asleep(tid, s.w);
  int n = -2, fd = -1;
  auto ran = ueq::run(
      [&] {
        sigset_t m;
        sigemptyset(&m);
        tid.store(ueq::test::current_tid());
        epoll_event out[1];
        n = ueq_epoll_pwait(s.ep, out, 1, 10000, &m);
        if (n == 1) fd = out[0].data.fd;
      },
      {.vcores = 1});
  writer.join();
  REQUIRE(ran.ok());
  REQUIRE(n == 1);
  REQUIRE(fd == s.r);
}
