// ueq-bench trace: what the per-stage trace (runtime/trace.hpp) costs, off
// and on.
//
// trace_points_off: a coalescing CEQ post followed by the four trace points
// an event meets on its path (tap, post, wake, consume), with the trace
// off, against the same post without them. The ratio is the whole cost of
// the points when off; the note gives it per point.
// evq_post_get_trace_on: an event queue's post + try_get (two trace points
// inside ueq) with the trace recording, against the same with it off.
#include <cstdio>
#include <memory>
#include <string>

#include "harness.hpp"
#include "ueq/ceq/ceq.hpp"
#include "ueq/ceq/evq/event_queue.hpp"
#include "ueq/runtime/trace.hpp"
#include "ueq/taps/tap.hpp"

namespace {

using ueq::bench::alternate;
using ueq::bench::now_ns;

}  // namespace

UEQ_BENCH(trace, "the per-stage event trace: its cost when off and when on") {
  ueq::trace_stop();
  {
    const std::uint64_t iters = ctx.work(20'000'000);
    auto q = std::move(ueq::ceq::create({.ring_size = 64})).value();
    (void)q->post(0, 1);  // slot 0 stays pending: every post below coalesces
    auto [v, b] = alternate(
        ctx.rounds(),
        [&] {
          const std::uint64_t t0 = now_ns();
          for (std::uint64_t i = 0; i < iters; ++i) {
            ueq::trace(ueq::trace_stages::tap, 0, i);
            (void)q->post(0, 1ull << (i & 7));
            ueq::trace(ueq::trace_stages::post, 0, i);
            ueq::trace(ueq::trace_stages::wake, 0, i);
            ueq::trace(ueq::trace_stages::consume, 0, i);
          }
          return double(now_ns() - t0) / iters;
        },
        [&] {
          const std::uint64_t t0 = now_ns();
          for (std::uint64_t i = 0; i < iters; ++i)
            (void)q->post(0, 1ull << (i & 7));
          return double(now_ns() - t0) / iters;
        });
    char note[160];
    std::snprintf(note, sizeof note,
                  "coalescing post + 4 trace points (off) vs the post alone: %.2f ns per point",
                  (v - b) / 4);
    ctx.report({.name = "trace_points_off",
                .unit = "ns/op",
                .value = v,
                .baseline = "post_without_points",
                .baseline_value = b,
                .goal = "<= 1.1",
                .note = note});
  }
  {
    const std::uint64_t iters = ctx.work(1'000'000);
    auto q = std::move(ueq::event_queue::create_ceq({.ring_size = 64})).value();
    ueq::event_msg m;
    auto loop = [&] {
      const std::uint64_t t0 = now_ns();
      for (std::uint64_t i = 0; i < iters; ++i) {
        (void)q->post(static_cast<std::uint32_t>(i & 31), 1);
        (void)q->try_get(m);
      }
      return double(now_ns() - t0) / iters;
    };
    auto [v, b] = alternate(
        ctx.rounds(),
        [&] {
          // Room for every record: this measures recording, not dropping.
          (void)ueq::trace_start(2 * iters);
          const double r = loop();
          ueq::trace_stop();
          return r;
        },
        loop);
    ctx.report({.name = "evq_post_get_trace_on",
                .unit = "ns/op",
                .value = v,
                .baseline = "trace_off",
                .baseline_value = b,
                .note = "event_queue post + try_get (2 records) with the trace on vs off"});
  }
}
