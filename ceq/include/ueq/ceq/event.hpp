// ueq/ceq/event.hpp — the event message every mailbox carries.
//
// What it is for: one vocabulary for "what happened" between producers (taps,
// timers, user code) and consumers (event queues, the epoll facade).
//   id    which source: a CEQ slot, a bitmap bit, an fd number... (32 bits
//         end to end: no truncation anywhere)
//   bits  what happened: event bits (OR mailboxes), a count (ADD), or any
//         payload word (the message queue keeps it whole)
//   blob  one more word of payload; a CEQ keeps only the latest per ID
//
// The mailboxes (the CEQ, the bitmap, the message queue) share one
// interface, which event_queue drives without knowing which it holds:
//   status post(const event_msg& m, bool& coalesced) noexcept
//       takes m; coalesced = it only merged into a pending message (no new
//       message for a consumer, so no waiter needs waking)
//   bool get(event_msg& out) noexcept
//       takes one message; false = empty
//   std::size_t get_batch(std::span<event_msg> out) noexcept
//       takes up to out.size() messages; 0 = empty
//   bool empty() const noexcept
//       a snapshot: nothing pending
// The `mailbox` concept states it; each mailbox's header checks itself.
//
// Thread-safety: event_msg is a plain value type.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>

#include "ueq/runtime/result.hpp"

namespace ueq {

struct event_msg {
  std::uint32_t id = 0;
  std::uint64_t bits = 0;
  std::uint64_t blob = 0;
};

template <class M>
concept mailbox = requires(M& m, const M& cm, const event_msg& e, bool& coalesced, event_msg& one,
                           std::span<event_msg> out) {
  { m.post(e, coalesced) }
  noexcept->std::same_as<status>;
  { m.get(one) }
  noexcept->std::same_as<bool>;
  { m.get_batch(out) }
  noexcept->std::same_as<std::size_t>;
  { cm.empty() }
  noexcept->std::same_as<bool>;
};

}  // namespace ueq
