// ceq_demo: several producer threads post into one CEQ while a consumer
// drains it; prints what was posted, coalesced and delivered, with rates,
// and checks that no bit was lost. A second run with a tiny ring shows the
// overflow path recovering everything.
//
//   ceq_demo [--producers N] [--slots M] [--seconds S] [--ring R]
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "ueq/ceq/ceq.hpp"

namespace {

struct params {
  int producers = 3;
  std::uint32_t slots = 10000;
  double seconds = 2;
  std::uint32_t ring = 16384;
};

struct outcome {
  bool ok = true;
  double secs = 0;
  ueq::ceq_counters counters;
};

outcome run(const params& p) {
  auto made =
      ueq::ceq::create({.merge = ueq::ceq_merge::bit_or, .ring_size = p.ring, .max_ids = p.slots});
  if (!made) {
    std::fprintf(stderr, "ceq_demo: cannot create CEQ: %s\n", made.error().message().c_str());
    std::exit(1);
  }
  ueq::ceq& q = **made;
  // What each producer posted (one bit per producer) and what the consumer
  // received, per slot: at the end they must be equal.
  std::vector<std::atomic<std::uint64_t>> posted(p.slots), delivered(p.slots);
  std::atomic<int> running{p.producers};
  std::barrier start(p.producers + 1);
  const auto t0 = std::chrono::steady_clock::now();
  const auto stop_at = t0 + std::chrono::duration<double>(p.seconds);

  std::thread consumer([&] {
    start.arrive_and_wait();
    ueq::ceq_event buf[256];
    for (;;) {
      const bool done = running.load(std::memory_order_acquire) == 0;
      const std::size_t n = q.get_batch(buf);
      for (std::size_t i = 0; i < n; ++i)
        delivered[buf[i].id].fetch_or(buf[i].bits, std::memory_order_relaxed);
      if (n == 0) {
        if (done) break;
        std::this_thread::yield();
      }
    }
  });
  std::vector<std::thread> producers;
  for (int k = 0; k < p.producers; ++k)
    producers.emplace_back([&, k] {
      std::mt19937 rng(k + 1);
      // Skewed: half the posts go to 1% of the slots, so hot slots coalesce.
      std::uniform_int_distribution<std::uint32_t> any(0, p.slots - 1), hot(0, p.slots / 100);
      start.arrive_and_wait();
      const std::uint64_t bit = 1ull << k;
      for (std::uint64_t i = 0;; ++i) {
        if ((i & 1023) == 0 && std::chrono::steady_clock::now() >= stop_at) break;
        const std::uint32_t id = (i & 1) ? any(rng) : hot(rng);
        posted[id].fetch_or(bit, std::memory_order_relaxed);
        if (!q.post(id, bit).ok()) std::abort();
      }
      running.fetch_sub(1, std::memory_order_release);
    });
  for (auto& t : producers)
    t.join();
  consumer.join();
  outcome o;
  o.secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  o.counters = q.counters();
  for (std::uint32_t s = 0; s < p.slots; ++s)
    if (posted[s].load() != delivered[s].load()) o.ok = false;
  if (!q.empty()) o.ok = false;
  return o;
}

void print(const char* title, const params& p, const outcome& o) {
  const auto& c = o.counters;
  std::printf("\n%s\n", title);
  std::printf("  %d producer threads, 1 consumer, %u slots, ring %u, %.2f s\n", p.producers,
              p.slots, p.ring, o.secs);
  std::printf("  %-28s %14llu  (%.1f M/s)\n", "posted", (unsigned long long)c.posts,
              c.posts / o.secs / 1e6);
  std::printf("  %-28s %14llu  (%.1f%% of posts)\n", "coalesced into pending slots",
              (unsigned long long)c.coalesced, 100.0 * c.coalesced / (c.posts ? c.posts : 1));
  std::printf("  %-28s %14llu\n", "ring pushes", (unsigned long long)c.ring_pushes);
  std::printf("  %-28s %14llu  (recovery scans %llu, slots scanned %llu)\n", "ring overflows",
              (unsigned long long)c.overflows, (unsigned long long)c.recovery_scans,
              (unsigned long long)c.slots_scanned);
  std::printf("  %-28s %14llu  (%.1f M/s; %.1f posts per message)\n", "messages delivered",
              (unsigned long long)c.delivered, c.delivered / o.secs / 1e6,
              double(c.posts) / (c.delivered ? c.delivered : 1));
  std::printf("  %-28s %14llu\n", "stale ring entries skipped",
              (unsigned long long)c.stale_entries);
  std::printf("  %-28s %14llu\n", "zero-bit messages", (unsigned long long)c.empty_messages);
  std::printf("  %-28s %14s\n", "every posted bit delivered", o.ok ? "yes" : "NO - LOST BITS");
}

}  // namespace

int main(int argc, char** argv) {
  params p;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--producers"))
      p.producers = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--slots"))
      p.slots = static_cast<std::uint32_t>(std::atoi(argv[i + 1]));
    else if (!std::strcmp(argv[i], "--seconds"))
      p.seconds = std::atof(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--ring"))
      p.ring = static_cast<std::uint32_t>(std::atoi(argv[i + 1]));
    else {
      std::fprintf(stderr,
                   "usage: ceq_demo [--producers N] [--slots M] [--seconds S] [--ring R]\n");
      return 2;
    }
  }
  if (p.producers < 1 || p.producers > 64 || p.slots < 100 || p.seconds <= 0 || p.ring == 0) {
    std::fprintf(stderr, "ceq_demo: need 1..64 producers, >= 100 slots, seconds > 0, ring > 0\n");
    return 2;
  }
  std::printf("ueq CEQ demo: producers post event bits for slot IDs; one consumer drains.\n");
  const outcome a = run(p);
  print("Run 1: ring large enough for every slot (no overflow expected)", p, a);
  params tiny = p;
  tiny.ring = 64;
  tiny.seconds = p.seconds / 2;
  const outcome b = run(tiny);
  print("Run 2: ring of 64 cells, far fewer than the slots (overflow + recovery)", tiny, b);
  return a.ok && b.ok ? 0 : 1;
}
