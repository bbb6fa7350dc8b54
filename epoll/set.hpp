// epoll/set.hpp (internal) — one epoll set: its entries, its ready list,
// its pending signal (pending.hpp) and its harvest.
//
// The facade's files, by job:
//   set.hpp        a set (epoll_set::impl) and the helpers it uses
//   pending.hpp    a set's pending signal and its one handshake
//   kcall.hpp      the kernel's epoll calls ueq makes for itself
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
//                  the tap service's per-fd locks) and the readiness probe,
//                  whose probe of a nested set try_locks that set's mu
//                  (impl::ready_now: a failed try falls back on the signal).
//   tap service / event queue locks (leaves).
// Tap dispatch (the host poller's thread) posts into a set's CEQ without
// any of these locks (under the tap's slot lock); the CEQ's post hook
// raises the set's pending signal, which touches atomics and the eventfd,
// and posts into the parents' mailboxes under its listeners lock (taken
// child before parent; the nesting graph is acyclic).
// A set's lock is never held while taking the registry lock.
//
// The path of an event: host readiness -> the fd's tap posts {fd, bits} into
// the set's CEQ (coalescing) -> the post hook raises the set's pending
// signal (pending.hpp: its eventfd readable, one sleeper woken) -> a waiter
// wakes (asleep in the host epoll as the leader of its poll, in standby, in
// ppoll({eventfd, host fd}), or parked on the signal's uthread queue) ->
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

#include "pending.hpp"
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

