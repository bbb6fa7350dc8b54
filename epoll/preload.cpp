// libueq-epoll-preload.so: the epoll API under its real names, for
// unmodified dynamically linked programs (LD_PRELOAD, or the ueq-run
// launcher).
//
// Interposed: epoll_create, epoll_create1, epoll_ctl, epoll_wait,
// epoll_pwait, epoll_pwait2 (served by ueq), close, dup, dup2, dup3 and the
// F_DUPFD copies of fcntl and fcntl64 (watched, so registrations follow the
// program's descriptors), close_range (which, like close, leaves ueq's own
// descriptors open), fork (so that ueq's fork handlers, which hand every
// set to the kernel, run with the guard below set), the exec family
// (execve, execv, execvp, execvpe, execl, execle, execlp, fexecve,
// execveat), posix_spawn, posix_spawnp, system, popen and vfork (a set a
// new program inherits is handed to the kernel first, below), and
// pthread_cancel (so that the waits stay cancellation points, below). Not
// interposed: closes that glibc makes internally (fclose, for instance,
// closes through an internal entry point; so does closefrom), a number
// received over a unix socket (SCM_RIGHTS), and the raw system calls; ueq
// notices a number closed that way when it matters (the kernel is asked
// whether a number still names the set ueq recorded; a number the kernel
// hands out anew drops what was known of it): see docs/guide.md, "epoll
// compatibility".
//
// Exported: these names and the ueq_* C API, nothing else (preload.map;
// the rest of ueq is linked in but local, so its C++ symbols and what it
// instantiates from abseil and the standard library never meet a program's
// own copies; tests/epoll/exports.sh checks it).
//
// ueq itself uses these same functions (its host epoll, its descriptors):
// every call made from inside ueq (inside one of these functions, or in
// code that marks itself inside ueq, such as a ueq_* function a linked
// program calls directly) goes straight to the C library's version.
//
// close() from a signal handler never waits for a lock of ueq's: on a thread
// inside ueq, the guard sends it to the C library (the registrations of
// that number are then left as after a raw close, and noticed when the
// number is next used). A handler that calls ueq_close itself gets
// tap_service::close_fd's deferred bookkeeping instead.
//
// Cancellation. The C library's epoll_wait, epoll_pwait and epoll_pwait2
// are cancellation points; ueq's waits sleep in raw system calls, which
// are not, so a thread asleep in one would not see pthread_cancel. Each
// wait therefore acts on a pending cancel when it begins and when it ends
// with EINTR (pthread_testcancel, outside ueq: only the program's frames
// unwind). A plain thread that waits is listed (once, until it exits), and
// while a wait that may sleep runs with cancellation enabled its entry says
// `waiting`. pthread_cancel marks the target (the C library's own call)
// and, while the target's entry says `waiting`, sends it the C library's
// cancellation signal, which, with the cancel already marked, only ends
// the system call it sleeps in (EINTR). A signal that lands just before
// the target enters its sleep ends nothing, so it is sent again (after
// 50 us, then every millisecond) until the wait is over (at most
// kCancelTries). ueq's own work inside a wait runs with cancellation
// disabled (cancellation_point).
#include <dlfcn.h>
#include <pthread.h>
#include <spawn.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <mutex>

#include "kcall.hpp"
#include "registry.hpp"
#include "ueq/epoll.h"
#include "ueq/runtime/fd.hpp"
#include "ueq/runtime/fork.hpp"
#include "ueq/runtime/parker.hpp"
#include "ueq/taps/tap.hpp"

