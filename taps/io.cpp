// Green-thread I/O: try, and on EAGAIN block on the fd's tap, then retry.
//
// No call blocks in the kernel, whatever file the fd number names when it
// is made. ueq::io is handed fd numbers, and a program may close one behind
// ueq's back (plain ::close, dup2) and reuse the number for a blocking file;
// a call must then still end by its deadline (at worst with an error), not
// block its thread (a uthread would stall its whole vcore). So nothing
// learnt about an earlier file decides whether a system call may block:
// each call asks the kernel for "do not wait" itself.
//  - recv/send/recvfrom/sendto/recvmsg/sendmsg: MSG_DONTWAIT.
//  - read/write of a socket: recv/send with MSG_DONTWAIT (what read(2) and
//    write(2) do on a socket, and a little cheaper than them).
//  - read/write/readv/writev of other files: preadv2/pwritev2 with
//    RWF_NOWAIT at offset -1 (the file position: exactly readv/writev), for
//    files that take the flag (pipes, FIFOs, eventfd reads, sockets, ...;
//    others refuse it with EOPNOTSUPP).
//  - accept, connect, and reads and writes of files that refuse
//    RWF_NOWAIT: there is no per-call flag, so O_NONBLOCK is checked
//    (F_GETFL) at every call and set if clear.
// Which way a read or write takes is kept per fd (io_entry::kind), and a
// stale kind is safe: `socket` asks per call, and recv/send on what is no
// longer a socket fail (ENOTSOCK), which makes the call look at the file
// again (fstat); `nowait` asks per call, and a file that refuses the flag
// (EOPNOTSUPP) or turns out to be a regular file (EINVAL, or EAGAIN before
// a wait) is looked at again; `flagged` checks O_NONBLOCK per call, and
// before it sets the flag makes sure (fstat) that the fd still names the
// file it was learnt for (the flag is shared by every holder of the open
// file, and a pipe dup2()ed over a terminal's number must keep its mode); `plain`
// (regular files, directories, block devices: never "not ready", so plain
// calls) confirms the file type with an fstat per call. The hot path, a
// socket or a pipe, costs the one system call it makes. Sanitizer builds
// take the flagged way where they would take the nowait one: ASan and TSan
// do not intercept preadv2/pwritev2, so they would neither check the
// buffers nor see the synchronization that a pipe carries between threads.
//
// Waiting: per fd, a read side and a write side, each a bitmap mailbox of
// one bit (only "something happened" matters: the caller retries the call,
// which knows the truth) fed by a persistent tap, made the first time a
// call on that side has to wait, for the file the fd names then (device and
// inode). An fd closed behind ueq's back and reused leaves the old file's
// taps deaf, so a wait that lasts must look at the file again. A watcher
// thread does that: every kWatchNs it bumps an epoch, and for each side
// that someone has been waiting on since before the previous bump (each
// wait stamps its sides with the epoch when it begins) it compares the
// file the fd names with the one the sides were made for, and, unless the
// file is a socket (unique by inode), polls it for what its waiter waits
// for: a file ready for that, with nobody woken, has deaf taps (eventfds
// and other files that share an inode, a FIFO opened again). Deaf sides
// are dropped as a close through ueq drops them, but without counting a
// close: their waiters see the queue closed, find no close counted, and
// retry, and the next wait makes sides for the file the number names then.
// Several callers waiting on one side share its bit, which the tap posts
// once per edge: the one that takes it wakes the others (see `share`). So a
// wait costs a few relaxed stores, a counter's two locked instructions and
// no timer, and a long wait is looked at within two periods. Where the
// watcher cannot run (no thread could be made; tried again every
// kWatchRetryNs), each wait is cut into slices of 2 * kWatchNs instead,
// after which the next wait looks at the file.
//
// Closing through ueq: the close callback (on_close, registered with the
// default tap service) drops the sides (their waiters see the queue closed:
// EBADF), forgets the kind and counts the close in io_entry::closes. A call
// notes `closes` when it begins and, once it has moved, gives EBADF instead
// of waiting: the fd it was called on is gone. io::close also marks the
// entry as closing a given file (device, inode) from before the callbacks
// until the kernel's close has returned: a call that begins in that window,
// after the callbacks, finds that file under the number and gives EBADF
// rather than make sides for it that nobody would close.
//
// Locking: io_entry::mu guards an entry's sides, file identity and closing
// mark; `kind` and `closes` are written only under it and read without it.
// Taken under it: the tap service's add/remove and a queue's close (their
// own locks). It is never held across a wait or a system call that can
// block. g_state_mu serializes making the state (made anew in a fork()ed
// child), io_state::watch_mu starting its watcher.
#include "ueq/taps/io.hpp"
#include "ueq/runtime/fork.hpp"
#include "ueq/runtime/lock.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <ctime>
#include <mutex>

#include "ueq/ceq/evq/block_on.hpp"
#include "ueq/runtime/backoff.hpp"
#include "ueq/runtime/chunked_table.hpp"
#include "ueq/runtime/fd.hpp"
#include "ueq/runtime/parker.hpp"
#include "ueq/taps/tap.hpp"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define UEQ_IO_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define UEQ_IO_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define UEQ_IO_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UEQ_IO_TSAN 1
#endif
#endif

