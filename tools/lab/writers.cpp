// ueq-lab's outputs other than charts: one CSV file per table, and the
// run's JSON (parameters, machine, files, charts, notes, the main table).
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>

#include "runner.hpp"

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

double load_average() {
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

std::string utc_now() {
  char b[32];
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  std::strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return b;
}

void runner::write_tables() {
  // The main table first, then the others in the order they were first used.
  std::stable_partition(ctx.table_order_.begin(), ctx.table_order_.end(),
                        [](const std::string& t) { return t.empty(); });
  for (auto& t : ctx.table_order_) {
    const std::string file = std::string(e.name) + (t.empty() ? "" : "-" + t) + ".csv";
    write_csv(ctx.out_ + "/" + file, ctx.get_table(t));
    files.emplace_back(t.empty() ? "main" : t, file);
  }
  load_end = load_average();
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
}

void runner::write_json() {
  std::ofstream f(ctx.out_ + "/" + e.name + ".json");
  f << "{\n  \"experiment\": " << jstr(e.name) << ",\n  \"summary\": " << jstr(e.summary)
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
  for (auto& p : e.params) {
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

}  // namespace ueq::lab
