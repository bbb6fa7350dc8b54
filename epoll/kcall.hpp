// epoll/kcall.hpp (internal) — the kernel's epoll calls, made as system
// calls: the ones ueq makes for itself and the ones it passes through must
// never reach an interposed epoll_* of the preload library (a fork()
// handler, for one, runs with no guard). Each returns -1 with errno set on
// failure, as the C library does. Waits: epoll_pwait_until()
// (ueq/runtime/fd.hpp), a system call too.
#pragma once

#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace ueq::epoll_internal {

inline int k_epoll_create1(int flags) {
  return static_cast<int>(::syscall(SYS_epoll_create1, flags));
}
inline int k_epoll_ctl(int ep, int op, int fd, const epoll_event* ev) {
  return static_cast<int>(::syscall(SYS_epoll_ctl, ep, op, fd, ev));
}

}  // namespace ueq::epoll_internal
