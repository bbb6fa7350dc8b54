// A wait fills up to maxevents, however large, as the kernel's does; a
// buffer that stops being writable part-way gets the events that fit before
// the fault (EFAULT only when none does) and the rest stay pending. Each
// scenario runs on the kernel's epoll and on ueq's; the traces must match.
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <vector>

#include "check_same.hpp"
#include "ueq/epoll/epoll.hpp"

using ueq::test::check;
using ueq::test::epoll_api;
using ueq::test::run_both;
using ueq::test::trace;

namespace {

// How many fds the scenarios may open: up to `want`, within the soft limit
// (raised to the hard one), leaving room for the runtime's own descriptors.
int room_for(int want) {
  rlimit rl{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &rl) == 0);
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    (void)::setrlimit(RLIMIT_NOFILE, &rl);
    REQUIRE(::getrlimit(RLIMIT_NOFILE, &rl) == 0);
  }
  const long avail = static_cast<long>(std::min<rlim_t>(rl.rlim_cur, 1 << 20)) - 400;
  return static_cast<int>(std::max(0L, std::min<long>(want, avail)));
}

// n always-writable eventfds in set e, data = index; each mode flag applies.
std::vector<int> add_writable(const epoll_api& api, int e, int n, std::uint32_t flags) {
  std::vector<int> fds;
  for (int i = 0; i < n; ++i) {
    const int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    REQUIRE(fd >= 0);
    epoll_event x{};
    x.events = EPOLLOUT | flags;
    x.data.u64 = static_cast<std::uint64_t>(i);
    REQUIRE(api.ctl(e, EPOLL_CTL_ADD, fd, &x) == 0);
    fds.push_back(fd);
  }
  return fds;
}

void close_all(const epoll_api& api, int e, const std::vector<int>& fds) {
  for (int fd : fds)
    api.close(fd);
  api.close(e);
}

// A buffer of room_events events whose end is the end of a writable page,
// followed by an inaccessible one: writing past room_events faults.
struct edge_buffer {
  char* map = nullptr;
  std::size_t len = 0;
  epoll_event* at = nullptr;
  explicit edge_buffer(std::size_t room_bytes) {
    const auto pg = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    const std::size_t writable = (room_bytes + pg - 1) / pg * pg;
    len = writable + pg;
    void* m = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(m != MAP_FAILED);
    map = static_cast<char*>(m);
    REQUIRE(::mprotect(map + writable, pg, PROT_NONE) == 0);
    at = reinterpret_cast<epoll_event*>(map + writable - room_bytes);
  }
  ~edge_buffer() { ::munmap(map, len); }
};

}  // namespace

TEST_CASE("maxevents: a wait returns every ready fd up to maxevents, past any staging size",
          "[epoll]") {
  const int n = room_for(1500);
  REQUIRE(n >= 600);  // the smallest case the test is about
  check("n ready", [n](const epoll_api& api, trace& t) {
    const int e = api.create1(EPOLL_CLOEXEC);
    const auto fds = add_writable(api, e, n, 0);
    std::vector<epoll_event> out(static_cast<std::size_t>(n) + 100);
    t.wait("maxevents = ready", api.wait(e, out.data(), n, 0), out.data());
    t.wait("maxevents > ready", api.wait(e, out.data(), n + 100, 0), out.data());
    t.wait("maxevents 600", api.wait(e, out.data(), 600, 0), out.data());
    // Level-triggered: successive waits cover every fd before repeating one,
    // across the stretches a large result passes through.
    for (int round = 0; round < 4; ++round)
      t.wait("maxevents 2/5 of ready", api.wait(e, out.data(), n * 2 / 5, 0), out.data());
    close_all(api, e, fds);
  });
}

TEST_CASE("maxevents: events that arrive after ADD fill a wait too, past any host batch",
          "[epoll]") {
  const int n = room_for(1000);
  REQUIRE(n >= 600);
  check("n arrive", [n](const epoll_api& api, trace& t) {
    const int e = api.create1(EPOLL_CLOEXEC);
    std::vector<int> fds;
    for (int i = 0; i < n; ++i) {
      const int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
      REQUIRE(fd >= 0);
      epoll_event x{};
      x.events = EPOLLIN | (i % 2 ? static_cast<std::uint32_t>(EPOLLET) : 0u);
      x.data.u64 = static_cast<std::uint64_t>(i);
      REQUIRE(api.ctl(e, EPOLL_CTL_ADD, fd, &x) == 0);
      fds.push_back(fd);
    }
    std::vector<epoll_event> out(static_cast<std::size_t>(n));
    t.rc("none ready yet", api.wait(e, out.data(), n, 0));
    const std::uint64_t one = 1;
    for (int fd : fds)
      REQUIRE(::write(fd, &one, sizeof one) == sizeof one);
    t.wait("all arrived", api.wait(e, out.data(), n, 0), out.data());
    t.wait("level-triggered half again", api.wait(e, out.data(), n, 0), out.data());
    close_all(api, e, fds);
  });
}

