// The per-stage event trace (runtime/trace.hpp): an event delivered through
// a tap is recorded at every stage, in order, whoever polls the host; off,
// it records nothing; the buffer is bounded; concurrent writers never leave
// a torn record.
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <thread>
#include <vector>

#include "../support.hpp"
#include "ueq/ceq/evq/block_on.hpp"
#include "ueq/runtime/trace.hpp"
#include "ueq/taps/tap.hpp"

using namespace ueq;

namespace {

struct sock_pair {
  int a = -1, b = -1;
  sock_pair() {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    a = sv[0];
    b = sv[1];
  }
  ~sock_pair() {
    ::close(a);
    if (b >= 0) ::close(b);
  }
};

std::vector<trace_record> records_of(std::uint32_t id) {
  std::vector<trace_record> out;
  for (const trace_record& r : trace_snapshot())
    if (r.id == id) out.push_back(r);
  return out;
}

// Blocks a thread in block_on on `q`, writes a byte to `writer` once that
// thread sleeps in the kernel, and returns the message it got.
event_msg deliver_one(event_queue& q, int writer) {
  std::atomic<pid_t> tid{0};
  event_msg got{};
  std::atomic<int> err{-1};
  std::thread waiter([&] {
    tid.store(ueq::test::current_tid());
    auto r = block_on({&q}, deadline_after_ms(20000));
    if (r) got = r->msg;
    err.store(r ? 0 : r.error().value());
  });
  // Registered on the queue and asleep: a thread can sleep in the kernel
  // before it registers (on a lock of the dynamic linker's, say), and a
  // post then finds nobody to wake (no `wake` stage).
  REQUIRE(ueq::test::wait_until(
      [&] { return q.waiters() == 1 && ueq::test::thread_sleeping(tid.load()); }));
  REQUIRE(::write(writer, "x", 1) == 1);
  waiter.join();
  REQUIRE(err.load() == 0);
  return got;
}

// Every stage of the event appears, in this order, each once.
void require_all_stages_in_order(const std::vector<trace_record>& rs, const event_queue& q) {
  const trace_stage want[] = {trace_stages::host_event, trace_stages::tap, trace_stages::post,
                              trace_stages::wake, trace_stages::consume};
  INFO("records for the id: " << rs.size());
  REQUIRE(rs.size() == 5);
  for (std::size_t i = 0; i < 5; ++i) {
    INFO("record " << i << " is " << trace_stage_name(rs[i].stage));
    CHECK(rs[i].stage == want[i].number);
    CHECK(std::string(trace_stage_name(rs[i].stage)) == want[i].name);
    if (i) CHECK(rs[i].ts >= rs[i - 1].ts);
  }
  const auto qaddr = reinterpret_cast<std::uintptr_t>(&q);
  CHECK(rs[2].obj == qaddr);         // post: the queue
  CHECK(rs[4].obj == qaddr);         // consume: the queue
  CHECK(rs[2].aux == kTapReadable);  // the posted bits; not a coalesced post
  CHECK(rs[3].aux == 1);             // one waiter woken
  CHECK(rs[1].aux == rs[4].aux);     // the tap's bits are the consumed bits
}

// Traces one event written on `writer` and delivered into q under id, and
// returns its records, checked for every stage in order.
std::vector<trace_record> traced_delivery(event_queue& q, int writer, std::uint32_t id) {
  REQUIRE(trace_start(1 << 12).ok());
  const event_msg m = deliver_one(q, writer);
  trace_stop();
  CHECK(m.id == id);
  auto rs = records_of(id);
  require_all_stages_in_order(rs, q);
  return rs;
}

}  // namespace

