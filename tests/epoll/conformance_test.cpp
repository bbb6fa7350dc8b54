// Hand-written conformance scenarios: each runs on the kernel's epoll and on
// ueq's, and the two traces must be identical.
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <climits>
#include <cstring>

#include "../support.hpp"
#include "check_same.hpp"
#include "ueq/epoll.h"
#include "ueq/epoll/epoll.hpp"

using ueq::test::check;
using ueq::test::epoll_api;
using ueq::test::run_both;
using ueq::test::trace;

namespace {

struct fds {
  int a = -1, b = -1;
};
fds pipe_nb() {
  int p[2];
  REQUIRE(::pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0);
  return {p[0], p[1]};
}
fds sockpair() {
  int p[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, p) == 0);
  return {p[0], p[1]};
}
epoll_event ev(std::uint32_t events, std::uint64_t data) {
  epoll_event e{};
  e.events = events;
  e.data.u64 = data;
  return e;
}

}  // namespace

TEST_CASE("conformance: create errors and flags", "[epoll]") {
  check("create", [](const epoll_api& api, trace& t) {
    t.rc("create(0)", api.create(0));
    t.rc("create(-1)", api.create(-1));
    t.rc("create1(bad flag)", api.create1(0x1234));
    const int e = t.fd("create(1)", api.create(1));
    t.rc("F_GETFL & O_ACCMODE", ::fcntl(e, F_GETFL) & O_ACCMODE);
    t.rc("FD_CLOEXEC without flag", ::fcntl(e, F_GETFD) & FD_CLOEXEC);
    api.close(e);
    const int c = t.fd("create1(EPOLL_CLOEXEC)", api.create1(EPOLL_CLOEXEC));
    t.rc("FD_CLOEXEC with flag", ::fcntl(c, F_GETFD) & FD_CLOEXEC);
    char buf[8];
    t.rc("read on epoll fd", static_cast<int>(::read(c, buf, 8)));
    api.close(c);
  });
}

TEST_CASE("conformance: ctl errors, line by line", "[epoll]") {
  check("ctl errors", [](const epoll_api& api, trace& t) {
    const int e = api.create1(0);
    auto p = pipe_nb();
    epoll_event x = ev(EPOLLIN, 1);
    t.rc("ADD null event", api.ctl(e, EPOLL_CTL_ADD, p.a, nullptr));
    t.rc("MOD null event", api.ctl(e, EPOLL_CTL_MOD, p.a, nullptr));
    t.rc("bad op null event", api.ctl(e, 99, p.a, nullptr));
    t.rc("bad op", api.ctl(e, 99, p.a, &x));
    t.rc("bad epfd", api.ctl(-1, EPOLL_CTL_ADD, p.a, &x));
    t.rc("closed epfd number", api.ctl(9999, EPOLL_CTL_ADD, p.a, &x));
    t.rc("bad fd", api.ctl(e, EPOLL_CTL_ADD, -1, &x));
    t.rc("epfd not epoll", api.ctl(p.b, EPOLL_CTL_ADD, p.a, &x));
    t.rc("fd == epfd", api.ctl(e, EPOLL_CTL_ADD, e, &x));
    char path[] = "/tmp/ueq-conf-XXXXXX";
    const int f = ::mkstemp(path);
    t.rc("regular file", api.ctl(e, EPOLL_CTL_ADD, f, &x));
    ::close(f);
    ::unlink(path);
    const int d = ::open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    t.rc("directory", api.ctl(e, EPOLL_CTL_ADD, d, &x));
    ::close(d);
    t.rc("DEL not there", api.ctl(e, EPOLL_CTL_DEL, p.a, nullptr));
    t.rc("MOD not there", api.ctl(e, EPOLL_CTL_MOD, p.a, &x));
    t.rc("ADD", api.ctl(e, EPOLL_CTL_ADD, p.a, &x));
    t.rc("ADD again", api.ctl(e, EPOLL_CTL_ADD, p.a, &x));
    epoll_event ex = ev(EPOLLIN | EPOLLEXCLUSIVE, 2);
    t.rc("MOD with EXCLUSIVE", api.ctl(e, EPOLL_CTL_MOD, p.a, &ex));
    epoll_event exbad = ev(EPOLLIN | EPOLLEXCLUSIVE | EPOLLONESHOT, 2);
    t.rc("ADD EXCLUSIVE|ONESHOT", api.ctl(e, EPOLL_CTL_ADD, p.b, &exbad));
    t.rc("ADD EXCLUSIVE", api.ctl(e, EPOLL_CTL_ADD, p.b, &ex));
    t.rc("MOD an EXCLUSIVE entry", api.ctl(e, EPOLL_CTL_MOD, p.b, &x));
    const int e2 = api.create1(0);
    t.rc("EXCLUSIVE on an epoll fd", api.ctl(e, EPOLL_CTL_ADD, e2, &ex));
    epoll_event w = ev(EPOLLIN | EPOLLWAKEUP, 3);
    t.rc("WAKEUP accepted", api.ctl(e2, EPOLL_CTL_ADD, p.a, &w));
    t.rc("DEL ignores event", api.ctl(e, EPOLL_CTL_DEL, p.a, nullptr));
    api.close(e2);
    api.close(e);
    ::close(p.a);
    ::close(p.b);
  });
}

