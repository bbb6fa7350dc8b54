// Both host backends pass the same behaviour checks: the run meson names
// taps/backend tests epoll, taps/backend-io_uring tests io_uring (skipped,
// exit 77, where the kernel or container forbids it). Cases tagged
// [epoll-backend] test the epoll backend alone and run in the first.
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <memory>
#include <thread>
#include <vector>

#include "../support.hpp"
#include "taps_support.hpp"
#include "ueq/taps/backend.hpp"

using ueq::backend_kind;
using ueq::deadline_after_ms;
using ueq::host_backend;
using ueq::host_event;

namespace {

// Polls until an event with `key` arrives or 2 s pass; returns its bits (0 if
// none).
std::uint32_t poll_for(host_backend& b, std::uint64_t key, int ms = 2000) {
  const auto deadline = deadline_after_ms(ms);
  host_event ev[16];
  while (ueq::monotonic_now() < deadline) {
    auto n = b.poll(ev, deadline, nullptr);
    REQUIRE(n.ok());
    for (std::size_t i = 0; i < *n; ++i)
      if (ev[i].key == key) return ev[i].events;
  }
  return 0;
}

struct pipe_pair {
  int r = -1, w = -1;
  pipe_pair() {
    int p[2];
    REQUIRE(::pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0);
    r = p[0];
    w = p[1];
  }
  ~pipe_pair() {
    if (r >= 0) ::close(r);
    if (w >= 0) ::close(w);
  }
};

void check_backend(host_backend& b) {
  pipe_pair p;
  char c = 'x';
  SECTION("readable after a write; edge-like: not again until new data") {
    REQUIRE(b.add(p.r, EPOLLIN | EPOLLRDHUP, 11).ok());
    REQUIRE(poll_for(b, 11, 50) == 0);  // nothing yet
    REQUIRE(::write(p.w, &c, 1) == 1);
    REQUIRE((poll_for(b, 11) & EPOLLIN));
    REQUIRE(poll_for(b, 11, 50) == 0);  // still readable, but no new edge
    REQUIRE(::write(p.w, &c, 1) == 1);
    REQUIRE((poll_for(b, 11) & EPOLLIN));
  }
  SECTION("already ready at add: reported once right away") {
    REQUIRE(::write(p.w, &c, 1) == 1);
    REQUIRE(b.add(p.r, EPOLLIN, 12).ok());
    REQUIRE((poll_for(b, 12) & EPOLLIN));
  }
  SECTION("modify changes the events of a registration and re-evaluates readiness") {
    REQUIRE(b.add(p.w, EPOLLIN, 20).ok());  // a pipe's write end is never readable
    REQUIRE(poll_for(b, 20, 50) == 0);
    REQUIRE(b.modify(p.w, EPOLLOUT, 20).ok());  // writable now: reported at modify
    REQUIRE((poll_for(b, 20) & EPOLLOUT));
  }
  SECTION("two registrations of one fd are filtered independently") {
    int s2[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, s2) == 0);
    REQUIRE(b.add(s2[0], EPOLLIN, 70).ok());
    REQUIRE(b.add(s2[0], EPOLLOUT, 71).ok());
    REQUIRE((poll_for(b, 71) & EPOLLOUT));  // writable at add, for 71 alone
    REQUIRE(::write(s2[1], &c, 1) == 1);
    // The write wakes readers: 70 gets an edge, 71 (writers only) does not.
    host_event ev[16];
    bool saw70 = false;
    const auto deadline = deadline_after_ms(300);
    while (ueq::monotonic_now() < deadline) {
      auto n = b.poll(ev, deadline, nullptr);
      REQUIRE(n.ok());
      for (std::size_t k = 0; k < *n; ++k) {
        REQUIRE(ev[k].key != 71);
        if (ev[k].key == 70) saw70 = true;
      }
    }
    REQUIRE(saw70);
    REQUIRE(b.remove(s2[0], 70).ok());
    REQUIRE(b.remove(s2[0], 71).ok());
    ::close(s2[0]);
    ::close(s2[1]);
  }
  SECTION("hang-up of the peer is reported") {
    REQUIRE(b.add(p.r, EPOLLIN | EPOLLRDHUP, 30).ok());
    ::close(p.w);
    p.w = -1;
    REQUIRE((poll_for(b, 30) & EPOLLHUP));
  }
  SECTION("removed registrations report nothing") {
    REQUIRE(b.add(p.r, EPOLLIN, 40).ok());
    REQUIRE(b.remove(p.r, 40).ok());
    REQUIRE(::write(p.w, &c, 1) == 1);
    REQUIRE(poll_for(b, 40, 100) == 0);
  }
  SECTION("errors: EEXIST for a key in use, ENOENT for an unknown key, EBADF") {
    REQUIRE(b.add(p.r, EPOLLIN, 50).ok());
    REQUIRE(b.add(p.w, EPOLLOUT, 50).value() == EEXIST);
    REQUIRE(b.modify(p.w, EPOLLOUT, 52).value() == ENOENT);
    REQUIRE(b.remove(p.w, 52).value() == ENOENT);
    REQUIRE(b.add(987654, EPOLLIN, 53).value() == EBADF);
  }
  SECTION("wake() breaks a blocked poll from another thread; deadline honoured") {
    std::thread t([&] {
      // Give the poll a moment to block; correctness does not depend on it
      // (a wake before the poll makes the poll return at once).
      b.wake();
    });
    host_event ev[4];
    const auto t0 = ueq::monotonic_now();
    auto n = b.poll(ev, deadline_after_ms(10000), nullptr);
    t.join();
    REQUIRE(n.ok());
    REQUIRE(ueq::monotonic_now() - t0 < 5'000'000'000LL);
    const auto d = deadline_after_ms(30);
    n = b.poll(ev, d, nullptr);
    REQUIRE(n.ok());
    REQUIRE(*n == 0);
    REQUIRE(ueq::monotonic_now() >= d - 1'000'000);  // epoll rounds to the ms
  }
}

}  // namespace

