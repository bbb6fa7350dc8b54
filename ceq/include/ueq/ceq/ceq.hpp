// ueq/ceq/ceq.hpp — the coalescing event queue (CEQ).
//
// What it is for: delivering "something happened to ID n" from many producers
// to many consumers, where many events for one ID between two harvests become
// one message. Each ID owns a slot {coalesce word, blob, posted flag, user
// data}. A producer merges its bits into the slot's word (OR, or ADD — chosen
// at creation); only the producer that turns the slot's `posted` flag from
// false to true pushes the ID into a ring, so a slot has at most one live ring
// entry and the ring only has to be as large as the number of slots that are
// active at once. When the ring is full the producer sets an overflow flag
// instead, and consumers recover with a resumable scan of the slots up to the
// highest ID ever posted. Nothing posted is lost: every bit merged into a slot
// is returned by some later get() (see "Guarantees").
//
// IDs are 32-bit, 0 .. max_ids-1 (max_ids <= 2^32-1). The slot table is a
// two-level array whose chunks are mapped on first use and installed while
// producers run, so a CEQ over a large ID space (fd numbers) costs memory only
// for the IDs actually used.
//
// Guarantees:
//  - No bit lost: bits merged by post(id) before get() starts are returned by
//    that get() or by a get() that returns later (possibly merged with newer
//    ones). In ADD mode the returned words sum exactly to what was posted.
//  - get()/get_batch() report "empty" only when the ring is empty and neither
//    an overflow nor a recovery scan is pending: stale and duplicate ring
//    entries are skipped, never mistaken for the end.
//  - A message may carry zero bits (two harvests raced, or a zero post); it
//    is legal and counted in `empty_messages`: callers filter it.
//  - The blob is last-writer-wins and not atomic with the bits.
//  - No order between IDs.
//
// Thread-safety: post() from any number of threads; get(), get_batch() and
// the user-data accessors from any number of consumer threads; all
// concurrently. post() never blocks and never waits for a consumer. A
// consumer may briefly wait (spin, then yield) for a producer that claimed a
// ring cell but has not written it yet.
//
// Usage:
//   auto q = ueq::ceq::create({.merge = ueq::ceq_merge::bit_or, .ring_size = 256});
//   if (!q) return q.error();
//   (*q)->post(/*id=*/42, /*bits=*/0x1);
//   (*q)->post(42, 0x4);                       // coalesces with the first
//   ueq::ceq_event ev;
//   while ((*q)->get(ev)) use(ev.id, ev.bits);  // one message: {42, 0x5}
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "ueq/ceq/event.hpp"
#include "ueq/runtime/backoff.hpp"
#include "ueq/runtime/result.hpp"
#include "ueq/runtime/sharded_counters.hpp"

namespace ueq {

enum class ceq_merge : std::uint8_t {
  bit_or,  // bits = old | new   (event masks)
  add,     // bits = old + new   (counts)
};

struct ceq_options {
  ceq_merge merge = ceq_merge::bit_or;
  // Ring cells; rounded up to a power of two, 1 .. 2^30. Size it to the
  // number of IDs that may be pending at once and overflow never happens.
  std::uint32_t ring_size = 1024;
  // IDs accepted are 0 .. max_ids-1; at most 2^32-1 (0xffffffff is reserved
  // as the empty-cell marker). Only the directory is sized by this
  // (8 bytes per 1024 IDs, mapped lazily); slots are mapped on first use.
  std::uint64_t max_ids = std::uint64_t{1} << 20;
};

// A CEQ message: bits = the merged coalesce word (possibly 0), blob = the
// latest blob posted to the ID.
using ceq_event = event_msg;

enum class ceq_post_status : std::uint8_t {
  queued,      // this post pushed the ID into the ring
  coalesced,   // the ID was already pending; merged into it
  overflowed,  // the ring was full; a recovery scan will find the ID
};

struct ceq_counters {
  std::uint64_t posts = 0;           // successful post() calls
  std::uint64_t coalesced = 0;       // posts merged into an already-pending slot
  std::uint64_t ring_pushes = 0;     // IDs pushed into the ring
  std::uint64_t overflows = 0;       // posts that found the ring full
  std::uint64_t recovery_scans = 0;  // recovery scans started
  std::uint64_t slots_scanned = 0;   // slots visited by recovery scans
  std::uint64_t stale_entries = 0;   // ring entries whose slot was already harvested
  std::uint64_t empty_messages = 0;  // messages returned with zero bits
  std::uint64_t delivered = 0;       // messages returned by get()/get_batch()
};

class ceq {
 public:
  // EINVAL: ring_size is 0 or over 2^30, or max_ids is 0 or over 2^32-1.
  // ENOMEM: the ring or the slot directory could not be allocated.
  static result<std::unique_ptr<ceq>> create(const ceq_options& options = {});

