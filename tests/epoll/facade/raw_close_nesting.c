/* A set S holding a pipe, all closed with raw system calls; an eventfd takes
 * S's number and a new set T the pipe's. Nothing of S may remain: adding the
 * eventfd to T is a plain add (no ELOOP), and T reports it. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void) {
  struct epoll_event ev = {.events = EPOLLIN};
  int s = epoll_create1(EPOLL_CLOEXEC), p[2];
  if (pipe(p) != 0) return 1;
  epoll_ctl(s, EPOLL_CTL_ADD, p[0], &ev);
  syscall(SYS_close, s);
  syscall(SYS_close, p[0]);
  syscall(SYS_close, p[1]);
  int e = eventfd(1, EFD_CLOEXEC);
  int t = epoll_create1(EPOLL_CLOEXEC);
  printf("numbers reused=%d\n", e == s && t == p[0]);
  ev.data.u64 = 9;
  int r = epoll_ctl(t, EPOLL_CTL_ADD, e, &ev);
  printf("add=%d (%s)\n", r, r ? strerror(errno) : "ok");
  int n = epoll_wait(t, &ev, 1, 2000);
  printf("wait=%d data=%llu\n", n, n == 1 ? (unsigned long long)ev.data.u64 : 0ULL);
  return 0;
}
