// runtime/fork.hpp: one atfork handler runs every module's handlers in
// layer order, and a child's generation is its parent's plus one; state
// that the runtime makes lazily reaches a child whole.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <thread>

#include "../support.hpp"
#include "ueq/runtime/fork.hpp"
#include "ueq/runtime/thread_index.hpp"

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

TEST_CASE("fork: a child indexes new threads though another thread held the index pool at the fork",
          "[fork]") {
  // A thread holds the pool's lock when the main thread forks. Without the
  // pool's fork handler the child inherits the lock held by a thread it
  // does not have, and its first new thread to ask for an index sleeps for
  // good (here the child takes the lock as that thread would). With it,
  // the fork waits for the lock: the holder lets go once the forking
  // thread sleeps (on that lock), or once the fork is done.
  const pid_t main_tid = ueq::test::current_tid();
  std::atomic<bool> held{false}, forked{false};
  std::thread holder([&] {
    ueq::detail::hold_thread_index_pool_for_test(true);
    held.store(true);
    (void)ueq::test::wait_until(
        [&] { return forked.load() || ueq::test::thread_sleeping(main_tid); },
        std::chrono::seconds(5));
    ueq::detail::hold_thread_index_pool_for_test(false);
    // Alive until the fork is done: a thread that had ended but was not
    // yet joined at the fork is, to TSan in the child, a leaked thread
    // (exit 66 at the child's _exit).
    (void)ueq::test::wait_until([&] { return forked.load(); }, std::chrono::seconds(5));
  });
  while (!held.load())
    std::this_thread::yield();
  const pid_t pid = ::fork();
  if (pid == 0) {
    // What a new thread's first this_thread_index() takes (no thread is
    // started here: TSan refuses that in a child of a threaded process).
    ueq::detail::hold_thread_index_pool_for_test(true);
    ueq::detail::hold_thread_index_pool_for_test(false);
    ::_exit(0);
  }
  forked.store(true);
  holder.join();
  REQUIRE(pid > 0);
  // The child is done within 5 s, or hangs: poll its status, bounded.
  int status = -1;
  pid_t done = 0;
  (void)ueq::test::wait_until([&] { return (done = ::waitpid(pid, &status, WNOHANG)) != 0; },
                              std::chrono::seconds(5));
  if (done == 0) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
  }
  REQUIRE(done == pid);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
}
