// Event queues: a mailbox plus the waiters blocked on it.
//
// Locking: one spin lock per queue (lock_) guards the waiter list (waiters_,
// and every link while it is on the list) and the writes of nwaiters_.
// Nothing that can block runs under it; waking a waiter (unpark) is done
// under it, which is a few atomic operations and possibly the scheduler's
// run-queue lock. A waiter that blocks on several queues takes their locks
// one at a time, never nested.
//
// The lost-wakeup handshake (store-then-load on both sides, so seq_cst):
//   producer: publish into mailbox ; fence(seq_cst) ; load solo_, nwaiters_
//   waiter:   CAS solo_, or nwaiters_++ (under lock) ; fence(seq_cst) ;
//             check mailbox
// By the fences' total order, either the producer's load sees the waiter's
// registration (and wakes it), or the waiter's check sees the message.
//
// The one-waiter slot (solo_) has no lock: whoever empties it owns its
// waiter. A waker empties it by exchange (claim_solo) and then, alone, wakes
// that waiter; the waiter empties it by compare-and-swap when it leaves
// (remove_solo), and if it finds it emptied already, waits for its claimer's
// wake to finish (evq_waiter::await_claimer) before its stack can go. The
// list's lock gives the same guarantee to listed waiters. Model:
// tests/model/wakeup.pml.
#include "ueq/ceq/evq/event_queue.hpp"
#include "ueq/runtime/lock.hpp"

#include <cinttypes>
#include <cstdio>
#include <mutex>
#include <new>

#include "ueq/ceq/evq/block_on.hpp"
#include "ueq/runtime/trace.hpp"

