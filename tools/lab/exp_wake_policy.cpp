// ueq-lab wake_policy: wake-all against wake-one, with several waiters on
// one event queue.
//
// Each point: `waiters` OS threads loop in block_on on one queue (mailbox
// `messages`, or `ceq` with an ID per message so nothing coalesces); one
// producer posts at `rate` posts/s with exponential gaps (a Poisson
// arrival process drawn from the point's generator), each message carrying
// its post time. Recorded: wakeups per message (a wake-all queue wakes every
// registered waiter; wake-one, one), spurious wakeups per message (woken,
// found nothing), and the latency from post to the waiter holding the
// message, with its CDF.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <mutex>
#include <thread>
#include <vector>

#include "experiments.hpp"
#include "ueq/ceq/evq/block_on.hpp"

namespace ueq::lab {
namespace {

bool run_point(context& ctx, const point& p) {
  const std::string& policy = p.str("policy");
  const int waiters = static_cast<int>(p.integer("waiters"));
  const double rate = p.num("rate");
  const double seconds = p.num("seconds");
  const std::string& kind = p.str("mailbox");
  if ((policy != "wake_all" && policy != "wake_one") || waiters < 1 || waiters > 64 || rate <= 0 ||
      seconds <= 0 || (kind != "messages" && kind != "ceq")) {
    ctx.skip(p.label({"policy", "waiters", "rate", "mailbox"}),
             "parameters out of range (policy wake_all|wake_one, mailbox messages|ceq)");
    return true;
  }
  const evq_options o{.notify =
                          policy == "wake_one" ? notify_policy::wake_one : notify_policy::wake_all};
  constexpr std::uint32_t kIds = 1u << 16;
  auto made = kind == "ceq" ? event_queue::create_ceq({.ring_size = kIds, .max_ids = kIds}, o)
                            : event_queue::create_messages(o);
  if (!made) {
    ctx.skip(kind, made.error().message());
    return true;
  }
  event_queue& q = **made;

  // Poisson arrivals: exponential gaps, mean 1/rate.
  digest dg;
  const auto n = static_cast<std::size_t>(std::max(1.0, rate * seconds));
  std::vector<mono_ns> due(n);
  {
    auto g = derive(ctx.point_seed(), 0);
    double t = 0;
    for (auto& d : due) {
      const double u = (static_cast<double>(g() >> 11) + 0.5) * 0x1.0p-53;
      t += -std::log(u) / rate * 1e9;
      d = static_cast<mono_ns>(t);
      dg.add(static_cast<std::uint64_t>(d));
    }
  }

  std::atomic<std::uint64_t> consumed{0};
  std::mutex mu;
  std::vector<double> lat;  // guarded by mu
  std::vector<std::thread> ts;
  std::atomic<int> ready{0};
  for (int w = 0; w < waiters; ++w)
    ts.emplace_back([&] {
      std::vector<double> mine;
      ready.fetch_add(1);
      for (;;) {
        auto r = block_on({&q}, deadline_after_ms(200));
        if (r) {
          const mono_ns now = monotonic_now();
          mine.push_back(static_cast<double>(now - static_cast<mono_ns>(r->msg.blob)));
          consumed.fetch_add(1, std::memory_order_relaxed);
        } else if (r.error() == std::errc::operation_canceled) {
          break;
        }
      }
      std::lock_guard<std::mutex> g(mu);
      lat.insert(lat.end(), mine.begin(), mine.end());
    });
  while (ready.load() < waiters)
    std::this_thread::yield();

  ctx.trace_begin();
  const mono_ns t0 = monotonic_now() + 2'000'000;
  for (std::size_t i = 0; i < n; ++i) {
    wait_until(t0 + due[i]);
    (void)q.post(static_cast<std::uint32_t>(i % kIds), 1,
                 static_cast<std::uint64_t>(monotonic_now()));
  }
  // Bounded: every message is taken within a second or two.
  const mono_ns limit = deadline_after_ms(5000);
  while (consumed.load(std::memory_order_relaxed) < n && monotonic_now() < limit)
    std::this_thread::yield();
  ctx.trace_end();
  q.close();
  for (auto& t : ts)
    t.join();
  const std::uint64_t got = consumed.load();
  const evq_counters c = q.counters();
  const double per = got ? 1.0 / static_cast<double>(got) : NAN;
  row& r = ctx.add_row()
               .set("posts", c.posts)
               .set("consumed", got)
               .set("wakeups", c.wakeups)
               .set("wakeups_per_message", c.wakeups * per)
               .set("spurious_wakeups", c.spurious_wakeups)
               .set("spurious_per_message", c.spurious_wakeups * per)
               .set("timeouts", c.timeouts);
  latency_columns(r, lat);
  r.set("workload_digest", dg.hex());
  latency_cdf(ctx, "latency", lat, {});
  if (got != n) {
    ctx.note("point " + std::to_string(ctx.point_index()) + ": LOST MESSAGES: posted " +
             std::to_string(n) + ", consumed " + std::to_string(got));
    return false;
  }
  return true;
}

void make_charts(context& ctx) {
  const table& t = ctx.get_table();
  chart c{.name = "wakeups",
          .title = "wake policy: wakeups and spurious wakeups per message",
          .xlabel = "waiters blocked on the queue",
          .ylabel = "per message"};
  c.data = group_series(ctx, t, "waiters", "wakeups_per_message", {}, nullptr, "wakeups ");
  for (auto& s : group_series(ctx, t, "waiters", "spurious_per_message", {}, nullptr, "spurious "))
    c.data.push_back(std::move(s));
  ctx.add_chart(std::move(c));
  ctx.add_chart(cdf_chart(ctx, "latency", "latency", "wake policy: latency, post to waiter (CDF)"));
}

}  // namespace

experiment wake_policy_experiment() {
  return {
      .name = "wake_policy",
      .summary = "wake-all vs wake-one: wakeups and spurious wakeups per message, latency",
      .params =
          {
              {"policy", "wake_all,wake_one", "", "the queue's notify policy"},
              {"waiters", "1,2,4,8", "1,4", "OS threads blocked in block_on on the queue"},
              {"rate", "2000", "", "posts/s (Poisson arrivals)", "posts/s"},
              {"mailbox", "messages", "", "messages or ceq"},
              {"seconds", "1", "0.05", "posting time per point"},
          },
      .run_point = run_point,
      .make_charts = make_charts,
  };
}

}  // namespace ueq::lab
