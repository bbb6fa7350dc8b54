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
