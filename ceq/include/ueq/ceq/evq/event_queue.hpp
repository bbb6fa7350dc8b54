// ueq/ceq/evq/event_queue.hpp — a mailbox, a notify policy and its waiters.
//
// What it is for: the thing producers (taps, timers, user code) post events
// to and consumers block on. An event queue owns one mailbox:
//   - a CEQ (coalescing per ID; see ceq.hpp),
//   - a bitmap (one bit per ID, small ID spaces; see bitmap_mailbox.hpp), or
//   - an unbounded message queue (every message arrives; message_queue.hpp),
// a notify policy (wake every waiter, or wake one), the list of waiters
// currently blocked on it (see block_on.hpp), optional handler that a
// consumer runs over the messages it drains (dispatch()), and counters.
//
// Waking without losing: post() first publishes into the mailbox, then
// (seq_cst fence) checks for waiters; a waiter first registers, then (seq_cst
// fence) re-checks the mailbox, then parks. Whichever side comes second sees
// the other. A waiter registers in one of two places: a one-waiter slot
// (the common case: one green thread blocked on its own queue; a
// compare-and-swap, no lock, no list) or, when the slot is taken or others
// are listed, the locked list of waiters. A post that merely coalesced into
// a pending CEQ slot or set bitmap bit wakes no one: the message it merged
// into is already visible to every waiter and was announced by the post
// that created it.
//
// Wake-one: each post that creates a message wakes at most one waiter (the
// longest waiting); a woken waiter that leaves while the queue is non-empty
// passes the wakeup on (block_on does this).
//
// Tracing (runtime/trace.hpp): post() records a `post` stage, a post that
// wakes waiters a `wake`, and try_get()/drain() a `consume` per message
// taken, while the trace is on (off, each point is a relaxed load).
//
// Ownership: queues are held by std::shared_ptr. A producer keeps a
// reference for as long as it may post; the owner calls close() when done,
// which wakes every waiter (their block_on returns ECANCELED) and makes later
// posts fail with EPIPE. The memory goes when the last reference does, so a
// producer racing with close() posts into a live (closed) queue, never into
// freed memory.
//
// Thread-safety: every member may be called from any thread concurrently,
// except set_handler(), which must precede concurrent dispatch() calls.
//
// Usage:
//   auto q = ueq::event_queue::create_messages({.notify = ueq::notify_policy::wake_one});
//   (*q)->post({.id = 1, .bits = 42});   // any thread
//   ueq::event_msg m;
//   if ((*q)->try_get(m)) ...            // or block: ueq::block_on({q->get()}, deadline)
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <variant>

#include "ueq/ceq/bitmap_mailbox.hpp"
#include "ueq/ceq/ceq.hpp"
#include "ueq/ceq/event.hpp"
#include "ueq/ceq/message_queue.hpp"
#include "ueq/runtime/backoff.hpp"
#include "ueq/runtime/ilist.hpp"
#include "ueq/runtime/result.hpp"
#include "ueq/runtime/sharded_counters.hpp"
#include "ueq/runtime/trace.hpp"

namespace ueq {

enum class notify_policy : std::uint8_t {
  wake_all,  // every waiter is woken by a post that creates a message
  wake_one,  // one waiter is (EPOLLEXCLUSIVE, hand-off)
};

struct evq_options {
  notify_policy notify = notify_policy::wake_all;
  std::string name;  // for dumps and traces
};

struct evq_counters {
  std::uint64_t posts = 0;             // successful post() calls
  std::uint64_t wakeups = 0;           // waiters woken by this queue
  std::uint64_t spurious_wakeups = 0;  // woken waiters that then found nothing
  std::uint64_t timeouts = 0;          // block_on calls on it that timed out
};

class event_queue;
using event_queue_ptr = std::shared_ptr<event_queue>;

// The event queues' stages of an event's path (ueq/runtime/trace.hpp), after
// the taps' host_event and tap.
namespace trace_stages {
inline constexpr trace_stage post{2, "post"};        // a mailbox took the message
inline constexpr trace_stage wake{3, "wake"};        // the post woke waiters of the queue
inline constexpr trace_stage consume{4, "consume"};  // a consumer took the message
static_assert(post.number < wake.number && wake.number < consume.number);
}  // namespace trace_stages

namespace detail {
class evq_waiter;
struct evq_test_peer;
// One waiter's place on one queue's list (block_on.hpp makes them).
struct evq_link {
  ilist_link<evq_link> link;  // guarded by the queue's lock while linked
  evq_waiter* waiter = nullptr;
};
}  // namespace detail

class event_queue {
 public:
  static result<event_queue_ptr> create_ceq(const ceq_options& mailbox, const evq_options& = {});
  static result<event_queue_ptr> create_bitmap(std::uint32_t nbits, const evq_options& = {});
  static result<event_queue_ptr> create_messages(const evq_options& = {});
  ~event_queue();
  event_queue(const event_queue&) = delete;
  event_queue& operator=(const event_queue&) = delete;