namespace ueq::io {
namespace {

#ifdef UEQ_IO_SANITIZED
constexpr bool kUseNowait = false;
#else
constexpr bool kUseNowait = true;
#endif

// How a read or write on the fd is kept from blocking (see the top).
enum class file_kind : std::uint8_t {
  unknown,  // not looked at since the entry was made or last closed through ueq
  socket,   // read/write as recv/send with MSG_DONTWAIT; readv/writev as nowait
  nowait,   // RWF_NOWAIT per call
  flagged,  // O_NONBLOCK checked, and set if clear, per call
  plain,    // never waits for readiness: a plain call once fstat confirms the type
};

struct side {
  event_queue_ptr queue;
  tap_handle tap;
};

// The hand-over of one side's bit between the callers waiting on it (an
// eventcount). A caller notes `taken` before each try of its call; one that
// must wait counts itself in `waiting` and blocks on the side's queue with
// a wake_check (block_on.hpp) that ends the wait, after registering, if
// `taken` moved since the note (another caller took a bit after this try
// began: the edge it stood for may be this caller's too), and ends it too
// on a wake that brings no bit. A caller that takes the bit bumps `taken`,
// then, if others are counted, wakes the queue's waiters without a bit
// (event_queue::wake_waiters): each retries its call. All seq_cst: if a
// waiter's look at `taken` (after it registered) comes before the taker's
// bump in the single total order, so did its count and its registration,
// so the taker sees it counted and wakes it (registered already: in the
// queue's slot or on its list; wake_waiters' fence orders the slot's
// look as the lock orders the list's); if the
// look comes after the bump, the waiter retries its call, which sees what
// the edge announced (the bump follows the take, which follows the tap's
// post, which follows the kernel's readiness; the note came before the
// try). Waiters registered at the tap's post are woken by the post itself.
// No bit is posted again, so a taker cannot take its own hand-over and
// spin. tests/model/io_share.pml checks this handshake.
struct share {
  std::atomic<std::uint32_t> taken{0};
  std::atomic<std::uint32_t> waiting{0};
};

struct io_entry {
  // Written under mu; loaded without it by every read and write. Relaxed:
  // it publishes nothing (the call it selects reads no other field), and
  // every kind is safe for any file, so an old value costs at most a look
  // at the file and a retry.
  std::atomic<file_kind> kind{file_kind::unknown};
  // Closes through ueq so far; bumped under mu. A call loads it relaxed when
  // it begins: a call that begins after a close has returned (the bump
  // happens-before the load) sees the bump by read-after-write coherence; a
  // call that overlaps the close may see either value, and either outcome
  // (EBADF, or the kernel's answer on the fd) is right for it. The later
  // comparisons read it under mu.
  std::atomic<std::uint32_t> closes{0};
  os_mutex mu{lock_level::io_entry};
  side rd ABSL_GUARDED_BY(mu), wr ABSL_GUARDED_BY(mu);
  dev_t dev ABSL_GUARDED_BY(mu) = 0;  // the file `kind` and the sides are for
  ino_t ino ABSL_GUARDED_BY(mu) = 0;
  int closing ABSL_GUARDED_BY(mu) = 0;        // io::close calls under way
  dev_t closing_dev ABSL_GUARDED_BY(mu) = 0;  // the file they close
  ino_t closing_ino ABSL_GUARDED_BY(mu) = 0;
  // The watch epoch at the start of the latest wait on each side (0: none
  // yet). Stored by waiters, loaded by the watcher, both relaxed: a stamp
  // orders nothing, and one the watcher sees late (or an old one) only
  // moves its check of that side by a period.
  std::atomic<std::uint32_t> rd_since{0}, wr_since{0};
  // What that wait waits for (poll events), for the watcher's readiness
  // check; relaxed like the stamps.
  std::atomic<short> rd_want{0}, wr_want{0};
  share rd_share, wr_share;  // the callers waiting on each side (see `share`)
  // A read found the file's read side shut down for good (read_side_shut):
  // later reads ask at their first EAGAIN, not after a wait (the side's
  // one edge is spent). Cleared with the sides (another file, or a close).
  // Relaxed: a hint; a stale value costs a poll, or one wait that ends at
  // the next event, the deadline or the watcher.
  std::atomic<bool> rd_shut{false};
};

constexpr std::uint32_t kReadFilter = kTapReadable | kTapPriority | kTapRdhup;
constexpr std::uint32_t kAlways = kTapError | kTapHangup;

// How often the watcher looks at waited-on fds (see the top), and how long
// after a failed start one is tried again.
constexpr std::int64_t kWatchNs = 500'000'000;
constexpr std::int64_t kWatchRetryNs = 1'000'000'000;

struct io_state {
  chunked_table<io_entry> table{host_max_fds()};
  tap_service* svc = nullptr;
  // The watcher's epoch: written by the watcher alone, read relaxed by
  // waiters for their stamps. Starts at 1 (a stamp of 0 is "never").
  std::atomic<std::uint32_t> epoch{1};
  // 0: no watcher yet; 1: running; -1: could not be started, tried again
  // from retry_at on (waits are sliced meanwhile). Written under watch_mu;
  // read relaxed by waiters
  // (a stale 0 or -1 only makes a wait sliced, or takes watch_mu).
  std::atomic<int> watching{0};
  std::atomic<mono_ns> retry_at{0};
  os_mutex watch_mu{lock_level::io_state};
  std::uint64_t gen = 0;  // fork_generation() when made; read-only after
  // In a fork()ed child: the state this one replaced (the parent's), whose
  // waiters a close in the child must still end. Read-only after.
  io_state* prev = nullptr;
};

bool is_plain(const struct stat& sb) {
  return S_ISREG(sb.st_mode) || S_ISDIR(sb.st_mode) || S_ISBLK(sb.st_mode);
}

// Ends both sides of an entry (under its mu): waiters see their queue closed
// and return EBADF; the taps go.
void drop_sides_locked(tap_service* svc, io_entry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(e.mu) {
  for (side* s : {&e.rd, &e.wr}) {
    if (s->queue) s->queue->close();
    if (s->tap.live()) (void)svc->remove(s->tap);
    *s = {};
  }
  e.rd_shut.store(false, std::memory_order_relaxed);  // see io_entry::rd_shut
}

// The way to read and write the file fd names, `sb` being its fstat.
// `refused`: that file has just refused RWF_NOWAIT.
file_kind kind_of(int fd, const struct stat& sb, bool refused) {
  if (is_plain(sb)) return file_kind::plain;
  if (refused) return file_kind::flagged;
  if (S_ISSOCK(sb.st_mode)) {
    // write(2) ends a record of a SOCK_SEQPACKET socket (MSG_EOR), which
    // send(2) does not: such sockets take the nowait way, which is write(2).
    int type = 0;
    socklen_t len = sizeof type;
    if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type != SOCK_SEQPACKET)
      return file_kind::socket;
  }
  return kUseNowait ? file_kind::nowait : file_kind::flagged;
}

// Whether reads and writes of kind `k` are the right ones for a file of
// sb's type.
bool fits(file_kind k, const struct stat& sb) {
  if (is_plain(sb)) return k == file_kind::plain;
  if (k == file_kind::socket) return S_ISSOCK(sb.st_mode);
  return k == file_kind::nowait || k == file_kind::flagged;
}

// Makes the entry describe the file the fd names now, `sb` being its fstat
// (under mu). Sides made for another file go: the host dropped their taps
// with that file. `refused`: that file has just refused RWF_NOWAIT.
void adopt_locked(tap_service* svc, io_entry& e, int fd, const struct stat& sb, bool refused)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(e.mu) {
  const file_kind was = e.kind.load(std::memory_order_relaxed);  // see io_entry::kind
  const bool same = was != file_kind::unknown && e.dev == sb.st_dev && e.ino == sb.st_ino;
  // The same file, and nothing new about it: keep what was learnt (that it
  // refused RWF_NOWAIT). A kind that does not fit its type is redone
  // whatever the identity says, so that no caller loops on it.
  if (same && !refused && fits(was, sb)) return;
  if (!same) drop_sides_locked(svc, e);
  e.dev = sb.st_dev;
  e.ino = sb.st_ino;
  e.kind.store(kind_of(fd, sb, refused), std::memory_order_relaxed);  // see io_entry::kind
}

// A close in a fork()ed child, for the states of the processes before it:
// a uthread parked in a wait at the fork (the vcore that forked runs it on
// in the child) waits on such a state's queue. Its queues are closed, so the
// waiter wakes and, seeing the count moved, returns EBADF. Its taps are left
// alone: they live in the parent's host poller, which the child shares with
// the parent. try_lock and try_close: a thread that held an entry's lock or
// a queue's lock at the fork (the parent's poller posting to it) is gone,
// and that entry's waiters then keep their deadlines.
void end_waits_before_fork(io_state* st, int fd) {
  for (io_state* p = st->prev; p; p = p->prev) {
    io_entry* e = p->table.get(fd, false);
    if (!e || !e->mu.try_lock()) continue;
    for (side* s : {&e->rd, &e->wr})
      if (s->queue) (void)s->queue->try_close();
    e->closes.fetch_add(1, std::memory_order_relaxed);  // see io_entry::closes
    e->mu.unlock();
  }
}

void on_close(int fd, void* ctx) {
  auto* st = static_cast<io_state*>(ctx);
  if (st->prev) [[unlikely]]
    end_waits_before_fork(st, fd);
  io_entry* e = st->table.get(fd, false);
  if (!e) return;
  lock_guard<os_mutex> g(e->mu);
  drop_sides_locked(st->svc, *e);
  e->kind.store(file_kind::unknown, std::memory_order_relaxed);  // see io_entry::kind
  e->closes.fetch_add(1, std::memory_order_relaxed);             // see io_entry::closes
}

// Created on first use, never destroyed (close callbacks may run late). A
// fork()ed child starts a new one on its own tap service (the generation
// tells), and makes g_state_mu anew: a thread that held it is gone.
os_mutex g_state_mu{lock_level::io_state};
std::atomic<io_state*> g_state{nullptr};

result<io_state*> state() {
  const std::uint64_t gen = fork_generation();
  // acquire: pairs with the release store below.
  io_state* cur = g_state.load(std::memory_order_acquire);
  if (cur && cur->gen == gen) return cur;  // gen: written before the release store
  lock_guard<os_mutex> g(g_state_mu);
  cur = g_state.load(std::memory_order_relaxed);
  if (cur && cur->gen == gen) return cur;
  auto svc = tap_service::instance();
  if (!svc) return svc.error();
  auto* s = new (std::nothrow) io_state;
  if (!s || !s->table.ok()) {
    delete s;
    return errno_code(ENOMEM);
  }
  s->svc = *svc;
  s->gen = gen;
  s->prev = cur;  // the parent's, in a fork()ed child
  s->svc->add_close_callback(&on_close, s);
  g_state.store(s, std::memory_order_release);
  return s;
}

// The watcher's looks at an fd, as raw system calls: it looks at fds the
// program may close or reuse at that very moment, which is harmless (a
// stale answer costs a spurious drop, caught by the next look), and a
// sanitizer's wrapper would report it as a race on the fd.
bool raw_fstat(int fd, struct stat& sb) {
  return ::syscall(SYS_newfstatat, fd, "", &sb, AT_EMPTY_PATH) == 0;
}
bool raw_ready(int fd, short events) {
  pollfd p{fd, events, 0};
  const timespec zero{};
  return ::syscall(SYS_ppoll, &p, 1, &zero, nullptr, 0) == 1 && p.revents != 0;
}

// One look at an entry for the watcher, `prev` being the epoch before its
// bump. A side is due if it has been waited on since before that bump (or
// by several waiters, whose stamps are not all kept: a long wait beside a
// stream of short ones on the same side may be looked at late). The taps
// of a due side are deaf if the number names another file than the one
// they were made for (or none), or if the file is ready for what its
// waiter waits for although nothing woke it: files that share an inode
// (eventfds, timerfds, signalfds; a FIFO or tty opened again) are told
// apart only that way. Sockets are unique by inode and skip the poll.
// Deaf sides are dropped as a close through ueq drops them, but without
// counting a close: their waiters see the queue closed and retry (see
// wait_sides), and the next wait makes sides for the file there now.
void watch_entry(io_state* st, int fd, io_entry& e, std::uint32_t prev) {
  // relaxed: see io_entry::rd_since.
  const std::uint32_t rs = e.rd_since.load(std::memory_order_relaxed);
  const std::uint32_t ws = e.wr_since.load(std::memory_order_relaxed);
  if (rs == 0 && ws == 0) return;  // never waited on
  bool due = false;
  short events = 0;  // what the due sides' waiters wait for
  dev_t dev;
  ino_t ino;
  std::uint32_t closes;
  {
    lock_guard<os_mutex> g(e.mu);
    const auto look = [&](const side& s, std::uint32_t since, const std::atomic<short>& want) {
      const std::size_t k = s.queue ? s.queue->waiters() : 0;
      if (k > 1 || (k == 1 && since < prev)) {
        due = true;
        events |= want.load(std::memory_order_relaxed);  // relaxed: see io_entry::rd_want
      }
    };
    look(e.rd, rs, e.rd_want);
    look(e.wr, ws, e.wr_want);
    if (!due) return;
    dev = e.dev;
    ino = e.ino;
    closes = e.closes.load(std::memory_order_relaxed);  // under mu: see io_entry::closes
  }
  struct stat sb;
  bool deaf = !raw_fstat(fd, sb) || sb.st_dev != dev || sb.st_ino != ino;
  if (!deaf && !S_ISSOCK(sb.st_mode) && events != 0) deaf = raw_ready(fd, events);
  if (!deaf) return;
  lock_guard<os_mutex> g(e.mu);
  // Closed through ueq meanwhile: its waiters were told (EBADF).
  if (e.closes.load(std::memory_order_relaxed) != closes) return;
  drop_sides_locked(st->svc, e);
}

void* watch_main(void* arg) {
  auto* st = static_cast<io_state*>(arg);
  (void)::pthread_setname_np(::pthread_self(), "ueq-io-watch");
  for (;;) {
    timespec ts{kWatchNs / 1'000'000'000, kWatchNs % 1'000'000'000};
    while (::nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
    // relaxed: the watcher is the only writer; see io_state::epoch.
    const std::uint32_t prev = st->epoch.load(std::memory_order_relaxed);
    st->epoch.store(prev + 1, std::memory_order_relaxed);
    st->table.for_each(
        [&](std::size_t fd, io_entry& e) { watch_entry(st, static_cast<int>(fd), e, prev); });
  }
  return nullptr;
}

// Starts the state's watcher thread: detached, running until the process
// ends, with every signal blocked (the program's signals are not for it).
bool start_watcher(io_state* st) {
  sigset_t all, old;
  ::sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_attr_t attr;
  bool ok = ::pthread_attr_init(&attr) == 0;
  if (ok) {
    pthread_t t;
    ok = ::pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED) == 0 &&
         ::pthread_create(&t, &attr, &watch_main, st) == 0;
    ::pthread_attr_destroy(&attr);
  }
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return ok;
}

// True if the state's watcher runs, starting it on first use. A thread
// that could not be made (EAGAIN: the process's thread limit) is tried
// again after kWatchRetryNs; until then waits are sliced.
bool watched(io_state* st) {
  // relaxed: see io_state::watching.
  const int w = st->watching.load(std::memory_order_relaxed);
  if (w > 0) return true;
#ifdef UEQ_IO_TSAN
  // TSan kills a child that makes a thread after a multi-threaded fork:
  // waits in a fork()ed child are sliced there instead.
  if (fork_generation() != 0) return false;
#endif
  if (w < 0 && monotonic_now() < st->retry_at.load(std::memory_order_relaxed)) return false;
  lock_guard<os_mutex> g(st->watch_mu);
  if (st->watching.load(std::memory_order_relaxed) <= 0) {
    const bool ok = start_watcher(st);
    if (!ok) st->retry_at.store(deadline_after_ns(kWatchRetryNs), std::memory_order_relaxed);
    st->watching.store(ok ? 1 : -1, std::memory_order_relaxed);
  }
  return st->watching.load(std::memory_order_relaxed) > 0;
}

// fork(): in the child only the forking thread lives on. A call that
// begins in the child makes a new state on the child's tap service (state()
// compares generations), and one that goes on waiting there moves to it
// (wait_sides). A uthread already parked in an io wait at the fork, which
// the vcore that forked still runs in the child, waits on the parent's
// taps, which the child does not poll: it wakes at its deadline, or when
// the child closes the fd through ueq (end_waits_before_fork). (Waking it
// from here would mean a thread in every child, or the parent's locks,
// taken in the child.)
void renew_state_in_child() noexcept {
  new (&g_state_mu) os_mutex(lock_level::io_state);  // a thread that held it is gone
}
[[maybe_unused]] const bool g_fork_registered =
    on_fork(fork_layer::taps, {.child = &renew_state_in_child});

// One call's hold on its fd.
struct fd_ref {
  int fd;
  io_state* st;
  io_entry* e;
  std::uint32_t closes;  // e->closes when the call began
};

result<fd_ref> begin(int fd) {
  if (fd < 0) return errno_code(EBADF);
  auto st = state();
  if (!st) return st.error();
  io_entry* e = (*st)->table.get(fd, true);
  if (!e) {
    // Past the table (sized for the host's fd limit) or out of memory: the
    // kernel says whether the number is open at all.
    if (::fcntl(fd, F_GETFD) < 0) return errno_code(errno);
    return errno_code(ENOMEM);
  }
  return fd_ref{fd, *st, e, e->closes.load(std::memory_order_relaxed)};  // see io_entry::closes
}

// Looks at the file the fd names now and makes the entry describe it.
bool look(const fd_ref& c, bool refused) {
  struct stat sb;
  if (::fstat(c.fd, &sb) != 0) return false;
  tap_service::inside_ueq in_ueq;  // a signal handler's close defers (tap.hpp)
  lock_guard<os_mutex> g(c.e->mu);
  adopt_locked(c.st->svc, *c.e, c.fd, sb, refused);
  return true;
}

// Sets O_NONBLOCK on the socket the fd names now, if clear. False (errno
// set) on failure, ENOTSOCK if the fd names no socket: the flag lives on the
// open file, which others may share (a pipe dup2()ed over a listening
// socket's number keeps its mode).
bool set_nonblock_socket(int fd) {
  const int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0) return false;
  if (fl & O_NONBLOCK) return true;
  struct stat sb;
  if (::fstat(fd, &sb) != 0) return false;
  if (!S_ISSOCK(sb.st_mode)) {
    errno = ENOTSOCK;
    return false;
  }
  return ::fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0;
}

// One readv or writev that does not wait in the kernel for readiness,
// whatever file the fd names now: the system call's result (errno on -1).
// `one_buffer`: iov is read()'s or write()'s own single buffer, which a
// socket's read or write may hand to recv or send.
ssize_t rw_once(const fd_ref& c, bool write, const iovec* iov, int cnt, bool one_buffer) {
  for (;;) {
    file_kind k = c.e->kind.load(std::memory_order_relaxed);  // see io_entry::kind
    // A zero-length read(2) of a socket returns 0 and leaves the socket
    // alone, where recv(2) would consume a datagram.
    if (k == file_kind::socket && !(one_buffer && iov[0].iov_len > 0))
      k = kUseNowait ? file_kind::nowait : file_kind::flagged;
    switch (k) {
      case file_kind::socket: {
        const ssize_t r = write ? ::send(c.fd, iov[0].iov_base, iov[0].iov_len, MSG_DONTWAIT)
                                : ::recv(c.fd, iov[0].iov_base, iov[0].iov_len, MSG_DONTWAIT);
        if (r >= 0 || errno != ENOTSOCK) return r;
        if (!look(c, false)) return -1;  // the number names another file now
        break;
      }
      case file_kind::nowait: {
        const ssize_t r = write ? ::pwritev2(c.fd, iov, cnt, -1, RWF_NOWAIT)
                                : ::preadv2(c.fd, iov, cnt, -1, RWF_NOWAIT);
        if (r >= 0) return r;
        const int err = errno;
        // EOPNOTSUPP: this file does not take RWF_NOWAIT (ENOSYS: nor does
        // the kernel). EINVAL: bad arguments, or a regular file refusing it
        // for a buffered write; only the second is ours to handle.
        if (err != EOPNOTSUPP && err != ENOSYS && err != EINVAL) return r;
        struct stat sb;
        if (::fstat(c.fd, &sb) != 0) return -1;
        if (err == EINVAL && !is_plain(sb)) {
          errno = EINVAL;
          return -1;
        }
        tap_service::inside_ueq in_ueq;  // a signal handler's close defers (tap.hpp)
        lock_guard<os_mutex> g(c.e->mu);
        adopt_locked(c.st->svc, *c.e, c.fd, sb, err != EINVAL);
        break;  // now flagged or plain
      }
      case file_kind::flagged: {
        const int fl = ::fcntl(c.fd, F_GETFL);
        if (fl < 0) return -1;
        if (!(fl & O_NONBLOCK)) {
          // The flag goes on the open file description, which other holders
          // share: only on the file the entry learnt needs it. A number
          // reused behind ueq's back (a pipe dup2()ed over a terminal's)
          // is looked at afresh instead.
          struct stat sb;
          if (::fstat(c.fd, &sb) != 0) return -1;
          bool same;
          {
            tap_service::inside_ueq in_ueq;  // a signal handler's close defers (tap.hpp)
            lock_guard<os_mutex> g(c.e->mu);
            same = c.e->dev == sb.st_dev && c.e->ino == sb.st_ino;
            if (!same) adopt_locked(c.st->svc, *c.e, c.fd, sb, false);
          }
          if (!same) break;  // dispatch on what the file is
          if (::fcntl(c.fd, F_SETFL, fl | O_NONBLOCK) != 0) return -1;
        }
        return write ? ::writev(c.fd, iov, cnt) : ::readv(c.fd, iov, cnt);
      }
      case file_kind::plain: {
        struct stat sb;
        if (::fstat(c.fd, &sb) != 0) return -1;
        if (is_plain(sb)) return write ? ::writev(c.fd, iov, cnt) : ::readv(c.fd, iov, cnt);
        tap_service::inside_ueq in_ueq;  // a signal handler's close defers (tap.hpp)
        lock_guard<os_mutex> g(c.e->mu);
        adopt_locked(c.st->svc, *c.e, c.fd, sb, false);
        break;
      }
      case file_kind::unknown:
        if (!look(c, false)) return -1;
        break;
    }
  }
}

// What one call's waits have learnt so far.
struct wait_state {
  bool check_file = false;  // a slice passed: look at the file before waiting again
  bool plain_seen = false;  // a wait found a file that is never waited for
  std::uint32_t rd_taken = 0, wr_taken = 0;  // each side's `taken` before the latest try
  // Called before each try of the call (see `share`).
  void note(const fd_ref& c) noexcept {
    rd_taken = c.e->rd_share.taken.load(std::memory_order_seq_cst);
    wr_taken = c.e->wr_share.taken.load(std::memory_order_seq_cst);
  }
};

// A caller counted as waiting on the sides it waits on, for as long as it
// lives (see `share`).
class share_count {
 public:
  share_count(io_entry& e, bool rd, bool wr, const wait_state& ws) noexcept
      : rd_(rd ? &e.rd_share : nullptr), wr_(wr ? &e.wr_share : nullptr), ws_(ws) {
    for (share* s : {rd_, wr_})
      if (s) s->waiting.fetch_add(1, std::memory_order_seq_cst);
  }
  ~share_count() {
    for (share* s : {rd_, wr_})
      if (s) s->waiting.fetch_sub(1, std::memory_order_seq_cst);
  }
  share_count(const share_count&) = delete;
  share_count& operator=(const share_count&) = delete;
  // Whether a bit was taken on a side since the caller's latest try began.
  bool moved() const noexcept {
    return (rd_ && rd_->taken.load(std::memory_order_seq_cst) != ws_.rd_taken) ||
           (wr_ && wr_->taken.load(std::memory_order_seq_cst) != ws_.wr_taken);
  }
  wake_check check() const noexcept {
    return {
        [](const void* self) noexcept { return static_cast<const share_count*>(self)->moved(); },
        this};
  }
  // This caller took side `rd`'s (else wr's) bit from q: the others look
  // for themselves.
  void took(bool rd, event_queue* q) const noexcept {
    share* s = rd ? rd_ : wr_;
    s->taken.fetch_add(1, std::memory_order_seq_cst);
    if (s->waiting.load(std::memory_order_seq_cst) > 1) q->wake_waiters();
  }

