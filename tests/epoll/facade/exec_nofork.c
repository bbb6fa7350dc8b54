/* A set without EPOLL_CLOEXEC inherited by a new program that no fork()
 * made: the process itself execs (each exec call), or it starts the
 * program with posix_spawn (with and without file actions) or vfork. The
 * new program must find the set's own entries, with their data, and no
 * other; a set with EPOLL_CLOEXEC is gone in it; the parent's set works on
 * after a spawn. Linux's meaning: the epoll fd names one kernel object,
 * whoever holds it. usage: exec_nofork HOW (see main). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

/* The new program: waits on the inherited set (everything it reports, in
 * order of data), adds a pipe of its own, and checks that the set with
 * EPOLL_CLOEXEC did not come along. */
static int after_exec(int ep, int ep_cloexec) {
  struct epoll_event e[8];
  int n = epoll_wait(ep, e, 8, 2000);
  printf("exec'd: wait=%d%s%s", n, n < 0 ? " " : "", n < 0 ? strerror(errno) : "");
  for (int i = 0; i < n; ++i)
    for (int j = i + 1; j < n; ++j)
      if (e[j].data.u64 < e[i].data.u64) {
        struct epoll_event t = e[i];
        e[i] = e[j];
        e[j] = t;
      }
  for (int i = 0; i < n; ++i)
    printf(" [events=%#x data=%llu]", e[i].events, (unsigned long long)e[i].data.u64);
  printf("\n");
  int r = epoll_wait(ep_cloexec, e, 1, 0);
  printf("exec'd: cloexec set: wait=%d%s%s\n", r, r < 0 ? " " : "", r < 0 ? strerror(errno) : "");
  int q[2];
  if (pipe(q) != 0) return 1;
  struct epoll_event f = {.events = EPOLLIN, .data.u64 = 9};
  r = epoll_ctl(ep, EPOLL_CTL_ADD, q[0], &f);
  printf("exec'd: add=%d%s%s\n", r, r ? " " : "", r ? strerror(errno) : "");
  return 0;
}

