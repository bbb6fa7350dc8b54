/* epoll_c_api: the prefixed epoll API from C. A pipe is watched
 * edge-triggered; a write makes it readable; the epoll fd itself is
 * pollable. Build: cc epoll_c_api.c $(pkg-config --cflags --libs ueq) */
#include <poll.h>
#include <stdio.h>
#include <unistd.h>

#include "ueq/epoll.h"

int main(void) {
  int p[2];
  if (pipe(p) != 0) return 1;
  int ep = ueq_epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) {
    perror("ueq_epoll_create1");
    return 1;
  }
  struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.fd = p[0]};
  if (ueq_epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev) != 0) {
    perror("ueq_epoll_ctl");
    return 1;
  }
  if (write(p[1], "hi", 2) != 2) return 1;
  struct pollfd pf = {.fd = ep, .events = POLLIN};
  int ready = poll(&pf, 1, 1000);
  printf("poll on the epoll fd: %d (revents %#x)\n", ready, pf.revents);
  struct epoll_event out[4];
  int n = ueq_epoll_wait(ep, out, 4, 1000);
  printf("ueq_epoll_wait: %d event(s), fd %d, events %#x\n", n, n > 0 ? out[0].data.fd : -1,
         n > 0 ? out[0].events : 0);
  printf("again (edge-triggered, nothing new): %d\n", ueq_epoll_wait(ep, out, 4, 0));
  printf("errors are Linux's: ctl on fd == epfd -> %d\n",
         ueq_epoll_ctl(ep, EPOLL_CTL_ADD, ep, &ev));
  perror("  errno");
  ueq_close(p[0]);
  close(p[1]);
  ueq_close(ep);
  return 0;
}
