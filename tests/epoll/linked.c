/* A program linked against libueq-epoll-preload.so (not preloaded): its
 * epoll_create1, epoll_ctl, epoll_wait and close are ueq's. Exit 0 when a
 * set it makes is one of ueq's (ueq_epoll_wait accepts it) and reports a
 * pipe's data through both names; a code naming the failed step otherwise. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "ueq/epoll.h"

int main(void) {
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
