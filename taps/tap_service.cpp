// The tap service: the fd table, the fan-out from host events to taps, and
// who polls.
//
// Every tap has its own host registration, named by a key made of a slot
// number and that slot's generation. The host kernel then filters each
// registration by its own events, exactly as it does for several epoll
// instances watching one fd: an edge of one bit never reaches a tap that
// watches another, adding or modifying one tap re-evaluates readiness for
// that tap alone, and removing one leaves the others untouched.
//
// Locking (outermost first):
//   cb_mu                  the close-callback list. Callbacks run without it.
//   fd_entry::mu           one per fd number: the fd's list of taps and the
//                          identity (device, inode) of the file they watch.
//   slot::mu               one per tap slot: the tap in it, its generation,
//                          and the tap's filter/data/live. Held while posting
//                          the slot's events, so after remove() returns no
//                          event of the tap is posted.
//   free_mu                the free-slot list.
//   event queue locks      taken inside post() (leaf locks).
// Dispatch takes only slot locks. Nothing takes fd_entry::mu or slot::mu
// while holding a queue lock.
//
// The fd and slot tables are chunked_tables: entries live as long as the
// service, so a host event for any key can always be looked up safely.
//
// Closing from a signal handler: every public call that takes the locks
// above runs inside an inside_ueq scope (a per-thread depth). A close_fd()
// on a thread whose depth is not zero is a signal handler that interrupted
// that thread, maybe while it holds one of the locks: it closes in the
// kernel and pushes (service, fd) on the thread's deferred-close stack,
// taking no lock; the outermost scope's end pops and runs the bookkeeping.
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

#include "ueq/runtime/chunked_table.hpp"
#include "ueq/runtime/fd.hpp"
#include "ueq/runtime/fork.hpp"
#include "ueq/runtime/lock.hpp"
#include "ueq/runtime/parker.hpp"
#include "ueq/runtime/scratch.hpp"
#include "ueq/runtime/sharded_counters.hpp"
#include "ueq/runtime/trace.hpp"
#include "ueq/taps/tap.hpp"