TEST_CASE("conformance: wait errors", "[epoll]") {
  check("wait errors", [](const epoll_api& api, trace& t) {
    const int e = api.create1(0);
    epoll_event out[4];
    t.rc("bad epfd", api.wait(-1, out, 4, 0));
    t.rc("bad epfd and maxevents (EBADF first)", api.wait(-1, out, 0, 0));
    t.rc("maxevents 0", api.wait(e, out, 0, 0));
    t.rc("maxevents -1", api.wait(e, out, -1, 0));
    t.rc("maxevents huge", api.wait(e, out, INT_MAX, 0));
    auto p = pipe_nb();
    t.rc("not an epoll fd", api.wait(p.a, out, 4, 0));
    t.rc("null buffer, nothing ready", api.wait(e, nullptr, 4, 0));
    timespec bad{0, 1000000000L};
    t.rc("pwait2 bad timespec", api.pwait2(e, out, 4, &bad, nullptr));
    timespec neg{-1, 0};
    t.rc("pwait2 negative timespec", api.pwait2(e, out, 4, &neg, nullptr));
    timespec zero{0, 0};
    t.rc("pwait2 zero", api.pwait2(e, out, 4, &zero, nullptr));
    ::close(p.a);
    ::close(p.b);
    api.close(e);
  });
}

TEST_CASE("epoll_set::wait with an empty span gives EINVAL, as maxevents 0 does", "[epoll]") {
  auto ep = ueq::epoll_set::create(EPOLL_CLOEXEC);
  REQUIRE(ep.ok());
  auto n = (*ep)->wait({}, ueq::deadline_after_ms(0));
  REQUIRE_FALSE(n.ok());
  REQUIRE(n.error() == std::errc::invalid_argument);
  REQUIRE(ueq_close((*ep)->fd()) == 0);
}

TEST_CASE("conformance: level-triggered reports on every wait while ready", "[epoll]") {
  check("LT", [](const epoll_api& api, trace& t) {
    const int e = api.create1(0);
    auto p = pipe_nb();
    epoll_event x = ev(EPOLLIN, 7);
    api.ctl(e, EPOLL_CTL_ADD, p.a, &x);
    epoll_event out[4];
    t.wait("empty", api.wait(e, out, 4, 0), out);
    ::write(p.b, "ab", 2);
    t.wait("ready", api.wait(e, out, 4, 0), out);
    t.wait("still ready", api.wait(e, out, 4, 0), out);
    char buf[4];
    ::read(p.a, buf, 1);
    t.wait("one byte left", api.wait(e, out, 4, 0), out);
    ::read(p.a, buf, 1);
    t.wait("drained", api.wait(e, out, 4, 0), out);
    ::close(p.b);
    t.wait("writer closed: HUP", api.wait(e, out, 4, 0), out);
    ::close(p.a);
    api.close(e);
  });
}

TEST_CASE("conformance: edge-triggered reports new arrivals only", "[epoll]") {
  check("ET", [](const epoll_api& api, trace& t) {
    const int e = api.create1(0);
    auto s = sockpair();
    epoll_event x = ev(EPOLLIN | EPOLLET, 1);
    api.ctl(e, EPOLL_CTL_ADD, s.a, &x);
    epoll_event out[4];
    t.wait("empty", api.wait(e, out, 4, 0), out);
    ::write(s.b, "a", 1);
    t.wait("arrival", api.wait(e, out, 4, 0), out);
    t.wait("no new arrival", api.wait(e, out, 4, 0), out);
    ::write(s.b, "b", 1);
    t.wait("second arrival, undrained", api.wait(e, out, 4, 0), out);
    char buf[4];
    ::write(s.b, "c", 1);
    ::read(s.a, buf, 4);
    t.wait("arrived but drained before wait", api.wait(e, out, 4, 0), out);
    ::close(s.a);
    ::close(s.b);
    api.close(e);
  });
}

