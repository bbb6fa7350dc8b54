// ueq/taps/tap.hpp — FD taps: host readiness becomes events in event queues.
//
// What it is for: "when fd N becomes readable (writable, hung up, ...), post
// {id, what happened, data} into this event queue". A tap is that rule. Many
// taps may watch one fd (one fd can feed many queues: several epoll sets, a
// reader and a writer; Akaros allowed one tap per fd). Each tap has its own
// host registration, so the host kernel filters each by its own events, as
// it does for several epoll instances watching one fd.
//
// Filters are Linux's EPOLL* bit values, so translation is free:
//   kTapReadable EPOLLIN, kTapPriority EPOLLPRI, kTapWritable EPOLLOUT,
//   kTapError EPOLLERR, kTapHangup EPOLLHUP, kTapRdhup EPOLLRDHUP.
// A tap receives only the bits it asked for (ask for error and hang-up to be
// told about them). Events are edge-like: a tap fires when the fd's readiness
// changes or new data arrives, and once at add/modify if the fd is ready
// (to the added or modified tap alone: the fd's other taps see no edge).
//
// Lifetime and fd reuse:
//  - A tap lives until remove() or until its fd is closed through ueq
//    (ueq::close_fd, or the epoll facade's interposed close). After remove()
//    returns, the tap posts nothing more.
//  - Every host registration carries a slot number and a generation; the
//    generation changes whenever the slot's tap goes, so a late host event
//    of an old registration is discarded.
//  - Closing a tapped fd behind ueq's back (plain ::close) is detected when
//    the fd number is tapped again for a different file (device and inode
//    differ): the old taps are dropped then. Until then they stay (a host
//    epoll registration follows the open file description, not the number:
//    close through ueq to end it at once). Rules: docs/guide.md, "Taps".
//  - Close callbacks run before the fd is closed (the epoll facade removes
//    the fd from every set there). They must not open or close fds.
//
// Who polls the host: by default, a thread blocked in a parker (block_on,
// ueq::io, the epoll facade) polls it while it waits (runtime/parker.hpp),
// one at a time; start_poller_thread() instead dedicates a thread to it
// (Akaros's "the kernel produces asynchronously" shape, for experiments).
//
// Tracing (runtime/trace.hpp): while the trace is on, each host event that
// reaches a live tap is recorded as `host_event` (stamped when the host poll
// returned) and, if the tap's filter matches, `tap`, both with the tap's id.
//
// Errors: EBADF (not an open fd), EPERM (a file the kernel cannot poll, as
// it says: most regular files and directories; pollable procfs and sysfs
// files are accepted), EINVAL (no filter, unknown filter bits, no queue),
// ENOENT (modify/remove of a removed tap), ENOMEM/ENOSPC from the host.
//
// Thread-safety: every call from any thread.
//
// Usage:
//   auto q = ueq::event_queue::create_ceq({});
//   auto t = ueq::tap_add({.fd = sock, .filter = ueq::kTapReadable | ueq::kTapHangup,
//                          .queue = *q, .id = sock, .data = 7});
//   auto r = ueq::block_on({q->get()}, deadline);   // r->msg = {sock, EPOLLIN, 7}
//   ueq::tap_remove(*t);
#pragma once

#include <signal.h>

#include <cstdint>
#include <memory>
#include <span>

#include "ueq/ceq/evq/event_queue.hpp"
#include "ueq/runtime/clock.hpp"
#include "ueq/runtime/result.hpp"
#include "ueq/runtime/trace.hpp"
#include "ueq/taps/backend.hpp"

namespace ueq {

// The taps' stages of an event's path (ueq/runtime/trace.hpp), before the
// event queues' post, wake and consume.
namespace trace_stages {
// The tap service took the event from the host backend.
inline constexpr trace_stage host_event{0, "host_event"};
// A tap's filter matched: it is about to post.
inline constexpr trace_stage tap{1, "tap"};
// Before the event queues' stages, each number once.
static_assert(host_event.number < tap.number && tap.number < post.number);
}  // namespace trace_stages

inline constexpr std::uint32_t kTapReadable = 0x001;
inline constexpr std::uint32_t kTapPriority = 0x002;
inline constexpr std::uint32_t kTapWritable = 0x004;
inline constexpr std::uint32_t kTapError = 0x008;
inline constexpr std::uint32_t kTapHangup = 0x010;
inline constexpr std::uint32_t kTapRdhup = 0x2000;
inline constexpr std::uint32_t kTapAllFilters =
    kTapReadable | kTapPriority | kTapWritable | kTapError | kTapHangup | kTapRdhup;
// Not an event but a way to register (EPOLLEXCLUSIVE's value): an event of
// the file wakes one of its exclusive registrations (in this process or
// another), as for epoll's exclusive entries, where Linux's rules hold: only
// with kTapReadable, kTapWritable, kTapError and kTapHangup; modify() of such
// a tap gives EINVAL. On the io_uring backend it is accepted and ignored.
inline constexpr std::uint32_t kTapExclusive = 1u << 28;

struct tap_spec {
  int fd = -1;
  std::uint32_t filter = 0;
  event_queue_ptr queue;
  std::uint32_t id = 0;    // the event message's id
  std::uint64_t data = 0;  // the event message's blob
};

namespace detail {
struct tap;
}

// A registered tap: a handle, copyable; dropping it does not remove the tap.
class tap_handle {
 public:
  tap_handle() = default;
  explicit operator bool() const noexcept { return t_ != nullptr; }
  int fd() const noexcept;
  bool live() const noexcept;

