/* ctl from one thread while another forks: every ADD and DEL of a pipe on
 * a set succeeds, whether the set is handed to the kernel before, during
 * or after the call. 100 forks, each after the churning thread has made
 * progress (a counter, waited for within a bound). */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int p[2];
static atomic_int ep = -1, stop, bad, rounds;

static void* churn(void* arg) {
  (void)arg;
  while (!stop) {
    int e = ep;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 1};
    if (epoll_ctl(e, EPOLL_CTL_ADD, p[0], &ev) != 0) bad++;
    if (epoll_ctl(e, EPOLL_CTL_DEL, p[0], NULL) != 0) bad++;
    rounds++;
  }
  return NULL;
}

/* Waits (within 2 s) until the churning thread has made `more` rounds. */
static void progress(int more) {
  int want = rounds + more;
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  do {
    if (rounds >= want) return;
    sched_yield();
    clock_gettime(CLOCK_MONOTONIC, &t);
  } while (t.tv_sec - t0.tv_sec < 2);
}

int main(void) {
  if (pipe(p) != 0) return 1;
  ep = epoll_create1(0);
  pthread_t th;
  pthread_create(&th, NULL, churn, NULL);
  for (int i = 0; i < 100; ++i) {
    progress(3);
    pid_t pid = fork();
    if (pid == 0) _exit(0);
    waitpid(pid, NULL, 0);
    progress(3);
    int old = ep;
    ep = epoll_create1(0); /* a fresh set for the next fork */
    progress(3);
    close(old);
  }
  stop = 1;
  pthread_join(th, NULL);
  printf("ctl calls that failed: %d\n", bad);
  return 0;
}
