// ueq-lab's framework: parameters and sweeps, progress, tables, CSV and
// JSON output, machine information, the trace export, and the charts
// (gnuplot scripts, rendered to SVG and, where gnuplot has pngcairo, PNG).
#include "lab.hpp"

#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "experiments.hpp"
#include "ueq/runtime/trace.hpp"

#ifndef UEQ_VERSION
#define UEQ_VERSION "unknown"
#endif
#ifndef UEQ_LAB_BUILDTYPE
#define UEQ_LAB_BUILDTYPE "unknown"
#endif
#ifndef UEQ_LAB_SANITIZE
#define UEQ_LAB_SANITIZE "none"
#endif

namespace ueq::lab {

[[noreturn]] static void die(const std::string& msg, int code = 2) {
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
  struct chain {
    mono_ns at[kTraceStages] = {0, 0, 0, 0, 0};
  };
  std::map<std::uint32_t, chain> open;
  std::vector<double> d[kTraceStages];  // d[k]: stage k-1 -> k; d[0]: post -> consume
  for (const trace_record& r : rs) {
    const int s = static_cast<int>(r.stage);
    if (r.stage != trace_stage::consume) {
      open[r.id].at[s] = r.ts;
      continue;
    }
    chain c = open[r.id];
    open.erase(r.id);
    if (!c.at[2]) continue;  // no post seen: not a whole delivery
    // A wake stamped before this post belongs to an earlier delivery (a
    // waiter that took that message on its re-check while still registered
    // was woken after it had consumed): not this delivery's wake.
    if (c.at[3] < c.at[2]) c.at[3] = 0;
    d[0].push_back(static_cast<double>(r.ts - c.at[2]));
    c.at[4] = r.ts;
    for (int k = 1; k < kTraceStages; ++k) {
      // wake -> consume needs a wake; without one the step is post -> consume.
      if (k == 4 && !c.at[3]) continue;
      if (c.at[k - 1] && c.at[k] && c.at[k] >= c.at[k - 1])
        d[k].push_back(static_cast<double>(c.at[k] - c.at[k - 1]));
    }
  }
  static const char* const kNames[] = {"post_to_consume", "host_to_tap", "tap_to_post",
                                       "post_to_wake", "wake_to_consume"};
  row& r = add_row("stages");
  r.set("deliveries", d[0].size());
  for (int k = 1; k < kTraceStages; ++k) {
    std::sort(d[k].begin(), d[k].end());
    r.set(std::string(kNames[k]) + "_median_ns", d[k].empty() ? NAN : d[k][d[k].size() / 2]);
  }
  std::sort(d[0].begin(), d[0].end());
  r.set("post_to_consume_median_ns", d[0].empty() ? NAN : d[0][d[0].size() / 2]);
}

// ---- helpers for experiments ----------------------------------------------

std::string digest::hex() const {
  char b[24];
  std::snprintf(b, sizeof b, "%016" PRIx64, h_);
  return b;
}

static std::uint64_t splitmix64(std::uint64_t x) {
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

// ---- machine ------------------------------------------------------------

static std::string read_first(const char* path, const char* key) {
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(key, 0) == 0) {
      auto p = line.find(':');
      if (p == std::string::npos) continue;
      std::string v = line.substr(p + 1);
      v.erase(0, v.find_first_not_of(" \t"));
      return v;
    }
  return "";
}

// The 1-minute load average (/proc/loadavg), or -1.
static double load_average() {
  double l = -1;
  if (FILE* f = std::fopen("/proc/loadavg", "re")) {
    if (std::fscanf(f, "%lf", &l) != 1) l = -1;
    std::fclose(f);
  }
  return l;
}

static std::vector<std::pair<std::string, std::string>> machine_info() {
  std::vector<std::pair<std::string, std::string>> m;
  m.emplace_back("cpu_model", read_first("/proc/cpuinfo", "model name"));
  m.emplace_back("nproc", std::to_string(::sysconf(_SC_NPROCESSORS_ONLN)));
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0)
    m.emplace_back("cpus_allowed", std::to_string(CPU_COUNT(&set)));
  m.emplace_back("mem_total", read_first("/proc/meminfo", "MemTotal"));
  utsname u{};
  if (::uname(&u) == 0) {
    m.emplace_back("kernel", std::string(u.sysname) + " " + u.release + " " + u.version);
    m.emplace_back("arch", u.machine);
  }
#if defined(__clang__)
  m.emplace_back("compiler", std::string("clang ") + __clang_version__);
#elif defined(__GNUC__)
  m.emplace_back("compiler", std::string("gcc ") + __VERSION__);
#endif
  m.emplace_back("build_type", UEQ_LAB_BUILDTYPE);
  m.emplace_back("sanitize", UEQ_LAB_SANITIZE);
  return m;
}