 private:
  friend class tap_service;
  explicit tap_handle(std::shared_ptr<detail::tap> t) : t_(std::move(t)) {}
  std::shared_ptr<detail::tap> t_;
};

struct tap_request {
  enum kind_t : std::uint8_t { add, modify, remove } kind = add;
  tap_spec spec;      // add: all of it; modify: filter and data
  tap_handle handle;  // modify/remove: the tap; add: receives the new tap
  status result;      // filled in
};

struct tap_counters {
  std::uint64_t host_events = 0;   // events returned by the host backend
  std::uint64_t posts = 0;         // tap events posted into queues
  std::uint64_t stale_events = 0;  // host events of an old registration, dropped
  std::uint64_t polls = 0;         // backend polls
  // Backend polls that failed (a host epoll fd closed behind ueq's back:
  // EBADF), and the errno of the last poll if it failed (0 once one works).
  // Not failures: EINTR, and EAGAIN/EBUSY (io_uring, completion queue
  // full). The first failure with each errno is written to stderr, and the
  // thread that polls for parked threads, or the poller thread, backs off
  // (1 ms, doubling to 64 ms, never past its deadline) while the polls keep
  // failing, instead of spinning on them.
  std::uint64_t poll_errors = 0;
  int last_poll_errno = 0;
};

class tap_service {
 public:
  // The process's service: created on first use with backend_kind::automatic
  // (UEQ_BACKEND=io_uring selects io_uring where it works), and installed as
  // the host poller of parked threads. Fails (EMFILE, ENOMEM) only if it
  // cannot be created; a later call tries again.
  static result<tap_service*> instance();
  // The process's service if it has been made (in this process: not one
  // inherited across fork()), without making it; null otherwise.
  // After a fork() the child's instance() is a new service; objects bound
  // to the old one (an epoll set made before the fork) compare
  // ueq::fork_generation() (runtime/fork.hpp) to notice.
  static tap_service* existing() noexcept;
  static result<std::unique_ptr<tap_service>> create(backend_kind kind);
  // A service on a backend of the caller's (fault injection, experiments).
  static result<std::unique_ptr<tap_service>> create(std::unique_ptr<host_backend> backend);
  ~tap_service();

  result<tap_handle> add(const tap_spec& spec);
  status modify(const tap_handle& t, std::uint32_t filter, std::uint64_t data);
  // Changes which of the fd's events the tap posts. Unlike modify(), it
  // promises no event for the fd's current readiness (the caller probes the
  // fd itself; a host call re-arms the registration, whose edge may post
  // one). With `widen`, without a host call when the host already
  // watches every bit asked for: the host then watches the union of the
  // filters since the last exact one, and dispatch posts only the bits of
  // the current filter, ready at the time of an edge of any watched bit
  // (so a consumer that takes posts as edges of its own bits must not
  // widen). Without it, the host watches exactly `filter` (a host call when
  // that changes).
  status refilter(const tap_handle& t, std::uint32_t filter, bool widen);
  status remove(const tap_handle& t);
  // Applies requests in order and stops at the first failure; returns how
  // many succeeded. Each request's `result` says how it went.
  std::size_t apply(std::span<tap_request> reqs);

  // Drops every tap on fd and its host registration. Call before closing fd
  // (close_fd does it for you).
  void forget_fd(int fd);
  // Runs the close callbacks, forgets fd's taps, then closes it. EBADF if
  // fd was not open, or is one of the runtime's own descriptors
  // (ueq::is_own_fd: a loop closing every number leaves them).
  // Async-signal-safe with respect to ueq's locks: called on a thread that
  // is inside ueq (a signal handler that interrupted it; see inside_ueq),
  // it closes the file at once but keeps the number taken (a placeholder is
  // dup2()ed over it) and leaves the callbacks, forget_fd and the number's
  // release to that thread, which runs them as it leaves ueq.
  status close_fd(int fd);
  // Everything close_fd does except the close itself: for calls that close
  // an fd implicitly (dup2/dup3 over an open newfd, exec of a CLOEXEC fd).
  void before_close(int fd);
  using close_callback = void (*)(int fd, void* ctx);
  // Registers a callback run by close_fd() (and by the facade's interposed
  // close) before the fd is closed. Returns an id for remove_close_callback.
  std::uint64_t add_close_callback(close_callback cb, void* ctx);
  void remove_close_callback(std::uint64_t id);

