// The timer service: deadline order, O(log n) arm/cancel bookkeeping, and
// "cancel returns once cancelled or the handler has finished".
#include <catch2/catch.hpp>

#include <atomic>
#include <random>
#include <thread>
#include <vector>

#include "support.hpp"
#include "ueq/runtime/timer.hpp"

namespace {
struct rec {
  std::vector<int>* order;
  int id;
};
}  // namespace

TEST_CASE("timers fire in deadline order and only when due", "[timer]") {
  ueq::timer_service svc;
  std::vector<int> order;
  const int n = 200;
  std::vector<ueq::timer> ts(n);
  std::vector<rec> recs(n);
  std::mt19937 rng(7);
  std::vector<int> perm(n);
  for (int i = 0; i < n; ++i)
    perm[i] = i;
  std::shuffle(perm.begin(), perm.end(), rng);
  const ueq::mono_ns base = 1'000'000;
  for (int k = 0; k < n; ++k) {
    int i = perm[k];
    recs[i] = {&order, i};
    ts[i].fn = [](ueq::timer*, void* a) noexcept {
      auto* r = static_cast<rec*>(a);
      r->order->push_back(r->id);
    };
    ts[i].arg = &recs[i];
    svc.arm(ts[i], base + i * 10);
  }
  CHECK(svc.next_deadline() == base);
  CHECK(svc.run_expired(base - 1) == 0);
  // Cancel every odd timer; they must never fire.
  for (int i = 1; i < n; i += 2)
    CHECK(svc.cancel(ts[i]));
  CHECK(svc.size() == n / 2);
  CHECK(svc.run_expired(base + 10 * (n / 2)) > 0);
  svc.run_expired(base + 10 * n);
  REQUIRE(order.size() == n / 2);
  for (int k = 0; k < n / 2; ++k)
    CHECK(order[k] == 2 * k);
  CHECK(svc.next_deadline() == ueq::kNoDeadline);
  CHECK_FALSE(svc.cancel(ts[0]));  // already fired
}

TEST_CASE("re-arming an armed timer moves it instead of duplicating it", "[timer]") {
  ueq::timer_service svc;
  int fired = 0;
  ueq::timer t;
  t.fn = [](ueq::timer*, void* a) noexcept { ++*static_cast<int*>(a); };
  t.arg = &fired;
  CHECK(svc.arm(t, 100));
  CHECK(svc.arm(t, 50));
  CHECK(svc.size() == 1);
  CHECK(svc.next_deadline() == 50);
  svc.run_expired(1000);
  CHECK(fired == 1);
}

TEST_CASE("cancel of a firing timer returns only after its handler finished", "[timer]") {
  const int iters = static_cast<int>(ueq::test::scaled(2000));
  int late_cancels = 0;
  for (int it = 0; it < iters; ++it) {
    ueq::timer_service svc;
    struct st {
      std::atomic<bool> entered{false};
      std::atomic<bool> done{false};
    } s;
    ueq::timer t;
    t.fn = [](ueq::timer*, void* a) noexcept {
      auto* s = static_cast<st*>(a);
      s->entered.store(true);
      for (int i = 0; i < 200; ++i)
        ueq::cpu_relax();
      s->done.store(true);
    };
    t.arg = &s;
    svc.arm(t, 0);
    std::thread driver([&] { svc.run_expired(1); });
    if (it % 2) ueq::test::wait_until([&] { return s.entered.load(); });
    const bool cancelled = svc.cancel(t);
    // Either it never ran, or it has completely finished.
    if (cancelled) {
      CHECK_FALSE(s.entered.load());
    } else {
      CHECK(s.done.load());
      ++late_cancels;
    }
    driver.join();
  }
  CHECK(late_cancels >= iters / 2);  // every odd iteration waits for the handler
}

TEST_CASE("deadlines: a zero timeout is kImmediate, which has passed, negative is none",
          "[timer][clock]") {
  using namespace ueq;
  CHECK(deadline_after_ms(0) == kImmediate);
  CHECK(deadline_after_ns(0) == kImmediate);
  CHECK(deadline_after_ms(-1) == kNoDeadline);
  CHECK(deadline_after_ms(INT64_MAX) == kNoDeadline);
  CHECK(kImmediate <= monotonic_now());
  CHECK(time_left(kImmediate) == 0);
  CHECK(time_left(monotonic_now() - 1000) == 0);
  const mono_ns d = deadline_after_ms(60'000);
  CHECK(d > monotonic_now());
  CHECK(time_left(d) > 59'000'000'000LL);
  CHECK(time_left(d) <= 60'000'000'000LL);
}