  // Posts into the mailbox, then wakes waiters per the policy. Errors: EPIPE
  // after close(); otherwise the mailbox's (EINVAL for an ID out of range,
  // ENOMEM). For a bitmap only `id` is used; for a CEQ `bits` is merged and
  // `blob` kept; the message queue keeps the message whole.
  status post(std::uint32_t id, std::uint64_t bits = 1, std::uint64_t blob = 0) noexcept;
  status post(const event_msg& m) noexcept { return post(m.id, m.bits, m.blob); }

  // Takes one message / up to out.size() messages without blocking.
  // try_get looks at the mailbox's emptiness first, inline: a waiter finds
  // it empty twice per wait (before and after registering).
  bool try_get(event_msg& out) noexcept;
  std::size_t drain(std::span<event_msg> out) noexcept;
  // A snapshot: nothing pending in the mailbox.
  bool empty() const noexcept;

  // The handler a consumer runs for each message it drains with dispatch().
  using handler_fn = std::function<void(event_queue&, const event_msg&)>;
  void set_handler(handler_fn h) { handler_ = std::move(h); }
  // Drains up to `max` messages and runs the handler on each; returns how
  // many. Without a handler it drains nothing and returns 0.
  std::size_t dispatch(std::size_t max = ~std::size_t{0});

  // A function run after every post that creates a message (not after one
  // that only coalesced), on the posting thread, in place of waking
  // waiters: whoever set it tells its own waiters (the epoll facade raises
  // the set's pending signal with it). A queue with a hook has no waiters
  // of its own: block_on() on it fails with EINVAL. Set it before the
  // queue is shared; it must be cheap and must not block.
  using post_hook_fn = void (*)(void* ctx) noexcept;
  void set_post_hook(post_hook_fn fn, void* ctx) noexcept {
    post_hook_ = fn;
    post_hook_ctx_ = ctx;
  }
  bool hooked() const noexcept { return post_hook_ != nullptr; }

  // Stops the queue: wakes every waiter, later posts fail with EPIPE.
  // Messages already in the mailbox stay readable. Idempotent.
  void close() noexcept;
  // close() for a fork()ed child, where a thread that held the queue's lock
  // at the fork is gone and the lock stays taken: closes and returns true if
  // the lock is free, else does nothing and returns false (never waits).
  bool try_close() noexcept;
  bool closed() const noexcept { return closed_.load(std::memory_order_acquire); }

  notify_policy policy() const noexcept { return policy_; }
  const std::string& name() const noexcept { return name_; }
  // The mailbox, for what is specific to it (its counters, a CEQ's dump).
  // nullptr if the queue has a different kind of mailbox.
  ueq::ceq* as_ceq() noexcept;
  bitmap_mailbox* as_bitmap() noexcept;
  message_queue* as_messages() noexcept;

  evq_counters counters() const noexcept;
  std::size_t waiters() const noexcept {
    return nwaiters_.load(std::memory_order_relaxed) +
           (solo_.load(std::memory_order_relaxed) != nullptr);
  }
  std::string dump() const;

