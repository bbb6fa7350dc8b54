// Fault injection at the host-backend seam: each failure gives a clear
// error and leaves the runtime usable.
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <thread>

#include "../support.hpp"
#include "../taps/taps_support.hpp"
#include "ueq/ceq/evq/block_on.hpp"
#include "ueq/epoll.h"
#include "ueq/taps/fault.hpp"

using namespace ueq;
using ueq::test::fd_pair;
using ueq::test::pump;

namespace {
std::unique_ptr<tap_service> faulty_service(fault_plan* plan) {
  auto inner = make_epoll_backend();
  REQUIRE(inner.ok());
  auto b = make_faulty_backend(std::move(inner).value(), plan);
  REQUIRE(b.ok());
  auto svc = tap_service::create(std::move(b).value());
  REQUIRE(svc.ok());
  return std::move(svc).value();
}
}  // namespace

TEST_CASE("fault: a host add failing with ENOMEM fails the tap; the next one works", "[fault]") {
  fault_plan plan;
  auto svc = faulty_service(&plan);
  fd_pair p;
  ueq::test::make_pipe(p);
  auto q = ueq::test::msg_queue();
  plan.fail_adds = 1;
  auto bad = svc->add({.fd = p.a, .filter = kTapReadable, .queue = q});
  REQUIRE(bad.error().value() == ENOMEM);
  auto good = svc->add({.fd = p.a, .filter = kTapReadable, .queue = q, .id = 4});
  REQUIRE(good.ok());
  REQUIRE(::write(p.b, "x", 1) == 1);
  auto m = pump(*svc, *q);
  REQUIRE(m);
  REQUIRE(m->id == 4);
  REQUIRE(plan.injected.load() == 1);
}

TEST_CASE("fault: a failed modify leaves the tap as it was", "[fault]") {
  fault_plan plan;
  auto svc = faulty_service(&plan);
  fd_pair p;
  ueq::test::make_pipe(p);
  auto q = ueq::test::msg_queue();
  auto t = svc->add({.fd = p.a, .filter = kTapReadable, .queue = q, .data = 1});
  REQUIRE(t.ok());
  plan.fail_modifies = 1;
  REQUIRE(svc->modify(*t, kTapReadable | kTapHangup, 2).value() == ENOMEM);
  REQUIRE(::write(p.b, "x", 1) == 1);
  auto m = pump(*svc, *q);
  REQUIRE(m);
  REQUIRE(m->blob == 1);  // the old data: the modify did not happen
}

TEST_CASE("fault: a failing remove still removes the tap", "[fault]") {
  fault_plan plan;
  auto svc = faulty_service(&plan);
  fd_pair p;
  ueq::test::make_pipe(p);
  auto q = ueq::test::msg_queue();
  auto t = svc->add({.fd = p.a, .filter = kTapReadable, .queue = q});
  REQUIRE(t.ok());
  plan.fail_removes = 1;
  REQUIRE(svc->remove(*t).ok());  // the service forgets it regardless
  REQUIRE_FALSE(t->live());
  REQUIRE(::write(p.b, "x", 1) == 1);
  REQUIRE_FALSE(pump(*svc, *q, 100));
  REQUIRE(plan.injected.load() == 1);
}

TEST_CASE("fault: EINTR and EAGAIN storms from the host poll; events arrive afterwards",
          "[fault]") {
  for (int e : {EINTR, EAGAIN}) {
    fault_plan plan;
    plan.poll_errno = e;
    auto svc = faulty_service(&plan);
    fd_pair p;
    ueq::test::make_pipe(p);
    auto q = ueq::test::msg_queue();
    REQUIRE(svc->add({.fd = p.a, .filter = kTapReadable, .queue = q}).ok());
    REQUIRE(::write(p.b, "x", 1) == 1);
    plan.fail_polls = 50;
    for (int i = 0; i < 50; ++i)
      REQUIRE(svc->poll(deadline_after_ms(10)).error().value() == e);
    // A poll cut short (EINTR) or refused for now (EAGAIN) is no failure.
    REQUIRE(svc->counters().poll_errors == 0u);
    REQUIRE(svc->counters().last_poll_errno == 0);
    auto m = pump(*svc, *q);
    REQUIRE(m);
    REQUIRE(m->bits == kTapReadable);
    REQUIRE(svc->counters().last_poll_errno == 0);  // a poll worked again
  }
}

