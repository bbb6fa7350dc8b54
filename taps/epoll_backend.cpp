// The host-epoll backend: one epoll instance, registrations edge-triggered
// and persistent, plus an eventfd (registered with a reserved key) to break
// a poll from another thread.
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>

#include "ueq/runtime/chunked_table.hpp"
#include "ueq/taps/backend.hpp"

namespace ueq {
namespace {

constexpr std::uint64_t kWakeKey = ~std::uint64_t{0};

class epoll_backend final : public host_backend {
 public:
  epoll_backend(int ep, int efd) : ep_(ep), efd_(efd) {}
  ~epoll_backend() override {
    ::close(efd_);
    ::close(ep_);
  }
  const char* name() const noexcept override { return "epoll"; }
  int pollable_fd() const noexcept override { return ep_; }

  status add(int fd, std::uint32_t events, std::uint64_t key) noexcept override {
    return ctl(EPOLL_CTL_ADD, fd, events, key);
  }
  status modify(int fd, std::uint32_t events, std::uint64_t key) noexcept override {
    return ctl(EPOLL_CTL_MOD, fd, events, key);
  }
  status remove(int fd, std::uint64_t) noexcept override {
    return ::epoll_ctl(ep_, EPOLL_CTL_DEL, fd, nullptr) == 0 ? status{} : status(errno);
  }

  result<std::size_t> poll(std::span<host_event> out, mono_ns deadline,
                           const sigset_t* sigmask) noexcept override {
    epoll_event evs[128];
    const int max = static_cast<int>(std::min<std::size_t>(out.size(), 128));
    if (max == 0) return errno_code(EINVAL);
    timespec rel, *tsp = nullptr;
    if (deadline != kNoDeadline) {
      const mono_ns left = std::max<mono_ns>(0, deadline - monotonic_now());
      rel = to_timespec(left);
      tsp = &rel;
    }
    const int n = ::epoll_pwait2(ep_, evs, max, tsp, sigmask);
    if (n < 0) return errno_code(errno);
    std::size_t k = 0;
    for (int i = 0; i < n; ++i) {
      if (evs[i].data.u64 == kWakeKey) {
        // Clear "wake pending" before draining the eventfd: a wake() after
        // the clear writes again, so none is lost (at worst one extra).
        // seq_cst pairs with the exchange in wake().
        wake_pending_.store(false, std::memory_order_seq_cst);
        std::uint64_t v;
        (void)::read(efd_, &v, sizeof v);
        continue;
      }
      out[k++] = {evs[i].data.u64, evs[i].events};
    }
    return k;
  }

  void wake() noexcept override {
    // Only the first wake() since the poller last drained writes: wakes
    // coalesce. seq_cst: see poll().
    if (wake_pending_.exchange(true, std::memory_order_seq_cst)) return;
    const std::uint64_t one = 1;
    (void)::write(efd_, &one, sizeof one);
  }

 private:
  status ctl(int op, int fd, std::uint32_t events, std::uint64_t key) noexcept {
    epoll_event e{};
    e.events = events | EPOLLET;
    e.data.u64 = key;
    return ::epoll_ctl(ep_, op, fd, &e) == 0 ? status{} : status(errno);
  }

  const int ep_;
  const int efd_;
  std::atomic<bool> wake_pending_{false};
};

}  // namespace

result<std::unique_ptr<host_backend>> make_epoll_backend() {
  // Both descriptors are moved to high numbers so they do not shift the fd
  // numbers the program sees.
  const int ep = hide_fd(::epoll_create1(EPOLL_CLOEXEC));
  if (ep < 0) return errno_code(errno);
  const int efd = hide_fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (efd < 0) {
    const int e = errno;
    ::close(ep);
    return errno_code(e);
  }
  epoll_event e{};
  e.events = EPOLLIN | EPOLLET;
  e.data.u64 = kWakeKey;
  if (::epoll_ctl(ep, EPOLL_CTL_ADD, efd, &e) != 0) {
    const int err = errno;
    ::close(efd);
    ::close(ep);
    return errno_code(err);
  }
  std::unique_ptr<host_backend> b(new (std::nothrow) epoll_backend(ep, efd));
  if (!b) {
    ::close(efd);
    ::close(ep);
    return errno_code(ENOMEM);
  }
  return b;
}

result<std::unique_ptr<host_backend>> make_backend(backend_kind kind) {
  if (kind == backend_kind::automatic) {
    const char* env = std::getenv("UEQ_BACKEND");
    if (env && !std::strcmp(env, "io_uring")) {
      auto u = make_uring_backend();
      if (u) return u;
    }
    return make_epoll_backend();
  }
  return kind == backend_kind::io_uring ? make_uring_backend() : make_epoll_backend();
}

}  // namespace ueq
