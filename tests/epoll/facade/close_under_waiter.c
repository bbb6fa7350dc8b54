/* An epoll fd closed while another thread sleeps in epoll_wait on it: the
 * waiter's call holds the set, so a write to a registered pipe still wakes
 * it with the event (at once, not at its 5 s timeout). The number is free
 * after the close: a new set takes it and is empty, and the closed set's
 * event does not leak into it. The main thread closes once the waiter is
 * asleep in a system call (read from /proc, within a bound). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int ep, p[2];
static atomic_int tid;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void* waiter(void* arg) {
  (void)arg;
  tid = (int)syscall(SYS_gettid);
  struct epoll_event out[4];
  double t0 = now();
  int n = epoll_wait(ep, out, 4, 5000);
  printf("waiter: wait=%d data=%llu returned before its timeout=%d\n", n,
         n == 1 ? (unsigned long long)out[0].data.u64 : 0ULL, now() - t0 < 4);
  return NULL;
}

/* Whether thread t of this process is asleep in a system call. */
static int asleep(int t) {
  char path[64], state = 0;
  snprintf(path, sizeof path, "/proc/self/task/%d/stat", t);
  FILE* f = fopen(path, "r");
  if (!f) return 0;
  if (fscanf(f, "%*d (%*[^)]) %c", &state) != 1) state = 0;
  fclose(f);
  return state == 'S';
}

int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  ep = epoll_create1(0);
  if (pipe(p) != 0) return 1;
  struct epoll_event e = {.events = EPOLLIN, .data.u64 = 5};
  epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &e);
  pthread_t th;
  pthread_create(&th, NULL, waiter, NULL);
  double t0 = now();
  while (now() - t0 < 2 && !(tid && asleep(tid))) {
    struct timespec ms = {0, 1000000};
    nanosleep(&ms, NULL); /* polling the waiter's state; bounded */
  }
  const int old = ep;
  printf("close=%d\n", close(old));
  int again = epoll_create1(0);
  printf("new set takes the number=%d\n", again == old);
  (void)!write(p[1], "x", 1);
  pthread_join(th, NULL);
  struct epoll_event out[4];
  printf("new set: wait=%d\n", epoll_wait(again, out, 4, 0));
  printf("ctl on the new set of the pipe=%d\n", epoll_ctl(again, EPOLL_CTL_ADD, p[0], &e));
  printf("new set: wait=%d\n", epoll_wait(again, out, 4, 0));
  return 0;
}