TEST_CASE("conformance: oneshot disables until MOD re-arms", "[epoll]") {
  check("ONESHOT", [](const epoll_api& api, trace& t) {
    const int e = api.create1(0);
    auto p = pipe_nb();
    epoll_event x = ev(EPOLLIN | EPOLLONESHOT, 3);
    api.ctl(e, EPOLL_CTL_ADD, p.a, &x);
    ::write(p.b, "a", 1);
    epoll_event out[4];
    t.wait("fires once", api.wait(e, out, 4, 0), out);
    t.wait("disabled", api.wait(e, out, 4, 0), out);
    ::write(p.b, "b", 1);
    t.wait("still disabled", api.wait(e, out, 4, 0), out);
    t.rc("ADD again: still registered", api.ctl(e, EPOLL_CTL_ADD, p.a, &x));
    epoll_event y = ev(EPOLLIN | EPOLLONESHOT, 4);
    t.rc("MOD re-arms", api.ctl(e, EPOLL_CTL_MOD, p.a, &y));
    t.wait("fires with new data", api.wait(e, out, 4, 0), out);
    ::close(p.a);
    ::close(p.b);
    api.close(e);
  });
}

TEST_CASE("conformance: readiness at ADD and MOD; reported mask; latest data", "[epoll]") {
  check("ADD/MOD readiness", [](const epoll_api& api, trace& t) {
    const int e = api.create1(0);
    auto s = sockpair();
    epoll_event out[4];
    epoll_event w = ev(EPOLLOUT, 1);
    t.rc("ADD writable socket", api.ctl(e, EPOLL_CTL_ADD, s.a, &w));
    t.wait("reported at once", api.wait(e, out, 4, 0), out);
    epoll_event r = ev(EPOLLIN, 2);
    t.rc("MOD to IN", api.ctl(e, EPOLL_CTL_MOD, s.a, &r));
    t.wait("not readable", api.wait(e, out, 4, 0), out);
    ::write(s.b, "x", 1);
    epoll_event rw = ev(EPOLLIN | EPOLLOUT | EPOLLRDHUP, 3);
    t.rc("MOD to IN|OUT|RDHUP", api.ctl(e, EPOLL_CTL_MOD, s.a, &rw));
    t.wait("both, data 3", api.wait(e, out, 4, 0), out);
    ::shutdown(s.b, SHUT_WR);
    t.wait("RDHUP reported when asked", api.wait(e, out, 4, 0), out);
    epoll_event only_out = ev(EPOLLOUT | EPOLLET, 4);
    t.rc("MOD to OUT|ET", api.ctl(e, EPOLL_CTL_MOD, s.a, &only_out));
    t.wait("RDHUP not asked: masked", api.wait(e, out, 4, 0), out);
    ::close(s.b);
    t.wait("peer gone: HUP always", api.wait(e, out, 4, 0), out);
    ::close(s.a);
    api.close(e);
  });
}

TEST_CASE("conformance: maxevents smaller than the ready set rotates fairly", "[epoll]") {
  check("rotation", [](const epoll_api& api, trace& t) {
    const int e = api.create1(0);
    std::vector<fds> ps;
    for (int i = 0; i < 5; ++i) {
      ps.push_back(pipe_nb());
      ::write(ps.back().b, "x", 1);
      epoll_event x = ev(EPOLLIN, i);
      api.ctl(e, EPOLL_CTL_ADD, ps.back().a, &x);
    }
    epoll_event out[2];
    // Level-triggered, all five stay ready: successive waits must cover them
    // all before repeating one.
    for (int round = 0; round < 5; ++round)
      t.wait("wait 2 of 5", api.wait(e, out, 2, 0), out);
    for (auto& p : ps) {
      ::close(p.a);
      ::close(p.b);
    }
    api.close(e);
  });
}

