// The io_uring backend: one multishot POLL_ADD per registration (several
// polls on one fd are independent requests, so several registrations of an
// fd need nothing special).
//
// Each arming gets a fresh 64-bit "arm id" as its user_data; arms_ maps it to
// {fd, events, key}. Removing or modifying cancels the arm (POLL_REMOVE runs
// inline when submitted) and forgets its id, so any CQE of it still in the
// completion ring is recognised as stale and dropped: no event of a removed
// registration reaches a caller. A multishot poll that ends by itself (a CQE
// without IORING_CQE_F_MORE: CQ overflow, or the kernel's choice) is armed
// again under a new id. io_uring polls hold a file reference, so closing the
// fd does not cancel them: the taps layer removes before it closes.
//
// Locking: mu_ guards the submission queue and arms_/by_key_. The completion
// ring is only touched by the single poller (poll() is one-at-a-time), which
// takes mu_ while looking up arms and re-arming.
#include <fcntl.h>
#include <liburing.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <absl/container/flat_hash_map.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <mutex>
#include <new>

#include "ueq/runtime/fd.hpp"
#include "ueq/runtime/lock.hpp"
#include "ueq/taps/backend.hpp"
#include "wake_channel.hpp"

namespace ueq {
namespace {

constexpr std::uint64_t kWakeArm = ~std::uint64_t{0};
constexpr std::uint64_t kIgnore = ~std::uint64_t{0} - 1;  // completions of cancels

class uring_backend final : public host_backend {
 public:
  ~uring_backend() override {
    if (!inited_) return;
    // liburing closes ring_fd itself (a raw system call); the runtime's own
    // fds are closed by close_own(), which also forgets them.
    const int fd = ring_.ring_fd;
    ring_.ring_fd = -1;
    io_uring_queue_exit(&ring_);
    close_own(fd);
  }
  const char* name() const noexcept override { return "io_uring"; }
  int pollable_fd() const noexcept override { return ring_.ring_fd; }

  static result<std::unique_ptr<host_backend>> create() {
    std::unique_ptr<uring_backend> b(new (std::nothrow) uring_backend);
    if (!b) return errno_code(ENOMEM);
    if (int rc = io_uring_queue_init(256, &b->ring_, 0); rc < 0) return errno_code(-rc);
    b->inited_ = true;
    // The ring's fd is the runtime's own (a program's "close every fd" must
    // not take it): a high number, recorded by hide_fd(). The rings stay
    // mapped whatever the number; liburing enters through enter_ring_fd.
    const int hidden = hide_fd(b->ring_.ring_fd);
    b->ring_.ring_fd = hidden;
    b->ring_.enter_ring_fd = hidden;
    // Deadlines without a timeout SQE need EXT_ARG (Linux 5.11).
    if (!(b->ring_.features & IORING_FEAT_EXT_ARG)) return errno_code(ENOSYS);
    if (!b->wake_.ok()) return errno_code(b->wake_.error());
    // Probe multishot poll for real: arm the wake eventfd, poke it, and
    // expect a completion that says more will follow.
    {
      lock_guard<os_mutex> g(b->mu_);
      if (status s = b->arm_locked(b->wake_.fd(), EPOLLIN, kWakeArm); !s.ok()) return s.code();
      if (status s = b->submit_locked(); !s.ok()) return s.code();
    }
    b->wake_.wake();
    io_uring_cqe* cqe = nullptr;
    __kernel_timespec ts{1, 0};
    if (int rc = io_uring_wait_cqe_timeout(&b->ring_, &cqe, &ts); rc < 0) return errno_code(-rc);
    const bool ok = cqe->user_data == kWakeArm && cqe->res > 0 && (cqe->flags & IORING_CQE_F_MORE);
    const int res = cqe->res;
    io_uring_cqe_seen(&b->ring_, cqe);
    if (!ok) return errno_code(res < 0 ? -res : ENOSYS);
    b->wake_.drained();
    return std::unique_ptr<host_backend>(std::move(b));
  }

  status add(int fd, std::uint32_t events, std::uint64_t key) noexcept override {
    lock_guard<os_mutex> g(mu_);
    if (by_key_.contains(key)) return status(EEXIST);
    if (::fcntl(fd, F_GETFD) < 0) return status(EBADF);
    const std::uint64_t id = next_arm_++;
    if (status s = arm_locked(fd, events, id); !s.ok()) return s;
    arms_[id] = {fd, events, key};
    by_key_[key] = id;
    return submit_locked();
  }

  status modify(int fd, std::uint32_t events, std::uint64_t key) noexcept override {
    lock_guard<os_mutex> g(mu_);
    auto it = by_key_.find(key);
    if (it == by_key_.end()) return status(ENOENT);
    if (status s = cancel_locked(it->second); !s.ok()) return s;
    arms_.erase(it->second);
    const std::uint64_t id = next_arm_++;
    if (status s = arm_locked(fd, events, id); !s.ok()) return s;
    arms_[id] = {fd, events, key};
    it->second = id;
    return submit_locked();
  }

