// Epoch-based reclamation.
//
// Shared state and who writes it:
//   epoch_        the global epoch; advanced with a CAS by reclaim().
//   slots_[i]     thread i's pin word, written only by thread i.
//   shared_pins_  count of pins by threads without a slot; any nonzero count
//                 blocks advancing.
//   retired_      {pointer, deleter, epoch at retire}, under mu_.
//
// The handshake (store-then-load on both sides, hence seq_cst):
//   reader: store slot = (E << 1) | 1; load epoch_ again; if it moved,
//           re-store with the new value. Then read shared data.
//   writer: unlink; retire at epoch R = epoch_. reclaim(): load every slot;
//           advance only if every pinned slot shows the current epoch.
// An object retired at R is freed when epoch_ >= R + 2: the epoch moved
// from R to R+1 only after every pinned reader showed R (so any reader that
// could have seen the object before it was unlinked was pinned at <= R),
// and from R+1 to R+2 only after every pinned reader showed R+1, which means
// each of those older readers had unpinned.
#include "ueq/runtime/epoch.hpp"

#include "ueq/runtime/thread_index.hpp"

namespace ueq {

epoch_domain::~epoch_domain() {
  for (auto& r : retired_)
    r.del(r.p);
}

void epoch_domain::enter() noexcept {
  const unsigned idx = this_thread_index();
  if (idx >= kMaxThreads) {
    // seq_cst: like a slot store, must be visible before our reads.
    shared_pins_.fetch_add(1, std::memory_order_seq_cst);
    return;
  }
  slot& s = slots_[idx];
  if (s.depth++ > 0) return;
  // relaxed load: the loop below re-checks with seq_cst.
  std::uint64_t e = epoch_.load(std::memory_order_relaxed);
  for (;;) {
    // seq_cst store then seq_cst load: the reader half of the handshake.
    s.word.store((e << 1) | 1, std::memory_order_seq_cst);
    const std::uint64_t now = epoch_.load(std::memory_order_seq_cst);
    if (now == e) return;
    e = now;
  }
}

void epoch_domain::exit() noexcept {
  const unsigned idx = this_thread_index();
  if (idx >= kMaxThreads) {
    // release: our reads happen before a reclaimer that sees the count drop.
    shared_pins_.fetch_sub(1, std::memory_order_release);
    return;
  }
  slot& s = slots_[idx];
  // release: our reads of shared data happen before the reclaimer's frees.
  if (--s.depth == 0) s.word.store(0, std::memory_order_release);
}

void epoch_domain::retire(void* p, deleter_fn del) {
  // acquire: at least the epoch in force when the object was unlinked.
  const std::uint64_t e = epoch_.load(std::memory_order_acquire);
  std::lock_guard<std::mutex> g(mu_);
  retired_.push_back({p, del, e});
}

std::size_t epoch_domain::reclaim() {
  // seq_cst: the writer half of the handshake; loads of slots below are
  // ordered after the unlinks that preceded retire().
  std::uint64_t e = epoch_.load(std::memory_order_seq_cst);
  bool all_seen = shared_pins_.load(std::memory_order_seq_cst) == 0;
  for (unsigned i = 0; all_seen && i < kMaxThreads; ++i) {
    // seq_cst: see the handshake at the top of the file.
    const std::uint64_t w = slots_[i].word.load(std::memory_order_seq_cst);
    if ((w & 1) && (w >> 1) != e) all_seen = false;
  }
  // acq_rel: one reclaimer advances; losers just see the new epoch.
  if (all_seen && epoch_.compare_exchange_strong(e, e + 1, std::memory_order_acq_rel)) ++e;
  std::vector<retired> to_free;
  {
    std::lock_guard<std::mutex> g(mu_);
    std::size_t keep = 0;
    for (auto& r : retired_) {
      if (r.epoch + 2 <= e)
        to_free.push_back(r);
      else
        retired_[keep++] = r;
    }
    retired_.resize(keep);
  }
  for (auto& r : to_free)
    r.del(r.p);
  return to_free.size();
}

std::size_t epoch_domain::pending() const {
  std::lock_guard<std::mutex> g(mu_);
  return retired_.size();
}

}  // namespace ueq
