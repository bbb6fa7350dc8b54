// ueq-lab: the event-delivery lab. The framework every experiment uses.
//
// An experiment declares its parameters (each with a default list of values,
// a shorter list for --quick, and a one-line help) and a function that runs
// one point of the sweep: one combination of parameter values. The framework
// builds the points (the cartesian product of every parameter's values, in
// declaration order, the last parameter varying fastest), shows progress,
// seeds one random generator per point from --seed and the point's values,
// and writes what the experiment recorded:
//   DIR/NAME.csv            the main table, one row per point (or more)
//   DIR/NAME-TABLE.csv      further tables (latency CDFs, traces)
//   DIR/NAME.json           parameters, seed, machine, every table's file,
//                           the main table's rows, notes, charts
//   DIR/NAME-CHART.gp       a self-contained gnuplot script per chart
//   DIR/NAME-CHART.svg/png  the rendered charts
//
// Reproducibility: every random choice of a workload (which IDs, which
// sockets, what gaps) comes from the point's generator, drawn before the
// measurement starts, and experiments put a digest of it in the row
// (`workload_digest`): the same seed gives the same workloads. Timings and
// interleaving-dependent counts are measurements and vary.
//
// Thread-safety: the framework runs on one thread; experiments start and
// join their own threads inside run_point.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "ueq/runtime/clock.hpp"

namespace ueq::lab {

// One table cell: a number or a string.
struct value {
  value(double v) : num(v) {}  // NOLINT: implicit by design
  value(int v) : num(v) {}     // NOLINT
  value(unsigned v) : num(v) {}
  value(long v) : num(static_cast<double>(v)) {}
  value(unsigned long v) : num(static_cast<double>(v)) {}
  value(long long v) : num(static_cast<double>(v)) {}
  value(unsigned long long v) : num(static_cast<double>(v)) {}
  value(const char* s) : is_num(false), str(s) {}
  value(std::string s) : is_num(false), str(std::move(s)) {}
  bool is_num = true;
  double num = 0;
  std::string str;
  std::string text() const;  // as written to CSV (numbers: integers exactly, else %.6g)
};

struct table {
  std::vector<std::string> columns;
  std::vector<std::vector<value>> rows;
  int col(const std::string& name) const;  // -1 if absent
  double num(std::size_t row, const std::string& name) const;
  std::string str(std::size_t row, const std::string& name) const;
};

// A row being filled: set() appends columns in order; the first row of a
// table fixes its columns, later rows must set the same ones.
class row {
 public:
  row& set(const std::string& col, value v) {
    cells_.emplace_back(col, std::move(v));
    return *this;
  }
  const std::vector<std::pair<std::string, value>>& cells() const { return cells_; }

 private:
  std::vector<std::pair<std::string, value>> cells_;
};

struct param_def {
  std::string name;
  std::string values;  // default values, comma-separated ("1,2,4")
  std::string quick;   // --quick values ("" = same as values)
  std::string help;
  std::string unit = {};  // said after a value in chart legends ("posts/s")
  std::string zero = {};  // what a value of 0 means, if special ("unpaced")
};

// One point of the sweep: every parameter's value for this run.
class point {
 public:
  std::vector<std::pair<std::string, std::string>> vals;  // declaration order
  const std::string& str(const std::string& name) const;
  double num(const std::string& name) const;  // exits with a message if not a number
  std::int64_t integer(const std::string& name) const;
  std::string label(const std::vector<std::string>& names) const;  // "a=1 b=2"
};

struct series {
  std::string label;
  std::vector<std::pair<double, double>> pts;
};

struct chart {
  std::string name;  // file stem suffix: NAME-<name>.svg
  std::string title, xlabel, ylabel;
  bool logx = false, logy = false;  // dropped when a value is <= 0
  std::string style = "linespoints";
  std::vector<std::string> xtic_labels;  // x = 1..n named, for categories
  std::vector<series> data;
};

class context;
struct experiment {
  const char* name;
  const char* summary;
  std::vector<param_def> params;
  // Runs one point; records rows, notes, skips. Returns false on a failed
  // check (a lost event): the run goes on and ueq-lab exits 1.
  std::function<bool(context&, const point&)> run_point;
  // After every point: builds the charts from the tables.
  std::function<void(context&)> make_charts;
};

// What an experiment sees while it runs.
class context {
 public:
  bool quick() const { return quick_; }
  std::uint64_t seed() const { return seed_; }
  // The point's generator: seeded from --seed and the point's values (not
  // its position), so adding a value to a sweep leaves other points alone.
  std::mt19937_64& rng() { return rng_; }
  std::uint64_t point_seed() const { return point_seed_; }
  std::size_t point_index() const { return point_index_; }
  // A new row of table `t` ("" = the main table), starting with the point's
  // index and parameter values and the seed.
  row& add_row(const std::string& t = "");
  // A row with no point columns (a free-form table such as a trace).
  row& add_plain_row(const std::string& t);
  // The table as recorded so far (columns from its first row).
  const table& get_table(const std::string& t = "") const;
  bool has_table(const std::string& t) const { return raw_.count(t) != 0; }
  // Said on stdout now and kept in the JSON's "notes".
  void note(const std::string& s);
  // Said on stderr now and kept in the notes as "warning: ...": a result
  // that may not mean what it seems (a missed rate, a busy machine).
  void warn(const std::string& s);
  // Warns when a point offered less than 90% of its target rate (target 0
  // = unpaced: nothing to miss). `what` names the rate, with its unit.
  void check_rate(double target, double achieved, const std::string& what);
  // "name=value unit", or "name=0 (zero's meaning)", as legends show it.
  std::string param_text(const std::string& name, const std::string& value) const;
  // A point (or part of one) that could not run here, and why ("io_uring
  // unavailable: ..."): said, kept in the JSON's "skipped"; not a failure.
  void skip(const std::string& what, const std::string& why);
  void add_chart(chart c) { charts_.push_back(std::move(c)); }
  // Parameters with more than one value in this run (chart series labels).
  std::vector<std::string> swept() const;
  const std::string& out_dir() const { return out_; }
  const char* name() const { return exp_->name; }
  // Around a point's measured window: with --trace, records the per-stage
  // trace (runtime/trace.hpp) and exports it (NAME-trace.csv, NAME-stages.csv).
  void trace_begin();
  void trace_end();
  bool tracing() const { return trace_; }