namespace {

thread_local bool tl_inside = false;  // constant-initialised: no guard

// Set by vfork() in the parent's thread: the pid of the process that
// called it. The child shares the parent's memory and this thread's
// thread-locals until it execs or exits, and must leave ueq's bookkeeping
// (the parent's) alone: its close, dup2 and epoll calls pass straight to
// the C library. The parent's next interposed call clears it, and so does
// a fork()ed child's handler (daemon() and forkpty() fork through the C
// library's own fork, not the interposed one).
thread_local pid_t tl_vfork_parent = 0;
bool in_vfork_child() {
  if (tl_vfork_parent == 0) return false;
  if (::getpid() != tl_vfork_parent) return true;
  tl_vfork_parent = 0;  // the parent, resumed: only it writes here
  return false;
}

// A call made by ueq itself (its host poller, its descriptors): either from
// inside one of these functions (tl_inside) or from any other code of ueq's
// (a ueq_* function called directly, the runtime's threads), which marks
// itself inside ueq. Or a call in a vfork() child (above).
bool ours() {
  return tl_inside || ueq::tap_service::inside_ueq::active() || in_vfork_child();
}

struct scope {
  scope() { tl_inside = true; }
  ~scope() { tl_inside = false; }
};

template <class Fn>
Fn real(const char* name) {
  static_assert(sizeof(Fn) == sizeof(void*));
  return reinterpret_cast<Fn>(::dlsym(RTLD_NEXT, name));
}

// The C library's versions, resolved once at load.
struct reals {
  int (*close)(int) = real<int (*)(int)>("close");
  int (*close_range)(unsigned, unsigned,
                     int) = real<int (*)(unsigned, unsigned, int)>("close_range");
  int (*dup)(int) = real<int (*)(int)>("dup");
  int (*dup2)(int, int) = real<int (*)(int, int)>("dup2");
  int (*dup3)(int, int, int) = real<int (*)(int, int, int)>("dup3");
  pid_t (*fork)() = real<pid_t (*)()>("fork");
  pid_t (*vfork)() = real<pid_t (*)()>("vfork");
  int (*fcntl)(int, int, ...) = real<int (*)(int, int, ...)>("fcntl");
  int (*fcntl64)(int, int, ...) = real<int (*)(int, int, ...)>("fcntl64");
  int (*execve)(const char*, char* const*,
                char* const*) = real<int (*)(const char*, char* const*, char* const*)>("execve");
  int (*execv)(const char*, char* const*) = real<int (*)(const char*, char* const*)>("execv");
  int (*execvp)(const char*, char* const*) = real<int (*)(const char*, char* const*)>("execvp");
  int (*execvpe)(const char*, char* const*,
                 char* const*) = real<int (*)(const char*, char* const*, char* const*)>("execvpe");
  int (*fexecve)(int, char* const*,
                 char* const*) = real<int (*)(int, char* const*, char* const*)>("fexecve");
  int (*execveat)(int, const char*, char* const*, char* const*, int) =
      real<int (*)(int, const char*, char* const*, char* const*, int)>("execveat");
  using spawn_fn = int (*)(pid_t*, const char*, const posix_spawn_file_actions_t*,
                           const posix_spawnattr_t*, char* const*, char* const*);
  spawn_fn posix_spawn = real<spawn_fn>("posix_spawn");
  spawn_fn posix_spawnp = real<spawn_fn>("posix_spawnp");
  int (*system)(const char*) = real<int (*)(const char*)>("system");
  FILE* (*popen)(const char*, const char*) = real<FILE* (*)(const char*, const char*)>("popen");
  int (*pthread_cancel)(pthread_t) = real<int (*)(pthread_t)>("pthread_cancel");
  int (*epoll_create)(int) = real<int (*)(int)>("epoll_create");
  int (*epoll_create1)(int) = real<int (*)(int)>("epoll_create1");
  int (*epoll_ctl)(int, int, int,
                   epoll_event*) = real<int (*)(int, int, int, epoll_event*)>("epoll_ctl");
  int (*epoll_wait)(int, epoll_event*, int,
                    int) = real<int (*)(int, epoll_event*, int, int)>("epoll_wait");
  int (*epoll_pwait)(int, epoll_event*, int, int, const sigset_t*) =
      real<int (*)(int, epoll_event*, int, int, const sigset_t*)>("epoll_pwait");
  int (*epoll_pwait2)(int, epoll_event*, int, const timespec*, const sigset_t*) =
      real<int (*)(int, epoll_event*, int, const timespec*, const sigset_t*)>("epoll_pwait2");
};
const reals& R() {
  static const reals r;
  return r;
}
// Resolved at load, so that no first use (with dlsym) falls in a vfork()
// child, a fork()ed child or a signal handler.
[[gnu::constructor]] void resolve_reals() {
  (void)R();
}

// The plain threads that have waited (see the top), each listed from its
// first wait that may sleep until it exits (in a fork()ed child, the
// parent's list is dropped and the forking thread lists itself again).
struct waiter_entry {
  pthread_t self;
  pid_t tid;
  std::uint64_t gen;  // ueq::fork_generation() when listed
  // A wait that may sleep runs, cancellation enabled. Store-then-load on
  // both sides, each with a seq_cst fence between: the wait stores true,
  // then reads its cancel mark (pthread_testcancel); pthread_cancel sets
  // the mark (the C library's atomic read-modify-write), then reads
  // `waiting` here. Either the wait sees the mark and acts, or the
  // canceller sees the wait and signals it.
  std::atomic<bool> waiting{false};
  waiter_entry* next;
};
std::mutex g_waiters_mu;  // guards g_waiters and every listed entry's link
waiter_entry* g_waiters = nullptr;
constexpr int kSigCancel = 32;     // the C library's cancellation signal (__SIGRTMIN)
constexpr int kCancelTries = 200;  // sends, at most 1 ms apart

// fork(): the list's lock is held across the fork (no half-made link in
// the child); the child drops the parent's entries, whose threads it does
// not have (a thread of its own may reuse one's stack, and so its address).
void waiters_before_fork() noexcept {
  g_waiters_mu.lock();
}
void waiters_in_parent() noexcept {
  g_waiters_mu.unlock();
}
void waiters_in_child() noexcept {
  g_waiters = nullptr;
  g_waiters_mu.unlock();
  // A fork()ed child is no vfork() child, also when the fork bypassed the
  // interposed fork() (daemon() and forkpty() call the C library's own).
  tl_vfork_parent = 0;
}
[[maybe_unused]] const bool g_waiters_fork_registered = ueq::on_fork(
    ueq::fork_layer::epoll,
    {.prepare = &waiters_before_fork, .parent = &waiters_in_parent, .child = &waiters_in_child});

class listed_thread {
 public:
  listed_thread() = default;
  ~listed_thread() {
    if (entry_.gen != ueq::fork_generation() + 1) return;  // not listed in this process
    std::lock_guard<std::mutex> g(g_waiters_mu);
    for (waiter_entry** p = &g_waiters; *p; p = &(*p)->next)
      if (*p == &entry_) {
        *p = entry_.next;
        break;
      }
  }
  listed_thread(const listed_thread&) = delete;
  listed_thread& operator=(const listed_thread&) = delete;
  // The entry, listed (again, after a fork) if it is not.
  waiter_entry& entry() noexcept {
    const std::uint64_t gen = ueq::fork_generation() + 1;  // 0: never listed
    if (entry_.gen != gen) {
      entry_.self = ::pthread_self();
      entry_.tid = static_cast<pid_t>(::gettid());
      std::lock_guard<std::mutex> g(g_waiters_mu);
      entry_.gen = gen;
      entry_.next = g_waiters;
      g_waiters = &entry_;
    }
    return entry_;
  }

