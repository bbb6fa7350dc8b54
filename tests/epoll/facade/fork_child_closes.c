/* A child that closes every inherited fd (as a fork+exec helper does) must
 * not take the parent's registrations with it. With an argument, the parent
 * has waited on the set before the fork. */
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char** argv) {
  (void)argv;
  struct epoll_event e = {.events = EPOLLIN, .data.u64 = 1}, out[8];
  int ep = epoll_create1(0), p[2];
  if (pipe(p) != 0) return 1;
  epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &e);
  if (argc > 1) epoll_wait(ep, out, 8, 0);
  pid_t pid = fork();
  if (pid == 0) {
    for (int fd = 3; fd < 64; ++fd)
      close(fd);
    execlp("true", "true", (char*)0);
    _exit(127);
  }
  waitpid(pid, NULL, 0);
  int got = 0;
  for (int i = 0; i < 5; ++i) {
    (void)!write(p[1], "x", 1);
    if (epoll_wait(ep, out, 8, 2000) == 1) {
      char b[8];
      got++;
      (void)!read(p[0], b, sizeof b);
    }
  }
  printf("waited before fork=%d; events after the child closed its fds: %d/5\n", argc > 1, got);
  return 0;
}
