// ueq/taps/io.hpp — green-thread I/O: blocking-style calls that park only
// the caller.
//
// What it is for: writing a server in plain blocking style (one uthread, or
// one thread, per connection) on top of the event machinery. Each call tries
// the system call without letting the kernel wait (MSG_DONTWAIT for
// sockets, RWF_NOWAIT for read/write/readv/writev of other files; accept,
// connect, and files that refuse RWF_NOWAIT, such as ttys, get O_NONBLOCK
// set on the open file description, which other holders of it will see, as
// do pipes in sanitizer builds), and on EAGAIN blocks the caller on a tap
// event for the fd, then retries. Blocking goes through block_on and the
// parker, so a uthread parks alone and a plain thread parks itself (and may
// poll the host meanwhile). No call blocks in the kernel on readiness,
// whatever file the fd names when it is made: regular files, directories
// and block devices are read and written plainly (they never wait for
// readiness), after an fstat that confirms the fd still names one.
//
// Per fd, the first call that has to wait creates two small event queues
// (read side, write side) and two persistent taps into them; later waits
// reuse them. close() (or ueq::close_fd) removes them and wakes anyone still
// waiting on the fd with EBADF; a call that was already under way when the
// close began, or that begins while io::close() runs, also ends with EBADF
// rather than wait. Close fds used here through ueq: with the io_uring
// backend a tap's poll holds a reference to the file, so a plain ::close
// does not even close it (a listening socket goes on listening) until ueq
// learns of the close; and even through ueq the kernel releases that
// reference a moment after the cancelled poll completes, not at once. If a
// plain ::close slips through and the number is reused, calls on the new
// file never block in the kernel (see above), and a wait on the old file's
// taps notices within a second and starts afresh: a watcher thread
// ("ueq-io-watch", started by the first wait, every signal blocked) looks
// twice a second at each fd someone has waited on since its previous look,
// comparing the device and inode the number names with the file the taps
// were made for and, for files other than sockets, polling it (files that
// share an inode, such as eventfds, are told apart by being ready while
// their waiters sleep). Checking at every wait would cost a system call
// per wait; a wait costs no timer, and sleeps until an event. If the
// thread cannot be made, each wait is cut into 1 s slices after which the
// file is compared. In a fork()ed child, calls wait on the child's own
// taps; a uthread that was parked in a wait at the fork waits on the
// parent's, which the child does not poll: it wakes at its deadline or
// when the child closes the fd through ueq (through io::close, or
// ueq::close_fd once the child has made any ueq::io call: a child whose
// first call is ueq::close_fd has no io state yet to end those waits).
// Waking such a uthread makes it runnable through the 2LS, whose run-queue
// lock another vcore's thread may have held at the fork: with more than one
// vcore, a child can then block in that close (the queue locks of the
// parent's io state are only tried, never waited for).
//
// Limits: a wait that the watcher ends on deaf taps (a number reused behind
// ueq's back) removes the old taps' host registration by fd number; where
// the number now names another file that shares the old one's inode (an
// eventfd for an eventfd) and the program has put taps of its own on it in
// the same tap service, the epoll backend's removal can take that
// registration too. ueq's own descriptors (host poller, eventfds) are
// refused by close() and ueq::close_fd (EBADF), as the kernel answers for a
// number the program never opened. A writer waiting for room in an AF_UNIX
// socket is not woken by its own shutdown(SHUT_WR) or its peer's
// shutdown(SHUT_RD): Linux reports no poll event for either (a blocking
// send fails with EPIPE at once); it wakes at its deadline, or when the
// peer reads or closes. A regular file is read plainly even where its read
// can sleep (/proc/kmsg): such a read holds the vcore until it returns.
//
// A read side shut down for good (shutdown(SHUT_RD) of a datagram socket or
// of a listener, usually to unblock a thread in recvfrom() or accept())
// gives what the blocking call gives, at once: 0 bytes, and accept()
// EINVAL (the kernel answers ueq's non-blocking tries with EAGAIN there;
// after a wake that found nothing a poll of the fd tells, and the fd's
// entry remembers it for later calls). Data that arrived before the
// shutdown is read first.
//
// Results: byte counts (or the new fd) as result<T>; errors are the system
// call's errno, ETIMEDOUT when the deadline passes first, EBADF when the fd
// is closed (through ueq) under a waiter, or names no open file (any number
// the kernel calls bad, however large). Deadlines are absolute
// (CLOCK_MONOTONIC, see clock.hpp); kNoDeadline waits forever.
//
// connect() completes a non-blocking connect correctly: it returns success
// only once the socket is really connected (it re-checks the socket's state
// after every wakeup, so a stale writable event never reads as "connected").
// To a local (AF_UNIX) listener whose backlog is full it waits for room, as
// a blocking connect does, trying again with a backoff of 1 to 64 ms
// (nothing announces the room). accept() and connect() on a file that is no
// socket give ENOTSOCK and leave its O_NONBLOCK alone.
//
// recv() and recvfrom() honour MSG_WAITALL on a stream socket: n bytes,
// unless the stream ends, an error comes or the deadline passes (then the
// bytes that arrived, if any). recvmsg() does not (one try's worth, as
// MSG_DONTWAIT makes the kernel ignore the flag). send(), sendto() and
// sendmsg() add MSG_NOSIGNAL (EPIPE, no SIGPIPE); write() and writev() on a
// socket raise SIGPIPE as write(2) does.
//
// Thread-safety: any number of callers on any fds; several waiters on one
// fd and direction are all woken and retry.
//
// Usage (an echo loop):
//   char buf[4096];
//   for (;;) {
//     auto n = ueq::io::read(fd, buf, sizeof buf);
//     if (!n || *n == 0) break;
//     if (!ueq::io::write_all(fd, buf, *n).ok()) break;
//   }
//   (void)ueq::io::close(fd);
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>

