/* Numbers the program never opened: the top of the fd limit, where the
 * facade keeps its own descriptors (host poller, eventfds), must answer as
 * closed numbers do natively: epoll_wait, epoll_ctl (as the set and as the
 * target) and dup/dup2/dup3 fail with EBADF, and no wait there takes a
 * set's event. Also dup3's error order (flags, then the same number, then
 * a bad oldfd: EINVAL before EBADF). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <unistd.h>

static void show(const char* what, int r) {
  printf("%s: %d %s\n", what, r, r < 0 ? strerror(errno) : "");
}

int main(void) {
  int ep = epoll_create1(0), p[2];
  if (ep < 0 || pipe(p) != 0) return 1;
  struct epoll_event x = {.events = EPOLLIN | EPOLLET, .data.u64 = 1}, out[4];
  epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &x);
  epoll_wait(ep, out, 4, 10);
  (void)!write(p[1], "x", 1);
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  int lo = rl.rlim_cur > 256 ? (int)rl.rlim_cur - 256 : 64;
  int waits = 0, events = 0, ctl_set = 0, ctl_target = 0, dups = 0;
  for (int n = lo; n < (int)rl.rlim_cur; n++) {
    int k = epoll_wait(n, out, 4, 0);
    if (k >= 0 || errno != EBADF) waits++;
    if (k > 0) events += k;
    struct epoll_event y = {.events = EPOLLIN};
    if (epoll_ctl(n, EPOLL_CTL_ADD, p[0], &y) == 0 || errno != EBADF) ctl_set++;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, n, &y) == 0 || errno != EBADF) ctl_target++;
    int d = dup(n);
    if (d >= 0 || errno != EBADF) dups++;
    if (d >= 0) close(d);
    d = dup3(n, 40, 0);
    if (d >= 0 || errno != EBADF) dups++;
    if (d >= 0) close(d);
    if (dup3(n, n, 0) >= 0 || errno != EINVAL) dups++; /* the same number: EINVAL first */
    if (dup2(n, n) >= 0 || errno != EBADF) dups++;
  }
  printf(
      "unopened numbers: waits %d, events taken %d, ctl as set %d, ctl as target %d, dups %d "
      "answering otherwise than natively\n",
      waits, events, ctl_set, ctl_target, dups);
  printf("the set's wait: %d\n", epoll_wait(ep, out, 4, 300));
  show("dup3(40,40,0)", dup3(40, 40, 0));
  show("dup3(-1,-1,0)", dup3(-1, -1, 0));
  show("dup3(40,41,4)", dup3(40, 41, 4));
  show("dup3(-1,41,O_CLOEXEC)", dup3(-1, 41, O_CLOEXEC));
  show("dup2(40,40)", dup2(40, 40));
  show("dup2(ep,ep)", dup2(ep, ep) == ep ? 0 : -1);
  return 0;
}
