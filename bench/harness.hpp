// The benchmark harness behind `ueq-bench`.
//
// Every case measures the thing and its baseline in the same run, in
// alternating rounds, and reports the medians and their ratio. Areas register
// themselves with UEQ_BENCH; main.cpp dispatches `ueq-bench AREA...`.
//
// Usage (in bench/foo_bench.cpp):
//   UEQ_BENCH(foo, "what the foo cases compare") {
//     auto [v, b] = ueq::bench::alternate(ctx.rounds(), [&] { return measure(); },
//                                         [&] { return measure_baseline(); });
//     ctx.report({.name = "case", .unit = "ns/op", .value = v,
//                 .baseline = "thing", .baseline_value = b, .goal = "<= 1.5"});
//   }
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace ueq::bench {

struct case_result {
  std::string name;               // JSON "case"
  std::string unit;               // "ns/op", "events/s", "bytes", ...
  double value = 0;               // median of the measured code
  std::string baseline;           // what it is compared with ("" = none)
  double baseline_value = 0;      // median of the baseline
  bool higher_is_better = false;  // throughputs
  std::string goal;               // e.g. "<= 1.5" on the ratio ("" = report only)
  bool goal_on_value = false;     // the goal bounds the value itself, not the ratio
  std::string note;               // free text (how it was measured)
};

class context {
 public:
  context(std::string bench, bool quick, bool json)
      : bench_(std::move(bench)), quick_(quick), json_(json) {}
  bool quick() const { return quick_; }
  // Rounds per case: each round runs the measured code and its baseline once.
  int rounds() const { return quick_ ? 5 : 15; }
  // Scales an amount of work: full runs do `full`, quick runs a tenth of it.
  std::uint64_t work(std::uint64_t full) const { return quick_ ? (full + 9) / 10 : full; }
  void report(const case_result& r);
  const std::string& bench() const { return bench_; }
  int goals_missed() const { return missed_; }

 private:
  std::string bench_;
  bool quick_, json_;
  int missed_ = 0;
};

using bench_fn = void (*)(context&);
struct area {
  const char* name;
  const char* summary;
  bench_fn fn;
};
std::vector<area>& registry();
struct registrar {
  registrar(const char* name, const char* summary, bench_fn fn) {
    registry().push_back({name, summary, fn});
  }
};

#define UEQ_BENCH(NAME, SUMMARY)                                                          \
  static void ueq_bench_##NAME(::ueq::bench::context& ctx);                               \
  static ::ueq::bench::registrar ueq_bench_reg_##NAME(#NAME, SUMMARY, &ueq_bench_##NAME); \
  static void ueq_bench_##NAME(::ueq::bench::context& ctx)

// Monotonic nanoseconds.
std::uint64_t now_ns();
double median(std::vector<double> v);
double percentile(std::vector<double> v, double p);  // p in [0, 100]

// Runs `rounds` rounds of {measured(), baseline()} (the order alternates per
// round, so drift hits both alike) and returns their medians.
std::pair<double, double> alternate(int rounds, const std::function<double()>& measured,
                                    const std::function<double()>& baseline);

// Pins the calling thread to one CPU (cpu % nproc). Returns false if the
// machine refused (then the benchmark says so in its note).
bool pin_to_cpu(int cpu);
int cpu_count();

// Raises the soft RLIMIT_NOFILE towards `want` (never above the hard
// limit); returns the soft limit now in force.
std::size_t raise_fd_limit(std::size_t want);

// Keeps a value alive so the compiler cannot drop the computation.
template <class T>
inline void keep(T const& v) {
  asm volatile("" : : "r,m"(v) : "memory");
}

}  // namespace ueq::bench