#include "ueq/runtime/clock.hpp"
#include "ueq/runtime/result.hpp"

namespace ueq::io {

result<std::size_t> read(int fd, void* buf, std::size_t n, mono_ns deadline = kNoDeadline);
result<std::size_t> write(int fd, const void* buf, std::size_t n, mono_ns deadline = kNoDeadline);
// Writes all n bytes (several writes if the peer is slow); on error, nothing
// is said about how much was written.
status write_all(int fd, const void* buf, std::size_t n, mono_ns deadline = kNoDeadline);
result<std::size_t> readv(int fd, const iovec* iov, int iovcnt, mono_ns deadline = kNoDeadline);
result<std::size_t> writev(int fd, const iovec* iov, int iovcnt, mono_ns deadline = kNoDeadline);
result<std::size_t> recv(int fd, void* buf, std::size_t n, int flags = 0,
                         mono_ns deadline = kNoDeadline);
result<std::size_t> send(int fd, const void* buf, std::size_t n, int flags = 0,
                         mono_ns deadline = kNoDeadline);
result<std::size_t> recvfrom(int fd, void* buf, std::size_t n, int flags, sockaddr* from,
                             socklen_t* fromlen, mono_ns deadline = kNoDeadline);
result<std::size_t> sendto(int fd, const void* buf, std::size_t n, int flags, const sockaddr* to,
                           socklen_t tolen, mono_ns deadline = kNoDeadline);
result<std::size_t> recvmsg(int fd, msghdr* msg, int flags = 0, mono_ns deadline = kNoDeadline);
result<std::size_t> sendmsg(int fd, const msghdr* msg, int flags = 0,
                            mono_ns deadline = kNoDeadline);
// The new fd is non-blocking and close-on-exec unless `flags` says
// otherwise (flags as for accept4; SOCK_NONBLOCK is always added).
result<int> accept(int fd, sockaddr* addr = nullptr, socklen_t* addrlen = nullptr,
                   int flags = SOCK_CLOEXEC, mono_ns deadline = kNoDeadline);
status connect(int fd, const sockaddr* addr, socklen_t addrlen, mono_ns deadline = kNoDeadline);

// Waits until fd is ready for any of `filter` (kTapReadable, kTapWritable,
// ...; error and hang-up always end the wait) or the deadline; returns the
// bits that fired. Readiness may be stale by the time the caller acts: retry
// the operation, which is what the calls above do.
result<std::uint32_t> wait(int fd, std::uint32_t filter, mono_ns deadline = kNoDeadline);

// Removes the fd's taps, wakes its waiters (EBADF), closes it.
status close(int fd);

}  // namespace ueq::io
