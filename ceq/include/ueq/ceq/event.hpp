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
// Thread-safety: a plain value type.
#pragma once

#include <cstdint>

namespace ueq {

struct event_msg {
  std::uint32_t id = 0;
  std::uint64_t bits = 0;
  std::uint64_t blob = 0;
};

}  // namespace ueq
