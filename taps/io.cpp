// Green-thread I/O: try, and on EAGAIN block on the fd's tap, then retry.
//
// Per-fd state lives in a chunked_table (lock-free lookup). Each entry's mu
// guards its queues and taps; `nonblock` is an atomic flag read on every
// call. The read-side and write-side queues are bitmap mailboxes of one bit
// (only "something happened" matters: the caller retries the call, which
// knows the truth), created with their taps the first time a call on that
// side has to wait. The close callback (registered with the default tap
// service) tears an entry down when its fd is closed through ueq.
#include "ueq/taps/io.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <mutex>

#include "ueq/ceq/block_on.hpp"
#include "ueq/runtime/chunked_table.hpp"
#include "ueq/taps/tap.hpp"

namespace ueq::io {
namespace {

struct side {
  event_queue_ptr queue;
  tap_handle tap;
};

struct io_entry {
  std::atomic<bool> nonblock{false};  // O_NONBLOCK is known to be set
  std::mutex mu;
  side rd, wr;    // guarded by mu
  dev_t dev = 0;  // the file the sides were made for; guarded by mu
  ino_t ino = 0;
};

constexpr std::uint32_t kReadFilter = kTapReadable | kTapPriority | kTapRdhup;
constexpr std::uint32_t kAlways = kTapError | kTapHangup;

struct io_state {
  chunked_table<io_entry> table{host_max_fds()};
  tap_service* svc = nullptr;
};

// Ends both sides of an entry (under its mu): waiters see their queue closed
// and return EBADF; the taps go.
void teardown_locked(tap_service* svc, io_entry& e) {
  for (side* s : {&e.rd, &e.wr}) {
    if (s->queue) s->queue->close();
    if (s->tap.live()) (void)svc->remove(s->tap);
    *s = {};
  }
  e.nonblock.store(false, std::memory_order_relaxed);
}

void on_close(int fd, void* ctx) {
  auto* st = static_cast<io_state*>(ctx);
  io_entry* e = st->table.get(fd, false);
  if (!e) return;
  std::lock_guard<std::mutex> g(e->mu);
  teardown_locked(st->svc, *e);
}

// Created on first use, never destroyed (close callbacks may run late). A
// fork()ed child starts a new one on its own tap service.
std::mutex g_state_mu;
std::atomic<io_state*> g_state{nullptr};
std::atomic<std::uint64_t> g_state_fork_gen{0};

result<io_state*> state() {
  const std::uint64_t gen = tap_service::fork_generation();
  // acquire: pairs with the release store below.
  io_state* cur = g_state.load(std::memory_order_acquire);
  if (cur && g_state_fork_gen.load(std::memory_order_relaxed) == gen) return cur;
  std::lock_guard<std::mutex> g(g_state_mu);
  cur = g_state.load(std::memory_order_relaxed);
  if (cur && g_state_fork_gen.load(std::memory_order_relaxed) == gen) return cur;
  auto svc = tap_service::instance();
  if (!svc) return svc.error();
  auto* s = new (std::nothrow) io_state;
  if (!s || !s->table.ok()) {
    delete s;
    return errno_code(ENOMEM);
  }
  s->svc = *svc;
  s->svc->add_close_callback(&on_close, s);
  g_state_fork_gen.store(gen, std::memory_order_relaxed);
  g_state.store(s, std::memory_order_release);
  return s;
}

// The fd's entry, with O_NONBLOCK set on the fd.
result<io_entry*> prepare(int fd) {
  if (fd < 0) return errno_code(EBADF);
  auto st = state();
  if (!st) return st.error();
  io_entry* e = (*st)->table.get(fd, true);
  if (!e) return errno_code(ENOMEM);
  if (!e->nonblock.load(std::memory_order_acquire)) {
    const int fl = ::fcntl(fd, F_GETFL);
    if (fl < 0) return errno_code(errno);
    if (!(fl & O_NONBLOCK) && ::fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return errno_code(errno);
    e->nonblock.store(true, std::memory_order_release);
  }
  return e;
}

// How long a wait may sit on a side's tap before the fd's file is checked
// again. An fd closed behind ueq's back (plain ::close) and reused for a new
// file leaves its old tap deaf: the host dropped that registration with the
// old file. The file is checked when a side is made and whenever a wait
// slice passes without an event, so such a waiter recovers within one slice
// while the common path pays no check (an fstat per wait cost ~10% of an
// echo server's CPU).
constexpr std::int64_t kRecheckNs = 1'000'000'000;

// The queue of one side of the fd, created with its tap on first use. With
// `check_file`, first makes sure the fd still names the file the sides were
// made for, and starts over if not.
result<event_queue_ptr> side_queue(int fd, io_entry& e, bool write, bool check_file) {
  auto st = state();
  if (!st) return st.error();
  std::unique_lock<std::mutex> g(e.mu);
  side& s = write ? e.wr : e.rd;
  if (s.queue && !check_file) return s.queue;
  g.unlock();
  struct stat sb;
  if (::fstat(fd, &sb) != 0) return errno_code(errno);
  g.lock();
  if ((e.rd.queue || e.wr.queue) && (e.dev != sb.st_dev || e.ino != sb.st_ino)) {
    // A new file behind the old number: drop the old file's taps, and make
    // the new one non-blocking (the flag we cached was the old file's).
    teardown_locked((*st)->svc, e);
    const int fl = ::fcntl(fd, F_GETFL);
    if (fl < 0 || (!(fl & O_NONBLOCK) && ::fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0))
      return errno_code(errno);
    e.nonblock.store(true, std::memory_order_relaxed);
  }
  e.dev = sb.st_dev;
  e.ino = sb.st_ino;
  if (s.queue) return s.queue;
  auto q = event_queue::create_bitmap(1);
  if (!q) return q.error();
  auto t = (*st)->svc->add(
      {.fd = fd, .filter = (write ? kTapWritable : kReadFilter) | kAlways, .queue = *q});
  if (!t) return t.error();
  s.queue = *q;
  s.tap = *t;
  return s.queue;
}

// Blocks on the fd's read side, write side, or both until an event, the
// deadline (ETIMEDOUT) or a close through ueq (EBADF). Returns early, with
// no error, when a slice passed: the caller retries its call, and the next
// wait checks the file first.
status wait_sides(int fd, io_entry& e, bool rd, bool wr, mono_ns deadline, bool& check_file) {
  event_queue_ptr rq, wq;
  if (rd) {
    auto q = side_queue(fd, e, false, check_file);
    if (!q) return status(q.error().value());
    rq = std::move(*q);
  }
  if (wr) {
    auto q = side_queue(fd, e, true, check_file && !rd);
    if (!q) return status(q.error().value());
    wq = std::move(*q);
  }
  const mono_ns slice = std::min(deadline, deadline_after_ns(kRecheckNs));
  auto r =
      rq && wq ? block_on({rq.get(), wq.get()}, slice) : block_on({(rq ? rq : wq).get()}, slice);
  check_file = false;
  if (r) return {};
  if (r.error() == std::errc::operation_canceled) return status(EBADF);
  if (r.error() == std::errc::timed_out && slice < deadline) {
    check_file = true;
    return {};
  }
  return status(r.error().value());
}

// The retry loop every call shares.
template <class Op>
result<std::size_t> retry(int fd, bool write, mono_ns deadline, Op op) {
  auto e = prepare(fd);
  if (!e) return e.error();
  bool check_file = false;
  for (;;) {
    const ssize_t r = op();
    if (r >= 0) return static_cast<std::size_t>(r);
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return errno_code(errno);
    if (status s = wait_sides(fd, **e, !write, write, deadline, check_file)) return s.code();
  }
}

}  // namespace

result<std::size_t> read(int fd, void* buf, std::size_t n, mono_ns deadline) {
  return retry(fd, false, deadline, [&] { return ::read(fd, buf, n); });
}
result<std::size_t> write(int fd, const void* buf, std::size_t n, mono_ns deadline) {
  return retry(fd, true, deadline, [&] { return ::write(fd, buf, n); });
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
  return retry(fd, false, deadline, [&] { return ::readv(fd, iov, iovcnt); });
}
result<std::size_t> writev(int fd, const iovec* iov, int iovcnt, mono_ns deadline) {
  return retry(fd, true, deadline, [&] { return ::writev(fd, iov, iovcnt); });
}
result<std::size_t> recv(int fd, void* buf, std::size_t n, int flags, mono_ns deadline) {
  return retry(fd, false, deadline, [&] { return ::recv(fd, buf, n, flags); });
}
result<std::size_t> send(int fd, const void* buf, std::size_t n, int flags, mono_ns deadline) {
  return retry(fd, true, deadline, [&] { return ::send(fd, buf, n, flags | MSG_NOSIGNAL); });
}
result<std::size_t> recvfrom(int fd, void* buf, std::size_t n, int flags, sockaddr* from,
                             socklen_t* fromlen, mono_ns deadline) {
  return retry(fd, false, deadline, [&] { return ::recvfrom(fd, buf, n, flags, from, fromlen); });
}
result<std::size_t> sendto(int fd, const void* buf, std::size_t n, int flags, const sockaddr* to,
                           socklen_t tolen, mono_ns deadline) {
  return retry(fd, true, deadline,
               [&] { return ::sendto(fd, buf, n, flags | MSG_NOSIGNAL, to, tolen); });
}
result<std::size_t> recvmsg(int fd, msghdr* msg, int flags, mono_ns deadline) {
  return retry(fd, false, deadline, [&] { return ::recvmsg(fd, msg, flags); });
}
result<std::size_t> sendmsg(int fd, const msghdr* msg, int flags, mono_ns deadline) {
  return retry(fd, true, deadline, [&] { return ::sendmsg(fd, msg, flags | MSG_NOSIGNAL); });
}

result<int> accept(int fd, sockaddr* addr, socklen_t* addrlen, int flags, mono_ns deadline) {
  auto r = retry(fd, false, deadline, [&] {
    const int c = ::accept4(fd, addr, addrlen, flags | SOCK_NONBLOCK);
    return static_cast<ssize_t>(c);
  });
  if (!r) return r.error();
  return static_cast<int>(*r);
}

status connect(int fd, const sockaddr* addr, socklen_t addrlen, mono_ns deadline) {
  auto e = prepare(fd);
  if (!e) return status(e.error().value());
  if (::connect(fd, addr, addrlen) == 0) return {};
  // EINTR: the connection goes on asynchronously, exactly like EINPROGRESS.
  if (errno != EINPROGRESS && errno != EINTR && errno != EAGAIN) return status(errno);
  bool check_file = false;
  for (;;) {
    // Ask the socket itself, never the (possibly stale) event: only a real
    // POLLOUT/POLLERR/POLLHUP ends a connect in progress.
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, 0) == 1 && (p.revents & (POLLOUT | POLLERR | POLLHUP))) {
      int err = 0;
      socklen_t len = sizeof err;
      if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return status(errno);
      return err ? status(err) : status{};
    }
    if (status s = wait_sides(fd, **e, false, true, deadline, check_file)) return s;
  }
}

result<std::uint32_t> wait(int fd, std::uint32_t filter, mono_ns deadline) {
  if (filter == 0 || (filter & ~kTapAllFilters)) return errno_code(EINVAL);
  auto e = prepare(fd);
  if (!e) return e.error();
  const bool want_rd = filter & kReadFilter, want_wr = filter & kTapWritable;
  bool check_file = false;
  for (;;) {
    // The fd's real state decides (poll with no timeout): events in the
    // queues only say "look again".
    pollfd p{fd, static_cast<short>(filter & (POLLIN | POLLPRI | POLLOUT | POLLRDHUP)), 0};
    if (::poll(&p, 1, 0) < 0) return errno_code(errno);
    if (p.revents & POLLNVAL) return errno_code(EBADF);
    const std::uint32_t fired = static_cast<std::uint32_t>(p.revents) & (filter | kAlways);
    if (fired) return fired;
    if (status s = wait_sides(fd, **e, want_rd || !want_wr, want_wr, deadline, check_file))
      return s.code();
  }
}

status close(int fd) {
  return close_fd(fd);
}

}  // namespace ueq::io