namespace ueq {

namespace {

// Per thread: how deep this thread is inside ueq, and the closes a signal
// handler made meanwhile. Only the thread itself and its signal handlers
// touch them; a handler runs to completion before the code it interrupted
// goes on, so lock-free atomics (the counter) and signal fences order them.
struct deferred_close {
  tap_service* svc;
  int fd;
  bool reserved;  // fd holds the service's placeholder: close it after the bookkeeping
};
// Static TLS (initial-exec, meson.build): 512 bytes per thread. A handler
// that closes more than this many fds while its thread is inside ueq
// leaves the rest to the identity checks, as a raw close does.
constexpr int kMaxDeferred = 32;
thread_local int tl_depth = 0;
thread_local std::atomic<int> tl_ndeferred{0};
thread_local deferred_close tl_deferred[kMaxDeferred];

// In a signal handler (or any code on a thread inside ueq). False if full.
bool push_deferred(tap_service* svc, int fd, bool reserved) noexcept {
  int n = tl_ndeferred.load(std::memory_order_relaxed);
  do {
    if (n == kMaxDeferred) return false;
    // Claim slot n before writing it: a nested handler that runs between
    // the claim and the write claims n + 1. The thread reads slots only when
    // no handler is running, so every claimed slot is written by then.
  } while (!tl_ndeferred.compare_exchange_weak(n, n + 1, std::memory_order_relaxed));
  tl_deferred[n] = {svc, fd, reserved};
  std::atomic_signal_fence(std::memory_order_release);
  return true;
}

// On the thread, not in a handler: pops the top entry, if any. A handler
// that pushes between the read of the top and the CAS makes the CAS fail,
// and the loop reads the new top.
bool pop_deferred(deferred_close& out) noexcept {
  int n = tl_ndeferred.load(std::memory_order_relaxed);
  while (n > 0) {
    std::atomic_signal_fence(std::memory_order_acquire);
    out = tl_deferred[n - 1];
    if (tl_ndeferred.compare_exchange_weak(n, n - 1, std::memory_order_relaxed)) return true;
  }
  return false;
}

}  // namespace

tap_service::inside_ueq::inside_ueq() noexcept {
  ++tl_depth;
  std::atomic_signal_fence(std::memory_order_seq_cst);  // before any lock is taken
}

bool tap_service::inside_ueq::active() noexcept {
  return tl_depth > 0;
}

// Out of line, so that the common exit saves no registers.
[[gnu::noinline]] void tap_service::inside_ueq::leave_with_deferred() {
  // Run the deferred bookkeeping, still inside (a handler's close meanwhile
  // is deferred too, and popped by this loop).
  deferred_close d;
  while (pop_deferred(d))
    d.svc->finish_deferred_close(d.fd, d.reserved);
  --tl_depth;
  std::atomic_signal_fence(std::memory_order_seq_cst);
  // A handler that ran between the last pop and the decrement saw depth 1
  // and deferred: run it now (handlers from here on see depth 0 and do
  // their own bookkeeping).
  while (pop_deferred(d)) {
    inside_ueq again;
    d.svc->finish_deferred_close(d.fd, d.reserved);
  }
}

tap_service::inside_ueq::~inside_ueq() {
  std::atomic_signal_fence(std::memory_order_seq_cst);  // after every lock is released
  if (tl_depth > 1 || tl_ndeferred.load(std::memory_order_relaxed) == 0) {
    --tl_depth;
    return;
  }
  leave_with_deferred();
}

namespace detail {
struct tap {
  tap(int fd_, event_queue_ptr queue_, std::uint32_t id_, std::uint32_t slot_,
      std::uint32_t filter_, std::uint64_t data_)
      : fd(fd_),
        queue(std::move(queue_)),
        id(id_),
        slot(slot_),
        filter(filter_),
        data(data_),
        host_filter(filter_) {}
  int fd;
  event_queue_ptr queue;
  std::uint32_t id;
  std::uint32_t slot;    // its host key is (slot << 32) | generation
  std::uint32_t filter;  // guarded by the slot's mu
  std::uint64_t data;    // guarded by the slot's mu
  // Cleared once, under the slot's mu and the fd's mu, when the tap's
  // registration ends. Atomic because tap_handle::live() reads it with
  // neither lock (a snapshot: a caller that must know for sure takes the
  // fd's mu, as remove() does); relaxed, as it publishes nothing.
  std::atomic<bool> live{true};
  // What the host registration watches: filter, or more after refilter()
  // (the union of the filters since the last modify()). Written under the
  // fd's mu; read under it, or under the slot's mu alone by refilter()'s
  // fast path. Relaxed: the calls that change one tap come from its one
  // owner, one at a time (an epoll entry's under the set's lock), so the
  // atomic only keeps that lock-free read well defined.
  std::atomic<std::uint32_t> host_filter;
};
}  // namespace detail

int tap_handle::fd() const noexcept {
  return t_ ? t_->fd : -1;
}
bool tap_handle::live() const noexcept {
  return t_ && t_->live.load(std::memory_order_relaxed);  // see detail::tap::live
}

namespace {

struct fd_entry {
  os_mutex mu{lock_level::tap_fd};
  dev_t dev = 0;  // identity of the file the taps watch
  ino_t ino = 0;
  std::vector<std::shared_ptr<detail::tap>> taps;
};

struct tap_slot {
  os_mutex mu{lock_level::tap_slot};
  std::uint32_t gen = 0;  // bumped when the slot's tap goes
  std::shared_ptr<detail::tap> tap;
};

constexpr std::size_t kMaxSlots = std::size_t{1} << 24;

// A private kernel epoll fd, made on first need and kept at a high number,
// into which a trial ADD asks the kernel whether a regular file can be
// polled. Made without a function-local static's guard: a fork() while
// another thread ran that guard's initialiser would leave the child's
// guard taken for good. acq_rel exchange: the first to publish wins; a
// loser closes its own and uses the winner's (acquire: made before).
int poll_probe_fd() noexcept {
  static constinit std::atomic<int> probe{-1};
  int fd = probe.load(std::memory_order_acquire);
  if (fd >= 0) return fd;
  const int made = hide_fd(::epoll_create1(EPOLL_CLOEXEC));
  if (made < 0) return -1;
  if (probe.compare_exchange_strong(fd, made, std::memory_order_acq_rel)) return made;
  (void)close_own(made);
  return fd;
}

}  // namespace

struct tap_service::impl {
  enum { kHostEvents, kPosts, kStale, kPolls, kPollErrors, kCount };

