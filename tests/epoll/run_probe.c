/* A program for ueq-run's own test (ueq_run.sh): with no argument it only
 * polls a pipe with poll(2); with "epoll" it makes one set and a known
 * sequence of calls: ADD, a wait that returns one event, MOD, DEL, and a
 * DEL that fails with ENOENT; with "fork" it does the same, then forks a
 * child that makes no epoll call and exits. It prints its pipe's fd numbers
 * (a library that took a low fd before main would shift them). */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char** argv) {
  int p[2];
  if (pipe(p) != 0 || write(p[1], "x", 1) != 1) return 10;
  printf("pipe %d %d\n", p[0], p[1]);
  const int forks = argc > 1 && strcmp(argv[1], "fork") == 0;
  if (argc > 1 && (strcmp(argv[1], "epoll") == 0 || forks)) {
    const int e = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 1};
    if (e < 0 || epoll_ctl(e, EPOLL_CTL_ADD, p[0], &ev) != 0) return 11;
    if (epoll_wait(e, &ev, 1, 1000) != 1) return 12;
    if (epoll_ctl(e, EPOLL_CTL_MOD, p[0], &ev) != 0) return 13;
    if (epoll_ctl(e, EPOLL_CTL_DEL, p[0], NULL) != 0) return 14;
    if (epoll_ctl(e, EPOLL_CTL_DEL, p[0], NULL) == 0) return 15;
    close(e);
    if (forks) {
      fflush(stdout);
      const pid_t pid = fork();
      if (pid == 0) exit(0);
      int status;
      if (pid < 0 || waitpid(pid, &status, 0) != pid || status != 0) return 17;
    }
  } else {
    struct pollfd f = {.fd = p[0], .events = POLLIN};
    if (poll(&f, 1, 1000) != 1) return 16;
  }
  puts("done");
  return 0;
}