// ---- output ------------------------------------------------------------

static std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string o = "\"";
  for (char c : s)
    o += c == '"' ? std::string("\"\"") : std::string(1, c);
  return o + "\"";
}

static void write_csv(const std::string& path, const table& t) {
  std::ofstream f(path);
  for (std::size_t i = 0; i < t.columns.size(); ++i)
    f << (i ? "," : "") << csv_field(t.columns[i]);
  f << "\n";
  for (auto& r : t.rows) {
    for (std::size_t i = 0; i < r.size(); ++i)
      f << (i ? "," : "") << csv_field(r[i].text());
    f << "\n";
  }
  if (!f) die("cannot write " + path, 1);
}

static std::string jstr(const std::string& s) {
  std::string o = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        o += "\\\"";
        break;
      case '\\':
        o += "\\\\";
        break;
      case '\n':
        o += "\\n";
        break;
      case '\t':
        o += "\\t";
        break;
      default:
        if (c < 0x20) {
          char b[8];
          std::snprintf(b, sizeof b, "\\u%04x", c);
          o += b;
        } else {
          o += static_cast<char>(c);
        }
    }
  }
  return o + "\"";
}

static std::string jval(const value& v) {
  if (!v.is_num) return jstr(v.str);
  if (!std::isfinite(v.num)) return "null";
  return v.text();
}

static std::string utc_now() {
  char b[32];
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  std::strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return b;
}

static std::string shell_quote(const std::string& s) {
  std::string o = "'";
  for (char c : s)
    o += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return o + "'";
}

static bool have_program(const char* name) {
  const char* path = std::getenv("PATH");
  if (!path) return false;
  std::stringstream ss(path);
  std::string dir;
  while (std::getline(ss, dir, ':'))
    if (!dir.empty() && ::access((dir + "/" + name).c_str(), X_OK) == 0) return true;
  return false;
}

// Writes the chart's gnuplot script (data inline, so it re-renders alone:
// `cd DIR && gnuplot NAME-CHART.gp`). Returns false if it has no data.
// Integer-valued axes get integer ticks: the values themselves when few,
// else whole-number labels.
static void integer_ticks(std::ofstream& f, const char* axis, const std::set<double>& vals) {
  if (vals.empty()) return;
  for (double v : vals)
    if (v != std::floor(v)) return;
  if (vals.size() <= 12) {
    f << "set " << axis << "tics (";
    bool first = true;
    for (double v : vals) {
      f << (first ? "" : ", ") << value(v).text();
      first = false;
    }
    f << ")\n";
  } else {
    f << "set format " << axis << " '%.0f'\n";
  }
}

