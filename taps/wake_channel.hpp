// An eventfd that breaks a backend's poll from another thread (private to
// taps/). Wakes coalesce: only the first wake() after the poller drained the
// channel writes to the eventfd.
#pragma once

#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>

#include "ueq/runtime/chunked_table.hpp"

namespace ueq::detail {

class wake_channel {
 public:
  // Opens the eventfd (moved to a high number, see hide_fd). ok() tells.
  wake_channel()
      : fd_(hide_fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC))), err_(fd_ < 0 ? errno : 0) {}
  ~wake_channel() {
    if (fd_ >= 0) ::close(fd_);
  }
  wake_channel(const wake_channel&) = delete;
  wake_channel& operator=(const wake_channel&) = delete;

  bool ok() const noexcept { return fd_ >= 0; }
  int error() const noexcept { return err_; }
  int fd() const noexcept { return fd_; }

  void wake() noexcept {
    // seq_cst: pairs with drained(). Either this exchange sees the poller's
    // clear and writes, or the poller has not cleared yet and will read the
    // earlier write.
    if (pending_.exchange(true, std::memory_order_seq_cst)) return;
    const std::uint64_t one = 1;
    (void)::write(fd_, &one, sizeof one);
  }

  // Called by the poller when the eventfd reported readable: clear "wake
  // pending" first, then drain, so a wake() after the clear writes again and
  // none is lost (at worst one extra wakeup).
  void drained() noexcept {
    pending_.store(false, std::memory_order_seq_cst);
    std::uint64_t v;
    (void)::read(fd_, &v, sizeof v);
  }

 private:
  const int fd_;
  const int err_;
  std::atomic<bool> pending_{false};
};

}  // namespace ueq::detail
