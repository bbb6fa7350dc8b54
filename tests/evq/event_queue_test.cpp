// Event queues without blocking: each mailbox kind, close, handlers, counters.
#include <catch2/catch.hpp>
#include <vector>

#include "ueq/ceq/evq/block_on.hpp"
#include "ueq/ceq/evq/event_queue.hpp"

using ueq::event_msg;
using ueq::event_queue;
using ueq::event_queue_ptr;

namespace {
event_queue_ptr must(ueq::result<event_queue_ptr> r) {
  REQUIRE(r.ok());
  return std::move(r).value();
}
}  // namespace

TEST_CASE("evq: a CEQ-backed queue coalesces, a message queue keeps every message", "[evq]") {
  auto c = must(event_queue::create_ceq({.ring_size = 16}));
  auto m = must(event_queue::create_messages());
  auto b = must(event_queue::create_bitmap(8));
  for (int i = 0; i < 3; ++i) {
    REQUIRE(c->post(5, 1u << i).ok());
    REQUIRE(m->post(5, 1u << i).ok());
    REQUIRE(b->post(5).ok());
  }
  event_msg out[8];
  REQUIRE(c->drain(out) == 1);
  REQUIRE(out[0].bits == 0x7);
  REQUIRE(m->drain(out) == 3);
  REQUIRE(out[2].bits == 4);
  REQUIRE(b->drain(out) == 1);
  REQUIRE(out[0].id == 5);
  REQUIRE(c->empty());
  REQUIRE(m->empty());
  REQUIRE(b->empty());
  REQUIRE(c->counters().posts == 3);
  REQUIRE(c->as_ceq() != nullptr);
  REQUIRE(c->as_bitmap() == nullptr);
  REQUIRE(m->as_messages() != nullptr);
}

TEST_CASE("evq: mailbox errors pass through; posts after close fail with EPIPE", "[evq]") {
  auto c = must(event_queue::create_ceq({.max_ids = 10}));
  REQUIRE(c->post(10, 1).value() == EINVAL);
  REQUIRE(c->post(3, 1).ok());
  c->close();
  c->close();  // idempotent
  REQUIRE(c->closed());
  REQUIRE(c->post(3, 1).value() == EPIPE);
  event_msg m;
  REQUIRE(c->try_get(m));  // what was posted before close stays readable
  REQUIRE(m.id == 3);
}

TEST_CASE("evq: dispatch runs the handler on each drained message", "[evq]") {
  auto q = must(event_queue::create_messages({.name = "h"}));
  std::vector<std::uint32_t> seen;
  REQUIRE(q->dispatch() == 0);  // no handler: drains nothing
  q->set_handler([&](event_queue& self, const event_msg& m) {
    REQUIRE(&self == q.get());
    seen.push_back(m.id);
  });
  for (std::uint32_t i = 0; i < 40; ++i)
    REQUIRE(q->post(i).ok());
  REQUIRE(q->dispatch(5) == 5);
  REQUIRE(q->dispatch() == 35);
  REQUIRE(seen.size() == 40);
  REQUIRE(seen[39] == 39);
  REQUIRE(q->dump().find("event_queue 'h': mailbox=messages") != std::string::npos);
}

TEST_CASE("evq: creation errors come from the mailbox", "[evq]") {
  REQUIRE(event_queue::create_ceq({.ring_size = 0}).error().value() == EINVAL);
  REQUIRE(event_queue::create_bitmap(0).error().value() == EINVAL);
}

TEST_CASE("evq: a post hook runs for each new message, and its queue refuses block_on", "[evq]") {
  auto c = must(event_queue::create_ceq({.ring_size = 16}));
  int calls = 0;
  c->set_post_hook([](void* ctx) noexcept { ++*static_cast<int*>(ctx); }, &calls);
  REQUIRE(c->hooked());
  REQUIRE(c->post(1, 1).ok());
  REQUIRE(c->post(1, 2).ok());  // coalesced: no new message, no call
  REQUIRE(c->post(2, 1).ok());
  REQUIRE(calls == 2);
  // The hook's owner wakes the waiters, so a waiter on the queue itself
  // would sleep through every post: refused at once, even with a message.
  event_queue* qs[] = {c.get()};
  auto r = ueq::block_on(qs, ueq::kImmediate);
  REQUIRE(!r);
  REQUIRE(r.error() == std::errc::invalid_argument);
  event_msg out[4];
  REQUIRE(c->drain(out) == 2);  // the messages stay for the hook's owner
}
