// The per-thread record of held ordered locks (lock_order.hpp).
#include "ueq/runtime/lock_order.hpp"

#include <cstdio>
#include <cstdlib>

namespace ueq {

const char* to_string(lock_level l) noexcept {
  switch (l) {
    case lock_level::unordered:
      return "unordered";
    case lock_level::epoll_service:
      return "epoll_service";
    case lock_level::epoll_registry:
      return "epoll_registry";
    case lock_level::epoll_set:
      return "epoll_set";
    case lock_level::epoll_parents:
      return "epoll_parents";
    case lock_level::io_state:
      return "io_state";
    case lock_level::io_entry:
      return "io_entry";
    case lock_level::tap_default:
      return "tap_default";
    case lock_level::tap_attach:
      return "tap_attach";
    case lock_level::tap_fd:
      return "tap_fd";
    case lock_level::tap_slot:
      return "tap_slot";
    case lock_level::tap_lists:
      return "tap_lists";
    case lock_level::backend:
      return "backend";
    case lock_level::event_queue:
      return "event_queue";
    case lock_level::mailbox:
      return "mailbox";
    case lock_level::timer:
      return "timer";
    case lock_level::parker:
      return "parker";
  }
  return "?";
}

namespace detail {
namespace {

struct held_lock {
  const void* lock;
  lock_level level;
};
// Far deeper than any path in ueq nests; more is a bug.
constexpr int kMaxHeld = 16;
struct held_record {
  held_lock locks[kMaxHeld];
  int n = 0;
};
thread_local held_record tl_held;

[[noreturn]] void violation(const char* what, lock_level taking, lock_level held) noexcept {
  std::fprintf(stderr, "ueq: lock order violated: %s %s (level %d) while holding %s (level %d)\n",
               what, to_string(taking), static_cast<int>(taking), to_string(held),
               static_cast<int>(held));
  std::abort();
}

bool nests_in_itself(lock_level l) noexcept {
  return l == lock_level::epoll_parents;
}

}  // namespace

void lock_order_record(const void* lock, lock_level level) noexcept {
  if (level == lock_level::unordered) return;
  held_record& r = tl_held;
  if (r.n == kMaxHeld) {
    std::fprintf(stderr, "ueq: more than %d ordered locks held by one thread\n", kMaxHeld);
    std::abort();
  }
  r.locks[r.n++] = {lock, level};
}

void lock_order_check(const void* lock, lock_level level) noexcept {
  if (level == lock_level::unordered) return;
  const held_record& r = tl_held;
  for (int i = 0; i < r.n; ++i) {
    const held_lock& h = r.locks[i];
    if (h.lock == lock) violation("taking again", level, h.level);
    if (h.level > level || (h.level == level && !nests_in_itself(level)))
      violation("taking", level, h.level);
  }
}

void lock_order_release(const void* lock) noexcept {
  held_record& r = tl_held;
  // Usually the last one taken; scan down, and close the gap.
  for (int i = r.n - 1; i >= 0; --i) {
    if (r.locks[i].lock != lock) continue;
    for (int j = i; j + 1 < r.n; ++j)
      r.locks[j] = r.locks[j + 1];
    --r.n;
    return;
  }
}

int lock_order_depth() noexcept {
  return tl_held.n;
}

void lock_order_expect_none(const char* what) noexcept {
  const held_record& r = tl_held;
  if (r.n == 0) return;
  std::fprintf(stderr, "ueq: lock order violated: %s while holding %s (level %d)\n", what,
               to_string(r.locks[r.n - 1].level), static_cast<int>(r.locks[r.n - 1].level));
  std::abort();
}

}  // namespace detail
}  // namespace ueq
