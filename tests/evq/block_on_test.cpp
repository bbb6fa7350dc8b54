// block_on from plain threads: immediate messages, blocking, deadlines,
// order, close, wide sets, and errors.
#include <atomic>
#include <barrier>
#include <catch2/catch.hpp>
#include <thread>
#include <vector>

#include "../support.hpp"
#include "ueq/ceq/evq/block_on.hpp"

using ueq::block_on;
using ueq::deadline_after_ms;
using ueq::event_queue;
using ueq::event_queue_ptr;
using ueq::monotonic_now;

namespace {
event_queue_ptr msgs(ueq::notify_policy p = ueq::notify_policy::wake_all) {
  auto r = event_queue::create_messages({.notify = p});
  REQUIRE(r.ok());
  return std::move(r).value();
}
}  // namespace

TEST_CASE("block_on returns a pending message at once, first listed queue first", "[evq]") {
  auto a = msgs(), b = msgs();
  REQUIRE(b->post(2).ok());
  REQUIRE(a->post(1).ok());
  auto r = block_on({b.get(), a.get()}, deadline_after_ms(0));
  REQUIRE(r.ok());
  REQUIRE(r->queue == b.get());
  REQUIRE(r->msg.id == 2);
  r = block_on({b.get(), a.get()}, deadline_after_ms(0));
  REQUIRE(r->queue == a.get());
}

TEST_CASE("block_on rejects an empty set or a null queue with EINVAL", "[evq]") {
  REQUIRE(block_on(std::span<event_queue* const>{}).error().value() == EINVAL);
  REQUIRE(block_on({nullptr}).error().value() == EINVAL);
}

TEST_CASE("block_on times out never early and not much late", "[evq]") {
  auto q = msgs();
  for (int ms : {0, 1, 20, 60}) {
    const auto t0 = monotonic_now();
    const auto deadline = t0 + ms * 1'000'000LL;
    auto r = block_on({q.get()}, deadline);
    const auto t1 = monotonic_now();
    REQUIRE(r.error() == std::errc::timed_out);
    REQUIRE(t1 >= deadline);                 // never early
    REQUIRE(t1 - deadline < 500'000'000LL);  // bounded lateness (noisy CI)
  }
  REQUIRE(q->counters().timeouts == 4);
}

TEST_CASE("a blocked thread is woken by a post from another thread", "[evq]") {
  auto a = msgs(), b = msgs();
  std::atomic<bool> waiting{false};
  ueq::result<ueq::block_result> r = ueq::errno_code(EIO);
  std::thread t([&] {
    waiting.store(true);
    r = block_on({a.get(), b.get()}, deadline_after_ms(20000));
  });
  REQUIRE(ueq::test::wait_until([&] { return waiting.load() && b->waiters() == 1; }));
  REQUIRE(b->post(9, 1, 77).ok());
  t.join();
  REQUIRE(r.ok());
  REQUIRE(r->queue == b.get());
  REQUIRE(r->msg.blob == 77);
  REQUIRE(a->waiters() == 0);  // unlinked from every queue on return
  REQUIRE(b->waiters() == 0);
  REQUIRE(b->counters().wakeups == 1);
}

// n plain threads blocked on q (registered when the constructor returns);
// cancelled() joins them and counts those that got ECANCELED.
class blocked_waiters {
 public:
  blocked_waiters(event_queue& q, int n) {
    for (int i = 0; i < n; ++i)
      ts_.emplace_back([this, &q] {
        if (block_on({&q}, deadline_after_ms(20000)).error() == std::errc::operation_canceled)
          cancelled_.fetch_add(1);
      });
    REQUIRE(ueq::test::wait_until([&] { return q.waiters() == static_cast<std::size_t>(n); }));
  }
  int cancelled() {
    for (auto& t : ts_)
      t.join();
    ts_.clear();
    return cancelled_.load();
  }

 private:
  std::vector<std::thread> ts_;
  std::atomic<int> cancelled_{0};
};

TEST_CASE("close wakes blocked waiters with ECANCELED", "[evq]") {
  auto q = msgs();
  blocked_waiters w(*q, 4);
  q->close();
  REQUIRE(w.cancelled() == 4);
}

// Holds a queue's lock as a thread gone at a fork() would have left it.
struct ueq::detail::evq_test_peer {
  static ueq::spin_lock& lock(event_queue& q) { return q.lock_; }
};

TEST_CASE("try_close gives up on a held lock, and otherwise closes as close does", "[evq]") {
  auto q = msgs();
  blocked_waiters w(*q, 2);
  ueq::spin_lock& held = ueq::detail::evq_test_peer::lock(*q);
  held.lock();
  REQUIRE_FALSE(q->try_close());  // close() would spin here for good
  REQUIRE_FALSE(q->closed());
  held.unlock();
  REQUIRE(q->waiters() == 2);
  REQUIRE(q->try_close());
  REQUIRE(w.cancelled() == 2);
  REQUIRE(q->closed());
  REQUIRE(q->post(1).value() == EPIPE);
  REQUIRE(q->try_close());  // idempotent
}

TEST_CASE("one waiter on 100 queues wakes for whichever is posted", "[evq]") {
  std::vector<event_queue_ptr> owners;
  std::vector<event_queue*> qs;
  for (int i = 0; i < 100; ++i) {
    owners.push_back(msgs());
    qs.push_back(owners.back().get());
  }
  for (int pick : {0, 63, 64, 99}) {
    bool posted = false;  // written by t, read after join
    std::thread t([&] {
      posted = ueq::test::wait_until([&] { return qs[pick]->waiters() == 1; }) &&
               qs[pick]->post(pick).ok();
    });
    auto r = block_on(qs, deadline_after_ms(20000));
    t.join();
    REQUIRE(posted);
    REQUIRE(r.ok());
    REQUIRE(r->queue == qs[pick]);
    REQUIRE(r->msg.id == static_cast<std::uint32_t>(pick));
  }
}