// Opt-in diagnostics (UEQ_LOG=stderr or a path); silent otherwise. Its
// stdio calls are cancellation points: off (no_cancel).
inline void log(const char* fmt, ...) {
  const no_cancel nc;
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

// epoll_set::ctl without its fast MOD (modify_registered): Linux's error
// order, every op. event is trusted (the C API has copied it in).
status ctl_full(epoll_set& self, int op, int fd, const epoll_event* event);

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
  // The program's epoll fd is a real kernel epoll fd (so read/write fail
  // with EINVAL, F_GETFL says O_RDWR, and poll/select/epoll can watch it)
  // that watches the pending signal's eventfd, level-triggered.
  std::atomic<int> epfd{-1};  // an open number of the program's epoll fd
  // Everything that waits for this set learns of events through it: the
  // eventfd, the uthread queue, the sleepers' wakes, the parent sets
  // (pending.hpp). The CEQ's post hook raises it.
  pending_signal sig;
  // Handed to the kernel (materialize_all, at fork and before a new program
  // that can inherit it starts): epfd holds the entries itself and every
  // ctl and wait passes through to it. Set once, under
  // reg().mu and mu; read without them by waiters already inside wait()
  // (release/acquire: the entries were registered before it reads true).
  std::atomic<bool> native{false};
  // fork_generation() when the set was made: a fork()ed child
  // cannot use its parent's sets (their taps live in the parent's poller).
  std::uint64_t fork_gen = 0;

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
  // A set whose last number is closed while waits sleep in it keeps its
  // entries until the last of them returns, as Linux's waiter keeps the
  // file (registry.cpp: drop_set_number, enter_wait, leave_wait).
  // `sleepers` counts the waits that may sleep (past their first harvest);
  // `unnamed` is set, once, when the last number goes. Dekker's pattern, so
  // seq_cst on both sides: the closer stores `unnamed`, then loads
  // `sleepers`; a wait adds itself to `sleepers`, then loads `unnamed`, and
  // one that leaves subtracts itself, then loads it. By the total order a
  // closer that reads no sleepers is read by every wait that enters later
  // (which answers EBADF, as a wait begun after the close), and the last
  // sleeper to leave reads `unnamed` if the closer read it inside. Both may
  // see each other: tear_down runs under reg().mu, once (`dead`).
  std::atomic<int> sleepers{0};
  std::atomic<bool> unnamed{false};

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

  // --- the pending signal ---
  // The CEQ's post hook: on the posting (tap dispatch) thread, after every
  // post that creates a message.
  static void post_hook(void* ctx) noexcept { static_cast<impl*>(ctx)->sig.raise(); }
  // After a harvest, a MOD, a removal (under mu): the signal follows what
  // is pending (pending_signal::settle).
  void settle(bool leftover = true) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    sig.settle(!ready.empty() || !q->empty(), leftover, [this] { return q->empty(); });
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

  // What poll() is asked about an entry: its file, or for a nested set of
  // ours the set's hidden eventfd, readable while the set is pending.
  static pollfd poll_of(const entry& e) {
    if (e.child) return {e.child->sig.fd(), POLLIN, 0};
    return {e.fd, static_cast<short>(report_mask(e.events) & 0xffff), 0};
  }
  // The bits an entry reports, from poll's answer for poll_of(e): 0 if none
  // or if the fd is gone. A nested set reports what Linux's poll of an
  // epoll file gives, EPOLLIN | EPOLLRDNORM within the entry's mask (the
  // eventfd's EPOLLOUT is no event of the set's), and only while it still
  // has an event (ready_now).
  static std::uint32_t bits_of(const entry& e, short revents) {
    if (revents & POLLNVAL) return 0;
    if (!e.child) return static_cast<std::uint32_t>(revents) & report_mask(e.events);
    const std::uint32_t bits = (revents & POLLIN) ? (EPOLLIN | EPOLLRDNORM) & e.events : 0;
    return bits && e.child->ready_now() ? bits : 0;
  }
  // Probes an entry's readiness now (poll with no timeout): the bits it
  // would report.
  static std::uint32_t probe(const entry& e) {
    pollfd p = poll_of(e);
    if (sys_poll_now(&p, 1) != 1) return 0;
    return bits_of(e, p.revents);
  }

  // Whether this set has an event to report now, asked by a parent set's
  // probe. The signal alone stays raised until this set's next harvest,
  // over entries that are no longer ready (the file drained, the entry
  // deleted): a level-triggered parent would report this set on every
  // wait. Linux's poll of an epoll file polls the items on its ready list
  // and drops those no longer ready; so does this, and it settles the
  // signal when none is left. A set whose lock another thread holds (it is
  // being harvested or changed) answers by its signal; so does a set handed
  // to the kernel at fork, whose entries are the kernel's. try_lock: the
  // parent's lock is held, and a try that fails never waits, so this adds
  // no edge to the lock order (a set's lock is otherwise never taken under
  // another set's).
  bool ready_now() ABSL_LOCKS_EXCLUDED(mu) {
    if (native.load(std::memory_order_acquire) || !mu.try_lock()) return true;
    drain_mailbox();
    bool any = false;
    while (entry* e = ready.front()) {
      std::uint32_t bits = probe(*e);
      if (e->keeps_posted) bits |= e->posted & report_mask(e->events);
      if (bits) {
        any = true;
        break;
      }
      dequeue(*e);  // as a harvest would: no longer ready
    }
    // A post that came in after the drain found the signal raised and
    // told no parent: settle() then keeps the signal raised, and this set
    // has something to report after all.
    if (!any) {
      settle();
      any = sig.raised_now();
    }
    mu.unlock();
    return any;
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
          pfds[m++] = poll_of(*e);
        if (sys_poll_now(pfds, static_cast<nfds_t>(m)) < 0) {
          stop = true;  // report what this harvest has; the rest stay listed
          break;
        }
        entry* e = ready.front();
        for (int i = 0; i < m; ++i) {
          entry* const next = entry_list::next(e);
          const std::uint32_t mask = report_mask(e->events);
          std::uint32_t bits = bits_of(*e, pfds[i].revents);
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
    // The sleeper's half of the handshake (pending.hpp; tests/model/
    // settle.pml -DLEADER): a raise that comes first is seen here (no
    // sleep); one that comes later sees the count and wakes the host poll.
    // (A set handed to the kernel at a fork is raised for good.)
    bool polled = false;
    result<std::size_t> r = std::size_t{0};
    {
      const pending_signal::sleeper asleep(sig, pending_signal::host);
      if (asleep.pending()) return lead::polled;  // pending already: harvest
      bool due = false;
      {
        const pending_signal::leading_scope leading(sig);
        r = svc->poll(deadline, sigmask, polled, &due);
      }
      // Polled: an earlier hand-off is spent, and this poll's is ours to
      // pass. Busy: the poller hands off when it ends (the waiters stay
      // counted until then), so ours need not go on.
      handed = due;
    }
    if (!polled) return lead::busy;
    if (!r) return r.error();
    return lead::polled;
  }

  // The hidden epoll fd standby() sleeps in (pending_signal::sleep_fd),
  // made on first call; -1 if it cannot be (EMFILE, ENOMEM).
  int sleep_fd() {
    if (const int ep = sig.sleep_fd(); ep >= 0) return ep;
    tap_service::inside_ueq in;  // a handler's close meanwhile defers (tap.hpp)
    lock_guard<os_mutex> g(mu);
    return sig.make_sleep_fd();
  }

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
      status s;
      {
        // Its sleep ends on the eventfd itself: no need to read the signal.
        const pending_signal::sleeper asleep(sig, pending_signal::deputy);
        s = ppoll_set_and_host(deadline, sigmask, true, host);
      }
      svc->end_deputy();
      handed = true;  // a leader may have left the host to us: poll or pass it on
      return s;
    }
    const int ep = sleep_fd();
    if (ep < 0) return ppoll_set_and_host(deadline, sigmask, host_ok, host);
    if (for_role && !svc->await_role()) return {};  // the role is free: go lead
    // The sleeper's half of the handshake (pending.hpp). (A set handed to
    // the kernel is raised for good, and its standbys woken.)
    int n = 0;
    int err = 0;
    {
      const pending_signal::sleeper asleep(sig, pending_signal::standby);
      if (!asleep.pending()) {
        epoll_event evs[2];
        n = epoll_pwait_until(ep, evs, 2, deadline, sigmask);
        err = errno;
        for (int i = 0; i < n; ++i)
          handed |= evs[i].data.u32 == pending_signal::kHandoffTag;
      }
    }
    if (for_role) svc->end_await_role();
    return n < 0 ? status(err) : status{};
  }

  // Sleeps until this set's eventfd or (with watch_host) the host poller's
  // fd is readable, the deadline, or a signal (EINTR), with the caller's
  // mask installed atomically. `host` tells what the host's fd was.
  static constexpr int kHostReady = 1;   // readable: a host event waits
  static constexpr int kHostBroken = 2;  // closed or in error: watching it would spin
  status ppoll_set_and_host(mono_ns deadline, const sigset_t* sigmask, bool watch_host, int& host) {
    pollfd fds[2] = {{sig.fd(), POLLIN, 0}, {svc->pollable_fd(), POLLIN, 0}};
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
  // whose wake may have been its own (pending_signal::wake_one() woke it,
  // or its host poll), wakes another waiter of this set.
  void leave_unharvested(bool& handed) noexcept {
    pass_on(handed);
    sig.leave();
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
    return k_epoll_ctl(fd, EPOLL_CTL_MOD, sig.fd(), &w) == 0;
  }
};

struct epoll_access {
  static epoll_set::impl& of(epoll_set& s) { return *s.p_; }
};

}  // namespace ueq
