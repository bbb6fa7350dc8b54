/* A set without EPOLL_CLOEXEC, holding a ready pipe, inherited by a program
 * exec'd in a child: the new program waits on it and adds to it. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

static int after_exec(int ep) {
  struct epoll_event e;
  int q[2];
  int n = epoll_wait(ep, &e, 1, 2000);
  printf("exec'd: wait=%d%s%s data=%llu\n", n, n < 0 ? " " : "", n < 0 ? strerror(errno) : "",
         n == 1 ? (unsigned long long)e.data.u64 : 0ULL);
  if (pipe(q) != 0) return 1;
  struct epoll_event f = {.events = EPOLLIN, .data.u64 = 2};
  int r = epoll_ctl(ep, EPOLL_CTL_ADD, q[0], &f);
  printf("exec'd: add=%d%s%s\n", r, r ? " " : "", r ? strerror(errno) : "");
  return 0;
}

int main(int argc, char** argv) {
  setvbuf(stdout, NULL, _IONBF, 0);
  if (argc == 2) return after_exec(atoi(argv[1]));
  int p[2];
  if (pipe(p) != 0) return 1;
  int ep = epoll_create1(0);
  struct epoll_event e = {.events = EPOLLIN, .data.u64 = 1};
  epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &e);
  (void)!write(p[1], "x", 1);
  pid_t pid = fork();
  if (pid == 0) {
    char a[16];
    snprintf(a, sizeof a, "%d", ep);
    execl("/proc/self/exe", argv[0], a, (char*)0);
    _exit(127);
  }
  int st;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}
