/* An exec from a signal handler (execve is async-signal-safe) that
 * interrupted malloc, in a program whose sets all have EPOLL_CLOEXEC while
 * another thread keeps changing them (each change takes ueq's registry
 * lock and allocates under it). No set can be inherited, so the exec must
 * not wait for that lock: the other thread may hold it while it waits for
 * the allocator's lock, which the handler's thread holds. Run with one
 * arena and no thread cache (tests/meson.build), so that every allocation
 * takes the one lock. */
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

static char g_self[64];
static int g_ep;

static void on_alarm(int sig) {
  (void)sig;
  char* args[] = {"exec_from_signal", "child", NULL};
  execve(g_self, args, environ);
  _exit(127);
}

/* Adds and removes entries without pause (the signal is for the main
 * thread alone). */
static void* churn(void* arg) {
  (void)arg;
  sigset_t alarm;
  sigemptyset(&alarm);
  sigaddset(&alarm, SIGALRM);
  pthread_sigmask(SIG_BLOCK, &alarm, NULL);
  int p[64][2];
  for (int i = 0; i < 64; ++i)
    if (pipe(p[i])) return NULL;
  for (unsigned long i = 0;; ++i) {
    struct epoll_event e = {.events = EPOLLIN, .data.u64 = i};
    (void)epoll_ctl(g_ep, EPOLL_CTL_ADD, p[i % 64][0], &e);
    if (i % 3 == 0) (void)epoll_ctl(g_ep, EPOLL_CTL_DEL, p[(i + 32) % 64][0], NULL);
  }
  return NULL;
}

int main(int argc, char** argv) {
  setvbuf(stdout, NULL, _IONBF, 0);
  if (argc == 2 && strcmp(argv[1], "child") == 0) {
    printf("exec'd from the handler\n");
    return 0;
  }
  g_ep = epoll_create1(EPOLL_CLOEXEC);
  snprintf(g_self, sizeof g_self, "/proc/%d/exe", (int)getpid());
  pthread_t t;
  if (pthread_create(&t, NULL, churn, NULL)) return 1;
  signal(SIGALRM, on_alarm);
  struct itimerval when = {.it_value = {0, 2000 + (getpid() % 50) * 97}};
  setitimer(ITIMER_REAL, &when, NULL);
  void* v[64] = {0};
  for (unsigned long i = 0;; ++i) {
    free(v[i % 64]);
    v[i % 64] = malloc(16 + (i * 7919) % 4000);
  }
}
