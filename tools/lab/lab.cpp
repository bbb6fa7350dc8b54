// ueq-lab's framework: values, tables and points, and the context an
// experiment runs in (rows, notes, warnings, skips, the per-stage trace).
// The command line is cli.cpp; statistics helpers stats.cpp; CSV, JSON and
// machine information writers.cpp; gnuplot charts charts.cpp.
#include "lab.hpp"

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "runner.hpp"
#include "ueq/ceq/evq/event_queue.hpp"
#include "ueq/runtime/trace.hpp"
#include "ueq/taps/tap.hpp"

namespace ueq::lab {

void die(const std::string& msg, int code) {
  std::fprintf(stderr, "ueq-lab: %s\n", msg.c_str());
  std::exit(code);
}

// ---- values, tables, points ---------------------------------------------

std::string value::text() const {
  if (!is_num) return str;
  if (!std::isfinite(num)) return "";
  char b[64];
  if (num == std::floor(num) && std::fabs(num) < 9.007e15)
    std::snprintf(b, sizeof b, "%.0f", num);
  else
    std::snprintf(b, sizeof b, "%.6g", num);
  return b;
}

int table::col(const std::string& name) const {
  for (std::size_t i = 0; i < columns.size(); ++i)
    if (columns[i] == name) return static_cast<int>(i);
  return -1;
}
double table::num(std::size_t r, const std::string& name) const {
  const int c = col(name);
  if (c < 0 || !rows[r][c].is_num) return NAN;
  return rows[r][c].num;
}
std::string table::str(std::size_t r, const std::string& name) const {
  const int c = col(name);
  return c < 0 ? std::string() : rows[r][c].text();
}

const std::string& point::str(const std::string& name) const {
  for (auto& kv : vals)
    if (kv.first == name) return kv.second;
  die("internal: no parameter '" + name + "'", 1);
}
double point::num(const std::string& name) const {
  const std::string& s = str(name);
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end || errno) die("parameter " + name + "=" + s + " is not a number");
  return v;
}
std::int64_t point::integer(const std::string& name) const {
  const double v = num(name);
  if (v != std::floor(v) || std::fabs(v) > 9e15)
    die("parameter " + name + "=" + str(name) + " is not an integer");
  return static_cast<std::int64_t>(v);
}
std::string point::label(const std::vector<std::string>& names) const {
  std::string out;
  for (auto& n : names) {
    if (!out.empty()) out += ' ';
    out += n + "=" + str(n);
  }
  return out;
}

// ---- context ------------------------------------------------------------

row& context::add_row(const std::string& t) {
  row& r = add_plain_row(t);
  r.set("point", point_index_);
  for (auto& kv : point_->vals) {
    char* end = nullptr;
    const double v = std::strtod(kv.second.c_str(), &end);
    if (!kv.second.empty() && !*end)
      r.set(kv.first, v);
    else
      r.set(kv.first, kv.second);
  }
  r.set("seed", std::to_string(seed_));
  r.set("load_1m", point_load_);
  return r;
}

row& context::add_plain_row(const std::string& t) {
  if (!raw_.count(t)) table_order_.push_back(t);
  built_.erase(t);
  return raw_[t].emplace_back();
}

const table& context::get_table(const std::string& t) const {
  auto it = built_.find(t);
  if (it != built_.end()) return it->second;
  table& out = built_[t];
  auto rit = raw_.find(t);
  if (rit == raw_.end()) return out;
  for (const row& r : rit->second) {
    if (out.columns.empty())
      for (auto& c : r.cells())
        out.columns.push_back(c.first);
    std::vector<value> vals(out.columns.size(), value(""));
    for (auto& c : r.cells()) {
      const int i = out.col(c.first);
      if (i < 0) die("internal: table '" + t + "' got a new column " + c.first, 1);
      vals[i] = c.second;
    }
    out.rows.push_back(std::move(vals));
  }
  return out;
}

void context::note(const std::string& s) {
  std::printf("%s: %s\n", exp_->name, s.c_str());
  std::fflush(stdout);
  notes_.push_back(s);
}

void context::warn(const std::string& s) {
  std::fprintf(stderr, "ueq-lab: warning: %s\n", s.c_str());
  notes_.push_back("warning: " + s);
}

void context::check_rate(double target, double achieved, const std::string& what) {
  if (target <= 0 || achieved >= 0.9 * target) return;
  char b[256];
  std::snprintf(b, sizeof b, "point %zu (%s) missed its target rate: %.4g of %.4g %s (%.0f%%)",
                point_index_, point_ ? point_->label(swept()).c_str() : "", achieved, target,
                what.c_str(), 100.0 * achieved / target);
  warn(b);
}

