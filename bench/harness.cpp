#include "harness.hpp"

#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <ctime>

namespace ueq::bench {

std::vector<area>& registry() {
  static std::vector<area> r;
  return r;
}

std::uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ull + ts.tv_nsec;
}

double median(std::vector<double> v) {
  return percentile(std::move(v), 50);
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double pos = p / 100.0 * (v.size() - 1);
  const std::size_t lo = static_cast<std::size_t>(pos);
  const std::size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - lo);
}

std::pair<double, double> alternate(int rounds, const std::function<double()>& measured,
                                    const std::function<double()>& baseline) {
  std::vector<double> m, b;
  measured();  // warm-up, not recorded
  baseline();
  for (int r = 0; r < rounds; ++r) {
    if (r % 2 == 0) {
      m.push_back(measured());
      b.push_back(baseline());
    } else {
      b.push_back(baseline());
      m.push_back(measured());
    }
  }
  return {median(m), median(b)};
}

int cpu_count() {
  const long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(n) : 1;
}

std::size_t raise_fd_limit(std::size_t want) {
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
  if (rl.rlim_cur < want) {
    rl.rlim_cur = std::min<rlim_t>(rl.rlim_max, want);
    (void)setrlimit(RLIMIT_NOFILE, &rl);
    (void)getrlimit(RLIMIT_NOFILE, &rl);
  }
  return rl.rlim_cur;
}

bool pin_to_cpu(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu % cpu_count(), &set);
  return pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0;
}

namespace {
std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    if (static_cast<unsigned char>(c) < 0x20) continue;
    o += c;
  }
  return o;
}

// "<= 1.5" / ">= 0.95" against the ratio.
bool goal_met(const std::string& goal, double ratio) {
  double x = 0;
  if (std::sscanf(goal.c_str(), "<= %lf", &x) == 1) return ratio <= x;
  if (std::sscanf(goal.c_str(), ">= %lf", &x) == 1) return ratio >= x;
  return true;
}
}  // namespace

void context::report(const case_result& r) {
  const bool has_base = !r.baseline.empty() && r.baseline_value != 0;
  const double ratio = has_base ? r.value / r.baseline_value : 0;
  const bool met = r.goal.empty() || (r.goal_on_value ? goal_met(r.goal, r.value)
                                                      : !has_base || goal_met(r.goal, ratio));
  const char* goal_of = r.goal_on_value ? "value" : "ratio";
  if (!met) ++missed_;
  if (json_) {
    std::printf("{\"bench\":\"%s\",\"case\":\"%s\",\"unit\":\"%s\",\"value\":%.6g",
                json_escape(bench_).c_str(), json_escape(r.name).c_str(),
                json_escape(r.unit).c_str(), r.value);
    if (has_base)
      std::printf(",\"baseline\":\"%s\",\"baseline_value\":%.6g,\"ratio\":%.4g",
                  json_escape(r.baseline).c_str(), r.baseline_value, ratio);
    if (r.higher_is_better) std::printf(",\"higher_is_better\":true");
    if (!r.goal.empty())
      std::printf(",\"goal\":\"%s %s\",\"goal_met\":%s", goal_of, r.goal.c_str(),
                  met ? "true" : "false");
    if (!r.note.empty()) std::printf(",\"note\":\"%s\"", json_escape(r.note).c_str());
    std::printf("}\n");
  } else {
    std::printf("%-8s %-30s %12.4g %-9s", bench_.c_str(), r.name.c_str(), r.value, r.unit.c_str());
    if (has_base)
      std::printf(" | %-26s %12.4g | ratio %7.3f", r.baseline.c_str(), r.baseline_value, ratio);
    if (!r.goal.empty())
      std::printf("  goal %s %s %s", goal_of, r.goal.c_str(), met ? "ok" : "MISSED");
    std::printf("\n");
    if (!r.note.empty()) std::printf("         %s\n", r.note.c_str());
  }
  std::fflush(stdout);
}

}  // namespace ueq::bench
