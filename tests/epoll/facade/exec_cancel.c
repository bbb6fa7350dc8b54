/* A thread with a cancel pending (deferred) starts a program while a set
 * without EPOLL_CLOEXEC exists, so ueq hands the set to the kernel first:
 * the cancel must not act inside ueq (its frames are noexcept), only where
 * the C library's call is a cancellation point (system's wait) or at the
 * thread's next one. usage: exec_cancel exec|spawn|system */
#define _GNU_SOURCE
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;
static const char* g_how;

static void* run(void* arg) {
  (void)arg;
  pthread_cancel(pthread_self());
  char* args[] = {"echo", "the new program ran", NULL};
  if (strcmp(g_how, "exec") == 0) {
    execvp(args[0], args);
  } else if (strcmp(g_how, "spawn") == 0) {
    /* Quiet: the cancel acts at the wait, in a race with its output. */
    char* quiet[] = {"true", NULL};
    pid_t pid;
    if (posix_spawnp(&pid, quiet[0], NULL, NULL, quiet, environ) == 0) waitpid(pid, NULL, 0);
  } else {
    (void)!system("true"); /* its wait acts on the cancel (and kills it) */
  }
  pthread_testcancel();
  return NULL;
}

int main(int argc, char** argv) {
  setvbuf(stdout, NULL, _IONBF, 0);
  if (argc != 2) return 2;
  g_how = argv[1];
  int p[2];
  if (pipe(p)) return 1;
  int ep = epoll_create1(0);
  struct epoll_event e = {.events = EPOLLIN, .data.u64 = 1};
  epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &e);
  pthread_t t;
  void* result;
  if (pthread_create(&t, NULL, run, NULL) || pthread_join(t, &result)) return 1;
  printf("joined: %s\n", result == PTHREAD_CANCELED ? "cancelled" : "returned");
  return 0;
}
