/* A daemon's start-up idiom: close every descriptor from 3 up, by a loop
 * of close() over the whole fd limit, or by close_range(). ueq's own
 * descriptors (its host poller, eventfds) are no files of the program's:
 * both leave them open, and epoll works afterwards, in the process and in
 * a fork()ed child. Arguments: "loop" or "range". */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static void close_all(int range) {
  if (range) {
    printf("close_range=%d\n", close_range(3, ~0U, 0));
    return;
  }
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  int closed = 0;
  for (int fd = 3; fd < (int)rl.rlim_cur; fd++)
    closed += close(fd) == 0;
  printf("closed=%d\n", closed); /* the program's own: the set and the pipe */
}

/* A new set over a new pipe: the write is reported. */
static void use_epoll(const char* who) {
  int ep = epoll_create1(EPOLL_CLOEXEC), p[2];
  if (ep < 0 || pipe(p) != 0) {
    printf("%s: create failed\n", who);
    return;
  }
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 7};
  int add = epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev);
  (void)!write(p[1], "x", 1);
  int n = epoll_wait(ep, &ev, 1, 2000);
  printf("%s: add=%d wait=%d data=%llu\n", who, add, n,
         n == 1 ? (unsigned long long)ev.data.u64 : 0ULL);
  close(p[0]);
  close(p[1]);
  close(ep);
}

int main(int argc, char** argv) {
  alarm(20);
  const int range = argc > 1 && strcmp(argv[1], "range") == 0;
  use_epoll("before");
  int ep = epoll_create1(0), p[2];
  if (pipe(p) != 0) return 1;
  struct epoll_event ev = {.events = EPOLLIN};
  epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev);
  fflush(stdout);
  close_all(range);
  use_epoll("after");
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    close_all(range);
    use_epoll("child");
    fflush(stdout);
    _exit(0);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  printf("child exit=%d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
  return 0;
}