std::string context::param_text(const std::string& name, const std::string& value) const {
  for (auto& p : exp_->params) {
    if (p.name != name) continue;
    char* end = nullptr;
    const double v = std::strtod(value.c_str(), &end);
    const bool numeric = !value.empty() && !*end;
    if (numeric && v == 0 && !p.zero.empty()) return name + "=0 (" + p.zero + ")";
    if (!p.unit.empty()) return name + "=" + value + " " + p.unit;
  }
  return name + "=" + value;
}

void context::skip(const std::string& what, const std::string& why) {
  std::printf("%s: skipped %s: %s\n", exp_->name, what.c_str(), why.c_str());
  std::fflush(stdout);
  skipped_.emplace_back(what, why);
}

std::vector<std::string> context::swept() const {
  std::vector<std::string> out;
  for (auto& p : exp_->params)
    if (param_values_.at(p.name).size() > 1) out.push_back(p.name);
  return out;
}

void context::trace_begin() {
  if (!trace_) return;
  if (status s = trace_start(std::size_t{1} << 20); !s.ok())
    die("trace_start: " + s.code().message(), 1);
}

void context::trace_end() {
  if (!trace_) return;
  trace_stop();
  const std::vector<trace_record> rs = trace_snapshot();
  const trace_stats st = trace_counters();
  trace_records_ += rs.size();
  if (st.dropped) note("trace: " + std::to_string(st.dropped) + " records dropped (buffer full)");
  if (rs.empty()) return;
  const mono_ns t0 = rs.front().ts;
  for (const trace_record& r : rs) {
    char obj[32];
    std::snprintf(obj, sizeof obj, "0x%" PRIx64, r.obj);
    add_plain_row("trace")
        .set("point", point_index_)
        .set("seq", r.seq)
        .set("t_ns", static_cast<double>(r.ts - t0))
        .set("stage", trace_stage_name(r.stage))
        .set("id", r.id)
        .set("thread", r.thread)
        .set("aux", r.aux)
        .set("obj", obj);
  }
  // Per-stage delays of complete deliveries: for each consume, the latest
  // host/tap/post/wake of the same id since that id's previous consume.
  // The path's stages by number: host_event, tap, post, wake, consume.
  constexpr int kPost = trace_stages::post.number;
  constexpr int kWake = trace_stages::wake.number;
  constexpr int kConsume = trace_stages::consume.number;
  constexpr int kStages = kConsume + 1;
  static_assert(trace_stages::host_event.number == 0 && trace_stages::tap.number == 1 &&
                kPost == 2 && kWake == 3);
  struct chain {
    mono_ns at[kStages] = {};
  };
  std::map<std::uint32_t, chain> open;
  std::vector<double> d[kStages];  // d[k]: stage k-1 -> k; d[0]: post -> consume
  for (const trace_record& r : rs) {
    if (r.stage >= kStages) continue;  // a stage of no delivery path
    if (r.stage != kConsume) {
      open[r.id].at[r.stage] = r.ts;
      continue;
    }
    chain c = open[r.id];
    open.erase(r.id);
    if (!c.at[kPost]) continue;  // no post seen: not a whole delivery
    // A wake stamped before this post belongs to an earlier delivery (a
    // waiter that took that message on its re-check while still registered
    // was woken after it had consumed): not this delivery's wake.
    if (c.at[kWake] < c.at[kPost]) c.at[kWake] = 0;
    d[0].push_back(static_cast<double>(r.ts - c.at[kPost]));
    c.at[kConsume] = r.ts;
    for (int k = 1; k < kStages; ++k) {
      // wake -> consume needs a wake; without one the step is post -> consume.
      if (k == kConsume && !c.at[kWake]) continue;
      if (c.at[k - 1] && c.at[k] && c.at[k] >= c.at[k - 1])
        d[k].push_back(static_cast<double>(c.at[k] - c.at[k - 1]));
    }
  }
  static const char* const kNames[] = {"post_to_consume", "host_to_tap", "tap_to_post",
                                       "post_to_wake", "wake_to_consume"};
  row& r = add_row("stages");
  r.set("deliveries", d[0].size());
  for (int k = 1; k < kStages; ++k) {
    std::sort(d[k].begin(), d[k].end());
    r.set(std::string(kNames[k]) + "_median_ns", d[k].empty() ? NAN : d[k][d[k].size() / 2]);
  }
  std::sort(d[0].begin(), d[0].end());
  r.set("post_to_consume_median_ns", d[0].empty() ? NAN : d[0][d[0].size() / 2]);
}
}  // namespace ueq::lab