  std::unique_ptr<host_backend> backend;
  // /dev/null at a high number: dup2()ed over a number that a signal
  // handler closes while its thread is inside ueq, so that the number stays
  // taken until the bookkeeping has run (close_fd). -1 if it could not be
  // opened (the number is then freed at once).
  int placeholder = -1;
  ~impl() {
    if (placeholder >= 0) close_own(placeholder);
    if (const int h = handoff_fd.load(std::memory_order_relaxed); h >= 0) close_own(h);
  }
  chunked_table<fd_entry> table{host_max_fds()};
  chunked_table<tap_slot, 10> slots{kMaxSlots};
  os_mutex free_mu{lock_level::tap_lists};
  std::vector<std::uint32_t> free_slots ABSL_GUARDED_BY(free_mu);
  std::uint32_t next_slot ABSL_GUARDED_BY(free_mu) = 0;
  // True while a thread is inside poll(). Taken with an acquire exchange;
  // released with a seq_cst store that the hand-off's load of role_waiters
  // follows (see poll()).
  std::atomic<bool> polling{false};
  // The last errno of a failed backend poll (0 after a success), and the
  // parker hook's current back-off. Written by the poller (one at a time,
  // relaxed: they only steer the back-off and the report).
  std::atomic<int> last_poll_errno{0};
  std::atomic<std::int64_t> backoff_ns{0};
  std::atomic<std::uint64_t> reported{0};  // errnos (below 64) already written to stderr
  // A poll cut short or refused for now (a signal; io_uring's EBUSY or
  // EAGAIN while its completion queue is full): retried at once, not a failure.
  static bool transient(std::error_code e) noexcept {
    return e == std::errc::interrupted || e == std::errc::resource_unavailable_try_again ||
           e == std::errc::device_or_resource_busy;
  }
  // Counts a failed backend poll. True if its errno is to be reported (the
  // first time it is seen), which the caller does once it holds no role.
  bool poll_failed(int e) noexcept {
    stats.add(kPollErrors);
    last_poll_errno.store(e, std::memory_order_relaxed);
    const std::uint64_t bit = e > 0 && e < 64 ? std::uint64_t{1} << e : 1;
    return !(reported.fetch_or(bit, std::memory_order_relaxed) & bit);
  }
  void report(int e) const noexcept {
    const no_cancel nc;  // stdio: a cancellation point
    std::fprintf(stderr, "ueq: the host poll (%s backend) failed: %s\n", backend->name(),
                 std::strerror(e));
  }
  // While polls keep failing: sleeps 1 ms, doubling to 64 ms, never past
  // the deadline (a thread that polls for others then costs unpark latency,
  // at most 64 ms, rather than a spinning CPU).
  void back_off(mono_ns deadline) noexcept {
    const std::int64_t prev = backoff_ns.load(std::memory_order_relaxed);
    const std::int64_t d = std::clamp<std::int64_t>(prev * 2, kBackoffMinNs, kBackoffMaxNs);
    backoff_ns.store(d, std::memory_order_relaxed);
    const timespec ts =
        to_timespec(deadline == kNoDeadline ? d : std::min<std::int64_t>(d, time_left(deadline)));
    (void)::syscall(SYS_nanosleep, &ts, nullptr);  // no cancellation point (fd.hpp)
  }
  static constexpr std::int64_t kBackoffMinNs = 1'000'000;
  static constexpr std::int64_t kBackoffMaxNs = 64'000'000;
  // Threads counted by await_role(), and the eventfd a hand-off writes
  // (made once, on first use; closed with the service).
  std::atomic<int> role_waiters{0};
  std::atomic<int> handoff_fd{-1};
  // 1 while a thread is the deputy (become_deputy()). seq_cst: read by
  // poll() and pass_role() after the loads of the role and the waiters.
  std::atomic<int> deputy{0};
  // A hand-off is due when threads wait for the role, none watches the host
  // for them, and (pass_role) no one polls.
  bool handoff_needed() const noexcept {
    return role_waiters.load(std::memory_order_seq_cst) > 0 &&
           deputy.load(std::memory_order_seq_cst) == 0;
  }
  void hand_off() noexcept {
    const std::uint64_t one = 1;
    (void)sys_write(handoff_fd.load(std::memory_order_acquire), &one, sizeof one);
  }

  os_mutex cb_mu{lock_level::tap_lists};
  struct callback {
    std::uint64_t id;
    close_callback fn;
    void* ctx;
  };
  std::vector<callback> callbacks ABSL_GUARDED_BY(cb_mu);
  std::uint64_t next_cb ABSL_GUARDED_BY(cb_mu) = 1;

  host_poller ops{};
  bool attached ABSL_GUARDED_BY(attach_mu) = false;
  os_mutex attach_mu{lock_level::tap_attach};
  std::thread poller;
  std::atomic<bool> stop_poller{false};
  std::atomic<bool> poller_running{false};  // has_poller_thread()
  sharded_counters<kCount, 8> stats;

  fd_entry* entry(int fd, bool create) { return table.get(fd, create); }
  status locate(const tap_handle& h, std::uint32_t filter, fd_entry*& e, tap_slot*& sl);
  // The slot alone (refilter()'s fast path needs no fd entry).
  status locate_slot(const tap_handle& h, std::uint32_t filter, tap_slot*& sl);

  static std::uint64_t key(std::uint32_t slot, std::uint32_t gen) {
    return (std::uint64_t{slot} << 32) | gen;
  }