TEST_CASE("conformance: nesting, cycles and the depth limit", "[epoll]") {
  check("nesting", [](const epoll_api& api, trace& t) {
    int e[8];
    for (int& x : e)
      x = api.create1(0);
    epoll_event in = ev(EPOLLIN, 0);
    for (int i = 0; i < 7; ++i) {
      in.data.u64 = i;
      t.rc("add e" + std::to_string(i + 1) + " into e" + std::to_string(i),
           api.ctl(e[i], EPOLL_CTL_ADD, e[i + 1], &in));
    }
    t.rc("cycle", api.ctl(e[2], EPOLL_CTL_ADD, e[0], &in));
    // Events propagate up: a pipe in e3 makes e2 readable.
    auto p = pipe_nb();
    in.data.u64 = 100;
    t.rc("pipe into e3", api.ctl(e[3], EPOLL_CTL_ADD, p.a, &in));
    epoll_event out[4];
    t.wait("e2 before", api.wait(e[2], out, 4, 0), out);
    ::write(p.b, "x", 1);
    t.wait("e3", api.wait(e[3], out, 4, 0), out);
    t.wait("e2 sees e3 readable", api.wait(e[2], out, 4, 0), out);
    for (int& x : e)
      api.close(x);
    ::close(p.a);
    ::close(p.b);
  });
}

// A parent set over a child set that holds a pipe's read end (data 1); the
// child's entry in the parent has data 2 and mask `child_mask`.
struct nested_sets {
  const epoll_api& api;
  int outer, inner;
  fds p;
  nested_sets(const epoll_api& a, std::uint32_t child_mask)
      : api(a), outer(a.create1(0)), inner(a.create1(0)), p(pipe_nb()) {
    epoll_event in = ev(EPOLLIN, 1), child = ev(child_mask, 2);
    api.ctl(inner, EPOLL_CTL_ADD, p.a, &in);
    api.ctl(outer, EPOLL_CTL_ADD, inner, &child);
  }
  ~nested_sets() {
    api.close(outer);
    api.close(inner);
    ::close(p.a);
    ::close(p.b);
  }
  nested_sets(const nested_sets&) = delete;
  nested_sets& operator=(const nested_sets&) = delete;
};

// A level-triggered parent over a child whose entries stop being ready
// without a wait on the child (drained, deleted, MODed to a mask the file
// does not meet): Linux re-checks the child's items when the parent probes
// it, so the parent stops reporting the child at once.
TEST_CASE("conformance: a nested set is reported only while an entry of it is ready", "[epoll]") {
  check("nested stale", [](const epoll_api& api, trace& t) {
    for (int how = 0; how < 3; ++how) {
      nested_sets n(api, EPOLLIN);
      const int outer = n.outer, inner = n.inner;
      const fds& p = n.p;
      ::write(p.b, "x", 1);
      epoll_event out[4];
      const std::string k = std::to_string(how);
      t.wait("with data " + k, api.wait(outer, out, 4, 0), out);
      t.wait("again " + k, api.wait(outer, out, 4, 0), out);
      char c;
      if (how == 0) {
        (void)::read(p.a, &c, 1);
      } else if (how == 1) {
        api.ctl(inner, EPOLL_CTL_DEL, p.a, nullptr);
      } else {
        epoll_event o = ev(EPOLLOUT, 1);
        api.ctl(inner, EPOLL_CTL_MOD, p.a, &o);
      }
      t.wait("after " + k, api.wait(outer, out, 4, 0), out);
      t.wait("after, again " + k, api.wait(outer, out, 4, 0), out);
      ::write(p.b, "y", 1);
      t.wait("new data " + k, api.wait(outer, out, 4, 0), out);
    }
  });
}

TEST_CASE("conformance: a nested set reports EPOLLIN | EPOLLRDNORM within its entry's mask",
          "[epoll]") {
  // An epoll file polls as readable (IN | RDNORM), never writable; ueq
  // polls a nested set through its hidden eventfd, which is both.
  check("nested bits", [](const epoll_api& api, trace& t) {
    const std::uint32_t masks[] = {EPOLLIN | EPOLLOUT, EPOLLIN | EPOLLRDNORM, EPOLLOUT};
    for (std::uint32_t mask : masks) {
      nested_sets n(api, mask);
      const std::string k = std::to_string(mask);
      epoll_event out[4];
      t.wait("idle, mask " + k, api.wait(n.outer, out, 4, 0), out);
      ::write(n.p.b, "x", 1);
      t.wait("ready, mask " + k, api.wait(n.outer, out, 4, 0), out);
    }
  });
}