 private:
  share* rd_;
  share* wr_;
  const wait_state& ws_;  // its notes: `taken` when the latest try began
};

// The queue of one side of the fd, made with its tap on first use. EBADF if
// the fd was closed through ueq since the call began, or names the file
// io::close is closing. Null when the fd names a file that is never waited
// for (a regular file the host cannot poll, reached by a call made the way
// another file needed): the caller retries at once; EAGAIN if that happens
// twice. With `check_file`, first makes sure the fd still names the file
// the sides were made for, and starts over if not.
result<event_queue_ptr> side_queue(const fd_ref& c, bool write, bool check_file, wait_state& ws) {
  io_entry& e = *c.e;
  tap_service::inside_ueq in_ueq;  // a signal handler's close defers (tap.hpp)
  unique_lock<os_mutex> g(e.mu);
  // relaxed: read under mu, which orders it with on_close's bump.
  if (e.closes.load(std::memory_order_relaxed) != c.closes) return errno_code(EBADF);
  side& s = write ? e.wr : e.rd;
  if (s.queue && !check_file) return s.queue;
  struct stat sb;
  // To the kernel, never to another uthread: the inside_ueq scope above
  // must not be held across a uthread switch (tap.hpp).
  backoff b(backoff::yield_to::kernel);
  mono_ns give_up = 0;  // set when the wait for a close begins
  for (;;) {
    g.unlock();
    if (::fstat(c.fd, &sb) != 0) return errno_code(errno);
    g.lock();
    if (e.closes.load(std::memory_order_relaxed) != c.closes) return errno_code(EBADF);
    // io::close is under way for this file: its callbacks may already have
    // dropped the sides, and a side made now would outlive the close. But
    // an anonymous-inode file (eventfd, epoll, timerfd, signalfd: no file
    // type in st_mode) shares its identity with every other one, so the
    // match may be a new file under the number, made after the kernel's
    // close: wait for the close to end, then look again. A call that began
    // before the close then sees the count moved (EBADF), one that began
    // during it finds the number closed (EBADF) or naming a new file, on
    // which it goes on. The wait lasts as long as the close; one that does
    // not end (a signal handler's call inside this thread's own close) gets
    // EBADF after ~1 s.
    if (e.closing == 0 || e.closing_dev != sb.st_dev || e.closing_ino != sb.st_ino) break;
    if ((sb.st_mode & S_IFMT) != 0) return errno_code(EBADF);
    if (give_up == 0) give_up = deadline_after_ms(1000);
    if (monotonic_now() >= give_up) return errno_code(EBADF);
    g.unlock();
    b.pause();
    g.lock();
  }
  adopt_locked(c.st->svc, e, c.fd, sb, false);
  if (s.queue) return s.queue;
  auto q = event_queue::create_bitmap(1);
  if (!q) return q.error();
  auto t = c.st->svc->add(
      {.fd = c.fd, .filter = (write ? kTapWritable : kReadFilter) | kAlways, .queue = *q});
  if (!t) {
    // A file the host cannot poll (a regular file, mostly) never waits for
    // readiness: the EAGAIN came from a call made the way the number's
    // previous file needed. The entry now says `plain`: retry at once.
    if (t.error() != std::errc::operation_not_permitted || !is_plain(sb)) return t.error();
    if (ws.plain_seen) return errno_code(EAGAIN);
    ws.plain_seen = true;
    return event_queue_ptr{};
  }
  s.queue = *q;
  s.tap = *t;
  return s.queue;
}

// Blocks on the fd's read side, write side, or both until an event, the
// deadline (ETIMEDOUT) or a close through ueq (EBADF). `want`: the poll
// events the caller waits for (the watcher's readiness check). Returns
// early, with no error, when a slice passed (the next wait looks at the
// file first), the watcher dropped the sides as deaf, or there is nothing
// to wait for: the caller retries its call.
status wait_sides(fd_ref& c, bool rd, bool wr, short want, mono_ns deadline, wait_state& ws) {
  if (c.st->gen != fork_generation()) [[unlikely]] {
    // A fork()ed child: the call goes on in the child's own state (taps of
    // its own service), as if it had begun there.
    auto fresh = begin(c.fd);
    if (!fresh) return status(fresh.error().value());
    c = *fresh;
    return {};  // its try was noted against the parent's entry
  }
  event_queue_ptr rq, wq;
  if (rd) {
    auto q = side_queue(c, false, ws.check_file, ws);
    if (!q) return status(q.error().value());
    if (!*q) return {};
    rq = std::move(*q);
  }
  if (wr) {
    auto q = side_queue(c, true, ws.check_file && !rd, ws);
    if (!q) return status(q.error().value());
    if (!*q) return {};
    wq = std::move(*q);
  }
  io_entry& e = *c.e;
  const bool watch = watched(c.st);
  // relaxed: see io_entry::rd_since.
  const std::uint32_t epoch = c.st->epoch.load(std::memory_order_relaxed);
  if (rq) {
    e.rd_want.store(static_cast<short>(want & ~POLLOUT), std::memory_order_relaxed);
    e.rd_since.store(epoch, std::memory_order_relaxed);
  }
  if (wq) {
    e.wr_want.store(static_cast<short>(want & POLLOUT), std::memory_order_relaxed);
    e.wr_since.store(epoch, std::memory_order_relaxed);
  }
  const mono_ns slice = watch ? deadline : std::min(deadline, deadline_after_ns(2 * kWatchNs));
  const share_count counted(e, rq != nullptr, wq != nullptr, ws);
  event_queue* const both[] = {rq.get(), wq.get()};
  event_queue* const one[] = {rq ? rq.get() : wq.get()};
  auto r =
      block_on(rq && wq ? std::span<event_queue* const>(both) : std::span<event_queue* const>(one),
               slice, counted.check());
  ws.check_file = false;
  if (r) {
    counted.took(r->queue == rq.get(), r->queue);
    return {};
  }
  if (r.error() == std::errc::resource_unavailable_try_again) return {};  // look again
  if (r.error() == std::errc::operation_canceled) {
    // Its sides were dropped: by a close through ueq (EBADF), or by the
    // watcher, which found them deaf (retry: the next wait makes new ones).
    // Under mu, the close's count is final.
    lock_guard<os_mutex> g(e.mu);
    // relaxed: under mu; see io_entry::closes.
    return e.closes.load(std::memory_order_relaxed) != c.closes ? status(EBADF) : status{};
  }
  if (r.error() == std::errc::timed_out && slice < deadline) {
    ws.check_file = true;
    return {};
  }
  return status(r.error().value());
}

// Whether fd's read side is shut down for good (shutdown(SHUT_RD) of a
// datagram socket or of a listener): its poll says RDHUP or HUP. The
// kernel then answers a non-blocking try with EAGAIN for ever, where a
// blocking call returns at once, and the side's one edge has been taken
// already.
bool read_side_shut(int fd) {
  pollfd p{fd, POLLIN | POLLRDHUP, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP));
}