  // A free slot number, or -1 when there is none (ENOMEM).
  long take_slot() {
    lock_guard<os_mutex> g(free_mu);
    if (!free_slots.empty()) {
      const std::uint32_t s = free_slots.back();
      free_slots.pop_back();
      return s;
    }
    if (next_slot + 1 >= kMaxSlots) return -1;
    return next_slot++;
  }
  void give_slot(std::uint32_t s) {
    lock_guard<os_mutex> g(free_mu);
    free_slots.push_back(s);
  }

  // Registers the tap with the host under its slot (under the fd's mu).
  // A fresh registration reports current readiness to this tap alone.
  status attach(const std::shared_ptr<detail::tap>& t) {
    tap_slot* sl = slots.get(t->slot, true);
    if (!sl) return status(ENOMEM);
    std::uint32_t gen;
    {
      lock_guard<os_mutex> g(sl->mu);
      sl->tap = t;
      gen = sl->gen;
    }
    status s = backend->add(t->fd, t->filter, key(t->slot, gen));
    if (!s.ok()) detach_slot(*t, /*host=*/false);
    return s;
  }

  // Ends the tap's registration (under the fd's mu): no event of it is
  // posted after this returns.
  void detach_slot(detail::tap& t, bool host) {
    tap_slot* sl = slots.get(t.slot, false);
    std::uint32_t gen = 0;
    if (sl) {
      lock_guard<os_mutex> g(sl->mu);
      gen = sl->gen++;
      sl->tap.reset();
      t.live.store(false, std::memory_order_relaxed);  // see detail::tap::live
    }
    if (host) (void)backend->remove(t.fd, key(t.slot, gen));  // ENOENT/EBADF: already gone
    give_slot(t.slot);
  }

  // Drops every tap of the entry (under e.mu).
  void drop_all(fd_entry& e) {
    for (auto& t : e.taps)
      detach_slot(*t, true);
    e.taps.clear();
  }

  // `trace_ts`: when the host poll returned (nonzero only while tracing).
  void dispatch(const host_event& ev, mono_ns trace_ts) {
    const std::uint32_t slot = static_cast<std::uint32_t>(ev.key >> 32);
    const std::uint32_t gen = static_cast<std::uint32_t>(ev.key);
    tap_slot* sl = slots.get(slot, false);
    if (!sl) {
      stats.add(kStale);
      return;
    }
    lock_guard<os_mutex> g(sl->mu);
    if (sl->gen != gen || !sl->tap) {
      stats.add(kStale);
      return;
    }
    const detail::tap& t = *sl->tap;
    const std::uint32_t bits = ev.events & t.filter;
    if (trace_ts) {
      const auto fd = static_cast<std::uint64_t>(t.fd);
      trace_at(trace_ts, trace_stages::host_event, t.id, ev.events, fd);
      if (bits) trace(trace_stages::tap, t.id, bits, fd);
    }
    if (bits && t.queue->post(t.id, bits, t.data).ok()) stats.add(kPosts);
  }