TEST_CASE("fault: a host poll that keeps failing is counted and backed off, and unparks still work",
          "[fault]") {
  fault_plan plan;
  plan.poll_errno = EBADF;  // as if the host epoll fd had been closed behind ueq's back
  plan.fail_polls = 1 << 30;
  auto svc = faulty_service(&plan);
  svc->attach_to_parkers();
  auto q = ueq::test::msg_queue();
  // A wait that times out: its thread polls the failing backend for the
  // parker. Spinning on the failures would make thousands of polls in
  // 300 ms; backing off (1 ms doubling to 64 ms) makes about ten. The back-off
  // never sleeps past the deadline.
  const auto t0 = std::chrono::steady_clock::now();
  auto r = block_on({q.get()}, deadline_after_ms(300));
  const auto waited = std::chrono::steady_clock::now() - t0;
  REQUIRE_FALSE(r.ok());
  REQUIRE(r.error() == std::errc::timed_out);
  const int polls = plan.injected.load();
  INFO(polls << " failing polls in 300 ms");
  REQUIRE(polls >= 1);
  REQUIRE(polls < 100);
  REQUIRE(waited < std::chrono::milliseconds(300 + 200));
  REQUIRE(svc->counters().poll_errors == static_cast<std::uint64_t>(polls));
  REQUIRE(svc->counters().last_poll_errno == EBADF);
  // A post from another thread still reaches a waiter that is backing off.
  std::atomic<pid_t> tid{0};
  std::atomic<int> got{-1};
  std::thread waiter([&] {
    tid.store(ueq::test::current_tid());
    auto m = block_on({q.get()}, deadline_after_ms(20000));
    got.store(m.ok() ? static_cast<int>(m->msg.id) : -2);
  });
  REQUIRE(ueq::test::wait_until(
      [&] { return tid.load() != 0 && ueq::test::thread_sleeping(tid.load()); }));
  const auto t1 = std::chrono::steady_clock::now();
  REQUIRE(q->post(7, 1).ok());
  REQUIRE(ueq::test::wait_until([&] { return got.load() != -1; }, std::chrono::seconds(10)));
  const auto delivered = std::chrono::steady_clock::now() - t1;
  waiter.join();
  svc->detach_from_parkers();
  REQUIRE(got.load() == 7);
  REQUIRE(delivered < std::chrono::seconds(2));
}

TEST_CASE("fault: a parked thread keeps polling through an EINTR storm", "[fault]") {
  fault_plan plan;
  plan.fail_polls = 200;
  auto svc = faulty_service(&plan);
  svc->attach_to_parkers();
  fd_pair p;
  ueq::test::make_pipe(p);
  auto q = ueq::test::msg_queue();
  REQUIRE(svc->add({.fd = p.a, .filter = kTapReadable, .queue = q, .id = 9}).ok());
  REQUIRE(::write(p.b, "x", 1) == 1);
  auto r = block_on({q.get()}, deadline_after_ms(20000));
  svc->detach_from_parkers();
  REQUIRE(r.ok());
  REQUIRE(r->msg.id == 9);
  REQUIRE(plan.injected.load() == 200);
}

TEST_CASE("fault: EMFILE when descriptors run out; usable again when they are back", "[fault]") {
  rlimit old;
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &old) == 0);
  // Make sure the default service exists first (it holds descriptors).
  REQUIRE(tap_service::instance().ok());
  // Find the next free number, and allow no more than that.
  const int probe = ::dup(0);
  REQUIRE(probe >= 0);
  ::close(probe);
  rlimit tight = old;
  tight.rlim_cur = static_cast<rlim_t>(probe);
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &tight) == 0);
  auto svc = tap_service::create(backend_kind::epoll);
  const int ep = ueq_epoll_create1(0);
  const int ep_errno = errno;
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &old) == 0);
  REQUIRE(svc.error().value() == EMFILE);
  REQUIRE(ep == -1);
  REQUIRE(ep_errno == EMFILE);
  // Everything works again.
  REQUIRE(tap_service::create(backend_kind::epoll).ok());
  const int ep2 = ueq_epoll_create1(0);
  REQUIRE(ep2 >= 0);
  REQUIRE(ueq_close(ep2) == 0);
}

TEST_CASE("fault: io_uring unavailable: ENOSYS, and the automatic choice falls back to epoll",
          "[fault]") {
  ::setenv("UEQ_DISABLE_IO_URING", "1", 1);
  ::setenv("UEQ_BACKEND", "io_uring", 1);
  auto u = make_backend(backend_kind::io_uring);
  auto a = make_backend(backend_kind::automatic);
  ::unsetenv("UEQ_DISABLE_IO_URING");
  ::unsetenv("UEQ_BACKEND");
  REQUIRE(u.error().value() == ENOSYS);
  REQUIRE(a.ok());
  REQUIRE(std::string((*a)->name()) == "epoll");
}
