/* An epoll fd closed with the raw system call (as libuv closes its loop),
 * its number then reused: (1) by a new set, which must start empty and
 * work; (2) by a pipe, which must be usable as an ordinary target; (3)
 * not reused, or reused by a pipe: epoll_ctl on it fails as the kernel's
 * (a MOD of an entry the old set held is the documented exception). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

static void by_a_new_set(void) {
  int p[2];
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 1};
  if (pipe(p) != 0) return;
  int ep = epoll_create1(EPOLL_CLOEXEC);
  printf("set: add=%d\n", epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev));
  syscall(SYS_close, ep);
  int ep2 = epoll_create1(EPOLL_CLOEXEC);
  printf("set: same number=%d\n", ep2 == ep);
  printf("set: wait on the new set before any add=%d\n", epoll_wait(ep2, &ev, 1, 0));
  ev.data.u64 = 2;
  printf("set: add to the new set=%d\n", epoll_ctl(ep2, EPOLL_CTL_ADD, p[0], &ev));
  (void)!write(p[1], "x", 1);
  int n = epoll_wait(ep2, &ev, 1, 2000);
  printf("set: wait=%d data=%llu\n", n, n == 1 ? (unsigned long long)ev.data.u64 : 0ULL);
  printf("set: close=%d\n", close(ep2));
  close(p[0]);
  close(p[1]);
}

static void by_a_pipe(void) {
  int ep = epoll_create1(EPOLL_CLOEXEC), p[2];
  syscall(SYS_close, ep);
  if (pipe(p) != 0) return;
  int ep2 = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 3};
  printf("pipe: took the number=%d\n", p[0] == ep);
  printf("pipe: add=%d\n", epoll_ctl(ep2, EPOLL_CTL_ADD, p[0], &ev));
  struct epoll_event out;
  printf("pipe: wait on the pipe's number=%d\n", epoll_wait(p[0], &out, 1, 0));
  (void)!write(p[1], "x", 1);
  int n = epoll_wait(ep2, &out, 1, 2000);
  printf("pipe: wait=%d data=%llu\n", n, n == 1 ? (unsigned long long)out.data.u64 : 0ULL);
  close(ep2);
  close(p[0]);
  close(p[1]);
}

static const char* outcome(int rc) {
  return rc == 0 ? "ok" : strerror(errno);
}

static void ctl_on_the_number(void) {
  int p[2], q[2];
  if (pipe(p) != 0 || pipe(q) != 0) return;
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 4};
  int ep = epoll_create1(EPOLL_CLOEXEC);
  epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev);
  syscall(SYS_close, ep);
  printf("closed: del=%s\n", outcome(epoll_ctl(ep, EPOLL_CTL_DEL, p[0], NULL)));
  printf("closed: add=%s\n", outcome(epoll_ctl(ep, EPOLL_CTL_ADD, q[0], &ev)));
  printf("closed: mod of a file it never held=%s\n",
         outcome(epoll_ctl(ep, EPOLL_CTL_MOD, q[0], &ev)));
  int r[2];
  if (pipe(r) != 0) return;
  printf("reused: by the pipe=%d\n", r[0] == ep || r[1] == ep);
  printf("reused: del=%s\n", outcome(epoll_ctl(ep, EPOLL_CTL_DEL, p[0], NULL)));
  printf("reused: add=%s\n", outcome(epoll_ctl(ep, EPOLL_CTL_ADD, q[0], &ev)));
  close(r[0]);
  close(r[1]);
  close(p[0]);
  close(p[1]);
  close(q[0]);
  close(q[1]);
}

int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  by_a_new_set();
  by_a_pipe();
  ctl_on_the_number();
  return 0;
}