#ifndef UEQ_TEST_TSAN
namespace {
volatile sig_atomic_t g_usr1 = 0;
void on_usr1(int) {
  g_usr1 = g_usr1 + 1;
}
}  // namespace

TEST_CASE("conformance: a wait whose time ran out takes a signal its mask lets through",
          "[epoll]") {
  // SIGUSR1 blocked and pending; pwait2's mask unblocks it. Linux looks
  // for such a signal when the wait begins, for any timeout but zero.
  // (Not under TSan, which delivers signals at points of its own choosing,
  // so the handler's count after the call says nothing.)
  struct sigaction sa {
  }, old{};
  sa.sa_handler = on_usr1;
  REQUIRE(::sigaction(SIGUSR1, &sa, &old) == 0);
  sigset_t usr1, was;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  REQUIRE(::pthread_sigmask(SIG_BLOCK, &usr1, &was) == 0);
  check("pending signal", [&](const epoll_api& api, trace& t) {
    const int e = api.create1(0);
    sigset_t open;
    sigemptyset(&open);
    epoll_event out[2];
    for (long ns : {0L, 1L, 1000L}) {
      g_usr1 = 0;
      ::raise(SIGUSR1);  // pending: blocked
      const timespec ts{0, ns};
      t.rc("pwait2 " + std::to_string(ns) + " ns", api.pwait2(e, out, 2, &ts, &open));
      t.rc("handler ran", g_usr1);
      const timespec none{0, 0};
      (void)::sigtimedwait(&usr1, nullptr, &none);  // still pending: gone before the next round
    }
    api.close(e);
  });
  REQUIRE(::pthread_sigmask(SIG_SETMASK, &was, nullptr) == 0);
  REQUIRE(::sigaction(SIGUSR1, &old, nullptr) == 0);
}
#endif  // UEQ_TEST_TSAN

TEST_CASE("conformance: calls that succeed leave errno alone", "[epoll]") {
  check("errno", [](const epoll_api& api, trace& t) {
    auto p = pipe_nb();
    errno = 0;
    const int e = api.create1(0);
    t.rc("errno after create1", errno);
    epoll_event in = ev(EPOLLIN, 1);
    errno = 0;
    api.ctl(e, EPOLL_CTL_ADD, p.a, &in);
    t.rc("errno after ADD", errno);
    errno = 0;
    api.ctl(e, EPOLL_CTL_MOD, p.a, &in);
    t.rc("errno after MOD", errno);
    epoll_event out[2];
    errno = 0;
    api.wait(e, out, 2, 0);
    t.rc("errno after an idle wait", errno);
    errno = 0;
    const int d = api.dup(p.a);
    t.rc("errno after dup", errno);
    errno = 0;
    api.dup2(p.a, d);
    t.rc("errno after dup2", errno);
    errno = 0;
    api.ctl(e, EPOLL_CTL_DEL, p.a, nullptr);
    t.rc("errno after DEL", errno);
    errno = 0;
    api.close(d);
    t.rc("errno after close", errno);
    api.close(e);
    ::close(p.a);
    ::close(p.b);
  });
}

// A documented difference (docs/guide.md, the compatibility table): an
// edge-triggered parent gets an edge from a nested ueq set when the set
// turns pending, not for every event of an entry already pending (Linux
// wakes the parent for each). The events coalesce in the child's CEQ, and
// only a post that makes a message raises the child's signal. If this
// starts to fail, the difference is gone: update the table.
TEST_CASE("ueq only: an edge-triggered parent gets one edge per pending turn of a child",
          "[epoll]") {
  const int outer = ueq_epoll_create1(EPOLL_CLOEXEC), inner = ueq_epoll_create1(EPOLL_CLOEXEC);
  REQUIRE(outer >= 0);
  REQUIRE(inner >= 0);
  auto p = pipe_nb();
  epoll_event in = ev(EPOLLIN, 1), child = ev(EPOLLIN | EPOLLET, 2), out[4];
  REQUIRE(ueq_epoll_ctl(inner, EPOLL_CTL_ADD, p.a, &in) == 0);
  REQUIRE(ueq_epoll_ctl(outer, EPOLL_CTL_ADD, inner, &child) == 0);
  REQUIRE(::write(p.b, "x", 1) == 1);
  REQUIRE(ueq_epoll_wait(outer, out, 4, 1000) == 1);
  REQUIRE(ueq_epoll_wait(outer, out, 4, 0) == 0);
  REQUIRE(::write(p.b, "y", 1) == 1);  // Linux: a new edge for the parent
  REQUIRE(ueq_epoll_wait(outer, out, 4, 50) == 0);
  REQUIRE(ueq_epoll_wait(inner, out, 4, 0) == 1);  // the child is ready all along
  ueq_close(outer);
  ueq_close(inner);
  ::close(p.a);
  ::close(p.b);
}

