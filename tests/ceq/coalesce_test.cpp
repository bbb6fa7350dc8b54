// Exchange-dedup: a slot has at most one live ring entry, and the counters
// say exactly what happened.
#include "ceq_support.hpp"

using ueq::ceq_event;
using ueq::ceq_post_status;
using ueq::test::drain;
using ueq::test::make_ceq;

TEST_CASE("only the post that flips posted pushes the ring; the rest coalesce", "[ceq]") {
  auto q = make_ceq({.ring_size = 4});
  ceq_post_status st;
  REQUIRE(q->post(1, 1, 0, st).ok());
  REQUIRE(st == ceq_post_status::queued);
  for (int i = 0; i < 1000; ++i) {
    REQUIRE(q->post(1, 2, 0, st).ok());
    REQUIRE(st == ceq_post_status::coalesced);
  }
  // 1001 posts to one ID fit a 4-cell ring without overflow.
  auto c = q->counters();
  REQUIRE(c.posts == 1001);
  REQUIRE(c.coalesced == 1000);
  REQUIRE(c.ring_pushes == 1);
  REQUIRE(c.overflows == 0);
  REQUIRE(drain(*q).size() == 1);
  REQUIRE(q->counters().delivered == 1);
}

TEST_CASE("a ring as large as the live slots never overflows", "[ceq]") {
  constexpr std::uint32_t kSlots = 64;
  auto q = make_ceq({.ring_size = kSlots});
  for (int round = 0; round < 50; ++round) {
    for (int rep = 0; rep < 3; ++rep)
      for (std::uint32_t id = 0; id < kSlots; ++id)
        REQUIRE(q->post(id, 1u << rep).ok());
    auto msgs = drain(*q);
    REQUIRE(msgs.size() == kSlots);
    for (auto& m : msgs)
      REQUIRE(m.bits == 0x7);
  }
  REQUIRE(q->counters().overflows == 0);
  REQUIRE(q->counters().recovery_scans == 0);
}

TEST_CASE("max_event_ever tracks the highest ID posted", "[ceq]") {
  auto q = make_ceq({.max_ids = 100000});
  REQUIRE(q->post(10, 1).ok());
  REQUIRE(q->max_event_ever() == 10);
  REQUIRE(q->post(99999, 1).ok());
  REQUIRE(q->post(50, 1).ok());
  REQUIRE(q->max_event_ever() == 99999);
  drain(*q);
  REQUIRE(q->max_event_ever() == 99999);  // high-water, never lowered
}

TEST_CASE("dump shows options, indices, flags, counters and pending slots", "[ceq]") {
  auto q = make_ceq({.ring_size = 2});
  REQUIRE(q->post(5, 0x10, 0x99).ok());
  const std::string d = q->dump();
  REQUIRE(d.find("merge=or ring=2") != std::string::npos);
  REQUIRE(d.find("prod=1 cons_pvt=0 cons_pub=0") != std::string::npos);
  REQUIRE(d.find("overflow=0") != std::string::npos);
  REQUIRE(d.find("posts=1 coalesced=0 ring_pushes=1") != std::string::npos);
  REQUIRE(d.find("slot 5: posted bits=0x10 blob=0x99\n") != std::string::npos);
  REQUIRE(d.find("posted slots: 1") != std::string::npos);
}
