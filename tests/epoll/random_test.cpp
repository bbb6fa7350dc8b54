// Randomized differential sequences (sequence.hpp), from the same seed on
// the kernel's epoll and on ueq's: every return value, errno, event mask and
// data must match; plain, and with hostile calls mixed in (bad fds, ops,
// flags, pointers and sizes).
#include <catch2/catch.hpp>
#include <cstdio>
#include <random>

#include "../support.hpp"
#include "sequence.hpp"

using ueq::test::epoll_api;
using ueq::test::trace;

TEST_CASE("randomized sequences: kernel and ueq traces are identical", "[epoll]") {
  const std::uint64_t n = ueq::test::scaled(300);
  std::uint64_t base = 1;
  if (const char* s = std::getenv("UEQ_EPOLL_SEED")) base = std::strtoull(s, nullptr, 10);
  for (bool hostile : {false, true})
    for (std::uint64_t seed = base; seed < base + n; ++seed) {
      trace k, u;
      std::mt19937_64 rk(seed), ru(seed);
      ueq::test::run_sequence([&](int m) { return static_cast<int>(rk() % m); }, 60, hostile,
                              ueq::test::kernel_api(), k);
      ueq::test::run_sequence([&](int m) { return static_cast<int>(ru() % m); }, 60, hostile,
                              ueq::test::ueq_api(), u);
      if (k.lines() == u.lines()) {
        REQUIRE(k.lines().size() > 2);  // the sequence did run and was compared
        continue;
      }
      if (std::getenv("UEQ_EPOLL_DUMP"))
        std::fprintf(stderr, "--- kernel\n%s--- ueq\n%s", k.str().c_str(), u.str().c_str());
      // Report the first differing line with the context before it.
      std::size_t d = 0;
      while (d < k.lines().size() && d < u.lines().size() && k.lines()[d] == u.lines()[d])
        ++d;
      std::string ctx;
      for (std::size_t j = d > 6 ? d - 6 : 0; j < d; ++j)
        ctx += "  " + k.lines()[j] + "\n";
      INFO("seed " << seed << (hostile ? " (hostile)" : "") << " diverges at line " << d << "\n"
                   << ctx << "kernel: " << (d < k.lines().size() ? k.lines()[d] : "<end>")
                   << "\nueq:    " << (d < u.lines().size() ? u.lines()[d] : "<end>"));
      REQUIRE(k.lines() == u.lines());
    }
}
