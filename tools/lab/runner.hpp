// ueq-lab internals: one run of an experiment, step by step. cli.cpp
// parses the command line and drives the steps; writers.cpp and charts.cpp
// hold the outputs. Not part of the experiments' interface (lab.hpp).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "lab.hpp"

namespace ueq::lab {

// Says msg on stderr and exits with `code` (2: a usage error).
[[noreturn]] void die(const std::string& msg, int code = 2);
std::uint64_t splitmix64(std::uint64_t x);  // stats.cpp
double load_average();                      // the 1-minute load (/proc/loadavg), or -1
std::string utc_now();                      // ISO 8601, for the JSON

struct runner {
  context& ctx;
  const experiment& e;
  std::vector<point> points;
  std::string command;  // the command line, for the JSON
  std::string started;  // UTC, ISO 8601
  mono_ns t_start = 0;
  double duration = 0;  // seconds, from the first point to the charts
  double load_start = -1, max_load = -1, load_end = -1;
  std::vector<std::pair<std::string, std::string>> files;        // table -> CSV file
  std::vector<std::pair<std::string, std::string>> chart_files;  // stem -> title
  std::string chart_status = "rendered";
  bool png = false;
  bool ok = true;

  // cli.cpp
  void make_points();  // the cartesian product, last parameter fastest
  void run_points();
  void report() const;  // the closing "wrote ..." line
  // charts.cpp
  void add_stage_chart();  // from the trace's "stages" table, if any
  void render_charts(bool no_charts, bool charts_required);
  // writers.cpp
  void write_tables();  // one CSV per table, then the busy-machine warning
  void write_json();
};

}  // namespace ueq::lab
