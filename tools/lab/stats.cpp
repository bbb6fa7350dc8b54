// ueq-lab: helpers experiments share: seeds and digests of random draws,
// pacing, and latency statistics (percentiles, CDFs) with their charts.
#include <time.h>

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>

#include "lab.hpp"
#include "runner.hpp"

namespace ueq::lab {

std::string digest::hex() const {
  char b[24];
  std::snprintf(b, sizeof b, "%016" PRIx64, h_);
  return b;
}

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

std::mt19937_64 derive(std::uint64_t point_seed, std::uint64_t k) {
  return std::mt19937_64(splitmix64(point_seed ^ splitmix64(k + 1)));
}

void wait_until(mono_ns t, mono_ns spin_ns) noexcept {
  mono_ns now = monotonic_now();
  if (t - now > spin_ns) {
    const timespec ts = to_timespec(t - spin_ns);
    while (::clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
    }
  }
  while (monotonic_now() < t) {
  }
}

static double pct(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return NAN;
  const double pos = p / 100.0 * static_cast<double>(sorted.size() - 1);
  const std::size_t i = static_cast<std::size_t>(pos);
  const double f = pos - static_cast<double>(i);
  return i + 1 < sorted.size() ? sorted[i] * (1 - f) + sorted[i + 1] * f : sorted[i];
}

void latency_columns(row& r, std::vector<double>& s, const std::string& p) {
  std::sort(s.begin(), s.end());
  double sum = 0;
  for (double v : s)
    sum += v;
  r.set(p + "samples", s.size())
      .set(p + "p50_ns", pct(s, 50))
      .set(p + "p90_ns", pct(s, 90))
      .set(p + "p99_ns", pct(s, 99))
      .set(p + "p999_ns", pct(s, 99.9))
      .set(p + "max_ns", s.empty() ? NAN : s.back())
      .set(p + "mean_ns", s.empty() ? NAN : sum / static_cast<double>(s.size()));
}

void latency_cdf(context& ctx, const std::string& t, const std::vector<double>& sorted,
                 const std::vector<std::pair<std::string, value>>& extra) {
  if (sorted.empty()) return;
  std::vector<double> qs;
  for (int i = 0; i <= 100; ++i)
    qs.push_back(i / 100.0);
  for (double q : {0.995, 0.999, 0.9995, 0.9999})
    qs.push_back(q);
  std::sort(qs.begin(), qs.end());
  for (double q : qs) {
    row& r = ctx.add_row(t);
    for (auto& e : extra)
      r.set(e.first, e.second);
    r.set("fraction", q).set("latency_ns", pct(sorted, q * 100));
  }
}

std::vector<series> group_series(const context& ctx, const table& t, const std::string& x,
                                 const std::string& y, const std::vector<std::string>& exclude,
                                 const std::function<bool(std::size_t)>& keep,
                                 const std::string& prefix,
                                 const std::vector<std::string>& extra_keys) {
  std::vector<std::string> keys = extra_keys;
  for (auto& s : ctx.swept())
    if (std::find(exclude.begin(), exclude.end(), s) == exclude.end() && s != x) keys.push_back(s);
  std::vector<series> out;
  std::map<std::string, std::size_t> index;
  for (std::size_t r = 0; r < t.rows.size(); ++r) {
    if (keep && !keep(r)) continue;
    std::string label;
    for (auto& k : keys)
      label += (label.empty() ? "" : ", ") + ctx.param_text(k, t.str(r, k));
    if (label.empty())
      label = prefix.empty() ? y : prefix.substr(0, prefix.find_last_not_of(' ') + 1);
    else
      label = prefix + label;
    auto it = index.find(label);
    if (it == index.end()) {
      it = index.emplace(label, out.size()).first;
      out.push_back({label, {}});
    }
    const double xv = t.num(r, x), yv = t.num(r, y);
    if (std::isfinite(xv) && std::isfinite(yv)) out[it->second].pts.emplace_back(xv, yv);
  }
  for (auto& s : out)
    std::sort(s.pts.begin(), s.pts.end());
  return out;
}

chart cdf_chart(const context& ctx, const std::string& tn, const std::string& name,
                const std::string& title, const std::vector<std::string>& exclude,
                const std::vector<std::string>& extra_keys) {
  chart c{.name = name,
          .title = title,
          .xlabel = "latency (ns)",
          .ylabel = "fraction of deliveries",
          .logx = true,
          .style = "lines"};
  const table& t = ctx.get_table(tn);
  std::vector<std::string> ex = exclude;
  ex.push_back("fraction");
  c.data = group_series(ctx, t, "latency_ns", "fraction", ex, nullptr, "", extra_keys);
  // group_series sorts by x; a CDF is already monotonic in both.
  return c;
}

}  // namespace ueq::lab
