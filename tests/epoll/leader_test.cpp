// A plain thread's epoll_wait leads the host poll when no thread does: it
// sleeps in the host epoll itself, which only host events and the host's
// wake channel end. A post that does not come from that poll must wake it
// (impl::lead_host_poll and pending_signal::raise, tests/model/settle.pml -DLEADER):
// here, the readiness probe of an ADD, made by another thread, of a nested
// set that is ready (a set of ueq's is no host registration: the host sees
// nothing). Each round: a thread waits on the outer set with no timeout;
// the main thread adds an inner set holding a readable pipe; the wait must
// return the inner set, within a bound. Half
// the rounds let the waiter fall asleep first (it is seen sleeping in the
// kernel), half race it.
#include <fcntl.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include "../support.hpp"
#include "ueq/epoll.h"

TEST_CASE("a waiter leading the host poll wakes for an ADD made by another thread", "[epoll]") {
  const int ep = ueq_epoll_create1(EPOLL_CLOEXEC);
  REQUIRE(ep >= 0);
  const long rounds = static_cast<long>(ueq::test::scaled(2000));
  long stuck = 0, wrong = 0;
  for (long i = 0; i < rounds && stuck == 0; ++i) {
    int p[2];
    REQUIRE(::pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0);
    REQUIRE(::write(p[1], "x", 1) == 1);
    const int inner = ueq_epoll_create1(EPOLL_CLOEXEC);
    REQUIRE(inner >= 0);
    epoll_event pe{};
    pe.events = EPOLLIN;
    pe.data.fd = p[0];
    REQUIRE(ueq_epoll_ctl(inner, EPOLL_CTL_ADD, p[0], &pe) == 0);
    epoll_event drained[1];  // the pipe is now on the inner set's ready list
    REQUIRE(ueq_epoll_wait(inner, drained, 1, 0) == 1);
    std::atomic<int> got{-2};
    std::atomic<pid_t> tid{0};
    std::thread waiter([&] {
      tid.store(ueq::test::current_tid());
      epoll_event out[2];
      const int n = ueq_epoll_wait(ep, out, 2, -1);
      got.store(n == 1 ? out[0].data.fd : -1);
    });
    if (i % 2 == 0)
      (void)ueq::test::wait_until(
          [&] { return tid.load() != 0 && ueq::test::thread_sleeping(tid.load()); },
          std::chrono::seconds(5));
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLONESHOT;  // reported once, then quiet
    ev.data.fd = inner;
    REQUIRE(ueq_epoll_ctl(ep, EPOLL_CTL_ADD, inner, &ev) == 0);
    if (!ueq::test::wait_until([&] { return got.load() != -2; }, std::chrono::seconds(10))) {
      ++stuck;  // wake the waiter so it can be joined: another ready fd
      int q[2];
      REQUIRE(::pipe2(q, O_NONBLOCK | O_CLOEXEC) == 0);
      REQUIRE(::write(q[1], "y", 1) == 1);
      ev.data.fd = q[0];
      REQUIRE(ueq_epoll_ctl(ep, EPOLL_CTL_ADD, q[0], &ev) == 0);
      REQUIRE(ueq::test::wait_until([&] { return got.load() != -2; }, std::chrono::seconds(10)));
      ueq_close(q[0]);
      ::close(q[1]);
    } else if (got.load() != inner) {
      ++wrong;
    }
    waiter.join();
    REQUIRE(ueq_epoll_ctl(ep, EPOLL_CTL_DEL, inner, nullptr) == 0);
    ueq_close(inner);
    ueq_close(p[0]);
    ::close(p[1]);
  }
  CHECK(stuck == 0);
  CHECK(wrong == 0);
  REQUIRE(ueq_close(ep) == 0);
}
