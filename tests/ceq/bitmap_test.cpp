// The bitmap mailbox: one bit per ID, coalescing, no payload, nothing lost
// under concurrent producers and consumers.
#include <atomic>
#include <catch2/catch.hpp>
#include <thread>
#include <vector>

#include "../support.hpp"
#include "ueq/ceq/bitmap_mailbox.hpp"

using ueq::bitmap_mailbox;
using ueq::event_msg;

TEST_CASE("bitmap: bad sizes and IDs give EINVAL", "[evq]") {
  REQUIRE(bitmap_mailbox::create(0).error().value() == EINVAL);
  REQUIRE(bitmap_mailbox::create((1u << 24) + 1).error().value() == EINVAL);
  auto m = std::move(bitmap_mailbox::create(10)).value();
  REQUIRE(m->post(10).value() == EINVAL);
  REQUIRE(m->empty());
}

TEST_CASE("bitmap: posts to one ID coalesce into one message without payload", "[evq]") {
  auto m = std::move(bitmap_mailbox::create(130)).value();
  REQUIRE(m->post(129).ok());
  REQUIRE(m->post(129).ok());
  REQUIRE(m->post(3).ok());
  REQUIRE_FALSE(m->empty());
  event_msg out[8];
  REQUIRE(m->get_batch(out) == 2);
  REQUIRE(out[0].id == 3);  // ascending per scan
  REQUIRE(out[1].id == 129);
  REQUIRE(out[1].bits == 1);
  REQUIRE(out[1].blob == 0);
  REQUIRE(m->empty());
  event_msg one;
  REQUIRE_FALSE(m->get(one));
  auto c = m->counters();
  REQUIRE(c.posts == 3);
  REQUIRE(c.coalesced == 1);
  REQUIRE(c.delivered == 2);
}

TEST_CASE("bitmap: no post lost with concurrent producers and consumers", "[evq][stress]") {
  constexpr std::uint32_t kBits = 200;
  const std::uint64_t rounds = ueq::test::scaled(2000);
  auto m = std::move(bitmap_mailbox::create(kBits)).value();
  // Each producer owns IDs p, p+3, ...; it posts one, then waits (bounded)
  // until a consumer delivered it before posting it again: every post must
  // come out exactly once.
  std::vector<std::atomic<std::uint64_t>> seen(kBits);
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0};
  std::vector<std::thread> consumers;
  for (int c = 0; c < 2; ++c)
    consumers.emplace_back([&] {
      event_msg buf[16];
      while (!stop.load(std::memory_order_acquire)) {
        const std::size_t n = m->get_batch(buf);
        for (std::size_t i = 0; i < n; ++i)
          seen[buf[i].id].fetch_add(1);
        if (n == 0) std::this_thread::yield();
      }
    });
  std::vector<std::thread> producers;
  for (std::uint32_t p = 0; p < 3; ++p)
    producers.emplace_back([&, p] {
      for (std::uint64_t r = 1; r <= rounds && failures.load() == 0; ++r)
        for (std::uint32_t id = p; id < kBits; id += 3) {
          if (!m->post(id).ok()) failures.fetch_add(1);
          if (!ueq::test::wait_until([&] { return seen[id].load() >= r; })) failures.fetch_add(1);
          if (seen[id].load() != r) failures.fetch_add(1);  // delivered twice
        }
    });
  for (auto& t : producers)
    t.join();
  stop.store(true, std::memory_order_release);
  for (auto& t : consumers)
    t.join();
  REQUIRE(failures.load() == 0);
  REQUIRE(m->empty());
}
