/* A thread asleep in epoll_wait while another thread forks: the set is
 * handed to the kernel under it, and a write after the fork still wakes it
 * (at once, not at its 5 s timeout). The main thread forks once the waiter
 * is asleep in a system call (read from /proc, within a bound). */
#define _GNU_SOURCE
#include <sys/wait.h>
#include <unistd.h>

#include "sleeping.h"

int main(void) {
  struct pipe_waiter w = {0};
  if (pipe_waiter_start(&w) != 0) return 1;
  pid_t pid = fork();
  if (pid == 0) _exit(0);
  waitpid(pid, NULL, 0);
  (void)!write(w.p[1], "x", 1);
  pthread_join(w.th, NULL);
  return 0;
}