// The retry loop every call shares. `op(ref)` makes one non-blocking try.
// A read whose try still finds nothing after a wait (or on a side found
// shut before), on a side shut down for good, tries once more (what came
// before the shutdown goes first: a stream then reads it, or its end) and
// then answers as the blocking call: 0 bytes, or `shut_errno` (accept:
// EINVAL). Asked only then, so a wait costs no extra system call.
template <class Op>
result<std::size_t> retry(int fd, bool write, mono_ns deadline, Op op, int shut_errno = 0) {
  auto c = begin(fd);
  if (!c) return c.error();
  wait_state ws;
  bool waited = false, shut = false;
  for (;;) {
    ws.note(*c);
    const ssize_t r = op(*c);
    if (r >= 0) return static_cast<std::size_t>(r);
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return errno_code(errno);
    if (shut) {
      if (shut_errno != 0) return errno_code(shut_errno);
      return std::size_t{0};
    }
    // relaxed: see io_entry::rd_shut.
    if (!write && (waited || c->e->rd_shut.load(std::memory_order_relaxed)) && read_side_shut(fd)) {
      c->e->rd_shut.store(true, std::memory_order_relaxed);
      shut = true;
      continue;
    }
    if (status s =
            wait_sides(*c, !write, write, write ? POLLOUT : POLLIN | POLLRDHUP, deadline, ws);
        !s.ok())
      return s.code();
    waited = true;
  }
}

