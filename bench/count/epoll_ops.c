/* epoll-ops MODE N: N operations of one kind on a set made through the
 * epoll facade, for counting instructions and system calls per operation
 * (tools/count.sh runs it at two N and divides the difference, so set-up
 * and exit cancel out). Built twice: linked against the preload library
 * (the way programs meet the facade) and statically.
 *   MODE 0  EPOLL_CTL_MOD of a held eventfd, alternating the mask and data
 *   MODE 1  epoll_wait with timeout 0 and nothing ready
 * Exit 0 when every call gave the expected result. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>

#include "ueq/epoll.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: epoll-ops MODE N\n");
    return 2;
  }
  const int mode = atoi(argv[1]), n = atoi(argv[2]);
  const int ep = ueq_epoll_create1(0);
  const int e = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 1};
  if (ep < 0 || e < 0 || ueq_epoll_ctl(ep, EPOLL_CTL_ADD, e, &ev) != 0) return 1;
  struct epoll_event out[4];
  for (int i = 0; i < n; ++i) {
    if (mode == 0) {
      ev.events = (i & 1) ? EPOLLIN : (EPOLLIN | EPOLLOUT);
      ev.data.u64 = (unsigned)i;
      if (ueq_epoll_ctl(ep, EPOLL_CTL_MOD, e, &ev) != 0) return 1;
    } else if (ueq_epoll_wait(ep, out, 4, 0) != 0) {
      return 1;
    }
  }
  return 0;
}
