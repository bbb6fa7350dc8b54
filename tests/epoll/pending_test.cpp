// A set's pending signal (epoll/pending.hpp) on its own: the handshake that
// tests/model/settle.pml and standby.pml check, run on real threads, the
// real eventfd and the real CEQ. Every wait is bounded: a wait that reaches
// its bound is a lost wakeup, and fails the test.
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <barrier>
#include <catch2/catch.hpp>
#include <mutex>
#include <thread>
#include <vector>

#include "../../epoll/pending.hpp"
#include "ueq/ceq/evq/block_on.hpp"
#include "ueq/ceq/evq/event_queue.hpp"
#include "ueq/epoll.h"
#include "ueq/runtime/clock.hpp"

using ueq::event_msg;
using ueq::event_queue;
using ueq::epoll_internal::pending_signal;

namespace {

constexpr int kBoundMs = 10000;  // a sleep this long means a lost wakeup

ueq::tap_service* svc() {
  auto s = ueq::tap_service::instance();
  REQUIRE(s.ok());
  return *s;
}

bool readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

// The owner of a signal, as a set is: a CEQ whose post hook raises it and
// a lock that serializes harvests (drain + settle).
struct owner {
  ueq::event_queue_ptr q;
  pending_signal sig;
  std::mutex mu;
  owner() {
    auto c = event_queue::create_ceq({.ring_size = 64, .max_ids = 4096});
    REQUIRE(c.ok());
    q = *c;
    REQUIRE(sig.init(svc()).ok());
    q->set_post_hook([](void* ctx) noexcept { static_cast<pending_signal*>(ctx)->raise(); }, &sig);
  }
  // Takes every message; then the signal follows what is left.
  std::size_t harvest() {
    std::lock_guard<std::mutex> g(mu);
    event_msg out[64];
    std::size_t taken = 0;
    while (std::size_t n = q->drain(out))
      taken += n;
    sig.settle(!q->empty(), true, [this] { return q->empty(); });
    return taken;
  }
};

}  // namespace

TEST_CASE("pending: the eventfd is readable exactly while events are pending", "[epoll]") {
  owner o;
  REQUIRE(!readable(o.sig.fd()));
  REQUIRE(!o.sig.raised_now());
  REQUIRE(o.q->post(3, 1).ok());
  REQUIRE(readable(o.sig.fd()));
  REQUIRE(o.sig.raised_now());
  REQUIRE(o.q->post(3, 2).ok());  // coalesced: nothing more
  REQUIRE(o.q->post(5, 1).ok());  // a new message, but raised already: no second write
  std::uint64_t count = 0;
  REQUIRE(::read(o.sig.fd(), &count, sizeof count) == sizeof count);
  REQUIRE(count == 1);
  REQUIRE(o.harvest() == 2);
  REQUIRE(!readable(o.sig.fd()));
  REQUIRE(!o.sig.raised_now());
  // A settle with events left keeps it readable (a harvest that took part).
  REQUIRE(o.q->post(4, 1).ok());
  {
    std::lock_guard<std::mutex> g(o.mu);
    o.sig.settle(true, true, [&] { return o.q->empty(); });
  }
  REQUIRE(readable(o.sig.fd()));
  REQUIRE(o.harvest() == 1);
  REQUIRE(!readable(o.sig.fd()));
}

// A raise that lands inside settle(), between its drain of the eventfd and
// its clear of the flag, finds the flag set and writes nothing: the
// re-check after the clear must raise again. In the other order (clear,
// then drain) the raise's write is swallowed and the flag stays set over
// an empty eventfd, which settle.pml's BUG_SETTLE shows.
owner* g_owner = nullptr;
bool g_hook_posted = false;
// Points g_owner at o for a case's settle hook; the hook is never left
// installed (nor g_owner dangling) for later cases.
struct hook_scope {
  explicit hook_scope(owner& o) { g_owner = &o; }
  ~hook_scope() {
    pending_signal::test_hook_in_settle.store(nullptr);
    g_owner = nullptr;
  }
};
TEST_CASE("pending: a raise between settle's drain and clear keeps the eventfd readable",
          "[epoll]") {
  owner o;
  hook_scope scope(o);
  g_hook_posted = false;
  REQUIRE(o.q->post(1, 1).ok());
  REQUIRE(readable(o.sig.fd()));
  event_msg out[4];
  REQUIRE(o.q->drain(out) == 1);  // taken: the settle below clears
  pending_signal::test_hook_in_settle.store(
      [](pending_signal&) {
        pending_signal::test_hook_in_settle.store(nullptr);  // once
        // Raises from inside settle (noexcept: no REQUIRE in here).
        g_hook_posted = g_owner->q->post(2, 1).ok();
      },
      std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> g(o.mu);
    o.sig.settle(false, true, [&] { return o.q->empty(); });
  }
  REQUIRE(pending_signal::test_hook_in_settle.load() == nullptr);  // the hook ran
  REQUIRE(g_hook_posted);
  REQUIRE(readable(o.sig.fd()));
  REQUIRE(o.sig.raised_now());
  REQUIRE(o.harvest() == 1);
  REQUIRE(!readable(o.sig.fd()));
}

