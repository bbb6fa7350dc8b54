// fork(): the child gets its own host poller and can make and use sets; the
// parent's sets keep working; a set made before the fork is not usable in
// the child (a listed difference: ENOSYS). The child reports through its
// exit status (Catch2 is not used in the child).
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "ueq/epoll.h"

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

}  // namespace

TEST_CASE("fork: the child makes and uses its own sets; the parent's go on working", "[epoll]") {
  REQUIRE(fresh_set_works() == 0);  // the parent has a running service
  const int inherited = ueq_epoll_create1(0);
  REQUIRE(inherited >= 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int code = fresh_set_works();
    epoll_event out[1];
    if (code == 0 && !(ueq_epoll_wait(inherited, out, 1, 0) == -1 && errno == ENOSYS)) code = 20;
    ::_exit(code);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  REQUIRE(fresh_set_works() == 0);  // the parent after the fork
  epoll_event out[1];
  REQUIRE(ueq_epoll_wait(inherited, out, 1, 0) == 0);
  REQUIRE(ueq_close(inherited) == 0);
}
