// The Catch2 assertion of the differential scenarios: runs one scenario on
// the kernel's epoll and on ueq's, and requires identical traces (both are
// printed when they differ). The fuzz targets use differential.hpp alone.
#pragma once

#include <catch2/catch.hpp>

#include "differential.hpp"

namespace ueq::test {

inline void check(const char* name, const scenario_fn& s) {
  auto [k, u] = run_both(s);
  INFO("scenario: " << name << "\n--- kernel ---\n" << k.str() << "--- ueq ---\n" << u.str());
  REQUIRE(k.lines() == u.lines());
}

}  // namespace ueq::test