  // A parked thread's host poll. While the backend keeps failing, the
  // thread sleeps a little before it returns (the parker calls again until
  // its deadline or an unpark): a broken host poller costs unpark latency
  // (at most 64 ms) rather than a spinning CPU.
  static void poll_hook(void* ctx, mono_ns deadline) noexcept {
    auto* self = static_cast<tap_service*>(ctx);
    bool polled;
    auto r = self->poll(deadline, nullptr, polled);
    if (r || !polled) return;
    if (!transient(r.error()))
      self->p_->back_off(deadline);
    else if (r.error() != std::errc::interrupted)
      ::sched_yield();  // EAGAIN/EBUSY: let whoever frees the queue run
  }
  static void wake_hook(void* ctx) noexcept { static_cast<tap_service*>(ctx)->wake(); }
};

tap_service::tap_service(std::unique_ptr<impl> p) : p_(std::move(p)) {
  p_->ops = {&impl::poll_hook, &impl::wake_hook, this};
}

tap_service::~tap_service() {
  stop_poller_thread();
  detach_from_parkers();
}

result<std::unique_ptr<tap_service>> tap_service::create(backend_kind kind) {
  auto b = make_backend(kind);
  if (!b) return b.error();
  return create(std::move(b).value());
}

result<std::unique_ptr<tap_service>> tap_service::create(std::unique_ptr<host_backend> backend) {
  if (!backend) return errno_code(EINVAL);
  std::unique_ptr<impl> p(new (std::nothrow) impl);
  if (!p || !p->table.ok() || !p->slots.ok()) return errno_code(ENOMEM);
  p->backend = std::move(backend);
  p->placeholder = hide_fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  std::unique_ptr<tap_service> s(new (std::nothrow) tap_service(std::move(p)));
  if (!s) return errno_code(ENOMEM);
  return s;
}

namespace {
// The process's default service. Created on first use and never destroyed
// (threads may still poll through it while static destructors run).
os_mutex g_default_mu{lock_level::tap_default};
std::atomic<tap_service*> g_default{nullptr};

// fork(): the child must not share the parent's host poller (its epoll
// instance is one open file for both). The child forgets the inherited
// service (leaking it: its poller thread, if any, did not survive the fork,
// so it cannot be shut down cleanly) and makes its own on first use.
void forget_default_in_child() noexcept {
  new (&g_default_mu) os_mutex(lock_level::tap_default);  // a thread that held it is gone
  g_default.store(nullptr, std::memory_order_relaxed);
}
[[maybe_unused]] const bool g_fork_registered =
    on_fork(fork_layer::taps, {.child = &forget_default_in_child});

result<tap_service*> default_service() {
  // acquire: pairs with the release store below.
  if (tap_service* s = g_default.load(std::memory_order_acquire)) return s;
  // Inside ueq while the service is made: its host poller's own calls
  // (epoll_create1, epoll_ctl) must reach the kernel, not an interposed
  // facade that would ask for this same service (the preload library
  // routes every call made inside ueq to the C library).
  tap_service::inside_ueq in;
  lock_guard<os_mutex> g(g_default_mu);
  if (tap_service* s = g_default.load(std::memory_order_relaxed)) return s;
  auto made = tap_service::create(backend_kind::automatic);
  if (!made) return made.error();  // not cached: a later call may succeed
  tap_service* s = made.value().release();
  s->attach_to_parkers();
  g_default.store(s, std::memory_order_release);
  return s;
}
}  // namespace

result<tap_service*> tap_service::instance() {
  return default_service();
}

tap_service* tap_service::existing() noexcept {
  return g_default.load(std::memory_order_acquire);  // pairs with default_service()'s store
}

result<tap_handle> tap_service::add(const tap_spec& spec) {
  inside_ueq in;
  if (spec.fd < 0) return errno_code(EBADF);
  constexpr std::uint32_t kExclusiveOk = kTapReadable | kTapWritable | kTapError | kTapHangup;
  if (!(spec.filter & kTapAllFilters) || (spec.filter & ~(kTapAllFilters | kTapExclusive)) ||
      ((spec.filter & kTapExclusive) && (spec.filter & kTapAllFilters & ~kExclusiveOk)) ||
      !spec.queue)
    return errno_code(EINVAL);
  struct stat st;
  if (::fstat(spec.fd, &st) != 0) return errno_code(EBADF);
  // A regular file or directory may have no poll operation (EPERM, as from
  // Linux's epoll) or one (procfs, sysfs): a trial ADD into a private kernel
  // epoll fd, made once and kept at a high number, asks the kernel.
  if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) {
    const int probe = poll_probe_fd();
    epoll_event pe{};
    if (probe < 0 || ::epoll_ctl(probe, EPOLL_CTL_ADD, spec.fd, &pe) != 0) {
      if (probe < 0 || errno == EPERM) return errno_code(EPERM);
    } else {
      (void)::epoll_ctl(probe, EPOLL_CTL_DEL, spec.fd, nullptr);
    }
  }
  fd_entry* e = p_->entry(spec.fd, true);
  if (!e) return errno_code(ENOMEM);
  const long slot = p_->take_slot();
  if (slot < 0) return errno_code(ENOMEM);
  auto t = std::make_shared<detail::tap>(spec.fd, spec.queue, spec.id,
                                         static_cast<std::uint32_t>(slot), spec.filter, spec.data);
  lock_guard<os_mutex> g(e->mu);
  if (!e->taps.empty() && (e->dev != st.st_dev || e->ino != st.st_ino))
    p_->drop_all(*e);  // the number was closed behind our back and reused
  if (status s = p_->attach(t); !s.ok()) return s.code();
  e->dev = st.st_dev;
  e->ino = st.st_ino;
  e->taps.push_back(t);
  return tap_handle(std::move(t));
}

// The checks modify() and refilter() share: a handle, a filter of event
// bits, and the tap's fd entry and slot (ENOENT once they are gone).
status tap_service::impl::locate_slot(const tap_handle& h, std::uint32_t filter, tap_slot*& sl) {
  if (!h.t_) return status(EINVAL);
  if (filter == 0 || (filter & ~kTapAllFilters)) return status(EINVAL);
  sl = slots.get(h.t_->slot, false);
  return sl ? status{} : status(ENOENT);
}

status tap_service::impl::locate(const tap_handle& h, std::uint32_t filter, fd_entry*& e,
                                 tap_slot*& sl) {
  if (status s = locate_slot(h, filter, sl); !s.ok()) return s;
  e = entry(h.t_->fd, false);
  return e ? status{} : status(ENOENT);
}

