/* Sets nested through epoll fds ueq did not make: a set made before
 * fork() (handed to the kernel then) holding a set made after it, added to
 * a third set; and a raw kernel set (made with the system call) added to a
 * set, then holding a set made later. Neither makes a cycle, so Linux
 * accepts every ADD, and a write reaches the outermost set. */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
  int p[2], q[2];
  if (pipe(p) != 0 || pipe(q) != 0) return 1;
  int old = epoll_create1(0); /* made before fork() */
  pid_t pid = fork();
  if (pid == 0) _exit(0);
  waitpid(pid, NULL, 0);
  int a = epoll_create1(0), b = epoll_create1(0); /* made after fork() */
  struct epoll_event x = {.events = EPOLLIN, .data.u64 = 1}, out[4];
  printf("a <- pipe: %d\n", epoll_ctl(a, EPOLL_CTL_ADD, p[0], &x));
  printf("old <- a: %d\n", epoll_ctl(old, EPOLL_CTL_ADD, a, &x));
  printf("b <- old: %d\n", epoll_ctl(b, EPOLL_CTL_ADD, old, &x));
  (void)!write(p[1], "x", 1);
  printf("wait b: %d\n", epoll_wait(b, out, 4, 2000));

  int raw = (int)syscall(SYS_epoll_create1, 0); /* not made through epoll_create1() */
  int c = epoll_create1(0);
  printf("c <- raw: %d\n", epoll_ctl(c, EPOLL_CTL_ADD, raw, &x));
  int d = epoll_create1(0);
  printf("d <- pipe: %d\n", epoll_ctl(d, EPOLL_CTL_ADD, q[0], &x));
  printf("raw <- d: %d\n", epoll_ctl(raw, EPOLL_CTL_ADD, d, &x));
  (void)!write(q[1], "x", 1);
  printf("wait c: %d\n", epoll_wait(c, out, 4, 2000));
  return 0;
}
