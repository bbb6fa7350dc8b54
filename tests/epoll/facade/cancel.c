/* epoll_wait, epoll_pwait and epoll_pwait2 are cancellation points: a
 * thread asleep in one (timeout -1) is cancelled by pthread_cancel, alone
 * or beside another waiter of the same set, with the deferred or the
 * asynchronous type (the join gets PTHREAD_CANCELED); a cancel pending when a wait
 * begins acts at once, even with a zero timeout; a thread with
 * cancellation disabled is not disturbed (it takes its event, then is
 * cancelled at a later wait once it enables it); a waiter kept busy by a
 * writer is cancelled wherever it is (awake inside the wait too: no
 * abort); and after fork() the child's forking thread, asleep in a wait,
 * is cancelled by a thread of the child. The main thread cancels once a
 * waiter is asleep in a system call (read from /proc, within a bound);
 * alarm() bounds the whole run. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sleeping.h"

static int ep, p[2];

struct waiter {
  int kind; /* 0 epoll_wait, 1 epoll_pwait, 2 epoll_pwait2, 3 disabled, 4 pending, 5 async */
  atomic_int tid;
  atomic_int got;
};

static void* run(void* arg) {
  struct waiter* w = arg;
  struct epoll_event out[4];
  w->tid = (int)syscall(SYS_gettid);
  if (w->kind == 3) {
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
    w->got = epoll_wait(ep, out, 4, -1);
    pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
    epoll_wait(ep, out, 4, -1); /* cancelled at once: the cancel is pending */
    return NULL;
  }
  if (w->kind == 4) {
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
    while (w->got == 0) { /* until main has cancelled us */
      struct timespec ms = {0, 1000000};
      nanosleep(&ms, NULL);
    }
    pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
    epoll_wait(ep, out, 4, 0); /* a zero timeout acts on it too */
    return NULL;
  }
  if (w->kind == 5) {
    pthread_setcanceltype(PTHREAD_CANCEL_ASYNCHRONOUS, NULL);
    epoll_wait(ep, out, 4, 3000);
    pthread_setcanceltype(PTHREAD_CANCEL_DEFERRED, NULL);
    return (void*)5;
  }
  if (w->kind == 0) epoll_wait(ep, out, 4, -1);
  if (w->kind == 1) epoll_pwait(ep, out, 4, -1, NULL);
  if (w->kind == 2) epoll_pwait2(ep, out, 4, NULL, NULL);
  return NULL;
}

static void cancel_one(int kind, const char* name) {
  struct waiter w = {.kind = kind};
  pthread_t th;
  void* res;
  pthread_create(&th, NULL, run, &w);
  wait_asleep(&w.tid);
  pthread_cancel(th);
  pthread_join(th, &res);
  printf("%s: cancelled=%d\n", name, res == PTHREAD_CANCELED);
}

/* A writer keeps an edge-triggered pipe busy; each busy waiter takes its
 * edges until it is cancelled. */
static int bp[2];
static atomic_int writing = 1;
static void* busy_writer(void* arg) {
  (void)arg;
  while (writing) {
    (void)!write(bp[1], "x", 1);
    struct timespec t = {0, 20000};
    nanosleep(&t, NULL);
  }
  return NULL;
}
static void* busy_waiter(void* arg) {
  int bep = *(int*)arg;
  struct epoll_event out[4];
  char buf[256];
  for (;;)
    if (epoll_wait(bep, out, 4, -1) > 0) {
      pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
      (void)!read(bp[0], buf, sizeof buf);
      pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
    }
  return NULL;
}

static pthread_t forker;
static void* child_canceller(void* arg) {
  wait_asleep(arg);
  pthread_cancel(forker);
  return NULL;
}

int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  alarm(20);
  ep = epoll_create1(0);
  if (pipe(p) != 0) return 1;
  struct epoll_event e = {.events = EPOLLIN, .data.u64 = 5};
  epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &e);
  cancel_one(5, "asynchronous type"); /* first: the waiter leads the host poll */
  cancel_one(0, "epoll_wait");
  cancel_one(1, "epoll_pwait");
  cancel_one(2, "epoll_pwait2");

  /* Two waiters on one set, both cancelled. */
  struct waiter a = {.kind = 0}, b = {.kind = 0};
  pthread_t ta, tb;
  void *ra, *rb;
  pthread_create(&ta, NULL, run, &a);
  pthread_create(&tb, NULL, run, &b);
  wait_asleep(&a.tid);
  wait_asleep(&b.tid);
  pthread_cancel(ta);
  pthread_cancel(tb);
  pthread_join(ta, &ra);
  pthread_join(tb, &rb);
  printf("two waiters: cancelled=%d,%d\n", ra == PTHREAD_CANCELED, rb == PTHREAD_CANCELED);

  /* Cancellation disabled: the wait goes on and takes the event. */
  struct waiter d = {.kind = 3};
  pthread_t td;
  void* rd;
  pthread_create(&td, NULL, run, &d);
  wait_asleep(&d.tid);
  pthread_cancel(td);
  /* Had the cancel ended the wait, it would have returned -1 (EINTR), not
   * the event written after it. */
  (void)!write(p[1], "x", 1);
  pthread_join(td, &rd);
  char c;
  (void)!read(p[0], &c, 1);
  printf("disabled: wait=%d, then cancelled=%d\n", d.got, rd == PTHREAD_CANCELED);

  /* A cancel pending when the wait begins. */
  struct waiter q = {.kind = 4};
  pthread_t tq;
  void* rq;
  pthread_create(&tq, NULL, run, &q);
  pthread_cancel(tq);
  q.got = 1;
  pthread_join(tq, &rq);
  printf("pending: cancelled=%d\n", rq == PTHREAD_CANCELED);

  /* Busy waiters, cancelled at moments spread over 0-2 ms. */
  int bep = epoll_create1(0);
  if (pipe2(bp, O_NONBLOCK) != 0) return 1;
  struct epoll_event be = {.events = EPOLLIN | EPOLLET, .data.u64 = 6};
  epoll_ctl(bep, EPOLL_CTL_ADD, bp[0], &be);
  pthread_t tw;
  pthread_create(&tw, NULL, busy_writer, NULL);
  int busy_ok = 0;
  for (int i = 0; i < 100; ++i) {
    pthread_t tb;
    void* rb2;
    pthread_create(&tb, NULL, busy_waiter, &bep);
    struct timespec t = {0, (i * 37 % 100) * 20000};
    nanosleep(&t, NULL); /* varies the moment of the cancel; not a synchronisation */
    pthread_cancel(tb);
    pthread_join(tb, &rb2);
    busy_ok += rb2 == PTHREAD_CANCELED;
  }
  writing = 0;
  pthread_join(tw, NULL);
  printf("busy: cancelled=%d/100\n", busy_ok);

  /* fork(): the child's forking thread (which waited in the parent too)
   * asleep in a wait, cancelled by a thread of the child. */
  struct epoll_event fo[4];
  (void)epoll_wait(ep, fo, 4, 1);
  pid_t pid = fork();
  if (pid == 0) {
    forker = pthread_self();
    atomic_int me = (int)syscall(SYS_gettid);
    pthread_t tc;
    pthread_create(&tc, NULL, child_canceller, &me);
    int cep = epoll_create1(0);
    epoll_wait(cep, fo, 4, 5000);
    printf("child: the wait was not cancelled\n");
    _exit(1);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  printf("fork: child cancelled=%d\n", WIFEXITED(status) && WEXITSTATUS(status) == 0);
  return 0;
}
