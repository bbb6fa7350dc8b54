// K producers, M slots, C consumers: no bit is lost, ADD sums exactly, with
// ring sizes 1, 2 and large, and with the slot table growing during the run.
// Bounded in time: every wait has a deadline and fails the test when it
// passes.
#include <atomic>
#include <barrier>
#include <random>
#include <thread>

#include "../support.hpp"
#include "ceq_support.hpp"

using ueq::ceq;
using ueq::ceq_event;
using ueq::ceq_merge;
using ueq::test::make_ceq;
using ueq::test::scaled;
using ueq::test::wait_until;

namespace {

// Spread slot IDs over many chunks so consumers and producers map new chunks
// while the run goes on (the table grows under load).
std::uint32_t slot_id(std::uint32_t s) {
  return s * 1531u + (s & 7u);
}

struct config {
  std::uint32_t ring;
  int producers;
  int consumers;
  std::uint32_t slots;
};

// Handshake rounds: in round r each producer p sets bit p in every slot, then
// waits (bounded) until consumers have seen bit p of every slot r times. A
// lost bit shows up as a wait that times out. Coalescing happens across
// producers sharing a slot; consumers run freely and concurrently.
void run_handshake(const config& cfg, std::uint64_t rounds) {
  auto q = make_ceq(
      {.merge = ceq_merge::bit_or, .ring_size = cfg.ring, .max_ids = slot_id(cfg.slots) + 8});
  const std::size_t cells = static_cast<std::size_t>(cfg.slots) * cfg.producers;
  std::unique_ptr<std::atomic<std::uint64_t>[]> acks(new std::atomic<std::uint64_t>[cells]);
  for (std::size_t i = 0; i < cells; ++i)
    acks[i].store(0);
  std::atomic<bool> stop{false};
  std::atomic<bool> failed{false};
  std::atomic<std::uint64_t> surplus{0};  // a bit delivered with no post pending

  std::vector<std::thread> consumers;
  for (int c = 0; c < cfg.consumers; ++c)
    consumers.emplace_back([&] {
      ceq_event buf[16];
      while (!stop.load(std::memory_order_acquire)) {
        const std::size_t n = q->get_batch(buf);
        if (n == 0) {
          ::sched_yield();
          continue;
        }
        for (std::size_t i = 0; i < n; ++i) {
          const std::uint32_t s = buf[i].id / 1531u;
          for (int p = 0; p < cfg.producers; ++p)
            if (buf[i].bits & (1ull << p)) acks[s * cfg.producers + p].fetch_add(1);
        }
      }
    });

  std::barrier start(cfg.producers);
  std::vector<std::thread> producers;
  for (int p = 0; p < cfg.producers; ++p)
    producers.emplace_back([&, p] {
      start.arrive_and_wait();
      for (std::uint64_t r = 1; r <= rounds && !failed.load(); ++r) {
        for (std::uint32_t s = 0; s < cfg.slots; ++s)
          if (!q->post(slot_id(s), 1ull << p).ok()) failed.store(true);
        for (std::uint32_t s = 0; s < cfg.slots; ++s) {
          auto& a = acks[s * cfg.producers + p];
          if (!wait_until([&] { return a.load() >= r; })) {
            failed.store(true);
            break;
          }
          if (a.load() > r) surplus.fetch_add(1);
        }
      }
    });
  for (auto& t : producers)
    t.join();
  stop.store(true, std::memory_order_release);
  for (auto& t : consumers)
    t.join();

  INFO("ring=" << cfg.ring << " producers=" << cfg.producers << " consumers=" << cfg.consumers
               << " slots=" << cfg.slots << "\n"
               << q->dump(4));
  REQUIRE_FALSE(failed.load());
  // Each bit is set once per round and cleared by exactly one harvest, so it
  // is delivered exactly once per round: never more.
  REQUIRE(surplus.load() == 0);
  REQUIRE(q->empty());
}

// Free-running: producers post as fast as they can (ADD of 1 + a random
// value, recorded), consumers drain concurrently; at the end the per-slot
// sums delivered equal the sums posted exactly.
void run_add_sums(const config& cfg, std::uint64_t posts_per_producer, std::uint64_t seed) {
  auto q =
      make_ceq({.merge = ceq_merge::add, .ring_size = cfg.ring, .max_ids = slot_id(cfg.slots) + 8});
  std::vector<std::atomic<std::uint64_t>> posted(cfg.slots), got(cfg.slots);
  std::atomic<int> producers_left{cfg.producers};
  std::atomic<int> errors{0};  // Catch2 assertions are main-thread only

  std::vector<std::thread> consumers;
  for (int c = 0; c < cfg.consumers; ++c)
    consumers.emplace_back([&] {
      ceq_event buf[32];
      for (;;) {
        // Read "all producers done" before the drain that may end the loop:
        // a drain that starts after the last post returned sees every bit.
        const bool done = producers_left.load(std::memory_order_acquire) == 0;
        const std::size_t n = q->get_batch(buf);
        for (std::size_t i = 0; i < n; ++i)
          got[buf[i].id / 1531u].fetch_add(buf[i].bits);
        if (n == 0) {
          if (done) break;
          ::sched_yield();
        }
      }
    });
  std::vector<std::thread> producers;
  for (int p = 0; p < cfg.producers; ++p)
    producers.emplace_back([&, p] {
      std::mt19937_64 rng(seed + p);
      for (std::uint64_t i = 0; i < posts_per_producer; ++i) {
        const std::uint32_t s = rng() % cfg.slots;
        const std::uint64_t v = 1 + rng() % 1000;
        posted[s].fetch_add(v);
        if (!q->post(slot_id(s), v).ok()) errors.fetch_add(1);
        if ((i & 255) == 0) ::sched_yield();  // vary the interleavings
      }
      producers_left.fetch_sub(1, std::memory_order_release);
    });
  for (auto& t : producers)
    t.join();
  for (auto& t : consumers)
    t.join();
  REQUIRE(errors.load() == 0);
  for (std::uint32_t s = 0; s < cfg.slots; ++s) {
    INFO("slot " << s << " ring " << cfg.ring);
    REQUIRE(got[s].load() == posted[s].load());
  }
  REQUIRE(q->empty());
  const auto c = q->counters();
  REQUIRE(c.posts == posts_per_producer * cfg.producers);
  // Every message carried at least one post, and the ring carried at most
  // one entry per push.
  REQUIRE(c.delivered <= c.posts);
  REQUIRE(c.delivered + c.stale_entries <= c.ring_pushes + c.slots_scanned);
  if (cfg.ring >= cfg.slots) REQUIRE(c.overflows == 0);
}

}  // namespace

TEST_CASE("stress: no OR bit lost, handshake rounds, rings 1, 2 and large", "[ceq][stress]") {
  const std::uint64_t rounds = scaled(300);
  for (std::uint32_t ring : {1u, 2u, 4096u}) {
    run_handshake({.ring = ring, .producers = 3, .consumers = 2, .slots = 40}, rounds);
    run_handshake({.ring = ring, .producers = 2, .consumers = 1, .slots = 5}, rounds);
  }
}

TEST_CASE("stress: ADD sums exactly under free-running producers and consumers", "[ceq][stress]") {
  const std::uint64_t posts = scaled(200000);
  std::uint64_t seed = 1;
  for (std::uint32_t ring : {1u, 2u, 4096u}) {
    run_add_sums({.ring = ring, .producers = 3, .consumers = 2, .slots = 64}, posts, ++seed);
    run_add_sums({.ring = ring, .producers = 2, .consumers = 3, .slots = 700}, posts, ++seed);
  }
}
