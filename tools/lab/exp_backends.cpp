// ueq-lab backends: from a write on a socket to a woken waiter, on each
// host backend (epoll, io_uring multishot poll) and with each way of
// polling the host (integrated: the blocked waiter polls the host itself;
// dedicated: a poller thread does, and the waiter sleeps on a futex).
//
// Each point: `fds` socketpairs, a tap on each read end posting into one
// CEQ event queue, and one OS thread blocked in block_on on it. The driver
// writes the current CLOCK_MONOTONIC time (8 bytes) to a pair chosen by the
// point's generator, after a random gap of 0..gap_us; the waiter, once
// block_on returns, reads it and records now - that time, then acks with a
// byte the driver waits for. Recorded: write->wake latency percentiles and
// CDF, the service's host events, polls and posts, the queue's wakeups.
// Where io_uring is unavailable (containers often forbid it) its points are
// skipped and the output says so.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>
#include <vector>

#include "experiments.hpp"
#include "ueq/ceq/evq/block_on.hpp"
#include "ueq/taps/tap.hpp"

namespace ueq::lab {
namespace {

bool run_point(context& ctx, const point& p) {
  const std::string& backend = p.str("backend");
  const std::string& poller = p.str("poller");
  const int fds = static_cast<int>(p.integer("fds"));
  const auto events = static_cast<std::size_t>(p.integer("events"));
  const double gap_us = p.num("gap_us");
  const std::string what = p.label({"backend", "poller", "fds"});
  if ((backend != "epoll" && backend != "io_uring") ||
      (poller != "integrated" && poller != "dedicated") || fds < 1 || fds > 4096 || events < 1 ||
      gap_us < 0) {
    ctx.skip(what, "parameters out of range (backend epoll|io_uring, poller integrated|dedicated)");
    return true;
  }
  auto made =
      tap_service::create(backend == "io_uring" ? backend_kind::io_uring : backend_kind::epoll);
  if (!made) {
    ctx.skip(what, backend + " unavailable here (" + made.error().message() + ")");
    return true;
  }
  tap_service& svc = **made;
  if (poller == "integrated") {
    svc.attach_to_parkers();
  } else if (status s = svc.start_poller_thread(); !s.ok()) {
    ctx.skip(what, "no poller thread: " + s.code().message());
    return true;
  }

  auto q = std::move(event_queue::create_ceq({.ring_size = static_cast<std::uint32_t>(fds),
                                              .max_ids = static_cast<std::uint64_t>(fds)}))
               .value();
  struct pair_fds {
    int a = -1, b = -1;
  };
  std::vector<pair_fds> ps(fds);
  std::vector<tap_handle> taps;
  bool ok = true;
  for (int i = 0; i < fds && ok; ++i) {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) {
      ctx.skip(what, "socketpair failed (descriptor limit?)");
      ok = false;
      break;
    }
    ps[i] = {sv[0], sv[1]};
    auto t = svc.add(
        {.fd = sv[1], .filter = kTapReadable, .queue = q, .id = static_cast<std::uint32_t>(i)});
    if (!t) {
      ctx.skip(what, "tap: " + t.error().message());
      ok = false;
      break;
    }
    taps.push_back(*t);
  }

  // The workload: which pair, and the gap before each write.
  digest dg;
  std::vector<std::pair<int, mono_ns>> plan(events);
  const auto gap_ns = static_cast<std::uint64_t>(gap_us * 1000);
  for (auto& [pair, gap] : plan) {
    pair = static_cast<int>(ctx.rng()() % static_cast<std::uint64_t>(fds));
    gap = gap_ns ? static_cast<mono_ns>(ctx.rng()() % gap_ns) : 0;
    dg.add(static_cast<std::uint64_t>(pair));
    dg.add(static_cast<std::uint64_t>(gap));
  }

  std::vector<double> lat;
  std::atomic<bool> failed{false};
  bool lost = false;
  if (ok) {
    lat.reserve(events);
    std::thread waiter([&] {
      std::size_t done = 0;
      while (done < events) {
        auto r = block_on({q.get()}, deadline_after_ms(3000));
        if (!r) {
          if (r.error() != std::errc::timed_out) break;
          continue;  // the driver gives up on its own; closing the queue ends us
        }
        const mono_ns now = monotonic_now();
        const int b = ps[r->msg.id].b;
        // One write is outstanding at a time, and the driver sends the next
        // only after our ack: read exactly that one, never ahead of a wakeup.
        mono_ns sent;
        if (::read(b, &sent, sizeof sent) != sizeof sent) continue;  // a stale event
        lat.push_back(static_cast<double>(now - sent));
        ++done;
        if (::write(b, "a", 1) != 1) failed.store(true);
      }
    });
    ctx.trace_begin();
    for (auto& [pair, gap] : plan) {
      if (gap) wait_until(monotonic_now() + gap, 20'000);
      const mono_ns now = monotonic_now();
      if (::write(ps[pair].a, &now, sizeof now) != sizeof now) {
        failed.store(true);
        break;
      }
      pollfd pf{.fd = ps[pair].a, .events = POLLIN, .revents = 0};
      char ack;
      if (::poll(&pf, 1, 3000) != 1 || ::read(ps[pair].a, &ack, 1) != 1) {
        lost = true;  // no wakeup within 3 s: the event was lost
        break;
      }
    }
    ctx.trace_end();
    q->close();
    waiter.join();
  }

  const tap_counters tc = svc.counters();
  for (auto& t : taps)
    (void)svc.remove(t);
  if (poller == "integrated")
    svc.detach_from_parkers();
  else
    svc.stop_poller_thread();
  for (auto& pr : ps) {
    if (pr.a >= 0) ::close(pr.a);
    if (pr.b >= 0) ::close(pr.b);
  }
  if (!ok) return true;
  const evq_counters ec = q->counters();
  row& r = ctx.add_row()
               .set("backend_name", svc.backend_name())
               .set("host_events", tc.host_events)
               .set("polls", tc.polls)
               .set("tap_posts", tc.posts)
               .set("wakeups", ec.wakeups)
               .set("spurious_wakeups", ec.spurious_wakeups);
  latency_columns(r, lat);
  r.set("workload_digest", dg.hex());
  latency_cdf(ctx, "latency", lat, {});
  if (lost || failed.load()) {
    ctx.note("point " + std::to_string(ctx.point_index()) + " (" + what +
             "): an event was not delivered within 3 s");
    return false;
  }
  return true;
}

void make_charts(context& ctx) {
  ctx.add_chart(cdf_chart(ctx, "latency", "latency",
                          "backends: socket write to woken waiter, latency (CDF)"));
}

}  // namespace

experiment backends_experiment() {
  return {
      .name = "backends",
      .summary =
          "host epoll vs io_uring, integrated polling vs dedicated poller: write->wake "
          "latency on socketpairs",
      .params =
          {
              {"backend", "epoll,io_uring", "", "host backend of the tap service"},
              {"poller", "integrated,dedicated", "",
               "integrated: the blocked waiter polls the host; dedicated: a poller thread"},
              {"fds", "1,64", "1", "socketpairs tapped into the queue"},
              {"events", "5000", "200", "writes measured per point"},
              {"gap_us", "50", "20", "random idle gap before each write, 0..gap_us"},
          },
      .run_point = run_point,
      .make_charts = make_charts,
  };
}

}  // namespace ueq::lab
