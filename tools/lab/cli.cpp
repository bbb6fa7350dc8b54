// ueq-lab's command line: list, describe, and run (parameters and sweeps,
// progress), driving a runner through its steps.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>

#include "experiments.hpp"
#include "runner.hpp"

namespace ueq::lab {

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

void runner::make_points() {
  points.assign(1, point{});
  for (auto& p : e.params) {
    std::vector<point> next;
    for (auto& pt : points)
      for (auto& v : ctx.param_values_[p.name]) {
        point q = pt;
        q.vals.emplace_back(p.name, v);
        next.push_back(std::move(q));
      }
    points = std::move(next);
  }
}

void runner::run_points() {
  std::printf("ueq-lab %s: %zu point%s, seed %" PRIu64 "%s, output in %s\n", e.name, points.size(),
              points.size() == 1 ? "" : "s", ctx.seed_, ctx.quick_ ? ", quick" : "",
              ctx.out_.c_str());
  std::fflush(stdout);
  const auto swept = ctx.swept();
  load_start = max_load = load_average();
  for (std::size_t i = 0; i < points.size(); ++i) {
    ctx.point_index_ = i;
    ctx.point_ = &points[i];
    // The point's seed comes from its values, not its position.
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
    ok &= e.run_point(ctx, points[i]);
  }
}

void runner::report() const {
  std::printf("wrote");
  for (auto& [t, file] : files)
    std::printf(" %s", file.c_str());
  std::printf(" %s.json", e.name);
  for (auto& [stem, title] : chart_files)
    std::printf(" %s.svg%s", stem.c_str(), png ? (" " + stem + ".png").c_str() : "");
  std::printf(" in %s (%.1f s)\n", ctx.out_.c_str(), duration);
}

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

  // run NAME [options]: the options go into the context.
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

  runner r{.ctx = ctx, .e = *e};
  for (int i = 0; i < argc; ++i) {
    if (i) r.command += ' ';
    r.command += argv[i];
  }
  r.started = utc_now();
  r.t_start = monotonic_now();
  r.make_points();
  r.run_points();
  if (e->make_charts) e->make_charts(ctx);
  r.add_stage_chart();
  r.duration = static_cast<double>(monotonic_now() - r.t_start) / 1e9;
  r.write_tables();
  r.render_charts(no_charts, charts_required);
  r.write_json();
  r.report();
  return r.ok ? 0 : 1;
}

}  // namespace ueq::lab

int main(int argc, char** argv) {
  return ueq::lab::run_main(argc, argv);
}
