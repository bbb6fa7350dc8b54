// The wake channel (taps/wake_channel.hpp): a wake() that lands inside the
// poller's drain is never lost, so a later wake() still breaks a blocked
// poll. The test hook puts the wake() exactly between drained()'s two steps,
// the one place where the order of those steps matters.
#include <poll.h>
#include <sys/epoll.h>

#include <atomic>
#include <catch2/catch.hpp>

#include "../../taps/wake_channel.hpp"
#include "../support.hpp"
#include "taps_support.hpp"
#include "ueq/taps/backend.hpp"

using ueq::deadline_after_ms;
using ueq::detail::wake_channel;

namespace {

// Wakes the channel once from inside the next drained(), then uninstalls.
void wake_inside_drain(wake_channel& ch) {
  wake_channel::test_hook_in_drain.store(nullptr, std::memory_order_relaxed);
  ch.wake();
}

bool readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1;
}

}  // namespace

TEST_CASE("wake channel: a wake() inside drained() leaves the channel able to wake again",
          "[taps]") {
  wake_channel ch;
  REQUIRE(ch.ok());
  ch.wake();
  REQUIRE(readable(ch.fd()));
  wake_channel::test_hook_in_drain.store(&wake_inside_drain, std::memory_order_relaxed);
  ch.drained();
  REQUIRE(wake_channel::test_hook_in_drain.load() == nullptr);  // the hook ran
  // The wake inside the drain was absorbed by this drain (the poller is
  // returning). The next wake must reach the eventfd.
  ch.wake();
  REQUIRE(readable(ch.fd()));
  ch.drained();
  REQUIRE_FALSE(readable(ch.fd()));
  ch.wake();
  REQUIRE(readable(ch.fd()));
}

TEST_CASE("each backend: after a wake() inside its drain, wake() still breaks the poll", "[taps]") {
  {
    auto made = ueq::make_backend(ueq::test::backend_under_test());
    REQUIRE(made.ok());
    auto& b = **made;
    INFO("backend " << b.name());
    ueq::host_event ev[4];
    for (int round = 0; round < 3; ++round) {
      wake_channel::test_hook_in_drain.store(&wake_inside_drain, std::memory_order_relaxed);
      b.wake();
      // Returns at once: the wake is pending. Its drain runs the hook.
      auto t0 = ueq::monotonic_now();
      REQUIRE(b.poll(ev, deadline_after_ms(3000), nullptr).ok());
      REQUIRE(ueq::monotonic_now() - t0 < 1'500'000'000LL);
      REQUIRE(wake_channel::test_hook_in_drain.load() == nullptr);
      // A channel stuck "pending" over an empty eventfd would make this wake
      // a no-op and the poll would run to its 3 s deadline.
      b.wake();
      t0 = ueq::monotonic_now();
      REQUIRE(b.poll(ev, deadline_after_ms(3000), nullptr).ok());
      REQUIRE(ueq::monotonic_now() - t0 < 1'500'000'000LL);
    }
  }
}
