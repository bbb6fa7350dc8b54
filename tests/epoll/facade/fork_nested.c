/* A set nested in another (each holding the next) is handed over at fork()
 * whole: after the fork, a write to the inner set's pipe makes the outer set
 * report the inner one. Both creation orders (the hand-over must not depend
 * on which set it takes first). */
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

static void run(int inner_first) {
  int outer, inner, p[2];
  if (inner_first) {
    inner = epoll_create1(EPOLL_CLOEXEC);
    outer = epoll_create1(EPOLL_CLOEXEC);
  } else {
    outer = epoll_create1(EPOLL_CLOEXEC);
    inner = epoll_create1(EPOLL_CLOEXEC);
  }
  if (pipe(p) != 0) return;
  struct epoll_event e = {.events = EPOLLIN, .data.u64 = 1};
  epoll_ctl(inner, EPOLL_CTL_ADD, p[0], &e);
  e.data.u64 = 2;
  epoll_ctl(outer, EPOLL_CTL_ADD, inner, &e);
  pid_t pid = fork();
  if (pid == 0) _exit(0);
  waitpid(pid, NULL, 0);
  (void)!write(p[1], "x", 1);
  struct epoll_event out[4];
  int n = epoll_wait(outer, out, 4, 2000);
  printf("inner made first=%d: outer reports %d%s\n", inner_first, n,
         n == 1 && out[0].data.u64 == 2 ? " (the inner set)" : "");
  n = epoll_wait(inner, out, 4, 0);
  printf("inner made first=%d: inner reports %d%s\n", inner_first, n,
         n == 1 && out[0].data.u64 == 1 ? " (the pipe)" : "");
  close(p[0]);
  close(p[1]);
  close(outer);
  close(inner);
}

int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  for (int round = 0; round < 8; ++round) {
    run(0);
    run(1);
  }
  return 0;
}
