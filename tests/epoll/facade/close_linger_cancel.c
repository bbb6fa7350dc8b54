/* A close() that blocks in the kernel (a TCP socket with SO_LINGER and
 * unsent data, its peer not reading) is a cancellation point while it
 * blocks: pthread_cancel ends it and the thread, as the C library's close
 * does; ueq's bookkeeping before it must not keep the close from being
 * interrupted. The cancel is sent once the thread is seen inside the
 * close system call (/proc/self/task/TID/syscall), or after 2 s. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int g_sock;
static volatile pid_t g_tid;
static volatile int g_returned;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void* run(void* arg) {
  (void)arg;
  g_tid = (pid_t)syscall(SYS_gettid);
  close(g_sock);
  g_returned = 1;
  pthread_testcancel();
  return NULL;
}

/* Whether thread `tid` is inside the close system call now. */
static int in_close(pid_t tid) {
  char path[64], line[64] = {0};
  snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)tid);
  FILE* f = fopen(path, "re");
  if (!f) return 0;
  int n = -1;
  if (fgets(line, sizeof line, f)) sscanf(line, "%d", &n);
  fclose(f);
  return n == SYS_close;
}

int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof sa;
  if (bind(l, (struct sockaddr*)&sa, len) || listen(l, 1) ||
      getsockname(l, (struct sockaddr*)&sa, &len))
    return 1;
  g_sock = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int small = 4096;
  setsockopt(g_sock, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  if (connect(g_sock, (struct sockaddr*)&sa, len)) return 1;
  int peer = accept(l, NULL, NULL);
  setsockopt(peer, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  /* Fill both buffers, so that the close lingers. */
  fcntl(g_sock, F_SETFL, O_NONBLOCK);
  char buf[4096] = {0};
  while (write(g_sock, buf, sizeof buf) > 0) {
  }
  fcntl(g_sock, F_SETFL, 0);
  struct linger lg = {.l_onoff = 1, .l_linger = 5};
  setsockopt(g_sock, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  pthread_t t;
  void* result;
  const double t0 = now();
  if (pthread_create(&t, NULL, run, NULL)) return 1;
  while (now() - t0 < 2.0 && !(g_tid && in_close(g_tid))) {
  }
  pthread_cancel(t);
  pthread_join(t, &result);
  printf("joined: %s, close %s, within 3 s: %s\n",
         result == PTHREAD_CANCELED ? "cancelled" : "returned",
         g_returned ? "returned" : "did not return", now() - t0 < 3.0 ? "yes" : "no");
  close(peer);
  close(l);
  return 0;
}
