/* An exec from a signal handler (execve is async-signal-safe) while the
 * interrupted thread may be inside malloc: the sets without EPOLL_CLOEXEC
 * reach the new program, and the exec never waits for the allocator's
 * lock (a hand-over that allocated would hang here). The handler runs on
 * the main thread, which does nothing but allocate and free; a second,
 * idle thread makes the allocator take its locks. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/time.h>
#include <unistd.h>

extern char** environ;

enum { kSets = 4 };
static char g_arg[kSets][16];
static char g_self[64];

static void on_alarm(int sig) {
  (void)sig;
  char* args[] = {"exec_from_signal", "child", g_arg[0], g_arg[1], g_arg[2], g_arg[3], NULL};
  execve(g_self, args, environ);
  _exit(127);
}

static void* idle(void* arg) {
  (void)arg;
  for (;;)
    pause();
  return NULL;
}

int main(int argc, char** argv) {
  setvbuf(stdout, NULL, _IONBF, 0);
  if (argc == 2 + kSets && strcmp(argv[1], "child") == 0) {
    for (int i = 0; i < kSets; ++i) {
      struct epoll_event e;
      int n = epoll_wait(atoi(argv[2 + i]), &e, 1, 2000);
      printf("exec'd: set %d: wait=%d data=%llu\n", i, n,
             n == 1 ? (unsigned long long)e.data.u64 : 0ULL);
    }
    return 0;
  }
  pthread_t t;
  if (pthread_create(&t, NULL, idle, NULL)) return 1;
  for (int i = 0; i < kSets; ++i) {
    int p[2];
    if (pipe(p)) return 1;
    (void)!write(p[1], "x", 1);
    int ep = epoll_create1(0);
    struct epoll_event e = {.events = EPOLLIN, .data.u64 = 10 + i};
    epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &e);
    snprintf(g_arg[i], sizeof g_arg[i], "%d", ep);
  }
  snprintf(g_self, sizeof g_self, "/proc/%d/exe", (int)getpid());
  signal(SIGALRM, on_alarm);
  struct itimerval when = {.it_value = {0, 2000 + (getpid() % 50) * 97}};
  setitimer(ITIMER_REAL, &when, NULL);
  /* Sizes from small to past the thread cache's, so that its bins run dry
   * and the arena's lock is taken, by this loop and by an allocation in
   * the handler alike. */
  void* v[64] = {0};
  for (unsigned long i = 0;; ++i) {
    free(v[i % 64]);
    v[i % 64] = malloc(16 + (i * 7919) % 4000);
  }
}