// connect() to a local listener with a full backlog: tries again, backing
// off from 1 ms to 64 ms (a parker's timed sleep: a uthread yields its
// vcore meanwhile), until it connects, fails otherwise, the fd is closed
// through ueq (EBADF, as for a wait), or the deadline.
status connect_when_room(const fd_ref& c, const sockaddr* addr, socklen_t addrlen,
                         mono_ns deadline) {
  std::int64_t pause_ns = 1'000'000;
  for (;;) {
    const mono_ns now = monotonic_now();
    if (now >= deadline) return status(ETIMEDOUT);
    parker p;
    (void)p.park(std::min(deadline, now + pause_ns));
    pause_ns = std::min<std::int64_t>(pause_ns * 2, 64'000'000);
    // relaxed: see io_entry::closes (a close that overlaps may be missed,
    // as by any call that overlaps it).
    if (c.e->closes.load(std::memory_order_relaxed) != c.closes) return status(EBADF);
    if (::connect(c.fd, addr, addrlen) == 0) return {};
    if (errno != EAGAIN && errno != EINTR) return status(errno);
  }
}

// Whether fd is a stream socket (MSG_WAITALL waits for all of n bytes
// only there; a datagram is read whole or truncated at once).
bool stream_socket(int fd) {
  int type = 0;
  socklen_t len = sizeof type;
  return ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM;
}

}  // namespace

