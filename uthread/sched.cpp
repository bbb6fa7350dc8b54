// The default 2LS's factory; the scheduler itself is in default_sched.hpp,
// where the core can call it without virtual dispatch.
#include "default_sched.hpp"

namespace ueq {

std::unique_ptr<scheduler_2ls> make_default_scheduler() {
  return std::make_unique<detail::default_scheduler>();
}

}  // namespace ueq
