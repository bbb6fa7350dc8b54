// Stacks: an overflow dies at the guard page (a clear crash, never silent
// corruption); the pool keeps within the mapping budget.
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include "support.hpp"
#include "ueq/uthread/stack_pool.hpp"
#include "ueq/uthread/uthread.hpp"

namespace {
volatile int g_sink = 0;
// Recurses until `depth` frames of ~1 KiB; the stack gives out long before.
__attribute__((noinline)) int deep(int depth) {
  volatile char buf[1024];
  buf[0] = static_cast<char>(depth);
  if (depth == 0) return buf[0];
  return deep(depth - 1) + buf[0];
}
}  // namespace

TEST_CASE("a uthread that overflows its guarded stack is killed, not silently corrupting",
          "[stack]") {
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(2);  // keep the expected crash report out of the test log
    (void)ueq::run(
        [] { (void)ueq::spawn([] { g_sink = deep(1 << 20); }, {.stack_size = 64 << 10})->join(); },
        {.vcores = 1});
    ::_exit(0);  // reaching here means the overflow went unnoticed
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  CHECK_FALSE((WIFEXITED(status) && WEXITSTATUS(status) == 0));
}

TEST_CASE("the first stacks get guard pages and the pool counts them", "[stack]") {
  auto r = ueq::run([] { (void)ueq::spawn([] {})->join(); }, {.vcores = 1});
  REQUIRE(r.ok());
  auto st = ueq::stack_pool::stats();
  CHECK(st.guarded >= 1);
  CHECK(st.guarded + st.canaried == st.stacks_carved);
}