TEST_CASE("maxevents: a buffer that faults part-way gets the events before the fault", "[epoll]") {
  const int n = room_for(600);
  REQUIRE(n >= 600);
  check("fault part-way", [](const epoll_api& api, trace& t) {
    const int e = api.create1(EPOLL_CLOEXEC);
    const auto fds = add_writable(api, e, 20, EPOLLET);
    std::vector<epoll_event> out(600);
    {
      edge_buffer b(5 * sizeof(epoll_event));
      t.wait("room for 5 of 20", api.wait(e, b.at, 20, 0), b.at);
    }
    t.wait("the other 15 stay pending", api.wait(e, out.data(), 20, 0), out.data());
    t.rc("then none (edge-triggered)", api.wait(e, out.data(), 20, 0));
    close_all(api, e, fds);
  });
  check("fault inside an event", [](const epoll_api& api, trace& t) {
    const int e = api.create1(EPOLL_CLOEXEC);
    const auto fds = add_writable(api, e, 10, EPOLLET);
    std::vector<epoll_event> out(16);
    {
      // Room for 3 events and half of a fourth: 3 are returned.
      edge_buffer b(3 * sizeof(epoll_event) + sizeof(epoll_event) / 2);
      t.wait("room for 3.5 of 10", api.wait(e, b.at, 10, 0), b.at);
    }
    t.wait("the other 7 stay pending", api.wait(e, out.data(), 16, 0), out.data());
    close_all(api, e, fds);
  });
  check("fault in a later stretch", [](const epoll_api& api, trace& t) {
    const int e = api.create1(EPOLL_CLOEXEC);
    const auto fds = add_writable(api, e, 600, EPOLLET);
    std::vector<epoll_event> out(600);
    {
      edge_buffer b(300 * sizeof(epoll_event));
      t.wait("room for 300 of 600", api.wait(e, b.at, 600, 0), b.at);
    }
    t.wait("the other 300 stay pending", api.wait(e, out.data(), 600, 0), out.data());
    close_all(api, e, fds);
  });
  check("no room at all", [](const epoll_api& api, trace& t) {
    const int e = api.create1(EPOLL_CLOEXEC);
    const auto fds = add_writable(api, e, 4, EPOLLONESHOT);
    std::vector<epoll_event> out(4);
    {
      edge_buffer b(0);
      t.rc("EFAULT", api.wait(e, b.at, 4, 0));
    }
    t.wait("all 4 still pending, ONESHOT still armed", api.wait(e, out.data(), 4, 0), out.data());
    t.rc("then disarmed", api.wait(e, out.data(), 4, 0));
    close_all(api, e, fds);
  });
}

TEST_CASE("maxevents: epoll_set::wait fills the whole span, with or without a deliver hook",
          "[epoll]") {
  const int n = room_for(700);
  REQUIRE(n >= 600);
  auto set = ueq::epoll_set::create(EPOLL_CLOEXEC);
  REQUIRE(set);
  const auto fds = add_writable(ueq::test::ueq_api(), (*set)->fd(), n, 0);
  std::vector<epoll_event> out(static_cast<std::size_t>(n));
  auto got = (*set)->wait(out, ueq::deadline_after_ms(0));
  REQUIRE(got);
  CHECK(*got == n);
  struct seen {
    int calls = 0, events = 0;
  } s;
  got = (*set)->wait(
      out, ueq::deadline_after_ms(0), nullptr,
      [](const epoll_event*, int k, void* c) {
        auto* s = static_cast<seen*>(c);
        ++s->calls;
        s->events += k;
        return true;
      },
      &s);
  REQUIRE(got);
  CHECK(*got == n);
  CHECK(s.calls == 1);
  CHECK(s.events == n);
  for (int fd : fds)
    ueq_close(fd);
  REQUIRE(ueq_close((*set)->fd()) == 0);
}
