/* A thread with a cancel pending (deferred) makes one facade call that is
 * not a cancellation point (epoll_ctl, epoll_create1, dup, dup2, fcntl,
 * fork) or one that is (close): the cancel acts where the C library's call
 * would act, never inside ueq (whose frames are noexcept), and the sets
 * stay as the call left them. usage: call_cancel MODE */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

static const char* g_how;
static int g_ep, g_p[2], g_q[2];
static volatile int g_reached;
static pid_t g_child = -1;

static void* run(void* arg) {
  (void)arg;
  struct epoll_event e = {.events = EPOLLIN, .data.u64 = 7};
  pthread_cancel(pthread_self());
  int r = 0;
  if (strcmp(g_how, "ctl_add") == 0)
    r = epoll_ctl(g_ep, EPOLL_CTL_ADD, g_q[0], &e);
  else if (strcmp(g_how, "ctl_mod") == 0)
    r = epoll_ctl(g_ep, EPOLL_CTL_MOD, g_p[0], &e);
  else if (strcmp(g_how, "ctl_del") == 0)
    r = epoll_ctl(g_ep, EPOLL_CTL_DEL, g_p[0], NULL);
  else if (strcmp(g_how, "create") == 0)
    r = epoll_create1(EPOLL_CLOEXEC) < 0;
  else if (strcmp(g_how, "dup") == 0)
    r = dup(g_ep) < 0;
  else if (strcmp(g_how, "dup2") == 0)
    r = dup2(g_q[0], g_ep) < 0;
  else if (strcmp(g_how, "fcntl") == 0)
    r = fcntl(g_ep, F_DUPFD_CLOEXEC, 100) < 0;
  else if (strcmp(g_how, "close_set") == 0)
    r = close(g_ep);
  else if (strcmp(g_how, "close_fd") == 0)
    r = close(g_p[0]);
  else if (strcmp(g_how, "fork") == 0) {
    g_child = fork();
    if (g_child == 0) {
      struct epoll_event out;
      _exit(epoll_wait(g_ep, &out, 1, 0) == 1 && out.data.u64 == 1 ? 0 : 3);
    }
    r = g_child < 0;
  }
  g_reached = 1;
  printf("call: %s\n", r == 0 ? "ok" : "failed");
  pthread_testcancel();
  return NULL;
}

int main(int argc, char** argv) {
  setvbuf(stdout, NULL, _IONBF, 0);
  if (argc != 2) return 2;
  g_how = argv[1];
  if (pipe(g_p) || pipe(g_q)) return 1;
  g_ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event e = {.events = EPOLLIN, .data.u64 = 1};
  if (epoll_ctl(g_ep, EPOLL_CTL_ADD, g_p[0], &e)) return 1;
  if (write(g_p[1], "x", 1) != 1 || write(g_q[1], "y", 1) != 1) return 1;
  pthread_t t;
  void* result;
  if (pthread_create(&t, NULL, run, NULL) || pthread_join(t, &result)) return 1;
  printf("joined: %s, call %s\n", result == PTHREAD_CANCELED ? "cancelled" : "returned",
         g_reached ? "returned" : "did not return");
  if (g_child > 0) {
    int st;
    waitpid(g_child, &st, 0);
    printf("child: %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
  }
  /* What the set reports now, and whether each number is open. */
  struct epoll_event out[4];
  int n = epoll_wait(g_ep, out, 4, 0);
  /* As a set: the order among ready files is not Linux's (docs/guide.md). */
  unsigned long long seen = 0;
  for (int i = 0; i < n; i++)
    seen |= 1ull << (out[i].data.u64 & 63);
  printf("wait: %d, data bits %#llx\n", n, seen);
  printf("open: ep=%d p0=%d\n", fcntl(g_ep, F_GETFD) >= 0, fcntl(g_p[0], F_GETFD) >= 0);
  return 0;
}
