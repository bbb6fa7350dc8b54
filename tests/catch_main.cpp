// The Catch2 runner shared by every test executable. Tests write to pipes
// and sockets whose peers they closed on purpose: SIGPIPE is ignored so
// those writes fail with EPIPE instead of killing the runner.
//
// A run of the io_uring variant (UEQ_TEST_BACKEND=io_uring, set by
// tests/meson.build for the NAME-io_uring tests) on a host that forbids
// io_uring (an old kernel, a container's seccomp filter) reports itself
// skipped: exit 77, which meson counts as a skip, with the reason on
// stderr. It never runs the cases on another backend in its place.
#define CATCH_CONFIG_RUNNER
#include <signal.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "ueq/taps/backend.hpp"

int main(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);
  if (const char* b = std::getenv("UEQ_TEST_BACKEND"); b && std::strcmp(b, "io_uring") == 0) {
    auto made = ueq::make_backend(ueq::backend_kind::io_uring);
    if (!made) {
      std::fprintf(stderr, "io_uring is not available here (%s): skipped\n",
                   made.error().message().c_str());
      return 77;
    }
  }
  return Catch::Session().run(argc, argv);
}
