// ueq-lab's charts: a gnuplot script per chart (data inline, so it
// re-renders alone), rendered to SVG and, where gnuplot has pngcairo, PNG.
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include "runner.hpp"

namespace ueq::lab {
namespace {

std::string shell_quote(const std::string& s) {
  std::string o = "'";
  for (char c : s)
    o += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return o + "'";
}

bool have_program(const char* name) {
  const char* path = std::getenv("PATH");
  if (!path) return false;
  std::stringstream ss(path);
  std::string dir;
  while (std::getline(ss, dir, ':'))
    if (!dir.empty() && ::access((dir + "/" + name).c_str(), X_OK) == 0) return true;
  return false;
}

// Integer-valued axes get integer ticks: the values themselves when few,
// else whole-number labels.
void integer_ticks(std::ofstream& f, const char* axis, const std::set<double>& vals) {
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

// Writes the chart's gnuplot script (data inline, so it re-renders alone:
// `cd DIR && gnuplot NAME-CHART.gp`). Returns false if it has no data.
bool write_chart_script(const std::string& dir, const std::string& stem, const chart& c,
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

}  // namespace

void runner::add_stage_chart() {
  if (!ctx.has_table("stages")) return;
  // The per-stage delays the trace measured, one series per point.
  chart c{.name = "stages",
          .title = std::string(e.name) + ": median delay of each stage (trace)",
          .xlabel = "stage",
          .ylabel = "median delay (ns)",
          .logy = true,
          .xtic_labels = {"host->tap", "tap->post", "post->wake", "wake->consume"}};
  const table& t = ctx.get_table("stages");
  static const char* const kCols[] = {"host_to_tap_median_ns", "tap_to_post_median_ns",
                                      "post_to_wake_median_ns", "wake_to_consume_median_ns"};
  const std::vector<std::string> sw = ctx.swept();
  for (std::size_t r = 0; r < t.rows.size(); ++r) {
    series s{.label = "point " + t.str(r, "point")};
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

void runner::render_charts(bool no_charts, bool charts_required) {
  for (auto& c : ctx.charts_) {
    const std::string stem = std::string(e.name) + "-" + c.name;
    if (write_chart_script(ctx.out_, stem, c, ctx.quick_)) chart_files.emplace_back(stem, c.title);
  }
  if (no_charts) {
    chart_status = "not rendered (--no-charts); run: cd DIR && gnuplot NAME-*.gp";
    return;
  }
  if (!have_program("gnuplot")) {
    chart_status =
        "not rendered: gnuplot not found (install gnuplot-nox: bash tools/deps.sh); "
        "the .gp scripts are in DIR";
    std::fprintf(stderr, "ueq-lab: %s\n", chart_status.c_str());
    if (charts_required) ok = false;
    return;
  }
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

}  // namespace ueq::lab