 private:
  waiter_entry entry_{};
};

// Marks the calling thread's entry `waiting` for the length of one wait
// that may sleep, if a cancel could reach it there (cancellation enabled).
class waiting_scope {
 public:
  waiting_scope(bool may_sleep, bool enabled) {
    if (!may_sleep || !enabled) return;
    thread_local listed_thread me;
    entry_ = &me.entry();
    entry_->waiting.store(true, std::memory_order_seq_cst);
    std::atomic_thread_fence(std::memory_order_seq_cst);  // see waiter_entry
  }
  ~waiting_scope() {
    if (entry_) entry_->waiting.store(false, std::memory_order_relaxed);
  }
  waiting_scope(const waiting_scope&) = delete;
  waiting_scope& operator=(const waiting_scope&) = delete;

 private:
  waiter_entry* entry_ = nullptr;
};

// Sends the cancellation signal to th if a wait of its may sleep; false if
// none does.
bool kick(pthread_t th) {
  std::atomic_thread_fence(std::memory_order_seq_cst);  // see waiter_entry
  std::lock_guard<std::mutex> g(g_waiters_mu);
  for (waiter_entry* w = g_waiters; w; w = w->next)
    if (::pthread_equal(w->self, th)) {
      if (!w->waiting.load(std::memory_order_seq_cst)) return false;
      (void)::syscall(SYS_tgkill, ::getpid(), w->tid, kSigCancel);
      return true;
    }
  return false;
}

// One wait of the program's, a cancellation point as the C library's.
// `may_sleep`: false for a zero timeout. ueq's own work inside runs with
// cancellation disabled: the C library's write() or poll() that ueq calls
// there are cancellation points, and a cancel acting inside ueq would
// unwind through its frames (some noexcept: std::terminate) and leave its
// state half changed. A disabled cancel still ends the sleep it signals
// (EINTR); it acts here, once the state is restored.
template <class Wait>
int cancellation_point(bool may_sleep, Wait wait) {
  // A uthread's wait parks the uthread, which may resume on another vcore
  // (a thread of the runtime's, which no one cancels): no thread's cancel
  // state is touched for it.
  if (ueq::parks_as_uthread()) return wait();
  // Deferred for the length of the call (an asynchronous cancel must not
  // act inside ueq either, and glibc's setcancelstate that acts on one
  // leaves the thread's result unset where pthread_testcancel sets it to
  // PTHREAD_CANCELED); a cancel pending at the end acts before the type is
  // asynchronous again.
  int type = PTHREAD_CANCEL_DEFERRED;
  (void)::pthread_setcanceltype(PTHREAD_CANCEL_DEFERRED, &type);
  int state = PTHREAD_CANCEL_ENABLE;
  (void)::pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &state);
  const bool enabled = state == PTHREAD_CANCEL_ENABLE;
  int r, e;
  {
    waiting_scope w(may_sleep, enabled);
    if (enabled) {
      (void)::pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, nullptr);
      ::pthread_testcancel();  // after `waiting` is stored: see waiter_entry
      (void)::pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, nullptr);
    }
    r = wait();
    e = errno;
  }
  (void)::pthread_setcancelstate(state, nullptr);
  if ((r < 0 && e == EINTR) || type == PTHREAD_CANCEL_ASYNCHRONOUS) ::pthread_testcancel();
  (void)::pthread_setcanceltype(type, nullptr);
  errno = e;
  return r;
}

