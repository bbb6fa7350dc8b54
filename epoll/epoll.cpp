// The epoll facade.
//
// Locking (outermost first):
//   reg().mu       the registry: epoll fd numbers -> sets, target fd -> the
//                  sets that hold it, and the nesting checks of ADD.
//   impl::mu       one per set: its entries, its ready list, the flags of
//                  every entry. Held across the tap calls of ctl (which take
//                  the tap service's per-fd locks) and the readiness probe.
//   tap service / event queue locks (leaves).
// Tap dispatch (the host poller's thread) posts into a set's CEQ without
// any of these locks; the CEQ's post hook touches atomics and the set's
// eventfd, and posts into the parents' mailboxes under the set's
// parents_lock (taken child before parent; the nesting graph is acyclic).
// A set's lock is never held while taking the registry lock.
//
// The path of an event: host readiness -> the fd's tap posts {fd, bits} into
// the set's CEQ (coalescing) -> the post hook makes the set's eventfd
// readable -> a waiter sleeping in ppoll({eventfd, host fd}) wakes ->
// harvest: CEQ messages put entries on the ready list; the entries at its
// front are probed with poll(), a batch per call (Linux re-polls every item
// it reports), and those still ready are reported, up to maxevents, through
// a fixed staging buffer; level-triggered ones go to the back.
#include "ueq/epoll/epoll.hpp"

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

#include "ueq/ceq/block_on.hpp"
#include "ueq/ceq/event_queue.hpp"
#include "ueq/epoll.h"
#include "ueq/runtime/chunked_table.hpp"
#include "ueq/runtime/parker.hpp"
#include "ueq/taps/tap.hpp"

namespace ueq {
namespace {

constexpr int kMaxNests = 4;  // Linux's EP_MAX_NESTS
// How many live sets watch the host poller's fd in the kernel (see create).
constexpr int kHostWatchers = 8;
// tap_service::poll() dispatches a batch of host events per call (128 or
// more, by backend). wait() polls again after a batch of at least
// kHostBatchFull events (more may be waiting; a backend with smaller
// batches is only drained less at once), at most kMaxHostBatches times.
constexpr std::size_t kHostBatchFull = 64;
constexpr int kMaxHostBatches = 64;
constexpr int kMaxEvents = INT_MAX / static_cast<int>(sizeof(epoll_event));
constexpr std::uint32_t kExclusiveOk =
    EPOLLIN | EPOLLOUT | EPOLLERR | EPOLLHUP | EPOLLWAKEUP | EPOLLET | EPOLLEXCLUSIVE;
// What a tap can watch, from an epoll mask.
std::uint32_t tap_filter(std::uint32_t events) {
  std::uint32_t f = kTapError | kTapHangup;
  if (events & (EPOLLIN | EPOLLRDNORM | EPOLLRDBAND)) f |= kTapReadable;
  if (events & (EPOLLOUT | EPOLLWRNORM | EPOLLWRBAND)) f |= kTapWritable;
  if (events & EPOLLPRI) f |= kTapPriority;
  if (events & EPOLLRDHUP) f |= kTapRdhup;
  return f;
}
// The poll(2) bits an entry reports: its requested events plus ERR/HUP.
std::uint32_t report_mask(std::uint32_t events) {
  return (events & ~(EPOLLET | EPOLLONESHOT | EPOLLEXCLUSIVE | EPOLLWAKEUP)) | EPOLLERR | EPOLLHUP;
}

// Opt-in diagnostics (UEQ_LOG=stderr or a path); silent otherwise.
void log(const char* fmt, ...) {
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

// The kernel's epoll calls, made as system calls: the ones ueq makes for
// itself and the ones it passes through must never reach an interposed
// epoll_* of the preload library (a fork() handler, for one, runs with no
// guard). Each returns -1 with errno set on failure, as the C library does.
int k_epoll_create1(int flags) {
  return static_cast<int>(::syscall(SYS_epoll_create1, flags));
}
int k_epoll_ctl(int ep, int op, int fd, const epoll_event* ev) {
  return static_cast<int>(::syscall(SYS_epoll_ctl, ep, op, fd, ev));
}
// epoll_pwait2 where the kernel has it (5.11), else epoll_pwait with the
// timeout rounded up to milliseconds.
int k_epoll_wait(int ep, epoll_event* ev, int max, mono_ns deadline, const sigset_t* mask) {
  timespec ts, *tsp = nullptr;
  if (deadline != kNoDeadline) {
    ts = to_timespec(std::max<mono_ns>(deadline - monotonic_now(), 0));
    tsp = &ts;
  }
  static std::atomic<bool> no_pwait2{false};
  if (!no_pwait2.load(std::memory_order_relaxed)) {
    const long r = ::syscall(SYS_epoll_pwait2, ep, ev, max, tsp, mask, _NSIG / 8);
    if (r >= 0 || errno != ENOSYS) return static_cast<int>(r);
    no_pwait2.store(true, std::memory_order_relaxed);  // a hint only: relaxed
  }
  long ms = -1;
  if (tsp) ms = std::min<long>(INT_MAX, ts.tv_sec * 1000L + (ts.tv_nsec + 999999) / 1000000);
  return static_cast<int>(
      ::syscall(SYS_epoll_pwait, ep, ev, max, static_cast<int>(ms), mask, _NSIG / 8));
}

}  // namespace

namespace {
// The set whose waiter this thread is, while it leads the host poll
// (impl::lead_host_poll): its own dispatch needs no wake.
thread_local const epoll_set::impl* tl_leading = nullptr;
}  // namespace

struct epoll_set::impl {
  struct entry {
    int fd = -1;
    std::uint32_t events = 0;  // as given, flags included (ERR|HUP added)
    epoll_data_t data{};
    tap_handle tap;
    bool disabled = false;  // EPOLLONESHOT entry that has fired
    bool queued = false;    // on the ready list
    entry* prev = nullptr;  // ready list links
    entry* next = nullptr;
    impl* child = nullptr;  // the target, if it is one of our sets (nesting graph edge)
    dev_t dev = 0;          // the file registered (to notice a number closed behind
    ino_t ino = 0;          // our back and reused for another file)
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
  // Waiters of this set asleep in the host poll (lead_host_poll); a
  // post_hook() that signals wakes the host poll while there are any.
  std::atomic<int> host_sleepers{0};
  // Handed to the kernel (materialize(), at fork): epfd holds the entries
  // itself and every ctl and wait passes through to it. Set once, under
  // reg().mu and mu; read without them by waiters already inside wait()
  // (release/acquire: the entries were registered before it reads true).
  std::atomic<bool> native{false};
  // tap_service::fork_generation() when the set was made: a fork()ed child
  // cannot use its parent's sets (their taps live in the parent's poller).
  std::uint64_t fork_gen = 0;
  // Sets that hold this one, and the fd number they hold it under. A set
  // nested in another of ours is not tapped through the host (our epoll fd
  // watches the host's fd, which would make a kernel-level cycle): it posts
  // into its parents' mailboxes itself when it becomes pending.
  spin_lock parents_lock;
  std::vector<std::pair<impl*, int>> parents;  // guarded by parents_lock
  ~impl() {
    if (evfd >= 0) ::close(evfd);
  }