  status remove(int, std::uint64_t key) noexcept override {
    lock_guard<os_mutex> g(mu_);
    auto it = by_key_.find(key);
    if (it == by_key_.end()) return status(ENOENT);
    const std::uint64_t id = it->second;
    by_key_.erase(it);
    arms_.erase(id);
    if (status s = cancel_locked(id); !s.ok()) return s;
    return submit_locked();
  }

  result<std::size_t> poll(std::span<host_event> out, mono_ns deadline,
                           const sigset_t* sigmask) noexcept override {
    if (out.empty()) return errno_code(EINVAL);
    io_uring_cqe* cqe = nullptr;
    __kernel_timespec ts, *tsp = nullptr;
    if (deadline != kNoDeadline) {
      const mono_ns left = time_left(deadline);
      ts.tv_sec = left / 1'000'000'000;
      ts.tv_nsec = left % 1'000'000'000;
      tsp = &ts;
    }
    int rc = io_uring_wait_cqes(&ring_, &cqe, 1, tsp, const_cast<sigset_t*>(sigmask));
    if (rc == -ETIME) return std::size_t{0};
    if (rc < 0) return errno_code(-rc);
    std::size_t k = 0;
    unsigned seen = 0;
    unsigned head;
    lock_guard<os_mutex> g(mu_);
    io_uring_for_each_cqe(&ring_, head, cqe) {
      if (k == out.size()) break;
      ++seen;
      const std::uint64_t id = cqe->user_data;
      const bool more = cqe->flags & IORING_CQE_F_MORE;
      if (id == kIgnore) continue;
      if (id == kWakeArm) {
        wake_.drained();
        if (!more) (void)arm_locked(wake_.fd(), EPOLLIN, kWakeArm);
        continue;
      }
      auto it = arms_.find(id);
      if (it == arms_.end()) continue;  // a cancelled arm's leftovers
      const arm a = it->second;
      const std::uint32_t bits =
          cqe->res > 0 ? static_cast<std::uint32_t>(cqe->res) & (a.events | EPOLLERR | EPOLLHUP)
                       : 0;
      if (bits) out[k++] = {a.key, bits};
      if (!more) {
        // The multishot ended without us cancelling it. Re-arm under a new
        // id, unless the fd itself is gone (then report an error event).
        arms_.erase(it);
        if (cqe->res == -EBADF) {  // the file is gone: say so once, do not re-arm
          by_key_.erase(a.key);
          if (k < out.size()) out[k++] = {a.key, EPOLLERR | EPOLLHUP};
          continue;
        }
        const std::uint64_t nid = next_arm_++;
        if (arm_locked(a.fd, a.events, nid).ok()) {
          arms_[nid] = a;
          by_key_[a.key] = nid;
        }
      }
    }
    io_uring_cq_advance(&ring_, seen);
    (void)submit_locked();
    return k;
  }

  void wake() noexcept override { wake_.wake(); }

 private:
  struct arm {
    int fd;
    std::uint32_t events;
    std::uint64_t key;
  };
  uring_backend() = default;

  io_uring_sqe* sqe_locked() noexcept {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (!sqe) {  // submission queue full: flush it and try once more
      io_uring_submit(&ring_);
      sqe = io_uring_get_sqe(&ring_);
    }
    return sqe;
  }
  status arm_locked(int fd, std::uint32_t events, std::uint64_t id) noexcept {
    io_uring_sqe* sqe = sqe_locked();
    if (!sqe) return status(EAGAIN);
    // Out-of-band TCP data wakes pollers with a key that an io_uring poll
    // armed for EPOLLPRI alone does not match (seen on Linux 6.x; host epoll
    // matches it): arm with EPOLLIN as well. poll() reports only the bits
    // asked for.
    // EPOLLEXCLUSIVE is an epoll registration flag: not passed on.
    events &= ~static_cast<std::uint32_t>(EPOLLEXCLUSIVE);
    io_uring_prep_poll_multishot(sqe, fd, (events & EPOLLPRI) ? events | EPOLLIN : events);
    io_uring_sqe_set_data64(sqe, id);
    return {};
  }
  status cancel_locked(std::uint64_t id) noexcept {
    io_uring_sqe* sqe = sqe_locked();
    if (!sqe) return status(EAGAIN);
    io_uring_prep_poll_remove(sqe, id);
    io_uring_sqe_set_data64(sqe, kIgnore);
    return {};
  }
  status submit_locked() noexcept {
    const int rc = io_uring_submit(&ring_);
    return rc < 0 ? status(-rc) : status{};
  }

  io_uring ring_{};
  bool inited_ = false;
  detail::wake_channel wake_;
  os_mutex mu_{lock_level::backend};
  absl::flat_hash_map<std::uint64_t, arm> arms_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::uint64_t, std::uint64_t> by_key_ ABSL_GUARDED_BY(mu_);  // key -> arm id
  std::uint64_t next_arm_ ABSL_GUARDED_BY(mu_) = 1;
};

}  // namespace

result<std::unique_ptr<host_backend>> make_uring_backend() {
  // An operator's (and the fault tests') switch: behave as if the kernel
  // refused io_uring.
  if (const char* off = std::getenv("UEQ_DISABLE_IO_URING"); off && *off && *off != '0')
    return errno_code(ENOSYS);
  return uring_backend::create();
}

}  // namespace ueq