TEST_CASE("the host backend under test", "[taps]") {
  const backend_kind k = ueq::test::backend_under_test();
  auto b = ueq::make_backend(k);
  REQUIRE(b.ok());
  REQUIRE(std::string((*b)->name()) == ueq::test::backend_name(k));
  check_backend(**b);
}

TEST_CASE("host epoll backend: no event is dropped when nested lanes overflow the batch",
          "[taps][epoll-backend]") {
  // 64 fds with 5 registrations each (lanes 0-4) and 8 fds with one (lane 0
  // only), all made readable at once, polled with a batch of 16. Every
  // registration is edge-triggered: one dropped from a batch never returns.
  auto made = ueq::make_backend(backend_kind::epoll);
  REQUIRE(made.ok());
  auto b = std::move(made).value();
  constexpr int kMulti = 64, kLanes = 5, kSingle = 8;
  std::vector<std::unique_ptr<pipe_pair>> pipes;
  std::uint64_t key = 0;
  for (int i = 0; i < kMulti + kSingle; ++i) {
    pipes.push_back(std::make_unique<pipe_pair>());
    for (int l = 0; l < (i < kMulti ? kLanes : 1); ++l)
      REQUIRE(b->add(pipes.back()->r, EPOLLIN, key++).ok());
  }
  const char c = 'x';
  for (auto& p : pipes)
    REQUIRE(::write(p->w, &c, 1) == 1);
  std::vector<int> seen(key, 0);
  host_event ev[16];
  // Polls until nothing more comes for 100 ms (bounded: 10 s in all).
  const auto end = deadline_after_ms(10000);
  while (ueq::monotonic_now() < end) {
    auto n = b->poll(ev, std::min(end, deadline_after_ms(100)), nullptr);
    // EINTR: io_uring's task work from an earlier test's ring can interrupt
    // a blocking poll of this thread; poll again.
    if (!n.ok() && n.error().value() == EINTR) continue;
    REQUIRE(n.ok());
    if (*n == 0) break;
    for (std::size_t i = 0; i < *n; ++i) {
      REQUIRE(ev[i].key < key);
      ++seen[ev[i].key];
    }
  }
  int missing = 0;
  for (int s : seen)
    missing += s == 0;
  REQUIRE(missing == 0);
  for (int s : seen)
    REQUIRE(s == 1);  // and no edge reported twice
}
