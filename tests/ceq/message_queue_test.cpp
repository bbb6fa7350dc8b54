// The unbounded message queue: FIFO, growth, and every message arriving
// exactly once under concurrency.
#include <atomic>
#include <catch2/catch.hpp>
#include <thread>
#include <vector>

#include "../support.hpp"
#include "ueq/ceq/message_queue.hpp"

using ueq::event_msg;
using ueq::message_queue;

TEST_CASE("message queue: FIFO order and growth far past the initial capacity", "[evq]") {
  message_queue q(2);
  REQUIRE(q.empty());
  for (std::uint32_t i = 0; i < 10000; ++i)
    REQUIRE(q.post({.id = i, .bits = i * 3u, .blob = 7}).ok());
  REQUIRE(q.size() == 10000);
  event_msg m;
  for (std::uint32_t i = 0; i < 5000; ++i) {
    REQUIRE(q.get(m));
    REQUIRE(m.id == i);
    REQUIRE(m.bits == i * 3u);
  }
  // Interleave to wrap the ring, then grow while wrapped.
  for (std::uint32_t i = 10000; i < 30000; ++i)
    REQUIRE(q.post({.id = i}).ok());
  event_msg batch[100];
  std::uint32_t expect = 5000;
  while (std::size_t n = q.get_batch(batch))
    for (std::size_t k = 0; k < n; ++k)
      REQUIRE(batch[k].id == expect++);
  REQUIRE(expect == 30000);
  REQUIRE(q.empty());
  REQUIRE(q.posts() == 30000);
}

TEST_CASE("message queue: nothing coalesces, every message arrives once", "[evq][stress]") {
  const std::uint64_t per = ueq::test::scaled(100000);
  constexpr int kProducers = 3, kConsumers = 2;
  message_queue q;
  std::atomic<int> producers_left{kProducers};
  std::vector<std::vector<std::uint32_t>> got(kConsumers);
  std::vector<std::thread> ts;
  for (int c = 0; c < kConsumers; ++c)
    ts.emplace_back([&, c] {
      event_msg buf[32];
      for (;;) {
        const bool done = producers_left.load(std::memory_order_acquire) == 0;
        const std::size_t n = q.get_batch(buf);
        for (std::size_t i = 0; i < n; ++i)
          got[c].push_back(buf[i].id);
        if (n == 0) {
          if (done) break;
          std::this_thread::yield();
        }
      }
    });
  std::atomic<int> errors{0};
  for (int p = 0; p < kProducers; ++p)
    ts.emplace_back([&, p] {
      for (std::uint64_t i = 0; i < per; ++i)
        if (!q.post({.id = static_cast<std::uint32_t>(p * per + i), .bits = 1}).ok())
          errors.fetch_add(1);
      producers_left.fetch_sub(1, std::memory_order_release);
    });
  for (auto& t : ts)
    t.join();
  REQUIRE(errors.load() == 0);
  std::vector<std::uint8_t> seen(kProducers * per, 0);
  std::size_t total = 0;
  for (auto& v : got) {
    // Per consumer, each producer's messages come out in posting order.
    std::vector<std::int64_t> last(kProducers, -1);
    for (std::uint32_t id : v) {
      REQUIRE(seen[id] == 0);
      seen[id] = 1;
      const int p = static_cast<int>(id / per);
      REQUIRE(static_cast<std::int64_t>(id) > last[p]);
      last[p] = id;
    }
    total += v.size();
  }
  REQUIRE(total == kProducers * per);
}
