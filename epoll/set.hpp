// epoll/set.hpp (internal) — one epoll set: its entries, its ready list,
// its pending signal and its harvest; the kernel calls ueq makes for itself.
//
// The facade's files, by job:
//   set.hpp        a set (epoll_set::impl) and the helpers it uses
//   registry.hpp   the process's sets: fd numbers -> sets, target fd -> the
//   registry.cpp   sets that hold it, the nesting graph, the identity of
//                  numbers (asked of the kernel), close/dup bookkeeping, and
//                  fork (sets handed to the kernel)
//   ctl_wait.cpp   epoll_set: create, ctl in Linux's error order, wait
//   c_api.cpp      the C ABI: copies in and out of the caller's memory,
//                  errno, the calls passed through to the kernel
//
// Locking (outermost first; the whole order, checked in debug builds, is in
// ueq/runtime/lock_order.hpp):
//   reg().mu       the registry: epoll fd numbers -> sets, target fd -> the
//                  sets that hold it, and the nesting checks of ADD.
//   impl::mu       one per set: its entries, its ready list, the flags of
//                  every entry. Held across the tap calls of ctl (which take
//                  the tap service's per-fd locks) and the readiness probe.
//   tap service / event queue locks (leaves).
// Tap dispatch (the host poller's thread) posts into a set's CEQ without
// any of these locks (under the tap's slot lock); the CEQ's post hook
// touches atomics and the set's eventfd, and posts into the parents'
// mailboxes under the set's parents_lock (taken child before parent; the
// nesting graph is acyclic).
// A set's lock is never held while taking the registry lock.
//
// The path of an event: host readiness -> the fd's tap posts {fd, bits} into
// the set's CEQ (coalescing) -> the post hook makes the set's eventfd
// readable -> a waiter wakes (asleep in the host epoll as the leader of its
// poll, in ppoll({eventfd, host fd}), or parked on wakeq) ->
// harvest: CEQ messages put entries on the ready list; the entries at its
// front are probed with poll(), a batch per call (Linux re-polls every item
// it reports), and those still ready are reported, up to maxevents, through
// a fixed staging buffer; level-triggered ones go to the back.
#pragma once

#include "ueq/epoll/epoll.hpp"
#include "ueq/runtime/fork.hpp"
#include "ueq/runtime/ilist.hpp"
#include "ueq/runtime/lock.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <absl/container/flat_hash_map.h>
#include <absl/container/flat_hash_set.h>
#include <absl/container/node_hash_map.h>

#include <atomic>
#include <climits>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#include "ueq/ceq/evq/block_on.hpp"
#include "ueq/ceq/evq/event_queue.hpp"
#include "ueq/epoll.h"
#include "ueq/runtime/fd.hpp"
#include "ueq/runtime/parker.hpp"
#include "ueq/runtime/scratch.hpp"
#include "ueq/taps/tap.hpp"

