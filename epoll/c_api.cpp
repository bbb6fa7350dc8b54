// The C ABI of the facade (<ueq/epoll.h>): copies in and out of the
// caller's memory without trusting its pointers, errno, and the calls on
// epoll fds ueq did not make, passed through to the kernel.
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "kcall.hpp"
#include "registry.hpp"
#include "ueq/epoll.h"
#include "ueq/runtime/fd.hpp"
#include "ueq/runtime/fork.hpp"

namespace {

// What the program asked of ueq, for the summary at exit (UEQ_STATS=stderr,
// or a file to append to; ueq-run --stats sets it). Counted only when on:
// relaxed increments, read once at exit.
struct call_stats {
  std::atomic<std::uint64_t> sets{0}, add{0}, mod{0}, del{0}, other_op{0}, ctl_failed{0}, waits{0},
      events{0}, passed{0};
};
call_stats g_stats;
// Set before main() when UEQ_STATS is: the summary's destination, opened
// only at exit (a file opened now would take a low fd number from the
// program, or be closed by it).
const char* g_stats_out = nullptr;

void count(std::atomic<std::uint64_t>& c, std::uint64_t n = 1) {
  if (g_stats_out) c.fetch_add(n, std::memory_order_relaxed);
}

void print_stats() {
  const bool to_stderr = !std::strcmp(g_stats_out, "stderr") || !std::strcmp(g_stats_out, "1");
  FILE* out = to_stderr ? stderr : std::fopen(g_stats_out, "ae");
  if (!out) return;
  auto v = [](const std::atomic<std::uint64_t>& c) {
    return static_cast<unsigned long long>(c.load(std::memory_order_relaxed));
  };
  const call_stats& s = g_stats;
  const unsigned long long ctls = v(s.add) + v(s.mod) + v(s.del) + v(s.other_op);
  std::fprintf(out, "ueq: pid %d (%s): ", static_cast<int>(::getpid()),
               program_invocation_short_name);
  if (v(s.sets) + ctls + v(s.waits) + v(s.passed) == 0) {
    std::fprintf(out,
                 "no epoll call reached ueq; the program ran as it would without it "
                 "(poll, select and raw system calls are not intercepted)\n");
  } else {
    std::fprintf(out,
                 "sets made %llu; ctl calls %llu (ADD %llu, MOD %llu, DEL %llu; failed %llu); "
                 "waits %llu, events returned %llu; calls on epoll fds ueq did not make, "
                 "passed to the kernel %llu\n",
                 v(s.sets), ctls, v(s.add), v(s.mod), v(s.del), v(s.ctl_failed), v(s.waits),
                 v(s.events), v(s.passed));
  }
  if (to_stderr)
    std::fflush(out);
  else
    std::fclose(out);
}

// A fork()ed child counts its own calls.
void reset_stats_in_child() noexcept {
  for (auto* c : {&g_stats.sets, &g_stats.add, &g_stats.mod, &g_stats.del, &g_stats.other_op,
                  &g_stats.ctl_failed, &g_stats.waits, &g_stats.events, &g_stats.passed})
    c->store(0, std::memory_order_relaxed);
}

[[maybe_unused]] const bool g_stats_on = [] {
  const char* v = std::getenv("UEQ_STATS");
  if (!v || !*v || !std::strcmp(v, "0")) return false;
  g_stats_out = v;  // the environment outlives the exit handlers
  std::atexit(print_stats);
  (void)ueq::on_fork(ueq::fork_layer::epoll, {.child = &reset_stats_in_child});
  return true;
}();

const char* op_name(int op) {
  switch (op) {
    case EPOLL_CTL_ADD:
      return "ADD";
    case EPOLL_CTL_MOD:
      return "MOD";
    case EPOLL_CTL_DEL:
      return "DEL";
    default:
      return "op?";
  }
}

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
// The pid is asked of the kernel each time: a cached one would name the
// parent in a child made without fork handlers (a raw clone), and the copy
// would read the parent's memory.
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
// An epoll_event copied in from the caller: the kernel is asked whether it
// can read it (epoll_ctl copies the event in before it looks at either fd,
// so with both fds -1 it fails with EFAULT for an unreadable pointer and
// EBADF otherwise, and touches nothing), then it is read. One cheap system
// call instead of copy_in's two; a caller that unmaps the memory between
// the two steps, from another thread, races its own call.
bool copy_event_in(epoll_event* dst, const epoll_event* src) {
  if (!src) return false;
  if (ueq::k_epoll_ctl(-1, EPOLL_CTL_MOD, -1, src) != 0 && errno == EFAULT) return false;
  std::memcpy(dst, src, sizeof *dst);
  return true;
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
    ueq::forget_set_number(epfd, &ueq::epoll_access::of(*set));
    return ueq::epoll_pwait_until(epfd, events, maxevents, deadline, user_mask);
  }
  return *n;
}

