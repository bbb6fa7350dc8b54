/* A set made before fork() is one object in both processes: the child waits
 * on it and adds to it; the parent then sees the child's entry. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
  int p[2], q[2];
  setvbuf(stdout, NULL, _IONBF, 0);
  if (pipe(p) != 0 || pipe(q) != 0) return 1;
  int ep = epoll_create1(0);
  struct epoll_event e = {.events = EPOLLIN, .data.u64 = 1};
  epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &e);
  (void)!write(p[1], "x", 1);
  pid_t pid = fork();
  if (pid == 0) {
    int n = epoll_wait(ep, &e, 1, 2000);
    printf("child: wait=%d%s%s data=%llu\n", n, n < 0 ? " " : "", n < 0 ? strerror(errno) : "",
           n == 1 ? (unsigned long long)e.data.u64 : 0ULL);
    struct epoll_event f = {.events = EPOLLIN, .data.u64 = 2};
    int r = epoll_ctl(ep, EPOLL_CTL_ADD, q[0], &f);
    printf("child: add=%d%s%s\n", r, r ? " " : "", r ? strerror(errno) : "");
    (void)!write(q[1], "y", 1);
    _exit(0);
  }
  waitpid(pid, NULL, 0);
  struct epoll_event out[4];
  int n = epoll_wait(ep, out, 4, 2000);
  unsigned long long sum = 0;
  for (int i = 0; i < n; i++)
    sum += out[i].data.u64;
  printf("parent: wait=%d data sum=%llu\n", n, sum);
  struct epoll_event f = {.events = EPOLLIN, .data.u64 = 2};
  int r = epoll_ctl(ep, EPOLL_CTL_ADD, q[0], &f);
  printf("parent: add of the child's fd=%d (%s)\n", r, r ? strerror(errno) : "ok");
  return 0;
}