namespace ueq {
namespace epoll_internal {

constexpr int kMaxNests = 4;  // Linux's EP_MAX_NESTS
// How many live sets watch the host poller's fd in the kernel (see create).
constexpr int kHostWatchers = 8;
// tap_service::poll() dispatches at most tap_service::kPollBatch host events
// per call (a backend may return fewer at once: epoll's main instance gives
// 128). wait() polls again after a batch of at least kHostBatchFull events
// (more may be waiting; a backend with smaller batches is only drained less
// at once), at most kMaxHostBatches times.
constexpr std::size_t kHostBatchFull = 64;
constexpr int kMaxHostBatches = 64;
constexpr int kMaxEvents = INT_MAX / static_cast<int>(sizeof(epoll_event));
constexpr std::uint32_t kExclusiveOk =
    EPOLLIN | EPOLLOUT | EPOLLERR | EPOLLHUP | EPOLLWAKEUP | EPOLLET | EPOLLEXCLUSIVE;
// What a tap can watch, from an epoll mask.
inline std::uint32_t tap_filter(std::uint32_t events) {
  std::uint32_t f = kTapError | kTapHangup;
  if (events & (EPOLLIN | EPOLLRDNORM | EPOLLRDBAND)) f |= kTapReadable;
  if (events & (EPOLLOUT | EPOLLWRNORM | EPOLLWRBAND)) f |= kTapWritable;
  if (events & EPOLLPRI) f |= kTapPriority;
  if (events & EPOLLRDHUP) f |= kTapRdhup;
  return f;
}
// The poll(2) bits an entry reports: its requested events plus ERR/HUP.
inline std::uint32_t report_mask(std::uint32_t events) {
  return (events & ~(EPOLLET | EPOLLONESHOT | EPOLLEXCLUSIVE | EPOLLWAKEUP)) | EPOLLERR | EPOLLHUP;
}

// Opt-in diagnostics (UEQ_LOG=stderr or a path); silent otherwise.
inline void log(const char* fmt, ...) {
  static FILE* out = [] {
    const char* v = std::getenv("UEQ_LOG");
    if (!v || !*v) return static_cast<FILE*>(nullptr);
    if (!std::strcmp(v, "stderr")) return stderr;
    return std::fopen(v, "ae");
  }();
  if (!out) return;
  va_list ap;
  va_start(ap, fmt);
  std::fprintf(out, "ueq-epoll: ");
  std::vfprintf(out, fmt, ap);
  std::fputc('\n', out);
  va_end(ap);
  std::fflush(out);
}

// UEQ_LOG_LEVEL=2 (with UEQ_LOG): every ctl and every wait's result are
// logged too, not only sets made and closed and entries added.
inline bool log_verbose() {
  static const bool on = [] {
    const char* v = std::getenv("UEQ_LOG");
    const char* level = std::getenv("UEQ_LOG_LEVEL");
    return v && *v && level && std::atoi(level) >= 2;
  }();
  return on;
}

// The kernel's epoll calls, made as system calls: the ones ueq makes for
// itself and the ones it passes through must never reach an interposed
// epoll_* of the preload library (a fork() handler, for one, runs with no
// guard). Each returns -1 with errno set on failure, as the C library does.
inline int k_epoll_create1(int flags) {
  return static_cast<int>(::syscall(SYS_epoll_create1, flags));
}
inline int k_epoll_ctl(int ep, int op, int fd, const epoll_event* ev) {
  return static_cast<int>(::syscall(SYS_epoll_ctl, ep, op, fd, ev));
}
// Waits: epoll_pwait_until() (ueq/runtime/fd.hpp), a system call too.

// epoll_set::ctl without its fast MOD (modify_registered): Linux's error
// order, every op. event is trusted (the C API has copied it in).
status ctl_full(epoll_set& self, int op, int fd, const epoll_event* event);

// The set whose waiter this thread is, while it leads the host poll
// (impl::lead_host_poll): its own dispatch needs no wake.
inline thread_local const epoll_set::impl* tl_leading = nullptr;

}  // namespace epoll_internal

// The facade's files name these without qualification.
using namespace epoll_internal;

struct epoll_set::impl {
  struct entry {
    int fd = -1;
    std::uint32_t events = 0;  // as given, flags included (ERR|HUP added)
    epoll_data_t data{};
    tap_handle tap;
    bool disabled = false;   // EPOLLONESHOT entry that has fired
    bool queued = false;     // on the ready list
    ilist_link<entry> link;  // the ready list, or a harvest's own lists
    impl* child = nullptr;   // the target, if it is one of our sets (nesting graph edge)
    dev_t dev = 0;           // the file registered (to notice a number closed behind
    ino_t ino = 0;           // our back and reused for another file)
    // (number, file) is in the identity set (registry::ident), which then
    // tells whether the number still names the file, where dev and ino
    // cannot (files that share an inode).
    bool identified = false;
    // The target is an epoll fd not of ours (never identified: see ctl).
    bool epoll_file = false;
    // A regular file that can be polled (procfs, sysfs) may report a change
    // (EPOLLPRI|EPOLLERR) to one poll only: the host's poll that dispatched
    // the event takes it, and the probe at report time no longer sees it.
    // For such entries the bits the host saw are kept here until reported.
    bool keeps_posted = false;
    std::uint32_t posted = 0;
  };

