// The one pthread_atfork handler and the table of registered handlers.
//
// The table is filled by static initialisers (and, in principle, later
// calls): g_mu serialises registration, and the prepare handler holds it
// across the fork so no registration is half done in the child; the
// parent and child handlers release it. Handlers run in layer order, and
// within a layer in registration order.
#include "ueq/runtime/fork.hpp"

#include <pthread.h>

#include <atomic>
#include <mutex>

namespace ueq {
namespace {

constexpr int kMaxHandlers = 32;

struct entry {
  fork_layer layer;
  fork_handlers h;
};

// All constinit: static initialisers of other files register handlers,
// and may run before this file's own dynamic initialisation would have.
// Plain std::mutex, not an annotated one: it is held from the prepare
// handler to the parent or child handler, across functions.
constinit std::mutex g_mu;
constinit entry g_table[kMaxHandlers]{};
constinit int g_n = 0;  // under g_mu

// Runs one kind of handler for every layer, in `up` (lowest first) or down
// order. Under g_mu.
template <class Pick>
void run(bool up, Pick pick) noexcept {
  for (int l = 0; l <= static_cast<int>(fork_layer::epoll); ++l) {
    const auto layer = static_cast<fork_layer>(up ? l : static_cast<int>(fork_layer::epoll) - l);
    for (int i = 0; i < g_n; ++i)
      if (g_table[i].layer == layer)
        if (void (*fn)() noexcept = pick(g_table[i].h)) fn();
  }
}

// The forking thread's cancellation state (under g_mu). ueq's own reads,
// writes and closes are system calls (fd.hpp), but a handler may still
// reach a cancellation point of the C library (the opt-in log's stdio, a
// ThreadSanitizer build's calls); fork() is none, and a cancel pending on
// the forking thread must not act inside the handlers (they are noexcept:
// the process would abort), so cancellation is off from prepare to the
// end of parent or child.
constinit int g_cancel_state = PTHREAD_CANCEL_ENABLE;

void prepare() noexcept {
  g_mu.lock();
  (void)::pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &g_cancel_state);
  run(false, [](const fork_handlers& h) { return h.prepare; });
}
void parent() noexcept {
  run(true, [](const fork_handlers& h) { return h.parent; });
  (void)::pthread_setcancelstate(g_cancel_state, nullptr);
  g_mu.unlock();
}
void child() noexcept {
  // relaxed: only this thread runs in the child yet.
  detail::g_fork_generation.fetch_add(1, std::memory_order_relaxed);
  run(true, [](const fork_handlers& h) { return h.child; });
  (void)::pthread_setcancelstate(g_cancel_state, nullptr);
  g_mu.unlock();  // held by this thread since prepare()
}

}  // namespace

bool on_fork(fork_layer layer, const fork_handlers& h) noexcept {
  static const int installed = ::pthread_atfork(&prepare, &parent, &child);
  (void)installed;
  std::lock_guard<std::mutex> g(g_mu);
  if (g_n == kMaxHandlers) return false;
  g_table[g_n++] = {layer, h};
  return true;
}

namespace detail {
constinit std::atomic<std::uint64_t> g_fork_generation{0};
}  // namespace detail

}  // namespace ueq
