// ueq-bench: one executable, a subcommand per area.
//   ueq-bench list                 names the areas
//   ueq-bench all [--quick] [--json]
//   ueq-bench AREA [AREA...] [--quick] [--json]
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "harness.hpp"

namespace {
int usage() {
  std::fprintf(stderr,
               "usage: ueq-bench list | all | AREA... [--quick] [--json]\n"
               "  --quick  every case finishes in a few seconds\n"
               "  --json   one JSON object per case per line\n");
  return 2;
}
}  // namespace

int main(int argc, char** argv) {
  bool quick = false, json = false;
  std::vector<std::string> areas;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--quick"))
      quick = true;
    else if (!std::strcmp(argv[i], "--json"))
      json = true;
    else if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h"))
      return usage(), 0;
    else if (argv[i][0] == '-')
      return usage();
    else
      areas.push_back(argv[i]);
  }
  auto& reg = ueq::bench::registry();
  if (areas.empty()) return usage();
  if (areas.size() == 1 && areas[0] == "list") {
    for (auto& a : reg)
      std::printf("%-10s %s\n", a.name, a.summary);
    return 0;
  }
  if (areas.size() == 1 && areas[0] == "all") {
    areas.clear();
    for (auto& a : reg)
      areas.push_back(a.name);
  }
  for (auto& name : areas) {
    bool found = false;
    for (auto& a : reg)
      if (name == a.name) found = true;
    if (!found) {
      std::fprintf(stderr, "ueq-bench: unknown area '%s' (try: ueq-bench list)\n", name.c_str());
      return 2;
    }
  }
  if (!json)
    std::printf("%-8s %-30s %12s %-9s | %-26s %12s | %s\n", "bench", "case", "median", "unit",
                "baseline", "median", "ratio (goal)");
  for (auto& name : areas)
    for (auto& a : reg)
      if (name == a.name) {
        ueq::bench::context ctx(a.name, quick, json);
        a.fn(ctx);
      }
  return 0;
}
