// ueq/runtime/fd.hpp — the runtime's own file descriptors beside the
// program's.
//
// What it is for: ueq opens descriptors of its own (the host epoll fd,
// eventfds, hidden epoll fds) in a process whose fd numbers belong to the
// program. hide_fd() moves each to a high number, so that the program's
// next open() gets the number it would have got without ueq; host_max_fds()
// sizes the tables indexed by fd number; epoll_pwait_until() is the one
// epoll wait ueq makes for itself; sys_read() and its kin are the reads,
// writes, closes and polls it makes of its own accord, as system calls, and
// no_cancel the scopes of its work that must not act on a cancel.
//
// Thread-safety: all may be called from any thread.
//
// Usage:
//   int efd = ueq::hide_fd(::eventfd(0, EFD_CLOEXEC));  // -1 stays -1
//   ueq::chunked_table<per_fd> t(ueq::host_max_fds());
#pragma once

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/types.h>

#include <cstddef>

#include "ueq/runtime/clock.hpp"
#include "ueq/runtime/parker.hpp"

struct epoll_event;

namespace ueq {

// epoll_pwait2 until `deadline` (kNoDeadline: none) with `mask` installed
// (nullptr: none), made as a system call (never an interposed epoll_*);
// where the kernel lacks or refuses it (ENOSYS before 5.11, EPERM from a
// seccomp filter, valgrind), epoll_pwait with the timeout rounded up to
// milliseconds. Returns as epoll_wait does (-1 with errno set).
int epoll_pwait_until(int ep, epoll_event* ev, int max, mono_ns deadline,
                      const sigset_t* mask) noexcept;

// The reads, writes and closes ueq makes for itself (its eventfds, the
// files it closes for the program), and its zero-timeout polls, as system
// calls. The C library's are cancellation points: a cancel pending on a
// program's thread that called into ueq would act there, unwinding through
// ueq's noexcept frames (std::terminate) or leaving its tables half
// changed, where the program's call (epoll_ctl, dup, a wait that found
// events) acts on none. They also skip the C library's cancellation
// bookkeeping (two atomic read-modify-writes per call in a threaded
// process). Each returns as the C library's does (-1 with errno set).
// Under ThreadSanitizer, which follows files through the C library's calls
// (a write releases, a read acquires, a close ends a number's life), they
// are the C library's, made with cancellation off (no_cancel).
ssize_t sys_read(int fd, void* buf, std::size_t n) noexcept;
ssize_t sys_write(int fd, const void* buf, std::size_t n) noexcept;
int sys_close(int fd) noexcept;
int sys_poll_now(pollfd* fds, nfds_t n) noexcept;
// epoll_wait with a zero timeout, no signal mask.
int sys_epoll_wait_now(int ep, epoll_event* ev, int max) noexcept;

// Cancellation off for a scope of ueq's work on a plain thread: what the
// system calls above do not cover (the C library's stdio in the opt-in
// log, a wait on a lock that is a condition variable, a future call). A
// cancel pending on a program's thread would act there, as above. A
// uthread's call may park and resume on another vcore's thread, whose
// state is the runtime's: nothing is touched for it. Nests. The state is
// restored as it was; on a thread whose cancel type is asynchronous (where
// POSIX allows no such call) a cancel that arrived meanwhile acts at that
// restore, inside ueq.
class no_cancel {
 public:
  no_cancel() noexcept : plain_(!parks_as_uthread()) {
    if (plain_) (void)::pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &state_);
  }
  ~no_cancel() {
    if (plain_) (void)::pthread_setcancelstate(state_, nullptr);
  }
  no_cancel(const no_cancel&) = delete;
  no_cancel& operator=(const no_cancel&) = delete;

 private:
  bool plain_;
  int state_ = PTHREAD_CANCEL_DISABLE;
};

// The largest fd number the host allows (/proc/sys/fs/nr_open), or 2^20.
std::size_t host_max_fds() noexcept;

// Moves one of the runtime's own descriptors out of the way of the program's:
// re-numbers fd near the top of the RLIMIT_NOFILE soft limit (close-on-exec),
// among its top 256 numbers (its top quarter under a limit below 1024),
// closes the original number, and returns the new one. The program's next
// open() then gets the number it would have got without ueq. If no high
// number is free, or the limit is below 16, fd is returned unchanged.
// Either way the number is recorded as the runtime's own (is_own_fd) until
// close_own().
int hide_fd(int fd) noexcept;

// Whether fd is one of the runtime's own descriptors (made by hide_fd and
// not yet given to close_own), asked of the file itself where the record
// says so (hide_fd marks it: F_SETOWN), so that a record left behind by a
// close ueq did not see never claims a file of the program's. The epoll
// facade's close() refuses these with EBADF, as the kernel would a number
// the program never opened: a daemon's "close every fd from 3 up" loop must
// not take the runtime's host poller and eventfds from under it.
// Async-signal-safe.
bool is_own_fd(int fd) noexcept;

// The lowest number >= from that the record names as the runtime's, or -1
// (check each with is_own_fd): for a close_range() that must leave them
// open.
int next_own_fd(int from) noexcept;

// Closes one of the runtime's own descriptors (forgetting it first).
// Returns as close(2) does.
int close_own(int fd) noexcept;

}  // namespace ueq
