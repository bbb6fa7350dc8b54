// ueq-lab facade: the cost of one epoll_wait on ueq's facade against the
// kernel's epoll, with N of the registered fds ready.
//
// Each point: `fds` socketpairs registered (EPOLLIN, level-triggered) in a
// ueq epoll set (ueq_epoll_*) and in a kernel epoll set; `ready` of them,
// chosen by the point's generator, hold a byte, so every wait reports the
// same `ready` fds. `rounds` rounds alternate the two (which goes first
// alternates too, per the bench protocol), each timing `waits` calls of
// epoll_wait(maxevents = ready, timeout 0) one by one. Recorded: the
// percentiles of ns per wait for each, the ratio of medians, ns per
// reported event, and the CDF of both.
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include "experiments.hpp"
#include "ueq/epoll.h"

namespace ueq::lab {
namespace {

std::size_t raise_fd_limit(std::size_t want) {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
  if (rl.rlim_cur < want) {
    rl.rlim_cur = std::min<rlim_t>(want, rl.rlim_max);
    (void)::setrlimit(RLIMIT_NOFILE, &rl);
    (void)::getrlimit(RLIMIT_NOFILE, &rl);
  }
  return rl.rlim_cur;
}

bool run_point(context& ctx, const point& p) {
  const int ready = static_cast<int>(p.integer("ready"));
  const int fds = std::max(static_cast<int>(p.integer("fds")), ready);
  const int waits = static_cast<int>(p.integer("waits"));
  const int rounds = static_cast<int>(p.integer("rounds"));
  const std::string what = p.label({"ready", "fds"});
  if (ready < 1 || fds > 100000 || waits < 1 || rounds < 1) {
    ctx.skip(what, "parameters out of range");
    return true;
  }
  if (raise_fd_limit(2 * static_cast<std::size_t>(fds) + 256) <
      2 * static_cast<std::size_t>(fds) + 256) {
    ctx.skip(what, "RLIMIT_NOFILE too low for " + std::to_string(fds) + " socketpairs");
    return true;
  }
  std::vector<std::pair<int, int>> ps;
  for (int i = 0; i < fds; ++i) {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) break;
    ps.emplace_back(sv[0], sv[1]);
  }
  const int uep = ueq_epoll_create1(EPOLL_CLOEXEC);
  const int kep = ::epoll_create1(EPOLL_CLOEXEC);
  bool ok = static_cast<int>(ps.size()) == fds && uep >= 0 && kep >= 0;
  for (int i = 0; ok && i < fds; ++i) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = static_cast<std::uint32_t>(i);
    ok = ueq_epoll_ctl(uep, EPOLL_CTL_ADD, ps[i].second, &ev) == 0 &&
         ::epoll_ctl(kep, EPOLL_CTL_ADD, ps[i].second, &ev) == 0;
  }
  // Which fds are ready: a shuffle from the point's generator.
  digest dg;
  std::vector<int> order(fds);
  for (int i = 0; i < fds; ++i)
    order[i] = i;
  for (int i = fds - 1; i > 0; --i)
    std::swap(order[i], order[ctx.rng()() % static_cast<std::uint64_t>(i + 1)]);
  for (int i = 0; ok && i < ready; ++i) {
    dg.add(static_cast<std::uint64_t>(order[i]));
    ok = ::write(ps[order[i]].first, "x", 1) == 1;
  }

  std::vector<double> u, k;
  bool mismatch = false;
  if (ok) {
    std::vector<epoll_event> out(ready);
    auto measure = [&](bool ours, std::vector<double>& into) {
      for (int i = 0; i < waits; ++i) {
        const mono_ns t0 = monotonic_now();
        const int n = ours ? ueq_epoll_wait(uep, out.data(), ready, 0)
                           : ::epoll_wait(kep, out.data(), ready, 0);
        const mono_ns t1 = monotonic_now();
        if (n != ready) mismatch = true;
        into.push_back(static_cast<double>(t1 - t0));
      }
    };
    measure(true, u);  // warm-up: the first waits fill ueq's ready list
    measure(false, k);
    u.clear();
    k.clear();
    ctx.trace_begin();
    for (int r = 0; r < rounds; ++r) {
      if (r % 2 == 0) {
        measure(true, u);
        measure(false, k);
      } else {
        measure(false, k);
        measure(true, u);
      }
    }
    ctx.trace_end();
  } else {
    ctx.skip(what, "could not set up the socketpairs and epoll sets");
  }
  if (uep >= 0) ueq_close(uep);
  if (kep >= 0) ::close(kep);
  for (auto& [a, b] : ps) {
    ::close(a);
    ueq_close(b);
  }
  if (!ok) return true;

  std::vector<double> us = u, ks = k;
  std::sort(us.begin(), us.end());
  std::sort(ks.begin(), ks.end());
  const double um = us[us.size() / 2], km = ks[ks.size() / 2];
  row& r = ctx.add_row();
  latency_columns(r, u, "ueq_");
  latency_columns(r, k, "kernel_");
  r.set("ratio_p50", km > 0 ? um / km : NAN)
      .set("ueq_ns_per_event", um / ready)
      .set("kernel_ns_per_event", km / ready)
      .set("workload_digest", dg.hex());
  latency_cdf(ctx, "latency", us, {{"impl", "ueq"}});
  latency_cdf(ctx, "latency", ks, {{"impl", "kernel"}});
  if (mismatch) {
    ctx.note("point " + std::to_string(ctx.point_index()) + " (" + what +
             "): a wait did not report every ready fd");
    return false;
  }
  return true;
}

void make_charts(context& ctx) {
  const table& t = ctx.get_table();
  chart c{.name = "wait",
          .title = "epoll_wait with N ready: ueq facade vs kernel epoll (median)",
          .xlabel = "ready fds (all reported by each wait)",
          .ylabel = "ns per epoll_wait",
          .logx = true,
          .logy = true};
  c.data = group_series(ctx, t, "ready", "ueq_p50_ns", {}, nullptr, "ueq ");
  for (auto& s : group_series(ctx, t, "ready", "kernel_p50_ns", {}, nullptr, "kernel "))
    c.data.push_back(std::move(s));
  ctx.add_chart(std::move(c));
  ctx.add_chart(
      cdf_chart(ctx, "latency", "latency", "epoll_wait time, ueq vs kernel (CDF)", {}, {"impl"}));
}

}  // namespace

experiment facade_experiment() {
  return {
      .name = "facade",
      .summary = "ueq epoll facade vs kernel epoll: time per epoll_wait with N ready",
      .params =
          {
              {"ready", "1,8,64,512", "1,64", "fds ready at every wait"},
              {"fds", "1024", "256", "fds registered in each set (at least `ready`)"},
              {"waits", "2000", "200", "timed waits per round and implementation"},
              {"rounds", "5", "3", "alternating rounds"},
          },
      .run_point = run_point,
      .make_charts = make_charts,
  };
}

}  // namespace ueq::lab