TEST_CASE("conformance: the same fd in several sets; closing removes it", "[epoll]") {
  check("many sets", [](const epoll_api& api, trace& t) {
    const int e1 = api.create1(0), e2 = api.create1(0);
    auto p = pipe_nb();
    epoll_event a = ev(EPOLLIN, 1), b = ev(EPOLLIN | EPOLLET, 2);
    t.rc("into e1", api.ctl(e1, EPOLL_CTL_ADD, p.a, &a));
    t.rc("into e2", api.ctl(e2, EPOLL_CTL_ADD, p.a, &b));
    ::write(p.b, "x", 1);
    epoll_event out[4];
    t.wait("e1", api.wait(e1, out, 4, 0), out);
    t.wait("e2", api.wait(e2, out, 4, 0), out);
    api.close(p.a);  // the only reference: the entry goes in both sets
    t.wait("e1 after close", api.wait(e1, out, 4, 0), out);
    t.rc("DEL after close", api.ctl(e1, EPOLL_CTL_DEL, p.a, nullptr));
    ::close(p.b);
    api.close(e1);
    api.close(e2);
  });
}

TEST_CASE("conformance: the epoll fd is pollable and readable while events are pending",
          "[epoll]") {
  check("pollable", [](const epoll_api& api, trace& t) {
    const int e = api.create1(0);
    auto p = pipe_nb();
    epoll_event x = ev(EPOLLIN, 1);
    api.ctl(e, EPOLL_CTL_ADD, p.a, &x);
    pollfd pf{e, POLLIN, 0};
    t.rc("poll: nothing", ::poll(&pf, 1, 0));
    ::write(p.b, "x", 1);
    pf.revents = 0;
    t.rc("poll: pending", ::poll(&pf, 1, 1000));
    t.rc("revents", pf.revents);
    const int k = ::epoll_create1(0);  // a kernel epoll watching ours
    epoll_event kx = ev(EPOLLIN, 9);
    t.rc("kernel epoll ADD", ::epoll_ctl(k, EPOLL_CTL_ADD, e, &kx));
    epoll_event out[2];
    t.wait("kernel sees it", ::epoll_wait(k, out, 2, 1000), out);
    ::close(k);
    ::close(p.a);
    ::close(p.b);
    api.close(e);
  });
}

TEST_CASE("conformance: an fd closed behind the facade's back and reused can be added again",
          "[epoll]") {
  check("reuse", [](const epoll_api& api, trace& t) {
    const int e = api.create1(0);
    auto p = pipe_nb();
    epoll_event x = ev(EPOLLIN, 1);
    t.rc("ADD", api.ctl(e, EPOLL_CTL_ADD, p.a, &x));
    const int num = p.a;
    ::close(p.a);  // not through the API under test: ueq does not see it
    int q[2];
    REQUIRE(::pipe2(q, O_NONBLOCK | O_CLOEXEC) == 0);
    if (q[0] != num) {  // make the new read end take the old number
      REQUIRE(::dup2(q[0], num) == num);
      ::close(q[0]);
    }
    epoll_event y = ev(EPOLLIN, 2);
    t.rc("MOD the new file", api.ctl(e, EPOLL_CTL_MOD, num, &y));
    t.rc("ADD the new file", api.ctl(e, EPOLL_CTL_ADD, num, &y));
    ::write(q[1], "x", 1);
    epoll_event out[4];
    t.wait("only the new registration", api.wait(e, out, 4, 0), out);
    api.close(num);
    ::close(q[1]);
    ::close(p.b);
    api.close(e);
  });
}