// close_range() over [first, last] around ueq's own descriptors.
int close_around_own(unsigned first, unsigned last, int flags) {
  unsigned lo = first;
  for (;;) {
    const int own = lo > INT_MAX ? -1 : ueq::next_own_fd(static_cast<int>(lo));
    if (own < 0 || static_cast<unsigned>(own) > last) break;
    if (!ueq::is_own_fd(own)) continue;  // a stale record, now forgotten
    if (static_cast<unsigned>(own) > lo &&
        R().close_range(lo, static_cast<unsigned>(own) - 1, flags) != 0)
      return -1;
    if (static_cast<unsigned>(own) == last) return 0;
    lo = static_cast<unsigned>(own) + 1;
  }
  return R().close_range(lo, last, flags);
}

// Whether fd is an epoll fd (any: the exec hand-over's mark is a hint),
// asked of the kernel without a lock; true if it cannot tell.
bool names_epoll(int fd) {
  char path[32], target[32];
  std::snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  const ssize_t n = ::readlink(path, target, sizeof target - 1);
  if (n < 0) return true;  // the fd is open: no /proc, most likely
  target[n] = 0;
  return std::strcmp(target, "anon_inode:[eventpoll]") == 0;
}

// fcntl() and fcntl64(): an F_DUPFD or F_DUPFD_CLOEXEC copy of a set's
// number names the set too, as a dup() does (register_dup); an F_SETFD
// that clears FD_CLOEXEC of an epoll fd sets the exec hand-over's mark; every
// other command, and ueq's own calls, go to the C library's untouched. The third
// argument is passed on as the word it was passed in, as the C library
// reads it (an int or a pointer, by command).
int fcntl_call(int (*real_fcntl)(int, int, ...), int fd, int cmd, void* arg) {
  if (cmd == F_SETFD && !(reinterpret_cast<std::uintptr_t>(arg) & FD_CLOEXEC)) {
    const int r = real_fcntl(fd, cmd, arg);
    auto& mark = ueq::epoll_internal::g_maybe_inheritable;
    // relaxed: a hint (registry.hpp).
    if (r == 0 && !mark.load(std::memory_order_relaxed) && !ours()) {
      const int e = errno;
      if (names_epoll(fd)) mark.store(true, std::memory_order_relaxed);
      errno = e;
    }
    return r;
  }
  if ((cmd != F_DUPFD && cmd != F_DUPFD_CLOEXEC) || ours()) return real_fcntl(fd, cmd, arg);
  scope s;
  const ueq::epoll_internal::errno_on_success e;
  const ueq::no_cancel nc;
  fd = ueq::epoll_internal::program_fd(fd);
  const int n = real_fcntl(fd, cmd, arg);
  if (n >= 0) ueq::epoll_internal::register_dup(fd, n);
  return e.keep(n);
}