  std::mutex mu;
  absl::node_hash_map<int, entry> entries;  // guarded by mu
  entry* head = nullptr;                    // ready list, guarded by mu
  entry* tail = nullptr;
  std::vector<int> numbers;  // epoll fd numbers naming this set; guarded by reg().mu
  // epfd watches the host poller's fd (see create()). Written under
  // reg().mu; wait() reads it without (relaxed: a stale true only costs
  // taking the lock to find it false).
  std::atomic<bool> watches_host{false};
  bool dead = false;  // guarded by mu: torn down, every ctl fails

  // --- ready list (under mu) ---
  void enqueue(entry& e) {
    if (e.queued) return;
    e.queued = true;
    e.prev = tail;
    e.next = nullptr;
    (tail ? tail->next : head) = &e;
    tail = &e;
  }
  void dequeue(entry& e) {
    if (!e.queued) return;
    (e.prev ? e.prev->next : head) = e.next;
    (e.next ? e.next->prev : tail) = e.prev;
    e.prev = e.next = nullptr;
    e.queued = false;
  }

  // --- the eventfd that makes the set pollable ---
  // Called on the posting (tap dispatch) thread for every message-creating
  // post, after the post. seq_cst exchange (release is what settle() needs;
  // it pairs with settle()'s exchange): the first post after a clear writes.
  static void post_hook(void* ctx) noexcept {
    auto* self = static_cast<impl*>(ctx);
    if (self->signaled.exchange(true, std::memory_order_seq_cst)) return;
    const std::uint64_t one = 1;
    (void)::write(self->evfd, &one, sizeof one);
    (void)self->wakeq->post(0);
    // seq_cst, after the seq_cst exchange above: pairs with lead_host_poll()
    // (its increment, then its load of signaled). Of the two, at least one
    // sees the other: the leader does not sleep, or it is woken here. Not
    // when this thread is the leader, dispatching: it harvests next anyway.
    if (self->host_sleepers.load(std::memory_order_seq_cst) > 0 && tl_leading != self)
      self->svc->wake();
    // Newly pending: tell the sets that hold us (each is one level up; the
    // graph is acyclic, so these locks are taken bottom-up only).
    std::lock_guard<spin_lock> g(self->parents_lock);
    for (auto& [parent, fd] : self->parents)
      (void)parent->q->post(static_cast<std::uint32_t>(fd), EPOLLIN);
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
  //  - No shortcut on a clear flag: a post_hook() that set the flag before
  //    our exchange may write after our read, leaving the eventfd readable
  //    with nothing pending; the next settle() must drain it, or every wait
  //    would return to an empty harvest until its timeout.
  //  - Pending: post_hook() signals the eventfd, and wakeq is posted too. A
  //    uthread waiter may have taken a stale wakeq bit, and a post that
  //    found the flag set posted nothing new.
  void settle() {
    const bool pending = head != nullptr || !q->empty();
    if (pending) {
      post_hook(this);
      (void)wakeq->post(0);
      return;
    }
    std::uint64_t v;
    (void)::read(evfd, &v, sizeof v);
    (void)signaled.exchange(false, std::memory_order_acq_rel);
    if (!q->empty()) post_hook(this);
  }

  // Probes an entry's readiness now (poll with no timeout): the bits it
  // would report, 0 if none or if the fd is gone. A nested set of ours is
  // ready when its hidden eventfd is.
  static std::uint32_t probe(const entry& e) {
    pollfd p{e.child ? e.child->evfd : e.fd, static_cast<short>(report_mask(e.events) & 0xffff), 0};
    const std::uint32_t events = e.events;
    if (::poll(&p, 1, 0) != 1 || (p.revents & POLLNVAL)) return 0;
    return static_cast<std::uint32_t>(p.revents) & report_mask(events);
  }

  // Moves CEQ messages onto the ready list (under mu).
  void drain_mailbox() {
    event_msg msgs[64];
    while (std::size_t n = q->drain(msgs)) {
      for (std::size_t i = 0; i < n; ++i) {
        auto it = entries.find(static_cast<int>(msgs[i].id));
        if (it == entries.end() || it->second.disabled) continue;  // stale, or ONESHOT spent
        entry& e = it->second;
        if (e.keeps_posted) e.posted |= static_cast<std::uint32_t>(msgs[i].bits);
        enqueue(e);
      }
      if (n < 64) break;
    }
  }

  // Entries off the ready list, in order, linked through the same prev/next
  // (free while an entry is off the list). Under mu.
  struct chain {
    entry* first = nullptr;
    entry* last = nullptr;
    void push(entry& e) {
      e.prev = last;
      e.next = nullptr;
      (last ? last->next : first) = &e;
      last = &e;
    }
  };
  // Puts entries first..last (linked, in order) back at the front of the
  // ready list, keeping their order.
  void splice_front(entry* first, entry* last) {
    for (entry* e = first;; e = e->next) {
      e->queued = true;
      if (e == last) break;
    }
    first->prev = nullptr;
    last->next = head;
    (head ? head->prev : tail) = last;
    head = first;
  }
  void splice_back(const chain& c) {
    if (!c.first) return;
    for (entry* e = c.first; e; e = e->next)
      e->queued = true;
    c.first->prev = tail;
    (tail ? tail->next : head) = c.first;
    tail = c.last;
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
  int harvest(std::span<epoll_event> buf, int limit, sink_fn sink = nullptr, void* ctx = nullptr) {
    drain_mailbox();
    int total = 0;  // results taken (or, without a sink, written to buf)
    chain again;    // level-triggered entries reported: back of the list at the end
    bool stop = false;
    while (total < limit && head && !stop) {
      // Fill one stretch of buf.
      epoll_event* out = sink ? buf.data() : buf.data() + total;
      const int cap = static_cast<int>(std::min<std::size_t>(
          static_cast<std::size_t>(limit - total), sink ? buf.size() : buf.size() - total));
      int n = 0;
      chain reported;  // this stretch's entries, in the order of out
      while (n < cap && head) {
        // Take as many from the front as could still fit, probe them in one
        // poll() call, report the ready ones in list order.
        pollfd pfds[kProbeBatch];
        int m = 0;
        for (entry* e = head; e && m < cap - n && m < kProbeBatch; e = e->next)
          pfds[m++] = {e->child ? e->child->evfd : e->fd,
                       static_cast<short>(report_mask(e->events) & 0xffff), 0};
        if (::poll(pfds, static_cast<nfds_t>(m), 0) < 0) {
          stop = true;  // report what this harvest has; the rest stay listed
          break;
        }
        entry* e = head;
        for (int i = 0; i < m; ++i) {
          entry* const next = e->next;
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
            reported.push(*e);
            if (e->events & EPOLLONESHOT) e->disabled = true;
          }
          e = next;
        }
      }
      const int taken = sink && n > 0 ? std::clamp(sink(out, n, ctx), 0, n) : n;
      // The taken ones are final; the rest go back as they were.
      entry* e = reported.first;
      for (int i = 0; i < taken; ++i) {
        entry* const next = e->next;
        if (!(e->events & (EPOLLONESHOT | EPOLLET))) again.push(*e);
        e = next;
      }
      total += taken;
      if (taken < n) {
        int i = taken;
        for (entry* r = e; r; r = r->next, ++i) {
          r->disabled = false;
          if (r->keeps_posted) r->posted = out[i].events;
        }
        splice_front(e, reported.last);
        if (total == 0) total = -1;
        break;
      }
    }
    splice_back(again);
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
  enum class lead { polled, interrupted, busy };
  lead lead_host_poll(mono_ns deadline, const sigset_t* sigmask) {
    // seq_cst increment, then seq_cst load of signaled: pairs with
    // post_hook() (tests/model/settle.pml, -DLEADER). A post_hook() whose
    // exchange comes first is seen here (no sleep); one whose exchange
    // comes later sees the increment and wakes the host poll.
    host_sleepers.fetch_add(1, std::memory_order_seq_cst);
    if (signaled.load(std::memory_order_seq_cst)) {
      host_sleepers.fetch_sub(1, std::memory_order_relaxed);
      return lead::polled;  // pending already: harvest
    }
    bool polled = false;
    tl_leading = this;
    auto r = svc->poll(deadline, sigmask, polled);
    tl_leading = nullptr;
    host_sleepers.fetch_sub(1, std::memory_order_relaxed);
    if (!polled) return lead::busy;
    if (!r && r.error() == std::errc::interrupted) return lead::interrupted;
    return lead::polled;
  }

  // The same on a set handed to the kernel: one kernel wait into buf.
  result<int> native_wait(std::span<epoll_event> buf, int limit, mono_ns deadline,
                          const sigset_t* sigmask, sink_fn sink, void* ctx) {
    const int max =
        static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(limit), buf.size()));
    const int n =
        k_epoll_wait(epfd.load(std::memory_order_relaxed), buf.data(), max, deadline, sigmask);
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

namespace {

// The registry of sets, owned by the process and never freed (close
// callbacks may run during exit). Guarded by mu.
struct registry {
  std::mutex mu;
  absl::flat_hash_map<int, std::shared_ptr<epoll_set>> by_fd;               // epoll fd numbers
  absl::flat_hash_map<int, absl::flat_hash_set<epoll_set::impl*>> members;  // target fd
  // The nesting graph: parent set -> child set -> number of entries.
  absl::flat_hash_map<epoll_set::impl*, absl::flat_hash_map<epoll_set::impl*, int>> children;
  absl::flat_hash_map<epoll_set::impl*, absl::flat_hash_map<epoll_set::impl*, int>> parents;
  int host_watchers = 0;  // live sets whose epoll fd watches the host poller's fd
};
registry& reg() {
  static registry* r = new registry;
  return *r;
}

std::mutex g_service_mu;
tap_service* g_registered = nullptr;  // guarded by g_service_mu

void on_fd_close(int fd, void*);

// The tap service, with our close callback registered on it (once per
// service: a fork()ed child gets a new one).
result<tap_service*> service() {
  auto s = tap_service::instance();
  if (!s) return s.error();
  std::lock_guard<std::mutex> g(g_service_mu);
  if (*s != g_registered) {
    (*s)->add_close_callback(&on_fd_close, nullptr);
    g_registered = *s;
  }
  return *s;
}

using impl = epoll_set::impl;

// Longest chain of sets below c (0 = holds none); INT_MAX if `target` is
// among them (a cycle). Under reg().mu.
int depth_below(impl* c, const impl* target, int level = 0) {
  if (c == target) return INT_MAX;
  if (level > kMaxNests + 1) return level;  // deep enough to fail anyway
  int d = 0;
  auto it = reg().children.find(c);
  if (it == reg().children.end()) return 0;
  for (auto& [child, n] : it->second) {
    const int below = depth_below(child, target, level + 1);
    if (below == INT_MAX) return INT_MAX;
    d = std::max(d, below + 1);
  }
  return d;
}
// Longest chain of sets above p (0 = none holds it). Under reg().mu.
int depth_above(impl* p, int level = 0) {
  if (level > kMaxNests + 1) return level;
  int d = 0;
  auto it = reg().parents.find(p);
  if (it == reg().parents.end()) return 0;
  for (auto& [parent, n] : it->second)
    d = std::max(d, depth_above(parent, level + 1) + 1);
  return d;
}
void add_edge(impl* parent, impl* child) {
  ++reg().children[parent][child];
  ++reg().parents[child][parent];
}
void remove_edge(impl* parent, impl* child) {
  auto drop = [](auto& map, impl* a, impl* b) {
    auto it = map.find(a);
    if (it == map.end()) return;
    if (--it->second[b] == 0) it->second.erase(b);
    if (it->second.empty()) map.erase(it);
  };
  drop(reg().children, parent, child);
  drop(reg().parents, child, parent);
}

std::shared_ptr<epoll_set> lookup(int fd) {
  tap_service::inside_ueq in;
  std::lock_guard<std::mutex> g(reg().mu);
  auto it = reg().by_fd.find(fd);
  return it == reg().by_fd.end() ? nullptr : it->second;
}

bool fd_open(int fd) {
  return fd >= 0 && ::fcntl(fd, F_GETFD) >= 0;
}

// Everything ueq keeps about a number whose file is gone (closed behind
// ueq's back: a raw close syscall, close_range, a close inside the C
// library), dropped as a close through ueq would: the set it named loses
// that number (and is torn down with its last), entries for it leave their
// sets, taps on it leave the host poller.
void forget_number(int fd) {
  log("fd=%d was closed behind ueq's back; forgotten", fd);
  if (auto svc = service())
    (*svc)->before_close(fd);
  else
    on_fd_close(fd, nullptr);
}

// The set `fd` names, checked with the kernel: a number closed behind ueq's
// back and reused (by another set, a pipe, an eventfd) no longer names the
// set ueq recorded, and that record is forgotten. Null if fd names none of
// ours, or if it is a native set and !with_native (the C API passes those
// calls to the kernel: see impl::native).
std::shared_ptr<epoll_set> lookup_live(int fd, bool with_native = false) {
  auto s = lookup(fd);
  if (!s) return nullptr;
  impl& p = epoll_access::of(*s);
  if (p.native.load(std::memory_order_acquire)) return with_native ? s : nullptr;
  if (p.named_by(fd)) return s;
  forget_number(fd);
  return nullptr;
}

// What Linux's epoll calls accept as a file: an open fd that is not O_PATH
// (an O_PATH fd names a file without opening it; epoll gives EBADF).
bool fd_usable(int fd) {
  if (fd < 0) return false;
  const int fl = ::fcntl(fd, F_GETFL);
  return fl >= 0 && !(fl & O_PATH);
}

// Linux refuses files that have no poll operation (EPERM): most regular
// files and directories, some devices (/dev/null), but not the procfs and
// sysfs files that have one (mounts, sysctl entries, sysfs attributes). Only
// the kernel can tell, so for the file types that may lack the operation it
// is asked: a trial ADD into a private epoll fd (kept at a high number).
// Sockets, pipes and anonymous-inode files (eventfd, timerfd, epoll, ...)
// always have one.
bool pollable(int fd, const struct stat& st) {
  const auto type = st.st_mode & S_IFMT;
  if (type != S_IFREG && type != S_IFDIR && type != S_IFCHR && type != S_IFBLK) return true;
  // Made at the first question; kept for the process (a child shares it
  // until exec: a trial of the same (file, fd) pair by both gives one of
  // them EEXIST, which says the file was accepted).
  static std::atomic<int> probe{-1};
  int ep = probe.load(std::memory_order_acquire);
  if (ep < 0) {
    const int made = hide_fd(::epoll_create1(EPOLL_CLOEXEC));
    if (made < 0) return type != S_IFREG && type != S_IFDIR;  // no fd to ask with: guess
    // acq_rel: the winner's fd is published whole; a loser closes its own.
    if (probe.compare_exchange_strong(ep, made, std::memory_order_acq_rel))
      ep = made;
    else
      ::close(made);
  }
  epoll_event e{};
  if (::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) != 0) return errno != EPERM;
  (void)::epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
  return true;
}

// Removes one entry: its tap, its nesting edge, its place on the ready list
// and in the membership index. Under reg().mu and s.mu.
void remove_entry(impl& s, absl::node_hash_map<int, impl::entry>::iterator it) {
  impl::entry& e = it->second;
  if (e.tap.live()) (void)s.svc->remove(e.tap);
  if (e.child) {
    remove_edge(&s, e.child);
    std::lock_guard<spin_lock> pg(e.child->parents_lock);
    std::erase(e.child->parents, std::pair<impl*, int>(&s, it->first));
  }
  s.dequeue(e);
  const int fd = it->first;
  s.entries.erase(it);
  auto m = reg().members.find(fd);
  if (m != reg().members.end()) {
    m->second.erase(&s);
    if (m->second.empty()) reg().members.erase(m);
  }
  s.settle();
}

// Ends s's watch of the host poller's fd, if it has one (under reg().mu).
void unwatch_host(impl& s) {
  if (!s.watches_host.load(std::memory_order_relaxed)) return;
  (void)k_epoll_ctl(s.epfd.load(std::memory_order_relaxed), EPOLL_CTL_DEL, s.svc->pollable_fd(),
                    nullptr);
  s.watches_host.store(false, std::memory_order_relaxed);
  --reg().host_watchers;
}

// Registers entry e (under number fd) in s's kernel epoll fd itself, as the
// program gave it (a spent EPOLLONESHOT entry stays without events). An
// entry whose number now names another file is left out: Linux dropped it
// with its file.
void register_natively(impl& s, const impl::entry& e, int fd) {
  if (e.child) {
    if (!e.child->named_by(fd)) return;
  } else {
    struct stat st;
    if (::fstat(fd, &st) != 0 || st.st_dev != e.dev || st.st_ino != e.ino) return;
  }
  epoll_event ev{};
  ev.data = e.data;
  ev.events = e.disabled ? e.events & (EPOLLONESHOT | EPOLLET | EPOLLWAKEUP) : e.events;
  if (k_epoll_ctl(s.epfd.load(std::memory_order_relaxed), EPOLL_CTL_ADD, fd, &ev) != 0)
    log("fork: fd=%d could not move into epoll fd=%d: %s", fd, s.epfd.load(), std::strerror(errno));
}

// Hands every set to the kernel (see impl::native), under reg().mu. At
// fork() a set becomes one kernel object shared by parent and child, as on
// Linux: a wait or ctl in either process sees the other's, a close in the
// child leaves the parent's registrations alone, and a set inherited across
// a later exec works in the new program (which passes the calls through).
// Sets made after the fork are ueq's again.
//
// Order: entries that are files first (the sets still watch the host
// poller, so none is unwatched meanwhile), then each set stops watching
// the host poller and its eventfd, then the entries that are sets (a
// kernel nesting of sets must not pass through the host poller's fd, or
// the kernel's depth limit could refuse it). Waiters already inside wait()
// are woken through the eventfd and wakeq and go on in the kernel.
void materialize_all() {
  std::vector<impl*> sets;
  for (auto& [fd, set] : reg().by_fd) {
    impl* p = &epoll_access::of(*set);
    if (!p->native.load(std::memory_order_relaxed) && !p->dead &&
        std::ranges::find(sets, p) == sets.end())
      sets.push_back(p);
  }
  for (impl* s : sets) {
    std::lock_guard<std::mutex> g(s->mu);
    for (auto& [fd, e] : s->entries)
      if (!e.child) register_natively(*s, e, fd);
  }
  for (impl* s : sets) {
    const int ep = s->epfd.load(std::memory_order_relaxed);
    unwatch_host(*s);
    (void)k_epoll_ctl(ep, EPOLL_CTL_DEL, s->evfd, nullptr);
  }
  for (impl* s : sets) {
    std::lock_guard<std::mutex> g(s->mu);
    for (auto& [fd, e] : s->entries)
      if (e.child) register_natively(*s, e, fd);
    while (!s->entries.empty())
      remove_entry(*s, s->entries.begin());
    // release: pairs with the acquire loads in wait() and ctl(); the
    // entries above are in the kernel before a caller passes through.
    s->native.store(true, std::memory_order_release);
    const std::uint64_t one = 1;
    (void)::write(s->evfd, &one, sizeof one);
    (void)s->wakeq->post(0);
  }
  if (!sets.empty()) log("fork: %zu sets handed to the kernel", sets.size());
}

// fork(): the registry lock is held from before the fork until after it,
// so no set is made or changed across it; in the child, where only the
// forking thread lives on, the locks are made anew (one another thread held
// would never be released).
void before_fork() {
  reg().mu.lock();
  tap_service::inside_ueq in;
  materialize_all();
}
void after_fork_in_parent() {
  reg().mu.unlock();
}
void after_fork_in_child() {
  reg().mu.unlock();  // held by this thread since before_fork
  new (&g_service_mu) std::mutex;
}
[[maybe_unused]] const int g_atfork =
    ::pthread_atfork(&before_fork, &after_fork_in_parent, &after_fork_in_child);

}  // namespace

epoll_set::epoll_set(std::unique_ptr<impl> p) : p_(std::move(p)) {}

// The last number was closed (on_fd_close emptied the set) and the last
// waiter has left.
epoll_set::~epoll_set() = default;

int epoll_set::fd() const noexcept {
  return p_->epfd.load(std::memory_order_relaxed);
}

result<std::shared_ptr<epoll_set>> epoll_set::create(int flags) {
  tap_service::inside_ueq in;  // a handler's close meanwhile defers (tap.hpp)
  if (flags & ~EPOLL_CLOEXEC) return errno_code(EINVAL);
  auto svc = service();
  if (!svc) return svc.error();
  auto q = event_queue::create_ceq(
      {.merge = ceq_merge::bit_or, .ring_size = 1024, .max_ids = host_max_fds()},
      {.notify = notify_policy::wake_one, .name = "epoll"});
  if (!q) return q.error();
  std::unique_ptr<impl> p(new (std::nothrow) impl);
  if (!p) return errno_code(ENOMEM);
  auto wakeq = event_queue::create_bitmap(1);
  if (!wakeq) return wakeq.error();
  p->wakeq = std::move(*wakeq);
  // The hidden eventfd first (then moved high), so the program's epoll fd
  // gets the number Linux would have given it.
  p->evfd = hide_fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (p->evfd < 0) return errno_code(errno);
  const int efd = k_epoll_create1(flags & EPOLL_CLOEXEC);
  if (efd < 0) return errno_code(errno);
  // The kernel gave us this number, so whatever ueq knew under it belongs to
  // a file closed behind its back.
  bool stale;
  {
    std::lock_guard<std::mutex> g(reg().mu);
    stale = reg().by_fd.contains(efd) || reg().members.contains(efd);
  }
  if (stale) forget_number(efd);
  // A level-triggered watch of the hidden eventfd (events pending in this
  // set); the host poller's fd is watched below, by the first sets.
  epoll_event watch{};
  watch.events = EPOLLIN;
  if (k_epoll_ctl(efd, EPOLL_CTL_ADD, p->evfd, &watch) != 0) {
    const int e = errno;
    ::close(efd);
    return errno_code(e);
  }
  p->svc = *svc;
  p->fork_gen = tap_service::fork_generation();
  p->q = *q;
  p->epfd.store(efd, std::memory_order_relaxed);
  p->numbers.push_back(efd);
  p->q->set_post_hook(&impl::post_hook, p.get());
  std::shared_ptr<epoll_set> set(new (std::nothrow) epoll_set(std::move(p)));
  if (!set) {
    ::close(efd);
    return errno_code(ENOMEM);
  }
  std::lock_guard<std::mutex> g(reg().mu);
  reg().by_fd[efd] = set;
  // The host poller's fd too (host events not yet dispatched, which may be
  // this set's: a program that polls this epoll fd without any thread
  // waiting in ueq must still see it readable, and its epoll_wait then
  // dispatches them), by at most kHostWatchers live sets at a time, and
  // only until the program first blocks in a wait on the set (a set that is
  // waited on in ueq is not the one polled from outside; see unwatch_host).
  // Every watching set adds a wakeup path to every file the host poller
  // holds, and Linux refuses a file more than 500 paths of length two and
  // 100 of length three (a file in a nested lane of the host poller, one
  // per further set that holds it): with every set watching, the 501st set
  // could not be made, nor an fd be added to 10 sets once 10 existed.
  impl& made = epoll_access::of(*set);
  if (reg().host_watchers < kHostWatchers &&
      k_epoll_ctl(efd, EPOLL_CTL_ADD, made.svc->pollable_fd(), &watch) == 0) {
    ++reg().host_watchers;
    made.watches_host.store(true, std::memory_order_relaxed);
  }
  log("create fd=%d flags=%#x%s", efd, flags,
      made.watches_host.load(std::memory_order_relaxed) ? "" : " (no host watch)");
  return set;
}

result<std::shared_ptr<epoll_set>> epoll_set::from_fd(int fd) {
  if (auto s = lookup_live(fd, true)) return s;
  return errno_code(fd_usable(fd) ? EINVAL : EBADF);
}

status epoll_set::ctl(int op, int fd, const epoll_event* event) {
  if (p_->native.load(std::memory_order_acquire))
    return k_epoll_ctl(p_->epfd.load(std::memory_order_relaxed), op, fd, event) == 0
               ? status{}
               : status(errno);
  tap_service::inside_ueq in;  // a handler's close meanwhile defers (tap.hpp)
  // Linux's order: EFAULT (event needed but missing), EBADF (target), EPERM
  // (target cannot be polled), EINVAL (fd is this set, flag rules, bad op),
  // ELOOP, then EEXIST/ENOENT.
  const bool has_event = op != EPOLL_CTL_DEL;
  if (has_event && !event) return status(EFAULT);
  epoll_event ev{};
  if (has_event) ev = *event;
  if (!fd_usable(fd)) return status(EBADF);
  struct stat st;
  if (::fstat(fd, &st) != 0) return status(EBADF);
  if (!pollable(fd, st)) return status(EPERM);
  auto target = lookup_live(fd);
  if (target.get() == this) return status(EINVAL);
  if (op != EPOLL_CTL_ADD && op != EPOLL_CTL_MOD && op != EPOLL_CTL_DEL) return status(EINVAL);
  if (has_event && (ev.events & EPOLLEXCLUSIVE)) {
    if (op == EPOLL_CTL_MOD) return status(EINVAL);
    if (target || (ev.events & ~kExclusiveOk)) return status(EINVAL);
  }
  ev.events |= EPOLLERR | EPOLLHUP;

  if (p_->fork_gen != tap_service::fork_generation()) return status(ENOSYS);
  // The registry lock first (nesting checks, membership), then ours.
  std::lock_guard<std::mutex> rg(reg().mu);
  std::lock_guard<std::mutex> g(p_->mu);
  if (p_->dead) return status(EBADF);
  auto it = p_->entries.find(fd);
  if (it != p_->entries.end() && (it->second.dev != st.st_dev || it->second.ino != st.st_ino)) {
    // The number was closed without ueq seeing it and now names another
    // file: Linux dropped that entry with the file, so do we.
    remove_entry(*p_, it);
    it = p_->entries.end();
  }
  switch (op) {
    case EPOLL_CTL_ADD: {
      if (it != p_->entries.end()) return status(EEXIST);
      impl* child = target ? &epoll_access::of(*target) : nullptr;
      if (child) {
        const int below = depth_below(child, p_.get());
        if (below == INT_MAX || depth_above(p_.get()) + 1 + below > kMaxNests) return status(ELOOP);
      }
      tap_handle tap;
      if (!child) {
        // An exclusive entry is registered exclusively with the host: one
        // event wakes one of the file's exclusive waiters (sets here, in
        // other processes, or kernel epoll sets), as Linux does.
        auto t = p_->svc->add(
            {.fd = fd,
             .filter = tap_filter(ev.events) | ((ev.events & EPOLLEXCLUSIVE) ? kTapExclusive : 0),
             .queue = p_->q,
             .id = static_cast<std::uint32_t>(fd)});
        if (!t) return status(t.error().value());
        tap = *t;
      }
      impl::entry& e = p_->entries[fd];
      e.fd = fd;
      e.events = ev.events;
      e.data = ev.data;
      e.tap = tap;
      e.child = child;
      e.dev = st.st_dev;
      e.ino = st.st_ino;
      e.keeps_posted = S_ISREG(st.st_mode);
      if (child) {
        add_edge(p_.get(), child);
        std::lock_guard<spin_lock> pg(child->parents_lock);
        child->parents.emplace_back(p_.get(), fd);
      }
      reg().members[fd].insert(p_.get());
      // Readiness is evaluated at ADD.
      if (impl::probe(e)) p_->enqueue(e);
      p_->settle();
      log("ctl fd=%d ADD %d events=%#x", fd_open(fd) ? fd : -1, fd, ev.events);
      return {};
    }
    case EPOLL_CTL_MOD: {
      if (it == p_->entries.end()) return status(ENOENT);
      impl::entry& e = it->second;
      if (e.events & EPOLLEXCLUSIVE) return status(EINVAL);
      const std::uint32_t filter = tap_filter(ev.events);
      if (e.tap && filter != tap_filter(e.events))
        if (status s = p_->svc->modify(e.tap, filter, 0)) return s;
      e.events = ev.events;
      e.data = ev.data;
      e.disabled = false;  // re-arms an EPOLLONESHOT entry
      e.posted = 0;        // MOD polls the file afresh, as Linux does
      // Readiness is evaluated at MOD.
      if (impl::probe(e))
        p_->enqueue(e);
      else
        p_->dequeue(e);
      p_->settle();
      return {};
    }
    default:  // EPOLL_CTL_DEL
      if (it == p_->entries.end()) return status(ENOENT);
      remove_entry(*p_, it);
      return {};
  }
}

result<int> epoll_set::wait(std::span<epoll_event> out, mono_ns deadline, const sigset_t* sigmask,
                            deliver_fn deliver, void* ctx) {
  if (out.empty()) return errno_code(EINVAL);  // as epoll_wait with maxevents 0
  const int limit = static_cast<int>(std::min<std::size_t>(out.size(), INT_MAX));
  if (!deliver) return p_->wait(-1, out, limit, deadline, sigmask, nullptr, nullptr);
  struct adapter {
    deliver_fn fn;
    void* ctx;
  } a{deliver, ctx};
  return p_->wait(
      -1, out, limit, deadline, sigmask,
      [](const epoll_event* ev, int n, void* c) {
        auto* a = static_cast<adapter*>(c);
        return a->fn(ev, n, a->ctx) ? n : 0;
      },
      &a);
}

result<int> epoll_set::impl::wait(int number, std::span<epoll_event> buf, int limit,
                                  mono_ns deadline, const sigset_t* sigmask, sink_fn sink,
                                  void* ctx) {
  for (bool checked = number < 0;;) {
    if (native.load(std::memory_order_acquire))
      return native_wait(buf, limit, deadline, sigmask, sink, ctx);
    if (fork_gen != tap_service::fork_generation()) return errno_code(ENOSYS);
    // Dispatch host events that have not been taken yet (without blocking;
    // if another thread is dispatching, it posts for us), so that whatever
    // happened before this call is seen by it, as with Linux. A full batch
    // may have left more, which would otherwise reach only a later wait (and
    // an edge-triggered entry already reported by its ADD probe would be
    // reported twice).
    for (int i = 0; i < kMaxHostBatches; ++i) {
      auto got = svc->poll(monotonic_now());
      if (!got || *got < kHostBatchFull) break;
    }
    {
      // Not across the blocking below: a uthread may resume on another vcore.
      tap_service::inside_ueq in;
      std::lock_guard<std::mutex> g(mu);
      const int n = harvest(buf, limit, sink, ctx);
      if (n < 0) return errno_code(EFAULT);
      if (n > 0) return n;
    }
    const mono_ns now = monotonic_now();
    if (now >= deadline) return 0;
    // Only here: a wait that finds events returns without a system call for
    // it, and one that blocks costs several anyway.
    if (!checked) {
      if (!named_by(number)) return errno_code(ESTALE);
      checked = true;
    }
    if (watches_host.load(std::memory_order_relaxed)) {
      // About to block in ueq: the program waits here, so this set no
      // longer needs the host watch (create()), and another may have it.
      tap_service::inside_ueq in;
      std::lock_guard<std::mutex> g(reg().mu);
      unwatch_host(*this);
    }
    // A uthread parks alone on wakeq, which every "now pending" posts to;
    // the idle vcores poll the host meanwhile. A post after our harvest
    // left its bit there, so nothing is missed. With a signal mask, ppoll
    // below keeps the mask atomic (at the price of holding the vcore).
    if (!sigmask && parks_as_uthread()) {
      auto r = block_on({wakeq.get()}, deadline);
      if (!r && r.error() != std::errc::timed_out) return r.error();
      continue;
    }
    // A plain thread leads the host poll if no thread does: it sleeps in
    // the host epoll itself (with the caller's signal mask, atomically) and
    // dispatches what it finds. Sleeping in epoll_wait there, not in poll()
    // on it, is what makes the kernel count it as woken for an
    // EPOLLEXCLUSIVE registration, so that one event wakes one exclusive
    // waiter across processes, and it saves a system call per wakeup.
    // Posts that do not come from this poll (a ctl's probe, another
    // thread's dispatch before ours began) wake it through the host's wake
    // channel: the handshake with post_hook() is on host_sleepers.
    switch (lead_host_poll(deadline, sigmask)) {
      case lead::polled:
        continue;
      case lead::interrupted:
        return errno_code(EINTR);
      case lead::busy:
        break;  // another thread polls: sleep as below
    }
    // Sleep in the kernel on our eventfd and the host's poll fd, with the
    // caller's signal mask installed atomically (ppoll): a signal handler
    // that runs makes us return EINTR, as epoll_wait does.
    pollfd fds[2] = {{evfd, POLLIN, 0}, {svc->pollable_fd(), POLLIN, 0}};
    timespec ts, *tsp = nullptr;
    if (deadline != kNoDeadline) {
      ts = to_timespec(deadline - now);
      tsp = &ts;
    }
    if (::ppoll(fds, 2, tsp, sigmask) < 0) {
      if (errno == EINTR) return errno_code(EINTR);
      return errno_code(errno);
    }
  }
}

namespace {

// Runs for every fd closed through ueq (before the close): the fd leaves
// every set that holds it; an epoll fd's number leaves its set, and the set
// is torn down with its last number.
void on_fd_close(int fd, void*) {
  std::shared_ptr<epoll_set> dying;  // released after the locks
  std::lock_guard<std::mutex> g(reg().mu);
  if (auto m = reg().members.find(fd); m != reg().members.end()) {
    const auto holders = m->second;  // remove_entry edits the map
    for (impl* s : holders) {
      std::lock_guard<std::mutex> sg(s->mu);
      if (auto it = s->entries.find(fd); it != s->entries.end()) remove_entry(*s, it);
    }
  }
  auto it = reg().by_fd.find(fd);
  if (it == reg().by_fd.end()) return;
  dying = std::move(it->second);
  reg().by_fd.erase(it);
  impl& s = epoll_access::of(*dying);
  std::erase(s.numbers, fd);
  if (!s.numbers.empty()) {
    // dup'ed numbers keep the set alive; make sure we write to an open one.
    s.epfd.store(s.numbers.front(), std::memory_order_relaxed);
    dying.reset();  // the registry still holds it under the other numbers
    return;
  }
  std::lock_guard<std::mutex> sg(s.mu);
  while (!s.entries.empty())
    remove_entry(s, s.entries.begin());
  s.dead = true;
  unwatch_host(s);
  log("close epoll fd=%d", fd);
}

}  // namespace

status epoll_close(int fd) {
  if (service()) return close_fd(fd);  // runs on_fd_close, then closes
  return ::close(fd) == 0 ? status{} : status(errno);
}

namespace {

// A new number for an open file: if the file is one of our sets, the number
// names the set too.
void register_dup(int oldfd, int newfd) {
  tap_service::inside_ueq in;
  std::lock_guard<std::mutex> g(reg().mu);
  auto it = reg().by_fd.find(oldfd);
  if (it == reg().by_fd.end()) return;
  auto set = it->second;
  reg().by_fd[newfd] = set;
  epoll_access::of(*set).numbers.push_back(newfd);
}

// dup2/dup3: newfd, if open, is closed by the call: let ueq forget it first.
int dup_over(int oldfd, int newfd, int flags, bool is_dup2) {
  if (!fd_open(oldfd)) {
    errno = EBADF;
    return -1;
  }
  if (oldfd == newfd) {
    if (is_dup2) return newfd;
    errno = EINVAL;
    return -1;
  }
  // From a signal handler that interrupted ueq on this thread, take no lock:
  // the new number is not known as an epoll fd, and registrations of the
  // file it replaces stay until their identity is checked (as after a raw
  // dup2).
  if (tap_service::inside_ueq::active())
    return is_dup2 ? ::dup2(oldfd, newfd) : ::dup3(oldfd, newfd, flags);
  if (fd_open(newfd))
    if (auto svc = service()) (*svc)->before_close(newfd);
  const int r = is_dup2 ? ::dup2(oldfd, newfd) : ::dup3(oldfd, newfd, flags);
  if (r >= 0) register_dup(oldfd, r);
  return r;
}

}  // namespace

}  // namespace ueq

// ------------------------------------------------------------------ C API

namespace {

// The size of do_wait's staging buffer, in events (3 KiB).
constexpr int kStageEvents = 256;

int fail(int e) {
  errno = e;
  return -1;
}
int fail(const std::error_code& ec) {
  return fail(ec.value());
}

// Copies between the caller's memory and ours without trusting the
// pointer: a bad address gives false (the kernel's EFAULT), never a crash.
// Where the host refuses process_vm_readv/writev on ourselves (a seccomp
// filter), plain copies are used and a bad pointer crashes as it would in
// the caller's own code.
bool copy_in(void* dst, const void* src, std::size_t n) {
  if (!src) return false;
  iovec local{dst, n}, remote{const_cast<void*>(src), n};
  const ssize_t r = ::process_vm_readv(::getpid(), &local, 1, &remote, 1, 0);
  if (r == static_cast<ssize_t>(n)) return true;
  if (r < 0 && (errno == ENOSYS || errno == EPERM)) {
    std::memcpy(dst, src, n);
    return true;
  }
  return false;
}
// Returns how many leading bytes reached dst: n, or fewer where the
// caller's buffer stops being writable.
std::size_t copy_out(void* dst, const void* src, std::size_t n) {
  if (!dst) return 0;
  iovec local{const_cast<void*>(src), n}, remote{dst, n};
  const ssize_t r = ::process_vm_writev(::getpid(), &local, 1, &remote, 1, 0);
  if (r >= 0) return static_cast<std::size_t>(r);
  if (errno == ENOSYS || errno == EPERM) {
    std::memcpy(dst, src, n);
    return n;
  }
  return 0;
}

// Linux's access_ok: the range must lie in user space (x86-64: below
// 0x7ffffffff000). Null passes; it faults only when written.
bool user_range(const void* p, std::size_t n) {
  constexpr std::uintptr_t kTaskSize = 0x7ffffffff000ull;
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  return a <= kTaskSize && n <= kTaskSize - a;
}

// Waits on one of ueq's sets (see pass_wait for the others).
int do_wait(int epfd, std::shared_ptr<ueq::epoll_set> set, epoll_event* events, int maxevents,
            ueq::mono_ns deadline, const sigset_t* user_mask) {
  // The signal mask is read first, as the kernel does.
  // The kernel's sigset is 8 bytes (glibc's sigset_t is larger): read only
  // those, as the system call would.
  sigset_t mask;
  sigemptyset(&mask);
  if (user_mask && !copy_in(&mask, user_mask, _NSIG / 8)) return fail(EFAULT);
  // Mainline (6.15+) order: EBADF, then maxevents, then the buffer's range.
  if (maxevents <= 0 || maxevents > ueq::kMaxEvents) return fail(EINVAL);
  if (!user_range(events, static_cast<std::size_t>(maxevents) * sizeof(epoll_event)))
    return fail(EFAULT);
  // Events pass through a staging buffer on the stack (not initialised:
  // harvest writes each event before the copy reads it), copied out each
  // time it fills. A fault part-way returns the events copied before it,
  // and EFAULT only when there are none, as Linux does; the events not
  // copied stay pending.
  struct staged {
    epoll_event* dst;
  } to{events};
  epoll_event stage[kStageEvents];
  auto n = ueq::epoll_access::of(*set).wait(
      epfd, std::span<epoll_event>(stage, std::min(maxevents, kStageEvents)), maxevents, deadline,
      user_mask ? &mask : nullptr,
      [](const epoll_event* ev, int k, void* c) {
        auto* t = static_cast<staged*>(c);
        const int copied = static_cast<int>(
            copy_out(t->dst, ev, static_cast<std::size_t>(k) * sizeof(epoll_event)) /
            sizeof(epoll_event));
        t->dst += copied;
        return copied;
      },
      &to);
  if (!n) {
    if (n.error().value() != ESTALE) return fail(n.error());
    // The number was closed behind ueq's back and now names another file.
    ueq::forget_number(epfd);
    return ueq::k_epoll_wait(epfd, events, maxevents, deadline, user_mask);
  }
  return *n;
}

// epoll_wait and its variants: on one of ueq's sets, or else by the kernel,
// which then gives Linux's answer (a native set, an epoll fd ueq did not
// make, EBADF, EINVAL for a file that is not an epoll fd, EFAULT).
int wait_any(int epfd, epoll_event* events, int maxevents, ueq::mono_ns deadline,
             const sigset_t* user_mask) {
  if (auto set = ueq::lookup(epfd);
      set && !ueq::epoll_access::of(*set).native.load(std::memory_order_acquire))
    return do_wait(epfd, std::move(set), events, maxevents, deadline, user_mask);
  return ueq::k_epoll_wait(epfd, events, maxevents, deadline, user_mask);
}

}  // namespace

extern "C" {

int ueq_epoll_create(int size) {
  if (size <= 0) return fail(EINVAL);
  return ueq_epoll_create1(0);
}

int ueq_epoll_create1(int flags) {
  auto s = ueq::epoll_set::create(flags);
  return s ? (*s)->fd() : fail(s.error());
}

int ueq_epoll_ctl(int epfd, int op, int fd, struct epoll_event* user_event) {
  // The event is copied in first (for every op but DEL), as the kernel does.
  epoll_event copy{};
  epoll_event* event = nullptr;
  if (op != EPOLL_CTL_DEL) {
    if (!copy_in(&copy, user_event, sizeof copy)) return fail(EFAULT);
    event = &copy;
  }
  // A set of ours is asked of the kernel (lookup_live); any other epfd (a
  // native set, an epoll fd ueq did not make, a file that is no epoll fd)
  // is the kernel's to answer.
  auto set = ueq::lookup_live(epfd);
  if (!set) return ueq::k_epoll_ctl(epfd, op, fd, user_event);
  if (fd == epfd) return ueq::fd_open(fd) ? fail(EINVAL) : fail(EBADF);
  ueq::status s = set->ctl(op, fd, event);
  return s ? fail(s.value()) : 0;
}

int ueq_epoll_wait(int epfd, struct epoll_event* events, int maxevents, int timeout) {
  return wait_any(epfd, events, maxevents, ueq::deadline_after_ms(timeout), nullptr);
}

int ueq_epoll_pwait(int epfd, struct epoll_event* events, int maxevents, int timeout,
                    const sigset_t* sigmask) {
  return wait_any(epfd, events, maxevents, ueq::deadline_after_ms(timeout), sigmask);
}

int ueq_epoll_pwait2(int epfd, struct epoll_event* events, int maxevents,
                     const struct timespec* user_timeout, const sigset_t* sigmask) {
  ueq::mono_ns deadline = ueq::kNoDeadline;
  timespec t;
  const timespec* timeout = nullptr;
  if (user_timeout) {
    if (!copy_in(&t, user_timeout, sizeof t)) return fail(EFAULT);
    timeout = &t;
  }
  if (timeout) {
    if (timeout->tv_sec < 0 || timeout->tv_nsec < 0 || timeout->tv_nsec >= 1000000000L)
      return fail(EINVAL);
    const std::int64_t max_sec = INT64_MAX / 1000000000 - 1;
    deadline = timeout->tv_sec >= max_sec
                   ? ueq::kNoDeadline
                   : ueq::deadline_after_ns(timeout->tv_sec * 1000000000LL + timeout->tv_nsec);
  }
  return wait_any(epfd, events, maxevents, deadline, sigmask);
}

int ueq_close(int fd) {
  ueq::status s = ueq::epoll_close(fd);
  return s ? fail(s.value()) : 0;
}

int ueq_dup(int fd) {
  // From a signal handler that interrupted ueq: no lock (see dup_over).
  if (ueq::tap_service::inside_ueq::active()) return ::dup(fd);
  const int n = ::dup(fd);
  if (n >= 0) ueq::register_dup(fd, n);
  return n;
}

int ueq_dup2(int oldfd, int newfd) {
  return ueq::dup_over(oldfd, newfd, 0, true);
}

int ueq_dup3(int oldfd, int newfd, int flags) {
  return ueq::dup_over(oldfd, newfd, flags, false);
}

}  // extern "C"
