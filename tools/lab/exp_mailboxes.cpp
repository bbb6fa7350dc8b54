// ueq-lab mailboxes: the three mailboxes of an event queue — CEQ (merge per
// ID), bitmap (one bit per ID) and the unbounded message queue (every
// message) — under the same load, and the delivery latency each gives.
//
// Each point: `producers` threads post to `slots` IDs (drawn from the
// point's generator) at `rate` posts/s each, in bursts of whatever is due
// at least 20 us apart; one consumer takes messages, blocked in block_on
// (consumer=block) or spinning on try_get (consumer=poll). Latency of a
// delivery: from the oldest post not yet consumed for that ID to the moment
// the consumer holds the message (message queue: each message carries its
// own post time; CEQ and bitmap: the first post after the ID's previous
// delivery stamps it). Recorded: posts, messages, coalesced posts, wakeups,
// spurious wakeups, latency percentiles; the latency CDF per point.
#include <algorithm>
#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "experiments.hpp"
#include "ueq/ceq/evq/block_on.hpp"

namespace ueq::lab {
namespace {

bool run_point(context& ctx, const point& p) {
  const std::string& kind = p.str("mailbox");
  const int producers = static_cast<int>(p.integer("producers"));
  const auto slots = static_cast<std::uint32_t>(p.integer("slots"));
  const double rate = p.num("rate");
  const double seconds = p.num("seconds");
  const bool block = p.str("consumer") == "block";
  if (producers < 1 || producers > 64 || slots < 1 || slots > (1u << 20) || rate <= 0 ||
      seconds <= 0 || (!block && p.str("consumer") != "poll")) {
    ctx.skip(p.label({"mailbox", "producers", "slots", "rate", "consumer"}),
             "parameters out of range (consumer is block or poll; rate > 0)");
    return true;
  }
  result<event_queue_ptr> made = errno_code(EINVAL);
  if (kind == "ceq")
    made = event_queue::create_ceq({.ring_size = slots, .max_ids = slots});
  else if (kind == "bitmap")
    made = event_queue::create_bitmap(slots);
  else if (kind == "messages")
    made = event_queue::create_messages();
  if (!made) {
    ctx.skip("mailbox=" + kind,
             "unknown mailbox (ceq, bitmap, messages) or " + made.error().message());
    return true;
  }
  event_queue& q = **made;
  const bool carries_time = kind == "messages";
  std::unique_ptr<std::atomic<mono_ns>[]> first_post(new std::atomic<mono_ns>[slots]);
  for (std::uint32_t i = 0; i < slots; ++i)
    first_post[i].store(0, std::memory_order_relaxed);

  digest dg;
  const auto n = static_cast<std::size_t>(std::max(1.0, rate * seconds));
  std::vector<std::vector<std::uint32_t>> sched(producers);
  for (int k = 0; k < producers; ++k) {
    auto g = derive(ctx.point_seed(), k);
    sched[k].resize(n);
    for (auto& id : sched[k]) {
      id = static_cast<std::uint32_t>(g() % slots);
      dg.add(id);
    }
  }

  std::atomic<int> finished{0};
  std::atomic<bool> go{false};
  const mono_ns period = static_cast<mono_ns>(1e9 / rate);
  mono_ns t0 = 0;
  std::vector<std::thread> ts;
  for (int k = 0; k < producers; ++k)
    ts.emplace_back([&, k] {
      while (!go.load(std::memory_order_acquire))
        std::this_thread::yield();
      const auto& ids = sched[k];
      std::size_t i = 0;
      while (i < ids.size()) {
        mono_ns now = monotonic_now();
        for (; i < ids.size() && t0 + static_cast<mono_ns>(i) * period <= now; ++i) {
          const std::uint32_t id = ids[i];
          now = monotonic_now();
          if (!carries_time) {
            mono_ns zero = 0;
            // relaxed: the stamp is a measurement, not a publication; a
            // consumer that misses it only loses one sample.
            first_post[id].compare_exchange_strong(zero, now, std::memory_order_relaxed);
          }
          (void)q.post(id, 1, static_cast<std::uint64_t>(now));
        }
        if (i < ids.size())
          wait_until(std::max(t0 + static_cast<mono_ns>(i) * period, now + 20'000), 0);
      }
      // release: our posts before the consumer's final drain.
      finished.fetch_add(1, std::memory_order_release);
    });

  std::vector<double> lat;
  lat.reserve(n * producers);
  std::uint64_t messages = 0;
  auto take = [&](const event_msg& m) {
    const mono_ns now = monotonic_now();
    ++messages;
    mono_ns t = carries_time ? static_cast<mono_ns>(m.blob)
                             : first_post[m.id].exchange(0, std::memory_order_relaxed);
    if (t && now >= t) lat.push_back(static_cast<double>(now - t));
  };
  ctx.trace_begin();
  t0 = monotonic_now() + 1'000'000;
  go.store(true, std::memory_order_release);
  for (;;) {
    // acquire: pairs with the producers' release (then the drain is final).
    const bool done = finished.load(std::memory_order_acquire) == producers;
    event_msg m;
    if (done) {
      while (q.try_get(m))
        take(m);
      break;
    }
    if (block) {
      auto r = block_on({&q}, deadline_after_ms(20));
      if (r) take(r->msg);
    } else if (q.try_get(m)) {
      take(m);
    } else {
      std::this_thread::yield();
    }
  }
  ctx.trace_end();
  for (auto& t : ts)
    t.join();
  q.close();

  std::uint64_t coalesced = 0;
  if (auto* c = q.as_ceq()) coalesced = c->counters().coalesced;
  if (auto* b = q.as_bitmap()) coalesced = b->counters().coalesced;
  const evq_counters ec = q.counters();
  row& r = ctx.add_row()
               .set("posts", ec.posts)
               .set("messages", messages)
               .set("coalesced", coalesced)
               .set("wakeups", ec.wakeups)
               .set("spurious_wakeups", ec.spurious_wakeups);
  latency_columns(r, lat);
  r.set("workload_digest", dg.hex());
  latency_cdf(ctx, "latency", lat, {});
  return true;
}

void make_charts(context& ctx) {
  ctx.add_chart(
      cdf_chart(ctx, "latency", "latency", "mailboxes: delivery latency, post to consumer (CDF)"));
  const table& t = ctx.get_table();
  chart c{.name = "p99",
          .title = "mailboxes: p99 delivery latency against post rate",
          .xlabel = "post rate per producer (posts/s)",
          .ylabel = "p99 latency (ns)",
          .logx = true,
          .logy = true};
  c.data = group_series(ctx, t, "rate", "lat_p99_ns", {});
  ctx.add_chart(std::move(c));
}

}  // namespace

experiment mailboxes_experiment() {
  return {
      .name = "mailboxes",
      .summary = "CEQ vs bitmap vs unbounded message queue: delivery latency distribution",
      .params =
          {
              {"mailbox", "ceq,bitmap,messages", "", "the event queue's mailbox"},
              {"producers", "1,2", "1", "producer threads"},
              {"slots", "64", "", "distinct IDs posted to"},
              {"rate", "2000,20000,100000", "20000", "posts/s per producer",
               "posts/s per producer"},
              {"consumer", "block", "", "block (block_on) or poll (try_get spinning)"},
              {"seconds", "0.5", "0.1", "posting time per point"},
          },
      .run_point = run_point,
      .make_charts = make_charts,
  };
}

}  // namespace ueq::lab