result<std::size_t> read(int fd, void* buf, std::size_t n, mono_ns deadline) {
  const iovec v{buf, n};
  return retry(fd, false, deadline,
               [&](const fd_ref& c) { return rw_once(c, false, &v, 1, true); });
}
result<std::size_t> write(int fd, const void* buf, std::size_t n, mono_ns deadline) {
  const iovec v{const_cast<void*>(buf), n};
  return retry(fd, true, deadline, [&](const fd_ref& c) { return rw_once(c, true, &v, 1, true); });
}
status write_all(int fd, const void* buf, std::size_t n, mono_ns deadline) {
  const char* p = static_cast<const char*>(buf);
  while (n > 0) {
    auto w = write(fd, p, n, deadline);
    if (!w) return status(w.error().value());
    p += *w;
    n -= *w;
  }
  return {};
}
result<std::size_t> readv(int fd, const iovec* iov, int iovcnt, mono_ns deadline) {
  return retry(fd, false, deadline,
               [&](const fd_ref& c) { return rw_once(c, false, iov, iovcnt, false); });
}
result<std::size_t> writev(int fd, const iovec* iov, int iovcnt, mono_ns deadline) {
  return retry(fd, true, deadline,
               [&](const fd_ref& c) { return rw_once(c, true, iov, iovcnt, false); });
}
result<std::size_t> recv(int fd, void* buf, std::size_t n, int flags, mono_ns deadline) {
  return recvfrom(fd, buf, n, flags, nullptr, nullptr, deadline);  // recv(2) is that too
}
result<std::size_t> send(int fd, const void* buf, std::size_t n, int flags, mono_ns deadline) {
  return retry(fd, true, deadline, [&](const fd_ref&) {
    return ::send(fd, buf, n, flags | MSG_DONTWAIT | MSG_NOSIGNAL);
  });
}
result<std::size_t> recvfrom(int fd, void* buf, std::size_t n, int flags, sockaddr* from,
                             socklen_t* fromlen, mono_ns deadline) {
  // MSG_WAITALL on a stream socket: what a blocking call does, n bytes
  // unless the stream ends, an error comes or the deadline passes (then
  // what arrived, if anything). MSG_DONTWAIT, which every try adds, would
  // make the kernel ignore the flag, so the tries gather the bytes here.
  const bool all =
      (flags & MSG_WAITALL) && !(flags & (MSG_PEEK | MSG_DONTWAIT)) && stream_socket(fd);
  const int once = (all ? flags & ~MSG_WAITALL : flags) | MSG_DONTWAIT;
  auto* p = static_cast<char*>(buf);
  std::size_t got = 0;
  for (;;) {
    auto r = retry(fd, false, deadline, [&](const fd_ref&) {
      return ::recvfrom(fd, p + got, n - got, once, from, fromlen);
    });
    if (!r) return got > 0 ? result<std::size_t>(got) : r;
    got += *r;
    if (!all || *r == 0 || got == n) return got;
  }
}
result<std::size_t> sendto(int fd, const void* buf, std::size_t n, int flags, const sockaddr* to,
                           socklen_t tolen, mono_ns deadline) {
  return retry(fd, true, deadline, [&](const fd_ref&) {
    return ::sendto(fd, buf, n, flags | MSG_DONTWAIT | MSG_NOSIGNAL, to, tolen);
  });
}
result<std::size_t> recvmsg(int fd, msghdr* msg, int flags, mono_ns deadline) {
  return retry(fd, false, deadline,
               [&](const fd_ref&) { return ::recvmsg(fd, msg, flags | MSG_DONTWAIT); });
}
result<std::size_t> sendmsg(int fd, const msghdr* msg, int flags, mono_ns deadline) {
  return retry(fd, true, deadline, [&](const fd_ref&) {
    return ::sendmsg(fd, msg, flags | MSG_DONTWAIT | MSG_NOSIGNAL);
  });
}