namespace ueq {

result<event_queue_ptr> event_queue::create_ceq(const ceq_options& mailbox_opts,
                                                const evq_options& o) {
  auto c = ceq::create(mailbox_opts);
  if (!c) return c.error();
  event_queue_ptr q(new (std::nothrow) event_queue(std::move(c).value(), o));
  if (!q) return errno_code(ENOMEM);
  return q;
}

result<event_queue_ptr> event_queue::create_bitmap(std::uint32_t nbits, const evq_options& o) {
  auto b = bitmap_mailbox::create(nbits);
  if (!b) return b.error();
  event_queue_ptr q(new (std::nothrow) event_queue(std::move(b).value(), o));
  if (!q) return errno_code(ENOMEM);
  return q;
}

result<event_queue_ptr> event_queue::create_messages(const evq_options& o) {
  std::unique_ptr<message_queue> m(new (std::nothrow) message_queue());
  if (!m) return errno_code(ENOMEM);
  event_queue_ptr q(new (std::nothrow) event_queue(std::move(m), o));
  if (!q) return errno_code(ENOMEM);
  return q;
}

event_queue::event_queue(mailbox_ptr mb, const evq_options& o)
    : mb_(std::move(mb)), policy_(o.notify), name_(o.name) {}

event_queue::~event_queue() = default;  // no waiter can be linked: each holds a reference

ceq* event_queue::as_ceq() noexcept {
  auto* p = std::get_if<std::unique_ptr<ceq>>(&mb_);
  return p ? p->get() : nullptr;
}
bitmap_mailbox* event_queue::as_bitmap() noexcept {
  auto* p = std::get_if<std::unique_ptr<bitmap_mailbox>>(&mb_);
  return p ? p->get() : nullptr;
}
message_queue* event_queue::as_messages() noexcept {
  auto* p = std::get_if<std::unique_ptr<message_queue>>(&mb_);
  return p ? p->get() : nullptr;
}

status event_queue::post(std::uint32_t id, std::uint64_t bits, std::uint64_t blob) noexcept {
  // acquire: a post that sees the queue open is ordered after nothing in
  // particular; close() only promises that posts which see it closed fail.
  if (closed_.load(std::memory_order_acquire)) [[unlikely]]
    return status(EPIPE);
  if (trace_enabled()) [[unlikely]]
    return post_as<true>(id, bits, blob);
  return post_as<false>(id, bits, blob);
}

template <bool kTraced>
status event_queue::post_as(std::uint32_t id, std::uint64_t bits, std::uint64_t blob) noexcept {
  // Trace: the post's timestamp is taken before the mailbox publishes it,
  // so a consumer that takes the message at once still stamps it later.
  const mono_ns trace_ts = kTraced ? monotonic_now() : 0;
  bool coalesced = false;  // merged into a pending message: nobody to wake
  const status s = visit_mailbox([&](auto& m) { return m.post({id, bits, blob}, coalesced); });
  if (!s.ok()) return s;
  stats_.add(kPosts);
  if (kTraced)
    trace_at(trace_ts, trace_stages::post, id, coalesced ? bits | kTraceCoalesced : bits,
             reinterpret_cast<std::uintptr_t>(this));
  if (!coalesced) {
    if (post_hook_)
      post_hook_(post_hook_ctx_);  // the hook's owner wakes its own waiters
    else
      notify<kTraced>(id);
  }
  return {};
}

[[gnu::always_inline]] inline detail::evq_waiter* event_queue::claim_solo() noexcept {
  // relaxed peek first: an empty slot costs no locked instruction. The
  // callers' own orderings (notify's fence, close's fence) say why an empty
  // slot seen here means its next waiter will see what they published.
  if (!solo_.load(std::memory_order_relaxed)) return nullptr;
  // acq_rel: acquire pairs with add_solo's release, so the waiter's reset()
  // of its parker is done before we wake it; the exchange makes us the one
  // party that owns (and wakes) the waiter.
  return solo_.exchange(nullptr, std::memory_order_acq_rel);
}

// Inline: notify()'s untraced instance passes trace_ts 0, and the test
// folds away.
[[gnu::always_inline]] inline bool event_queue::wake_solo(std::uint32_t id,
                                                          mono_ns trace_ts) noexcept {
  detail::evq_waiter* w = claim_solo();
  if (!w) return false;
  // Count and trace before the wake: once woken, the waiter may return
  // (and its caller stop the trace) before our next line.
  stats_.add(kWakeups);
  if (trace_ts)
    trace_at(trace_ts, trace_stages::wake, id, 1, reinterpret_cast<std::uintptr_t>(this));
  w->wake_claimed(this);
  return true;
}

template <bool kTraced>
void event_queue::notify(std::uint32_t id) noexcept {
  // seq_cst fence: the producer half of the handshake at the top. Our
  // mailbox publication is ordered before the loads of solo_ and nwaiters_.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  const bool listed = nwaiters_.load(std::memory_order_relaxed) != 0;
  if (!listed && !solo_.load(std::memory_order_relaxed)) return;
  // Trace: stamped before the first unpark, so the woken consumer's
  // "consume" comes after it in time.
  const mono_ns trace_ts = kTraced ? monotonic_now() : 0;
  if (!listed) {
    (void)wake_solo(id, trace_ts);
    return;
  }
  // The slot under the list's lock too: a waiter this post wakes cannot
  // register again and be woken twice by it (a listed one cannot leave the
  // list before we let go; the slot's finds waiters listed and must wait
  // for the lock to join them). The slot's waiter is woken last, after the
  // bookkeeping (see above); listed ones cannot leave before we unlock.
  lock_guard<spin_lock> g(lock_);
  detail::evq_waiter* solo = claim_solo();
  std::uint64_t woken = solo ? 1 : 0;
  if (!(solo && policy_ == notify_policy::wake_one))
    for (detail::evq_link* l = waiters_.front(); l; l = waiters_.next(l)) {
      if (l->waiter->wake(this)) {
        ++woken;
        if (policy_ == notify_policy::wake_one) break;
      }
    }
  if (woken) {
    stats_.add(kWakeups, woken);
    if (kTraced)
      trace_at(trace_ts, trace_stages::wake, id, woken, reinterpret_cast<std::uintptr_t>(this));
  }
  if (solo) solo->wake_claimed(this);
}

bool event_queue::wake_one_waiter() noexcept {
  const mono_ns trace_ts = trace_enabled() ? monotonic_now() : 0;
  // A hand-off is for no particular message: id kTraceNoId.
  if (wake_solo(kTraceNoId, trace_ts)) return true;
  lock_guard<spin_lock> g(lock_);
  for (detail::evq_link* l = waiters_.front(); l; l = waiters_.next(l))
    if (l->waiter->wake(this)) {
      // Under the lock: the waiter cannot leave before this.
      stats_.add(kWakeups);
      if (trace_ts)
        trace_at(trace_ts, trace_stages::wake, kTraceNoId, 1,
                 reinterpret_cast<std::uintptr_t>(this));
      return true;
    }
  return false;
}

void event_queue::wake_waiters() noexcept {
  // seq_cst fence: whatever the caller changed before (ueq::io's `taken`
  // count) is ordered before the peek at solo_, as in notify(); a slot
  // waiter that registers later sees it in its re-check (wake_check).
  std::atomic_thread_fence(std::memory_order_seq_cst);
  lock_guard<spin_lock> g(lock_);  // the slot too: no double wake (notify)
  (void)wake_solo(kTraceNoId, 0);
  wake_all_locked();
}

bool event_queue::add_solo(detail::evq_waiter* w) noexcept {
  if (nwaiters_.load(std::memory_order_relaxed) != 0) return false;  // keep FIFO order
  detail::evq_waiter* none = nullptr;
  // seq_cst: the registration of the handshake at the top (the caller's
  // seq_cst fence follows it before the re-check); release also publishes
  // the waiter's reset parker to whoever claims it.
  return solo_.compare_exchange_strong(none, w, std::memory_order_seq_cst,
                                       std::memory_order_relaxed);
}

void event_queue::remove_solo(detail::evq_waiter* w) noexcept {
  // Still ours: take it back (acq_rel: a failed CAS means a claimer's
  // exchange came first). Only a claimer empties the slot besides us, and
  // nobody else can put `w` back, so a load that sees another value means
  // claimed.
  detail::evq_waiter* mine = w;
  if (solo_.load(std::memory_order_relaxed) == w &&
      solo_.compare_exchange_strong(mine, nullptr, std::memory_order_acq_rel,
                                    std::memory_order_relaxed))
    return;
  w->await_claimer();
}

void event_queue::wake_all_locked() noexcept {
  for (detail::evq_link* l = waiters_.front(); l; l = waiters_.next(l))
    if (l->waiter->wake(this)) stats_.add(kWakeups);
}

void event_queue::add_waiter(detail::evq_link* l) noexcept {
  lock_guard<spin_lock> g(lock_);
  waiters_.push_back(l);
  // relaxed under the lock: the waiter's seq_cst fence after add_waiter()
  // orders this store before its mailbox re-check (handshake at the top).
  nwaiters_.store(nwaiters_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

void event_queue::remove_waiter(detail::evq_link* l) noexcept {
  lock_guard<spin_lock> g(lock_);
  waiters_.remove(l);
  nwaiters_.store(nwaiters_.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
}

void event_queue::trace_taken(std::span<const event_msg> taken) noexcept {
  const mono_ns now = monotonic_now();
  for (const event_msg& m : taken)
    trace_at(now, trace_stages::consume, m.id, m.bits, reinterpret_cast<std::uintptr_t>(this));
}

bool event_queue::take_one(event_msg& out) noexcept {
  if (!visit_mailbox([&](auto& m) { return m.get(out); })) return false;
  if (trace_enabled()) [[unlikely]]
    trace_taken({&out, 1});
  return true;
}

std::size_t event_queue::drain(std::span<event_msg> out) noexcept {
  const std::size_t n = visit_mailbox([&](auto& m) { return m.get_batch(out); });
  if (trace_enabled() && n) [[unlikely]]
    trace_taken(out.first(n));
  return n;
}

std::size_t event_queue::dispatch(std::size_t max) {
  if (!handler_) return 0;
  constexpr std::size_t kBatch = 32;  // messages drained per mailbox call
  std::size_t done = 0;
  event_msg batch[kBatch];
  while (done < max) {
    const std::size_t want = std::min(kBatch, max - done);
    const std::size_t n = drain({batch, want});
    for (std::size_t i = 0; i < n; ++i)
      handler_(*this, batch[i]);
    done += n;
    if (n < want) break;
  }
  return done;
}

void event_queue::close() noexcept {
  lock_guard<spin_lock> g(lock_);
  close_locked();
}

bool event_queue::try_close() noexcept {
  if (!lock_.try_lock()) return false;
  close_locked();
  lock_.unlock();
  return true;
}

void event_queue::close_locked() noexcept {
  // release: posts that read true fail; waiters woken below re-check it.
  // Under lock_, so a waiter that add_waiter()s after the exchange is on
  // the list when its re-check of closed() runs, or sees true there.
  if (closed_.exchange(true, std::memory_order_acq_rel)) return;
  wake_all_locked();
  // seq_cst fence: closed_ (above) is ordered before the load of solo_, as
  // a post's publication is before notify's (the handshake at the top): a
  // slot waiter that registers after this load sees closed_ in its
  // re-check.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  (void)wake_solo(kTraceNoId, 0);
}

evq_counters event_queue::counters() const noexcept {
  return {stats_.read(kPosts), stats_.read(kWakeups), stats_.read(kSpurious),
          stats_.read(kTimeouts)};
}

std::string event_queue::dump() const {
  static const char* const kKinds[] = {"ceq", "bitmap", "messages"};
  const evq_counters c = counters();
  char line[256];
  std::snprintf(
      line, sizeof line,
      "event_queue '%s': mailbox=%s notify=%s closed=%d waiters=%zu empty=%d posts=%" PRIu64
      " wakeups=%" PRIu64 " spurious=%" PRIu64 " timeouts=%" PRIu64 "\n",
      name_.c_str(), kKinds[mb_.index()],
      policy_ == notify_policy::wake_all ? "wake_all" : "wake_one", closed(), waiters(), empty(),
      c.posts, c.wakeups, c.spurious_wakeups, c.timeouts);
  std::string out = line;
  if (const auto* c = std::get_if<0>(&mb_)) out += (*c)->dump(8);  // the CEQ's slots
  return out;
}

}  // namespace ueq
