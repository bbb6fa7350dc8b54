// ueq/taps/backend.hpp — the host kernel's readiness notification, behind one
// small interface.
//
// What it is for: the taps layer needs "tell me when fd N becomes readable /
// writable / hung up" from the host kernel. Two backends provide it, one file
// each: host epoll (epoll_backend.cpp, the default) and io_uring multishot
// poll (uring_backend.cpp, optional: probed at creation, because containers
// often forbid io_uring). Like Go's netpoller: register, modify, remove,
// poll with a deadline, and break a poll from another thread.
//
// Semantics every backend keeps:
//  - A registration is named by its key, and one fd may have several
//    registrations under different keys (each with its own events), which
//    the host kernel filters independently, exactly as it does for several
//    epoll instances watching one fd.
//  - Registrations are persistent and edge-like: an event is reported when
//    the file's readiness changes or new data arrives, not on every poll; a
//    registration that is already ready reports once right after add() or
//    modify(). No per-event re-arming syscall.
//  - Events carry the `key` given at add()/modify(); the taps layer puts an
//    fd number and a generation in it to discard events of an old
//    registration. Event bits are the host's EPOLL* values.
//  - After remove(), no event with that key is reported by a poll() that
//    starts later (io_uring's asynchronous cancel is completed inside the
//    backend, invisible to the caller).
//  - poll() may be called by one thread at a time; add/modify/remove/wake
//    from any thread, concurrently with a poll.
//
// Errors: errno values as status/result (EBADF, EPERM, EEXIST, ENOENT,
// ENOMEM, ENOSPC from the host; EINTR when a signal interrupts poll()).
//
// Usage:
//   auto b = ueq::make_backend(ueq::backend_kind::automatic);
//   (*b)->add(fd, EPOLLIN, key);
//   ueq::host_event ev[64];
//   auto n = (*b)->poll(ev, ueq::deadline_after_ms(100), nullptr);
#pragma once

#include <signal.h>

#include <cstdint>
#include <memory>
#include <span>

#include "ueq/runtime/clock.hpp"
#include "ueq/runtime/result.hpp"

namespace ueq {

struct host_event {
  std::uint64_t key = 0;
  std::uint32_t events = 0;  // EPOLLIN, EPOLLOUT, EPOLLPRI, EPOLLERR, EPOLLHUP, EPOLLRDHUP
};

enum class backend_kind : std::uint8_t {
  automatic,  // io_uring if UEQ_BACKEND=io_uring and it works, else epoll
  epoll,
  io_uring,
};

class host_backend {
 public:
  virtual ~host_backend() = default;
  virtual const char* name() const noexcept = 0;
  // EEXIST if `key` is registered already; modify/remove: ENOENT if not.
  // Keys with all of their upper 32 bits set are reserved to backends.
  virtual status add(int fd, std::uint32_t events, std::uint64_t key) noexcept = 0;
  virtual status modify(int fd, std::uint32_t events, std::uint64_t key) noexcept = 0;
  virtual status remove(int fd, std::uint64_t key) noexcept = 0;
  // Waits until at least one event, the deadline, a wake() or a signal. With
  // `sigmask`, it is installed for the duration of the wait atomically (as
  // epoll_pwait does). Returns the number of events written to `out`
  // (0 = deadline passed or woken).
  virtual result<std::size_t> poll(std::span<host_event> out, mono_ns deadline,
                                   const sigset_t* sigmask) noexcept = 0;
  // Makes a concurrent or the next poll() return promptly. Cheap when
  // repeated: wakes coalesce until the poller has seen one.
  virtual void wake() noexcept = 0;
  // A file descriptor that is readable while poll() has something to return
  // (the host epoll fd, the io_uring ring fd), for waiters that sleep in
  // ppoll() on it together with their own fds.
  virtual int pollable_fd() const noexcept = 0;
};

// ENOSYS/EPERM/...: io_uring was asked for and is unavailable here.
result<std::unique_ptr<host_backend>> make_backend(backend_kind kind);
result<std::unique_ptr<host_backend>> make_epoll_backend();
result<std::unique_ptr<host_backend>> make_uring_backend();

}  // namespace ueq
