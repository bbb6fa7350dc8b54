// fork(): the child gets its own host poller and can make and use sets. A
// set made before the fork is one object shared by both processes, as on
// Linux (ueq hands it to the kernel at the fork): the child waits on it and
// adds to it, the parent sees the child's additions, and the child's close
// of an inherited fd leaves the parent's registrations alone. The child
// reports through its exit status (Catch2 is not used in the child).
#include <dirent.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <thread>
#include <vector>

#include "../../epoll/registry.hpp"
#include "../support.hpp"
#include "pipe_fds.hpp"
#include "ueq/epoll.h"
#include "ueq/uthread/uthread.hpp"

using ueq::test::pipe_fds;

namespace {

// Returns 0 if a fresh set sees a write on a fresh pipe, else a code.
int fresh_set_works() {
  const int ep = ueq_epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) return 10;
  int p[2];
  if (::pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0) return 11;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = 5;
  if (ueq_epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev) != 0) return 12;
  if (::write(p[1], "x", 1) != 1) return 13;
  epoll_event out[2];
  const int n = ueq_epoll_wait(ep, out, 2, 5000);
  if (n != 1 || out[0].data.u64 != 5) return 14;
  ueq_close(p[0]);
  ::close(p[1]);
  ueq_close(ep);
  return 0;
}

epoll_event ev_in(std::uint64_t data) {
  epoll_event e{};
  e.events = EPOLLIN;
  e.data.u64 = data;
  return e;
}

// Waits until `count` reaches `n` or 10 s pass (the caller checks which).
void wait_for_count(const std::atomic<int>& count, int n) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (count.load(std::memory_order_relaxed) < n && std::chrono::steady_clock::now() < end)
    std::this_thread::yield();
}

// Runs `child` in a fork()ed child and returns its exit status.
template <class Fn>
int in_child(Fn child) {
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) ::_exit(child());
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  return WEXITSTATUS(status);
}

}  // namespace

TEST_CASE("fork: the child makes and uses its own sets; the parent's go on working", "[epoll]") {
  REQUIRE(fresh_set_works() == 0);  // the parent has a running service
  const int inherited = ueq_epoll_create1(0);
  REQUIRE(inherited >= 0);
  CHECK(in_child([] { return fresh_set_works(); }) == 0);
  REQUIRE(fresh_set_works() == 0);  // the parent after the fork
  epoll_event out[1];
  REQUIRE(ueq_epoll_wait(inherited, out, 1, 0) == 0);
  REQUIRE(ueq_close(inherited) == 0);
}

TEST_CASE("fork: a set made before the fork is one set, shared by parent and child", "[epoll]") {
  const int ep = ueq_epoll_create1(EPOLL_CLOEXEC);
  REQUIRE(ep >= 0);
  pipe_fds ready, later;
  epoll_event e = ev_in(1);
  REQUIRE(ueq_epoll_ctl(ep, EPOLL_CTL_ADD, ready.r, &e) == 0);
  REQUIRE(::write(ready.w, "x", 1) == 1);
  const int later_r = later.r, later_w = later.w;
  // The child sees the ready pipe, and adds another one, ready too.
  CHECK(in_child([&] {
          epoll_event out[2];
          if (ueq_epoll_wait(ep, out, 2, 5000) != 1 || out[0].data.u64 != 1) return 1;
          epoll_event f = ev_in(2);
          if (ueq_epoll_ctl(ep, EPOLL_CTL_ADD, later_r, &f) != 0) return 2;
          if (::write(later_w, "y", 1) != 1) return 3;
          return 0;
        }) == 0);
  // The parent sees the child's entry: both pipes are ready.
  epoll_event out[4];
  const int n = ueq_epoll_wait(ep, out, 4, 5000);
  REQUIRE(n == 2);
  CHECK(out[0].data.u64 + out[1].data.u64 == 3);
  // The child's entry is in the parent's set: adding it again is EEXIST.
  epoll_event f = ev_in(2);
  CHECK(ueq_epoll_ctl(ep, EPOLL_CTL_ADD, later.r, &f) == -1);
  CHECK(errno == EEXIST);
  REQUIRE(ueq_close(ep) == 0);
}

TEST_CASE("fork: the child's close of inherited fds leaves the parent's registrations", "[epoll]") {
  const int ep = ueq_epoll_create1(EPOLL_CLOEXEC);
  REQUIRE(ep >= 0);
  pipe_fds p;
  epoll_event e = ev_in(7);
  REQUIRE(ueq_epoll_ctl(ep, EPOLL_CTL_ADD, p.r, &e) == 0);
  epoll_event out[2];
  REQUIRE(ueq_epoll_wait(ep, out, 2, 0) == 0);  // the set has been waited on
  const int r = p.r;
  // As a fork+exec helper does: close every inherited fd.
  CHECK(in_child([&] {
          if (ueq_close(r) != 0) return 1;
          if (ueq_close(ep) != 0) return 2;
          return 0;
        }) == 0);
  for (int round = 0; round < 3; ++round) {
    REQUIRE(::write(p.w, "x", 1) == 1);
    REQUIRE(ueq_epoll_wait(ep, out, 2, 5000) == 1);
    CHECK(out[0].data.u64 == 7);
    char b[8];
    REQUIRE(::read(p.r, b, sizeof b) == 1);
  }
  REQUIRE(ueq_close(ep) == 0);
}

