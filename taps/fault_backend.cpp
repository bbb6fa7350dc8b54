// A host backend that fails on purpose (see fault.hpp).
#include <new>

#include "ueq/taps/fault.hpp"

namespace ueq {
namespace {

// Takes one failure off `count` if any is left.
bool take(std::atomic<int>& count) noexcept {
  int n = count.load(std::memory_order_relaxed);
  while (n > 0)
    if (count.compare_exchange_weak(n, n - 1, std::memory_order_relaxed)) return true;
  return false;
}

class faulty_backend final : public host_backend {
 public:
  faulty_backend(std::unique_ptr<host_backend> inner, fault_plan* plan)
      : inner_(std::move(inner)), plan_(plan) {}
  const char* name() const noexcept override { return inner_->name(); }
  int pollable_fd() const noexcept override { return inner_->pollable_fd(); }

  status add(int fd, std::uint32_t events, std::uint64_t key) noexcept override {
    if (take(plan_->fail_adds)) return injected(plan_->add_errno);
    return inner_->add(fd, events, key);
  }
  status modify(int fd, std::uint32_t events, std::uint64_t key) noexcept override {
    if (take(plan_->fail_modifies)) return injected(plan_->modify_errno);
    return inner_->modify(fd, events, key);
  }
  status remove(int fd, std::uint64_t key) noexcept override {
    if (take(plan_->fail_removes)) {
      // The registration must still go (the caller forgets it either way).
      (void)inner_->remove(fd, key);
      return injected(plan_->remove_errno);
    }
    return inner_->remove(fd, key);
  }
  result<std::size_t> poll(std::span<host_event> out, mono_ns deadline,
                           const sigset_t* sigmask) noexcept override {
    if (take(plan_->fail_polls)) return injected(plan_->poll_errno).code();
    return inner_->poll(out, deadline, sigmask);
  }
  void wake() noexcept override { inner_->wake(); }

 private:
  status injected(int e) noexcept {
    plan_->injected.fetch_add(1, std::memory_order_relaxed);
    return status(e);
  }
  std::unique_ptr<host_backend> inner_;
  fault_plan* plan_;
};

}  // namespace

result<std::unique_ptr<host_backend>> make_faulty_backend(std::unique_ptr<host_backend> inner,
                                                          fault_plan* plan) {
  if (!inner || !plan) return errno_code(EINVAL);
  std::unique_ptr<host_backend> b(new (std::nothrow) faulty_backend(std::move(inner), plan));
  if (!b) return errno_code(ENOMEM);
  return b;
}

}  // namespace ueq
