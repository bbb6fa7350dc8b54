/* ueq's own descriptors keep out of the program's numbers under a low soft
 * fd limit too (a daemon or a sandbox that lowers it at start): the set,
 * its pipe and the next files get the numbers they get natively. The
 * argument is the limit. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <unistd.h>

int main(int argc, char** argv) {
  alarm(20);
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = argc > 1 ? strtoul(argv[1], NULL, 10) : 256;
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0) return 1;
  int ep = epoll_create1(0), p[2], q[2];
  if (ep < 0 || pipe(p) != 0) return 1;
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 5}, out[4];
  int add = epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev);
  (void)!write(p[1], "x", 1);
  int n = epoll_wait(ep, out, 4, 2000);
  if (pipe(q) != 0) return 1;
  int ep2 = epoll_create1(0);
  printf("limit=%lu add=%d wait=%d data=%llu\n", (unsigned long)rl.rlim_cur, add, n,
         n == 1 ? (unsigned long long)out[0].data.u64 : 0ULL);
  printf("numbers: ep=%d pipe=%d,%d next pipe=%d,%d next set=%d\n", ep, p[0], p[1], q[0], q[1],
         ep2);
  return 0;
}