 private:
  friend int run_main(int argc, char** argv);
  friend struct runner;
  const experiment* exp_ = nullptr;
  bool quick_ = false, trace_ = false;
  std::uint64_t seed_ = 1, point_seed_ = 0;
  std::size_t point_index_ = 0;
  const point* point_ = nullptr;
  double point_load_ = 0;  // 1-minute load average when the point started
  std::mt19937_64 rng_;
  std::string out_;
  std::map<std::string, std::vector<std::string>> param_values_;
  std::map<std::string, std::deque<row>> raw_;  // rows as recorded, by table
  std::vector<std::string> table_order_;        // tables in order of first use
  mutable std::map<std::string, table> built_;  // get_table()'s result
  std::vector<std::string> notes_;
  std::vector<std::pair<std::string, std::string>> skipped_;
  std::vector<chart> charts_;
  std::vector<std::string> trace_files_;
  std::size_t trace_records_ = 0;
};

// ---- helpers for experiments ------------------------------------------

// A digest of a workload's random draws (FNV-1a over the values).
class digest {
 public:
  void add(std::uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      h_ ^= (v >> (8 * i)) & 0xff;
      h_ *= 0x100000001b3ull;
    }
  }
  std::string hex() const;

 private:
  std::uint64_t h_ = 0xcbf29ce484222325ull;
};

// A generator derived from the point's: for producer k of a point.
std::mt19937_64 derive(std::uint64_t point_seed, std::uint64_t k);

// Sleeps until `t` if it is more than `spin_ns` away, then spins to it.
void wait_until(mono_ns t, mono_ns spin_ns = 50'000) noexcept;

// Latency summary columns (p50, p90, p99, p999, max, mean in ns) from
// unsorted samples, and CDF rows into table `t`.
void latency_columns(row& r, std::vector<double>& samples, const std::string& prefix = "lat_");
void latency_cdf(context& ctx, const std::string& t, const std::vector<double>& sorted,
                 const std::vector<std::pair<std::string, value>>& extra);

// Series of y against x over the main table's rows, one series per
// combination of the swept parameters other than `exclude`; rows for which
// `keep` returns false are left out.
// `extra_keys` are further columns that tell series apart (e.g. "impl").
std::vector<series> group_series(const context& ctx, const table& t, const std::string& x,
                                 const std::string& y, const std::vector<std::string>& exclude,
                                 const std::function<bool(std::size_t row)>& keep = nullptr,
                                 const std::string& label_prefix = "",
                                 const std::vector<std::string>& extra_keys = {});

// A CDF chart from a CDF table (columns `latency_ns`, `fraction`, and the
// point's parameters), one series per point.
chart cdf_chart(const context& ctx, const std::string& table_name, const std::string& name,
                const std::string& title, const std::vector<std::string>& exclude = {},
                const std::vector<std::string>& extra_keys = {});

int run_main(int argc, char** argv);

}  // namespace ueq::lab
