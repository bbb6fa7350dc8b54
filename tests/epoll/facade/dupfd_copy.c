/* A copy of a set made by fcntl(F_DUPFD) or fcntl(F_DUPFD_CLOEXEC) names
 * the same set, as a dup does: an ADD through the copy is seen by a wait
 * on the original (and refused again there with EEXIST), a DEL through it
 * removes the original's entry, and the copy outlives the original's
 * close. Built twice: calling fcntl and, with a 64-bit off_t, fcntl64. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

static unsigned long long drain(int ep, int* n) {
  struct epoll_event g[8];
  *n = epoll_wait(ep, g, 8, 200);
  unsigned long long sum = 0;
  for (int i = 0; i < *n; ++i)
    sum += g[i].data.u64;
  return sum;
}

static int run(int cmd, const char* name) {
  int p[2], q[2], n;
  if (pipe(p) || pipe(q)) return 1;
  int ep = epoll_create1(EPOLL_CLOEXEC);
  int copy = fcntl(ep, cmd, 100);
  printf("%s: copy>=100 %d, cloexec %d\n", name, copy >= 100,
         (fcntl(copy, F_GETFD) & FD_CLOEXEC) != 0);
  struct epoll_event e = {.events = EPOLLIN, .data.u64 = 1};
  int r = epoll_ctl(copy, EPOLL_CTL_ADD, p[0], &e);
  printf("add via copy: %d\n", r);
  e.data.u64 = 2;
  r = epoll_ctl(ep, EPOLL_CTL_ADD, q[0], &e);
  printf("add via original: %d\n", r);
  r = epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &e);
  printf("add again via original: %d %s\n", r, r ? strerror(errno) : "");
  (void)!write(p[1], "x", 1);
  (void)!write(q[1], "x", 1);
  unsigned long long s = drain(ep, &n);
  printf("wait original: %d sum=%llu\n", n, s);
  s = drain(copy, &n);
  printf("wait copy: %d sum=%llu\n", n, s);
  r = epoll_ctl(copy, EPOLL_CTL_DEL, q[0], NULL);
  printf("del via copy: %d %s\n", r, r ? strerror(errno) : "");
  s = drain(ep, &n);
  printf("wait original: %d sum=%llu\n", n, s);
  close(ep);
  s = drain(copy, &n);
  printf("wait copy, original closed: %d sum=%llu\n", n, s);
  e.data.u64 = 4;
  r = epoll_ctl(copy, EPOLL_CTL_MOD, p[0], &e);
  s = drain(copy, &n);
  printf("mod via copy: %d, wait: %d sum=%llu\n", r, n, s);
  close(copy);
  close(p[0]);
  close(p[1]);
  close(q[0]);
  close(q[1]);
  return 0;
}

int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  return run(F_DUPFD, "F_DUPFD") || run(F_DUPFD_CLOEXEC, "F_DUPFD_CLOEXEC");
}
