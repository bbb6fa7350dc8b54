/* Many live sets, and one fd in many sets: a process holds thousands of
 * sets, a pipe can be in hundreds of them and each reports it, and a set
 * polled from outside (poll(2) on its fd, no epoll_wait) sees a write. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <unistd.h>

#define SETS 3000
#define SHARED 300

static int eps[SETS];

int main(void) {
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < 3 * SETS) {
    printf("SKIP: the fd limit (%llu) is below %d\n", (unsigned long long)rl.rlim_max, 3 * SETS);
    return 77;
  }
  rl.rlim_cur = rl.rlim_max == RLIM_INFINITY ? 4 * SETS : rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);

  /* Polled from outside: readable once its pipe is. */
  int p[2];
  if (pipe(p) != 0) return 1;
  int outer = epoll_create1(0);
  struct epoll_event e = {.events = EPOLLIN, .data.u64 = 1};
  epoll_ctl(outer, EPOLL_CTL_ADD, p[0], &e);
  (void)!write(p[1], "x", 1);
  struct pollfd pf = {.fd = outer, .events = POLLIN};
  int r = poll(&pf, 1, 2000);
  printf("poll on a set's fd after a write: %d revents=%#x\n", r, pf.revents);
  /* (A set that is never waited on may watch ueq's host poller, which
   * makes each further set that holds one fd cost more of Linux's wakeup
   * paths: docs/guide.md, "epoll compatibility".) */
  close(outer);

  int made = 0;
  for (int i = 0; i < SETS; ++i) {
    eps[i] = epoll_create1(EPOLL_CLOEXEC);
    if (eps[i] < 0) {
      printf("epoll_create1 #%d: %s\n", i, strerror(errno));
      break;
    }
    made++;
  }
  printf("live sets: %d\n", made);

  /* One pipe in SHARED sets, each waited on (briefly) after its add. */
  int q[2];
  if (pipe(q) != 0) return 1;
  int added = 0, err = 0;
  for (int i = 0; i < SHARED && i < made; ++i) {
    struct epoll_event f = {.events = EPOLLIN | (i % 2 ? EPOLLET : 0), .data.u64 = (unsigned)i};
    if (epoll_ctl(eps[i], EPOLL_CTL_ADD, q[0], &f) == 0)
      added++;
    else
      err = errno;
    struct epoll_event out;
    epoll_wait(eps[i], &out, 1, 1);
  }
  (void)!write(q[1], "y", 1);
  int reported = 0;
  for (int i = 0; i < SHARED && i < made; ++i) {
    struct epoll_event out;
    if (epoll_wait(eps[i], &out, 1, 200) == 1 && out.data.u64 == (unsigned)i) reported++;
  }
  printf("one pipe in %d sets: added=%d%s%s reported=%d\n", SHARED, added, err ? " " : "",
         err ? strerror(err) : "", reported);
  return 0;
}
