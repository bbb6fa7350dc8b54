// The coalescing event queue.
//
// Shared state and who writes it (read this before any function below):
//
//   slot.coalesce   producers RMW (OR/ADD), consumers exchange with 0.
//   slot.blob       producers store, consumers load. Last writer wins.
//   slot.posted     producers: load, then exchange(true) if it was false;
//                   consumers: load, then store(false).
//   dir_[c]         chunk pointers: null until the first producer or consumer
//                   that needs chunk c maps it and installs it with a CAS.
//   ring_[i]        kEmptyCell, or an ID. A producer that claimed cell i
//                   writes the ID; the consumer that claimed it reads the ID
//                   and writes kEmptyCell back before retiring the cell.
//   prod_           producers CAS it up: "cells below are claimed".
//   cons_pvt_       consumers CAS it up: "cells below are taken by a consumer".
//   cons_pub_       consumers advance it strictly in order: "cells below are
//                   free again". pub <= pvt <= prod; full when prod-pub = size.
//   max_plus1_      producers raise it with a CAS loop.
//   overflow_       producers set it when the ring is full; the consumer that
//                   starts a recovery scan exchanges it back to false.
//   recovering_     set and cleared by the scanning consumer, under
//                   recovery_lock_, which also guards recovery_cursor_.
//
// The one lock is recovery_lock_, on the overflow path only; nothing else
// blocks. The fast paths are lock-free: post() is wait-free when the slot is
// already pending and lock-free otherwise (a CAS loop on prod_ that retries
// only because another producer succeeded); a consumer waits only for a
// producer between its CAS on prod_ and its cell store, or for an earlier
// consumer retiring its cell, and it spins briefly then yields (backoff).
//
// The central handshake, producer P against consumer C on one slot:
//
//   P: store blob; RMW coalesce (acq_rel); load posted (acquire)
//      -> true: done (coalesced).  false: exchange posted true, push the ID.
//   C: load posted (acquire) -> false: stale, skip.
//      store posted false; exchange coalesce 0 (acq_rel)
//
// Claim: every bit P merges is returned by some consumer. Both sides RMW the
// coalesce word, so their RMWs are totally ordered there.
//  (a) P's RMW comes first: C's exchange returns P's bits.
//  (b) C's exchange comes first: P's RMW reads C's value (or a later RMW's, in
//      its release sequence), so it synchronises with C's exchange, and C's
//      "posted = false", sequenced before that exchange, happens before P's
//      load of posted. P therefore reads that false, or something later in
//      posted's modification order: either P flips it and pushes the ID
//      itself, or another producer P2 flipped it after C and pushed the ID.
//      In the latter case the consumer C2 that takes P2's entry stores false
//      after P2's true (it read the ID P2 published after flipping), and the
//      same two cases apply to P against C2; each round needs a new flip, so
//      the chain ends with a consumer that returns P's bits.
// Seq_cst is not needed anywhere on this path: the RMWs on the one coalesce
// word give the store->load ordering that would otherwise need a fence.
#include "ueq/ceq/ceq.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <bit>
#include <cinttypes>
#include <cstdio>
#include <new>

