// epoll/kcall.hpp (internal) — the kernel's epoll calls, made as system
// calls: the ones ueq makes for itself and the ones it passes through must
// never reach an interposed epoll_* of the preload library (a fork()
// handler, for one, runs with no guard). Each returns -1 with errno set on
// failure, as the C library does. Waits: epoll_pwait_until()
// (ueq/runtime/fd.hpp), a system call too. errno_on_success keeps those
// calls' errno from showing through a call of the program's that succeeds.
#pragma once

#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

namespace ueq::epoll_internal {

// Linux's calls leave errno alone when they succeed, and programs test it
// after a success (errno = 0; call; if (errno) ...). The work behind ueq's
// makes system calls that may fail on purpose (the EFAULT check of an
// event, probes of an fd number): keep(rc) puts the caller's errno back
// when rc reports success (>= 0).
class errno_on_success {
 public:
  int keep(int rc) const noexcept {
    if (rc >= 0) set(saved_);
    return rc;
  }

 private:
  // errno is the thread's, and a uthread whose call parked it may resume on
  // another vcore's thread; glibc declares __errno_location() `const`, so a
  // compiler may keep its answer across the call. Out of line, and opaque
  // (the asm), each access asks for the thread it runs on.
  [[gnu::noinline]] static int get() noexcept {
    asm volatile("" ::: "memory");
    return errno;
  }
  [[gnu::noinline]] static void set(int e) noexcept {
    asm volatile("" ::: "memory");
    errno = e;
  }
  int saved_ = get();
};

inline int k_epoll_create1(int flags) {
  return static_cast<int>(::syscall(SYS_epoll_create1, flags));
}
inline int k_epoll_ctl(int ep, int op, int fd, const epoll_event* ev) {
  return static_cast<int>(::syscall(SYS_epoll_ctl, ep, op, fd, ev));
}

}  // namespace ueq::epoll_internal