// epoll_wait and its variants: on one of ueq's sets, or else by the kernel,
// which then gives Linux's answer (a native set, an epoll fd ueq did not
// make, EBADF, EINVAL for a file that is not an epoll fd, EFAULT).
int wait_any(int epfd, epoll_event* events, int maxevents, ueq::mono_ns deadline,
             const sigset_t* user_mask) {
  int n;
  if (auto set = ueq::lookup(epfd);
      set && !ueq::epoll_access::of(*set).native.load(std::memory_order_acquire)) {
    n = do_wait(epfd, std::move(set), events, maxevents, deadline, user_mask);
  } else {
    count(g_stats.passed);
    n = ueq::epoll_pwait_until(ueq::program_fd(epfd), events, maxevents, deadline, user_mask);
  }
  if (g_stats_out || ueq::log_verbose()) {
    const int e = errno;
    count(g_stats.waits);
    if (n > 0) count(g_stats.events, static_cast<std::uint64_t>(n));
    if (ueq::log_verbose())
      ueq::log("wait epfd=%d maxevents=%d -> %d%s%s", epfd, maxevents, n, n < 0 ? " " : "",
               n < 0 ? std::strerror(e) : "");
    errno = e;
  }
  return n;
}

// ueq_epoll_ctl's work; the wrapper counts and logs.
int ctl(int epfd, int op, int fd, struct epoll_event* user_event) {
  // Any epfd that is not one of ours (a native set, an epoll fd ueq did not
  // make, a file that is no epoll fd) is the kernel's to answer.
  auto of_ours = [](std::shared_ptr<ueq::epoll_set> s) {
    if (s && ueq::epoll_access::of(*s).native.load(std::memory_order_acquire)) s = nullptr;
    return s;
  };
  // A MOD of an entry for the file the number names: one system call, which
  // reads the event as the kernel's own MOD would (EFAULT first). It
  // trusts the record of which set the number names (a number closed
  // behind ueq's back is noticed by the next other call on it: docs/guide.md).
  if (op == EPOLL_CTL_MOD) {
    if (auto set = of_ours(ueq::lookup(epfd))) {
      bool done;
      ueq::status s = ueq::epoll_access::of(*set).modify_registered(fd, user_event, done);
      if (done) return s.ok() ? 0 : fail(s.value());
    }
  }
  // Every other call asks the kernel whether the number still names the
  // set ueq recorded (lookup_live: one system call).
  auto set = of_ours(ueq::lookup_live(epfd));
  if (!set) {
    count(g_stats.passed);
    return ueq::k_epoll_ctl(ueq::program_fd(epfd), op, ueq::program_fd(fd), user_event);
  }
  // The rest may close, write eventfds, poll (ueq's own system calls make
  // no cancellation point; this guards what they do not cover).
  const ueq::no_cancel nc;
  // The event is copied in first (for every op but DEL), as the kernel does.
  epoll_event copy{};
  epoll_event* event = nullptr;
  if (op != EPOLL_CTL_DEL) {
    if (!copy_event_in(&copy, user_event)) return fail(EFAULT);
    event = &copy;
  }
  if (fd == epfd) return ueq::fd_open(fd) ? fail(EINVAL) : fail(EBADF);
  ueq::status s = ueq::ctl_full(*set, op, fd, event);
  return s.ok() ? 0 : fail(s.value());
}

}  // namespace

