// Compiled by thread_safety.sh with clang's -Wthread-safety -Werror, twice:
// as it is, it must compile; with -DUNGUARDED (the lock taken away from a
// guarded path), it must not. So the analysis CI runs really checks.
#include "ueq/runtime/backoff.hpp"
#include "ueq/runtime/lock.hpp"

namespace {

struct account {
  ueq::os_mutex mu;
  long balance ABSL_GUARDED_BY(mu) = 0;
  ueq::spin_lock lk;
  int hits ABSL_GUARDED_BY(lk) = 0;

  void deposit(long n) {
#ifndef UNGUARDED
    ueq::lock_guard<ueq::os_mutex> g(mu);
#endif
    balance += n;
  }
  void hit() {
#ifndef UNGUARDED
    ueq::lock_guard<ueq::spin_lock> g(lk);
#endif
    ++hits;
  }
};

}  // namespace

void exercise() {
  account a;
  a.deposit(1);
  a.hit();
}
