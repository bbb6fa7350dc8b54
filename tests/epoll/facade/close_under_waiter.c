/* An epoll fd closed while another thread sleeps in epoll_wait on it: the
 * waiter's call holds the set, so a write to a registered pipe still wakes
 * it with the event (at once, not at its 5 s timeout). The number is free
 * after the close: a new set takes it and is empty, and the closed set's
 * event does not leak into it. The main thread closes once the waiter is
 * asleep in a system call (read from /proc, within a bound). */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "sleeping.h"

int main(void) {
  struct pipe_waiter w = {0};
  if (pipe_waiter_start(&w) != 0) return 1;
  const int old = w.ep;
  printf("close=%d\n", close(old));
  int again = epoll_create1(0);
  printf("new set takes the number=%d\n", again == old);
  (void)!write(w.p[1], "x", 1);
  pthread_join(w.th, NULL);
  struct epoll_event out[4], e = {.events = EPOLLIN, .data.u64 = 5};
  printf("new set: wait=%d\n", epoll_wait(again, out, 4, 0));
  printf("ctl on the new set of the pipe=%d\n", epoll_ctl(again, EPOLL_CTL_ADD, w.p[0], &e));
  printf("new set: wait=%d\n", epoll_wait(again, out, 4, 0));
  return 0;
}
