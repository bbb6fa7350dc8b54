/* Helpers of the facade programs that must act only once a thread sleeps
 * in a system call (read from /proc, within a bound: no sleep stands in for
 * a synchronisation), and a waiter thread asleep in epoll_wait. */
#ifndef UEQ_TESTS_FACADE_SLEEPING_H
#define UEQ_TESTS_FACADE_SLEEPING_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static inline double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Whether thread t of this process is asleep in a system call. */
static inline int asleep(int t) {
  char path[64], state = 0;
  snprintf(path, sizeof path, "/proc/self/task/%d/stat", t);
  FILE* f = fopen(path, "r");
  if (!f) return 0;
  if (fscanf(f, "%*d (%*[^)]) %c", &state) != 1) state = 0;
  fclose(f);
  return state == 'S';
}

/* Waits (at most 2 s) until thread t, once known (t != 0), is asleep. */
static inline void wait_asleep(atomic_int* t) {
  double t0 = now();
  while (now() - t0 < 2 && !(atomic_load(t) && asleep(atomic_load(t)))) {
    struct timespec ms = {0, 1000000};
    nanosleep(&ms, NULL); /* polling the thread's state; bounded */
  }
}

/* A thread asleep in epoll_wait on a set with a pipe registered (data 5),
 * for 5 s at most: it prints what its wait returned and whether that came
 * before the timeout. Started with the pipe and the set made, and returned
 * to once the thread is asleep. */
struct pipe_waiter {
  int ep, p[2];
  atomic_int tid;
  pthread_t th;
};

static inline void* pipe_waiter_run(void* arg) {
  struct pipe_waiter* w = arg;
  w->tid = (int)syscall(SYS_gettid);
  struct epoll_event out[4];
  double t0 = now();
  int n = epoll_wait(w->ep, out, 4, 5000);
  printf("waiter: wait=%d data=%llu returned before its timeout=%d\n", n,
         n == 1 ? (unsigned long long)out[0].data.u64 : 0ULL, now() - t0 < 4);
  return NULL;
}

static inline int pipe_waiter_start(struct pipe_waiter* w) {
  setvbuf(stdout, NULL, _IONBF, 0);
  w->ep = epoll_create1(0);
  if (w->ep < 0 || pipe(w->p) != 0) return -1;
  struct epoll_event e = {.events = EPOLLIN, .data.u64 = 5};
  epoll_ctl(w->ep, EPOLL_CTL_ADD, w->p[0], &e);
  if (pthread_create(&w->th, NULL, pipe_waiter_run, w) != 0) return -1;
  wait_asleep(&w->tid);
  return 0;
}

#endif
