// ueq-lab coalescing: how much a CEQ merges, and how often its ring
// overflows, as load and ring size change.
//
// Each point: `producers` threads post into one CEQ (ADD merge, bits = 1,
// so the delivered words must sum to the number of posts: a lost event
// fails the run) at `rate` posts/s each, over `slots` IDs drawn from the
// point's generator (uniform, or Zipf with exponent `skew`); one consumer
// drains everything every `harvest_us` microseconds. Paced producers post
// whatever is due in bursts at least 50 us apart (the offered rate holds on
// average); rate 0 posts as fast as possible. Recorded: the CEQ's counters
// (posts, coalesced, ring pushes, overflows, recovery scans, slots scanned,
// stale entries, empty messages), the coalescing ratio (coalesced/posts),
// overflows and recovery scans per 1000 posts, and the CEQ's dump after each
// point (coalescing-dump.txt).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <fstream>
#include <thread>
#include <vector>

#include "experiments.hpp"
#include "ueq/ceq/ceq.hpp"

namespace ueq::lab {
namespace {

// The IDs one producer posts, drawn before the clock starts.
std::vector<std::uint32_t> schedule(std::mt19937_64& g, std::size_t n, std::uint32_t slots,
                                    double skew, digest& d) {
  std::vector<std::uint32_t> out(n);
  if (skew <= 0) {
    for (auto& id : out)
      id = static_cast<std::uint32_t>(g() % slots);
  } else {
    // Zipf: rank k has weight 1/(k+1)^skew; ranks go to IDs in a shuffled
    // order so that the popular IDs are spread over the slot table.
    std::vector<double> cdf(slots);
    double sum = 0;
    for (std::uint32_t k = 0; k < slots; ++k)
      cdf[k] = sum += 1.0 / std::pow(k + 1.0, skew);
    std::vector<std::uint32_t> ids(slots);
    for (std::uint32_t k = 0; k < slots; ++k)
      ids[k] = k;
    for (std::uint32_t k = slots - 1; k > 0; --k)
      std::swap(ids[k], ids[g() % (k + 1)]);
    for (auto& id : out) {
      const double u = static_cast<double>(g() >> 11) * 0x1.0p-53 * sum;
      const auto r =
          static_cast<std::size_t>(std::lower_bound(cdf.begin(), cdf.end(), u) - cdf.begin());
      id = ids[std::min<std::size_t>(r, slots - 1)];
    }
  }
  for (auto id : out)
    d.add(id);
  return out;
}

bool run_point(context& ctx, const point& p) {
  const auto ring = static_cast<std::uint32_t>(p.integer("ring"));
  const int producers = static_cast<int>(p.integer("producers"));
  const auto slots = static_cast<std::uint32_t>(p.integer("slots"));
  const double rate = p.num("rate");
  const double harvest_us = p.num("harvest_us");
  const double skew = p.num("skew");
  const double seconds = p.num("seconds");
  if (ring < 1 || producers < 1 || producers > 64 || slots < 1 || rate < 0 || seconds <= 0 ||
      harvest_us < 0) {
    ctx.skip(p.label({"ring", "producers", "slots", "rate"}), "parameters out of range");
    return true;
  }
  auto made = ceq::create({.merge = ceq_merge::add, .ring_size = ring, .max_ids = slots});
  if (!made) {
    ctx.skip(p.label({"ring", "slots"}), "ceq::create: " + made.error().message());
    return true;
  }
  ceq& q = **made;
  (void)q.reserve(0, slots - 1);

  // Workloads: paced producers get exactly rate*seconds posts; unpaced ones
  // cycle through 64 Ki draws until the time is up.
  digest dg;
  const std::size_t n_paced =
      static_cast<std::size_t>(std::min(rate * seconds, 8e6 / producers)) + 1;
  std::vector<std::vector<std::uint32_t>> sched;
  for (int k = 0; k < producers; ++k) {
    auto g = derive(ctx.point_seed(), k);
    sched.push_back(schedule(g, rate > 0 ? n_paced : 65536, slots, skew, dg));
  }

  std::atomic<int> ready{0}, finished{0};
  std::atomic<bool> go{false};
  std::vector<std::uint64_t> posted(producers, 0);
  const mono_ns period = rate > 0 ? static_cast<mono_ns>(1e9 / rate) : 0;
  mono_ns t0 = 0;
  std::vector<std::thread> ts;
  for (int k = 0; k < producers; ++k)
    ts.emplace_back([&, k] {
      const auto& ids = sched[k];
      ready.fetch_add(1);
      while (!go.load(std::memory_order_acquire)) {
      }
      const mono_ns start = t0, end = t0 + static_cast<mono_ns>(seconds * 1e9);
      std::uint64_t n = 0;
      if (rate > 0) {
        std::size_t i = 0;
        while (i < ids.size()) {
          const mono_ns now = monotonic_now();
          for (; i < ids.size() && start + static_cast<mono_ns>(i) * period <= now; ++i)
            (void)q.post(ids[i], 1);
          if (i < ids.size())
            wait_until(std::max(start + static_cast<mono_ns>(i) * period, now + 50'000), 0);
        }
        n = i;
      } else {
        for (;;) {
          for (int j = 0; j < 256; ++j)
            (void)q.post(ids[(n + j) & 65535], 1);
          n += 256;
          if (monotonic_now() >= end) break;
        }
      }
      posted[k] = n;
      // release: our posts (and posted[k]) before the consumer's last drain.
      finished.fetch_add(1, std::memory_order_release);
    });
  while (ready.load() < producers) {
  }
  t0 = monotonic_now() + 1'000'000;  // everyone starts at once, 1 ms from now
  go.store(true, std::memory_order_release);

  std::uint64_t messages = 0, sum = 0, empty = 0;
  ceq_event buf[64];
  auto drain = [&] {
    while (std::size_t n = q.get_batch(buf))
      for (std::size_t i = 0; i < n; ++i) {
        if (buf[i].bits) {
          ++messages;
          sum += buf[i].bits;
        } else {
          ++empty;
        }
      }
  };
  ctx.trace_begin();
  for (;;) {
    // acquire: pairs with the producers' release; after it, the drain below
    // sees every post they made.
    const bool done = finished.load(std::memory_order_acquire) == producers;
    drain();
    if (done) break;
    if (harvest_us > 0)
      wait_until(monotonic_now() + static_cast<mono_ns>(harvest_us * 1000), 0);
    else
      std::this_thread::yield();
  }
  const mono_ns t_end = monotonic_now();
  ctx.trace_end();
  for (auto& t : ts)
    t.join();

  std::uint64_t posts = 0;
  for (auto n : posted)
    posts += n;
  const ceq_counters c = q.counters();
  const double secs = static_cast<double>(t_end - t0) / 1e9;
  const double per_k = posts ? 1000.0 / static_cast<double>(posts) : 0;
  ctx.check_rate(rate * producers, secs > 0 ? static_cast<double>(posts) / secs : 0,
                 "posts/s (all producers)");
  ctx.add_row()
      .set("posts", posts)
      .set("achieved_rate", secs > 0 ? static_cast<double>(posts) / secs : 0)
      .set("messages", messages)
      .set("posts_per_message", messages ? static_cast<double>(posts) / messages : NAN)
      .set("coalesced", c.coalesced)
      .set("coalescing_ratio", posts ? static_cast<double>(c.coalesced) / posts : NAN)
      .set("ring_pushes", c.ring_pushes)
      .set("overflows", c.overflows)
      .set("overflows_per_kpost", c.overflows * per_k)
      .set("recovery_scans", c.recovery_scans)
      .set("recovery_scans_per_kpost", c.recovery_scans * per_k)
      .set("slots_scanned", c.slots_scanned)
      .set("stale_entries", c.stale_entries)
      .set("empty_messages", c.empty_messages)
      .set("delivered", c.delivered)
      .set("lost", static_cast<double>(posts) - static_cast<double>(sum))
      .set("workload_digest", dg.hex());

  std::ofstream dump(ctx.out_dir() + "/coalescing-dump.txt",
                     ctx.point_index() ? std::ios::app : std::ios::trunc);
  dump << "# point " << ctx.point_index() << ": " << p.label({"ring", "producers", "slots", "rate"})
       << "\n"
       << q.dump(8) << "\n";
  if (sum != posts) {
    ctx.note("point " + std::to_string(ctx.point_index()) + ": LOST EVENTS: posted " +
             std::to_string(posts) + ", delivered " + std::to_string(sum));
    return false;
  }
  return true;
}

void make_charts(context& ctx) {
  const table& t = ctx.get_table();
  if (t.rows.empty()) return;
  double max_ring = 0, max_prod = 0;
  for (std::size_t r = 0; r < t.rows.size(); ++r) {
    max_ring = std::max(max_ring, t.num(r, "ring"));
    max_prod = std::max(max_prod, t.num(r, "producers"));
  }
  chart ratio{.name = "ratio",
              .title = "CEQ coalescing ratio against load (ring " + value(max_ring).text() + ")",
              .xlabel = "achieved post rate, all producers (posts/s)",
              .ylabel = "coalesced posts / posts",
              .logx = true};
  ratio.data = group_series(ctx, t, "achieved_rate", "coalescing_ratio", {"rate", "ring"},
                            [&](std::size_t r) { return t.num(r, "ring") == max_ring; });
  ctx.add_chart(std::move(ratio));

  chart of{.name = "overflow",
           .title = "CEQ overflows and recovery scans against ring size (" +
                    value(max_prod).text() + " producers)",
           .xlabel = "ring size (cells)",
           .ylabel = "per 1000 posts",
           .logx = true};
  auto keep = [&](std::size_t r) { return t.num(r, "producers") == max_prod; };
  of.data = group_series(ctx, t, "ring", "overflows_per_kpost", {"producers"}, keep, "overflows ");
  for (auto& s :
       group_series(ctx, t, "ring", "recovery_scans_per_kpost", {"producers"}, keep, "scans "))
    of.data.push_back(std::move(s));
  ctx.add_chart(std::move(of));
}

}  // namespace

experiment coalescing_experiment() {
  return {
      .name = "coalescing",
      .summary =
          "CEQ: ring size x producers x slots x post rate -> coalescing ratio, overflows, "
          "recovery scans (fast, always runs)",
      .params =
          {
              {"ring", "16,64,256,1024,4096", "16,256,4096", "CEQ ring cells"},
              {"producers", "1,2,4", "1,2", "producer threads"},
              {"slots", "1024", "", "distinct IDs posted to"},
              {"rate", "20000,200000,2000000,0", "100000,0",
               "posts/s per producer (0 = as fast as possible)", "posts/s per producer",
               "unpaced: as fast as possible"},
              {"harvest_us", "200", "", "the consumer drains every this many us (0 = always)"},
              {"skew", "0", "", "Zipf exponent of ID popularity (0 = uniform)"},
              {"seconds", "0.5", "0.05", "posting time per point"},
          },
      .run_point = run_point,
      .make_charts = make_charts,
  };
}

}  // namespace ueq::lab