  tap_service* svc = nullptr;
  event_queue_ptr q;  // CEQ mailbox, slot = target fd
  // Where uthread waiters park (a plain thread sleeps in ppoll on evfd
  // instead): a one-bit mailbox posted whenever evfd is made readable.
  event_queue_ptr wakeq;
  // The program's epoll fd is a real kernel epoll fd (so read/write fail
  // with EINVAL, F_GETFL says O_RDWR, and poll/select/epoll can watch it)
  // that watches one hidden eventfd, level-triggered: the set makes the
  // eventfd readable while events are pending. The eventfd lives at a high
  // number (hide_fd) and dies with the set.
  std::atomic<int> epfd{-1};          // an open number of the program's epoll fd
  int evfd = -1;                      // the hidden eventfd
  std::atomic<bool> signaled{false};  // evfd has been made readable
  std::atomic<int> writing{0};        // post_hook()s inside their write (settle())
  std::atomic<bool> written{false};   // a write has ended since the last drain
  // Waiters of this set asleep in the host poll (lead_host_poll); a
  // post_hook() that signals wakes the host poll while there are any.
  std::atomic<int> host_sleepers{0};
  // Plain-thread waiters that do not lead the host poll sleep in sleep_ep
  // (standby()), a hidden epoll fd made on first need that watches, both
  // edge-triggered, the set's bell (an eventfd rung to wake one of them)
  // and the tap service's role hand-off fd (EPOLLEXCLUSIVE: a hand-off
  // wakes one sleeper among all sets). A kernel epoll wait queues its
  // sleepers exclusively, so one edge wakes one of them: one event wakes
  // one waiter, as Linux's epoll_wait does. standbys counts them (from
  // before they re-check signaled until they wake); the handshake with
  // post_hook() is that of host_sleepers (tests/model/standby.pml).
  std::atomic<int> standbys{0};
  // 1 while the tap service's deputy (standby()) is a waiter of this set:
  // asleep in ppoll() on the set's eventfd and the host poller's fd, it
  // wakes for a post by itself, so wake_one() rings no bell for it.
  std::atomic<int> deputies{0};
  std::atomic<int> sleep_ep{-1};
  int bell = -1;  // written before sleep_ep is published (release)
  // Handed to the kernel (materialize(), at fork): epfd holds the entries
  // itself and every ctl and wait passes through to it. Set once, under
  // reg().mu and mu; read without them by waiters already inside wait()
  // (release/acquire: the entries were registered before it reads true).
  std::atomic<bool> native{false};
  // fork_generation() when the set was made: a fork()ed child
  // cannot use its parent's sets (their taps live in the parent's poller).
  std::uint64_t fork_gen = 0;
  // Sets that hold this one, and the fd number they hold it under. A set
  // nested in another of ours is not tapped through the host (our epoll fd
  // watches the host's fd, which would make a kernel-level cycle): it posts
  // into its parents' mailboxes itself when it becomes pending.
  spin_lock parents_lock{lock_level::epoll_parents};
  std::vector<std::pair<impl*, int>> parents ABSL_GUARDED_BY(parents_lock);
  ~impl() {
    if (evfd >= 0) ::close(evfd);
    if (const int ep = sleep_ep.load(std::memory_order_relaxed); ep >= 0) {
      ::close(ep);
      ::close(bell);
    }
  }

  os_mutex mu{lock_level::epoll_set};
  absl::node_hash_map<int, entry> entries ABSL_GUARDED_BY(mu);
  using entry_list = ilist<entry, &entry::link>;
  entry_list ready ABSL_GUARDED_BY(mu);
  std::vector<int> numbers;  // epoll fd numbers naming this set; guarded by reg().mu
  // epfd watches the host poller's fd (see create()). Written under
  // reg().mu; wait() reads it without (relaxed: a stale true only costs
  // taking the lock to find it false).
  std::atomic<bool> watches_host{false};
  bool dead ABSL_GUARDED_BY(mu) = false;  // torn down: every ctl fails

  // --- ready list (under mu) ---
  void enqueue(entry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (e.queued) return;
    e.queued = true;
    ready.push_back(&e);
  }
  void dequeue(entry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (!e.queued) return;
    ready.remove(&e);
    e.queued = false;
  }