static bool write_chart_script(const std::string& dir, const std::string& stem, const chart& c,
                               bool quick) {
  bool any = false, logx = c.logx, logy = c.logy;
  std::set<double> xs, ys;
  for (auto& s : c.data)
    for (auto& p : s.pts) {
      any = true;
      if (p.first <= 0) logx = false;
      if (p.second <= 0) logy = false;
      xs.insert(p.first);
      ys.insert(p.second);
    }
  if (!any) return false;
  const std::string title =
      quick ? c.title + " [--quick run: short, not for conclusions]" : c.title;
  std::ofstream f(dir + "/" + stem + ".gp");
  f << "# ueq-lab chart: " << title << "\n"
    << "# Re-render from this folder: gnuplot " << stem << ".gp\n";
  int k = 0;
  for (auto& s : c.data) {
    f << "$s" << k++ << " << EOD\n";
    for (auto& p : s.pts)
      f << value(p.first).text() << " " << value(p.second).text() << "\n";
    f << "EOD\n";
  }
  auto q = [](const std::string& s) {
    std::string o = "\"";
    for (char ch : s)
      o += ch == '"' || ch == '\\' ? std::string("\\") + ch : std::string(1, ch);
    return o + "\"";
  };
  f << "set termoption noenhanced\n"
    << "set title " << q(title) << " noenhanced\n"
    << "set xlabel " << q(c.xlabel) << " noenhanced\n"
    << "set ylabel " << q(c.ylabel) << " noenhanced\n"
    << "set grid\nset key outside right top noenhanced\n";
  // Log axes read best in SI steps: 1k, 10k, 100k, 1M.
  if (logx) f << "set logscale x\nset format x '%.0s%c'\n";
  if (logy) f << "set logscale y\nset format y '%.0s%c'\n";
  if (!logy) f << "set yrange [0:*]\n";
  if (!logx && c.xtic_labels.empty()) integer_ticks(f, "x", xs);
  if (!logy && ys.size() > 1 && *ys.rbegin() <= 20) integer_ticks(f, "y", ys);
  if (!c.xtic_labels.empty()) {
    f << "set xtics (";
    for (std::size_t i = 0; i < c.xtic_labels.size(); ++i)
      f << (i ? ", " : "") << q(c.xtic_labels[i]) << " " << i + 1;
    f << ")\nset xrange [0.5:" << c.xtic_labels.size() + 0.5 << "]\n";
  }
  std::string plot = "plot ";
  k = 0;
  for (auto& s : c.data) {
    if (k) plot += ", \\\n     ";
    // Distinct dash and point types: series that overlap stay visible.
    plot += "$s" + std::to_string(k) + " using 1:2 with " + c.style + " lw 2 dt " +
            std::to_string(k % 5 + 1) + " pt " + std::to_string(k % 12 + 1) + " title " +
            q(s.label);
    ++k;
  }
  f << "set terminal svg size 960,540 dynamic background rgb 'white' font 'sans,12'\n"
    << "set output '" << stem << ".svg'\n"
    << plot << "\n"
    << "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
    << "  set terminal pngcairo size 960,540 font 'sans,10'\n"
    << "  set output '" << stem << ".png'\n"
    << "  replot\n"
    << "}\n"
    << "set output\n";
  return static_cast<bool>(f);
}

// ---- the run ------------------------------------------------------------