TEST_CASE(
    "conformance: an entry goes with its file, even when the number's new file has the same inode",
    "[epoll]") {
  // Every eventfd shares one inode, so (dev, ino) cannot tell the new file
  // from the closed one: the kernel's (number, file) pair can.
  check("same inode", [](const epoll_api& api, trace& t) {
    const int e1 = api.create1(0), e2 = api.create1(0);
    const int num = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    epoll_event x = ev(EPOLLIN, 1);
    t.rc("ADD to e1", api.ctl(e1, EPOLL_CTL_ADD, num, &x));
    ::close(num);  // not through the API under test: ueq does not see it
    const int again = ::eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC);
    REQUIRE(again == num);  // the lowest free number
    epoll_event y = ev(EPOLLIN, 2);
    t.rc("MOD of the new file in e1", api.ctl(e1, EPOLL_CTL_MOD, num, &y));
    t.rc("DEL of the new file in e1", api.ctl(e1, EPOLL_CTL_DEL, num, nullptr));
    t.rc("ADD of the new file to e2", api.ctl(e2, EPOLL_CTL_ADD, num, &y));
    t.rc("MOD in e1 once e2 holds the new file", api.ctl(e1, EPOLL_CTL_MOD, num, &y));
    t.rc("MOD in e2", api.ctl(e2, EPOLL_CTL_MOD, num, &x));
    epoll_event out[4];
    t.wait("e1 reports nothing", api.wait(e1, out, 4, 0), out);
    t.wait("e2 reports the new file", api.wait(e2, out, 4, 0), out);
    t.rc("ADD of the new file to e1", api.ctl(e1, EPOLL_CTL_ADD, num, &y));
    t.wait("e1 reports it now", api.wait(e1, out, 4, 0), out);
    api.close(num);
    api.close(e1);
    api.close(e2);
  });
}

TEST_CASE("conformance: an ADD after a close behind the facade's back works in every set",
          "[epoll]") {
  // The ADD that finds the number's new file drops the stale entries under
  // it and must keep what it registered for the new one.
  check("add after reuse", [](const epoll_api& api, trace& t) {
    const int e1 = api.create1(0), e2 = api.create1(0), e3 = api.create1(0);
    auto p = pipe_nb();
    const int num = p.a;
    epoll_event x = ev(EPOLLIN, 1);
    t.rc("ADD the pipe", api.ctl(e1, EPOLL_CTL_ADD, num, &x));
    ::close(num);  // not through the API under test
    REQUIRE(::eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC) == num);
    epoll_event y = ev(EPOLLIN, 2);
    t.rc("ADD the eventfd", api.ctl(e1, EPOLL_CTL_ADD, num, &y));
    t.rc("ADD it again", api.ctl(e1, EPOLL_CTL_ADD, num, &y));
    epoll_event z = ev(EPOLLIN, 3);
    t.rc("MOD it", api.ctl(e1, EPOLL_CTL_MOD, num, &z));
    epoll_event out[4];
    t.wait("e1 reports it", api.wait(e1, out, 4, 0), out);
    t.rc("ADD it to e2", api.ctl(e2, EPOLL_CTL_ADD, num, &y));
    t.rc("ADD it to e3", api.ctl(e3, EPOLL_CTL_ADD, num, &z));
    t.wait("e2 reports it", api.wait(e2, out, 4, 0), out);
    t.wait("e3 reports it", api.wait(e3, out, 4, 0), out);
    t.rc("DEL from e1", api.ctl(e1, EPOLL_CTL_DEL, num, nullptr));
    t.wait("e2 still reports it", api.wait(e2, out, 4, 0), out);
    t.rc("MOD in e2", api.ctl(e2, EPOLL_CTL_MOD, num, &x));
    api.close(num);
    ::close(p.b);
    api.close(e1);
    api.close(e2);
    api.close(e3);
  });
  // A set held by another, closed behind the facade's back: when the facade
  // learns of it (here, an ADD of the number's new file) it tears the set
  // down, and the holder's entry must go first (it points at the set).
  check("nested set closed behind the facade's back", [](const epoll_api& api, trace& t) {
    const int parent = api.create1(0), other = api.create1(0), child = api.create1(0);
    auto p = pipe_nb();
    epoll_event x = ev(EPOLLIN, 1);
    t.rc("ADD a pipe to the child", api.ctl(child, EPOLL_CTL_ADD, p.a, &x));
    epoll_event y = ev(EPOLLIN, 2);
    t.rc("ADD the child to the parent", api.ctl(parent, EPOLL_CTL_ADD, child, &y));
    ::close(child);  // not through the API under test
    REQUIRE(::eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC) == child);
    REQUIRE(::write(p.b, "x", 1) == 1);
    epoll_event z = ev(EPOLLIN, 3);
    t.rc("ADD the eventfd to another set", api.ctl(other, EPOLL_CTL_ADD, child, &z));
    epoll_event out[4];
    t.wait("that set reports it", api.wait(other, out, 4, 0), out);
    t.wait("the parent reports nothing", api.wait(parent, out, 4, 0), out);
    t.rc("DEL of the number in the parent", api.ctl(parent, EPOLL_CTL_DEL, child, nullptr));
    api.close(child);
    api.close(p.a);
    ::close(p.b);
    api.close(parent);
    api.close(other);
  });
  check("epoll fd reused by an eventfd", [](const epoll_api& api, trace& t) {
    const int e = api.create1(0);
    const int num = ::epoll_create1(EPOLL_CLOEXEC);  // an epoll fd the facade did not make
    epoll_event x = ev(EPOLLIN, 1);
    t.rc("ADD the epoll fd", api.ctl(e, EPOLL_CTL_ADD, num, &x));
    ::close(num);
    REQUIRE(::eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC) == num);
    t.rc("MOD of the eventfd", api.ctl(e, EPOLL_CTL_MOD, num, &x));
    t.rc("ADD of the eventfd", api.ctl(e, EPOLL_CTL_ADD, num, &x));
    epoll_event out[4];
    t.wait("reports the eventfd", api.wait(e, out, 4, 0), out);
    api.close(num);
    api.close(e);
  });
}