  ~ceq();
  ceq(const ceq&) = delete;
  ceq& operator=(const ceq&) = delete;

  // Merges `bits` into slot `id` and stores `blob` as its latest blob.
  // EINVAL: id >= max_ids. ENOMEM: the slot's chunk could not be mapped (use
  // reserve() beforehand to make posting infallible for a range of IDs).
  // Lock-free; never waits for a consumer.
  status post(std::uint32_t id, std::uint64_t bits, std::uint64_t blob = 0) noexcept {
    ceq_post_status st;
    return post(id, bits, blob, st);
  }
  inline status post(std::uint32_t id, std::uint64_t bits, std::uint64_t blob,
                     ceq_post_status& st) noexcept;
  // The mailbox interface (event.hpp): post m; `coalesced` says whether it
  // only merged into a pending message.
  status post(const event_msg& m, bool& coalesced) noexcept {
    ceq_post_status st{};  // not written by a failed post
    const status s = post(m.id, m.bits, m.blob, st);
    coalesced = s.ok() && st == ceq_post_status::coalesced;
    return s;
  }

  // Takes one message. false = the CEQ is empty (see Guarantees).
  bool get(ceq_event& out) noexcept;
  // Takes up to out.size() messages; returns how many. 0 = empty.
  std::size_t get_batch(std::span<ceq_event> out) noexcept;

  // A snapshot: true if nothing is pending in the ring, and no overflow or
  // recovery is pending. Producers may post the next instant.
  bool empty() const noexcept;

  // Maps the slots for IDs first .. last (inclusive) now, so that posts to
  // them cannot fail with ENOMEM. EINVAL if last >= max_ids or first > last.
  status reserve(std::uint32_t first, std::uint32_t last) noexcept;

  // Highest ID ever posted, or -1 if none.
  std::int64_t max_event_ever() const noexcept;
  std::uint32_t ring_size() const noexcept { return mask_ + 1; }
  std::uint64_t max_ids() const noexcept { return max_ids_; }
  ceq_merge merge() const noexcept { return merge_; }
  ceq_counters counters() const noexcept;
  // Human-readable state: options, ring indices, flags, counters, and the
  // pending slots (at most `max_slots` of them listed).
  std::string dump(std::size_t max_slots = 32) const;

 private:
  friend struct ceq_test_access;  // white-box tests inject ring entries
  // One per ID; see the field table at the top of ceq.cpp for who writes what.
  struct slot {
    std::atomic<std::uint64_t> coalesce{0};
    std::atomic<std::uint64_t> blob{0};
    std::atomic<bool> posted{false};
  };
  enum counter : std::size_t {
    kCoalesced,
    kRingPushes,
    kOverflows,
    kRecoveryScans,
    kSlotsScanned,
    kStaleEntries,
    kEmptyMessages,
    kDelivered,
    kNumCounters
  };
  static constexpr std::uint32_t kChunkBits = 10;  // 1024 slots (24 KiB) a chunk
  static constexpr std::uint32_t kChunkSlots = 1u << kChunkBits;
  static constexpr std::uint32_t kEmptyCell = 0xffffffffu;

  ceq(const ceq_options& o, std::atomic<slot*>* dir, std::size_t dir_len,
      std::atomic<std::uint32_t>* ring);