TEST_CASE(
    "trace: a tapped event is recorded host -> tap -> post -> wake -> consume, the waiter "
    "polling the host itself") {
  auto q = std::move(event_queue::create_ceq({})).value();
  sock_pair p;
  constexpr std::uint32_t kId = 424242;
  auto t = tap_add({.fd = p.b, .filter = kTapReadable, .queue = q, .id = kId});
  REQUIRE(t.ok());
  const auto rs = traced_delivery(*q, p.a, kId);
  CHECK(rs[0].obj == static_cast<std::uint64_t>(p.b));  // host event: the fd
  // Integrated polling: the waiter itself polled, posted, woke and consumed.
  CHECK(rs[0].thread == rs[4].thread);
  REQUIRE(tap_remove(*t).ok());
}

TEST_CASE("trace: the same stages in order when a dedicated poller thread delivers") {
  auto svc = std::move(tap_service::create(backend_kind::epoll)).value();
  REQUIRE(svc->start_poller_thread().ok());
  auto q = std::move(event_queue::create_ceq({})).value();
  sock_pair p;
  constexpr std::uint32_t kId = 515151;
  auto t = svc->add({.fd = p.b, .filter = kTapReadable, .queue = q, .id = kId});
  REQUIRE(t.ok());
  const auto rs = traced_delivery(*q, p.a, kId);
  // The poller saw, posted and woke; the waiter consumed.
  CHECK(rs[0].thread == rs[3].thread);
  CHECK(rs[3].thread != rs[4].thread);
  REQUIRE(svc->remove(*t).ok());
  svc->stop_poller_thread();
}

TEST_CASE(
    "trace: off records nothing; a session keeps its first `capacity` records and counts "
    "the rest as dropped") {
  auto q = std::move(event_queue::create_messages()).value();
  trace_stop();
  REQUIRE(trace_start(1024).ok());
  trace_stop();
  for (std::uint32_t i = 0; i < 100; ++i)
    REQUIRE(q->post(i, i).ok());
  event_msg m;
  while (q->try_get(m)) {
  }
  CHECK(trace_snapshot().empty());
  CHECK_FALSE(trace_counters().enabled);

  REQUIRE(trace_start(1024).ok());
  CHECK(trace_counters().enabled);
  for (std::uint32_t i = 0; i < 3000; ++i)
    REQUIRE(q->post(i, i).ok());  // no waiters: one post record each
  trace_stop();
  const auto rs = trace_snapshot();
  const trace_stats st = trace_counters();
  CHECK(rs.size() == 1024);
  CHECK(st.capacity == 1024);
  CHECK(st.recorded == 1024);
  CHECK(st.dropped == 3000 - 1024);
  for (std::size_t i = 0; i < rs.size(); ++i) {
    CHECK(rs[i].stage == trace_stages::post.number);
    CHECK(rs[i].id == i);  // the first ones, in order
  }
  while (q->try_get(m)) {
  }
  CHECK(trace_start(0).value() == EINVAL);
}

TEST_CASE("trace: concurrent writers, sessions restarted under them, never a torn record") {
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::vector<std::thread> ts;
  for (int w = 0; w < 3; ++w)
    ts.emplace_back([&, w] {
      std::uint32_t i = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        const std::uint32_t id = (static_cast<std::uint32_t>(w) << 24) | (i++ & 0xffffff);
        // aux and obj are functions of id: a mix of two records shows.
        trace(trace_stages::tap, id, std::uint64_t{id} * 3, std::uint64_t{id} ^ 0x5555);
      }
    });
  const int sessions = static_cast<int>(ueq::test::scaled(200));
  for (int s = 0; s < sessions; ++s) {
    REQUIRE(trace_start(s % 2 ? 1024 : 4096).ok());
    std::this_thread::yield();
    if (s % 3 == 0) trace_stop();
    for (const trace_record& r : trace_snapshot())
      if (r.stage != trace_stages::tap.number || r.aux != std::uint64_t{r.id} * 3 ||
          r.obj != (std::uint64_t{r.id} ^ 0x5555))
        bad.fetch_add(1);
  }
  stop.store(true);
  for (auto& t : ts)
    t.join();
  trace_stop();
  CHECK(bad.load() == 0);
}
