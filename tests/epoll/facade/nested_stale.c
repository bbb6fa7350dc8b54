/* A level-triggered outer set over an inner set whose entries stop being
 * ready without a wait on the inner: its pipe drained, its only entry
 * deleted, or its entry's mask changed to one the file does not meet. Linux
 * re-checks the inner set's items each time the outer probes it, so the
 * outer stops reporting it at once, and reports it again on new data. */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/epoll.h>
#include <unistd.h>

static int outer_waits(int outer) {
  struct epoll_event o[4];
  int ready = 0;
  for (int i = 0; i < 5; i++)
    ready += epoll_wait(outer, o, 4, 20) > 0;
  return ready;
}

/* how: 0 drains the pipe, 1 deletes the entry, 2 MODs it to EPOLLOUT only. */
static void run(int how) {
  static const char* const names[] = {"drained", "deleted", "mod to EPOLLOUT"};
  int outer = epoll_create1(EPOLL_CLOEXEC), inner = epoll_create1(EPOLL_CLOEXEC), p[2];
  if (pipe(p) != 0) return;
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 1};
  epoll_ctl(inner, EPOLL_CTL_ADD, p[0], &ev);
  ev.data.u64 = 2;
  epoll_ctl(outer, EPOLL_CTL_ADD, inner, &ev);
  char c = 'x';
  (void)write(p[1], &c, 1);
  printf("%s: with data %d of 5", names[how], outer_waits(outer));
  if (how == 0) {
    (void)read(p[0], &c, 1);
  } else if (how == 1) {
    epoll_ctl(inner, EPOLL_CTL_DEL, p[0], NULL);
  } else {
    ev.events = EPOLLOUT;
    ev.data.u64 = 1;
    epoll_ctl(inner, EPOLL_CTL_MOD, p[0], &ev);
  }
  printf(", after %d of 5", outer_waits(outer));
  if (how == 0) {
    (void)write(p[1], &c, 1);
    printf(", new data %d of 5", outer_waits(outer));
  }
  printf("\n");
  close(p[0]);
  close(p[1]);
  close(inner);
  close(outer);
}

int main(void) {
  alarm(20);
  for (int how = 0; how < 3; how++)
    run(how);
  return 0;
}
