// ueq/runtime/clock.hpp — deadlines on CLOCK_MONOTONIC.
//
// What it is for: one time base for every timeout in ueq. A deadline is an
// absolute point on CLOCK_MONOTONIC in nanoseconds, computed once per call,
// so that a wait that is interrupted or woken spuriously resumes with the
// time that is left, never with the full timeout again.
//
// Thread-safety: pure functions.
//
// Usage:
//   ueq::mono_ns d = ueq::deadline_after_ms(250);
//   while (!ready()) if (ueq::monotonic_now() >= d) return ETIMEDOUT; ...
#pragma once

#include <time.h>

#include <cstdint>

namespace ueq {

using mono_ns = std::int64_t;  // nanoseconds on CLOCK_MONOTONIC
inline constexpr mono_ns kNoDeadline = INT64_MAX;
// A deadline that has always passed: what a zero timeout gives. A wait with
// it checks once and does not block, and need not read the clock.
inline constexpr mono_ns kImmediate = 0;

inline mono_ns monotonic_now() noexcept {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<mono_ns>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// now + ns, saturating at kNoDeadline; a negative timeout means "no deadline",
// a zero one kImmediate.
inline mono_ns deadline_after_ns(std::int64_t ns) noexcept {
  if (ns < 0) return kNoDeadline;
  if (ns == 0) return kImmediate;
  const mono_ns now = monotonic_now();
  return ns >= kNoDeadline - now ? kNoDeadline : now + ns;
}
inline mono_ns deadline_after_ms(std::int64_t ms) noexcept {
  if (ms < 0) return kNoDeadline;
  return ms > kNoDeadline / 1'000'000 ? kNoDeadline : deadline_after_ns(ms * 1'000'000);
}

// The time left until deadline t (not kNoDeadline), 0 once it has passed.
inline mono_ns time_left(mono_ns t) noexcept {
  if (t <= kImmediate) return 0;
  const mono_ns left = t - monotonic_now();
  return left > 0 ? left : 0;
}

// The deadline as an absolute timespec (for futex, ppoll-style calls).
inline timespec to_timespec(mono_ns t) noexcept {
  return {static_cast<time_t>(t / 1'000'000'000), static_cast<long>(t % 1'000'000'000)};
}

}  // namespace ueq