  // Marks the calling thread as inside ueq (it may take ueq's locks) for
  // the scope's lifetime; nests. A close_fd() by a signal handler on a
  // thread inside ueq defers its bookkeeping to the outermost scope's end,
  // where it runs on that thread with no ueq lock held. A scope must end on
  // the thread that began it: never hold one across a uthread block.
  class inside_ueq {
   public:
    inside_ueq() noexcept;
    ~inside_ueq();
    inside_ueq(const inside_ueq&) = delete;
    inside_ueq& operator=(const inside_ueq&) = delete;
    // True while the calling thread is inside such a scope.
    static bool active() noexcept;

   private:
    static void leave_with_deferred();  // the outermost exit, with closes deferred
  };

  // Host events one poll() dispatches at most (the backend may return fewer:
  // the epoll backend takes 128 from its main instance).
  static constexpr std::size_t kPollBatch = 256;
  // One backend poll (until an event, the deadline, wake() or a signal:
  // EINTR), dispatching every event to its taps. One thread at a time
  // polls; a concurrent caller returns 0 at once (EAGAIN is not an error
  // here: someone else is polling).
  result<std::size_t> poll(mono_ns deadline, const sigset_t* sigmask = nullptr);
  // The same, telling whether this call polled (false: another thread was
  // polling, and it returned 0 at once). With handoff_due, a poll that ends
  // while threads wait for the role (see below) does not hand it off: it
  // sets *handoff_due, and the caller must poll again or pass_role() before
  // it sleeps or returns (a waiter that leaves with its events hands off
  // after its harvest, not during it).
  result<std::size_t> poll(mono_ns deadline, const sigset_t* sigmask, bool& polled,
                           bool* handoff_due = nullptr);
  void wake() noexcept;

  // Waiting for the poller role. A thread that wants to sleep in poll() but
  // found another polling may sleep until the role is free instead of
  // polling for nothing: it watches role_handoff_fd() (an eventfd; watched
  // with EPOLLET, every hand-off is one edge; with EPOLLEXCLUSIVE in each of
  // several epoll instances, one hand-off wakes one sleeper), and counts
  // itself between await_role() and end_await_role(). Every poll() that
  // ends while some thread counts itself hands the role off: one edge.
  //   role_handoff_fd()  made on first call (-1 if it cannot be: EMFILE).
  //   await_role()       counts the caller; false if the role is free now
  //                      (then it is not counted: it should poll instead).
  //   end_await_role()   after the sleep, whatever woke it.
  //   pass_role()        a thread that took a hand-off (or kept one, see
  //                      poll()) and will not poll passes it on: one edge
  //                      if the role is free and a thread waits for it.
  // One such thread at a time may instead be the deputy: it sleeps watching
  // pollable_fd() itself (a host event wakes it, and it polls then), so
  // while there is a deputy no hand-off is made; a deputy that wakes owes
  // one, as if it had been handed the role.
  //   become_deputy()    true if the caller is the deputy now.
  //   end_deputy()       after its sleep.
  // The handshake (await_role()'s count then its load of the role, against
  // poll()'s release of the role then its load of the count) is in
  // tests/model/standby.pml.
  int role_handoff_fd() noexcept;
  bool await_role() noexcept;
  void end_await_role() noexcept;
  void pass_role() noexcept;
  bool become_deputy() noexcept;
  void end_deputy() noexcept;

  // Makes parked threads poll this service while they wait (instance()
  // does this). Only one service is attached at a time.
  void attach_to_parkers();
  void detach_from_parkers();
  // A thread that does nothing but poll; parked threads then only sleep.
  status start_poller_thread();
  // True while the poller thread runs.
  bool has_poller_thread() const noexcept;
  void stop_poller_thread();

  const char* backend_name() const noexcept;
  // Readable while a poll() would find host events (see host_backend).
  int pollable_fd() const noexcept;
  tap_counters counters() const noexcept;

 private:
  struct impl;
  explicit tap_service(std::unique_ptr<impl> p);
  std::unique_ptr<impl> p_;
  // The bookkeeping of a close_fd() a signal handler deferred (see there).
  void finish_deferred_close(int fd, bool reserved);
};

// The same operations on tap_service::instance(). A consumer that never
// blocks (only try_get/drain) must call poll() itself or start the poller
// thread: otherwise host events are collected only while someone waits.
result<tap_handle> tap_add(const tap_spec& spec);
status tap_modify(const tap_handle& t, std::uint32_t filter, std::uint64_t data);
status tap_remove(const tap_handle& t);
status close_fd(int fd);

}  // namespace ueq
