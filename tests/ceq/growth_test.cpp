// The slot table: mapped lazily, grown while producers run, reservable.
#include <atomic>
#include <barrier>
#include <thread>

#include "../support.hpp"
#include "ceq_support.hpp"

using ueq::ceq_event;
using ueq::test::drain_merged;
using ueq::test::make_ceq;

TEST_CASE("slots in chunks never touched are not mapped", "[ceq]") {
  auto q = make_ceq({.max_ids = 0xffffffffull});
  REQUIRE(q->post(123456789, 1).ok());  // maps one chunk of 2^22
  auto got = drain_merged(*q);
  REQUIRE(got.size() == 1);
  REQUIRE(got[123456789] == 1);
}

TEST_CASE("reserve maps a range so later posts cannot fail; bad ranges get EINVAL", "[ceq]") {
  auto q = make_ceq({.max_ids = 100000});
  REQUIRE(q->reserve(0, 99999).ok());
  REQUIRE(q->reserve(10, 5).value() == EINVAL);
  REQUIRE(q->reserve(0, 100000).value() == EINVAL);
  for (std::uint32_t id = 0; id < 100000; id += 997)
    REQUIRE(q->post(id, 1).ok());
  REQUIRE(drain_merged(*q).size() == (100000 + 996) / 997);
}

TEST_CASE("the table grows while producers race to map the same chunks", "[ceq]") {
  constexpr int kProducers = 4;
  constexpr std::uint32_t kChunks = 200;
  for (int iter = 0; iter < static_cast<int>(ueq::test::scaled(10)); ++iter) {
    auto q = make_ceq({.ring_size = 1024, .max_ids = kChunks * 1024});
    std::barrier start(kProducers);
    std::atomic<int> errors{0};  // Catch2 assertions are main-thread only
    std::vector<std::thread> ts;
    for (int p = 0; p < kProducers; ++p)
      ts.emplace_back([&, p] {
        start.arrive_and_wait();
        // Every producer touches every chunk first-time, in the same order,
        // so installs collide.
        for (std::uint32_t c = 0; c < kChunks; ++c)
          if (!q->post(c * 1024 + 3, 1u << p).ok()) errors.fetch_add(1);
      });
    for (auto& t : ts)
      t.join();
    REQUIRE(errors.load() == 0);
    auto got = drain_merged(*q);
    REQUIRE(got.size() == kChunks);
    for (auto& [id, bits] : got)
      REQUIRE(bits == 0xf);
  }
}
