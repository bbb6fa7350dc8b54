// Shared by the fuzz targets: the fuzzer's bytes drive one operation
// sequence (../epoll/sequence.hpp), run on the kernel's epoll and on ueq's;
// any difference between the traces is a crash (abort), with both traces
// printed.
#pragma once

#include <signal.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "../epoll/sequence.hpp"

namespace ueq::test {

inline void fuzz_one(const std::uint8_t* data, std::size_t size, bool hostile) {
  static const bool once = [] {
    ::signal(SIGPIPE, SIG_IGN);  // sequences write to pipes whose readers closed
    return true;
  }();
  (void)once;
  auto run = [&](const epoll_api& api, trace& t) {
    std::size_t pos = 0;
    // Up to three bytes per choice, so large ranges are reachable; zeros
    // once the input is used up.
    auto pick = [&](int n) -> int {
      std::uint32_t v = 0;
      for (int b = 0; b < (n > 65536 ? 3 : n > 256 ? 2 : 1); ++b)
        v = (v << 8) | (pos < size ? data[pos++] : 0);
      return static_cast<int>(v % static_cast<std::uint32_t>(n));
    };
    run_sequence(pick, static_cast<int>(std::min<std::size_t>(size / 3 + 1, 80)), hostile, api, t);
  };
  trace k, u;
  run(kernel_api(), k);
  run(ueq_api(), u);
  if (k.lines() != u.lines()) {
    std::fprintf(stderr,
                 "divergence between the kernel's epoll and ueq's\n--- kernel\n%s--- ueq\n%s",
                 k.str().c_str(), u.str().c_str());
    std::abort();
  }
}

}  // namespace ueq::test
