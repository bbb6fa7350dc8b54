// The bitmap mailbox.
//
// Shared state: words_[] (bit i set = ID i fired and is unclaimed), written
// by producers with fetch_or and by consumers with fetch_and; pending_ (set
// bits not yet claimed), incremented by the producer that set a bit,
// decremented by the consumer that cleared it. No locks.
//
// Why a count and not Akaros's "check_bits" summary flag: with a flag, a
// consumer clears it before scanning, so a second consumer that looks while
// the first is mid-scan sees "empty" although a bit it will never be woken
// for again is still set. A count is only lowered by the consumer that
// actually claimed a bit.
//
// Linearisation: a post takes effect at its increment of pending_. A
// consumer that reads pending_ > 0 with acquire synchronises with the
// increments it read, so the bits behind them are visible to its scan; if the
// scan then finds none, another consumer claimed them (and will deliver
// them). pending_ may dip below zero for a moment (a consumer claimed a bit
// before its producer counted it): callers test `> 0`.
#include "ueq/ceq/bitmap_mailbox.hpp"

#include <new>

namespace ueq {

result<std::unique_ptr<bitmap_mailbox>> bitmap_mailbox::create(std::uint32_t nbits) {
  if (nbits == 0 || nbits > (1u << 24)) return errno_code(EINVAL);
  std::unique_ptr<bitmap_mailbox> m(new (std::nothrow) bitmap_mailbox(nbits));
  if (!m || !m->words_) return errno_code(ENOMEM);
  return m;
}

bitmap_mailbox::bitmap_mailbox(std::uint32_t nbits)
    : nbits_(nbits),
      nwords_((nbits + 63) / 64),
      words_(new (std::nothrow) std::atomic<std::uint64_t>[(nbits + 63) / 64]) {
  if (words_)
    for (std::uint32_t i = 0; i < nwords_; ++i)
      words_[i].store(0, std::memory_order_relaxed);
}

status bitmap_mailbox::post(std::uint32_t id, bool& coalesced) noexcept {
  coalesced = false;
  if (id >= nbits_) return status(EINVAL);
  const std::uint64_t bit = 1ull << (id & 63);
  // relaxed: the increment below (release) publishes the set bit.
  if (words_[id >> 6].fetch_or(bit, std::memory_order_relaxed) & bit) {
    stats_.add(kCoalesced);  // already set and unclaimed: its count stands
    coalesced = true;
    return {};
  }
  // release: a consumer that acquires this count sees the bit.
  pending_.fetch_add(1, std::memory_order_release);
  stats_.add(kPosts);
  return {};
}

bool bitmap_mailbox::get(event_msg& out) noexcept {
  return get_batch({&out, 1}) == 1;
}

std::size_t bitmap_mailbox::get_batch(std::span<event_msg> out) noexcept {
  std::size_t n = 0;
  // acquire: pairs with the producers' release increments (see top).
  if (out.empty() || pending_.load(std::memory_order_acquire) <= 0) return 0;
  for (std::uint32_t w = 0; w < nwords_ && n < out.size(); ++w) {
    std::uint64_t v = words_[w].load(std::memory_order_relaxed);
    while (v != 0 && n < out.size()) {
      const std::uint64_t bit = v & -v;
      // relaxed: the claim needs no ordering of its own; only the consumer
      // whose fetch_and saw the bit set owns (and delivers) it.
      const std::uint64_t old = words_[w].fetch_and(~bit, std::memory_order_relaxed);
      if (old & bit) {
        // relaxed: only lowers the count after our own claim.
        pending_.fetch_sub(1, std::memory_order_relaxed);
        out[n++] = {static_cast<std::uint32_t>(w * 64 + __builtin_ctzll(bit)), 1, 0};
      }
      v = old & ~bit;
    }
  }
  if (n) stats_.add(kDelivered, n);
  return n;
}

bool bitmap_mailbox::empty() const noexcept {
  return pending_.load(std::memory_order_acquire) <= 0;
}

bitmap_counters bitmap_mailbox::counters() const noexcept {
  const std::uint64_t fresh = stats_.read(kPosts), co = stats_.read(kCoalesced);
  return {fresh + co, co, stats_.read(kDelivered)};
}

}  // namespace ueq