TEST_CASE("conformance: bad pointers give EFAULT, never a crash", "[epoll]") {
  check("EFAULT", [](const epoll_api& api, trace& t) {
    const int e = api.create1(0);
    auto p = pipe_nb();
    auto* unmapped = reinterpret_cast<epoll_event*>(16);  // the zero page
    auto* kernel = reinterpret_cast<epoll_event*>(0xffff800000000000ull);
    t.rc("ADD unmapped event", api.ctl(e, EPOLL_CTL_ADD, p.a, unmapped));
    t.rc("ADD kernel-space event", api.ctl(e, EPOLL_CTL_ADD, p.a, kernel));
    epoll_event x = ev(EPOLLIN, 1);
    t.rc("ADD", api.ctl(e, EPOLL_CTL_ADD, p.a, &x));
    t.rc("MOD unmapped event", api.ctl(e, EPOLL_CTL_MOD, p.a, unmapped));
    t.rc("MOD null event", api.ctl(e, EPOLL_CTL_MOD, p.a, nullptr));
    t.rc("MOD kernel-space event", api.ctl(e, EPOLL_CTL_MOD, p.a, kernel));
    {
      // An event whose last 4 bytes lie on a page that cannot be read.
      const long page = ::sysconf(_SC_PAGESIZE);
      void* m =
          ::mmap(nullptr, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      REQUIRE(m != MAP_FAILED);
      REQUIRE(::mprotect(static_cast<char*>(m) + page, page, PROT_NONE) == 0);
      auto* straddling = reinterpret_cast<epoll_event*>(static_cast<char*>(m) + page - 8);
      std::memset(straddling, 0, 8);
      t.rc("MOD event straddling into an unreadable page",
           api.ctl(e, EPOLL_CTL_MOD, p.a, straddling));
      t.rc("ADD event straddling into an unreadable page",
           api.ctl(e, EPOLL_CTL_ADD, p.b, straddling));
      ::munmap(m, 2 * page);
    }
    t.rc("wait, kernel-space buffer", api.wait(e, kernel, 4, 0));
    t.rc("wait, unmapped buffer, nothing ready", api.wait(e, unmapped, 4, 0));
    ::write(p.b, "x", 1);
    t.rc("wait, unmapped buffer, one ready", api.wait(e, unmapped, 4, 0));
    epoll_event out[4];
    t.rc("pwait, unmapped sigmask", api.pwait(e, out, 4, 0, reinterpret_cast<sigset_t*>(16)));
    t.rc("pwait2, unmapped timeout",
         api.pwait2(e, out, 4, reinterpret_cast<timespec*>(16), nullptr));
    ::close(p.a);
    ::close(p.b);
    api.close(e);
  });
}
