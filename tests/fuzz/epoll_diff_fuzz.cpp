// libFuzzer target: differential op sequences, kernel epoll vs ueq's facade.
#include "fuzz_driver.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  ueq::test::fuzz_one(data, size, /*hostile=*/false);
  return 0;
}
