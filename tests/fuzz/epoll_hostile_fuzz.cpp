// libFuzzer target: the C API with hostile arguments (bad fds, ops, flags,
// pointers, sizes) mixed into differential sequences: no crash, and the
// kernel's errno every time.
#include "fuzz_driver.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  ueq::test::fuzz_one(data, size, /*hostile=*/true);
  return 0;
}