  // --- the waiter protocol, used by block_on (block_on.hpp) -------------
  void add_waiter(detail::evq_link* l) noexcept;
  void remove_waiter(detail::evq_link* l) noexcept;
  // The one-waiter slot, for a waiter on this queue alone. add_solo: takes
  // the slot if it is free and nobody is listed (the slot's waiter is woken
  // first, so it should be the oldest: all but a waiter listed between the
  // look and the compare-and-swap); false: use add_waiter. remove_solo:
  // empties the slot, or, if a waker claimed it, waits until that waker's
  // wake has finished with `w` (a few instructions; it never blocks).
  bool add_solo(detail::evq_waiter* w) noexcept;
  void remove_solo(detail::evq_waiter* w) noexcept;
  // Wakes one waiter that is still waiting (wake-one hand-off); true if one
  // was woken.
  bool wake_one_waiter() noexcept;
  // Wakes every registered waiter, with no message (block_on's wake_check:
  // a waiter that took the one message tells the others to look for
  // themselves).
  void wake_waiters() noexcept;
  void note_spurious() noexcept { stats_.add(kSpurious); }
  void note_timeout() noexcept { stats_.add(kTimeouts); }

 private:
  using mailbox_ptr = std::variant<std::unique_ptr<ueq::ceq>, std::unique_ptr<bitmap_mailbox>,
                                   std::unique_ptr<message_queue>>;
  event_queue(mailbox_ptr mb, const evq_options& o);
  // post() and its notify, with the trace's stages or without (the trace's
  // switch read once per post; the untraced path carries none of it).
  template <bool kTraced>
  status post_as(std::uint32_t id, std::uint64_t bits, std::uint64_t blob) noexcept;
  template <bool kTraced>
  void notify(std::uint32_t id) noexcept;
  void close_locked() noexcept ABSL_EXCLUSIVE_LOCKS_REQUIRED(lock_);
  bool take_one(event_msg& out) noexcept;  // try_get past its emptiness test
  // Records a `consume` stage per message taken (the trace is on).
  [[gnu::noinline, gnu::cold]] void trace_taken(std::span<const event_msg> taken) noexcept;
  // Takes the slot's waiter, if any: the caller then does its bookkeeping
  // and wakes it (evq_waiter::wake_claimed), in that order: once woken,
  // the waiter may return before the caller's next line.
  detail::evq_waiter* claim_solo() noexcept;
  // claim_solo, count, trace (trace_ts != 0), wake; false if the slot was
  // empty.
  bool wake_solo(std::uint32_t id, mono_ns trace_ts) noexcept;
  void wake_all_locked() noexcept ABSL_EXCLUSIVE_LOCKS_REQUIRED(lock_);
  friend struct detail::evq_test_peer;  // tests hold lock_ across a fork
  // Calls f with the mailbox, whichever kind it is: the one place that
  // tells them apart (they share the `mailbox` interface, event.hpp).
  template <class F>
  decltype(auto) visit_mailbox(F&& f) {
    switch (mb_.index()) {
      case 0:
        return f(**std::get_if<0>(&mb_));
      case 1:
        return f(**std::get_if<1>(&mb_));
      default:
        return f(**std::get_if<2>(&mb_));
    }
  }
  template <class F>
  decltype(auto) visit_mailbox(F&& f) const {
    return const_cast<event_queue*>(this)->visit_mailbox(
        [&f](const auto& m) -> decltype(auto) { return f(m); });
  }
  enum { kPosts, kWakeups, kSpurious, kTimeouts, kCount };

  mailbox_ptr mb_;
  const notify_policy policy_;
  const std::string name_;
  handler_fn handler_;
  post_hook_fn post_hook_ = nullptr;  // set before sharing; read-only after
  void* post_hook_ctx_ = nullptr;
  std::atomic<bool> closed_{false};

  // Waiters: the one-waiter slot, then an intrusive FIFO list (oldest
  // first) guarded by lock_. nwaiters_ is written under lock_ and read
  // without it by post() after its seq_cst fence (the handshake described
  // at the top). solo_ is written without a lock: set by its waiter's
  // compare-and-swap (add_solo), emptied either by that waiter (a
  // compare-and-swap back, remove_solo) or by the one waker whose exchange
  // takes it (claim_solo); the orderings are argued where they are done.
  std::atomic<detail::evq_waiter*> solo_{nullptr};
  spin_lock lock_{lock_level::event_queue};
  ilist<detail::evq_link, &detail::evq_link::link> waiters_ ABSL_GUARDED_BY(lock_);
  std::atomic<std::size_t> nwaiters_{0};
  sharded_counters<kCount, 8> stats_;
};

inline bool event_queue::empty() const noexcept {
  return visit_mailbox([](const auto& m) { return m.empty(); });
}

inline bool event_queue::try_get(event_msg& out) noexcept {
  return !empty() && take_one(out);
}

}  // namespace ueq