status tap_service::modify(const tap_handle& h, std::uint32_t filter, std::uint64_t data) {
  inside_ueq in;
  fd_entry* e;
  tap_slot* sl;
  if (status s = p_->locate(h, filter, e, sl); !s.ok()) return s;
  lock_guard<os_mutex> g(e->mu);
  std::uint32_t gen, old_filter;
  std::uint64_t old_data;
  {
    lock_guard<os_mutex> sg(sl->mu);
    if (!h.t_->live.load(std::memory_order_relaxed)) return status(ENOENT);
    if (h.t_->filter & kTapExclusive) return status(EINVAL);  // as epoll's MOD of one
    old_filter = h.t_->filter;
    old_data = h.t_->data;
    h.t_->filter = filter;
    h.t_->data = data;
    gen = sl->gen;
  }
  // Re-arms this tap's registration alone: the host re-evaluates readiness
  // for it, as Linux does at EPOLL_CTL_MOD. On failure the tap keeps what it
  // had (the host still has the old registration).
  status s = p_->backend->modify(h.t_->fd, filter, impl::key(h.t_->slot, gen));
  if (!s.ok()) {
    lock_guard<os_mutex> sg(sl->mu);
    h.t_->filter = old_filter;
    h.t_->data = old_data;
  } else {
    h.t_->host_filter.store(filter, std::memory_order_relaxed);
  }
  return s;
}

status tap_service::refilter(const tap_handle& h, std::uint32_t filter, bool widen) {
  inside_ueq in;
  tap_slot* sl;
  if (status s = p_->locate_slot(h, filter, sl); !s.ok()) return s;
  std::uint32_t gen, keep;
  {
    // The common MOD (no host call: a level-triggered mask within what
    // the host watches, or an edge-triggered one equal to it): the slot's
    // lock alone, the one dispatch reads the filter under.
    lock_guard<os_mutex> sg(sl->mu);
    if (!h.t_->live.load(std::memory_order_relaxed)) return status(ENOENT);
    keep = h.t_->filter & kTapExclusive;
    const std::uint32_t wanted = filter | keep;
    const std::uint32_t host = h.t_->host_filter.load(std::memory_order_relaxed);
    if (widen ? !(wanted & ~host) : wanted == host) {
      h.t_->filter = wanted;  // the host already watches what it must
      return {};
    }
  }
  fd_entry* e = p_->entry(h.t_->fd, false);
  if (!e) return status(ENOENT);
  lock_guard<os_mutex> g(e->mu);
  {
    // The filters are as the fast path saw them: only the tap's owner
    // changes them, one call at a time.
    lock_guard<os_mutex> sg(sl->mu);
    if (!h.t_->live.load(std::memory_order_relaxed)) return status(ENOENT);
    gen = sl->gen;
  }
  if (keep) return status(EINVAL);  // an exclusive registration cannot be modified
  // The host must watch more (the union), or exactly the new filter:
  // re-armed (its edge for the current readiness passes the new filter,
  // like any event).
  const std::uint32_t host =
      widen ? h.t_->host_filter.load(std::memory_order_relaxed) | filter : filter;
  if (status s = p_->backend->modify(h.t_->fd, host, impl::key(h.t_->slot, gen)); !s.ok()) return s;
  h.t_->host_filter.store(host, std::memory_order_relaxed);
  lock_guard<os_mutex> sg(sl->mu);
  h.t_->filter = filter;
  return {};
}

status tap_service::remove(const tap_handle& h) {
  inside_ueq in;
  if (!h) return status(EINVAL);
  fd_entry* e = p_->entry(h.t_->fd, false);
  if (!e) return status(ENOENT);
  lock_guard<os_mutex> g(e->mu);
  if (!h.t_->live.load(std::memory_order_relaxed)) return status(ENOENT);
  p_->detach_slot(*h.t_, true);
  std::erase(e->taps, h.t_);
  return {};
}

std::size_t tap_service::apply(std::span<tap_request> reqs) {
  std::size_t done = 0;
  for (tap_request& r : reqs) {
    switch (r.kind) {
      case tap_request::add: {
        auto t = add(r.spec);
        r.result = t ? status{} : status(t.error().value());
        if (t) r.handle = *t;
        break;
      }
      case tap_request::modify:
        r.result = modify(r.handle, r.spec.filter, r.spec.data);
        break;
      case tap_request::remove:
        r.result = remove(r.handle);
        break;
    }
    if (!r.result.ok()) break;
    ++done;
  }
  return done;
}

void tap_service::forget_fd(int fd) {
  inside_ueq in;
  fd_entry* e = p_->entry(fd, false);
  if (!e) return;
  lock_guard<os_mutex> g(e->mu);
  p_->drop_all(*e);
}

