// runtime/fork.hpp: one atfork handler runs every module's handlers in
// layer order, and a child's generation is its parent's plus one.
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstring>

#include "ueq/runtime/fork.hpp"

namespace {

// What the handlers saw, in order: one letter per call. Only recorded
// while `armed` (other tests in this process may fork too).
std::atomic<bool> armed{false};
char seen[16];
std::atomic<int> nseen{0};
void note(char c) noexcept {
  if (!armed.load(std::memory_order_relaxed)) return;
  const int i = nseen.fetch_add(1, std::memory_order_relaxed);
  if (i < 15) seen[i] = c;
}

// Registered out of layer order on purpose: epoll's before runtime's.
const bool registered = [] {
  bool ok = ueq::on_fork(ueq::fork_layer::epoll, {.prepare = []() noexcept { note('E'); },
                                                  .parent = []() noexcept { note('e'); },
                                                  .child = []() noexcept { note('e'); }});
  ok = ueq::on_fork(ueq::fork_layer::runtime, {.prepare = []() noexcept { note('R'); },
                                               .parent = []() noexcept { note('r'); },
                                               .child = []() noexcept { note('r'); }}) &&
       ok;
  return ok;
}();

}  // namespace

TEST_CASE("fork: handlers run by layer whatever their registration order", "[fork]") {
  REQUIRE(registered);
  const std::uint64_t gen = ueq::fork_generation();
  nseen.store(0);
  std::memset(seen, 0, sizeof seen);
  armed.store(true);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // The child: prepare ran highest layer first, then its own handlers
    // lowest first; and its generation moved on by one.
    const bool ok = std::strcmp(seen, "ERre") == 0 && ueq::fork_generation() == gen + 1;
    ::_exit(ok ? 0 : 1);
  }
  armed.store(false);
  INFO("parent saw " << seen);
  CHECK(std::strcmp(seen, "ERre") == 0);
  CHECK(ueq::fork_generation() == gen);
  int st = 0;
  REQUIRE(::waitpid(pid, &st, 0) == pid);
  REQUIRE(WIFEXITED(st));
  REQUIRE(WEXITSTATUS(st) == 0);
}