namespace {

const std::vector<experiment>& experiments() {
  static const std::vector<experiment> all = {
      coalescing_experiment(), mailboxes_experiment(), wake_policy_experiment(),
      backends_experiment(),   facade_experiment(),
  };
  return all;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

int usage() {
  std::fprintf(stderr,
               "usage: ueq-lab list\n"
               "       ueq-lab describe NAME\n"
               "       ueq-lab run NAME [--param k=v ...] [--sweep k=v1,v2,...] [--seed N]\n"
               "                        [--quick] [--trace] [--charts | --no-charts] --out DIR\n"
               "  --param k=v      fix parameter k to one value\n"
               "  --sweep k=a,b,c  run parameter k over these values\n"
               "  --seed N         seed of every random choice (default 1)\n"
               "  --quick          short runs over fewer values (a few seconds)\n"
               "  --trace          record the per-stage event trace of each point and export it\n"
               "  --charts         fail (exit 1) if the charts cannot be rendered\n"
               "  --no-charts      write the gnuplot scripts but do not run gnuplot\n");
  return 2;
}

void describe(const experiment& e) {
  std::printf("%s: %s\n\nparameters (default values; --quick values):\n", e.name, e.summary);
  for (auto& p : e.params)
    std::printf("  %-12s %-28s %-18s %s\n", p.name.c_str(), p.values.c_str(),
                p.quick.empty() ? "(same)" : p.quick.c_str(), p.help.c_str());
}

bool mkdirs(const std::string& dir) {
  std::string cur;
  for (auto& part : split(dir, '/')) {
    cur += part;
    if (!cur.empty() && ::mkdir(cur.c_str(), 0777) != 0 && errno != EEXIST) return false;
    cur += '/';
  }
  struct stat st;
  return ::stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

}  // namespace

int run_main(int argc, char** argv) {
  if (argc < 2) return usage();
  const std::string cmd = argv[1];
  if (cmd == "-h" || cmd == "--help") return usage(), 0;
  if (cmd == "list") {
    for (auto& e : experiments())
      std::printf("%-12s %s\n", e.name, e.summary);
    return 0;
  }
  auto find = [](const std::string& n) -> const experiment* {
    for (auto& e : experiments())
      if (n == e.name) return &e;
    return nullptr;
  };
  if (cmd == "describe") {
    if (argc != 3) return usage();
    const experiment* e = find(argv[2]);
    if (!e) die(std::string("unknown experiment '") + argv[2] + "' (try: ueq-lab list)");
    describe(*e);
    return 0;
  }
  if (cmd != "run" || argc < 3) return usage();
  const experiment* e = find(argv[2]);
  if (!e) die(std::string("unknown experiment '") + argv[2] + "' (try: ueq-lab list)");

  context ctx;
  ctx.exp_ = e;
  bool charts_required = false, no_charts = false;
  std::map<std::string, std::string> overrides;
  for (int i = 3; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) die(a + " needs a value");
      return argv[++i];
    };
    if (a == "--quick") {
      ctx.quick_ = true;
    } else if (a == "--trace") {
      ctx.trace_ = true;
    } else if (a == "--charts") {
      charts_required = true;
    } else if (a == "--no-charts") {
      no_charts = true;
    } else if (a == "--out") {
      ctx.out_ = next();
    } else if (a == "--seed") {
      const std::string s = next();
      char* end = nullptr;
      errno = 0;
      ctx.seed_ = std::strtoull(s.c_str(), &end, 10);
      if (s.empty() || *end || errno) die("--seed needs a non-negative integer");
    } else if (a == "--param" || a == "--sweep") {
      const std::string kv = next();
      const auto eq = kv.find('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == kv.size())
        die(a + " needs k=v" + (a == "--sweep" ? "1,v2,..." : ""));
      const std::string k = kv.substr(0, eq), v = kv.substr(eq + 1);
      if (a == "--param" && v.find(',') != std::string::npos)
        die("--param takes one value; use --sweep " + kv);
      overrides[k] = v;
    } else {
      std::fprintf(stderr, "ueq-lab: unknown argument '%s'\n", a.c_str());
      return usage();
    }
  }
  if (ctx.out_.empty()) die("run needs --out DIR");
  if (charts_required && no_charts) die("--charts and --no-charts contradict each other");
  for (auto& [k, v] : overrides) {
    bool known = false;
    for (auto& p : e->params)
      known |= p.name == k;
    if (!known) {
      describe(*e);
      die("experiment " + std::string(e->name) + " has no parameter '" + k + "'");
    }
  }
  for (auto& p : e->params) {
    std::string v = overrides.count(p.name)          ? overrides[p.name]
                    : ctx.quick_ && !p.quick.empty() ? p.quick
                                                     : p.values;
    auto vals = split(v, ',');
    for (auto& x : vals)
      if (x.empty()) die("empty value in " + p.name + "=" + v);
    ctx.param_values_[p.name] = vals;
  }
  if (!mkdirs(ctx.out_)) die("cannot create " + ctx.out_ + ": " + std::strerror(errno));

  // The points: cartesian product, last parameter fastest.
  std::vector<point> points(1);
  for (auto& p : e->params) {
    std::vector<point> next;
    for (auto& pt : points)
      for (auto& v : ctx.param_values_[p.name]) {
        point q = pt;
        q.vals.emplace_back(p.name, v);
        next.push_back(std::move(q));
      }
    points = std::move(next);
  }

  std::string command;
  for (int i = 0; i < argc; ++i)
    command += (i ? " " : "") + std::string(argv[i]);
  const std::string started = utc_now();
  const mono_ns t_start = monotonic_now();
  std::printf("ueq-lab %s: %zu point%s, seed %" PRIu64 "%s, output in %s\n", e->name, points.size(),
              points.size() == 1 ? "" : "s", ctx.seed_, ctx.quick_ ? ", quick" : "",
              ctx.out_.c_str());
  std::fflush(stdout);
  bool ok = true;
  const auto swept = ctx.swept();
  const double load_start = load_average();
  double max_load = load_start;
  for (std::size_t i = 0; i < points.size(); ++i) {
    ctx.point_index_ = i;
    ctx.point_ = &points[i];
    std::string key;
    for (auto& kv : points[i].vals)
      key += kv.first + "=" + kv.second + ";";
    std::uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned char c : key)
      h = (h ^ c) * 0x100000001b3ull;
    ctx.point_load_ = load_average();
    max_load = std::max(max_load, ctx.point_load_);
    ctx.point_seed_ = splitmix64(ctx.seed_ ^ splitmix64(h));
    ctx.rng_.seed(ctx.point_seed_);
    const mono_ns t0 = monotonic_now();
    const double elapsed = static_cast<double>(t0 - t_start) / 1e9;
    std::fprintf(stderr, "[%zu/%zu] %s%s", i + 1, points.size(),
                 swept.empty() ? "" : points[i].label(swept).c_str(), swept.empty() ? "" : " ");
    if (i > 0)
      std::fprintf(stderr, "(%.1f s elapsed, ~%.0f s left)", elapsed,
                   elapsed / static_cast<double>(i) * static_cast<double>(points.size() - i));
    std::fprintf(stderr, "\n");
    ok &= e->run_point(ctx, points[i]);
  }
  if (e->make_charts) e->make_charts(ctx);
  if (ctx.has_table("stages")) {
    // The per-stage delays the trace measured, one series per point.
    chart c{.name = "stages",
            .title = std::string(e->name) + ": median delay of each stage (trace)",
            .xlabel = "stage",
            .ylabel = "median delay (ns)",
            .logy = true,
            .xtic_labels = {"host->tap", "tap->post", "post->wake", "wake->consume"}};
    const table& t = ctx.get_table("stages");
    static const char* const kCols[] = {"host_to_tap_median_ns", "tap_to_post_median_ns",
                                        "post_to_wake_median_ns", "wake_to_consume_median_ns"};
    for (std::size_t r = 0; r < t.rows.size(); ++r) {
      series s{.label = "point " + t.str(r, "point")};
      std::vector<std::string> sw = ctx.swept();
      if (!sw.empty()) {
        s.label.clear();
        for (auto& k : sw)
          s.label += (s.label.empty() ? "" : ", ") + ctx.param_text(k, t.str(r, k));
      }
      for (int k = 0; k < 4; ++k) {
        const double v = t.num(r, kCols[k]);
        if (std::isfinite(v)) s.pts.emplace_back(k + 1, v);
      }
      c.data.push_back(std::move(s));
    }
    ctx.add_chart(std::move(c));
  }
  const double duration = static_cast<double>(monotonic_now() - t_start) / 1e9;