// Before a call that starts a new program (see the top): the new program
// inherits the sets it can (registry.hpp, hand_over_before_exec). errno
// is the caller's again afterwards. Not for ueq's own calls, nor in a
// signal handler that interrupted ueq, nor in a vfork() child (ours()).
// Cancellation is off for the hand-over (no_cancel).
void before_new_program() {
  // relaxed: a hint, as in hand_over_before_exec.
  if (!ueq::epoll_internal::g_maybe_inheritable.load(std::memory_order_relaxed) || ours()) return;
  const ueq::epoll_internal::errno_on_success e;
  {
    const ueq::no_cancel nc;
    scope s;
    ueq::epoll_internal::hand_over_before_exec();
  }
  (void)e.keep(0);
}

// execl, execle and execlp: their arguments as an argv (on the stack, as
// the C library does: these run in children of threaded programs, where
// malloc may not), then the matching vector call. `envp_after`: execle's
// environment follows the terminating null.
template <class Call>
int with_argv(const char* arg, va_list ap, bool envp_after, Call call) {
  va_list count;
  va_copy(count, ap);
  std::size_t n = 1;
  while (arg && va_arg(count, const char*))
    ++n;
  va_end(count);
  auto** argv = static_cast<char**>(__builtin_alloca((n + 1) * sizeof(char*)));
  argv[0] = const_cast<char*>(arg);
  for (std::size_t i = 1; i < n; ++i)
    argv[i] = va_arg(ap, char*);
  argv[n] = nullptr;
  if (arg) (void)va_arg(ap, char*);  // the terminating null
  char* const* envp = envp_after ? va_arg(ap, char* const*) : environ;
  return call(argv, envp);
}
// execl and execle: execve with the list as argv.
int exec_list(const char* path, const char* arg, va_list ap, bool envp_after) {
  return with_argv(arg, ap, envp_after, [&](char* const* argv, char* const* envp) {
    before_new_program();
    return R().execve(path, argv, envp);
  });
}

}  // namespace

#define UEQ_EXPORT extern "C" __attribute__((visibility("default")))