TEST_CASE("fork: the child's sets register files apart from the parent's", "[epoll]") {
  // Each process asks the kernel which file a number names through an
  // epoll fd of its own: a child that added and removed an inherited file
  // must not make the parent's entry for it look stale.
  const int before = ueq_epoll_create1(EPOLL_CLOEXEC);
  pipe_fds p;
  epoll_event e = ev_in(1);
  REQUIRE(ueq_epoll_ctl(before, EPOLL_CTL_ADD, p.r, &e) == 0);  // made before the fork
  int go[2];
  REQUIRE(::pipe2(go, O_CLOEXEC) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    char c;
    if (::read(go[0], &c, 1) != 1) ::_exit(20);
    const int mine = ueq_epoll_create1(EPOLL_CLOEXEC);
    epoll_event x = ev_in(2);
    if (ueq_epoll_ctl(mine, EPOLL_CTL_ADD, p.r, &x) != 0) ::_exit(21);
    if (ueq_epoll_ctl(mine, EPOLL_CTL_MOD, p.r, &x) != 0) ::_exit(22);
    if (ueq_epoll_ctl(mine, EPOLL_CTL_DEL, p.r, nullptr) != 0) ::_exit(23);
    ::_exit(0);
  }
  const int after = ueq_epoll_create1(EPOLL_CLOEXEC);  // ueq's again
  epoll_event a = ev_in(3);
  REQUIRE(ueq_epoll_ctl(after, EPOLL_CTL_ADD, p.r, &a) == 0);
  REQUIRE(::write(go[1], "g", 1) == 1);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  epoll_event m = ev_in(4);
  CHECK(ueq_epoll_ctl(after, EPOLL_CTL_MOD, p.r, &m) == 0);
  REQUIRE(::write(p.w, "x", 1) == 1);
  epoll_event out[2];
  REQUIRE(ueq_epoll_wait(after, out, 2, 5000) == 1);
  CHECK(out[0].data.u64 == 4);
  ::close(go[0]);
  ::close(go[1]);
  ueq_close(after);
  ueq_close(before);
}

namespace {
// Whether every thread of this process but the caller sleeps in the kernel.
bool others_asleep() {
  const pid_t self = ueq::test::current_tid();
  DIR* d = ::opendir("/proc/self/task");
  if (!d) return false;
  bool all = true;
  while (dirent* e = ::readdir(d)) {
    const pid_t tid = static_cast<pid_t>(std::atoi(e->d_name));
    if (tid > 0 && tid != self && !ueq::test::thread_sleeping(tid)) all = false;
  }
  ::closedir(d);
  return all;
}
}  // namespace

// Uthreads parked in epoll_wait on a set when a fork hands it to the
// kernel: every one of them wakes and goes on waiting there (one bit on
// their queue would wake one; the others would sleep to their deadline).
TEST_CASE("fork: every uthread parked on a set goes on in the kernel", "[epoll]") {
  const int ep = ueq_epoll_create1(EPOLL_CLOEXEC);
  REQUIRE(ep >= 0);
  pipe_fds p;
  epoll_event e = ev_in(7);  // level-triggered: one write wakes every waiter
  REQUIRE(ueq_epoll_ctl(ep, EPOLL_CTL_ADD, p.r, &e) == 0);
  constexpr int kWaiters = 3;
  std::atomic<int> entered{0}, got{0};
  std::thread rt([&] {
    (void)ueq::run(
        [&] {
          std::vector<ueq::uthread_handle> hs;
          for (int i = 0; i < kWaiters; ++i) {
            auto h = ueq::spawn([&] {
              epoll_event out[1];
              entered.fetch_add(1);
              if (ueq_epoll_wait(ep, out, 1, 30000) == 1 && out[0].data.u64 == 7) got.fetch_add(1);
            });
            if (h) hs.push_back(std::move(*h));
          }
          for (auto& h : hs)
            (void)h.join();
        },
        {.vcores = kWaiters + 1});
  });
  // All in the wait and parked: every other thread sleeps (a runnable
  // uthread would keep its vcore's thread running).
  const bool parked = ueq::test::wait_until(
      [&] { return entered.load() == kWaiters && others_asleep() && others_asleep(); });
  // CHECK, not REQUIRE, until rt is joined (a throw would end the process).
  CHECK(in_child([] { return 0; }) == 0);  // the fork hands the set to the kernel
  CHECK(::write(p.w, "x", 1) == 1);
  // Promptly, far inside the waits' own timeout (a waiter left parked
  // would return only at its deadline).
  const bool all =
      ueq::test::wait_until([&] { return got.load() == kWaiters; }, std::chrono::seconds(10));
  rt.join();
  REQUIRE(parked);
  REQUIRE(all);
  REQUIRE(ueq_close(ep) == 0);
}

