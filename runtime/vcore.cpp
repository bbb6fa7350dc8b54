// vcores: plain std::threads that know their index.
#include "ueq/runtime/vcore.hpp"

#include <sched.h>

namespace ueq {
namespace {
// Per thread, written once by the vcore's own thread before fn runs.
thread_local unsigned tl_vcore = kNoVcore;
}  // namespace

unsigned default_vcore_count() noexcept {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return static_cast<unsigned>(n);
  }
  unsigned n = std::thread::hardware_concurrency();
  return n ? n : 1;
}

unsigned max_vcore_count() noexcept {
  return kVcoresPerCpu * default_vcore_count();
}

unsigned this_vcore() noexcept {
  return tl_vcore;
}

void vcore_group::start(unsigned n, std::function<void(unsigned)> fn) {
  if (n == 0) n = default_vcore_count();
  threads_.reserve(n);
  for (unsigned i = 0; i < n; ++i)
    threads_.emplace_back([fn, i] {
      tl_vcore = i;
      fn(i);
    });
}

void vcore_group::join() {
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
}

}  // namespace ueq
