// The Catch2 runner shared by every test executable. Tests write to pipes
// and sockets whose peers they closed on purpose: SIGPIPE is ignored so
// those writes fail with EPIPE instead of killing the runner.
#define CATCH_CONFIG_RUNNER
#include <signal.h>

#include <catch2/catch.hpp>

int main(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);
  return Catch::Session().run(argc, argv);
}
