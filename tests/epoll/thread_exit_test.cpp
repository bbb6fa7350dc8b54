// epoll calls made while a thread ends: from a pthread_key destructor, which
// glibc runs after the thread's thread_local objects are destroyed (a
// per-thread event loop torn down that way is a common shape). ueq's
// per-thread state must not be used after its destruction (ASan checks
// this in the sanitizer build).
#include <pthread.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "pipe_fds.hpp"
#include "ueq/epoll.h"

namespace {

struct loop {
  int ep1 = -1, ep2 = -1, fd = -1;
  int results[4] = {-2, -2, -2, -2};
};

pthread_key_t g_key;

void tear_down(void* p) {
  auto* l = static_cast<loop*>(p);
  epoll_event ev{};
  ev.events = EPOLLIN;
  l->results[0] = ueq_epoll_ctl(l->ep1, EPOLL_CTL_MOD, l->fd, &ev);
  l->results[1] = ueq_close(l->ep1);
  l->results[2] = ueq_epoll_ctl(l->ep2, EPOLL_CTL_ADD, l->fd, &ev);
  l->results[3] = ueq_epoll_ctl(l->ep1, EPOLL_CTL_MOD, l->fd, &ev);  // closed: EBADF
}

void* thread_main(void* p) {
  auto* l = static_cast<loop*>(p);
  epoll_event ev{};
  ev.events = EPOLLIN;
  // The thread's first calls: its per-thread state is made here.
  if (ueq_epoll_ctl(l->ep1, EPOLL_CTL_ADD, l->fd, &ev) != 0) return nullptr;
  if (ueq_epoll_ctl(l->ep1, EPOLL_CTL_MOD, l->fd, &ev) != 0) return nullptr;
  pthread_setspecific(g_key, l);
  return nullptr;
}

}  // namespace

TEST_CASE("epoll calls from a pthread_key destructor, after thread_local teardown", "[epoll]") {
  REQUIRE(pthread_key_create(&g_key, &tear_down) == 0);
  ueq::test::pipe_fds p;
  loop l;
  l.ep1 = ueq_epoll_create1(EPOLL_CLOEXEC);
  l.ep2 = ueq_epoll_create1(EPOLL_CLOEXEC);
  l.fd = p.r;
  REQUIRE(l.ep1 >= 0);
  REQUIRE(l.ep2 >= 0);
  pthread_t t;
  REQUIRE(pthread_create(&t, nullptr, &thread_main, &l) == 0);
  REQUIRE(pthread_join(t, nullptr) == 0);
  CHECK(l.results[0] == 0);
  CHECK(l.results[1] == 0);
  CHECK(l.results[2] == 0);
  CHECK(l.results[3] == -1);
  ueq_close(l.ep2);
  pthread_key_delete(g_key);
}

namespace {

// The calls of a thread whose cancel is pending (deferred): none of them is
// a cancellation point, and ueq's own cancellation points inside them
// (eventfd writes, closes of its descriptors) must not act there (its
// frames are noexcept: the process would abort). ueq_epoll_wait is none
// either (the preload library's epoll_wait is: tests/epoll/facade).
struct cancelled_calls {
  int fd = -1, w = -1;
  int results[8] = {-2, -2, -2, -2, -2, -2, -2, -2};
  int ep = -1;
};

void* cancelled_main(void* p) {
  auto* c = static_cast<cancelled_calls*>(p);
  (void)!::write(c->w, "x", 1);  // a cancellation point: before the cancel
  pthread_cancel(pthread_self());
  epoll_event ev{};
  ev.events = EPOLLIN;
  c->ep = ueq_epoll_create1(EPOLL_CLOEXEC);
  c->results[0] = ueq_epoll_ctl(c->ep, EPOLL_CTL_ADD, c->fd, &ev);
  ev.events = EPOLLIN | EPOLLOUT;
  c->results[1] = ueq_epoll_ctl(c->ep, EPOLL_CTL_MOD, c->fd, &ev);
  epoll_event out{};
  c->results[2] = ueq_epoll_wait(c->ep, &out, 1, 0);  // a zero timeout: ueq's own
  const int copy = ueq_dup(c->ep);
  c->results[3] = copy >= 0 ? 0 : -1;
  c->results[4] = ueq_dup2(c->ep, copy) == copy ? 0 : -1;
  c->results[5] = ueq_close(copy);
  c->results[6] = ueq_epoll_ctl(c->ep, EPOLL_CTL_DEL, c->fd, nullptr);
  c->results[7] = ueq_epoll_wait(c->ep, &out, 1, 1);  // sleeps until its timeout
  pthread_testcancel();
  return nullptr;
}

}  // namespace

TEST_CASE("ueq's calls on a thread with a cancel pending", "[epoll]") {
  ueq::test::pipe_fds p;
  cancelled_calls c;
  c.fd = p.r;
  c.w = p.w;
  pthread_t t;
  void* result = nullptr;
  REQUIRE(pthread_create(&t, nullptr, &cancelled_main, &c) == 0);
  REQUIRE(pthread_join(t, &result) == 0);
  CHECK(result == PTHREAD_CANCELED);
  REQUIRE(c.ep >= 0);
  CHECK(c.results[0] == 0);
  CHECK(c.results[1] == 0);
  CHECK(c.results[2] == 1);
  for (int i = 3; i < 8; ++i)
    CHECK(c.results[i] == 0);
  CHECK(ueq_close(c.ep) == 0);
}