UEQ_EXPORT int epoll_create(int size) {
  if (ours()) return R().epoll_create(size);
  scope s;
  return ueq_epoll_create(size);
}
UEQ_EXPORT int epoll_create1(int flags) {
  if (ours()) return R().epoll_create1(flags);
  scope s;
  return ueq_epoll_create1(flags);
}
UEQ_EXPORT int epoll_ctl(int epfd, int op, int fd, struct epoll_event* ev) {
  if (ours()) return R().epoll_ctl(epfd, op, fd, ev);
  scope s;
  return ueq_epoll_ctl(epfd, op, fd, ev);
}
UEQ_EXPORT int epoll_wait(int epfd, struct epoll_event* ev, int max, int timeout) {
  if (ours()) return R().epoll_wait(epfd, ev, max, timeout);
  return cancellation_point(timeout != 0, [&] {
    scope s;
    return ueq_epoll_wait(epfd, ev, max, timeout);
  });
}
UEQ_EXPORT int epoll_pwait(int epfd, struct epoll_event* ev, int max, int timeout,
                           const sigset_t* mask) {
  if (ours()) return R().epoll_pwait(epfd, ev, max, timeout, mask);
  return cancellation_point(timeout != 0, [&] {
    scope s;
    return ueq_epoll_pwait(epfd, ev, max, timeout, mask);
  });
}
UEQ_EXPORT int epoll_pwait2(int epfd, struct epoll_event* ev, int max, const struct timespec* t,
                            const sigset_t* mask) {
  if (ours()) return R().epoll_pwait2(epfd, ev, max, t, mask);
  return cancellation_point(true, [&] {
    scope s;
    return ueq_epoll_pwait2(epfd, ev, max, t, mask);
  });
}
// close() is a cancellation point: a cancel pending when it begins acts
// before anything is forgotten, as the C library's acts before anything is
// closed; ueq's bookkeeping runs with cancellation disabled, and then the
// C library's close is made from this frame, so that a close that blocks
// (a socket's SO_LINGER) is ended by a cancel as it would be natively. One
// of ueq's own descriptors is no file of the program's: EBADF (ueq_close).
UEQ_EXPORT int close(int fd) {
  if (ours()) return R().close(fd);
  if (!ueq::parks_as_uthread()) ::pthread_testcancel();
  {
    scope s;
    const ueq::epoll_internal::errno_on_success e;
    if (ueq::is_own_fd(fd)) {
      errno = EBADF;
      return -1;
    }
    const ueq::no_cancel nc;
    ueq::epoll_internal::forget_before_close(fd);
    (void)e.keep(0);
  }
  return R().close(fd);
}
// close_range() leaves ueq's own descriptors open, as close() does (they
// are no files of the program's): the range is closed around them. The
// program's own files in it are closed as by a raw close, and ueq notices
// that when it matters, as it does after any raw close.
UEQ_EXPORT int close_range(unsigned first, unsigned last, int flags) {
  if (ours() || first > last) return R().close_range(first, last, flags);
  const ueq::epoll_internal::errno_on_success e;
  return e.keep(close_around_own(first, last, flags));
}
UEQ_EXPORT int dup(int fd) {
  if (ours()) return R().dup(fd);
  scope s;
  return ueq_dup(fd);
}
UEQ_EXPORT int dup2(int oldfd, int newfd) {
  if (ours()) return R().dup2(oldfd, newfd);
  scope s;
  return ueq_dup2(oldfd, newfd);
}
UEQ_EXPORT int dup3(int oldfd, int newfd, int flags) {
  if (ours()) return R().dup3(oldfd, newfd, flags);
  scope s;
  return ueq_dup3(oldfd, newfd, flags);
}
// <fcntl.h> names fcntl64 for fcntl where off_t is 64 bits wide (as in
// ueq's build): each is defined here under its own symbol explicitly.
UEQ_EXPORT int fcntl_entry(int fd, int cmd, ...) __asm__("fcntl");
UEQ_EXPORT int fcntl64_entry(int fd, int cmd, ...) __asm__("fcntl64");
UEQ_EXPORT int fcntl_entry(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  void* arg = va_arg(ap, void*);
  va_end(ap);
  return fcntl_call(R().fcntl, fd, cmd, arg);
}
UEQ_EXPORT int fcntl64_entry(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  void* arg = va_arg(ap, void*);
  va_end(ap);
  return fcntl_call(R().fcntl64 ? R().fcntl64 : R().fcntl, fd, cmd, arg);
}
UEQ_EXPORT int pthread_cancel(pthread_t th) {
  const int r = R().pthread_cancel(th);
  if (r != 0 || ours()) return r;
  const ueq::epoll_internal::errno_on_success e;
  // Until the target's wait is over: 50 us, then 1 ms apart. A raw system
  // call: the C library's nanosleep is a cancellation point, and
  // pthread_cancel is none.
  for (int i = 0; i < kCancelTries && kick(th); ++i) {
    timespec pause{0, i == 0 ? 50'000 : 1'000'000};
    (void)::syscall(SYS_nanosleep, &pause, nullptr);
  }
  return e.keep(0);
}
UEQ_EXPORT pid_t fork() {
  (void)in_vfork_child();  // a fork()ed child is no vfork() child
  if (tl_inside) return R().fork();
  scope s;  // in the child too, until fork returns there
  const ueq::epoll_internal::errno_on_success e;
  return e.keep(R().fork());
}

// The exec family, posix_spawn, system and popen: the sets a new program
// can inherit are the kernel's first (before_new_program). execl, execle
// and execlp are built on execve and execvp here (the C library's make
// internal calls, which would not pass through these).
UEQ_EXPORT int execve(const char* path, char* const argv[], char* const envp[]) {
  before_new_program();
  return R().execve(path, argv, envp);
}
UEQ_EXPORT int execv(const char* path, char* const argv[]) {
  before_new_program();
  return R().execv(path, argv);
}
UEQ_EXPORT int execvp(const char* file, char* const argv[]) {
  before_new_program();
  return R().execvp(file, argv);
}
UEQ_EXPORT int execvpe(const char* file, char* const argv[], char* const envp[]) {
  before_new_program();
  return R().execvpe(file, argv, envp);
}
UEQ_EXPORT int fexecve(int fd, char* const argv[], char* const envp[]) {
  before_new_program();
  return R().fexecve(fd, argv, envp);
}
UEQ_EXPORT int execveat(int dirfd, const char* path, char* const argv[], char* const envp[],
                        int flags) {
  if (!R().execveat) {
    errno = ENOSYS;
    return -1;
  }
  before_new_program();
  return R().execveat(dirfd, path, argv, envp, flags);
}
UEQ_EXPORT int execl(const char* path, const char* arg, ...) {
  va_list ap;
  va_start(ap, arg);
  const int r = exec_list(path, arg, ap, false);
  va_end(ap);
  return r;
}
UEQ_EXPORT int execle(const char* path, const char* arg, ...) {
  va_list ap;
  va_start(ap, arg);
  const int r = exec_list(path, arg, ap, true);
  va_end(ap);
  return r;
}
UEQ_EXPORT int execlp(const char* file, const char* arg, ...) {
  va_list ap;
  va_start(ap, arg);
  const int r = with_argv(arg, ap, false, [&](char* const* argv, char* const*) {
    before_new_program();
    return R().execvp(file, argv);
  });
  va_end(ap);
  return r;
}
// posix_spawn's file actions are not read: a set whose numbers all have
// FD_CLOEXEC and that an action dup2()s onto a number without it reaches
// the new program as ueq's bare epoll fd (docs/guide.md).
UEQ_EXPORT int posix_spawn(pid_t* pid, const char* path, const posix_spawn_file_actions_t* fa,
                           const posix_spawnattr_t* attr, char* const argv[], char* const envp[]) {
  before_new_program();
  return R().posix_spawn(pid, path, fa, attr, argv, envp);
}
UEQ_EXPORT int posix_spawnp(pid_t* pid, const char* file, const posix_spawn_file_actions_t* fa,
                            const posix_spawnattr_t* attr, char* const argv[], char* const envp[]) {
  before_new_program();
  return R().posix_spawnp(pid, file, fa, attr, argv, envp);
}
UEQ_EXPORT int system(const char* command) {
  before_new_program();
  return R().system(command);
}
UEQ_EXPORT FILE* popen(const char* command, const char* type) {
  before_new_program();
  return R().popen(command, type);
}

// vfork(): the child runs in the parent's memory until it execs, so the
// hand-over must happen in the parent, before the call; and vfork() cannot
// be called from a frame that returns afterwards (the child's return would
// overwrite the frame the parent resumes into). The entry below runs the
// hand-over, then jumps to the C library's vfork with the caller's own
// frame and return address, as if the program had called it directly.
extern "C" __attribute__((visibility("hidden"), used)) void* ueq_preload_before_vfork() {
  if (!ours()) {
    before_new_program();
    // Until this thread's next interposed call in this process: the
    // child's calls pass straight to the C library (in_vfork_child).
    tl_vfork_parent = ::getpid();
  }
  return reinterpret_cast<void*>(R().vfork);
}
#if defined(__x86_64__)
asm(R"(
  .text
  .globl vfork
  .type vfork, @function
vfork:
  .cfi_startproc
  endbr64
  subq $8, %rsp
  .cfi_adjust_cfa_offset 8
  call ueq_preload_before_vfork
  addq $8, %rsp
  .cfi_adjust_cfa_offset -8
  jmp *%rax
  .cfi_endproc
  .size vfork, .-vfork
)");
#endif