static int reap(pid_t pid) {
  int st;
  if (waitpid(pid, &st, 0) != pid) return 1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

int main(int argc, char** argv) {
  setvbuf(stdout, NULL, _IONBF, 0);
  if (argc == 4 && strcmp(argv[1], "child") == 0) return after_exec(atoi(argv[2]), atoi(argv[3]));
  if (argc != 2) return 2;
  const char* how = argv[1];

  /* Two ready pipes, one registered then modified (the new program must
   * see the MOD's data), one quiet pipe, a spent EPOLLONESHOT entry, and a
   * nested set (with EPOLL_CLOEXEC: it reaches the new program only
   * through ep) holding a ready pipe. */
  int a[2], b[2], c[2], d[2], f[2];
  if (pipe(a) || pipe(b) || pipe(c) || pipe(d) || pipe(f)) return 1;
  int ep = epoll_create1(0);
  int ep_cloexec = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event e = {.events = EPOLLIN, .data.u64 = 1};
  epoll_ctl(ep, EPOLL_CTL_ADD, a[0], &e);
  e.data.u64 = 2;
  epoll_ctl(ep, EPOLL_CTL_ADD, b[0], &e);
  e.data.u64 = 3;
  epoll_ctl(ep, EPOLL_CTL_MOD, b[0], &e);
  e.data.u64 = 4;
  epoll_ctl(ep, EPOLL_CTL_ADD, c[0], &e);
  e.events = EPOLLIN | EPOLLONESHOT;
  e.data.u64 = 5;
  epoll_ctl(ep, EPOLL_CTL_ADD, d[0], &e);
  e.events = EPOLLIN;
  e.data.u64 = 6;
  epoll_ctl(ep_cloexec, EPOLL_CTL_ADD, a[0], &e);
  int inner = epoll_create1(EPOLL_CLOEXEC);
  e.data.u64 = 8;
  epoll_ctl(inner, EPOLL_CTL_ADD, f[0], &e);
  e.data.u64 = 7;
  epoll_ctl(ep, EPOLL_CTL_ADD, inner, &e);
  (void)!write(f[1], "x", 1);
  (void)!write(a[1], "x", 1);
  (void)!write(b[1], "x", 1);
  (void)!write(d[1], "x", 1);
  struct epoll_event got[8];
  int n = epoll_wait(ep, got, 8, 1000); /* spends the EPOLLONESHOT entry */
  printf("before: wait=%d\n", n);

  char s_ep[16], s_cl[16], self[64];
  snprintf(s_ep, sizeof s_ep, "%d", ep);
  snprintf(s_cl, sizeof s_cl, "%d", ep_cloexec);
  snprintf(self, sizeof self, "/proc/%d/exe", (int)getpid());
  char* args[] = {argv[0], "child", s_ep, s_cl, NULL};

  pid_t pid = -1;
  if (strcmp(how, "execv") == 0) {
    execv(self, args);
  } else if (strcmp(how, "execve") == 0) {
    execve(self, args, environ);
  } else if (strcmp(how, "execl") == 0) {
    execl(self, argv[0], "child", s_ep, s_cl, (char*)0);
  } else if (strcmp(how, "execle") == 0) {
    execle(self, argv[0], "child", s_ep, s_cl, (char*)0, environ);
  } else if (strcmp(how, "execlp") == 0) {
    execlp(self, argv[0], "child", s_ep, s_cl, (char*)0);
  } else if (strcmp(how, "execvp") == 0) {
    execvp(self, args);
  } else if (strcmp(how, "fexecve") == 0) {
    int fd = open(self, O_RDONLY | O_CLOEXEC);
    fexecve(fd, args, environ);
  } else if (strcmp(how, "execveat") == 0) {
    execveat(AT_FDCWD, self, args, environ, 0);
  } else if (strcmp(how, "spawn") == 0 || strcmp(how, "spawnp") == 0 ||
             strcmp(how, "spawn_actions") == 0) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addclose(&fa, c[1]);
    int r = strcmp(how, "spawnp") == 0  ? posix_spawnp(&pid, self, NULL, NULL, args, environ)
            : strcmp(how, "spawn") == 0 ? posix_spawn(&pid, self, NULL, NULL, args, environ)
                                        : posix_spawn(&pid, self, &fa, NULL, args, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (r != 0) {
      printf("spawn: %s\n", strerror(r));
      return 1;
    }
  } else if (strcmp(how, "vfork") == 0) {
    pid = vfork();
    if (pid == 0) {
      execv(self, args);
      _exit(127);
    }
  } else if (strcmp(how, "vfork_closes") == 0) {
    /* The usual child: files moved into place and closed before the exec.
     * Its descriptors are its own: the parent's set keeps a and c. */
    pid = vfork();
    if (pid == 0) {
      if (dup2(c[0], 20) < 0 || close(a[0]) || close(c[0]) || close(20)) _exit(126);
      execv(self, args);
      _exit(127);
    }
  } else if (strcmp(how, "failed_exec") == 0) {
    /* An exec that fails leaves the process with its sets working. */
    char* none[] = {"/nonexistent/ueq-test", NULL};
    int r = execv(none[0], none);
    printf("failed exec: %d %s\n", r, strerror(errno));
  } else {
    return 2;
  }
  if (pid < 0 && strcmp(how, "failed_exec") != 0) {
    printf("%s: %s\n", how, strerror(errno));
    return 1;
  }
  if (pid > 0) {
    int st = reap(pid);
    printf("child exit=%d\n", st);
  }
  /* The parent's sets after a spawn (or a failed exec): the new program's
   * pipe is in the shared set now; our own entries are as they were. */
  (void)!write(c[1], "x", 1);
  n = epoll_wait(ep, got, 8, 1000);
  unsigned long long sum = 0;
  for (int i = 0; i < n; ++i)
    sum += got[i].data.u64;
  printf("parent: wait=%d sum=%llu\n", n, sum);
  n = epoll_wait(ep_cloexec, got, 8, 0);
  printf("parent: cloexec set: wait=%d data=%llu\n", n,
         n == 1 ? (unsigned long long)got[0].data.u64 : 0ULL);
  e.data.u64 = 7;
  int r = epoll_ctl(ep, EPOLL_CTL_MOD, a[0], &e);
  n = epoll_wait(ep, got, 8, 0);
  sum = 0;
  for (int i = 0; i < n; ++i)
    sum += got[i].data.u64;
  printf("parent: mod=%d wait=%d sum=%llu\n", r, n, sum);
  return 0;
}