namespace ueq {

namespace {

constexpr std::uint64_t kMaxIds = 0xffffffffull;  // 0xffffffff is kEmptyCell
constexpr std::uint32_t kMaxRing = 1u << 30;

// Anonymous, zero-filled, committed page by page on first touch.
void* map_lazily(std::size_t bytes) noexcept {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

}  // namespace

result<std::unique_ptr<ceq>> ceq::create(const ceq_options& o) {
  if (o.ring_size == 0 || o.ring_size > kMaxRing || o.max_ids == 0 || o.max_ids > kMaxIds)
    return errno_code(EINVAL);
  const std::uint32_t ring = std::bit_ceil(o.ring_size);
  const std::size_t dir_len = (o.max_ids + kChunkSlots - 1) >> kChunkBits;
  auto* dir = static_cast<std::atomic<slot*>*>(map_lazily(dir_len * sizeof(std::atomic<slot*>)));
  if (!dir) return errno_code(ENOMEM);
  auto* cells = new (std::nothrow) std::atomic<std::uint32_t>[ring];
  if (!cells) {
    ::munmap(dir, dir_len * sizeof(std::atomic<slot*>));
    return errno_code(ENOMEM);
  }
  for (std::uint32_t i = 0; i < ring; ++i)
    cells[i].store(kEmptyCell, std::memory_order_relaxed);
  ceq_options eff = o;
  eff.ring_size = ring;
  // The queue is handed to other threads by whoever created it, which
  // publishes these plain initialisations along with the pointer.
  std::unique_ptr<ceq> q(new (std::nothrow) ceq(eff, dir, dir_len, cells));
  if (!q) {
    delete[] cells;
    ::munmap(dir, dir_len * sizeof(std::atomic<slot*>));
    return errno_code(ENOMEM);
  }
  return q;
}

ceq::ceq(const ceq_options& o, std::atomic<slot*>* dir, std::size_t dir_len,
         std::atomic<std::uint32_t>* ring)
    : merge_(o.merge),
      mask_(o.ring_size - 1),
      max_ids_(o.max_ids),
      dir_(dir),
      dir_len_(dir_len),
      ring_(ring) {}

ceq::~ceq() {
  // Destruction requires that no producer or consumer is still inside a call
  // (the owner guarantees it, e.g. by joining them or by deferred
  // reclamation), so relaxed loads see every installed chunk.
  for (std::size_t c = 0; c < dir_len_; ++c)
    if (slot* s = dir_[c].load(std::memory_order_relaxed)) ::munmap(s, kChunkSlots * sizeof(slot));
  ::munmap(dir_, dir_len_ * sizeof(std::atomic<slot*>));
  delete[] ring_;
}

// ---------------------------------------------------------------- slot table

inline ceq::slot* ceq::get_or_map_slot(std::uint32_t id) noexcept {
  if (slot* s = find_slot(id)) [[likely]]
    return s;
  return map_slot(id);
}

__attribute__((noinline)) ceq::slot* ceq::map_slot(std::uint32_t id) noexcept {
  if (id >= max_ids_) return nullptr;
  // Growth while producers run: map a fresh chunk (zero pages: every slot is
  // {0, 0, 0, false}, a valid idle slot) and try to install it. The loser of
  // a race unmaps its copy and uses the winner's.
  auto* fresh = static_cast<slot*>(map_lazily(kChunkSlots * sizeof(slot)));
  if (!fresh) return nullptr;
  slot* expected = nullptr;
  // release on success: publishes the (zero) chunk to find_slot()'s acquire.
  // acquire on failure: we are about to use the winner's chunk.
  if (!dir_[id >> kChunkBits].compare_exchange_strong(expected, fresh, std::memory_order_acq_rel,
                                                      std::memory_order_acquire)) {
    ::munmap(fresh, kChunkSlots * sizeof(slot));
    return &expected[id & (kChunkSlots - 1)];
  }
  return &fresh[id & (kChunkSlots - 1)];
}

status ceq::reserve(std::uint32_t first, std::uint32_t last) noexcept {
  if (first > last || last >= max_ids_) return status(EINVAL);
  for (std::uint64_t c = first >> kChunkBits; c <= (last >> kChunkBits); ++c)
    if (!get_or_map_slot(static_cast<std::uint32_t>(c << kChunkBits))) return status(ENOMEM);
  return {};
}

// ------------------------------------------------------------------ producer

status ceq::post_unmapped(std::uint32_t id, std::uint64_t bits, std::uint64_t blob,
                          ceq_post_status& st) noexcept {
  if (id >= max_ids_) return status(EINVAL);
  if (!map_slot(id)) return status(ENOMEM);
  return post(id, bits, blob, st);
}

void ceq::post_publish(slot* s, std::uint32_t id, ceq_post_status& st) noexcept {
  // acq_rel exchange: exactly one producer flips false -> true and owns the
  // ring push; release makes our bits visible to whoever later reads
  // posted == true with acquire (a recovery scan, see extract()).
  if (s->posted.exchange(true, std::memory_order_acq_rel)) {
    stats_.add(kCoalesced);  // another producer flipped it first
    st = ceq_post_status::coalesced;
    return;
  }
  if (push_ring(id)) {
    stats_.add(kRingPushes);
    st = ceq_post_status::queued;
  } else {
    // The slot stays posted with no ring entry: the recovery scan owns it.
    // release: pairs with the consumer's acquire of overflow_ (in empty()
    // and recover_one()) so the scan sees posted == true, our bits and the
    // raised max_plus1_.
    // An RMW, not a store: it continues the release sequence of every earlier
    // producer's raise of the flag (a plain store would start a new one and
    // end theirs), so the consumer's acquire exchange, whichever producer's
    // true it reads, synchronises with every producer that raised the flag
    // before it, and its scan bound covers all their IDs.
    // tests/model/ceq.pml -DBUG_OVERFLOW_STORE shows the loss with a store.
    overflow_.exchange(true, std::memory_order_release);
    stats_.add(kOverflows);
    st = ceq_post_status::overflowed;
  }
}

bool ceq::push_ring(std::uint32_t id) noexcept {
  // relaxed: the CAS below validates it.
  std::uint64_t p = prod_.load(std::memory_order_relaxed);
  for (;;) {
    // acquire: pairs with the consumer's release of cons_pub_. Seeing cell
    // p - size retired means the consumer's reset of that cell to kEmptyCell
    // happens before our store into it, so ours comes later in its order.
    const std::uint64_t pub = cons_pub_.load(std::memory_order_acquire);
    if (p - pub > mask_) {  // prod - pub == size: full
      // Re-read once: p may be stale if other producers moved on.
      const std::uint64_t p2 = prod_.load(std::memory_order_relaxed);
      if (p2 == p) return false;
      p = p2;
      continue;
    }
    // relaxed: claiming the cell publishes nothing; the cell store below is
    // the publication. Failure means another producer claimed p: retry with
    // the new value, never give up on contention (Akaros's 10-try cap forced
    // the O(n) overflow path on mere contention).
    if (prod_.compare_exchange_weak(p, p + 1, std::memory_order_relaxed, std::memory_order_relaxed))
      break;
  }
  // release: publishes the slot (posted == true, bits, blob) to the consumer
  // whose acquire load reads this ID.
  ring_[p & mask_].store(id, std::memory_order_release);
  return true;
}

// ------------------------------------------------------------------ consumer

std::size_t ceq::pop_ring(std::uint32_t* ids, std::size_t max) noexcept {
  // acquire on cons_pvt_ and its CAS: a consumer that advanced pvt to c had
  // seen prod >= c; acquiring its CAS makes that read happen before our load
  // of prod_, so our prod_ value is >= c too.
  std::uint64_t c = cons_pvt_.load(std::memory_order_acquire);
  std::size_t n;
  for (;;) {
    // acquire: pairs with nothing by itself (claims publish nothing); it is
    // the ordering argument above. The cell load below is the publication.
    const std::uint64_t p = prod_.load(std::memory_order_acquire);
    if (p <= c) return 0;  // ring empty (claimed-but-unwritten cells count as full)
    n = std::min<std::uint64_t>(p - c, max);
    if (cons_pvt_.compare_exchange_weak(c, c + n, std::memory_order_acq_rel,
                                        std::memory_order_acquire))
      break;
  }
  for (std::size_t i = 0; i < n; ++i) {
    std::atomic<std::uint32_t>& cell = ring_[(c + i) & mask_];
    // acquire: pairs with the producer's release store of the ID. The
    // producer may have claimed the cell and been preempted before writing
    // it: spin briefly, then yield so it can run.
    std::uint32_t id = cell.load(std::memory_order_acquire);
    if (__builtin_expect(id == kEmptyCell, 0)) {
      backoff b;
      while ((id = cell.load(std::memory_order_acquire)) == kEmptyCell)
        b.pause();
    }
    ids[i] = id;
    // relaxed: ordered before the producer's next store into this cell by our
    // release of cons_pub_ below and its acquire of it.
    cell.store(kEmptyCell, std::memory_order_relaxed);
  }
  // Retire in order: cells below c belong to earlier consumers, which must
  // hand them back first (pub is one counter, not a bitmap).
  // acquire: nothing to read from them; acquire keeps the wait honest.
  if (cons_pub_.load(std::memory_order_acquire) != c) {
    backoff b;
    while (cons_pub_.load(std::memory_order_acquire) != c)
      b.pause();
  }
  // release: our kEmptyCell resets happen before any producer that sees the
  // cells free (it loads cons_pub_ with acquire).
  cons_pub_.store(c + n, std::memory_order_release);
  return n;
}

bool ceq::extract(std::uint32_t id, ceq_event& out) noexcept {
  slot* s = find_slot(id);
  // acquire: reading posted == true from a producer's exchange (the ring path
  // already synchronised through the cell; the recovery path has only this)
  // makes that producer's bits happen before our exchange below.
  if (!s || !s->posted.load(std::memory_order_acquire)) return false;  // stale
  // relaxed: ordered before the exchange by its release half (handshake at
  // the top). Two consumers racing on one slot (a stale entry against a
  // recovery scan) may both get here; the loser returns zero bits.
  s->posted.store(false, std::memory_order_relaxed);
  // acq_rel: acquire takes the producers' bits and blobs; release carries
  // our posted = false to every producer whose RMW follows.
  out.bits = s->coalesce.exchange(0, std::memory_order_acq_rel);
  out.blob = s->blob.load(std::memory_order_relaxed);
  out.id = id;
  if (out.bits == 0) stats_.add(kEmptyMessages);
  return true;
}

ceq::recovery ceq::recover_one(ceq_event& out) noexcept {
  // Read overflow first, then recovering (the recovering consumer writes them
  // in the other order, see below): a consumer must not see "no overflow"
  // from after the exchange yet "not recovering" from before the flag was set.
  // acquire on both: pairs with the producer's release of overflow_ and with
  // the release exchange below.
  if (!overflow_.load(std::memory_order_acquire) && !recovering_.load(std::memory_order_acquire))
    return recovery::none;
  recovery_lock_.lock();
  if (!recovering_.load(std::memory_order_relaxed)) {  // lock-protected writer
    if (!overflow_.load(std::memory_order_acquire)) {
      // Another consumer ran a whole scan between our check and the lock.
      recovery_lock_.unlock();
      return recovery::retry;
    }
    // Mark "recovering" before clearing the overflow (the ordering Akaros
    // fixed in ff691c62). relaxed store, then the release exchange: whoever
    // reads overflow_ == false from this exchange with acquire also sees
    // recovering_ == true (or its later false, written after a full scan).
    recovering_.store(true, std::memory_order_relaxed);
    // acq_rel exchange, not a store: reading a producer's true synchronises
    // with its release, so the scan sees that producer's posted flag, bits and
    // high-water mark. A producer that overflows after this sets the flag
    // again and a later scan covers it.
    overflow_.exchange(false, std::memory_order_acq_rel);
    recovery_cursor_ = 0;
    stats_.add(kRecoveryScans);
  }
  // acquire: see the release in post(); the overflow exchange already made
  // every overflowing producer's mark visible, this keeps later ones too.
  const std::uint64_t end = max_plus1_.load(std::memory_order_acquire);
  while (recovery_cursor_ < end) {
    const std::uint32_t id = static_cast<std::uint32_t>(recovery_cursor_);
    if (!find_slot(id)) {  // unmapped chunk: nothing was ever posted there
      const std::uint64_t next = (std::uint64_t{id} | (kChunkSlots - 1)) + 1;
      stats_.add(kSlotsScanned, std::min(next, end) - recovery_cursor_);
      recovery_cursor_ = next;
      continue;
    }
    ++recovery_cursor_;
    stats_.add(kSlotsScanned);
    if (extract(id, out)) {
      recovery_lock_.unlock();
      return recovery::got;
    }
  }
  // release: pairs with the acquire load at the top of this function.
  recovering_.store(false, std::memory_order_release);
  recovery_lock_.unlock();
  return recovery::retry;
}

bool ceq::get(ceq_event& out) noexcept {
  return get_batch({&out, 1}) == 1;
}

std::size_t ceq::get_batch(std::span<ceq_event> out) noexcept {
  constexpr std::size_t kClaim = 64;
  std::uint32_t ids[kClaim];
  std::size_t n = 0;
  std::uint64_t stale = 0;
  while (n < out.size()) {
    const std::size_t k = pop_ring(ids, std::min(kClaim, out.size() - n));
    if (k != 0) {
      for (std::size_t i = 0; i < k; ++i) {
        if (extract(ids[i], out[n]))
          ++n;
        else
          ++stale;  // harvested already (recovery) or a duplicate: keep going
      }
      continue;
    }
    // The ring is empty: only an overflow or an unfinished scan can hold more.
    const recovery r = recover_one(out[n]);
    if (r == recovery::got)
      ++n;
    else if (r == recovery::none)
      break;
    // retry: a scan ended; producers may have pushed meanwhile, look again.
  }
  if (stale) stats_.add(kStaleEntries, stale);
  if (n) stats_.add(kDelivered, n);
  return n;
}

bool ceq::empty() const noexcept {
  // acquire on each: the same pairings as in pop_ring() and recover_one().
  return prod_.load(std::memory_order_acquire) <= cons_pvt_.load(std::memory_order_acquire) &&
         !overflow_.load(std::memory_order_acquire) && !recovering_.load(std::memory_order_acquire);
}

std::int64_t ceq::max_event_ever() const noexcept {
  return static_cast<std::int64_t>(max_plus1_.load(std::memory_order_acquire)) - 1;
}

ceq_counters ceq::counters() const noexcept {
  ceq_counters c;
  c.coalesced = stats_.read(kCoalesced);
  c.ring_pushes = stats_.read(kRingPushes);
  c.overflows = stats_.read(kOverflows);
  // Every successful post ends in exactly one of these three; counting them
  // separately keeps the hot path to one counter update.
  c.posts = c.coalesced + c.ring_pushes + c.overflows;
  c.recovery_scans = stats_.read(kRecoveryScans);
  c.slots_scanned = stats_.read(kSlotsScanned);
  c.stale_entries = stats_.read(kStaleEntries);
  c.empty_messages = stats_.read(kEmptyMessages);
  c.delivered = stats_.read(kDelivered);
  return c;
}

std::string ceq::dump(std::size_t max_slots) const {
  std::string out;
  char line[256];
  auto add = [&](const char* fmt, auto... args) {
    std::snprintf(line, sizeof line, fmt, args...);
    out += line;
  };
  const ceq_counters c = counters();
  add("ceq %p: merge=%s ring=%u max_ids=%" PRIu64 " max_event_ever=%" PRId64 "\n",
      static_cast<const void*>(this), merge_ == ceq_merge::bit_or ? "or" : "add", ring_size(),
      max_ids_, max_event_ever());
  add("  indices: prod=%" PRIu64 " cons_pvt=%" PRIu64 " cons_pub=%" PRIu64 " (pending %" PRIu64
      ")\n",
      prod_.load(std::memory_order_relaxed), cons_pvt_.load(std::memory_order_relaxed),
      cons_pub_.load(std::memory_order_relaxed),
      prod_.load(std::memory_order_relaxed) - cons_pvt_.load(std::memory_order_relaxed));
  add("  flags: overflow=%d recovering=%d recovery_lock=%d\n",
      overflow_.load(std::memory_order_relaxed), recovering_.load(std::memory_order_relaxed),
      recovery_lock_.is_locked());
  add("  counters: posts=%" PRIu64 " coalesced=%" PRIu64 " ring_pushes=%" PRIu64
      " overflows=%" PRIu64 " recovery_scans=%" PRIu64 " slots_scanned=%" PRIu64
      " stale_entries=%" PRIu64 " empty_messages=%" PRIu64 " delivered=%" PRIu64 "\n",
      c.posts, c.coalesced, c.ring_pushes, c.overflows, c.recovery_scans, c.slots_scanned,
      c.stale_entries, c.empty_messages, c.delivered);
  std::size_t listed = 0, pending = 0;
  const std::uint64_t end = max_plus1_.load(std::memory_order_relaxed);
  for (std::uint64_t id = 0; id < end; ++id) {
    const slot* s = find_slot(static_cast<std::uint32_t>(id));
    if (!s) {
      id |= kChunkSlots - 1;
      continue;
    }
    if (!s->posted.load(std::memory_order_relaxed)) continue;
    ++pending;
    if (listed < max_slots) {
      ++listed;
      add("  slot %" PRIu64 ": posted bits=0x%" PRIx64 " blob=0x%" PRIx64 "\n", id,
          s->coalesce.load(std::memory_order_relaxed), s->blob.load(std::memory_order_relaxed));
    }
  }
  add("  posted slots: %zu (%zu listed)\n", pending, listed);
  return out;
}

}  // namespace ueq
