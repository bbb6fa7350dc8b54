/* A program whose sets all have EPOLL_CLOEXEC starts others (posix_spawn
 * with file actions, system, popen, vfork, a failed exec): no set can be
 * inherited, so its sets must not change (nor when a vfork() child closes
 * a registered file). Here an edge-triggered entry whose edge was
 * reported, and a spent EPOLLONESHOT entry whose pipe lost its writer,
 * must stay silent after each, and a new edge be reported.
 * usage: exec_cloexec_sets HOW */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

int main(int argc, char** argv) {
  setvbuf(stdout, NULL, _IONBF, 0);
  if (argc != 2) return 2;
  const char* how = argv[1];
  int a[2], b[2];
  if (pipe2(a, O_CLOEXEC) || pipe2(b, O_CLOEXEC)) return 1;
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event e = {.events = EPOLLIN | EPOLLET, .data.u64 = 1};
  epoll_ctl(ep, EPOLL_CTL_ADD, a[0], &e);
  e.events = EPOLLIN | EPOLLONESHOT;
  e.data.u64 = 2;
  epoll_ctl(ep, EPOLL_CTL_ADD, b[0], &e);
  (void)!write(a[1], "x", 1);
  (void)!write(b[1], "x", 1);
  struct epoll_event got[4];
  int n = epoll_wait(ep, got, 4, 1000);
  close(b[1]);
  printf("before: wait=%d\n", n);
  n = epoll_wait(ep, got, 4, 0);
  printf("quiet: wait=%d\n", n);

  char* args[] = {"true", NULL};
  int st = 0;
  if (strcmp(how, "spawn_actions") == 0) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    pid_t pid;
    int r = posix_spawnp(&pid, "true", &fa, NULL, args, environ);
    posix_spawn_file_actions_destroy(&fa);
    printf("spawn: %d\n", r);
    if (r == 0) waitpid(pid, &st, 0);
  } else if (strcmp(how, "system") == 0) {
    st = system("true");
    printf("system: %d\n", st);
  } else if (strcmp(how, "popen") == 0) {
    FILE* f = popen("true", "r");
    printf("popen: %d\n", f ? pclose(f) : -1);
  } else if (strcmp(how, "vfork") == 0) {
    pid_t pid = vfork();
    if (pid == 0) {
      execvp("true", args);
      _exit(127);
    }
    waitpid(pid, &st, 0);
    printf("vfork: exit=%d\n", WEXITSTATUS(st));
  } else if (strcmp(how, "vfork_closes") == 0) {
    /* The child's descriptors are its own: closing the registered pipe
     * there leaves the parent's entry (its own number) alone. */
    pid_t pid = vfork();
    if (pid == 0) {
      if (close(a[0])) _exit(126);
      execvp("true", args);
      _exit(127);
    }
    waitpid(pid, &st, 0);
    printf("vfork: exit=%d\n", WEXITSTATUS(st));
  } else if (strcmp(how, "failed_exec") == 0) {
    char* none[] = {"/nonexistent/ueq-test", NULL};
    int r = execv(none[0], none);
    printf("failed exec: %d %s\n", r, strerror(errno));
  } else {
    return 2;
  }
  n = epoll_wait(ep, got, 4, 0);
  printf("after: wait=%d", n);
  for (int i = 0; i < n; ++i)
    printf(" [events=%#x data=%llu]", got[i].events, (unsigned long long)got[i].data.u64);
  printf("\n");
  /* A new edge on the registered pipe is reported as ever. */
  (void)!write(a[1], "y", 1);
  n = epoll_wait(ep, got, 4, 1000);
  printf("new edge: wait=%d data=%llu\n", n, n == 1 ? (unsigned long long)got[0].data.u64 : 0ULL);
  return 0;
}