extern "C" {

int ueq_epoll_create(int size) {
  if (size <= 0) return fail(EINVAL);
  return ueq_epoll_create1(0);
}

int ueq_epoll_create1(int flags) {
  const ueq::errno_on_success e;
  const ueq::no_cancel nc;
  auto s = ueq::epoll_set::create(flags);
  if (!s) return fail(s.error());
  count(g_stats.sets);
  return e.keep((*s)->fd());
}

int ueq_epoll_ctl(int epfd, int op, int fd, struct epoll_event* user_event) {
  const ueq::errno_on_success kept;
  const int rc = kept.keep(ctl(epfd, op, fd, user_event));
  if (g_stats_out || ueq::log_verbose()) {
    const int e = errno;
    count(op == EPOLL_CTL_ADD   ? g_stats.add
          : op == EPOLL_CTL_MOD ? g_stats.mod
          : op == EPOLL_CTL_DEL ? g_stats.del
                                : g_stats.other_op);
    if (rc != 0) count(g_stats.ctl_failed);
    if (ueq::log_verbose())
      ueq::log("ctl %s epfd=%d fd=%d -> %s", op_name(op), epfd, fd,
               rc == 0 ? "0" : std::strerror(e));
    errno = e;
  }
  return rc;
}

int ueq_epoll_wait(int epfd, struct epoll_event* events, int maxevents, int timeout) {
  const ueq::errno_on_success e;
  return e.keep(wait_any(epfd, events, maxevents, ueq::deadline_after_ms(timeout), nullptr));
}

int ueq_epoll_pwait(int epfd, struct epoll_event* events, int maxevents, int timeout,
                    const sigset_t* sigmask) {
  const ueq::errno_on_success e;
  return e.keep(wait_any(epfd, events, maxevents, ueq::deadline_after_ms(timeout), sigmask));
}

int ueq_epoll_pwait2(int epfd, struct epoll_event* events, int maxevents,
                     const struct timespec* user_timeout, const sigset_t* sigmask) {
  const ueq::errno_on_success e;
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
  return e.keep(wait_any(epfd, events, maxevents, deadline, sigmask));
}

int ueq_close(int fd) {
  // One of ueq's own descriptors is no file of the program's: as the kernel
  // would answer for a number the program never opened (a daemon's loop
  // that closes every number from 3 up must leave ueq working).
  const ueq::errno_on_success e;
  if (ueq::is_own_fd(fd)) return fail(EBADF);
  const ueq::no_cancel nc;
  ueq::status s = ueq::epoll_close(fd);
  return s.ok() ? e.keep(0) : fail(s.value());
}

int ueq_dup(int fd) {
  // From a signal handler that interrupted ueq: no lock (see dup_over).
  if (ueq::tap_service::inside_ueq::active()) return ::dup(fd);
  const ueq::errno_on_success e;
  const ueq::no_cancel nc;
  fd = ueq::program_fd(fd);
  const int n = ::dup(fd);
  if (n >= 0) ueq::register_dup(fd, n);
  return e.keep(n);
}

int ueq_dup2(int oldfd, int newfd) {
  const ueq::errno_on_success e;
  const ueq::no_cancel nc;
  return e.keep(ueq::dup_over(oldfd, newfd, 0, true));
}

int ueq_dup3(int oldfd, int newfd, int flags) {
  const ueq::errno_on_success e;
  const ueq::no_cancel nc;
  return e.keep(ueq::dup_over(oldfd, newfd, flags, false));
}

}  // extern "C"
