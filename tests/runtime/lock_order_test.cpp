// The lock order (ueq/runtime/lock_order.hpp), checked in debug builds:
// in-order nesting and try_lock pass; an out-of-order acquire, a lock
// taken twice, a library lock taken under a later level, and a switch to
// another uthread with an ordered lock held abort, naming the levels. Each
// case runs in a fork()ed child whose exit and stderr are checked.
//
// A release build (NDEBUG) has no checker: the program says so and exits
// 77, which meson counts as skipped. CI runs it in the sanitizer builds.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "ueq/epoll/epoll.hpp"
#include "ueq/runtime/backoff.hpp"
#include "ueq/runtime/lock.hpp"
#include "ueq/uthread/uthread.hpp"

namespace {

int failures = 0;

// Runs fn in a child with stderr captured; checks that it exited 0
// (`expect` null) or died of SIGABRT with `expect` in its stderr.
void check(const char* name, void (*fn)(), const char* expect) {
  int p[2];
  if (::pipe(p) != 0) std::abort();
  const pid_t pid = ::fork();
  if (pid < 0) std::abort();
  if (pid == 0) {
    ::dup2(p[1], 2);
    fn();
    std::_Exit(0);
  }
  ::close(p[1]);
  std::string err;
  char buf[512];
  for (ssize_t n; (n = ::read(p[0], buf, sizeof buf)) > 0;)
    err.append(buf, static_cast<std::size_t>(n));
  ::close(p[0]);
  int st = 0;
  ::waitpid(pid, &st, 0);
  bool ok;
  if (expect == nullptr)
    ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
  else
    ok = WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT && err.find(expect) != std::string::npos;
  std::printf("%s: %s\n", ok ? "ok  " : "FAIL", name);
  if (!ok) {
    std::printf("  wanted %s%s; status %#x, stderr: %s\n", expect ? "an abort naming " : "exit 0",
                expect ? expect : "", st, err.c_str());
    ++failures;
  }
}

ueq::os_mutex registry{ueq::lock_level::epoll_registry};
ueq::os_mutex set{ueq::lock_level::epoll_set};
ueq::spin_lock queue{ueq::lock_level::event_queue};
ueq::spin_lock mailbox{ueq::lock_level::mailbox};
ueq::os_mutex other_set{ueq::lock_level::epoll_set};
ueq::os_mutex loose;  // unordered

void in_order() {
  ueq::lock_guard<ueq::os_mutex> a(registry);
  ueq::lock_guard<ueq::os_mutex> l(loose);
  ueq::lock_guard<ueq::os_mutex> b(set);
  ueq::lock_guard<ueq::spin_lock> c(queue);
  ueq::lock_guard<ueq::spin_lock> d(mailbox);
  if (ueq::detail::lock_order_depth() != 4) std::abort();
}
void released_then_reversed() {
  { ueq::lock_guard<ueq::os_mutex> b(set); }
  ueq::lock_guard<ueq::os_mutex> a(registry);  // set no longer held: fine
  ueq::lock_guard<ueq::os_mutex> b(set);
}
void try_lock_out_of_order() {
  ueq::lock_guard<ueq::os_mutex> b(set);
  if (!registry.try_lock()) std::abort();  // cannot deadlock: recorded only
  registry.unlock();
  if (ueq::detail::lock_order_depth() != 1) std::abort();
}
void reversed() {
  ueq::lock_guard<ueq::os_mutex> b(set);
  ueq::lock_guard<ueq::os_mutex> a(registry);
}
void same_level() {
  ueq::lock_guard<ueq::os_mutex> a(set);
  ueq::lock_guard<ueq::os_mutex> b(other_set);
}
void spin_reversed() {
  ueq::lock_guard<ueq::spin_lock> d(mailbox);
  ueq::lock_guard<ueq::spin_lock> c(queue);
}
void twice() {
  ueq::lock_guard<ueq::spin_lock> c(queue);
  queue.lock();
}
// A library path: epoll_set::create takes the tap service's and the
// registry's locks, which must not be taken under a mailbox's.
void library_under_mailbox() {
  ueq::lock_guard<ueq::spin_lock> d(mailbox);
  (void)ueq::epoll_set::create(0);
}
void library_alone() {
  if (!ueq::epoll_set::create(0)) std::abort();
}
// A uthread that yields to another while it holds an ordered lock.
void yield_holding() {
  (void)ueq::run(
      [] {
        auto other = ueq::spawn([] {});
        if (!other) std::abort();
        ueq::lock_guard<ueq::spin_lock> c(queue);
        ueq::this_uthread::yield();
      },
      {.vcores = 1});
}
void yield_free() {
  auto r = ueq::run(
      [] {
        auto other = ueq::spawn([] {});
        if (!other) std::abort();
        { ueq::lock_guard<ueq::spin_lock> c(queue); }
        ueq::this_uthread::yield();
      },
      {.vcores = 1});
  if (!r) std::abort();
}

}  // namespace

int main() {
  if constexpr (!ueq::detail::kCheckLockOrder) {
    std::printf("release build (NDEBUG): the lock order is not checked; skipped\n");
    return 77;
  }
  check("locks taken in order", in_order, nullptr);
  check("an order reversed after a release", released_then_reversed, nullptr);
  check("try_lock out of order", try_lock_out_of_order, nullptr);
  check("registry under a set", reversed,
        "taking epoll_registry (level 20) while holding epoll_set (level 30)");
  check("two locks of one level", same_level,
        "taking epoll_set (level 30) while holding epoll_set (level 30)");
  check("spin locks reversed", spin_reversed,
        "taking event_queue (level 70) while holding mailbox (level 75)");
  check("a lock taken twice", twice, "taking again event_queue");
  check("the facade's locks under a mailbox lock", library_under_mailbox,
        "while holding mailbox (level 75)");
  check("the facade's locks alone", library_alone, nullptr);
  check("a uthread switch with a lock held", yield_holding,
        "switching to a uthread while holding event_queue");
  check("a uthread switch without one", yield_free, nullptr);
  return failures == 0 ? 0 : 1;
}
