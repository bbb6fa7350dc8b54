/* EPOLLEXCLUSIVE across processes: four children, each with its own set
 * holding one pipe exclusively, all asleep in epoll_wait; one write wakes
 * one of them. The parent writes once every child is asleep in an epoll
 * wait system call (read from /proc/PID/syscall, within a bound). */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define N 4

/* Whether pid is blocked in an epoll wait system call. */
static int in_epoll_wait(pid_t pid) {
  char path[64];
  long nr = -1;
  snprintf(path, sizeof path, "/proc/%d/syscall", (int)pid);
  FILE* f = fopen(path, "r");
  if (!f) return 0;
  if (fscanf(f, "%ld", &nr) != 1) nr = -1;
  fclose(f);
  return nr == SYS_epoll_wait || nr == SYS_epoll_pwait || nr == SYS_epoll_pwait2;
}

int main(void) {
  int p[2];
  if (pipe(p) != 0) return 1;
  atomic_int* woke =
      mmap(NULL, sizeof *woke, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  pid_t kids[N];
  for (int i = 0; i < N; i++) {
    kids[i] = fork();
    if (kids[i] == 0) {
      int ep = epoll_create1(0);
      struct epoll_event e = {.events = EPOLLIN | EPOLLET | EPOLLEXCLUSIVE};
      epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &e);
      if (epoll_wait(ep, &e, 1, 3000) == 1) atomic_fetch_add(woke, 1);
      _exit(0);
    }
  }
  int asleep = 0;
  struct timespec start, now, pause = {0, 1000000};
  clock_gettime(CLOCK_MONOTONIC, &start);
  do {
    asleep = 0;
    for (int i = 0; i < N; i++)
      asleep += in_epoll_wait(kids[i]);
    if (asleep == N) break;
    nanosleep(&pause, NULL); /* polling the children's state; bounded below */
    clock_gettime(CLOCK_MONOTONIC, &now);
  } while (now.tv_sec - start.tv_sec < 2);
  printf("children asleep in epoll_wait: %d of %d\n", asleep, N);
  (void)!write(p[1], "x", 1); /* one event, never read */
  while (wait(NULL) > 0) {
  }
  printf("one write woke %d of %d exclusive waiters\n", atomic_load(woke), N);
  return 0;
}
