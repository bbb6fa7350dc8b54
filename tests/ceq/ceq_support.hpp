// Shared by the CEQ tests: create-or-fail and drain-everything helpers.
#pragma once

#include <catch2/catch.hpp>
#include <map>
#include <vector>

#include "ueq/ceq/ceq.hpp"

namespace ueq::test {

inline std::unique_ptr<ceq> make_ceq(ceq_options o = {}) {
  auto q = ceq::create(o);
  REQUIRE(q.ok());
  return std::move(q).value();
}

// Drains with get() until empty; returns the messages in order.
inline std::vector<ceq_event> drain(ceq& q) {
  std::vector<ceq_event> out;
  ceq_event ev;
  while (q.get(ev))
    out.push_back(ev);
  return out;
}

// Drains and merges per ID (OR), for checks that do not care about order.
inline std::map<std::uint32_t, std::uint64_t> drain_merged(ceq& q) {
  std::map<std::uint32_t, std::uint64_t> m;
  for (const ceq_event& ev : drain(q))
    m[ev.id] |= ev.bits;
  return m;
}

}  // namespace ueq::test