void tap_service::before_close(int fd) {
  inside_ueq in;
  std::vector<impl::callback> cbs;
  {
    lock_guard<os_mutex> g(p_->cb_mu);
    cbs = p_->callbacks;
  }
  for (auto& c : cbs)
    c.fn(fd, c.ctx);
  forget_fd(fd);
}

status tap_service::close_fd(int fd) {
  if (fd < 0 || ::fcntl(fd, F_GETFD) < 0) return status(EBADF);
  // One of the runtime's own descriptors (the host poller, an eventfd) is no
  // file of the program's: as the kernel answers for a number the program
  // never opened, so that a loop that closes every number keeps ueq working.
  if (is_own_fd(fd)) return status(EBADF);
  if (tl_depth > 0) {
    // A signal handler that interrupted this thread inside ueq: take no
    // lock. The file is closed now, but its number stays taken (dup2 of the
    // placeholder over it: atomic, async-signal-safe) until the bookkeeping
    // runs as the thread leaves ueq; otherwise ueq, busy on this thread,
    // could be handed the number for a new file (a set being made) and the
    // bookkeeping would tear that down. If the stack is full the bookkeeping
    // never runs, and stale registrations are caught by the identity checks
    // of a later add, as after a raw close.
    if (p_->placeholder >= 0 && ::dup2(p_->placeholder, fd) == fd) {
      if (!push_deferred(this, fd, true)) (void)sys_close(fd);
      return {};
    }
    (void)push_deferred(this, fd, false);
    return sys_close(fd) == 0 ? status{} : status(errno);
  }
  before_close(fd);
  return sys_close(fd) == 0 ? status{} : status(errno);
}

void tap_service::finish_deferred_close(int fd, bool reserved) {
  before_close(fd);
  if (reserved) (void)sys_close(fd);  // the placeholder: the number is free now
}

std::uint64_t tap_service::add_close_callback(close_callback cb, void* ctx) {
  inside_ueq in;
  lock_guard<os_mutex> g(p_->cb_mu);
  p_->callbacks.push_back({p_->next_cb, cb, ctx});
  return p_->next_cb++;
}

void tap_service::remove_close_callback(std::uint64_t id) {
  inside_ueq in;
  lock_guard<os_mutex> g(p_->cb_mu);
  std::erase_if(p_->callbacks, [id](const impl::callback& c) { return c.id == id; });
}

result<std::size_t> tap_service::poll(mono_ns deadline, const sigset_t* sigmask) {
  bool polled;
  return poll(deadline, sigmask, polled);
}

result<std::size_t> tap_service::poll(mono_ns deadline, const sigset_t* sigmask, bool& polled,
                                      bool* handoff_due) {
  inside_ueq in;  // dispatch takes slot locks
  // acquire: the previous poller's dispatching happened before ours.
  polled = !p_->polling.exchange(true, std::memory_order_acquire);
  if (!polled) return std::size_t{0};
  scratch<host_event, kPollBatch> evs;  // filled by the backend: no zero-fill per poll
  auto n = p_->backend->poll(evs.span(), deadline, sigmask);
  p_->stats.add(impl::kPolls);
  bool report = false;
  if (n) {
    if (p_->last_poll_errno.load(std::memory_order_relaxed) != 0) {
      p_->last_poll_errno.store(0, std::memory_order_relaxed);
      p_->backoff_ns.store(0, std::memory_order_relaxed);
    }
  } else if (!impl::transient(n.error())) {
    report = p_->poll_failed(n.error().value());
  }
  if (n) {
    p_->stats.add(impl::kHostEvents, *n);
    const mono_ns trace_ts = trace_enabled() ? monotonic_now() : 0;
    for (std::size_t i = 0; i < *n; ++i)
      p_->dispatch(evs[i], trace_ts);
  }
  // seq_cst store, then seq_cst load of role_waiters: pairs with
  // await_role()'s increment and load of polling (tests/model/standby.pml).
  // Of the two, at least one sees the other: the waiter polls itself, or it
  // is counted here and gets the hand-off. The store also releases our
  // dispatching to the next poller's acquire exchange.
  p_->polling.store(false, std::memory_order_seq_cst);
  const bool due = p_->handoff_needed();
  if (handoff_due)
    *handoff_due = due;  // the caller's to pass on
  else if (due)
    p_->hand_off();
  if (report) p_->report(n.error().value());  // not while holding the role
  return n;
}

void tap_service::wake() noexcept {
  p_->backend->wake();
}

int tap_service::role_handoff_fd() noexcept {
  // acquire: pairs with the release CAS below (the fd is open by then).
  int fd = p_->handoff_fd.load(std::memory_order_acquire);
  if (fd >= 0) return fd;
  const int made = hide_fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (made < 0) return -1;
  if (p_->handoff_fd.compare_exchange_strong(fd, made, std::memory_order_acq_rel)) return made;
  close_own(made);  // another thread made it first: fd is theirs
  return fd;
}

