/* A set closed behind ueq's back (a raw close system call) whose number a
 * raw epoll fd (made by system call) then takes, before an exec: the new
 * program inherits the raw set, empty; the closed set's entries must not
 * land in it. With "dup": the set lives on under a dup made before the
 * close, and the new program finds its entry there. usage:
 * exec_stale_number [dup] */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char** argv) {
  setvbuf(stdout, NULL, _IONBF, 0);
  if (argc == 3 && strcmp(argv[1], "child") == 0) {
    struct epoll_event e;
    int n = epoll_wait(atoi(argv[2]), &e, 1, 200);
    printf("exec'd: wait=%d data=%llu\n", n, n == 1 ? (unsigned long long)e.data.u64 : 0ULL);
    return 0;
  }
  int p[2];
  if (pipe(p)) return 1;
  (void)!write(p[1], "x", 1);
  int ep = epoll_create1(0);
  struct epoll_event e = {.events = EPOLLIN, .data.u64 = 7};
  epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &e);
  const int copy = argc == 2 && strcmp(argv[1], "dup") == 0 ? dup(ep) : -1;
  syscall(SYS_close, ep);
  int raw = (int)syscall(SYS_epoll_create1, 0);
  printf("same number: %d\n", raw == ep);
  char s_ep[16], self[64];
  snprintf(s_ep, sizeof s_ep, "%d", copy >= 0 ? copy : raw);
  snprintf(self, sizeof self, "/proc/%d/exe", (int)getpid());
  char* args[] = {argv[0], "child", s_ep, NULL};
  execv(self, args);
  return 127;
}
