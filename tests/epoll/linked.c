/* A program linked against libueq-epoll-preload.so (not preloaded): its
 * epoll_create1, epoll_ctl, epoll_wait and close are ueq's. Exit 0 when a
 * set it makes is one of ueq's (ueq_epoll_wait accepts it) and reports a
 * pipe's data through both names; a code naming the failed step otherwise.
 * The first call is a ueq_* one: ueq's own calls to the kernel's epoll
 * (making its host poller) must not route back into the facade. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "ueq/epoll.h"

/* Whether the kernel's epoll behind fd `ep` holds fd `fd` itself
 * (/proc/self/fdinfo lists a kernel set's entries as "tfd: N"). A set of
 * ueq's holds only its hidden eventfd; a set passed to the kernel holds the
 * program's fds. */
static int kernel_holds(int ep, int fd) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/self/fdinfo/%d", ep);
  FILE* f = fopen(path, "r");
  if (!f) return -1;
  int found = 0, tfd;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "tfd: %d", &tfd) == 1 && tfd == fd) found = 1;
  fclose(f);
  return found;
}

/* The prefixed API first, in a process where ueq has not started yet. */
static int prefixed_first(void) {
  const int ep = ueq_epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) return 1;
  int p[2];
  if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0) return 2;
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 3};
  if (ueq_epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev) != 0) return 3;
  if (kernel_holds(ep, p[0]) != 0) return 7; /* the set is ueq's, not the kernel's */
  if (write(p[1], "x", 1) != 1) return 4;
  struct epoll_event out[2];
  if (ueq_epoll_wait(ep, out, 2, 5000) != 1 || out[0].data.u64 != 3) return 5;
  if (ueq_close(p[0]) != 0 || ueq_close(p[1]) != 0 || ueq_close(ep) != 0) return 6;
  return 0;
}

int main(void) {
  const int first = prefixed_first();
  if (first != 0) return first;
  const int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) return 10;
  int p[2];
  if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0) return 11;
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 7};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev) != 0) return 12;
  if (write(p[1], "x", 1) != 1) return 13;
  struct epoll_event out[2];
  if (epoll_wait(ep, out, 2, 5000) != 1 || out[0].data.u64 != 7) return 14;
  if (ueq_epoll_wait(ep, out, 2, 0) != 1 || out[0].data.u64 != 7) return 15;
  /* close() is ueq's too: the pipe leaves the set, which is then empty. */
  if (close(p[0]) != 0) return 16;
  if (epoll_wait(ep, out, 2, 0) != 0) return 17;
  if (close(p[1]) != 0 || close(ep) != 0) return 18;
  return 0;
}