// A wait with timeout 0 that races the fork's hand-over of its set: it
// checked `native` before the hand-over and reaches the set's entries (or
// its skip of an idle set's harvest) after them. A level-triggered entry
// ready throughout is reported by every such wait, as Linux does; before
// the fix, a wait that lost the race found the entries gone and returned
// 0. Each round hands one new set over (a set is handed over once).
TEST_CASE("fork: immediate waits racing the hand-over still report a ready entry", "[epoll]") {
  constexpr int kRounds = 40;
  int misses = 0;
  for (int round = 0; round < kRounds; ++round) {
    const int ep = ueq_epoll_create1(EPOLL_CLOEXEC);
    REQUIRE(ep >= 0);
    pipe_fds p;
    REQUIRE(::write(p.w, "x", 1) == 1);  // readable for good
    epoll_event e = ev_in(7);
    REQUIRE(ueq_epoll_ctl(ep, EPOLL_CTL_ADD, p.r, &e) == 0);
    std::atomic<bool> stop{false};
    std::atomic<int> waits{0}, zeros{0};
    std::thread poller([&] {
      while (!stop.load(std::memory_order_relaxed)) {
        epoll_event out[1];
        if (ueq_epoll_wait(ep, out, 1, 0) != 1) zeros.fetch_add(1, std::memory_order_relaxed);
        waits.fetch_add(1, std::memory_order_relaxed);
      }
    });
    // The poller is running before the fork (a bounded wait: 10 s). Nothing
    // below throws until it is joined (in_child's REQUIREs would, and a
    // joinable thread's destructor ends the process).
    wait_for_count(waits, 100);
    const pid_t pid = ::fork();
    if (pid == 0) ::_exit(0);
    int status = 0;
    const bool forked = pid > 0 && ::waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
                        WEXITSTATUS(status) == 0;
    wait_for_count(waits, waits.load(std::memory_order_relaxed) + 100);
    stop.store(true, std::memory_order_relaxed);
    poller.join();
    REQUIRE(forked);
    REQUIRE(waits.load() >= 200);
    misses += zeros.load();
    REQUIRE(ueq_close(ep) == 0);
  }
  CHECK(misses == 0);
}

// A MOD that lands while the fork hands its set over, after the entry was
// copied into the kernel and before the set is marked native (a MOD of a
// held entry takes only the set's lock, which the hand-over lets go
// between its steps): the kernel's copy must take it. The MOD is made
// there by a test hook (registry.hpp). Before the fix the kernel kept the
// copy's data and mask, and the wait after the fork reported them.
// The hook runs in the forking thread, which holds the registry lock
// there, so it calls the MOD's fast path itself (ueq_epoll_ctl's lookup
// of the set could take that lock).
std::shared_ptr<ueq::epoll_set> g_handover_set;
int g_handover_fd = -1;
int g_handover_rc = -2;
TEST_CASE("fork: a MOD during the hand-over reaches the kernel's copy", "[epoll]") {
  const int ep = ueq_epoll_create1(EPOLL_CLOEXEC);
  REQUIRE(ep >= 0);
  pipe_fds p;
  REQUIRE(::write(p.w, "x", 1) == 1);  // readable
  epoll_event e = ev_in(1);
  REQUIRE(ueq_epoll_ctl(ep, EPOLL_CTL_ADD, p.r, &e) == 0);
  g_handover_set = ueq::epoll_internal::lookup(ep);
  REQUIRE(g_handover_set);
  g_handover_fd = p.r;
  g_handover_rc = -2;
  struct uninstall {
    ~uninstall() {
      ueq::epoll_internal::test_hook_in_handover.store(nullptr);
      g_handover_set.reset();
    }
  } guard;
  ueq::epoll_internal::test_hook_in_handover.store([] {
    ueq::epoll_internal::test_hook_in_handover.store(nullptr);  // once
    epoll_event m = ev_in(2);
    m.events |= EPOLLONESHOT;
    bool done = false;
    const ueq::status s =
        ueq::epoll_access::of(*g_handover_set).modify_registered(g_handover_fd, &m, done);
    g_handover_rc = done ? s.value() : -1;
  });
  CHECK(in_child([] { return 0; }) == 0);
  REQUIRE(ueq::epoll_internal::test_hook_in_handover.load() == nullptr);  // the hook ran
  REQUIRE(g_handover_rc == 0);
  // The kernel holds the set now: the MOD's data, and its EPOLLONESHOT.
  epoll_event out[2];
  REQUIRE(ueq_epoll_wait(ep, out, 2, 0) == 1);
  CHECK(out[0].data.u64 == 2);
  CHECK(ueq_epoll_wait(ep, out, 2, 0) == 0);  // spent
  REQUIRE(ueq_close(ep) == 0);
}
