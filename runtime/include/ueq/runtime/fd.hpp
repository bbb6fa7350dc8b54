// ueq/runtime/fd.hpp — the runtime's own file descriptors beside the
// program's.
//
// What it is for: ueq opens descriptors of its own (the host epoll fd,
// eventfds, hidden epoll fds) in a process whose fd numbers belong to the
// program. hide_fd() moves each to a high number, so that the program's
// next open() gets the number it would have got without ueq; host_max_fds()
// sizes the tables indexed by fd number; epoll_pwait_until() is the one
// epoll wait ueq makes for itself.
//
// Thread-safety: both may be called from any thread.
//
// Usage:
//   int efd = ueq::hide_fd(::eventfd(0, EFD_CLOEXEC));  // -1 stays -1
//   ueq::chunked_table<per_fd> t(ueq::host_max_fds());
#pragma once

#include <signal.h>

#include <cstddef>

#include "ueq/runtime/clock.hpp"

struct epoll_event;

namespace ueq {

// epoll_pwait2 until `deadline` (kNoDeadline: none) with `mask` installed
// (nullptr: none), made as a system call (never an interposed epoll_*);
// where the kernel lacks or refuses it (ENOSYS before 5.11, EPERM from a
// seccomp filter, valgrind), epoll_pwait with the timeout rounded up to
// milliseconds. Returns as epoll_wait does (-1 with errno set).
int epoll_pwait_until(int ep, epoll_event* ev, int max, mono_ns deadline,
                      const sigset_t* mask) noexcept;

// The largest fd number the host allows (/proc/sys/fs/nr_open), or 2^20.
std::size_t host_max_fds() noexcept;

// Moves one of the runtime's own descriptors out of the way of the program's:
// re-numbers fd near the top of the RLIMIT_NOFILE soft limit (close-on-exec),
// closes the original number, and returns the new one. The program's next
// open() then gets the number it would have got without ueq. If no high
// number is free, fd is returned unchanged.
int hide_fd(int fd) noexcept;

}  // namespace ueq