result<int> accept(int fd, sockaddr* addr, socklen_t* addrlen, int flags, mono_ns deadline) {
  auto r = retry(
      fd, false, deadline,
      [&](const fd_ref&) -> ssize_t {
        // accept4 has no per-call flag: the listening socket itself must be
        // non-blocking, checked at every try.
        if (!set_nonblock_socket(fd)) return -1;
        return ::accept4(fd, addr, addrlen, flags | SOCK_NONBLOCK);
      },
      EINVAL);
  if (!r) return r.error();
  return static_cast<int>(*r);
}

status connect(int fd, const sockaddr* addr, socklen_t addrlen, mono_ns deadline) {
  auto c = begin(fd);
  if (!c) return status(c.error().value());
  // connect has no per-call flag: the socket itself must be non-blocking.
  if (!set_nonblock_socket(fd)) return status(errno);
  if (::connect(fd, addr, addrlen) == 0) return {};
  // A local (AF_UNIX) stream socket whose listener's backlog is full: no
  // connection is in progress (the socket polls as writable, unconnected),
  // and a blocking connect would wait for room. So does this, by trying
  // again until the deadline; nothing on our side announces the room.
  if (errno == EAGAIN && addr && addr->sa_family == AF_UNIX)
    return connect_when_room(*c, addr, addrlen, deadline);
  // EINTR: the connection goes on asynchronously, exactly like EINPROGRESS.
  if (errno != EINPROGRESS && errno != EINTR) return status(errno);
  wait_state ws;
  for (;;) {
    ws.note(*c);
    // Ask the socket itself, never the (possibly stale) event: only a real
    // POLLOUT/POLLERR/POLLHUP ends a connect in progress.
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, 0) == 1 && (p.revents & (POLLOUT | POLLERR | POLLHUP))) {
      int err = 0;
      socklen_t len = sizeof err;
      if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return status(errno);
      return err ? status(err) : status{};
    }
    if (status s = wait_sides(*c, false, true, POLLOUT, deadline, ws); !s.ok()) return s;
  }
}