  // --- the eventfd that makes the set pollable ---
  // Called on the posting (tap dispatch) thread for every message-creating
  // post, after the post. seq_cst exchange (release is what settle() needs;
  // it pairs with settle()'s exchange): the first post after a clear writes.
  static void post_hook(void* ctx) noexcept {
    auto* self = static_cast<impl*>(ctx);
    if (self->signaled.exchange(true, std::memory_order_seq_cst)) return;
    post_hook_signaled(self);
  }
  // The rest of post_hook(), by the caller whose exchange set signaled.
  static void post_hook_signaled(impl* self) noexcept {
    // The write is announced before it is made (writing) and recorded after
    // it (written), for settle()'s shortcut. seq_cst increment: before the
    // write in every thread's view, so a waiter that the write woke sees it.
    self->writing.fetch_add(1, std::memory_order_seq_cst);
    const std::uint64_t one = 1;
    (void)::write(self->evfd, &one, sizeof one);
    (void)self->wakeq->post(0);
    self->written.store(true, std::memory_order_release);
    // release: a settle() that reads writing == 0 (acquire) after this
    // decrement sees written set.
    self->writing.fetch_sub(1, std::memory_order_release);
    self->wake_one();
    // Newly pending: tell the sets that hold us (each is one level up; the
    // graph is acyclic, so these locks are taken bottom-up only).
    lock_guard<spin_lock> g(self->parents_lock);
    for (auto& [parent, fd] : self->parents)
      (void)parent->q->post(static_cast<std::uint32_t>(fd), EPOLLIN);
  }
  // Wakes one sleeping waiter of this set: the one in the host poll if any
  // (it harvests when its poll returns), else one in standby. seq_cst
  // loads, after the caller's seq_cst write of signaled (post_hook()'s
  // exchange, or a harvest's settle(), which leaves it set): pair with
  // lead_host_poll()'s and standby()'s increments, then their loads of
  // signaled. Of the two, at least one sees the other: the waiter does not
  // sleep, or it is woken here. Not when this thread leads the host poll
  // for this set, dispatching: it harvests next anyway.
  void wake_one() noexcept {
    if (tl_leading == this) return;
    if (host_sleepers.load(std::memory_order_seq_cst) > 0) {
      svc->wake();
    } else if (deputies.load(std::memory_order_seq_cst) > 0) {
      // The deputy wakes on the eventfd, readable from before this call
      // (the caller set signaled and wrote it, or found it set) until the
      // harvest that takes the events; one that is leaving harvests next,
      // or wakes another if it returns without (leave_unharvested()).
    } else if (standbys.load(std::memory_order_seq_cst) > 0) {
      const std::uint64_t one = 1;
      (void)::write(bell, &one, sizeof one);
    }
  }
  // After a harvest (under mu): keep the eventfd readable while anything is
  // pending, clear it otherwise. Drain the eventfd first, then clear the
  // flag, then re-check the CEQ (tests/model/settle.pml). The other order
  // loses a post: one between the clear and the read writes, the read
  // swallows it, and the flag stays set over an empty eventfd.
  //  - A post_hook() whose exchange comes before ours in the flag's
  //    modification order found it set and did not write; our exchange
  //    (acq_rel, an RMW: it reads that post_hook's release exchange or a
  //    later one) makes its CEQ post visible to the re-check, which
  //    signals again.
  //  - A post_hook() whose exchange comes after ours finds the flag clear
  //    and writes; its write follows our read, so the eventfd stays readable.
  //  - The shortcut (no read, no exchange) needs more than a clear flag: a
  //    post_hook() that set the flag before an earlier settle()'s exchange
  //    may write after that settle()'s read, leaving the eventfd readable
  //    with nothing pending, and the next settle() must drain it, or every
  //    wait would return to an empty harvest until its timeout. So it is
  //    taken only when no write is announced (writing, read first) and none
  //    has ended since the last drain (written): the common idle wait then
  //    makes no system call here.
  //  - Pending: post_hook() signals the eventfd, and wakeq is posted too. A
  //    uthread waiter may have taken a stale wakeq bit, and a post that
  //    found the flag set posted nothing new. A sleeping plain-thread waiter
  //    is woken (one): this harvest leaves events for another, as Linux
  //    wakes the next waiter when events remain after a harvest.
  // `leftover` (after a harvest): a set already signaled wakes one more
  // waiter. A MOD passes false: its entry is only queued to be probed (it
  // may not be ready), so it wakes as a new post does, on the flag's change.
  void settle(bool leftover = true) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    const bool pending = !ready.empty() || !q->empty();
    if (pending) {
      // seq_cst: the write wake_one() orders its loads after (a no-op
      // exchange when already set; post_hook() then does nothing more).
      if (signaled.exchange(true, std::memory_order_seq_cst)) {
        if (leftover) wake_one();
      } else {
        post_hook_signaled(this);
      }
      (void)wakeq->post(0);
      return;
    }
    // acquire loads: pair with post_hook()'s release decrement and store.
    if (writing.load(std::memory_order_acquire) == 0 && !signaled.load(std::memory_order_acquire) &&
        !written.load(std::memory_order_acquire))
      return;
    written.store(false,
                  std::memory_order_relaxed);  // before the read: a later write sets it again
    std::uint64_t v;
    (void)::read(evfd, &v, sizeof v);
    (void)signaled.exchange(false, std::memory_order_acq_rel);
    if (!q->empty()) post_hook(this);
  }