// quiet(): what settle()'s shortcut and an immediate wait's skip of the
// harvest rely on. A MOD's settle (pending, leftover false) raises a clear
// flag and leaves a raised one as it is: one eventfd write, one
// uthread-queue post.
TEST_CASE("pending: quiet() holds exactly while nothing is raised or left to drain", "[epoll]") {
  owner o;
  REQUIRE(o.sig.quiet());
  event_queue* wq[] = {o.sig.uthread_queue()};
  {
    std::lock_guard<std::mutex> g(o.mu);
    o.sig.settle(true, false, [&] { return o.q->empty(); });  // a MOD on a clear flag
    REQUIRE(!o.sig.quiet());
    o.sig.settle(true, false, [&] { return o.q->empty(); });  // and on a raised one
  }
  REQUIRE(o.sig.raised_now());
  std::uint64_t count = 0;
  REQUIRE(::read(o.sig.fd(), &count, sizeof count) == sizeof count);
  REQUIRE(count == 1);
  REQUIRE(ueq::block_on(wq, ueq::kImmediate).ok());
  REQUIRE(ueq::block_on(wq, ueq::kImmediate).error() == std::errc::timed_out);
  // Drained above by hand, still raised: not quiet until a settle clears.
  REQUIRE(!o.sig.quiet());
  REQUIRE(o.harvest() == 0);
  REQUIRE(o.sig.quiet());
  REQUIRE(o.q->post(1, 1).ok());
  REQUIRE(!o.sig.quiet());
  REQUIRE(o.harvest() == 1);
  REQUIRE(o.sig.quiet());
  REQUIRE(!readable(o.sig.fd()));
}

// quiet()'s last arm (written_): a raise whose exchange came before a
// settle()'s clear but whose write came after that settle's read leaves the
// flag clear over a readable eventfd. The next settle must drain it, so the
// signal is not quiet; if quiet() looked at the flag alone, settle() would
// take its shortcut and the program's poll on the epoll fd would spin. The
// hook puts the raise there on one thread: a nested settle clears the flag,
// the raise sets it and writes, and the outer settle's clear takes the flag
// away again.
TEST_CASE("pending: a raise that writes after settle's read leaves the signal not quiet",
          "[epoll]") {
  owner o;
  hook_scope scope(o);
  REQUIRE(o.q->post(1, 1).ok());
  event_msg out[4];
  REQUIRE(o.q->drain(out) == 1);  // taken by hand: the settles below find nothing
  pending_signal::test_hook_in_settle.store(
      [](pending_signal& s) {
        pending_signal::test_hook_in_settle.store(nullptr);         // once
        s.settle(false, true, [] { return g_owner->q->empty(); });  // the flag is clear
        s.raise();                                                  // sets it, writes the eventfd
      },
      std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> g(o.mu);
    o.sig.settle(false, true, [&] { return o.q->empty(); });  // clears the raise's flag
  }
  REQUIRE(pending_signal::test_hook_in_settle.load() == nullptr);  // the hook ran
  REQUIRE(!o.sig.raised_now());
  REQUIRE(readable(o.sig.fd()));
  REQUIRE(!o.sig.quiet());
  REQUIRE(o.harvest() == 0);  // drains the eventfd
  REQUIRE(!readable(o.sig.fd()));
  REQUIRE(o.sig.quiet());
}

// Waits with timeout 0 skip the harvest of an idle set (impl::wait): never
// of one with a level-triggered entry ready, which stays on the ready
// list (the CEQ empty) while several threads harvest it at once. As with
// Linux, every such wait reports it.
TEST_CASE("pending: immediate waits from several threads all report a ready LT entry", "[epoll]") {
  const int ep = ueq_epoll_create1(EPOLL_CLOEXEC);
  REQUIRE(ep >= 0);
  const int efd = ::eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC);  // readable for good
  REQUIRE(efd >= 0);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = 42;
  REQUIRE(ueq_epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev) == 0);
  constexpr int kThreads = 3, kWaits = 20000;
  std::atomic<int> missed{0}, wrong{0};
  std::barrier start(kThreads);
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t)
    ts.emplace_back([&] {
      start.arrive_and_wait();
      for (int i = 0; i < kWaits; ++i) {
        epoll_event out[2];
        const int n = ueq_epoll_wait(ep, out, 2, 0);
        if (n != 1)
          missed.fetch_add(1, std::memory_order_relaxed);
        else if (out[0].data.u64 != 42 || !(out[0].events & EPOLLIN))
          wrong.fetch_add(1, std::memory_order_relaxed);
      }
    });
  for (auto& t : ts)
    t.join();
  CHECK(missed.load() == 0);
  CHECK(wrong.load() == 0);
  // Emptied: the next immediate wait probes the listed entry and drops it;
  // the one after finds the set idle and skips the harvest.
  std::uint64_t v;
  REQUIRE(::read(efd, &v, sizeof v) == sizeof v);
  epoll_event out[2];
  CHECK(ueq_epoll_wait(ep, out, 2, 0) == 0);
  CHECK(ueq_epoll_wait(ep, out, 2, 0) == 0);
  REQUIRE(ueq_close(efd) == 0);
  REQUIRE(ueq_close(ep) == 0);
}