result<std::uint32_t> wait(int fd, std::uint32_t filter, mono_ns deadline) {
  if (filter == 0 || (filter & ~kTapAllFilters)) return errno_code(EINVAL);
  auto c = begin(fd);
  if (!c) return c.error();
  const bool want_rd = filter & kReadFilter, want_wr = filter & kTapWritable;
  wait_state ws;
  for (;;) {
    ws.note(*c);
    // The fd's real state decides (poll with no timeout): events in the
    // queues only say "look again".
    pollfd p{fd, static_cast<short>(filter & (POLLIN | POLLPRI | POLLOUT | POLLRDHUP)), 0};
    if (::poll(&p, 1, 0) < 0) return errno_code(errno);
    if (p.revents & POLLNVAL) return errno_code(EBADF);
    const std::uint32_t fired = static_cast<std::uint32_t>(p.revents) & (filter | kAlways);
    if (fired) return fired;
    if (status s = wait_sides(*c, want_rd || !want_wr, want_wr, p.events, deadline, ws); !s.ok())
      return s.code();
  }
}

status close(int fd) {
  auto st = fd >= 0 ? state() : result<io_state*>(errno_code(EBADF));
  io_entry* e = st ? (*st)->table.get(fd, true) : nullptr;
  struct stat sb;
  if (!e || ::fstat(fd, &sb) != 0) return close_fd(fd);  // EBADF if the number is not open
  {
    tap_service::inside_ueq in_ueq;  // a signal handler's close defers (tap.hpp)
    lock_guard<os_mutex> g(e->mu);
    ++e->closing;
    e->closing_dev = sb.st_dev;
    e->closing_ino = sb.st_ino;
  }
  const status s = (*st)->svc->close_fd(fd);
  tap_service::inside_ueq in_ueq;  // a signal handler's close defers (tap.hpp)
  lock_guard<os_mutex> g(e->mu);
  --e->closing;
  return s;
}

}  // namespace ueq::io
