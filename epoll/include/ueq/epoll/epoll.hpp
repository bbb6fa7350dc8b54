// ueq/epoll/epoll.hpp — the epoll facade's C++ face.
//
// What it is for: an epoll instance built from ueq parts. It is a thin
// controller: an event queue whose mailbox is a CEQ with one slot per target
// fd (slot ID = fd number), fed by one FD tap per registered fd; an entry
// table {mask, data, mode, armed}; a ready list that keeps level-triggered
// entries and rotates fairly; an instance lock; and a real kernel epoll fd
// (watching a hidden eventfd that is kept readable while events are
// pending), so the epoll fd is a genuine, pollable, closeable descriptor.
// The C API in <ueq/epoll.h> is this class behind Linux's exact signatures
// and errno values.
//
// Semantics follow Linux (docs/guide.md lists every known difference):
// level-triggered by default, EPOLLET, EPOLLONESHOT (re-armed by MOD),
// EPOLLEXCLUSIVE (ADD only; registered exclusively with the host),
// EPOLLWAKEUP accepted and ignored, EPOLLERR and EPOLLHUP always reported,
// readiness evaluated at ADD and whenever an event is reported (as Linux
// re-polls each item it returns; a MOD puts the entry up for that check),
// an fd at most once per result, fair rotation when more are ready than
// fit. At fork() every set is handed to the kernel (its entries move into
// its epoll fd) and its calls pass through: parent and child share it.
//
// Thread-safety: every member from any thread.
//
// Usage:
//   auto ep = ueq::epoll_set::create(EPOLL_CLOEXEC);
//   epoll_event ev{.events = EPOLLIN, .data = {.fd = sock}};
//   (*ep)->ctl(EPOLL_CTL_ADD, sock, &ev);
//   epoll_event out[16];
//   auto n = (*ep)->wait(out, ueq::deadline_after_ms(100));
#pragma once

#include <signal.h>
#include <sys/epoll.h>

#include <memory>
#include <span>

#include "ueq/runtime/clock.hpp"
#include "ueq/runtime/result.hpp"

namespace ueq {

class epoll_set {
 public:
  // flags: 0 or EPOLL_CLOEXEC (EINVAL otherwise). EMFILE/ENFILE/ENOMEM as
  // Linux. The set is registered under its fd for the C API.
  static result<std::shared_ptr<epoll_set>> create(int flags);
  // The instance behind an epoll fd made here; EBADF if fd is not open,
  // EINVAL if it is not one of ours.
  static result<std::shared_ptr<epoll_set>> from_fd(int fd);
  ~epoll_set();

  int fd() const noexcept;
  // EPOLL_CTL_ADD / MOD / DEL with Linux's errors (event may be null for
  // DEL; EFAULT if it is null for ADD/MOD).
  status ctl(int op, int fd, const epoll_event* event);
  // Waits until events (returns how many, >= 1), the deadline (0), or a
  // signal handler runs (EINTR); EINVAL if `out` is empty, as epoll_wait
  // gives for maxevents 0. With a sigmask it is installed atomically
  // for the wait, as epoll_pwait does. `deliver`, if given, is handed the
  // results before they are final; if it returns false the events stay
  // pending (as when Linux fails to copy them out) and wait gives EFAULT.
  using deliver_fn = bool (*)(const epoll_event* events, int n, void* ctx);
  result<int> wait(std::span<epoll_event> out, mono_ns deadline, const sigset_t* sigmask = nullptr,
                   deliver_fn deliver = nullptr, void* ctx = nullptr);

  struct impl;

 private:
  friend struct epoll_access;
  explicit epoll_set(std::unique_ptr<impl> p);
  std::unique_ptr<impl> p_;
};

// The C API's close/dup logic, for C++ callers.
status epoll_close(int fd);

}  // namespace ueq