  slot* find_slot(std::uint32_t id) const noexcept {
    if (id >= max_ids_) return nullptr;
    // acquire: pairs with the release CAS in map_slot() that installed the
    // chunk, so its zero-initialised slots are visible before we touch them.
    slot* chunk = dir_[id >> kChunkBits].load(std::memory_order_acquire);
    return chunk ? &chunk[id & (kChunkSlots - 1)] : nullptr;
  }
  slot* get_or_map_slot(std::uint32_t id) noexcept;
  slot* map_slot(std::uint32_t id) noexcept;  // the slow half of get_or_map_slot
  // The out-of-line halves of post(): first post into an unmapped chunk, and
  // the flip of `posted` followed by the ring push or the overflow.
  status post_unmapped(std::uint32_t id, std::uint64_t bits, std::uint64_t blob,
                       ceq_post_status& st) noexcept;
  void post_publish(slot* s, std::uint32_t id, ceq_post_status& st) noexcept;
  bool push_ring(std::uint32_t id) noexcept;
  std::size_t pop_ring(std::uint32_t* ids, std::size_t max) noexcept;
  bool extract(std::uint32_t id, ceq_event& out) noexcept;
  enum class recovery { got, retry, none };
  recovery recover_one(ceq_event& out) noexcept;

  // --- immutable after construction ---
  const ceq_merge merge_;
  const std::uint32_t mask_;  // ring_size - 1
  const std::uint64_t max_ids_;
  std::atomic<slot*>* const dir_;  // chunk directory, mmap'd, dir_len_ entries
  const std::size_t dir_len_;
  std::atomic<std::uint32_t>* const ring_;

  // --- producer side ---
  // Next ring cell a producer claims. Producers CAS it; see push_ring().
  alignas(kCacheLine) std::atomic<std::uint64_t> prod_{0};
  // Highest ID posted, plus one (0 = none). Raised with a CAS before the slot
  // becomes visible; bounds recovery scans. See post().
  std::atomic<std::uint32_t> max_plus1_{0};

  // --- consumer side ---
  // Next ring cell a consumer claims (consumer-private index).
  alignas(kCacheLine) std::atomic<std::uint64_t> cons_pvt_{0};
  // Oldest cell not yet handed back to producers (consumer-public index).
  alignas(kCacheLine) std::atomic<std::uint64_t> cons_pub_{0};

  // --- overflow and recovery ---
  alignas(kCacheLine) std::atomic<bool> overflow_{false};
  std::atomic<bool> recovering_{false};
  spin_lock recovery_lock_{lock_level::mailbox};                       // serialises recovery scans
  std::uint64_t recovery_cursor_ ABSL_GUARDED_BY(recovery_lock_) = 0;  // next ID to scan

  sharded_counters<kNumCounters> stats_;
};

// The producer's fast path, inline so that a post to an already-pending slot
// costs one locked instruction plus a few plain loads and stores. The
// handshake it takes part in is argued at the top of ceq.cpp.
inline status ceq::post(std::uint32_t id, std::uint64_t bits, std::uint64_t blob,
                        ceq_post_status& st) noexcept {
  slot* s = find_slot(id);
  if (__builtin_expect(s == nullptr, 0)) return post_unmapped(id, bits, blob, st);

  // Raise the high-water mark before the slot can become visible (through
  // the ring or the overflow flag), so a recovery scan that learns of this
  // post also scans this ID. relaxed: what orders it for the scanner is the
  // release of our later overflow_ store (the only case a scan needs it).
  std::uint32_t hw = max_plus1_.load(std::memory_order_relaxed);
  while (id + 1 > hw && !max_plus1_.compare_exchange_weak(hw, id + 1, std::memory_order_relaxed)) {
  }

  // relaxed: published by the release half of the RMW below; consumers read
  // the blob after their acquire exchange of the coalesce word.
  s->blob.store(blob, std::memory_order_relaxed);
  // acq_rel: release publishes the blob; acquire is case (b) of the
  // handshake — if a consumer harvested just before us, we synchronise with
  // its exchange and must then see its posted = false.
  if (merge_ == ceq_merge::bit_or)
    s->coalesce.fetch_or(bits, std::memory_order_acq_rel);
  else
    s->coalesce.fetch_add(bits, std::memory_order_acq_rel);

  // acquire: a true here means a consumer is obliged to visit the slot after
  // our bits (handshake, case (a) or the chain in case (b)). A plain load
  // keeps the already-pending path free of a second locked instruction.
  if (s->posted.load(std::memory_order_acquire)) {
    stats_.add(kCoalesced);
    st = ceq_post_status::coalesced;
    return {};
  }
  post_publish(s, id, st);
  return {};
}

static_assert(mailbox<ceq>);

}  // namespace ueq