  // Tables.
  std::vector<std::pair<std::string, std::string>> files;  // table -> file
  // The main table first, then the others in the order they were first used.
  std::stable_partition(ctx.table_order_.begin(), ctx.table_order_.end(),
                        [](const std::string& t) { return t.empty(); });
  for (auto& t : ctx.table_order_) {
    const std::string file = std::string(e->name) + (t.empty() ? "" : "-" + t) + ".csv";
    write_csv(ctx.out_ + "/" + file, ctx.get_table(t));
    files.emplace_back(t.empty() ? "main" : t, file);
  }
  const double load_end = load_average();
  const long cpus = std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN));
  if (std::max(max_load, load_end) > 0.75 * static_cast<double>(cpus)) {
    char b[200];
    std::snprintf(b, sizeof b,
                  "the machine was busy: 1-minute load average up to %.2f on %ld CPUs while "
                  "the points ran (column load_1m); timings and rates may not be representative",
                  std::max(max_load, load_end), cpus);
    ctx.warn(b);
  }
  if (!ctx.has_table("")) {
    ctx.warn("nothing ran: every point was skipped (see \"skipped\"); exiting 1");
    ok = false;
  }

  // Charts.
  std::vector<std::pair<std::string, std::string>> chart_files;  // stem -> title
  for (auto& c : ctx.charts_) {
    const std::string stem = std::string(e->name) + "-" + c.name;
    if (write_chart_script(ctx.out_, stem, c, ctx.quick_)) chart_files.emplace_back(stem, c.title);
  }
  std::string chart_status = "rendered";
  bool png = false;
  if (no_charts) {
    chart_status = "not rendered (--no-charts); run: cd DIR && gnuplot NAME-*.gp";
  } else if (!have_program("gnuplot")) {
    chart_status =
        "not rendered: gnuplot not found (install gnuplot-nox: bash tools/deps.sh); "
        "the .gp scripts are in DIR";
    std::fprintf(stderr, "ueq-lab: %s\n", chart_status.c_str());
    if (charts_required) ok = false;
  } else {
    for (auto& [stem, title] : chart_files) {
      const std::string sh = "cd " + shell_quote(ctx.out_) + " && gnuplot " +
                             shell_quote(stem + ".gp") + " 2> " + shell_quote(stem + ".log");
      const int rc = std::system(sh.c_str());
      struct stat st;
      if (rc != 0 || ::stat((ctx.out_ + "/" + stem + ".svg").c_str(), &st) != 0) {
        chart_status = "gnuplot failed on " + stem + ".gp (see " + stem + ".log)";
        std::fprintf(stderr, "ueq-lab: %s\n", chart_status.c_str());
        ok = false;
        continue;
      }
      if (::stat((ctx.out_ + "/" + stem + ".png").c_str(), &st) == 0) png = true;
      ::unlink((ctx.out_ + "/" + stem + ".log").c_str());
    }
    if (!chart_files.empty() && !png) ctx.note("gnuplot has no pngcairo terminal: SVG only");
  }

  // JSON.
  {
    std::ofstream f(ctx.out_ + "/" + e->name + ".json");
    f << "{\n  \"experiment\": " << jstr(e->name) << ",\n  \"summary\": " << jstr(e->summary)
      << ",\n  \"ueq_version\": " << jstr(UEQ_VERSION) << ",\n  \"seed\": " << ctx.seed_
      << ",\n  \"quick\": " << (ctx.quick_ ? "true" : "false")
      << ",\n  \"trace\": " << (ctx.trace_ ? "true" : "false")
      << ",\n  \"command\": " << jstr(command) << ",\n  \"started\": " << jstr(started)
      << ",\n  \"duration_s\": " << value(duration).text() << ",\n  \"load_average_1m\": {"
      << "\"start\": " << value(load_start).text() << ", \"max\": " << value(max_load).text()
      << ", \"end\": " << value(load_end).text() << "},\n  \"machine\": {";
    bool first = true;
    for (auto& [k, v] : machine_info()) {
      f << (first ? "\n" : ",\n") << "    " << jstr(k) << ": " << jstr(v);
      first = false;
    }
    f << "\n  },\n  \"params\": {";
    first = true;
    for (auto& p : e->params) {
      f << (first ? "\n" : ",\n") << "    " << jstr(p.name) << ": [";
      auto& vs = ctx.param_values_[p.name];
      for (std::size_t i = 0; i < vs.size(); ++i) {
        char* end = nullptr;
        (void)std::strtod(vs[i].c_str(), &end);
        f << (i ? ", " : "") << (*end ? jstr(vs[i]) : vs[i]);
      }
      f << "]";
      first = false;
    }
    f << "\n  },\n  \"points\": " << points.size() << ",\n  \"files\": {";
    first = true;
    for (auto& [t, file] : files) {
      f << (first ? "\n" : ",\n") << "    " << jstr(t) << ": " << jstr(file);
      first = false;
    }
    f << "\n  },\n  \"charts\": [";
    first = true;
    for (auto& [stem, title] : chart_files) {
      f << (first ? "\n" : ",\n") << "    {\"title\": " << jstr(title)
        << ", \"script\": " << jstr(stem + ".gp") << ", \"svg\": " << jstr(stem + ".svg")
        << ", \"png\": " << (png ? jstr(stem + ".png") : "null") << "}";
      first = false;
    }
    f << "\n  ],\n  \"charts_status\": " << jstr(chart_status) << ",\n  \"notes\": [";
    for (std::size_t i = 0; i < ctx.notes_.size(); ++i)
      f << (i ? ", " : "") << jstr(ctx.notes_[i]);
    f << "],\n  \"skipped\": [";
    for (std::size_t i = 0; i < ctx.skipped_.size(); ++i)
      f << (i ? ", " : "") << "{\"what\": " << jstr(ctx.skipped_[i].first)
        << ", \"why\": " << jstr(ctx.skipped_[i].second) << "}";
    f << "],\n  \"trace_records\": " << ctx.trace_records_ << ",\n  \"rows\": [";
    const table& m = ctx.get_table("");
    for (std::size_t r = 0; r < m.rows.size(); ++r) {
      f << (r ? ",\n" : "\n") << "    {";
      for (std::size_t c = 0; c < m.columns.size(); ++c)
        f << (c ? ", " : "") << jstr(m.columns[c]) << ": " << jval(m.rows[r][c]);
      f << "}";
    }
    f << "\n  ]\n}\n";
    if (!f) die("cannot write the JSON file", 1);
  }

  std::printf("wrote");
  for (auto& [t, file] : files)
    std::printf(" %s", file.c_str());
  std::printf(" %s.json", e->name);
  for (auto& [stem, title] : chart_files)
    std::printf(" %s.svg%s", stem.c_str(), png ? (" " + stem + ".png").c_str() : "");
  std::printf(" in %s (%.1f s)\n", ctx.out_.c_str(), duration);
  return ok ? 0 : 1;
}

}  // namespace ueq::lab

int main(int argc, char** argv) {
  return ueq::lab::run_main(argc, argv);
}