  // EPOLL_CTL_MOD of entry e (under mu): the new mask and data, a spent
  // EPOLLONESHOT entry re-armed, the tap told which bits to post, and the
  // entry put on the ready list, where the harvest's probe evaluates its
  // readiness (Linux re-polls the file at MOD; the probe does it at report
  // time). A level-triggered entry lets the host watch more than it asks
  // (no host call unless the mask grows): a post of its bits when another
  // bit's edge fired is only probed and reported if ready, as Linux would.
  // An edge-triggered entry's posts are its edges, so the host watches
  // exactly its mask (a host call when that changes).
  status modify(entry& e, const epoll_event& ev) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    // The tap's filter and mode follow the mask: no call when they stay (a
    // ONESHOT entry re-armed with its mask, the common MOD).
    if (e.tap &&
        (tap_filter(ev.events) != tap_filter(e.events) || ((ev.events ^ e.events) & EPOLLET)))
      if (status s = svc->refilter(e.tap, tap_filter(ev.events), !(ev.events & EPOLLET)); !s.ok())
        return s;
    e.events = ev.events | EPOLLERR | EPOLLHUP;
    e.data = ev.data;
    e.disabled = false;
    e.posted = 0;  // the file is polled afresh
    enqueue(e);
    settle(false);
    return {};
  }

  // EPOLL_CTL_MOD of the entry for the file fd names now, in one system call
  // (identity_probe). done is false when the full path must answer: the
  // number names no file a set holds, this set holds no such entry, or a
  // flag rule applies. event may be any pointer: EFAULT if unreadable.
  status modify_registered(int fd, const epoll_event* event, bool& done);

  // Probes an entry's readiness now (poll with no timeout): the bits it
  // would report, 0 if none or if the fd is gone. A nested set of ours is
  // ready when its hidden eventfd is.
  static std::uint32_t probe(const entry& e) {
    pollfd p{e.child ? e.child->evfd : e.fd, static_cast<short>(report_mask(e.events) & 0xffff), 0};
    const std::uint32_t events = e.events;
    if (::poll(&p, 1, 0) != 1 || (p.revents & POLLNVAL)) return 0;
    return static_cast<std::uint32_t>(p.revents) & report_mask(events);
  }

  // Moves CEQ messages onto the ready list (under mu), kDrainBatch per drain.
  static constexpr std::size_t kDrainBatch = 64;
  void drain_mailbox() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (q->empty()) return;                // the common idle case, without a batch's set-up
    scratch<event_msg, kDrainBatch> msgs;  // filled by drain(): no zero-fill per harvest
    while (std::size_t n = q->drain(msgs.span())) {
      for (std::size_t i = 0; i < n; ++i) {
        auto it = entries.find(static_cast<int>(msgs[i].id));
        if (it == entries.end() || it->second.disabled) continue;  // stale, or ONESHOT spent
        entry& e = it->second;
        if (e.keeps_posted) e.posted |= static_cast<std::uint32_t>(msgs[i].bits);
        enqueue(e);
      }
      if (n < kDrainBatch) break;  // drained
    }
  }

  // Moves every entry of `l` (entries off the ready list, linked through
  // the same link) to the front or the back of the ready list, in order.
  void requeue_front(entry_list& l) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    mark_queued(l);
    ready.splice_front(l);
  }
  void requeue_back(entry_list& l) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    mark_queued(l);
    ready.splice_back(l);
  }
  static void mark_queued(const entry_list& l) {
    for (entry* e = l.front(); e; e = entry_list::next(e))
      e->queued = true;
  }

  // Where a harvest's results go: `sink` takes n events and returns how many
  // it took (all of them, or the leading ones that reached the caller's
  // buffer before it stopped being writable).
  using sink_fn = int (*)(const epoll_event* events, int n, void* ctx);
  static constexpr int kProbeBatch = 256;  // pollfds probed per poll() call

  // Reports up to `limit` ready entries (under mu), probing each at the
  // moment of reporting (one poll() per batch), and rotating level-triggered
  // ones to the back of the list after the harvest, so none is reported
  // twice in one result.
  //
  // Without a sink the results are written to buf, which has room for
  // `limit`. With one, buf is a staging area: each time it is full, and at
  // the end, the sink takes its contents, so a result of any size passes
  // through storage of a fixed size. Events the sink does not take are put
  // back as they were (to the front of the list, a ONESHOT entry re-armed),
  // as Linux puts an item back when copying it to the caller faults, and the
  // harvest stops there: it returns how many were taken, or -1 if none
  // were and the first hand-over failed.
  int harvest(std::span<epoll_event> buf, int limit, sink_fn sink = nullptr, void* ctx = nullptr)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    drain_mailbox();
    int total = 0;     // results taken (or, without a sink, written to buf)
    entry_list again;  // level-triggered entries reported: back of the list at the end
    bool stop = false;
    while (total < limit && !ready.empty() && !stop) {
      // Fill one stretch of buf.
      epoll_event* out = sink ? buf.data() : buf.data() + total;
      const int cap = static_cast<int>(std::min<std::size_t>(
          static_cast<std::size_t>(limit - total), sink ? buf.size() : buf.size() - total));
      int n = 0;
      entry_list reported;  // this stretch's entries, in the order of out
      while (n < cap && !ready.empty()) {
        // Take as many from the front as could still fit, probe them in one
        // poll() call, report the ready ones in list order.
        pollfd pfds[kProbeBatch];
        int m = 0;
        for (entry* e = ready.front(); e && m < cap - n && m < kProbeBatch; e = entry_list::next(e))
          pfds[m++] = {e->child ? e->child->evfd : e->fd,
                       static_cast<short>(report_mask(e->events) & 0xffff), 0};
        if (::poll(pfds, static_cast<nfds_t>(m), 0) < 0) {
          stop = true;  // report what this harvest has; the rest stay listed
          break;
        }
        entry* e = ready.front();
        for (int i = 0; i < m; ++i) {
          entry* const next = entry_list::next(e);
          const std::uint32_t mask = report_mask(e->events);
          std::uint32_t bits =
              (pfds[i].revents & POLLNVAL) ? 0 : static_cast<std::uint32_t>(pfds[i].revents) & mask;
          if (e->keeps_posted) {
            bits |= e->posted & mask;
            e->posted = 0;
          }
          dequeue(*e);
          if (bits) {  // else no longer ready: Linux drops it too
            out[n].events = bits;
            out[n].data = e->data;
            ++n;
            reported.push_back(e);
            if (e->events & EPOLLONESHOT) e->disabled = true;
          }
          e = next;
        }
      }
      const int taken = sink && n > 0 ? std::clamp(sink(out, n, ctx), 0, n) : n;
      // The taken ones are final; the rest go back as they were.
      for (int i = 0; i < taken; ++i) {
        entry* const e = reported.pop_front();
        if (!(e->events & (EPOLLONESHOT | EPOLLET))) again.push_back(e);
      }
      total += taken;
      if (taken < n) {
        int i = taken;
        for (entry* r = reported.front(); r; r = entry_list::next(r), ++i) {
          r->disabled = false;
          if (r->keeps_posted) r->posted = out[i].events;
        }
        requeue_front(reported);
        if (total == 0) total = -1;
        break;
      }
    }
    requeue_back(again);
    settle();
    return total;
  }

  // epoll_wait: harvests up to `limit` events into buf (and the sink, as
  // harvest() does), blocking until the deadline while there are none.
  // `number` is the fd the program called with (-1: none, the C++ API):
  // before it blocks, wait() checks that the number still names this set
  // (ESTALE if not: it was closed behind ueq's back and reused).
  result<int> wait(int number, std::span<epoll_event> buf, int limit, mono_ns deadline,
                   const sigset_t* sigmask, sink_fn sink, void* ctx);
  // A plain-thread waiter's sleep in the host poll (see wait()).
  enum class lead {
    polled,  // it polled (or found the set pending): harvest again
    others,  // the host is polled by a poller thread or by parked threads
    busy,    // another thread polls the host now
  };
  // An error is the host poll's (EINTR for a signal). A poll that ends
  // while other threads wait for it sets handed: the caller hands it off
  // after its harvest (tap_service::poll's handoff_due).
  result<lead> lead_host_poll(mono_ns deadline, const sigset_t* sigmask, bool& handed) {
    if (svc->has_poller_thread() || parkers_poll_host()) return lead::others;
    // seq_cst increment, then seq_cst load of signaled: pairs with
    // wake_one() (tests/model/settle.pml, -DLEADER). A post_hook() whose
    // exchange comes first is seen here (no sleep); one whose exchange
    // comes later sees the increment and wakes the host poll. (A set handed
    // to the kernel at a fork has signaled set, and its host poll woken.)
    host_sleepers.fetch_add(1, std::memory_order_seq_cst);
    if (signaled.load(std::memory_order_seq_cst) || native.load(std::memory_order_acquire)) {
      host_sleepers.fetch_sub(1, std::memory_order_seq_cst);
      return lead::polled;  // pending already: harvest
    }
    bool polled = false;
    tl_leading = this;
    bool due = false;
    auto r = svc->poll(deadline, sigmask, polled, &due);
    tl_leading = nullptr;
    // Polled: an earlier hand-off is spent, and this poll's is ours to
    // pass. Busy: the poller hands off when it ends (the waiters stay
    // counted until then), so ours need not go on.
    handed = due;
    host_sleepers.fetch_sub(1, std::memory_order_seq_cst);
    if (!polled) return lead::busy;
    if (!r) return r.error();
    return lead::polled;
  }

  // The hidden epoll fd standby() sleeps in (see sleep_ep), made on first
  // call; -1 if it cannot be (EMFILE, ENOMEM).
  int sleep_fd() {
    // acquire: pairs with the release store below (bell is set by then).
    int ep = sleep_ep.load(std::memory_order_acquire);
    if (ep >= 0) return ep;
    tap_service::inside_ueq in;  // a handler's close meanwhile defers (tap.hpp)
    lock_guard<os_mutex> g(mu);
    if ((ep = sleep_ep.load(std::memory_order_relaxed)) >= 0) return ep;
    const int hand = svc->role_handoff_fd();
    if (hand < 0) return -1;
    const int b = hide_fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    ep = b < 0 ? -1 : hide_fd(k_epoll_create1(EPOLL_CLOEXEC));
    epoll_event w{};
    w.events = EPOLLIN | EPOLLET;
    w.data.u32 = kBellTag;
    bool ok = ep >= 0 && k_epoll_ctl(ep, EPOLL_CTL_ADD, b, &w) == 0;
    w.events = EPOLLIN | EPOLLET | EPOLLEXCLUSIVE;
    w.data.u32 = kHandoffTag;
    ok = ok && k_epoll_ctl(ep, EPOLL_CTL_ADD, hand, &w) == 0;
    if (!ok) {
      if (ep >= 0) ::close(ep);
      if (b >= 0) ::close(b);
      return -1;
    }
    bell = b;
    sleep_ep.store(ep, std::memory_order_release);
    return ep;
  }
  static constexpr std::uint32_t kBellTag = 0;
  static constexpr std::uint32_t kHandoffTag = 1;

  // A plain-thread waiter's sleep when it does not lead the host poll:
  // until the bell (this set has events), a role hand-off (for_role: the
  // host poll is ours to take if we want it), the deadline or a signal
  // (EINTR; the caller's signal mask is installed atomically, as
  // epoll_pwait does). handed is set when this sleep took a hand-off: the
  // caller then polls or passes it on (tap_service::pass_role).
  // Without a sleep fd, it falls back to the deputy's sleep (every such
  // waiter then wakes for each event). `host` is what ppoll_set_and_host()
  // saw of the host's fd when this sleep was one (kHostReady, kHostBroken;
  // a host fd that is broken is not watched again: host_ok).
  status standby(mono_ns deadline, const sigset_t* sigmask, bool for_role, bool& handed,
                 bool host_ok, int& host) {
    host = 0;  // set again only by a sleep that watches the host's fd
    // The deputy watches the host itself (tap_service::become_deputy): no
    // hand-off is made while it sleeps, so a leader that goes back to the
    // program wakes no one (a host event wakes the deputy, which polls).
    // It wakes for every host event, so there is one at most.
    if (for_role && host_ok && svc->become_deputy()) {
      deputies.fetch_add(1, std::memory_order_seq_cst);
      const status s = ppoll_set_and_host(deadline, sigmask, true, host);
      // seq_cst decrements here and below: a post that reads the count after
      // it must be ordered with our later loads of signaled in the single
      // total order (a relaxed decrement would leave that to the fences).
      deputies.fetch_sub(1, std::memory_order_seq_cst);
      svc->end_deputy();
      handed = true;  // a leader may have left the host to us: poll or pass it on
      return s;
    }
    const int ep = sleep_fd();
    if (ep < 0) return ppoll_set_and_host(deadline, sigmask, host_ok, host);
    if (for_role && !svc->await_role()) return {};  // the role is free: go lead
    // seq_cst increment, then seq_cst load of signaled: see wake_one(). (A
    // set handed to the kernel has signaled set, and its standbys woken.)
    standbys.fetch_add(1, std::memory_order_seq_cst);
    int n = 0;
    if (!signaled.load(std::memory_order_seq_cst) && !native.load(std::memory_order_acquire)) {
      epoll_event evs[2];
      n = epoll_pwait_until(ep, evs, 2, deadline, sigmask);
      for (int i = 0; i < n; ++i)
        handed |= evs[i].data.u32 == kHandoffTag;
    }
    const int err = errno;
    standbys.fetch_sub(1, std::memory_order_seq_cst);
    if (for_role) svc->end_await_role();
    return n < 0 ? status(err) : status{};
  }

  // Sleeps until this set's eventfd or (with watch_host) the host poller's
  // fd is readable, the deadline, or a signal (EINTR), with the caller's
  // mask installed atomically. `host` tells what the host's fd was.
  static constexpr int kHostReady = 1;   // readable: a host event waits
  static constexpr int kHostBroken = 2;  // closed or in error: watching it would spin
  status ppoll_set_and_host(mono_ns deadline, const sigset_t* sigmask, bool watch_host, int& host) {
    pollfd fds[2] = {{evfd, POLLIN, 0}, {svc->pollable_fd(), POLLIN, 0}};
    timespec ts, *tsp = nullptr;
    if (deadline != kNoDeadline) {
      ts = to_timespec(time_left(deadline));
      tsp = &ts;
    }
    // The system call, not the C library's cancellation point: a thread
    // cancelled here would leave the deputy's counts set (as the host poll
    // and standby() make their waits as system calls too).
    host = 0;
    if (::syscall(SYS_ppoll, fds, watch_host ? 2 : 1, tsp, sigmask, _NSIG / 8) < 0)
      return status(errno);
    if (watch_host && (fds[1].revents & (POLLNVAL | POLLERR)))
      host = kHostBroken;
    else if (watch_host && (fds[1].revents & POLLIN))
      host = kHostReady;
    return {};
  }

  // Passes on a hand-off of the host poll this waiter took (handed) and will
  // not use: before a sleep that does not lead, or a return.
  void pass_on(bool& handed) noexcept {
    if (handed) svc->pass_role();
    handed = false;
  }

  // A plain-thread waiter leaving wait() without a harvest (a signal, an
  // error): what it took on is passed on, as if it had not woken. A hand-off
  // it took goes to another waiter for the role; an event left pending,
  // whose wake may have been its own (wake_one() woke it, or its host poll),
  // wakes another waiter of this set.
  void leave_unharvested(bool& handed) noexcept {
    pass_on(handed);
    if (signaled.load(std::memory_order_seq_cst)) wake_one();
  }

  // The same on a set handed to the kernel: one kernel wait into buf.
  result<int> native_wait(std::span<epoll_event> buf, int limit, mono_ns deadline,
                          const sigset_t* sigmask, sink_fn sink, void* ctx) {
    const int max =
        static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(limit), buf.size()));
    const int n =
        epoll_pwait_until(epfd.load(std::memory_order_relaxed), buf.data(), max, deadline, sigmask);
    if (n < 0) return errno_code(errno);
    if (!sink || n == 0) return n;
    const int taken = std::clamp(sink(buf.data(), n, ctx), 0, n);
    return taken > 0 ? result<int>(taken) : result<int>(errno_code(EFAULT));
  }
  // Whether `fd` still names this set's file. The kernel is asked: epfd
  // holds the hidden eventfd (level-triggered EPOLLIN), so a MOD of that
  // entry to the same mask succeeds on this file and changes nothing, and
  // fails on any other file (ENOENT, EINVAL) or a closed number (EBADF). A
  // native set passes every call to the kernel, which knows what the number
  // names: nothing to check. (A check that read native false and races
  // materialize() finds the watch deleted and fails: the record is then
  // forgotten, and the calls pass through all the same.)
  bool named_by(int fd) const {
    if (native.load(std::memory_order_acquire)) return true;
    epoll_event w{};
    w.events = EPOLLIN;
    return k_epoll_ctl(fd, EPOLL_CTL_MOD, evfd, &w) == 0;
  }
};

struct epoll_access {
  static epoll_set::impl& of(epoll_set& s) { return *s.p_; }
};

}  // namespace ueq
