/* libueq-epoll-preload.so loaded with dlopen(), after the program started:
 * the library reads its thread-locals with the initial-exec model, so the
 * loader must find room for them in the static TLS block it keeps for
 * such libraries (a few hundred bytes are free by default). Exit 0 when
 * the library loads and a set made through it reports an eventfd's data;
 * a code naming the failed step otherwise. A library whose static TLS
 * outgrew that room fails here ("cannot allocate memory in static TLS
 * block"), not in a program that tried it. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  void* h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    fprintf(stderr, "dlopen: %s\n", dlerror());
    return 3;
  }
  /* The POSIX way to take a function from dlsym() (ISO C has no cast). */
  int (*create)(int);
  int (*ctl)(int, int, int, struct epoll_event*);
  int (*wait)(int, struct epoll_event*, int, int);
  int (*close_fd)(int);
  *(void**)&create = dlsym(h, "ueq_epoll_create1");
  *(void**)&ctl = dlsym(h, "ueq_epoll_ctl");
  *(void**)&wait = dlsym(h, "ueq_epoll_wait");
  *(void**)&close_fd = dlsym(h, "ueq_close");
  if (!create || !ctl || !wait || !close_fd) return 4;
  const int ep = create(EPOLL_CLOEXEC);
  const int ev = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (ep < 0 || ev < 0) return 5;
  struct epoll_event e = {.events = EPOLLIN, .data.u64 = 42};
  if (ctl(ep, EPOLL_CTL_ADD, ev, &e) != 0) return 6;
  struct epoll_event out[2];
  if (wait(ep, out, 2, 0) != 0) return 7; /* nothing yet */
  const uint64_t one = 1;
  if (write(ev, &one, sizeof one) != sizeof one) return 8;
  if (wait(ep, out, 2, 5000) != 1 || out[0].data.u64 != 42 || !(out[0].events & EPOLLIN)) return 9;
  if (close_fd(ep) != 0) return 10;
  return 0;
}
