// Taps on both backends: every filter on pipes, socketpairs, TCP loopback
// and eventfds; several taps per fd; add/modify/remove; fd reuse; close.
#include <sys/eventfd.h>
#include <sys/stat.h>

#include <cstdio>

#include "taps_support.hpp"

using namespace ueq;
using ueq::test::fd_pair;
using ueq::test::pump;

namespace {

void run_all(tap_service& svc) {
  auto q = ueq::test::msg_queue();
  char c = 'x';

  SECTION("errors: EBADF, EPERM, EINVAL, ENOENT") {
    REQUIRE(svc.add({.fd = -1, .filter = kTapReadable, .queue = q}).error().value() == EBADF);
    REQUIRE(svc.add({.fd = 999999, .filter = kTapReadable, .queue = q}).error().value() == EBADF);
    char path[] = "/tmp/ueq-tap-XXXXXX";
    const int f = ::mkstemp(path);
    REQUIRE(f >= 0);
    REQUIRE(svc.add({.fd = f, .filter = kTapReadable, .queue = q}).error().value() == EPERM);
    ::close(f);
    ::unlink(path);
    const int d = ::open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    REQUIRE(svc.add({.fd = d, .filter = kTapReadable, .queue = q}).error().value() == EPERM);
    ::close(d);
    fd_pair p;
    ueq::test::make_pipe(p);
    REQUIRE(svc.add({.fd = p.a, .filter = 0, .queue = q}).error().value() == EINVAL);
    REQUIRE(svc.add({.fd = p.a, .filter = 0x40000, .queue = q}).error().value() == EINVAL);
    REQUIRE(svc.add({.fd = p.a, .filter = kTapReadable}).error().value() == EINVAL);
    auto t = svc.add({.fd = p.a, .filter = kTapReadable, .queue = q});
    REQUIRE(t.ok());
    REQUIRE(svc.remove(*t).ok());
    REQUIRE(svc.remove(*t).value() == ENOENT);
    REQUIRE(svc.modify(*t, kTapReadable, 0).value() == ENOENT);
    REQUIRE(svc.modify(tap_handle{}, kTapReadable, 0).value() == EINVAL);
  }

  SECTION("pipe: readable with the tap's id and data; hang-up when the writer closes") {
    fd_pair p;
    ueq::test::make_pipe(p);
    auto t =
        svc.add({.fd = p.a, .filter = kTapReadable | kTapHangup, .queue = q, .id = 5, .data = 99});
    REQUIRE(t.ok());
    REQUIRE_FALSE(pump(svc, *q, 30));  // nothing yet
    REQUIRE(::write(p.b, &c, 1) == 1);
    auto m = pump(svc, *q);
    REQUIRE(m);
    REQUIRE(m->id == 5);
    REQUIRE(m->bits == kTapReadable);
    REQUIRE(m->blob == 99);
    ::close(p.b);
    p.b = -1;
    m = pump(svc, *q);
    REQUIRE(m);
    REQUIRE((m->bits & kTapHangup));
  }

  SECTION("socketpair: writable at add; rdhup on shutdown; only the asked bits") {
    fd_pair p;
    ueq::test::make_socketpair(p);
    auto t = svc.add({.fd = p.a, .filter = kTapWritable | kTapRdhup, .queue = q});
    REQUIRE(t.ok());
    auto m = pump(svc, *q);
    REQUIRE(m);
    REQUIRE(m->bits == kTapWritable);  // readiness evaluated at add
    REQUIRE(::shutdown(p.b, SHUT_WR) == 0);
    m = pump(svc, *q);
    REQUIRE(m);
    REQUIRE((m->bits & kTapRdhup));
    REQUIRE_FALSE((m->bits & kTapReadable));  // not asked for
  }

  SECTION("TCP: priority on out-of-band data; error and hang-up on reset") {
    fd_pair p;
    ueq::test::make_tcp(p);
    auto t = svc.add({.fd = p.b, .filter = kTapPriority | kTapError | kTapHangup, .queue = q});
    REQUIRE(t.ok());
    REQUIRE(::send(p.a, "!", 1, MSG_OOB) == 1);
    auto m = pump(svc, *q);
    REQUIRE(m);
    REQUIRE((m->bits & kTapPriority));
    linger lg{1, 0};  // close with RST
    REQUIRE(::setsockopt(p.a, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0);
    ::close(p.a);
    p.a = -1;
    bool err = false, hup = false;
    for (int i = 0; i < 5 && !(err && hup); ++i)
      if (auto e = pump(svc, *q)) {
        err = err || (e->bits & kTapError);
        hup = hup || (e->bits & kTapHangup);
      }
    REQUIRE(err);
    REQUIRE(hup);
  }

  SECTION("eventfd: readable after a write") {
    const int efd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    auto t = svc.add({.fd = efd, .filter = kTapReadable, .queue = q, .id = 1});
    REQUIRE(t.ok());
    const std::uint64_t one = 1;
    REQUIRE(::write(efd, &one, 8) == 8);
    auto m = pump(svc, *q);
    REQUIRE(m);
    REQUIRE(m->bits == kTapReadable);
    REQUIRE(svc.remove(*t).ok());
    ::close(efd);
  }

  SECTION("several taps per fd fan out by filter into their own queues") {
    fd_pair p;
    ueq::test::make_socketpair(p);
    auto rq = ueq::test::msg_queue(), wq = ueq::test::msg_queue();
    auto r = svc.add({.fd = p.a, .filter = kTapReadable, .queue = rq, .id = 1});
    auto w = svc.add({.fd = p.a, .filter = kTapWritable, .queue = wq, .id = 2});
    REQUIRE(r.ok());
    REQUIRE(w.ok());
    auto m = pump(svc, *wq);  // writable at once
    REQUIRE(m);
    REQUIRE(m->id == 2);
    REQUIRE(::write(p.b, &c, 1) == 1);
    m = pump(svc, *rq);
    REQUIRE(m);
    REQUIRE(m->id == 1);
    REQUIRE(m->bits == kTapReadable);
    // Removing the reader leaves the writer's tap working.
    REQUIRE(svc.remove(*r).ok());
    REQUIRE(::write(p.b, &c, 1) == 1);
    REQUIRE_FALSE(pump(svc, *rq, 50));
    REQUIRE(svc.remove(*w).ok());
  }

  SECTION("modify changes filter and data and re-evaluates readiness") {
    fd_pair p;
    ueq::test::make_socketpair(p);
    auto t = svc.add({.fd = p.a, .filter = kTapReadable, .queue = q, .data = 1});
    REQUIRE(t.ok());
    REQUIRE_FALSE(pump(svc, *q, 30));
    REQUIRE(svc.modify(*t, kTapWritable, 2).ok());
    auto m = pump(svc, *q);
    REQUIRE(m);
    REQUIRE(m->bits == kTapWritable);
    REQUIRE(m->blob == 2);
  }

  SECTION("a removed tap posts nothing more") {
    fd_pair p;
    ueq::test::make_pipe(p);
    auto t = svc.add({.fd = p.a, .filter = kTapReadable, .queue = q});
    REQUIRE(t.ok());
    REQUIRE(svc.remove(*t).ok());
    REQUIRE_FALSE(t->live());
    REQUIRE(::write(p.b, &c, 1) == 1);
    REQUIRE_FALSE(pump(svc, *q, 100));
  }

  SECTION("an fd number closed behind ueq's back and reused: old taps are dropped") {
    fd_pair p;
    ueq::test::make_pipe(p);
    auto oldq = ueq::test::msg_queue();
    auto old = svc.add({.fd = p.a, .filter = kTapReadable, .queue = oldq});
    REQUIRE(old.ok());
    const int num = p.a;
    ::close(p.a);  // not through ueq
    int f[2];
    REQUIRE(::pipe2(f, O_NONBLOCK | O_CLOEXEC) == 0);
    // Make the new read end take the old number (it usually does by itself:
    // the lowest free number).
    if (f[0] != num) {
      REQUIRE(::dup3(f[0], num, O_CLOEXEC) == num);
      ::close(f[0]);
    }
    p.a = num;
    auto fresh = svc.add({.fd = num, .filter = kTapReadable, .queue = q});
    REQUIRE(fresh.ok());
    REQUIRE_FALSE(old->live());
    REQUIRE(::write(f[1], &c, 1) == 1);
    REQUIRE(pump(svc, *q));
    REQUIRE_FALSE(pump(svc, *oldq, 50));  // never the old registration's queue
    ::close(f[1]);
  }

  SECTION("close_fd runs the close callbacks, drops the taps, closes the fd") {
    fd_pair p;
    ueq::test::make_pipe(p);
    auto t = svc.add({.fd = p.a, .filter = kTapReadable, .queue = q});
    REQUIRE(t.ok());
    static int closed_fd = -1;
    closed_fd = -1;
    const auto id = svc.add_close_callback([](int fd, void*) { closed_fd = fd; }, nullptr);
    const int num = p.a;
    REQUIRE(svc.close_fd(num).ok());
    p.a = -1;
    REQUIRE(closed_fd == num);
    REQUIRE_FALSE(t->live());
    REQUIRE(::fcntl(num, F_GETFD) == -1);
    REQUIRE(svc.close_fd(num).value() == EBADF);
    svc.remove_close_callback(id);
  }

  SECTION("refilter: posts only the current filter's bits; widening makes no host call") {
    fd_pair p;
    ueq::test::make_socketpair(p);
    auto t = svc.add({.fd = p.a, .filter = kTapReadable, .queue = q, .id = 3});
    REQUIRE(t.ok());
    REQUIRE_FALSE(pump(svc, *q, 30));  // not readable; writable is not asked for
    REQUIRE(svc.refilter(*t, kTapReadable | kTapRdhup, true).ok());  // the host watches more
    REQUIRE(svc.refilter(*t, kTapReadable, true).ok());              // within it: no host call
    event_msg m;
    while (q->try_get(m)) {
    }
    REQUIRE(::write(p.b, &c, 1) == 1);
    auto got = pump(svc, *q);
    REQUIRE(got);
    REQUIRE(got->id == 3);
    REQUIRE(got->bits == kTapReadable);      // RDHUP is watched by the host, not posted
    REQUIRE(::shutdown(p.b, SHUT_WR) == 0);  // an RDHUP edge: the tap no longer asks for it
    got = pump(svc, *q, 100);
    REQUIRE((!got || !(got->bits & kTapRdhup)));
    REQUIRE(svc.refilter(*t, kTapWritable, false).ok());  // exactly: a host call
    REQUIRE(svc.refilter(*t, 0, true).value() == EINVAL);
    REQUIRE(svc.remove(*t).ok());
    REQUIRE(svc.refilter(*t, kTapReadable, true).value() == ENOENT);
  }

  SECTION("batched requests stop at the first failure") {
    fd_pair p;
    ueq::test::make_pipe(p);
    tap_request reqs[3];
    reqs[0].spec = {.fd = p.a, .filter = kTapReadable, .queue = q};
    reqs[1].spec = {.fd = -1, .filter = kTapReadable, .queue = q};
    reqs[2].spec = {.fd = p.b, .filter = kTapWritable, .queue = q};
    REQUIRE(svc.apply(reqs) == 1);
    REQUIRE(reqs[0].result.ok());
    REQUIRE(reqs[0].handle.live());
    REQUIRE(reqs[1].result.value() == EBADF);
    REQUIRE_FALSE(reqs[2].handle);
    tap_request rm[1];
    rm[0].kind = tap_request::remove;
    rm[0].handle = reqs[0].handle;
    REQUIRE(svc.apply(rm) == 1);
  }
}

}  // namespace

TEST_CASE("taps on the host backend under test", "[taps]") {
  auto svc = ueq::test::service_under_test();
  run_all(*svc);
}