bool tap_service::await_role() noexcept {
  // seq_cst increment, then seq_cst load of polling: see poll().
  p_->role_waiters.fetch_add(1, std::memory_order_seq_cst);
  if (p_->polling.load(std::memory_order_seq_cst)) return true;
  p_->role_waiters.fetch_sub(1, std::memory_order_seq_cst);
  return false;
}

void tap_service::end_await_role() noexcept {
  p_->role_waiters.fetch_sub(1, std::memory_order_seq_cst);
}

void tap_service::pass_role() noexcept {
  // seq_cst loads, in poll()'s order: a waiter counted after them sees the
  // role free itself (or held by a poller that will hand it off). A deputy
  // that ends after our load of it owes a hand-off itself.
  if (p_->handoff_needed() && !p_->polling.load(std::memory_order_seq_cst)) p_->hand_off();
}

bool tap_service::become_deputy() noexcept {
  int none = 0;
  return p_->deputy.compare_exchange_strong(none, 1, std::memory_order_seq_cst);
}

void tap_service::end_deputy() noexcept {
  p_->deputy.store(0, std::memory_order_seq_cst);
}

void tap_service::attach_to_parkers() {
  lock_guard<os_mutex> g(p_->attach_mu);
  if (p_->attached || p_->poller.joinable()) return;
  p_->attached = true;
  set_host_poller(&p_->ops);
}

void tap_service::detach_from_parkers() {
  lock_guard<os_mutex> g(p_->attach_mu);
  if (!p_->attached) return;
  p_->attached = false;
  set_host_poller(nullptr);
}

status tap_service::start_poller_thread() {
  lock_guard<os_mutex> g(p_->attach_mu);
  if (p_->poller.joinable()) return status(EBUSY);
  if (p_->attached) {
    set_host_poller(nullptr);  // parked threads now only sleep
    p_->attached = false;
  }
  p_->stop_poller.store(false, std::memory_order_relaxed);
  try {
    p_->poller = std::thread([this] {
      // acquire: pairs with the release store in stop_poller_thread().
      while (!p_->stop_poller.load(std::memory_order_acquire)) {
        auto r = poll(kNoDeadline);
        // stop_poller_thread() wakes the poll; a back-off sleep ends by itself.
        if (!r && !impl::transient(r.error()))
          p_->back_off(kNoDeadline);
        else if (!r && r.error() != std::errc::interrupted)
          ::sched_yield();  // EAGAIN/EBUSY: let whoever frees the queue run
      }
    });
  } catch (const std::system_error& e) {
    return status(e.code().value());
  }
  // release: pairs with has_poller_thread(). Then a caller asleep in the
  // host poll (an epoll waiter leading it) returns and leaves it to us.
  p_->poller_running.store(true, std::memory_order_release);
  wake();
  return {};
}

bool tap_service::has_poller_thread() const noexcept {
  return p_->poller_running.load(std::memory_order_acquire);
}

void tap_service::stop_poller_thread() {
  std::thread t;
  {
    lock_guard<os_mutex> g(p_->attach_mu);
    if (!p_->poller.joinable()) return;
    p_->stop_poller.store(true, std::memory_order_release);
    p_->poller_running.store(false, std::memory_order_relaxed);
    t = std::move(p_->poller);
  }
  wake();
  t.join();
}

const char* tap_service::backend_name() const noexcept {
  return p_->backend->name();
}
int tap_service::pollable_fd() const noexcept {
  return p_->backend->pollable_fd();
}

tap_counters tap_service::counters() const noexcept {
  return {p_->stats.read(impl::kHostEvents), p_->stats.read(impl::kPosts),
          p_->stats.read(impl::kStale),      p_->stats.read(impl::kPolls),
          p_->stats.read(impl::kPollErrors), p_->last_poll_errno.load(std::memory_order_relaxed)};
}

result<tap_handle> tap_add(const tap_spec& spec) {
  auto s = default_service();
  if (!s) return s.error();
  return (*s)->add(spec);
}
status tap_modify(const tap_handle& t, std::uint32_t filter, std::uint64_t data) {
  auto s = default_service();
  return s ? (*s)->modify(t, filter, data) : status(s.error().value());
}
status tap_remove(const tap_handle& t) {
  auto s = default_service();
  return s ? (*s)->remove(t) : status(s.error().value());
}
status close_fd(int fd) {
  auto s = default_service();
  if (!s) return fd >= 0 && sys_close(fd) == 0 ? status{} : status(errno ? errno : EBADF);
  return (*s)->close_fd(fd);
}

}  // namespace ueq
