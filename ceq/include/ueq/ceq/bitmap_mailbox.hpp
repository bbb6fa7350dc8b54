// ueq/ceq/bitmap_mailbox.hpp — one bit per ID: "ID n fired", nothing more.
//
// What it is for: a small, fixed ID space (signals, timer slots, a handful
// of event types) where only "did it fire since I last looked" matters.
// Posting an ID that is already set coalesces; no payload is kept (messages
// come out as {id, bits = 1, blob = 0}).
//
// Guarantees: an ID posted before get() starts is returned by that get() or
// a later one; get() reports empty only when no bit is set that no other
// consumer has already claimed (a pending count, not a racy summary flag,
// decides). Lock-free; IDs come out in ascending order per scan.
//
// Thread-safety: post() and get() from any number of threads concurrently.
//
// Usage:
//   auto m = ueq::bitmap_mailbox::create(64);
//   (*m)->post(3);
//   (*m)->post(3);               // coalesces
//   ueq::event_msg ev;
//   (*m)->get(ev);               // {3, 1, 0}
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>

#include "ueq/ceq/event.hpp"
#include "ueq/runtime/result.hpp"
#include "ueq/runtime/sharded_counters.hpp"

namespace ueq {

struct bitmap_counters {
  std::uint64_t posts = 0;
  std::uint64_t coalesced = 0;  // posts to an ID that was already set
  std::uint64_t delivered = 0;
};

class bitmap_mailbox {
 public:
  // EINVAL: nbits is 0 or over 2^24 (a bitmap is for small ID spaces).
  static result<std::unique_ptr<bitmap_mailbox>> create(std::uint32_t nbits);

  // EINVAL: id >= nbits. `coalesced` tells whether the bit was already set.
  status post(std::uint32_t id) noexcept {
    bool coalesced;
    return post(id, coalesced);
  }
  status post(std::uint32_t id, bool& coalesced) noexcept;
  // The mailbox interface (event.hpp): only m.id is kept.
  status post(const event_msg& m, bool& coalesced) noexcept { return post(m.id, coalesced); }
  bool get(event_msg& out) noexcept;
  std::size_t get_batch(std::span<event_msg> out) noexcept;
  bool empty() const noexcept;
  std::uint32_t size_bits() const noexcept { return nbits_; }
  bitmap_counters counters() const noexcept;

 private:
  explicit bitmap_mailbox(std::uint32_t nbits);
  enum { kPosts, kCoalesced, kDelivered, kCount };

  const std::uint32_t nbits_;
  const std::uint32_t nwords_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> words_;
  // Number of set bits not yet claimed by a consumer, give or take the
  // producers between setting a bit and counting it (see bitmap_mailbox.cpp).
  alignas(kCacheLine) std::atomic<std::int64_t> pending_{0};
  sharded_counters<kCount, 8> stats_;
};

static_assert(mailbox<bitmap_mailbox>);

}  // namespace ueq
