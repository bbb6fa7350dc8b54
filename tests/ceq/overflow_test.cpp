// The overflow path: a full ring sets the flag, a resumable recovery scan
// finds every pending slot, stale entries are skipped, get never stops early.
#include <thread>

#include "../support.hpp"
#include "ceq_support.hpp"

namespace ueq {
struct ceq_test_access {
  static bool push_ring(ceq& q, std::uint32_t id) { return q.push_ring(id); }
};
}  // namespace ueq

using ueq::ceq_event;
using ueq::ceq_post_status;
using ueq::test::drain;
using ueq::test::drain_merged;
using ueq::test::make_ceq;

TEST_CASE("a full ring overflows and recovery delivers every pending ID", "[ceq]") {
  for (std::uint32_t ring : {1u, 2u, 8u}) {
    auto q = make_ceq({.ring_size = ring});
    constexpr std::uint32_t kIds = 100;
    ceq_post_status st;
    for (std::uint32_t id = 0; id < kIds; ++id) {
      REQUIRE(q->post(id * 37, id + 1, 0, st).ok());
      REQUIRE(st == (id < ring ? ceq_post_status::queued : ceq_post_status::overflowed));
    }
    REQUIRE_FALSE(q->empty());
    auto got = drain_merged(*q);
    REQUIRE(got.size() == kIds);
    for (std::uint32_t id = 0; id < kIds; ++id)
      REQUIRE(got[id * 37] == id + 1);
    REQUIRE(q->empty());
    auto c = q->counters();
    REQUIRE(c.overflows == kIds - ring);
    REQUIRE(c.recovery_scans == 1);
    REQUIRE(c.slots_scanned >= 99 * 37);
  }
}

TEST_CASE("recovery is resumable: one get at a time, posts in between", "[ceq]") {
  auto q = make_ceq({.ring_size = 1});
  for (std::uint32_t id = 0; id < 10; ++id)
    REQUIRE(q->post(id, 1).ok());
  ceq_event ev;
  REQUIRE(q->get(ev));  // ring entry: id 0
  REQUIRE(ev.id == 0);
  REQUIRE(q->get(ev));  // scan starts: id 1
  REQUIRE(ev.id == 1);
  REQUIRE(q->get(ev));
  REQUIRE(ev.id == 2);
  // Posting to an ID the scan has passed re-queues it through the ring; one
  // the scan has not reached is merged into its pending slot.
  REQUIRE(q->post(1, 2).ok());
  REQUIRE(q->post(8, 2).ok());
  std::map<std::uint32_t, std::uint64_t> rest = drain_merged(*q);
  REQUIRE(rest.size() == 8);  // 1 and 3..9
  REQUIRE(rest[1] == 2);
  REQUIRE(rest[8] == 3);
  REQUIRE(q->counters().recovery_scans == 1);
}

TEST_CASE("stale and duplicate ring entries are skipped and get keeps going", "[ceq]") {
  // Akaros returned "nothing" at the first stale entry although later ring
  // entries were live. A stale entry arises when two consumers race on a
  // slot (or a scan harvests a slot whose entry is still queued); inject
  // such entries directly: [1, 1 (duplicate), 77 (never posted), 2].
  auto q = make_ceq({.ring_size = 8});
  REQUIRE(q->post(1, 1).ok());
  REQUIRE(ueq::ceq_test_access::push_ring(*q, 1));
  REQUIRE(ueq::ceq_test_access::push_ring(*q, 77));
  REQUIRE(q->post(2, 4).ok());
  ceq_event ev;
  REQUIRE(q->get(ev));
  REQUIRE(ev.id == 1);
  REQUIRE(q->get(ev));  // skips the duplicate of 1 and the unposted 77
  REQUIRE(ev.id == 2);
  REQUIRE(ev.bits == 4);
  REQUIRE_FALSE(q->get(ev));
  REQUIRE(q->counters().stale_entries == 2);
  REQUIRE(q->counters().delivered == 2);
}

TEST_CASE("recovery with several consumers loses nothing (tiny ring)", "[ceq]") {
  for (int iter = 0; iter < static_cast<int>(ueq::test::scaled(20)); ++iter) {
    auto q = make_ceq({.ring_size = 1, .max_ids = 4096});
    constexpr std::uint32_t kIds = 600;
    for (std::uint32_t id = 0; id < kIds; ++id)
      REQUIRE(q->post(id * 5, 1).ok());
    std::atomic<std::uint32_t> count{0};
    std::vector<std::vector<std::uint32_t>> seen(3);
    std::vector<std::thread> ts;
    for (int c = 0; c < 3; ++c)
      ts.emplace_back([&, c] {
        ceq_event ev;
        while (q->get(ev))
          if (ev.bits) {
            seen[c].push_back(ev.id);
            count.fetch_add(1);
          }
      });
    for (auto& t : ts)
      t.join();
    // Once every consumer saw "empty", everything was delivered exactly once
    // (one post per ID: no bits to duplicate).
    REQUIRE(count.load() == kIds);
    std::vector<bool> hit(kIds * 5, false);
    for (auto& v : seen)
      for (std::uint32_t id : v) {
        REQUIRE_FALSE(hit[id]);
        hit[id] = true;
      }
    REQUIRE(q->empty());
  }
}
