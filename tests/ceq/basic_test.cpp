// Creating a CEQ, posting, merging, blobs, user data and ID bounds.
#include "ceq_support.hpp"

using ueq::ceq;
using ueq::ceq_event;
using ueq::ceq_merge;
using ueq::ceq_options;
using ueq::test::drain;
using ueq::test::make_ceq;

TEST_CASE("create rejects bad options with EINVAL", "[ceq]") {
  REQUIRE(ceq::create({.ring_size = 0}).error().value() == EINVAL);
  REQUIRE(ceq::create({.ring_size = (1u << 30) + 1}).error().value() == EINVAL);
  REQUIRE(ceq::create({.max_ids = 0}).error().value() == EINVAL);
  REQUIRE(ceq::create({.max_ids = std::uint64_t{1} << 32}).error().value() == EINVAL);
  REQUIRE(ceq::create({.max_ids = 0xffffffffull}).ok());
}

TEST_CASE("ring size is rounded up to a power of two", "[ceq]") {
  REQUIRE(make_ceq({.ring_size = 1})->ring_size() == 1);
  REQUIRE(make_ceq({.ring_size = 3})->ring_size() == 4);
  REQUIRE(make_ceq({.ring_size = 1000})->ring_size() == 1024);
}

TEST_CASE("a new CEQ is empty and get reports it", "[ceq]") {
  auto q = make_ceq();
  ceq_event ev;
  REQUIRE(q->empty());
  REQUIRE_FALSE(q->get(ev));
  REQUIRE(q->max_event_ever() == -1);
}

TEST_CASE("OR merge: posts to one ID between harvests become one message", "[ceq]") {
  auto q = make_ceq();
  REQUIRE(q->post(7, 0x1).ok());
  REQUIRE(q->post(7, 0x4).ok());
  REQUIRE(q->post(7, 0x1).ok());
  REQUIRE_FALSE(q->empty());
  auto msgs = drain(*q);
  REQUIRE(msgs.size() == 1);
  REQUIRE(msgs[0].id == 7);
  REQUIRE(msgs[0].bits == 0x5);
  REQUIRE(q->empty());
  // After a harvest the next post is a fresh message again.
  REQUIRE(q->post(7, 0x2).ok());
  msgs = drain(*q);
  REQUIRE(msgs.size() == 1);
  REQUIRE(msgs[0].bits == 0x2);
}

TEST_CASE("ADD merge sums the posted words", "[ceq]") {
  auto q = make_ceq({.merge = ceq_merge::add});
  for (int i = 1; i <= 10; ++i)
    REQUIRE(q->post(3, i).ok());
  auto msgs = drain(*q);
  REQUIRE(msgs.size() == 1);
  REQUIRE(msgs[0].bits == 55);
}

TEST_CASE("the blob is last-writer-wins", "[ceq]") {
  auto q = make_ceq();
  REQUIRE(q->post(1, 1, 100).ok());
  REQUIRE(q->post(1, 1, 200).ok());
  auto msgs = drain(*q);
  REQUIRE(msgs.size() == 1);
  REQUIRE(msgs[0].blob == 200);
}

TEST_CASE("distinct IDs come out in first-post order through the ring", "[ceq]") {
  auto q = make_ceq();
  for (std::uint32_t id : {5u, 1u, 9u, 1u, 5u})
    REQUIRE(q->post(id, 1).ok());
  auto msgs = drain(*q);
  REQUIRE(msgs.size() == 3);
  REQUIRE(msgs[0].id == 5);
  REQUIRE(msgs[1].id == 1);
  REQUIRE(msgs[2].id == 9);
}

TEST_CASE("post rejects IDs at or past max_ids with EINVAL", "[ceq]") {
  auto q = make_ceq({.max_ids = 100});
  REQUIRE(q->post(100, 1).value() == EINVAL);
  REQUIRE(q->post(0xfffffffeu, 1).value() == EINVAL);
  REQUIRE(q->post(99, 1).ok());
  REQUIRE(q->max_event_ever() == 99);
}

TEST_CASE("IDs are 32-bit end to end: no aliasing above 65535", "[ceq]") {
  auto q = make_ceq({.max_ids = 0xffffffffull});
  const std::uint32_t ids[] = {3, 65536 + 3, 1u << 20, 0xfffffffeu};
  for (std::uint32_t id : ids)
    REQUIRE(q->post(id, id == 3 ? 1 : 2).ok());
  auto msgs = drain(*q);
  REQUIRE(msgs.size() == 4);
  for (std::size_t i = 0; i < 4; ++i) {
    REQUIRE(msgs[i].id == ids[i]);
    REQUIRE(msgs[i].bits == (ids[i] == 3 ? 1u : 2u));
  }
  REQUIRE(q->max_event_ever() == 0xfffffffeLL);
}

TEST_CASE("a zero-bit post is delivered as a zero-bit message and counted", "[ceq]") {
  auto q = make_ceq();
  REQUIRE(q->post(2, 0, 9).ok());
  auto msgs = drain(*q);
  REQUIRE(msgs.size() == 1);
  REQUIRE(msgs[0].bits == 0);
  REQUIRE(msgs[0].blob == 9);
  REQUIRE(q->counters().empty_messages == 1);
}

TEST_CASE("get_batch returns up to its capacity and leaves the rest", "[ceq]") {
  auto q = make_ceq();
  for (std::uint32_t id = 0; id < 10; ++id)
    REQUIRE(q->post(id, 1u << (id % 8)).ok());
  ceq_event buf[4];
  REQUIRE(q->get_batch(buf) == 4);
  for (std::uint32_t i = 0; i < 4; ++i)
    REQUIRE(buf[i].id == i);
  ceq_event rest[16];
  REQUIRE(q->get_batch(rest) == 6);
  REQUIRE(rest[5].id == 9);
  REQUIRE(q->get_batch(rest) == 0);
  REQUIRE(q->empty());
}
