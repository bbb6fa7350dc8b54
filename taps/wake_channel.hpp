// An eventfd that breaks a backend's poll from another thread (private to
// taps/). Wakes coalesce: only the first wake() after the poller drained the
// channel writes to the eventfd.
#pragma once

#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>

#include "ueq/runtime/fd.hpp"

namespace ueq::detail {

class wake_channel {
 public:
  // Opens the eventfd (moved to a high number, see hide_fd). ok() tells.
  wake_channel()
      : fd_(hide_fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC))), err_(fd_ < 0 ? errno : 0) {}
  ~wake_channel() {
    if (fd_ >= 0) close_own(fd_);
  }
  wake_channel(const wake_channel&) = delete;
  wake_channel& operator=(const wake_channel&) = delete;

  bool ok() const noexcept { return fd_ >= 0; }
  int error() const noexcept { return err_; }
  int fd() const noexcept { return fd_; }

  // Makes the poller's current or next poll return. The caller's writes
  // before wake() are visible to the poller when that poll returns.
  void wake() noexcept {
    // seq_cst: pairs with drained()'s exchange. The first wake after a drain
    // flips false -> true and writes; later ones find true and skip the
    // system call, because the poller has not drained yet and will return.
    if (pending_.exchange(true, std::memory_order_seq_cst)) return;
    const std::uint64_t one = 1;
    (void)sys_write(fd_, &one, sizeof one);
  }

  // Called by the poller when the eventfd reported readable. Drain first,
  // then clear "wake pending". The reverse order loses wakes: a wake()
  // between the clear and the read writes, the read swallows that write,
  // and the flag stays set over an empty eventfd, so no later wake() writes
  // and a blocked poll is never broken again (tests/model/wake_channel.pml).
  //
  // In this order, a wake() that finds the flag still set (between the read
  // and the clear) needs no write: the poller is awake and returning, and
  // acq_rel on the exchange reads that wake()'s own exchange (an RMW reads
  // the latest value), so the caller sees what the waker did before it. A
  // wake() after the clear flips the flag and writes; its write follows our
  // read, so the eventfd is readable again and the next poll returns.
  void drained() noexcept {
    std::uint64_t v;
    (void)sys_read(fd_, &v, sizeof v);
    // relaxed: tests install the hook before the channel is used.
    if (auto* hook = test_hook_in_drain.load(std::memory_order_relaxed)) hook(*this);
    (void)pending_.exchange(false, std::memory_order_acq_rel);
  }

  // Test-only: called inside drained(), between its two steps, so a test can
  // put a wake() exactly there. Never set outside tests.
  static inline std::atomic<void (*)(wake_channel&)> test_hook_in_drain{nullptr};

 private:
  const int fd_;
  const int err_;
  std::atomic<bool> pending_{false};
};

}  // namespace ueq::detail
