// ueq/taps/fault.hpp — fault injection at the host-backend seam.
//
// What it is for: proving that every error the host kernel can return on
// the event path (EMFILE, ENOMEM, EINTR, EAGAIN storms, io_uring refused)
// gives the caller a clear error and leaves the runtime usable. A
// faulty_backend wraps a real backend and makes chosen calls fail; a
// tap_service built on it (tap_service::create(std::unique_ptr<host_backend>))
// then meets those failures exactly where the kernel's would arrive.
// UEQ_DISABLE_IO_URING=1 in the environment makes io_uring look unavailable
// (also an operator's switch where io_uring misbehaves).
//
// Thread-safety: the plan's counters are atomics; calls may race.
//
// Usage:
//   ueq::fault_plan plan;
//   plan.add_errno = ENOMEM;
//   plan.fail_adds = 1;                       // the next add fails
//   auto b = ueq::make_faulty_backend(std::move(*ueq::make_epoll_backend()), &plan);
//   auto svc = ueq::tap_service::create(std::move(*b));
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "ueq/taps/backend.hpp"

namespace ueq {

struct fault_plan {
  // Each counter says how many of the next calls of that kind fail (with the
  // errno beside it); it counts down as they do. Set them at any time.
  std::atomic<int> fail_adds{0};
  int add_errno = ENOMEM;
  std::atomic<int> fail_modifies{0};
  int modify_errno = ENOMEM;
  std::atomic<int> fail_removes{0};
  int remove_errno = EBADF;
  std::atomic<int> fail_polls{0};
  int poll_errno = EINTR;
  // Calls that failed because of the plan, per kind (for the tests).
  std::atomic<int> injected{0};
};

// The plan must outlive the backend.
result<std::unique_ptr<host_backend>> make_faulty_backend(std::unique_ptr<host_backend> inner,
                                                          fault_plan* plan);

}  // namespace ueq