TEST_CASE("pending: a raise posts the uthread queue and each listener, once per change",
          "[epoll]") {
  owner o;
  auto parent = event_queue::create_ceq({.ring_size = 16});
  REQUIRE(parent.ok());
  o.sig.listen(parent->get(), 7);
  REQUIRE(o.q->post(1, 1).ok());
  REQUIRE(o.q->post(2, 1).ok());  // already raised: no second post
  event_msg m[4];
  REQUIRE((*parent)->drain(m) == 1);
  REQUIRE(m[0].id == 7);
  REQUIRE(m[0].bits == EPOLLIN);
  event_queue* wq[] = {o.sig.uthread_queue()};
  REQUIRE(ueq::block_on(wq, ueq::kImmediate).ok());  // the bit is there
  REQUIRE(o.harvest() == 2);
  o.sig.unlisten(parent->get(), 7);
  REQUIRE(o.q->post(1, 1).ok());  // raised again: the listener is gone
  REQUIRE((*parent)->drain(m) == 0);
  REQUIRE(ueq::block_on(wq, ueq::kImmediate).ok());
}

TEST_CASE("pending: hold() keeps it raised for good; settle changes nothing then", "[epoll]") {
  owner o;
  {
    std::lock_guard<std::mutex> g(o.mu);
    o.sig.hold();
  }
  REQUIRE(o.harvest() == 0);
  REQUIRE(readable(o.sig.fd()));
  REQUIRE(o.sig.raised_now());
  const pending_signal::sleeper s(o.sig, pending_signal::standby);
  REQUIRE(s.pending());  // one about to sleep does not
}

// Producers post and raise from several threads; consumers harvest and,
// when they took nothing, sleep in ppoll() on the eventfd, counted as
// sleepers (the deputy's sleep). Fails with the clear-before-drain order
// settle.pml's BUG_SETTLE rejects. Every message is taken, and no sleep
// reaches its bound: a post between a consumer's harvest and its sleep, or
// between a settle's drain and its clear, is never swallowed.
TEST_CASE("pending: no post is lost between a harvest and a sleep (stress)", "[epoll]") {
  owner o;
  constexpr int kProducers = 2, kConsumers = 2, kPerProducer = 50000;
  std::atomic<long> taken{0};
  std::atomic<int> timeouts{0};
  std::atomic<bool> done{false};
  std::barrier start(kProducers + kConsumers);
  std::vector<std::thread> ts;
  for (int c = 0; c < kConsumers; ++c)
    ts.emplace_back([&] {
      start.arrive_and_wait();
      while (!done.load(std::memory_order_acquire)) {
        const std::size_t n = o.harvest();
        taken.fetch_add(static_cast<long>(n));
        if (n) continue;
        // A ppoll() sleeper trusts the eventfd alone (it does not read the
        // flag): a swallowed write leaves it asleep over a pending event.
        const pending_signal::sleeper asleep(o.sig, pending_signal::deputy);
        pollfd p{o.sig.fd(), POLLIN, 0};
        // The last messages are taken by whoever wakes; `done` then ends
        // the others' sleeps through a final raise.
        if (::poll(&p, 1, kBoundMs) == 0) timeouts.fetch_add(1);
      }
    });
  for (int p = 0; p < kProducers; ++p)
    ts.emplace_back([&, p] {
      start.arrive_and_wait();
      for (int i = 0; i < kPerProducer; ++i) {
        // Distinct ids, so no post coalesces with a pending one: each
        // creates a message, and the hook raises.
        const auto id = static_cast<std::uint32_t>(p * kPerProducer + i) % 4000;
        (void)o.q->post(id, 1u << (i % 16));
        if (i % 64 == 0) std::this_thread::yield();
      }
    });
  for (int p = 0; p < kProducers; ++p)
    ts[kConsumers + p].join();
  // Every posted message must be taken within the bound, without any
  // consumer sleeping through one.
  const ueq::mono_ns until = ueq::monotonic_now() + ueq::mono_ns{kBoundMs} * 1000000;
  while (!o.q->empty() && ueq::monotonic_now() < until)
    std::this_thread::yield();
  const bool drained = o.q->empty();
  done.store(true, std::memory_order_release);
  {
    std::lock_guard<std::mutex> g(o.mu);
    o.sig.hold();  // wakes every sleeper for good
  }
  for (int c = 0; c < kConsumers; ++c)
    ts[c].join();
  REQUIRE(drained);
  REQUIRE(timeouts.load() == 0);
  REQUIRE(taken.load() > 0);
}
