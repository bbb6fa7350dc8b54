/* vfork() then daemon(): daemon forks through the C library's own fork,
 * not the interposed one, and the daemon must use its sets as any
 * process (not as a vfork() child, whose calls would bypass ueq), also
 * after the usual sweep that closes every descriptor above 2. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

static int g_ep, g_p[2];

/* Another thread makes the set and its entry; the main thread (the one
 * that called vfork) waits on it. */
static void* make_set(void* arg) {
  (void)arg;
  if (pipe(g_p)) return NULL;
  (void)!write(g_p[1], "x", 1);
  g_ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event e = {.events = EPOLLIN, .data.u64 = 42};
  (void)epoll_ctl(g_ep, EPOLL_CTL_ADD, g_p[0], &e);
  return NULL;
}

static void use_a_set(const char* when) {
  pthread_t t;
  if (pthread_create(&t, NULL, make_set, NULL) || pthread_join(t, NULL)) return;
  int ep = g_ep, p[2] = {g_p[0], g_p[1]};
  struct epoll_event e = {.events = EPOLLIN, .data.u64 = 43};
  int q[2];
  if (pipe(q)) return;
  (void)!write(q[1], "x", 1);
  int r = epoll_ctl(ep, EPOLL_CTL_ADD, q[0], &e);
  struct epoll_event got[4];
  int n = epoll_wait(ep, got, 4, 1000);
  unsigned long long sum = 0;
  for (int i = 0; i < n; ++i)
    sum += got[i].data.u64;
  printf("daemon, %s: ctl %d, wait %d sum=%llu\n", when, r, n, sum);
  close(ep);
  close(p[0]);
  close(p[1]);
  close(q[0]);
  close(q[1]);
}

int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  /* The test runs in a child, so that this process can wait for the
   * daemon (which holds `done` open until it exits) before it exits. */
  int done[2];
  if (pipe(done)) return 1;
  pid_t test = fork();
  if (test < 0) return 1;
  if (test > 0) {
    close(done[1]);
    char c;
    while (read(done[0], &c, 1) > 0) {
    }
    int st;
    waitpid(test, &st, 0);
    return 0;
  }
  close(done[0]);
  char* args[] = {"true", NULL};
  pid_t pid = vfork();
  if (pid == 0) {
    execvp(args[0], args);
    _exit(127);
  }
  int st;
  waitpid(pid, &st, 0);
  if (daemon(1, 1) != 0) _exit(1);
  use_a_set("first");
  for (int fd = 3; fd < 1024; ++fd)
    if (fd != done[1]) close(fd);
  use_a_set("after the sweep");
  _exit(0);
}
